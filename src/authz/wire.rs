//! The `AuthZPlugin.*` wire types, field for field as the daemon sends them.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The body of both `AuthZPlugin.AuthZReq` and `AuthZPlugin.AuthZRes`.
///
/// Every key is optional on the wire and `null` reads as absent. Policies
/// get the typed [`ApiRequest`](super::ApiRequest) instead; this type is
/// for tests and for the [daemon-playing client](crate::client). The
/// builder methods make hand-built requests read like the daemon's:
///
/// ```
/// use docker_plugin_sdk::authz::AuthzRequest;
///
/// let req = AuthzRequest::new("POST", "/v1.45/containers/create")
///     .header("Content-Type", "application/json")
///     .body(br#"{"Image":"alpine"}"#);
/// assert_eq!(req.request_body.as_deref(), Some("eyJJbWFnZSI6ImFscGluZSJ9"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzRequest {
    /// The authenticated user: the TLS client certificate's CN, if any.
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `TLS` when [`user`](Self::user) came from a client certificate.
    #[serde(
        rename = "UserAuthNMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_authn_method: Option<String>,
    /// HTTP method of the API request.
    #[serde(
        rename = "RequestMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_method: Option<String>,
    /// The raw request URI, with its query string. Spelt `RequestUri` on
    /// the wire.
    #[serde(
        rename = "RequestUri",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_uri: Option<String>,
    /// The API request body, base64.
    #[serde(
        rename = "RequestBody",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body: Option<String>,
    /// API request headers, credentials removed.
    #[serde(
        rename = "RequestHeaders",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_headers: Option<BTreeMap<String, String>>,
    /// The client's TLS certificates, each base64 of its PEM text.
    #[serde(
        rename = "RequestPeerCertificates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_peer_certificates: Option<Vec<String>>,
    /// `AuthZRes` only: the API response status; absent when zero.
    #[serde(
        rename = "ResponseStatusCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_status_code: Option<u16>,
    /// `AuthZRes` only: the API response body, base64.
    #[serde(
        rename = "ResponseBody",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_body: Option<String>,
    /// `AuthZRes` only: API response headers.
    #[serde(
        rename = "ResponseHeaders",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_headers: Option<BTreeMap<String, String>>,
}

impl AuthzRequest {
    /// A request with this method and URI and nothing else.
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            request_method: Some(method.to_owned()),
            request_uri: Some(uri.to_owned()),
            ..Self::default()
        }
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request_headers
            .get_or_insert_with(BTreeMap::new)
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sets the request body, base64-encoding it as the daemon does.
    pub fn body(mut self, bytes: &[u8]) -> Self {
        self.request_body = Some(STANDARD.encode(bytes));
        self
    }

    /// Sets a TLS-authenticated user.
    pub fn tls_user(mut self, name: &str) -> Self {
        self.user = Some(name.to_owned());
        self.user_authn_method = Some("TLS".to_owned());
        self
    }

    /// Adds a peer certificate given as PEM text.
    pub fn peer_certificate(mut self, pem: &str) -> Self {
        self.request_peer_certificates
            .get_or_insert_with(Vec::new)
            .push(STANDARD.encode(pem));
        self
    }

    /// Adds the response part, turning this into an `AuthZRes` body.
    pub fn response(mut self, status: u16, headers: &[(&str, &str)], body: Option<&[u8]>) -> Self {
        self.response_status_code = Some(status).filter(|s| *s != 0);
        self.response_headers = Some(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.response_body = body.map(|b| STANDARD.encode(b));
        self
    }
}

/// The answer to both endpoints.
///
/// The daemon reads only `Allow` and `Msg`: a missing `Allow` is a deny,
/// and `Err` is ignored in a 200 answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzResponse {
    /// Whether the API request (or response) may go ahead.
    #[serde(rename = "Allow", default)]
    pub allow: bool,
    /// Why not; shown to the user after `authorization denied by plugin
    /// NAME: `.
    #[serde(rename = "Msg", default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    /// An error text; the SDK never sets it, as the daemon ignores it.
    #[serde(rename = "Err", default, skip_serializing_if = "String::is_empty")]
    pub err: String,
}
