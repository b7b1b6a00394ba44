//! Helpers shared by the integration tests: a plugin served on a temporary
//! socket, raw HTTP exchanges, and the captured daemon requests.

#![allow(dead_code, unreachable_pub)]

pub mod bridge_net;
pub mod docker;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use docker_plugin_sdk::Plugin;
use docker_plugin_sdk::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A plugin serving on a socket in its own temporary directory; stopped
/// when dropped.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), docker_plugin_sdk::Error>>>,
}

impl Served {
    pub fn start(plugin: Plugin) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("plugin.sock");
        let listener = UnixListener::bind(&socket).expect("bind test socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(plugin.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            dir,
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Signals shutdown and waits for the server to return.
    pub async fn stop(mut self) -> Result<(), docker_plugin_sdk::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("task");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body {:?} is not JSON: {e}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `Err` field, if the body is a JSON object that has one.
    pub fn err(&self) -> Option<String> {
        self.json()
            .get("Err")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

/// Builds request bytes with exactly the given headers (no more), as the
/// daemon writes them.
pub fn request_bytes(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes `request` on `stream` and reads one response.
pub async fn exchange(stream: &mut UnixStream, request: &[u8]) -> RawAnswer {
    stream.write_all(request).await.expect("write request");
    read_answer(stream).await
}

/// Opens a connection to `socket` and exchanges one request.
pub async fn exchange_once(socket: &Path, request: &[u8]) -> RawAnswer {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    exchange(&mut stream, request).await
}

/// Reads one `Content-Length`-framed response.
pub async fn read_answer(stream: &mut UnixStream) -> RawAnswer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed before a full response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("content-length"))
        .expect("responses carry Content-Length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    RawAnswer {
        status,
        headers,
        body,
    }
}

/// One request a real daemon sent, from `../shared/fixtures` (copied into
/// `tests/fixtures`).
#[derive(Debug, serde::Deserialize)]
pub struct Captured {
    pub path: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

impl Captured {
    /// The request exactly as the daemon wrote it.
    pub fn bytes(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        request_bytes(&self.path, &headers, self.body.as_bytes())
    }

    pub fn endpoint(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&self.body).expect("captured body is JSON")
        }
    }
}

/// Every captured request of one daemon version.
pub fn captured(file: &str) -> Vec<Captured> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line"))
        .collect()
}

pub const FIXTURES: [&str; 2] = [
    "dockerd-20.10-requests.jsonl",
    "dockerd-26.1-requests.jsonl",
];
