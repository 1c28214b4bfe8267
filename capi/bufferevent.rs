//! libevent 2.1's bufferevent API (`event2/bufferevent.h`, `bufferevent_struct.h`, `bufferevent_compat.h`): socket,
//! pair and filter bufferevents, rate limits and rate-limit groups, over libix's events and evbuffers.
//!
//! `struct bufferevent` is public in libevent: applications read `input`, `output`, `ev_read`, `ev_write`,
//! `enabled`, the watermarks and callbacks directly, so [`bufferevent`] has libevent's layout (checked at compile
//! time) and is the first field of [`Bev`], the private object (libevent's `bufferevent_private`) that every
//! `struct bufferevent *` points to. The pure logic (constants, token buckets, suspension reasons, watermark rules)
//! is in [`crate::bufferevent`].
//!
//! Concurrency and reentrancy follow libevent: a bufferevent has an optional recursive lock (BEV_OPT_THREADSAFE,
//! shared with its buffers and, for pairs and filters, with the partner or underlying bufferevent), callbacks run
//! with it held (unless BEV_OPT_UNLOCK_CALLBACKS), and a reference count keeps the object alive while any of its
//! own code is on the stack: every callback entry point takes a reference first, so an application may free the
//! bufferevent from inside any callback; the last reference queues the destruction as an event finalizer, run on
//! the loop thread when none of the bufferevent's callbacks can be running (libevent's way). All mutable state
//! is in `Cell`s, touched under the lock (or by the single thread using an unlocked bufferevent, libevent's rule).
//!
//! Transports are the variants of [`Kind`] (libevent's `bufferevent_ops` tables): each has enable, disable,
//! timeout adjustment, flush, unlink, destruct and control operations, dispatched by `match`.
//!
//! Socket I/O goes through [`read_from_socket`] / [`write_to_socket`] (libc read/readv/writev inside
//! `evbuffer_read`/`evbuffer_write_atmost`), so dataplane sockets work through libix's interposed calls; the
//! zero-copy receive path (dataplane RX mbufs appended to the input evbuffer) replaces `read_from_socket` only.
#![allow(non_camel_case_types)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use std::ffi::{c_char, c_int, c_short, c_void};
use std::mem::offset_of;
use std::ptr::{self, null, null_mut};
use std::sync::Arc;

use crate::buffer::callbacks::{Info, CB_ENABLED, CB_NODEFER};
use crate::bufferevent::flags::*;
use crate::bufferevent::{
    group_share, pair_transfer_amount, read_cb_due, socket_read_amount, write_cb_due, BucketCfg, ReadAmount,
    Suspension, TokenBucket,
};
use crate::event::deferred::Deferred;

use super::buffer::{
    evbuffer, evbuffer_add, evbuffer_add_buffer, evbuffer_add_cb, evbuffer_cb_clear_flags, evbuffer_cb_entry,
    evbuffer_cb_set_flags, evbuffer_enable_locking, evbuffer_free, evbuffer_freeze, evbuffer_get_length, evbuffer_new,
    evbuffer_read, evbuffer_remove, evbuffer_remove_buffer, evbuffer_remove_cb_entry, evbuffer_set_flags,
    evbuffer_unfreeze, evbuffer_write_atmost, evthread_alloc_recursive, evthread_free_recursive, evthread_lock,
    evthread_try_lock, evthread_unlock,
};
use super::event::{
    base_ref, event, event_add, event_assign, event_base, event_base_get_npriorities, event_base_gettimeofday_cached,
    event_base_set, event_del, event_del_noblock, event_finalize, event_get_base, event_get_fd, event_get_priority,
    event_initialized, event_pending, event_priority_set, event_remove_timer,
};
use super::guard;
use super::util::{
    evutil_addrinfo, evutil_freeaddrinfo, evutil_getaddrinfo_async_, evutil_getaddrinfo_cancel_async_, evutil_socket_,
    evutil_socket_connect_, evutil_socket_finished_connecting_, evutil_weakrand_range_, evutil_weakrand_seed_,
    evutil_weakrand_state,
};

/// `bufferevent_data_cb`.
pub type DataCb = unsafe extern "C" fn(*mut bufferevent, *mut c_void);
/// `bufferevent_event_cb`.
pub type EventCbFn = unsafe extern "C" fn(*mut bufferevent, c_short, *mut c_void);
/// `bufferevent_filter_cb`.
pub type FilterCb = unsafe extern "C" fn(*mut evbuffer, *mut evbuffer, isize, c_int, *mut c_void) -> c_int;
/// The filter's `free_context` argument.
pub type FreeContextFn = unsafe extern "C" fn(*mut c_void);

/// `struct event_watermark`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct event_watermark {
    low: usize,
    high: usize,
}

/// `struct bufferevent` (bufferevent_struct.h), field for field; `Cell`/`UnsafeCell` have their content's layout.
#[repr(C)]
pub struct bufferevent {
    ev_base: Cell<*mut event_base>,
    be_ops: Cell<*const bufferevent_ops>,
    ev_read: UnsafeCell<event>,
    ev_write: UnsafeCell<event>,
    input: Cell<*mut evbuffer>,
    output: Cell<*mut evbuffer>,
    wm_read: Cell<event_watermark>,
    wm_write: Cell<event_watermark>,
    readcb: Cell<Option<DataCb>>,
    writecb: Cell<Option<DataCb>>,
    errorcb: Cell<Option<EventCbFn>>,
    cbarg: Cell<*mut c_void>,
    timeout_read: Cell<libc::timeval>,
    timeout_write: Cell<libc::timeval>,
    enabled: Cell<c_short>,
}

// libevent 2.1.12's offsets on x86_64 (struct event is 128 bytes).
const _: () = {
    assert!(offset_of!(bufferevent, ev_read) == 16);
    assert!(offset_of!(bufferevent, ev_write) == 144);
    assert!(offset_of!(bufferevent, input) == 272);
    assert!(offset_of!(bufferevent, output) == 280);
    assert!(offset_of!(bufferevent, wm_read) == 288);
    assert!(offset_of!(bufferevent, wm_write) == 304);
    assert!(offset_of!(bufferevent, readcb) == 320);
    assert!(offset_of!(bufferevent, cbarg) == 344);
    assert!(offset_of!(bufferevent, timeout_read) == 352);
    assert!(offset_of!(bufferevent, timeout_write) == 368);
    assert!(offset_of!(bufferevent, enabled) == 384);
    assert!(std::mem::size_of::<bufferevent>() == 392);
};

/// `struct bufferevent_ops`: libevent exports one per transport as data; `be_ops` points to it, and programs
/// compare the pointer or read `type`. The function slots are libevent-internal and left empty here (libix
/// dispatches on [`Kind`]).
#[repr(C)]
pub struct bufferevent_ops {
    type_: *const c_char,
    mem_offset: libc::off_t,
    slots: [*const c_void; 7],
}

// SAFETY: immutable data (a static string and null pointers), never written.
unsafe impl Sync for bufferevent_ops {}

/// The socket transport's table (exported data, as in libevent).
#[no_mangle]
pub static bufferevent_ops_socket: bufferevent_ops =
    bufferevent_ops { type_: c"socket".as_ptr(), mem_offset: 0, slots: [null(); 7] };
/// The pair transport's table.
#[no_mangle]
pub static bufferevent_ops_pair: bufferevent_ops =
    bufferevent_ops { type_: c"pair_elt".as_ptr(), mem_offset: 0, slots: [null(); 7] };
/// The filter transport's table.
#[no_mangle]
pub static bufferevent_ops_filter: bufferevent_ops =
    bufferevent_ops { type_: c"filter".as_ptr(), mem_offset: 0, slots: [null(); 7] };

/// `struct ev_token_bucket_cfg` (opaque to C).
pub type ev_token_bucket_cfg = BucketCfg;

// ---------------------------------------------------------------------------------------------------------------
// The private object
// ---------------------------------------------------------------------------------------------------------------

/// What a `struct bufferevent *` points to.
#[repr(C)]
struct Bev {
    public: bufferevent,
    lock: Cell<*mut c_void>,
    own_lock: Cell<bool>,
    refcnt: Cell<usize>,
    /// The last reference is gone and the finalizer is queued: a callback already dispatched when that happened
    /// may still take and drop a reference, which must not start a second destruction.
    finalizing: Cell<bool>,
    options: Cell<c_int>,
    read_suspended: Cell<Suspension>,
    write_suspended: Cell<Suspension>,
    /// A connect is in progress: the write event waits for it even when writing is disabled.
    connecting: Cell<bool>,
    /// A read saw ECONNREFUSED before the write event reported the connect's end.
    connection_refused: Cell<bool>,
    readcb_pending: Cell<bool>,
    writecb_pending: Cell<bool>,
    eventcb_pending: Cell<c_short>,
    errno_pending: Cell<c_int>,
    /// Created on first use from `ev_base` (a bufferevent may be made before its base is set).
    deferred: OnceCell<Deferred>,
    /// The priority `bufferevent_priority_set` gave, for the deferred callback (made later, perhaps).
    deferred_priority: Cell<Option<c_int>>,
    read_wm_entry: Cell<*mut evbuffer_cb_entry>,
    dns_error: Cell<c_int>,
    dns_request: Cell<*mut c_void>,
    conn_address: Cell<libc::sockaddr_storage>,
    max_single_read: Cell<isize>,
    max_single_write: Cell<isize>,
    /// Rate limiting, created by the first `bufferevent_set_rate_limit` or group join (boxed: holds an event).
    rate: Cell<*mut RateLimit>,
    kind: Kind,
}

/// The transport (libevent's `be_ops`).
enum Kind {
    Socket,
    Pair(PairLink),
    Filter(Filter),
}

struct PairLink {
    partner: Cell<*const Bev>,
    /// The partner at unlink time, for handing over the shared lock on destruction.
    unlinked_partner: Cell<*const Bev>,
}

struct Filter {
    underlying: Cell<*const Bev>,
    inbuf_cb: Cell<*mut evbuffer_cb_entry>,
    outbuf_cb: Cell<*mut evbuffer_cb_entry>,
    got_eof: Cell<bool>,
    free_context: Option<FreeContextFn>,
    process_in: FilterCb,
    process_out: FilterCb,
    context: *mut c_void,
}

struct RateLimit {
    /// The application's configuration (compared by address, as libevent; it must outlive its use).
    cfg: Cell<*const BucketCfg>,
    limit: Cell<TokenBucket>,
    refill: UnsafeCell<event>,
    group: Cell<*const Group>,
}

/// A `*const Bev` the deferred-callback closure may carry to the loop thread (the object is reference counted
/// and locked as libevent's).
#[derive(Clone, Copy)]
struct BevPtr(*const Bev);
// SAFETY: the pointer is only dereferenced by the loop while the deferred run holds a reference; access to the
// object's state is serialized by its lock (or by single-threaded use, libevent's rule without BEV_OPT_THREADSAFE).
unsafe impl Send for BevPtr {}
// SAFETY: as above.
unsafe impl Sync for BevPtr {}

impl Bev {
    fn c(&self) -> *mut bufferevent {
        self as *const Bev as *mut bufferevent
    }
    fn ev_read(&self) -> *mut event {
        self.public.ev_read.get()
    }
    fn ev_write(&self) -> *mut event {
        self.public.ev_write.get()
    }
    fn input(&self) -> *mut evbuffer {
        self.public.input.get()
    }
    fn output(&self) -> *mut evbuffer {
        self.public.output.get()
    }
    fn enabled(&self) -> c_short {
        self.public.enabled.get()
    }
    fn lock(&self) {
        evthread_lock(self.lock.get());
    }
    fn unlock(&self) {
        evthread_unlock(self.lock.get());
    }
    fn incref_and_lock(&self) {
        self.lock();
        self.refcnt.set(self.refcnt.get() + 1);
    }
    fn pair(&self) -> Option<&PairLink> {
        match &self.kind {
            Kind::Pair(p) => Some(p),
            _ => None,
        }
    }
    fn filter(&self) -> Option<&Filter> {
        match &self.kind {
            Kind::Filter(f) => Some(f),
            _ => None,
        }
    }
    fn rate(&self) -> Option<&RateLimit> {
        // SAFETY: `rate` is NULL or a Box owned by this object until it is destroyed.
        unsafe { self.rate.get().as_ref() }
    }
}

/// The object behind a C pointer.
///
/// # Safety
/// `p` is NULL or a live bufferevent from this module's constructors.
unsafe fn bev<'a>(p: *const bufferevent) -> Option<&'a Bev> {
    // SAFETY: the caller's promise; every bufferevent is a Bev whose first field is the public struct.
    unsafe { p.cast::<Bev>().as_ref() }
}

/// A reference to another live bufferevent known to this one (partner, underlying, group member): those links
/// are cleared before the object they name is freed.
fn linked<'a>(p: *const Bev) -> Option<&'a Bev> {
    // SAFETY: see above: a link is NULL or names a live object.
    unsafe { p.as_ref() }
}

// ---------------------------------------------------------------------------------------------------------------
// Calls into the event and evbuffer exports, on objects a live bufferevent owns
// ---------------------------------------------------------------------------------------------------------------

fn buf_len(b: *mut evbuffer) -> usize {
    // SAFETY: `b` is one of a live bufferevent's buffers (or the application's, which it vouched for).
    unsafe { evbuffer_get_length(b) }
}

fn timer_is_set(tv: &libc::timeval) -> bool {
    tv.tv_sec != 0 || tv.tv_usec != 0
}

fn ev_add(ev: *mut event, tv: Option<libc::timeval>) -> c_int {
    let tv = tv.filter(timer_is_set);
    let p = tv.as_ref().map_or(null(), |t| t as *const libc::timeval);
    // SAFETY: `ev` is an event inside a live bufferevent or rate-limit object, assigned at creation; `p` is NULL
    // or a timeval on this stack.
    unsafe { event_add(ev, p) }
}

fn ev_del(ev: *mut event) -> c_int {
    // SAFETY: as ev_add; event_del on an assigned, not-added event does nothing.
    unsafe { event_del(ev) }
}

fn ev_del_noblock(ev: *mut event) -> c_int {
    // SAFETY: as ev_add.
    unsafe { event_del_noblock(ev) }
}

fn ev_pending(ev: *mut event, what: c_short) -> bool {
    // SAFETY: as ev_add.
    unsafe { event_pending(ev, what, null_mut()) != 0 }
}

fn ev_initialized(ev: *mut event) -> bool {
    // SAFETY: as ev_add (a zeroed event reads as not initialized).
    unsafe { event_initialized(ev) != 0 }
}

fn ev_assign(ev: *mut event, base: *mut event_base, fd: c_int, what: c_short, cb: EvCb, arg: *const c_void) {
    // SAFETY: `ev` is inside a live object and not added (callers delete it first); the callback takes `arg`,
    // which stays valid while the event can run.
    unsafe { event_assign(ev, base, fd, what, Some(cb), arg.cast_mut()) };
}

type EvCb = unsafe extern "C" fn(c_int, c_short, *mut c_void);

fn set_cb_flags(buf: *mut evbuffer, entry: *mut evbuffer_cb_entry, flags: u32, on: bool) {
    if entry.is_null() {
        return;
    }
    // SAFETY: `entry` was returned by evbuffer_add_cb on `buf`, a live bufferevent's buffer.
    unsafe {
        if on {
            evbuffer_cb_set_flags(buf, entry, flags);
        } else {
            evbuffer_cb_clear_flags(buf, entry, flags);
        }
    }
}

