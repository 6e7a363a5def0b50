//! A whole stateless scan as one sans-IO [`Machine`]: the drive loop hands it
//! every captured reply ([`Machine::on_packet`]) and runs it at the instants
//! it asks for ([`Machine::poll_at`]); it sends the SYNs its pacer allows
//! through the [`Context`] and reports each (host, port) as it is known.
//!
//! The shard's probes (numbered 0..n in send order, [`Permutation`] order of
//! the (host, port) space) are taken one block at a time ([`blocks`]): a
//! block's first round sends every probe, each retry round the unanswered
//! ones; after each round the machine waits for late replies (until they
//! have stopped for a few RTTs, [`rate::quiet_needed`], at most `wait`);
//! then the block's checks end ([`FollowUp`]: canaries, `--verify`) and its
//! silent probes are listed as no-response, a bounded number per poll. The
//! rate is fixed or follows [`RateControl`] (`--rate auto`), which the
//! machine feeds with its sends, the replies of hosts known to answer and
//! the link's back-pressure. Memory is two bits per probe of one block, a
//! ring of recent send times and two hashed host maps, whatever the size of
//! the scan.

use super::blocks::{self, BlockState, Mark};
use super::follow::{Action, AnswersEveryPort, FollowCounts, FollowUp, tsval};
use super::pace::Pacer;
use super::rate::{self, RateControl};
use super::reset::{self, Resets, Resetter};
use super::{Permutation, ScanMatcher, Shard};
use crate::event::{Direction, Timestamp};
use crate::probe::machine::{Context, Machine, Packet, Stop};
use crate::probe::verify::ProbeCheck;
use crate::probe::{Ignored, SynAnswer, SynReply};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

/// Send times of recent probes, by probe number modulo its size.
const RING: usize = 1 << 17;
/// Bits of the known-hosts maps (512 KiB each).
const KNOWN_BITS: u64 = 1 << 22;
/// Rounds `--rate auto` may add to a block that saw loss.
pub const EXTRA_ROUNDS: u32 = 2;
/// No-response results listed per poll (a huge block's list is long: the
/// loop reads replies and an interrupt in between).
const LIST_PER_POLL: usize = 4096;
/// The least a block's checks wait for canary answers and handshakes.
const CHECKS_WAIT: Duration = Duration::from_millis(50);
/// How often a progress event is reported, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How often the capture's drops are looked at.
const DROPS_EVERY: Duration = Duration::from_millis(1);
/// How often --verify's handshakes are looked at (ended when due).
const VERIFY_EVERY: Duration = Duration::from_millis(5);
/// How often the wait after a round looks whether the link's sender has
/// caught up.
const SENDER_CHECK: Duration = Duration::from_millis(1);
/// The most SYNs handed over in one poll.
pub const MAX_BATCH: usize = 64;

/// What a scan is asked to do.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Builds the probes and checks the replies (targets, ports, cookie).
    pub matcher: ScanMatcher,
    /// Seeds the permutation of the (host, port) space.
    pub seed: u64,
    /// This run's share of the permutation.
    pub shard: Shard,
    /// Probes per block (None: what [`blocks::block_size`] gives for the rate).
    pub block_size: Option<u64>,
    /// The fixed rate, or the start rate with `auto_rate` (probes/s).
    pub rate: u64,
    /// `--rate auto`: the (min, max) rate control keeps to.
    pub auto_rate: Option<(u64, u64)>,
    /// Rounds after the first for the unanswered.
    pub retries: u32,
    /// The longest wait for late replies after a round.
    pub wait: Duration,
    /// Canaries: find hosts that answer every port.
    pub canaries: bool,
    /// `--verify`: complete and check each SYN-ACK's handshake.
    pub verify: bool,
    /// Report [`ScanEvent::Debug`] lines (`-v`) and keep the rate history.
    pub verbose: bool,
    /// Report [`ScanEvent::Progress`].
    pub progress: bool,
}

/// One (host, port) the scan has a verdict for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The pair's place in the permutation.
    pub index: u64,
    /// The host probed.
    pub host: IpAddr,
    /// The port probed.
    pub port: u16,
    /// What answered; None: nothing did (no response).
    pub reply: Option<SynReply>,
    /// SYN to reply, ns (None without a reply, or when its send time was
    /// overwritten in the ring of recent sends).
    pub rtt_ns: Option<u64>,
}

impl Found {
    /// Open, Closed, Filtered, or NoAnswer without a reply.
    pub fn verdict(&self) -> SynAnswer {
        self.reply
            .as_ref()
            .map_or(SynAnswer::NoAnswer, |r| r.answer)
    }
}

