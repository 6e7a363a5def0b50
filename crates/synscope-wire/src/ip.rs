//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers: one `IpRepr` for both families.

use super::WireError;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use std::net::{IpAddr, Ipv6Addr};

/// IP protocol numbers synscope deals with.
pub struct Protocol;
impl Protocol {
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// ICMPv6 (RFC 4443).
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
    /// Source address; its family is the datagram's IP version.
    pub src: IpAddr,
    /// Destination address, of the same family as `src`.
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

/// IPv6 extension headers walked before giving up (the chain is then
/// reported as ending in the header it stopped at, a protocol nobody reads).
/// The capture filter walks fewer (synscope's `io::bpf` in the main crate) and lets deeper chains
/// through by address for this parser to read.
pub const MAX_EXT_HEADERS: usize = 16;

/// IPv6 next-header values of the extension headers synscope walks past.
pub struct ExtHeader;
impl ExtHeader {
    /// Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload: everything after it is encrypted, so the
    /// walk ends there (the datagram carries protocol 50, which nothing reads).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AUTH: u8 = 51;
    /// Destination Options (RFC 8200 §4.6).
    pub const DEST_OPTS: u8 = 60;
    /// Headers with a length field that the walk skips.
    pub fn is_skippable(next: u8) -> bool {
        matches!(
            next,
            Self::HOP_BY_HOP | Self::ROUTING | Self::FRAGMENT | Self::AUTH | Self::DEST_OPTS
        )
    }
}

/// Where a fragment sits in the datagram it is part of (IPv4 header fields or
/// the IPv6 Fragment header). Only fragments of a larger datagram have one: an
/// IPv6 "atomic" fragment (offset 0, no more fragments, RFC 6946) is a whole
/// datagram and is parsed as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub ident: u32,
    /// Offset of this fragment's data in the reassembled payload, in bytes.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// Bytes of the packet before the fragment's data that are kept on
    /// reassembly: the IPv4 header, or the IPv6 header and the extension
    /// headers before the Fragment header.
    pub header_len: usize,
    /// IPv6: offset of the next-header byte that names the Fragment header
    /// (rewritten on reassembly); 0 for IPv4.
    pub next_header_at: usize,
}

/// What [`IpRepr::parse_detail`] reads: the header, its transport bytes and,
/// for a fragment, where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpParse<'a> {
    /// The header's fields.
    pub repr: IpRepr,
    /// The transport bytes, or for a fragment its share of the payload.
    pub payload: &'a [u8],
    /// Where the fragment sits; None for a whole datagram.
    pub fragment: Option<FragmentInfo>,
}

impl IpRepr {
    /// Bytes of an IPv4 header without options (the only kind we emit).
    pub const V4_HEADER_LEN: usize = 20;
    /// Bytes of the fixed IPv6 header.
    pub const V6_HEADER_LEN: usize = 40;

