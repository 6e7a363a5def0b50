//! Pure construction and parsing of the packets synscope sends and receives.
//!
//! Every parser here takes untrusted bytes and returns a plain `Repr` struct or a
//! [`WireError`]; none of them can panic, whatever the input (see the fuzz-like unit
//! tests in each module). Emitters build exact bytes, checksums included.
//!
//! This crate does no I/O and imports nothing of synscope's: the probe state
//! machines live in `synscope-probe`, sockets and capture in `synscope`; both
//! depend on this one.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
pub mod datagram;
pub mod dns;
pub mod icmp;
pub mod ip;
pub mod ndp;
pub mod quote;
pub mod reassembly;
pub mod seq;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOp, ArpRepr, MacAddr};
pub use datagram::{Datagram, Transport};
pub use icmp::{IcmpError, IcmpRepr, Quoted};
pub use ip::{IpRepr, Protocol};
pub use ndp::{NdpKind, NdpRepr};
pub use reassembly::Reassembler;
pub use seq::SeqNumber;
pub use tcp::{AnswerSegment, TcpFlags, TcpOptions, TcpRepr};
pub use udp::UdpRepr;

/// Why a byte buffer could not be read as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header (or a length it declares) does; names the layer.
    #[error("{0}: buffer shorter than its header")]
    Truncated(&'static str),
    /// A length field contradicts the buffer or the header (e.g. IHL < 5).
    #[error("{0}: length field is impossible")]
    BadLength(&'static str),
    /// The checksum does not verify (the packet was damaged or forged).
    #[error("{0}: bad checksum")]
    Checksum(&'static str),
    /// Well-formed but not something synscope reads (another IP version,
    /// hardware type, message type).
    #[error("{0}: unsupported version or type")]
    Unsupported(&'static str),
}

/// The Internet checksum (RFC 1071) of `data`, folded and complemented, starting
/// from a partial sum (for pseudo-headers).
pub fn checksum_with(initial: u32, data: &[u8]) -> u16 {
    let mut sum = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Partial sum of a transport pseudo-header (RFC 793 / RFC 8200 §8.1).
pub fn pseudo_header_sum(
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    proto: u8,
    len: usize,
) -> u32 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
    };
    match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => {
            add(&ip::to_v6(src).octets());
            add(&ip::to_v6(dst).octets());
        }
    }
    let len = len as u32;
    sum + (len >> 16) + (len & 0xffff) + proto as u32
}

/// A transport checksum over a pseudo-header and `segment` (whose checksum field
/// must be zero when emitting, or intact when verifying: then the result is 0).
pub fn transport_checksum(
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    proto: u8,
    segment: &[u8],
) -> u16 {
    checksum_with(pseudo_header_sum(src, dst, proto, segment.len()), segment)
}

#[cfg(any(test, feature = "test-support"))]
pub mod testutil;
