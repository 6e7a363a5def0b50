//! `synscope dns` output: kdig-like sections, `--short`, JSON/NDJSON, the
//! checks for scripts, the comparison of several servers, the bulk summary.

use super::RttStats;
use super::dns_options::{DnsChecks, DnsFormat};
use super::json::{Kinded, Us, kinded, snake};
use super::plural;
use crate::probe::dns::{DnsIgnored, Refusal};
use crate::probe::syn::RttSource;
use crate::wire::dns::{RRSIG, RecordRepr, ReplyRepr, opcode_name, rcode_name, rrsig_covers};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The UDP leg of a query.
#[derive(Debug, Clone)]
pub struct UdpLeg {
    /// Query sent to answer received.
    pub rtt: Duration,
    /// Which clock stamped the query's send time.
    pub rtt_source: RttSource,
    /// Queries sent, 1 plus the retries.
    pub attempts: u32,
    /// The answer.
    pub reply: ReplyRepr,
}

/// The TCP leg after a truncated UDP answer.
#[derive(Debug, Clone)]
pub struct TcpLeg {
    /// TCP connect (SYN to SYN-ACK) time.
    pub connect: Duration,
    /// Query written to answer read.
    pub exchange: Duration,
    /// Connect plus exchange: the whole TCP leg.
    pub total: Duration,
    /// The answer; None when the TCP leg failed (see `error`).
    pub reply: Option<ReplyRepr>,
    /// Why the TCP leg failed; None when it answered.
    pub error: Option<String>,
}

/// What took the query's timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimedBy {
    /// Raw sockets: our packets and the replies seen by a packet capture.
    #[default]
    RawCapture,
    /// An ordinary UDP socket's kernel TX and RX stamps (no privileges).
    SocketTimestamps,
}

impl TimedBy {
    /// As text output writes it (`raw capture`, `socket timestamps`).
    pub fn name(self) -> &'static str {
        match self {
            TimedBy::RawCapture => "raw capture",
            TimedBy::SocketTimestamps => "socket timestamps",
        }
    }
}

/// One query to one server, finished.
#[derive(Debug, Clone)]
pub struct DnsResult {
    /// The server queried.
    pub server: SocketAddr,
    /// The name queried, as the user wrote it.
    pub name: String,
    /// The query type's mnemonic (`A`, `AAAA`, `MX`).
    pub qtype: String,
    /// The query type's number (`A` = 1).
    pub qtype_code: u16,
    /// The query's size in bytes (DNS message, without IP and UDP headers).
    pub query_size: usize,
    /// None: no UDP answer after `attempts` attempts.
    pub udp: Option<UdpLeg>,
    /// UDP queries sent, 1 plus the retries, answered or not.
    pub attempts: u32,
    /// The TCP retry after a truncated UDP answer; None when there was none.
    pub tcp: Option<TcpLeg>,
    /// The ICMP error that ended the query without an answer.
    pub refused: Option<Refusal>,
    /// What took the query's timestamps.
    pub timed_by: TimedBy,
}

impl DnsResult {
    /// The answer that counts: over TCP if the UDP one was truncated and TCP worked.
    pub fn reply(&self) -> Option<&ReplyRepr> {
        match &self.tcp {
            Some(TcpLeg { reply: Some(r), .. }) => Some(r),
            _ => self.udp.as_ref().map(|u| &u.reply),
        }
    }

    /// Total time to the answer that counts.
    pub fn time(&self) -> Option<Duration> {
        let udp = self.udp.as_ref()?.rtt;
        Some(match &self.tcp {
            Some(t) if t.reply.is_some() => udp + t.total,
            _ => udp,
        })
    }

    /// `udp`, or `tcp` when the answer that counts came over TCP.
    pub fn transport(&self) -> &'static str {
        match &self.tcp {
            Some(TcpLeg { reply: Some(_), .. }) => "tcp",
            _ => "udp",
        }
    }

    /// The answer set the checks compare: data of answers of the queried type.
    pub fn answer_set(&self) -> Vec<String> {
        let Some(r) = self.reply() else {
            return Vec::new();
        };
        r.answer
            .iter()
            .filter(|a| self.qtype_code == 255 || a.type_code == self.qtype_code)
            .map(|a| a.data.clone())
            .collect()
    }
}

