//! The typed view of what an authorization plugin is asked about: the API
//! request ([`ApiRequest`]) and, in the response phase, the API response
//! ([`ApiResponse`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use super::json::{JsonError, JsonValue};
use super::wire::AuthzRequest;

/// Why an `AuthZReq` or `AuthZRes` body could not be turned into a typed
/// request; the SDK denies such requests with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct RequestError {
    field: &'static str,
    reason: String,
}

impl RequestError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The Docker API request being authorized.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiRequest {
    /// HTTP method as the client sent it, e.g. `POST`.
    pub method: String,
    /// The request URI, parsed.
    pub uri: Uri,
    /// Request headers, minus the credentials the daemon strips
    /// (`Authorization`, `X-Registry-Auth`, `X-Registry-Config`).
    pub headers: Headers,
    /// Who made the request, when the daemon knows.
    pub user: Option<User>,
    /// The client's TLS certificate chain, leaf first; empty on the Unix
    /// socket and on TCP without client certificates.
    pub peer_certificates: Vec<PeerCertificate>,
    /// The request body the daemon forwarded.
    pub body: Body,
}

/// The Docker API response, as the `AuthZRes` phase sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiResponse {
    /// HTTP status of the API response; `None` when the daemon sent none
    /// (it leaves out a zero status, e.g. for hijacked connections).
    pub status: Option<u16>,
    /// Response headers.
    pub headers: Headers,
    /// The part of the response body the daemon still held; see the
    /// authorization guide for why it may be partial or absent.
    pub body: Body,
}

impl ApiRequest {
    /// Builds the typed request from the wire object of either endpoint.
    ///
    /// # Errors
    ///
    /// [`RequestError`] if the URI, the body's base64 or a peer certificate
    /// does not decode.
    pub fn from_wire(wire: &AuthzRequest) -> Result<Self, RequestError> {
        let user = match wire.user.as_deref() {
            Some(name) if !name.is_empty() => Some(User {
                name: name.to_owned(),
                authn_method: wire.user_authn_method.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        let peer_certificates = wire
            .request_peer_certificates
            .iter()
            .flatten()
            .map(|c| PeerCertificate::from_wire(c))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            method: wire.request_method.clone().unwrap_or_default(),
            uri: Uri::parse(wire.request_uri.as_deref().unwrap_or_default())?,
            headers: Headers(wire.request_headers.clone().unwrap_or_default()),
            user,
            peer_certificates,
            body: Body::from_wire("RequestBody", wire.request_body.as_deref())?,
        })
    }

    /// The TLS client certificate's common name, when the daemon
    /// authenticated the client that way (`UserAuthNMethod` `TLS`). On the
    /// Unix socket there is no user: everyone who can open it is root.
    pub fn tls_user(&self) -> Option<&str> {
        self.user
            .as_ref()
            .filter(|u| u.authn_method == "TLS")
            .map(|u| u.name.as_str())
    }

    /// Whether the method is `method`, ignoring case.
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }
}

impl ApiResponse {
    /// Builds the typed response from an `AuthZRes` wire object.
    ///
    /// # Errors
    ///
    /// [`RequestError`] if the body's base64 does not decode.
    pub fn from_wire(wire: &AuthzRequest) -> Result<Self, RequestError> {
        Ok(Self {
            status: wire.response_status_code.filter(|s| *s != 0),
            headers: Headers(wire.response_headers.clone().unwrap_or_default()),
            body: Body::from_wire("ResponseBody", wire.response_body.as_deref())?,
        })
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The name; for TLS, the client certificate's subject common name.
    pub name: String,
    /// How the daemon authenticated it: `TLS`, or empty.
    pub authn_method: String,
}

/// An API body: absent, or the exact bytes the client sent.
///
/// The daemon forwards a body only for `application/json` requests with a
/// known length within its limit, and never for `/auth`. "No body" is
/// therefore not "empty JSON": the API handler may still read a body the
/// plugin never saw (chunked, or too large for older daemons). A rule that
/// needs the body must deny when it is [`Body::Absent`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Body {
    /// The daemon forwarded no body (or an empty one).
    #[default]
    Absent,
    /// The decoded body bytes.
    Present(Bytes),
}

