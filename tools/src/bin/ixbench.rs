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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::UdpEcho(a) => udp_echo(a),
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
    fn cpu_shares_from_proc_stat() {
        let a = vec![(0, 100, 50, 10, 840, 1000)];
        let b = vec![(0, 150, 70, 20, 860, 1100)];
        let c = cpu_busy(&a, &b);
        assert_eq!(c.len(), 1);
        assert!((c[0].busy - 80.0).abs() < 1e-9 && (c[0].user - 50.0).abs() < 1e-9);
        assert!(proc_cpu_seconds(std::process::id()).is_some());
    }
}
