//! POSIX signals as events, the way libevent does it: a `sigaction` handler writes the signal number to a
//! non-blocking self-pipe; the base watches the pipe's read end, counts what it reads and activates every event on
//! each caught signal with `ncalls` = the count.
//!
//! The write end the handler uses is process-wide state ([`DELIVERY_FD`]): a signal handler receives nothing but
//! the signal number, so it cannot be handed a context. This is the one global of the engine, and it is an
//! atomic fd number. As in libevent, one base at a time receives signals: the one that most recently added a
//! signal event or started its loop with signal events.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use super::map::NSIG;
use super::sys::{self, SavedAction};

/// Write end of the self-pipe of the base currently receiving signals (-1: none).
static DELIVERY_FD: AtomicI32 = AtomicI32::new(-1);

/// The handler installed for every signal with events. Async-signal-safe: an atomic load and write(2), errno kept.
extern "C" fn handler(sig: c_int) {
    let saved = sys::errno();
    let fd = DELIVERY_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        sys::write_byte(fd, sig as u8);
    }
    sys::set_errno(saved);
}

/// One base's signal machinery.
#[derive(Debug)]
pub struct Signals {
    /// (read end, write end), created with the first signal event.
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// Dispositions replaced by our handler, per signal.
    saved: Vec<Option<SavedAction>>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals { pipe: None, saved: vec![None; NSIG as usize] }
    }
}

impl Signals {
    /// The read end to watch, once a signal was added.
    pub fn read_fd(&self) -> Option<RawFd> {
        self.pipe.as_ref().map(|(r, _)| r.as_raw_fd())
    }

    /// Creates the pipe if needed; returns its read end and whether it is new (the base must then watch it).
    pub fn ensure_pipe(&mut self) -> io::Result<(RawFd, bool)> {
        if let Some((r, _)) = &self.pipe {
            return Ok((r.as_raw_fd(), false));
        }
        let p = sys::pipe()?;
        let fd = p.0.as_raw_fd();
        self.pipe = Some(p);
        Ok((fd, true))
    }

    /// Starts catching `sig` for this base (the pipe must exist) and makes this base the one receiving signals.
    pub fn install(&mut self, sig: i32) -> io::Result<()> {
        self.make_current();
        let saved = sys::install_handler(sig, handler)?;
        self.saved[sig as usize] = Some(saved);
        Ok(())
    }

    /// Gives `sig` back its previous disposition.
    pub fn restore(&mut self, sig: i32) -> io::Result<()> {
        match self.saved.get_mut(sig as usize).and_then(Option::take) {
            Some(s) => sys::restore_handler(sig, &s),
            None => Ok(()),
        }
    }

    /// Makes this base the one receiving signals (libevent: at each loop start of a base with signal events).
    pub fn make_current(&self) {
        if let Some((_, w)) = &self.pipe {
            DELIVERY_FD.store(w.as_raw_fd(), Ordering::SeqCst);
        }
    }

    /// Reads everything pending on the pipe; `counts[sig]` = how many times `sig` was caught.
    pub fn drain(&self) -> [u32; NSIG as usize] {
        let mut counts = [0u32; NSIG as usize];
        let Some((r, _)) = &self.pipe else { return counts };
        let mut buf = [0u8; 1024];
        while let Ok(n) = sys::read(r.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if (b as i32) < NSIG {
                    counts[b as usize] += 1;
                }
            }
        }
        counts
    }

    /// Replaces the pipe (after fork, so parent and child stop sharing it); returns the new read end if there was
    /// one before.
    pub fn reopen(&mut self) -> io::Result<Option<RawFd>> {
        let Some((_, w)) = &self.pipe else { return Ok(None) };
        let was_current = DELIVERY_FD.load(Ordering::SeqCst) == w.as_raw_fd();
        let p = sys::pipe()?;
        let fd = p.0.as_raw_fd();
        if was_current {
            DELIVERY_FD.store(p.1.as_raw_fd(), Ordering::SeqCst);
        }
        self.pipe = Some(p);
        Ok(Some(fd))
    }

    /// Restores every disposition we replaced and stops delivery to this base (idempotent).
    pub fn release(&mut self) {
        for sig in 0..NSIG {
            let _ = self.restore(sig);
        }
        if let Some((_, w)) = &self.pipe {
            let _ = DELIVERY_FD.compare_exchange(w.as_raw_fd(), -1, Ordering::SeqCst, Ordering::SeqCst);
        }
        self.pipe = None;
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.release();
    }
}
