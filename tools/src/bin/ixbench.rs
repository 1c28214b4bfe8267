//! ixbench: load generators for libix and its Linux baselines (DESIGN.md §7: benchmarks, never timed tests).
//!
//! `ixbench udp-echo --server 198.18.0.1:7 ...` is the client side of a UDP echo benchmark: a plain Linux UDP
//! client (it runs inside the test namespace) that measures replies per second and the round-trip time of every
//! datagram in an HDR histogram.
//!
//! - Closed loop (`--mode closed`, default): each socket keeps `--window` datagrams outstanding; a reply (or a
//!   loss, after `--timeout-ms`) lets the next one go. RTT is measured from the actual send.
//! - Open loop (`--mode open --rate PPS`): Poisson arrivals at PPS over all sockets; latency is measured from the
//!   *intended* send time, so a stalled client or server cannot hide its queueing (coordinated omission).
//!
//! Every datagram carries a run nonce, its socket, a sequence number and its send timestamp; replies are matched
//! to what is outstanding, so loss, late and stray replies are counted, never waited for. One thread drives all
//! sockets, either spinning on non-blocking `recvmmsg` (`--busy-poll`) or sleeping in `ppoll`. A watchdog ends
//! the process at warmup + duration + 5 s whatever happens. Only servers in 198.18.0.0/15 are accepted.
//!
//! TCP (module `tcp`), all on plain non-blocking Linux sockets, every echoed byte verified:
//! - `ixbench echo`: the MegaPipe/mTCP benchmark of IX §5.3. T threads, each with its own epoll and C/T
//!   connections; a connection sends an S-byte message, waits for its full echo, N times, then closes (RST with
//!   `--rst-close`, as the paper does) and a new one takes its place. Messages/s, connections/s, round-trip and
//!   connect latencies (HDR), errors by kind. Bounded by `--duration` or `--total-connections`, and a hard stop.
//! - `ixbench pingpong`: one connection, NetPIPE-like: one-way latency (RTT/2) and goodput per message size.
//! - `ixbench hold`: N concurrent connections (over several source addresses if asked), optional verified round
//!   trips on each, held open, a last round trip on each, then all closed.
//!
//! memcached (library module `ix_tools::memcached`, IX §5.5): `ixbench memcached`, mutilate's ETC and USR
//! workloads over the text or binary protocol, closed or open loop (Poisson, coordinated omission accounted, an
//! unloaded measuring connection), `--sweep` for the latency-vs-throughput curve, JSON and a PNG plot. It also
//! accepts loopback servers, for the Linux baseline on this host.
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "ixbench", version, about = "Load generators for libix and Linux baselines (198.18.0.0/15 only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// UDP echo client: replies/s and RTT percentiles against an echo server.
    UdpEcho(UdpEchoArgs),
    /// TCP echo (MegaPipe/mTCP benchmark, IX §5.3): connect, N verified round trips of S bytes, close, repeat.
    Echo(EchoArgs),
    /// TCP ping-pong on one connection (NetPIPE-like, IX §5.2): one-way latency and goodput per message size.
    Pingpong(PingpongArgs),
    /// Open many idle TCP connections, optionally echo over each, hold them, then close them all.
    Hold(HoldArgs),
    /// memcached load (mutilate-style, IX §5.5): ETC/USR, closed or open loop, latency-vs-throughput sweeps.
    Memcached(ix_tools::memcached::MemcachedArgs),
    /// Draw the latency-vs-throughput curve of a `memcached --json` report (or of single-rate reports joined).
    Plot(ix_tools::memcached::PlotArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    /// Each socket keeps --window datagrams outstanding.
    Closed,
    /// Poisson arrivals at --rate; latency from the intended send time.
    Open,
}

#[derive(clap::Args, Debug)]
struct UdpEchoArgs {
    /// Echo server, A.B.C.D:PORT (198.18.0.0/15 only).
    #[arg(long)]
    server: SocketAddrV4,
    /// UDP sockets (each one a flow with its own source port).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// UDP payload bytes per datagram (24..=1472: a 24-byte header, no IP fragments on a 1500 MTU).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Closed or open loop.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,
    /// Open loop: aggregate datagrams per second (Poisson arrivals).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: outstanding datagrams per socket.
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Spin on non-blocking sockets instead of sleeping in ppoll(2).
    #[arg(long)]
    busy_poll: bool,
    /// A datagram without a reply after this long is counted lost.
    #[arg(long, default_value_t = 200)]
    timeout_ms: u64,
    /// Also sample this process's CPU time (/proc/PID/stat utime+stime) over the measured window, e.g. the
    /// server's: reported as CPU seconds and microseconds per reply.
    #[arg(long)]
    cpu_pid: Option<u32>,
    /// Free-form label copied into the report and the JSON.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the results as JSON to FILE too.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

const HEADER: usize = 24;
const MAX_SIZE: usize = 1472;
const BATCH: usize = 64;
const BUF: usize = 2048;
/// Most datagrams in flight per socket (open loop at a high rate with a long timeout).
const MAX_INFLIGHT: usize = 1 << 20;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn in_test_range(a: &SocketAddrV4) -> bool {
    let o = a.ip().octets();
    o[0] == 198 && (o[1] == 18 || o[1] == 19)
}

/// xorshift64*: enough randomness for Poisson inter-arrival times, no dependency.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Exponential with the given mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.next_f64().ln()
    }
}

struct Sock {
    fd: OwnedFd,
    /// (sequence, timestamp the latency is measured from, actual send time), in send order.
    inflight: VecDeque<(u64, u64, u64)>,
    next_seq: u64,
}

fn udp_socket(server: &SocketAddrV4) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let buf: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: valid fd and option pointer; failure only leaves the default size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &buf as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: server.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*server.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and sockaddr_in of the size given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// utime + stime of a process, in seconds.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// Per-CPU jiffies from /proc/stat: (cpu, user+nice, system, softirq+irq, idle+iowait, total).
fn proc_stat_cpus() -> Vec<(u32, u64, u64, u64, u64, u64)> {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let cpu: u32 = it.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            if v.len() < 7 {
                return None;
            }
            // user nice system idle iowait irq softirq steal ...
            let total: u64 = v.iter().take(8).sum();
            Some((cpu, v[0] + v[1], v[2], v[5] + v[6], v[3] + v[4], total))
        })
        .collect()
}

/// Busy share of each CPU over the measured window.
struct CpuBusy {
    cpu: u32,
    busy: f64,
    user: f64,
    sys: f64,
    irq: f64,
}

fn cpu_busy(a: &[(u32, u64, u64, u64, u64, u64)], b: &[(u32, u64, u64, u64, u64, u64)]) -> Vec<CpuBusy> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.0 == y.0 && y.5 > x.5)
        .map(|(x, y)| {
            let t = (y.5 - x.5) as f64;
            let share = |p: u64, q: u64| 100.0 * q.saturating_sub(p) as f64 / t;
            CpuBusy {
                cpu: x.0,
                busy: 100.0 - share(x.4, y.4),
                user: share(x.1, y.1),
                sys: share(x.2, y.2),
                irq: share(x.3, y.3),
            }
        })
        .collect()
}

#[derive(Default)]
struct Counts {
    sent: u64,
    received: u64,
    lost: u64,
    late: u64,
    stray: u64,
    send_errors: u64,
}

struct Bench<'a> {
    args: &'a UdpEchoArgs,
    socks: Vec<Sock>,
    nonce: u32,
    t0: u64,
    measure_start: u64,
    measure_end: u64,
    timeout_ns: u64,
    hist: Histogram<u64>,
    /// Everything (warmup included), for the report's sanity lines.
    total: Counts,
    /// Replies received in the measured window; datagrams sent in it (lost: sent in it and timed out).
    measured: Counts,
    send_buf: Vec<u8>,
    recv_bufs: Vec<[u8; BUF]>,
    /// Open loop, measured window: worst and summed lag of actual behind intended send times (ns), and how many
    /// datagrams left more than 100 us late.
    lag_max: u64,
    lag_sum: u64,
    lag_over_100us: u64,
    /// CPU seconds of --cpu-pid over the measured window.
    cpu_s: Option<f64>,
    cpus: Vec<CpuBusy>,
}

