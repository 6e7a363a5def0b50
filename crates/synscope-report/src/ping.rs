//! `synscope ping` output: one line per probe, a ping-like summary, JSON/NDJSON.

use super::json::{self, BigU64, CheckOut, Options, Us, kinded, snake};
use super::{OutputFormat, RttStats, human, human_us, plural};
use crate::probe::Ignored;
use crate::probe::SynAnswer;
use crate::probe::syn::ProbeResult;
use crate::probe::verify::ProbeCheck;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the user expects the port to be (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The port should answer SYN-ACK.
    Open,
    /// The port should answer RST.
    Closed,
    /// The port should stay silent or answer with an ICMP error.
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
    let mut t = ExpectTracker::default();
    for r in results {
        t.add(&r.verdict, expect);
    }
    t.met()
}

/// [`expectation_met`] kept up to date one verdict at a time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExpectTracker {
    seen: bool,
    contradicted: bool,
}

impl ExpectTracker {
    /// Counts one probe's verdict for or against `expect`.
    pub fn add(&mut self, v: &SynAnswer, expect: Expect) {
        if v.class() == expect.name() {
            self.seen = true;
        } else if *v != SynAnswer::NoAnswer {
            self.contradicted = true;
        }
    }
    /// An answer that is none of the verdicts: a SYN-ACK from a host that
    /// answers every port (`--verify`).
    pub fn contradict(&mut self) {
        self.contradicted = true;
    }
    /// Whether the expectation holds so far (see [`expectation_met`]).
    pub fn met(&self) -> bool {
        self.seen && !self.contradicted
    }
}

/// Who was probed and how, for the header line and the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct PingTarget {
    /// The target as the user wrote it.
    pub host: String,
    /// The address and port probed.
    pub address: SocketAddr,
    /// The source address the route chose.
    pub source: IpAddr,
    /// The interface the SYNs leave by.
    pub interface: String,
    /// Whether the SYNs carry options (MSS, SACK, timestamps, window scale); false with `--bare-syn`.
    pub syn_options: bool,
}

/// The end-of-run figures.
#[derive(Debug, Clone, Serialize)]
pub struct PingSummary {
    /// SYNs sent.
    pub sent: usize,
    /// Probes that got a SYN-ACK or an RST.
    pub answered: usize,
    /// Probes answered with a SYN-ACK.
    pub open: usize,
    /// Probes answered with an RST.
    pub closed: usize,
    /// Probes answered with an ICMP error or nothing.
    pub filtered: usize,
    /// Probes nothing answered (counted among `filtered`).
    pub no_response: usize,
    /// Percentage of probes nothing answered (0 when none were sent).
    pub loss_percent: f64,
    /// Wall time of the run, µs.
    pub elapsed_us: Us,
    /// Statistics of the answered probes' RTTs; None when no probe was answered.
    pub rtt: Option<RttStats>,
    /// Captured packets not taken as replies, by reason.
    pub ignored: BTreeMap<String, u64>,
    /// The `--expect` verdict.
    pub expect: Expect,
    /// Whether the port answered as expected (see [`expectation_met`]).
    pub expectation_met: bool,
    /// The run was stopped by Ctrl-C before its count.
    pub interrupted: bool,
    /// `--verify` only: the canaries and the checks' counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
}

/// What `--verify` found over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// The canary ports probed (random, 49152-65535) and what each got.
    pub canary_ports: Vec<u16>,
    /// The verdict of each canary port, in the order of `canary_ports`.
    pub canary_verdicts: Vec<String>,
    /// Every canary answered SYN-ACK: the host answers every port, and its
    /// SYN-ACKs were not counted as open.
    pub answers_every_port: bool,
    /// SYN-ACKs by what completing the handshake showed.
    pub verified: usize,
    /// SYN-ACKs from a SYN proxy: the later segments are not the server's.
    pub syn_proxy: usize,
    /// SYN-ACKs that could not be checked (no later segment).
    pub unverified: usize,
    /// RSTs whose TTL or IP ID is not the host's.
    pub suspect_rst: usize,
}

