//! IX's native API for C (`include/ix.h`): ports, queues and the batched `ix_run_io`.
//!
//! The structs here are the ABI; the Rust dataplane sees only `dataplane::api` values converted from them in
//! `ix_run_io`. This is the door that stays when the dataplane moves behind a protection boundary.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};
use std::io::IoSlice;

use dataplane::api::{encode_result, AppBuf, Command, Endpoint, Event, Ret};
use dataplane::wire::Ipv4Address;

use crate::runtime::{Port, Queue};

/// Command: start receiving UDP on `port`.
pub const IX_CMD_UDP_BIND: u32 = 1;
/// Command: stop receiving UDP on `port`.
pub const IX_CMD_UDP_UNBIND: u32 = 2;
/// Command: send a datagram from `port` to `dst`, payload `iov[0..iovcnt]`; `cookie` comes back in `IX_EV_UDP_SENT`.
pub const IX_CMD_UDP_SENDV: u32 = 3;
/// Command: give back the buffer `data` lent by an `IX_EV_UDP_RECV` event.
pub const IX_CMD_RECV_DONE: u32 = 4;
/// Command: accept TCP connections on `port`, at most `backlog` waiting.
pub const IX_CMD_TCP_LISTEN: u32 = 10;
/// Command: stop accepting on `port`.
pub const IX_CMD_TCP_UNLISTEN: u32 = 11;
/// Command: connect to `dst`; `ret` is the new handle; `IX_EV_TCP_CONNECTED` (with `cookie`) follows.
pub const IX_CMD_TCP_CONNECT: u32 = 12;
/// Command: accept the knocked connection `handle`, naming its `cookie`.
pub const IX_CMD_TCP_ACCEPT: u32 = 13;
/// Command: refuse the knocked connection `handle` (RST).
pub const IX_CMD_TCP_REJECT: u32 = 14;
/// Command: send `iov[0..iovcnt]` on `handle`; `ret` is the bytes the window took. Zero-copy: the bytes must stay
/// unchanged until `IX_EV_TCP_SENT` events acknowledge them (or `IX_EV_TCP_DEAD`).
pub const IX_CMD_TCP_SENDV: u32 = 15;
/// Command: give back `len` bytes of data received on `handle` (oldest first); reopens the window.
pub const IX_CMD_TCP_RECV_DONE: u32 = 16;
/// Command: close our direction of `handle` (FIN); the handle stays valid until `IX_EV_TCP_DEAD`.
pub const IX_CMD_TCP_CLOSE: u32 = 17;
/// Command: reset `handle` now; no more events come for it.
pub const IX_CMD_TCP_ABORT: u32 = 18;
/// Command: keepalive probes on `handle` on (`len` = 1) or off (`len` = 0).
pub const IX_CMD_TCP_KEEPALIVE: u32 = 19;

/// Event: a datagram arrived: `data`/`len` (lent, read-only), from `src`, to local `port`.
pub const IX_EV_UDP_RECV: u32 = 1;
/// Event: the send with `cookie` completed; its buffers may be reused.
pub const IX_EV_UDP_SENT: u32 = 2;
/// Event: a connection to a listening `port` from `src` is up as `handle`: accept or reject it.
pub const IX_EV_TCP_KNOCK: u32 = 10;
/// Event: the connect with `cookie` finished: `ret` is 0 or `IX_RET_REFUSED`/`IX_RET_TIMEDOUT`/...
pub const IX_EV_TCP_CONNECTED: u32 = 11;
/// Event: `len` bytes at `data` arrived on `handle`, lent until `IX_CMD_TCP_RECV_DONE`.
pub const IX_EV_TCP_RECV: u32 = 12;
/// Event: `acked` more bytes were acknowledged on `handle`; `window` bytes may be sent now.
pub const IX_EV_TCP_SENT: u32 = 13;
/// Event: the peer closed its direction of `handle` (end of data).
pub const IX_EV_TCP_EOF: u32 = 14;
/// Event: `handle` is over (`reason`: `IX_DEAD_*`); its buffers are released and the handle is invalid.
pub const IX_EV_TCP_DEAD: u32 = 15;

/// Dead reason: both sides closed.
pub const IX_DEAD_CLOSED: u16 = 0;
/// Dead reason: the peer reset the connection.
pub const IX_DEAD_RESET: u16 = 1;
/// Dead reason: the peer stopped answering.
pub const IX_DEAD_TIMEDOUT: u16 = 2;
/// Dead reason: refused.
pub const IX_DEAD_REFUSED: u16 = 3;
/// Dead reason: no route.
pub const IX_DEAD_UNREACHABLE: u16 = 4;

