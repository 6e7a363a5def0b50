//! `synscope dns --file`: bulk resolution. Every line is a query to each
//! server (or, with `--spread`, to one server in turn), sent through one raw
//! sender per source address and answered through one capture, checked with
//! the same checks as a single query, and printed as one NDJSON line (or
//! `--json`, `--short`), then a summary.

use super::super::{CmdError, Interrupt, Log};
use super::{EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_NO_ANSWER, EXIT_OK, over_tcp, result_of};
use crate::cli::{BulkSource, DnsFormat, DnsSettings};
use crate::io::dns_link::{RawBulkLink, SOCKETS, SocketLink};
use crate::io::pcap::PcapWriter;
use crate::io::{Clock, Link, RealClock, Route};
use crate::probe::dns::{DnsIgnored, DnsProbeConfig};
use crate::probe::dns_bulk::{
    BulkConfig, BulkEvent, BulkInput, BulkLine as BulkDnsLine, BulkMachine, BulkPath, Finished,
};
use crate::probe::fxhash::FxMap;
use crate::report::dns::{BulkSummary, DifferingLine, DnsResult, TimedBy, answer_view, check};
use crate::wire::dns::{QueryRepr, parse_name, parse_type, rcode_known, rcode_name};
use hickory_proto::rr::{Name, RecordType};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};

/// Bulk only: some input line could not be read or parsed (the others were
/// still queried).
pub use crate::cmd::status::BAD_LINES as EXIT_BAD_LINES;

/// One parsed bulk line.
#[derive(Debug)]
struct BulkLine {
    name: Name,
    qtype: RecordType,
    /// The line's own server, if it names one.
    server: Option<SocketAddr>,
}

/// `name[,type[,server]]`, or dnsperf's and dig's `name [type [server]]`
/// separated by blanks (a name in presentation form holds neither).
fn parse_line(line: &str) -> Result<BulkLine, String> {
    // one iterator either way: no allocation per line on bulk's hot path
    let comma = line.contains(',');
    let mut parts = line
        .split(move |c: char| if comma { c == ',' } else { c.is_whitespace() })
        .map(str::trim)
        .filter(move |f| comma || !f.is_empty());
    let name = parse_name(parts.next().unwrap_or(""))?;
    let qtype = match parts.next() {
        None | Some("") => RecordType::A,
        Some(t) => parse_type(t).ok_or_else(|| format!("unknown type '{t}'"))?,
    };
    let server = match parts.next() {
        None | Some("") => None,
        Some(sv) => {
            let (h, p) =
                crate::cli::split_host_port(sv.trim_start_matches('@')).map_err(|e| e.0)?;
            let ip = h
                .parse()
                .map_err(|_| format!("server '{sv}' is not an IP address"))?;
            Some(SocketAddr::new(ip, p.unwrap_or(53)))
        }
    };
    if parts.next().is_some() {
        return Err(
            "too many fields: expected name[,type[,server]] or name [type [server]]".into(),
        );
    }
    Ok(BulkLine {
        name,
        qtype,
        server,
    })
}

/// A line's text, or why it is not text.
type LineText<'a> = Result<&'a str, String>;

/// Lines as bytes, so that a line that is not UTF-8 is an error of that line
/// alone (with its number), not of the whole input.
struct Lines<R> {
    r: R,
    buf: Vec<u8>,
    no: u64,
}

impl<R: BufRead> Lines<R> {
    /// The next line's number and text (or why it is not text); None at the end.
    fn next_line(&mut self) -> Result<Option<(u64, LineText<'_>)>, CmdError> {
        self.buf.clear();
        let n = self
            .r
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CmdError::Setup(format!("read names: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        self.no += 1;
        let mut b = &self.buf[..];
        while let [rest @ .., b'\n' | b'\r'] = b {
            b = rest;
        }
        Ok(Some((
            self.no,
            std::str::from_utf8(b).map_err(|e| {
                format!(
                    "not UTF-8 (byte 0x{:02x} at column {})",
                    b[e.valid_up_to()],
                    e.valid_up_to() + 1
                )
            }),
        )))
    }
}

/// One NDJSON line of bulk output (fields in this order; `kind: answer`,
/// docs/schema/dns.schema.json).
#[derive(serde::Serialize)]
struct NdjsonLine<'a> {
    kind: &'static str,
    line: u64,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: &'a str,
    server: &'a str,
    status: Option<Cow<'static, str>>,
    answers: Answers<'a>,
    time_us: Option<crate::report::json::Us>,
    rtt_source: Option<&'static str>,
    attempts: u32,
    transport: &'static str,
    truncated: Option<bool>,
    /// Why there is no answer when a server refused (ICMP error).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// The checks that failed (empty: passed, or none given).
    checks: &'a [String],
}

/// A JSON string: written as it is when nothing in it needs an escape (the
/// usual name or record), else by serde_json.
fn json_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    if !needs_escape(s.as_bytes()) {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    } else {
        serde_json::to_writer(out, s).map_err(std::io::Error::from)
    }
}

