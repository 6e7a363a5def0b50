//! `synscope scan`: a sender thread paces SYNs over the permuted (host, port)
//! space of this shard; a receiver thread checks replies against their cookies.
//! The space is taken one bounded block at a time (scan::blocks): a block is
//! sent, its unanswered probes retried, its no-responses reported, then the
//! next; per-probe memory is two bits of one block (and a fixed ring of recent
//! send times for RTTs), whatever the size of the target space. A scan of both
//! address families scans each in turn into one report. Routes, sockets and
//! on-link discovery of each family are in `scan_net`.

use super::scan_net::{Network, Opened};
use super::{CmdError, Log};
use crate::cli::ScanSettings;
use crate::event::Timestamp;
use crate::io::IoError;
use crate::io::egress::Egress;
use crate::probe::Ignored;
use crate::probe::SynAnswer;
use crate::report::scan::{
    DiscoverySummary, RateSummary, ScanChecks, ScanOutput, ScanResult, ScanSummary,
};
use crate::scan::blocks::{self, BlockState, Mark};
use crate::scan::follow::{Action, FollowUp};
use crate::scan::pace::Pacer;
use crate::scan::rate::{self, RateControl};
use crate::scan::{Cookie, Permutation, ScanMatcher, TargetSet};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Send times of recent probes, by shard-local probe number modulo its size.
const RING: usize = 1 << 17;
const RELAXED: Ordering = Ordering::Relaxed;

/// State shared by the senders and the receiver (besides the block's bits).
struct Shared {
    ring_probe: Vec<AtomicU64>,
    ring_time: Vec<AtomicU64>,
    replies: AtomicU64,
    last_reply_ns: AtomicU64,
    /// Every reply's RTT, in the buckets of [`rate::rtt_bucket`].
    rtts: Vec<AtomicU64>,
    /// Reads of the receiver that found the capture queue empty.
    idle_reads: AtomicU64,
    stop: AtomicBool,
    /// Rate control: fed by every lane and the receiver; with a fixed rate
    /// it only measures (for the coverage estimate).
    ctl: Mutex<RateControl>,
    /// Hosts that answered with SYN-ACK or RST, by host number hashed into
    /// [`KNOWN_BITS`] bits (a collision only adds a sample).
    known: Vec<AtomicU64>,
    /// Hosts that answered with an ICMP error (filtered), hashed like `known`.
    icmp: Vec<AtomicU64>,
    /// Probes sent from this instant on are retries: not measured (they go
    /// to the ports that did not answer). u64::MAX during a first round.
    retry_since_ns: AtomicU64,
    /// The receiver has read every reply captured up to this instant.
    receiver_ns: AtomicU64,
    /// Replies the capture dropped (its buffer full), as the receiver found.
    capture_drops: AtomicU64,
    /// What the receiver has to send (RSTs of open ports, canaries,
    /// --verify's handshakes): sent by the sender lanes after their SYNs, or
    /// by the receiver when it is idle or the queue is long, so the
    /// receiver's core mostly reads (on a veth the peer's work for a packet
    /// runs inside the send call).
    outbox: Mutex<Vec<(std::net::IpAddr, Vec<u8>)>>,
    ports: u64,
    /// Canaries and --verify (see scan::follow), and what they found.
    follow: Mutex<FollowUp<ScanResult>>,
    checks: Mutex<ScanChecks>,
}

/// Bits of the known-hosts map (512 KiB).
const KNOWN_BITS: u64 = 1 << 22;

impl Shared {
    fn known_bit(&self, index: u64) -> (usize, u64) {
        let host = index / self.ports.max(1);
        let h = host.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - 22);
        debug_assert!(h < KNOWN_BITS);
        ((h / 64) as usize, 1u64 << (h % 64))
    }

    fn is_known(&self, index: u64) -> bool {
        let (w, bit) = self.known_bit(index);
        self.known[w].load(RELAXED) & bit != 0
    }

    /// Marks the host of probe `index` as answering; true if it was known.
    fn mark_known(&self, index: u64) -> bool {
        let (w, bit) = self.known_bit(index);
        self.known[w].fetch_or(bit, RELAXED) & bit != 0
    }

    fn mark_icmp(&self, index: u64) {
        let (w, bit) = self.known_bit(index);
        self.icmp[w].fetch_or(bit, RELAXED);
    }

    fn sent_icmp(&self, index: u64) -> bool {
        let (w, bit) = self.known_bit(index);
        self.icmp[w].load(RELAXED) & bit != 0
    }

    fn sent_at(&self, j: u64) -> Option<u64> {
        let slot = (j as usize) % RING;
        (self.ring_probe[slot].load(RELAXED) == j + 1).then(|| self.ring_time[slot].load(RELAXED))
    }
}

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
    skipped: u64,
    unroutable: u64,
    discovery: Option<DiscoverySummary>,
    coverage: RateSummary,
    checks: ScanChecks,
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

