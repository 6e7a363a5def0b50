//! RTT statistics: ping's min/avg/max/mdev plus percentiles.

use std::time::Duration;

/// Statistics over a set of durations (RTTs, stage times), in microseconds:
/// the one statistics shape of every command's JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RttStats {
    /// Number of RTTs.
    pub count: usize,
    /// The smallest.
    #[serde(serialize_with = "super::json::us3")]
    pub min_us: f64,
    /// The mean.
    #[serde(serialize_with = "super::json::us3")]
    pub avg_us: f64,
    /// The largest.
    #[serde(serialize_with = "super::json::us3")]
    pub max_us: f64,
    /// Standard deviation, as ping's `mdev` (sqrt(E\[x²\] − E\[x\]²)).
    #[serde(serialize_with = "super::json::us3")]
    pub mdev_us: f64,
    /// The median (nearest rank).
    #[serde(serialize_with = "super::json::us3")]
    pub p50_us: f64,
    /// The 90th percentile (nearest rank).
    #[serde(serialize_with = "super::json::us3")]
    pub p90_us: f64,
    /// The 99th percentile (nearest rank).
    #[serde(serialize_with = "super::json::us3")]
    pub p99_us: f64,
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl RttStats {
    /// None when there is no RTT at all.
    pub fn from_durations(rtts: &[Duration]) -> Option<RttStats> {
        if rtts.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = rtts.iter().map(|d| super::micros(*d)).collect();
        v.sort_by(f64::total_cmp);
        RttStats::from_sorted_us(&v)
    }

    /// From values in microseconds sorted in ascending order; None when empty.
    pub fn from_sorted_us(v: &[f64]) -> Option<RttStats> {
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let avg = v.iter().sum::<f64>() / n;
        let sq = v.iter().map(|x| x * x).sum::<f64>() / n;
        Some(RttStats {
            count: v.len(),
            min_us: v[0],
            avg_us: avg,
            max_us: v[v.len() - 1],
            mdev_us: (sq - avg * avg).max(0.0).sqrt(),
            p50_us: percentile(v, 50.0),
            p90_us: percentile(v, 90.0),
            p99_us: percentile(v, 99.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_like_figures() {
        let d: Vec<Duration> = [10, 20, 30, 40]
            .iter()
            .map(|&u| Duration::from_micros(u))
            .collect();
        let s = RttStats::from_durations(&d).unwrap();
        assert_eq!((s.min_us, s.avg_us, s.max_us), (10.0, 25.0, 40.0));
        assert!((s.mdev_us - 11.180339887).abs() < 1e-6);
        assert_eq!((s.p50_us, s.p90_us, s.p99_us), (20.0, 40.0, 40.0));
        assert_eq!(RttStats::from_durations(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles_on_100_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            (
                percentile(&v, 50.0),
                percentile(&v, 90.0),
                percentile(&v, 99.0)
            ),
            (50.0, 90.0, 99.0)
        );
        assert_eq!(percentile(&v, 0.0), 1.0);
    }
}
