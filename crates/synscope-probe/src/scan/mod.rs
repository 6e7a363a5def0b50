//! Stateless scanning: which (host, port) pairs to probe, in which order, and how
//! to recognise their replies without remembering each probe. Pure logic; the
//! sockets are in `io`; the scan itself is one sans-IO machine
//! ([`machine::ScanMachine`]) that the drive loop runs.

pub mod blocks;
pub mod cookie;
pub mod discovery;
pub mod follow;
pub mod machine;
pub mod matcher;
pub mod pace;
pub mod permute;
pub mod ports;
pub mod rate;
pub mod reset;
pub mod routes;
pub mod targets;

pub use blocks::{BlockState, Mark};
pub use cookie::Cookie;
pub use machine::{ScanConfig, ScanEvent, ScanMachine};
pub use matcher::{ScanMatcher, ScanReply};
pub use permute::{Permutation, Shard};
pub use ports::PortList;
pub use routes::SourceMap;
pub use targets::TargetSet;
