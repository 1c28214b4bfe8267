//! Multi-queue TAP devices (`/dev/net/tun`) and the socket-filter eBPF program that steers frames to queues.
//!
//! Kernel references: `Documentation/networking/tuntap.rst` (multi-queue TAP: open `/dev/net/tun` once per queue
//! and issue `TUNSETIFF` with the same name and `IFF_MULTI_QUEUE` on each fd), `drivers/net/tun.c`
//! (`tun_ebpf_select_queue`: the steering program's return value, as a `u16`, modulo the number of attached
//! queues picks the queue for a frame Linux transmits into the TAP) and `include/uapi/linux/virtio_net.h` (the
//! `virtio_net_hdr` in front of every frame when `IFF_VNET_HDR` is set).
//!
//! Every kernel resource here has an owner that closes it on drop: a [`TapQueueFd`] per queue (the TAP interface
//! disappears when the last one closes, since it is never made persistent) and a [`SteeringProgram`] for the
//! loaded eBPF program (the TAP keeps its own reference once attached, so the program may be dropped after
//! [`TapDevice::attach_steering`]).
//!
//! The instruction type is [`super::bpf::BpfInsn`]; the two `bpf(2)` calls needed here (`BPF_PROG_LOAD` of a
//! socket filter, `BPF_PROG_TEST_RUN`) are local, as [`super::bpf`] loads XDP programs only.
use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::bpf::BpfInsn;
use crate::syscall;

/// Length of the `virtio_net_hdr` in front of each frame on a TAP queue fd.
///
/// We set 10 (`sizeof(struct virtio_net_hdr)`), not 12 (`virtio_net_hdr_mrg_rxbuf`, which only adds
/// `num_buffers`, meaningless for a TAP): one read returns one whole frame, so merged buffers never happen.
pub const VNET_HDR_LEN: usize = 10;

/// Most queues a TAP device can have (`MAX_TAP_QUEUES` in `drivers/net/tun.c`).
pub const MAX_TAP_QUEUES: u32 = 256;

/// The `virtio_net_hdr` (legacy layout, native byte order as the kernel uses unless `TUNSETVNETLE`/`BE`).
///
/// With offloads off (`TUNSETOFFLOAD` 0, as [`TapDevice::create`] leaves them) the kernel sends no GSO frames and
/// finishes checksums before a frame reaches the TAP. With `TUN_F_CSUM` on it marks frames
/// [`NEEDS_CSUM`](VirtioNetHdr::NEEDS_CSUM) instead, and the receive path (`nic::tap`) completes them in
/// software.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*` flags.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type; [`GSO_NONE`](VirtioNetHdr::GSO_NONE) for an ordinary frame.
    pub gso_type: u8,
    /// Length of the headers to copy into each GSO segment.
    pub hdr_len: u16,
    /// Payload bytes per GSO segment.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet frame (with `NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start` (with `NEEDS_CSUM`).
    pub csum_offset: u16,
}

const _: () = assert!(size_of::<VirtioNetHdr>() == VNET_HDR_LEN);

impl VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (pseudo-header sum only).
    pub const NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel already checked the checksum.
    pub const DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    pub const GSO_NONE: u8 = 0;

    /// Parses the header from the bytes in front of a received frame.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }

    /// The header as it goes in front of a frame written to the TAP.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// One queue of a TAP device: an fd of `/dev/net/tun` attached to the interface, non-blocking.
///
/// The fd keeps working when the interface moves to another network namespace.
#[derive(Debug)]
pub struct TapQueueFd {
    fd: OwnedFd,
}

