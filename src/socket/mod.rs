//! The socket layer: POSIX TCP sockets on the dataplane, behind real fd numbers (DESIGN.md §5).
//!
//! An application socket starts as a kernel socket. When it binds to the dataplane's address, or connects to a
//! host in the dataplane's subnet, it becomes a dataplane socket: its fd number is kept but now names an eventfd
//! (a pollable placeholder whose readiness mirrors the socket's), and every interposed call on it (`capi/posix.rs`)
//! lands here. A listener bound to INADDR_ANY listens on both worlds: its fd becomes an epoll instance holding the
//! kernel listening socket and the placeholder, so it is readable when either has a connection. Everything else
//! stays in the kernel untouched.
//!
//! This layer is a native-API application: it reaches the dataplane only through `runtime::Queue::run_io`
//! (commands in, event conditions out). Received data stays in the mbufs the dataplane lends (`read` copies from
//! them, then gives them back); written data is copied once into the socket's send buffer (POSIX lets the app
//! reuse its buffer at once) and handed to TCP zero-copy, coalesced into one `sendv` per flow per cycle.
//!
//! Cycles run from whichever thread gets there: every event_base loop iteration ([`before_wait`]), blocking
//! calls, and `poll`. One lock guards the layer; threads that find it busy go on (the holder is making progress).
//! Correct for any thread using any fd; per-flow lock-free paths (owner == user) are the next step.

pub(crate) mod kernel;
mod lent;
mod sendbuf;

pub mod fdmap;
pub mod sink;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use dataplane::api::{AppBuf, Command, DeadReason, Endpoint, Event, Ret};
use dataplane::config::Config;
use dataplane::wire::ipv4::{Ipv4Address, Ipv4Cidr};

use crate::runtime::Port;
use kernel::Errno;
use lent::Lent;
use sendbuf::SendBuf;
pub use sink::{spinners, ReadySink};

pub use kernel::Errno as SocketErrno;

/// Default send-buffer bound per socket (bytes written but not yet acknowledged), like Linux's `tcp_wmem`.
const DEFAULT_SNDBUF: usize = 1 << 20;
/// Events per cycle.
const EVENTS_PER_CYCLE: usize = 256;
/// How long a base keeps polling (timeout 0) after the dataplane last had work, before it sleeps.
const DEFAULT_SPIN: Duration = Duration::from_micros(100);
/// An eventfd counter value that reads as readable but not writable.
const READABLE_ONLY: u64 = u64::MAX - 1;

/// Process-wide state: `None` when no dataplane is configured (`IX_IFACE` unset) or it could not open.
static LAYER: OnceLock<Option<Layer>> = OnceLock::new();
/// Set once the dataplane is open: the cheap test every event loop makes.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Monotonic microseconds of the dataplane's next timer, or `u64::MAX`.
static NEXT_TIMER_US: AtomicU64 = AtomicU64::new(u64::MAX);
/// The next cycle has work without waiting for a frame or a timer: staged writes or commands, frames a full TX
/// ring left over, output a full TX batch held back. No event loop may sleep while it is set.
static WORK_PENDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread runs layer code: interposed calls made by the layer itself (opening the NIC binds
    /// AF_XDP sockets, for instance) go straight to the kernel.
    static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// CLOCK_MONOTONIC in microseconds (the dataplane's clock).
fn now_us() -> u64 {
    dataplane::time::Instant::now().total_micros()
}

/// Whether `fd` is a dataplane socket (and the calling thread is not inside the layer).
#[inline]
pub fn owns(fd: RawFd) -> bool {
    fdmap::is_dataplane(fd) && !inside_layer()
}

/// Whether `fd` is a dataplane socket by the fd map alone (the caller checks [`inside`] before acting on it):
/// one atomic load, inlined into every interposed call.
#[inline]
pub fn maybe_owns(fd: RawFd) -> bool {
    fdmap::is_dataplane(fd)
}

/// `inside`, out of line: inlined, the compiler would compute the thread-local's address (a call) before the
/// bitmap test, on every call on a kernel fd.
#[inline(never)]
fn inside_layer() -> bool {
    INSIDE.with(|c| c.get())
}

/// Whether the calling thread is inside the layer (its kernel calls must not be interposed).
#[inline]
pub fn inside() -> bool {
    INSIDE.with(|c| c.get())
}

struct InsideGuard(bool);
impl InsideGuard {
    fn enter() -> InsideGuard {
        InsideGuard(INSIDE.with(|c| c.replace(true)))
    }
}
impl Drop for InsideGuard {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(self.0));
    }
}

