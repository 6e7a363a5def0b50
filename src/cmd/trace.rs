//! `synscope trace`: one (or `--count`) whole TCP connections played with raw
//! segments, timed by the kernel's capture stamps.

use super::{CmdError, Log};
use crate::cli::TraceSettings;
use crate::event::{Direction, Timestamp};
use crate::io::bpf::FlowFilter;
use crate::io::nft::RstFilter;
use crate::io::pcap::PcapWriter;
use crate::io::{Capture, PortReservation, RawSender, Route};
use crate::probe::fingerprint::Fingerprint;
use crate::probe::tcp_client::{TcpClient, TcpClientConfig};
use crate::report::OutputFormat;
use crate::report::trace::{self as rep, TraceRun, TraceTarget};
use crate::wire::datagram::Checksums;
use crate::wire::{Datagram, Protocol, SeqNumber, TcpRepr, Transport};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The outcome of all traces.
pub struct TraceSummary {
    /// Each connection traced, in order.
    pub runs: Vec<TraceRun>,
    /// Stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
    /// Every run succeeded and none was interrupted.
    pub all_succeeded: bool,
}

fn until(t: Timestamp) -> Instant {
    Instant::now() + Duration::from_nanos(t.0.saturating_sub(Timestamp::now().0))
}

struct Io<'a> {
    sender: &'a RawSender,
    dst: std::net::IpAddr,
    log: Log,
}

impl Io<'_> {
    fn send(&self, c: &mut TcpClient, segs: Vec<TcpRepr>) -> Result<(), CmdError> {
        for s in segs {
            let bytes = c.datagram(&s);
            self.sender.send(self.dst, &bytes)?;
            self.log.debug(|| {
                format!(
                    "sent {} seq {} ack {} len {}",
                    s.flags,
                    s.seq,
                    s.ack,
                    s.payload.len()
                )
            });
        }
        Ok(())
    }
}

/// Feeds one captured packet to the client: our own (for its kernel stamp) or the peer's.
#[allow(clippy::too_many_arguments)]
fn on_captured(
    c: &mut TcpClient,
    local: SocketAddr,
    remote: SocketAddr,
    data: &[u8],
    direction: Direction,
    at: Timestamp,
    offloaded: bool,
    received: &mut Vec<Fingerprint>,
) -> Vec<TcpRepr> {
    let mode = if offloaded {
        Checksums::Offloaded
    } else {
        Checksums::Verify
    };
    let Ok(d) = Datagram::parse_with(data, mode) else {
        return Vec::new();
    };
    let t = match d.transport {
        Transport::Tcp(t) => t,
        // an ICMP error quoting one of our segments of this flow
        Transport::Icmp(i) if direction == Direction::Incoming && d.ip.dst == local.ip() => {
            let (Some(error), Some(q)) = (i.error(), i.quoted.as_ref()) else {
                return Vec::new();
            };
            if q.ip.src != local.ip()
                || q.ip.dst != remote.ip()
                || q.ip.protocol != Protocol::TCP
                || q.src_port != local.port()
                || q.dst_port != remote.port()
            {
                return Vec::new();
            }
            return c.on_icmp(error, d.ip.src, q.tcp_seq.map(SeqNumber), at);
        }
        _ => return Vec::new(),
    };
    let ours = d.ip.src == local.ip()
        && t.src_port == local.port()
        && d.ip.dst == remote.ip()
        && t.dst_port == remote.port();
    let theirs = d.ip.src == remote.ip()
        && t.src_port == remote.port()
        && d.ip.dst == local.ip()
        && t.dst_port == local.port();
    match direction {
        Direction::Outgoing if ours => {
            c.on_sent_stamp(&t, at);
            Vec::new()
        }
        Direction::Incoming if theirs => {
            received.extend(Fingerprint::of(data, at));
            c.on_segment(&t, at)
        }
        _ => Vec::new(),
    }
}

/// Where a trace reads its flow's packets: a capture of its own, or a channel
/// fed by a capture shared with other flows (the exporter's dispatcher).
pub(crate) enum Packets<'a> {
    Capture(&'a mut Capture),
    Channel(&'a mut tokio::sync::mpsc::Receiver<crate::io::Captured>),
}

impl Packets<'_> {
    async fn recv(&mut self) -> Result<crate::io::Captured, CmdError> {
        match self {
            Packets::Capture(c) => Ok(c.recv().await?),
            Packets::Channel(rx) => rx
                .recv()
                .await
                .ok_or_else(|| CmdError::Setup("shared capture ended".into())),
        }
    }
}

