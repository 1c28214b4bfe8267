//! libevent 2.1's `event2/util.h` (evutil) exported over [`crate::evutil`], plus the evutil-internal symbols that
//! Debian's libevent_core exports and that libevent's own test programs call (`evutil_weakrand_*`,
//! `evutil_make_internal_pipe_`, `EVUTIL_IS*_`, `event_strlcpy_`, ...).
//!
//! Every export null-checks, turns C pointers into Rust values, calls the safe logic in [`crate::evutil`] (or makes
//! the one system call the function is about) and maps the result to libevent's convention: the same return values,
//! the same errno, the same bytes written. Panics stop at [`super::guard`]. The variadic logging functions
//! (`event_warn`, ...) have C bodies in `capi/c/util.c`; they deliver their formatted message to
//! [`deliver_log_message`], which this file registers with the C side before `main` runs.
#![allow(non_camel_case_types, non_upper_case_globals)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr};
use std::ptr::{self, null, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::event::base::Severity;
use crate::event::sys::{errno, set_errno};
use crate::evutil::{addr, getaddrinfo, rand, text, time};

use super::event::{errx, log_msg, mm_calloc, mm_free, mm_malloc};
use super::guard;

/// `evutil_socket_t` on Unix.
pub type evutil_socket_t = c_int;
/// `struct evutil_addrinfo`: on Linux, libevent's header makes it the system's `struct addrinfo`.
pub type evutil_addrinfo = libc::addrinfo;

/// `struct evutil_weakrand_state` (util-internal.h): the generator's whole state.
#[repr(C)]
#[derive(Default)]
pub struct evutil_weakrand_state {
    seed: u32,
}

/// `struct evutil_monotonic_timer` with libevent's Linux layout (time-internal.h), 40 bytes: programs built
/// against libevent's internals (its regress suite) keep one on the stack.
#[repr(C)]
pub struct evutil_monotonic_timer {
    /// The `clock_gettime` clock, or -1 for the ratcheted wall clock.
    monotonic_clock: c_int,
    adjust_monotonic_clock: libc::timeval,
    last_time: libc::timeval,
}

/// libevent's private `ai_flags` bit marking an addrinfo it allocated itself (freed element by element) rather
/// than one from the system's `getaddrinfo` (freed with `freeaddrinfo`).
const AI_LIBEVENT_ALLOCATED: c_int = 0x8000_0000_u32 as c_int;
/// `EVUTIL_EAI_CANCEL`.
const EAI_CANCEL: c_int = -90001;
/// glibc's EAI_ADDRFAMILY (a GNU extension the libc crate does not name).
const EAI_ADDRFAMILY: c_int = -9;

// ---------------------------------------------------------------------------------------------------------------
// Small boundary helpers
// ---------------------------------------------------------------------------------------------------------------

/// The bytes of a C string (without its NUL).
///
/// # Safety
/// `s` is a valid NUL-terminated string that outlives the result.
unsafe fn c_bytes<'a>(s: *const c_char) -> &'a [u8] {
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(s) }.to_bytes()
}

/// The caller's output buffer as a slice (empty for a zero length, whatever the pointer).
///
/// # Safety
/// If `len` > 0, `buf` points to `len` writable bytes not otherwise borrowed.
unsafe fn out_slice<'a>(buf: *mut c_char, len: usize) -> &'a mut [u8] {
    if len == 0 || buf.is_null() {
        return &mut [];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
}

/// libc's message for an errno value (what `strerror` prints, not Rust's "(os error N)" form).
fn strerror(code: c_int) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; the XSI strerror_r writes a NUL-terminated message into it.
    let r = unsafe { libc::strerror_r(code, buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return format!("Unknown error {code}");
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// libevent's `event_warn`: the message, ": ", the current errno's text, at warning severity. errno is kept.
fn warn_with_errno(msg: &str) {
    let e = errno();
    log_msg(Severity::Warn, &format!("{msg}: {}", strerror(e)));
    set_errno(e);
}

/// `fcntl(fd, cmd)` for the flag-reading commands.
fn fcntl_get(fd: c_int, cmd: c_int) -> c_int {
    // SAFETY: F_GETFL/F_GETFD take no pointer argument.
    unsafe { libc::fcntl(fd, cmd) }
}

/// `fcntl(fd, cmd, value)` for the flag-setting commands.
fn fcntl_set(fd: c_int, cmd: c_int, value: c_int) -> c_int {
    // SAFETY: F_SETFL/F_SETFD take an int argument.
    unsafe { libc::fcntl(fd, cmd, value) }
}

/// Sets `add` in the flags `get`/`set` address unless already set, warning as libevent does on failure.
fn add_fd_flag(fd: c_int, get: (c_int, &str), set: (c_int, &str), add: c_int) -> c_int {
    let flags = fcntl_get(fd, get.0);
    if flags < 0 {
        warn_with_errno(&format!("fcntl({fd}, {})", get.1));
        return -1;
    }
    if flags & add == 0 && fcntl_set(fd, set.0, flags | add) == -1 {
        warn_with_errno(&format!("fcntl({fd}, {})", set.1));
        return -1;
    }
    0
}

/// Sets an int socket option to 1, returning setsockopt's result.
fn setsockopt_one(sock: c_int, level: c_int, name: c_int) -> c_int {
    let one: c_int = 1;
    // SAFETY: `one` is a readable int of the length given.
    unsafe { libc::setsockopt(sock, level, name, (&one as *const c_int).cast(), size_of::<c_int>() as u32) }
}

fn close_fd(fd: c_int) -> c_int {
    // SAFETY: closing a descriptor number has no memory-safety preconditions.
    unsafe { libc::close(fd) }
}

/// The address bytes of a `struct in_addr`.
///
/// # Safety
/// `p` points to 4 readable bytes.
unsafe fn read_v4(p: *const c_void) -> [u8; 4] {
    // SAFETY: the caller's promise; byte arrays need no alignment.
    unsafe { ptr::read_unaligned(p.cast::<[u8; 4]>()) }
}

/// The address bytes of a `struct in6_addr`.
///
/// # Safety
/// `p` points to 16 readable bytes.
unsafe fn read_v6(p: *const c_void) -> [u8; 16] {
    // SAFETY: the caller's promise.
    unsafe { ptr::read_unaligned(p.cast::<[u8; 16]>()) }
}

/// An IP socket address read from C.
enum IpSockaddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
    Other(c_int),
}

/// Reads a `struct sockaddr` by its family.
///
/// # Safety
/// `sa` points to a socket address as large as its family's struct (what libevent assumes too).
unsafe fn read_sockaddr(sa: *const libc::sockaddr) -> IpSockaddr {
    // SAFETY: every sockaddr starts with its family.
    let family = c_int::from(unsafe { (*sa).sa_family });
    match family {
        // SAFETY: an AF_INET address is a sockaddr_in (the caller's promise).
        libc::AF_INET => IpSockaddr::V4(unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) }),
        // SAFETY: an AF_INET6 address is a sockaddr_in6.
        libc::AF_INET6 => IpSockaddr::V6(unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) }),
        other => IpSockaddr::Other(other),
    }
}

