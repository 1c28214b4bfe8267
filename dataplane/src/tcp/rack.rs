//! The send side's loss detection: a record per segment in flight (the scoreboard), SACK and D-SACK marking
//! (RFC 2018, RFC 2883), RACK-TLP's time-based loss detection (RFC 8985) and RFC 6675's `pipe`.
//!
//! Heads up: read RFC 8985 §6 (RACK: a segment is lost once a segment sent after it has been delivered and
//! `RACK.rtt + RACK.reo_wnd` has passed since it was sent) and §7 (TLP), RFC 6675 §2-§5 (`pipe`, NextSeg) and
//! RFC 2883 §4 (recognising a D-SACK).
//!
//! Why one record per segment: RACK asks of every unacknowledged segment when it was last sent, and a lost
//! retransmission is found the same way as a lost original (no retransmission timeout). IX connections hold no
//! send buffer (the app's memory is the buffer), so this ring is the only per-segment state: 12 bytes a segment,
//! grown to the largest flight the connection has had (at most [`MAX_SEGMENTS`]) and kept for reuse, so a
//! connection in steady state does not allocate. An idle connection that never sent has no ring at all.
//!
//! Choices:
//! - Send times are microseconds truncated to 32 bits and compared with wrapping arithmetic (exact for 35 min,
//!   longer than a connection survives unanswered retransmissions).
//! - A SACK block marks only records it covers whole (our peers SACK whole segments; a partial cover would be
//!   retransmitted, which is harmless).
//! - `RACK.min_RTT` is the least sample of the connection's life (RFC 8985 allows a windowed minimum; paths
//!   here do not lengthen for good).
//! - Records are kept in sequence order; those never retransmitted are also in send order, which lets the loss
//!   scan stop at the first of them sent after the RACK segment.
use std::collections::VecDeque;

use super::conn::{seq_ge, seq_gt, seq_le, seq_lt};

/// Most segments in flight per connection (48 KiB of records): output of new data waits when the ring is full.
pub const MAX_SEGMENTS: usize = 4096;
/// Segments SACKed above a hole that make it lost without waiting for the reordering window, when no
/// reordering has been seen (RFC 8985 §6.2 step 4, RFC 6675's DupThresh).
pub const DUP_THRESH: u32 = 3;
/// Losses recoveries a reordering window widened by D-SACKs lasts (RFC 8985 §6.2 step 4).
const REO_WND_PERSIST: u8 = 16;

const SACKED: u8 = 1;
/// Marked lost and not retransmitted since.
const LOST: u8 = 2;
/// Sent more than once.
const RETRANSMITTED: u8 = 4;
/// Carries our FIN (one unit of sequence space after the data).
const FIN: u8 = 8;

/// One segment in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TxSeg {
    seq: u32,
    len: u16,
    flags: u8,
    /// When it was last sent (µs, truncated).
    sent: u32,
}

impl TxSeg {
    fn space(&self) -> u32 {
        u32::from(self.len) + u32::from(self.flags & FIN != 0)
    }
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.space())
    }
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// `t1` is later than `t2` (µs clock, wrapping).
fn time_after(t1: u32, t2: u32) -> bool {
    (t1.wrapping_sub(t2) as i32) > 0
}

/// RACK's order of sending: by time, ties (one burst) by sequence (RFC 8985 §6.2 `RACK_sent_after`).
fn sent_after(t1: u32, end1: u32, t2: u32, end2: u32) -> bool {
    time_after(t1, t2) || (t1 == t2 && seq_gt(end1, end2))
}

/// A segment to (re)send: sequence number, payload bytes, FIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToSend {
    /// First sequence number.
    pub seq: u32,
    /// Payload bytes.
    pub len: usize,
    /// Whether it carries the FIN.
    pub fin: bool,
}

/// What an ACK told the scoreboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Some record was newly SACKed.
    pub newly_sacked: bool,
    /// The ACK carried a D-SACK (a segment arrived twice).
    pub dsack: bool,
    /// An RTT sample (µs) from the most recently sent record it delivered that was sent only once.
    pub rtt_sample: Option<u32>,
}