/// A value as compared: IP addresses canonical, names lower-case without the
/// final dot, anything else as given.
pub fn normalize(v: &str) -> String {
    let t = v.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return ip.to_string();
    }
    let t = t.strip_suffix('.').unwrap_or(t);
    // names inside data (MX, SOA...) too: lower-case, drop final dots per word
    t.split(' ')
        .map(|w| {
            let w = w.strip_suffix('.').unwrap_or(w);
            if w.starts_with('"') {
                w.to_string()
            } else {
                w.to_ascii_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Evaluates the checks on one result: the failures, one line each.
pub fn check(result: &DnsResult, checks: &DnsChecks) -> Vec<String> {
    let mut fail = Vec::new();
    let who = format!("{} {} @{}", result.name, result.qtype, result.server);
    let Some(reply) = result.reply() else {
        // a check never passes on no answer: each one asked fails, and with
        // none asked the result still says it was not answered
        let why = match &result.refused {
            Some(r) => format!("no answer ({r})"),
            None => "no answer".to_string(),
        };
        let asked = checks.names();
        if asked.is_empty() {
            fail.push(format!("{who}: {why}"));
        }
        for flag in asked {
            fail.push(format!("{flag}: {who}: {why}"));
        }
        return fail;
    };
    let set: Vec<String> = result.answer_set();
    let got: std::collections::BTreeSet<String> = set.iter().map(|v| normalize(v)).collect();
    let show = |s: &std::collections::BTreeSet<String>| {
        if s.is_empty() {
            "(empty)".to_string()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    if let Some(want) = &checks.rcode
        && reply.rcode != *want
    {
        fail.push(format!(
            "--expect-rcode: {who}: status {} instead of {}",
            rcode_name(reply.rcode),
            rcode_name(*want)
        ));
    }
    if let Some(want) = &checks.expect {
        let want: std::collections::BTreeSet<String> = want.iter().map(|v| normalize(v)).collect();
        if want != got {
            fail.push(format!(
                "--expect: {who}: answer is {} instead of {}",
                show(&got),
                show(&want)
            ));
        }
    }
    let missing: Vec<String> = checks
        .contains
        .iter()
        .map(|v| normalize(v))
        .filter(|v| !got.contains(v))
        .collect();
    if !missing.is_empty() {
        fail.push(format!(
            "--expect-contains: {who}: answer {} lacks {}",
            show(&got),
            missing.join(", ")
        ));
    }
    if let Some(re) = &checks.regex
        && !set.iter().any(|v| re.is_match(v))
    {
        fail.push(format!(
            "--expect-regex: {who}: no answer matches /{}/ (answer: {})",
            re.as_str(),
            show(&got)
        ));
    }
    if let (Some(max), Some(t)) = (checks.max_time, result.time())
        && t > max
    {
        fail.push(format!(
            "--max-time: {who}: answered in {} (over {})",
            super::human(t),
            super::human(max)
        ));
    }
    if checks.ad && !reply.flags.ad {
        fail.push(format!(
            "--expect-ad: {who}: the AD bit is not set (the answer was not validated)"
        ));
    }
    if checks.signed
        && let Some(why) = unsigned(reply)
    {
        fail.push(format!("--expect-signed: {who}: {why}"));
    }
    fail
}

/// Why a reply is not signed, or None if it is: every RRset of the answer
/// section has an RRSIG of the same owner covering its type; an empty answer
/// (NXDOMAIN, NODATA) needs RRSIGs in the authority section (the signed denial).
pub fn unsigned(reply: &ReplyRepr) -> Option<String> {
    let sets: std::collections::BTreeSet<(String, u16, &str)> = reply
        .answer
        .iter()
        .filter(|r| r.type_code != RRSIG)
        .map(|r| (r.name.to_ascii_lowercase(), r.type_code, r.rtype.as_str()))
        .collect();
    if sets.is_empty() {
        return if reply.authority.iter().any(|r| r.type_code == RRSIG) {
            None
        } else {
            Some("empty answer and no RRSIG in the authority section (an unsigned denial)".into())
        };
    }
    let missing: Vec<String> = sets
        .iter()
        .filter(|(name, code, _)| {
            !reply
                .answer
                .iter()
                .any(|r| rrsig_covers(r) == Some(*code) && r.name.eq_ignore_ascii_case(name))
        })
        .map(|(name, _, t)| format!("{name} {t}"))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("no RRSIG covers {}", missing.join(", ")))
    }
}

/// What servers' answers are compared by: the rcode and the answer set,
/// normalised and sorted (`NOERROR [198.18.0.10]`), or `no answer`.
pub fn answer_view(r: &DnsResult) -> String {
    match r.reply() {
        None => "no answer".to_string(),
        Some(rep) => {
            let mut set: Vec<String> = r.answer_set().iter().map(|v| normalize(v)).collect();
            set.sort();
            format!("{} [{}]", rcode_name(rep.rcode), set.join(", "))
        }
    }
}

/// Servers whose answers differ, per query: (name type, lines).
pub fn differences(results: &[DnsResult]) -> Vec<String> {
    let mut by_q: BTreeMap<(String, String), Vec<&DnsResult>> = BTreeMap::new();
    for r in results {
        by_q.entry((r.name.clone(), r.qtype.clone()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((name, qtype), rs) in by_q {
        if rs.len() < 2 {
            continue;
        }
        let view = answer_view;
        let first = view(rs[0]);
        if rs.iter().all(|r| view(r) == first) {
            continue;
        }
        for r in rs {
            out.push(format!("{name} {qtype} @{}: {}", r.server, view(r)));
        }
    }
    out
}

fn us(d: Duration) -> String {
    super::human(d)
}

fn server_text(s: SocketAddr) -> String {
    format!("{}@{}", s.ip(), s.port())
}

fn section(out: &mut impl Write, title: &str, rs: &[RecordRepr]) -> std::io::Result<()> {
    if rs.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n;; {title} SECTION:")?;
    for r in rs {
        writeln!(
            out,
            "{:<24}\t{}\t{}\t{}\t{}",
            r.name, r.ttl, r.class, r.rtype, r.data
        )?;
    }
    Ok(())
}

/// kdig-like sections of one message.
fn message_text(out: &mut impl Write, r: &ReplyRepr) -> std::io::Result<()> {
    writeln!(
        out,
        ";; ->>HEADER<<- opcode: {}; status: {}; id: {}",
        opcode_name(r.opcode),
        rcode_name(r.rcode),
        r.id
    )?;
    writeln!(
        out,
        ";; Flags: {}; QUERY: {}; ANSWER: {}; AUTHORITY: {}; ADDITIONAL: {}",
        r.flags.names(),
        r.question_count,
        r.answer.len(),
        r.authority.len(),
        r.additional.len()
    )?;
    if let Some(e) = &r.edns {
        writeln!(out, "\n;; EDNS PSEUDOSECTION:")?;
        writeln!(
            out,
            ";; Version: {}; flags: {}; UDP size: {} B",
            e.version,
            if e.dnssec_ok { "do" } else { "" },
            e.udp_size
        )?;
        for o in &e.options {
            writeln!(out, ";; {o}")?;
        }
    }
    if let Some(q) = &r.question {
        writeln!(out, "\n;; QUESTION SECTION:")?;
        writeln!(
            out,
            ";; {:<21}\t\tIN\t{}",
            q.name.to_ascii(),
            crate::wire::dns::type_name(q.qtype)
        )?;
    }
    section(out, "ANSWER", &r.answer)?;
    section(out, "AUTHORITY", &r.authority)?;
    section(out, "ADDITIONAL", &r.additional)?;
    Ok(())
}

/// One result as kdig would show it.
pub fn result_text(out: &mut impl Write, r: &DnsResult) -> std::io::Result<()> {
    let Some(udp) = &r.udp else {
        return match &r.refused {
            Some(f) => writeln!(
                out,
                ";; no answer from {}(UDP) for {} {}: {f} after {} (attempt {}; timed by: {})",
                server_text(r.server),
                r.name,
                r.qtype,
                us(f.after),
                r.attempts,
                r.timed_by.name()
            ),
            None => writeln!(
                out,
                ";; no answer from {}(UDP) for {} {} after {}",
                server_text(r.server),
                r.name,
                r.qtype,
                plural(u64::from(r.attempts), "attempt")
            ),
        };
    };
    if let Some(t) = &r.tcp {
        writeln!(
            out,
            ";; WARNING: truncated reply from {}(UDP) in {}, {} B, retrying over TCP",
            server_text(r.server),
            us(udp.rtt),
            udp.reply.size
        )?;
        match &t.reply {
            Some(rep) => {
                message_text(out, rep)?;
                writeln!(out, "\n;; Received {} B", rep.size)?;
                writeln!(
                    out,
                    ";; From {}(TCP) in {} (connect {}, exchange {}); UDP {} ({} timestamps; timed by: {})",
                    server_text(r.server),
                    us(t.total),
                    us(t.connect),
                    us(t.exchange),
                    us(udp.rtt),
                    source_name(udp.rtt_source),
                    r.timed_by.name()
                )?;
            }
            None => {
                message_text(out, &udp.reply)?;
                writeln!(
                    out,
                    "\n;; TCP failed: {}",
                    t.error.as_deref().unwrap_or("no answer")
                )?;
            }
        }
        return Ok(());
    }
    message_text(out, &udp.reply)?;
    writeln!(out, "\n;; Received {} B", udp.reply.size)?;
    writeln!(
        out,
        ";; From {}(UDP) in {} ({} timestamps, {}; timed by: {})",
        server_text(r.server),
        us(udp.rtt),
        source_name(udp.rtt_source),
        plural(u64::from(udp.attempts), "attempt"),
        r.timed_by.name()
    )
}

fn source_name(s: RttSource) -> &'static str {
    match s {
        RttSource::Kernel => "kernel",
        RttSource::User => "user-space",
    }
}

/// One resource record.
#[derive(Debug, Serialize)]
pub(crate) struct RecordOut<'a> {
    pub name: &'a str,
    pub ttl: u32,
    pub class: &'a str,
    /// The record type's mnemonic (`A`, `AAAA`, `MX`).
    #[serde(rename = "type")]
    pub rtype: &'a str,
    pub data: &'a str,
}

fn records(rs: &[RecordRepr]) -> Vec<RecordOut<'_>> {
    rs.iter()
        .map(|r| RecordOut {
            name: &r.name,
            ttl: r.ttl,
            class: &r.class,
            rtype: &r.rtype,
            data: &r.data,
        })
        .collect()
}

/// The header flags of a message.
#[derive(Debug, Serialize)]
pub(crate) struct FlagsOut {
    pub qr: bool,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
}

/// The OPT pseudo-record of a message.
#[derive(Debug, Serialize)]
pub(crate) struct EdnsOut<'a> {
    pub version: u8,
    pub dnssec_ok: bool,
    pub udp_size: u16,
    pub options: &'a [String],
}

/// The question of a message.
#[derive(Debug, Serialize)]
pub(crate) struct QuestionOut {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
}

/// The message that answered, section by section.
#[derive(Debug, Serialize)]
pub(crate) struct MessageOut<'a> {
    pub id: u16,
    pub opcode: String,
    /// The response code's mnemonic (`NOERROR`, `NXDOMAIN`).
    pub status: String,
    pub flags: FlagsOut,
    pub question: Option<QuestionOut>,
    pub answer: Vec<RecordOut<'a>>,
    pub authority: Vec<RecordOut<'a>>,
    pub additional: Vec<RecordOut<'a>>,
    pub edns: Option<EdnsOut<'a>>,
    pub size: usize,
}

impl<'a> From<&'a ReplyRepr> for MessageOut<'a> {
    fn from(r: &'a ReplyRepr) -> MessageOut<'a> {
        let f = &r.flags;
        MessageOut {
            id: r.id,
            opcode: opcode_name(r.opcode),
            status: rcode_name(r.rcode),
            flags: FlagsOut {
                qr: f.qr,
                aa: f.aa,
                tc: f.tc,
                rd: f.rd,
                ra: f.ra,
                ad: f.ad,
                cd: f.cd,
            },
            question: r.question.as_ref().map(|q| QuestionOut {
                name: q.name.to_ascii(),
                qtype: crate::wire::dns::type_name(q.qtype),
            }),
            answer: records(&r.answer),
            authority: records(&r.authority),
            additional: records(&r.additional),
            edns: r.edns.as_ref().map(|e| EdnsOut {
                version: e.version,
                dnssec_ok: e.dnssec_ok,
                udp_size: e.udp_size,
                options: &e.options,
            }),
            size: r.size,
        }
    }
}

/// The ICMP error that ended a query.
#[derive(Debug, Serialize)]
pub(crate) struct RefusedOut {
    /// `port_unreachable`, `admin_prohibited`, ...
    pub icmp: String,
    pub from: IpAddr,
    pub after_us: Us,
}

/// The UDP leg of a query.
#[derive(Debug, Serialize)]
pub(crate) struct UdpOut {
    pub rtt_us: Us,
    pub rtt_source: &'static str,
    pub truncated: bool,
    pub size: usize,
}

/// The TCP leg after a truncated UDP answer.
#[derive(Debug, Serialize)]
pub(crate) struct TcpOut<'a> {
    pub connect_us: Us,
    pub exchange_us: Us,
    pub total_us: Us,
    pub size: Option<usize>,
    pub error: Option<&'a str>,
}

