//! The socket layer: POSIX TCP and UDP sockets on the dataplane, behind real fd numbers (DESIGN.md §5).
//!
//! An application socket starts as a kernel socket. When it binds to the dataplane's address, or connects to a
//! host in the dataplane's subnet (a UDP socket also when, unbound, it sends there), it becomes a dataplane socket:
//! its fd number is kept but now names an eventfd (a pollable placeholder whose readiness mirrors the socket's), and
//! every interposed call on it (`capi/posix.rs`) lands here. A listener bound to INADDR_ANY listens on both worlds:
//! its fd becomes an epoll instance holding the kernel listening socket and the placeholder, so it is readable when
//! either has a connection. A UDP socket bound to INADDR_ANY is built the same way: datagrams come from either world,
//! and sends go by destination (the dataplane's subnet through the dataplane, else the kernel). Everything else
//! stays in the kernel untouched. UDP sockets (`udp.rs`) are bound on one queue, whose shard owns them; their
//! datagrams are copied out of the lent mbuf when they arrive, and sends from any thread are queued on that shard.
//!
//! This layer is a native-API application: it reaches the dataplane only through `runtime::Queue::run_io`
//! (commands in, event conditions out). Received data stays in the mbufs the dataplane lends (`read` copies from
//! them, then gives them back); written data is copied once into the socket's send buffer (POSIX lets the app
//! reuse its buffer at once) and handed to TCP zero-copy, coalesced into one `sendv` per flow per cycle.
//!
//! Threads: the layer is sharded per dataplane queue. A `Shard` owns its NIC queue, the connections that live
//! on it (an accepted one on the queue its SYN arrived on; a connect on the queue the calling thread last used,
//! else round-robin, which steering makes the replies reach), their pending commands, the dirty list and the
//! queue's next timer, behind a lock of its own. Cycles run from whichever thread gets there: every event_base
//! loop iteration ([`before_wait`]), blocking calls, and `poll` run the cycle of each shard whose lock is free
//! (a shard another thread is driving is skipped: that thread makes progress). A fd resolves to its shard and
//! slot through a rarely written map (read-locked per call). Listening and bound sockets (SO_REUSEPORT groups
//! and INADDR_ANY listeners too) belong to no queue: the dataplane listens on every queue, a `PortSock` keeps
//! the connections ready for `accept` from all of them, and its readiness is theirs together.
//!
//! Why a lock per queue rather than the per-flow SPSC ring DESIGN.md §5 sketches: when the thread using a flow
//! is the one driving its queue (owner == user, which `memcached-patch/` arranges), the lock is uncontended and
//! the user operates on the flow's buffers directly, with no copy through a ring; when another thread uses the
//! fd (memcached's main thread accepting and handing fds to workers), the same code is correct, it only waits
//! for that queue's lock. Threads serving different queues never wait for each other's locks (an event loop
//! only try-locks the other shards, to drive them when nobody else does).
//!
//! Lock order: a shard (never two at once) → the port map (`Layer::ports`) → one port socket's state; the fd
//! map (`Layer::fds`) is a leaf (written under a shard when a connection gets its fd). `accept` and `close` let go
//! of a port socket's state before they lock the shard of one of its connections. Readiness is posted to sinks
//! and eventfds under these locks; neither calls back into the layer.

pub(crate) mod kernel;
mod lent;
mod sendbuf;
mod spare;
mod udp;

pub mod fdmap;
mod idle;
pub mod sink;

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use dataplane::api::{AppBuf, Command, DeadReason, Endpoint, Event, Ret};
use dataplane::config::Config;
use dataplane::net::link::Route;
use dataplane::wire::ipv4::Ipv4Address;

use crate::runtime::Port;
use kernel::Errno;
use lent::Lent;
use sendbuf::SendBuf;
pub use sink::{data_sinks, spinners, ReadySink};

pub use kernel::Errno as SocketErrno;
pub use udp::Datagram;

/// The layer's maps are keyed by fd numbers and ports the app chooses, looked up on every call: FxHash (a
/// multiply per key) instead of SipHash, which cost ~600 instructions per memcached request.
type HashMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Default send-buffer bound per socket (bytes written but not yet acknowledged), like Linux's `tcp_wmem`.
const DEFAULT_SNDBUF: usize = 1 << 20;
/// Events per cycle.
const EVENTS_PER_CYCLE: usize = 256;
/// How long a base keeps polling (timeout 0) after the dataplane last had work, before it sleeps.
const DEFAULT_SPIN: Duration = Duration::from_micros(100);
/// An eventfd counter value that reads as readable but not writable.
const READABLE_ONLY: u64 = u64::MAX - 1;
/// Queues the layer can shard over (one bit each in [`WORK_PENDING`]).
const MAX_SHARDS: usize = 64;

/// Process-wide state: `None` when no dataplane is configured (`IX_IFACE` unset) or it could not open.
static LAYER: OnceLock<Option<Layer>> = OnceLock::new();
/// Set once the dataplane is open: the cheap test every event loop makes.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The shards whose next cycle has work without waiting for a frame or a timer (one bit per shard, written only
/// under that shard's lock): staged writes or commands, frames a full TX ring left over, output a full TX batch
/// held back. No event loop may sleep while any is set.
static WORK_PENDING: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread runs layer code: interposed calls made by the layer itself (opening the NIC binds
    /// AF_XDP sockets, for instance) go straight to the kernel.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// The shard of the connection this thread last used (`usize::MAX`: none yet): its connects go there, its
    /// accepts look there first, and its drives start there.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Event loops this thread is running (nested `event_base_loop`s count each), plus one for good once it has
    /// waited in `epoll_wait` on a set holding dataplane sockets: such a thread cycles the dataplane before it
    /// sleeps, so what it writes needs no cycle of its own (see [`settle`]).
    static LOOPING: Cell<u32> = const { Cell::new(0) };
}

/// Marks the calling thread as running an event loop until the guard drops.
pub struct LoopScope(());

/// Enters an event loop on this thread (see [`settle`]).
pub fn loop_scope() -> LoopScope {
    LOOPING.with(|c| c.set(c.get() + 1));
    LoopScope(())
}

impl Drop for LoopScope {
    fn drop(&mut self) {
        LOOPING.with(|c| c.set(c.get() - 1));
    }
}

/// The calling thread waits in its own epoll loop on dataplane sockets (`epoll_wait`): it counts as an event loop
/// from now on.
pub fn mark_loop_thread() {
    LOOPING.with(|c| {
        if c.get() == 0 {
            c.set(1);
        }
    });
}

/// After a socket call from a thread that runs no event loop: runs the cycle the call's work needs (a write, a
/// window update, a close) now, since no loop of this thread will. An event loop's thread leaves it to the cycle
/// before its next wait, which batches all its writes of the iteration in one cycle.
pub fn settle() {
    if active() && WORK_PENDING.load(Ordering::Acquire) != 0 && LOOPING.with(Cell::get) == 0 {
        drive();
    }
}

/// CLOCK_MONOTONIC in microseconds (the dataplane's clock).
fn now_us() -> u64 {
    dataplane::time::Instant::now().total_micros()
}

fn home() -> Option<usize> {
    Some(HOME.with(Cell::get)).filter(|&h| h != usize::MAX)
}

fn set_home(shard: usize) {
    HOME.with(|h| h.set(shard));
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

/// A connection's id within its shard: slot index and generation (the cookie of its connection's events).
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
    /// The queue (and shard) it lives on.
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
    /// How soon the peer speaks again after an answer (the idle policy's conversation rule).
    turnaround: idle::Turnaround,
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
    /// A connection or UDP socket (counted in the sink's data watches), not a listener.
    data: bool,
}

impl Watch {
    /// The loop stops watching `fd`.
    fn end(self, fd: RawFd) {
        self.sink.remove(fd);
        if self.data {
            self.sink.count_data_watch(false);
        }
    }
}

