//! Authorization plugins: the [`AuthzPlugin`] trait, the typed request it
//! decides on, and the `AuthZPlugin.*` wire types.
//!
//! A daemon started with `--authorization-plugin=NAME` asks the plugin about
//! every API request twice: `AuthZReq` before the handler runs, `AuthZRes`
//! after it. The SDK decodes each into an [`ApiRequest`] (and an
//! [`ApiResponse`]), calls the policy, and answers with its [`Decision`].
//! It fails closed: a malformed request, a policy error or a policy panic is
//! answered with a deny that says why, never with an allow.
//!
//! See `docs/authz.md` ([`authz_guide`](crate::guides::authz_guide)) for
//! what can be decided in each phase and the bypasses a policy must not
//! fall for.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use crate::error::DriverError;
use crate::plugin::{Kind, Plugin};

mod json;
mod request;
mod wire;

pub use json::{JsonError, JsonValue, field_matches};
pub use request::{
    ApiRequest, ApiResponse, Body, BodyError, Headers, PeerCertificate, RequestError, Uri, User,
};
pub use wire::{AuthzRequest, AuthzResponse};

/// The name `/Plugin.Activate` lists for authorization plugins.
pub const IMPLEMENTS: &str = "authz";

/// The request-phase endpoint.
pub const AUTHZ_REQ: &str = "AuthZPlugin.AuthZReq";

/// The response-phase endpoint.
pub const AUTHZ_RES: &str = "AuthZPlugin.AuthZRes";

/// An authorization policy: decides whether each Docker API request (and
/// its response) may go ahead.
///
/// # Contract
///
/// - [`authz_req`](Self::authz_req) is required; it runs before the API
///   handler and is the only phase that can prevent an action.
///   [`authz_res`](Self::authz_res) defaults to allowing: by then the
///   action has happened, and a deny can only withhold the answer.
/// - Returning `Err` or panicking denies the request with a message that
///   says the policy failed; the daemon never sees an allow it did not get.
///   The server keeps serving.
/// - Calls arrive concurrently, from every API client of the daemon. The
///   daemon waits for an answer without a time limit, and the user's
///   command waits with it: keep decisions fast and never block on I/O
///   that can hang.
/// - The two phases of one API request are not linked, and a request may
///   get no `AuthZRes` at all (hijacked `attach`/`exec` streams end it
///   late or never). Keep no per-request state between them.
/// - Never log request bodies or headers wholesale: they carry secrets
///   such as environment variables.
#[async_trait]
pub trait AuthzPlugin: Send + Sync + 'static {
    /// `AuthZPlugin.AuthZReq`: may this API request run?
    async fn authz_req(&self, req: &ApiRequest) -> Result<Decision, DriverError>;

    /// `AuthZPlugin.AuthZRes`: may the client see this response?
    ///
    /// Defaults to allowing.
    async fn authz_res(
        &self,
        req: &ApiRequest,
        res: &ApiResponse,
    ) -> Result<Decision, DriverError> {
        let _ = (req, res);
        Ok(Decision::allow())
    }
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    allow: bool,
    msg: String,
}

impl Decision {
    /// Let the request go ahead.
    pub fn allow() -> Self {
        Self {
            allow: true,
            msg: String::new(),
        }
    }

    /// Refuse it; the user sees `authorization denied by plugin NAME:
    /// <msg>`. Say which rule refused and why.
    pub fn deny(msg: impl Into<String>) -> Self {
        Self {
            allow: false,
            msg: msg.into(),
        }
    }

    /// Whether this allows.
    pub fn is_allowed(&self) -> bool {
        self.allow
    }

    /// The denial message (empty for an allow).
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl From<Decision> for AuthzResponse {
    fn from(d: Decision) -> Self {
        Self {
            allow: d.allow,
            msg: d.msg,
            err: String::new(),
        }
    }
}

impl Plugin {
    /// Serves `policy` for `AuthZPlugin.*` on this plugin's socket.
    pub fn authz<P: AuthzPlugin>(self, policy: P) -> Self {
        self.authz_shared(Arc::new(policy))
    }

