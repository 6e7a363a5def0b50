//! Closed-loop rate control of a scan (`--rate auto`), sans-IO: the sender
//! reports what it sent and the receiver what came back, each with the
//! instant (nanoseconds on one clock); [`RateControl::rate`] says how fast to
//! send now.
//!
//! The signal is the *reply ratio* of probes sent to hosts already known to
//! answer: such a host answers every SYN (SYN-ACK or RST) unless the port is
//! dropped, so a steady ratio means the path carries what we send and a
//! falling one means a policer, a queue or the host itself drops probes.
//! Time is cut into slices of [`SLICE`]; a reply is counted in the slice its
//! probe was *sent* in, and a slice is judged once its replies have had time
//! to come (two slices and three smallest RTTs later). Its
//! loss is measured against the best ratio seen (the ports that are dropped
//! whatever the rate keep the ratio below 1; they are not loss).
//!
//! The rule, per judged slice (BBR's idea of sending at the delivery rate,
//! with AIMD's caution):
//! - loss above [`LOSS_LIMIT`] in two judged slices in a row (one is a
//!   hiccup of a busy host): the rate falls to what got through
//!   (`sent rate × (1 − loss)`) less a margin, at most halved per cut, never
//!   below `min`; the start-up ramp ends and the rate where loss began is
//!   remembered as a ceiling; if the loss turns out to have been late
//!   replies, the cut is undone and slices wait longer before judgement;
//! - RTT inflated (the slice's mean RTT above 4× the smallest seen, and
//!   above it by 10 ms): a queue is building; the rate falls by 15 %;
//! - send back-pressure (the kernel's queue full): the rate falls to what
//!   was actually sent, and that becomes a ceiling;
//! - capture drops (the receiver's buffer full: replies the path carried
//!   but this host lost), or a receiver more than [`LAG_LIMIT`] behind: the
//!   rate falls by 30 % at once, at most once per trip through the capture,
//!   and 90 % of what it was becomes a ceiling;
//! - otherwise it grows: during start-up to twice the rate the judged slice
//!   was sent at (so the rate doubles every slice, as TCP's slow start does
//!   every round trip), then by 10 % per 20 ms below the remembered ceiling
//!   and 2 % per 20 ms near it (the ceiling decays so a policer that lifts
//!   is found again); never above `max`.
//!
//! Slices with too few probes to known hosts are not judged by loss: during
//! start-up the rate still doubles (nothing says the path is full), after it
//! the rate holds.

/// The time slice (ns): short, so that start-up reaches the send ceiling of a
/// clean path in tens of milliseconds and an overshoot is short-lived.
pub const SLICE: u64 = 5_000_000;
/// Probes to known hosts a slice needs before its ratio is trusted.
pub const MIN_SAMPLES: u64 = 40;
/// Loss a slice may show before the rate falls.
pub const LOSS_LIMIT: f64 = 0.03;
/// RTT growth (over the smallest RTT) that says a queue is building; well
/// above what a loaded 2-core host adds by scheduling alone (a few ms).
pub const INFLATED_NS: u64 = 10_000_000;
/// What the rate is multiplied by when the capture drops replies or the
/// receiver lags (TCP CUBIC's β).
pub const CAPTURE_CUT: f64 = 0.7;
/// How far (ns) the receiver may lag behind the clock before the rate falls
/// as for capture drops: far above a scheduling hiccup of a loaded host
/// (tens of ms), far below what the capture ring holds (~1 s of replies at
/// 400k/s).
pub const LAG_LIMIT: u64 = 100_000_000;
/// The start rate when none is given (probes/s).
pub const START: f64 = 20_000.0;
/// Slices kept (the current one and those waiting to be judged): 1.28 s,
/// so a slice of a path with an RTT of up to ~0.4 s is still judged.
const RING: usize = 256;
/// Growth per slice after start-up: 10 %, 2 % and 1 % per 20 ms.
const GROW_FAR: f64 = 1.024_113_689;
const GROW_NEAR: f64 = 1.004_962_932;
const CEILING_DECAY: f64 = 1.002_490_679;

#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    /// Index of the slice (start = origin + index × len); u64::MAX: unused.
    index: u64,
    sent: u64,
    /// The highest rate asked while it was sent (probes/s).
    target: f64,
    /// Probes to hosts known to answer, and their replies.
    known_sent: u64,
    known_replies: u64,
    rtt_sum_ns: u64,
    rtt_n: u64,
    /// Replies that came after the slice was judged.
    late: u64,
}

/// One judged slice, for the record (docs/rate.md plots these).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// End of the slice (ns, the caller's clock).
    pub at_ns: u64,
    /// The rate the slice was sent at (probes/s).
    pub rate: f64,
    /// Replies per probe to known hosts, 0..=1; None: too few probes to judge.
    pub ratio: Option<f64>,
    /// Loss against the best ratio seen, 0..=1; None: too few probes to judge.
    pub loss: Option<f64>,
    /// The rate after judging it.
    pub next_rate: f64,
}

/// What a cut for loss changed, kept to undo it if the loss turns out to
/// have been replies that came after the slices were judged (as TCP's Eifel
/// detection undoes a spurious retransmission's cut): on a loaded host a
/// core's backlog of replies can wait tens of ms.
#[derive(Debug, Clone, Copy)]
struct Undo {
    /// The slices the cut was judged on (first..=last).
    first: u64,
    last: u64,
    known_sent: u64,
    replies: u64,
    rate: f64,
    ceiling: f64,
    starting: bool,
    peak_loss: f64,
    peak_loss_rate: f64,
    /// Loss added to the estimate by these slices, and lossy slices counted.
    lost: f64,
    lossy: u64,
}

