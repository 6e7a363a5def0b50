//! synscope's report layer: what every command prints, as text for people and
//! as JSON / NDJSON in one published schema (docs/schema), plus statistics and
//! Prometheus metrics. It reads the probe layer's results and writes to any
//! `io::Write`; it cannot reach sockets or the command line, which live in the
//! `synscope` crate above it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// the paths the report modules name their inputs by
use synscope_probe::{event, probe};
use synscope_wire as wire;

pub mod dns;
pub mod dns_options;
pub mod json;
pub mod metrics;
pub mod path;
pub mod ping;
pub mod scan;
pub mod stats;
pub mod trace;

pub use stats::RttStats;

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON document at the end.
    Json,
    /// One JSON line per result as it happens, then the summary.
    Ndjson,
}

/// A duration as microseconds with nanosecond precision (`31.204`).
pub fn micros(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// The one duration format of the text output, every command alike:
/// auto-scaled with 3 decimals and humantime's unit names, `31.204us`,
/// `1.235ms`, `16.410s`.
pub fn human(d: std::time::Duration) -> String {
    human_ns(d.as_nanos() as f64)
}

/// [`human`] of a figure in microseconds (statistics are kept as µs).
pub fn human_us(us: f64) -> String {
    human_ns(us * 1e3)
}

fn human_ns(ns: f64) -> String {
    let ns = if ns.is_finite() { ns.max(0.0) } else { 0.0 };
    if ns < 999_999.5 {
        format!("{:.3}us", ns / 1e3)
    } else if ns < 999_999_500.0 {
        format!("{:.3}ms", ns / 1e6)
    } else {
        format!("{:.3}s", ns / 1e9)
    }
}

/// `1 port`, `2 ports`, `0 ports`, `2 addresses`, `2 queries`: a count and
/// its noun, in the plural unless the count is 1.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    let b = noun.as_bytes();
    let consonant_y = noun.ends_with('y') && b.len() > 1 && !b"aeiou".contains(&b[b.len() - 2]);
    if consonant_y {
        format!("{n} {}ies", &noun[..noun.len() - 1])
    } else if ["s", "x", "ch", "sh"].iter().any(|e| noun.ends_with(e)) {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_duration_format_scaled_to_its_size() {
        let f = |ns: u64| human(Duration::from_nanos(ns));
        assert_eq!(f(31_204), "31.204us");
        assert_eq!(f(999_999_400), "999.999ms");
        assert_eq!(f(999_999_600), "1.000s");
        assert_eq!(f(1_234_567), "1.235ms");
        assert_eq!(f(16_410_000_000), "16.410s");
        assert_eq!(human_us(0.5), "0.500us");
        assert_eq!(plural(1, "port"), "1 port");
        assert_eq!(plural(2, "host"), "2 hosts");
        assert_eq!(plural(0, "address"), "0 addresses");
        assert_eq!(plural(3, "query"), "3 queries");
        assert_eq!(plural(3, "key"), "3 keys");
    }
}
