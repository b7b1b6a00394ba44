//! The bridge-net example as a process, driven by the daemon-playing client:
//! pools, options and links, across kill -9. No daemon needed, but root is
//! (it makes real bridges and veths); without root these tests are skipped
//! with a message.

mod common;

use std::path::Path;

use common::bridge_net::{BridgeNet, LinkGuard, link_exists, may_make_links, unique_id};
use docker_plugin_sdk::client::Client;
use docker_plugin_sdk::ipam::{GATEWAY, REQUEST_ADDRESS_TYPE, RequestAddressRequest};
use docker_plugin_sdk::ipam::{RequestPoolRequest, RequestPoolResponse};
use docker_plugin_sdk::network::{
    CreateEndpointRequest, CreateNetworkRequest, EndpointInterface, GENERIC_OPTIONS, IpamData,
    JoinRequest,
};
use serde_json::json;

macro_rules! require_root {
    () => {
        if !may_make_links() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: bridge-net process tests need root to make links ***\n"
            );
            return;
        }
    };
}

fn start(dir: &Path, pool_range: &str) -> BridgeNet {
    BridgeNet::start(
        &dir.join("plugin.sock"),
        &dir.join("state"),
        &["--pool-range", pool_range],
    )
}

fn pool_request(pool: Option<&str>) -> RequestPoolRequest {
    RequestPoolRequest {
        address_space: "LocalDefault".into(),
        pool: pool.map(|p| p.parse().unwrap()),
        ..RequestPoolRequest::default()
    }
}

async fn address(client: &Client, pool: &RequestPoolResponse, gateway: bool) -> String {
    let mut req = RequestAddressRequest {
        pool_id: pool.pool_id.clone(),
        ..RequestAddressRequest::default()
    };
    if gateway {
        req.options
            .insert(REQUEST_ADDRESS_TYPE.into(), GATEWAY.into());
    }
    let res = client.ipam().request_address(&req).await.unwrap();
    res.address.to_string()
}

fn create_request(
    id: &str,
    pool: &str,
    gateway: &str,
    options: serde_json::Value,
) -> CreateNetworkRequest {
    let mut data = IpamData::new(pool.parse().unwrap());
    data.gateway = Some(gateway.parse().unwrap());
    let mut req = CreateNetworkRequest {
        network_id: id.to_owned(),
        ipv4_data: vec![data],
        ..CreateNetworkRequest::default()
    };
    req.options.insert(GENERIC_OPTIONS.into(), options);
    req
}

#[tokio::test]
async fn pools_run_out_overlaps_are_refused_and_allocations_survive_kill_9() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = start(dir.path(), "10.199.64.0/23");
    let client = Client::new(&plugin.socket);
    let ipam = client.ipam();

    let first = ipam.request_pool(&pool_request(None)).await.unwrap();
    assert_eq!(first.pool.to_string(), "10.199.64.0/24");
    assert_eq!(address(&client, &first, true).await, "10.199.64.1/24");
    assert_eq!(address(&client, &first, false).await, "10.199.64.2/24");

    let err = ipam
        .request_pool(&pool_request(Some("10.199.64.0/16")))
        .await
        .unwrap_err();
    let msg = err.plugin_message().unwrap_or_default().to_owned();
    assert!(msg.contains("overlaps 10.199.64.0/24"), "{msg}");

    // The state is on disk before the answer: a kill -9 loses nothing.
    plugin.kill_9();
    plugin.restart();
    // A new client: the old one's kept-alive connections died with the
    // process (the daemon retries such transport errors).
    let client = Client::new(&plugin.socket);
    let ipam = client.ipam();
    let second = ipam.request_pool(&pool_request(None)).await.unwrap();
    assert_eq!(second.pool.to_string(), "10.199.65.0/24");
    assert_eq!(address(&client, &first, false).await, "10.199.64.3/24");
    let err = ipam.request_pool(&pool_request(None)).await.unwrap_err();
    let msg = err.plugin_message().unwrap_or_default().to_owned();
    assert!(
        msg.contains("every /24 pool of 10.199.64.0/23 is held"),
        "{msg}"
    );

    ipam.release_pool(&first.pool_id).await.unwrap();
    let again = ipam.request_pool(&pool_request(None)).await.unwrap();
    assert_eq!(again.pool, first.pool);
}

