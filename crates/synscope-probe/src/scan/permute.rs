//! A keyed pseudo-random permutation of 0..n computed on the fly (a Feistel
//! network with cycle-walking), so probes go out in a scattered order without a
//! shuffled list in memory, and a disjoint split of it into shards.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

const ROUNDS: u64 = 4;

/// A bijection on 0..n, fixed by its seed.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    key: [u8; 16],
}

impl Permutation {
    /// The permutation of 0..`n` that `seed` picks (the same seed, the same order).
    pub fn new(n: u64, seed: u64) -> Permutation {
        // the smallest even-bit domain 2^(2h) >= n (at least 4 bits)
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(&n.to_le_bytes());
        Permutation { n, half_bits, key }
    }

    /// `n`: the number of positions.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// A permutation of nothing (`n` = 0).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn round(&self, r: u64, x: u64) -> u64 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write_u64(r);
        h.write_u64(x);
        h.finish() & ((1 << self.half_bits) - 1)
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << self.half_bits) | r
    }

    fn feistel_inverse(&self, y: u64) -> u64 {
        let mask = (1 << self.half_bits) - 1;
        let (mut l, mut r) = (y >> self.half_bits, y & mask);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << self.half_bits) | r
    }

    /// The element at position `k` (k < n). Cycle-walking keeps it below n; the
    /// domain is < 4n, so this takes < 4 steps on average. It always ends: the
    /// walk follows the cycle of `k`, meeting each element outside 0..n at most
    /// once, and an empty permutation (or a k outside it) returns k unwalked.
    pub fn at(&self, k: u64) -> u64 {
        if k >= self.n {
            return k;
        }
        let mut x = self.feistel(k);
        while x >= self.n {
            x = self.feistel(x);
        }
        x
    }

    /// The position of element `x` (the inverse of [`Permutation::at`]).
    pub fn position(&self, x: u64) -> u64 {
        if x >= self.n {
            return x;
        }
        let mut k = self.feistel_inverse(x);
        while k >= self.n {
            k = self.feistel_inverse(k);
        }
        k
    }
}

/// Shard `index` of `count`: positions index, index+count, index+2·count, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, 0..`count`.
    pub index: u64,
    /// How many shards share the permutation (at least 1).
    pub count: u64,
}

impl Shard {
    /// The only shard of one: every position.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with 0 <= I < N (0-based, as Kubernetes' JOB_COMPLETION_INDEX).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard '{s}': expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// How many of `n` positions fall in this shard.
    pub fn len(&self, n: u64) -> u64 {
        if self.index >= n {
            0
        } else {
            (n - self.index).div_ceil(self.count)
        }
    }

    /// The `j`-th position of this shard.
    pub fn position(&self, j: u64) -> u64 {
        self.index + j * self.count
    }

    /// The inverse of [`Shard::position`]: which `j` position `k` is, if it is
    /// in this shard at all.
    pub fn local(&self, k: u64) -> Option<u64> {
        let d = k.checked_sub(self.index)?;
        d.is_multiple_of(self.count).then_some(d / self.count)
    }
}

/// The probe order's seed when `--shard I/N` is given without `--seed`: a
/// hash (64-bit FNV-1a, fixed for good: shards on different machines and
/// versions must agree) of what defines the scan: its target ranges (after
/// exclusions), its ports and its shard count. N machines running the same
/// command line so take the same order and cover every pair exactly once.
pub fn derived_seed(targets: &[super::TargetSet], ports: &super::PortList, shards: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(b"synscope-shard-seed-1");
    eat(&shards.to_be_bytes());
    for t in targets {
        eat(&[t.is_ipv6() as u8]);
        for (lo, hi) in t.ranges() {
            eat(&lo.to_be_bytes());
            eat(&hi.to_be_bytes());
        }
    }
    eat(&ports.len().to_be_bytes());
    for i in 0..ports.len() {
        eat(&ports.get(i).unwrap_or(0).to_be_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seed_is_fixed_and_follows_the_definition() {
        use crate::scan::{PortList, TargetSet};
        let t = vec![TargetSet::from_ranges(
            false,
            vec![(0xc612_0000, 0xc612_00ff)],
        )];
        let p = PortList::parse("1-3000").unwrap();
        let a = derived_seed(&t, &p, 3);
        // the same on every machine and version: pinned
        assert_eq!(a, derived_seed(&t, &p, 3));
        assert_eq!(a, 0x6d67_24ab_df3e_a858, "{a:#x}");
        assert_ne!(a, derived_seed(&t, &p, 4));
        assert_ne!(a, derived_seed(&t, &PortList::parse("1-3001").unwrap(), 3));
    }

    #[test]
    fn is_a_bijection_with_an_inverse() {
        for n in [1u64, 2, 3, 17, 1000, 65535, 70000] {
            let p = Permutation::new(n, 42);
            let mut seen = vec![false; n as usize];
            for k in 0..n {
                let x = p.at(k);
                assert!(!seen[x as usize], "n={n}: {x} twice");
                seen[x as usize] = true;
                assert_eq!(p.position(x), k);
            }
        }
    }

    #[test]
    fn walks_are_short_and_always_end() {
        // just above a power of 4: the domain is nearly 4n, the worst ratio
        for n in [(1u64 << 20) + 1, (1u64 << 32) * 65535] {
            let p = Permutation::new(n, 7);
            let longest = (0..200_000u64)
                .map(|k| {
                    let (mut x, mut steps) = (p.feistel(k), 1);
                    while x >= n {
                        x = p.feistel(x);
                        steps += 1;
                    }
                    steps
                })
                .max()
                .unwrap();
            assert!(longest < 100, "n={n}: {longest} steps");
        }
        let empty = Permutation::new(0, 1);
        assert_eq!((empty.at(0), empty.position(5)), (0, 5));
    }

    #[test]
    fn scatters_and_depends_on_seed() {
        let p = Permutation::new(65536, 1);
        let first: Vec<u64> = (0..8).map(|k| p.at(k)).collect();
        assert_ne!(first, (0..8).collect::<Vec<_>>());
        let q = Permutation::new(65536, 2);
        assert_ne!(first, (0..8).map(|k| q.at(k)).collect::<Vec<_>>());
        assert_eq!(
            first,
            (0..8)
                .map(|k| Permutation::new(65536, 1).at(k))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let n = 1001;
        let p = Permutation::new(n, 9);
        let mut seen = vec![0u8; n as usize];
        for i in 0..4 {
            let s = Shard::parse(&format!("{i}/4")).unwrap();
            for j in 0..s.len(n) {
                seen[p.at(s.position(j)) as usize] += 1;
                assert_eq!(s.local(s.position(j)), Some(j));
            }
            assert_eq!(s.local(s.position(0) + 1), None);
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert!(Shard::parse("4/4").is_err());
        assert!(Shard::parse("1/0").is_err());
        assert!(Shard::parse("x").is_err());
        assert_eq!(Shard { index: 5, count: 8 }.len(3), 0);
    }
}
