//! The readiness backend of a base: the [`Poller`] trait, and [`Epoll`], its implementation for kernel fds.
//!
//! This is the seam for the dataplane (DESIGN.md §5). A base calls [`Poller::wait`] exactly once per loop
//! iteration, without its lock, with the timeout it computed from its timers (zero when callbacks are already
//! pending). A future dataplane poller wraps [`Epoll`]: in `wait` it runs `run_io` on the queues the base owns,
//! waits on the kernel epoll with a zero timeout while the dataplane has work (the NIC queue fds sit in the same
//! epoll set for idle sleeps), and reports readiness of dataplane sockets as [`Ready`] entries for their placeholder
//! fds; `interest` calls for those fds go to the dataplane's socket table instead of `epoll_ctl`. The base needs no
//! change for that: its fd map, activation order, edge/level semantics and EV_CLOSED mapping stay as they are.

use std::ffi::c_int;
use std::fmt::Debug;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use parking_lot::Mutex;

use super::linger::Lingering;
use super::raw::{EV_CLOSED, EV_READ, EV_WRITE};
use super::sys;
use super::time::Usec;

/// What a backend can do (libevent's `enum event_method_feature`).
pub mod features {
    /// Edge-triggered events (EV_ET).
    pub const ET: i32 = 0x01;
    /// O(1) add, delete and dispatch.
    pub const O1: i32 = 0x02;
    /// Any fd, including regular files.
    pub const FDS: i32 = 0x04;
    /// EV_CLOSED without reading.
    pub const EARLY_CLOSE: i32 = 0x08;
}

/// The conditions registered for one fd: a mask of EV_READ/EV_WRITE/EV_CLOSED plus whether edge-triggered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// EV_READ | EV_WRITE | EV_CLOSED bits.
    pub mask: i16,
    /// EV_ET.
    pub edge: bool,
    /// The fd's only event is non-persistent: the backend may disarm the registration itself when it reports
    /// (EPOLLONESHOT), since the base deletes that event before its callback; no removal is then needed.
    pub oneshot: bool,
    /// Only in the `old` argument of [`Poller::interest`]: a `oneshot` registration that has reported since it
    /// was last armed, so the backend holds it disarmed ([`Ready::disarmed`]).
    pub disarmed: bool,
}

impl Interest {
    /// Level-triggered interest in `mask`, not oneshot.
    pub const fn level(mask: i16) -> Interest {
        Interest { mask, edge: false, oneshot: false, disarmed: false }
    }
}

/// One readiness report: `what` is EV_READ/EV_WRITE/EV_CLOSED bits (already mapped from the backend's flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The fd.
    pub fd: RawFd,
    /// EV_READ | EV_WRITE | EV_CLOSED.
    pub what: i16,
    /// The report came from a `oneshot` registration, which the backend has now disarmed.
    pub disarmed: bool,
}

/// A readiness backend. Methods take `&self`: `interest` runs under the base lock (possibly from another thread)
/// while `wait` runs without it, as epoll allows.
pub trait Poller: Send + Sync + Debug {
    /// The method name `event_base_get_method` reports.
    fn name(&self) -> &'static str;
    /// `features::*` bits.
    fn features(&self) -> i32;
    /// Changes what `fd` is watched for from `old` to `new` (`new.mask == 0`: stop watching). `old.mask == 0`
    /// means the fd was not registered. Removing a disarmed registration (`old.disarmed`) is left to the caller,
    /// which remembers it: it never reports again, and re-arming it later costs what registering anew would.
    fn interest(&self, fd: RawFd, old: Interest, new: Interest) -> io::Result<()>;
    /// Waits up to `timeout` (None: no limit; zero: poll) and appends readiness to `out`. One call per iteration of
    /// the base's loop. EINTR is not an error (returns with nothing).
    fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Usec>) -> io::Result<()>;
    /// A fresh instance with the same configuration and nothing registered (after fork: `event_reinit`).
    fn reopen(&self) -> io::Result<Box<dyn Poller>>;
    /// Makes `wait` also return when one of `fds` (the dataplane's NIC queues) is readable, without reporting
    /// them, whenever no other loop is polling the dataplane: the loop runs the dataplane cycle itself before each
    /// wait. Called before every wait while dataplane sockets exist.
    fn watch_dataplane(&self, _fds: &[RawFd]) -> io::Result<()> {
        Ok(())
    }
}

