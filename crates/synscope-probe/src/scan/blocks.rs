//! Bounded per-probe state: a shard's probes (numbered 0..n in send order) are
//! scanned one block of consecutive numbers at a time. A block is sent, its
//! unanswered probes retried after the wait, its no-responses reported, and its
//! memory reused for the next block: state is two bits per probe of ONE block,
//! whatever the size of the target space (a /0 × 65535 ports has 2^48 probes).
//!
//! Pure bookkeeping: the scan loop in `cmd::scan` sends, waits and reports.

use std::ops::Range;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest block: any scan of up to 2^20 probes is one block (as if
/// there were no blocks at all).
pub const MIN_BLOCK: u64 = 1 << 20;
/// The largest block: 2^24 probes, 2 × 2 MiB of bits.
pub const MAX_BLOCK: u64 = 1 << 24;
/// A block holds about this many seconds of sending at the scan's rate, so the
/// wait after each block's rounds costs little next to its sending time.
const BLOCK_SECONDS: u64 = 30;

const RELAXED: Ordering = Ordering::Relaxed;

/// How many probes one block holds at `rate` probes per second.
pub fn block_size(rate: u64) -> u64 {
    rate.saturating_mul(BLOCK_SECONDS)
        .clamp(MIN_BLOCK, MAX_BLOCK)
}

/// The blocks of `0..probes`, in order.
pub fn blocks(probes: u64, size: u64) -> impl Iterator<Item = Range<u64>> {
    let size = size.max(1);
    (0..probes.div_ceil(size)).map(move |b| b * size..((b + 1) * size).min(probes))
}

/// What marking a probe answered found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The first answer to a probe of the current block.
    First,
    /// It was answered already (a duplicate reply).
    Again,
    /// Not in the current block: a late reply to a finished block (or a reply
    /// to a probe not sent yet, which no honest peer sends).
    Elsewhere,
}

/// Sent and answered bits of the current block, shared by the sender threads
/// (which mark sent and read answered), the receiver (which marks answered)
/// and the loop (which moves it to the next block while nobody sends).
pub struct BlockState {
    inner: RwLock<Bits>,
}

struct Bits {
    range: Range<u64>,
    /// Replies are taken (false once the block is closed for its report).
    open: bool,
    sent: Vec<AtomicU64>,
    answered: Vec<AtomicU64>,
}

impl Bits {
    fn slot(&self, j: u64) -> Option<(usize, u64)> {
        self.range.contains(&j).then(|| {
            (
                ((j - self.range.start) / 64) as usize,
                1 << ((j - self.range.start) % 64),
            )
        })
    }
}

/// How the probes of a block ended, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    /// Sent and answered (at least once).
    pub answered: u64,
    /// Sent and not answered.
    pub silent: u64,
    /// Never sent.
    pub unsent: u64,
}

