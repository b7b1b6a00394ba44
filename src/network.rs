//! Network plugins: the [`NetworkDriver`] trait and the `NetworkDriver.*`
//! wire types.
//!
//! See `docs/network.md` for what the daemon sends and in which order.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::DriverError;
use crate::plugin::{Kind, Plugin};

/// The name `/Plugin.Activate` lists for network drivers.
pub const IMPLEMENTS: &str = "NetworkDriver";

/// Key of [`CreateNetworkRequest::options`] holding the user's
/// `docker network create -o` map.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";

/// Key of [`CreateNetworkRequest::options`]: `true` for `--ipv6`.
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";

/// Key of [`CreateNetworkRequest::options`]: `true` for `--internal`.
pub const INTERNAL: &str = "com.docker.network.internal";

/// A network driver: what the daemon calls for `docker network` and for
/// containers attached to a network of this driver.
///
/// # Contract
///
/// - Required: [`create_network`](Self::create_network),
///   [`delete_network`](Self::delete_network),
///   [`create_endpoint`](Self::create_endpoint),
///   [`delete_endpoint`](Self::delete_endpoint), [`join`](Self::join) and
///   [`leave`](Self::leave). Every other method has a default that answers
///   the way the daemon needs from a driver without that feature.
/// - [`capabilities`](Self::capabilities) cannot fail: a failed
///   `GetCapabilities` makes the daemon drop the driver altogether.
/// - Calls arrive concurrently, for different networks and for the same one.
///   Serialise what needs serialising inside the driver.
/// - The daemon sets no timeout on network calls: a call that never returns
///   hangs the `docker` command (and the daemon's lock on that network).
/// - A call runs to completion even if the daemon hangs up; the SDK never
///   cancels a driver future half-way.
/// - Returning `Err` answers HTTP 500 with `{"Err": "<message>"}`; the user
///   sees `NetworkDriver.<Method>: <message>`. A failed `create_endpoint`
///   or `join` makes the daemon roll the endpoint back.
/// - After transport errors the daemon retries, so a call may arrive twice:
///   make creation idempotent.
#[async_trait]
pub trait NetworkDriver: Send + Sync + 'static {
    /// `NetworkDriver.GetCapabilities`, asked once right after activation.
    ///
    /// The default is a driver whose networks and connectivity are local to
    /// this host.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// `NetworkDriver.CreateNetwork`: `docker network create`. The pools
    /// and gateways were already chosen by the IPAM driver.
    async fn create_network(&self, req: CreateNetworkRequest) -> Result<(), DriverError>;

    /// `NetworkDriver.AllocateNetwork`: a swarm manager reserves
    /// cluster-wide resources for a network of a global-scope driver and
    /// hands the returned options to every node's `create_network`.
    ///
    /// The default allocates nothing and succeeds with no options, which is
    /// right for drivers that keep no cluster-wide state. (The daemon treats
    /// a 404 here as a hard error, so the SDK always answers.)
    async fn allocate_network(
        &self,
        req: AllocateNetworkRequest,
    ) -> Result<BTreeMap<String, String>, DriverError> {
        let _ = req;
        Ok(BTreeMap::new())
    }

    /// `NetworkDriver.FreeNetwork`: undoes
    /// [`allocate_network`](Self::allocate_network). The default succeeds.
    async fn free_network(&self, req: FreeNetworkRequest) -> Result<(), DriverError> {
        let _ = req;
        Ok(())
    }

    /// `NetworkDriver.DeleteNetwork`: `docker network rm`. The daemon has
    /// already removed every endpoint. Deleting an unknown network should
    /// succeed, so that a retry after a crash does not wedge the daemon.
    async fn delete_network(&self, req: DeleteNetworkRequest) -> Result<(), DriverError>;

    /// `NetworkDriver.CreateEndpoint`: a container is being attached.
    ///
    /// Return the interface fields the driver fills in, or
    /// [`EndpointInterface::default()`] to fill none. Only fields the daemon
    /// left empty in `req.interface` may be filled: the daemon rolls the
    /// endpoint back if a driver sets one it already set. The SDK drops a
    /// returned field equal to the daemon's and fails the call for one that
    /// differs, so that mistake never reaches the daemon.
    async fn create_endpoint(
        &self,
        req: CreateEndpointRequest,
    ) -> Result<EndpointInterface, DriverError>;

    /// `NetworkDriver.EndpointOperInfo`: details `docker network inspect`
    /// and `docker inspect` show for an endpoint. The default shows none.
    async fn endpoint_oper_info(&self, req: EndpointRequest) -> Result<Options, DriverError> {
        let _ = req;
        Ok(Options::new())
    }

    /// `NetworkDriver.DeleteEndpoint`: the endpoint is gone for good (after
    /// [`leave`](Self::leave), or after a failed join). Deleting an unknown
    /// endpoint should succeed.
    async fn delete_endpoint(&self, req: EndpointRequest) -> Result<(), DriverError>;

    /// `NetworkDriver.Join`: the container's sandbox is ready. Answer with
    /// the host-side interface the daemon should move into the container
    /// (`req.sandbox_key` names its network namespace) and the gateway.
    async fn join(&self, req: JoinRequest) -> Result<JoinResponse, DriverError>;

    /// `NetworkDriver.Leave`: the container is detaching; undo
    /// [`join`](Self::join). Leaving an endpoint that never joined should
    /// succeed.
    async fn leave(&self, req: EndpointRequest) -> Result<(), DriverError>;

    /// `NetworkDriver.DiscoverNew`: the daemon tells the driver about a
    /// node or key. The default ignores it.
    async fn discover_new(&self, req: DiscoveryNotification) -> Result<(), DriverError> {
        let _ = req;
        Ok(())
    }

    /// `NetworkDriver.DiscoverDelete`: the counterpart of
    /// [`discover_new`](Self::discover_new). The default ignores it.
    async fn discover_delete(&self, req: DiscoveryNotification) -> Result<(), DriverError> {
        let _ = req;
        Ok(())
    }

    /// `NetworkDriver.ProgramExternalConnectivity`: set up port mappings and
    /// outside access for a joined endpoint. The default does nothing.
    async fn program_external_connectivity(
        &self,
        req: ProgramExternalConnectivityRequest,
    ) -> Result<(), DriverError> {
        let _ = req;
        Ok(())
    }

    /// `NetworkDriver.RevokeExternalConnectivity`: undo
    /// [`program_external_connectivity`](Self::program_external_connectivity).
    /// The default does nothing.
    async fn revoke_external_connectivity(&self, req: EndpointRequest) -> Result<(), DriverError> {
        let _ = req;
        Ok(())
    }

    /// `NetworkDriver.GwAllocCheck`, asked only when
    /// [`Capabilities::gw_alloc_checker`] is set: whether the IPAM driver
    /// should skip allocating gateways for this network. The default skips
    /// neither.
    async fn gw_alloc_check(
        &self,
        req: GwAllocCheckRequest,
    ) -> Result<GwAllocCheckResponse, DriverError> {
        let _ = req;
        Ok(GwAllocCheckResponse::default())
    }
}