/// `if_nametoindex` for a zone name given as bytes (0 if it is not an interface).
fn interface_index(name: &[u8]) -> u32 {
    let Ok(name) = std::ffi::CString::new(name) else { return 0 };
    // SAFETY: `name` is a valid C string.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

// ---------------------------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_socketpair`: the system's socketpair.
///
/// # Safety
/// `fd` points to two writable ints.
#[no_mangle]
pub unsafe extern "C" fn evutil_socketpair(
    family: c_int,
    ty: c_int,
    protocol: c_int,
    fd: *mut evutil_socket_t,
) -> c_int {
    // SAFETY: `fd` has room for two ints (the caller's promise); a NULL `fd` is the kernel's to refuse (EFAULT, as
    // with libevent, which passes it straight through).
    guard(-1, || unsafe { libc::socketpair(family, ty, protocol, fd) })
}

/// `evutil_ersatz_socketpair_`: libevent's socketpair built from TCP over 127.0.0.1 (AF_INET or AF_UNIX asked,
/// protocol 0), for systems without one; kept for programs that call it directly.
///
/// # Safety
/// `fd` NULL or points to two writable ints.
#[no_mangle]
pub unsafe extern "C" fn evutil_ersatz_socketpair_(
    family: c_int,
    ty: c_int,
    protocol: c_int,
    fd: *mut evutil_socket_t,
) -> c_int {
    guard(-1, || {
        if protocol != 0 || (family != libc::AF_INET && family != libc::AF_UNIX) {
            set_errno(libc::EAFNOSUPPORT);
            return -1;
        }
        if fd.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        match ersatz_socketpair(ty) {
            Ok((a, b)) => {
                // SAFETY: `fd` has room for two ints.
                unsafe { fd.write(a) };
                // SAFETY: as above.
                unsafe { fd.add(1).write(b) };
                0
            }
            Err(e) => {
                set_errno(e);
                -1
            }
        }
    })
}

/// Connects two sockets of type `ty` through a listener on 127.0.0.1, checking that the accepted peer is the
/// connector (as libevent does). Returns (connector, acceptor) or the errno.
fn ersatz_socketpair(ty: c_int) -> Result<(c_int, c_int), c_int> {
    let sock = || {
        // SAFETY: no pointers.
        let s = unsafe { libc::socket(libc::AF_INET, ty, 0) };
        if s < 0 {
            Err(errno())
        } else {
            Ok(s)
        }
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let listener = sock()?;
    let fail = |fds: &[c_int]| {
        let e = errno();
        fds.iter().for_each(|&f| {
            close_fd(f);
        });
        Err(e)
    };
    let mut a: libc::sockaddr_in = {
        // SAFETY: sockaddr_in is plain data; all-zero is valid.
        unsafe { std::mem::zeroed() }
    };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let sa = (&mut a as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
    let mut alen = len;
    // SAFETY: `sa` is a sockaddr_in of `len` bytes, `alen` is writable, `listener` is our socket.
    let listening = unsafe {
        libc::bind(listener, sa, len) == 0
            && libc::listen(listener, 1) == 0
            && libc::getsockname(listener, sa, &mut alen) == 0
    };
    if !listening {
        return fail(&[listener]);
    }
    let connector = match sock() {
        Ok(s) => s,
        Err(_) => return fail(&[listener]),
    };
    // SAFETY: `sa` holds the listener's address.
    if unsafe { libc::connect(connector, sa, len) } == -1 {
        return fail(&[listener, connector]);
    }
    let mut peer: libc::sockaddr_in = {
        // SAFETY: plain data.
        unsafe { std::mem::zeroed() }
    };
    let mut plen = len;
    // SAFETY: `peer` is writable for `plen` bytes.
    let acceptor = unsafe { libc::accept(listener, (&mut peer as *mut libc::sockaddr_in).cast(), &mut plen) };
    if acceptor < 0 {
        return fail(&[listener, connector]);
    }
    close_fd(listener);
    let mut mine: libc::sockaddr_in = {
        // SAFETY: plain data.
        unsafe { std::mem::zeroed() }
    };
    let mut mlen = len;
    // SAFETY: `mine` is writable for `mlen` bytes.
    if unsafe { libc::getsockname(connector, (&mut mine as *mut libc::sockaddr_in).cast(), &mut mlen) } == -1 {
        return fail(&[connector, acceptor]);
    }
    if plen != len || mlen != len || peer.sin_addr.s_addr != mine.sin_addr.s_addr || peer.sin_port != mine.sin_port {
        close_fd(connector);
        close_fd(acceptor);
        return Err(libc::ECONNABORTED);
    }
    Ok((connector, acceptor))
}

/// `evutil_make_socket_nonblocking`: sets O_NONBLOCK (if not already set); -1 with a warning on failure.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_socket_nonblocking(fd: evutil_socket_t) -> c_int {
    guard(-1, || add_fd_flag(fd, (libc::F_GETFL, "F_GETFL"), (libc::F_SETFL, "F_SETFL"), libc::O_NONBLOCK))
}

/// `evutil_make_socket_closeonexec`: sets FD_CLOEXEC (if not already set); -1 with a warning on failure.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_socket_closeonexec(fd: evutil_socket_t) -> c_int {
    guard(-1, || add_fd_flag(fd, (libc::F_GETFD, "F_GETFD"), (libc::F_SETFD, "F_SETFD"), libc::FD_CLOEXEC))
}

/// `evutil_make_listen_socket_reuseable`: SO_REUSEADDR.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_listen_socket_reuseable(sock: evutil_socket_t) -> c_int {
    guard(-1, || setsockopt_one(sock, libc::SOL_SOCKET, libc::SO_REUSEADDR))
}

/// `evutil_make_listen_socket_reuseable_port`: SO_REUSEPORT.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_listen_socket_reuseable_port(sock: evutil_socket_t) -> c_int {
    guard(-1, || setsockopt_one(sock, libc::SOL_SOCKET, libc::SO_REUSEPORT))
}

/// `evutil_make_listen_socket_ipv6only`: IPV6_V6ONLY.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_listen_socket_ipv6only(sock: evutil_socket_t) -> c_int {
    guard(-1, || setsockopt_one(sock, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY))
}

/// `evutil_make_tcp_listen_socket_deferred`: TCP_DEFER_ACCEPT.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_tcp_listen_socket_deferred(sock: evutil_socket_t) -> c_int {
    guard(-1, || setsockopt_one(sock, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT))
}

/// `evutil_closesocket`: close(2).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_closesocket(sock: evutil_socket_t) -> c_int {
    guard(-1, || close_fd(sock))
}

/// `evutil_socket_`: socket(2) where `ty` may carry SOCK_NONBLOCK/SOCK_CLOEXEC (Linux takes them directly).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_socket_(domain: c_int, ty: c_int, protocol: c_int) -> evutil_socket_t {
    // SAFETY: no pointers.
    guard(-1, || unsafe { libc::socket(domain, ty, protocol) })
}

/// `evutil_accept4_`: accept4(2) with SOCK_NONBLOCK/SOCK_CLOEXEC flags.
///
/// # Safety
/// `addr`/`addrlen` NULL or as accept(2) requires.
#[no_mangle]
pub unsafe extern "C" fn evutil_accept4_(
    sockfd: evutil_socket_t,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
    flags: c_int,
) -> evutil_socket_t {
    // SAFETY: the pointers are the caller's, passed through as accept4 documents them.
    guard(-1, || unsafe { libc::accept4(sockfd, addr, addrlen, flags) })
}

/// `evutil_eventfd_`: eventfd(2) with EFD_NONBLOCK/EFD_CLOEXEC flags.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_eventfd_(initval: c_uint, flags: c_int) -> evutil_socket_t {
    // SAFETY: no pointers.
    guard(-1, || unsafe { libc::eventfd(initval, flags) })
}

/// `evutil_make_internal_pipe_`: a nonblocking, close-on-exec pipe (fd[0] reads what fd[1] writes); both -1 on
/// failure. libevent falls back to an AF_UNIX socketpair when pipe2 fails; so does this.
///
/// # Safety
/// `fd` points to two writable ints.
#[no_mangle]
pub unsafe extern "C" fn evutil_make_internal_pipe_(fd: *mut evutil_socket_t) -> c_int {
    guard(-1, || {
        if fd.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        let mut pair = [-1; 2];
        // SAFETY: `pair` has room for two ints.
        if unsafe { libc::pipe2(pair.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            // SAFETY: as above.
            if unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, pair.as_mut_ptr()) } != 0 {
                pair = [-1, -1];
            }
        }
        // SAFETY: `fd` has room for two ints (the caller's promise).
        unsafe { ptr::copy_nonoverlapping(pair.as_ptr(), fd, 2) };
        if pair[0] < 0 {
            -1
        } else {
            0
        }
    })
}

