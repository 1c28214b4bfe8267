//! Congestion control: NewReno's window arithmetic driven by loss detection elsewhere (RACK-TLP and the
//! scoreboard in [`super::rack`]), behind an enum so that other algorithms (CUBIC, RFC 9438) can be added as
//! variants without dynamic dispatch.
//!
//! Heads up: read RFC 5681 (slow start, congestion avoidance), RFC 6675 §5 (SACK recovery: `cwnd = ssthresh` and
//! send while `pipe < cwnd`), RFC 6582 (the `recover` point: one reduction per window of data), RFC 3465
//! (appropriate byte counting), RFC 6928 (initial window) and RFC 8985 §7.4 (a repaired tail loss reduces too).
//!
//! Pure bookkeeping: the connection says when new data is acknowledged, when it found a loss (RACK, or three
//! duplicate ACKs without SACK), when the retransmission timer fired and when D-SACKs showed a reduction to be
//! spurious; it answers with the window in bytes. Which segments to resend is the scoreboard's business.
//!
//! Choices:
//! - Initial window (RFC 6928): `min(10*SMSS, max(2*SMSS, 14600))` bytes, ten 1460-byte segments on Ethernet.
//!   The same value is the restart window after idle (RFC 5681 §4.1).
//! - Slow start counts bytes (RFC 3465) with `L = 2*SMSS` per ACK, and `L = 1*SMSS` in the slow start that
//!   follows a timeout, while ACKs may still be for the original transmissions (RFC 3465 §2.3); slow start stops
//!   at `ssthresh` (the excess is not carried into congestion avoidance).
//! - Congestion avoidance counts bytes too: `cwnd += SMSS` each time a full `cwnd` has been acknowledged
//!   (RFC 5681 §3.1, RFC 3465 §2.1).
//! - A loss starts a recovery with `ssthresh = max(FlightSize/2, 2*SMSS)` and `cwnd = ssthresh` (RFC 6675 §5
//!   step 4.2). Further losses before `snd_una` passes `recover` (the highest number sent when it began) are the
//!   same congestion event. The window does not grow in recovery; it ends with `cwnd = ssthresh`.
//! - Undo (RFC 2883's use, as Linux's D-SACK undo): when every retransmission of a recovery is reported a
//!   duplicate, the reduction was spurious and `cwnd`, `ssthresh` come back to what they were.
//! - Not done here: cwnd validation for application-limited senders (RFC 7661), PRR (RFC 6937).
use super::seq::SeqNumber;

/// Segments in the initial window, for the usual SMSS (RFC 6928).
pub const INITIAL_WINDOW_SEGMENTS: u32 = 10;
/// The byte cap of RFC 6928's initial window formula.
pub const INITIAL_WINDOW_BYTES: u32 = 14_600;

/// The initial (and restart) window for a sender maximum segment size, in bytes (RFC 6928 §2).
pub const fn initial_window(smss: u32) -> u32 {
    let two = smss.saturating_mul(2);
    let floor = if two > INITIAL_WINDOW_BYTES { two } else { INITIAL_WINDOW_BYTES };
    let cap = smss.saturating_mul(INITIAL_WINDOW_SEGMENTS);
    if cap < floor {
        cap
    } else {
        floor
    }
}

/// A congestion controller of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Congestion {
    /// RFC 5681's windows with RFC 6675's recovery.
    NewReno(NewReno),
}

impl Congestion {
    /// NewReno for a sender maximum segment size (bytes).
    pub fn new_reno(smss: u32) -> Self {
        Congestion::NewReno(NewReno::new(smss))
    }

    /// An ACK acknowledged `acked` new bytes; `snd_una` is the new oldest unacknowledged number. Grows the
    /// window, or ends a recovery that `snd_una` has passed. Returns whether a recovery ended.
    pub fn on_ack(&mut self, acked: usize, snd_una: SeqNumber) -> bool {
        match self {
            Congestion::NewReno(c) => c.on_ack(acked, snd_una),
        }
    }