impl BlockState {
    /// State for blocks of up to `size` probes (its memory: size / 4 bytes).
    pub fn new(size: u64) -> BlockState {
        let words = size.div_ceil(64) as usize;
        BlockState {
            inner: RwLock::new(Bits {
                range: 0..0,
                open: false,
                sent: (0..words).map(|_| AtomicU64::new(0)).collect(),
                answered: (0..words).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Bits> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts block `range` with nothing sent or answered. Replies to the
    /// previous block count as [`Mark::Elsewhere`] from now on.
    pub fn start(&self, range: Range<u64>) {
        let mut b = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let words = (range.end - range.start).div_ceil(64) as usize;
        assert!(words <= b.sent.len(), "block larger than its state");
        for w in b.sent.iter().chain(&b.answered) {
            w.store(0, RELAXED);
        }
        b.range = range;
        b.open = true;
    }

    /// Takes no more replies: from now on its bits are final (a reply counts
    /// as [`Mark::Elsewhere`]), so the block can be reported without a reply
    /// slipping in between its check and its report.
    pub fn close(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).open = false;
    }

    /// The current block.
    pub fn range(&self) -> Range<u64> {
        self.read().range.clone()
    }

    /// Marks probes sent (one batch of a sender, under one lock).
    pub fn mark_sent(&self, probes: &[u64]) {
        let b = self.read();
        for &j in probes {
            if let Some((w, bit)) = b.slot(j) {
                b.sent[w].fetch_or(bit, RELAXED);
            }
        }
    }

    /// Marks probe `j` (its number in the shard's send order) answered, and
    /// says whether this is its first answer.
    pub fn mark_answered(&self, j: u64) -> Mark {
        let b = self.read();
        match b.slot(j).filter(|_| b.open) {
            None => Mark::Elsewhere,
            Some((w, bit)) if b.answered[w].fetch_or(bit, RELAXED) & bit == 0 => Mark::First,
            Some(_) => Mark::Again,
        }
    }

    /// Answered (false outside the block).
    pub fn is_answered(&self, j: u64) -> bool {
        let b = self.read();
        b.slot(j)
            .is_some_and(|(w, bit)| b.answered[w].load(RELAXED) & bit != 0)
    }

    /// Is every probe of the block answered?
    pub fn all_answered(&self) -> bool {
        let c = self.counts();
        c.silent == 0 && c.unsent == 0
    }

    /// Counts of the block's probes (an answered probe counts as answered
    /// even if its reply overtook the mark of its sending).
    pub fn counts(&self) -> BlockCounts {
        let b = self.read();
        let n = b.range.end - b.range.start;
        let mut c = BlockCounts::default();
        for (i, (s, a)) in b.sent.iter().zip(&b.answered).enumerate() {
            let first = i as u64 * 64;
            if first >= n {
                break;
            }
            let valid = if n - first >= 64 {
                u64::MAX
            } else {
                (1u64 << (n - first)) - 1
            };
            let (s, a) = (s.load(RELAXED) & valid, a.load(RELAXED) & valid);
            c.answered += a.count_ones() as u64;
            c.silent += (s & !a).count_ones() as u64;
            c.unsent += (valid & !s & !a).count_ones() as u64;
        }
        c
    }

    /// Calls `f` with every probe of the block that was sent and not answered,
    /// in order, until it returns false.
    pub fn for_each_silent(
        &self,
        f: impl FnMut(u64) -> std::io::Result<bool>,
    ) -> std::io::Result<()> {
        let start = self.read().range.start;
        self.for_each_silent_from(start, f)
    }

    /// [`BlockState::for_each_silent`] from probe `from` on (a list taken in
    /// several goes).
    pub fn for_each_silent_from(
        &self,
        from: u64,
        mut f: impl FnMut(u64) -> std::io::Result<bool>,
    ) -> std::io::Result<()> {
        let b = self.read();
        let from = from.max(b.range.start);
        let skip = ((from - b.range.start) / 64) as usize;
        for (i, (s, a)) in b.sent.iter().zip(&b.answered).enumerate().skip(skip) {
            let mut left = s.load(RELAXED) & !a.load(RELAXED);
            if i == skip {
                // the probes of this word before `from`
                left &= u64::MAX << ((from - b.range.start) % 64);
            }
            while left != 0 {
                let j = b.range.start + i as u64 * 64 + left.trailing_zeros() as u64;
                if j >= b.range.end {
                    return Ok(());
                }
                if !f(j)? {
                    return Ok(());
                }
                left &= left - 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_are_bounded_whatever_the_rate() {
        assert_eq!(block_size(1), MIN_BLOCK);
        assert_eq!(block_size(100_000), 3_000_000);
        assert_eq!(block_size(u64::MAX), MAX_BLOCK);
        // a /0 × every port: 2^48 probes, and still one block of state
        let probes = (1u64 << 32) * 65535;
        let mut it = blocks(probes, MAX_BLOCK);
        assert_eq!(it.next(), Some(0..MAX_BLOCK));
        assert_eq!(
            blocks(probes, MAX_BLOCK).count() as u64,
            probes.div_ceil(MAX_BLOCK)
        );
        let small: Vec<_> = blocks(10, MIN_BLOCK).collect();
        assert_eq!(small, vec![0..10]);
        let v: Vec<_> = blocks(10, 4).collect();
        assert_eq!(v, vec![0..4, 4..8, 8..10]);
        assert_eq!(blocks(0, 4).count(), 0);
    }

    #[test]
    fn marks_counts_and_silent_probes_of_one_block() {
        let st = BlockState::new(200);
        st.start(100..230);
        let sent: Vec<u64> = (100..230).filter(|j| j % 3 != 0).collect();
        st.mark_sent(&sent);
        assert_eq!(st.mark_answered(101), Mark::First);
        assert_eq!(st.mark_answered(101), Mark::Again);
        assert_eq!(st.mark_answered(99), Mark::Elsewhere);
        assert_eq!(st.mark_answered(230), Mark::Elsewhere);
        // a reply that overtook the mark of its sending: answered all the same
        assert_eq!(st.mark_answered(102), Mark::First);
        assert!(st.is_answered(102) && !st.is_answered(104) && !st.is_answered(99));
        let sent = sent.len() as u64;
        let c = st.counts();
        assert_eq!(
            c,
            BlockCounts {
                answered: 2,
                silent: sent - 1,
                unsent: 130 - sent - 1,
            }
        );
        let mut silent = Vec::new();
        st.for_each_silent(|j| {
            silent.push(j);
            Ok(true)
        })
        .unwrap();
        let want: Vec<u64> = (100..230).filter(|j| j % 3 != 0 && *j != 101).collect();
        assert_eq!(silent, want);
        assert!(!st.all_answered());
        let mut first_two = Vec::new();
        st.for_each_silent(|j| {
            first_two.push(j);
            Ok(first_two.len() < 2)
        })
        .unwrap();
        assert_eq!(first_two, want[..2]);
        let mut rest = Vec::new();
        st.for_each_silent_from(want[70], |j| {
            rest.push(j);
            Ok(true)
        })
        .unwrap();
        assert_eq!(rest, want[70..]);
        st.close();
        assert_eq!(st.mark_answered(104), Mark::Elsewhere);
        assert!(!st.is_answered(104));
        // the next block starts clean; replies to the old one are elsewhere
        st.start(230..330);
        assert_eq!(st.counts().unsent, 100);
        assert_eq!(st.mark_answered(101), Mark::Elsewhere);
        st.mark_sent(&(230..330).collect::<Vec<_>>());
        for j in 230..330 {
            st.mark_answered(j);
        }
        assert!(st.all_answered());
    }
}
