//! Typed `AuthZPlugin.*` calls.

use hyper::StatusCode;

use super::{Client, ClientError, RawResponse};
use crate::authz::{AUTHZ_REQ, AUTHZ_RES, AuthzRequest, AuthzResponse, JsonValue};

/// `AuthZPlugin.*` calls, answered as the daemon reads them.
///
/// The daemon denies on anything but a 200, and in a 200 reads only
/// `Allow` (missing means deny) and `Msg`; an `Err` there is ignored. These
/// calls do the same, so a test sees exactly the decision a daemon would
/// act on.
#[derive(Debug, Clone, Copy)]
pub struct AuthzClient<'a> {
    client: &'a Client,
}

impl<'a> AuthzClient<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// `AuthZPlugin.AuthZReq`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Plugin`] for a non-200 answer (which the daemon takes
    /// as a deny), [`ClientError::Decode`] for a 200 that is not the
    /// answer object, [`ClientError::Transport`] if no answer arrives.
    pub async fn authz_req(&self, req: &AuthzRequest) -> Result<AuthzResponse, ClientError> {
        self.send(AUTHZ_REQ, req).await
    }

    /// `AuthZPlugin.AuthZRes`.
    ///
    /// # Errors
    ///
    /// As for [`AuthzClient::authz_req`].
    pub async fn authz_res(&self, req: &AuthzRequest) -> Result<AuthzResponse, ClientError> {
        self.send(AUTHZ_RES, req).await
    }

    async fn send(&self, endpoint: &str, req: &AuthzRequest) -> Result<AuthzResponse, ClientError> {
        let mut body = serde_json::to_vec(req).map_err(|source| ClientError::Decode {
            endpoint: endpoint.to_owned(),
            source,
        })?;
        body.push(b'\n');
        let raw = self.client.call_raw(endpoint, body).await?;
        judge(endpoint, raw)
    }
}

fn judge(endpoint: &str, raw: RawResponse) -> Result<AuthzResponse, ClientError> {
    let decode_error = |msg: &str| ClientError::Decode {
        endpoint: endpoint.to_owned(),
        source: <serde_json::Error as serde::de::Error>::custom(msg),
    };
    // Keys are read case-insensitively, last one winning, as the daemon's
    // decoder reads them.
    let parsed = JsonValue::parse(&raw.body)
        .ok()
        .filter(|v| v.members().is_some());
    let text = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(&[key]))
            .and_then(JsonValue::as_str)
            .unwrap_or_default()
            .to_owned()
    };

    if raw.status != StatusCode::OK {
        let err = text("Err");
        let message = if err.is_empty() {
            String::from_utf8_lossy(&raw.body).trim().to_owned()
        } else {
            err
        };
        return Err(ClientError::Plugin {
            endpoint: endpoint.to_owned(),
            status: raw.status.as_u16(),
            message,
        });
    }
    let Some(answer) = &parsed else {
        return Err(decode_error("the answer is not a JSON object"));
    };
    let allow = match answer.get(&["Allow"]) {
        None => false,
        Some(JsonValue::Bool(allow)) => *allow,
        Some(_) => return Err(decode_error("Allow is not a boolean")),
    };
    Ok(AuthzResponse {
        allow,
        msg: text("Msg"),
        err: text("Err"),
    })
}