pub(super) const EV_READ: i16 = 0x02;
const EV_WRITE: i16 = 0x04;
const EV_CLOSED: i16 = 0x80;

/// Where a socket's readiness goes.
#[derive(Debug)]
struct Notify {
    /// The app's fd number; `None` for accepted connections not yet taken by `accept`, and for sockets the app
    /// closed (a connection still sending is an orphan).
    fd: Option<RawFd>,
    /// The eventfd whose counter mirrors readiness (equal to `fd` unless the fd is a dual listener's epoll).
    notify: RawFd,
    /// Current counter state, to skip redundant syscalls.
    posted: Option<u64>,
    /// The event loops watching it: usually one, several when threads share a socket (memcached's workers all
    /// watch its UDP socket; libevent allows any number of events on one fd across bases).
    watches: Vec<Watch>,
}

impl Notify {
    fn new(fd: Option<RawFd>, notify: RawFd) -> Notify {
        Notify { fd, notify, posted: None, watches: Vec::new() }
    }

    /// Data arrived: counts it in the load rule of every loop that watches for it and holds an entry for the
    /// socket already (an entry being added is counted by the sink itself; one with data unread gets more without
    /// a new entry, and after a stall of the loop that would make one arrival of many). Edge-triggered watches
    /// are left to the sink: their entries go at each collect, so they count at most once per collect.
    fn arrived(&self) {
        for w in &self.watches {
            if !w.edge && w.posted > 0 && w.mask & EV_READ != 0 {
                w.sink.arrived();
            }
        }
    }

    /// Posts readiness: to the watching event loops' sinks (no system call), or else on the placeholder eventfd
    /// (for poll/epoll by the app itself).
    fn post(&mut self, readable: bool, writable: bool, closed: bool) {
        if let (false, Some(fd)) = (self.watches.is_empty(), self.fd) {
            for w in &mut self.watches {
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
            }
            return;
        }
        let value = match (readable, writable) {
            (true, true) => 1,
            (true, false) => READABLE_ONLY,
            // "Neither" cannot be expressed by an eventfd; writable is the safe side (a write then says EAGAIN).
            (false, _) => 0,
        };
        if self.posted != Some(value) && self.fd.is_some() {
            kernel::eventfd_set(self.notify, value);
            self.posted = Some(value);
        }
    }

    /// An event loop starts (`mask != 0`), changes or stops (`mask == 0`) watching; the caller posts afterwards.
    /// `data`: a connection or UDP socket (not a listener).
    fn watch(&mut self, fd: RawFd, sink: &Arc<ReadySink>, mask: i16, edge: bool, data: bool) {
        let mine = self.watches.iter().position(|w| Arc::ptr_eq(&w.sink, sink));
        if mask == 0 {
            if let Some(k) = mine {
                self.watches.swap_remove(k).end(fd);
            }
            if self.watches.is_empty() {
                // Back to the placeholder: bring it up to date.
                self.posted = None;
            }
            return;
        }
        if self.watches.is_empty() {
            // The placeholder stops mirroring while a loop watches (it would only cost system calls, and inside a
            // dual listener's epoll it would report the dataplane half twice): leave it quiet.
            kernel::eventfd_set(self.notify, 0);
            self.posted = Some(0);
        }
        match mine {
            Some(k) => {
                let w = &mut self.watches[k];
                w.mask = mask;
                w.edge = edge;
            }
            None => {
                if data {
                    sink.count_data_watch(true);
                }
                self.watches.push(Watch { sink: sink.clone(), mask, edge, posted: -1, data });
            }
        }
    }

    /// The app closed the socket: every watching loop forgets it.
    fn unwatch_all(&mut self, fd: RawFd) {
        for w in self.watches.drain(..) {
            w.end(fd);
        }
    }
}

/// What the app set on a socket (an accepted connection inherits its listener's).
#[derive(Debug, Clone)]
struct Opts {
    nonblocking: bool,
    sndbuf: usize,
    options: HashMap<(i32, i32), i32>,
    linger: Option<libc::linger>,
    /// SO_RCVTIMEO / SO_SNDTIMEO: how long a blocking call waits (`None`: for ever).
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            nonblocking: false,
            sndbuf: DEFAULT_SNDBUF,
            options: HashMap::default(),
            linger: None,
            rcvtimeo: None,
            sndtimeo: None,
        }
    }
}

impl Opts {
    fn reuseport(&self) -> bool {
        self.options.get(&(libc::SOL_SOCKET, libc::SO_REUSEPORT)).is_some_and(|&v| v != 0)
    }
}

/// A connection, in the slot table of the shard of its queue.
#[derive(Debug)]
struct Socket {
    n: Notify,
    o: Opts,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// The app closed it; it lives on only to send what was written (an orphan), then goes.
    closed: bool,
    conn: Conn,
}

/// A socket bound to a dataplane port: only bound, or listening (on every queue). Shared by the shards, whose
/// connections for it wait in `ready`.
#[derive(Debug)]
struct PortSock {
    port: u16,
    local: SocketAddrV4,
    state: Mutex<PortState>,
}

#[derive(Debug)]
struct PortState {
    n: Notify,
    o: Opts,
    /// A listener (`listen` was called, or it is an INADDR_ANY listener, which is one from bind on); else only
    /// bound.
    listener: bool,
    /// 0 until `listen`.
    backlog: usize,
    /// Connections ready for `accept`: (shard, id).
    ready: VecDeque<(usize, SockId)>,
    /// The kernel listening socket of an INADDR_ANY listener.
    kernel: Option<RawFd>,
    closed: bool,
}

impl PortSock {
    fn lock(&self) -> MutexGuard<'_, PortState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PortState {
    fn listening(&self) -> bool {
        self.listener && self.backlog > 0 && !self.closed
    }

    fn readiness(&self) -> (bool, bool) {
        (self.listener && !self.ready.is_empty(), false)
    }

    fn post(&mut self) {
        let (r, w) = self.readiness();
        self.n.post(r, w, false);
    }
}

/// Where a fd's socket lives.
#[derive(Debug, Clone)]
enum Loc {
    Conn { shard: usize, id: SockId },
    Port(Arc<PortSock>),
    Udp(Arc<udp::UdpSock>),
}

/// What the dataplane should do, queued under the shard's lock and submitted at its next cycle.
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
    UdpBind { port: u16 },
    UdpUnbind { port: u16 },
}

/// One dataplane queue with the connections that live on it.
struct Shard {
    index: usize,
    queue: lent::SendQueue,
    pending: Vec<Pending>,
    slots: Vec<(u32, Option<Socket>)>,
    free: Vec<usize>,
    /// Connections with bytes waiting for `sendv` (or a FIN to send).
    dirty: Vec<SockId>,
    connects: Vec<(SockId, Endpoint)>,
    /// The dataplane's address: the local address of every connection it carries.
    address: Ipv4Addr,
    /// The previous cycle's dirty list, emptied: swapped in so marking sockets dirty does not allocate.
    dirty_spare: Vec<SockId>,
    /// The command list of the cycle, kept empty between cycles so that a warm cycle allocates nothing (its
    /// entries name app memory only while the cycle runs).
    cmds_spare: spare::Spare<Cmd>,
    /// Datagrams of this shard's UDP sockets waiting for `UdpSend`.
    udp_out: Vec<udp::Outgoing>,
    /// Payload bytes in `udp_out`: a sender waits (or gets EAGAIN) while its socket's SO_SNDBUF is taken.
    udp_out_bytes: usize,
}

