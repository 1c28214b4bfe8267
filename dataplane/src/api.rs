//! IX's native API as Rust values: batched commands in, event conditions out (paper §3.2, Table 1).
//!
//! This is the only door between libix (the libevent engine, the C API in `capi/`) and the dataplane: an array
//! of [`Command`]s goes into [`Dataplane::run_io`](crate::Dataplane::run_io), each gets a [`Ret`], and the cycle
//! appends [`Event`]s. Received data is lent to the app read-only ([`LentBuf`]) until it says `RecvDone`; the
//! dataplane checks every buffer and port the app names, so a stale or forged one gets [`Ret::BadHandle`], never
//! a crash. Whether `run_io` is a function call (today), a trap into a protected dataplane (Dune mode) or a
//! message to another process is invisible from here.
use crate::wire::Ipv4Address;
use std::io::IoSlice;

/// Return code of a command. Negative values are errors; C sees the same numbers (`IX_RET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Ret {
    /// Done.
    Ok = 0,
    /// The buffer, handle or port named is not one the app holds.
    BadHandle = -1,
    /// Back-pressure: queues are full; retry after the next cycle.
    Again = -2,
    /// A malformed argument (zero port, empty vector where one is required, ...).
    Invalid = -3,
    /// No mbuf free.
    NoMem = -4,
    /// The datagram does not fit one frame (no IP fragmentation).
    TooBig = -5,
    /// No route to the destination (off-link without a gateway).
    Unreachable = -6,
    /// The operation is not supported by this dataplane.
    NotSupported = -7,
    /// The port is already bound.
    AddrInUse = -8,
}

/// An IPv4 address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address.
    pub addr: Ipv4Address,
    /// Port, host order.
    pub port: u16,
}

/// One command of a batch.
#[derive(Debug)]
pub enum Command<'a> {
    /// Starts receiving UDP datagrams sent to `port` on our address.
    UdpBind {
        /// Local port (non-zero).
        port: u16,
    },
    /// Stops receiving on `port`.
    UdpUnbind {
        /// Local port.
        port: u16,
    },
    /// Sends one datagram from local `src_port` to `dst`. The payload is copied into a frame before `run_io`
    /// returns; a `UdpSent` event with `cookie` confirms it.
    UdpSend {
        /// Local port.
        src_port: u16,
        /// Destination.
        dst: Endpoint,
        /// Scatter-gather payload, concatenated in order (one element for a plain send).
        payload: &'a [IoSlice<'a>],
        /// App's value, echoed in `UdpSent`.
        cookie: u64,
    },
    /// Gives back a buffer lent in a `UdpRecv` event: any address inside the buffer's frame is accepted.
    RecvDone {
        /// Pointer the app got in the event.
        data: *const u8,
    },
}

/// A received buffer lent to the app, read-only, until `RecvDone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LentBuf {
    /// First byte (inside the dataplane's pool).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: u32,
    /// Frame index in the pool (what `RecvDone` resolves `ptr` to).
    pub index: u32,
}

/// One event condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A datagram arrived on a bound port.
    UdpRecv {
        /// The payload, lent.
        buf: LentBuf,
        /// Sender.
        src: Endpoint,
        /// Local port it was sent to.
        dst_port: u16,
    },
    /// A `UdpSend` completed: its buffers may be reused.
    UdpSent {
        /// The command's cookie.
        cookie: u64,
    },
}

/// The events of one `run_io`, bounded: never grows past its limit, never reallocates.
#[derive(Debug)]
pub struct Events {
    buf: Vec<Event>,
    limit: usize,
}

impl Events {
    /// Room for up to `capacity` events (allocated once, here).
    pub fn with_capacity(capacity: usize) -> Events {
        Events { buf: Vec::with_capacity(capacity), limit: capacity }
    }

    /// Empties the buffer and bounds the next cycle to `limit` events (at most the capacity).
    pub fn reset(&mut self, limit: usize) {
        self.buf.clear();
        self.limit = limit.min(self.buf.capacity());
    }

    /// Free slots.
    pub fn room(&self) -> usize {
        self.limit - self.buf.len()
    }

    /// Appends `ev` if there is room; returns whether it was taken.
    pub fn push(&mut self, ev: Event) -> bool {
        if self.buf.len() < self.limit {
            self.buf.push(ev);
            true
        } else {
            false
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The events, in order.
    pub fn as_slice(&self) -> &[Event] {
        &self.buf
    }
}
