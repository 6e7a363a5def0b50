//! `synscope path` output: a hop ladder with per-hop RTT statistics and the
//! changes each hop's quote shows first, the verdict line, and JSON.

use super::json::{Kinded, Options, Us, kinded, snake};
use super::{OutputFormat, RttStats, human, plural};
use crate::probe::path::{
    Answer, Change, FinalHop, Hop, Outcome, PathConfig, PathResult, ProbeOutcome,
};
use crate::wire::{TcpFlags, TcpOptions};
use serde::Serialize;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// Who was probed and how.
#[derive(Debug, Clone, Serialize)]
pub struct PathTarget {
    /// The target as the user wrote it.
    pub host: String,
    /// The address and port probed.
    pub address: SocketAddr,
    /// Our source address.
    pub source: IpAddr,
    /// The interface holding `source` (where replies arrive).
    pub interface: String,
}

/// The one-line verdict: `reached 198.18.4.2:80 in 4 hops: open`,
/// `dropped after hop 2 (198.18.2.2)`, `rejected by hop 2 (198.18.2.2): admin-prohibited`.
pub fn verdict(outcome: &Outcome, dst: SocketAddr) -> String {
    match outcome {
        Outcome::Reached { hop, open } => format!(
            "reached {dst} in {hop} hop{}: {}",
            if *hop == 1 { "" } else { "s" },
            if *open {
                "open (SYN-ACK)"
            } else {
                "closed (RST)"
            }
        ),
        Outcome::Dropped { after: 0, .. } => {
            "dropped before hop 1: nothing answered at any TTL".to_string()
        }
        Outcome::Dropped { after, from } => format!(
            "dropped after hop {after} ({}): no answer from hop {} on",
            from.map_or("?".into(), |a| a.to_string()),
            after + 1
        ),
        Outcome::Rejected {
            ttl,
            hop,
            from,
            error,
            by_destination,
        } => {
            let who = if *by_destination {
                format!("the destination {from} (hop {hop})")
            } else {
                format!("hop {hop} ({from})")
            };
            let at = if ttl != hop && !by_destination {
                format!(", answering SYNs with TTL {ttl} and more")
            } else {
                String::new()
            };
            format!("rejected by {who}: {}{at}", error.name())
        }
    }
}

/// What one probe got, named: `time_exceeded`, `admin_prohibited`,
/// `syn_ack`, `rst`, `no_response`.
fn answer_name(a: &Option<Answer>) -> String {
    match a {
        None => "no_response".into(),
        Some(Answer::TimeExceeded { .. }) => "time_exceeded".into(),
        Some(Answer::Error { error, .. }) => snake(&error.name()),
        Some(Answer::Destination { flags, .. }) if flags.contains(TcpFlags::SYN) => {
            "syn_ack".into()
        }
        Some(Answer::Destination { .. }) => "rst".into(),
    }
}

/// One field that differs between what we sent and what a hop quoted.
#[derive(Debug, Serialize)]
struct ChangeOut {
    /// `mss`, `sack_permitted`, `window_scale`, `dscp`, `ecn`, `ttl`, ...
    field: String,
    sent: String,
    seen: String,
}

