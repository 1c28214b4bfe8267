//! libevent 2.1's connection listener API (`event2/listener.h`, the nine `evconnlistener_*` functions) over
//! [`crate::listener`].
//!
//! `struct evconnlistener *` is the address of a [`Listener`] placed in memory from the application's allocator
//! (`event_set_mem_functions`), as libevent allocates its listeners. Its read event is a separate `struct event`
//! from the same allocator, driven through this crate's own `event_assign`/`event_add`/`event_del` exports, so it
//! follows every libevent convention of theirs (NULL base: the current base, debug mode, warnings).
//!
//! [`KernelSockets`] is the listener's whole set of socket system calls (socket, setsockopt, bind, listen,
//! accept4, close): the socket layer will route dataplane sockets (virtual fds) at this one place.
#![allow(non_camel_case_types)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_int, c_short, c_uint, c_void, CStr};
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::RawFd;
use std::ptr::{self, null_mut};

use crate::event::base::Severity;
use crate::event::raw::{RawEvent, EV_PERSIST, EV_READ};
use crate::event::{sys::set_errno, EvPtr};
use crate::listener::{self, AcceptFlags, EventFailed, Host, Listener, Release, SockAddr, SockOpt, Sockets};

use super::event::{
    event, event_add, event_assign, event_base, event_debug_unassign, event_del, event_get_base, log_msg, mm_free,
    mm_malloc,
};
use super::guard;

/// `struct evconnlistener` (opaque to C).
#[repr(C)]
pub struct evconnlistener {
    _opaque: [u8; 0],
}

/// `evconnlistener_cb`: a new connection, its peer address and the application's argument.
pub type evconnlistener_cb = unsafe extern "C" fn(*mut evconnlistener, c_int, *mut libc::sockaddr, c_int, *mut c_void);
/// `evconnlistener_errorcb`: accept failed (errno tells why).
pub type evconnlistener_errorcb = unsafe extern "C" fn(*mut evconnlistener, *mut c_void);

/// The listener as C holds it.
type CListener = Listener<CHost>;

// ---------------------------------------------------------------------------------------------------------------
// Kernel sockets: the listener's only system calls
// ---------------------------------------------------------------------------------------------------------------

/// The kernel's sockets. Every system call a listener makes is one of these methods (a dataplane socket layer
/// will implement [`Sockets`] for its virtual fds and be chosen here).
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelSockets;

