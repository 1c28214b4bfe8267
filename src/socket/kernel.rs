//! The kernel calls of the socket layer, as raw system calls: the layer's own exports interpose the libc names
//! (`read`, `close`, `accept4`, ...), so going through libc here would recurse into them.
#![allow(unsafe_code)]

use std::ffi::c_long;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

/// A failed call's errno.
pub type Errno = i32;

fn check(r: c_long) -> Result<c_long, Errno> {
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

/// `syscall(2)` with up to six integer arguments: -1 and errno on failure, as libc's wrappers. On x86-64 the
/// `syscall` instruction itself, inlined (every interposed call on a kernel fd pays this: libc's variadic
/// `syscall()` costs twice the instructions of the libc wrapper it replaces).
///
/// # Safety
/// The arguments must be valid for `nr` (pointers to memory of the right size and lifetime).
#[inline(always)]
pub unsafe fn raw(nr: c_long, a: [usize; 6]) -> c_long {
    #[cfg(target_arch = "x86_64")]
    {
        let ret: c_long;
        // SAFETY: the caller vouches for the arguments; the kernel clobbers only rcx and r11 (declared), and
        // touches no stack of ours.
        unsafe {
            std::arch::asm!("syscall", inlateout("rax") nr => ret, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5], lateout("rcx") _, lateout("r11") _,
                options(nostack, preserves_flags));
        }
        if (-4095..0).contains(&ret) {
            // SAFETY: __errno_location returns the calling thread's errno slot.
            unsafe { *libc::__errno_location() = -ret as i32 };
            return -1;
        }
        ret
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller vouches for the arguments.
    unsafe {
        libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5])
    }
}

fn call(nr: c_long, a: [usize; 6]) -> Result<c_long, Errno> {
    // SAFETY: only used below with integer arguments, or pointers to live locals or slices of the size passed.
    check(unsafe { raw(nr, a) })
}

/// A new non-blocking, close-on-exec eventfd (the placeholder of a dataplane socket).
pub fn eventfd() -> Result<RawFd, Errno> {
    call(libc::SYS_eventfd2, [0, (libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) as usize, 0, 0, 0, 0]).map(|r| r as RawFd)
}

/// `sched_yield()`.
pub fn sched_yield() {
    let _ = call(libc::SYS_sched_yield, [0; 6]);
}

/// Adds 1 to an eventfd's counter (a wake-up; the reader drains it).
pub fn eventfd_signal(fd: RawFd) {
    let one = 1u64;
    let _ = call(libc::SYS_write, [fd as usize, &one as *const u64 as usize, 8, 0, 0, 0]);
}

/// Sets an eventfd's counter to `value` (0: not readable; `u64::MAX - 1`: readable and not writable).
pub fn eventfd_set(fd: RawFd, value: u64) {
    let mut sink = 0u64;
    // Draining reads the counter to zero; EAGAIN when it already is.
    let _ = call(libc::SYS_read, [fd as usize, &mut sink as *mut u64 as usize, 8, 0, 0, 0]);
    if value != 0 {
        let _ = call(libc::SYS_write, [fd as usize, &value as *const u64 as usize, 8, 0, 0, 0]);
    }
}

