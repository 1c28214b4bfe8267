//! AF_XDP backend: one XDP socket (XSK) per NIC queue, with the core's [`MbufPool`] registered as its UMEM, so
//! frames move between the NIC and mbufs without a copy in our process.
//!
//! Two objects:
//! - [`XdpProgram`]: one per interface, shared (`Arc`) by all its queues. It owns an XSKMAP, the six-slot
//!   redirect program from [`bpf::xsk_redirect_program`] and the bpf_link that attaches it; dropping the last
//!   `Arc` (or the process dying, even by SIGKILL) detaches it, once no forked child still holds a copy of the
//!   link fd (they are `O_CLOEXEC`: a child holds them only until it execs). Queues without a socket fall through
//!   to the kernel.
//! - [`XskQueue`]: one socket bound to one queue, implementing [`NicQueue`]. It owns the four rings (fill,
//!   completion, RX, TX) through RAII mappings and reaches their slots only through `&mut self`.
//!
//! Frame ownership is tracked exactly: a bit per pool frame says "the kernel has it" (posted on the fill ring, or
//! on the TX ring and not yet completed). A descriptor the kernel hands back is accepted only if it names a frame
//! the kernel really holds, lies inside the pool, and fits its frame; anything else is counted and never trusted.
//! That same bit set lets [`NicQueue::release`] close the socket and give *every* frame back to the pool.
//!
//! Pool and queue: the UMEM is the pool's memory, and the pool must be the one passed to every call (checked; a
//! foreign pool is refused, logged once, and the call does nothing). Call [`NicQueue::release`], then drop the
//! queue, then the pool: `release` is what gives the frames the kernel held back to the pool (`Drop` has no pool
//! to give them to). Any other order is still memory-safe: the kernel pins the UMEM's pages while the socket
//! lives and writes only into frames posted on the fill ring, which are simply lost to the pool.
//!
//! Copy mode (veth, and any driver without AF_XDP zero-copy) is what runs on the development machines: RX data is
//! copied into the posted frame at `XDP_PACKET_HEADROOM` (256), which is also [`crate::mbuf::HEADROOM`]; TX is
//! sent by `sendto` kicks, at most 32 frames per call, so [`NicQueue::maintain`] keeps kicking while the kernel
//! makes progress.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::mbuf::{Mbuf, MbufPool, FRAME_SIZE};
use crate::nic::{Batch, NicCaps, NicQueue, NicStats, MAX_BATCH};
use crate::sys::bpf;
use crate::sys::xdp::{self, RingField, RingKind, RingMap, XdpDesc, XdpStatistics};

