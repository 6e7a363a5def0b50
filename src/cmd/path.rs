//! `synscope path`: SYNs to the real port with increasing TTL, all in flight
//! at once, timed by kernel timestamps; where they die and what changed on the way.
//!
//! With `--ndjson` each `hop` line is written as soon as the prober reports
//! that hop final (in TTL order; see [`crate::probe::path`]); the hops a stop
//! left unfinished, then the summary, at the end. Text and `--json` are
//! written at the end (the text table is as wide as its widest address).

use super::{CmdError, Interrupt, Log};
use crate::cli::path::PathSettings;
use crate::drive::{Ended, drive};
use crate::io::{CaptureLink, Clock, Link, Packets, PortReservation, RealClock};
use crate::probe::path::{FinalHop, Outcome, PathConfig, PathEvent, PathProber};
use crate::report::OutputFormat;
use crate::report::path::PathTarget;
use std::io::Write;

/// What a run found, for the exit status.
#[derive(Debug, Clone, Copy)]
pub struct PathSummary {
    /// The destination answered (SYN-ACK or RST).
    pub reached: bool,
    /// Stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
}

/// Drives the ladder over `link` to its end, handing each hop to `on_hop`
/// as soon as it is final.
pub(crate) async fn probe<L: Link, C: Clock>(
    prober: &mut PathProber,
    link: &mut L,
    clock: &C,
    interrupt: &mut Interrupt<'_>,
    log: Log,
    on_hop: &mut dyn FnMut(&FinalHop) -> Result<(), CmdError>,
) -> Result<Ended, CmdError> {
    let mut reporter = |e: PathEvent| match e {
        PathEvent::Sent(p) => {
            log.debug(|| format!("sent SYN ttl {} sport {}", p.ttl, p.src_port));
            Ok(())
        }
        PathEvent::Hop(h) => on_hop(&h),
    };
    drive(prober, link, clock, &mut reporter, interrupt).await
}

/// Runs the probes and writes the report.
pub async fn run(
    s: &PathSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<PathSummary, CmdError> {
    let super::SynPath {
        route,
        sender,
        mut capture,
        filter: _,
        mut pcap,
        fixed_port,
    } = super::open_syn_path(s.target, &s.send, s.pcap.as_deref(), log)?;
    crate::io::privileges::drop_all()?;
    let cfg = PathConfig {
        src: route.src,
        dst: s.target,
        max_hops: s.max_hops,
        count: s.count,
        timeout: s.timeout,
        syn_options: s.send.syn_options,
        mss: route.mss(),
        window: 64240,
        tos: s.tos,
        ecn: s.ecn,
        one_port: fixed_port.is_some(),
    };
    let mut prober = PathProber::new(cfg.clone());
    if let Some(f) = &fixed_port {
        prober.set_source_port(f.port);
    }
    // one reserved source port per probe (the link's), held until it is
    // answered or expires. Silent hops wait out their timeout while later
    // ones answer, so up to --max-hops x --count may be held at once: the
    // open-file limit is raised.
    let _ = PortReservation::capacity();
    let mut link = CaptureLink::new(
        &sender,
        Packets::Capture(&mut capture),
        route.src,
        pcap.as_mut(),
    )?;
    // --ndjson: each hop's line as soon as it is final
    let mut streamed = 0;
    let ndjson = s.format == OutputFormat::Ndjson;
    let ended = probe(
        &mut prober,
        &mut link,
        &RealClock::new(),
        &mut Interrupt::signals(),
        log,
        &mut |h: &FinalHop| {
            if ndjson {
                crate::report::path::write_hop(out, h)?;
                out.flush()?;
                streamed = h.hop.ttl;
            }
            Ok(())
        },
    )
    .await?;
    drop(link);
    let interrupted = ended.interrupted;
    super::note_capture_drops(&capture);
    let result = prober.result();
    super::log_ignored(log, &result.ignored, |k| k.name());
    let target = PathTarget {
        host: s.host.clone(),
        address: s.target,
        source: route.src,
        interface: route.interface.clone(),
    };
    crate::report::path::write(out, s.format, &target, &cfg, &result, interrupted, streamed)?;
    if let Some(w) = pcap.as_mut() {
        w.flush()?;
    }
    drop(fixed_port);
    Ok(PathSummary {
        reached: matches!(result.outcome, Outcome::Reached { .. }),
        interrupted,
    })
}