/// Done.
pub const IX_RET_OK: i32 = 0;
/// The buffer, handle or port named is not one the app holds.
pub const IX_RET_BADH: i32 = -1;
/// Back-pressure: retry after the next `ix_run_io`.
pub const IX_RET_AGAIN: i32 = -2;
/// Malformed argument (unknown op, zero port, NULL vector, too many iovecs).
pub const IX_RET_INVAL: i32 = -3;
/// No buffer free.
pub const IX_RET_NOMEM: i32 = -4;
/// Datagram larger than one frame.
pub const IX_RET_TOOBIG: i32 = -5;
/// No route to the destination.
pub const IX_RET_UNREACH: i32 = -6;
/// Not supported.
pub const IX_RET_NOTSUP: i32 = -7;
/// Port already bound.
pub const IX_RET_ADDRINUSE: i32 = -8;
/// The connection is not in a state that allows this.
pub const IX_RET_NOTCONN: i32 = -9;
/// The peer never answered.
pub const IX_RET_TIMEDOUT: i32 = -10;
/// The peer refused.
pub const IX_RET_REFUSED: i32 = -11;

/// Most iovecs in one `IX_CMD_UDP_SENDV`.
pub const IX_MAX_IOV: u32 = 64;
/// Most events one `ix_run_io` returns (larger `max_events` are clamped).
pub const IX_MAX_EVENTS: u32 = 1024;

/// An IPv4 endpoint; `addr` and `port` in host byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_endpoint {
    /// Address, host order (`ix_ipv4(198,18,0,1)`).
    pub addr: u32,
    /// Port, host order.
    pub port: u16,
    /// Zero.
    pub _pad: u16,
}

/// A buffer of a scatter-gather vector; same layout as `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_iovec {
    /// First byte.
    pub base: *const c_void,
    /// Length.
    pub len: usize,
}

/// One batched command. Build it with the `ix_cmd_*` helpers; `ret` is written by `ix_run_io`: a value (a handle,
/// a byte count, 0) or a negative `IX_RET_*`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_cmd {
    /// `IX_CMD_*`.
    pub op: u32,
    /// Local port (bind, unbind, send source, listen).
    pub port: u16,
    /// Zero.
    pub _pad: u16,
    /// Result: >= 0 value, < 0 `IX_RET_*`.
    pub ret: i64,
    /// App's value (UDP send, TCP connect and accept).
    pub cookie: u64,
    /// TCP connection handle.
    pub handle: u64,
    /// Destination (UDP send, TCP connect).
    pub dst: ix_endpoint,
    /// Number of entries in `iov`.
    pub iovcnt: u32,
    /// Listen backlog.
    pub backlog: u32,
    /// Payload vector (UDP and TCP send).
    pub iov: *const ix_iovec,
    /// Buffer given back by `IX_CMD_RECV_DONE`.
    pub data: *const c_void,
    /// Byte count (`IX_CMD_TCP_RECV_DONE`).
    pub len: u64,
}

/// One event condition.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_event {
    /// `IX_EV_*`.
    pub kind: u32,
    /// Payload length (`IX_EV_UDP_RECV`, `IX_EV_TCP_RECV`).
    pub len: u32,
    /// Cookie of the send (UDP) or connection (TCP).
    pub cookie: u64,
    /// TCP connection handle.
    pub handle: u64,
    /// Payload, lent until given back.
    pub data: *const c_void,
    /// The peer.
    pub src: ix_endpoint,
    /// Local port (`IX_EV_UDP_RECV`, `IX_EV_TCP_KNOCK`, `IX_EV_TCP_CONNECTED`).
    pub port: u16,
    /// `IX_DEAD_*` (`IX_EV_TCP_DEAD`).
    pub reason: u16,
    /// Outcome (`IX_EV_TCP_CONNECTED`): 0 or `IX_RET_*`.
    pub ret: i32,
    /// Newly acknowledged bytes (`IX_EV_TCP_SENT`).
    pub acked: u64,
    /// Bytes `IX_CMD_TCP_SENDV` would take now (`IX_EV_TCP_SENT`).
    pub window: u64,
}

