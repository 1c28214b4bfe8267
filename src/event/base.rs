//! The event base: libevent 2.1's `event_base` semantics over a [`Poller`].
//!
//! State lives in [`Inner`] behind one mutex (always taken: uncontended it costs two atomic operations, and it makes
//! a base safe to use from several threads whether or not the program called `evthread_use_pthreads`). The mutex
//! is never held while application code runs: the loop copies a callback and its arguments out, drops the guard,
//! calls, and locks again (STYLE pattern 12), so callbacks may add, delete, activate or free any event, including
//! their own. Blocking rules for threads (`event_del` waits for a callback running in the loop thread) follow
//! libevent and apply when the base was created with threading enabled.
//!
//! Where libevent uses internal events (the signal self-pipe, the thread-notify fd), the loop handles those fds
//! itself after each wait: they are not counted, not listed by foreach and not dumped, exactly as libevent's
//! internal events are not counted and are dumped as "Internal".

use std::ffi::{c_int, c_void};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::heap::TimerHeap;
use super::linger;
use super::map::{FdSlot, IoMap, SignalMap, NSIG};
use super::once::{self, OncePtr};
use super::poller::{Epoll, Interest, Poller, Ready};
use super::queue::{ActiveQueues, QueueId};
use super::raw::*;
use super::signal::Signals;
use super::sys;
use super::time::{Clock, SystemClock, Usec};

/// libevent's `MAX_DEFERREDS_QUEUED`: how many deferred callbacks a loop iteration makes active at once (one
/// more, in fact: libevent's check is `>`); later ones wait for the next iteration.
pub const MAX_DEFERREDS_QUEUED: u32 = 32;

/// `event_base_loop` flag: run until an iteration ran callbacks.
pub const EVLOOP_ONCE: i32 = 0x01;
/// `event_base_loop` flag: do not block.
pub const EVLOOP_NONBLOCK: i32 = 0x02;
/// `event_base_loop` flag: keep running with no events.
pub const EVLOOP_NO_EXIT_ON_EMPTY: i32 = 0x04;

/// `event_base_get_num_events` / `_max_events` selector: active events.
pub const COUNT_ACTIVE: u32 = 1;
/// Selector: virtual events.
pub const COUNT_VIRTUAL: u32 = 2;
/// Selector: added events (each of inserted, timeout and active counts once, as in libevent).
pub const COUNT_ADDED: u32 = 4;

/// Most priorities a base may have (`EVENT_MAX_PRIORITIES`).
pub const MAX_PRIORITIES: i32 = 256;
/// Most common timeouts per base.
pub const MAX_COMMON_TIMEOUTS: usize = 256;
const COMMON_TIMEOUT_MAGIC: i64 = 0x5000_0000;
const COMMON_TIMEOUT_MASK: i64 = 0xf000_0000;
const COMMON_TIMEOUT_IDX_MASK: i64 = 0x0ff0_0000;
const COMMON_TIMEOUT_IDX_SHIFT: i64 = 20;
const MICROSECONDS_MASK: i64 = 0x000f_ffff;
/// Seconds between re-measurements of wall minus monotonic time (libevent's CLOCK_SYNC_INTERVAL).
const CLOCK_SYNC_INTERVAL: i64 = 5;

/// Log severities (libevent's EVENT_LOG_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// EVENT_LOG_DEBUG.
    Debug = 0,
    /// EVENT_LOG_MSG.
    Msg = 1,
    /// EVENT_LOG_WARN.
    Warn = 2,
    /// EVENT_LOG_ERR.
    Err = 3,
}

/// Where a base's diagnostics go (the C shell routes them to libevent's log callback).
pub type LogFn = fn(Severity, &str);

fn default_log(sev: Severity, msg: &str) {
    match sev {
        Severity::Debug => log::debug!("{msg}"),
        Severity::Msg => log::info!("{msg}"),
        Severity::Warn => log::warn!("{msg}"),
        Severity::Err => log::error!("{msg}"),
    }
}

/// How a base is built (from `struct event_config` in the C shell).
#[derive(Debug)]
pub struct Config {
    /// EVENT_BASE_FLAG_NO_CACHE_TIME: never cache the time during callbacks.
    pub no_cache_time: bool,
    /// EVENT_BASE_FLAG_PRECISE_TIMER: CLOCK_MONOTONIC and sub-millisecond waits.
    pub precise_timer: bool,
    /// Threading on (evthread_use_pthreads before the base, no EVENT_BASE_FLAG_NOLOCK): the base is notifiable and
    /// `event_del` waits for callbacks running in the loop thread.
    pub threaded: bool,
    /// `event_config_set_max_dispatch_interval`: time budget for callbacks of priority >= `limit_after_prio`.
    pub max_dispatch_interval: Option<Usec>,
    /// Callback budget for those priorities (i32::MAX: none).
    pub max_dispatch_callbacks: i32,
    /// First priority the budgets apply to.
    pub limit_after_prio: i32,
    /// Backend; None: [`Epoll`].
    pub poller: Option<Box<dyn Poller>>,
    /// Clock; None: [`SystemClock`].
    pub clock: Option<Box<dyn Clock>>,
    /// Diagnostics.
    pub log: LogFn,
    /// Frees an event's memory for `event_free_finalize` (the allocator of `event_new`).
    pub free_event: Option<FreeEventFn>,
    /// libevent's debug mode: also refuse mixing edge- and level-triggered events on one fd.
    pub debug_mode: bool,
}

/// Frees a `struct event` allocated by `event_new`.
pub type FreeEventFn = fn(EvPtr);

impl Default for Config {
    fn default() -> Self {
        Config {
            no_cache_time: false,
            precise_timer: false,
            threaded: false,
            max_dispatch_interval: None,
            max_dispatch_callbacks: i32::MAX,
            limit_after_prio: 1,
            poller: None,
            clock: None,
            log: default_log,
            free_event: None,
            debug_mode: false,
        }
    }
}

/// Why an operation failed (the C shell turns these into -1 and, where libevent does, a warning).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend refused the fd (epoll_ctl's errno).
    #[error("{0}")]
    Backend(#[from] io::Error),
    /// Signal number out of range.
    #[error("signal {0} out of range")]
    BadSignal(i32),
    /// Debug mode: edge- and level-triggered events on one fd.
    #[error("Tried to mix edge-triggered and non-edge-triggered events on fd {0}")]
    MixedEdge(i32),
    /// More than 65535 events on one condition of one fd.
    #[error("Too many events reading or writing on fd {0}")]
    TooMany(i32),
    /// The event is being finalized.
    #[error("event is finalizing")]
    Finalizing,
    /// EV_SIGNAL with EV_READ, EV_WRITE or EV_CLOSED.
    #[error("EV_SIGNAL is not compatible with EV_READ, EV_WRITE or EV_CLOSED")]
    SignalWithIo,
    /// `event_base_loop` called while the loop runs.
    #[error("reentrant invocation.  Only one event_base_loop can run on each event_base at once.")]
    Reentrant,
    /// Bad argument.
    #[error("invalid argument")]
    Invalid,
}

/// `event_del` modes (libevent's EVENT_DEL_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelMode {
    /// Never wait for a running callback.
    NoBlock,
    /// Wait for a callback running in the loop thread.
    Block,
    /// Wait unless the event has EV_FINALIZE (plain `event_del`).
    AutoBlock,
    /// Also delete events being finalized (base teardown).
    EvenIfFinalizing,
}

