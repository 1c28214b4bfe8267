//! libevent's weak random numbers (`evutil_weakrand_*`, used for backoff jitter and tests, never for secrets): a
//! linear congruential generator modulo 2^31 with glibc TYPE_0's constants, whose whole state is one `u32` that
//! lives in the caller's `struct evutil_weakrand_state`.

/// `EVUTIL_WEAKRAND_MAX`: the largest value [`next`] returns.
pub const WEAKRAND_MAX: i32 = 0x7fff_ffff;

/// The seed libevent uses when asked for seed 0: seconds + microseconds of the wall clock + the process id,
/// each wrapped to 32 bits.
pub fn default_seed(tv_sec: i64, tv_usec: i64, pid: u32) -> u32 {
    (tv_sec as u32).wrapping_add(tv_usec as u32).wrapping_add(pid)
}

/// Advances `state` and returns the new value, in 0..=WEAKRAND_MAX.
pub fn next(state: &mut u32) -> i32 {
    *state = state.wrapping_mul(1_103_515_245).wrapping_add(12345) & 0x7fff_ffff;
    *state as i32
}

/// A value in 0..top, taken from the generator's high bits (its low bits have short periods), as libevent
/// does. libevent divides by zero for `top` ≤ 0; here such a `top` yields 0 without advancing the state.
pub fn range(state: &mut u32, top: i32) -> i32 {
    if top <= 0 {
        return 0;
    }
    let divisor = WEAKRAND_MAX / top;
    loop {
        let r = next(state) / divisor;
        if r < top {
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_glibc_type0() {
        let mut s = 1u32;
        assert_eq!(next(&mut s), 1_103_527_590);
        assert_eq!(next(&mut s), 377_401_575);
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut s = 7u32;
        for top in [1, 2, 3, 1000, WEAKRAND_MAX] {
            for _ in 0..1000 {
                let r = range(&mut s, top);
                assert!((0..top).contains(&r));
            }
        }
        assert_eq!(range(&mut s, 0), 0);
    }
}
