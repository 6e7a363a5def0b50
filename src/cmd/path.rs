//! `synscope path`: SYNs to the real port with increasing TTL, all in flight
//! at once, timed by kernel timestamps; where they die and what changed on the way.

use super::{CmdError, Log};
use crate::cli::path::PathSettings;
use crate::event::Timestamp;
use crate::io::pcap::PcapWriter;
use crate::io::timer::PreciseTimer;
use crate::io::{Captured, PortReservation};
use crate::probe::path::{Outcome, PathConfig, PathProber};
use crate::report::path::PathTarget;
use crate::wire::SeqNumber;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Packets read from the capture in one go before timers run again.
const DRAIN_MAX: usize = 4096;
/// How long after a deadline a probe is expired (a reply stamped just before
/// it may still be on its way into the capture queue).
const SETTLE: Duration = Duration::from_millis(1);

/// What a run found, for the exit status.
#[derive(Debug, Clone, Copy)]
pub struct PathSummary {
    /// The destination answered (SYN-ACK or RST).
    pub reached: bool,
    /// Stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
}

/// Runs the probes and writes the report.
pub async fn run(
    s: &PathSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<PathSummary, CmdError> {
    let dst = s.target.ip();
    let super::SynPath {
        route,
        sender,
        mut capture,
        filter: _,
    } = super::open_syn_path(s.target, s.interface.as_deref(), log)?;
    let mut pcap = match &s.pcap {
        Some(p) => Some(PcapWriter::create(p)?),
        None => None,
    };
    // --source-port: that port, held for the run (else one per probe, below)
    let fixed_port = match s.source_port {
        Some(p) => Some(PortReservation::reserve(route.src, p)?),
        None => None,
    };
    crate::io::privileges::drop_all()?;
    let cfg = PathConfig {
        src: route.src,
        dst: s.target,
        max_hops: s.max_hops,
        count: s.count,
        timeout: s.timeout,
        syn_options: s.syn_options,
        mss: route.mss(),
        window: 64240,
        tos: s.tos,
        ecn: s.ecn,
        one_port: fixed_port.is_some(),
    };
    let mut prober = PathProber::new(cfg.clone());
    let mut timer = PreciseTimer::new()?;
    // one reserved source port per probe, held until it is answered or
    // expires: no local connection can take its four-tuple meanwhile. Silent
    // hops wait out their timeout while later ones answer, so up to
    // --max-hops x --count may be held at once: the open-file limit is raised.
    let _ = PortReservation::capacity();
    let mut held: BTreeMap<u16, PortReservation> = BTreeMap::new();
    let mut interrupted = false;
    let signal = super::interrupted();
    tokio::pin!(signal);
    // deadlines are on the kernel's (wall) clock; should it jump back, this
    // monotonic bound still ends the run: every hop waited out once, and a second
    let started = Instant::now();
    let bound = s.timeout * (u32::from(s.max_hops) + 1) + Duration::from_secs(1);
    loop {
        if started.elapsed() > bound {
            prober.on_time(Timestamp(u64::MAX));
        }
        for ttl in prober.due() {
            let port = match &fixed_port {
                Some(r) => r.port,
                None => {
                    let r = PortReservation::reserve(route.src, 0)?;
                    let port = r.port;
                    held.insert(port, r);
                    port
                }
            };
            let now = Timestamp::now();
            let bytes = prober.probe(
                now,
                ttl,
                port,
                SeqNumber(rand::random()),
                rand::random(),
                (now.0 / 1_000_000) as u32,
            );
            sender.send(dst, &bytes)?;
            log.debug(|| format!("sent SYN ttl {ttl} sport {port}"));
        }
        if prober.is_done() {
            break;
        }
        let wake = prober.next_deadline().map_or_else(
            || Instant::now() + Duration::from_millis(10),
            |d| {
                Instant::now()
                    + Duration::from_nanos(d.0.saturating_sub(Timestamp::now().0))
                    + SETTLE
            },
        );
        tokio::select! {
            biased;
            _ = &mut signal => {
                interrupted = true;
                break;
            }
            pkt = capture.recv() => feed(&mut prober, &mut pcap, pkt?)?,
            t = timer.sleep_until(wake) => t?,
        }
        // everything the kernel queued is read before any probe expires
        let now = Timestamp::now();
        let mut drained = false;
        for _ in 0..DRAIN_MAX {
            match capture.try_recv()? {
                Some(p) => feed(&mut prober, &mut pcap, p)?,
                None => {
                    drained = true;
                    break;
                }
            }
        }
        if drained {
            prober.on_time(Timestamp(now.0.saturating_sub(SETTLE.as_nanos() as u64)));
        }
        for port in prober.take_finished() {
            held.remove(&port);
        }
    }
    let drops = capture.drops();
    if drops > 0 {
        note!(
            "synscope: the capture buffer overflowed and dropped {drops} packet(s): \
             answers among them are counted as loss"
        );
    }
    let result = prober.result();
    if !result.ignored.is_empty() {
        log.debug(|| {
            let parts: Vec<String> = result
                .ignored
                .iter()
                .map(|(k, v)| format!("{v} {}", k.name()))
                .collect();
            format!("ignored packets: {}", parts.join(", "))
        });
    }
    let target = PathTarget {
        host: s.host.clone(),
        address: s.target,
        source: route.src,
        interface: route.interface.clone(),
    };
    crate::report::path::write(out, s.format, &target, &cfg, &result, interrupted)?;
    drop(held);
    drop(fixed_port);
    Ok(PathSummary {
        reached: matches!(result.outcome, Outcome::Reached { .. }),
        interrupted,
    })
}

/// One captured packet: to the pcap file (--pcap), then to the prober.
fn feed(
    prober: &mut PathProber,
    pcap: &mut Option<PcapWriter>,
    p: Captured,
) -> Result<(), CmdError> {
    if let Some(w) = pcap.as_mut() {
        w.write(p.timestamp, &p.data)?;
    }
    prober.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded);
    Ok(())
}