struct Layer {
    /// Our address, subnet and gateway: the dataplane's routing rule, checked before a datagram is queued.
    route: Route,
    nic_fds: Vec<RawFd>,
    spin: Duration,
    shards: Vec<Mutex<Shard>>,
    /// Monotonic microseconds of each shard's next dataplane timer, or `u64::MAX`.
    timers: Vec<AtomicU64>,
    /// Every dataplane fd: its shard and slot, or its port socket. Written when fds come and go.
    fds: RwLock<HashMap<RawFd, Loc>>,
    /// The sockets bound to each dataplane port: one, or several that all set SO_REUSEPORT (a listener per
    /// thread; connections are spread over them by flow hash, as Linux does).
    ports: RwLock<HashMap<u16, Vec<Arc<PortSock>>>>,
    /// Round-robin shard choice for connects from threads with no home shard.
    next_connect: AtomicUsize,
    /// The UDP socket bound to each dataplane port.
    udp: RwLock<HashMap<u16, Arc<udp::UdpSock>>>,
    /// Where the next ephemeral UDP port search starts.
    next_ephemeral: AtomicUsize,
    /// Largest UDP payload one datagram carries (one frame; the dataplane does not fragment).
    max_udp: usize,
    _port: Port,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("route", &self.route)
            .field("nic_fds", &self.nic_fds)
            .field("shards", &self.shards.len())
            .finish()
    }
}

fn to_ipv4(a: Ipv4Address) -> Ipv4Addr {
    Ipv4Addr::from(a.0)
}

impl Layer {
    fn open() -> Result<Layer, String> {
        let cfg = Config::from_env().map_err(|e| e.to_string())?;
        let port = Port::open(&cfg).map_err(|e| e.to_string())?;
        if port.queues() as usize > MAX_SHARDS {
            return Err(format!("at most {MAX_SHARDS} queues"));
        }
        let mut queues = Vec::new();
        for q in 0..port.queues() {
            queues.push(lent::SendQueue(port.open_queue(q).map_err(|e| e.to_string())?));
        }
        let nic_fds = queues.iter().filter_map(|q| q.0.poll_fd()).collect();
        let max_udp = queues.first_mut().map_or(0, |q| q.0.dataplane().max_udp_payload());
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
        let address = to_ipv4(cfg.ip.addr);
        let shards: Vec<Mutex<Shard>> = queues
            .into_iter()
            .enumerate()
            .map(|(index, queue)| {
                Mutex::new(Shard {
                    index,
                    queue,
                    pending: Vec::new(),
                    slots: Vec::new(),
                    free: Vec::new(),
                    dirty: Vec::new(),
                    connects: Vec::new(),
                    address,
                    dirty_spare: Vec::new(),
                    cmds_spare: spare::Spare::default(),
                    udp_out: Vec::new(),
                    udp_out_bytes: 0,
                })
            })
            .collect();
        Ok(Layer {
            route: Route { cidr: cfg.ip, gateway: cfg.gateway },
            nic_fds,
            spin,
            timers: shards.iter().map(|_| AtomicU64::new(u64::MAX)).collect(),
            shards,
            fds: RwLock::new(HashMap::default()),
            ports: RwLock::new(HashMap::default()),
            next_connect: AtomicUsize::new(0),
            udp: RwLock::new(HashMap::default()),
            next_ephemeral: AtomicUsize::new(std::process::id() as usize),
            max_udp,
            _port: port,
        })
    }

    fn shard(&self, q: usize) -> MutexGuard<'_, Shard> {
        self.shards[q].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, fd: RawFd) -> Result<Loc, Errno> {
        self.fds.read().unwrap_or_else(|p| p.into_inner()).get(&fd).cloned().ok_or(libc::EBADF)
    }

    fn fds_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RawFd, Loc>> {
        self.fds.write().unwrap_or_else(|p| p.into_inner())
    }

    fn udp_ports_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u16, Arc<udp::UdpSock>>> {
        self.udp.write().unwrap_or_else(|p| p.into_inner())
    }

    fn ports_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u16, Vec<Arc<PortSock>>>> {
        self.ports.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The port sockets bound to `port` (a copy: the caller may take their locks).
    fn port_socks(&self, port: u16) -> Vec<Arc<PortSock>> {
        self.ports.read().unwrap_or_else(|p| p.into_inner()).get(&port).cloned().unwrap_or_default()
    }

    /// The earliest dataplane timer over all shards (monotonic microseconds), or `u64::MAX`.
    /// When the next dataplane timer is due (monotonic microseconds), over the shards not in `except` (a bit per
    /// shard).
    fn next_timer_us(&self, except: u64) -> u64 {
        let shards = self.timers.iter().enumerate().filter(|&(q, _)| except & (1 << q) == 0);
        shards.map(|(_, t)| t.load(Ordering::Relaxed)).min().unwrap_or(u64::MAX)
    }

    fn address(&self) -> Ipv4Addr {
        to_ipv4(self.route.cidr.addr)
    }

    /// The longest spin (`IX_SPIN_US`) in microseconds, as the idle policy counts.
    fn spin_us(&self) -> u64 {
        self.spin.as_micros() as u64
    }

    /// Whether the dataplane has a next hop for `ip` (its subnet, or anywhere through a gateway).
    fn routable(&self, ip: Ipv4Addr) -> bool {
        self.route.next_hop(Ipv4Address(ip.octets())).is_some()
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        self.route.cidr.contains(Ipv4Address(ip.octets())) && !ip.is_loopback()
    }
}

impl Shard {
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

    fn sock(&mut self, id: SockId) -> &mut Socket {
        self.get(id).expect("checked by Layer::with_conn under this lock")
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

    /// Recomputes a connection's readiness and posts it.
    fn post(&mut self, id: SockId) {
        let Some(s) = self.get(id) else { return };
        let (readable, writable) = s.readiness();
        let closed = s.conn.eof || matches!(s.conn.state, ConnState::Dead);
        s.n.post(readable, writable, closed);
    }

    fn bit(&self) -> u64 {
        1 << self.index
    }

    fn push(&mut self, p: Pending) {
        self.pending.push(p);
        self.mark_work();
    }

    /// The next cycle has work (called under this shard's lock).
    fn mark_work(&self) {
        WORK_PENDING.fetch_or(self.bit(), Ordering::Release);
    }

    /// Publishes whether this shard's next cycle has work regardless of frames and timers.
    fn note_pending(&mut self) {
        let pending = self.queue.0.dataplane().has_pending_work()
            || !self.dirty.is_empty()
            || !self.connects.is_empty()
            || !self.pending.is_empty()
            || !self.udp_out.is_empty();
        if pending {
            WORK_PENDING.fetch_or(self.bit(), Ordering::Release);
        } else {
            WORK_PENDING.fetch_and(!self.bit(), Ordering::Release);
        }
    }
}

impl Socket {
    fn new(fd: Option<RawFd>, notify: RawFd, local: SocketAddrV4, conn: Conn) -> Socket {
        Socket {
            n: Notify::new(fd, notify),
            o: Opts::default(),
            local,
            remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            closed: false,
            conn,
        }
    }

