//! Time and direction as the probe logic sees them: plain values, handed in
//! by the I/O layer, so the logic never reads a clock itself.

use std::time::Duration;

/// A point in time on CLOCK_REALTIME, nanoseconds since the epoch: the clock the
/// kernel stamps captured packets with (the same stamp tcpdump reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The system clock now (only the I/O layer and commands call this).
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }
    /// The time from `earlier` to this stamp; zero if `earlier` is later.
    pub fn saturating_sub(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_nanos() as u64))
    }
}

/// Direction of a captured packet, from this host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by this host (seen by the capture on its way out).
    Outgoing,
    /// Received by this host.
    Incoming,
}
