//! Interposed POSIX socket calls (`LD_PRELOAD=libix.so`, or linking `-lix`): calls on dataplane sockets go to
//! [`crate::socket`]; every other call reaches the kernel exactly as libc would make it, as a raw system call (never
//! through libc's symbol, which is this very export), with the same return value and errno.
//!
//! The test for "is this a dataplane socket" is one atomic load ([`crate::socket::owns`]), so kernel fds pay
//! almost nothing. `bind` and `connect` on kernel sockets ask the layer whether the address belongs to the
//! dataplane. `fcntl` and `ioctl` are C-variadic: their C bodies (`capi/c/posix.c`) call `ixc_rs_fcntl` and
//! `ixc_rs_ioctl` here.
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_int, c_ulong, c_void};
use std::net::{Ipv4Addr, SocketAddrV4};

use libc::{iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t};

use super::guard;
use crate::runtime::set_errno;
use crate::socket::{self, kernel::raw, Accepted, OptValue, Taken};

/// A raw system call, returning what libc's wrapper would (errno set on failure).
macro_rules! sys {
    ($nr:expr $(, $a:expr)*) => {{
        let mut args = [0usize; 6];
        let given = [$($a as usize),*];
        args[..given.len()].copy_from_slice(&given);
        // SAFETY: the arguments are the application's own, passed through unchanged to the call it made.
        unsafe { raw($nr, args) }
    }};
}

/// The branch of an interposed call for an fd the bitmap marks as a dataplane socket, out of line so that the
/// kernel path (every call on a kernel fd) keeps a small frame and no thread-local access: `on_dataplane`, or
/// `kernel` when the socket layer itself is the caller.
#[cold]
#[inline(never)]
fn dataplane<T>(kernel: impl FnOnce() -> T, on_dataplane: impl FnOnce() -> T) -> T {
    if socket::inside() {
        kernel()
    } else {
        on_dataplane()
    }
}

fn fail<T: From<i8>>(errno: i32) -> T {
    set_errno(errno);
    T::from(-1)
}

fn fail_ssize(errno: i32) -> ssize_t {
    set_errno(errno);
    -1
}

/// The IPv4 address in `addr`, if it is one.
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
unsafe fn v4_of(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddrV4> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: non-null and at least a sockaddr_in long (caller's contract); read unaligned as apps may pass any
    // byte buffer.
    let sin = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
    (sin.sin_family == libc::AF_INET as libc::sa_family_t)
        .then(|| SocketAddrV4::new(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()), u16::from_be(sin.sin_port)))
}

/// Writes `a` to the app's `addr`/`len` as accept/getsockname do (truncated to the room given).
///
/// # Safety
/// `addr` and `len` are null or valid for writing as those calls require.
unsafe fn put_v4(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
        sin_zero: [0; 8],
    };
    let full = std::mem::size_of_val(&sin);
    // SAFETY: `len` is valid (caller's contract); we copy at most the room it states into `addr`.
    unsafe {
        let room = (*len as usize).min(full);
        std::ptr::copy_nonoverlapping(&sin as *const _ as *const u8, addr as *mut u8, room);
        *len = full as socklen_t;
    }
}

/// Most iovecs one call takes (Linux's UIO_MAXIOV).
const IOV_MAX: c_int = 1024;

/// Checks an iovec array as the kernel does: a count outside `0..=IOV_MAX` is EINVAL; a null array or a null
/// buffer with a length is EFAULT (the kernel would fault copying it).
///
/// # Safety
/// `iov` is null or points to `n` iovecs.
unsafe fn check_iovecs<'a>(iov: *const iovec, n: c_int) -> Result<&'a [iovec], i32> {
    if !(0..=IOV_MAX).contains(&n) {
        return Err(libc::EINVAL);
    }
    if n == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: caller's contract: non-null, `n` iovecs.
    let iov = unsafe { std::slice::from_raw_parts(iov, n as usize) };
    if iov.iter().any(|v| v.iov_len > 0 && v.iov_base.is_null()) {
        return Err(libc::EFAULT);
    }
    Ok(iov)
}

/// The byte slices of one call's iovecs: inline up to 8 (a server's reply or request takes a few), so that a
/// `sendmsg`/`readv` allocates nothing.
type IoSlices<T> = smallvec::SmallVec<[T; 8]>;