/// A JSON string that needs no escape by how it was made (a server address,
/// a type or rcode mnemonic, a constant): written as it is, unchecked.
fn json_plain(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    out.write_all(s.as_bytes())?;
    out.write_all(b"\"")
}

/// Does `b` hold a byte that a JSON string escapes (a control byte, `"` or
/// `\\`)? Eight bytes at a time (the bit tricks of "has a byte less than n"
/// and "has a zero byte", exact for n <= 128).
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if below(x, 0x20)
            || below(x ^ (u64::from(b'"') * ONES), 1)
            || below(x ^ (u64::from(b'\\') * ONES), 1)
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A number in decimal, without the formatting machinery.
fn write_u64(out: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.write_all(&b[i..])
}

impl NdjsonLine<'_> {
    /// Writes the line as `serde_json::to_writer` would, byte for byte, at a
    /// fraction of the cost (the keys are constants, most strings need no
    /// escape): the NDJSON writer of bulk mode.
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"{\"kind\":\"answer\",\"line\":")?;
        write_u64(out, self.line)?;
        out.write_all(b",\"name\":")?;
        json_str(out, self.name)?;
        out.write_all(b",\"type\":")?;
        json_plain(out, self.qtype)?;
        out.write_all(b",\"server\":")?;
        json_plain(out, self.server)?;
        out.write_all(b",\"status\":")?;
        match &self.status {
            Some(st) => json_plain(out, st)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"answers\":[")?;
        if let Some(reply) = self.answers.0.reply() {
            let mut first = true;
            for a in &reply.answer {
                if self.answers.0.qtype_code == 255 || a.type_code == self.answers.0.qtype_code {
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    json_str(out, &a.data)?;
                }
            }
        }
        out.write_all(b"],\"time_us\":")?;
        serde_json::to_writer(&mut *out, &self.time_us).map_err(std::io::Error::from)?;
        out.write_all(b",\"rtt_source\":")?;
        match self.rtt_source {
            Some(s) => json_str(out, s)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"attempts\":")?;
        write_u64(out, u64::from(self.attempts))?;
        out.write_all(b",\"transport\":")?;
        json_plain(out, self.transport)?;
        out.write_all(b",\"truncated\":")?;
        out.write_all(match self.truncated {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        })?;
        if let Some(e) = self.error {
            out.write_all(b",\"error\":")?;
            json_str(out, e)?;
        }
        out.write_all(b",\"checks\":[")?;
        for (i, x) in self.checks.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            json_str(out, x)?;
        }
        out.write_all(b"]")?;
        out.write_all(b"}\n")
    }
}

/// The answer set of a result ([`DnsResult::answer_set`]), serialised
/// straight from the reply: no copy of each record's data.
struct Answers<'a>(&'a DnsResult);

impl serde::Serialize for Answers<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let r = self.0;
        let mut seq = ser.serialize_seq(None)?;
        if let Some(reply) = r.reply() {
            for a in &reply.answer {
                if r.qtype_code == 255 || a.type_code == r.qtype_code {
                    seq.serialize_element(&a.data)?;
                }
            }
        }
        seq.end()
    }
}

/// The `--json` document of a bulk run.
#[derive(serde::Serialize)]
struct BulkDocument<'a, S: serde::Serialize> {
    kind: &'static str,
    command: &'static str,
    results: &'a [serde_json::Value],
    errors: &'a [serde_json::Value],
    summary: &'a S,
}

/// A bad input line, as printed (`kind: error`).
#[derive(serde::Serialize)]
struct BadLine<'a> {
    line: u64,
    input: &'a str,
    error: &'a str,
}

/// Lines the summary lists of those whose servers' answers differed.
const DIFFERENCES_LISTED: usize = 100;

/// Each line to each of several servers: a line's answers side by side,
/// compared once its last one is in.
#[derive(Default)]
struct Comparison {
    /// Per line with queries out: results still to come, and each server's
    /// answer ([`answer_view`]) so far.
    open: FxMap<u64, (usize, Vec<(SocketAddr, String)>)>,
    differing: u64,
    listed: Vec<DifferingLine>,
}

impl Comparison {
    /// One of the `of` results of line `line`.
    fn add(&mut self, line: u64, of: usize, r: &DnsResult) {
        if of < 2 {
            return;
        }
        let (left, views) = self
            .open
            .entry(line)
            .or_insert_with(|| (of, Vec::with_capacity(of)));
        views.push((r.server, answer_view(r)));
        *left -= 1;
        if *left > 0 {
            return;
        }
        let Some((_, views)) = self.open.remove(&line) else {
            return;
        };
        if views.iter().all(|(_, v)| *v == views[0].1) {
            return;
        }
        self.differing += 1;
        if self.listed.len() < DIFFERENCES_LISTED {
            self.listed.push(DifferingLine {
                line,
                name: r.name.clone(),
                qtype: r.qtype.clone(),
                answers: views
                    .into_iter()
                    .map(|(sv, v)| (sv.to_string(), v))
                    .collect(),
            });
        }
    }
}

