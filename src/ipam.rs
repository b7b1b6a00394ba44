//! IPAM plugins: the [`IpamDriver`] trait and the `IpamDriver.*` wire types.
//!
//! An IPAM driver hands out address pools to networks and addresses from
//! those pools to gateways and containers. It is chosen with
//! `docker network create --ipam-driver NAME` and may serve networks of any
//! network driver. See `docs/network.md`.
//!
//! IPAM answers differ from every other kind in one way: the daemon reads
//! errors in a 200 answer from `Error`, not `Err`. The SDK sends failures as
//! HTTP 500 with both keys, so a driver never has to care.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::DriverError;
use crate::plugin::{ErrorBody, Kind, Plugin};
use crate::wire::{empty_as_none, null_as_default, text};

/// The name `/Plugin.Activate` lists for IPAM drivers.
pub const IMPLEMENTS: &str = "IpamDriver";

/// Key of [`RequestAddressRequest::options`] saying what the address is for.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";

/// The value of [`REQUEST_ADDRESS_TYPE`] for a network's gateway, and the
/// key of [`RequestPoolResponse::data`] with which a driver can choose the
/// gateway itself (as address and prefix).
pub const GATEWAY: &str = "com.docker.network.gateway";

/// Key of [`RequestAddressRequest::options`] holding the endpoint's MAC
/// address, sent when [`Capabilities::requires_mac_address`] is set.
pub const MAC_ADDRESS: &str = "com.docker.network.endpoint.macaddress";

/// An IPAM driver.
///
/// # Contract
///
/// - Required: [`request_pool`](Self::request_pool),
///   [`release_pool`](Self::release_pool),
///   [`request_address`](Self::request_address) and
///   [`release_address`](Self::release_address).
///   [`capabilities`](Self::capabilities) and
///   [`default_address_spaces`](Self::default_address_spaces) have
///   defaults and cannot fail.
/// - [`request_pool`](Self::request_pool) without a requested pool must
///   never return a pool that is still held: the daemon asks again, without
///   limit, while the answer overlaps networks it knows, holding each answer
///   meanwhile. A driver that always answers the same pool hangs
///   `docker network create`.
/// - Calls arrive concurrently; the daemon sets no timeout on them.
/// - A call runs to completion even if the daemon hangs up.
/// - Returning `Err` answers HTTP 500 with `{"Err": msg, "Error": msg}`;
///   the user sees `IpamDriver.<Method>: <message>`.
/// - Keep allocations across restarts: the daemon does not ask again for
///   pools and addresses it already holds (unless
///   [`Capabilities::requires_request_replay`] is set).
#[async_trait]
pub trait IpamDriver: Send + Sync + 'static {
    /// `IpamDriver.GetCapabilities`, asked once after activation.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// `IpamDriver.GetDefaultAddressSpaces`, asked before every pool
    /// request. The defaults are `LocalDefault` and `GlobalDefault`, the
    /// names of the daemon's built-in IPAM.
    fn default_address_spaces(&self) -> AddressSpaces {
        AddressSpaces::default()
    }

    /// `IpamDriver.RequestPool`: reserve a pool for a network.
    ///
    /// `req.pool` is the user's `--subnet`: honour it or fail. Without it,
    /// pick a pool no other held pool overlaps. The SDK sends the pool with
    /// its host bits cleared.
    async fn request_pool(
        &self,
        req: RequestPoolRequest,
    ) -> Result<RequestPoolResponse, DriverError>;

    /// `IpamDriver.ReleasePool`: the network is gone; its pool is free.
    async fn release_pool(&self, req: ReleasePoolRequest) -> Result<(), DriverError>;

    /// `IpamDriver.RequestAddress`: reserve an address in a pool.
    ///
    /// `req.address` is the user's `--gateway` or `--ip`: honour it or
    /// fail. [`RequestAddressRequest::is_gateway`] tells the gateway's
    /// request apart. Answer with the address and the pool's prefix.
    async fn request_address(
        &self,
        req: RequestAddressRequest,
    ) -> Result<RequestAddressResponse, DriverError>;

    /// `IpamDriver.ReleaseAddress`: the address is free again.
    async fn release_address(&self, req: ReleaseAddressRequest) -> Result<(), DriverError>;
}

