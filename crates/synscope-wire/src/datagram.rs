//! A whole IP datagram as captured: IP header plus the transport message it carries.

use super::{IcmpRepr, IpRepr, Protocol, TcpRepr, UdpRepr, WireError};

/// What an IP datagram carries, parsed as far as synscope reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp(TcpRepr),
    /// A UDP datagram (DNS replies, quoted probes).
    Udp(UdpRepr),
    /// An ICMP or ICMPv6 message (matching the IP version).
    Icmp(IcmpRepr),
    /// A fragment of a larger datagram (first or later): its transport header
    /// is cut short or absent. The capture layer reassembles fragments
    /// ([`super::reassembly`]) before anything reads them.
    Fragment,
    /// A protocol synscope does not read: another transport, ESP (whose
    /// content is encrypted), IPv6 No Next Header, an unknown next header, or
    /// an extension-header chain longer than [`super::ip::MAX_EXT_HEADERS`].
    Other(u8),
}

/// Whether transport checksums are checked. Packets captured on their way out,
/// or received over veth and loopback, often carry only the pseudo-header part
/// of the checksum (offload: the kernel reports TP_STATUS_CSUMNOTREADY); those
/// are parsed with `Offloaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Reject a TCP or UDP packet whose checksum does not verify.
    Verify,
    /// Do not check TCP and UDP checksums (the kernel has not filled them in).
    Offloaded,
}

/// A parsed IP datagram: its header and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The IP header (v4 or v6, extension headers walked).
    pub ip: IpRepr,
    /// The transport message, or why it was not parsed.
    pub transport: Transport,
}

impl Datagram {
    /// Parses a datagram starting at its IP header; transport checksums are verified.
    pub fn parse(bytes: &[u8]) -> Result<Datagram, WireError> {
        Self::parse_with(bytes, Checksums::Verify)
    }

    /// Parses a datagram; TCP and UDP checksums are checked only under `Verify`
    /// (ICMP is never offloaded and is always checked).
    pub fn parse_with(bytes: &[u8], checksums: Checksums) -> Result<Datagram, WireError> {
        let verify = checksums == Checksums::Verify;
        let parsed = IpRepr::parse_detail(bytes)?;
        let (ip, payload) = (parsed.repr, parsed.payload);
        let transport = if parsed.fragment.is_some() {
            Transport::Fragment
        } else {
            match (ip.protocol, ip.is_ipv6()) {
                (Protocol::TCP, _) if verify => {
                    Transport::Tcp(TcpRepr::parse(payload, ip.src, ip.dst)?)
                }
                (Protocol::TCP, _) => Transport::Tcp(TcpRepr::parse_unchecked(payload)?),
                (Protocol::UDP, _) => {
                    Transport::Udp(UdpRepr::parse_with(payload, ip.src, ip.dst, verify)?)
                }
                (Protocol::ICMP, false) | (Protocol::ICMPV6, true) => {
                    Transport::Icmp(IcmpRepr::parse(payload, ip.src, ip.dst)?)
                }
                (p, _) => Transport::Other(p),
            }
        };
        Ok(Datagram { ip, transport })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fixture, with_full_checksum};

    #[test]
    fn offloaded_checksums_need_the_offloaded_mode() {
        let syn = fixture("synack_v4");
        assert_eq!(Datagram::parse(syn), Err(WireError::Checksum("tcp")));
        assert!(Datagram::parse_with(syn, Checksums::Offloaded).is_ok());
        assert!(Datagram::parse(&with_full_checksum(syn)).is_ok());
    }

    #[test]
    fn every_fixture_round_trips_through_repr() {
        for name in [
            "syn_v4",
            "synack_v4",
            "rst_v4",
            "syn_v6",
            "synack_v6",
            "rst_v6",
            "finack_v4",
        ] {
            let raw = fixture(name);
            let full = with_full_checksum(raw);
            // emitted bytes equal the capture except for the completed checksum
            let ck = if raw[0] >> 4 == 4 { 20 + 16 } else { 40 + 16 };
            assert_eq!(raw.len(), full.len(), "{name}");
            assert_eq!(raw[..ck], full[..ck], "{name}");
            assert_eq!(raw[ck + 2..], full[ck + 2..], "{name}");
            assert_eq!(
                Datagram::parse(&full).unwrap(),
                Datagram::parse_with(raw, Checksums::Offloaded).unwrap()
            );
        }
    }
}
