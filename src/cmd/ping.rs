//! `synscope ping`: SYN probes at an interval, timed by kernel timestamps.

use super::{CmdError, Log};
use crate::cli::PingSettings;
use crate::event::Timestamp;
use crate::io::bpf::FlowFilter;
use crate::io::pcap::PcapWriter;
use crate::io::timer::PreciseTimer;
use crate::io::{Capture, Captured, PortReservation, RawSender};
use crate::probe::verify::{self, ProbeCheck, Verifier};
use crate::probe::{ProbeResult, SynAnswer, SynPinger, SynProbeConfig};
use crate::report::ping::{PingReport, PingSummary, PingTarget};
use crate::wire::SeqNumber;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use std::time::Instant;

/// Packets read from the capture in one go before timers run again (the rest
/// are read on the next turn, and no probe expires until the buffer is empty).
const DRAIN_MAX: usize = 4096;

/// How long after a deadline a probe is expired: a reply the kernel stamped
/// just before it may still be on its way into the capture queue (another
/// CPU's receive path stamps a packet a few µs before it queues it).
const SETTLE: Duration = Duration::from_millis(1);

/// `--verify`'s state in the loop: the handshakes being checked and the
/// probes whose line waits for them.
struct Verifying<'a> {
    verifier: Verifier,
    waiting: BTreeMap<u16, ProbeResult>,
    answers_every_port: bool,
    sender: &'a RawSender,
}

/// What the loop updates for each captured packet.
struct Loop<'a> {
    pcap: &'a mut Option<PcapWriter>,
    pinger: &'a mut SynPinger,
    held: &'a mut BTreeMap<u16, PortReservation>,
    report: &'a mut PingReport,
    verify: Option<Verifying<'a>>,
}

/// Our timestamp clock for TSval: milliseconds.
fn tsval(t: Timestamp) -> u32 {
    (t.0 / 1_000_000) as u32
}

impl Loop<'_> {
    fn captured(&mut self, out: &mut impl Write, p: Captured) -> Result<(), CmdError> {
        if let Some(w) = self.pcap.as_mut() {
            w.write(p.timestamp, &p.data)?;
        }
        if let Some(v) = self.verify.as_mut()
            && p.direction == crate::event::Direction::Incoming
            && v.verifier.on_packet(&p.data, p.timestamp)
        {
            return Ok(());
        }
        let Some(r) =
            self.pinger
                .on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded)
        else {
            return Ok(());
        };
        let Some(v) = self.verify.as_mut() else {
            self.held.remove(&r.src_port);
            return Ok(self.report.probe(out, r)?);
        };
        match r.verdict {
            SynAnswer::Open => {
                let segs = v.verifier.start(
                    r.src_port,
                    r.isn,
                    &p.data,
                    p.timestamp,
                    r.rtt.unwrap_or_default(),
                    tsval(Timestamp::now()),
                );
                for d in &segs {
                    v.sender.send(self.pinger.config().dst.ip(), d)?;
                }
                if segs.is_empty() {
                    self.held.remove(&r.src_port);
                    self.report.probe(out, r)?;
                } else {
                    // the port stays held until the RST
                    v.waiting.insert(r.src_port, r);
                }
            }
            SynAnswer::Closed => {
                self.held.remove(&r.src_port);
                let check = v.verifier.check_rst(&p.data, p.timestamp);
                self.report.probe_checked(out, r, check)?;
            }
            _ => {
                self.held.remove(&r.src_port);
                self.report.probe(out, r)?;
            }
        }
        Ok(())
    }

    /// Ends the verifications due by `now`: RST each, report its probe.
    fn verify_due(&mut self, out: &mut impl Write, now: Timestamp) -> Result<(), CmdError> {
        let Some(v) = self.verify.as_mut() else {
            return Ok(());
        };
        for done in v.verifier.on_time(now, tsval(now)) {
            v.sender.send(self.pinger.config().dst.ip(), &done.rst)?;
            self.held.remove(&done.src_port);
            let Some(r) = v.waiting.remove(&done.src_port) else {
                continue;
            };
            let check = if v.answers_every_port {
                ProbeCheck::AnswersEveryPort
            } else {
                done.check
            };
            self.report.probe_checked(out, r, Some(check))?;
        }
        Ok(())
    }

    /// Probes (or verifications) still under way.
    fn busy(&self) -> usize {
        self.pinger.outstanding() + self.verify.as_ref().map_or(0, |v| v.waiting.len())
    }
}