impl Plugin {
    /// Serves `driver` for `IpamDriver.*` on this plugin's socket.
    pub fn ipam<D: IpamDriver>(self, driver: D) -> Self {
        self.ipam_shared(Arc::new(driver))
    }

    /// Like [`Plugin::ipam`], for a driver the caller keeps a handle on.
    pub fn ipam_shared<D: IpamDriver>(self, driver: Arc<D>) -> Self {
        self.register::<IpamKind>(|r| {
            r.error_body(ErrorBody::ErrAndError);
            r.add(
                "IpamDriver.GetCapabilities",
                &driver,
                |d, _: Empty| async move { Ok(d.capabilities()) },
            );
            r.add(
                "IpamDriver.GetDefaultAddressSpaces",
                &driver,
                |d, _: Empty| async move { Ok(d.default_address_spaces()) },
            );
            r.add("IpamDriver.RequestPool", &driver, |d, req| async move {
                let mut res = d.request_pool(req).await?;
                res.pool = res.pool.trunc();
                Ok(res)
            });
            r.add("IpamDriver.ReleasePool", &driver, |d, req| async move {
                d.release_pool(req).await.map(|()| Empty {})
            });
            r.add("IpamDriver.RequestAddress", &driver, |d, req| async move {
                d.request_address(req).await
            });
            r.add("IpamDriver.ReleaseAddress", &driver, |d, req| async move {
                d.release_address(req).await.map(|()| Empty {})
            });
        })
    }
}

struct IpamKind;

impl Kind for IpamKind {
    const IMPLEMENTS: &'static str = IMPLEMENTS;
}

/// An empty JSON object: the argument of calls without one and the answer
/// of calls that return nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `IpamDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Send each endpoint's MAC address in [`RequestAddressRequest::options`]
    /// under [`MAC_ADDRESS`].
    #[serde(rename = "RequiresMACAddress", default)]
    pub requires_mac_address: bool,
    /// Ask for every pool and address again after the daemon restarts,
    /// for drivers that keep no state of their own.
    #[serde(rename = "RequiresRequestReplay", default)]
    pub requires_request_replay: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSpaces {
    /// The address space of local-scope networks.
    #[serde(rename = "LocalDefaultAddressSpace")]
    pub local: String,
    /// The address space of global-scope (swarm) networks.
    #[serde(rename = "GlobalDefaultAddressSpace")]
    pub global: String,
}

impl Default for AddressSpaces {
    fn default() -> Self {
        Self {
            local: "LocalDefault".to_owned(),
            global: "GlobalDefault".to_owned(),
        }
    }
}

/// `IpamDriver.RequestPool` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPoolRequest {
    /// One of the names [`IpamDriver::default_address_spaces`] gave.
    #[serde(rename = "AddressSpace", default)]
    pub address_space: String,
    /// The user's `--subnet`, or `None` to let the driver choose.
    #[serde(rename = "Pool", default, with = "empty_as_none")]
    pub pool: Option<IpNet>,
    /// The user's `--ip-range`: container addresses come from this part of
    /// the pool.
    #[serde(rename = "SubPool", default, with = "empty_as_none")]
    pub sub_pool: Option<IpNet>,
    /// The user's `--ipam-opt` values.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    /// Whether an IPv6 pool is asked for.
    #[serde(rename = "V6", default)]
    pub v6: bool,
}

/// `IpamDriver.RequestPool` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPoolResponse {
    /// The driver's name for this pool; later calls refer to it.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The pool.
    #[serde(rename = "Pool", with = "text")]
    pub pool: IpNet,
    /// Extra data; [`GATEWAY`] names the gateway (see
    /// [`with_gateway`](Self::with_gateway)).
    #[serde(rename = "Data", default, deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
}

impl RequestPoolResponse {
    /// Pool `pool` under the ID `pool_id`.
    pub fn new(pool_id: impl Into<String>, pool: IpNet) -> Self {
        Self {
            pool_id: pool_id.into(),
            pool,
            data: BTreeMap::new(),
        }
    }

