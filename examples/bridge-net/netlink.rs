//! The few link operations bridge-net needs, over rtnetlink: bridges, veth
//! pairs and addresses. Every operation is idempotent, so that a retried
//! call or a restart half-way through finishes the job instead of failing.

use std::io;

use docker_plugin_sdk::ipnet::IpNet;
use docker_plugin_sdk::network::MacAddress;
use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

/// Linux refuses interface names longer than this (IFNAMSIZ less the NUL).
pub(crate) const MAX_NAME: usize = 15;

/// A failed link operation, with what was being done to which link.
#[derive(Debug, thiserror::Error)]
#[error("{what} {link}: {source}")]
pub(crate) struct LinkError {
    what: &'static str,
    link: String,
    source: io::Error,
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().raw_os_error(),
        _ => None,
    }
}

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;

/// A netlink connection to the host's network namespace.
#[derive(Clone)]
pub(crate) struct Links {
    handle: Handle,
}

impl Links {
    /// Opens the connection; its driver task runs on the current runtime.
    ///
    /// # Errors
    ///
    /// If the netlink socket cannot be opened.
    pub(crate) fn connect() -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The index of link `name`, or `None` if there is no such link.
    pub(crate) async fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(err) if errno(&err) == Some(ENODEV) => Ok(None),
            Err(err) => Err(fail("looking up", name, err)),
        }
    }

    /// Makes bridge `name` exist, be up, have `mtu` and hold `addresses`.
    pub(crate) async fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        addresses: &[IpNet],
    ) -> Result<(), LinkError> {
        if self.index(name).await?.is_none() {
            let mut bridge = LinkBridge::new(name);
            if let Some(mtu) = mtu {
                bridge = bridge.mtu(mtu);
            }
            match self.handle.link().add(bridge.build()).execute().await {
                Err(err) if errno(&err) != Some(EEXIST) => {
                    return Err(fail("creating bridge", name, err));
                }
                _ => {}
            }
        }
        let index = self.require(name).await?;

        for addr in addresses {
            let add = self
                .handle
                .address()
                .add(index, addr.addr(), addr.prefix_len());
            match add.execute().await {
                Err(err) if errno(&err) != Some(EEXIST) => {
                    return Err(fail("adding an address to", name, err));
                }
                _ => {}
            }
        }
        self.set_up(name, index).await
    }

    /// Creates the veth pair `host`/`peer`, attaches `host` to `bridge` and
    /// brings it up. `peer` stays down in this namespace until the daemon
    /// moves it into a container. A pair left by an earlier attempt is
    /// replaced.
    pub(crate) async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        bridge: &str,
        mtu: Option<u32>,
        mac: Option<MacAddress>,
    ) -> Result<(), LinkError> {
        self.delete(host).await?;
        self.delete(peer).await?;
        let bridge_index = self.require(bridge).await?;

        let mut pair = LinkVeth::new(host, peer);
        if let Some(mtu) = mtu {
            pair = pair.mtu(mtu);
        }
        let add = self.handle.link().add(pair.build()).execute().await;
        add.map_err(|err| fail("creating veth pair", host, err))?;

        let peer_index = self.require(peer).await?;
        let mut peer_msg = LinkUnspec::new_with_index(peer_index);
        if let Some(mtu) = mtu {
            peer_msg = peer_msg.mtu(mtu);
        }
        if let Some(mac) = mac {
            peer_msg = peer_msg.address(mac.octets().to_vec());
        }
        let set = self.handle.link().set(peer_msg.build()).execute().await;
        set.map_err(|err| fail("configuring", peer, err))?;

        let host_index = self.require(host).await?;
        let attach = LinkUnspec::new_with_index(host_index)
            .controller(bridge_index)
            .up()
            .build();
        let set = self.handle.link().set(attach).execute().await;
        set.map_err(|err| fail("attaching to the bridge", host, err))
    }

    /// Deletes link `name` (for a veth, both ends); a missing link is fine.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(err) if errno(&err) != Some(ENODEV) => Err(fail("deleting", name, err)),
            _ => Ok(()),
        }
    }

    async fn require(&self, name: &str) -> Result<u32, LinkError> {
        self.index(name).await?.ok_or_else(|| LinkError {
            what: "finding",
            link: name.to_owned(),
            source: io::Error::from_raw_os_error(ENODEV),
        })
    }

    async fn set_up(&self, name: &str, index: u32) -> Result<(), LinkError> {
        let up = LinkUnspec::new_with_index(index).up().build();
        let set = self.handle.link().set(up).execute().await;
        set.map_err(|err| fail("bringing up", name, err))
    }
}

fn fail(what: &'static str, link: &str, err: rtnetlink::Error) -> LinkError {
    let source = match &err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    };
    LinkError {
        what,
        link: link.to_owned(),
        source,
    }
}
