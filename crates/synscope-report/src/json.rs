//! The building blocks of the JSON output every command shares (the schema
//! is published in docs/schema/, its conventions in docs/schema/README.md):
//!
//! - every object a line or a list holds has `kind` (`probe`, `result`,
//!   `host`, `answer`, `error`, `trace`, `hop`, `canaries`, `summary`; a whole
//!   `--json` document is `report`);
//! - every duration is a number of microseconds named `*_us`, with at most 3
//!   decimals (nanosecond resolution);
//! - instants and other integers that can exceed 2^53 (`*_ns` timestamps,
//!   `seed`) are decimal strings, as JSON numbers lose precision there;
//! - names and enum values are snake_case (`no_response`, `admin_prohibited`);
//!   DNS mnemonics (`NOERROR`, `AAAA`) stay as DNS writes them;
//! - `checks` is always an array of failures (empty: passed).
//!
//! The probe types never carry the format: they are mapped here.

use crate::probe::fingerprint::{Fingerprint, Mismatch, VerificationJson};
use crate::probe::verify::ProbeCheck;
use crate::wire::TcpOptions;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// A duration in microseconds with nanosecond resolution, written with at
/// most 3 decimals (`31.204`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Us(pub f64);

impl Us {
    /// The length of `d`.
    pub fn of(d: Duration) -> Us {
        Us(d.as_nanos() as f64 / 1e3)
    }
    /// A span of `ns` nanoseconds.
    pub fn from_ns(ns: u64) -> Us {
        Us(ns as f64 / 1e3)
    }
    /// A span of `s` seconds.
    pub fn from_secs(s: f64) -> Us {
        Us(s * 1e6)
    }
}

impl Serialize for Us {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        us3(&self.0, s)
    }
}

/// `x` rounded to 3 decimals (microseconds to the nanosecond).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Serialises a microsecond figure with at most 3 decimals.
pub fn us3<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*x))
}

/// Serialises seconds (f64) as microseconds with at most 3 decimals.
pub fn secs_as_us<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(x * 1e6))
}

/// An integer that can exceed 2^53, written as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BigU64(pub u64);

impl Serialize for BigU64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Serialises a u64 field as a decimal string.
pub fn u64_str<S: Serializer>(x: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(x)
}

/// `no-answer`, `Port Unreachable`, `--expect-rcode` → `no_answer`,
/// `port_unreachable`, `expect_rcode`.
pub fn snake(s: &str) -> String {
    s.trim_start_matches('-')
        .chars()
        .map(|c| match c {
            '-' | ' ' | '.' | '/' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A verdict's name in snake_case, silence named as everywhere else:
/// `no-answer` → `no_response`, `syn-ack` → `syn_ack`.
pub fn verdict_name(s: &str) -> String {
    match snake(s).as_str() {
        "no_answer" => "no_response".into(),
        v => v.into(),
    }
}

/// Counts by name (`ignored`), the names snake_case.
pub fn counts<K>(m: &BTreeMap<K, u64>, name: impl Fn(&K) -> &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        *out.entry(snake(name(k))).or_default() += v;
    }
    out
}

/// `kernel` or `user`: which clock took a send time.
pub fn rtt_source(s: crate::probe::syn::RttSource) -> &'static str {
    match s {
        crate::probe::syn::RttSource::Kernel => "kernel",
        crate::probe::syn::RttSource::User => "user",
    }
}

/// A line or list item with its `kind` in front of its fields.
#[derive(Debug, Serialize)]
pub struct Kinded<'a, T: Serialize> {
    /// The line's kind (`probe`, `result`, `summary`, ...), written first.
    pub kind: &'static str,
    /// The fields written after `kind`.
    #[serde(flatten)]
    pub inner: &'a T,
}

/// Writes `value` with `kind` in front of its fields.
pub fn kinded<'a, T: Serialize>(kind: &'static str, value: &'a T) -> Kinded<'a, T> {
    Kinded { kind, inner: value }
}