const _: () = assert!(std::mem::size_of::<ix_iovec>() == std::mem::size_of::<libc::iovec>());
const _: () = assert!(std::mem::size_of::<ix_iovec>() == std::mem::size_of::<IoSlice<'static>>());
const _: () = assert!(std::mem::size_of::<ix_cmd>() == 72);
const _: () = assert!(std::mem::size_of::<ix_event>() == 64);
const _: () = assert!(std::mem::size_of::<ix_iovec>() == std::mem::size_of::<AppBuf>());

/// An interface owned by the dataplane (all its queues). Opaque.
pub struct ix_port(Port);
/// One queue's dataplane, used by one thread at a time. Opaque.
pub struct ix_queue(Queue);

fn set_error(msg: String) {
    crate::runtime::set_last_error(msg);
}

/// The message of the last failed libix call on this thread, or NULL. Valid until the next failing call.
///
/// # Safety
/// None: takes no arguments.
#[no_mangle]
pub extern "C" fn ix_last_error() -> *const c_char {
    crate::runtime::last_error_ptr()
}

/// Opens the interface named by the `IX_*` environment (DESIGN.md §6) and attaches the dataplane to it.
/// Returns NULL with `errno` set and `ix_last_error()` explaining (bad config, no interface, no privileges).
///
/// # Safety
/// None: takes no arguments.
#[no_mangle]
pub extern "C" fn ix_port_open_env() -> *mut ix_port {
    super::guard(std::ptr::null_mut(), || {
        crate::runtime::init_logging();
        match Port::open_env() {
            Ok(p) => Box::into_raw(Box::new(ix_port(p))),
            Err(e) => {
                crate::runtime::set_errno(e.errno());
                set_error(e.to_string());
                std::ptr::null_mut()
            }
        }
    })
}

/// Number of queues of `port`, or -1 for NULL.
///
/// # Safety
/// `port` is NULL or a live pointer from `ix_port_open_env`.
#[no_mangle]
pub unsafe extern "C" fn ix_port_queues(port: *const ix_port) -> c_int {
    // SAFETY: the caller guarantees `port` is NULL or live.
    match unsafe { port.as_ref() } {
        Some(p) => p.0.queues() as c_int,
        None => -1,
    }
}

/// Closes `port`. Its queues must be closed first (they hold a reference; the interface is released when the
/// last of them closes).
///
/// # Safety
/// `port` is NULL or a live pointer from `ix_port_open_env`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ix_port_close(port: *mut ix_port) {
    if !port.is_null() {
        // SAFETY: the caller hands back ownership of a pointer made by Box::into_raw in ix_port_open_env.
        super::guard((), || drop(unsafe { Box::from_raw(port) }));
    }
}

/// Opens queue `queue_id` of `port` for the calling thread. NULL with `ix_last_error()` on failure.
///
/// # Safety
/// `port` is NULL or a live pointer from `ix_port_open_env`.
#[no_mangle]
pub unsafe extern "C" fn ix_queue_open(port: *mut ix_port, queue_id: u32) -> *mut ix_queue {
    // SAFETY: the caller guarantees `port` is NULL or live.
    let Some(port) = (unsafe { port.as_ref() }) else {
        set_error("ix_queue_open: NULL port".into());
        crate::runtime::set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    };
    super::guard(std::ptr::null_mut(), || match port.0.open_queue(queue_id) {
        Ok(q) => Box::into_raw(Box::new(ix_queue(q))),
        Err(e) => {
            crate::runtime::set_errno(e.errno());
            set_error(e.to_string());
            std::ptr::null_mut()
        }
    })
}

/// Closes a queue; buffers it lent become invalid.
///
/// # Safety
/// `q` is NULL or a live pointer from `ix_queue_open`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ix_queue_close(q: *mut ix_queue) {
    if !q.is_null() {
        // SAFETY: the caller hands back ownership of a pointer made by Box::into_raw in ix_queue_open.
        super::guard((), || drop(unsafe { Box::from_raw(q) }));
    }
}

/// The fd that polls readable when the queue has frames (for an app's own event loop), or -1 (EINVAL for a NULL
/// queue; the errno of the failure when the fd cannot be made). With several AF_XDP queues on veth, frames
/// another queue received for this one's connections make it readable too. Sleep on it between `ix_run_io`
/// calls for at most `ix_queue_timeout_us`: the dataplane's timers run only inside `ix_run_io`.
///
/// # Safety
/// `q` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ix_queue_fd(q: *const ix_queue) -> c_int {
    // SAFETY: the caller guarantees `q` is NULL or live.
    let Some(q) = (unsafe { q.as_ref() }) else {
        crate::runtime::set_errno(libc::EINVAL);
        return -1;
    };
    match q.0.app_poll_fd() {
        Ok(fd) => fd.unwrap_or(-1),
        Err(e) => {
            set_error(format!("ix_queue_fd: {e}"));
            crate::runtime::set_errno(e.raw_os_error().unwrap_or(libc::EIO));
            -1
        }
    }
}

