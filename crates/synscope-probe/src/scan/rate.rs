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
//! - loss above [`LOSS_LIMIT`]: the rate falls to what got through
//!   (`sent rate × (1 − loss)`) less a margin, never below `min`; the start-up
//!   ramp ends and the rate where loss began is remembered as a ceiling;
//! - RTT inflated (the slice's mean RTT above 4× the smallest seen, and
//!   above it by 2 ms): a queue is building; the rate falls by 15 %;
//! - send back-pressure (the kernel's queue full): the rate falls to what
//!   was actually sent, and that becomes a ceiling;
//! - otherwise it grows: doubling per slice during start-up, then by 10 %
//!   per slice below the remembered ceiling and 2 % near it (the ceiling
//!   decays so a policer that lifts is found again); never above `max`.
//!
//! Slices with too few probes to known hosts are not judged by loss: during
//! start-up the rate still doubles (nothing says the path is full), after it
//! the rate holds.

/// The time slice (ns).
pub const SLICE: u64 = 20_000_000;
/// Probes to known hosts a slice needs before its ratio is trusted.
pub const MIN_SAMPLES: u64 = 40;
/// Loss a slice may show before the rate falls.
pub const LOSS_LIMIT: f64 = 0.03;
/// The start rate when none is given (probes/s).
pub const START: f64 = 20_000.0;
/// Slices kept (the current one and those waiting to be judged).
const RING: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    /// Index of the slice (start = origin + index × len); u64::MAX: unused.
    index: u64,
    sent: u64,
    /// Probes to hosts known to answer, and their replies.
    known_sent: u64,
    known_replies: u64,
    rtt_sum_ns: u64,
    rtt_n: u64,
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
    /// Slices judged with too few samples, added up until they have enough.
    acc: Slice,
    acc_slices: u64,
    /// The slice being sent in when the rate was last cut: loss of slices up
    /// to it was already answered.
    cut_index: Option<u64>,
    now_index: u64,
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
            acc: Slice::default(),
            acc_slices: 0,
            cut_index: None,
            now_index: 0,
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
        if let Some(s) = self.slice(at_ns) {
            s.sent += n;
            s.known_sent += known;
        }
    }

    /// The receiver has read every reply captured up to `at_ns` (it read
    /// one stamped then, or found its queue empty then).
    pub fn on_receiver(&mut self, at_ns: u64) {
        self.receiver_ns = self.receiver_ns.max(at_ns);
    }

    /// A reply at `at_ns` to a probe to a known host sent at `sent_ns`.
    pub fn on_reply(&mut self, sent_ns: u64, at_ns: u64) {
        self.on_receiver(at_ns);
        let rtt = at_ns.saturating_sub(sent_ns);
        self.min_rtt_ns = self.min_rtt_ns.min(rtt.max(1));
        if let Some(s) = self.slice(sent_ns) {
            s.known_replies += 1;
            s.rtt_sum_ns += rtt;
            s.rtt_n += 1;
        }
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

    /// Judges every slice whose replies have had time to come by `now_ns`:
    /// two slices after it ended, and at least 3× the smallest RTT after.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_index = self.index_of(now_ns);
        // judged as far as the receiver has read
        let current = self.index_of(now_ns.min(self.receiver_ns));
        let rtt = if self.min_rtt_ns == u64::MAX {
            0
        } else {
            self.min_rtt_ns
        };
        let wait = (2 + 3 * rtt / self.slice_ns).min(RING as u64 - 1);
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
                && m > self.min_rtt_ns + 2_000_000
        });
        // the slice only says something about rates near the one it was sent at
        let full = sent_rate >= 0.5 * self.rate;
        // one cut per round trip: slices sent before the last cut took
        // effect say nothing new
        let answered = self.cut_index.is_some_and(|c| s.index <= c);
        // loss must stand out of the sampling noise of this slice's count
        let noise = 2.0 * (LOSS_LIMIT * (1.0 - LOSS_LIMIT) / s.known_sent.max(1) as f64).sqrt();
        let lossy = |l: f64| l > LOSS_LIMIT + noise;
        match loss {
            Some(l) if lossy(l) && answered => {
                self.lossy += 1;
            }
            Some(l) if lossy(l) => {
                self.lossy += 1;
                self.cut_index = Some(self.now_index);
                let delivered = sent_rate * (1.0 - l);
                self.ceiling = self.ceiling.min(sent_rate);
                self.rate = (delivered * 0.9).min(self.rate).clamp(self.min, self.max);
                self.starting = false;
            }
            _ if inflated && answered => {}
            _ if inflated => {
                self.cut_index = Some(self.now_index);
                self.ceiling = self.ceiling.min(sent_rate);
                self.rate = (self.rate * 0.85).clamp(self.min, self.max);
                self.starting = false;
            }
            _ if !full => {}
            None if !self.starting => {}
            _ => {
                let grown = if self.starting {
                    self.rate * 2.0
                } else if self.rate < 0.8 * self.ceiling {
                    self.rate * 1.10
                } else {
                    self.rate * 1.02
                };
                self.rate = grown.clamp(self.min, self.max);
                // the ceiling is a memory, not a wall: it rises slowly
                self.ceiling *= 1.01;
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
        // a second later the receiver has not read the replies yet: no verdict
        c.tick(1_000_000_000);
        assert_eq!(c.rate(), START);
        for _ in 0..400 {
            c.on_reply(0, 10_000_000);
        }
        c.on_receiver(1_000_000_000);
        c.tick(1_000_000_000);
        assert_eq!(c.rate(), 2.0 * START);
        assert_eq!(c.peak_loss, 0.0);
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
        let t = 200_000_000;
        c.on_sent(t, 100, 100);
        for _ in 0..100 {
            c.on_reply(t, t + 30_000_000);
        }
        c.on_receiver(t + 400_000_000);
        c.tick(t + 400_000_000);
        assert!(c.rate() < before, "{} {}", c.rate(), before);
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
