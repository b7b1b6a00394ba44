//! The `NetworkDriver.*` wire types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::GENERIC_OPTIONS;
use crate::wire::{empty_as_none, is_false, null_as_default, text};

/// Free-form options as the daemon sends them: JSON values of any type.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// An empty JSON object: the argument of calls without one and the answer
/// of calls that return nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Whether networks (or their connectivity) are local to one host or span
/// every host of a cluster; lower case on the wire, as the daemon requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// This host only (the default).
    #[default]
    Local,
    /// Every host of a swarm cluster.
    Global,
}

/// `NetworkDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Where a network's definition lives.
    #[serde(rename = "Scope", default)]
    pub scope: Scope,
    /// Where its containers can reach each other.
    #[serde(rename = "ConnectivityScope", default)]
    pub connectivity_scope: Scope,
    /// Whether the daemon should ask
    /// [`NetworkDriver::gw_alloc_check`](super::NetworkDriver::gw_alloc_check);
    /// left out of the answer when false.
    #[serde(rename = "GwAllocChecker", default, skip_serializing_if = "is_false")]
    pub gw_alloc_checker: bool,
}

/// The addresses IPAM chose for one pool of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamData {
    /// The IPAM address space the pool came from.
    #[serde(rename = "AddressSpace", default)]
    pub address_space: String,
    /// The pool, e.g. `10.199.1.0/24`.
    #[serde(rename = "Pool", with = "text")]
    pub pool: IpNet,
    /// The gateway as address and prefix (`10.199.1.1/24`), not a bare
    /// address; left out when there is none.
    #[serde(
        rename = "Gateway",
        default,
        with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpNet>,
    /// Addresses reserved with `--aux-address`, by name; left out when empty.
    #[serde(
        rename = "AuxAddresses",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub aux_addresses: BTreeMap<String, IpNet>,
}

impl IpamData {
    /// Data for `pool` without a gateway or auxiliary addresses.
    pub fn new(pool: IpNet) -> Self {
        Self {
            address_space: String::new(),
            pool,
            gateway: None,
            aux_addresses: BTreeMap::new(),
        }
    }
}

/// `NetworkDriver.CreateNetwork` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateNetworkRequest {
    /// The network's ID (64 hex characters from the daemon).
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Options: [`GENERIC_OPTIONS`] holds the user's `-o` map (see
    /// [`generic_options`](Self::generic_options));
    /// [`ENABLE_IPV6`](super::ENABLE_IPV6) and [`INTERNAL`](super::INTERNAL)
    /// are flags.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
    /// IPv4 pools with their gateways.
    #[serde(rename = "IPv4Data", default, deserialize_with = "null_as_default")]
    pub ipv4_data: Vec<IpamData>,
    /// IPv6 pools with their gateways; empty without `--ipv6`.
    #[serde(rename = "IPv6Data", default, deserialize_with = "null_as_default")]
    pub ipv6_data: Vec<IpamData>,
}

impl CreateNetworkRequest {
    /// The user's `docker network create -o key=value` options. Values
    /// that are not JSON strings are given as their JSON text.
    pub fn generic_options(&self) -> BTreeMap<String, String> {
        let Some(serde_json::Value::Object(map)) = self.options.get(GENERIC_OPTIONS) else {
            return BTreeMap::new();
        };
        map.iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// Whether the flag option `key` (e.g. [`INTERNAL`](super::INTERNAL))
    /// is set, as `true` or `"true"`.
    pub fn flag(&self, key: &str) -> bool {
        match self.options.get(key) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        }
    }
}

/// `NetworkDriver.AllocateNetwork` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateNetworkRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The network's options.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    /// IPv4 pools.
    #[serde(rename = "IPv4Data", default, deserialize_with = "null_as_default")]
    pub ipv4_data: Vec<IpamData>,
    /// IPv6 pools.
    #[serde(rename = "IPv6Data", default, deserialize_with = "null_as_default")]
    pub ipv6_data: Vec<IpamData>,
}

/// `NetworkDriver.AllocateNetwork` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateNetworkResponse {
    /// Options handed to every node's `CreateNetwork`.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

/// `NetworkDriver.FreeNetwork` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeNetworkRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// `NetworkDriver.DeleteNetwork` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteNetworkRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// A container interface's addresses. On the wire an empty string means
/// "not set"; here that is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInterface {
    /// IPv4 address with prefix, e.g. `10.199.1.3/24`.
    #[serde(rename = "Address", default, with = "empty_as_none")]
    pub address: Option<IpNet>,
    /// IPv6 address with prefix.
    #[serde(rename = "AddressIPv6", default, with = "empty_as_none")]
    pub address_ipv6: Option<IpNet>,
    /// MAC address.
    #[serde(rename = "MacAddress", default, with = "empty_as_none")]
    pub mac_address: Option<MacAddress>,
}

