// Drives the plugin through the SDK's daemon-playing client.

use std::error::Error;
use std::path::Path;

use docker_plugin_sdk::Plugin;
use docker_plugin_sdk::client::Client;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::driver::Snapdir;

/// A plugin served on a socket of the test's own.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), docker_plugin_sdk::Error>>,
}

/// Opens the state under `root` and serves it at `socket`, as `main`
/// does, but until `Running::stop` rather than SIGTERM.
fn start(root: &Path, socket: &Path) -> Result<Running, Box<dyn Error>> {
    let driver = Snapdir::open(root)?;
    let listener = UnixListener::bind(socket)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let plugin = Plugin::new().volume(driver);
    let task = tokio::spawn(plugin.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok(Running { stop, task })
}

impl Running {
    async fn stop(self) -> Result<(), Box<dyn Error>> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

#[tokio::test]
async fn a_seeded_volume_survives_a_restart() -> Result<(), Box<dyn Error>> {
    // A root with one template, and a socket nobody else uses.
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("templates/site"))?;
    std::fs::write(root.join("templates/site/index.html"), "hello")?;
    let socket = dir.path().join("snapdir.sock");
    let plugin = start(&root, &socket)?;

    // What the daemon does for `docker volume create --opt from=site web`.
    let client = Client::new(&socket);
    let volumes = client.volume();
    assert!(volumes.get("web").await.is_err());
    let opts = [("from".to_owned(), "site".to_owned())];
    volumes.create("web", Some(opts.into())).await?;

    // A container starts, and `docker cp` mounts under the same ID.
    let id = "c".repeat(64);
    let path = volumes.mount("web", &id).await?;
    assert_eq!(std::fs::read_to_string(path.join("index.html"))?, "hello");
    volumes.mount("web", &id).await?;
    volumes.unmount("web", &id).await?;

    // The plugin restarts; the volume and its one use are remembered.
    // Like the daemon, the client then needs a new connection.
    plugin.stop().await?;
    std::fs::remove_file(&socket)?;
    let plugin = start(&root, &socket)?;
    let client = Client::new(&socket);
    let volumes = client.volume();
    let web = volumes.get("web").await?;
    let status = web.status.unwrap_or_default();
    assert_eq!(status["from"], "site");
    let refused = volumes.remove("web").await.err();
    let message = refused.as_ref().and_then(|e| e.plugin_message());
    assert!(message.is_some_and(|m| m.contains("in use")), "{message:?}");

    // The last unmount frees it; a repeated one is harmless.
    volumes.unmount("web", &id).await?;
    volumes.unmount("web", &id).await?;
    volumes.remove("web").await?;
    assert!(volumes.list().await?.is_empty());
    assert!(!path.exists());
    plugin.stop().await
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("snapdir.sock");
    let plugin = start(&dir.path().join("root"), &socket)?;
    let client = Client::new(&socket);
    let volumes = client.volume();

    // `docker run -v v1:/data` sends no options at all: an empty volume.
    volumes.create("v1", None).await?;
    let cases = [
        ("../escape", "from", "site", "invalid volume name"),
        ("v2", "colour", "blue", "unknown option \"colour\""),
        ("v3", "from", "../etc", "invalid template name"),
        ("v4", "from", "nope", "template \"nope\" not found"),
    ];
    for (name, key, value, expected) in cases {
        let opts = [(key.to_owned(), value.to_owned())];
        let err = volumes.create(name, Some(opts.into())).await.err();
        let message = err.as_ref().and_then(|e| e.plugin_message());
        assert!(message.is_some_and(|m| m.contains(expected)), "{message:?}");
    }
    plugin.stop().await
}