/// The scan's send rate, adjusted slice by slice from the replies of known hosts.
#[derive(Debug, Clone)]
pub struct RateControl {
    min: f64,
    max: f64,
    rate: f64,
    origin_ns: u64,
    slice_ns: u64,
    slices: [Slice; RING],
    /// Slices up to (not including) this index are judged.
    judged_to: u64,
    starting: bool,
    /// Best reply ratio seen (the ratio of a loss-free path to these hosts).
    best_ratio: f64,
    min_rtt_ns: u64,
    /// Rate where loss or back-pressure began (decays upwards).
    ceiling: f64,
    /// Largest loss of a judged slice (0..=1).
    pub peak_loss: f64,
    /// The rate that slice was sent at (probes/s).
    pub peak_loss_rate: f64,
    /// Loss of the last judged slice with enough samples.
    pub last_loss: f64,
    /// Probes and lost probes (estimated) to known hosts, all slices.
    known_sent: u64,
    lost: f64,
    lossy: u64,
    history: Vec<Judged>,
    keep_history: bool,
    /// How far the receiver has read: replies up to this instant are counted
    /// (a slow receiver must not look like loss).
    receiver_ns: u64,
    /// How far the sender has sent: probes handed over before this instant
    /// have left (a sender thread behind the loop must not look like loss).
    sender_ns: u64,
    /// Slices judged with too few samples, added up until they have enough.
    acc: Slice,
    acc_slices: u64,
    /// The slice being sent in when the rate was last cut: loss of slices up
    /// to it was already answered.
    cut_index: Option<u64>,
    now_index: u64,
    /// Bad slices (lossy or slow) judged in a row, not yet acted on.
    strikes: u32,
    /// The bad slices in a row so far, as a cut on them would be undone.
    strike: Option<Undo>,
    undo: Option<Undo>,
    /// Extra time a slice waits before it is judged (ns): doubles at each
    /// cut found spurious.
    margin_ns: u64,
    /// Cuts undone.
    pub spurious_cuts: u64,
    /// Replies the capture dropped (its buffer full), and when the last cut
    /// for them was made.
    pub capture_drops: u64,
    drop_cut_ns: Option<u64>,
    /// Cuts because the receiver could not keep up (drops or lag).
    pub overruns: u64,
}

impl RateControl {
    /// A controller starting at `start` probes/s, kept within `min..=max`,
    /// its clock at `now_ns`.
    pub fn new(start: f64, min: f64, max: f64, now_ns: u64) -> RateControl {
        let min = min.max(1.0);
        let max = max.max(min);
        RateControl {
            min,
            max,
            rate: start.clamp(min, max),
            origin_ns: now_ns,
            slice_ns: SLICE,
            slices: [Slice {
                index: u64::MAX,
                ..Slice::default()
            }; RING],
            judged_to: 0,
            starting: true,
            best_ratio: 0.0,
            min_rtt_ns: u64::MAX,
            ceiling: f64::INFINITY,
            peak_loss: 0.0,
            peak_loss_rate: 0.0,
            last_loss: 0.0,
            known_sent: 0,
            lost: 0.0,
            lossy: 0,
            history: Vec::new(),
            keep_history: false,
            receiver_ns: now_ns,
            sender_ns: u64::MAX,
            acc: Slice::default(),
            acc_slices: 0,
            cut_index: None,
            now_index: 0,
            strikes: 0,
            strike: None,
            undo: None,
            margin_ns: 0,
            spurious_cuts: 0,
            capture_drops: 0,
            drop_cut_ns: None,
            overruns: 0,
        }
    }

    /// Keep every judged slice (for plots).
    pub fn with_history(mut self) -> RateControl {
        self.keep_history = true;
        self
    }

    /// The judged slices, oldest first (empty without [`RateControl::with_history`]).
    pub fn history(&self) -> &[Judged] {
        &self.history
    }

    /// The instant the controller started (ns).
    pub fn origin(&self) -> u64 {
        self.origin_ns
    }

    /// How fast to send now (probes/s).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Probes to known hosts judged so far, and how many of them were lost
    /// (estimated).
    pub fn judged(&self) -> (u64, f64) {
        (self.known_sent, self.lost)
    }

    /// Judged slices whose loss was above [`LOSS_LIMIT`].
    pub fn lossy_slices(&self) -> u64 {
        self.lossy
    }

    /// Mean loss over every judged probe to a known host.
    pub fn mean_loss(&self) -> f64 {
        if self.known_sent == 0 {
            0.0
        } else {
            (self.lost / self.known_sent as f64).clamp(0.0, 1.0)
        }
    }

    fn index_of(&self, at_ns: u64) -> u64 {
        at_ns.saturating_sub(self.origin_ns) / self.slice_ns
    }

    /// The slice holding instant `at_ns`, if it is still kept.
    fn slice(&mut self, at_ns: u64) -> Option<&mut Slice> {
        let i = self.index_of(at_ns);
        if i < self.judged_to {
            return None;
        }
        let s = &mut self.slices[(i as usize) % RING];
        if s.index != i {
            *s = Slice {
                index: i,
                ..Slice::default()
            };
        }
        Some(s)
    }

