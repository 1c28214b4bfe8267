//! ixnetem: a user-space network impairment element (our stand-in for `tc qdisc ... netem`, which this kernel
//! lacks), bridging two interfaces and damaging what crosses.
//!
//! `ixnetem --a IFACE_A --b IFACE_B [--loss P] [--duplicate P] [--reorder P] [--corrupt P] [--delay MS]
//! [--jitter MS] ...` opens one AF_PACKET raw socket per interface (ETH_P_ALL, bound to its ifindex, promiscuous,
//! `PACKET_IGNORE_OUTGOING` so it never reads back its own transmissions) and forwards every frame A→B and B→A.
//! Each direction has its own fault generator (splitmix64, seeded from `--seed`) and by default the same
//! parameters; `--a-to-b`/`--b-to-a 'loss=0.1,delay=5'` override single parameters for one direction.
//!
//! Faults, drawn per frame in this order (the in-memory link `dataplane/src/nic/wire.rs` has the same model):
//! 1. *oversize*: a frame longer than the receive slot (largest MTU + 14 + a VLAN tag) is dropped;
//! 2. *overflow*: a frame that finds the direction's frame pool (`--pool-frames`) exhausted is dropped;
//! 3. *loss* with probability `--loss`;
//! 4. *corruption* with probability `--corrupt`: one random bit of one random byte of the frame flips;
//! 5. *delay*: the frame is due `--delay` plus a uniform `0..=--jitter` after it arrived. Unlike wire.rs, jitter
//!    reorders by default, as netem's does (`--jitter-keeps-order` keeps every frame behind the one before it);
//! 6. *reordering* with probability `--reorder`: the frame is held back until the next frame of the direction
//!    passes (it then goes right behind that frame) or, if none comes, until `--reorder-timeout` after it was due;
//!    one frame is held at a time;
//! 7. *duplication* with probability `--duplicate`: a copy follows the frame (same due time, right behind it).
//!
//! Counters per direction (`a>b`, `b>a`), printed every `--stats-every` seconds and on exit:
//! `rx` frames read; `forwarded` frames written (copies included); `lost`; `duplicated` copies made; `reordered`
//! held frames overtaken; `corrupted`; `delayed` frames given a non-zero delay; `overflow` frames dropped for a
//! full pool (a copy that finds the pool full counts here too); `oversize`; `tx_errors` frames the kernel refused
//! to send (e.g. ENOBUFS); `sock_drops` frames the kernel dropped before ixnetem read them (PACKET_STATISTICS);
//! `csum_partial`/`csum_fixed` frames that arrived with a partial checksum and how many of those ixnetem completed
//! in software; `queued` frames inside ixnetem right now. At every report
//! `rx + duplicated == forwarded + lost + overflow + oversize + tx_errors + queued`.
//!
//! What the interfaces must look like (scripts/impaired_link.sh does all of it):
//! - No GSO/TSO/GRO (`ethtool -K IF tso off gso off gro off` on both bridged interfaces and on the Linux senders
//!   beyond them): otherwise a Linux sender passes 64 KiB super-frames over veth, which ixnetem drops as oversize.
//! - TX checksum offload off on Linux senders (`ethtool -K IF tx off`): a Linux sender over veth leaves TCP/UDP
//!   checksums partial (CHECKSUM_PARTIAL) and AF_PACKET hands over the frame as it is; forwarded that way every
//!   receiver would drop it. ixnetem detects such frames (PACKET_AUXDATA, `csum_partial`) and completes IPv4/IPv6
//!   TCP/UDP checksums itself *before* corrupting (`csum_fixed`), so corruption stays detectable; frames it cannot
//!   complete (other protocols, extension headers) go out as they are. With offload off the counter stays 0.
//! - VLAN tags the kernel stripped into metadata (PACKET_AUXDATA) are put back into the frame before it is
//!   forwarded (the kernel this was written on has no 8021q, so that path is only unit-tested).
//!
//! Bounded by construction: a hard stop after `--duration` seconds (default 600), a fixed frame pool per
//! direction allocated at start (nothing allocates per frame), one thread. SIGINT/SIGTERM/SIGHUP end it cleanly
//! (final counters, exit status 0). It prints `ixnetem: running ...` once both sockets are bound. The loop: ppoll(2)
//! on both sockets and a signalfd, with the timeout set to the next due frame; recvmmsg(2) straight into pool slots;
//! a binary heap of (due time, sequence) per direction; sendmmsg(2) of everything due.
use clap::Parser;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

/// Frames per recvmmsg/sendmmsg call.
const BATCH: usize = 64;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

// Linux ABI (linux/if_ether.h, linux/if_packet.h), spelled out here so the tool does not depend on which libc
// release exports them.
const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

