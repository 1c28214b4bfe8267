//! libevent 2.1's evbuffer API (`event2/buffer.h`, `event2/buffer_compat.h`) over [`crate::buffer`].
//!
//! `struct evbuffer *` is a [`Handle`]: the Rust [`Buffer`] and callback list, the optional lock (libevent's
//! `evbuffer_enable_locking`: a recursive lock from the evthread callbacks, or the caller's), the reference count
//! that keeps a buffer alive while its deferred callbacks are queued, and the deferral itself.
//!
//! Reentrancy: callbacks run with the buffer's lock held (as in libevent) and may call back into any evbuffer
//! function, on this buffer too. So the state is borrowed mutably only inside one [`with_state`] closure that calls
//! no C, and callbacks are called after it returns; each export is: lock, change the state, unlock the borrow, run
//! the callbacks libevent would run at that point, unlock.
#![allow(non_camel_case_types)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::ptr::{self, null_mut};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;

use crate::buffer::callbacks::{Callbacks, Entry, Info, Phase};
use crate::buffer::external::{External, Mapping};
use crate::buffer::search::EolStyle;
use crate::buffer::{Backing, Buffer, DataVec, Kind, Segment};
use crate::event::base::Base;
use crate::event::deferred::Deferred;

use super::event::{event_base, evthread_lock_fns_, mm_malloc};
use super::guard;

/// `struct evbuffer` (opaque to C).
#[repr(C)]
pub struct evbuffer {
    _opaque: [u8; 0],
}

/// `struct evbuffer_file_segment` (opaque to C).
#[repr(C)]
pub struct evbuffer_file_segment {
    _opaque: [u8; 0],
}

/// `struct evbuffer_cb_entry` (opaque to C).
pub type evbuffer_cb_entry = Entry<Cb>;

/// `struct evbuffer_ptr`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct evbuffer_ptr {
    pos: isize,
    chain: *mut c_void,
    pos_in_chain: usize,
}

/// `struct evbuffer_iovec` (`struct iovec` on this platform).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct evbuffer_iovec {
    iov_base: *mut c_void,
    iov_len: usize,
}

/// `evbuffer_cb_func`.
pub type CbFunc = unsafe extern "C" fn(*mut evbuffer, *const Info, *mut c_void);
/// `evbuffer_cb` (buffer_compat.h).
pub type CbObsolete = unsafe extern "C" fn(*mut evbuffer, usize, usize, *mut c_void);
/// `evbuffer_ref_cleanup_cb`.
pub type RefCleanupCb = unsafe extern "C" fn(*const c_void, usize, *mut c_void);
/// `evbuffer_file_segment_cleanup_cb`.
pub type FileSegmentCleanupCb = unsafe extern "C" fn(*const evbuffer_file_segment, c_int, *mut c_void);

/// A registered callback, as C gave it.
#[derive(Clone, Copy, Debug)]
pub enum Cb {
    /// `evbuffer_add_cb`.
    Func(CbFunc, *mut c_void),
    /// `evbuffer_setcb`.
    Obsolete(CbObsolete, *mut c_void),
}

const EVTHREAD_LOCKTYPE_RECURSIVE: c_uint = 1;
const EVBUFFER_PTR_SET: c_int = 0;
const EVBUFFER_PTR_ADD: c_int = 1;
const EVBUF_FS_CLOSE_ON_FREE: c_uint = 0x01;
const EVBUF_FS_DISABLE_MMAP: c_uint = 0x02;
/// `evbuffer_read` reads at most this much per call, or what FIONREAD reports if less (libevent's
/// `EVBUFFER_MAX_READ`), into at most this many iovecs (`NUM_READ_IOVEC`).
const MAX_READ: usize = 4096;
const NUM_READ_IOVEC: usize = 4;
/// `evbuffer_write` hands writev at most this many iovecs (`NUM_WRITE_IOVEC`).
const NUM_WRITE_IOVEC: usize = 128;

/// What a `struct evbuffer *` points to.
struct Handle {
    /// The lock from `evbuffer_enable_locking` (NULL: none, as libevent without it).
    lock: AtomicPtr<c_void>,
    own_lock: std::sync::atomic::AtomicBool,
    state: UnsafeCell<State>,
}

struct State {
    buf: Buffer,
    cbs: Callbacks<Cb>,
    /// Set by `evbuffer_defer_callbacks`.
    deferred: Option<Deferred>,
    /// 1 for the application's reference, plus one while deferred callbacks are queued.
    refcnt: usize,
    flags: u32,
}

// ---------------------------------------------------------------------------------------------------------------
// Locking and state access
// ---------------------------------------------------------------------------------------------------------------

/// `evthread_lock_fns_` read through its C layout (capi/event.rs owns it; its fields are private there).
#[repr(C)]
struct LockFnsView {
    lock_api_version: AtomicI32,
    supported_locktypes: AtomicU32,
    alloc: AtomicPtr<c_void>,
    free: AtomicPtr<c_void>,
    lock: AtomicPtr<c_void>,
    unlock: AtomicPtr<c_void>,
}

const _: () = assert!(std::mem::size_of::<LockFnsView>() == 40);

fn lock_fns() -> &'static LockFnsView {
    // SAFETY: evthread_lock_fns_ is a #[repr(C)] struct of an AtomicI32, an AtomicU32 and four AtomicPtrs, the
    // same layout as LockFnsView (size checked at compile time); it is a static, so the reference lives forever.
    unsafe { &*ptr::addr_of!(evthread_lock_fns_).cast::<LockFnsView>() }
}

type LockFn = unsafe extern "C" fn(c_uint, *mut c_void) -> c_int;
type AllocFn = unsafe extern "C" fn(c_uint) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void, c_uint);

fn call_lock_fn(slot: &AtomicPtr<c_void>, lock: *mut c_void) {
    let f = slot.load(Ordering::Acquire);
    if !f.is_null() && !lock.is_null() {
        // SAFETY: stored from the application's `int (*)(unsigned, void *)` by evthread_set_lock_callbacks.
        let f: LockFn = unsafe { std::mem::transmute::<*mut c_void, LockFn>(f) };
        // SAFETY: the application's lock function on a lock it allocated (or the caller supplied).
        unsafe { f(0, lock) };
    }
}

/// Locks an evthread lock (NULL: no locking configured, nothing to do); for bufferevents, which share their lock
/// with their buffers.
pub(crate) fn evthread_lock(lock: *mut c_void) {
    call_lock_fn(&lock_fns().lock, lock);
}

/// Tries to lock an evthread lock without waiting (EVTHREAD_TRY); true if it is now held (or there is no lock).
pub(crate) fn evthread_try_lock(lock: *mut c_void) -> bool {
    const EVTHREAD_TRY: c_uint = 0x10;
    let f = lock_fns().lock.load(Ordering::Acquire);
    if f.is_null() || lock.is_null() {
        return true;
    }
    // SAFETY: stored from the application's `int (*)(unsigned, void *)` by evthread_set_lock_callbacks.
    let f: LockFn = unsafe { std::mem::transmute::<*mut c_void, LockFn>(f) };
    // SAFETY: the application's lock function on a lock it allocated, asked not to wait.
    unsafe { f(EVTHREAD_TRY, lock) == 0 }
}

