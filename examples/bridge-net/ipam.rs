//! The IPAM half of bridge-net: pools cut from `--pool-range`, addresses
//! handed out from the lowest free one up.

use std::net::IpAddr;

use docker_plugin_sdk::ipam::{
    IpamDriver, ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest,
    RequestAddressResponse, RequestPoolRequest, RequestPoolResponse,
};
use docker_plugin_sdk::ipnet::IpNet;
use docker_plugin_sdk::{DriverError, async_trait};

use crate::driver::{BridgeNet, PoolRange};
use crate::state::{Pool, State};

#[async_trait]
impl IpamDriver for BridgeNet {
    async fn request_pool(
        &self,
        req: RequestPoolRequest,
    ) -> Result<RequestPoolResponse, DriverError> {
        let range = self.pools;
        let (id, pool) = self
            .lock()
            .await
            .update(|state| take_pool(state, range, &req))?;
        tracing::info!(pool_id = %id, %pool, "pool requested");
        Ok(RequestPoolResponse::new(id, pool))
    }

    async fn release_pool(&self, req: ReleasePoolRequest) -> Result<(), DriverError> {
        // Releasing an unknown pool succeeds: the daemon may retry after a
        // crash that happened once the pool was already gone.
        self.lock().await.update(|state| {
            state.pools.remove(&req.pool_id);
            Ok(())
        })?;
        tracing::info!(pool_id = %req.pool_id, "pool released");
        Ok(())
    }

    async fn request_address(
        &self,
        req: RequestAddressRequest,
    ) -> Result<RequestAddressResponse, DriverError> {
        let address = self
            .lock()
            .await
            .update(|state| take_address(state, &req))?;
        tracing::debug!(pool_id = %req.pool_id, %address, "address requested");
        Ok(RequestAddressResponse::new(address))
    }