type Output<W> = Mutex<ScanOutput<W>>;

/// Runs the scan and writes its report.
pub fn run(s: &ScanSettings, log: Log) -> Result<ScanSummary, CmdError> {
    super::catch_signals();
    let output: Output<_> = Mutex::new(ScanOutput::new(std::io::stdout(), s.format, s.open_only));
    let (mut tally, started) = scan_into(s, &output, true, log)?;
    let was_interrupted = super::signalled();
    let output = output.into_inner().unwrap_or_else(|e| e.into_inner());
    let count = |v: &str| output.counts.get(v).copied().unwrap_or(0);
    let reported = count("open")
        + count("closed")
        + count("filtered")
        + count("no-response")
        + count("answers-every-port");
    tally.checks.answers_every_port_pairs = count("answers-every-port");
    let summary = ScanSummary {
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
        elapsed_s: started.elapsed().as_secs_f64(),
        send_rate_pps: tally.sent as f64 / tally.send_time.as_secs_f64().max(1e-9),
        ignored: tally.ignored,
        capture_drops: tally.drops,
        interrupted: was_interrupted,
        discovery: tally.discovery,
        skipped_addresses: tally.skipped,
        unroutable_addresses: tally.unroutable,
        send_backpressure: tally.stalls,
        not_probed: if was_interrupted {
            tally.probes.saturating_sub(reported + tally.cut_short)
        } else {
            0
        },
        cut_short: tally.cut_short,
        coverage: tally.coverage,
        verify: tally.checks,
    };
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

/// Scans every family of `s` into `output`; with `drop_privileges` (the
/// command) every capability is given up once the sockets are open. Returns
/// the families' tally and when probing started.
pub(crate) fn scan_into<W: std::io::Write + Send>(
    s: &ScanSettings,
    output: &Output<W>,
    drop_privileges: bool,
    log: Log,
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
    // --pcap: what the receiver reads (the replies), one file for both families
    let pcap = s
        .pcap
        .as_deref()
        .map(crate::io::pcap::PcapWriter::create)
        .transpose()?
        .map(Mutex::new);
    let started = Instant::now();
    for (targets, net) in families {
        if super::signalled() {
            tally.probes += s.shard.len(targets.len().saturating_mul(s.ports.len()));
            continue;
        }
        scan_family(s, net, output, pcap.as_ref(), &mut tally, log)?;
    }
    if let Some(w) = pcap {
        w.into_inner().unwrap_or_else(|e| e.into_inner()).flush()?;
    }
    drop(rst_filters);
    Ok((tally, started))
}

/// Scans one family's targets, block by block, into `output`.
fn scan_family<W: std::io::Write + Send>(
    s: &ScanSettings,
    mut net: Network,
    output: &Output<W>,
    pcap: Option<&Mutex<crate::io::pcap::PcapWriter>>,
    tally: &mut Tally,
    log: Log,
) -> Result<(), CmdError> {
    // on-link targets: only the hosts that answer ARP / ND get SYNs
    let found = net.discover(s.rate, &mut lock(output), log)?;
    tally.skipped += net.skipped;
    tally.unroutable += net.unroutable;
    tally.stalls += net.stalls;
    tally.discovery = add_discovery(tally.discovery.take(), found.summary);
    let Network {
        sources,
        egress: sender,
        mut capture,
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
    let total = matcher.len();
    let perm = Permutation::new(total, s.seed);
    let shard = s.shard;
    let probes = shard.len(total);
    tally.probes += probes;
    let top_rate = s.auto_rate.map_or(s.rate, |(_, max)| max);
    let block = s
        .block_size
        .unwrap_or_else(|| blocks::block_size(top_rate))
        .min(probes.max(1));
    log.debug(|| {
        format!(
            "scan: {} probes in shard {}/{} from port {sport} of {:?}, in blocks of {block}",
            probes,
            shard.index,
            shard.count,
            matcher.sources.sources()
        )
    });
    let state = BlockState::new(block);
    let shared = Shared {
        ring_probe: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        ring_time: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        replies: AtomicU64::new(0),
        last_reply_ns: AtomicU64::new(0),
        rtts: (0..rate::RTT_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        idle_reads: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        ctl: Mutex::new(if s.verbose {
            ctl_for(s).with_history()
        } else {
            ctl_for(s)
        }),
        known: (0..KNOWN_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        icmp: (0..KNOWN_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        retry_since_ns: AtomicU64::new(u64::MAX),
        receiver_ns: AtomicU64::new(0),
        capture_drops: AtomicU64::new(0),
        outbox: Mutex::new(Vec::new()),
        ports: s.ports.len(),
        follow: Mutex::new(FollowUp::new(s.canaries, s.verify)),
        checks: Mutex::new(ScanChecks::default()),
    };
    let following = s.canaries || s.verify;
    let batch = (s.rate / 5000).clamp(1, 64) as usize;
    // one sender per core at high rates: on veth the receiving side's work runs
    // inside the send call, so one thread tops out near one core's worth
    let lanes: u64 = if top_rate >= 100_000 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1)
            .clamp(1, 4)
    } else {
        1
    };
    let (sent_before, errors_before) = (tally.sent, tally.send_errors);
    let mut first_error: Option<IoError> = None;
    let outcome = std::thread::scope(|scope| {
        // the receiver: classify, dedupe, stream results, tear down open connections
        let receiver = scope.spawn(|| -> Result<BTreeMap<Ignored, u64>, CmdError> {
            let mut ignored: BTreeMap<Ignored, u64> = BTreeMap::new();
            let mut checked_ns = 0u64;
            let mut read = 0u64;
            // --verify's handshakes go out at once (their checks time out);
            // the rest waits for a sender (see Shared::outbox)
            let now = s.verify.then_some(&sender);
            loop {
                let before = Timestamp::now().0;
                // --verify: end the handshakes checked long enough (every 5 ms at
                // most), by the capture's clock: every packet stamped before it is
                // read (a busy receiver is behind the wall clock)
                let read_up_to = shared.receiver_ns.load(RELAXED);
                if s.verify && read_up_to.saturating_sub(checked_ns) > 5_000_000 {
                    checked_ns = read_up_to;
                    let due = lock(&shared.follow).on_time(Timestamp(read_up_to), tsval_now());
                    act(due, &shared.outbox, now, output, &shared.checks)?;
                }
                if lock(&shared.outbox).len() >= OUTBOX_MAX {
                    flush_outbox(&shared, &sender);
                }
                let Some(p) =
                    capture.recv_timeout(Duration::from_millis(if s.verify { 5 } else { 20 }))?
                else {
                    note_drops(&capture, &shared);
                    flush_outbox(&shared, &sender);
                    // the queue was empty: everything captured so far is read
                    shared.receiver_ns.fetch_max(before, RELAXED);
                    shared.idle_reads.fetch_add(1, RELAXED);
                    if shared.stop.load(RELAXED) {
                        if let Some(f) = capture.fragments().describe() {
                            log.debug(|| f);
                        }
                        return Ok(ignored);
                    }
                    continue;
                };
                shared.receiver_ns.fetch_max(p.timestamp.0, RELAXED);
                read += 1;
                if read.is_multiple_of(1024) {
                    note_drops(&capture, &shared);
                }
                if let Some(w) = pcap {
                    lock(w).write(p.timestamp, &p.data)?;
                }
                // --verify: a handshake's later segments (RSTs too) go to its check first
                let follow_up = |shared: &Shared| -> Result<bool, CmdError> {
                    let a = lock(&shared.follow).on_packet(
                        &matcher,
                        &p.data,
                        p.checksum_offloaded,
                        p.timestamp,
                    );
                    let taken = a.is_some();
                    act(
                        a.unwrap_or_default(),
                        &shared.outbox,
                        now,
                        output,
                        &shared.checks,
                    )?;
                    Ok(taken)
                };
                if s.verify && follow_up(&shared)? {
                    continue;
                }
                let r = match matcher.classify(&p.data, p.checksum_offloaded, p.timestamp) {
                    Ok(r) => r,
                    Err(why) => {
                        // a canary's answer
                        if following && !s.verify && follow_up(&shared)? {
                            continue;
                        }
                        *ignored.entry(why).or_default() += 1;
                        continue;
                    }
                };
                let Some(j) = shard.local(perm.position(r.index)) else {
                    *ignored.entry(Ignored::NoProbe).or_default() += 1;
                    continue;
                };
                if r.verdict == SynAnswer::Open && !s.verify {
                    // our own RST (besides the kernel's): never leave a half-open connection
                    // (--verify resets after its check)
                    if let Some(rst) = matcher.rst(r.host, r.port) {
                        lock(&shared.outbox).push((r.host, rst));
                    }
                }
                // a duplicate, or a late reply to a block already reported
                if state.mark_answered(j) != Mark::First {
                    *ignored.entry(Ignored::NoProbe).or_default() += 1;
                    continue;
                }
                let sent_ns = shared.sent_at(j);
                let rtt_ns = sent_ns.map(|t| r.at.0.saturating_sub(t));
                // rate control: replies of hosts known to answer, to first rounds
                if matches!(r.verdict, SynAnswer::Open | SynAnswer::Closed)
                    && shared.mark_known(r.index)
                    && let Some(t) = sent_ns
                    && t < shared.retry_since_ns.load(RELAXED)
                {
                    lock(&shared.ctl).on_reply(t, r.at.0);
                }
                if matches!(r.verdict, SynAnswer::Filtered { .. }) {
                    shared.mark_icmp(r.index);
                }
                if let Some(rtt) = rtt_ns {
                    shared.rtts[rate::rtt_bucket(rtt)].fetch_add(1, RELAXED);
                }
                shared.replies.fetch_add(1, RELAXED);
                shared.last_reply_ns.store(Timestamp::now().0, RELAXED);
                let res = ScanResult {
                    index: r.index,
                    host: r.host,
                    port: r.port,
                    ttl: Some(r.ttl),
                    window: matches!(r.verdict, SynAnswer::Open | SynAnswer::Closed)
                        .then_some(r.window),
                    options: (r.verdict == SynAnswer::Open).then_some(r.options),
                    verdict: r.verdict,
                    rtt_ns,
                    check: None,
                };
                let actions = lock(&shared.follow).on_answer(
                    &matcher,
                    res,
                    (r.host, r.port, &r.verdict),
                    &p.data,
                    r.at,
                    Duration::from_nanos(rtt_ns.unwrap_or(0)),
                    Timestamp::now(),
                    rand::random,
                );
                act(actions, &shared.outbox, now, output, &shared.checks)?;
            }
        });
        let sent = send_blocks(
            s,
            &Blocks {
                shared: &shared,
                state: &state,
                matcher: &matcher,
                perm: &perm,
                shard,
                probes,
                block,
                sender: &sender,
                batch,
                lanes,
            },
            output,
            tally,
            &mut first_error,
            log,
        );
        shared.stop.store(true, RELAXED);
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(CmdError::Setup("receiver thread panicked".into())));
        sent.and(received)
    });
    let ignored = outcome?;
    {
        let c = lock(&shared.checks);
        let f = &lock(&shared.follow).counts;
        let t = &mut tally.checks;
        t.canary_hosts += f.canary_hosts;
        t.canary_probes += f.canary_probes;
        t.handshakes += f.handshakes;
        t.answers_every_port_hosts += c.answers_every_port_hosts;
        t.verified += c.verified;
        t.syn_proxy += c.syn_proxy;
        t.unverified += c.unverified;
        t.suspect_rst += c.suspect_rst;
    }
    for (why, n) in ignored {
        *tally.ignored.entry(why).or_default() += n;
    }
    tally.drops += shared.capture_drops.load(RELAXED) + capture.drops();
    let (sent, send_errors) = (tally.sent - sent_before, tally.send_errors - errors_before);
    if send_errors > 0 {
        log.debug(|| {
            format!(
                "{send_errors} SYNs refused by the kernel, first: {}",
                first_error
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
        });
        if send_errors == sent && sent > 0 {
            return Err(first_error
                .map(CmdError::Io)
                .unwrap_or_else(|| CmdError::Setup("every send failed".into())));
        }
    }
    drop(reservation);
    Ok(())
}
/// Packets the receiver queued before whoever sends takes them.
const OUTBOX_MAX: usize = 4096;

/// Sends what the receiver queued (see [`Shared::outbox`]).
fn flush_outbox(shared: &Shared, sender: &Egress) {
    flush(&shared.outbox, sender);
}

fn flush(outbox: &Mutex<Vec<(std::net::IpAddr, Vec<u8>)>>, sender: &Egress) {
    let out = std::mem::take(&mut *lock(outbox));
    if !out.is_empty() {
        let refs: Vec<(std::net::IpAddr, &[u8])> =
            out.iter().map(|(a, d)| (*a, d.as_slice())).collect();
        let _ = sender.send_many(&refs);
    }
}

/// Replies the capture dropped since the last call: counted, and a loss
/// signal for rate control (the receiver cannot keep up with the rate).
fn note_drops(capture: &crate::io::capture::BlockingCapture, shared: &Shared) {
    let n = capture.drops();
    if n > 0 {
        shared.capture_drops.fetch_add(n, RELAXED);
        lock(&shared.ctl).on_capture_drops(Timestamp::now().0, n);
    }
}

/// What sending a family's blocks needs, shared by its sender threads.
struct Blocks<'a> {
    shared: &'a Shared,
    state: &'a BlockState,
    matcher: &'a ScanMatcher,
    perm: &'a Permutation,
    shard: crate::scan::Shard,
    probes: u64,
    block: u64,
    sender: &'a Egress,
    batch: usize,
    lanes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends every block of the family: its rounds, the wait after each, then its
/// no-responses. Ends at the first block after an interrupt; the probes of the
/// block it cut short that were sent but unanswered are counted, not listed.
fn send_blocks<W: std::io::Write + Send>(
    s: &ScanSettings,
    b: &Blocks,
    output: &Output<W>,
    tally: &mut Tally,
    first_error: &mut Option<IoError>,
    log: Log,
) -> Result<(), CmdError> {
    let started = Instant::now();
    let sent_total = AtomicU64::new(0);
    let mut progress = Progress::new(s.progress, b.probes);
    for range in blocks::blocks(b.probes, b.block) {
        if super::signalled() {
            break;
        }
        b.state.start(range.clone());
        let lossy_before = lock(&b.shared.ctl).lossy_slices();
        let judged_before = lock(&b.shared.ctl).judged();
        // the chance that every probe of a pair silent so far was lost
        let mut all_lost = 1.0f64;
        let mut last_round = s.retries;
        let mut round = 0;
        // what each round found: for the loss estimate of a fixed rate
        let mut answered_first = 0u64;
        let mut recovered: Vec<u64> = Vec::new();
        // replies the capture dropped from the last round on
        let mut drops_before = 0u64;
        while round <= last_round {
            if super::signalled() {
                break;
            }
            let pass_start = Instant::now();
            let silent_before = b.state.counts().silent;
            drops_before = b.shared.capture_drops.load(RELAXED);
            b.shared.retry_since_ns.store(
                if round == 0 {
                    u64::MAX
                } else {
                    Timestamp::now().0
                },
                RELAXED,
            );
            let ctx = Pass {
                b,
                range: range.clone(),
                sent: &sent_total,
                round,
                rate_per_lane: s.rate as f64 / b.lanes as f64,
                auto: s.auto_rate.is_some(),
                min_rate: s.auto_rate.map_or(0, |(min, _)| min) as f64,
            };
            let outcomes: Vec<Result<LaneStats, IoError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (1..b.lanes)
                    .map(|lane| {
                        let ctx = &ctx;
                        scope.spawn(move || ctx.run(lane, None))
                    })
                    .collect();
                let mut all = vec![ctx.run(0, Some((&mut progress, started)))];
                all.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|_| Ok(LaneStats::default()))),
                );
                all
            });
            let mut in_pass = 0;
            for o in outcomes {
                let st = o?;
                in_pass += st.sent;
                tally.send_errors += st.refused;
                tally.stalls += st.stalls;
                if first_error.is_none() {
                    *first_error = st.first_error;
                }
            }
            tally.sent += in_pass;
            tally.send_time += pass_start.elapsed();
            let last = round == last_round;
            let waited = wait_for_late_replies(s, b, &mut progress, &sent_total, started, last);
            log.debug(|| {
                format!(
                    "block {range:?} round {round}: {in_pass} SYNs in {:?}, then {waited:?} for late replies; {} capture drops so far",
                    pass_start.elapsed() - waited,
                    b.shared.capture_drops.load(RELAXED)
                )
            });
            {
                let mut ctl = lock(&b.shared.ctl);
                ctl.on_receiver(b.shared.receiver_ns.load(RELAXED));
                ctl.tick(Timestamp::now().0);
                let (n0, l0) = judged_before;
                let (n, l) = ctl.judged();
                let first_round_loss = if n > n0 {
                    ((l - l0) / (n - n0) as f64).clamp(0.0, 1.0)
                } else {
                    ctl.last_loss
                };
                // retries go at the rate control settled on (auto), whose last
                // measured loss applies; at a fixed rate, the first round's
                let loss = if round == 0 || s.auto_rate.is_none() {
                    first_round_loss
                } else {
                    ctl.last_loss
                };
                all_lost *= loss;
                // auto: what went silent while loss was high gets up to two
                // more rounds, at the rate the loss brought us down to, as
                // long as the last retry round still found answers (the
                // silent ports of a clean path are not retried for nothing)
                let counts = b.state.counts();
                if round == 0 {
                    answered_first = counts.answered;
                } else {
                    recovered.push(silent_before.saturating_sub(counts.silent));
                }
                let found = counts.silent < silent_before;
                if round == last_round
                    && s.auto_rate.is_some()
                    && ctl.lossy_slices() > lossy_before
                    && (round == 0 || found)
                    && last_round < s.retries + EXTRA_ROUNDS
                    && !b.state.all_answered()
                {
                    last_round += 1;
                    tally.coverage.extra_rounds += 1;
                }
            }
            if b.state.all_answered() {
                break;
            }
            round += 1;
        }
        // replies that came in time but wait in the capture queue still count
        drain(b.shared);
        if s.canaries || s.verify {
            finish_checks(s, b, output)?;
        }
        // from here a reply to this block is late: the report below is final
        b.state.close();
        let silent = b.state.counts().silent;
        // a fixed rate: also what the retries' finds say (no loss-free
        // baseline needed); the larger of the two
        let from_retries = match s.auto_rate {
            None => rate::lost_after_retries(answered_first, &recovered).unwrap_or(0.0),
            Some(_) => 0.0,
        };
        // each reply the capture dropped in the last round may be a pair
        // now silent
        let dropped = b.shared.capture_drops.load(RELAXED) - drops_before;
        tally.coverage.uncertain_pairs += (silent as f64 * all_lost)
            .max(from_retries)
            .max(dropped as f64)
            .min(silent as f64);
        if super::signalled() {
            tally.cut_short += silent;
            break;
        }
        let mut out = lock(output);
        let mut listed = 0u64;
        b.state.for_each_silent(|j| {
            // a huge block's list takes seconds: an interrupt stops it
            if listed.is_multiple_of(4096) && super::signalled() {
                return Ok(false);
            }
            let index = b.perm.at(b.shard.position(j));
            tally.coverage.icmp_silent_pairs += b.shared.sent_icmp(index) as u64;
            if let Some((host, port)) = b.matcher.target(index) {
                out.result(ScanResult::no_response(index, host, port))?;
            }
            listed += 1;
            Ok(true)
        })?;
        tally.cut_short += silent - listed;
    }
    progress.finish();
    let ctl = lock(&b.shared.ctl);
    log.debug(|| {
        format!(
            "rate control: {} cut(s) undone (the loss was late replies), {} for a receiver that could not keep up ({} capture drops)",
            ctl.spurious_cuts, ctl.overruns, ctl.capture_drops
        )
    });
    // -v: every judged slice, for plots (bench/rate_plot.py reads these)
    for j in ctl.history() {
        log.debug(|| {
            format!(
                "rate-slice t_ms={:.1} sent_pps={:.0} ratio={} loss={} next_pps={:.0}",
                j.at_ns.saturating_sub(ctl.origin()) as f64 / 1e6,
                j.rate,
                j.ratio.map_or("-".into(), |r| format!("{r:.3}")),
                j.loss.map_or("-".into(), |l| format!("{l:.3}")),
                j.next_rate
            )
        });
    }
    let c = &mut tally.coverage;
    c.mode = if s.auto_rate.is_some() {
        "auto"
    } else {
        "fixed"
    }
    .into();
    c.settled_pps = if s.auto_rate.is_some() {
        ctl.rate()
    } else {
        s.rate as f64
    };
    if ctl.peak_loss > c.peak_loss {
        c.peak_loss = ctl.peak_loss;
        c.peak_loss_rate_pps = ctl.peak_loss_rate;
    }
    c.mean_loss = c.mean_loss.max(ctl.mean_loss());
    Ok(())
}