struct Inner {
    poller: Arc<dyn Poller>,
    clock: Box<dyn Clock>,
    log: LogFn,
    threaded: bool,
    debug_mode: bool,
    io: IoMap,
    sigmap: SignalMap,
    signals: Signals,
    timers: TimerHeap,
    active: ActiveQueues,
    event_count: i32,
    event_count_max: i32,
    active_count: i32,
    active_count_max: i32,
    virtual_count: i32,
    virtual_count_max: i32,
    running_loop: bool,
    gotterm: bool,
    brk: bool,
    cont: bool,
    /// Deferred callbacks made active in this loop iteration (libevent's `n_deferreds_queued`).
    deferreds_queued: u32,
    running_priority: i32,
    owner: u64,
    current: Option<EvPtr>,
    current_waiters: usize,
    /// Set when the running signal callback's remaining calls must stop (it was deleted or re-timed).
    signal_abort: bool,
    tv_cache: Option<Usec>,
    no_cache_time: bool,
    clock_diff: Usec,
    /// When wall minus monotonic time is next re-measured: the start of the second CLOCK_SYNC_INTERVAL + 1 after
    /// the last measurement's (libevent re-measures once `tv_sec > last + CLOCK_SYNC_INTERVAL`), in microseconds
    /// so the check needs no division.
    next_clock_sync: Usec,
    notify: Option<OwnedFd>,
    notify_pending: bool,
    once: Vec<Option<OncePtr>>,
    once_free: Vec<usize>,
    /// Boxed: their addresses are handed to the application.
    #[allow(clippy::vec_box)]
    common_timeouts: Vec<Box<Timeval>>,
    max_dispatch_interval: Option<Usec>,
    max_dispatch_callbacks: i32,
    limit_after_prio: i32,
    ready: Vec<Ready>,
    scratch: Vec<EvPtr>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("event_count", &self.event_count)
            .field("active_count", &self.active_count)
            .field("timers", &self.timers.len())
            .field("running_loop", &self.running_loop)
            .finish_non_exhaustive()
    }
}

/// An event base. Its address is written into the events assigned to it (`ev_base`), so a base must not move once
/// events refer to it (the C shell keeps it in place; Rust users keep it boxed).
#[derive(Debug)]
pub struct Base {
    inner: Mutex<Inner>,
    /// Signalled when the running callback returns (`event_del` from another thread waits on it).
    cond: Condvar,
    method: &'static str,
    features: i32,
    free_event: Option<FreeEventFn>,
}

type Guard<'a> = MutexGuard<'a, Inner>;

impl Base {
    /// A new base.
    pub fn new(mut cfg: Config) -> Result<Base, Error> {
        let poller: Arc<dyn Poller> = match cfg.poller.take() {
            Some(p) => Arc::from(p),
            None => Arc::new(Epoll::new(cfg.precise_timer)?),
        };
        let clock = cfg.clock.take().unwrap_or_else(|| Box::new(SystemClock::new(cfg.precise_timer)));
        let mut inner = Inner {
            poller: poller.clone(),
            clock,
            log: cfg.log,
            threaded: cfg.threaded,
            debug_mode: cfg.debug_mode,
            io: IoMap::default(),
            sigmap: SignalMap::default(),
            signals: Signals::default(),
            timers: TimerHeap::default(),
            active: ActiveQueues::new(1),
            event_count: 0,
            event_count_max: 0,
            active_count: 0,
            active_count_max: 0,
            virtual_count: 0,
            virtual_count_max: 0,
            running_loop: false,
            gotterm: false,
            brk: false,
            cont: false,
            deferreds_queued: 0,
            running_priority: -1,
            owner: 0,
            current: None,
            current_waiters: 0,
            signal_abort: false,
            tv_cache: None,
            no_cache_time: cfg.no_cache_time,
            clock_diff: Usec::ZERO,
            next_clock_sync: Usec(i64::MIN),
            notify: None,
            notify_pending: false,
            once: Vec::new(),
            once_free: Vec::new(),
            common_timeouts: Vec::new(),
            max_dispatch_interval: cfg.max_dispatch_interval,
            max_dispatch_callbacks: if cfg.max_dispatch_callbacks < 0 { i32::MAX } else { cfg.max_dispatch_callbacks },
            limit_after_prio: cfg.limit_after_prio,
            ready: Vec::new(),
            scratch: Vec::new(),
        };
        if inner.max_dispatch_callbacks == i32::MAX && inner.max_dispatch_interval.is_none() {
            inner.limit_after_prio = i32::MAX;
        }
        inner.gettime();
        if cfg.threaded {
            inner.make_notifiable()?;
        }
        Ok(Base {
            inner: Mutex::new(inner),
            cond: Condvar::new(),
            method: poller.name(),
            features: poller.features(),
            free_event: cfg.free_event,
        })
    }

