//! libevent 2.1's bufferevents (`event2/bufferevent.h`): the parts that are plain logic, independent of C pointers.
//!
//! A bufferevent is an input and an output evbuffer tied to a transport (a socket, the other end of a pair, or an
//! underlying bufferevent seen through filters), with callbacks run at watermarks, timeouts and errors. The object
//! itself lives in `capi/bufferevent.rs`, because its public fields are read by applications at libevent's offsets
//! and its callbacks, buffers and events are C objects; what is decided without them lives here:
//! - [`flags`]: libevent's option, event, trigger, suspension and flush constants;
//! - [`TokenBucket`] / [`BucketCfg`]: the rate-limit arithmetic (libevent's `ev_token_bucket_*`);
//! - [`Suspension`]: why reading or writing is held back (watermark, bandwidth, group, lookup, filter);
//! - the watermark rules: [`read_cb_due`], [`write_cb_due`], [`socket_read_amount`], [`pair_transfer_amount`],
//!   [`group_share`].

pub mod flags;

/// Reasons reading or writing is suspended; a direction runs again when every reason is gone
/// (libevent's `bufferevent_suspend_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Suspension(pub u16);

impl Suspension {
    /// Adds `why`; true if the direction was running before (so the transport must now stop).
    pub fn suspend(&mut self, why: u16) -> bool {
        let was_running = self.0 == 0;
        self.0 |= why;
        was_running
    }

    /// Removes `why`; true if no reason is left (the transport may run again if the application enabled it).
    pub fn unsuspend(&mut self, why: u16) -> bool {
        self.0 &= !why;
        self.0 == 0
    }

    /// Whether any reason holds the direction back.
    pub fn is_suspended(self) -> bool {
        self.0 != 0
    }

    /// Whether `why` is among the reasons.
    pub fn has(self, why: u16) -> bool {
        self.0 & why != 0
    }
}

/// A rate-limit configuration (`struct ev_token_bucket_cfg`): tokens added per tick and the most a bucket holds.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BucketCfg {
    /// Read tokens added per tick.
    pub read_rate: usize,
    /// Most read tokens a bucket holds (the burst).
    pub read_maximum: usize,
    /// Write tokens added per tick.
    pub write_rate: usize,
    /// Most write tokens a bucket holds.
    pub write_maximum: usize,
    /// The tick length as C gave it (`struct timeval`).
    pub tick_timeout: libc::timeval,
    /// The tick length in milliseconds (what ticks are counted in).
    pub msec_per_tick: u32,
}

/// libevent's `EV_RATE_LIMIT_MAX` (`EV_SSIZE_MAX`).
pub const RATE_LIMIT_MAX: usize = isize::MAX as usize;

/// The low 20 bits of `tv_usec` are microseconds; libevent's common timeouts use the bits above them.
const MICROSECONDS_MASK: i64 = 0x000f_ffff;

impl BucketCfg {
    /// `ev_token_bucket_cfg_new`'s checks and tick computation; None where libevent returns NULL.
    pub fn new(
        read_rate: usize,
        read_burst: usize,
        write_rate: usize,
        write_burst: usize,
        tick: Option<libc::timeval>,
    ) -> Option<BucketCfg> {
        let tick = tick.unwrap_or(libc::timeval { tv_sec: 1, tv_usec: 0 });
        if read_rate > read_burst || write_rate > write_burst || read_rate < 1 || write_rate < 1 {
            return None;
        }
        if [read_rate, write_rate, read_burst, write_burst].iter().any(|&v| v > RATE_LIMIT_MAX) {
            return None;
        }
        let msec = tick.tv_sec * 1000 + (tick.tv_usec & MICROSECONDS_MASK) / 1000;
        Some(BucketCfg {
            read_rate,
            read_maximum: read_burst,
            write_rate,
            write_maximum: write_burst,
            tick_timeout: tick,
            msec_per_tick: msec as u32,
        })
    }

    /// The tick number of a wall-clock time (`ev_token_bucket_get_tick_`). A zero-length tick counts every
    /// millisecond as its own tick rather than dividing by zero.
    pub fn tick_of(&self, now: libc::timeval) -> u32 {
        let msec = (now.tv_sec as u64).wrapping_mul(1000).wrapping_add(now.tv_usec as u64 / 1000);
        (msec / u64::from(self.msec_per_tick.max(1))) as u32
    }
}

