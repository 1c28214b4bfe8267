//! The one place raw memory becomes a [`Backing`]: bytes lent by the application (`evbuffer_add_reference`) or
//! by another owner (file segments, later dataplane mbufs), with the lender's release hook run exactly once, when
//! the last segment referring to them is gone.
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

/// Bytes held in a vector (file contents read into memory), released by `on_release` when dropped.
pub struct Owned {
    bytes: Vec<u8>,
    on_release: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl Owned {
    /// Holds `bytes`.
    pub fn new(bytes: Vec<u8>) -> Owned {
        Owned { bytes, on_release: std::sync::Mutex::new(Vec::new()) }
    }

    /// Adds a hook run when the last reference is dropped (`evbuffer_file_segment_add_cleanup_cb`).
    pub fn on_release(&self, hook: Box<dyn FnOnce() + Send>) {
        self.on_release.lock().unwrap_or_else(|p| p.into_inner()).push(hook);
    }
}

impl Backing for Owned {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let hooks = std::mem::take(self.on_release.get_mut().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks {
            hook();
        }
    }
}
