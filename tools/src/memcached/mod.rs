//! `ixbench memcached`: a mutilate-style load generator for memcached (IX §5.5), on plain non-blocking Linux
//! sockets.
//!
//! - Workloads ETC and USR (module [`workload`]), text or binary protocol (module [`protocol`]), keys drawn
//!   uniformly from `--keys`, every key SET once before anything is measured (the warm-up phase).
//! - **Closed loop** (no `--rate`): `--conns` connections, each keeping `--depth` (1..=4) requests pipelined;
//!   latency from the actual send.
//! - **Open loop** (`--rate R`, or `--sweep R1,R2,..` for one run per rate): each connection is its own Poisson
//!   process at R/conns, so the sum is Poisson at R; a connection pipelines up to `--max-pipeline` (4, as in the
//!   paper) requests when it falls behind, and a request that cannot go yet keeps its arrival time: latency is
//!   measured from the *intended* send time (coordinated omission accounted). As mutilate's agent mode, a
//!   separate unloaded connection (served by the first thread's loop, counted apart) sends one request at a
//!   time at `--measure-rate` and reports its own latency.
//! - `--busy-poll` polls with `epoll_wait(0)`, as mutilate does unless given `-B` ("use blocking epoll(); may
//!   increase latency"): a sleeping client adds its own wake-ups to every latency (on a VM, tens of us for
//!   the arrival timer and again for the reply) and sends late when its core is slow to wake.
//! - Every reply is checked: a GET hit must carry the key's flags (its index) and the bytes of its value pattern
//!   ([`workload::ValuePattern`]); a miss, a wrong value, a failed SET, a protocol error, a timeout or a dropped
//!   connection is an error. Misses are reported separately; they are forgiven only if the server's
//!   `evictions` counter moved during the run.
//! - `--threads` threads, each with its own epoll (edge-triggered) and timerfd for arrival times. The hot path
//!   does not allocate: keys live in one arena built before the run, requests are encoded into per-connection
//!   buffers and replies parsed in place.
//!
//! Bounded: every phase has a deadline and the process a hard stop; only servers in 198.18.0.0/15 or loopback.

pub mod plot;
pub mod protocol;
pub mod workload;

use hdrhistogram::Histogram;
use protocol::{Parsed, Protocol, Reply};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use workload::{KeySpace, Rng, ValuePattern, Workload, MAX_VALUE};

#[derive(clap::Args, Debug, Clone)]
pub struct MemcachedArgs {
    /// memcached server, A.B.C.D:PORT (198.18.0.0/15 or 127.0.0.0/8 only).
    #[arg(long)]
    pub server: SocketAddrV4,
    /// Facebook workload (IX §5.5): etc (GEV keys, GPareto values, 75% GET) or usr (19 B keys, 2 B values, 99% GET).
    #[arg(long, value_enum, default_value_t = Workload::Etc)]
    pub workload: Workload,
    /// memcached protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Text)]
    pub protocol: Protocol,
    /// Keys in the key space (the paper: 1,000,000), drawn uniformly; all are SET before measuring.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Skip the warm-up SET of every key (the server holds them already, from a run with the same --workload and
    /// --keys).
    #[arg(long)]
    pub no_prefill: bool,
    /// Connections carrying the load, over all threads.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Client threads, each with its own epoll and its share of the connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Closed loop: requests pipelined on each connection (1..=4).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Open loop: Poisson arrivals at this many requests/s over all connections.
    #[arg(long, conflicts_with = "sweep")]
    pub rate: Option<f64>,
    /// Open loop, one run per rate (requests/s, comma separated): the latency-vs-throughput curve (Fig. 5).
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// Open loop: most requests pipelined on a connection that falls behind its arrivals (1..=4).
    #[arg(long, default_value_t = 4)]
    pub max_pipeline: usize,
    /// Open loop: a separate, unloaded connection that sends one request at a time and measures latency
    /// (mutilate's agent mode; served by the first thread's loop). `--measure-conn false` turns it off.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub measure_conn: bool,
    /// Requests/s of the measuring connection (Poisson, one request at a time; 0: back to back).
    #[arg(long, default_value_t = 1000.0)]
    pub measure_rate: f64,
    /// Measured seconds (per rate).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring (per rate).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Spin in epoll_wait(0) instead of sleeping until the next reply or arrival (mutilate's default; without
    /// it the client's own wake-ups add to every latency).
    #[arg(long)]
    pub busy_poll: bool,
    /// A request without a reply after this long is an error (and its connection is dropped).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Seed of every random choice (keys, operations, value sizes, arrivals).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Free-form label copied into the report and the JSON.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Write the results as JSON to FILE: an array, one object per rate (one for a closed-loop run).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw avg and p99 latency against achieved throughput into FILE.png.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Latency axis of the plot up to this many us (default: 1.5x the largest latency of the points that kept up
    /// with their rate; higher latencies are drawn at the top edge).
    #[arg(long)]
    pub plot_max_us: Option<f64>,
}

/// Most connections (file descriptors are checked too).
const MAX_CONNS: usize = 100_000;
/// Largest receive buffer a connection may grow to (a reply bigger than this is a protocol error).
const MAX_RX: usize = 4 << 20;
/// Initial receive and send buffers per connection (they grow for large values; 1476 connections, as in the
/// paper, take about 30 MB).
const RX_INITIAL: usize = 16 << 10;
const TX_INITIAL: usize = 4 << 10;
/// A request sent later than this after its arrival time counts as a late send (open loop).
const LATE_NS: u64 = 100_000;
/// After the measured window, replies are awaited this long.
const DRAIN_NS: u64 = 1_000_000_000;
/// The warm-up SETs of all keys must finish within this.
const PREFILL_MAX_NS: u64 = 600_000_000_000;
const TIMER_TOKEN: u64 = u64::MAX;
/// Open loop: arrivals just before the end of the window are still sent this long after it.
const OPEN_LOOP_GRACE_NS: u64 = 5_000_000;

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// 198.18.0.0/15 (the RFC 2544 benchmarking range of the test host) or loopback.
pub fn allowed_target(a: &SocketAddrV4) -> bool {
    let o = a.ip().octets();
    (o[0] == 198 && (o[1] == 18 || o[1] == 19)) || a.ip().is_loopback()
}

