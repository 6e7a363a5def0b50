//! `synscope trace` output: a textbook ladder diagram, a stage table, per-stage
//! statistics over `--count` traces, and one JSON document.

use super::json::{self, BigU64, Kinded, Us, VerificationOut, kinded, snake};
use super::{RttStats, human, human_us, plural};
use crate::event::Timestamp;
use crate::probe::fingerprint::{Fingerprint, VerificationJson};
use crate::probe::tcp_client::{
    CloseMode, Dir, IcmpEnd, Note, SegmentEvent, Side, StampSource, StateEntry, TcpClient,
    TcpState, Teardown,
};
use crate::wire::TcpFlags;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// What Linux holds TIME_WAIT for (TCP_TIMEWAIT_LEN, "2·MSL").
pub const LINUX_TIME_WAIT: Duration = Duration::from_secs(60);

/// Who was traced and how.
#[derive(Debug, Clone, Serialize)]
pub struct TraceTarget {
    /// The target as the user wrote it.
    pub host: String,
    /// The address and port traced.
    pub address: SocketAddr,
    /// The interface the segments leave by.
    pub interface: String,
    /// `fin` or `rst`.
    #[serde(serialize_with = "close_name")]
    pub close: CloseMode,
    /// `--half-open`: only the SYN is sent, the SYN-ACKs are watched.
    pub half_open: bool,
    /// Bytes of the request sent after the handshake (0: none).
    pub request_bytes: usize,
    /// How long TIME_WAIT is waited out, ms (`time_wait_us` in JSON).
    #[serde(rename = "time_wait_us", serialize_with = "ms_as_us")]
    pub time_wait_ms: f64,
}

fn close_name<S: serde::Serializer>(c: &CloseMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match c {
        CloseMode::Fin => "fin",
        CloseMode::Rst => "rst",
    })
}

fn ms_as_us<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    json::us3(&(ms * 1e3), s)
}

fn us3_list<S: serde::Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| Us(*x)))
}

fn snake_str<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&snake(v))
}

/// One timed stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// An identifier, the key in JSON and the exporter's `stage` label:
    /// `syn_synack`, `synack_ack`, `request_first_byte`, `ack_first_byte`,
    /// `fin_ack`, `fin_peer_fin`, `peer_fin_fin`, `time_wait`, `total`.
    pub id: &'static str,
    /// As the text output names it: `SYN → SYN-ACK`.
    pub name: &'static str,
    /// The stage's duration, ns.
    pub ns: u64,
}

/// What a half-open trace saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HalfOpenReport {
    /// Each SYN-ACK, as microseconds after our SYN.
    #[serde(serialize_with = "us3_list")]
    pub synack_at_us: Vec<f64>,
    /// Gaps between successive SYN-ACKs, in microseconds.
    #[serde(serialize_with = "us3_list")]
    pub intervals_us: Vec<f64>,
    /// SYN-ACKs the server sent after the first.
    pub retransmissions: usize,
    /// How long we watched after our SYN, in microseconds.
    #[serde(serialize_with = "json::us3")]
    pub watched_us: f64,
    /// `syn-cookies`, `half-open-state` or `unknown` (snake_case in JSON).
    #[serde(serialize_with = "snake_str")]
    pub server_kept: &'static str,
    /// One sentence on what the SYN-ACK timing says about the server.
    pub explanation: String,
}

/// One finished trace.
#[derive(Debug, Clone)]
pub struct TraceRun {
    /// The trace's number in the run, from 0.
    pub index: u64,
    /// Our address and port.
    pub source: SocketAddr,
    /// Our initial sequence number.
    pub isn: u32,
    /// The server's initial sequence number; None without a SYN-ACK.
    pub peer_isn: Option<u32>,
    /// How the connection ended.
    pub teardown: Teardown,
    /// `teardown` as text output words it.
    pub teardown_text: &'static str,
    /// The handshake, the request (acknowledged) and the teardown asked for
    /// all happened (half-open: a SYN-ACK came).
    pub succeeded: bool,
    /// What was asked and did not happen, one clause each (empty on success).
    pub not_done: Vec<String>,
    /// One line: `complete: ...` (what happened) or `INCOMPLETE: ...`.
    pub result: String,
    /// The ICMP error that ended the trace, if one did.
    pub icmp: Option<IcmpEnd>,
    /// The first segment's time, ns since the Unix epoch.
    pub started_ns: u64,
    /// Payload bytes received from the server.
    pub received_bytes: u64,
    /// The timed stages, in the order they happened.
    pub stages: Vec<Stage>,
    /// Every segment sent and received, in time order.
    pub segments: Vec<SegmentEvent>,
    /// The TCP states each side entered, in time order.
    pub states: Vec<StateEntry>,
    /// `--half-open` only: what the SYN-ACKs showed.
    pub half_open: Option<HalfOpenReport>,
    /// Segments the kernel stamped / all we sent.
    pub kernel_stamped: String,
    /// The SYN-ACK's fingerprint compared with the server's later segments
    /// (`result`: `verified`, `syn-proxy` with its `evidence`, or
    /// `unverified`); absent without a SYN-ACK or in half-open mode.
    pub verification: Option<VerificationJson>,
}