/// Our timestamp clock for TSval now.
fn tsval_now() -> u32 {
    crate::scan::follow::tsval(Timestamp::now())
}

/// Carries out what the checks ask for: packets to the outbox (see
/// [`Shared::outbox`]; with `now`, sent at once, before the results), results
/// to the report.
fn act<W: std::io::Write>(
    actions: Vec<Action<ScanResult>>,
    outbox: &Mutex<Vec<(std::net::IpAddr, Vec<u8>)>>,
    now: Option<&Egress>,
    output: &Output<W>,
    checks: &Mutex<ScanChecks>,
) -> Result<(), CmdError> {
    let sends = actions.iter().any(|a| matches!(a, Action::Send(..)));
    let mut rest = Vec::with_capacity(actions.len());
    for a in actions {
        match a {
            Action::Send(host, d) => lock(outbox).push((host, d)),
            a => rest.push(a),
        }
    }
    if sends && let Some(sender) = now {
        flush(outbox, sender);
    }
    for a in rest {
        match a {
            Action::Send(..) => {}
            Action::Report(mut r, check) => {
                if let Some(c) = &check {
                    lock(checks).count(c);
                }
                r.check = check;
                lock(output).result(r)?;
            }
            Action::Absorbed(r) => lock(output).absorbed(r.host),
            Action::EveryPort(h) => {
                lock(checks).answers_every_port_hosts += 1;
                lock(output).every_port(&h)?;
            }
        }
    }
    Ok(())
}