    /// Is this an IPv6 header (by its source address's family)?
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
        Self::parse_detail(bytes).map(|p| (p.repr, p.payload))
    }

    /// As [`IpRepr::parse`], and says whether the packet is a fragment of a
    /// larger datagram. IPv6 extension headers (Hop-by-Hop, Routing, Fragment,
    /// Destination Options, Authentication) are skipped by their lengths; the
    /// walk ends at the first other next header (a transport, ESP, No Next
    /// Header or an unknown value, which becomes `protocol`), at the Fragment
    /// header of a non-atomic fragment (its data is the rest of the datagram),
    /// or after [`MAX_EXT_HEADERS`].
    pub fn parse_detail(bytes: &[u8]) -> Result<IpParse<'_>, WireError> {
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

    fn parse_v4(bytes: &[u8]) -> Result<IpParse<'_>, WireError> {
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
        let more = p.get_flags() & pnet_packet::ipv4::Ipv4Flags::MoreFragments != 0;
        let fragment = (frag_offset != 0 || more).then_some(FragmentInfo {
            ident: p.get_identification() as u32,
            offset: frag_offset as usize * 8,
            more,
            header_len: ihl,
            next_header_at: 0,
        });
        let repr = IpRepr {
            src: IpAddr::V4(p.get_source()),
            dst: IpAddr::V4(p.get_destination()),
            protocol: p.get_next_level_protocol().0,
            ttl: p.get_ttl(),
            ident: p.get_identification(),
            later_fragment: frag_offset != 0,
            flow_label: 0,
        };
        Ok(IpParse {
            repr,
            payload: &bytes[ihl..total],
            fragment,
        })
    }

    fn parse_v6(bytes: &[u8]) -> Result<IpParse<'_>, WireError> {
        let p = Ipv6Packet::new(bytes).ok_or(WireError::Truncated("ipv6"))?;
        let end = Self::V6_HEADER_LEN + p.get_payload_length() as usize;
        if end > bytes.len() {
            return Err(WireError::Truncated("ipv6"));
        }
        let mut next = p.get_next_header().0;
        // where the byte naming the current header sits
        let mut next_at = 6;
        let mut off = Self::V6_HEADER_LEN;
        let mut later_fragment = false;
        let mut fragment = None;
        let byte = |i: usize, what| bytes.get(i).copied().ok_or(WireError::Truncated(what));
        for _ in 0..MAX_EXT_HEADERS {
            let ext_len = match next {
                // hop-by-hop, routing, destination options: (len + 1) * 8 octets
                ExtHeader::HOP_BY_HOP | ExtHeader::ROUTING | ExtHeader::DEST_OPTS => {
                    (byte(off + 1, "ipv6 ext")? as usize + 1) * 8
                }
                // authentication header (RFC 4302): (len + 2) * 4 octets
                ExtHeader::AUTH => (byte(off + 1, "ipv6 ah")? as usize + 2) * 4,
                ExtHeader::FRAGMENT => 8,
                _ => break,
            };
            if off + ext_len > end {
                return Err(WireError::BadLength("ipv6 ext"));
            }
            let n = byte(off, "ipv6 ext")?;
            if next == ExtHeader::FRAGMENT {
                let field = u16::from_be_bytes([bytes[off + 2], bytes[off + 3]]);
                let offset = (field >> 3) as usize * 8;
                let more = field & 1 != 0;
                if offset != 0 || more {
                    // a piece of a larger datagram: the rest is its data
                    later_fragment = offset != 0;
                    fragment = Some(FragmentInfo {
                        ident: u32::from_be_bytes([
                            bytes[off + 4],
                            bytes[off + 5],
                            bytes[off + 6],
                            bytes[off + 7],
                        ]),
                        offset,
                        more,
                        header_len: off,
                        next_header_at: next_at,
                    });
                    next = n;
                    off += ext_len;
                    break;
                }
            }
            next = n;
            next_at = off;
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
        Ok(IpParse {
            repr,
            payload: &bytes[off..end],
            fragment,
        })
    }

    /// Builds the whole datagram: this header (IPv4 checksum computed, no options,
    /// no IPv6 extension headers) followed by `payload`.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let hl = self.header_len();
        let mut buf = vec![0u8; hl + payload.len()];
        buf[hl..].copy_from_slice(payload);
        self.write_header(&mut buf);
        buf
    }

    /// The whole datagram of a UDP datagram from `src_port` to `dst_port`
    /// whose payload `write` appends to the buffer it is given: what
    /// `self.emit(&UdpRepr { .. }.emit(src, dst))` builds, byte for byte, in
    /// one buffer (bulk DNS builds one per query). `self.protocol` should be
    /// UDP.
    pub fn emit_udp(
        &self,
        src_port: u16,
        dst_port: u16,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Vec<u8> {
        let hl = self.header_len();
        let mut buf = Vec::with_capacity(hl + crate::UdpRepr::HEADER_LEN + 128);
        buf.resize(hl + crate::UdpRepr::HEADER_LEN, 0);
        write(&mut buf);
        let udp_len = (buf.len() - hl).min(u16::MAX as usize) as u16;
        let udp = &mut buf[hl..];
        udp[0..2].copy_from_slice(&src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let mut c = crate::transport_checksum(self.src, self.dst, Protocol::UDP, udp);
        if c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        self.write_header(&mut buf);
        buf
    }

    /// Writes this header at the start of `buf` (header and payload), its
    /// lengths from `buf`'s.
    fn write_header(&self, buf: &mut [u8]) {
        let hl = self.header_len();
        let total_len = buf.len();
        let payload_len = total_len.saturating_sub(hl);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if buf.len() >= 20 => {
                // written field by field: the one header bulk DNS writes per query
                let h = &mut buf[..20];
                h[0] = 0x45; // version 4, 5 words
                h[1] = 0;
                h[2..4].copy_from_slice(&(total_len.min(u16::MAX as usize) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&self.ident.to_be_bytes());
                h[6..8].copy_from_slice(&[0x40, 0]); // don't fragment
                h[8] = self.ttl;
                h[9] = self.protocol;
                h[10..12].fill(0);
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = crate::checksum_with(0, h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V4(_), IpAddr::V4(_)) => {}
            _ => {
                let mut p = MutableIpv6Packet::new(buf).expect("buffer sized by the caller");
                p.set_version(6);
                p.set_flow_label(self.flow_label & 0xf_ffff);
                p.set_payload_length(payload_len.min(u16::MAX as usize) as u16);
                p.set_next_header(pnet_packet::ip::IpNextHeaderProtocol(self.protocol));
                p.set_hop_limit(self.ttl);
                p.set_source(to_v6(self.src));
                p.set_destination(to_v6(self.dst));
            }
        }
    }
}

/// `datagram` (an IPv6 datagram without extension headers, as
/// [`IpRepr::emit`] builds it) with extension headers inserted after its
/// header: each given as (its type, its bytes), its first byte (the next
/// header) filled in to chain them; the last names the original protocol.
/// None if `datagram` is not IPv6 or the result would not fit. For tests and
/// the lab's raw responders.
pub fn insert_v6_ext_headers(datagram: &[u8], headers: &[(u8, &[u8])]) -> Option<Vec<u8>> {
    if datagram.first()? >> 4 != 6 || datagram.len() < IpRepr::V6_HEADER_LEN {
        return None;
    }
    if headers.iter().any(|(_, b)| b.is_empty()) {
        return None;
    }
    let mut out = datagram[..IpRepr::V6_HEADER_LEN].to_vec();
    let original = out[6];
    if let Some((first, _)) = headers.first() {
        out[6] = *first;
    }
    for (i, (_, bytes)) in headers.iter().enumerate() {
        let mut h = bytes.to_vec();
        h[0] = headers.get(i + 1).map_or(original, |n| n.0);
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(&datagram[IpRepr::V6_HEADER_LEN..]);
    let len = u16::try_from(out.len() - IpRepr::V6_HEADER_LEN).ok()?;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;
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
        let c = crate::checksum_with(0, &want);
        want[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&bytes[..20], &want);
        assert_eq!(crate::checksum_with(0, &bytes[..20]), 0);
        // the checksum pnet computes
        let p = Ipv4Packet::new(&bytes).unwrap();
        assert_eq!(pnet_packet::ipv4::checksum(&p), p.get_checksum());
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

    /// An IPv6 header for 2001:db8::2 -> 2001:db8::1 followed by `exts` (each
    /// naming the next) and 20 bytes of "transport" 0x07.
    fn v6_with(first: u8, exts: &[&[u8]]) -> Vec<u8> {
        let repr = IpRepr {
            src: "2001:db8::2".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            protocol: first,
            ttl: 64,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        let mut payload: Vec<u8> = exts.concat();
        payload.extend_from_slice(&[7u8; 20]);
        repr.emit(&payload)
    }

    /// Hop-by-Hop with a PadN option (8 bytes), then Destination Options (16
    /// bytes: PadN of 12), then TCP.
    static HBH_TO_DSTOPT: [u8; 8] = [60, 0, 1, 4, 0, 0, 0, 0];
    static DSTOPT_TO_TCP: [u8; 16] = [6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    /// Routing header type 0 segments left 0, no addresses, then AH.
    static ROUTING_TO_AH: [u8; 8] = [51, 0, 0, 0, 0, 0, 0, 0];
    /// Authentication header: payload length 4 -> (4 + 2) * 4 = 24 bytes, then TCP.
    static AH_TO_TCP: [u8; 24] = [
        6, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
        0xaa, 0xaa, 0xaa, 0xaa,
    ];
    /// An atomic fragment (offset 0, M = 0), then TCP.
    static ATOMIC_FRAG_TO_TCP: [u8; 8] = [6, 0, 0, 0, 0, 0, 0, 42];

    #[test]
    fn v6_extension_header_chain_is_walked() {
        let cases: [(u8, &[&[u8]]); 4] = [
            (0, &[&HBH_TO_DSTOPT, &DSTOPT_TO_TCP]),
            (43, &[&ROUTING_TO_AH, &AH_TO_TCP]),
            (44, &[&ATOMIC_FRAG_TO_TCP]),
            (
                0,
                &[
                    &[43, 0, 1, 4, 0, 0, 0, 0],
                    &ROUTING_TO_AH,
                    &[
                        44, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                    &[60, 0, 0, 0, 0, 0, 0, 9],
                    &DSTOPT_TO_TCP,
                ],
            ),
        ];
        for (first, exts) in cases {
            let bytes = v6_with(first, exts);
            let p = IpRepr::parse_detail(&bytes).unwrap();
            assert_eq!(p.repr.protocol, Protocol::TCP, "{exts:?}");
            assert_eq!(p.payload, &[7u8; 20], "{exts:?}");
            assert_eq!(p.fragment, None);
            assert!(!p.repr.later_fragment);
        }
    }

    #[test]
    fn v6_esp_unknown_and_too_deep_chains_end_the_walk() {
        // ESP: the walk ends there, its content is opaque
        let esp = v6_with(0, &[&[50, 0, 1, 4, 0, 0, 0, 0]]);
        let p = IpRepr::parse_detail(&esp).unwrap();
        assert_eq!((p.repr.protocol, p.payload.len()), (50, 20));
        // an unknown next header after Destination Options
        let unknown = v6_with(60, &[&[253, 0, 1, 4, 0, 0, 0, 0]]);
        assert_eq!(IpRepr::parse(&unknown).unwrap().0.protocol, 253);
        // 17 Destination Options headers: the walk gives up after 16
        let dst: Vec<&[u8]> = vec![&[60, 0, 1, 4, 0, 0, 0, 0]; MAX_EXT_HEADERS + 1];
        let deep = v6_with(60, &dst);
        let (repr, payload) = IpRepr::parse(&deep).unwrap();
        assert_eq!(repr.protocol, 60);
        assert_eq!(payload.len(), 8 + 20);
        // an extension header longer than the packet
        let long = v6_with(0, &[&[6, 200, 1, 4, 0, 0, 0, 0]]);
        assert_eq!(IpRepr::parse(&long), Err(WireError::BadLength("ipv6 ext")));
        // a chain cut short (the length byte of the next header is missing)
        let mut cut = v6_with(0, &[&[60, 0, 1, 4, 0, 0, 0, 0]]);
        cut.truncate(48);
        cut[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(IpRepr::parse(&cut), Err(WireError::Truncated("ipv6 ext")));
    }

    #[test]
    fn fragments_say_where_they_sit() {
        // IPv4: id 0x1234, MF, offset 0 (first fragment)
        let mut v = v4().emit(&[0; 16]);
        v[6..8].copy_from_slice(&[0x20, 0]);
        let p = IpRepr::parse_detail(&v).unwrap();
        assert_eq!(
            p.fragment,
            Some(FragmentInfo {
                ident: 0x1234,
                offset: 0,
                more: true,
                header_len: 20,
                next_header_at: 0
            })
        );
        assert!(!p.repr.later_fragment);
        // offset 3 (24 bytes), last
        v[6..8].copy_from_slice(&[0x00, 3]);
        let p = IpRepr::parse_detail(&v).unwrap();
        assert_eq!(p.fragment.map(|f| (f.offset, f.more)), Some((24, false)));
        assert!(p.repr.later_fragment);
        // DF alone: whole
        v[6..8].copy_from_slice(&[0x40, 0]);
        assert_eq!(IpRepr::parse_detail(&v).unwrap().fragment, None);
        // IPv6: Hop-by-Hop, then a Fragment header at 48 (offset 8, M, id 0x01020304)
        let f = v6_with(0, &[&[44, 0, 1, 4, 0, 0, 0, 0], &[6, 0, 0, 9, 1, 2, 3, 4]]);
        let p = IpRepr::parse_detail(&f).unwrap();
        assert_eq!(
            p.fragment,
            Some(FragmentInfo {
                ident: 0x0102_0304,
                offset: 8,
                more: true,
                header_len: 48,
                next_header_at: 40
            })
        );
        assert_eq!((p.repr.protocol, p.payload.len()), (6, 20));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(7);
        let v6 = IpRepr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            ..v4()
        };
        let seeds = [
            v4().emit(&[0; 20]),
            v6.emit(&[0; 20]),
            v6_with(0, &[&HBH_TO_DSTOPT, &DSTOPT_TO_TCP]),
            v6_with(43, &[&ROUTING_TO_AH, &AH_TO_TCP]),
            v6_with(0, &[&[44, 0, 1, 4, 0, 0, 0, 0], &[6, 0, 0, 9, 1, 2, 3, 4]]),
        ];
        for i in 0..50_000 {
            let input = if i % 3 == 0 {
                n.bytes(80)
            } else {
                n.mutate(&seeds[i % seeds.len()])
            };
            let _ = IpRepr::parse_detail(&input);
            let _ = IpRepr::parse_quoted(&input);
        }
    }
}