fn stage(id: &'static str, name: &'static str, from: Timestamp, to: Timestamp) -> Stage {
    let d = to.saturating_sub(from);
    Stage {
        id,
        name,
        ns: d.as_nanos() as u64,
    }
}

fn is(e: &SegmentEvent, f: TcpFlags) -> bool {
    e.flags.contains(f)
}

fn accepted(e: &SegmentEvent) -> bool {
    !matches!(e.note, Some(Note::Ignored) | Some(Note::Duplicate))
}

/// The stage times of one trace, from its segment log and state entries.
pub fn stages(events: &[SegmentEvent], states: &[StateEntry]) -> Vec<Stage> {
    let mut out = Vec::new();
    let syn_ack = TcpFlags::SYN.union(TcpFlags::ACK);
    let synack = events
        .iter()
        .position(|e| e.dir == Dir::Received && is(e, syn_ack) && e.note != Some(Note::Ignored));
    let first_syn = events
        .iter()
        .find(|e| e.dir == Dir::Sent && is(e, TcpFlags::SYN));
    if let Some(i) = synack {
        // the last SYN before the SYN-ACK (after a retransmission, Karn's ambiguity)
        if let Some(syn) = events[..i]
            .iter()
            .rev()
            .find(|e| e.dir == Dir::Sent && is(e, TcpFlags::SYN))
        {
            out.push(stage("syn_synack", "SYN → SYN-ACK", syn.at, events[i].at));
        }
        let ack = events[i + 1..].iter().find(|e| {
            e.dir == Dir::Sent && e.flags == TcpFlags::ACK && e.len == 0 && e.note.is_none()
        });
        if let Some(ack) = ack {
            out.push(stage(
                "synack_ack",
                "SYN-ACK → ACK sent",
                events[i].at,
                ack.at,
            ));
            let request = events
                .iter()
                .find(|e| e.dir == Dir::Sent && e.len > 0 && e.note.is_none());
            let first_byte = events
                .iter()
                .find(|e| e.dir == Dir::Received && e.len > 0 && accepted(e));
            match (request, first_byte) {
                (Some(r), Some(b)) if b.at >= r.at => out.push(stage(
                    "request_first_byte",
                    "request → first byte",
                    r.at,
                    b.at,
                )),
                (None, Some(b)) => out.push(stage(
                    "ack_first_byte",
                    "ACK → first byte (server spoke first)",
                    ack.at,
                    b.at,
                )),
                _ => {}
            }
        }
    }
    let our_fin = events
        .iter()
        .position(|e| e.dir == Dir::Sent && is(e, TcpFlags::FIN) && e.note.is_none());
    let peer_fin = events
        .iter()
        .position(|e| e.dir == Dir::Received && is(e, TcpFlags::FIN) && accepted(e));
    if let Some(f) = our_fin {
        let fin_seq = events[f].seq + 1;
        if let Some(a) = events[f + 1..].iter().find(|e| {
            e.dir == Dir::Received && is(e, TcpFlags::ACK) && e.ack == fin_seq && accepted(e)
        }) {
            out.push(stage("fin_ack", "FIN → ACK", events[f].at, a.at));
        }
        match peer_fin {
            Some(p) if p > f => out.push(stage(
                "fin_peer_fin",
                "FIN → peer FIN",
                events[f].at,
                events[p].at,
            )),
            Some(p) => out.push(stage(
                "peer_fin_fin",
                "peer FIN → our FIN",
                events[p].at,
                events[f].at,
            )),
            None => {}
        }
    }
    let client = |s: TcpState| {
        states
            .iter()
            .find(|e| e.side == Side::Client && e.state == s)
            .map(|e| e.at)
    };
    if let (Some(tw), Some(closed)) = (client(TcpState::TimeWait), client(TcpState::Closed)) {
        out.push(stage("time_wait", "TIME_WAIT held", tw, closed));
    }
    if let (Some(syn), Some(closed)) = (first_syn, client(TcpState::Closed)) {
        out.push(stage("total", "total (SYN → CLOSED)", syn.at, closed));
    }
    out
}