/// The app's iovecs as byte slices (errno EINVAL or EFAULT as the kernel would say).
///
/// # Safety
/// `iov` points to `n` iovecs naming readable memory that stays valid for the call.
unsafe fn iovecs<'a>(iov: *const iovec, n: c_int) -> Result<IoSlices<&'a [u8]>, i32> {
    // SAFETY: caller's contract.
    let iov = unsafe { check_iovecs(iov, n) }?;
    Ok(iov
        .iter()
        .filter(|v| v.iov_len > 0)
        // SAFETY: each iovec names readable memory (caller's contract), non-null (checked).
        .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
        .collect())
}

/// The app's iovecs as writable byte slices.
///
/// # Safety
/// As [`iovecs`], writable.
unsafe fn iovecs_mut<'a>(iov: *const iovec, n: c_int) -> Result<IoSlices<&'a mut [u8]>, i32> {
    // SAFETY: caller's contract.
    let iov = unsafe { check_iovecs(iov, n) }?;
    Ok(iov
        .iter()
        .filter(|v| v.iov_len > 0)
        // SAFETY: each iovec names writable memory (caller's contract), non-null (checked); the app passed
        // distinct buffers.
        .map(|v| unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, v.iov_len) })
        .collect())
}

fn recv_result(r: Result<usize, i32>) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => fail_ssize(e),
    }
}

fn send_result(r: Result<usize, i32>, flags: c_int) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(socket::EPIPE_SIGNAL) => {
            if flags & libc::MSG_NOSIGNAL == 0 {
                // SAFETY: raising a signal in our own process, as the kernel would for this write.
                unsafe { libc::raise(libc::SIGPIPE) };
            }
            fail_ssize(libc::EPIPE)
        }
        Err(e) => fail_ssize(e),
    }
}

fn slice_mut<'a>(buf: *mut c_void, n: size_t) -> Option<&'a mut [u8]> {
    if n == 0 {
        return Some(&mut []);
    }
    if buf.is_null() {
        return None;
    }
    // SAFETY: read(2)'s contract: `buf` names `n` writable bytes.
    Some(unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) })
}

fn slice<'a>(buf: *const c_void, n: size_t) -> Option<&'a [u8]> {
    if n == 0 {
        return Some(&[]);
    }
    if buf.is_null() {
        return None;
    }
    // SAFETY: write(2)'s contract: `buf` names `n` readable bytes.
    Some(unsafe { std::slice::from_raw_parts(buf as *const u8, n) })
}

/// `bind(2)`.
///
/// # Safety
/// As bind(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: bind's contract.
    if let Some(a) = unsafe { v4_of(addr, len) } {
        if let Taken::Yes(r) = settled(Taken::No, || socket::bind(fd, a)) {
            return match r {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
    }
    sys!(libc::SYS_bind, fd, addr, len) as c_int
}

/// Runs a socket call like [`guard`], then the dataplane cycle its work needs when no event loop of this thread
/// will run one (`socket::settle`).
fn settled<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    let r = guard(on_panic, f);
    socket::settle();
    r
}

/// `listen(2)`.
///
/// # Safety
/// As listen(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    if socket::owns(fd) {
        return match settled(Err(libc::EIO), || socket::listen(fd, backlog)) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_listen, fd, backlog) as c_int
}

/// `accept4(2)`.
///
/// # Safety
/// As accept4(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    if socket::owns(fd) {
        match settled(Err(libc::EIO), || socket::accept(fd, flags)) {
            Ok(Accepted::Dataplane(newfd, peer)) => {
                // SAFETY: accept's contract for addr/len.
                unsafe { put_v4(peer, addr, len) };
                return newfd;
            }
            Ok(Accepted::Kernel(k)) => return sys!(libc::SYS_accept4, k, addr, len, flags) as c_int,
            Err(e) => return fail(e),
        }
    }
    sys!(libc::SYS_accept4, fd, addr, len, flags) as c_int
}

