//! Time for the drive loop: the capture clock (CLOCK_REALTIME, what the kernel
//! stamps packets with) for deadlines, a monotonic clock for bounds, and the
//! one conversion of a capture-clock deadline into an instant to sleep until.

use crate::event::Timestamp;
use std::time::{Duration, Instant};

/// What the drive loop reads time from: the real clocks, or a simulation's.
pub trait Clock {
    /// Now, on the capture clock.
    fn now(&self) -> Timestamp;
    /// Time since the run started, on a clock that never jumps.
    fn elapsed(&self) -> Duration;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    started: Instant,
}

impl RealClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> RealClock {
        RealClock {
            started: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        RealClock::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The monotonic instant at which the capture clock reads `t` (now if `t` has
/// passed): the one place a capture-clock deadline becomes a sleep.
pub fn instant_of(t: Timestamp) -> Instant {
    Instant::now() + t.saturating_sub(Timestamp::now())
}