/// The scoreboard and RACK-TLP state of one connection.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    segs: VecDeque<TxSeg>,
    /// Sequence space of SACKed records.
    sacked: u32,
    /// Sequence space of records marked lost and not retransmitted since.
    lost: u32,
    /// RACK.xmit_ts, RACK.end_seq, RACK.rtt of the most recently sent record delivered; `rack_valid` once one
    /// was.
    rack_sent: u32,
    rack_end: u32,
    rack_rtt: u32,
    rack_valid: bool,
    /// Highest end of a delivered record (RACK.fack).
    fack: u32,
    /// RACK.min_RTT, µs (`u32::MAX` until the first sample).
    min_rtt: u32,
    /// A record below `fack` was delivered without a retransmission: the path reorders.
    reordering_seen: bool,
    reo_wnd_mult: u8,
    reo_wnd_persist: u8,
    /// `snd_max` when the reordering window last widened: once per round trip (RFC 8985 §6.2 step 4).
    dsack_round: Option<u32>,
    /// The tail loss probe outstanding: the `snd_max` it was sent at, and whether it was a retransmission.
    tlp: Option<(u32, bool)>,
}

impl Scoreboard {
    /// An empty scoreboard (allocates nothing until the first segment).
    pub fn new() -> Self {
        Scoreboard { min_rtt: u32::MAX, reo_wnd_mult: 1, ..Default::default() }
    }

    /// Whether no more segments may be sent until some are acknowledged.
    pub fn is_full(&self) -> bool {
        self.segs.len() >= MAX_SEGMENTS
    }

