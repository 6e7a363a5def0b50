//! `synscope ping` output: one line per probe, a ping-like summary, JSON/NDJSON.

use super::{OutputFormat, RttStats, human, micros};
use crate::probe::Ignored;
use crate::probe::syn::{ProbeResult, Verdict};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the user expects the port to be (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Open,
    Closed,
    Filtered,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Open => "open",
            Expect::Closed => "closed",
            Expect::Filtered => "filtered",
        }
    }
}

/// Did the port answer as expected? Yes when at least one probe got the expected
/// verdict and no probe got a contradicting answer. Silence contradicts nothing
/// (it is loss) unless no probe was answered at all; for `filtered`, silence is
/// the expected verdict.
pub fn expectation_met(results: &[ProbeResult], expect: Expect) -> bool {
    let mut seen = false;
    for r in results {
        let class = r.verdict.class();
        if class == expect.name() {
            seen = true;
        } else if r.verdict != Verdict::NoAnswer {
            return false;
        }
    }
    seen
}

/// Who was probed and how, for the header line and the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct PingTarget {
    pub host: String,
    pub address: SocketAddr,
    pub source: IpAddr,
    pub interface: String,
    pub syn_options: bool,
}

/// The end-of-run figures.
#[derive(Debug, Clone, Serialize)]
pub struct PingSummary {
    pub sent: usize,
    pub answered: usize,
    pub open: usize,
    pub closed: usize,
    pub filtered: usize,
    pub no_answer: usize,
    pub loss_percent: f64,
    pub elapsed_ms: f64,
    pub rtt: Option<RttStats>,
    pub ignored: BTreeMap<Ignored, u64>,
    pub expect: Expect,
    pub expectation_met: bool,
    pub interrupted: bool,
}

/// Accumulates results and writes them in the chosen format.
pub struct PingReport {
    pub target: PingTarget,
    pub format: OutputFormat,
    pub expect: Expect,
    results: Vec<ProbeResult>,
}

fn probe_json(r: &ProbeResult) -> Value {
    let mut v = json!({
        "type": "probe",
        "seq": r.seq,
        "src_port": r.src_port,
        "isn": r.isn.0,
        "verdict": r.verdict.class(),
        "sent_at_ns": r.sent_at.0,
        "rtt_source": r.rtt_source,
    });
    if let Some(reason) = r.verdict.reason() {
        v["reason"] = json!(reason);
    }
    if let Verdict::FilteredIcmp { from, .. } = &r.verdict {
        v["icmp_from"] = json!(from);
    }
    if let Some(rtt) = r.rtt {
        v["rtt_ns"] = json!(rtt.as_nanos() as u64);
        v["rtt_us"] = json!(micros(rtt));
    }
    if let Some(rep) = &r.reply {
        v["ttl"] = json!(rep.ttl);
        if r.verdict != Verdict::NoAnswer && !matches!(r.verdict, Verdict::FilteredIcmp { .. }) {
            v["flags"] = json!(rep.flags.to_string());
            v["window"] = json!(rep.window);
            v["options"] = json!(rep.options);
        }
    }
    v
}

impl PingReport {
    pub fn new(target: PingTarget, format: OutputFormat, expect: Expect) -> PingReport {
        PingReport {
            target,
            format,
            expect,
            results: Vec::new(),
        }
    }

    pub fn results(&self) -> &[ProbeResult] {
        &self.results
    }

    /// The header line (text) or nothing (JSON formats carry it in the document).
    pub fn start(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.format == OutputFormat::Text {
            let t = &self.target;
            let syn = if t.syn_options {
                "SYN with Linux-like options"
            } else {
                "bare SYN"
            };
            writeln!(
                out,
                "SYNSCOPE {} ({}) from {} via {}: {}",
                t.host, t.address, t.source, t.interface, syn
            )?;
        }
        Ok(())
    }

