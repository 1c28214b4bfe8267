//! Connection listeners (libevent 2.1's `event2/listener.h`, `evconnlistener_*`): a listening socket watched by
//! one persistent read event on the engine; on each readiness it accepts until the socket has nothing left, hands
//! every connection to the application's callback and reports accept errors to its error callback.
//!
//! This module is the logic only, with libevent's observable semantics:
//! - accept loop per readiness; new sockets non-blocking unless `LEV_OPT_LEAVE_SOCKETS_BLOCKING`, close-on-exec
//!   with `LEV_OPT_CLOSE_ON_EXEC`; an accepted connection with an empty address is closed and skipped;
//! - the loop stops when the callback disabled or freed the listener; EAGAIN, EINTR and ECONNABORTED end it
//!   quietly, any other error goes to the error callback (or is logged when there is none);
//! - a reference count keeps the listener alive across callbacks, so `evconnlistener_free` inside one is safe
//!   (the listener is destroyed when the callback returns);
//! - a listener without an accept callback is never watched, even when enabled; setting one later starts it.
//!
//! Everything with a side effect goes through two traits the C shell (`capi/listener.rs`) implements:
//! [`Sockets`], the listener's only socket system calls (socket/setsockopt/bind/listen/accept/close), which is
//! where a socket layer will route dataplane sockets with virtual fds; and [`Host`], the engine event and the
//! application's callbacks.
//!
//! Locking: a `LEV_OPT_THREADSAFE` listener has libevent's listener lock, held for a whole operation (the engine's
//! add/delete of its event included) and never across an application callback. Every listener also keeps its
//! fields under a short-held mutex, so that the Rust side stays sound whatever the application does; without the
//! flag nothing is held across engine calls, as libevent holds nothing then.

use std::ffi::c_int;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

/// `LEV_OPT_*` flags (`event2/listener.h`).
pub mod opt {
    /// Leave accepted sockets blocking (otherwise they are made non-blocking).
    pub const LEAVE_SOCKETS_BLOCKING: u32 = 1 << 0;
    /// Close the listening socket when the listener is freed.
    pub const CLOSE_ON_FREE: u32 = 1 << 1;
    /// Close-on-exec on the listening socket (`new_bind`) and on accepted sockets.
    pub const CLOSE_ON_EXEC: u32 = 1 << 2;
    /// SO_REUSEADDR on the listening socket (`new_bind`).
    pub const REUSEABLE: u32 = 1 << 3;
    /// The listener is used from several threads (libix locks every listener).
    pub const THREADSAFE: u32 = 1 << 4;
    /// Created disabled: nothing is accepted until `evconnlistener_enable`.
    pub const DISABLED: u32 = 1 << 5;
    /// TCP_DEFER_ACCEPT on the listening socket (`new_bind`).
    pub const DEFERRED_ACCEPT: u32 = 1 << 6;
    /// SO_REUSEPORT on the listening socket (`new_bind`).
    pub const REUSEABLE_PORT: u32 = 1 << 7;
    /// IPV6_V6ONLY on the listening socket (`new_bind`).
    pub const BIND_IPV6ONLY: u32 = 1 << 8;
}

/// The backlog libevent uses when the application passes a negative one.
pub const DEFAULT_BACKLOG: c_int = 128;

/// A socket address as the kernel reads or writes it: the bytes of a `sockaddr_storage` and the length in use.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub struct SockAddr {
    /// `struct sockaddr_storage` (128 bytes); the first `len` are meaningful.
    pub bytes: [u8; 128],
    /// The address length (`socklen_t`); may exceed 128 for an application's bad argument, which `bind` rejects.
    pub len: u32,
}

impl SockAddr {
    /// An empty address (length 0), for the kernel to fill.
    pub const fn empty() -> SockAddr {
        SockAddr { bytes: [0; 128], len: 0 }
    }