impl From<&Change> for ChangeOut {
    fn from(c: &Change) -> ChangeOut {
        ChangeOut {
            field: snake(c.field),
            sent: c.sent.clone(),
            seen: c.seen.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ProbeJson {
    src_port: u16,
    isn: u32,
    answer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<IpAddr>,
    rtt_us: Option<Us>,
    /// The send time is the kernel's stamp of the SYN leaving.
    kernel_stamped: bool,
    /// The destination's answer: flags, TTL, window, options.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<ReplyJson>,
}

#[derive(Debug, Serialize)]
struct ReplyJson {
    flags: String,
    ttl: u8,
    window: u16,
    options: Options,
}

#[derive(Debug, Serialize)]
struct HopJson {
    ttl: u8,
    addresses: Vec<IpAddr>,
    sent: usize,
    answered: usize,
    /// What most probes of this hop got.
    answer: String,
    rtt: Option<RttStats>,
    /// Everything this hop's quote shows changed against what was sent.
    changes: Vec<ChangeOut>,
    /// The changes no earlier hop's quote showed.
    first_seen: Vec<ChangeOut>,
    probes: Vec<ProbeJson>,
}

#[derive(Debug, Serialize)]
struct OutcomeJson {
    /// `reached`, `dropped` or `rejected`.
    result: &'static str,
    /// reached: the destination's distance; dropped: the last hop that
    /// answered (0: none); rejected: the hop that rejected.
    hop: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_destination: Option<bool>,
    text: String,
}

#[derive(Debug, Serialize)]
struct ChangeJson {
    /// The first hop whose quote shows it: made by the hop before on its way
    /// out or by this hop on its way in.
    hop: u8,
    #[serde(flatten)]
    change: ChangeOut,
}

#[derive(Debug, Serialize)]
struct EcnJson {
    negotiated: Option<bool>,
    bleached_at: Option<u8>,
}

#[derive(Debug, Serialize)]
struct ReplyDistanceJson {
    ttl: u8,
    initial_ttl: u8,
    hops_back: u8,
    /// Fewer hops back than the SYNs took out: something nearer answered.
    nearer_than_destination: bool,
    /// More hops back than the SYNs took out: a hop raised their TTL (or the
    /// way back is longer).
    farther_than_destination: bool,
    /// With `farther_than_destination`: the last hop that answered
    /// time-exceeded, which raised the TTL on its way out (or a later one).
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_raised_by_hop: Option<u8>,
    /// SYN-ACK with window 0 (as Linux SYNPROXY sends).
    zero_window: bool,
}

#[derive(Debug, Serialize)]
struct SentJson {
    flags: String,
    tos: u8,
    options: Options,
    window: u16,
}

#[derive(Debug, Serialize)]
struct PathJson<'a> {
    kind: &'static str,
    command: &'static str,
    target: &'a PathTarget,
    max_hops: u8,
    count: u16,
    timeout_us: Us,
    sent: SentJson,
    /// In the `--json` document; `--ndjson` writes them as `hop` lines
    /// (each as soon as it is final, see [`write_hop`]) before the `summary`
    /// line, which has no `hops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    hops: Option<Vec<Kinded<'a, HopJson>>>,
    outcome: OutcomeJson,
    changes: Vec<ChangeJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ecn: Option<EcnJson>,
    reply_distance: Option<ReplyDistanceJson>,
    /// The first hop whose time-exceeded came from the destination's own
    /// address: a NAT there (Linux conntrack) rewrote the errors and quotes.
    #[serde(skip_serializing_if = "Option::is_none")]
    nat_at_hop: Option<u8>,
    beyond_destination: usize,
    ignored: std::collections::BTreeMap<String, u64>,
    interrupted: bool,
}

fn rtts(h: &Hop) -> Option<RttStats> {
    let v: Vec<_> = h.probes.iter().filter_map(|p| p.rtt).collect();
    RttStats::from_durations(&v)
}

/// The most frequent answer name of a hop (the first one on a tie).
fn hop_answer(h: &Hop) -> String {
    let names: Vec<String> = h.probes.iter().map(|p| answer_name(&p.answer)).collect();
    let mut best = ("no-answer".to_string(), 0);
    for n in &names {
        let c = names.iter().filter(|m| *m == n).count();
        let answered = n != "no-answer";
        if c > best.1 || (answered && best.0 == "no-answer") {
            best = (n.clone(), c);
        }
    }
    best.0
}

fn first_seen_at(r: &PathResult, ttl: u8) -> Vec<Change> {
    r.first_seen
        .iter()
        .filter(|(h, _)| *h == ttl)
        .map(|(_, c)| c.clone())
        .collect()
}

fn changes_out(c: &[Change]) -> Vec<ChangeOut> {
    c.iter().map(ChangeOut::from).collect()
}

fn probe_json(p: &ProbeOutcome) -> ProbeJson {
    ProbeJson {
        src_port: p.src_port,
        isn: p.isn.0,
        answer: answer_name(&p.answer),
        from: p.answer.as_ref().map(Answer::from),
        rtt_us: p.rtt.map(Us::of),
        kernel_stamped: p.kernel_stamped,
        reply: match &p.answer {
            Some(Answer::Destination {
                flags,
                ttl,
                window,
                options,
                ..
            }) => Some(ReplyJson {
                flags: flags.to_string(),
                ttl: *ttl,
                window: *window,
                options: options.into(),
            }),
            _ => None,
        },
    }
}

fn outcome_json(o: &Outcome, dst: SocketAddr) -> OutcomeJson {
    let text = verdict(o, dst);
    match o {
        Outcome::Reached { hop, open } => OutcomeJson {
            result: "reached",
            hop: *hop,
            address: Some(dst.ip()),
            open: Some(*open),
            reason: None,
            by_destination: None,
            text,
        },
        Outcome::Dropped { after, from } => OutcomeJson {
            result: "dropped",
            hop: *after,
            address: *from,
            open: None,
            reason: Some("no_response".into()),
            by_destination: None,
            text,
        },
        Outcome::Rejected {
            hop,
            from,
            error,
            by_destination,
            ..
        } => OutcomeJson {
            result: "rejected",
            hop: *hop,
            address: Some(*from),
            open: None,
            reason: Some(snake(&error.name())),
            by_destination: Some(*by_destination),
            text,
        },
    }
}

/// The SYN's flags and options as sent.
fn sent_flags(cfg: &PathConfig) -> (TcpFlags, TcpOptions) {
    let flags = if cfg.ecn {
        TcpFlags::SYN.union(TcpFlags::ECE).union(TcpFlags::CWR)
    } else {
        TcpFlags::SYN
    };
    (flags, TcpOptions::syn(cfg.syn_options, cfg.mss, 0))
}

fn hop_json(h: &Hop, first_seen: &[Change]) -> HopJson {
    HopJson {
        ttl: h.ttl,
        addresses: h.addresses(),
        sent: h.probes.len(),
        answered: h.probes.iter().filter(|p| p.answer.is_some()).count(),
        answer: hop_answer(h),
        rtt: rtts(h),
        changes: changes_out(h.changes().unwrap_or(&[])),
        first_seen: changes_out(first_seen),
        probes: h.probes.iter().map(probe_json).collect(),
    }
}

fn hop_line(out: &mut impl Write, h: &HopJson) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &kinded("hop", h))?;
    writeln!(out)
}

