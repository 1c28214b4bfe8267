//! TCP sequence numbers: 32-bit values compared modulo 2^32.
//!
//! Heads up: read RFC 9293 §3.4 (sequence number comparisons; it obsoletes RFC 793) and RFC 1982 (serial number
//! arithmetic). `a` is before `b` when `b - a` (mod 2^32) is in `1..2^31`. Two numbers exactly 2^31 apart are
//! neither before nor after each other (RFC 1982 leaves the case undefined; here every comparison but `!=` says
//! `false`). This is not a total order (it is not transitive over the whole circle), which is why `SeqNumber`
//! implements no `PartialOrd`: use [`lt`](SeqNumber::lt), [`le`](SeqNumber::le), [`gt`](SeqNumber::gt),
//! [`ge`](SeqNumber::ge), which are meaningful for numbers less than 2^31 apart, as TCP guarantees for the
//! numbers it compares (windows are below 2^30, RFC 7323 §2.3).
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence (or acknowledgment) number.
///
/// ```
/// use dataplane::tcp::seq::SeqNumber;
///
/// let una = SeqNumber(u32::MAX - 9);
/// let nxt = una + 20; // wraps
/// assert_eq!(nxt, SeqNumber(10));
/// assert!(una.lt(nxt));
/// assert_eq!(nxt - una, 20);
/// assert_eq!(una - nxt, 0); // never negative
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` comes strictly before `other`.
    #[inline]
    pub const fn lt(self, other: SeqNumber) -> bool {
        (other.0.wrapping_sub(self.0) as i32) > 0
    }

    /// Whether `self` comes before `other` or equals it.
    #[inline]
    pub const fn le(self, other: SeqNumber) -> bool {
        self.0 == other.0 || self.lt(other)
    }

    /// Whether `self` comes strictly after `other`.
    #[inline]
    pub const fn gt(self, other: SeqNumber) -> bool {
        other.lt(self)
    }

    /// Whether `self` comes after `other` or equals it.
    #[inline]
    pub const fn ge(self, other: SeqNumber) -> bool {
        other.le(self)
    }

    /// The later of the two (`self` if neither is later).
    #[inline]
    pub const fn max(self, other: SeqNumber) -> SeqNumber {
        if other.gt(self) {
            other
        } else {
            self
        }
    }

    /// The earlier of the two (`self` if neither is earlier).
    #[inline]
    pub const fn min(self, other: SeqNumber) -> SeqNumber {
        if other.lt(self) {
            other
        } else {
            self
        }
    }

    /// Whether `self` lies in the `len` numbers starting at `start`, i.e. `start <= self < start + len`
    /// (RFC 9293 §3.4's acceptability tests). Well defined for any `len` up to 2^32; `len == 0` contains nothing.
    #[inline]
    pub fn in_window(self, start: SeqNumber, len: usize) -> bool {
        (self.0.wrapping_sub(start.0) as usize) < len
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Moves `rhs` numbers forward, modulo 2^32.
    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Moves `rhs` numbers back, modulo 2^32.
    #[inline]
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;
    /// How far `self` is ahead of `rhs`; 0 if it is not ahead (never negative, never a panic), so
    /// `snd_nxt - snd_una` is the bytes in flight.
    #[inline]
    fn sub(self, rhs: SeqNumber) -> usize {
        if self.ge(rhs) {
            self.0.wrapping_sub(rhs.0) as usize
        } else {
            0
        }
    }
}

impl From<u32> for SeqNumber {
    #[inline]
    fn from(value: u32) -> SeqNumber {
        SeqNumber(value)
    }
}

impl From<SeqNumber> for u32 {
    #[inline]
    fn from(value: SeqNumber) -> u32 {
        value.0
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn plain_comparisons() {
        assert!(s(1).lt(s(2)) && s(1).le(s(2)) && !s(1).gt(s(2)) && !s(1).ge(s(2)));
        assert!(s(2).gt(s(1)) && s(2).ge(s(1)) && !s(2).lt(s(1)) && !s(2).le(s(1)));
        assert!(s(7).le(s(7)) && s(7).ge(s(7)) && !s(7).lt(s(7)) && !s(7).gt(s(7)));
    }

    #[test]
    fn comparisons_across_wraparound() {
        let before = s(u32::MAX - 5);
        let after = s(3);
        assert!(before.lt(after) && before.le(after));
        assert!(after.gt(before) && after.ge(before));
        assert!(!after.lt(before) && !before.gt(after));
        assert!(s(u32::MAX).lt(s(0)));
        assert_eq!(before.max(after), after);
        assert_eq!(after.max(before), after);
        assert_eq!(before.min(after), before);
    }

    #[test]
    fn half_circle_apart_is_neither() {
        let a = s(10);
        let b = s(10 + (1 << 31));
        for (x, y) in [(a, b), (b, a)] {
            assert!(!x.lt(y) && !x.le(y) && !x.gt(y) && !x.ge(y));
            assert_eq!(x - y, 0);
        }
        // Just inside the half circle the order holds.
        assert!(a.lt(s(10 + (1 << 31) - 1)));
        assert!(s(10 + (1 << 31) + 1).lt(a));
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(s(u32::MAX) + 1, s(0));
        assert_eq!(s(u32::MAX - 1) + 10, s(8));
        assert_eq!(s(5) - 10usize, s(u32::MAX - 4));
        let mut x = s(u32::MAX);
        x += 2;
        assert_eq!(x, s(1));
        // A usize beyond 32 bits wraps too: 2^32 + 3 on 64-bit targets, 3 on 32-bit ones.
        assert_eq!(s(1) + (u32::MAX as usize).wrapping_add(4), s(4));
    }

    #[test]
    fn distance_saturates_at_zero() {
        assert_eq!(s(3) - s(u32::MAX - 1), 5);
        assert_eq!(s(100) - s(100), 0);
        assert_eq!(s(99) - s(100), 0);
        assert_eq!(s(u32::MAX - 1) - s(3), 0);
    }

    #[test]
    fn window_membership() {
        let start = s(u32::MAX - 1);
        assert!(start.in_window(start, 1));
        assert!(!start.in_window(start, 0));
        assert!(s(2).in_window(start, 5));
        assert!(!s(3).in_window(start, 5));
        assert!(!s(u32::MAX - 2).in_window(start, 5));
        assert!(s(u32::MAX - 2).in_window(start, 1 << 32));
    }

    #[test]
    fn conversions_and_display() {
        assert_eq!(SeqNumber::from(42u32), s(42));
        assert_eq!(u32::from(s(42)), 42);
        assert_eq!(s(42).to_string(), "42");
    }

    proptest! {
        #[test]
        fn order_is_consistent(a: u32, d in 1u32..(1 << 31)) {
            let (x, y) = (s(a), s(a.wrapping_add(d)));
            prop_assert!(x.lt(y) && x.le(y) && y.gt(x) && y.ge(x));
            prop_assert!(!y.lt(x) && !y.le(x) && !x.gt(y) && !x.ge(y));
            prop_assert_eq!(y - x, d as usize);
            prop_assert_eq!(x - y, 0);
            prop_assert_eq!(x + d as usize, y);
            prop_assert_eq!(y - d as usize, x);
            prop_assert_eq!(x.max(y), y);
            prop_assert_eq!(y.min(x), x);
        }

        #[test]
        fn window_matches_distance(start: u32, off: u32, len in 0usize..(1 << 31)) {
            let x = s(start.wrapping_add(off));
            prop_assert_eq!(x.in_window(s(start), len), (off as usize) < len);
        }
    }
}