/// `evutil_socket_connect_`: starts a nonblocking connect, making the socket first if `*fd_ptr` < 0. Returns 1
/// connected, 0 in progress, 2 refused, -1 error (a socket it made is closed and `*fd_ptr` reset to -1).
///
/// # Safety
/// `fd_ptr` points to a writable int; `sa` to `socklen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_socket_connect_(
    fd_ptr: *mut evutil_socket_t,
    sa: *const libc::sockaddr,
    socklen: c_int,
) -> c_int {
    guard(-1, || {
        if fd_ptr.is_null() || sa.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: `fd_ptr` is valid (the caller's promise).
        let fd_slot = unsafe { &mut *fd_ptr };
        let mut made_fd = false;
        let give_up = |fd_slot: &mut c_int, made_fd: bool| {
            if made_fd {
                close_fd(*fd_slot);
                *fd_slot = -1;
            }
            -1
        };
        if *fd_slot < 0 {
            // SAFETY: `sa` is readable; no other pointers.
            *fd_slot = unsafe { libc::socket(c_int::from((*sa).sa_family), libc::SOCK_STREAM, 0) };
            if *fd_slot < 0 {
                return -1;
            }
            made_fd = true;
            // SAFETY: no pointers.
            if unsafe { evutil_make_socket_nonblocking(*fd_slot) } < 0 {
                return give_up(fd_slot, made_fd);
            }
        }
        // SAFETY: `sa` has `socklen` bytes (the caller's promise).
        if unsafe { libc::connect(*fd_slot, sa, socklen as libc::socklen_t) } == 0 {
            return 1;
        }
        match errno() {
            libc::EINTR | libc::EINPROGRESS => 0,
            libc::ECONNREFUSED => 2,
            _ => give_up(fd_slot, made_fd),
        }
    })
}

/// `evutil_socket_finished_connecting_`: 1 connected, 0 still connecting, -1 failed (errno = the error).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_socket_finished_connecting_(fd: evutil_socket_t) -> c_int {
    guard(-1, || {
        let mut e: c_int = 0;
        let mut len = size_of::<c_int>() as libc::socklen_t;
        // SAFETY: `e` and `len` are writable and sized as SO_ERROR needs.
        if unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut e as *mut c_int).cast(), &mut len) }
            < 0
        {
            return -1;
        }
        match e {
            0 => 1,
            libc::EINTR | libc::EINPROGRESS => 0,
            _ => {
                set_errno(e);
                -1
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_inet_ntop`: libevent's formatter. NULL for another family or a buffer too small (for IPv4 the buffer
/// then holds the truncated text; for IPv6 a text exactly as long as the buffer is truncated by one byte, as in
/// libevent).
///
/// # Safety
/// `src` points to an `in_addr`/`in6_addr`; `dst` to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_inet_ntop(
    af: c_int,
    src: *const c_void,
    dst: *mut c_char,
    len: usize,
) -> *const c_char {
    guard(null(), || {
        if src.is_null() || dst.is_null() {
            return null();
        }
        // SAFETY: `dst` has `len` writable bytes (the caller's promise).
        let out = unsafe { out_slice(dst, len) };
        match af {
            libc::AF_INET => {
                // SAFETY: `src` is an in_addr.
                let s = addr::format_ipv4(unsafe { read_v4(src) });
                if text::copy_truncated(out, s.as_bytes()) >= len {
                    return null();
                }
            }
            libc::AF_INET6 => {
                // SAFETY: `src` is an in6_addr.
                let s = addr::format_ipv6(unsafe { read_v6(src) });
                if s.len() > len {
                    return null();
                }
                text::copy_truncated(out, s.as_bytes());
            }
            _ => return null(),
        }
        dst.cast_const()
    })
}

/// Writes a parsed address to `dst` for `af`, as `evutil_inet_pton` does: 1, or 0 if the text is not an
/// address of that family, or -1 for another family.
///
/// # Safety
/// `dst` points to a writable address of `af`'s size.
unsafe fn pton_into(af: c_int, src: &[u8], dst: *mut c_void) -> c_int {
    match af {
        libc::AF_INET => match addr::parse_ipv4(src) {
            // SAFETY: `dst` is an in_addr (the caller's promise).
            Some(a) => unsafe { ptr::write_unaligned(dst.cast::<[u8; 4]>(), a) },
            None => return 0,
        },
        libc::AF_INET6 => match addr::parse_ipv6(src) {
            // SAFETY: `dst` is an in6_addr.
            Some(a) => unsafe { ptr::write_unaligned(dst.cast::<[u8; 16]>(), a) },
            None => return 0,
        },
        _ => return -1,
    }
    1
}

/// `evutil_inet_pton`: libevent's parsers (see [`addr::parse_ipv4`], [`addr::parse_ipv6`]).
///
/// # Safety
/// `src` a C string; `dst` a writable address of `af`'s size.
#[no_mangle]
pub unsafe extern "C" fn evutil_inet_pton(af: c_int, src: *const c_char, dst: *mut c_void) -> c_int {
    guard(-1, || {
        if src.is_null() || dst.is_null() {
            return -1;
        }
        // SAFETY: the caller's promises.
        unsafe { pton_into(af, c_bytes(src), dst) }
    })
}

/// `evutil_inet_pton_scope`: as `evutil_inet_pton`, plus an IPv6 `%zone` (interface name or number) whose index
/// goes to `*indexp` (0 when there is none).
///
/// # Safety
/// As `evutil_inet_pton`; `indexp` a writable unsigned.
#[no_mangle]
pub unsafe extern "C" fn evutil_inet_pton_scope(
    af: c_int,
    src: *const c_char,
    dst: *mut c_void,
    indexp: *mut c_uint,
) -> c_int {
    guard(-1, || {
        if src.is_null() || dst.is_null() || indexp.is_null() {
            return -1;
        }
        // SAFETY: `indexp` is writable.
        unsafe { indexp.write(0) };
        // SAFETY: `src` is a C string.
        let text = unsafe { c_bytes(src) };
        let Some(percent) = text.iter().position(|&c| c == b'%').filter(|_| af == libc::AF_INET6) else {
            // SAFETY: the caller's promises.
            return unsafe { pton_into(af, text, dst) };
        };
        let Some(index) = addr::parse_zone(&text[percent + 1..], interface_index) else { return 0 };
        // SAFETY: `indexp` is writable.
        unsafe { indexp.write(index) };
        // SAFETY: `dst` is an in6_addr.
        unsafe { pton_into(af, &text[..percent], dst) }
    })
}

/// `evutil_parse_sockaddr_port`: `[ipv6]:port`, `[ipv6]`, `ipv6`, `ipv4:port` or `ipv4` into `out`, which is
/// zeroed for its whole `*outlen` and gets the sockaddr's size in `*outlen`. 0, or -1 if unparsable or too small.
///
/// # Safety
/// `ip_as_string` a C string; `out` writable for `*outlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_parse_sockaddr_port(
    ip_as_string: *const c_char,
    out: *mut libc::sockaddr,
    outlen: *mut c_int,
) -> c_int {
    guard(-1, || {
        if ip_as_string.is_null() || out.is_null() || outlen.is_null() {
            return -1;
        }
        // SAFETY: a C string (the caller's promise).
        let text = unsafe { c_bytes(ip_as_string) };
        let Some(parsed) = addr::parse_sockaddr_port(text, interface_index) else { return -1 };
        // SAFETY: `outlen` is readable.
        let room = unsafe { *outlen };
        let write = |bytes: &[u8]| -> c_int {
            if usize::try_from(room).map_or(true, |r| bytes.len() > r) {
                return -1;
            }
            // SAFETY: `out` has `room` writable bytes, at least `bytes.len()`.
            unsafe {
                ptr::write_bytes(out.cast::<u8>(), 0, room as usize);
                ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), bytes.len());
                *outlen = bytes.len() as c_int;
            }
            0
        };
        match parsed {
            addr::SockaddrText::V4 { addr, port } => {
                // SAFETY: plain data.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = port.to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(addr);
                write(as_bytes(&sin))
            }
            addr::SockaddrText::V6 { addr, port, scope_id } => {
                // SAFETY: plain data.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = port.to_be();
                sin6.sin6_addr.s6_addr = addr;
                sin6.sin6_scope_id = scope_id;
                write(as_bytes(&sin6))
            }
        }
    })
}

/// The bytes of a plain-data C struct.
fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: `T` is a padding-free C socket address struct here (sockaddr_in, sockaddr_in6), so every byte is
    // initialized; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// `evutil_format_sockaddr_port_`: "a.b.c.d:port", "[v6]:port" or "<addr with socktype N>" into `out`
/// (`snprintf`-truncated); returns `out`.
///
/// # Safety
/// `sa` a socket address of its family's size; `out` writable for `outlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_format_sockaddr_port_(
    sa: *const libc::sockaddr,
    out: *mut c_char,
    outlen: usize,
) -> *const c_char {
    guard(null(), || {
        if sa.is_null() || out.is_null() {
            return null();
        }
        // SAFETY: the caller's promise.
        let s = match unsafe { read_sockaddr(sa) } {
            IpSockaddr::V4(sin) => {
                format!("{}:{}", addr::format_ipv4(sin.sin_addr.s_addr.to_ne_bytes()), u16::from_be(sin.sin_port))
            }
            IpSockaddr::V6(sin6) => {
                format!("[{}]:{}", addr::format_ipv6(sin6.sin6_addr.s6_addr), u16::from_be(sin6.sin6_port))
            }
            IpSockaddr::Other(family) => format!("<addr with socktype {family}>"),
        };
        // SAFETY: `out` has `outlen` writable bytes.
        text::copy_truncated(unsafe { out_slice(out, outlen) }, s.as_bytes());
        out.cast_const()
    })
}

