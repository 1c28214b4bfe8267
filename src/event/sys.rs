//! The event engine's only door to the OS: every system call it makes goes through here (STYLE pattern 5), each
//! returning `io::Error` with the errno kept. File descriptors are `OwnedFd`s, closed on drop.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::time::Usec;

/// Maps a `-1` return to the errno.
fn cvt(r: c_int) -> io::Result<c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Reads a clock; 0 if it fails (it does not, for the clocks we name).
pub fn clock_usec(clock: libc::clockid_t) -> Usec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Usec(0);
    }
    Usec(ts.tv_sec.saturating_mul(1_000_000).saturating_add(ts.tv_nsec / 1000))
}

/// An identifier of the calling thread (pthread_self).
pub fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set_errno(v: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v }
}

/// A new epoll instance (close-on-exec).
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; on success we own the returned fd.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `epoll_ctl(epfd, op, fd, {events, data = fd})`.
pub fn epoll_ctl(epfd: &OwnedFd, op: c_int, fd: RawFd, events: u32) -> io::Result<()> {
    epoll_ctl_token(epfd, op, fd, events, fd as u32 as u64)
}

/// `epoll_ctl` with an explicit token in the event's data.
pub fn epoll_ctl_token(epfd: &OwnedFd, op: c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    epoll_ctl_raw_token(epfd.as_raw_fd(), op, fd, events, token)
}

/// `epoll_ctl` on an epoll fd held by number (the fd number is the token). An invalid `epfd` is an error, no more.
pub fn epoll_ctl_raw(epfd: RawFd, op: c_int, fd: RawFd, events: u32) -> io::Result<()> {
    epoll_ctl_raw_token(epfd, op, fd, events, fd as u32 as u64)
}

fn epoll_ctl_raw_token(epfd: RawFd, op: c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // Straight to the kernel: libix itself exports `epoll_ctl` (for apps' own epoll sets, capi/posix.rs).
    let args = [epfd as usize, op as usize, fd as usize, &mut ev as *mut libc::epoll_event as usize, 0, 0];
    // SAFETY: `ev` is a valid epoll_event; the kernel checks both fd numbers.
    cvt(unsafe { crate::socket::kernel::raw(libc::SYS_epoll_ctl, args) } as c_int).map(|_| ())
}

/// Waits on `epfd`; `timeout`: None = forever. With `precise`, uses epoll_pwait2's nanosecond timeout (falling back
/// to milliseconds, rounded up, on kernels without it). Returns the number of entries filled in `out`.
pub fn epoll_wait(
    epfd: &OwnedFd,
    out: &mut [libc::epoll_event],
    timeout: Option<Usec>,
    precise: bool,
    max_ms: i64,
) -> io::Result<usize> {
    let max = out.len().min(c_int::MAX as usize) as c_int;
    if precise {
        if let Some(t) = timeout {
            let t = t.0.clamp(0, max_ms.saturating_mul(1000));
            let ts = libc::timespec { tv_sec: t / 1_000_000, tv_nsec: (t % 1_000_000) * 1000 };
            // SAFETY: `out` has room for `max` entries; `ts` is a valid timespec; no signal mask.
            let r = unsafe { libc::epoll_pwait2(epfd.as_raw_fd(), out.as_mut_ptr(), max, &ts, std::ptr::null()) };
            match cvt(r) {
                Ok(n) => return Ok(n as usize),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let ms = match timeout {
        None => -1,
        Some(t) => t.to_ms_ceil(max_ms) as c_int,
    };
    // Straight to the kernel: libix itself exports `epoll_wait` (for apps' own epoll sets, capi/posix.rs).
    let args = [epfd.as_raw_fd() as usize, out.as_mut_ptr() as usize, max as usize, ms as usize, 0, 0];
    // SAFETY: `out` has room for `max` entries.
    let n = cvt(unsafe { crate::socket::kernel::raw(libc::SYS_epoll_wait, args) } as c_int)?;
    Ok(n as usize)
}

/// A non-blocking, close-on-exec eventfd with count 0.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; on success we own the fd.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd (EAGAIN, a saturated counter, counts as done: the reader wakes anyway).
pub fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64.
    let r = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
    }
    Ok(())
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: both are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One non-blocking read into `buf`: Ok(0) at end of file, Err(WouldBlock) when drained.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Writes one byte to `fd`, ignoring the result. Async-signal-safe: it is what the signal handler does.
pub fn write_byte(fd: RawFd, b: u8) {
    // SAFETY: writes one byte from a valid local; write(2) is async-signal-safe.
    let _ = unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// A signal disposition saved by [`install_handler`], to put back with [`restore_handler`].
#[derive(Clone, Copy)]
pub struct SavedAction(libc::sigaction);

impl std::fmt::Debug for SavedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedAction").field("handler", &self.0.sa_sigaction).finish()
    }
}

/// Installs `handler` for `sig` (SA_RESTART, all signals blocked while it runs, as libevent does) and returns the
/// disposition it replaced.
pub fn install_handler(sig: c_int, handler: extern "C" fn(c_int)) -> io::Result<SavedAction> {
    // SAFETY: sigaction is plain data; all-zero is a valid starting value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as *const () as libc::sighandler_t;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t to fill.
    unsafe { libc::sigfillset(&mut sa.sa_mask) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigaction structs; `handler` is an extern "C" fn(c_int) that lives forever.
    cvt(unsafe { libc::sigaction(sig, &sa, &mut old) })?;
    Ok(SavedAction(old))
}

/// Puts back a disposition saved by [`install_handler`].
pub fn restore_handler(sig: c_int, saved: &SavedAction) -> io::Result<()> {
    // SAFETY: `saved.0` was filled in by the kernel for this signal.
    cvt(unsafe { libc::sigaction(sig, &saved.0, std::ptr::null_mut()) }).map(|_| ())
}