/// The layer, opening the dataplane on first use. `None` if none is configured or it failed (logged once).
fn layer() -> Option<&'static Layer> {
    LAYER
        .get_or_init(|| {
            if std::env::var_os("IX_IFACE").is_none_or(|v| v.is_empty()) {
                return None;
            }
            crate::runtime::init_logging();
            let _inside = InsideGuard::enter();
            match Layer::open() {
                Ok(l) => {
                    ACTIVE.store(true, Ordering::Release);
                    Some(l)
                }
                Err(e) => {
                    log::error!("libix: dataplane sockets unavailable, every socket stays in the kernel: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// A socket's id: slot index and generation (the cookie of its connection's events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SockId(u64);

impl SockId {
    fn new(index: usize, generation: u32) -> SockId {
        SockId(((generation as u64) << 32) | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Debug, Default)]
enum ConnState {
    /// `connect` sent the SYN; waiting for `TcpConnected`.
    #[default]
    Connecting,
    /// Data may flow.
    Established,
    /// The connection is over (`TcpDead` or a failed connect); `error` says why.
    Dead,
}

#[derive(Debug, Default)]
struct Conn {
    handle: u64,
    queue: usize,
    state: ConnState,
    rx: VecDeque<Lent>,
    rx_bytes: usize,
    /// Bytes of fully read segments not yet given back.
    recv_done: u64,
    eof: bool,
    /// Pending error for `SO_ERROR` / the next call.
    error: Option<Errno>,
    tx: SendBuf,
    /// The app shut down its direction: FIN once `tx` is handed.
    shut_wr: bool,
    fin_sent: bool,
    shut_rd: bool,
}

#[derive(Debug)]
struct Listener {
    port: u16,
    backlog: usize,
    ready: VecDeque<SockId>,
    /// The kernel listening socket of an INADDR_ANY listener.
    kernel: Option<RawFd>,
}

#[derive(Debug)]
enum Kind {
    /// Bound to the dataplane, neither listening nor connected.
    Bound,
    Listener(Listener),
    Conn(Conn),
}

/// An event loop watching a socket: readiness goes to its sink instead of the placeholder eventfd.
#[derive(Debug)]
struct Watch {
    sink: Arc<ReadySink>,
    /// EV_READ / EV_WRITE / EV_CLOSED the loop asked for.
    mask: i16,
    edge: bool,
    /// What the sink holds now (-1: nothing posted yet).
    posted: i16,
}

const EV_READ: i16 = 0x02;
const EV_WRITE: i16 = 0x04;
const EV_CLOSED: i16 = 0x80;

#[derive(Debug)]
struct Socket {
    /// The app's fd number; `None` for accepted connections not yet taken by `accept`, and for connections the
    /// app closed that are still sending (orphans).
    fd: Option<RawFd>,
    /// The eventfd whose counter mirrors readiness (equal to `fd` unless the fd is a dual listener's epoll).
    notify: RawFd,
    /// Current counter state, to skip redundant syscalls.
    posted: Option<u64>,
    nonblocking: bool,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    sndbuf: usize,
    options: HashMap<(i32, i32), i32>,
    linger: Option<libc::linger>,
    /// The app closed it; a connection lives on only to send what was written (an orphan), then goes.
    closed: bool,
    watch: Option<Watch>,
    /// SO_RCVTIMEO / SO_SNDTIMEO: how long a blocking call waits (`None`: for ever).
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
    kind: Kind,
}

/// What the dataplane should do, queued under the lock and submitted at the next cycle.
#[derive(Debug)]
enum Pending {
    Listen { port: u16, backlog: u32 },
    Unlisten { port: u16 },
    Accept { handle: u64, cookie: u64 },
    Reject { handle: u64 },
    RecvDone { handle: u64, len: u64 },
    Close { handle: u64 },
    Abort { handle: u64 },
    Keepalive { handle: u64, enable: bool },
    UdpDone { data: usize },
}

struct Inner {
    queues: Vec<lent::SendQueue>,
    pending: Vec<Vec<Pending>>,
    slots: Vec<(u32, Option<Socket>)>,
    free: Vec<usize>,
    by_fd: HashMap<RawFd, SockId>,
    /// The sockets bound to each dataplane port: one, or several that all set SO_REUSEPORT (a listener per
    /// thread; connections are spread over them by flow hash, as Linux does).
    by_port: HashMap<u16, Vec<SockId>>,
    /// Sockets with bytes waiting for `sendv` (or a FIN to send).
    dirty: Vec<SockId>,
    connects: Vec<(usize, SockId, Endpoint)>,
    next_poll: Option<dataplane::time::Instant>,
    /// The dataplane's address: the local address of every connection it carries.
    address: Ipv4Addr,
    /// The previous cycle's dirty list, emptied: swapped in so marking sockets dirty does not allocate.
    dirty_spare: Vec<SockId>,
}

struct Layer {
    cidr: Ipv4Cidr,
    nic_fds: Vec<RawFd>,
    spin: Duration,
    inner: Mutex<Inner>,
    _port: Port,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer").field("cidr", &self.cidr).field("nic_fds", &self.nic_fds).finish()
    }
}

fn to_ipv4(a: Ipv4Address) -> Ipv4Addr {
    Ipv4Addr::from(a.0)
}

impl Layer {
    fn open() -> Result<Layer, String> {
        let cfg = Config::from_env().map_err(|e| e.to_string())?;
        let port = Port::open(&cfg).map_err(|e| e.to_string())?;
        let mut queues = Vec::new();
        for q in 0..port.queues() {
            queues.push(lent::SendQueue(port.open_queue(q).map_err(|e| e.to_string())?));
        }
        let nic_fds = queues.iter().filter_map(|q| q.0.poll_fd()).collect();
        let spin = std::env::var("IX_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_micros)
            .unwrap_or(DEFAULT_SPIN);
        log::info!(
            "libix: dataplane sockets on {} ({}/{}), {} queue(s)",
            cfg.iface,
            to_ipv4(cfg.ip.addr),
            cfg.ip.prefix_len,
            queues.len()
        );
        let n = queues.len();
        Ok(Layer {
            cidr: cfg.ip,
            nic_fds,
            spin,
            inner: Mutex::new(Inner {
                queues,
                pending: (0..n).map(|_| Vec::new()).collect(),
                slots: Vec::new(),
                free: Vec::new(),
                by_fd: HashMap::new(),
                by_port: HashMap::new(),
                dirty: Vec::new(),
                connects: Vec::new(),
                next_poll: None,
                dirty_spare: Vec::new(),
                address: to_ipv4(cfg.ip.addr),
            }),
            _port: port,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn address(&self) -> Ipv4Addr {
        to_ipv4(self.cidr.addr)
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let bits = self.cidr.prefix_len.min(32) as u32;
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        (u32::from(ip) & mask) == (u32::from(self.address()) & mask) && !ip.is_loopback()
    }
}

impl Inner {
    fn insert(&mut self, sock: Socket) -> SockId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(sock);
        SockId::new(index, slot.0)
    }

    fn get(&mut self, id: SockId) -> Option<&mut Socket> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.0 != id.generation() {
            return None;
        }
        slot.1.as_mut()
    }

    fn remove(&mut self, id: SockId) -> Option<Socket> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.0 != id.generation() {
            return None;
        }
        let s = slot.1.take();
        if s.is_some() {
            self.free.push(id.index());
        }
        s
    }

    fn by_fd(&mut self, fd: RawFd) -> Result<(SockId, &mut Socket), Errno> {
        let id = *self.by_fd.get(&fd).ok_or(libc::EBADF)?;
        let s = self.get(id).ok_or(libc::EBADF)?;
        Ok((id, s))
    }

    /// Recomputes a socket's readiness and posts it: to the watching event loop's sink (no system call), or
    /// else on its placeholder eventfd (for poll/epoll by the app itself).
    fn post(&mut self, id: SockId) {
        let Some(s) = self.get(id) else { return };
        let (readable, writable) = s.readiness();
        if let (Some(w), Some(fd)) = (s.watch.as_mut(), s.fd) {
            let closed = matches!(&s.kind, Kind::Conn(c) if c.eof || matches!(c.state, ConnState::Dead));
            let mut what = 0;
            if readable && w.mask & EV_READ != 0 {
                what |= EV_READ;
            }
            if writable && w.mask & EV_WRITE != 0 {
                what |= EV_WRITE;
            }
            if closed && w.mask & EV_CLOSED != 0 {
                what |= EV_CLOSED;
            }
            if what != w.posted || (w.edge && what != 0) {
                w.sink.set(fd, what, w.edge);
                w.posted = what;
            }
            return;
        }
        let value = match (readable, writable) {
            (true, true) => 1,
            (true, false) => READABLE_ONLY,
            // "Neither" cannot be expressed by an eventfd; writable is the safe side (a write then says EAGAIN).
            (false, _) => 0,
        };
        if s.posted != Some(value) && s.fd.is_some() {
            kernel::eventfd_set(s.notify, value);
            s.posted = Some(value);
        }
    }

    fn push(&mut self, queue: usize, p: Pending) {
        self.pending[queue].push(p);
        WORK_PENDING.store(true, Ordering::Release);
    }

    /// Publishes whether the next cycle has work regardless of frames and timers.
    fn note_pending(&self, pending_tx: bool) {
        let pending = pending_tx
            || !self.dirty.is_empty()
            || !self.connects.is_empty()
            || self.pending.iter().any(|p| !p.is_empty());
        WORK_PENDING.store(pending, Ordering::Release);
    }
}

impl Socket {
    fn new(fd: Option<RawFd>, notify: RawFd, local: SocketAddrV4, kind: Kind) -> Socket {
        Socket {
            fd,
            notify,
            posted: None,
            nonblocking: false,
            local,
            remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            sndbuf: DEFAULT_SNDBUF,
            options: HashMap::new(),
            linger: None,
            closed: false,
            watch: None,
            rcvtimeo: None,
            sndtimeo: None,
            kind,
        }
    }

    fn readiness(&self) -> (bool, bool) {
        match &self.kind {
            Kind::Bound => (false, false),
            Kind::Listener(l) => (!l.ready.is_empty(), false),
            Kind::Conn(c) => match c.state {
                ConnState::Connecting => (false, false),
                ConnState::Dead => (true, true),
                ConnState::Established => {
                    let readable = c.rx_bytes > 0 || c.eof || c.shut_rd || c.error.is_some();
                    let writable = c.shut_wr || c.tx.len() < self.sndbuf;
                    (readable, writable)
                }
            },
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, Errno> {
        match &mut self.kind {
            Kind::Conn(c) => Ok(c),
            _ => Err(libc::ENOTCONN),
        }
    }
}

fn dead_errno(reason: DeadReason) -> Option<Errno> {
    match reason {
        DeadReason::Closed => None,
        DeadReason::Reset => Some(libc::ECONNRESET),
        DeadReason::TimedOut => Some(libc::ETIMEDOUT),
        DeadReason::Refused => Some(libc::ECONNREFUSED),
        DeadReason::Unreachable => Some(libc::EHOSTUNREACH),
    }
}

fn ret_errno(r: Ret) -> Errno {
    match r {
        Ret::BadHandle => libc::EBADF,
        Ret::Again | Ret::NoMem => libc::ENOBUFS,
        Ret::Invalid => libc::EINVAL,
        Ret::TooBig => libc::EMSGSIZE,
        Ret::Unreachable => libc::ENETUNREACH,
        Ret::NotSupported => libc::EOPNOTSUPP,
        Ret::AddrInUse => libc::EADDRINUSE,
        Ret::NotConnected => libc::ENOTCONN,
        Ret::TimedOut => libc::ETIMEDOUT,
        Ret::Refused => libc::ECONNREFUSED,
        Ret::Ok => 0,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The cycle

/// One owned command of a cycle (borrowed buffers live in `bufs`).
enum Cmd {
    Plain(Pending),
    Sendv { handle: u64, id: SockId, bufs: arrayvec::ArrayVec<AppBuf, { sendbuf::MAX_SLICES }> },
    Connect { id: SockId, dst: Endpoint },
}

impl Inner {
    /// Runs one dataplane cycle per queue: pending commands and coalesced sends go in, events come out and are
    /// turned into socket state and readiness. Returns whether anything happened.
    fn cycle(&mut self) -> bool {
        let mut busy = false;
        // The dirty list swaps with a kept spare (no allocation once warm); the command list is allocated only
        // by a cycle that has commands (it names app memory, so it is not kept between cycles).
        let spare = std::mem::take(&mut self.dirty_spare);
        let mut dirty = std::mem::replace(&mut self.dirty, spare);
        // A socket is marked dirty by every write and every `TcpSent`: it must get one `sendv` per cycle, since
        // each names the unhanded bytes as they stood before the cycle (two would send the same bytes twice).
        dirty.sort_unstable_by_key(|id| id.0);
        dirty.dedup();
        let connects = std::mem::take(&mut self.connects);
        for q in 0..self.queues.len() {
            let mut cmds: Vec<Cmd> = self.pending[q].drain(..).map(Cmd::Plain).collect();
            for &(cq, id, dst) in &connects {
                if cq == q {
                    cmds.push(Cmd::Connect { id, dst });
                }
            }
            for &id in &dirty {
                let Some(s) = self.get(id) else { continue };
                let Kind::Conn(c) = &mut s.kind else { continue };
                if c.queue != q || !matches!(c.state, ConnState::Established) {
                    continue;
                }
                if c.tx.unhanded() > 0 {
                    cmds.push(Cmd::Sendv { handle: c.handle, id, bufs: c.tx.unhanded_bufs() });
                } else if c.shut_wr && !c.fin_sent {
                    c.fin_sent = true;
                    cmds.push(Cmd::Plain(Pending::Close { handle: c.handle }));
                }
            }
            busy |= !cmds.is_empty();
            let queue = &mut self.queues[q].0;
            let n = queue.run_io(
                cmds.len(),
                |i| {
                    Ok(match &cmds[i] {
                        Cmd::Plain(p) => match *p {
                            Pending::Listen { port, backlog } => Command::TcpListen { port, backlog },
                            Pending::Unlisten { port } => Command::TcpUnlisten { port },
                            Pending::Accept { handle, cookie } => Command::TcpAccept { handle, cookie },
                            Pending::Reject { handle } => Command::TcpReject { handle },
                            Pending::RecvDone { handle, len } => Command::TcpRecvDone { handle, len },
                            Pending::Close { handle } => Command::TcpClose { handle },
                            Pending::Abort { handle } => Command::TcpAbort { handle },
                            Pending::Keepalive { handle, enable } => Command::TcpKeepalive { handle, enable },
                            Pending::UdpDone { data } => Command::RecvDone { data: data as *const u8 },
                        },
                        Cmd::Sendv { handle, bufs, .. } => Command::TcpSendv { handle: *handle, bufs },
                        Cmd::Connect { id, dst } => Command::TcpConnect { dst: *dst, cookie: id.0 },
                    })
                },
                EVENTS_PER_CYCLE,
                0,
            );
            busy |= n > 0;
            // Results and events are read in place, one copy at a time (they stay in the queue's arrays).
            for (i, cmd) in cmds.iter().enumerate() {
                let ret = self.queues[q].0.rets()[i];
                self.command_result(q, cmd, ret);
            }
            for i in 0..self.queues[q].0.events().len() {
                let ev = self.queues[q].0.events()[i];
                self.event(q, ev);
            }
            busy |= self.queues[q].0.dataplane().has_pending_work();
        }
        dirty.clear();
        self.dirty_spare = dirty;
        let pending_tx = self.queues.iter_mut().any(|q| q.0.dataplane().has_pending_work());
        self.note_pending(pending_tx);
        let now = now_us();
        self.next_poll = self.queues.iter_mut().filter_map(|q| q.0.dataplane().poll_at()).min();
        NEXT_TIMER_US.store(self.next_poll.map_or(u64::MAX, |t| t.total_micros().max(now)), Ordering::Relaxed);
        busy
    }

    fn command_result(&mut self, q: usize, cmd: &Cmd, ret: Result<u64, Ret>) {
        match cmd {
            Cmd::Sendv { id, .. } => {
                let id = *id;
                if let Some(s) = self.get(id) {
                    if let Kind::Conn(c) = &mut s.kind {
                        match ret {
                            Ok(n) => {
                                c.tx.handed(n as usize);
                                // The rest waits for `TcpSent` to open the window.
                            }
                            Err(Ret::NotConnected) | Err(Ret::BadHandle) => {}
                            Err(e) => log::debug!("sendv: {e:?}"),
                        }
                        if c.tx.unhanded() == 0 && c.shut_wr && !c.fin_sent {
                            self.dirty.push(id);
                        }
                    }
                }
            }
            Cmd::Connect { id, .. } => {
                let id = *id;
                if let Some(s) = self.get(id) {
                    if let Kind::Conn(c) = &mut s.kind {
                        match ret {
                            Ok(handle) => {
                                c.handle = handle;
                                c.queue = q;
                            }
                            Err(e) => {
                                c.state = ConnState::Dead;
                                c.error = Some(ret_errno(e));
                            }
                        }
                    }
                    if ret.is_err() && self.get(id).is_some_and(|s| s.fd.is_none()) {
                        self.remove(id);
                        return;
                    }
                    self.post(id);
                }
            }
            Cmd::Plain(Pending::Listen { port, .. }) => {
                if let Err(e) = ret {
                    log::warn!("libix: listening on dataplane port {port} failed: {e:?}");
                }
            }
            Cmd::Plain(_) => {}
        }
    }

    fn event(&mut self, q: usize, ev: Event) {
        match ev {
            Event::TcpKnock { handle, remote, local_port } => {
                let Some(lid) = self.listener_for(local_port, remote) else {
                    self.push(q, Pending::Reject { handle });
                    return;
                };
                let full = match self.get(lid).map(|s| &s.kind) {
                    Some(Kind::Listener(l)) => l.ready.len() >= l.backlog,
                    _ => true,
                };
                if full {
                    self.push(q, Pending::Reject { handle });
                    return;
                }
                // The connection's own address, also under an INADDR_ANY listener (getsockname says where it
                // arrived, as Linux does).
                let local = SocketAddrV4::new(self.address, local_port);
                let conn = Conn { handle, queue: q, state: ConnState::Established, ..Conn::default() };
                let mut sock = Socket::new(None, -1, local, Kind::Conn(conn));
                sock.remote = SocketAddrV4::new(to_ipv4(remote.addr), remote.port);
                let id = self.insert(sock);
                self.push(q, Pending::Accept { handle, cookie: id.0 });
                if let Some(Socket { kind: Kind::Listener(l), .. }) = self.get(lid) {
                    l.ready.push_back(id);
                }
                self.post(lid);
            }
            Event::TcpConnected { cookie, handle, ret, local_port } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                if s.fd.is_none() {
                    // Closed while connecting: drop the connection.
                    if ret == Ret::Ok {
                        self.push(q, Pending::Abort { handle });
                    }
                    self.remove(id);
                    return;
                }
                if ret == Ret::Ok {
                    // getsockname names the ephemeral port the dataplane chose.
                    s.local = SocketAddrV4::new(*s.local.ip(), local_port);
                }
                if let Kind::Conn(c) = &mut s.kind {
                    if ret == Ret::Ok {
                        c.handle = handle;
                        c.state = ConnState::Established;
                    } else {
                        c.state = ConnState::Dead;
                        c.error = Some(ret_errno(ret));
                    }
                }
                self.dirty.push(id);
                self.post(id);
            }
            Event::TcpRecv { cookie, handle, data, len } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else {
                    self.push(q, Pending::RecvDone { handle, len: len as u64 });
                    return;
                };
                if let Kind::Conn(c) = &mut s.kind {
                    if c.shut_rd {
                        // SHUT_RD: Linux discards what arrives; give it back at once.
                        self.push(q, Pending::RecvDone { handle, len: len as u64 });
                        return;
                    }
                    #[allow(unsafe_code)]
                    // SAFETY: the dataplane lends `data..data+len` until our TcpRecvDone for it, which `read`
                    // submits only after the segment is fully read and dropped from `rx`.
                    let lent = unsafe { Lent::new(data, len as usize) };
                    c.rx.push_back(lent);
                    c.rx_bytes += len as usize;
                }
                self.post(id);
            }
            Event::TcpSent { cookie, acked, window, .. } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                let orphan = s.fd.is_none();
                if let Kind::Conn(c) = &mut s.kind {
                    c.tx.ack(acked as usize);
                    if (window > 0 && c.tx.unhanded() > 0) || (c.shut_wr && !c.fin_sent && c.tx.unhanded() == 0) {
                        self.dirty.push(id);
                    }
                }
                if !orphan {
                    self.post(id);
                }
            }
            Event::TcpEof { cookie, .. } => {
                let id = SockId(cookie);
                if let Some(Socket { kind: Kind::Conn(c), .. }) = self.get(id) {
                    c.eof = true;
                }
                self.post(id);
            }
            Event::TcpDead { cookie, reason, .. } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                // Closed by the app (still sending when it died): nobody will read or accept it any more.
                let orphan = s.closed;
                if let Kind::Conn(c) = &mut s.kind {
                    c.state = ConnState::Dead;
                    // Every lent buffer and every sent byte is released by the dataplane. What arrived before the
                    // end stays readable, as on Linux (the peer's data and FIN often come in the cycle that ends the
                    // connection): unread bytes are copied out now, before the next cycle reuses the buffers.
                    if orphan {
                        c.rx.clear();
                        c.rx_bytes = 0;
                    } else {
                        c.rx.iter_mut().for_each(Lent::detach);
                    }
                    c.recv_done = 0;
                    c.tx.clear();
                    c.eof = true;
                    if c.error.is_none() {
                        c.error = dead_errno(reason);
                    }
                }
                if orphan {
                    self.remove(id);
                } else {
                    self.post(id);
                }
            }
            Event::UdpRecv { buf, .. } => {
                // No UDP socket lives on the dataplane yet (none is bound); give the buffer back regardless.
                self.push(q, Pending::UdpDone { data: buf.ptr as usize });
            }
            Event::UdpSent { .. } => {}
        }
    }

    /// The listener that takes a connection from `remote` on `port`: among the port's listening sockets (several
    /// with SO_REUSEPORT), one chosen by a hash of the peer, so a flow always lands on the same one.
    fn listener_for(&mut self, port: u16, remote: Endpoint) -> Option<SockId> {
        let ids = self.by_port.get(&port)?.clone();
        let listening: Vec<SockId> = ids
            .into_iter()
            .filter(|&id| matches!(self.get(id).map(|s| &s.kind), Some(Kind::Listener(l)) if l.backlog > 0))
            .collect();
        if listening.is_empty() {
            return None;
        }
        let h = u32::from_be_bytes(remote.addr.0).wrapping_mul(0x9e37_79b1)
            ^ (remote.port as u32).wrapping_mul(0x85eb_ca6b);
        Some(listening[(h.rotate_left(13) as usize) % listening.len()])
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Driving from event loops

/// How long an event loop keeps polling after its dataplane sockets last had work (`IX_SPIN_US`).
pub fn spin() -> Duration {
    LAYER.get().and_then(Option::as_ref).map_or(DEFAULT_SPIN, |l| l.spin)
}

/// Whether dataplane sockets are in use in this process.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The NIC fds a sleeping event loop must also wait on (empty when inactive).
pub fn nic_fds() -> &'static [RawFd] {
    match LAYER.get() {
        Some(Some(l)) => &l.nic_fds,
        _ => &[],
    }
}

/// Runs a cycle if no other thread is running one. Returns whether the dataplane had work.
pub fn drive() -> bool {
    let Some(Some(l)) = LAYER.get() else { return false };
    let _inside = InsideGuard::enter();
    let Ok(mut g) = l.inner.try_lock() else { return true };
    g.cycle()
}

/// Called by an event_base before it waits for readiness: runs a cycle (its events become readiness in the
/// loops' sinks) and shortens `timeout` so that the loop wakes for the dataplane's timers. Whether the loop keeps
/// polling instead of sleeping (the adaptive spin) is its sink's call: it spins while its own sockets are busy.
pub fn before_wait(timeout: Option<Duration>) -> Option<Duration> {
    if !active() {
        return timeout;
    }
    drive();
    if WORK_PENDING.load(Ordering::Acquire) {
        return Some(Duration::ZERO);
    }
    let now = now_us();
    let next = NEXT_TIMER_US.load(Ordering::Relaxed);
    if next == u64::MAX {
        return timeout;
    }
    let until_timer = Duration::from_micros(next.saturating_sub(now));
    Some(timeout.map_or(until_timer, |t| t.min(until_timer)))
}

/// Blocks the calling thread until `fd`'s placeholder shows `events` or `deadline` passes, running cycles.
fn wait_ready(l: &Layer, notify: RawFd, events: i16, deadline: Option<Instant>) {
    loop {
        if drive() {
            // Work was done: let the caller re-check before sleeping.
            return;
        }
        let mut fds: Vec<libc::pollfd> = vec![libc::pollfd { fd: notify, events, revents: 0 }];
        fds.extend(l.nic_fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }));
        let now = Instant::now();
        let mut wait = Duration::from_millis(100);
        let next = NEXT_TIMER_US.load(Ordering::Relaxed);
        if next != u64::MAX {
            wait = wait.min(Duration::from_micros(next.saturating_sub(now_us())));
        }
        if let Some(d) = deadline {
            if now >= d {
                return;
            }
            wait = wait.min(d - now);
        }
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        let _ = kernel::poll(&mut fds, ms);
        if fds[0].revents != 0 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The POSIX operations (called by capi/posix.rs for fds that are, or may become, dataplane sockets)

/// The outcome of `bind`/`connect` on a kernel socket: the layer took it, or the kernel should handle it.
pub enum Taken<T> {
    /// The layer handled the call.
    Yes(Result<T, Errno>),
    /// Not a dataplane address: pass the call to the kernel.
    No,
}

fn is_tcp_v4(fd: RawFd) -> bool {
    kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_INET)
        && kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM)
}

/// Replaces kernel socket `fd` by a fresh eventfd under the same number, keeping close-on-exec and O_NONBLOCK.
fn make_placeholder(fd: RawFd) -> Result<(RawFd, bool, bool), Errno> {
    let cloexec = kernel::fcntl(fd, libc::F_GETFD, 0)? & libc::FD_CLOEXEC != 0;
    let nonblocking = kernel::fcntl(fd, libc::F_GETFL, 0)? & libc::O_NONBLOCK != 0;
    let ev = kernel::eventfd()?;
    let r = kernel::dup3(ev, fd, cloexec);
    kernel::close(ev);
    r?;
    Ok((fd, cloexec, nonblocking))
}

/// `bind`: to the dataplane's address (dataplane only) or to INADDR_ANY (dataplane and kernel), TCP over IPv4.
pub fn bind(fd: RawFd, addr: SocketAddrV4) -> Taken<()> {
    if inside() {
        return Taken::No;
    }
    if fdmap::is_dataplane(fd) {
        // Already bound (or connected).
        return Taken::Yes(Err(libc::EINVAL));
    }
    let ip = *addr.ip();
    if ip.is_loopback() {
        return Taken::No;
    }
    let Some(l) = layer() else { return Taken::No };
    if (ip != l.address() && !ip.is_unspecified()) || !is_tcp_v4(fd) {
        return Taken::No;
    }
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    if addr.port() == 0 {
        // An ephemeral listening port would need the dataplane to choose one; not supported yet.
        return if ip.is_unspecified() { Taken::No } else { Taken::Yes(Err(libc::EADDRNOTAVAIL)) };
    }
    // SO_REUSEPORT was set on the kernel socket before bind: every socket of a port must have it to share it.
    let reuseport = kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(0) != 0;
    if let Some(ids) = g.by_port.get(&addr.port()).cloned() {
        let all_share = ids.iter().all(|&id| {
            g.get(id).is_some_and(|s| s.options.get(&(libc::SOL_SOCKET, libc::SO_REUSEPORT)).is_some_and(|&v| v != 0))
        });
        if !(reuseport && all_share) {
            return Taken::Yes(Err(libc::EADDRINUSE));
        }
    }
    let result = (|| {
        let local = SocketAddrV4::new(ip, addr.port());
        if ip.is_unspecified() {
            // Both worlds: the kernel socket binds for real and moves to another number; `fd` becomes an epoll
            // instance over it and the placeholder, readable when either has a connection.
            kernel::bind_v4(fd, addr)?;
            let kfd = kernel::dup_cloexec(fd)?;
            let notify = kernel::eventfd()?;
            let ep = kernel::epoll_create()?;
            let cloexec = kernel::fcntl(fd, libc::F_GETFD, 0)? & libc::FD_CLOEXEC != 0;
            let nonblocking = kernel::fcntl(fd, libc::F_GETFL, 0)? & libc::O_NONBLOCK != 0;
            // The kernel socket stays non-blocking: `accept` decides whether to wait.
            kernel::fcntl(kfd, libc::F_SETFL, (libc::O_RDWR | libc::O_NONBLOCK) as usize)?;
            kernel::epoll_add(ep, kfd, libc::EPOLLIN as u32)?;
            kernel::epoll_add(ep, notify, libc::EPOLLIN as u32)?;
            let r = kernel::dup3(ep, fd, cloexec);
            kernel::close(ep);
            r?;
            let listener = Listener { port: addr.port(), backlog: 0, ready: VecDeque::new(), kernel: Some(kfd) };
            let mut s = Socket::new(Some(fd), notify, local, Kind::Listener(listener));
            s.nonblocking = nonblocking;
            Ok(s)
        } else {
            let (_, _, nonblocking) = make_placeholder(fd)?;
            let mut s = Socket::new(Some(fd), fd, local, Kind::Bound);
            s.nonblocking = nonblocking;
            Ok(s)
        }
    })();
    Taken::Yes(result.map(|mut s| {
        let port = s.local.port();
        if reuseport {
            s.options.insert((libc::SOL_SOCKET, libc::SO_REUSEPORT), 1);
        }
        let id = g.insert(s);
        g.by_fd.insert(fd, id);
        g.by_port.entry(port).or_default().push(id);
        fdmap::mark(fd);
    }))
}

/// `listen` on a dataplane socket.
pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let backlog = if backlog <= 0 { 128 } else { backlog.min(65535) as usize };
    let (id, s) = g.by_fd(fd)?;
    let port = s.local.port();
    match &mut s.kind {
        Kind::Bound => {
            s.kind = Kind::Listener(Listener { port, backlog, ready: VecDeque::new(), kernel: None });
        }
        Kind::Listener(li) => {
            if let Some(k) = li.kernel {
                kernel::listen(k, backlog as i32)?;
            }
            let first = li.backlog == 0;
            li.backlog = backlog;
            if !first {
                return Ok(());
            }
        }
        Kind::Conn(_) => return Err(libc::EINVAL),
    }
    // The dataplane listens once per port; further SO_REUSEPORT listeners share it.
    let others_listening = g
        .by_port
        .get(&port)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|&o| o != id)
        .any(|o| matches!(g.get(o).map(|s| &s.kind), Some(Kind::Listener(l)) if l.backlog > 0));
    if !others_listening {
        for q in 0..g.queues.len() {
            g.push(q, Pending::Listen { port, backlog: backlog as u32 });
        }
    }
    g.post(id);
    drop(g);
    drive();
    Ok(())
}

/// `accept4` on a dataplane listener: a dataplane connection (its peer in `peer`), or, for INADDR_ANY listeners,
/// a kernel one (`Ok(None)`: the caller accepts from the returned kernel fd).
pub enum Accepted {
    /// A dataplane connection: its new fd and peer.
    Dataplane(RawFd, SocketAddrV4),
    /// Accept from this kernel listening socket instead.
    Kernel(RawFd),
}

/// `accept4(fd, flags)`.
pub fn accept(fd: RawFd, flags: i32) -> Result<Accepted, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut timeout = None;
    loop {
        let mut g = l.lock();
        let (lid, s) = g.by_fd(fd)?;
        let nonblocking = s.nonblocking;
        let deadline = *timeout.get_or_insert_with(|| s.rcvtimeo.and_then(|t| Instant::now().checked_add(t)));
        // What an accepted socket inherits from its listener, as on Linux.
        let (options, linger, sndbuf, rcvtimeo, sndtimeo) =
            (s.options.clone(), s.linger, s.sndbuf, s.rcvtimeo, s.sndtimeo);
        let Kind::Listener(li) = &mut s.kind else { return Err(libc::EINVAL) };
        let kernel_fd = li.kernel;
        if let Some(&cid) = li.ready.front() {
            // The connection stays queued if its fd cannot be made (EMFILE, ...).
            let newfd = kernel::eventfd()?;
            if flags & libc::SOCK_CLOEXEC == 0 {
                if let Err(e) = kernel::fcntl(newfd, libc::F_SETFD, 0) {
                    kernel::close(newfd);
                    return Err(e);
                }
            }
            li.ready.pop_front();
            let Some(c) = g.get(cid) else {
                kernel::close(newfd);
                continue;
            };
            c.fd = Some(newfd);
            c.notify = newfd;
            c.nonblocking = flags & libc::SOCK_NONBLOCK != 0;
            let keepalive = options.get(&(libc::SOL_SOCKET, libc::SO_KEEPALIVE)).is_some_and(|&v| v != 0);
            (c.options, c.linger, c.sndbuf, c.rcvtimeo, c.sndtimeo) = (options, linger, sndbuf, rcvtimeo, sndtimeo);
            let peer = c.remote;
            if let (true, Kind::Conn(conn)) = (keepalive, &c.kind) {
                let (q, handle) = (conn.queue, conn.handle);
                g.push(q, Pending::Keepalive { handle, enable: true });
            }
            g.by_fd.insert(newfd, cid);
            fdmap::mark(newfd);
            g.post(cid);
            g.post(lid);
            return Ok(Accepted::Dataplane(newfd, peer));
        }
        if let Some(k) = kernel_fd {
            // Nothing from the dataplane: try the kernel (non-blocking); the caller maps EAGAIN.
            let mut pfd = [libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 }];
            if kernel::poll(&mut pfd, 0) == Ok(1) || nonblocking {
                return Ok(Accepted::Kernel(k));
            }
        } else if nonblocking {
            return Err(libc::EAGAIN);
        }
        drop(g);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SO_RCVTIMEO passed.
            return Err(libc::EAGAIN);
        }
        // The app's fd: for a dual listener, its epoll instance covers the kernel socket too.
        wait_ready(l, fd, libc::POLLIN, deadline);
        if let Some(k) = kernel_fd {
            let mut pfd = [libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 }];
            let _ = kernel::poll(&mut pfd, 0);
            if pfd[0].revents != 0 {
                return Ok(Accepted::Kernel(k));
            }
        }
    }
}