    /// A segment was found lost (RACK, or fast retransmit without SACK). Starts a recovery, reducing the
    /// window, unless this loss belongs to the congestion event already being handled. `snd_max` is the highest
    /// number sent. Returns whether a recovery began.
    pub fn on_loss(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) -> bool {
        match self {
            Congestion::NewReno(c) => c.on_loss(snd_una, snd_max),
        }
    }

    /// A tail loss probe repaired a loss (RFC 8985 §7.4.2): the same reduction as a recovery, which is already
    /// over.
    pub fn on_probe_repair(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) {
        match self {
            Congestion::NewReno(c) => {
                if c.on_loss(snd_una, snd_max) {
                    c.phase = Phase::Open;
                }
            }
        }
    }

    /// The retransmission timer expired (RFC 5681 §3.1, eq. (4)): `ssthresh = max(FlightSize/2, 2*SMSS)`, held
    /// if the same segment already timed out; `cwnd` = one SMSS. Leaves recovery.
    pub fn on_timeout(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) {
        match self {
            Congestion::NewReno(c) => c.on_timeout(snd_una, snd_max),
        }
    }

    /// Every retransmission of the last recovery turned out needless (D-SACKs): restore the window it cut.
    pub fn undo(&mut self) {
        match self {
            Congestion::NewReno(c) => c.undo(),
        }
    }

    /// Nothing was sent for longer than an RTO: `cwnd = min(cwnd, initial window)` (RFC 5681 §4.1).
    pub fn on_idle_restart(&mut self) {
        match self {
            Congestion::NewReno(c) => c.on_idle_restart(),
        }
    }

    /// The congestion window, bytes.
    pub fn cwnd(&self) -> u32 {
        match self {
            Congestion::NewReno(c) => c.cwnd,
        }
    }

    /// The slow start threshold, bytes (`u32::MAX` until the first loss).
    pub fn ssthresh(&self) -> u32 {
        match self {
            Congestion::NewReno(c) => c.ssthresh,
        }
    }

    /// Whether a loss recovery is under way (fast recovery, not the slow start after a timeout).
    pub fn in_recovery(&self) -> bool {
        match self {
            Congestion::NewReno(c) => matches!(c.phase, Phase::Recovery { .. }),
        }
    }

    /// Whether a loss is being repaired: fast recovery, or the slow start after a timeout until `recover`.
    pub fn recovering(&self) -> bool {
        match self {
            Congestion::NewReno(c) => !matches!(c.phase, Phase::Open),
        }
    }

    /// The sender maximum segment size the controller counts in.
    pub fn smss(&self) -> u32 {
        match self {
            Congestion::NewReno(c) => c.smss,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Slow start or congestion avoidance, by `cwnd < ssthresh`.
    Open,
    /// Recovery until `snd_una` reaches `recover` (one past the highest number sent when it began).
    Recovery { recover: SeqNumber },
    /// After a timeout, until `snd_una` reaches `recover`: ACKs may be for data sent before the timeout, so slow
    /// start counts one SMSS per ACK, and losses found meanwhile are the same event (RFC 6582 §3.2 step 2).
    /// `una` is `snd_una` at the timeout, to recognise a second timeout of the same segment.
    Loss { recover: SeqNumber, una: SeqNumber },
}

/// NewReno state, all sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReno {
    smss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged towards the next congestion avoidance increment (RFC 3465 §2.1).
    bytes_acked: u32,
    phase: Phase,
    /// `cwnd` and `ssthresh` before the last reduction, for undo (0: nothing to undo).
    prior_cwnd: u32,
    prior_ssthresh: u32,
}

/// A byte count as u32, saturating (windows never reach 4 GiB).
fn bytes(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl NewReno {
    /// A controller for a sender maximum segment size (clamped to 1..=65535) with the initial window of RFC 6928
    /// and an unbounded `ssthresh`.
    pub fn new(smss: u32) -> Self {
        let smss = smss.clamp(1, u32::from(u16::MAX));
        NewReno {
            smss,
            cwnd: initial_window(smss),
            ssthresh: u32::MAX,
            bytes_acked: 0,
            phase: Phase::Open,
            prior_cwnd: 0,
            prior_ssthresh: 0,
        }
    }

    fn on_ack(&mut self, acked: usize, snd_una: SeqNumber) -> bool {
        let acked = bytes(acked);
        if acked == 0 {
            return false;
        }
        match self.phase {
            Phase::Recovery { recover } => {
                if snd_una.ge(recover) {
                    self.cwnd = self.ssthresh.max(self.smss);
                    self.bytes_acked = 0;
                    self.phase = Phase::Open;
                    return true;
                }
                false
            }
            Phase::Loss { recover, .. } => {
                self.grow(acked, self.smss);
                if snd_una.ge(recover) {
                    self.phase = Phase::Open;
                }
                false
            }
            Phase::Open => {
                self.grow(acked, 2 * self.smss);
                false
            }
        }
    }

    /// Slow start (at most `limit` bytes per ACK, up to `ssthresh`) or congestion avoidance.
    fn grow(&mut self, acked: u32, limit: u32) {
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(acked.min(limit)).min(self.ssthresh);
        } else {
            self.bytes_acked = self.bytes_acked.saturating_add(acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.smss);
            }
        }
    }