/// `accept(2)`.
///
/// # Safety
/// As accept(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: same contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// `connect(2)`.
///
/// # Safety
/// As connect(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: connect's contract.
    if let Some(a) = unsafe { v4_of(addr, len) } {
        if let Taken::Yes(r) = settled(Taken::No, || socket::connect(fd, a)) {
            return match r {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
    } else if socket::owns(fd) {
        // SAFETY: connect's contract: `addr` names `len` readable bytes.
        if !addr.is_null() && len as usize >= 2 && unsafe { (*addr).sa_family } == libc::AF_UNSPEC as libc::sa_family_t
        {
            // A UDP socket dissolves its association.
            return match settled(Err(libc::EIO), || socket::disconnect(fd)) {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
        return fail(libc::EAFNOSUPPORT);
    }
    sys!(libc::SYS_connect, fd, addr, len) as c_int
}

/// `read(2)`.
///
/// # Safety
/// As read(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_read, fd, buf, n) as ssize_t,
            move || {
                let Some(b) = slice_mut(buf, n) else { return fail_ssize(libc::EFAULT) };
                recv_result(settled(Err(libc::EIO), || socket::recv(fd, &mut [b], 0)))
            },
        );
    }
    sys!(libc::SYS_read, fd, buf, n) as ssize_t
}

/// `__read_chk` (fortified read).
///
/// # Safety
/// As read(2), with `buflen` the buffer's size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t {
    if n > buflen {
        // SAFETY: what glibc does on a fortify violation.
        unsafe { libc::abort() };
    }
    // SAFETY: same contract.
    unsafe { read(fd, buf, n) }
}

/// `readv(2)`.
///
/// # Safety
/// As readv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_readv, fd, iov, n) as ssize_t,
            move || {
                // SAFETY: readv's contract.
                let mut bufs = match unsafe { iovecs_mut(iov, n) } {
                    Ok(b) => b,
                    Err(e) => return fail_ssize(e),
                };
                recv_result(settled(Err(libc::EIO), || socket::recv(fd, &mut bufs, 0)))
            },
        );
    }
    sys!(libc::SYS_readv, fd, iov, n) as ssize_t
}

/// `recvfrom(2)`.
///
/// # Safety
/// As recvfrom(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    if socket::maybe_owns(fd) {
        // SAFETY: same contract.
        return unsafe { recvfrom_dataplane(fd, buf, n, flags, addr, len) };
    }
    sys!(libc::SYS_recvfrom, fd, buf, n, flags, addr, len) as ssize_t
}

/// `recvfrom` on a dataplane fd, out of line with plain arguments, so the kernel path builds no closures and
/// needs no stack frame.
///
/// # Safety
/// As recvfrom(2).
#[cold]
#[inline(never)]
unsafe fn recvfrom_dataplane(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    dataplane(
        move || sys!(libc::SYS_recvfrom, fd, buf, n, flags, addr, len) as ssize_t,
        move || {
            let Some(b) = slice_mut(buf, n) else { return fail_ssize(libc::EFAULT) };
            let r = settled(Err(libc::EIO), || socket::recv_msg(fd, &mut [b], flags));
            if let Ok((_, from, _)) = r {
                if !addr.is_null() {
                    if let Some(peer) = from.or_else(|| socket::name(fd, false).ok()) {
                        // SAFETY: recvfrom's contract for addr/len.
                        unsafe { put_v4(peer, addr, len) };
                    }
                }
            }
            recv_result(r.map(|(n, _, _)| n))
        },
    )
}

/// `recv(2)`.
///
/// # Safety
/// As recv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: same contract.
    unsafe { recvfrom(fd, buf, n, flags, std::ptr::null_mut(), std::ptr::null_mut()) }
}

/// `recvmsg(2)`.
///
/// # Safety
/// As recvmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_recvmsg, fd, msg, flags) as ssize_t,
            move || {
                if msg.is_null() {
                    return fail_ssize(libc::EFAULT);
                }
                // SAFETY: recvmsg's contract: `msg` is a valid msghdr.
                let m = unsafe { &mut *msg };
                // SAFETY: its iovecs name writable memory.
                let mut bufs = match unsafe { iovecs_mut(m.msg_iov, m.msg_iovlen.min(c_int::MAX as usize) as c_int) } {
                    Ok(b) => b,
                    Err(e) => return fail_ssize(e),
                };
                let r = settled(Err(libc::EIO), || socket::recv_msg(fd, &mut bufs, flags));
                if let Ok((_, from, truncated)) = r {
                    m.msg_controllen = 0;
                    m.msg_flags = if truncated { libc::MSG_TRUNC } else { 0 };
                    if !m.msg_name.is_null() {
                        match from.ok_or(libc::ENOTCONN).or_else(|_| socket::name(fd, false)) {
                            // SAFETY: msg_name/msg_namelen as recvmsg requires.
                            Ok(peer) => unsafe { put_v4(peer, m.msg_name as *mut sockaddr, &mut m.msg_namelen) },
                            Err(_) => m.msg_namelen = 0,
                        }
                    }
                }
                recv_result(r.map(|(n, _, _)| n))
            },
        );
    }
    sys!(libc::SYS_recvmsg, fd, msg, flags) as ssize_t
}

