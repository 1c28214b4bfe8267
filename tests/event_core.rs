//! The event engine through its Rust API, on a fake clock and a fake poller (the dataplane seam), so timing is
//! exact and deterministic; plus a few checks on the real epoll backend and threads.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_int, c_short, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ix::event::base::{EVLOOP_NONBLOCK, EVLOOP_NO_EXIT_ON_EMPTY, EVLOOP_ONCE};
use ix::event::raw::{EV_CLOSED, EV_ET, EV_PERSIST, EV_READ, EV_TIMEOUT, EV_WRITE};
use ix::event::{Base, Clock, Config, DelMode, EvPtr, Interest, Poller, RawEvent, Ready, Usec};

const ONE_PASS: i32 = EVLOOP_ONCE | EVLOOP_NONBLOCK;

/// A clock the test moves.
#[derive(Debug, Clone, Default)]
struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance(&self, us: i64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn monotonic(&self) -> Usec {
        Usec(self.now())
    }
    fn wall(&self) -> Usec {
        Usec(1_700_000_000_000_000 + self.now())
    }
}

#[derive(Debug, Default)]
struct PollerState {
    interest: HashMap<i32, Interest>,
    /// (fd, old, new) for every interest change, in order.
    changes: Vec<(i32, Interest, Interest)>,
    ready: Vec<Ready>,
    waits: Vec<Option<Usec>>,
}

/// A poller whose readiness the test injects; waiting "sleeps" by advancing the fake clock by the whole timeout,
/// as a kernel would when nothing happens.
#[derive(Debug, Clone)]
struct FakePoller {
    st: Arc<Mutex<PollerState>>,
    clock: FakeClock,
}

impl FakePoller {
    fn inject(&self, fd: i32, what: i16) {
        self.st.lock().unwrap().ready.push(Ready { fd, what, disarmed: false });
    }
    /// A report from a oneshot registration, which a kernel would disarm.
    fn inject_disarmed(&self, fd: i32, what: i16) {
        self.st.lock().unwrap().ready.push(Ready { fd, what, disarmed: true });
    }
    fn changes(&self) -> Vec<(i32, Interest, Interest)> {
        self.st.lock().unwrap().changes.clone()
    }
    fn interest(&self, fd: i32) -> Option<Interest> {
        self.st.lock().unwrap().interest.get(&fd).copied()
    }
    fn waits(&self) -> Vec<Option<Usec>> {
        self.st.lock().unwrap().waits.clone()
    }
}

impl Poller for FakePoller {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn features(&self) -> i32 {
        0x0b
    }
    fn interest(&self, fd: i32, old: Interest, new: Interest) -> std::io::Result<()> {
        let mut st = self.st.lock().unwrap();
        st.changes.push((fd, old, new));
        if new.mask == 0 {
            st.interest.remove(&fd);
        } else {
            st.interest.insert(fd, new);
        }
        Ok(())
    }
    fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Usec>) -> std::io::Result<()> {
        let mut st = self.st.lock().unwrap();
        st.waits.push(timeout);
        if st.ready.is_empty() {
            if let Some(t) = timeout {
                self.clock.advance(t.0);
            }
        }
        out.append(&mut st.ready);
        Ok(())
    }
    fn reopen(&self) -> std::io::Result<Box<dyn Poller>> {
        Ok(Box::new(self.clone()))
    }
}

fn fake_base() -> (Box<Base>, FakeClock, FakePoller) {
    let clock = FakeClock::default();
    clock.advance(1_000_000);
    let poller = FakePoller { st: Arc::default(), clock: clock.clone() };
    let cfg =
        Config { poller: Some(Box::new(poller.clone())), clock: Some(Box::new(clock.clone())), ..Config::default() };
    (Box::new(Base::new(cfg).expect("base")), clock, poller)
}

/// What callbacks saw: (event id, what, fake time).
#[derive(Debug, Default)]
struct Log(Mutex<Vec<(u32, i16, i64)>>);

/// Something a callback does besides recording.
type Action = Box<dyn Fn(&Tag)>;

/// A callback's argument.
struct Tag {
    id: u32,
    log: Arc<Log>,
    clock: FakeClock,
    /// Run inside the callback.
    action: Option<Action>,
}