    /// `n` probes sent at `at_ns`, `known` of them to hosts known to answer.
    pub fn on_sent(&mut self, at_ns: u64, n: u64, known: u64) {
        self.tick(at_ns);
        let rate = self.rate;
        if let Some(s) = self.slice(at_ns) {
            s.sent += n;
            s.known_sent += known;
            s.target = s.target.max(rate);
        }
    }

    /// The receiver has read every reply captured up to `at_ns` (it read
    /// one stamped then, or found its queue empty then).
    pub fn on_receiver(&mut self, at_ns: u64) {
        self.receiver_ns = self.receiver_ns.max(at_ns);
    }

    /// Every probe handed to the sender before `through_ns` has left (None:
    /// every one has): slices are judged no further than that.
    pub fn on_sender(&mut self, through_ns: Option<u64>) {
        self.sender_ns = through_ns.unwrap_or(u64::MAX);
    }

    /// A reply at `at_ns` to a probe to a known host sent at `sent_ns`.
    pub fn on_reply(&mut self, sent_ns: u64, at_ns: u64) {
        self.on_receiver(at_ns);
        let rtt = at_ns.saturating_sub(sent_ns);
        self.min_rtt_ns = self.min_rtt_ns.min(rtt.max(1));
        let i = self.index_of(sent_ns);
        if i < self.judged_to {
            // judged too early: 5 % of a slice's replies late, and slices
            // wait longer from now on
            let s = &mut self.slices[(i as usize) % RING];
            if s.index == i {
                s.late += 1;
                if s.late * 20 == s.known_sent.max(MIN_SAMPLES) {
                    self.wait_longer();
                }
            }
            self.late_reply(i);
        } else if let Some(s) = self.slice(sent_ns) {
            s.known_replies += 1;
            s.rtt_sum_ns += rtt;
            s.rtt_n += 1;
        }
    }

    /// A reply to a probe of slice `i`, already judged: if the slices of the
    /// last cut now show no loss, the cut is undone and slices wait longer.
    fn late_reply(&mut self, i: u64) {
        let Some(u) = self.undo.as_mut() else {
            return;
        };
        if !(u.first..=u.last).contains(&i) {
            return;
        }
        u.replies += 1;
        let r = (u.replies as f64 / u.known_sent.max(1) as f64).min(1.0);
        let l = (1.0 - r / self.best_ratio.max(1e-9)).clamp(0.0, 1.0);
        if l > LOSS_LIMIT + noise(u.known_sent) {
            return;
        }
        let u = *u;
        self.undo = None;
        self.rate = self.rate.max(u.rate);
        self.ceiling = u.ceiling;
        self.starting = u.starting;
        self.peak_loss = u.peak_loss;
        self.peak_loss_rate = u.peak_loss_rate;
        self.lost = (self.lost - u.lost + l * u.known_sent as f64).max(0.0);
        self.lossy = self.lossy.saturating_sub(u.lossy);
        self.spurious_cuts += 1;
        self.wait_longer();
    }

    /// Slices wait twice as long (at least two slices more, at most 32) before
    /// they are judged.
    fn wait_longer(&mut self) {
        self.margin_ns = (self.margin_ns * 2).clamp(2 * self.slice_ns, 32 * self.slice_ns);
    }

    /// The kernel's send queue was full at `at_ns` while sending at
    /// `achieved` probes/s: that is as fast as this host can send.
    pub fn on_backpressure(&mut self, _at_ns: u64, achieved: f64) {
        let r = (achieved * 0.9).clamp(self.min, self.max);
        if r < self.rate {
            self.rate = r;
        }
        self.ceiling = self.ceiling.min(self.rate);
        self.starting = false;
    }

    /// The capture dropped `n` replies (its buffer was full) since the last
    /// call, noticed at `at_ns`: the path carried them, this host could not
    /// take them in, so the rate is more than the receiver keeps up with.
    /// Each is a pair to retry, or a wrong verdict in a last round. Unlike
    /// loss on the path this is known at once and for sure (the kernel
    /// counts it), so it is acted on at once: the rate falls by
    /// [`CAPTURE_CUT`] and what it was becomes a ceiling (a lower one than a
    /// policer's: 90 % of it), start-up ends. One cut per trip through the
    /// capture: drops say something new only once the receiver has read
    /// what came two slices after the last cut (a receiver seconds behind
    /// keeps finding a full buffer while it reads the backlog of before the
    /// cut, and the answers it reads start canaries that fill it further);
    /// a buffer that still drops after that cuts again.
    pub fn on_capture_drops(&mut self, at_ns: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.capture_drops += n;
        self.receiver_overrun(at_ns);
    }

    /// The receiver cannot keep up (its capture drops, or it lags more than
    /// [`LAG_LIMIT`]): cut by [`CAPTURE_CUT`], once per trip through the
    /// capture (see [`RateControl::on_capture_drops`]).
    fn receiver_overrun(&mut self, at_ns: u64) {
        if self
            .drop_cut_ns
            .is_some_and(|c| self.receiver_ns < c.saturating_add(2 * self.slice_ns))
        {
            return;
        }
        self.drop_cut_ns = Some(at_ns);
        self.overruns += 1;
        // a cut for loss judged later must not undo this one
        self.undo = None;
        self.ceiling = self.ceiling.min(self.rate * 0.9);
        self.rate = (self.rate * CAPTURE_CUT).clamp(self.min, self.max);
        self.starting = false;
    }