/// The TCP options of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Maximum segment size, if the option was present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    /// Window scale shift count, if the option was present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_scale: Option<u8>,
    /// Whether SACK-permitted was present.
    pub sack_permitted: bool,
    /// `[TSval, TSecr]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<[u32; 2]>,
    /// Number of SACK blocks (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub sack_blocks: u8,
    /// Kinds of options not understood.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<u8>,
    /// The option area ended in a malformed option, the rest ignored (omitted
    /// when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub malformed: bool,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

impl From<&TcpOptions> for Options {
    fn from(o: &TcpOptions) -> Options {
        Options {
            mss: o.mss,
            window_scale: o.window_scale,
            sack_permitted: o.sack_permitted,
            timestamps: o.timestamps.map(|(v, e)| [v, e]),
            sack_blocks: o.sack_blocks,
            unknown: o.unknown.clone(),
            malformed: o.malformed,
        }
    }
}

/// What one segment of a host says about it (`--verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FingerprintOut {
    /// IP TTL (IPv6: hop limit) as received.
    pub ttl: u8,
    /// IPv4 identification; None for IPv6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    /// TCP window as received, unscaled.
    pub window: u16,
    /// The option layout in p0f's letters (`M,S,T,N,W`).
    pub options: String,
    /// MSS option, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    /// Window scale option, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wscale: Option<u8>,
    /// Timestamp option's TSval, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsval: Option<u32>,
}

impl From<&Fingerprint> for FingerprintOut {
    fn from(f: &Fingerprint) -> FingerprintOut {
        FingerprintOut {
            ttl: f.ttl,
            ip_id: f.ip_id,
            window: f.window,
            options: f.options.clone(),
            mss: f.mss,
            wscale: f.wscale,
            tsval: f.tsval,
        }
    }
}

/// One way a SYN-ACK (or an RST) differs from the host's other segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum MismatchOut {
    /// The SYN-ACK's TTL differs from the later segments'.
    Ttl {
        /// TTL of the SYN-ACK.
        syn_ack: u8,
        /// TTL of the later segment.
        later: u8,
    },
    /// The SYN-ACK offered a zero window, the later segments a non-zero one
    /// (Linux SYNPROXY answers with window 0).
    ZeroWindow {
        /// The later segment's window.
        later: u16,
    },
    /// The SYN-ACK and later segments disagree on carrying timestamps.
    Timestamps {
        /// Whether the SYN-ACK carried timestamps.
        syn_ack: bool,
        /// Whether the later segment did.
        later: bool,
    },
    /// The timestamp clock ran backwards or faster than 1 MHz between the
    /// SYN-ACK and a later segment: another clock.
    TsClock {
        /// TSval of the SYN-ACK.
        syn_ack: u32,
        /// TSval of the later segment.
        later: u32,
        /// Time between the two segments, µs.
        elapsed_us: Us,
    },
    /// An RST's TTL differs from the host's segments'.
    RstTtl {
        /// TTL of the RST.
        rst: u8,
        /// TTL of the host's other segments.
        host: u8,
    },
    /// An RST whose IP ID is far from the host's counter.
    RstIpId {
        /// IP ID of the RST.
        rst: u16,
        /// Last IP ID seen from the host.
        host_last: u16,
    },
}

impl From<&Mismatch> for MismatchOut {
    fn from(m: &Mismatch) -> MismatchOut {
        match *m {
            Mismatch::Ttl { syn_ack, later } => MismatchOut::Ttl { syn_ack, later },
            Mismatch::ZeroWindow { later } => MismatchOut::ZeroWindow { later },
            Mismatch::Timestamps { syn_ack, later } => MismatchOut::Timestamps { syn_ack, later },
            Mismatch::TsClock {
                syn_ack,
                later,
                elapsed_ms,
            } => MismatchOut::TsClock {
                syn_ack,
                later,
                elapsed_us: Us::from_ns(elapsed_ms.saturating_mul(1_000_000)),
            },
            Mismatch::RstTtl { rst, host } => MismatchOut::RstTtl { rst, host },
            Mismatch::RstIpId { rst, host_last } => MismatchOut::RstIpId { rst, host_last },
        }
    }
}

