//! libevent 2.1's evbuffer (`event2/buffer.h`) as safe Rust: a byte queue kept as a chain of [`Segment`]s, with
//! libevent's observable behaviour (chain sizes, the space `reserve` hands out, freezing, what callbacks are told).
//!
//! - [`segment`]: one link: owned bytes with front room and tail space, or borrowed read-only bytes ([`Backing`]).
//! - this file: [`Buffer`], every operation that adds, removes, moves or exposes bytes.
//! - [`search`]: positions, `search`/`search_range`, end-of-line search, `peek`.
//! - [`callbacks`]: the callback list and which entries run with what information.
//! - [`external`]: the one module that turns raw application memory into a [`Backing`].
//!
//! The C ABI is `capi/buffer.rs`; it adds what is C's (the handle, locks, file descriptors, deferral).
//!
//! Chain invariant: empty segments exist only after the last segment with data (space reserved for appends);
//! every operation keeps it, so "the last segment with data" is found from the back in O(number of such empties).

pub mod callbacks;
pub mod external;
pub mod search;
pub mod segment;

use std::collections::VecDeque;

pub use segment::{Backing, Kind, Segment};

/// Why an operation was refused (libevent returns -1 for all of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The end of the buffer the operation changes is frozen (`evbuffer_freeze`).
    #[error("buffer is frozen")]
    Frozen,
    /// The result would be larger than a buffer can hold.
    #[error("too large")]
    TooLarge,
    /// Allocation failed.
    #[error("out of memory")]
    NoMemory,
    /// An argument does not describe this buffer's state (a stale iovec, a position past the end, ...).
    #[error("invalid argument")]
    Invalid,
}

/// A writable region handed to the application (`struct evbuffer_iovec` for reserve/read).
pub type SpaceVec = (*mut u8, usize);
/// A readable region handed to the application (peek, write).
pub type DataVec = (*const u8, usize);

/// An evbuffer's bytes and the state libevent keeps with them.
#[derive(Debug, Default)]
pub struct Buffer {
    segs: VecDeque<Segment>,
    total: usize,
    /// Bytes added since callbacks were last told (libevent's `n_add_for_cb`).
    pub n_added: usize,
    /// Bytes removed since callbacks were last told (`n_del_for_cb`).
    pub n_deleted: usize,
    frozen_start: bool,
    frozen_end: bool,
    /// Segments removed from the chain whose memory is lent (their release hooks may call back into the
    /// application), kept until the caller drops them at a point where that is safe: see [`Buffer::take_released`].
    released: Vec<Segment>,
}

/// Growth of automatically sized chains stops doubling above this (libevent's `EVBUFFER_CHAIN_MAX_AUTO_SIZE`).
const MAX_AUTO_SIZE: usize = 4096;
/// Resizing a chain in place copies at most this much (`MAX_TO_COPY_IN_EXPAND`).
const MAX_TO_COPY_IN_EXPAND: usize = 4096;

impl Buffer {
    /// An empty buffer.
    pub fn new() -> Buffer {
        Buffer::default()
    }

