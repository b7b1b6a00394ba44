//! The HTTP contract of the server, checked with raw bytes on the socket and
//! with the daemon-playing client.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use common::{Served, exchange, exchange_once, request_bytes};
use docker_plugin_sdk::client::ClientError;
use docker_plugin_sdk::volume::*;
use docker_plugin_sdk::{DriverError, Plugin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// An in-memory driver whose behaviour each test steers through names:
/// `slow*` sleeps, `panic*` panics, `fail*` fails.
#[derive(Default)]
struct Steered {
    created: Mutex<Vec<CreateRequest>>,
}

#[docker_plugin_sdk::async_trait]
impl VolumeDriver for Steered {
    async fn create(&self, req: CreateRequest) -> Result<(), DriverError> {
        if req.name.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        if req.name.starts_with("panic") {
            panic!("driver bug while creating {}", req.name);
        }
        if req.name.starts_with("fail") {
            return Err(DriverError::other(format!(
                "backend refused {:?}",
                req.name
            )));
        }
        self.created.lock().unwrap().push(req);
        Ok(())
    }
    async fn remove(&self, _: RemoveRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn mount(&self, req: MountRequest) -> Result<PathBuf, DriverError> {
        if req.name == "relative" {
            return Ok(PathBuf::from("data/here"));
        }
        Ok(PathBuf::from("/srv").join(&req.name))
    }
    async fn unmount(&self, _: UnmountRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn path(&self, _: PathRequest) -> Result<Option<PathBuf>, DriverError> {
        Ok(None)
    }
    async fn get(&self, req: GetRequest) -> Result<Volume, DriverError> {
        match req.name.as_str() {
            "relative" => {
                let mut v = Volume::new("relative");
                v.mountpoint = Some(PathBuf::from("data/here"));
                return Ok(v);
            }
            "nameless" => return Ok(Volume::default()),
            _ => {}
        }
        let created = self.created.lock().unwrap();
        if created.iter().any(|c| c.name == req.name) {
            let mut v = Volume::new(req.name);
            v.created_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045));
            Ok(v)
        } else {
            Err(DriverError::not_found(format!(
                "no such volume {:?}",
                req.name
            )))
        }
    }
    async fn list(&self) -> Result<Vec<Volume>, DriverError> {
        let created = self.created.lock().unwrap();
        Ok(created
            .iter()
            .map(|c| Volume::new(c.name.clone()))
            .collect())
    }
}

fn served() -> Served {
    Served::start(Plugin::new().volume(Steered::default()))
}

#[tokio::test]
async fn activate_with_no_headers_and_no_body_lists_the_volume_driver() {
    let s = served();
    let answer = exchange_once(&s.socket, &request_bytes("/Plugin.Activate", &[], b"")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"Implements": ["VolumeDriver"]})
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/vnd.docker.plugins.v1.2+json")
    );
}

#[tokio::test]
async fn calls_without_arguments_accept_an_empty_body() {
    let s = served();
    for path in ["/VolumeDriver.List", "/VolumeDriver.Capabilities"] {
        let req = request_bytes(path, &[("Content-Length", "0")], b"");
        let answer = exchange_once(&s.socket, &req).await;
        assert_eq!(answer.status, 200, "{path}");
    }
    let req = request_bytes("/VolumeDriver.List", &[("Content-Length", "0")], b"");
    let answer = exchange_once(&s.socket, &req).await;
    assert_eq!(answer.json(), serde_json::json!({"Volumes": []}));
}

