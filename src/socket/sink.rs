//! Readiness of dataplane sockets posted straight to the event loop that watches them, without a system call.
//!
//! Each event_base's poller owns one [`ReadySink`]. When the app adds an event on a dataplane fd, the poller hands
//! its sink to the socket layer ([`super::watch`]); from then on the layer records the socket's readiness in the
//! sink whenever it changes, and the poller reports the sink's entries at every wait, level-triggered as epoll
//! would (an edge-triggered entry is reported once per change). The sink's eventfd is written only when the loop
//! is asleep in epoll_wait, so a busy loop pays no system call per readiness change (DESIGN.md §5: readiness posted
//! to the user's base with a wake-up).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::kernel;

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
    /// Monotonic microseconds until which the loop keeps polling: its sockets had work recently (IX's adaptive
    /// idle policy, per loop, so a thread whose sockets are quiet sleeps while another one is busy).
    spin_until_us: AtomicU64,
    spin_us: u64,
    /// Counted in [`SPINNERS`] now.
    spinning: AtomicBool,
}

/// Event loops polling the dataplane right now (within their spin period).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// How many event loops are polling the dataplane now: while one is, the others sleep without the NIC fds.
pub fn spinners() -> usize {
    SPINNERS.load(Ordering::Relaxed)
}

impl ReadySink {
    /// A sink with its wake-up eventfd (the poller adds that fd to its epoll set).
    pub fn new() -> std::io::Result<ReadySink> {
        let wake_fd = kernel::eventfd().map_err(std::io::Error::from_raw_os_error)?;
        Ok(ReadySink {
            ready: Mutex::new(HashMap::new()),
            // The loop may already be blocked in a wait that started before this sink existed (an event added
            // from another thread creates it): the first readiness must wake it.
            sleeping: AtomicBool::new(true),
            wake_fd,
            spin_until_us: AtomicU64::new(0),
            spin_us: super::spin().as_micros() as u64,
            spinning: AtomicBool::new(false),
        })
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
                ready.insert(fd, Entry { what, edge });
                true
            }
        };
        if added && self.sleeping.load(Ordering::SeqCst) {
            kernel::eventfd_set(self.wake_fd, 1);
        }
    }

    /// Forgets `fd`.
    pub fn remove(&self, fd: RawFd) {
        self.lock().remove(&fd);
    }

    /// Called before a wait: says whether the loop must not block (something is ready, or its sockets had work
    /// within the spin period); otherwise marks it asleep.
    pub fn prepare_sleep(&self) -> bool {
        let spin = super::now_us() < self.spin_until_us.load(Ordering::Relaxed);
        if spin != self.spinning.swap(spin, Ordering::Relaxed) {
            if spin {
                SPINNERS.fetch_add(1, Ordering::Relaxed);
            } else {
                SPINNERS.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if spin {
            return true;
        }
        self.sleeping.store(true, Ordering::SeqCst);
        !self.lock().is_empty()
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
            self.spin_until_us.store(super::now_us() + self.spin_us, Ordering::Relaxed);
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
        kernel::close(self.wake_fd);
    }
}