/// Where results go: the output in the chosen format, the summary's figures.
struct Report<'a, W: Write> {
    out: std::io::BufWriter<W>,
    s: &'a DnsSettings,
    sum: BulkSummary,
    several_servers: bool,
    /// `--json`: the document is written at the end.
    json_results: Vec<serde_json::Value>,
    json_errors: Vec<serde_json::Value>,
    first_failure: Option<String>,
    /// The NDJSON line being written (reused).
    line: Vec<u8>,
    /// Each server as printed (formatted once, not per line).
    server_text: Vec<(SocketAddr, String)>,
    /// Each line to each of several servers: their answers compared.
    compare: Option<Comparison>,
}

impl<W: Write> Report<'_, W> {
    fn bad_line(&mut self, line: u64, input: &str, error: &str) -> Result<(), CmdError> {
        self.sum.bad_lines += 1;
        let b = BadLine { line, input, error };
        match self.s.format {
            DnsFormat::Json => self.json_errors.push(
                serde_json::to_value(crate::report::json::kinded("error", &b)).unwrap_or_default(),
            ),
            DnsFormat::Ndjson => {
                serde_json::to_writer(&mut self.out, &crate::report::json::kinded("error", &b))
                    .map_err(std::io::Error::from)?;
                self.out.write_all(b"\n")?;
            }
            // results only on stdout: the error goes to stderr
            DnsFormat::Short | DnsFormat::Text => {
                eprintln!("synscope: line {line}: {error}");
            }
        }
        Ok(())
    }

    /// One finished query; `unsent` if it was not sent because its server
    /// had refused an earlier one.
    fn result(
        &mut self,
        line: u64,
        of: usize,
        r: &DnsResult,
        unsent: bool,
    ) -> Result<(), CmdError> {
        if let Some(c) = &mut self.compare {
            c.add(line, of, r);
        }
        let refused = r.refused.map(|f| {
            if unsent {
                format!("{f} (refused before: not sent)")
            } else {
                f.to_string()
            }
        });
        let refused = refused.as_deref();
        let sum = &mut self.sum;
        match (r.reply(), r.time()) {
            (Some(rep), Some(t)) => {
                sum.answered += 1;
                match rcode_known(rep.rcode).and_then(|k| sum.rcodes.get_mut(k)) {
                    Some(n) => *n += 1,
                    None => *sum.rcodes.entry(rcode_name(rep.rcode)).or_default() += 1,
                }
                sum.rtts_decius
                    .push((t.as_nanos() / 100).min(u32::MAX as u128) as u32);
            }
            _ => match r.refused {
                Some(f) => *sum.refused.entry((f.error.name(), f.from)).or_default() += 1,
                None => sum.timeouts += 1,
            },
        }
        let with_checks = !self.s.checks.is_empty();
        // a check never passes on no answer: each one asked fails then
        let failures = if with_checks {
            check(r, &self.s.checks)
        } else {
            Vec::new()
        };
        for f in &failures {
            let flag = f.split(':').next().unwrap_or(f);
            *sum.check_failures.entry(flag.to_string()).or_default() += 1;
        }
        if !failures.is_empty() {
            sum.failed_queries += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(format!("line {line}: {}", failures[0]));
            }
        }
        if self.s.format == DnsFormat::Short {
            if let Some(rep) = r.reply() {
                for a in &rep.answer {
                    if self.several_servers {
                        writeln!(self.out, "@{} {} {}", r.server, r.name, a.data)?;
                    } else {
                        writeln!(self.out, "{} {}", r.name, a.data)?;
                    }
                }
            }
            return Ok(());
        }
        // a plain struct, serialised straight to the output: no JSON tree per name
        let known = self.server_text.iter().position(|(a, _)| *a == r.server);
        let known = known.or_else(|| {
            // the @SERVERs and a few per-line ones; the others formatted each time
            (self.server_text.len() < 16).then(|| {
                self.server_text.push((r.server, r.server.to_string()));
                self.server_text.len() - 1
            })
        });
        let other;
        let server = match known {
            Some(i) => &self.server_text[i].1,
            None => {
                other = r.server.to_string();
                &other
            }
        };
        let l = NdjsonLine {
            kind: "answer",
            line,
            name: &r.name,
            qtype: &r.qtype,
            server,
            status: r.reply().map(|x| match rcode_known(x.rcode) {
                Some(k) => Cow::Borrowed(k),
                None => Cow::Owned(rcode_name(x.rcode)),
            }),
            answers: Answers(r),
            time_us: r.time().map(crate::report::json::Us::of),
            rtt_source: r
                .udp
                .as_ref()
                .map(|u| crate::report::json::rtt_source(u.rtt_source)),
            attempts: r.attempts,
            transport: r.transport(),
            truncated: r.udp.as_ref().map(|u| u.reply.flags.tc),
            error: refused,
            checks: &failures,
        };
        if self.s.format == DnsFormat::Json {
            self.json_results
                .push(serde_json::to_value(&l).map_err(std::io::Error::from)?);
        } else {
            // built whole in a buffer of its own, then copied out once
            self.line.clear();
            l.write(&mut self.line)?;
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    /// The summary (last NDJSON line, or in the JSON document), the line on
    /// stderr, and the exit status.
    fn finish(
        mut self,
        ignored: &BTreeMap<crate::probe::dns::DnsIgnored, u64>,
    ) -> Result<u8, CmdError> {
        if let Some(c) = self.compare.take() {
            self.sum.differing_lines = Some(c.differing);
            self.sum.differences = c.listed;
        }
        let sum = &self.sum;
        let summary = sum.out(ignored);
        let summary = crate::report::json::kinded("summary", &summary);
        match self.s.format {
            DnsFormat::Json => {
                let doc = BulkDocument {
                    kind: "report",
                    command: "dns",
                    results: &self.json_results,
                    errors: &self.json_errors,
                    summary: &summary,
                };
                writeln!(
                    self.out,
                    "{}",
                    serde_json::to_string_pretty(&doc).map_err(std::io::Error::from)?
                )?;
            }
            DnsFormat::Ndjson => writeln!(
                self.out,
                "{}",
                serde_json::to_string(&summary).map_err(std::io::Error::from)?
            )?,
            DnsFormat::Short | DnsFormat::Text => {}
        }
        self.out.flush()?;
        let checks = if self.s.checks.is_empty() {
            String::new()
        } else {
            format!(
                ", {} queries failed a check {}",
                sum.failed_queries,
                serde_json::to_string(&summary.inner.check_failures).unwrap_or_default()
            )
        };
        let refused = if sum.refused.is_empty() {
            String::new()
        } else {
            let r: Vec<String> = summary
                .inner
                .refused
                .iter()
                .map(|r| format!("{} {} from {}", r.count, r.icmp, r.from))
                .collect();
            format!(", refused: {}", r.join(", "))
        };
        let time = summary
            .inner
            .time
            .clone()
            .unwrap_or(crate::report::RttStats {
                count: 0,
                min_us: 0.0,
                avg_us: 0.0,
                max_us: 0.0,
                mdev_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
            });
        let h = crate::report::human_us;
        note!(
            "synscope: {}, {}, {} answered, {} no response{refused}, {} in {}: {:.0} q/s; latency p50 {}, p90 {}, p99 {} ({} timestamps, timed by {}); rcodes {}{checks}",
            crate::report::plural(sum.names, "name"),
            crate::report::plural(sum.queries, "query"),
            sum.answered,
            sum.timeouts,
            crate::report::plural(sum.bad_lines, "bad line"),
            crate::report::human(sum.elapsed),
            summary.inner.qps,
            h(time.p50_us),
            h(time.p90_us),
            h(time.p99_us),
            sum.timing,
            sum.timed_by.name(),
            serde_json::to_string(&sum.rcodes).unwrap_or_default()
        );
        if let Some(f) = &self.first_failure {
            eprintln!("synscope: check failed: {f}");
        }
        if let (Some(n @ 1..), Some(d)) = (sum.differing_lines, sum.differences.first()) {
            let answers: Vec<String> = d
                .answers
                .iter()
                .map(|(sv, v)| format!("@{sv} {v}"))
                .collect();
            note!(
                "synscope: {n} lines got different answers from the servers (the summary lists the first {}); line {}: {} {}: {}",
                sum.differences.len(),
                d.line,
                d.name,
                d.qtype,
                answers.join(" / ")
            );
        }
        if sum.interrupted {
            eprintln!(
                "synscope: interrupted: {} queries were in flight and are not counted as answered",
                sum.in_flight
            );
        }
        Ok(if sum.interrupted {
            EXIT_INTERRUPTED
        } else if sum.bad_lines > 0 {
            EXIT_BAD_LINES
        } else if sum.timeouts > 0 || !sum.refused.is_empty() {
            EXIT_NO_ANSWER
        } else if sum.failed_queries > 0 {
            EXIT_CHECK_FAILED
        } else {
            EXIT_OK
        })
    }
}

