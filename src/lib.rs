//! synscope: looks inside TCP and DNS exchanges with real hosts.
//!
//! Data flows one way: [`cli`] turns arguments into settings, a command drives a
//! sans-IO [`probe`] state machine, which builds and reads packets with [`wire`]
//! and talks to the network only through [`io`]; [`report`] prints the results.
//! [`wire`] (crates/synscope-wire), [`probe`], [`scan`](mod@scan) and [`event`]
//! (crates/synscope-probe) and [`report`] (crates/synscope-report) are crates
//! of their own, so the compiler keeps them from importing anything above them.
//!
//! The library in one call: [`syn_ping`], [`scan()`](fn@scan) and
//! [`dns_query`], each with options that have defaults.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod api;
pub mod cli;
pub mod cmd;
pub mod drive;
pub mod io;
/// The sans-IO probe layer, its own crate (`synscope-probe`) so it cannot reach
/// sockets, the runtime or the reports.
pub use synscope_probe::{event, probe, scan};
/// The report layer, its own crate (`synscope-report`) so it cannot reach
/// sockets or the command line.
pub use synscope_report as report;
/// The packet layer, its own crate (`synscope-wire`) so it cannot import the rest.
pub use synscope_wire as wire;

/// The library in one call (see [`syn_ping`], [`scan()`](fn@scan), [`dns_query`]).
pub use api::{
    DnsAnswer, DnsOptions, Error, PingOptions, PortResult, PortState, Reply, ScanOptions,
    dns_query, scan, syn_ping,
};