/// `write(2)`.
///
/// # Safety
/// As write(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_write, fd, buf, n) as ssize_t,
            move || {
                let Some(b) = slice(buf, n) else { return fail_ssize(libc::EFAULT) };
                send_result(settled(Err(libc::EIO), || socket::send(fd, &[b], false)), 0)
            },
        );
    }
    sys!(libc::SYS_write, fd, buf, n) as ssize_t
}

/// `writev(2)`.
///
/// # Safety
/// As writev(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_writev, fd, iov, n) as ssize_t,
            move || {
                // SAFETY: writev's contract.
                let bufs = match unsafe { iovecs(iov, n) } {
                    Ok(b) => b,
                    Err(e) => return fail_ssize(e),
                };
                send_result(settled(Err(libc::EIO), || socket::send(fd, &bufs, false)), 0)
            },
        );
    }
    sys!(libc::SYS_writev, fd, iov, n) as ssize_t
}

/// `sendto(2)` (the address is ignored on a connected dataplane socket, as Linux does for TCP).
///
/// # Safety
/// As sendto(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    if socket::maybe_owns(fd) {
        // SAFETY: same contract.
        return unsafe { sendto_dataplane(fd, buf, n, flags, addr, len) };
    }
    if !addr.is_null() {
        // SAFETY: same contract.
        match unsafe { sendto_takes(fd, addr, len) } {
            // SAFETY: same contract.
            Ok(true) => return unsafe { sendto_dataplane(fd, buf, n, flags, addr, len) },
            Ok(false) => {}
            Err(e) => return fail_ssize(e),
        }
    }
    sys!(libc::SYS_sendto, fd, buf, n, flags, addr, len) as ssize_t
}

/// Whether a send to `addr` takes kernel socket `fd` to the dataplane (an unbound UDP socket sending into the
/// dataplane's subnet), out of line.
///
/// # Safety
/// `addr` names `len` readable bytes.
#[cold]
#[inline(never)]
unsafe fn sendto_takes(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Result<bool, i32> {
    // SAFETY: caller's contract.
    let Some(a) = (unsafe { v4_of(addr, len) }) else { return Ok(false) };
    guard(Ok(false), || socket::sendto_takes(fd, a))
}

/// `sendto` on a dataplane fd, out of line (as `recvfrom_dataplane`).
///
/// # Safety
/// As sendto(2).
#[cold]
#[inline(never)]
unsafe fn sendto_dataplane(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    dataplane(
        move || sys!(libc::SYS_sendto, fd, buf, n, flags, addr, len) as ssize_t,
        move || {
            let Some(b) = slice(buf, n) else { return fail_ssize(libc::EFAULT) };
            let dontwait = flags & libc::MSG_DONTWAIT != 0;
            // SAFETY: sendto's contract for addr/len.
            let dst = unsafe { v4_of(addr, len) };
            send_result(settled(Err(libc::EIO), || socket::send_to(fd, &[b], dontwait, dst)), flags)
        },
    )
}

/// `send(2)`.
///
/// # Safety
/// As send(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: same contract.
    unsafe { sendto(fd, buf, n, flags, std::ptr::null(), 0) }
}

