//! A TCP segment quoted in an ICMP error, read field by field as far as the
//! quote goes: what a router saw of our SYN. Linux quotes the whole IP header
//! and as much of the datagram as fits a 576-byte (IPv4) or 1280-byte (IPv6)
//! error, so a SYN's options are all there; RFC 792 routers quote 8 bytes of
//! transport header (ports and sequence number) and nothing more.

use super::{IcmpRepr, IpRepr, Protocol, TcpFlags, TcpOptions, WireError};

/// Our TCP segment as the router that sent an ICMP error saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedTcp {
    /// The quoted IP header, as the router received it.
    pub ip: IpRepr,
    /// IPv4 TOS byte or IPv6 traffic class: DSCP (upper six bits) and ECN (lower two).
    pub tos: u8,
    /// IPv4 Don't Fragment (false for IPv6).
    pub dont_fragment: bool,
    /// Our source port.
    pub src_port: u16,
    /// The port probed.
    pub dst_port: u16,
    /// Present when at least 8 transport bytes were quoted.
    pub seq: Option<u32>,
    /// Present when at least 14 transport bytes were quoted.
    pub flags: Option<TcpFlags>,
    /// Present when at least 16 transport bytes were quoted.
    pub window: Option<u16>,
    /// Present when the whole TCP header, options included, was quoted.
    pub options: Option<TcpOptions>,
}

/// The TOS byte (IPv4) or traffic class (IPv6) of the datagram starting at
/// `ip`; None when too short or not IP.
pub fn traffic_class(ip: &[u8]) -> Option<u8> {
    match ip.first()? >> 4 {
        4 => ip.get(1).copied(),
        6 => {
            let (a, b) = (*ip.first()?, *ip.get(1)?);
            Some((a << 4) | (b >> 4))
        }
        _ => None,
    }
}

impl QuotedTcp {
    /// Reads the quote of an ICMP or ICMPv6 error message (`icmp` starts at the
    /// ICMP header). Fails when the message quotes no TCP segment with ports.
    pub fn parse_icmp(icmp: &[u8]) -> Result<QuotedTcp, WireError> {
        let quote = icmp
            .get(IcmpRepr::HEADER_LEN..)
            .ok_or(WireError::Truncated("icmp"))?;
        Self::parse(quote)
    }

    /// Reads a quoted datagram (starting at its IP header).
    pub fn parse(quote: &[u8]) -> Result<QuotedTcp, WireError> {
        let (ip, t) = IpRepr::parse_quoted(quote)?;
        if ip.protocol != Protocol::TCP || ip.later_fragment {
            return Err(WireError::Unsupported("quoted tcp"));
        }
        if t.len() < 4 {
            return Err(WireError::Truncated("quoted tcp"));
        }
        let tos = traffic_class(quote).ok_or(WireError::Truncated("quoted ip"))?;
        let dont_fragment = !ip.is_ipv6() && quote.get(6).is_some_and(|b| b & 0x40 != 0);
        let be16 = |i: usize| t.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let seq = t
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let flags = t.get(13).map(|&f| TcpFlags(f));
        let window = be16(14);
        let options = t.get(12).and_then(|&off| {
            let hl = (off >> 4) as usize * 4;
            (hl >= 20)
                .then(|| t.get(20..hl))
                .flatten()
                .map(TcpOptions::parse)
        });
        Ok(QuotedTcp {
            tos,
            dont_fragment,
            src_port: be16(0).unwrap_or(0),
            dst_port: be16(2).unwrap_or(0),
            seq,
            flags,
            window,
            options,
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;
    use std::net::IpAddr;

    #[test]
    fn a_whole_quote_shows_every_field_of_the_syn() {
        let syn = include_bytes!("fixtures/linux_syn_v4.bin");
        let (s, d): (IpAddr, IpAddr) =
            ("198.18.0.9".parse().unwrap(), "198.18.0.1".parse().unwrap());
        let m = IcmpRepr::emit_error(11, 0, syn, s, d);
        let q = QuotedTcp::parse_icmp(&m).unwrap();
        assert_eq!(q.dst_port, 80);
        assert_eq!(q.seq, Some(644410958));
        assert_eq!(q.flags, Some(TcpFlags::SYN));
        assert!(q.dont_fragment);
        assert_eq!(q.tos, 0);
        let o = q.options.unwrap();
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted && o.timestamps.is_some() && o.window_scale.is_some());
    }

    #[test]
    fn a_short_quote_is_read_as_far_as_it_goes() {
        let syn = include_bytes!("fixtures/linux_syn_v4.bin");
        let (s, d): (IpAddr, IpAddr) =
            ("198.18.0.9".parse().unwrap(), "198.18.0.1".parse().unwrap());
        let q = QuotedTcp::parse_icmp(&IcmpRepr::emit_error(11, 0, &syn[..28], s, d)).unwrap();
        assert_eq!((q.seq, q.flags, q.options), (Some(644410958), None, None));
        // the header but not all options
        let q = QuotedTcp::parse_icmp(&IcmpRepr::emit_error(11, 0, &syn[..44], s, d)).unwrap();
        assert_eq!((q.flags, q.options), (Some(TcpFlags::SYN), None));
        assert!(QuotedTcp::parse_icmp(&IcmpRepr::emit_error(11, 0, &syn[..22], s, d)).is_err());
    }

    #[test]
    fn traffic_class_of_both_families() {
        let mut v4 = include_bytes!("fixtures/linux_syn_v4.bin").to_vec();
        v4[1] = 0x22;
        assert_eq!(traffic_class(&v4), Some(0x22));
        let mut v6 = include_bytes!("fixtures/linux_syn_v6.bin").to_vec();
        // traffic class 0xb8 (EF) straddles bytes 0 and 1
        v6[0] = 0x6b;
        v6[1] = (v6[1] & 0x0f) | 0x80;
        assert_eq!(traffic_class(&v6), Some(0xb8));
        let q = QuotedTcp::parse(&v6).unwrap();
        assert_eq!(q.tos, 0xb8);
        assert!(!q.dont_fragment);
        assert_eq!(traffic_class(&[]), None);
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(13);
        let seeds: [&[u8]; 2] = [
            include_bytes!("fixtures/linux_syn_v4.bin"),
            include_bytes!("fixtures/linux_syn_v6.bin"),
        ];
        for k in 0..100_000 {
            let m = n.mutate(seeds[k % 2]);
            let _ = QuotedTcp::parse(&m);
            let _ = QuotedTcp::parse_icmp(&m);
            let _ = traffic_class(&m);
        }
    }
}