    fn lock(&self) -> Guard<'_> {
        // parking_lot: no poisoning (a panic while locked, caught at the C boundary, must not make the base unusable)
        // and a leaner uncontended path than std's, which the loop takes twice per callback.
        self.inner.lock()
    }

    /// The address written into `ev_base`.
    pub fn handle(&self) -> *mut c_void {
        self as *const Base as *mut c_void
    }

    /// `event_base_get_method`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// `event_base_get_features`.
    pub fn features(&self) -> i32 {
        self.features
    }

    /// `event_assign`: writes the event's public fields. `base` None: the 1.4 `event_set` before `event_init`.
    /// Fails (after writing, as libevent does) for EV_SIGNAL combined with I/O conditions.
    pub fn assign(
        base: Option<&Base>,
        ev: EvPtr,
        fd: c_int,
        events: i16,
        cb: Option<EventCb>,
        arg: *mut c_void,
    ) -> Result<(), Error> {
        ev.set_base(base.map_or(std::ptr::null_mut(), Base::handle));
        ev.set_callback(cb);
        ev.set_arg(arg);
        ev.set_fd(fd);
        ev.set_events(events);
        ev.set_res(0);
        ev.set_flags(EVLIST_INIT);
        ev.set_heap_idx(usize::MAX);
        if events & EV_SIGNAL != 0 {
            if events & EV_IO != 0 {
                return Err(Error::SignalWithIo);
            }
            ev.set_closure(CLOSURE_SIGNAL);
        } else if events & EV_PERSIST != 0 {
            ev.set_persist_interval(Usec::ZERO);
            ev.set_closure(CLOSURE_PERSIST);
        } else {
            ev.set_closure(CLOSURE_EVENT);
        }
        if let Some(b) = base {
            ev.set_pri((b.npriorities() / 2) as u8);
        }
        Ok(())
    }

    /// `event_base_set`: moves an assigned, idle event to this base.
    pub fn set_base_of(&self, ev: EvPtr) -> Result<(), Error> {
        if ev.flags() != EVLIST_INIT {
            return Err(Error::Invalid);
        }
        ev.set_base(self.handle());
        ev.set_pri((self.npriorities() / 2) as u8);
        Ok(())
    }

    /// Waits while `ev` is the callback running in the loop thread and we are another thread.
    fn wait_while_running<'a>(&'a self, mut g: Guard<'a>, ev: EvPtr) -> Guard<'a> {
        while g.threaded && g.current == Some(ev) && !g.in_thread() {
            g.current_waiters += 1;
            self.cond.wait(&mut g);
        }
        g
    }

    /// `event_add`: `timeout` relative (None: no timeout).
    pub fn add(&self, ev: EvPtr, timeout: Option<Usec>) -> Result<(), Error> {
        let mut g = self.lock();
        if ev.events() & EV_SIGNAL != 0 {
            g = self.wait_while_running(g, ev);
        }
        g.add_nolock(ev, timeout, false)
    }

    /// `event_del` and its variants.
    pub fn del(&self, ev: EvPtr, mode: DelMode) -> Result<(), Error> {
        let mut g = self.lock();
        let r = g.del_nolock(ev, mode);
        if mode != DelMode::NoBlock
            && (mode == DelMode::Block || ev.events() & EV_FINALIZE == 0)
            && g.current == Some(ev)
        {
            g = self.wait_while_running(g, ev);
        }
        drop(g);
        r
    }

    /// `event_remove_timer`: drops the timeout only.
    pub fn remove_timer(&self, ev: EvPtr) {
        let mut g = self.lock();
        if ev.flags() & EVLIST_TIMEOUT != 0 {
            g.remove_timeout(ev);
            ev.set_persist_interval(Usec::ZERO);
        }
    }

    /// `event_active`.
    pub fn active(&self, ev: EvPtr, res: i16, ncalls: i16) {
        let mut g = self.lock();
        if ev.events() & EV_SIGNAL != 0 {
            g = self.wait_while_running(g, ev);
        }
        g.active_nolock(ev, res, ncalls);
    }

    /// `event_active_later_`: active on the next loop iteration, not this one.
    pub fn active_later(&self, ev: EvPtr, res: i16) {
        let mut g = self.lock();
        if ev.flags() & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) != 0 {
            ev.set_res(ev.res() | res);
            return;
        }
        ev.set_res(res);
        g.count_incr(ev.flags());
        ev.set_flags(ev.flags() | EVLIST_ACTIVE_LATER);
        g.active_count += 1;
        g.active_count_max = g.active_count_max.max(g.active_count);
        g.active.push_back(QueueId::Later, ev, 1);
        let _ = g.notify_if_needed();
    }

    /// `event_pending`: the conditions of `what` the event is pending or active on, and the deadline in wall time
    /// when asked and EV_TIMEOUT is among them.
    pub fn pending(&self, ev: EvPtr, what: i16) -> (i16, Option<Timeval>) {
        let g = self.lock();
        let flags = ev.flags();
        let mut r = 0;
        if flags & EVLIST_INSERTED != 0 {
            r |= ev.events() & (EV_IO | EV_SIGNAL);
        }
        if flags & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) != 0 {
            r |= ev.res();
        }
        if flags & EVLIST_TIMEOUT != 0 {
            r |= EV_TIMEOUT;
        }
        let what = what & (EV_TIMEOUT | EV_IO | EV_SIGNAL);
        let tv = (r & what & EV_TIMEOUT != 0).then(|| ev.deadline().plus(g.clock_diff).to_timeval());
        (r & what, tv)
    }

    /// `event_priority_set`.
    pub fn priority_set(&self, ev: EvPtr, pri: i32) -> Result<(), Error> {
        let g = self.lock();
        if ev.flags() & EVLIST_ACTIVE != 0 || pri < 0 || pri >= g.active.npriorities() as i32 {
            return Err(Error::Invalid);
        }
        ev.set_pri(pri as u8);
        Ok(())
    }

    /// `event_base_priority_init`.
    pub fn priority_init(&self, n: i32) -> Result<(), Error> {
        let mut g = self.lock();
        if g.active_count > 0 || !(1..MAX_PRIORITIES).contains(&n) {
            return Err(Error::Invalid);
        }
        if n as usize != g.active.npriorities() && !g.active.set_npriorities(n as usize) {
            return Err(Error::Invalid);
        }
        Ok(())
    }

    /// `event_base_get_npriorities`.
    pub fn npriorities(&self) -> usize {
        self.lock().active.npriorities()
    }

    /// `event_base_get_num_events`.
    pub fn num_events(&self, which: u32) -> i32 {
        let g = self.lock();
        let mut r = 0;
        if which & COUNT_ACTIVE != 0 {
            r += g.active_count;
        }
        if which & COUNT_VIRTUAL != 0 {
            r += g.virtual_count;
        }
        if which & COUNT_ADDED != 0 {
            r += g.event_count;
        }
        r
    }

    /// `event_base_get_max_events`.
    pub fn max_events(&self, which: u32, clear: bool) -> i32 {
        let mut g = self.lock();
        let mut r = 0;
        if which & COUNT_ACTIVE != 0 {
            r += g.active_count_max;
            if clear {
                g.active_count_max = 0;
            }
        }
        if which & COUNT_VIRTUAL != 0 {
            r += g.virtual_count_max;
            if clear {
                g.virtual_count_max = 0;
            }
        }
        if which & COUNT_ADDED != 0 {
            r += g.event_count_max;
            if clear {
                g.event_count_max = 0;
            }
        }
        r
    }

    /// `event_base_loopbreak`; Err if the loop thread could not be woken.
    pub fn loopbreak(&self) -> Result<(), Error> {
        let mut g = self.lock();
        g.brk = true;
        g.notify_if_needed()
    }

    /// `event_base_loopcontinue`.
    pub fn loopcontinue(&self) -> Result<(), Error> {
        let mut g = self.lock();
        g.cont = true;
        g.notify_if_needed()
    }

    /// `event_base_got_break`.
    pub fn got_break(&self) -> bool {
        self.lock().brk
    }

    /// `event_base_got_exit`.
    pub fn got_exit(&self) -> bool {
        self.lock().gotterm
    }

    pub(crate) fn set_gotterm(&self) {
        self.lock().gotterm = true;
    }

    /// `event_base_loopexit`: the loop exits after the iteration in which `timeout` (None: now) expires.
    pub fn loopexit(&self, timeout: Option<Usec>) -> Result<(), Error> {
        self.once(-1, EV_TIMEOUT, Some(once::loopexit_cb as EventCb), self.handle(), timeout)
    }

    /// `event_base_once`.
    pub fn once(
        &self,
        fd: c_int,
        events: i16,
        cb: Option<EventCb>,
        arg: *mut c_void,
        timeout: Option<Usec>,
    ) -> Result<(), Error> {
        if events & (EV_SIGNAL | EV_PERSIST) != 0 {
            return Err(Error::Invalid);
        }
        let mut rec = OncePtr::new(self, cb, arg);
        let ev = rec.event();
        let tramp = Some(once::once_trampoline as EventCb);
        let activate;
        if events & (EV_TIMEOUT | EV_SIGNAL | EV_IO) == EV_TIMEOUT {
            Base::assign(Some(self), ev, -1, 0, tramp, rec.as_arg())?;
            activate = timeout.is_none_or(|t| !t.is_set());
        } else if events & EV_IO != 0 {
            Base::assign(Some(self), ev, fd, events & EV_IO, tramp, rec.as_arg())?;
            activate = false;
        } else {
            return Err(Error::Invalid);
        }
        let mut g = self.lock();
        if activate {
            g.active_nolock(ev, EV_TIMEOUT, 1);
        } else {
            g.add_nolock(ev, timeout, false)?;
        }
        let slot = g.once_free.pop().unwrap_or_else(|| {
            g.once.push(None);
            g.once.len() - 1
        });
        rec.set_slot(slot);
        g.once[slot] = Some(rec);
        Ok(())
    }

    /// Takes a fired once-record out of the table (the trampoline drops it, unlocked).
    pub(crate) fn take_once(&self, slot: usize) -> Option<OncePtr> {
        let mut g = self.lock();
        let r = g.once.get_mut(slot).and_then(Option::take);
        if r.is_some() {
            g.once_free.push(slot);
        }
        r
    }

    /// `event_base_gettimeofday_cached`: the cached loop time in wall-clock terms, or the wall clock.
    pub fn gettimeofday_cached(&self) -> Timeval {
        let g = self.lock();
        match g.tv_cache {
            Some(t) => t.plus(g.clock_diff).to_timeval(),
            None => g.clock.wall().to_timeval(),
        }
    }

    /// `event_base_update_cache_time`.
    pub fn update_cache_time(&self) {
        let mut g = self.lock();
        if g.running_loop {
            g.update_time_cache();
        }
    }

    /// `event_gettime_monotonic`.
    pub fn gettime_monotonic(&self) -> Timeval {
        self.lock().clock.monotonic().to_timeval()
    }

    /// `event_base_init_common_timeout`: a stable pointer to the base's encoding of `duration` (libevent's magic
    /// tv_usec), or null past 256 durations. `event_add` given such a timeval uses its duration as a plain timeout:
    /// our heap orders equal durations first-in first-out anyway, which is what the common-timeout queues are for.
    pub fn init_common_timeout(&self, duration: Timeval) -> *const Timeval {
        let mut g = self.lock();
        let mut d = duration;
        if d.tv_usec > 1_000_000 {
            if g.is_common(d) {
                d.tv_usec &= MICROSECONDS_MASK;
            }
            d = Usec::from_timeval(d).to_timeval();
        }
        for t in &g.common_timeouts {
            if t.tv_sec == d.tv_sec && t.tv_usec & MICROSECONDS_MASK == d.tv_usec {
                return &**t;
            }
        }
        if g.common_timeouts.len() == MAX_COMMON_TIMEOUTS {
            (g.log)(
                Severity::Warn,
                &format!(
                    "event_base_init_common_timeout: Too many common timeouts already in use; we only support {MAX_COMMON_TIMEOUTS} per event_base"
                ),
            );
            return std::ptr::null();
        }
        let idx = g.common_timeouts.len() as i64;
        let t = Box::new(Timeval {
            tv_sec: d.tv_sec,
            tv_usec: d.tv_usec | COMMON_TIMEOUT_MAGIC | (idx << COMMON_TIMEOUT_IDX_SHIFT),
        });
        let p: *const Timeval = &*t;
        g.common_timeouts.push(t);
        p
    }

    /// A timeval from the application as a relative timeout: a common-timeout encoding of this base decodes to its
    /// duration.
    pub fn timeout_of(&self, tv: Timeval) -> Usec {
        let mut tv = tv;
        if self.lock().is_common(tv) {
            tv.tv_usec &= MICROSECONDS_MASK;
        }
        Usec::from_timeval(tv)
    }

    /// `event_base_get_running_event`: the event whose callback runs now, when asked from the loop thread.
    pub fn running_event(&self) -> Option<EvPtr> {
        let g = self.lock();
        if g.in_thread() {
            g.current
        } else {
            None
        }
    }

    /// The events `event_base_foreach_event` visits, in libevent's order: added fd events (ascending fd, newest
    /// first), signal events, timeouts not otherwise added, then active events neither added nor timed.
    pub fn snapshot(&self) -> Vec<EvPtr> {
        let g = self.lock();
        g.snapshot()
    }

    /// `event_base_dump_events`'s text.
    pub fn dump(&self) -> String {
        let g = self.lock();
        let evs = g.snapshot();
        let mut s = String::from("Inserted events:\n");
        for &e in &evs {
            let flags = e.flags();
            if flags & (EVLIST_INSERTED | EVLIST_TIMEOUT) == 0 {
                continue;
            }
            let evs = e.events();
            let gloss = if evs & EV_SIGNAL != 0 { "sig" } else { "fd " };
            let _ = write!(s, "  {:p} [{gloss} {}]", e.as_ptr(), e.fd());
            for (bit, name) in [
                (EV_READ, " Read"),
                (EV_WRITE, " Write"),
                (EV_CLOSED, " EOF"),
                (EV_SIGNAL, " Signal"),
                (EV_PERSIST, " Persist"),
                (EV_ET, " ET"),
            ] {
                if evs & bit != 0 {
                    s.push_str(name);
                }
            }
            if flags & EVLIST_INTERNAL != 0 {
                s.push_str(" Internal");
            }
            if flags & EVLIST_TIMEOUT != 0 {
                let tv = e.deadline().plus(g.clock_diff).to_timeval();
                let _ = write!(s, " Timeout={}.{:06}", tv.tv_sec, tv.tv_usec);
            }
            s.push('\n');
        }
        s.push_str("Active events:\n");
        for &e in &evs {
            let flags = e.flags();
            if flags & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) == 0 {
                continue;
            }
            let gloss = if e.events() & EV_SIGNAL != 0 { "sig" } else { "fd " };
            let _ = write!(s, "  {:p} [{gloss} {}, priority={}]", e.as_ptr(), e.fd(), e.pri());
            let res = e.res();
            for (bit, name) in [
                (EV_READ, " Read"),
                (EV_WRITE, " Write"),
                (EV_CLOSED, " EOF"),
                (EV_SIGNAL, " Signal"),
                (EV_TIMEOUT, " Timeout"),
            ] {
                if res & bit != 0 {
                    s.push_str(name);
                }
            }
            s.push_str(" active");
            if flags & EVLIST_INTERNAL != 0 {
                s.push_str(" [Internal]");
            }
            if flags & EVLIST_ACTIVE_LATER != 0 {
                s.push_str(" [NextTime]");
            }
            s.push('\n');
        }
        s
    }

    /// `event_base_active_by_fd`.
    pub fn active_by_fd(&self, fd: c_int, events: i16) {
        let mut g = self.lock();
        if events & EV_TIMEOUT == 0 {
            g.io_active(fd, events & EV_IO);
        } else {
            let evs: Vec<EvPtr> = g.timers.iter().filter(|e| e.fd() == fd).collect();
            for e in evs {
                g.active_nolock(e, EV_TIMEOUT, 1);
            }
        }
    }

    /// `event_base_active_by_signal`.
    pub fn active_by_signal(&self, sig: c_int) {
        self.lock().signal_active(sig, 1);
    }

    /// `event_base_add_virtual_`: keeps the loop running with no events (used by subsystems that complete work
    /// outside the base).
    pub fn add_virtual(&self) {
        let mut g = self.lock();
        g.virtual_count += 1;
        g.virtual_count_max = g.virtual_count_max.max(g.virtual_count);
    }

    /// `event_base_del_virtual_`.
    pub fn del_virtual(&self) {
        let mut g = self.lock();
        if g.virtual_count > 0 {
            g.virtual_count -= 1;
        }
        if g.virtual_count == 0 {
            let _ = g.notify_if_needed();
        }
    }

    /// `evthread_make_base_notifiable`.
    pub fn make_notifiable(&self) -> Result<(), Error> {
        self.lock().make_notifiable()
    }

    /// `event_reinit`: after fork, a fresh backend with every added fd registered again, and new signal and notify
    /// fds, so parent and child share nothing.
    pub fn reinit(&self) -> Result<(), Error> {
        let mut g = self.lock();
        let poller: Arc<dyn Poller> = Arc::from(g.poller.reopen()?);
        g.poller = poller.clone();
        let mut res = Ok(());
        g.io.forget_registrations();
        let mut regs = Vec::new();
        for (fd, slot) in g.io.iter() {
            let i = Interest { edge: slot.newest_is_edge(), ..Interest::level(slot.mask()) };
            match poller.interest(fd, Interest::default(), i) {
                Ok(()) => regs.push((fd, i)),
                Err(e) => res = Err(e.into()),
            }
        }
        for (fd, i) in regs {
            g.io.slot_mut(fd).reg = i;
        }
        if let Some(rfd) = g.signals.reopen()? {
            poller.interest(rfd, Interest::default(), Interest::level(EV_READ))?;
        }
        if g.notify.take().is_some() {
            g.notify_pending = false;
            g.make_notifiable()?;
        }
        res
    }

    /// `event_base_loop`: Ok(0) when asked to stop (or ONCE/NONBLOCK done), Ok(1) when no events are left.
    pub fn run(&self, flags: i32) -> Result<i32, Error> {
        let mut g = self.lock();
        if g.running_loop {
            return Err(Error::Reentrant);
        }
        g.running_loop = true;
        // Dataplane writes made by this loop's callbacks go out in the cycle before its next wait.
        let _looping = crate::socket::loop_scope();
        g.tv_cache = None;
        if !g.sigmap.is_empty() {
            g.signals.make_current();
        }
        if g.threaded {
            // Only threaded bases ask who runs the loop (`in_thread`, `need_notify`).
            g.owner = sys::thread_id();
        }
        g.gotterm = false;
        g.brk = false;
        let mut result = Ok(0);
        loop {
            g.cont = false;
            g.deferreds_queued = 0;
            if g.gotterm || g.brk {
                break;
            }
            let timeout =
                if g.active_count == 0 && flags & EVLOOP_NONBLOCK == 0 { g.timeout_next() } else { Some(Usec::ZERO) };
            if flags & EVLOOP_NO_EXIT_ON_EMPTY == 0 && !g.have_events() && g.active_count == 0 {
                result = Ok(1);
                break;
            }
            g.make_later_active();
            g.tv_cache = None;

            // One cycle of the backend (the dataplane seam: see poller.rs), unlocked when it may sleep. A poll that
            // cannot sleep (callbacks pending, EVLOOP_NONBLOCK) on kernel fds alone keeps the lock: a thread adding
            // an event meanwhile waits one system call, and the loop saves the unlock, relock and hand-off.
            let mut ready = std::mem::take(&mut g.ready);
            ready.clear();
            let waited = if timeout == Some(Usec::ZERO) && !crate::socket::active() {
                g.poller.wait(&mut ready, timeout)
            } else {
                let poller = g.poller.clone();
                drop(g);
                let timeout = dataplane_turn(&*poller, timeout);
                let waited = poller.wait(&mut ready, timeout);
                g = self.lock();
                waited
            };
            if let Err(e) = waited {
                g.ready = ready;
                result = Err(e.into());
                break;
            }
            let caught = g.process_ready(&ready);
            g.ready = ready;

            g.update_time_cache();
            g.timeout_process();
            if let Some(counts) = caught {
                for (sig, &n) in counts.iter().enumerate() {
                    if n > 0 {
                        g.signal_active(sig as i32, n.min(i16::MAX as u32) as i16);
                    }
                }
            }

            if g.active_count > 0 {
                let (ng, n) = self.process_active(g);
                g = ng;
                if flags & EVLOOP_ONCE != 0 && g.active_count == 0 && n != 0 {
                    break;
                }
            } else if flags & EVLOOP_NONBLOCK != 0 {
                break;
            }
        }
        g.tv_cache = None;
        g.running_loop = false;
        result
    }

    #[inline(always)]
    fn process_active<'a>(&'a self, mut g: Guard<'a>) -> (Guard<'a>, i32) {
        let endtime = g.max_dispatch_interval.map(|d| {
            g.update_time_cache();
            g.gettime().plus(d)
        });
        let (maxcb, limit) = (g.max_dispatch_callbacks, g.limit_after_prio);
        let mut c = 0;
        for i in 0..g.active.npriorities() {
            if g.active.is_empty(QueueId::Prio(i as u8)) {
                continue;
            }
            g.running_priority = i as i32;
            let (ng, n) = if (i as i32) < limit {
                self.process_queue(g, i as u8, i32::MAX, None)
            } else {
                self.process_queue(g, i as u8, maxcb, endtime)
            };
            g = ng;
            c = n;
            if c != 0 {
                break;
            }
        }
        g.running_priority = -1;
        (g, c)
    }

    /// Runs the callbacks queued at priority `pri`; -1 if the loop must stop (loopbreak), else how many ran.
    #[inline(always)]
    fn process_queue<'a>(&'a self, mut g: Guard<'a>, pri: u8, max: i32, endtime: Option<Usec>) -> (Guard<'a>, i32) {
        let q = QueueId::Prio(pri);
        let mut count = 0;
        while let Some((ev, ncalls)) = g.active.front_with_ncalls(q) {
            if ev.events() & EV_PERSIST != 0 || ev.flags() & EVLIST_FINALIZING != 0 {
                g.remove_active_head(q, ev);
            } else {
                let _ = g.del_nolock(ev, DelMode::NoBlock);
            }
            if ev.flags() & EVLIST_INTERNAL == 0 {
                count += 1;
            }
            g.current = Some(ev);
            g.current_waiters = 0;
            g = match ev.closure() {
                CLOSURE_SIGNAL => self.signal_closure(g, ev, ncalls),
                CLOSURE_PERSIST => {
                    g.persist_reschedule(ev);
                    let (cb, fd, res, arg) = (ev.callback(), ev.fd(), ev.res(), ev.arg());
                    drop(g);
                    if let Some(cb) = cb {
                        invoke(cb, fd, res, arg);
                    }
                    self.lock()
                }
                CLOSURE_FINALIZE | CLOSURE_FINALIZE_FREE => {
                    let free = ev.closure() == CLOSURE_FINALIZE_FREE;
                    g.current = None;
                    let (fin, arg) = (ev.finalizer(), ev.arg());
                    drop(g);
                    if let Some(fin) = fin {
                        invoke_finalizer(fin, ev, arg);
                    }
                    if free {
                        if let Some(f) = self.free_event {
                            f(ev);
                        }
                    }
                    self.lock()
                }
                _ => {
                    let (cb, res) = (ev.callback(), ev.res());
                    let (fd, arg) = (ev.fd(), ev.arg());
                    drop(g);
                    if let Some(cb) = cb {
                        invoke(cb, fd, res, arg);
                    }
                    self.lock()
                }
            };
            g.current = None;
            if g.current_waiters > 0 {
                g.current_waiters = 0;
                self.cond.notify_all();
            }
            if g.brk {
                return (g, -1);
            }
            if count >= max {
                return (g, count);
            }
            if count > 0 {
                if let Some(end) = endtime {
                    g.update_time_cache();
                    if g.gettime() >= end {
                        return (g, count);
                    }
                }
            }
            if g.cont {
                break;
            }
        }
        (g, count)
    }

    /// Calls a signal event's callback `ncalls` times, stopping early on loopbreak or when the callback deletes
    /// (or re-times) its event.
    fn signal_closure<'a>(&'a self, mut g: Guard<'a>, ev: EvPtr, ncalls: i16) -> Guard<'a> {
        g.signal_abort = false;
        let mut left = ncalls;
        while left > 0 {
            left -= 1;
            let (cb, fd, res, arg) = (ev.callback(), ev.fd(), ev.res(), ev.arg());
            drop(g);
            if let Some(cb) = cb {
                invoke(cb, fd, res, arg);
            }
            g = self.lock();
            if g.brk || g.signal_abort {
                break;
            }
        }
        g.signal_abort = false;
        g
    }

    /// `event_finalize` / `event_free_finalize`: deletes the event and queues `fin(ev, arg)` to run from the loop.
    pub fn finalize(&self, ev: EvPtr, fin: Option<FinalizeCb>, free: bool) {
        let mut g = self.lock();
        let _ = g.del_nolock(ev, DelMode::NoBlock);
        ev.set_closure(if free { CLOSURE_FINALIZE_FREE } else { CLOSURE_FINALIZE });
        ev.set_finalizer(fin);
        g.active_nolock(ev, EV_FINALIZE, 1);
        ev.set_flags(ev.flags() | EVLIST_FINALIZING);
    }

    /// `event_base_free`: deletes every event still known (running pending finalizers when `run_finalizers`),
    /// releases once-records, restores signal dispositions. The base must not be running.
    pub fn shutdown(&self, run_finalizers: bool) {
        let mut g = self.lock();
        // Added fd and signal events.
        let mut added: Vec<EvPtr> = g.io.iter().flat_map(|(_, s)| s.newest_first().collect::<Vec<_>>()).collect();
        added.extend(g.sigmap.iter().flat_map(|(_, l)| l.iter().rev().copied().collect::<Vec<_>>()));
        for ev in added {
            if ev.flags() & EVLIST_INTERNAL == 0 {
                let _ = g.del_nolock(ev, DelMode::AutoBlock);
            }
        }
        while let Some((_, ev)) = g.timers.top() {
            let _ = g.del_nolock(ev, DelMode::AutoBlock);
            if ev.flags() & EVLIST_TIMEOUT != 0 {
                g.remove_timeout(ev);
            }
        }
        // Active events, finalizers (which may queue more) until nothing is left.
        loop {
            let mut queued: Vec<EvPtr> = Vec::new();
            for p in 0..g.active.npriorities() {
                queued.extend(g.active.iter(QueueId::Prio(p as u8)));
            }
            queued.extend(g.active.iter(QueueId::Later));
            if queued.is_empty() {
                break;
            }
            let mut deleted = 0;
            for ev in queued {
                if ev.flags() & EVLIST_INTERNAL != 0 {
                    continue;
                }
                let _ = g.del_nolock(ev, DelMode::EvenIfFinalizing);
                deleted += 1;
                if run_finalizers && ev.flags() & EVLIST_FINALIZING != 0 {
                    let closure = ev.closure();
                    if closure == CLOSURE_FINALIZE || closure == CLOSURE_FINALIZE_FREE {
                        let (fin, arg) = (ev.finalizer(), ev.arg());
                        drop(g);
                        if let Some(fin) = fin {
                            invoke_finalizer(fin, ev, arg);
                        }
                        if closure == CLOSURE_FINALIZE_FREE {
                            if let Some(f) = self.free_event {
                                f(ev);
                            }
                        }
                        g = self.lock();
                    }
                }
            }
            if deleted == 0 {
                break;
            }
        }
        let records: Vec<OncePtr> = g.once.drain(..).flatten().collect();
        g.once_free.clear();
        g.signals.release();
        drop(g);
        drop(records);
    }

    /// Checks the base's invariants (`event_base_assert_ok_`).
    pub fn check(&self) -> Result<(), String> {
        let g = self.lock();
        g.timers.check()?;
        g.active.check()?;
        g.io.check()?;
        for (_, s) in g.io.iter() {
            for e in s.newest_first() {
                if e.flags() & EVLIST_INSERTED == 0 {
                    return Err(format!("fd map holds event {:p} that is not added", e.as_ptr()));
                }
            }
        }
        for e in g.timers.iter() {
            if e.flags() & EVLIST_TIMEOUT == 0 {
                return Err(format!("timer heap holds event {:p} without EVLIST_TIMEOUT", e.as_ptr()));
            }
        }
        for p in 0..g.active.npriorities() {
            for e in g.active.iter(QueueId::Prio(p as u8)) {
                if e.flags() & EVLIST_ACTIVE == 0 {
                    return Err(format!("active queue holds event {:p} without EVLIST_ACTIVE", e.as_ptr()));
                }
            }
        }
        let queued: usize = (0..g.active.npriorities()).map(|p| g.active.len(QueueId::Prio(p as u8))).sum::<usize>()
            + g.active.len(QueueId::Later);
        if queued as i32 != g.active_count {
            return Err(format!("{} events queued but active count is {}", queued, g.active_count));
        }
        Ok(())
    }
}

