//! IPv6 Neighbor Discovery (RFC 4861): the Neighbor Solicitations of host
//! discovery and the Neighbor Advertisements that answer them.

use super::{IpRepr, MacAddr, Protocol, WireError, transport_checksum};
use std::net::{IpAddr, Ipv6Addr};

const SOLICIT: u8 = 135;
const ADVERT: u8 = 136;
/// Option types: source / target link-layer address.
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Every ND message travels with this hop limit; anything else was forwarded.
pub const HOP_LIMIT: u8 = 255;

/// Which of the two messages, with an advertisement's flags (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpKind {
    /// Neighbor Solicitation (type 135): "who has `target`?"
    Solicit,
    /// Neighbor Advertisement (type 136): "`target` is at `lladdr`".
    Advert {
        /// R: the sender is a router.
        router: bool,
        /// S: sent in answer to a solicitation (else unsolicited).
        solicited: bool,
        /// O: should replace a cached link-layer address.
        override_: bool,
    },
}

/// A Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpRepr {
    /// Solicitation or advertisement.
    pub kind: NdpKind,
    /// The address asked about (NS) or advertised (NA).
    pub target: Ipv6Addr,
    /// The source (NS) or target (NA) link-layer address option, if present.
    pub lladdr: Option<MacAddr>,
}

/// The solicited-node multicast group of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address IPv6 multicast `group` maps to (33:33 + its last 32 bits).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

impl NdpRepr {
    /// ICMPv6 bytes of an NS or NA with one link-layer address option.
    pub const LEN: usize = 32;

    /// Parses the ICMPv6 message of an IPv6 datagram `src` → `dst`, checksum verified.
    pub fn parse(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<NdpRepr, WireError> {
        if bytes.len() < 24 {
            return Err(WireError::Truncated("ndp"));
        }
        if transport_checksum(src.into(), dst.into(), Protocol::ICMPV6, bytes) != 0 {
            return Err(WireError::Checksum("ndp"));
        }
        if bytes[1] != 0 {
            return Err(WireError::Unsupported("ndp"));
        }
        let (kind, wanted) = match bytes[0] {
            SOLICIT => (NdpKind::Solicit, OPT_SOURCE_LL),
            ADVERT => (
                NdpKind::Advert {
                    router: bytes[4] & 0x80 != 0,
                    solicited: bytes[4] & 0x40 != 0,
                    override_: bytes[4] & 0x20 != 0,
                },
                OPT_TARGET_LL,
            ),
            _ => return Err(WireError::Unsupported("ndp")),
        };
        let mut t = [0u8; 16];
        t.copy_from_slice(&bytes[8..24]);
        let mut lladdr = None;
        let mut opts = &bytes[24..];
        while !opts.is_empty() {
            let (Some(&ty), Some(&len)) = (opts.first(), opts.get(1)) else {
                return Err(WireError::Truncated("ndp option"));
            };
            let n = len as usize * 8;
            if n == 0 {
                return Err(WireError::BadLength("ndp option"));
            }
            let opt = opts.get(..n).ok_or(WireError::Truncated("ndp option"))?;
            if ty == wanted && n == 8 {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opt[2..8]);
                lladdr = Some(MacAddr(m));
            }
            opts = &opts[n..];
        }
        Ok(NdpRepr {
            kind,
            target: Ipv6Addr::from(t),
            lladdr,
        })
    }

