//! Timers: a hierarchical timing wheel with 16 µs resolution and O(1) add and cancel.
//!
//! Heads up: read Varghese & Lauck, "Hashed and Hierarchical Timing Wheels" (SOSP 1987, scheme 7), and IX (OSDI
//! 2014) §4.2: most network timers (TCP retransmission, delayed ACK) are cancelled before they fire, so add and
//! cancel must be O(1) and the cost of firing may be amortised.
//!
//! Layout. Time is counted in ticks of [`TICK`] (16 µs). Four levels of 256 slots each: a level-`l` slot spans
//! 256^`l` ticks, so the wheel spans 2^32 ticks (≈ 19 h, [`RANGE`]). A timer is placed relative to the wheel's
//! current tick `cur` at the level of the most significant base-256 digit in which its tick differs from `cur`
//! (level 0 if equal), in the slot named by its own digit there. Hence every timer on a lower level expires before
//! every timer on a higher one, and the earliest slot is found with a few bitmap scans. Deadlines that differ from
//! `cur` above bit 32 (beyond the range) wait in one overflow list, which is re-inserted when `cur` reaches the next
//! 2^32-tick boundary. When `cur` reaches the start of an occupied higher-level slot, that slot is cascaded: its
//! timers are re-inserted, necessarily lower. A timer less than [`RANGE`] ahead is thus placed at most five times
//! before it fires (a farther one, once more per 2^32-tick boundary crossed).
//!
//! Timers live in a slab allocated once ([`TimerWheel::with_capacity`]) and are chained into per-slot
//! doubly-linked lists through `u32` indices, so add and cancel never allocate. A [`TimerId`] carries the slot's
//! generation: a stale id (its timer fired or was cancelled, the slot maybe reused) is recognised and ignored.
//!
//! Firing is exact: [`TimerWheel::advance`] fires every timer whose deadline is `<= now` and no other, even if the
//! clock steps back between calls. Inside one tick the wheel compares full microsecond deadlines, so ticks cost
//! precision only in [`TimerWheel::next_deadline`], which may answer early. Skipping idle time costs nothing per
//! empty tick: `advance` jumps from occupied slot to occupied slot.
use core::cell::Cell;
use core::fmt;
use core::num::NonZeroU32;

use crate::time::{Duration, Instant};

const TICK_SHIFT: u32 = 4;
const TICK_MICROS: u64 = 1 << TICK_SHIFT;
/// The wheel's resolution: the span of one lowest-level slot (16 µs, the paper's finest timeout).
pub const TICK: Duration = Duration::from_micros(TICK_MICROS);

const LEVEL_BITS: u32 = 8;
const SLOTS: usize = 1 << LEVEL_BITS;
const LEVELS: usize = 4;
const WHEEL_BITS: u32 = LEVEL_BITS * LEVELS as u32;
/// Span of the wheel proper (2^32 ticks, ≈ 19 h). Later deadlines are still exact, they just wait in an overflow
/// list that is re-examined once per span.
pub const RANGE: Duration = Duration::from_micros(TICK_MICROS << WHEEL_BITS);

/// List ids: `level * SLOTS + slot` for the wheel, then the overflow list, then the ready list (collected by
/// `advance`/`pop_expired`, not yet handed out).
const OVERFLOW: usize = LEVELS * SLOTS;
const READY: usize = OVERFLOW + 1;
const NUM_LISTS: usize = READY + 1;
const NIL: u32 = u32::MAX;
/// `Node::list` of a slab entry that holds no timer.
const FREE: u16 = u16::MAX;
const WORDS: usize = SLOTS / 64;

/// The most timers a wheel can hold (indices are `u32`, one value is reserved).
pub const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;

/// Handle to a pending timer: a slab index plus the generation of that slab entry.
///
/// `Option<TimerId>` is as small as `TimerId` (8 bytes), so a connection can keep one per timer cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: NonZeroU32,
}

impl TimerId {
    /// The slab index (for logs and stats; two live timers never share one).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// [`TimerWheel::add`] failed: every slab entry holds a timer. Carries the value back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timer wheel full")
    }
}

#[derive(Debug)]
struct Node<T> {
    /// Deadline in microseconds since the epoch.
    deadline: u64,
    prev: u32,
    next: u32,
    generation: NonZeroU32,
    /// The list the node is on, or `FREE`.
    list: u16,
    value: Option<T>,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL };
}

