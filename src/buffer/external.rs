//! The one place the buffer code touches raw memory: bytes lent by the application (`evbuffer_add_reference`) or
//! by another owner (later dataplane mbufs) become a [`Backing`], with the lender's release hook run exactly once,
//! when the last segment referring to them is gone; and segment memory is allocated zeroed by the allocator
//! ([`zeroed`]), so large chains cost no page touches until used (as libevent's uninitialised malloc).
#![allow(unsafe_code)]

use super::Backing;

/// Lent bytes and what to do when they are no longer needed.
pub struct External {
    ptr: *const u8,
    len: usize,
    release: Option<Box<dyn FnOnce() + Send>>,
}

// SAFETY: the bytes are only read, and `new`'s contract makes them valid and unchanging from any thread until the
// release hook runs; the hook itself is Send.
unsafe impl Send for External {}
// SAFETY: as above; `&External` only reads.
unsafe impl Sync for External {}

impl External {
    /// Lends `len` bytes at `ptr`; `release` runs once when they are no longer referenced.
    ///
    /// # Safety
    /// `ptr` is valid for reads of `len` bytes (or `len` is 0) and the bytes do not change until `release` runs.
    pub unsafe fn new(ptr: *const u8, len: usize, release: Option<Box<dyn FnOnce() + Send>>) -> External {
        External { ptr, len, release }
    }
}

impl Backing for External {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: `new`'s contract: valid for reads of `len` bytes until the release hook, which runs in drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for External {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// `n` zero bytes from the allocator's zeroed path (calloc: fresh pages are not written), or None if the
/// allocation fails (libevent returns -1 then; a Rust `vec!` would abort).
pub fn zeroed(n: usize) -> Option<Box<[u8]>> {
    if n == 0 {
        return Some(Box::default());
    }
    let layout = std::alloc::Layout::array::<u8>(n).ok()?;
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` holds `n` initialised (zero) bytes allocated by the global allocator with the layout of a
    // `[u8; n]`, which is what Box<[u8]> frees with.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) })
}

/// A read-only private mapping of part of a file (file segments: the bytes are paged in when read, never copied
/// into the buffer).
pub struct Mapping {
    base: *mut libc::c_void,
    map_len: usize,
    /// Bytes between the page-aligned mapping start and the requested offset.
    skip: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; reading it from any thread is fine.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` (> 0) bytes of `fd` from `offset`; None if the kernel refuses (then read the file instead).
    ///
    /// # Safety
    /// The file's mapped range is not modified or truncated while the mapping lives (libevent's contract for file
    /// segments: the bytes would change under readers, or reading them would raise SIGBUS).
    pub unsafe fn new(fd: i32, offset: u64, len: usize) -> Option<Mapping> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = u64::try_from(page).ok().filter(|&p| p > 0)?;
        let aligned = offset - offset % page;
        let skip = usize::try_from(offset - aligned).ok()?;
        let map_len = len.checked_add(skip)?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only private mapping; the kernel checks fd, offset and length.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ, libc::MAP_PRIVATE, fd, aligned as libc::off_t)
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping { base, map_len, skip, len })
    }
}

impl Backing for Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping covers `skip + len` readable bytes for as long as `self` lives (`new`'s contract
        // keeps them unchanged).
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.skip), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once; no slice of it outlives `self`.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}