/// `struct ifreq` reduced to what SIOCGIFMTU needs (the name, then a union whose first member is the MTU).
#[repr(C)]
struct IfreqMtu {
    name: [u8; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

#[derive(Parser, Debug)]
#[command(
    name = "ixnetem",
    version,
    about = "User-space netem: bridges two interfaces over AF_PACKET, with loss, duplication, reordering, \
             corruption, delay and jitter applied per direction"
)]
struct Cli {
    /// First interface (frames read here go out on --b).
    #[arg(long = "a", value_name = "IFACE")]
    a: String,
    /// Second interface (frames read here go out on --a).
    #[arg(long = "b", value_name = "IFACE")]
    b: String,
    /// Probability that a frame is lost.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob, value_name = "P")]
    loss: f64,
    /// Probability that a frame is delivered twice.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob, value_name = "P")]
    duplicate: f64,
    /// Probability that a frame is held back until the next one has passed.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob, value_name = "P")]
    reorder: f64,
    /// Probability that one random bit of a frame flips.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob, value_name = "P")]
    corrupt: f64,
    /// Fixed one-way delay, milliseconds (fractions allowed).
    #[arg(long, default_value_t = 0.0, value_parser = parse_ms, value_name = "MS")]
    delay: f64,
    /// Extra delay, uniform in 0..=MS milliseconds; reorders frames unless --jitter-keeps-order.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ms, value_name = "MS")]
    jitter: f64,
    /// Never let jitter put a frame ahead of one that arrived before it.
    #[arg(long)]
    jitter_keeps_order: bool,
    /// How long a held-back frame waits past its due time for a frame to overtake it, milliseconds.
    #[arg(long, default_value_t = 1.0, value_parser = parse_ms, value_name = "MS")]
    reorder_timeout: f64,
    /// Overrides for the A→B direction only, e.g. 'loss=0.1,delay=5' (keys: loss duplicate reorder corrupt
    /// delay jitter reorder-timeout jitter-keeps-order).
    #[arg(long, value_name = "K=V,...")]
    a_to_b: Option<String>,
    /// Overrides for the B→A direction only (same keys as --a-to-b).
    #[arg(long, value_name = "K=V,...")]
    b_to_a: Option<String>,
    /// Seed of the fault generators (default: from the clock; printed at start).
    #[arg(long)]
    seed: Option<u64>,
    /// Hard stop after this many seconds.
    #[arg(long, default_value_t = 600.0, value_name = "SECS")]
    duration: f64,
    /// Print counters every SECS seconds (0: only on exit).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    stats_every: f64,
    /// Frames each direction can hold (in flight plus held back); beyond it frames drop (`overflow`).
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pool_frames: usize,
    /// SO_RCVBUF/SO_SNDBUF of each socket, bytes.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    sock_buf: usize,
}

fn parse_prob(s: &str) -> Result<f64, String> {
    let p: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{s} is not a probability in 0..=1"))
    }
}

fn parse_ms(s: &str) -> Result<f64, String> {
    let ms: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=60_000.0).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("{s} is not a time in 0..=60000 ms"))
    }
}

fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).round() as u64
}

/// What one direction does to the frames crossing it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Faults {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    corrupt: f64,
    delay_ms: f64,
    jitter_ms: f64,
    reorder_timeout_ms: f64,
    jitter_keeps_order: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            reorder_timeout_ms: 1.0,
            jitter_keeps_order: false,
        }
    }
}

impl Faults {
    fn from_cli(cli: &Cli) -> Faults {
        Faults {
            loss: cli.loss,
            duplicate: cli.duplicate,
            reorder: cli.reorder,
            corrupt: cli.corrupt,
            delay_ms: cli.delay,
            jitter_ms: cli.jitter,
            reorder_timeout_ms: cli.reorder_timeout,
            jitter_keeps_order: cli.jitter_keeps_order,
        }
    }

    /// Applies a `key=value,...` override list.
    fn apply(&mut self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?} is not key=value"))?;
            match k.trim() {
                "loss" => self.loss = parse_prob(v)?,
                "duplicate" | "dup" => self.duplicate = parse_prob(v)?,
                "reorder" => self.reorder = parse_prob(v)?,
                "corrupt" => self.corrupt = parse_prob(v)?,
                "delay" => self.delay_ms = parse_ms(v)?,
                "jitter" => self.jitter_ms = parse_ms(v)?,
                "reorder-timeout" | "reorder_timeout" => self.reorder_timeout_ms = parse_ms(v)?,
                "jitter-keeps-order" | "jitter_keeps_order" => {
                    self.jitter_keeps_order = match v.trim() {
                        "1" | "true" | "yes" | "on" => true,
                        "0" | "false" | "no" | "off" => false,
                        _ => return Err(format!("{v:?} is not a boolean")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?} (loss, duplicate, reorder, corrupt, delay, jitter, reorder-timeout, \
                         jitter-keeps-order)"
                    ))
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "loss={} duplicate={} reorder={} corrupt={} delay={}ms jitter={}ms{} reorder-timeout={}ms",
            self.loss,
            self.duplicate,
            self.reorder,
            self.corrupt,
            self.delay_ms,
            self.jitter_ms,
            if self.jitter_keeps_order { " (keeps order)" } else { "" },
            self.reorder_timeout_ms
        )
    }
}

/// A probability as a threshold on a 32-bit random number.
#[derive(Debug, Clone, Copy)]
struct Chance(u64);

impl Chance {
    fn new(p: f64) -> Chance {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        Chance((p * (1u64 << 32) as f64) as u64)
    }
}

/// splitmix64: tiny, fast, seedable; plenty for drawing faults.
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

    /// Whether an event of chance `c` happens; draws nothing for a chance of 0.
    fn happens(&mut self, c: Chance) -> bool {
        c.0 != 0 && (self.next() >> 32) < c.0
    }

    /// Uniform in `0..=max` (draws nothing for 0).
    fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next() % (max + 1)
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    rx: u64,
    forwarded: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    corrupted: u64,
    delayed: u64,
    overflow: u64,
    oversize: u64,
    tx_errors: u64,
    sock_drops: u64,
    csum_partial: u64,
    csum_fixed: u64,
}

/// Fixed-size frame buffers, all allocated at start.
struct Slab {
    buf: Vec<u8>,
    slot: usize,
    len: Vec<u32>,
    free: Vec<u32>,
}

