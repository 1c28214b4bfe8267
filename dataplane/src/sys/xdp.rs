//! AF_XDP (`include/uapi/linux/if_xdp.h`): every constant and struct the XSK backend uses, checked against the
//! kernel's sizes at compile time, and thin wrappers for the socket calls that set an XSK up.
//!
//! Setup order matters and the kernel enforces it (`net/xdp/xsk.c`): create the socket, register the UMEM, size
//! the four rings, read their mmap offsets, **map the rings while the socket is still unbound** (`xsk_mmap` answers
//! `EBUSY` afterwards), then bind. A mapping holds a reference to the socket's file: the socket is only released
//! (and the UMEM's frames given back) once the fd is closed *and* every ring is unmapped.
//!
//! Also here: the two ethtool ioctls the backend needs to describe an interface (driver name, queue counts).
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::sys::mmap::MemoryRegion;
use crate::syscall;

/// Address family of XDP sockets.
pub const AF_XDP: libc::c_int = 44;
/// Socket option level of XDP sockets.
pub const SOL_XDP: libc::c_int = 283;

/// Bind flag: share the UMEM of another socket (`sxdp_shared_umem_fd`).
pub const XDP_SHARED_UMEM: u16 = 1 << 0;
/// Bind flag: force copy mode.
pub const XDP_COPY: u16 = 1 << 1;
/// Bind flag: force zero-copy mode (`EOPNOTSUPP` when the driver cannot, veth included).
pub const XDP_ZEROCOPY: u16 = 1 << 2;
/// Bind flag: the kernel sets [`XDP_RING_NEED_WAKEUP`] when it needs a syscall to make progress.
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Bind flag: multi-buffer (scatter-gather) frames.
pub const XDP_USE_SG: u16 = 1 << 4;

/// UMEM flag: chunks may start anywhere (not used: our chunks are aligned frames).
pub const XDP_UMEM_UNALIGNED_CHUNK_FLAG: u32 = 1 << 0;
/// UMEM flag: software TX checksum through TX metadata.
pub const XDP_UMEM_TX_SW_CSUM: u32 = 1 << 1;
/// UMEM flag: `tx_metadata_len` is valid.
pub const XDP_UMEM_TX_METADATA_LEN: u32 = 1 << 2;

/// Ring flag: the kernel needs a wake-up (`sendto` for TX, `recvfrom`/`poll` for the fill ring).
pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// `getsockopt`: ring offsets inside their mappings ([`XdpMmapOffsets`]).
pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
/// `setsockopt`: RX ring entries.
pub const XDP_RX_RING: libc::c_int = 2;
/// `setsockopt`: TX ring entries.
pub const XDP_TX_RING: libc::c_int = 3;
/// `setsockopt`: register the UMEM ([`XdpUmemReg`]).
pub const XDP_UMEM_REG: libc::c_int = 4;
/// `setsockopt`: fill ring entries.
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
/// `setsockopt`: completion ring entries.
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
/// `getsockopt`: [`XdpStatistics`].
pub const XDP_STATISTICS: libc::c_int = 7;
/// `getsockopt`: [`XdpOptions`].
pub const XDP_OPTIONS: libc::c_int = 8;
/// [`XdpOptions::flags`]: the socket is bound in zero-copy mode.
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

/// mmap offset of the RX ring.
pub const XDP_PGOFF_RX_RING: libc::off_t = 0;
/// mmap offset of the TX ring.
pub const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
/// mmap offset of the fill ring.
pub const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
/// mmap offset of the completion ring.
pub const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// Headroom the kernel leaves before received data in every chunk (`XDP_PACKET_HEADROOM`), on top of the
/// UMEM's own `headroom`.
pub const XDP_PACKET_HEADROOM: usize = 256;
/// Smallest chunk the kernel accepts (`XDP_UMEM_MIN_CHUNK_SIZE`).
pub const XDP_UMEM_MIN_CHUNK_SIZE: u32 = 2048;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockaddrXdp {
    /// Always [`AF_XDP`].
    pub sxdp_family: u16,
    /// `XDP_COPY`, `XDP_ZEROCOPY`, `XDP_USE_NEED_WAKEUP`, `XDP_SHARED_UMEM`.
    pub sxdp_flags: u16,
    /// Interface index.
    pub sxdp_ifindex: u32,
    /// RX/TX queue of the interface.
    pub sxdp_queue_id: u32,
    /// Socket whose UMEM to share (with `XDP_SHARED_UMEM`).
    pub sxdp_shared_umem_fd: u32,
}
const _: () = assert!(size_of::<SockaddrXdp>() == 16);

