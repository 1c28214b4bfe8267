//! Reading received bytes the dataplane lent: `TcpRecv` hands a pointer into an mbuf that stays valid, read-only,
//! until the matching `TcpRecvDone`. This is the one place the socket layer reads such memory.
#![allow(unsafe_code)]

/// A received segment, lent until given back; `consumed` bytes of it were already read by the app. A segment
/// whose connection died is detached: its unread bytes copied into memory of its own (`owned`).
#[derive(Debug)]
pub struct Lent {
    ptr: *const u8,
    len: usize,
    consumed: usize,
    owned: Option<Box<[u8]>>,
}

// SAFETY: the pointer names dataplane memory that is valid from any thread until the segment is given back, and
// the socket layer only touches a `Lent` under the lock of the shard that holds it.
unsafe impl Send for Lent {}

impl Lent {
    /// Records a lent segment.
    ///
    /// # Safety
    /// `ptr..ptr + len` is readable and unchanged until a `TcpRecvDone` covering it is submitted (the
    /// dataplane's contract for `TcpRecv`), and the caller submits that only after dropping this value.
    pub unsafe fn new(ptr: *const u8, len: usize) -> Lent {
        Lent { ptr, len, consumed: 0, owned: None }
    }

    /// Unread bytes.
    pub fn remaining(&self) -> usize {
        self.len - self.consumed
    }

    /// Whole length (what its `TcpRecvDone` gives back).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The unread bytes.
    pub fn unread(&self) -> &[u8] {
        if let Some(owned) = &self.owned {
            return &owned[self.consumed..];
        }
        // SAFETY: `new`'s contract: the range is valid until this value is dropped and the segment given back.
        unsafe { std::slice::from_raw_parts(self.ptr.add(self.consumed), self.len - self.consumed) }
    }

    /// Copies the unread bytes out of the lent buffer, which the dataplane is taking back (`TcpDead` releases
    /// every buffer of the connection, while POSIX lets the app read what arrived before the end). Called while
    /// handling the `TcpDead` event, before the next cycle runs.
    pub fn detach(&mut self) {
        if self.owned.is_none() {
            let copy: Box<[u8]> = self.unread().into();
            self.len = copy.len();
            self.consumed = 0;
            self.owned = Some(copy);
        }
    }

    /// Marks `n` more bytes read.
    pub fn consume(&mut self, n: usize) {
        self.consumed = (self.consumed + n).min(self.len);
    }
}

/// A dataplane queue owned by the socket layer. It is `!Send` because its event array holds pointers into its
/// mbuf pool and its NIC is a `dyn NicQueue` (the in-memory test wire shares `Rc` state). The layer opens only
/// AF_XDP and TAP queues (fds and process-wide mappings, usable from any thread) through `runtime::Port`, and uses
/// each from one thread at a time, under its shard's lock.
pub struct SendQueue(pub crate::runtime::Queue);

// SAFETY: see above: exclusive use under its shard's mutex; only AF_XDP/TAP backends (no thread-affine state);
// the raw pointers name process-wide pool memory.
unsafe impl Send for SendQueue {}
