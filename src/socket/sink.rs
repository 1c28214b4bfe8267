//! Readiness of dataplane sockets posted straight to the event loop that watches them, without a system call.
//!
//! Each event_base's poller owns one [`ReadySink`]. When the app adds an event on a dataplane fd, the poller hands
//! its sink to the socket layer ([`super::watch`]); from then on the layer records the socket's readiness in the
//! sink whenever it changes, and the poller reports the sink's entries at every wait, level-triggered as epoll
//! would (an edge-triggered entry is reported once per change). The sink's eventfd is written only when the loop
//! is asleep in epoll_wait, so a busy loop pays no system call per readiness change (DESIGN.md §5: readiness posted
//! to the user's base with a wake-up).
//!
//! The sink also keeps its loop's idle policy (`idle.rs`): whether the loop polls the dataplane instead of sleeping,
//! under load or while it expects a peer's reply.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::idle::LoadRule;
use super::{kernel, HashMap, EV_READ};

#[derive(Debug, Clone, Copy)]
struct Entry {
    what: i16,
    edge: bool,
}

/// One event loop's inbox of dataplane readiness.
#[derive(Debug)]
pub struct ReadySink {
    ready: Mutex<HashMap<RawFd, Entry>>,
    /// The loop is in (or about to enter) a blocking wait: posters must wake it.
    sleeping: AtomicBool,
    wake_fd: RawFd,
    /// Monotonic microseconds until which the loop keeps polling (per loop, so a thread whose sockets are quiet
    /// sleeps while another one is busy): set by the load rule when its sockets have work, extended when the app
    /// answers a peer expected back soon (`idle.rs`).
    spin_until_us: AtomicU64,
    /// The longest spin (`IX_SPIN_US`).
    max_spin_us: u64,
    /// The load rule (only the loop's own thread uses it; a lock nobody contends).
    load: Mutex<LoadRule>,
    /// The load rule's arrivals since the last collect: sockets that became readable, and data arrived on sockets
    /// it held readable already.
    arrivals: AtomicUsize,
    /// Counted in [`SPINNERS`] now.
    spinning: AtomicBool,
    /// Dataplane connections and UDP sockets this loop watches (listeners do not count): the NIC wakes the loops
    /// that serve flows, so a request is handled by the thread that reads it, without a hand-off.
    data_watches: AtomicUsize,
}

/// Event loops that serve flows (see `data_watches`) polling the dataplane right now (within their spin period).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// Sinks watching at least one dataplane connection or UDP socket.
static DATA_SINKS: AtomicUsize = AtomicUsize::new(0);

/// How many event loops watch dataplane connections or UDP sockets (not only listeners).
pub fn data_sinks() -> usize {
    DATA_SINKS.load(Ordering::Relaxed)
}

/// How many event loops are polling the dataplane now: while one is, the others sleep without the NIC fds.
pub fn spinners() -> usize {
    SPINNERS.load(Ordering::Relaxed)
}

impl ReadySink {
    /// A sink with its wake-up eventfd (the poller adds that fd to its epoll set).
    pub fn new() -> std::io::Result<ReadySink> {
        let wake_fd = kernel::eventfd().map_err(std::io::Error::from_raw_os_error)?;
        let max_spin_us = super::spin().as_micros() as u64;
        Ok(ReadySink {
            ready: Mutex::new(HashMap::default()),
            // The loop may already be blocked in a wait that started before this sink existed (an event added
            // from another thread creates it): the first readiness must wake it.
            sleeping: AtomicBool::new(true),
            wake_fd,
            spin_until_us: AtomicU64::new(0),
            max_spin_us,
            load: Mutex::new(LoadRule::new(max_spin_us)),
            arrivals: AtomicUsize::new(0),
            spinning: AtomicBool::new(false),
            data_watches: AtomicUsize::new(0),
        })
    }