/// Unlocks what [`evthread_lock`] locked.
pub(crate) fn evthread_unlock(lock: *mut c_void) {
    call_lock_fn(&lock_fns().unlock, lock);
}

/// A new recursive lock from the application's evthread callbacks; NULL when none are set (no locking).
pub(crate) fn evthread_alloc_recursive() -> *mut c_void {
    let alloc = lock_fns().alloc.load(Ordering::Acquire);
    if alloc.is_null() {
        return null_mut();
    }
    // SAFETY: stored from the application's `void *(*)(unsigned)`.
    let alloc: AllocFn = unsafe { std::mem::transmute::<*mut c_void, AllocFn>(alloc) };
    // SAFETY: the application's allocator for locks, asked for a recursive one as libevent does.
    unsafe { alloc(EVTHREAD_LOCKTYPE_RECURSIVE) }
}

/// Frees a lock from [`evthread_alloc_recursive`].
pub(crate) fn evthread_free_recursive(lock: *mut c_void) {
    let f = lock_fns().free.load(Ordering::Acquire);
    if !f.is_null() && !lock.is_null() {
        // SAFETY: stored from the application's `void (*)(void *, unsigned)`.
        let f: FreeFn = unsafe { std::mem::transmute::<*mut c_void, FreeFn>(f) };
        // SAFETY: the lock came from the matching alloc function.
        unsafe { f(lock, EVTHREAD_LOCKTYPE_RECURSIVE) };
    }
}

/// Holds a buffer's lock (if it has one) until dropped.
struct Locked<'a>(&'a Handle);

impl<'a> Locked<'a> {
    fn new(h: &'a Handle) -> Locked<'a> {
        call_lock_fn(&lock_fns().lock, h.lock.load(Ordering::Acquire));
        Locked(h)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        call_lock_fn(&lock_fns().unlock, self.0.lock.load(Ordering::Acquire));
    }
}

/// The handle behind a C pointer.
///
/// # Safety
/// `b` is NULL or a live handle from `evbuffer_new`.
unsafe fn handle<'a>(b: *const evbuffer) -> Option<&'a Handle> {
    // SAFETY: the caller's promise.
    unsafe { b.cast::<Handle>().as_ref() }
}

fn as_c(h: &Handle) -> *mut evbuffer {
    h as *const Handle as *mut evbuffer
}

/// Runs `f` on the state. The caller holds the buffer's lock (or the buffer is used by one thread, libevent's
/// rule without locking), and `f` calls no C, so no other borrow of this state exists while it runs.
/// Lent segments the operation released are dropped after the borrow ends: their release hooks are application
/// callbacks (`evbuffer_add_reference`'s cleanup), which may call back into this buffer.
fn with_state<R>(h: &Handle, f: impl FnOnce(&mut State) -> R) -> R {
    let (r, released) = {
        // SAFETY: see above: every access goes through this function, never nested for one handle (callbacks and
        // other C calls happen outside it).
        let st = unsafe { &mut *h.state.get() };
        let r = f(st);
        (r, st.buf.take_released())
    };
    drop(released);
    r
}

/// Runs `f` on two distinct buffers' states (the caller holds both locks), releasing as [`with_state`] does.
fn with_two<R>(a: &Handle, b: &Handle, f: impl FnOnce(&mut State, &mut State) -> R) -> R {
    assert!(!ptr::eq(a, b), "with_two on one buffer");
    let (r, released) = {
        // SAFETY: as with_state; the two handles are distinct, so the two borrows are of different memory.
        let (sa, sb) = unsafe { (&mut *a.state.get(), &mut *b.state.get()) };
        let r = f(sa, sb);
        let mut released = sa.buf.take_released();
        released.append(&mut sb.buf.take_released());
        (r, released)
    };
    drop(released);
    r
}

/// Locks two buffers in address order (libevent's EVBUFFER_LOCK2).
fn lock_two<'a>(a: &'a Handle, b: &'a Handle) -> (Locked<'a>, Option<Locked<'a>>) {
    if ptr::eq(a, b) {
        return (Locked::new(a), None);
    }
    let (first, second) = if (a as *const Handle) < (b as *const Handle) { (a, b) } else { (b, a) };
    let l1 = Locked::new(first);
    (l1, Some(Locked::new(second)))
}

// ---------------------------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------------------------

/// libevent's `evbuffer_invoke_callbacks_`: after a change, queue the deferred run (taking a reference) if the
/// buffer defers, and run the callbacks due now. The caller holds the lock.
fn invoke_callbacks(h: &Handle) {
    let due = with_state(h, |st| {
        if st.cbs.is_empty() {
            st.buf.n_added = 0;
            st.buf.n_deleted = 0;
            return None;
        }
        let phase = match &st.deferred {
            Some(d) => {
                if d.schedule() {
                    st.refcnt += 1;
                }
                Phase::ImmediateDeferring
            }
            None => Phase::Immediate,
        };
        st.cbs.due(&mut st.buf, phase).map(|d| (d, phase, st.buf.len()))
    });
    if let Some(((info, entries), phase, new_size)) = due {
        run_callbacks(h, info, new_size, &entries, phase);
    }
}

/// Calls the due entries in order; an entry removed or disabled by an earlier callback is skipped.
fn run_callbacks(h: &Handle, info: Info, new_size: usize, entries: &[(*const Entry<Cb>, Cb)], phase: Phase) {
    for &(entry, cb) in entries {
        let still = with_state(h, |st| st.cbs.flags_of(entry).is_some_and(|f| Callbacks::<Cb>::selected(f, phase)));
        if !still {
            continue;
        }
        match cb {
            // SAFETY: the application's callback with its own argument, a live buffer and a valid info struct.
            Cb::Func(f, arg) => unsafe { f(as_c(h), &info, arg) },
            // SAFETY: as above, with the compat signature.
            Cb::Obsolete(f, arg) => unsafe { f(as_c(h), info.orig_size, new_size, arg) },
        }
    }
}

/// The deferred run (from the event loop): the callbacks without NODEFER, then the reference taken when it was
/// queued is dropped (which frees the buffer if the application freed it meanwhile).
///
/// # Safety
/// `p` is a live handle holding the reference taken when this run was queued.
unsafe fn run_deferred(p: *const Handle) {
    let last = {
        // SAFETY: live (the caller's promise) until `destroy` below, after the last use of `h`.
        let h = unsafe { &*p };
        let _lock = Locked::new(h);
        let due = with_state(h, |st| st.cbs.due(&mut st.buf, Phase::Deferred).map(|d| (d, st.buf.len())));
        if let Some(((info, entries), new_size)) = due {
            run_callbacks(h, info, new_size, &entries, Phase::Deferred);
        }
        release_ref(h)
    };
    if last {
        // SAFETY: that was the last reference; nothing refers to the handle any more.
        unsafe { destroy(p) };
    }
}

/// Drops one reference (the caller holds the lock); true if it was the last, and the caller must then unlock and
/// [`destroy`] (libevent's `evbuffer_decref_and_unlock_`).
fn release_ref(h: &Handle) -> bool {
    with_state(h, |st| {
        st.refcnt -= 1;
        st.refcnt == 0
    })
}