/// The lines of the input as the bulk machine takes them: parsed, each
/// per-line server checked against our source addresses (`route` names the
/// path that reaches an address, None: none does), bad lines as such. A
/// read error ends the feed; it is kept for the caller.
pub(crate) struct Feed<R, F> {
    lines: Lines<R>,
    route: F,
    /// Which path reaches an address (None: none of ours does).
    path_of: FxMap<IpAddr, Option<usize>>,
    failed: Option<CmdError>,
}

impl<R: BufRead, F: FnMut(IpAddr) -> Option<usize>> Iterator for Feed<R, F> {
    type Item = BulkInput;

    fn next(&mut self) -> Option<BulkInput> {
        loop {
            let (line, text) = match self.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => {
                    self.failed = Some(e);
                    return None;
                }
            };
            let bad = |input: &str, error: String| BulkInput::Bad {
                line,
                input: input.to_string(),
                error,
            };
            let t = match text {
                Ok(t) => t.trim(),
                Err(e) => {
                    let input = String::from_utf8_lossy(&self.lines.buf);
                    return Some(bad(input.trim_end(), e));
                }
            };
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let l = match parse_line(t) {
                Ok(l) => l,
                Err(e) => return Some(bad(t, e)),
            };
            let server = match l.server {
                None => None,
                Some(sv) => {
                    let route = &mut self.route;
                    match *self
                        .path_of
                        .entry(sv.ip())
                        .or_insert_with(|| route(sv.ip()))
                    {
                        Some(path) => Some((sv, path)),
                        None => {
                            return Some(bad(
                                t,
                                format!(
                                    "server {sv} is not reached from a source address of the @SERVERs (bulk mode sends from those only)"
                                ),
                            ));
                        }
                    }
                }
            };
            return Some(BulkInput::Line(BulkDnsLine {
                line,
                name: l.name,
                qtype: l.qtype,
                server,
            }));
        }
    }
}

