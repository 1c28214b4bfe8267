//! Congestion control: NewReno, behind an enum so that other algorithms (CUBIC, RFC 9438) can be added as
//! variants without dynamic dispatch.
//!
//! Heads up: read RFC 5681 (slow start, congestion avoidance, fast retransmit and fast recovery), RFC 6582
//! (NewReno: partial ACKs and the `recover` guard), RFC 3465 (appropriate byte counting) and RFC 6928 (initial
//! window).
//!
//! Pure bookkeeping: the connection tells it about new ACKs, duplicate ACKs (it counts them, by RFC 5681 §2's
//! definition) and retransmission timeouts, passing sequence numbers; it answers with the window in bytes and,
//! when a segment must be retransmitted at once, an [`Action`]. It never sees segments.
//!
//! Choices:
//! - Initial window (RFC 6928): `min(10*SMSS, max(2*SMSS, 14600))` bytes, ten 1460-byte segments on Ethernet.
//!   The same value is the restart window after idle (RFC 5681 §4.1).
//! - Slow start counts bytes (RFC 3465) with `L = 2*SMSS` per ACK, and `L = 1*SMSS` in the slow start that
//!   follows a timeout, while ACKs may still be for the original transmissions (RFC 3465 §2.3); slow start stops
//!   at `ssthresh` (the excess is not carried into congestion avoidance).
//! - Congestion avoidance counts bytes too: `cwnd += SMSS` each time a full `cwnd` has been acknowledged
//!   (RFC 5681 §3.1, RFC 3465 §2.1).
//! - A full ACK ends fast recovery with `cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)`, option (1) of
//!   RFC 6582 §3.2 step 3, which cannot burst. A partial ACK deflates by the bytes it acknowledged, adds back one
//!   SMSS if it acknowledged at least that much, and never leaves less than one SMSS.
//! - RFC 6582's "Impatient" timer rule: only the first partial ACK restarts the retransmission timer.
//! - Not done here: the optional ACK heuristics of RFC 6582 §4.1, limited transmit (RFC 3042, the caller may send
//!   a new segment on the first two duplicate ACKs), cwnd validation for application-limited senders (RFC 7661).
use super::seq::SeqNumber;

/// Duplicate ACKs that trigger fast retransmit (RFC 5681 §3.2).
pub const DUP_ACK_THRESHOLD: u32 = 3;
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

/// What the connection must do at once, besides sending what the window now allows.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing special (the connection applies the usual timer rules of RFC 6298 §5).
    None,
    /// Third duplicate ACK: retransmit the segment at `snd_una` now. Fast recovery has begun.
    FastRetransmit,
    /// Partial ACK during fast recovery: retransmit the segment at the new `snd_una` (the next hole) now. Restart
    /// the retransmission timer only if `restart_timer` (the first partial ACK of this recovery); otherwise leave
    /// it running, so that a recovery with many losses still ends by timeout (RFC 6582 §3.2 step 3, "Impatient").
    RetransmitHole {
        /// Whether to restart the retransmission timer.
        restart_timer: bool,
    },
}

impl Action {
    /// Whether the segment at `snd_una` must be retransmitted now.
    pub fn retransmit(self) -> bool {
        !matches!(self, Action::None)
    }
}

/// A congestion controller of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Congestion {
    /// RFC 5681 with RFC 6582's fast recovery.
    NewReno(NewReno),
}

impl Congestion {
    /// NewReno for a sender maximum segment size (bytes).
    pub fn new_reno(smss: u32) -> Self {
        Congestion::NewReno(NewReno::new(smss))
    }

    /// An ACK acknowledged `acked` new bytes (`acked > 0`; ACKs that acknowledge nothing new are duplicates or
    /// window updates). `snd_una` is the new oldest unacknowledged number, `snd_nxt` one past the highest number
    /// sent. Grows the window, or handles a partial or full ACK in fast recovery.
    pub fn on_ack(&mut self, acked: usize, snd_una: SeqNumber, snd_nxt: SeqNumber) -> Action {
        match self {
            Congestion::NewReno(c) => c.on_ack(acked, snd_una, snd_nxt),
        }
    }

    /// The `count`-th consecutive duplicate ACK (as RFC 5681 §2 defines them; the connection counts and resets
    /// the count on any new ACK). The third enters fast retransmit and recovery, unless a timeout's `recover`
    /// point has not been passed yet (RFC 6582 §3.2 step 2); in recovery each one inflates the window by SMSS.
    pub fn on_dup_ack(&mut self, count: u32, snd_una: SeqNumber, snd_nxt: SeqNumber) -> Action {
        match self {
            Congestion::NewReno(c) => c.on_dup_ack(count, snd_una, snd_nxt),
        }
    }