/// Frees a handle whose last reference is gone: its segments (running reference cleanups), callbacks and deferral,
/// then the lock if the buffer allocated it.
///
/// # Safety
/// `p` came from `evbuffer_new`, is unlocked, and no reference to it is used afterwards.
unsafe fn destroy(p: *const Handle) {
    // SAFETY: still live here.
    let (own_lock, lock_ptr) = unsafe { ((*p).own_lock.load(Ordering::Acquire), (*p).lock.load(Ordering::Acquire)) };
    // SAFETY: from Box::into_raw in evbuffer_new, freed once (the caller's promise).
    drop(unsafe { Box::from_raw(p.cast_mut()) });
    if own_lock && !lock_ptr.is_null() {
        let f = lock_fns().free.load(Ordering::Acquire);
        if !f.is_null() {
            // SAFETY: stored from the application's `void (*)(void *, unsigned)`.
            let f: FreeFn = unsafe { std::mem::transmute::<*mut c_void, FreeFn>(f) };
            // SAFETY: the lock was allocated by the matching alloc function for this buffer.
            unsafe { f(lock_ptr, EVTHREAD_LOCKTYPE_RECURSIVE) };
        }
    }
}

/// Runs an operation on one buffer under its lock, then invokes callbacks if `notify` (the libevent functions that
/// call `evbuffer_invoke_callbacks_` do so on success and failure alike only where the counters changed; running
/// with unchanged counters does nothing).
fn op<R>(b: *mut evbuffer, on_null: R, notify: bool, f: impl FnOnce(&mut State) -> R) -> R {
    // SAFETY: NULL or a live handle (the caller's promise to the exported function).
    let Some(h) = (unsafe { handle(b) }) else { return on_null };
    let _lock = Locked::new(h);
    let r = with_state(h, f);
    if notify {
        invoke_callbacks(h);
    }
    r
}

/// Two-buffer operation (`a != b` is the caller's check); callbacks of `first` then `second` are invoked.
fn op2<R>(a: &Handle, b: &Handle, f: impl FnOnce(&mut State, &mut State) -> R, first: &Handle, second: &Handle) -> R {
    let _locks = lock_two(a, b);
    let r = with_two(a, b, f);
    invoke_callbacks(first);
    invoke_callbacks(second);
    r
}

/// For other parts of libix's C shell (bufferevent): runs `f` on the buffer behind `b` under its lock, then the
/// callbacks libevent would run after a change (if `f` changed nothing, none run). None for NULL.
///
/// # Safety
/// `b` NULL or a live `evbuffer_new` handle; `f` must not call back into C.
pub unsafe fn with_buffer<R>(b: *mut evbuffer, f: impl FnOnce(&mut Buffer) -> R) -> Option<R> {
    // SAFETY: the caller's promise.
    let h = unsafe { handle(b) }?;
    let _lock = Locked::new(h);
    let r = with_state(h, |st| f(&mut st.buf));
    invoke_callbacks(h);
    Some(r)
}

// ---------------------------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------------------------

/// `len` bytes at `p` (empty for 0; NULL with a length is the caller's bug, treated as empty).
///
/// # Safety
/// `p` valid for reads of `len` bytes when non-NULL.
unsafe fn bytes<'a>(p: *const c_void, len: usize) -> &'a [u8] {
    if p.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(p.cast(), len) }
}

/// `len` writable bytes at `p`.
///
/// # Safety
/// `p` valid for writes of `len` bytes when non-NULL.
unsafe fn bytes_mut<'a>(p: *mut c_void, len: usize) -> &'a mut [u8] {
    if p.is_null() || len == 0 {
        return &mut [];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts_mut(p.cast(), len) }
}

/// The iovecs C passed in.
///
/// # Safety
/// `vec` valid for `n` entries when `n > 0`.
unsafe fn iovecs<'a>(vec: *const evbuffer_iovec, n: c_int) -> &'a [evbuffer_iovec] {
    if vec.is_null() || n <= 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(vec, n as usize) }
}

fn not_found() -> evbuffer_ptr {
    evbuffer_ptr { pos: -1, chain: null_mut(), pos_in_chain: 0 }
}

/// A position as libevent reports it: `internal_.chain` is non-NULL exactly when the position is on a byte (libevent
/// callers test it); libix keeps positions only, so it holds the buffer's address and `pos_in_chain` the position.
fn make_ptr(h: &Handle, pos: usize, len: usize) -> evbuffer_ptr {
    if pos < len {
        evbuffer_ptr { pos: pos as isize, chain: as_c(h).cast(), pos_in_chain: pos }
    } else {
        evbuffer_ptr { pos: pos as isize, chain: null_mut(), pos_in_chain: 0 }
    }
}

/// The start position a C `evbuffer_ptr *` names: None for NULL (the front); Err for one that is on no byte.
///
/// # Safety
/// `p` NULL or valid for reads.
unsafe fn start_of(p: *const evbuffer_ptr) -> Result<Option<usize>, ()> {
    // SAFETY: the caller's promise.
    match unsafe { p.as_ref() } {
        None => Ok(None),
        Some(p) if p.chain.is_null() || p.pos < 0 => Err(()),
        Some(p) => Ok(Some(p.pos as usize)),
    }
}