/// What a scan reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanEvent {
    /// A pair's verdict, with what the checks found.
    Result(Found, Option<ProbeCheck>),
    /// A SYN-ACK of a host that answers every port: counted with the host.
    Absorbed(Found),
    /// A host answers every port (said once).
    EveryPort(AnswersEveryPort),
    /// Probes sent and replies so far, and the rate now (probes/s).
    Progress {
        /// Probes sent so far (retries included).
        sent: u64,
        /// Replies taken so far.
        replies: u64,
        /// The rate now.
        rate: f64,
    },
    /// A line for `-v`.
    Debug(String),
}

/// What rate control saw, and how many verdicts could still be wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// `--rate auto`.
    pub auto: bool,
    /// The rate at the end (probes/s): with `--rate auto` the controller's,
    /// or the rate the sends really reached if that was lower.
    pub settled_pps: f64,
    /// The largest loss of a time slice (0..1), and the rate it was sent at.
    pub peak_loss: f64,
    /// The rate of that slice.
    pub peak_loss_rate_pps: f64,
    /// Loss over every probe to a host known to answer (0..1).
    pub mean_loss: f64,
    /// Rounds added to re-probe what went silent while loss was high.
    pub extra_rounds: u64,
    /// Estimated no-response pairs that are really lost probes.
    pub uncertain_pairs: f64,
    /// No-response pairs of hosts that answered other probes with ICMP errors.
    pub icmp_silent_pairs: u64,
}

/// What the scan did, for its summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanTally {
    /// Probes of this shard.
    pub probes: u64,
    /// SYNs sent, retries included (canaries and --verify not).
    pub sent: u64,
    /// Replies taken (first answers to a probe).
    pub replies: u64,
    /// Time spent in sending rounds (for the send rate).
    pub send_time: Duration,
    /// Packets not taken, by reason.
    pub ignored: BTreeMap<Ignored, u64>,
    /// Sent and unanswered probes of a block an interrupt cut short.
    pub cut_short: u64,
    /// Packets the capture dropped (its buffer full), as the scan found.
    pub capture_drops: u64,
    /// The rate and loss.
    pub coverage: Coverage,
    /// RSTs we sent to SYN-ACKs (the kernel's, once trusted, not counted).
    pub resets_sent: u64,
    /// The kernel's RSTs to SYN-ACKs seen while learning who resets.
    pub kernel_resets_seen: u64,
    /// What the canaries and --verify cost.
    pub follow: FollowCounts,
    /// An interrupt ended the scan.
    pub interrupted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Nothing yet: the first poll starts the first block.
    Start,
    /// A round is sending: `next` is the next probe number to look at.
    Send {
        next: u64,
    },
    /// The round has sent everything; late replies are waited for.
    Wait,
    /// The block's canaries are retried and its handshakes end, until `until`.
    Checks {
        until: Timestamp,
    },
    /// The block's silent probes are listed, from `next`.
    List {
        next: u64,
    },
    Done,
}

/// The state of the block being scanned.
#[derive(Debug, Clone)]
struct Block {
    range: Range<u64>,
    round: u32,
    last_round: u32,
    /// The chance that every probe of a pair silent so far was lost.
    all_lost: f64,
    answered_first: u64,
    recovered: Vec<u64>,
    silent_before: u64,
    /// Capture drops before the round began.
    drops_before: u64,
    lossy_before: u64,
    judged_before: (u64, f64),
    /// Probes sent in this round, and when it started and stopped sending.
    pass_sent: u64,
    pass_start: Timestamp,
    pass_end: Timestamp,
    /// Silent probes listed, and those still to list.
    listed: u64,
    silent: u64,
}

/// A stateless SYN scan as a [`Machine`].
pub struct ScanMachine {
    cfg: ScanConfig,
    perm: Permutation,
    probes: u64,
    block_size: u64,
    state: BlockState,
    next_block: u64,
    block: Option<Block>,
    phase: Phase,
    pacer: Pacer<Timestamp>,
    batch: usize,
    ctl: RateControl,
    follow: FollowUp<Found>,
    /// Who resets the SYN-ACKs (without --verify).
    resets: Resets,
    /// The link shows the resets leaving.
    watching_resets: bool,
    /// Sources whose resetter -v has said.
    resets_said: Vec<IpAddr>,
    ring_probe: Vec<u64>,
    ring_time: Vec<u64>,
    /// Hosts that answered with SYN-ACK or RST, hashed.
    known: Vec<u64>,
    /// Hosts that answered with an ICMP error, hashed.
    icmp: Vec<u64>,
    rtts: Vec<u64>,
    last_reply: Timestamp,
    /// Probes sent from this instant on are retries (not measured).
    retry_since: Timestamp,
    now: Timestamp,
    /// The link had not sent everything handed over at the last poll.
    sender_behind: bool,
    /// When --verify's handshakes are next looked at.
    verify_at: Timestamp,
    /// When the capture's drops are next looked at.
    drops_at: Timestamp,
    last_progress: Timestamp,
    tally: ScanTally,
}