    fn readiness(&self) -> (bool, bool) {
        let c = &self.conn;
        match c.state {
            ConnState::Connecting => (false, false),
            ConnState::Dead => (true, true),
            ConnState::Established => {
                let readable = c.rx_bytes > 0 || c.eof || c.shut_rd || c.error.is_some();
                let writable = c.shut_wr || c.tx.len() < self.o.sndbuf;
                (readable, writable)
            }
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
    Sendv {
        handle: u64,
        id: SockId,
        bufs: arrayvec::ArrayVec<AppBuf, { sendbuf::MAX_SLICES }>,
    },
    Connect {
        id: SockId,
        dst: Endpoint,
    },
    /// The `k`-th datagram of the cycle's outgoing ones.
    UdpSend {
        k: usize,
    },
}

impl Shard {
    /// Runs one dataplane cycle of this shard's queue: pending commands and coalesced sends go in, events come
    /// out and are turned into socket state and readiness. Returns whether anything happened.
    fn cycle(&mut self, l: &Layer) -> bool {
        // The dirty list swaps with a kept spare and the command list is a kept one, emptied at the end: no
        // allocation once warm.
        let spare = std::mem::take(&mut self.dirty_spare);
        let mut dirty = std::mem::replace(&mut self.dirty, spare);
        // A socket is marked dirty by every write and every `TcpSent`: it must get one `sendv` per cycle, since
        // each names the unhanded bytes as they stood before the cycle (two would send the same bytes twice).
        dirty.sort_unstable_by_key(|id| id.0);
        dirty.dedup();
        let mut cmds = self.cmds_spare.take();
        cmds.extend(self.pending.drain(..).map(Cmd::Plain));
        cmds.extend(self.connects.drain(..).map(|(id, dst)| Cmd::Connect { id, dst }));
        let outgoing = std::mem::take(&mut self.udp_out);
        self.udp_out_bytes = 0;
        let slices: Vec<[std::io::IoSlice<'_>; 1]> =
            outgoing.iter().map(|o| [std::io::IoSlice::new(&o.payload)]).collect();
        cmds.extend((0..outgoing.len()).map(|k| Cmd::UdpSend { k }));
        for &id in &dirty {
            let Some(s) = self.get(id) else { continue };
            let c = &mut s.conn;
            if !matches!(c.state, ConnState::Established) {
                continue;
            }
            if c.tx.unhanded() > 0 {
                cmds.push(Cmd::Sendv { handle: c.handle, id, bufs: c.tx.unhanded_bufs() });
            } else if c.shut_wr && !c.fin_sent {
                c.fin_sent = true;
                cmds.push(Cmd::Plain(Pending::Close { handle: c.handle }));
            }
        }
        let mut busy = !cmds.is_empty();
        let queue = &mut self.queue.0;
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
                        Pending::UdpBind { port } => Command::UdpBind { port },
                        Pending::UdpUnbind { port } => Command::UdpUnbind { port },
                    },
                    Cmd::UdpSend { k } => Command::UdpSend {
                        src_port: outgoing[*k].src_port,
                        dst: outgoing[*k].dst,
                        payload: &slices[*k],
                        cookie: 0,
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
        let mut retry = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let ret = self.queue.0.rets()[i];
            if let (Cmd::UdpSend { k }, Err(Ret::Again | Ret::NoMem)) = (cmd, ret) {
                // No TX room or no mbuf this cycle: the datagram goes out at the next one, in order (the bound
                // on `udp_out_bytes` makes senders wait meanwhile, as Linux's SO_SNDBUF does).
                retry.push(*k);
                continue;
            }
            self.command_result(cmd, ret);
        }
        if !retry.is_empty() {
            let mut outgoing: Vec<Option<udp::Outgoing>> = outgoing.into_iter().map(Some).collect();
            self.udp_out = retry.into_iter().filter_map(|k| outgoing[k].take()).collect();
            self.udp_out_bytes = self.udp_out.iter().map(|o| o.payload.len()).sum();
        }
        for i in 0..self.queue.0.events().len() {
            let ev = self.queue.0.events()[i];
            self.event(l, ev);
        }
        busy |= self.queue.0.dataplane().has_pending_work();
        dirty.clear();
        self.dirty_spare = dirty;
        self.cmds_spare.put(cmds);
        self.note_pending();
        let now = now_us();
        let next = self.queue.0.dataplane().poll_at();
        l.timers[self.index].store(next.map_or(u64::MAX, |t| t.total_micros().max(now)), Ordering::Relaxed);
        busy
    }

    fn command_result(&mut self, cmd: &Cmd, ret: Result<u64, Ret>) {
        match cmd {
            Cmd::Sendv { id, .. } => {
                let id = *id;
                if let Some(s) = self.get(id) {
                    let c = &mut s.conn;
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
            Cmd::Connect { id, .. } => {
                let id = *id;
                let q = self.index;
                if let Some(s) = self.get(id) {
                    let c = &mut s.conn;
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
                    if ret.is_err() && s.n.fd.is_none() {
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
            Cmd::Plain(Pending::UdpBind { port }) => {
                if let Err(e) = ret {
                    log::warn!("libix: binding dataplane UDP port {port} failed: {e:?}");
                }
            }
            Cmd::UdpSend { .. } => {
                // A datagram the TX ring or the pool had no room for is lost, as UDP may lose it.
                if let Err(e) = ret {
                    log::debug!("udp send: {e:?}");
                }
            }
            Cmd::Plain(_) => {}
        }
    }

    fn event(&mut self, l: &Layer, ev: Event) {
        let q = self.index;
        match ev {
            Event::TcpKnock { handle, remote, local_port } => {
                let Some(listener) = listener_for(l, local_port, remote, q) else {
                    self.push(Pending::Reject { handle });
                    return;
                };
                let mut st = listener.lock();
                if !st.listening() || st.ready.len() >= st.backlog {
                    drop(st);
                    self.push(Pending::Reject { handle });
                    return;
                }
                // The connection's own address, also under an INADDR_ANY listener (getsockname says where it
                // arrived, as Linux does).
                let local = SocketAddrV4::new(self.address, local_port);
                let conn = Conn { handle, queue: q, state: ConnState::Established, ..Conn::default() };
                let mut sock = Socket::new(None, -1, local, conn);
                sock.remote = SocketAddrV4::new(to_ipv4(remote.addr), remote.port);
                let id = self.insert(sock);
                st.ready.push_back((q, id));
                st.post();
                drop(st);
                self.push(Pending::Accept { handle, cookie: id.0 });
            }
            Event::TcpConnected { cookie, handle, ret, local_port } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                if s.n.fd.is_none() {
                    // Closed while connecting: drop the connection.
                    if ret == Ret::Ok {
                        self.push(Pending::Abort { handle });
                    }
                    self.remove(id);
                    return;
                }
                if ret == Ret::Ok {
                    // getsockname names the ephemeral port the dataplane chose.
                    s.local = SocketAddrV4::new(*s.local.ip(), local_port);
                }
                let c = &mut s.conn;
                if ret == Ret::Ok {
                    c.handle = handle;
                    c.state = ConnState::Established;
                } else {
                    c.state = ConnState::Dead;
                    c.error = Some(ret_errno(ret));
                }
                self.dirty.push(id);
                self.post(id);
            }
            Event::TcpRecv { cookie, handle, data, len } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else {
                    self.push(Pending::RecvDone { handle, len: len as u64 });
                    return;
                };
                let c = &mut s.conn;
                if c.shut_rd {
                    // SHUT_RD: Linux discards what arrives; give it back at once.
                    self.push(Pending::RecvDone { handle, len: len as u64 });
                    return;
                }
                #[allow(unsafe_code)]
                // SAFETY: the dataplane lends `data..data+len` until our TcpRecvDone for it, which `read`
                // submits only after the segment is fully read and dropped from `rx`.
                let lent = unsafe { Lent::new(data, len as usize) };
                if c.turnaround.awaiting() {
                    c.turnaround.arrived(now_us(), l.spin_us());
                }
                s.n.arrived();
                c.rx.push_back(lent);
                c.rx_bytes += len as usize;
                self.post(id);
            }
            Event::TcpSent { cookie, acked, window, .. } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                let orphan = s.n.fd.is_none();
                let c = &mut s.conn;
                c.tx.ack(acked as usize);
                if (window > 0 && c.tx.unhanded() > 0) || (c.shut_wr && !c.fin_sent && c.tx.unhanded() == 0) {
                    self.dirty.push(id);
                }
                if !orphan {
                    self.post(id);
                }
            }
            Event::TcpEof { cookie, .. } => {
                let id = SockId(cookie);
                if let Some(s) = self.get(id) {
                    s.conn.eof = true;
                }
                self.post(id);
            }
            Event::TcpDead { cookie, reason, .. } => {
                let id = SockId(cookie);
                let Some(s) = self.get(id) else { return };
                // Closed by the app (still sending when it died): nobody will read or accept it any more.
                let orphan = s.closed;
                let c = &mut s.conn;
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
                if orphan {
                    self.remove(id);
                } else {
                    self.post(id);
                }
            }
            Event::UdpRecv { buf, src, dst_port } => udp::deliver(l, self, buf, src, dst_port),
            Event::UdpSent { .. } => {}
        }
    }
}

/// The listener that takes a connection from `remote` on `port`, arriving on queue `shard`: among the port's
/// listening sockets (several with SO_REUSEPORT, in the order they were bound), those paired with the queue
/// (listener `k` with queue `k % queues`, when the group has a listener for it), then one of them by a hash of the
/// peer, so a flow always lands on the same one. The pairing is IX's arrangement: with one SO_REUSEPORT listener
/// per thread and as many threads as queues (`memcached-patch/`), each thread accepts the connections of one queue
/// and so serves flows its own loop drives (owner == user).
fn listener_for(l: &Layer, port: u16, remote: Endpoint, shard: usize) -> Option<Arc<PortSock>> {
    let socks = l.port_socks(port);
    let mut listening: Vec<Arc<PortSock>> = socks.into_iter().filter(|p| p.lock().listening()).collect();
    if listening.is_empty() {
        return None;
    }
    let queues = l.shards.len().max(1);
    if queues > 1 && listening.len() > shard % queues {
        listening =
            listening.into_iter().enumerate().filter(|(k, _)| k % queues == shard % queues).map(|(_, p)| p).collect();
    }
    let h =
        u32::from_be_bytes(remote.addr.0).wrapping_mul(0x9e37_79b1) ^ (remote.port as u32).wrapping_mul(0x85eb_ca6b);
    let i = (h.rotate_left(13) as usize) % listening.len();
    listening.into_iter().nth(i)
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

/// Runs a cycle of every shard no other thread is running one of, starting with the calling thread's own.
/// Returns whether the dataplane had work (a shard another thread holds counts as busy).
pub fn drive() -> bool {
    let (busy, skipped) = drive_shards();
    busy || skipped != 0
}

/// [`drive`], returning whether the cycles run had work and which shards (one bit each) another thread held.
fn drive_shards() -> (bool, u64) {
    let Some(Some(l)) = LAYER.get() else { return (false, 0) };
    let _inside = InsideGuard::enter();
    let n = l.shards.len();
    let start = home().unwrap_or(0) % n;
    let mut busy = false;
    let mut skipped = 0;
    for k in 0..n {
        let q = (start + k) % n;
        match l.shards[q].try_lock() {
            Ok(mut g) => busy |= g.cycle(l),
            Err(std::sync::TryLockError::Poisoned(p)) => busy |= p.into_inner().cycle(l),
            Err(std::sync::TryLockError::WouldBlock) => skipped |= 1 << q,
        }
    }
    (busy, skipped)
}

/// Called by an event_base before it waits for readiness: runs a cycle (its events become readiness in the
/// loops' sinks) and shortens `timeout` so that the loop wakes for the dataplane's timers. Whether the loop keeps
/// polling instead of sleeping is its sink's call (the idle policy, `idle.rs`).
///
/// Work pending on a shard another thread holds is that thread's to do: it is cycling the shard, or writing to it
/// from an event loop (which cycles before it waits) or from elsewhere (which settles, see [`settle`]). Polling
/// for it here would only compete for the core with the holder: two threads on one core, the holder preempted
/// in its cycle by a loop that woke, and the loop spins on a lock the holder cannot release until the scheduler
/// gives it the core back (milliseconds: the waker's sleeper credit).
pub fn before_wait(timeout: Option<Duration>) -> Option<Duration> {
    if !active() {
        return timeout;
    }
    let (_, skipped) = drive_shards();
    if WORK_PENDING.load(Ordering::Acquire) & !skipped != 0 {
        return Some(Duration::ZERO);
    }
    let Some(Some(l)) = LAYER.get() else { return timeout };
    let now = now_us();
    let next = l.next_timer_us(skipped);
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
        let next = l.next_timer_us(0);
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
    if (ip == l.address() || ip.is_unspecified()) && udp::is_udp_v4(fd) {
        // A UDP socket bound to the dataplane's address, or to INADDR_ANY (both worlds).
        return Taken::Yes(udp::take(l, fd, addr.port(), ip.is_unspecified()).map(|_| ()));
    }
    if (ip != l.address() && !ip.is_unspecified()) || !is_tcp_v4(fd) {
        return Taken::No;
    }
    let _inside = InsideGuard::enter();
    if addr.port() == 0 {
        // An ephemeral listening port would need the dataplane to choose one; not supported yet.
        return if ip.is_unspecified() { Taken::No } else { Taken::Yes(Err(libc::EADDRNOTAVAIL)) };
    }
    // SO_REUSEPORT was set on the kernel socket before bind: every socket of a port must have it to share it.
    let reuseport = kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(0) != 0;
    // The port map stays locked until the socket is in it: two binds of one port cannot both succeed.
    let mut ports = l.ports_mut();
    if let Some(socks) = ports.get(&addr.port()) {
        let all_share = socks.iter().all(|p| p.lock().o.reuseport());
        if !(reuseport && all_share) {
            return Taken::Yes(Err(libc::EADDRINUSE));
        }
    }
    let local = SocketAddrV4::new(ip, addr.port());
    let result = (|| {
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
            Ok((notify, nonblocking, Some(kfd)))
        } else {
            let (_, _, nonblocking) = make_placeholder(fd)?;
            Ok((fd, nonblocking, None))
        }
    })();
    Taken::Yes(result.map(|(notify, nonblocking, kernel)| {
        let mut o = Opts { nonblocking, ..Opts::default() };
        if reuseport {
            o.options.insert((libc::SOL_SOCKET, libc::SO_REUSEPORT), 1);
        }
        let state = PortState {
            n: Notify::new(Some(fd), notify),
            o,
            // A dual listener is a listener from bind on (the dataplane listens only after listen()).
            listener: kernel.is_some(),
            backlog: 0,
            ready: VecDeque::new(),
            kernel,
            closed: false,
        };
        let p = Arc::new(PortSock { port: addr.port(), local, state: Mutex::new(state) });
        ports.entry(addr.port()).or_default().push(p.clone());
        drop(ports);
        l.fds_mut().insert(fd, Loc::Port(p));
        fdmap::mark(fd);
    }))
}

/// `listen` on a dataplane socket.
pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    let backlog = if backlog <= 0 { 128 } else { backlog.min(65535) as usize };
    let Loc::Port(p) = l.lookup(fd)? else { return Err(libc::EINVAL) };
    {
        let mut st = p.lock();
        if st.listener {
            if let Some(k) = st.kernel {
                kernel::listen(k, backlog as i32)?;
            }
            let first = st.backlog == 0;
            st.backlog = backlog;
            if !first {
                return Ok(());
            }
        } else {
            st.listener = true;
            st.backlog = backlog;
        }
    }
    // The dataplane listens once per port (on every queue); further SO_REUSEPORT listeners share it.
    let others_listening = l.port_socks(p.port).iter().filter(|o| !Arc::ptr_eq(o, &p)).any(|o| o.lock().listening());
    if !others_listening {
        for q in 0..l.shards.len() {
            l.shard(q).push(Pending::Listen { port: p.port, backlog: backlog as u32 });
        }
    }
    p.lock().post();
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
        let Loc::Port(p) = l.lookup(fd)? else { return Err(libc::EINVAL) };
        let mut st = p.lock();
        let nonblocking = st.o.nonblocking;
        let deadline = *timeout.get_or_insert_with(|| st.o.rcvtimeo.and_then(|t| Instant::now().checked_add(t)));
        if !st.listener {
            return Err(libc::EINVAL);
        }
        let kernel_fd = st.kernel;
        if !st.ready.is_empty() {
            // The connection stays queued if its fd cannot be made (EMFILE, ...).
            let newfd = kernel::eventfd()?;
            if flags & libc::SOCK_CLOEXEC == 0 {
                if let Err(e) = kernel::fcntl(newfd, libc::F_SETFD, 0) {
                    kernel::close(newfd);
                    return Err(e);
                }
            }
            // One of the calling thread's own queue first (owner == user), else the oldest.
            let at = home().and_then(|h| st.ready.iter().position(|&(q, _)| q == h)).unwrap_or(0);
            let (shard, cid) = st.ready.remove(at).expect("ready is not empty");
            // What an accepted socket inherits from its listener, as on Linux.
            let mut o = st.o.clone();
            st.post();
            drop(st);
            let mut g = l.shard(shard);
            let Some(c) = g.get(cid) else {
                kernel::close(newfd);
                continue;
            };
            c.n.fd = Some(newfd);
            c.n.notify = newfd;
            o.nonblocking = flags & libc::SOCK_NONBLOCK != 0;
            let keepalive = o.options.get(&(libc::SOL_SOCKET, libc::SO_KEEPALIVE)).is_some_and(|&v| v != 0);
            c.o = o;
            let (peer, handle) = (c.remote, c.conn.handle);
            if keepalive {
                g.push(Pending::Keepalive { handle, enable: true });
            }
            l.fds_mut().insert(newfd, Loc::Conn { shard, id: cid });
            fdmap::mark(newfd);
            g.post(cid);
            drop(g);
            set_home(shard);
            return Ok(Accepted::Dataplane(newfd, peer));
        }
        drop(st);
        if let Some(k) = kernel_fd {
            // Nothing from the dataplane: try the kernel (non-blocking); the caller maps EAGAIN.
            let mut pfd = [libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 }];
            if kernel::poll(&mut pfd, 0) == Ok(1) || nonblocking {
                return Ok(Accepted::Kernel(k));
            }
        } else if nonblocking {
            return Err(libc::EAGAIN);
        }
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
        if let Some(Ok(Loc::Udp(u))) = layer().map(|l| l.lookup(fd)) {
            let l = layer().expect("a dataplane fd");
            return Taken::Yes(udp::connect(l, &u, Some(addr)));
        }
        return Taken::Yes(connect_existing(fd));
    }
    let ip = *addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return Taken::No;
    }
    let Some(l) = layer() else { return Taken::No };
    if udp::takes_implicit(l, fd, addr) {
        // An unbound UDP socket connecting into the subnet: bound implicitly to the dataplane's address.
        return Taken::Yes(udp::take(l, fd, 0, false).and_then(|u| udp::connect(l, &u, Some(addr))));
    }
    if !l.in_subnet(ip) || !is_tcp_v4(fd) {
        return Taken::No;
    }
    let _inside = InsideGuard::enter();
    let nonblocking = match make_placeholder(fd) {
        Ok((_, _, nonblocking)) => nonblocking,
        Err(e) => return Taken::Yes(Err(e)),
    };
    // The queue this thread drives (its replies reach it: RSS-aware ports or steering), else the next one.
    let shard = home().unwrap_or_else(|| l.next_connect.fetch_add(1, Ordering::Relaxed)) % l.shards.len();
    let conn = Conn { queue: shard, ..Conn::default() };
    let mut s = Socket::new(Some(fd), fd, SocketAddrV4::new(l.address(), 0), conn);
    s.o.nonblocking = nonblocking;
    s.remote = addr;
    let mut g = l.shard(shard);
    let id = g.insert(s);
    l.fds_mut().insert(fd, Loc::Conn { shard, id });
    fdmap::mark(fd);
    g.connects.push((id, Endpoint { addr: Ipv4Address(addr.ip().octets()), port: addr.port() }));
    g.mark_work();
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
        let (shard, id) = match l.lookup(fd)? {
            Loc::Conn { shard, id } => (shard, id),
            // As Linux says for a listening socket.
            Loc::Port(p) if p.lock().listener => return Err(libc::EISCONN),
            // Bound to the dataplane's address: its connects take a source port of the dataplane's choosing, so
            // a bound socket cannot connect (yet).
            Loc::Port(_) => return Err(libc::EOPNOTSUPP),
            // `connect` takes UDP sockets before this.
            Loc::Udp(_) => return Err(libc::EINVAL),
        };
        let mut g = l.shard(shard);
        let s = g.get(id).ok_or(libc::EBADF)?;
        let (nonblocking, notify) = (s.o.nonblocking, s.n.notify);
        let deadline = *timeout.get_or_insert_with(|| s.o.sndtimeo.and_then(|t| Instant::now().checked_add(t)));
        let c = &mut s.conn;
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
        let mut g = l.shard(shard);
        let s = g.get(id).ok_or(libc::EBADF)?;
        if let ConnState::Established = s.conn.state {
            return Ok(());
        }
    }
}