unsafe extern "C" fn record(_fd: c_int, what: c_short, arg: *mut c_void) {
    // SAFETY: every event in these tests is assigned with a live Tag as its argument.
    let tag = unsafe { &*(arg as *const Tag) };
    tag.log.0.lock().unwrap().push((tag.id, what, tag.clock.now()));
    if let Some(a) = &tag.action {
        a(tag);
    }
}

/// An event in test-owned memory, with its tag.
struct Ev {
    raw: Box<RawEvent>,
    tag: Box<Tag>,
}

impl Ev {
    fn new(base: &Base, fd: i32, events: i16, id: u32, log: &Arc<Log>, clock: &FakeClock) -> Ev {
        Ev::with_action(base, fd, events, id, log, clock, None)
    }
    fn with_action(
        base: &Base,
        fd: i32,
        events: i16,
        id: u32,
        log: &Arc<Log>,
        clock: &FakeClock,
        action: Option<Action>,
    ) -> Ev {
        let mut ev = Ev {
            raw: Box::new(RawEvent::zeroed()),
            tag: Box::new(Tag { id, log: log.clone(), clock: clock.clone(), action }),
        };
        let arg = &*ev.tag as *const Tag as *mut c_void;
        Base::assign(Some(base), ev.ptr(), fd, events, Some(record), arg).expect("assign");
        ev
    }
    fn ptr(&mut self) -> EvPtr {
        // SAFETY: the box lives as long as the Ev, which every test keeps until the base forgot it.
        unsafe { EvPtr::new(&mut *self.raw).expect("non-null") }
    }
}

fn ms(n: i64) -> Usec {
    Usec(n * 1000)
}

fn entries(log: &Log) -> Vec<(u32, i16, i64)> {
    log.0.lock().unwrap().clone()
}

#[test]
fn timers_fire_at_their_deadlines_in_order_first_added_first_on_ties() {
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let t0 = clock.now();
    let mut evs: Vec<Ev> = (0..4).map(|i| Ev::new(&base, -1, 0, i, &log, &clock)).collect();
    for (i, d) in [30, 10, 10, 20].into_iter().enumerate() {
        base.add(evs[i].ptr(), Some(ms(d))).unwrap();
    }
    assert_eq!(base.run(0).unwrap(), 1);
    let got: Vec<(u32, i64)> = entries(&log)
        .iter()
        .map(|&(id, what, at)| {
            assert_eq!(what, EV_TIMEOUT);
            (id, at - t0)
        })
        .collect();
    assert_eq!(got, vec![(1, 10_000), (2, 10_000), (3, 20_000), (0, 30_000)]);
    // The loop waited exactly until each next deadline.
    assert_eq!(poller.waits(), vec![Some(ms(10)), Some(ms(10)), Some(ms(10))]);
    base.check().unwrap();
}

#[test]
fn persistent_timer_keeps_its_cadence_despite_slow_callbacks() {
    let (base, clock, _poller) = fake_base();
    let log = Arc::new(Log::default());
    let t0 = clock.now();
    // Each callback takes 3 ms; the timer still fires every 10 ms after its previous deadline.
    let mut ev =
        Ev::with_action(&base, -1, EV_PERSIST, 7, &log, &clock, Some(Box::new(|t: &Tag| t.clock.advance(3000))));
    base.add(ev.ptr(), Some(ms(10))).unwrap();
    for _ in 0..4 {
        base.run(EVLOOP_ONCE).unwrap();
    }
    let at: Vec<i64> = entries(&log).iter().map(|e| e.2 - t0).collect();
    assert_eq!(at, vec![10_000, 20_000, 30_000, 40_000]);
    let (pending, _) = base.pending(ev.ptr(), EV_TIMEOUT);
    assert_eq!(pending, EV_TIMEOUT);
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
    base.check().unwrap();
}

