//! Active queues: one FIFO per priority plus the "later" queue (callbacks that become active on the next loop
//! iteration). Intrusive doubly linked lists through the events themselves, as libevent's TAILQs: the links live
//! in the `struct event` area libevent keeps its own active-queue link in (`evcb_active_next`), the queue and a
//! signal event's due count in the unused io/signal list link, so queueing and unqueueing an event touch no
//! memory but the event and the list ends, and removing from the middle is O(1). An event is on a queue exactly
//! while its EVLIST_ACTIVE or EVLIST_ACTIVE_LATER flag is set (the base keeps that invariant), and libevent's rule
//! that a pending or active event's memory stays valid is what makes following the links sound.

use super::raw::EvPtr;

/// Which list an event is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueId {
    /// The active queue of this priority.
    Prio(u8),
    /// The active-later queue.
    Later,
}

/// The `active_queue` value of the later queue (priorities are below 256).
const LATER: u16 = u16::MAX;

impl QueueId {
    fn code(self) -> u16 {
        match self {
            QueueId::Prio(p) => u16::from(p),
            QueueId::Later => LATER,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct List {
    head: Option<EvPtr>,
    tail: Option<EvPtr>,
    len: usize,
}

/// The active queues of one base.
#[derive(Debug)]
pub struct ActiveQueues {
    prio: Vec<List>,
    later: List,
}

impl ActiveQueues {
    /// Queues for `npri` priorities.
    pub fn new(npri: usize) -> ActiveQueues {
        ActiveQueues { prio: vec![List::default(); npri.clamp(1, 256)], later: List::default() }
    }

    /// Number of priorities.
    pub fn npriorities(&self) -> usize {
        self.prio.len()
    }

    /// Changes the number of priorities (1..=256); only when no priority queue holds anything.
    pub fn set_npriorities(&mut self, n: usize) -> bool {
        if self.prio.iter().any(|l| l.len != 0) {
            return false;
        }
        self.prio = vec![List::default(); n.clamp(1, 256)];
        true
    }

    fn list_mut(&mut self, code: u16) -> Option<&mut List> {
        if code == LATER {
            Some(&mut self.later)
        } else {
            self.prio.get_mut(usize::from(code))
        }
    }

    fn list(&self, q: QueueId) -> Option<&List> {
        match q {
            QueueId::Prio(p) => self.prio.get(usize::from(p)),
            QueueId::Later => Some(&self.later),
        }
    }

    /// The queue for priority `pri`, clamped to the last one (an event assigned before `event_base_priority_init`
    /// shrank the queues keeps a usable priority).
    pub fn prio_queue(&self, pri: u8) -> QueueId {
        QueueId::Prio(pri.min((self.prio.len() - 1) as u8))
    }

    /// Appends `ev` (not on any queue) to queue `q` with `ncalls` due calls.
    pub fn push_back(&mut self, q: QueueId, ev: EvPtr, ncalls: i16) {
        let code = q.code();
        let Some(l) = self.list_mut(code) else { return };
        let tail = l.tail;
        match tail {
            Some(t) => t.set_active_next(Some(ev)),
            None => l.head = Some(ev),
        }
        l.tail = Some(ev);
        l.len += 1;
        ev.set_active_prev(tail);
        ev.set_active_next(None);
        ev.set_active_queue(code);
        ev.set_active_ncalls(ncalls);
    }

    /// Unlinks `ev` (queued: the caller checked its flags) and returns its due calls; None (and nothing changes)
    /// if its links do not agree with the queue it names.
    pub fn remove(&mut self, ev: EvPtr) -> Option<i16> {
        let code = ev.active_queue();
        let l = self.list_mut(code)?;
        let (prev, next) = (ev.active_prev(), ev.active_next());
        let prev_ok = match prev {
            Some(p) => p.active_next() == Some(ev),
            None => l.head == Some(ev),
        };
        let next_ok = match next {
            Some(n) => n.active_prev() == Some(ev),
            None => l.tail == Some(ev),
        };
        if !prev_ok || !next_ok {
            return None;
        }
        match prev {
            Some(p) => p.set_active_next(next),
            None => l.head = next,
        }
        match next {
            Some(n) => n.set_active_prev(prev),
            None => l.tail = prev,
        }
        l.len -= 1;
        Some(ev.active_ncalls())
    }

    /// Unlinks `ev`, which must be the head of `q` (the loop's common case: no neighbour checks needed); returns its
    /// due calls, or None (nothing changed) if it is not the head.
    pub fn remove_head(&mut self, q: QueueId, ev: EvPtr) -> Option<i16> {
        let l = self.list_mut(q.code())?;
        if l.head != Some(ev) {
            return None;
        }
        let next = ev.active_next();
        l.head = next;
        match next {
            Some(n) => n.set_active_prev(None),
            None => l.tail = None,
        }
        l.len -= 1;
        Some(ev.active_ncalls())
    }

    /// Removes and returns the head of `q` with its due calls.
    pub fn pop_front(&mut self, q: QueueId) -> Option<(EvPtr, i16)> {
        let ev = self.list(q)?.head?;
        let n = self.remove(ev)?;
        Some((ev, n))
    }

    /// The head of `q` with its due calls.
    pub fn front_with_ncalls(&self, q: QueueId) -> Option<(EvPtr, i16)> {
        let ev = self.list(q)?.head?;
        Some((ev, ev.active_ncalls()))
    }

    /// Length of `q`.
    pub fn len(&self, q: QueueId) -> usize {
        self.list(q).map_or(0, |l| l.len)
    }

    /// True when `q` is empty.
    pub fn is_empty(&self, q: QueueId) -> bool {
        self.len(q) == 0
    }

    /// The events of `q`, front to back.
    pub fn iter(&self, q: QueueId) -> impl Iterator<Item = EvPtr> + '_ {
        let mut cur = self.list(q).and_then(|l| l.head);
        std::iter::from_fn(move || {
            let e = cur?;
            cur = e.active_next();
            Some(e)
        })
    }

    /// Checks links, lengths and the queue each event names.
    pub fn check(&self) -> Result<(), String> {
        let mut queues: Vec<QueueId> = (0..self.prio.len()).map(|p| QueueId::Prio(p as u8)).collect();
        queues.push(QueueId::Later);
        for q in queues {
            let Some(l) = self.list(q) else { continue };
            let (mut cur, mut prev, mut n) = (l.head, None, 0usize);
            while let Some(e) = cur {
                if e.active_prev() != prev || e.active_queue() != q.code() {
                    return Err(format!("active queue {q:?}: broken link at event {:p}", e.as_ptr()));
                }
                prev = Some(e);
                cur = e.active_next();
                n += 1;
                if n > l.len {
                    return Err(format!("active queue {q:?}: more events linked than its length {}", l.len));
                }
            }
            if n != l.len || l.tail != prev {
                return Err(format!("active queue {q:?}: length {} but {n} linked", l.len));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &ActiveQueues, id: QueueId, evs: &[EvPtr]) -> Vec<usize> {
        q.iter(id).map(|e| evs.iter().position(|&x| x == e).expect("known event")).collect()
    }

    #[test]
    fn fifo_per_queue_with_removal_from_anywhere() {
        let evs: Vec<EvPtr> = (0..6).map(|_| EvPtr::leaked_for_test()).collect();
        let mut q = ActiveQueues::new(2);
        for (i, &e) in evs.iter().enumerate() {
            let id = if i % 3 == 2 { QueueId::Later } else { QueueId::Prio((i % 2) as u8) };
            q.push_back(id, e, i as i16);
        }
        assert_eq!(order(&q, QueueId::Prio(0), &evs), vec![0, 4]);
        assert_eq!(order(&q, QueueId::Prio(1), &evs), vec![1, 3]);
        assert_eq!(order(&q, QueueId::Later, &evs), vec![2, 5]);
        assert_eq!(q.remove(evs[3]), Some(3));
        assert_eq!(q.remove(evs[0]), Some(0));
        assert_eq!(q.remove(evs[5]), Some(5));
        q.check().expect("consistent");
        assert_eq!(q.remove(evs[0]), None, "links no longer agree: refused, nothing changed");
        assert_eq!(q.pop_front(QueueId::Prio(0)), Some((evs[4], 4)));
        assert_eq!(q.front_with_ncalls(QueueId::Prio(1)), Some((evs[1], 1)));
        assert_eq!(q.len(QueueId::Later), 1);
        q.push_back(QueueId::Prio(0), evs[5], 7);
        assert_eq!(q.pop_front(QueueId::Prio(0)), Some((evs[5], 7)));
        assert!(q.is_empty(QueueId::Prio(0)));
        assert!(!q.set_npriorities(3), "priority queues not empty");
        q.check().expect("consistent");
    }
}
