//! An in-memory Ethernet link between two [`NicQueue`]s in one process, with seeded, deterministic faults.
//!
//! [`WireLink::pair`] returns two [`WireEnd`]s; a frame one end transmits is copied into the link and comes out
//! of the other end's [`receive`](NicQueue::receive) once it is due. Each direction is a bounded FIFO of
//! fixed-size slots allocated when the link is built, so no frame allocates. The link is single-threaded
//! (`Rc<RefCell<..>>`) and runs on a simulated clock that the test drives with [`WireEnd::advance`]: nothing
//! here reads the real clock, so a run is a pure function of the seed and the calls made.
//!
//! Faults, drawn per frame from a splitmix64 generator per direction, in this order:
//! 1. *oversize*: a frame longer than the MTU plus the 14-byte Ethernet header is dropped (`tx_errors`);
//! 2. *loss* with probability [`FaultConfig::loss`];
//! 3. *corruption* with probability [`FaultConfig::corrupt`]: one random bit of one random byte flips;
//! 4. *delay*: the frame is due [`FaultConfig::delay`] plus a uniform `0..=`[`FaultConfig::jitter`] after it was
//!    sent, but never before the frame sent ahead of it (jitter does not reorder; reordering is its own fault);
//! 5. *reordering* with probability [`FaultConfig::reorder`]: the frame is held back and queued right after the
//!    next frame sent, or, if none follows, once [`FaultConfig::reorder_timeout`] has passed since it was due;
//! 6. *duplication* with probability [`FaultConfig::duplicate`]: a second copy follows the first;
//! 7. *capacity*: a frame that finds [`FaultConfig::capacity`] frames already queued is dropped (the receiving
//!    end's `rx_dropped`).
//!
//! A frame "completes" as soon as [`transmit`](NicQueue::transmit) has copied it: the mbuf goes straight back to
//! the sender's pool, and a receive copies into a fresh mbuf of the receiver's pool, so the two ends may use
//! different pools and neither holds frames ([`frames_held`](NicQueue::frames_held) is 0).
use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::{Batch, NicCaps, NicQueue, NicStats};
use crate::mbuf::{MbufPool, MAX_DATA};
use crate::time::{Duration, Instant};

/// Default MAC of the first end of a pair (locally administered).
pub const DEFAULT_MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Default MAC of the second end of a pair (locally administered).
pub const DEFAULT_MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Length of the Ethernet header a frame may carry on top of the MTU.
const ETH_HEADER_LEN: usize = 14;

/// What one direction of a link does to the frames crossing it. Probabilities are clamped to `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back and delivered after the next one.
    pub reorder: f64,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// How long a held-back frame waits for a frame to overtake it before it is delivered anyway.
    pub reorder_timeout: Duration,
    /// Frames the direction holds at most (in flight plus waiting to be received); beyond it frames drop.
    pub capacity: usize,
    /// L3 MTU: frames may be up to `mtu + 14` bytes (capped at what an mbuf holds).
    pub mtu: u16,
}

impl Default for FaultConfig {
    /// A perfect link: no faults, no delay, 256 frames of capacity, MTU 1500.
    fn default() -> Self {
        FaultConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_timeout: Duration::from_millis(1),
            capacity: 256,
            mtu: 1500,
        }
    }
}

/// Counts of the faults a direction injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireFaultStats {
    /// Frames lost.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Frames delivered behind a frame sent after them (held back and overtaken; a held frame that times out
    /// without being overtaken does not count).
    pub reordered: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
    /// Frames given a non-zero delay.
    pub delayed: u64,
    /// Frames (copies included) dropped because the direction was at capacity.
    pub overflowed: u64,
    /// Frames dropped for exceeding the MTU.
    pub oversize: u64,
}

/// Builds in-memory links.
#[derive(Debug)]
pub struct WireLink;

impl WireLink {
    /// A link whose two directions both behave as `cfg`, their faults drawn from generators seeded from `seed`.
    pub fn pair(cfg: FaultConfig, seed: u64) -> (WireEnd, WireEnd) {
        WireLink::pair_asymmetric(cfg, cfg, seed)
    }