/// `sendmsg(2)`.
///
/// # Safety
/// As sendmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_sendmsg, fd, msg, flags) as ssize_t,
            move || {
                if msg.is_null() {
                    return fail_ssize(libc::EFAULT);
                }
                // SAFETY: sendmsg's contract: `msg` is a valid msghdr whose iovecs name readable memory.
                let (bufs, dst) = unsafe {
                    let m = &*msg;
                    (
                        iovecs(m.msg_iov, m.msg_iovlen.min(c_int::MAX as usize) as c_int),
                        v4_of(m.msg_name as *const sockaddr, m.msg_namelen),
                    )
                };
                let bufs = match bufs {
                    Ok(b) => b,
                    Err(e) => return fail_ssize(e),
                };
                let dontwait = flags & libc::MSG_DONTWAIT != 0;
                send_result(settled(Err(libc::EIO), || socket::send_to(fd, &bufs, dontwait, dst)), flags)
            },
        );
    }
    if !msg.is_null() {
        // SAFETY: sendmsg's contract: `msg` is a valid msghdr.
        let (name, namelen) = unsafe { ((*msg).msg_name as *const sockaddr, (*msg).msg_namelen) };
        if !name.is_null() {
            // SAFETY: as above.
            match unsafe { sendto_takes(fd, name, namelen) } {
                // SAFETY: same contract (the fd is a dataplane socket now).
                Ok(true) => return unsafe { sendmsg(fd, msg, flags) },
                Ok(false) => {}
                Err(e) => return fail_ssize(e),
            }
        }
    }
    sys!(libc::SYS_sendmsg, fd, msg, flags) as ssize_t
}

/// `close(2)`.
///
/// # Safety
/// As close(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    // An event loop may still hold a deleted event's epoll registration for `fd`: it goes before the fd does.
    crate::event::linger::before_close(fd);
    socket::fdmap::forget_epoll_set(fd);
    if socket::owns(fd) {
        return match settled(Err(libc::EIO), || socket::close(fd)) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_close, fd) as c_int
}

/// `dup2(2)`: replacing `newfd` closes it, so its lingering epoll registrations go first (as for `close`).
///
/// # Safety
/// As dup2(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(oldfd: c_int, newfd: c_int) -> c_int {
    if oldfd == newfd {
        // Onto itself: a no-op that only checks oldfd (dup3 would say EINVAL).
        return if sys!(libc::SYS_fcntl, oldfd, libc::F_GETFD) < 0 { -1 } else { newfd };
    }
    crate::event::linger::before_close(newfd);
    socket::fdmap::forget_epoll_set(newfd);
    sys!(libc::SYS_dup3, oldfd, newfd, 0) as c_int
}

/// `dup3(2)`: as [`dup2`].
///
/// # Safety
/// As dup3(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(oldfd: c_int, newfd: c_int, flags: c_int) -> c_int {
    if oldfd != newfd {
        crate::event::linger::before_close(newfd);
        socket::fdmap::forget_epoll_set(newfd);
    }
    sys!(libc::SYS_dup3, oldfd, newfd, flags) as c_int
}

/// `shutdown(2)`.
///
/// # Safety
/// As shutdown(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    if socket::owns(fd) {
        return match settled(Err(libc::EIO), || socket::shutdown(fd, how)) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_shutdown, fd, how) as c_int
}

/// `getsockname(2)`.
///
/// # Safety
/// As getsockname(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if socket::owns(fd) {
        return match guard(Err(libc::EIO), || socket::name(fd, true)) {
            // SAFETY: getsockname's contract.
            Ok(a) => unsafe {
                put_v4(a, addr, len);
                0
            },
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_getsockname, fd, addr, len) as c_int
}

/// `getpeername(2)`.
///
/// # Safety
/// As getpeername(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if socket::owns(fd) {
        return match guard(Err(libc::EIO), || socket::name(fd, false)) {
            // SAFETY: getpeername's contract.
            Ok(a) => unsafe {
                put_v4(a, addr, len);
                0
            },
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_getpeername, fd, addr, len) as c_int
}

/// `getsockopt(2)`.
///
/// # Safety
/// As getsockopt(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    if socket::maybe_owns(fd) {
        return dataplane(
            move || sys!(libc::SYS_getsockopt, fd, level, name, value, len) as c_int,
            move || {
                if value.is_null() || len.is_null() {
                    return fail(libc::EFAULT);
                }
                let mut bytes = [0u8; 16];
                let size = match guard(Err(libc::EIO), || socket::getsockopt(fd, level, name)) {
                    Ok(OptValue::Int(v)) => {
                        bytes[..4].copy_from_slice(&v.to_ne_bytes());
                        4
                    }
                    Ok(OptValue::Linger(l)) => {
                        bytes[..4].copy_from_slice(&l.l_onoff.to_ne_bytes());
                        bytes[4..8].copy_from_slice(&l.l_linger.to_ne_bytes());
                        8
                    }
                    Ok(OptValue::Timeval(t)) => {
                        bytes[..8].copy_from_slice(&t.tv_sec.to_ne_bytes());
                        bytes[8..].copy_from_slice(&t.tv_usec.to_ne_bytes());
                        16
                    }
                    Err(e) => return fail(e),
                };
                // SAFETY: getsockopt's contract: `value` has `*len` writable bytes.
                unsafe {
                    let n = (*len as usize).min(size);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), value as *mut u8, n);
                    *len = n as socklen_t;
                }
                0
            },
        );
    }
    sys!(libc::SYS_getsockopt, fd, level, name, value, len) as c_int
}