impl Slab {
    fn new(frames: usize, slot: usize) -> Slab {
        Slab {
            buf: vec![0; frames * slot],
            slot,
            len: vec![0; frames],
            // Popped from the end: hand out low slots first.
            free: (0..frames as u32).rev().collect(),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        self.free.pop()
    }

    fn release(&mut self, i: u32) {
        debug_assert!(self.free.len() < self.len.len());
        self.free.push(i);
    }

    fn frame(&self, i: u32) -> &[u8] {
        let start = i as usize * self.slot;
        &self.buf[start..start + self.len[i as usize] as usize]
    }

    fn frame_mut(&mut self, i: u32) -> &mut [u8] {
        let start = i as usize * self.slot;
        &mut self.buf[start..start + self.len[i as usize] as usize]
    }

    /// The whole slot, whatever the frame's length.
    fn slot_mut(&mut self, i: u32) -> &mut [u8] {
        let start = i as usize * self.slot;
        &mut self.buf[start..start + self.slot]
    }

    fn set_len(&mut self, i: u32, len: usize) {
        self.len[i as usize] = len as u32;
    }

    fn copy(&mut self, from: u32, to: u32) {
        let len = self.len[from as usize] as usize;
        let (f, t) = (from as usize * self.slot, to as usize * self.slot);
        self.buf.copy_within(f..f + len, t);
        self.len[to as usize] = len as u32;
    }
}

/// A frame waiting to go out: (due time in ns, sequence, slot); the sequence keeps equal due times in FIFO order.
type Entry = (u64, u64, u32);

/// One direction: the fault model and the frames in flight. No I/O, so it can be tested without sockets.
struct Link {
    rng: SplitMix64,
    loss: Chance,
    duplicate: Chance,
    reorder: Chance,
    corrupt: Chance,
    delay_ns: u64,
    jitter_ns: u64,
    reorder_timeout_ns: u64,
    keep_order: bool,
    slab: Slab,
    queue: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    /// The frame held back to be overtaken, and when it would have been due.
    held: Option<(u32, u64)>,
    last_due: u64,
    c: Counters,
}

impl Link {
    fn new(f: &Faults, seed: u64, frames: usize, slot: usize) -> Link {
        Link {
            rng: SplitMix64(seed),
            loss: Chance::new(f.loss),
            duplicate: Chance::new(f.duplicate),
            reorder: Chance::new(f.reorder),
            corrupt: Chance::new(f.corrupt),
            delay_ns: ms_to_ns(f.delay_ms),
            jitter_ns: ms_to_ns(f.jitter_ms),
            reorder_timeout_ns: ms_to_ns(f.reorder_timeout_ms),
            keep_order: f.jitter_keeps_order,
            slab: Slab::new(frames, slot),
            // Every entry owns a slot, so this never grows.
            queue: BinaryHeap::with_capacity(frames),
            next_seq: 0,
            held: None,
            last_due: 0,
            c: Counters::default(),
        }
    }

    /// Applies the faults to the frame just read into `slot` at `now` (ns) and queues what survives.
    fn ingest(&mut self, slot: u32, now: u64) {
        if self.rng.happens(self.loss) {
            self.c.lost += 1;
            self.slab.release(slot);
            return;
        }
        if self.rng.happens(self.corrupt) {
            let frame = self.slab.frame_mut(slot);
            if !frame.is_empty() {
                let r = self.rng.next();
                let at = (r >> 3) as usize % frame.len();
                frame[at] ^= 1 << (r & 7);
                self.c.corrupted += 1;
            }
        }
        let delay = self.delay_ns.saturating_add(self.rng.upto(self.jitter_ns));
        if delay > 0 {
            self.c.delayed += 1;
        }
        let due = now.saturating_add(delay);
        if self.held.is_none() && self.rng.happens(self.reorder) {
            self.held = Some((slot, due));
            return;
        }
        let dup = self.rng.happens(self.duplicate);
        let due = self.enqueue(slot, due);
        if dup {
            self.c.duplicated += 1;
            match self.slab.alloc() {
                Some(copy) => {
                    self.slab.copy(slot, copy);
                    self.enqueue(copy, due);
                }
                None => self.c.overflow += 1,
            }
        }
        // The held-back frame goes right behind the one that overtook it.
        if let Some((h, hdue)) = self.held.take() {
            self.c.reordered += 1;
            self.enqueue(h, hdue.max(due));
        }
    }

    /// Queues `slot` at `due` (or later, to keep order) and returns the due time used.
    fn enqueue(&mut self, slot: u32, due: u64) -> u64 {
        let due = if self.keep_order { due.max(self.last_due) } else { due };
        self.last_due = self.last_due.max(due);
        self.queue.push(Reverse((due, self.next_seq, slot)));
        self.next_seq += 1;
        due
    }

    /// Lets go of a held frame nothing overtook within the reorder timeout (not counted as reordered).
    fn release_stale(&mut self, now: u64) {
        if let Some((h, hdue)) = self.held {
            if hdue.saturating_add(self.reorder_timeout_ns) <= now {
                self.held = None;
                self.enqueue(h, hdue);
            }
        }
    }