    /// A link whose direction from the first end to the second behaves as `a_to_b`, the other as `b_to_a`.
    pub fn pair_asymmetric(a_to_b: FaultConfig, b_to_a: FaultConfig, seed: u64) -> (WireEnd, WireEnd) {
        let mut seeder = SplitMix64(seed);
        let state = Rc::new(RefCell::new(LinkState {
            now: Instant::default(),
            dirs: [Direction::new(&a_to_b, seeder.next()), Direction::new(&b_to_a, seeder.next())],
        }));
        let a = WireEnd { link: Rc::clone(&state), tx: 0, mac: DEFAULT_MAC_A };
        let b = WireEnd { link: state, tx: 1, mac: DEFAULT_MAC_B };
        (a, b)
    }
}

/// One end of an in-memory link: a [`NicQueue`] with no fd. Not `Send`: both ends live on one thread.
pub struct WireEnd {
    link: Rc<RefCell<LinkState>>,
    /// Index of the direction this end transmits on; it receives on the other.
    tx: usize,
    mac: [u8; 6],
}

impl std::fmt::Debug for WireEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = self.link.borrow();
        f.debug_struct("WireEnd")
            .field("end", &self.tx)
            .field("mac", &self.mac)
            .field("now", &link.now)
            .field("queued_out", &link.dirs[self.tx].ring.count)
            .field("queued_in", &link.dirs[1 - self.tx].ring.count)
            .finish()
    }
}

impl WireEnd {
    /// Sets this end's MAC address (what [`NicQueue::mac`] returns; the link itself does not filter).
    pub fn set_mac(&mut self, mac: [u8; 6]) {
        self.mac = mac;
    }

    /// This end with MAC `mac`.
    pub fn with_mac(mut self, mac: [u8; 6]) -> WireEnd {
        self.mac = mac;
        self
    }

    /// Moves the link's clock (shared by both ends) to `now`; it never goes back.
    pub fn advance(&self, now: Instant) {
        let mut link = self.link.borrow_mut();
        if now > link.now {
            link.now = now;
        }
    }

    /// The link's clock.
    pub fn now(&self) -> Instant {
        self.link.borrow().now
    }

    /// When the next frame toward this end becomes receivable (a held-back frame counts at its release time),
    /// or `None` when nothing is on the way. A time not after [`now`](WireEnd::now) means "receivable now".
    pub fn next_due(&self) -> Option<Instant> {
        let link = self.link.borrow();
        let dir = &link.dirs[1 - self.tx];
        let held = dir.held.due.map(|due| due + dir.reorder_timeout);
        match (dir.ring.front_due(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Frames on the way toward this end (queued or held back).
    pub fn pending(&self) -> usize {
        let link = self.link.borrow();
        let dir = &link.dirs[1 - self.tx];
        dir.ring.count + usize::from(dir.held.due.is_some())
    }

    /// Faults injected on frames this end transmits.
    pub fn fault_stats(&self) -> WireFaultStats {
        self.link.borrow().dirs[self.tx].faults
    }
}

/// A handle on a link's shared clock and fault counters, for a test that handed both ends to dataplanes.
#[derive(Clone)]
pub struct WireProbe {
    link: Rc<RefCell<LinkState>>,
}

impl std::fmt::Debug for WireProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireProbe").field("now", &self.link.borrow().now).finish()
    }
}

impl WireProbe {
    /// Moves the link's clock to `now` (never back).
    pub fn advance(&self, now: Instant) {
        let mut link = self.link.borrow_mut();
        if now > link.now {
            link.now = now;
        }
    }

    /// Faults injected so far on direction `dir` (0: first end to second, 1: second to first).
    pub fn fault_stats(&self, dir: usize) -> WireFaultStats {
        self.link.borrow().dirs[dir.min(1)].faults
    }