fn add_buf_cb(
    buf: *mut evbuffer,
    cb: unsafe extern "C" fn(*mut evbuffer, *const Info, *mut c_void),
    arg: *const Bev,
) -> *mut evbuffer_cb_entry {
    // SAFETY: `buf` is a live bufferevent's buffer; the callback's argument is that bufferevent, which removes or
    // frees the buffer (and so the entry) before it is freed.
    unsafe { evbuffer_add_cb(buf, Some(cb), arg as *mut c_void) }
}

fn freeze(buf: *mut evbuffer, start: bool, on: bool) {
    // SAFETY: a live bufferevent's buffer.
    unsafe {
        if on {
            evbuffer_freeze(buf, c_int::from(start));
        } else {
            evbuffer_unfreeze(buf, c_int::from(start));
        }
    }
}

fn move_buffer(dst: *mut evbuffer, src: *mut evbuffer, n: Option<usize>) {
    // SAFETY: two live bufferevents' buffers.
    unsafe {
        match n {
            Some(n) => evbuffer_remove_buffer(src, dst, n),
            None => evbuffer_add_buffer(dst, src),
        };
    }
}

fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn now_cached(base: *mut event_base) -> libc::timeval {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: `base` is a live bufferevent's base (NULL means the current base); `tv` is writable.
    unsafe { event_base_gettimeofday_cached(base, &mut tv) };
    tv
}

// ---------------------------------------------------------------------------------------------------------------
// Reference counting and destruction
// ---------------------------------------------------------------------------------------------------------------

/// Drops a reference taken with the lock held and unlocks (libevent's `bufferevent_decref_and_unlock_`). The last
/// reference unlinks the object from its partners, stops its events and queues its destruction on the loop (as
/// libevent's finalizers do): callbacks of a base run on its loop thread, so once the finalizer runs none of this
/// bufferevent's callbacks is running, even if the last reference was dropped by another thread. Returns true if
/// that was the last reference. Takes a raw pointer: the object may be gone on return.
fn decref_and_unlock(p: *const Bev) -> bool {
    let b = linked(p).expect("decref of a NULL bufferevent");
    let n = b.refcnt.get();
    assert!(n > 0, "bufferevent reference count underflow");
    b.refcnt.set(n - 1);
    if n > 1 || b.finalizing.get() {
        b.unlock();
        return n == 1;
    }
    b.finalizing.set(true);
    unlink(b);
    // Without blocking: a callback of these events may be waiting for our lock on the loop thread.
    ev_del_noblock(b.ev_write());
    if let Some(r) = b.rate() {
        if ev_initialized(r.refill.get()) {
            ev_del_noblock(r.refill.get());
        }
    }
    if let Some(d) = b.deferred.get() {
        d.cancel();
    }
    // SAFETY: an event inside this live bufferevent.
    let has_base = ev_initialized(b.ev_read()) && !unsafe { event_get_base(b.ev_read()) }.is_null();
    // SAFETY: ev_read is assigned at creation with this object as its argument; the finalizer gets it back.
    let queued = has_base && unsafe { event_finalize(0, b.ev_read(), Some(finalize_cb)) } == 0;
    b.unlock();
    if !queued {
        // No base to run a finalizer (a bufferevent never given one): nothing can run its callbacks either.
        destroy(p);
    }
    true
}

unsafe extern "C" fn finalize_cb(_ev: *mut event, arg: *mut c_void) {
    guard((), || destroy(arg.cast()))
}

