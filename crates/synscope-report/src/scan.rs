//! `synscope scan` output: a table per host, JSON (one document) or NDJSON
//! (one line per result as replies arrive), and the summary.

use super::json::{CheckOut, Options, Us, kinded, snake};
use super::{human, plural};
use crate::probe::SynAnswer;
use crate::probe::verify::{ProbeCheck, Tally};
use crate::wire::TcpOptions;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;
use synscope_probe::scan::follow::AnswersEveryPort;

/// The start of the `--json` document, up to its list of results.
const DOC_START: &str = "{\"kind\":\"report\",\"command\":\"scan\",\"results\":[";

/// One (host, port) result.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    /// The pair's place in the scan's permutation, from 0.
    pub index: u64,
    /// The host probed.
    pub host: IpAddr,
    /// The port probed.
    pub port: u16,
    /// What answered the SYN.
    pub verdict: SynAnswer,
    /// SYN sent to reply received, ns; None without a reply.
    pub rtt_ns: Option<u64>,
    /// The reply's IP TTL (IPv6: hop limit); None without a TCP reply.
    pub ttl: Option<u8>,
    /// The SYN-ACK's or RST's window; None without a TCP reply.
    pub window: Option<u16>,
    /// The SYN-ACK's TCP options; None without one.
    pub options: Option<TcpOptions>,
    /// What canaries / `--verify` found about this answer (`check` in JSON).
    pub check: Option<ProbeCheck>,
}

/// One (host, port) result as a JSON line (`kind: result`).
#[derive(Debug, Serialize)]
pub(crate) struct ResultLine {
    pub host: IpAddr,
    pub port: u16,
    /// `open`, `closed`, `filtered` (an ICMP error) or `no_response`.
    pub verdict: String,
    /// The ICMP error's name (`admin_prohibited`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_from: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<Us>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// What the canaries or `--verify` found out about this answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOut>,
}

impl ScanResult {
    /// A pair that never answered: no RTT, no header, no check.
    pub fn no_response(index: u64, host: IpAddr, port: u16) -> ScanResult {
        ScanResult {
            index,
            host,
            port,
            verdict: SynAnswer::NoAnswer,
            rtt_ns: None,
            ttl: None,
            window: None,
            options: None,
            check: None,
        }
    }

    /// The JSON line's fields.
    pub(crate) fn line(&self) -> ResultLine {
        let (reason, icmp_from) = match &self.verdict {
            SynAnswer::Filtered { error, from } => (Some(snake(&error.name())), Some(*from)),
            _ => (None, None),
        };
        ResultLine {
            host: self.host,
            port: self.port,
            verdict: snake(state(&self.verdict)),
            reason,
            icmp_from,
            rtt_us: self.rtt_ns.map(Us::from_ns),
            ttl: self.ttl,
            window: self.window,
            options: self.options.as_ref().map(Options::from),
            check: self.check.as_ref().map(CheckOut::from),
        }
    }

    /// The JSON line.
    pub fn json(&self) -> String {
        serde_json::to_string(&kinded("result", &self.line())).unwrap_or_default()
    }
}

/// The record of a host that answers every port (its canaries too):
/// `{"kind": "host", "state": "answers_every_port", "canaries": [{"port":
/// 51234, "answer": "syn_ack"}, ...]}`.
pub fn every_port_json(h: &AnswersEveryPort) -> String {
    let line = EveryPortLine {
        host: h.host,
        state: "answers_every_port",
        reason: "canaries_answered",
        canaries: h
            .canaries
            .iter()
            .map(|(port, a)| CanaryOut {
                port: *port,
                answer: super::json::verdict_name(a.name()),
            })
            .collect(),
    };
    serde_json::to_string(&kinded("host", &line)).unwrap_or_default()
}

/// A host that answers every port, as a JSON line.
#[derive(Debug, Serialize)]
pub(crate) struct EveryPortLine {
    pub host: IpAddr,
    /// `answers_every_port`.
    pub state: &'static str,
    /// `canaries_answered`: its random canary ports answered SYN-ACK too.
    pub reason: &'static str,
    pub canaries: Vec<CanaryOut>,
}

/// What one canary port answered (`syn_ack`, `rst`, `icmp`, `no_response`).
#[derive(Debug, Serialize)]
pub(crate) struct CanaryOut {
    pub port: u16,
    pub answer: String,
}

impl ScanChecks {
    /// Counts one check's finding.
    pub fn count(&mut self, c: &ProbeCheck) {
        if let Some(t) = c.tally() {
            *match t {
                Tally::Verified => &mut self.verified,
                Tally::SynProxy => &mut self.syn_proxy,
                Tally::Unverified => &mut self.unverified,
                Tally::SuspectRst => &mut self.suspect_rst,
            } += 1;
        }
    }

    /// Adds another scan's (another address family's) counts.
    pub fn add(&mut self, o: &ScanChecks) {
        let ScanChecks {
            canary_hosts,
            canary_probes,
            answers_every_port_hosts,
            answers_every_port_pairs,
            handshakes,
            verified,
            syn_proxy,
            unverified,
            suspect_rst,
        } = o;
        self.canary_hosts += canary_hosts;
        self.canary_probes += canary_probes;
        self.answers_every_port_hosts += answers_every_port_hosts;
        self.answers_every_port_pairs += answers_every_port_pairs;
        self.handshakes += handshakes;
        self.verified += verified;
        self.syn_proxy += syn_proxy;
        self.unverified += unverified;
        self.suspect_rst += suspect_rst;
    }

