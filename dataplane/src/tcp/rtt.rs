//! The retransmission timeout: RTT estimation (SRTT, RTTVAR), Karn's algorithm and exponential backoff.
//!
//! Heads up: read RFC 6298 (the whole of it is short), RFC 7323 §4 (timestamps make every RTT sample
//! unambiguous, retransmissions included) and Karn & Partridge (SIGCOMM 1987).
//!
//! Choices, each a constant below:
//! - Clock granularity `G` ([`CLOCK_GRANULARITY`]) = 16 µs, the timer wheel's tick: the `max(G, K*RTTVAR)` term
//!   guarantees the timeout lands at least one wheel tick after SRTT. (Samples themselves are in µs.)
//! - Minimum RTO ([`RTO_MIN`]) = 200 ms, as Linux, not RFC 6298 (2.4)'s 1 s: the 1 s floor would make every loss
//!   on a datacenter path cost hundreds of RTTs. It is per-estimator ([`RttEstimator::with_min_rto`]) because the
//!   incast work IX cites (Vasudevan et al., SIGCOMM 2009) argues for floors in the microseconds.
//! - Maximum RTO ([`RTO_MAX`]) = 60 s, the least (2.5) allows. Initial RTO ([`RTO_INITIAL`]) = 1 s (2.1).
//! - SRTT and RTTVAR are kept in eighths of a microsecond (Jacobson's scaled integers) and the RTO is rounded up
//!   to the microsecond. Samples above [`RTO_MAX`] count as [`RTO_MAX`].
//! - After [`FORGET_AFTER_BACKOFFS`] consecutive backoffs the estimates are deemed bogus and the next sample
//!   starts afresh as a first measurement (the MAY in §5, as BSD does).
//!
//! Which samples are valid is the caller's knowledge: [`RttEstimator::on_sample`] takes unambiguous ones (from the
//! timestamp option, or from a segment never retransmitted), [`RttEstimator::on_segment_sample`] applies Karn's
//! rule for timings of a segment that may have been retransmitted. Take at most one sample per ACK; with
//! timestamps, RFC 7323 Appendix G would also scale alpha and beta by samples per window, which we do not (as
//! Linux does not).
use crate::time::Duration;
use crate::timer;

/// The clock granularity `G` of RFC 6298: the timer wheel's tick.
pub const CLOCK_GRANULARITY: Duration = timer::TICK;
/// The RTO before any RTT sample (RFC 6298 (2.1)).
pub const RTO_INITIAL: Duration = Duration::from_secs(1);
/// The default floor of the RTO (Linux's `TCP_RTO_MIN`; RFC 6298 (2.4) says 1 s, see the module docs).
pub const RTO_MIN: Duration = Duration::from_millis(200);
/// The ceiling of the RTO, backoff included (RFC 6298 (2.5)).
pub const RTO_MAX: Duration = Duration::from_secs(60);
/// The RTO after a handshake whose SYN or SYN-ACK timed out, until the first sample (RFC 6298 (5.7)).
pub const RTO_AFTER_SYN_LOSS: Duration = Duration::from_secs(3);
/// Consecutive backoffs after which SRTT and RTTVAR are discarded.
pub const FORGET_AFTER_BACKOFFS: u8 = 4;

/// `K` of RFC 6298.
const K: u64 = 4;
/// SRTT and RTTVAR are stored in units of 2^-SCALE µs.
const SCALE: u32 = 3;
/// Doublings beyond this are moot: even a 1 µs base would exceed `RTO_MAX`.
const MAX_BACKOFF: u8 = 32;