impl<R: BufRead, F: FnMut(IpAddr) -> Option<usize>> Feed<R, F> {
    /// The lines of `r`; `route` names the path that reaches a per-line server.
    pub(crate) fn new(r: R, route: F) -> Feed<R, F> {
        Feed {
            lines: Lines {
                r,
                buf: Vec::with_capacity(256),
                no: 0,
            },
            route,
            path_of: FxMap::default(),
            failed: None,
        }
    }
}

/// TCP exchanges after truncated answers at once, at most (a server limits
/// its TCP connections: NSD's tcp-count, a listen backlog).
const TCP_AT_ONCE: usize = 4;

/// The TCP exchanges after truncated answers: run beside the loop, a few at
/// a time, each result written when its exchange ends.
struct TcpFallbacks {
    running: tokio::task::JoinSet<(u64, usize, DnsResult)>,
    waiting: std::collections::VecDeque<(u64, usize, DnsResult, QueryRepr)>,
    timeout: std::time::Duration,
}

impl TcpFallbacks {
    fn start(&mut self) {
        while self.running.len() < TCP_AT_ONCE {
            let Some((line, of, mut r, q)) = self.waiting.pop_front() else {
                return;
            };
            let timeout = self.timeout;
            self.running.spawn(async move {
                r.tcp = Some(over_tcp(r.server, &q, timeout).await);
                (line, of, r)
            });
        }
    }

    /// Writes the results of the exchanges that ended, and starts waiting ones.
    fn written<W: Write>(&mut self, report: &mut Report<'_, W>) -> Result<(), CmdError> {
        if self.running.is_empty() {
            return Ok(());
        }
        while let Some(done) = self.running.try_join_next() {
            let (line, of, r) = done.map_err(|e| CmdError::Setup(format!("TCP task: {e}")))?;
            report.result(line, of, &r, false)?;
        }
        self.start();
        Ok(())
    }

    /// Runs every exchange left to its end, writing each result.
    async fn finish<W: Write>(&mut self, report: &mut Report<'_, W>) -> Result<(), CmdError> {
        self.start();
        while let Some(done) = self.running.join_next().await {
            let (line, of, r) = done.map_err(|e| CmdError::Setup(format!("TCP task: {e}")))?;
            report.result(line, of, &r, false)?;
            self.start();
        }
        Ok(())
    }
}

