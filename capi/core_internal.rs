//! The internal libevent_core exports that Debian's libevent_extra-2.1.so.7 (evhttp, evdns, evrpc, evtag) imports
//! beyond the public API and beyond what the other capi modules export already: deferred callbacks on an
//! embedded `struct event_callback` (`event_deferred_cb_init_/schedule_/cancel_/set_priority_`) and the two
//! lock-debugging hooks. With them, libix stands in for libevent_core and libevent_pthreads under libevent's own
//! libevent_extra (see compat/regress/README.md: the http, dns, rpc and evtag groups run that way).
//!
//! libevent queues the caller's 40-byte `struct event_callback` itself. The libix engine queues whole events, so
//! a scheduled callback gets an engine-owned proxy ([`Deferred`]) whose pointer lives in the callback's private
//! `evcb_active_next` slot while it is queued; the proxy is freed when it runs or is cancelled, so nothing is
//! leaked for callbacks the caller frees without ever scheduling (libevent has no "deinit" for them).

use std::ffi::{c_int, c_void};
use std::mem::{offset_of, size_of};
use std::ptr::{self, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use crate::event::deferred::Deferred;
use crate::event::raw::{CLOSURE_CB_SELF, EVLIST_ACTIVE, EVLIST_INIT};

use super::event::{base_ref, current_base, event_base};
use super::guard;

/// `void (*deferred_cb_fn)(struct event_callback *, void *)`.
type DeferredCbFn = unsafe extern "C" fn(*mut EventCallback, *mut c_void);

/// `struct event_callback` (event_struct.h, x86-64). libevent's TAILQ link at offset 0 is private; libix keeps
/// there the proxy of a queued callback and the number that proxy was scheduled under.
#[repr(C)]
pub struct EventCallback {
    proxy: AtomicPtr<Deferred>,
    proxy_id: u64,
    flags: i16,
    pri: u8,
    closure: u8,
    cb: Option<DeferredCbFn>,
    arg: *mut c_void,
}

const _: () = assert!(size_of::<EventCallback>() == 40);
const _: () = assert!(offset_of!(EventCallback, flags) == 16 && offset_of!(EventCallback, pri) == 18);
const _: () = assert!(offset_of!(EventCallback, closure) == 19 && offset_of!(EventCallback, cb) == 24);
const _: () = assert!(offset_of!(EventCallback, arg) == 32);

/// Serializes scheduling, cancelling and running of embedded callbacks (the proxy handoff between them). Only
/// libevent_extra's deferred callbacks take it: rare, short sections.
static HANDOFF: Mutex<()> = Mutex::new(());

fn handoff() -> std::sync::MutexGuard<'static, ()> {
    HANDOFF.lock().unwrap_or_else(|e| e.into_inner())
}

/// The callback's address, carried into the proxy's closure (which must be Send + Sync).
#[derive(Clone, Copy)]
struct CbAddr(usize);

/// Numbers the proxies, so a proxy that was cancelled just as its loop started running it knows it is stale.
static NEXT_PROXY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Runs an embedded callback from its proxy `id`: unless that proxy was cancelled meanwhile, takes it off the
/// callback (so the callback can be scheduled again, or freed, from its own function), then calls it.
fn run_embedded(addr: CbAddr, id: u64) {
    let cb = addr.0 as *mut EventCallback;
    let (f, arg, proxy) = {
        let _h = handoff();
        // SAFETY: a scheduled callback stays valid until it runs or is cancelled (libevent's contract), and a
        // cancel waits for a proxy its loop is already running (dropping a Deferred blocks on it), so `cb` is
        // valid here either way.
        let c = unsafe { &mut *cb };
        if c.proxy.load(Ordering::Acquire).is_null() || c.proxy_id != id {
            return; // cancelled (and maybe scheduled anew under another proxy)
        }
        let proxy = c.proxy.swap(null_mut(), Ordering::AcqRel);
        c.flags &= !EVLIST_ACTIVE;
        (c.cb, c.arg, proxy)
    };
    // SAFETY: the proxy came from Box::into_raw in `event_deferred_cb_schedule_` and was just taken from the
    // callback under HANDOFF, so it is freed once. Dropping a Deferred from its own callback does not wait.
    drop(unsafe { Box::from_raw(proxy) });
    if let Some(f) = f {
        // SAFETY: the function and argument the caller gave `event_deferred_cb_init_`.
        unsafe { f(cb, arg) };
    }
}