/// Accumulates results and writes them in the chosen format. Memory per probe
/// is one RTT (8 bytes), plus its JSON text with `--json`, which prints every
/// probe at the end.
pub struct PingReport {
    target: PingTarget,
    format: OutputFormat,
    expect: Expect,
    sent: usize,
    open: usize,
    closed: usize,
    filtered_icmp: usize,
    no_answer: usize,
    rtts_ns: Vec<u64>,
    tracker: ExpectTracker,
    json_probes: Vec<String>,
    json_canaries: Option<String>,
    verify: Option<VerifySummary>,
}

/// One probe as a JSON line (`kind: probe`).
#[derive(Debug, Serialize)]
pub(crate) struct ProbeLine {
    pub seq: u64,
    pub src_port: u16,
    pub isn: u32,
    /// `open`, `closed`, `filtered`, or `answers_every_port` (`--verify`:
    /// a SYN-ACK from a host that answers every port).
    pub verdict: &'static str,
    /// Why filtered: `no_response` or the ICMP error (`admin_prohibited`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_from: Option<IpAddr>,
    /// The SYN's send time, ns since the Unix epoch.
    pub sent_at_ns: BigU64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<Us>,
    pub rtt_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOut>,
}

impl ProbeLine {
    /// The JSON line of `r`, with its `--verify` check if any.
    pub fn new(r: &ProbeResult, check: Option<&ProbeCheck>) -> ProbeLine {
        let answered = matches!(r.verdict, SynAnswer::Open | SynAnswer::Closed);
        let reply = r.reply.as_ref();
        ProbeLine {
            seq: r.seq,
            src_port: r.src_port,
            isn: r.isn.0,
            verdict: match check {
                Some(ProbeCheck::AnswersEveryPort) => "answers_every_port",
                _ => r.verdict.class(),
            },
            reason: match &r.verdict {
                SynAnswer::NoAnswer => Some("no_response".into()),
                v => v.reason().map(|r| snake(&r)),
            },
            icmp_from: match &r.verdict {
                SynAnswer::Filtered { from, .. } => Some(*from),
                _ => None,
            },
            sent_at_ns: BigU64(r.sent_at.0),
            rtt_us: r.rtt.map(Us::of),
            rtt_source: json::rtt_source(r.rtt_source),
            ttl: reply.map(|rep| rep.ttl),
            flags: reply.filter(|_| answered).map(|rep| rep.flags.to_string()),
            window: reply.filter(|_| answered).map(|rep| rep.window),
            options: reply
                .filter(|_| answered)
                .map(|rep| Options::from(&rep.options)),
            check: check.map(CheckOut::from),
        }
    }
}

fn probe_json(r: &ProbeResult, check: Option<&ProbeCheck>) -> String {
    serde_json::to_string(&kinded("probe", &ProbeLine::new(r, check))).unwrap_or_default()
}

/// The `--verify` canaries as a JSON line (`kind: canaries`).
#[derive(Debug, Serialize)]
struct CanariesLine<'a> {
    canary_ports: &'a [u16],
    canary_verdicts: Vec<String>,
    answers_every_port: bool,
}