/// Frees an object whose last reference is gone, from its finalizer: the transport's destructor (closing the
/// socket with BEV_OPT_CLOSE_ON_FREE, a filter's free_context), the group membership, the buffers, the lock and the
/// memory, then the reference a filter held on its underlying bufferevent.
fn destroy(p: *const Bev) {
    let underlying = {
        let b = linked(p).expect("live");
        b.lock();
        let underlying = b.filter().map_or(null(), |f| f.underlying.get());
        destruct(b);
        if b.rate().is_some_and(|r| !r.group.get().is_null()) {
            remove_from_group(b, false);
        }
        // SAFETY: the buffers were created for this object and nothing else frees them.
        unsafe {
            evbuffer_free(b.input());
            evbuffer_free(b.output());
        }
        b.unlock();
        if b.own_lock.get() {
            evthread_free_recursive(b.lock.get());
        }
        underlying
    };
    // SAFETY: allocated by Box::into_raw in `alloc_bev`; the last reference is gone and `b` above is out of scope.
    let boxed = unsafe { Box::from_raw(p.cast_mut()) };
    let rate = boxed.rate.get();
    drop(boxed);
    if !rate.is_null() {
        // SAFETY: the Box from `rate_limit_of`, no longer referenced (its event was deleted with the object's).
        drop(unsafe { Box::from_raw(rate) });
    }
    if let Some(u) = linked(underlying) {
        u.lock();
        decref_and_unlock(underlying);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Callbacks: immediate or deferred
// ---------------------------------------------------------------------------------------------------------------

fn deferred_of(b: &Bev) -> Option<&Deferred> {
    if let Some(d) = b.deferred.get() {
        return Some(d);
    }
    // A NULL base means the current one (event_init's), as for libevent's deferred callbacks.
    let mut base = b.public.ev_base.get();
    if base.is_null() {
        base = super::event::event_global_current_base_.load(std::sync::atomic::Ordering::Acquire);
    }
    // SAFETY: a live base handle (an event_base is a Base) or NULL.
    let base = unsafe { base_ref(base) }?;
    let me = BevPtr(b);
    let unlocked = b.options.get() & OPT_UNLOCK_CALLBACKS != 0;
    let d = Deferred::new(base, Arc::new(move || run_deferred(me, unlocked)));
    if let Some(pri) = b.deferred_priority.get() {
        d.set_priority(pri);
    }
    Some(b.deferred.get_or_init(|| d))
}

/// Queues the deferred run, holding a reference for it (libevent's SCHEDULE_DEFERRED).
fn schedule_deferred(b: &Bev) {
    if let Some(d) = deferred_of(b) {
        if d.schedule() {
            b.refcnt.set(b.refcnt.get() + 1);
        }
    }
}

/// The deferred run: connected first (it happened before any data), then read, write, and other events.
fn run_deferred(me: BevPtr, unlocked: bool) {
    let Some(b) = linked(me.0) else { return };
    b.lock();
    let call = |f: &dyn Fn()| {
        if unlocked {
            b.unlock();
            f();
            b.lock();
        } else {
            f();
        }
    };
    if b.eventcb_pending.get() & EVENT_CONNECTED != 0 {
        if let Some(cb) = b.public.errorcb.get() {
            let arg = b.public.cbarg.get();
            b.eventcb_pending.set(b.eventcb_pending.get() & !EVENT_CONNECTED);
            // SAFETY: the application's callback with its own argument and this live bufferevent.
            call(&|| unsafe { cb(b.c(), EVENT_CONNECTED, arg) });
        }
    }
    if b.readcb_pending.get() {
        if let Some(cb) = b.public.readcb.get() {
            let arg = b.public.cbarg.get();
            b.readcb_pending.set(false);
            // SAFETY: as above.
            call(&|| unsafe { cb(b.c(), arg) });
            inbuf_wm_check(b);
        }
    }
    if b.writecb_pending.get() {
        if let Some(cb) = b.public.writecb.get() {
            let arg = b.public.cbarg.get();
            b.writecb_pending.set(false);
            // SAFETY: as above.
            call(&|| unsafe { cb(b.c(), arg) });
        }
    }
    if b.eventcb_pending.get() != 0 {
        if let Some(cb) = b.public.errorcb.get() {
            let arg = b.public.cbarg.get();
            let what = b.eventcb_pending.get();
            let err = b.errno_pending.get();
            b.eventcb_pending.set(0);
            b.errno_pending.set(0);
            set_errno(err);
            // SAFETY: as above.
            call(&|| unsafe { cb(b.c(), what, arg) });
        }
    }
    decref_and_unlock(me.0);
}

/// After a read callback: if the input is still at or above the high watermark while reading is enabled, tell
/// the application again later (its callback left data it must drain).
fn inbuf_wm_check(b: &Bev) {
    let wm = b.public.wm_read.get();
    if wm.high == 0 || b.enabled() & EV_READ == 0 || buf_len(b.input()) < wm.high {
        return;
    }
    trigger(b, EV_READ, OPT_DEFER_CALLBACKS);
}

/// Runs (or defers) the read callback; the caller holds the lock and a reference.
fn run_readcb(b: &Bev, options: c_int) {
    let Some(cb) = b.public.readcb.get() else { return };
    if (b.options.get() | options) & OPT_DEFER_CALLBACKS != 0 {
        b.readcb_pending.set(true);
        schedule_deferred(b);
    } else {
        // SAFETY: the application's callback with its own argument and this live bufferevent.
        unsafe { cb(b.c(), b.public.cbarg.get()) };
        inbuf_wm_check(b);
    }
}

fn run_writecb(b: &Bev, options: c_int) {
    let Some(cb) = b.public.writecb.get() else { return };
    if (b.options.get() | options) & OPT_DEFER_CALLBACKS != 0 {
        b.writecb_pending.set(true);
        schedule_deferred(b);
    } else {
        // SAFETY: as run_readcb.
        unsafe { cb(b.c(), b.public.cbarg.get()) };
    }
}

fn run_eventcb(b: &Bev, what: c_short, options: c_int) {
    let Some(cb) = b.public.errorcb.get() else { return };
    if (b.options.get() | options) & OPT_DEFER_CALLBACKS != 0 {
        b.eventcb_pending.set(b.eventcb_pending.get() | what);
        b.errno_pending.set(errno());
        schedule_deferred(b);
    } else {
        // SAFETY: as run_readcb.
        unsafe { cb(b.c(), what, b.public.cbarg.get()) };
    }
}

/// The data callbacks whose watermark condition holds (or all asked for, with TRIG_IGNORE_WATERMARKS).
fn trigger(b: &Bev, iotype: c_short, options: c_int) {
    let ignore = options & TRIG_IGNORE_WATERMARKS != 0;
    if iotype & EV_READ != 0 && read_cb_due(buf_len(b.input()), b.public.wm_read.get().low, ignore) {
        run_readcb(b, options);
    }
    if iotype & EV_WRITE != 0 && write_cb_due(buf_len(b.output()), b.public.wm_write.get().low, ignore) {
        run_writecb(b, options);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Suspension (watermarks, bandwidth, lookups, filters)
// ---------------------------------------------------------------------------------------------------------------

/// The suspension reasons of one direction (`write`: output, else input).
fn suspension(b: &Bev, write: bool) -> &Cell<Suspension> {
    if write {
        &b.write_suspended
    } else {
        &b.read_suspended
    }
}

/// Stops one direction for `why` (a bit of the suspension set); the event goes when the first reason comes.
fn suspend(b: &Bev, write: bool, why: u16) {
    b.lock();
    let cell = suspension(b, write);
    let mut s = cell.get();
    if s.suspend(why) {
        be_disable(b, if write { EV_WRITE } else { EV_READ });
    }
    cell.set(s);
    b.unlock();
}

/// Lifts `why`; the direction resumes when no reason is left and the app has it enabled.
fn unsuspend(b: &Bev, write: bool, why: u16) {
    b.lock();
    let cell = suspension(b, write);
    let mut s = cell.get();
    let free = s.unsuspend(why);
    cell.set(s);
    let ev = if write { EV_WRITE } else { EV_READ };
    if free && b.enabled() & ev != 0 {
        be_enable(b, ev);
    }
    b.unlock();
}

fn suspend_read(b: &Bev, why: u16) {
    suspend(b, false, why);
}

fn unsuspend_read(b: &Bev, why: u16) {
    unsuspend(b, false, why);
}

fn suspend_write(b: &Bev, why: u16) {
    suspend(b, true, why);
}

fn unsuspend_write(b: &Bev, why: u16) {
    unsuspend(b, true, why);
}

/// The input buffer's watermark callback: stop reading at the high watermark, resume below it.
unsafe extern "C" fn inbuf_wm_cb(buf: *mut evbuffer, _info: *const Info, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        if buf_len(buf) >= b.public.wm_read.get().high {
            suspend_read(b, SUSPEND_WM);
        } else {
            unsuspend_read(b, SUSPEND_WM);
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Transport operations (libevent's be_ops), dispatched on Kind
// ---------------------------------------------------------------------------------------------------------------

fn be_enable(b: &Bev, events: c_short) -> c_int {
    match &b.kind {
        Kind::Socket => {
            if events & EV_READ != 0 && ev_add(b.ev_read(), Some(b.public.timeout_read.get())) == -1 {
                return -1;
            }
            if events & EV_WRITE != 0 && ev_add(b.ev_write(), Some(b.public.timeout_write.get())) == -1 {
                return -1;
            }
            0
        }
        Kind::Pair(link) => {
            pair_incref_and_lock(b);
            if events & EV_READ != 0 {
                reset_generic_read_timeout(b);
            }
            if events & EV_WRITE != 0 && buf_len(b.output()) != 0 {
                reset_generic_write_timeout(b);
            }
            if let Some(partner) = linked(link.partner.get()) {
                if events & EV_READ != 0 && pair_wants_to_talk(partner, b) {
                    pair_transfer(partner, b, false);
                }
            }
            if let Some(partner) = linked(link.partner.get()) {
                if events & EV_WRITE != 0 && pair_wants_to_talk(b, partner) {
                    pair_transfer(b, partner, false);
                }
            }
            pair_decref_and_unlock(b);
            0
        }
        Kind::Filter(f) => {
            if events & EV_WRITE != 0 {
                reset_generic_write_timeout(b);
            }
            if events & EV_READ != 0 {
                reset_generic_read_timeout(b);
                if let Some(u) = linked(f.underlying.get()) {
                    unsuspend_read(u, SUSPEND_FILT_READ);
                }
            }
            0
        }
    }
}

fn be_disable(b: &Bev, events: c_short) -> c_int {
    match &b.kind {
        Kind::Socket => {
            if events & EV_READ != 0 && ev_del(b.ev_read()) == -1 {
                return -1;
            }
            // A connect in progress keeps its write event: it reports the connect's end.
            if events & EV_WRITE != 0 && !b.connecting.get() && ev_del(b.ev_write()) == -1 {
                return -1;
            }
            0
        }
        Kind::Pair(_) => {
            if events & EV_READ != 0 {
                ev_del(b.ev_read());
            }
            if events & EV_WRITE != 0 {
                ev_del(b.ev_write());
            }
            0
        }
        Kind::Filter(f) => {
            if events & EV_WRITE != 0 {
                ev_del(b.ev_write());
            }
            if events & EV_READ != 0 {
                ev_del(b.ev_read());
                if let Some(u) = linked(f.underlying.get()) {
                    suspend_read(u, SUSPEND_FILT_READ);
                }
            }
            0
        }
    }
}

/// `adj_timeouts`: sockets re-time the events that are pending; pairs and filters (whose events are bare timers)
/// arm them per direction when enabled, not suspended, with a timeout (and, for writing, pending output).
fn be_adj_timeouts(b: &Bev) -> c_int {
    match b.kind {
        Kind::Socket => {
            let mut r = 0;
            for (ev, what, tv) in [
                (b.ev_read(), EV_READ, b.public.timeout_read.get()),
                (b.ev_write(), EV_WRITE, b.public.timeout_write.get()),
            ] {
                if ev_pending(ev, what) {
                    if timer_is_set(&tv) {
                        if ev_add(ev, Some(tv)) < 0 {
                            r = -1;
                        }
                    } else {
                        // SAFETY: an event inside this live bufferevent.
                        unsafe { event_remove_timer(ev) };
                    }
                }
            }
            r
        }
        _ => generic_adj_timeouts(b),
    }
}

fn generic_adj_timeouts(b: &Bev) -> c_int {
    let enabled = b.enabled();
    let tr = b.public.timeout_read.get();
    let tw = b.public.timeout_write.get();
    let r1 = if enabled & EV_READ != 0 && !b.read_suspended.get().is_suspended() && timer_is_set(&tr) {
        ev_add(b.ev_read(), Some(tr))
    } else {
        ev_del(b.ev_read())
    };
    let r2 = if enabled & EV_WRITE != 0
        && !b.write_suspended.get().is_suspended()
        && timer_is_set(&tw)
        && buf_len(b.output()) != 0
    {
        ev_add(b.ev_write(), Some(tw))
    } else {
        ev_del(b.ev_write())
    };
    if r1 < 0 || r2 < 0 {
        -1
    } else {
        0
    }
}

fn reset_generic_read_timeout(b: &Bev) {
    let tv = b.public.timeout_read.get();
    if timer_is_set(&tv) {
        ev_add(b.ev_read(), Some(tv));
    }
}

fn reset_generic_write_timeout(b: &Bev) {
    let tv = b.public.timeout_write.get();
    if timer_is_set(&tv) {
        ev_add(b.ev_write(), Some(tv));
    }
}

fn be_flush(b: &Bev, iotype: c_short, mode: c_int) -> c_int {
    match &b.kind {
        Kind::Socket => 0,
        Kind::Pair(link) => {
            if link.partner.get().is_null() {
                return -1;
            }
            if mode == FLUSH_NORMAL {
                return 0;
            }
            pair_incref_and_lock(b);
            if let Some(partner) = linked(link.partner.get()) {
                if iotype & EV_READ != 0 {
                    pair_transfer(partner, b, true);
                }
                if iotype & EV_WRITE != 0 {
                    pair_transfer(b, partner, true);
                }
                if mode == FLUSH_FINISHED {
                    let mut what = EVENT_EOF;
                    if iotype & EV_READ != 0 {
                        what |= EVENT_WRITING;
                    }
                    if iotype & EV_WRITE != 0 {
                        what |= EVENT_READING;
                    }
                    run_eventcb(partner, what, 0);
                }
            }
            pair_decref_and_unlock(b);
            0
        }
        Kind::Filter(f) => {
            let mut processed = false;
            b.incref_and_lock();
            if iotype & EV_READ != 0 {
                filter_process_input(b, f, mode, &mut processed);
            }
            if iotype & EV_WRITE != 0 {
                filter_process_output(b, f, mode, &mut processed);
            }
            if let Some(u) = linked(f.underlying.get()) {
                flush(u, iotype, mode);
            }
            decref_and_unlock(b);
            c_int::from(processed)
        }
    }
}

fn flush(b: &Bev, iotype: c_short, mode: c_int) -> c_int {
    b.lock();
    let r = be_flush(b, iotype, mode);
    b.unlock();
    r
}

/// Called when the last reference goes, before anything is freed: pairs forget each other, a filter lets go of
/// its underlying bufferevent (freeing it with BEV_OPT_CLOSE_ON_FREE).
fn unlink(b: &Bev) {
    match &b.kind {
        Kind::Socket => {}
        Kind::Pair(link) => {
            if let Some(partner) = linked(link.partner.get()) {
                link.unlinked_partner.set(partner);
                if let Some(pl) = partner.pair() {
                    pl.partner.set(null());
                }
                link.partner.set(null());
            }
        }
        Kind::Filter(f) => {
            let Some(u) = linked(f.underlying.get()) else { return };
            if b.options.get() & OPT_CLOSE_ON_FREE != 0 {
                // The filter's own reference (released after destruction) keeps `u` alive until then.
                if u.refcnt.get() >= 2 {
                    free_bev(u);
                }
            } else {
                // Our callbacks are still installed when their argument is this filter (libevent compares the
                // event callback's address, which Rust does not promise to be unique).
                if ptr::eq(u.public.cbarg.get().cast_const().cast::<Bev>(), b) {
                    setcb(u, None, None, None, null_mut());
                }
                unsuspend_read(u, SUSPEND_FILT_READ);
            }
        }
    }
}

fn destruct(b: &Bev) {
    match &b.kind {
        Kind::Socket => {
            // SAFETY: an event inside this live bufferevent.
            let fd = unsafe { event_get_fd(b.ev_read()) };
            if b.options.get() & OPT_CLOSE_ON_FREE != 0 && fd >= 0 {
                // SAFETY: the application handed the descriptor over with BEV_OPT_CLOSE_ON_FREE.
                unsafe { libc::close(fd) };
            }
            cancel_dns(b);
        }
        Kind::Pair(link) => {
            // The partner still uses the shared lock: it frees it.
            if let Some(partner) = linked(link.unlinked_partner.get()) {
                if b.own_lock.get() && partner.lock.get() == b.lock.get() {
                    partner.own_lock.set(true);
                    b.own_lock.set(false);
                }
            }
            link.unlinked_partner.set(null());
        }
        Kind::Filter(f) => {
            if let Some(free) = f.free_context {
                // SAFETY: the application's destructor for its own context.
                unsafe { free(f.context) };
            }
            // SAFETY: entries added on these buffers at creation.
            unsafe {
                if !f.inbuf_cb.get().is_null() {
                    evbuffer_remove_cb_entry(b.input(), f.inbuf_cb.get());
                }
                if !f.outbuf_cb.get().is_null() {
                    evbuffer_remove_cb_entry(b.output(), f.outbuf_cb.get());
                }
            }
        }
    }
}

fn cancel_dns(b: &Bev) {
    let req = b.dns_request.replace(null_mut());
    if !req.is_null() {
        // SAFETY: a request from evutil_getaddrinfo_async_ that has not completed.
        unsafe { evutil_getaddrinfo_cancel_async_(req) };
    }
}

fn get_fd(b: &Bev) -> Option<c_int> {
    match &b.kind {
        // SAFETY: an event inside this live bufferevent.
        Kind::Socket => Some(unsafe { event_get_fd(b.ev_read()) }),
        Kind::Filter(f) => linked(f.underlying.get()).and_then(get_fd),
        Kind::Pair(_) => None,
    }
}

fn set_fd(b: &Bev, fd: c_int) -> c_int {
    match &b.kind {
        Kind::Socket => {
            socket_setfd(b, fd);
            0
        }
        Kind::Filter(f) => linked(f.underlying.get()).map_or(-1, |u| set_fd(u, fd)),
        Kind::Pair(_) => -1,
    }
}

fn underlying_of(b: &Bev) -> *const Bev {
    b.filter().map_or(null(), |f| f.underlying.get())
}

// ---------------------------------------------------------------------------------------------------------------
// Common construction and the generic operations
// ---------------------------------------------------------------------------------------------------------------

fn alloc_bev(base: *mut event_base, ops: &'static bufferevent_ops, options: c_int, kind: Kind) -> Option<*const Bev> {
    if options & (OPT_DEFER_CALLBACKS | OPT_UNLOCK_CALLBACKS) == OPT_UNLOCK_CALLBACKS {
        super::event::warnx("UNLOCK_CALLBACKS requires DEFER_CALLBACKS");
        return None;
    }
    // SAFETY: plain constructors.
    let (input, output) = unsafe { (evbuffer_new(), evbuffer_new()) };
    if input.is_null() || output.is_null() {
        // SAFETY: NULL or just created.
        unsafe {
            evbuffer_free(input);
            evbuffer_free(output);
        }
        return None;
    }
    let zero_tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let b = Box::new(Bev {
        public: bufferevent {
            ev_base: Cell::new(base),
            be_ops: Cell::new(ops),
            ev_read: UnsafeCell::new(event::zeroed()),
            ev_write: UnsafeCell::new(event::zeroed()),
            input: Cell::new(input),
            output: Cell::new(output),
            wm_read: Cell::default(),
            wm_write: Cell::default(),
            readcb: Cell::new(None),
            writecb: Cell::new(None),
            errorcb: Cell::new(None),
            cbarg: Cell::new(null_mut()),
            timeout_read: Cell::new(zero_tv),
            timeout_write: Cell::new(zero_tv),
            enabled: Cell::new(EV_WRITE),
        },
        lock: Cell::new(null_mut()),
        own_lock: Cell::new(false),
        refcnt: Cell::new(1),
        finalizing: Cell::new(false),
        options: Cell::new(options),
        read_suspended: Cell::default(),
        write_suspended: Cell::default(),
        connecting: Cell::new(false),
        connection_refused: Cell::new(false),
        readcb_pending: Cell::new(false),
        writecb_pending: Cell::new(false),
        eventcb_pending: Cell::new(0),
        errno_pending: Cell::new(0),
        deferred: OnceCell::new(),
        deferred_priority: Cell::new(None),
        read_wm_entry: Cell::new(null_mut()),
        dns_error: Cell::new(0),
        dns_request: Cell::new(null_mut()),
        // SAFETY: all-zero is a valid sockaddr_storage (family AF_UNSPEC).
        conn_address: Cell::new(unsafe { std::mem::zeroed() }),
        max_single_read: Cell::new(MAX_SINGLE_READ_DEFAULT),
        max_single_write: Cell::new(MAX_SINGLE_WRITE_DEFAULT),
        rate: Cell::new(null_mut()),
        kind,
    });
    let p: *const Bev = Box::into_raw(b);
    let b = linked(p).expect("just allocated");
    if options & OPT_THREADSAFE != 0 && enable_locking(b, null_mut()) < 0 {
        // SAFETY: just created, never shared; the buffers are ours.
        unsafe {
            evbuffer_free(input);
            evbuffer_free(output);
            drop(Box::from_raw(p.cast_mut()));
        }
        return None;
    }
    Some(p)
}

/// Gives the bufferevent (and its buffers, and an underlying bufferevent without one) a lock: `lock`, the
/// underlying one's, or a new recursive lock.
fn enable_locking(b: &Bev, lock: *mut c_void) -> c_int {
    if !b.lock.get().is_null() {
        return -1;
    }
    let underlying = linked(underlying_of(b));
    let lock = if !lock.is_null() {
        b.own_lock.set(false);
        lock
    } else if let Some(u) = underlying.filter(|u| !u.lock.get().is_null()) {
        b.own_lock.set(false);
        u.lock.get()
    } else {
        let l = evthread_alloc_recursive();
        if l.is_null() {
            return -1;
        }
        b.own_lock.set(true);
        l
    };
    b.lock.set(lock);
    // SAFETY: this bufferevent's buffers; the lock outlives them (freed after them in `destroy`).
    unsafe {
        evbuffer_enable_locking(b.input(), lock);
        evbuffer_enable_locking(b.output(), lock);
    }
    if let Some(u) = underlying {
        if u.lock.get().is_null() {
            enable_locking(u, lock);
        }
    }
    0
}

fn generic_timeout_events(b: &Bev) {
    let base = b.public.ev_base.get();
    ev_assign(b.ev_read(), base, -1, EV_FINALIZE, generic_read_timeout_cb, (b as *const Bev).cast());
    ev_assign(b.ev_write(), base, -1, EV_FINALIZE, generic_write_timeout_cb, (b as *const Bev).cast());
}

unsafe extern "C" fn generic_read_timeout_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        b.incref_and_lock();
        disable(b, EV_READ);
        run_eventcb(b, EVENT_TIMEOUT | EVENT_READING, 0);
        decref_and_unlock(arg.cast());
    })
}

unsafe extern "C" fn generic_write_timeout_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        b.incref_and_lock();
        disable(b, EV_WRITE);
        run_eventcb(b, EVENT_TIMEOUT | EVENT_WRITING, 0);
        decref_and_unlock(arg.cast());
    })
}

fn setcb(b: &Bev, r: Option<DataCb>, w: Option<DataCb>, e: Option<EventCbFn>, arg: *mut c_void) {
    b.lock();
    b.public.readcb.set(r);
    b.public.writecb.set(w);
    b.public.errorcb.set(e);
    b.public.cbarg.set(arg);
    b.unlock();
}

fn enable(b: &Bev, events: c_short) -> c_int {
    b.incref_and_lock();
    let mut impl_events = events;
    if b.read_suspended.get().is_suspended() {
        impl_events &= !EV_READ;
    }
    if b.write_suspended.get().is_suspended() {
        impl_events &= !EV_WRITE;
    }
    b.public.enabled.set(b.enabled() | events);
    let r = if impl_events != 0 && be_enable(b, impl_events) < 0 { -1 } else { 0 };
    decref_and_unlock(b);
    r
}

fn disable(b: &Bev, events: c_short) -> c_int {
    b.lock();
    b.public.enabled.set(b.enabled() & !events);
    let r = if be_disable(b, events) < 0 { -1 } else { 0 };
    b.unlock();
    r
}

/// `bufferevent_free`: no more callbacks, cancel pending work, drop the application's reference.
fn free_bev(b: &Bev) {
    b.lock();
    setcb(b, None, None, None, null_mut());
    if b.pair().is_none() && b.filter().is_none() {
        cancel_dns(b);
    }
    decref_and_unlock(b);
}

// ---------------------------------------------------------------------------------------------------------------
// Socket transport
// ---------------------------------------------------------------------------------------------------------------

/// Reads what one readiness allows into the input buffer. The seam for the dataplane's zero-copy receive: a
/// dataplane socket's received mbufs would be appended to `input` here instead of being copied by read(2).
fn read_from_socket(input: *mut evbuffer, fd: c_int, howmuch: isize) -> c_int {
    let howmuch = c_int::try_from(howmuch).unwrap_or(c_int::MAX);
    // SAFETY: a live bufferevent's input buffer; `fd` is its socket.
    unsafe { evbuffer_read(input, fd, howmuch) }
}

/// Writes at most `atmost` bytes of the output buffer (writev through the interposed call for dataplane fds).
fn write_to_socket(output: *mut evbuffer, fd: c_int, atmost: isize) -> c_int {
    // SAFETY: a live bufferevent's output buffer; `fd` is its socket.
    unsafe { evbuffer_write_atmost(output, fd, atmost) }
}

fn retriable(e: c_int) -> bool {
    e == libc::EINTR || e == libc::EAGAIN || e == libc::EWOULDBLOCK
}

unsafe extern "C" fn socket_readcb(fd: c_int, what: c_short, arg: *mut c_void) {
    guard((), || socket_read(fd, what, arg.cast()))
}

fn socket_read(fd: c_int, what_ev: c_short, p: *const Bev) {
    let Some(b) = linked(p) else { return };
    b.incref_and_lock();
    let mut what = EVENT_READING;
    'out: {
        if what_ev == EV_TIMEOUT {
            what |= EVENT_TIMEOUT;
        } else {
            let input = b.input();
            let high = b.public.wm_read.get().high;
            // The rate-limit query may itself suspend reading (a dry group), so it comes before the check below.
            let howmuch = match socket_read_amount(high, buf_len(input), || read_max(b)) {
                ReadAmount::Suspend => {
                    suspend_read(b, SUSPEND_WM);
                    break 'out;
                }
                ReadAmount::Upto(n) => n,
            };
            if b.read_suspended.get().is_suspended() {
                break 'out;
            }
            freeze(input, false, false);
            let res = read_from_socket(input, fd, howmuch);
            freeze(input, false, true);
            if res == -1 {
                let err = errno();
                if retriable(err) {
                    break 'out;
                }
                if err == libc::ECONNREFUSED {
                    b.connection_refused.set(true);
                    break 'out;
                }
                what |= EVENT_ERROR;
            } else if res == 0 {
                what |= EVENT_EOF;
            } else {
                decrement_buckets(b, res as isize, false);
                trigger(b, EV_READ, 0);
                break 'out;
            }
        }
        disable(b, EV_READ);
        run_eventcb(b, what, 0);
    }
    decref_and_unlock(p);
}

