//! One run of one probe, whatever its kind, turned into an [`Outcome`]. The
//! protocol work is the other commands': `SynPinger` (ping), `one_trace`
//! (trace) and `one_query` (dns); this file only wires them to the exporter.

use super::config::{Kind, ProbeSpec};
use super::plane::{Plane, Use};
use crate::cmd::{CmdError, Log};
use crate::io::{CaptureLink, Packets, RawSender, Route};
use crate::probe::syn::RttSource;
use crate::probe::tcp_client::{Dir, Note};
use crate::probe::{SynAnswer, SynProbeConfig};
use crate::report::metrics::Outcome;
use crate::wire::TcpFlags;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The raw sockets every run sends through and the packet plane of each
/// source address, opened once at start (before the privileges go).
#[derive(Clone)]
pub struct Senders {
    v4: Option<Arc<RawSender>>,
    v6: Option<Arc<RawSender>>,
    pub plane: Arc<Plane>,
}

impl Senders {
    /// Opens one raw socket per address family, and the plane of each of
    /// `sources`. A family the host lacks (IPv6 disabled) is left out: its
    /// probes fail as errors, one line each.
    pub fn open(sources: impl IntoIterator<Item = IpAddr>) -> Result<Senders, CmdError> {
        let v4 = RawSender::open(IpAddr::from([0u8, 0, 0, 0]), None)?;
        let v6 = RawSender::open(IpAddr::from([0u16; 8]), None).ok();
        Ok(Senders {
            v4: Some(Arc::new(v4)),
            v6: v6.map(Arc::new),
            plane: Arc::new(Plane::open(sources)?),
        })
    }

    fn of(&self, dst: IpAddr) -> Result<&RawSender, CmdError> {
        let s = if dst.is_ipv4() { &self.v4 } else { &self.v6 };
        s.as_deref()
            .ok_or_else(|| CmdError::Setup(format!("no raw IPv6 socket to send to {dst}")))
    }
}

/// How long after its deadline a SYN probe is expired (see `ping`'s SETTLE;
/// longer here: the answer passes the plane's dispatcher task first).
const SETTLE: Duration = Duration::from_millis(5);