    /// Reads an ND message from a whole IPv6 datagram; a hop limit other than
    /// 255 (the message crossed a router) is refused, as RFC 4861 §7.1 says.
    pub fn parse_datagram(bytes: &[u8]) -> Result<(IpRepr, NdpRepr), WireError> {
        let (ip, payload) = IpRepr::parse(bytes)?;
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
            return Err(WireError::Unsupported("ndp"));
        };
        if ip.protocol != Protocol::ICMPV6 || ip.ttl != HOP_LIMIT {
            return Err(WireError::Unsupported("ndp"));
        }
        let nd = NdpRepr::parse(payload, src, dst)?;
        Ok((ip, nd))
    }

    /// The ICMPv6 message, checksum computed for `src` → `dst`.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        match self.kind {
            NdpKind::Solicit => b[0] = SOLICIT,
            NdpKind::Advert {
                router,
                solicited,
                override_,
            } => {
                b[0] = ADVERT;
                b[4] = (router as u8) << 7 | (solicited as u8) << 6 | (override_ as u8) << 5;
            }
        }
        b[8..24].copy_from_slice(&self.target.octets());
        if let Some(m) = self.lladdr {
            let ty = match self.kind {
                NdpKind::Solicit => OPT_SOURCE_LL,
                NdpKind::Advert { .. } => OPT_TARGET_LL,
            };
            b.extend_from_slice(&[ty, 1]);
            b.extend_from_slice(&m.0);
        }
        let c = transport_checksum(src.into(), dst.into(), Protocol::ICMPV6, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// The whole datagram of a Neighbor Solicitation from `src` (our address,
    /// link-layer address `mac`) for `target`, sent to its solicited-node
    /// group, and the Ethernet address that group maps to.
    pub fn solicitation(src: Ipv6Addr, mac: MacAddr, target: Ipv6Addr) -> (Vec<u8>, MacAddr) {
        let group = solicited_node(target);
        let ns = NdpRepr {
            kind: NdpKind::Solicit,
            target,
            lladdr: Some(mac),
        };
        let ip = IpRepr {
            src: src.into(),
            dst: group.into(),
            protocol: Protocol::ICMPV6,
            ttl: HOP_LIMIT,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        (ip.emit(&ns.emit(src, group)), multicast_mac(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;

    /// Captured on a veth: the kernel of 2001:db8:200::1 (02:53:53:00:c8:01)
    /// soliciting 2001:db8:200::2, and that host's kernel advertising itself.
    static NS: &[u8] = include_bytes!("fixtures/linux_ns_v6.bin");
    static NA: &[u8] = include_bytes!("fixtures/linux_na_v6.bin");
    const A: MacAddr = MacAddr([0x02, 0x53, 0x53, 0x00, 0xc8, 0x01]);
    const B: MacAddr = MacAddr([0x02, 0x53, 0x53, 0x00, 0xc8, 0x02]);

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn our_solicitation_is_the_kernels() {
        let (bytes, mac) =
            NdpRepr::solicitation(addr("2001:db8:200::1"), A, addr("2001:db8:200::2"));
        assert_eq!(bytes, NS);
        assert_eq!(mac, MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
        let (ip, nd) = NdpRepr::parse_datagram(NS).unwrap();
        assert_eq!(ip.dst, IpAddr::V6(addr("ff02::1:ff00:2")));
        assert_eq!(nd.kind, NdpKind::Solicit);
        assert_eq!(nd.lladdr, Some(A));
    }

    #[test]
    fn the_kernels_advertisement() {
        let (ip, nd) = NdpRepr::parse_datagram(NA).unwrap();
        assert_eq!(ip.src, IpAddr::V6(addr("2001:db8:200::2")));
        let want = NdpRepr {
            kind: NdpKind::Advert {
                router: false,
                solicited: true,
                override_: true,
            },
            target: addr("2001:db8:200::2"),
            lladdr: Some(B),
        };
        assert_eq!(nd, want);
        assert_eq!(
            want.emit(addr("2001:db8:200::2"), addr("2001:db8:200::1")),
            &NA[40..]
        );
    }

    #[test]
    fn forwarded_corrupt_and_truncated_messages_are_refused() {
        let mut hop = NA.to_vec();
        hop[7] = 254;
        assert_eq!(
            NdpRepr::parse_datagram(&hop).map(|x| x.1),
            Err(WireError::Unsupported("ndp"))
        );
        let mut sum = NA.to_vec();
        sum[50] ^= 1;
        assert_eq!(
            NdpRepr::parse_datagram(&sum).map(|x| x.1),
            Err(WireError::Checksum("ndp"))
        );
        let (s, d) = (addr("2001:db8:200::2"), addr("2001:db8:200::1"));
        assert_eq!(
            NdpRepr::parse(&NA[40..63], s, d),
            Err(WireError::Truncated("ndp"))
        );
        // an option of length 0 would loop forever: refused
        let mut zero = NdpRepr {
            kind: NdpKind::Solicit,
            target: s,
            lladdr: Some(A),
        }
        .emit(s, d);
        zero[25] = 0;
        zero[2] = 0;
        zero[3] = 0;
        let c = transport_checksum(s.into(), d.into(), Protocol::ICMPV6, &zero);
        zero[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            NdpRepr::parse(&zero, s, d),
            Err(WireError::BadLength("ndp option"))
        );
    }

    #[test]
    fn multicast_mapping() {
        assert_eq!(
            solicited_node(addr("2001:db8:200::12:3456")),
            addr("ff02::1:ff12:3456")
        );
        assert_eq!(
            multicast_mac(addr("ff02::1:ff12:3456")).to_string(),
            "33:33:ff:12:34:56"
        );
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(13);
        for i in 0..50_000 {
            let input = if i % 4 == 0 {
                n.bytes(90)
            } else {
                n.mutate(if i % 2 == 0 { NS } else { NA })
            };
            let _ = NdpRepr::parse_datagram(&input);
            if let Some(icmp) = input.get(40..) {
                let _ = NdpRepr::parse(icmp, addr("2001:db8::1"), addr("2001:db8::2"));
            }
        }
    }
}