impl PingReport {
    /// A report on `target` written in `format`, judged against `expect`.
    pub fn new(target: PingTarget, format: OutputFormat, expect: Expect) -> PingReport {
        PingReport {
            target,
            format,
            expect,
            sent: 0,
            open: 0,
            closed: 0,
            filtered_icmp: 0,
            no_answer: 0,
            rtts_ns: Vec::new(),
            tracker: ExpectTracker::default(),
            json_probes: Vec::new(),
            json_canaries: None,
            verify: None,
        }
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

    /// The canaries of `--verify` are back: says once (text) if the host
    /// answers every port.
    pub fn canaries(
        &mut self,
        out: &mut impl Write,
        ports: Vec<u16>,
        verdicts: Vec<String>,
        answers_every_port: bool,
    ) -> std::io::Result<()> {
        if self.format == OutputFormat::Text {
            let list = ports
                .iter()
                .zip(&verdicts)
                .map(|(p, v)| format!("{p} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            if answers_every_port {
                writeln!(
                    out,
                    "{} answers every port (tarpit/proxy): canary ports {list}; its SYN-ACKs are not counted as open",
                    self.target.address.ip()
                )?;
            } else {
                writeln!(out, "canary ports: {list}")?;
            }
        }
        if self.format != OutputFormat::Text {
            let line = CanariesLine {
                canary_ports: &ports,
                canary_verdicts: verdicts.iter().map(|v| json::verdict_name(v)).collect(),
                answers_every_port,
            };
            let line = serde_json::to_string(&kinded("canaries", &line)).unwrap_or_default();
            match self.format {
                OutputFormat::Json => self.json_canaries = Some(line),
                _ => writeln!(out, "{line}")?,
            }
        }
        self.verify = Some(VerifySummary {
            canary_ports: ports,
            canary_verdicts: verdicts.iter().map(|v| json::verdict_name(v)).collect(),
            answers_every_port,
            ..VerifySummary::default()
        });
        Ok(())
    }

    /// One probe finished.
    pub fn probe(&mut self, out: &mut impl Write, r: ProbeResult) -> std::io::Result<()> {
        self.probe_checked(out, r, None)
    }

    /// One probe finished, with what `--verify` found out about it.
    pub fn probe_checked(
        &mut self,
        out: &mut impl Write,
        r: ProbeResult,
        check: Option<ProbeCheck>,
    ) -> std::io::Result<()> {
        let check = check.as_ref();
        match self.format {
            OutputFormat::Text => writeln!(out, "{}", text_line_checked(&r, check))?,
            OutputFormat::Ndjson => writeln!(out, "{}", probe_json(&r, check))?,
            OutputFormat::Json => self.json_probes.push(probe_json(&r, check)),
        }
        out.flush()?;
        self.sent += 1;
        if let (Some(v), Some(c)) = (self.verify.as_mut(), check) {
            match c {
                ProbeCheck::Handshake(h) => match h.result {
                    "syn-proxy" => v.syn_proxy += 1,
                    "verified" => v.verified += 1,
                    _ => v.unverified += 1,
                },
                ProbeCheck::SuspectRst { .. } => v.suspect_rst += 1,
                ProbeCheck::AnswersEveryPort => {}
            }
        }
        if check == Some(&ProbeCheck::AnswersEveryPort) {
            // an answer, but not an open port
            if let Some(rtt) = r.rtt {
                self.rtts_ns.push(rtt.as_nanos() as u64);
            }
            self.tracker.contradict();
            return Ok(());
        }
        match r.verdict {
            SynAnswer::Open => self.open += 1,
            SynAnswer::Closed => self.closed += 1,
            SynAnswer::Filtered { .. } => self.filtered_icmp += 1,
            SynAnswer::NoAnswer => self.no_answer += 1,
        }
        if let Some(rtt) = r.rtt {
            self.rtts_ns.push(rtt.as_nanos() as u64);
        }
        self.tracker.add(&r.verdict, self.expect);
        Ok(())
    }

    /// The end-of-run figures from the probes seen so far.
    pub fn summary(
        &self,
        ignored: &BTreeMap<Ignored, u64>,
        elapsed: Duration,
        interrupted: bool,
    ) -> PingSummary {
        let rtts: Vec<Duration> = self
            .rtts_ns
            .iter()
            .map(|&n| Duration::from_nanos(n))
            .collect();
        let (sent, no_response) = (self.sent, self.no_answer);
        PingSummary {
            sent,
            answered: sent - no_response,
            open: self.open,
            closed: self.closed,
            filtered: self.filtered_icmp + no_response,
            no_response,
            loss_percent: if sent == 0 {
                0.0
            } else {
                100.0 * no_response as f64 / sent as f64
            },
            elapsed_us: Us::of(elapsed),
            rtt: RttStats::from_durations(&rtts),
            ignored: json::counts(ignored, |k| k.name()),
            expect: self.expect,
            expectation_met: self.tracker.met(),
            interrupted,
            verify: self.verify.clone(),
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
                    "{} sent, {} answered ({} open, {} closed, {} filtered by ICMP), {:.1}% loss, time {}",
                    plural(s.sent as u64, "probe"),
                    s.answered,
                    s.open,
                    s.closed,
                    s.filtered - s.no_response,
                    s.loss_percent,
                    human_us(s.elapsed_us.0)
                )?;
                if s.verify.as_ref().is_some_and(|v| v.answers_every_port) {
                    writeln!(
                        out,
                        "{} answers every port (tarpit/proxy): its SYN-ACKs are not counted as open",
                        t.address.ip()
                    )?;
                } else if let Some(v) = &s.verify {
                    writeln!(
                        out,
                        "verify: {} verified, {} syn-proxy, {} unverified, {} suspect rst",
                        v.verified, v.syn_proxy, v.unverified, v.suspect_rst
                    )?;
                }
                if let Some(r) = &s.rtt {
                    writeln!(
                        out,
                        "rtt min/avg/max/mdev = {}/{}/{}/{}",
                        human_us(r.min_us),
                        human_us(r.avg_us),
                        human_us(r.max_us),
                        human_us(r.mdev_us)
                    )?;
                    writeln!(
                        out,
                        "rtt p50/p90/p99 = {}/{}/{}",
                        human_us(r.p50_us),
                        human_us(r.p90_us),
                        human_us(r.p99_us)
                    )?;
                }
            }
            OutputFormat::Ndjson => {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&kinded("summary", s)).unwrap_or_default()
                )?;
            }
            OutputFormat::Json => {
                // written piece by piece: no document tree of every probe in memory
                let target = serde_json::to_string(&self.target).unwrap_or_default();
                let summary = serde_json::to_string(&kinded("summary", s)).unwrap_or_default();
                write!(
                    out,
                    "{{\"kind\":\"report\",\"command\":\"ping\",\"target\":{target},"
                )?;
                if let Some(c) = &self.json_canaries {
                    write!(out, "\"canaries\":{c},")?;
                }
                write!(out, "\"probes\":[")?;
                for (i, p) in self.json_probes.iter().enumerate() {
                    write!(out, "{}{p}", if i == 0 { "" } else { "," })?;
                }
                writeln!(out, "],\"summary\":{summary}}}")?;
            }
        }
        out.flush()
    }
}