fn status(r: Result<impl Sized, crate::buffer::Error>) -> c_int {
    if r.is_ok() {
        0
    } else {
        -1
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Life cycle, locking, flags, freezing
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_new`.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_new() -> *mut evbuffer {
    guard(null_mut(), || {
        let h = Box::new(Handle {
            lock: AtomicPtr::new(null_mut()),
            own_lock: std::sync::atomic::AtomicBool::new(false),
            state: UnsafeCell::new(State {
                buf: Buffer::new(),
                cbs: Callbacks::default(),
                deferred: None,
                refcnt: 1,
                flags: 0,
            }),
        });
        Box::into_raw(h).cast()
    })
}

/// `evbuffer_free`: drops the application's reference (the buffer lives on while deferred callbacks are queued).
///
/// # Safety
/// `buf` NULL or live; not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_free(buf: *mut evbuffer) {
    guard((), || {
        // SAFETY: NULL or live (the caller's promise).
        let Some(h) = (unsafe { handle(buf) }) else { return };
        let last = {
            let _lock = Locked::new(h);
            release_ref(h)
        };
        if last {
            // SAFETY: the last reference is gone and `h` is not used again.
            unsafe { destroy(buf.cast_const().cast()) };
        }
    })
}

/// `evbuffer_enable_locking`: NULL allocates a recursive lock with the evthread callbacks (-1 without them).
///
/// # Safety
/// `buf` live; `lock` NULL or a lock made by the installed lock callbacks.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_enable_locking(buf: *mut evbuffer, lock: *mut c_void) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handle(buf) }) else { return -1 };
        if !h.lock.load(Ordering::Acquire).is_null() {
            return -1;
        }
        if !lock.is_null() {
            h.lock.store(lock, Ordering::Release);
            return 0;
        }
        let alloc = lock_fns().alloc.load(Ordering::Acquire);
        if alloc.is_null() {
            return -1;
        }
        // SAFETY: stored from the application's `void *(*)(unsigned)`.
        let alloc: AllocFn = unsafe { std::mem::transmute::<*mut c_void, AllocFn>(alloc) };
        // SAFETY: the application's allocator for locks, asked for a recursive one as libevent does.
        let lock = unsafe { alloc(EVTHREAD_LOCKTYPE_RECURSIVE) };
        if lock.is_null() {
            return -1;
        }
        h.own_lock.store(true, Ordering::Release);
        h.lock.store(lock, Ordering::Release);
        0
    })
}

/// `evbuffer_lock`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_lock(buf: *mut evbuffer) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(h) = unsafe { handle(buf) } {
            std::mem::forget(Locked::new(h));
        }
    })
}

/// `evbuffer_unlock`.
///
/// # Safety
/// `buf` live and locked by this thread.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_unlock(buf: *mut evbuffer) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(h) = unsafe { handle(buf) } {
            drop(Locked(h));
        }
    })
}

/// `evbuffer_set_flags`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_set_flags(buf: *mut evbuffer, flags: u64) -> c_int {
    guard(-1, || {
        op(buf, -1, false, |st| {
            st.flags |= flags as u32;
            0
        })
    })
}

/// `evbuffer_clear_flags`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_clear_flags(buf: *mut evbuffer, flags: u64) -> c_int {
    guard(-1, || {
        op(buf, -1, false, |st| {
            st.flags &= !(flags as u32);
            0
        })
    })
}

/// `evbuffer_freeze`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_freeze(buf: *mut evbuffer, start: c_int) -> c_int {
    guard(-1, || {
        op(buf, -1, false, |st| {
            st.buf.freeze(start != 0, true);
            0
        })
    })
}

/// `evbuffer_unfreeze`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_unfreeze(buf: *mut evbuffer, start: c_int) -> c_int {
    guard(-1, || {
        op(buf, -1, false, |st| {
            st.buf.freeze(start != 0, false);
            0
        })
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Size and space
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_get_length`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_get_length(buf: *const evbuffer) -> usize {
    guard(0, || op(buf.cast_mut(), 0, false, |st| st.buf.len()))
}

/// `evbuffer_get_contiguous_space`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_get_contiguous_space(buf: *const evbuffer) -> usize {
    guard(0, || op(buf.cast_mut(), 0, false, |st| st.buf.contiguous_space()))
}

/// `evbuffer_expand`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_expand(buf: *mut evbuffer, datlen: usize) -> c_int {
    guard(-1, || op(buf, -1, false, |st| status(st.buf.expand(datlen))))
}

/// `evbuffer_reserve_space`.
///
/// # Safety
/// `buf` live; `vec` valid for `n_vecs` entries.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_reserve_space(
    buf: *mut evbuffer,
    size: isize,
    vec: *mut evbuffer_iovec,
    n_vecs: c_int,
) -> c_int {
    guard(-1, || {
        if size < 0 || n_vecs < 1 || vec.is_null() {
            return -1;
        }
        let regions = match op(buf, Err(crate::buffer::Error::Invalid), false, |st| {
            st.buf.reserve(size as usize, n_vecs as usize)
        }) {
            Ok(r) => r,
            Err(_) => return -1,
        };
        for (i, &(p, len)) in regions.iter().enumerate() {
            // SAFETY: `vec` has `n_vecs` entries and the buffer used at most that many.
            unsafe { vec.add(i).write(evbuffer_iovec { iov_base: p.cast(), iov_len: len }) };
        }
        regions.len() as c_int
    })
}

/// `evbuffer_commit_space`.
///
/// # Safety
/// `buf` live; `vec` valid for `n_vecs` entries.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_commit_space(buf: *mut evbuffer, vec: *mut evbuffer_iovec, n_vecs: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let v: Vec<DataVec> =
            unsafe { iovecs(vec, n_vecs) }.iter().map(|v| (v.iov_base as *const u8, v.iov_len)).collect();
        op(buf, -1, true, |st| status(st.buf.commit(&v)))
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Adding
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_add`.
///
/// # Safety
/// `buf` live; `data` valid for `datlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add(buf: *mut evbuffer, data: *const c_void, datlen: usize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let d = unsafe { bytes(data, datlen) };
        op(buf, -1, true, |st| status(st.buf.add(d)))
    })
}

/// `evbuffer_prepend`.
///
/// # Safety
/// `buf` live; `data` valid for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_prepend(buf: *mut evbuffer, data: *const c_void, size: usize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let d = unsafe { bytes(data, size) };
        op(buf, -1, true, |st| status(st.buf.prepend(d)))
    })
}

/// `evbuffer_add_iovec`: returns the bytes added (each iovec is one `evbuffer_add`, as in libevent).
///
/// # Safety
/// `buf` live; `vec` valid for `n_vec` entries, each valid for reads.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_iovec(buf: *mut evbuffer, vec: *mut evbuffer_iovec, n_vec: c_int) -> usize {
    guard(0, || {
        // SAFETY: the caller's promise.
        let vecs = unsafe { iovecs(vec, n_vec) };
        let total: usize = vecs.iter().map(|v| v.iov_len).sum();
        if op(buf, -1, false, |st| status(st.buf.expand_vectored(total, 2))) < 0 {
            return 0;
        }
        let mut added = 0;
        for v in vecs {
            // SAFETY: the caller's promise.
            if unsafe { evbuffer_add(buf, v.iov_base, v.iov_len) } < 0 {
                break;
            }
            added += v.iov_len;
        }
        added
    })
}

/// `evbuffer_add_reference`: appends the application's bytes without copying; `cleanupfn(data, datlen, arg)` runs
/// when the buffer no longer needs them (not if the call fails, as in libevent).
///
/// # Safety
/// `buf` live; `data` valid and unchanged for `datlen` bytes until the cleanup runs.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_reference(
    buf: *mut evbuffer,
    data: *const c_void,
    datlen: usize,
    cleanupfn: Option<RefCleanupCb>,
    cleanupfn_arg: *mut c_void,
) -> c_int {
    guard(-1, || {
        let (data_addr, arg_addr) = (data as usize, cleanupfn_arg as usize);
        op(buf, -1, true, |st| {
            // Refusals come before the segment exists: libevent does not run the cleanup when it refuses.
            if st.buf.is_frozen(false) || datlen > usize::MAX - st.buf.len() {
                return -1;
            }
            let release: Option<Box<dyn FnOnce() + Send>> = cleanupfn.map(|f| {
                Box::new(move || {
                    // SAFETY: the application's cleanup callback with the arguments it registered.
                    unsafe { f(data_addr as *const c_void, datlen, arg_addr as *mut c_void) }
                }) as Box<dyn FnOnce() + Send>
            });
            // SAFETY: the application lends `datlen` bytes at `data` until the cleanup runs (the API contract).
            let ext = unsafe { External::new(data.cast(), datlen, release) };
            status(st.buf.add_segment(Segment::borrowed(Arc::new(ext), Kind::Reference)))
        })
    })
}

/// `evbuffer_add_buffer`: moves all of `inbuf` to the end of `outbuf` (no copy).
///
/// # Safety
/// Both live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_buffer(outbuf: *mut evbuffer, inbuf: *mut evbuffer) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(o), Some(i)) = (unsafe { handle(outbuf) }, unsafe { handle(inbuf) }) else { return -1 };
        if ptr::eq(o, i) {
            return 0;
        }
        op2(o, i, |o, i| status(o.buf.append_buffer(&mut i.buf)), i, o)
    })
}