/// `connect` on a kernel TCP socket: taken when `addr` is in the dataplane's subnet.
pub fn connect(fd: RawFd, addr: SocketAddrV4) -> Taken<()> {
    if inside() {
        return Taken::No;
    }
    if fdmap::is_dataplane(fd) {
        return Taken::Yes(connect_existing(fd));
    }
    let ip = *addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return Taken::No;
    }
    let Some(l) = layer() else { return Taken::No };
    if !l.in_subnet(ip) || !is_tcp_v4(fd) {
        return Taken::No;
    }
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let result = (|| {
        let (_, _, nonblocking) = make_placeholder(fd)?;
        let mut s = Socket::new(Some(fd), fd, SocketAddrV4::new(l.address(), 0), Kind::Conn(Conn::default()));
        s.nonblocking = nonblocking;
        s.remote = addr;
        Ok(s)
    })();
    let s = match result {
        Ok(s) => s,
        Err(e) => return Taken::Yes(Err(e)),
    };
    let nonblocking = s.nonblocking;
    let id = g.insert(s);
    g.by_fd.insert(fd, id);
    fdmap::mark(fd);
    g.connects.push((0, id, Endpoint { addr: Ipv4Address(addr.ip().octets()), port: addr.port() }));
    WORK_PENDING.store(true, Ordering::Release);
    g.post(id);
    drop(g);
    drive();
    if nonblocking {
        return Taken::Yes(Err(libc::EINPROGRESS));
    }
    Taken::Yes(connect_existing(fd))
}

