//! Engine-owned events: `event_base_once` records and the `event_base_loopexit` callback. A once-record owns its
//! `struct event` (boxed, so its address is stable while the base knows it) and the user's callback; the base keeps
//! every unfired record so `event_base_free` can release them.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_short, c_void};
use std::ptr::NonNull;

use super::base::Base;
use super::raw::{self, EvPtr, EventCb, RawEvent};

/// One pending `event_base_once`.
#[derive(Debug)]
pub struct OnceRecord {
    ev: RawEvent,
    cb: Option<EventCb>,
    arg: *mut c_void,
    base: *const Base,
    /// Index in the base's record table.
    pub(crate) slot: usize,
}

/// An owned, boxed record, as the base stores it.
#[derive(Debug)]
pub struct OncePtr(NonNull<OnceRecord>);

// SAFETY: the record is owned by exactly one OncePtr, which only the base (under its lock) or the trampoline (after
// taking it out of the base) touch.
unsafe impl Send for OncePtr {}

impl OncePtr {
    /// A new record for `cb(.., arg)` on `base`.
    pub fn new(base: &Base, cb: Option<EventCb>, arg: *mut c_void) -> OncePtr {
        let rec = Box::new(OnceRecord { ev: RawEvent::zeroed(), cb, arg, base, slot: usize::MAX });
        // SAFETY: Box::into_raw never returns null.
        OncePtr(unsafe { NonNull::new_unchecked(Box::into_raw(rec)) })
    }

    /// The record's event.
    pub fn event(&self) -> EvPtr {
        // SAFETY: the record is live and boxed (stable address) until this OncePtr is dropped; the base forgets the
        // event before that (it either fired, which deletes a non-persistent event, or the base is being freed).
        unsafe { EvPtr::new(std::ptr::addr_of_mut!((*self.0.as_ptr()).ev)).expect("boxed record") }
    }

    /// The argument the trampoline receives.
    pub fn as_arg(&self) -> *mut c_void {
        self.0.as_ptr().cast()
    }

    /// Records the table slot.
    pub fn set_slot(&mut self, slot: usize) {
        // SAFETY: we own the record; no other reference to it exists while the caller holds `&mut self`.
        unsafe { (*self.0.as_ptr()).slot = slot }
    }
}

impl Drop for OncePtr {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw in `new` and is dropped once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// The callback of every once-event: runs the user's callback, then frees the record.
pub extern "C" fn once_trampoline(fd: c_int, what: c_short, arg: *mut c_void) {
    let rec = arg as *const OnceRecord;
    // SAFETY: `arg` is the record this trampoline was assigned with (OncePtr::as_arg); it stays allocated until
    // `Base::take_once` below hands back its owner, and its fields are not written after creation.
    let (cb, uarg, base, slot) = unsafe { ((*rec).cb, (*rec).arg, (*rec).base, (*rec).slot) };
    if let Some(cb) = cb {
        raw::invoke(cb, fd, what, uarg);
    }
    // SAFETY: the base outlives its pending events (libevent's contract: events are gone before the base is
    // freed, and event_base_free releases once-records without running them).
    let base = unsafe { &*base };
    drop(base.take_once(slot));
}

/// `event_base_loopexit`'s callback: `arg` is the base.
pub extern "C" fn loopexit_cb(_fd: c_int, _what: c_short, arg: *mut c_void) {
    // SAFETY: `arg` is the base that scheduled this once-event (Base::loopexit), alive while its events are.
    let base = unsafe { &*(arg as *const Base) };
    base.set_gotterm();
}