/// Maps a `-1` return to the errno (left in `errno` too, as the application would see it after the call).
fn cvt(r: c_int) -> io::Result<c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Sockets for KernelSockets {
    fn socket(&self, family: c_int, cloexec: bool) -> io::Result<RawFd> {
        let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | if cloexec { libc::SOCK_CLOEXEC } else { 0 };
        // SAFETY: no pointers; the new fd is the caller's.
        cvt(unsafe { libc::socket(family, ty, 0) })
    }

    fn set_option(&self, fd: RawFd, opt: SockOpt) -> io::Result<()> {
        let (level, name) = match opt {
            SockOpt::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            SockOpt::ReuseAddr => (libc::SOL_SOCKET, libc::SO_REUSEADDR),
            SockOpt::ReusePort => (libc::SOL_SOCKET, libc::SO_REUSEPORT),
            SockOpt::DeferAccept => (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
            SockOpt::V6Only => (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
        };
        let one: c_int = 1;
        // SAFETY: `one` is a valid int for the call's duration, its size given.
        let r = unsafe {
            libc::setsockopt(fd, level, name, ptr::addr_of!(one).cast(), size_of::<c_int>() as libc::socklen_t)
        };
        cvt(r).map(drop)
    }

    fn bind(&self, fd: RawFd, addr: &SockAddr) -> io::Result<()> {
        // A length beyond the 128 bytes we hold is passed on as is: the kernel rejects it (EINVAL) before reading,
        // exactly as for the application's own pointer.
        // SAFETY: `addr.bytes` is 128 readable bytes, suitably aligned for a sockaddr.
        cvt(unsafe { libc::bind(fd, addr.bytes.as_ptr().cast(), addr.len) }).map(drop)
    }

    fn listen(&self, fd: RawFd, backlog: c_int) -> io::Result<()> {
        // SAFETY: no pointers.
        cvt(unsafe { libc::listen(fd, backlog) }).map(drop)
    }

    fn accept(&self, fd: RawFd, flags: AcceptFlags) -> io::Result<(RawFd, SockAddr)> {
        let mut peer = SockAddr::empty();
        let mut len = peer.bytes.len() as libc::socklen_t;
        let f =
            if flags.nonblock { libc::SOCK_NONBLOCK } else { 0 } | if flags.cloexec { libc::SOCK_CLOEXEC } else { 0 };
        // SAFETY: `peer.bytes` has room for `len` bytes (a sockaddr_storage), `len` is a valid in/out length.
        let new_fd = cvt(unsafe { libc::accept4(fd, peer.bytes.as_mut_ptr().cast(), &mut len, f) })?;
        peer.len = len;
        Ok((new_fd, peer))
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: `fd` is the listener's to close (its own socket, or one it accepted and nobody else got).
        unsafe { libc::close(fd) };
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The host: the listener's event and the application's callbacks
// ---------------------------------------------------------------------------------------------------------------

/// A C listener's surroundings: its read event (in application-allocator memory) and the kernel sockets.
#[derive(Debug)]
pub struct CHost {
    event: EvPtr,
    sockets: KernelSockets,
}

impl Host for CHost {
    type Sockets = KernelSockets;
    type AcceptCb = evconnlistener_cb;
    type ErrorCb = evconnlistener_errorcb;
    type Arg = *mut c_void;

    fn sockets(&self) -> &KernelSockets {
        &self.sockets
    }

    fn watch(&self) -> Result<(), EventFailed> {
        // SAFETY: the event was assigned by evconnlistener_new and lives as long as the listener.
        if unsafe { event_add(self.event.as_ptr(), ptr::null()) } == 0 {
            Ok(())
        } else {
            Err(EventFailed)
        }
    }

    fn unwatch(&self) -> Result<(), EventFailed> {
        // SAFETY: as in `watch`.
        if unsafe { event_del(self.event.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(EventFailed)
        }
    }

    fn retire_event(&self) {
        // SAFETY: as in `watch`; the event was just deleted.
        unsafe { event_debug_unassign(self.event.as_ptr()) };
    }

    // `arg` is the application's own pointer, handed back to its callback untouched (never dereferenced here).
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    fn accepted(&self, l: &CListener, cb: evconnlistener_cb, fd: RawFd, peer: &SockAddr, arg: *mut c_void) {
        // libevent hands the callback a pointer into its stack buffer; a copy keeps `peer` unchanged for us.
        let mut addr = *peer;
        let len = addr.len.min(addr.bytes.len() as u32) as c_int;
        // SAFETY: the application registered `cb` with this signature; the listener pointer is its handle, which
        // stays valid during the call (the running callback holds a reference).
        unsafe { cb(handle(l), fd, addr.bytes.as_mut_ptr().cast(), len, arg) };
    }

    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    fn failed(&self, l: &CListener, cb: evconnlistener_errorcb, error: &io::Error, arg: *mut c_void) {
        // Error callbacks read the reason from errno (EVUTIL_SOCKET_ERROR()), as accept left it.
        set_errno(error.raw_os_error().unwrap_or(libc::EIO));
        // SAFETY: as in `accepted`.
        unsafe { cb(handle(l), arg) };
    }

    fn unhandled_error(&self, _fd: RawFd, error: &io::Error) {
        // libevent's event_sock_warn: the message, ": ", strerror.
        log_msg(Severity::Warn, &format!("Error from accept() call: {}", strerror(error)));
    }
}

/// `strerror` text for an error (without Rust's " (os error N)" suffix).
fn strerror(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else { return e.to_string() };
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: `buf` is writable for its length; the XSI strerror_r writes a NUL-terminated string into it.
    if unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) } != 0 {
        return format!("Unknown error {code}");
    }
    // SAFETY: strerror_r succeeded, so `buf` holds a NUL-terminated string.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// The C handle of a listener.
fn handle(l: &CListener) -> *mut evconnlistener {
    (l as *const CListener).cast_mut().cast()
}

/// The listener behind a C handle.
///
/// # Safety
/// `lev` is NULL or a live handle from `evconnlistener_new*`.
unsafe fn listener_ref<'a>(lev: *const evconnlistener) -> Option<&'a CListener> {
    // SAFETY: the caller's promise; handles are `CListener`s placed by `evconnlistener_new`.
    unsafe { lev.cast::<CListener>().as_ref() }
}

/// Frees a destroyed listener's memory: the listener, then its event.
///
/// # Safety
/// `l` came from `evconnlistener_new`, an operation on it returned [`Release::Destroyed`], and nothing uses it
/// afterwards.
unsafe fn free_listener(l: *mut CListener) {
    // SAFETY: the caller's promise: `l` is a live, destroyed listener nobody else refers to.
    let event = unsafe { (*l).host().event };
    // SAFETY: as above; dropped in place, then its memory returned to the allocator it came from.
    unsafe { ptr::drop_in_place(l) };
    mm_free(l.cast());
    mm_free(event.as_ptr().cast());
}

/// Frees the listener if `r` says it was destroyed.
///
/// # Safety
/// As [`free_listener`] when `r` is [`Release::Destroyed`].
unsafe fn settle(l: *mut CListener, r: Release) {
    if r == Release::Destroyed {
        // SAFETY: the caller's promise.
        unsafe { free_listener(l) };
    }
}

/// The listener's read event callback.
unsafe extern "C" fn listener_read_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    guard((), || {
        let l = arg.cast::<CListener>();
        // SAFETY: `arg` is the listener this event was assigned for; the event is deleted before the listener is
        // freed, so a listener whose event fires is live.
        let Some(lev) = (unsafe { l.as_ref() }) else { return };
        let r = lev.on_readable();
        // SAFETY: a destroyed listener is touched no more after this.
        unsafe { settle(l, r) };
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------------------------------

/// `evconnlistener_new`: a listener on an open socket `fd`. Listens with `backlog` (negative: 128; 0: the socket
/// already listens); enabled unless `LEV_OPT_DISABLED`. NULL when listen or the allocation fails.
///
/// # Safety
/// `base` NULL (the current base) or a live base; `cb` NULL or a valid callback; `fd` a socket the listener may
/// use (and close with `LEV_OPT_CLOSE_ON_FREE`).
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_new(
    base: *mut event_base,
    cb: Option<evconnlistener_cb>,
    ptr: *mut c_void,
    flags: c_uint,
    backlog: c_int,
    fd: c_int,
) -> *mut evconnlistener {
    guard(null_mut(), || {
        let ev_mem = mm_malloc(size_of::<RawEvent>()).cast::<RawEvent>();
        // SAFETY: a fresh allocation of 128 bytes (malloc alignment suffices), owned by the listener from now on.
        let Some(event) = (unsafe { EvPtr::new(ev_mem) }) else { return null_mut() };
        // SAFETY: initialize the whole struct before use.
        unsafe { ev_mem.write(RawEvent::zeroed()) };
        let host = CHost { event, sockets: KernelSockets };
        let Ok(l) = Listener::new(host, fd, flags, backlog, cb, ptr) else {
            mm_free(ev_mem.cast());
            return null_mut();
        };
        let p = mm_malloc(size_of::<CListener>()).cast::<CListener>();
        if p.is_null() || !(p as usize).is_multiple_of(align_of::<CListener>()) {
            mm_free(p.cast());
            mm_free(ev_mem.cast());
            return null_mut();
        }
        // SAFETY: `p` is fresh, large enough and aligned.
        unsafe { p.write(l) };
        // SAFETY: the event memory is ours; `base` is NULL or live (the caller's promise). libevent ignores a
        // failure here too: the listener then has an unusable event and enabling it fails.
        unsafe { event_assign(ev_mem, base, fd, EV_READ | EV_PERSIST, Some(listener_read_cb), p.cast()) };
        // SAFETY: `p` was just written.
        unsafe { &*p }.start();
        p.cast()
    })
}

/// `evconnlistener_new_bind`: a new non-blocking stream socket of `sa`'s family (SO_KEEPALIVE, the options the
/// flags ask for), bound to `sa` (not bound when NULL), then [`evconnlistener_new`]. NULL for a zero backlog, or
/// when a step fails (the socket is closed again; errno from the failing call).
///
/// # Safety
/// As [`evconnlistener_new`]; `sa` NULL or `socklen` readable bytes of a socket address.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_new_bind(
    base: *mut event_base,
    cb: Option<evconnlistener_cb>,
    ptr: *mut c_void,
    flags: c_uint,
    backlog: c_int,
    sa: *const libc::sockaddr,
    socklen: c_int,
) -> *mut evconnlistener {
    guard(null_mut(), || {
        let addr = (!sa.is_null()).then(|| {
            let mut a = SockAddr::empty();
            // The family field is read whatever socklen says (libevent does); at most 128 bytes are copied, a
            // longer (or negative) length is kept so that bind refuses it as it would the original.
            let n = (socklen.max(2) as usize).min(a.bytes.len());
            // SAFETY: `sa` has `socklen` readable bytes (the caller's promise), and at least its family field.
            unsafe { ptr::copy_nonoverlapping(sa.cast::<u8>(), a.bytes.as_mut_ptr(), n) };
            a.len = socklen as u32;
            a
        });
        let Ok(fd) = listener::bind_socket(&KernelSockets, flags, backlog, addr.as_ref()) else {
            return null_mut();
        };
        // SAFETY: the caller's promises, passed on; `fd` is the socket just made.
        let lev = unsafe { evconnlistener_new(base, cb, ptr, flags, backlog, fd) };
        if lev.is_null() {
            KernelSockets.close(fd);
        }
        lev
    })
}

/// `evconnlistener_free`: clears the callbacks and drops the application's reference; the listener is destroyed
/// (event deleted, socket closed with `LEV_OPT_CLOSE_ON_FREE`) now, or when the callback running returns.
///
/// # Safety
/// `lev` NULL or a live listener, not used by the application afterwards.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_free(lev: *mut evconnlistener) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(l) = (unsafe { listener_ref(lev) }) else { return };
        let r = l.free();
        // SAFETY: a destroyed listener is touched no more.
        unsafe { settle(lev.cast(), r) };
    })
}

/// `evconnlistener_enable`: 0, or -1 when the event could not be added.
///
/// # Safety
/// `lev` NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_enable(lev: *mut evconnlistener) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(l) = (unsafe { listener_ref(lev) }) else { return -1 };
        if l.enable().is_ok() {
            0
        } else {
            -1
        }
    })
}