/// SYN-ACK schedule and whether the server kept half-open state or used SYN cookies.
pub fn half_open_report(events: &[SegmentEvent]) -> Option<HalfOpenReport> {
    let syn = events
        .iter()
        .find(|e| e.dir == Dir::Sent && is(e, TcpFlags::SYN))?;
    let syn_ack = TcpFlags::SYN.union(TcpFlags::ACK);
    let at: Vec<Timestamp> = events
        .iter()
        .filter(|e| e.dir == Dir::Received && is(e, syn_ack) && e.note != Some(Note::Ignored))
        .map(|e| e.at)
        .collect();
    let us = |d: Duration| d.as_nanos() as f64 / 1e3;
    let end = events.last().map(|e| e.at).unwrap_or(syn.at);
    let watched = end.saturating_sub(syn.at);
    let first = *at.first()?;
    let retransmissions = at.len() - 1;
    // Linux retransmits an unanswered SYN-ACK after 1 s (TCP_TIMEOUT_INIT); with
    // SYN cookies it keeps no request and never does.
    let after_first = end.saturating_sub(first);
    let (server_kept, explanation) = if retransmissions > 0 {
        (
            "half-open-state",
            format!(
                "the server kept a request socket (SYN_RECV) and retransmitted its SYN-ACK {}",
                plural(retransmissions as u64, "time")
            ),
        )
    } else if after_first >= Duration::from_millis(1500) {
        (
            "syn-cookies",
            format!(
                "no SYN-ACK retransmission in {}: the server kept no half-open state, as with SYN cookies",
                human(after_first)
            ),
        )
    } else {
        (
            "unknown",
            "watched too briefly to tell SYN cookies from a retransmitting server (use --timeout of 2s or more)".to_string(),
        )
    };
    Some(HalfOpenReport {
        synack_at_us: at.iter().map(|t| us(t.saturating_sub(syn.at))).collect(),
        intervals_us: at
            .windows(2)
            .map(|w| us(w[1].saturating_sub(w[0])))
            .collect(),
        retransmissions,
        watched_us: us(watched),
        server_kept,
        explanation,
    })
}

impl TraceRun {
    /// The report of the finished connection `c`, the `index`th of the run.
    pub fn from_client(index: u64, c: &TcpClient) -> TraceRun {
        // in time order on the kernel's clock (processing order can differ by µs)
        let mut events = c.events().to_vec();
        events.sort_by_key(|e| e.at);
        monotone_states(&mut events, c.states());
        let sent = events.iter().filter(|e| e.dir == Dir::Sent).count();
        let stamped = events
            .iter()
            .filter(|e| {
                e.dir == Dir::Sent && e.stamp == crate::probe::tcp_client::StampSource::Kernel
            })
            .count();
        let teardown = c.teardown().unwrap_or(Teardown::Interrupted);
        let not_done = c.shortfalls();
        TraceRun {
            index,
            source: c.config().src,
            isn: c.isn().0,
            peer_isn: c.peer_isn().map(|s| s.0),
            teardown,
            teardown_text: teardown.describe(),
            succeeded: not_done.is_empty(),
            result: result_text(c, &not_done),
            not_done,
            icmp: c.icmp().cloned(),
            started_ns: events.first().map(|e| e.at.0).unwrap_or(0),
            received_bytes: c.received_bytes(),
            stages: stages(&events, c.states()),
            half_open: if c.config().half_open {
                half_open_report(&events)
            } else {
                None
            },
            states: c.states().to_vec(),
            segments: events,
            kernel_stamped: format!("{stamped}/{sent}"),
            verification: None,
        }
    }

    /// Compares the SYN-ACK with the server's later segments: `received` are
    /// the fingerprints of every segment the peer's address sent on this flow,
    /// in arrival order. Nothing to compare in half-open mode.
    pub fn verify(&mut self, received: &[Fingerprint], half_open: bool) {
        if half_open {
            return;
        }
        let syn = |f: &&Fingerprint| f.flags.contains(TcpFlags::SYN);
        let Some(i) = received.iter().position(|f| syn(&f)) else {
            return;
        };
        let later: Vec<Fingerprint> = received[i + 1..]
            .iter()
            .filter(|f| !syn(f))
            .cloned()
            .collect();
        self.verification = Some(VerificationJson::new(&received[i], &later));
    }

