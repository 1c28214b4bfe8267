//! `struct event` as C programs see it: libevent 2.1's 128-byte layout (event_struct.h, x86-64), and [`EvPtr`], the
//! one handle through which the engine reads and writes an event living in the application's memory.
//!
//! Public fields keep their libevent meaning, because programs read them through macros (`EVENT_FD`,
//! `event_initialized` in 1.4 code, `ev->ev_arg`, ...): `ev_flags` (EVLIST_* bits), `ev_pri`, the callback and its
//! argument, `ev_fd`, `ev_base`, `ev_events`, `ev_res`, `ev_timeout` (absolute deadline, monotonic clock). The
//! private areas hold our own bookkeeping: the active-queue links (offset 0, where libevent keeps its own), the
//! queue and due signal calls (offset 72), the timer-heap index (offset 40, where libevent keeps `min_heap_idx`)
//! and the EV_PERSIST interval (offset 88, libevent's `ev_io_timeout`).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_short, c_void};
use std::mem::{offset_of, size_of};
use std::ptr::{addr_of, addr_of_mut, NonNull};

use super::time::Usec;

/// `void (*)(evutil_socket_t fd, short what, void *arg)`: an event's callback.
pub type EventCb = unsafe extern "C" fn(c_int, c_short, *mut c_void);
/// `void (*)(struct event *, void *)`: a finalizer (`event_finalize`).
pub type FinalizeCb = unsafe extern "C" fn(*mut RawEvent, *mut c_void);

/// Wait for a timeout.
pub const EV_TIMEOUT: i16 = 0x01;
/// Wait for the fd to be readable.
pub const EV_READ: i16 = 0x02;
/// Wait for the fd to be writable.
pub const EV_WRITE: i16 = 0x04;
/// Wait for a POSIX signal (the fd is the signal number).
pub const EV_SIGNAL: i16 = 0x08;
/// Stay pending after the callback runs.
pub const EV_PERSIST: i16 = 0x10;
/// Edge-triggered.
pub const EV_ET: i16 = 0x20;
/// `event_del` does not block on this event's running callback in another thread (finalizers instead).
pub const EV_FINALIZE: i16 = 0x40;
/// Wait for the peer to close its direction (EPOLLRDHUP).
pub const EV_CLOSED: i16 = 0x80;
/// The I/O conditions.
pub const EV_IO: i16 = EV_READ | EV_WRITE | EV_CLOSED;

/// In the timer heap.
pub const EVLIST_TIMEOUT: i16 = 0x01;
/// Added (fd or signal map).
pub const EVLIST_INSERTED: i16 = 0x02;
/// Historical (signal events in 1.4); never set by 2.1.
pub const EVLIST_SIGNAL: i16 = 0x04;
/// In an active queue.
pub const EVLIST_ACTIVE: i16 = 0x08;
/// Internal: not counted, not freed with the base.
pub const EVLIST_INTERNAL: i16 = 0x10;
/// Active on the next loop iteration.
pub const EVLIST_ACTIVE_LATER: i16 = 0x20;
/// Being finalized: its finalizer is queued.
pub const EVLIST_FINALIZING: i16 = 0x40;
/// Assigned (`event_assign`/`event_new`).
pub const EVLIST_INIT: i16 = 0x80;
/// All the bits libevent defines.
pub const EVLIST_ALL: i16 = 0xff;

/// `ev_closure`: a plain event.
pub const CLOSURE_EVENT: u8 = 0;
/// `ev_closure`: a signal event (callback repeated `ncalls` times).
pub const CLOSURE_SIGNAL: u8 = 1;
/// `ev_closure`: a persistent non-signal event (timeout rescheduled).
pub const CLOSURE_PERSIST: u8 = 2;
/// `ev_closure`: a deferred callback (libevent's EV_CLOSURE_CB_SELF); run like a plain event.
pub const CLOSURE_CB_SELF: u8 = 3;
/// `ev_closure`: finalizer pending.
pub const CLOSURE_FINALIZE: u8 = 5;
/// `ev_closure`: finalizer pending, then free the event's memory.
pub const CLOSURE_FINALIZE_FREE: u8 = 6;