/// `setsockopt(2)`.
///
/// # Safety
/// As setsockopt(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    if socket::owns(fd) {
        let Some(v) = slice(value, len as usize) else { return fail(libc::EFAULT) };
        return match settled(Err(libc::EIO), || socket::setsockopt(fd, level, name, v)) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_setsockopt, fd, level, name, value, len) as c_int
}

/// The body of the interposed `fcntl`/`fcntl64` (the C-variadic entry in `capi/c/posix.c` reads the argument).
///
/// # Safety
/// As fcntl(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ixc_rs_fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    if socket::owns(fd) {
        return match guard(Err(libc::EIO), || socket::fcntl(fd, cmd, arg as usize)) {
            Ok(v) => v,
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_fcntl, fd, cmd, arg) as c_int
}

/// The body of the interposed `ioctl`.
///
/// # Safety
/// As ioctl(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ixc_rs_ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    if socket::owns(fd) {
        if arg == 0 {
            return fail(libc::EFAULT);
        }
        let p = arg as *mut c_int;
        if request != libc::FIONBIO && request != libc::FIONREAD {
            return fail(libc::ENOTTY);
        }
        // SAFETY: for FIONBIO/FIONREAD the app passes a valid int*.
        let mut v = unsafe { p.read_unaligned() };
        return match guard(Err(libc::EIO), || socket::ioctl(fd, request, &mut v)) {
            // SAFETY: as above.
            Ok(()) => unsafe {
                p.write_unaligned(v);
                0
            },
            Err(e) => fail(e),
        };
    }
    sys!(libc::SYS_ioctl, fd, request, arg) as c_int
}

/// `poll(2)`: dataplane fds report their socket's readiness; while waiting, the dataplane keeps cycling and the
/// NIC fds wake the wait.
///
/// # Safety
/// As poll(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    if !socket::active() || socket::inside() || fds.is_null() || n == 0 {
        return sys!(libc::SYS_poll, fds, n, timeout) as c_int;
    }
    // SAFETY: poll's contract: `fds` names `n` pollfds.
    let user = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    guard(fail(libc::EIO), || poll_with_dataplane(user, timeout, std::ptr::null()))
}

/// `ppoll(2)`: as `poll`, with the signal mask in force while it waits; the timeout is rounded up to whole
/// milliseconds when dataplane sockets take part.
///
/// # Safety
/// As ppoll(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    if !socket::active() || socket::inside() || fds.is_null() || n == 0 {
        return sys!(libc::SYS_ppoll, fds, n, timeout, sigmask, SIGSET_BYTES) as c_int;
    }
    // SAFETY: ppoll's contract: `timeout` is null or a valid timespec.
    let ms = match unsafe { timeout.as_ref() } {
        None => -1,
        Some(t) if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) => return fail(libc::EINVAL),
        Some(t) => t.tv_sec.saturating_mul(1000).saturating_add((t.tv_nsec + 999_999) / 1_000_000).min(i32::MAX as i64)
            as c_int,
    };
    // SAFETY: ppoll's contract: `fds` names `n` pollfds.
    let user = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    guard(fail(libc::EIO), || poll_with_dataplane(user, ms, sigmask))
}

/// The kernel's sigset size (_NSIG / 8), as glibc passes it to ppoll and epoll_pwait.
const SIGSET_BYTES: usize = 8;

/// For a poll-like call that drives the dataplane while it waits: runs a cycle, then says how long the kernel wait
/// may last (ms, -1: no limit): until the dataplane's next timer, not at all while spinning (`spin_until`), at
/// most `slice_ms` (-1: no slice) and no later than the caller's deadline.
fn cycle_then_wait_ms(
    deadline: Option<std::time::Instant>,
    spin_until: Option<std::time::Instant>,
    slice_ms: c_int,
) -> c_int {
    let mut wait = socket::before_wait(None).map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as c_int);
    let now = std::time::Instant::now();
    if spin_until.is_some_and(|t| now < t) {
        wait = 0;
    }
    let bound = |wait: c_int, limit: c_int| if wait < 0 { limit } else { wait.min(limit) };
    if slice_ms >= 0 {
        wait = bound(wait, slice_ms);
    }
    if let Some(d) = deadline {
        wait = bound(wait, d.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as c_int);
    }
    wait
}

