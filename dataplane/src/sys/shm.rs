//! A file mapped shared as an array of 64-bit atomics: the live statistics page `ixctl` reads.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A shared mapping of a file, seen as `u64` words. The creator removes the file on drop.
#[derive(Debug)]
pub struct SharedWords {
    base: NonNull<AtomicU64>,
    words: usize,
    path: PathBuf,
    owner: bool,
}

impl SharedWords {
    /// Creates (truncating) `path` with room for `words` words, mode 0644, and maps it read-write.
    pub fn create(path: &Path, words: usize) -> io::Result<SharedWords> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o644).open(path)?;
        file.set_len((words * 8) as u64)?;
        Self::map(file, path, words, true)
    }

    /// Maps an existing statistics file read-only.
    pub fn open(path: &Path) -> io::Result<SharedWords> {
        let file = File::open(path)?;
        let words = (file.metadata()?.len() / 8) as usize;
        if words == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty statistics file"));
        }
        Self::map(file, path, words, false)
    }

    fn map(file: File, path: &Path, words: usize, writable: bool) -> io::Result<SharedWords> {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: mapping `words * 8` bytes of a file at least that long, shared, at a kernel-chosen address.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), words * 8, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(SharedWords { base, words, path: path.to_path_buf(), owner: writable })
    }

    /// The words. Readers of a read-only mapping must only `load`.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned), `words * 8` bytes long and lives as long as `self`;
        // AtomicU64 has the layout of u64 and every bit pattern is valid; all access is atomic.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }

    /// The file behind the mapping.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no reference from `words()` outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.words * 8) };
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// SAFETY: the mapping is only accessed through atomics, so sharing and sending the owner between threads is sound.
unsafe impl Send for SharedWords {}
// SAFETY: as above: `&SharedWords` only gives out `&[AtomicU64]`.
unsafe impl Sync for SharedWords {}