    /// The address family (`sa_family`, native byte order), read whatever `len` says (as libevent does).
    pub fn family(&self) -> c_int {
        c_int::from(u16::from_ne_bytes([self.bytes[0], self.bytes[1]]))
    }
}

/// A boolean socket option the listener turns on (`setsockopt(fd, level, name, &1, sizeof(int))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// SOL_SOCKET/SO_KEEPALIVE: set on every socket `new_bind` makes.
    KeepAlive,
    /// SOL_SOCKET/SO_REUSEADDR (`LEV_OPT_REUSEABLE`).
    ReuseAddr,
    /// SOL_SOCKET/SO_REUSEPORT (`LEV_OPT_REUSEABLE_PORT`).
    ReusePort,
    /// IPPROTO_TCP/TCP_DEFER_ACCEPT (`LEV_OPT_DEFERRED_ACCEPT`).
    DeferAccept,
    /// IPPROTO_IPV6/IPV6_V6ONLY (`LEV_OPT_BIND_IPV6ONLY`).
    V6Only,
}

/// Properties of the sockets `accept` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptFlags {
    /// SOCK_NONBLOCK.
    pub nonblock: bool,
    /// SOCK_CLOEXEC.
    pub cloexec: bool,
}

/// Every socket system call a listener makes. Kept to this small set so that a socket layer can route them: the
/// kernel implementation lives in `capi/listener.rs`; dataplane sockets (virtual fds) will get their own.
/// Errors carry the errno, which the implementation also leaves in `errno` as the system call did.
pub trait Sockets {
    /// A new non-blocking stream socket of `family` (`socket(family, SOCK_STREAM|SOCK_NONBLOCK[|SOCK_CLOEXEC])`).
    fn socket(&self, family: c_int, cloexec: bool) -> io::Result<RawFd>;
    /// Turns a boolean option on.
    fn set_option(&self, fd: RawFd, opt: SockOpt) -> io::Result<()>;
    /// `bind`.
    fn bind(&self, fd: RawFd, addr: &SockAddr) -> io::Result<()>;
    /// `listen`.
    fn listen(&self, fd: RawFd, backlog: c_int) -> io::Result<()>;
    /// `accept4`: the new socket and the peer's address.
    fn accept(&self, fd: RawFd, flags: AcceptFlags) -> io::Result<(RawFd, SockAddr)>;
    /// `close` (errors ignored, as libevent ignores them).
    fn close(&self, fd: RawFd);
}

/// The engine event could not be added or deleted (the engine already reported why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFailed;

/// What a listener needs from its surroundings besides sockets: its read event on the engine, and the
/// application's callbacks (whose types the host chooses: C function pointers and a `void *` in the C shell).
pub trait Host: Sized {
    /// The socket calls this host routes to.
    type Sockets: Sockets;
    /// The application's accept callback.
    type AcceptCb: Copy;
    /// The application's error callback.
    type ErrorCb: Copy;
    /// The application's callback argument.
    type Arg: Copy;

    /// The socket calls.
    fn sockets(&self) -> &Self::Sockets;
    /// Makes the read event pending (`event_add`).
    fn watch(&self) -> Result<(), EventFailed>;
    /// Makes the read event not pending (`event_del`).
    fn unwatch(&self) -> Result<(), EventFailed>;
    /// The listener is being destroyed: the event is deleted and will not be used again.
    fn retire_event(&self);
    /// Calls the accept callback; `fd` now belongs to the application.
    fn accepted(&self, listener: &Listener<Self>, cb: Self::AcceptCb, fd: RawFd, peer: &SockAddr, arg: Self::Arg);
    /// Calls the error callback; `error` is the accept error (the callback reads it from errno).
    fn failed(&self, listener: &Listener<Self>, cb: Self::ErrorCb, error: &io::Error, arg: Self::Arg);
    /// Reports an accept error nobody handles (libevent logs a warning).
    fn unhandled_error(&self, fd: RawFd, error: &io::Error);
}