/// Canary ports for `--verify`: SYNs to a few random high ports, answered
/// (or timed out) before the real probes. Returns the ports, their verdicts
/// and whether every one answered SYN-ACK; the closed ones' RSTs teach the
/// verifier what the host's RSTs look like.
async fn canaries(
    s: &PingSettings,
    src: std::net::IpAddr,
    mss: u16,
    sender: &RawSender,
    capture: &mut Capture,
    verifier: &mut Verifier,
    pcap: &mut Option<PcapWriter>,
) -> Result<(Vec<u16>, Vec<String>, bool), CmdError> {
    let ports = verify::canary_ports(CANARIES, s.target.port(), rand::random);
    let mut probes = Vec::new();
    let mut held = Vec::new();
    for &port in &ports {
        let mut p = SynPinger::new(SynProbeConfig {
            src,
            dst: std::net::SocketAddr::new(s.target.ip(), port),
            ttl: s.ttl,
            syn_options: s.syn_options,
            mss,
            window: 64240,
            timeout: s.timeout,
        });
        let r = PortReservation::reserve(src, 0)?;
        let now = Timestamp::now();
        let (_, bytes) = p.probe(
            now,
            r.port,
            SeqNumber(rand::random()),
            rand::random(),
            tsval(now),
        );
        sender.send(s.target.ip(), &bytes)?;
        held.push(r);
        probes.push(p);
    }
    let mut results: Vec<Option<SynAnswer>> = vec![None; ports.len()];
    let end = Instant::now() + s.timeout + Duration::from_millis(50);
    while results.iter().any(Option::is_none) && Instant::now() < end {
        match tokio::time::timeout_at(end.into(), capture.recv()).await {
            Ok(p) => {
                let p = p?;
                if let Some(w) = pcap.as_mut() {
                    w.write(p.timestamp, &p.data)?;
                }
                for (i, pr) in probes.iter_mut().enumerate() {
                    if let Some(r) =
                        pr.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded)
                    {
                        if r.verdict == SynAnswer::Closed {
                            verifier.learn(&p.data, p.timestamp);
                        }
                        results[i] = Some(r.verdict);
                    }
                }
            }
            Err(_) => break,
        }
    }
    let verdicts: Vec<String> = results
        .iter()
        .map(|v| match v {
            Some(SynAnswer::Open) => "syn-ack".to_string(),
            Some(SynAnswer::Closed) => "rst".to_string(),
            Some(v) => v.reason().unwrap_or_else(|| "filtered".into()),
            None => "no-answer".to_string(),
        })
        .collect();
    let all = verify::answers_every_port(
        &results
            .iter()
            .map(|v| *v == Some(SynAnswer::Open))
            .collect::<Vec<_>>(),
    );
    Ok((ports, verdicts, all))
}

/// Canary ports `--verify` probes first.
const CANARIES: usize = 3;

