//! `synscope scan`: each address family's scan is one sans-IO
//! [`ScanMachine`] (the block walk, pacing, rate control, retry rounds,
//! canaries and --verify) run by the one drive loop ([`crate::drive`]) over
//! the scan's real link ([`ScanLink`]: sender threads doing `sendmmsg`, the
//! capture read by the loop). A scan of both address families scans each in
//! turn into one report. Routes, sockets and on-link discovery of each
//! family are in `scan_net`; this file wires them, the machine and the report.

use super::scan_net::{Network, Opened};
use super::{CmdError, Log};
use crate::cli::ScanSettings;
use crate::drive::Ended;
use crate::io::IoError;
use crate::io::scan_link::ScanLink;
use crate::io::{Clock, Link};
use crate::probe::verify::ProbeCheck;
use crate::probe::{Ignored, SynAnswer};
use crate::report::scan::{
    DiscoverySummary, RateSummary, ScanChecks, ScanOutput, ScanResult, ScanSummary,
};
use crate::scan::machine::{Found, ScanTally};
use crate::scan::{Cookie, ScanConfig, ScanEvent, ScanMachine, ScanMatcher, TargetSet};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the families' scans add up to.
#[derive(Default)]
pub(crate) struct Tally {
    probes: u64,
    sent: u64,
    send_errors: u64,
    send_time: Duration,
    ignored: BTreeMap<Ignored, u64>,
    drops: u64,
    cut_short: u64,
    stalls: u64,
    resets_sent: u64,
    kernel_resets_seen: u64,
    skipped: u64,
    unroutable: u64,
    discovery: Option<DiscoverySummary>,
    coverage: RateSummary,
    checks: ScanChecks,
    interrupted: bool,
}

/// Both families' discoveries in one summary ("ARP+NDP").
fn add_discovery(
    a: Option<DiscoverySummary>,
    b: Option<DiscoverySummary>,
) -> Option<DiscoverySummary> {
    match (a, b) {
        (Some(a), Some(b)) => Some(DiscoverySummary {
            method: format!("{}+{}", a.method, b.method),
            addresses: a.addresses + b.addresses,
            up: a.up + b.up,
            down: a.down + b.down,
            requests: a.requests + b.requests,
            elapsed_s: a.elapsed_s + b.elapsed_s,
            known_own: a.known_own + b.known_own,
            known_neighbours: a.known_neighbours + b.known_neighbours,
        }),
        (a, b) => a.or(b),
    }
}

/// Runs the scan and writes its report.
pub fn run(s: &ScanSettings, log: Log) -> Result<ScanSummary, CmdError> {
    let mut output = ScanOutput::new(std::io::stdout(), s.format, s.open_only);
    let (mut tally, started) = in_runtime(async {
        let mut interrupt = super::Interrupt::signals();
        scan_into(s, &mut output, true, log, &mut interrupt).await
    })?;
    tally.interrupted |= super::signalled();
    let summary = summary(s, &mut tally, &output, started.elapsed());
    if tally.stalls > 0 {
        note!(
            "synscope: the kernel's send queue was full {} times (back-pressure); sending slowed down and went on",
            tally.stalls
        );
    }
    if tally.drops > 0 {
        note!(
            "synscope: warning: the capture buffer dropped {} packets (lower --rate); unanswered ports were retried",
            tally.drops
        );
    }
    output.finish(&summary)?;
    Ok(summary)
}