    /// `3 canary SYNs to 1 host, 1 answers every port (5 SYN-ACKs not
    /// counted as open); 4 handshakes: 3 verified, 1 syn-proxy, 0 unverified;
    /// 0 suspect RSTs`; None when nothing was checked.
    pub fn line(&self) -> Option<String> {
        if self.canary_probes == 0 && self.handshakes == 0 && self.suspect_rst == 0 {
            return None;
        }
        let mut parts = vec![format!(
            "{} to {}, {} answers every port ({} not counted as open)",
            plural(self.canary_probes, "canary SYN"),
            plural(self.canary_hosts, "host"),
            self.answers_every_port_hosts,
            plural(self.answers_every_port_pairs, "SYN-ACK"),
        )];
        if self.handshakes > 0 || self.suspect_rst > 0 {
            let judged = self.verified + self.syn_proxy + self.unverified;
            let every = match self.handshakes.saturating_sub(judged) {
                0 => String::new(),
                n => format!(", {n} with hosts answering every port"),
            };
            parts.push(format!(
                "{}: {} verified, {} syn-proxy, {} unverified{every}; {}",
                plural(self.handshakes, "handshake"),
                self.verified,
                self.syn_proxy,
                self.unverified,
                plural(self.suspect_rst, "suspect RST")
            ));
        }
        Some(parts.join("; "))
    }
}

/// What the checks of a scan cost and found (`verify` in the summary).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ScanChecks {
    /// Hosts that got canary SYNs (every host with a SYN-ACK; with --verify,
    /// every host that answered), and the canary SYNs sent.
    pub canary_hosts: u64,
    /// Canary SYNs sent.
    pub canary_probes: u64,
    /// Hosts that answered every canary with a SYN-ACK, and their SYN-ACKs
    /// to scanned ports (not counted as open).
    pub answers_every_port_hosts: u64,
    /// SYN-ACKs to scanned ports from those hosts.
    pub answers_every_port_pairs: u64,
    /// --verify: handshakes completed (and reset), those with hosts that
    /// answer every port included, and what the others showed.
    pub handshakes: u64,
    /// Handshakes whose later segments match the SYN-ACK.
    pub verified: u64,
    /// Handshakes answered by a SYN proxy: the later segments are not the SYN-ACK's host.
    pub syn_proxy: u64,
    /// Handshakes with no later segment to compare.
    pub unverified: u64,
    /// --verify: RSTs whose TTL or IP ID is not the host's.
    pub suspect_rst: u64,
}

/// A host's state as host discovery found it (on-link targets only).
#[derive(Debug, Clone, PartialEq)]
pub struct HostResult {
    /// The address asked for.
    pub host: IpAddr,
    /// Whether it answered the ARP request or neighbour solicitation.
    pub up: bool,
    /// "ARP" or "NDP": how it was asked.
    pub method: &'static str,
    /// The link-layer address it answered with; None when down.
    pub mac: Option<crate::wire::MacAddr>,
    /// Request sent to reply received, ns; None when down.
    pub rtt_ns: Option<u64>,
}

impl HostResult {
    /// `arp-reply` / `nd-reply`, or `no ARP reply` / `no NDP reply`.
    pub fn reason(&self) -> String {
        match (self.up, self.method) {
            (true, "ARP") => "arp-reply".into(),
            (true, _) => "nd-reply".into(),
            (false, m) => format!("no {m} reply"),
        }
    }

    /// The JSON line (`kind: host`).
    pub fn json(&self) -> String {
        let line = HostLine {
            host: self.host,
            state: if self.up { "up" } else { "down" },
            method: snake(self.method),
            reason: if self.up {
                snake(&self.reason())
            } else {
                "no_reply".into()
            },
            mac: self.mac.map(|m| m.to_string()),
            rtt_us: self.rtt_ns.map(Us::from_ns),
        };
        serde_json::to_string(&kinded("host", &line)).unwrap_or_default()
    }
}

/// A host as discovery found it, as a JSON line.
#[derive(Debug, Serialize)]
pub(crate) struct HostLine {
    pub host: IpAddr,
    /// `up` or `down`.
    pub state: &'static str,
    /// `arp` or `ndp`.
    pub method: String,
    /// `arp_reply`, `nd_reply` or `no_reply`.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<Us>,
}

/// What host discovery did, for the summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DiscoverySummary {
    /// "ARP", "NDP" (`arp`, `ndp` in JSON).
    #[serde(serialize_with = "snake_str")]
    pub method: String,
    /// On-link addresses asked for.
    pub addresses: u64,
    /// Addresses that answered.
    pub up: u64,
    /// Addresses that did not answer.
    pub down: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Wall time of discovery, seconds (`elapsed_us` in JSON).
    #[serde(rename = "elapsed_us", serialize_with = "super::json::secs_as_us")]
    pub elapsed_s: f64,
    /// Targets that are this host's own addresses: probed without asking.
    pub known_own: u64,
    /// Targets with a permanent neighbour entry: probed without asking.
    pub known_neighbours: u64,
}

