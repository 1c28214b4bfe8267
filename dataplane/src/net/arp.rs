//! The neighbour cache: IPv4 → MAC, with a bounded queue of frames waiting for resolution.
//!
//! Heads up: read RFC 826 (ARP) and RFC 1122 §2.3.2.2 (queue at least one packet per unresolved neighbour).
//! Fixed capacity, open addressing with a short probe window and no deletion: an entry is only ever overwritten
//! (oldest first when the window is full), so lookups need no tombstones. Stale entries keep working while a
//! refresh request is out, so a busy flow never stalls on re-resolution.
use crate::mbuf::Mbuf;
use crate::time::{Duration, Instant};
use crate::wire::{EthernetAddress, Ipv4Address};
use arrayvec::ArrayVec;

/// Entries in the cache.
pub const CAPACITY: usize = if cfg!(test) { 16 } else { 512 };
/// Frames that may wait for resolution, over all neighbours.
pub const PENDING_CAPACITY: usize = 64;
const PROBE_WINDOW: usize = 8;
/// How long a resolved entry is trusted before a refresh request goes out.
pub const REACHABLE_TIME: Duration = Duration::from_secs(60);
/// Interval between ARP requests for an unresolved neighbour.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(1000);
/// Requests sent before the frames waiting for a neighbour are dropped.
pub const MAX_TRIES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Resolved { mac: EthernetAddress, expires_at: Instant, refreshing: bool },
    Incomplete { tries: u8, next_try: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: Ipv4Address,
    state: State,
    touched: Instant,
}

/// Result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Resolved and fresh.
    Hit(EthernetAddress),
    /// Resolved but expired: use it, and send the refresh request the cache just scheduled.
    Refresh(EthernetAddress),
    /// Not resolved.
    Miss,
}

/// What `poll` asks the stack to do.
#[derive(Debug, Default)]
pub struct Due {
    /// Neighbours to send an ARP request to.
    pub requests: ArrayVec<Ipv4Address, 16>,
    /// Frames whose neighbour never answered: free them and count.
    pub expired: ArrayVec<Mbuf, PENDING_CAPACITY>,
}

/// The cache.
#[derive(Debug)]
pub struct ArpCache {
    entries: Box<[Entry]>,
    /// Frames waiting for resolution, with the time they give up (independent of the entry, which another
    /// neighbour may evict meanwhile).
    pending: ArrayVec<(Ipv4Address, Instant, Mbuf), PENDING_CAPACITY>,
}

impl Default for ArpCache {
    fn default() -> Self {
        Self::new()
    }
}

fn slot_of(ip: Ipv4Address) -> usize {
    // Fibonacci hashing of the address spreads sequential hosts over the table.
    (ip.to_u32().wrapping_mul(0x9E37_79B9) >> 16) as usize % CAPACITY
}

impl ArpCache {
    /// An empty cache.
    pub fn new() -> ArpCache {
        let empty = Entry { ip: Ipv4Address::UNSPECIFIED, state: State::Empty, touched: Instant::default() };
        ArpCache { entries: vec![empty; CAPACITY].into_boxed_slice(), pending: ArrayVec::new() }
    }

    fn find(&self, ip: Ipv4Address) -> Option<usize> {
        let start = slot_of(ip);
        (0..PROBE_WINDOW).map(|i| (start + i) % CAPACITY).find(|&s| {
            let e = &self.entries[s];
            e.state != State::Empty && e.ip == ip
        })
    }

    /// A slot for a new entry: the first empty one in the window, else the least recently touched.
    fn claim(&mut self, ip: Ipv4Address) -> usize {
        let start = slot_of(ip);
        let window = (0..PROBE_WINDOW).map(|i| (start + i) % CAPACITY);
        if let Some(s) = window.clone().find(|&s| self.entries[s].state == State::Empty) {
            return s;
        }
        window.min_by_key(|&s| self.entries[s].touched).unwrap_or(start)
    }

    /// Looks `ip` up.
    pub fn lookup(&mut self, ip: Ipv4Address, now: Instant) -> Lookup {
        let Some(s) = self.find(ip) else {
            return Lookup::Miss;
        };
        let e = &mut self.entries[s];
        e.touched = now;
        match e.state {
            State::Resolved { mac, expires_at, refreshing } if now >= expires_at && !refreshing => {
                e.state = State::Resolved { mac, expires_at, refreshing: true };
                Lookup::Refresh(mac)
            }
            State::Resolved { mac, .. } => Lookup::Hit(mac),
            _ => Lookup::Miss,
        }
    }