/// Tokens left to read and write, and the tick they were last refilled at (`struct ev_token_bucket`).
/// Limits go negative when a transfer overdraws them; refills pay the debt first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bytes that may still be read (negative: overdrawn).
    pub read_limit: i64,
    /// Bytes that may still be written.
    pub write_limit: i64,
    /// The tick of the last refill.
    pub last_updated: u32,
}

impl TokenBucket {
    /// A full first tick's worth (`ev_token_bucket_init_` without reinitialization).
    pub fn new(cfg: &BucketCfg, tick: u32) -> TokenBucket {
        TokenBucket { read_limit: cfg.read_rate as i64, write_limit: cfg.write_rate as i64, last_updated: tick }
    }

    /// A new configuration on a bucket in use: only clip down to the new maxima, since this tick's bandwidth is
    /// partly spent already; the next update adds what the new rate gives.
    pub fn clip(&mut self, cfg: &BucketCfg) {
        self.read_limit = self.read_limit.min(cfg.read_maximum as i64);
        self.write_limit = self.write_limit.min(cfg.write_maximum as i64);
    }

    /// Adds the tokens of the ticks since the last update, up to the maxima (`ev_token_bucket_update_`). Returns
    /// false when no tick passed (or the clock went backwards, which looks like a huge wrapped count).
    pub fn update(&mut self, cfg: &BucketCfg, tick: u32) -> bool {
        let n_ticks = tick.wrapping_sub(self.last_updated);
        if n_ticks == 0 || n_ticks > i32::MAX as u32 {
            return false;
        }
        let refill = |limit: i64, rate: usize, max: usize| -> i64 {
            let gained = i128::from(n_ticks) * rate as i128 + i128::from(limit);
            gained.min(max as i128) as i64
        };
        self.read_limit = refill(self.read_limit, cfg.read_rate, cfg.read_maximum);
        self.write_limit = refill(self.write_limit, cfg.write_rate, cfg.write_maximum);
        self.last_updated = tick;
        true
    }
}

/// Whether the read callback is due with `input_len` bytes buffered: at or above the low watermark (a trigger may
/// ignore watermarks).
pub fn read_cb_due(input_len: usize, low: usize, ignore_watermarks: bool) -> bool {
    ignore_watermarks || input_len >= low
}

/// Whether the write callback is due with `output_len` bytes pending: at or below the low watermark.
pub fn write_cb_due(output_len: usize, low: usize, ignore_watermarks: bool) -> bool {
    ignore_watermarks || output_len <= low
}

/// What one read readiness of a socket may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAmount {
    /// The input is at or over the high watermark (it was lowered under the buffered amount): stop reading.
    Suspend,
    /// Read at most this much (the read cap after rate limits, within the room below the high watermark).
    Upto(isize),
}

/// libevent's rule for a socket read: the room below the high watermark (if any), capped by `read_max()` (the
/// single-read limit after rate limits, asked only when reading goes ahead: asking may suspend reading).
pub fn socket_read_amount(high: usize, buffered: usize, read_max: impl FnOnce() -> isize) -> ReadAmount {
    if high == 0 {
        return ReadAmount::Upto(read_max());
    }
    let room = high as isize - buffered as isize;
    if room <= 0 {
        ReadAmount::Suspend
    } else {
        ReadAmount::Upto(room.min(read_max()))
    }
}

/// How much a pair moves from one side's output to the other's input: None when nothing may move (the reader is
/// at its high watermark and this is no flush), else `Some(Some(n))` for at most `n` bytes or `Some(None)` for
/// everything.
pub fn pair_transfer_amount(dst_high: usize, dst_len: usize, ignore_watermarks: bool) -> Option<Option<usize>> {
    if dst_high == 0 {
        Some(None)
    } else if dst_len < dst_high {
        Some(Some(dst_high - dst_len))
    } else if ignore_watermarks {
        Some(None)
    } else {
        None
    }
}