/// `struct xdp_ring_offset`: where producer, consumer, descriptors and flags sit in a ring mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpRingOffset {
    /// Offset of the `u32` producer index.
    pub producer: u64,
    /// Offset of the `u32` consumer index.
    pub consumer: u64,
    /// Offset of the descriptor array.
    pub desc: u64,
    /// Offset of the `u32` flags word.
    pub flags: u64,
}
const _: () = assert!(size_of::<XdpRingOffset>() == 32);

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpMmapOffsets {
    /// RX ring.
    pub rx: XdpRingOffset,
    /// TX ring.
    pub tx: XdpRingOffset,
    /// Fill ring.
    pub fr: XdpRingOffset,
    /// Completion ring.
    pub cr: XdpRingOffset,
}
const _: () = assert!(size_of::<XdpMmapOffsets>() == 128);

/// `struct xdp_umem_reg`, the 6.8+ layout with `tx_metadata_len` (32 bytes). Older kernels read the same 32 bytes
/// (`flags` then padding) and the oldest the first 24; with `flags` and `tx_metadata_len` zero all agree.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpUmemReg {
    /// Start of the packet area (page aligned).
    pub addr: u64,
    /// Length of the packet area (a multiple of `chunk_size`).
    pub len: u64,
    /// Bytes per frame.
    pub chunk_size: u32,
    /// Bytes the kernel leaves free at the start of each chunk, before `XDP_PACKET_HEADROOM`.
    pub headroom: u32,
    /// `XDP_UMEM_*` flags.
    pub flags: u32,
    /// TX metadata bytes before each TX frame (with `XDP_UMEM_TX_METADATA_LEN`).
    pub tx_metadata_len: u32,
}
const _: () = assert!(size_of::<XdpUmemReg>() == 32);

/// `struct xdp_statistics` (all six counters; kernels before 5.9 fill only the first three).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Frames dropped for other reasons (too big for a chunk, no fill-ring frame in copy mode).
    pub rx_dropped: u64,
    /// Invalid descriptors in the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors in the TX ring (skipped, never completed).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}
const _: () = assert!(size_of::<XdpStatistics>() == 48);

/// `struct xdp_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpOptions {
    /// [`XDP_OPTIONS_ZEROCOPY`].
    pub flags: u32,
}
const _: () = assert!(size_of::<XdpOptions>() == 4);

/// `struct xdp_desc`: one RX or TX descriptor (fill and completion rings carry bare `u64` addresses).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpDesc {
    /// Address of the data relative to the UMEM start.
    pub addr: u64,
    /// Data length.
    pub len: u32,
    /// `XDP_PKT_CONTD`, `XDP_TX_METADATA`; zero for single-buffer frames.
    pub options: u32,
}
const _: () = assert!(size_of::<XdpDesc>() == 16);

/// Creates an AF_XDP socket (`EPERM` without `CAP_NET_RAW`, `EAFNOSUPPORT` on a kernel without XDP sockets).
pub fn socket() -> io::Result<OwnedFd> {
    let fd = syscall!(socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket(2) just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, val: &T) -> io::Result<()> {
    syscall!(setsockopt(
        fd.as_raw_fd(),
        SOL_XDP,
        opt,
        (val as *const T).cast::<libc::c_void>(),
        size_of::<T>() as libc::socklen_t
    ))
    .map(drop)
}

fn getsockopt<T: Default>(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<(T, usize)> {
    let mut val = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    syscall!(getsockopt(fd.as_raw_fd(), SOL_XDP, opt, (&mut val as *mut T).cast::<libc::c_void>(), &mut len))?;
    Ok((val, len as usize))
}

/// Registers the first `len` bytes of `region` as the socket's UMEM, cut into `chunk_size` frames with
/// `headroom` bytes left free at the start of each (aligned mode).
///
/// The kernel pins the pages until the socket is released, so the memory stays valid for it even if the region is
/// unmapped first; it writes only into frames posted on the fill ring.
pub fn register_umem(
    fd: BorrowedFd<'_>,
    region: &MemoryRegion,
    len: usize,
    chunk_size: u32,
    headroom: u32,
) -> io::Result<()> {
    if len > region.len() || len == 0 || len % chunk_size as usize != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "UMEM length {len} must be a non-zero multiple of {chunk_size} within the {} byte region",
                region.len()
            ),
        ));
    }
    let reg =
        XdpUmemReg { addr: region.as_ptr() as u64, len: len as u64, chunk_size, headroom, ..XdpUmemReg::default() };
    setsockopt(fd, XDP_UMEM_REG, &reg)
}