/// The connection behind `fd` (`Err(e)`: `e` if it is a port socket).
fn conn_of(l: &Layer, fd: RawFd, not_conn: Errno) -> Result<(usize, SockId), Errno> {
    match l.lookup(fd)? {
        Loc::Conn { shard, id } => {
            set_home(shard);
            Ok((shard, id))
        }
        Loc::Port(_) | Loc::Udp(_) => Err(not_conn),
    }
}

/// `connect(fd, AF_UNSPEC)`: a UDP socket forgets its peer (a TCP one is not disconnected this way here).
pub fn disconnect(fd: RawFd) -> Result<(), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    match l.lookup(fd)? {
        Loc::Udp(u) => udp::connect(l, &u, None),
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// Whether `sendto`/`sendmsg` on kernel socket `fd` to `dst` takes it to the dataplane (an unbound UDP socket
/// sending into the dataplane's subnet is bound implicitly to the dataplane's address); the caller then sends
/// through [`send_to`].
pub fn sendto_takes(fd: RawFd, dst: SocketAddrV4) -> Result<bool, Errno> {
    if inside() || fdmap::is_dataplane(fd) {
        return Ok(false);
    }
    let Some(l) = layer() else { return Ok(false) };
    if !l.in_subnet(*dst.ip()) {
        return Ok(false);
    }
    let _inside = InsideGuard::enter();
    if !udp::takes_implicit(l, fd, dst) {
        return Ok(false);
    }
    udp::take(l, fd, 0, false).map(|_| true)
}

/// `recvfrom`/`recvmsg`: as [`recv`], with the sender of a UDP datagram (`from`; for TCP `None`: the caller
/// asks `getpeername`) and whether it was truncated.
pub fn recv_msg(fd: RawFd, bufs: &mut [&mut [u8]], flags: i32) -> Result<(usize, Option<SocketAddrV4>, bool), Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    if let Loc::Udp(u) = l.lookup(fd)? {
        let _inside = InsideGuard::enter();
        let d = udp::recv(l, &u, bufs, flags)?;
        return Ok((d.len, Some(d.from), d.truncated));
    }
    recv(fd, bufs, flags).map(|n| (n, None, false))
}