/// The summary of a scan: the families' tally and what the report counted.
pub(crate) fn summary<W: std::io::Write>(
    s: &ScanSettings,
    tally: &mut Tally,
    output: &ScanOutput<W>,
    elapsed: Duration,
) -> ScanSummary {
    let was_interrupted = tally.interrupted;
    let count = |v: &str| output.counts.get(v).copied().unwrap_or(0);
    let reported = count("open")
        + count("closed")
        + count("filtered")
        + count("no-response")
        + count("answers-every-port");
    tally.checks.answers_every_port_pairs = count("answers-every-port");
    ScanSummary {
        hosts: s.targets.iter().map(TargetSet::len).sum(),
        ports: s.ports.len(),
        probes: tally.probes,
        shard: format!("{}/{}", s.shard.index, s.shard.count),
        seed: s.seed,
        sent: tally.sent,
        open: count("open"),
        closed: count("closed"),
        filtered: count("filtered"),
        no_response: count("no-response"),
        send_errors: tally.send_errors,
        elapsed_s: elapsed.as_secs_f64(),
        send_rate_pps: tally.sent as f64 / tally.send_time.as_secs_f64().max(1e-9),
        ignored: std::mem::take(&mut tally.ignored),
        capture_drops: tally.drops,
        interrupted: was_interrupted,
        discovery: tally.discovery.take(),
        skipped_addresses: tally.skipped,
        unroutable_addresses: tally.unroutable,
        send_backpressure: tally.stalls,
        resets_sent: tally.resets_sent,
        kernel_resets_seen: tally.kernel_resets_seen,
        not_probed: if was_interrupted {
            tally.probes.saturating_sub(reported + tally.cut_short)
        } else {
            0
        },
        cut_short: tally.cut_short,
        coverage: tally.coverage.clone(),
        verify: tally.checks.clone(),
    }
}

/// Runs `f` on a runtime of this thread's own (the scan's loop is one
/// thread; its sender threads are the link's).
pub(crate) fn in_runtime<T>(
    f: impl std::future::Future<Output = Result<T, CmdError>>,
) -> Result<T, CmdError> {
    super::runtime()?.block_on(f)
}

/// Scans every family of `s` into `output`; with `drop_privileges` (the
/// command) every capability is given up once the sockets are open. Returns
/// the families' tally and when probing started. Runs inside a tokio runtime.
pub(crate) async fn scan_into<W: std::io::Write>(
    s: &ScanSettings,
    output: &mut ScanOutput<W>,
    drop_privileges: bool,
    log: Log,
    interrupt: &mut super::Interrupt<'_>,
) -> Result<(Tally, Instant), CmdError> {
    // per family: routes per target, every socket, the capture of replies to every source
    // a family with no route at all is counted and said once; the others are
    // scanned (exit 2 only when no target has a route)
    let mut families = Vec::new();
    let mut no_route: Vec<(u64, IoError)> = Vec::new();
    for t in &s.targets {
        match Network::open(s, t, log)? {
            Opened::Net(net) => families.push((t, *net)),
            Opened::NoRoute { addresses, error } => no_route.push((addresses, error)),
        }
    }
    if families.is_empty() && !no_route.is_empty() {
        return Err(no_route.swap_remove(0).1.into());
    }
    let mut tally = Tally::default();
    for (n, e) in &no_route {
        note!(
            "synscope: warning: {n} target address{} not probed: {e}{}",
            if *n == 1 { "" } else { "es" },
            if *n > 1 { " (the first of them)" } else { "" }
        );
        tally.unroutable += n;
    }
    // --verify completes handshakes from raw: the kernel must not reset them
    // (the tables live as long as the scan)
    let mut rst_filters = Vec::new();
    if s.verify {
        for (_, net) in &families {
            for src in net.sources.sources() {
                let port = net.reservation.port;
                rst_filters.push(crate::io::nft::RstFilter::install_range(src, port, port)?);
            }
        }
        log.debug(|| {
            format!(
                "{} nftables tables drop the kernel's RSTs",
                rst_filters.len()
            )
        });
    }
    // every socket is open and no other thread runs yet: give up every capability
    if drop_privileges {
        crate::io::privileges::drop_all()?;
        log.debug(|| {
            format!(
                "capabilities dropped ({} effective left)",
                crate::io::privileges::effective()
            )
        });
    }
    // --pcap: what the loop reads (the replies), one file for both families
    let mut pcap = s
        .pcap
        .as_deref()
        .map(crate::io::pcap::PcapWriter::create)
        .transpose()?;
    let started = Instant::now();
    for (targets, net) in families {
        if interrupt.fired() || super::signalled() {
            tally.probes += s.shard.len(targets.len().saturating_mul(s.ports.len()));
            tally.interrupted = true;
            continue;
        }
        scan_family(s, net, output, pcap.as_mut(), &mut tally, log, interrupt).await?;
    }
    if let Some(mut w) = pcap {
        w.flush()?;
    }
    drop(rst_filters);
    Ok((tally, started))
}

