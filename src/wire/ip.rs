//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers: one `IpRepr` for both families.

use super::WireError;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use std::net::{IpAddr, Ipv6Addr};

/// IP protocol numbers synscope deals with.
pub struct Protocol;
impl Protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// An IPv4 address seen as IPv6 (for pseudo-header sums of mixed inputs).
pub fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The fields of an IP header that synscope reads or sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRepr {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ident: u16,
    /// True when this is a non-first fragment: no transport header follows.
    pub later_fragment: bool,
    /// IPv6 flow label (0 for IPv4).
    pub flow_label: u32,
}

/// Upper bound on IPv6 extension headers walked before giving up.
const MAX_EXT_HEADERS: usize = 8;

impl IpRepr {
    pub const V4_HEADER_LEN: usize = 20;
    pub const V6_HEADER_LEN: usize = 40;

    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// Header length this repr emits.
    pub fn header_len(&self) -> usize {
        if self.is_ipv6() {
            Self::V6_HEADER_LEN
        } else {
            Self::V4_HEADER_LEN
        }
    }

    /// Parses an IP header; returns it and the transport bytes it carries (trimmed
    /// to the header's own length field, so link-layer padding is dropped).
    pub fn parse(bytes: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
        match bytes.first().map(|b| b >> 4) {
            Some(4) => Self::parse_v4(bytes),
            Some(6) => Self::parse_v6(bytes),
            Some(_) => Err(WireError::Unsupported("ip")),
            None => Err(WireError::Truncated("ip")),
        }
    }

    /// Parses the IP header quoted inside an ICMP error: the quote is usually cut
    /// short, so the length field may exceed the bytes present. Returns the
    /// header and whatever transport bytes were quoted.
    pub fn parse_quoted(bytes: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
        let total = match bytes.first().map(|b| b >> 4) {
            Some(4) if bytes.len() >= 4 => u16::from_be_bytes([bytes[2], bytes[3]]) as usize,
            Some(6) if bytes.len() >= 6 => 40 + u16::from_be_bytes([bytes[4], bytes[5]]) as usize,
            _ => return Err(WireError::Truncated("quoted ip")),
        };
        if total <= bytes.len() {
            return Self::parse(bytes);
        }
        // Rewrite the length to what is present and parse that.
        let mut copy = bytes.to_vec();
        let present = bytes.len();
        if copy[0] >> 4 == 4 {
            copy[2..4].copy_from_slice(&(present as u16).to_be_bytes());
        } else if present >= 40 {
            copy[4..6].copy_from_slice(&((present - 40) as u16).to_be_bytes());
        } else {
            return Err(WireError::Truncated("quoted ipv6"));
        }
        let (repr, payload) = Self::parse(&copy)?;
        let start = present - payload.len();
        Ok((repr, &bytes[start..]))
    }

    fn parse_v4(bytes: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
        let p = Ipv4Packet::new(bytes).ok_or(WireError::Truncated("ipv4"))?;
        let ihl = p.get_header_length() as usize * 4;
        let total = p.get_total_length() as usize;
        if ihl < Self::V4_HEADER_LEN || ihl > total {
            return Err(WireError::BadLength("ipv4"));
        }
        if total > bytes.len() {
            return Err(WireError::Truncated("ipv4"));
        }
        let frag_offset = p.get_fragment_offset();
        let repr = IpRepr {
            src: IpAddr::V4(p.get_source()),
            dst: IpAddr::V4(p.get_destination()),
            protocol: p.get_next_level_protocol().0,
            ttl: p.get_ttl(),
            ident: p.get_identification(),
            later_fragment: frag_offset != 0,
            flow_label: 0,
        };
        Ok((repr, &bytes[ihl..total]))
    }

    fn parse_v6(bytes: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
        let p = Ipv6Packet::new(bytes).ok_or(WireError::Truncated("ipv6"))?;
        let end = Self::V6_HEADER_LEN + p.get_payload_length() as usize;
        if end > bytes.len() {
            return Err(WireError::Truncated("ipv6"));
        }
        let mut next = p.get_next_header().0;
        let mut off = Self::V6_HEADER_LEN;
        let mut later_fragment = false;
        for _ in 0..MAX_EXT_HEADERS {
            let ext_len = match next {
                // hop-by-hop, routing, destination options: (len + 1) * 8 octets
                0 | 43 | 60 => {
                    let b = bytes.get(off + 1).ok_or(WireError::Truncated("ipv6 ext"))?;
                    (*b as usize + 1) * 8
                }
                44 => {
                    let hi = *bytes
                        .get(off + 2)
                        .ok_or(WireError::Truncated("ipv6 frag"))?;
                    let lo = *bytes
                        .get(off + 3)
                        .ok_or(WireError::Truncated("ipv6 frag"))?;
                    later_fragment = (u16::from_be_bytes([hi, lo]) >> 3) != 0;
                    8
                }
                _ => break,
            };
            let n = *bytes.get(off).ok_or(WireError::Truncated("ipv6 ext"))?;
            if off + ext_len > end {
                return Err(WireError::BadLength("ipv6 ext"));
            }
            next = n;
            off += ext_len;
        }
        let repr = IpRepr {
            src: IpAddr::V6(p.get_source()),
            dst: IpAddr::V6(p.get_destination()),
            protocol: next,
            ttl: p.get_hop_limit(),
            ident: 0,
            later_fragment,
            flow_label: p.get_flow_label(),
        };
        Ok((repr, &bytes[off..end]))
    }