impl Plugin {
    /// Serves `driver` for `NetworkDriver.*` on this plugin's socket.
    pub fn network<D: NetworkDriver>(self, driver: D) -> Self {
        self.network_shared(Arc::new(driver))
    }

    /// Like [`Plugin::network`], for a driver the caller keeps a handle on.
    pub fn network_shared<D: NetworkDriver>(self, driver: Arc<D>) -> Self {
        self.register::<NetworkKind>(|r| {
            r.add(
                "NetworkDriver.GetCapabilities",
                &driver,
                |d, _: Empty| async move { Ok(d.capabilities()) },
            );
            r.add(
                "NetworkDriver.CreateNetwork",
                &driver,
                |d, req| async move { d.create_network(req).await.map(|()| Empty {}) },
            );
            r.add(
                "NetworkDriver.AllocateNetwork",
                &driver,
                |d, req| async move {
                    let options = d.allocate_network(req).await?;
                    Ok(AllocateNetworkResponse { options })
                },
            );
            r.add("NetworkDriver.FreeNetwork", &driver, |d, req| async move {
                d.free_network(req).await.map(|()| Empty {})
            });
            r.add(
                "NetworkDriver.DeleteNetwork",
                &driver,
                |d, req| async move { d.delete_network(req).await.map(|()| Empty {}) },
            );
            r.add(
                "NetworkDriver.CreateEndpoint",
                &driver,
                |d, req: CreateEndpointRequest| async move {
                    let asked = req.interface.clone();
                    let endpoint = req.endpoint_id.clone();
                    let filled = d.create_endpoint(req).await?;
                    let interface = fill_only_empty(&endpoint, &asked, filled)?;
                    Ok(CreateEndpointResponse { interface })
                },
            );
            r.add(
                "NetworkDriver.EndpointOperInfo",
                &driver,
                |d, req| async move {
                    let value = d.endpoint_oper_info(req).await?;
                    Ok(EndpointInfoResponse { value })
                },
            );
            r.add(
                "NetworkDriver.DeleteEndpoint",
                &driver,
                |d, req| async move { d.delete_endpoint(req).await.map(|()| Empty {}) },
            );
            r.add("NetworkDriver.Join", &driver, |d, req| async move {
                d.join(req).await
            });
            r.add("NetworkDriver.Leave", &driver, |d, req| async move {
                d.leave(req).await.map(|()| Empty {})
            });
            r.add("NetworkDriver.DiscoverNew", &driver, |d, req| async move {
                d.discover_new(req).await.map(|()| Empty {})
            });
            r.add(
                "NetworkDriver.DiscoverDelete",
                &driver,
                |d, req| async move { d.discover_delete(req).await.map(|()| Empty {}) },
            );
            r.add(
                "NetworkDriver.ProgramExternalConnectivity",
                &driver,
                |d, req| async move {
                    d.program_external_connectivity(req)
                        .await
                        .map(|()| Empty {})
                },
            );
            r.add(
                "NetworkDriver.RevokeExternalConnectivity",
                &driver,
                |d, req| async move {
                    d.revoke_external_connectivity(req)
                        .await
                        .map(|()| Empty {})
                },
            );
            r.add("NetworkDriver.GwAllocCheck", &driver, |d, req| async move {
                d.gw_alloc_check(req).await
            });
        })
    }
}

