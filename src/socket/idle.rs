//! The idle policy of an event loop that serves dataplane sockets: whether it keeps polling the NIC in user space
//! once it has nothing to do, or sleeps until the NIC or another thread wakes it.
//!
//! Polling through a gap costs the gap in CPU; sleeping through it costs a sleep and a wake-up: a few microseconds
//! of CPU and, on these VMs, 25-30 us of latency to wake the idle vCPU (BENCHMARKS.md, "Why the CPU line is a
//! choice of idle policy"). Two rules keep a loop polling, for at most the longest spin (`IX_SPIN_US`):
//!
//! - **Load** ([`LoadRule`]): requests come less than [`BREAK_EVEN_US`] apart on average. A sleeping loop pays a
//!   sleep and a wake-up for most requests (~13 us of CPU per request with the work, on these VMs), so from that
//!   rate on its core would be more than ~2/3 busy and queueing would lift the tail; polling costs the gaps
//!   instead, and the loop is IX's run-to-completion loop that never sleeps under load. It stops polling only
//!   when the gaps grow over [`STOP_US`] (a band against flapping). Below that rate it sleeps as soon as it is
//!   idle: with arrivals from many independent clients (memoryless), a spin of any length
//!   shorter than the gaps costs more CPU than sleeping at once, so there is no spin length to learn.
//! - **Conversation** ([`Turnaround`]): the app just answered a connection whose peer usually sends its next
//!   request within the longest spin (a synchronous client: one request at a time, the next right after the
//!   reply). Polling until it comes saves that request a wake-up, the latency a synchronous client waits for,
//!   at the price of the peer's turnaround in CPU. A peer that mostly takes longer (a client among many, a slow
//!   one) is not polled for; an odd slow turnaround (the client preempted) does not stop the polling. Only the
//!   first write after the peer spoke starts a poll: more writes before it speaks again (a one-way sender, an
//!   answer written in pieces) start none, and the turnaround counts from the last of them.
//!
//! `IX_SPIN_US=0` turns both off: the loop sleeps whenever it is idle.

/// Mean gap between requests (microseconds) below which a loop starts polling through the gaps: 50k requests/s.
/// Measured with memcached (USR, 32 Poisson connections): sleeping costs ~13 us of CPU per request (polling at
/// 40k/s: 23-25), while at 60k/s a sleeping loop's p99 was 550-1060 us against 255-360 us for a polling one.
pub const BREAK_EVEN_US: u64 = 20;

/// Mean gap (microseconds) above which a polling loop goes back to sleeping: 42k requests/s (at 40k/s the
/// smoothed estimate is 25.6 +- 1 us: a loop polling from an earlier burst stops within tens of ms). The margin over
/// [`BREAK_EVEN_US`] keeps a loop near the break-even from flapping, and keeps one odd window from stopping the
/// polling: when the loop did not run for a few milliseconds (the host ran something else on its vCPU), a
/// window that undercounts (when sockets rather than arrivals were counted: each socket once) lifted the
/// estimate over the break-even at 55-80k/s, and the loop slept for the next milliseconds, just when the queue
/// behind the stall needed it. One window moves the estimate by at most (cap - gap) / 8, which from ~65k/s up
/// stays under this.
pub const STOP_US: u64 = 24;

/// How often the load rule reads the request rate (microseconds): ~20-50 arrivals a window around the break-even.
const WINDOW_US: u64 = 1_000;

/// The load rule of one event loop: counts arrivals over a window (sockets that became readable, and data on
/// sockets that were ready already: [`super::sink::ReadySink::arrived`]) and starts polling when
/// the smoothed mean gap (1/8 weight to each window, so a rate at 4/5 of the break-even rate, 40k/s, stays above
/// it by over four standard deviations) falls under [`BREAK_EVEN_US`], and stops when it rises over [`STOP_US`]
/// (which 40k/s does, but by 1.6 standard deviations only: a loop polling at 40k/s stops within tens of ms).
#[derive(Debug)]
pub struct LoadRule {
    max_us: u64,
    window_start_us: u64,
    arrivals: u64,
    /// Smoothed mean gap between arrivals (nanoseconds).
    gap_ns: u64,
    /// Whether the loop polls (between the two thresholds it keeps doing what it did).
    polling: bool,
}

impl LoadRule {
    /// A rule whose spin is `max_us` (0: never spin). It starts idle.
    pub fn new(max_us: u64) -> LoadRule {
        LoadRule { max_us, window_start_us: 0, arrivals: 0, gap_ns: Self::CAP_NS, polling: false }
    }

    /// The largest gap a window counts: a long sleep must not keep the loop from polling for long once load
    /// comes (from the cap, 13 windows of 200k requests/s bring the estimate under the break-even).
    const CAP_NS: u64 = 4 * BREAK_EVEN_US * 1_000;