    /// One probe finished.
    pub fn probe(&mut self, out: &mut impl Write, r: ProbeResult) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Text => writeln!(out, "{}", text_line(&r))?,
            OutputFormat::Ndjson => writeln!(out, "{}", probe_json(&r))?,
            OutputFormat::Json => {}
        }
        out.flush()?;
        self.results.push(r);
        Ok(())
    }

    pub fn summary(
        &self,
        ignored: &BTreeMap<Ignored, u64>,
        elapsed: Duration,
        interrupted: bool,
    ) -> PingSummary {
        let count = |c: &str| {
            self.results
                .iter()
                .filter(|r| r.verdict.class() == c)
                .count()
        };
        let no_answer = self
            .results
            .iter()
            .filter(|r| r.verdict == Verdict::NoAnswer)
            .count();
        let sent = self.results.len();
        let answered = sent - no_answer;
        let rtts: Vec<Duration> = self.results.iter().filter_map(|r| r.rtt).collect();
        PingSummary {
            sent,
            answered,
            open: count("open"),
            closed: count("closed"),
            filtered: count("filtered"),
            no_answer,
            loss_percent: if sent == 0 {
                0.0
            } else {
                100.0 * no_answer as f64 / sent as f64
            },
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
            rtt: RttStats::from_durations(&rtts),
            ignored: ignored.clone(),
            expect: self.expect,
            expectation_met: expectation_met(&self.results, self.expect),
            interrupted,
        }
    }

    /// Writes the summary (and, for `--json`, the whole document).
    pub fn finish(&self, out: &mut impl Write, s: &PingSummary) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Text => {
                let t = &self.target;
                writeln!(out)?;
                writeln!(out, "--- {} synscope ping statistics ---", t.address)?;
                writeln!(
                    out,
                    "{} probes sent, {} answered ({} open, {} closed, {} filtered by ICMP), {:.1}% loss, time {:.0}ms",
                    s.sent,
                    s.answered,
                    s.open,
                    s.closed,
                    s.filtered - s.no_answer,
                    s.loss_percent,
                    s.elapsed_ms
                )?;
                if let Some(r) = &s.rtt {
                    writeln!(
                        out,
                        "rtt min/avg/max/mdev = {:.3}/{:.3}/{:.3}/{:.3} us",
                        r.min_us, r.avg_us, r.max_us, r.mdev_us
                    )?;
                    writeln!(
                        out,
                        "rtt p50/p90/p99 = {:.3}/{:.3}/{:.3} us",
                        r.p50_us, r.p90_us, r.p99_us
                    )?;
                }
            }
            OutputFormat::Ndjson => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["type"] = json!("summary");
                writeln!(out, "{v}")?;
            }
            OutputFormat::Json => {
                let doc = json!({
                    "target": self.target,
                    "probes": self.results.iter().map(probe_json).collect::<Vec<_>>(),
                    "summary": s,
                });
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                )?;
            }
        }
        out.flush()
    }
}

/// `seq=0 sport=40312 open rtt=31.204us ttl=64 win=65160 flags=S. mss 1460,sackOK,TS,wscale 10`
pub fn text_line(r: &ProbeResult) -> String {
    let mut s = format!("seq={} sport={} {}", r.seq, r.src_port, r.verdict.class());
    match &r.verdict {
        Verdict::FilteredIcmp { reason, from } => s += &format!(" ({reason} from {from})"),
        Verdict::NoAnswer => s += " (no answer)",
        _ => {}
    }
    if let Some(rtt) = r.rtt {
        s += &format!(" rtt={}", human(rtt));
    }
    if let Some(rep) = &r.reply {
        s += &format!(" ttl={}", rep.ttl);
        if matches!(r.verdict, Verdict::Open | Verdict::Closed) {
            s += &format!(" win={} flags={}", rep.window, rep.flags);
            let o = rep.options.brief();
            if !o.is_empty() {
                s += &format!(" {o}");
            }
        }
    }
    if r.rtt_source == crate::probe::syn::RttSource::User && r.rtt.is_some() {
        s += " (user-space send time)";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;
    use crate::probe::syn::RttSource;
    use crate::wire::SeqNumber;

    fn r(verdict: Verdict) -> ProbeResult {
        ProbeResult {
            seq: 0,
            src_port: 1,
            isn: SeqNumber(1),
            verdict,
            sent_at: Timestamp(0),
            rtt: None,
            rtt_source: RttSource::Kernel,
            reply: None,
        }
    }

    #[test]
    fn expectations() {
        let icmp = Verdict::FilteredIcmp {
            reason: "admin-prohibited".into(),
            from: "198.18.0.2".parse().unwrap(),
        };
        use Verdict::*;
        assert!(expectation_met(&[r(Open), r(NoAnswer)], Expect::Open));
        assert!(!expectation_met(&[r(NoAnswer)], Expect::Open));
        assert!(!expectation_met(&[r(Open), r(Closed)], Expect::Open));
        assert!(expectation_met(&[r(NoAnswer)], Expect::Filtered));
        assert!(expectation_met(
            &[r(icmp.clone()), r(NoAnswer)],
            Expect::Filtered
        ));
        assert!(!expectation_met(&[r(icmp), r(Closed)], Expect::Filtered));
        assert!(expectation_met(&[r(Closed)], Expect::Closed));
        assert!(!expectation_met(&[], Expect::Closed));
    }
}
