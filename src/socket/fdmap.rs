//! Which fd numbers are dataplane sockets: a lock-free bitmap read on every interposed POSIX call, so calls on
//! kernel fds cost one atomic load before they reach the kernel. A second bitmap marks the app's own epoll sets
//! that were given a dataplane socket: only their waits drive the dataplane.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fd numbers covered (1 Mi); larger fds are never dataplane sockets (their bind/connect stay in the kernel).
pub const MAX_FD: usize = 1 << 20;

/// One bit per fd number.
struct FdBits([AtomicU64; MAX_FD / 64]);

impl FdBits {
    const fn new() -> FdBits {
        FdBits([const { AtomicU64::new(0) }; MAX_FD / 64])
    }

    fn slot(fd: i32) -> Option<(usize, u64)> {
        let fd = usize::try_from(fd).ok().filter(|&f| f < MAX_FD)?;
        Some((fd / 64, 1u64 << (fd % 64)))
    }

    #[inline]
    fn contains(&self, fd: i32) -> bool {
        Self::slot(fd).is_some_and(|(i, bit)| self.0[i].load(Ordering::Acquire) & bit != 0)
    }

    fn mark(&self, fd: i32) -> bool {
        Self::slot(fd).map(|(i, bit)| self.0[i].fetch_or(bit, Ordering::AcqRel)).is_some()
    }

    fn unmark(&self, fd: i32) {
        if let Some((i, bit)) = Self::slot(fd) {
            self.0[i].fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

static DATAPLANE: FdBits = FdBits::new();
/// Epoll sets the app added a dataplane socket to, forgotten when their fd is closed or replaced (a set whose
/// sockets were all removed stays marked: its waits keep driving the dataplane, which is harmless).
static EPOLL_SETS: FdBits = FdBits::new();

/// Whether `fd` is a dataplane socket.
#[inline]
pub fn is_dataplane(fd: i32) -> bool {
    DATAPLANE.contains(fd)
}

/// Marks `fd` (false if it is out of range).
pub fn mark(fd: i32) -> bool {
    DATAPLANE.mark(fd)
}

/// Unmarks `fd`.
pub fn unmark(fd: i32) {
    DATAPLANE.unmark(fd);
}

/// Remembers that the app's epoll set `epfd` watches a dataplane socket.
pub fn mark_epoll_set(epfd: i32) {
    EPOLL_SETS.mark(epfd);
}

/// `fd` is being closed or replaced: if it was a marked epoll set, the number is free for any other file.
#[inline]
pub fn forget_epoll_set(fd: i32) {
    if EPOLL_SETS.contains(fd) {
        EPOLL_SETS.unmark(fd);
    }
}

/// Whether the app's epoll set `epfd` was given a dataplane socket.
#[inline]
pub fn epoll_set_has_dataplane(epfd: i32) -> bool {
    EPOLL_SETS.contains(epfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_unmarks() {
        assert!(!is_dataplane(900_001));
        assert!(mark(900_001));
        assert!(is_dataplane(900_001));
        assert!(!is_dataplane(900_000) && !is_dataplane(900_002));
        unmark(900_001);
        assert!(!is_dataplane(900_001));
        assert!(!mark(-1) && !is_dataplane(-1) && !mark(MAX_FD as i32));
    }

    #[test]
    fn epoll_sets_are_their_own_map() {
        assert!(!epoll_set_has_dataplane(900_003));
        mark_epoll_set(900_003);
        assert!(epoll_set_has_dataplane(900_003) && !is_dataplane(900_003));
        forget_epoll_set(900_003);
        assert!(!epoll_set_has_dataplane(900_003));
        mark_epoll_set(-1);
        assert!(!epoll_set_has_dataplane(-1));
    }
}
