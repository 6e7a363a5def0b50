//! Who resets a scan's SYN-ACKs, learned from what leaves (sans-IO).
//!
//! An open port's SYN-ACK must be answered with an RST, or the host keeps a
//! half-open connection (and sends its SYN-ACK again) for a minute. When a
//! scan sends from an address of this host, the kernel does it already: no
//! socket owns the connection, so TCP answers the SYN-ACK with an RST within
//! microseconds. Our own RST on top doubles what an open port costs (on
//! 65,536 hosts × 4 ports, a quarter of the scan's time); but a local
//! firewall that drops the kernel's RSTs (a rule some scanners' guides ask
//! for), or a source the kernel does not own, leaves the reset to us.
//!
//! So each source address starts out learning: the capture shows the resets
//! leaving, and a SYN-ACK's RST is held for [`HOLD`]. If the kernel's RST for
//! that connection leaves within it, ours is not sent; after [`TRUST`] in a
//! row the kernel is trusted with that source's resets for the rest of the
//! scan. One that does not come and ours goes out, at once and for every
//! SYN-ACK of that source from then on (today's rule: never leave a
//! half-open connection behind).

use crate::event::Timestamp;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

/// How long a SYN-ACK's RST waits for the kernel's: the kernel answers in
/// the same pass that delivers the SYN-ACK (microseconds); this leaves room
/// for a busy host's scheduling.
pub const HOLD: Duration = Duration::from_millis(2);
/// Kernel resets seen in a row before the kernel is trusted with a source.
pub const TRUST: u32 = 16;
/// Probes a scan sends while it learns: a source with too few SYN-ACKs by
/// then is ours to reset (its own RSTs cost little), and the capture stops
/// being shown every packet that leaves (a copy each).
pub const LEARN_WITHIN: u64 = 1 << 12;

/// Who resets the SYN-ACKs of one source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resetter {
    /// Not known yet: the kernel's resets seen so far.
    Learning(u32),
    /// The kernel (seen [`TRUST`] times in a row).
    Kernel,
    /// Us (a kernel reset did not come, or learning is off).
    Us,
}

/// One SYN-ACK whose reset waits for the kernel's.
#[derive(Debug, Clone, Copy)]
struct Held {
    source: IpAddr,
    host: IpAddr,
    port: u16,
    due: Timestamp,
}

/// The resets of one scan, by source address.
#[derive(Debug, Clone)]
pub struct Resets {
    learn: bool,
    sources: Vec<(IpAddr, Resetter)>,
    held: VecDeque<Held>,
    /// RSTs we sent to SYN-ACKs.
    pub ours: u64,
    /// Kernel resets seen while learning.
    pub kernel_seen: u64,
}

impl Resets {
    /// `learn`: find out per source whether the kernel resets; without it we
    /// always do.
    pub fn new(learn: bool) -> Resets {
        Resets {
            learn,
            sources: Vec::new(),
            held: VecDeque::new(),
            ours: 0,
            kernel_seen: 0,
        }
    }

    /// Who resets `source`'s SYN-ACKs now.
    pub fn resetter(&self, source: IpAddr) -> Resetter {
        match self.sources.iter().find(|s| s.0 == source) {
            Some(&(_, r)) => r,
            None if self.learn => Resetter::Learning(0),
            None => Resetter::Us,
        }
    }

    fn set(&mut self, source: IpAddr, r: Resetter) {
        match self.sources.iter_mut().find(|s| s.0 == source) {
            Some(s) => s.1 = r,
            None => self.sources.push((source, r)),
        }
    }

    /// A SYN-ACK from `host`:`port` to `source` was captured at `at`: true
    /// when our RST goes now; else the kernel's is trusted or awaited.
    pub fn on_syn_ack(&mut self, source: IpAddr, host: IpAddr, port: u16, at: Timestamp) -> bool {
        match self.resetter(source) {
            Resetter::Us => {
                self.ours += 1;
                true
            }
            Resetter::Kernel => false,
            Resetter::Learning(_) => {
                self.held.push_back(Held {
                    source,
                    host,
                    port,
                    due: at + HOLD,
                });
                false
            }
        }
    }

    /// An RST left from `source` to `host`:`port` (ours, or the kernel's).
    pub fn on_reset_leaving(&mut self, source: IpAddr, host: IpAddr, port: u16) {
        let Some(i) = self
            .held
            .iter()
            .position(|h| (h.source, h.host, h.port) == (source, host, port))
        else {
            return;
        };
        self.held.remove(i);
        self.kernel_seen += 1;
        if let Resetter::Learning(n) = self.resetter(source) {
            let r = if n + 1 >= TRUST {
                Resetter::Kernel
            } else {
                Resetter::Learning(n + 1)
            };
            self.set(source, r);
        }
    }