/// ppoll(2) on `fds` (revents cleared first) for `ms` milliseconds (-1: no limit), `sigmask` (may be null) in
/// force while it sleeps.
fn ppoll_ms(fds: &mut [pollfd], ms: c_int, sigmask: *const libc::sigset_t) -> c_int {
    fds.iter_mut().for_each(|p| p.revents = 0);
    let ts = (ms >= 0).then(|| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: (ms % 1000) as libc::c_long * 1_000_000,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    sys!(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, sigmask, SIGSET_BYTES) as c_int
}

/// `poll` over app fds some of which are dataplane sockets; `sigmask` (may be null) is in force while it sleeps.
fn poll_with_dataplane(user: &mut [pollfd], timeout: c_int, sigmask: *const libc::sigset_t) -> c_int {
    let deadline = (timeout >= 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
    let nic = socket::nic_fds();
    // A placeholder reads as writable whenever it is not readable-only, so the kernel is asked only about input
    // on dataplane fds; their answer comes from the layer, re-checked after every cycle.
    let mut all: smallvec::SmallVec<[pollfd; 8]> =
        user.iter().map(|u| if socket::owns(u.fd) { pollfd { events: libc::POLLIN, ..*u } } else { *u }).collect();
    all.extend(nic.iter().map(|&fd| pollfd { fd, events: libc::POLLIN, revents: 0 }));
    // Readiness another thread's cycle gives a dataplane fd wakes no kernel wait (an event loop's sink may own the
    // placeholder): such waits are sliced.
    let slice_ms = if user.iter().any(|u| socket::owns(u.fd)) { 10 } else { -1 };
    // Spin before sleeping, as libix's event loops do (IX_SPIN_US): a caller blocked in poll() on a dataplane
    // socket otherwise pays a kernel sleep and wake-up per request.
    let spin = socket::spin();
    let spin_until = (slice_ms >= 0 && !spin.is_zero()).then(|| std::time::Instant::now() + spin);
    loop {
        // Placeholders show what the cycle brought.
        let wait = cycle_then_wait_ms(deadline, spin_until, slice_ms);
        let r = ppoll_ms(&mut all, wait, sigmask);
        if r < 0 {
            return r;
        }
        let mut ready = 0;
        for (u, p) in user.iter_mut().zip(&all) {
            u.revents = if socket::owns(u.fd) { socket::poll_revents(u.fd, u.events) } else { p.revents };
            if u.revents != 0 {
                ready += 1;
            }
        }
        if ready > 0 || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return ready;
        }
    }
}

/// `epoll_ctl(2)`: the kernel's call; a set given a dataplane socket is remembered, so that its waits drive the
/// dataplane (`epoll_pwait`). The registration itself is on the socket's placeholder fd, which mirrors readiness.
///
/// # Safety
/// As epoll_ctl(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut libc::epoll_event) -> c_int {
    if op == libc::EPOLL_CTL_ADD && socket::maybe_owns(fd) {
        socket::fdmap::mark_epoll_set(epfd);
    }
    sys!(libc::SYS_epoll_ctl, epfd, op, fd, event) as c_int
}

/// `epoll_wait(2)`: as `epoll_pwait` without a signal mask.
///
/// # Safety
/// As epoll_wait(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(epfd: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int {
    // SAFETY: the caller's arguments, as epoll_wait(2) takes them; a null mask is epoll_wait's own behaviour.
    unsafe { epoll_pwait(epfd, events, max, timeout, std::ptr::null()) }
}