/// The epoll token of NIC queue fds (never an fd number).
const DATAPLANE_TOKEN: u64 = u64::MAX;
/// The longest a loop sleeps while its NIC fds are left to other loops (see `Epoll::wait`).
const UNARMED_SLEEP: Usec = Usec(20_000);

/// The epoll token of the dataplane readiness sink's wake-up eventfd.
const SINK_TOKEN: u64 = u64::MAX - 1;
/// While a loop spins, how long it polls the dataplane in user space between checks of its kernel fds (so a
/// kernel fd's event waits at most this long behind the spin).
const SPIN_SLICE_US: i64 = 20;
/// Marks the token of a oneshot registration (an fd's token is its number in the low 32 bits).
const ONESHOT_TAG: u64 = 1 << 32;

/// Linux kernels before 2.6.24 could wait forever with larger epoll timeouts; libevent caps at 35 minutes too.
pub const MAX_EPOLL_TIMEOUT_MS: i64 = 35 * 60 * 1000;

const INITIAL_NEVENT: usize = 32;
const MAX_NEVENT: usize = 4096;

/// epoll on kernel fds, as libevent's epoll backend (without changelist) behaves, except that removals wait for
/// the next `wait` (`linger`): a delete and re-add of the same interest in between costs no system call.
#[derive(Debug)]
pub struct Epoll {
    epfd: OwnedFd,
    precise: bool,
    /// The epoll_event buffer; only the thread running the loop uses it (uncontended), grows when filled as
    /// libevent's does (32 .. 4096).
    buf: Mutex<Vec<libc::epoll_event>>,
    /// Whether this loop takes part in driving the dataplane (dataplane sockets exist in the process).
    watching_dataplane: std::sync::atomic::AtomicBool,
    /// Whether the NIC queue fds are in the set now.
    nic_armed: std::sync::atomic::AtomicBool,
    /// Where the socket layer posts the readiness of the dataplane sockets this loop watches (created on the
    /// first one, its wake-up eventfd then joins the set).
    sink: std::sync::OnceLock<std::sync::Arc<crate::socket::ReadySink>>,
    /// Registrations whose last event was deleted, removed just before the next wait (see `linger`).
    lingering: std::sync::Arc<Lingering>,
}

impl Epoll {
    /// A new epoll instance; `precise`: sub-millisecond timeouts (epoll_pwait2) for EVENT_BASE_FLAG_PRECISE_TIMER.
    pub fn new(precise: bool) -> io::Result<Epoll> {
        let epfd = sys::epoll_create()?;
        Ok(Epoll {
            lingering: Lingering::new(std::os::fd::AsRawFd::as_raw_fd(&epfd)),
            epfd,
            precise,
            buf: Mutex::new(vec![libc::epoll_event { events: 0, u64: 0 }; INITIAL_NEVENT]),
            watching_dataplane: std::sync::atomic::AtomicBool::new(false),
            nic_armed: std::sync::atomic::AtomicBool::new(false),
            sink: std::sync::OnceLock::new(),
        })
    }

    /// Before a blocking wait: the NIC queue fds belong in this loop's set only while no other loop is polling
    /// the dataplane (a loop busy with its sockets keeps cycling; waking the sleeping ones on every frame would only
    /// steal its core). EPOLLEXCLUSIVE: of several sleeping loops, one wakes per batch.
    fn arm_nic(&self, want: bool) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.nic_armed.load(Ordering::Relaxed) == want {
            return Ok(());
        }
        for &fd in crate::socket::nic_fds() {
            if want {
                let bits = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
                sys::epoll_ctl_token(&self.epfd, libc::EPOLL_CTL_ADD, fd, bits, DATAPLANE_TOKEN)?;
            } else {
                sys::epoll_ctl_token(&self.epfd, libc::EPOLL_CTL_DEL, fd, 0, DATAPLANE_TOKEN)?;
            }
        }
        self.nic_armed.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// This loop's readiness sink, created (and its wake-up fd added to the set) on first use.
    fn sink(&self) -> io::Result<&std::sync::Arc<crate::socket::ReadySink>> {
        if let Some(s) = self.sink.get() {
            return Ok(s);
        }
        let sink = std::sync::Arc::new(crate::socket::ReadySink::new()?);
        sys::epoll_ctl_token(&self.epfd, libc::EPOLL_CTL_ADD, sink.wake_fd(), libc::EPOLLIN as u32, SINK_TOKEN)?;
        // Only the thread holding the base lock registers interest, so no other sink can have been set.
        Ok(self.sink.get_or_init(|| sink))
    }
}

