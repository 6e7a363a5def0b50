//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages, errors above all: they quote
//! the start of the datagram that caused them, which is how we correlate them.

use super::{IpRepr, Protocol, WireError, checksum_with, transport_checksum};
use std::net::IpAddr;

/// What an ICMP error quotes of the offending datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    /// The quoted IP header: our probe as the router or host received it.
    pub ip: IpRepr,
    /// The quoted TCP/UDP source port (our probe's).
    pub src_port: u16,
    /// The quoted TCP/UDP destination port (the port probed).
    pub dst_port: u16,
    /// TCP sequence number of the quoted segment, when 8 bytes were quoted.
    pub tcp_seq: Option<u32>,
    /// The first two bytes after a quoted UDP header (a DNS query's id), when
    /// the quote reaches that far.
    pub udp_payload_id: Option<u16>,
}

/// An ICMP or ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpRepr {
    /// ICMPv6 (type numbers of RFC 4443), else ICMPv4.
    pub v6: bool,
    /// Message type (`3` destination unreachable, `11` time exceeded, ...).
    pub icmp_type: u8,
    /// Message code within its type.
    pub code: u8,
    /// The quoted datagram, for error messages whose quote could be read.
    pub quoted: Option<Quoted>,
}

/// Names of ICMP errors, as users see them in verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpError {
    /// ICMPv6, else ICMPv4.
    pub v6: bool,
    /// Error type (ICMPv4 3, 4, 5, 11, 12; ICMPv6 below 128).
    pub icmp_type: u8,
    /// Code within the type.
    pub code: u8,
}

impl IcmpError {
    /// A short kebab-case name (`admin-prohibited`, `port-unreachable`, ...).
    pub fn name(&self) -> String {
        let n = match (self.v6, self.icmp_type, self.code) {
            (false, 3, 0) => "net-unreachable",
            (false, 3, 1) => "host-unreachable",
            (false, 3, 2) => "protocol-unreachable",
            (false, 3, 3) => "port-unreachable",
            (false, 3, 4) => "fragmentation-needed",
            (false, 3, 6) => "net-unknown",
            (false, 3, 7) => "host-unknown",
            (false, 3, 9) => "net-prohibited",
            (false, 3, 10) => "host-prohibited",
            (false, 3, 13) => "admin-prohibited",
            (false, 3, 14) => "host-precedence-violation",
            (false, 3, 15) => "precedence-cutoff",
            (false, 11, _) => "time-exceeded",
            (false, 12, _) => "parameter-problem",
            (false, 4, _) => "source-quench",
            (true, 1, 0) => "no-route",
            (true, 1, 1) => "admin-prohibited",
            (true, 1, 2) => "beyond-scope",
            (true, 1, 3) => "address-unreachable",
            (true, 1, 4) => "port-unreachable",
            (true, 1, 5) => "source-policy-failed",
            (true, 1, 6) => "reject-route",
            (true, 2, _) => "packet-too-big",
            (true, 3, _) => "time-exceeded",
            (true, 4, _) => "parameter-problem",
            _ => "",
        };
        if n.is_empty() {
            format!(
                "icmp{}-{}-{}",
                if self.v6 { "6" } else { "" },
                self.icmp_type,
                self.code
            )
        } else {
            n.to_string()
        }
    }
}

impl IcmpRepr {
    /// Type, code, checksum and the 4-byte rest-of-header, before any quote.
    pub const HEADER_LEN: usize = 8;

    /// Is this an error message (one that quotes a datagram)?
    pub fn is_error(&self) -> bool {
        if self.v6 {
            self.icmp_type < 128
        } else {
            matches!(self.icmp_type, 3 | 4 | 5 | 11 | 12)
        }
    }

    /// The error's type and code; None for informational messages (echo, NDP).
    pub fn error(&self) -> Option<IcmpError> {
        self.is_error().then_some(IcmpError {
            v6: self.v6,
            icmp_type: self.icmp_type,
            code: self.code,
        })
    }

