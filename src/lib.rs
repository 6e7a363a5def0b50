//! synscope: looks inside TCP and DNS exchanges with real hosts.
//!
//! Data flows one way: [`cli`] turns arguments into settings, a command drives a
//! sans-IO [`probe`] state machine, which builds and reads packets with [`wire`]
//! and talks to the network only through [`io`]; [`report`] prints the results.
//! [`wire`] is its own crate, `synscope-wire` (crates/synscope-wire), so the compiler
//! keeps it from importing anything above it.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod cmd;
pub mod event;
pub mod io;
pub mod lab;
pub mod lab_dns;
pub mod probe;
pub mod report;
pub mod scan;
/// The packet layer, its own crate (`synscope-wire`) so it cannot import the rest.
pub use synscope_wire as wire;
