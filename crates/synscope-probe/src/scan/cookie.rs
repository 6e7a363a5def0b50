//! SYN cookies of our own: each probe's sequence number is a keyed hash of its
//! 4-tuple, so a reply proves it answers a probe we sent (ack = cookie + 1, or
//! the cookie quoted in an ICMP error) without any per-probe memory.

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;

/// The keyed hash (SipHash-2-4) that makes sequence numbers out of 4-tuples.
#[derive(Debug, Clone)]
pub struct Cookie {
    key: [u8; 16],
}

impl Cookie {
    /// A cookie function with a secret key (random per scan).
    pub fn new(key: [u8; 16]) -> Cookie {
        Cookie { key }
    }

    /// The sequence number of the probe `src:sport -> dst:dport`.
    pub fn seq(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u32 {
        let mut h = SipHasher24::new_with_key(&self.key);
        for a in [src, dst] {
            match a {
                IpAddr::V4(v4) => h.write(&v4.octets()),
                IpAddr::V6(v6) => h.write(&v6.octets()),
            }
        }
        h.write_u16(sport);
        h.write_u16(dport);
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_tuple_sensitive() {
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let c = Cookie::new([7; 16]);
        let s = c.seq(a, b, 40000, 80);
        assert_eq!(s, c.seq(a, b, 40000, 80));
        assert_ne!(s, c.seq(a, b, 40000, 81));
        assert_ne!(s, c.seq(b, a, 40000, 80));
        assert_ne!(s, Cookie::new([8; 16]).seq(a, b, 40000, 80));
    }
}
