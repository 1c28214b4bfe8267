//! Which fd numbers are dataplane sockets: a lock-free bitmap read on every interposed POSIX call, so calls on
//! kernel fds cost one atomic load before they reach the kernel.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fd numbers covered (1 Mi); larger fds are never dataplane sockets (their bind/connect stay in the kernel).
pub const MAX_FD: usize = 1 << 20;
static BITS: [AtomicU64; MAX_FD / 64] = [const { AtomicU64::new(0) }; MAX_FD / 64];

fn slot(fd: i32) -> Option<(usize, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < MAX_FD)?;
    Some((fd / 64, 1u64 << (fd % 64)))
}

/// Whether `fd` is a dataplane socket.
#[inline]
pub fn is_dataplane(fd: i32) -> bool {
    slot(fd).is_some_and(|(i, bit)| BITS[i].load(Ordering::Acquire) & bit != 0)
}

/// Marks `fd` (false if it is out of range).
pub fn mark(fd: i32) -> bool {
    slot(fd).map(|(i, bit)| BITS[i].fetch_or(bit, Ordering::AcqRel)).is_some()
}

/// Unmarks `fd`.
pub fn unmark(fd: i32) {
    if let Some((i, bit)) = slot(fd) {
        BITS[i].fetch_and(!bit, Ordering::AcqRel);
    }
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
}