/// A hierarchical timing wheel holding up to a fixed number of timers, each carrying a `T`.
///
/// ```
/// use dataplane::time::{Duration, Instant};
/// use dataplane::timer::TimerWheel;
///
/// let mut wheel = TimerWheel::with_capacity(16);
/// let t0 = Instant::from_millis(1);
/// let rto = wheel.add(t0 + Duration::from_millis(200), "rto").unwrap();
/// let _ack = wheel.add(t0 + Duration::from_micros(40), "delayed ack").unwrap();
/// assert!(wheel.cancel(rto));
/// assert!(!wheel.cancel(rto)); // stale: a no-op
///
/// let mut fired = Vec::new();
/// wheel.advance(t0 + Duration::from_micros(39), |_, v| fired.push(v));
/// assert!(fired.is_empty());
/// wheel.advance(t0 + Duration::from_micros(40), |_, v| fired.push(v));
/// assert_eq!(fired, ["delayed ack"]);
/// assert!(wheel.is_empty());
/// ```
pub struct TimerWheel<T> {
    nodes: Vec<Node<T>>,
    capacity: u32,
    free_head: u32,
    len: u32,
    /// The wheel's current tick: every timer on the wheel has a tick `>= current`, except overdue ones added
    /// later, which are placed as if due at `current`.
    current: u64,
    lists: [List; NUM_LISTS],
    /// One bit per non-empty slot, per level.
    occupied: [[u64; WORDS]; LEVELS],
    /// Per level-0 slot, a lower bound of its deadlines (exact unless its earliest timer was cancelled).
    level0_min: [u64; SLOTS],
    /// Lower bound of the deadlines on the ready list.
    ready_min: u64,
    /// Lower bound of the deadlines on the overflow list.
    overflow_min: u64,
    /// The latest `now` (µs) whose due timers went to the ready list since it was last empty.
    ready_upto: u64,
    /// `next_expiration`'s answer while `current`, the occupied bitmaps and the overflow list stay as they were
    /// (`advance` and `next_deadline` both ask in a cycle; the answer holds until a slot fills or empties or the
    /// clock crosses a tick): `None` when it must be recomputed.
    next_cache: Cell<Option<Option<(usize, u64)>>>,
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("current_tick", &self.current)
            .finish_non_exhaustive()
    }
}

