//! Sans-IO probe logic: packets and timestamps in, packets to send and results out.
//! Nothing here touches a socket or reads a clock.

pub mod answer;
pub mod correlate;
pub mod dns;
pub mod dns_bulk;
pub mod dns_query;
pub mod fingerprint;
pub mod fxhash;
pub mod machine;
pub mod path;
pub mod ping;
pub mod syn;
pub mod tcp_client;
pub mod trace;
pub mod verify;

pub use answer::{SynAnswer, SynReply};
pub use correlate::{Correlator, Ignored, Match};
pub use machine::{Context, Machine, Packet, Stop};
pub use syn::{ProbeResult, SynPinger, SynProbeConfig};