/// `epoll_pwait(2)`: an app's own epoll set may hold dataplane sockets (their placeholder fds mirror readiness when
/// no libix event loop watches them), so while the app waits on such a set the dataplane keeps cycling and the NIC
/// fds wake the wait, as in `poll`. Any other set: the kernel's call.
///
/// # Safety
/// As epoll_pwait(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let wait = |t: c_int| sys!(libc::SYS_epoll_pwait, epfd, events, max, t, sigmask, SIGSET_BYTES) as c_int;
    if !socket::fdmap::epoll_set_has_dataplane(epfd) || !socket::active() || socket::inside() {
        return wait(timeout);
    }
    guard(fail(libc::EIO), || {
        let deadline =
            (timeout >= 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
        let spin_until = Some(std::time::Instant::now() + socket::spin());
        let mut fds: smallvec::SmallVec<[pollfd; 4]> = std::iter::once(epfd)
            .chain(socket::nic_fds().iter().copied())
            .map(|fd| pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // The app comes back here after its callbacks: its writes meanwhile wait for this cycle (socket::settle).
        socket::mark_loop_thread();
        loop {
            // Cycle first (placeholders then show what it brought; spinning as libix's event loops do), then the
            // app's set without waiting: events (or an error such as EBADF) return at once.
            let ms = cycle_then_wait_ms(deadline, spin_until, -1);
            let r = wait(0);
            if r != 0 {
                return r;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return 0;
            }
            if ms == 0 {
                continue;
            }
            // Sleep until the app's set has an event (an epoll fd polls readable then) or a frame arrives; a
            // signal the mask lets through ends the wait with EINTR, as epoll_pwait's would.
            let r = ppoll_ms(&mut fds, ms, sigmask);
            if r < 0 {
                return r;
            }
        }
    })
}

/// `select(2)`, as `poll` when dataplane sockets exist (their readiness is the layer's), else the kernel's.
///
/// # Safety
/// As select(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    if !socket::active() || socket::inside() {
        return sys!(libc::SYS_select, nfds, readfds, writefds, exceptfds, timeout) as c_int;
    }
    if !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        return fail(libc::EINVAL);
    }
    // SAFETY: select's contract: each set is null or a valid fd_set, `timeout` null or a valid timeval.
    unsafe {
        let wait_ms = if timeout.is_null() {
            -1
        } else {
            let t = &*timeout;
            if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
                return fail(libc::EINVAL);
            }
            (t.tv_sec.saturating_mul(1000).saturating_add((t.tv_usec + 999) / 1000)).min(i32::MAX as i64) as c_int
        };
        let is_set = |set: *mut libc::fd_set, fd: c_int| !set.is_null() && libc::FD_ISSET(fd, set);
        let mut fds: Vec<pollfd> = Vec::new();
        for fd in 0..nfds {
            let mut events = 0;
            if is_set(readfds, fd) {
                events |= libc::POLLIN;
            }
            if is_set(writefds, fd) {
                events |= libc::POLLOUT;
            }
            if is_set(exceptfds, fd) {
                events |= libc::POLLPRI;
            }
            if events != 0 {
                fds.push(pollfd { fd, events, revents: 0 });
            }
        }
        let started = std::time::Instant::now();
        let r = guard(-1, || poll_with_dataplane(&mut fds, wait_ms, std::ptr::null()));
        if r < 0 {
            return r;
        }
        if fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
            return fail(libc::EBADF);
        }
        for set in [readfds, writefds, exceptfds] {
            if !set.is_null() {
                libc::FD_ZERO(set);
            }
        }
        let mut count = 0;
        for p in &fds {
            let err = p.revents & (libc::POLLERR | libc::POLLHUP) != 0;
            let marks = [
                (readfds, p.events & libc::POLLIN != 0 && (p.revents & libc::POLLIN != 0 || err)),
                (writefds, p.events & libc::POLLOUT != 0 && (p.revents & libc::POLLOUT != 0 || err)),
                (exceptfds, p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0),
            ];
            for (set, on) in marks {
                if on {
                    libc::FD_SET(p.fd, set);
                    count += 1;
                }
            }
        }
        if !timeout.is_null() && wait_ms >= 0 {
            // Linux leaves the time not slept in `timeout`.
            let left = (wait_ms as u128 * 1000).saturating_sub(started.elapsed().as_micros()) as i64;
            (*timeout).tv_sec = left / 1_000_000;
            (*timeout).tv_usec = left % 1_000_000;
        }
        count
    }
}

/// `__poll_chk` (fortified poll).
///
/// # Safety
/// As poll(2), with `fdslen` the array's size in bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int {
    if (fdslen / std::mem::size_of::<pollfd>()) < n as usize {
        // SAFETY: what glibc does on a fortify violation.
        unsafe { libc::abort() };
    }
    // SAFETY: same contract.
    unsafe { poll(fds, n, timeout) }
}
