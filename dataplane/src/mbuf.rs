//! Mbufs: fixed 2 KiB packet buffers in a per-core pool, identified by a `u32` frame index.
//!
//! The pool's memory is one [`MemoryRegion`] (huge pages when available). For AF_XDP the same region is
//! registered as the UMEM, so received frames land in mbufs without a copy and transmitted mbufs go to the NIC
//! without one. An [`Mbuf`] is a move-only token (index, data offset, length): whoever holds it owns the frame and
//! must hand it back with [`MbufPool::free`] or pass it on (to a TX ring, or lent to the app as a `recv` event).
//! Tests check that the pool returns to full, which catches a token dropped on the floor.
#![allow(unsafe_code)]

use crate::sys::mmap::MemoryRegion;
use std::io;

/// Bytes per frame (one AF_XDP UMEM chunk).
pub const FRAME_SIZE: usize = 2048;
/// Where a frame we build starts its data: room to prepend headers, and the same offset AF_XDP uses on RX
/// (`XDP_PACKET_HEADROOM`), so built and received frames look alike.
pub const HEADROOM: usize = 256;
/// Largest frame data an mbuf can hold.
pub const MAX_DATA: usize = FRAME_SIZE - HEADROOM;

/// Error from an mbuf length change that would leave the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mbuf length change out of frame bounds")]
pub struct OutOfBounds;

/// A packet buffer owned by whoever holds this token. Not `Clone`: one owner at a time.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an mbuf must be freed to its pool or handed on"]
pub struct Mbuf {
    index: u32,
    off: u16,
    len: u16,
}

impl Mbuf {
    /// Builds a token for a frame whose ownership the caller already holds (a NIC backend taking a descriptor
    /// back from the kernel). `off + len` must stay inside the frame.
    pub(crate) fn from_raw(index: u32, off: usize, len: usize) -> Mbuf {
        debug_assert!(off + len <= FRAME_SIZE);
        Mbuf { index, off: off as u16, len: len as u16 }
    }

    /// The frame's index in its pool.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Offset of the data from the start of the frame.
    pub fn offset(&self) -> usize {
        self.off as usize
    }
    /// Data length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether the mbuf holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Address of the data relative to the start of the pool (an AF_XDP descriptor address).
    pub fn addr(&self) -> u64 {
        self.index as u64 * FRAME_SIZE as u64 + self.off as u64
    }
    /// Sets the data length (from the current offset).
    pub fn set_len(&mut self, len: usize) -> Result<(), OutOfBounds> {
        if self.off as usize + len > FRAME_SIZE {
            return Err(OutOfBounds);
        }
        self.len = len as u16;
        Ok(())
    }
    /// Drops `n` bytes from the front (consumes a header).
    pub fn adjust(&mut self, n: usize) -> Result<(), OutOfBounds> {
        if n > self.len as usize {
            return Err(OutOfBounds);
        }
        self.off += n as u16;
        self.len -= n as u16;
        Ok(())
    }
    /// Grows the data by `n` bytes at the front (makes room for a header).
    pub fn prepend(&mut self, n: usize) -> Result<(), OutOfBounds> {
        if n > self.off as usize {
            return Err(OutOfBounds);
        }
        self.off -= n as u16;
        self.len += n as u16;
        Ok(())
    }
    /// Cuts the data to `len` bytes (drops trailing padding).
    pub fn trim(&mut self, len: usize) -> Result<(), OutOfBounds> {
        if len > self.len as usize {
            return Err(OutOfBounds);
        }
        self.len = len as u16;
        Ok(())
    }
}

/// A per-core pool of frames. Not `Sync`: one core allocates and frees.
#[derive(Debug)]
pub struct MbufPool {
    region: MemoryRegion,
    frames: u32,
    free: Vec<u32>,
    /// Frames the app may still be reading: lent in an event of the current `run_io` and released by the stack in
    /// the same cycle (a connection died). They rejoin the free list when the next `run_io` starts, so the NIC is
    /// never handed a frame the app is reading.
    quarantine: Vec<u32>,
}

