//! Software flow steering between the queues of one port, for backends whose receive-side hash we cannot
//! predict (paper §4.4 asks that a connection's replies reach the queue that opened it).
//!
//! On a TAP device our own eBPF program picks the queue, so `connect` can choose a port whose replies come back
//! to the caller (`nic::tap::steer_queue_for_flow`). On AF_XDP over veth the *peer's* TX queue decides which of
//! our RX queues a frame reaches, and Linux picks it from a random per-socket hash: a SYN-ACK may arrive on any
//! queue, and an XDP redirect to another queue's socket is dropped silently (DESIGN.md §4). So the dataplanes do
//! it themselves:
//!
//! - Ephemeral ports are partitioned: port `p` belongs to queue `p % queues` ([`Steering::owner_of`]), and
//!   `TcpConnect` on queue `q` picks only ports queue `q` owns.
//! - A queue that receives a TCP segment for an ephemeral port owned by another queue, matching none of its own
//!   connections or listeners, copies the frame into the owner's inbox ([`Steering::send`]) instead of answering
//!   RST. The owner takes it at the start of its next cycle and runs it through its whole stack as if its NIC had
//!   received it: the same parsing and checks as any frame, so a peer's malformed frame is dropped there.
//! - An inbox is a bounded lock-free ring (crossbeam's `ArrayQueue`) of frame buffers allocated when the port
//!   opens: sending never allocates, never blocks, and a full inbox drops the frame (the sender
//!   counts `drop_steer_full`). Any thread may send to any queue, so it works when each queue's dataplane runs
//!   on its own thread as well as when one thread drives all of them.
//! - UDP has no ephemeral ports in the dataplane (the app binds its ports), so a bound port is registered
//!   instead ([`Steering::claim_udp`]): a queue that receives a datagram for a port it has not bound, which
//!   another queue has, hands it to that queue rather than answering "port unreachable".
//! - A queue asleep on its NIC fd also polls its inbox's eventfd, which a sender signals only while the owner
//!   says it is asleep (a store-fence-load handshake on both sides, so no wake-up is lost).
use crate::mbuf::MAX_DATA;
use crate::sys::EventFd;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// First and last ephemeral port (IANA, RFC 6335): the range `TcpConnect` picks from and steering partitions.
pub const EPHEMERAL_PORTS: (u16, u16) = (49152, 65535);

/// Frames one queue's inbox holds by default (a power of two): as many as an AF_XDP RX ring, since the inbox is
/// the other queues' way in (about 3.5 MiB of copies per queue).
pub const INBOX_FRAMES: usize = 2048;

/// Why a frame could not be handed to another queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerError {
    /// The owner's inbox is full (it is not keeping up, or not running).
    Full,
    /// The frame is longer than an mbuf holds.
    TooLong,
    /// No such queue.
    NoSuchQueue,
}

/// The inboxes of all queues of a port, shared by their dataplanes.
#[derive(Debug)]
pub struct Steering {
    queues: u32,
    inboxes: Box<[Inbox]>,
    /// Per UDP port: 0, or 1 + the queue that bound it last (ports bound on several queues stay local to each).
    udp_binders: Box<[AtomicU8]>,
}

#[derive(Debug)]
struct Inbox {
    ring: FrameRing,
    wake: EventFd,
    /// Set by the owner just before it sleeps on its fds, cleared when it wakes or by the sender that signals it
    /// (one signal per sleep).
    sleeping: AtomicBool,
    /// `wake` was signalled since the owner last cleared it (so waking needs no read when it was not).
    signaled: AtomicBool,
}

impl Steering {
    /// Inboxes of [`INBOX_FRAMES`] frames for a port of `queues` queues.
    pub fn new(queues: u32) -> io::Result<Arc<Steering>> {
        Steering::with_inbox_frames(queues, INBOX_FRAMES)
    }

