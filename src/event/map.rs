//! Which added events wait on which fd or signal (libevent's evmap): per fd, the events and how many want each
//! condition, so the backend hears only about changes of the fd's combined interest (several events on one fd make
//! one epoll registration). Lists are walked newest first, the order in which libevent activates them.

use super::poller::Interest;
use super::raw::{EvPtr, EV_CLOSED, EV_ET, EV_READ, EV_WRITE};

/// Signal numbers are below this (Linux NSIG).
pub const NSIG: i32 = 65;

/// The events on one fd.
#[derive(Debug, Default)]
pub struct FdSlot {
    /// In the order added.
    events: Vec<EvPtr>,
    nread: u16,
    nwrite: u16,
    nclose: u16,
    /// What the backend holds for the fd as far as the base knows (mask 0: nothing, or a registration lingering
    /// in the poller after its last event went). A disarmed oneshot registration stays here after the events go.
    pub reg: Interest,
    /// The fd's non-persistent event was seen re-added after its oneshot registration fired (a callback re-arming
    /// it): a plain registration suits that pattern better (a delete and re-add then cost nothing).
    pub no_oneshot: bool,
}

impl FdSlot {
    /// The combined EV_READ | EV_WRITE | EV_CLOSED interest.
    pub fn mask(&self) -> i16 {
        let mut m = 0;
        if self.nread > 0 {
            m |= EV_READ;
        }
        if self.nwrite > 0 {
            m |= EV_WRITE;
        }
        if self.nclose > 0 {
            m |= EV_CLOSED;
        }
        m
    }

    /// The events, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = EvPtr> + '_ {
        self.events.iter().rev().copied()
    }

    /// How many events wait on the fd.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event waits on the fd.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The `i`-th event counting from the newest (0).
    pub fn nth_newest(&self, i: usize) -> Option<EvPtr> {
        let n = self.events.len();
        (i < n).then(|| self.events[n - 1 - i])
    }

    /// Whether the newest event is edge-triggered (what a re-registration after fork uses).
    pub fn newest_is_edge(&self) -> bool {
        self.events.last().is_some_and(|e| e.events() & EV_ET != 0)
    }
}

/// Error: more than 65535 events want one condition on one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

/// fd -> events. A slot keeps its list's allocation when its last event goes (as libevent keeps its evmap
/// entries), so the common del/add cycle on one fd allocates nothing.
#[derive(Debug, Default)]
pub struct IoMap {
    slots: Vec<FdSlot>,
}

