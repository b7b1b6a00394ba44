//! The network half of bridge-net: a Linux bridge per network, a veth pair
//! per joined endpoint.
//!
//! A name is always saved before the link it names is created, so that
//! after a crash at any point every link bridge-net made is one it knows
//! and can remove.

use std::net::IpAddr;

use docker_plugin_sdk::network::{
    CreateEndpointRequest, CreateNetworkRequest, DeleteNetworkRequest, EndpointInterface,
    EndpointRequest, InterfaceName, JoinRequest, JoinResponse, MacAddress, NetworkDriver, Options,
};
use docker_plugin_sdk::{DriverError, async_trait};

use crate::driver::BridgeNet;
use crate::state::{Endpoint, Network, NetworkOptions, link_name};

/// Link name prefixes: bridge, host end and container end of a veth pair.
const BRIDGE_PREFIX: &str = "bn-";
const HOST_PREFIX: &str = "bv-";
const PEER_PREFIX: &str = "bc-";

#[async_trait]
impl NetworkDriver for BridgeNet {
    async fn create_network(&self, req: CreateNetworkRequest) -> Result<(), DriverError> {
        let generic = req.generic_options();
        let options = NetworkOptions::parse(generic.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(DriverError::invalid_input)?;
        let gateways = req
            .ipv4_data
            .iter()
            .chain(&req.ipv6_data)
            .filter_map(|data| data.gateway)
            .collect();
        let network = Network {
            bridge: link_name(BRIDGE_PREFIX, &req.network_id),
            options,
            gateways,
            endpoints: Default::default(),
        };

        let mut guard = self.lock().await;
        guard.update(|state| {
            if let Some(known) = state.networks.get(&req.network_id) {
                // A retry of the same call; anything else is a conflict.
                return match known.options == network.options {
                    true => Ok(()),
                    false => Err(DriverError::in_use(format!(
                        "network {} exists with other options",
                        req.network_id
                    ))),
                };
            }
            let clash = state.networks.values().any(|n| n.bridge == network.bridge);
            if clash {
                return Err(DriverError::in_use(format!(
                    "bridge {} already serves another network",
                    network.bridge
                )));
            }
            state
                .networks
                .insert(req.network_id.clone(), network.clone());
            Ok(())
        })?;

        let addresses = match options.host_access {
            true => network.gateways.as_slice(),
            false => &[],
        };
        let made = self
            .links
            .ensure_bridge(&network.bridge, options.mtu, addresses)
            .await;
        if let Err(err) = made {
            let _ = self.links.delete(&network.bridge).await;
            let _ = guard.update(|state| {
                state.networks.remove(&req.network_id);
                Ok(())
            });
            return Err(DriverError::other("creating the network").with_source(err));
        }
        tracing::info!(network = %req.network_id, bridge = %network.bridge, "network created");
        Ok(())
    }

    async fn delete_network(&self, req: DeleteNetworkRequest) -> Result<(), DriverError> {
        let mut guard = self.lock().await;
        let Some(network) = guard.get().networks.get(&req.network_id).cloned() else {
            return Ok(());
        };
        for endpoint in network.endpoints.values() {
            self.links.delete(&endpoint.host_veth).await?;
        }
        self.links.delete(&network.bridge).await?;
        guard.update(|state| {
            state.networks.remove(&req.network_id);
            Ok(())
        })?;
        tracing::info!(network = %req.network_id, bridge = %network.bridge, "network deleted");
        Ok(())
    }

    async fn create_endpoint(
        &self,
        req: CreateEndpointRequest,
    ) -> Result<EndpointInterface, DriverError> {
        // Fill in a MAC only when the daemon left it empty; the SDK would
        // drop an echo of the daemon's own value anyway.
        let mac = match req.interface.mac_address {
            Some(_) => None,
            None => Some(mac_for(&req.interface, &req.endpoint_id)),
        };
        let endpoint = Endpoint {
            host_veth: link_name(HOST_PREFIX, &req.endpoint_id),
            peer_veth: link_name(PEER_PREFIX, &req.endpoint_id),
            mac: mac.or(req.interface.mac_address),
        };

        self.lock().await.update(|state| {
            let network = known_network(state, &req.network_id)?;
            network.endpoints.insert(req.endpoint_id.clone(), endpoint);
            Ok(())
        })?;
        tracing::debug!(network = %req.network_id, endpoint = %req.endpoint_id, "endpoint created");
        Ok(EndpointInterface {
            mac_address: mac,
            ..EndpointInterface::default()
        })
    }

    async fn endpoint_oper_info(&self, req: EndpointRequest) -> Result<Options, DriverError> {
        let guard = self.lock().await;
        let (network, endpoint) = known_endpoint(guard.get(), &req)?;
        let mut info = Options::new();
        info.insert("bridge".into(), network.bridge.clone().into());
        info.insert("host_veth".into(), endpoint.host_veth.clone().into());
        Ok(info)
    }

    async fn delete_endpoint(&self, req: EndpointRequest) -> Result<(), DriverError> {
        let mut guard = self.lock().await;
        let host_veth = match known_endpoint(guard.get(), &req) {
            Ok((_, endpoint)) => endpoint.host_veth.clone(),
            Err(_) => return Ok(()),
        };
        self.links.delete(&host_veth).await?;
        guard.update(|state| {
            if let Some(network) = state.networks.get_mut(&req.network_id) {
                network.endpoints.remove(&req.endpoint_id);
            }
            Ok(())
        })?;
        tracing::debug!(network = %req.network_id, endpoint = %req.endpoint_id, "endpoint deleted");
        Ok(())
    }

    async fn join(&self, req: JoinRequest) -> Result<JoinResponse, DriverError> {
        let guard = self.lock().await;
        let ids = EndpointRequest {
            network_id: req.network_id.clone(),
            endpoint_id: req.endpoint_id.clone(),
        };
        let (network, endpoint) = known_endpoint(guard.get(), &ids)?;
        self.links
            .create_veth(
                &endpoint.host_veth,
                &endpoint.peer_veth,
                &network.bridge,
                network.options.mtu,
                endpoint.mac,
            )
            .await?;

        let mut res = JoinResponse::new(InterfaceName::new(endpoint.peer_veth.clone(), "eth"));
        if network.options.host_access {
            let gateway = |v4: bool| {
                let mut all = network.gateways.iter().map(|g| g.addr());
                all.find(|a| a.is_ipv4() == v4)
            };
            res.gateway = gateway(true);
            res.gateway_ipv6 = gateway(false);
        }
        tracing::debug!(endpoint = %req.endpoint_id, veth = %endpoint.host_veth, "joined");
        Ok(res)
    }

    async fn leave(&self, req: EndpointRequest) -> Result<(), DriverError> {
        let guard = self.lock().await;
        if let Ok((_, endpoint)) = known_endpoint(guard.get(), &req) {
            // Deleting the host end removes the pair, wherever the other
            // end is by now.
            self.links.delete(&endpoint.host_veth).await?;
        }
        tracing::debug!(endpoint = %req.endpoint_id, "left");
        Ok(())
    }
}

fn known_network<'a>(
    state: &'a mut crate::state::State,
    id: &str,
) -> Result<&'a mut Network, DriverError> {
    state
        .networks
        .get_mut(id)
        .ok_or_else(|| DriverError::not_found(format!("no network {id:?} in bridge-net")))
}