unsafe extern "C" fn socket_writecb(fd: c_int, what: c_short, arg: *mut c_void) {
    guard((), || socket_write(fd, what, arg.cast()))
}

fn socket_write(fd: c_int, what_ev: c_short, p: *const Bev) {
    let Some(b) = linked(p) else { return };
    b.incref_and_lock();
    let mut what = EVENT_WRITING;
    let mut connected = false;
    'out: {
        if what_ev == EV_TIMEOUT {
            what |= EVENT_TIMEOUT;
        } else {
            if b.connecting.get() {
                // SAFETY: no pointers.
                let mut c = unsafe { evutil_socket_finished_connecting_(fd) };
                if b.connection_refused.replace(false) {
                    c = -1;
                }
                if c == 0 {
                    break 'out;
                }
                b.connecting.set(false);
                if c < 0 {
                    ev_del(b.ev_write());
                    ev_del(b.ev_read());
                    run_eventcb(b, EVENT_ERROR, 0);
                    break 'out;
                }
                connected = true;
                remember_peer(b, fd);
                run_eventcb(b, EVENT_CONNECTED, 0);
                if b.enabled() & EV_WRITE == 0 || b.write_suspended.get().is_suspended() {
                    ev_del(b.ev_write());
                    break 'out;
                }
            }
            let atmost = write_max(b);
            if b.write_suspended.get().is_suspended() {
                break 'out;
            }
            let mut res = 0;
            if buf_len(b.output()) != 0 {
                freeze(b.output(), true, false);
                res = write_to_socket(b.output(), fd, atmost);
                freeze(b.output(), true, true);
                if res == -1 {
                    let err = errno();
                    if retriable(err) {
                        if buf_len(b.output()) == 0 {
                            ev_del(b.ev_write());
                        }
                        break 'out;
                    }
                    what |= EVENT_ERROR;
                } else if res == 0 {
                    what |= EVENT_EOF;
                }
                if res <= 0 {
                    disable(b, EV_WRITE);
                    run_eventcb(b, what, 0);
                    break 'out;
                }
                decrement_buckets(b, res as isize, true);
            }
            if buf_len(b.output()) == 0 {
                ev_del(b.ev_write());
            }
            // Right after a connect with nothing written, the connected event is the news; otherwise the write
            // callback runs when the output is at or below the low watermark.
            if res != 0 || !connected {
                trigger(b, EV_WRITE, 0);
            }
            break 'out;
        }
        disable(b, EV_WRITE);
        run_eventcb(b, what, 0);
    }
    decref_and_unlock(p);
}