fn epoll_bits(i: Interest) -> u32 {
    let mut e = 0u32;
    if i.mask & EV_READ != 0 {
        e |= libc::EPOLLIN as u32;
    }
    if i.mask & EV_WRITE != 0 {
        e |= libc::EPOLLOUT as u32;
    }
    if i.mask & EV_CLOSED != 0 {
        e |= libc::EPOLLRDHUP as u32;
    }
    if i.edge {
        e |= libc::EPOLLET as u32;
    }
    if i.oneshot {
        e |= libc::EPOLLONESHOT as u32;
    }
    e
}

/// The token an fd is registered with.
fn token(fd: RawFd, i: Interest) -> u64 {
    fd as u32 as u64 | if i.oneshot { ONESHOT_TAG } else { 0 }
}

/// libevent's mapping from epoll flags to event conditions.
fn what_of(flags: u32) -> i16 {
    let has = |f: i32| flags & f as u32 != 0;
    if has(libc::EPOLLERR) || (has(libc::EPOLLHUP) && !has(libc::EPOLLRDHUP)) {
        return EV_READ | EV_WRITE;
    }
    let mut w = 0;
    if has(libc::EPOLLIN) {
        w |= EV_READ;
    }
    if has(libc::EPOLLOUT) {
        w |= EV_WRITE;
    }
    if has(libc::EPOLLRDHUP) {
        w |= EV_CLOSED;
    }
    w
}