#[test]
fn persistent_timer_that_fell_behind_restarts_from_now() {
    let (base, clock, _poller) = fake_base();
    let log = Arc::new(Log::default());
    let t0 = clock.now();
    let mut ev = Ev::new(&base, -1, EV_PERSIST, 1, &log, &clock);
    base.add(ev.ptr(), Some(ms(10))).unwrap();
    base.run(EVLOOP_ONCE).unwrap();
    // The process was away for 35 ms: the missed firings are not replayed; the next comes one interval later.
    clock.advance(35_000);
    base.run(EVLOOP_ONCE).unwrap();
    base.run(EVLOOP_ONCE).unwrap();
    let at: Vec<i64> = entries(&log).iter().map(|e| e.2 - t0).collect();
    assert_eq!(at, vec![10_000, 45_000, 55_000]);
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
}

#[test]
fn activation_by_io_reschedules_a_persistent_timeout_from_now() {
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let t0 = clock.now();
    let mut ev = Ev::new(&base, 9, EV_READ | EV_PERSIST, 1, &log, &clock);
    base.add(ev.ptr(), Some(ms(20))).unwrap();
    clock.advance(5000);
    poller.inject(9, EV_READ);
    base.run(ONE_PASS).unwrap();
    base.run(EVLOOP_ONCE).unwrap();
    let got: Vec<(i16, i64)> = entries(&log).iter().map(|e| (e.1, e.2 - t0)).collect();
    // Read at 5 ms; the timeout then counts from there (25 ms), not from the original deadline (20 ms).
    assert_eq!(got, vec![(EV_READ, 5000), (EV_TIMEOUT, 25_000)]);
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
    assert_eq!(poller.interest(9), None);
}

#[test]
fn events_on_one_fd_share_one_registration() {
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut r1 = Ev::new(&base, 5, EV_READ | EV_PERSIST, 1, &log, &clock);
    let mut r2 = Ev::new(&base, 5, EV_READ | EV_PERSIST, 2, &log, &clock);
    let mut w = Ev::new(&base, 5, EV_WRITE | EV_CLOSED, 3, &log, &clock);
    base.add(r1.ptr(), None).unwrap();
    assert_eq!(poller.interest(5), Some(Interest::level(EV_READ)));
    base.add(r2.ptr(), None).unwrap();
    base.add(w.ptr(), None).unwrap();
    assert_eq!(poller.interest(5), Some(Interest::level(EV_READ | EV_WRITE | EV_CLOSED)));
    // Two changes only: the second reader needed none.
    assert_eq!(poller.st.lock().unwrap().changes.len(), 2);

    // Readiness activates every event waiting on any reported condition, newest first, each with its own part.
    poller.inject(5, EV_READ | EV_WRITE);
    base.run(ONE_PASS).unwrap();
    let got: Vec<(u32, i16)> = entries(&log).iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(got, vec![(3, EV_WRITE), (2, EV_READ), (1, EV_READ)]);
    // The non-persistent writer is gone, and with it the fd's write and close interest.
    assert_eq!(poller.interest(5), Some(Interest::level(EV_READ)));
    base.del(r1.ptr(), DelMode::AutoBlock).unwrap();
    assert_eq!(poller.interest(5), Some(Interest::level(EV_READ)));
    base.del(r2.ptr(), DelMode::AutoBlock).unwrap();
    assert_eq!(poller.interest(5), None);
    base.check().unwrap();
}

#[test]
fn a_lone_non_persistent_event_registers_oneshot_and_is_deleted_without_a_removal() {
    // An fd number no test opens: the "not closed since" bitmap is process-wide.
    const FD: i32 = 900_001;
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut ev = Ev::new(&base, FD, EV_READ, 1, &log, &clock);
    let oneshot_read = Interest { oneshot: true, ..Interest::level(EV_READ) };
    base.add(ev.ptr(), None).unwrap();
    assert_eq!(poller.interest(FD), Some(oneshot_read));
    let before = poller.changes().len();
    poller.inject_disarmed(FD, EV_READ);
    base.run(ONE_PASS).unwrap();
    assert_eq!(entries(&log).len(), 1, "fired once");
    assert_eq!(poller.changes().len(), before, "deleted before its callback, with no call to the backend");
    base.check().unwrap();

    // Added again (as a callback re-arming it would): one change re-arms the disarmed registration, now plain, so
    // the next delete and re-add are the backend's cheap case.
    base.add(ev.ptr(), None).unwrap();
    let (fd, old, new) = *poller.changes().last().unwrap();
    assert_eq!((fd, old.disarmed, old.oneshot), (FD, true, true));
    assert_eq!(new, Interest::level(EV_READ));
    // A second event on the fd keeps one plain registration; the first one's removal changes nothing.
    let mut other = Ev::new(&base, FD, EV_READ | EV_PERSIST, 2, &log, &clock);
    base.add(other.ptr(), None).unwrap();
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
    assert_eq!(poller.interest(FD), Some(Interest::level(EV_READ)));
    base.del(other.ptr(), DelMode::AutoBlock).unwrap();
    assert_eq!(poller.interest(FD), None);
    base.check().unwrap();
}