/// Runs `spec` once against `target` (the configured one or /probe's).
pub async fn once(
    spec: &ProbeSpec,
    target: SocketAddr,
    senders: &Senders,
    log: Log,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Outcome {
    let started = Instant::now();
    tokio::pin!(stop);
    let r = match &spec.kind {
        Kind::Syn { syn_options } => tokio::select! {
            r = syn(target, spec.timeout, *syn_options, senders) => r,
            _ = &mut stop => Err(CmdError::Setup("stopped".into())),
        },
        Kind::Handshake {
            syn_options,
            request,
            close,
        } => {
            let h = Handshake {
                syn_options: *syn_options,
                request,
                close: *close,
            };
            handshake(target, spec.timeout, &h, senders, log, &mut stop).await
        }
        Kind::Dns {
            name,
            qtype,
            recursion_desired,
            checks,
        } => tokio::select! {
            r = dns(target, spec.timeout, name, *qtype, *recursion_desired, checks, log) => r,
            _ = &mut stop => Err(CmdError::Setup("stopped".into())),
        },
    };
    match r {
        Ok(mut o) => {
            o.duration = started.elapsed();
            o
        }
        Err(e) => Outcome::error(e.line(), started.elapsed()),
    }
}

fn ignored_of<K: Copy>(
    m: &std::collections::BTreeMap<K, u64>,
    name: impl Fn(K) -> &'static str,
) -> Vec<(&'static str, u64)> {
    m.iter().map(|(k, v)| (name(*k), *v)).collect()
}

/// One SYN: the verdict, and SYN → SYN-ACK (or → RST, → ICMP) from kernel stamps.
async fn syn(
    dst: SocketAddr,
    timeout: Duration,
    syn_options: bool,
    senders: &Senders,
) -> Result<Outcome, CmdError> {
    let route = Route::lookup(dst.ip(), None)?;
    let sender = senders.of(dst.ip())?;
    // held until the answer: no other run gets this port's packets
    let mut port = senders.plane.lease(route.src, Use::Syn)?;
    let probe = SynProbeConfig {
        src: route.src,
        dst,
        ttl: 64,
        syn_options,
        mss: route.mss(),
        window: 64240,
        timeout,
    };
    let mut link = CaptureLink::new(sender, Packets::Channel(&mut port.rx), route.src, None)?;
    // deadlines are on the capture (wall) clock: should it jump, the bound ends the probe
    let bound = Some(timeout + Duration::from_secs(1));
    let (result, ignored) =
        crate::cmd::ping::one_syn(probe, port.port, SETTLE, bound, &mut link).await?;
    drop(link);
    drop(port);
    Ok(syn_outcome(result, &ignored))
}

fn syn_outcome(
    r: Option<crate::probe::syn::ProbeResult>,
    ignored: &std::collections::BTreeMap<crate::probe::Ignored, u64>,
) -> Outcome {
    let ignored = ignored_of(ignored, |k| k.name());
    let Some(r) = r else {
        return Outcome {
            success: false,
            verdict: "no-answer",
            stages: Vec::new(),
            losses: 1,
            check_failures: Vec::new(),
            ignored,
            error: None,
            duration: Duration::ZERO,
        };
    };
    let verdict = match r.verdict {
        SynAnswer::Open => "open",
        SynAnswer::Closed => "closed",
        SynAnswer::Filtered { .. } => "filtered",
        SynAnswer::NoAnswer => "no-answer",
    };
    let stage = match r.verdict {
        SynAnswer::Open => "syn_synack",
        SynAnswer::Closed => "syn_rst",
        _ => "syn_icmp",
    };
    let stages = match (r.rtt, r.rtt_source) {
        (Some(rtt), RttSource::Kernel) => vec![(stage, rtt)],
        _ => Vec::new(),
    };
    Outcome {
        success: r.verdict == SynAnswer::Open,
        verdict,
        stages,
        losses: u64::from(r.verdict == SynAnswer::NoAnswer),
        check_failures: Vec::new(),
        ignored,
        error: None,
        duration: Duration::ZERO,
    }
}

/// The id of one of `trace`'s stages as exported (None: not exported):
/// TIME_WAIT is ours to choose, and the total includes it.
fn stage_slug(id: &'static str) -> Option<&'static str> {
    (!matches!(id, "time_wait" | "total")).then_some(id)
}

/// What a handshake probe plays.
struct Handshake<'a> {
    syn_options: bool,
    request: &'a [u8],
    close: crate::probe::tcp_client::CloseMode,
}

/// A whole connection with raw segments (trace's machinery): every stage.
async fn handshake(
    dst: SocketAddr,
    timeout: Duration,
    h: &Handshake<'_>,
    senders: &Senders,
    log: Log,
    stop: &mut std::pin::Pin<&mut (impl std::future::Future<Output = ()> + Send)>,
) -> Result<Outcome, CmdError> {
    let Handshake {
        syn_options,
        request,
        close,
    } = *h;
    let route = Route::lookup(dst.ip(), None)?;
    let sender = senders.of(dst.ip())?;
    let s = crate::cli::TraceSettings {
        host: dst.ip().to_string(),
        target: dst,
        payload: request.to_vec(),
        close,
        idle: Duration::from_millis(100).min(timeout / 4),
        time_wait: Duration::from_millis(10),
        rto: Duration::from_secs(1),
        retries: 3,
        max_wait: timeout,
        half_open: false,
        count: 1,
        interval: Duration::from_secs(1),
        ttl: 64,
        send: crate::cli::SendSettings {
            source_port: None,
            interface: None,
            syn_options,
        },
        format: crate::report::OutputFormat::Text,
        pcap: None,
    };
    // a port whose packets come from the shared capture and whose kernel
    // RSTs the start-time nftables rule drops
    let mut port = senders.plane.lease(route.src, Use::Handshake)?;
    let local = SocketAddr::new(route.src, port.port);
    let isn = port.isn();
    let packets = crate::io::Packets::Channel(&mut port.rx);
    let mut interrupt = crate::cmd::Interrupt::when(stop.as_mut());
    let (c, _fingerprints, stopped) = crate::cmd::trace::connect(
        &s,
        &route,
        local,
        isn,
        sender,
        packets,
        &mut None,
        &mut interrupt,
        log,
    )
    .await?;
    drop(port);
    if stopped {
        return Err(CmdError::Setup("stopped".into()));
    }
    let run = crate::report::trace::TraceRun::from_client(0, &c);
    let syn_ack = TcpFlags::SYN.union(TcpFlags::ACK);
    let got = |f: TcpFlags| {
        run.segments
            .iter()
            .any(|e| e.dir == Dir::Received && e.flags.contains(f))
    };
    let syns = run
        .segments
        .iter()
        .filter(|e| e.dir == Dir::Sent && e.flags.contains(TcpFlags::SYN))
        .count() as u64;
    let answered = got(syn_ack);
    let verdict = if answered {
        "open"
    } else if got(TcpFlags::RST) {
        "closed"
    } else if run.icmp.is_some() {
        "filtered"
    } else {
        "no-answer"
    };
    // every SYN but the one answered is lost (Karn: a SYN-ACK after a
    // retransmission times the last SYN, and the earlier ones count as loss)
    let losses = syns.saturating_sub(u64::from(verdict != "no-answer"));
    let stages = run
        .stages
        .iter()
        .filter_map(|st| Some((stage_slug(st.id)?, Duration::from_nanos(st.ns))))
        .collect();
    // the peer's segments the client did not take, by why
    let mut ignored: Vec<(&'static str, u64)> = Vec::new();
    for e in run.segments.iter().filter(|e| e.dir == Dir::Received) {
        let why = match e.note {
            Some(Note::Ignored) => "unacceptable",
            Some(Note::Duplicate) => "duplicate",
            Some(Note::OutOfOrder) => "out-of-order",
            _ => continue,
        };
        match ignored.iter_mut().find(|(w, _)| *w == why) {
            Some((_, n)) => *n += 1,
            None => ignored.push((why, 1)),
        }
    }
    Ok(Outcome {
        success: run.succeeded,
        verdict,
        stages,
        losses,
        check_failures: Vec::new(),
        ignored,
        error: None,
        duration: Duration::ZERO,
    })
}

/// The slug of a check failure line (`--expect-rcode: ...` → `expect_rcode`).
fn check_slug(line: &str) -> &'static str {
    match line.split(':').next().unwrap_or("") {
        "--expect-rcode" => "expect_rcode",
        "--expect" => "expect",
        "--expect-contains" => "expect_contains",
        "--expect-regex" => "expect_regex",
        "--max-time" => "max_time",
        "--expect-ad" => "expect_ad",
        "--expect-signed" => "expect_signed",
        _ => "answered",
    }
}

/// One DNS query with `synscope dns`'s path choice, TCP fallback and checks.
async fn dns(
    server: SocketAddr,
    timeout: Duration,
    name: &hickory_proto::rr::Name,
    qtype: hickory_proto::rr::RecordType,
    recursion_desired: bool,
    checks: &crate::cli::DnsChecks,
    log: Log,
) -> Result<Outcome, CmdError> {
    let s = crate::cli::DnsSettings {
        display_name: name.to_ascii(),
        name: Some(name.clone()),
        types: vec![qtype],
        servers: vec![server],
        default_server: false,
        edns: Some(crate::wire::dns::EdnsRepr::default()),
        recursion_desired,
        tcp_fallback: true,
        // an ordinary UDP socket with kernel stamps: no privilege needed
        no_raw: true,
        pcap: None,
        retries: 0,
        timeout,
        format: crate::cli::DnsFormat::Text,
        checks: checks.clone(),
        bulk: None,
        rate: None,
        concurrency: 1,
        spread: false,
        progress: false,
        verbose: log.verbose,
    };
    let path = crate::cmd::dns::path_of(&s);
    let (result, ignored) =
        crate::cmd::dns::one_query(&s, server, name.clone(), qtype, path, log).await?;
    let failures = crate::report::dns::check(&result, checks);
    let verdict = if result.reply().is_some() {
        "answered"
    } else if result.refused.is_some() {
        "filtered"
    } else {
        "no-answer"
    };
    let udp_answered = result.udp.is_some();
    let mut stages = Vec::new();
    if let Some(u) = &result.udp
        && u.rtt_source == RttSource::Kernel
    {
        stages.push(("query_answer", u.rtt));
    }
    Ok(Outcome {
        success: result.reply().is_some() && failures.is_empty(),
        verdict,
        stages,
        losses: u64::from(result.attempts)
            .saturating_sub(u64::from(udp_answered || result.refused.is_some())),
        check_failures: if result.reply().is_some() {
            failures.iter().map(|f| check_slug(f)).collect()
        } else {
            // no answer is a loss, not a failed check
            Vec::new()
        },
        ignored: ignored_of(&ignored, |k| k.name()),
        error: None,
        duration: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(stage_slug("syn_synack"), Some("syn_synack"));
        assert_eq!(stage_slug("time_wait"), None);
        assert_eq!(check_slug("--expect-rcode: a A @x: status"), "expect_rcode");
        assert_eq!(check_slug("--expect: a A @x: answer"), "expect");
        assert_eq!(check_slug("a A @x: no answer"), "answered");
    }
}