    /// Judges every slice whose replies have had time to come by `now_ns`:
    /// two slices after it ended, and at least 3× the smallest RTT after.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_index = self.index_of(now_ns);
        // a receiver this far behind is overrun, whatever its capture holds:
        // slow down before the capture drops (the senders share its cores)
        if self.receiver_ns.saturating_add(LAG_LIMIT) < now_ns {
            self.receiver_overrun(now_ns);
        }
        // judged as far as the receiver has read
        let current = self.index_of(now_ns.min(self.receiver_ns).min(self.sender_ns));
        let rtt = if self.min_rtt_ns == u64::MAX {
            0
        } else {
            self.min_rtt_ns
        };
        let wait = (2 + (3 * rtt + self.margin_ns) / self.slice_ns).min(RING as u64 - 1);
        // slices that fell out of the ring are gone unjudged
        self.judged_to = self
            .judged_to
            .max((current + 1).saturating_sub(RING as u64));
        while self.judged_to + wait <= current {
            let i = self.judged_to;
            let s = self.slices[(i as usize) % RING];
            if s.index == i {
                self.judge(s);
            }
            self.judged_to += 1;
        }
    }

    fn judge(&mut self, one: Slice) {
        // too few samples: added to the next slices' (for at most 1 s)
        let mut s = self.acc;
        s.index = one.index;
        s.sent += one.sent;
        s.target = s.target.max(one.target);
        s.known_sent += one.known_sent;
        s.known_replies += one.known_replies;
        s.rtt_sum_ns += one.rtt_sum_ns;
        s.rtt_n += one.rtt_n;
        let span = self.acc_slices + 1;
        if s.known_sent > 0 && s.known_sent < MIN_SAMPLES && span < 1_000_000_000 / self.slice_ns {
            self.acc = s;
            self.acc_slices = span;
            if !self.starting {
                return;
            }
            // start-up goes on while nothing is known
            s.known_sent = 0;
        }
        self.acc = Slice::default();
        self.acc_slices = 0;
        let sent_rate = s.sent as f64 * 1e9 / (span * self.slice_ns) as f64;
        let mut ratio = None;
        let mut loss = None;
        let peak_before = (self.peak_loss, self.peak_loss_rate);
        if s.known_sent >= MIN_SAMPLES {
            let r = (s.known_replies as f64 / s.known_sent as f64).min(1.0);
            // the loss-free ratio is learnt from slices sent slowly enough
            if self.best_ratio == 0.0 || r > self.best_ratio {
                self.best_ratio = r;
            }
            let l = if self.best_ratio > 0.0 {
                (1.0 - r / self.best_ratio).clamp(0.0, 1.0)
            } else {
                0.0
            };
            ratio = Some(r);
            loss = Some(l);
            self.known_sent += s.known_sent;
            self.lost += l * s.known_sent as f64;
            self.last_loss = l;
            if l > self.peak_loss {
                self.peak_loss = l;
                self.peak_loss_rate = sent_rate;
            }
        }
        let mean_rtt = (s.rtt_n > 0).then(|| s.rtt_sum_ns / s.rtt_n);
        let inflated = mean_rtt.is_some_and(|m| {
            self.min_rtt_ns != u64::MAX
                && m > 4 * self.min_rtt_ns
                && m > self.min_rtt_ns + INFLATED_NS
        });
        // the slice only says something about rates near the one it was sent
        // at: it must have been sent at half its asked rate at least (the end
        // of a round, a sender short of CPU say nothing)
        let full = sent_rate >= 0.5 * s.target;
        // one cut per round trip: slices sent before the last cut took
        // effect say nothing new
        let answered = self.cut_index.is_some_and(|c| s.index <= c);
        // loss must stand out of the sampling noise of this slice's count
        let lossy = |l: f64| l > LOSS_LIMIT + noise(s.known_sent);
        // a single bad slice is held, not acted on: a core taken away from
        // the sender or the receiver for a few ms makes one slice look lossy
        // or slow; a policer or a queue makes every slice so
        let bad = !answered && (loss.is_some_and(lossy) || inflated);
        let act = bad && self.strikes >= 1;
        if bad {
            let is_lossy = loss.is_some_and(lossy);
            let mut u = self.strike.unwrap_or(Undo {
                first: (s.index + 1).saturating_sub(span),
                last: s.index,
                known_sent: 0,
                replies: 0,
                rate: self.rate,
                ceiling: self.ceiling,
                starting: self.starting,
                peak_loss: peak_before.0,
                peak_loss_rate: peak_before.1,
                lost: 0.0,
                lossy: 0,
            });
            u.last = s.index;
            u.known_sent += s.known_sent;
            u.replies += s.known_replies;
            u.lost += loss.unwrap_or(0.0) * s.known_sent as f64;
            u.lossy += is_lossy as u64;
            (u.rate, u.ceiling, u.starting) = (self.rate, self.ceiling, self.starting);
            self.strike = Some(u);
            self.strikes = if act { 0 } else { self.strikes + 1 };
        } else if !answered && (loss.is_some() || mean_rtt.is_some()) {
            self.strikes = 0;
            self.strike = None;
        }
        match loss {
            Some(l) if lossy(l) && !act => {
                self.lossy += 1;
            }
            Some(l) if lossy(l) => {
                self.lossy += 1;
                self.undo = self.strike.take();
                self.cut_index = Some(self.now_index);
                // to what got through, but at most halved per cut: a slice
                // sent slowly by a sender short of CPU measures its own
                // rate, not the path's
                let delivered = sent_rate * (1.0 - l);
                let cut = (delivered * 0.9).max(0.5 * self.rate).min(self.rate);
                self.ceiling = self.ceiling.min(sent_rate.max(cut));
                self.rate = cut.clamp(self.min, self.max);
                self.starting = false;
            }
            _ if inflated && !act => {}
            _ if inflated => {
                self.undo = None;
                self.strike = None;
                self.cut_index = Some(self.now_index);
                self.ceiling = self.ceiling.min(sent_rate);
                self.rate = (self.rate * 0.85).clamp(self.min, self.max);
                self.starting = false;
            }
            _ if !full => {}
            None if !self.starting => {}
            _ => {
                let grown = if self.starting {
                    // twice what this slice was sent at: slices judged
                    // together after a pause do not multiply it
                    self.rate.max(2.0 * s.target)
                } else if self.rate < 0.8 * self.ceiling {
                    self.rate * GROW_FAR
                } else {
                    self.rate * GROW_NEAR
                };
                self.rate = grown.clamp(self.min, self.max);
                // the ceiling is a memory, not a wall: it rises slowly
                self.ceiling *= CEILING_DECAY;
            }
        }
        if self.keep_history {
            self.history.push(Judged {
                at_ns: self.origin_ns.saturating_add((s.index + 1) * self.slice_ns),
                rate: sent_rate,
                ratio,
                loss,
                next_rate: self.rate,
            });
        }
    }
}