/// Which of the four rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// Frames received by the kernel for us (`XdpDesc`).
    Rx,
    /// Frames for the kernel to send (`XdpDesc`).
    Tx,
    /// Empty frames handed to the kernel for RX (`u64` addresses).
    Fill,
    /// Sent frames handed back by the kernel (`u64` addresses).
    Completion,
}

impl RingKind {
    fn sockopt(self) -> libc::c_int {
        match self {
            RingKind::Rx => XDP_RX_RING,
            RingKind::Tx => XDP_TX_RING,
            RingKind::Fill => XDP_UMEM_FILL_RING,
            RingKind::Completion => XDP_UMEM_COMPLETION_RING,
        }
    }

    fn pgoff(self) -> libc::off_t {
        match self {
            RingKind::Rx => XDP_PGOFF_RX_RING,
            RingKind::Tx => XDP_PGOFF_TX_RING,
            RingKind::Fill => XDP_UMEM_PGOFF_FILL_RING,
            RingKind::Completion => XDP_UMEM_PGOFF_COMPLETION_RING,
        }
    }

    /// Bytes per descriptor.
    pub fn desc_size(self) -> usize {
        match self {
            RingKind::Rx | RingKind::Tx => size_of::<XdpDesc>(),
            RingKind::Fill | RingKind::Completion => size_of::<u64>(),
        }
    }

    /// This ring's entry in the socket's offsets.
    pub fn offsets(self, off: &XdpMmapOffsets) -> XdpRingOffset {
        match self {
            RingKind::Rx => off.rx,
            RingKind::Tx => off.tx,
            RingKind::Fill => off.fr,
            RingKind::Completion => off.cr,
        }
    }
}

/// Sets the number of entries of one ring (a power of two; before bind).
pub fn set_ring_size(fd: BorrowedFd<'_>, ring: RingKind, entries: u32) -> io::Result<()> {
    setsockopt(fd, ring.sockopt(), &(entries as libc::c_int))
}

/// Reads where producer, consumer, flags and descriptors sit in each ring's mapping.
pub fn mmap_offsets(fd: BorrowedFd<'_>) -> io::Result<XdpMmapOffsets> {
    let (off, len) = getsockopt::<XdpMmapOffsets>(fd, XDP_MMAP_OFFSETS)?;
    if len != size_of::<XdpMmapOffsets>() {
        // Pre-5.4 kernels answer without the flags offsets; need-wakeup would read garbage.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's AF_XDP has no ring flags (needs Linux 5.4 or newer)",
        ));
    }
    Ok(off)
}

/// One ring mapped from an XDP socket, unmapped on drop.
///
/// Holds only the mapping: the typed ring logic (indices, barriers) lives in `nic::afxdp`. The bounds of every
/// offset the kernel gave are checked at map time, so [`RingMap::field`] and [`RingMap::slot_base`] always point
/// inside the mapping.
#[derive(Debug)]
pub struct RingMap {
    base: NonNull<u8>,
    len: usize,
    off: XdpRingOffset,
    entries: u32,
    desc_size: usize,
}