    /// The retransmission timer expired (RFC 5681 §3.1, eq. (4)): `ssthresh = max(FlightSize/2, 2*SMSS)`, held
    /// if the same segment already timed out; `cwnd` = one SMSS. Leaves fast recovery. Pass as `snd_nxt` the
    /// highest number ever sent (`snd_max`), also when the connection then rewinds its `snd_nxt`.
    pub fn on_timeout(&mut self, snd_una: SeqNumber, snd_nxt: SeqNumber) {
        match self {
            Congestion::NewReno(c) => c.on_timeout(snd_una, snd_nxt),
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

    /// Whether fast recovery is under way.
    pub fn in_recovery(&self) -> bool {
        match self {
            Congestion::NewReno(c) => matches!(c.phase, Phase::Recovery { .. }),
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
    /// Fast recovery until `snd_una` reaches `recover` (one past the highest number sent when it began).
    Recovery { recover: SeqNumber, partial_seen: bool },
    /// After a timeout, until `snd_una` reaches `recover`: ACKs may be for data sent before the timeout, so slow
    /// start counts one SMSS per ACK, and duplicate ACKs do not start fast retransmit (RFC 6582 §3.2 step 2).
    /// `una` is `snd_una` at the timeout, to recognise a second timeout of the same segment.
    Loss { recover: SeqNumber, una: SeqNumber },
}

/// NewReno state (RFC 5681 and RFC 6582), all sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReno {
    smss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged towards the next congestion avoidance increment (RFC 3465 §2.1).
    bytes_acked: u32,
    phase: Phase,
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
        NewReno { smss, cwnd: initial_window(smss), ssthresh: u32::MAX, bytes_acked: 0, phase: Phase::Open }
    }

    fn on_ack(&mut self, acked: usize, snd_una: SeqNumber, snd_nxt: SeqNumber) -> Action {
        let acked = bytes(acked);
        if acked == 0 {
            return Action::None;
        }
        match self.phase {
            Phase::Recovery { recover, partial_seen } => {
                if snd_una.ge(recover) {
                    // Full ACK: deflate and leave recovery.
                    let flight = bytes(snd_nxt - snd_una);
                    self.cwnd = self.ssthresh.min(flight.max(self.smss).saturating_add(self.smss));
                    self.bytes_acked = 0;
                    self.phase = Phase::Open;
                    Action::None
                } else {
                    // Partial ACK: the next hole is lost too.
                    let mut cwnd = self.cwnd.saturating_sub(acked);
                    if acked >= self.smss {
                        cwnd = cwnd.saturating_add(self.smss);
                    }
                    self.cwnd = cwnd.max(self.smss);
                    self.phase = Phase::Recovery { recover, partial_seen: true };
                    Action::RetransmitHole { restart_timer: !partial_seen }
                }
            }
            Phase::Loss { recover, .. } => {
                self.grow(acked, self.smss);
                if snd_una.ge(recover) {
                    self.phase = Phase::Open;
                }
                Action::None
            }
            Phase::Open => {
                self.grow(acked, 2 * self.smss);
                Action::None
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

    fn on_dup_ack(&mut self, count: u32, snd_una: SeqNumber, snd_nxt: SeqNumber) -> Action {
        match self.phase {
            Phase::Recovery { .. } => {
                // Each further duplicate means a segment has left the network (RFC 5681 §3.2 step 4).
                self.cwnd = self.cwnd.saturating_add(self.smss);
                Action::None
            }
            Phase::Loss { recover, .. } if snd_una.lt(recover) => Action::None,
            Phase::Open | Phase::Loss { .. } if count >= DUP_ACK_THRESHOLD => {
                // RFC 5681 §3.2 steps 2-3; RFC 6582 §3.2 step 2 records `recover`.
                self.ssthresh = self.loss_threshold(snd_una, snd_nxt);
                self.cwnd = self.ssthresh.saturating_add(3 * self.smss);
                self.bytes_acked = 0;
                self.phase = Phase::Recovery { recover: snd_nxt, partial_seen: false };
                Action::FastRetransmit
            }
            Phase::Open | Phase::Loss { .. } => Action::None,
        }
    }

    fn on_timeout(&mut self, snd_una: SeqNumber, snd_nxt: SeqNumber) {
        let (recover, repeated) = match self.phase {
            Phase::Loss { recover, una } => (recover.max(snd_nxt), una == snd_una),
            Phase::Recovery { recover, .. } => (recover.max(snd_nxt), false),
            Phase::Open => (snd_nxt, false),
        };
        // A second timeout of the same segment keeps ssthresh (RFC 5681 §3.1, after eq. (4)).
        if !repeated {
            self.ssthresh = self.loss_threshold(snd_una, snd_nxt);
        }
        self.cwnd = self.smss;
        self.bytes_acked = 0;
        self.phase = Phase::Loss { recover, una: snd_una };
    }

    fn on_idle_restart(&mut self) {
        self.cwnd = self.cwnd.min(initial_window(self.smss));
    }

    /// `max(FlightSize / 2, 2*SMSS)` (RFC 5681 eq. (4)).
    fn loss_threshold(&self, snd_una: SeqNumber, snd_nxt: SeqNumber) -> u32 {
        (bytes(snd_nxt - snd_una) / 2).max(2 * self.smss)
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
        fn ack(&mut self, bytes: usize) -> Action {
            self.una += bytes;
            assert!(self.una.le(self.nxt));
            self.cc.on_ack(bytes, self.una, self.nxt)
        }
        fn dup(&mut self, count: u32) -> Action {
            self.cc.on_dup_ack(count, self.una, self.nxt)
        }
        /// Acks the whole flight one segment at a time (one RTT).
        fn round(&mut self) {
            self.fill();
            while self.una != self.nxt {
                assert_eq!(self.ack(M), Action::None);
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
        assert_eq!(s.ack(M), Action::None);
        assert_eq!(s.cc.cwnd(), 11 * MSS);
        // A stretch ACK for three segments: +2 SMSS at most (RFC 3465, L = 2).
        let _ = s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 13 * MSS);
        // A sub-segment ACK counts its bytes only.
        let _ = s.ack(100);
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
    fn congestion_avoidance_adds_one_segment_per_rtt() {
        let mut s = Sender::new(u32::MAX - 5000);
        s.fill();
        // Enter fast recovery (ssthresh = 5 SMSS), send 5 new segments under the inflated window, and leave it
        // with a full ACK: cwnd = min(ssthresh, FlightSize + SMSS) = ssthresh.
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        assert_eq!(s.cc.ssthresh(), 5 * MSS);
        s.nxt += 5 * M;
        let _ = s.ack(10 * M);
        assert_eq!(s.cc.cwnd(), 5 * MSS);
        let mut windows = Vec::new();
        for _ in 0..5 {
            s.round();
            windows.push(s.cc.cwnd() / MSS);
        }
        assert_eq!(windows, [6, 7, 8, 9, 10]);
        // Within a round the window grows only when a full cwnd has been acknowledged.
        s.fill();
        for _ in 0..9 {
            let _ = s.ack(M);
        }
        assert_eq!(s.cc.cwnd(), 10 * MSS);
        let _ = s.ack(M);
        assert_eq!(s.cc.cwnd(), 11 * MSS);
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        let mut s = Sender::new(0);
        s.fill();
        s.cc.on_timeout(s.una, s.nxt); // ssthresh = 5 SMSS, cwnd = 1 SMSS
                                       // Until `recover` (all ten segments) is acknowledged, slow start counts one SMSS per ACK.
        let _ = s.ack(M);
        let _ = s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 3 * MSS);
        let _ = s.ack(6 * M);
        assert_eq!(s.cc.cwnd(), 4 * MSS);
        // Then two per ACK again, up to ssthresh and no further.
        assert_eq!(s.fill(), 4);
        let _ = s.ack(2 * M);
        assert_eq!(s.cc.cwnd(), 5 * MSS, "capped at ssthresh");
        let _ = s.ack(2 * M);
        assert_eq!(s.cc.cwnd(), 5 * MSS, "congestion avoidance");
    }

    #[test]
    fn three_dup_acks_fast_retransmit_and_inflate() {
        let mut s = Sender::new(7);
        assert_eq!(s.fill(), 10);
        assert_eq!(s.dup(1), Action::None);
        assert_eq!(s.dup(2), Action::None);
        assert_eq!(s.cc.cwnd(), 10 * MSS);
        assert_eq!(s.dup(3), Action::FastRetransmit);
        assert!(s.cc.in_recovery());
        // ssthresh = FlightSize / 2 = 5 SMSS; cwnd = ssthresh + 3 SMSS.
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd()), (5 * MSS, 8 * MSS));
        assert_eq!(s.dup(4), Action::None);
        assert_eq!(s.dup(5), Action::None);
        assert_eq!(s.cc.cwnd(), 10 * MSS);
        // More duplicates than the threshold never retransmit again.
        assert!(!s.dup(6).retransmit());
        // Full ACK: cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS) = min(5, 1 + 1) SMSS.
        assert_eq!(s.ack(10 * M), Action::None);
        assert!(!s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), 2 * MSS);
        // With data still in flight at the full ACK, the window comes back to ssthresh.
        let mut s = Sender::new(7);
        s.fill();
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        s.nxt += 8 * M; // new data sent under the inflated window
        assert_eq!(s.ack(10 * M), Action::None);
        assert_eq!(s.cc.cwnd(), 5 * MSS);
    }

    #[test]
    fn partial_acks_retransmit_each_hole_and_deflate() {
        // Segments 0, 3 and 6 of 10 lost; the flight wraps around zero.
        let mut s = Sender::new(u32::MAX - 2 * MSS);
        s.fill();
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        let recover_cwnd = s.cc.cwnd();
        assert_eq!(recover_cwnd, 8 * MSS);
        // The retransmission of 0 brings an ACK for 0..3: partial. Deflate by 3, add back 1.
        assert_eq!(s.ack(3 * M), Action::RetransmitHole { restart_timer: true });
        assert!(s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), 6 * MSS);
        let _ = s.dup(1);
        assert_eq!(s.cc.cwnd(), 7 * MSS);
        // The next partial ACK does not restart the timer. Less than one SMSS acknowledged: nothing added back.
        assert_eq!(s.ack(M / 2), Action::RetransmitHole { restart_timer: false });
        assert_eq!(s.cc.cwnd(), 7 * MSS - MSS / 2);
        assert_eq!(s.ack(M / 2 + 2 * M), Action::RetransmitHole { restart_timer: false });
        assert_eq!(s.cc.cwnd(), 5 * MSS);
        // Full ACK of everything up to `recover`.
        assert_eq!(s.ack(4 * M), Action::None);
        assert!(!s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), 2 * MSS);
        // A later loss is a new recovery: the first partial ACK restarts the timer again.
        s.cc = Congestion::new_reno(MSS);
        s.fill();
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        assert_eq!(s.ack(M), Action::RetransmitHole { restart_timer: true });
    }

    #[test]
    fn partial_ack_never_deflates_below_one_segment() {
        let mut s = Sender::new(0);
        s.fill();
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        assert_eq!(s.cc.cwnd(), 8 * MSS);
        for _ in 0..9 {
            assert!(s.ack(999).retransmit());
        }
        assert_eq!(s.cc.cwnd(), MSS);
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
        let _ = s.ack(3 * M);
        assert_eq!(s.cc.cwnd(), 2 * MSS);
        // Duplicate ACKs below `recover` do not start fast retransmit (RFC 6582 §3.2 step 2).
        for i in 1..=5 {
            assert_eq!(s.dup(i), Action::None);
        }
        assert_eq!((s.cc.ssthresh(), s.cc.cwnd()), (20 * MSS, 2 * MSS));
        // A different segment timing out is a new loss: ssthresh from the current flight (37 SMSS -> 18.5).
        s.cc.on_timeout(s.una, s.nxt);
        assert_eq!(s.cc.ssthresh(), 37 * MSS / 2);
        // Once `recover` is acknowledged, three duplicates are a new loss.
        let _ = s.ack(37 * M);
        s.nxt += 4 * M;
        assert_eq!(s.dup(3), Action::FastRetransmit);
        assert_eq!(s.cc.ssthresh(), 2 * MSS);
    }

    #[test]
    fn timeout_during_recovery_leaves_it() {
        let mut s = Sender::new(0);
        s.fill();
        for i in 1..=3 {
            let _ = s.dup(i);
        }
        assert!(s.cc.in_recovery());
        s.cc.on_timeout(s.una, s.nxt);
        assert!(!s.cc.in_recovery());
        assert_eq!(s.cc.cwnd(), MSS);
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
        assert_eq!(s.cc.on_ack(0, s.una, s.nxt), Action::None);
        assert_eq!(s.cc, before);
    }

    proptest! {
        /// Any sequence of events keeps cwnd at least one SMSS, ssthresh at least two after a loss, and never
        /// panics, whatever the (even inconsistent) sequence numbers.
        #[test]
        fn invariants_hold(
            smss in 1u32..9000,
            events in proptest::collection::vec((0u8..3, any::<u32>(), any::<u32>(), 0usize..100_000, 1u32..8), 1..200),
        ) {
            let mut cc = Congestion::new_reno(smss);
            for (kind, una, nxt, acked, count) in events {
                let (una, nxt) = (SeqNumber(una), SeqNumber(nxt));
                match kind {
                    0 => { let _ = cc.on_ack(acked, una, nxt); }
                    1 => { let _ = cc.on_dup_ack(count, una, nxt); }
                    _ => cc.on_timeout(una, nxt),
                }
                prop_assert!(cc.cwnd() >= smss);
                prop_assert!(cc.ssthresh() >= 2 * smss);
            }
        }
    }
}