    async fn release_address(&self, req: ReleaseAddressRequest) -> Result<(), DriverError> {
        self.lock().await.update(|state| {
            if let Some(pool) = state.pools.get_mut(&req.pool_id) {
                pool.addresses.remove(&req.address);
            }
            Ok(())
        })
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Reserves the user's pool, or the first free piece of `range`. The pool
/// ID is the pool itself, which is unique because held pools never overlap.
pub(crate) fn take_pool(
    state: &mut State,
    range: PoolRange,
    req: &RequestPoolRequest,
) -> Result<(String, IpNet), DriverError> {
    let pool = match req.pool {
        Some(wanted) => {
            let wanted = wanted.trunc();
            if let Some(held) = state.pools.values().find(|p| overlaps(&p.pool, &wanted)) {
                return Err(DriverError::in_use(format!(
                    "pool {wanted} overlaps {}, which another network holds",
                    held.pool
                )));
            }
            wanted
        }
        None if req.v6 => {
            return Err(DriverError::invalid_input(
                "bridge-net chooses IPv4 pools only; give IPv6 networks a --subnet",
            ));
        }
        None => free_pool(state, range)?,
    };
    if let Some(sub) = req.sub_pool
        && !pool.contains(&sub)
    {
        return Err(DriverError::invalid_input(format!(
            "ip range {sub} is not inside the pool {pool}"
        )));
    }

    let id = pool.to_string();
    let record = Pool {
        pool,
        sub_pool: req.sub_pool,
        addresses: Default::default(),
    };
    state.pools.insert(id.clone(), record);
    Ok((id, pool))
}

fn free_pool(state: &State, range: PoolRange) -> Result<IpNet, DriverError> {
    let pieces = range.range.subnets(range.prefix).map_err(|_| {
        DriverError::other(format!(
            "pool range {} cannot be cut into /{} pools",
            range.range, range.prefix
        ))
    })?;
    let mut pieces = pieces.map(IpNet::V4);
    pieces
        .find(|piece| !state.pools.values().any(|p| overlaps(&p.pool, piece)))
        .ok_or_else(|| {
            DriverError::in_use(format!(
                "every /{} pool of {} is held; remove a network or widen --pool-range",
                range.prefix, range.range
            ))
        })
}

/// Reserves the user's address, or the lowest free one (from the
/// `--ip-range` for containers, from the whole pool for the gateway).
pub(crate) fn take_address(
    state: &mut State,
    req: &RequestAddressRequest,
) -> Result<IpNet, DriverError> {
    let Some(pool) = state.pools.get_mut(&req.pool_id) else {
        return Err(DriverError::not_found(format!(
            "no pool {:?} is held",
            req.pool_id
        )));
    };
    let net = pool.pool;
    let address = match req.address {
        Some(wanted) => {
            if !usable(&net, wanted) {
                return Err(DriverError::invalid_input(format!(
                    "address {wanted} is not a usable address of the pool {net}"
                )));
            }
            if pool.addresses.contains(&wanted) {
                return Err(DriverError::in_use(format!(
                    "address {wanted} is already in use"
                )));
            }
            wanted
        }
        None => {
            let from = match (req.is_gateway(), pool.sub_pool) {
                (false, Some(sub)) => sub,
                _ => net,
            };
            let mut free = from
                .hosts()
                .filter(|a| usable(&net, *a) && !pool.addresses.contains(a));
            free.next()
                .ok_or_else(|| DriverError::in_use(format!("no free address left in {from}")))?
        }
    };
    pool.addresses.insert(address);
    IpNet::new(address, net.prefix_len()).map_err(|err| DriverError::other(err.to_string()))
}

/// Inside the pool, and not an address the pool reserves: the network and
/// broadcast addresses of IPv4, the subnet-router address of IPv6.
fn usable(net: &IpNet, addr: IpAddr) -> bool {
    let reserved = match net {
        IpNet::V4(v4) if v4.prefix_len() < 31 => addr == net.network() || addr == net.broadcast(),
        IpNet::V6(v6) if v6.prefix_len() < 127 => addr == net.network(),
        _ => false,
    };
    net.contains(&addr) && !reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> PoolRange {
        PoolRange {
            range: s.parse().unwrap(),
            prefix: 24,
        }
    }

    fn auto() -> RequestPoolRequest {
        RequestPoolRequest::default()
    }

    fn subnet(s: &str) -> RequestPoolRequest {
        RequestPoolRequest {
            pool: Some(s.parse().unwrap()),
            ..RequestPoolRequest::default()
        }
    }

    fn addr(pool: &str, address: Option<&str>, gateway: bool) -> RequestAddressRequest {
        let mut req = RequestAddressRequest {
            pool_id: pool.to_owned(),
            address: address.map(|a| a.parse().unwrap()),
            ..RequestAddressRequest::default()
        };
        if gateway {
            req.options.insert(
                docker_plugin_sdk::ipam::REQUEST_ADDRESS_TYPE.into(),
                docker_plugin_sdk::ipam::GATEWAY.into(),
            );
        }
        req
    }

    #[test]
    fn pools_are_never_handed_out_twice_and_run_out_with_a_clear_error() {
        let mut state = State::default();
        let r = range("10.199.0.0/23");
        let (a, _) = take_pool(&mut state, r, &auto()).unwrap();
        let (b, _) = take_pool(&mut state, r, &auto()).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("10.199.0.0/24", "10.199.1.0/24"));
        let err = take_pool(&mut state, r, &auto()).unwrap_err();
        assert!(
            err.to_string().contains("every /24 pool of 10.199.0.0/23"),
            "{err}"
        );

        state.pools.remove(&a);
        assert_eq!(take_pool(&mut state, r, &auto()).unwrap().0, a);
    }

    #[test]
    fn a_requested_subnet_is_honoured_and_overlap_refused() {
        let mut state = State::default();
        let r = range("10.199.0.0/16");
        let (id, pool) = take_pool(&mut state, r, &subnet("10.199.0.7/24")).unwrap();
        assert_eq!(
            (id.as_str(), pool.to_string().as_str()),
            ("10.199.0.0/24", "10.199.0.0/24")
        );
        let err = take_pool(&mut state, r, &subnet("10.199.0.0/16")).unwrap_err();
        assert!(err.to_string().contains("overlaps 10.199.0.0/24"), "{err}");
        // The automatic choice skips the user's pool.
        assert_eq!(
            take_pool(&mut state, r, &auto()).unwrap().0,
            "10.199.1.0/24"
        );
        let v6 = RequestPoolRequest { v6: true, ..auto() };
        assert!(take_pool(&mut state, r, &v6).is_err());
    }

    #[test]
    fn gateway_gets_the_first_host_and_containers_the_next_free_ones() {
        let mut state = State::default();
        let (id, _) = take_pool(&mut state, range("10.199.0.0/16"), &auto()).unwrap();
        let gw = take_address(&mut state, &addr(&id, None, true)).unwrap();
        assert_eq!(gw.to_string(), "10.199.0.1/24");
        let a = take_address(&mut state, &addr(&id, None, false)).unwrap();
        assert_eq!(a.to_string(), "10.199.0.2/24");
        let fixed = take_address(&mut state, &addr(&id, Some("10.199.0.9"), false)).unwrap();
        assert_eq!(fixed.to_string(), "10.199.0.9/24");

        let err = take_address(&mut state, &addr(&id, Some("10.199.0.9"), false)).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        for bad in ["10.199.1.1", "10.199.0.0", "10.199.0.255"] {
            assert!(
                take_address(&mut state, &addr(&id, Some(bad), false)).is_err(),
                "{bad}"
            );
        }
        assert!(take_address(&mut state, &addr("nope", None, false)).is_err());
    }

    #[test]
    fn a_small_pool_runs_out_of_addresses() {
        let mut state = State::default();
        let (id, _) =
            take_pool(&mut state, range("10.199.0.0/16"), &subnet("10.199.5.0/30")).unwrap();
        take_address(&mut state, &addr(&id, None, true)).unwrap();
        take_address(&mut state, &addr(&id, None, false)).unwrap();
        let err = take_address(&mut state, &addr(&id, None, false)).unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
    }

    #[test]
    fn container_addresses_come_from_the_ip_range() {
        let mut state = State::default();
        let req = RequestPoolRequest {
            sub_pool: Some("10.199.7.128/25".parse().unwrap()),
            ..subnet("10.199.7.0/24")
        };
        let (id, _) = take_pool(&mut state, range("10.199.0.0/16"), &req).unwrap();
        assert_eq!(
            take_address(&mut state, &addr(&id, None, true))
                .unwrap()
                .to_string(),
            "10.199.7.1/24"
        );
        assert_eq!(
            take_address(&mut state, &addr(&id, None, false))
                .unwrap()
                .to_string(),
            "10.199.7.129/24"
        );
        let outside = RequestPoolRequest {
            sub_pool: Some("10.200.0.0/25".parse().unwrap()),
            ..subnet("10.199.8.0/24")
        };
        assert!(take_pool(&mut state, range("10.199.0.0/16"), &outside).is_err());
    }
}