/// `evutil_sockaddr_cmp`: orders by family, then address, then (if asked) port, with libevent's exact results:
/// IPv4 addresses compare as the raw 32-bit value in host byte order, ports by the difference of their raw
/// (network-order) values, IPv6 addresses by the difference of their first differing bytes; other families
/// compare as 1.
///
/// # Safety
/// `sa1`, `sa2` socket addresses of their families' sizes.
#[no_mangle]
pub unsafe extern "C" fn evutil_sockaddr_cmp(
    sa1: *const libc::sockaddr,
    sa2: *const libc::sockaddr,
    include_port: c_int,
) -> c_int {
    guard(1, || {
        if sa1.is_null() || sa2.is_null() {
            return 1;
        }
        // SAFETY: the caller's promise.
        let (a, b) = unsafe { (read_sockaddr(sa1), read_sockaddr(sa2)) };
        // SAFETY: both are readable sockaddrs.
        let family_diff = unsafe { c_int::from((*sa1).sa_family) - c_int::from((*sa2).sa_family) };
        if family_diff != 0 {
            return family_diff;
        }
        let port_diff = |p1: u16, p2: u16| if include_port != 0 { c_int::from(p1) - c_int::from(p2) } else { 0 };
        match (a, b) {
            (IpSockaddr::V4(a), IpSockaddr::V4(b)) => match a.sin_addr.s_addr.cmp(&b.sin_addr.s_addr) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Equal => port_diff(a.sin_port, b.sin_port),
            },
            (IpSockaddr::V6(a), IpSockaddr::V6(b)) => {
                let (x, y) = (a.sin6_addr.s6_addr, b.sin6_addr.s6_addr);
                match x.iter().zip(&y).find(|(p, q)| p != q) {
                    Some((p, q)) => c_int::from(*p) - c_int::from(*q),
                    None => port_diff(a.sin6_port, b.sin6_port),
                }
            }
            _ => 1,
        }
    })
}

/// `evutil_sockaddr_is_loopback_`: 127/8 or ::1.
///
/// # Safety
/// `sa` a socket address of its family's size.
#[no_mangle]
pub unsafe extern "C" fn evutil_sockaddr_is_loopback_(sa: *const libc::sockaddr) -> c_int {
    guard(0, || {
        if sa.is_null() {
            return 0;
        }
        // SAFETY: the caller's promise.
        c_int::from(match unsafe { read_sockaddr(sa) } {
            IpSockaddr::V4(sin) => addr::v4_is_loopback(sin.sin_addr.s_addr.to_ne_bytes()),
            IpSockaddr::V6(sin6) => addr::v6_is_loopback(sin6.sin6_addr.s6_addr),
            IpSockaddr::Other(_) => false,
        })
    })
}

/// `evutil_v4addr_is_local_`: any, loopback, link-local or multicast.
///
/// # Safety
/// `in_` an `in_addr`.
#[no_mangle]
pub unsafe extern "C" fn evutil_v4addr_is_local_(in_: *const libc::in_addr) -> c_int {
    guard(0, || {
        if in_.is_null() {
            return 0;
        }
        // SAFETY: the caller's promise.
        c_int::from(addr::v4_is_local(unsafe { read_v4(in_.cast()) }))
    })
}

/// `evutil_v6addr_is_local_`: see [`addr::v6_is_local`].
///
/// # Safety
/// `in_` an `in6_addr`.
#[no_mangle]
pub unsafe extern "C" fn evutil_v6addr_is_local_(in_: *const libc::in6_addr) -> c_int {
    guard(0, || {
        if in_.is_null() {
            return 0;
        }
        // SAFETY: the caller's promise.
        c_int::from(addr::v6_is_local(unsafe { read_v6(in_.cast()) }))
    })
}