    /// Doubts `ip`'s entry (a transport layer saw no answer through it): the next lookup refreshes it, as if it
    /// had expired. A resolved entry only; one that is being refreshed or resolved is left alone.
    pub fn doubt(&mut self, ip: Ipv4Address, now: Instant) {
        if let Some(s) = self.find(ip) {
            if let State::Resolved { mac, expires_at, refreshing: false } = self.entries[s].state {
                self.entries[s].state = State::Resolved { mac, expires_at: expires_at.min(now), refreshing: false };
            }
        }
    }

    /// Records `ip` at `mac`. Creates an entry only when `create` (the packet was addressed to us, RFC 826's
    /// merge rule); otherwise only updates an existing one. Returns whether an entry now holds it.
    pub fn learn(&mut self, ip: Ipv4Address, mac: EthernetAddress, now: Instant, create: bool) -> bool {
        if !mac.is_unicast() || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return false;
        }
        let slot = match self.find(ip) {
            Some(s) => s,
            None if create => self.claim(ip),
            None => return false,
        };
        self.entries[slot] = Entry {
            ip,
            state: State::Resolved { mac, expires_at: now + REACHABLE_TIME, refreshing: false },
            touched: now,
        };
        true
    }

    /// Parks `frame` until `ip` resolves. Returns `Ok(true)` when a request must go out now, `Ok(false)` when
    /// one is already out, and gives the frame back when the pending queue is full.
    pub fn park(&mut self, ip: Ipv4Address, frame: Mbuf, now: Instant) -> Result<bool, Mbuf> {
        if self.pending.is_full() {
            return Err(frame);
        }
        self.pending.push((ip, now + RETRY_INTERVAL * MAX_TRIES as u64, frame));
        if let Some(s) = self.find(ip) {
            if matches!(self.entries[s].state, State::Incomplete { .. }) {
                return Ok(false);
            }
        }
        let s = self.claim(ip);
        self.entries[s] =
            Entry { ip, state: State::Incomplete { tries: 1, next_try: now + RETRY_INTERVAL }, touched: now };
        Ok(true)
    }

    /// Moves the frames waiting for `ip` into `out` (as many as fit; the rest wait for the next call).
    pub fn take_parked<const N: usize>(&mut self, ip: Ipv4Address, out: &mut ArrayVec<Mbuf, N>) {
        let mut i = 0;
        while i < self.pending.len() && !out.is_full() {
            if self.pending[i].0 == ip {
                // Order among waiting frames of one neighbour is kept: remove() shifts, swap_remove would not.
                out.push(self.pending.remove(i).2);
            } else {
                i += 1;
            }
        }
    }

    /// Whether any frame waits for `ip`.
    pub fn has_parked(&self, ip: Ipv4Address) -> bool {
        self.pending.iter().any(|(p, _, _)| *p == ip)
    }

    /// Retries due requests and gives up on frames whose neighbour never answered.
    pub fn poll(&mut self, now: Instant, due: &mut Due) {
        for e in self.entries.iter_mut() {
            if let State::Incomplete { tries, next_try } = e.state {
                if now < next_try {
                    continue;
                }
                if tries >= MAX_TRIES {
                    e.state = State::Empty;
                } else if !due.requests.is_full() {
                    e.state = State::Incomplete { tries: tries + 1, next_try: now + RETRY_INTERVAL };
                    due.requests.push(e.ip);
                }
            }
        }
        let mut i = 0;
        while i < self.pending.len() && !due.expired.is_full() {
            if self.pending[i].1 <= now {
                due.expired.push(self.pending.remove(i).2);
            } else {
                i += 1;
            }
        }
    }

    /// The earliest retry or give-up deadline, if any frame waits.
    pub fn poll_at(&self) -> Option<Instant> {
        let give_up = self.pending.iter().map(|(_, t, _)| *t).min()?;
        let retry = self
            .entries
            .iter()
            .filter_map(|e| match e.state {
                State::Incomplete { next_try, .. } => Some(next_try),
                _ => None,
            })
            .min();
        Some(retry.map_or(give_up, |r| r.min(give_up)))
    }

    /// Whether any frame waits for resolution.
    pub fn has_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The first neighbour some frame waits for whose address `shared` knows, with that address.
    pub fn parked_resolvable(&self, shared: &NeighborTable) -> Option<(Ipv4Address, EthernetAddress)> {
        self.pending.iter().find_map(|(ip, _, _)| shared.get(*ip).map(|mac| (*ip, mac)))
    }

    /// Every parked frame, for shutdown.
    pub fn drain_parked(&mut self) -> impl Iterator<Item = Mbuf> + '_ {
        self.pending.drain(..).map(|(_, _, m)| m)
    }
}

