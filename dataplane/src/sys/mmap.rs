//! Anonymous memory regions for mbuf pools: 2 MiB huge pages when the system has them, 4 KiB pages otherwise.
use std::io;
use std::ptr::NonNull;

/// Size of one huge page on x86-64.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// An owned, page-aligned, zero-filled anonymous mapping, unmapped on drop.
#[derive(Debug)]
pub struct MemoryRegion {
    base: NonNull<u8>,
    len: usize,
    huge: bool,
}

impl MemoryRegion {
    /// Maps `len` bytes (rounded up to a huge page), preferring huge pages when `try_huge` is set.
    ///
    /// Falls back to ordinary pages with one log line when no huge page can be had, so a machine without
    /// reserved huge pages still runs, only with more TLB misses.
    pub fn new(len: usize, try_huge: bool) -> io::Result<MemoryRegion> {
        let len = len.div_ceil(HUGE_PAGE_SIZE).max(1) * HUGE_PAGE_SIZE;
        if try_huge {
            match Self::map(len, libc::MAP_HUGETLB | libc::MAP_POPULATE) {
                Ok(region) => {
                    log::info!("mbuf pool: {} KiB on 2 MiB huge pages", len / 1024);
                    return Ok(region);
                }
                Err(e) => log::info!(
                    "no 2 MiB huge pages for a {} KiB mbuf pool ({e}); using 4 KiB pages (reserve some in \
                     /proc/sys/vm/nr_hugepages)",
                    len / 1024
                ),
            }
        }
        Self::map(len, libc::MAP_POPULATE)
    }

    fn map(len: usize, extra_flags: libc::c_int) -> io::Result<MemoryRegion> {
        // SAFETY: an anonymous private mapping with a null hint has no preconditions; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(MemoryRegion { base, len, huge: extra_flags & libc::MAP_HUGETLB != 0 })
    }

    /// Start of the region. Valid for `len()` bytes for the region's lifetime.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region is at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the region is backed by huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// The whole region as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `base` is valid for `len` bytes while `self` lives, and `&self` prevents concurrent `&mut`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    /// The whole region as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `base` is valid for `len` bytes and `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe exactly the mapping created in `map`, which nothing else unmaps.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the region is exclusively owned memory; moving its owner to another thread is sound (access still goes
// through `&`/`&mut self`).
unsafe impl Send for MemoryRegion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_rounded_and_zeroed_with_fallback() {
        let mut r = MemoryRegion::new(1000, true).expect("mmap");
        assert_eq!(r.len(), HUGE_PAGE_SIZE);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        r.as_mut_slice()[HUGE_PAGE_SIZE - 1] = 7;
        assert_eq!(r.as_slice()[HUGE_PAGE_SIZE - 1], 7);
    }
}