/// Scans one family's targets into `output`: discovery, then the scan
/// machine through the drive loop.
async fn scan_family<W: std::io::Write>(
    s: &ScanSettings,
    mut net: Network,
    output: &mut ScanOutput<W>,
    pcap: Option<&mut crate::io::pcap::PcapWriter>,
    tally: &mut Tally,
    log: Log,
    interrupt: &mut super::Interrupt<'_>,
) -> Result<(), CmdError> {
    // on-link targets: only the hosts that answer ARP / ND get SYNs
    let found = net.discover(s.rate, output, log, interrupt).await?;
    tally.skipped += net.skipped;
    tally.unroutable += net.unroutable;
    tally.stalls += net.stalls;
    tally.discovery = add_discovery(tally.discovery.take(), found.summary);
    let Network {
        sources,
        egress,
        capture,
        reservation,
        mss,
        ..
    } = net;
    let sport = reservation.port;
    let matcher = ScanMatcher {
        sources,
        sport,
        cookie: Cookie::new(rand::random()),
        targets: found.targets,
        ports: s.ports.clone(),
        ttl: s.ttl,
        syn_options: s.send.syn_options,
        mss,
    };
    let mut machine = ScanMachine::new(config(s, matcher));
    let probes = machine.probes();
    log.debug(|| {
        format!(
            "scan: {} probes in shard {}/{} from port {sport} of {:?}, in blocks of {}",
            probes,
            s.shard.index,
            s.shard.count,
            machine.matcher().sources.sources(),
            machine.block_size()
        )
    });
    // one sender per core at high rates: on veth the receiving side's work
    // runs inside the send call, so one thread tops out near one core's worth
    let top_rate = s.auto_rate.map_or(s.rate, |(_, max)| max);
    let lanes = if top_rate >= 100_000 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
    } else {
        1
    };
    let mut link = ScanLink::new(egress, capture.into_async()?, pcap, lanes)?;
    let clock = crate::io::RealClock::new();
    let driven = session(
        &mut machine,
        &mut link,
        &clock,
        output,
        s.progress,
        log,
        interrupt,
    )
    .await;
    let sends = link.finish();
    if let Some(f) = link.capture().fragments().describe() {
        log.debug(|| f);
    }
    // what the machine found dropped, and since it last looked
    tally.drops += machine.tally().capture_drops + link.capture().drops();
    drop(link);
    let (ended, checks) = driven?;
    tally.add_scan(machine.tally(), checks, ended);
    tally.send_errors += sends.refused;
    tally.stalls += sends.stalls;
    if sends.refused > 0 {
        log.debug(|| {
            format!(
                "{} SYNs refused by the kernel, first: {}",
                sends.refused,
                sends
                    .first_error
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
        });
        if sends.sent == 0 {
            return Err(sends
                .first_error
                .map(CmdError::Io)
                .unwrap_or_else(|| CmdError::Setup("every send failed".into())));
        }
    }
    drop(reservation);
    Ok(())
}

/// What the scan machine of one family is asked to do.
pub(crate) fn config(s: &ScanSettings, matcher: ScanMatcher) -> ScanConfig {
    ScanConfig {
        matcher,
        seed: s.seed,
        shard: s.shard,
        block_size: s.block_size,
        rate: s.rate,
        auto_rate: s.auto_rate,
        retries: s.retries,
        wait: s.wait,
        canaries: s.canaries,
        verify: s.verify,
        verbose: s.verbose,
        progress: s.progress,
    }
}