impl DiscoverySummary {
    /// `254 addresses, 5 hosts up (ARP) in 310.000ms`, or with the targets
    /// probed without asking: `252 addresses, 0 hosts up (ARP), 2 known
    /// without asking (own address, neighbour table) in 310.000ms`.
    pub fn line(&self) -> String {
        let known = self.known_own + self.known_neighbours;
        let mut why = Vec::new();
        if self.known_own > 0 {
            why.push("own address");
        }
        if self.known_neighbours > 0 {
            why.push("neighbour table");
        }
        let known = if known > 0 {
            format!(", {known} known without asking ({})", why.join(", "))
        } else {
            String::new()
        };
        format!(
            "{}, {} up ({}){known} in {}",
            plural(self.addresses, "address"),
            plural(self.up, "host"),
            self.method,
            human(Duration::from_secs_f64(self.elapsed_s.max(0.0)))
        )
    }
}

/// What rate control saw, and how many verdicts could still be wrong.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RateSummary {
    /// "auto" or "fixed".
    pub mode: String,
    /// The rate at the end (probes/s): with "auto" the controller's, or the
    /// rate the sends really reached if that was lower.
    pub settled_pps: f64,
    /// The largest loss of a time slice (0..1), and the rate it was sent at.
    pub peak_loss: f64,
    /// The rate of that slice (probes/s).
    pub peak_loss_rate_pps: f64,
    /// Loss over every probe to a host known to answer (0..1).
    pub mean_loss: f64,
    /// Rounds added to re-probe what went silent while loss was high.
    pub extra_rounds: u64,
    /// Estimated no-response pairs that are really lost probes: for each
    /// block, its silent pairs × the chance every probe of a pair was lost.
    pub uncertain_pairs: f64,
    /// No-response pairs of hosts that answered other probes with ICMP
    /// errors: a host's ICMP rate limit (Linux: about one error per second
    /// per peer after a burst of six) may have swallowed their rejection,
    /// so they may be filtered rather than dropped.
    pub icmp_silent_pairs: u64,
}

impl RateSummary {
    /// `≈0 pairs uncertain; peak loss 43 % at 180k/s, settled at 19.8k/s (rate auto, 1 extra round)`
    pub fn line(&self) -> String {
        let loss = if self.peak_loss > 0.0 {
            format!(
                "peak loss {:.0} % at {}/s, mean {:.1} %",
                self.peak_loss * 100.0,
                si(self.peak_loss_rate_pps),
                self.mean_loss * 100.0
            )
        } else {
            "no loss seen".into()
        };
        let extra = match self.extra_rounds {
            0 => String::new(),
            1 => ", 1 extra round".into(),
            n => format!(", {n} extra rounds"),
        };
        let icmp = match self.icmp_silent_pairs {
            0 => String::new(),
            n => format!(
                "; {n} no-response{} from hosts that sent ICMP errors (an ICMP rate limit may hide rejections: filtered or dropped)",
                if n == 1 { "" } else { "s" }
            ),
        };
        format!(
            "≈{:.0} pairs uncertain; {loss}; {} at {}/s (rate {}{extra}){icmp}",
            self.uncertain_pairs,
            if self.mode == "auto" {
                "settled"
            } else {
                "sent"
            },
            si(self.settled_pps),
            self.mode
        )
    }
}

/// 19800 → "19.8k", 1200000 → "1.2M".
/// A pair's state as scan reports it: `open`, `closed`, `filtered` (an ICMP
/// error) or `no-response`.
pub fn state(v: &SynAnswer) -> &'static str {
    match v {
        SynAnswer::Open => "open",
        SynAnswer::Closed => "closed",
        SynAnswer::Filtered { .. } => "filtered",
        SynAnswer::NoAnswer => "no-response",
    }
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The end-of-scan figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScanSummary {
    /// Target hosts.
    pub hosts: u64,
    /// Ports per host.
    pub ports: u64,
    /// (host, port) pairs in this shard.
    pub probes: u64,
    /// `N/M`: this shard of M (`1/1` unsharded).
    pub shard: String,
    /// The permutation's seed (a string in JSON: it can exceed 2^53).
    #[serde(serialize_with = "super::json::u64_str")]
    pub seed: u64,
    /// SYNs sent, retries included.
    pub sent: u64,
    /// Pairs answered with a SYN-ACK (hosts that answer every port not counted).
    pub open: u64,
    /// Pairs answered with an RST.
    pub closed: u64,
    /// Pairs answered with an ICMP error.
    pub filtered: u64,
    /// Pairs nothing answered after the retries.
    pub no_response: u64,
    /// SYNs the kernel refused to send (ENOBUFS, EPERM, ...).
    pub send_errors: u64,
    /// Wall time of the scan, seconds (`elapsed_us` in JSON).
    #[serde(rename = "elapsed_us", serialize_with = "super::json::secs_as_us")]
    pub elapsed_s: f64,
    /// SYNs per second over the send phases.
    pub send_rate_pps: f64,
    /// Captured packets not taken as replies, by reason.
    #[serde(serialize_with = "ignored_map")]
    pub ignored: BTreeMap<crate::probe::Ignored, u64>,
    /// Packets the capture ring dropped (the kernel's count).
    pub capture_drops: u64,
    /// Stopped by SIGINT or SIGTERM before every pair was probed.
    pub interrupted: bool,
    /// Host discovery of on-link targets (absent when none were on-link or
    /// with --no-discovery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySummary>,
    /// Network and broadcast addresses of on-link IPv4 prefixes, not probed.
    pub skipped_addresses: u64,
    /// Target addresses with no usable route (not probed, said on stderr).
    pub unroutable_addresses: u64,
    /// Times the kernel's send queue was full (EAGAIN/ENOBUFS) and sending
    /// slowed down.
    pub send_backpressure: u64,
    /// RSTs synscope sent to SYN-ACKs. None once the kernel is seen to
    /// reset them itself (from an address of this host, it answers each
    /// SYN-ACK no socket owns with an RST), so each open port gets one.
    pub resets_sent: u64,
    /// The kernel's RSTs to SYN-ACKs seen while synscope learned who
    /// resets them (see `resets_sent`).
    pub kernel_resets_seen: u64,
    /// Pairs never sent because the scan was interrupted (never reported as
    /// no-response).
    pub not_probed: u64,
    /// Pairs sent but not answered when the interrupt came, in the block whose
    /// wait it cut short: no verdict, not listed.
    pub cut_short: u64,
    /// Rate control and the coverage estimate.
    pub coverage: RateSummary,
    /// Canaries and --verify: their cost and findings.
    pub verify: ScanChecks,
}