// ---------------------------------------------------------------------------------------------- statistics

/// Errors by kind.
#[derive(Clone, Copy, Default, Debug)]
pub struct Errors {
    /// A GET hit with the wrong flags, key or bytes.
    pub wrong_value: u64,
    /// The server answered with an error (a SET not stored, ERROR, SERVER_ERROR...).
    pub failed: u64,
    /// Bytes that are not a reply to what was sent.
    pub protocol: u64,
    /// Requests without a reply within --timeout-ms.
    pub timeout: u64,
    /// Requests lost with their connection (connect, send or receive failure, closed by the server).
    pub connection: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.wrong_value + self.failed + self.protocol + self.timeout + self.connection
    }
    fn add(&mut self, o: &Errors) {
        self.wrong_value += o.wrong_value;
        self.failed += o.failed;
        self.protocol += o.protocol;
        self.timeout += o.timeout;
        self.connection += o.connection;
    }
}

/// What one engine counted. Requests whose arrival (closed loop: send) time falls in the measured window are
/// the measured ones; errors and misses are counted over the whole run.
pub struct Stats {
    pub latency: Histogram<u64>,
    pub measured: u64,
    pub measured_gets: u64,
    pub completed: u64,
    pub misses: u64,
    pub errors: Errors,
    /// Open loop: measured requests sent more than 100 us after their arrival time.
    pub late_sends: u64,
    /// Open loop: arrivals in the measured window never sent, because their connection was still behind (4
    /// outstanding) when the window closed. Not in the histogram: a non-zero count means the point is overloaded
    /// and its latencies are a lower bound.
    pub unsent: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds"),
            measured: 0,
            measured_gets: 0,
            completed: 0,
            misses: 0,
            errors: Errors::default(),
            late_sends: 0,
            unsent: 0,
        }
    }
    fn merge(&mut self, o: &Stats) {
        self.latency.add(&o.latency).expect("same histogram bounds");
        self.measured += o.measured;
        self.measured_gets += o.measured_gets;
        self.completed += o.completed;
        self.misses += o.misses;
        self.errors.add(&o.errors);
        self.late_sends += o.late_sends;
        self.unsent += o.unsent;
    }
    /// avg, p50, p90, p99, p99.9, max in microseconds.
    pub fn latency_us(&self) -> [f64; 6] {
        let h = &self.latency;
        if h.is_empty() {
            return [0.0; 6];
        }
        let q = |x| h.value_at_quantile(x) as f64 / 1000.0;
        [h.mean() / 1000.0, q(0.5), q(0.9), q(0.99), q(0.999), h.max() as f64 / 1000.0]
    }
}

// ---------------------------------------------------------------------------------------------- engine

/// What the engines of a run share, read-only.
struct Shared {
    workload: Workload,
    protocol: Protocol,
    keys: KeySpace,
    values: ValuePattern,
}

#[derive(Clone, Copy)]
enum Pace {
    /// Keep `depth` requests outstanding on every connection.
    Closed { depth: usize },
    /// Poisson arrivals per connection with this mean gap; at most `max_pipeline` outstanding.
    Open { mean_gap_ns: f64, max_pipeline: usize },
}

#[derive(Clone, Copy)]
enum Ops {
    /// Uniform keys, GET with this probability, else SET.
    Mix { get_fraction: f64 },
    /// SET keys `next, next + stride, ...` below the key count, once each (the warm-up).
    Prefill { next: usize, stride: usize },
}

#[derive(Clone, Copy)]
struct Pending {
    key: u32,
    get: bool,
    /// When the latency is measured from: the arrival time (open loop) or the send time.
    start: u64,
    /// When it was sent (the timeout runs from here).
    sent: u64,
    opaque: u32,
}

struct Conn {
    fd: OwnedFd,
    tx: Vec<u8>,
    tx_sent: usize,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    pending: VecDeque<Pending>,
    next_opaque: u32,
    /// Open loop: the next arrival time on this connection.
    next_arrival: u64,
    rng: Rng,
    dead: bool,
    /// How this connection sends: its pace, and which statistics its requests go to.
    pace: Pace,
    role: Role,
}

/// Which statistics a connection's requests are counted in.
#[derive(Clone, Copy)]
enum Role {
    /// The load (or the warm-up).
    Load = 0,
    /// The unloaded measuring connection (mutilate's agent mode).
    Measure = 1,
}

/// A connection handed to an engine, with its pace and role.
struct ConnSpec {
    fd: OwnedFd,
    pace: Pace,
    role: Role,
}

/// A connected, non-blocking, TCP_NODELAY socket.
fn connect(server: &SocketAddrV4) -> io::Result<OwnedFd> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(*server), Duration::from_secs(3))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(OwnedFd::from(s))
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1; the fd is owned right away.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: valid epoll fd, target fd and event.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn wait(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: evs is a valid array of its length.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
        n.max(0) as usize
    }
}

/// A CLOCK_MONOTONIC timerfd: wakes the engine at the next arrival with nanosecond precision.
struct Timer {
    fd: OwnedFd,
    armed_at: u64,
}

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: plain timerfd_create; the fd is owned right away.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        Ok(Timer { fd: unsafe { OwnedFd::from_raw_fd(fd) }, armed_at: 0 })
    }
    /// Fires at `t` (CLOCK_MONOTONIC ns), unless it is armed for that time already.
    fn arm(&mut self, t: u64) {
        if t == self.armed_at {
            return;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: (t / 1_000_000_000) as i64, tv_nsec: (t % 1_000_000_000) as i64 },
        };
        // SAFETY: valid fd and itimerspec; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
        self.armed_at = t;
    }
    fn clear(&mut self) {
        let mut expirations = [0u8; 8];
        // SAFETY: valid 8-byte buffer; non-blocking fd.
        unsafe { libc::read(self.fd.as_raw_fd(), expirations.as_mut_ptr() as *mut _, 8) };
        self.armed_at = 0;
    }
}