/// One query to one server as JSON (`kind: answer`).
#[derive(Debug, Serialize)]
pub(crate) struct AnswerOut<'a> {
    pub server: String,
    pub name: &'a str,
    /// The query type's mnemonic.
    #[serde(rename = "type")]
    pub qtype: &'a str,
    pub answered: bool,
    pub status: Option<String>,
    /// `udp`, or `tcp` after a truncated UDP answer.
    pub transport: &'static str,
    /// Time to the answer that counts (UDP, plus TCP after truncation).
    pub time_us: Option<Us>,
    pub attempts: u32,
    /// `raw_capture` or `socket_timestamps`.
    pub timed_by: &'static str,
    pub refused: Option<RefusedOut>,
    /// The data of the answers of the queried type.
    pub answers: Vec<String>,
    pub udp: Option<UdpOut>,
    pub tcp: Option<TcpOut<'a>>,
    pub message: Option<MessageOut<'a>>,
    /// The checks that failed, one line each (empty: passed).
    pub checks: &'a [String],
}

impl TimedBy {
    /// As JSON writes it.
    pub fn id(self) -> &'static str {
        match self {
            TimedBy::RawCapture => "raw_capture",
            TimedBy::SocketTimestamps => "socket_timestamps",
        }
    }
}

/// One result as its JSON object.
pub(crate) fn answer_out<'a>(r: &'a DnsResult, failures: &'a [String]) -> AnswerOut<'a> {
    let reply = r.reply();
    AnswerOut {
        server: r.server.to_string(),
        name: &r.name,
        qtype: &r.qtype,
        answered: reply.is_some(),
        status: reply.map(|x| rcode_name(x.rcode)),
        transport: r.transport(),
        time_us: r.time().map(Us::of),
        attempts: r.attempts,
        timed_by: r.timed_by.id(),
        refused: r.refused.map(|f| RefusedOut {
            icmp: snake(&f.error.name()),
            from: f.from,
            after_us: Us::of(f.after),
        }),
        answers: r.answer_set(),
        udp: r.udp.as_ref().map(|u| UdpOut {
            rtt_us: Us::of(u.rtt),
            rtt_source: super::json::rtt_source(u.rtt_source),
            truncated: u.reply.flags.tc,
            size: u.reply.size,
        }),
        tcp: r.tcp.as_ref().map(|t| TcpOut {
            connect_us: Us::of(t.connect),
            exchange_us: Us::of(t.exchange),
            total_us: Us::of(t.total),
            size: t.reply.as_ref().map(|x| x.size),
            error: t.error.as_deref(),
        }),
        message: reply.map(MessageOut::from),
        checks: failures,
    }
}

