//! The authz-policy example's rules, matching and policy, with their unit
//! tests.
//!
//! The example's modules are compiled into this test crate so that `cargo
//! test` runs their tests while the example stays an ordinary binary, which
//! `cargo test` builds and the real-daemon test starts. (An example marked
//! `test = true` is built only as a test harness, without its binary.)

#![allow(dead_code, unreachable_pub)]

#[path = "../examples/authz-policy/checks.rs"]
mod checks;
#[path = "../examples/authz-policy/patterns.rs"]
mod patterns;
#[path = "../examples/authz-policy/policy.rs"]
mod policy;
#[path = "../examples/authz-policy/rules.rs"]
mod rules;