fn remember_peer(b: &Bev, fd: c_int) {
    let mut addr = b.conn_address.get();
    if addr.ss_family != libc::AF_UNSPEC as libc::sa_family_t {
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` is a writable sockaddr_storage and `len` its size.
        unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) };
        b.conn_address.set(addr);
    }
}

/// The output buffer's callback: data added while writing is enabled and idle starts the write event.
unsafe extern "C" fn socket_outbuf_cb(_buf: *mut evbuffer, info: *const Info, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        // SAFETY: the evbuffer passes a valid info struct for the call.
        let added = unsafe { (*info).n_added };
        if added != 0
            && b.enabled() & EV_WRITE != 0
            && !ev_pending(b.ev_write(), EV_WRITE)
            && !b.write_suspended.get().is_suspended()
        {
            ev_add(b.ev_write(), Some(b.public.timeout_write.get()));
        }
    })
}

fn socket_assign(b: &Bev, fd: c_int) {
    let base = b.public.ev_base.get();
    let me = (b as *const Bev).cast();
    ev_assign(b.ev_read(), base, fd, EV_READ | EV_PERSIST | EV_FINALIZE, socket_readcb, me);
    ev_assign(b.ev_write(), base, fd, EV_WRITE | EV_PERSIST | EV_FINALIZE, socket_writecb, me);
}

fn socket_setfd(b: &Bev, fd: c_int) {
    b.lock();
    ev_del(b.ev_read());
    ev_del(b.ev_write());
    freeze(b.input(), false, false);
    freeze(b.output(), true, false);
    socket_assign(b, fd);
    if fd >= 0 {
        enable(b, b.enabled());
    }
    cancel_dns(b);
    b.unlock();
}

fn socket_new(base: *mut event_base, fd: c_int, options: c_int) -> *mut bufferevent {
    let Some(p) = alloc_bev(base, &bufferevent_ops_socket, options, Kind::Socket) else { return null_mut() };
    let b = linked(p).expect("live");
    const EVBUFFER_FLAG_DRAINS_TO_FD: u64 = 1;
    // SAFETY: this bufferevent's output buffer.
    unsafe { evbuffer_set_flags(b.output(), EVBUFFER_FLAG_DRAINS_TO_FD) };
    socket_assign(b, fd);
    add_buf_cb(b.output(), socket_outbuf_cb, p);
    freeze(b.input(), false, true);
    freeze(b.output(), true, true);
    b.c()
}

fn socket_connect(b: &Bev, sa: *const libc::sockaddr, socklen: c_int) -> c_int {
    b.incref_and_lock();
    let mut result = -1;
    let mut fd = get_fd(b).unwrap_or(-1);
    let mut ownfd = false;
    'done: {
        if fd < 0 {
            if sa.is_null() {
                break 'done;
            }
            // SAFETY: `sa` is the caller's sockaddr (non-NULL).
            let family = c_int::from(unsafe { (*sa).sa_family });
            // SAFETY: no pointers.
            fd = unsafe { evutil_socket_(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
            if fd < 0 {
                break 'done;
            }
            ownfd = true;
        }
        let mut r = 0;
        if !sa.is_null() {
            // SAFETY: `fd` is writable; `sa`/`socklen` are the caller's address.
            r = unsafe { evutil_socket_connect_(&mut fd, sa, socklen) };
            if r < 0 {
                if ownfd {
                    // SAFETY: the socket this call created.
                    unsafe { libc::close(fd) };
                }
                break 'done;
            }
        }
        socket_setfd(b, fd);
        if r == 0 {
            if be_enable(b, EV_WRITE) == 0 {
                b.connecting.set(true);
                result = 0;
            }
        } else if r == 1 {
            // Connected at once: report it from the loop, as the write event would.
            result = 0;
            b.connecting.set(true);
            trigger(b, EV_WRITE, OPT_DEFER_CALLBACKS);
        } else {
            // Refused at once (a loopback connect can know immediately).
            result = 0;
            run_eventcb(b, EVENT_ERROR, OPT_DEFER_CALLBACKS);
            disable(b, EV_WRITE | EV_READ);
        }
    }
    decref_and_unlock(b);
    result
}

unsafe extern "C" fn getaddrinfo_cb(result: c_int, ai: *mut evutil_addrinfo, arg: *mut c_void) {
    guard((), || {
        let p: *const Bev = arg.cast();
        let Some(b) = linked(p) else { return };
        b.lock();
        unsuspend_write(b, SUSPEND_LOOKUP);
        unsuspend_read(b, SUSPEND_LOOKUP);
        b.dns_request.set(null_mut());
        const EVUTIL_EAI_CANCEL: c_int = -90001;
        const EVUTIL_EAI_FAIL: c_int = -4;
        if result == EVUTIL_EAI_CANCEL {
            b.dns_error.set(result);
            decref_and_unlock(p);
            return;
        }
        let mut result = result;
        if result == 0 {
            // SAFETY: a successful lookup returns a non-empty list.
            let (addr, len) = unsafe { ((*ai).ai_addr, (*ai).ai_addrlen as usize) };
            if len <= CONN_ADDRESS_MAX {
                // SAFETY: `addr` holds `len` bytes; the destination is a sockaddr_storage.
                let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                unsafe {
                    ptr::copy_nonoverlapping(
                        addr.cast::<u8>(),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        len,
                    )
                };
                b.conn_address.set(ss);
            } else {
                result = EVUTIL_EAI_FAIL;
            }
        }
        if result != 0 {
            b.dns_error.set(result);
            run_eventcb(b, EVENT_ERROR, 0);
            decref_and_unlock(p);
            if !ai.is_null() {
                // SAFETY: the lookup's list, ours to free.
                unsafe { evutil_freeaddrinfo(ai) };
            }
            return;
        }
        // SAFETY: as above.
        let (addr, len) = unsafe { ((*ai).ai_addr, (*ai).ai_addrlen as c_int) };
        if socket_connect(b, addr, len) < 0 {
            run_eventcb(b, EVENT_ERROR, 0);
        }
        decref_and_unlock(p);
        // SAFETY: the lookup's list, ours to free.
        unsafe { evutil_freeaddrinfo(ai) };
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Pair transport
// ---------------------------------------------------------------------------------------------------------------

fn pair_incref_and_lock(b: &Bev) {
    b.incref_and_lock();
    if let Some(partner) = b.pair().and_then(|l| linked(l.partner.get())) {
        partner.incref_and_lock();
    }
}

fn pair_decref_and_unlock(b: &Bev) {
    if let Some(l) = b.pair() {
        if !l.partner.get().is_null() {
            decref_and_unlock(l.partner.get());
        }
    }
    decref_and_unlock(b);
}

fn pair_wants_to_talk(src: &Bev, dst: &Bev) -> bool {
    src.enabled() & EV_WRITE != 0
        && dst.enabled() & EV_READ != 0
        && !dst.read_suspended.get().is_suspended()
        && buf_len(src.output()) != 0
}

/// Moves `src`'s output into `dst`'s input, up to `dst`'s high read watermark unless `ignore_wm` (a flush), then
/// runs the callbacks the move earns.
fn pair_transfer(src: &Bev, dst: &Bev, ignore_wm: bool) {
    freeze(src.output(), true, false);
    freeze(dst.input(), false, false);
    'done: {
        let amount = pair_transfer_amount(dst.public.wm_read.get().high, buf_len(dst.input()), ignore_wm);
        let Some(limit) = amount else { break 'done };
        // libevent counts the room below the watermark as moved even when less was pending.
        let n = limit.unwrap_or_else(|| buf_len(src.output()));
        move_buffer(dst.input(), src.output(), limit);
        if n != 0 {
            reset_generic_read_timeout(dst);
            if buf_len(dst.output()) != 0 {
                reset_generic_write_timeout(dst);
            } else {
                ev_del(dst.ev_write());
            }
        }
        trigger(dst, EV_READ, 0);
        trigger(src, EV_WRITE, 0);
    }
    freeze(src.output(), true, true);
    freeze(dst.input(), false, true);
}

unsafe extern "C" fn pair_outbuf_cb(_buf: *mut evbuffer, info: *const Info, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        // SAFETY: the evbuffer passes a valid info struct for the call.
        let (added, deleted) = unsafe { ((*info).n_added, (*info).n_deleted) };
        pair_incref_and_lock(b);
        if added > deleted {
            if let Some(partner) = b.pair().and_then(|l| linked(l.partner.get())) {
                if pair_wants_to_talk(b, partner) {
                    pair_transfer(b, partner, false);
                }
            }
        }
        pair_decref_and_unlock(b);
    })
}

fn pair_elt_new(base: *mut event_base, options: c_int) -> Option<*const Bev> {
    let link = PairLink { partner: Cell::new(null()), unlinked_partner: Cell::new(null()) };
    let p = alloc_bev(base, &bufferevent_ops_pair, options, Kind::Pair(link))?;
    let b = linked(p).expect("live");
    add_buf_cb(b.output(), pair_outbuf_cb, p);
    generic_timeout_events(b);
    Some(p)
}

// ---------------------------------------------------------------------------------------------------------------
// Filter transport
// ---------------------------------------------------------------------------------------------------------------

unsafe extern "C" fn null_filter(
    src: *mut evbuffer,
    dst: *mut evbuffer,
    lim: isize,
    _mode: c_int,
    _ctx: *mut c_void,
) -> c_int {
    // SAFETY: the filter machinery passes two live buffers; a negative limit (no limit) moves everything.
    if unsafe { evbuffer_remove_buffer(src, dst, lim as usize) } >= 0 {
        FILTER_OK
    } else {
        FILTER_ERROR
    }
}

fn underlying_writebuf_full(f: &Filter, mode: c_int) -> bool {
    let Some(u) = linked(f.underlying.get()) else { return false };
    let high = u.public.wm_write.get().high;
    mode == FLUSH_NORMAL && high != 0 && buf_len(u.output()) >= high
}

fn readbuf_full(b: &Bev, mode: c_int) -> bool {
    let high = b.public.wm_read.get().high;
    mode == FLUSH_NORMAL && high != 0 && buf_len(b.input()) >= high
}

fn filter_process_input(b: &Bev, f: &Filter, mode: c_int, processed: &mut bool) -> c_int {
    let Some(u) = linked(f.underlying.get()) else { return FILTER_OK };
    if mode == FLUSH_NORMAL && (b.enabled() & EV_READ == 0 || readbuf_full(b, mode)) {
        return FILTER_OK;
    }
    let mut res;
    loop {
        let high = b.public.wm_read.get().high;
        let limit = if mode == FLUSH_NORMAL && high != 0 { high as isize - buf_len(b.input()) as isize } else { -1 };
        // SAFETY: the application's filter on the underlying input and this input, with its context.
        res = unsafe { (f.process_in)(u.input(), b.input(), limit, mode, f.context) };
        if res == FILTER_OK {
            *processed = true;
        }
        if !(res == FILTER_OK && b.enabled() & EV_READ != 0 && buf_len(u.input()) != 0 && !readbuf_full(b, mode)) {
            break;
        }
    }
    if *processed {
        reset_generic_read_timeout(b);
    }
    res
}

fn filter_process_output(b: &Bev, f: &Filter, mode: c_int, processed_out: &mut bool) -> c_int {
    let Some(u) = linked(f.underlying.get()) else { return FILTER_OK };
    if mode == FLUSH_NORMAL
        && (b.enabled() & EV_WRITE == 0 || underlying_writebuf_full(f, mode) || buf_len(b.output()) == 0)
    {
        return FILTER_OK;
    }
    // Our own adds to the output must not re-enter this function through the output callback.
    set_cb_flags(b.output(), f.outbuf_cb.get(), CB_ENABLED, false);
    let mut res;
    loop {
        let mut processed = false;
        let mut again = false;
        loop {
            let high = u.public.wm_write.get().high;
            let limit =
                if mode == FLUSH_NORMAL && high != 0 { high as isize - buf_len(u.output()) as isize } else { -1 };
            // SAFETY: the application's filter on this output and the underlying output, with its context.
            res = unsafe { (f.process_out)(b.output(), u.output(), limit, mode, f.context) };
            if res == FILTER_OK {
                processed = true;
                *processed_out = true;
            }
            if !(res == FILTER_OK
                && b.enabled() & EV_WRITE != 0
                && buf_len(b.output()) != 0
                && !underlying_writebuf_full(f, mode))
            {
                break;
            }
        }
        if processed {
            trigger(b, EV_WRITE, 0);
            if res == FILTER_OK
                && b.enabled() & EV_WRITE != 0
                && buf_len(b.output()) != 0
                && !underlying_writebuf_full(f, mode)
            {
                again = true;
            }
        }
        if !again {
            break;
        }
    }
    set_cb_flags(b.output(), f.outbuf_cb.get(), CB_ENABLED, true);
    if *processed_out {
        reset_generic_write_timeout(b);
    }
    res
}

unsafe extern "C" fn filter_outbuf_cb(_buf: *mut evbuffer, info: *const Info, arg: *mut c_void) {
    guard((), || {
        let p: *const Bev = arg.cast();
        let Some(b) = linked(p) else { return };
        // SAFETY: the evbuffer passes a valid info struct for the call.
        if unsafe { (*info).n_added } == 0 {
            return;
        }
        let Some(f) = b.filter() else { return };
        let mut processed = false;
        b.incref_and_lock();
        filter_process_output(b, f, FLUSH_NORMAL, &mut processed);
        decref_and_unlock(p);
    })
}

fn filter_read_nolock(b: &Bev, f: &Filter) {
    let Some(u) = linked(f.underlying.get()) else { return };
    if b.refcnt.get() == 0 {
        return;
    }
    let mode = if f.got_eof.get() { FLUSH_FINISHED } else { FLUSH_NORMAL };
    let mut processed = false;
    filter_process_input(b, f, mode, &mut processed);
    if processed {
        trigger(b, EV_READ, 0);
        // Data left below because our input is full: pick it up when the application drains the input.
        if buf_len(u.input()) > 0 && readbuf_full(b, mode) {
            set_cb_flags(b.input(), f.inbuf_cb.get(), CB_ENABLED, true);
        }
    }
}

unsafe extern "C" fn filter_inbuf_cb(_buf: *mut evbuffer, _info: *const Info, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        let Some(f) = b.filter() else { return };
        b.lock();
        let mode = if f.got_eof.get() { FLUSH_FINISHED } else { FLUSH_NORMAL };
        if !readbuf_full(b, mode) {
            set_cb_flags(b.input(), f.inbuf_cb.get(), CB_ENABLED, false);
            if linked(f.underlying.get()).is_some_and(|u| buf_len(u.input()) > 0) {
                filter_read_nolock(b, f);
            }
        }
        b.unlock();
    })
}

unsafe extern "C" fn filter_readcb(_u: *mut bufferevent, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        let Some(f) = b.filter() else { return };
        b.lock();
        filter_read_nolock(b, f);
        b.unlock();
    })
}

unsafe extern "C" fn filter_writecb(_u: *mut bufferevent, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        let Some(f) = b.filter() else { return };
        b.lock();
        if b.refcnt.get() > 0 {
            let mut processed = false;
            filter_process_output(b, f, FLUSH_NORMAL, &mut processed);
        }
        b.unlock();
    })
}

unsafe extern "C" fn filter_eventcb(_u: *mut bufferevent, what: c_short, arg: *mut c_void) {
    guard((), || {
        let Some(b) = linked(arg.cast()) else { return };
        b.lock();
        if b.refcnt.get() > 0 {
            run_eventcb(b, what, 0);
        }
        b.unlock();
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limiting
// ---------------------------------------------------------------------------------------------------------------

/// `struct bufferevent_rate_limit_group` (opaque to C).
pub struct bufferevent_rate_limit_group {
    lock: Cell<*mut c_void>,
    members: RefCell<Vec<*const Bev>>,
    cfg: Cell<BucketCfg>,
    limit: Cell<TokenBucket>,
    read_suspended: Cell<bool>,
    write_suspended: Cell<bool>,
    pending_unsuspend_read: Cell<bool>,
    pending_unsuspend_write: Cell<bool>,
    min_share: Cell<isize>,
    configured_min_share: Cell<usize>,
    total_read: Cell<u64>,
    total_written: Cell<u64>,
    refill: UnsafeCell<event>,
    base: *mut event_base,
    rand: UnsafeCell<evutil_weakrand_state>,
}

type Group = bufferevent_rate_limit_group;

impl Group {
    fn lock(&self) {
        evthread_lock(self.lock.get());
    }
    fn unlock(&self) {
        evthread_unlock(self.lock.get());
    }
}

fn group_ref<'a>(g: *const Group) -> Option<&'a Group> {
    // SAFETY: NULL or a live group from bufferevent_rate_limit_group_new (members unlink before it is freed).
    unsafe { g.as_ref() }
}

fn update_buckets(b: &Bev, r: &RateLimit) {
    // SAFETY: `cfg` is the application's live configuration (its contract with set_rate_limit).
    let Some(cfg) = (unsafe { r.cfg.get().as_ref() }) else { return };
    let tick = cfg.tick_of(now_cached(b.public.ev_base.get()));
    let mut lim = r.limit.get();
    if tick != lim.last_updated {
        lim.update(cfg, tick);
        r.limit.set(lim);
    }
}

/// The most one read (or write) may move now: max_single_* clamped by the bucket and the group share.
fn rlim_max(b: &Bev, is_write: bool) -> isize {
    let mut max = if is_write { b.max_single_write.get() } else { b.max_single_read.get() };
    let Some(r) = b.rate() else { return max };
    if !r.cfg.get().is_null() {
        update_buckets(b, r);
        let lim = r.limit.get();
        max = max.min((if is_write { lim.write_limit } else { lim.read_limit }) as isize);
    }
    if let Some(g) = group_ref(r.group.get()) {
        g.lock();
        let suspended = if is_write { g.write_suspended.get() } else { g.read_suspended.get() };
        let share = if suspended {
            if is_write {
                suspend_write(b, SUSPEND_BW_GROUP);
            } else {
                suspend_read(b, SUSPEND_BW_GROUP);
            }
            0
        } else {
            let lim = g.limit.get();
            let tokens = if is_write { lim.write_limit } else { lim.read_limit };
            group_share(tokens, g.members.borrow().len(), g.min_share.get())
        };
        g.unlock();
        max = max.min(share);
    }
    max.max(0)
}

fn read_max(b: &Bev) -> isize {
    rlim_max(b, false)
}

fn write_max(b: &Bev) -> isize {
    rlim_max(b, true)
}

fn refill_event_add(r: &RateLimit) -> c_int {
    // SAFETY: `cfg` is the application's live configuration.
    let tv = unsafe { r.cfg.get().as_ref() }.map(|c| c.tick_timeout);
    // A zero tick still has to wait for the loop, so it is added with a zero (not absent) timeout.
    let tv = tv.unwrap_or(libc::timeval { tv_sec: 0, tv_usec: 0 });
    // SAFETY: the refill event inside the live rate-limit box.
    unsafe { event_add(r.refill.get(), &tv) }
}

/// Charges `bytes` read (or written, `write`) to the bufferevent's bucket and its group's, suspending the
/// direction when a bucket runs dry and resuming it when the charge leaves it positive again.
fn decrement_buckets(b: &Bev, bytes: isize, write: bool) {
    let Some(r) = b.rate() else { return };
    let take = |lim: &mut TokenBucket| {
        let left = if write { &mut lim.write_limit } else { &mut lim.read_limit };
        *left -= bytes as i64;
        *left
    };
    if !r.cfg.get().is_null() {
        let mut lim = r.limit.get();
        let left = take(&mut lim);
        r.limit.set(lim);
        if left <= 0 {
            suspend(b, write, SUSPEND_BW);
            refill_event_add(r);
        } else if suspension(b, write).get().has(SUSPEND_BW) {
            // The refill event serves both directions: it goes only when the other one does not wait on it.
            if !suspension(b, !write).get().has(SUSPEND_BW) {
                ev_del(r.refill.get());
            }
            unsuspend(b, write, SUSPEND_BW);
        }
    }
    if let Some(g) = group_ref(r.group.get()) {
        g.lock();
        let mut lim = g.limit.get();
        let left = take(&mut lim);
        g.limit.set(lim);
        let total = if write { &g.total_written } else { &g.total_read };
        total.set(total.get() + bytes as u64);
        let suspended = if write { g.write_suspended.get() } else { g.read_suspended.get() };
        if left <= 0 {
            group_suspend(g, write);
        } else if suspended {
            group_unsuspend(g, write);
        }
        g.unlock();
    }
}

/// Suspends every member's direction (the group's bucket ran dry).
fn group_suspend(g: &Group, write: bool) {
    if write {
        g.write_suspended.set(true);
        g.pending_unsuspend_write.set(false);
    } else {
        g.read_suspended.set(true);
        g.pending_unsuspend_read.set(false);
    }
    // A member whose lock is busy is not waited for (its holder may be waiting for the group lock we hold): it
    // finds the group suspended when it next asks how much it may move.
    let members = g.members.borrow().clone();
    for b in members.into_iter().filter_map(linked) {
        if !evthread_try_lock(b.lock.get()) {
            continue;
        }
        if write {
            suspend_write(b, SUSPEND_BW_GROUP);
        } else {
            suspend_read(b, SUSPEND_BW_GROUP);
        }
        b.unlock();
    }
}

/// Lets every member run again, starting at a random member so none is always first.
fn group_unsuspend(g: &Group, write: bool) {
    if write {
        g.write_suspended.set(false);
    } else {
        g.read_suspended.set(false);
    }
    // Members whose lock is busy are retried at the next refill (pending_unsuspend_*), as in libevent.
    let members = g.members.borrow().clone();
    let mut again = false;
    if !members.is_empty() {
        let n = c_int::try_from(members.len()).unwrap_or(c_int::MAX);
        // SAFETY: the group's own generator state.
        let first = unsafe { evutil_weakrand_range_(g.rand.get(), n) } as usize;
        for i in 0..members.len() {
            let Some(b) = linked(members[(first + i) % members.len()]) else { continue };
            if !evthread_try_lock(b.lock.get()) {
                again = true;
                continue;
            }
            if write {
                unsuspend_write(b, SUSPEND_BW_GROUP);
            } else {
                unsuspend_read(b, SUSPEND_BW_GROUP);
            }
            b.unlock();
        }
    }
    if write {
        g.pending_unsuspend_write.set(again);
    } else {
        g.pending_unsuspend_read.set(again);
    }
}

unsafe extern "C" fn refill_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    guard((), || {
        let p: *const Bev = arg.cast();
        let Some(b) = linked(p) else { return };
        b.incref_and_lock();
        if let Some(r) = b.rate() {
            // SAFETY: the application's live configuration.
            if let Some(cfg) = unsafe { r.cfg.get().as_ref() } {
                let tick = cfg.tick_of(now_cached(b.public.ev_base.get()));
                let mut lim = r.limit.get();
                lim.update(cfg, tick);
                r.limit.set(lim);
                let mut again = false;
                if b.read_suspended.get().has(SUSPEND_BW) {
                    if lim.read_limit > 0 {
                        unsuspend_read(b, SUSPEND_BW);
                    } else {
                        again = true;
                    }
                }
                if b.write_suspended.get().has(SUSPEND_BW) {
                    if lim.write_limit > 0 {
                        unsuspend_write(b, SUSPEND_BW);
                    } else {
                        again = true;
                    }
                }
                if again {
                    refill_event_add(r);
                }
            }
        }
        decref_and_unlock(p);
    })
}

unsafe extern "C" fn group_refill_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    guard((), || {
        let Some(g) = group_ref(arg.cast()) else { return };
        let now = now_cached(g.base);
        g.lock();
        let cfg = g.cfg.get();
        let mut lim = g.limit.get();
        lim.update(&cfg, cfg.tick_of(now));
        g.limit.set(lim);
        let min = g.min_share.get() as i64;
        if g.pending_unsuspend_read.get() || (g.read_suspended.get() && lim.read_limit >= min) {
            group_unsuspend(g, false);
        }
        if g.pending_unsuspend_write.get() || (g.write_suspended.get() && lim.write_limit >= min) {
            group_unsuspend(g, true);
        }
        g.unlock();
    })
}

/// The bufferevent's rate-limit record, created (with its refill event) on first use.
fn rate_limit_of(b: &Bev) -> &RateLimit {
    if b.rate.get().is_null() {
        let r = Box::new(RateLimit {
            cfg: Cell::new(null()),
            limit: Cell::new(TokenBucket::default()),
            refill: UnsafeCell::new(event::zeroed()),
            group: Cell::new(null()),
        });
        let r = Box::into_raw(r);
        b.rate.set(r);
        // SAFETY: just allocated.
        let refill = unsafe { (*r).refill.get() };
        ev_assign(refill, b.public.ev_base.get(), -1, EV_FINALIZE, refill_cb, (b as *const Bev).cast());
    }
    b.rate().expect("just set")
}

fn set_rate_limit(b: &Bev, cfg: *const BucketCfg) -> c_int {
    b.lock();
    // SAFETY: NULL or the application's configuration from ev_token_bucket_cfg_new.
    let Some(c) = (unsafe { cfg.as_ref() }) else {
        if let Some(r) = b.rate() {
            r.cfg.set(null());
            unsuspend_read(b, SUSPEND_BW);
            unsuspend_write(b, SUSPEND_BW);
            ev_del(r.refill.get());
        }
        b.unlock();
        return 0;
    };
    let tick = c.tick_of(now_cached(b.public.ev_base.get()));
    if b.rate().is_some_and(|r| ptr::eq(r.cfg.get(), cfg)) {
        b.unlock();
        return 0;
    }
    let r = rate_limit_of(b);
    let reinit = !r.cfg.get().is_null();
    r.cfg.set(cfg);
    if reinit {
        let mut lim = r.limit.get();
        lim.clip(c);
        r.limit.set(lim);
        ev_del(r.refill.get());
    } else {
        r.limit.set(TokenBucket::new(c, tick));
    }
    let lim = r.limit.get();
    let mut suspended = false;
    if lim.read_limit > 0 {
        unsuspend_read(b, SUSPEND_BW);
    } else {
        suspend_read(b, SUSPEND_BW);
        suspended = true;
    }
    if lim.write_limit > 0 {
        unsuspend_write(b, SUSPEND_BW);
    } else {
        suspend_write(b, SUSPEND_BW);
        suspended = true;
    }
    if suspended {
        refill_event_add(r);
    }
    b.unlock();
    0
}

fn remove_from_group(b: &Bev, unsuspend: bool) {
    b.lock();
    if let Some(r) = b.rate() {
        if let Some(g) = group_ref(r.group.get()) {
            g.lock();
            r.group.set(null());
            g.members.borrow_mut().retain(|&m| !ptr::eq(m, b));
            g.unlock();
        }
    }
    if unsuspend {
        unsuspend_read(b, SUSPEND_BW_GROUP);
        unsuspend_write(b, SUSPEND_BW_GROUP);
    }
    b.unlock();
}

fn set_min_share(g: &Group, share: usize) -> c_int {
    if share > isize::MAX as usize {
        return -1;
    }
    g.configured_min_share.set(share);
    // No share above one tick's rate: at steady state every member must be able to get its share each tick.
    let cfg = g.cfg.get();
    let share = share.min(cfg.read_rate).min(cfg.write_rate);
    g.min_share.set(share as isize);
    0
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: construction
// ---------------------------------------------------------------------------------------------------------------

/// `bufferevent_socket_new`.
///
/// # Safety
/// `base` is NULL or a live base; `fd` is -1 or a socket the caller owns (given away with BEV_OPT_CLOSE_ON_FREE).
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_new(base: *mut event_base, fd: c_int, options: c_int) -> *mut bufferevent {
    guard(null_mut(), || socket_new(base, fd, options))
}

/// `bufferevent_new` (compat): a socket bufferevent on the current base with callbacks.
///
/// # Safety
/// As `bufferevent_socket_new`; the callbacks take `cbarg`.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_new(
    fd: c_int,
    readcb: Option<DataCb>,
    writecb: Option<DataCb>,
    eventcb: Option<EventCbFn>,
    cbarg: *mut c_void,
) -> *mut bufferevent {
    guard(null_mut(), || {
        let p = socket_new(null_mut(), fd, 0);
        // SAFETY: NULL or just created.
        if let Some(b) = unsafe { bev(p) } {
            setcb(b, readcb, writecb, eventcb, cbarg);
        }
        p
    })
}

/// `bufferevent_socket_connect`.
///
/// # Safety
/// `bufev` is a live bufferevent; `sa` is NULL or `socklen` readable bytes of a socket address.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_connect(
    bufev: *mut bufferevent,
    sa: *const libc::sockaddr,
    socklen: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        socket_connect(b, sa, socklen)
    })
}

/// `bufferevent_socket_connect_hostname`: resolves with `evutil_getaddrinfo` (asynchronously through evdns when
/// `evdns_base` is given and evdns is loaded), then connects to the first address.
///
/// # Safety
/// `bufev` is a live socket bufferevent; `hostname` a C string.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_connect_hostname(
    bufev: *mut bufferevent,
    evdns_base: *mut c_void,
    family: c_int,
    hostname: *const c_char,
    port: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        if family != libc::AF_INET && family != libc::AF_INET6 && family != libc::AF_UNSPEC {
            return -1;
        }
        if !(1..=65535).contains(&port) {
            return -1;
        }
        // SAFETY: all-zero is a valid addrinfo hint.
        let mut hint: evutil_addrinfo = unsafe { std::mem::zeroed() };
        hint.ai_family = family;
        hint.ai_protocol = libc::IPPROTO_TCP;
        hint.ai_socktype = libc::SOCK_STREAM;
        let portbuf = std::ffi::CString::new(port.to_string()).expect("digits");
        b.lock();
        b.dns_error.set(0);
        suspend_write(b, SUSPEND_LOOKUP);
        suspend_read(b, SUSPEND_LOOKUP);
        // The lookup's callback holds a reference.
        b.refcnt.set(b.refcnt.get() + 1);
        let me = (b as *const Bev).cast_mut().cast::<c_void>();
        // SAFETY: C strings and a hint on this stack; the callback gets this bufferevent, kept alive by the
        // reference just taken.
        let req = unsafe {
            evutil_getaddrinfo_async_(evdns_base, hostname, portbuf.as_ptr(), &hint, Some(getaddrinfo_cb), me)
        };
        // A synchronous lookup has finished (and cleared its request) by now.
        if b.refcnt.get() > 0 && !req.is_null() {
            b.dns_request.set(req);
        }
        b.unlock();
        0
    })
}

/// `bufferevent_socket_get_dns_error`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_get_dns_error(bufev: *mut bufferevent) -> c_int {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return 0 };
        b.lock();
        let r = b.dns_error.get();
        b.unlock();
        r
    })
}

/// `bufferevent_pair_new`: two bufferevents whose outputs feed each other's inputs (always deferred callbacks).
///
/// # Safety
/// `base` a live base; `pair` has room for two pointers.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_pair_new(
    base: *mut event_base,
    options: c_int,
    pair: *mut *mut bufferevent,
) -> c_int {
    guard(-1, || {
        if pair.is_null() {
            return -1;
        }
        let options = options | OPT_DEFER_CALLBACKS;
        let Some(p1) = pair_elt_new(base, options) else { return -1 };
        let Some(p2) = pair_elt_new(base, options & !OPT_THREADSAFE) else {
            free_bev(linked(p1).expect("live"));
            return -1;
        };
        let (b1, b2) = (linked(p1).expect("live"), linked(p2).expect("live"));
        if options & OPT_THREADSAFE != 0 {
            enable_locking(b2, b1.lock.get());
        }
        b1.pair().expect("pair").partner.set(p2);
        b2.pair().expect("pair").partner.set(p1);
        for b in [b1, b2] {
            freeze(b.input(), false, true);
            freeze(b.output(), true, true);
        }
        // SAFETY: the caller's promise: two writable slots.
        unsafe {
            *pair = b1.c();
            *pair.add(1) = b2.c();
        }
        0
    })
}

/// `bufferevent_pair_get_partner`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_pair_get_partner(bufev: *mut bufferevent) -> *mut bufferevent {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return null_mut() };
        let Some(l) = b.pair() else { return null_mut() };
        pair_incref_and_lock(b);
        let partner = linked(l.partner.get()).map_or(null_mut(), Bev::c);
        pair_decref_and_unlock(b);
        partner
    })
}

/// `bufferevent_filter_new`.
///
/// # Safety
/// `underlying` is a live bufferevent; the filters and `free_context` take `ctx`.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_filter_new(
    underlying: *mut bufferevent,
    input_filter: Option<FilterCb>,
    output_filter: Option<FilterCb>,
    options: c_int,
    free_context: Option<FreeContextFn>,
    ctx: *mut c_void,
) -> *mut bufferevent {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(u) = (unsafe { bev(underlying) }) else { return null_mut() };
        let filter = Filter {
            underlying: Cell::new(u),
            inbuf_cb: Cell::new(null_mut()),
            outbuf_cb: Cell::new(null_mut()),
            got_eof: Cell::new(false),
            free_context,
            process_in: input_filter.unwrap_or(null_filter),
            process_out: output_filter.unwrap_or(null_filter),
            context: ctx,
        };
        let Some(p) =
            alloc_bev(u.public.ev_base.get(), &bufferevent_ops_filter, options & !OPT_THREADSAFE, Kind::Filter(filter))
        else {
            return null_mut();
        };
        let b = linked(p).expect("live");
        let f = b.filter().expect("filter");
        if options & OPT_THREADSAFE != 0 {
            enable_locking(b, null_mut());
        }
        setcb(u, Some(filter_readcb), Some(filter_writecb), Some(filter_eventcb), p.cast_mut().cast());
        f.inbuf_cb.set(add_buf_cb(b.input(), filter_inbuf_cb, p));
        set_cb_flags(b.input(), f.inbuf_cb.get(), CB_ENABLED, false);
        f.outbuf_cb.set(add_buf_cb(b.output(), filter_outbuf_cb, p));
        generic_timeout_events(b);
        u.lock();
        u.refcnt.set(u.refcnt.get() + 1);
        u.unlock();
        enable(u, EV_READ | EV_WRITE);
        suspend_read(u, SUSPEND_FILT_READ);
        b.c()
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: life cycle, locking
// ---------------------------------------------------------------------------------------------------------------

/// `bufferevent_free`. Safe inside the bufferevent's own callbacks: the memory goes with the last reference.
///
/// # Safety
/// `bufev` is a live bufferevent, not used by the caller afterwards.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_free(bufev: *mut bufferevent) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            free_bev(b);
        }
    })
}

/// `bufferevent_incref`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_incref(bufev: *mut bufferevent) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            b.incref_and_lock();
            b.unlock();
        }
    })
}

/// `bufferevent_decref`: 1 if that freed it, else 0.
///
/// # Safety
/// `bufev` is a live bufferevent holding a reference the caller took.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decref(bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        c_int::from(decref_and_unlock(b))
    })
}

/// `bufferevent_lock`: takes the lock and a reference (released by `bufferevent_unlock`).
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_lock(bufev: *mut bufferevent) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            b.incref_and_lock();
        }
    })
}

/// `bufferevent_unlock`.
///
/// # Safety
/// `bufev` is a bufferevent the caller locked with `bufferevent_lock`.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_unlock(bufev: *mut bufferevent) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            decref_and_unlock(b);
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: callbacks, buffers, data
// ---------------------------------------------------------------------------------------------------------------

/// `bufferevent_setcb`.
///
/// # Safety
/// `bufev` is a live bufferevent; the callbacks take `cbarg`.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_setcb(
    bufev: *mut bufferevent,
    readcb: Option<DataCb>,
    writecb: Option<DataCb>,
    eventcb: Option<EventCbFn>,
    cbarg: *mut c_void,
) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            setcb(b, readcb, writecb, eventcb, cbarg);
        }
    })
}

/// `bufferevent_getcb`.
///
/// # Safety
/// `bufev` is a live bufferevent; each out pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_getcb(
    bufev: *mut bufferevent,
    readcb: *mut Option<DataCb>,
    writecb: *mut Option<DataCb>,
    eventcb: *mut Option<EventCbFn>,
    cbarg: *mut *mut c_void,
) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return };
        b.lock();
        // SAFETY: the caller's promise: NULL or writable.
        unsafe {
            if let Some(o) = readcb.as_mut() {
                *o = b.public.readcb.get();
            }
            if let Some(o) = writecb.as_mut() {
                *o = b.public.writecb.get();
            }
            if let Some(o) = eventcb.as_mut() {
                *o = b.public.errorcb.get();
            }
            if let Some(o) = cbarg.as_mut() {
                *o = b.public.cbarg.get();
            }
        }
        b.unlock();
    })
}

/// `bufferevent_setfd`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_setfd(bufev: *mut bufferevent, fd: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        let r = set_fd(b, fd);
        b.unlock();
        r
    })
}

/// `bufferevent_getfd`: the socket, or -1 (pairs have none).
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_getfd(bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        let r = get_fd(b).unwrap_or(-1);
        b.unlock();
        r
    })
}

/// `bufferevent_get_underlying`: a filter's underlying bufferevent, else NULL.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_underlying(bufev: *mut bufferevent) -> *mut bufferevent {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return null_mut() };
        linked(underlying_of(b)).map_or(null_mut(), Bev::c)
    })
}

/// `bufferevent_get_base`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_base(bufev: *mut bufferevent) -> *mut event_base {
    // SAFETY: the caller's promise.
    guard(null_mut(), || unsafe { bev(bufev) }.map_or(null_mut(), |b| b.public.ev_base.get()))
}

/// `bufferevent_get_input`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_input(bufev: *mut bufferevent) -> *mut evbuffer {
    // SAFETY: the caller's promise.
    guard(null_mut(), || unsafe { bev(bufev) }.map_or(null_mut(), Bev::input))
}

/// `bufferevent_get_output`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_output(bufev: *mut bufferevent) -> *mut evbuffer {
    // SAFETY: the caller's promise.
    guard(null_mut(), || unsafe { bev(bufev) }.map_or(null_mut(), Bev::output))
}

/// `bufferevent_write`: appends to the output buffer.
///
/// # Safety
/// `bufev` is a live bufferevent; `data` has `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_write(bufev: *mut bufferevent, data: *const c_void, size: usize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        // SAFETY: the caller's promise about `data`.
        if unsafe { evbuffer_add(b.output(), data, size) } == -1 {
            -1
        } else {
            0
        }
    })
}