/// One result as a JSON value.
pub fn result_json(r: &DnsResult, failures: &[String]) -> Value {
    serde_json::to_value(kinded("answer", &answer_out(r, failures))).unwrap_or_default()
}

/// The end of a single-name run (`kind: summary`).
#[derive(Debug, Serialize)]
pub struct SingleSummary<'a> {
    /// Servers whose answers differ, one line each.
    pub differences: &'a [String],
    /// Captured packets not taken as answers, by reason.
    pub ignored: BTreeMap<String, u64>,
}

/// The `--json` document of a single-name run.
#[derive(Debug, Serialize)]
struct SingleDocument<'a> {
    kind: &'static str,
    command: &'static str,
    results: Vec<Kinded<'a, AnswerOut<'a>>>,
    summary: Kinded<'a, SingleSummary<'a>>,
}

/// Writes the results of a single-name run; returns the check failures.
pub fn write_results(
    out: &mut impl Write,
    format: DnsFormat,
    results: &[DnsResult],
    checks: &DnsChecks,
    ignored: &BTreeMap<DnsIgnored, u64>,
) -> std::io::Result<Vec<String>> {
    let failures: Vec<Vec<String>> = results.iter().map(|r| check(r, checks)).collect();
    let diffs = differences(results);
    let several = results.len() > 1;
    match format {
        DnsFormat::Text => {
            for (i, r) in results.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                if several {
                    writeln!(
                        out,
                        ";; SERVER {} — {} {}",
                        server_text(r.server),
                        r.name,
                        r.qtype
                    )?;
                }
                result_text(out, r)?;
            }
            let servers: std::collections::BTreeSet<SocketAddr> =
                results.iter().map(|r| r.server).collect();
            if servers.len() > 1 {
                if diffs.is_empty() {
                    writeln!(
                        out,
                        "\n;; COMPARISON: all {} servers gave the same answers",
                        servers.len()
                    )?;
                } else {
                    writeln!(out, "\n;; DIFFERENCES:")?;
                    for d in &diffs {
                        writeln!(out, ";; {d}")?;
                    }
                }
            }
        }
        DnsFormat::Short => {
            let servers: std::collections::BTreeSet<SocketAddr> =
                results.iter().map(|r| r.server).collect();
            for r in results {
                let Some(rep) = r.reply() else { continue };
                for a in &rep.answer {
                    if servers.len() > 1 {
                        writeln!(out, "@{} {}", r.server, a.data)?;
                    } else {
                        writeln!(out, "{}", a.data)?;
                    }
                }
            }
        }
        DnsFormat::Json | DnsFormat::Ndjson => {
            let answers: Vec<AnswerOut> = results
                .iter()
                .zip(&failures)
                .map(|(r, f)| answer_out(r, f))
                .collect();
            let summary = SingleSummary {
                differences: &diffs,
                ignored: super::json::counts(ignored, |k| k.name()),
            };
            if format == DnsFormat::Json {
                let doc = SingleDocument {
                    kind: "report",
                    command: "dns",
                    results: answers.iter().map(|a| kinded("answer", a)).collect(),
                    summary: kinded("summary", &summary),
                };
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                for a in &answers {
                    writeln!(out, "{}", serde_json::to_string(&kinded("answer", a))?)?;
                }
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&kinded("summary", &summary))?
                )?;
            }
        }
    }
    Ok(failures.into_iter().flatten().collect())
}

