//! Long-form guides. Their Rust examples are compiled, and run where they
//! need no daemon, as part of the crate's doc tests.

#[doc = include_str!("../docs/volume.md")]
pub mod volume_guide {}