/// `connect` again on a connecting socket (or waiting for a blocking one).
fn connect_existing(fd: RawFd) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let mut timeout = None;
    loop {
        let mut g = l.lock();
        let (_, s) = g.by_fd(fd)?;
        let (nonblocking, notify) = (s.nonblocking, s.notify);
        let deadline = *timeout.get_or_insert_with(|| s.sndtimeo.and_then(|t| Instant::now().checked_add(t)));
        let c = match &mut s.kind {
            Kind::Conn(c) => c,
            // As Linux says for a listening socket.
            Kind::Listener(_) => return Err(libc::EISCONN),
            // Bound to the dataplane's address: its connects take a source port of the dataplane's choosing, so a
            // bound socket cannot connect (yet).
            Kind::Bound => return Err(libc::EOPNOTSUPP),
        };
        match c.state {
            ConnState::Established => return Err(libc::EISCONN),
            ConnState::Dead => return Err(c.error.take().unwrap_or(libc::ECONNABORTED)),
            ConnState::Connecting if nonblocking => return Err(libc::EALREADY),
            ConnState::Connecting => {}
        }
        drop(g);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SO_SNDTIMEO passed: the connect goes on, as a non-blocking one would.
            return Err(libc::EINPROGRESS);
        }
        wait_ready(l, notify, libc::POLLOUT | libc::POLLIN, deadline);
        let mut g = l.lock();
        let (_, s) = g.by_fd(fd)?;
        if let Kind::Conn(Conn { state: ConnState::Established, .. }) = s.kind {
            return Ok(());
        }
    }
}