    /// `open (syn-proxy: ttl 62, later 61)`, `open (verified ...)` or
    /// `open (unverified ...)`; none without a SYN-ACK.
    pub fn port_line(&self) -> Option<String> {
        let v = self.verification.as_ref()?;
        Some(match v.result {
            "syn-proxy" => format!(
                "open (syn-proxy: {})",
                v.evidence
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "verified" => {
                "open (verified: the server's later segments match its SYN-ACK)".to_string()
            }
            _ => "open (unverified: nothing came after the SYN-ACK)".to_string(),
        })
    }

    /// Did the trace do all it was asked: the handshake, the request
    /// (acknowledged in full) and the teardown `--close` asks for (half-open: a
    /// SYN-ACK)?
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// One line on how it went: what was done, or what did not happen.
    pub fn result_line(&self) -> &str {
        &self.result
    }
}

/// The result line: `complete: ` and what happened, or `INCOMPLETE: ` and
/// what did not.
fn result_text(c: &TcpClient, not_done: &[String]) -> String {
    if !not_done.is_empty() {
        return format!("INCOMPLETE: {}", not_done.join("; "));
    }
    let cfg = c.config();
    if cfg.half_open {
        return "complete: a SYN-ACK came; the handshake was left half-open as asked".to_string();
    }
    let mut s = "complete: handshake".to_string();
    if !cfg.payload.is_empty() {
        s += &format!(", request acknowledged ({} bytes)", cfg.payload.len());
    }
    s += match cfg.close {
        CloseMode::Fin => ", orderly close with FINs",
        CloseMode::Rst => ", aborted with our RST as asked",
    };
    s
}

/// The ladder is in wire order (kernel stamps), the states in processing
/// order; where the two differ by a few µs (a segment that arrived while we
/// were still sending the answer to the one before), a state would seem to go
/// backwards. Each side's state is shown as the furthest it has reached.
fn monotone_states(events: &mut [SegmentEvent], states: &[StateEntry]) {
    let rank = |side: Side, st: TcpState| {
        states
            .iter()
            .filter(|e| e.side == side)
            .position(|e| e.state == st)
    };
    let mut furthest: [Option<(usize, TcpState)>; 2] = [None, None];
    for e in events.iter_mut() {
        for (i, side) in [Side::Client, Side::Server].into_iter().enumerate() {
            let st = match side {
                Side::Client => &mut e.client_state,
                Side::Server => &mut e.server_state,
            };
            let Some(r) = rank(side, *st) else {
                continue;
            };
            match furthest[i] {
                Some((best, best_state)) if best > r => *st = best_state,
                _ => furthest[i] = Some((r, *st)),
            }
        }
    }
}

const ARROW: usize = 66;

fn ladder_line(e: &SegmentEvent, t0: Timestamp) -> String {
    let off = e.at.saturating_sub(t0);
    let mut label = format!("{:<3} seq {} ({})", e.flags.to_string(), e.rel_seq, e.seq);
    if e.flags.contains(TcpFlags::ACK) {
        label += &format!(" ack {} ({})", e.rel_ack, e.ack);
    }
    if e.len > 0 {
        label += &format!(" len {}", e.len);
    }
    if let Some(icmp) = &e.icmp {
        label = icmp.clone();
    }
    let body = ARROW - 6;
    let label = format!(" {label} ");
    let pad = body.saturating_sub(label.chars().count());
    let arrow = match e.dir {
        Dir::Sent => format!("|--{label}{}-->|", "-".repeat(pad)),
        Dir::Received => format!("|<--{label}{}--|", "-".repeat(pad)),
    };
    let note = match e.note {
        Some(Note::Retransmission) => "  (retransmission)",
        Some(Note::Duplicate) => "  (duplicate)",
        Some(Note::OutOfOrder) => "  (out of order)",
        Some(Note::Ignored) => "  (ignored)",
        Some(Note::Unanswered) => "  (left unanswered)",
        Some(Note::WindowProbe) => "  (zero-window probe)",
        None => "",
    };
    format!(
        "{:>12.3}ms  {:<12} {arrow} {:<12}{note}",
        off.as_nanos() as f64 / 1e6,
        e.client_state.name(),
        e.server_state.name()
    )
}

/// The ladder diagram of one trace.
pub fn ladder(run: &TraceRun, target: &TraceTarget) -> String {
    let mut s = String::new();
    let t0 = Timestamp(run.started_ns);
    let client = format!("client {}", run.source);
    let server = format!("server {}", target.address);
    s += &format!(
        "{:>14}  {:<12} {client:<w$} {server}\n",
        "time",
        "",
        w = ARROW + 1
    );
    let closed = run
        .states
        .iter()
        .rev()
        .find(|e| e.side == Side::Client && e.state == TcpState::Closed);
    let closed_line = |at: Timestamp| {
        let off = at.saturating_sub(t0);
        format!("{:>12.3}ms  CLOSED\n", off.as_nanos() as f64 / 1e6)
    };
    let mut closed_shown = false;
    for e in &run.segments {
        // in time order: segments that came after we closed (ignored) follow it
        if let Some(c) = closed.filter(|c| !closed_shown && e.at > c.at) {
            s += &closed_line(c.at);
            closed_shown = true;
        }
        s += &ladder_line(e, t0);
        s.push('\n');
    }
    if let Some(c) = closed.filter(|_| !closed_shown) {
        s += &closed_line(c.at);
    }
    s
}

/// The stage table of one trace.
pub fn stage_table(run: &TraceRun, target: &TraceTarget) -> String {
    let mut s = format!("teardown: {}\n", run.teardown_text);
    s += &format!("result: {}\n", run.result_line());
    if let Some(p) = run.port_line() {
        s += &format!("port: {p}\n");
    }
    for st in &run.stages {
        s += &format!(
            "  {:<40} {:>14}\n",
            st.name,
            human(Duration::from_nanos(st.ns))
        );
    }
    if run.stages.iter().any(|s| s.id == "time_wait") {
        s += &format!(
            "  (TIME_WAIT held {} here; Linux holds it {} = 2·MSL)\n",
            humantime::format_duration(Duration::from_secs_f64(target.time_wait_ms / 1000.0)),
            humantime::format_duration(LINUX_TIME_WAIT)
        );
    }
    if let Some(h) = &run.half_open {
        let list = |v: &[f64]| {
            if v.is_empty() {
                return "none".to_string();
            }
            v.iter()
                .map(|x| human_us(*x))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s += &format!(
            "  SYN-ACKs after our SYN: {}\n  gaps between them: {}\n  server kept: {} ({})\n  (Linux defaults: tcp_synack_retries=5, SYN-ACKs at 0, 1, 3, 7, 15, 31 s; gives up at ~63 s)\n",
            list(&h.synack_at_us),
            list(&h.intervals_us),
            h.server_kept,
            h.explanation
        );
    }
    s += &format!(
        "  received {} bytes; our segments stamped by the kernel: {}\n",
        run.received_bytes, run.kernel_stamped
    );
    s
}

/// Per-stage statistics over several traces, in first-seen stage order:
/// (id, name, statistics).
pub fn stage_stats(runs: &[TraceRun]) -> Vec<(&'static str, &'static str, RttStats)> {
    let mut ids: Vec<(&'static str, &'static str)> = Vec::new();
    for r in runs {
        for s in &r.stages {
            if !ids.iter().any(|(id, _)| *id == s.id) {
                ids.push((s.id, s.name));
            }
        }
    }
    ids.into_iter()
        .filter_map(|(id, name)| {
            let d: Vec<Duration> = runs
                .iter()
                .flat_map(|r| r.stages.iter().filter(|s| s.id == id))
                .map(|s| Duration::from_nanos(s.ns))
                .collect();
            RttStats::from_durations(&d).map(|st| (id, name, st))
        })
        .collect()
}

/// Writes the text header line.
pub fn write_header(out: &mut impl Write, t: &TraceTarget) -> std::io::Result<()> {
    writeln!(
        out,
        "SYNSCOPE TRACE {} ({}) via {}{}",
        t.host,
        t.address,
        t.interface,
        if t.half_open { ", half-open" } else { "" }
    )
}

/// Writes one trace as text: the full ladder for the first, one line for the others.
pub fn write_run(
    out: &mut impl Write,
    t: &TraceTarget,
    run: &TraceRun,
    full: bool,
) -> std::io::Result<()> {
    if full {
        writeln!(out)?;
        write!(out, "{}", ladder(run, t))?;
        writeln!(out)?;
        write!(out, "{}", stage_table(run, t))?;
    } else {
        let parts: Vec<String> = run
            .stages
            .iter()
            .map(|s| format!("{}={}", s.name, human(Duration::from_nanos(s.ns))))
            .collect();
        let result = if run.succeeded {
            "complete".to_string()
        } else {
            format!("INCOMPLETE ({})", run.not_done.join("; "))
        };
        let port = run
            .port_line()
            .filter(|_| {
                run.verification
                    .as_ref()
                    .is_some_and(|v| v.result == "syn-proxy")
            })
            .map(|p| format!(", {p}"))
            .unwrap_or_default();
        writeln!(
            out,
            "trace {} from {}: {}, {}{port}; {}",
            run.index + 1,
            run.source,
            run.teardown.name(),
            result,
            parts.join(" ")
        )?;
    }
    Ok(())
}

/// Writes per-stage statistics (text).
pub fn write_stats(out: &mut impl Write, runs: &[TraceRun]) -> std::io::Result<()> {
    let ok = runs.iter().filter(|r| r.succeeded()).count();
    writeln!(out)?;
    writeln!(
        out,
        "--- {} traces, {} complete (handshake, request acknowledged, teardown as asked) ---",
        runs.len(),
        ok
    )?;
    writeln!(
        out,
        "  {:<40} {:>5} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "stage", "n", "min", "avg", "max", "p50", "p90", "p99"
    )?;
    for (_, name, s) in stage_stats(runs) {
        writeln!(
            out,
            "  {:<40} {:>5} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
            name,
            s.count,
            human_us(s.min_us),
            human_us(s.avg_us),
            human_us(s.max_us),
            human_us(s.p50_us),
            human_us(s.p90_us),
            human_us(s.p99_us)
        )?;
    }
    Ok(())
}

/// One trace as JSON (`kind: trace`).
#[derive(Debug, Serialize)]
pub(crate) struct TraceOut {
    pub index: u64,
    pub source: SocketAddr,
    pub isn: u32,
    pub peer_isn: Option<u32>,
    /// `we_closed_first`, `peer_closed_first`, `reset_by_peer`, `no_response`, ...
    pub teardown: String,
    pub teardown_text: &'static str,
    pub succeeded: bool,
    pub not_done: Vec<String>,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpOut>,
    /// The first segment's time, ns since the Unix epoch.
    pub started_ns: BigU64,
    pub received_bytes: u64,
    /// Each stage's duration by its id, in the order they happened.
    pub stages_us: Stages,
    pub segments: Vec<SegmentOut>,
    pub states: Vec<StateOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open: Option<HalfOpenReport>,
    pub kernel_stamped: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationOut>,
}

/// The ICMP error that ended a trace.
#[derive(Debug, Serialize)]
pub(crate) struct IcmpOut {
    pub reason: String,
    pub from: std::net::IpAddr,
}

/// Stage id → duration (µs), in stage order.
#[derive(Debug)]
pub(crate) struct Stages(pub Vec<(&'static str, Us)>);

impl Serialize for Stages {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (*k, *v)))
    }
}

/// One segment of the ladder.
#[derive(Debug, Serialize)]
pub(crate) struct SegmentOut {
    /// ns since the Unix epoch.
    pub at_ns: BigU64,
    /// Since the trace's first segment.
    pub offset_us: Us,
    /// `kernel` or `user`: which clock took `at_ns`.
    pub stamp: &'static str,
    /// `sent` or `received`.
    pub dir: &'static str,
    pub flags: String,
    pub seq: u32,
    pub ack: u32,
    pub rel_seq: u32,
    pub rel_ack: u32,
    pub len: u32,
    pub window: u16,
    /// `retransmission`, `duplicate`, `out_of_order`, `ignored`,
    /// `unanswered`, `window_probe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<String>,
    /// `syn_sent`, `established`, `time_wait`, ...
    pub client_state: String,
    pub server_state: String,
}

/// A state entered.
#[derive(Debug, Serialize)]
pub(crate) struct StateOut {
    /// `client` or `server`.
    pub side: &'static str,
    pub state: String,
    pub at_ns: BigU64,
    pub offset_us: Us,
}

fn note_name(n: Note) -> &'static str {
    match n {
        Note::Retransmission => "retransmission",
        Note::Duplicate => "duplicate",
        Note::OutOfOrder => "out_of_order",
        Note::Ignored => "ignored",
        Note::Unanswered => "unanswered",
        Note::WindowProbe => "window_probe",
    }
}