/// `evbuffer_add_buffer_reference`: appends read-only views of `inbuf`'s bytes, shared, not copied.
///
/// # Safety
/// Both live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_buffer_reference(outbuf: *mut evbuffer, inbuf: *mut evbuffer) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(o), Some(i)) = (unsafe { handle(outbuf) }, unsafe { handle(inbuf) }) else { return -1 };
        if ptr::eq(o, i) {
            // libevent: an empty buffer succeeds before the self check.
            return op(outbuf, -1, false, |st| if st.buf.is_empty() { 0 } else { -1 });
        }
        let _locks = lock_two(o, i);
        let r = with_two(o, i, |o, i| status(o.buf.append_reference(&mut i.buf)));
        invoke_callbacks(o);
        r
    })
}

/// `evbuffer_prepend_buffer`.
///
/// # Safety
/// Both live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_prepend_buffer(outbuf: *mut evbuffer, inbuf: *mut evbuffer) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(o), Some(i)) = (unsafe { handle(outbuf) }, unsafe { handle(inbuf) }) else { return -1 };
        if ptr::eq(o, i) {
            return 0;
        }
        op2(o, i, |o, i| status(o.buf.prepend_buffer(&mut i.buf)), i, o)
    })
}

// `evbuffer_add_printf`/`evbuffer_add_vprintf` are C (`capi/c/buffer.c`, exported in `capi/variadic.rs`): they
// format straight into space from `evbuffer_reserve_space` and commit it, as libevent formats into its last chain.

// ---------------------------------------------------------------------------------------------------------------
// Removing and reading
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_drain`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_drain(buf: *mut evbuffer, len: usize) -> c_int {
    guard(-1, || op(buf, -1, true, |st| status(st.buf.drain(len))))
}

/// `evbuffer_remove`: bytes copied out and drained, or -1.
///
/// # Safety
/// `buf` live; `data` valid for `datlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_remove(buf: *mut evbuffer, data: *mut c_void, datlen: usize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let out = unsafe { bytes_mut(data, datlen) };
        op(buf, -1, true, |st| st.buf.remove(out).map_or(-1, |n| n as c_int))
    })
}

/// `evbuffer_copyout`.
///
/// # Safety
/// `buf` live; `data` valid for `datlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_copyout(buf: *mut evbuffer, data: *mut c_void, datlen: usize) -> isize {
    // SAFETY: the same contract.
    unsafe { evbuffer_copyout_from(buf, ptr::null(), data, datlen) }
}

/// `evbuffer_copyout_from`.
///
/// # Safety
/// `buf` live; `pos` NULL or valid; `data` valid for `datlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_copyout_from(
    buf: *mut evbuffer,
    pos: *const evbuffer_ptr,
    data: *mut c_void,
    datlen: usize,
) -> isize {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let from = match unsafe { pos.as_ref() } {
            None => 0,
            Some(p) if p.pos < 0 => return -1,
            Some(p) => p.pos as usize,
        };
        // SAFETY: the caller's promise.
        let out = unsafe { bytes_mut(data, datlen) };
        op(buf, -1, false, |st| st.buf.copy_out_from(from, out).map_or(-1, |n| n as isize))
    })
}

/// `evbuffer_remove_buffer`: moves up to `datlen` bytes from `src` to `dst`; returns how many.
///
/// # Safety
/// Both live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_remove_buffer(src: *mut evbuffer, dst: *mut evbuffer, datlen: usize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(s), Some(d)) = (unsafe { handle(src) }, unsafe { handle(dst) }) else { return -1 };
        if ptr::eq(s, d) || datlen == 0 {
            return 0;
        }
        // Taking everything is libevent's add_buffer (source told first); a part tells the destination first.
        let _locks = lock_two(s, d);
        let everything = with_state(s, |st| datlen >= st.buf.len());
        let r = with_two(s, d, |s, d| d.buf.move_from(&mut s.buf, datlen).map_or(-1, |n| n as c_int));
        let (first, second) = if everything { (s, d) } else { (d, s) };
        invoke_callbacks(first);
        invoke_callbacks(second);
        r
    })
}

/// `evbuffer_pullup`: makes the first `size` bytes (all for negative) contiguous; NULL if there are fewer.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_pullup(buf: *mut evbuffer, size: isize) -> *mut u8 {
    guard(null_mut(), || {
        let size = (size >= 0).then_some(size as usize);
        op(buf, null_mut(), false, |st| st.buf.pullup(size).ok().flatten().unwrap_or(null_mut()))
    })
}

/// `evbuffer_readln`: the first line without its end of line, NUL-terminated, from the event allocator; NULL if
/// there is no complete line. `*n_read_out` is the line's length (0 on NULL).
///
/// # Safety
/// `buf` live; `n_read_out` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_readln(buf: *mut evbuffer, n_read_out: *mut usize, eol_style: c_int) -> *mut c_char {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handle(buf) }) else { return null_mut() };
        let _lock = Locked::new(h);
        let found = with_state(h, |st| {
            if st.buf.is_frozen(true) {
                return None;
            }
            st.buf.search_eol(0, EolStyle::from_c(eol_style)?)
        });
        // The application's allocator is C: called outside the state borrow.
        let line = found.and_then(|(at, eol_len)| {
            let p = mm_malloc(at + 1).cast::<u8>();
            if p.is_null() {
                return None;
            }
            // SAFETY: `p` has `at + 1` bytes, not otherwise referenced.
            let out = unsafe { std::slice::from_raw_parts_mut(p, at + 1) };
            let _ = with_state(h, |st| st.buf.remove(&mut out[..at]));
            out[at] = 0;
            Some((p, at, eol_len))
        });
        let result = match line {
            Some((p, at, eol_len)) => {
                // Two notifications, as libevent's remove-then-drain makes.
                invoke_callbacks(h);
                let _ = with_state(h, |st| st.buf.drain(eol_len));
                invoke_callbacks(h);
                Some((p, at))
            }
            None => None,
        };
        // SAFETY: NULL or valid (the caller's promise).
        if let Some(out) = unsafe { n_read_out.as_mut() } {
            *out = result.map_or(0, |r| r.1);
        }
        result.map_or(null_mut(), |r| r.0.cast())
    })
}

/// `evbuffer_readline` (compat): `evbuffer_readln` with EVBUFFER_EOL_ANY.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_readline(buf: *mut evbuffer) -> *mut c_char {
    // SAFETY: the same contract.
    unsafe { evbuffer_readln(buf, null_mut(), 0) }
}

