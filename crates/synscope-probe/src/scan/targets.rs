//! Target sets: addresses, CIDR prefixes, ranges and names, minus exclusions,
//! kept as sorted disjoint intervals so a /8 costs a few bytes and any host is
//! found by index in O(log n).

use std::net::IpAddr;

/// Largest IPv6 target set (2^24 addresses: a /104).
pub const MAX_V6_ADDRESSES: u128 = 1 << 24;

const EVERY_TARGET_EXCLUDED: &str = "every target is excluded";

/// One inclusive interval of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The first address, as an integer.
    pub lo: u128,
    /// The last address, as an integer (>= `lo`).
    pub hi: u128,
}

/// A target that cannot be read or resolved, with the message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

fn to_u128(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v4) => (false, u32::from(v4) as u128),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

fn from_u128(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(x.into())
    } else {
        IpAddr::V4((x as u32).into())
    }
}

/// Parses one target: `198.18.0.1`, `198.18.0.0/16`, `2001:db8::/120`,
/// `198.18.0.1-198.18.0.9`, `198.18.0.1-9`, or a name (resolved by `resolve`).
pub fn parse_target(
    s: &str,
    resolve: &dyn Fn(&str) -> Result<IpAddr, String>,
) -> Result<Range, TargetError> {
    let s = s.trim();
    let bad = |why: &str| TargetError(format!("bad target '{s}': {why}"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Some((addr, len)) = s.split_once('/') {
        let a: IpAddr = addr.parse().map_err(|_| bad("not an address before '/'"))?;
        let (v6, x) = to_u128(a);
        let bits = if v6 { 128 } else { 32 };
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= bits)
            .ok_or_else(|| bad(&format!("prefix length must be 0-{bits}")))?;
        let host_bits = bits - len;
        let mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        return Ok(Range {
            v6,
            lo: x & !mask,
            hi: (x & !mask) | mask,
        });
    }
    // a range starts with an address; anything else with a '-' is a host name
    if let Some((a, b)) = s
        .split_once('-')
        .filter(|(a, _)| a.trim().parse::<IpAddr>().is_ok())
    {
        let lo: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| bad("not an address before '-'"))?;
        let (v6, lo) = to_u128(lo);
        let hi = match b.trim().parse::<IpAddr>() {
            Ok(h) => {
                let (hv6, h) = to_u128(h);
                if hv6 != v6 {
                    return Err(bad("range mixes IPv4 and IPv6"));
                }
                h
            }
            // `198.18.0.1-9`: the last octet
            Err(_) if !v6 => {
                let last: u8 = b
                    .trim()
                    .parse()
                    .map_err(|_| bad("range end is not an address or octet"))?;
                (lo & !0xff) | last as u128
            }
            Err(_) => return Err(bad("range end is not an address")),
        };
        if hi < lo {
            return Err(bad("range end is below its start"));
        }
        return Ok(Range { v6, lo, hi });
    }
    let a = match s.parse::<IpAddr>() {
        Ok(a) => a,
        // the resolver's message already names the host
        Err(_) => resolve(s).map_err(TargetError)?,
    };
    let (v6, x) = to_u128(a);
    Ok(Range { v6, lo: x, hi: x })
}

/// A set of addresses of one family, indexable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSet {
    v6: bool,
    /// Sorted, disjoint, non-adjacent intervals.
    ranges: Vec<(u128, u128)>,
    /// Number of addresses before each interval.
    starts: Vec<u64>,
    len: u64,
}

