//! Authorization plugins over the wire, without Docker: captured daemon
//! requests, the bug-report cases, size limits, failure handling and memory.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use docker_plugin_sdk::authz::{
    ApiRequest, ApiResponse, AuthzPlugin, AuthzRequest, Body, BodyError, Decision, JsonValue,
};
use docker_plugin_sdk::{DriverError, Plugin, async_trait};

use common::{FIXTURES, Served, captured, exchange_once, request_bytes};

/// Denies container creation that it cannot check or that is privileged,
/// fails or panics on request, and allows the rest.
#[derive(Default)]
struct Checker {
    calls: AtomicUsize,
}

#[async_trait]
impl AuthzPlugin for Checker {
    async fn authz_req(&self, req: &ApiRequest) -> Result<Decision, DriverError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match req.uri.path() {
            "/fail" => return Err(DriverError::other("rules store unreachable")),
            "/panic" => panic!("policy bug"),
            "/containers/create" => {}
            _ => return Ok(Decision::allow()),
        }
        let body = match req.body.json() {
            Ok(body) => body,
            Err(BodyError::Absent) => return Ok(Decision::deny("create needs a body")),
            Err(err) => return Ok(Decision::deny(err.to_string())),
        };
        match body.get(&["HostConfig", "Privileged"]) {
            Some(JsonValue::Bool(true)) => Ok(Decision::deny("privileged")),
            _ => Ok(Decision::allow()),
        }
    }

    async fn authz_res(&self, _: &ApiRequest, res: &ApiResponse) -> Result<Decision, DriverError> {
        match res.status {
            Some(418) => Ok(Decision::deny("no teapots")),
            _ => Ok(Decision::allow()),
        }
    }
}

fn served() -> Served {
    Served::start(Plugin::new().authz(Checker::default()))
}

fn create(body: &[u8]) -> AuthzRequest {
    AuthzRequest::new("POST", "/v1.43/containers/create")
        .header("Content-Type", "application/json")
        .body(body)
}

#[tokio::test]
async fn activation_lists_authz_in_the_daemons_spelling() {
    let s = served();
    assert_eq!(s.client().activate().await.unwrap(), ["authz"]);
}

#[tokio::test]
async fn every_captured_authz_request_is_answered_and_decoded() {
    let s = served();
    for file in FIXTURES {
        let authz: Vec<_> = captured(file)
            .into_iter()
            .filter(|c| c.endpoint().starts_with("AuthZPlugin."))
            .collect();
        assert_eq!(authz.len(), 26, "{file}");
        for req in authz {
            let wire: AuthzRequest = serde_json::from_str(&req.body).unwrap();
            let typed = ApiRequest::from_wire(&wire).unwrap();
            assert!(typed.uri.api_version().is_some() || typed.uri.path() == "/_ping");
            let mut privileged = false;
            if typed.uri.path() == "/containers/create" {
                let body = typed.body.json().unwrap();
                assert_eq!(body.get(&["Image"]).and_then(JsonValue::as_str), Some("bb"));
                privileged =
                    body.get(&["HostConfig", "Privileged"]) == Some(&JsonValue::Bool(true));
            }

            let answer = exchange_once(&s.socket, &req.bytes()).await;
            assert_eq!(answer.status, 200, "{file} {}", req.body);
            // 20.10's capture ran a privileged container, which the checker
            // refuses in the request phase.
            let denied = privileged && req.endpoint() == "AuthZPlugin.AuthZReq";
            assert_eq!(answer.json()["Allow"], !denied, "{file} {}", req.body);
            if typed.method == "HEAD" {
                assert_eq!(typed.body, Body::Absent);
            }
        }
    }
}