/// `dup3(old, new, flags)`.
pub fn dup3(old: RawFd, new: RawFd, cloexec: bool) -> Result<(), Errno> {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    call(libc::SYS_dup3, [old as usize, new as usize, flags as usize, 0, 0, 0]).map(drop)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 0)`.
pub fn dup_cloexec(fd: RawFd) -> Result<RawFd, Errno> {
    call(libc::SYS_fcntl, [fd as usize, libc::F_DUPFD_CLOEXEC as usize, 0, 0, 0, 0]).map(|r| r as RawFd)
}

/// `fcntl(fd, cmd, arg)`.
pub fn fcntl(fd: RawFd, cmd: i32, arg: usize) -> Result<i32, Errno> {
    call(libc::SYS_fcntl, [fd as usize, cmd as usize, arg, 0, 0, 0]).map(|r| r as i32)
}

/// `close(fd)`.
pub fn close(fd: RawFd) {
    let _ = call(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]);
}

/// An integer socket option.
pub fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    let mut len: libc::socklen_t = 4;
    call(
        libc::SYS_getsockopt,
        [fd as usize, level as usize, name as usize, &mut v as *mut i32 as usize, &mut len as *mut _ as usize, 0],
    )?;
    Ok(v)
}

/// A socket option given as its bytes (a struct linger, a struct timeval, ...).
pub fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    call(libc::SYS_setsockopt, [fd as usize, level as usize, name as usize, value.as_ptr() as usize, value.len(), 0])
        .map(drop)
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.ip().octets()) },
        sin_zero: [0; 8],
    }
}

/// `bind(fd, addr)` for IPv4.
pub fn bind_v4(fd: RawFd, addr: SocketAddrV4) -> Result<(), Errno> {
    let sa = sockaddr_in(addr);
    call(libc::SYS_bind, [fd as usize, &sa as *const _ as usize, std::mem::size_of_val(&sa), 0, 0, 0]).map(drop)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    call(libc::SYS_listen, [fd as usize, backlog as usize, 0, 0, 0, 0]).map(drop)
}

/// The local IPv4 address of a kernel socket.
pub fn getsockname_v4(fd: RawFd) -> Result<SocketAddrV4, Errno> {
    let mut sa: libc::sockaddr_in = sockaddr_in(SocketAddrV4::new(0.into(), 0));
    let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
    call(libc::SYS_getsockname, [fd as usize, &mut sa as *mut _ as usize, &mut len as *mut _ as usize, 0, 0, 0])?;
    Ok(SocketAddrV4::new(sa.sin_addr.s_addr.to_ne_bytes().into(), u16::from_be(sa.sin_port)))
}

/// A new epoll instance (close-on-exec).
pub fn epoll_create() -> Result<RawFd, Errno> {
    call(libc::SYS_epoll_create1, [libc::EPOLL_CLOEXEC as usize, 0, 0, 0, 0, 0]).map(|r| r as RawFd)
}

/// Adds `fd` to `epfd` for `events`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events, u64: fd as u64 };
    call(
        libc::SYS_epoll_ctl,
        [epfd as usize, libc::EPOLL_CTL_ADD as usize, fd as usize, &mut ev as *mut _ as usize, 0, 0],
    )
    .map(drop)
}

/// `poll(fds, timeout_ms)`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, Errno> {
    call(libc::SYS_poll, [fds.as_mut_ptr() as usize, fds.len(), timeout_ms as usize, 0, 0, 0]).map(|r| r as usize)
}

/// `recvmsg(fd)` into `bufs` with `flags`: bytes (or the real length with MSG_TRUNC), the sender, and whether the
/// datagram was truncated.
pub fn recv_dgram(fd: RawFd, bufs: &mut [&mut [u8]], flags: i32) -> Result<(usize, SocketAddrV4, bool), Errno> {
    let mut iov: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut sa: libc::sockaddr_in = sockaddr_in(SocketAddrV4::new(0.into(), 0));
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_name = &mut sa as *mut _ as *mut _;
    m.msg_namelen = std::mem::size_of_val(&sa) as libc::socklen_t;
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    let n = call(libc::SYS_recvmsg, [fd as usize, &mut m as *mut _ as usize, flags as usize, 0, 0, 0])?;
    let from = SocketAddrV4::new(sa.sin_addr.s_addr.to_ne_bytes().into(), u16::from_be(sa.sin_port));
    Ok((n as usize, from, m.msg_flags & libc::MSG_TRUNC != 0))
}

/// `sendmsg(fd)` of `bufs` to `dst` (`None`: the connected peer).
pub fn send_dgram(fd: RawFd, bufs: &[&[u8]], dst: Option<SocketAddrV4>, flags: i32) -> Result<usize, Errno> {
    let mut iov: Vec<libc::iovec> =
        bufs.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut sa = dst.map(sockaddr_in);
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(sa) = sa.as_mut() {
        m.msg_name = sa as *mut _ as *mut _;
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    call(libc::SYS_sendmsg, [fd as usize, &m as *const _ as usize, flags as usize, 0, 0, 0]).map(|n| n as usize)
}

/// `connect(fd, addr)` for IPv4, or with `None` `connect(fd, AF_UNSPEC)`.
pub fn connect_v4(fd: RawFd, addr: Option<SocketAddrV4>) -> Result<(), Errno> {
    let mut sa = sockaddr_in(addr.unwrap_or(SocketAddrV4::new(0.into(), 0)));
    if addr.is_none() {
        sa.sin_family = libc::AF_UNSPEC as libc::sa_family_t;
    }
    call(libc::SYS_connect, [fd as usize, &sa as *const _ as usize, std::mem::size_of_val(&sa), 0, 0, 0]).map(drop)
}

/// `ioctl(fd, FIONREAD)`.
pub fn fionread(fd: RawFd) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    call(libc::SYS_ioctl, [fd as usize, libc::FIONREAD as usize, &mut v as *mut _ as usize, 0, 0, 0])?;
    Ok(v)
}
