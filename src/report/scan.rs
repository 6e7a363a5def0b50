//! `synscope scan` output: a table per host, JSON (one document) or NDJSON
//! (one line per result as replies arrive), and the summary.

use crate::scan::ScanVerdict;
use crate::wire::TcpOptions;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;

/// One (host, port) result.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    pub index: u64,
    pub host: IpAddr,
    pub port: u16,
    pub verdict: ScanVerdict,
    pub rtt_ns: Option<u64>,
    pub ttl: Option<u8>,
    pub window: Option<u16>,
    pub options: Option<TcpOptions>,
}

impl ScanResult {
    pub fn json(&self) -> Value {
        let mut v = json!({
            "type": "result",
            "host": self.host,
            "port": self.port,
            "verdict": self.verdict.name(),
        });
        if let ScanVerdict::Filtered { reason, from } = &self.verdict {
            v["reason"] = json!(reason);
            v["icmp_from"] = json!(from);
        }
        if let Some(r) = self.rtt_ns {
            v["rtt_us"] = json!(r as f64 / 1000.0);
        }
        if let Some(t) = self.ttl {
            v["ttl"] = json!(t);
        }
        if let Some(w) = self.window {
            v["window"] = json!(w);
        }
        if let Some(o) = &self.options {
            v["options"] = json!(o);
        }
        v
    }
}

/// The end-of-scan figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScanSummary {
    pub hosts: u64,
    pub ports: u64,
    /// (host, port) pairs in this shard.
    pub probes: u64,
    pub shard: String,
    pub seed: u64,
    /// SYNs sent, retries included.
    pub sent: u64,
    pub open: u64,
    pub closed: u64,
    pub filtered: u64,
    pub no_response: u64,
    pub send_errors: u64,
    pub elapsed_s: f64,
    /// SYNs per second over the send phases.
    pub send_rate_pps: f64,
    pub ignored: BTreeMap<crate::probe::Ignored, u64>,
    pub capture_drops: u64,
    pub interrupted: bool,
}

/// Writes the human table: per host, the open and ICMP-filtered ports, then
/// the no-response ones (or their count), and the closed ones as a count.
pub fn write_table(
    out: &mut impl Write,
    results: &[ScanResult],
    open_only: bool,
) -> std::io::Result<()> {
    let mut by_host: BTreeMap<IpAddr, Vec<&ScanResult>> = BTreeMap::new();
    for r in results {
        by_host.entry(r.host).or_default().push(r);
    }
    for rs in by_host.values().filter(|v| !v.is_empty()) {
        let host = rs[0].host;
        let open: Vec<_> = rs
            .iter()
            .filter(|r| r.verdict == ScanVerdict::Open)
            .collect();
        if open_only && open.is_empty() {
            continue;
        }
        let closed = rs
            .iter()
            .filter(|r| r.verdict == ScanVerdict::Closed)
            .count();
        let silent: Vec<_> = rs
            .iter()
            .filter(|r| r.verdict == ScanVerdict::NoResponse)
            .collect();
        writeln!(out, "\n{host}")?;
        writeln!(
            out,
            "  {:<9} {:<12} {:<32} {:>10} {:>4} {:>6}  options",
            "PORT", "STATE", "REASON", "RTT", "TTL", "WIN"
        )?;
        let mut listed: Vec<&&ScanResult> = rs
            .iter()
            .filter(|r| match r.verdict {
                ScanVerdict::Open => true,
                ScanVerdict::Filtered { .. } => !open_only,
                ScanVerdict::NoResponse => !open_only && silent.len() <= 20,
                ScanVerdict::Closed => false,
            })
            .collect();
        listed.sort_by_key(|r| r.port);
        for r in listed {
            let reason = match &r.verdict {
                ScanVerdict::Open => "syn-ack".to_string(),
                ScanVerdict::Filtered { reason, from } => format!("{reason} from {from}"),
                ScanVerdict::NoResponse => "no-response".into(),
                ScanVerdict::Closed => "rst".into(),
            };
            let rtt = r
                .rtt_ns
                .map(|n| format!("{:.1}us", n as f64 / 1e3))
                .unwrap_or_default();
            let ttl = r.ttl.map(|t| t.to_string()).unwrap_or_default();
            let win = r.window.map(|w| w.to_string()).unwrap_or_default();
            let opts = r.options.as_ref().map(|o| o.brief()).unwrap_or_default();
            writeln!(
                out,
                "  {:<9} {:<12} {:<32} {:>10} {:>4} {:>6}  {opts}",
                format!("{}/tcp", r.port),
                r.verdict.name(),
                reason,
                rtt,
                ttl,
                win
            )?;
        }
        if !open_only {
            if silent.len() > 20 {
                writeln!(out, "  {} ports with no response not shown", silent.len())?;
            }
            if closed > 0 {
                writeln!(out, "  {closed} closed ports not shown (rst)")?;
            }
        }
    }
    Ok(())
}

pub fn write_summary_text(out: &mut impl Write, s: &ScanSummary) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "scanned {} hosts x {} ports ({} probes, shard {}, seed {}) in {:.3}s: {} open, {} closed, {} filtered, {} no-response",
        s.hosts,
        s.ports,
        s.probes,
        s.shard,
        s.seed,
        s.elapsed_s,
        s.open,
        s.closed,
        s.filtered,
        s.no_response
    )?;
    writeln!(
        out,
        "sent {} SYNs at {:.0} pkt/s{}",
        s.sent,
        s.send_rate_pps,
        if s.interrupted { " (interrupted)" } else { "" }
    )
}
