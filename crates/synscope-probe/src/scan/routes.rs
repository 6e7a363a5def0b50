//! Targets on several routes: where a target set must be cut so that each
//! piece has one route (the boundaries of the routing table's prefixes), and
//! which source address each target's probes leave from. Pure: the lookups
//! themselves are in `io::rtnl`.

use std::net::IpAddr;

/// The address space cut at every boundary of a set of prefixes: within one
/// region each prefix covers all of it or none, so the longest-prefix match,
/// and so the route, is the same across it; one lookup per region tells the
/// route of every target in it, however many target intervals it holds.
#[derive(Debug, Clone)]
pub struct Regions {
    cuts: Vec<u128>,
}

impl Regions {
    /// The regions cut by `prefixes`, each prefix an inclusive interval
    /// (first and last address as integers).
    pub fn new(prefixes: impl IntoIterator<Item = (u128, u128)>) -> Regions {
        let mut cuts: Vec<u128> = prefixes
            .into_iter()
            .flat_map(|(lo, hi)| [Some(lo), hi.checked_add(1)])
            .flatten()
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        Regions { cuts }
    }

    /// The region holding address `x` (regions are numbered in address order).
    pub fn of(&self, x: u128) -> usize {
        self.cuts.partition_point(|&c| c <= x)
    }

    /// Cuts the inclusive intervals `targets` where regions meet.
    pub fn split(&self, targets: &[(u128, u128)]) -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        for &(lo, hi) in targets {
            let mut start = lo;
            for &c in &self.cuts[self.of(lo)..] {
                if c > hi {
                    break;
                }
                out.push((start, c - 1));
                start = c;
            }
            out.push((start, hi));
        }
        out
    }
}

/// Cuts the inclusive intervals `targets` at every boundary of `prefixes`
/// (see [`Regions`]).
pub fn split(
    targets: &[(u128, u128)],
    prefixes: impl IntoIterator<Item = (u128, u128)>,
) -> Vec<(u128, u128)> {
    Regions::new(prefixes).split(targets)
}

/// Addresses that are never unicast destinations, skipped in every scan (as
/// zmap's default blocklist does): IPv4 "this network" 0.0.0.0/8 (the kernel
/// answers a route lookup of 0.0.0.0 with "local"), multicast 224.0.0.0/4 and
/// the reserved 240.0.0.0/4 with the limited broadcast; IPv6 the unspecified
/// address and multicast ff00::/8. Sorted, inclusive.
pub fn reserved(v6: bool) -> &'static [(u128, u128)] {
    const V4: [(u128, u128); 2] = [(0, 0x00ff_ffff), (0xe000_0000, 0xffff_ffff)];
    const V6: [(u128, u128); 2] = [(0, 0), (0xff << 120, u128::MAX)];
    if v6 { &V6 } else { &V4 }
}

/// Is the whole interval [lo, hi] reserved (see [`reserved`])?
pub fn is_reserved(v6: bool, lo: u128, hi: u128) -> bool {
    reserved(v6).iter().any(|&(a, b)| a <= lo && hi <= b)
}

/// The source address of every target: sorted, disjoint spans of addresses
/// (as integers of one family) covering the targets, each with the source
/// their route gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMap {
    spans: Vec<(u128, u128, IpAddr)>,
}

fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl SourceMap {
    /// Every target from one source.
    pub fn single(src: IpAddr) -> SourceMap {
        let hi = if src.is_ipv4() {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        SourceMap {
            spans: vec![(0, hi, src)],
        }
    }

    /// From disjoint (lo, hi, source) spans of one family. Consecutive spans
    /// with the same source are merged across the gap between them (no target
    /// lies there), so a million scattered targets behind one route make one
    /// span.
    pub fn from_spans(mut spans: Vec<(u128, u128, IpAddr)>) -> SourceMap {
        spans.sort_unstable_by_key(|s| s.0);
        let mut out: Vec<(u128, u128, IpAddr)> = Vec::new();
        for s in spans {
            match out.last_mut() {
                Some(l) if l.2 == s.2 => l.1 = l.1.max(s.1),
                _ => out.push(s),
            }
        }
        SourceMap { spans: out }
    }

    /// The source the probes to `host` leave from (None: not a target).
    pub fn source_for(&self, host: IpAddr) -> Option<IpAddr> {
        let x = key(host);
        let k = self.spans.partition_point(|s| s.0 <= x).checked_sub(1)?;
        let (_, hi, src) = self.spans[k];
        (x <= hi && src.is_ipv4() == host.is_ipv4()).then_some(src)
    }

    /// Every distinct source address, sorted.
    pub fn sources(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.spans.iter().map(|s| s.2).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_prefix_boundaries() {
        // targets 10.0.0.0/8 with routes 0/0, 10.1.0.0/16 and 10.255.255.255/32
        let t = [(0x0a00_0000, 0x0aff_ffff)];
        let p = [
            (0, 0xffff_ffff),
            (0x0a01_0000, 0x0a01_ffff),
            (0x0aff_ffff, 0x0aff_ffff),
        ];
        assert_eq!(
            split(&t, p),
            [
                (0x0a00_0000, 0x0a00_ffff),
                (0x0a01_0000, 0x0a01_ffff),
                (0x0a02_0000, 0x0aff_fffe),
                (0x0aff_ffff, 0x0aff_ffff),
            ]
        );
        // no prefix inside: unchanged; the whole IPv6 space does not overflow
        assert_eq!(split(&[(5, 9)], [(0, 3), (20, 30)]), [(5, 9)]);
        assert_eq!(
            split(&[(0, u128::MAX)], [(0, u128::MAX), (7, 7)]),
            [(0, 6), (7, 7), (8, u128::MAX)]
        );
    }

    #[test]
    fn many_targets_in_few_regions() {
        // 100,000 scattered single addresses under a default route, a /16
        // and a /32: three lookups' worth of regions, not 100,000
        let r = Regions::new([
            (0, 0xffff_ffff),
            (0x0a01_0000, 0x0a01_ffff),
            (0x0aff_ffff, 0x0aff_ffff),
        ]);
        let targets: Vec<(u128, u128)> = (0..100_000u128)
            .map(|i| (i * 42_949 + 7, i * 42_949 + 7))
            .collect();
        let pieces = r.split(&targets);
        assert_eq!(pieces.len(), targets.len());
        let mut regions: Vec<usize> = pieces.iter().map(|p| r.of(p.0)).collect();
        regions.dedup();
        assert!(regions.len() <= 4, "{}", regions.len());
        // a piece never straddles two regions
        assert!(pieces.iter().all(|p| r.of(p.0) == r.of(p.1)));
    }

    #[test]
    fn reserved_ranges() {
        let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()) as u128;
        assert!(is_reserved(false, 0, 0));
        assert!(is_reserved(false, v4("0.1.2.3"), v4("0.255.255.255")));
        assert!(!is_reserved(false, v4("0.255.255.255"), v4("1.0.0.0")));
        assert!(is_reserved(false, v4("224.0.0.1"), v4("239.255.255.255")));
        assert!(is_reserved(
            false,
            v4("255.255.255.255"),
            v4("255.255.255.255")
        ));
        assert!(!is_reserved(false, v4("198.18.0.1"), v4("198.18.0.1")));
        assert!(!is_reserved(false, v4("223.255.255.255"), v4("224.0.0.0")));
        let v6 = |a: &str| u128::from(a.parse::<std::net::Ipv6Addr>().unwrap());
        assert!(is_reserved(true, 0, 0));
        assert!(!is_reserved(true, 0, 1));
        assert!(is_reserved(true, v6("ff02::1"), v6("ff02::1")));
        assert!(!is_reserved(true, v6("2001:db8::1"), v6("2001:db8::1")));
        // the cuts split a /0 at their edges
        let pieces = split(&[(0, 0xffff_ffff)], reserved(false).iter().copied());
        let open: Vec<_> = pieces
            .iter()
            .filter(|p| !is_reserved(false, p.0, p.1))
            .collect();
        assert_eq!(open, [&(0x0100_0000, 0xdfff_ffff)]);
    }

    #[test]
    fn sources_by_span() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "198.18.200.1".parse().unwrap();
        let m = SourceMap::from_spans(vec![
            (0xc612_c800, 0xc612_c8ff, lan),
            (0x7f00_0000, 0x7fff_ffff, lo),
        ]);
        assert_eq!(m.source_for("127.0.0.1".parse().unwrap()), Some(lo));
        assert_eq!(m.source_for("198.18.200.77".parse().unwrap()), Some(lan));
        assert_eq!(m.source_for("198.18.201.1".parse().unwrap()), None);
        assert_eq!(m.source_for("::1".parse().unwrap()), None);
        assert_eq!(m.sources(), [lo, lan]);
        let one = SourceMap::single(lan);
        assert_eq!(one.source_for("1.2.3.4".parse().unwrap()), Some(lan));
        let merged = SourceMap::from_spans(vec![(0, 4, lan), (5, 9, lan), (20, 29, lan)]);
        assert_eq!(merged.spans, [(0, 29, lan)]);
        // a span of another source between them keeps them apart
        let apart = SourceMap::from_spans(vec![(0, 4, lan), (7, 7, lo), (20, 29, lan)]);
        assert_eq!(apart.spans.len(), 3);
        assert_eq!(apart.source_for(IpAddr::from([0, 0, 0, 7])), Some(lo));
    }
}
