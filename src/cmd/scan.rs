//! `synscope scan`: a sender thread paces SYNs over the permuted (host, port)
//! space of this shard; a receiver thread checks replies against their cookies.
//! The only per-probe memory is one "answered" bit (and a fixed ring of recent
//! send times for RTTs), so memory does not grow with replies in flight.

use super::scan_net::Network;
use super::{CmdError, Log};
use crate::cli::ScanSettings;
use crate::event::Timestamp;
use crate::io::IoError;
use crate::io::egress::Egress;
use crate::probe::Ignored;
use crate::report::scan::{ScanOutput, ScanResult, ScanSummary};
use crate::scan::pace::Pacer;
use crate::scan::{Cookie, Permutation, ScanMatcher, ScanVerdict};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Send times of recent probes, by shard-local probe number modulo its size.
const RING: usize = 1 << 17;
const RELAXED: Ordering = Ordering::Relaxed;

/// State shared by the sender and the receiver.
struct Shared {
    /// One bit per probe of this shard: answered.
    answered: Vec<AtomicU64>,
    ring_probe: Vec<AtomicU64>,
    ring_time: Vec<AtomicU64>,
    replies: AtomicU64,
    last_reply_ns: AtomicU64,
    max_rtt_ns: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Marks probe `j` answered; false if it already was (a duplicate).
    fn mark(&self, j: u64) -> bool {
        let bit = 1u64 << (j % 64);
        self.answered[(j / 64) as usize].fetch_or(bit, RELAXED) & bit == 0
    }
    fn is_answered(&self, j: u64) -> bool {
        self.answered[(j / 64) as usize].load(RELAXED) & (1 << (j % 64)) != 0
    }
    fn sent_at(&self, j: u64) -> Option<u64> {
        let slot = (j as usize) % RING;
        (self.ring_probe[slot].load(RELAXED) == j + 1).then(|| self.ring_time[slot].load(RELAXED))
    }
}

/// What the receiver hands back when it ends.
struct Received<W: Write> {
    output: ScanOutput<W>,
    ignored: BTreeMap<Ignored, u64>,
    drops: u64,
}

/// Is a SIGINT or SIGTERM pending? (checked between batches)
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let _ = signal_hook_register(sig, flag.clone());
    }
    flag
}

fn signal_hook_register(sig: i32, flag: Arc<AtomicBool>) -> Result<(), std::io::Error> {
    // a tokio-free signal watch: a thread blocked in sigwait would need masks on
    // every thread; a tiny runtime thread is simpler and dies with the process
    std::thread::Builder::new()
        .name(format!("signal-{sig}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async {
                let kind = tokio::signal::unix::SignalKind::from_raw(sig);
                if let Ok(mut s) = tokio::signal::unix::signal(kind) {
                    s.recv().await;
                    flag.store(true, RELAXED);
                }
            });
        })?;
    Ok(())
}

