//! The daemon-playing client judges odd answers as the daemon would, and
//! never hangs or balloons on a misbehaving plugin.

use std::time::Duration;

use docker_plugin_sdk::client::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Serves `answer` (raw HTTP bytes) to every request on a temporary socket.
fn canned(answer: &'static [u8]) -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = stream.write_all(answer).await;
                    // Hold the connection open, as a stuck plugin would.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    let client = Client::new(&path).with_timeout(Duration::from_secs(5));
    (dir, client)
}

/// A 200 answer carrying `body`.
fn ok_with(body: &str) -> &'static [u8] {
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(answer.into_bytes().into_boxed_slice())
}

async fn plugin_message(answer: &'static [u8]) -> String {
    let (_dir, client) = canned(answer);
    match client.volume().remove("v").await {
        Err(ClientError::Plugin { message, .. }) => message,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[tokio::test]
async fn empty_error_answers_still_say_something() {
    let msg = plugin_message(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    assert!(msg.contains("204") && msg.contains("empty"), "{msg}");
    let msg = plugin_message(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").await;
    assert!(msg.contains("500"), "{msg}");
    let msg = plugin_message(b"HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\nplain bad").await;
    assert_eq!(msg, "plain bad");
}

#[tokio::test]
async fn err_keys_match_in_any_case_and_the_last_one_wins() {
    let msg = plugin_message(ok_with(r#"{"ERR":"upper","Err":"exact"}"#)).await;
    assert_eq!(msg, "exact");
    let msg = plugin_message(ok_with(r#"{"Err":"exact","eRR":"later"}"#)).await;
    assert_eq!(msg, "later");
    let msg = plugin_message(ok_with(r#"{"Err":"set","Err":null}"#)).await;
    assert_eq!(msg, "set");
}

#[tokio::test]
async fn an_err_that_is_not_a_string_is_malformed_not_success() {
    let (_dir, client) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"Err\":5}");
    let err = client.volume().remove("v").await.unwrap_err();
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn an_empty_200_is_an_error_as_for_the_daemon() {
    let (_dir, client) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let err = client.volume().remove("v").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn a_huge_answer_is_refused_instead_of_buffered() {
    let (_dir, client) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\n\r\n{");
    let err = client.volume().list().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn a_plugin_that_never_answers_times_out() {
    let (_dir, client) = canned(b"");
    let client = client.with_timeout(Duration::from_millis(300));
    let err = client.activate().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}