/// The bulk run's figures.
#[derive(Debug, Clone, Default)]
pub struct BulkSummary {
    /// The servers of the command line.
    pub servers: Vec<SocketAddr>,
    /// Lines with a name (bad ones included).
    pub names: u64,
    /// Queries: a name to one server.
    pub queries: u64,
    /// Queries answered.
    pub answered: u64,
    /// Queries no answer came for after the retries.
    pub timeouts: u64,
    /// Queries a server refused, by ICMP error name and its sender.
    pub refused: BTreeMap<(String, IpAddr), u64>,
    /// Answered queries that failed at least one check.
    pub failed_queries: u64,
    /// Failures per check (`--expect`, `--expect-rcode`, ...).
    pub check_failures: BTreeMap<String, u64>,
    /// What the latencies are measured between.
    pub timing: &'static str,
    /// Which path took the stamps (raw capture, or socket timestamps).
    pub timed_by: TimedBy,
    /// Queries retried over TCP after a truncated UDP answer.
    pub tcp: u64,
    /// Input lines that are not a valid query (reported, not sent).
    pub bad_lines: u64,
    /// Answers by response code mnemonic (`NOERROR`, `NXDOMAIN`).
    pub rcodes: BTreeMap<String, u64>,
    /// Per answered query, microseconds ×10 (0.1 µs resolution) kept compactly.
    pub rtts_decius: Vec<u32>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// UDP queries sent, retries included.
    pub sent_packets: u64,
    /// Stopped by SIGINT or SIGTERM before the input ended.
    pub interrupted: bool,
    /// Queries sent and neither answered nor timed out when interrupted.
    pub in_flight: u64,
    /// Each line to each of several servers: the lines whose answers
    /// differed ([`answer_view`]), and the first of them.
    pub differing_lines: Option<u64>,
    /// The first of the `differing_lines` (up to 100).
    pub differences: Vec<DifferingLine>,
}

