//! UDP datagrams (RFC 768): message-oriented, one datagram per DNS query.

use super::{Protocol, WireError, transport_checksum};
use pnet_packet::udp::{MutableUdpPacket, UdpPacket};
use std::net::IpAddr;

/// A UDP datagram's ports and payload (length and checksum are derived).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The message, up to the header's length field.
    pub payload: Vec<u8>,
}

impl UdpRepr {
    /// Bytes of the header.
    pub const HEADER_LEN: usize = 8;

    /// Parses a datagram, verifying its checksum (zero means "none" over IPv4 only).
    pub fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<UdpRepr, WireError> {
        Self::parse_with(bytes, src, dst, true)
    }

    /// Parses a datagram, verifying its checksum only if `verify`.
    pub fn parse_with(
        bytes: &[u8],
        src: IpAddr,
        dst: IpAddr,
        verify: bool,
    ) -> Result<UdpRepr, WireError> {
        let p = UdpPacket::new(bytes).ok_or(WireError::Truncated("udp"))?;
        let len = p.get_length() as usize;
        if len < Self::HEADER_LEN || len > bytes.len() {
            return Err(WireError::BadLength("udp"));
        }
        let sum = p.get_checksum();
        let skip = !verify || (sum == 0 && src.is_ipv4());
        if !skip && transport_checksum(src, dst, Protocol::UDP, &bytes[..len]) != 0 {
            return Err(WireError::Checksum("udp"));
        }
        Ok(UdpRepr {
            src_port: p.get_source(),
            dst_port: p.get_destination(),
            payload: bytes[Self::HEADER_LEN..len].to_vec(),
        })
    }

    /// The datagram's bytes, checksum computed for `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let len = Self::HEADER_LEN + self.payload.len();
        let mut buf = vec![0u8; len];
        {
            let mut p = MutableUdpPacket::new(&mut buf).expect("buffer sized above");
            p.set_source(self.src_port);
            p.set_destination(self.dst_port);
            p.set_length(len.min(u16::MAX as usize) as u16);
        }
        buf[Self::HEADER_LEN..].copy_from_slice(&self.payload);
        let mut c = transport_checksum(src, dst, Protocol::UDP, &buf);
        if c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones
        }
        buf[6..8].copy_from_slice(&c.to_be_bytes());
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;

    #[test]
    fn one_buffer_datagram_is_the_two_step_one() {
        for (s, d) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let (src, dst): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            for payload in [&b""[..], b"x", b"\x12\x34 a dns message", &[0xff; 1500]] {
                let ip = crate::IpRepr {
                    src,
                    dst,
                    protocol: Protocol::UDP,
                    ttl: 64,
                    ident: 0xbeef,
                    later_fragment: false,
                    flow_label: 7,
                };
                let u = UdpRepr {
                    src_port: 40000,
                    dst_port: 53,
                    payload: payload.to_vec(),
                };
                let one = ip.emit_udp(40000, 53, |b| b.extend_from_slice(payload));
                assert_eq!(one, ip.emit(&u.emit(src, dst)), "{s} {}", payload.len());
            }
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for (s, d) in [("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let u = UdpRepr {
                src_port: 40000,
                dst_port: 53,
                payload: b"\x12\x34query".to_vec(),
            };
            let b = u.emit(s, d);
            assert_eq!(&b[..6], &[0x9c, 0x40, 0, 53, 0, 15]);
            assert_eq!(UdpRepr::parse(&b, s, d).unwrap(), u);
            let mut bad = b.clone();
            bad[9] ^= 0xff;
            assert_eq!(UdpRepr::parse(&bad, s, d), Err(WireError::Checksum("udp")));
            assert_eq!(
                UdpRepr::parse(&b[..10], s, d),
                Err(WireError::BadLength("udp"))
            );
        }
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(3);
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        for _ in 0..50_000 {
            let _ = UdpRepr::parse(&n.bytes(30), a, a);
        }
    }
}
