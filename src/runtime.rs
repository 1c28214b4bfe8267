//! Opening the dataplane (ports and queues) and driving its cycle with an idle policy.
//!
//! A [`Port`] is an interface the dataplane owns, with all its queues (the XDP program for AF_XDP, the TAP
//! device). A [`Queue`] is one core's [`Dataplane`], used by one thread. `Queue::run_io` adds the idle policy
//! around the dataplane's cycle: spin for a short while when nothing happens (a wake-up costs 25-50 us on these
//! VMs, DESIGN.md §7), then sleep on the queue's fd so an idle server burns no core.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::io;
use std::sync::{Arc, Mutex, Once};

use arrayvec::ArrayVec;
use dataplane::api::{CmdResult, Command, Event, Events, Ret};
use dataplane::config::{Backend, Config, ConfigError};
use dataplane::dataplane::DataplaneConfig;
use dataplane::mbuf::MbufPool;
use dataplane::net::arp::NeighborTable;
use dataplane::nic::rss::RssTable;
use dataplane::nic::NicQueue;
use dataplane::stats::{PageInfo, StatsPage};
use dataplane::steer::Steering;
use dataplane::time::{Duration, Instant};
use dataplane::Dataplane;

/// Why a port or queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Bad or missing configuration.
    #[error("libix configuration: {0}")]
    Config(#[from] ConfigError),
    /// The backend could not start (no interface, no privileges, ...).
    #[error("libix: cannot open {what}: {source}")]
    Io {
        /// What was being opened.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A queue index outside the port.
    #[error("libix: queue {0} does not exist (the port has {1})")]
    NoSuchQueue(u32, u32),
    /// The queue is already open.
    #[error("libix: queue {0} is already open")]
    QueueBusy(u32),
}

impl OpenError {
    /// The errno a C caller sees.
    pub fn errno(&self) -> i32 {
        match self {
            OpenError::Config(_) | OpenError::NoSuchQueue(..) => libc::EINVAL,
            OpenError::Io { source, .. } => dataplane::sys::errno_of(source).unwrap_or(libc::EIO),
            OpenError::QueueBusy(_) => libc::EBUSY,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> OpenError {
    let what = what.into();
    move |source| OpenError::Io { what, source }
}

/// The backend-specific, per-interface state the queues share.
#[derive(Debug)]
enum PortBackend {
    AfXdp(Arc<dataplane::nic::afxdp::XdpProgram>),
    Tap(Mutex<Vec<Option<dataplane::nic::tap::TapQueue>>>),
}

/// An interface owned by the dataplane.
#[derive(Debug)]
pub struct Port {
    cfg: Config,
    backend: PortBackend,
    page: Option<Arc<StatsPage>>,
    neighbors: Arc<NeighborTable>,
    /// The NIC's RSS hash, when it reports one we can reproduce (AF_XDP with several queues on an RSS NIC).
    rss: Option<Arc<RssTable>>,
    /// The queues' inboxes for software steering (AF_XDP with several queues and no RSS table: see
    /// `dataplane::steer`).
    steering: Option<Arc<Steering>>,
    opened: Mutex<Vec<bool>>,
}

impl Port {
    /// Opens the interface named by the `IX_*` environment.
    pub fn open_env() -> Result<Port, OpenError> {
        Port::open(&Config::from_env()?)
    }

    /// Opens the interface of `cfg`.
    pub fn open(cfg: &Config) -> Result<Port, OpenError> {
        let backend = match cfg.backend {
            Backend::AfXdp => open_afxdp(cfg)?,
            Backend::Tap => open_tap(cfg)?,
            Backend::Auto => match open_afxdp(cfg) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!("{e}; trying a TAP interface named {:?} instead", cfg.iface);
                    open_tap(cfg)?
                }
            },
        };
        let info = PageInfo {
            pid: std::process::id(),
            queues: cfg.queues,
            iface: cfg.iface.clone(),
            ip: cfg.ip.addr.to_u32(),
            prefix_len: cfg.ip.prefix_len,
        };
        let page = match StatsPage::create(&cfg.stats_dir, &info) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!("no live statistics for ixctl: cannot create a page in {}: {e}", cfg.stats_dir.display());
                None
            }
        };
        // AF_XDP with several queues: on a NIC that reports its RSS key and table, connect picks ports by the
        // NIC's own hash; otherwise (veth: the peer's kernel picks our RX queue from a random per-socket hash)
        // the queues steer TCP among themselves in software.
        let (mut rss, mut steering) = (None, None);
        if matches!(backend, PortBackend::AfXdp(_)) && cfg.queues > 1 {
            rss = rss_table(&cfg.iface, cfg.queues).map(Arc::new);
            if rss.is_none() {
                steering = Some(Steering::new(cfg.queues).map_err(io_err("steering inboxes"))?);
            }
        }
        Ok(Port {
            cfg: cfg.clone(),
            backend,
            page,
            neighbors: Arc::default(),
            rss,
            steering,
            opened: Mutex::new(vec![false; cfg.queues as usize]),
        })
    }

    /// Number of queues.
    pub fn queues(&self) -> u32 {
        self.cfg.queues
    }

    /// The configuration the port was opened with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Opens queue `queue_id` as a dataplane for the calling thread.
    pub fn open_queue(&self, queue_id: u32) -> Result<Queue, OpenError> {
        if queue_id >= self.cfg.queues {
            return Err(OpenError::NoSuchQueue(queue_id, self.cfg.queues));
        }
        {
            let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
            if opened[queue_id as usize] {
                return Err(OpenError::QueueBusy(queue_id));
            }
            opened[queue_id as usize] = true;
        }
        let result = self.build_queue(queue_id);
        if result.is_err() {
            self.opened.lock().unwrap_or_else(|p| p.into_inner())[queue_id as usize] = false;
        }
        result
    }

    fn build_queue(&self, queue_id: u32) -> Result<Queue, OpenError> {
        let mut pool = MbufPool::new(self.cfg.pool_frames, self.cfg.hugepages).map_err(io_err("an mbuf pool"))?;
        let nic: Box<dyn NicQueue> = match &self.backend {
            PortBackend::AfXdp(prog) => Box::new(
                dataplane::nic::afxdp::XskQueue::open(prog, &self.cfg.iface, queue_id, &mut pool, Default::default())
                    .map_err(io_err(format!("AF_XDP queue {queue_id} of {}", self.cfg.iface)))?,
            ),
            PortBackend::Tap(queues) => {
                let mut queues = queues.lock().unwrap_or_else(|p| p.into_inner());
                let q = queues.get_mut(queue_id as usize).and_then(Option::take);
                Box::new(q.ok_or(OpenError::QueueBusy(queue_id))?)
            }
        };
        let dcfg = DataplaneConfig {
            cidr: self.cfg.ip,
            gateway: self.cfg.gateway,
            batch: self.cfg.batch,
            checksum: self.cfg.checksum,
            queue_id,
        };
        let mut dp = Dataplane::new(nic, pool, &dcfg);
        dp.set_neighbor_table(self.neighbors.clone());
        if let (PortBackend::Tap(_), true) = (&self.backend, self.cfg.queues > 1) {
            // TAP: our steering program decides which queue a flow's frames reach, so connect can choose ports
            // whose replies come back to this queue. (AF_XDP: the peer's TX queue choice on veth is Linux's and
            // cannot be predicted; the queues steer in software below.)
            let (ours, queues) = (self.cfg.ip.addr, self.cfg.queues);
            dp.set_tcp_port_filter(Box::new(move |remote, remote_port, local_port| {
                dataplane::nic::tap::steer_queue_for_flow(remote.0, ours.0, 6, remote_port, local_port, queues)
                    == queue_id
            }));
        }
        if let Some(rss) = &self.rss {
            // The NIC hashes a reply over (peer, us, peer port, our port): keep the ports it sends here.
            let (rss, ours) = (rss.clone(), self.cfg.ip.addr);
            dp.set_tcp_port_filter(Box::new(move |remote, remote_port, local_port| {
                rss.queue_of_tcp4(remote, ours, remote_port, local_port) == queue_id
            }));
        }
        if let Some(steering) = &self.steering {
            dp.set_steering(steering.clone());
        }
        if let Some(page) = &self.page {
            dp.set_stats_page(page.clone());
        }
        Ok(Queue::new(dp))
    }
}