#[tokio::test]
async fn unknown_endpoint_is_404_with_err() {
    let s = served();
    let req = request_bytes(
        "/NetworkDriver.CreateNetwork",
        &[("Content-Length", "2")],
        b"{}",
    );
    let answer = exchange_once(&s.socket, &req).await;
    assert_eq!(answer.status, 404);
    assert!(
        answer
            .err()
            .unwrap()
            .contains("NetworkDriver.CreateNetwork")
    );
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_endpoint_and_the_problem() {
    let s = served();
    let cases: [(&[u8], &str); 4] = [
        (b"{\"Name\":", "EOF"),
        (b"[1,2]", "invalid type"),
        (b"{\"Opts\":{}}", "missing field `Name`"),
        (b"{\"Name\":\"a\",\"Opts\":{\"size\":1}}", "invalid type"),
    ];
    for (body, expected) in cases {
        let len = body.len().to_string();
        let req = request_bytes("/VolumeDriver.Create", &[("Content-Length", &len)], body);
        let answer = exchange_once(&s.socket, &req).await;
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(body));
        let err = answer.err().expect("Err field");
        assert!(
            err.starts_with("VolumeDriver.Create: invalid request body"),
            "{err}"
        );
        assert!(err.contains(expected), "{err} should mention {expected}");
    }
}