pub fn run(s: &ScanSettings, log: Log) -> Result<ScanSummary, CmdError> {
    let interrupted = interrupt_flag();
    // routes per target, every socket, the capture of replies to every source
    let mut net = Network::open(s, log)?;
    // every socket is open and no other thread runs yet: give up every capability
    crate::io::privileges::drop_all()?;
    log.debug(|| {
        format!(
            "capabilities dropped ({} effective left)",
            crate::io::privileges::effective()
        )
    });
    let mut output = ScanOutput::new(std::io::stdout(), s.format, s.open_only);
    // on-link targets: only the hosts that answer ARP / ND get SYNs
    let found = net.discover(s.rate, &mut output, &interrupted, log)?;
    let sport = net.reservation.port;
    let mut capture = net.capture;
    let reservation = net.reservation;
    let sender = Arc::new(net.egress);
    let matcher = Arc::new(ScanMatcher {
        sources: net.sources,
        sport,
        cookie: Cookie::new(rand::random()),
        targets: found.targets,
        ports: s.ports.clone(),
        ttl: s.ttl,
        syn_options: s.syn_options,
        mss: net.mss,
    });
    let total = matcher.len();
    let perm = Arc::new(Permutation::new(total, s.seed));
    let shard = s.shard;
    let probes = shard.len(total);
    log.debug(|| {
        format!(
            "scan: {} probes in shard {}/{} from port {sport} of {:?}",
            probes,
            shard.index,
            shard.count,
            matcher.sources.sources()
        )
    });
    let shared = Arc::new(Shared {
        answered: (0..probes.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect(),
        ring_probe: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        ring_time: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        replies: AtomicU64::new(0),
        last_reply_ns: AtomicU64::new(0),
        max_rtt_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    // the receiver: classify, dedupe, stream NDJSON, tear down open connections
    let receiver = {
        let (shared, matcher, perm, sender) = (
            shared.clone(),
            matcher.clone(),
            perm.clone(),
            sender.clone(),
        );
        std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || -> Result<Received<std::io::Stdout>, CmdError> {
                let mut ignored: BTreeMap<Ignored, u64> = BTreeMap::new();
                loop {
                    let Some(p) = capture.recv_timeout(Duration::from_millis(20))? else {
                        if shared.stop.load(RELAXED) {
                            break;
                        }
                        continue;
                    };
                    let r = match matcher.classify(&p.data, p.checksum_offloaded, p.timestamp) {
                        Ok(r) => r,
                        Err(why) => {
                            *ignored.entry(why).or_default() += 1;
                            continue;
                        }
                    };
                    let Some(j) = shard.local(perm.position(r.index)) else {
                        *ignored.entry(Ignored::NoProbe).or_default() += 1;
                        continue;
                    };
                    if r.verdict == ScanVerdict::Open {
                        // our own RST (besides the kernel's): never leave a half-open connection
                        if let Some(rst) = matcher.rst(r.host, r.port) {
                            let _ = sender.send(r.host, &rst);
                        }
                    }
                    if !shared.mark(j) {
                        *ignored.entry(Ignored::NoProbe).or_default() += 1;
                        continue;
                    }
                    let rtt_ns = shared.sent_at(j).map(|t| r.at.0.saturating_sub(t));
                    if let Some(rtt) = rtt_ns {
                        shared.max_rtt_ns.fetch_max(rtt, RELAXED);
                    }
                    shared.replies.fetch_add(1, RELAXED);
                    shared.last_reply_ns.store(Timestamp::now().0, RELAXED);
                    let res = ScanResult {
                        index: r.index,
                        host: r.host,
                        port: r.port,
                        ttl: Some(r.ttl),
                        window: matches!(r.verdict, ScanVerdict::Open | ScanVerdict::Closed)
                            .then_some(r.window),
                        options: (r.verdict == ScanVerdict::Open).then_some(r.options),
                        verdict: r.verdict,
                        rtt_ns,
                    };
                    output.result(res)?;
                }
                Ok(Received {
                    output,
                    ignored,
                    drops: capture.drops(),
                })
            })
            .map_err(|e| CmdError::Setup(format!("start receiver thread: {e}")))?
    };

    let started = Instant::now();
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut stalls = net.stalls;
    let mut send_time = Duration::ZERO;
    let batch = (s.rate / 5000).clamp(1, 64) as usize;
    let mut progress = Progress::new(s.progress, probes);
    let mut first_error: Option<IoError> = None;
    let sent_total = AtomicU64::new(0);
    // one sender per core at high rates: on veth the receiving side's work runs
    // inside the send call, so one thread tops out near one core's worth
    let lanes: u64 = if s.rate >= 100_000 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1)
            .clamp(1, 4)
    } else {
        1
    };
    for round in 0..=s.retries {
        // nothing to probe (every on-link target down): no wait for replies either
        if interrupted.load(RELAXED) || probes == 0 {
            break;
        }
        let pass_start = Instant::now();
        let ctx = Pass {
            shared: &shared,
            matcher: &matcher,
            perm: &perm,
            shard,
            probes,
            sender: &sender,
            interrupted: &interrupted,
            sent: &sent_total,
            round,
            batch,
            rate_per_lane: s.rate as f64 / lanes as f64,
            lanes,
        };
        let outcomes: Vec<Result<LaneStats, IoError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..lanes)
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
            send_errors += st.refused;
            stalls += st.stalls;
            if first_error.is_none() {
                first_error = st.first_error;
            }
        }
        sent += in_pass;
        send_time += pass_start.elapsed();
        log.debug(|| {
            format!(
                "round {round}: {in_pass} SYNs in {:?}",
                pass_start.elapsed()
            )
        });
        // wait for late replies: until they have stopped for a while, at most --wait
        let last_send = Timestamp::now().0;
        let wait_end = Instant::now() + s.wait;
        while Instant::now() < wait_end && !interrupted.load(RELAXED) {
            std::thread::sleep(Duration::from_millis(2));
            let quiet_for = Timestamp::now()
                .0
                .saturating_sub(shared.last_reply_ns.load(RELAXED).max(last_send));
            // with no RTT seen yet there is nothing to judge by: wait it all out
            let max_rtt = shared.max_rtt_ns.load(RELAXED);
            let needed = if max_rtt == 0 {
                u64::MAX
            } else {
                (max_rtt * 8).max(20_000_000)
            };
            if quiet_for > needed {
                break;
            }
            progress.update(sent, shared.replies.load(RELAXED), started);
        }
        if (0..probes).all(|j| shared.is_answered(j)) {
            break;
        }
    }
    progress.finish();
    shared.stop.store(true, RELAXED);
    let received = receiver
        .join()
        .map_err(|_| CmdError::Setup("receiver thread panicked".into()))??;
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
    let was_interrupted = interrupted.load(RELAXED);
    let Received {
        mut output,
        ignored,
        drops,
    } = received;
    // no-response: every probe of the shard without an answered bit
    for j in 0..probes {
        if !shared.is_answered(j) {
            let index = perm.at(shard.position(j));
            if let Some((host, port)) = matcher.target(index) {
                let r = ScanResult {
                    index,
                    host,
                    port,
                    verdict: ScanVerdict::NoResponse,
                    rtt_ns: None,
                    ttl: None,
                    window: None,
                    options: None,
                };
                output.result(r)?;
            }
        }
    }
    let count = |v: &str| output.counts.get(v).copied().unwrap_or(0);
    let summary = ScanSummary {
        hosts: s.targets.len(),
        ports: s.ports.len(),
        probes,
        shard: format!("{}/{}", shard.index, shard.count),
        seed: s.seed,
        sent,
        open: count("open"),
        closed: count("closed"),
        filtered: count("filtered"),
        no_response: count("no-response"),
        send_errors,
        elapsed_s: started.elapsed().as_secs_f64(),
        send_rate_pps: sent as f64 / send_time.as_secs_f64().max(1e-9),
        ignored,
        capture_drops: drops,
        interrupted: was_interrupted,
        discovery: found.summary,
        skipped_addresses: net.skipped,
        unroutable_addresses: net.unroutable,
        send_backpressure: stalls,
        not_probed: 0,
        cut_short: 0,
    };
    if stalls > 0 {
        eprintln!(
            "synscope: the kernel's send queue was full {stalls} times (back-pressure); sending slowed down and went on"
        );
    }
    if drops > 0 {
        eprintln!(
            "synscope: warning: the capture buffer dropped {drops} packets (lower --rate); unanswered ports were retried"
        );
    }
    output.finish(&summary)?;
    drop(reservation);
    Ok(summary)
}