/// `recv` family: copies into `bufs`. `flags`: MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL (a blocking call waits until
/// `bufs` is full, the stream ends, an error comes or SO_RCVTIMEO passes, and returns what it has).
pub fn recv(fd: RawFd, bufs: &mut [&mut [u8]], flags: i32) -> Result<usize, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let want: usize = bufs.iter().map(|b| b.len()).sum();
    let peek = flags & libc::MSG_PEEK != 0;
    let mut got = 0;
    let mut timeout = None;
    loop {
        let mut g = l.lock();
        let (id, s) = g.by_fd(fd)?;
        let (nonblocking, notify) = (s.nonblocking || flags & libc::MSG_DONTWAIT != 0, s.notify);
        let waitall = flags & libc::MSG_WAITALL != 0 && !peek && !nonblocking;
        let deadline = *timeout.get_or_insert_with(|| s.rcvtimeo.and_then(|t| Instant::now().checked_add(t)));
        let c = s.conn()?;
        if matches!(c.state, ConnState::Connecting) {
            if nonblocking {
                return Err(libc::EAGAIN);
            }
        } else if c.rx_bytes > 0 && want > got {
            got += copy_out(c, bufs, got, peek);
            let (q, handle, done) = (c.queue, c.handle, std::mem::take(&mut c.recv_done));
            // A dead connection's bytes are the layer's own copies: nothing to give back.
            if done > 0 && !matches!(c.state, ConnState::Dead) {
                g.push(q, Pending::RecvDone { handle, len: done });
            }
            g.post(id);
            if !waitall || got == want {
                return Ok(got);
            }
            // MSG_WAITALL: the bytes given back reopen the window; wait for the rest.
            drop(g);
            drive();
            continue;
        } else if want == got {
            return Ok(got);
        } else if got > 0 && (c.error.is_some() || c.eof || c.shut_rd || matches!(c.state, ConnState::Dead)) {
            // What MSG_WAITALL gathered comes first; the end or the error is for the next call.
            return Ok(got);
        } else if let Some(e) = c.error.take() {
            g.post(id);
            return Err(e);
        } else if c.eof || c.shut_rd || matches!(c.state, ConnState::Dead) {
            return Ok(0);
        } else if nonblocking {
            return Err(libc::EAGAIN);
        }
        drop(g);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SO_RCVTIMEO passed.
            return if got > 0 { Ok(got) } else { Err(libc::EAGAIN) };
        }
        wait_ready(l, notify, libc::POLLIN, deadline);
    }
}