/// Why a body could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The daemon forwarded no body.
    #[error("the daemon forwarded no body")]
    Absent,
    /// The body is not JSON.
    #[error(transparent)]
    NotJson(#[from] JsonError),
}

impl Body {
    fn from_wire(field: &'static str, base64: Option<&str>) -> Result<Self, RequestError> {
        match base64 {
            None | Some("") => Ok(Body::Absent),
            Some(text) => STANDARD
                .decode(text)
                .map(|bytes| Body::Present(Bytes::from(bytes)))
                .map_err(|e| RequestError::new(field, format!("not base64: {e}"))),
        }
    }

    /// The bytes, or `None` when absent.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Absent => None,
            Body::Present(bytes) => Some(bytes),
        }
    }

    /// Whether the daemon forwarded no body.
    pub fn is_absent(&self) -> bool {
        matches!(self, Body::Absent)
    }

    /// The body read as JSON the daemon's way; see [`JsonValue`].
    ///
    /// # Errors
    ///
    /// [`BodyError::Absent`] when there is no body, [`BodyError::NotJson`]
    /// when it is not JSON. Never an empty object in place of either.
    pub fn json(&self) -> Result<JsonValue, BodyError> {
        match self {
            Body::Absent => Err(BodyError::Absent),
            Body::Present(bytes) => Ok(JsonValue::parse(bytes)?),
        }
    }
}

/// Header names and values; names in Go's canonical form (`Content-Type`).
/// The daemon keeps the last value of a repeated header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub BTreeMap<String, String>);

impl Headers {
    /// The value of header `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A TLS client certificate.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The PEM text the daemon sent (one `CERTIFICATE` block).
    pub pem: String,
    /// The DER bytes inside it, for an X.509 parser.
    pub der: Vec<u8>,
}

impl PeerCertificate {
    /// Decodes one `RequestPeerCertificates` element: base64 of PEM text.
    fn from_wire(base64: &str) -> Result<Self, RequestError> {
        let invalid = |reason: String| RequestError::new("RequestPeerCertificates", reason);
        let pem = STANDARD
            .decode(base64)
            .map_err(|e| invalid(format!("not base64: {e}")))?;
        let pem = String::from_utf8(pem).map_err(|_| invalid("PEM is not text".into()))?;
        let der =
            pem_certificate(&pem).ok_or_else(|| invalid("no PEM CERTIFICATE block".into()))?;
        Ok(Self { pem, der })
    }
}

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

/// The DER bytes of the single `CERTIFICATE` block in `pem`.
fn pem_certificate(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let len = pem[start..].find(END)?;
    let inner: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(inner).ok().filter(|der| !der.is_empty())
}

/// A request URI split the way the daemon's router sees it.
///
/// The router matches the percent-decoded path, with or without a
/// `/v<version>` prefix, and clients may send an absolute URI
/// (`http://host/path`). [`Uri::path`] is therefore decoded, cleaned of
/// `.`, `..`, repeated and trailing slashes, and stripped of the version
/// prefix, so that `/v1.41/%63ontainers//create` and `/containers/create`
/// look the same to a policy. [`Uri::raw`] keeps what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    raw: String,
    api_version: Option<String>,
    path: String,
    query: Vec<(String, String)>,
}

impl Uri {
    /// Parses a request URI as the daemon's HTTP server does.
    ///
    /// # Errors
    ///
    /// [`RequestError`] for an invalid percent escape, a path that is not
    /// UTF-8 once decoded, or a URI that is neither a path nor absolute;
    /// the daemon answers such requests with an error itself.
    pub fn parse(raw: &str) -> Result<Self, RequestError> {
        let invalid = |reason: &str| RequestError::new("RequestUri", format!("{reason}: {raw:?}"));
        let target = match raw.split_once("://") {
            Some((scheme, rest)) if !raw.starts_with('/') && is_scheme(scheme) => {
                rest.find('/').map_or("/", |i| &rest[i..])
            }
            _ if raw.starts_with('/') => raw,
            _ => return Err(invalid("not an absolute path or URI")),
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));