    /// Records in flight.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Sequence space SACKed above the cumulative ACK.
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked
    }

    /// Sequence space marked lost and not yet retransmitted.
    pub fn lost_bytes(&self) -> u32 {
        self.lost
    }

    /// RFC 6675 `pipe` for `outstanding` (= `snd_max - snd_una`, which the records cover): what is presumed
    /// still in the network.
    pub fn pipe(&self, outstanding: u32) -> u32 {
        outstanding.saturating_sub(self.sacked + self.lost)
    }

    /// RACK.min_RTT, once sampled (µs).
    pub fn min_rtt(&self) -> Option<u32> {
        (self.min_rtt != u32::MAX).then_some(self.min_rtt)
    }

    /// Whether the path has been seen to reorder.
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }

    /// Frees the ring (the connection is closing: nothing more will be sent).
    pub fn clear(&mut self) {
        self.segs = VecDeque::new();
        self.sacked = 0;
        self.lost = 0;
        self.tlp = None;
    }

    /// New data (and/or the FIN) went out for the first time at `seq`, right after the last record.
    pub fn on_send(&mut self, seq: u32, len: usize, fin: bool, now: u32) {
        let len = u16::try_from(len).unwrap_or(u16::MAX);
        self.segs.push_back(TxSeg { seq, len, flags: if fin { FIN } else { 0 }, sent: now });
    }

    fn find(&self, seq: u32) -> Option<usize> {
        let base = self.segs.front()?.seq;
        let i = self.segs.partition_point(|s| s.seq.wrapping_sub(base) < seq.wrapping_sub(base));
        (self.segs.get(i)?.seq == seq).then_some(i)
    }

    /// The record starting at `seq` was sent again now.
    pub fn on_retransmit(&mut self, seq: u32, now: u32) {
        let Some(i) = self.find(seq) else { return };
        let s = &mut self.segs[i];
        if s.has(LOST) {
            self.lost -= s.space();
        }
        s.flags = (s.flags & !LOST) | RETRANSMITTED;
        s.sent = now;
    }

    /// The first record at or above `from` that is marked lost (RFC 6675 NextSeg rule 1).
    pub fn next_lost(&self, from: u32) -> Option<ToSend> {
        if self.lost == 0 {
            return None;
        }
        let base = self.segs.front()?.seq;
        let start = self.segs.partition_point(|s| s.end().wrapping_sub(base) <= from.wrapping_sub(base));
        self.segs.range(start..).find(|s| s.has(LOST)).map(|s| ToSend {
            seq: s.seq,
            len: usize::from(s.len),
            fin: s.has(FIN),
        })
    }

    /// The highest record not SACKed (what a tail loss probe resends).
    pub fn last_unsacked(&self) -> Option<ToSend> {
        self.segs.iter().rev().find(|s| !s.has(SACKED)).map(|s| ToSend {
            seq: s.seq,
            len: usize::from(s.len),
            fin: s.has(FIN),
        })
    }

    fn mark_lost(&mut self, i: usize) -> bool {
        let s = &mut self.segs[i];
        if s.has(SACKED) || s.has(LOST) {
            return false;
        }
        s.flags |= LOST;
        self.lost += s.space();
        true
    }

    /// The retransmission timer expired: everything not SACKed is lost (RFC 8985 §6.3, as RFC 5681 resends
    /// from `snd_una`). Ends any probe.
    pub fn mark_all_lost(&mut self) {
        for i in 0..self.segs.len() {
            self.mark_lost(i);
        }
        self.tlp = None;
    }

    /// Fast retransmit without SACK (third duplicate ACK, or a partial ACK in NewReno recovery): the first
    /// record is lost. Returns whether it was newly marked.
    pub fn mark_head_lost(&mut self) -> bool {
        !self.segs.is_empty() && self.mark_lost(0)
    }

    /// Applies a cumulative ACK and SACK blocks (already limited to what SACK was negotiated for). `snd_max` is
    /// the highest number sent; `now` the µs clock.
    pub fn on_ack(&mut self, ack: u32, sack: &[Option<(u32, u32)>; 3], snd_max: u32, now: u32) -> AckOutcome {
        let mut out = AckOutcome::default();
        // RFC 2883 §4: a first block below the cumulative ACK, or inside the second block, reports a duplicate.
        if let Some((l, r)) = sack[0] {
            let inside_second = sack[1].is_some_and(|(l2, r2)| seq_le(l2, l) && seq_le(r, r2));
            out.dsack = seq_lt(l, r) && (seq_le(r, ack) || inside_second);
        }
        let mut newest: Option<TxSeg> = None;
        // Cumulative part.
        while let Some(&s) = self.segs.front() {
            if seq_le(s.end(), ack) {
                self.segs.pop_front();
                self.forget(&s);
                if !s.has(SACKED) {
                    self.delivered(&s, now, &mut newest);
                }
            } else if seq_lt(s.seq, ack) {
                // Part of the record: keep the rest (its flags and send time).
                let cut = ack.wrapping_sub(s.seq);
                let front = &mut self.segs[0];
                front.seq = ack;
                front.len = front.len.saturating_sub(u16::try_from(cut).unwrap_or(u16::MAX));
                if front.has(SACKED) {
                    self.sacked -= cut.min(self.sacked);
                }
                if front.has(LOST) {
                    self.lost -= cut.min(self.lost);
                }
                break;
            } else {
                break;
            }
        }
        // Selective part: whole records inside a block above the cumulative ACK and below `snd_max`.
        for &(l, r) in sack.iter().flatten() {
            if !seq_lt(l, r) || !seq_gt(r, ack) || seq_gt(r, snd_max) {
                continue;
            }
            let Some(base) = self.segs.front().map(|s| s.seq) else { break };
            let start = self.segs.partition_point(|s| s.seq.wrapping_sub(base) < l.wrapping_sub(base));
            for i in start..self.segs.len() {
                let s = self.segs[i];
                if seq_gt(s.end(), r) {
                    break;
                }
                if s.has(SACKED) {
                    continue;
                }
                if s.has(LOST) {
                    self.lost -= s.space();
                }
                self.segs[i].flags = (s.flags & !LOST) | SACKED;
                self.sacked += s.space();
                out.newly_sacked = true;
                self.delivered(&s, now, &mut newest);
            }
        }
        if let Some(s) = newest {
            if !s.has(RETRANSMITTED) {
                out.rtt_sample = Some(now.wrapping_sub(s.sent));
            }
        }
        if let Some((end, _)) = self.tlp {
            if seq_ge(ack, end) {
                // `tlp_outcome` has read it by now if it mattered.
                self.tlp = None;
            }
        }
        out
    }

    fn forget(&mut self, s: &TxSeg) {
        if s.has(SACKED) {
            self.sacked -= s.space().min(self.sacked);
        }
        if s.has(LOST) {
            self.lost -= s.space().min(self.lost);
        }
    }

    /// RFC 8985 §6.2 steps 1-3 for one newly delivered record.
    fn delivered(&mut self, s: &TxSeg, now: u32, newest: &mut Option<TxSeg>) {
        let first = !self.rack_valid;
        let rtt = now.wrapping_sub(s.sent);
        if s.has(RETRANSMITTED) {
            // The ACK may answer the original: a sample shorter than any seen cannot be the retransmission's.
            if self.min_rtt == u32::MAX || rtt < self.min_rtt {
                return;
            }
        } else {
            self.min_rtt = self.min_rtt.min(rtt);
            if self.rack_valid && seq_lt(s.end(), self.fack) {
                self.reordering_seen = true;
            }
        }
        if !self.rack_valid || sent_after(s.sent, s.end(), self.rack_sent, self.rack_end) {
            self.rack_sent = s.sent;
            self.rack_end = s.end();
            self.rack_rtt = rtt;
            self.rack_valid = true;
        }
        if newest.is_none_or(|n| sent_after(s.sent, s.end(), n.sent, n.end())) {
            *newest = Some(*s);
        }
        if first || seq_gt(s.end(), self.fack) {
            self.fack = s.end();
        }
    }

    /// A D-SACK arrived: widen the reordering window, at most once per round trip (`snd_una` must have passed
    /// the `snd_max` of the last widening).
    pub fn on_dsack(&mut self, snd_una: u32, snd_max: u32) {
        if self.dsack_round.is_some_and(|end| seq_lt(snd_una, end)) {
            return;
        }
        self.dsack_round = Some(snd_max);
        self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1).min(64);
        self.reo_wnd_persist = REO_WND_PERSIST;
    }

    /// A loss recovery ended: a widened window lasts [`REO_WND_PERSIST`] of them.
    pub fn on_recovery_end(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// RACK.reo_wnd (RFC 8985 §6.2 step 4), µs: none while the path has not reordered and the loss is plain
    /// (in recovery, or [`DUP_THRESH`] segments SACKed); else a quarter of the minimum RTT per D-SACKed round,
    /// at most SRTT.
    pub fn reo_wnd(&self, srtt: u32, in_recovery: bool, smss: u32) -> u32 {
        if !self.reordering_seen && (in_recovery || self.sacked >= DUP_THRESH.saturating_mul(smss)) {
            return 0;
        }
        if self.min_rtt == u32::MAX {
            return 0;
        }
        (u32::from(self.reo_wnd_mult).saturating_mul(self.min_rtt / 4)).min(srtt)
    }

    /// RACK's loss detection (RFC 8985 §6.2 step 5): marks lost every record sent before the RACK record that
    /// has waited `RACK.rtt + reo_wnd`. Returns whether any was newly marked, and how long until the next record
    /// would be (the reordering timer), µs.
    pub fn detect_loss(&mut self, now: u32, reo_wnd: u32) -> (bool, Option<u32>) {
        if !self.rack_valid {
            return (false, None);
        }
        let (mut marked, mut wait) = (false, None::<u32>);
        let limit = self.rack_rtt.saturating_add(reo_wnd);
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.has(SACKED) || s.has(LOST) {
                continue;
            }
            if !sent_after(self.rack_sent, self.rack_end, s.sent, s.end()) {
                if !s.has(RETRANSMITTED) {
                    break; // every later record was sent later still
                }
                continue;
            }
            let waited = now.wrapping_sub(s.sent);
            if waited >= limit {
                marked |= self.mark_lost(i);
            } else {
                let left = limit - waited;
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
        }
        (marked, wait)
    }

    /// A tail loss probe went out: `snd_max` then, and whether it resent data (rather than sending new).
    pub fn on_probe(&mut self, snd_max: u32, retransmission: bool) {
        self.tlp = Some((snd_max, retransmission));
    }

    /// Whether a probe is outstanding (at most one per episode, RFC 8985 §7.2).
    pub fn probe_outstanding(&self) -> bool {
        self.tlp.is_some()
    }

    /// RFC 8985 §7.4: an ACK reached past a probe that resent data, with no D-SACK saying the original had
    /// arrived: the probe repaired a loss, which congestion control must hear of. Call before [`on_ack`].
    ///
    /// [`on_ack`]: Scoreboard::on_ack
    pub fn probe_repaired_loss(&self, ack: u32, dsack: bool) -> bool {
        matches!(self.tlp, Some((end, true)) if seq_ge(ack, end)) && !dsack
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSS: u32 = 1000;
    const NONE: [Option<(u32, u32)>; 3] = [None; 3];

    /// `n` segments from `start`, sent at `t`, `t + 1`, ... µs.
    fn flight(start: u32, n: u32, t: u32) -> Scoreboard {
        let mut sb = Scoreboard::new();
        for i in 0..n {
            sb.on_send(start.wrapping_add(i * MSS), MSS as usize, false, t + i);
        }
        sb
    }

    fn sack(l: u32, r: u32) -> [Option<(u32, u32)>; 3] {
        [Some((l, r)), None, None]
    }

    #[test]
    fn cumulative_and_selective_acks_keep_pipe() {
        let mut sb = flight(u32::MAX - 1500, 10, 0); // wraps around zero
        let base = u32::MAX - 1500;
        let max = base.wrapping_add(10 * MSS);
        let out = sb.on_ack(base.wrapping_add(2 * MSS), &NONE, max, 100);
        assert_eq!(out.rtt_sample, Some(99));
        assert_eq!(sb.len(), 8);
        let out = sb.on_ack(
            base.wrapping_add(2 * MSS),
            &sack(base.wrapping_add(4 * MSS), base.wrapping_add(6 * MSS)),
            max,
            110,
        );
        assert!(out.newly_sacked && !out.dsack);
        assert_eq!(sb.sacked_bytes(), 2 * MSS);
        assert_eq!(sb.pipe(8 * MSS), 6 * MSS);
        // A partial cumulative ACK inside a record trims it.
        let out = sb.on_ack(base.wrapping_add(2 * MSS + 300), &NONE, max, 120);
        assert_eq!(out, AckOutcome::default());
        assert_eq!(sb.next_lost(base), None);
        assert_eq!(sb.len(), 8);
    }

    #[test]
    fn rack_marks_holes_below_delivered_data_and_waits_out_reordering() {
        let mut sb = flight(0, 10, 0);
        // Segment 5 SACKed at t = 1000: segments 0-4 were sent before it.
        sb.on_ack(0, &sack(5 * MSS, 6 * MSS), 10 * MSS, 1000);
        // No reordering seen, one segment SACKed: a quarter of the min RTT (995 µs) as reordering window.
        let reo = sb.reo_wnd(2000, false, MSS);
        assert_eq!(reo, 995 / 4);
        let (marked, wait) = sb.detect_loss(1000, reo);
        assert!(!marked);
        // RACK.rtt = 995: segment 0 (sent at 0) is lost at 0 + 995 + 248 = 1243, segment 1 at 1244, ...
        assert_eq!(wait, Some(1243 - 1000));
        let (marked, wait) = sb.detect_loss(1243, reo);
        assert!(marked);
        assert_eq!(wait, Some(1));
        let (marked, wait) = sb.detect_loss(1247, reo);
        assert!(marked);
        assert_eq!(wait, None);
        assert_eq!(sb.lost_bytes(), 5 * MSS);
        assert_eq!(sb.next_lost(0), Some(ToSend { seq: 0, len: MSS as usize, fin: false }));
        assert_eq!(sb.next_lost(MSS).map(|s| s.seq), Some(MSS));
        // Retransmit 0 and 1; the retransmission of 0 is lost, 1's arrives (SACKed), so RACK marks 0 again.
        sb.on_retransmit(0, 1300);
        sb.on_retransmit(MSS, 1301);
        assert_eq!(sb.lost_bytes(), 3 * MSS);
        sb.on_ack(0, &sack(MSS, 2 * MSS), 10 * MSS, 2400);
        let (marked, _) = sb.detect_loss(2400, 0);
        assert!(marked);
        assert_eq!(sb.next_lost(0).map(|s| s.seq), Some(0));
    }

    #[test]
    fn three_sacked_segments_mean_loss_at_once_unless_the_path_reorders() {
        let mut sb = flight(0, 10, 0);
        sb.on_ack(0, &sack(MSS, 4 * MSS), 10 * MSS, 500);
        assert_eq!(sb.reo_wnd(1000, false, MSS), 0);
        assert!(sb.detect_loss(500, 0).0);
        // Reordering: a segment below the highest delivered one arrives without a retransmission.
        let mut sb = flight(0, 10, 0);
        sb.on_ack(0, &sack(2 * MSS, 3 * MSS), 10 * MSS, 500);
        sb.on_ack(0, &sack(MSS, 3 * MSS), 10 * MSS, 501);
        assert!(sb.reordering_seen());
        sb.on_ack(0, &sack(MSS, 5 * MSS), 10 * MSS, 502);
        assert!(sb.reo_wnd(1000, true, MSS) > 0);
    }

    #[test]
    fn dsacks_widen_the_window_once_per_round_and_expire() {
        let mut sb = flight(0, 4, 0);
        sb.on_ack(MSS, &NONE, 4 * MSS, 400);
        sb.on_ack(2 * MSS, &sack(2 * MSS, 3 * MSS), 4 * MSS, 401); // reordering
        let out = sb.on_ack(2 * MSS, &sack(0, MSS), 4 * MSS, 402);
        assert!(out.dsack);
        let one = sb.reo_wnd(10_000, false, MSS);
        sb.on_dsack(2 * MSS, 4 * MSS);
        assert_eq!(sb.reo_wnd(10_000, false, MSS), 2 * one);
        sb.on_dsack(2 * MSS, 4 * MSS); // same round
        assert_eq!(sb.reo_wnd(10_000, false, MSS), 2 * one);
        sb.on_dsack(4 * MSS, 5 * MSS);
        assert_eq!(sb.reo_wnd(10_000, false, MSS), 3 * one);
        assert_eq!(sb.reo_wnd(one, false, MSS), one, "at most SRTT");
        for _ in 0..REO_WND_PERSIST {
            sb.on_recovery_end();
        }
        assert_eq!(sb.reo_wnd(10_000, false, MSS), one);
        // A D-SACK inside the second block counts too.
        let out = sb.on_ack(4 * MSS, &[Some((100, 200)), Some((0, 300)), None], 4 * MSS, 500);
        assert!(out.dsack);
    }

    #[test]
    fn timeout_marks_all_but_sacked_and_fin_counts_one() {
        let mut sb = flight(0, 3, 0);
        sb.on_send(3 * MSS, 0, true, 3);
        sb.on_ack(0, &sack(MSS, 2 * MSS), 3 * MSS + 1, 10);
        sb.mark_all_lost();
        assert_eq!(sb.lost_bytes(), 2 * MSS + 1);
        assert_eq!(sb.pipe(3 * MSS + 1), 0);
        assert_eq!(sb.last_unsacked(), Some(ToSend { seq: 3 * MSS, len: 0, fin: true }));
        sb.on_ack(3 * MSS + 1, &NONE, 3 * MSS + 1, 20);
        assert!(sb.is_empty());
        assert_eq!((sb.lost_bytes(), sb.sacked_bytes()), (0, 0));
    }

    #[test]
    fn probe_outcome() {
        let mut sb = flight(0, 2, 0);
        sb.on_probe(2 * MSS, true);
        assert!(sb.probe_outstanding());
        assert!(!sb.probe_repaired_loss(MSS, false));
        assert!(sb.probe_repaired_loss(2 * MSS, false));
        assert!(!sb.probe_repaired_loss(2 * MSS, true));
        sb.on_ack(2 * MSS, &NONE, 2 * MSS, 10);
        assert!(!sb.probe_outstanding());
    }

    proptest! {
        /// Whatever the peer's ACKs and SACK blocks (even nonsense), the counters match the records and nothing
        /// panics.
        #[test]
        fn counters_match_records(
            start in any::<u32>(),
            n in 1u32..60,
            events in proptest::collection::vec((0u8..5, any::<u32>(), any::<u32>(), any::<u32>()), 1..100),
        ) {
            let mut sb = flight(start, n, 0);
            let max = start.wrapping_add(n * MSS);
            let mut una = start;
            for (t, (kind, a, b, c)) in events.into_iter().enumerate() {
                let now = 1000 + t as u32;
                match kind {
                    0 => {
                        let ack = una.wrapping_add(a % (max.wrapping_sub(una) + 1));
                        sb.on_ack(ack, &NONE, max, now);
                        una = ack;
                    }
                    1 => { sb.on_ack(una, &[Some((a, b)), Some((b, c)), Some((start.wrapping_add(a % (n * MSS)), max))], max, now); }
                    2 => { sb.detect_loss(now, a % 2000); }
                    3 => { if let Some(s) = sb.next_lost(una) { sb.on_retransmit(s.seq, now); } }
                    _ => { sb.mark_all_lost(); }
                }
                let (mut sacked, mut lost) = (0, 0);
                for s in &sb.segs {
                    prop_assert!(!(s.has(SACKED) && s.has(LOST)));
                    if s.has(SACKED) { sacked += s.space(); }
                    if s.has(LOST) { lost += s.space(); }
                }
                prop_assert_eq!((sb.sacked, sb.lost), (sacked, lost));
                prop_assert!(sb.pipe(max.wrapping_sub(una)) <= max.wrapping_sub(una));
            }
        }
    }
}