/// `struct timeval` on x86-64 Linux.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// The callback slot: libevent's `evcb_cb_union`.
#[repr(C)]
#[derive(Clone, Copy)]
union CbSlot {
    cb: Option<EventCb>,
    fin: Option<FinalizeCb>,
}

/// libevent 2.1's `struct event` (event_struct.h), field for field at the same offsets.
#[repr(C)]
pub struct RawEvent {
    /// `ev_evcallback.evcb_active_next` (16 bytes, private in libevent, its active-queue link): ours, while the
    /// event is queued (EVLIST_ACTIVE or EVLIST_ACTIVE_LATER).
    active_next: *mut RawEvent,
    active_prev: *mut RawEvent,
    /// `ev_evcallback.evcb_flags`: EVLIST_* bits.
    flags: i16,
    /// `ev_evcallback.evcb_pri`.
    pri: u8,
    /// `ev_evcallback.evcb_closure`.
    closure: u8,
    _pad0: u32,
    /// `ev_evcallback.evcb_cb_union`.
    cb: CbSlot,
    /// `ev_evcallback.evcb_arg`.
    arg: *mut c_void,
    /// `ev_timeout_pos.min_heap_idx` (the union is 16 bytes).
    heap_idx: i32,
    _timeout_pos_rest: [u32; 3],
    /// `ev_fd`.
    fd: c_int,
    _pad1: u32,
    /// `ev_base`.
    base: *mut c_void,
    /// `ev_.ev_io.ev_io_next` / `ev_.ev_signal.ev_signal_next` (16 bytes, private in libevent): the queue a
    /// queued event is on, and how many times a signal event's callback is due.
    active_queue: u16,
    active_ncalls: i16,
    _list_rest: [u32; 3],
    /// `ev_.ev_io.ev_timeout`: the EV_PERSIST interval.
    io_timeout: Timeval,
    /// `ev_events`.
    events: i16,
    /// `ev_res`.
    res: i16,
    _pad2: u32,
    /// `ev_timeout`: the absolute deadline on the base's monotonic clock.
    timeout: Timeval,
}

const _: () = assert!(size_of::<RawEvent>() == 128);
const _: () = assert!(offset_of!(RawEvent, flags) == 16);
const _: () = assert!(offset_of!(RawEvent, pri) == 18);
const _: () = assert!(offset_of!(RawEvent, closure) == 19);
const _: () = assert!(offset_of!(RawEvent, cb) == 24);
const _: () = assert!(offset_of!(RawEvent, arg) == 32);
const _: () = assert!(offset_of!(RawEvent, heap_idx) == 40);
const _: () = assert!(offset_of!(RawEvent, fd) == 56);
const _: () = assert!(offset_of!(RawEvent, base) == 64);
const _: () = assert!(offset_of!(RawEvent, io_timeout) == 88);
const _: () = assert!(offset_of!(RawEvent, events) == 104);
const _: () = assert!(offset_of!(RawEvent, res) == 106);
const _: () = assert!(offset_of!(RawEvent, timeout) == 112);

impl RawEvent {
    /// An all-zero event (not initialized: `event_initialized` is false), as `calloc` would give.
    pub const fn zeroed() -> RawEvent {
        RawEvent {
            active_next: std::ptr::null_mut(),
            active_prev: std::ptr::null_mut(),
            flags: 0,
            pri: 0,
            closure: 0,
            _pad0: 0,
            cb: CbSlot { cb: None },
            arg: std::ptr::null_mut(),
            heap_idx: -1,
            _timeout_pos_rest: [0; 3],
            fd: -1,
            _pad1: 0,
            base: std::ptr::null_mut(),
            active_queue: 0,
            active_ncalls: 0,
            _list_rest: [0; 3],
            io_timeout: Timeval { tv_sec: 0, tv_usec: 0 },
            events: 0,
            res: 0,
            _pad2: 0,
            timeout: Timeval { tv_sec: 0, tv_usec: 0 },
        }
    }
}

impl std::fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEvent")
            .field("fd", &self.fd)
            .field("events", &self.events)
            .field("flags", &self.flags)
            .field("res", &self.res)
            .finish_non_exhaustive()
    }
}

/// A `struct event` in application memory that the engine may touch.
///
/// Creating one is the single promise the rest of the engine relies on (see [`EvPtr::new`]); every accessor reads or
/// writes one field through the raw pointer (no Rust reference to application memory is ever formed, so a C
/// callback writing the struct between two accesses is fine).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EvPtr(NonNull<RawEvent>);