    /// When something next becomes due (a queued frame, or a held frame's timeout).
    fn next_event(&self) -> Option<u64> {
        let q = self.queue.peek().map(|Reverse(e)| e.0);
        let h = self.held.map(|(_, due)| due.saturating_add(self.reorder_timeout_ns));
        match (q, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop_due(&mut self, now: u64) -> Option<Entry> {
        match self.queue.peek() {
            Some(Reverse(e)) if e.0 <= now => self.queue.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Puts back a frame that could not be sent yet (same place in the order).
    fn unpop(&mut self, e: Entry) {
        self.queue.push(Reverse(e));
    }

    fn queued(&self) -> u64 {
        self.queue.len() as u64 + u64::from(self.held.is_some())
    }
}

/// The RFC 1071 sum of `data`, unfolded.
fn ones_sum(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes the TCP/UDP checksum of a frame the kernel handed over with CHECKSUM_PARTIAL: the checksum field
/// then holds the folded pseudo-header sum, and the "hardware" must sum the L4 segment and store the complement.
/// Handles IPv4 and IPv6 (no extension headers), in-band VLAN tags; returns whether it did.
fn complete_checksum(f: &mut [u8]) -> bool {
    if f.len() < ETH_HLEN {
        return false;
    }
    let mut et_at = 12;
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    while (et == 0x8100 || et == 0x88a8) && f.len() >= et_at + 6 {
        et_at += 4;
        et = u16::from_be_bytes([f[et_at], f[et_at + 1]]);
    }
    let l3 = et_at + 2;
    let (l4, end, proto) = match et {
        0x0800 if f.len() >= l3 + 20 => {
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
            (l3 + ihl, l3 + total, f[l3 + 9])
        }
        0x86dd if f.len() >= l3 + 40 => {
            let payload = usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]));
            (l3 + 40, l3 + 40 + payload, f[l3 + 6])
        }
        _ => return false,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if end > f.len() || l4 + field + 2 > end {
        return false;
    }
    let mut c = !fold(ones_sum(&f[l4..end]));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed.
    let r = unsafe {
        libc::setsockopt(fd, level, opt, val as *const T as *const libc::c_void, std::mem::size_of::<T>() as u32)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One bridged interface: a raw packet socket bound to it.
struct Port {
    fd: OwnedFd,
    name: String,
    ifindex: i32,
    mtu: usize,
}

impl Port {
    fn open(name: &str, sock_buf: usize) -> io::Result<Port> {
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{name}: {what}: {e}"));
        let cname = CString::new(name).map_err(|_| io::Error::other("interface name holds a NUL"))?;
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::other(format!("{name}: interface name too long")));
        }
        // Protocol 0: the socket receives nothing until bind() names the protocol and the interface.
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) { " (needs CAP_NET_RAW: run as root)" } else { "" };
            return Err(io::Error::new(e.kind(), format!("AF_PACKET socket: {e}{hint}")));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        // SAFETY: cname is a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface {name:?} in this network namespace")));
        }
        let mut req = IfreqMtu { name: [0; libc::IFNAMSIZ], mtu: 0, _pad: [0; 20] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: SIOCGIFMTU reads the name and writes the MTU into our ifreq-sized struct.
        if unsafe { libc::ioctl(raw, libc::SIOCGIFMTU, &mut req as *mut IfreqMtu) } < 0 {
            return Err(ctx("SIOCGIFMTU", io::Error::last_os_error()));
        }
        let one: libc::c_int = 1;
        setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one).map_err(|e| ctx("PACKET_IGNORE_OUTGOING", e))?;
        setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &one).map_err(|e| ctx("PACKET_AUXDATA", e))?;
        let buf = sock_buf.min(i32::MAX as usize) as libc::c_int;
        for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
            // FORCE ignores net.core.{r,w}mem_max but needs CAP_NET_ADMIN; fall back to the capped size.
            if setsockopt(raw, libc::SOL_SOCKET, force, &buf).is_err() {
                let _ = setsockopt(raw, libc::SOL_SOCKET, plain, &buf);
            }
        }
        // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: valid fd and a sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                raw,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(ctx("bind", io::Error::last_os_error()));
        }
        // A bridge port takes every frame, whoever it is addressed to (veth delivers them anyway).
        let mreq = PacketMreq { mr_ifindex: ifindex, mr_type: PACKET_MR_PROMISC, mr_alen: 0, mr_address: [0; 8] };
        setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq).map_err(|e| ctx("promiscuous mode", e))?;
        // Reset the kernel's drop counter (reading PACKET_STATISTICS clears it).
        let _ = read_sock_drops(raw);
        Ok(Port { fd, name: name.to_string(), ifindex, mtu: req.mtu.max(0) as usize })
    }
}

/// Frames the kernel dropped on this socket since the last call (the read resets the kernel's counters).
fn read_sock_drops(fd: RawFd) -> u64 {
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: valid fd; st and len describe a buffer of the right size.
    let r = unsafe {
        libc::getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &mut st as *mut TpacketStats as *mut libc::c_void, &mut len)
    };
    if r < 0 {
        0
    } else {
        u64::from(st.tp_drops)
    }
}

/// recvmmsg(2) state for one socket: headers, iovecs and control buffers, allocated once.
struct RxBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<[u64; 8]>,
    slots: Vec<u32>,
    /// Where frames land when the pool is empty (they are counted and dropped).
    scratch: Vec<u8>,
}

/// sendmmsg(2) state for one socket.
struct TxBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    entries: Vec<Entry>,
}

fn empty_iov() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn empty_mmsg() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (pointers and integers); all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

impl RxBatch {
    fn new(slot: usize) -> RxBatch {
        RxBatch {
            hdrs: (0..BATCH).map(|_| empty_mmsg()).collect(),
            iovs: (0..BATCH).map(|_| empty_iov()).collect(),
            ctrl: vec![[0; 8]; BATCH],
            slots: vec![0; BATCH],
            scratch: vec![0; slot],
        }
    }
}

impl TxBatch {
    fn new() -> TxBatch {
        TxBatch {
            hdrs: (0..BATCH).map(|_| empty_mmsg()).collect(),
            iovs: (0..BATCH).map(|_| empty_iov()).collect(),
            entries: Vec::with_capacity(BATCH),
        }
    }
}