impl Inner {
    fn in_thread(&self) -> bool {
        !self.threaded || self.owner == sys::thread_id()
    }

    fn need_notify(&self) -> bool {
        self.threaded && self.running_loop && self.owner != sys::thread_id()
    }

    fn have_events(&self) -> bool {
        self.virtual_count > 0 || self.event_count > 0
    }

    fn is_common(&self, tv: Timeval) -> bool {
        tv.tv_usec & COMMON_TIMEOUT_MASK == COMMON_TIMEOUT_MAGIC
            && (((tv.tv_usec & COMMON_TIMEOUT_IDX_MASK) >> COMMON_TIMEOUT_IDX_SHIFT) as usize)
                < self.common_timeouts.len()
    }

    /// The base's notion of now: the cached loop time, else the clock (re-measuring wall minus monotonic every few
    /// seconds).
    fn gettime(&mut self) -> Usec {
        if let Some(t) = self.tv_cache {
            return t;
        }
        let now = self.clock.monotonic();
        if now >= self.next_clock_sync {
            self.clock_diff = self.clock.wall().minus(now);
            let sec = now.0.div_euclid(1_000_000);
            self.next_clock_sync = Usec(sec.saturating_add(CLOCK_SYNC_INTERVAL + 1).saturating_mul(1_000_000));
        }
        now
    }