impl ScanMachine {
    /// A scan of `cfg`'s shard; nothing is sent before the first poll.
    pub fn new(cfg: ScanConfig) -> ScanMachine {
        let total = cfg.matcher.len();
        let perm = Permutation::new(total, cfg.seed);
        let probes = cfg.shard.len(total);
        let top = cfg.auto_rate.map_or(cfg.rate, |(_, max)| max);
        let block_size = cfg
            .block_size
            .unwrap_or_else(|| blocks::block_size(top))
            .min(probes.max(1))
            .max(1);
        let follow = FollowUp::new(cfg.canaries, cfg.verify);
        let ctl = Self::ctl(&cfg, 0);
        ScanMachine {
            perm,
            probes,
            block_size,
            state: BlockState::new(block_size),
            next_block: 0,
            block: None,
            phase: Phase::Start,
            pacer: Pacer::new(cfg.rate as f64, Timestamp(0)),
            batch: 1,
            ctl,
            follow,
            resets: Resets::new(false),
            watching_resets: false,
            resets_said: Vec::new(),
            ring_probe: vec![0; RING],
            ring_time: vec![0; RING],
            known: vec![0; (KNOWN_BITS / 64) as usize],
            icmp: vec![0; (KNOWN_BITS / 64) as usize],
            rtts: vec![0; rate::RTT_BUCKETS],
            last_reply: Timestamp(0),
            retry_since: Timestamp(u64::MAX),
            now: Timestamp(0),
            sender_behind: false,
            verify_at: Timestamp(0),
            drops_at: Timestamp(0),
            last_progress: Timestamp(0),
            tally: ScanTally {
                probes,
                coverage: Coverage {
                    auto: cfg.auto_rate.is_some(),
                    ..Coverage::default()
                },
                ..ScanTally::default()
            },
            cfg,
        }
    }

    /// The rate controller of a scan: bounded by --min-rate/--max-rate with
    /// --rate auto, pinned to the rate (measuring only) with a fixed one.
    fn ctl(cfg: &ScanConfig, now_ns: u64) -> RateControl {
        let (min, max) = cfg.auto_rate.unwrap_or((cfg.rate, cfg.rate));
        let c = RateControl::new(cfg.rate as f64, min as f64, max as f64, now_ns);
        if cfg.verbose { c.with_history() } else { c }
    }

    /// Builds probes and checks replies.
    pub fn matcher(&self) -> &ScanMatcher {
        &self.cfg.matcher
    }

    /// Probes of the shard.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// Probes per block.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// What the scan did so far.
    pub fn tally(&self) -> &ScanTally {
        &self.tally
    }

    /// The rate controller (its history for `-v`).
    pub fn rate_control(&self) -> &RateControl {
        &self.ctl
    }

    /// The rate asked now (probes/s).
    pub fn rate(&self) -> f64 {
        self.pacer.rate()
    }