/// `sendto`/`sendmsg`: as [`send`]; `dst` is a UDP datagram's destination (ignored on a TCP connection, as
/// Linux does).
pub fn send_to(fd: RawFd, bufs: &[&[u8]], dontwait: bool, dst: Option<SocketAddrV4>) -> Result<usize, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    if let Loc::Udp(u) = l.lookup(fd)? {
        let _inside = InsideGuard::enter();
        return udp::send(l, &u, bufs, dontwait, dst);
    }
    send(fd, bufs, dontwait)
}

/// `recv` family: copies into `bufs`. `flags`: MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL (a blocking call waits until
/// `bufs` is full, the stream ends, an error comes or SO_RCVTIMEO passes, and returns what it has).
pub fn recv(fd: RawFd, bufs: &mut [&mut [u8]], flags: i32) -> Result<usize, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    if let Loc::Udp(u) = l.lookup(fd)? {
        return udp::recv(l, &u, bufs, flags).map(|d| d.len);
    }
    let want: usize = bufs.iter().map(|b| b.len()).sum();
    let peek = flags & libc::MSG_PEEK != 0;
    let mut got = 0;
    let mut timeout = None;
    loop {
        let (shard, id) = conn_of(l, fd, libc::ENOTCONN)?;
        let mut g = l.shard(shard);
        let s = g.get(id).ok_or(libc::EBADF)?;
        let (nonblocking, notify) = (s.o.nonblocking || flags & libc::MSG_DONTWAIT != 0, s.n.notify);
        let waitall = flags & libc::MSG_WAITALL != 0 && !peek && !nonblocking;
        let deadline = *timeout.get_or_insert_with(|| s.o.rcvtimeo.and_then(|t| Instant::now().checked_add(t)));
        let c = &mut s.conn;
        if matches!(c.state, ConnState::Connecting) {
            if nonblocking {
                return Err(libc::EAGAIN);
            }
        } else if c.rx_bytes > 0 && want > got {
            got += copy_out(c, bufs, got, peek);
            let (handle, done) = (c.handle, std::mem::take(&mut c.recv_done));
            // A dead connection's bytes are the layer's own copies: nothing to give back.
            if done > 0 && !matches!(c.state, ConnState::Dead) {
                g.push(Pending::RecvDone { handle, len: done });
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
    if let Loc::Udp(u) = l.lookup(fd)? {
        return udp::send(l, &u, bufs, dontwait, None);
    }
    let want: usize = bufs.iter().map(|b| b.len()).sum();
    let mut sent = 0;
    let mut timeout = None;
    loop {
        // A socket that is not a connection (listening, or only bound) has no sending direction: EPIPE, as Linux.
        let (shard, id) = conn_of(l, fd, EPIPE_SIGNAL)?;
        let mut g = l.shard(shard);
        let s = g.get(id).ok_or(libc::EBADF)?;
        let (nonblocking, notify, sndbuf) = (s.o.nonblocking || dontwait, s.n.notify, s.o.sndbuf);
        let deadline = *timeout.get_or_insert_with(|| s.o.sndtimeo.and_then(|t| Instant::now().checked_add(t)));
        let c = &mut s.conn;
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
                    if c.rx_bytes == 0 {
                        // An answer (everything read): the loops that watch it poll for the peer's next request if
                        // it usually comes back soon.
                        let now = now_us();
                        if c.turnaround.answered(now, l.spin_us()) {
                            s.n.watches.iter().for_each(|w| w.sink.expect_reply(now));
                        }
                    }
                    g.dirty.push(id);
                    g.mark_work();
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
    let (shard, id) = conn_of(l, fd, libc::ENOTCONN)?;
    let mut g = l.shard(shard);
    let c = &mut g.get(id).ok_or(libc::EBADF)?.conn;
    if !matches!(c.state, ConnState::Established) {
        return Err(libc::ENOTCONN);
    }
    if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
        c.shut_rd = true;
    }
    if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
        c.shut_wr = true;
        g.dirty.push(id);
        g.mark_work();
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
    let loc = l.fds_mut().remove(&fd).ok_or(libc::EBADF)?;
    fdmap::unmark(fd);
    match loc {
        Loc::Conn { shard, id } => close_conn(l, fd, shard, id),
        Loc::Port(p) => close_port(l, fd, &p),
        Loc::Udp(u) => udp::close(l, fd, &u),
    }
    kernel::close(fd);
    drive();
    Ok(())
}

fn close_conn(l: &Layer, fd: RawFd, shard: usize, id: SockId) {
    let mut g = l.shard(shard);
    let Some(s) = g.get(id) else { return };
    s.n.fd = None;
    s.closed = true;
    s.n.unwatch_all(fd);
    let abort_linger = s.o.linger.is_some_and(|lg| lg.l_onoff != 0 && lg.l_linger == 0);
    let c = &mut s.conn;
    let remove_now = match c.state {
        ConnState::Dead => true,
        // The handle is not known until TcpConnected; the connect result will find the orphan.
        ConnState::Connecting => false,
        ConnState::Established if c.rx_bytes > 0 || abort_linger => {
            let h = c.handle;
            c.tx.clear();
            c.rx.clear();
            c.state = ConnState::Dead;
            g.push(Pending::Abort { handle: h });
            true
        }
        ConnState::Established => {
            c.shut_wr = true;
            let (h, done) = (c.handle, std::mem::take(&mut c.recv_done));
            if done > 0 {
                g.push(Pending::RecvDone { handle: h, len: done });
            }
            g.dirty.push(id);
            g.mark_work();
            false
        }
    };
    if remove_now {
        g.remove(id);
    }
}

fn close_port(l: &Layer, fd: RawFd, p: &Arc<PortSock>) {
    // Out of the port map first: no connection is queued for it once its state says closed.
    let others_listening = {
        let mut ports = l.ports_mut();
        let mut others_listening = false;
        if let Some(socks) = ports.get_mut(&p.port) {
            socks.retain(|o| !Arc::ptr_eq(o, p));
            others_listening = socks.iter().any(|o| o.lock().listening());
            if socks.is_empty() {
                ports.remove(&p.port);
            }
        }
        others_listening
    };
    let mut st = p.lock();
    // A dual listener is a listener from bind on, but the dataplane listens only after listen().
    let listening = st.listener && st.backlog > 0;
    st.closed = true;
    st.n.fd = None;
    st.n.unwatch_all(fd);
    if let Some(k) = st.kernel.take() {
        kernel::close(k);
    }
    let ready: Vec<(usize, SockId)> = st.ready.drain(..).collect();
    let notify = st.n.notify;
    drop(st);
    if notify != fd {
        kernel::close(notify);
    }
    // Only a port the dataplane listens on is unlistened (one only bound would be a bad-handle command), and
    // only when no other SO_REUSEPORT listener still uses it.
    if listening && !others_listening {
        for q in 0..l.shards.len() {
            l.shard(q).push(Pending::Unlisten { port: p.port });
        }
    }
    for (q, cid) in ready {
        let mut g = l.shard(q);
        if let Some(s) = g.get(cid) {
            let h = s.conn.handle;
            g.push(Pending::Abort { handle: h });
        }
        g.remove(cid);
    }
}

/// A dataplane socket, locked: a connection in its shard, or a port socket.
enum SockRef<'a> {
    Conn(&'a mut Shard, SockId),
    Port(&'a PortSock, &'a mut PortState),
    Udp(&'a udp::UdpSock, &'a mut udp::UdpState),
}

impl SockRef<'_> {
    fn opts(&mut self) -> &mut Opts {
        match self {
            SockRef::Conn(g, id) => &mut g.sock(*id).o,
            SockRef::Port(_, st) => &mut st.o,
            SockRef::Udp(_, st) => &mut st.o,
        }
    }
}

/// Runs `f` on `fd`'s socket under its lock.
fn with_sock<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> Result<R, Errno>) -> Result<R, Errno> {
    let l = layer().ok_or(libc::EBADF)?;
    let _inside = InsideGuard::enter();
    match l.lookup(fd)? {
        Loc::Conn { shard, id } => {
            let mut g = l.shard(shard);
            if g.get(id).is_none() {
                return Err(libc::EBADF);
            }
            f(SockRef::Conn(&mut g, id))
        }
        Loc::Port(p) => {
            let mut st = p.lock();
            f(SockRef::Port(&p, &mut st))
        }
        Loc::Udp(u) => {
            let mut st = u.lock();
            f(SockRef::Udp(&u, &mut st))
        }
    }
}