/// A SYN-ACK compared with the server's later segments: `result` is
/// `verified`, `syn_proxy` (with its `evidence`) or `unverified`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationOut {
    /// `verified`, `syn_proxy` or `unverified`.
    pub result: String,
    /// The differences that make it `syn_proxy` (empty otherwise).
    pub evidence: Vec<MismatchOut>,
    /// The SYN-ACK's fingerprint.
    pub syn_ack: FingerprintOut,
    /// The fingerprints of the server's later segments.
    pub later: Vec<FingerprintOut>,
}

impl From<&VerificationJson> for VerificationOut {
    fn from(v: &VerificationJson) -> VerificationOut {
        VerificationOut {
            result: snake(v.result),
            evidence: v.evidence.iter().map(MismatchOut::from).collect(),
            syn_ack: (&v.syn_ack).into(),
            later: v.later.iter().map(FingerprintOut::from).collect(),
        }
    }
}

/// What `--verify` found out about one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum CheckOut {
    /// The SYN-ACK was checked by completing the handshake.
    Handshake(VerificationOut),
    /// An RST whose TTL or IP ID is not the host's.
    SuspectRst {
        /// How the RST differs.
        evidence: Vec<MismatchOut>,
    },
    /// The SYN-ACK came from a host that answers every port (the canaries).
    AnswersEveryPort,
}

impl From<&ProbeCheck> for CheckOut {
    fn from(c: &ProbeCheck) -> CheckOut {
        match c {
            ProbeCheck::Handshake(v) => CheckOut::Handshake(v.into()),
            ProbeCheck::SuspectRst { evidence } => CheckOut::SuspectRst {
                evidence: evidence.iter().map(MismatchOut::from).collect(),
            },
            ProbeCheck::AnswersEveryPort => CheckOut::AnswersEveryPort,
        }
    }
}

/// Checks `value` against the definition `def` of docs/schema (unit tests of
/// each command's writer; the lab tests check the real binary's output).
#[cfg(test)]
pub(crate) fn assert_schema(def: &str, value: &serde_json::Value) {
    let mut schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/schema/synscope.schema.json")).unwrap();
    let m = schema.as_object_mut().unwrap();
    m.remove("anyOf");
    m.insert("$ref".into(), format!("#/$defs/{def}").into());
    let v = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{def}: {errors:?}\n{value}");
}

/// [`assert_schema`] on every line of NDJSON text.
#[cfg(test)]
pub(crate) fn assert_schema_lines(def: &str, text: &str) {
    for l in text.lines() {
        assert_schema(def, &serde_json::from_str(l).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_three_decimals_and_big_integers_are_strings() {
        #[derive(Serialize)]
        struct T {
            rtt_us: Us,
            sent_at_ns: BigU64,
        }
        let t = T {
            rtt_us: Us::of(Duration::from_nanos(312_044)),
            sent_at_ns: BigU64(1_764_000_000_123_456_789),
        };
        assert_eq!(
            serde_json::to_string(&kinded("probe", &t)).unwrap(),
            r#"{"kind":"probe","rtt_us":312.044,"sent_at_ns":"1764000000123456789"}"#
        );
        assert_eq!(
            serde_json::to_string(&Us(2.0 / 3.0)).unwrap(),
            "0.667",
            "computed figures are rounded"
        );
    }

    #[test]
    fn names_become_snake_case() {
        assert_eq!(snake("no-answer"), "no_answer");
        assert_eq!(snake("--expect-rcode"), "expect_rcode");
        assert_eq!(snake("Admin-Prohibited"), "admin_prohibited");
    }
}