/// The end of a block's checks: unanswered canaries once more, a wait for
/// their answers and the handshakes under way (as long as for late replies
/// after a last round, at least 50 ms, at most --wait), then every host
/// judged and every held result reported.
fn finish_checks<W: std::io::Write>(
    s: &ScanSettings,
    b: &Blocks,
    output: &Output<W>,
) -> Result<(), CmdError> {
    let again = lock(&b.shared.follow).retry_canaries(b.matcher, tsval_now());
    let retried = !again.is_empty();
    act(
        again,
        &b.shared.outbox,
        Some(b.sender),
        output,
        &b.shared.checks,
    )?;
    // as long as late replies are waited for after a last round
    let rtts: Vec<u64> = b.shared.rtts.iter().map(|n| n.load(RELAXED)).collect();
    let quiet = Duration::from_nanos(rate::quiet_needed(&rtts, true).unwrap_or(u64::MAX));
    let end = Instant::now()
        + quiet
            .max(Duration::from_millis(50))
            .min(s.wait.max(Duration::from_millis(50)));
    while (retried || lock(&b.shared.follow).busy()) && Instant::now() < end && !super::signalled()
    {
        std::thread::sleep(Duration::from_millis(2));
        flush_outbox(b.shared, b.sender);
        if !lock(&b.shared.follow).busy() {
            break;
        }
    }
    drain(b.shared);
    let rest = lock(&b.shared.follow).close(tsval_now());
    act(
        rest,
        &b.shared.outbox,
        Some(b.sender),
        output,
        &b.shared.checks,
    )
}