fn snake_str<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&snake(v))
}

fn ignored_map<S: serde::Serializer>(
    m: &BTreeMap<crate::probe::Ignored, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    super::json::counts(m, |k| k.name()).serialize(s)
}

/// No-response rows the text table keeps to list them; past this many it keeps
/// only their count, so a huge silent scan costs no memory in text mode either.
pub const LISTED_SILENT_MAX: usize = 1000;

/// Down hosts (no ARP / NDP reply) the text output lists one line each; past
/// this many it counts them in one line at the end (NDJSON and JSON keep one
/// record per host).
pub const LISTED_DOWN_MAX: u64 = 1000;

/// Where results go as they arrive: NDJSON and JSON are streamed (nothing is
/// kept), the text table keeps only what it lists (open and ICMP-filtered
/// ports, and no-response ports up to [`LISTED_SILENT_MAX`], then only their
/// count) and a count of closed ports per host.
pub struct ScanOutput<W: Write> {
    out: W,
    format: super::OutputFormat,
    open_only: bool,
    written: u64,
    kept: Vec<ScanResult>,
    /// No-response rows kept to be listed; None once there were too many.
    silent: Option<Vec<ScanResult>>,
    closed_per_host: BTreeMap<IpAddr, u64>,
    /// Down hosts seen (text lists the first [`LISTED_DOWN_MAX`]) and the
    /// reason they were given.
    down: u64,
    down_reason: String,
    /// Results by verdict name, whatever is printed.
    pub counts: BTreeMap<&'static str, u64>,
    /// Hosts that answer every port, with their SYN-ACKs to scanned ports.
    every_port: BTreeMap<IpAddr, (AnswersEveryPort, u64)>,
    /// Keeps every result, prints nothing (the library's [`ScanOutput::collecting`]).
    collect: bool,
}

impl<W: Write> ScanOutput<W> {
    /// Writes results to `out` in `format`; `open_only` prints only open ports (text).
    pub fn new(out: W, format: super::OutputFormat, open_only: bool) -> ScanOutput<W> {
        ScanOutput {
            out,
            format,
            open_only,
            written: 0,
            kept: Vec::new(),
            silent: Some(Vec::new()),
            closed_per_host: BTreeMap::new(),
            down: 0,
            down_reason: String::new(),
            counts: BTreeMap::new(),
            every_port: BTreeMap::new(),
            collect: false,
        }
    }

    /// A host that answers every port: one record (JSON, NDJSON) or one line
    /// (text), never one per port.
    pub fn every_port(&mut self, h: &AnswersEveryPort) -> std::io::Result<()> {
        self.every_port.insert(h.host, (h.clone(), 0));
        if self.collect {
            return Ok(());
        }
        match self.format {
            super::OutputFormat::Ndjson => writeln!(self.out, "{}", every_port_json(h))?,
            super::OutputFormat::Json => {
                let sep = if self.written == 0 { DOC_START } else { "," };
                write!(self.out, "{sep}{}", every_port_json(h))?;
                self.written += 1;
            }
            super::OutputFormat::Text => {}
        }
        Ok(())
    }

    /// A SYN-ACK of a host that answers every port: counted with the host.
    pub fn absorbed(&mut self, host: IpAddr) {
        *self.counts.entry("answers-every-port").or_default() += 1;
        if let Some(e) = self.every_port.get_mut(&host) {
            e.1 += 1;
        }
    }

    /// Keeps every result and prints nothing: see [`ScanOutput::into_results`].
    pub fn collecting(out: W) -> ScanOutput<W> {
        ScanOutput {
            collect: true,
            ..ScanOutput::new(out, super::OutputFormat::Ndjson, false)
        }
    }

    /// Every result kept by a [`ScanOutput::collecting`] output, by host and port.
    pub fn into_results(mut self) -> Vec<ScanResult> {
        self.kept.sort_by_key(|r| (r.host, r.port));
        self.kept
    }

