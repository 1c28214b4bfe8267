//! The two thread-callback getters libevent_core exports from its internal `evthread-internal.h`
//! (`evthread_get_lock_callbacks`, `evthread_get_condition_callbacks`). They are not in `event2/thread.h`, but
//! libevent's own test suite calls them (it wraps the installed lock callbacks), so libix exports them as libevent
//! does: pointers to the callback tables in use, the exported `evthread_lock_fns_`/`evthread_cond_fns_`.
//! (libevent returns the tables from before lock debugging when it is on; libix has no lock-debugging wrapper, so
//! the tables in use are always the application's.)

use std::ptr;

use super::event::{evthread_cond_fns_, evthread_lock_fns_, CondCallbacks, LockCallbacks};
use super::guard;

/// `evthread_get_lock_callbacks`: the lock callbacks in use (`struct evthread_lock_callbacks *`).
///
/// # Safety
/// None; the table is process-wide, and writing it is the caller's business as in libevent.
#[no_mangle]
pub unsafe extern "C" fn evthread_get_lock_callbacks() -> *mut LockCallbacks {
    guard(ptr::null_mut(), || ptr::addr_of!(evthread_lock_fns_).cast_mut())
}

/// `evthread_get_condition_callbacks`: the condition callbacks in use (`struct evthread_condition_callbacks *`).
///
/// # Safety
/// As [`evthread_get_lock_callbacks`].
#[no_mangle]
pub unsafe extern "C" fn evthread_get_condition_callbacks() -> *mut CondCallbacks {
    guard(ptr::null_mut(), || ptr::addr_of!(evthread_cond_fns_).cast_mut())
}