/// `bufferevent_write_buffer`: moves all of `buf` to the output buffer.
///
/// # Safety
/// `bufev` is a live bufferevent; `buf` a live evbuffer.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_write_buffer(bufev: *mut bufferevent, buf: *mut evbuffer) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        // SAFETY: the caller's promise about `buf`.
        if unsafe { evbuffer_add_buffer(b.output(), buf) } == -1 {
            -1
        } else {
            0
        }
    })
}

/// `bufferevent_read`: removes up to `size` bytes from the input buffer.
///
/// # Safety
/// `bufev` is a live bufferevent; `data` has `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_read(bufev: *mut bufferevent, data: *mut c_void, size: usize) -> usize {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return 0 };
        // SAFETY: the caller's promise about `data`. libevent returns evbuffer_remove's -1 cast to size_t.
        unsafe { evbuffer_remove(b.input(), data, size) as isize as usize }
    })
}

/// `bufferevent_read_buffer`: moves all of the input buffer to `buf`.
///
/// # Safety
/// `bufev` is a live bufferevent; `buf` a live evbuffer.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_read_buffer(bufev: *mut bufferevent, buf: *mut evbuffer) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        // SAFETY: the caller's promise about `buf`.
        unsafe { evbuffer_add_buffer(buf, b.input()) }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: enabling, timeouts, watermarks, triggers, flush, priority
// ---------------------------------------------------------------------------------------------------------------

/// `bufferevent_enable`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_enable(bufev: *mut bufferevent, event: c_short) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, |b| enable(b, event)))
}

/// `bufferevent_disable`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_disable(bufev: *mut bufferevent, event: c_short) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, |b| disable(b, event)))
}

/// `bufferevent_get_enabled`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_enabled(bufev: *mut bufferevent) -> c_short {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return 0 };
        b.lock();
        let r = b.enabled();
        b.unlock();
        r
    })
}

/// `bufferevent_set_timeouts`: NULL (or zero) clears a direction's timeout.
///
/// # Safety
/// `bufev` is a live bufferevent; the timevals NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_set_timeouts(
    bufev: *mut bufferevent,
    tv_read: *const libc::timeval,
    tv_write: *const libc::timeval,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
        b.lock();
        // SAFETY: the caller's promise: NULL or readable.
        unsafe {
            b.public.timeout_read.set(tv_read.as_ref().copied().unwrap_or(zero));
            b.public.timeout_write.set(tv_write.as_ref().copied().unwrap_or(zero));
        }
        let r = be_adj_timeouts(b);
        b.unlock();
        r
    })
}

/// `bufferevent_settimeout` (compat): whole seconds, 0 for none.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_settimeout(bufev: *mut bufferevent, timeout_read: c_int, timeout_write: c_int) {
    let r = libc::timeval { tv_sec: timeout_read.into(), tv_usec: 0 };
    let w = libc::timeval { tv_sec: timeout_write.into(), tv_usec: 0 };
    let rp = if timeout_read != 0 { &r as *const libc::timeval } else { null() };
    let wp = if timeout_write != 0 { &w as *const libc::timeval } else { null() };
    // SAFETY: the caller's promise; the timevals are on this stack.
    unsafe { bufferevent_set_timeouts(bufev, rp, wp) };
}