/// How long the app may sleep on `ix_queue_fd` before it must call `ix_run_io` again for the dataplane's timers
/// (retransmissions, delayed ACKs, ARP): microseconds, 0 when it should call at once, -1 when no timer is pending.
/// A NULL queue gives 0 and errno EINVAL (the following `ix_run_io` reports it too).
///
/// # Safety
/// `q` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ix_queue_timeout_us(q: *const ix_queue) -> i64 {
    // SAFETY: the caller guarantees `q` is NULL or live.
    let Some(q) = (unsafe { q.as_ref() }) else {
        crate::runtime::set_errno(libc::EINVAL);
        return 0;
    };
    q.0.timeout().map_or(-1, |d| d.total_micros().min(i64::MAX as u64) as i64)
}

/// One run-to-completion cycle: executes `cmds[0..ncmds]` in order (each gets `ret`), then receives at most B
/// frames and writes up to `max_events` events. When no event is ready it waits up to `timeout_us`
/// microseconds (0: never, -1: forever), spinning briefly before sleeping on the queue. Returns the number of
/// events, or -1 with errno (EINVAL for a NULL queue or NULL arrays with non-zero counts).
///
/// # Safety
/// `q` is live and used by this thread only; `cmds` points to `ncmds` commands and `events` to `max_events`
/// writable events (either may be NULL when its count is 0); every iovec a send names is readable for its length
/// until this call returns.
#[no_mangle]
pub unsafe extern "C" fn ix_run_io(
    q: *mut ix_queue,
    cmds: *mut ix_cmd,
    ncmds: u32,
    events: *mut ix_event,
    max_events: u32,
    timeout_us: i64,
) -> c_int {
    // SAFETY: the caller guarantees `q` is NULL or live and not shared with another thread.
    let Some(q) = (unsafe { q.as_mut() }) else {
        return einval();
    };
    if (cmds.is_null() && ncmds > 0) || (events.is_null() && max_events > 0) {
        return einval();
    }
    let cmds: &mut [ix_cmd] = if ncmds == 0 {
        &mut []
    } else {
        // SAFETY: non-NULL (checked) and the caller guarantees `ncmds` valid commands.
        unsafe { std::slice::from_raw_parts_mut(cmds, ncmds as usize) }
    };
    let out: &mut [ix_event] = if max_events == 0 {
        &mut []
    } else {
        // SAFETY: non-NULL (checked) and the caller guarantees `max_events` writable events.
        unsafe { std::slice::from_raw_parts_mut(events, max_events.min(IX_MAX_EVENTS) as usize) }
    };
    super::guard(-1, || {
        let n = {
            let cmds: &[ix_cmd] = cmds;
            q.0.run_io(cmds.len(), |i| convert(&cmds[i]), out.len(), timeout_us)
        };
        for (c, r) in cmds.iter_mut().zip(q.0.rets()) {
            c.ret = encode_result(*r);
        }
        let evs = q.0.events();
        for (dst, ev) in out.iter_mut().zip(evs) {
            *dst = export_event(ev);
        }
        n as c_int
    })
}

fn einval() -> c_int {
    crate::runtime::set_errno(libc::EINVAL);
    -1
}

fn iovecs(c: &ix_cmd) -> Result<&[ix_iovec], Ret> {
    if c.iovcnt > IX_MAX_IOV || (c.iov.is_null() && c.iovcnt > 0) {
        return Err(Ret::Invalid);
    }
    let iov: &[ix_iovec] = if c.iovcnt == 0 {
        &[]
    } else {
        // SAFETY: non-NULL (checked); the caller of ix_run_io guarantees `iovcnt` entries.
        unsafe { std::slice::from_raw_parts(c.iov, c.iovcnt as usize) }
    };
    if iov.iter().any(|v| v.base.is_null() && v.len > 0) {
        return Err(Ret::Invalid);
    }
    Ok(iov)
}