    /// Like [`Plugin::authz`], for a policy the caller keeps a handle on
    /// (to reload its rules, for example).
    pub fn authz_shared<P: AuthzPlugin>(self, policy: Arc<P>) -> Self {
        self.register::<AuthzKind>(|r| {
            r.add(AUTHZ_REQ, &policy, |p, wire: AuthzRequest| async move {
                Ok::<_, DriverError>(AuthzResponse::from(request_phase(p, wire).await))
            });
            r.add(AUTHZ_RES, &policy, |p, wire: AuthzRequest| async move {
                Ok::<_, DriverError>(AuthzResponse::from(response_phase(p, wire).await))
            });
        })
    }
}

struct AuthzKind;

impl Kind for AuthzKind {
    const IMPLEMENTS: &'static str = IMPLEMENTS;
}

async fn request_phase<P: AuthzPlugin>(policy: Arc<P>, wire: AuthzRequest) -> Decision {
    let req = match ApiRequest::from_wire(&wire) {
        Ok(req) => req,
        Err(err) => return malformed(AUTHZ_REQ, err),
    };
    drop(wire);

    // Its own task, so that a panic in the policy becomes a deny here
    // rather than a bare 500 from the server.
    let span = decision_span(&req);
    let call = async move { policy.authz_req(&req).await };
    let outcome = tokio::spawn(call.instrument(span.clone())).await;
    span.in_scope(|| settle(AUTHZ_REQ, outcome))
}

async fn response_phase<P: AuthzPlugin>(policy: Arc<P>, wire: AuthzRequest) -> Decision {
    let parsed =
        ApiRequest::from_wire(&wire).and_then(|req| Ok((req, ApiResponse::from_wire(&wire)?)));
    let (req, res) = match parsed {
        Ok(both) => both,
        Err(err) => return malformed(AUTHZ_RES, err),
    };
    drop(wire);

    let span = decision_span(&req);
    let call = async move { policy.authz_res(&req, &res).await };
    let outcome = tokio::spawn(call.instrument(span.clone())).await;
    span.in_scope(|| settle(AUTHZ_RES, outcome))
}

/// Method and path only: the URI's query and the body may hold secrets.
fn decision_span(req: &ApiRequest) -> tracing::Span {
    tracing::debug_span!("authz", method = %req.method, path = %req.uri.path())
}

fn malformed(endpoint: &str, err: RequestError) -> Decision {
    tracing::warn!(endpoint, error = %err, "denied a request that did not decode");
    Decision::deny(format!(
        "{endpoint}: the plugin could not read the request: {err}"
    ))
}

/// Turns the policy's outcome into a decision: errors and panics deny.
fn settle(
    endpoint: &str,
    outcome: Result<Result<Decision, DriverError>, tokio::task::JoinError>,
) -> Decision {
    match outcome {
        Ok(Ok(decision)) => {
            tracing::debug!(endpoint, allow = decision.allow, "decided");
            decision
        }
        Ok(Err(err)) => {
            tracing::warn!(endpoint, error = %err, "policy failed; denying");
            Decision::deny(format!("the authorization policy failed: {err}"))
        }
        Err(join) => {
            let msg = panic_text(join);
            tracing::error!(endpoint, panic = %msg, "policy panicked; denying");
            Decision::deny(format!(
                "the authorization policy failed unexpectedly: {msg}"
            ))
        }
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => match payload.downcast::<&str>() {
                Ok(s) => (*s).to_owned(),
                Err(_) => "panic".to_owned(),
            },
        },
        Err(join) => join.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deny_always_carries_allow_false_on_the_wire() {
        let v = serde_json::to_value(AuthzResponse::from(Decision::deny("no"))).unwrap();
        assert_eq!(v, serde_json::json!({"Allow": false, "Msg": "no"}));
        let v = serde_json::to_value(AuthzResponse::from(Decision::allow())).unwrap();
        assert_eq!(v, serde_json::json!({"Allow": true}));
    }

    #[test]
    fn a_missing_allow_reads_as_deny() {
        let r: AuthzResponse = serde_json::from_str(r#"{"Msg":"x"}"#).unwrap();
        assert!(!r.allow);
    }
}