    /// Frames on the way in direction `dir`.
    pub fn in_flight(&self, dir: usize) -> usize {
        let link = self.link.borrow();
        let d = &link.dirs[dir.min(1)];
        d.ring.count + usize::from(d.held.due.is_some())
    }
}

impl WireEnd {
    /// A probe on this end's link.
    pub fn probe(&self) -> WireProbe {
        WireProbe { link: Rc::clone(&self.link) }
    }
}

impl NicQueue for WireEnd {
    fn receive(&mut self, pool: &mut MbufPool, out: &mut Batch, max: usize) -> usize {
        let mut link = self.link.borrow_mut();
        let now = link.now;
        let dir = &mut link.dirs[1 - self.tx];
        dir.release_stale_held(now);
        let want = max.min(out.remaining_capacity());
        let mut got = 0;
        while got < want {
            match dir.ring.front_due() {
                Some(due) if due <= now => {}
                _ => break,
            }
            let Some(m) = pool.alloc_from(dir.ring.front()) else {
                // Leave the frame on the link until the pool has room again.
                dir.rx.fill_starved += 1;
                break;
            };
            dir.ring.pop();
            if let Err(e) = out.try_push(m) {
                pool.free(e.element());
                break;
            }
            dir.rx.rx_frames += 1;
            got += 1;
        }
        got
    }

    fn transmit(&mut self, pool: &mut MbufPool, batch: &mut Batch) {
        let mut link = self.link.borrow_mut();
        let now = link.now;
        let dir = &mut link.dirs[self.tx];
        for m in batch.drain(..) {
            dir.send(pool.data(&m), now);
            pool.free(m);
        }
    }

    fn maintain(&mut self, _pool: &mut MbufPool) {}

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn caps(&self) -> NicCaps {
        let link = self.link.borrow();
        let max_frame = link.dirs[self.tx].ring.slot;
        NicCaps::with_mtu((max_frame - ETH_HEADER_LEN) as u16)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn stats(&self) -> NicStats {
        let link = self.link.borrow();
        let tx = &link.dirs[self.tx].tx;
        let rx = &link.dirs[1 - self.tx].rx;
        NicStats {
            rx_frames: rx.rx_frames,
            rx_dropped: rx.rx_dropped,
            fill_starved: rx.fill_starved,
            tx_frames: tx.tx_frames,
            tx_errors: tx.tx_errors,
            ..NicStats::default()
        }
    }

    fn frames_held(&self) -> u32 {
        0
    }

    /// Holds no mbufs: frames on the link are copies.
    fn release(&mut self, _pool: &mut MbufPool) {}
}

#[derive(Debug)]
struct LinkState {
    now: Instant,
    dirs: [Direction; 2],
}

/// A probability as a threshold on a 32-bit random number: `p` happens when `rand32 < threshold`.
#[derive(Debug, Clone, Copy)]
struct Chance(u64);

impl Chance {
    fn new(p: f64) -> Chance {
        // NaN clamps to 0 (`f64::clamp` keeps NaN, so test it first).
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        Chance((p * (1u64 << 32) as f64) as u64)
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to draw faults.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whether an event of chance `c` happens; draws nothing for a chance of 0, so a perfect link stays
    /// independent of the generator.
    fn happens(&mut self, c: Chance) -> bool {
        c.0 != 0 && (self.next() >> 32) < c.0
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next() % (max + 1)
        }
    }
}

/// Counters a direction keeps for its sender.
#[derive(Debug, Default)]
struct TxCounters {
    tx_frames: u64,
    tx_errors: u64,
}

/// Counters a direction keeps for its receiver.
#[derive(Debug, Default)]
struct RxCounters {
    rx_frames: u64,
    rx_dropped: u64,
    fill_starved: u64,
}

/// A frame held back to be overtaken.
#[derive(Debug)]
struct Held {
    buf: Vec<u8>,
    len: usize,
    /// When it would have been due; `None` when the slot is empty.
    due: Option<Instant>,
}

/// One direction of a link.
#[derive(Debug)]
struct Direction {
    rng: SplitMix64,
    loss: Chance,
    duplicate: Chance,
    reorder: Chance,
    corrupt: Chance,
    delay: Duration,
    jitter: Duration,
    reorder_timeout: Duration,
    ring: Ring,
    held: Held,
    /// Due time of the last frame queued, so delays never reorder.
    last_due: Instant,
    faults: WireFaultStats,
    tx: TxCounters,
    rx: RxCounters,
}

impl Direction {
    fn new(cfg: &FaultConfig, seed: u64) -> Direction {
        let slot = (cfg.mtu as usize + ETH_HEADER_LEN).min(MAX_DATA);
        Direction {
            rng: SplitMix64(seed),
            loss: Chance::new(cfg.loss),
            duplicate: Chance::new(cfg.duplicate),
            reorder: Chance::new(cfg.reorder),
            corrupt: Chance::new(cfg.corrupt),
            delay: cfg.delay,
            jitter: cfg.jitter,
            reorder_timeout: cfg.reorder_timeout,
            ring: Ring::new(cfg.capacity, slot),
            held: Held { buf: vec![0; slot], len: 0, due: None },
            last_due: Instant::default(),
            faults: WireFaultStats::default(),
            tx: TxCounters::default(),
            rx: RxCounters::default(),
        }
    }