        let path = percent_decode(path, false).ok_or_else(|| invalid("bad escape in path"))?;
        let cleaned = clean(&path);
        let (api_version, path) = split_version(&cleaned);
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true).ok_or_else(|| invalid("bad escape in query"))?;
            let v = percent_decode(v, true).ok_or_else(|| invalid("bad escape in query"))?;
            pairs.push((k, v));
        }
        Ok(Self {
            raw: raw.to_owned(),
            api_version,
            path,
            query: pairs,
        })
    }

    /// The URI exactly as sent.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The API version of a `/v1.45/...` path, without the `v`.
    pub fn api_version(&self) -> Option<&str> {
        self.api_version.as_deref()
    }

    /// The decoded, cleaned path without the version prefix, e.g.
    /// `/containers/create`; always starts with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Query parameters in order, decoded.
    pub fn query(&self) -> &[(String, String)] {
        &self.query
    }

    /// The first value of query parameter `name`, which is the one the
    /// daemon's handlers read.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Decodes `%XX` escapes (and `+` as a space in queries); `None` for a bad
/// escape or a result that is not UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Lexically resolves `.`, `..` and empty segments; the result starts with
/// `/` and has no trailing slash (except the root itself).
fn clean(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Splits a `/v1.41` prefix off a cleaned path, as the router's
/// `/v{version:[0-9.]+}` routes do.
fn split_version(path: &str) -> (Option<String>, String) {
    let rest = &path[1..];
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match first.strip_prefix('v') {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            (Some(v.to_owned()), format!("/{tail}"))
        }
        _ => (None, path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_strips_the_version_and_splits_the_query() {
        let u = Uri::parse("/v1.43/images/create?fromSrc=-&repo=bb%3Alatest").unwrap();
        assert_eq!(u.api_version(), Some("1.43"));
        assert_eq!(u.path(), "/images/create");
        assert_eq!(u.query_value("repo"), Some("bb:latest"));
        assert_eq!(u.query_value("fromSrc"), Some("-"));
    }

    #[test]
    fn uri_path_is_decoded_and_cleaned_like_the_router_sees_it() {
        for raw in [
            "/v1.41/%63ontainers/create",
            "/v1.41//containers/./create/",
            "/v1.41/images/../containers/create",
            "http://docker/v1.41/containers/create",
            "/containers/create",
        ] {
            assert_eq!(
                Uri::parse(raw).unwrap().path(),
                "/containers/create",
                "{raw}"
            );
        }
        assert_eq!(Uri::parse("/_ping").unwrap().path(), "/_ping");
        assert_eq!(Uri::parse("/v1.41").unwrap().path(), "/");
        assert_eq!(Uri::parse("/version").unwrap().api_version(), None);
    }

    #[test]
    fn bad_uris_are_errors() {
        for raw in ["", "containers/json", "/a%zz", "/a%", "/%ff%fe", "/x?a=%g1"] {
            assert!(Uri::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn the_first_query_value_is_the_one_handlers_read() {
        let u = Uri::parse("/containers/json?all=1&all=0&a+b=c+d").unwrap();
        assert_eq!(u.query_value("all"), Some("1"));
        assert_eq!(u.query_value("a b"), Some("c d"));
    }

    #[test]
    fn bodies_distinguish_absent_from_present() {
        assert_eq!(Body::from_wire("RequestBody", None).unwrap(), Body::Absent);
        assert_eq!(
            Body::from_wire("RequestBody", Some("")).unwrap(),
            Body::Absent
        );
        let b = Body::from_wire("RequestBody", Some("eyJJbWFnZSI6ImFscGluZSJ9")).unwrap();
        assert_eq!(b.bytes(), Some(&br#"{"Image":"alpine"}"#[..]));
        assert!(Body::from_wire("RequestBody", Some("not base64!")).is_err());
        assert_eq!(Body::Absent.json(), Err(BodyError::Absent));
    }

    #[test]
    fn headers_are_found_in_any_case() {
        let h = Headers([("Content-Type".to_owned(), "application/json".to_owned())].into());
        assert_eq!(h.get("content-type"), Some("application/json"));
        assert_eq!(h.get("Upgrade"), None);
    }
}