/// Writes one `--ndjson` `hop` line for a hop the prober reported final, as
/// [`write()`] would have written it at the end; pass its TTL to [`write()`] as
/// `streamed` so that it is not written twice.
pub fn write_hop(out: &mut impl Write, h: &FinalHop) -> std::io::Result<()> {
    hop_line(out, &hop_json(&h.hop, &h.first_seen))
}

/// Writes the whole report. With `--ndjson`, the `hop` lines of hops 1 to
/// `streamed` were already written by [`write_hop`] as the run went: the rest
/// follow, then the summary.
pub fn write(
    out: &mut impl Write,
    format: OutputFormat,
    target: &PathTarget,
    cfg: &PathConfig,
    r: &PathResult,
    interrupted: bool,
    streamed: u8,
) -> std::io::Result<()> {
    let (flags, options) = sent_flags(cfg);
    if format != OutputFormat::Text {
        let ndjson = format == OutputFormat::Ndjson;
        // NDJSON: only the hops not streamed yet (the summary has none)
        let hops: Vec<HopJson> = r
            .hops
            .iter()
            .filter(|h| !ndjson || h.ttl > streamed)
            .map(|h| hop_json(h, &first_seen_at(r, h.ttl)))
            .collect();
        if ndjson {
            for h in &hops {
                hop_line(out, h)?;
            }
        }
        let doc = PathJson {
            kind: if ndjson { "summary" } else { "report" },
            command: "path",
            target,
            max_hops: cfg.max_hops,
            count: cfg.count,
            timeout_us: Us::of(cfg.timeout),
            sent: SentJson {
                flags: flags.to_string(),
                tos: cfg.tos,
                options: (&options).into(),
                window: cfg.window,
            },
            hops: (!ndjson).then(|| hops.iter().map(|h| kinded("hop", h)).collect()),
            outcome: outcome_json(&r.outcome, cfg.dst),
            changes: r
                .first_seen
                .iter()
                .map(|(hop, c)| ChangeJson {
                    hop: *hop,
                    change: c.into(),
                })
                .collect(),
            ecn: r.ecn.as_ref().map(|e| EcnJson {
                negotiated: e.negotiated,
                bleached_at: e.bleached_at,
            }),
            nat_at_hop: nat_at_hop(r, cfg),
            reply_distance: r.reply_distance.map(|d| ReplyDistanceJson {
                ttl: d.ttl,
                initial_ttl: d.initial,
                hops_back: d.hops_back,
                nearer_than_destination: d.nearer,
                farther_than_destination: d.farther,
                ttl_raised_by_hop: ttl_raised_by(r).map(|(hop, _)| hop),
                zero_window: d.zero_window,
            }),
            beyond_destination: r.beyond,
            ignored: r
                .ignored
                .iter()
                .map(|(k, v)| (snake(k.name()), *v))
                .collect(),
            interrupted,
        };
        let text = if ndjson {
            serde_json::to_string(&doc)
        } else {
            serde_json::to_string_pretty(&doc)
        };
        writeln!(out, "{}", text.map_err(std::io::Error::other)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "SYNSCOPE PATH {} ({}) from {} via {}: max {} hops, {} SYN{} per hop, flags {}{}{}",
        target.host,
        target.address,
        target.source,
        target.interface,
        cfg.max_hops,
        cfg.count,
        if cfg.count == 1 { "" } else { "s" },
        flags,
        if options.is_empty() {
            String::new()
        } else {
            format!(", options {}", options.brief())
        },
        if cfg.tos != 0 {
            format!(", tos 0x{:02x}", cfg.tos)
        } else {
            String::new()
        }
    )?;
    let addr_of = |h: &Hop| {
        let addrs = h.addresses();
        if addrs.is_empty() {
            "*".to_string()
        } else {
            addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    // as wide as the widest address: IPv6 hops keep the columns aligned
    let aw = r
        .hops
        .iter()
        .map(|h| addr_of(h).chars().count())
        .max()
        .unwrap_or(0)
        .max("address".len());
    let indent = 4 + 2 + aw + 1 + 5 + 2;
    writeln!(
        out,
        "{:>4}  {:<aw$} {:>5}  {:<34} answer",
        "hop", "address", "got", "rtt min/avg/max"
    )?;
    for h in &r.hops {
        let addr = addr_of(h);
        let got = format!(
            "{}/{}",
            h.probes.iter().filter(|p| p.answer.is_some()).count(),
            h.probes.len()
        );
        let rtt = rtts(h).map_or(String::new(), |s| {
            let us = |v: f64| human(std::time::Duration::from_nanos((v * 1000.0) as u64));
            format!("{}/{}/{}", us(s.min_us), us(s.avg_us), us(s.max_us))
        });
        let mut answer = hop_answer(h);
        if let Some(Answer::Destination {
            flags,
            ttl,
            window,
            options,
            ..
        }) = h.probes.iter().find_map(|p| {
            p.answer
                .as_ref()
                .filter(|a| matches!(a, Answer::Destination { .. }))
        }) {
            answer = format!(
                "{answer} flags={flags} ttl={ttl} win={window}{}",
                if options.is_empty() {
                    String::new()
                } else {
                    format!(" {}", options.brief())
                }
            );
        }
        writeln!(
            out,
            "{}",
            format!("{:>4}  {addr:<aw$} {got:>5}  {rtt:<34} {answer}", h.ttl).trim_end()
        )?;
        let new = first_seen_at(r, h.ttl);
        if !new.is_empty() {
            let d: Vec<String> = new.iter().map(Change::describe).collect();
            writeln!(out, "{:>indent$}changed: {}", "", d.join(", "))?;
        }
        if let Some(Answer::TimeExceeded {
            quoted_options: false,
            ..
        }) = h.probes.iter().find_map(|p| p.answer.as_ref())
        {
            writeln!(
                out,
                "{:>indent$}(short quote: TCP options not visible here)",
                ""
            )?;
        }
    }
    writeln!(out, "result: {}", verdict(&r.outcome, cfg.dst))?;
    if !r.first_seen.is_empty() {
        for (hop, c) in &r.first_seen {
            let by = if *hop > 1 {
                format!(
                    "by hop {} on its way out or hop {hop} on its way in",
                    hop - 1
                )
            } else {
                "by this host or hop 1 on its way in".to_string()
            };
            writeln!(
                out,
                "changed: {} (first seen in hop {hop}'s quote: {by})",
                c.describe()
            )?;
        }
    } else if r.hops.iter().any(|h| h.changes().is_some())
        && ttl_raised_by(r).is_none()
        && nat_at_hop(r, cfg).is_none()
    {
        writeln!(out, "changed: nothing the quotes show")?;
    }
    if let Some(hop) = nat_at_hop(r, cfg) {
        writeln!(
            out,
            "changed: by a NAT at hop {hop}: from hop {hop} on, time-exceeded comes from the \
             destination's own address ({}), as a Linux (conntrack) NAT rewrites the errors \
             about what it translated, their quotes too: what it changed does not show",
            cfg.dst.ip()
        )?;
    }
    if let (Some((by, addr)), Some(d), Outcome::Reached { hop, .. }) =
        (ttl_raised_by(r), r.reply_distance, &r.outcome)
    {
        let addr = addr.map(|a| format!(" ({a})")).unwrap_or_default();
        writeln!(
            out,
            "changed: ttl raised by hop {by}{addr} on its way out (or a later hop): the SYNs \
             reached the destination with TTL {hop}, but its answer crossed {} routers (TTL {}, \
             left with {}); or the way back is longer",
            d.hops_back, d.ttl, d.initial
        )?;
    }
    if let Some(e) = &r.ecn {
        let agreed = match e.negotiated {
            Some(true) => "the destination agreed (ECE in its SYN-ACK)",
            Some(false) => "the destination did not agree (no ECE in its SYN-ACK)",
            None => "no SYN-ACK to tell",
        };
        let bleached = match e.bleached_at {
            Some(h) => format!("ECE/CWR bleached before hop {h}'s quote"),
            None => "ECE/CWR intact in every quote".into(),
        };
        writeln!(out, "ecn: {agreed}; {bleached}")?;
    }
    if let (Some(d), Outcome::Reached { hop, .. }) = (r.reply_distance, &r.outcome)
        && d.nearer
    {
        writeln!(
            out,
            "note: the answer came with TTL {} (left with {}: {} hop{} back) but the destination \
             is {hop} hops out: something nearer answered for it (a SYN proxy, a load balancer) \
             or the way back is shorter{}",
            d.ttl,
            d.initial,
            d.hops_back,
            if d.hops_back == 1 { "" } else { "s" },
            if d.zero_window {
                "; its SYN-ACK has window 0, as Linux SYNPROXY's"
            } else {
                ""
            }
        )?;
    }
    if r.beyond > 0 {
        writeln!(
            out,
            "({} sent beyond the destination's distance not shown)",
            plural(r.beyond as u64, "probe")
        )?;
    }
    if interrupted {
        writeln!(out, "(interrupted: result so far)")?;
    }
    Ok(())
}

/// A destination whose answer crossed more routers than the SYNs needed to
/// reach it: the hop that raised their TTL, the last that answered
/// time-exceeded (hop 0: before hop 1), and its address.
fn ttl_raised_by(r: &PathResult) -> Option<(u8, Option<IpAddr>)> {
    let (Some(d), Outcome::Reached { hop, .. }) = (r.reply_distance, &r.outcome) else {
        return None;
    };
    if !d.farther {
        return None;
    }
    let by = hop.saturating_sub(1);
    let addr = r
        .hops
        .get((by as usize).wrapping_sub(1))
        .and_then(|h| h.addresses().first().copied());
    Some((by, addr))
}

/// The first hop before the destination whose time-exceeded came from the
/// destination's own address: a NAT (Linux conntrack) that translated the
/// SYNs rewrites the ICMP errors about them, source address and quote.
fn nat_at_hop(r: &PathResult, cfg: &PathConfig) -> Option<u8> {
    let before = match r.outcome {
        Outcome::Reached { hop, .. } => hop,
        _ => u8::MAX,
    };
    r.hops
        .iter()
        .filter(|h| h.ttl < before)
        .find(|h| {
            h.probes.iter().any(|p| {
                matches!(&p.answer, Some(a @ Answer::TimeExceeded { .. }) if a.from() == cfg.dst.ip())
            })
        })
        .map(|h| h.ttl)
}