/// `bufferevent_setwatermark`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_setwatermark(bufev: *mut bufferevent, events: c_short, low: usize, high: usize) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return };
        b.lock();
        if events & EV_WRITE != 0 {
            b.public.wm_write.set(event_watermark { low, high });
        }
        if events & EV_READ != 0 {
            b.public.wm_read.set(event_watermark { low, high });
            if high != 0 {
                // A high watermark: a NODEFER callback on the input suspends and resumes reading around it.
                if b.read_wm_entry.get().is_null() {
                    b.read_wm_entry.set(add_buf_cb(b.input(), inbuf_wm_cb, b));
                }
                set_cb_flags(b.input(), b.read_wm_entry.get(), CB_ENABLED | CB_NODEFER, true);
                if buf_len(b.input()) >= high {
                    suspend_read(b, SUSPEND_WM);
                } else {
                    unsuspend_read(b, SUSPEND_WM);
                }
            } else {
                set_cb_flags(b.input(), b.read_wm_entry.get(), CB_ENABLED, false);
                unsuspend_read(b, SUSPEND_WM);
            }
        }
        b.unlock();
    })
}

/// `bufferevent_getwatermark`: `events` must be exactly EV_READ or EV_WRITE.
///
/// # Safety
/// `bufev` is a live bufferevent; the out pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_getwatermark(
    bufev: *mut bufferevent,
    events: c_short,
    lowmark: *mut usize,
    highmark: *mut usize,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        let wm = match events {
            EV_WRITE => b.public.wm_write.get(),
            EV_READ => b.public.wm_read.get(),
            _ => return -1,
        };
        // Taken and released as libevent does, so a reader waits for a writer holding the lock.
        b.lock();
        b.unlock();
        // SAFETY: the caller's promise: NULL or writable.
        unsafe {
            if let Some(o) = lowmark.as_mut() {
                *o = wm.low;
            }
            if let Some(o) = highmark.as_mut() {
                *o = wm.high;
            }
        }
        0
    })
}

/// `bufferevent_trigger`: runs the data callbacks for `iotype` as if data had arrived or been written.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_trigger(bufev: *mut bufferevent, iotype: c_short, options: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return };
        b.incref_and_lock();
        trigger(b, iotype, options & TRIG_ALL);
        decref_and_unlock(b);
    })
}

/// `bufferevent_trigger_event`: runs the event callback with `what`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_trigger_event(bufev: *mut bufferevent, what: c_short, options: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return };
        b.incref_and_lock();
        run_eventcb(b, what, options & TRIG_ALL);
        decref_and_unlock(b);
    })
}

/// `bufferevent_flush`: sockets do nothing (0); pairs and filters push data through (1 if a filter moved any).
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_flush(bufev: *mut bufferevent, iotype: c_short, mode: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, |b| flush(b, iotype, mode)))
}

/// `bufferevent_priority_set`: sockets only (-1 for pairs and filters).
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_priority_set(bufev: *mut bufferevent, priority: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        if !matches!(b.kind, Kind::Socket) {
            return -1;
        }
        b.lock();
        // SAFETY: events inside this live bufferevent.
        let r = unsafe {
            if event_priority_set(b.ev_read(), priority) == -1 || event_priority_set(b.ev_write(), priority) == -1 {
                -1
            } else {
                0
            }
        };
        if r == 0 {
            // The deferred callbacks follow the events' priority, as in libevent.
            b.deferred_priority.set(Some(priority));
            if let Some(d) = b.deferred.get() {
                d.set_priority(priority);
            }
        }
        b.unlock();
        r
    })
}

/// `bufferevent_get_priority`.
///
/// # Safety
/// `bufev` is a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_priority(bufev: *const bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        if ev_initialized(b.ev_read()) {
            // SAFETY: an initialized event inside this live bufferevent.
            unsafe { event_get_priority(b.ev_read()) }
        } else {
            // SAFETY: NULL or a live base.
            unsafe { event_base_get_npriorities(b.public.ev_base.get()) / 2 }
        }
    })
}

/// `bufferevent_base_set` (compat): moves a socket bufferevent to `base` (-1 for other kinds).
///
/// # Safety
/// `base` a live base; `bufev` a live bufferevent with no pending events.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_base_set(base: *mut event_base, bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        if !matches!(b.kind, Kind::Socket) {
            return -1;
        }
        b.lock();
        b.public.ev_base.set(base);
        // SAFETY: events inside this live bufferevent; the caller's base.
        let r = unsafe {
            if event_base_set(base, b.ev_read()) == -1 {
                -1
            } else {
                event_base_set(base, b.ev_write())
            }
        };
        b.unlock();
        r
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: rate limits
// ---------------------------------------------------------------------------------------------------------------

/// `ev_token_bucket_cfg_new`: NULL for rates of 0, rates above bursts, or values above EV_RATE_LIMIT_MAX.
///
/// # Safety
/// `tick_len` NULL (one second) or readable.
#[no_mangle]
pub unsafe extern "C" fn ev_token_bucket_cfg_new(
    read_rate: usize,
    read_burst: usize,
    write_rate: usize,
    write_burst: usize,
    tick_len: *const libc::timeval,
) -> *mut ev_token_bucket_cfg {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let tick = unsafe { tick_len.as_ref() }.copied();
        BucketCfg::new(read_rate, read_burst, write_rate, write_burst, tick)
            .map_or(null_mut(), |c| Box::into_raw(Box::new(c)))
    })
}

/// `ev_token_bucket_cfg_free`.
///
/// # Safety
/// `cfg` NULL or from `ev_token_bucket_cfg_new`, no longer used by any bufferevent.
#[no_mangle]
pub unsafe extern "C" fn ev_token_bucket_cfg_free(cfg: *mut ev_token_bucket_cfg) {
    guard((), || {
        if !cfg.is_null() {
            // SAFETY: the caller's promise: from Box::into_raw in ev_token_bucket_cfg_new, freed once.
            drop(unsafe { Box::from_raw(cfg) });
        }
    })
}

/// `bufferevent_set_rate_limit`: NULL removes the limit. The configuration is used, not copied.
///
/// # Safety
/// `bufev` a live bufferevent; `cfg` NULL or a configuration that outlives its use here.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_set_rate_limit(bufev: *mut bufferevent, cfg: *mut ev_token_bucket_cfg) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, |b| set_rate_limit(b, cfg)))
}

/// `bufferevent_get_token_bucket_cfg`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_token_bucket_cfg(bufev: *const bufferevent) -> *const ev_token_bucket_cfg {
    guard(null(), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return null() };
        b.lock();
        let r = b.rate().map_or(null(), |r| r.cfg.get());
        b.unlock();
        r
    })
}

/// `bufferevent_rate_limit_group_new`: a shared bucket refilled every tick (the configuration is copied).
///
/// # Safety
/// `base` a live base; `cfg` a configuration.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_new(
    base: *mut event_base,
    cfg: *const ev_token_bucket_cfg,
) -> *mut bufferevent_rate_limit_group {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(c) = (unsafe { cfg.as_ref() }).copied() else { return null_mut() };
        let now = now_cached(base);
        let g = Box::new(Group {
            lock: Cell::new(evthread_alloc_recursive()),
            members: RefCell::new(Vec::new()),
            cfg: Cell::new(c),
            limit: Cell::new(TokenBucket::new(&c, c.tick_of(now))),
            read_suspended: Cell::new(false),
            write_suspended: Cell::new(false),
            pending_unsuspend_read: Cell::new(false),
            pending_unsuspend_write: Cell::new(false),
            min_share: Cell::new(0),
            configured_min_share: Cell::new(0),
            total_read: Cell::new(0),
            total_written: Cell::new(0),
            refill: UnsafeCell::new(event::zeroed()),
            base,
            rand: UnsafeCell::new(evutil_weakrand_state::default()),
        });
        let p = Box::into_raw(g);
        let g = group_ref(p).expect("just allocated");
        ev_assign(g.refill.get(), base, -1, EV_PERSIST | EV_FINALIZE, group_refill_cb, p.cast());
        // SAFETY: the group's own refill event; the tick length is on this stack.
        unsafe { event_add(g.refill.get(), &c.tick_timeout) };
        set_min_share(g, 64);
        let seed = (now.tv_sec + now.tv_usec) as u32 ^ (p as usize as u32);
        // SAFETY: the group's own generator state.
        unsafe { evutil_weakrand_seed_(g.rand.get(), seed) };
        p
    })
}

/// `bufferevent_rate_limit_group_set_cfg`: new rates; the bucket is clipped to the new maxima.
///
/// # Safety
/// `g` NULL or a live group; `cfg` NULL or a configuration.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_set_cfg(
    g: *mut bufferevent_rate_limit_group,
    cfg: *const ev_token_bucket_cfg,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(g), Some(c)) = (group_ref(g), unsafe { cfg.as_ref() }.copied()) else { return -1 };
        g.lock();
        let old = g.cfg.get().tick_timeout;
        let same_tick = old.tv_sec == c.tick_timeout.tv_sec && old.tv_usec == c.tick_timeout.tv_usec;
        g.cfg.set(c);
        let mut lim = g.limit.get();
        lim.clip(&c);
        g.limit.set(lim);
        if !same_tick {
            // SAFETY: the group's own refill event.
            unsafe { event_add(g.refill.get(), &c.tick_timeout) };
        }
        set_min_share(g, g.configured_min_share.get());
        g.unlock();
        0
    })
}

/// `bufferevent_rate_limit_group_set_min_share`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_set_min_share(
    g: *mut bufferevent_rate_limit_group,
    share: usize,
) -> c_int {
    guard(-1, || group_ref(g).map_or(-1, |g| set_min_share(g, share)))
}

/// `bufferevent_rate_limit_group_free`. libevent requires that the group have no members (it asserts); members
/// left (say, bufferevents freed but not yet finalized) are detached here rather than left pointing at freed memory.
///
/// # Safety
/// `g` a live group, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_free(g: *mut bufferevent_rate_limit_group) {
    guard((), || {
        let Some(gr) = group_ref(g) else { return };
        gr.lock();
        let members = std::mem::take(&mut *gr.members.borrow_mut());
        ev_del(gr.refill.get());
        gr.unlock();
        // Member locks are taken after the group's is released (elsewhere the group lock nests inside them).
        for b in members.into_iter().filter_map(linked) {
            b.lock();
            if let Some(r) = b.rate() {
                r.group.set(null());
            }
            unsuspend_read(b, SUSPEND_BW_GROUP);
            unsuspend_write(b, SUSPEND_BW_GROUP);
            b.unlock();
        }
        evthread_free_recursive(gr.lock.get());
        // SAFETY: from Box::into_raw in bufferevent_rate_limit_group_new; the caller's promise that it is unused.
        drop(unsafe { Box::from_raw(g) });
    })
}

/// `bufferevent_add_to_rate_limit_group`.
///
/// # Safety
/// `bufev` a live bufferevent; `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_add_to_rate_limit_group(
    bufev: *mut bufferevent,
    g: *mut bufferevent_rate_limit_group,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(b), Some(gr)) = (unsafe { bev(bufev) }, group_ref(g)) else { return -1 };
        b.lock();
        let r = rate_limit_of(b);
        if ptr::eq(r.group.get(), g) {
            b.unlock();
            return 0;
        }
        if !r.group.get().is_null() {
            remove_from_group(b, true);
        }
        gr.lock();
        r.group.set(g);
        gr.members.borrow_mut().insert(0, b);
        let (rs, ws) = (gr.read_suspended.get(), gr.write_suspended.get());
        gr.unlock();
        if rs {
            suspend_read(b, SUSPEND_BW_GROUP);
        }
        if ws {
            suspend_write(b, SUSPEND_BW_GROUP);
        }
        b.unlock();
        0
    })
}

/// `bufferevent_remove_from_rate_limit_group`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_remove_from_rate_limit_group(bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        remove_from_group(b, true);
        0
    })
}

fn own_limit(bufev: *const bufferevent, write: bool) -> isize {
    // SAFETY: the exported callers' promise.
    let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
    b.lock();
    let r = match b.rate().filter(|r| !r.cfg.get().is_null()) {
        Some(r) => {
            update_buckets(b, r);
            let lim = r.limit.get();
            (if write { lim.write_limit } else { lim.read_limit }) as isize
        }
        None => isize::MAX,
    };
    b.unlock();
    r
}

/// `bufferevent_get_read_limit`: the bucket's tokens, EV_SSIZE_MAX without a limit.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_read_limit(bufev: *mut bufferevent) -> isize {
    guard(-1, || own_limit(bufev, false))
}

/// `bufferevent_get_write_limit`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_write_limit(bufev: *mut bufferevent) -> isize {
    guard(-1, || own_limit(bufev, true))
}

/// `bufferevent_get_max_to_read`: what the next read may take (single-read cap, bucket, group share).
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_max_to_read(bufev: *mut bufferevent) -> isize {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        let r = read_max(b);
        b.unlock();
        r
    })
}

/// `bufferevent_get_max_to_write`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_max_to_write(bufev: *mut bufferevent) -> isize {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        let r = write_max(b);
        b.unlock();
        r
    })
}

fn set_max_single(bufev: *mut bufferevent, size: usize, write: bool) -> c_int {
    // SAFETY: the exported callers' promise.
    let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
    b.lock();
    let v = if size == 0 || size > isize::MAX as usize {
        if write {
            MAX_SINGLE_WRITE_DEFAULT
        } else {
            MAX_SINGLE_READ_DEFAULT
        }
    } else {
        size as isize
    };
    if write {
        b.max_single_write.set(v);
    } else {
        b.max_single_read.set(v);
    }
    b.unlock();
    0
}

/// `bufferevent_set_max_single_read`: 0 (or too large) restores the default, 16384.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_set_max_single_read(bufev: *mut bufferevent, size: usize) -> c_int {
    guard(-1, || set_max_single(bufev, size, false))
}

/// `bufferevent_set_max_single_write`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_set_max_single_write(bufev: *mut bufferevent, size: usize) -> c_int {
    guard(-1, || set_max_single(bufev, size, true))
}

/// `bufferevent_get_max_single_read`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_max_single_read(bufev: *mut bufferevent) -> isize {
    guard(-1, || {
        // SAFETY: the caller's promise.
        unsafe { bev(bufev) }.map_or(-1, |b| {
            b.lock();
            let r = b.max_single_read.get();
            b.unlock();
            r
        })
    })
}

/// `bufferevent_get_max_single_write`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_max_single_write(bufev: *mut bufferevent) -> isize {
    guard(-1, || {
        // SAFETY: the caller's promise.
        unsafe { bev(bufev) }.map_or(-1, |b| {
            b.lock();
            let r = b.max_single_write.get();
            b.unlock();
            r
        })
    })
}

fn decrement_own_limit(bufev: *mut bufferevent, decr: isize, write: bool) -> c_int {
    // SAFETY: the exported callers' promise.
    let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
    b.lock();
    // libevent asserts a configured limit; without one there is nothing to decrement.
    let Some(r) = b.rate().filter(|r| !r.cfg.get().is_null()) else {
        b.unlock();
        return -1;
    };
    let mut lim = r.limit.get();
    let slot = if write { &mut lim.write_limit } else { &mut lim.read_limit };
    let old = *slot;
    *slot -= decr as i64;
    let new = *slot;
    r.limit.set(lim);
    let mut ret = 0;
    // The refill event serves both directions: it stays while the other one still waits for tokens.
    let other = if write { b.read_suspended.get() } else { b.write_suspended.get() };
    if old > 0 && new <= 0 {
        if write {
            suspend_write(b, SUSPEND_BW);
        } else {
            suspend_read(b, SUSPEND_BW);
        }
        if refill_event_add(r) < 0 {
            ret = -1;
        }
    } else if old <= 0 && new > 0 {
        if !other.has(SUSPEND_BW) {
            ev_del(r.refill.get());
        }
        if write {
            unsuspend_write(b, SUSPEND_BW);
        } else {
            unsuspend_read(b, SUSPEND_BW);
        }
    }
    b.unlock();
    ret
}

