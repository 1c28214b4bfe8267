//! Deferred epoll removals: when the last event on an fd is deleted, its epoll registration lingers until the
//! loop's next wait instead of being removed at once, so deleting and re-adding the same interest before then
//! (libevent's `bench`, a callback re-arming a non-persistent event, an app resetting its events between runs)
//! costs no system call, where libevent's epoll backend pays EPOLL_CTL_DEL + EPOLL_CTL_ADD. Removals that do
//! happen are made just before `epoll_wait`, so a lingering registration never reports anything.
//!
//! A registration must not outlive its fd, or a recycled fd number would inherit it (a new file never
//! registered) and a file kept open by a dup'd fd would keep reporting to a loop that deleted its event. So
//! libix's `close`, `dup2` and `dup3` call [`before_close`], which removes the fd's lingering registrations
//! before the kernel closes it: one atomic load when none linger, as libevent's delete-then-close guarantees.
//!
//! A oneshot registration (EPOLLONESHOT, for an fd whose only event is non-persistent) disarms itself when it
//! reports, so deleting its event needs no removal at all: the base remembers that a disarmed registration is
//! there and re-arms it with one MOD if the fd gets an event again. That memory is good only until the fd is
//! closed, so a set bit in a second bitmap, cleared by [`before_close`], vouches for it ([`leave_disarmed`],
//! [`still_disarmed`]). A disarmed registration never reports, so one left behind by a close libix cannot see
//! costs nothing but a failed MOD (then an ADD) on the fd's next registration.
//!
//! (Only a close libix cannot see, such as `fclose` of an `fdopen`ed socket inside libc, between an `event_del`
//! and an `event_add` of the fd's recycled number in the same loop iteration, would defeat it.)

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use parking_lot::Mutex;

use super::sys;

/// Fd numbers that may linger (1 Mi, as the socket layer's fd map); larger fds are deleted at once.
const MAX_FD: usize = 1 << 20;
/// Fds that may have a lingering registration in some poller (a hint: set when one lingers, cleared on close).
static MAYBE: [AtomicU64; MAX_FD / 64] = [const { AtomicU64::new(0) }; MAX_FD / 64];
/// Fds on which some poller left a disarmed oneshot registration, not closed through libix since.
static DISARMED: [AtomicU64; MAX_FD / 64] = [const { AtomicU64::new(0) }; MAX_FD / 64];
/// Every live poller's set, for [`before_close`].
static SETS: RwLock<Vec<Weak<Lingering>>> = RwLock::new(Vec::new());

fn maybe_slot(fd: RawFd) -> Option<(usize, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < MAX_FD)?;
    Some((fd / 64, 1u64 << (fd % 64)))
}

/// One epoll instance's lingering registrations.
#[derive(Debug)]
pub struct Lingering {
    epfd: RawFd,
    /// Whether `keep` ran since the last flush (lets a flush with nothing to do skip the lock).
    kept: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per fd: the epoll bits it is still registered with, 0 for none.
    bits: Vec<u32>,
    /// Fds that lingered since the last flush (some may have been taken back since: their bits are 0).
    fds: Vec<RawFd>,
    /// How many fds have nonzero bits: when none (all taken back, as when an app re-adds every event it deleted),
    /// a flush forgets the list without walking it.
    live: usize,
}

impl Inner {
    /// Removes `fd`'s registration from the kernel if it lingers.
    fn remove(&mut self, epfd: RawFd, fd: RawFd) {
        let Some(b) = self.bits.get_mut(fd as usize) else { return };
        if *b != 0 {
            *b = 0;
            self.live -= 1;
            // ENOENT/EBADF: the fd was closed (and maybe reused) behind libix's back; its registration went with
            // its file. Nothing else can fail for a valid epfd.
            let _ = sys::epoll_ctl_raw(epfd, libc::EPOLL_CTL_DEL, fd, 0);
        }
    }
}

impl Lingering {
    /// The set of the epoll instance `epfd` (which must outlive it).
    pub fn new(epfd: RawFd) -> Arc<Lingering> {
        let set = Arc::new(Lingering { epfd, kept: AtomicBool::new(false), inner: Mutex::new(Inner::default()) });
        let mut sets = SETS.write().unwrap_or_else(|p| p.into_inner());
        sets.retain(|w| w.strong_count() > 0);
        sets.push(Arc::downgrade(&set));
        set
    }