fn known_endpoint<'a>(
    state: &'a crate::state::State,
    req: &EndpointRequest,
) -> Result<(&'a Network, &'a Endpoint), DriverError> {
    let network = state.networks.get(&req.network_id).ok_or_else(|| {
        DriverError::not_found(format!("no network {:?} in bridge-net", req.network_id))
    })?;
    let endpoint = network.endpoints.get(&req.endpoint_id).ok_or_else(|| {
        DriverError::not_found(format!("no endpoint {:?} in bridge-net", req.endpoint_id))
    })?;
    Ok((network, endpoint))
}

/// A locally administered MAC: from the IPv4 address when there is one,
/// as Docker's own bridge does, else from the endpoint ID.
fn mac_for(interface: &EndpointInterface, endpoint_id: &str) -> MacAddress {
    let tail = match interface.address.map(|a| a.addr()) {
        Some(IpAddr::V4(v4)) => v4.octets(),
        _ => {
            let hash = endpoint_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            hash.to_be_bytes()
        }
    };
    MacAddress::new([0x02, 0x42, tail[0], tail[1], tail[2], tail[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_come_from_the_ipv4_address() {
        let iface = EndpointInterface {
            address: Some("10.199.1.3/24".parse().unwrap()),
            ..EndpointInterface::default()
        };
        assert_eq!(mac_for(&iface, "e").to_string(), "02:42:0a:c7:01:03");
        let none = EndpointInterface::default();
        assert_eq!(mac_for(&none, "e").octets()[..2], [0x02, 0x42]);
    }
}
