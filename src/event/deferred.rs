//! Deferred callbacks: work a component (an evbuffer's callbacks, soon bufferevent's) hands to an event loop to run
//! later, from the loop, instead of running it now inside the caller's stack. This is libevent's
//! `event_deferred_cb_*`: a callback is scheduled at most once at a time, runs from the loop (in the current
//! iteration when scheduled from a callback, up to 32 per iteration, as libevent), at the base's middle priority
//! unless told otherwise, counts as an active event while queued (so a loop does not exit or block while one is
//! pending), and can be cancelled.
//!
//! A [`Deferred`] owns an engine event (boxed, stable address) whose callback is a trampoline to a Rust closure,
//! so the base needs only one primitive ([`Base::active_later_if_idle`]).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_short, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use super::base::{Base, DelMode};
use super::raw::{EvPtr, EventCb, RawEvent, CLOSURE_CB_SELF, EVLIST_ACTIVE, EVLIST_ACTIVE_LATER};

/// The work a deferred callback runs.
pub type DeferredFn = Arc<dyn Fn() + Send + Sync>;

struct Record {
    ev: RawEvent,
    base: *const Base,
    run: DeferredFn,
}

/// A deferred callback bound to one base. Dropping it cancels it (waiting if another thread is running it).
///
/// The base must outlive it (libevent's rule for every event of a base).
pub struct Deferred {
    rec: NonNull<Record>,
}

// SAFETY: the record is only touched through the base's API (which locks) and by the loop's trampoline, which
// reads `run` (immutable after creation, and Send + Sync).
unsafe impl Send for Deferred {}
// SAFETY: as above; `&Deferred` only schedules or cancels, both of which lock the base.
unsafe impl Sync for Deferred {}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("scheduled", &self.is_scheduled()).finish()
    }
}

impl Deferred {
    /// A deferred callback running `run` from `base`'s loop, at priority `npriorities / 2` (libevent's choice for
    /// evbuffers and bufferevents).
    pub fn new(base: &Base, run: DeferredFn) -> Deferred {
        let rec = Box::new(Record { ev: RawEvent::zeroed(), base, run });
        let rec = NonNull::from(Box::leak(rec));
        let d = Deferred { rec };
        let arg = rec.as_ptr().cast::<c_void>();
        // An fd-less, condition-less event: it only ever becomes active through `schedule`. Marked as a deferred
        // callback for the base's per-iteration count.
        let _ = Base::assign(Some(base), d.event(), -1, 0, Some(trampoline as EventCb), arg);
        d.event().set_closure(CLOSURE_CB_SELF);
        d
    }

    fn event(&self) -> EvPtr {
        // SAFETY: the record is live (boxed, stable) until `self` is dropped.
        unsafe { EvPtr::new(std::ptr::addr_of_mut!((*self.rec.as_ptr()).ev)).expect("boxed record") }
    }

    fn base(&self) -> &Base {
        // SAFETY: the base outlives its deferred callbacks (documented contract of `new`).
        unsafe { &*(*self.rec.as_ptr()).base }
    }

    /// Queues the callback (libevent's `event_deferred_cb_schedule_`): from outside the loop, for its next
    /// iteration; from a callback, at the end of its priority's queue in this iteration (after the first 32 of an
    /// iteration, in the next one). Returns false (and does nothing) if it is queued already: many schedules before
    /// it runs make one run.
    pub fn schedule(&self) -> bool {
        self.base().schedule_deferred(self.event())
    }

    /// Whether it is queued and has not run yet.
    pub fn is_scheduled(&self) -> bool {
        self.event().flags() & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) != 0
    }

    /// Runs it at priority `pri` from now on (libevent's `event_deferred_cb_set_priority_`, used by
    /// `bufferevent_priority_set`); false if the base has no such priority or the callback is queued right now.
    pub fn set_priority(&self, pri: i32) -> bool {
        self.base().priority_set(self.event(), pri).is_ok()
    }

    /// Takes it off the queue if it is queued; tells whether it was.
    pub fn cancel(&self) -> bool {
        let was = self.is_scheduled();
        let _ = self.base().del(self.event(), DelMode::NoBlock);
        was
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        // Block: if the loop thread is running it, wait (from the loop thread itself this does not wait, so a
        // callback may drop its own Deferred: the trampoline keeps its closure alive through the call).
        let _ = self.base().del(self.event(), DelMode::Block);
        // SAFETY: the pointer came from Box::leak in `new`, the base no longer knows the event, and it is freed once.
        drop(unsafe { Box::from_raw(self.rec.as_ptr()) });
    }
}

extern "C" fn trampoline(_fd: c_int, _what: c_short, arg: *mut c_void) {
    // SAFETY: `arg` is the record this event was assigned with; the base runs the event only while the record is
    // live (dropping the Deferred deletes the event first). Clone the closure so the record may be freed by it.
    let run = unsafe { (*arg.cast::<Record>()).run.clone() };
    run();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::base::Config;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const EVLOOP_NONBLOCK: i32 = 0x02;

    #[test]
    fn runs_once_per_schedule_on_the_next_iteration_and_can_be_cancelled() {
        let base = Box::new(Base::new(Config::default()).expect("base"));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let d = Deferred::new(
            &base,
            Arc::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert!(d.schedule());
        assert!(!d.schedule(), "a queued callback is queued once");
        assert!(d.is_scheduled());
        assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing runs before the loop");
        base.run(EVLOOP_NONBLOCK).expect("loop");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!d.is_scheduled());
        assert!(d.schedule());
        assert!(d.cancel());
        base.run(EVLOOP_NONBLOCK).expect("loop");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "a cancelled callback does not run");
        assert!(!d.cancel());
    }

    #[test]
    fn runs_at_the_priority_it_is_given() {
        let base = Box::new(Base::new(Config::default()).expect("base"));
        base.priority_init(3).expect("priorities");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let low = Deferred::new(&base, Arc::new(move || o1.lock().expect("lock").push("low")));
        let high = Deferred::new(&base, Arc::new(move || o2.lock().expect("lock").push("high")));
        assert!(low.set_priority(2));
        assert!(high.set_priority(0));
        assert!(!high.set_priority(3), "no such priority");
        low.schedule();
        high.schedule();
        base.run(EVLOOP_NONBLOCK).expect("loop");
        assert_eq!(*order.lock().expect("lock"), vec!["high", "low"]);
    }

    #[test]
    fn a_pending_callback_keeps_the_loop_running() {
        let base = Box::new(Base::new(Config::default()).expect("base"));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let d = Deferred::new(
            &base,
            Arc::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
        );
        d.schedule();
        // A plain loop (no flags) with nothing else registered must still run the pending callback, then exit.
        assert_eq!(base.run(0).expect("loop"), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
