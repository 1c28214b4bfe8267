//! The timer heap: a binary min-heap of pending timeouts ordered by (deadline, insertion sequence), so equal
//! deadlines fire in the order they were added. Each event records its index (where libevent keeps
//! `min_heap_idx`), which makes removal O(log n).

use super::raw::EvPtr;
use super::time::Usec;

#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: Usec,
    seq: u64,
    ev: EvPtr,
}

impl Entry {
    fn before(&self, other: &Entry) -> bool {
        (self.deadline, self.seq) < (other.deadline, other.seq)
    }
}

/// Pending timeouts.
#[derive(Debug, Default)]
pub struct TimerHeap {
    v: Vec<Entry>,
    seq: u64,
}

impl TimerHeap {
    /// Number of pending timeouts.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// True when none is pending.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// The earliest (deadline, event).
    pub fn top(&self) -> Option<(Usec, EvPtr)> {
        self.v.first().map(|e| (e.deadline, e.ev))
    }

    /// True when `ev` is the earliest.
    pub fn is_top(&self, ev: EvPtr) -> bool {
        self.v.first().is_some_and(|e| e.ev == ev)
    }

    /// Adds `ev` with `deadline`; the event must not be in the heap.
    pub fn push(&mut self, ev: EvPtr, deadline: Usec) {
        self.seq += 1;
        self.v.push(Entry { deadline, seq: self.seq, ev });
        let i = self.v.len() - 1;
        ev.set_heap_idx(i);
        self.sift_up(i);
    }

    /// Removes `ev` (which must be in the heap: its recorded index is checked, so a stale index is ignored).
    pub fn remove(&mut self, ev: EvPtr) -> bool {
        let i = ev.heap_idx();
        if i >= self.v.len() || self.v[i].ev != ev {
            return false;
        }
        let last = self.v.len() - 1;
        self.v.swap(i, last);
        self.v.pop();
        if i < self.v.len() {
            self.v[i].ev.set_heap_idx(i);
            if i > 0 && self.v[i].before(&self.v[(i - 1) / 2]) {
                self.sift_up(i);
            } else {
                self.sift_down(i);
            }
        }
        ev.set_heap_idx(usize::MAX);
        true
    }

    /// The events, in heap (array) order: what libevent's foreach walks.
    pub fn iter(&self) -> impl Iterator<Item = EvPtr> + '_ {
        self.v.iter().map(|e| e.ev)
    }

    /// Checks the heap property and the recorded indices.
    pub fn check(&self) -> Result<(), String> {
        for (i, e) in self.v.iter().enumerate() {
            if e.ev.heap_idx() != i {
                return Err(format!(
                    "timer heap: event {:p} records index {}, is at {i}",
                    e.ev.as_ptr(),
                    e.ev.heap_idx()
                ));
            }
            if i > 0 && e.before(&self.v[(i - 1) / 2]) {
                return Err(format!("timer heap: order broken at {i}"));
            }
            if e.ev.deadline() != e.deadline {
                return Err(format!("timer heap: event {:p} deadline changed behind the heap", e.ev.as_ptr()));
            }
        }
        Ok(())
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if !self.v[i].before(&self.v[p]) {
                break;
            }
            self.v.swap(i, p);
            self.v[i].ev.set_heap_idx(i);
            self.v[p].ev.set_heap_idx(p);
            i = p;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.v.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.v[r].before(&self.v[l]) { r } else { l };
            if !self.v[c].before(&self.v[i]) {
                break;
            }
            self.v.swap(i, c);
            self.v[i].ev.set_heap_idx(i);
            self.v[c].ev.set_heap_idx(c);
            i = c;
        }
    }
}