    fn update_time_cache(&mut self) {
        self.tv_cache = None;
        if !self.no_cache_time {
            let t = self.gettime();
            self.tv_cache = Some(t);
        }
    }

    /// How long the backend may wait: until the earliest timeout (measured on a fresh clock reading, so callbacks
    /// that took long do not delay timers further), None with no timeouts.
    fn timeout_next(&mut self) -> Option<Usec> {
        let (deadline, _) = self.timers.top()?;
        let saved = self.tv_cache.take();
        let now = self.gettime();
        self.tv_cache = saved;
        Some(if deadline <= now { Usec::ZERO } else { deadline.minus(now) })
    }

    fn count_incr(&mut self, flags: i16) {
        if flags & EVLIST_INTERNAL == 0 {
            self.event_count += 1;
            self.event_count_max = self.event_count_max.max(self.event_count);
        }
    }

    fn count_decr(&mut self, flags: i16) {
        if flags & EVLIST_INTERNAL == 0 {
            self.event_count -= 1;
        }
    }

    fn insert_inserted(&mut self, ev: EvPtr) {
        self.count_incr(ev.flags());
        ev.set_flags(ev.flags() | EVLIST_INSERTED);
    }

    fn remove_inserted(&mut self, ev: EvPtr) {
        self.count_decr(ev.flags());
        ev.set_flags(ev.flags() & !EVLIST_INSERTED);
    }