    fn known_bit(&self, index: u64) -> (usize, u64) {
        let host = index / self.cfg.matcher.ports.len().max(1);
        let h = host.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - 22);
        ((h / 64) as usize, 1u64 << (h % 64))
    }

    fn sent_at(&self, j: u64) -> Option<u64> {
        let slot = (j as usize) % RING;
        (self.ring_probe[slot] == j + 1).then(|| self.ring_time[slot])
    }

    fn debug(&self, cx: &mut dyn Context<ScanEvent>, line: impl FnOnce() -> String) {
        if self.cfg.verbose {
            cx.report(ScanEvent::Debug(line()));
        }
    }

    /// The rate of round `round` (auto: half the controller's in a retry
    /// round, a quarter in the next...: retries are few, and the last
    /// round's losses are final verdicts).
    fn round_rate(&self, round: u32) -> f64 {
        match self.cfg.auto_rate {
            Some((min, _)) => (self.ctl.rate() * 0.5f64.powi(round.min(8) as i32)).max(min as f64),
            None => self.cfg.rate as f64,
        }
    }

    /// Starts the next block, or ends the scan.
    fn start_block(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        if self.next_block >= self.probes {
            self.finish(cx);
            return;
        }
        let range = self.next_block..(self.next_block + self.block_size).min(self.probes);
        self.next_block = range.end;
        self.state.start(range.clone());
        self.block = Some(Block {
            range,
            round: 0,
            last_round: self.cfg.retries,
            all_lost: 1.0,
            answered_first: 0,
            recovered: Vec::new(),
            silent_before: 0,
            drops_before: 0,
            lossy_before: self.ctl.lossy_slices(),
            judged_before: self.ctl.judged(),
            pass_sent: 0,
            pass_start: now,
            pass_end: now,
            listed: 0,
            silent: 0,
        });
        self.start_round(now);
    }

    fn start_round(&mut self, now: Timestamp) {
        let Some(b) = self.block.as_mut() else { return };
        b.silent_before = self.state.counts().silent;
        b.drops_before = self.tally.capture_drops;
        b.pass_sent = 0;
        b.pass_start = now;
        let round = b.round;
        let start = b.range.start;
        self.retry_since = if round == 0 { Timestamp(u64::MAX) } else { now };
        let rate = self.round_rate(round);
        self.pacer = Pacer::new(rate, now);
        self.batch = batch_for(rate, round);
        self.phase = Phase::Send { next: start };
    }

    /// Sends what the pacer allows by `now`, a batch at most.
    fn send(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        let Phase::Send { mut next } = self.phase else {
            return;
        };
        let Some(b) = self.block.as_ref() else { return };
        let (end, round, mut sent) = (b.range.end, b.round, b.pass_sent);
        let auto = self.cfg.auto_rate.is_some();
        // back-pressure: the link's queue was full
        let stalls = cx.send_stalls();
        if stalls > 0 {
            if auto {
                self.ctl.on_backpressure(now.0, self.pacer.rate());
            }
            self.pacer.after_batch(sent, true, now);
        }
        if self.pacer.due(sent) > now {
            return;
        }
        // auto: after an oversleep, go on evenly rather than send a burst to
        // catch up (a policer with a small burst drops bursts)
        if auto {
            let gap = Duration::from_secs_f64(4.0 / self.pacer.rate().max(1.0));
            if gap >= Duration::from_micros(80) && now > self.pacer.due(sent) + gap {
                self.pacer.retarget(self.pacer.target(), sent, now);
            }
        }
        let ms = tsval(now);
        let (mut n, mut known) = (0u64, 0u64);
        let mut numbers = [0u64; MAX_BATCH];
        while (n as usize) < self.batch && next < end && self.pacer.due(sent) <= now {
            let j = next;
            next += 1;
            if round > 0 && self.state.is_answered(j) {
                continue;
            }
            let index = self.perm.at(self.cfg.shard.position(j));
            let m = &self.cfg.matcher;
            let (Some((host, _)), Some(syn)) =
                (m.target(index), m.syn(index, cx.random() as u16, ms))
            else {
                continue;
            };
            cx.send_tagged(host, syn, j);
            let slot = (j as usize) % RING;
            self.ring_time[slot] = now.0;
            self.ring_probe[slot] = j + 1;
            numbers[n as usize] = j;
            let (w, bit) = self.known_bit(index);
            known += (self.known[w] & bit != 0) as u64;
            n += 1;
            sent += 1;
        }
        self.state.mark_sent(&numbers[..n as usize]);
        self.tally.sent += n;
        if round == 0 {
            self.ctl.on_sent(now.0, n, known);
        } else {
            self.ctl.tick(now.0);
        }
        if auto {
            let want = self.round_rate(round);
            if (want - self.pacer.target()).abs() > 0.01 * self.pacer.target() {
                self.pacer.retarget(want, sent, now);
                self.batch = batch_for(want, round);
            }
        }
        self.pacer.after_batch(sent, false, now);
        if let Some(b) = self.block.as_mut() {
            b.pass_sent = sent;
        }
        if next >= end {
            // the round has sent everything: wait for late replies
            if let Some(b) = self.block.as_mut() {
                b.pass_end = now;
            }
            self.phase = Phase::Wait;
        } else {
            self.phase = Phase::Send { next };
        }
    }

    /// When the wait after the round ends (late replies stopped for long
    /// enough, or --wait is over).
    fn wait_end(&self) -> Timestamp {
        let Some(b) = self.block.as_ref() else {
            return self.now;
        };
        let last = b.round >= b.last_round;
        let longest = b.pass_end + self.cfg.wait;
        match rate::quiet_needed(&self.rtts, last) {
            // with no RTT seen yet there is nothing to judge by: wait it all out
            None => longest,
            Some(q) => (self.last_reply.max(b.pass_end) + Duration::from_nanos(q + 1)).min(longest),
        }
    }

    /// The round's wait is over: judge it, and retry, or end the block.
    fn end_round(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        self.ctl.on_receiver(now.0);
        self.ctl.tick(now.0);
        let counts = self.state.counts();
        let auto = self.cfg.auto_rate.is_some();
        let Some(b) = self.block.as_mut() else { return };
        self.tally.send_time += b.pass_end.saturating_sub(b.pass_start);
        let (n0, l0) = b.judged_before;
        let (n, l) = self.ctl.judged();
        let first_round_loss = if n > n0 {
            ((l - l0) / (n - n0) as f64).clamp(0.0, 1.0)
        } else {
            self.ctl.last_loss
        };
        // retries go at the rate control settled on (auto), whose last
        // measured loss applies; at a fixed rate, the first round's
        let loss = if b.round == 0 || !auto {
            first_round_loss
        } else {
            self.ctl.last_loss
        };
        b.all_lost *= loss;
        if b.round == 0 {
            b.answered_first = counts.answered;
        } else {
            b.recovered
                .push(b.silent_before.saturating_sub(counts.silent));
        }
        let found = counts.silent < b.silent_before;
        let all_answered = counts.silent == 0 && counts.unsent == 0;
        // auto: what went silent while loss was high gets up to two more
        // rounds, at the rate the loss brought us down to, as long as the
        // last retry round still found answers
        if b.round == b.last_round
            && auto
            && self.ctl.lossy_slices() > b.lossy_before
            && (b.round == 0 || found)
            && b.last_round < self.cfg.retries + EXTRA_ROUNDS
            && !all_answered
        {
            b.last_round += 1;
            self.tally.coverage.extra_rounds += 1;
        }
        let (range, round, sent, took, waited) = (
            b.range.clone(),
            b.round,
            b.pass_sent,
            b.pass_end.saturating_sub(b.pass_start),
            now.saturating_sub(b.pass_end),
        );
        let more = !all_answered && b.round < b.last_round;
        if more {
            b.round += 1;
        }
        let drops = self.tally.capture_drops;
        self.debug(cx, || {
            format!(
                "block {range:?} round {round}: {sent} SYNs in {took:?}, then {waited:?} for late replies; {drops} capture drops so far"
            )
        });
        if more {
            self.start_round(now);
        } else {
            self.start_checks(now, cx);
        }
    }

    /// The end of a block's checks: unanswered canaries once more, a wait
    /// for their answers and the handshakes under way (as long as for late
    /// replies after a last round, at least 50 ms, at most --wait).
    fn start_checks(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        if !self.follow.enabled() {
            self.close_block(now, cx);
            return;
        }
        let again = self.follow.retry_canaries(&self.cfg.matcher, tsval(now));
        let retried = !again.is_empty();
        self.act(again, cx);
        if !retried && !self.follow.busy() {
            self.close_block(now, cx);
            return;
        }
        let quiet = self.quiet_after_last_round();
        let until = now + quiet.max(CHECKS_WAIT).min(self.cfg.wait.max(CHECKS_WAIT));
        self.phase = Phase::Checks { until };
    }

    /// How long replies must have stopped after a last round (a few of the
    /// largest RTTs seen); unbounded while no RTT is known.
    fn quiet_after_last_round(&self) -> Duration {
        Duration::from_nanos(rate::quiet_needed(&self.rtts, true).unwrap_or(u64::MAX))
    }

    /// The block takes no more replies: its checks end, its estimate is
    /// added up, and its silent probes are listed.
    fn close_block(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        let rest = self.follow.close(tsval(now));
        self.act(rest, cx);
        // from here a reply to this block is late: the report is final
        self.state.close();
        let silent = self.state.counts().silent;
        let Some(b) = self.block.as_mut() else { return };
        b.silent = silent;
        // a fixed rate: also what the retries' finds say (no loss-free
        // baseline needed); the larger of the two
        let from_retries = match self.cfg.auto_rate {
            None => rate::lost_after_retries(b.answered_first, &b.recovered).unwrap_or(0.0),
            Some(_) => 0.0,
        };
        // each reply the capture dropped in the last round may be a pair
        // now silent
        let dropped = self.tally.capture_drops - b.drops_before;
        self.tally.coverage.uncertain_pairs += (silent as f64 * b.all_lost)
            .max(from_retries)
            .max(dropped as f64)
            .min(silent as f64);
        self.phase = Phase::List {
            next: b.range.start,
        };
    }

    /// Lists up to [`LIST_PER_POLL`] silent probes as no-response.
    fn list(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        let Phase::List { next } = self.phase else {
            return;
        };
        let mut found = Vec::new();
        let mut resume = None;
        let _ = self.state.for_each_silent_from(next, |j| {
            if found.len() == LIST_PER_POLL {
                resume = Some(j);
                return Ok(false);
            }
            found.push(j);
            Ok(true)
        });
        for j in found {
            let index = self.perm.at(self.cfg.shard.position(j));
            let (w, bit) = self.known_bit(index);
            self.tally.coverage.icmp_silent_pairs += (self.icmp[w] & bit != 0) as u64;
            if let Some((host, port)) = self.cfg.matcher.target(index) {
                cx.report(ScanEvent::Result(
                    Found {
                        index,
                        host,
                        port,
                        reply: None,
                        rtt_ns: None,
                    },
                    None,
                ));
            }
            if let Some(b) = self.block.as_mut() {
                b.listed += 1;
            }
        }
        match resume {
            Some(j) => self.phase = Phase::List { next: j },
            None => {
                self.block = None;
                self.start_block(now, cx);
            }
        }
    }

    /// The scan is over: the rate control's last word.
    fn finish(&mut self, cx: &mut dyn Context<ScanEvent>) {
        self.phase = Phase::Done;
        // resets still awaited from the kernel: ours, rather than none
        self.resets_due(Timestamp(u64::MAX), cx);
        self.tally.resets_sent = self.resets.ours;
        self.tally.kernel_resets_seen = self.resets.kernel_seen;
        let c = &mut self.tally.coverage;
        c.settled_pps = if c.auto {
            // the controller's rate, unless the senders could not reach it
            // (a full queue to them slows the loop, which is no loss)
            let achieved = self.tally.sent as f64 / self.tally.send_time.as_secs_f64();
            if achieved.is_finite() && achieved > 0.0 {
                self.ctl.rate().min(achieved)
            } else {
                self.ctl.rate()
            }
        } else {
            self.cfg.rate as f64
        };
        c.peak_loss = self.ctl.peak_loss;
        c.peak_loss_rate_pps = self.ctl.peak_loss_rate;
        c.mean_loss = self.ctl.mean_loss();
        self.tally.follow = self.follow.counts.clone();
        let (spurious, overruns, drops) = (
            self.ctl.spurious_cuts,
            self.ctl.overruns,
            self.ctl.capture_drops,
        );
        self.debug(cx, || {
            format!(
                "rate control: {spurious} cut(s) undone (the loss was late replies), {overruns} for a receiver that could not keep up ({drops} capture drops)"
            )
        });
        if self.cfg.verbose {
            // every judged slice, for plots (bench/rate_plot.py reads these)
            let origin = self.ctl.origin();
            for j in self.ctl.history() {
                cx.report(ScanEvent::Debug(format!(
                    "rate-slice t_ms={:.1} sent_pps={:.0} ratio={} loss={} next_pps={:.0}",
                    j.at_ns.saturating_sub(origin) as f64 / 1e6,
                    j.rate,
                    j.ratio.map_or("-".into(), |r| format!("{r:.3}")),
                    j.loss.map_or("-".into(), |l| format!("{l:.3}")),
                    j.next_rate
                )));
            }
        }
    }

    /// Sends our RSTs to the held SYN-ACKs whose kernel RST did not come by
    /// `now`, ends learning after [`reset::LEARN_WITHIN`] probes, and stops
    /// watching the resets leaving once nothing is left to learn.
    fn resets_due(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        if self.tally.sent >= reset::LEARN_WITHIN {
            self.resets.stop_learning();
        }
        for (host, port) in self.resets.due(now) {
            if let Some(rst) = self.cfg.matcher.rst(host, port) {
                cx.send(host, rst);
            }
        }
        if self.cfg.verbose {
            for src in self.cfg.matcher.sources.sources() {
                let r = self.resets.resetter(src);
                if matches!(r, Resetter::Learning(_)) || self.resets_said.contains(&src) {
                    continue;
                }
                self.resets_said.push(src);
                cx.report(ScanEvent::Debug(match r {
                    Resetter::Kernel => format!(
                        "resets: the kernel reset {} SYN-ACKs to {src} in a row: synscope sends no RST of its own from it",
                        reset::TRUST
                    ),
                    _ => format!(
                        "resets: synscope resets every SYN-ACK to {src} itself (the kernel's RST did not leave within {:?}, or too few SYN-ACKs came to learn)",
                        reset::HOLD
                    ),
                }));
            }
        }
        if self.watching_resets && !self.resets.watching() {
            self.watching_resets = false;
            cx.watch_resets(false);
        }
    }

    /// Carries out what the checks ask for.
    fn act(&mut self, actions: Vec<Action<Found>>, cx: &mut dyn Context<ScanEvent>) {
        for a in actions {
            match a {
                Action::Send(host, d) => cx.send(host, d),
                Action::Report(r, check) => cx.report(ScanEvent::Result(r, check)),
                Action::Absorbed(r) => cx.report(ScanEvent::Absorbed(r)),
                Action::EveryPort(h) => cx.report(ScanEvent::EveryPort(h)),
            }
        }
    }

    /// Done (cut short: [`Machine::linger`]): a SYN-ACK still coming is
    /// reset unless the kernel is known to do it; nothing is reported.
    fn reset_late(&mut self, p: &Packet<'_>, cx: &mut dyn Context<ScanEvent>) {
        if p.direction == Direction::Outgoing || self.cfg.verify {
            return;
        }
        let m = &self.cfg.matcher;
        let Ok(r) = m.classify(p.data, p.offloaded, p.at) else {
            return;
        };
        let (host, port) = (r.host(), r.port());
        if *r.verdict() == SynAnswer::Open
            && m.sources
                .source_for(host)
                .is_some_and(|src| self.resets.resetter(src) != Resetter::Kernel)
            && let Some(rst) = m.rst(host, port)
        {
            cx.send(host, rst);
            self.resets.ours += 1;
            self.tally.resets_sent = self.resets.ours;
        }
    }

    /// A packet leaving while resets are watched: an RST from the scan's
    /// port is told to [`Resets`].
    fn reset_leaving(&mut self, data: &[u8]) {
        // the kernel's own segments leave with their checksum still to fill
        let Ok(d) =
            crate::wire::Datagram::parse_with(data, crate::wire::datagram::Checksums::Offloaded)
        else {
            return;
        };
        if let crate::wire::Transport::Tcp(t) = &d.transport
            && t.flags.contains(crate::wire::TcpFlags::RST)
            && t.src_port == self.cfg.matcher.sport
        {
            self.resets.on_reset_leaving(d.ip.src, d.ip.dst, t.dst_port);
        }
    }

    fn ignore(&mut self, why: Ignored) {
        *self.tally.ignored.entry(why).or_default() += 1;
    }

    /// A packet the matcher did not take, offered to the checks: a canary's
    /// answer or a segment of a handshake being verified.
    fn follow_up(&mut self, p: &Packet<'_>, cx: &mut dyn Context<ScanEvent>) -> bool {
        match self
            .follow
            .on_packet(&self.cfg.matcher, p.data, p.offloaded, p.at)
        {
            Some(a) => {
                self.act(a, cx);
                true
            }
            None => false,
        }
    }
}