/// Two standard deviations of a measured loss of [`LOSS_LIMIT`] over `n`
/// samples: loss must stand out of this sampling noise.
fn noise(n: u64) -> f64 {
    2.0 * (LOSS_LIMIT * (1.0 - LOSS_LIMIT) / n.max(1) as f64).sqrt()
}

/// Pairs of a block still lost after its retry rounds, from what the rounds
/// found: `answered_first` pairs answered the first round, `recovered[i]`
/// silent ones answered retry round `i + 1`. If every probe is lost with the
/// same chance `p` whatever the round (a fixed rate), the first retry
/// recovers `p / (1 − p) × answered_first × (1 − p)` = `p × answered_first`,
/// so `p = recovered[0] / answered_first`, and after the last round
/// `recovered[last] × p / (1 − p)` are still lost. Unlike the loss measured
/// against the best reply ratio seen, this needs no loss-free moment (a
/// fixed rate far above a policer never has one); the ports that are dropped
/// whatever the rate do not enter it. None without a retry round.
pub fn lost_after_retries(answered_first: u64, recovered: &[u64]) -> Option<f64> {
    let (first, last) = (*recovered.first()?, *recovered.last()?);
    let p = (first as f64 / answered_first.max(1) as f64).min(0.99);
    Some(last as f64 * p / (1.0 - p))
}

/// Buckets of an RTT histogram: four per power of two of nanoseconds (each
/// at most 25 % wide), up to 2^64 ns.
pub const RTT_BUCKETS: usize = 256;

/// The bucket of an RTT of `ns` nanoseconds.
pub fn rtt_bucket(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let log = 63 - ns.leading_zeros() as usize;
    let sub = ((ns >> (log - 2)) & 3) as usize;
    log * 4 + sub
}

/// The largest RTT (ns) bucket `i` holds.
pub fn rtt_bucket_top(i: usize) -> u64 {
    if i < 8 {
        // 4..8 hold nothing (4 ns is bucket 8)
        return i.min(3) as u64;
    }
    let (log, sub) = ((i / 4) as u32, (i % 4) as u128);
    let top = ((4 + sub + 1) << (log - 2)) - 1;
    top.min(u64::MAX as u128) as u64
}

/// The RTT (ns, rounded up to its bucket's top) that a share `q` of the
/// counted RTTs does not exceed; None when nothing was counted.
pub fn rtt_quantile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((total as f64 * q.clamp(0.0, 1.0)).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= want {
            return Some(rtt_bucket_top(i));
        }
    }
    None
}

