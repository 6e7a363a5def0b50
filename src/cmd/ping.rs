//! `synscope ping`: SYN probes at an interval, timed by kernel timestamps.

use super::{CmdError, Log};
use crate::cli::PingSettings;
use crate::event::Timestamp;
use crate::io::bpf::FlowFilter;
use crate::io::pcap::PcapWriter;
use crate::io::timer::PreciseTimer;
use crate::io::{Capture, Captured, PortReservation, RawSender, Route};
use crate::probe::{SynPinger, SynProbeConfig};
use crate::report::ping::{PingReport, PingSummary, PingTarget};
use crate::wire::{Protocol, SeqNumber};
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

/// What the loop updates for each captured packet.
struct Loop<'a> {
    pcap: &'a mut Option<PcapWriter>,
    pinger: &'a mut SynPinger,
    held: &'a mut BTreeMap<u16, PortReservation>,
    report: &'a mut PingReport,
}

impl Loop<'_> {
    fn captured(&mut self, out: &mut impl Write, p: Captured) -> Result<(), CmdError> {
        if let Some(w) = self.pcap.as_mut() {
            w.write(p.timestamp, &p.data)?;
        }
        if let Some(r) =
            self.pinger
                .on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded)
        {
            self.held.remove(&r.src_port);
            self.report.probe(out, r)?;
        }
        Ok(())
    }
}

/// Runs the pings and writes the report; returns the summary.
pub async fn run(
    s: &PingSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<PingSummary, CmdError> {
    let dst = s.target.ip();
    let route = Route::lookup(dst, s.interface.as_deref())?;
    log.debug(|| format!("route to {dst}: {route}"));
    let sender = RawSender::open(route.src, s.interface.as_deref())?;
    let filter = FlowFilter {
        local: route.src,
        remote: Some(dst),
        remote_port: Some(s.target.port()),
        local_ports: None,
        protocol: Protocol::TCP,
        outbound: true,
    };
    let mut capture = Capture::open(route.capture_ifindex(), &filter)?;
    let mut pcap = match &s.pcap {
        Some(p) => Some(PcapWriter::create(p)?),
        None => None,
    };
    let fixed_port = match s.source_port {
        Some(p) => Some(PortReservation::reserve(route.src, p)?),
        None => None,
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
    };

    loop {
        let more_to_send = s.count.is_none_or(|c| sent < c);
        if !more_to_send && st.pinger.outstanding() == 0 {
            break;
        }
        let can_send = more_to_send && st.pinger.outstanding() < window;
        let deadline = st.pinger.next_deadline().map(|d| {
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
        }
        let outstanding = st.pinger.outstanding();
        if more_to_send && outstanding >= window && !window_said && Instant::now() >= next_send {
            window_said = true;
            eprintln!(
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
    if let (true, Some((first, last))) = (window_said && sent > 1, send_span) {
        let avg = last.duration_since(first) / (sent - 1).min(u32::MAX as u64) as u32;
        eprintln!(
            "synscope: probes went out every {} on average (asked: every {})",
            crate::report::human(avg),
            humantime::format_duration(s.interval)
        );
    }
    let drops = capture.drops();
    if drops > 0 {
        eprintln!(
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
                .map(|(k, v)| format!("{v} {}", k.name()))
                .collect();
            format!("ignored packets: {}", parts.join(", "))
        });
    }
    report.finish(out, &summary)?;
    Ok(summary)
}