    /// `ready` arrivals (sockets that became readable, data on readable ones) since the last call, at `now_us`: returns
    /// how long to keep polling now.
    pub fn work(&mut self, now_us: u64, ready: usize) -> u64 {
        self.arrivals += ready as u64;
        let elapsed = now_us.saturating_sub(self.window_start_us);
        if elapsed >= WINDOW_US {
            let gap = (elapsed * 1_000 / self.arrivals.max(1)).min(Self::CAP_NS);
            self.gap_ns = self.gap_ns - self.gap_ns / 8 + gap / 8;
            self.window_start_us = now_us;
            self.arrivals = 0;
            let threshold = if self.polling { STOP_US } else { BREAK_EVEN_US };
            self.polling = self.gap_ns < threshold * 1_000;
        }
        if self.polling {
            self.max_us
        } else {
            0
        }
    }
}

/// Of the last 8 turnarounds, how many must have been within the longest spin for the loop to poll for the peer:
/// a synchronous client on these VMs comes back within 100 us ~96% of the time (the rest: its own thread
/// preempted, a tick), so one slow turnaround must not stop the polling; a client among many at moderate load
/// (Poisson, a turnaround of ~1 ms on average, so 9.5% of them within 100 us) has 6 quick ones out of 8 with a
/// probability of ~2e-5.
const QUICK_OF_8: u32 = 6;

/// The conversation rule's memory of one connection: whether its peer sends again soon after the app answered.
#[derive(Debug, Clone, Copy)]
pub struct Turnaround {
    /// The last 8 turnarounds, a bit each (newest lowest): 1 if it was within the longest spin. Starts all ones:
    /// a new peer is polled for until it proves slow (3 slow turnarounds), as a loop under load would.
    quick: u8,
    /// When the app last answered with nothing left unread, if the peer has not sent since.
    answered_us: Option<u64>,
}

impl Default for Turnaround {
    fn default() -> Turnaround {
        Turnaround { quick: u8::MAX, answered_us: None }
    }
}

impl Turnaround {
    /// The app wrote to the connection at `now_us` with nothing left unread (an answer): returns whether the peer
    /// is expected back within `max_us`, so the loop should poll for it. Only the first write since the peer last
    /// sent can say so; later ones move the start of the turnaround (the peer answers the whole answer).
    pub fn answered(&mut self, now_us: u64, max_us: u64) -> bool {
        let first = self.answered_us.replace(now_us).is_none();
        first && max_us > 0 && self.quick.count_ones() >= QUICK_OF_8
    }

    /// Whether the app answered and the peer has not sent since (the next data is a turnaround; callers read the
    /// clock only then).
    pub fn awaiting(&self) -> bool {
        self.answered_us.is_some()
    }