#[tokio::test]
async fn bad_cidrs_and_unknown_options_are_refused_with_the_valid_ones_listed() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path(), "10.199.66.0/24");
    let client = Client::new(&plugin.socket);

    let raw = client
        .call_raw("IpamDriver.RequestPool", r#"{"Pool":"10.199.66.0/40"}"#)
        .await
        .unwrap();
    assert_eq!(raw.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert!(
        body["Error"].as_str().unwrap().contains("10.199.66.0/40"),
        "{body}"
    );

    let id = unique_id();
    let req = create_request(
        &id,
        "10.199.66.0/24",
        "10.199.66.1/24",
        json!({"colour": "red"}),
    );
    let err = client.network().create_network(&req).await.unwrap_err();
    assert_eq!(
        err.plugin_message(),
        Some("unknown option \"colour\"; valid options are: host-access, mtu")
    );
    let req = create_request(&id, "10.199.66.0/24", "10.199.66.1/24", json!({"mtu": "9"}));
    assert!(client.network().create_network(&req).await.is_err());
    assert!(!link_exists(&format!("bn-{}", &id[..12])), "nothing made");
}

#[tokio::test]
async fn bridge_and_veth_follow_the_network_and_endpoint_across_kill_9() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = start(dir.path(), "10.199.67.0/24");
    let client = Client::new(&plugin.socket);
    let net = client.network();
    let (network_id, endpoint_id) = (unique_id(), unique_id());
    let bridge = format!("bn-{}", &network_id[..12]);
    let host_veth = format!("bv-{}", &endpoint_id[..12]);
    let _cleanup = LinkGuard(vec![host_veth.clone(), bridge.clone()]);

    let req = create_request(
        &network_id,
        "10.199.67.0/24",
        "10.199.67.1/24",
        json!({"mtu": "1400"}),
    );
    net.create_network(&req).await.unwrap();
    assert!(link_exists(&bridge));
    // A retried create is fine.
    net.create_network(&req).await.unwrap();

    let endpoint = CreateEndpointRequest {
        network_id: network_id.clone(),
        endpoint_id: endpoint_id.clone(),
        interface: EndpointInterface {
            address: Some("10.199.67.2/24".parse().unwrap()),
            ..EndpointInterface::default()
        },
        ..CreateEndpointRequest::default()
    };
    let filled = net.create_endpoint(&endpoint).await.unwrap().unwrap();
    assert_eq!(filled.address, None, "the daemon's address is not echoed");
    assert_eq!(filled.mac_address.unwrap().to_string(), "02:42:0a:c7:43:02");

    plugin.kill_9();
    plugin.restart();
    let client = Client::new(&plugin.socket);
    let net = client.network();
    let join = JoinRequest {
        network_id: network_id.clone(),
        endpoint_id: endpoint_id.clone(),
        sandbox_key: "/var/run/docker/netns/test".into(),
        ..JoinRequest::default()
    };
    let joined = net.join(&join).await.unwrap();
    let src = joined.interface_name.unwrap().src_name;
    assert!(link_exists(&src) && link_exists(&host_veth));
    assert_eq!(joined.gateway.unwrap().to_string(), "10.199.67.1");

    net.leave(&network_id, &endpoint_id).await.unwrap();
    assert!(!link_exists(&host_veth) && !link_exists(&src));
    net.delete_endpoint(&network_id, &endpoint_id)
        .await
        .unwrap();
    net.delete_network(&network_id).await.unwrap();
    assert!(!link_exists(&bridge));
    // Deleting again, as a retry would, is fine.
    net.delete_network(&network_id).await.unwrap();
}