impl Poller for Epoll {
    fn name(&self) -> &'static str {
        "libix"
    }

    fn features(&self) -> i32 {
        features::ET | features::O1 | features::EARLY_CLOSE
    }

    fn interest(&self, fd: RawFd, old: Interest, new: Interest) -> io::Result<()> {
        if crate::socket::owns(fd) {
            // A dataplane socket: its readiness comes from the socket layer through the sink. Only an INADDR_ANY
            // listener also needs the kernel's report (its fd is an epoll over the kernel socket).
            let sink = self.sink()?;
            if !crate::socket::watch(fd, sink, new.mask, new.edge) {
                return Ok(());
            }
        }
        let bits = epoll_bits(new);
        let err = |e: &io::Error| e.raw_os_error().unwrap_or(0);
        let ctl = |op: c_int| sys::epoll_ctl_token(&self.epfd, op, fd, bits, token(fd, new));
        if new.mask == 0 {
            if old.mask == 0 || old.disarmed || self.lingering.keep(fd, epoll_bits(old)) {
                return Ok(());
            }
            return match sys::epoll_ctl(&self.epfd, libc::EPOLL_CTL_DEL, fd, epoll_bits(old)) {
                // The fd was closed (or replaced) before we got to it: nothing left to delete.
                Err(e) if matches!(err(&e), libc::ENOENT | libc::EBADF | libc::EPERM) => Ok(()),
                r => r,
            };
        }
        // What the kernel holds for the fd: the registration the caller knows of (0 for a disarmed one, which must
        // be re-armed even with the same bits; `bits` is never 0 here), else one lingering since its events were
        // deleted before this wait (same file: a close would have removed it).
        let held =
            if old.mask != 0 { Some(if old.disarmed { 0 } else { epoll_bits(old) }) } else { self.lingering.take(fd) };
        match held {
            Some(b) if b == bits => Ok(()),
            // MOD, retried as ADD when the fd was closed and reopened meanwhile (MOD finds a registration by file and
            // fd number: a stale one of another file never passes).
            Some(_) => match ctl(libc::EPOLL_CTL_MOD) {
                Err(e) if err(&e) == libc::ENOENT => ctl(libc::EPOLL_CTL_ADD),
                r => r,
            },
            // ADD, retried as MOD for the dup2() quirk (a closed fd's epitem lingers while a dup is open).
            None => match ctl(libc::EPOLL_CTL_ADD) {
                Err(e) if err(&e) == libc::EEXIST => ctl(libc::EPOLL_CTL_MOD),
                r => r,
            },
        }
    }

    fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Usec>) -> io::Result<()> {
        self.lingering.flush();
        let mut buf = self.buf.lock();
        let sink = self.sink.get();
        let mut timeout = timeout;
        if let Some(s) = sink.filter(|s| s.prepare_sleep()) {
            // Polling: the dataplane in user space for a slice (no longer than the loop's own next timer), then
            // the kernel fds once, below.
            let slice = timeout.map_or(SPIN_SLICE_US, |t| t.0.clamp(0, SPIN_SLICE_US));
            s.poll_dataplane(slice as u64);
            timeout = Some(Usec::ZERO);
        }
        if timeout != Some(Usec::ZERO) && self.watching_dataplane.load(std::sync::atomic::Ordering::Relaxed) {
            // The NIC wakes the loops that serve flows (connections, UDP sockets): a loop watching only listeners
            // (memcached's main thread) leaves frames to them, so a request is read by the thread that answers it
            // instead of being handed over with a wake-up. Nobody serving flows: every loop watches the NIC.
            let serves_flows = sink.is_some_and(|s| s.watches_data());
            let want = crate::socket::spinners() == 0 && (serves_flows || crate::socket::data_sinks() == 0);
            self.arm_nic(want)?;
            if !want {
                // Another loop takes the frames; should it be kept from its loop (a long callback, a thread that
                // stopped looping), this one still runs a cycle now and then.
                timeout = Some(timeout.map_or(UNARMED_SLEEP, |t| t.min(UNARMED_SLEEP)));
            }
        }
        let waited = sys::epoll_wait(&self.epfd, &mut buf, timeout, self.precise, MAX_EPOLL_TIMEOUT_MS);
        let n = match &waited {
            Ok(n) => *n,
            Err(_) => 0,
        };
        if let Some(s) = sink {
            // Awake: what is posted from now on is collected below or at the next wait, without a wake-up.
            s.awake();
        }
        let (mut by_frames, mut woken) = (false, false);
        for e in &buf[..n] {
            by_frames |= e.u64 == DATAPLANE_TOKEN;
            woken |= e.u64 == SINK_TOKEN;
        }
        if by_frames {
            // Woken by frames: their cycle runs now, so the readiness it posts is collected by this same wait (not
            // by another epoll_wait at the next turn of the loop).
            crate::socket::drive();
        }
        if let Some(s) = sink {
            s.collect(woken, &mut |fd, what| out.push(Ready { fd, what, disarmed: false }));
        }
        match waited {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for e in &buf[..n] {
            let (flags, data) = (e.events, e.u64);
            if data == DATAPLANE_TOKEN || data == SINK_TOKEN {
                continue;
            }
            let what = what_of(flags);
            if what != 0 {
                out.push(Ready { fd: data as u32 as RawFd, what, disarmed: data & ONESHOT_TAG != 0 });
            }
        }
        if n == buf.len() && buf.len() < MAX_NEVENT {
            let len = buf.len() * 2;
            buf.resize(len, libc::epoll_event { events: 0, u64: 0 });
        }
        Ok(())
    }

    fn reopen(&self) -> io::Result<Box<dyn Poller>> {
        Ok(Box::new(Epoll::new(self.precise)?))
    }

    fn watch_dataplane(&self, fds: &[RawFd]) -> io::Result<()> {
        if !fds.is_empty() {
            self.watching_dataplane.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_flag_mapping_matches_libevent() {
        let f = |x: i32| x as u32;
        assert_eq!(what_of(f(libc::EPOLLERR)), EV_READ | EV_WRITE);
        assert_eq!(what_of(f(libc::EPOLLHUP)), EV_READ | EV_WRITE);
        assert_eq!(what_of(f(libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLIN)), EV_READ | EV_CLOSED);
        assert_eq!(what_of(f(libc::EPOLLIN | libc::EPOLLOUT)), EV_READ | EV_WRITE);
        assert_eq!(what_of(f(libc::EPOLLRDHUP)), EV_CLOSED);
        assert_eq!(what_of(0), 0);
    }

    #[test]
    fn interest_bits() {
        let edge_read = Interest { edge: true, ..Interest::level(EV_READ) };
        assert_eq!(epoll_bits(edge_read), (libc::EPOLLIN | libc::EPOLLET) as u32);
        assert_eq!(epoll_bits(Interest::level(EV_WRITE | EV_CLOSED)), (libc::EPOLLOUT | libc::EPOLLRDHUP) as u32);
        let once = Interest { oneshot: true, ..Interest::level(EV_READ) };
        assert_eq!(epoll_bits(once), (libc::EPOLLIN | libc::EPOLLONESHOT) as u32);
        assert_eq!(token(7, once), 7 | ONESHOT_TAG);
        assert_eq!(token(7, Interest::level(EV_READ)), 7);
    }
}
