//! IPv4 and IPv6 fragment reassembly, sans-IO: packets and their arrival
//! times go in, whole datagrams come out.
//!
//! Fragments are grouped by (source, destination, identification, protocol)
//! (for IPv6 the protocol is the Fragment header's next header, the same in
//! every fragment). Every resource is bounded: a datagram may not exceed
//! 65,535 bytes of IP payload, at most [`Limits::max_datagrams`] are in
//! progress and they hold at most [`Limits::max_bytes`] between them (the
//! oldest is given up to make room), and a datagram not complete within
//! [`Limits::timeout`] of its first fragment is dropped. Fragments that overlap
//! abandon the whole datagram (RFC 5722 for IPv6, and likewise for IPv4); an
//! exact duplicate of a fragment already held is dropped alone (RFC 8200
//! §4.5 allows it). Every fragment that does not end up in a datagram is
//! counted by reason.
//!
//! A reassembled datagram is timed by the arrival of the fragment that
//! completed it (the last one to arrive, whatever its offset): that is when the
//! whole answer was there, and when the kernel's own reassembly hands it up.

use super::WireError;
use super::ip::{ExtHeader, IpRepr};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Largest IP payload a datagram may have (IPv4 total length less its header;
/// IPv6 payload length).
pub const MAX_PAYLOAD: usize = 65_535;

/// Bounds on what the reassembler holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Datagrams in progress at once.
    pub max_datagrams: usize,
    /// Bytes of fragment data held at once, over all datagrams.
    pub max_bytes: usize,
    /// Time from a datagram's first fragment until it is given up.
    pub timeout: Duration,
}

impl Default for Limits {
    /// 64 datagrams, 4 MiB (the kernel's `ipfrag_high_thresh`), 30 s (its
    /// `ipfrag_time`).
    fn default() -> Limits {
        Limits {
            max_datagrams: 64,
            max_bytes: 4 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a fragment did not end up in a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FragmentDrop {
    /// Unreadable IP header.
    Malformed,
    /// A fragment other than the last whose length is not a multiple of 8, or
    /// one with no data.
    BadLength,
    /// The datagram would exceed 65,535 bytes of payload.
    TooBig,
    /// It overlaps a fragment already held: the whole datagram is abandoned.
    Overlap,
    /// An exact copy of a fragment already held.
    Duplicate,
    /// Two different ends for one datagram, or data past its end: abandoned.
    Inconsistent,
    /// For a datagram already abandoned (overlap or inconsistency).
    Abandoned,
    /// Held in a datagram that was not complete within the timeout.
    Timeout,
    /// Held in a datagram given up to make room for newer ones.
    Evicted,
}

impl FragmentDrop {
    /// The kebab-case name used in counters and JSON (`bad-length`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FragmentDrop::Malformed => "malformed",
            FragmentDrop::BadLength => "bad-length",
            FragmentDrop::TooBig => "too-big",
            FragmentDrop::Overlap => "overlap",
            FragmentDrop::Duplicate => "duplicate",
            FragmentDrop::Inconsistent => "inconsistent",
            FragmentDrop::Abandoned => "abandoned",
            FragmentDrop::Timeout => "timeout",
            FragmentDrop::Evicted => "evicted",
        }
    }
}

/// What became of one packet handed to [`Reassembler::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a fragment (or unreadable): use the packet as it is.
    Whole,
    /// A fragment, kept until its datagram is complete.
    Held,
    /// This fragment completed a datagram: here it is, as if it had arrived
    /// whole (IPv4 header checksum recomputed; IPv6 Fragment header removed).
    Complete(Vec<u8>),
    /// This fragment was dropped (and perhaps its datagram with it).
    Dropped(FragmentDrop),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    protocol: u8,
}

#[derive(Debug, Clone)]
struct Partial {
    /// Arrival of its first fragment (ns, the caller's clock).
    first_at: u64,
    /// The header kept from the fragment at offset 0, once it has come, and
    /// where in it the next-header byte naming the Fragment header sits.
    header: Option<(Vec<u8>, usize)>,
    /// Fragment data by offset; never overlapping.
    parts: BTreeMap<usize, Vec<u8>>,
    /// Length of the whole payload, once the last fragment has come.
    end: Option<usize>,
    /// Bytes held (header and data).
    bytes: usize,
    /// Abandoned: later fragments are dropped until the timeout.
    dead: bool,
}

