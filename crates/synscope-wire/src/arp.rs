//! ARP over Ethernet for IPv4 (RFC 826): the requests of host discovery and
//! the replies that prove an on-link host is there. Only the Ethernet/IPv4
//! form exists on the networks we scan; anything else is `Unsupported`.

use super::WireError;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::EtherTypes;
use std::net::Ipv4Addr;

/// An Ethernet (MAC-48) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff, where ARP requests go.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" target of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// A unicast address (group bit clear, not all zeros): one a host can own.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && *self != MacAddr::ZERO
    }

    /// Parses `02:53:53:00:00:01` (as /sys/class/net/IF/address prints it).
    pub fn parse(s: &str) -> Option<MacAddr> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split(':');
        for b in out.iter_mut() {
            *b = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(MacAddr(out))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The ARP operation (RFC 826 `ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// 1: "who has `target_ip`?"
    Request,
    /// 2: "`sender_ip` is at `sender_mac`".
    Reply,
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Hardware address of the host that sent the message.
    pub sender_mac: MacAddr,
    /// Protocol address of the host that sent the message.
    pub sender_ip: Ipv4Addr,
    /// Hardware address asked for or answered to ([`MacAddr::ZERO`] in a request).
    pub target_mac: MacAddr,
    /// Protocol address asked for (request) or answered to (reply).
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Bytes of an Ethernet/IPv4 ARP message (frames may carry padding after them).
    pub const LEN: usize = 28;
    /// The EtherType ARP travels under.
    pub const ETHERTYPE: u16 = 0x0806;

    /// "Who has `target`? Tell `ip`": the request host discovery broadcasts.
    pub fn request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
    }

    /// Parses an ARP message (link-layer padding after it is ignored).
    pub fn parse(bytes: &[u8]) -> Result<ArpRepr, WireError> {
        let p = ArpPacket::new(bytes).ok_or(WireError::Truncated("arp"))?;
        if p.get_hardware_type() != ArpHardwareTypes::Ethernet
            || p.get_protocol_type() != EtherTypes::Ipv4
            || p.get_hw_addr_len() != 6
            || p.get_proto_addr_len() != 4
        {
            return Err(WireError::Unsupported("arp"));
        }
        let op = match p.get_operation() {
            ArpOperation(1) => ArpOp::Request,
            ArpOperation(2) => ArpOp::Reply,
            _ => return Err(WireError::Unsupported("arp")),
        };
        Ok(ArpRepr {
            op,
            sender_mac: MacAddr(p.get_sender_hw_addr().octets()),
            sender_ip: p.get_sender_proto_addr(),
            target_mac: MacAddr(p.get_target_hw_addr().octets()),
            target_ip: p.get_target_proto_addr(),
        })
    }

    /// The 28 bytes of this message (the link layer adds its own header).
    pub fn emit(&self) -> Vec<u8> {
        let mut buf = vec![0u8; Self::LEN];
        let mut p = MutableArpPacket::new(&mut buf).expect("buffer sized above");
        p.set_hardware_type(ArpHardwareTypes::Ethernet);
        p.set_protocol_type(EtherTypes::Ipv4);
        p.set_hw_addr_len(6);
        p.set_proto_addr_len(4);
        p.set_operation(ArpOperation(match self.op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
        }));
        p.set_sender_hw_addr(self.sender_mac.0.into());
        p.set_sender_proto_addr(self.sender_ip);
        p.set_target_hw_addr(self.target_mac.0.into());
        p.set_target_proto_addr(self.target_ip);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;

    /// Captured on a veth: the Linux kernel of 198.18.200.1 (02:53:53:00:c8:01)
    /// asking for 198.18.200.2, and that host's kernel answering.
    static REQUEST: &[u8] = include_bytes!("fixtures/linux_arp_request_v4.bin");
    static REPLY: &[u8] = include_bytes!("fixtures/linux_arp_reply_v4.bin");
    const A: MacAddr = MacAddr([0x02, 0x53, 0x53, 0x00, 0xc8, 0x01]);
    const B: MacAddr = MacAddr([0x02, 0x53, 0x53, 0x00, 0xc8, 0x02]);

    #[test]
    fn our_request_is_the_kernels_request() {
        let r = ArpRepr::request(
            A,
            Ipv4Addr::new(198, 18, 200, 1),
            Ipv4Addr::new(198, 18, 200, 2),
        );
        assert_eq!(r.emit(), REQUEST);
        assert_eq!(ArpRepr::parse(REQUEST), Ok(r));
    }

    #[test]
    fn the_kernels_reply_parses_with_or_without_padding() {
        let want = ArpRepr {
            op: ArpOp::Reply,
            sender_mac: B,
            sender_ip: Ipv4Addr::new(198, 18, 200, 2),
            target_mac: A,
            target_ip: Ipv4Addr::new(198, 18, 200, 1),
        };
        assert_eq!(ArpRepr::parse(REPLY), Ok(want));
        let mut padded = REPLY.to_vec();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(ArpRepr::parse(&padded), Ok(want));
        assert_eq!(want.emit(), REPLY);
    }

    #[test]
    fn truncated_and_foreign_messages_are_refused() {
        assert_eq!(
            ArpRepr::parse(&REPLY[..27]),
            Err(WireError::Truncated("arp"))
        );
        for (i, v) in [(1, 6u8), (3, 0x06), (4, 8), (5, 16), (7, 3)] {
            let mut b = REPLY.to_vec();
            b[i] = v;
            assert_eq!(
                ArpRepr::parse(&b),
                Err(WireError::Unsupported("arp")),
                "{i}"
            );
        }
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(MacAddr::parse("02:53:53:00:c8:01"), Some(A));
        assert_eq!(A.to_string(), "02:53:53:00:c8:01");
        for bad in [
            "",
            "02:53:53:00:c8",
            "02:53:53:00:c8:01:00",
            "zz:53:53:00:c8:01",
        ] {
            assert_eq!(MacAddr::parse(bad), None, "{bad}");
        }
        assert!(A.is_unicast());
        assert!(!MacAddr::BROADCAST.is_unicast() && !MacAddr::ZERO.is_unicast());
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(11);
        for i in 0..50_000 {
            let input = if i % 4 == 0 {
                n.bytes(40)
            } else {
                n.mutate(if i % 2 == 0 { REQUEST } else { REPLY })
            };
            if let Ok(r) = ArpRepr::parse(&input) {
                assert_eq!(ArpRepr::parse(&r.emit()), Ok(r));
            }
        }
    }
}
