//! Typed `IpamDriver.*` calls.
//!
//! The daemon judges IPAM answers differently from the others: a 200 is a
//! failure when its `Error` is non-empty, and an `Err` in a 200 is ignored.
//! These calls do the same.

use std::net::IpAddr;

use bytes::Bytes;

use super::{Client, ClientError, interpret_with};
use crate::ipam::{
    AddressSpaces, Capabilities, Empty, ReleaseAddressRequest, ReleasePoolRequest,
    RequestAddressRequest, RequestAddressResponse, RequestPoolRequest, RequestPoolResponse,
};

/// The key of a 200 answer that carries an IPAM error.
const ERROR_KEY: &str = "error";

/// `IpamDriver.*` calls with typed arguments and answers.
#[derive(Debug, Clone, Copy)]
pub struct IpamClient<'a> {
    client: &'a Client,
}

impl<'a> IpamClient<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// `IpamDriver.GetCapabilities`, with the daemon's empty body.
    ///
    /// # Errors
    ///
    /// As for [`Client::call`], with `Error` in place of `Err` for a 200.
    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        self.no_arguments("IpamDriver.GetCapabilities").await
    }

    /// `IpamDriver.GetDefaultAddressSpaces`, with the daemon's empty body.
    ///
    /// # Errors
    ///
    /// As for [`IpamClient::capabilities`].
    pub async fn default_address_spaces(&self) -> Result<AddressSpaces, ClientError> {
        self.no_arguments("IpamDriver.GetDefaultAddressSpaces")
            .await
    }

    /// `IpamDriver.RequestPool`.
    ///
    /// # Errors
    ///
    /// As for [`IpamClient::capabilities`].
    pub async fn request_pool(
        &self,
        req: &RequestPoolRequest,
    ) -> Result<RequestPoolResponse, ClientError> {
        self.call("IpamDriver.RequestPool", req).await
    }

    /// `IpamDriver.ReleasePool`.
    ///
    /// # Errors
    ///
    /// As for [`IpamClient::capabilities`].
    pub async fn release_pool(&self, pool_id: &str) -> Result<(), ClientError> {
        let req = ReleasePoolRequest {
            pool_id: pool_id.to_owned(),
        };
        self.call::<_, Empty>("IpamDriver.ReleasePool", &req)
            .await
            .map(drop)
    }

    /// `IpamDriver.RequestAddress`.
    ///
    /// # Errors
    ///
    /// As for [`IpamClient::capabilities`].
    pub async fn request_address(
        &self,
        req: &RequestAddressRequest,
    ) -> Result<RequestAddressResponse, ClientError> {
        self.call("IpamDriver.RequestAddress", req).await
    }

    /// `IpamDriver.ReleaseAddress`.
    ///
    /// # Errors
    ///
    /// As for [`IpamClient::capabilities`].
    pub async fn release_address(&self, pool_id: &str, address: IpAddr) -> Result<(), ClientError> {
        let req = ReleaseAddressRequest {
            pool_id: pool_id.to_owned(),
            address,
        };
        self.call::<_, Empty>("IpamDriver.ReleaseAddress", &req)
            .await
            .map(drop)
    }

    async fn call<Req, Res>(&self, endpoint: &str, req: &Req) -> Result<Res, ClientError>
    where
        Req: serde::Serialize,
        Res: serde::de::DeserializeOwned,
    {
        self.client.call_judged_by(endpoint, req, ERROR_KEY).await
    }

    async fn no_arguments<Res: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
    ) -> Result<Res, ClientError> {
        let raw = self.client.call_raw(endpoint, Bytes::new()).await?;
        interpret_with(endpoint, raw, ERROR_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RawResponse;
    use super::*;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status: hyper::StatusCode::from_u16(status).unwrap(),
            content_type: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_200_is_judged_by_error_not_err() {
        let ok: Result<Empty, _> =
            interpret_with("IpamDriver.X", raw(200, r#"{"Err":"x"}"#), ERROR_KEY);
        assert!(ok.is_ok(), "the daemon ignores Err in a 200 IPAM answer");
        let failed: Result<Empty, _> =
            interpret_with("IpamDriver.X", raw(200, r#"{"error":"boom"}"#), ERROR_KEY);
        assert_eq!(failed.unwrap_err().plugin_message(), Some("boom"));
        let failed: Result<Empty, _> = interpret_with(
            "IpamDriver.X",
            raw(500, r#"{"Err":"bad","Error":"bad"}"#),
            ERROR_KEY,
        );
        assert_eq!(failed.unwrap_err().plugin_message(), Some("bad"));
    }
}
