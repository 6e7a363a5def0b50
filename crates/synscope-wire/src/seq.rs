//! TCP sequence numbers: 32-bit values compared and added modulo 2^32 (RFC 793 §3.3).

use std::cmp::Ordering;
use std::fmt;

/// A TCP sequence (or acknowledgment) number with wrapping arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance from `other` to `self`, wrap-aware.
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl std::ops::Add<u32> for SeqNumber {
    type Output = SeqNumber;
    /// `self + n`, wrapping.
    fn add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_orders_across_zero() {
        let near_top = SeqNumber(u32::MAX - 1);
        let after = near_top + 3;
        assert_eq!(after, SeqNumber(1));
        assert!(after > near_top);
        assert_eq!(after.diff(near_top), 3);
        assert_eq!(near_top.diff(after), -3);
    }
}