    fn on_loss(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) -> bool {
        match self.phase {
            Phase::Recovery { .. } => false,
            Phase::Loss { recover, .. } if snd_una.lt(recover) => false,
            Phase::Open | Phase::Loss { .. } => {
                self.prior_cwnd = self.cwnd;
                self.prior_ssthresh = self.ssthresh;
                self.ssthresh = self.loss_threshold(snd_una, snd_max);
                self.cwnd = self.ssthresh;
                self.bytes_acked = 0;
                self.phase = Phase::Recovery { recover: snd_max };
                true
            }
        }
    }

    fn on_timeout(&mut self, snd_una: SeqNumber, snd_max: SeqNumber) {
        let (recover, repeated) = match self.phase {
            Phase::Loss { recover, una } => (recover.max(snd_max), una == snd_una),
            Phase::Recovery { recover } => (recover.max(snd_max), false),
            Phase::Open => (snd_max, false),
        };
        // A second timeout of the same segment keeps ssthresh (RFC 5681 §3.1, after eq. (4)).
        if !repeated {
            self.ssthresh = self.loss_threshold(snd_una, snd_max);
        }
        self.cwnd = self.smss;
        self.bytes_acked = 0;
        self.prior_cwnd = 0;
        self.phase = Phase::Loss { recover, una: snd_una };
    }

    fn undo(&mut self) {
        if self.prior_cwnd == 0 {
            return;
        }
        self.cwnd = self.cwnd.max(self.prior_cwnd);
        self.ssthresh = self.ssthresh.max(self.prior_ssthresh);
        self.prior_cwnd = 0;
        if let Phase::Recovery { .. } = self.phase {
            self.phase = Phase::Open;
        }
    }

    fn on_idle_restart(&mut self) {
        self.cwnd = self.cwnd.min(initial_window(self.smss));
    }

    /// `max(FlightSize / 2, 2*SMSS)` (RFC 5681 eq. (4)).
    fn loss_threshold(&self, snd_una: SeqNumber, snd_max: SeqNumber) -> u32 {
        (bytes(snd_max - snd_una) / 2).max(2 * self.smss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSS: u32 = 1000;
    const M: usize = MSS as usize;

    /// A sender's view: the controller plus the sequence numbers it is told about.
    struct Sender {
        cc: Congestion,
        una: SeqNumber,
        nxt: SeqNumber,
    }

    impl Sender {
        fn new(start: u32) -> Self {
            Sender { cc: Congestion::new_reno(MSS), una: SeqNumber(start), nxt: SeqNumber(start) }
        }
        /// Sends everything the window allows, in full segments; returns the segments sent.
        fn fill(&mut self) -> usize {
            let mut n = 0;
            while self.nxt - self.una + M <= self.cc.cwnd() as usize {
                self.nxt += M;
                n += 1;
            }
            n
        }
        #[track_caller]
        fn ack(&mut self, bytes: usize) -> bool {
            self.una += bytes;
            assert!(self.una.le(self.nxt));
            self.cc.on_ack(bytes, self.una)
        }
        fn loss(&mut self) -> bool {
            self.cc.on_loss(self.una, self.nxt)
        }
        /// Acks the whole flight one segment at a time (one RTT).
        fn round(&mut self) {
            self.fill();
            while self.una != self.nxt {
                assert!(!self.ack(M));
            }
        }
    }

    #[test]
    fn initial_window_per_rfc_6928() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(4000), 14_600);
        let cc = Congestion::new_reno(1460);
        assert_eq!((cc.cwnd(), cc.ssthresh(), cc.in_recovery(), cc.smss()), (14_600, u32::MAX, false, 1460));
        assert_eq!(Congestion::new_reno(0).smss(), 1);
    }