/// The neighbours learned by any queue of a port, so a queue whose ARP reply landed on another queue (the NIC
/// hashes ARP to one queue) still resolves. Read-mostly: queues consult it only on a local miss or while frames
/// wait, and write it only when they learn something new, so the lock is off the per-packet path.
#[derive(Debug, Default)]
pub struct NeighborTable {
    entries: std::sync::Mutex<Vec<(Ipv4Address, EthernetAddress)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl NeighborTable {
    /// Most neighbours kept; beyond, the oldest is forgotten (queues keep their own caches anyway).
    pub const CAPACITY: usize = 4096;

    /// Records `ip` at `mac`.
    pub fn publish(&self, ip: Ipv4Address, mac: EthernetAddress) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match e.iter_mut().find(|(i, _)| *i == ip) {
            Some(slot) if slot.1 == mac => return,
            Some(slot) => slot.1 = mac,
            None => {
                if e.len() >= Self::CAPACITY {
                    e.remove(0);
                }
                e.push((ip, mac));
            }
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// The MAC of `ip`, if any queue learned it.
    pub fn get(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().find(|(i, _)| *i == ip).map(|(_, m)| *m)
    }

    /// Changes whenever something is published.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::MbufPool;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

    #[test]
    fn learn_lookup_refresh() {
        let mut c = ArpCache::new();
        let ip = Ipv4Address([198, 18, 0, 2]);
        let t0 = Instant::from_millis(1);
        assert_eq!(c.lookup(ip, t0), Lookup::Miss);
        assert!(!c.learn(ip, MAC, t0, false), "no entry created for traffic not addressed to us");
        assert!(c.learn(ip, MAC, t0, true));
        assert_eq!(c.lookup(ip, t0), Lookup::Hit(MAC));
        let later = t0 + REACHABLE_TIME;
        assert_eq!(c.lookup(ip, later), Lookup::Refresh(MAC));
        assert_eq!(c.lookup(ip, later), Lookup::Hit(MAC), "one refresh request at a time");
        assert!(!c.learn(ip, EthernetAddress::BROADCAST, t0, true));
    }

    #[test]
    fn a_doubted_entry_is_refreshed_at_its_next_use() {
        let mut c = ArpCache::new();
        let ip = Ipv4Address([198, 18, 0, 2]);
        let t0 = Instant::from_millis(1);
        c.doubt(ip, t0); // no entry: nothing to doubt
        assert_eq!(c.lookup(ip, t0), Lookup::Miss);
        assert!(c.learn(ip, MAC, t0, true));
        c.doubt(ip, t0);
        assert_eq!(c.lookup(ip, t0), Lookup::Refresh(MAC), "refreshed long before it expires");
        c.doubt(ip, t0);
        assert_eq!(c.lookup(ip, t0), Lookup::Hit(MAC), "one refresh request at a time");
        let right = EthernetAddress([2, 0, 0, 0, 0, 10]);
        assert!(c.learn(ip, right, t0, false), "the reply updates the entry");
        assert_eq!(c.lookup(ip, t0), Lookup::Hit(right));
    }

    #[test]
    fn park_resolve_and_give_up() {
        let mut pool = MbufPool::new(8, false).unwrap();
        let mut c = ArpCache::new();
        let a = Ipv4Address([198, 18, 0, 2]);
        let b = Ipv4Address([198, 18, 0, 3]);
        let t0 = Instant::from_millis(0);
        assert_eq!(c.park(a, pool.alloc().unwrap(), t0), Ok(true));
        assert_eq!(c.park(a, pool.alloc().unwrap(), t0), Ok(false));
        assert_eq!(c.park(b, pool.alloc().unwrap(), t0), Ok(true));
        assert_eq!(c.poll_at(), Some(t0 + RETRY_INTERVAL));
        c.learn(a, MAC, t0, true);
        let mut out: ArrayVec<Mbuf, 8> = ArrayVec::new();
        c.take_parked(a, &mut out);
        assert_eq!(out.len(), 2);
        for m in out.drain(..) {
            pool.free(m);
        }
        let mut t = t0;
        let mut requests = 0;
        for _ in 0..MAX_TRIES {
            t = t + RETRY_INTERVAL;
            let mut due = Due::default();
            c.poll(t, &mut due);
            requests += due.requests.len();
            for m in due.expired {
                pool.free(m);
            }
        }
        assert_eq!(requests as u8, MAX_TRIES - 1, "first request went out at park time");
        assert!(!c.has_parked(b));
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn full_table_evicts_least_recent() {
        let mut c = ArpCache::new();
        for i in 0..(CAPACITY as u32 * 4) {
            let ip = Ipv4Address::from_u32(0xC612_0000 + i);
            c.learn(ip, MAC, Instant::from_micros(i as u64), true);
            assert_eq!(c.lookup(ip, Instant::from_micros(i as u64)), Lookup::Hit(MAC));
        }
    }
}