// SAFETY: the mapping is exclusively owned by this value (nothing else unmaps it) and the kernel side is
// synchronised through the producer/consumer protocol, not through thread identity; moving the owner to another
// thread is therefore sound.
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps `ring` of socket `fd` with `entries` descriptors (the size set with [`set_ring_size`]). Must be called
    /// before bind.
    pub fn map(fd: BorrowedFd<'_>, ring: RingKind, entries: u32, offsets: &XdpMmapOffsets) -> io::Result<RingMap> {
        let off = ring.offsets(offsets);
        let len = (off.desc as usize)
            .checked_add(entries as usize * ring.desc_size())
            .ok_or_else(|| io::Error::other("AF_XDP ring offsets overflow"))?;
        Self::check_offsets(&off, len, entries, ring.desc_size())?;
        // SAFETY: a shared mapping of the socket's ring at the kernel's documented page offset; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                ring.pgoff(),
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        let map = RingMap { base, len, off, entries, desc_size: ring.desc_size() };
        // A forked child must not inherit the ring: its mapping would keep the socket (and every frame the kernel
        // holds) alive after we close it. Best effort: without it only that fork corner case is affected.
        // SAFETY: advice on exactly the mapping just created; it changes no memory contents.
        if unsafe { libc::madvise(ptr, len, libc::MADV_DONTFORK) } != 0 {
            log::debug!("madvise(MADV_DONTFORK) on an AF_XDP ring: {}", io::Error::last_os_error());
        }
        Ok(map)
    }

    fn check_offsets(off: &XdpRingOffset, len: usize, entries: u32, desc_size: usize) -> io::Result<()> {
        let word_ok = |o: u64| o % 4 == 0 && o.checked_add(4).is_some_and(|end| end <= len as u64);
        let desc_ok = off.desc % desc_size.min(8) as u64 == 0
            && off.desc.checked_add(entries as u64 * desc_size as u64).is_some_and(|end| end <= len as u64);
        if word_ok(off.producer) && word_ok(off.consumer) && word_ok(off.flags) && desc_ok && entries.is_power_of_two()
        {
            Ok(())
        } else {
            Err(io::Error::other(format!("AF_XDP ring offsets out of bounds: {off:?} for {len} bytes")))
        }
    }

    /// An anonymous stand-in with the kernel's layout (producer, consumer, flags, then descriptors on their own
    /// cache lines), for testing ring logic without a socket.
    #[cfg(test)]
    pub(crate) fn anonymous(entries: u32, desc_size: usize) -> io::Result<RingMap> {
        let off = XdpRingOffset { producer: 0, consumer: 64, flags: 128, desc: 192 };
        let len = 192 + entries as usize * desc_size;
        Self::check_offsets(&off, len, entries, desc_size)?;
        // SAFETY: an anonymous private mapping with a null hint has no preconditions; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(RingMap { base, len, off, entries, desc_size })
    }

    /// Bytes per descriptor (16 for RX/TX, 8 for fill/completion).
    pub fn desc_size(&self) -> usize {
        self.desc_size
    }

    /// Number of descriptors (a power of two).
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Pointer to a `u32` field of the ring header ([`RingField`]). In bounds and 4-byte aligned (checked at
    /// map time); valid while `self` lives. Shared with the kernel: access it atomically.
    pub fn field(&self, field: RingField) -> NonNull<u32> {
        let off = match field {
            RingField::Producer => self.off.producer,
            RingField::Consumer => self.off.consumer,
            RingField::Flags => self.off.flags,
        };
        // SAFETY: `off + 4 <= len` was checked in `check_offsets`, so the result stays inside the mapping.
        unsafe { self.base.add(off as usize) }.cast()
    }

    /// Pointer to the first descriptor; `entries()` descriptors follow, in bounds (checked at map time) and valid
    /// while `self` lives.
    pub fn slot_base(&self) -> NonNull<u8> {
        // SAFETY: `desc + entries * desc_size <= len` was checked in `check_offsets`.
        unsafe { self.base.add(self.off.desc as usize) }
    }
}

