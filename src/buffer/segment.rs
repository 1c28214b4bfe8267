//! One link of an evbuffer's chain: a run of bytes in memory the segment owns (appendable at the end, with
//! `misalign` free bytes at the front so draining and prepending are O(1), as libevent's chains) or in memory it
//! borrows read-only through a [`Backing`] (application memory lent with `evbuffer_add_reference`, file segments,
//! bytes shared between buffers by `evbuffer_add_buffer_reference`, and later dataplane mbufs lent zero-copy).

use std::sync::Arc;

/// libevent's `sizeof(struct evbuffer_chain)` on LP64: its allocations put this header before the bytes, so the
/// usable size of a chain is its power-of-two allocation minus this. Kept so that the space programs are handed
/// (`evbuffer_reserve_space`, `evbuffer_get_contiguous_space`) is the space libevent hands them.
pub const CHAIN_HEADER: usize = 48;
/// libevent's smallest chain allocation (`MIN_BUFFER_SIZE` on 64-bit).
pub const MIN_ALLOCATION: usize = 1024;
/// The largest chain libevent allocates (`EVBUFFER_CHAIN_MAX`, SSIZE_MAX).
pub const CHAIN_MAX: usize = isize::MAX as usize;

/// Read-only bytes a segment borrows. Dropping the last `Arc` releases them (the release hook of the lender).
pub trait Backing: Send + Sync {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

/// Bytes that once were a buffer's own, now shared between buffers (`evbuffer_add_buffer_reference`).
struct SharedBytes(Box<[u8]>);

impl Backing for SharedBytes {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where a segment's bytes came from; some operations treat the kinds differently, as libevent does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The buffer's own allocation.
    Owned,
    /// Application memory (`evbuffer_add_reference`), or owned bytes made shared and immutable.
    Reference,
    /// A file segment (`evbuffer_add_file_segment`).
    File,
    /// Another buffer's bytes (`evbuffer_add_buffer_reference`).
    Multicast,
}

enum Memory {
    Owned(Box<[u8]>),
    Borrowed(Arc<dyn Backing>),
}

/// A segment: `off` bytes of data starting `misalign` bytes into its memory.
pub struct Segment {
    memory: Memory,
    kind: Kind,
    misalign: usize,
    off: usize,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity())
            .field("misalign", &self.misalign)
            .field("off", &self.off)
            .finish()
    }
}

/// The usable size of the chain libevent would allocate for `size` bytes (None: too large).
pub fn chain_capacity(size: usize) -> Option<usize> {
    if size > CHAIN_MAX - CHAIN_HEADER {
        return None;
    }
    let want = size + CHAIN_HEADER;
    let alloc = if want < CHAIN_MAX / 2 { want.max(MIN_ALLOCATION).next_power_of_two() } else { want };
    Some(alloc - CHAIN_HEADER)
}

impl Segment {
    /// An empty owned segment with room for at least `size` bytes (libevent's chain sizes). None if too large or
    /// the allocation fails.
    pub fn with_room(size: usize) -> Option<Segment> {
        let cap = chain_capacity(size)?;
        let memory = Memory::Owned(super::external::zeroed(cap)?);
        Some(Segment { memory, kind: Kind::Owned, misalign: 0, off: 0 })
    }

    /// A segment holding all of `backing`'s bytes, read-only.
    pub fn borrowed(backing: Arc<dyn Backing>, kind: Kind) -> Segment {
        let off = backing.bytes().len();
        Segment { memory: Memory::Borrowed(backing), kind, misalign: 0, off }
    }

    /// `len` bytes of `backing` from `start`, read-only (None if out of range).
    pub fn borrowed_range(backing: Arc<dyn Backing>, kind: Kind, start: usize, len: usize) -> Option<Segment> {
        let end = start.checked_add(len)?;
        (end <= backing.bytes().len()).then_some(Segment {
            memory: Memory::Borrowed(backing),
            kind,
            misalign: start,
            off: len,
        })
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.off
    }