impl TapQueueFd {
    /// Reads one frame, its `virtio_net_hdr` first, into `buf`. `WouldBlock` when no frame is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let n = syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()))?;
        Ok(n as usize)
    }

    /// Writes one frame behind the header `hdr` (one `writev`). `WouldBlock` when the device refuses it for now.
    pub fn write(&self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: hdr.len() },
            libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() },
        ];
        // The kernel only reads through the iovecs (writev), so the `*mut` casts never lead to a write.
        let n = syscall!(writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int))?;
        Ok(n as usize)
    }

    /// The MAC of the Linux side of the interface (`SIOCGIFHWADDR` on the tun fd, which works in any namespace).
    pub fn kernel_mac(&self) -> io::Result<[u8; 6]> {
        // SAFETY: `ifreq` is plain old data; all-zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        syscall!(ioctl(self.fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req))?;
        // SAFETY: SIOCGIFHWADDR on a tun fd filled the `ifru_hwaddr` member of the union.
        let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *dst = *src as u8;
        }
        Ok(mac)
    }

    /// The interface's current name (`TUNGETIFF`).
    pub fn interface_name(&self) -> io::Result<String> {
        // SAFETY: `ifreq` is plain old data; all-zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        syscall!(ioctl(self.fd.as_raw_fd(), libc::TUNGETIFF, &mut req))?;
        Ok(name_of(&req))
    }

    /// Sets the device's offloads (`TUNSETOFFLOAD`, `TUN_F_*` flags). [`TapDevice::create`] sets none; turning
    /// `TUN_F_CSUM` on makes Linux hand over partial checksums (`NEEDS_CSUM`), which tests use to exercise the
    /// receive path's checksum completion.
    pub fn set_offloads(&self, flags: libc::c_uint) -> io::Result<()> {
        syscall!(ioctl(self.fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong)).map(drop)
    }

    /// Attaches `prog` as the device's steering program (`TUNSETSTEERINGEBPF`); `None` detaches it and returns
    /// the device to the kernel's own flow hashing.
    pub fn set_steering(&self, prog: Option<&SteeringProgram>) -> io::Result<()> {
        let prog_fd: libc::c_int = prog.map_or(-1, |p| p.fd.as_raw_fd());
        syscall!(ioctl(self.fd.as_raw_fd(), libc::TUNSETSTEERINGEBPF, &prog_fd)).map(drop)
    }
}

impl AsFd for TapQueueFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TapQueueFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A multi-queue TAP interface: one [`TapQueueFd`] per queue.
///
/// Created with `IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR`, a 10-byte vnet header and every offload
/// off (`TUNSETOFFLOAD` 0: no TSO/GSO, so frames never exceed the MTU; no checksum offload, so Linux completes
/// checksums before handing frames to us). Link configuration (up/down, addresses, namespace) is the caller's;
/// [`set_up`](TapDevice::set_up) is a helper for the common case. Not persistent: the interface goes away when
/// the last queue fd closes.
#[derive(Debug)]
pub struct TapDevice {
    name: String,
    queues: Vec<TapQueueFd>,
}

impl TapDevice {
    /// Creates (or attaches to) TAP interface `name` with `queues` queues. Needs CAP_NET_ADMIN.
    ///
    /// `name` may be a pattern such as `"ixtap%d"`; [`name`](TapDevice::name) returns the name the kernel chose.
    pub fn create(name: &str, queues: u32) -> io::Result<TapDevice> {
        if queues == 0 || queues > MAX_TAP_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a TAP device needs 1..={MAX_TAP_QUEUES} queues, not {queues}"),
            ));
        }
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR) as libc::c_short;
        let mut req = super::ifreq_for(name)?;
        let mut dev = TapDevice { name: String::new(), queues: Vec::with_capacity(queues as usize) };
        for i in 0..queues {
            let fd = open_tun(c"/dev/net/tun")?;
            // Queue 0 creates the interface and the kernel writes back the name it chose (for a pattern such as
            // "ixtap%d"), so the other queues attach to that name.
            req.ifr_ifru.ifru_flags = flags;
            syscall!(ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req)).map_err(|e| {
                let message = format!("TUNSETIFF {name:?} (queue {i}): {e} (needs CAP_NET_ADMIN)");
                super::with_context(e, message)
            })?;
            let queue = TapQueueFd { fd };
            if i == 0 {
                dev.name = name_of(&req);
                // The vnet header size and the offloads belong to the device, not the queue.
                let hdr_len = VNET_HDR_LEN as libc::c_int;
                syscall!(ioctl(queue.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len))?;
                queue.set_offloads(0)?;
            }
            dev.queues.push(queue);
        }
        Ok(dev)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of queues.
    pub fn queue_count(&self) -> u32 {
        self.queues.len() as u32
    }

    /// Queue `i`, if it exists.
    pub fn queue(&self, i: u32) -> Option<&TapQueueFd> {
        self.queues.get(i as usize)
    }

    /// The MAC of the Linux side of the interface.
    pub fn kernel_mac(&self) -> io::Result<[u8; 6]> {
        self.first()?.kernel_mac()
    }

    /// Attaches `prog` as the steering program, so the queue for each frame Linux sends is `prog`'s choice.
    pub fn attach_steering(&self, prog: &SteeringProgram) -> io::Result<()> {
        self.first()?.set_steering(Some(prog))
    }

    /// Detaches the steering program (back to the kernel's flow hashing).
    pub fn detach_steering(&self) -> io::Result<()> {
        self.first()?.set_steering(None)
    }

    /// Sets `IFF_UP` on the interface, looked up by name in the *calling thread's* network namespace.
    pub fn set_up(&self) -> io::Result<()> {
        set_link_up(&self.name)
    }

    /// Hands out the queue fds, one per core; the interface lives until all of them are closed.
    pub fn into_queues(self) -> Vec<TapQueueFd> {
        self.queues
    }

    fn first(&self) -> io::Result<&TapQueueFd> {
        self.queues.first().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "TAP device has no queue"))
    }
}

