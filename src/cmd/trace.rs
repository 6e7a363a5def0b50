//! `synscope trace`: one (or `--count`) whole TCP connections played with raw
//! segments, timed by the kernel's capture stamps.

use super::{CmdError, Interrupt, Log};
use crate::cli::TraceSettings;
use crate::drive::{Ended, drive_logged};
use crate::io::bpf::FlowFilter;
use crate::io::nft::RstFilter;
use crate::io::pcap::PcapWriter;
use crate::io::{
    Capture, CaptureLink, Clock, Link, Packets, PortReservation, RawSender, RealClock, Route,
};
use crate::probe::fingerprint::Fingerprint;
use crate::probe::tcp_client::{TcpClient, TcpClientConfig};
use crate::probe::trace::Trace;
use crate::report::OutputFormat;
use crate::report::trace::{self as rep, TraceRun, TraceTarget};
use crate::wire::{Protocol, SeqNumber, TcpRepr};
use std::io::Write;
use std::net::SocketAddr;

/// The outcome of all traces.
pub struct TraceSummary {
    /// Each connection traced, in order.
    pub runs: Vec<TraceRun>,
    /// Stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
    /// Every run succeeded and none was interrupted.
    pub all_succeeded: bool,
}

/// Runs one trace to its end (or an interrupt). Returns the client, the
/// peer's segments' fingerprints and whether the run was interrupted.
pub(crate) async fn one_trace(
    s: &TraceSettings,
    route: &Route,
    sender: &RawSender,
    pcap: &mut Option<PcapWriter>,
    interrupt: &mut Interrupt<'_>,
    log: Log,
) -> Result<(TcpClient, Vec<Fingerprint>, bool), CmdError> {
    let dst = s.target;
    let port = PortReservation::reserve(route.src, s.send.source_port.unwrap_or(0))?;
    let local = SocketAddr::new(route.src, port.port);
    let filter = FlowFilter::flow(local, dst, Protocol::TCP);
    let mut capture = Capture::open(route.capture_ifindex(), &filter)?;
    let rst_filter = RstFilter::install(local, dst)?;
    log.debug(|| {
        format!(
            "nftables table {} drops the kernel's RSTs to {dst} from {local}",
            rst_filter.table
        )
    });
    let r = connect(
        s,
        route,
        local,
        SeqNumber(rand::random()),
        sender,
        Packets::Capture(&mut capture),
        pcap,
        interrupt,
        log,
    )
    .await;
    if let Some(f) = capture.fragments().describe() {
        log.debug(|| f);
    }
    drop(rst_filter);
    drop(port);
    r
}

/// The client of one trace from `local`, starting at sequence number `isn`.
pub(crate) fn client_config(
    s: &TraceSettings,
    mss: u16,
    local: SocketAddr,
    isn: SeqNumber,
) -> TcpClientConfig {
    TcpClientConfig {
        src: local,
        dst: s.target,
        isn,
        ttl: s.ttl,
        mss,
        syn_options: s.send.syn_options,
        payload: s.payload.clone(),
        close: s.close,
        half_open: s.half_open,
        rto: s.rto,
        max_retries: s.retries,
        idle: s.idle,
        time_wait: s.time_wait,
        max_wait: s.max_wait,
    }
}

/// Plays one connection from `local` (a port the caller holds, with the
/// kernel's RSTs kept off it), starting at sequence number `isn`, over
/// `packets` until it ends or `interrupt` fires.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect(
    s: &TraceSettings,
    route: &Route,
    local: SocketAddr,
    isn: SeqNumber,
    sender: &RawSender,
    packets: Packets<'_>,
    pcap: &mut Option<PcapWriter>,
    interrupt: &mut Interrupt<'_>,
    log: Log,
) -> Result<(TcpClient, Vec<Fingerprint>, bool), CmdError> {
    let mut link = CaptureLink::new(sender, packets, route.src, pcap.as_mut())?;
    let mut trace = Trace::new(client_config(s, route.mss(), local, isn));
    let ended = play(&mut trace, &mut link, &RealClock::new(), interrupt, log).await?;
    let (c, received) = trace.into_parts();
    Ok((c, received, ended.interrupted))
}

/// Drives one trace over `link`, logging each segment sent.
pub(crate) async fn play<L: Link, C: Clock>(
    trace: &mut Trace,
    link: &mut L,
    clock: &C,
    interrupt: &mut Interrupt<'_>,
    log: Log,
) -> Result<Ended, CmdError> {
    drive_logged(trace, link, clock, interrupt, log, |seg: &TcpRepr| {
        format!(
            "sent {} seq {} ack {} len {}",
            seg.flags,
            seg.seq,
            seg.ack,
            seg.payload.len()
        )
    })
    .await
}

/// Runs the traces and writes the report.
pub async fn run(
    s: &TraceSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<TraceSummary, CmdError> {
    let dst = s.target.ip();
    let route = Route::lookup(dst, s.send.interface.as_deref())?;
    log.debug(|| format!("route to {dst}: {route}"));
    // each repetition opens a capture and a flow-scoped nftables rule: keep
    // just what those need
    crate::io::privileges::keep_only_network()?;
    let sender = RawSender::open(route.src, s.send.interface.as_deref())?;
    let mut pcap = match &s.pcap {
        Some(p) => Some(PcapWriter::create(p)?),
        None => None,
    };
    let target = TraceTarget {
        host: s.host.clone(),
        address: s.target,
        interface: route.interface.clone(),
        close: s.close,
        half_open: s.half_open,
        request_bytes: s.payload.len(),
        time_wait_ms: s.time_wait.as_nanos() as f64 / 1e6,
    };
    if s.format == OutputFormat::Text {
        rep::write_header(out, &target)?;
    }
    let mut interrupt = Interrupt::signals();
    let mut runs = Vec::new();
    let mut was_interrupted = false;
    for i in 0..s.count {
        if i > 0 {
            tokio::select! {
                _ = interrupt.wait() => { was_interrupted = true; break; }
                _ = tokio::time::sleep(s.interval) => {}
            }
        }
        let (c, received, intr) =
            one_trace(s, &route, &sender, &mut pcap, &mut interrupt, log).await?;
        let mut run = TraceRun::from_client(i, &c);
        run.verify(&received, s.half_open);
        match s.format {
            OutputFormat::Text => rep::write_run(out, &target, &run, i == 0)?,
            OutputFormat::Ndjson => rep::write_ndjson_run(out, &run)?,
            OutputFormat::Json => {}
        }
        out.flush()?;
        runs.push(run);
        if intr {
            was_interrupted = true;
            break;
        }
    }
    if let Some(w) = pcap.as_mut() {
        w.flush()?;
    }
    match s.format {
        OutputFormat::Json => rep::write_json(out, &target, &runs, was_interrupted)?,
        OutputFormat::Ndjson => {
            rep::write_ndjson_summary(out, &target, &runs, was_interrupted)?;
        }
        OutputFormat::Text => {
            if runs.len() > 1 {
                rep::write_stats(out, &runs)?;
            }
        }
    }
    let all_succeeded = !runs.is_empty() && runs.iter().all(|r| r.succeeded());
    Ok(TraceSummary {
        runs,
        interrupted: was_interrupted,
        all_succeeded: all_succeeded && !was_interrupted,
    })
}