impl Bench<'_> {
    fn in_window(&self, t: u64) -> bool {
        t >= self.measure_start && t < self.measure_end
    }

    /// Sends up to `n` datagrams on socket `i` in one sendmmsg, each stamped with `stamp` (None: the actual
    /// send time). Returns how many left.
    fn send(&mut self, i: usize, n: usize, stamp: Option<u64>) -> usize {
        let n = n.min(BATCH);
        if n == 0 {
            return 0;
        }
        let size = self.args.size;
        let now = now_ns();
        let ts = stamp.unwrap_or(now);
        let seq0 = self.socks[i].next_seq;
        let mut iov: [libc::iovec; BATCH] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
        // SAFETY: mmsghdr is plain data; zeroed is a valid (empty) value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for k in 0..n {
            let b = &mut self.send_buf[k * BUF..k * BUF + size];
            b[0..4].copy_from_slice(&self.nonce.to_le_bytes());
            b[4..8].copy_from_slice(&(i as u32).to_le_bytes());
            b[8..16].copy_from_slice(&(seq0 + k as u64).to_le_bytes());
            b[16..24].copy_from_slice(&(ts - self.t0).to_le_bytes());
            iov[k] = libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: size };
            msgs[k].msg_hdr.msg_iov = &mut iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        let fd = self.socks[i].fd.as_raw_fd();
        // SAFETY: msgs[..n] point at iovecs into send_buf, all alive for the call.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::ENOBUFS) {
                self.total.send_errors += 1;
            }
            return 0;
        }
        let sent = r as usize;
        let s = &mut self.socks[i];
        for k in 0..sent {
            s.inflight.push_back((seq0 + k as u64, ts, now));
        }
        s.next_seq += sent as u64;
        self.total.sent += sent as u64;
        if self.in_window(ts) {
            self.measured.sent += sent as u64;
            if stamp.is_some() {
                // Open loop: how far behind its schedule the client sent.
                let lag = now - ts;
                self.lag_max = self.lag_max.max(lag);
                self.lag_sum += lag * sent as u64;
                if lag > 100_000 {
                    self.lag_over_100us += sent as u64;
                }
            }
        }
        sent
    }

    /// Drains socket `i` (non-blocking). Returns replies matched.
    fn receive(&mut self, i: usize) -> usize {
        let fd = self.socks[i].fd.as_raw_fd();
        let mut matched = 0;
        loop {
            let mut iov: [libc::iovec; BATCH] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
            // SAFETY: plain data.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for k in 0..BATCH {
                iov[k] = libc::iovec { iov_base: self.recv_bufs[k].as_mut_ptr() as *mut libc::c_void, iov_len: BUF };
                msgs[k].msg_hdr.msg_iov = &mut iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs point at our receive buffers, alive for the call.
            let r = unsafe {
                libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if r <= 0 {
                return matched;
            }
            let now = now_ns();
            let in_window = self.in_window(now);
            for (k, msg) in msgs.iter().enumerate().take(r as usize) {
                let len = msg.msg_len as usize;
                let b = &self.recv_bufs[k];
                if len != self.args.size
                    || u32::from_le_bytes(b[0..4].try_into().unwrap()) != self.nonce
                    || u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize != i
                {
                    self.total.stray += 1;
                    continue;
                }
                let seq = u64::from_le_bytes(b[8..16].try_into().unwrap());
                let ts = u64::from_le_bytes(b[16..24].try_into().unwrap()) + self.t0;
                let inflight = &mut self.socks[i].inflight;
                let found = if inflight.front().is_some_and(|f| f.0 == seq) {
                    inflight.pop_front();
                    true
                } else if let Some(p) = inflight.iter().position(|f| f.0 == seq) {
                    inflight.remove(p);
                    true
                } else {
                    false
                };
                if !found {
                    // Already counted lost (or a duplicate).
                    self.total.late += 1;
                    if in_window {
                        self.measured.late += 1;
                    }
                    continue;
                }
                matched += 1;
                self.total.received += 1;
                if in_window {
                    self.measured.received += 1;
                    self.hist.saturating_record(now.saturating_sub(ts).max(1));
                }
            }
            if (r as usize) < BATCH {
                return matched;
            }
        }
    }

    /// Counts datagrams sent longer than the timeout ago as lost (frees their window slots).
    fn sweep(&mut self, now: u64) {
        for i in 0..self.socks.len() {
            while let Some(&(_, ts, sent_at)) = self.socks[i].inflight.front() {
                if sent_at + self.timeout_ns > now {
                    break;
                }
                self.socks[i].inflight.pop_front();
                self.total.lost += 1;
                if self.in_window(ts) {
                    self.measured.lost += 1;
                }
            }
        }
    }

    fn wait(&self, until: u64) {
        let now = now_ns();
        if until <= now {
            return;
        }
        let mut fds: Vec<libc::pollfd> = self
            .socks
            .iter()
            .map(|s| libc::pollfd { fd: s.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        let d = until - now;
        let ts = libc::timespec { tv_sec: (d / 1_000_000_000) as libc::time_t, tv_nsec: (d % 1_000_000_000) as _ };
        // SAFETY: fds is a valid array of pollfd; ts a valid timespec.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    }

    /// Runs warmup, measured window and drain; returns the measured seconds.
    fn run(&mut self) -> f64 {
        let args = self.args;
        let n = self.socks.len();
        let mut rng = Rng(self.t0 ^ ((std::process::id() as u64) << 32) | 1);
        let mean_gap_ns = args.rate.map(|r| 1e9 / r).unwrap_or(0.0);
        let mut next_arrival = self.t0 as f64;
        let mut rr = 0usize;
        let mut last_sweep = self.t0;
        let mut cpu_start = None;
        let mut stat_start = Vec::new();
        let mut stopped = false;
        let mut started = false;
        let drain_end = self.measure_end + self.timeout_ns;
        loop {
            let now = now_ns();
            if !started && now >= self.measure_start {
                started = true;
                cpu_start = args.cpu_pid.and_then(proc_cpu_seconds);
                stat_start = proc_stat_cpus();
            }
            let sending = now < self.measure_end;
            if !sending && !stopped {
                stopped = true;
                let end = args.cpu_pid.and_then(proc_cpu_seconds);
                self.cpus = cpu_busy(&stat_start, &proc_stat_cpus());
                self.cpu_s = cpu_start.zip(end).map(|(a, b)| b - a);
            }
            let outstanding: usize = self.socks.iter().map(|s| s.inflight.len()).sum();
            if !sending && (outstanding == 0 || now >= drain_end) {
                break;
            }
            // Send.
            let mut next_event = now + 1_000_000;
            if sending {
                match args.mode {
                    Mode::Closed => {
                        for i in 0..n {
                            let want = args.window - self.socks[i].inflight.len().min(args.window);
                            if want > 0 {
                                self.send(i, want, None);
                            }
                        }
                    }
                    Mode::Open => {
                        let mut budget = BATCH;
                        while (next_arrival as u64) <= now && budget > 0 {
                            let i = rr % n;
                            if self.socks[i].inflight.len() >= MAX_INFLIGHT
                                || self.send(i, 1, Some(next_arrival as u64)) == 0
                            {
                                break; // socket full: retry later, still stamped with the intended time
                            }
                            rr += 1;
                            budget -= 1;
                            next_arrival += rng.exp(mean_gap_ns);
                        }
                        next_event = next_event.min(next_arrival as u64);
                    }
                }
                next_event = next_event.min(self.measure_end);
                if !started {
                    next_event = next_event.min(self.measure_start);
                }
            } else {
                next_event = next_event.min(drain_end);
            }
            // Receive.
            let mut got = 0;
            for i in 0..n {
                got += self.receive(i);
            }
            let now = now_ns();
            if now >= last_sweep + 1_000_000 {
                self.sweep(now);
                last_sweep = now;
            }
            if got == 0 && !args.busy_poll {
                // Closed loop with a deficit (socket buffer full): come back soon.
                let deficit =
                    args.mode == Mode::Closed && sending && self.socks.iter().any(|s| s.inflight.len() < args.window);
                self.wait(if deficit { now + 50_000 } else { next_event });
            }
        }
        // What never came back is lost.
        for i in 0..n {
            while let Some((_, ts, _)) = self.socks[i].inflight.pop_front() {
                self.total.lost += 1;
                if self.in_window(ts) {
                    self.measured.lost += 1;
                }
            }
        }
        (self.measure_end - self.measure_start) as f64 / 1e9
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn udp_echo(args: UdpEchoArgs) -> Result<(), String> {
    if !in_test_range(&args.server) {
        return Err(format!(
            "refusing {}: ixbench only sends to test hosts in 198.18.0.0/15 (RFC 2544 benchmarking range)",
            args.server
        ));
    }
    if !(HEADER..=MAX_SIZE).contains(&args.size) {
        return Err(format!("--size must be {HEADER}..={MAX_SIZE} bytes (got {})", args.size));
    }
    if args.connections == 0 || args.connections > 1024 {
        return Err("--connections must be 1..=1024".into());
    }
    if args.duration <= 0.0 || args.duration > 3600.0 || args.duration.is_nan() || !(0.0..=600.0).contains(&args.warmup)
    {
        return Err("--duration must be in (0, 3600] s and --warmup in [0, 600] s".into());
    }
    match args.mode {
        Mode::Closed if args.window == 0 || args.window > 4096 => return Err("--window must be 1..=4096".into()),
        Mode::Open if !args.rate.is_some_and(|r| r > 0.0 && r <= 1e8) => {
            return Err("--mode open needs --rate PPS (0 < PPS <= 1e8)".into())
        }
        _ => {}
    }
    if args.timeout_ms == 0 {
        return Err("--timeout-ms must be > 0".into());
    }

    // Hard stop, whatever happens: warmup + duration + 5 s.
    let hard = Duration::from_secs_f64(args.warmup + args.duration + 5.0);
    std::thread::spawn(move || {
        std::thread::sleep(hard);
        eprintln!("ixbench: hard stop after {:.1} s", hard.as_secs_f64());
        std::process::exit(3);
    });

    let mut socks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let fd = udp_socket(&args.server).map_err(|e| format!("UDP socket to {}: {e}", args.server))?;
        socks.push(Sock { fd, inflight: VecDeque::new(), next_seq: 0 });
    }
    let t0 = now_ns();
    let measure_start = t0 + (args.warmup * 1e9) as u64;
    let measure_end = measure_start + (args.duration * 1e9) as u64;
    let mut fill = vec![0u8; BATCH * BUF];
    for (k, b) in fill.iter_mut().enumerate() {
        *b = (k * 7 + 3) as u8;
    }
    let mut bench = Bench {
        args: &args,
        socks,
        nonce: (t0 as u32) ^ std::process::id().rotate_left(16),
        t0,
        measure_start,
        measure_end,
        timeout_ns: args.timeout_ms * 1_000_000,
        hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds"),
        total: Counts::default(),
        measured: Counts::default(),
        send_buf: fill,
        recv_bufs: vec![[0u8; BUF]; BATCH],
        lag_max: 0,
        lag_sum: 0,
        lag_over_100us: 0,
        cpu_s: None,
        cpus: Vec::new(),
    };
    let secs = bench.run();
    report(&args, &bench, secs)
}

fn report(args: &UdpEchoArgs, b: &Bench, secs: f64) -> Result<(), String> {
    let cpu = b.cpu_s;
    let m = &b.measured;
    let pps = m.received as f64 / secs;
    let h = &b.hist;
    let q = |x: f64| {
        if h.is_empty() {
            0.0
        } else {
            us(h.value_at_quantile(x))
        }
    };
    let (avg, max) = if h.is_empty() { (0.0, 0.0) } else { (h.mean() / 1000.0, us(h.max())) };
    let load = match args.mode {
        Mode::Closed => format!("closed window={}", args.window),
        Mode::Open => format!("open rate={:.0}", args.rate.unwrap_or(0.0)),
    };
    println!(
        "ixbench udp-echo {}{}: {} connections={} size={} duration={:.1}s warmup={:.1}s client={}",
        args.server,
        if args.label.is_empty() { String::new() } else { format!(" [{}]", args.label) },
        load,
        args.connections,
        args.size,
        secs,
        args.warmup,
        if args.busy_poll { "busy-poll" } else { "ppoll" }
    );
    println!("  replies/s     {pps:>12.0}");
    println!(
        "  measured      sent {} received {} lost {} late {} (timeout {} ms)",
        m.sent, m.received, m.lost, m.late, args.timeout_ms
    );
    println!(
        "  whole run     sent {} received {} lost {} late {} stray {} send-errors {}",
        b.total.sent, b.total.received, b.total.lost, b.total.late, b.total.stray, b.total.send_errors
    );
    println!(
        "  RTT us        avg {avg:.2} p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {max:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999)
    );
    let cpu_per = cpu.map(|c| if m.received > 0 { c * 1e6 / m.received as f64 } else { 0.0 });
    if let (Some(c), Some(per)) = (cpu, cpu_per) {
        println!(
            "  pid {} CPU    {c:.2} s ({:.0}% of one core), {per:.3} us/reply",
            args.cpu_pid.unwrap_or(0),
            100.0 * c / secs
        );
    }
    let cpus: Vec<String> = b
        .cpus
        .iter()
        .map(|c| format!("cpu{} {:.0}% (usr {:.0} sys {:.0} irq {:.0})", c.cpu, c.busy, c.user, c.sys, c.irq))
        .collect();
    if !cpus.is_empty() {
        println!("  CPUs busy     {}", cpus.join(", "));
    }
    let lag_avg = if m.sent > 0 { b.lag_sum as f64 / m.sent as f64 / 1000.0 } else { 0.0 };
    if args.mode == Mode::Open {
        println!(
            "  send lag us   avg {lag_avg:.2} max {:.2}, {} of {} sent more than 100 us behind schedule",
            us(b.lag_max),
            b.lag_over_100us,
            m.sent
        );
    }
    if let Some(path) = &args.json {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.6}"));
        let label: String =
            args.label.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect();
        let json = format!(
            concat!(
                "{{\"label\":\"{}\",\"server\":\"{}\",\"mode\":\"{}\",\"window\":{},\"rate\":{},\"connections\":{},",
                "\"size\":{},\"duration_s\":{:.3},\"warmup_s\":{:.3},\"busy_poll\":{},\"pps\":{:.1},",
                "\"sent\":{},\"received\":{},\"lost\":{},\"late\":{},\"stray\":{},\"send_errors\":{},",
                "\"rtt_us\":{{\"avg\":{:.3},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p99_9\":{:.3},\"max\":{:.3}}},",
                "\"cpu_pid\":{},\"cpu_s\":{},\"cpu_us_per_reply\":{},\"cpus\":[{}],",
                "\"send_lag_us\":{{\"avg\":{:.3},\"max\":{:.3},\"over_100us\":{}}}}}\n"
            ),
            label,
            args.server,
            if args.mode == Mode::Closed { "closed" } else { "open" },
            args.window,
            opt(args.rate),
            args.connections,
            args.size,
            secs,
            args.warmup,
            args.busy_poll,
            pps,
            m.sent,
            m.received,
            m.lost,
            m.late,
            b.total.stray,
            b.total.send_errors,
            avg,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            max,
            args.cpu_pid.map_or("null".to_string(), |p| p.to_string()),
            opt(cpu),
            opt(cpu_per),
            b.cpus
                .iter()
                .map(|c| format!(
                    "{{\"cpu\":{},\"busy\":{:.1},\"user\":{:.1},\"sys\":{:.1},\"irq\":{:.1}}}",
                    c.cpu, c.busy, c.user, c.sys, c.irq
                ))
                .collect::<Vec<_>>()
                .join(","),
            lag_avg,
            us(b.lag_max),
            b.lag_over_100us,
        );
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

use tcp::{EchoArgs, HoldArgs, PingpongArgs};

/// TCP load generators: `echo`, `pingpong`, `hold` (see the top of the file).
mod tcp {
    use super::{cpu_busy, in_test_range, now_ns, proc_cpu_seconds, proc_stat_cpus, us, CpuBusy};
    use hdrhistogram::Histogram;
    use std::collections::BTreeMap;
    use std::io::{self, Write};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(clap::Args, Debug, Clone)]
    pub struct EchoArgs {
        /// Echo server, A.B.C.D:PORT (198.18.0.0/15 only).
        #[arg(long)]
        server: SocketAddrV4,
        /// Concurrent connections (over all threads).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Threads, each with its own epoll and connections/threads of the connections.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Message bytes (each round trip sends this many and waits for all of them back).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Round trips per connection before it closes (the paper's n).
        #[arg(long, default_value_t = 1)]
        rounds: u64,
        /// Measured seconds (default 10 unless --total-connections is given).
        #[arg(long, conflicts_with = "total_connections")]
        duration: Option<f64>,
        /// Seconds of load before measuring (duration mode only).
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Run exactly this many connections (each with --rounds round trips), then stop.
        #[arg(long)]
        total_connections: Option<u64>,
        /// Close with RST (SO_LINGER {1, 0}) instead of FIN, as IX §5.3 does (no TIME_WAIT on the client).
        #[arg(long)]
        rst_close: bool,
        /// Spin in epoll_wait(timeout 0) instead of sleeping.
        #[arg(long)]
        busy_poll: bool,
        /// Client source addresses to spread connections over (bind() with IP_BIND_ADDRESS_NO_PORT), comma
        /// separated, each in 198.18.0.0/15 and configured on the client host.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<Ipv4Addr>,
        /// Most connections in SYN_SENT at once, over all threads (a SYN burst beyond the peer's rings is lost).
        #[arg(long, default_value_t = 256)]
        max_connecting: usize,
        /// A connection that makes no progress (connect or echo) for this long counts as an error.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Hard stop for --total-connections runs (seconds).
        #[arg(long, default_value_t = 300.0)]
        max_seconds: f64,
        /// Sample this process's CPU time over the measured window (e.g. the server's).
        #[arg(long)]
        cpu_pid: Option<u32>,
        /// Free-form label copied into the report and the JSON.
        #[arg(long, default_value = "")]
        label: String,
        /// Write the results as JSON to FILE too.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    }

    #[derive(clap::Args, Debug)]
    pub struct PingpongArgs {
        /// Echo server, A.B.C.D:PORT (198.18.0.0/15 only).
        #[arg(long)]
        server: SocketAddrV4,
        /// Message sizes in bytes, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "64,256,1024,4096,16384,65536")]
        sizes: Vec<usize>,
        /// Measured round trips per size (0: run --duration-per-size seconds instead).
        #[arg(long, default_value_t = 0)]
        iterations: u64,
        /// Measured seconds per size when --iterations is 0 (also caps --iterations).
        #[arg(long, default_value_t = 2.0)]
        duration_per_size: f64,
        /// Unmeasured round trips before each size.
        #[arg(long, default_value_t = 200)]
        warmup_iterations: u64,
        /// Spin on non-blocking send/recv instead of sleeping in poll(2).
        #[arg(long)]
        busy_poll: bool,
        /// A round trip that takes longer than this is an error (the run stops).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Sample this process's CPU time per size (e.g. the server's).
        #[arg(long)]
        cpu_pid: Option<u32>,
        /// Free-form label copied into the report and the JSON.
        #[arg(long, default_value = "")]
        label: String,
        /// Write the results as JSON to FILE too.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    }

    #[derive(clap::Args, Debug)]
    pub struct HoldArgs {
        /// Echo server, A.B.C.D:PORT (198.18.0.0/15 only).
        #[arg(long)]
        server: SocketAddrV4,
        /// Connections to open and hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Client source addresses to spread connections over (each gives its own ~28k ephemeral ports).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<Ipv4Addr>,
        /// Seconds to hold all connections once established.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Verified round trips on each connection once established, and one more on each after the hold
        /// (0: none, the connections stay silent).
        #[arg(long, default_value_t = 0)]
        rounds: u64,
        /// Message bytes per round trip.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Close with RST instead of FIN.
        #[arg(long)]
        rst_close: bool,
        /// Most connections in SYN_SENT at once.
        #[arg(long, default_value_t = 256)]
        max_connecting: usize,
        /// A connection without progress (connect or echo) for this long counts as an error.
        #[arg(long, default_value_t = 10000)]
        timeout_ms: u64,
        /// Hard stop (seconds), whatever happens.
        #[arg(long, default_value_t = 180.0)]
        max_seconds: f64,
        /// Write the results as JSON to FILE too.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    }

    // ------------------------------------------------------------------------------------------ socket helpers

    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    pub(super) fn errno_name(e: i32) -> String {
        match e {
            libc::ECONNREFUSED => "ECONNREFUSED".into(),
            libc::ECONNRESET => "ECONNRESET".into(),
            libc::ETIMEDOUT => "ETIMEDOUT".into(),
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL".into(),
            libc::EADDRINUSE => "EADDRINUSE".into(),
            libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
            libc::ENETUNREACH => "ENETUNREACH".into(),
            libc::EPIPE => "EPIPE".into(),
            libc::EMFILE => "EMFILE".into(),
            libc::ENFILE => "ENFILE".into(),
            libc::ENOBUFS => "ENOBUFS".into(),
            libc::ENOMEM => "ENOMEM".into(),
            libc::ENOTCONN => "ENOTCONN".into(),
            _ => format!("errno {e}"),
        }
    }

    fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        }
    }

    fn setsockopt_int(fd: RawFd, level: i32, opt: i32, v: libc::c_int) -> bool {
        // SAFETY: valid option pointer and length.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    }

    /// A non-blocking TCP socket connecting to `server` (from `source`, if given). Ok(true): connected already.
    fn connect_nb(server: &SocketAddrV4, source: Option<Ipv4Addr>) -> Result<(OwnedFd, bool), i32> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd =
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        if let Some(src) = source {
            // The port is chosen at connect() time, per destination, not at bind() time per source address.
            setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
            let sa = sockaddr(src, 0);
            // SAFETY: valid fd and sockaddr_in of the size given.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(errno());
            }
        }
        let sa = sockaddr(*server.ip(), server.port());
        // SAFETY: valid fd and sockaddr_in of the size given.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok((fd, true));
        }
        match errno() {
            libc::EINPROGRESS => Ok((fd, false)),
            e => Err(e),
        }
    }

    fn so_error(fd: RawFd) -> i32 {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid pointers for the option value and its length.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut v as *mut _ as *mut _, &mut len) };
        if r < 0 {
            errno()
        } else {
            v
        }
    }

    /// Closes `fd`; with `rst` the close sends a RST (SO_LINGER {1, 0}) instead of a FIN.
    fn close_fd(fd: OwnedFd, rst: bool) {
        if rst {
            let l = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: valid fd and linger struct.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &l as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
        }
        drop(fd);
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

    /// send(2) without blocking or SIGPIPE. Ok(0): would block.
    fn send_nb(fd: RawFd, b: &[u8]) -> Result<usize, i32> {
        // SAFETY: b is a valid buffer of b.len() bytes.
        let r = unsafe { libc::send(fd, b.as_ptr() as *const _, b.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        match errno() {
            libc::EAGAIN | libc::EINTR => Ok(0),
            e => Err(e),
        }
    }

    enum Recv {
        Data(usize),
        Again,
        Eof,
        Err(i32),
    }

    fn recv_nb(fd: RawFd, b: &mut [u8]) -> Recv {
        // SAFETY: b is a valid writable buffer of b.len() bytes.
        let r = unsafe { libc::recv(fd, b.as_mut_ptr() as *mut _, b.len(), libc::MSG_DONTWAIT) };
        match r {
            0 => Recv::Eof,
            n if n > 0 => Recv::Data(n as usize),
            _ => match errno() {
                libc::EAGAIN | libc::EINTR => Recv::Again,
                e => Recv::Err(e),
            },
        }
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
        fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event { events, u64: token };
            // SAFETY: valid epoll fd, target fd and event.
            if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
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

    /// The bytes every message is cut from; a message starts at an offset that depends on its connection and
    /// round, so bytes of another connection, another round or out of order do not compare equal.
    fn pattern(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x9E37_79B9;
        (0..len + PATTERN_SHIFT)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }
    const PATTERN_SHIFT: usize = 251;
    #[cfg(test)]
    pub(super) fn pattern_for_tests(len: usize) -> Vec<u8> {
        pattern(len)
    }
    #[cfg(test)]
    pub(super) fn msg_offset_for_tests(id: u64, round: u64) -> usize {
        msg_offset(id, round)
    }
    fn msg_offset(id: u64, round: u64) -> usize {
        (id.wrapping_mul(31).wrapping_add(round.wrapping_mul(17)) % PATTERN_SHIFT as u64) as usize
    }

    fn new_hist() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
    }

    fn quantiles(h: &Histogram<u64>) -> [f64; 6] {
        if h.is_empty() {
            return [0.0; 6];
        }
        let q = |x| us(h.value_at_quantile(x));
        [h.mean() / 1000.0, q(0.5), q(0.9), q(0.99), q(0.999), us(h.max())]
    }

    fn quantiles_json(h: &Histogram<u64>) -> String {
        let [avg, p50, p90, p99, p999, max] = quantiles(h);
        format!(
            "{{\"avg\":{avg:.3},\"p50\":{p50:.3},\"p90\":{p90:.3},\"p99\":{p99:.3},\"p99_9\":{p999:.3},\"max\":{max:.3},\"count\":{}}}",
            h.len()
        )
    }

    fn json_str(s: &str) -> String {
        s.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect()
    }

    fn errors_json(e: &BTreeMap<String, u64>) -> String {
        let v: Vec<String> = e.iter().map(|(k, n)| format!("\"{}\":{n}", json_str(k))).collect();
        format!("{{{}}}", v.join(","))
    }

    fn cpus_json(c: &[CpuBusy]) -> String {
        c.iter()
            .map(|c| {
                format!(
                    "{{\"cpu\":{},\"busy\":{:.1},\"user\":{:.1},\"sys\":{:.1},\"irq\":{:.1}}}",
                    c.cpu, c.busy, c.user, c.sys, c.irq
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn check_target(server: &SocketAddrV4, sources: &[Ipv4Addr]) -> Result<(), String> {
        if !in_test_range(server) {
            return Err(format!(
                "refusing {server}: ixbench only connects to test hosts in 198.18.0.0/15 (RFC 2544 benchmarking range)"
            ));
        }
        if let Some(s) = sources.iter().find(|s| !in_test_range(&SocketAddrV4::new(**s, 0))) {
            return Err(format!("refusing source address {s}: only 198.18.0.0/15"));
        }
        Ok(())
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

    // ------------------------------------------------------------------------------------------ connection engine

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Phase {
        Connecting,
        /// A round trip in progress.
        Echo,
        /// Connected, all round trips asked for so far done (hold).
        Idle,
    }

    struct Conn {
        fd: OwnedFd,
        phase: Phase,
        id: u64,
        /// Round trips done, and asked for.
        round: u64,
        goal: u64,
        sent: usize,
        got: usize,
        t_open: u64,
        t_round: u64,
        last_progress: u64,
    }

    struct Slot {
        generation: u32,
        conn: Option<Conn>,
    }

    /// What one engine (one thread) counted.
    struct EngineStats {
        opened: u64,
        established: u64,
        /// Connections that finished all their round trips and closed.
        completed: u64,
        completed_measured: u64,
        messages: u64,
        messages_measured: u64,
        /// Open connections left at the end of a timed run, closed without counting as errors.
        abandoned: u64,
        errors: BTreeMap<String, u64>,
        rtt: Histogram<u64>,
        connect: Histogram<u64>,
        max_open: u64,
    }

    impl EngineStats {
        fn new() -> EngineStats {
            EngineStats {
                opened: 0,
                established: 0,
                completed: 0,
                completed_measured: 0,
                messages: 0,
                messages_measured: 0,
                abandoned: 0,
                errors: BTreeMap::new(),
                rtt: new_hist(),
                connect: new_hist(),
                max_open: 0,
            }
        }
        fn merge(&mut self, o: &EngineStats) {
            self.opened += o.opened;
            self.established += o.established;
            self.completed += o.completed;
            self.completed_measured += o.completed_measured;
            self.messages += o.messages;
            self.messages_measured += o.messages_measured;
            self.abandoned += o.abandoned;
            for (k, v) in &o.errors {
                *self.errors.entry(k.clone()).or_default() += v;
            }
            self.rtt.add(&o.rtt).expect("same histogram bounds");
            self.connect.add(&o.connect).expect("same histogram bounds");
            self.max_open += o.max_open;
        }
        fn error_count(&self) -> u64 {
            self.errors.values().sum()
        }
    }

    struct EngineCfg {
        server: SocketAddrV4,
        sources: Vec<Ipv4Addr>,
        size: usize,
        rounds: u64,
        rst_close: bool,
        /// Hold: a connection stays open (Idle) after its round trips instead of closing.
        keep_open: bool,
        max_connecting: usize,
        timeout_ns: u64,
    }

    /// Connections of one thread on one epoll, edge-triggered: each event drives its connection as far as it
    /// goes without blocking.
    struct Engine<'a> {
        cfg: &'a EngineCfg,
        ep: Epoll,
        slots: Vec<Slot>,
        empty: Vec<usize>,
        connecting: usize,
        open: usize,
        busy: usize,
        pattern: &'a [u8],
        rx: Vec<u8>,
        st: EngineStats,
        window: (u64, u64),
        /// Connection ids: next and stride (threads take disjoint ids).
        next_id: u64,
        id_stride: u64,
        /// An immediate connect failure stops refilling until the next tick.
        refill_blocked: bool,
    }

    impl<'a> Engine<'a> {
        fn new(cfg: &'a EngineCfg, pattern: &'a [u8], slots: usize, first_id: u64, stride: u64) -> io::Result<Self> {
            Ok(Engine {
                cfg,
                ep: Epoll::new()?,
                slots: (0..slots).map(|_| Slot { generation: 0, conn: None }).collect(),
                empty: (0..slots).rev().collect(),
                connecting: 0,
                open: 0,
                busy: 0,
                pattern,
                rx: vec![0u8; cfg.size.clamp(1, 1 << 16)],
                st: EngineStats::new(),
                window: (0, u64::MAX),
                next_id: first_id,
                id_stride: stride,
                refill_blocked: false,
            })
        }

        fn in_window(&self, t: u64) -> bool {
            t >= self.window.0 && t < self.window.1
        }

        fn error(&mut self, kind: impl Into<String>) {
            *self.st.errors.entry(kind.into()).or_default() += 1;
        }

        /// Opens one connection in an empty slot (`may_start` decides whether one may be started).
        fn refill(&mut self, may_start: &mut dyn FnMut() -> bool) {
            while !self.refill_blocked && self.connecting < self.cfg.max_connecting {
                let Some(&slot) = self.empty.last() else { return };
                if !may_start() {
                    return;
                }
                self.empty.pop();
                let id = self.next_id;
                self.next_id += self.id_stride;
                let src = (!self.cfg.sources.is_empty())
                    .then(|| self.cfg.sources[(id % self.cfg.sources.len() as u64) as usize]);
                self.st.opened += 1;
                let t_open = now_ns(); // before connect(): over veth it may complete the handshake itself
                let (fd, connected) = match connect_nb(&self.cfg.server, src) {
                    Ok(x) => x,
                    Err(e) => {
                        self.error(format!("connect: {}", errno_name(e)));
                        self.empty.push(slot);
                        self.refill_blocked = true;
                        return;
                    }
                };
                let s = &mut self.slots[slot];
                s.generation = s.generation.wrapping_add(1);
                let token = (s.generation as u64) << 32 | slot as u64;
                let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                if let Err(e) = self.ep.add(fd.as_raw_fd(), ev, token) {
                    self.error(format!("epoll_ctl: {e}"));
                    self.empty.push(slot);
                    self.refill_blocked = true;
                    return;
                }
                let now = now_ns();
                s.conn = Some(Conn {
                    fd,
                    phase: Phase::Connecting,
                    id,
                    round: 0,
                    goal: self.cfg.rounds,
                    sent: 0,
                    got: 0,
                    t_open,
                    t_round: now,
                    last_progress: now,
                });
                self.connecting += 1;
                self.open += 1;
                self.busy += 1;
                self.st.max_open = self.st.max_open.max(self.open as u64);
                if connected {
                    self.drive(slot, libc::EPOLLOUT as u32);
                }
            }
        }

        /// Closes the connection in `slot` (RST if `rst`) and frees the slot.
        fn close_slot(&mut self, slot: usize, rst: bool) {
            let Some(c) = self.slots[slot].conn.take() else { return };
            if c.phase == Phase::Connecting {
                self.connecting -= 1;
            }
            if c.phase != Phase::Idle {
                self.busy -= 1;
            }
            self.open -= 1;
            close_fd(c.fd, rst);
            self.empty.push(slot);
        }

        fn fail(&mut self, slot: usize, kind: String) {
            self.error(kind);
            self.close_slot(slot, true);
        }

        fn start_round(c: &mut Conn, now: u64) {
            c.phase = Phase::Echo;
            c.sent = 0;
            c.got = 0;
            c.t_round = now;
            c.last_progress = now;
        }

        /// Asks every idle connection for one more round trip (hold).
        fn another_round(&mut self) {
            let now = now_ns();
            let mut todo = Vec::new();
            for (i, s) in self.slots.iter_mut().enumerate() {
                if let Some(c) = s.conn.as_mut() {
                    if c.phase == Phase::Idle {
                        c.goal += 1;
                        Self::start_round(c, now);
                        todo.push(i);
                    }
                }
            }
            self.busy += todo.len();
            for i in todo {
                self.drive(i, libc::EPOLLOUT as u32);
            }
        }

        /// Handles an epoll event for `slot`.
        fn event(&mut self, token: u64, events: u32) {
            let slot = (token & 0xffff_ffff) as usize;
            if self.slots.get(slot).is_some_and(|s| s.generation == (token >> 32) as u32 && s.conn.is_some()) {
                self.drive(slot, events);
            }
        }

        fn drive(&mut self, slot: usize, events: u32) {
            let size = self.cfg.size;
            let Some(c) = self.slots[slot].conn.as_mut() else { return };
            let fd = c.fd.as_raw_fd();
            if c.phase == Phase::Connecting {
                if events & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                    return;
                }
                let e = so_error(fd);
                if e != 0 || events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    let e = if e == 0 { libc::ECONNRESET } else { e };
                    return self.fail(slot, format!("connect: {}", errno_name(e)));
                }
                let now = now_ns();
                self.connecting -= 1;
                self.st.established += 1;
                self.st.connect.saturating_record(now.saturating_sub(c.t_open).max(1));
                if c.goal == 0 {
                    c.phase = Phase::Idle;
                    self.busy -= 1;
                    return;
                }
                Self::start_round(c, now);
            }
            if c.phase == Phase::Idle {
                // Nothing is expected on an idle connection.
                let r = recv_nb(fd, &mut self.rx);
                return match r {
                    Recv::Again => {}
                    Recv::Data(_) => self.fail(slot, "unexpected data on an idle connection".into()),
                    Recv::Eof => self.fail(slot, "closed by the server while idle".into()),
                    Recv::Err(e) => self.fail(slot, format!("idle: {}", errno_name(e))),
                };
            }
            loop {
                let c = self.slots[slot].conn.as_mut().expect("live");
                let mut progress = false;
                let off = msg_offset(c.id, c.round);
                if c.sent < size {
                    match send_nb(fd, &self.pattern[off + c.sent..off + size]) {
                        Ok(n) => {
                            c.sent += n;
                            progress |= n > 0;
                        }
                        Err(e) => return self.fail(slot, format!("send: {}", errno_name(e))),
                    }
                }
                if c.got < size {
                    let want = (size - c.got).min(self.rx.len());
                    match recv_nb(fd, &mut self.rx[..want]) {
                        Recv::Data(n) => {
                            if c.got + n > c.sent || self.rx[..n] != self.pattern[off + c.got..off + c.got + n] {
                                return self.fail(slot, "echo mismatch".into());
                            }
                            c.got += n;
                            progress = true;
                        }
                        Recv::Again => {}
                        Recv::Eof => return self.fail(slot, "short echo (EOF)".into()),
                        Recv::Err(e) => return self.fail(slot, format!("recv: {}", errno_name(e))),
                    }
                }
                let now = now_ns();
                if progress {
                    c.last_progress = now;
                }
                if c.got == size {
                    let rtt = now.saturating_sub(c.t_round).max(1);
                    c.round += 1;
                    self.st.messages += 1;
                    if now >= self.window.0 && now < self.window.1 {
                        self.st.messages_measured += 1;
                        self.st.rtt.saturating_record(rtt);
                    }
                    if c.round < c.goal {
                        Self::start_round(c, now);
                        continue;
                    }
                    if self.cfg.keep_open {
                        c.phase = Phase::Idle;
                        self.busy -= 1;
                        return;
                    }
                    // Done: nothing more may come (more bytes than sent is an error), then close.
                    return match recv_nb(fd, &mut self.rx[..1]) {
                        Recv::Data(_) => self.fail(slot, "echo longer than the message".into()),
                        Recv::Err(e) if e != libc::ECONNRESET => self.fail(slot, format!("recv: {}", errno_name(e))),
                        _ => {
                            self.st.completed += 1;
                            if self.in_window(now) {
                                self.st.completed_measured += 1;
                            }
                            self.close_slot(slot, self.cfg.rst_close);
                        }
                    };
                }
                if !progress {
                    return;
                }
            }
        }

        /// Fails connections without progress for the timeout.
        fn sweep(&mut self, now: u64) {
            self.refill_blocked = false;
            for i in 0..self.slots.len() {
                let Some(c) = self.slots[i].conn.as_ref() else { continue };
                if c.phase != Phase::Idle && now.saturating_sub(c.last_progress) > self.cfg.timeout_ns {
                    let kind = if c.phase == Phase::Connecting { "connect timeout" } else { "echo timeout" };
                    self.fail(i, kind.into());
                }
            }
        }

        /// Waits for events (0: spin) and handles them.
        fn poll(&mut self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
            let n = self.ep.wait(evs, timeout_ms);
            for ev in evs.iter().take(n) {
                let (token, events) = (ev.u64, ev.events);
                self.event(token, events);
            }
            n
        }

        /// Closes everything still open (end of a timed run): not errors.
        fn abandon_all(&mut self, rst: bool) {
            for i in 0..self.slots.len() {
                if self.slots[i].conn.is_some() {
                    self.st.abandoned += 1;
                    self.close_slot(i, rst);
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------ echo

    pub fn echo(args: EchoArgs) -> Result<(), String> {
        check_target(&args.server, &args.sources)?;
        if args.connections == 0 || args.connections > 1_000_000 {
            return Err("--connections must be 1..=1000000".into());
        }
        if args.threads == 0 || args.threads > 64 || args.threads > args.connections {
            return Err("--threads must be 1..=64 and at most --connections".into());
        }
        if args.size == 0 || args.size > 1 << 20 {
            return Err("--size must be 1..=1048576".into());
        }
        if args.rounds == 0 || args.rounds > 1 << 32 {
            return Err("--rounds must be 1..=2^32".into());
        }
        if args.max_connecting == 0 || args.timeout_ms == 0 {
            return Err("--max-connecting and --timeout-ms must be > 0".into());
        }
        let total = args.total_connections;
        if total == Some(0) || total.is_some_and(|t| t > 100_000_000) {
            return Err("--total-connections must be 1..=1e8".into());
        }
        let duration = args.duration.unwrap_or(10.0);
        if total.is_none() && !(duration > 0.0 && duration <= 3600.0 && (0.0..=600.0).contains(&args.warmup)) {
            return Err("--duration must be in (0, 3600] s and --warmup in [0, 600] s".into());
        }
        if !(args.max_seconds > 0.0 && args.max_seconds <= 3600.0) {
            return Err("--max-seconds must be in (0, 3600]".into());
        }
        let nofile = raise_nofile();
        if (args.connections as u64) + 64 > nofile {
            return Err(format!(
                "--connections {} needs more descriptors than RLIMIT_NOFILE {nofile}",
                args.connections
            ));
        }
        let hard = match total {
            Some(_) => args.max_seconds,
            None => args.warmup + duration + 10.0,
        };
        watchdog(hard);

        let t0 = now_ns();
        let window = match total {
            Some(_) => (t0, u64::MAX),
            None => {
                let s = t0 + (args.warmup * 1e9) as u64;
                (s, s + (duration * 1e9) as u64)
            }
        };
        let cfg = Arc::new(EngineCfg {
            server: args.server,
            sources: args.sources.clone(),
            size: args.size,
            rounds: args.rounds,
            rst_close: args.rst_close,
            keep_open: false,
            max_connecting: args.max_connecting.div_ceil(args.threads),
            timeout_ns: args.timeout_ms * 1_000_000,
        });
        let pattern = Arc::new(pattern(args.size));
        let claimed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for t in 0..args.threads {
            let slots = args.connections / args.threads + usize::from(t < args.connections % args.threads);
            let (cfg, pattern, claimed, stop) = (cfg.clone(), pattern.clone(), claimed.clone(), stop.clone());
            let busy_poll = args.busy_poll;
            handles.push(std::thread::spawn(move || -> Result<EngineStats, String> {
                let mut e = Engine::new(&cfg, &pattern, slots, t as u64, 64).map_err(|e| format!("epoll: {e}"))?;
                e.window = window;
                let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
                let mut exhausted = false;
                let mut last_sweep = now_ns();
                loop {
                    let now = now_ns();
                    let timed_out = total.is_none() && now >= window.1;
                    if timed_out || stop.load(Ordering::Relaxed) {
                        e.abandon_all(true);
                        break;
                    }
                    if !exhausted {
                        e.refill(&mut || {
                            let ok = total.is_none_or(|k| claimed.fetch_add(1, Ordering::Relaxed) < k);
                            exhausted |= !ok;
                            ok
                        });
                    }
                    if exhausted && e.open == 0 {
                        break;
                    }
                    e.poll(&mut evs, if busy_poll { 0 } else { 5 });
                    let now = now_ns();
                    if now >= last_sweep + 20_000_000 {
                        e.sweep(now);
                        last_sweep = now;
                    }
                }
                Ok(e.st)
            }));
        }
        // The measured window, from the main thread: CPU samples at its start and end.
        let (cpu, cpus, measured_secs) = match total {
            None => {
                sleep_until(window.0);
                let (c0, s0) = (args.cpu_pid.and_then(proc_cpu_seconds), proc_stat_cpus());
                sleep_until(window.1);
                let (c1, s1) = (args.cpu_pid.and_then(proc_cpu_seconds), proc_stat_cpus());
                (c0.zip(c1).map(|(a, b)| b - a), cpu_busy(&s0, &s1), duration)
            }
            Some(_) => {
                let (c0, s0) = (args.cpu_pid.and_then(proc_cpu_seconds), proc_stat_cpus());
                while handles.iter().any(|h| !h.is_finished()) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let (c1, s1) = (args.cpu_pid.and_then(proc_cpu_seconds), proc_stat_cpus());
                (c0.zip(c1).map(|(a, b)| b - a), cpu_busy(&s0, &s1), (now_ns() - t0) as f64 / 1e9)
            }
        };
        let mut st = EngineStats::new();
        for h in handles {
            st.merge(&h.join().map_err(|_| "a client thread panicked".to_string())??);
        }
        stop.store(true, Ordering::Relaxed);
        echo_report(&args, &st, measured_secs, cpu, &cpus)
    }

    fn sleep_until(t: u64) {
        let now = now_ns();
        if t > now {
            std::thread::sleep(Duration::from_nanos(t - now));
        }
    }

    fn echo_report(
        args: &EchoArgs,
        st: &EngineStats,
        secs: f64,
        cpu: Option<f64>,
        cpus: &[CpuBusy],
    ) -> Result<(), String> {
        let msgs_s = st.messages_measured as f64 / secs;
        let conns_s = st.completed_measured as f64 / secs;
        let errors = st.error_count();
        let [avg, p50, p90, p99, p999, max] = quantiles(&st.rtt);
        let [cavg, cp50, _, cp99, _, cmax] = quantiles(&st.connect);
        let run = match args.total_connections {
            Some(k) => format!("total-connections={k}"),
            None => format!("duration={secs:.1}s warmup={:.1}s", args.warmup),
        };
        println!(
            "ixbench echo {}{}: connections={} threads={} size={} rounds={} close={} {run} client={}{}",
            args.server,
            if args.label.is_empty() { String::new() } else { format!(" [{}]", args.label) },
            args.connections,
            args.threads,
            args.size,
            args.rounds,
            if args.rst_close { "rst" } else { "fin" },
            if args.busy_poll { "busy-poll" } else { "epoll" },
            if args.sources.is_empty() { String::new() } else { format!(" sources={}", args.sources.len()) },
        );
        println!(
            "  messages/s    {msgs_s:>12.0}   ({:.1} Mbit/s of payload each way)",
            msgs_s * args.size as f64 * 8e-6
        );
        println!("  connections/s {conns_s:>12.0}");
        println!(
            "  whole run     opened {} established {} completed {} round-trips {} abandoned-at-end {} max-open {}",
            st.opened, st.established, st.completed, st.messages, st.abandoned, st.max_open
        );
        println!("  RTT us        avg {avg:.2} p50 {p50:.2} p90 {p90:.2} p99 {p99:.2} p99.9 {p999:.2} max {max:.2}");
        println!("  connect us    avg {cavg:.2} p50 {cp50:.2} p99 {cp99:.2} max {cmax:.2}");
        if let Some(c) = cpu {
            let per = if st.messages_measured > 0 { c * 1e6 / st.messages_measured as f64 } else { 0.0 };
            println!(
                "  pid {} CPU    {c:.2} s ({:.0}% of one core), {per:.3} us/message",
                args.cpu_pid.unwrap_or(0),
                100.0 * c / secs
            );
        }
        if !cpus.is_empty() {
            let v: Vec<String> = cpus
                .iter()
                .map(|c| format!("cpu{} {:.0}% (usr {:.0} sys {:.0} irq {:.0})", c.cpu, c.busy, c.user, c.sys, c.irq))
                .collect();
            println!("  CPUs busy     {}", v.join(", "));
        }
        if errors == 0 {
            println!("  errors        0");
        } else {
            let v: Vec<String> = st.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("  errors        {errors} ({})", v.join(", "));
        }
        let incomplete = args.total_connections.is_some_and(|k| st.completed + errors < k);
        if let Some(path) = &args.json {
            let cpu_per =
                cpu.map(|c| if st.messages_measured > 0 { c * 1e6 / st.messages_measured as f64 } else { 0.0 });
            let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.6}"));
            let json = format!(
                concat!(
                    "{{\"label\":\"{}\",\"server\":\"{}\",\"connections\":{},\"threads\":{},\"size\":{},\"rounds\":{},",
                    "\"rst_close\":{},\"busy_poll\":{},\"total_connections\":{},\"sources\":{},\"duration_s\":{:.3},",
                    "\"msgs_per_s\":{:.1},\"conns_per_s\":{:.1},\"opened\":{},\"established\":{},\"completed\":{},",
                    "\"round_trips\":{},\"abandoned\":{},\"max_open\":{},\"errors\":{},\"errors_by_kind\":{},",
                    "\"incomplete\":{},\"rtt_us\":{},\"connect_us\":{},\"cpu_pid\":{},\"cpu_s\":{},",
                    "\"cpu_us_per_msg\":{},\"cpus\":[{}]}}\n"
                ),
                json_str(&args.label),
                args.server,
                args.connections,
                args.threads,
                args.size,
                args.rounds,
                args.rst_close,
                args.busy_poll,
                args.total_connections.map_or("null".into(), |k| k.to_string()),
                args.sources.len(),
                secs,
                msgs_s,
                conns_s,
                st.opened,
                st.established,
                st.completed,
                st.messages,
                st.abandoned,
                st.max_open,
                errors,
                errors_json(&st.errors),
                incomplete,
                quantiles_json(&st.rtt),
                quantiles_json(&st.connect),
                args.cpu_pid.map_or("null".to_string(), |p| p.to_string()),
                opt(cpu),
                opt(cpu_per),
                cpus_json(cpus),
            );
            std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if incomplete {
            return Err(format!(
                "only {} of {} connections completed",
                st.completed,
                args.total_connections.unwrap_or(0)
            ));
        }
        if errors > 0 {
            return Err(format!("{errors} errors"));
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------ hold

    pub fn hold(args: HoldArgs) -> Result<(), String> {
        check_target(&args.server, &args.sources)?;
        if args.connections == 0 || args.connections > 1_000_000 {
            return Err("--connections must be 1..=1000000".into());
        }
        if args.size == 0 || args.size > 1 << 16 || args.rounds > 1000 {
            return Err("--size must be 1..=65536 and --rounds at most 1000".into());
        }
        let max_ok = args.max_seconds > 0.0 && args.max_seconds <= 3600.0;
        if !(max_ok && (0.0..=600.0).contains(&args.seconds)) {
            return Err("--seconds must be in [0, 600] and --max-seconds in (0, 3600]".into());
        }
        if args.max_connecting == 0 || args.timeout_ms == 0 {
            return Err("--max-connecting and --timeout-ms must be > 0".into());
        }
        let nofile = raise_nofile();
        if (args.connections as u64) + 64 > nofile {
            return Err(format!(
                "--connections {} needs more descriptors than RLIMIT_NOFILE {nofile}",
                args.connections
            ));
        }
        watchdog(args.max_seconds);
        let deadline = now_ns() + ((args.max_seconds - 2.0).max(1.0) * 1e9) as u64;
        let cfg = EngineCfg {
            server: args.server,
            sources: args.sources.clone(),
            size: args.size,
            rounds: args.rounds,
            rst_close: args.rst_close,
            keep_open: true,
            max_connecting: args.max_connecting,
            timeout_ns: args.timeout_ms * 1_000_000,
        };
        let pattern = pattern(args.size);
        let mut e = Engine::new(&cfg, &pattern, args.connections, 0, 1).map_err(|e| format!("epoll: {e}"))?;
        let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let n = args.connections as u64;
        let mut started = 0u64;
        let t0 = now_ns();
        let mut last_sweep = t0;
        let mut tick = |e: &mut Engine, timeout: i32| {
            e.poll(&mut evs, timeout);
            let now = now_ns();
            if now >= last_sweep + 20_000_000 {
                e.sweep(now);
                last_sweep = now;
            }
            now
        };
        // 1. Open all (a failed one is not retried), each doing its round trips, until every one is idle or dead.
        loop {
            e.refill(&mut || {
                started += 1;
                started <= n
            });
            let now = tick(&mut e, 5);
            if (started >= n && e.busy == 0) || now >= deadline {
                break;
            }
        }
        let t_open = now_ns();
        let established = e.st.established;
        let failed_opening = e.st.error_count();
        let idle = e.open as u64;
        println!(
            "holding {idle} of {n} connections (established {established}, errors {failed_opening}) after {:.2} s",
            (t_open - t0) as f64 / 1e9
        );
        let _ = io::stdout().flush();
        // 2. Hold: anything that happens on an idle connection is an error.
        let hold_end = t_open + (args.seconds * 1e9) as u64;
        while now_ns() < hold_end.min(deadline) {
            tick(&mut e, 20);
        }
        let dropped = e.st.error_count() - failed_opening;
        let still_open = e.open as u64;
        // 3. One more round trip on each, then close all.
        let msgs_before = e.st.messages;
        if args.rounds > 0 {
            e.another_round();
            while e.busy > 0 && now_ns() < deadline {
                tick(&mut e, 5);
            }
        }
        let final_ok = e.st.messages - msgs_before;
        let closing = e.open as u64;
        e.abandon_all(args.rst_close);
        let errors = e.st.error_count();
        let [cavg, cp50, _, cp99, _, cmax] = quantiles(&e.st.connect);
        let [ravg, rp50, _, rp99, _, rmax] = quantiles(&e.st.rtt);
        println!(
            "ixbench hold {}: connections={n} sources={} rounds={} size={} held={:.1}s close={}",
            args.server,
            args.sources.len(),
            args.rounds,
            args.size,
            args.seconds,
            if args.rst_close { "rst" } else { "fin" }
        );
        println!(
            "  established   {established} of {n} (max open at once {}), open after the hold {still_open}",
            e.st.max_open
        );
        println!("  round trips   {} verified (final round: {final_ok} of {still_open})", e.st.messages);
        println!("  closed        {closing}");
        println!("  connect us    avg {cavg:.2} p50 {cp50:.2} p99 {cp99:.2} max {cmax:.2}");
        println!("  RTT us        avg {ravg:.2} p50 {rp50:.2} p99 {rp99:.2} max {rmax:.2}");
        let v: Vec<String> = e.st.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!(
            "  errors        {errors}{}",
            if v.is_empty() { String::new() } else { format!(" ({})", v.join(", ")) }
        );
        if let Some(path) = &args.json {
            let json = format!(
                concat!(
                    "{{\"server\":\"{}\",\"connections\":{},\"sources\":{},\"rounds\":{},\"size\":{},\"held_s\":{:.3},",
                    "\"established\":{},\"max_open\":{},\"open_after_hold\":{},\"dropped_while_holding\":{},",
                    "\"round_trips\":{},\"final_round_ok\":{},\"closed\":{},\"errors\":{},\"errors_by_kind\":{},",
                    "\"connect_us\":{},\"rtt_us\":{}}}\n"
                ),
                args.server,
                n,
                args.sources.len(),
                args.rounds,
                args.size,
                args.seconds,
                established,
                e.st.max_open,
                still_open,
                dropped,
                e.st.messages,
                final_ok,
                closing,
                errors,
                errors_json(&e.st.errors),
                quantiles_json(&e.st.connect),
                quantiles_json(&e.st.rtt),
            );
            std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let want_final = if args.rounds > 0 { still_open } else { 0 };
        if established < n || errors > 0 || final_ok < want_final {
            return Err(format!("hold: {established} of {n} established, {errors} errors"));
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------ pingpong

    struct SizeResult {
        size: usize,
        iterations: u64,
        secs: f64,
        rtt: Histogram<u64>,
        cpu_s: Option<f64>,
    }

    /// One blocking-or-spinning TCP connection for ping-pong.
    struct PingConn {
        fd: OwnedFd,
        busy: bool,
        timeout_ns: u64,
    }

    impl PingConn {
        fn wait(&self, events: i16, until: u64) -> Result<(), String> {
            if self.busy {
                return if now_ns() > until { Err("round trip timed out".into()) } else { Ok(()) };
            }
            let now = now_ns();
            if now > until {
                return Err("round trip timed out".into());
            }
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events, revents: 0 };
            let ms = ((until - now) / 1_000_000 + 1).min(1000) as i32;
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, ms) };
            Ok(())
        }

        /// Sends `msg` and receives its echo into `rx`, interleaved (a large message's echo starts before it is
        /// all sent). Returns the round-trip time in ns.
        fn round_trip(&self, msg: &[u8], rx: &mut [u8]) -> Result<u64, String> {
            let fd = self.fd.as_raw_fd();
            let t0 = now_ns();
            let until = t0 + self.timeout_ns;
            let (mut sent, mut got) = (0, 0);
            let n = msg.len();
            while got < n {
                let mut progress = false;
                if sent < n {
                    let k = send_nb(fd, &msg[sent..]).map_err(|e| format!("send: {}", errno_name(e)))?;
                    sent += k;
                    progress |= k > 0;
                }
                match recv_nb(fd, &mut rx[got..n]) {
                    Recv::Data(k) => {
                        got += k;
                        progress = true;
                    }
                    Recv::Again => {}
                    Recv::Eof => return Err("short echo (EOF)".into()),
                    Recv::Err(e) => return Err(format!("recv: {}", errno_name(e))),
                }
                if !progress && got < n {
                    self.wait(if sent < n { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN }, until)?;
                }
            }
            Ok(now_ns() - t0)
        }
    }

    pub fn pingpong(args: PingpongArgs) -> Result<(), String> {
        check_target(&args.server, &[])?;
        if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > 1 << 24) {
            return Err("--sizes must be 1..=16777216 bytes each".into());
        }
        if !(args.duration_per_size > 0.0 && args.duration_per_size <= 600.0) || args.timeout_ms == 0 {
            return Err("--duration-per-size must be in (0, 600] and --timeout-ms > 0".into());
        }
        if args.warmup_iterations > 1_000_000 || args.iterations > 100_000_000 {
            return Err("--warmup-iterations at most 1e6, --iterations at most 1e8".into());
        }
        // Each size: warmup + measured time, capped by the per-size duration; plus slack.
        let per_size = args.duration_per_size + 1.0 + args.timeout_ms as f64 / 1000.0;
        watchdog(per_size * args.sizes.len() as f64 + 10.0);
        let (fd, connected) = connect_nb(&args.server, None).map_err(|e| format!("connect: {}", errno_name(e)))?;
        let conn = PingConn { fd, busy: args.busy_poll, timeout_ns: args.timeout_ms * 1_000_000 };
        if !connected {
            let until = now_ns() + conn.timeout_ns;
            loop {
                conn.wait(libc::POLLOUT, until).map_err(|_| "connect timed out".to_string())?;
                let mut p = libc::pollfd { fd: conn.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
                    break;
                }
            }
            let e = so_error(conn.fd.as_raw_fd());
            if e != 0 {
                return Err(format!("connect: {}", errno_name(e)));
            }
        }
        let max = *args.sizes.iter().max().expect("not empty");
        let pattern = pattern(max);
        let mut rx = vec![0u8; max];
        let mut results = Vec::new();
        let mut iter_id = 0u64;
        for &size in &args.sizes {
            for _ in 0..args.warmup_iterations {
                let off = msg_offset(0, iter_id);
                iter_id += 1;
                conn.round_trip(&pattern[off..off + size], &mut rx)?;
                if rx[..size] != pattern[off..off + size] {
                    return Err(format!("size {size}: echo mismatch"));
                }
            }
            let mut rtt = new_hist();
            let c0 = args.cpu_pid.and_then(proc_cpu_seconds);
            let t0 = now_ns();
            let end = t0 + (args.duration_per_size * 1e9) as u64;
            let mut n = 0u64;
            while (args.iterations == 0 || n < args.iterations) && now_ns() < end {
                let off = msg_offset(0, iter_id);
                iter_id += 1;
                let t = conn.round_trip(&pattern[off..off + size], &mut rx)?;
                rtt.saturating_record(t.max(1));
                if rx[..size] != pattern[off..off + size] {
                    return Err(format!("size {size}: echo mismatch"));
                }
                n += 1;
            }
            let secs = (now_ns() - t0) as f64 / 1e9;
            let c1 = args.cpu_pid.and_then(proc_cpu_seconds);
            results.push(SizeResult { size, iterations: n, secs, rtt, cpu_s: c0.zip(c1).map(|(a, b)| b - a) });
        }
        close_fd(conn.fd, false);
        println!(
            "ixbench pingpong {}{}: client={} (one-way = RTT/2; goodput = size / one-way time, NetPIPE's definition)",
            args.server,
            if args.label.is_empty() { String::new() } else { format!(" [{}]", args.label) },
            if args.busy_poll { "busy-poll" } else { "poll" }
        );
        println!(
            "  {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12}",
            "bytes", "iters", "avg us", "p50 us", "p99 us", "max us", "Mbit/s", "cpu us/rt"
        );
        let mut rows = Vec::new();
        for r in &results {
            let [avg, p50, _, p99, _, maxv] = quantiles(&r.rtt).map(|x| x / 2.0);
            let mbps = if avg > 0.0 { r.size as f64 * 8.0 / avg } else { 0.0 };
            let cpu_per = r.cpu_s.map(|c| if r.iterations > 0 { c * 1e6 / r.iterations as f64 } else { 0.0 });
            println!(
                "  {:>8} {:>9} {avg:>9.2} {p50:>9.2} {p99:>9.2} {maxv:>9.1} {mbps:>10.1} {:>12}",
                r.size,
                r.iterations,
                cpu_per.map_or("-".into(), |c| format!("{c:.2}"))
            );
            rows.push(format!(
                concat!(
                    "{{\"size\":{},\"iterations\":{},\"secs\":{:.3},\"one_way_us\":{{\"avg\":{:.3},\"p50\":{:.3},",
                    "\"p99\":{:.3},\"max\":{:.3}}},\"goodput_mbps\":{:.3},\"cpu_us_per_rt\":{}}}"
                ),
                r.size,
                r.iterations,
                r.secs,
                avg,
                p50,
                p99,
                maxv,
                mbps,
                cpu_per.map_or("null".into(), |c| format!("{c:.4}"))
            ));
        }
        if let Some(path) = &args.json {
            let json = format!(
                "{{\"label\":\"{}\",\"server\":\"{}\",\"busy_poll\":{},\"cpu_pid\":{},\"sizes\":[{}]}}\n",
                json_str(&args.label),
                args.server,
                args.busy_poll,
                args.cpu_pid.map_or("null".to_string(), |p| p.to_string()),
                rows.join(",")
            );
            std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::UdpEcho(a) => udp_echo(a),
        Cmd::Echo(a) => tcp::echo(a),
        Cmd::Pingpong(a) => tcp::pingpong(a),
        Cmd::Hold(a) => tcp::hold(a),
        Cmd::Memcached(a) => ix_tools::memcached::run(a),
        Cmd::Plot(a) => ix_tools::memcached::plot_report(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ixbench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchmarking_range() {
        for ok in ["198.18.0.1:7", "198.19.255.254:9"] {
            assert!(in_test_range(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["198.17.255.255:7", "198.20.0.0:7", "10.0.0.1:7", "127.0.0.1:7", "8.8.8.8:53"] {
            assert!(!in_test_range(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn poisson_gaps_have_the_requested_mean() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let n = 200_000;
        let mean = (0..n).map(|_| rng.exp(10.0)).sum::<f64>() / n as f64;
        assert!((mean - 10.0).abs() < 0.2, "{mean}");
    }

    #[test]
    fn tcp_messages_differ_by_connection_and_round() {
        let p = tcp::pattern_for_tests(64);
        let msg = |id, round| {
            let o = tcp::msg_offset_for_tests(id, round);
            p[o..o + 64].to_vec()
        };
        assert_ne!(msg(0, 0), msg(0, 1));
        assert_ne!(msg(0, 0), msg(1, 0));
        assert_ne!(msg(5, 7), msg(5, 8));
        assert_eq!(msg(3, 4), msg(3, 4));
        assert_eq!(tcp::errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(tcp::errno_name(9999), "errno 9999");
    }

    #[test]
    fn cpu_shares_from_proc_stat() {
        let a = vec![(0, 100, 50, 10, 840, 1000)];
        let b = vec![(0, 150, 70, 20, 860, 1100)];
        let c = cpu_busy(&a, &b);
        assert_eq!(c.len(), 1);
        assert!((c[0].busy - 80.0).abs() < 1e-9 && (c[0].user - 50.0).abs() < 1e-9);
        assert!(proc_cpu_seconds(std::process::id()).is_some());
    }
}