    /// Puts one frame sent at `now` on the link, applying the faults in the order of the module docs.
    fn send(&mut self, frame: &[u8], now: Instant) {
        self.tx.tx_frames += 1;
        if frame.len() > self.ring.slot {
            self.faults.oversize += 1;
            self.tx.tx_errors += 1;
            return;
        }
        if self.rng.happens(self.loss) {
            self.faults.lost += 1;
            return;
        }
        let flip = if self.rng.happens(self.corrupt) && !frame.is_empty() {
            self.faults.corrupted += 1;
            let r = self.rng.next();
            Some(((r >> 3) as usize % frame.len(), 1u8 << (r & 7)))
        } else {
            None
        };
        let extra = self.rng.upto(self.jitter.total_micros());
        let delay = Duration::from_micros(self.delay.total_micros().saturating_add(extra));
        if delay > Duration::ZERO {
            self.faults.delayed += 1;
        }
        let due = now + delay;
        if self.held.due.is_none() && self.rng.happens(self.reorder) {
            self.held.buf[..frame.len()].copy_from_slice(frame);
            if let Some((at, bit)) = flip {
                self.held.buf[at] ^= bit;
            }
            self.held.len = frame.len();
            self.held.due = Some(due);
            return;
        }
        let copies = if self.rng.happens(self.duplicate) { 2 } else { 1 };
        for copy in 0..copies {
            let due = due.max(self.last_due);
            match self.ring.push(frame, due) {
                Some(slot) => {
                    if let Some((at, bit)) = flip {
                        slot[at] ^= bit;
                    }
                    self.last_due = due;
                    if copy == 1 {
                        self.faults.duplicated += 1;
                    }
                }
                None => self.overflow(),
            }
        }
        // The held-back frame goes right behind the one that overtook it.
        if self.held.due.is_some() {
            self.faults.reordered += 1;
            self.queue_held();
        }
    }

    /// Queues the held-back frame if it has waited `reorder_timeout` past its due time with nothing overtaking.
    fn release_stale_held(&mut self, now: Instant) {
        if let Some(due) = self.held.due {
            if due + self.reorder_timeout <= now {
                self.queue_held();
            }
        }
    }

    fn queue_held(&mut self) {
        let Some(due) = self.held.due.take() else {
            return;
        };
        let due = due.max(self.last_due);
        if self.ring.push(&self.held.buf[..self.held.len], due).is_some() {
            self.last_due = due;
        } else {
            self.overflow();
        }
    }