struct NetworkKind;

impl Kind for NetworkKind {
    const IMPLEMENTS: &'static str = IMPLEMENTS;
}

/// Keeps only the fields the daemon left empty: it refuses an answer that
/// sets a field it set itself, and rolls the endpoint back.
fn fill_only_empty(
    endpoint: &str,
    asked: &EndpointInterface,
    filled: EndpointInterface,
) -> Result<Option<EndpointInterface>, DriverError> {
    fn keep<T: PartialEq + fmt::Display>(
        endpoint: &str,
        field: &str,
        asked: &Option<T>,
        filled: Option<T>,
    ) -> Result<Option<T>, DriverError> {
        match (asked, filled) {
            (Some(a), Some(f)) if *a != f => Err(DriverError::invalid_input(format!(
                "driver set {field} {f} on endpoint {endpoint:?}, but the daemon already \
                 assigned {a}; a driver may only fill fields the daemon left empty"
            ))),
            (Some(_), Some(_)) => Ok(None),
            (_, filled) => Ok(filled),
        }
    }
    let interface = EndpointInterface {
        address: keep(endpoint, "Address", &asked.address, filled.address)?,
        address_ipv6: keep(
            endpoint,
            "AddressIPv6",
            &asked.address_ipv6,
            filled.address_ipv6,
        )?,
        mac_address: keep(
            endpoint,
            "MacAddress",
            &asked.mac_address,
            filled.mac_address,
        )?,
    };
    Ok((!interface.is_empty()).then_some(interface))
}

mod types;

pub use types::*;

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn echoed_fields_are_dropped_and_conflicting_ones_refused() {
        let asked = EndpointInterface {
            address: Some(net("10.0.0.5/24")),
            ..EndpointInterface::default()
        };
        let mac = MacAddress::new([2, 0x42, 10, 0, 0, 5]);
        let echo = EndpointInterface {
            address: Some(net("10.0.0.5/24")),
            mac_address: Some(mac),
            ..EndpointInterface::default()
        };
        let kept = fill_only_empty("e1", &asked, echo).unwrap().unwrap();
        assert_eq!(kept.address, None);
        assert_eq!(kept.mac_address, Some(mac));

        let only_echo = asked.clone();
        assert_eq!(fill_only_empty("e1", &asked, only_echo).unwrap(), None);

        let other = EndpointInterface {
            address: Some(net("10.0.0.6/24")),
            ..EndpointInterface::default()
        };
        let err = fill_only_empty("e1", &asked, other).unwrap_err();
        assert!(err.to_string().contains("10.0.0.5/24"), "{err}");
    }
}