/// RTO state of one connection (16 bytes).
///
/// ```
/// use dataplane::tcp::rtt::RttEstimator;
/// use dataplane::time::Duration;
///
/// let mut rtt = RttEstimator::new();
/// assert_eq!(rtt.rto(), Duration::from_secs(1));
/// rtt.on_sample(Duration::from_millis(100)); // SRTT 100 ms, RTTVAR 50 ms
/// assert_eq!(rtt.rto(), Duration::from_millis(300));
/// rtt.on_timeout();
/// assert_eq!(rtt.rto(), Duration::from_millis(600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    /// SRTT in 1/8 µs (meaningful unless `Estimate::None`).
    srtt: u32,
    /// RTTVAR in 1/8 µs (meaningful unless `Estimate::None`).
    rttvar: u32,
    /// The floor, µs.
    min: u32,
    /// Consecutive timeouts since the last valid sample.
    backoff: u8,
    estimate: Estimate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Estimate {
    /// No sample yet: the RTO is the initial one, or 3 s after a handshake timeout (RFC 6298 (5.7)).
    None { syn_lost: bool },
    /// SRTT and RTTVAR hold a measurement.
    Measured,
    /// SRTT and RTTVAR still set the RTO but are deemed bogus after repeated backoffs: the next sample starts
    /// afresh.
    Stale,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl RttEstimator {
    /// An estimator with no sample yet (RTO = 1 s) and the default floor [`RTO_MIN`].
    pub const fn new() -> Self {
        Self::with_min_rto(RTO_MIN)
    }

    /// An estimator with another RTO floor (at most [`RTO_MAX`]; zero leaves only `G` as a floor).
    pub const fn with_min_rto(min: Duration) -> Self {
        let min = if min.total_micros() < RTO_MAX.total_micros() { min } else { RTO_MAX };
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            min: min.total_micros() as u32,
            backoff: 0,
            estimate: Estimate::None { syn_lost: false },
        }
    }

    /// The current retransmission timeout: `max(SRTT + max(G, K*RTTVAR), floor) * 2^backoffs` (or the initial RTO
    /// in place of the sum), at most [`RTO_MAX`].
    pub fn rto(&self) -> Duration {
        let base = match self.estimate {
            Estimate::None { syn_lost: false } => RTO_INITIAL.total_micros(),
            Estimate::None { syn_lost: true } => RTO_AFTER_SYN_LOSS.total_micros(),
            Estimate::Measured | Estimate::Stale => {
                let granularity = CLOCK_GRANULARITY.total_micros() << SCALE;
                let sum = u64::from(self.srtt) + granularity.max(K * u64::from(self.rttvar));
                // Round up to the µs: never time out before SRTT + max(G, K*RTTVAR).
                sum.div_ceil(1 << SCALE)
            }
        };
        let floored = base.max(u64::from(self.min));
        let backed_off = floored.checked_shl(u32::from(self.backoff)).unwrap_or(u64::MAX);
        Duration::from_micros(backed_off.min(RTO_MAX.total_micros()))
    }

    /// Takes an RTT measurement known to be unambiguous (timestamp echo, or a segment sent once): updates SRTT
    /// and RTTVAR (RFC 6298 (2.2)/(2.3)) and ends any backoff.
    pub fn on_sample(&mut self, rtt: Duration) {
        let r = rtt.total_micros().min(RTO_MAX.total_micros());
        let r_scaled = r << SCALE;
        let (srtt, rttvar) = if self.estimate == Estimate::Measured {
            // RTTVAR <- (1 - 1/4) * RTTVAR + 1/4 * |SRTT - R'|, with the old SRTT; then
            // SRTT <- (1 - 1/8) * SRTT + 1/8 * R'.
            let (srtt, rttvar) = (u64::from(self.srtt), u64::from(self.rttvar));
            let rttvar = rttvar - rttvar / 4 + srtt.abs_diff(r_scaled) / 4;
            let srtt = srtt - srtt / 8 + r;
            (srtt, rttvar)
        } else {
            // SRTT <- R, RTTVAR <- R/2.
            (r_scaled, r_scaled / 2)
        };
        // Both stay below 2^SCALE * RTO_MAX, which fits: they are weighted means of values that do.
        self.srtt = srtt as u32;
        self.rttvar = rttvar as u32;
        self.estimate = Estimate::Measured;
        self.backoff = 0;
    }

    /// Takes the RTT of a timed segment, applying Karn's rule: a segment that was retransmitted gives no sample
    /// (which ACK answered which copy is unknown), and the backoff stays. Returns whether the sample was used.
    pub fn on_segment_sample(&mut self, rtt: Duration, retransmitted: bool) -> bool {
        if !retransmitted {
            self.on_sample(rtt);
        }
        !retransmitted
    }

    /// The retransmission timer expired: doubles the RTO (RFC 6298 (5.5)), up to [`RTO_MAX`]. The doubling holds
    /// until the next valid sample (Karn).
    pub fn on_timeout(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        if self.backoff >= FORGET_AFTER_BACKOFFS && self.estimate == Estimate::Measured {
            self.estimate = Estimate::Stale;
        }
    }

    /// Data transfer begins after a handshake in which the SYN (or SYN-ACK) timed out: with no RTT measured, the
    /// RTO restarts at 3 s with no backoff (RFC 6298 (5.7)). A measurement (from a timestamp echo) is kept, as
    /// Linux does: it beats the guess.
    pub fn reinit_after_syn_timeout(&mut self) {
        if let Estimate::None { .. } = self.estimate {
            self.estimate = Estimate::None { syn_lost: true };
        }
        self.backoff = 0;
    }

    /// The smoothed RTT, once measured (µs, rounded down).
    pub fn srtt(&self) -> Option<Duration> {
        (self.estimate == Estimate::Measured).then(|| Duration::from_micros(u64::from(self.srtt >> SCALE)))
    }

    /// The RTT variation, once measured (µs, rounded down).
    pub fn rttvar(&self) -> Option<Duration> {
        (self.estimate == Estimate::Measured).then(|| Duration::from_micros(u64::from(self.rttvar >> SCALE)))
    }

    /// Timeouts since the last valid sample (each doubled the RTO).
    pub fn backoffs(&self) -> u8 {
        self.backoff
    }

    /// The RTO floor of this estimator.
    pub fn min_rto(&self) -> Duration {
        Duration::from_micros(u64::from(self.min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn estimator_is_small() {
        assert_eq!(core::mem::size_of::<RttEstimator>(), 16);
    }

    #[test]
    fn initial_rto_and_backoff_to_the_ceiling() {
        let mut rtt = RttEstimator::new();
        assert_eq!((rtt.rto(), rtt.srtt(), rtt.rttvar()), (ms(1000), None, None));
        let mut seen = Vec::new();
        for _ in 0..8 {
            rtt.on_timeout();
            seen.push(rtt.rto().total_micros() / 1000);
        }
        assert_eq!(seen, [2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
        for _ in 0..100 {
            rtt.on_timeout();
        }
        assert_eq!(rtt.rto(), RTO_MAX);
    }

    /// Three samples, against RFC 6298's formulas worked by hand.
    #[test]
    fn samples_follow_the_rfc_formulas() {
        let mut rtt = RttEstimator::new();
        // (2.2) R = 100 ms: SRTT = 100, RTTVAR = 50, RTO = 100 + max(G, 4 * 50) = 300 ms.
        rtt.on_sample(ms(100));
        assert_eq!((rtt.srtt(), rtt.rttvar(), rtt.rto()), (Some(ms(100)), Some(ms(50)), ms(300)));
        // (2.3) R' = 120: RTTVAR = 3/4 * 50 + 1/4 * |100 - 120| = 42.5; SRTT = 7/8 * 100 + 1/8 * 120 = 102.5;
        // RTO = 102.5 + 4 * 42.5 = 272.5 ms.
        rtt.on_sample(ms(120));
        assert_eq!((rtt.srtt(), rtt.rttvar(), rtt.rto()), (Some(us(102_500)), Some(us(42_500)), us(272_500)));
        // R' = 80: RTTVAR = 3/4 * 42.5 + 1/4 * |102.5 - 80| = 31.875 + 5.625 = 37.5;
        // SRTT = 7/8 * 102.5 + 1/8 * 80 = 89.6875 + 10 = 99.6875; RTO = 99.6875 + 150 = 249.6875 ms, rounded up.
        rtt.on_sample(ms(80));
        assert_eq!((rtt.srtt(), rtt.rttvar(), rtt.rto()), (Some(us(99_687)), Some(us(37_500)), us(249_688)));
    }

    #[test]
    fn floor_applies_before_backoff() {
        let mut rtt = RttEstimator::new();
        // R = 10 ms: SRTT + 4 * RTTVAR = 30 ms, floored to 200 ms.
        rtt.on_sample(ms(10));
        assert_eq!(rtt.rto(), ms(200));
        rtt.on_timeout();
        assert_eq!(rtt.rto(), ms(400));
        rtt.on_timeout();
        assert_eq!(rtt.rto(), ms(800));
        // A valid sample ends the backoff.
        rtt.on_sample(ms(10));
        assert_eq!((rtt.rto(), rtt.backoffs()), (ms(200), 0));
    }

    #[test]
    fn microsecond_rtts_with_no_floor_keep_one_tick_of_margin() {
        let mut rtt = RttEstimator::with_min_rto(Duration::ZERO);
        // R = 50 µs: SRTT 50, RTTVAR 25, RTO = 50 + max(16, 100) = 150 µs.
        rtt.on_sample(us(50));
        assert_eq!(rtt.rto(), us(150));
        // A steady RTT drives RTTVAR to (almost) nothing; G keeps the RTO one wheel tick above SRTT.
        for _ in 0..200 {
            rtt.on_sample(us(50));
        }
        assert_eq!(rtt.srtt(), Some(us(50)));
        assert_eq!(rtt.rto(), us(50 + CLOCK_GRANULARITY.total_micros()));
    }

    #[test]
    fn karn_ignores_retransmitted_segments_and_keeps_the_backoff() {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(ms(100));
        rtt.on_timeout();
        assert_eq!(rtt.rto(), ms(600));
        assert!(!rtt.on_segment_sample(ms(5), true));
        assert_eq!((rtt.rto(), rtt.srtt(), rtt.backoffs()), (ms(600), Some(ms(100)), 1));
        assert!(rtt.on_segment_sample(ms(100), false));
        // RTTVAR = 3/4 * 50 + 0 = 37.5, SRTT = 100: RTO = 250 ms, backoff gone.
        assert_eq!((rtt.rto(), rtt.backoffs()), (ms(250), 0));
    }

    #[test]
    fn estimates_are_forgotten_after_repeated_backoffs() {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(ms(100));
        for _ in 0..FORGET_AFTER_BACKOFFS - 1 {
            rtt.on_timeout();
        }
        assert_eq!(rtt.srtt(), Some(ms(100)));
        rtt.on_timeout();
        assert_eq!(rtt.srtt(), None);
        // The backed-off RTO stands until the next sample, which counts as a first one: 2 s, 1 s, RTO = 6 s.
        assert_eq!(rtt.rto(), ms(300 * 16));
        rtt.on_sample(ms(2000));
        assert_eq!((rtt.srtt(), rtt.rttvar(), rtt.rto()), (Some(ms(2000)), Some(ms(1000)), ms(6000)));
    }

    #[test]
    fn syn_timeout_reinitialises_to_three_seconds() {
        let mut rtt = RttEstimator::new();
        rtt.on_timeout();
        assert_eq!(rtt.rto(), ms(2000));
        rtt.reinit_after_syn_timeout();
        assert_eq!((rtt.rto(), rtt.backoffs()), (ms(3000), 0));
        rtt.on_timeout();
        assert_eq!(rtt.rto(), ms(6000));
        rtt.on_sample(ms(1));
        assert_eq!(rtt.rto(), RTO_MIN);
        // With a measurement (timestamps), the measurement stands.
        let mut rtt = RttEstimator::new();
        rtt.on_timeout();
        rtt.on_sample(ms(100));
        rtt.reinit_after_syn_timeout();
        assert_eq!(rtt.rto(), ms(300));
    }

    #[test]
    fn extreme_samples_are_clamped() {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(Duration::from_micros(u64::MAX));
        assert_eq!((rtt.srtt(), rtt.rto()), (Some(RTO_MAX), RTO_MAX));
        rtt.on_sample(Duration::ZERO);
        assert_eq!(rtt.rto(), RTO_MAX);
        let mut rtt = RttEstimator::with_min_rto(Duration::from_secs(1000));
        assert_eq!(rtt.min_rto(), RTO_MAX);
        rtt.on_sample(Duration::ZERO);
        assert_eq!(rtt.rto(), RTO_MAX);
    }

    proptest! {
        /// Any sequence of samples and timeouts keeps the RTO within its bounds and at least SRTT.
        #[test]
        fn rto_stays_in_bounds(
            min in 0u64..2_000_000,
            events in proptest::collection::vec(prop_oneof![
                (0u64..100_000_000).prop_map(Some),
                Just(None),
            ], 1..100),
        ) {
            let mut rtt = RttEstimator::with_min_rto(us(min));
            for e in events {
                match e {
                    Some(r) => rtt.on_sample(us(r)),
                    None => rtt.on_timeout(),
                }
                let rto = rtt.rto();
                prop_assert!(rto <= RTO_MAX && rto >= us(min).min(RTO_MAX));
                if let Some(srtt) = rtt.srtt() {
                    prop_assert!(rto > srtt || rto == RTO_MAX);
                }
            }
        }
    }
}