#[test]
fn a_disarmed_registration_is_forgotten_when_its_fd_is_closed() {
    const FD: i32 = 900_002;
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut ev = Ev::new(&base, FD, EV_READ, 1, &log, &clock);
    base.add(ev.ptr(), None).unwrap();
    poller.inject_disarmed(FD, EV_READ);
    base.run(ONE_PASS).unwrap();
    // libix's close (and dup2/dup3) call this before the kernel closes the fd.
    ix::event::linger::before_close(FD);
    base.add(ev.ptr(), None).unwrap();
    let (_, old, new) = *poller.changes().last().unwrap();
    assert_eq!(old, Interest::default(), "a new file: registered from scratch");
    assert!(new.oneshot, "and still oneshot: the fd never showed the re-arm pattern");
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
}

#[test]
fn edge_triggered_events_register_edge_and_see_ev_et() {
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut ev = Ev::new(&base, 4, EV_READ | EV_ET | EV_PERSIST, 1, &log, &clock);
    base.add(ev.ptr(), None).unwrap();
    assert_eq!(poller.interest(4), Some(Interest { edge: true, ..Interest::level(EV_READ) }));
    poller.inject(4, EV_READ);
    base.run(ONE_PASS).unwrap();
    assert_eq!(entries(&log)[0].1, EV_READ | EV_ET);
    // event_base_active_by_fd does not pass EV_ET along.
    base.active_by_fd(4, EV_READ);
    base.run(ONE_PASS).unwrap();
    assert_eq!(entries(&log)[1].1, EV_READ);
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
}

#[test]
fn one_backend_wait_per_iteration() {
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut ev = Ev::new(&base, 3, EV_READ | EV_PERSIST, 1, &log, &clock);
    base.add(ev.ptr(), None).unwrap();
    base.run(ONE_PASS).unwrap();
    poller.inject(3, EV_READ);
    base.run(ONE_PASS).unwrap();
    // Nothing active and NONBLOCK: a zero wait; then readiness: one zero wait.
    assert_eq!(poller.waits(), vec![Some(Usec::ZERO), Some(Usec::ZERO)]);
    base.del(ev.ptr(), DelMode::AutoBlock).unwrap();
}

#[test]
fn loopexit_stops_after_the_iteration_its_timeout_expires_in() {
    let (base, clock, _poller) = fake_base();
    let log = Arc::new(Log::default());
    let t0 = clock.now();
    let mut tick = Ev::new(&base, -1, EV_PERSIST, 1, &log, &clock);
    base.add(tick.ptr(), Some(ms(10))).unwrap();
    base.loopexit(Some(ms(35))).unwrap();
    assert_eq!(base.run(0).unwrap(), 0);
    assert!(base.got_exit());
    assert_eq!(clock.now() - t0, 35_000);
    assert_eq!(entries(&log).len(), 3);
    base.del(tick.ptr(), DelMode::AutoBlock).unwrap();
}