/// A bulk line whose servers' answers differed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DifferingLine {
    /// The line's number in the input, from 1.
    pub line: u64,
    /// The name on that line.
    pub name: String,
    /// The query type's mnemonic.
    #[serde(rename = "type")]
    pub qtype: String,
    /// Server → its answer ([`answer_view`]).
    pub answers: BTreeMap<String, String>,
}

/// The bulk run's summary as JSON (`kind: summary`).
#[derive(Debug, Serialize)]
pub struct BulkSummaryOut<'a> {
    /// The servers queried.
    pub servers: &'a [SocketAddr],
    /// Input lines with a name (bad ones included).
    pub names: u64,
    /// Queries sent: each name to each server.
    pub queries: u64,
    /// Queries answered.
    pub answered: u64,
    /// Queries no answer came for (after the retries).
    pub no_response: u64,
    /// Queries a server refused with an ICMP error.
    pub refused: Vec<RefusedCount>,
    /// Queries that failed at least one check.
    pub failed_checks: u64,
    /// Failures per check, by the option's name (`expect`, `expect_rcode`).
    pub check_failures: BTreeMap<String, u64>,
    /// What the latencies are measured between (`kernel`, `user`).
    pub timing: &'static str,
    /// `raw_capture` or `socket_timestamps`.
    pub timed_by: &'static str,
    /// Queries retried over TCP after a truncated UDP answer.
    pub tcp_fallbacks: u64,
    /// Input lines that are not a valid query (reported, not sent).
    pub bad_lines: u64,
    /// Wall time of the run, µs.
    pub elapsed_us: Us,
    /// Answered queries per second.
    pub qps: f64,
    /// UDP queries sent, retries included.
    pub packets_sent: u64,
    /// Statistics of `time_us` over the answered queries.
    pub time: Option<RttStats>,
    /// Answers by response code mnemonic.
    pub rcodes: &'a BTreeMap<String, u64>,
    /// Captured packets not taken as answers, by reason (snake_case).
    pub ignored: BTreeMap<String, u64>,
    /// Stopped by SIGINT or SIGTERM before the input ended.
    pub interrupted: bool,
    /// Queries sent and neither answered nor timed out when interrupted.
    pub in_flight: u64,
    /// With several servers: the lines whose servers' answers differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differing_lines: Option<u64>,
    /// The first of those lines (up to 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differences: Option<&'a [DifferingLine]>,
}

/// Queries refused by one ICMP error from one address.
#[derive(Debug, Serialize)]
pub struct RefusedCount {
    /// `port_unreachable`, `admin_prohibited`, ...
    pub icmp: String,
    /// The address the ICMP errors came from.
    pub from: IpAddr,
    /// Queries refused so.
    pub count: u64,
}

impl BulkSummary {
    /// The statistics of the answered queries' times.
    pub fn time_stats(&self) -> Option<RttStats> {
        // sorted as integers (unstable: equal values are alike), then scaled
        let mut d = self.rtts_decius.clone();
        d.sort_unstable();
        let v: Vec<f64> = d.iter().map(|&x| x as f64 / 10.0).collect();
        RttStats::from_sorted_us(&v)
    }