#[tokio::test]
async fn bodiless_requests_are_their_own_case_not_a_parse_error() {
    // From the case "Authz plugin breaks docker login".
    let s = served();
    let login = r#"{"User":"u","RequestMethod":"POST","RequestUri":"/v1.43/auth",
        "RequestHeaders":{"Content-Type":"application/json"}}"#;
    let login_null = r#"{"User":"u","RequestMethod":"POST","RequestUri":"/v1.43/auth",
        "RequestHeaders":{"Content-Type":"application/json"},"RequestBody":null}"#;
    for body in [login, login_null] {
        let answer = exchange_once(&s.socket, &authz_req_bytes(body)).await;
        assert_eq!(
            (answer.status, answer.json()["Allow"].as_bool()),
            (200, Some(true))
        );
    }

    let chunked = AuthzRequest::new("POST", "/v1.43/containers/create")
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked");
    let answer = s.client().authz().authz_req(&chunked).await.unwrap();
    assert!(!answer.allow);
    assert_eq!(answer.msg, "create needs a body");

    let mut alpine = chunked.clone();
    alpine.request_body = Some("eyJJbWFnZSI6ImFscGluZSJ9".into());
    let typed = ApiRequest::from_wire(&alpine).unwrap();
    assert_eq!(typed.body.bytes(), Some(&br#"{"Image":"alpine"}"#[..]));
    assert!(s.client().authz().authz_req(&alpine).await.unwrap().allow);
}

fn authz_req_bytes(body: &str) -> Vec<u8> {
    let len = body.len().to_string();
    request_bytes(
        "/AuthZPlugin.AuthZReq",
        &[("Host", ""), ("Content-Length", &len)],
        body.as_bytes(),
    )
}

#[tokio::test]
async fn odd_key_casing_and_duplicates_are_read_as_the_daemon_reads_them() {
    let s = served();
    let a = s.client();
    for (body, allow) in [
        (
            &br#"{"Image":"a","HostConfig":{"Privileged":false,"privileged":true}}"#[..],
            false,
        ),
        (br#"{"Image":"a","hostconfig":{"PRIVILEGED":true}}"#, false),
        (
            br#"{"Image":"a","HostConfig":{"Privileged":true},"HostConfig":{}}"#,
            false,
        ),
        (
            br#"{"Image":"a","HostConfig":{"Privileged":true,"privileged":false}}"#,
            true,
        ),
        (b"not json at all", false),
        (b"\x1f\x8b\x08\x00 gzip", false),
    ] {
        let answer = a.authz().authz_req(&create(body)).await.unwrap();
        assert_eq!(answer.allow, allow, "{}", String::from_utf8_lossy(body));
        assert!(answer.allow || !answer.msg.is_empty());
    }
}

#[tokio::test]
async fn a_four_mib_body_is_answered() {
    // From the case "Authz plugin fails on large bodies".
    let s = served();
    let mut body = br#"{"Image":"a","Env":[""#.to_vec();
    body.resize(4 * 1024 * 1024 - 3, b'x');
    body.extend_from_slice(br#""]}"#);
    assert_eq!(body.len(), 4 * 1024 * 1024);
    let answer = s.client().authz().authz_req(&create(&body)).await.unwrap();
    assert!(answer.allow, "{}", answer.msg);

    // Both phases carry the request body; the response phase must fit too.
    let res = create(&body).response(201, &[("Content-Type", "application/json")], Some(b"{}"));
    assert!(s.client().authz().authz_res(&res).await.unwrap().allow);
}

#[tokio::test]
async fn binary_and_failed_responses_are_handled_normally() {
    let s = served();
    let a = s.client();
    let archive = AuthzRequest::new("GET", "/v1.43/containers/c1/archive?path=/etc").response(
        200,
        &[("Content-Type", "application/x-tar")],
        None,
    );
    assert!(a.authz().authz_res(&archive).await.unwrap().allow);
    let failed = AuthzRequest::new("GET", "/v1.43/containers/json").response(500, &[], None);
    assert!(a.authz().authz_res(&failed).await.unwrap().allow);
    let teapot = AuthzRequest::new("GET", "/v1.43/containers/json").response(418, &[], None);
    let answer = a.authz().authz_res(&teapot).await.unwrap();
    assert_eq!((answer.allow, answer.msg.as_str()), (false, "no teapots"));
}

#[tokio::test]
async fn policy_errors_and_panics_deny_with_a_message_and_serving_goes_on() {
    let s = served();
    let a = s.client();
    let answer = a
        .authz()
        .authz_req(&AuthzRequest::new("GET", "/fail"))
        .await
        .unwrap();
    assert!(!answer.allow);
    assert_eq!(
        answer.msg,
        "the authorization policy failed: rules store unreachable"
    );

    let answer = a
        .authz()
        .authz_req(&AuthzRequest::new("GET", "/panic"))
        .await
        .unwrap();
    assert!(!answer.allow);
    assert!(
        answer.msg.contains("failed unexpectedly: policy bug"),
        "{}",
        answer.msg
    );

    let answer = a
        .authz()
        .authz_req(&AuthzRequest::new("GET", "/_ping"))
        .await
        .unwrap();
    assert!(answer.allow);
}

#[tokio::test]
async fn requests_that_do_not_decode_are_denied_with_a_clear_message() {
    let s = served();
    let a = s.client();
    let mut bad_base64 = create(b"{}");
    bad_base64.request_body = Some("%%%".into());
    let answer = a.authz().authz_req(&bad_base64).await.unwrap();
    assert!(!answer.allow);
    assert!(
        answer.msg.contains("invalid RequestBody: not base64"),
        "{}",
        answer.msg
    );

    let bad_uri = AuthzRequest::new("GET", "/containers/%zz/json");
    let answer = a.authz().authz_req(&bad_uri).await.unwrap();
    assert!(
        !answer.allow && answer.msg.contains("invalid RequestUri"),
        "{}",
        answer.msg
    );

    let bad_cert = AuthzRequest::new("GET", "/_ping").peer_certificate("not a certificate");
    let answer = a.authz().authz_req(&bad_cert).await.unwrap();
    assert!(!answer.allow && answer.msg.contains("RequestPeerCertificates"));

    // Not JSON at all: the generic decoder answers 400, which the daemon
    // also takes as a deny; the message says what was wrong.
    let raw = a
        .call_raw("AuthZPlugin.AuthZReq", &b"{not json"[..])
        .await
        .unwrap();
    assert_eq!(raw.status, 400);
    let text = String::from_utf8_lossy(&raw.body);
    assert!(
        text.contains("AuthZPlugin.AuthZReq: invalid request body"),
        "{text}"
    );
}

/// A self-signed certificate with subject CN=auditor, made with openssl for
/// these tests; its key was thrown away.
const AUDITOR_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBejCCAR+gAwIBAgIUKfbvtkT6C4Q2tgxjdC3ZNvRDbJEwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHYXVkaXRvcjAeFw0yNjEyMDQxNjE3MThaFw0zNjEyMDExNjE3
MThaMBIxEDAOBgNVBAMMB2F1ZGl0b3IwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAT0lRhGPnnagLHCASeIAcNbvw11pBi4tigRedRwR9f711pefZHdLPbhl6+8obd4
Lt2uNaenhqyPXysOJTO1X+O2o1MwUTAdBgNVHQ4EFgQU0TmaMp3NYd1re9uTshIP
tdyqESIwHwYDVR0jBBgwFoAU0TmaMp3NYd1re9uTshIPtdyqESIwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAk13E96O9srps2N3LAp8yAGicC5R/
RuQsCrfNdL9S5N8CIQDIPzEnMeB21kVcWd7jU6ZlM7AqQJVN6TTR3rWYm+WR3g==
-----END CERTIFICATE-----
";

#[tokio::test]
async fn peer_certificates_arrive_as_pem_and_der() {
    let wire = AuthzRequest::new("GET", "/v1.45/info")
        .tls_user("auditor")
        .peer_certificate(AUDITOR_PEM);
    let req = ApiRequest::from_wire(&wire).unwrap();
    assert_eq!(req.tls_user(), Some("auditor"));
    assert_eq!(req.peer_certificates.len(), 1);
    let cert = &req.peer_certificates[0];
    assert_eq!(cert.pem, AUDITOR_PEM);
    // A DER certificate is one SEQUENCE; the subject's CN is inside it.
    assert_eq!(cert.der[0], 0x30);
    assert!(cert.der.windows(7).any(|w| w == b"auditor"));

    let mut no_tls = wire.clone();
    no_tls.user_authn_method = None;
    assert_eq!(ApiRequest::from_wire(&no_tls).unwrap().tls_user(), None);
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_upgraded_exec_requests_leave_memory_flat() {
    // From the case: exec and attach get an AuthZReq and, while the stream
    // is open, no AuthZRes. Nothing may wait for it.
    let s = served();
    let client = s.client();
    let exec = AuthzRequest::new("POST", "/v1.43/exec/e1/start")
        .header("Upgrade", "tcp")
        .header("Connection", "Upgrade")
        .header("Content-Type", "application/json")
        .body(br#"{"Detach":false,"Tty":true}"#);
    let send = |n: usize| {
        let (client, exec) = (&client, &exec);
        async move {
            for _ in 0..n {
                assert!(client.authz().authz_req(exec).await.unwrap().allow);
            }
        }
    };

    send(1_000).await;
    let before = resident_kib();
    tokio::time::timeout(Duration::from_secs(120), send(10_000))
        .await
        .expect("10,000 requests in time");
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "resident memory grew by {grown} KiB");
}