/// The interface's RSS hash, if it reports one we can reproduce for every queue; logs which way connects will
/// find their queue.
fn rss_table(iface: &str, queues: u32) -> Option<RssTable> {
    let table = match dataplane::sys::xdp::interface_rss(iface) {
        Ok(c) => {
            let (hfunc, xfrm, key_len, entries) = (c.hfunc, c.input_xfrm, c.key.len(), c.indirection.len());
            let table = RssTable::new(c.hfunc, c.input_xfrm, c.key, c.indirection).filter(|t| t.covers(queues));
            if table.is_none() {
                log::info!(
                    "{iface}: RSS hash function {hfunc:#x} (input transform {xfrm:#x}, {key_len}-byte key, \
                     {entries}-entry table) is not a Toeplitz hash over all {queues} queues: steering in software"
                );
            }
            table
        }
        Err(e) => {
            log::info!("{iface}: no RSS table ({e}): connections steer their replies in software");
            None
        }
    };
    if table.is_some() {
        log::info!("{iface}: connect picks ports by the NIC's Toeplitz hash (RSS key and table read with ethtool)");
    }
    table
}

fn open_afxdp(cfg: &Config) -> Result<PortBackend, OpenError> {
    use dataplane::config::XdpAttach;
    use dataplane::nic::afxdp::{XdpMode, XdpProgram};
    let mode = match cfg.xdp_mode {
        XdpAttach::Auto => XdpMode::Auto,
        XdpAttach::Native => XdpMode::Native,
        XdpAttach::Generic => XdpMode::Generic,
    };
    let prog = XdpProgram::attach(&cfg.iface, cfg.queues, mode).map_err(io_err(format!("AF_XDP on {}", cfg.iface)))?;
    Ok(PortBackend::AfXdp(prog))
}