/// `getsockname` (`local`) or `getpeername`.
pub fn name(fd: RawFd, local: bool) -> Result<SocketAddrV4, Errno> {
    with_sock(fd, |r| match r {
        SockRef::Conn(g, id) => {
            let s = g.sock(id);
            if local {
                Ok(s.local)
            } else if matches!(s.conn.state, ConnState::Established) {
                Ok(s.remote)
            } else {
                Err(libc::ENOTCONN)
            }
        }
        SockRef::Port(p, st) => match (local, st.kernel) {
            (true, Some(k)) => kernel::getsockname_v4(k),
            (true, None) => Ok(p.local),
            (false, _) => Err(libc::ENOTCONN),
        },
        SockRef::Udp(u, st) => {
            if local {
                Ok(udp::local(u))
            } else {
                st.peer.ok_or(libc::ENOTCONN)
            }
        }
    })
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
    with_sock(fd, |mut r| {
        let v = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => match r {
                SockRef::Conn(g, id) => {
                    let e = g.sock(id).conn.error.take().unwrap_or(0);
                    g.post(id);
                    e
                }
                SockRef::Port(_, st) => {
                    st.post();
                    0
                }
                SockRef::Udp(..) => 0,
            },
            (libc::SOL_SOCKET, libc::SO_TYPE) if matches!(r, SockRef::Udp(..)) => libc::SOCK_DGRAM,
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) if matches!(r, SockRef::Udp(..)) => libc::IPPROTO_UDP,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) if matches!(r, SockRef::Udp(..)) => match r {
                SockRef::Udp(_, st) => st.rcvbuf as i32,
                _ => 0,
            },
            (libc::SOL_SOCKET, libc::SO_TYPE) => libc::SOCK_STREAM,
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => libc::AF_INET,
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => libc::IPPROTO_TCP,
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => match r {
                SockRef::Conn(..) | SockRef::Udp(..) => 0,
                SockRef::Port(_, st) => st.listener as i32,
            },
            // The NIC queue the connection's packets arrive on, numbered from 1 as Linux numbers NAPI contexts (0:
            // none): memcached -N hands each connection to the worker thread of its queue with it (IX's flow
            // groups).
            (libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID) => match r {
                SockRef::Conn(g, id) => g.sock(id).conn.queue as i32 + 1,
                SockRef::Udp(u, _) => u.shard as i32 + 1,
                SockRef::Port(..) => 0,
            },
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => r.opts().sndbuf as i32,
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                return Ok(OptValue::Linger(r.opts().linger.unwrap_or(libc::linger { l_onoff: 0, l_linger: 0 })));
            }
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => return Ok(OptValue::Timeval(timeval_of(r.opts().rcvtimeo))),
            (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => return Ok(OptValue::Timeval(timeval_of(r.opts().sndtimeo))),
            // The dataplane's receive window per connection, which SO_RCVBUF does not change.
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => dataplane::tcp::conn::TcpConfig::default().rcv_buf as i32,
            (libc::SOL_SOCKET | libc::IPPROTO_TCP, _) => *r.opts().options.get(&(level, name)).unwrap_or(&0),
            _ => return Err(libc::ENOPROTOOPT),
        };
        Ok(OptValue::Int(v))
    })
}