impl<T> TimerWheel<T> {
    /// A wheel for at most `capacity` timers (clamped to [`MAX_CAPACITY`]), its clock at the epoch. The slab is
    /// allocated here, once; nothing else allocates.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_at(capacity, Instant::from_micros(0))
    }

    /// Like [`with_capacity`](Self::with_capacity), with the wheel's clock starting at `now` (saves re-inserting
    /// timers added before the first [`advance`](Self::advance) when the epoch is far back, e.g. boot time).
    pub fn with_capacity_at(capacity: usize, now: Instant) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        TimerWheel {
            nodes: Vec::with_capacity(capacity),
            capacity: capacity as u32,
            free_head: NIL,
            len: 0,
            current: now.total_micros() >> TICK_SHIFT,
            lists: [List::EMPTY; NUM_LISTS],
            occupied: [[0; WORDS]; LEVELS],
            level0_min: [u64::MAX; SLOTS],
            ready_min: u64::MAX,
            overflow_min: u64::MAX,
            ready_upto: 0,
            next_cache: Cell::new(None),
        }
    }

    /// Pending timers (added, neither fired nor cancelled).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most timers the wheel holds.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Arms a timer that fires at the first [`advance`](Self::advance) with `now >= deadline`; a deadline already
    /// past fires at the next one. O(1). Fails, giving `value` back, when `capacity` timers are pending.
    pub fn add(&mut self, deadline: Instant, value: T) -> Result<TimerId, Full<T>> {
        let index = match self.alloc() {
            Some(index) => index,
            None => return Err(Full(value)),
        };
        let node = &mut self.nodes[index as usize];
        node.deadline = deadline.total_micros();
        node.value = Some(value);
        let id = TimerId { index, generation: node.generation };
        self.place(index);
        self.len += 1;
        Ok(id)
    }

    /// Cancels a pending timer. O(1). A stale id (already fired or cancelled) is a no-op returning `false`; it
    /// never touches another timer that reuses the slab entry.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.remove(id).is_some()
    }

    /// Cancels a pending timer and returns its value; `None` (and no effect) for a stale id. O(1).
    pub fn remove(&mut self, id: TimerId) -> Option<T> {
        let index = self.live(id)?;
        self.unlink(index);
        self.free(index)
    }

    /// Moves a pending timer to a new deadline, keeping its id. O(1). `false` (and no effect) for a stale id.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant) -> bool {
        let Some(index) = self.live(id) else { return false };
        self.unlink(index);
        self.nodes[index as usize].deadline = deadline.total_micros();
        self.place(index);
        true
    }

    /// Whether `id` names a pending timer.
    pub fn contains(&self, id: TimerId) -> bool {
        self.live(id).is_some()
    }

    /// The deadline of a pending timer.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        let index = self.live(id)?;
        Some(Instant::from_micros(self.nodes[index as usize].deadline))
    }

    /// The value of a pending timer.
    pub fn get(&self, id: TimerId) -> Option<&T> {
        let index = self.live(id)?;
        self.nodes[index as usize].value.as_ref()
    }

    /// The value of a pending timer, mutably.
    pub fn get_mut(&mut self, id: TimerId) -> Option<&mut T> {
        let index = self.live(id)?;
        self.nodes[index as usize].value.as_mut()
    }

    /// Fires every pending timer whose deadline is `<= now`, calling `fire` with its id (now stale) and value, in
    /// order of their 16 µs ticks (no order within a tick; overdue timers added late count as due at the wheel's
    /// current tick). Returns how many fired. Cost: O(fired + cascaded + occupied slots passed), never O(ticks).
    ///
    /// `fire` cannot touch the wheel; to re-arm timers from the handler, loop on
    /// [`pop_expired`](Self::pop_expired) instead.
    pub fn advance(&mut self, now: Instant, mut fire: impl FnMut(TimerId, T)) -> usize {
        self.unready_if_behind(now);
        self.collect(now);
        let mut fired = 0;
        while let Some((id, value)) = self.pop_ready() {
            fire(id, value);
            fired += 1;
        }
        fired
    }

    /// Removes and returns one pending timer whose deadline is `<= now`, or `None` when there is none: the
    /// one-at-a-time form of [`advance`](Self::advance), same order, letting the caller add, cancel or reschedule
    /// between calls. A timer added meanwhile with a deadline `<= now` is returned by the same loop, so a handler
    /// that always re-arms in the past never ends it.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(TimerId, T)> {
        self.unready_if_behind(now);
        if self.lists[READY].head == NIL {
            self.collect(now);
        }
        self.pop_ready()
    }

    /// When the next timer is due, for the event loop's sleep: `None` if no timer is pending, else an instant never
    /// later than the earliest pending deadline (an overdue timer gives a past instant: do not sleep).
    ///
    /// It can be earlier than that deadline: when the earliest timer sits on a higher level, the answer is the
    /// start of its slot (up to 4 ms, 1 s or 4.5 min early for levels 1-3), and a cancelled timer may leave a
    /// stale, earlier bound on its level-0 slot or on the overflow list. Waking early is harmless: the
    /// `advance` at that instant cascades the slot, and the next call answers more precisely. O(1) (a few bitmap
    /// word scans).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let mut earliest = if self.lists[READY].head != NIL { self.ready_min } else { u64::MAX };
        if let Some((list, tick)) = self.next_expiration() {
            let bound = match list {
                _ if list < SLOTS => self.level0_min[list],
                OVERFLOW => tick.saturating_mul(TICK_MICROS).max(self.overflow_min),
                _ => tick.saturating_mul(TICK_MICROS),
            };
            earliest = earliest.min(bound);
        }
        Some(Instant::from_micros(earliest))
    }

    /// The slab index of a pending timer named by `id`.
    fn live(&self, id: TimerId) -> Option<u32> {
        let node = self.nodes.get(id.index as usize)?;
        (node.generation == id.generation && node.list != FREE).then_some(id.index)
    }

    fn alloc(&mut self) -> Option<u32> {
        if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.nodes[index as usize].next;
            return Some(index);
        }
        if self.nodes.len() >= self.capacity as usize {
            return None;
        }
        // Within the capacity reserved at construction: no reallocation.
        self.nodes.push(Node {
            deadline: 0,
            prev: NIL,
            next: NIL,
            generation: NonZeroU32::MIN,
            list: FREE,
            value: None,
        });
        Some(self.nodes.len() as u32 - 1)
    }

    /// Returns an unlinked node to the free list, bumping its generation so outstanding ids go stale.
    fn free(&mut self, index: u32) -> Option<T> {
        let free_head = self.free_head;
        let node = &mut self.nodes[index as usize];
        node.generation = node.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        node.list = FREE;
        node.prev = NIL;
        node.next = free_head;
        self.free_head = index;
        self.len -= 1;
        node.value.take()
    }

    /// Puts an unlinked node on the list its deadline calls for, relative to `current`.
    fn place(&mut self, index: u32) {
        let deadline = self.nodes[index as usize].deadline;
        let tick = (deadline >> TICK_SHIFT).max(self.current);
        let diff = tick ^ self.current;
        let list = if diff >> WHEEL_BITS != 0 {
            self.overflow_min = self.overflow_min.min(deadline);
            OVERFLOW
        } else {
            let level = if diff == 0 { 0 } else { (63 - diff.leading_zeros()) / LEVEL_BITS };
            let slot = (tick >> (level * LEVEL_BITS)) as usize & (SLOTS - 1);
            if level == 0 {
                self.level0_min[slot] = self.level0_min[slot].min(deadline);
            }
            level as usize * SLOTS + slot
        };
        self.push_back(list, index);
    }

    fn push_back(&mut self, list: usize, index: u32) {
        let tail = self.lists[list].tail;
        {
            let node = &mut self.nodes[index as usize];
            node.list = list as u16;
            node.prev = tail;
            node.next = NIL;
        }
        if tail == NIL {
            self.next_cache.set(None);
            self.lists[list].head = index;
            if list < OVERFLOW {
                self.occupied[list / SLOTS][(list % SLOTS) / 64] |= 1 << (list % 64);
            }
        } else {
            self.nodes[tail as usize].next = index;
        }
        self.lists[list].tail = index;
    }

    /// Takes a node off its list (it must be on one).
    fn unlink(&mut self, index: u32) {
        let (list, prev, next) = {
            let node = &self.nodes[index as usize];
            (node.list as usize, node.prev, node.next)
        };
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        if self.lists[list].head == NIL {
            self.emptied(list);
        }
    }

    /// Bookkeeping for a list that just became empty.
    fn emptied(&mut self, list: usize) {
        self.next_cache.set(None);
        if list < OVERFLOW {
            self.occupied[list / SLOTS][(list % SLOTS) / 64] &= !(1 << (list % 64));
            if list < SLOTS {
                self.level0_min[list] = u64::MAX;
            }
        } else if list == OVERFLOW {
            self.overflow_min = u64::MAX;
        } else {
            self.ready_min = u64::MAX;
        }
    }

    /// Empties a list, returning its former head; the nodes keep their `next` links for the caller to walk.
    fn detach(&mut self, list: usize) -> u32 {
        let head = self.lists[list].head;
        self.lists[list] = List::EMPTY;
        self.emptied(list);
        head
    }

    fn push_ready(&mut self, index: u32) {
        self.ready_min = self.ready_min.min(self.nodes[index as usize].deadline);
        self.push_back(READY, index);
    }

    fn pop_ready(&mut self) -> Option<(TimerId, T)> {
        let index = self.lists[READY].head;
        if index == NIL {
            return None;
        }
        self.unlink(index);
        let generation = self.nodes[index as usize].generation;
        let value = self.free(index)?;
        Some((TimerId { index, generation }, value))
    }

    /// The earliest non-empty list of the wheel and the tick at which it is due: for a level-0 slot, its tick; for
    /// a higher slot, the first tick it spans; for the overflow list, the next 2^32-tick boundary.
    fn next_expiration(&self) -> Option<(usize, u64)> {
        if let Some(known) = self.next_cache.get() {
            return known;
        }
        let found = self.scan_next_expiration();
        self.next_cache.set(Some(found));
        found
    }

    /// [`next_expiration`](Self::next_expiration), computed from the bitmaps.
    fn scan_next_expiration(&self) -> Option<(usize, u64)> {
        for level in 0..LEVELS {
            let shift = level as u32 * LEVEL_BITS;
            let digit = (self.current >> shift) as usize & (SLOTS - 1);
            // Level 0 holds the current tick itself; a higher level never holds the current digit (such a timer
            // agrees with `current` down to that level, so it sits lower).
            let from = if level == 0 { digit } else { digit + 1 };
            if let Some(slot) = first_set_from(&self.occupied[level], from) {
                let base = self.current >> (shift + LEVEL_BITS) << (shift + LEVEL_BITS);
                return Some((level * SLOTS + slot, base | (slot as u64) << shift));
            }
        }
        if self.lists[OVERFLOW].head != NIL {
            return Some((OVERFLOW, ((self.current >> WHEEL_BITS) + 1) << WHEEL_BITS));
        }
        None
    }

    /// If the clock stepped back since timers were found due, puts them back on the wheel: some may not be due
    /// at `now`. (Rare: only after a `pop_expired` loop left early; they all land in the current tick's slot.)
    fn unready_if_behind(&mut self, now: Instant) {
        if now.total_micros() >= self.ready_upto || self.lists[READY].head == NIL {
            return;
        }
        let mut index = self.detach(READY);
        while index != NIL {
            let next = self.nodes[index as usize].next;
            self.place(index);
            index = next;
        }
    }

    /// Moves every timer due at `now` to the ready list, cascading higher slots as `current` reaches them, and
    /// leaves `current` at `now`'s tick (or where it was, if the clock stepped back).
    fn collect(&mut self, now: Instant) {
        let now_us = now.total_micros();
        self.ready_upto = if self.lists[READY].head == NIL { now_us } else { self.ready_upto.max(now_us) };
        let target = (now_us >> TICK_SHIFT).max(self.current);
        while let Some((list, tick)) = self.next_expiration() {
            if tick > target {
                break;
            }
            if list < SLOTS {
                self.set_current(tick);
                if tick < target {
                    let mut index = self.detach(list);
                    while index != NIL {
                        let next = self.nodes[index as usize].next;
                        self.push_ready(index);
                        index = next;
                    }
                } else {
                    // The current tick: only part of it may be due.
                    self.collect_partial(list, now_us);
                    break;
                }
            } else {
                let tick = if list == OVERFLOW {
                    // The wheel proper is empty: jump straight to the earliest overflow timer (or to `now`), rather
                    // than crossing every 2^32-tick boundary on the way. (The bound may be stale-early after a
                    // cancel; then the re-inserted timers refresh it and the next round jumps the rest of the way.)
                    (self.overflow_min >> TICK_SHIFT).min(target).max(tick)
                } else {
                    tick
                };
                self.set_current(tick);
                let mut index = self.detach(list);
                while index != NIL {
                    let next = self.nodes[index as usize].next;
                    self.place(index);
                    index = next;
                }
            }
        }
        self.set_current(self.current.max(target));
    }

    /// Moves the wheel's current tick (`next_expiration` depends on it).
    fn set_current(&mut self, tick: u64) {
        if tick != self.current {
            self.current = tick;
            self.next_cache.set(None);
        }
    }

    /// Moves the due timers of the level-0 slot of the current tick to the ready list, and recomputes the slot's
    /// deadline bound from those left.
    fn collect_partial(&mut self, list: usize, now_us: u64) {
        let mut earliest_left = u64::MAX;
        let mut index = self.lists[list].head;
        while index != NIL {
            let (deadline, next) = {
                let node = &self.nodes[index as usize];
                (node.deadline, node.next)
            };
            if deadline <= now_us {
                self.unlink(index);
                self.push_ready(index);
            } else {
                earliest_left = earliest_left.min(deadline);
            }
            index = next;
        }
        if self.lists[list].head != NIL {
            self.level0_min[list] = earliest_left;
        }
    }
}