    /// One (host, port) result.
    pub fn result(&mut self, r: ScanResult) -> std::io::Result<()> {
        *self.counts.entry(state(&r.verdict)).or_default() += 1;
        if self.collect {
            self.kept.push(r);
            return Ok(());
        }
        if self.open_only && r.verdict != SynAnswer::Open {
            return Ok(());
        }
        match self.format {
            super::OutputFormat::Ndjson => {
                writeln!(self.out, "{}", r.json())?;
                self.out.flush()?;
            }
            super::OutputFormat::Json => {
                let sep = if self.written == 0 { DOC_START } else { "," };
                write!(self.out, "{sep}{}", r.json())?;
            }
            super::OutputFormat::Text => match r.verdict {
                SynAnswer::Closed if r.check.is_none() => {
                    *self.closed_per_host.entry(r.host).or_default() += 1
                }
                SynAnswer::NoAnswer => {
                    if let Some(rows) = &mut self.silent {
                        if rows.len() < LISTED_SILENT_MAX {
                            rows.push(r);
                        } else {
                            self.silent = None;
                        }
                    }
                }
                _ => self.kept.push(r),
            },
        }
        self.written += 1;
        Ok(())
    }

    /// A host as discovery found it: a line of its own (never one per port).
    /// Text lists down hosts only (up hosts show in the table); --open hides both.
    pub fn host(&mut self, h: &HostResult) -> std::io::Result<()> {
        if self.open_only || self.collect {
            return Ok(());
        }
        match self.format {
            super::OutputFormat::Ndjson => {
                writeln!(self.out, "{}", h.json())?;
            }
            super::OutputFormat::Json => {
                let sep = if self.written == 0 { DOC_START } else { "," };
                write!(self.out, "{sep}{}", h.json())?;
                self.written += 1;
            }
            super::OutputFormat::Text if !h.up => {
                self.down += 1;
                if self.down <= LISTED_DOWN_MAX {
                    writeln!(self.out, "{}  down ({})", h.host, h.reason())?;
                } else if self.down_reason.is_empty() {
                    self.down_reason = h.reason();
                }
            }
            super::OutputFormat::Text => {}
        }
        Ok(())
    }