/// Runs a bulk machine over `link` to its end (or Ctrl-C), writing each
/// result to `report` as it comes (a truncated answer's TCP exchange runs
/// beside the loop, its result written when it ends). The command and the
/// simulation tests run this.
async fn play<I, L, C, W>(
    machine: &mut BulkMachine<I>,
    link: &mut L,
    clock: &C,
    interrupt: &mut Interrupt<'_>,
    report: &mut Report<'_, W>,
    timed_by: TimedBy,
    progress: &mut super::super::progress::Bar,
) -> Result<(), CmdError>
where
    I: Iterator<Item = BulkInput>,
    L: Link,
    C: Clock,
    W: Write,
{
    let mut tcp = TcpFallbacks {
        running: tokio::task::JoinSet::new(),
        waiting: Default::default(),
        timeout: report.s.timeout,
    };
    // lines done, for the bar (its total is the file's lines): a line that
    // went to n servers is done by its n results, a share each
    let mut lines_done: f64 = 0.0;
    let mut on_event = |e: BulkEvent| -> Result<(), CmdError> {
        tcp.written(report)?;
        match e {
            BulkEvent::Bad { line, input, error } => {
                lines_done += 1.0;
                report.bad_line(line, &input, &error)?;
            }
            BulkEvent::Done(f) => {
                let Finished {
                    outcome,
                    unsent,
                    of,
                    tcp: tcp_query,
                    ..
                } = *f;
                let line = outcome.tag;
                let qtype = outcome.question.qtype;
                let mut r = result_of(outcome, qtype);
                r.timed_by = timed_by;
                lines_done += 1.0 / of.max(1) as f64;
                match tcp_query {
                    Some(q) => {
                        report.sum.tcp += 1;
                        tcp.waiting.push_back((line, of, r, q));
                        tcp.start();
                    }
                    None => report.result(line, of, &r, unsent)?,
                }
            }
        }
        let sum = &report.sum;
        progress.update(lines_done.round() as u64, || {
            format!(
                "{} answered, {} timeouts, {:.0} answers/s",
                sum.answered,
                sum.timeouts,
                sum.answered as f64 / clock.elapsed().as_secs_f64().max(1e-9)
            )
        });
        Ok(())
    };
    let ended = crate::drive::drive(machine, link, clock, &mut on_event, interrupt).await?;
    if !ended.interrupted {
        tcp.finish(report).await?;
    }
    report.sum.names = machine.counts.names;
    report.sum.queries = machine.counts.queries;
    report.sum.sent_packets = machine.counts.packets;
    if ended.interrupted {
        // what is outstanding is neither answered nor timed out
        report.sum.interrupted = true;
        report.sum.in_flight = machine.outstanding() as u64;
    }
    Ok(())
}

/// The machine's settings from the command's.
pub(crate) fn bulk_config(
    s: &DnsSettings,
    paths: Vec<BulkPath>,
    servers: Vec<(SocketAddr, usize)>,
) -> BulkConfig {
    BulkConfig {
        paths,
        servers,
        spread: s.spread,
        concurrency: s.concurrency as usize,
        rate: s.rate.map(u64::from),
        recursion_desired: s.recursion_desired,
        edns: s.edns.clone(),
        tcp_fallback: s.tcp_fallback,
    }
}

/// A path's exchange settings.
pub(crate) fn probe_config(src: IpAddr, s: &DnsSettings) -> DnsProbeConfig {
    DnsProbeConfig {
        src,
        ttl: 64,
        timeout: s.timeout,
        retries: s.retries,
        // the answer set is all bulk prints and checks, except that
        // --expect-signed looks at every RRset and at the authority
        // section (a signed denial)
        answers_only: !s.checks.signed,
    }
}

/// The report of a run of `s` writing to `out`.
fn report_to<'a, W: Write>(
    s: &'a DnsSettings,
    out: W,
    timing: &'static str,
    timed_by: TimedBy,
) -> Report<'a, W> {
    Report {
        out: std::io::BufWriter::with_capacity(1 << 16, out),
        s,
        sum: BulkSummary {
            servers: s.servers.clone(),
            timing,
            timed_by,
            ..BulkSummary::default()
        },
        several_servers: s.servers.len() > 1,
        json_results: Vec::new(),
        json_errors: Vec::new(),
        first_failure: None,
        line: Vec::with_capacity(512),
        server_text: Vec::new(),
        compare: (s.servers.len() > 1 && !s.spread).then(Comparison::default),
    }
}

/// The ignored packets of every path, summed.
fn ignored_of<I>(m: &BulkMachine<I>) -> BTreeMap<DnsIgnored, u64> {
    let mut ignored = BTreeMap::new();
    for ex in m.exchanges() {
        super::add_ignored(&mut ignored, ex.ignored());
    }
    ignored
}