    /// Whether it holds no data.
    pub fn is_empty(&self) -> bool {
        self.off == 0
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether bytes can be written into it.
    pub fn is_mutable(&self) -> bool {
        matches!(self.memory, Memory::Owned(_))
    }

    /// The size of its memory (libevent's `buffer_len`).
    pub fn capacity(&self) -> usize {
        match &self.memory {
            Memory::Owned(b) => b.len(),
            Memory::Borrowed(b) => b.bytes().len(),
        }
    }

    /// Free bytes after the data (0 when read-only), libevent's `CHAIN_SPACE_LEN`.
    pub fn space(&self) -> usize {
        if self.is_mutable() {
            self.capacity() - self.misalign - self.off
        } else {
            0
        }
    }

    /// Free bytes before the data.
    pub fn front_room(&self) -> usize {
        if self.is_mutable() {
            self.misalign
        } else {
            0
        }
    }

    /// The data.
    pub fn data(&self) -> &[u8] {
        match &self.memory {
            Memory::Owned(b) => &b[self.misalign..self.misalign + self.off],
            Memory::Borrowed(b) => &b.bytes()[self.misalign..self.misalign + self.off],
        }
    }

    /// Where the data starts, for handing to C (`evbuffer_pullup`). Borrowed bytes are read-only: C must not
    /// write through this pointer for them (libevent's contract for referenced memory).
    pub fn data_ptr(&mut self) -> *mut u8 {
        match &mut self.memory {
            Memory::Owned(b) => b[self.misalign..].as_mut_ptr(),
            Memory::Borrowed(b) => b.bytes()[self.misalign..].as_ptr().cast_mut(),
        }
    }

    /// The free bytes after the data (empty when read-only).
    pub fn space_mut(&mut self) -> &mut [u8] {
        match &mut self.memory {
            Memory::Owned(b) => &mut b[self.misalign + self.off..],
            Memory::Borrowed(_) => &mut [],
        }
    }

    /// Where the free space starts (for matching the iovecs the application commits).
    pub fn space_ptr(&self) -> *const u8 {
        match &self.memory {
            Memory::Owned(b) => b[self.misalign + self.off..].as_ptr(),
            Memory::Borrowed(b) => b.bytes()[self.misalign + self.off..].as_ptr(),
        }
    }

    /// Counts `n` bytes written into the space as data. Panics past the space (callers check).
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.space(), "commit past the segment's space");
        self.off += n;
    }

    /// Appends as much of `data` as fits in the space; returns how much.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.space_mut()[..n].copy_from_slice(&data[..n]);
        self.off += n;
        n
    }

    /// Writes the tail of `data` that fits into the front room; returns how much.
    pub fn prepend(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.front_room());
        let Memory::Owned(b) = &mut self.memory else { return 0 };
        let start = self.misalign - n;
        b[start..self.misalign].copy_from_slice(&data[data.len() - n..]);
        self.misalign = start;
        self.off += n;
        n
    }

    /// Drops `n` bytes from the front (n <= len).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.off, "advance past the segment's data");
        self.misalign += n;
        self.off -= n;
    }

    /// Moves the data to the start of the memory (libevent's `evbuffer_chain_align`).
    pub fn align(&mut self) {
        if let Memory::Owned(b) = &mut self.memory {
            b.copy_within(self.misalign..self.misalign + self.off, 0);
            self.misalign = 0;
        }
    }

    /// Resets an empty segment so all its memory is space.
    pub fn reset_if_empty(&mut self) {
        if self.off == 0 && self.is_mutable() {
            self.misalign = 0;
        }
    }

    /// For an empty owned segment about to be filled from the back (prepend): all its memory becomes front room.
    pub fn make_front_room(&mut self) {
        if self.off == 0 && self.is_mutable() {
            self.misalign = self.capacity();
        }
    }

    /// Libevent's test for whether moving the data to the front is worth it to fit `n` more bytes.
    pub fn should_realign(&self, n: usize) -> bool {
        let cap = self.capacity();
        self.is_mutable() && cap - self.off >= n && self.off < cap / 2 && self.off <= 2048
    }

    /// A read-only view of the same bytes for another buffer (`evbuffer_add_buffer_reference`). Owned memory is
    /// moved into shared memory first, which makes this segment read-only too (libevent marks it immutable).
    pub fn share(&mut self) -> Segment {
        if let Memory::Owned(b) = &mut self.memory {
            let bytes = std::mem::take(b);
            self.memory = Memory::Borrowed(Arc::new(SharedBytes(bytes)));
        }
        let Memory::Borrowed(b) = &self.memory else { unreachable!("made shared above") };
        Segment { memory: Memory::Borrowed(b.clone()), kind: Kind::Multicast, misalign: self.misalign, off: self.off }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_libevents() {
        assert_eq!(chain_capacity(0), Some(976));
        assert_eq!(chain_capacity(976), Some(976));
        assert_eq!(chain_capacity(977), Some(2048 - 48));
        assert_eq!(chain_capacity(4096), Some(8192 - 48));
        assert_eq!(chain_capacity(CHAIN_MAX), None);
    }

    #[test]
    fn prepend_fills_front_room_from_the_back() {
        let mut s = Segment::with_room(10).expect("alloc");
        s.make_front_room();
        assert_eq!(s.prepend(b"world"), 5);
        assert_eq!(s.prepend(b"hello "), 6);
        assert_eq!(s.data(), b"hello world");
        assert_eq!(s.space(), 0);
        s.advance(6);
        assert_eq!(s.data(), b"world");
    }

    #[test]
    fn shared_segments_are_read_only_views() {
        let mut s = Segment::with_room(8).expect("alloc");
        s.append(b"abcdef");
        s.advance(1);
        let view = s.share();
        assert_eq!(view.data(), b"bcdef");
        assert_eq!(view.kind(), Kind::Multicast);
        assert!(!s.is_mutable() && s.space() == 0);
        assert_eq!(s.append(b"x"), 0);
    }
}
