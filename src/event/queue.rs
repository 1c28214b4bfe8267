//! Active queues: one FIFO per priority plus the "later" queue (callbacks that become active on the next loop
//! iteration). Doubly linked lists over one slab of nodes owned here (indices, not pointers into application
//! memory), so removing an active event from the middle is O(1); each event records its slot.

use super::raw::EvPtr;

const NIL: u32 = u32::MAX;

/// Which list a node is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueId {
    /// The active queue of this priority.
    Prio(u8),
    /// The active-later queue.
    Later,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    ev: Option<EvPtr>,
    /// Signal events: how many times to call the callback.
    ncalls: i16,
    queue: QueueId,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };

/// The active queues of one base.
#[derive(Debug)]
pub struct ActiveQueues {
    nodes: Vec<Node>,
    free: Vec<u32>,
    prio: Vec<List>,
    later: List,
}

impl ActiveQueues {
    /// Queues for `npri` priorities.
    pub fn new(npri: usize) -> ActiveQueues {
        ActiveQueues { nodes: Vec::new(), free: Vec::new(), prio: vec![EMPTY; npri.max(1)], later: EMPTY }
    }

    /// Number of priorities.
    pub fn npriorities(&self) -> usize {
        self.prio.len()
    }

    /// Changes the number of priorities; only when no priority queue holds anything.
    pub fn set_npriorities(&mut self, n: usize) -> bool {
        if self.prio.iter().any(|l| l.len != 0) {
            return false;
        }
        self.prio = vec![EMPTY; n.max(1)];
        true
    }

    fn list_mut(&mut self, q: QueueId) -> &mut List {
        match q {
            QueueId::Prio(p) => &mut self.prio[p as usize],
            QueueId::Later => &mut self.later,
        }
    }

    fn list(&self, q: QueueId) -> &List {
        match q {
            QueueId::Prio(p) => &self.prio[p as usize],
            QueueId::Later => &self.later,
        }
    }

    /// The queue for priority `pri`, clamped to the last one (an event assigned before `event_base_priority_init`
    /// shrank the queues keeps a usable priority).
    pub fn prio_queue(&self, pri: u8) -> QueueId {
        QueueId::Prio(pri.min((self.prio.len() - 1) as u8))
    }

    /// Appends `ev` to queue `q`; records the slot in the event.
    pub fn push_back(&mut self, q: QueueId, ev: EvPtr, ncalls: i16) {
        let l = self.list_mut(q);
        let tail = l.tail;
        let node = Node { ev: Some(ev), ncalls, queue: q, prev: tail, next: NIL };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let l = self.list_mut(q);
        if l.head == NIL {
            l.head = slot;
        }
        l.tail = slot;
        l.len += 1;
        if let Some(n) = self.nodes.get_mut(slot as usize) {
            *n = node;
        }
        if let Some(t) = self.nodes.get_mut(tail as usize) {
            t.next = slot;
        }
        ev.set_active_slot(slot);
    }

    /// Unlinks `ev` (found through its recorded slot, checked); returns its ncalls.
    pub fn remove(&mut self, ev: EvPtr) -> Option<i16> {
        let slot = ev.active_slot();
        match self.nodes.get(slot as usize) {
            Some(n) if n.ev == Some(ev) => {}
            _ => return None,
        }
        Some(self.unlink(slot).1)
    }

    fn unlink(&mut self, slot: u32) -> (EvPtr, i16) {
        let n = self.nodes[slot as usize];
        // NIL (u32::MAX) is never a valid index, so `get_mut` doubles as the "has a neighbour" test.
        if let Some(p) = self.nodes.get_mut(n.prev as usize) {
            p.next = n.next;
        }
        if let Some(x) = self.nodes.get_mut(n.next as usize) {
            x.prev = n.prev;
        }
        let l = self.list_mut(n.queue);
        if l.head == slot {
            l.head = n.next;
        }
        if l.tail == slot {
            l.tail = n.prev;
        }
        l.len -= 1;
        self.nodes[slot as usize].ev = None;
        self.free.push(slot);
        (n.ev.expect("linked nodes hold an event"), n.ncalls)
    }

    /// Removes and returns the head of `q`.
    pub fn pop_front(&mut self, q: QueueId) -> Option<(EvPtr, i16)> {
        let head = self.list(q).head;
        if head == NIL {
            None
        } else {
            Some(self.unlink(head))
        }
    }

    /// The head of `q`.
    pub fn front(&self, q: QueueId) -> Option<EvPtr> {
        let head = self.list(q).head;
        if head == NIL {
            None
        } else {
            self.nodes[head as usize].ev
        }
    }

    /// The head of `q` with its ncalls.
    pub fn front_with_ncalls(&self, q: QueueId) -> Option<(EvPtr, i16)> {
        let head = self.list(q).head;
        if head == NIL {
            return None;
        }
        let n = &self.nodes[head as usize];
        n.ev.map(|e| (e, n.ncalls))
    }

    /// Length of `q`.
    pub fn len(&self, q: QueueId) -> usize {
        self.list(q).len
    }

    /// True when `q` is empty.
    pub fn is_empty(&self, q: QueueId) -> bool {
        self.list(q).len == 0
    }

    /// The events of `q`, front to back.
    pub fn iter(&self, q: QueueId) -> impl Iterator<Item = EvPtr> + '_ {
        let mut cur = self.list(q).head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let n = &self.nodes[cur as usize];
            cur = n.next;
            n.ev
        })
    }

    /// Sets the ncalls of `ev`'s node.
    pub fn set_ncalls(&mut self, ev: EvPtr, ncalls: i16) {
        let slot = ev.active_slot() as usize;
        if let Some(n) = self.nodes.get_mut(slot) {
            if n.ev == Some(ev) {
                n.ncalls = ncalls;
            }
        }
    }

    /// Checks links, lengths and recorded slots.
    pub fn check(&self) -> Result<(), String> {
        let mut queues: Vec<QueueId> = (0..self.prio.len()).map(|p| QueueId::Prio(p as u8)).collect();
        queues.push(QueueId::Later);
        let mut total = 0;
        for q in queues {
            let l = self.list(q);
            let (mut cur, mut prev, mut n) = (l.head, NIL, 0);
            while cur != NIL {
                let node = &self.nodes[cur as usize];
                let ev = node.ev.ok_or("active queue: linked node without event")?;
                if node.prev != prev || node.queue != q || ev.active_slot() != cur {
                    return Err(format!("active queue {q:?}: broken link at slot {cur}"));
                }
                prev = cur;
                cur = node.next;
                n += 1;
            }
            if n != l.len || l.tail != prev {
                return Err(format!("active queue {q:?}: length {} but {n} linked", l.len));
            }
            total += n;
        }
        if total + self.free.len() != self.nodes.len() {
            return Err("active queue: slab leak".into());
        }
        Ok(())
    }
}