/// The connections of one thread and their requests.
struct Engine<'a> {
    shared: &'a Shared,
    conns: Vec<Conn>,
    ep: Epoll,
    timer: Timer,
    ops: Ops,
    /// Requests that start in [window.0, window.1) are measured.
    window: (u64, u64),
    /// No request starts at or after this (the end of the window, or the prefill deadline).
    stop: u64,
    timeout_ns: u64,
    busy_poll: bool,
    /// Connections not dropped.
    live: usize,
    /// Statistics by [`Role`]: the load's, the measuring connection's.
    st: [Stats; 2],
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        shared: &'a Shared,
        specs: Vec<ConnSpec>,
        ops: Ops,
        window: (u64, u64),
        stop: u64,
        timeout_ns: u64,
        busy_poll: bool,
        seed: u64,
        start: u64,
    ) -> io::Result<Engine<'a>> {
        let ep = Epoll::new()?;
        let timer = Timer::new()?;
        ep.ctl(libc::EPOLL_CTL_ADD, timer.fd.as_raw_fd(), libc::EPOLLIN as u32, TIMER_TOKEN)?;
        let mut conns = Vec::with_capacity(specs.len());
        for (i, ConnSpec { fd, pace, role }) in specs.into_iter().enumerate() {
            let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            ep.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), ev, i as u64)?;
            let mut rng = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
            let next_arrival = match pace {
                Pace::Open { mean_gap_ns, .. } => start + rng.exp(mean_gap_ns) as u64,
                Pace::Closed { .. } => 0,
            };
            conns.push(Conn {
                fd,
                tx: Vec::with_capacity(TX_INITIAL),
                tx_sent: 0,
                rx: vec![0; RX_INITIAL],
                rx_start: 0,
                rx_end: 0,
                pending: VecDeque::with_capacity(8),
                next_opaque: 0,
                next_arrival,
                rng,
                dead: false,
                pace,
                role,
            });
        }
        let live = conns.len();
        let st = [Stats::new(), Stats::new()];
        Ok(Engine { shared, conns, ep, timer, ops, window, stop, timeout_ns, busy_poll, live, st })
    }

    fn prefill_left(&self) -> bool {
        matches!(self.ops, Ops::Prefill { next, .. } if next < self.shared.keys.len())
    }

    fn outstanding(&self) -> usize {
        self.conns.iter().filter(|c| !c.dead).map(|c| c.pending.len()).sum()
    }

    /// Starts the requests connection `ci` may start at `now`, then sends what it has.
    fn issue(&mut self, ci: usize, now: u64) {
        self.fill(ci, now);
        self.flush(ci);
    }

    /// Encodes the requests connection `ci` may start at `now` (sent by the next flush).
    fn fill(&mut self, ci: usize, now: u64) {
        // Open loop: an arrival before the stop still goes out when the loop sees it a little after the stop.
        let (pace, role) = (self.conns[ci].pace, self.conns[ci].role as usize);
        let open = matches!(pace, Pace::Open { .. });
        if self.conns[ci].dead || (now >= self.stop && !open) {
            return;
        }
        match pace {
            Pace::Closed { depth } => while self.conns[ci].pending.len() < depth && self.issue_one(ci, now, now) {},
            Pace::Open { mean_gap_ns, max_pipeline } => loop {
                let c = &mut self.conns[ci];
                let arrival = c.next_arrival;
                if arrival > now || arrival >= self.stop || c.pending.len() >= max_pipeline {
                    break;
                }
                c.next_arrival = arrival + c.rng.exp(mean_gap_ns).max(1.0) as u64;
                if now - arrival > LATE_NS && arrival >= self.window.0 && arrival < self.window.1 {
                    self.st[role].late_sends += 1;
                }
                if !self.issue_one(ci, arrival, now) {
                    break;
                }
            },
        }
    }

    /// Encodes one request on connection `ci`; false when there is none left to start (prefill done).
    fn issue_one(&mut self, ci: usize, start: u64, now: u64) -> bool {
        let shared = self.shared;
        let c = &mut self.conns[ci];
        let (key, get) = match &mut self.ops {
            Ops::Mix { get_fraction } => {
                let key = c.rng.below(shared.keys.len() as u64) as usize;
                (key, c.rng.next_f64() < *get_fraction)
            }
            Ops::Prefill { next, stride } => {
                if *next >= shared.keys.len() {
                    return false;
                }
                let key = *next;
                *next += *stride;
                (key, false)
            }
        };
        let opaque = c.next_opaque;
        c.next_opaque = c.next_opaque.wrapping_add(1);
        let key_bytes = shared.keys.key(key);
        if get {
            shared.protocol.encode_get(&mut c.tx, key_bytes, opaque);
        } else {
            let size = shared.workload.value_size(c.rng.next_f64());
            shared.protocol.encode_set(&mut c.tx, key_bytes, key as u32, shared.values.value(key, size), opaque);
        }
        c.pending.push_back(Pending { key: key as u32, get, start, sent: now, opaque });
        true
    }

    /// Sends what connection `ci` has buffered, as far as the socket takes it.
    fn flush(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        while c.tx_sent < c.tx.len() {
            let b = &c.tx[c.tx_sent..];
            // SAFETY: b is a valid buffer of b.len() bytes.
            let r = unsafe {
                libc::send(c.fd.as_raw_fd(), b.as_ptr() as *const _, b.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if r > 0 {
                c.tx_sent += r as usize;
                continue;
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return, // EPOLLOUT (edge) comes when there is room again
                _ => return self.kill(ci, false),
            }
        }
        c.tx.clear();
        c.tx_sent = 0;
    }

    /// Drops connection `ci`: its outstanding requests are errors (timeouts if `timed_out`).
    fn kill(&mut self, ci: usize, timed_out: bool) {
        let c = &mut self.conns[ci];
        if c.dead {
            return;
        }
        c.dead = true;
        self.live -= 1;
        let lost = c.pending.len() as u64;
        let errors = &mut self.st[c.role as usize].errors;
        if timed_out {
            errors.timeout += lost;
        } else {
            errors.connection += lost.max(1);
        }
        c.pending.clear();
        let _ = self.ep.ctl(libc::EPOLL_CTL_DEL, c.fd.as_raw_fd(), 0, 0);
    }

    /// Reads everything connection `ci` has and handles every whole reply.
    fn receive(&mut self, ci: usize) {
        loop {
            let c = &mut self.conns[ci];
            if c.dead {
                return;
            }
            if c.rx_start == c.rx_end {
                c.rx_start = 0;
                c.rx_end = 0;
            } else if c.rx.len() - c.rx_end < 4096 && c.rx_start > 0 {
                c.rx.copy_within(c.rx_start..c.rx_end, 0);
                c.rx_end -= c.rx_start;
                c.rx_start = 0;
            }
            if c.rx_end == c.rx.len() {
                // A reply larger than the buffer.
                if c.rx.len() >= MAX_RX {
                    self.st[c.role as usize].errors.protocol += 1;
                    return self.kill(ci, false);
                }
                let bigger = (c.rx.len() * 2).min(MAX_RX);
                c.rx.resize(bigger, 0);
            }
            let room = &mut c.rx[c.rx_end..];
            let room_len = room.len();
            // SAFETY: room is a valid writable buffer of room.len() bytes.
            let r = unsafe { libc::recv(c.fd.as_raw_fd(), room.as_mut_ptr() as *mut _, room_len, libc::MSG_DONTWAIT) };
            if r > 0 {
                c.rx_end += r as usize;
                self.parse_replies(ci);
                // The closed loop's next requests, one send for all the replies of this read.
                if !self.conns[ci].dead && !self.conns[ci].tx.is_empty() {
                    self.flush(ci);
                }
                if (r as usize) < room_len {
                    // A short read emptied the socket: the next segment raises a new edge (saves the recv that
                    // would only return EAGAIN).
                    return;
                }
                continue;
            }
            if r == 0 {
                return self.kill(ci, false); // closed by the server
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return,
                _ => return self.kill(ci, false),
            }
        }
    }

    fn parse_replies(&mut self, ci: usize) {
        let shared = self.shared;
        loop {
            let c = &mut self.conns[ci];
            if c.dead || c.rx_start == c.rx_end {
                return;
            }
            let st = &mut self.st[c.role as usize];
            let Some(&req) = c.pending.front() else {
                st.errors.protocol += 1; // bytes nobody asked for
                return self.kill(ci, false);
            };
            let buf = &c.rx[c.rx_start..c.rx_end];
            let (reply, len, opaque) = match shared.protocol.parse(buf, req.get) {
                Parsed::Incomplete => return,
                Parsed::Malformed => {
                    st.errors.protocol += 1;
                    return self.kill(ci, false);
                }
                Parsed::Reply { reply, len, opaque } => (reply, len, opaque),
            };
            if opaque.is_some_and(|o| o != req.opaque) {
                st.errors.protocol += 1;
                return self.kill(ci, false);
            }
            let now = now_ns();
            match reply {
                Reply::Stored => {}
                Reply::Miss => st.misses += 1,
                Reply::Failed => st.errors.failed += 1,
                Reply::Hit { flags, value, key } => {
                    let k = req.key as usize;
                    let right_key = key.is_none_or(|r| &buf[r] == shared.keys.key(k));
                    let size = value.len();
                    if flags != req.key || !right_key || size > MAX_VALUE || buf[value] != *shared.values.value(k, size)
                    {
                        st.errors.wrong_value += 1;
                    }
                }
            }
            c.pending.pop_front();
            c.rx_start += len;
            st.completed += 1;
            if req.start >= self.window.0 && req.start < self.window.1 {
                st.measured += 1;
                st.measured_gets += u64::from(req.get);
                st.latency.saturating_record(now.saturating_sub(req.start).max(1));
            }
            if let Pace::Closed { .. } = c.pace {
                self.fill(ci, now);
            }
        }
    }

    /// Drops connections whose oldest request has waited longer than the timeout.
    fn check_timeouts(&mut self, now: u64) {
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            if !c.dead && c.pending.front().is_some_and(|p| now.saturating_sub(p.sent) > self.timeout_ns) {
                self.kill(ci, true);
            }
        }
    }

    /// Runs until no request may start any more and the outstanding ones are answered (or `drain_until`).
    fn run(&mut self, drain_until: u64) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let open = self.conns.iter().any(|c| matches!(c.pace, Pace::Open { .. }));
        let now = now_ns();
        for ci in 0..self.conns.len() {
            if let Pace::Closed { .. } = self.conns[ci].pace {
                self.issue(ci, now);
            }
        }
        let mut last_check = now;
        loop {
            let now = now_ns();
            let issuing = if open {
                now < self.stop + OPEN_LOOP_GRACE_NS
            } else {
                now < self.stop && (!matches!(self.ops, Ops::Prefill { .. }) || self.prefill_left())
            };
            if !issuing && (self.outstanding() == 0 || now >= drain_until) {
                break;
            }
            if self.live == 0 {
                break;
            }
            let mut timeout_ms = 10;
            if issuing && open {
                let mut next = u64::MAX;
                for ci in 0..self.conns.len() {
                    self.issue(ci, now);
                    let c = &self.conns[ci];
                    if let Pace::Open { max_pipeline, .. } = c.pace {
                        if !c.dead && c.pending.len() < max_pipeline {
                            next = next.min(c.next_arrival);
                        }
                    }
                }
                let now = now_ns();
                if next <= now {
                    timeout_ms = 0;
                } else if next < now + 10_000_000 && !self.busy_poll {
                    self.timer.arm(next);
                }
            }
            if self.busy_poll {
                timeout_ms = 0;
            }
            let n = self.ep.wait(&mut evs, timeout_ms);
            for ev in evs.iter().take(n) {
                let (token, events) = (ev.u64, ev.events);
                if token == TIMER_TOKEN {
                    self.timer.clear();
                    continue;
                }
                let ci = token as usize;
                if events & libc::EPOLLOUT as u32 != 0 && !self.conns[ci].dead {
                    self.flush(ci);
                }
                self.receive(ci);
                if events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    self.kill(ci, false);
                }
            }
            let now = now_ns();
            if now >= last_check + 10_000_000 {
                self.check_timeouts(now);
                last_check = now;
            }
        }
        // Arrivals of the window that never went out (bounded: at most what the schedule holds until the end).
        for c in &mut self.conns {
            if let Pace::Open { mean_gap_ns, .. } = c.pace {
                let mut steps = 0u64;
                while c.next_arrival < self.window.1 && steps < 100_000_000 {
                    self.st[c.role as usize].unsent += u64::from(c.next_arrival >= self.window.0);
                    c.next_arrival += c.rng.exp(mean_gap_ns).max(1.0) as u64;
                    steps += 1;
                }
            }
        }
        // What is still outstanding after the drain is lost.
        for ci in 0..self.conns.len() {
            if !self.conns[ci].pending.is_empty() {
                self.kill(ci, true);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------- runs

/// Result of one run (one rate of a sweep, or the closed-loop run).
pub struct Point {
    pub offered: Option<f64>,
    pub seconds: f64,
    pub load: Stats,
    pub unloaded: Option<Stats>,
    /// Items the server evicted from before the warm-up to the end of this point (None: `stats` did not answer).
    pub evicted: Option<u64>,
}

impl Point {
    pub fn achieved(&self) -> f64 {
        self.load.measured as f64 / self.seconds
    }
}

fn connect_all(server: &SocketAddrV4, n: usize) -> Result<Vec<OwnedFd>, String> {
    (0..n).map(|i| connect(server).map_err(|e| format!("connection {i} to {server}: {e}"))).collect()
}

/// Splits `fds` over `threads` (round robin).
fn split(fds: Vec<OwnedFd>, threads: usize) -> Vec<Vec<OwnedFd>> {
    let mut per: Vec<Vec<OwnedFd>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, fd) in fds.into_iter().enumerate() {
        per[i % threads].push(fd);
    }
    per
}

/// SETs every key once, over the load's connections and threads, closed loop with 4 pipelined.
fn prefill(args: &MemcachedArgs, shared: &Arc<Shared>) -> Result<(u64, f64), String> {
    let t0 = now_ns();
    let conns = args.conns.min(shared.keys.len()).max(1);
    let threads = args.threads.min(conns);
    let fds = connect_all(&args.server, conns)?;
    let deadline = t0 + PREFILL_MAX_NS;
    let mut handles = Vec::new();
    for (t, fds) in split(fds, threads).into_iter().enumerate() {
        let shared = shared.clone();
        let (timeout_ns, seed) = (args.timeout_ms * 1_000_000, args.seed ^ 0x5E7);
        handles.push(std::thread::spawn(move || -> Result<Stats, String> {
            let ops = Ops::Prefill { next: t, stride: threads };
            let pace = Pace::Closed { depth: 4 };
            let specs = fds.into_iter().map(|fd| ConnSpec { fd, pace, role: Role::Load }).collect();
            let mut e = Engine::new(&shared, specs, ops, (0, u64::MAX), deadline, timeout_ns, false, seed, 0)
                .map_err(|e| format!("epoll: {e}"))?;
            e.run(deadline);
            if e.prefill_left() {
                return Err("the warm-up did not SET every key in time (or lost its connections)".into());
            }
            let [load, _] = e.st;
            Ok(load)
        }));
    }
    let mut st = Stats::new();
    for h in handles {
        st.merge(&h.join().map_err(|_| "a client thread panicked".to_string())??);
    }
    if st.errors.total() > 0 || st.completed != shared.keys.len() as u64 {
        return Err(format!(
            "warm-up: {} of {} SETs stored, errors {:?}",
            st.completed - st.errors.failed,
            shared.keys.len(),
            st.errors
        ));
    }
    Ok((st.completed, (now_ns() - t0) as f64 / 1e9))
}

/// One measured run: closed loop (`rate` None) or open loop at `rate` requests/s.
fn run_point(args: &MemcachedArgs, shared: &Arc<Shared>, rate: Option<f64>, index: u64) -> Result<Point, String> {
    let fds = connect_all(&args.server, args.conns)?;
    let measure_fd = match rate {
        Some(_) if args.measure_conn => Some(connect(&args.server).map_err(|e| format!("measuring conn: {e}"))?),
        _ => None,
    };
    // All threads start together, a little after the connections are up.
    let t0 = now_ns() + 20_000_000;
    let window = (t0 + (args.warmup * 1e9) as u64, t0 + ((args.warmup + args.duration) * 1e9) as u64);
    let drain_until = window.1 + DRAIN_NS;
    let timeout_ns = args.timeout_ms * 1_000_000;
    let ops = Ops::Mix { get_fraction: shared.workload.get_fraction() };
    let pace = match rate {
        None => Pace::Closed { depth: args.depth },
        Some(r) => Pace::Open { mean_gap_ns: 1e9 * args.conns as f64 / r, max_pipeline: args.max_pipeline },
    };
    let seed = args.seed.wrapping_add(index.wrapping_mul(0x1_0000_0001));
    let mut per_thread: Vec<Vec<ConnSpec>> = split(fds, args.threads)
        .into_iter()
        .map(|fds| fds.into_iter().map(|fd| ConnSpec { fd, pace, role: Role::Load }).collect())
        .collect();
    // The measuring connection is served by the first thread's loop: on a busy-polling client a thread of its
    // own would share the load thread's core and wait for the scheduler to switch (milliseconds), and a
    // sleeping one would add a wake-up of its own. Its requests are counted apart (Role::Measure).
    let measuring = measure_fd.is_some();
    if let Some(fd) = measure_fd {
        let pace = if args.measure_rate > 0.0 {
            Pace::Open { mean_gap_ns: 1e9 / args.measure_rate, max_pipeline: 1 }
        } else {
            Pace::Closed { depth: 1 }
        };
        per_thread[0].push(ConnSpec { fd, pace, role: Role::Measure });
    }
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, specs)| {
            let shared = shared.clone();
            let (busy, seed) = (args.busy_poll, seed ^ ((t as u64 + 1) << 40));
            std::thread::spawn(move || -> Result<[Stats; 2], String> {
                let mut e = Engine::new(&shared, specs, ops, window, window.1, timeout_ns, busy, seed, t0)
                    .map_err(|e| format!("epoll: {e}"))?;
                let now = now_ns();
                if t0 > now {
                    std::thread::sleep(Duration::from_nanos(t0 - now));
                }
                e.run(drain_until);
                Ok(e.st)
            })
        })
        .collect();
    let (mut load, mut measured) = (Stats::new(), Stats::new());
    for h in handles {
        let [l, m] = h.join().map_err(|_| "a client thread panicked".to_string())??;
        load.merge(&l);
        measured.merge(&m);
    }
    let unloaded = measuring.then_some(measured);
    Ok(Point { offered: rate, seconds: args.duration, load, unloaded, evicted: None })
}

