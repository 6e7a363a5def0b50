//! The only place with socket calls: raw sends, kernel-timestamped capture,
//! route and port selection.

pub mod bpf;
pub mod capture;
pub mod dns_tcp;
pub mod nft;
pub mod pcap;
pub mod privileges;
pub mod raw;
pub mod route;
pub mod timer;
pub mod txstamp;

pub use capture::{Capture, Captured, Direction, Timestamp};
pub use raw::RawSender;
pub use route::{PortReservation, Route};

use std::net::IpAddr;

/// What failed, and on what.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{op}: {source}")]
    Socket {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("send to {addr}: {source}")]
    Send {
        addr: IpAddr,
        source: std::io::Error,
    },
    #[error("no route to {addr}: {source}")]
    Route {
        addr: IpAddr,
        source: std::io::Error,
    },
    #[error("interface {name}: {why}")]
    Interface { name: String, why: String },
    #[error("{op} {}: {source}", path.display())]
    File {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("reserve source port {port} on {addr}: {source}")]
    Port {
        addr: IpAddr,
        port: u16,
        source: std::io::Error,
    },
}

impl IoError {
    /// Did this fail for lack of privileges (raw sockets need CAP_NET_RAW)?
    pub fn is_permission(&self) -> bool {
        let src = match self {
            IoError::Socket { source, .. }
            | IoError::Send { source, .. }
            | IoError::Route { source, .. } => source,
            IoError::Port { source, .. } => source,
            IoError::File { .. } => return false,
            IoError::Interface { .. } => return false,
        };
        matches!(src.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }
}