/// The rate controller of a scan: bounded by --min-rate/--max-rate with
/// --rate auto, pinned to the rate (measuring only) with a fixed one.
fn ctl_for(s: &ScanSettings) -> RateControl {
    let (min, max) = s.auto_rate.unwrap_or((s.rate, s.rate));
    RateControl::new(s.rate as f64, min as f64, max as f64, Timestamp::now().0)
}

/// Rounds --rate auto may add to a block that saw loss.
const EXTRA_ROUNDS: u32 = 2;

/// Waits for late replies after a round: until they have stopped for a few
/// times the RTT of nearly every reply so far (rate::quiet_needed; shorter
/// when a retry round follows, which still takes late replies), at most
/// --wait, at once on an interrupt.
fn wait_for_late_replies(
    s: &ScanSettings,
    b: &Blocks,
    progress: &mut Progress,
    sent: &AtomicU64,
    started: Instant,
    last: bool,
) -> Duration {
    let last_send = Timestamp::now().0;
    let begun = Instant::now();
    let wait_end = begun + s.wait;
    let shared = b.shared;
    while Instant::now() < wait_end && !super::signalled() {
        std::thread::sleep(Duration::from_millis(1));
        flush_outbox(shared, b.sender);
        let quiet_for = Timestamp::now()
            .0
            .saturating_sub(shared.last_reply_ns.load(RELAXED).max(last_send));
        // with no RTT seen yet there is nothing to judge by: wait it all out
        let rtts: Vec<u64> = shared.rtts.iter().map(|n| n.load(RELAXED)).collect();
        let needed = rate::quiet_needed(&rtts, last).unwrap_or(u64::MAX);
        if quiet_for > needed {
            break;
        }
        progress.update(
            sent.load(RELAXED),
            shared.replies.load(RELAXED),
            started,
            lock(&shared.ctl).rate(),
        );
    }
    begun.elapsed()
}

