//! The timer heap: a binary min-heap of pending timeouts ordered by deadline, libevent's `min_heap` move for move
//! (same sift rules, same tie-breaking: a hole moves only past strictly later deadlines, and sifting down prefers
//! the right child on ties), so events with equal deadlines fire in the order libevent's would, and removing one
//! of many equal deadlines (every event of a program with one fixed timeout) is O(1). Each event records its
//! index (where libevent keeps `min_heap_idx`), which makes removal O(log n).

use super::raw::EvPtr;
use super::time::Usec;

#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: Usec,
    ev: EvPtr,
}

impl Entry {
    fn before(&self, other: &Entry) -> bool {
        self.deadline < other.deadline
    }
}

/// Pending timeouts.
#[derive(Debug, Default)]
pub struct TimerHeap {
    v: Vec<Entry>,
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
        self.v.push(Entry { deadline, ev });
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

    // Both sifts move a hole instead of swapping: each level copies one entry and writes one recorded index.
    fn sift_up(&mut self, mut i: usize) {
        let e = self.v[i];
        while i > 0 {
            let p = (i - 1) / 2;
            if !e.before(&self.v[p]) {
                break;
            }
            self.v[i] = self.v[p];
            self.v[i].ev.set_heap_idx(i);
            i = p;
        }
        self.v[i] = e;
        e.ev.set_heap_idx(i);
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.v.len();
        let e = self.v[i];
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            // libevent's choice: the right child unless it is strictly later than the left.
            let c = if r < n && !self.v[l].before(&self.v[r]) { r } else { l };
            if !self.v[c].before(&e) {
                break;
            }
            self.v[i] = self.v[c];
            self.v[i].ev.set_heap_idx(i);
            i = c;
        }
        self.v[i] = e;
        e.ev.set_heap_idx(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Random adds and removals against a sorted set: the heap property and every recorded index hold after
        /// each step, and the top always has the earliest deadline.
        #[test]
        fn matches_a_sorted_set(ops in proptest::collection::vec((0u8..3, 0usize..24, 0i64..50), 1..400)) {
            let evs: Vec<EvPtr> = (0..24).map(|_| EvPtr::leaked_for_test()).collect();
            for e in &evs {
                e.set_heap_idx(usize::MAX);
            }
            let mut heap = TimerHeap::default();
            let mut model: BTreeSet<(i64, u64, usize)> = BTreeSet::new();
            let mut seq_of = vec![None::<(i64, u64)>; evs.len()];
            let mut seq = 0u64;
            for (op, k, deadline) in ops {
                match op {
                    0 if seq_of[k].is_none() => {
                        seq += 1;
                        evs[k].set_deadline(Usec(deadline));
                        heap.push(evs[k], Usec(deadline));
                        model.insert((deadline, seq, k));
                        seq_of[k] = Some((deadline, seq));
                    }
                    1 => {
                        let was = seq_of[k].take();
                        prop_assert_eq!(heap.remove(evs[k]), was.is_some());
                        if let Some((d, s)) = was {
                            model.remove(&(d, s, k));
                        }
                    }
                    _ => {
                        if let Some((_, top)) = heap.top() {
                            let i = evs.iter().position(|&e| e == top).expect("known event");
                            let (d, s) = seq_of[i].take().expect("in the model");
                            prop_assert_eq!(model.iter().next().map(|m| m.0), Some(d), "top is the earliest");
                            prop_assert!(heap.remove(top));
                            model.remove(&(d, s, i));
                        }
                    }
                }
                prop_assert_eq!(heap.len(), model.len());
                prop_assert!(heap.check().is_ok(), "{:?}", heap.check());
                if let Some(&(d, _, _)) = model.iter().next() {
                    prop_assert_eq!(heap.top().map(|t| t.0), Some(Usec(d)));
                }
            }
        }
    }
}