impl Partial {
    fn received(&self) -> usize {
        self.parts.values().map(Vec::len).sum()
    }
}

/// Fragments in progress, by datagram.
#[derive(Debug, Clone)]
pub struct Reassembler {
    limits: Limits,
    partial: BTreeMap<Key, Partial>,
    bytes: usize,
    dropped: BTreeMap<FragmentDrop, u64>,
    reassembled: u64,
}

impl Default for Reassembler {
    fn default() -> Reassembler {
        Reassembler::new(Limits::default())
    }
}

impl Reassembler {
    /// An empty reassembler holding at most what `limits` allow.
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits,
            partial: BTreeMap::new(),
            bytes: 0,
            dropped: BTreeMap::new(),
            reassembled: 0,
        }
    }

    /// Fragments dropped, by reason.
    pub fn dropped(&self) -> &BTreeMap<FragmentDrop, u64> {
        &self.dropped
    }

    /// Datagrams reassembled so far.
    pub fn reassembled(&self) -> u64 {
        self.reassembled
    }

    /// Datagrams in progress (abandoned ones included, until their timeout).
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    /// Bytes held.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    fn count(&mut self, why: FragmentDrop, n: u64) {
        if n > 0 {
            *self.dropped.entry(why).or_default() += n;
        }
    }

    fn remove(&mut self, key: &Key, why: FragmentDrop) {
        if let Some(p) = self.partial.remove(key) {
            self.bytes -= p.bytes;
            if !p.dead {
                self.count(why, p.parts.len() as u64);
            }
        }
    }

    /// Gives up the datagram `key` but remembers it as abandoned, so that its
    /// remaining fragments are dropped too.
    fn abandon(&mut self, key: &Key, why: FragmentDrop) {
        if let Some(p) = self.partial.get_mut(key) {
            let held = p.parts.len() as u64;
            self.bytes -= p.bytes;
            p.parts.clear();
            p.header = None;
            p.bytes = 0;
            p.dead = true;
            // the held fragments and the one that caused it
            self.count(why, held + 1);
        }
    }

    /// Drops datagrams whose first fragment came `timeout` or more before `now`.
    pub fn expire(&mut self, now: u64) {
        let limit = self.limits.timeout.as_nanos().min(u64::MAX as u128) as u64;
        let old: Vec<Key> = self
            .partial
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.first_at) >= limit)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(&k, FragmentDrop::Timeout);
        }
    }

    /// Takes one packet (starting at its IP header) that arrived at `now` (ns).
    pub fn push(&mut self, packet: &[u8], now: u64) -> Outcome {
        if !self.partial.is_empty() {
            self.expire(now);
        }
        if !may_be_fragment(packet) {
            return Outcome::Whole;
        }
        let parsed = match IpRepr::parse_detail(packet) {
            Ok(p) => p,
            // not ours to judge: whoever reads it next counts it as malformed
            Err(_) => return Outcome::Whole,
        };
        let Some(frag) = parsed.fragment else {
            return Outcome::Whole;
        };
        let data = parsed.payload;
        let key = Key {
            src: parsed.repr.src,
            dst: parsed.repr.dst,
            ident: frag.ident,
            protocol: parsed.repr.protocol,
        };
        if self.partial.get(&key).is_some_and(|p| p.dead) {
            self.count(FragmentDrop::Abandoned, 1);
            return Outcome::Dropped(FragmentDrop::Abandoned);
        }
        if data.is_empty() || (frag.more && !data.len().is_multiple_of(8)) {
            self.count(FragmentDrop::BadLength, 1);
            return Outcome::Dropped(FragmentDrop::BadLength);
        }
        // the payload length the whole datagram would have
        let unfragmentable = if parsed.repr.is_ipv6() {
            frag.header_len - IpRepr::V6_HEADER_LEN
        } else {
            0
        };
        let frag_end = frag.offset + data.len();
        if unfragmentable + frag_end > MAX_PAYLOAD
            || (!parsed.repr.is_ipv6() && frag.header_len + frag_end > MAX_PAYLOAD)
        {
            if self.partial.contains_key(&key) {
                self.abandon(&key, FragmentDrop::TooBig);
            } else {
                self.count(FragmentDrop::TooBig, 1);
            }
            return Outcome::Dropped(FragmentDrop::TooBig);
        }
        let header =
            (frag.offset == 0).then(|| (packet[..frag.header_len].to_vec(), frag.next_header_at));
        let cost = data.len() + header.as_ref().map_or(0, |h| h.0.len());
        if !self.partial.contains_key(&key) {
            self.make_room(cost);
            self.partial.insert(
                key,
                Partial {
                    first_at: now,
                    header: None,
                    parts: BTreeMap::new(),
                    end: None,
                    bytes: 0,
                    dead: false,
                },
            );
        } else if self.bytes + cost > self.limits.max_bytes {
            self.make_room_except(cost, &key);
        }
        if self.bytes + cost > self.limits.max_bytes {
            self.count(FragmentDrop::Evicted, 1);
            if self.partial.get(&key).is_some_and(|p| p.parts.is_empty()) {
                self.partial.remove(&key);
            }
            return Outcome::Dropped(FragmentDrop::Evicted);
        }
        let Some(p) = self.partial.get_mut(&key) else {
            return Outcome::Dropped(FragmentDrop::Evicted);
        };
        // overlaps: the fragment before this offset, and any starting inside it
        let before = p.parts.range(..=frag.offset).next_back();
        if let Some((&start, bytes)) = before
            && start == frag.offset
            && bytes.as_slice() == data
        {
            self.count(FragmentDrop::Duplicate, 1);
            return Outcome::Dropped(FragmentDrop::Duplicate);
        }
        let overlaps = before.is_some_and(|(&s, b)| s + b.len() > frag.offset)
            || p.parts.range(frag.offset..frag_end).next().is_some();
        if overlaps {
            self.abandon(&key, FragmentDrop::Overlap);
            return Outcome::Dropped(FragmentDrop::Overlap);
        }
        let held_end = p.parts.last_key_value().map_or(0, |(&s, b)| s + b.len());
        let inconsistent = match (p.end, frag.more) {
            // a second last fragment with another end, or data past the end
            (Some(e), false) => e != frag_end,
            (Some(e), true) => frag_end > e,
            (None, false) => held_end > frag_end,
            (None, true) => false,
        };
        if inconsistent {
            self.abandon(&key, FragmentDrop::Inconsistent);
            return Outcome::Dropped(FragmentDrop::Inconsistent);
        }
        if !frag.more {
            p.end = Some(frag_end);
        }
        if let Some(h) = header {
            p.header = Some(h);
        }
        p.parts.insert(frag.offset, data.to_vec());
        p.bytes += cost;
        self.bytes += cost;
        let complete = p.end.is_some_and(|e| p.received() == e) && p.header.is_some();
        if !complete {
            return Outcome::Held;
        }
        let Some(p) = self.partial.remove(&key) else {
            return Outcome::Held;
        };
        self.bytes -= p.bytes;
        self.reassembled += 1;
        match build(p, key.protocol) {
            Ok(d) => Outcome::Complete(d),
            Err(_) => {
                self.count(FragmentDrop::Malformed, 1);
                Outcome::Dropped(FragmentDrop::Malformed)
            }
        }
    }

    /// Gives up the oldest datagrams until one more (holding `cost` bytes) fits.
    fn make_room(&mut self, cost: usize) {
        while !self.partial.is_empty()
            && (self.partial.len() >= self.limits.max_datagrams
                || self.bytes + cost > self.limits.max_bytes)
        {
            let Some(oldest) = self.oldest(None) else {
                break;
            };
            self.remove(&oldest, FragmentDrop::Evicted);
        }
    }

    /// Gives up the oldest datagrams other than `keep` until `cost` more bytes fit.
    fn make_room_except(&mut self, cost: usize, keep: &Key) {
        while self.bytes + cost > self.limits.max_bytes {
            let Some(oldest) = self.oldest(Some(keep)) else {
                break;
            };
            self.remove(&oldest, FragmentDrop::Evicted);
        }
    }

    fn oldest(&self, except: Option<&Key>) -> Option<Key> {
        self.partial
            .iter()
            .filter(|(k, _)| Some(*k) != except)
            .min_by_key(|(_, p)| p.first_at)
            .map(|(k, _)| *k)
    }
}

