//! The bridge-net example's own unit tests (pool allocation, options, link
//! names, the state file), compiled here because `cargo test` does not run
//! an example's tests unless the example is built as a test, and then it
//! does not build the example binary the process tests start.

#![allow(dead_code, unreachable_pub)]

#[path = "../examples/bridge-net/driver.rs"]
mod driver;
#[path = "../examples/bridge-net/ipam.rs"]
mod ipam;
#[path = "../examples/bridge-net/netlink.rs"]
mod netlink;
#[path = "../examples/bridge-net/network.rs"]
mod network;
#[path = "../examples/bridge-net/state.rs"]
mod state;