/// The server's `evictions` counter (text `stats`), if it answers.
fn server_evictions(server: &SocketAddrV4) -> Option<u64> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(*server), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    (&s).write_all(b"stats\r\n").ok()?;
    let mut evictions = None;
    for line in BufReader::new(&s).lines().take(500) {
        let line = line.ok()?;
        if line == "END" {
            break;
        }
        if let Some(v) = line.strip_prefix("STAT evictions ") {
            evictions = v.trim().parse().ok();
        }
    }
    evictions
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit in force.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid rlimit pointers.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

fn check_args(args: &MemcachedArgs) -> Result<Vec<Option<f64>>, String> {
    if !allowed_target(&args.server) {
        return Err(format!(
            "refusing {}: ixbench only connects to test hosts in 198.18.0.0/15 (RFC 2544 benchmarking range) or \
             to loopback",
            args.server
        ));
    }
    if args.keys == 0 || args.keys > 100_000_000 {
        return Err("--keys must be 1..=100000000".into());
    }
    if args.conns == 0 || args.conns > MAX_CONNS {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if args.threads == 0 || args.threads > 64 || args.threads > args.conns {
        return Err("--threads must be 1..=64 and at most --conns".into());
    }
    if !(1..=4).contains(&args.depth) || !(1..=4).contains(&args.max_pipeline) {
        return Err("--depth and --max-pipeline must be 1..=4".into());
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0 && (0.0..=600.0).contains(&args.warmup)) {
        return Err("--duration must be in (0, 3600] s and --warmup in [0, 600] s".into());
    }
    if args.timeout_ms == 0 || args.timeout_ms > 60_000 {
        return Err("--timeout-ms must be 1..=60000".into());
    }
    if !(0.0..=1e6).contains(&args.measure_rate) {
        return Err("--measure-rate must be in [0, 1e6]".into());
    }
    let rates: Vec<Option<f64>> = match (args.rate, args.sweep.is_empty()) {
        (Some(r), _) => vec![Some(r)],
        (None, false) => args.sweep.iter().map(|&r| Some(r)).collect(),
        (None, true) => vec![None],
    };
    if rates.len() > 100 {
        return Err("--sweep takes at most 100 rates".into());
    }
    if rates.iter().flatten().any(|&r| !(r > 0.0 && r <= 1e8)) {
        return Err("rates must be in (0, 1e8] requests/s".into());
    }
    if rates.len() as f64 * (args.warmup + args.duration + 3.0) > 4.0 * 3600.0 {
        return Err("the sweep would take more than 4 hours".into());
    }
    let nofile = raise_nofile();
    if args.conns as u64 + 64 > nofile {
        return Err(format!("--conns {} needs more descriptors than RLIMIT_NOFILE {nofile}", args.conns));
    }
    Ok(rates)
}

/// Ends the process after `secs`, whatever happens.
fn watchdog(secs: f64) {
    let hard = Duration::from_secs_f64(secs);
    std::thread::spawn(move || {
        std::thread::sleep(hard);
        eprintln!("ixbench: hard stop after {:.1} s", hard.as_secs_f64());
        std::process::exit(3);
    });
}

pub fn run(args: MemcachedArgs) -> Result<(), String> {
    let rates = check_args(&args)?;
    let per_point = args.warmup + args.duration + DRAIN_NS as f64 / 1e9 + 5.0;
    watchdog(PREFILL_MAX_NS as f64 / 1e9 + rates.len() as f64 * per_point + 30.0);
    let shared = Arc::new(Shared {
        workload: args.workload,
        protocol: args.protocol,
        keys: KeySpace::new(args.workload, args.keys),
        values: ValuePattern::new(),
    });
    let evictions_before = server_evictions(&args.server);
    let open = rates[0].is_some();
    print_header(&args, open);
    if !args.no_prefill {
        let (n, secs) = prefill(&args, &shared)?;
        println!("  warm-up: SET all {n} keys in {secs:.2} s");
    }
    println!("{}", table_header(open));
    let mut points = Vec::new();
    for (i, rate) in rates.iter().enumerate() {
        let mut p = run_point(&args, &shared, *rate, i as u64)?;
        p.evicted = evictions_before.zip(server_evictions(&args.server)).map(|(a, b)| b.saturating_sub(a));
        println!("{}", table_row(&p));
        points.push(p);
    }
    finish(&args, &points)
}

// ---------------------------------------------------------------------------------------------- report

fn print_header(args: &MemcachedArgs, open: bool) {
    let shape = if open {
        let m = if !args.measure_conn {
            "off".to_string()
        } else if args.measure_rate > 0.0 {
            format!("{}/s", args.measure_rate)
        } else {
            "back-to-back".into()
        };
        format!("open-loop max-pipeline={} measure-conn={m}", args.max_pipeline)
    } else {
        format!("closed-loop depth={}", args.depth)
    };
    println!(
        "ixbench memcached {}{}: workload={} protocol={} keys={} conns={} threads={} {shape} duration={}s \
         warmup={}s client={}",
        args.server,
        if args.label.is_empty() { String::new() } else { format!(" [{}]", args.label) },
        args.workload.name(),
        args.protocol.name(),
        args.keys,
        args.conns,
        args.threads,
        args.duration,
        args.warmup,
        if args.busy_poll { "busy-poll" } else { "epoll" },
    );
}

fn table_header(open: bool) -> String {
    let unloaded = if open { " | unloaded us: avg    p50    p99" } else { "" };
    format!(
        "  {:>10} {:>10} | latency us: {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}{unloaded} | {:>6} {:>6} {:>6} {:>6}",
        "offered/s", "achieved/s", "avg", "p50", "p90", "p99", "p99.9", "max", "errors", "misses", "late", "unsent"
    )
}

fn table_row(p: &Point) -> String {
    let [avg, p50, p90, p99, p999, max] = p.load.latency_us();
    let offered = p.offered.map_or("closed".to_string(), |r| format!("{r:.0}"));
    let unloaded = match (&p.unloaded, p.offered) {
        (Some(u), _) => {
            let [a, m, _, q, _, _] = u.latency_us();
            format!(" |              {a:>6.1} {m:>6.1} {q:>6.1}")
        }
        (None, Some(_)) => " |                   -      -      -".to_string(),
        (None, None) => String::new(),
    };
    format!(
        "  {offered:>10} {:>10.0} |             {avg:>7.1} {p50:>7.1} {p90:>7.1} {p99:>7.1} {p999:>7.1} {max:>8.1}\
         {unloaded} | {:>6} {:>6} {:>6} {:>6}",
        p.achieved(),
        point_errors(p),
        p.load.misses + p.unloaded.as_ref().map_or(0, |u| u.misses),
        p.load.late_sends,
        p.load.unsent,
    )
}

/// The measuring connection's figures (its late sends say when the client itself was the bottleneck).
fn latency_json(s: &Stats) -> String {
    let [avg, p50, p90, p99, p999, max] = s.latency_us();
    format!(
        "{{\"avg\":{avg:.3},\"p50\":{p50:.3},\"p90\":{p90:.3},\"p99\":{p99:.3},\"p999\":{p999:.3},\"max\":{max:.3},\
         \"count\":{},\"late_sends\":{}}}",
        s.latency.len(),
        s.late_sends
    )
}

fn json_str(s: &str) -> String {
    s.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect()
}

/// Errors of a point: misses count as errors unless the server evicted items since the warm-up.
fn point_errors(p: &Point) -> u64 {
    let misses = p.load.misses + p.unloaded.as_ref().map_or(0, |u| u.misses);
    let forgiven = p.evicted.is_some_and(|e| e > 0);
    p.load.errors.total() + p.unloaded.as_ref().map_or(0, |u| u.errors.total()) + if forgiven { 0 } else { misses }
}

fn point_json(args: &MemcachedArgs, p: &Point) -> String {
    let [avg, p50, p90, p99, p999, max] = p.load.latency_us();
    let mut e = p.load.errors;
    if let Some(u) = &p.unloaded {
        e.add(&u.errors);
    }
    format!(
        concat!(
            "{{\"label\":\"{}\",\"server\":\"{}\",\"workload\":\"{}\",\"protocol\":\"{}\",\"keys\":{},",
            "\"conns\":{},\"threads\":{},\"mode\":\"{}\",\"depth\":{},\"max_pipeline\":{},\"duration_s\":{:.3},",
            "\"offered\":{},\"achieved\":{:.1},\"avg\":{:.3},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},",
            "\"p999\":{:.3},\"max\":{:.3},\"requests\":{},\"gets\":{},\"errors\":{},\"misses\":{},",
            "\"evictions\":{},\"errors_by_kind\":{{\"wrong_value\":{},\"failed\":{},\"protocol\":{},\"timeout\":{},",
            "\"connection\":{}}},\"late_sends\":{},\"unsent\":{},\"unloaded\":{}}}"
        ),
        json_str(&args.label),
        args.server,
        args.workload.name(),
        args.protocol.name(),
        args.keys,
        args.conns,
        args.threads,
        if p.offered.is_some() { "open" } else { "closed" },
        args.depth,
        args.max_pipeline,
        p.seconds,
        p.offered.map_or("null".to_string(), |r| format!("{r:.1}")),
        p.achieved(),
        avg,
        p50,
        p90,
        p99,
        p999,
        max,
        p.load.measured,
        p.load.measured_gets,
        point_errors(p),
        p.load.misses + p.unloaded.as_ref().map_or(0, |u| u.misses),
        p.evicted.map_or("null".to_string(), |e| e.to_string()),
        e.wrong_value,
        e.failed,
        e.protocol,
        e.timeout,
        e.connection,
        p.load.late_sends,
        p.load.unsent,
        p.unloaded.as_ref().map_or("null".to_string(), latency_json),
    )
}

fn finish(args: &MemcachedArgs, points: &[Point]) -> Result<(), String> {
    let errors: u64 = points.iter().map(point_errors).sum();
    let evicted = points.last().and_then(|p| p.evicted);
    let misses: u64 = points.iter().map(|p| p.load.misses + p.unloaded.as_ref().map_or(0, |u| u.misses)).sum();
    let mut kinds = Errors::default();
    for p in points {
        kinds.add(&p.load.errors);
        if let Some(u) = &p.unloaded {
            kinds.add(&u.errors);
        }
    }
    match evicted {
        Some(0) => println!("  server evictions since the warm-up: 0 (every miss is an error)"),
        Some(e) => println!("  server evictions since the warm-up: {e} (misses are not counted as errors)"),
        None => println!("  server evictions: unknown (`stats` did not answer; every miss is an error)"),
    }
    println!(
        "  errors {errors}: wrong value {}, failed {}, protocol {}, timeout {}, connection {}; misses {misses}",
        kinds.wrong_value, kinds.failed, kinds.protocol, kinds.timeout, kinds.connection
    );
    if let Some(path) = &args.json {
        let rows: Vec<String> = points.iter().map(|p| point_json(args, p)).collect();
        std::fs::write(path, format!("[\n{}\n]\n", rows.join(",\n")))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let curve: Vec<plot::CurvePoint> = points
            .iter()
            .map(|p| {
                let [avg, _, _, p99, _, _] = p.load.latency_us();
                let unloaded_p99_us = p.unloaded.as_ref().map(|u| u.latency_us()[3]);
                let kept_up = kept_up(p.offered, p.achieved(), p.load.unsent, p.load.measured);
                plot::CurvePoint { achieved: p.achieved(), avg_us: avg, p99_us: p99, unloaded_p99_us, kept_up }
            })
            .collect();
        let title =
            curve_title(args.workload.name(), args.protocol.name(), &args.server.to_string(), args.conns, &args.label);
        plot::draw_curve(path, &title, &curve, args.plot_max_us)?;
        println!("  plot: {}", path.display());
    }
    if errors > 0 {
        return Err(format!("{errors} errors"));
    }
    Ok(())
}

/// A point kept up with its offered load: at least 95% of it achieved and at most 0.1% of its requests unsent
/// (closed loop: always). scripts/sweeplines.py's `max_sustained` uses the same throughput rule and also asks for
/// no errors; the plot shows errors in the table and the JSON instead.
fn kept_up(offered: Option<f64>, achieved: f64, unsent: u64, measured: u64) -> bool {
    unsent * 1000 <= measured && offered.is_none_or(|r| achieved >= 0.95 * r)
}

fn curve_title(workload: &str, protocol: &str, server: &str, conns: usize, label: &str) -> String {
    let label = if label.is_empty() { String::new() } else { format!(" [{label}]") };
    format!("memcached {} {protocol} {server}, {conns} conns{label}", workload.to_uppercase())
}

/// `ixbench plot`: the curve of a JSON report of `ixbench memcached --json`, or of single-rate reports joined into
/// one array (scripts/bench-memcached.sh measures its servers rate by rate, in turn, and joins their points).
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// The JSON report: an array of points, as `ixbench memcached --json` writes it.
    #[arg(long, value_name = "FILE.json")]
    pub json: PathBuf,
    /// The PNG to draw.
    #[arg(long, value_name = "FILE.png")]
    pub png: PathBuf,
    /// Latency axis up to this many us (default: 1.5x the largest latency of the points that kept up).
    #[arg(long)]
    pub plot_max_us: Option<f64>,
    /// Title (default: the first point's workload, protocol, server, connections and label).
    #[arg(long)]
    pub title: Option<String>,
}