// ---------------------------------------------------------------------------------------------------------------
// getaddrinfo
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_getaddrinfo`: the system's getaddrinfo (glibc needs none of libevent's workarounds and understands
/// every EVUTIL_AI_* flag, which libevent's header maps to the system's), with libevent's defaults: NULL hints
/// mean AF_UNSPEC, libevent's private allocation flag is cleared. Returns 0 or an EVUTIL_EAI_* (= EAI_*) code.
///
/// # Safety
/// `nodename`/`servname` NULL or C strings; `hints_in` NULL or an addrinfo; `res` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn evutil_getaddrinfo(
    nodename: *const c_char,
    servname: *const c_char,
    hints_in: *const evutil_addrinfo,
    res: *mut *mut evutil_addrinfo,
) -> c_int {
    guard(libc::EAI_MEMORY, || {
        if res.is_null() {
            return libc::EAI_SYSTEM;
        }
        // SAFETY: plain data; all-zero is a valid addrinfo (NULL pointers).
        let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
        if !hints_in.is_null() {
            // SAFETY: `hints_in` is a readable addrinfo.
            hints = unsafe { ptr::read(hints_in) };
        }
        hints.ai_flags &= !AI_LIBEVENT_ALLOCATED;
        // SAFETY: C strings or NULL, a valid hints struct and a writable result pointer.
        unsafe { libc::getaddrinfo(nodename, servname, &hints, res) }
    })
}

/// `evutil_freeaddrinfo`: freeaddrinfo for the system's lists, element by element for libevent-allocated ones.
///
/// # Safety
/// `ai` NULL or a list from `evutil_getaddrinfo`/`evutil_new_addrinfo_`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn evutil_freeaddrinfo(ai: *mut evutil_addrinfo) {
    guard((), || {
        if ai.is_null() {
            return;
        }
        // SAFETY: `ai` is a valid list head.
        if unsafe { (*ai).ai_flags } & AI_LIBEVENT_ALLOCATED == 0 {
            // SAFETY: it came from getaddrinfo.
            unsafe { libc::freeaddrinfo(ai) };
            return;
        }
        let mut p = ai;
        while !p.is_null() {
            // SAFETY: each element is a valid addrinfo we allocated (addr inline, canonname from mm_malloc).
            let (next, canon) = unsafe { ((*p).ai_next, (*p).ai_canonname) };
            if !canon.is_null() {
                mm_free(canon.cast());
            }
            mm_free(p.cast());
            p = next;
        }
    })
}

/// `evutil_gai_strerror`: libevent's own texts for the codes it names, glibc's for the rest.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_gai_strerror(err: c_int) -> *const c_char {
    guard(c"system error".as_ptr(), || {
        let text: &'static CStr = match err {
            EAI_CANCEL => c"Request canceled",
            0 => c"No error",
            EAI_ADDRFAMILY => c"address family for nodename not supported",
            libc::EAI_AGAIN => c"temporary failure in name resolution",
            libc::EAI_BADFLAGS => c"invalid value for ai_flags",
            libc::EAI_FAIL => c"non-recoverable failure in name resolution",
            libc::EAI_FAMILY => c"ai_family not supported",
            libc::EAI_MEMORY => c"memory allocation failure",
            libc::EAI_NODATA => c"no address associated with nodename",
            libc::EAI_NONAME => c"nodename nor servname provided, or not known",
            libc::EAI_SERVICE => c"servname not supported for ai_socktype",
            libc::EAI_SOCKTYPE => c"ai_socktype not supported",
            libc::EAI_SYSTEM => c"system error",
            // SAFETY: gai_strerror returns a static string for any code.
            _ => return unsafe { libc::gai_strerror(err) },
        };
        text.as_ptr()
    })
}

/// `evutil_new_addrinfo_`: one libevent-allocated addrinfo holding a copy of `sa` (allocated inline after it),
/// with socktype/protocol from `hints`; with neither given, a TCP entry followed by a UDP one.
///
/// # Safety
/// `sa` readable for `socklen` bytes; `hints` a readable addrinfo.
#[no_mangle]
pub unsafe extern "C" fn evutil_new_addrinfo_(
    sa: *mut libc::sockaddr,
    socklen: libc::socklen_t,
    hints: *const evutil_addrinfo,
) -> *mut evutil_addrinfo {
    guard(null_mut(), || {
        if sa.is_null() || hints.is_null() {
            return null_mut();
        }
        // SAFETY: readable hints.
        let h = unsafe { &*hints };
        if h.ai_socktype == 0 && h.ai_protocol == 0 {
            // SAFETY: forwarded promises.
            let tcp = unsafe { new_addrinfo(sa, socklen, libc::SOCK_STREAM, libc::IPPROTO_TCP) };
            if tcp.is_null() {
                return null_mut();
            }
            // SAFETY: as above.
            let udp = unsafe { new_addrinfo(sa, socklen, libc::SOCK_DGRAM, libc::IPPROTO_UDP) };
            if udp.is_null() {
                // SAFETY: `tcp` is ours.
                unsafe { evutil_freeaddrinfo(tcp) };
                return null_mut();
            }
            // SAFETY: `tcp` is a valid element we own.
            unsafe { (*tcp).ai_next = udp };
            return tcp;
        }
        // SAFETY: forwarded promises.
        unsafe { new_addrinfo(sa, socklen, h.ai_socktype, h.ai_protocol) }
    })
}

/// One libevent-allocated addrinfo element.
///
/// # Safety
/// `sa` readable for `socklen` bytes.
unsafe fn new_addrinfo(
    sa: *const libc::sockaddr,
    socklen: libc::socklen_t,
    socktype: c_int,
    protocol: c_int,
) -> *mut evutil_addrinfo {
    let p = mm_calloc(1, size_of::<evutil_addrinfo>() + socklen as usize).cast::<evutil_addrinfo>();
    if p.is_null() {
        return null_mut();
    }
    // SAFETY: `p` is zeroed memory with room for the addrinfo and `socklen` bytes after it; `sa` is readable.
    unsafe {
        let addr = p.add(1).cast::<libc::sockaddr>();
        ptr::copy_nonoverlapping(sa.cast::<u8>(), addr.cast::<u8>(), socklen as usize);
        (*p).ai_addr = addr;
        (*p).ai_addrlen = socklen;
        (*p).ai_family = c_int::from((*sa).sa_family);
        (*p).ai_flags = AI_LIBEVENT_ALLOCATED;
        (*p).ai_socktype = socktype;
        (*p).ai_protocol = protocol;
    }
    p
}

/// `evutil_addrinfo_append_`: appends `append` to the list `first` (either may be NULL), returns the head.
///
/// # Safety
/// Both NULL or valid lists.
#[no_mangle]
pub unsafe extern "C" fn evutil_addrinfo_append_(
    first: *mut evutil_addrinfo,
    append: *mut evutil_addrinfo,
) -> *mut evutil_addrinfo {
    guard(first, || {
        if first.is_null() {
            return append;
        }
        let mut last = first;
        // SAFETY: walking a valid list.
        unsafe {
            while !(*last).ai_next.is_null() {
                last = (*last).ai_next;
            }
            (*last).ai_next = append;
        }
        first
    })
}

/// `evutil_getaddrinfo_common_`: the resolver-free part of getaddrinfo ([`getaddrinfo::common`]). Completes
/// `*hints` (socket type/protocol), returns 0 with a libevent-allocated `*res` for NULL or literal hosts,
/// `EVUTIL_EAI_NEED_RESOLVE` with the port in `*portnum` when DNS is needed, or an EVUTIL_EAI_* error.
///
/// # Safety
/// `nodename`/`servname` NULL or C strings; `hints` a writable addrinfo; `res`, `portnum` writable.
#[no_mangle]
pub unsafe extern "C" fn evutil_getaddrinfo_common_(
    nodename: *const c_char,
    servname: *const c_char,
    hints: *mut evutil_addrinfo,
    res: *mut *mut evutil_addrinfo,
    portnum: *mut c_int,
) -> c_int {
    guard(libc::EAI_MEMORY, || {
        if hints.is_null() || res.is_null() || portnum.is_null() {
            return libc::EAI_SYSTEM;
        }
        // SAFETY: `hints` is a writable addrinfo (the caller's promise).
        let h = unsafe { &mut *hints };
        let mut wanted = getaddrinfo::Hints {
            flags: h.ai_flags,
            family: h.ai_family,
            socktype: h.ai_socktype,
            protocol: h.ai_protocol,
        };
        // SAFETY: NULL or C strings.
        let (node, serv) = unsafe {
            ((!nodename.is_null()).then(|| c_bytes(nodename)), (!servname.is_null()).then(|| c_bytes(servname)))
        };
        let decided = getaddrinfo::common(node, serv, &mut wanted, service_port, interface_index);
        h.ai_socktype = wanted.socktype;
        h.ai_protocol = wanted.protocol;
        match decided {
            Err(code) => code,
            Ok(getaddrinfo::Common::NeedResolve(port)) => {
                // SAFETY: writable.
                unsafe { portnum.write(c_int::from(port)) };
                getaddrinfo::EAI_NEED_RESOLVE
            }
            Ok(getaddrinfo::Common::Addrs(addrs)) => {
                let mut list: *mut evutil_addrinfo = null_mut();
                for a in addrs {
                    // SAFETY: `h` is a valid hints struct; the sockaddr bytes are a complete sockaddr_in(6).
                    let ai = unsafe { addrinfo_for(&a, h) };
                    if ai.is_null() {
                        // SAFETY: `list` is ours (NULL or a libevent-allocated list).
                        unsafe { evutil_freeaddrinfo(list) };
                        return libc::EAI_MEMORY;
                    }
                    // SAFETY: both are lists we own.
                    list = unsafe { evutil_addrinfo_append_(list, ai) };
                }
                // SAFETY: writable.
                unsafe { res.write(list) };
                0
            }
        }
    })
}

/// Builds libevent-allocated addrinfo(s) for `addr` with `hints`' socket type and protocol.
///
/// # Safety
/// `hints` a valid addrinfo.
unsafe fn addrinfo_for(addr: &std::net::SocketAddr, hints: &evutil_addrinfo) -> *mut evutil_addrinfo {
    // SAFETY: plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `storage` holds `len` bytes of socket address; `hints` is valid.
    unsafe { evutil_new_addrinfo_((&mut storage as *mut libc::sockaddr_storage).cast(), len as libc::socklen_t, hints) }
}

/// A service name's port for a protocol (getservbyname, with libevent's protocol names).
fn service_port(name: &[u8], protocol: c_int) -> Option<u16> {
    let name = std::ffi::CString::new(name).ok()?;
    let proto: *const c_char = match protocol {
        0 => null(),
        libc::IPPROTO_TCP => c"tcp".as_ptr(),
        libc::IPPROTO_UDP => c"udp".as_ptr(),
        libc::IPPROTO_SCTP => c"sctp".as_ptr(),
        other => {
            // SAFETY: getprotobynumber returns NULL or a static entry (libevent calls it the same way).
            let ent = unsafe { libc::getprotobynumber(other) };
            if ent.is_null() {
                null()
            } else {
                // SAFETY: a non-NULL entry is readable.
                unsafe { (*ent).p_name.cast_const() }
            }
        }
    };
    // SAFETY: C strings (or NULL for any protocol); the entry is static and read at once.
    let ent = unsafe { libc::getservbyname(name.as_ptr(), proto) };
    // SAFETY: a non-NULL entry is readable; s_port is in network order in an int.
    (!ent.is_null()).then(|| u16::from_be(unsafe { (*ent).s_port } as u16))
}

/// Whether this host has a non-local IPv4 and a non-local IPv6 address (libevent's interface check for
/// AI_ADDRCONFIG), computed once per process as libevent does.
fn host_families() -> (bool, bool) {
    static FAMILIES: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
    *FAMILIES.get_or_init(|| {
        let mut list: *mut libc::ifaddrs = null_mut();
        // SAFETY: `list` is a writable pointer; on success we free what getifaddrs allocated.
        if unsafe { libc::getifaddrs(&mut list) } < 0 {
            warn_with_errno("Unable to call getifaddrs()");
            return (false, false);
        }
        let (mut v4, mut v6) = (false, false);
        let mut p = list;
        while !p.is_null() {
            // SAFETY: walking getifaddrs' valid list.
            let (sa, next) = unsafe { ((*p).ifa_addr, (*p).ifa_next) };
            if !sa.is_null() {
                // SAFETY: the kernel's addresses are complete for their family.
                match unsafe { read_sockaddr(sa) } {
                    IpSockaddr::V4(sin) => v4 |= !addr::v4_is_local(sin.sin_addr.s_addr.to_ne_bytes()),
                    IpSockaddr::V6(sin6) => v6 |= !addr::v6_is_local(sin6.sin6_addr.s6_addr),
                    IpSockaddr::Other(_) => {}
                }
            }
            p = next;
        }
        // SAFETY: the list from getifaddrs, freed once.
        unsafe { libc::freeifaddrs(list) };
        (v4, v6)
    })
}

/// `evutil_adjust_hints_for_addrconfig_`: with EVUTIL_AI_ADDRCONFIG and AF_UNSPEC, narrows `hints->ai_family` to
/// the one family this host has non-local addresses of.
///
/// # Safety
/// `hints` a writable addrinfo.
#[no_mangle]
pub unsafe extern "C" fn evutil_adjust_hints_for_addrconfig_(hints: *mut evutil_addrinfo) {
    guard((), || {
        if hints.is_null() {
            return;
        }
        // SAFETY: writable (the caller's promise).
        let h = unsafe { &mut *hints };
        let wanted = getaddrinfo::Hints { flags: h.ai_flags, family: h.ai_family, ..Default::default() };
        if wanted.flags & libc::AI_ADDRCONFIG == 0 || wanted.family != libc::AF_UNSPEC {
            return;
        }
        let (v4, v6) = host_families();
        h.ai_family = getaddrinfo::family_for_addrconfig(&wanted, v4, v6);
    })
}

/// evdns' asynchronous getaddrinfo, as libevent_extra registers it (`evutil_set_evdns_getaddrinfo_fn_`).
type EvdnsGetaddrinfoFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const c_char,
    *const evutil_addrinfo,
    GetaddrinfoCb,
    *mut c_void,
) -> *mut c_void;
/// evdns' cancel function for the above.
type EvdnsCancelFn = unsafe extern "C" fn(*mut c_void);
/// The completion callback of an asynchronous getaddrinfo.
type GetaddrinfoCb = unsafe extern "C" fn(c_int, *mut evutil_addrinfo, *mut c_void);

static EVDNS_GETADDRINFO: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static EVDNS_GETADDRINFO_CANCEL: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

/// `evutil_set_evdns_getaddrinfo_fn_`: registers evdns' resolver (the first registration stays).
///
/// # Safety
/// `f` NULL or an `evdns_getaddrinfo_fn`.
#[no_mangle]
pub unsafe extern "C" fn evutil_set_evdns_getaddrinfo_fn_(f: Option<EvdnsGetaddrinfoFn>) {
    if let Some(f) = f {
        let _ = EVDNS_GETADDRINFO.compare_exchange(null_mut(), f as *mut c_void, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// `evutil_set_evdns_getaddrinfo_cancel_fn_`: registers evdns' cancel function (the first registration stays).
///
/// # Safety
/// `f` NULL or an `evdns_getaddrinfo_cancel_fn`.
#[no_mangle]
pub unsafe extern "C" fn evutil_set_evdns_getaddrinfo_cancel_fn_(f: Option<EvdnsCancelFn>) {
    if let Some(f) = f {
        let _ = EVDNS_GETADDRINFO_CANCEL.compare_exchange(
            null_mut(),
            f as *mut c_void,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// `evutil_getaddrinfo_async_`: through evdns when a DNS base is given and evdns registered itself; otherwise a
/// blocking `evutil_getaddrinfo` whose result goes to `cb` at once (and NULL is returned).
///
/// # Safety
/// As `evutil_getaddrinfo`; `cb` a valid callback; `dns_base` NULL or an evdns base.
#[no_mangle]
pub unsafe extern "C" fn evutil_getaddrinfo_async_(
    dns_base: *mut c_void,
    nodename: *const c_char,
    servname: *const c_char,
    hints_in: *const evutil_addrinfo,
    cb: Option<GetaddrinfoCb>,
    arg: *mut c_void,
) -> *mut c_void {
    guard(null_mut(), || {
        let Some(cb) = cb else { return null_mut() };
        let evdns = EVDNS_GETADDRINFO.load(Ordering::Acquire);
        if !dns_base.is_null() && !evdns.is_null() {
            // SAFETY: stored from an `evdns_getaddrinfo_fn` by evutil_set_evdns_getaddrinfo_fn_.
            let evdns: EvdnsGetaddrinfoFn = unsafe { std::mem::transmute(evdns) };
            // SAFETY: the caller's arguments, passed on as libevent does.
            return unsafe { evdns(dns_base, nodename, servname, hints_in, cb, arg) };
        }
        let mut ai: *mut evutil_addrinfo = null_mut();
        // SAFETY: the caller's arguments; `ai` is writable.
        let err = unsafe { evutil_getaddrinfo(nodename, servname, hints_in, &mut ai) };
        // SAFETY: the application's callback, which takes ownership of `ai`.
        unsafe { cb(err, ai, arg) };
        null_mut()
    })
}

/// `evutil_getaddrinfo_cancel_async_`: cancels through evdns (if it registered).
///
/// # Safety
/// `data` NULL or a request from `evutil_getaddrinfo_async_`.
#[no_mangle]
pub unsafe extern "C" fn evutil_getaddrinfo_cancel_async_(data: *mut c_void) {
    guard((), || {
        let cancel = EVDNS_GETADDRINFO_CANCEL.load(Ordering::Acquire);
        if data.is_null() || cancel.is_null() {
            return;
        }
        // SAFETY: stored from an `evdns_getaddrinfo_cancel_fn`.
        let cancel: EvdnsCancelFn = unsafe { std::mem::transmute(cancel) };
        // SAFETY: evdns' own request.
        unsafe { cancel(data) };
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Strings and characters
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_strtoll`: the C library's strtoll (libevent calls it on Linux).
///
/// # Safety
/// `s` a C string; `endptr` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn evutil_strtoll(s: *const c_char, endptr: *mut *mut c_char, base: c_int) -> i64 {
    guard(0, || {
        if s.is_null() {
            set_errno(libc::EINVAL);
            return 0;
        }
        // SAFETY: the caller's promises.
        unsafe { libc::strtoll(s, endptr, base) }
    })
}