/// `setsockopt` on a dataplane socket (`value`: the option's bytes).
pub fn setsockopt(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    with_sock(fd, |mut r| {
        if let SockRef::Port(_, PortState { kernel: Some(k), .. }) = r {
            // Keep the kernel half of a dual listener in step (SO_REUSEADDR, SO_RCVTIMEO, SO_LINGER, ...: the
            // option's own bytes, so that the kernel's connections inherit them too); its errors are not ours.
            let _ = kernel::setsockopt_bytes(*k, level, name, value);
        }
        if let SockRef::Udp(udp::UdpSock { kernel: Some(k), .. }, _) = r {
            // The kernel half of an INADDR_ANY socket, as for a dual listener.
            let _ = kernel::setsockopt_bytes(*k, level, name, value);
        }
        if let SockRef::Udp(_, st) = &mut r {
            if level == libc::SOL_SOCKET && name == libc::SO_RCVBUF && value.len() >= 4 {
                // As Linux: doubled (for bookkeeping overhead), with its minimum.
                let v = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
                st.rcvbuf = (v.max(1152) as usize).saturating_mul(2);
                return Ok(());
            }
        }
        let s = r.opts();
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
                if let SockRef::Conn(g, id) = r {
                    let c = &g.sock(id).conn;
                    if matches!(c.state, ConnState::Established) {
                        let handle = c.handle;
                        g.push(Pending::Keepalive { handle, enable: v != 0 });
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
    })
}

/// `fcntl` on a dataplane socket: status flags are ours; fd flags are the placeholder's.
pub fn fcntl(fd: RawFd, cmd: i32, arg: usize) -> Result<i32, Errno> {
    with_sock(fd, |mut r| {
        let s = r.opts();
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
    })
}

/// `ioctl(FIONBIO / FIONREAD)` on a dataplane socket; `arg` is the int the request reads or writes.
pub fn ioctl(fd: RawFd, request: u64, arg: &mut i32) -> Result<(), Errno> {
    with_sock(fd, |mut r| match request {
        r_ if r_ == libc::FIONBIO => {
            r.opts().nonblocking = *arg != 0;
            Ok(())
        }
        r_ if r_ == libc::FIONREAD => {
            *arg = match r {
                SockRef::Conn(g, id) => g.sock(id).conn.rx_bytes.min(i32::MAX as usize) as i32,
                // The size of the next datagram, as Linux's UDP.
                SockRef::Udp(u, st) => st.next_len_any(u).min(i32::MAX as usize) as i32,
                SockRef::Port(..) => 0,
            };
            Ok(())
        }
        _ => Err(libc::ENOTTY),
    })
}

/// Whether the socket would block for `events` (POLLIN/POLLOUT), for `poll` on dataplane fds.
pub fn poll_revents(fd: RawFd, events: i16) -> i16 {
    if LAYER.get().and_then(Option::as_ref).is_none() {
        return libc::POLLNVAL;
    }
    let rev = with_sock(fd, |r| {
        let (readable, writable, conn) = match r {
            SockRef::Conn(g, id) => {
                let s = g.sock(id);
                let (rd, wr) = s.readiness();
                let c = &s.conn;
                let dead = matches!(c.state, ConnState::Dead);
                (
                    rd,
                    wr,
                    Some((c.error.is_some(), c.eof || c.shut_rd || dead, dead || ((c.eof || c.shut_rd) && c.shut_wr))),
                )
            }
            SockRef::Port(_, st) => {
                let (rd, wr) = st.readiness();
                (rd, wr, None)
            }
            SockRef::Udp(u, st) => (st.readable_any(u), true, None),
        };
        let mut rev = 0;
        if readable && events & libc::POLLIN != 0 {
            rev |= libc::POLLIN;
        }
        if writable && events & libc::POLLOUT != 0 {
            rev |= libc::POLLOUT;
        }
        // As Linux's tcp_poll: a pending error is POLLERR; the receiving direction closed (the peer's FIN, or
        // SHUT_RD) is POLLRDHUP; both directions closed, or the connection over, is POLLHUP.
        if let Some((error, rdhup, hup)) = conn {
            if error {
                rev |= libc::POLLERR;
            }
            if rdhup && events & libc::POLLRDHUP != 0 {
                rev |= libc::POLLRDHUP;
            }
            if hup {
                rev |= libc::POLLHUP;
            }
        }
        Ok(rev)
    });
    rev.unwrap_or(libc::POLLNVAL)
}

/// An event loop starts (`mask != 0`) or stops watching dataplane socket `fd` for EV_READ/EV_WRITE/EV_CLOSED:
/// its readiness then goes to `sink`. Returns whether the loop must also watch `fd` in its epoll set (an
/// INADDR_ANY listener, whose kernel half the kernel reports).
pub fn watch(fd: RawFd, sink: &Arc<ReadySink>, mask: i16, edge: bool) -> bool {
    if LAYER.get().and_then(Option::as_ref).is_none() {
        return true;
    }
    with_sock(fd, |r| match r {
        SockRef::Conn(g, id) => {
            g.sock(id).n.watch(fd, sink, mask, edge, true);
            g.post(id);
            Ok(false)
        }
        SockRef::Port(_, st) => {
            st.n.watch(fd, sink, mask, edge, false);
            st.post();
            Ok(st.kernel.is_some())
        }
        SockRef::Udp(u, st) => {
            st.n.watch(fd, sink, mask, edge, true);
            st.post();
            Ok(u.kernel.is_some())
        }
    })
    .unwrap_or(true)
}