pub(super) async fn bulk(
    s: &DnsSettings,
    src: &BulkSource,
    out: &mut impl Write,
    log: Log,
) -> Result<u8, CmdError> {
    // before the slow set-up (reading the file, sockets, the ring): the first
    // SIGINT/SIGTERM from then on is the drive loop's interrupt, so the
    // summary so far is printed instead of the process dying unseen; a
    // second ends it at once
    super::super::catch_signals();
    let reader: Box<dyn BufRead> = match src {
        BulkSource::Stdin => Box::new(std::io::BufReader::new(std::io::stdin())),
        BulkSource::File(p) => Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(p)
                .map_err(|e| CmdError::Setup(format!("open {}: {e}", p.display())))?,
        )),
    };
    // one path per source address of the @SERVERs (e.g. one IPv4, one IPv6)
    let mut srcs: Vec<IpAddr> = Vec::new();
    let mut servers = Vec::with_capacity(s.servers.len());
    for server in &s.servers {
        let route = Route::lookup(server.ip(), None)?;
        let i = match srcs.iter().position(|a| *a == route.src) {
            Some(i) => i,
            None => {
                srcs.push(route.src);
                srcs.len() - 1
            }
        };
        servers.push((*server, i));
    }
    let feed = Feed::new(reader, {
        let srcs = srcs.clone();
        move |ip: IpAddr| {
            let src = Route::lookup(ip, None).ok()?.src;
            srcs.iter().position(|a| *a == src)
        }
    });
    // raw sockets and a capture with CAP_NET_RAW, else (or with --no-raw)
    // ordinary UDP sockets timed by their kernel stamps
    let raw = !s.no_raw && crate::io::privileges::has_net_raw();
    if !raw && !s.no_raw {
        log.debug(|| "no CAP_NET_RAW: bulk timed with socket timestamps".into());
    }
    if !raw && s.pcap.is_some() {
        return Err(CmdError::Setup(
            "--pcap needs raw sockets and a capture (CAP_NET_RAW)".into(),
        ));
    }
    let mut pcap = s.pcap.as_deref().map(PcapWriter::create).transpose()?;
    if raw {
        let mut link = RawBulkLink::new(pcap.take());
        let mut paths = Vec::new();
        let mut fell_back = None;
        for &src in &srcs {
            match link.add_path(src, probe_config(src, s).answers_only, |m| log.debug(|| m)) {
                Ok(ports) => paths.push(BulkPath {
                    config: probe_config(src, s),
                    ports,
                }),
                // no raw socket after all (e.g. a seccomp or LSM rule)
                Err(e) if e.is_permission() && paths.is_empty() && s.pcap.is_none() => {
                    log.debug(|| format!("{e}: bulk timed with socket timestamps"));
                    fell_back = Some(e);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if fell_back.is_none() {
            // bulk opens no socket after this (TCP fallback needs no privilege);
            // then the receiver threads start, with no capability either
            crate::io::privileges::drop_all()?;
            link.start();
            let timing = if link.kernel_timed() {
                "kernel"
            } else {
                "user-space send, kernel receive"
            };
            let cfg = bulk_config(s, paths, servers);
            let how = (timing, TimedBy::RawCapture);
            let r = run(
                s,
                cfg,
                feed,
                &mut link,
                &RealClock::new(),
                &mut Interrupt::signals(),
                out,
                how,
            )
            .await;
            link.finish()?;
            return r;
        }
    }
    let mut link = SocketLink::open(&srcs, SOCKETS)?;
    log.debug(|| format!("bulk: {SOCKETS} UDP sockets per source address, socket timestamps"));
    crate::io::privileges::drop_all()?;
    let paths = srcs
        .iter()
        .map(|&src| BulkPath {
            config: probe_config(src, s),
            ports: link.ports(src),
        })
        .collect();
    let cfg = bulk_config(s, paths, servers);
    let how = ("kernel", TimedBy::SocketTimestamps);
    let clock = RealClock::new();
    let mut interrupt = Interrupt::signals();
    run(s, cfg, feed, &mut link, &clock, &mut interrupt, out, how).await
}

/// The run itself, over either link (or the simulated one of the tests),
/// on `clock` until done or `interrupt`; `how` says how it is timed
/// (the summary's `timing`, and `timed_by`). Returns the exit status.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, F, L, C>(
    s: &DnsSettings,
    cfg: BulkConfig,
    mut feed: Feed<R, F>,
    link: &mut L,
    clock: &C,
    interrupt: &mut Interrupt<'_>,
    out: &mut impl Write,
    (timing, timed_by): (&'static str, TimedBy),
) -> Result<u8, CmdError>
where
    R: BufRead,
    F: FnMut(IpAddr) -> Option<usize>,
    L: Link,
    C: Clock,
{
    let mut report = report_to(s, out, timing, timed_by);
    // the bar's total: the lines of a file (not of stdin), counted only when drawn
    let total = match (&s.bulk, s.progress) {
        (Some(BulkSource::File(path)), true) => super::super::progress::count_lines(path),
        _ => None,
    };
    let mut progress = super::super::progress::Bar::new(s.progress, total, "names");
    let mut machine = BulkMachine::new(cfg, &mut feed);
    play(
        &mut machine,
        link,
        clock,
        interrupt,
        &mut report,
        timed_by,
        &mut progress,
    )
    .await?;
    report.sum.elapsed = clock.elapsed();
    progress.finish();
    let ignored = ignored_of(&machine);
    drop(machine);
    if let Some(e) = feed.failed.take() {
        return Err(e);
    }
    report.finish(&ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dns::UdpLeg;
    use crate::wire::dns::{Flags, RecordRepr, ReplyRepr};
    use std::time::Duration;

    #[test]
    fn lines_take_commas_or_blanks_between_their_fields() {
        for line in [
            "mail.lab.test,MX,198.18.0.2",
            "mail.lab.test MX 198.18.0.2",
            "mail.lab.test\tMX  @198.18.0.2",
            " mail.lab.test , MX , 198.18.0.2:53 ",
        ] {
            let l = parse_line(line).unwrap();
            assert_eq!(l.name.to_string(), "mail.lab.test.", "{line}");
            assert_eq!(l.qtype, RecordType::MX, "{line}");
            assert_eq!(l.server, Some("198.18.0.2:53".parse().unwrap()), "{line}");
        }
        // an empty field keeps its place between commas
        let l = parse_line("www.lab.test,,198.18.0.3").unwrap();
        assert_eq!((l.qtype, l.server.unwrap().port()), (RecordType::A, 53));
        assert_eq!(parse_line("www.lab.test").unwrap().qtype, RecordType::A);
        assert!(
            parse_line("www.lab.test A 198.18.0.2 x")
                .unwrap_err()
                .contains("too many fields")
        );
        assert!(
            parse_line("www.lab.test XX")
                .unwrap_err()
                .contains("unknown type")
        );
    }

    fn record(rtype: &str, type_code: u16, data: &str) -> RecordRepr {
        RecordRepr {
            name: "a.lab.test.".into(),
            ttl: 300,
            class: "IN".into(),
            rtype: rtype.into(),
            data: data.into(),
            type_code,
        }
    }

    fn result(answer: Option<Vec<RecordRepr>>, qtype_code: u16) -> DnsResult {
        DnsResult {
            server: "198.18.0.2:53".parse().unwrap(),
            name: "a.lab.test.".into(),
            qtype: "TXT".into(),
            qtype_code,
            query_size: 40,
            udp: answer.map(|answer| UdpLeg {
                rtt: Duration::from_nanos(123_456),
                rtt_source: crate::probe::syn::RttSource::Kernel,
                attempts: 2,
                reply: ReplyRepr {
                    id: 7,
                    is_response: true,
                    opcode: 0,
                    flags: Flags::default(),
                    rcode: 3,
                    question: None,
                    question_count: 1,
                    answer,
                    authority: Vec::new(),
                    additional: Vec::new(),
                    edns: None,
                    size: 100,
                    partial: false,
                },
            }),
            attempts: 2,
            tcp: None,
            refused: None,
            timed_by: TimedBy::RawCapture,
        }
    }

    #[test]
    fn needs_escape_is_the_byte_by_byte_test() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // bytes near the edges (0x1f, 0x20, '"', '\\', 0x7f, 0x80, 0xff) and plain ones
        let pick = [
            0x1f, 0x20, 0x21, b'"', b'#', b'\\', b'[', b']', 0x7f, 0x80, 0xff, 0x00, b'a',
        ];
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        pick[(r >> 8) as usize % pick.len()]
                    } else {
                        b'a' + (r >> 8) as u8 % 26
                    }
                })
                .collect();
            assert_eq!(needs_escape(&b), naive(&b), "{b:02x?}");
        }
    }

    #[test]
    fn ndjson_writer_writes_what_serde_json_writes() {
        let answers = vec![
            record("TXT", 16, "\"hello \\\"quoted\\\" synlab\""),
            record("RRSIG", 46, "TXT 13 3 300 …"),
            record("TXT", 16, "tab\there\u{1}"),
        ];
        let failed = ["--expect: got \"x\"".to_string(), "--expect-ad".into()];
        for r in [
            result(Some(answers), 16),
            result(Some(Vec::new()), 255),
            result(None, 16),
        ] {
            for checks in [&[][..], &failed[..]] {
                for error in [None, Some("port-unreachable from 198.18.0.2")] {
                    let l = NdjsonLine {
                        kind: "answer",
                        line: 18_446_744_073_709_551_615,
                        name: &r.name,
                        qtype: &r.qtype,
                        server: "[2001:db8::2]:53",
                        status: r.reply().map(|_| Cow::Borrowed("NXDOMAIN")),
                        answers: Answers(&r),
                        time_us: r.time().map(crate::report::json::Us::of),
                        rtt_source: r
                            .udp
                            .as_ref()
                            .map(|u| crate::report::json::rtt_source(u.rtt_source)),
                        attempts: r.attempts,
                        transport: r.transport(),
                        truncated: r.udp.as_ref().map(|u| u.reply.flags.tc),
                        error,
                        checks,
                    };
                    let mut ours = Vec::new();
                    l.write(&mut ours).unwrap();
                    let mut theirs = serde_json::to_vec(&l).unwrap();
                    theirs.push(b'\n');
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        String::from_utf8(theirs).unwrap()
                    );
                }
            }
        }
        let mut b = Vec::new();
        for n in [0, 7, 10, 65_535] {
            write_u64(&mut b, n).unwrap();
            b.push(b' ');
        }
        assert_eq!(b, b"0 7 10 65535 ");
    }
}