/// `evutil_ascii_strcasecmp`: ASCII-only case folding, -1/0/1.
///
/// # Safety
/// C strings.
#[no_mangle]
pub unsafe extern "C" fn evutil_ascii_strcasecmp(s1: *const c_char, s2: *const c_char) -> c_int {
    // SAFETY: forwarded.
    guard(0, || unsafe { evutil_ascii_strncasecmp(s1, s2, usize::MAX) })
}

/// `evutil_ascii_strncasecmp`: as `evutil_ascii_strcasecmp` over at most `n` characters.
///
/// # Safety
/// C strings (or arrays of at least `n` bytes).
#[no_mangle]
pub unsafe extern "C" fn evutil_ascii_strncasecmp(s1: *const c_char, s2: *const c_char, n: usize) -> c_int {
    guard(0, || {
        if n == 0 {
            return 0;
        }
        if s1.is_null() || s2.is_null() {
            return c_int::from(s2.is_null()) - c_int::from(s1.is_null());
        }
        // Only as many bytes as the comparison can reach are read: up to the NUL or `n`.
        // SAFETY: C strings (or `n`-byte arrays), read no further than their terminator or `n`.
        let (a, b) = unsafe { (bounded_bytes(s1, n), bounded_bytes(s2, n)) };
        text::ascii_casecmp(a, b, n)
    })
}

/// The bytes of `s` up to and including its NUL, but at most `n`.
///
/// # Safety
/// `s` readable up to its NUL or `n` bytes, whichever comes first.
unsafe fn bounded_bytes<'a>(s: *const c_char, n: usize) -> &'a [u8] {
    // SAFETY: strnlen reads no further than the caller's promise allows.
    let len = unsafe { libc::strnlen(s, n) };
    let with_nul = if len < n { len + 1 } else { len };
    // SAFETY: those bytes are readable.
    unsafe { std::slice::from_raw_parts(s.cast::<u8>(), with_nul) }
}

/// `evutil_rtrim_lws_`: cuts trailing spaces and tabs in place.
///
/// # Safety
/// `s` NULL or a writable C string.
#[no_mangle]
pub unsafe extern "C" fn evutil_rtrim_lws_(s: *mut c_char) {
    guard((), || {
        if s.is_null() {
            return;
        }
        // SAFETY: a C string.
        let keep = text::rtrim_lws_len(unsafe { c_bytes(s) });
        // SAFETY: `keep` ≤ the string's length, so the byte is inside it.
        unsafe { s.add(keep).write(0) };
    })
}

/// `event_strlcpy_`: BSD strlcpy (copies what fits with a NUL, returns strlen(src)).
///
/// # Safety
/// `dst` writable for `siz` bytes; `src` a C string not overlapping `dst`.
#[no_mangle]
pub unsafe extern "C" fn event_strlcpy_(dst: *mut c_char, src: *const c_char, siz: usize) -> usize {
    guard(0, || {
        if src.is_null() {
            return 0;
        }
        // SAFETY: the caller's promises.
        unsafe { text::strlcpy(out_slice(dst, siz), c_bytes(src)) }
    })
}