#[test]
fn priorities_run_best_first_and_new_better_work_preempts() {
    let (base, clock, _poller) = fake_base();
    base.priority_init(3).unwrap();
    let log = Arc::new(Log::default());
    let mut hi = Ev::new(&base, -1, 0, 0, &log, &clock);
    let hi_ptr = hi.ptr();
    let base_ptr: *const Base = &*base;
    let mut lo1 = Ev::with_action(
        &base,
        -1,
        0,
        1,
        &log,
        &clock,
        Some(Box::new(move |_t: &Tag| {
            // SAFETY: the base outlives the loop run that calls this.
            unsafe { &*base_ptr }.active(hi_ptr, EV_WRITE, 1)
        })),
    );
    let mut lo2 = Ev::new(&base, -1, 0, 2, &log, &clock);
    for (e, p) in [(&mut hi, 0), (&mut lo1, 2), (&mut lo2, 2)] {
        base.priority_set(e.ptr(), p).unwrap();
    }
    base.active(lo1.ptr(), EV_READ, 1);
    base.active(lo2.ptr(), EV_READ, 1);
    assert!(base.priority_init(2).is_err());
    base.run(0).unwrap();
    let order: Vec<u32> = entries(&log).iter().map(|e| e.0).collect();
    assert_eq!(order, vec![1, 0, 2]);
}

#[test]
fn counts_follow_libevent() {
    let (base, clock, _poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut ev = Ev::new(&base, -1, EV_READ, 1, &log, &clock);
    // An fd-less EV_READ event is "inserted" without touching the backend, and its timeout counts too.
    base.add(ev.ptr(), Some(ms(100))).unwrap();
    assert_eq!(base.num_events(4), 2);
    base.active(ev.ptr(), EV_READ, 1);
    assert_eq!(base.num_events(1), 1);
    assert_eq!(base.num_events(4), 3);
    assert_eq!(base.num_events(1 | 4), 4);
    base.run(0).unwrap();
    assert_eq!(base.num_events(1 | 2 | 4), 0);
    assert_eq!(base.max_events(4, true), 3);
    assert_eq!(base.max_events(4, false), 0);
}

#[test]
fn common_timeouts_use_libevents_encoding() {
    let (base, _clock, _poller) = fake_base();
    let d = ix::event::Timeval { tv_sec: 0, tv_usec: 200_000 };
    let p = base.init_common_timeout(d);
    // SAFETY: the base keeps the timeval alive and in place.
    let tv = unsafe { *p };
    assert_eq!(tv.tv_usec, 200_000 | 0x5000_0000);
    assert_eq!(base.init_common_timeout(tv), p);
    assert_eq!(base.timeout_of(tv), ms(200));
    let p2 = base.init_common_timeout(ix::event::Timeval { tv_sec: 0, tv_usec: 5_000_000 });
    // SAFETY: as above.
    assert_eq!(unsafe { *p2 }, ix::event::Timeval { tv_sec: 5, tv_usec: 0x5010_0000 });
}

#[test]
fn time_cache_holds_during_callbacks() {
    let (base, clock, _poller) = fake_base();
    let log = Arc::new(Log::default());
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let base_ptr: *const Base = &*base;
    let s2 = seen.clone();
    let mut ev = Ev::with_action(
        &base,
        -1,
        0,
        1,
        &log,
        &clock,
        Some(Box::new(move |t: &Tag| {
            // SAFETY: the base outlives the loop run that calls this.
            let b = unsafe { &*base_ptr };
            let a = b.gettimeofday_cached();
            t.clock.advance(5000);
            let c = b.gettimeofday_cached();
            s2.lock().unwrap().extend([a.tv_usec, c.tv_usec]);
        })),
    );
    base.add(ev.ptr(), Some(ms(1))).unwrap();
    base.run(0).unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(s[0], s[1]);
}

/// Real epoll: a pipe, level- and edge-triggered.
#[test]
fn epoll_level_and_edge_on_a_pipe() {
    let base = Box::new(Base::new(Config::default()).unwrap());
    let log = Arc::new(Log::default());
    let clock = FakeClock::default();
    let mut fds = [0 as c_int; 2];
    // SAFETY: a valid array for pipe2.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
    let mut fds2 = [0 as c_int; 2];
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe2(fds2.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
    let mut lvl = Ev::new(&base, fds[0], EV_READ | EV_PERSIST, 1, &log, &clock);
    let mut edge = Ev::new(&base, fds2[0], EV_READ | EV_PERSIST | EV_ET, 2, &log, &clock);
    base.add(lvl.ptr(), None).unwrap();
    base.add(edge.ptr(), None).unwrap();
    // SAFETY: writing one byte from a valid buffer to our pipes.
    unsafe {
        libc::write(fds[1], b"x".as_ptr().cast(), 1);
        libc::write(fds2[1], b"x".as_ptr().cast(), 1);
    }
    for _ in 0..3 {
        base.run(ONE_PASS).unwrap();
    }
    let l = entries(&log);
    assert_eq!(l.iter().filter(|e| e.0 == 1).count(), 3);
    assert_eq!(l.iter().filter(|e| e.0 == 2).count(), 1);
    base.del(lvl.ptr(), DelMode::AutoBlock).unwrap();
    base.del(edge.ptr(), DelMode::AutoBlock).unwrap();
    for fd in fds.into_iter().chain(fds2) {
        // SAFETY: closing our own fds.
        unsafe { libc::close(fd) };
    }
    base.check().unwrap();
}

#[test]
fn base_is_send_and_sync() {
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Base>();
}

#[test]
fn another_thread_wakes_a_threaded_base() {
    let base = Box::new(Base::new(Config { threaded: true, ..Config::default() }).unwrap());
    let log = Arc::new(Log::default());
    let clock = FakeClock::default();
    let base_ptr = &*base as *const Base as usize;
    let mut ev = Ev::with_action(
        &base,
        -1,
        0,
        1,
        &log,
        &clock,
        Some(Box::new(move |_t: &Tag| {
            // SAFETY: the base outlives the loop run that calls this.
            let _ = unsafe { &*(base_ptr as *const Base) }.loopbreak();
        })),
    );
    let evp = ev.ptr();
    std::thread::scope(|s| {
        let b: &Base = &base;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.active(evp, EV_READ, 1);
        });
        assert_eq!(base.run(EVLOOP_NO_EXIT_ON_EMPTY).unwrap(), 0);
    });
    assert_eq!(entries(&log).len(), 1);
    assert!(base.got_break());
}