/// Waits until the receiver has read every reply captured so far (it found
/// the queue empty since now), so a reply that came in time is never lost to
/// a busy receiver: at most 10 s (against a flood), at once on an interrupt.
fn drain(shared: &Shared) {
    let seen = shared.idle_reads.load(RELAXED);
    let end = Instant::now() + Duration::from_secs(10);
    while shared.idle_reads.load(RELAXED) <= seen && Instant::now() < end && !super::signalled() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One round of one block, shared by its sender threads ("lanes").
struct Pass<'a> {
    b: &'a Blocks<'a>,
    range: std::ops::Range<u64>,
    sent: &'a AtomicU64,
    round: u32,
    rate_per_lane: f64,
    /// Follow rate control (else: the fixed rate).
    auto: bool,
    /// --min-rate: a slowed-down retry round does not go below it.
    min_rate: f64,
}

#[derive(Default)]
struct LaneStats {
    sent: u64,
    refused: u64,
    /// Times the kernel's queue was full (back-pressure).
    stalls: u64,
    first_error: Option<IoError>,
}

impl Pass<'_> {
    /// Sends lane `lane`'s probes (j = start + lane, start + lane + lanes, ...)
    /// of this round of the block: all of them in round 0, the unanswered ones
    /// after; evenly paced; stops at an interrupt.
    fn run(
        &self,
        lane: u64,
        mut progress: Option<(&mut Progress, Instant)>,
    ) -> Result<LaneStats, IoError> {
        let b = self.b;
        let lanes = b.lanes as f64;
        // auto: a retry round goes at half the controller's rate, a quarter
        // in the next...: retries are few, and the last round's losses are
        // final verdicts
        let scale = 0.5f64.powi(self.round.min(8) as i32);
        let mut pacer = if self.auto {
            Pacer::new(
                (lock(&b.shared.ctl).rate() * scale).max(self.min_rate) / lanes,
                Instant::now(),
            )
        } else {
            Pacer::new(self.rate_per_lane, Instant::now())
        };
        let mut batch = if self.auto {
            batch_for(pacer.target() * lanes, self.round)
        } else {
            b.batch
        };
        let mut st = LaneStats::default();
        let mut j = self.range.start + lane;
        let mut packets: Vec<(std::net::IpAddr, Vec<u8>)> = Vec::with_capacity(b.batch);
        let mut numbers: Vec<u64> = Vec::with_capacity(b.batch);
        loop {
            if super::signalled() {
                break;
            }
            let mut known = 0u64;
            while packets.len() < batch && j < self.range.end {
                if self.round == 0 || !b.state.is_answered(j) {
                    let index = b.perm.at(b.shard.position(j));
                    let tsval = (Timestamp::now().0 / 1_000_000) as u32;
                    if let (Some((host, _)), Some(syn)) = (
                        b.matcher.target(index),
                        b.matcher.syn(index, rand::random(), tsval),
                    ) {
                        packets.push((host, syn));
                        numbers.push(j);
                        known += b.shared.is_known(index) as u64;
                    }
                }
                j += b.lanes;
            }
            if packets.is_empty() {
                break;
            }
            // even pacing (this lane's n-th SYN at start + n/rate), slower under back-pressure
            if !pace_until(pacer.due(st.sent)) {
                break;
            }
            // auto: after an oversleep, go on evenly rather than send a burst
            // to catch up (a policer with a small burst drops bursts)
            if self.auto {
                let gap = Duration::from_secs_f64(4.0 / pacer.rate().max(1.0));
                let due = pacer.due(st.sent);
                if gap >= Duration::from_micros(80) && Instant::now() > due + gap {
                    pacer.retarget(pacer.target(), st.sent, Instant::now());
                }
            }
            let now = Timestamp::now().0;
            for &n in &numbers {
                let slot = (n as usize) % RING;
                b.shared.ring_time[slot].store(now, RELAXED);
                b.shared.ring_probe[slot].store(n + 1, RELAXED);
            }
            b.state.mark_sent(&numbers);
            let refs: Vec<(std::net::IpAddr, &[u8])> =
                packets.iter().map(|(a, b)| (*a, b.as_slice())).collect();
            let out = b.sender.send_many(&refs);
            st.refused += out.refused as u64;
            st.stalls += out.stalls;
            if st.first_error.is_none() {
                st.first_error = out.first_error;
            }
            st.sent += packets.len() as u64;
            flush_outbox(b.shared, b.sender);
            {
                let mut ctl = lock(&b.shared.ctl);
                ctl.on_receiver(b.shared.receiver_ns.load(RELAXED));
                if self.round == 0 {
                    ctl.on_sent(now, packets.len() as u64, known);
                } else {
                    ctl.tick(now);
                }
                if out.stalls > 0 && self.auto {
                    ctl.on_backpressure(now, pacer.rate() * lanes);
                }
                let want = (ctl.rate() * scale).max(self.min_rate) / lanes;
                drop(ctl);
                if self.auto && (want - pacer.target()).abs() > 0.01 * pacer.target() {
                    pacer.retarget(want, st.sent, Instant::now());
                    batch = batch_for(want * lanes, self.round);
                }
            }
            pacer.after_batch(st.sent, out.stalls > 0, Instant::now());
            let total = self.sent.fetch_add(packets.len() as u64, RELAXED) + packets.len() as u64;
            packets.clear();
            numbers.clear();
            if let Some((p, started)) = progress.as_mut() {
                p.update(
                    total,
                    b.shared.replies.load(RELAXED),
                    *started,
                    pacer.rate() * lanes,
                );
            }
        }
        Ok(st)
    }
}

/// SYNs per send call at `rate`: one at low rates, up to 64; one by one in
/// retry rounds below 100k/s (a policer with a small burst drops the tail of
/// a batch).
fn batch_for(rate: f64, round: u32) -> usize {
    if round > 0 && rate < 100_000.0 {
        return 1;
    }
    ((rate / 5000.0) as usize).clamp(1, 64)
}

/// Sleeps until `due`, spinning (yielding) for the last stretch; false if an
/// interrupt came first (a slow --rate sleeps long between SYNs).
fn pace_until(due: Instant) -> bool {
    loop {
        let now = Instant::now();
        if now >= due {
            return true;
        }
        if super::signalled() {
            return false;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep((left - Duration::from_micros(100)).min(Duration::from_millis(50)));
        } else {
            std::thread::yield_now();
        }
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
    fn update(&mut self, sent: u64, replies: u64, _started: Instant, rate_now: f64) {
        self.bar.update(sent, || {
            let ratio = 100.0 * replies as f64 / sent.max(1) as f64;
            format!("replies {replies} ({ratio:.0} %), now {rate_now:.0}/s")
        });
    }
    fn finish(&self) {
        self.bar.finish();
    }
}