    /// Data arrived from the peer at `now_us`: after an answer, that is one turnaround, quick if within `max_us`.
    pub fn arrived(&mut self, now_us: u64, max_us: u64) {
        if let Some(at) = self.answered_us.take() {
            let quick = now_us.saturating_sub(at) <= max_us;
            self.quick = (self.quick << 1) | u8::from(quick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Poisson arrivals at `rate` per second for `ms` milliseconds, one ready socket each: how many of the
    /// rule's answers said poll.
    fn poisson(r: &mut LoadRule, now: &mut u64, rate: f64, ms: u64, seed: &mut u64) -> (usize, usize) {
        let end = *now + ms * 1_000;
        let mut t = *now as f64;
        let (mut polled, mut total) = (0, 0);
        loop {
            // xorshift, then an exponential gap
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let u = ((*seed >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            t += -u.ln() * 1e6 / rate;
            if t as u64 >= end {
                break;
            }
            polled += usize::from(r.work(t as u64, 1) > 0);
            total += 1;
        }
        *now = end;
        (polled, total)
    }

    #[test]
    fn load_rule_polls_from_50k_requests_per_second() {
        let mut r = LoadRule::new(100);
        let (mut now, mut seed) = (1_000_000, 0x9e37_79b9_7f4a_7c15);
        // 40k/s: never polls.
        let (polled, total) = poisson(&mut r, &mut now, 40_000.0, 2_000, &mut seed);
        assert_eq!(polled, 0, "of {total}");
        // 70k/s: polls within ~10 ms, then throughout.
        let (polled, total) = poisson(&mut r, &mut now, 70_000.0, 1_000, &mut seed);
        assert!(polled > total * 95 / 100, "{polled} of {total}");
        // From idle (a new loop) straight to 200k/s: polling within 15 ms.
        let mut r = LoadRule::new(100);
        now += 5_000_000;
        let (polled, total) = poisson(&mut r, &mut now, 200_000.0, 15, &mut seed);
        assert!(polled > 0 && polled < total, "{polled} of {total}");
        let (polled, total) = poisson(&mut r, &mut now, 200_000.0, 100, &mut seed);
        assert_eq!(polled, total);
        // Back to 20k/s: sleeps again within ~15 ms.
        let (_, _) = poisson(&mut r, &mut now, 20_000.0, 15, &mut seed);
        let (polled, total) = poisson(&mut r, &mut now, 20_000.0, 1_000, &mut seed);
        assert_eq!(polled, 0, "of {total}");
        // 40k/s after load: back to sleeping within ~20 ms.
        let (_, _) = poisson(&mut r, &mut now, 200_000.0, 100, &mut seed);
        let (_, _) = poisson(&mut r, &mut now, 40_000.0, 20, &mut seed);
        let (polled, total) = poisson(&mut r, &mut now, 40_000.0, 1_000, &mut seed);
        assert!(polled < total / 50, "{polled} of {total}");
        // Batches count every ready socket: 4 at a time every 40 us is 10 us apart.
        let mut last = 0;
        for _ in 0..1_000 {
            now += 40;
            last = r.work(now, 4);
        }
        assert_eq!(last, 100);
    }

    #[test]
    fn an_odd_window_does_not_stop_the_polling_at_70k_requests_per_second() {
        let mut r = LoadRule::new(100);
        let (mut now, mut seed) = (1_000_000, 0x2545_f491_4f6c_dd1d);
        let (_, _) = poisson(&mut r, &mut now, 70_000.0, 100, &mut seed);
        let (polled, total) = poisson(&mut r, &mut now, 70_000.0, 100, &mut seed);
        assert_eq!(polled, total);
        for _ in 0..20 {
            // The loop did not run for 3 ms; then a window that counts only 32 arrivals (the ~200 requests of
            // the stall on 32 connections, counted per socket), and the load goes on.
            now += 3_000;
            assert_eq!(r.work(now, 32), 100, "right after a stall");
            let (polled, total) = poisson(&mut r, &mut now, 70_000.0, 50, &mut seed);
            assert_eq!(polled, total);
        }
    }

    #[test]
    fn no_spin_configured_means_never() {
        let mut r = LoadRule::new(0);
        for k in 0..10_000 {
            assert_eq!(r.work(k, 8), 0);
        }
        let mut t = Turnaround::default();
        assert!(!t.answered(0, 0));
    }

    #[test]
    fn a_synchronous_peer_is_polled_for_and_a_slow_one_is_not() {
        let mut t = Turnaround::default();
        let mut now = 0;
        // Unknown: polled for. Then a peer back 20 us after each answer, but one answer in 8 takes 2 ms: still
        // polled for every time.
        for k in 0..40 {
            assert!(t.answered(now, 100), "answer {k}");
            now += if k % 8 == 7 { 2_000 } else { 20 };
            t.arrived(now, 100);
            now += 5;
        }
        // Three slow turnarounds in a row: not any more.
        for _ in 0..3 {
            t.answered(now, 100);
            now += 2_000;
            t.arrived(now, 100);
        }
        assert!(!t.answered(now, 100));
        now += 20;
        t.arrived(now, 100);
        // Quick ones bring it back once 6 of the last 8 are quick.
        let mut back = None;
        for k in 0..8 {
            if t.answered(now, 100) {
                back = Some(k);
                break;
            }
            now += 20;
            t.arrived(now, 100);
        }
        // The last 8 were 4 slow, 4 quick (the oldest of them pushed out first): 5 more quick ones.
        assert_eq!(back, Some(5));
    }

    #[test]
    fn a_peer_among_many_at_moderate_load_is_not_polled_for() {
        let mut t = Turnaround::default();
        let mut now = 0;
        let mut polled = 0;
        // Turnarounds spread over 0..2 ms, as a Poisson client at ~1k requests/s: after the first few, (almost)
        // never polled for.
        for k in 0..1000u64 {
            if t.answered(now, 100) && k >= 3 {
                polled += 1;
            }
            now += (k * 7919) % 2_000;
            t.arrived(now, 100);
        }
        assert!(polled <= 5, "{polled}");
    }

    #[test]
    fn a_one_way_sender_is_not_polled_for() {
        // Writes every 10 ms or every 50 us, nothing ever comes back: polled for after the first write only.
        for every in [10_000, 50] {
            let mut t = Turnaround::default();
            let polled = (0..100u64).filter(|k| t.answered(k * every, 100)).count();
            assert_eq!(polled, 1, "every {every} us");
        }
    }

    #[test]
    fn an_answer_in_pieces_counts_from_its_last_piece() {
        let mut t = Turnaround::default();
        let mut now = 0;
        // A 2 ms answer written in pieces, the peer's next request 20 us after the last piece: a quick peer,
        // polled for at the first piece of every answer.
        for _ in 0..20 {
            assert!(t.answered(now, 100));
            for _ in 0..10 {
                now += 200;
                assert!(!t.answered(now, 100));
            }
            now += 20;
            t.arrived(now, 100);
        }
    }

    #[test]
    fn data_without_an_answer_is_not_a_turnaround() {
        let mut t = Turnaround::default();
        // The peer sends before the app answers (pipelining): nothing learned, however long it takes.
        for k in 0..10 {
            t.arrived(k * 5_000, 100);
        }
        assert!(t.answered(60_000, 100));
        t.arrived(60_030, 100);
        assert!(t.answered(70_000, 100));
    }

    #[test]
    fn clock_steps_back_do_not_panic() {
        let mut r = LoadRule::new(100);
        r.work(5_000, 1);
        r.work(10, 1);
        let mut t = Turnaround::default();
        t.answered(5_000, 100);
        t.arrived(10, 100);
        assert!(t.answered(20, 100));
    }
}