impl MbufPool {
    /// A pool of `frames` frames, on huge pages when `try_huge` and the system has them.
    pub fn new(frames: u32, try_huge: bool) -> io::Result<MbufPool> {
        if frames == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an mbuf pool needs at least one frame"));
        }
        let region = MemoryRegion::new(frames as usize * FRAME_SIZE, try_huge)?;
        // Hand out low indices first: they are the frames most likely to be warm in the cache.
        let free = (0..frames).rev().collect();
        Ok(MbufPool { region, frames, free, quarantine: Vec::new() })
    }

    /// Takes a free frame, with its data empty at [`HEADROOM`]. `None` when the pool is exhausted.
    pub fn alloc(&mut self) -> Option<Mbuf> {
        self.free.pop().map(|index| Mbuf { index, off: HEADROOM as u16, len: 0 })
    }

    /// Takes a free frame by index only (AF_XDP fill ring), or `None` when exhausted.
    pub(crate) fn alloc_index(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// Returns a frame to the pool.
    pub fn free(&mut self, m: Mbuf) {
        self.free_index(m.index);
    }

    /// Returns a frame the app may still be reading (it was lent in this cycle's events): it becomes free when
    /// [`MbufPool::end_quarantine`] runs at the start of the next `run_io`.
    pub fn free_after_app(&mut self, m: Mbuf) {
        if m.index < self.frames && self.free.len() + self.quarantine.len() < self.frames as usize {
            self.quarantine.push(m.index);
        }
    }

    /// The app has consumed the last `run_io`'s events: quarantined frames are free again.
    pub fn end_quarantine(&mut self) {
        while let Some(i) = self.quarantine.pop() {
            self.free_index(i);
        }
    }

    /// Returns a frame by index (AF_XDP completion ring). Indices outside the pool are ignored (counted by the
    /// caller as a kernel/driver anomaly), so a bad descriptor can never corrupt the free list.
    pub(crate) fn free_index(&mut self, index: u32) -> bool {
        if index >= self.frames || self.free.len() + self.quarantine.len() >= self.frames as usize {
            return false;
        }
        self.free.push(index);
        true
    }

    /// Number of frames in the pool.
    pub fn capacity(&self) -> u32 {
        self.frames
    }
    /// Number of free frames.
    pub fn available(&self) -> u32 {
        self.free.len() as u32
    }

    /// The memory behind the pool (registered as AF_XDP UMEM).
    pub fn region(&self) -> &MemoryRegion {
        &self.region
    }

    /// The frame index holding pool address `addr`, if inside the pool.
    pub fn index_of_addr(&self, addr: u64) -> Option<u32> {
        let index = addr / FRAME_SIZE as u64;
        (index < self.frames as u64).then_some(index as u32)
    }

    /// The frame index holding `ptr`, if it points into the pool's memory.
    pub fn index_of_ptr(&self, ptr: *const u8) -> Option<(u32, usize)> {
        let base = self.region.as_ptr() as usize;
        let p = ptr as usize;
        if p < base || p >= base + self.frames as usize * FRAME_SIZE {
            return None;
        }
        let off = p - base;
        Some(((off / FRAME_SIZE) as u32, off % FRAME_SIZE))
    }

    fn frame_ptr(&self, index: u32) -> *mut u8 {
        assert!(index < self.frames, "mbuf index out of pool");
        // Cannot overflow: index < frames and the region holds frames * FRAME_SIZE bytes.
        self.region.as_ptr().wrapping_add(index as usize * FRAME_SIZE)
    }

    /// The mbuf's data.
    pub fn data(&self, m: &Mbuf) -> &[u8] {
        let p = self.frame_ptr(m.index).wrapping_add(m.off as usize);
        // SAFETY: off + len <= FRAME_SIZE is an invariant of `Mbuf`, so the slice stays in this frame; the token
        // proves the caller owns the frame, so neither the kernel nor another token writes it meanwhile.
        unsafe { std::slice::from_raw_parts(p, m.len as usize) }
    }

    /// The mbuf's data, writable.
    pub fn data_mut(&mut self, m: &mut Mbuf) -> &mut [u8] {
        let p = self.frame_ptr(m.index).wrapping_add(m.off as usize);
        // SAFETY: as in `data`; `&mut Mbuf` proves exclusive ownership of the frame, `&mut self` of the pool.
        unsafe { std::slice::from_raw_parts_mut(p, m.len as usize) }
    }

    /// Everything from the mbuf's data offset to the end of the frame, writable (to fill a frame, then
    /// `set_len`).
    pub fn tail_room_mut(&mut self, m: &mut Mbuf) -> &mut [u8] {
        let p = self.frame_ptr(m.index).wrapping_add(m.off as usize);
        // SAFETY: off <= FRAME_SIZE, so the slice ends at the frame's end; ownership as in `data_mut`.
        unsafe { std::slice::from_raw_parts_mut(p, FRAME_SIZE - m.off as usize) }
    }

    /// Copies `bytes` into a fresh mbuf (test peers and TAP reads), or `None` when exhausted or too long.
    pub fn alloc_from(&mut self, bytes: &[u8]) -> Option<Mbuf> {
        if bytes.len() > MAX_DATA {
            return None;
        }
        let mut m = self.alloc()?;
        self.tail_room_mut(&mut m)[..bytes.len()].copy_from_slice(bytes);
        m.len = bytes.len() as u16;
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantined_frames_stay_out_until_the_next_run_io() {
        let mut pool = MbufPool::new(4, false).unwrap();
        let a = pool.alloc().unwrap();
        let index = a.index;
        pool.free_after_app(a);
        assert_eq!(pool.available(), 3, "a quarantined frame is not allocatable");
        let taken: Vec<_> = std::iter::from_fn(|| pool.alloc()).collect();
        assert!(taken.iter().all(|m| m.index != index), "the app may still read it");
        taken.into_iter().for_each(|m| pool.free(m));
        pool.end_quarantine();
        assert_eq!(pool.available(), 4);
        // A double release cannot grow the pool past its size.
        pool.free_after_app(Mbuf { index, off: HEADROOM as u16, len: 0 });
        pool.end_quarantine();
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn alloc_free_roundtrip_and_exhaustion() {
        let mut pool = MbufPool::new(4, false).unwrap();
        let a: Vec<Mbuf> = (0..4).map(|_| pool.alloc().unwrap()).collect();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.available(), 0);
        for m in a {
            pool.free(m);
        }
        assert_eq!(pool.available(), 4);
        assert!(!pool.free_index(99), "foreign index refused");
        assert!(!pool.free_index(0), "free list never exceeds capacity");
    }

    #[test]
    fn length_mutators_stay_in_frame() {
        let mut pool = MbufPool::new(1, false).unwrap();
        let mut m = pool.alloc_from(b"hello world").unwrap();
        assert_eq!(pool.data(&m), b"hello world");
        m.adjust(6).unwrap();
        assert_eq!(pool.data(&m), b"world");
        m.prepend(6).unwrap();
        assert_eq!(pool.data(&m), b"hello world");
        assert_eq!(m.prepend(HEADROOM + 1), Err(OutOfBounds));
        assert_eq!(m.adjust(100), Err(OutOfBounds));
        assert_eq!(m.set_len(FRAME_SIZE), Err(OutOfBounds));
        m.trim(5).unwrap();
        assert_eq!(pool.data(&m), b"hello");
        let addr = m.addr();
        assert_eq!(pool.index_of_addr(addr), Some(0));
        let ptr = pool.data(&m).as_ptr();
        assert_eq!(pool.index_of_ptr(ptr), Some((0, HEADROOM)));
        assert_eq!(pool.index_of_ptr(std::ptr::null()), None);
        pool.free(m);
    }
}