/// False when a glance shows `packet` is no fragment: not IPv4 or IPv6 (an
/// ARP packet, or too short to be read), an IPv4 header without MF or an
/// offset, or an IPv6 header followed directly by TCP, UDP or ICMPv6.
/// (Everything else gets the full parse.)
fn may_be_fragment(packet: &[u8]) -> bool {
    match (packet.first().map(|b| b >> 4), packet.get(6), packet.get(7)) {
        (Some(4), Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]) & 0x3fff != 0,
        (Some(6), Some(&next), _) => !matches!(next, 6 | 17 | 58),
        _ => false,
    }
}

/// The whole datagram: the kept header, lengths fixed, then the data in order.
fn build(p: Partial, protocol: u8) -> Result<Vec<u8>, WireError> {
    let (mut header, next_at) = p.header.ok_or(WireError::Truncated("fragments"))?;
    let payload: usize = p.parts.values().map(Vec::len).sum();
    match header.first().map(|b| b >> 4) {
        Some(4) if header.len() >= IpRepr::V4_HEADER_LEN => {
            let total = u16::try_from(header.len() + payload)
                .map_err(|_| WireError::BadLength("fragments"))?;
            header[2..4].copy_from_slice(&total.to_be_bytes());
            // keep DF, clear MF and the offset
            header[6] &= 0x40;
            header[7] = 0;
            header[10..12].copy_from_slice(&[0, 0]);
            let c = super::checksum_with(0, &header);
            header[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Some(6) if header.len() >= IpRepr::V6_HEADER_LEN && next_at < header.len() => {
            let len = u16::try_from(header.len() - IpRepr::V6_HEADER_LEN + payload)
                .map_err(|_| WireError::BadLength("fragments"))?;
            header[4..6].copy_from_slice(&len.to_be_bytes());
            // the header before the Fragment header now names what followed it
            header[next_at] = protocol;
        }
        _ => return Err(WireError::BadLength("fragments")),
    }
    header.reserve(payload);
    for part in p.parts.into_values() {
        header.extend_from_slice(&part);
    }
    Ok(header)
}

/// Splits `datagram` (as [`IpRepr::emit`] builds it: no options, no extension
/// headers) into fragments whose data is at most `max_data` bytes (rounded
/// down to a multiple of 8): IPv4 fragments, or IPv6 fragments with a
/// Fragment header. For tests and the lab's raw responders.
pub fn fragment(datagram: &[u8], ident: u32, max_data: usize) -> Vec<Vec<u8>> {
    let step = (max_data / 8).max(1) * 8;
    let v6 = datagram.first().is_some_and(|b| b >> 4 == 6);
    let hl = if v6 {
        IpRepr::V6_HEADER_LEN
    } else {
        IpRepr::V4_HEADER_LEN
    };
    let Some((header, data)) = datagram.split_at_checked(hl) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let chunk = &data[off..(off + step).min(data.len())];
        let more = off + chunk.len() < data.len();
        let mut f = header.to_vec();
        if v6 {
            let proto = f[6];
            f[6] = ExtHeader::FRAGMENT;
            f[4..6].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
            let field = (off as u16) | more as u16;
            f.extend_from_slice(&[proto, 0]);
            f.extend_from_slice(&field.to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
        } else {
            f[2..4].copy_from_slice(&((hl + chunk.len()) as u16).to_be_bytes());
            f[4..6].copy_from_slice(&(ident as u16).to_be_bytes());
            let df = u16::from_be_bytes([f[6], f[7]]) & 0x4000;
            let field = ((off / 8) as u16) | df | if more { 0x2000 } else { 0 };
            f[6..8].copy_from_slice(&field.to_be_bytes());
            f[10..12].copy_from_slice(&[0, 0]);
            let c = super::checksum_with(0, &f);
            f[10..12].copy_from_slice(&c.to_be_bytes());
        }
        f.extend_from_slice(chunk);
        out.push(f);
        off += chunk.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Noise, fixture, nsd_fragments, with_full_checksum};
    use crate::{Datagram, Transport};

    const MS: u64 = 1_000_000;

    /// The lab's SYN-ACK (IPv4, DF, id 0) with its checksum completed.
    fn synack_v4() -> Vec<u8> {
        with_full_checksum(fixture("synack_v4"))
    }

    fn synack_v6() -> Vec<u8> {
        with_full_checksum(fixture("synack_v6"))
    }

    fn push_all(r: &mut Reassembler, frags: &[Vec<u8>], order: &[usize]) -> Vec<Outcome> {
        order
            .iter()
            .enumerate()
            .map(|(i, &j)| r.push(&frags[j], i as u64 * MS))
            .collect()
    }

    #[test]
    fn real_kernel_fragments_of_a_dns_answer() {
        for v6 in [false, true] {
            let f = nsd_fragments(v6);
            let info: Vec<_> = f
                .iter()
                .map(|p| {
                    let d = IpRepr::parse_detail(p).unwrap();
                    let fi = d.fragment.unwrap();
                    (d.repr.protocol, fi.offset, fi.more, d.payload.len())
                })
                .collect();
            // UDP in 3 pieces, each but the last a multiple of 8
            let (a, b) = if v6 { (1232, 974 - 48) } else { (1480, 430) };
            assert_eq!(
                info,
                [(17, 0, true, a), (17, a, true, a), (17, 2 * a, false, b)],
                "v6 {v6}"
            );
            for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
                let mut r = Reassembler::default();
                let out: Vec<Outcome> = order.iter().map(|&i| r.push(f[i], 7)).collect();
                assert_eq!(out[..2], [Outcome::Held, Outcome::Held]);
                let Outcome::Complete(whole) = &out[2] else {
                    panic!("v6 {v6} {order:?}: {out:?}")
                };
                // the UDP checksum covers the whole datagram and verifies
                let d = Datagram::parse(whole).unwrap();
                let Transport::Udp(u) = d.transport else {
                    panic!()
                };
                assert_eq!(u.src_port, 53);
                let reply = crate::dns::ReplyRepr::parse(&u.payload).unwrap();
                // one TXT record of 16 strings
                assert_eq!(
                    (reply.id, reply.answer.len(), reply.size),
                    (0xf4a6, 1, 3382)
                );
                assert!(!reply.flags.tc);
            }
            // the same answer with its middle piece shifted 8 bytes: abandoned
            let mut r = Reassembler::default();
            let mut shifted = f[1].to_vec();
            if v6 {
                let field = u16::from_be_bytes([shifted[42], shifted[43]]) + 8;
                shifted[42..44].copy_from_slice(&field.to_be_bytes());
            } else {
                shifted[7] += 1;
                shifted[10..12].copy_from_slice(&[0, 0]);
                let c = crate::checksum_with(0, &shifted[..20]);
                shifted[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(r.push(f[0], 0), Outcome::Held);
            assert_eq!(r.push(&shifted, 1), Outcome::Held);
            assert_eq!(r.push(f[1], 2), Outcome::Dropped(FragmentDrop::Overlap));
            assert_eq!(r.push(f[2], 3), Outcome::Dropped(FragmentDrop::Abandoned));
        }
    }

    #[test]
    fn v4_fragments_exact_bytes() {
        let whole = synack_v4();
        let ident = u16::from_be_bytes([whole[4], whole[5]]) as u32;
        let f = fragment(&whole, ident, 16);
        // 40 bytes of TCP: 16 + 16 + 8
        assert_eq!(f.len(), 3);
        assert_eq!(
            &f[0][..12],
            &[
                0x45, 0, 0, 36, whole[4], whole[5], 0x60, 0, 64, 6, f[0][10], f[0][11]
            ]
        );
        assert_eq!(&f[1][6..8], &[0x60, 2]); // DF, MF, offset 2 (16 bytes)
        assert_eq!(&f[2][6..8], &[0x40, 4]); // DF, last, offset 4 (32 bytes)
        assert_eq!(&f[2][2..4], &[0, 28]);
        for frag in &f {
            assert_eq!(crate::checksum_with(0, &frag[..20]), 0);
            // no transport header to read in any of them
            assert_eq!(
                Datagram::parse(frag).map(|d| d.transport),
                Ok(Transport::Fragment)
            );
        }
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut r = Reassembler::default();
            let out = push_all(&mut r, &f, &order);
            assert_eq!(out[..2], [Outcome::Held, Outcome::Held]);
            assert_eq!(out[2], Outcome::Complete(whole.clone()), "{order:?}");
            assert_eq!(
                (r.in_progress(), r.bytes_held(), r.reassembled()),
                (0, 0, 1)
            );
            assert!(r.dropped().is_empty());
        }
        // what comes out parses, checksum and all
        let Outcome::Complete(d) = push_all(&mut Reassembler::default(), &f, &[0, 1, 2])[2].clone()
        else {
            panic!()
        };
        assert!(matches!(
            Datagram::parse(&d).unwrap().transport,
            Transport::Tcp(_)
        ));
    }

    #[test]
    fn v6_fragments_exact_bytes_and_fragment_header_removed() {
        let whole = synack_v6();
        let f = fragment(&whole, 0xdead_beef, 16);
        let tcp_len = whole.len() - 40;
        assert_eq!(f.len(), tcp_len.div_ceil(16));
        // next header 44, payload 8 + 16; Fragment header: TCP, offset 0, M, id
        assert_eq!(&f[0][4..7], &[0, 24, 44]);
        assert_eq!(&f[0][40..48], &[6, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&f[1][40..48], &[6, 0, 0, 16 | 1, 0xde, 0xad, 0xbe, 0xef]);
        let last = f.last().unwrap();
        assert_eq!(last[43] & 1, 0);
        let parsed = IpRepr::parse_detail(&f[1]).unwrap();
        assert_eq!(
            parsed.fragment,
            Some(crate::ip::FragmentInfo {
                ident: 0xdead_beef,
                offset: 16,
                more: true,
                header_len: 40,
                next_header_at: 6,
            })
        );
        assert_eq!(parsed.repr.protocol, 6);
        assert!(parsed.repr.later_fragment);
        let mut r = Reassembler::default();
        let n = f.len();
        let order: Vec<usize> = (0..n).rev().collect();
        let out = push_all(&mut r, &f, &order);
        assert_eq!(out[n - 1], Outcome::Complete(whole));
    }

    #[test]
    fn v6_unfragmentable_headers_are_kept_and_relinked() {
        // a Hop-by-Hop header (PadN) before the Fragment header
        let whole = synack_v6();
        let mut with_hbh = whole[..40].to_vec();
        with_hbh[6] = 0;
        with_hbh[4..6].copy_from_slice(&((whole.len() - 40 + 8) as u16).to_be_bytes());
        with_hbh.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        with_hbh.extend_from_slice(&whole[40..]);
        // fragment by hand: HBH (next 44), Fragment (next 6)
        let data = &whole[40..];
        let mk = |off: usize, chunk: &[u8], more: bool| {
            let mut p = with_hbh[..48].to_vec();
            p[40] = 44; // HBH's next header
            p[4..6].copy_from_slice(&((8 + 8 + chunk.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[6, 0]);
            p.extend_from_slice(&((off as u16) | more as u16).to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            p.extend_from_slice(chunk);
            p
        };
        let a = mk(0, &data[..16], true);
        let b = mk(16, &data[16..], false);
        assert_eq!(
            IpRepr::parse_detail(&b)
                .unwrap()
                .fragment
                .unwrap()
                .next_header_at,
            40
        );
        let mut r = Reassembler::default();
        assert_eq!(r.push(&b, 0), Outcome::Held);
        assert_eq!(r.push(&a, 1), Outcome::Complete(with_hbh));
    }

    #[test]
    fn overlap_abandons_the_datagram_until_its_timeout() {
        let whole = synack_v4();
        let f = fragment(&whole, 0, 16);
        let mut r = Reassembler::default();
        assert_eq!(r.push(&f[0], 0), Outcome::Held);
        // bytes 8..24 overlap the first fragment's 0..16
        let mut bad = fragment(&whole, 0, 8)[1].clone();
        bad[2..4].copy_from_slice(&[0, 36]);
        bad.extend_from_slice(&whole[40..48]);
        bad[6..8].copy_from_slice(&[0x60, 1]);
        bad[10..12].copy_from_slice(&[0, 0]);
        let c = crate::checksum_with(0, &bad[..20]);
        bad[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(r.push(&bad, MS), Outcome::Dropped(FragmentDrop::Overlap));
        assert_eq!(r.dropped()[&FragmentDrop::Overlap], 2);
        assert_eq!(r.bytes_held(), 0);
        // the rest of it never completes a datagram
        assert_eq!(
            r.push(&f[1], 2 * MS),
            Outcome::Dropped(FragmentDrop::Abandoned)
        );
        assert_eq!(
            r.push(&f[2], 3 * MS),
            Outcome::Dropped(FragmentDrop::Abandoned)
        );
        assert_eq!(
            r.push(&f[0], 4 * MS),
            Outcome::Dropped(FragmentDrop::Abandoned)
        );
        // after the timeout the same id may be used again
        let later = 31_000 * MS;
        assert_eq!(r.push(&f[0], later), Outcome::Held);
        assert_eq!(r.push(&f[1], later), Outcome::Held);
        assert_eq!(r.push(&f[2], later), Outcome::Complete(whole));
    }

    #[test]
    fn duplicates_are_dropped_alone_and_timeouts_counted() {
        let whole = synack_v6();
        let f = fragment(&whole, 1, 16);
        let mut r = Reassembler::default();
        assert_eq!(r.push(&f[1], 0), Outcome::Held);
        assert_eq!(r.push(&f[1], 1), Outcome::Dropped(FragmentDrop::Duplicate));
        for (i, frag) in f.iter().enumerate().skip(2) {
            assert_eq!(r.push(frag, 2 + i as u64), Outcome::Held);
        }
        assert!(matches!(r.push(&f[0], 10), Outcome::Complete(_)));
        // a datagram that never completes
        assert_eq!(r.push(&f[0], 20), Outcome::Held);
        assert_eq!(r.push(&f[1], 20), Outcome::Held);
        r.expire(20 + 30_000 * MS - 1);
        assert_eq!(r.in_progress(), 1);
        r.expire(20 + 30_000 * MS);
        assert_eq!(r.in_progress(), 0);
        assert_eq!(r.bytes_held(), 0);
        assert_eq!(r.dropped()[&FragmentDrop::Timeout], 2);
        assert_eq!(r.dropped()[&FragmentDrop::Duplicate], 1);
    }

    #[test]
    fn bad_lengths_too_big_and_inconsistent_ends() {
        let whole = synack_v4();
        let f = fragment(&whole, 3, 16);
        let mut r = Reassembler::default();
        // a fragment with more to come must carry a multiple of 8 bytes
        let mut odd = f[0].clone();
        odd.pop();
        odd[3] -= 1;
        let c = {
            odd[10..12].copy_from_slice(&[0, 0]);
            crate::checksum_with(0, &odd[..20])
        };
        odd[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(r.push(&odd, 0), Outcome::Dropped(FragmentDrop::BadLength));
        // ends past 65,535 bytes: offset 8189 * 8 + 16 bytes
        let mut big = f[1].clone();
        big[6..8].copy_from_slice(&(0x2000u16 | 8189).to_be_bytes());
        big[10..12].copy_from_slice(&[0, 0]);
        let c = crate::checksum_with(0, &big[..20]);
        big[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(r.push(&big, 0), Outcome::Dropped(FragmentDrop::TooBig));
        // the last fragment says the datagram ends at 40; another last one at 24
        assert_eq!(r.push(&f[2], 0), Outcome::Held);
        let mut early_end = f[1].clone();
        early_end[6] &= !0x20;
        early_end[10..12].copy_from_slice(&[0, 0]);
        let c = crate::checksum_with(0, &early_end[..20]);
        early_end[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            r.push(&early_end, 1),
            Outcome::Dropped(FragmentDrop::Inconsistent)
        );
        assert_eq!(r.dropped()[&FragmentDrop::Inconsistent], 2);
        assert_eq!(r.bytes_held(), 0);
    }

    #[test]
    fn bounded_datagrams_and_bytes_evict_the_oldest() {
        let whole = synack_v4();
        let mut r = Reassembler::new(Limits {
            max_datagrams: 2,
            max_bytes: 100,
            timeout: Duration::from_secs(30),
        });
        for id in 0..3u32 {
            let f = fragment(&whole, id, 16);
            assert_eq!(r.push(&f[0], id as u64), Outcome::Held);
        }
        assert_eq!(r.in_progress(), 2);
        assert_eq!(r.dropped()[&FragmentDrop::Evicted], 1);
        // id 0 was given up: its other fragments start a datagram that cannot complete
        // bytes: each first fragment holds 20 + 16; a third would exceed 100
        assert!(r.bytes_held() <= 100);
        let f2 = fragment(&whole, 2, 16);
        assert_eq!(r.push(&f2[1], 10), Outcome::Held);
        assert!(r.bytes_held() <= 100);
        assert!(matches!(r.push(&f2[2], 11), Outcome::Complete(_)));
    }

    #[test]
    fn whole_datagrams_and_atomic_fragments_pass_through() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(fixture("syn_v4"), 0), Outcome::Whole);
        assert_eq!(r.push(&[0x45, 1, 2], 0), Outcome::Whole);
        // an atomic fragment (offset 0, M=0) is a whole datagram
        let whole = synack_v6();
        let atomic = fragment(&whole, 5, 1000);
        assert_eq!(atomic.len(), 1);
        assert_eq!(r.push(&atomic[0], 0), Outcome::Whole);
        let d = Datagram::parse(&atomic[0]).unwrap();
        assert!(matches!(d.transport, Transport::Tcp(_)));
        assert_eq!(r.in_progress(), 0);
    }

    /// What the capture layer pays per packet that is not a fragment (every
    /// SYN-ACK of a scan goes through here), and per fragmented answer.
    /// `cargo test --release --lib reassembly_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn reassembly_cost() {
        let synack = synack_v4();
        let mut r = Reassembler::default();
        let n = 2_000_000u64;
        let t = std::time::Instant::now();
        for i in 0..n {
            assert_eq!(r.push(std::hint::black_box(&synack), i), Outcome::Whole);
        }
        let whole = t.elapsed().as_nanos() as f64 / n as f64;
        let f = nsd_fragments(false);
        let m = 200_000u64;
        let t = std::time::Instant::now();
        for i in 0..m {
            let _ = r.push(f[0], i);
            let _ = r.push(f[1], i);
            assert!(matches!(r.push(f[2], i), Outcome::Complete(_)));
        }
        let frag = t.elapsed().as_nanos() as f64 / m as f64;
        println!("pass-through {whole:.1} ns/packet; 3-fragment 3.4 KB answer {frag:.0} ns");
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(11);
        let seeds: Vec<Vec<u8>> = fragment(&synack_v4(), 1, 8)
            .into_iter()
            .chain(fragment(&synack_v6(), 1, 8))
            .collect();
        let mut r = Reassembler::new(Limits {
            max_datagrams: 4,
            max_bytes: 2000,
            timeout: Duration::from_millis(5),
        });
        for i in 0..50_000u64 {
            let input = if i % 5 == 0 {
                n.bytes(80)
            } else {
                n.mutate(&seeds[i as usize % seeds.len()])
            };
            if let Outcome::Complete(d) = r.push(&input, i * 1000) {
                assert!(d.len() <= MAX_PAYLOAD + 60);
            }
            assert!(r.bytes_held() <= 2000 && r.in_progress() <= 4);
        }
    }
}