impl TraceRun {
    /// The JSON form.
    pub(crate) fn out(&self) -> TraceOut {
        let t0 = Timestamp(self.started_ns);
        let off = |at: Timestamp| Us::of(at.saturating_sub(t0));
        TraceOut {
            index: self.index,
            source: self.source,
            isn: self.isn,
            peer_isn: self.peer_isn,
            teardown: match self.teardown {
                Teardown::NoAnswer => "no_response".into(),
                t => snake(t.name()),
            },
            teardown_text: self.teardown_text,
            succeeded: self.succeeded,
            not_done: self.not_done.clone(),
            result: self.result.clone(),
            icmp: self.icmp.as_ref().map(|i| IcmpOut {
                reason: snake(&i.reason),
                from: i.from,
            }),
            started_ns: BigU64(self.started_ns),
            received_bytes: self.received_bytes,
            stages_us: Stages(
                self.stages
                    .iter()
                    .map(|s| (s.id, Us::from_ns(s.ns)))
                    .collect(),
            ),
            segments: self
                .segments
                .iter()
                .map(|e| SegmentOut {
                    at_ns: BigU64(e.at.0),
                    offset_us: off(e.at),
                    stamp: match e.stamp {
                        StampSource::Kernel => "kernel",
                        StampSource::User => "user",
                    },
                    dir: match e.dir {
                        Dir::Sent => "sent",
                        Dir::Received => "received",
                    },
                    flags: e.flags.to_string(),
                    seq: e.seq.0,
                    ack: e.ack.0,
                    rel_seq: e.rel_seq,
                    rel_ack: e.rel_ack,
                    len: e.len,
                    window: e.window,
                    note: e.note.map(note_name),
                    icmp: e.icmp.clone(),
                    client_state: snake(e.client_state.name()),
                    server_state: snake(e.server_state.name()),
                })
                .collect(),
            states: self
                .states
                .iter()
                .map(|e| StateOut {
                    side: match e.side {
                        Side::Client => "client",
                        Side::Server => "server",
                    },
                    state: snake(e.state.name()),
                    at_ns: BigU64(e.at.0),
                    offset_us: off(e.at),
                })
                .collect(),
            half_open: self.half_open.clone(),
            kernel_stamped: self.kernel_stamped.clone(),
            verification: self.verification.as_ref().map(VerificationOut::from),
        }
    }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub(crate) struct TraceDocument<'a> {
    pub kind: &'static str,
    pub command: &'static str,
    pub target: &'a TraceTarget,
    pub traces: Vec<Kinded<'a, TraceOut>>,
    /// Per-stage statistics by stage id.
    pub stats: BTreeMap<&'static str, RttStats>,
    pub linux_time_wait_us: Us,
    pub interrupted: bool,
}

