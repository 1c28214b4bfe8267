//! IX's native API as Rust values: batched commands in, event conditions out (paper §3.2, Table 1).
//!
//! This is the only door between libix (the libevent engine, the C API in `capi/`) and the dataplane: an array
//! of [`Command`]s goes into [`Dataplane::run_io`](crate::Dataplane::run_io), each gets a [`Ret`], and the cycle
//! appends [`Event`]s. Received data is lent to the app read-only ([`LentBuf`]) until it says `RecvDone`; the
//! dataplane checks every buffer and port the app names, so a stale or forged one gets [`Ret::BadHandle`], never
//! a crash. Whether `run_io` is a function call (today), a trap into a protected dataplane (Dune mode) or a
//! message to another process is invisible from here.
pub use crate::tcp::appbuf::AppBuf;
pub use crate::tcp::conn::DeadReason;
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
    /// The connection is not (or no longer) in a state that allows this.
    NotConnected = -9,
    /// The peer never answered.
    TimedOut = -10,
    /// The peer refused the connection.
    Refused = -11,
}

/// What a command returns: a value (a handle, a byte count, or 0) or an error code.
pub type CmdResult = Result<u64, Ret>;

/// The C encoding of a result: the value, or the negative `Ret`.
pub fn encode_result(r: CmdResult) -> i64 {
    match r {
        Ok(v) => v.min(i64::MAX as u64) as i64,
        Err(e) => e as i32 as i64,
    }
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
    /// Accepts TCP connections on `port` (IX fixed its ports in a config file; here the app asks at run time).
    TcpListen {
        /// Local port.
        port: u16,
        /// Most connections waiting (half-open beyond it are answered with SYN cookies).
        backlog: u32,
    },
    /// Stops accepting on `port`.
    TcpUnlisten {
        /// Local port.
        port: u16,
    },
    /// Opens a connection; returns its handle. `TcpConnected` reports the outcome.
    TcpConnect {
        /// The peer.
        dst: Endpoint,
        /// App's value for this connection's events.
        cookie: u64,
    },
    /// Takes a connection announced by `TcpKnock`, naming its cookie.
    TcpAccept {
        /// From the knock.
        handle: u64,
        /// App's value for this connection's events.
        cookie: u64,
    },
    /// Refuses a connection announced by `TcpKnock` (RST).
    TcpReject {
        /// From the knock.
        handle: u64,
    },
    /// Sends as much of `bufs` as the peer's window takes; returns the bytes taken. Zero-copy: the buffers must
    /// stay unchanged until `TcpSent` events cover them (see [`AppBuf::new`]).
    TcpSendv {
        /// The connection.
        handle: u64,
        /// The data, in order.
        bufs: &'a [AppBuf],
    },
    /// Gives back `len` bytes of received data (oldest first); reopens the window.
    TcpRecvDone {
        /// The connection.
        handle: u64,
        /// Bytes.
        len: u64,
    },
    /// Closes our direction (FIN after the data). The handle stays valid until `TcpDead`.
    TcpClose {
        /// The connection.
        handle: u64,
    },
    /// Resets the connection at once; the handle is invalid afterwards and no more events come.
    TcpAbort {
        /// The connection.
        handle: u64,
    },
    /// Turns keepalive probes on or off (RFC 1122 §4.2.3.6; what `SO_KEEPALIVE` maps to). A connection whose
    /// peer stops answering dies with `TimedOut`.
    TcpKeepalive {
        /// The connection.
        handle: u64,
        /// On or off.
        enable: bool,
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
    /// A connection to a listening port is established; `TcpAccept` or `TcpReject` it.
    TcpKnock {
        /// The new connection.
        handle: u64,
        /// The peer.
        remote: Endpoint,
        /// Our port.
        local_port: u16,
    },
    /// A `TcpConnect` finished: `ret` is `Ok`, `Refused` or `TimedOut` (then the handle is gone).
    TcpConnected {
        /// The connection's cookie.
        cookie: u64,
        /// The connection.
        handle: u64,
        /// Outcome.
        ret: Ret,
        /// The local port the connection got (its ephemeral port), so the app can name its own end.
        local_port: u16,
    },
    /// In-order data, lent read-only until `TcpRecvDone` gives its bytes back.
    TcpRecv {
        /// The connection's cookie.
        cookie: u64,
        /// The connection.
        handle: u64,
        /// First byte.
        data: *const u8,
        /// Length.
        len: u32,
    },
    /// The peer acknowledged `acked` more bytes (their buffers may be reused); `window` bytes may be sent now.
    TcpSent {
        /// The connection's cookie.
        cookie: u64,
        /// The connection.
        handle: u64,
        /// Newly acknowledged bytes.
        acked: u64,
        /// What `TcpSendv` would take now.
        window: u64,
    },
    /// The peer closed its direction (end of data); we may still send.
    TcpEof {
        /// The connection's cookie.
        cookie: u64,
        /// The connection.
        handle: u64,
    },
    /// The connection is over; the handle is invalid and every buffer it held is released.
    TcpDead {
        /// The connection's cookie.
        cookie: u64,
        /// The connection.
        handle: u64,
        /// Why.
        reason: DeadReason,
    },
}

/// The events of one `run_io`, bounded by the app's array. Events the cycle could not fit (a timer firing for
/// many connections at once) wait in an overflow queue and come first next time: none is ever lost.
#[derive(Debug)]
pub struct Events {
    buf: Vec<Event>,
    limit: usize,
    overflow: std::collections::VecDeque<Event>,
}

impl Events {
    /// Room for up to `capacity` events per cycle (allocated once, here).
    pub fn with_capacity(capacity: usize) -> Events {
        Events { buf: Vec::with_capacity(capacity), limit: capacity, overflow: std::collections::VecDeque::new() }
    }

    /// Starts a cycle bounded to `limit` events (at most the capacity); deferred events are moved in first.
    pub fn reset(&mut self, limit: usize) {
        self.buf.clear();
        self.limit = limit.min(self.buf.capacity());
        while self.buf.len() < self.limit {
            match self.overflow.pop_front() {
                Some(ev) => self.buf.push(ev),
                None => break,
            }
        }
    }

    /// Free slots in this cycle.
    pub fn room(&self) -> usize {
        self.limit - self.buf.len()
    }

    /// Appends `ev`; returns false if it had to wait in the overflow queue for the next cycle.
    pub fn push(&mut self, ev: Event) -> bool {
        if self.buf.len() < self.limit {
            self.buf.push(ev);
            true
        } else {
            self.overflow.push_back(ev);
            false
        }
    }

    /// Number of events in this cycle.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether this cycle has none.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Events waiting for the next cycle.
    pub fn deferred(&self) -> usize {
        self.overflow.len()
    }

    /// The events, in order.
    pub fn as_slice(&self) -> &[Event] {
        &self.buf
    }
}
