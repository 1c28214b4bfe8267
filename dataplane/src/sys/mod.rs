//! The dataplane's only door to the operating system: syscalls, memory mappings, BPF, AF_XDP and TAP.
//!
//! Everything `unsafe` that touches the kernel lives under this module (plus the UMEM ring accessors in
//! `nic::afxdp`). Each wrapper returns `io::Error` unchanged so the errno survives to the edge.
#![allow(unsafe_code)]

pub mod bpf;
pub mod mmap;
pub mod shm;
pub mod tap;
pub mod xdp;

use std::io;

/// Calls a libc function and maps a `-1` return to the current `errno` as `io::Error`.
#[macro_export]
#[doc(hidden)]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller of `syscall!` guarantees the arguments are valid for this libc call.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// `CLOCK_MONOTONIC` in microseconds.
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Resolves an interface name to its index, or a clear error naming the interface.
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if idx == 0 {
        Err(io::Error::new(io::ErrorKind::NotFound, format!("no network interface named {name:?}")))
    } else {
        Ok(idx)
    }
}

/// Reads an interface's MAC address through `SIOCGIFHWADDR`.
pub fn interface_mac(name: &str) -> io::Result<[u8; 6]> {
    let fd = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut req: libc::ifreq = ifreq_for(name)?;
    syscall!(ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCGIFHWADDR, &mut req))?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// Reads an interface's MTU through `SIOCGIFMTU`.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let fd = syscall!(socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut req: libc::ifreq = ifreq_for(name)?;
    syscall!(ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCGIFMTU, &mut req))?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// An `ifreq` with `ifr_name` set, or an error if the name does not fit `IFNAMSIZ`.
pub fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: `ifreq` is plain old data; all-zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Moves the calling thread into the network namespace `ns` (an open `/var/run/netns/NAME`).
pub fn enter_netns(ns: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    syscall!(setns(ns.as_raw_fd(), libc::CLONE_NEWNET)).map(drop)
}

/// Waits until `fd` is readable or `timeout` passes; returns whether it is readable. EINTR counts as "not yet".
pub fn poll_readable(fd: std::os::fd::RawFd, timeout: crate::time::Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.total_micros().div_ceil(1000).min(i32::MAX as u64) as libc::c_int;
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(n > 0 && p.revents & libc::POLLIN != 0)
}

/// Waits until any of `fds` is readable or `timeout` passes; returns whether one is. EINTR counts as "not yet".
pub fn poll_any_readable(fds: &[std::os::fd::RawFd], timeout: crate::time::Duration) -> io::Result<bool> {
    let mut p = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 4];
    let n = fds.len().min(p.len());
    for (slot, &fd) in p.iter_mut().zip(&fds[..n]) {
        slot.fd = fd;
    }
    let ms = timeout.total_micros().div_ceil(1000).min(i32::MAX as u64) as libc::c_int;
    // SAFETY: `p[..n]` are `n` valid pollfds for the duration of the call.
    let ready = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, ms) };
    if ready < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(ready > 0 && p[..n].iter().any(|q| q.revents & libc::POLLIN != 0))
}

/// A non-blocking eventfd: one thread signals, another sleeps on it in `poll` (the wake-up of a queue whose
/// inbox got frames from another queue's thread).
#[derive(Debug)]
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    /// A new eventfd, counter 0, non-blocking and close-on-exec.
    pub fn new() -> io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        let fd = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: `eventfd` just returned this fd and nothing else owns it.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable. Never blocks (a counter at its maximum is already readable).
    pub fn signal(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd we own.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter, so the fd stops polling readable.
    pub fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from an fd we own; non-blocking, EAGAIN when zero.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }

    /// The fd, for `poll`.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// An epoll instance watching a few fds for input: one fd that polls readable when any of them does (what an
/// app's own event loop sleeps on for a queue that has a NIC fd and a steering inbox).
#[derive(Debug)]
pub struct PollSet(std::os::fd::OwnedFd);

impl PollSet {
    /// Watches `fds` (level-triggered `EPOLLIN`); close-on-exec.
    pub fn new(fds: &[std::os::fd::RawFd]) -> io::Result<PollSet> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let ep = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: `epoll_create1` just returned this fd and nothing else owns it.
        let set = PollSet(unsafe { std::os::fd::OwnedFd::from_raw_fd(ep) });
        for &fd in fds {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            syscall!(epoll_ctl(set.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev))?;
        }
        Ok(set)
    }

    /// The fd, for `poll`/`epoll`.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// An OS error with a sentence of context that keeps its errno (C callers still see the real `errno`).
#[derive(Debug)]
pub struct ErrnoContext {
    /// The original errno.
    pub errno: i32,
    /// What was being done, and the hint for the user.
    pub message: String,
}

impl std::fmt::Display for ErrnoContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrnoContext {}

/// Wraps `e` with `message`, keeping its kind and errno (see [`errno_of`]).
pub fn with_context(e: io::Error, message: String) -> io::Error {
    let errno = errno_of(&e).unwrap_or(libc::EIO);
    io::Error::new(e.kind(), ErrnoContext { errno, message })
}

/// The errno behind `e`, also through [`with_context`] wrappers.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| e.get_ref().and_then(|inner| inner.downcast_ref::<ErrnoContext>()).map(|c| c.errno))
}