/// Runs one family's scan machine over `link` until it is done or
/// interrupted, each of its events into `output` (and the progress bar, and
/// `-v`); returns how the drive ended and what the checks found.
pub(crate) async fn session<L: Link, C: Clock, W: std::io::Write>(
    machine: &mut ScanMachine,
    link: &mut L,
    clock: &C,
    output: &mut ScanOutput<W>,
    progress: bool,
    log: Log,
    interrupt: &mut super::Interrupt<'_>,
) -> Result<(Ended, ScanChecks), CmdError> {
    let mut progress = Progress::new(progress, machine.probes());
    let mut checks = ScanChecks::default();
    let mut reporter = |e: ScanEvent| -> Result<(), CmdError> {
        match e {
            ScanEvent::Result(f, check) => {
                if let Some(c) = &check {
                    checks.count(c);
                }
                output.result(result_of(f, check))?;
            }
            ScanEvent::Absorbed(f) => output.absorbed(f.host),
            ScanEvent::EveryPort(h) => {
                checks.answers_every_port_hosts += 1;
                output.every_port(&h)?;
            }
            ScanEvent::Progress {
                sent,
                replies,
                rate,
            } => progress.update(sent, replies, rate),
            ScanEvent::Debug(line) => log.debug(|| line),
        }
        Ok(())
    };
    let ended = crate::drive::drive(machine, link, clock, &mut reporter, interrupt).await;
    progress.finish();
    Ok((ended?, checks))
}

impl Tally {
    /// Adds one family's scan: what its machine did, what its checks found
    /// (`checks`, from the report's side) and how its drive ended.
    pub(crate) fn add_scan(&mut self, t: &ScanTally, mut checks: ScanChecks, ended: Ended) {
        self.interrupted |= ended.interrupted || t.interrupted;
        self.probes += t.probes;
        self.sent += t.sent;
        self.send_time += t.send_time;
        self.cut_short += t.cut_short;
        self.resets_sent += t.resets_sent;
        self.kernel_resets_seen += t.kernel_resets_seen;
        for (why, n) in &t.ignored {
            *self.ignored.entry(*why).or_default() += n;
        }
        // what the checks cost (the machine's) and found (the report's)
        checks.canary_hosts = t.follow.canary_hosts;
        checks.canary_probes = t.follow.canary_probes;
        checks.handshakes = t.follow.handshakes;
        self.checks.add(&checks);
        let m = &t.coverage;
        let c = &mut self.coverage;
        c.mode = if m.auto { "auto" } else { "fixed" }.into();
        c.settled_pps = m.settled_pps;
        if m.peak_loss > c.peak_loss {
            c.peak_loss = m.peak_loss;
            c.peak_loss_rate_pps = m.peak_loss_rate_pps;
        }
        c.mean_loss = c.mean_loss.max(m.mean_loss);
        c.extra_rounds += m.extra_rounds;
        c.uncertain_pairs += m.uncertain_pairs;
        c.icmp_silent_pairs += m.icmp_silent_pairs;
    }
}

/// A verdict of the machine as the report has it.
fn result_of(f: Found, check: Option<ProbeCheck>) -> ScanResult {
    let verdict = f.verdict();
    let answered = matches!(verdict, SynAnswer::Open | SynAnswer::Closed);
    ScanResult {
        index: f.index,
        host: f.host,
        port: f.port,
        ttl: f.reply.as_ref().map(|r| r.ttl),
        window: f.reply.as_ref().filter(|_| answered).map(|r| r.window),
        options: f
            .reply
            .filter(|_| verdict == SynAnswer::Open)
            .map(|r| r.options),
        verdict,
        rtt_ns: f.rtt_ns,
        check,
    }
}

/// The progress bar on stderr (only on a terminal, without --quiet): probes
/// sent of the total, the rate and the time left, replies so far.
struct Progress {
    bar: super::progress::Bar,
}

impl Progress {
    fn new(on: bool, total: u64) -> Progress {
        Progress {
            bar: super::progress::Bar::new(on, Some(total), "probes"),
        }
    }
    /// `rate_now`: the rate sent at now (probes/s).
    fn update(&mut self, sent: u64, replies: u64, rate_now: f64) {
        self.bar.update(sent, || {
            let ratio = 100.0 * replies as f64 / sent.max(1) as f64;
            format!("replies {replies} ({ratio:.0} %), now {rate_now:.0}/s")
        });
    }
    fn finish(&self) {
        self.bar.finish();
    }
}