/// What one round of sending needs, shared by its sender threads ("lanes").
struct Pass<'a> {
    shared: &'a Shared,
    matcher: &'a ScanMatcher,
    perm: &'a Permutation,
    shard: crate::scan::Shard,
    probes: u64,
    sender: &'a Egress,
    interrupted: &'a AtomicBool,
    sent: &'a AtomicU64,
    round: u32,
    batch: usize,
    rate_per_lane: f64,
    lanes: u64,
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
    /// Sends lane `lane`'s probes (j = lane, lane + lanes, ...) of this round:
    /// all of them in round 0, the unanswered ones after; evenly paced.
    fn run(
        &self,
        lane: u64,
        mut progress: Option<(&mut Progress, Instant)>,
    ) -> Result<LaneStats, IoError> {
        let mut pacer = Pacer::new(self.rate_per_lane, Instant::now());
        let mut st = LaneStats::default();
        let mut j = lane;
        let mut packets: Vec<(std::net::IpAddr, Vec<u8>)> = Vec::with_capacity(self.batch);
        let mut numbers: Vec<u64> = Vec::with_capacity(self.batch);
        loop {
            if self.interrupted.load(RELAXED) {
                break;
            }
            while packets.len() < self.batch && j < self.probes {
                if self.round == 0 || !self.shared.is_answered(j) {
                    let index = self.perm.at(self.shard.position(j));
                    let tsval = (Timestamp::now().0 / 1_000_000) as u32;
                    if let (Some((host, _)), Some(syn)) = (
                        self.matcher.target(index),
                        self.matcher.syn(index, rand::random(), tsval),
                    ) {
                        packets.push((host, syn));
                        numbers.push(j);
                    }
                }
                j += self.lanes;
            }
            if packets.is_empty() {
                break;
            }
            // even pacing (this lane's n-th SYN at start + n/rate), slower under back-pressure
            pace_until(pacer.due(st.sent));
            let now = Timestamp::now().0;
            for &n in &numbers {
                let slot = (n as usize) % RING;
                self.shared.ring_time[slot].store(now, RELAXED);
                self.shared.ring_probe[slot].store(n + 1, RELAXED);
            }
            let refs: Vec<(std::net::IpAddr, &[u8])> =
                packets.iter().map(|(a, b)| (*a, b.as_slice())).collect();
            let out = self.sender.send_many(&refs);
            st.refused += out.refused as u64;
            st.stalls += out.stalls;
            if st.first_error.is_none() {
                st.first_error = out.first_error;
            }
            st.sent += packets.len() as u64;
            pacer.after_batch(st.sent, out.stalls > 0, Instant::now());
            let total = self.sent.fetch_add(packets.len() as u64, RELAXED) + packets.len() as u64;
            packets.clear();
            numbers.clear();
            if let Some((p, started)) = progress.as_mut() {
                p.update(total, self.shared.replies.load(RELAXED), *started);
            }
        }
        Ok(st)
    }
}

/// Sleeps until `due`, spinning (yielding) for the last stretch.
fn pace_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// The progress line on stderr (only on a terminal).
struct Progress {
    on: bool,
    total: u64,
    last: Instant,
}

impl Progress {
    fn new(on: bool, total: u64) -> Progress {
        Progress {
            on,
            total,
            last: Instant::now(),
        }
    }
    fn update(&mut self, sent: u64, replies: u64, started: Instant) {
        if !self.on || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let secs = started.elapsed().as_secs_f64();
        let rate = sent as f64 / secs.max(1e-9);
        let eta = self.total.saturating_sub(sent) as f64 / rate.max(1.0);
        let pct = 100.0 * sent.min(self.total) as f64 / self.total.max(1) as f64;
        eprint!(
            "\r[{pct:5.1}%] sent {sent}/{}  replies {replies}  {rate:.0} pkt/s  ETA {eta:.1}s   ",
            self.total
        );
    }
    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}
