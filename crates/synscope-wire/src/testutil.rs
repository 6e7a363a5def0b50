//! Test support shared by this crate's tests and synscope's: a deterministic noise
//! generator and the byte fixtures captured from the real kernel and NSD. Compiled for
//! this crate's own tests and, for other crates' tests, with the `test-support` feature.

use crate::datagram::Checksums;
use crate::{Datagram, Transport};

/// A small deterministic generator for the no-panic tests (xorshift).
pub struct Noise(u64);
impl Noise {
    /// A generator from `seed` (any value; the same seed, the same bytes).
    pub fn new(seed: u64) -> Self {
        Noise(seed | 1)
    }
    /// The next 64 pseudo-random bits.
    #[allow(clippy::should_implement_trait)] // an infinite generator, not an iterator
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// 0..=`max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// `base` with a few random bytes changed and a random truncation.
    pub fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..(self.next() % 4) {
            if !v.is_empty() {
                let i = self.next() as usize % v.len();
                v[i] = self.next() as u8;
            }
        }
        let cut = self.next() as usize % (v.len() + 1);
        if self.next().is_multiple_of(2) {
            v.truncate(cut);
        }
        v
    }
}

/// Fixtures captured by tcpdump on the lab's client veth (see `fixtures/`).
/// TCP checksums in them are partial (offloaded), as the kernel hands them over.
pub fn fixture(name: &str) -> &'static [u8] {
    match name {
        "syn_v4" => include_bytes!("fixtures/linux_syn_v4.bin"),
        "synack_v4" => include_bytes!("fixtures/linux_synack_v4.bin"),
        "rst_v4" => include_bytes!("fixtures/linux_rst_v4.bin"),
        "syn_v6" => include_bytes!("fixtures/linux_syn_v6.bin"),
        "synack_v6" => include_bytes!("fixtures/linux_synack_v6.bin"),
        "rst_v6" => include_bytes!("fixtures/linux_rst_v6.bin"),
        "icmp_admin_v4" => include_bytes!("fixtures/linux_icmp_admin_v4.bin"),
        "icmp6_admin_v6" => include_bytes!("fixtures/linux_icmp6_admin_v6.bin"),
        "finack_v4" => include_bytes!("fixtures/linux_finack_v4.bin"),
        _ => panic!("no fixture {name}"),
    }
}

/// A fixture with its TCP checksum completed, as it would arrive over a real NIC.
pub fn with_full_checksum(bytes: &[u8]) -> Vec<u8> {
    let d = Datagram::parse_with(bytes, Checksums::Offloaded).unwrap();
    let Transport::Tcp(t) = d.transport else {
        return bytes.to_vec();
    };
    d.ip.emit(&t.emit(d.ip.src, d.ip.dst))
}

/// NSD's 3,382-byte answer to `frag.lab.test TXT` (id 0xf4a6, EDNS 4096),
/// fragmented by the server's kernel: IPv4 at the veth MTU (1500), IPv6
/// at 1280 (NSD sends with the minimum MTU). Captured by tcpdump on the
/// lab's client veth (`capture_fragment_fixtures` in tests/lab_fragments.rs).
pub fn nsd_fragments(v6: bool) -> [&'static [u8]; 3] {
    if v6 {
        [
            include_bytes!("fixtures/nsd_frag_v6_0.bin"),
            include_bytes!("fixtures/nsd_frag_v6_1.bin"),
            include_bytes!("fixtures/nsd_frag_v6_2.bin"),
        ]
    } else {
        [
            include_bytes!("fixtures/nsd_frag_v4_0.bin"),
            include_bytes!("fixtures/nsd_frag_v4_1.bin"),
            include_bytes!("fixtures/nsd_frag_v4_2.bin"),
        ]
    }
}

/// A real NSD answer to `a.lab.test A` (id 0xbeef, EDNS 1232), captured in the lab on
/// the client's veth, IP header included, checksum offloaded (`capture_nsd_fixture`
/// in tests/lab_dns.rs).
pub const NSD_A_V4: &[u8] = include_bytes!("fixtures/nsd_a_v4.bin");
/// The lab kernel's ARP request, in an Ethernet frame.
pub const ARP_REQUEST_V4: &[u8] = include_bytes!("fixtures/linux_arp_request_v4.bin");
/// The lab kernel's ARP reply, in an Ethernet frame.
pub const ARP_REPLY_V4: &[u8] = include_bytes!("fixtures/linux_arp_reply_v4.bin");
/// The lab kernel's IPv6 Neighbor Solicitation, in an Ethernet frame.
pub const NS_V6: &[u8] = include_bytes!("fixtures/linux_ns_v6.bin");
/// The lab kernel's IPv6 Neighbor Advertisement, in an Ethernet frame.
pub const NA_V6: &[u8] = include_bytes!("fixtures/linux_na_v6.bin");
