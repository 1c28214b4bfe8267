//! Monotonic time as a plain value, passed down from the caller (smoltcp style).
//!
//! The dataplane never reads the clock itself: `libix` reads `CLOCK_MONOTONIC` once per cycle and hands the value
//! in, so tests drive the stack with a fake clock.
use core::ops::{Add, Sub};

/// A point in monotonic time, in microseconds since an arbitrary epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }
    /// The instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { micros: millis * 1000 }
    }
    /// Microseconds since the epoch.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }
    /// Reads `CLOCK_MONOTONIC`. Only the layers above the dataplane (libix, tools, tests) call this.
    pub fn now() -> Self {
        let t = crate::sys::monotonic_micros();
        Instant { micros: t }
    }
}

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// A duration of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { micros: millis * 1000 }
    }
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration { micros: secs * 1_000_000 }
    }
    /// Whole microseconds.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant { micros: self.micros.saturating_add(d.micros) }
    }
}

impl core::ops::Mul<u64> for Duration {
    type Output = Duration;
    fn mul(self, n: u64) -> Duration {
        Duration { micros: self.micros.saturating_mul(n) }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        Duration { micros: self.micros.saturating_sub(earlier.micros) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Instant::from_millis(5);
        assert_eq!((a + Duration::from_micros(7)).total_micros(), 5007);
        assert_eq!(Instant::from_micros(3) - a, Duration::ZERO);
        assert!(Instant::now() > Instant::from_micros(0));
    }
}