/// Copies received bytes into `bufs` from byte `skip` of them on (what an earlier pass filled); returns how many.
fn copy_out(c: &mut Conn, bufs: &mut [&mut [u8]], skip: usize, peek: bool) -> usize {
    let mut total = 0;
    let mut seg = 0;
    let mut seg_off = 0;
    let mut skip = skip;
    for buf in bufs.iter_mut() {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        let buf = &mut buf[skip..];
        skip = 0;
        let mut filled = 0;
        while filled < buf.len() && seg < c.rx.len() {
            let unread = &c.rx[seg].unread()[seg_off..];
            let n = unread.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&unread[..n]);
            filled += n;
            seg_off += n;
            if seg_off == c.rx[seg].remaining() {
                seg += 1;
                seg_off = 0;
            }
        }
        total += filled;
    }
    if peek {
        return total;
    }
    // Consume: whole segments are given back (the dataplane frees an mbuf only when all of it is done).
    let mut left = total;
    while left > 0 {
        let front = c.rx.front_mut().expect("copied bytes come from queued segments");
        let n = front.remaining().min(left);
        front.consume(n);
        left -= n;
        if front.remaining() == 0 {
            c.recv_done += front.len() as u64;
            c.rx.pop_front();
        }
    }
    c.rx_bytes -= total;
    total
}

/// Raised for a write on a socket whose sending direction is gone, unless the caller asked for MSG_NOSIGNAL.
pub const EPIPE_SIGNAL: Errno = -libc::EPIPE;

/// `send` family: copies `bufs` into the send buffer (coalesced into one `sendv` at the next cycle).
/// `Err(EPIPE_SIGNAL)` asks the caller to raise SIGPIPE and fail with EPIPE.
pub fn send(fd: RawFd, bufs: &[&[u8]], dontwait: bool) -> Result<usize, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let want: usize = bufs.iter().map(|b| b.len()).sum();
    let mut sent = 0;
    let mut timeout = None;
    loop {
        let mut g = l.lock();
        let (id, s) = g.by_fd(fd)?;
        let (nonblocking, notify, sndbuf) = (s.nonblocking || dontwait, s.notify, s.sndbuf);
        let deadline = *timeout.get_or_insert_with(|| s.sndtimeo.and_then(|t| Instant::now().checked_add(t)));
        // A socket that is not a connection (listening, or only bound) has no sending direction: EPIPE, as Linux.
        let Kind::Conn(c) = &mut s.kind else { return Err(EPIPE_SIGNAL) };
        match c.state {
            ConnState::Connecting if nonblocking => return Err(libc::EAGAIN),
            ConnState::Connecting => {}
            // What a blocking call already took is reported; a pending error comes first (as SO_ERROR would),
            // then EPIPE.
            _ if sent > 0 && (c.shut_wr || matches!(c.state, ConnState::Dead)) => return Ok(sent),
            ConnState::Dead => return Err(c.error.take().unwrap_or(EPIPE_SIGNAL)),
            ConnState::Established if c.shut_wr => return Err(EPIPE_SIGNAL),
            ConnState::Established => {
                if sent == want {
                    return Ok(sent);
                }
                let room = sndbuf.saturating_sub(c.tx.len());
                if room > 0 {
                    sent += push_from(&mut c.tx, bufs, sent, room);
                    g.dirty.push(id);
                    WORK_PENDING.store(true, Ordering::Release);
                    g.post(id);
                    // A blocking socket takes all of it, waiting for room as Linux does (a short count only when
                    // SO_SNDTIMEO passes or the connection ends); a non-blocking one takes what fits.
                    if nonblocking || sent == want {
                        return Ok(sent);
                    }
                    drop(g);
                    drive();
                    continue;
                }
                if nonblocking {
                    g.post(id);
                    return Err(libc::EAGAIN);
                }
            }
        }
        drop(g);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SO_SNDTIMEO passed with no room.
            return if sent > 0 { Ok(sent) } else { Err(libc::EAGAIN) };
        }
        wait_ready(l, notify, libc::POLLOUT, deadline);
        // The placeholder cannot say "not writable" without "readable": make progress by cycling.
        drive();
    }
}