/// `evutil_hex_char_to_int_`.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_hex_char_to_int_(c: c_char) -> c_int {
    text::hex_value(c as u8)
}

macro_rules! export_ctype {
    ($($name:ident => $test:path),+ $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: locale-independent ASCII class test.")]
        ///
        /// # Safety
        /// None.
        #[no_mangle]
        pub unsafe extern "C" fn $name(c: c_char) -> c_int {
            c_int::from($test(c as u8))
        }
    )+};
}

export_ctype! {
    EVUTIL_ISALPHA_ => text::is_alpha,
    EVUTIL_ISALNUM_ => text::is_alnum,
    EVUTIL_ISSPACE_ => text::is_space,
    EVUTIL_ISDIGIT_ => text::is_digit,
    EVUTIL_ISXDIGIT_ => text::is_xdigit,
    EVUTIL_ISPRINT_ => text::is_print,
    EVUTIL_ISLOWER_ => text::is_lower,
    EVUTIL_ISUPPER_ => text::is_upper,
}

/// `EVUTIL_TOLOWER_`: ASCII only.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn EVUTIL_TOLOWER_(c: c_char) -> c_char {
    (c as u8).to_ascii_lowercase() as c_char
}

/// `EVUTIL_TOUPPER_`: ASCII only.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn EVUTIL_TOUPPER_(c: c_char) -> c_char {
    (c as u8).to_ascii_uppercase() as c_char
}

/// `evutil_getenv_`: getenv, except NULL in set-user/group-id programs.
///
/// # Safety
/// `varname` a C string.
#[no_mangle]
pub unsafe extern "C" fn evutil_getenv_(varname: *const c_char) -> *const c_char {
    guard(null(), || {
        // SAFETY: getauxval/getenv have no preconditions beyond a C string name.
        unsafe {
            if varname.is_null() || libc::getauxval(libc::AT_SECURE) != 0 {
                return null();
            }
            libc::getenv(varname)
        }
    })
}

/// libevent's volatile pointer to memset (exported data), through which `evutil_memclear_` clears memory so
/// the compiler cannot drop the write.
#[no_mangle]
pub static evutil_memset_volatile_: AtomicPtr<c_void> = AtomicPtr::new(libc::memset as *mut c_void);

/// `evutil_memclear_`: zeroes `len` bytes in a way the optimizer keeps.
///
/// # Safety
/// `mem` writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_memclear_(mem: *mut c_void, len: usize) {
    guard((), || {
        let f = evutil_memset_volatile_.load(Ordering::Relaxed);
        if f.is_null() || mem.is_null() {
            return;
        }
        // SAFETY: the exported pointer holds a memset-compatible function (libevent's contract for it).
        let memset: unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void = unsafe { std::mem::transmute(f) };
        // SAFETY: `mem` is writable for `len` bytes.
        unsafe { memset(mem, 0, len) };
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_open_closeonexec_`: open(2) with O_CLOEXEC.
///
/// # Safety
/// `pathname` a C string.
#[no_mangle]
pub unsafe extern "C" fn evutil_open_closeonexec_(pathname: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    guard(-1, || {
        if pathname.is_null() {
            set_errno(libc::EFAULT);
            return -1;
        }
        // SAFETY: a C string path.
        unsafe { libc::open(pathname, flags | libc::O_CLOEXEC, mode) }
    })
}

/// `evutil_read_file_`: the whole file in a NUL-terminated buffer from the configured allocator. 0, -1 if it
/// cannot be opened, -2 for any later failure.
///
/// # Safety
/// `filename` a C string; `content_out`, `len_out` writable.
#[no_mangle]
pub unsafe extern "C" fn evutil_read_file_(
    filename: *const c_char,
    content_out: *mut *mut c_char,
    len_out: *mut usize,
    _is_binary: c_int,
) -> c_int {
    guard(-2, || {
        if filename.is_null() || content_out.is_null() || len_out.is_null() {
            return -2;
        }
        // SAFETY: writable out-pointers.
        unsafe {
            *content_out = null_mut();
            *len_out = 0;
        }
        // SAFETY: a C string path.
        let path = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(unsafe {
            c_bytes(filename)
        }));
        let Ok(mut file) = std::fs::File::open(path) else { return -1 };
        let mut content = Vec::new();
        if std::io::Read::read_to_end(&mut file, &mut content).is_err() {
            return -2;
        }
        let mem = mm_malloc(content.len() + 1).cast::<u8>();
        if mem.is_null() {
            return -2;
        }
        // SAFETY: `mem` has room for the content and a NUL; the out-pointers are writable.
        unsafe {
            ptr::copy_nonoverlapping(content.as_ptr(), mem, content.len());
            mem.add(content.len()).write(0);
            *content_out = mem.cast();
            *len_out = content.len();
        }
        0
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_weakrand_seed_`: seeds the state (0 means "from the clock and pid") and returns the seed used.
///
/// # Safety
/// `state` a writable `struct evutil_weakrand_state`.
#[no_mangle]
pub unsafe extern "C" fn evutil_weakrand_seed_(state: *mut evutil_weakrand_state, seed: u32) -> u32 {
    guard(0, || {
        let seed = if seed == 0 {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            rand::default_seed(now.as_secs() as i64, i64::from(now.subsec_micros()), std::process::id())
        } else {
            seed
        };
        if !state.is_null() {
            // SAFETY: writable (the caller's promise).
            unsafe { (*state).seed = seed };
        }
        seed
    })
}

/// `evutil_weakrand_`: the next value in 0..=EVUTIL_WEAKRAND_MAX.
///
/// # Safety
/// `state` a writable `struct evutil_weakrand_state`.
#[no_mangle]
pub unsafe extern "C" fn evutil_weakrand_(state: *mut evutil_weakrand_state) -> i32 {
    guard(0, || {
        if state.is_null() {
            return 0;
        }
        // SAFETY: writable (the caller's promise).
        rand::next(unsafe { &mut (*state).seed })
    })
}

/// `evutil_weakrand_range_`: a value in 0..top.
///
/// # Safety
/// `state` a writable `struct evutil_weakrand_state`.
#[no_mangle]
pub unsafe extern "C" fn evutil_weakrand_range_(state: *mut evutil_weakrand_state, top: i32) -> i32 {
    guard(0, || {
        if state.is_null() {
            return 0;
        }
        // SAFETY: writable (the caller's promise).
        rand::range(unsafe { &mut (*state).seed }, top)
    })
}

/// `evutil_secure_rng_init`: nothing to set up (getrandom(2) is always seeded); 0.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_secure_rng_init() -> c_int {
    0
}

/// `evutil_secure_rng_set_urandom_device_file`: -1, as libevent built on arc4random (Debian's) answers: there is
/// no device file to choose.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_secure_rng_set_urandom_device_file(_fname: *mut c_char) -> c_int {
    -1
}

/// `evutil_secure_rng_get_bytes`: `n` bytes from getrandom(2).
///
/// # Safety
/// `buf` writable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn evutil_secure_rng_get_bytes(buf: *mut c_void, n: usize) {
    guard((), || {
        if buf.is_null() {
            return;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: `buf + done` has `n - done` writable bytes.
            let r = unsafe { libc::getrandom(buf.cast::<u8>().add(done).cast(), n - done, 0) };
            if r > 0 {
                done += r as usize;
            } else if r < 0 && errno() != libc::EINTR {
                // getrandom cannot fail for a valid buffer once the pool is ready; refuse to return guessable bytes.
                std::process::abort();
            }
        }
    })
}

/// `evutil_secure_rng_add_bytes`: ignored, as libevent on arc4random ignores it (the kernel pool needs no help).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_secure_rng_add_bytes(_buf: *const c_char, _n: usize) {}

// ---------------------------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_date_rfc1123`: "Sun, 06 Nov 1994 08:49:37 GMT" for `tm` (now, in UTC, if NULL), `snprintf`-style
/// into `date`; returns the full length.
///
/// # Safety
/// `date` writable for `datelen` bytes; `tm` NULL or a readable `struct tm`.
#[no_mangle]
pub unsafe extern "C" fn evutil_date_rfc1123(date: *mut c_char, datelen: usize, tm: *const libc::tm) -> c_int {
    guard(-1, || {
        // SAFETY: plain data.
        let mut now: libc::tm = unsafe { std::mem::zeroed() };
        let tm = if tm.is_null() {
            // SAFETY: time(NULL) and gmtime_r into our struct.
            unsafe {
                let t = libc::time(null_mut());
                libc::gmtime_r(&t, &mut now);
            }
            &now
        } else {
            // SAFETY: readable (the caller's promise).
            unsafe { &*tm }
        };
        let fields = text::DateFields {
            year: tm.tm_year,
            month: tm.tm_mon,
            day: tm.tm_mday,
            weekday: tm.tm_wday,
            hour: tm.tm_hour,
            minute: tm.tm_min,
            second: tm.tm_sec,
        };
        let s = text::rfc1123_date(&fields);
        if datelen == 0 {
            return 0;
        }
        // SAFETY: `date` has `datelen` writable bytes.
        text::copy_truncated(unsafe { out_slice(date, datelen) }, s.as_bytes()) as c_int
    })
}