static STARTED: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn slow_cb(_fd: c_int, _what: c_short, _arg: *mut c_void) {
    STARTED.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn event_del_from_another_thread_waits_for_the_running_callback() {
    let base = Box::new(Base::new(Config { threaded: true, ..Config::default() }).unwrap());
    let mut raw = Box::new(RawEvent::zeroed());
    // SAFETY: the box outlives every use by the base.
    let ev = unsafe { EvPtr::new(&mut *raw) }.unwrap();
    Base::assign(Some(&base), ev, -1, EV_PERSIST, Some(slow_cb), std::ptr::null_mut()).unwrap();
    base.active(ev, EV_TIMEOUT, 1);
    std::thread::scope(|s| {
        let b: &Base = &base;
        let deleter = s.spawn(move || {
            while !STARTED.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            b.del(ev, DelMode::Block).unwrap();
            // event_del returned: the callback that was running has finished.
            FINISHED.load(Ordering::SeqCst)
        });
        base.run(ONE_PASS).unwrap();
        assert_eq!(deleter.join().unwrap(), 1);
    });
}

#[test]
fn shutdown_deletes_everything_and_runs_finalizers() {
    static FIN: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn fin(_ev: *mut RawEvent, _arg: *mut c_void) {
        FIN.fetch_add(1, Ordering::SeqCst);
    }
    let (base, clock, poller) = fake_base();
    let log = Arc::new(Log::default());
    let mut a = Ev::new(&base, 8, EV_READ | EV_PERSIST, 1, &log, &clock);
    let mut b = Ev::new(&base, -1, 0, 2, &log, &clock);
    let mut c = Ev::new(&base, -1, 0, 3, &log, &clock);
    base.add(a.ptr(), Some(ms(50))).unwrap();
    base.add(b.ptr(), Some(ms(50))).unwrap();
    base.finalize(c.ptr(), Some(fin), false);
    base.shutdown(true);
    assert_eq!(FIN.load(Ordering::SeqCst), 1);
    assert_eq!(base.num_events(1 | 2 | 4), 0);
    assert_eq!(poller.interest(8), None);
    assert_eq!(a.ptr().flags() & 0x7f, 0);
    assert!(entries(&log).is_empty());
}
