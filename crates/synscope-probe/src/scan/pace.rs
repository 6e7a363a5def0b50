//! Even pacing of a sender that backs off when the kernel's queue is full:
//! the rate halves at each stall (EAGAIN / ENOBUFS) and creeps back up to the
//! asked rate while sends go through. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// The lowest rate back-pressure can push a sender down to (packets/s).
const MIN_RATE: f64 = 100.0;

/// Send times for an even rate, slowed by back-pressure, on any clock `T`
/// (an [`Instant`], or a capture [`crate::event::Timestamp`] of a sans-IO machine).
#[derive(Debug, Clone)]
pub struct Pacer<T = Instant> {
    target: f64,
    rate: f64,
    origin: T,
    base: u64,
}

impl<T: Copy + Ord + std::ops::Add<Duration, Output = T>> Pacer<T> {
    /// A pacer of `rate` packets per second (at least 0.001), starting at `now`.
    pub fn new(rate: f64, now: T) -> Pacer<T> {
        let rate = rate.max(1e-3);
        Pacer {
            target: rate,
            rate,
            origin: now,
            base: 0,
        }
    }

    /// When the packet after `sent` packets may go out.
    pub fn due(&self, sent: u64) -> T {
        let secs = sent.saturating_sub(self.base) as f64 / self.rate;
        self.origin + Duration::from_secs_f64(secs.min(1e9))
    }

    /// The current rate (packets/s).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The asked rate.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// A new asked rate (from rate control), after `sent` packets: spacing
    /// goes on from the next packet's due time, without a burst to catch up.
    pub fn retarget(&mut self, rate: f64, sent: u64, now: T) {
        let rate = rate.max(1e-3);
        self.origin = self.due(sent).max(now);
        self.base = sent;
        self.target = rate;
        self.rate = rate;
    }

    /// After a batch: `sent` packets so far; `stalled` if the queue was full.
    pub fn after_batch(&mut self, sent: u64, stalled: bool, now: T) {
        let (origin, rate) = if stalled {
            (now, (self.rate / 2.0).max(MIN_RATE.min(self.target)))
        } else if self.rate < self.target {
            (self.due(sent).max(now), (self.rate * 1.05).min(self.target))
        } else {
            return;
        };
        self.origin = origin;
        self.base = sent;
        self.rate = rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_spacing_halving_and_recovery() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000.0, t0);
        assert_eq!(p.due(10), t0 + Duration::from_millis(10));
        let t1 = t0 + Duration::from_millis(50);
        p.after_batch(10, true, t1);
        assert_eq!(p.rate(), 500.0);
        // no burst to catch up: spacing restarts from the stall
        assert_eq!(p.due(11), t1 + Duration::from_millis(2));
        for n in 0..100 {
            p.after_batch(11 + n, false, t1);
        }
        assert_eq!(p.rate(), 1000.0);
        let mut low = Pacer::new(1000.0, t0);
        for _ in 0..40 {
            low.after_batch(0, true, t0);
        }
        assert_eq!(low.rate(), MIN_RATE);
        let mut p = Pacer::new(1000.0, t0);
        p.retarget(2000.0, 10, t0);
        assert_eq!(p.due(12), t0 + Duration::from_millis(11));
        assert_eq!(p.target(), 2000.0);
    }
}