    /// Builds the whole datagram: this header (IPv4 checksum computed, no options,
    /// no IPv6 extension headers) followed by `payload`.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let hl = self.header_len();
        let mut buf = vec![0u8; hl + payload.len()];
        buf[hl..].copy_from_slice(payload);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = MutableIpv4Packet::new(&mut buf).expect("buffer sized above");
                p.set_version(4);
                p.set_header_length(5);
                p.set_total_length((hl + payload.len()).min(u16::MAX as usize) as u16);
                p.set_identification(self.ident);
                p.set_flags(pnet_packet::ipv4::Ipv4Flags::DontFragment);
                p.set_ttl(self.ttl);
                p.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocol(self.protocol));
                p.set_source(s);
                p.set_destination(d);
                let c = pnet_packet::ipv4::checksum(&p.to_immutable());
                p.set_checksum(c);
            }
            _ => {
                let mut p = MutableIpv6Packet::new(&mut buf).expect("buffer sized above");
                p.set_version(6);
                p.set_flow_label(self.flow_label & 0xf_ffff);
                p.set_payload_length(payload.len().min(u16::MAX as usize) as u16);
                p.set_next_header(pnet_packet::ip::IpNextHeaderProtocol(self.protocol));
                p.set_hop_limit(self.ttl);
                p.set_source(to_v6(self.src));
                p.set_destination(to_v6(self.dst));
            }
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::Noise;
    use std::net::Ipv4Addr;

    /// IPv4 header of a SYN captured in the lab (198.18.0.1 -> 198.18.0.2, TTL 64).
    static V4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0xc6, 0x12, 0x00,
        0x01, 0xc6, 0x12, 0x00, 0x02,
    ];

    fn v4() -> IpRepr {
        IpRepr {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            protocol: Protocol::TCP,
            ttl: 64,
            ident: 0x1234,
            later_fragment: false,
            flow_label: 0,
        }
    }

    #[test]
    fn v4_emit_matches_bytes_and_parses_back() {
        let bytes = v4().emit(&[0u8; 40]);
        let mut want = V4_HEADER;
        let c = crate::wire::checksum_with(0, &want);
        want[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&bytes[..20], &want);
        assert_eq!(crate::wire::checksum_with(0, &bytes[..20]), 0);
        let (repr, payload) = IpRepr::parse(&bytes).unwrap();
        assert_eq!(repr, v4());
        assert_eq!(payload.len(), 40);
    }

    #[test]
    fn v4_trailing_padding_is_dropped_and_short_total_rejected() {
        let mut bytes = v4().emit(&[1u8; 40]);
        bytes.extend_from_slice(&[0xee; 6]);
        assert_eq!(IpRepr::parse(&bytes).unwrap().1.len(), 40);
        assert_eq!(
            IpRepr::parse(&bytes[..50]),
            Err(WireError::Truncated("ipv4"))
        );
        let mut bad = bytes.clone();
        bad[0] = 0x44; // IHL 16 bytes
        assert_eq!(IpRepr::parse(&bad), Err(WireError::BadLength("ipv4")));
    }

    #[test]
    fn v6_round_trip_and_extension_header() {
        let repr = IpRepr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            protocol: Protocol::TCP,
            ttl: 63,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        let bytes = repr.emit(&[7u8; 20]);
        assert_eq!(bytes.len(), 60);
        assert_eq!(&bytes[..8], &[0x60, 0, 0, 0, 0, 20, 6, 63]);
        let (back, payload) = IpRepr::parse(&bytes).unwrap();
        assert_eq!(back, repr);
        assert_eq!(payload, &[7u8; 20]);
        // insert a destination-options header (8 octets) before TCP
        let mut ext = bytes[..40].to_vec();
        ext[6] = 60;
        ext[5] = 28;
        ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[7u8; 20]);
        let (back, payload) = IpRepr::parse(&ext).unwrap();
        assert_eq!(back.protocol, Protocol::TCP);
        assert_eq!(payload, &[7u8; 20]);
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(7);
        let v6 = IpRepr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            ..v4()
        };
        let seeds = [v4().emit(&[0; 20]), v6.emit(&[0; 20])];
        for i in 0..50_000 {
            let input = if i % 3 == 0 {
                n.bytes(80)
            } else {
                n.mutate(&seeds[i % 2])
            };
            let _ = IpRepr::parse(&input);
        }
    }
}