/// Appends up to `room` bytes of `bufs` to `tx`, from byte `skip` of them on (what an earlier pass took).
fn push_from(tx: &mut SendBuf, bufs: &[&[u8]], skip: usize, room: usize) -> usize {
    let mut skip = skip;
    let mut n = 0;
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        let b = &b[skip..];
        skip = 0;
        let took = tx.push(b, room - n);
        n += took;
        if took < b.len() {
            break;
        }
    }
    n
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: RawFd, how: i32) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (id, s) = g.by_fd(fd)?;
    let c = s.conn()?;
    if !matches!(c.state, ConnState::Established) {
        return Err(libc::ENOTCONN);
    }
    if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
        c.shut_rd = true;
    }
    if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
        c.shut_wr = true;
        g.dirty.push(id);
        WORK_PENDING.store(true, Ordering::Release);
    }
    if !(0..=2).contains(&how) {
        return Err(libc::EINVAL);
    }
    g.post(id);
    drop(g);
    drive();
    Ok(())
}

/// `close(fd)` of a dataplane socket: the fd goes at once; a connection keeps sending what was written, then
/// closes (FIN), or resets if unread data is left (as Linux does) or SO_LINGER 0 asks for it.
pub fn close(fd: RawFd) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let id = g.by_fd.remove(&fd).ok_or(libc::EBADF)?;
    fdmap::unmark(fd);
    let Some(s) = g.get(id) else {
        kernel::close(fd);
        return Ok(());
    };
    s.fd = None;
    s.closed = true;
    if let Some(w) = s.watch.take() {
        w.sink.remove(fd);
    }
    let notify = s.notify;
    let abort_linger = s.linger.is_some_and(|lg| lg.l_onoff != 0 && lg.l_linger == 0);
    let mut remove_now = true;
    let mut to_abort = Vec::new();
    let mut port_gone = None;
    match &mut s.kind {
        Kind::Bound => port_gone = Some((s.local.port(), false)),
        Kind::Listener(li) => {
            // A dual listener is a `Listener` from bind on, but the dataplane listens only after listen().
            port_gone = Some((li.port, li.backlog > 0));
            if let Some(k) = li.kernel.take() {
                kernel::close(k);
            }
            to_abort.extend(li.ready.drain(..));
        }
        Kind::Conn(c) => match c.state {
            ConnState::Dead => {}
            ConnState::Connecting => {
                // The handle is not known until TcpConnected; the connect result will find the orphan.
                remove_now = false;
            }
            ConnState::Established => {
                if c.rx_bytes > 0 || abort_linger {
                    let (q, h) = (c.queue, c.handle);
                    c.tx.clear();
                    c.rx.clear();
                    c.state = ConnState::Dead;
                    g.push(q, Pending::Abort { handle: h });
                } else {
                    c.shut_wr = true;
                    let (q, h, done) = (c.queue, c.handle, std::mem::take(&mut c.recv_done));
                    if done > 0 {
                        g.push(q, Pending::RecvDone { handle: h, len: done });
                    }
                    g.dirty.push(id);
                    WORK_PENDING.store(true, Ordering::Release);
                    remove_now = false;
                }
            }
        },
    }
    if notify != fd {
        kernel::close(notify);
    }
    if remove_now {
        g.remove(id);
    }
    if let Some((port, listening)) = port_gone {
        let mut last = false;
        let mut others_listening = false;
        if let Some(ids) = g.by_port.get_mut(&port) {
            ids.retain(|&o| o != id);
            last = ids.is_empty();
            let rest = ids.clone();
            others_listening =
                rest.into_iter().any(|o| matches!(g.get(o).map(|s| &s.kind), Some(Kind::Listener(l)) if l.backlog > 0));
        }
        if last {
            g.by_port.remove(&port);
        }
        // Only a port the dataplane listens on is unlistened (one only bound would be a bad-handle command), and
        // only when no other SO_REUSEPORT listener still uses it.
        for q in (0..g.queues.len()).filter(|_| listening && !others_listening) {
            g.push(q, Pending::Unlisten { port });
        }
    }
    for cid in to_abort {
        if let Some(Socket { kind: Kind::Conn(c), .. }) = g.get(cid) {
            let (q, h) = (c.queue, c.handle);
            g.push(q, Pending::Abort { handle: h });
        }
        g.remove(cid);
    }
    kernel::close(fd);
    drop(g);
    drive();
    Ok(())
}

/// `getsockname` (`local`) or `getpeername`.
pub fn name(fd: RawFd, local: bool) -> Result<SocketAddrV4, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (_, s) = g.by_fd(fd)?;
    if local {
        if let Kind::Listener(Listener { kernel: Some(k), .. }) = s.kind {
            return kernel::getsockname_v4(k);
        }
        return Ok(s.local);
    }
    match &s.kind {
        Kind::Conn(Conn { state: ConnState::Established, .. }) => Ok(s.remote),
        _ => Err(libc::ENOTCONN),
    }
}

/// A socket option's value as getsockopt returns it.
pub enum OptValue {
    /// An int.
    Int(i32),
    /// `struct linger`.
    Linger(libc::linger),
    /// `struct timeval` (SO_RCVTIMEO, SO_SNDTIMEO).
    Timeval(libc::timeval),
}

fn timeval_of(t: Option<Duration>) -> libc::timeval {
    let t = t.unwrap_or_default();
    libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t }
}

/// Boolean options: Linux reports 1 for any non-zero value set.
fn is_bool_option(level: i32, name: i32) -> bool {
    matches!(
        (level, name),
        (libc::SOL_SOCKET, libc::SO_REUSEADDR | libc::SO_REUSEPORT | libc::SO_KEEPALIVE | libc::SO_OOBINLINE)
            | (libc::IPPROTO_TCP, libc::TCP_NODELAY | libc::TCP_CORK | libc::TCP_QUICKACK)
    )
}

/// `getsockopt` on a dataplane socket.
pub fn getsockopt(fd: RawFd, level: i32, name: i32) -> Result<OptValue, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (id, s) = g.by_fd(fd)?;
    let v = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => {
            let e = match &mut s.kind {
                Kind::Conn(c) => c.error.take().unwrap_or(0),
                _ => 0,
            };
            g.post(id);
            e
        }
        (libc::SOL_SOCKET, libc::SO_TYPE) => libc::SOCK_STREAM,
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => libc::AF_INET,
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => libc::IPPROTO_TCP,
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => matches!(s.kind, Kind::Listener(_)) as i32,
        // The NIC queue the connection's packets arrive on, numbered from 1 as Linux numbers NAPI contexts (0:
        // none): memcached -N hands each connection to the worker thread of its queue with it (IX's flow groups).
        (libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID) => match &s.kind {
            Kind::Conn(c) => c.queue as i32 + 1,
            _ => 0,
        },
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.sndbuf as i32,
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            return Ok(OptValue::Linger(s.linger.unwrap_or(libc::linger { l_onoff: 0, l_linger: 0 })));
        }
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => return Ok(OptValue::Timeval(timeval_of(s.rcvtimeo))),
        (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => return Ok(OptValue::Timeval(timeval_of(s.sndtimeo))),
        // The dataplane's receive window per connection, which SO_RCVBUF does not change.
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => dataplane::tcp::conn::TcpConfig::default().rcv_buf as i32,
        (libc::SOL_SOCKET | libc::IPPROTO_TCP, _) => *s.options.get(&(level, name)).unwrap_or(&0),
        _ => return Err(libc::ENOPROTOOPT),
    };
    Ok(OptValue::Int(v))
}