    fn insert_timeout(&mut self, ev: EvPtr, deadline: Usec) {
        self.count_incr(ev.flags());
        ev.set_flags(ev.flags() | EVLIST_TIMEOUT);
        ev.set_deadline(deadline);
        self.timers.push(ev, deadline);
    }

    fn remove_timeout(&mut self, ev: EvPtr) {
        self.count_decr(ev.flags());
        ev.set_flags(ev.flags() & !EVLIST_TIMEOUT);
        self.timers.remove(ev);
    }

    fn insert_active(&mut self, ev: EvPtr, ncalls: i16) {
        if ev.flags() & EVLIST_ACTIVE != 0 {
            return;
        }
        self.count_incr(ev.flags());
        ev.set_flags(ev.flags() | EVLIST_ACTIVE);
        self.active_count += 1;
        self.active_count_max = self.active_count_max.max(self.active_count);
        let q = self.active.prio_queue(ev.pri());
        self.active.push_back(q, ev, ncalls);
    }

    /// `remove_active` for the head of queue `q`.
    fn remove_active_head(&mut self, q: QueueId, ev: EvPtr) {
        self.count_decr(ev.flags());
        ev.set_flags(ev.flags() & !EVLIST_ACTIVE);
        self.active_count -= 1;
        if self.active.remove_head(q, ev).is_none() {
            self.active.remove(ev);
        }
    }

    fn remove_active(&mut self, ev: EvPtr) -> i16 {
        self.count_decr(ev.flags());
        ev.set_flags(ev.flags() & !EVLIST_ACTIVE);
        self.active_count -= 1;
        self.active.remove(ev).unwrap_or(1)
    }

    fn remove_active_later(&mut self, ev: EvPtr) -> i16 {
        self.count_decr(ev.flags());
        ev.set_flags(ev.flags() & !EVLIST_ACTIVE_LATER);
        self.active_count -= 1;
        self.active.remove(ev).unwrap_or(1)
    }

    #[inline]
    fn make_later_active(&mut self) {
        if self.active.is_empty(QueueId::Later) {
            return;
        }
        while let Some((ev, ncalls)) = self.active.pop_front(QueueId::Later) {
            ev.set_flags((ev.flags() & !EVLIST_ACTIVE_LATER) | EVLIST_ACTIVE);
            let q = self.active.prio_queue(ev.pri());
            self.active.push_back(q, ev, ncalls);
            if ev.closure() == CLOSURE_CB_SELF {
                self.deferreds_queued += 1;
            }
        }
    }