/// Writes the whole JSON document.
pub fn write_json(
    out: &mut impl Write,
    t: &TraceTarget,
    runs: &[TraceRun],
    interrupted: bool,
) -> std::io::Result<()> {
    let traces: Vec<TraceOut> = runs.iter().map(TraceRun::out).collect();
    let doc = TraceDocument {
        kind: "report",
        command: "trace",
        target: t,
        traces: traces.iter().map(|t| kinded("trace", t)).collect(),
        stats: stage_stats(runs)
            .into_iter()
            .map(|(id, _, s)| (id, s))
            .collect(),
        linux_time_wait_us: Us::of(LINUX_TIME_WAIT),
        interrupted,
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}

/// The `--ndjson` line of one trace, written as soon as it ends: the same
/// object as an item of the document's `traces`, `kind` `trace`.
pub fn write_ndjson_run(out: &mut impl Write, run: &TraceRun) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &kinded("trace", &run.out()))?;
    writeln!(out)
}

/// The last `--ndjson` line: the document without its `traces`, `kind`
/// `summary`, with the number of traces.
#[derive(Debug, Serialize)]
pub(crate) struct TraceSummaryLine<'a> {
    pub kind: &'static str,
    pub command: &'static str,
    pub target: &'a TraceTarget,
    /// Traces run (one `trace` line each).
    pub traces: usize,
    /// Traces that did all they were asked.
    pub succeeded: usize,
    /// Per-stage statistics by stage id.
    pub stats: BTreeMap<&'static str, RttStats>,
    pub linux_time_wait_us: Us,
    pub interrupted: bool,
}