/// Runs one trace to its end (or an interrupt). Returns the client and whether
/// the run was interrupted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn one_trace(
    s: &TraceSettings,
    route: &Route,
    sender: &RawSender,
    pcap: &mut Option<PcapWriter>,
    signal: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    log: Log,
) -> Result<(TcpClient, Vec<Fingerprint>, bool), CmdError> {
    let dst = s.target;
    let port = PortReservation::reserve(route.src, s.source_port.unwrap_or(0))?;
    let local = SocketAddr::new(route.src, port.port);
    let filter = FlowFilter {
        local: route.src,
        remote: Some(dst.ip()),
        remote_port: Some(dst.port()),
        local_ports: Some((port.port, port.port)),
        protocol: Protocol::TCP,
        outbound: true,
    };
    let mut capture = Capture::open(route.capture_ifindex(), &filter)?;
    let rst_filter = RstFilter::install(local, dst)?;
    log.debug(|| {
        format!(
            "nftables table {} drops the kernel's RSTs to {dst} from {local}",
            rst_filter.table
        )
    });
    let r = drive(
        s,
        route,
        local,
        SeqNumber(rand::random()),
        sender,
        Packets::Capture(&mut capture),
        pcap,
        signal,
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

/// Plays one connection from `local` (a port the caller holds, with the
/// kernel's RSTs kept off it), starting at sequence number `isn`, over
/// `packets` until it ends or `signal` fires.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive(
    s: &TraceSettings,
    route: &Route,
    local: SocketAddr,
    isn: SeqNumber,
    sender: &RawSender,
    mut packets: Packets<'_>,
    pcap: &mut Option<PcapWriter>,
    signal: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    log: Log,
) -> Result<(TcpClient, Vec<Fingerprint>, bool), CmdError> {
    let dst = s.target;
    let mut c = TcpClient::new(TcpClientConfig {
        src: local,
        dst,
        isn,
        ttl: s.ttl,
        mss: route.mss(),
        syn_options: s.syn_options,
        payload: s.payload.clone(),
        close: s.close,
        half_open: s.half_open,
        rto: s.rto,
        max_retries: s.retries,
        idle: s.idle,
        time_wait: s.time_wait,
        max_wait: s.max_wait,
    });
    let io = Io {
        sender,
        dst: dst.ip(),
        log,
    };
    // every segment the peer sent on this flow, for the SYN-ACK check
    let mut received: Vec<Fingerprint> = Vec::new();
    let segs = c.start(Timestamp::now());
    io.send(&mut c, segs)?;
    // a hard bound on top of the machine's own deadlines
    let hard_end = Instant::now() + s.max_wait + s.time_wait + Duration::from_secs(5);
    let mut was_interrupted = false;
    while !c.is_done() {
        let wake = c.poll_at().map(until).unwrap_or(hard_end).min(hard_end);
        tokio::select! {
            biased;
            _ = signal.as_mut() => {
                was_interrupted = true;
                let segs = c.abort(Timestamp::now());
                io.send(&mut c, segs)?;
                break;
            }
            pkt = packets.recv() => {
                let p = pkt?;
                if let Some(w) = pcap.as_mut() {
                    w.write(p.timestamp, &p.data)?;
                }
                let segs = on_captured(&mut c, local, dst, &p.data, p.direction, p.timestamp, p.checksum_offloaded, &mut received);
                io.send(&mut c, segs)?;
            }
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= hard_end {
                    let segs = c.abort(Timestamp::now());
                    io.send(&mut c, segs)?;
                    break;
                }
                let segs = c.poll(Timestamp::now());
                io.send(&mut c, segs)?;
            }
        }
    }
    // collect the kernel's stamps of our last segments
    let settle = Instant::now() + Duration::from_millis(20);
    while let Ok(Ok(p)) = tokio::time::timeout_at(settle, packets.recv()).await {
        if let Some(w) = pcap.as_mut() {
            w.write(p.timestamp, &p.data)?;
        }
        on_captured(
            &mut c,
            local,
            dst,
            &p.data,
            p.direction,
            p.timestamp,
            p.checksum_offloaded,
            &mut received,
        );
    }
    Ok((c, received, was_interrupted))
}

/// Runs the traces and writes the report.
pub async fn run(
    s: &TraceSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<TraceSummary, CmdError> {
    let dst = s.target.ip();
    let route = Route::lookup(dst, s.interface.as_deref())?;
    log.debug(|| format!("route to {dst}: {route}"));
    // each repetition opens a capture and a flow-scoped nftables rule: keep
    // just what those need
    crate::io::privileges::keep_only_network()?;
    let sender = RawSender::open(route.src, s.interface.as_deref())?;
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
    let signal = super::interrupted();
    tokio::pin!(signal);
    let mut runs = Vec::new();
    let mut was_interrupted = false;
    for i in 0..s.count {
        if i > 0 {
            tokio::select! {
                _ = &mut signal => { was_interrupted = true; break; }
                _ = tokio::time::sleep(s.interval) => {}
            }
        }
        let (c, received, intr) =
            one_trace(s, &route, &sender, &mut pcap, &mut signal, log).await?;
        let mut run = TraceRun::from_client(i, &c);
        run.verify(&received, s.half_open);
        if s.format == OutputFormat::Text {
            rep::write_run(out, &target, &run, i == 0)?;
            out.flush()?;
        }
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
        OutputFormat::Json | OutputFormat::Ndjson => {
            rep::write_json(out, &target, &runs, was_interrupted)?;
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
