//! `synscope ping`: SYN probes at an interval, timed by kernel timestamps.

use super::{CmdError, Log};
use crate::cli::PingSettings;
use crate::event::Timestamp;
use crate::io::bpf::FlowFilter;
use crate::io::timer::PreciseTimer;
use crate::io::{Capture, PortReservation, RawSender, Route};
use crate::probe::{SynPinger, SynProbeConfig};
use crate::report::ping::{PingReport, PingSummary, PingTarget};
use crate::wire::{Protocol, SeqNumber};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use std::time::Instant;

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
        Some(p) => Some(crate::io::pcap::PcapWriter::create(p)?),
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
    let started = Instant::now();
    let mut next_send = Instant::now();
    let mut sent: u64 = 0;
    let mut was_interrupted = false;
    let signal = super::interrupted();
    tokio::pin!(signal);

    loop {
        let more_to_send = s.count.is_none_or(|c| sent < c);
        if !more_to_send && pinger.outstanding() == 0 {
            break;
        }
        let mut wake = next_send;
        if let Some(d) = pinger.next_deadline() {
            let until = Duration::from_nanos(d.0.saturating_sub(Timestamp::now().0));
            let at = Instant::now() + until;
            if !more_to_send || at < wake {
                wake = at;
            }
        }
        tokio::select! {
            biased;
            _ = &mut signal => {
                was_interrupted = true;
                break;
            }
            pkt = capture.recv() => {
                let p = pkt?;
                if let Some(w) = pcap.as_mut() {
                    w.write(p.timestamp, &p.data)?;
                }
                if let Some(r) = pinger.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded) {
                    held.remove(&r.src_port);
                    report.probe(out, r)?;
                }
            }
            t = timer.sleep_until(wake) => {
                t?;
                for r in pinger.on_time(Timestamp::now()) {
                    held.remove(&r.src_port);
                    report.probe(out, r)?;
                }
                if more_to_send && Instant::now() >= next_send {
                    let port = match &fixed_port {
                        Some(f) => f.port,
                        None => {
                            let r = PortReservation::reserve(route.src, 0)?;
                            let p = r.port;
                            held.insert(p, r);
                            p
                        }
                    };
                    let isn = SeqNumber(rand::random());
                    let now = Timestamp::now();
                    let tsval = (now.0 / 1_000_000) as u32;
                    let (key, bytes) = pinger.probe(now, port, isn, rand::random(), tsval);
                    sender.send(dst, &bytes)?;
                    log.debug(|| format!("sent SYN {} sport {} isn {}", sent, key.src_port, key.isn));
                    sent += 1;
                    next_send += s.interval;
                    // after a stall, do not fire a burst to catch up
                    if next_send < Instant::now() {
                        next_send = Instant::now() + s.interval;
                    }
                }
            }
        }
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