    /// Bytes stored (`evbuffer_get_length`).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The segments (for tests and the C shell's iovec checks).
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segs.iter()
    }

    /// Bytes readable at once from the front (`evbuffer_get_contiguous_space`).
    pub fn contiguous_space(&self) -> usize {
        self.segs.front().map_or(0, Segment::len)
    }

    /// The lent segments removed since the last call. Dropping them runs their release hooks; the C shell does that
    /// after it stops borrowing the buffer, since a hook may call back into it.
    pub fn take_released(&mut self) -> Vec<Segment> {
        std::mem::take(&mut self.released)
    }

    /// Disposes of a segment taken out of the chain: lent memory waits in `released`, owned memory is freed.
    fn retire(&mut self, seg: Segment) {
        if !seg.is_mutable() {
            self.released.push(seg);
        }
    }

    /// Removes the segments from `from` to the end.
    fn retire_from(&mut self, from: usize) {
        while self.segs.len() > from {
            let s = self.segs.pop_back().expect("len > from");
            self.retire(s);
        }
    }

    /// Removes the first segment.
    fn retire_front(&mut self) {
        if let Some(s) = self.segs.pop_front() {
            self.retire(s);
        }
    }

    /// `evbuffer_freeze`: `start` freezes removals at the front, else additions at the end.
    pub fn freeze(&mut self, start: bool, frozen: bool) {
        if start {
            self.frozen_start = frozen;
        } else {
            self.frozen_end = frozen;
        }
    }

    /// Whether the front (`start`) or the end is frozen.
    pub fn is_frozen(&self, start: bool) -> bool {
        if start {
            self.frozen_start
        } else {
            self.frozen_end
        }
    }

    fn check_end(&self) -> Result<(), Error> {
        if self.frozen_end {
            Err(Error::Frozen)
        } else {
            Ok(())
        }
    }

    fn check_start(&self) -> Result<(), Error> {
        if self.frozen_start {
            Err(Error::Frozen)
        } else {
            Ok(())
        }
    }

    /// The last segment with data, or the first one if none has data (libevent's `last_with_datap`).
    fn last_with_data(&self) -> Option<usize> {
        if self.segs.is_empty() {
            return None;
        }
        Some(self.segs.iter().rposition(|s| !s.is_empty()).unwrap_or(0))
    }

    /// Frees the empty segments from the last with data on (libevent's `evbuffer_free_trailing_empty_chains`).
    fn drop_trailing_empty(&mut self) {
        if let Some(lwd) = self.last_with_data() {
            let keep = if self.segs[lwd].is_empty() { lwd } else { lwd + 1 };
            self.retire_from(keep);
        }
    }

    /// Appends a segment after the data, replacing the empty ones (`evbuffer_chain_insert`). Counts nothing.
    fn insert_segment(&mut self, seg: Segment) -> usize {
        self.drop_trailing_empty();
        self.segs.push_back(seg);
        self.segs.len() - 1
    }

    /// Removes the empty segments that a commit left before data (from `tail_start`, the first empty segment
    /// before the commit), keeping the invariant.
    fn compact_tail(&mut self, tail_start: usize) {
        let Some(lwd) = self.last_with_data() else { return };
        let mut i = tail_start;
        let mut end = lwd;
        while i < end {
            if self.segs[i].is_empty() {
                let s = self.segs.remove(i).expect("i < len");
                self.retire(s);
                end -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// Index of the first segment at or after the last with data that is empty (where trailing space starts).
    fn tail_start(&self) -> usize {
        match self.last_with_data() {
            None => 0,
            Some(i) if self.segs[i].is_empty() => i,
            Some(i) => i + 1,
        }
    }

    fn account_added(&mut self, n: usize) {
        self.total += n;
        self.n_added += n;
    }

    /// `evbuffer_add`.
    pub fn add(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_end()?;
        let len = data.len();
        if len > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        if self.segs.is_empty() {
            let seg = Segment::with_room(len).ok_or(Error::NoMemory)?;
            self.segs.push_back(seg);
        }
        let idx = self.last_with_data().expect("a segment exists");
        let seg = &mut self.segs[idx];
        let mut remain = 0;
        if seg.is_mutable() {
            remain = seg.space();
            if remain >= len {
                seg.append(data);
                self.account_added(len);
                return Ok(());
            }
            if seg.should_realign(len) {
                seg.align();
                seg.append(data);
                self.account_added(len);
                return Ok(());
            }
        }
        // A new chain twice the size of the last (while small), or as large as the data.
        let mut to_alloc = seg.capacity();
        if to_alloc <= MAX_AUTO_SIZE / 2 {
            to_alloc <<= 1;
        }
        let mut next = Segment::with_room(to_alloc.max(len)).ok_or(Error::NoMemory)?;
        let head = self.segs[idx].append(&data[..remain]);
        next.append(&data[head..]);
        self.insert_segment(next);
        self.account_added(len);
        Ok(())
    }

    /// Appends borrowed bytes as their own segment (`evbuffer_add_reference`, file segments).
    pub fn add_segment(&mut self, seg: Segment) -> Result<(), Error> {
        self.check_end()?;
        let len = seg.len();
        if len > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        // Even an empty one is kept (at the end, as libevent keeps its empty reference chain): it changes where
        // the next reserve finds space, and its release hook runs when it is freed, not now.
        self.insert_segment(seg);
        self.account_added(len);
        Ok(())
    }

    /// `evbuffer_prepend`.
    pub fn prepend(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_start()?;
        let len = data.len();
        if len > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        let mut rest = data;
        if let Some(first) = self.segs.front_mut() {
            first.make_front_room();
            let n = first.prepend(rest);
            rest = &rest[..rest.len() - n];
        }
        if !rest.is_empty() {
            let mut seg = Segment::with_room(rest.len()).ok_or(Error::NoMemory)?;
            seg.make_front_room();
            seg.prepend(rest);
            self.segs.push_front(seg);
        }
        self.account_added(len);
        Ok(())
    }

    /// `evbuffer_drain`: removes up to `n` bytes from the front; returns how many. An empty buffer is left as it is
    /// (its reserved space too), even when frozen, as in libevent.
    pub fn drain(&mut self, n: usize) -> Result<usize, Error> {
        if self.total == 0 {
            return Ok(0);
        }
        self.check_start()?;
        let n = if n >= self.total {
            let all = self.total;
            self.retire_from(0);
            all
        } else {
            let mut left = n;
            while let Some(first) = self.segs.front_mut() {
                if left < first.len() {
                    first.advance(left);
                    break;
                }
                left -= first.len();
                self.retire_front();
            }
            n
        };
        self.total -= n;
        self.n_deleted += n;
        Ok(n)
    }

    /// The segment holding byte `pos` and the offset in it (`pos < len`).
    pub(crate) fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        let mut left = pos;
        for (i, s) in self.segs.iter().enumerate() {
            if left < s.len() {
                return Some((i, left));
            }
            left -= s.len();
        }
        None
    }

    /// `evbuffer_copyout_from`: copies bytes from `pos` without removing them; returns how many.
    pub fn copy_out_from(&self, pos: usize, out: &mut [u8]) -> Result<usize, Error> {
        self.check_start()?;
        if pos > self.total {
            return Err(Error::Invalid);
        }
        let n = out.len().min(self.total - pos);
        if n == 0 {
            return Ok(0);
        }
        let (mut idx, mut off) = self.locate(pos).expect("pos < total");
        let mut done = 0;
        while done < n {
            let d = &self.segs[idx].data()[off..];
            let k = d.len().min(n - done);
            out[done..done + k].copy_from_slice(&d[..k]);
            done += k;
            idx += 1;
            off = 0;
        }
        Ok(n)
    }

    /// `evbuffer_remove`: copies then drains; returns how many bytes.
    pub fn remove(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let n = self.copy_out_from(0, out)?;
        if n > 0 {
            self.drain(n)?;
        }
        Ok(n)
    }

    /// `evbuffer_add_buffer`: moves all of `src`'s segments to the end of `self` (no copy); returns how many bytes.
    pub fn append_buffer(&mut self, src: &mut Buffer) -> Result<usize, Error> {
        let n = src.total;
        if n == 0 {
            return Ok(0);
        }
        if self.frozen_end || src.frozen_start {
            return Err(Error::Frozen);
        }
        if n > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        if self.total == 0 {
            self.retire_from(0);
        } else {
            self.drop_trailing_empty();
        }
        self.segs.append(&mut src.segs);
        src.total = 0;
        src.n_deleted += n;
        self.account_added(n);
        Ok(n)
    }

    /// `evbuffer_prepend_buffer`: moves all of `src`'s data to the front of `self`; returns how many bytes.
    pub fn prepend_buffer(&mut self, src: &mut Buffer) -> Result<usize, Error> {
        let n = src.total;
        if n == 0 {
            return Ok(0);
        }
        if self.frozen_start || src.frozen_start {
            return Err(Error::Frozen);
        }
        if n > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        if self.total == 0 {
            self.retire_from(0);
            self.segs.append(&mut src.segs);
        } else {
            // src's trailing space would land before data: drop it.
            src.drop_trailing_empty();
            while let Some(s) = src.segs.pop_back() {
                self.segs.push_front(s);
            }
        }
        src.retire_from(0);
        src.total = 0;
        src.n_deleted += n;
        self.account_added(n);
        Ok(n)
    }

    /// `evbuffer_remove_buffer`: moves up to `n` bytes from the front of `src` to the end of `self`, whole
    /// segments without copying; returns how many bytes.
    pub fn move_from(&mut self, src: &mut Buffer, n: usize) -> Result<usize, Error> {
        if n == 0 {
            return Ok(0);
        }
        if self.frozen_end || src.frozen_start {
            return Err(Error::Frozen);
        }
        if n >= src.total {
            return self.append_buffer(src);
        }
        let mut moved = 0;
        let mut made_room = false;
        while src.segs.front().is_some_and(|s| s.len() <= n - moved) {
            let s = src.segs.pop_front().expect("checked");
            if !made_room {
                if self.total == 0 {
                    self.retire_from(0);
                } else {
                    self.drop_trailing_empty();
                }
                made_room = true;
            }
            moved += s.len();
            self.segs.push_back(s);
        }
        self.total += moved;
        let rest = n - moved;
        if rest > 0 {
            // The part of a segment is copied, as libevent does (into the space of the last segment moved, or
            // new chains sized as `add` sizes them): the chain layout programs see stays libevent's.
            let first = src.segs.front_mut().expect("src has more than n bytes");
            let bytes = first.data()[..rest].to_vec();
            let before = self.n_added;
            self.add(&bytes)?;
            self.n_added = before;
            src.segs.front_mut().expect("still there").advance(rest);
        }
        self.n_added += n;
        src.total -= n;
        src.n_deleted += n;
        Ok(n)
    }

    /// `evbuffer_add_buffer_reference`: appends read-only views of `src`'s data (shared, not copied).
    pub fn append_reference(&mut self, src: &mut Buffer) -> Result<usize, Error> {
        let n = src.total;
        if n == 0 {
            return Ok(0);
        }
        self.check_end()?;
        if src.segs.iter().any(|s| matches!(s.kind(), Kind::File | Kind::Multicast)) {
            return Err(Error::Invalid);
        }
        if n > usize::MAX - self.total {
            return Err(Error::TooLarge);
        }
        if self.total == 0 {
            self.retire_from(0);
        }
        for s in src.segs.iter_mut().filter(|s| !s.is_empty()) {
            let view = s.share();
            self.insert_segment(view);
        }
        self.account_added(n);
        Ok(n)
    }

    /// `evbuffer_pullup`: makes the first `size` bytes (all with None) contiguous and returns where they start.
    /// None when `size` is 0 or more than the buffer holds.
    pub fn pullup(&mut self, size: Option<usize>) -> Result<Option<*mut u8>, Error> {
        let size = size.unwrap_or(self.total);
        if size == 0 || size > self.total {
            return Ok(None);
        }
        let first = &mut self.segs[0];
        if first.len() >= size {
            return Ok(Some(first.data_ptr()));
        }
        // Gather into the first segment if its memory is large enough, else into a new one.
        let mut target = if first.is_mutable() && first.capacity() - first.front_room() >= size {
            self.segs.pop_front().expect("non-empty")
        } else {
            Segment::with_room(size).ok_or(Error::NoMemory)?
        };
        let mut need = size - target.len();
        while need > 0 {
            let s = self.segs.front_mut().expect("size <= total");
            if s.len() <= need {
                need -= target.append(s.data());
                self.retire_front();
            } else {
                let k = target.append(&s.data()[..need]);
                s.advance(k);
                need -= k;
            }
        }
        // libevent's copy loop also frees the empty segments right after the gathered bytes.
        while self.segs.front().is_some_and(Segment::is_empty) {
            self.retire_front();
        }
        self.segs.push_front(target);
        Ok(Some(self.segs[0].data_ptr()))
    }

    /// Room for `n` more bytes in one segment at the end (libevent's `evbuffer_expand_singlechain`); returns that
    /// segment's index.
    fn expand_single(&mut self, n: usize) -> Result<usize, Error> {
        let Some(mut idx) = self.last_with_data() else { return self.insert_new(n) };
        if self.segs[idx].space() == 0 {
            idx += 1;
            if idx == self.segs.len() {
                return self.insert_new(n);
            }
        }
        let seg = &mut self.segs[idx];
        if !seg.is_mutable() {
            return self.insert_new(n);
        }
        if seg.space() >= n {
            return Ok(idx);
        }
        if seg.is_empty() {
            return self.insert_new(n);
        }
        if seg.should_realign(n) {
            seg.align();
            return Ok(idx);
        }
        let cap = seg.capacity();
        if seg.space() < cap / 8 || seg.len() > MAX_TO_COPY_IN_EXPAND || n >= segment::CHAIN_MAX - seg.len() {
            if self.segs.get(idx + 1).is_some_and(|next| next.space() >= n) {
                return Ok(idx + 1);
            }
            return self.insert_new(n);
        }
        // Resize: copy the data into a chain large enough for it and `n` more.
        let mut bigger = Segment::with_room(seg.len() + n).ok_or(Error::NoMemory)?;
        bigger.append(seg.data());
        self.segs[idx] = bigger;
        Ok(idx)
    }

    fn insert_new(&mut self, n: usize) -> Result<usize, Error> {
        let seg = Segment::with_room(n).ok_or(Error::NoMemory)?;
        Ok(self.insert_segment(seg))
    }

    /// `evbuffer_expand`: ensures `n` bytes can be added without allocating, in one segment.
    pub fn expand(&mut self, n: usize) -> Result<(), Error> {
        self.expand_single(n).map(|_| ())
    }

    /// Ensures `n` bytes of space in at most `nvecs` segments at the end without moving data (what
    /// `evbuffer_add_iovec` prepares with).
    pub fn expand_vectored(&mut self, n: usize, nvecs: usize) -> Result<(), Error> {
        self.expand_fast(n, nvecs)
    }

    /// Ensures `n` bytes of space in the last `nvecs` segments without moving data (`evbuffer_expand_fast_`).
    fn expand_fast(&mut self, n: usize, nvecs: usize) -> Result<(), Error> {
        let last_mutable = self.segs.back().is_some_and(Segment::is_mutable);
        if !last_mutable {
            let seg = Segment::with_room(n).ok_or(Error::NoMemory)?;
            self.insert_segment(seg);
            return Ok(());
        }
        let start = self.last_with_data().expect("a segment exists");
        let mut used = 0;
        let mut avail = 0;
        let mut ran_off = true;
        for seg in self.segs.range_mut(start..) {
            if !seg.is_empty() {
                if seg.space() > 0 {
                    avail += seg.space();
                    used += 1;
                }
            } else {
                seg.reset_if_empty();
                avail += seg.capacity();
                used += 1;
            }
            if avail >= n {
                return Ok(());
            }
            if used == nvecs {
                ran_off = false;
                break;
            }
        }
        if ran_off && used < nvecs {
            let seg = Segment::with_room(n - avail).ok_or(Error::NoMemory)?;
            self.segs.push_back(seg);
            return Ok(());
        }
        // Replace every empty segment by one large enough for what the last with data cannot take.
        let keep_space = if self.segs[start].is_empty() { 0 } else { self.segs[start].space() };
        self.drop_trailing_empty();
        let seg = Segment::with_room(n - keep_space).ok_or(Error::NoMemory)?;
        self.segs.push_back(seg);
        Ok(())
    }

    /// The space after the data, from the first segment that has any, as at most `nvecs` regions totalling `n`
    /// (at least `n` unless `exact`) (libevent's `evbuffer_read_setup_vecs_`).
    fn space_vecs(&mut self, n: usize, nvecs: usize, exact: bool) -> Vec<SpaceVec> {
        let mut first = self.last_with_data().expect("expanded");
        if self.segs[first].space() == 0 {
            first += 1;
        }
        let mut out = Vec::with_capacity(nvecs);
        let mut so_far = 0;
        for seg in self.segs.range_mut(first..) {
            if out.len() == nvecs || so_far >= n {
                break;
            }
            let mut avail = seg.space();
            if exact && avail > n - so_far {
                avail = n - so_far;
            }
            out.push((seg.space_mut().as_mut_ptr(), avail));
            so_far += avail;
        }
        out
    }

    /// `evbuffer_reserve_space`: regions where `n` bytes can be written, in at most `nvecs` iovecs. With one
    /// iovec it is one segment's whole space; with more, the space of the last segments (libevent's choice).
    pub fn reserve(&mut self, n: usize, nvecs: usize) -> Result<Vec<SpaceVec>, Error> {
        self.check_end()?;
        if nvecs == 0 {
            return Err(Error::Invalid);
        }
        if nvecs == 1 {
            let idx = self.expand_single(n)?;
            let seg = &mut self.segs[idx];
            let len = seg.space();
            return Ok(vec![(seg.space_mut().as_mut_ptr(), len)]);
        }
        self.expand_fast(n, nvecs)?;
        Ok(self.space_vecs(n, nvecs, false))
    }

    /// `evbuffer_commit_space`: counts as data what the application wrote into reserved regions. Each region
    /// must start where a segment's space starts and fit in it, in chain order; returns the bytes added.
    pub fn commit(&mut self, vecs: &[DataVec]) -> Result<usize, Error> {
        self.check_end()?;
        if vecs.is_empty() {
            return Ok(0);
        }
        let tail = self.tail_start();
        let mut added = 0;
        if let [(p, len)] = vecs {
            if let Some(last) = self.segs.back_mut() {
                if *p == last.space_ptr() {
                    if *len > last.space() {
                        return Err(Error::Invalid);
                    }
                    last.commit(*len);
                    added = *len;
                    self.compact_tail(tail);
                    self.account_added(added);
                    return Ok(added);
                }
            }
        }
        let Some(mut first) = self.last_with_data() else { return Err(Error::Invalid) };
        if self.segs[first].space() == 0 {
            first += 1;
        }
        for (i, &(p, len)) in vecs.iter().enumerate() {
            let Some(seg) = self.segs.get(first + i) else { return Err(Error::Invalid) };
            if p != seg.space_ptr() || len > seg.space() {
                return Err(Error::Invalid);
            }
        }
        for (i, &(_, len)) in vecs.iter().enumerate() {
            self.segs[first + i].commit(len);
            added += len;
        }
        self.compact_tail(tail);
        self.account_added(added);
        Ok(added)
    }

    /// Space for a read of up to `n` bytes in at most `nvecs` regions (`evbuffer_read`'s setup; the regions total
    /// exactly `n`).
    pub fn read_space(&mut self, n: usize, nvecs: usize) -> Result<Vec<SpaceVec>, Error> {
        self.check_end()?;
        self.expand_fast(n, nvecs)?;
        Ok(self.space_vecs(n, nvecs, true))
    }

    /// Counts `n` bytes just read into the regions [`Buffer::read_space`] gave, filling them in order.
    pub fn commit_read(&mut self, n: usize) {
        let tail = self.tail_start();
        let mut first = self.last_with_data().expect("read_space made room");
        if self.segs[first].space() == 0 {
            first += 1;
        }
        let mut left = n;
        for seg in self.segs.range_mut(first..) {
            if left == 0 {
                break;
            }
            let k = seg.space().min(left);
            seg.commit(k);
            left -= k;
        }
        assert_eq!(left, 0, "read more than the reserved space");
        self.compact_tail(tail);
        self.account_added(n);
    }

    /// The data to write: regions from the front totalling `min(n, len)` bytes, at most `max_vecs` of them.
    pub fn write_vecs(&self, n: usize, max_vecs: usize) -> Vec<DataVec> {
        let mut left = n.min(self.total);
        let mut out = Vec::new();
        for seg in &self.segs {
            if left == 0 || out.len() == max_vecs {
                break;
            }
            let d = seg.data();
            let k = d.len().min(left);
            if k > 0 {
                out.push((d.as_ptr(), k));
            }
            left -= k;
        }
        out
    }
}

#[cfg(test)]
mod tests;