    /// The summary as JSON writes it, with the capture's ignored packets.
    pub fn out(&self, ignored: &BTreeMap<DnsIgnored, u64>) -> BulkSummaryOut<'_> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        BulkSummaryOut {
            servers: &self.servers,
            names: self.names,
            queries: self.queries,
            answered: self.answered,
            no_response: self.timeouts,
            refused: self
                .refused
                .iter()
                .map(|((icmp, from), n)| RefusedCount {
                    icmp: snake(icmp),
                    from: *from,
                    count: *n,
                })
                .collect(),
            failed_checks: self.failed_queries,
            check_failures: super::json::counts(&self.check_failures, |k| k.as_str()),
            timing: self.timing,
            timed_by: self.timed_by.id(),
            tcp_fallbacks: self.tcp,
            bad_lines: self.bad_lines,
            elapsed_us: Us::of(self.elapsed),
            qps: self.answered as f64 / secs,
            packets_sent: self.sent_packets,
            time: self.time_stats(),
            rcodes: &self.rcodes,
            ignored: super::json::counts(ignored, |k| k.name()),
            interrupted: self.interrupted,
            in_flight: self.in_flight,
            differing_lines: self.differing_lines,
            differences: self.differing_lines.map(|_| &self.differences[..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::{Flags, ReplyRepr};

    fn rr(t: &str, code: u16, data: &str) -> RecordRepr {
        RecordRepr {
            name: "b.lab.test.".into(),
            ttl: 300,
            class: "IN".into(),
            rtype: t.into(),
            data: data.into(),
            type_code: code,
        }
    }

    fn result(server: &str, rcode: u16, answer: Vec<RecordRepr>) -> DnsResult {
        DnsResult {
            server: server.parse().unwrap(),
            name: "b.lab.test.".into(),
            qtype: "A".into(),
            qtype_code: 1,
            query_size: 40,
            attempts: 1,
            udp: Some(UdpLeg {
                rtt: Duration::from_micros(80),
                rtt_source: RttSource::Kernel,
                attempts: 1,
                reply: ReplyRepr {
                    id: 1,
                    is_response: true,
                    opcode: 0,
                    flags: Flags::default(),
                    rcode,
                    question: None,
                    question_count: 1,
                    answer,
                    authority: vec![],
                    additional: vec![],
                    edns: None,
                    size: 100,
                    partial: false,
                },
            }),
            tcp: None,
            refused: None,
            timed_by: TimedBy::RawCapture,
        }
    }

    fn b(server: &str) -> DnsResult {
        result(
            server,
            0,
            vec![
                rr("CNAME", 5, "c.lab.test."),
                rr("A", 1, "198.18.0.11"),
                rr("A", 1, "198.18.0.12"),
            ],
        )
    }

    #[test]
    fn normalized_values() {
        assert_eq!(normalize("2001:DB8:0::1"), "2001:db8::1");
        assert_eq!(normalize("Mail.Lab.Test."), "mail.lab.test");
        assert_eq!(normalize("10 MAIL.lab.test."), "10 mail.lab.test");
        assert_eq!(normalize("\"Hello\""), "\"Hello\"");
    }

    #[test]
    fn checks_name_what_failed() {
        let r = b("198.18.0.2:53");
        assert_eq!(r.answer_set(), vec!["198.18.0.11", "198.18.0.12"]);
        let ok = DnsChecks {
            expect: Some(vec!["198.18.0.12".into(), "198.18.0.11".into()]),
            contains: vec!["198.18.0.11".into()],
            rcode: Some(0),
            regex: Some(regex::Regex::new(r"\.12$").unwrap()),
            max_time: Some(Duration::from_millis(1)),
            ad: false,
            signed: false,
        };
        assert!(check(&r, &ok).is_empty());
        let bad = DnsChecks {
            expect: Some(vec!["198.18.0.11".into()]),
            contains: vec!["198.18.0.99".into()],
            rcode: Some(3),
            regex: Some(regex::Regex::new("^x").unwrap()),
            max_time: Some(Duration::from_micros(10)),
            ad: true,
            signed: true,
        };
        let f = check(&r, &bad);
        assert_eq!(
            f,
            vec![
                "--expect-rcode: b.lab.test. A @198.18.0.2:53: status NOERROR instead of NXDOMAIN",
                "--expect: b.lab.test. A @198.18.0.2:53: answer is 198.18.0.11, 198.18.0.12 instead of 198.18.0.11",
                "--expect-contains: b.lab.test. A @198.18.0.2:53: answer 198.18.0.11, 198.18.0.12 lacks 198.18.0.99",
                "--expect-regex: b.lab.test. A @198.18.0.2:53: no answer matches /^x/ (answer: 198.18.0.11, 198.18.0.12)",
                "--max-time: b.lab.test. A @198.18.0.2:53: answered in 80.000us (over 10.000us)",
                "--expect-ad: b.lab.test. A @198.18.0.2:53: the AD bit is not set (the answer was not validated)",
                "--expect-signed: b.lab.test. A @198.18.0.2:53: no RRSIG covers b.lab.test. A, b.lab.test. CNAME",
            ]
        );
    }

    #[test]
    fn no_answer_fails_every_check_and_is_never_a_pass() {
        let mut r = b("198.18.0.2:53");
        r.udp = None;
        r.attempts = 3;
        let checks = DnsChecks {
            expect: Some(vec![]),
            rcode: Some(0),
            ..DnsChecks::default()
        };
        assert_eq!(
            check(&r, &checks),
            vec![
                "--expect-rcode: b.lab.test. A @198.18.0.2:53: no answer",
                "--expect: b.lab.test. A @198.18.0.2:53: no answer",
            ]
        );
        // with no check asked the result still does not pass
        let f = check(&r, &DnsChecks::default());
        assert_eq!(f, vec!["b.lab.test. A @198.18.0.2:53: no answer"]);
        let j = result_json(&r, &f);
        assert_eq!(j["answered"], false);
        assert_ne!(j["checks"], "pass");
        // an answered query with no check asked passes
        assert!(check(&b("198.18.0.2:53"), &DnsChecks::default()).is_empty());
    }

    /// An RRSIG as shown without a presentation format: `\# N HEX`, the
    /// first two bytes the covered type.
    fn rrsig(owner: &str, covers: u16) -> RecordRepr {
        RecordRepr {
            name: owner.into(),
            ttl: 300,
            class: "IN".into(),
            rtype: "RRSIG".into(),
            data: format!("\\# 4 {covers:04X}0D02"),
            type_code: RRSIG,
        }
    }

    #[test]
    fn signed_answers_and_denials() {
        let mut r = b("198.18.0.2:53");
        let signed = DnsChecks {
            signed: true,
            ad: true,
            ..DnsChecks::default()
        };
        let mut reply = r.udp.as_ref().unwrap().reply.clone();
        reply.flags.ad = true;
        // A signed but the CNAME not
        reply.answer.push(rrsig("B.lab.test.", 1));
        r.udp.as_mut().unwrap().reply = reply.clone();
        assert_eq!(
            check(&r, &signed),
            vec![
                "--expect-signed: b.lab.test. A @198.18.0.2:53: no RRSIG covers b.lab.test. CNAME"
            ]
        );
        // an RRSIG of another owner does not count
        reply.answer.push(rrsig("x.lab.test.", 5));
        r.udp.as_mut().unwrap().reply = reply.clone();
        assert_eq!(check(&r, &signed).len(), 1);
        reply.answer.push(rrsig("b.lab.test.", 5));
        r.udp.as_mut().unwrap().reply = reply.clone();
        assert!(check(&r, &signed).is_empty());
        // a denial: signed only with RRSIGs in the authority section
        let mut nx = result("198.18.0.2:53", 3, vec![]);
        let mut d = nx.udp.as_ref().unwrap().reply.clone();
        d.flags.ad = true;
        nx.udp.as_mut().unwrap().reply = d.clone();
        assert_eq!(
            check(&nx, &signed),
            vec![
                "--expect-signed: b.lab.test. A @198.18.0.2:53: empty answer and no RRSIG in the authority section (an unsigned denial)"
            ]
        );
        d.authority.push(rrsig("lab.test.", 6));
        nx.udp.as_mut().unwrap().reply = d;
        assert!(check(&nx, &signed).is_empty());
    }

    /// Single-name results with checks, in both JSON formats, match docs/schema.
    #[test]
    fn json_and_ndjson_match_the_schema() {
        let mut silent = b("[2001:db8::2]:53");
        silent.udp = None;
        let results = [b("198.18.0.2:53"), silent];
        let checks = DnsChecks {
            rcode: Some(0),
            ..DnsChecks::default()
        };
        for format in [DnsFormat::Json, DnsFormat::Ndjson] {
            let mut out = Vec::new();
            write_results(&mut out, format, &results, &checks, &BTreeMap::new()).unwrap();
            let text = String::from_utf8(out).unwrap();
            if format == DnsFormat::Json {
                let doc: Value = serde_json::from_str(&text).unwrap();
                crate::json::assert_schema("dns_document", &doc);
                assert_eq!(doc["results"][0]["checks"], serde_json::json!([]));
                assert_eq!(doc["results"][1]["checks"].as_array().unwrap().len(), 1);
            } else {
                crate::json::assert_schema_lines("dns_line", &text);
            }
        }
    }

    #[test]
    fn differences_between_servers() {
        let same = [b("198.18.0.2:53"), b("[2001:db8::2]:53")];
        assert!(differences(&same).is_empty());
        let other = result("198.18.0.3:53", 0, vec![rr("A", 1, "198.18.0.11")]);
        let nx = result("198.18.0.4:53", 3, vec![]);
        let d = differences(&[b("198.18.0.2:53"), other, nx]);
        assert_eq!(
            d,
            vec![
                "b.lab.test. A @198.18.0.2:53: NOERROR [198.18.0.11, 198.18.0.12]",
                "b.lab.test. A @198.18.0.3:53: NOERROR [198.18.0.11]",
                "b.lab.test. A @198.18.0.4:53: NXDOMAIN []",
            ]
        );
    }
}