/// Reads up to BATCH frames from `port` into `link`'s pool and applies the faults. Returns frames read.
fn receive(port: &Port, link: &mut Link, rx: &mut RxBatch) -> io::Result<usize> {
    // Leave room to put a stripped VLAN tag back.
    let cap = link.slab.slot - VLAN_HLEN;
    let mut in_pool = 0;
    for i in 0..BATCH {
        let base = match link.slab.alloc() {
            Some(s) => {
                rx.slots[i] = s;
                in_pool += 1;
                link.slab.slot_mut(s).as_mut_ptr()
            }
            // Pool exhausted: read into scratch (all such frames share it; they are dropped anyway).
            None => rx.scratch.as_mut_ptr(),
        };
        rx.iovs[i] = libc::iovec { iov_base: base as *mut libc::c_void, iov_len: cap };
        let h = &mut rx.hdrs[i].msg_hdr;
        h.msg_name = std::ptr::null_mut();
        h.msg_namelen = 0;
        h.msg_iov = &mut rx.iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = rx.ctrl[i].as_mut_ptr() as *mut libc::c_void;
        h.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        h.msg_flags = 0;
        rx.hdrs[i].msg_len = 0;
    }
    // SAFETY: every header points at a live iovec over a buffer of iov_len bytes and a live control buffer.
    let n = unsafe {
        libc::recvmmsg(
            port.fd.as_raw_fd(),
            rx.hdrs.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    let got = if n < 0 {
        let e = errno();
        // Give the slots back, last taken first, so the free stack is as it was.
        for i in (0..in_pool).rev() {
            link.slab.release(rx.slots[i]);
        }
        return match e {
            libc::EAGAIN | libc::EINTR => Ok(0),
            // The interface went down (reported once); keep going, it may come back.
            libc::ENETDOWN => Ok(0),
            _ => Err(io::Error::from_raw_os_error(e)),
        };
    } else {
        n as usize
    };
    let now = now_ns();
    for i in 0..got {
        link.c.rx += 1;
        if i >= in_pool {
            link.c.overflow += 1;
            continue;
        }
        let slot = rx.slots[i];
        let len = rx.hdrs[i].msg_len as usize;
        if rx.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > cap {
            link.c.oversize += 1;
            link.slab.release(slot);
            continue;
        }
        let aux = auxdata(&rx.hdrs[i].msg_hdr);
        let mut len = len;
        if aux.tp_status & TP_STATUS_VLAN_VALID != 0 && len >= 12 {
            // The kernel moved the tag into metadata; a bridge must forward it.
            let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { aux.tp_vlan_tpid } else { 0x8100 };
            len = insert_vlan_tag(link.slab.slot_mut(slot), len, tpid, aux.tp_vlan_tci);
        }
        link.slab.set_len(slot, len);
        if aux.tp_status & TP_STATUS_CSUMNOTREADY != 0 {
            link.c.csum_partial += 1;
            if complete_checksum(link.slab.frame_mut(slot)) {
                link.c.csum_fixed += 1;
            }
        }
        link.ingest(slot, now);
    }
    for i in (got..in_pool).rev() {
        link.slab.release(rx.slots[i]);
    }
    Ok(got)
}

/// Puts a VLAN tag back between the MAC addresses and the EtherType of the `len`-byte frame at the start of
/// `buf` (which has room for 4 more bytes); returns the new length.
fn insert_vlan_tag(buf: &mut [u8], len: usize, tpid: u16, tci: u16) -> usize {
    buf.copy_within(12..len, 12 + VLAN_HLEN);
    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
    buf[14..16].copy_from_slice(&tci.to_be_bytes());
    len + VLAN_HLEN
}

/// The PACKET_AUXDATA control message of a received frame (zeroes when absent).
fn auxdata(h: &libc::msghdr) -> TpacketAuxdata {
    // SAFETY: the control buffer was filled by the kernel for this header; the CMSG_* walk stays within
    // msg_controllen, and the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET
                && (*c).cmsg_type == PACKET_AUXDATA
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(std::mem::size_of::<TpacketAuxdata>() as u32) as usize
            {
                return std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const TpacketAuxdata);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    TpacketAuxdata::default()
}

/// Sends every frame of `link` due by `now` out of `port`. Returns true when the socket is full (wait POLLOUT).
fn transmit(port: &Port, link: &mut Link, tx: &mut TxBatch, now: u64) -> io::Result<bool> {
    loop {
        tx.entries.clear();
        while tx.entries.len() < BATCH {
            match link.pop_due(now) {
                Some(e) => tx.entries.push(e),
                None => break,
            }
        }
        let k = tx.entries.len();
        if k == 0 {
            return Ok(false);
        }
        let mut i = 0;
        // Each round sends at least one frame, drops one, or returns: at most k rounds.
        while i < k {
            for j in i..k {
                let frame = link.slab.frame(tx.entries[j].2);
                tx.iovs[j] = libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
                let h = &mut tx.hdrs[j].msg_hdr;
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
                h.msg_iov = &mut tx.iovs[j];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            // SAFETY: headers i..k point at live iovecs over frames in the slab, which is not touched until the
            // call returns.
            let r = unsafe {
                libc::sendmmsg(port.fd.as_raw_fd(), tx.hdrs[i..].as_mut_ptr(), (k - i) as u32, libc::MSG_DONTWAIT)
            };
            if r > 0 {
                for e in &tx.entries[i..i + r as usize] {
                    link.c.forwarded += 1;
                    link.slab.release(e.2);
                }
                i += r as usize;
                continue;
            }
            match errno() {
                libc::EAGAIN | libc::EINTR => {
                    for e in &tx.entries[i..k] {
                        link.unpop(*e);
                    }
                    return Ok(true);
                }
                e @ (libc::ENODEV | libc::ENXIO) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{}: {}", port.name, io::Error::from_raw_os_error(e)),
                    ));
                }
                // ENOBUFS (the peer's backlog is full), ENETDOWN, EMSGSIZE...: this frame is lost.
                _ => {
                    link.c.tx_errors += 1;
                    link.slab.release(tx.entries[i].2);
                    i += 1;
                }
            }
        }
        if k < BATCH {
            return Ok(false);
        }
    }
}