// ---------------------------------------------------------------------------------------------------------------
// Searching and peeking
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_ptr_set`.
///
/// # Safety
/// `buf` live; `pos` valid.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_ptr_set(
    buf: *mut evbuffer,
    pos: *mut evbuffer_ptr,
    position: usize,
    how: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(h), Some(p)) = (unsafe { handle(buf) }, unsafe { pos.as_mut() }) else { return -1 };
        let _lock = Locked::new(h);
        let len = with_state(h, |st| st.buf.len());
        let target = match how {
            EVBUFFER_PTR_SET => Some(position),
            EVBUFFER_PTR_ADD => {
                if p.pos < 0 || usize::MAX - position < p.pos as usize {
                    return -1;
                }
                Some(p.pos as usize + position)
            }
            _ => None,
        };
        match target {
            Some(t) if t <= len && t <= isize::MAX as usize => {
                *p = make_ptr(h, t, len);
                0
            }
            _ => {
                *p = not_found();
                -1
            }
        }
    })
}

/// `evbuffer_search`.
///
/// # Safety
/// `buf` live; `what` valid for `len` bytes; `start` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_search(
    buf: *mut evbuffer,
    what: *const c_char,
    len: usize,
    start: *const evbuffer_ptr,
) -> evbuffer_ptr {
    // SAFETY: the same contract.
    unsafe { evbuffer_search_range(buf, what, len, start, ptr::null()) }
}

/// `evbuffer_search_range`: the first occurrence at or after `start` that ends by `end`.
///
/// # Safety
/// `buf` live; `what` valid for `len` bytes; `start`, `end` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_search_range(
    buf: *mut evbuffer,
    what: *const c_char,
    len: usize,
    start: *const evbuffer_ptr,
    end: *const evbuffer_ptr,
) -> evbuffer_ptr {
    guard(not_found(), || {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handle(buf) }) else { return not_found() };
        if len == 0 {
            // libevent returns the start unchanged for an empty needle.
            // SAFETY: NULL or valid.
            return unsafe { start.as_ref() }.copied().unwrap_or_else(|| {
                let _lock = Locked::new(h);
                make_ptr(h, 0, with_state(h, |st| st.buf.len()))
            });
        }
        if len > isize::MAX as usize {
            return not_found();
        }
        // SAFETY: the caller's promise.
        let Ok(from) = (unsafe { start_of(start) }) else { return not_found() };
        // SAFETY: NULL or valid.
        let until = unsafe { end.as_ref() }.map(|e| e.pos.max(0) as usize);
        // SAFETY: the caller's promise.
        let needle = unsafe { bytes(what.cast(), len) };
        let _lock = Locked::new(h);
        with_state(h, |st| match st.buf.search_range(needle, from.unwrap_or(0), until) {
            Some(p) => make_ptr(h, p, st.buf.len()),
            None => not_found(),
        })
    })
}

/// `evbuffer_search_eol`: where the first end of line at or after `start` begins; `*eol_len_out` its length (0
/// when none is found).
///
/// # Safety
/// `buf` live; `start`, `eol_len_out` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_search_eol(
    buf: *mut evbuffer,
    start: *mut evbuffer_ptr,
    eol_len_out: *mut usize,
    eol_style: c_int,
) -> evbuffer_ptr {
    guard(not_found(), || {
        // SAFETY: the caller's promise.
        let found = match (unsafe { handle(buf) }, unsafe { start_of(start) }, EolStyle::from_c(eol_style)) {
            (Some(h), Ok(from), Some(style)) => {
                let _lock = Locked::new(h);
                with_state(h, |st| {
                    st.buf.search_eol(from.unwrap_or(0), style).map(|(p, n)| (make_ptr(h, p, st.buf.len()), n))
                })
            }
            _ => None,
        };
        // SAFETY: NULL or valid (the caller's promise).
        if let Some(out) = unsafe { eol_len_out.as_mut() } {
            *out = found.map_or(0, |f| f.1);
        }
        found.map_or_else(not_found, |f| f.0)
    })
}

/// `evbuffer_find` (compat): the first occurrence, made contiguous with what precedes it; NULL if absent.
///
/// # Safety
/// `buf` live; `what` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_find(buf: *mut evbuffer, what: *const u8, len: usize) -> *mut u8 {
    guard(null_mut(), || {
        // SAFETY: the same contract.
        let at = unsafe { evbuffer_search(buf, what.cast(), len, ptr::null()) };
        if at.pos < 0 {
            return null_mut();
        }
        // SAFETY: the same contract.
        let p = unsafe { evbuffer_pullup(buf, at.pos + len as isize) };
        if p.is_null() {
            return null_mut();
        }
        p.wrapping_add(at.pos as usize)
    })
}

/// `evbuffer_peek`: fills up to `n_vec` iovecs with the data from `start_at` covering `len` bytes (all for
/// negative); returns how many iovecs that needs.
///
/// # Safety
/// `buf` live; `start_at` NULL or valid; `vec` valid for `n_vec` entries.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_peek(
    buf: *mut evbuffer,
    len: isize,
    start_at: *mut evbuffer_ptr,
    vec: *mut evbuffer_iovec,
    n_vec: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Ok(from) = (unsafe { start_of(start_at) }) else { return 0 };
        let max = if vec.is_null() { 0 } else { n_vec.max(0) as usize };
        let want = (len >= 0).then_some(len as usize);
        let (count, regions) = op(buf, (0, Vec::new()), false, |st| st.buf.peek(from, want, max));
        for (i, &(p, l)) in regions.iter().enumerate() {
            // SAFETY: `vec` has `n_vec` entries and at most that many regions were filled in.
            unsafe { vec.add(i).write(evbuffer_iovec { iov_base: p.cast_mut().cast(), iov_len: l }) };
        }
        count as c_int
    })
}

// ---------------------------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------------------------

/// `evbuffer_read`: one readv of up to `howmuch` bytes (negative: no limit), bounded by FIONREAD's count or 4096;
/// returns the bytes read, 0 at EOF, -1 on error (errno from readv).
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_read(buf: *mut evbuffer, fd: c_int, howmuch: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handle(buf) }) else { return -1 };
        let _lock = Locked::new(h);
        if with_state(h, |st| st.buf.is_frozen(false)) {
            return -1;
        }
        let mut readable: c_int = MAX_READ as c_int;
        // SAFETY: FIONREAD writes one int.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut readable) };
        let mut n = if r < 0 || readable <= 0 || readable as usize > MAX_READ { MAX_READ } else { readable as usize };
        if howmuch >= 0 && (howmuch as usize) < n {
            n = howmuch as usize;
        }
        let Ok(regions) = with_state(h, |st| st.buf.read_space(n, NUM_READ_IOVEC)) else { return -1 };
        let iov: Vec<libc::iovec> =
            regions.iter().map(|&(p, l)| libc::iovec { iov_base: p.cast(), iov_len: l }).collect();
        // SAFETY: the iovecs are the buffer's reserved space, writable and not otherwise borrowed until committed.
        let got = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as c_int) };
        if got <= 0 {
            return got as c_int;
        }
        with_state(h, |st| st.buf.commit_read(got as usize));
        invoke_callbacks(h);
        got as c_int
    })
}

/// `evbuffer_write_atmost`: one writev of up to `howmuch` bytes (negative: all); drains what was written. -1
/// (errno untouched) when there is nothing to write, as in libevent.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_write_atmost(buf: *mut evbuffer, fd: c_int, howmuch: isize) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handle(buf) }) else { return -1 };
        let _lock = Locked::new(h);
        let (frozen, regions) = with_state(h, |st| {
            let n = if howmuch < 0 { st.buf.len() } else { (howmuch as usize).min(st.buf.len()) };
            (st.buf.is_frozen(true), st.buf.write_vecs(n, NUM_WRITE_IOVEC))
        });
        if frozen {
            return -1;
        }
        if regions.is_empty() {
            // libevent: with nothing to write it never calls writev and returns its initial -1.
            return -1;
        }
        let iov: Vec<libc::iovec> =
            regions.iter().map(|&(p, l)| libc::iovec { iov_base: p.cast_mut().cast(), iov_len: l }).collect();
        // SAFETY: the iovecs are the buffer's data, unchanged while we hold the lock and no borrow is live.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as c_int) };
        if n > 0 {
            let _ = with_state(h, |st| st.buf.drain(n as usize));
            invoke_callbacks(h);
        }
        n as c_int
    })
}

/// `evbuffer_write`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_write(buf: *mut evbuffer, fd: c_int) -> c_int {
    // SAFETY: the same contract.
    unsafe { evbuffer_write_atmost(buf, fd, -1) }
}

/// Where a file segment's bytes are: mapped (the default, as libevent's mmap backend) or read into memory
/// (EVBUF_FS_DISABLE_MMAP, or files that cannot be mapped).
enum FileBytes {
    Mapped(Mapping),
    Read(Vec<u8>),
}

/// A file segment, shared by the buffers it was added to. Freed (fd closed with EVBUF_FS_CLOSE_ON_FREE, then the
/// cleanup callback) when the last holder lets go.
struct FileSegment {
    bytes: FileBytes,
    fd: c_int,
    flags: c_uint,
    cleanup: std::sync::Mutex<Option<(FileSegmentCleanupCb, usize)>>,
}

impl Backing for FileSegment {
    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            FileBytes::Mapped(m) => m.bytes(),
            FileBytes::Read(v) => v,
        }
    }
}

impl Drop for FileSegment {
    fn drop(&mut self) {
        // Unmap before closing and before telling the application, as libevent does.
        self.bytes = FileBytes::Read(Vec::new());
        if self.flags & EVBUF_FS_CLOSE_ON_FREE != 0 && self.fd >= 0 {
            // SAFETY: the segment owns the fd (CLOSE_ON_FREE).
            unsafe { libc::close(self.fd) };
        }
        if let Some((cb, arg)) = self.cleanup.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            // SAFETY: the application's cleanup callback; the segment's address is the handle it was given.
            unsafe {
                cb(self as *const FileSegment as *const evbuffer_file_segment, self.flags as c_int, arg as *mut c_void)
            };
        }
    }
}

/// Reads `len` bytes of `fd` from `offset` (fewer at end of file); None on a read error.
fn read_file(fd: c_int, offset: i64, len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).ok()?;
    bytes.resize(len, 0);
    let mut got = 0usize;
    while got < len {
        // SAFETY: the destination is the unfilled tail of `bytes`.
        let n = unsafe { libc::pread(fd, bytes[got..].as_mut_ptr().cast(), len - got, offset + got as i64) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    bytes.truncate(got);
    Some(bytes)
}

/// `evbuffer_file_segment_new`: `length` -1 means the file's size.
///
/// # Safety
/// `fd` an open file.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_file_segment_new(
    fd: c_int,
    offset: i64,
    length: i64,
    flags: c_uint,
) -> *mut evbuffer_file_segment {
    guard(null_mut(), || {
        let mut length = length;
        if length == -1 {
            // SAFETY: an all-zero stat is a valid out-parameter.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat writes one struct stat.
            if unsafe { libc::fstat(fd, &mut st) } < 0 {
                return null_mut();
            }
            length = st.st_size;
        }
        if offset < 0 || length < 0 || offset.checked_add(length).is_none() {
            return null_mut();
        }
        // libevent maps `length` bytes even past the end of the file (reading them raises SIGBUS); libix stops at
        // the end of the file.
        // SAFETY: an all-zero stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one struct stat.
        let size = if unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG {
            st.st_size
        } else {
            i64::MAX
        };
        let len = length.min(size.saturating_sub(offset).max(0)) as usize;
        let mapped = if flags & EVBUF_FS_DISABLE_MMAP == 0 && len > 0 {
            // SAFETY: libevent's contract: the file is not changed while a segment of it lives.
            unsafe { Mapping::new(fd, offset as u64, len) }
        } else {
            None
        };
        let bytes = match mapped {
            Some(m) => FileBytes::Mapped(m),
            None => match read_file(fd, offset, len) {
                Some(v) => FileBytes::Read(v),
                None => return null_mut(),
            },
        };
        let seg = Arc::new(FileSegment { bytes, fd, flags, cleanup: std::sync::Mutex::new(None) });
        Arc::into_raw(seg).cast_mut().cast()
    })
}

/// `evbuffer_file_segment_free`: drops the application's reference.
///
/// # Safety
/// `seg` NULL or live; not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_file_segment_free(seg: *mut evbuffer_file_segment) {
    guard((), || {
        if !seg.is_null() {
            // SAFETY: from Arc::into_raw in evbuffer_file_segment_new; this is the application's reference.
            drop(unsafe { Arc::from_raw(seg.cast_const().cast::<FileSegment>()) });
        }
    })
}

/// `evbuffer_file_segment_add_cleanup_cb`.
///
/// # Safety
/// `seg` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_file_segment_add_cleanup_cb(
    seg: *mut evbuffer_file_segment,
    cb: Option<FileSegmentCleanupCb>,
    arg: *mut c_void,
) {
    guard((), || {
        // SAFETY: live (the caller's promise).
        if let Some(s) = unsafe { seg.cast_const().cast::<FileSegment>().as_ref() } {
            *s.cleanup.lock().unwrap_or_else(|p| p.into_inner()) = cb.map(|cb| (cb, arg as usize));
        }
    })
}

/// `evbuffer_add_file_segment`: `length` -1 means to the segment's end.
///
/// # Safety
/// `buf` and `seg` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_file_segment(
    buf: *mut evbuffer,
    seg: *mut evbuffer_file_segment,
    offset: i64,
    length: i64,
) -> c_int {
    guard(-1, || {
        if seg.is_null() {
            return -1;
        }
        let raw = seg.cast_const().cast::<FileSegment>();
        // SAFETY: from Arc::into_raw and live: take one more reference for the buffer.
        let seg: Arc<FileSegment> = unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        };
        let size = seg.bytes().len() as i64;
        let length = if length == -1 { size - offset } else { length };
        if offset < 0 || length < 0 || offset > size || length > size - offset {
            return -1;
        }
        op(buf, -1, true, |st| match Segment::borrowed_range(seg, Kind::File, offset as usize, length as usize) {
            Some(s) => status(st.buf.add_segment(s)),
            None => -1,
        })
    })
}

/// `evbuffer_add_file`: the buffer takes the fd (closed when the data is released).
///
/// # Safety
/// `buf` live; `fd` an open file the buffer now owns.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_file(buf: *mut evbuffer, fd: c_int, offset: i64, length: i64) -> c_int {
    guard(-1, || {
        // SAFETY: the same contract.
        let seg = unsafe { evbuffer_file_segment_new(fd, offset, length, EVBUF_FS_CLOSE_ON_FREE) };
        if seg.is_null() {
            return -1;
        }
        // SAFETY: `seg` is live.
        let r = unsafe { evbuffer_add_file_segment(buf, seg, 0, length) };
        // SAFETY: drops our reference; the buffer keeps its own.
        unsafe { evbuffer_file_segment_free(seg) };
        r
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------------------------

/// libevent allocates each callback entry with the event allocator (`event_set_mem_functions`), so a program whose
/// allocator fails sees registration fail. libix keeps entries in Rust memory; this asks the application's allocator
/// for the same size first so that failure is the same.
fn entry_allocation_allowed() -> bool {
    let p = mm_malloc(std::mem::size_of::<evbuffer_cb_entry>().max(32));
    if p.is_null() {
        return false;
    }
    super::event::mm_free(p);
    true
}

/// `evbuffer_add_cb`: registers `cb` (run before those registered earlier); NULL if allocation fails.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_add_cb(
    buf: *mut evbuffer,
    cb: Option<CbFunc>,
    cbarg: *mut c_void,
) -> *mut evbuffer_cb_entry {
    guard(null_mut(), || {
        let Some(cb) = cb else { return null_mut() };
        if !entry_allocation_allowed() {
            return null_mut();
        }
        op(buf, null_mut(), false, |st| st.cbs.add(Cb::Func(cb, cbarg)).cast_mut())
    })
}

/// `evbuffer_remove_cb_entry`.
///
/// # Safety
/// `buf` live; `ent` from this buffer.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_remove_cb_entry(buf: *mut evbuffer, ent: *mut evbuffer_cb_entry) -> c_int {
    guard(-1, || op(buf, -1, false, |st| if st.cbs.remove(ent) { 0 } else { -1 }))
}

/// `evbuffer_remove_cb`: removes the newest entry registered with exactly `cb` and `cbarg`.
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_remove_cb(buf: *mut evbuffer, cb: Option<CbFunc>, cbarg: *mut c_void) -> c_int {
    guard(-1, || {
        let Some(cb) = cb else { return -1 };
        op(buf, -1, false, |st| {
            let found =
                st.cbs.remove_first(|c| matches!(*c, Cb::Func(f, a) if f as usize == cb as usize && a == cbarg));
            if found {
                0
            } else {
                -1
            }
        })
    })
}

/// `evbuffer_cb_set_flags`.
///
/// # Safety
/// `buf` live; `ent` from this buffer.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_cb_set_flags(buf: *mut evbuffer, ent: *mut evbuffer_cb_entry, flags: u32) -> c_int {
    guard(-1, || op(buf, -1, false, |st| if st.cbs.change_flags(ent, flags, true) { 0 } else { -1 }))
}

/// `evbuffer_cb_clear_flags`.
///
/// # Safety
/// `buf` live; `ent` from this buffer.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_cb_clear_flags(buf: *mut evbuffer, ent: *mut evbuffer_cb_entry, flags: u32) -> c_int {
    guard(-1, || op(buf, -1, false, |st| if st.cbs.change_flags(ent, flags, false) { 0 } else { -1 }))
}

/// `evbuffer_setcb` (compat): replaces every callback with `cb` (none for NULL); -1 if allocation fails (the old
/// callbacks are gone then too, as in libevent).
///
/// # Safety
/// `buf` live.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_setcb(buf: *mut evbuffer, cb: Option<CbObsolete>, cbarg: *mut c_void) -> c_int {
    guard(-1, || {
        let allowed = cb.is_none() || entry_allocation_allowed();
        op(buf, -1, false, |st| {
            st.cbs.clear();
            match cb {
                Some(_) if !allowed => -1,
                Some(cb) => {
                    st.cbs.add(Cb::Obsolete(cb, cbarg));
                    0
                }
                None => 0,
            }
        })
    })
}

/// Where a deferred run finds its buffer (the handle's address; the reference taken when the run was queued keeps
/// it alive until the run).
#[derive(Clone, Copy)]
struct HandleAddr(usize);

/// `evbuffer_defer_callbacks`: from now on callbacks (except NODEFER ones) run from `base`'s loop.
///
/// # Safety
/// `buf` live; `base` a live base that outlives the buffer.
#[no_mangle]
pub unsafe extern "C" fn evbuffer_defer_callbacks(buf: *mut evbuffer, base: *mut event_base) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise; a base handle is the address of an engine Base (capi/event.rs).
        let Some(b) = (unsafe { base.cast::<Base>().as_ref() }) else { return -1 };
        let addr = HandleAddr(buf as usize);
        let deferred = Deferred::new(
            b,
            Arc::new(move || {
                let addr = addr;
                // SAFETY: the buffer holds a reference for each queued run, so it is live here.
                unsafe { run_deferred(addr.0 as *const Handle) };
            }),
        );
        op(buf, -1, false, |st| {
            if let Some(old) = st.deferred.replace(deferred) {
                if old.cancel() {
                    st.refcnt -= 1;
                }
            }
            0
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_added(_b: *mut evbuffer, info: *const Info, _arg: *mut c_void) {
        // SAFETY: the buffer passes a valid info struct.
        SEEN.fetch_add(unsafe { (*info).n_added }, Ordering::SeqCst);
    }

    #[test]
    fn with_buffer_changes_the_buffer_and_tells_callbacks() {
        // SAFETY: a fresh handle, used and freed here.
        unsafe {
            let b = evbuffer_new();
            assert!(!evbuffer_add_cb(b, Some(count_added), null_mut()).is_null());
            assert_eq!(with_buffer(b, |buf| buf.add(b"abc").is_ok()), Some(true));
            assert_eq!(SEEN.load(Ordering::SeqCst), 3);
            assert_eq!(evbuffer_get_length(b), 3);
            assert!(with_buffer(null_mut(), |_| ()).is_none());
            evbuffer_free(b);
        }
    }

    static CLEANED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn note_cleanup(_seg: *const evbuffer_file_segment, _flags: c_int, _arg: *mut c_void) {
        CLEANED.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_refused_file_range_keeps_the_callers_reference() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("libix-evbuffer-seg-{}", std::process::id()));
        let mut f =
            std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("temp file");
        std::fs::remove_file(&path).expect("unlink");
        f.write_all(b"0123456789").expect("write");
        // SAFETY: a live fd; the segment and buffer are freed here.
        unsafe {
            let seg = evbuffer_file_segment_new(f.as_raw_fd(), 2, -1, 0);
            assert!(!seg.is_null());
            evbuffer_file_segment_add_cleanup_cb(seg, Some(note_cleanup), null_mut());
            let b = evbuffer_new();
            assert_eq!(evbuffer_add_file_segment(b, seg, 5, 10), -1, "past the end of the file");
            assert_eq!(evbuffer_add_file_segment(b, seg, 5, -1), 0);
            evbuffer_file_segment_free(seg);
            assert_eq!(CLEANED.load(Ordering::SeqCst), 0, "the buffer still holds it");
            let mut out = [0u8; 8];
            assert_eq!(evbuffer_remove(b, out.as_mut_ptr().cast(), out.len()), 3);
            assert_eq!(&out[..3], b"789");
            assert_eq!(CLEANED.load(Ordering::SeqCst), 1, "released with the last bytes");
            evbuffer_free(b);
        }
    }
}