    /// Parses an ICMP (v4, `src`/`dst` IPv4) or ICMPv6 message, checksum verified.
    pub fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<IcmpRepr, WireError> {
        if bytes.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated("icmp"));
        }
        let v6 = src.is_ipv6();
        let sum = if v6 {
            transport_checksum(src, dst, Protocol::ICMPV6, bytes)
        } else {
            checksum_with(0, bytes)
        };
        if sum != 0 {
            return Err(WireError::Checksum("icmp"));
        }
        Self::parse_unchecked(bytes, v6)
    }

    /// Parses a message without looking at its checksum (for fuzzing and for
    /// quotes of quotes); `v6` selects ICMPv6 type numbers.
    pub fn parse_unchecked(bytes: &[u8], v6: bool) -> Result<IcmpRepr, WireError> {
        if bytes.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated("icmp"));
        }
        let mut repr = IcmpRepr {
            v6,
            icmp_type: bytes[0],
            code: bytes[1],
            quoted: None,
        };
        if repr.is_error() {
            repr.quoted = Self::parse_quote(&bytes[Self::HEADER_LEN..]);
        }
        Ok(repr)
    }

    fn parse_quote(b: &[u8]) -> Option<Quoted> {
        let (ip, t) = IpRepr::parse_quoted(b).ok()?;
        if t.len() < 4 || ip.later_fragment {
            return None;
        }
        let tcp_seq = (ip.protocol == Protocol::TCP && t.len() >= 8)
            .then(|| u32::from_be_bytes([t[4], t[5], t[6], t[7]]));
        let udp_payload_id = match (ip.protocol == Protocol::UDP, t.get(8..10)) {
            (true, Some(id)) => Some(u16::from_be_bytes([id[0], id[1]])),
            _ => None,
        };
        Some(Quoted {
            udp_payload_id,
            src_port: u16::from_be_bytes([t[0], t[1]]),
            dst_port: u16::from_be_bytes([t[2], t[3]]),
            tcp_seq,
            ip,
        })
    }

    /// Builds an error message of this type and code quoting `original` (cut to
    /// what fits a minimum-MTU datagram), checksum computed for `src` → `dst`.
    pub fn emit_error(
        icmp_type: u8,
        code: u8,
        original: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Vec<u8> {
        let v6 = src.is_ipv6();
        let max_quote = if v6 { 1280 - 48 } else { 576 - 28 };
        let q = &original[..original.len().min(max_quote)];
        let mut b = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(q);
        let c = if v6 {
            transport_checksum(src, dst, Protocol::ICMPV6, &b)
        } else {
            checksum_with(0, &b)
        };
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;
    use crate::{Datagram, Transport};

    fn icmp_of(bytes: &[u8]) -> IcmpRepr {
        match Datagram::parse(bytes).unwrap().transport {
            Transport::Icmp(i) => i,
            t => panic!("not icmp: {t:?}"),
        }
    }

    #[test]
    fn real_nftables_reject_v4_quotes_our_syn() {
        let i = icmp_of(include_bytes!("fixtures/linux_icmp_admin_v4.bin"));
        assert_eq!(i.error().unwrap().name(), "admin-prohibited");
        let q = i.quoted.unwrap();
        assert_eq!((q.src_port, q.dst_port), (60800, 111));
        assert_eq!(q.tcp_seq, Some(3424312317));
        assert_eq!(q.ip.dst, "198.18.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn real_nftables_reject_v6_quotes_our_syn() {
        let i = icmp_of(include_bytes!("fixtures/linux_icmp6_admin_v6.bin"));
        assert_eq!(i.error().unwrap().name(), "admin-prohibited");
        let q = i.quoted.unwrap();
        assert_eq!((q.src_port, q.dst_port), (60516, 111));
        assert_eq!(q.tcp_seq, Some(3715143809));
    }

    #[test]
    fn truncated_quote_is_read_as_far_as_it_goes() {
        let syn = include_bytes!("fixtures/linux_syn_v4.bin");
        let (s, d): (IpAddr, IpAddr) =
            ("198.18.0.9".parse().unwrap(), "198.18.0.1".parse().unwrap());
        // RFC 792 minimum: IP header + 8 bytes
        let m = IcmpRepr::emit_error(11, 0, &syn[..28], s, d);
        let i = IcmpRepr::parse(&m, s, d).unwrap();
        assert_eq!(i.error().unwrap().name(), "time-exceeded");
        assert_eq!(i.quoted.unwrap().tcp_seq, Some(644410958));
        // only 4 transport bytes: ports but no sequence number
        let m = IcmpRepr::emit_error(3, 3, &syn[..24], s, d);
        let q = IcmpRepr::parse(&m, s, d).unwrap().quoted.unwrap();
        assert_eq!((q.dst_port, q.tcp_seq), (80, None));
        // less than that: no quote
        let m = IcmpRepr::emit_error(3, 3, &syn[..22], s, d);
        assert_eq!(IcmpRepr::parse(&m, s, d).unwrap().quoted, None);
    }

    #[test]
    fn unknown_codes_get_numeric_names() {
        let e = IcmpError {
            v6: false,
            icmp_type: 3,
            code: 5,
        };
        assert_eq!(e.name(), "icmp-3-5");
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(5);
        let seeds: [&[u8]; 2] = [
            include_bytes!("fixtures/linux_icmp_admin_v4.bin"),
            include_bytes!("fixtures/linux_icmp6_admin_v6.bin"),
        ];
        for k in 0..100_000 {
            let m = n.mutate(seeds[k % 2]);
            let _ = Datagram::parse(&m);
            for start in [8, 28, 48] {
                if let Some(q) = m.get(start..) {
                    let _ = IcmpRepr::parse_quote(q);
                }
            }
        }
    }
}