/// Converts one C command. Iovec arrays are reinterpreted in place (same layouts, asserted above).
fn convert(c: &ix_cmd) -> Result<Command<'_>, Ret> {
    Ok(match c.op {
        IX_CMD_UDP_BIND => Command::UdpBind { port: c.port },
        IX_CMD_UDP_UNBIND => Command::UdpUnbind { port: c.port },
        IX_CMD_UDP_SENDV => {
            let iov = iovecs(c)?;
            // SAFETY: ix_iovec and IoSlice both have the layout of `struct iovec` (IoSlice is
            // repr(transparent) over it on Unix; sizes asserted above), and the caller guarantees each buffer
            // is readable for its length while ix_run_io runs, which outlives the borrow.
            let payload = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), iov.len()) };
            Command::UdpSend {
                src_port: c.port,
                dst: Endpoint { addr: Ipv4Address::from_u32(c.dst.addr), port: c.dst.port },
                payload,
                cookie: c.cookie,
            }
        }
        IX_CMD_RECV_DONE => Command::RecvDone { data: c.data.cast() },
        IX_CMD_TCP_LISTEN => Command::TcpListen { port: c.port, backlog: if c.backlog == 0 { 128 } else { c.backlog } },
        IX_CMD_TCP_UNLISTEN => Command::TcpUnlisten { port: c.port },
        IX_CMD_TCP_CONNECT => Command::TcpConnect {
            dst: Endpoint { addr: Ipv4Address::from_u32(c.dst.addr), port: c.dst.port },
            cookie: c.cookie,
        },
        IX_CMD_TCP_ACCEPT => Command::TcpAccept { handle: c.handle, cookie: c.cookie },
        IX_CMD_TCP_REJECT => Command::TcpReject { handle: c.handle },
        IX_CMD_TCP_SENDV => {
            let iov = iovecs(c)?;
            // SAFETY: AppBuf is repr(C) {ptr, len}, the layout of ix_iovec (sizes asserted above). The native
            // API's contract for IX_CMD_TCP_SENDV (ix.h) is AppBuf::new's: the bytes stay readable and unchanged
            // until TCP_SENT events acknowledge them or the connection is dead.
            let bufs = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<AppBuf>(), iov.len()) };
            Command::TcpSendv { handle: c.handle, bufs }
        }
        IX_CMD_TCP_RECV_DONE => Command::TcpRecvDone { handle: c.handle, len: c.len },
        IX_CMD_TCP_CLOSE => Command::TcpClose { handle: c.handle },
        IX_CMD_TCP_ABORT => Command::TcpAbort { handle: c.handle },
        IX_CMD_TCP_KEEPALIVE => Command::TcpKeepalive { handle: c.handle, enable: c.len != 0 },
        _ => return Err(Ret::Invalid),
    })
}

fn export_event(ev: &Event) -> ix_event {
    let mut out = ix_event {
        kind: 0,
        len: 0,
        cookie: 0,
        handle: 0,
        data: std::ptr::null(),
        src: ix_endpoint { addr: 0, port: 0, _pad: 0 },
        port: 0,
        reason: 0,
        ret: 0,
        acked: 0,
        window: 0,
    };
    let ep = |e: Endpoint| ix_endpoint { addr: e.addr.to_u32(), port: e.port, _pad: 0 };
    match *ev {
        Event::UdpRecv { buf, src, dst_port } => {
            out.kind = IX_EV_UDP_RECV;
            out.len = buf.len;
            out.data = buf.ptr.cast();
            out.src = ep(src);
            out.port = dst_port;
        }
        Event::UdpSent { cookie } => {
            out.kind = IX_EV_UDP_SENT;
            out.cookie = cookie;
        }
        Event::TcpKnock { handle, remote, local_port } => {
            out.kind = IX_EV_TCP_KNOCK;
            out.handle = handle;
            out.src = ep(remote);
            out.port = local_port;
        }
        Event::TcpConnected { cookie, handle, ret, local_port } => {
            out.kind = IX_EV_TCP_CONNECTED;
            out.cookie = cookie;
            out.handle = handle;
            out.port = local_port;
            out.ret = if ret == Ret::Ok { 0 } else { ret as i32 };
        }
        Event::TcpRecv { cookie, handle, data, len } => {
            out.kind = IX_EV_TCP_RECV;
            out.cookie = cookie;
            out.handle = handle;
            out.data = data.cast();
            out.len = len;
        }
        Event::TcpSent { cookie, handle, acked, window } => {
            out.kind = IX_EV_TCP_SENT;
            out.cookie = cookie;
            out.handle = handle;
            out.acked = acked;
            out.window = window;
        }
        Event::TcpEof { cookie, handle } => {
            out.kind = IX_EV_TCP_EOF;
            out.cookie = cookie;
            out.handle = handle;
        }
        Event::TcpDead { cookie, handle, reason } => {
            out.kind = IX_EV_TCP_DEAD;
            out.cookie = cookie;
            out.handle = handle;
            out.reason = reason as u16;
        }
    }
    out
}
