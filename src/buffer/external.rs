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
