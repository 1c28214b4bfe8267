//! App buffers the dataplane reads after the call that named them: TCP's zero-copy send (paper §4.3).
//!
//! IX's `sendv` does not copy: the app keeps its buffers unchanged until a `sent` event covers them, and the
//! dataplane reads them whenever it (re)transmits. This module is the one place that reads such memory; the
//! contract is taken by the only constructor, [`AppBuf::new`], which is `unsafe`.
#![allow(unsafe_code)]

/// A byte range in the app's memory that stays valid and unchanged until the dataplane says it is done with it
/// (`TcpSent` covering its last byte, or `TcpDead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct AppBuf {
    ptr: *const u8,
    len: usize,
}

impl AppBuf {
    /// Names `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr + len` is readable and is neither freed nor written until the dataplane has acknowledged every
    /// byte of it with a `TcpSent` event or reported the connection `TcpDead`. (`len == 0` accepts any pointer.)
    pub unsafe fn new(ptr: *const u8, len: usize) -> AppBuf {
        AppBuf { ptr, len }
    }

    /// Names a slice that outlives the connection (tests, static data).
    pub fn from_static(bytes: &'static [u8]) -> AppBuf {
        AppBuf { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// The first `n` bytes (all of it if `n` is larger): valid under the same contract as `self`.
    pub fn prefix(&self, n: usize) -> AppBuf {
        AppBuf { ptr: self.ptr, len: n.min(self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `out.len()` bytes starting `offset` bytes into the buffer. `offset + out.len() <= len()`.
    pub fn copy_to(&self, offset: usize, out: &mut [u8]) {
        assert!(offset.checked_add(out.len()).is_some_and(|end| end <= self.len), "app buffer read out of range");
        if out.is_empty() {
            return;
        }
        // SAFETY: the range is inside `ptr..ptr+len` (asserted above), which the creator of this AppBuf promised
        // (AppBuf::new's contract) stays readable and unchanged until the dataplane releases it; `out` is our own
        // frame memory, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), out.as_mut_ptr(), out.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_ranges() {
        let b = AppBuf::from_static(b"hello world");
        let mut out = [0u8; 5];
        b.copy_to(6, &mut out);
        assert_eq!(&out, b"world");
        b.copy_to(11, &mut []);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn refuses_reads_past_the_end() {
        AppBuf::from_static(b"abc").copy_to(2, &mut [0u8; 2]);
    }
}
