//! Network and IPAM drivers over the wire, without a daemon: the captured
//! daemon requests byte for byte, the rules the daemon enforces, and one
//! socket shared with a volume driver.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use common::{Served, captured, exchange_once};
use docker_plugin_sdk::ipam::{
    IpamDriver, ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest,
    RequestAddressResponse, RequestPoolRequest, RequestPoolResponse,
};
use docker_plugin_sdk::ipnet::IpNet;
use docker_plugin_sdk::network::*;
use docker_plugin_sdk::volume::{self, VolumeDriver};
use docker_plugin_sdk::{DriverError, Plugin, async_trait};
use serde_json::json;

/// A network driver that echoes whatever `reply` holds from
/// `create_endpoint`, and an IPAM driver that counts pools up from
/// 10.199.1.0/24 the way the recording plugin did.
#[derive(Default)]
struct Fake {
    reply: Mutex<EndpointInterface>,
    next_pool: Mutex<u8>,
    seen: Mutex<Vec<String>>,
}

impl Fake {
    fn saw(&self, what: impl Into<String>) {
        self.seen.lock().unwrap().push(what.into());
    }
}

#[async_trait]
impl NetworkDriver for Fake {
    async fn create_network(&self, req: CreateNetworkRequest) -> Result<(), DriverError> {
        if let Some((key, _)) = req.generic_options().into_iter().next() {
            return Err(DriverError::invalid_input(format!(
                "unknown option {key:?}; valid options are: none"
            )));
        }
        let gw = req.ipv4_data.first().and_then(|d| d.gateway);
        self.saw(format!("create_network gateway={gw:?}"));
        Ok(())
    }
    async fn delete_network(&self, _: DeleteNetworkRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn create_endpoint(
        &self,
        req: CreateEndpointRequest,
    ) -> Result<EndpointInterface, DriverError> {
        self.saw(format!(
            "create_endpoint address={:?}",
            req.interface.address
        ));
        Ok(self.reply.lock().unwrap().clone())
    }
    async fn delete_endpoint(&self, _: EndpointRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn join(&self, req: JoinRequest) -> Result<JoinResponse, DriverError> {
        self.saw(format!("join sandbox={}", req.sandbox_key));
        let mut res = JoinResponse::new(InterfaceName::new("bc-test", "eth"));
        res.gateway = Some("10.199.1.2".parse()?);
        Ok(res)
    }
    async fn leave(&self, _: EndpointRequest) -> Result<(), DriverError> {
        Ok(())
    }
}

#[async_trait]
impl IpamDriver for Fake {
    async fn request_pool(
        &self,
        req: RequestPoolRequest,
    ) -> Result<RequestPoolResponse, DriverError> {
        if req.options.contains_key("fail") {
            return Err(DriverError::in_use("every pool is held"));
        }
        let mut next = self.next_pool.lock().unwrap();
        *next += 1;
        let pool: IpNet = format!("10.199.{next}.0/24").parse()?;
        Ok(RequestPoolResponse::new(format!("pool-{next}"), pool))
    }
    async fn release_pool(&self, _: ReleasePoolRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn request_address(
        &self,
        req: RequestAddressRequest,
    ) -> Result<RequestAddressResponse, DriverError> {
        let host = if req.is_gateway() { 2 } else { 3 };
        Ok(RequestAddressResponse::new(
            format!("10.199.1.{host}/24").parse()?,
        ))
    }
    async fn release_address(&self, req: ReleaseAddressRequest) -> Result<(), DriverError> {
        self.saw(format!("release_address {}", req.address));
        Ok(())
    }
}

/// The smallest volume driver, to share the socket with.
struct NoVolumes;

#[async_trait]
impl VolumeDriver for NoVolumes {
    async fn create(&self, _: volume::CreateRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn remove(&self, _: volume::RemoveRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn mount(&self, _: volume::MountRequest) -> Result<std::path::PathBuf, DriverError> {
        Ok("/srv".into())
    }
    async fn unmount(&self, _: volume::UnmountRequest) -> Result<(), DriverError> {
        Ok(())
    }
    async fn path(
        &self,
        _: volume::PathRequest,
    ) -> Result<Option<std::path::PathBuf>, DriverError> {
        Ok(None)
    }
    async fn get(&self, r: volume::GetRequest) -> Result<volume::Volume, DriverError> {
        Err(DriverError::not_found(r.name))
    }
    async fn list(&self) -> Result<Vec<volume::Volume>, DriverError> {
        Ok(Vec::new())
    }
}

fn serve() -> (Served, std::sync::Arc<Fake>) {
    let fake = std::sync::Arc::new(Fake::default());
    let plugin = Plugin::new()
        .volume(NoVolumes)
        .network_shared(fake.clone())
        .ipam_shared(fake.clone());
    (Served::start(plugin), fake)
}

async fn post(served: &Served, endpoint: &str, body: &str) -> common::RawAnswer {
    let req = common::request_bytes(
        &format!("/{endpoint}"),
        &[("Content-Length", &body.len().to_string())],
        body.as_bytes(),
    );
    exchange_once(&served.socket, &req).await
}

#[tokio::test]
async fn one_socket_serves_volume_network_and_ipam_drivers() {
    let (served, _) = serve();
    let kinds = served.client().activate().await.unwrap();
    assert_eq!(kinds, ["VolumeDriver", "NetworkDriver", "IpamDriver"]);
    assert!(served.client().volume().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_captured_network_and_ipam_request_is_answered_as_the_daemon_needs() {
    for file in common::FIXTURES {
        let (served, fake) = serve();
        let mut replayed = 0;
        for req in captured(file) {
            let kind = req.endpoint().split('.').next().unwrap_or_default();
            if kind != "NetworkDriver" && kind != "IpamDriver" {
                continue;
            }
            replayed += 1;
            let answer = exchange_once(&served.socket, &req.bytes()).await;
            assert_eq!(
                answer.status,
                200,
                "{file} {}: {:?}",
                req.path,
                answer.json()
            );
            let body = answer.json();
            assert!(body.is_object(), "{file} {}: {body}", req.path);
            match req.endpoint() {
                "NetworkDriver.GetCapabilities" => {
                    assert_eq!(
                        body,
                        json!({"Scope": "local", "ConnectivityScope": "local"})
                    );
                }
                "IpamDriver.RequestPool" => {
                    assert_eq!(body["Pool"], "10.199.1.0/24");
                    assert_eq!(body["PoolID"], "pool-1");
                }
                "IpamDriver.RequestAddress" => {
                    let address = body["Address"].as_str().unwrap();
                    assert!(address.parse::<IpNet>().is_ok(), "CIDR: {address}");
                }
                // The daemon set the address; nothing may be echoed.
                "NetworkDriver.CreateEndpoint" => assert_eq!(body, json!({})),
                "NetworkDriver.Join" => {
                    assert_eq!(body["InterfaceName"]["SrcName"], "bc-test");
                    assert_eq!(body["Gateway"], "10.199.1.2", "a bare address");
                }
                _ => {}
            }
        }
        assert!(replayed >= 15, "{file}: only {replayed} requests");
        let seen = fake.seen.lock().unwrap().clone();
        assert!(
            seen.contains(&"create_network gateway=Some(10.199.1.2/24)".to_owned()),
            "{seen:?}"
        );
        assert!(seen.iter().any(|s| s.starts_with("join sandbox=/tmp/")));
        assert!(seen.contains(&"release_address 10.199.1.3".to_owned()));
    }
}

/// ../shared/cases/network-capabilities-endpoint.md
#[tokio::test]
async fn case_network_capabilities_and_endpoint_rules() {
    let (served, fake) = serve();
    let client = served.client();
    assert!(
        client
            .activate()
            .await
            .unwrap()
            .contains(&IMPLEMENTS.to_owned())
    );
    let caps = post(&served, "NetworkDriver.GetCapabilities", "").await;
    assert_eq!(
        caps.json(),
        json!({"Scope": "local", "ConnectivityScope": "local"})
    );

    // A driver that echoes the daemon's address and MAC: nothing goes back.
    let mac: MacAddress = "02:42:0a:00:00:05".parse().unwrap();
    *fake.reply.lock().unwrap() = EndpointInterface {
        address: Some("10.0.0.5/24".parse().unwrap()),
        mac_address: Some(mac),
        address_ipv6: None,
    };
    let body = concat!(
        r#"{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"10.0.0.5/24","#,
        r#""AddressIPv6":"","MacAddress":"02:42:0a:00:00:05"},"Options":{}}"#
    );
    let answer = post(&served, "NetworkDriver.CreateEndpoint", body).await;
    assert_eq!((answer.status, answer.json()), (200, json!({})));

    // With the MAC left empty, only the MAC may be filled.
    let body = body.replace("02:42:0a:00:00:05", "");
    let answer = post(&served, "NetworkDriver.CreateEndpoint", &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"Interface": {"Address": "", "AddressIPv6": "", "MacAddress": "02:42:0a:00:00:05"}})
    );

    let discovery = concat!(
        r#"{"DiscoveryType":1,"#,
        r#""DiscoveryData":{"Address":"10.0.0.1","BindAddress":"","Self":true}}"#
    );
    for endpoint in ["NetworkDriver.DiscoverNew", "NetworkDriver.DiscoverDelete"] {
        let answer = post(&served, endpoint, discovery).await;
        assert_eq!(
            (answer.status, answer.json()),
            (200, json!({})),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn a_driver_that_overrides_the_daemons_address_fails_before_the_daemon_sees_it() {
    let (served, fake) = serve();
    *fake.reply.lock().unwrap() = EndpointInterface {
        address: Some("10.0.0.6/24".parse().unwrap()),
        ..EndpointInterface::default()
    };
    let req = CreateEndpointRequest {
        network_id: "n1".into(),
        endpoint_id: "e1".into(),
        interface: EndpointInterface {
            address: Some("10.0.0.5/24".parse().unwrap()),
            ..EndpointInterface::default()
        },
        options: Options::new(),
    };
    let err = served
        .client()
        .network()
        .create_endpoint(&req)
        .await
        .unwrap_err();
    let msg = err.plugin_message().unwrap_or_default();
    assert!(
        msg.contains("10.0.0.5/24") && msg.contains("10.0.0.6/24"),
        "{msg}"
    );
}

#[tokio::test]
async fn optional_endpoints_answer_success_and_none_answers_404() {
    let (served, _) = serve();
    let ids = r#"{"NetworkID":"n1","EndpointID":"e1"}"#;
    let cases = [
        (
            "NetworkDriver.AllocateNetwork",
            r#"{"NetworkID":"n1","Options":null,"IPv4Data":[],"IPv6Data":null}"#,
            json!({"Options": {}}),
        ),
        (
            "NetworkDriver.FreeNetwork",
            r#"{"NetworkID":"n1"}"#,
            json!({}),
        ),
        (
            "NetworkDriver.ProgramExternalConnectivity",
            r#"{"NetworkID":"n1","EndpointID":"e1","Options":{}}"#,
            json!({}),
        ),
        ("NetworkDriver.RevokeExternalConnectivity", ids, json!({})),
        ("NetworkDriver.EndpointOperInfo", ids, json!({"Value": {}})),
        (
            "NetworkDriver.GwAllocCheck",
            r#"{"Options":{}}"#,
            json!({"SkipIPv4": false, "SkipIPv6": false}),
        ),
        (
            "IpamDriver.GetCapabilities",
            "",
            json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}),
        ),
    ];
    for (endpoint, body, want) in cases {
        let answer = post(&served, endpoint, body).await;
        assert_eq!((answer.status, answer.json()), (200, want), "{endpoint}");
    }

    let client = served.client();
    let net = client.network();
    assert!(
        net.allocate_network(&AllocateNetworkRequest::default())
            .await
            .unwrap()
            .is_empty()
    );
    net.program_external_connectivity(&ProgramExternalConnectivityRequest::default())
        .await
        .unwrap();
    net.revoke_external_connectivity("n1", "e1").await.unwrap();
    assert_eq!(net.capabilities().await.unwrap(), Capabilities::default());
    let spaces = client.ipam().default_address_spaces().await.unwrap();
    assert_eq!(spaces.local, "LocalDefault");
}

#[tokio::test]
async fn ipam_failures_carry_err_and_error_and_other_kinds_only_err() {
    let (served, _) = serve();
    let body = concat!(
        r#"{"AddressSpace":"LocalDefault","Pool":"","SubPool":"","#,
        r#""Options":{"fail":"1"},"V6":false}"#
    );
    let answer = post(&served, "IpamDriver.RequestPool", body).await;
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.json(),
        json!({"Err": "every pool is held", "Error": "every pool is held"})
    );

    let bad = post(
        &served,
        "IpamDriver.RequestPool",
        r#"{"Pool":"10.1.0.0/33"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["Err"], bad.json()["Error"]);
    assert!(
        bad.err().unwrap().contains("10.1.0.0/33"),
        "{:?}",
        bad.err()
    );

    let network = post(
        &served,
        "NetworkDriver.CreateNetwork",
        r#"{"NetworkID":"n1","Options":{"com.docker.network.generic":{"colour":"red"}}}"#,
    )
    .await;
    assert_eq!(network.status, 500);
    assert_eq!(
        network.json(),
        json!({"Err": "unknown option \"colour\"; valid options are: none"})
    );

    let req = RequestPoolRequest {
        options: BTreeMap::from([("fail".to_owned(), "1".to_owned())]),
        ..RequestPoolRequest::default()
    };
    let err = served.client().ipam().request_pool(&req).await.unwrap_err();
    assert_eq!(err.plugin_message(), Some("every pool is held"));
}

#[tokio::test]
async fn bad_addresses_are_400_naming_the_text() {
    let (served, _) = serve();
    let cases = [
        (
            "NetworkDriver.CreateEndpoint",
            r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.0.0.5"}}"#,
            "10.0.0.5",
        ),
        (
            "NetworkDriver.CreateEndpoint",
            r#"{"NetworkID":"n","EndpointID":"e","Interface":{"MacAddress":"02:42"}}"#,
            "02:42",
        ),
        (
            "NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"n","IPv4Data":[{"Pool":"banana"}]}"#,
            "banana",
        ),
        (
            "IpamDriver.RequestAddress",
            r#"{"PoolID":"p","Address":"10.0.0.256"}"#,
            "10.0.0.256",
        ),
    ];
    for (endpoint, body, text) in cases {
        let answer = post(&served, endpoint, body).await;
        assert_eq!(answer.status, 400, "{endpoint} {body}");
        let err = answer.err().unwrap_or_default();
        assert!(err.contains(endpoint) && err.contains(text), "{err}");
    }
}

#[tokio::test]
async fn the_ipam_client_reads_addresses_as_typed_values() {
    let (served, _) = serve();
    let client = served.client();
    let pool = client
        .ipam()
        .request_pool(&RequestPoolRequest::default())
        .await
        .unwrap();
    assert_eq!(pool.pool, "10.199.1.0/24".parse::<IpNet>().unwrap());
    let req = RequestAddressRequest {
        pool_id: pool.pool_id.clone(),
        ..RequestAddressRequest::default()
    };
    let addr = client.ipam().request_address(&req).await.unwrap();
    assert_eq!(addr.address.to_string(), "10.199.1.3/24");
    let ip: IpAddr = addr.address.addr();
    client
        .ipam()
        .release_address(&pool.pool_id, ip)
        .await
        .unwrap();
    client.ipam().release_pool(&pool.pool_id).await.unwrap();
}