/// How long replies must have stopped for, after a round, before the
/// unanswered are taken as silent (`last`) or retried: after the last round,
/// three times the RTT that 99.9 % of the replies so far came within (a few
/// replies held up by the scheduler do not stretch it, as the largest RTT
/// would), at least 5 ms; before a retry round, which still takes late
/// replies (a reply that comes after it only cost a second probe), twice the
/// 90 % RTT, at least 2 ms. None before any reply (nothing to judge by).
pub fn quiet_needed(rtts: &[u64], last: bool) -> Option<u64> {
    if last {
        rtt_quantile(rtts, 0.999).map(|q| q.saturating_mul(3).max(5_000_000))
    } else {
        rtt_quantile(rtts, 0.9).map(|q| q.saturating_mul(2).max(2_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated path: a host whose `open_ratio` of ports answer (the rest
    /// are dropped whatever the rate) behind a policer that passes at most
    /// `limit` probes/s (a token bucket refilled each ms); replies come back
    /// after `rtt_ns`. Runs `secs` seconds of sending at the controller's
    /// rate; returns (probes sent, probes lost to the policer, controller).
    fn run(
        limit: f64,
        answering: f64,
        rtt_ns: u64,
        secs: f64,
        max: f64,
    ) -> (u64, u64, RateControl) {
        let mut c = RateControl::new(START, 100.0, max, 0).with_history();
        let step = 1_000_000u64; // 1 ms
        let mut pending: Vec<(u64, u64)> = Vec::new(); // (sent, reply at)
        let (mut sent, mut policed) = (0u64, 0u64);
        let mut carry = 0.0;
        let mut tokens = 0.0f64;
        let mut k = 0u64;
        let steps = (secs * 1000.0) as u64;
        for t in 0..steps {
            let now = t * step;
            tokens = (tokens + limit / 1000.0).min(limit / 1000.0 + 5.0);
            carry += c.rate() / 1000.0;
            let n = carry.floor() as u64;
            carry -= n as f64;
            c.on_sent(now, n, n);
            for _ in 0..n {
                k += 1;
                sent += 1;
                let passes = tokens >= 1.0;
                if passes {
                    tokens -= 1.0;
                } else {
                    policed += 1;
                }
                // a fixed share of ports (spread by the probe order) is
                // dropped by the host's firewall
                let answers =
                    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as f64 / 1024.0 < answering;
                if passes && answers {
                    pending.push((now, now + rtt_ns));
                }
            }
            pending.retain(|&(s, at)| {
                if at <= now {
                    c.on_reply(s, at);
                    false
                } else {
                    true
                }
            });
            c.on_receiver(now);
            c.tick(now);
        }
        (sent, policed, c)
    }

    #[test]
    fn clean_path_ramps_to_the_ceiling_quickly() {
        let (sent, policed, c) = run(f64::INFINITY, 1.0, 100_000, 0.5, 1_000_000.0);
        assert_eq!(policed, 0);
        assert_eq!(c.rate(), 1_000_000.0, "{:?}", c.history());
        assert!(sent > 150_000, "{sent}");
        assert_eq!(c.peak_loss, 0.0);
        // slow start: the rate doubles every slice, 20k/s to 1M/s (six
        // doublings) in well under 100 ms
        let top = c
            .history()
            .iter()
            .find(|j| j.next_rate == 1_000_000.0)
            .unwrap();
        assert!(top.at_ns < 60_000_000, "{:?}", c.history());
    }

    #[test]
    fn loss_estimated_from_what_retries_recover() {
        // 10,000 answering pairs, half the probes lost: 5,000 answer the
        // first round, 2,500 the retry, 1,250 the next; 1,250 still lost
        assert_eq!(lost_after_retries(5_000, &[2_500, 1_250]), Some(1_250.0));
        assert_eq!(lost_after_retries(5_000, &[2_500]), Some(2_500.0));
        // a clean path: the retries of dropped ports find nothing
        assert_eq!(lost_after_retries(65_533, &[0]), Some(0.0));
        assert_eq!(lost_after_retries(65_533, &[]), None);
        // nothing answered at first, much later: the chance is capped
        assert!(lost_after_retries(0, &[10]).unwrap() > 980.0);
    }

    #[test]
    fn rtt_buckets_and_quantiles() {
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 100, 65_535, 1 << 40, u64::MAX] {
            let i = rtt_bucket(ns);
            assert!(i < RTT_BUCKETS, "{ns}");
            assert!(rtt_bucket_top(i) >= ns, "{ns}");
            assert!(i == 0 || rtt_bucket_top(i - 1) < ns, "{ns}");
        }
        assert_eq!(rtt_bucket_top(rtt_bucket(1_000_000)), 1_048_575);
        let mut h = [0u64; RTT_BUCKETS];
        assert_eq!(rtt_quantile(&h, 0.999), None);
        assert_eq!(quiet_needed(&h, true), None);
        // 9,990 replies within 100 µs, ten held up 200 ms by a busy core
        h[rtt_bucket(100_000)] += 9_990;
        h[rtt_bucket(200_000_000)] += 10;
        assert_eq!(
            rtt_quantile(&h, 0.999),
            Some(rtt_bucket_top(rtt_bucket(100_000)))
        );
        assert_eq!(quiet_needed(&h, true), Some(5_000_000));
        assert_eq!(quiet_needed(&h, false), Some(2_000_000));
        assert!(rtt_quantile(&h, 1.0).unwrap() >= 200_000_000);
        // a slow path: its own RTT sets the wait
        let mut h = [0u64; RTT_BUCKETS];
        h[rtt_bucket(80_000_000)] += 100;
        let q = quiet_needed(&h, true).unwrap();
        assert!((240_000_000..300_000_000).contains(&q), "{q}");
        let q = quiet_needed(&h, false).unwrap();
        assert!((160_000_000..200_000_000).contains(&q), "{q}");
    }

    #[test]
    fn slices_judged_together_double_the_rate_once() {
        let mut c = RateControl::new(START, 100.0, 1e7, 0);
        for k in 0..4u64 {
            c.on_sent(k * SLICE, 200, 200);
        }
        for k in 0..4u64 {
            for _ in 0..200 {
                c.on_reply(k * SLICE, k * SLICE + 100_000);
            }
        }
        // the receiver catches up late: four slices judged at once
        c.on_receiver(10 * SLICE);
        c.tick(10 * SLICE);
        assert_eq!(c.rate(), 2.0 * START);
    }

    #[test]
    fn policer_is_found_and_the_rate_settles_under_it() {
        let (sent, policed, c) = run(20_000.0, 1.0, 100_000, 3.0, 1_000_000.0);
        let r = c.rate();
        assert!((12_000.0..=22_000.0).contains(&r), "{r} {:?}", c.history());
        // what the policer took is a small share of the scan
        assert!((policed as f64) < 0.08 * sent as f64, "{policed} of {sent}");
        assert!(c.peak_loss > LOSS_LIMIT);
        // in the last second the rate stays near the limit and loses little
        let late: Vec<&Judged> = c
            .history()
            .iter()
            .filter(|j| j.at_ns > 2_000_000_000)
            .collect();
        assert!(!late.is_empty());
        let lost = late.iter().filter_map(|j| j.loss).sum::<f64>() / late.len() as f64;
        assert!(lost < 0.05, "{lost}");
    }

    #[test]
    fn dropped_ports_are_not_loss() {
        // a third of the ports answer nothing at any rate: still the ceiling
        let (_, _, c) = run(f64::INFINITY, 0.66, 100_000, 0.5, 500_000.0);
        assert_eq!(c.rate(), 500_000.0, "{:?}", c.history());
        assert!(c.peak_loss < LOSS_LIMIT, "{}", c.peak_loss);
    }

    #[test]
    fn a_receiver_that_lags_is_not_loss() {
        let mut c = RateControl::new(START, 100.0, 1e6, 0);
        c.on_sent(0, 400, 400);
        c.on_receiver(0);
        // 50 ms later the receiver has not read the replies yet: no verdict
        c.tick(50_000_000);
        assert_eq!(c.rate(), START);
        for _ in 0..400 {
            c.on_reply(0, 10_000_000);
        }
        c.on_receiver(50_000_000);
        c.tick(50_000_000);
        assert_eq!(c.rate(), 2.0 * START);
        assert_eq!(c.peak_loss, 0.0);
        // a second behind: not loss either, but an overrun (the rate falls,
        // nothing is counted lost)
        c.on_sent(60_000_000, 400, 400);
        c.tick(1_100_000_000);
        assert_eq!(c.rate(), 0.7 * 2.0 * START);
        assert_eq!((c.overruns, c.lossy_slices(), c.peak_loss), (1, 0, 0.0));
    }

    #[test]
    fn inflated_rtt_slows_down() {
        let mut c = RateControl::new(100_000.0, 100.0, 1e6, 0);
        c.on_sent(0, 100, 100);
        for k in 0..100 {
            c.on_reply(0, 1_000_000 + k);
        }
        c.on_receiver(200_000_000);
        c.tick(200_000_000);
        let before = c.rate();
        // one slow slice is held; the second in a row slows down
        for (k, t) in [200_000_000u64, 700_000_000].into_iter().enumerate() {
            c.on_sent(t, 100, 100);
            for _ in 0..100 {
                c.on_reply(t, t + 30_000_000);
            }
            c.on_receiver(t + 400_000_000);
            c.tick(t + 400_000_000);
            if k == 0 {
                assert_eq!(c.rate(), before);
            }
        }
        assert!(c.rate() < before, "{} {}", c.rate(), before);
    }

    /// Replies per slice of [`late_in_slices_4_and_5`].
    const LATE_PER_SLICE: u64 = 1_000;

    /// 12 slices of 1,000 probes, every one answered after 100 µs but in
    /// slices 4 and 5, whose replies wait in a busy core's backlog until
    /// after they are judged; returns those two slices' send instants.
    fn late_in_slices_4_and_5(c: &mut RateControl) -> Vec<u64> {
        let mut held = Vec::new();
        for k in 0..12u64 {
            let t = k * SLICE;
            c.on_sent(t, LATE_PER_SLICE, LATE_PER_SLICE);
            if k == 4 || k == 5 {
                held.push(t);
            } else {
                for _ in 0..LATE_PER_SLICE {
                    c.on_reply(t, t + 100_000);
                }
            }
            c.on_receiver(t + SLICE);
            c.tick(t + SLICE);
        }
        held
    }

    /// The held-back replies of [`late_in_slices_4_and_5`] arrive, late.
    fn release_late(c: &mut RateControl, held: &[u64]) {
        for &t in held {
            for _ in 0..LATE_PER_SLICE {
                c.on_reply(t, 12 * SLICE);
            }
        }
    }

    #[test]
    fn a_cut_for_replies_that_were_only_late_is_undone() {
        let mut c = RateControl::new(START, 100.0, 1e7, 0);
        let held = late_in_slices_4_and_5(&mut c);
        assert!(!c.starting, "{:?}", c.history());
        let cut = c.rate();
        release_late(&mut c, &held);
        assert!(c.starting);
        assert!(c.rate() > cut, "{} {cut}", c.rate());
        assert_eq!(c.spurious_cuts, 1);
        assert_eq!(c.peak_loss, 0.0);
        assert!(c.margin_ns >= 2 * SLICE);
    }

    #[test]
    fn one_lossy_slice_is_a_hiccup_not_a_policer() {
        let mut c = RateControl::new(START, 100.0, 1e7, 0);
        let per_slice = 1_000u64;
        for k in 0..12u64 {
            let t = k * SLICE;
            c.on_sent(t, per_slice, per_slice);
            // slice 6: the receiver's core was taken away, half the replies
            // came after the slice was judged
            let replies = if k == 6 { per_slice / 2 } else { per_slice };
            for _ in 0..replies {
                c.on_reply(t, t + 100_000);
            }
            c.on_receiver(t + SLICE);
            c.tick(t + SLICE);
        }
        assert!(c.lossy_slices() >= 1);
        assert!(c.rate() >= START * 2.0, "{}", c.rate());
        assert!(c.starting);
        // the other half comes late: slices are judged later from now on
        assert_eq!(c.margin_ns, 0);
        for _ in 0..per_slice / 2 {
            c.on_reply(6 * SLICE, 12 * SLICE);
        }
        assert_eq!(c.margin_ns, 2 * SLICE);
    }

    #[test]
    fn capture_drops_cut_the_rate_at_once_and_once_per_trip_through_the_capture() {
        // a clean path whose receiver reads 300k replies/s at most: above
        // that its capture drops what it cannot take
        let mut c = RateControl::new(START, 100.0, 1e6, 0);
        let mut cuts = Vec::new();
        let (mut dropped, mut sent) = (0, 0);
        for ms in 0..400u64 {
            let t = ms * 1_000_000;
            let n = (c.rate() / 1000.0) as u64;
            sent += n;
            c.on_sent(t, n, n);
            for _ in 0..n.min(300) {
                c.on_reply(t, t + 100_000);
            }
            let before = c.rate();
            c.on_capture_drops(t, n.saturating_sub(300));
            dropped += n.saturating_sub(300);
            if c.rate() < before {
                cuts.push((ms, before, c.rate()));
            }
            c.on_receiver(t);
            c.tick(t);
        }
        // start-up overshoots (its slices are judged 10 ms late, the drops
        // come at once): cut at once by 30 %, again no sooner than two
        // slices later while the drops go on
        assert!(!cuts.is_empty());
        assert!(
            cuts.iter().all(|&(_, b, a)| (a - 0.7 * b).abs() < 1.0),
            "{cuts:?}"
        );
        assert!(cuts.windows(2).all(|w| w[1].0 >= w[0].0 + 10), "{cuts:?}");
        // then the rate stays under what the receiver keeps up with, but
        // for a probe upwards now and then (the ceiling rises slowly: a
        // receiver that got its core back is found again)
        assert!(c.rate() <= 300_000.0, "{} {cuts:?}", c.rate());
        assert!(cuts.len() <= 3, "{cuts:?}");
        assert!(dropped < sent / 50, "{dropped} of {sent}");
        assert!(!c.starting);
        assert_eq!(c.capture_drops, dropped);
        // a receiver far behind: drops it finds while it reads the backlog
        // of before the cut do not cut again
        let mut c = RateControl::new(400_000.0, 100.0, 1e6, 0);
        c.on_receiver(0);
        c.on_capture_drops(SLICE, 1000);
        assert_eq!(c.rate(), 280_000.0);
        for k in 2..200u64 {
            c.on_receiver(SLICE + k * 10_000);
            c.on_capture_drops(SLICE + k * 1_000_000, 1000);
        }
        assert_eq!(c.rate(), 280_000.0);
        // once it has read what came two slices after the cut, they do
        c.on_receiver(3 * SLICE);
        c.on_capture_drops(200 * SLICE, 1000);
        assert_eq!(c.rate(), 196_000.0);
        // none: nothing happens; a fixed rate stays fixed (measured only)
        let mut f = RateControl::new(1e6, 1e6, 1e6, 0);
        f.on_capture_drops(0, 0);
        assert_eq!(f.capture_drops, 0);
        f.on_capture_drops(0, 500);
        assert_eq!((f.rate(), f.capture_drops), (1e6, 500));
    }

    #[test]
    fn a_receiver_far_behind_slows_the_rate_before_its_capture_drops() {
        let mut c = RateControl::new(400_000.0, 100.0, 1e6, 0);
        // 60 ms behind: a hiccup, nothing happens
        c.on_receiver(40_000_000);
        c.tick(100_000_000);
        assert_eq!((c.rate(), c.overruns), (400_000.0, 0));
        // 150 ms behind: cut once; again only after it read past the cut
        c.tick(190_000_000);
        assert_eq!((c.rate(), c.overruns), (280_000.0, 1));
        c.tick(250_000_000);
        assert_eq!(c.rate(), 280_000.0);
        c.on_receiver(200_000_000);
        c.tick(350_000_000);
        assert_eq!((c.rate(), c.overruns), (196_000.0, 2));
        assert_eq!(c.capture_drops, 0);
    }

    #[test]
    fn a_capture_cut_is_not_undone_by_late_replies() {
        let mut c = RateControl::new(START, 100.0, 1e7, 0);
        let held = late_in_slices_4_and_5(&mut c);
        // the loss cut is in; then the capture drops
        c.on_capture_drops(12 * SLICE, 100);
        let cut = c.rate();
        release_late(&mut c, &held);
        assert_eq!(c.rate(), cut);
        assert_eq!(c.spurious_cuts, 0);
    }

    #[test]
    fn backpressure_caps_the_rate_and_bounds_hold() {
        let mut c = RateControl::new(50_000.0, 1000.0, 80_000.0, 0);
        c.on_backpressure(0, 30_000.0);
        assert_eq!(c.rate(), 27_000.0);
        c.on_backpressure(0, 10.0);
        assert_eq!(c.rate(), 1000.0);
        let c = RateControl::new(5.0, 1000.0, 80_000.0, 0);
        assert_eq!(c.rate(), 1000.0);
        // silence (no known host yet) during start-up still ramps, to max
        let mut c = RateControl::new(START, 100.0, 80_000.0, 0);
        for t in 0..200u64 {
            c.on_sent(t * 1_000_000, 50, 0);
            c.on_receiver(t * 1_000_000);
            c.tick(t * 1_000_000);
        }
        assert_eq!(c.rate(), 80_000.0);
    }
}