/// `seq=0 sport=40312 open rtt=31.204us ttl=64 win=65160 flags=S. mss 1460,sackOK,TS,wscale 10`
pub fn text_line(r: &ProbeResult) -> String {
    text_line_checked(r, None)
}

/// [`text_line`] with `--verify`'s finding after the verdict:
/// `open (syn-proxy: ttl 62, later 61)`.
pub fn text_line_checked(r: &ProbeResult, check: Option<&ProbeCheck>) -> String {
    let class = match check {
        Some(ProbeCheck::AnswersEveryPort) => "syn-ack",
        _ => r.verdict.class(),
    };
    let mut s = format!("seq={} sport={} {class}", r.seq, r.src_port);
    if let Some(c) = check {
        s += &format!(" ({})", c.text());
    }
    match &r.verdict {
        SynAnswer::Filtered { error, from } => s += &format!(" ({} from {from})", error.name()),
        SynAnswer::NoAnswer => s += " (no answer)",
        _ => {}
    }
    if let Some(rtt) = r.rtt {
        s += &format!(" rtt={}", human(rtt));
    }
    if let Some(rep) = &r.reply {
        s += &format!(" ttl={}", rep.ttl);
        if matches!(r.verdict, SynAnswer::Open | SynAnswer::Closed) {
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

    fn r(verdict: SynAnswer) -> ProbeResult {
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

    fn report() -> PingReport {
        PingReport::new(
            PingTarget {
                host: "198.18.4.3".into(),
                address: "198.18.4.3:80".parse().unwrap(),
                source: "198.18.1.1".parse().unwrap(),
                interface: "veth0".into(),
                syn_options: true,
            },
            OutputFormat::Text,
            Expect::Open,
        )
    }

    #[test]
    fn a_host_answering_every_port_is_said_once_and_not_counted_open() {
        let mut rep = report();
        let mut out = Vec::new();
        rep.canaries(
            &mut out,
            vec![50000, 50001, 50002],
            vec!["syn-ack".into(); 3],
            true,
        )
        .unwrap();
        rep.probe_checked(
            &mut out,
            r(SynAnswer::Open),
            Some(ProbeCheck::AnswersEveryPort),
        )
        .unwrap();
        let s = rep.summary(&BTreeMap::new(), Duration::ZERO, false);
        assert_eq!((s.open, s.answered), (0, 1));
        assert!(!s.expectation_met);
        assert!(s.verify.unwrap().answers_every_port);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "198.18.4.3 answers every port (tarpit/proxy): canary ports 50000 syn-ack, 50001 syn-ack, 50002 syn-ack; its SYN-ACKs are not counted as open\n\
             seq=0 sport=1 syn-ack (answers every port)\n"
        );
    }

    #[test]
    fn a_syn_proxied_port_is_open_with_its_evidence() {
        use crate::probe::fingerprint::{Mismatch, VerificationJson};
        let mut rep = report();
        let mut out = Vec::new();
        rep.canaries(&mut out, vec![50000], vec!["rst".into()], false)
            .unwrap();
        let mut fp = crate::probe::fingerprint::Fingerprint::of(
            crate::wire::testutil::fixture("synack_v4"),
            Timestamp(0),
        )
        .unwrap();
        let syn_ack = fp.clone();
        fp.ttl -= 1;
        let v = VerificationJson::new(&syn_ack, &[fp]);
        assert_eq!(
            v.evidence[0],
            Mismatch::Ttl {
                syn_ack: 64,
                later: 63
            }
        );
        rep.probe_checked(&mut out, r(SynAnswer::Open), Some(ProbeCheck::Handshake(v)))
            .unwrap();
        let s = rep.summary(&BTreeMap::new(), Duration::ZERO, false);
        assert_eq!(s.open, 1);
        assert!(s.expectation_met);
        assert_eq!(s.verify.unwrap().syn_proxy, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("seq=0 sport=1 open (syn-proxy: ttl 64, later 63)\n"),
            "{text}"
        );
    }

    /// Canaries, a syn-proxied probe, a silent one and the summary, in both
    /// JSON formats, match docs/schema.
    #[test]
    fn json_and_ndjson_match_the_schema() {
        for format in [OutputFormat::Json, OutputFormat::Ndjson] {
            let mut rep = report();
            rep.format = format;
            let mut out = Vec::new();
            rep.canaries(&mut out, vec![50000], vec!["no-answer".into()], false)
                .unwrap();
            let fp = crate::probe::fingerprint::Fingerprint::of(
                crate::wire::testutil::fixture("synack_v4"),
                Timestamp(0),
            )
            .unwrap();
            let mut later = fp.clone();
            later.ttl -= 1;
            let v = crate::probe::fingerprint::VerificationJson::new(&fp, &[later]);
            let mut open = r(SynAnswer::Open);
            open.rtt = Some(Duration::from_nanos(31_204));
            open.sent_at = Timestamp(1_796_207_968_955_922_899);
            rep.probe_checked(&mut out, open, Some(ProbeCheck::Handshake(v)))
                .unwrap();
            rep.probe(&mut out, r(SynAnswer::NoAnswer)).unwrap();
            let s = rep.summary(&BTreeMap::new(), Duration::from_millis(5), false);
            rep.finish(&mut out, &s).unwrap();
            let text = String::from_utf8(out).unwrap();
            if format == OutputFormat::Json {
                let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                crate::json::assert_schema("ping_document", &doc);
                assert_eq!(doc["probes"][0]["sent_at_ns"], "1796207968955922899");
                assert_eq!(doc["probes"][0]["check"]["result"], "syn_proxy");
                assert_eq!(doc["probes"][1]["reason"], "no_response");
                assert_eq!(doc["summary"]["elapsed_us"], 5000.0);
            } else {
                crate::json::assert_schema_lines("ping_line", &text);
                assert_eq!(text.lines().count(), 4);
            }
        }
    }

    #[test]
    fn expectations() {
        let icmp = SynAnswer::Filtered {
            error: crate::wire::IcmpError {
                v6: false,
                icmp_type: 3,
                code: 13,
            },
            from: "198.18.0.2".parse().unwrap(),
        };
        use SynAnswer::*;
        assert!(expectation_met(&[r(Open), r(NoAnswer)], Expect::Open));
        assert!(!expectation_met(&[r(NoAnswer)], Expect::Open));
        assert!(!expectation_met(&[r(Open), r(Closed)], Expect::Open));
        assert!(expectation_met(&[r(NoAnswer)], Expect::Filtered));
        assert!(expectation_met(&[r(icmp), r(NoAnswer)], Expect::Filtered));
        assert!(!expectation_met(&[r(icmp), r(Closed)], Expect::Filtered));
        assert!(expectation_met(&[r(Closed)], Expect::Closed));
        assert!(!expectation_met(&[], Expect::Closed));
    }
}