// SAFETY: an EvPtr is an address; the memory behind it is only accessed under the owning base's lock or by the
// thread that owns the event (libevent's threading contract, which `EvPtr::new`'s callers accept).
unsafe impl Send for EvPtr {}
// SAFETY: as for Send: shared EvPtrs are only dereferenced under the base lock.
unsafe impl Sync for EvPtr {}

impl EvPtr {
    /// Wraps `p`.
    ///
    /// # Safety
    /// `p` must point to 128 bytes, aligned for `struct event`, that stay valid and at the same address for as long
    /// as the event is known to a base (assigned and pending, active or being finalized), and whose accesses from
    /// several threads are serialized by the base's lock: libevent's rules for `struct event`.
    pub unsafe fn new(p: *mut RawEvent) -> Option<EvPtr> {
        NonNull::new(p).map(EvPtr)
    }

    /// A fresh all-zero event that lives for the rest of the process (unit tests of the engine's structures).
    #[cfg(test)]
    pub fn leaked_for_test() -> EvPtr {
        let p = Box::into_raw(Box::new(RawEvent::zeroed()));
        // SAFETY: a leaked box: valid for the whole process, and each test uses its events from one thread.
        unsafe { EvPtr::new(p) }.expect("non-null")
    }

    /// The address, as C sees it.
    pub fn as_ptr(self) -> *mut RawEvent {
        self.0.as_ptr()
    }