    /// Inboxes of `frames` frames each (rounded up to a power of two, at least 2).
    pub fn with_inbox_frames(queues: u32, frames: usize) -> io::Result<Arc<Steering>> {
        let inboxes = (0..queues.max(1))
            .map(|_| {
                Ok(Inbox {
                    ring: FrameRing::new(frames),
                    wake: EventFd::new()?,
                    sleeping: AtomicBool::new(false),
                    signaled: AtomicBool::new(false),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let udp_binders = (0..=u16::MAX).map(|_| AtomicU8::new(0)).collect();
        Ok(Arc::new(Steering { queues: queues.max(1), inboxes: inboxes.into_boxed_slice(), udp_binders }))
    }

    /// Number of queues.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// The queue that owns local port `port`: `port % queues` for ephemeral ports, `None` for the others (a
    /// listener's port is every queue's).
    pub fn owner_of(&self, port: u16) -> Option<u32> {
        let ephemeral = (EPHEMERAL_PORTS.0..=EPHEMERAL_PORTS.1).contains(&port);
        (ephemeral && self.queues > 1).then_some(port as u32 % self.queues)
    }

    /// Records that `queue` bound UDP port `port` (queues past 254 are not recorded).
    pub fn claim_udp(&self, port: u16, queue: u32) {
        if let Ok(tag) = u8::try_from(queue + 1) {
            self.udp_binders[port as usize].store(tag, Ordering::Relaxed);
        }
    }

    /// `queue` unbound UDP port `port`: forgets it if `queue` was the one recorded.
    pub fn release_udp(&self, port: u16, queue: u32) {
        if let Ok(tag) = u8::try_from(queue + 1) {
            let _ = self.udp_binders[port as usize].compare_exchange(tag, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The queue that bound UDP port `port`, if any.
    pub fn udp_binder(&self, port: u16) -> Option<u32> {
        match self.udp_binders[port as usize].load(Ordering::Relaxed) {
            0 => None,
            tag => Some(tag as u32 - 1),
        }
    }

    /// Copies `frame` (from the Ethernet header on) into queue `to`'s inbox and wakes `to` if it sleeps.
    /// Never blocks or allocates.
    pub fn send(&self, to: u32, frame: &[u8]) -> Result<(), SteerError> {
        let inbox = self.inboxes.get(to as usize).ok_or(SteerError::NoSuchQueue)?;
        if frame.len() > MAX_DATA {
            return Err(SteerError::TooLong);
        }
        if !inbox.ring.push(frame) {
            return Err(SteerError::Full);
        }
        // Pairs with the fence in `sleep_begin`: either the owner sees the frame before it sleeps, or we see it
        // asleep and signal.
        fence(Ordering::SeqCst);
        if inbox.sleeping.swap(false, Ordering::Relaxed) {
            inbox.signaled.store(true, Ordering::Relaxed);
            inbox.wake.signal();
        }
        Ok(())
    }

    /// Takes the oldest frame of queue `me`'s inbox and gives its bytes to `take`; `None` when it is empty.
    pub fn receive<R>(&self, me: u32, take: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.inboxes.get(me as usize)?.ring.pop(take)
    }

    /// Whether queue `me`'s inbox has frames.
    pub fn has_frames(&self, me: u32) -> bool {
        self.inboxes.get(me as usize).is_some_and(|i| !i.ring.is_empty())
    }

    /// The fd that polls readable when frames reach queue `me`'s inbox while it sleeps.
    pub fn wake_fd(&self, me: u32) -> Option<RawFd> {
        self.inboxes.get(me as usize).map(|i| i.wake.raw_fd())
    }

    /// Queue `me` is about to sleep on its fds: from now on senders signal its eventfd. Returns `false` (and
    /// stays awake) when frames are already waiting.
    pub fn sleep_begin(&self, me: u32) -> bool {
        let Some(inbox) = self.inboxes.get(me as usize) else { return true };
        inbox.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !inbox.ring.is_empty() {
            inbox.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queue `me` woke up: senders stop signalling and the eventfd is reset (if it was signalled).
    pub fn sleep_end(&self, me: u32) {
        if let Some(inbox) = self.inboxes.get(me as usize) {
            inbox.sleeping.store(false, Ordering::Relaxed);
            if inbox.signaled.swap(false, Ordering::Relaxed) {
                inbox.wake.clear();
            }
        }
    }

    /// Makes queue `me`'s eventfd readable now (its owner found frames waiting as it was about to let its app
    /// sleep on the fd).
    pub fn signal_self(&self, me: u32) {
        if let Some(inbox) = self.inboxes.get(me as usize) {
            inbox.signaled.store(true, Ordering::Relaxed);
            inbox.wake.signal();
        }
    }
}

/// What one queue's steering needs: the port's inboxes and which queue it is.
#[derive(Debug, Clone)]
pub struct QueueSteering {
    steering: Arc<Steering>,
    queue: u32,
}

impl QueueSteering {
    /// Queue `queue` of `steering`.
    pub fn new(steering: Arc<Steering>, queue: u32) -> QueueSteering {
        QueueSteering { steering, queue }
    }

    /// The queue's index.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The shared inboxes.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    /// Whether `connect` on this queue may use local port `port` (ports outside the ephemeral range are never
    /// partitioned).
    pub fn owns(&self, port: u16) -> bool {
        self.steering.owner_of(port).is_none_or(|q| q == self.queue)
    }

    /// The queue that owns `port`, when that is another queue.
    pub fn foreign_owner(&self, port: u16) -> Option<u32> {
        self.steering.owner_of(port).filter(|&q| q != self.queue)
    }

    /// The queue that bound UDP port `port`, when that is another queue.
    pub fn foreign_udp_binder(&self, port: u16) -> Option<u32> {
        self.steering.udp_binder(port).filter(|&q| q != self.queue)
    }
}

/// A bounded multi-producer multi-consumer ring of frame copies: two crossbeam `ArrayQueue`s of buffers allocated
/// up front, the filled ones in arrival order and the free ones, so a push copies into a free buffer (no
/// allocation) and a full ring is a push that finds no free buffer.
struct FrameRing {
    full: ArrayQueue<Vec<u8>>,
    free: ArrayQueue<Vec<u8>>,
}

impl std::fmt::Debug for FrameRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRing").field("capacity", &self.free.capacity()).field("queued", &self.full.len()).finish()
    }
}

impl FrameRing {
    fn new(frames: usize) -> FrameRing {
        let capacity = frames.max(2).next_power_of_two();
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            // Cannot fail: exactly `capacity` buffers.
            let _ = free.push(Vec::with_capacity(MAX_DATA));
        }
        FrameRing { full: ArrayQueue::new(capacity), free }
    }

    /// Copies `frame` in; `false` when the ring is full. `frame` is at most `MAX_DATA` bytes.
    fn push(&self, frame: &[u8]) -> bool {
        let Some(mut buf) = self.free.pop() else { return false };
        buf.clear();
        buf.extend_from_slice(&frame[..frame.len().min(MAX_DATA)]);
        // There are as many slots as buffers, so this cannot fail; were it to, the buffer goes back.
        if let Err(buf) = self.full.push(buf) {
            let _ = self.free.push(buf);
            return false;
        }
        true
    }

    /// Takes the oldest frame and lends its bytes to `take`; `None` when empty.
    fn pop<R>(&self, take: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let buf = self.full.pop()?;
        let result = take(&buf);
        let _ = self.free.push(buf);
        Some(result)
    }

    fn is_empty(&self) -> bool {
        self.full.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_are_partitioned_by_queue_and_others_are_shared() {
        let s = Steering::new(2).unwrap();
        assert_eq!(s.owner_of(49152), Some(0));
        assert_eq!(s.owner_of(49153), Some(1));
        assert_eq!(s.owner_of(65535), Some(1));
        assert_eq!(s.owner_of(80), None);
        assert_eq!(s.owner_of(49151), None);
        let q1 = QueueSteering::new(s.clone(), 1);
        assert!(q1.owns(49153) && !q1.owns(49152) && q1.owns(7));
        assert_eq!(q1.foreign_owner(49152), Some(0));
        assert_eq!(q1.foreign_owner(49153), None);
        let single = Steering::new(1).unwrap();
        assert_eq!(single.owner_of(50000), None);
    }

    #[test]
    fn a_udp_port_is_steered_to_the_queue_that_bound_it_until_it_unbinds() {
        let s = Steering::new(2).unwrap();
        let (q0, q1) = (QueueSteering::new(s.clone(), 0), QueueSteering::new(s.clone(), 1));
        assert_eq!(q1.foreign_udp_binder(5000), None);
        s.claim_udp(5000, 0);
        assert_eq!(q1.foreign_udp_binder(5000), Some(0));
        assert_eq!(q0.foreign_udp_binder(5000), None);
        s.release_udp(5000, 1);
        assert_eq!(s.udp_binder(5000), Some(0), "only the recorded queue's unbind forgets it");
        s.release_udp(5000, 0);
        assert_eq!(s.udp_binder(5000), None);
        s.claim_udp(7, 300);
        assert_eq!(s.udp_binder(7), None, "queue numbers past a byte are not recorded");
    }

    #[test]
    fn frames_come_out_in_order_and_a_full_inbox_refuses_without_blocking() {
        let s = Steering::with_inbox_frames(2, 4).unwrap();
        for i in 0..4u8 {
            assert_eq!(s.send(1, &[i; 60]), Ok(()));
        }
        assert_eq!(s.send(1, &[9; 60]), Err(SteerError::Full));
        assert!(s.has_frames(1) && !s.has_frames(0));
        for i in 0..4u8 {
            assert_eq!(s.receive(1, |b| b.to_vec()), Some(vec![i; 60]));
        }
        assert_eq!(s.receive(1, |b| b.len()), None);
        assert!(!s.has_frames(1));
        assert_eq!(s.send(1, &vec![0; MAX_DATA + 1]), Err(SteerError::TooLong));
        assert_eq!(s.send(2, &[0; 60]), Err(SteerError::NoSuchQueue));
        assert_eq!(s.receive(7, |b| b.len()), None);
    }

    #[test]
    fn a_sleeping_owner_is_woken_and_an_owner_with_frames_does_not_sleep() {
        let s = Steering::new(2).unwrap();
        let fd = s.wake_fd(0).unwrap();
        assert!(s.sleep_begin(0));
        assert!(!crate::sys::poll_any_readable(&[fd], crate::time::Duration::ZERO).unwrap());
        s.send(0, &[1; 64]).unwrap();
        assert!(crate::sys::poll_any_readable(&[fd], crate::time::Duration::ZERO).unwrap());
        s.sleep_end(0);
        assert!(!crate::sys::poll_any_readable(&[fd], crate::time::Duration::ZERO).unwrap());
        assert!(!s.sleep_begin(0), "a frame is waiting");
        assert!(s.receive(0, |b| b.len()) == Some(64));
        assert!(s.sleep_begin(0));
        s.sleep_end(0);
    }

    #[test]
    fn frames_from_several_threads_all_arrive_intact() {
        const PER_THREAD: usize = 20_000;
        let s = Steering::with_inbox_frames(3, 64).unwrap();
        let senders: Vec<_> = (1..3u8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut refused = 0usize;
                    for i in 0..PER_THREAD {
                        let mut frame = [t; 100];
                        frame[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        while s.send(0, &frame) == Err(SteerError::Full) {
                            refused += 1;
                            std::thread::yield_now();
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut next = [0u64; 3];
        let mut got = 0;
        while got < 2 * PER_THREAD {
            match s.receive(0, |b| (b.len(), b[99], u64::from_le_bytes(b[..8].try_into().unwrap()))) {
                Some((len, t, i)) => {
                    assert_eq!(len, 100);
                    assert!(t == 1 || t == 2);
                    assert_eq!(next[t as usize], i, "frames of one sender stay in order");
                    next[t as usize] += 1;
                    got += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        for h in senders {
            h.join().unwrap();
        }
        assert!(!s.has_frames(0));
    }
}
