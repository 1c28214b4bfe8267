//! A socket's send buffer: bytes the app wrote (POSIX copies them, so the app may reuse its buffer at once),
//! handed to TCP zero-copy with `sendv` and kept until the peer acknowledges them. Memory is a queue of fixed
//! chunks that never move, because TCP holds pointers into them until `TcpSent`. Freed chunks go to a small
//! process-wide pool (the ACK that frees a chunk is often handled by another thread's cycle than the one that
//! writes next): a request/response server frees its reply's chunk at every ACK and needs one at its next write
//! (without the pool each reply paid a zeroed 16 KiB allocation: 16,000 instructions, 40% of libix's user-space
//! work per memcached request, scripts/profile-memcached.sh).
// The one unsafe call here names chunk memory to TCP under AppBuf's contract.
#![allow(unsafe_code)]

use std::collections::VecDeque;

use dataplane::api::AppBuf;

/// Bytes per chunk.
const CHUNK: usize = 16 * 1024;
/// Most chunks one `sendv` names.
pub const MAX_SLICES: usize = 8;
/// Freed chunks kept for reuse (4 MiB).
const POOL_CHUNKS: usize = 256;

/// Freed chunks, up to a bound.
struct ChunkPool {
    free: parking_lot::Mutex<Vec<Box<[u8]>>>,
    max: usize,
}

impl ChunkPool {
    const fn new(max: usize) -> ChunkPool {
        ChunkPool { free: parking_lot::const_mutex(Vec::new()), max }
    }

    fn take(&self) -> Box<[u8]> {
        self.free.lock().pop().unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice())
    }

    fn give(&self, chunk: Box<[u8]>) {
        let mut free = self.free.lock();
        if free.len() < self.max {
            free.push(chunk);
        }
    }
}

static POOL: ChunkPool = ChunkPool::new(POOL_CHUNKS);

/// Unacknowledged bytes: `[0, handed)` are with TCP, `[handed, len)` wait for window.
#[derive(Debug, Default)]
pub struct SendBuf {
    chunks: VecDeque<Box<[u8]>>,
    /// Offset of the oldest unacknowledged byte in the first chunk.
    head: usize,
    /// Unacknowledged bytes.
    len: usize,
    /// Bytes TCP has taken.
    handed: usize,
}

impl SendBuf {
    /// Unacknowledged bytes (the socket's send-queue size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes not yet taken by TCP.
    pub fn unhanded(&self) -> usize {
        self.len - self.handed
    }

    /// Appends up to `room` bytes of `data`; returns how many.
    pub fn push(&mut self, data: &[u8], room: usize) -> usize {
        let total = data.len().min(room);
        let mut rest = &data[..total];
        while !rest.is_empty() {
            let end = self.head + self.len;
            let tail_used = end - (self.chunks.len().saturating_sub(1)) * CHUNK;
            if self.chunks.is_empty() || tail_used == CHUNK {
                self.chunks.push_back(POOL.take());
            }
            let used = (self.head + self.len) - (self.chunks.len() - 1) * CHUNK;
            let tail = self.chunks.back_mut().expect("a chunk was just ensured");
            let n = rest.len().min(CHUNK - used);
            tail[used..used + n].copy_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
        }
        total
    }

    /// Up to [`MAX_SLICES`] buffers naming the bytes TCP has not taken, oldest first.
    pub fn unhanded_bufs(&self) -> arrayvec::ArrayVec<AppBuf, MAX_SLICES> {
        let mut out = arrayvec::ArrayVec::new();
        let mut pos = self.head + self.handed;
        let end = self.head + self.len;
        while pos < end && !out.is_full() {
            let (chunk, off) = (pos / CHUNK, pos % CHUNK);
            let n = (CHUNK - off).min(end - pos);
            let bytes = &self.chunks[chunk][off..off + n];
            // SAFETY: chunks never move or change until acknowledged (`ack` drops them only after TCP reported
            // every byte in them acknowledged, or the connection died), which is AppBuf's contract.
            out.push(unsafe { AppBuf::new(bytes.as_ptr(), n) });
            pos += n;
        }
        out
    }

    /// TCP took `n` more bytes.
    pub fn handed(&mut self, n: usize) {
        self.handed = (self.handed + n).min(self.len);
    }

    /// The peer acknowledged `n` bytes: frees the chunks they filled.
    pub fn ack(&mut self, n: usize) {
        let n = n.min(self.handed);
        self.head += n;
        self.len -= n;
        self.handed -= n;
        while self.head >= CHUNK || (self.len == 0 && !self.chunks.is_empty()) {
            if let Some(chunk) = self.chunks.pop_front() {
                POOL.give(chunk);
            }
            if self.head >= CHUNK {
                self.head -= CHUNK;
            } else {
                self.head = 0;
            }
        }
    }

    /// Forgets everything (the connection is gone; TCP holds no pointer any more).
    pub fn clear(&mut self) {
        *self = SendBuf::default();
    }
}

impl Drop for SendBuf {
    fn drop(&mut self) {
        self.chunks.drain(..).for_each(|c| POOL.give(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &SendBuf) -> Vec<u8> {
        let mut out = Vec::new();
        for b in buf.unhanded_bufs() {
            let mut v = vec![0u8; b.len()];
            b.copy_to(0, &mut v);
            out.extend(v);
        }
        out
    }

    #[test]
    fn the_pool_reuses_freed_chunks_up_to_its_bound() {
        let pool = ChunkPool::new(2);
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        pool.give(a);
        pool.give(b);
        pool.give(c); // over the bound: freed
        assert_eq!(pool.free.lock().len(), 2);
        let (x, y) = (pool.take(), pool.take());
        assert_eq!((x.as_ptr(), y.as_ptr()), (pb, pa), "the freed chunks came back");
        assert!(x.len() == CHUNK && pool.free.lock().is_empty());
    }

    #[test]
    fn push_hand_ack_round_trip() {
        let mut s = SendBuf::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(s.push(&data, 70_000), 70_000);
        assert_eq!(s.len(), 70_000);
        let first = collect(&s);
        assert_eq!(first, data[..70_000]);
        s.handed(30_000);
        assert_eq!(collect(&s), data[30_000..70_000]);
        s.ack(20_000);
        assert_eq!(s.len(), 50_000);
        assert_eq!(s.push(&data[70_000..], usize::MAX), 30_000);
        assert_eq!(collect(&s)[..], data[30_000..]);
        s.handed(s.unhanded());
        s.ack(80_000);
        assert!(s.is_empty());
        assert_eq!(s.chunks.len(), 0);
    }

    #[test]
    fn ack_never_exceeds_handed() {
        let mut s = SendBuf::default();
        s.push(b"hello", 100);
        s.ack(5);
        assert_eq!(s.len(), 5);
        s.handed(5);
        s.ack(99);
        assert!(s.is_empty());
    }
}