    /// `ev_flags`.
    pub fn flags(self) -> i16 {
        // SAFETY: EvPtr::new's contract: the memory is valid and access is serialized.
        unsafe { addr_of!((*self.0.as_ptr()).flags).read() }
    }
    /// Sets `ev_flags`.
    pub fn set_flags(self, v: i16) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).flags).write(v) }
    }
    /// `ev_pri`.
    pub fn pri(self) -> u8 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).pri).read() }
    }
    /// Sets `ev_pri`.
    pub fn set_pri(self, v: u8) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).pri).write(v) }
    }
    /// `ev_closure`.
    pub fn closure(self) -> u8 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).closure).read() }
    }
    /// Sets `ev_closure`.
    pub fn set_closure(self, v: u8) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).closure).write(v) }
    }
    /// The callback (`ev_callback`); meaningless while the closure is a finalizer.
    pub fn callback(self) -> Option<EventCb> {
        // SAFETY: as in `flags`; both union members are nullable function pointers of the same size, so either
        // reading is a valid value (C stores through the same union).
        unsafe { addr_of!((*self.0.as_ptr()).cb).read().cb }
    }
    /// Sets the callback.
    pub fn set_callback(self, cb: Option<EventCb>) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).cb).write(CbSlot { cb }) }
    }
    /// The finalizer stored in the callback slot by `event_finalize`.
    pub fn finalizer(self) -> Option<FinalizeCb> {
        // SAFETY: as in `callback`.
        unsafe { addr_of!((*self.0.as_ptr()).cb).read().fin }
    }
    /// Stores a finalizer in the callback slot.
    pub fn set_finalizer(self, fin: Option<FinalizeCb>) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).cb).write(CbSlot { fin }) }
    }
    /// `ev_arg`.
    pub fn arg(self) -> *mut c_void {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).arg).read() }
    }
    /// Sets `ev_arg` (stored, not dereferenced).
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn set_arg(self, v: *mut c_void) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).arg).write(v) }
    }
    /// `ev_fd`.
    pub fn fd(self) -> c_int {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).fd).read() }
    }
    /// Sets `ev_fd`.
    pub fn set_fd(self, v: c_int) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).fd).write(v) }
    }
    /// `ev_base` (opaque here: the C handle of the base).
    pub fn base(self) -> *mut c_void {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).base).read() }
    }
    /// Sets `ev_base` (stored, not dereferenced).
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn set_base(self, v: *mut c_void) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).base).write(v) }
    }
    /// `ev_events`.
    pub fn events(self) -> i16 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).events).read() }
    }
    /// Sets `ev_events`.
    pub fn set_events(self, v: i16) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).events).write(v) }
    }
    /// `ev_res`.
    pub fn res(self) -> i16 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).res).read() }
    }
    /// Sets `ev_res`.
    pub fn set_res(self, v: i16) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).res).write(v) }
    }
    /// `ev_timeout`: the deadline.
    pub fn deadline(self) -> Usec {
        // SAFETY: as in `flags`.
        Usec::from_timeval(unsafe { addr_of!((*self.0.as_ptr()).timeout).read() })
    }
    /// Sets `ev_timeout`.
    pub fn set_deadline(self, t: Usec) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).timeout).write(t.to_timeval()) }
    }
    /// The EV_PERSIST interval (zero: none).
    pub fn persist_interval(self) -> Usec {
        // SAFETY: as in `flags`.
        Usec::from_timeval(unsafe { addr_of!((*self.0.as_ptr()).io_timeout).read() })
    }
    /// Whether an EV_PERSIST interval is set (a nonzero stored `timeval`; cheaper than converting it).
    pub fn has_persist_interval(self) -> bool {
        // SAFETY: as in `flags`.
        let tv = unsafe { addr_of!((*self.0.as_ptr()).io_timeout).read() };
        tv.tv_sec != 0 || tv.tv_usec != 0
    }
    /// Sets the EV_PERSIST interval.
    pub fn set_persist_interval(self, t: Usec) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).io_timeout).write(t.to_timeval()) }
    }
    /// Our timer-heap index (valid while EVLIST_TIMEOUT).
    pub fn heap_idx(self) -> usize {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).heap_idx).read() as u32 as usize }
    }
    /// Sets the timer-heap index.
    pub fn set_heap_idx(self, i: usize) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).heap_idx).write(i as i32) }
    }
    /// The next event on its active queue (meaningful while queued).
    pub fn active_next(self) -> Option<EvPtr> {
        // SAFETY: as in `flags`.
        NonNull::new(unsafe { addr_of!((*self.0.as_ptr()).active_next).read() }).map(EvPtr)
    }
    /// The previous event on its active queue (meaningful while queued).
    pub fn active_prev(self) -> Option<EvPtr> {
        // SAFETY: as in `flags`.
        NonNull::new(unsafe { addr_of!((*self.0.as_ptr()).active_prev).read() }).map(EvPtr)
    }
    /// Sets the next link.
    pub fn set_active_next(self, e: Option<EvPtr>) {
        let p = e.map_or(std::ptr::null_mut(), EvPtr::as_ptr);
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).active_next).write(p) }
    }
    /// Sets the previous link.
    pub fn set_active_prev(self, e: Option<EvPtr>) {
        let p = e.map_or(std::ptr::null_mut(), EvPtr::as_ptr);
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).active_prev).write(p) }
    }
    /// The active queue the event is on (meaningful while queued).
    pub fn active_queue(self) -> u16 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).active_queue).read() }
    }
    /// Sets the active queue.
    pub fn set_active_queue(self, q: u16) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).active_queue).write(q) }
    }
    /// How many times a queued signal event's callback is due.
    pub fn active_ncalls(self) -> i16 {
        // SAFETY: as in `flags`.
        unsafe { addr_of!((*self.0.as_ptr()).active_ncalls).read() }
    }
    /// Sets the due count.
    pub fn set_active_ncalls(self, n: i16) {
        // SAFETY: as in `flags`.
        unsafe { addr_of_mut!((*self.0.as_ptr()).active_ncalls).write(n) }
    }
}

/// Calls an event callback.
///
/// This is the one place the engine enters application code for events. Callers hold no lock and no borrow of
/// engine state (STYLE pattern 12): the callback may add, delete, free or re-assign any event, including this one.
pub(crate) fn invoke(cb: EventCb, fd: c_int, what: i16, arg: *mut c_void) {
    // SAFETY: `cb` was stored by event_assign, whose caller promised a function with this signature; the
    // arguments are the values libevent passes.
    unsafe { cb(fd, what, arg) }
}

/// Calls a finalizer.
pub(crate) fn invoke_finalizer(fin: FinalizeCb, ev: EvPtr, arg: *mut c_void) {
    // SAFETY: as in `invoke`: event_finalize's caller promised a function with this signature.
    unsafe { fin(ev.as_ptr(), arg) }
}