/// The `u32` words of a ring header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingField {
    /// Producer index (written by the producer side).
    Producer,
    /// Consumer index (written by the consumer side).
    Consumer,
    /// Flags ([`XDP_RING_NEED_WAKEUP`]), written by the kernel.
    Flags,
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe exactly the mapping made in `map`/`anonymous`, which nothing else unmaps.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Binds the socket to queue `queue_id` of interface `ifindex` with `flags` (`XDP_COPY`/`XDP_ZEROCOPY`,
/// `XDP_USE_NEED_WAKEUP`).
pub fn bind(fd: BorrowedFd<'_>, ifindex: u32, queue_id: u32, flags: u16) -> io::Result<()> {
    let addr = SockaddrXdp {
        sxdp_family: AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue_id,
        sxdp_shared_umem_fd: 0,
    };
    syscall!(bind(
        fd.as_raw_fd(),
        (&addr as *const SockaddrXdp).cast::<libc::sockaddr>(),
        size_of::<SockaddrXdp>() as libc::socklen_t
    ))
    .map(drop)
}

/// Whether queue `queue_id` of `ifindex` can take an AF_XDP socket right now (`Ok(false)`: `EBUSY`).
///
/// The kernel tears an XSK's buffer pool down in a workqueue after the socket is released; only then does a
/// zero-copy driver stop DMA into the UMEM and the queue become bindable again. This probe binds a throwaway
/// copy-mode socket whose UMEM is the first frame of `region` (its fill ring stays empty, so the kernel never
/// writes there) and closes it again. Closing it schedules the same teardown, so a real bind right after a
/// successful probe may still see a brief `EBUSY`.
pub fn queue_is_free(ifindex: u32, queue_id: u32, region: &MemoryRegion) -> io::Result<bool> {
    let fd = socket()?;
    let chunk = XDP_UMEM_MIN_CHUNK_SIZE;
    register_umem(fd.as_fd(), region, chunk as usize, chunk, 0)?;
    for ring in [RingKind::Fill, RingKind::Completion, RingKind::Rx] {
        set_ring_size(fd.as_fd(), ring, 1)?;
    }
    match bind(fd.as_fd(), ifindex, queue_id, XDP_COPY) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits for an RCU grace period (`membarrier(MEMBARRIER_CMD_GLOBAL)`, which runs `synchronize_rcu()`).
///
/// Every copy-mode write into a UMEM happens inside an XDP redirect, in an RCU read-side section that starts
/// with the XSKMAP lookup. So once a socket is out of the map and a grace period has passed, the kernel writes
/// none of its frames again, even if the socket itself lives on (a forked child holding a copy of its fd).
/// `EINVAL` on `nohz_full` kernels, `ENOSYS` without `CONFIG_MEMBARRIER`.
pub fn wait_rcu_grace_period() -> io::Result<()> {
    const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
    syscall!(syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0 as libc::c_uint, 0 as libc::c_int)).map(drop)
}

/// Reads the socket's drop and error counters (a syscall: call it rarely).
pub fn statistics(fd: BorrowedFd<'_>) -> io::Result<XdpStatistics> {
    getsockopt::<XdpStatistics>(fd, XDP_STATISTICS).map(|(s, _)| s)
}

/// Whether the bound socket runs in zero-copy mode.
pub fn is_zero_copy(fd: BorrowedFd<'_>) -> io::Result<bool> {
    getsockopt::<XdpOptions>(fd, XDP_OPTIONS).map(|(o, _)| o.flags & XDP_OPTIONS_ZEROCOPY != 0)
}

/// TX doorbell: `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`. In copy mode this is what sends, at most 32
/// frames a call (`EAGAIN` when more are left); `EBUSY`/`ENOBUFS` mean the device or skb allocation pushed back.
pub fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(sendto(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)).map(drop)
}

/// RX doorbell for a fill ring flagged need-wakeup: `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`.
pub fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(recvfrom(
        fd.as_raw_fd(),
        std::ptr::null_mut(),
        0,
        libc::MSG_DONTWAIT,
        std::ptr::null_mut(),
        std::ptr::null_mut()
    ))
    .map(drop)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;
const ETHTOOL_GRSSH: u32 = 0x0000_0046;
/// `struct ethtool_rxfh` up to its flexible `rss_config[]`, in 32-bit words: cmd, rss_context, indir_size,
/// key_size, {hfunc, input_xfrm, rsvd8[2]}, rsvd32.
const RXFH_HEADER_WORDS: usize = 6;
/// Largest indirection table and key we accept from a driver (real ones: 128-512 entries, 40-52 bytes).
const RXFH_MAX_INDIR: u32 = 1 << 16;
const RXFH_MAX_KEY: u32 = 1 << 10;

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}
const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196);

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthtoolChannels {
    /// `ETHTOOL_GCHANNELS`.
    pub cmd: u32,
    /// Most RX-only queues.
    pub max_rx: u32,
    /// Most TX-only queues.
    pub max_tx: u32,
    /// Most other queues.
    pub max_other: u32,
    /// Most combined queues.
    pub max_combined: u32,
    /// RX-only queues in use.
    pub rx_count: u32,
    /// TX-only queues in use.
    pub tx_count: u32,
    /// Other queues in use.
    pub other_count: u32,
    /// Combined RX/TX queues in use.
    pub combined_count: u32,
}
const _: () = assert!(size_of::<EthtoolChannels>() == 36);

fn ethtool<T>(ifname: &str, data: &mut T) -> io::Result<()> {
    let fd = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket(2) just returned this fd; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = crate::sys::ifreq_for(ifname)?;
    req.ifr_ifru.ifru_data = (data as *mut T).cast::<libc::c_char>();
    syscall!(ioctl(fd.as_raw_fd(), SIOCETHTOOL, &mut req)).map(drop)
}

fn ethtool_words(ifname: &str, words: &mut [u32]) -> io::Result<()> {
    let fd = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket(2) just returned this fd; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = crate::sys::ifreq_for(ifname)?;
    req.ifr_ifru.ifru_data = words.as_mut_ptr().cast::<libc::c_char>();
    // The kernel writes at most the header plus the sizes the header announces, which the caller sized
    // `words` for.
    syscall!(ioctl(fd.as_raw_fd(), SIOCETHTOOL, &mut req)).map(drop)
}