    /// The held SYN-ACKs ours to reset by `now` (everything captured before
    /// `now` has been read): those whose kernel RST did not come, and every
    /// other one of their sources, which are ours from now on.
    pub fn due(&mut self, now: Timestamp) -> Vec<(IpAddr, u16)> {
        let mut out = Vec::new();
        while let Some(h) = self.held.front().filter(|h| h.due <= now).copied() {
            self.set(h.source, Resetter::Us);
            let sources = &self.sources;
            self.held.retain(|x| {
                let ours = sources.contains(&(x.source, Resetter::Us));
                if ours {
                    out.push((x.host, x.port));
                }
                !ours
            });
        }
        self.ours += out.len() as u64;
        out
    }

    /// Learning is over: every source not known yet is ours to reset
    /// (what is held still waits for its kernel RST).
    pub fn stop_learning(&mut self) {
        self.learn = false;
        for s in &mut self.sources {
            if matches!(s.1, Resetter::Learning(_)) {
                s.1 = Resetter::Us;
            }
        }
    }

    /// When [`Resets::due`] has something next.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.held.front().map(|h| h.due)
    }

    /// Are resets leaving still of interest (a source learning, or a reset
    /// awaited)? Once not, the capture need not show what leaves.
    pub fn watching(&self) -> bool {
        !self.held.is_empty()
            || (self.learn && self.sources.is_empty())
            || self
                .sources
                .iter()
                .any(|s| matches!(s.1, Resetter::Learning(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn kernel_resets_seen_in_a_row_trust_the_kernel() {
        let (src, host) = (ip("198.18.0.1"), ip("198.18.0.2"));
        let mut r = Resets::new(true);
        assert!(r.watching());
        for i in 0..TRUST {
            let at = Timestamp(i as u64 * MS);
            assert!(!r.on_syn_ack(src, host, 80 + i as u16, at));
            assert_eq!(r.next_due(), Some(at + HOLD));
            r.on_reset_leaving(src, host, 80 + i as u16);
            assert!(r.due(at + HOLD).is_empty());
        }
        assert_eq!(r.resetter(src), Resetter::Kernel);
        assert!(!r.watching());
        assert!(!r.on_syn_ack(src, host, 9, Timestamp(100 * MS)));
        assert_eq!((r.ours, r.kernel_seen, r.next_due()), (0, 16, None));
        // another source learns on its own
        assert_eq!(r.resetter(ip("198.18.1.1")), Resetter::Learning(0));
    }

    #[test]
    fn a_reset_that_does_not_come_makes_the_source_ours() {
        let (src, other, host) = (ip("198.18.0.1"), ip("198.18.1.1"), ip("198.18.0.2"));
        let mut r = Resets::new(true);
        assert!(!r.on_syn_ack(src, host, 80, Timestamp(0)));
        assert!(!r.on_syn_ack(other, host, 80, Timestamp(MS / 2)));
        assert!(!r.on_syn_ack(src, host, 81, Timestamp(MS)));
        // a reset to another port (a canary's, say) is not this one's
        r.on_reset_leaving(src, host, 443);
        assert!(r.due(Timestamp(HOLD.as_nanos() as u64 - 1)).is_empty());
        // the first is due: ours, with the other held of its source
        assert_eq!(r.due(Timestamp(0) + HOLD), vec![(host, 80), (host, 81)]);
        assert_eq!(r.resetter(src), Resetter::Us);
        assert!(r.on_syn_ack(src, host, 82, Timestamp(3 * MS)));
        // the other source's kernel reset still counts for it
        r.on_reset_leaving(other, host, 80);
        assert_eq!(r.resetter(other), Resetter::Learning(1));
        assert_eq!((r.ours, r.kernel_seen), (3, 1));
        assert!(r.watching());
    }

    #[test]
    fn without_learning_every_reset_is_ours() {
        let mut r = Resets::new(false);
        assert!(!r.watching());
        assert!(r.on_syn_ack(ip("198.18.0.1"), ip("198.18.0.2"), 80, Timestamp(0)));
        assert_eq!((r.ours, r.next_due()), (1, None));
    }

    #[test]
    fn learning_stopped_leaves_the_undecided_ours_and_waits_for_the_held() {
        let (src, host) = (ip("198.18.0.1"), ip("198.18.0.2"));
        let mut r = Resets::new(true);
        assert!(!r.on_syn_ack(src, host, 80, Timestamp(0)));
        r.stop_learning();
        assert_eq!(r.resetter(src), Resetter::Us);
        assert_eq!(r.resetter(ip("198.18.1.1")), Resetter::Us);
        assert!(r.watching());
        r.on_reset_leaving(src, host, 80);
        assert!(!r.watching());
        assert_eq!((r.ours, r.kernel_seen), (0, 1));
        assert!(r.on_syn_ack(src, host, 81, Timestamp(MS)));
    }
}
