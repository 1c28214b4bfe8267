//! Time for the event loop: [`Usec`] (microseconds on one clock) and the [`Clock`] the base reads, passed in so tests
//! can drive a fake one.
//!
//! As libevent does, a base measures timeouts on a monotonic clock (`CLOCK_MONOTONIC_COARSE` by default, which is
//! what libevent 2.1 picks on Linux; `CLOCK_MONOTONIC` with `EVENT_BASE_FLAG_PRECISE_TIMER`) and converts to wall
//! time only where the API speaks wall time (`event_pending`'s timeval, `event_base_gettimeofday_cached`, dumps).

use super::raw::Timeval;

/// A time or a duration in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usec(pub i64);

impl Usec {
    /// Zero.
    pub const ZERO: Usec = Usec(0);

    /// From a `struct timeval`, normalizing any tv_usec (libevent accepts tv_usec >= 1000000); saturates.
    pub fn from_timeval(tv: Timeval) -> Usec {
        Usec(tv.tv_sec.saturating_mul(1_000_000).saturating_add(tv.tv_usec))
    }

    /// To a normalized `struct timeval` (0 <= tv_usec < 1000000).
    pub fn to_timeval(self) -> Timeval {
        Timeval { tv_sec: self.0.div_euclid(1_000_000), tv_usec: self.0.rem_euclid(1_000_000) }
    }

    /// From seconds and microseconds.
    pub const fn new(sec: i64, usec: i64) -> Usec {
        Usec(sec * 1_000_000 + usec)
    }

    /// Milliseconds, rounded up (an epoll timeout never wakes early), clamped to `0..=max_ms`.
    pub fn to_ms_ceil(self, max_ms: i64) -> i64 {
        if self.0 <= 0 {
            0
        } else {
            (self.0.saturating_add(999) / 1000).min(max_ms)
        }
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Usec) -> Usec {
        Usec(self.0.saturating_add(d.0))
    }

    /// `self - d`, saturating.
    pub fn minus(self, d: Usec) -> Usec {
        Usec(self.0.saturating_sub(d.0))
    }

    /// True when not zero (libevent's `evutil_timerisset`).
    pub fn is_set(self) -> bool {
        self.0 != 0
    }
}

/// Where a base gets time from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The monotonic time timeouts are measured on.
    fn monotonic(&self) -> Usec;
    /// Wall-clock time (gettimeofday).
    fn wall(&self) -> Usec;
}

/// The system clocks (see the module note for which monotonic clock).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    precise: bool,
}

impl SystemClock {
    /// `precise`: CLOCK_MONOTONIC rather than CLOCK_MONOTONIC_COARSE.
    pub fn new(precise: bool) -> SystemClock {
        SystemClock { precise }
    }
}

impl SystemClock {
    /// The wall clock as a timeval (gettimeofday).
    pub fn wall_timeval(&self) -> Timeval {
        self.wall().to_timeval()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Usec {
        let clock = if self.precise { libc::CLOCK_MONOTONIC } else { libc::CLOCK_MONOTONIC_COARSE };
        super::sys::clock_usec(clock)
    }
    fn wall(&self) -> Usec {
        super::sys::clock_usec(libc::CLOCK_REALTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeval_round_trip_and_normalization() {
        assert_eq!(Usec::from_timeval(Timeval { tv_sec: 1, tv_usec: 2_500_000 }), Usec(3_500_000));
        assert_eq!(Usec(3_500_000).to_timeval(), Timeval { tv_sec: 3, tv_usec: 500_000 });
        assert_eq!(Usec(-1).to_timeval(), Timeval { tv_sec: -1, tv_usec: 999_999 });
        assert_eq!(Usec::from_timeval(Timeval { tv_sec: i64::MAX, tv_usec: 0 }), Usec(i64::MAX));
    }

    #[test]
    fn ms_rounds_up() {
        assert_eq!(Usec(0).to_ms_ceil(100), 0);
        assert_eq!(Usec(-5).to_ms_ceil(100), 0);
        assert_eq!(Usec(1).to_ms_ceil(100), 1);
        assert_eq!(Usec(1000).to_ms_ceil(100), 1);
        assert_eq!(Usec(1001).to_ms_ceil(100), 2);
        assert_eq!(Usec(10_000_000).to_ms_ceil(100), 100);
    }
}
