//! The only place with socket calls: raw sends, kernel-timestamped capture,
//! route and port selection.

pub mod bpf;
pub mod bpf_neigh;
pub mod capture;
pub mod clock;
pub mod discovery_link;
pub mod dns_link;
pub mod dns_tcp;
pub mod egress;
pub mod link;
mod mmsg;
pub mod nft;
pub mod pcap;
pub mod privileges;
pub mod probe_link;
pub mod raw;
pub mod ring;
pub mod route;
pub mod rtnl;
pub mod scan_link;
pub mod signals;
pub mod stamped_udp;
mod sys;
pub mod timer;
pub mod txstamp;

pub use capture::{Capture, Captured, Direction, Timestamp};
pub use clock::{Clock, RealClock};
pub use probe_link::{CaptureLink, Link, Outgoing, Packets};
pub use raw::RawSender;
pub use route::{PortReservation, Route};
pub use stamped_udp::{StampedUdp, UdpEvent};

use std::net::IpAddr;

/// What failed, and on what.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A socket (or netlink, timerfd) call failed.
    #[error("{op}: {source}")]
    Socket {
        /// What we were doing (`open raw socket`, `bind capture socket`, ...).
        op: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// Sending a packet failed.
    #[error("send to {addr}: {source}")]
    Send {
        /// The packet's destination.
        addr: IpAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The kernel has no route (or no source address) for a destination.
    #[error("no route to {addr}: {source}")]
    Route {
        /// The destination looked up.
        addr: IpAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// An interface is missing or unusable.
    #[error("interface {name}: {why}")]
    Interface {
        /// Its name (`-I`).
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A file could not be created, read or written.
    #[error("{op} {}: {source}", path.display())]
    File {
        /// What we were doing (`create pcap`, ...).
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A source port could not be reserved (bound) on our address.
    #[error("reserve source port {port} on {addr}: {source}")]
    Port {
        /// Our source address.
        addr: IpAddr,
        /// The port asked for.
        port: u16,
        /// The system's error.
        source: std::io::Error,
    },
}

impl IoError {
    /// Did this fail for lack of privileges (raw sockets need CAP_NET_RAW)?
    /// Never for a send: privileges are checked when a socket is opened, and a
    /// send fails with EACCES for a broadcast address and EPERM when a
    /// firewall drops the packet, whoever runs it.
    pub fn is_permission(&self) -> bool {
        let src = match self {
            // nor for a route lookup (no privilege needed): EACCES there is a broadcast
            IoError::Send { .. } | IoError::Route { .. } => return false,
            IoError::Socket { source, .. } => source,
            IoError::Port { source, .. } => source,
            IoError::File { .. } => return false,
            IoError::Interface { .. } => return false,
        };
        matches!(src.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }

    /// Did a port reservation fail because ports or open files ran out?
    pub fn is_exhaustion(&self) -> bool {
        matches!(self, IoError::Port { source, .. } if matches!(
            source.raw_os_error(),
            Some(libc::EADDRINUSE) | Some(libc::EMFILE) | Some(libc::ENFILE)
        ))
    }
}
