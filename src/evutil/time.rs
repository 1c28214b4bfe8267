//! Monotonic time as libevent's `evutil_monotonic_timer` provides it on Linux: which clock a timer uses
//! (`CLOCK_MONOTONIC_COARSE` unless precision is asked for, `CLOCK_MONOTONIC`, or the wall clock as a fallback),
//! and the ratchet that keeps the wall-clock fallback from ever going backwards.

/// `EV_MONOT_PRECISE`.
pub const MONOT_PRECISE: i32 = 1;
/// `EV_MONOT_FALLBACK`.
pub const MONOT_FALLBACK: i32 = 2;

/// The clock a timer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonotonicClock {
    /// A `clock_gettime` clock id.
    Posix(i32),
    /// The wall clock (`gettimeofday`), ratcheted.
    WallClock,
}

/// Chooses the clock for `flags` given which POSIX clocks work (`works(id)`), as libevent: coarse unless
/// PRECISE or FALLBACK, then CLOCK_MONOTONIC unless FALLBACK, else the wall clock.
pub fn choose_clock(flags: i32, works: impl Fn(i32) -> bool) -> MonotonicClock {
    let precise = flags & MONOT_PRECISE != 0;
    let fallback = flags & MONOT_FALLBACK != 0;
    if !precise && !fallback && works(libc::CLOCK_MONOTONIC_COARSE) {
        return MonotonicClock::Posix(libc::CLOCK_MONOTONIC_COARSE);
    }
    if !fallback && works(libc::CLOCK_MONOTONIC) {
        return MonotonicClock::Posix(libc::CLOCK_MONOTONIC);
    }
    MonotonicClock::WallClock
}

/// Microseconds as a (seconds, microseconds) pair, microseconds in 0..1_000_000.
pub type Timeval = (i64, i64);

fn to_usec(t: Timeval) -> i128 {
    i128::from(t.0) * 1_000_000 + i128::from(t.1)
}

fn from_usec(u: i128) -> Timeval {
    (u.div_euclid(1_000_000) as i64, u.rem_euclid(1_000_000) as i64)
}

/// The wall-clock ratchet: `now` plus the accumulated adjustment; when that is earlier than the last reading
/// (the wall clock was set back), the adjustment grows by the difference so the reading equals the last one.
/// Updates `adjust` and `last`, returns the reading. (libevent grows the adjustment the same way but returns that
/// one reading uncorrected, so it can go backwards once; here it never does.)
pub fn ratchet(now: Timeval, adjust: &mut Timeval, last: &mut Timeval) -> Timeval {
    let mut t = to_usec(now) + to_usec(*adjust);
    let previous = to_usec(*last);
    if t < previous {
        *adjust = from_usec(to_usec(*adjust) + previous - t);
        t = previous;
    }
    *last = from_usec(t);
    *last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_choice() {
        let all = |_| true;
        assert_eq!(choose_clock(0, all), MonotonicClock::Posix(libc::CLOCK_MONOTONIC_COARSE));
        assert_eq!(choose_clock(MONOT_PRECISE, all), MonotonicClock::Posix(libc::CLOCK_MONOTONIC));
        assert_eq!(choose_clock(MONOT_FALLBACK, all), MonotonicClock::WallClock);
        assert_eq!(choose_clock(0, |c| c == libc::CLOCK_MONOTONIC), MonotonicClock::Posix(libc::CLOCK_MONOTONIC));
    }

    #[test]
    fn ratchet_never_goes_back() {
        let (mut adjust, mut last) = ((0, 0), (0, 0));
        assert_eq!(ratchet((10, 500_000), &mut adjust, &mut last), (10, 500_000));
        assert_eq!(ratchet((9, 0), &mut adjust, &mut last), (10, 500_000));
        assert_eq!(adjust, (1, 500_000));
        assert_eq!(ratchet((9, 1), &mut adjust, &mut last), (10, 500_001));
    }
}
