//! What `synscope dns` prints ([`DnsFormat`]) and checks ([`DnsChecks`]):
//! settings the report reads, owned here so the report needs nothing of the
//! command line.

use std::time::Duration;

/// How `synscope dns` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFormat {
    /// kdig-like sections.
    Text,
    /// `--short`: the answers' data, one per line.
    Short,
    /// `--json`.
    Json,
    /// `--ndjson`.
    Ndjson,
}

/// What `synscope dns` checks (exit status 1 when one fails).
#[derive(Debug, Clone, Default)]
pub struct DnsChecks {
    /// `--expect`: the exact answer set (empty: NODATA); None: not checked.
    pub expect: Option<Vec<String>>,
    /// `--expect-contains`: data the answer set must hold.
    pub contains: Vec<String>,
    /// `--expect-rcode`, as a number; None: not checked.
    pub rcode: Option<u16>,
    /// `--expect-regex`; None: not checked.
    pub regex: Option<regex::Regex>,
    /// `--max-time`; None: not checked.
    pub max_time: Option<Duration>,
    /// The AD bit must be set.
    pub ad: bool,
    /// The answer (or the denial) must be signed.
    pub signed: bool,
}

impl DnsChecks {
    /// The flags of the checks asked for, in the order they are evaluated.
    pub fn names(&self) -> Vec<&'static str> {
        let mut n = Vec::new();
        if self.rcode.is_some() {
            n.push("--expect-rcode");
        }
        if self.expect.is_some() {
            n.push("--expect");
        }
        if !self.contains.is_empty() {
            n.push("--expect-contains");
        }
        if self.regex.is_some() {
            n.push("--expect-regex");
        }
        if self.max_time.is_some() {
            n.push("--max-time");
        }
        if self.ad {
            n.push("--expect-ad");
        }
        if self.signed {
            n.push("--expect-signed");
        }
        n
    }

    /// No check asked for.
    pub fn is_empty(&self) -> bool {
        self.expect.is_none()
            && self.contains.is_empty()
            && self.rcode.is_none()
            && self.regex.is_none()
            && self.max_time.is_none()
            && !self.ad
            && !self.signed
    }
}
