//! Sans-IO probe logic: packets and timestamps in, packets to send and results out.
//! Nothing here touches a socket or reads a clock.

pub mod answer;
pub mod correlate;
pub mod dns;
pub mod fingerprint;
pub mod fxhash;
pub mod path;
pub mod syn;
pub mod tcp_client;
pub mod verify;

pub use answer::{SynAnswer, SynReply};
pub use correlate::{Correlator, Ignored, Match};
pub use syn::{ProbeResult, SynPinger, SynProbeConfig};