pub fn plot_report(args: PlotArgs) -> Result<(), String> {
    let name = args.json.display().to_string();
    let text = std::fs::read_to_string(&args.json).map_err(|e| format!("cannot read {name}: {e}"))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let points =
        report.as_array().filter(|a| !a.is_empty()).ok_or_else(|| format!("{name}: not an array of points"))?;
    let mut curve = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let num = |key: &str| {
            p.get(key)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("{name}: point {i} has no number {key}"))
        };
        let (achieved, unsent, measured) = (num("achieved")?, num("unsent")?, num("requests")?);
        let offered = p.get("offered").and_then(serde_json::Value::as_f64);
        curve.push(plot::CurvePoint {
            achieved,
            avg_us: num("avg")?,
            p99_us: num("p99")?,
            unloaded_p99_us: p.get("unloaded").and_then(|u| u.get("p99")).and_then(serde_json::Value::as_f64),
            kept_up: kept_up(offered, achieved, unsent as u64, measured as u64),
        });
    }
    let title = args.title.unwrap_or_else(|| {
        let field = |key: &str, missing: &str| {
            points[0].get(key).and_then(serde_json::Value::as_str).unwrap_or(missing).to_string()
        };
        let conns = points[0].get("conns").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        curve_title(&field("workload", "?"), &field("protocol", "?"), &field("server", "?"), conns, &field("label", ""))
    });
    plot::draw_curve(&args.png, &title, &curve, args.plot_max_us)?;
    println!("plot: {}", args.png.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_benchmarking_range_or_loopback() {
        for ok in ["198.18.0.1:11211", "198.19.0.9:1", "127.0.0.1:11211", "127.1.2.3:5"] {
            assert!(allowed_target(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["198.20.0.1:11211", "10.0.0.1:11211", "8.8.8.8:53", "0.0.0.0:11211"] {
            assert!(!allowed_target(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn a_joined_report_is_drawn_and_a_broken_one_named() {
        let dir = std::env::temp_dir().join(format!("ixbench-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let point = |offered: f64, achieved: f64, p99: f64| {
            format!(
                "{{\"server\":\"198.18.0.1:11211\",\"workload\":\"usr\",\"protocol\":\"text\",\"label\":\"\",\
                 \"conns\":32,\"offered\":{offered},\"achieved\":{achieved},\"avg\":40.0,\"p99\":{p99},\
                 \"requests\":30000,\"unsent\":0,\"unloaded\":{{\"p99\":90.0}}}}"
            )
        };
        let good = dir.join("good.json");
        std::fs::write(&good, format!("[{},\n{}]", point(10000.0, 10010.0, 120.0), point(20000.0, 15000.0, 9000.0)))
            .unwrap();
        let png = dir.join("good.png");
        let args =
            |json: &std::path::Path| PlotArgs { json: json.into(), png: png.clone(), plot_max_us: None, title: None };
        plot_report(args(&good)).unwrap();
        assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
        for (text, why) in [
            ("[]", "not an array"),
            ("{}", "not an array"),
            ("[{\"achieved\":1}]", "no number unsent"),
            ("[", "not JSON"),
        ] {
            let bad = dir.join("bad.json");
            std::fs::write(&bad, text).unwrap();
            let e = plot_report(args(&bad)).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