/// `evconnlistener_disable`: 0, or -1 when the event could not be deleted.
///
/// # Safety
/// `lev` NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_disable(lev: *mut evconnlistener) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(l) = (unsafe { listener_ref(lev) }) else { return -1 };
        if l.disable().is_ok() {
            0
        } else {
            -1
        }
    })
}

/// `evconnlistener_get_base`: the base the listener's event belongs to.
///
/// # Safety
/// `lev` NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_get_base(lev: *mut evconnlistener) -> *mut event_base {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(l) = (unsafe { listener_ref(lev) }) else { return null_mut() };
        let ev: *const event = l.host().event.as_ptr();
        // SAFETY: the listener's event lives as long as the listener.
        unsafe { event_get_base(ev) }
    })
}

/// `evconnlistener_get_fd`: the listening socket.
///
/// # Safety
/// `lev` NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_get_fd(lev: *mut evconnlistener) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        unsafe { listener_ref(lev) }.map_or(-1, CListener::fd)
    })
}

/// `evconnlistener_set_cb`: a new accept callback (NULL: connections stop being accepted) and argument.
///
/// # Safety
/// `lev` NULL or a live listener; `cb` NULL or a valid callback.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_set_cb(
    lev: *mut evconnlistener,
    cb: Option<evconnlistener_cb>,
    arg: *mut c_void,
) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(l) = unsafe { listener_ref(lev) } {
            l.set_accept_cb(cb, arg);
        }
    })
}

/// `evconnlistener_set_error_cb`: the callback for accept errors other than EAGAIN, EINTR and ECONNABORTED.
///
/// # Safety
/// `lev` NULL or a live listener; `errorcb` NULL or a valid callback.
#[no_mangle]
pub unsafe extern "C" fn evconnlistener_set_error_cb(
    lev: *mut evconnlistener,
    errorcb: Option<evconnlistener_errorcb>,
) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(l) = unsafe { listener_ref(lev) } {
            l.set_error_cb(errorcb);
        }
    })
}