    fn notify(&mut self) -> Result<(), Error> {
        let Some(fd) = &self.notify else { return Err(Error::Invalid) };
        if self.notify_pending {
            return Ok(());
        }
        self.notify_pending = true;
        sys::eventfd_signal(fd).map_err(Error::from)
    }

    fn notify_if_needed(&mut self) -> Result<(), Error> {
        if self.need_notify() {
            self.notify()
        } else {
            Ok(())
        }
    }

    fn make_notifiable(&mut self) -> Result<(), Error> {
        if self.notify.is_some() {
            return Ok(());
        }
        let fd = sys::eventfd()?;
        self.poller.interest(fd.as_raw_fd(), Interest::default(), Interest::level(EV_READ))?;
        self.notify = Some(fd);
        Ok(())
    }

    fn io_add(&mut self, ev: EvPtr) -> Result<bool, Error> {
        let fd = ev.fd();
        if fd < 0 {
            return Ok(false);
        }
        let events = ev.events();
        if self.debug_mode {
            if let Some(newest) = self.io.get(fd).and_then(|s| s.newest_first().next()) {
                if (newest.events() ^ events) & EV_ET != 0 {
                    return Err(Error::MixedEdge(fd));
                }
            }
        }
        let (old, new) = self.io.add_effect(fd, events).map_err(|_| Error::TooMany(fd))?;
        // Nothing is stored for the fd until the backend has accepted it (an absurd fd number must not grow the map).
        let (mut reg, mut no_oneshot) = self.io.reg(fd);
        if reg.disarmed && old == 0 {
            if linger::still_disarmed(fd) {
                // Its oneshot registration fired and the event is being added again (a callback re-arming a
                // non-persistent event): a plain registration makes the next delete and re-add free.
                no_oneshot = true;
            } else {
                // Closed since: the registration went with the file.
                reg = Interest::default();
                no_oneshot = false;
            }
        }
        let want = Interest {
            mask: old | new,
            edge: events & EV_ET != 0,
            oneshot: old == 0 && events & EV_PERSIST == 0 && !no_oneshot,
            disarmed: false,
        };
        if new != 0 || reg.disarmed || reg.oneshot != want.oneshot {
            self.poller.interest(fd, reg, want)?;
            reg = want;
        }
        let slot = self.io.insert(fd, ev, events);
        slot.reg = reg;
        slot.no_oneshot = no_oneshot;
        Ok(new != 0)
    }

    fn io_del(&mut self, ev: EvPtr) -> Result<bool, Error> {
        let fd = ev.fd();
        if fd < 0 {
            return Ok(false);
        }
        let events = ev.events();
        let Some((old, gone)) = self.io.remove(fd, ev, events) else { return Err(Error::Invalid) };
        if gone == 0 {
            return Ok(false);
        }
        let slot = self.io.slot_mut(fd);
        let reg = slot.reg;
        let want = Interest { mask: old & !gone, edge: events & EV_ET != 0, oneshot: false, disarmed: false };
        if want.mask == 0 && reg.disarmed {
            // Nothing to remove: the registration disarmed itself when it reported. Remembered while the fd stays
            // open, to be re-armed if it gets an event again.
            if !linger::leave_disarmed(fd) {
                slot.reg = Interest::default();
            }
            return Ok(true);
        }
        slot.reg = Interest::default();
        self.poller.interest(fd, reg, want)?;
        self.io.slot_mut(fd).reg = want;
        Ok(true)
    }

    fn signal_add(&mut self, ev: EvPtr) -> Result<bool, Error> {
        let sig = ev.fd();
        if !(0..NSIG).contains(&sig) {
            return Err(Error::BadSignal(sig));
        }
        if self.sigmap.newest_first(sig).next().is_none() {
            let (rfd, new) = self.signals.ensure_pipe()?;
            if new {
                if let Err(e) = self.poller.interest(rfd, Interest::default(), Interest::level(EV_READ)) {
                    self.signals.release();
                    return Err(e.into());
                }
            }
            self.signals.install(sig)?;
        }
        self.sigmap.insert(sig, ev);
        Ok(true)
    }

    fn signal_del(&mut self, ev: EvPtr) -> Result<bool, Error> {
        let sig = ev.fd();
        match self.sigmap.remove(sig, ev) {
            Some(true) => {
                self.signals.restore(sig)?;
                Ok(true)
            }
            Some(false) => Ok(true),
            None => Err(Error::Invalid),
        }
    }

    fn add_nolock(&mut self, ev: EvPtr, timeout: Option<Usec>, absolute: bool) -> Result<(), Error> {
        let flags = ev.flags();
        if flags & EVLIST_FINALIZING != 0 {
            return Err(Error::Finalizing);
        }
        let events = ev.events();
        let mut notify = false;
        if events & (EV_IO | EV_SIGNAL) != 0 && flags & (EVLIST_INSERTED | EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) == 0 {
            let changed = if events & EV_IO != 0 { self.io_add(ev)? } else { self.signal_add(ev)? };
            self.insert_inserted(ev);
            notify |= changed;
        }
        if let Some(tv) = timeout {
            if ev.closure() == CLOSURE_PERSIST && !absolute {
                ev.set_persist_interval(tv);
            }
            if ev.flags() & EVLIST_TIMEOUT != 0 {
                self.remove_timeout(ev);
            }
            // Re-timing an event that is active because of its timeout cancels that activation.
            if ev.flags() & EVLIST_ACTIVE != 0 && ev.res() & EV_TIMEOUT != 0 {
                if events & EV_SIGNAL != 0 && self.current == Some(ev) {
                    self.signal_abort = true;
                }
                self.remove_active(ev);
            }
            let now = self.gettime();
            let deadline = if absolute { tv } else { now.plus(tv) };
            self.insert_timeout(ev, deadline);
            if self.timers.is_top(ev) || self.timers.top().is_some_and(|(d, _)| d < now) {
                notify = true;
            }
        }
        if notify {
            let _ = self.notify_if_needed();
        }
        Ok(())
    }

    fn del_nolock(&mut self, ev: EvPtr, mode: DelMode) -> Result<(), Error> {
        let flags = ev.flags();
        if mode != DelMode::EvenIfFinalizing && flags & EVLIST_FINALIZING != 0 {
            return Ok(());
        }
        let events = ev.events();
        if events & EV_SIGNAL != 0 && self.current == Some(ev) {
            self.signal_abort = true;
        }
        if flags & EVLIST_TIMEOUT != 0 {
            self.remove_timeout(ev);
        }
        if flags & EVLIST_ACTIVE != 0 {
            self.remove_active(ev);
        } else if flags & EVLIST_ACTIVE_LATER != 0 {
            self.remove_active_later(ev);
        }
        let mut res = Ok(());
        let mut notify = false;
        if flags & EVLIST_INSERTED != 0 {
            self.remove_inserted(ev);
            let r = if events & EV_IO != 0 { self.io_del(ev) } else { self.signal_del(ev) };
            match r {
                Ok(changed) => notify |= changed,
                Err(e) => res = Err(e),
            }
            if !self.have_events() && self.active_count == 0 {
                notify = true;
            }
        }
        if res.is_ok() && notify {
            let _ = self.notify_if_needed();
        }
        res
    }