    /// Names the gateway, so that the daemon does not request one. Give it
    /// as address and the pool's prefix, e.g. `10.199.1.1/24`.
    pub fn with_gateway(mut self, gateway: IpNet) -> Self {
        self.data.insert(GATEWAY.to_owned(), gateway.to_string());
        self
    }
}

/// `IpamDriver.ReleasePool` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePoolRequest {
    /// The pool's ID from [`RequestPoolResponse::pool_id`].
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAddressRequest {
    /// The pool's ID.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The user's `--gateway` or `--ip`, or `None` for any free address.
    #[serde(rename = "Address", default, with = "empty_as_none")]
    pub address: Option<IpAddr>,
    /// Options; `null` from the daemon for container addresses.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

impl RequestAddressRequest {
    /// Whether this is the request for the network's gateway.
    pub fn is_gateway(&self) -> bool {
        self.options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY)
    }
}

/// `IpamDriver.RequestAddress` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAddressResponse {
    /// The address with the pool's prefix, e.g. `10.199.1.3/24`.
    #[serde(rename = "Address", with = "text")]
    pub address: IpNet,
    /// Extra data.
    #[serde(rename = "Data", default, deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
}

impl RequestAddressResponse {
    /// Answers `address` (with the pool's prefix).
    pub fn new(address: IpNet) -> Self {
        Self {
            address,
            data: BTreeMap::new(),
        }
    }
}

/// `IpamDriver.ReleaseAddress` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAddressRequest {
    /// The pool's ID.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address, without prefix.
    #[serde(rename = "Address", with = "text")]
    pub address: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pool_request_reads_empty_pool_as_none() {
        let body = r#"{"AddressSpace":"x","Pool":"","SubPool":"","Options":{},"V6":false}"#;
        let req: RequestPoolRequest = serde_json::from_str(body).unwrap();
        assert_eq!((req.pool, req.sub_pool), (None, None));
        let body = r#"{"AddressSpace":"x","Pool":"10.1.0.0/16","SubPool":"10.1.2.0/24"}"#;
        let req: RequestPoolRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.pool, Some("10.1.0.0/16".parse().unwrap()));
    }

    #[test]
    fn bad_cidr_in_a_pool_request_is_refused_with_its_text() {
        let body = r#"{"Pool":"10.1.0.0/33"}"#;
        let err = serde_json::from_str::<RequestPoolRequest>(body).unwrap_err();
        assert!(err.to_string().contains("10.1.0.0/33"), "{err}");
    }

    #[test]
    fn address_request_tells_the_gateway_apart_and_takes_null_options() {
        let gw: RequestAddressRequest = serde_json::from_str(concat!(
            r#"{"PoolID":"p","Address":"","#,
            r#""Options":{"RequestAddressType":"com.docker.network.gateway"}}"#
        ))
        .unwrap();
        assert!(gw.is_gateway());
        let ep: RequestAddressRequest =
            serde_json::from_str(r#"{"PoolID":"p","Address":"","Options":null}"#).unwrap();
        assert!(!ep.is_gateway() && ep.address.is_none());
    }

    #[test]
    fn answers_use_the_daemon_keys() {
        let pool = RequestPoolResponse::new("p1", "10.199.1.0/24".parse().unwrap())
            .with_gateway("10.199.1.1/24".parse().unwrap());
        assert_eq!(
            serde_json::to_value(pool).unwrap(),
            json!({"PoolID": "p1", "Pool": "10.199.1.0/24",
                   "Data": {"com.docker.network.gateway": "10.199.1.1/24"}})
        );
        assert_eq!(
            serde_json::to_value(AddressSpaces::default()).unwrap(),
            json!({"LocalDefaultAddressSpace": "LocalDefault",
                   "GlobalDefaultAddressSpace": "GlobalDefault"})
        );
        assert_eq!(
            serde_json::to_value(Capabilities::default()).unwrap(),
            json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})
        );
    }
}