/// `bufferevent_decrement_read_limit`: spends (or, negative, returns) read tokens.
///
/// # Safety
/// `bufev` a live bufferevent with a rate limit.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decrement_read_limit(bufev: *mut bufferevent, decr: isize) -> c_int {
    guard(-1, || decrement_own_limit(bufev, decr, false))
}

/// `bufferevent_decrement_write_limit`.
///
/// # Safety
/// `bufev` a live bufferevent with a rate limit.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decrement_write_limit(bufev: *mut bufferevent, decr: isize) -> c_int {
    guard(-1, || decrement_own_limit(bufev, decr, true))
}

fn group_decrement(g: *mut Group, decr: isize, write: bool) -> c_int {
    let Some(g) = group_ref(g) else { return -1 };
    g.lock();
    let mut lim = g.limit.get();
    let slot = if write { &mut lim.write_limit } else { &mut lim.read_limit };
    let old = *slot;
    *slot -= decr as i64;
    let new = *slot;
    g.limit.set(lim);
    if old > 0 && new <= 0 {
        group_suspend(g, write);
    } else if old <= 0 && new > 0 {
        group_unsuspend(g, write);
    }
    g.unlock();
    0
}

/// `bufferevent_rate_limit_group_decrement_read`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_decrement_read(
    g: *mut bufferevent_rate_limit_group,
    decr: isize,
) -> c_int {
    guard(-1, || group_decrement(g, decr, false))
}

/// `bufferevent_rate_limit_group_decrement_write`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_decrement_write(
    g: *mut bufferevent_rate_limit_group,
    decr: isize,
) -> c_int {
    guard(-1, || group_decrement(g, decr, true))
}

/// `bufferevent_rate_limit_group_get_read_limit`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_get_read_limit(g: *mut bufferevent_rate_limit_group) -> isize {
    guard(-1, || {
        group_ref(g).map_or(-1, |g| {
            g.lock();
            let r = g.limit.get().read_limit as isize;
            g.unlock();
            r
        })
    })
}

/// `bufferevent_rate_limit_group_get_write_limit`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_get_write_limit(g: *mut bufferevent_rate_limit_group) -> isize {
    guard(-1, || {
        group_ref(g).map_or(-1, |g| {
            g.lock();
            let r = g.limit.get().write_limit as isize;
            g.unlock();
            r
        })
    })
}

/// `bufferevent_rate_limit_group_get_totals`: bytes read and written by members since creation or reset.
///
/// # Safety
/// `g` a live group; the out pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_get_totals(
    g: *mut bufferevent_rate_limit_group,
    total_read_out: *mut u64,
    total_written_out: *mut u64,
) {
    guard((), || {
        let Some(g) = group_ref(g) else { return };
        // SAFETY: the caller's promise: NULL or writable.
        unsafe {
            if let Some(o) = total_read_out.as_mut() {
                *o = g.total_read.get();
            }
            if let Some(o) = total_written_out.as_mut() {
                *o = g.total_written.get();
            }
        }
    })
}

/// `bufferevent_rate_limit_group_reset_totals`.
///
/// # Safety
/// `g` a live group.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_rate_limit_group_reset_totals(g: *mut bufferevent_rate_limit_group) {
    guard((), || {
        if let Some(g) = group_ref(g) {
            g.total_read.set(0);
            g.total_written.set(0);
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Exports: libevent_core's internal bufferevent functions
//
// Debian's libevent_core exports these for its sibling libraries (libevent_extra's http and evdns call
// disable_hard_, get_options_ and the conn_address functions) and libevent's own tests. Functions libevent
// declares on `struct bufferevent_private *` take the same pointer as the public struct here, since libevent's
// private struct begins with it. `bufferevent_init_common_` initializes memory its caller allocated with
// libevent's private layout, which libix's objects do not have: it refuses (-1).
// ---------------------------------------------------------------------------------------------------------------

/// `struct ev_token_bucket` (ratelim-internal.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ev_token_bucket {
    read_limit: isize,
    write_limit: isize,
    last_updated: u32,
}

impl ev_token_bucket {
    fn to_bucket(self) -> TokenBucket {
        TokenBucket {
            read_limit: self.read_limit as i64,
            write_limit: self.write_limit as i64,
            last_updated: self.last_updated,
        }
    }
    fn from_bucket(b: TokenBucket) -> ev_token_bucket {
        ev_token_bucket {
            read_limit: b.read_limit as isize,
            write_limit: b.write_limit as isize,
            last_updated: b.last_updated,
        }
    }
}

/// `ev_token_bucket_get_tick_`.
///
/// # Safety
/// `tv` and `cfg` readable.
#[no_mangle]
pub unsafe extern "C" fn ev_token_bucket_get_tick_(tv: *const libc::timeval, cfg: *const ev_token_bucket_cfg) -> u32 {
    guard(0, || {
        // SAFETY: the caller's promise.
        let (Some(tv), Some(cfg)) = (unsafe { tv.as_ref() }, unsafe { cfg.as_ref() }) else { return 0 };
        cfg.tick_of(*tv)
    })
}

/// `ev_token_bucket_init_`: a full first tick, or (reinitialize) only clipped to the maxima.
///
/// # Safety
/// `bucket` writable; `cfg` readable.
#[no_mangle]
pub unsafe extern "C" fn ev_token_bucket_init_(
    bucket: *mut ev_token_bucket,
    cfg: *const ev_token_bucket_cfg,
    current_tick: u32,
    reinitialize: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(bucket), Some(cfg)) = (unsafe { bucket.as_mut() }, unsafe { cfg.as_ref() }) else { return -1 };
        let b = if reinitialize != 0 {
            let mut b = bucket.to_bucket();
            b.clip(cfg);
            b
        } else {
            TokenBucket::new(cfg, current_tick)
        };
        *bucket = ev_token_bucket::from_bucket(b);
        0
    })
}

/// `ev_token_bucket_update_`: 1 if ticks passed and tokens were added, else 0.
///
/// # Safety
/// `bucket` writable; `cfg` readable.
#[no_mangle]
pub unsafe extern "C" fn ev_token_bucket_update_(
    bucket: *mut ev_token_bucket,
    cfg: *const ev_token_bucket_cfg,
    current_tick: u32,
) -> c_int {
    guard(0, || {
        // SAFETY: the caller's promise.
        let (Some(bucket), Some(cfg)) = (unsafe { bucket.as_mut() }, unsafe { cfg.as_ref() }) else { return 0 };
        let mut b = bucket.to_bucket();
        let r = b.update(cfg, current_tick);
        *bucket = ev_token_bucket::from_bucket(b);
        c_int::from(r)
    })
}

/// `bufferevent_add_event_`: event_add with the timeout, or none if it is zero.
///
/// # Safety
/// `ev` an assigned event; `tv` readable.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_add_event_(ev: *mut event, tv: *const libc::timeval) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || ev_add(ev, unsafe { tv.as_ref() }.copied()))
}

/// `bufferevent_incref_and_lock_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_incref_and_lock_(bufev: *mut bufferevent) {
    // SAFETY: the caller's promise.
    guard((), || unsafe { bufferevent_lock(bufev) })
}

/// `bufferevent_decref_and_unlock_`: 1 if that was the last reference.
///
/// # Safety
/// `bufev` a live bufferevent the caller locked holding a reference.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decref_and_unlock_(bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        if unsafe { bev(bufev) }.is_none() {
            return -1;
        }
        c_int::from(decref_and_unlock(bufev.cast::<Bev>()))
    })
}

/// `bufferevent_disable_hard_`: disable, also stopping a connect in progress (http's connection reset).
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_disable_hard_(bufev: *mut bufferevent, event: c_short) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        b.lock();
        b.public.enabled.set(b.enabled() & !event);
        b.connecting.set(false);
        let r = if be_disable(b, event) < 0 { -1 } else { 0 };
        b.unlock();
        r
    })
}

/// `bufferevent_enable_locking_`.
///
/// # Safety
/// `bufev` a live bufferevent; `lock` NULL or an evthread lock.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_enable_locking_(bufev: *mut bufferevent, lock: *mut c_void) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, |b| enable_locking(b, lock)))
}

/// `bufferevent_generic_adj_timeouts_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_generic_adj_timeouts_(bufev: *mut bufferevent) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, generic_adj_timeouts))
}

/// `bufferevent_generic_adj_existing_timeouts_`: re-times the pending events.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_generic_adj_existing_timeouts_(bufev: *mut bufferevent) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        let mut r = 0;
        for (ev, what, tv) in [
            (b.ev_read(), EV_READ, b.public.timeout_read.get()),
            (b.ev_write(), EV_WRITE, b.public.timeout_write.get()),
        ] {
            if ev_pending(ev, what) {
                if timer_is_set(&tv) {
                    if ev_add(ev, Some(tv)) < 0 {
                        r = -1;
                    }
                } else {
                    // SAFETY: an event inside this live bufferevent.
                    unsafe { event_remove_timer(ev) };
                }
            }
        }
        r
    })
}

/// `bufferevent_init_generic_timeout_cbs_`: makes ev_read/ev_write the generic timeout timers.
///
/// # Safety
/// `bufev` a live bufferevent whose events are not pending.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_init_generic_timeout_cbs_(bufev: *mut bufferevent) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            generic_timeout_events(b);
        }
    })
}

/// `bufferevent_get_options_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_options_(bufev: *mut bufferevent) -> c_int {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return 0 };
        b.lock();
        let r = b.options.get();
        b.unlock();
        r
    })
}

/// `bufferevent_get_read_max_` (on `struct bufferevent_private *`, the same pointer here).
///
/// # Safety
/// `bufev` a live bufferevent, locked by the caller.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_read_max_(bufev: *mut bufferevent) -> isize {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, read_max))
}

/// `bufferevent_get_write_max_`.
///
/// # Safety
/// `bufev` a live bufferevent, locked by the caller.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_get_write_max_(bufev: *mut bufferevent) -> isize {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { bev(bufev) }.map_or(-1, write_max))
}

/// `bufferevent_decrement_read_buckets_`: charges `bytes` read to the bucket and group.
///
/// # Safety
/// `bufev` a live bufferevent, locked by the caller.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decrement_read_buckets_(bufev: *mut bufferevent, bytes: isize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        decrement_buckets(b, bytes, false);
        0
    })
}

/// `bufferevent_decrement_write_buckets_`.
///
/// # Safety
/// `bufev` a live bufferevent, locked by the caller.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_decrement_write_buckets_(bufev: *mut bufferevent, bytes: isize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        decrement_buckets(b, bytes, true);
        0
    })
}

/// `bufferevent_init_common_`: refused (see the section comment).
///
/// # Safety
/// None (nothing is touched).
#[no_mangle]
pub unsafe extern "C" fn bufferevent_init_common_(
    _bufev_private: *mut c_void,
    _base: *mut event_base,
    _ops: *const bufferevent_ops,
    _options: c_int,
) -> c_int {
    super::event::warnx("bufferevent_init_common_: libix does not initialize bufferevents laid out by the caller");
    -1
}

/// `bufferevent_ratelim_init_`: libix's bufferevents are initialized by their constructors; nothing to do.
///
/// # Safety
/// None (nothing is touched).
#[no_mangle]
pub unsafe extern "C" fn bufferevent_ratelim_init_(_bufev_private: *mut c_void) -> c_int {
    0
}

/// `bufferevent_remove_from_rate_limit_group_internal_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_remove_from_rate_limit_group_internal_(
    bufev: *mut bufferevent,
    unsuspend: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        remove_from_group(b, unsuspend != 0);
        0
    })
}

/// `bufferevent_run_readcb_` (the caller holds the lock and a reference).
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_run_readcb_(bufev: *mut bufferevent, options: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            run_readcb(b, options);
        }
    })
}

/// `bufferevent_run_writecb_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_run_writecb_(bufev: *mut bufferevent, options: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            run_writecb(b, options);
        }
    })
}

/// `bufferevent_run_eventcb_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_run_eventcb_(bufev: *mut bufferevent, what: c_short, options: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            run_eventcb(b, what, options);
        }
    })
}

/// `bufferevent_suspend_read_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_suspend_read_(bufev: *mut bufferevent, what: u16) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            suspend_read(b, what);
        }
    })
}

/// `bufferevent_unsuspend_read_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_unsuspend_read_(bufev: *mut bufferevent, what: u16) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            unsuspend_read(b, what);
        }
    })
}

/// `bufferevent_suspend_write_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_suspend_write_(bufev: *mut bufferevent, what: u16) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            suspend_write(b, what);
        }
    })
}

/// `bufferevent_unsuspend_write_`.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_unsuspend_write_(bufev: *mut bufferevent, what: u16) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            unsuspend_write(b, what);
        }
    })
}

/// The size libevent gives the connected address (`struct sockaddr_in6 conn_address`).
const CONN_ADDRESS_MAX: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// `bufferevent_socket_get_conn_address_`: the address connected to (family AF_UNSPEC when none).
///
/// # Safety
/// `bufev` a live bufferevent; the result is valid while it lives.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_get_conn_address_(bufev: *mut bufferevent) -> *const libc::sockaddr {
    // SAFETY: the caller's promise.
    guard(null(), || unsafe { bev(bufev) }.map_or(null(), |b| b.conn_address.as_ptr().cast_const().cast()))
}

/// `bufferevent_socket_set_conn_address_`: 0, or EVUTIL_EAI_FAIL for an address larger than a sockaddr_in6.
///
/// # Safety
/// `bufev` a live bufferevent; `addr` has `addrlen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_set_conn_address_(
    bufev: *mut bufferevent,
    addr: *const libc::sockaddr,
    addrlen: usize,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { bev(bufev) }) else { return -1 };
        if addrlen > CONN_ADDRESS_MAX || addr.is_null() {
            const EVUTIL_EAI_FAIL: c_int = -4;
            return EVUTIL_EAI_FAIL;
        }
        let mut ss = b.conn_address.get();
        // SAFETY: `addr` has `addrlen` bytes (the caller's promise), fewer than a sockaddr_storage holds.
        unsafe {
            ptr::copy_nonoverlapping(addr.cast::<u8>(), (&mut ss as *mut libc::sockaddr_storage).cast(), addrlen)
        };
        b.conn_address.set(ss);
        0
    })
}

/// `bufferevent_socket_set_conn_address_fd_`: refreshes the address from the socket's peer, if one was set.
///
/// # Safety
/// `bufev` a live bufferevent.
#[no_mangle]
pub unsafe extern "C" fn bufferevent_socket_set_conn_address_fd_(bufev: *mut bufferevent, fd: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { bev(bufev) } {
            remember_peer(b, fd);
        }
    })
}