/// Fill-ring refills happen in batches of at least this many frames (DESIGN §3: replenish in batches >= 32).
pub const FILL_BATCH: u32 = 32;
/// Frames the copy-mode kernel sends per `sendto` kick (`TX_BATCH_SIZE` in `net/xdp/xsk.c`).
const KERNEL_TX_BATCH: u32 = 32;
/// `XDP_STATISTICS` is read once every this many `maintain` calls (it is a syscall, ~7 us here; a busy-polling
/// core makes ~10M idle `maintain` calls a second, so this costs well under 1%).
pub const STATS_REFRESH_CYCLES: u32 = 16384;
/// A queue whose socket was just closed stays busy until the kernel's deferred teardown runs: `open` retries
/// `EBUSY` this many times, [`BUSY_RETRY_SLEEP`] apart, before reporting the queue as taken.
const BIND_BUSY_RETRIES: u32 = 200;
/// Pause between those retries (and between the probes of a zero-copy `release`).
const BUSY_RETRY_SLEEP: std::time::Duration = std::time::Duration::from_millis(5);
/// Probes a zero-copy `release` makes for the driver to let go of the UMEM before giving up on those frames.
const TEARDOWN_PROBES: u32 = 400;
/// Rounds of reap + kick a `release` spends letting queued TX frames go out before it closes the socket.
const RELEASE_TX_ROUNDS: u32 = 10_000;
/// Ethernet header bytes, for turning a frame size into an L3 MTU.
const ETH_HLEN: usize = 14;
/// Name of the XSKMAP and program as `bpftool` shows them.
const MAP_NAME: &str = "ix_xsks";
const PROG_NAME: &str = "ix_xsk_redirect";
/// License of the redirect program (GPL-compatible, needed by nothing it calls but harmless).
const PROG_LICENSE: &std::ffi::CStr = c"Dual MIT/GPL";

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`). veth and the common 10G+ NICs have it.
    Native,
    /// After the skb is built (`XDP_FLAGS_SKB_MODE`): works on every interface, slower.
    Generic,
    /// Native, falling back to generic with a log line when the driver refuses.
    Auto,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native | XdpMode::Auto => bpf::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => bpf::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        })
    }
}

/// An `io::Error` with a sentence of context in front, keeping the original (and its errno) as the source.
#[derive(Debug)]
struct SetupError {
    msg: String,
    source: io::Error,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.msg, self.source)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn context(source: io::Error, msg: String) -> io::Error {
    io::Error::new(source.kind(), SetupError { msg, source })
}

const PRIVILEGES: &str = "AF_XDP needs root or CAP_NET_ADMIN + CAP_BPF (and CAP_NET_RAW for the socket)";

/// The errno behind `e`, also when it is wrapped with context here or is a [`bpf::ProgLoadError`]; 0 if none.
pub fn errno(e: &io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    match e.get_ref() {
        Some(inner) => {
            if let Some(s) = inner.downcast_ref::<SetupError>() {
                errno(&s.source)
            } else if let Some(p) = inner.downcast_ref::<bpf::ProgLoadError>() {
                errno(&p.errno)
            } else {
                0
            }
        }
        None => 0,
    }
}

/// The XDP program that redirects an interface's queues into AF_XDP sockets, attached through a bpf_link.
///
/// One per interface, shared by its [`XskQueue`]s (`Arc`). Fields drop in order: the link first (detaching the
/// program), then the program, then the map.
#[derive(Debug)]
pub struct XdpProgram {
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    ifname: String,
    ifindex: u32,
    queues: u32,
    mode: XdpMode,
}

impl XdpProgram {
    /// Loads the redirect program with an XSKMAP for queue ids `0..queues` and attaches it to `ifname` in `mode`.
    ///
    /// Errors say what to do: missing privileges, no such interface, another XDP program already attached
    /// (`EBUSY`/`EEXIST`), or veth's `ENOSPC` (fewer RX queues than the peer has TX queues).
    pub fn attach(ifname: &str, queues: u32, mode: XdpMode) -> io::Result<Arc<XdpProgram>> {
        if queues == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an XSKMAP needs at least one queue"));
        }
        let ifindex = crate::sys::if_nametoindex(ifname)?;
        let map = bpf::create_xskmap(MAP_NAME, queues).map_err(|e| match errno(&e) {
            libc::EPERM => context(e, format!("creating an XSKMAP: {PRIVILEGES}")),
            _ => context(e, format!("creating an XSKMAP for {queues} queues")),
        })?;
        let insns = bpf::xsk_redirect_program(map.as_fd());
        let prog = bpf::load_xdp_program(PROG_NAME, &insns, PROG_LICENSE).map_err(|e| {
            // The error carries a `bpf::ProgLoadError` (errno + verifier log). EACCES is the verifier's "no".
            if errno(&e) == libc::EPERM {
                context(e, format!("loading the XDP redirect program: {PRIVILEGES}"))
            } else {
                context(e, "loading the XDP redirect program".to_string())
            }
        })?;
        let (link, mode) = match mode {
            XdpMode::Native | XdpMode::Generic => (Self::link(&prog, ifname, ifindex, mode)?, mode),
            XdpMode::Auto => match Self::link(&prog, ifname, ifindex, XdpMode::Native) {
                Ok(link) => (link, XdpMode::Native),
                Err(e) if Self::native_may_fall_back(&e) => {
                    log::warn!("{e}; falling back to generic XDP on {ifname} (slower: an skb is built per frame)");
                    (Self::link(&prog, ifname, ifindex, XdpMode::Generic)?, XdpMode::Generic)
                }
                Err(e) => return Err(e),
            },
        };
        log::info!("XDP redirect program attached to {ifname} (ifindex {ifindex}) in {mode} mode, {queues} queue(s)");
        if mode == XdpMode::Generic && queues > 1 && xdp::interface_driver(ifname).is_ok_and(|d| d == "veth") {
            // Measured: veth's skb path records no RX queue, so generic XDP sees every frame on queue 0.
            log::warn!(
                "generic XDP on veth {ifname} delivers every frame on RX queue 0; use native mode for {queues} queues"
            );
        }
        Ok(Arc::new(XdpProgram { link, prog, map, ifname: ifname.to_string(), ifindex, queues, mode }))
    }

    /// Whether a failed native attach is worth retrying in generic mode (the interface is fine, native is not).
    fn native_may_fall_back(e: &io::Error) -> bool {
        !matches!(errno(e), libc::EPERM | libc::ENODEV | libc::EBUSY | libc::EEXIST)
    }

    fn link(prog: &OwnedFd, ifname: &str, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
        bpf::link_create_xdp(prog.as_fd(), ifindex, mode.flags()).map_err(|e| {
            let msg = match errno(&e) {
                libc::EPERM => format!("attaching XDP to {ifname}: {PRIVILEGES}"),
                libc::ENODEV => format!("attaching XDP: no network interface {ifname:?}"),
                libc::EBUSY => format!(
                    "an XDP program is already attached to {ifname} in {mode} mode (see `ip link show {ifname}`; \
                     if it is a leftover, remove it with `ip link set {ifname} xdp off`, else stop its owner)"
                ),
                libc::EEXIST => format!(
                    "an XDP program is already attached to {ifname} in the other mode than {mode} (native and \
                     generic XDP cannot be active together; see `ip link show {ifname}`)"
                ),
                libc::ENOSPC => format!(
                    "native XDP on {ifname} refused with ENOSPC: a veth needs at least as many RX queues as its \
                     peer has TX queues; give both ends the same counts (`ip link add ... numrxqueues N \
                     numtxqueues N`, or `ethtool -L <peer> tx N`), or use generic mode"
                ),
                libc::EOPNOTSUPP => format!("the driver of {ifname} has no {mode} XDP (try generic mode)"),
                libc::ERANGE => format!("{ifname}'s MTU is too large for {mode} XDP (lower it, or use generic mode)"),
                _ => format!("attaching XDP to {ifname} in {mode} mode"),
            };
            context(e, msg)
        })
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Queue ids `0..queues()` can have a socket.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// The mode the program actually runs in ([`XdpMode::Native`] or [`XdpMode::Generic`], never `Auto`).
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The bpf_link fd (closing it detaches the program).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }

    /// The program fd.
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    fn insert(&self, queue_id: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
        bpf::map_update_u32(self.map.as_fd(), queue_id, xsk.as_raw_fd() as u32)
    }

    fn remove(&self, queue_id: u32) -> io::Result<()> {
        match bpf::map_delete_u32(self.map.as_fd(), queue_id) {
            Err(e) if errno(&e) == libc::ENOENT => Ok(()),
            r => r,
        }
    }
}

/// Sizes and modes of one XSK. Ring sizes are powers of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries (the most frames in flight before `transmit` pushes back).
    pub tx_size: u32,
    /// Fill ring entries.
    pub fill_size: u32,
    /// Completion ring entries (at least `tx_size`, so the kernel never stalls on a full completion ring).
    pub comp_size: u32,
    /// Frames kept posted for RX; `None` = `min(fill_size, pool capacity / 2)`, leaving the rest of the pool for
    /// TX and for frames the stack or the app holds.
    pub fill_frames: Option<u32>,
    /// `Some(true)` demands zero-copy, `Some(false)` copy mode, `None` tries zero-copy and falls back to copy
    /// (veth refuses zero-copy with EOPNOTSUPP).
    pub zero_copy: Option<bool>,
    /// Bind with `XDP_USE_NEED_WAKEUP`, so the dataplane makes syscalls only when the kernel asks for them.
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        // RX ring and fill ring sized to ride out a few milliseconds of the dataplane being descheduled at
        // several hundred kpps (the 1024-entry RX ring overflowed in the benchmarks on this shared 2-core VM).
        XskConfig {
            rx_size: 2048,
            tx_size: 1024,
            fill_size: 4096,
            comp_size: 2048,
            fill_frames: None,
            zero_copy: None,
            need_wakeup: true,
        }
    }
}

impl XskConfig {
    fn validate(&self) -> io::Result<()> {
        let sizes = [
            ("rx_size", self.rx_size),
            ("tx_size", self.tx_size),
            ("fill_size", self.fill_size),
            ("comp_size", self.comp_size),
        ];
        for (name, v) in sizes {
            if !v.is_power_of_two() || v > 1 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("XskConfig::{name} = {v}: ring sizes are powers of two up to 2^20"),
                ));
            }
        }
        if self.fill_frames.is_some_and(|f| f > self.fill_size) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "XskConfig::fill_frames exceeds fill_size"));
        }
        Ok(())
    }

    fn fill_target(&self, pool_frames: u32) -> u32 {
        self.fill_frames.unwrap_or_else(|| self.fill_size.min(pool_frames / 2).max(1)).min(pool_frames)
    }
}

/// A descriptor type a ring can carry (`u64` addresses on fill/completion, [`XdpDesc`] on RX/TX).
trait RingDesc: Copy + fmt::Debug {}
impl RingDesc for u64 {}
impl RingDesc for XdpDesc {}

/// Reference to one `u32` word of a ring header, as an atomic.
fn ring_word(map: &RingMap, field: RingField) -> &AtomicU32 {
    // SAFETY: `RingMap::field` points inside the live mapping, 4-byte aligned (checked at map time), and stays
    // valid for the borrow of `map`. The kernel touches these words only with single-word accesses
    // (READ_ONCE/WRITE_ONCE, smp_load_acquire/smp_store_release), so treating them as atomics races with nothing.
    unsafe { AtomicU32::from_ptr(map.field(field).as_ptr()) }
}

/// The producer side of a ring (fill, TX): we write slots and the producer index, the kernel the consumer index.
#[derive(Debug)]
struct ProdRing<T: RingDesc> {
    map: RingMap,
    mask: u32,
    /// Our producer index (published on `submit`).
    cached_prod: u32,
    /// The kernel's consumer index plus the ring size, so `cached_cons - cached_prod` is the free space.
    cached_cons: u32,
    /// Slots reserved by the last `reserve`, writable with `write`.
    reserved: u32,
    _desc: PhantomData<T>,
}

impl<T: RingDesc> ProdRing<T> {
    fn new(map: RingMap) -> io::Result<Self> {
        if map.desc_size() != std::mem::size_of::<T>() {
            return Err(io::Error::other("AF_XDP ring mapped with the wrong descriptor size"));
        }
        let size = map.entries();
        let cached_prod = ring_word(&map, RingField::Producer).load(Ordering::Relaxed);
        let cached_cons = ring_word(&map, RingField::Consumer).load(Ordering::Acquire).wrapping_add(size);
        Ok(ProdRing { mask: size - 1, cached_prod, cached_cons, reserved: 0, map, _desc: PhantomData })
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Reserves up to `want` slots and returns how many; reads the kernel's consumer index only when the cached
    /// view cannot satisfy `want`.
    fn reserve(&mut self, want: u32) -> u32 {
        let mut free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free < want {
            self.cached_cons =
                ring_word(&self.map, RingField::Consumer).load(Ordering::Acquire).wrapping_add(self.size());
            // A consumer index ahead of our producer would be a kernel bug; never believe more than the ring.
            free = self.cached_cons.wrapping_sub(self.cached_prod).min(self.size());
        }
        self.reserved = free.min(want);
        self.reserved
    }

    /// Writes reserved slot `i` (`i < reserved`).
    fn write(&mut self, i: u32, desc: T) {
        debug_assert!(i < self.reserved, "write outside the reservation");
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot <= mask < entries`, and the mapping holds `entries` descriptors of `size_of::<T>()` bytes
        // (checked in `new` and at map time) at an 8-byte aligned offset. `&mut self` makes us the only writer on
        // our side; the kernel does not read slots past the published producer index, and a reserved slot is one.
        unsafe { self.map.slot_base().cast::<T>().add(slot).write(desc) };
    }

    /// Publishes the first `n` reserved slots to the kernel.
    fn submit(&mut self, n: u32) {
        let n = n.min(self.reserved);
        self.reserved = 0;
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the slot writes above become visible before the kernel sees the new producer index.
        ring_word(&self.map, RingField::Producer).store(self.cached_prod, Ordering::Release);
    }

    /// Slots published but not yet consumed by the kernel.
    fn pending(&self) -> u32 {
        let cons = ring_word(&self.map, RingField::Consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(cons).min(self.size())
    }

    /// Whether the kernel asked for a wake-up syscall.
    fn needs_wakeup(&self) -> bool {
        ring_word(&self.map, RingField::Flags).load(Ordering::Relaxed) & xdp::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The consumer side of a ring (RX, completion): the kernel writes slots and the producer index, we the consumer.
#[derive(Debug)]
struct ConsRing<T: RingDesc> {
    map: RingMap,
    mask: u32,
    /// The kernel's producer index as last read.
    cached_prod: u32,
    /// Our consumer index (published on `release`).
    cached_cons: u32,
    /// Slots made readable by the last `peek`.
    peeked: u32,
    _desc: PhantomData<T>,
}

impl<T: RingDesc> ConsRing<T> {
    fn new(map: RingMap) -> io::Result<Self> {
        if map.desc_size() != std::mem::size_of::<T>() {
            return Err(io::Error::other("AF_XDP ring mapped with the wrong descriptor size"));
        }
        let size = map.entries();
        let cached_prod = ring_word(&map, RingField::Producer).load(Ordering::Acquire);
        let cached_cons = ring_word(&map, RingField::Consumer).load(Ordering::Relaxed);
        Ok(ConsRing { mask: size - 1, cached_prod, cached_cons, peeked: 0, map, _desc: PhantomData })
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Makes up to `want` filled slots readable and returns how many.
    fn peek(&mut self, want: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail < want {
            // Acquire: the kernel's slot writes are visible once we see the producer index that covers them.
            self.cached_prod = ring_word(&self.map, RingField::Producer).load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        // Never believe more than a ring's worth, whatever the producer index says.
        self.peeked = avail.min(self.size()).min(want);
        self.peeked
    }

    /// Reads peeked slot `i` (`i < peeked`).
    fn read(&self, i: u32) -> T {
        debug_assert!(i < self.peeked, "read outside the peeked range");
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot < entries` and the mapping holds `entries` aligned descriptors of `T` (checked at map time
        // and in `new`). The kernel filled this slot before publishing the producer index we acquired, and does
        // not touch it again until we release it. Any bit pattern is a valid `u64`/`XdpDesc`.
        unsafe { self.map.slot_base().cast::<T>().add(slot).read() }
    }

    /// Hands the first `n` peeked slots back to the kernel.
    fn release(&mut self, n: u32) {
        let n = n.min(self.peeked);
        self.peeked = 0;
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the slots happen before the kernel may overwrite them.
        ring_word(&self.map, RingField::Consumer).store(self.cached_cons, Ordering::Release);
    }
}

/// One bit per pool frame: set while the kernel owns the frame (fill ring, RX path, TX ring, completion ring).
#[derive(Debug)]
struct FrameSet {
    words: Vec<u64>,
    frames: u32,
}

impl FrameSet {
    fn new(frames: u32) -> FrameSet {
        FrameSet { words: vec![0; (frames as usize).div_ceil(64)], frames }
    }

    /// Marks `idx`; false if it was already marked (or is out of range).
    fn insert(&mut self, idx: u32) -> bool {
        if idx >= self.frames {
            return false;
        }
        let Some(w) = self.words.get_mut(idx as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (idx % 64);
        let was = *w & bit != 0;
        *w |= bit;
        !was
    }

    /// Unmarks `idx`; false if it was not marked (or is out of range).
    fn take(&mut self, idx: u32) -> bool {
        let Some(w) = self.words.get_mut(idx as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (idx % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        was
    }

    /// Unmarks everything, calling `f` for each marked index.
    fn drain(&mut self, mut f: impl FnMut(u32)) {
        for (wi, w) in self.words.iter_mut().enumerate() {
            while *w != 0 {
                let b = w.trailing_zeros();
                *w &= *w - 1;
                f(wi as u32 * 64 + b);
            }
        }
    }

    fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
}

/// The socket and its four rings. Field order is drop order: the rings are unmapped, then the fd is closed; the
/// kernel releases the socket (and every frame it holds) once both are gone.
#[derive(Debug)]
struct Socket {
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    rx: ConsRing<XdpDesc>,
    tx: ProdRing<XdpDesc>,
    fd: OwnedFd,
}

/// Ownership counters and the frame bit set, split from the socket so both can be borrowed at once.
#[derive(Debug)]
struct Frames {
    /// Frames the kernel holds.
    kernel: FrameSet,
    /// Frames posted for RX (fill ring, kernel RX path, RX ring) not yet received.
    rx_posted: u32,
    /// Frames posted for TX not yet completed.
    tx_in_flight: u32,
    /// Frames in the pool (`capacity`), bound for every descriptor.
    pool_frames: u32,
}

impl Frames {
    /// Accepts an RX descriptor: `Some(mbuf)` for a sound one; a bad one is counted, and its frame (when it is
    /// one the kernel held) goes back to the pool.
    fn accept_rx(&mut self, d: XdpDesc, pool: &mut MbufPool, stats: &mut NicStats) -> Option<Mbuf> {
        let index = d.addr / FRAME_SIZE as u64;
        let off = (d.addr % FRAME_SIZE as u64) as usize;
        let len = d.len as usize;
        if index >= self.pool_frames as u64 || !self.kernel.take(index as u32) {
            // Not a frame the kernel held: owned by someone else, or not ours at all. Touch nothing.
            stats.rx_errors += 1;
            return None;
        }
        let index = index as u32;
        self.rx_posted = self.rx_posted.saturating_sub(1);
        if len == 0 || off + len > FRAME_SIZE || d.options != 0 {
            // Ours again, but the descriptor does not describe a single frame inside it.
            stats.rx_errors += 1;
            pool.free_index(index);
            return None;
        }
        stats.rx_frames += 1;
        Some(Mbuf::from_raw(index, off, len))
    }

    /// Takes back a completed TX frame.
    fn complete_tx(&mut self, addr: u64, pool: &mut MbufPool, stats: &mut NicStats) {
        let index = addr / FRAME_SIZE as u64;
        if index < self.pool_frames as u64 && self.kernel.take(index as u32) {
            self.tx_in_flight = self.tx_in_flight.saturating_sub(1);
            pool.free_index(index as u32);
        } else {
            stats.tx_errors += 1;
        }
    }

    /// Reaps the completion ring into the pool, in batches; bounded by one ring's worth per call.
    fn reap(&mut self, comp: &mut ConsRing<u64>, pool: &mut MbufPool, stats: &mut NicStats) {
        let mut budget = comp.size();
        while budget > 0 {
            let n = comp.peek(budget.min(MAX_BATCH as u32));
            if n == 0 {
                break;
            }
            for i in 0..n {
                let addr = comp.read(i);
                self.complete_tx(addr, pool, stats);
            }
            comp.release(n);
            budget -= n;
        }
    }
}

/// One AF_XDP socket bound to one queue of an interface; the [`NicQueue`] of the AF_XDP backend.
///
/// Lifecycle: [`XskQueue::open`], then `receive`/`transmit`/`maintain` every cycle with the same pool, then
/// [`NicQueue::release`] (closes the socket, returns every frame) or drop (closes the socket; frames the kernel
/// held stay out of the pool). Drop it before the pool; see the module docs for why the other order is still safe.
///
/// Counters: `tx_ring_full` counts frames refused for lack of TX slots (they stay in the caller's batch); an
/// empty mbuf given to `transmit` is freed and counted in `tx_errors` (the kernel would skip it without ever
/// completing it); RX descriptors that fail validation count in `rx_errors`. [`NicQueue::stats`] adds the
/// kernel's `XDP_STATISTICS` as last read (`rx_dropped + rx_ring_full` into `rx_dropped`, invalid descriptors
/// into the error counters); the rest is in [`XskQueue::kernel_stats`].
#[derive(Debug)]
pub struct XskQueue {
    sock: Option<Socket>,
    frames: Frames,
    prog: Arc<XdpProgram>,
    queue_id: u32,
    /// Start of the UMEM, to recognise the pool it belongs to.
    umem_base: usize,
    fill_target: u32,
    zero_copy: bool,
    need_wakeup: bool,
    caps: NicCaps,
    mac: [u8; 6],
    driver: String,
    stats: NicStats,
    kstats: XdpStatistics,
    cycles: u32,
    foreign_pool_logged: bool,
}

impl XskQueue {
    /// Opens an XSK on queue `queue_id` of `ifname` (the interface `prog` is attached to), registers `pool`'s
    /// memory as its UMEM, maps and sizes the rings, binds (zero-copy or copy per `cfg`, with need-wakeup), posts
    /// the fill ring from the pool and puts the socket into the program's XSKMAP.
    pub fn open(
        prog: &Arc<XdpProgram>,
        ifname: &str,
        queue_id: u32,
        pool: &mut MbufPool,
        cfg: XskConfig,
    ) -> io::Result<XskQueue> {
        cfg.validate()?;
        let ifindex = crate::sys::if_nametoindex(ifname)?;
        if ifindex != prog.ifindex() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the XDP program is attached to {}, not {ifname}", prog.ifname()),
            ));
        }
        if queue_id >= prog.queues() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "queue {queue_id} is outside the XSKMAP of {} queue(s) on {ifname} (XdpProgram::attach's `queues`)",
                    prog.queues()
                ),
            ));
        }
        let (rxq, txq) = match xdp::interface_channels(ifname) {
            Ok(ch) => (ch.rx_count + ch.combined_count, ch.tx_count + ch.combined_count),
            Err(_) => (0, 0), // The driver does not say; bind will.
        };
        if rxq > 0 && queue_id >= rxq {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ifname} has {rxq} RX queue(s); queue {queue_id} does not exist (`ethtool -l {ifname}`)"),
            ));
        }
        if txq > 0 && queue_id >= txq {
            log::warn!("{ifname} has {txq} TX queue(s): queue {queue_id} can receive but copy-mode TX will not send");
        }

        let fd = xdp::socket().map_err(|e| match errno(&e) {
            libc::EPERM => context(e, format!("creating an AF_XDP socket: {PRIVILEGES}")),
            libc::EAFNOSUPPORT => context(e, "this kernel has no AF_XDP (CONFIG_XDP_SOCKETS)".to_string()),
            _ => context(e, "creating an AF_XDP socket".to_string()),
        })?;
        let umem_len = pool.capacity() as usize * FRAME_SIZE;
        xdp::register_umem(fd.as_fd(), pool.region(), umem_len, FRAME_SIZE as u32, 0).map_err(|e| {
            let hint = if errno(&e) == libc::ENOMEM || errno(&e) == libc::EPERM {
                " (locked-memory limit? `ulimit -l`)"
            } else {
                ""
            };
            context(e, format!("registering a {} KiB UMEM{hint}", umem_len / 1024))
        })?;
        let sizes = [
            (RingKind::Fill, cfg.fill_size),
            (RingKind::Completion, cfg.comp_size),
            (RingKind::Rx, cfg.rx_size),
            (RingKind::Tx, cfg.tx_size),
        ];
        for (ring, n) in sizes {
            xdp::set_ring_size(fd.as_fd(), ring, n)
                .map_err(|e| context(e, format!("sizing the AF_XDP {ring:?} ring to {n}")))?;
        }
        let off = xdp::mmap_offsets(fd.as_fd())?;
        let map = |ring: RingKind, n: u32| {
            RingMap::map(fd.as_fd(), ring, n, &off).map_err(|e| context(e, format!("mapping the {ring:?} ring")))
        };
        // Map before bind: the kernel refuses ring mappings on a bound socket.
        let fill = ProdRing::new(map(RingKind::Fill, cfg.fill_size)?)?;
        let comp = ConsRing::new(map(RingKind::Completion, cfg.comp_size)?)?;
        let rx = ConsRing::new(map(RingKind::Rx, cfg.rx_size)?)?;
        let tx = ProdRing::new(map(RingKind::Tx, cfg.tx_size)?)?;

        let wake = if cfg.need_wakeup { xdp::XDP_USE_NEED_WAKEUP } else { 0 };
        let bind = |mode: u16| {
            let mut retries = 0;
            loop {
                match xdp::bind(fd.as_fd(), ifindex, queue_id, mode | wake) {
                    // A socket closed a moment ago still holds the queue until the kernel's deferred teardown.
                    Err(e) if errno(&e) == libc::EBUSY && retries < BIND_BUSY_RETRIES => {
                        retries += 1;
                        std::thread::sleep(BUSY_RETRY_SLEEP);
                    }
                    r => return r,
                }
            }
        };
        let bound = match cfg.zero_copy {
            Some(true) => bind(xdp::XDP_ZEROCOPY),
            Some(false) => bind(xdp::XDP_COPY),
            None => match bind(xdp::XDP_ZEROCOPY) {
                Err(e) if errno(&e) == libc::EOPNOTSUPP => {
                    log::info!("{ifname} queue {queue_id}: no AF_XDP zero-copy in this driver, using copy mode");
                    bind(xdp::XDP_COPY)
                }
                r => r,
            },
        };
        bound.map_err(|e| {
            let msg = match errno(&e) {
                libc::EBUSY => {
                    format!("queue {queue_id} of {ifname} already has an AF_XDP socket bound")
                }
                libc::EOPNOTSUPP => {
                    format!("the driver of {ifname} has no AF_XDP zero-copy (use copy mode)")
                }
                libc::EINVAL => {
                    format!("binding an AF_XDP socket to {ifname} queue {queue_id} (does the queue exist?)")
                }
                libc::ENODEV => format!("no network interface {ifname:?} to bind to"),
                _ => format!("binding an AF_XDP socket to {ifname} queue {queue_id}"),
            };
            context(e, msg)
        })?;
        let zero_copy = xdp::is_zero_copy(fd.as_fd()).unwrap_or(false);

        let mac = crate::sys::interface_mac(ifname)?;
        let driver = xdp::interface_driver(ifname).unwrap_or_default();
        let caps = Self::caps_for(ifname, &driver)?;
        let pool_frames = pool.capacity();
        let mut q = XskQueue {
            sock: Some(Socket { fill, comp, rx, tx, fd }),
            frames: Frames { kernel: FrameSet::new(pool_frames), rx_posted: 0, tx_in_flight: 0, pool_frames },
            prog: Arc::clone(prog),
            queue_id,
            umem_base: pool.region().as_ptr() as usize,
            fill_target: cfg.fill_target(pool_frames),
            zero_copy,
            need_wakeup: cfg.need_wakeup,
            caps,
            mac,
            driver,
            stats: NicStats::default(),
            kstats: XdpStatistics::default(),
            cycles: 0,
            foreign_pool_logged: false,
        };
        q.refill(pool);
        let inserted = match q.sock.as_ref() {
            Some(s) => prog.insert(queue_id, s.fd.as_fd()),
            None => Ok(()),
        };
        if let Err(e) = inserted {
            q.release(pool); // The fill ring's frames go back to the pool.
            return Err(context(
                e,
                format!("inserting the AF_XDP socket of {ifname} queue {queue_id} into the XSKMAP"),
            ));
        }
        log::info!(
            "AF_XDP socket on {ifname} queue {queue_id}: {} mode, {} XDP, driver {:?}, rings fill {} comp {} rx {} tx \
             {}, {} of {} frames posted for RX",
            if zero_copy { "zero-copy" } else { "copy" },
            prog.mode(),
            q.driver,
            cfg.fill_size,
            cfg.comp_size,
            cfg.rx_size,
            cfg.tx_size,
            q.frames.rx_posted,
            pool_frames
        );
        Ok(q)
    }

    fn caps_for(ifname: &str, driver: &str) -> io::Result<NicCaps> {
        let mtu = crate::sys::interface_mtu(ifname)? as usize;
        // A received frame must fit its chunk after XDP_PACKET_HEADROOM; longer ones are dropped by the kernel.
        let fits = FRAME_SIZE - xdp::XDP_PACKET_HEADROOM - ETH_HLEN;
        if mtu > fits {
            log::warn!("{ifname} has MTU {mtu} but AF_XDP frames hold {fits} bytes of IP; longer packets are dropped");
        }
        let mut caps = NicCaps::with_mtu(mtu.min(fits) as u16);
        // A Linux sender on the other end of a veth leaves TCP/UDP checksums partial (DESIGN §4).
        caps.rx_partial_checksums = driver == "veth";
        Ok(caps)
    }

    /// The queue id this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The program this socket is registered with.
    pub fn program(&self) -> &Arc<XdpProgram> {
        &self.prog
    }

    /// Whether the socket runs in zero-copy mode (false: copy mode).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The interface's driver name as ethtool reports it (empty if unknown).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Frames the queue keeps posted for RX.
    pub fn fill_target(&self) -> u32 {
        self.fill_target
    }

    /// Frames posted for RX (fill ring, kernel, RX ring) and not yet received.
    pub fn rx_posted(&self) -> u32 {
        self.frames.rx_posted
    }

    /// Frames posted for TX and not yet completed.
    pub fn tx_in_flight(&self) -> u32 {
        self.frames.tx_in_flight
    }

    /// Whether the socket is open (false after [`NicQueue::release`]).
    pub fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    /// The kernel's counters as last read (every [`STATS_REFRESH_CYCLES`] `maintain` calls, on
    /// [`XskQueue::refresh_stats`], and on release).
    pub fn kernel_stats(&self) -> XdpStatistics {
        self.kstats
    }

    /// Reads `XDP_STATISTICS` now (a syscall) and returns it; [`NicQueue::stats`] includes it from then on.
    pub fn refresh_stats(&mut self) -> io::Result<XdpStatistics> {
        if let Some(s) = self.sock.as_ref() {
            self.kstats = xdp::statistics(s.fd.as_fd())?;
        }
        Ok(self.kstats)
    }

    /// Whether `pool` is the one whose memory is this socket's UMEM. A foreign pool is refused: its frame
    /// indices would name frames of another memory region.
    fn owns_pool(&mut self, pool: &MbufPool) -> bool {
        if pool.region().as_ptr() as usize == self.umem_base && pool.capacity() == self.frames.pool_frames {
            return true;
        }
        if !self.foreign_pool_logged {
            self.foreign_pool_logged = true;
            log::error!(
                "XskQueue on queue {} called with a pool that is not its UMEM; ignoring the call",
                self.queue_id
            );
        }
        false
    }

    /// Tops the fill ring up to the target, in batches of at least [`FILL_BATCH`] frames.
    fn refill(&mut self, pool: &mut MbufPool) {
        let Some(s) = self.sock.as_mut() else { return };
        let deficit = self.fill_target.saturating_sub(self.frames.rx_posted);
        if deficit == 0 || deficit < FILL_BATCH.min(self.fill_target) {
            return;
        }
        let avail = pool.available();
        if avail < deficit {
            self.stats.fill_starved += 1;
        }
        let n = s.fill.reserve(deficit.min(avail));
        let mut posted = 0;
        for _ in 0..n {
            let Some(index) = pool.alloc_index() else {
                break;
            };
            if !self.frames.kernel.insert(index) {
                // The pool handed out a frame the kernel already holds: a double free somewhere. Keep it out of
                // both places rather than let the kernel write into a frame someone else owns.
                self.stats.rx_errors += 1;
                continue;
            }
            s.fill.write(posted, index as u64 * FRAME_SIZE as u64);
            posted += 1;
        }
        s.fill.submit(posted);
        self.frames.rx_posted += posted;
    }

    /// Rings the TX doorbell while the kernel has unsent frames and makes progress (copy mode sends at most 32
    /// frames per kick). Bounded: one kick per 32 pending frames, plus one.
    fn kick_tx(&mut self) {
        let Some(s) = self.sock.as_mut() else { return };
        let mut pending = s.tx.pending();
        if pending == 0 {
            return;
        }
        // Copy mode needs a syscall to send at all; zero-copy only when the driver asks (or without need-wakeup).
        if self.zero_copy && self.need_wakeup && !s.tx.needs_wakeup() {
            return;
        }
        for _ in 0..=pending.div_ceil(KERNEL_TX_BATCH) {
            match xdp::kick_tx(s.fd.as_fd()) {
                // Everything handed over, or the completion ring is full until we reap.
                Ok(()) => break,
                Err(e) => match errno(&e) {
                    libc::EAGAIN => {
                        let now = s.tx.pending();
                        if now == 0 || now >= pending {
                            break; // Device busy: try again next cycle.
                        }
                        pending = now;
                    }
                    // NET_XMIT_DROP: the frame completed without being sent; keep going with the rest.
                    libc::EBUSY => self.stats.tx_errors += 1,
                    // No skb memory right now: the frames stay queued for the next cycle.
                    libc::ENOBUFS | libc::ENOMEM => break,
                    _ => {
                        self.stats.tx_errors += 1;
                        break;
                    }
                },
            }
        }
    }

    /// Drains the RX ring into the pool (shutdown).
    fn drain_rx(&mut self, pool: &mut MbufPool) {
        let Some(s) = self.sock.as_mut() else { return };
        loop {
            let n = s.rx.peek(MAX_BATCH as u32);
            if n == 0 {
                break;
            }
            for i in 0..n {
                if let Some(m) = self.frames.accept_rx(s.rx.read(i), pool, &mut self.stats) {
                    pool.free(m);
                }
            }
            s.rx.release(n);
        }
    }
}

impl NicQueue for XskQueue {
    fn receive(&mut self, pool: &mut MbufPool, out: &mut Batch, max: usize) -> usize {
        if !self.owns_pool(pool) {
            return 0;
        }
        let Some(s) = self.sock.as_mut() else {
            return 0;
        };
        let want = max.min(out.remaining_capacity()) as u32;
        if want == 0 {
            return 0;
        }
        let n = s.rx.peek(want);
        let before = out.len();
        for i in 0..n {
            if let Some(m) = self.frames.accept_rx(s.rx.read(i), pool, &mut self.stats) {
                out.push(m);
            }
        }
        s.rx.release(n);
        out.len() - before
    }

    fn transmit(&mut self, pool: &mut MbufPool, batch: &mut Batch) {
        if batch.is_empty() || !self.owns_pool(pool) {
            return;
        }
        let Some(s) = self.sock.as_mut() else { return };
        let want = batch.len() as u32;
        let n = s.tx.reserve(want);
        if n < want {
            self.stats.tx_ring_full += (want - n) as u64;
        }
        let mut posted = 0;
        for m in batch.drain(..n as usize) {
            if m.is_empty() || m.index() >= self.frames.pool_frames {
                // The kernel would skip it without ever completing it: the frame would be lost.
                self.stats.tx_errors += 1;
                pool.free(m);
                continue;
            }
            if !self.frames.kernel.insert(m.index()) {
                // A token for a frame the kernel already holds is forged; posting it twice would hand the kernel
                // one frame as two. Drop the token, keep the frame where it is.
                self.stats.tx_errors += 1;
                continue;
            }
            s.tx.write(posted, XdpDesc { addr: m.addr(), len: m.len() as u32, options: 0 });
            posted += 1;
        }
        s.tx.submit(posted);
        self.frames.tx_in_flight += posted;
        self.stats.tx_frames += posted as u64;
    }

    fn maintain(&mut self, pool: &mut MbufPool) {
        if !self.owns_pool(pool) {
            return;
        }
        let Some(s) = self.sock.as_mut() else { return };
        self.frames.reap(&mut s.comp, pool, &mut self.stats);
        self.refill(pool);
        if let Some(s) = self.sock.as_ref() {
            if self.need_wakeup && s.fill.needs_wakeup() {
                if let Err(e) = xdp::kick_rx(s.fd.as_fd()) {
                    if !matches!(errno(&e), libc::EAGAIN | libc::EBUSY) {
                        self.stats.rx_errors += 1;
                    }
                }
            }
        }
        self.kick_tx();
        self.cycles = self.cycles.wrapping_add(1);
        if self.cycles % STATS_REFRESH_CYCLES == 0 {
            let _ = self.refresh_stats();
        }
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.sock.as_ref().map(|s| s.fd.as_raw_fd())
    }

    fn caps(&self) -> NicCaps {
        self.caps
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn stats(&self) -> NicStats {
        let k = &self.kstats;
        let mut s = self.stats;
        s.rx_dropped += k.rx_dropped + k.rx_ring_full;
        s.rx_errors += k.rx_invalid_descs;
        s.tx_errors += k.tx_invalid_descs;
        s
    }

    fn frames_held(&self) -> u32 {
        self.frames.rx_posted + self.frames.tx_in_flight
    }

    /// Closes the socket and returns every frame to `pool`.
    ///
    /// Queued TX frames first get a bounded chance to go out and complete; pending RX frames go into the pool.
    /// Then the socket leaves the XSKMAP, the rings are unmapped and the fd is closed. Before the frames the kernel
    /// held are reused, `release` makes sure the kernel can no longer write them, even if the socket outlives
    /// our fd (a child forked by another thread holds a copy until it execs):
    /// - copy mode: the kernel writes a UMEM frame only inside an XDP redirect through the map, so one RCU grace
    ///   period after leaving the map ([`xdp::wait_rcu_grace_period`], ~10 ms here) is enough;
    /// - zero-copy mode: the driver lets go of its RX buffers only in the kernel's deferred pool teardown, so
    ///   `release` waits (bounded, with [`xdp::queue_is_free`] probes) until the queue can be bound again.
    ///
    /// If that cannot be confirmed, those frames stay out of the pool (logged) rather than risk the kernel
    /// writing into reused mbufs. The queue is closed afterwards: `receive` returns nothing, `transmit` refuses.
    fn release(&mut self, pool: &mut MbufPool) {
        if !self.owns_pool(pool) || self.sock.is_none() {
            return;
        }
        for _ in 0..RELEASE_TX_ROUNDS {
            if let Some(s) = self.sock.as_mut() {
                self.frames.reap(&mut s.comp, pool, &mut self.stats);
            }
            if self.frames.tx_in_flight == 0 {
                break;
            }
            self.kick_tx();
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        self.drain_rx(pool);
        let _ = self.refresh_stats();
        let unmapped = self.prog.remove(self.queue_id);
        // Unmap the rings and close the fd; unless a forked child holds a copy, the kernel releases the socket
        // before close(2) returns.
        drop(self.sock.take());
        let lost = self.frames.tx_in_flight;
        if lost > 0 {
            log::warn!("queue {}: {lost} TX frames were still in flight when the socket closed", self.queue_id);
        }
        let quiet = if self.zero_copy {
            self.wait_for_teardown(pool)
        } else {
            match unmapped.and_then(|()| xdp::wait_rcu_grace_period()) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("queue {}: no RCU grace period ({e}); probing the queue instead", self.queue_id);
                    self.wait_for_teardown(pool)
                }
            }
        };
        if quiet {
            self.frames.kernel.drain(|index| {
                pool.free_index(index);
            });
        } else {
            log::warn!(
                "queue {}: cannot confirm the kernel stopped using the UMEM; {} frames stay out of the pool",
                self.queue_id,
                self.frames.kernel.count()
            );
            self.frames.kernel.drain(|_| {});
        }
        self.frames.rx_posted = 0;
        self.frames.tx_in_flight = 0;
    }
}

impl XskQueue {
    /// Waits until the kernel's deferred teardown of the closed socket's pool has run (the queue can be bound
    /// again), which is when a zero-copy driver stops using the UMEM. Bounded by [`TEARDOWN_PROBES`].
    fn wait_for_teardown(&self, pool: &MbufPool) -> bool {
        for _ in 0..TEARDOWN_PROBES {
            match xdp::queue_is_free(self.prog.ifindex(), self.queue_id, pool.region()) {
                Ok(true) => return true,
                Ok(false) => std::thread::sleep(BUSY_RETRY_SLEEP),
                Err(e) => {
                    log::warn!("probing queue {} after close: {e}", self.queue_id);
                    return false;
                }
            }
        }
        false
    }
}

impl Drop for XskQueue {
    fn drop(&mut self) {
        if self.sock.take().is_some() {
            let _ = self.prog.remove(self.queue_id);
            let held = self.frames.kernel.count();
            if held > 0 {
                log::debug!(
                    "XskQueue on queue {} dropped without release(): {held} frames stay out of the pool",
                    self.queue_id
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays the kernel's side of a ring in tests.
    fn word(map: &RingMap, f: RingField) -> &AtomicU32 {
        ring_word(map, f)
    }

    #[test]
    fn prod_ring_reserves_submits_and_wraps() {
        let mut r = ProdRing::<u64>::new(RingMap::anonymous(8, 8).unwrap()).unwrap();
        for round in 0..5u64 {
            let n = r.reserve(6);
            assert_eq!(n, 6);
            for i in 0..n {
                r.write(i, round * 100 + i as u64);
            }
            r.submit(n);
            assert_eq!(r.pending(), 6);
            assert_eq!(word(&r.map, RingField::Producer).load(Ordering::Relaxed), (round as u32 + 1) * 6);
            // The "kernel" consumes everything and checks the slots.
            let prod = word(&r.map, RingField::Producer).load(Ordering::Acquire);
            let cons = word(&r.map, RingField::Consumer).load(Ordering::Relaxed);
            for (k, idx) in (cons..prod).enumerate() {
                // SAFETY: test-only read of a slot inside the 8-entry anonymous mapping.
                let v = unsafe { r.map.slot_base().cast::<u64>().add((idx & 7) as usize).read() };
                assert_eq!(v, round * 100 + k as u64);
            }
            word(&r.map, RingField::Consumer).store(prod, Ordering::Release);
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn prod_ring_never_overfills() {
        let mut r = ProdRing::<u64>::new(RingMap::anonymous(4, 8).unwrap()).unwrap();
        assert_eq!(r.reserve(10), 4);
        r.submit(4);
        assert_eq!(r.reserve(1), 0, "full until the kernel consumes");
        word(&r.map, RingField::Consumer).store(1, Ordering::Release);
        assert_eq!(r.reserve(3), 1);
        r.submit(7); // more than reserved: clamped
        assert_eq!(word(&r.map, RingField::Producer).load(Ordering::Relaxed), 5);
    }

    #[test]
    fn cons_ring_peeks_releases_and_distrusts_the_producer() {
        let mut r = ConsRing::<XdpDesc>::new(RingMap::anonymous(4, 16).unwrap()).unwrap();
        assert_eq!(r.peek(4), 0);
        for i in 0..3u32 {
            // SAFETY: test-only write of a slot inside the 4-entry anonymous mapping.
            unsafe {
                r.map.slot_base().cast::<XdpDesc>().add(i as usize).write(XdpDesc {
                    addr: i as u64,
                    len: i,
                    options: 0,
                })
            };
        }
        word(&r.map, RingField::Producer).store(3, Ordering::Release);
        assert_eq!(r.peek(2), 2);
        assert_eq!(r.read(1).addr, 1);
        r.release(2);
        assert_eq!(word(&r.map, RingField::Consumer).load(Ordering::Relaxed), 2);
        assert_eq!(r.peek(8), 1);
        assert_eq!(r.read(0).len, 2);
        r.release(1);
        // A producer index claiming far more than a ring's worth is clamped to the ring.
        word(&r.map, RingField::Producer).store(1000, Ordering::Release);
        assert_eq!(r.peek(100), 4);
    }

    #[test]
    fn frame_set_tracks_ownership() {
        let mut s = FrameSet::new(130);
        assert!(s.insert(0) && s.insert(64) && s.insert(129));
        assert!(!s.insert(64), "double insert refused");
        assert!(!s.insert(130), "out of range refused");
        assert_eq!(s.count(), 3);
        assert!(s.take(64) && !s.take(64));
        let mut seen = Vec::new();
        s.drain(|i| seen.push(i));
        assert_eq!(seen, vec![0, 129]);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn rx_descriptors_are_validated() {
        let mut pool = MbufPool::new(4, false).unwrap();
        let mut frames = Frames { kernel: FrameSet::new(4), rx_posted: 0, tx_in_flight: 0, pool_frames: 4 };
        let mut stats = NicStats::default();
        // Post frames 0..3 as the fill ring would.
        let posted: Vec<u32> = (0..3).map(|_| pool.alloc_index().unwrap()).collect();
        for &i in &posted {
            assert!(frames.kernel.insert(i));
            frames.rx_posted += 1;
        }
        let f = FRAME_SIZE as u64;
        let good =
            frames.accept_rx(XdpDesc { addr: posted[0] as u64 * f + 256, len: 60, options: 0 }, &mut pool, &mut stats);
        let m = good.expect("sound descriptor accepted");
        assert_eq!((m.index(), m.offset(), m.len()), (posted[0], 256, 60));
        // Same frame again: the kernel no longer holds it.
        assert!(frames.accept_rx(XdpDesc { addr: m.addr(), len: 60, options: 0 }, &mut pool, &mut stats).is_none());
        // Outside the pool.
        assert!(frames.accept_rx(XdpDesc { addr: 99 * f, len: 60, options: 0 }, &mut pool, &mut stats).is_none());
        // Crosses the frame end: recycled into the pool.
        let avail = pool.available();
        assert!(frames
            .accept_rx(XdpDesc { addr: posted[1] as u64 * f + 256, len: 1900, options: 0 }, &mut pool, &mut stats)
            .is_none());
        assert_eq!(pool.available(), avail + 1);
        assert_eq!(stats.rx_errors, 3);
        assert_eq!(stats.rx_frames, 1);
        assert_eq!(frames.rx_posted, 1);
        pool.free(m);
    }

    #[test]
    fn queues_move_between_threads_and_programs_are_shared() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<XskQueue>();
        send_sync::<XdpProgram>();
    }

    #[test]
    fn config_is_validated_and_sized_to_the_pool() {
        assert!(XskConfig::default().validate().is_ok());
        assert!(XskConfig { rx_size: 1000, ..XskConfig::default() }.validate().is_err());
        // At most the fill ring's size may be posted; by default half the pool, up to the ring.
        assert!(XskConfig { fill_frames: Some(8192), ..XskConfig::default() }.validate().is_err());
        assert_eq!(XskConfig::default().fill_target(8192), 4096);
        assert_eq!(XskConfig::default().fill_target(65536), 4096);
        assert_eq!(XskConfig::default().fill_target(1024), 512);
        assert_eq!(XskConfig::default().fill_target(1), 1);
        assert_eq!(XskConfig { fill_frames: Some(100), ..XskConfig::default() }.fill_target(64), 64);
    }
}