    /// The table (text) or the document's end (JSON) or the summary line
    /// (NDJSON); gives the writer back.
    pub fn finish(mut self, s: &ScanSummary) -> std::io::Result<W> {
        match self.format {
            super::OutputFormat::Ndjson => {
                writeln!(
                    self.out,
                    "{}",
                    serde_json::to_string(&kinded("summary", s)).unwrap_or_default()
                )?;
            }
            super::OutputFormat::Json => {
                let start = if self.written == 0 { DOC_START } else { "" };
                writeln!(
                    self.out,
                    "{start}],\"summary\":{}}}",
                    serde_json::to_string(&kinded("summary", s)).unwrap_or_default()
                )?;
            }
            super::OutputFormat::Text => {
                let listed_silent = self.silent.is_some();
                self.kept.extend(self.silent.take().unwrap_or_default());
                self.kept.sort_by_key(|r| r.index);
                write_table(
                    &mut self.out,
                    &self.kept,
                    &self.closed_per_host,
                    self.open_only,
                )?;
                if !self.every_port.is_empty() {
                    writeln!(self.out)?;
                }
                for (h, n) in self.every_port.values() {
                    let canaries: Vec<String> =
                        h.canaries.iter().map(|(p, _)| p.to_string()).collect();
                    writeln!(
                        self.out,
                        "{}  answers every port (tarpit/proxy): SYN-ACKs from {n} scanned port{} and from canary ports {}; not counted as open",
                        h.host,
                        if *n == 1 { "" } else { "s" },
                        canaries.join(", ")
                    )?;
                }
                if !listed_silent && !self.open_only {
                    write_silent_aggregate(&mut self.out, s, &self.kept, &self.closed_per_host)?;
                }
                if self.down > LISTED_DOWN_MAX {
                    writeln!(
                        self.out,
                        "\n{} more hosts down ({}) not listed: more than {LISTED_DOWN_MAX}; --ndjson lists each",
                        self.down - LISTED_DOWN_MAX,
                        self.down_reason
                    )?;
                }
                write_summary_text(&mut self.out, s)?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes the human table: per host, the open and ICMP-filtered ports, then
/// the no-response ones (or their count), and the closed ones as a count.
pub fn write_table(
    out: &mut impl Write,
    results: &[ScanResult],
    closed_per_host: &BTreeMap<IpAddr, u64>,
    open_only: bool,
) -> std::io::Result<()> {
    let mut by_host: BTreeMap<IpAddr, Vec<&ScanResult>> = BTreeMap::new();
    for r in results {
        by_host.entry(r.host).or_default().push(r);
    }
    if !open_only {
        for h in closed_per_host.keys() {
            by_host.entry(*h).or_default();
        }
    }
    // hosts that answered nothing at all: one line each after the tables,
    // never a table header with nothing under it
    let mut silent_hosts: Vec<(IpAddr, usize)> = Vec::new();
    for (&host, rs) in &by_host {
        let has_open = rs.iter().any(|r| r.verdict == SynAnswer::Open);
        if open_only && !has_open {
            continue;
        }
        let closed = closed_per_host.get(&host).copied().unwrap_or(0);
        let silent = rs
            .iter()
            .filter(|r| r.verdict == SynAnswer::NoAnswer)
            .count();
        if closed == 0 && silent == rs.len() {
            silent_hosts.push((host, silent));
            continue;
        }
        let mut listed: Vec<&&ScanResult> = rs
            .iter()
            .filter(|r| match r.verdict {
                SynAnswer::Open => true,
                SynAnswer::Filtered { .. } => !open_only,
                SynAnswer::NoAnswer => !open_only && silent <= 20,
                SynAnswer::Closed => r.check.is_some(),
            })
            .collect();
        listed.sort_by_key(|r| r.port);
        let rows: Vec<[String; 7]> = listed
            .iter()
            .map(|r| {
                let reason = match (&r.verdict, &r.check) {
                    (SynAnswer::Open, Some(c)) => format!("syn-ack ({})", c.text()),
                    (SynAnswer::Open, None) => "syn-ack".to_string(),
                    (_, Some(c)) => c.text(),
                    (SynAnswer::Filtered { error, from }, None) => {
                        format!("{} from {from}", error.name())
                    }
                    (SynAnswer::NoAnswer, None) => "no-response".into(),
                    (SynAnswer::Closed, None) => "rst".into(),
                };
                [
                    format!("{}/tcp", r.port),
                    state(&r.verdict).to_string(),
                    reason,
                    r.rtt_ns
                        .map(|n| human(Duration::from_nanos(n)))
                        .unwrap_or_default(),
                    r.ttl.map(|t| t.to_string()).unwrap_or_default(),
                    r.window.map(|w| w.to_string()).unwrap_or_default(),
                    r.options.as_ref().map(|o| o.brief()).unwrap_or_default(),
                ]
            })
            .collect();
        // columns as wide as their widest cell: an IPv6 "from" address fits
        let head = ["PORT", "STATE", "REASON", "RTT", "TTL", "WIN", "options"];
        let least = [9, 12, 32, 10, 4, 6];
        let width = |i: usize| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([least[i]])
                .max()
                .unwrap_or(0)
        };
        let w: Vec<usize> = (0..6).map(width).collect();
        let line = |c: [&str; 7]| {
            let l = format!(
                "  {:<w0$} {:<w1$} {:<w2$} {:>w3$} {:>w4$} {:>w5$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                c[6],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
                w5 = w[5]
            );
            l.trim_end().to_string()
        };
        writeln!(out, "\n{host}")?;
        writeln!(out, "{}", line(head))?;
        for r in &rows {
            writeln!(out, "{}", line(std::array::from_fn(|i| r[i].as_str())))?;
        }
        if !open_only {
            if silent > 20 {
                writeln!(out, "  {silent} ports with no response not shown")?;
            }
            if closed > 0 {
                writeln!(out, "  {} not shown (rst)", plural(closed, "closed port"))?;
            }
        }
    }
    if !silent_hosts.is_empty() {
        writeln!(out)?;
    }
    for (host, n) in silent_hosts {
        writeln!(out, "{host}  no response ({})", plural(n as u64, "port"))?;
    }
    Ok(())
}

/// The no-response results of a scan with too many to list, in two figures:
/// how many, and (for a whole scan that ran to its end) how many hosts
/// answered nothing at all, which is what a user of a big scan wants to know.
fn write_silent_aggregate(
    out: &mut impl Write,
    s: &ScanSummary,
    answers: &[ScanResult],
    closed_per_host: &BTreeMap<IpAddr, u64>,
) -> std::io::Result<()> {
    write!(
        out,
        "\n{} (host, port) pairs gave no response (not listed: more than {LISTED_SILENT_MAX}; --ndjson lists each)",
        s.no_response
    )?;
    if !s.interrupted && s.shard == "0/1" {
        let mut answering: std::collections::BTreeSet<IpAddr> =
            answers.iter().map(|r| r.host).collect();
        answering.extend(closed_per_host.keys());
        let silent_hosts = s.hosts.saturating_sub(answering.len() as u64);
        write!(
            out,
            ": {} × {} answered nothing at all",
            plural(silent_hosts, "host"),
            plural(s.ports, "port")
        )?;
    }
    writeln!(out)
}

/// The summary as text lines (the text format's last lines).
pub(crate) fn write_summary_text(out: &mut impl Write, s: &ScanSummary) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "scanned {} x {} ({}, shard {}, seed {}) in {}: {} open, {} closed, {} filtered, {} no-response",
        plural(s.hosts, "host"),
        plural(s.ports, "port"),
        plural(s.probes, "probe"),
        s.shard,
        s.seed,
        human(Duration::from_secs_f64(s.elapsed_s.max(0.0))),
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
    )?;
    if let Some(d) = &s.discovery {
        writeln!(
            out,
            "discovery: {}, {} down; {} requests",
            d.line(),
            d.down,
            d.requests
        )?;
    }
    if s.skipped_addresses > 0 {
        writeln!(
            out,
            "skipped {} network/broadcast addresses",
            s.skipped_addresses
        )?;
    }
    if s.unroutable_addresses > 0 {
        writeln!(
            out,
            "not probed: {} target addresses with no route",
            s.unroutable_addresses
        )?;
    }
    if s.send_backpressure > 0 {
        writeln!(
            out,
            "send back-pressure: the kernel's queue was full {} times; sending slowed down",
            s.send_backpressure
        )?;
    }
    writeln!(out, "coverage: {}", s.coverage.line())?;
    if let Some(l) = s.verify.line() {
        writeln!(out, "checks: {l}")?;
    }
    if s.interrupted {
        writeln!(
            out,
            "not probed: {} pairs never sent; {} sent but unanswered when interrupted (no verdict)",
            s.not_probed, s.cut_short
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn summary(no_response: u64, interrupted: bool) -> ScanSummary {
        ScanSummary {
            hosts: 16384,
            ports: 100,
            probes: 1_638_400,
            shard: "0/1".into(),
            seed: 1,
            sent: 3_276_800,
            open: 1,
            closed: 0,
            filtered: 0,
            no_response,
            send_errors: 0,
            elapsed_s: 1.0,
            send_rate_pps: 1.0,
            ignored: BTreeMap::new(),
            capture_drops: 0,
            interrupted,
            not_probed: 7,
            cut_short: 3,
            discovery: None,
            skipped_addresses: 0,
            unroutable_addresses: 0,
            send_backpressure: 0,
            resets_sent: 0,
            kernel_resets_seen: 0,
            coverage: RateSummary {
                mode: "auto".into(),
                ..RateSummary::default()
            },
            verify: ScanChecks::default(),
        }
    }

    fn silent(i: u64) -> ScanResult {
        ScanResult::no_response(i, IpAddr::from([198, 18, (i >> 8) as u8, i as u8]), 9)
    }

    /// The text output of these results and the rows it kept in memory.
    fn text(results: impl Iterator<Item = ScanResult>, s: &ScanSummary) -> (String, usize) {
        let mut out = ScanOutput::new(Vec::new(), crate::OutputFormat::Text, false);
        for r in results {
            out.result(r).unwrap();
        }
        let kept = out.kept.len() + out.silent.as_ref().map_or(0, Vec::len);
        (String::from_utf8(out.finish(s).unwrap()).unwrap(), kept)
    }

    /// Host lines of discovery in each format, around one port result.
    fn with_hosts(format: crate::OutputFormat) -> String {
        let mut out = ScanOutput::new(Vec::new(), format, false);
        let down = HostResult {
            host: "198.18.200.9".parse().unwrap(),
            up: false,
            method: "ARP",
            mac: None,
            rtt_ns: None,
        };
        let up = HostResult {
            host: "198.18.200.2".parse().unwrap(),
            up: true,
            method: "ARP",
            mac: Some(crate::wire::MacAddr([2, 0x53, 0x53, 0xc8, 0, 2])),
            rtt_ns: Some(12_500),
        };
        out.host(&up).unwrap();
        out.host(&down).unwrap();
        out.result(ScanResult {
            verdict: SynAnswer::Closed,
            host: up.host,
            ..silent(0)
        })
        .unwrap();
        let mut s = summary(0, false);
        s.discovery = Some(DiscoverySummary {
            method: "ARP".into(),
            addresses: 2,
            up: 1,
            down: 1,
            requests: 4,
            elapsed_s: 0.05,
            ..DiscoverySummary::default()
        });
        String::from_utf8(out.finish(&s).unwrap()).unwrap()
    }

    #[test]
    fn discovered_hosts_in_every_format() {
        let j: Value = serde_json::from_str(&with_hosts(crate::OutputFormat::Json)).unwrap();
        let r = j["results"].as_array().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            json!({"kind": "host", "host": "198.18.200.2", "state": "up", "method": "arp",
                   "reason": "arp_reply", "mac": "02:53:53:c8:00:02", "rtt_us": 12.5})
        );
        assert_eq!(
            r[1],
            json!({"kind": "host", "host": "198.18.200.9", "state": "down", "method": "arp",
                   "reason": "no_reply"})
        );
        assert_eq!(j["summary"]["discovery"]["up"], 1);
        crate::json::assert_schema("scan_document", &j);
        let nd = with_hosts(crate::OutputFormat::Ndjson);
        crate::json::assert_schema_lines("scan_line", &nd);
        assert_eq!(nd.lines().count(), 4);
        for l in nd.lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
        let t = with_hosts(crate::OutputFormat::Text);
        assert!(t.starts_with("198.18.200.9  down (no ARP reply)\n"), "{t}");
        assert!(!t.contains("arp-reply"), "{t}");
        assert!(
            t.contains("discovery: 2 addresses, 1 host up (ARP) in 50.000ms, 1 down; 4 requests"),
            "{t}"
        );
    }

    #[test]
    fn a_few_silent_ports_are_listed_many_are_counted() {
        let (t, kept) = text((0..5).map(silent), &summary(5, false));
        assert_eq!(kept, 5);
        // hosts that answered nothing: a line each, no table header
        assert_eq!(t.matches("  no response (1 port)\n").count(), 5, "{t}");
        assert!(!t.contains("PORT"), "{t}");
        let answered = ScanResult {
            verdict: SynAnswer::Closed,
            port: 10,
            ..silent(0)
        };
        let (t, _) = text((0..5).map(silent).chain([answered]), &summary(5, false));
        assert_eq!(t.matches("no-response  no-response").count(), 1, "{t}");
        assert_eq!(t.matches("PORT").count(), 1, "{t}");

        let n = 20 * LISTED_SILENT_MAX as u64;
        let (t, kept) = text((0..n).map(silent), &summary(n, false));
        assert_eq!(kept, 0, "silent rows are not kept past the limit");
        assert!(!t.contains("no-response  no-response"), "{t}");
        assert!(
            t.contains(&format!(
                "{n} (host, port) pairs gave no response (not listed: more than 1000; --ndjson lists each): 16384 hosts × 100 ports answered nothing at all"
            )),
            "{t}"
        );

        let (t, _) = text((0..n).map(silent), &summary(n, true));
        assert!(!t.contains("answered nothing at all"), "{t}");
        assert!(
            t.contains("not probed: 7 pairs never sent; 3 sent but unanswered when interrupted"),
            "{t}"
        );
    }

    #[test]
    fn many_down_hosts_are_listed_up_to_a_bound_then_counted() {
        let mut out = ScanOutput::new(Vec::new(), crate::OutputFormat::Text, false);
        let n = LISTED_DOWN_MAX + 2500;
        for i in 0..n {
            out.host(&HostResult {
                host: IpAddr::from((0xc612_0000u32 + i as u32).to_be_bytes()),
                up: false,
                method: "ARP",
                mac: None,
                rtt_ns: None,
            })
            .unwrap();
        }
        let t = String::from_utf8(out.finish(&summary(0, false)).unwrap()).unwrap();
        assert_eq!(t.matches("down (no ARP reply)\n").count(), 1000, "{t}");
        assert!(
            t.contains("2500 more hosts down (no ARP reply) not listed: more than 1000; --ndjson lists each"),
            "{t}"
        );
    }

    #[test]
    fn a_host_answering_every_port_is_one_line_or_record_and_not_open() {
        let h = AnswersEveryPort {
            host: "198.18.4.3".parse().unwrap(),
            canaries: vec![
                (50001, synscope_probe::scan::follow::CanaryAnswer::SynAck),
                (60002, synscope_probe::scan::follow::CanaryAnswer::SynAck),
            ],
        };
        let mut s = summary(0, false);
        s.verify = ScanChecks {
            canary_hosts: 2,
            canary_probes: 6,
            answers_every_port_hosts: 1,
            answers_every_port_pairs: 2,
            handshakes: 7,
            verified: 4,
            syn_proxy: 1,
            unverified: 0,
            suspect_rst: 1,
        };
        for format in [crate::OutputFormat::Text, crate::OutputFormat::Ndjson] {
            let mut out = ScanOutput::new(Vec::new(), format, false);
            out.every_port(&h).unwrap();
            out.absorbed(h.host);
            out.absorbed(h.host);
            assert_eq!(out.counts.get("answers-every-port"), Some(&2));
            assert_eq!(out.counts.get("open"), None);
            let t = String::from_utf8(out.finish(&s).unwrap()).unwrap();
            if format == crate::OutputFormat::Text {
                assert!(t.contains("198.18.4.3  answers every port (tarpit/proxy): SYN-ACKs from 2 scanned ports and from canary ports 50001, 60002; not counted as open\n"), "{t}");
                assert!(t.contains("checks: 6 canary SYNs to 2 hosts, 1 answers every port (2 SYN-ACKs not counted as open); 7 handshakes: 4 verified, 1 syn-proxy, 0 unverified, 2 with hosts answering every port; 1 suspect RST\n"), "{t}");
            } else {
                let first: Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
                assert_eq!(
                    first,
                    json!({"kind": "host", "host": "198.18.4.3", "state": "answers_every_port",
                           "reason": "canaries_answered",
                           "canaries": [{"port": 50001, "answer": "syn_ack"}, {"port": 60002, "answer": "syn_ack"}]})
                );
                crate::json::assert_schema_lines("scan_line", &t);
            }
        }
        assert_eq!(ScanChecks::default().line(), None);
    }

    #[test]
    fn the_coverage_line() {
        let r = RateSummary {
            mode: "auto".into(),
            settled_pps: 19_800.0,
            peak_loss: 0.43,
            peak_loss_rate_pps: 180_000.0,
            mean_loss: 0.021,
            extra_rounds: 1,
            uncertain_pairs: 0.2,
            icmp_silent_pairs: 0,
        };
        assert_eq!(
            r.line(),
            "≈0 pairs uncertain; peak loss 43 % at 180.0k/s, mean 2.1 %; settled at 19.8k/s (rate auto, 1 extra round)"
        );
        let r = RateSummary {
            icmp_silent_pairs: 94,
            ..r
        };
        assert!(
            r.line().ends_with("(rate auto, 1 extra round); 94 no-responses from hosts that sent ICMP errors (an ICMP rate limit may hide rejections: filtered or dropped)"),
            "{}",
            r.line()
        );
        let r = RateSummary {
            mode: "fixed".into(),
            settled_pps: 1_000_000.0,
            ..RateSummary::default()
        };
        assert_eq!(
            r.line(),
            "≈0 pairs uncertain; no loss seen; sent at 1.0M/s (rate fixed)"
        );
    }

    #[test]
    fn the_discovery_line_counts_targets_known_without_asking() {
        let mut d = DiscoverySummary {
            method: "ARP".into(),
            addresses: 252,
            elapsed_s: 0.5,
            ..DiscoverySummary::default()
        };
        assert_eq!(d.line(), "252 addresses, 0 hosts up (ARP) in 500.000ms");
        d.known_own = 1;
        d.known_neighbours = 1;
        assert_eq!(
            d.line(),
            "252 addresses, 0 hosts up (ARP), 2 known without asking (own address, neighbour table) in 500.000ms"
        );
    }
}