    fn active_nolock(&mut self, ev: EvPtr, res: i16, ncalls: i16) {
        let flags = ev.flags();
        if flags & EVLIST_FINALIZING != 0 {
            return;
        }
        match flags & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) {
            EVLIST_ACTIVE => {
                ev.set_res(ev.res() | res);
                return;
            }
            EVLIST_ACTIVE_LATER => ev.set_res(ev.res() | res),
            0 => ev.set_res(res),
            _ => return,
        }
        if (ev.pri() as i32) < self.running_priority {
            self.cont = true;
        }
        let ncalls = if ev.events() & EV_SIGNAL != 0 { ncalls } else { 1 };
        if ev.flags() & EVLIST_ACTIVE_LATER != 0 {
            self.remove_active_later(ev);
        }
        self.insert_active(ev, ncalls);
        let _ = self.notify_if_needed();
    }

    /// Activates the events on `fd` that wait on any of `what` (libevent's evmap_io_active_): each gets
    /// `ev_events & what` (which includes EV_ET for edge-triggered events when the backend reports, as epoll's
    /// dispatch passes EV_ET along).
    #[inline]
    fn io_active(&mut self, fd: c_int, what: i16) {
        // Most fds have one event: that case inline, the rest out of line.
        let Some(slot) = self.io.get(fd) else { return };
        if slot.len() == 1 {
            if let Some(e) = slot.nth_newest(0) {
                let want = e.events();
                if want & what & !EV_ET != 0 {
                    self.active_nolock(e, want & what, 1);
                }
            }
        } else {
            self.io_active_many(fd, what);
        }
    }

    #[inline(never)]
    fn io_active_many(&mut self, fd: c_int, what: i16) {
        // By index, newest first: activation never changes the fd map.
        let n = self.io.get(fd).map_or(0, FdSlot::len);
        for i in 0..n {
            let Some(e) = self.io.get(fd).and_then(|s| s.nth_newest(i)) else { break };
            let want = e.events();
            if want & what & !EV_ET != 0 {
                self.active_nolock(e, want & what, 1);
            }
        }
    }

    fn signal_active(&mut self, sig: c_int, ncalls: i16) {
        let mut evs = std::mem::take(&mut self.scratch);
        evs.clear();
        evs.extend(self.sigmap.newest_first(sig));
        for &e in &evs {
            self.active_nolock(e, EV_SIGNAL, ncalls);
        }
        self.scratch = evs;
    }

    /// Turns the backend's report into activations; returns signal counts read from the self-pipe (activated
    /// after timeouts, where libevent's internal signal callback runs).
    fn process_ready(&mut self, ready: &[Ready]) -> Option<[u32; NSIG as usize]> {
        let mut caught = None;
        let sig_fd = self.signals.read_fd();
        let notify_fd = self.notify.as_ref().map(|f| f.as_raw_fd());
        for r in ready {
            if Some(r.fd) == sig_fd {
                let counts = self.signals.drain();
                let acc = caught.get_or_insert([0u32; NSIG as usize]);
                for (a, c) in acc.iter_mut().zip(counts) {
                    *a += c;
                }
            } else if Some(r.fd) == notify_fd {
                if let Some(fd) = &self.notify {
                    let mut buf = [0u8; 8];
                    let _ = sys::read(fd.as_raw_fd(), &mut buf);
                }
                self.notify_pending = false;
            } else {
                if r.disarmed {
                    self.io.mark_disarmed(r.fd);
                }
                self.io_active(r.fd, r.what | EV_ET);
            }
        }
        caught
    }

    fn timeout_process(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = self.gettime();
        while let Some((deadline, ev)) = self.timers.top() {
            if deadline > now {
                break;
            }
            let _ = self.del_nolock(ev, DelMode::NoBlock);
            self.active_nolock(ev, EV_TIMEOUT, 1);
        }
    }

    /// Before a persistent event's callback: its next timeout, one interval after the deadline that fired (or
    /// after now, when it fired for another reason or fell behind).
    fn persist_reschedule(&mut self, ev: EvPtr) {
        // The interval is stored normalized (`set_persist_interval`), so a nonzero timeval is a nonzero interval.
        if !ev.has_persist_interval() {
            return;
        }
        let interval = ev.persist_interval();
        let now = self.gettime();
        let relative_to = if ev.res() & EV_TIMEOUT != 0 { ev.deadline() } else { now };
        let mut run_at = relative_to.plus(interval);
        if run_at < now {
            run_at = now.plus(interval);
        }
        let _ = self.add_nolock(ev, Some(run_at), true);
    }

    fn snapshot(&self) -> Vec<EvPtr> {
        let mut v: Vec<EvPtr> = Vec::new();
        for (_, s) in self.io.iter() {
            v.extend(s.newest_first());
        }
        for (_, l) in self.sigmap.iter() {
            v.extend(l.iter().rev().copied());
        }
        v.extend(self.timers.iter().filter(|e| e.flags() & EVLIST_INSERTED == 0));
        for p in 0..self.active.npriorities() {
            v.extend(
                self.active
                    .iter(QueueId::Prio(p as u8))
                    .filter(|e| e.flags() & (EVLIST_INIT | EVLIST_INSERTED | EVLIST_TIMEOUT) == EVLIST_INIT),
            );
        }
        v
    }
}

/// The dataplane's share of a loop iteration (DESIGN.md §5): when dataplane sockets exist, run a cycle (its
/// events become readiness on the sockets' placeholder fds), make the wait also wake for NIC frames, and shorten
/// the wait while the loop polls (its idle policy, socket/idle.rs) or the dataplane has a timer due.
fn dataplane_turn(poller: &dyn Poller, timeout: Option<Usec>) -> Option<Usec> {
    if !crate::socket::active() {
        return timeout;
    }
    if let Err(e) = poller.watch_dataplane(crate::socket::nic_fds()) {
        log::warn!("libix: an event loop cannot watch the dataplane's queues: {e}");
    }
    let t = timeout.map(|u| std::time::Duration::from_micros(u.0.max(0) as u64));
    crate::socket::before_wait(t).map(|d| Usec(d.as_micros().min(i64::MAX as u128) as i64))
}

// Deferred callbacks (`deferred.rs`) ride on engine-owned events; these are the primitives they need from the base.
impl Base {
    /// Schedules a deferred callback as libevent's `event_deferred_cb_schedule_`: straight onto its priority's
    /// active queue (so, scheduled from a callback, it runs in this same loop iteration, after what is queued)
    /// while at most [`MAX_DEFERREDS_QUEUED`] have been this iteration; past that, on the next iteration, so a
    /// chain of deferred callbacks cannot starve I/O. True if it was newly scheduled (false: it already was).
    pub fn schedule_deferred(&self, ev: EvPtr) -> bool {
        let mut g = self.lock();
        let flags = ev.flags();
        if flags & EVLIST_ACTIVE != 0 {
            return false;
        }
        if g.deferreds_queued > MAX_DEFERREDS_QUEUED {
            drop(g);
            return self.active_later_if_idle(ev);
        }
        let newly = flags & EVLIST_ACTIVE_LATER == 0;
        if newly {
            ev.set_res(EV_TIMEOUT);
            g.deferreds_queued += 1;
        } else {
            g.remove_active_later(ev);
        }
        g.insert_active(ev, 1);
        let _ = g.notify_if_needed();
        newly
    }

    /// Queues `ev` to run on the next loop iteration, as `active_later` does, but only if it is not queued already;
    /// tells whether it queued it. Checking and queueing under one lock is what makes "schedule once" exact when
    /// several threads schedule the same deferred callback.
    pub fn active_later_if_idle(&self, ev: EvPtr) -> bool {
        let mut g = self.lock();
        if ev.flags() & (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER) != 0 {
            return false;
        }
        ev.set_res(EV_TIMEOUT);
        g.count_incr(ev.flags());
        ev.set_flags(ev.flags() | EVLIST_ACTIVE_LATER);
        g.active_count += 1;
        g.active_count_max = g.active_count_max.max(g.active_count);
        g.active.push_back(QueueId::Later, ev, 1);
        let _ = g.notify_if_needed();
        true
    }
}