#[tokio::test]
async fn driver_error_is_500_with_its_message() {
    let s = served();
    let err = s
        .client()
        .volume()
        .create("fail-1", None)
        .await
        .unwrap_err();
    match err {
        ClientError::Plugin {
            status, message, ..
        } => {
            assert_eq!(status, 500);
            assert_eq!(message, "backend refused \"fail-1\"");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let s = served();
    let client = s.client();
    let err = client.volume().create("panic-1", None).await.unwrap_err();
    let message = err.plugin_message().expect("plugin error").to_owned();
    assert!(
        message.contains("driver bug while creating panic-1"),
        "{message}"
    );
    assert_eq!(client.activate().await.unwrap(), ["VolumeDriver"]);
    client.volume().create("fine", None).await.unwrap();
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let s = served();
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    for _ in 0..20 {
        let req = request_bytes("/Plugin.Activate", &[("Content-Length", "0")], b"");
        assert_eq!(exchange(&mut stream, &req).await.status, 200);
    }
}

#[tokio::test]
async fn a_slow_call_does_not_delay_calls_on_other_connections() {
    let s = served();
    let slow_client = s.client();
    let slow = tokio::spawn(async move { slow_client.volume().create("slow-1", None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let fast = s.client();
    let started = Instant::now();
    for _ in 0..10 {
        fast.volume().list().await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "fast calls waited {:?} behind the slow one",
        started.elapsed()
    );
    assert!(!slow.is_finished());
    slow.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_call_finishes_even_if_the_client_hangs_up() {
    let driver = std::sync::Arc::new(Steered::default());
    let s = Served::start(Plugin::new().volume_shared(driver.clone()));
    let body = br#"{"Name":"slow-gone"}"#;
    let req = request_bytes("/VolumeDriver.Create", &[("Content-Length", "20")], body);
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    stream.write_all(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);

    tokio::time::sleep(Duration::from_millis(2000)).await;
    let names: Vec<String> = driver
        .created
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["slow-gone"]);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_the_default_fits_authz_sized_bodies() {
    let s = Served::start(Plugin::new().volume(Steered::default()).body_limit(1024));
    let big = format!("{{\"Name\":\"{}\"}}", "x".repeat(2000));
    let len = big.len().to_string();
    let req = request_bytes(
        "/VolumeDriver.Create",
        &[("Content-Length", &len)],
        big.as_bytes(),
    );
    let answer = exchange_once(&s.socket, &req).await;
    assert_eq!(answer.status, 413);
    assert!(answer.err().unwrap().contains("1024 bytes"));

    // 4 MiB of API body is about 5.6 MB once base64-encoded.
    let s = served();
    let name = "y".repeat(5_600_000);
    s.client().volume().create(&name, None).await.unwrap();
}

#[tokio::test]
async fn get_on_an_endpoint_is_405() {
    let s = served();
    let req = b"GET /Plugin.Activate HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange_once(&s.socket, req).await;
    assert_eq!(answer.status, 405);
    assert!(answer.err().unwrap().contains("POST"));
}

#[tokio::test]
async fn relative_mountpoint_from_a_driver_never_reaches_the_daemon() {
    let s = served();
    let client = s.client();
    let err = client.volume().mount("relative", "id").await.unwrap_err();
    let message = err.plugin_message().unwrap();
    assert!(message.contains("absolute"), "{message}");
    let err = client.volume().get("relative").await.unwrap_err();
    assert!(err.plugin_message().unwrap().contains("absolute"));
}

#[tokio::test]
async fn get_without_a_name_answers_under_the_name_asked_for() {
    let s = served();
    let volume = s.client().volume().get("nameless").await.unwrap();
    assert_eq!(volume.name, "nameless");
}

#[tokio::test]
async fn get_answer_has_rfc3339_created_at_and_no_empty_fields() {
    let s = served();
    let client = s.client();
    client
        .volume()
        .create("v1", Some(BTreeMap::new()))
        .await
        .unwrap();
    let raw = client
        .call_raw("VolumeDriver.Get", &b"{\"Name\":\"v1\"}\n"[..])
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"Volume": {"Name": "v1", "CreatedAt": "2026-01-02T03:04:05.000000000Z"}})
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let s = served();
    let client = s.client();
    let slow = tokio::spawn(async move { client.volume().create("slow-2", None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop().await.unwrap();
    slow.await.unwrap().expect("in-flight call completed");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let s = served();
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    let mut both = request_bytes("/Plugin.Activate", &[("Content-Length", "0")], b"");
    both.extend(request_bytes(
        "/VolumeDriver.List",
        &[("Content-Length", "0")],
        b"",
    ));
    stream.write_all(&both).await.unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&seen)
        .matches("HTTP/1.1 200")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no two answers: {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let activate = text.find("Implements").expect("activate answer");
    let list = text.find("Volumes").expect("list answer");
    assert!(activate < list, "answers out of order: {text}");
}

#[tokio::test]
async fn the_client_gives_up_like_the_daemon_instead_of_hanging() {
    let s = served();
    let client = s.client().with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = client.volume().create("slow-3", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // A later call on the same client gets a fresh connection and works.
    assert_eq!(client.activate().await.unwrap(), ["VolumeDriver"]);
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_it_is_sent() {
    let s = Served::start(Plugin::new().volume(Steered::default()).body_limit(1024));
    let head = request_bytes(
        "/VolumeDriver.Create",
        &[("Content-Length", "999999999")],
        b"",
    );
    let answer = exchange_once(&s.socket, &head).await;
    assert_eq!(answer.status, 413);
    assert!(
        answer.err().unwrap().contains("999999999"),
        "{:?}",
        answer.err()
    );
}

#[tokio::test]
async fn silent_and_slow_clients_are_cut_off() {
    let limit = Duration::from_millis(500);
    let s = Served::start(Plugin::new().volume(Steered::default()).read_timeout(limit));

    // Half a request head, then nothing: the connection is closed.
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    stream
        .write_all(b"POST /Plugin.Activate HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a half-sent head kept the connection open");

    // A body that never completes: 408 with an Err.
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    let head = request_bytes(
        "/VolumeDriver.Create",
        &[("Content-Length", "100")],
        b"{\"Na",
    );
    stream.write_all(&head).await.unwrap();
    let answer = common::read_answer(&mut stream).await;
    assert_eq!(answer.status, 408);
    assert!(answer.err().unwrap().contains("did not arrive"));
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let s = Served::start(Plugin::new().volume(Steered::default()).max_connections(2));
    let first = UnixStream::connect(&s.socket).await.unwrap();
    let _second = UnixStream::connect(&s.socket).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The third connects (backlog) but is not served while two are open.
    let third = s.client().with_timeout(Duration::from_millis(300));
    assert!(matches!(
        third.activate().await,
        Err(ClientError::Timeout { .. })
    ));

    drop(first);
    let fourth = s.client().with_timeout(Duration::from_secs(5));
    assert_eq!(fourth.activate().await.unwrap(), ["VolumeDriver"]);
}

#[tokio::test]
async fn a_request_sent_on_a_half_closed_connection_is_answered() {
    let s = served();
    let mut stream = UnixStream::connect(&s.socket).await.unwrap();
    let req = request_bytes("/Plugin.Activate", &[("Content-Length", "0")], b"");
    stream.write_all(&req).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = common::read_answer(&mut stream).await;
    assert_eq!(answer.status, 200);
}