/// Whether an operation dropped the last reference: the caller must then free the listener's memory, and touch
/// it no more.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The listener lives on.
    Kept,
    /// The listener is destroyed (event deleted, socket closed if asked); free its memory now.
    Destroyed,
}

struct State<H: Host> {
    accept: Option<H::AcceptCb>,
    error: Option<H::ErrorCb>,
    arg: H::Arg,
    enabled: bool,
    /// One for the application, plus one per callback running.
    refs: u32,
}

/// One listener. It must stay at the same address from [`Listener::start`] until an operation returns
/// [`Release::Destroyed`] (its read event refers to it).
pub struct Listener<H: Host> {
    host: H,
    fd: RawFd,
    flags: u32,
    /// `LEV_OPT_THREADSAFE` only: held for a whole operation, engine calls included (libevent's listener lock).
    op_lock: Option<Mutex<()>>,
    /// The fields, each access short (never across an engine call or a callback).
    state: Mutex<State<H>>,
}

impl<H: Host> std::fmt::Debug for Listener<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("fd", &self.fd).field("flags", &self.flags).finish_non_exhaustive()
    }
}

/// Accept errors that only mean "nothing (more) to accept now".
fn accept_retriable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR | libc::ECONNABORTED))
}

/// `listen` as `evconnlistener_new` does it: a positive backlog as given, a negative one as 128, 0: the socket
/// is already listening (no call).
pub fn listen_as_libevent<S: Sockets>(sockets: &S, fd: RawFd, backlog: c_int) -> io::Result<()> {
    match backlog {
        0 => Ok(()),
        b if b < 0 => sockets.listen(fd, DEFAULT_BACKLOG),
        b => sockets.listen(fd, b),
    }
}