/// The first set bit at or after `from` in a 256-bit map.
fn first_set_from(words: &[u64; WORDS], from: usize) -> Option<usize> {
    let mut word = from / 64;
    let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
    while word < WORDS {
        let bits = words[word] & mask;
        if bits != 0 {
            return Some(word * 64 + bits.trailing_zeros() as usize);
        }
        word += 1;
        mask = u64::MAX;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    /// Advances and returns the values fired, sorted.
    #[track_caller]
    fn fire(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        let n = wheel.advance(at(now), |_, v| fired.push(v));
        assert_eq!(n, fired.len());
        fired.sort_unstable();
        fired
    }

    #[test]
    fn fires_exactly_at_deadline_never_early() {
        let mut wheel = TimerWheel::with_capacity(8);
        wheel.add(at(1000), 1).unwrap();
        wheel.add(at(1001), 2).unwrap();
        wheel.add(at(1015), 3).unwrap();
        wheel.add(at(1016), 4).unwrap();
        assert_eq!(fire(&mut wheel, 999), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 1000), [1]);
        assert_eq!(fire(&mut wheel, 1000), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 1014), [2]);
        assert_eq!(fire(&mut wheel, 1015), [3]);
        assert_eq!(wheel.next_deadline(), Some(at(1016)));
        assert_eq!(fire(&mut wheel, 1_000_000), [4]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn past_deadline_fires_at_next_advance() {
        let mut wheel = TimerWheel::with_capacity(4);
        assert_eq!(fire(&mut wheel, 5_000_000), Vec::<u32>::new());
        wheel.add(at(10), 7).unwrap();
        wheel.add(at(5_000_000), 8).unwrap();
        assert_eq!(wheel.next_deadline(), Some(at(10)));
        assert_eq!(fire(&mut wheel, 5_000_000), [7, 8]);
    }

    #[test]
    fn clock_stepping_back_still_fires_only_due_timers() {
        let mut wheel = TimerWheel::with_capacity(4);
        fire(&mut wheel, 1_000_000);
        wheel.add(at(500), 1).unwrap();
        wheel.add(at(900_000), 2).unwrap();
        wheel.add(at(1_000_005), 3).unwrap();
        assert_eq!(fire(&mut wheel, 600), [1]);
        assert_eq!(fire(&mut wheel, 999_999), [2]);
        assert_eq!(fire(&mut wheel, 1_000_004), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 1_000_005), [3]);
    }

    /// Found by the model test: timers collected by a `pop_expired` loop that stopped early, then the clock
    /// stepping back.
    #[test]
    fn clock_stepping_back_after_a_partial_pop_loop() {
        let mut wheel = TimerWheel::with_capacity(4);
        wheel.add(at(0), 1).unwrap();
        wheel.add(at(1), 2).unwrap();
        assert_eq!(wheel.pop_expired(at(1)).map(|(_, v)| v), Some(1));
        assert_eq!(fire(&mut wheel, 0), Vec::<u32>::new());
        assert_eq!(wheel.next_deadline(), Some(at(1)));
        assert_eq!(fire(&mut wheel, 1), [2]);
    }

    #[test]
    fn stale_id_cancel_is_a_noop_even_after_reuse() {
        let mut wheel = TimerWheel::with_capacity(1);
        let a = wheel.add(at(100), 1).unwrap();
        assert!(wheel.cancel(a));
        let b = wheel.add(at(200), 2).unwrap();
        assert_eq!(a.index(), b.index());
        assert!(!wheel.cancel(a));
        assert!(!wheel.reschedule(a, at(0)));
        assert_eq!(wheel.get(a), None);
        assert!(wheel.contains(b));
        assert_eq!(wheel.add(at(1), 3), Err(Full(3)));
        assert_eq!(fire(&mut wheel, 200), [2]);
        assert!(!wheel.cancel(b), "fired ids are stale");
        assert!(wheel.add(at(1), 3).is_ok());
    }

    #[test]
    fn option_timer_id_is_eight_bytes() {
        assert_eq!(core::mem::size_of::<Option<TimerId>>(), 8);
    }

    #[test]
    fn reschedule_keeps_the_id() {
        let mut wheel = TimerWheel::with_capacity(2);
        let id = wheel.add(at(10_000_000), 1).unwrap();
        assert!(wheel.reschedule(id, at(50)));
        assert_eq!(wheel.deadline(id), Some(at(50)));
        *wheel.get_mut(id).unwrap() = 9;
        assert_eq!(fire(&mut wheel, 49), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, 50), [9]);
    }

    #[test]
    fn pop_expired_lets_the_handler_rearm() {
        let mut wheel = TimerWheel::with_capacity(2);
        wheel.add(at(100), 0).unwrap();
        let mut now = 0;
        let mut fired = Vec::new();
        while fired.len() < 5 {
            now += 100;
            while let Some((_, n)) = wheel.pop_expired(at(now)) {
                fired.push((now, n));
                wheel.add(at(now + 100), n + 1).unwrap();
            }
        }
        assert_eq!(fired, [(100, 0), (200, 1), (300, 2), (400, 3), (500, 4)]);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn cascades_through_every_level_and_overflow() {
        let mut wheel = TimerWheel::with_capacity(16);
        let deadlines = [
            15,                      // level 0
            16 * 300 + 3,            // level 1
            16 * 70_000 + 5,         // level 2
            16 * 20_000_000 + 1,     // level 3
            16 * (1u64 << 33) + 9,   // overflow
            u64::MAX,                // the end of time
            16 * ((1u64 << 32) - 1), // last tick before the first overflow boundary
            16 * (1u64 << 32),       // the boundary itself
        ];
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.add(at(d), i as u32).unwrap();
        }
        let mut order = deadlines.iter().copied().zip(0u32..).collect::<Vec<_>>();
        order.sort_unstable();
        for &(d, i) in &order {
            assert!(wheel.next_deadline().unwrap() <= at(d));
            assert_eq!(fire(&mut wheel, d - 1), Vec::<u32>::new(), "early: {d}");
            assert_eq!(fire(&mut wheel, d), [i], "deadline {d}");
        }
        assert!(wheel.is_empty());
    }

    /// Sleeping on `next_deadline` reaches each timer in a bounded number of wake-ups.
    #[test]
    fn next_deadline_wakeups_are_bounded() {
        let mut wheel = TimerWheel::with_capacity(64);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            wheel.add(at(x % (1 << 40)), i).unwrap();
        }
        let (mut now, mut wakeups, mut fired) = (0, 0, 0);
        while let Some(next) = wheel.next_deadline() {
            now = now.max(next.total_micros());
            wakeups += 1;
            fired += wheel.advance(at(now), |_, _| {});
        }
        assert_eq!(fired, 64);
        // At most one wake-up per level and the overflow list per timer (the firing one included).
        assert!(wakeups <= 64 * 5, "{wakeups} wake-ups");
    }

    /// Jumping across the whole u64 range completes: the wheel never walks empty ticks or boundaries one by one.
    #[test]
    fn huge_jumps_are_cheap() {
        let mut wheel = TimerWheel::with_capacity(4);
        wheel.add(at(u64::MAX / 2), 1).unwrap();
        wheel.add(at(u64::MAX - 1), 2).unwrap();
        assert_eq!(fire(&mut wheel, u64::MAX / 3), Vec::<u32>::new());
        assert_eq!(fire(&mut wheel, u64::MAX), [1, 2]);
        wheel.add(at(u64::MAX), 3).unwrap();
        assert_eq!(fire(&mut wheel, u64::MAX), [3]);
    }

    #[test]
    fn a_million_timers_ninety_nine_percent_cancelled() {
        const N: u32 = 1_000_000;
        let mut wheel = TimerWheel::with_capacity(N as usize);
        let mut deadlines = Vec::with_capacity(N as usize);
        let mut ids = Vec::with_capacity(N as usize);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 0..10 s, like RTO and delayed-ACK timers.
            let d = x % 10_000_000;
            deadlines.push(d);
            ids.push(wheel.add(at(d), i).unwrap());
        }
        assert_eq!(wheel.len(), N as usize);
        for (i, &id) in ids.iter().enumerate() {
            if i % 100 != 0 {
                assert!(wheel.cancel(id));
            }
        }
        assert_eq!(wheel.len(), N as usize / 100);
        let mut fired = 0;
        let mut prev = 0;
        for now in (0..=10_000_000).step_by(997) {
            wheel.advance(at(now), |_, i| {
                let d = deadlines[i as usize];
                assert!(i % 100 == 0 && d <= now && (d > prev || prev == 0), "timer {i} at {d} fired at {now}");
                fired += 1;
            });
            prev = now;
        }
        fire(&mut wheel, 10_000_000);
        assert_eq!(fired, N / 100);
        assert!(wheel.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Add a timer at `now + delta` (saturating either way).
        Add(i128),
        /// Cancel the n-th id ever issued (maybe stale).
        Cancel(usize),
        /// Reschedule the n-th id ever issued (maybe stale) to `now + delta`.
        Reschedule(usize, i128),
        /// Move the clock by `delta` (possibly back) and advance.
        Advance(i128),
        /// Move the clock and pop at most n timers one at a time.
        Pop(i128, usize),
    }

    fn delta() -> impl Strategy<Value = i128> {
        prop_oneof![
            3 => 0i128..48,
            3 => 0i128..20_000,
            2 => 0i128..5_000_000,
            1 => 0i128..100_000_000_000,
            1 => 0i128..(1i128 << 44),
            1 => -5_000_000i128..0,
            1 => Just(i128::from(u64::MAX)),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => delta().prop_map(Op::Add),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), delta()).prop_map(|(n, d)| Op::Reschedule(n, d)),
            3 => delta().prop_map(Op::Advance),
            1 => (delta(), 0usize..4).prop_map(|(d, n)| Op::Pop(d, n)),
        ]
    }

    fn shift(now: u64, delta: i128) -> u64 {
        (i128::from(now) + delta).clamp(0, i128::from(u64::MAX)) as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Against a reference model (a map of deadlines): the same timers fire, each once, none early, none late.
        #[test]
        fn matches_reference_model(
            start in prop_oneof![Just(0u64), Just((1u64 << 36) - 2_000), 0u64..(1 << 62)],
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            const CAP: usize = 48;
            let mut wheel = TimerWheel::with_capacity(CAP);
            let mut model: BTreeMap<u32, (u64, TimerId)> = BTreeMap::new();
            let mut issued: Vec<TimerId> = Vec::new();
            let mut now = start;
            let mut next_value = 0u32;
            for op in ops {
                match op {
                    Op::Add(d) => {
                        let deadline = shift(now, d);
                        match wheel.add(at(deadline), next_value) {
                            Ok(id) => {
                                prop_assert!(model.len() < CAP);
                                model.insert(next_value, (deadline, id));
                                issued.push(id);
                            }
                            Err(Full(v)) => {
                                prop_assert_eq!(v, next_value);
                                prop_assert_eq!(model.len(), CAP);
                            }
                        }
                        next_value += 1;
                    }
                    Op::Cancel(n) if !issued.is_empty() => {
                        let id = issued[n % issued.len()];
                        let key = model.iter().find(|(_, &(_, i))| i == id).map(|(&k, _)| k);
                        prop_assert_eq!(wheel.remove(id), key);
                        if let Some(k) = key {
                            model.remove(&k);
                        }
                    }
                    Op::Reschedule(n, d) if !issued.is_empty() => {
                        let id = issued[n % issued.len()];
                        let deadline = shift(now, d);
                        let entry = model.values_mut().find(|(_, i)| *i == id);
                        prop_assert_eq!(wheel.reschedule(id, at(deadline)), entry.is_some());
                        if let Some(entry) = entry {
                            entry.0 = deadline;
                        }
                    }
                    Op::Cancel(_) | Op::Reschedule(..) => {}
                    Op::Advance(d) => {
                        now = shift(now, d);
                        let mut fired = Vec::new();
                        wheel.advance(at(now), |id, v| fired.push((v, id)));
                        fired.sort_unstable_by_key(|&(v, _)| v);
                        let due: Vec<(u32, TimerId)> =
                            model.iter().filter(|(_, &(dl, _))| dl <= now).map(|(&v, &(_, id))| (v, id)).collect();
                        prop_assert_eq!(&fired, &due, "now {}", now);
                        for (v, _) in due {
                            model.remove(&v);
                        }
                    }
                    Op::Pop(d, n) => {
                        now = shift(now, d);
                        for _ in 0..n {
                            let Some((id, v)) = wheel.pop_expired(at(now)) else {
                                prop_assert!(model.values().all(|&(dl, _)| dl > now));
                                break;
                            };
                            let entry = model.remove(&v);
                            prop_assert_eq!(entry.map(|(_, i)| i), Some(id));
                            prop_assert!(entry.is_some_and(|(dl, _)| dl <= now), "early");
                        }
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                let earliest = model.values().map(|&(dl, _)| dl).min();
                match (wheel.next_deadline(), earliest) {
                    (None, None) => {}
                    (Some(next), Some(e)) => prop_assert!(next.total_micros() <= e, "next {:?} > {}", next, e),
                    (got, want) => prop_assert!(false, "next_deadline {:?}, earliest {:?}", got, want),
                }
            }
            // Drain: everything left fires by the end of time, exactly once.
            let mut fired = HashSet::new();
            wheel.advance(at(u64::MAX), |_, v| assert!(fired.insert(v)));
            prop_assert_eq!(fired, model.keys().copied().collect::<HashSet<_>>());
            prop_assert!(wheel.is_empty());
        }
    }
}