/// Blocks SIGINT/SIGTERM/SIGHUP and returns a signalfd that becomes readable when one arrives.
fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; the calls initialise and fill it, then block those signals for this
    // (single-threaded) process and open a signalfd for them.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn report(label: &str, dir: &str, c: &Counters, queued: u64, extra: &str) {
    println!(
        "ixnetem: {label} {dir} rx={} forwarded={} lost={} duplicated={} reordered={} corrupted={} delayed={} \
         overflow={} oversize={} tx_errors={} sock_drops={} csum_partial={} csum_fixed={} queued={}{extra}",
        c.rx,
        c.forwarded,
        c.lost,
        c.duplicated,
        c.reordered,
        c.corrupted,
        c.delayed,
        c.overflow,
        c.oversize,
        c.tx_errors,
        c.sock_drops,
        c.csum_partial,
        c.csum_fixed,
        queued
    );
}

fn run(cli: &Cli) -> io::Result<()> {
    if !(cli.duration > 0.0 && cli.duration.is_finite()) {
        return Err(io::Error::other("--duration must be > 0"));
    }
    if !(cli.stats_every >= 0.0 && cli.stats_every.is_finite()) {
        return Err(io::Error::other("--stats-every must be >= 0"));
    }
    if cli.pool_frames < 2 || cli.pool_frames > 1 << 20 {
        return Err(io::Error::other("--pool-frames must be in 2..=1048576"));
    }
    if cli.a == cli.b {
        return Err(io::Error::other("--a and --b must be different interfaces"));
    }
    let base = Faults::from_cli(cli);
    let mut faults = [base, base];
    let overrides = [(&cli.a_to_b, "--a-to-b"), (&cli.b_to_a, "--b-to-a")];
    for (f, (spec, flag)) in faults.iter_mut().zip(overrides) {
        if let Some(s) = spec {
            f.apply(s).map_err(|e| io::Error::other(format!("{flag}: {e}")))?;
        }
    }
    let seed = cli.seed.unwrap_or_else(|| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        SplitMix64(ts.tv_sec as u64 ^ (ts.tv_nsec as u64) << 20 ^ u64::from(std::process::id()) << 40).next()
    });

    let sig = signal_fd()?;
    let ports = [Port::open(&cli.a, cli.sock_buf)?, Port::open(&cli.b, cli.sock_buf)?];
    // Room for the largest frame either side carries, plus one VLAN tag in-band and one put back from metadata.
    let slot = (ports[0].mtu.max(ports[1].mtu) + ETH_HLEN + 2 * VLAN_HLEN).max(128).next_multiple_of(64);
    let mut seeder = SplitMix64(seed);
    let mut links = [
        Link::new(&faults[0], seeder.next(), cli.pool_frames, slot),
        Link::new(&faults[1], seeder.next(), cli.pool_frames, slot),
    ];
    let mut rx = [RxBatch::new(slot), RxBatch::new(slot)];
    let mut tx = [TxBatch::new(), TxBatch::new()];
    // Wake up close to when frames are due (the default slack is 50 us).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };

    let start = now_ns();
    let deadline = start.saturating_add((cli.duration * 1e9) as u64);
    let every = (cli.stats_every * 1e9) as u64;
    let mut next_stats = if every > 0 { start.saturating_add(every) } else { u64::MAX };
    let mut last_rx = [0u64; 2];
    let mut last_report = start;
    for (i, p) in ports.iter().enumerate() {
        println!(
            "ixnetem: {} {} ifindex={} mtu={} {}",
            ["a", "b"][i],
            p.name,
            p.ifindex,
            p.mtu,
            if i == 0 { "a>b:" } else { "b>a:" }
        );
        println!("ixnetem:   {}", faults[i].describe());
    }
    println!(
        "ixnetem: running seed={seed} pool={}x{slot}B per direction duration={}s pid={}",
        cli.pool_frames,
        cli.duration,
        std::process::id()
    );

    let mut blocked = [false; 2];
    let mut stop_reason = "duration";
    loop {
        let now = now_ns();
        if now >= deadline {
            break;
        }
        // Frames due now go out before we sleep; direction d is read on port d and written on port 1-d.
        for d in 0..2 {
            links[d].release_stale(now);
            if !blocked[d] {
                blocked[d] = transmit(&ports[1 - d], &mut links[d], &mut tx[d], now)?;
            }
        }
        if now >= next_stats {
            let secs = (now - last_report) as f64 / 1e9;
            for d in 0..2 {
                links[d].c.sock_drops += read_sock_drops(ports[d].fd.as_raw_fd());
                let pps = (links[d].c.rx - last_rx[d]) as f64 / secs;
                last_rx[d] = links[d].c.rx;
                let label = format!("{:.1}s", (now - start) as f64 / 1e9);
                report(&label, ["a>b", "b>a"][d], &links[d].c, links[d].queued(), &format!(" rx_pps={pps:.0}"));
            }
            last_report = now;
            next_stats = now.saturating_add(every);
        }
        let mut wake = deadline.min(next_stats);
        for d in 0..2 {
            if !blocked[d] {
                if let Some(t) = links[d].next_event() {
                    wake = wake.min(t);
                }
            }
        }
        let wait = wake.saturating_sub(now);
        let ts = libc::timespec { tv_sec: (wait / 1_000_000_000) as i64, tv_nsec: (wait % 1_000_000_000) as i64 };
        // Port p is written by direction 1-p; ask for POLLOUT when that direction is blocked.
        let out = |p: usize| if blocked[1 - p] { libc::POLLOUT } else { 0 };
        let mut fds = [
            libc::pollfd { fd: ports[0].fd.as_raw_fd(), events: libc::POLLIN | out(0), revents: 0 },
            libc::pollfd { fd: ports[1].fd.as_raw_fd(), events: libc::POLLIN | out(1), revents: 0 },
            libc::pollfd { fd: sig.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: fds is a live array of 3 pollfds; the timespec lives across the call.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 3, &ts, std::ptr::null()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        if fds[2].revents != 0 {
            // SAFETY: signalfd_siginfo is plain data; we read at most its size into it.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: valid fd and a buffer of the size given.
            unsafe {
                libc::read(
                    sig.as_raw_fd(),
                    &mut si as *mut libc::signalfd_siginfo as *mut libc::c_void,
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            stop_reason = match si.ssi_signo as i32 {
                libc::SIGINT => "SIGINT",
                libc::SIGTERM => "SIGTERM",
                libc::SIGHUP => "SIGHUP",
                _ => "signal",
            };
            break;
        }
        for p in 0..2 {
            if fds[p].revents & libc::POLLOUT != 0 {
                blocked[1 - p] = false;
            }
            if fds[p].revents & (libc::POLLIN | libc::POLLERR) != 0 {
                receive(&ports[p], &mut links[p], &mut rx[p])?;
            }
        }
    }
    let secs = (now_ns() - start) as f64 / 1e9;
    for d in 0..2 {
        links[d].c.sock_drops += read_sock_drops(ports[d].fd.as_raw_fd());
        report("final", ["a>b", "b>a"][d], &links[d].c, links[d].queued(), "");
    }
    println!("ixnetem: stopped ({stop_reason}) after {secs:.1}s");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ixnetem: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: usize = 128;

    fn link(f: Faults, seed: u64) -> Link {
        Link::new(&f, seed, 64, SLOT)
    }

    /// Puts a 64-byte frame carrying `seq` into the link at `now`.
    fn put(l: &mut Link, seq: u32, now: u64) {
        let s = l.slab.alloc().expect("pool has room");
        l.slab.set_len(s, 64);
        let f = l.slab.frame_mut(s);
        f.fill(seq as u8);
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        l.c.rx += 1;
        l.ingest(s, now);
    }

    /// Everything due by `now`, as sequence numbers, freeing the slots.
    fn take(l: &mut Link, now: u64) -> Vec<u32> {
        l.release_stale(now);
        let mut out = Vec::new();
        while let Some((_, _, s)) = l.pop_due(now) {
            let f = l.slab.frame(s);
            out.push(u32::from_be_bytes([f[14], f[15], f[16], f[17]]));
            l.slab.release(s);
            l.c.forwarded += 1;
        }
        out
    }

    fn balanced(l: &Link) -> bool {
        let c = &l.c;
        c.rx + c.duplicated == c.forwarded + c.lost + c.overflow + c.oversize + c.tx_errors + l.queued()
    }

    /// Sends n frames one by one, 1 ms apart, collecting what comes out; then flushes.
    fn run(f: Faults, seed: u64, n: u32) -> (Vec<u32>, Link) {
        let mut l = link(f, seed);
        let mut got = Vec::new();
        let mut now = 1_000_000_000;
        for seq in 0..n {
            put(&mut l, seq, now);
            got.extend(take(&mut l, now));
            assert!(balanced(&l));
            now += 100_000;
        }
        got.extend(take(&mut l, now + 10_000_000_000));
        assert_eq!(l.queued(), 0);
        assert!(balanced(&l));
        assert_eq!(l.slab.free.len(), 64, "every slot back");
        (got, l)
    }

    #[track_caller]
    fn assert_rate(count: u64, n: u32, p: f64) {
        let mean = f64::from(n) * p;
        let sd = (mean * (1.0 - p)).sqrt();
        assert!((count as f64 - mean).abs() < 5.0 * sd, "count {count} far from {mean} (sd {sd:.1})");
    }

    #[test]
    fn a_perfect_link_passes_everything_in_order() {
        let (got, l) = run(Faults::default(), 1, 1000);
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(l.c, Counters { rx: 1000, forwarded: 1000, ..Counters::default() });
    }

    #[test]
    fn loss_at_its_rate_and_order_kept() {
        let (got, l) = run(Faults { loss: 0.2, ..Faults::default() }, 7, 10_000);
        assert_rate(l.c.lost, 10_000, 0.2);
        assert_eq!(got.len() as u64, 10_000 - l.c.lost);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn duplicates_follow_their_original() {
        let (got, l) = run(Faults { duplicate: 0.1, ..Faults::default() }, 7, 10_000);
        assert_rate(l.c.duplicated, 10_000, 0.1);
        assert_eq!(got.windows(2).filter(|w| w[0] == w[1]).count() as u64, l.c.duplicated);
    }

    #[test]
    fn reordering_puts_a_held_frame_behind_the_next() {
        let (got, l) = run(Faults { reorder: 0.3, ..Faults::default() }, 7, 10_000);
        assert!(l.c.reordered > 1000);
        assert_eq!(got.windows(2).filter(|w| w[0] > w[1]).count() as u64, l.c.reordered);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_held_frame_times_out() {
        let mut l = link(Faults { reorder: 1.0, reorder_timeout_ms: 2.0, ..Faults::default() }, 3);
        put(&mut l, 0, 0);
        assert!(take(&mut l, 1_999_999).is_empty());
        assert_eq!(l.next_event(), Some(2_000_000));
        assert_eq!(take(&mut l, 2_000_000), vec![0]);
        for seq in 1..=4 {
            put(&mut l, seq, 3_000_000);
        }
        assert_eq!(take(&mut l, 3_000_000), vec![2, 1, 4, 3]);
        assert_eq!(l.c.reordered, 2);
    }

    #[test]
    fn corruption_flips_one_bit() {
        let mut l = link(Faults { corrupt: 1.0, ..Faults::default() }, 9);
        for seq in 0..40 {
            put(&mut l, seq, 0);
            let (_, _, s) = l.pop_due(0).unwrap();
            let mut want = [seq as u8; 64];
            want[14..18].copy_from_slice(&seq.to_be_bytes());
            let bits: u32 = l.slab.frame(s).iter().zip(want.iter()).map(|(a, b)| (a ^ b).count_ones()).sum();
            assert_eq!(bits, 1);
            l.slab.release(s);
        }
        assert_eq!(l.c.corrupted, 40);
    }

    #[test]
    fn delay_and_jitter() {
        let f = Faults { delay_ms: 2.0, jitter_ms: 1.0, ..Faults::default() };
        let mut l = link(f, 5);
        for seq in 0..50 {
            put(&mut l, seq, 0);
        }
        assert!(take(&mut l, 1_999_999).is_empty());
        let mut got = take(&mut l, 3_000_000);
        assert_eq!(got.len(), 50);
        assert!(got.windows(2).any(|w| w[0] > w[1]), "jitter reorders");
        got.sort_unstable();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert_eq!(l.c.delayed, 50);

        let mut l = link(Faults { jitter_keeps_order: true, ..f }, 5);
        for seq in 0..50 {
            put(&mut l, seq, 0);
        }
        assert_eq!(take(&mut l, 3_000_000), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_pool_drops_copies() {
        let mut l = Link::new(&Faults { duplicate: 1.0, delay_ms: 1.0, ..Faults::default() }, 1, 4, SLOT);
        put(&mut l, 0, 0);
        put(&mut l, 1, 0);
        assert_eq!(l.slab.alloc(), None);
        assert_eq!(take(&mut l, 1_000_000), vec![0, 0, 1, 1]);
        let mut l = Link::new(&Faults { duplicate: 1.0, ..Faults::default() }, 1, 3, SLOT);
        put(&mut l, 0, 0);
        put(&mut l, 1, 0);
        assert_eq!(l.c.overflow, 1);
        assert_eq!(take(&mut l, 0), vec![0, 0, 1]);
        assert!(balanced(&l));
    }

    #[test]
    fn same_seed_same_faults() {
        let f = Faults { loss: 0.05, duplicate: 0.05, reorder: 0.05, corrupt: 0.05, ..Faults::default() };
        let (a, la) = run(f, 11, 3000);
        let (b, lb) = run(f, 11, 3000);
        let (c, lc) = run(f, 12, 3000);
        assert_eq!((a.clone(), la.c), (b, lb.c));
        assert!(a != c || la.c != lc.c);
    }

    #[test]
    fn overrides_parse() {
        let mut f = Faults::default();
        f.apply("loss=0.1, delay=5,jitter-keeps-order=yes,dup=1").unwrap();
        assert_eq!(
            f,
            Faults { loss: 0.1, delay_ms: 5.0, jitter_keeps_order: true, duplicate: 1.0, ..Faults::default() }
        );
        assert!(f.apply("loss=2").is_err());
        assert!(f.apply("speed=3").is_err());
        assert!(f.apply("loss").is_err());
        assert!(f.apply("delay=-1").is_err());
    }

    #[test]
    fn a_stripped_vlan_tag_goes_back_in() {
        let mut buf = [0u8; 32];
        let frame: Vec<u8> = (1..=20).collect();
        buf[..20].copy_from_slice(&frame);
        assert_eq!(insert_vlan_tag(&mut buf, 20, 0x8100, 0x200a), 24);
        assert_eq!(buf[..12], frame[..12]);
        assert_eq!(buf[12..16], [0x81, 0x00, 0x20, 0x0a]);
        assert_eq!(buf[16..24], frame[12..20]);
    }

    /// An Ethernet + IPv4 + UDP/TCP frame with a partial checksum (the pseudo-header sum in the field).
    fn partial_frame(proto: u8, payload: &[u8]) -> (Vec<u8>, usize) {
        let l4_hdr = if proto == 6 { 20 } else { 8 };
        let l4_len = l4_hdr + payload.len();
        let mut f = vec![0u8; 14 + 20 + l4_len];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
        let field = if proto == 6 { 16 } else { 6 };
        f[34 + l4_hdr..].copy_from_slice(payload);
        if proto == 6 {
            f[34 + 12] = 5 << 4;
        } else {
            f[38..40].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let pseudo = ones_sum(&[198, 18, 0, 1, 198, 18, 0, 2, 0, proto]) + l4_len as u64;
        f[34 + field..36 + field].copy_from_slice(&fold(pseudo).to_be_bytes());
        (f, 34 + field)
    }

    #[test]
    fn partial_checksums_are_completed() {
        for proto in [6u8, 17] {
            let (mut f, at) = partial_frame(proto, b"hello, ixnetem!");
            assert!(complete_checksum(&mut f));
            // A complete checksum makes pseudo-header + segment sum to 0xffff.
            let l4 = &f[34..];
            let pseudo = ones_sum(&[198, 18, 0, 1, 198, 18, 0, 2, 0, proto]) + l4.len() as u64;
            assert_eq!(fold(pseudo + ones_sum(l4)), 0xffff, "proto {proto}");
            assert_ne!(u16::from_be_bytes([f[at], f[at + 1]]), 0);
        }
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!complete_checksum(&mut arp));
        let (mut short, _) = partial_frame(17, b"x");
        short.truncate(40);
        assert!(!complete_checksum(&mut short));
    }
}