/// The socket `evconnlistener_new_bind` makes: non-blocking (close-on-exec with `LEV_OPT_CLOSE_ON_EXEC`),
/// SO_KEEPALIVE, the options the flags ask for, bound to `addr` when given. Closed again on any failure. A zero
/// backlog is refused before anything is created (libevent's rule: `new_bind` must start listening).
pub fn bind_socket<S: Sockets>(sockets: &S, flags: u32, backlog: c_int, addr: Option<&SockAddr>) -> io::Result<RawFd> {
    if backlog == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let family = addr.map_or(libc::AF_UNSPEC, SockAddr::family);
    let fd = sockets.socket(family, flags & opt::CLOSE_ON_EXEC != 0)?;
    let options = [
        (true, SockOpt::KeepAlive),
        (flags & opt::REUSEABLE != 0, SockOpt::ReuseAddr),
        (flags & opt::REUSEABLE_PORT != 0, SockOpt::ReusePort),
        (flags & opt::DEFERRED_ACCEPT != 0, SockOpt::DeferAccept),
        (flags & opt::BIND_IPV6ONLY != 0, SockOpt::V6Only),
    ];
    let configured = options.iter().filter(|(wanted, _)| *wanted).try_for_each(|&(_, o)| sockets.set_option(fd, o));
    let bound = configured.and_then(|()| addr.map_or(Ok(()), |a| sockets.bind(fd, a)));
    if let Err(e) = bound {
        sockets.close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// The operation lock of a `LEV_OPT_THREADSAFE` listener while held (nothing for other listeners).
type OpGuard<'a> = Option<MutexGuard<'a, ()>>;

impl<H: Host> Listener<H> {
    /// A listener on `fd`, listening per [`listen_as_libevent`] (the error is returned, `fd` left open). Not yet
    /// watched: place it at its final address, point its event at it, then call [`Listener::start`].
    pub fn new(
        host: H,
        fd: RawFd,
        flags: u32,
        backlog: c_int,
        cb: Option<H::AcceptCb>,
        arg: H::Arg,
    ) -> io::Result<Self> {
        listen_as_libevent(host.sockets(), fd, backlog)?;
        let state = State { accept: cb, error: None, arg, enabled: false, refs: 1 };
        // Only THREADSAFE listeners hold a lock across engine calls, as in libevent: there, a listener disabled
        // from another thread while its accept callback runs waits for the callback (event_del's rule), which
        // waits for that lock; without the flag libevent takes no lock, so neither do we.
        let op_lock = (flags & opt::THREADSAFE != 0).then(|| Mutex::new(()));
        Ok(Listener { host, fd, flags, op_lock, state: Mutex::new(state) })
    }

    /// Enables the listener unless it was created with `LEV_OPT_DISABLED`.
    pub fn start(&self) {
        if self.flags & opt::DISABLED == 0 {
            // As in libevent, a failure to add the event does not fail the creation.
            let _ = self.enable();
        }
    }

    fn op(&self) -> OpGuard<'_> {
        // A panic caught at the C boundary must not make the listener unusable (poisoning is ignored).
        self.op_lock.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn state(&self) -> MutexGuard<'_, State<H>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host (the C shell reaches its event through it).
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The listening socket.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The `LEV_OPT_*` flags given at creation.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether the listener is enabled (it is watched when it also has an accept callback).
    pub fn is_enabled(&self) -> bool {
        self.state().enabled
    }

    fn accept_flags(&self) -> AcceptFlags {
        AcceptFlags {
            nonblock: self.flags & opt::LEAVE_SOCKETS_BLOCKING == 0,
            cloexec: self.flags & opt::CLOSE_ON_EXEC != 0,
        }
    }

    /// `evconnlistener_enable`: watched from now on if there is an accept callback.
    pub fn enable(&self) -> Result<(), EventFailed> {
        let _op = self.op();
        let has_cb = {
            let mut st = self.state();
            st.enabled = true;
            st.accept.is_some()
        };
        if has_cb {
            self.host.watch()
        } else {
            Ok(())
        }
    }

    /// `evconnlistener_disable`.
    pub fn disable(&self) -> Result<(), EventFailed> {
        let _op = self.op();
        self.state().enabled = false;
        self.host.unwatch()
    }

    /// `evconnlistener_set_cb`: a new accept callback and argument; an enabled listener that had no callback
    /// starts being watched.
    pub fn set_accept_cb(&self, cb: Option<H::AcceptCb>, arg: H::Arg) {
        let _op = self.op();
        let start = {
            let mut st = self.state();
            let start = st.enabled && st.accept.is_none() && cb.is_some();
            st.accept = cb;
            st.arg = arg;
            start
        };
        if start {
            let _ = self.host.watch();
        }
    }

    /// `evconnlistener_set_error_cb`.
    pub fn set_error_cb(&self, cb: Option<H::ErrorCb>) {
        let _op = self.op();
        self.state().error = cb;
    }

    /// `evconnlistener_free`: forgets the callbacks and drops the application's reference. A callback running
    /// keeps the listener alive until it returns.
    pub fn free(&self) -> Release {
        let op = self.op();
        {
            let mut st = self.state();
            st.accept = None;
            st.error = None;
        }
        self.unref(op)
    }

    /// Drops a reference (the operation lock held); the last one destroys the listener.
    fn unref(&self, op: OpGuard<'_>) -> Release {
        let last = {
            let mut st = self.state();
            st.refs -= 1;
            st.refs == 0
        };
        if !last {
            return Release::Kept;
        }
        let _ = self.host.unwatch();
        if self.flags & opt::CLOSE_ON_FREE != 0 {
            self.host.sockets().close(self.fd);
        }
        self.host.retire_event();
        drop(op);
        Release::Destroyed
    }

    /// The read event fired: accepts until the socket has nothing more, the listener is disabled or freed by a
    /// callback, or an error stops it.
    pub fn on_readable(&self) -> Release {
        let sockets = self.host.sockets();
        let mut op = self.op();
        let error = loop {
            let (fd, peer) = match sockets.accept(self.fd, self.accept_flags()) {
                Ok(accepted) => accepted,
                Err(e) => break e,
            };
            if peer.len == 0 {
                // Some kernels report connections with no address (a scanner's half-open probes): skip them.
                sockets.close(fd);
                continue;
            }
            let (cb, arg) = {
                let mut st = self.state();
                let Some(cb) = st.accept else {
                    // No callback (cleared while the event stayed pending, or freed by another thread since the
                    // event fired): libevent closes the connection and stops.
                    drop(st);
                    sockets.close(fd);
                    return Release::Kept;
                };
                st.refs += 1;
                (cb, st.arg)
            };
            drop(op);
            self.host.accepted(self, cb, fd, &peer, arg);
            op = self.op();
            let (last, enabled) = {
                let st = self.state();
                (st.refs == 1, st.enabled)
            };
            if last {
                // The application freed the listener in its callback: ours is the last reference.
                return self.unref(op);
            }
            self.state().refs -= 1;
            if !enabled {
                return Release::Kept;
            }
        };
        if accept_retriable(&error) {
            return Release::Kept;
        }
        let handler = {
            let mut st = self.state();
            st.error.map(|cb| {
                st.refs += 1;
                (cb, st.arg)
            })
        };
        drop(op);
        match handler {
            Some((cb, arg)) => {
                self.host.failed(self, cb, &error, arg);
                self.unref(self.op())
            }
            None => {
                self.host.unhandled_error(self.fd, &error);
                Release::Kept
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The logic against scripted sockets and a recording host: the order of system calls and callbacks.
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    #[derive(Default)]
    struct FakeSockets {
        log: RefCell<Vec<String>>,
        accepts: RefCell<VecDeque<io::Result<(RawFd, SockAddr)>>>,
        fail_option: Option<SockOpt>,
    }

    impl Sockets for FakeSockets {
        fn socket(&self, family: c_int, cloexec: bool) -> io::Result<RawFd> {
            self.log.borrow_mut().push(format!("socket({family},{cloexec})"));
            Ok(10)
        }
        fn set_option(&self, fd: RawFd, o: SockOpt) -> io::Result<()> {
            self.log.borrow_mut().push(format!("opt({fd},{o:?})"));
            if self.fail_option == Some(o) {
                return Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT));
            }
            Ok(())
        }
        fn bind(&self, fd: RawFd, a: &SockAddr) -> io::Result<()> {
            self.log.borrow_mut().push(format!("bind({fd},{})", a.len));
            Ok(())
        }
        fn listen(&self, fd: RawFd, backlog: c_int) -> io::Result<()> {
            self.log.borrow_mut().push(format!("listen({fd},{backlog})"));
            Ok(())
        }
        fn accept(&self, fd: RawFd, f: AcceptFlags) -> io::Result<(RawFd, SockAddr)> {
            self.log.borrow_mut().push(format!("accept({fd},{},{})", f.nonblock, f.cloexec));
            self.accepts.borrow_mut().pop_front().unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::EAGAIN)))
        }
        fn close(&self, fd: RawFd) {
            self.log.borrow_mut().push(format!("close({fd})"));
        }
    }

    /// What an accept callback does.
    #[derive(Clone, Copy, Debug)]
    enum Then {
        Nothing,
        Disable,
        Free,
    }

    #[derive(Default)]
    struct FakeHost {
        sockets: FakeSockets,
        events: RefCell<Vec<String>>,
    }

    impl Host for FakeHost {
        type Sockets = FakeSockets;
        type AcceptCb = Then;
        type ErrorCb = Then;
        type Arg = u8;
        fn sockets(&self) -> &FakeSockets {
            &self.sockets
        }
        fn watch(&self) -> Result<(), EventFailed> {
            self.events.borrow_mut().push("add".into());
            Ok(())
        }
        fn unwatch(&self) -> Result<(), EventFailed> {
            self.events.borrow_mut().push("del".into());
            Ok(())
        }
        fn retire_event(&self) {
            self.events.borrow_mut().push("retire".into());
        }
        fn accepted(&self, l: &Listener<Self>, cb: Then, fd: RawFd, _: &SockAddr, arg: u8) {
            self.events.borrow_mut().push(format!("cb({fd},{arg})"));
            match cb {
                Then::Nothing => {}
                Then::Disable => l.disable().unwrap(),
                Then::Free => assert_eq!(l.free(), Release::Kept, "a running callback holds a reference"),
            }
        }
        fn failed(&self, l: &Listener<Self>, cb: Then, e: &io::Error, _: u8) {
            self.events.borrow_mut().push(format!("errcb({})", e.raw_os_error().unwrap_or(0)));
            if let Then::Free = cb {
                assert_eq!(l.free(), Release::Kept);
            }
        }
        fn unhandled_error(&self, fd: RawFd, e: &io::Error) {
            self.events.borrow_mut().push(format!("warn({fd},{})", e.raw_os_error().unwrap_or(0)));
        }
    }

    fn peer() -> SockAddr {
        SockAddr { len: 16, ..SockAddr::empty() }
    }

    fn listener(flags: u32, cb: Option<Then>, accepts: Vec<io::Result<(RawFd, SockAddr)>>) -> Listener<FakeHost> {
        let host = FakeHost::default();
        host.sockets.accepts.borrow_mut().extend(accepts);
        let l = Listener::new(host, 3, flags, -1, cb, 7).unwrap();
        l.start();
        l
    }

    fn events(l: &Listener<FakeHost>) -> Vec<String> {
        l.host.events.borrow().clone()
    }

    #[test]
    fn negative_backlog_listens_with_128_and_zero_does_not_listen() {
        let l = listener(0, Some(Then::Nothing), vec![]);
        assert_eq!(*l.host.sockets.log.borrow(), ["listen(3,128)"]);
        let l = Listener::new(FakeHost::default(), 3, 0, 0, Some(Then::Nothing), 0).unwrap();
        assert!(l.host.sockets.log.borrow().is_empty());
    }

    #[test]
    fn accepts_until_eagain_with_the_flags_asked() {
        let l = listener(opt::CLOSE_ON_EXEC, Some(Then::Nothing), vec![Ok((20, peer())), Ok((21, peer()))]);
        assert_eq!(l.on_readable(), Release::Kept);
        assert_eq!(events(&l), ["add", "cb(20,7)", "cb(21,7)"]);
        let log = l.host.sockets.log.borrow();
        assert_eq!(log[1..], ["accept(3,true,true)", "accept(3,true,true)", "accept(3,true,true)"]);
        drop(log);
        let l = listener(opt::LEAVE_SOCKETS_BLOCKING, Some(Then::Nothing), vec![]);
        let _ = l.on_readable();
        assert_eq!(l.host.sockets.log.borrow()[1], "accept(3,false,false)");
    }

    #[test]
    fn disabled_flag_and_missing_callback_mean_not_watched() {
        let l = listener(opt::DISABLED, Some(Then::Nothing), vec![]);
        assert!(events(&l).is_empty());
        let l = listener(0, None, vec![]);
        assert!(events(&l).is_empty() && l.is_enabled());
        l.set_accept_cb(Some(Then::Nothing), 1);
        assert_eq!(events(&l), ["add"]);
    }

    #[test]
    fn callback_disabling_stops_the_loop() {
        // THREADSAFE too: its lock is not held while the callback runs (re-locking it there would deadlock).
        for flags in [0, opt::THREADSAFE] {
            let l = listener(flags, Some(Then::Disable), vec![Ok((20, peer())), Ok((21, peer()))]);
            assert_eq!(l.on_readable(), Release::Kept);
            assert_eq!(events(&l), ["add", "cb(20,7)", "del"]);
        }
    }

    #[test]
    fn free_inside_callback_destroys_after_it_returns() {
        for flags in [opt::CLOSE_ON_FREE, opt::CLOSE_ON_FREE | opt::THREADSAFE] {
            let l = listener(flags, Some(Then::Free), vec![Ok((20, peer())), Ok((21, peer()))]);
            assert_eq!(l.on_readable(), Release::Destroyed);
            assert_eq!(events(&l), ["add", "cb(20,7)", "del", "retire"]);
            assert_eq!(l.host.sockets.log.borrow().last().map(String::as_str), Some("close(3)"));
        }
    }

    #[test]
    fn free_outside_callbacks_destroys_and_keeps_the_socket_without_close_on_free() {
        let l = listener(0, Some(Then::Nothing), vec![]);
        assert_eq!(l.free(), Release::Destroyed);
        assert_eq!(events(&l), ["add", "del", "retire"]);
        assert!(!l.host.sockets.log.borrow().iter().any(|c| c.starts_with("close")));
    }

    #[test]
    fn addressless_connections_are_closed_and_skipped() {
        let l = listener(0, Some(Then::Nothing), vec![Ok((20, SockAddr::empty())), Ok((21, peer()))]);
        let _ = l.on_readable();
        assert_eq!(events(&l), ["add", "cb(21,7)"]);
        assert!(l.host.sockets.log.borrow().contains(&"close(20)".to_string()));
    }

    #[test]
    fn errors_other_than_retriable_go_to_the_error_callback_or_the_log() {
        for quiet in [libc::EINTR, libc::ECONNABORTED, libc::EAGAIN] {
            let l = listener(0, Some(Then::Nothing), vec![Err(io::Error::from_raw_os_error(quiet))]);
            l.set_error_cb(Some(Then::Nothing));
            let _ = l.on_readable();
            assert_eq!(events(&l), ["add"], "errno {quiet}");
        }
        let l = listener(0, Some(Then::Nothing), vec![Err(io::Error::from_raw_os_error(libc::EMFILE))]);
        let _ = l.on_readable();
        assert_eq!(events(&l), ["add", "warn(3,24)"]);
        let l = listener(opt::THREADSAFE, Some(Then::Nothing), vec![Err(io::Error::from_raw_os_error(libc::EMFILE))]);
        l.set_error_cb(Some(Then::Free));
        assert_eq!(l.on_readable(), Release::Destroyed);
        assert_eq!(events(&l), ["add", "errcb(24)", "del", "retire"]);
    }

    #[test]
    fn bind_socket_sets_options_in_order_and_closes_on_failure() {
        let s = FakeSockets::default();
        let mut addr = SockAddr { len: 16, ..SockAddr::empty() };
        addr.bytes[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        let all = opt::REUSEABLE | opt::REUSEABLE_PORT | opt::DEFERRED_ACCEPT | opt::BIND_IPV6ONLY;
        assert_eq!(bind_socket(&s, all | opt::CLOSE_ON_EXEC, -1, Some(&addr)).unwrap(), 10);
        assert_eq!(
            *s.log.borrow(),
            [
                format!("socket({},true)", libc::AF_INET),
                "opt(10,KeepAlive)".into(),
                "opt(10,ReuseAddr)".into(),
                "opt(10,ReusePort)".into(),
                "opt(10,DeferAccept)".into(),
                "opt(10,V6Only)".into(),
                "bind(10,16)".into(),
            ]
        );
        let s = FakeSockets { fail_option: Some(SockOpt::ReuseAddr), ..Default::default() };
        assert!(bind_socket(&s, opt::REUSEABLE, 5, Some(&addr)).is_err());
        assert_eq!(s.log.borrow().last().map(String::as_str), Some("close(10)"));
        let s = FakeSockets::default();
        assert!(bind_socket(&s, 0, 0, Some(&addr)).is_err());
        assert!(s.log.borrow().is_empty(), "backlog 0 is refused before any system call");
    }
}