impl EndpointInterface {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.address.is_none() && self.address_ipv6.is_none() && self.mac_address.is_none()
    }
}

/// `NetworkDriver.CreateEndpoint` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateEndpointRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's ID (64 hex characters from the daemon).
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// What the daemon already assigned (usually the address from IPAM).
    #[serde(rename = "Interface", default, deserialize_with = "null_as_default")]
    pub interface: EndpointInterface,
    /// Endpoint options, such as port mappings and exposed ports.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// `NetworkDriver.CreateEndpoint` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateEndpointResponse {
    /// The fields the driver filled in; left out when it filled none.
    #[serde(rename = "Interface", default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<EndpointInterface>,
}

/// The request of `EndpointOperInfo`, `DeleteEndpoint`, `Leave` and
/// `RevokeExternalConnectivity`: which endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.EndpointOperInfo` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfoResponse {
    /// Free-form details.
    #[serde(rename = "Value", default, deserialize_with = "null_as_default")]
    pub value: Options,
}

/// `NetworkDriver.Join` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Path of the container's network namespace.
    #[serde(rename = "SandboxKey", default)]
    pub sandbox_key: String,
    /// Join options.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// The interface [`NetworkDriver::join`](super::NetworkDriver::join) hands to the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceName {
    /// Name of an interface the driver created in the host's namespace,
    /// e.g. one end of a veth pair. The daemon moves it into the container.
    #[serde(rename = "SrcName")]
    pub src_name: String,
    /// Prefix of its name inside the container; the daemon appends an
    /// index (`eth` becomes `eth0`, `eth1`...).
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: String,
}

impl InterfaceName {
    /// Moves host interface `src_name` into the container as
    /// `dst_prefix` plus an index.
    pub fn new(src_name: impl Into<String>, dst_prefix: impl Into<String>) -> Self {
        Self {
            src_name: src_name.into(),
            dst_prefix: dst_prefix.into(),
        }
    }
}

/// How a [`StaticRoute`] reaches its destination; a number on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteType {
    /// Through [`StaticRoute::next_hop`] (0).
    #[default]
    NextHop,
    /// Directly on the interface (1).
    Connected,
}

impl Serialize for RouteType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            Self::NextHop => 0,
            Self::Connected => 1,
        })
    }
}

impl<'de> Deserialize<'de> for RouteType {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        match u8::deserialize(de)? {
            0 => Ok(Self::NextHop),
            1 => Ok(Self::Connected),
            n => Err(serde::de::Error::custom(format!("unknown route type {n}"))),
        }
    }
}

/// A route the daemon adds inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// Destination network.
    #[serde(rename = "Destination", with = "text")]
    pub destination: IpNet,
    /// How it is reached.
    #[serde(rename = "RouteType", default)]
    pub route_type: RouteType,
    /// The next hop for [`RouteType::NextHop`]; empty on the wire when none.
    #[serde(rename = "NextHop", default, with = "empty_as_none")]
    pub next_hop: Option<IpAddr>,
}

/// `NetworkDriver.Join` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The interface to move into the container.
    #[serde(
        rename = "InterfaceName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_name: Option<InterfaceName>,
    /// The container's IPv4 default gateway: a bare address, no prefix.
    #[serde(
        rename = "Gateway",
        default,
        with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    /// The container's IPv6 default gateway.
    #[serde(
        rename = "GatewayIPv6",
        default,
        with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_ipv6: Option<IpAddr>,
    /// Extra routes inside the container.
    #[serde(
        rename = "StaticRoutes",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub static_routes: Vec<StaticRoute>,
    /// Stops the daemon from giving the container a default route through
    /// another network when this one has no gateway.
    #[serde(
        rename = "DisableGatewayService",
        default,
        skip_serializing_if = "is_false"
    )]
    pub disable_gateway_service: bool,
}

impl JoinResponse {
    /// An answer that hands `interface` to the container, without a gateway.
    pub fn new(interface: InterfaceName) -> Self {
        Self {
            interface_name: Some(interface),
            ..Self::default()
        }
    }
}

/// `NetworkDriver.ProgramExternalConnectivity` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramExternalConnectivityRequest {
    /// The network's ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Port mappings and exposed ports.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: Options,
}

/// `NetworkDriver.DiscoverNew` and `DiscoverDelete` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryNotification {
    /// What is announced: 1 for a node, 2 and 3 for encryption keys.
    #[serde(rename = "DiscoveryType", default)]
    pub discovery_type: u32,
    /// The announcement; for a node `{"Address","BindAddress","Self"}`.
    #[serde(rename = "DiscoveryData", default)]
    pub discovery_data: serde_json::Value,
}