    /// The loop starts (`true`) or stops watching a connection or UDP socket.
    pub fn count_data_watch(&self, added: bool) {
        if added {
            if self.data_watches.fetch_add(1, Ordering::Relaxed) == 0 {
                DATA_SINKS.fetch_add(1, Ordering::Relaxed);
            }
        } else if self.data_watches.fetch_sub(1, Ordering::Relaxed) == 1 {
            DATA_SINKS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether this loop watches a dataplane connection or UDP socket.
    pub fn watches_data(&self) -> bool {
        self.data_watches.load(Ordering::Relaxed) > 0
    }

    /// The eventfd written when a sleeping loop gets work.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_fd
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RawFd, Entry>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `fd`'s readiness (`what`: EV_READ/EV_WRITE/EV_CLOSED bits; 0 removes it), waking the loop if it
    /// sleeps and something became ready.
    pub fn set(&self, fd: RawFd, what: i16, edge: bool) {
        let added = {
            let mut ready = self.lock();
            if what == 0 {
                ready.remove(&fd);
                false
            } else {
                // A socket that became readable is an arrival; more data on one that is readable already is
                // counted by `arrived` (writable or closed is none).
                if ready.insert(fd, Entry { what, edge }).is_none() && what & EV_READ != 0 {
                    self.arrivals.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
        };
        if added && self.sleeping.load(Ordering::SeqCst) {
            kernel::eventfd_signal(self.wake_fd);
        }
    }

    /// More data arrived on a socket this loop holds readable already: one more arrival for the load rule.
    pub fn arrived(&self) {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets `fd`.
    pub fn remove(&self, fd: RawFd) {
        self.lock().remove(&fd);
    }

    /// Called before a wait: says whether the loop must not block (something is ready, or it polls: under load or
    /// for an expected reply, see `idle.rs`); otherwise marks it asleep.
    pub fn prepare_sleep(&self) -> bool {
        let spin = super::now_us() < self.spin_until_us.load(Ordering::Relaxed);
        // Only a loop that serves flows counts as polling the dataplane for the others: a loop that watches only
        // listeners leaves the NIC to those (poller.rs), so its polling must not make them sleep unarmed.
        let counted = spin && self.watches_data();
        if counted != self.spinning.swap(counted, Ordering::Relaxed) {
            if counted {
                SPINNERS.fetch_add(1, Ordering::Relaxed);
            } else {
                SPINNERS.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if spin {
            if self.lock().is_empty() {
                // An idle poll: any other runnable thread on this core goes first (loops spinning side by side on
                // one core, or the app's own threads, would otherwise wait for the scheduler's time slice).
                kernel::sched_yield();
            }
            return true;
        }
        self.sleeping.store(true, Ordering::SeqCst);
        !self.lock().is_empty()
    }

    /// While the loop spins (`prepare_sleep` said so and nothing is ready yet): polls the dataplane in user space,
    /// without a system call, until one of the loop's sockets is ready, the spin period ends, `max_us` passes, or
    /// a shard is held by another thread (its work is that thread's: see `before_wait`). The loop then checks its
    /// kernel fds once (`epoll_wait` with no timeout) and yields once: two system calls per slice instead of two
    /// per poll, which made system time 64% of a spinning memcached's CPU (each costs ~1 us on these VMs).
    pub fn poll_dataplane(&self, max_us: u64) {
        let now = super::now_us();
        let end = now.saturating_add(max_us).min(self.spin_until_us.load(Ordering::Relaxed));
        while self.lock().is_empty() {
            let (_, skipped) = super::drive_shards();
            if skipped != 0 || super::now_us() >= end {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// The app answered, at `now_us`, a peer expected back within the longest spin: the loop polls for it until
    /// then (the conversation rule, `idle.rs`).
    pub fn expect_reply(&self, now_us: u64) {
        self.spin_until_us.fetch_max(now_us.saturating_add(self.max_spin_us), Ordering::Relaxed);
    }

    /// The loop's wait returned: posters need not wake it.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Called after a wait: appends `(fd, what)` for every ready socket (edge entries once) and clears the
    /// wake-up.
    pub fn collect(&self, woken: bool, out: &mut impl FnMut(RawFd, i16)) {
        self.sleeping.store(false, Ordering::SeqCst);
        if woken {
            kernel::eventfd_set(self.wake_fd, 0);
        }
        let mut ready = self.lock();
        if !ready.is_empty() {
            let now = super::now_us();
            // Arrivals since the last collect: sockets that became ready (a level-triggered entry stays in
            // `ready` while it holds, and must count once) and data on sockets that were ready already.
            let arrivals = self.arrivals.swap(0, Ordering::Relaxed);
            let spin = self.load.lock().unwrap_or_else(|p| p.into_inner()).work(now, arrivals);
            self.spin_until_us.fetch_max(now + spin, Ordering::Relaxed);
        }
        ready.retain(|&fd, e| {
            out(fd, e.what);
            !e.edge
        });
    }
}

impl Drop for ReadySink {
    fn drop(&mut self) {
        if self.spinning.load(Ordering::Relaxed) {
            SPINNERS.fetch_sub(1, Ordering::Relaxed);
        }
        if self.data_watches.load(Ordering::Relaxed) > 0 {
            DATA_SINKS.fetch_sub(1, Ordering::Relaxed);
        }
        kernel::close(self.wake_fd);
    }
}