/// A group member's share of the group's tokens: an equal part, but never under the minimum share (libevent's
/// rule, which lets small shares still make progress).
pub fn group_share(group_limit: i64, members: usize, min_share: isize) -> isize {
    let share = group_limit / members.max(1) as i64;
    (share as isize).max(min_share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(s: i64, us: i64) -> libc::timeval {
        libc::timeval { tv_sec: s, tv_usec: us }
    }

    #[test]
    fn cfg_rejects_what_libevent_rejects_and_computes_the_tick() {
        assert!(BucketCfg::new(0, 10, 1, 1, None).is_none(), "zero read rate");
        assert!(BucketCfg::new(11, 10, 1, 1, None).is_none(), "rate above burst");
        assert!(BucketCfg::new(1, 1, 2, 1, None).is_none(), "write rate above burst");
        assert!(BucketCfg::new(1, RATE_LIMIT_MAX + 1, 1, 1, None).is_none());
        let c = BucketCfg::new(10, 20, 30, 40, None).expect("valid");
        assert_eq!(c.msec_per_tick, 1000);
        let c = BucketCfg::new(10, 20, 30, 40, Some(tv(0, 250_000))).expect("valid");
        assert_eq!(c.msec_per_tick, 250);
        assert_eq!(c.tick_of(tv(1, 600_000)), 6);
    }

    #[test]
    fn bucket_refills_per_tick_up_to_the_maximum_and_pays_debts_first() {
        let c = BucketCfg::new(100, 250, 10, 10, None).expect("valid");
        let mut b = TokenBucket::new(&c, 5);
        assert_eq!((b.read_limit, b.write_limit), (100, 10));
        assert!(!b.update(&c, 5), "same tick");
        b.read_limit = -150;
        assert!(b.update(&c, 6));
        assert_eq!(b.read_limit, -50, "one tick pays part of the debt");
        assert!(b.update(&c, 10));
        assert_eq!(b.read_limit, 250, "capped at the burst");
        assert_eq!(b.write_limit, 10);
        assert!(!b.update(&c, 9), "clock going back is ignored");
        b.clip(&BucketCfg::new(1, 20, 1, 5, None).expect("valid"));
        assert_eq!((b.read_limit, b.write_limit), (20, 5));
    }

    #[test]
    fn suspension_reports_transitions() {
        let mut s = Suspension::default();
        assert!(s.suspend(flags::SUSPEND_WM));
        assert!(!s.suspend(flags::SUSPEND_BW), "already stopped");
        assert!(!s.unsuspend(flags::SUSPEND_WM), "bandwidth still holds it");
        assert!(s.has(flags::SUSPEND_BW));
        assert!(s.unsuspend(flags::SUSPEND_BW));
        assert!(!s.is_suspended());
    }

    #[test]
    fn watermark_rules() {
        assert!(read_cb_due(10, 10, false));
        assert!(!read_cb_due(9, 10, false));
        assert!(read_cb_due(0, 10, true));
        assert!(write_cb_due(3, 3, false));
        assert!(!write_cb_due(4, 3, false));
        assert!(write_cb_due(4, 3, true));
        assert_eq!(socket_read_amount(0, 500, || 4096), ReadAmount::Upto(4096));
        assert_eq!(socket_read_amount(1000, 400, || 4096), ReadAmount::Upto(600));
        assert_eq!(socket_read_amount(1000, 400, || 100), ReadAmount::Upto(100));
        assert_eq!(socket_read_amount(1000, 1000, || unreachable!("not asked when suspending")), ReadAmount::Suspend);
        assert_eq!(socket_read_amount(100, 1000, || 4096), ReadAmount::Suspend);
        assert_eq!(pair_transfer_amount(0, 50, false), Some(None));
        assert_eq!(pair_transfer_amount(100, 30, false), Some(Some(70)));
        assert_eq!(pair_transfer_amount(100, 100, false), None);
        assert_eq!(pair_transfer_amount(100, 100, true), Some(None));
        assert_eq!(group_share(3000, 30, 64), 100);
        assert_eq!(group_share(300, 30, 64), 64);
        assert_eq!(group_share(-50, 3, 0), 0);
        assert_eq!(group_share(500, 0, 0), 500);
    }
}