/// `event_deferred_cb_init_`: prepares `cb` to run `f(cb, arg)` at priority `pri` when scheduled.
///
/// # Safety
/// `cb` NULL or valid for writes of a `struct event_callback`, not currently scheduled.
#[no_mangle]
pub unsafe extern "C" fn event_deferred_cb_init_(
    cb: *mut EventCallback,
    pri: u8,
    f: Option<DeferredCbFn>,
    arg: *mut c_void,
) {
    guard((), || {
        if cb.is_null() {
            return;
        }
        // SAFETY: the caller's promise; all-zero is a valid EventCallback.
        unsafe { ptr::write_bytes(cb, 0, 1) };
        // SAFETY: as above.
        let c = unsafe { &mut *cb };
        c.flags = EVLIST_INIT;
        c.pri = pri;
        c.closure = CLOSURE_CB_SELF;
        c.cb = f;
        c.arg = arg;
    })
}

/// `event_deferred_cb_set_priority_`.
///
/// # Safety
/// As [`event_deferred_cb_init_`], and `cb` initialized.
#[no_mangle]
pub unsafe extern "C" fn event_deferred_cb_set_priority_(cb: *mut EventCallback, pri: u8) {
    guard((), || {
        let _h = handoff();
        // SAFETY: the caller's promise.
        if let Some(c) = unsafe { cb.as_mut() } {
            c.pri = pri;
        }
    })
}

/// `event_deferred_cb_schedule_`: queues `cb` on `base` (run from its loop, this iteration when scheduled from a
/// callback); 1 if newly queued, 0 if it was queued already or on error.
///
/// # Safety
/// `base` a live base (or NULL for the `event_init` one); `cb` initialized and valid until it runs or is cancelled.
#[no_mangle]
pub unsafe extern "C" fn event_deferred_cb_schedule_(base: *mut event_base, cb: *mut EventCallback) -> c_int {
    guard(0, || {
        // NULL means the `event_init` base, as in libevent (evdns bases made without a base rely on it).
        let base = if base.is_null() { current_base() } else { base };
        // SAFETY: the caller's promises.
        let (Some(b), Some(c)) = (unsafe { base_ref(base) }, unsafe { cb.as_mut() }) else {
            return 0;
        };
        let _h = handoff();
        if !c.proxy.load(Ordering::Acquire).is_null() {
            return 0;
        }
        let addr = CbAddr(cb as usize);
        let id = NEXT_PROXY_ID.fetch_add(1, Ordering::Relaxed);
        let proxy = Box::new(Deferred::new(b, Arc::new(move || run_embedded(addr, id))));
        let npri = b.npriorities();
        // libevent clamps a priority past the base's last one the same way.
        let _ = proxy.set_priority(i32::from(c.pri).min(npri as i32 - 1));
        let p = Box::into_raw(proxy);
        c.proxy.store(p, Ordering::Release);
        c.proxy_id = id;
        c.flags |= EVLIST_ACTIVE;
        // SAFETY: just made; only `run_embedded` or `event_deferred_cb_cancel_` frees it, both under HANDOFF.
        i32::from(unsafe { (*p).schedule() })
    })
}

/// `event_deferred_cb_cancel_`: takes `cb` off `base`'s queue if it is queued.
///
/// # Safety
/// `base` a live base; `cb` NULL or initialized.
#[no_mangle]
pub unsafe extern "C" fn event_deferred_cb_cancel_(_base: *mut event_base, cb: *mut EventCallback) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(c) = (unsafe { cb.as_mut() }) else { return };
        let p = {
            let _h = handoff();
            c.flags &= !EVLIST_ACTIVE;
            c.proxy.swap(null_mut(), Ordering::AcqRel)
        };
        if !p.is_null() {
            // SAFETY: from Box::into_raw in schedule, taken from the callback under HANDOFF: freed once. Dropping
            // deletes its event; if its loop has just started running it, this waits for `run_embedded`, which
            // finds the proxy gone and returns at once (HANDOFF is released before this drop, so no deadlock).
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// `evthread_lock_debugging_enabled_`: libevent's flag for its lock-debugging wrappers, which libevent_extra's
/// lock assertions read. libix has no such wrapper (its own locks are checked by Rust), so it stays 0.
#[no_mangle]
pub static evthread_lock_debugging_enabled_: c_int = 0;

/// `evthread_is_debug_lock_held_`: only called when lock debugging is on, which it never is in libix; answers
/// "held" so an assertion could not fail on libix's account.
///
/// # Safety
/// None (the argument is not read).
#[no_mangle]
pub unsafe extern "C" fn evthread_is_debug_lock_held_(_lock: *mut c_void) -> c_int {
    1
}