    fn inner(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Keeps `fd` registered with `bits` until the next [`flush`](Self::flush) instead of deleting it now; false
    /// (the caller deletes it now) for an fd number out of range.
    pub fn keep(&self, fd: RawFd, bits: u32) -> bool {
        let Some((word, bit)) = maybe_slot(fd) else { return false };
        let mut g = self.inner();
        let i = fd as usize;
        if i >= g.bits.len() {
            g.bits.resize(i + 1, 0);
        }
        if g.bits[i] == 0 {
            g.fds.push(fd);
            g.live += 1;
            self.kept.store(true, Ordering::Relaxed);
        }
        g.bits[i] = bits;
        if MAYBE[word].load(Ordering::Acquire) & bit == 0 {
            MAYBE[word].fetch_or(bit, Ordering::AcqRel);
        }
        true
    }

    /// Takes back `fd`'s lingering registration: the epoll bits it is registered with, if it lingers.
    pub fn take(&self, fd: RawFd) -> Option<u32> {
        let (word, bit) = maybe_slot(fd)?;
        if MAYBE[word].load(Ordering::Acquire) & bit == 0 {
            return None;
        }
        let mut g = self.inner();
        let b = g.bits.get_mut(fd as usize)?;
        let kept = std::mem::replace(b, 0);
        if kept != 0 {
            g.live -= 1;
        }
        (kept != 0).then_some(kept)
    }

    /// Removes every lingering registration (called just before each wait).
    pub fn flush(&self) {
        // A keep racing this check (another thread changing the base's events) is flushed next time; until then its
        // registration may report, which the base ignores for an fd without events.
        if !self.kept.load(Ordering::Relaxed) {
            return;
        }
        let mut g = self.inner();
        self.kept.store(false, Ordering::Relaxed);
        if g.live == 0 {
            g.fds.clear();
            return;
        }
        let fds = std::mem::take(&mut g.fds);
        for &fd in &fds {
            g.remove(self.epfd, fd);
        }
        // Keep the list's allocation for the next iteration.
        let mut fds = fds;
        fds.clear();
        g.fds = fds;
    }
}

/// Notes that a poller leaves a disarmed oneshot registration of `fd` behind; false (the caller then forgets it) for
/// an fd number out of range.
pub fn leave_disarmed(fd: RawFd) -> bool {
    let Some((word, bit)) = maybe_slot(fd) else { return false };
    if DISARMED[word].load(Ordering::Relaxed) & bit == 0 {
        DISARMED[word].fetch_or(bit, Ordering::AcqRel);
    }
    true
}

/// Whether `fd` has not been closed through libix since [`leave_disarmed`] was last called for it (so a disarmed
/// registration the caller remembers is still there, for the same file).
pub fn still_disarmed(fd: RawFd) -> bool {
    maybe_slot(fd).is_some_and(|(word, bit)| DISARMED[word].load(Ordering::Acquire) & bit != 0)
}

/// Removes `fd`'s lingering registrations from every poller; libix's `close`, `dup2` and `dup3` call it before the
/// kernel closes `fd`.
pub fn before_close(fd: RawFd) {
    let Some((word, bit)) = maybe_slot(fd) else { return };
    if DISARMED[word].load(Ordering::Relaxed) & bit != 0 {
        DISARMED[word].fetch_and(!bit, Ordering::AcqRel);
    }
    if MAYBE[word].load(Ordering::Acquire) & bit == 0 {
        return;
    }
    MAYBE[word].fetch_and(!bit, Ordering::AcqRel);
    let sets = SETS.read().unwrap_or_else(|p| p.into_inner());
    for set in sets.iter().filter_map(Weak::upgrade) {
        let epfd = set.epfd;
        set.inner().remove(epfd, fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn registered(epfd: RawFd, fd: RawFd) -> bool {
        // MOD succeeds only for a registered fd.
        sys::epoll_ctl_raw(epfd, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32).is_ok()
    }

    #[test]
    fn a_kept_registration_is_taken_back_or_flushed() {
        let ep = sys::epoll_create().expect("epoll");
        let efd = sys::eventfd().expect("eventfd");
        let (epfd, fd) = (ep.as_raw_fd(), efd.as_raw_fd());
        let set = Lingering::new(epfd);
        sys::epoll_ctl_raw(epfd, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32).expect("add");
        assert!(set.keep(fd, libc::EPOLLIN as u32));
        assert_eq!(set.take(fd), Some(libc::EPOLLIN as u32));
        assert_eq!(set.take(fd), None, "taken once");
        set.flush();
        assert!(registered(epfd, fd), "a registration taken back stays");
        assert!(set.keep(fd, libc::EPOLLIN as u32));
        set.flush();
        assert!(!registered(epfd, fd), "flushed: deleted");
        assert_eq!(set.take(fd), None);
        assert!(!set.keep(-1, 1) && !set.keep(MAX_FD as RawFd, 1));
    }

    #[test]
    fn closing_removes_a_lingering_registration_first() {
        let ep = sys::epoll_create().expect("epoll");
        let efd = sys::eventfd().expect("eventfd");
        let (epfd, fd) = (ep.as_raw_fd(), efd.as_raw_fd());
        let set = Lingering::new(epfd);
        // A dup keeps the file open after `fd` closes: only a removal before the close unregisters it.
        let dup = efd.try_clone().expect("dup");
        sys::epoll_ctl_raw(epfd, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32).expect("add");
        assert!(set.keep(fd, libc::EPOLLIN as u32));
        before_close(fd);
        assert!(!registered(epfd, fd), "removed before the close");
        assert_eq!(set.take(fd), None);
        drop(efd);
        // The file (still open through `dup`) is readable, and nothing reports it.
        sys::eventfd_signal(&dup).expect("signal");
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = sys::epoll_wait(&ep, &mut evs, Some(crate::event::time::Usec::ZERO), false, 1000).expect("wait");
        assert_eq!(n, 0, "the dup'd file does not report to this epoll");
    }
}