    fn overflow(&mut self) {
        self.faults.overflowed += 1;
        self.rx.rx_dropped += 1;
    }
}

/// A bounded FIFO of frames in fixed `slot`-byte buffers, all allocated up front.
#[derive(Debug)]
struct Ring {
    buf: Vec<u8>,
    lens: Vec<u16>,
    due: Vec<Instant>,
    /// Bytes per slot: the largest frame the direction carries.
    slot: usize,
    head: usize,
    count: usize,
}

impl Ring {
    fn new(capacity: usize, slot: usize) -> Ring {
        Ring {
            buf: vec![0; capacity * slot],
            lens: vec![0; capacity],
            due: vec![Instant::default(); capacity],
            slot,
            head: 0,
            count: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Copies `frame` (at most `slot` bytes) into the tail slot and returns the copy, or `None` when full.
    fn push(&mut self, frame: &[u8], due: Instant) -> Option<&mut [u8]> {
        if self.count == self.capacity() || frame.len() > self.slot {
            return None;
        }
        let i = (self.head + self.count) % self.capacity();
        self.count += 1;
        self.lens[i] = frame.len() as u16;
        self.due[i] = due;
        let slot = &mut self.buf[i * self.slot..i * self.slot + frame.len()];
        slot.copy_from_slice(frame);
        Some(slot)
    }

    fn front_due(&self) -> Option<Instant> {
        (self.count > 0).then(|| self.due[self.head])
    }

    /// The head frame (empty when the ring is).
    fn front(&self) -> &[u8] {
        if self.count == 0 {
            return &[];
        }
        let start = self.head * self.slot;
        &self.buf[start..start + self.lens[self.head] as usize]
    }

    fn pop(&mut self) {
        if self.count > 0 {
            self.head = (self.head + 1) % self.capacity();
            self.count -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::Mbuf;

    const FRAME_LEN: usize = 64;

    /// A 64-byte test frame carrying `seq` at bytes 14..18, the rest a pattern derived from it.
    fn test_frame(seq: u32) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        f[..6].copy_from_slice(&DEFAULT_MAC_B);
        f[6..12].copy_from_slice(&DEFAULT_MAC_A);
        f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in f[18..].iter_mut().enumerate() {
            *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
        }
        f
    }

    fn send(end: &mut WireEnd, pool: &mut MbufPool, frames: &[&[u8]]) {
        let mut batch = Batch::new();
        for f in frames {
            batch.push(pool.alloc_from(f).expect("pool has room"));
        }
        end.transmit(pool, &mut batch);
        assert!(batch.is_empty(), "a wire end accepts every frame");
    }

    /// Receives everything due and returns the frames' bytes, freeing the mbufs.
    fn drain(end: &mut WireEnd, pool: &mut MbufPool) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let mut out = Batch::new();
            let n = end.receive(pool, &mut out, 64);
            for m in out.drain(..) {
                all.push(pool.data(&m).to_vec());
                pool.free(m);
            }
            if n == 0 {
                return all;
            }
        }
    }

    /// Sends `n` sequenced frames from a to b in bursts, advancing time enough to flush everything, and returns
    /// what b received plus the fault counters.
    fn run(cfg: FaultConfig, seed: u64, n: u32) -> (Vec<Vec<u8>>, WireFaultStats, NicStats) {
        let (mut a, mut b) = WireLink::pair(cfg, seed);
        let mut pa = MbufPool::new(64, false).unwrap();
        let mut pb = MbufPool::new(256, false).unwrap();
        let mut got = Vec::new();
        let mut now = Instant::default();
        for burst in 0..n / 50 {
            let frames: Vec<[u8; FRAME_LEN]> = (0..50).map(|i| test_frame(burst * 50 + i)).collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            send(&mut a, &mut pa, &refs);
            now = now + Duration::from_millis(10);
            a.advance(now);
            got.extend(drain(&mut b, &mut pb));
        }
        assert_eq!(pa.available(), pa.capacity(), "sender's pool back to full");
        assert_eq!(pb.available(), pb.capacity(), "receiver's pool back to full");
        (got, a.fault_stats(), b.stats())
    }

    fn seq_of(f: &[u8]) -> u32 {
        u32::from_be_bytes([f[14], f[15], f[16], f[17]])
    }

    #[test]
    fn frames_cross_byte_exact_both_ways() {
        let (mut a, mut b) = WireLink::pair(FaultConfig::default(), 1);
        let mut pa = MbufPool::new(16, false).unwrap();
        let mut pb = MbufPool::new(16, false).unwrap();
        let long = [0xa5u8; 1514];
        let frames: [&[u8]; 4] = [&test_frame(1), &test_frame(2), &long, &[7u8; 1]];
        send(&mut a, &mut pa, &frames);
        assert_eq!(pa.available(), 16, "transmit frees at once");
        assert_eq!(b.pending(), 4);
        let got = drain(&mut b, &mut pb);
        assert_eq!(got, frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>());
        send(&mut b, &mut pb, &[&test_frame(9)]);
        assert_eq!(drain(&mut a, &mut pa), vec![test_frame(9).to_vec()]);
        assert!(drain(&mut a, &mut pa).is_empty() && drain(&mut b, &mut pb).is_empty());
        assert_eq!(a.stats().tx_frames, 4);
        assert_eq!(b.stats().rx_frames, 4);
        assert_eq!(a.stats().rx_frames, 1);
        assert_eq!(a.fault_stats(), WireFaultStats::default());
        assert_eq!((pa.available(), pb.available()), (16, 16));
        assert_eq!((a.mac(), b.mac()), (DEFAULT_MAC_A, DEFAULT_MAC_B));
        assert_eq!(a.poll_fd(), None);
        assert_eq!(a.caps(), NicCaps::with_mtu(1500));
        assert_eq!(a.frames_held(), 0);
        let a = a.with_mac([2, 9, 9, 9, 9, 9]);
        assert_eq!(a.mac(), [2, 9, 9, 9, 9, 9]);
    }

    #[test]
    fn receive_respects_max_and_batch_room() {
        let (mut a, mut b) = WireLink::pair(FaultConfig::default(), 1);
        let mut pool = MbufPool::new(16, false).unwrap();
        let frames: Vec<[u8; FRAME_LEN]> = (0..5).map(test_frame).collect();
        send(&mut a, &mut pool, &frames.iter().map(|f| &f[..]).collect::<Vec<_>>());
        let mut out = Batch::new();
        assert_eq!(b.receive(&mut pool, &mut out, 2), 2);
        assert_eq!(b.receive(&mut pool, &mut out, 0), 0);
        assert_eq!(b.receive(&mut pool, &mut out, 10), 3);
        assert_eq!(out.iter().map(|m| seq_of(pool.data(m))).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        for m in out.drain(..) {
            pool.free(m);
        }
        assert_eq!(pool.available(), 16);
    }

    #[test]
    fn empty_pool_leaves_frames_on_the_link() {
        let (mut a, mut b) = WireLink::pair(FaultConfig::default(), 1);
        let mut pa = MbufPool::new(4, false).unwrap();
        let mut pb = MbufPool::new(2, false).unwrap();
        send(&mut a, &mut pa, &[&test_frame(0), &test_frame(1), &test_frame(2)]);
        let mut out = Batch::new();
        assert_eq!(b.receive(&mut pb, &mut out, 8), 2);
        assert_eq!(b.stats().fill_starved, 1);
        assert_eq!(b.pending(), 1);
        let held: Vec<Mbuf> = out.drain(..).collect();
        for m in held {
            pb.free(m);
        }
        assert_eq!(drain(&mut b, &mut pb), vec![test_frame(2).to_vec()]);
    }

    #[test]
    fn capacity_bounds_the_queue() {
        let cfg = FaultConfig { capacity: 8, ..FaultConfig::default() };
        let (mut a, mut b) = WireLink::pair(cfg, 1);
        let mut pool = MbufPool::new(32, false).unwrap();
        let frames: Vec<[u8; FRAME_LEN]> = (0..20).map(test_frame).collect();
        send(&mut a, &mut pool, &frames.iter().map(|f| &f[..]).collect::<Vec<_>>());
        let got = drain(&mut b, &mut pool);
        assert_eq!(got.iter().map(|f| seq_of(f)).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert_eq!(b.stats().rx_dropped, 12);
        assert_eq!(a.fault_stats().overflowed, 12);
        assert_eq!(a.stats().tx_frames, 20);
        assert_eq!(pool.available(), 32);
    }

    #[test]
    fn oversize_frames_drop() {
        let cfg = FaultConfig { mtu: 100, ..FaultConfig::default() };
        let (mut a, mut b) = WireLink::pair(cfg, 1);
        let mut pool = MbufPool::new(4, false).unwrap();
        send(&mut a, &mut pool, &[&[1u8; 114], &[2u8; 115]]);
        assert_eq!(drain(&mut b, &mut pool), vec![vec![1u8; 114]]);
        assert_eq!(a.fault_stats().oversize, 1);
        assert_eq!(a.stats().tx_errors, 1);
        assert_eq!(a.caps().mtu, 100);
    }

    #[test]
    fn delay_and_jitter_follow_the_simulated_clock_in_order() {
        let cfg = FaultConfig {
            delay: Duration::from_micros(100),
            jitter: Duration::from_micros(50),
            ..FaultConfig::default()
        };
        let (mut a, mut b) = WireLink::pair(cfg, 7);
        let mut pool = MbufPool::new(64, false).unwrap();
        a.advance(Instant::from_micros(1000));
        let frames: Vec<[u8; FRAME_LEN]> = (0..20).map(test_frame).collect();
        send(&mut a, &mut pool, &frames.iter().map(|f| &f[..]).collect::<Vec<_>>());
        b.advance(Instant::from_micros(1099));
        assert!(drain(&mut b, &mut pool).is_empty(), "nothing before the fixed delay");
        let first = b.next_due().unwrap();
        assert!(first >= Instant::from_micros(1100) && first <= Instant::from_micros(1150));
        let mut got = Vec::new();
        for t in 1100..=1150 {
            b.advance(Instant::from_micros(t));
            got.extend(drain(&mut b, &mut pool).iter().map(|f| seq_of(f)));
        }
        assert_eq!(got, (0..20).collect::<Vec<_>>(), "all delivered by delay + jitter, in order");
        assert_eq!(a.fault_stats().delayed, 20);
        assert_eq!(b.next_due(), None);
        b.advance(Instant::from_micros(5));
        assert_eq!(b.now(), Instant::from_micros(1150), "the clock never goes back");
    }

    const N: u32 = 10_000;

    /// Asserts `count` is within 5 standard deviations of a binomial(N, p) mean.
    #[track_caller]
    fn assert_rate(count: u64, p: f64) {
        let mean = f64::from(N) * p;
        let sd = (mean * (1.0 - p)).sqrt();
        assert!((count as f64 - mean).abs() < 5.0 * sd, "count {count} far from {mean} (sd {sd:.1})");
    }

    #[test]
    fn loss_happens_at_its_rate() {
        let (got, faults, stats) = run(FaultConfig { loss: 0.1, ..FaultConfig::default() }, 42, N);
        assert_rate(faults.lost, 0.1);
        assert_eq!(got.len() as u64, u64::from(N) - faults.lost);
        assert_eq!(stats.rx_frames, got.len() as u64);
        let seqs: Vec<u32> = got.iter().map(|f| seq_of(f)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "loss alone keeps order");
        assert!(got.iter().all(|f| f[..] == test_frame(seq_of(f))[..]), "loss alone corrupts nothing");
    }

    #[test]
    fn duplication_happens_at_its_rate() {
        let (got, faults, _) = run(FaultConfig { duplicate: 0.1, ..FaultConfig::default() }, 42, N);
        assert_rate(faults.duplicated, 0.1);
        assert_eq!(got.len() as u64, u64::from(N) + faults.duplicated);
        let dups = got.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        assert_eq!(dups, faults.duplicated, "a copy follows its original");
    }

    #[test]
    fn reordering_happens_at_its_rate() {
        let (got, faults, _) = run(FaultConfig { reorder: 0.1, ..FaultConfig::default() }, 42, N);
        // A frame is held only when none is held, so the rate is p / (1 + p) of frames.
        assert_rate(faults.reordered, 0.1 / 1.1);
        assert_eq!(got.len() as u32, N, "reordering loses nothing");
        let seqs: Vec<u32> = got.iter().map(|f| seq_of(f)).collect();
        let inversions = seqs.windows(2).filter(|w| w[0] > w[1]).count() as u64;
        assert_eq!(inversions, faults.reordered, "each held frame comes right after the one that overtook it");
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn corruption_happens_at_its_rate_one_bit_each() {
        let (got, faults, _) = run(FaultConfig { corrupt: 0.1, ..FaultConfig::default() }, 42, N);
        assert_rate(faults.corrupted, 0.1);
        let mut damaged = 0;
        for (i, f) in got.iter().enumerate() {
            let want = test_frame(i as u32);
            let bits: u32 = f.iter().zip(want.iter()).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert!(bits <= 1, "frame {i}: {bits} bits flipped");
            damaged += u64::from(bits);
        }
        assert_eq!(damaged, faults.corrupted);
    }

    #[test]
    fn faults_are_deterministic_for_a_seed() {
        let cfg = FaultConfig {
            loss: 0.05,
            duplicate: 0.05,
            reorder: 0.05,
            corrupt: 0.05,
            delay: Duration::from_micros(30),
            jitter: Duration::from_micros(20),
            ..FaultConfig::default()
        };
        let (got1, faults1, _) = run(cfg, 1234, 2000);
        let (got2, faults2, _) = run(cfg, 1234, 2000);
        let (got3, faults3, _) = run(cfg, 1235, 2000);
        assert_eq!(faults1, faults2);
        assert_eq!(got1, got2);
        assert!(got1 != got3 || faults1 != faults3, "another seed gives another run");
        for count in [faults1.lost, faults1.duplicated, faults1.reordered, faults1.corrupted] {
            assert!(count > 0, "every fault fired at least once: {faults1:?}");
        }
    }

    #[test]
    fn a_held_frame_is_released_by_the_timeout() {
        let cfg = FaultConfig { reorder: 1.0, reorder_timeout: Duration::from_micros(500), ..FaultConfig::default() };
        let (mut a, mut b) = WireLink::pair(cfg, 3);
        let mut pool = MbufPool::new(8, false).unwrap();
        send(&mut a, &mut pool, &[&test_frame(0)]);
        assert!(drain(&mut b, &mut pool).is_empty(), "held back");
        assert_eq!(b.pending(), 1);
        assert_eq!(b.next_due(), Some(Instant::from_micros(500)));
        b.advance(Instant::from_micros(499));
        assert!(drain(&mut b, &mut pool).is_empty());
        b.advance(Instant::from_micros(500));
        assert_eq!(drain(&mut b, &mut pool), vec![test_frame(0).to_vec()]);
        // With a probability of 1, every other frame is held and overtaken.
        send(&mut a, &mut pool, &[&test_frame(1), &test_frame(2), &test_frame(3), &test_frame(4)]);
        let seqs: Vec<u32> = drain(&mut b, &mut pool).iter().map(|f| seq_of(f)).collect();
        assert_eq!(seqs, vec![2, 1, 4, 3]);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn directions_are_independent() {
        let (mut a, mut b) =
            WireLink::pair_asymmetric(FaultConfig { loss: 1.0, ..FaultConfig::default() }, FaultConfig::default(), 5);
        let mut pool = MbufPool::new(8, false).unwrap();
        send(&mut a, &mut pool, &[&test_frame(0)]);
        send(&mut b, &mut pool, &[&test_frame(1)]);
        assert!(drain(&mut b, &mut pool).is_empty());
        assert_eq!(drain(&mut a, &mut pool), vec![test_frame(1).to_vec()]);
        assert_eq!((a.fault_stats().lost, b.fault_stats().lost), (1, 0));
        assert_eq!(pool.available(), 8);
    }
}