/// An interface's receive-side scaling setup (`ethtool -x`): hash function bits (`ETH_RSS_HASH_*`), input
/// transformation (`RXH_XFRM_*`, 0 when none or on kernels before 6.8), key and indirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    /// `ETH_RSS_HASH_*` bits of the function in use (`ETH_RSS_HASH_TOP` = 1: Toeplitz).
    pub hfunc: u8,
    /// `RXH_XFRM_*` bits (symmetric hashing), 0 when the input is hashed as is.
    pub input_xfrm: u8,
    /// The hash key.
    pub key: Vec<u8>,
    /// The indirection table: entry `hash % len` is the RX queue.
    pub indirection: Vec<u32>,
}

/// Reads the interface's RSS key and indirection table (`ETHTOOL_GRSSH`); `EOPNOTSUPP` for drivers without
/// RSS (veth, TAP).
pub fn interface_rss(ifname: &str) -> io::Result<RssConfig> {
    // First ask for the sizes (both zero), then for the contents.
    let mut header = [0u32; RXFH_HEADER_WORDS];
    header[0] = ETHTOOL_GRSSH;
    ethtool_words(ifname, &mut header)?;
    let (indir_size, key_size) = (header[2], header[3]);
    if indir_size > RXFH_MAX_INDIR || key_size > RXFH_MAX_KEY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{ifname}: implausible RSS table sizes")));
    }
    let mut words = vec![0u32; RXFH_HEADER_WORDS + indir_size as usize + (key_size as usize).div_ceil(4)];
    words[0] = ETHTOOL_GRSSH;
    words[2] = indir_size;
    words[3] = key_size;
    ethtool_words(ifname, &mut words)?;
    let [hfunc, input_xfrm, ..] = words[4].to_ne_bytes();
    let indirection = words[RXFH_HEADER_WORDS..RXFH_HEADER_WORDS + indir_size as usize].to_vec();
    let key_bytes: Vec<u8> =
        words[RXFH_HEADER_WORDS + indir_size as usize..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(RssConfig { hfunc, input_xfrm, key: key_bytes[..key_size as usize].to_vec(), indirection })
}

/// The interface's driver name (`ethtool -i`), e.g. `"veth"`, `"ixgbe"`.
pub fn interface_driver(ifname: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    ethtool(ifname, &mut info)?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// The interface's queue counts (`ethtool -l`); `EOPNOTSUPP` for drivers that do not report them.
pub fn interface_channels(ifname: &str) -> io::Result<EthtoolChannels> {
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..EthtoolChannels::default() };
    ethtool(ifname, &mut ch)?;
    Ok(ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ring_map_points_inside() {
        let m = RingMap::anonymous(8, size_of::<XdpDesc>()).unwrap();
        assert_eq!(m.entries(), 8);
        let base = m.field(RingField::Producer).as_ptr() as usize;
        assert_eq!(m.field(RingField::Consumer).as_ptr() as usize - base, 64);
        assert_eq!(m.slot_base().as_ptr() as usize - base, 192);
        assert!(RingMap::anonymous(6, 8).is_err(), "ring sizes are powers of two");
    }

    #[test]
    fn offsets_outside_the_mapping_are_refused() {
        let off = XdpRingOffset { producer: 0, consumer: 4, flags: 8, desc: 64 };
        assert!(RingMap::check_offsets(&off, 64 + 8 * 16, 8, 16).is_ok());
        assert!(RingMap::check_offsets(&off, 64 + 8 * 16 - 1, 8, 16).is_err());
        let bad = XdpRingOffset { flags: 1 << 40, ..off };
        assert!(RingMap::check_offsets(&bad, 4096, 8, 16).is_err());
        let unaligned = XdpRingOffset { consumer: 6, ..off };
        assert!(RingMap::check_offsets(&unaligned, 4096, 8, 16).is_err());
    }

    #[test]
    fn ethtool_on_a_missing_interface_fails() {
        assert_eq!(interface_driver("no-such-if0").unwrap_err().raw_os_error(), Some(libc::ENODEV));
        assert!(interface_channels("no-such-if0").is_err());
        assert!(interface_rss("no-such-if0").is_err());
    }

    #[test]
    fn the_loopback_interface_has_no_rss() {
        assert!(interface_rss("lo").is_err(), "lo has no RSS table");
    }
}