    #[test]
    fn slow_start_doubles_per_rtt_and_counts_bytes() {
        let mut s = Sender::new(1);
        assert_eq!(s.fill(), 10);
        // One ACK per segment: +1 SMSS each.
        s.ack(M);
        assert_eq!(s.cc.cwnd(), 11 * MSS);
        // A stretch ACK for three segments: +2 SMSS at most (RFC 3465, L = 2).
        s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 13 * MSS);
        // A sub-segment ACK counts its bytes only.
        s.ack(100);
        assert_eq!(s.cc.cwnd(), 13 * MSS + 100);
        let mut s = Sender::new(1);
        let mut windows = Vec::new();
        for _ in 0..4 {
            s.round();
            windows.push(s.cc.cwnd() / MSS);
        }
        assert_eq!(windows, [20, 40, 80, 160]);
    }

    #[test]
    fn loss_halves_once_per_window_and_recovery_ends_at_recover() {
        let mut s = Sender::new(u32::MAX - 5000); // wraps around zero
        assert_eq!(s.fill(), 10);
        assert!(s.loss());
        assert!(s.cc.in_recovery());
        // ssthresh = FlightSize / 2; cwnd = ssthresh (RFC 6675 §5).
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd()), (5 * MSS, 5 * MSS));
        // More losses from the same window: the same congestion event.
        assert!(!s.loss());
        assert_eq!(s.cc.cwnd(), 5 * MSS);
        // Partial ACKs neither grow nor end it.
        s.nxt += 3 * M;
        assert!(!s.ack(4 * M));
        assert_eq!(s.cc.cwnd(), 5 * MSS);
        assert!(s.cc.in_recovery());
        // Reaching `recover` (10 segments) ends it with cwnd = ssthresh.
        assert!(s.ack(6 * M));
        assert!(!s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), 5 * MSS);
        // Congestion avoidance: one segment per window.
        let mut windows = Vec::new();
        for _ in 0..5 {
            s.round();
            windows.push(s.cc.cwnd() / MSS);
        }
        assert_eq!(windows, [6, 7, 8, 9, 10]);
        // A loss in a later window is a new event.
        s.fill();
        assert!(s.loss());
        assert_eq!(s.cc.cwnd(), 5 * MSS);
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        let mut s = Sender::new(0);
        s.fill();
        s.cc.on_timeout(s.una, s.nxt); // ssthresh = 5 SMSS, cwnd = 1 SMSS
                                       // Until `recover` (all ten segments) is acknowledged, slow start counts one SMSS per ACK.
        s.ack(M);
        s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 3 * MSS);
        s.ack(6 * M);
        assert_eq!(s.cc.cwnd(), 4 * MSS);
        // Then two per ACK again, up to ssthresh and no further.
        assert_eq!(s.fill(), 4);
        s.ack(2 * M);
        assert_eq!(s.cc.cwnd(), 5 * MSS, "capped at ssthresh");
        s.ack(2 * M);
        assert_eq!(s.cc.cwnd(), 5 * MSS, "congestion avoidance");
    }

    #[test]
    fn timeout_collapses_to_one_segment() {
        let mut s = Sender::new(100);
        s.round();
        s.round(); // cwnd 40 SMSS
        assert_eq!(s.fill(), 40);
        s.cc.on_timeout(s.una, s.nxt);
        // ssthresh = max(FlightSize / 2, 2 SMSS) = 20 SMSS; cwnd = loss window = 1 SMSS.
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd(), s.cc.in_recovery()), (20 * MSS, MSS, false));
        // The same segment times out again: ssthresh holds (whatever the flight now).
        s.cc.on_timeout(s.una, s.una + 4 * M);
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd()), (20 * MSS, MSS));
        // Slow start after a timeout counts one SMSS per ACK, even for a stretch ACK.
        s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 2 * MSS);
        // Losses found below `recover` are the same event.
        assert!(!s.loss());
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd()), (20 * MSS, 2 * MSS));
        // A different segment timing out is a new loss: ssthresh from the current flight (37 SMSS -> 18.5).
        s.cc.on_timeout(s.una, s.nxt);
        assert_eq!(s.cc.ssthresh(), 37 * MSS / 2);
        // Once `recover` is acknowledged, a loss starts a recovery.
        s.ack(37 * M);
        s.nxt += 4 * M;
        assert!(s.loss());
        assert_eq!(s.cc.ssthresh(), 2 * MSS);
    }

    #[test]
    fn timeout_during_recovery_leaves_it() {
        let mut s = Sender::new(0);
        s.fill();
        assert!(s.loss());
        s.cc.on_timeout(s.una, s.nxt);
        assert!(!s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), MSS);
        // Nothing to undo after a timeout.
        s.cc.undo();
        assert_eq!(s.cc.cwnd(), MSS);
    }

    #[test]
    fn undo_restores_the_window_a_spurious_recovery_cut() {
        let mut s = Sender::new(0);
        s.round();
        s.fill();
        assert_eq!(s.cc.cwnd(), 20 * MSS);
        assert!(s.loss());
        assert_eq!(s.cc.cwnd(), 10 * MSS);
        s.cc.undo();
        assert_eq!((s.cc.cwnd(), s.cc.ssthresh(), s.cc.in_recovery()), (20 * MSS, u32::MAX, false));
        // Only once.
        assert!(s.loss());
        s.cc.undo();
        s.cc.undo();
        assert_eq!(s.cc.cwnd(), 20 * MSS);
    }

    #[test]
    fn a_repaired_tail_loss_reduces_without_a_recovery() {
        let mut s = Sender::new(0);
        s.fill();
        s.cc.on_probe_repair(s.una, s.nxt);
        assert_eq!((s.cc.cwnd(), s.cc.ssthresh(), s.cc.in_recovery()), (5 * MSS, 5 * MSS, false));
    }

    #[test]
    fn idle_restart_caps_at_the_initial_window() {
        let mut s = Sender::new(0);
        s.round();
        assert_eq!(s.cc.cwnd(), 20 * MSS);
        s.cc.on_idle_restart();
        assert_eq!(s.cc.cwnd(), initial_window(MSS));
        s.cc.on_timeout(s.una, s.una + M);
        s.cc.on_idle_restart();
        assert_eq!(s.cc.cwnd(), MSS);
    }

    #[test]
    fn ack_of_nothing_changes_nothing() {
        let mut s = Sender::new(0);
        s.fill();
        let before = s.cc.clone();
        assert!(!s.cc.on_ack(0, s.una));
        assert_eq!(s.cc, before);
    }

    proptest! {
        /// Any sequence of events keeps cwnd at least one SMSS, ssthresh at least two after a loss, and never
        /// panics, whatever the (even inconsistent) sequence numbers.
        #[test]
        fn invariants_hold(
            smss in 1u32..9000,
            events in proptest::collection::vec((0u8..5, any::<u32>(), any::<u32>(), 0usize..100_000), 1..200),
        ) {
            let mut cc = Congestion::new_reno(smss);
            for (kind, una, nxt, acked) in events {
                let (una, nxt) = (SeqNumber(una), SeqNumber(nxt));
                match kind {
                    0 => { cc.on_ack(acked, una); }
                    1 => { cc.on_loss(una, nxt); }
                    2 => cc.on_probe_repair(una, nxt),
                    3 => cc.undo(),
                    _ => cc.on_timeout(una, nxt),
                }
                prop_assert!(cc.cwnd() >= smss);
                prop_assert!(cc.ssthresh() >= 2 * smss);
            }
        }
    }
}