fn open_tap(cfg: &Config) -> Result<PortBackend, OpenError> {
    let queues = dataplane::nic::tap::open(&cfg.iface, cfg.queues, &Default::default())
        .map_err(io_err(format!("TAP interface {}", cfg.iface)))?;
    Ok(PortBackend::Tap(Mutex::new(queues.into_iter().map(Some).collect())))
}

/// How long an idle queue spins before it sleeps on its fd.
const DEFAULT_SPIN: Duration = Duration::from_micros(100);
/// Commands converted per chunk (kept on the stack).
const CHUNK: usize = 64;
/// Most events per cycle.
pub const MAX_EVENTS: usize = 1024;

/// One core's dataplane plus the scratch arrays and idle policy of `run_io`.
#[derive(Debug)]
pub struct Queue {
    dp: Dataplane,
    events: Events,
    rets: Vec<CmdResult>,
    spin: Duration,
}

impl Queue {
    /// Wraps a dataplane.
    pub fn new(dp: Dataplane) -> Queue {
        let spin = std::env::var("IX_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_micros)
            .unwrap_or(DEFAULT_SPIN);
        Queue { dp, events: Events::with_capacity(MAX_EVENTS), rets: Vec::new(), spin }
    }

    /// The dataplane.
    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// The fd to poll for frames.
    pub fn poll_fd(&self) -> Option<i32> {
        self.dp.poll_fd()
    }

    /// How long an app may sleep on its fd before it must call `run_io` for the dataplane's timers: `None` for no
    /// limit, zero when work is pending (frames to send, frames steered here).
    pub fn timeout(&self) -> Option<Duration> {
        if self.dp.has_pending_work() {
            return Some(Duration::ZERO);
        }
        // Instants subtract saturating: an overdue timer gives zero.
        Some(self.dp.poll_at()? - Instant::now())
    }

    /// The fd an app polls in its own event loop between `run_io`s (the NIC fd, or with software steering one
    /// fd that also wakes for frames other queues hand to this one).
    pub fn app_poll_fd(&self) -> io::Result<Option<i32>> {
        self.dp.app_poll_fd()
    }

    /// The events of the last `run_io`.
    pub fn events(&self) -> &[Event] {
        self.events.as_slice()
    }

    /// The return codes of the last `run_io`'s commands.
    pub fn rets(&self) -> &[CmdResult] {
        &self.rets
    }

    /// Executes `ncmds` commands (`command(i)` converts the i-th; an `Err` is its return code) and runs cycles
    /// until events are ready or `timeout_us` passes (0: one cycle, negative: no limit). Returns the number of
    /// events, at most `max_events`; `rets()` holds the commands' results.
    pub fn run_io<'c>(
        &mut self,
        ncmds: usize,
        command: impl Fn(usize) -> Result<Command<'c>, Ret>,
        max_events: usize,
        timeout_us: i64,
    ) -> usize {
        self.dp.app_awake();
        self.dp.begin_run_io();
        self.events.reset(max_events);
        self.rets.clear();
        self.rets.resize(ncmds, Ok(0));
        let mut now = Instant::now();
        let mut i = 0;
        while i < ncmds {
            // Convert a chunk on the stack; a command that fails conversion gets its code without reaching
            // the dataplane.
            let mut chunk: ArrayVec<Command<'c>, CHUNK> = ArrayVec::new();
            let mut index: ArrayVec<usize, CHUNK> = ArrayVec::new();
            while i < ncmds && !chunk.is_full() {
                match command(i) {
                    Ok(c) => {
                        chunk.push(c);
                        index.push(i);
                    }
                    Err(r) => self.rets[i] = Err(r),
                }
                i += 1;
            }
            let mut rets = [Ok(0); CHUNK];
            self.dp.submit(now, &chunk, &mut rets[..chunk.len()], &mut self.events);
            for (k, &j) in index.iter().enumerate() {
                self.rets[j] = rets[k];
            }
        }
        let deadline = (timeout_us >= 0).then(|| now + Duration::from_micros(timeout_us as u64));
        let spin_until = now + self.spin;
        loop {
            self.dp.cycle(now, &mut self.events);
            if !self.events.is_empty() || timeout_us == 0 {
                break;
            }
            now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if now < spin_until || self.dp.has_pending_work() {
                continue;
            }
            let nap = deadline.map_or(Duration::from_millis(100), |d| d - now);
            if let Err(e) = self.dp.idle_wait(now, nap) {
                log::warn!("idle wait on the queue failed: {e}");
            }
            now = Instant::now();
        }
        self.dp.app_may_sleep();
        self.events.len()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.dp.publish(Instant::now());
        // The statistics page goes with the process: leave the queue's traffic and steering in the log.
        let s = self.dp.counters();
        use dataplane::stats::Counter::*;
        log::info!(
            "queue {} closed: rx_packets={} tx_packets={} tcp_rst_sent={} steered_out={} steered_in={} \
             drop_steer_full={}",
            self.dp.queue_id(),
            s.get(RxPackets),
            s.get(TxPackets),
            s.get(TcpRstSent),
            s.get(SteeredOut),
            s.get(SteeredIn),
            s.get(DropSteerFull)
        );
        // Connections the app left open: normal for a server being stopped, and what a test that finds one
        // too many needs to see.
        if log::log_enabled!(log::Level::Info) {
            for line in self.dp.tcp_describe(Instant::now()) {
                log::info!("queue {}: tcp open at close: {line}", self.dp.queue_id());
            }
        }
    }
}

static LOGGING: Once = Once::new();

/// Starts logging once per process, filtered by `IX_LOG` (default `warn`).
pub fn init_logging() {
    LOGGING.call_once(|| {
        let env = env_logger::Env::new().filter_or("IX_LOG", "warn");
        let _ = env_logger::Builder::from_env(env).format_timestamp_micros().try_init();
    });
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records this thread's last error message.
pub fn set_last_error(msg: String) {
    log::debug!("{msg}");
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

/// This thread's last error message, or NULL.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
}

/// Sets the C `errno`.
pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid to write.
    unsafe { *libc::__errno_location() = value };
}