/// SYNs per poll at `rate`: one at low rates, up to [`MAX_BATCH`]; one by
/// one in retry rounds below 100k/s (a policer with a small burst drops the
/// tail of a batch).
fn batch_for(rate: f64, round: u32) -> usize {
    if round > 0 && rate < 100_000.0 {
        return 1;
    }
    ((rate / 5000.0) as usize).clamp(1, MAX_BATCH)
}

impl Machine for ScanMachine {
    type Event = ScanEvent;

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<ScanEvent>) {
        if self.phase == Phase::Done {
            self.reset_late(p, cx);
            return;
        }
        if p.direction == Direction::Outgoing {
            if self.watching_resets {
                self.reset_leaving(p.data);
            }
            return;
        }
        self.ctl.on_receiver(p.at.0);
        let following = self.follow.enabled();
        // --verify: a handshake's later segments (RSTs too) go to its check first
        if self.cfg.verify && self.follow_up(p, cx) {
            return;
        }
        let r = match self.cfg.matcher.classify(p.data, p.offloaded, p.at) {
            Ok(r) => r,
            Err(why) => {
                // a canary's answer
                if following && !self.cfg.verify && self.follow_up(p, cx) {
                    return;
                }
                self.ignore(why);
                return;
            }
        };
        let Some(j) = self.cfg.shard.local(self.perm.position(r.index)) else {
            self.ignore(Ignored::NoProbe);
            return;
        };
        let (host, port) = (r.host(), r.port());
        let open = *r.verdict() == SynAnswer::Open;
        if open
            && !self.cfg.verify
            && let Some(src) = self.cfg.matcher.sources.source_for(host)
            && self.resets.on_syn_ack(src, host, port, p.at)
        {
            // our own RST, unless the kernel's is seen to leave: never leave
            // a half-open connection (--verify resets after its check)
            if let Some(rst) = self.cfg.matcher.rst(host, port) {
                cx.send(host, rst);
            }
        }
        // a duplicate, or a late reply to a block already reported
        if self.state.mark_answered(j) != Mark::First {
            self.ignore(Ignored::NoProbe);
            return;
        }
        // handed over at sent_ns (rate control counts it there); left when
        // the link says, if its sender thread lags (the RTT)
        let sent_ns = self.sent_at(j);
        let left_ns = cx.left_at(j).map(|t| t.0).or(sent_ns);
        let rtt_ns = left_ns.map(|t| r.at.0.saturating_sub(t));
        let (w, bit) = self.known_bit(r.index);
        // rate control: replies of hosts known to answer, to first rounds
        if matches!(r.verdict(), SynAnswer::Open | SynAnswer::Closed) {
            let was_known = self.known[w] & bit != 0;
            self.known[w] |= bit;
            if was_known
                && let Some(t) = sent_ns
                && t < self.retry_since.0
            {
                self.ctl.on_reply(t, r.at.0);
            }
        }
        if matches!(r.verdict(), SynAnswer::Filtered { .. }) {
            self.icmp[w] |= bit;
        }
        if let Some(rtt) = rtt_ns {
            self.rtts[rate::rtt_bucket(rtt)] += 1;
        }
        self.tally.replies += 1;
        self.last_reply = self.last_reply.max(p.at);
        let verdict = r.reply.answer;
        let found = Found {
            index: r.index,
            host,
            port,
            reply: Some(r.reply),
            rtt_ns,
        };
        let actions = self.follow.on_answer(
            &self.cfg.matcher,
            found,
            (host, port, &verdict),
            p.data,
            r.at,
            Duration::from_nanos(rtt_ns.unwrap_or(0)),
            p.at.max(self.now),
            || cx.random() as u16,
        );
        self.act(actions, cx);
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.phase == Phase::Done {
            return;
        }
        // every reply captured before now has been read; the sends may lag
        let through = cx.sent_through();
        self.sender_behind = through.is_some();
        self.ctl.on_receiver(now.0);
        self.ctl.on_sender(through.map(|t| t.0));
        // replies the capture dropped: the loop cannot read as fast as the
        // rate, a loss signal of its own (looked at every millisecond)
        if now >= self.drops_at {
            self.drops_at = now + DROPS_EVERY;
            let n = cx.capture_drops();
            if n > 0 {
                self.tally.capture_drops += n;
                self.ctl.on_capture_drops(now.0, n);
            }
        }
        if self.watching_resets || self.resets.next_due().is_some_and(|t| t <= now) {
            self.resets_due(now, cx);
        }
        // --verify: end the handshakes checked long enough, every few ms
        // (a look at every host's verification is not free)
        if self.cfg.verify && now >= self.verify_at {
            self.verify_at = now + VERIFY_EVERY;
            let due = self.follow.on_time(now, tsval(now));
            self.act(due, cx);
        }
        // a few steps can follow each other at one instant (a round that
        // ends at once, an empty block); bounded all the same
        for _ in 0..16 {
            let before = self.phase;
            let sending = matches!(self.phase, Phase::Send { .. });
            match self.phase {
                Phase::Start => {
                    // learn whether the kernel resets our SYN-ACKs, if the
                    // link can show what leaves
                    if !self.cfg.verify && cx.watch_resets(true) {
                        self.resets = Resets::new(true);
                        self.watching_resets = true;
                    }
                    self.ctl = Self::ctl(&self.cfg, now.0);
                    self.last_progress = now;
                    self.start_block(now, cx);
                }
                Phase::Send { .. } => self.send(now, cx),
                Phase::Wait => {
                    // the wait starts once the round's last SYN has left
                    if through.is_some()
                        && let Some(b) = self.block.as_mut()
                    {
                        b.pass_end = now;
                    }
                    if now >= self.wait_end() {
                        self.end_round(now, cx);
                    }
                }
                Phase::Checks { until } => {
                    if now >= until || !self.follow.busy() {
                        self.close_block(now, cx);
                    }
                }
                Phase::List { .. } => {
                    self.list(now, cx);
                    // the rest of a long list at the next poll
                    break;
                }
                Phase::Done => break,
            }
            // one batch per poll; otherwise on while steps follow at once
            if sending || self.phase == before {
                break;
            }
        }
        if self.cfg.progress && now.saturating_sub(self.last_progress) >= PROGRESS_EVERY {
            self.last_progress = now;
            cx.report(ScanEvent::Progress {
                sent: self.tally.sent,
                replies: self.tally.replies,
                rate: self.pacer.rate(),
            });
        }
    }

    fn poll_at(&self) -> Option<Timestamp> {
        let at = match self.phase {
            Phase::Start => Timestamp(0),
            Phase::Send { .. } => self
                .block
                .as_ref()
                .map_or(self.now, |b| self.pacer.due(b.pass_sent)),
            // a sender behind the loop: look again soon
            Phase::Wait if self.sender_behind => self.wait_end().min(self.now + SENDER_CHECK),
            Phase::Wait => self.wait_end(),
            Phase::Checks { until } => until,
            Phase::List { .. } => self.now,
            Phase::Done => return None,
        };
        let at = self.resets.next_due().map_or(at, |t| t.min(at));
        Some(if self.cfg.verify {
            at.min(self.verify_at)
        } else {
            at
        })
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Cut short (an interrupt, or the run's bound), a scan whose SYN-ACKs
    /// are not all reset by the kernel reads on for as long as the wait
    /// after a last round (a few of the largest RTTs, within `--wait`),
    /// and resets the SYN-ACKs of the probes still on their way: no
    /// half-open connection is left behind.
    fn linger(&self) -> Duration {
        let sources = self.cfg.matcher.sources.sources();
        if !self.tally.interrupted
            || self.cfg.verify
            || sources
                .iter()
                .all(|&s| self.resets.resetter(s) == Resetter::Kernel)
        {
            return Duration::ZERO;
        }
        self.quiet_after_last_round().min(self.cfg.wait)
    }

    fn sends_while_lingering(&self) -> bool {
        true
    }

    fn stop(&mut self, _why: Stop, now: Timestamp, cx: &mut dyn Context<ScanEvent>) {
        if self.phase == Phase::Done {
            return;
        }
        self.now = self.now.max(now);
        self.tally.interrupted = true;
        if let Some(b) = self.block.take() {
            match self.phase {
                Phase::List { .. } => self.tally.cut_short += b.silent.saturating_sub(b.listed),
                _ => {
                    self.tally.send_time += match self.phase {
                        Phase::Send { .. } => now.saturating_sub(b.pass_start),
                        Phase::Wait => b.pass_end.saturating_sub(b.pass_start),
                        _ => Duration::ZERO,
                    };
                    // held results are released; the silent are not listed
                    let rest = self.follow.close(tsval(now));
                    self.act(rest, cx);
                    self.state.close();
                    self.tally.cut_short += self.state.counts().silent;
                }
            }
        }
        self.finish(cx);
    }
}