/// `setsockopt` on a dataplane socket (`value`: the option's bytes).
pub fn setsockopt(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (_, s) = g.by_fd(fd)?;
    if let Kind::Listener(Listener { kernel: Some(k), .. }) = s.kind {
        // Keep the kernel half of a dual listener in step (SO_REUSEADDR, SO_RCVTIMEO, SO_LINGER, ...: the option's
        // own bytes, so that the kernel's connections inherit them too); its errors are not ours.
        let _ = kernel::setsockopt_bytes(k, level, name, value);
    }
    if level == libc::SOL_SOCKET && name == libc::SO_LINGER {
        if value.len() < std::mem::size_of::<libc::linger>() {
            return Err(libc::EINVAL);
        }
        let on = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
        let secs = i32::from_ne_bytes([value[4], value[5], value[6], value[7]]);
        s.linger = Some(libc::linger { l_onoff: on, l_linger: secs });
        return Ok(());
    }
    if level == libc::SOL_SOCKET && (name == libc::SO_RCVTIMEO || name == libc::SO_SNDTIMEO) {
        // A struct timeval, as Linux checks it: zero is "for ever", a negative time "do not wait".
        const _: () = assert!(std::mem::size_of::<libc::timeval>() == 16, "two 64-bit fields");
        if value.len() < 16 {
            return Err(libc::EINVAL);
        }
        let mut sec = [0u8; 8];
        let mut usec = [0u8; 8];
        sec.copy_from_slice(&value[..8]);
        usec.copy_from_slice(&value[8..16]);
        let (sec, usec) = (i64::from_ne_bytes(sec), i64::from_ne_bytes(usec));
        if !(0..1_000_000).contains(&usec) {
            return Err(libc::EDOM);
        }
        let t = match (sec, usec) {
            (0, 0) => None,
            (secs, _) if secs < 0 => Some(Duration::ZERO),
            (secs, micros) => Some(Duration::from_secs(secs as u64) + Duration::from_micros(micros as u64)),
        };
        if name == libc::SO_RCVTIMEO {
            s.rcvtimeo = t;
        } else {
            s.sndtimeo = t;
        }
        return Ok(());
    }
    if value.len() < 4 {
        return Err(libc::EINVAL);
    }
    let v = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
    let v = if is_bool_option(level, name) { (v != 0) as i32 } else { v };
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.sndbuf = (v.max(2304) as usize).saturating_mul(2),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
            s.options.insert((level, name), (v != 0) as i32);
            if let Kind::Conn(c) = &s.kind {
                if matches!(c.state, ConnState::Established) {
                    let (q, handle) = (c.queue, c.handle);
                    g.push(q, Pending::Keepalive { handle, enable: v != 0 });
                }
            }
        }
        (libc::SOL_SOCKET | libc::IPPROTO_TCP, _) => {
            // Recorded and reported back (TCP_NODELAY: the dataplane never delays a send; SO_REUSEADDR:
            // TIME_WAIT never blocks a listener here).
            s.options.insert((level, name), v);
        }
        _ => return Err(libc::ENOPROTOOPT),
    }
    Ok(())
}

/// `fcntl` on a dataplane socket: status flags are ours; fd flags are the placeholder's.
pub fn fcntl(fd: RawFd, cmd: i32, arg: usize) -> Result<i32, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (_, s) = g.by_fd(fd)?;
    match cmd {
        libc::F_GETFL => Ok(libc::O_RDWR | if s.nonblocking { libc::O_NONBLOCK } else { 0 }),
        libc::F_SETFL => {
            s.nonblocking = arg as i32 & libc::O_NONBLOCK != 0;
            Ok(0)
        }
        libc::F_GETFD | libc::F_SETFD => kernel::fcntl(fd, cmd, arg),
        // Duplicating a dataplane socket would need shared ownership of the flow: not supported yet.
        _ => Err(libc::EINVAL),
    }
}

/// `ioctl(FIONBIO / FIONREAD)` on a dataplane socket; `arg` is the int the request reads or writes.
pub fn ioctl(fd: RawFd, request: u64, arg: &mut i32) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let (_, s) = g.by_fd(fd)?;
    match request {
        r if r == libc::FIONBIO => {
            s.nonblocking = *arg != 0;
            Ok(())
        }
        r if r == libc::FIONREAD => {
            *arg = match &s.kind {
                Kind::Conn(c) => c.rx_bytes.min(i32::MAX as usize) as i32,
                _ => 0,
            };
            Ok(())
        }
        _ => Err(libc::ENOTTY),
    }
}

/// Whether the socket would block for `events` (POLLIN/POLLOUT), for `poll` on dataplane fds.
pub fn poll_revents(fd: RawFd, events: i16) -> i16 {
    let Some(l) = LAYER.get().and_then(Option::as_ref) else { return libc::POLLNVAL };
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let Ok((_, s)) = g.by_fd(fd) else { return libc::POLLNVAL };
    let (r, w) = s.readiness();
    let mut rev = 0;
    if r && events & libc::POLLIN != 0 {
        rev |= libc::POLLIN;
    }
    if w && events & libc::POLLOUT != 0 {
        rev |= libc::POLLOUT;
    }
    if let Kind::Conn(c) = &s.kind {
        // As Linux's tcp_poll: a pending error is POLLERR; the receiving direction closed (the peer's FIN, or
        // SHUT_RD) is POLLRDHUP; both directions closed, or the connection over, is POLLHUP.
        let dead = matches!(c.state, ConnState::Dead);
        if c.error.is_some() {
            rev |= libc::POLLERR;
        }
        if (c.eof || c.shut_rd || dead) && events & libc::POLLRDHUP != 0 {
            rev |= libc::POLLRDHUP;
        }
        if dead || ((c.eof || c.shut_rd) && c.shut_wr) {
            rev |= libc::POLLHUP;
        }
    }
    rev
}

/// An event loop starts (`mask != 0`) or stops watching dataplane socket `fd` for EV_READ/EV_WRITE/EV_CLOSED:
/// its readiness then goes to `sink`. Returns whether the loop must also watch `fd` in its epoll set (an
/// INADDR_ANY listener, whose kernel half the kernel reports).
pub fn watch(fd: RawFd, sink: &Arc<ReadySink>, mask: i16, edge: bool) -> bool {
    let Some(l) = LAYER.get().and_then(Option::as_ref) else { return true };
    let _inside = InsideGuard::enter();
    let mut g = l.lock();
    let Ok((id, s)) = g.by_fd(fd) else { return true };
    let dual = matches!(s.kind, Kind::Listener(Listener { kernel: Some(_), .. }));
    if mask == 0 {
        if let Some(w) = s.watch.take() {
            w.sink.remove(fd);
        }
        // Back to the placeholder: bring it up to date.
        s.posted = None;
    } else {
        if s.watch.is_none() {
            // The placeholder stops mirroring while a loop watches (it would only cost system calls, and inside
            // a dual listener's epoll it would report the dataplane half twice): leave it quiet.
            kernel::eventfd_set(s.notify, 0);
            s.posted = Some(0);
        }
        let posted = s.watch.as_ref().filter(|w| Arc::ptr_eq(&w.sink, sink)).map_or(-1, |w| w.posted);
        s.watch = Some(Watch { sink: sink.clone(), mask, edge, posted });
    }
    g.post(id);
    dual
}
