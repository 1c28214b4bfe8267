//! IX's native API for C (`include/ix.h`): ports, queues and the batched `ix_run_io`.
//!
//! The structs here are the ABI; the Rust dataplane sees only `dataplane::api` values converted from them in
//! `ix_run_io`. This is the door that stays when the dataplane moves behind a protection boundary.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};
use std::io::IoSlice;

use dataplane::api::{Command, Endpoint, Event, Ret};
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

/// Event: a datagram arrived: `data`/`len` (lent, read-only), from `src`, to local `port`.
pub const IX_EV_UDP_RECV: u32 = 1;
/// Event: the send with `cookie` completed; its buffers may be reused.
pub const IX_EV_UDP_SENT: u32 = 2;

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

/// One batched command. Build it with the `ix_cmd_*` helpers; `ret` is written by `ix_run_io`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_cmd {
    /// `IX_CMD_*`.
    pub op: u32,
    /// Result, `IX_RET_*`.
    pub ret: i32,
    /// App's value for `IX_CMD_UDP_SENDV`.
    pub cookie: u64,
    /// Destination of a send.
    pub dst: ix_endpoint,
    /// Local port (bind, unbind, send source).
    pub port: u16,
    /// Zero.
    pub _pad: u16,
    /// Number of entries in `iov`.
    pub iovcnt: u32,
    /// Payload vector of a send.
    pub iov: *const ix_iovec,
    /// Buffer given back by `IX_CMD_RECV_DONE`.
    pub data: *const c_void,
}

/// One event condition.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ix_event {
    /// `IX_EV_*`.
    pub kind: u32,
    /// Payload length (`IX_EV_UDP_RECV`).
    pub len: u32,
    /// Cookie (`IX_EV_UDP_SENT`).
    pub cookie: u64,
    /// Payload, lent until `IX_CMD_RECV_DONE` (`IX_EV_UDP_RECV`).
    pub data: *const c_void,
    /// Sender (`IX_EV_UDP_RECV`).
    pub src: ix_endpoint,
    /// Local port (`IX_EV_UDP_RECV`).
    pub port: u16,
    /// Zero.
    pub _pad: u16,
}

const _: () = assert!(std::mem::size_of::<ix_iovec>() == std::mem::size_of::<libc::iovec>());
const _: () = assert!(std::mem::size_of::<ix_iovec>() == std::mem::size_of::<IoSlice<'static>>());
const _: () = assert!(std::mem::size_of::<ix_cmd>() == 48);
const _: () = assert!(std::mem::size_of::<ix_event>() == 40);

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

/// The fd that polls readable when the queue has frames (for an app's own event loop), or -1.
///
/// # Safety
/// `q` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ix_queue_fd(q: *const ix_queue) -> c_int {
    // SAFETY: the caller guarantees `q` is NULL or live.
    unsafe { q.as_ref() }.and_then(|q| q.0.poll_fd()).unwrap_or(-1)
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
            c.ret = *r as i32;
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

/// Converts one C command. The iovec array is reinterpreted as `IoSlice`s (same layout, asserted above).
fn convert(c: &ix_cmd) -> Result<Command<'_>, Ret> {
    Ok(match c.op {
        IX_CMD_UDP_BIND => Command::UdpBind { port: c.port },
        IX_CMD_UDP_UNBIND => Command::UdpUnbind { port: c.port },
        IX_CMD_UDP_SENDV => {
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
        _ => return Err(Ret::Invalid),
    })
}

fn export_event(ev: &Event) -> ix_event {
    let mut out = ix_event {
        kind: 0,
        len: 0,
        cookie: 0,
        data: std::ptr::null(),
        src: ix_endpoint { addr: 0, port: 0, _pad: 0 },
        port: 0,
        _pad: 0,
    };
    match *ev {
        Event::UdpRecv { buf, src, dst_port } => {
            out.kind = IX_EV_UDP_RECV;
            out.len = buf.len;
            out.data = buf.ptr.cast();
            out.src = ix_endpoint { addr: src.addr.to_u32(), port: src.port, _pad: 0 };
            out.port = dst_port;
        }
        Event::UdpSent { cookie } => {
            out.kind = IX_EV_UDP_SENT;
            out.cookie = cookie;
        }
    }
    out
}
