//! Results as people and programs read them: text lines, JSON, NDJSON, statistics.

pub mod dns;
pub mod dns_options;
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

/// Formats a duration for humans with µs resolution: `31.204us`, `1.234567ms`, `1.2s`.
pub fn human(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000_000 {
        format!("{:.3}us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}