/// Runs the pings and writes the report; returns the summary.
pub async fn run(
    s: &PingSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<PingSummary, CmdError> {
    let dst = s.target.ip();
    let super::SynPath {
        route,
        sender,
        mut capture,
        filter,
    } = super::open_syn_path(s.target, s.interface.as_deref(), log)?;
    let mut pcap = match &s.pcap {
        Some(p) => Some(PcapWriter::create(p)?),
        None => None,
    };
    let fixed_port = match s.source_port {
        Some(p) => Some(PortReservation::reserve(route.src, p)?),
        None => None,
    };
    // --verify: a capture for the canary ports, and a rule (for the run) that
    // keeps the kernel from resetting the handshakes we complete from raw
    let (mut canary_capture, _rst_filter) = if s.verify {
        let canary_filter = FlowFilter {
            remote_port: None,
            ..filter.clone()
        };
        let c = Capture::open(route.capture_ifindex(), &canary_filter)?;
        let f =
            crate::io::nft::RstFilter::install(std::net::SocketAddr::new(route.src, 0), s.target)?;
        log.debug(|| {
            format!(
                "nftables table {} drops the kernel's RSTs to {}",
                f.table, s.target
            )
        });
        (Some(c), Some(f))
    } else {
        (None, None)
    };
    // every socket this run needs is open (per-probe port reservations need no
    // privilege): give up every capability
    crate::io::privileges::drop_all()?;
    log.debug(|| {
        format!(
            "capabilities dropped ({} effective left)",
            crate::io::privileges::effective()
        )
    });
    let mut pinger = SynPinger::new(SynProbeConfig {
        src: route.src,
        dst: s.target,
        ttl: s.ttl,
        syn_options: s.syn_options,
        mss: route.mss(),
        window: 64240,
        timeout: s.timeout,
    });
    let target = PingTarget {
        host: s.host.clone(),
        address: s.target,
        source: route.src,
        interface: route.interface.clone(),
        syn_options: s.syn_options,
    };
    let mut timer = PreciseTimer::new()?;
    let mut report = PingReport::new(target, s.format, s.expect);
    report.start(out)?;
    let mut verifying = None;
    if let Some(c) = canary_capture.as_mut() {
        let mut verifier = Verifier::new(route.src, s.target, s.ttl);
        let (ports, verdicts, all) = canaries(
            s,
            route.src,
            route.mss(),
            &sender,
            c,
            &mut verifier,
            &mut pcap,
        )
        .await?;
        log.debug(|| format!("canary ports {ports:?}: {verdicts:?}"));
        report.canaries(out, ports, verdicts, all)?;
        verifying = Some(Verifying {
            verifier,
            waiting: BTreeMap::new(),
            answers_every_port: all,
            sender: &sender,
        });
    }
    drop(canary_capture);

    // ports held while their probe is outstanding
    let mut held: BTreeMap<u16, PortReservation> = BTreeMap::new();
    // The most probes in flight at once. A fixed source port allows one: a
    // second SYN on the same four-tuple would meet the first one's half-open
    // state at the peer (answered with a bare ACK, not a SYN-ACK). Otherwise
    // one reserved port (one socket) each.
    let mut window = if fixed_port.is_some() {
        1
    } else {
        PortReservation::capacity()
    };
    let mut window_said = false;
    // when the first and the last probe went out
    let mut send_span: Option<(Instant, Instant)> = None;
    let started = Instant::now();
    let mut next_send = Instant::now();
    let mut sent: u64 = 0;
    let mut was_interrupted = false;
    let signal = super::interrupted();
    tokio::pin!(signal);
    let mut st = Loop {
        pcap: &mut pcap,
        pinger: &mut pinger,
        held: &mut held,
        report: &mut report,
        verify: verifying,
    };

    loop {
        let more_to_send = s.count.is_none_or(|c| sent < c);
        if !more_to_send && st.busy() == 0 {
            break;
        }
        let can_send = more_to_send && st.busy() < window;
        let verify_deadline = st.verify.as_ref().and_then(|v| v.verifier.next_deadline());
        let next = match (st.pinger.next_deadline(), verify_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = next.map(|d| {
            Instant::now() + Duration::from_nanos(d.0.saturating_sub(Timestamp::now().0)) + SETTLE
        });
        let wake = match (can_send, deadline) {
            (true, Some(d)) => next_send.min(d),
            (true, None) => next_send,
            (false, Some(d)) => d,
            // unreachable: a full window has probes outstanding
            (false, None) => Instant::now() + Duration::from_millis(10),
        };
        tokio::select! {
            biased;
            _ = &mut signal => {
                was_interrupted = true;
                break;
            }
            pkt = capture.recv() => st.captured(out, pkt?)?,
            t = timer.sleep_until(wake) => t?,
        }
        // Everything the kernel queued before `now` is read before any probe
        // expires (at `now` - SETTLE): a burst of replies waiting in the
        // capture buffer is never taken for silence.
        let now = Timestamp::now();
        let mut drained = false;
        for _ in 0..DRAIN_MAX {
            match capture.try_recv()? {
                Some(p) => st.captured(out, p)?,
                None => {
                    drained = true;
                    break;
                }
            }
        }
        if drained {
            let settled = Timestamp(now.0.saturating_sub(SETTLE.as_nanos() as u64));
            for r in st.pinger.on_time(settled) {
                st.held.remove(&r.src_port);
                st.report.probe(out, r)?;
            }
            st.verify_due(out, settled)?;
        }
        let outstanding = st.busy();
        if more_to_send && outstanding >= window && !window_said && Instant::now() >= next_send {
            window_said = true;
            note!(
                "synscope: {outstanding} probe(s) in flight, the most this run tracks at once \
                 ({}): further probes wait for an answer or a timeout, so they go out less \
                 often than every {}",
                if fixed_port.is_some() {
                    "one at a time with a fixed --source-port"
                } else {
                    "one reserved source port each"
                },
                humantime::format_duration(s.interval)
            );
        }
        if more_to_send && outstanding < window && Instant::now() >= next_send {
            let port = match &fixed_port {
                Some(f) => f.port,
                None => match PortReservation::reserve(route.src, 0) {
                    Ok(r) => {
                        let p = r.port;
                        st.held.insert(p, r);
                        p
                    }
                    // ports or files used up by others: wait for ours to free
                    Err(e) if outstanding > 0 && e.is_exhaustion() => {
                        window = outstanding;
                        log.debug(|| format!("window shrunk to {window}: {e}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            let isn = SeqNumber(rand::random());
            let now = Timestamp::now();
            let tsval = (now.0 / 1_000_000) as u32;
            let (key, bytes) = st.pinger.probe(now, port, isn, rand::random(), tsval);
            sender.send(dst, &bytes)?;
            let t = Instant::now();
            send_span = Some((send_span.map_or(t, |(first, _)| first), t));
            log.debug(|| format!("sent SYN {} sport {} isn {}", sent, key.src_port, key.isn));
            sent += 1;
            next_send += s.interval;
            // after a stall, do not fire a burst to catch up
            if next_send < Instant::now() {
                next_send = Instant::now() + s.interval;
            }
        }
        // a 1 ns interval never waits: let the runtime poll its sockets and signals
        tokio::task::consume_budget().await;
    }
    // an interrupt leaves handshakes under check: reset them, unreported
    if let Some(v) = st.verify.as_mut() {
        let now = Timestamp::now();
        for done in v.verifier.on_time(Timestamp(u64::MAX), tsval(now)) {
            v.sender.send(dst, &done.rst)?;
        }
    }
    if let (true, Some((first, last))) = (window_said && sent > 1, send_span) {
        let avg = last.duration_since(first) / (sent - 1).min(u32::MAX as u64) as u32;
        note!(
            "synscope: probes went out every {} on average (asked: every {})",
            crate::report::human(avg),
            humantime::format_duration(s.interval)
        );
    }
    let drops = capture.drops();
    if drops > 0 {
        note!(
            "synscope: the capture buffer overflowed and dropped {drops} packet(s): \
             answers among them are counted as loss"
        );
    }
    if let Some(w) = pcap.as_mut() {
        w.flush()?;
    }
    if let Some(f) = capture.fragments().describe() {
        log.debug(|| f);
    }
    // probes still outstanding at an interrupt are not counted
    let summary = report.summary(pinger.ignored(), started.elapsed(), was_interrupted);
    if !summary.ignored.is_empty() {
        log.debug(|| {
            let parts: Vec<String> = summary
                .ignored
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            format!("ignored packets: {}", parts.join(", "))
        });
    }
    report.finish(out, &summary)?;
    Ok(summary)
}
