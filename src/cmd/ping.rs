//! `synscope ping`: SYN probes at an interval, timed by kernel timestamps.
//! The probing is [`PingMachine`]'s (and, with `--verify`, [`CanaryMachine`]'s
//! first), run by the one drive loop; this file opens the sockets and writes
//! what the machine reports.

use super::{CmdError, Interrupt, Log};
use crate::cli::PingSettings;
use crate::drive::{Ended, drive};
use crate::io::bpf::FlowFilter;
use crate::io::{Capture, CaptureLink, Clock, Link, Packets, PortReservation, RealClock};
use crate::probe::ping::{CanaryMachine, PingConfig, PingEvent, PingMachine, Verifying};
use crate::probe::{Ignored, ProbeResult, SynProbeConfig};
use crate::report::ping::{PingReport, PingSummary, PingTarget};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Runs the pings and writes the report; returns the summary.
pub async fn run(
    s: &PingSettings,
    out: &mut impl Write,
    log: Log,
) -> Result<PingSummary, CmdError> {
    let super::SynPath {
        route,
        sender,
        mut capture,
        filter,
        mut pcap,
        fixed_port,
    } = super::open_syn_path(s.target, &s.send, s.pcap.as_deref(), log)?;
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
    let probe = SynProbeConfig {
        src: route.src,
        dst: s.target,
        ttl: s.ttl,
        syn_options: s.send.syn_options,
        mss: route.mss(),
        window: 64240,
        timeout: s.timeout,
    };
    let target = PingTarget {
        host: s.host.clone(),
        address: s.target,
        source: route.src,
        interface: route.interface.clone(),
        syn_options: s.send.syn_options,
    };
    let clock = RealClock::new();
    let mut interrupt = Interrupt::signals();
    let mut report = PingReport::new(target, s.format, s.expect);
    report.start(out)?;
    let mut verifying = None;
    if let Some(c) = canary_capture.as_mut() {
        let mut link = CaptureLink::new(&sender, Packets::Capture(c), route.src, pcap.as_mut())?;
        let mut canaries = CanaryMachine::new(&probe, rand::random);
        drive(
            &mut canaries,
            &mut link,
            &clock,
            &mut |()| Ok(()),
            &mut interrupt,
        )
        .await?;
        let c = canaries.finish();
        log.debug(|| format!("canary ports {:?}: {:?}", c.ports, c.verdicts));
        report.canaries(out, c.ports, c.verdicts, c.all_answer)?;
        verifying = Some(Verifying::new(c.verifier, c.all_answer));
    }
    drop(canary_capture);

    let mut machine = PingMachine::new(
        PingConfig {
            probe,
            interval: s.interval,
            count: s.count,
            fixed_port: fixed_port.as_ref().map(|f| f.port),
            // the most probes in flight at once: one reserved port (one socket) each
            window: PortReservation::capacity(),
            bound: None,
            settle: crate::probe::ping::SETTLE,
        },
        verifying,
    );
    let mut link = CaptureLink::new(
        &sender,
        Packets::Capture(&mut capture),
        route.src,
        pcap.as_mut(),
    )?;
    let summary = session(
        &mut machine,
        &mut link,
        &clock,
        &mut report,
        out,
        s.interval,
        log,
        &mut interrupt,
    )
    .await?;
    drop(link);
    super::note_capture_drops(&capture);
    if let Some(w) = pcap.as_mut() {
        w.flush()?;
    }
    if let Some(f) = capture.fragments().describe() {
        log.debug(|| f);
    }
    report.finish(out, &summary)?;
    Ok(summary)
}

/// Drives `machine` over `link` to its end, writing each probe to `report`;
/// returns the summary (not yet written). `interval` is what was asked, for
/// the notice when the window kept probes back.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn session<L: Link, C: Clock>(
    machine: &mut PingMachine,
    link: &mut L,
    clock: &C,
    report: &mut PingReport,
    out: &mut impl Write,
    interval: Duration,
    log: Log,
    interrupt: &mut Interrupt<'_>,
) -> Result<PingSummary, CmdError> {
    let fixed = machine.fixed_port();
    let Ended { interrupted, .. } = drive(
        machine,
        link,
        clock,
        &mut |e: PingEvent| -> Result<(), CmdError> {
            match e {
                PingEvent::Sent { seq, src_port, isn } => {
                    log.debug(|| format!("sent SYN {seq} sport {src_port} isn {isn}"))
                }
                PingEvent::Probe(r) => report.probe(out, r)?,
                PingEvent::Checked(r, check) => report.probe_checked(out, r, check)?,
                PingEvent::WindowFull { outstanding } => note!(
                    "synscope: {outstanding} probe(s) in flight, the most this run tracks at once \
                     ({}): further probes wait for an answer or a timeout, so they go out less \
                     often than every {}",
                    if fixed {
                        "one at a time with a fixed --source-port"
                    } else {
                        "one reserved source port each"
                    },
                    humantime::format_duration(interval)
                ),
                PingEvent::WindowShrunk { window } => {
                    log.debug(|| format!("source ports ran out: window shrunk to {window}"))
                }
            }
            Ok(())
        },
        interrupt,
    )
    .await?;
    let sent = machine.sent();
    if let (true, Some((first, last))) =
        (machine.window_was_full() && sent > 1, machine.send_span())
    {
        let avg = last.saturating_sub(first) / (sent - 1).min(u32::MAX as u64) as u32;
        note!(
            "synscope: probes went out every {} on average (asked: every {})",
            crate::report::human(avg),
            humantime::format_duration(interval)
        );
    }
    // probes still outstanding at an interrupt are not counted
    let summary = report.summary(machine.ignored(), clock.elapsed(), interrupted);
    super::log_ignored(log, &summary.ignored, String::as_str);
    Ok(summary)
}

/// One SYN from `port` (held by the caller) over `link`, expired `settle`
/// after its deadline, the whole probe ended after `bound` at most: its
/// result (None if the bound ended it first) and the packets ignored on the way.
pub(crate) async fn one_syn<L: Link>(
    probe: SynProbeConfig,
    port: u16,
    settle: Duration,
    bound: Option<Duration>,
    link: &mut L,
) -> Result<(Option<ProbeResult>, BTreeMap<Ignored, u64>), CmdError> {
    let mut machine = PingMachine::new(
        PingConfig {
            interval: probe.timeout,
            probe,
            count: Some(1),
            fixed_port: Some(port),
            window: 1,
            bound,
            settle,
        },
        None,
    );
    let mut result = None;
    drive(
        &mut machine,
        link,
        &RealClock::new(),
        &mut |e| {
            if let PingEvent::Probe(r) = e {
                result = Some(r);
            }
            Ok(())
        },
        &mut Interrupt::never(),
    )
    .await?;
    Ok((result, machine.ignored().clone()))
}