/// `NetworkDriver.GwAllocCheck` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GwAllocCheckRequest {
    /// The network's options.
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

/// `NetworkDriver.GwAllocCheck` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GwAllocCheckResponse {
    /// Skip allocating an IPv4 gateway.
    #[serde(rename = "SkipIPv4", default)]
    pub skip_ipv4: bool,
    /// Skip allocating an IPv6 gateway.
    #[serde(rename = "SkipIPv6", default)]
    pub skip_ipv6: bool,
}

/// A 48-bit MAC address, written `02:42:0a:00:00:05` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress([u8; 6]);

impl MacAddress {
    /// The address with these octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for MacAddress {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex pairs such as 02:42:0a:00:00:05")]
pub struct MacAddressParseError(String);

impl FromStr for MacAddress {
    type Err = MacAddressParseError;

    /// Reads six hex pairs separated by `:` or `-`, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacAddressParseError(s.to_owned());
        let mut octets = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(Self(octets)),
        }
    }
}

impl Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        text::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        text::deserialize(de)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn capabilities_default_to_lower_case_local_scopes() {
        let v = serde_json::to_value(Capabilities::default()).unwrap();
        assert_eq!(v, json!({"Scope": "local", "ConnectivityScope": "local"}));
    }

    #[test]
    fn ipam_data_keeps_the_gateway_prefix_and_reads_the_daemon_bytes() {
        let body =
            r#"{"AddressSpace":"reclocal","Gateway":"10.199.1.2/24","Pool":"10.199.1.0/24"}"#;
        let data: IpamData = serde_json::from_str(body).unwrap();
        assert_eq!(data.gateway, Some(net("10.199.1.2/24")));
        assert_eq!(data.pool, net("10.199.1.0/24"));
        let back = serde_json::to_value(&data).unwrap();
        assert_eq!(back["Gateway"], "10.199.1.2/24");
        assert!(back.get("AuxAddresses").is_none());
    }

    #[test]
    fn empty_interface_fields_are_none() {
        let body = r#"{"Address":"10.0.0.5/24","AddressIPv6":"","MacAddress":""}"#;
        let i: EndpointInterface = serde_json::from_str(body).unwrap();
        assert_eq!(i.address, Some(net("10.0.0.5/24")));
        assert_eq!((i.address_ipv6, i.mac_address), (None, None));
    }

    #[test]
    fn bad_cidr_names_the_text() {
        let err = serde_json::from_str::<EndpointInterface>(r#"{"Address":"10.0.0.300/24"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.300/24"), "{err}");
    }

    #[test]
    fn mac_addresses_parse_and_print_in_lower_case() {
        let mac: MacAddress = "02:42:0A:00:00:05".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:0a:00:00:05");
        assert_eq!("02-42-0a-00-00-05".parse::<MacAddress>(), Ok(mac));
        for bad in [
            "",
            "02:42:0a:00:00",
            "02:42:0a:00:00:05:06",
            "2:42:a:0:0:5",
            "zz:42:0a:00:00:05",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn join_answer_sends_a_bare_gateway_and_leaves_out_what_is_unset() {
        let mut res = JoinResponse::new(InterfaceName::new("veth1", "eth"));
        res.gateway = Some("10.199.1.1".parse().unwrap());
        res.static_routes.push(StaticRoute {
            destination: net("10.200.0.0/16"),
            route_type: RouteType::Connected,
            next_hop: None,
        });
        assert_eq!(
            serde_json::to_value(&res).unwrap(),
            json!({
                "InterfaceName": {"SrcName": "veth1", "DstPrefix": "eth"},
                "Gateway": "10.199.1.1",
                "StaticRoutes": [
                    {"Destination": "10.200.0.0/16", "RouteType": 1, "NextHop": ""}
                ]
            })
        );
    }

    #[test]
    fn generic_options_come_from_the_user_map() {
        let req: CreateNetworkRequest = serde_json::from_value(json!({
            "NetworkID": "n1",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.internal": true,
                "com.docker.network.generic": {"mtu": "1400", "n": 3}
            },
            "IPv4Data": null
        }))
        .unwrap();
        let generic = req.generic_options();
        assert_eq!(generic["mtu"], "1400");
        assert_eq!(generic["n"], "3");
        assert!(req.flag(super::super::INTERNAL));
        assert!(!req.flag(super::super::ENABLE_IPV6));
        assert!(req.ipv4_data.is_empty());
    }
}