/// Writes the `--ndjson` summary line after the `trace` lines.
pub fn write_ndjson_summary(
    out: &mut impl Write,
    t: &TraceTarget,
    runs: &[TraceRun],
    interrupted: bool,
) -> std::io::Result<()> {
    let line = TraceSummaryLine {
        kind: "summary",
        command: "trace",
        target: t,
        traces: runs.len(),
        succeeded: runs.iter().filter(|r| r.succeeded()).count(),
        stats: stage_stats(runs)
            .into_iter()
            .map(|(id, _, s)| (id, s))
            .collect(),
        linux_time_wait_us: Us::of(LINUX_TIME_WAIT),
        interrupted,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

/// The whole JSON document as a value (tests).
pub fn json_document(t: &TraceTarget, runs: &[TraceRun], interrupted: bool) -> serde_json::Value {
    let mut v = Vec::new();
    let _ = write_json(&mut v, t, runs, interrupted);
    serde_json::from_slice(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tcp_client::{StampSource, TcpClientConfig};
    use crate::wire::{SeqNumber, TcpRepr};

    fn peer(flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> TcpRepr {
        TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: 65000,
            payload: payload.to_vec(),
            ..TcpRepr::default()
        }
    }

    fn client(payload: &[u8]) -> TcpClient {
        TcpClient::new(TcpClientConfig {
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:80".parse().unwrap(),
            isn: SeqNumber(100),
            ttl: 64,
            mss: 1460,
            syn_options: false,
            payload: payload.to_vec(),
            close: CloseMode::Fin,
            half_open: false,
            rto: Duration::from_secs(1),
            max_retries: 3,
            idle: Duration::from_millis(10),
            time_wait: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
        })
    }

    fn target() -> TraceTarget {
        TraceTarget {
            host: "x".into(),
            address: "198.18.0.2:80".parse().unwrap(),
            interface: "veth0".into(),
            close: CloseMode::Fin,
            half_open: false,
            request_bytes: 0,
            time_wait_ms: 100.0,
        }
    }

    /// A banner, then the peer's FIN, which arrived before our ACK of the
    /// banner left (its kernel stamp is later): in wire order the ladder must
    /// not show CLOSE_WAIT → ESTABLISHED.
    #[test]
    fn states_never_go_backwards_on_the_ladder() {
        let us = |n: u64| Timestamp(1_000_000_000 + n * 1000);
        let a = TcpFlags::ACK;
        let mut c = client(b"");
        let syn = c.start(us(0));
        c.on_sent_stamp(&syn[0], us(1));
        let out = c.on_segment(&peer(TcpFlags::SYN.union(a), 900, 101, b""), us(50));
        c.on_sent_stamp(&out[0], us(51));
        let ack_banner = c.on_segment(&peer(a, 901, 101, b"SSH-2.0\r\n"), us(100));
        let out = c.on_segment(&peer(TcpFlags::FIN.union(a), 910, 101, b""), us(101));
        c.on_sent_stamp(&ack_banner[0], us(102));
        c.on_sent_stamp(&out[0], us(103));
        c.on_sent_stamp(&out[1], us(104));
        c.on_segment(&peer(a, 911, 102, b""), us(150));
        let run = TraceRun::from_client(0, &c);
        let shown: Vec<&str> = run.segments.iter().map(|e| e.client_state.name()).collect();
        assert_eq!(
            shown,
            [
                "SYN_SENT",
                "SYN_SENT",
                "ESTABLISHED",
                "ESTABLISHED",
                "CLOSE_WAIT",
                // our ACK of the banner, stamped after the FIN arrived
                "CLOSE_WAIT",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LAST_ACK"
            ]
        );
        assert!(run.succeeded, "{:?}", run.not_done);
        // the closing line comes after the last segment
        let l = ladder(&run, &target());
        let last = l.lines().last().unwrap();
        assert!(last.ends_with("CLOSED") && last.contains("0.149ms"), "{l}");
    }

    #[test]
    fn count_summaries_are_words() {
        let us = |n: u64| Timestamp(1_000_000_000 + n * 1000);
        let a = TcpFlags::ACK;
        let mut c = client(b"");
        c.start(us(0));
        c.on_segment(&peer(TcpFlags::SYN.union(a), 900, 101, b""), us(50));
        c.on_segment(&peer(TcpFlags::FIN.union(a), 901, 101, b""), us(60));
        c.on_segment(&peer(a, 902, 102, b""), us(70));
        let run = TraceRun::from_client(1, &c);
        assert_eq!(run.result, "complete: handshake, orderly close with FINs");
        let mut out = Vec::new();
        write_run(&mut out, &target(), &run, false).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with("trace 2 from 198.18.0.1:40000: peer-closed-first, complete; "),
            "{line}"
        );
        // an incomplete one says what did not happen
        let mut c = client(b"hi");
        c.start(us(0));
        c.on_segment(&peer(TcpFlags::SYN.union(a), 900, 101, b""), us(50));
        c.on_segment(&peer(TcpFlags::RST, 901, 0, b""), us(60));
        let run = TraceRun::from_client(0, &c);
        let mut out = Vec::new();
        write_run(&mut out, &target(), &run, false).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.contains("reset-by-peer, INCOMPLETE (request not acknowledged: 0 of 2 bytes; no orderly close"),
            "{line}"
        );
        assert!(!line.contains("ResetByPeer"), "{line}");
    }

    #[test]
    fn stages_of_a_request_response_we_close_first() {
        let us = |n: u64| Timestamp(1_000_000_000 + n * 1000);
        let mut c = TcpClient::new(TcpClientConfig {
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:80".parse().unwrap(),
            isn: SeqNumber(100),
            ttl: 64,
            mss: 1460,
            syn_options: false,
            payload: b"ping".to_vec(),
            close: CloseMode::Fin,
            half_open: false,
            rto: Duration::from_secs(1),
            max_retries: 3,
            idle: Duration::from_millis(10),
            time_wait: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
        });
        let a = TcpFlags::ACK;
        let syn = c.start(us(0));
        c.on_sent_stamp(&syn[0], us(2));
        let out = c.on_segment(&peer(TcpFlags::SYN.union(a), 900, 101, b""), us(50));
        c.on_sent_stamp(&out[0], us(60));
        c.on_sent_stamp(&out[1], us(61));
        c.on_segment(&peer(a.union(TcpFlags::PSH), 901, 105, b"pong"), us(300));
        let fin = c.poll(us(10_300));
        c.on_sent_stamp(&fin[0], us(10_301));
        c.on_segment(&peer(a, 905, 106, b""), us(10_350));
        c.on_segment(&peer(TcpFlags::FIN.union(a), 905, 106, b""), us(10_400));
        c.poll(us(110_400));
        let run = TraceRun::from_client(0, &c);
        let got: Vec<(&str, u64)> = run.stages.iter().map(|s| (s.name, s.ns / 1000)).collect();
        assert_eq!(
            got,
            [
                ("SYN → SYN-ACK", 48),
                ("SYN-ACK → ACK sent", 10),
                ("request → first byte", 239),
                ("FIN → ACK", 49),
                ("FIN → peer FIN", 99),
                ("TIME_WAIT held", 100_000),
                ("total (SYN → CLOSED)", 110_398),
            ]
        );
        assert_eq!(run.teardown, Teardown::WeClosedFirst);
        assert_eq!(run.kernel_stamped, "4/6");
        assert!(run.segments.iter().any(|e| e.stamp == StampSource::User));
        let t = TraceTarget {
            host: "x".into(),
            address: "198.18.0.2:80".parse().unwrap(),
            interface: "veth0".into(),
            close: CloseMode::Fin,
            half_open: false,
            request_bytes: 4,
            time_wait_ms: 100.0,
        };
        let l = ladder(&run, &t);
        assert!(l.contains("SYN_SENT"), "{l}");
        assert!(l.contains("|-- S   seq 0 (100) "), "{l}");
        assert!(l.contains("|<-- S.  seq 0 (900) ack 1 (101) "), "{l}");
        assert!(l.contains("LAST_ACK"), "{l}");
        let st = stage_table(&run, &t);
        assert!(st.contains("Linux holds it 1m"), "{st}");
        let doc = json_document(&t, &[run], false);
        crate::json::assert_schema("trace_document", &doc);
        assert_eq!(doc["kind"], "report");
        assert_eq!(doc["traces"][0]["kind"], "trace");
        assert_eq!(doc["traces"][0]["teardown"], "we_closed_first");
        assert_eq!(doc["traces"][0]["segments"][0]["flags"], "S");
        assert_eq!(doc["traces"][0]["segments"][0]["client_state"], "syn_sent");
        assert_eq!(doc["traces"][0]["stages_us"]["syn_synack"], 48.0);
        assert_eq!(doc["stats"]["fin_ack"]["count"], 1);
    }
}