fn open_tun(path: &CStr) -> io::Result<OwnedFd> {
    let fd = syscall!(open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => " (TAP needs root or CAP_NET_ADMIN)",
            Some(libc::ENOENT) => " (no TUN/TAP support: load the tun module)",
            _ => "",
        };
        let message = format!("open /dev/net/tun: {e}{hint}");
        super::with_context(e, message)
    })?;
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets `IFF_UP` on interface `name` in the calling thread's network namespace (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`).
pub fn set_link_up(name: &str) -> io::Result<()> {
    let fd = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = super::ifreq_for(name)?;
    syscall!(ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    syscall!(ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req)).map(drop)
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_MAXINSNS: usize = 4096;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const _: () = assert!(size_of::<ProgLoadAttr>() == 72);

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`, up to `cpu`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
}

const _: () = assert!(size_of::<TestRunAttr>() == 72);

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    syscall!(syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()))
}

/// A loaded `BPF_PROG_TYPE_SOCKET_FILTER` program that picks a TAP queue per frame; closed on drop.
///
/// For TAP steering the kernel runs the program with the socket buffer's data at the Ethernet header, so
/// `BPF_LD_ABS` offsets are frame offsets.
#[derive(Debug)]
pub struct SteeringProgram {
    fd: OwnedFd,
}

impl SteeringProgram {
    /// Loads `insns` as a socket-filter program. On a verifier rejection the error carries the verifier log.
    pub fn load(insns: &[BpfInsn]) -> io::Result<SteeringProgram> {
        if insns.is_empty() || insns.len() > BPF_MAXINSNS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "BPF program length out of range"));
        }
        let license = c"Dual MIT/GPL";
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(b"ix_steer");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(SteeringProgram { fd: owned(fd) }),
            Err(first) => {
                // Load again with the verifier log on, only to explain the failure.
                let mut log = vec![0u8; 64 * 1024];
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                    return Ok(SteeringProgram { fd: owned(fd) });
                }
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(io::Error::new(
                    first.kind(),
                    format!(
                        "BPF_PROG_LOAD of the TAP steering program: {first} (needs CAP_BPF or root); verifier \
                         log:\n{}",
                        String::from_utf8_lossy(&log[..end])
                    ),
                ))
            }
        }
    }

    /// Runs the program on `frame` in the kernel (`BPF_PROG_TEST_RUN`) and returns its result: for tests and
    /// diagnostics, to check that the program and its Rust twin agree on frames no real flow would produce.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        // The test runner strips an Ethernet header (`eth_type_trans`) before running a socket filter, whereas
        // TAP steering runs it on the whole frame; so put a dummy header in front to see what steering sees.
        let mut data = vec![0u8; 14 + frame.len()];
        data[12] = 0x88; // ETH_P_802_EX1 (0x88b5), a local EtherType the kernel does not inspect.
        data[13] = 0xb5;
        data[14..].copy_from_slice(frame);
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: data.len() as u32,
            data_in: data.as_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.retval)
    }
}

impl AsRawFd for SteeringProgram {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) as a new file descriptor and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_roundtrip() {
        let h = VirtioNetHdr { flags: 1, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 34, csum_offset: 6 };
        assert_eq!(VirtioNetHdr::from_bytes(&h.to_bytes()), h);
        assert_eq!(VirtioNetHdr::default().to_bytes(), [0u8; VNET_HDR_LEN]);
    }

    #[test]
    fn bad_queue_counts_are_refused() {
        assert_eq!(TapDevice::create("ixbad", 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(TapDevice::create("ixbad", MAX_TAP_QUEUES + 1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(TapDevice::create("", 1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