impl IoMap {
    /// The slot of `fd` (empty or not; created if needed).
    pub fn slot_mut(&mut self, fd: i32) -> &mut FdSlot {
        let i = fd as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, FdSlot::default);
        }
        &mut self.slots[i]
    }

    /// The backend registration the base remembers for `fd` (default: none) and its `no_oneshot` hint.
    pub fn reg(&self, fd: i32) -> (Interest, bool) {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map_or((Interest::default(), false), |s| (s.reg, s.no_oneshot))
    }

    /// Records that `fd`'s oneshot registration reported, so the backend has disarmed it.
    pub fn mark_disarmed(&mut self, fd: i32) {
        if let Some(s) = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)) {
            if s.reg.oneshot && s.reg.mask != 0 {
                s.reg.disarmed = true;
            }
        }
    }

    /// Forgets every remembered registration (a new backend after fork has none).
    pub fn forget_registrations(&mut self) {
        for s in &mut self.slots {
            s.reg = Interest::default();
            s.no_oneshot = false;
        }
    }

    /// The slot of `fd`, if any event waits on it.
    pub fn get(&self, fd: i32) -> Option<&FdSlot> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get(i)).filter(|s| !s.events.is_empty())
    }

    /// (current interest, conditions that adding an event with `events` would newly need).
    pub fn add_effect(&self, fd: i32, events: i16) -> Result<(i16, i16), TooMany> {
        let (mut r, mut w, mut c, old) = match self.get(fd) {
            Some(s) => (s.nread, s.nwrite, s.nclose, s.mask()),
            None => (0, 0, 0, 0),
        };
        let mut new = 0;
        let mut bump = |n: &mut u16, bit: i16| -> Result<(), TooMany> {
            if events & bit != 0 {
                *n = n.checked_add(1).ok_or(TooMany)?;
                if *n == 1 {
                    new |= bit;
                }
            }
            Ok(())
        };
        bump(&mut r, EV_READ)?;
        bump(&mut w, EV_WRITE)?;
        bump(&mut c, EV_CLOSED)?;
        Ok((old, new))
    }

    /// Records `ev` (with conditions `events`) on `fd` (>= 0); returns the fd's slot.
    pub fn insert(&mut self, fd: i32, ev: EvPtr, events: i16) -> &mut FdSlot {
        let s = self.slot_mut(fd);
        if events & EV_READ != 0 {
            s.nread += 1;
        }
        if events & EV_WRITE != 0 {
            s.nwrite += 1;
        }
        if events & EV_CLOSED != 0 {
            s.nclose += 1;
        }
        s.events.push(ev);
        s
    }

    /// Forgets `ev` on `fd`; returns (interest before, conditions no longer needed), or None if it was not there.
    pub fn remove(&mut self, fd: i32, ev: EvPtr, events: i16) -> Option<(i16, i16)> {
        let i = usize::try_from(fd).ok()?;
        let s = self.slots.get_mut(i)?;
        // Newest first: the event removed is most often the last (or only) one, which needs no shifting.
        let pos = s.events.iter().rposition(|&e| e == ev)?;
        if pos + 1 == s.events.len() {
            s.events.pop();
        } else {
            s.events.remove(pos);
        }
        let old = s.mask();
        let mut gone = 0;
        let mut drop_one = |n: &mut u16, bit: i16| {
            if events & bit != 0 && *n > 0 {
                *n -= 1;
                if *n == 0 {
                    gone |= bit;
                }
            }
        };
        drop_one(&mut s.nread, EV_READ);
        drop_one(&mut s.nwrite, EV_WRITE);
        drop_one(&mut s.nclose, EV_CLOSED);
        Some((old, gone))
    }

    /// (fd, slot) for every fd with events, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &FdSlot)> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| !s.events.is_empty()).map(|(fd, s)| (fd as i32, s))
    }

    /// Checks the counters against the events.
    pub fn check(&self) -> Result<(), String> {
        for (fd, s) in self.iter() {
            let count = |bit: i16| s.events.iter().filter(|e| e.events() & bit != 0).count();
            if count(EV_READ) != s.nread as usize
                || count(EV_WRITE) != s.nwrite as usize
                || count(EV_CLOSED) != s.nclose as usize
            {
                return Err(format!("fd map: counters of fd {fd} do not match its events"));
            }
            for e in &s.events {
                if e.fd() != fd {
                    return Err(format!("fd map: event {:p} on fd {fd} says fd {}", e.as_ptr(), e.fd()));
                }
            }
        }
        Ok(())
    }
}

/// signal number -> events.
#[derive(Debug)]
pub struct SignalMap {
    lists: Vec<Vec<EvPtr>>,
    /// How many signals have events (so "any?" needs no scan, on every loop start).
    watched: usize,
}

impl Default for SignalMap {
    fn default() -> Self {
        SignalMap { lists: vec![Vec::new(); NSIG as usize], watched: 0 }
    }
}

impl SignalMap {
    /// Adds `ev` on `sig` (in range); true if it is the first for that signal.
    pub fn insert(&mut self, sig: i32, ev: EvPtr) -> bool {
        let l = &mut self.lists[sig as usize];
        l.push(ev);
        let first = l.len() == 1;
        self.watched += usize::from(first);
        first
    }

    /// Whether no signal has events.
    pub fn is_empty(&self) -> bool {
        self.watched == 0
    }

    /// Removes `ev` from `sig`; Some(true) if it was the last.
    pub fn remove(&mut self, sig: i32, ev: EvPtr) -> Option<bool> {
        let l = self.lists.get_mut(usize::try_from(sig).ok()?)?;
        let pos = l.iter().position(|&e| e == ev)?;
        l.remove(pos);
        let last = l.is_empty();
        self.watched -= usize::from(last);
        Some(last)
    }

    /// The events on `sig`, newest first.
    pub fn newest_first(&self, sig: i32) -> impl Iterator<Item = EvPtr> + '_ {
        usize::try_from(sig).ok().and_then(|i| self.lists.get(i)).into_iter().flat_map(|l| l.iter().rev().copied())
    }

    /// (signal, events newest first) for every signal with events, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[EvPtr])> + '_ {
        self.lists.iter().enumerate().filter(|(_, l)| !l.is_empty()).map(|(s, l)| (s as i32, l.as_slice()))
    }

    /// Signals with at least one event.
    pub fn signals(&self) -> impl Iterator<Item = i32> + '_ {
        self.iter().map(|(s, _)| s)
    }
}