/// `evutil_usleep_`: sleeps for `tv` (one nanosleep, as libevent).
///
/// # Safety
/// `tv` NULL or a readable timeval.
#[no_mangle]
pub unsafe extern "C" fn evutil_usleep_(tv: *const libc::timeval) {
    guard((), || {
        if tv.is_null() {
            return;
        }
        // SAFETY: readable.
        let tv = unsafe { &*tv };
        let ts = libc::timespec { tv_sec: tv.tv_sec, tv_nsec: tv.tv_usec.saturating_mul(1000) };
        // SAFETY: a valid timespec; no remainder wanted.
        unsafe { libc::nanosleep(&ts, null_mut()) };
    })
}

/// `evutil_tv_to_msec_`: milliseconds, rounding microseconds up; -1 if out of range.
///
/// # Safety
/// `tv` a readable timeval.
#[no_mangle]
pub unsafe extern "C" fn evutil_tv_to_msec_(tv: *const libc::timeval) -> c_long {
    guard(-1, || {
        if tv.is_null() {
            return -1;
        }
        // SAFETY: readable.
        let tv = unsafe { &*tv };
        if tv.tv_usec > 1_000_000 || tv.tv_sec > (c_long::MAX - 999) / 1000 {
            return -1;
        }
        tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000
    })
}

/// Whether `clock_gettime(clock)` works.
fn clock_works(clock: c_int) -> bool {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is writable.
    unsafe { libc::clock_gettime(clock, &mut ts) == 0 }
}

/// `evutil_monotonic_timer_new`: a zeroed timer from the configured allocator.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_monotonic_timer_new() -> *mut evutil_monotonic_timer {
    guard(null_mut(), || mm_calloc(1, size_of::<evutil_monotonic_timer>()).cast())
}

/// `evutil_monotonic_timer_free`.
///
/// # Safety
/// `timer` NULL or from `evutil_monotonic_timer_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn evutil_monotonic_timer_free(timer: *mut evutil_monotonic_timer) {
    guard((), || mm_free(timer.cast()))
}

/// `evutil_configure_monotonic_time_`: picks the timer's clock for EV_MONOT_PRECISE / EV_MONOT_FALLBACK; 0.
/// The wall-clock ratchet starts from zero (libevent leaves it as it was, possibly uninitialized stack).
///
/// # Safety
/// `timer` a writable timer.
#[no_mangle]
pub unsafe extern "C" fn evutil_configure_monotonic_time_(timer: *mut evutil_monotonic_timer, flags: c_int) -> c_int {
    guard(-1, || {
        if timer.is_null() {
            return -1;
        }
        let clock = match time::choose_clock(flags, clock_works) {
            time::MonotonicClock::Posix(id) => id,
            time::MonotonicClock::WallClock => -1,
        };
        let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
        // SAFETY: writable (the caller's promise).
        unsafe {
            timer.write(evutil_monotonic_timer {
                monotonic_clock: clock,
                adjust_monotonic_clock: zero,
                last_time: zero,
            })
        };
        0
    })
}

/// `evutil_configure_monotonic_time`: the public name of the above.
///
/// # Safety
/// As `evutil_configure_monotonic_time_`.
#[no_mangle]
pub unsafe extern "C" fn evutil_configure_monotonic_time(timer: *mut evutil_monotonic_timer, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { evutil_configure_monotonic_time_(timer, flags) }
}

/// `evutil_gettime_monotonic_`: the timer's clock now, as a timeval; 0, or -1 if the clock fails.
///
/// # Safety
/// `timer` a configured timer; `tp` a writable timeval.
#[no_mangle]
pub unsafe extern "C" fn evutil_gettime_monotonic_(
    timer: *mut evutil_monotonic_timer,
    tp: *mut libc::timeval,
) -> c_int {
    guard(-1, || {
        if timer.is_null() || tp.is_null() {
            return -1;
        }
        // SAFETY: both writable (the caller's promise).
        let (timer, tp) = unsafe { (&mut *timer, &mut *tp) };
        if timer.monotonic_clock < 0 {
            let mut now = libc::timeval { tv_sec: 0, tv_usec: 0 };
            // SAFETY: `now` is writable; no timezone.
            if unsafe { libc::gettimeofday(&mut now, null_mut()) } < 0 {
                return -1;
            }
            let mut adjust = (timer.adjust_monotonic_clock.tv_sec, timer.adjust_monotonic_clock.tv_usec);
            let mut last = (timer.last_time.tv_sec, timer.last_time.tv_usec);
            let (sec, usec) = time::ratchet((now.tv_sec, now.tv_usec), &mut adjust, &mut last);
            timer.adjust_monotonic_clock = libc::timeval { tv_sec: adjust.0, tv_usec: adjust.1 };
            timer.last_time = libc::timeval { tv_sec: last.0, tv_usec: last.1 };
            *tp = libc::timeval { tv_sec: sec, tv_usec: usec };
            return 0;
        }
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is writable.
        if unsafe { libc::clock_gettime(timer.monotonic_clock, &mut ts) } == -1 {
            return -1;
        }
        *tp = libc::timeval { tv_sec: ts.tv_sec, tv_usec: ts.tv_nsec / 1000 };
        0
    })
}

/// `evutil_gettime_monotonic`: the public name of the above.
///
/// # Safety
/// As `evutil_gettime_monotonic_`.
#[no_mangle]
pub unsafe extern "C" fn evutil_gettime_monotonic(timer: *mut evutil_monotonic_timer, tp: *mut libc::timeval) -> c_int {
    // SAFETY: forwarded.
    unsafe { evutil_gettime_monotonic_(timer, tp) }
}

// ---------------------------------------------------------------------------------------------------------------
// Process-wide setup hooks libevent exports (nothing to set up here)
// ---------------------------------------------------------------------------------------------------------------

/// `evutil_global_setup_locks_`: evutil keeps no lock-protected globals; 0.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_global_setup_locks_(_enable_locks: c_int) -> c_int {
    0
}

/// `evutil_secure_rng_global_setup_locks_`: getrandom needs no lock; 0.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_secure_rng_global_setup_locks_(_enable_locks: c_int) -> c_int {
    0
}

/// `evutil_free_globals_`: nothing is cached.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_free_globals_() {}

/// `evutil_free_secure_rng_globals_`: nothing is cached.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evutil_free_secure_rng_globals_() {}

// ---------------------------------------------------------------------------------------------------------------
// Logging (the C side formats; this delivers)
// ---------------------------------------------------------------------------------------------------------------

/// Receives a message formatted by `capi/c/util.c` (`event_warn` & co.): logs it at `severity` through
/// libevent's log path, and for the fatal variants (`exit_code` given) ends the process as libevent does.
extern "C" fn deliver_log_message(severity: c_int, msg: *const c_char, fatal: c_int, exit_code: c_int) {
    let text = if msg.is_null() {
        String::new()
    } else {
        // SAFETY: the C side passes its NUL-terminated buffer.
        String::from_utf8_lossy(unsafe { c_bytes(msg) }).into_owned()
    };
    if fatal != 0 {
        errx(exit_code, &text);
    }
    let severity = match severity {
        0 => Severity::Debug,
        1 => Severity::Msg,
        2 => Severity::Warn,
        _ => Severity::Err,
    };
    guard((), || log_msg(severity, &text));
}

unsafe extern "C" {
    fn ixc_set_log_sink(sink: extern "C" fn(c_int, *const c_char, c_int, c_int));
}

extern "C" fn register_log_sink() {
    // SAFETY: stores a function pointer in the C side's static; runs once, before main, single-threaded.
    unsafe { ixc_set_log_sink(deliver_log_message) };
}

/// Registers [`deliver_log_message`] with the C logging bodies when libix is loaded, before any application
/// code can call `event_warn` (a constructor, so no extra symbol has to be exported for C to find Rust).
#[used]
#[link_section = ".init_array"]
static REGISTER_LOG_SINK: extern "C" fn() = register_log_sink;