fn merge(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn subtract(ranges: Vec<(u128, u128)>, exclude: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    for (mut lo, hi) in ranges {
        let mut alive = true;
        for &(elo, ehi) in exclude {
            if ehi < lo || elo > hi {
                continue;
            }
            if elo > lo {
                out.push((lo, elo - 1));
            }
            if ehi >= hi {
                alive = false;
                break;
            }
            lo = ehi + 1;
        }
        if alive {
            out.push((lo, hi));
        }
    }
    out
}

impl TargetSet {
    /// Builds the set `include` minus `exclude`. All targets must be of one family.
    pub fn build(include: &[Range], exclude: &[Range]) -> Result<TargetSet, TargetError> {
        let v6 = include
            .first()
            .map(|r| r.v6)
            .ok_or_else(|| TargetError("no targets given".into()))?;
        if include.iter().any(|r| r.v6 != v6) {
            return Err(TargetError(
                "targets mix IPv4 and IPv6: scan each family in its own run".into(),
            ));
        }
        let inc = merge(include.iter().map(|r| (r.lo, r.hi)).collect());
        let exc = merge(
            exclude
                .iter()
                .filter(|r| r.v6 == v6)
                .map(|r| (r.lo, r.hi))
                .collect(),
        );
        let ranges = subtract(inc, &exc);
        // ::/0 holds 2^128 addresses, one more than u128 counts: saturate
        let total: u128 = ranges.iter().fold(0u128, |n, (lo, hi)| {
            n.saturating_add((hi - lo).saturating_add(1))
        });
        if v6 && total > MAX_V6_ADDRESSES {
            let held = if total == u128::MAX {
                "2^128".to_string()
            } else {
                total.to_string()
            };
            return Err(TargetError(format!(
                "IPv6 targets hold {held} addresses, too many: at most {MAX_V6_ADDRESSES} (a /104) can be scanned"
            )));
        }
        if total == 0 {
            return Err(TargetError(EVERY_TARGET_EXCLUDED.into()));
        }
        let mut starts = Vec::with_capacity(ranges.len());
        let mut n = 0u64;
        for (lo, hi) in &ranges {
            starts.push(n);
            n += (hi - lo + 1) as u64;
        }
        Ok(TargetSet {
            v6,
            ranges,
            starts,
            len: n,
        })
    }

    /// One set per address family of `include`, IPv4 first, each minus
    /// `exclude`: a scan may mix families and runs each in turn. A family whose
    /// every target is excluded is left out (an error only if all are).
    pub fn build_families(
        include: &[Range],
        exclude: &[Range],
    ) -> Result<Vec<TargetSet>, TargetError> {
        let mut sets = Vec::new();
        let mut excluded = None;
        for v6 in [false, true] {
            let inc: Vec<Range> = include.iter().filter(|r| r.v6 == v6).copied().collect();
            if inc.is_empty() {
                continue;
            }
            match TargetSet::build(&inc, exclude) {
                Ok(t) => sets.push(t),
                Err(e) if e.0 == EVERY_TARGET_EXCLUDED => excluded = Some(e),
                Err(e) => return Err(e),
            }
        }
        if sets.is_empty() {
            return Err(excluded.unwrap_or_else(|| TargetError("no targets given".into())));
        }
        Ok(sets)
    }

    /// The set's family is IPv6 (a set holds one family).
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// A set made of inclusive intervals (as integers of one family), which
    /// may be empty (every on-link target of a scan can be down).
    pub fn from_ranges(v6: bool, ranges: Vec<(u128, u128)>) -> TargetSet {
        let ranges = merge(ranges);
        let mut starts = Vec::with_capacity(ranges.len());
        let mut n = 0u64;
        for (lo, hi) in &ranges {
            starts.push(n);
            n = n.saturating_add((hi - lo).saturating_add(1).min(u64::MAX as u128) as u64);
        }
        TargetSet {
            v6,
            ranges,
            starts,
            len: n,
        }
    }

    /// The sorted, disjoint intervals of the set.
    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// Number of addresses.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No addresses.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th address in ascending order.
    pub fn get(&self, i: u64) -> Option<IpAddr> {
        if i >= self.len {
            return None;
        }
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        Some(from_u128(
            self.v6,
            self.ranges[k].0 + (i - self.starts[k]) as u128,
        ))
    }

    /// The index of `a`, if it is a target.
    pub fn index_of(&self, a: IpAddr) -> Option<u64> {
        let (v6, x) = to_u128(a);
        if v6 != self.v6 {
            return None;
        }
        let k = self
            .ranges
            .partition_point(|&(lo, _)| lo <= x)
            .checked_sub(1)?;
        let (lo, hi) = self.ranges[k];
        (x <= hi).then(|| self.starts[k] + (x - lo) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dns(_: &str) -> Result<IpAddr, String> {
        Err("no resolver in tests".into())
    }

    fn p(s: &str) -> Range {
        parse_target(s, &no_dns).unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(
            p("198.18.0.5/24"),
            Range {
                v6: false,
                lo: 0xc6120000,
                hi: 0xc61200ff
            }
        );
        assert_eq!(
            p("198.18.0.1-9"),
            Range {
                v6: false,
                lo: 0xc6120001,
                hi: 0xc6120009
            }
        );
        assert_eq!(
            p("198.18.0.250-198.18.1.3").hi - p("198.18.0.250-198.18.1.3").lo,
            9
        );
        assert_eq!(p("2001:db8::/126").hi & 0xff, 3);
        assert_eq!(p("0.0.0.0/0").hi, u32::MAX as u128);
        for bad in [
            "",
            "198.18.0.0/33",
            "2001:db8::/129",
            "198.18.0.9-1",
            "1.2.3.4-2001:db8::1",
            "x/8",
            "no.such",
        ] {
            assert!(parse_target(bad, &no_dns).is_err(), "{bad}");
        }
        let named = parse_target("lab", &|_| Ok("198.18.0.2".parse().unwrap())).unwrap();
        assert_eq!(named.lo, 0xc6120002);
        let dashed = parse_target("web-1.lab", &|_| Ok("198.18.0.3".parse().unwrap())).unwrap();
        assert_eq!(dashed.lo, 0xc6120003);
    }

    #[test]
    fn exclusions_and_indexing() {
        let s = TargetSet::build(
            &[p("198.18.0.0/24"), p("198.18.0.10-20")],
            &[p("198.18.0.0"), p("198.18.0.100-199")],
        )
        .unwrap();
        assert_eq!(s.len(), 256 - 1 - 100);
        assert_eq!(s.get(0), Some("198.18.0.1".parse().unwrap()));
        assert_eq!(s.get(98), Some("198.18.0.99".parse().unwrap()));
        assert_eq!(s.get(99), Some("198.18.0.200".parse().unwrap()));
        assert_eq!(s.get(155), None);
        for i in 0..s.len() {
            assert_eq!(s.index_of(s.get(i).unwrap()), Some(i));
        }
        assert_eq!(s.index_of("198.18.0.150".parse().unwrap()), None);
        assert_eq!(s.index_of("198.18.1.1".parse().unwrap()), None);
        assert_eq!(s.index_of("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn limits() {
        assert!(TargetSet::build(&[p("2001:db8::/104")], &[]).is_ok());
        let e = TargetSet::build(&[p("2001:db8::/64")], &[]).unwrap_err();
        assert!(e.0.contains("at most 16777216"), "{e}");
        let all = TargetSet::build(&[p("::/0")], &[]).unwrap_err();
        assert!(all.0.contains("2^128 addresses, too many"), "{all}");
        assert!(TargetSet::build(&[p("198.18.0.1"), p("2001:db8::1")], &[]).is_err());
        let both = TargetSet::build_families(&[p("2001:db8::/127"), p("198.18.0.1")], &[]).unwrap();
        assert_eq!(
            both.iter()
                .map(|t| (t.is_ipv6(), t.len()))
                .collect::<Vec<_>>(),
            vec![(false, 1), (true, 2)]
        );
        let v6_only =
            TargetSet::build_families(&[p("2001:db8::1"), p("198.18.0.1")], &[p("198.18.0.0/24")])
                .unwrap();
        assert_eq!(v6_only.len(), 1);
        assert!(v6_only[0].is_ipv6());
        let e = TargetSet::build_families(&[p("198.18.0.1")], &[p("198.18.0.0/24")]).unwrap_err();
        assert_eq!(e.0, "every target is excluded");
        assert!(TargetSet::build_families(&[p("198.18.0.1"), p("::/0")], &[]).is_err());
        assert!(TargetSet::build(&[p("198.18.0.1")], &[p("198.18.0.0/24")]).is_err());
        assert_eq!(
            TargetSet::build(&[p("0.0.0.0/0")], &[]).unwrap().len(),
            1 << 32
        );
    }
}
