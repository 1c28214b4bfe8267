//! The run-to-completion cycle of one core (paper §3, Fig. 1b; DESIGN.md §3).
//!
//! `run_io` is one cycle: (1) execute the app's batched commands, (2) run due timers, (3) take at most B frames
//! from the NIC and push each through the whole stack, producing event conditions, (4) post TX and reclaim
//! completions. The caller (libix) then runs the app on the events and comes back with the next commands.
//! Batching is adaptive: only what is already queued is batched; nothing waits to fill a batch.
use crate::api::{CmdResult, Command, Event, Events, Ret};
use crate::config::ChecksumPolicy;
use crate::mbuf::{Mbuf, MbufPool};
use crate::net::{Interface, Io};
use crate::nic::{Batch, NicQueue};
use crate::stats::{Counter, Stats, StatsPage};
use crate::steer::{QueueSteering, Steering};
use crate::time::{Duration, Instant};
use crate::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use std::io;
use std::sync::Arc;

/// Per-queue settings of a dataplane.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Our address and prefix.
    pub cidr: Ipv4Cidr,
    /// Next hop for off-link destinations.
    pub gateway: Option<Ipv4Address>,
    /// Batch bound B (1..=256).
    pub batch: usize,
    /// Partial-checksum policy.
    pub checksum: ChecksumPolicy,
    /// Queue index (its block in the statistics page).
    pub queue_id: u32,
}

impl DataplaneConfig {
    /// Defaults (B = 64, strict checksums, queue 0) for `cidr`.
    pub fn new(cidr: Ipv4Cidr) -> DataplaneConfig {
        DataplaneConfig { cidr, gateway: None, batch: 64, checksum: ChecksumPolicy::Strict, queue_id: 0 }
    }
}

/// Interval between copies of the counters into the shared statistics page.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(1);

/// One core's dataplane: a NIC queue, its mbuf pool and the stack, run to completion.
#[derive(Debug)]
pub struct Dataplane {
    // Field order matters: the NIC queue (an AF_XDP socket bound to the pool's memory) must drop before the pool.
    nic: Box<dyn NicQueue>,
    pool: MbufPool,
    iface: Interface,
    tx: Batch,
    rx: Batch,
    stats: Stats,
    lent: Vec<Option<Mbuf>>,
    lent_count: u32,
    batch: usize,
    queue_id: u32,
    page: Option<Arc<StatsPage>>,
    last_publish: Instant,
    /// Software steering between the port's queues (AF_XDP on veth), when on.
    steering: Option<QueueSteering>,
    /// The fd handed to an app that sleeps in its own event loop (`app_poll_fd`), with steering: NIC fd and
    /// inbox eventfd in one. Once it exists, the inbox is armed whenever the app holds control.
    app_poll: std::sync::OnceLock<crate::sys::PollSet>,
}

impl Dataplane {
    /// A dataplane over `nic`, whose frames come from `pool`.
    pub fn new(nic: Box<dyn NicQueue>, pool: MbufPool, cfg: &DataplaneConfig) -> Dataplane {
        let mac = EthernetAddress(nic.mac());
        let caps = nic.caps();
        let mut iface = Interface::new(mac, cfg.cidr, cfg.gateway, caps.mtu);
        iface.set_checksum_policy(cfg.checksum);
        let lent = (0..pool.capacity()).map(|_| None).collect();
        let mut stats = Stats::default();
        stats.set(Counter::PoolCapacity, pool.capacity() as u64);
        Dataplane {
            nic,
            pool,
            iface,
            tx: Batch::new(),
            rx: Batch::new(),
            stats,
            lent,
            lent_count: 0,
            batch: cfg.batch.clamp(1, crate::nic::MAX_BATCH),
            queue_id: cfg.queue_id,
            page: None,
            last_publish: Instant::default(),
            steering: None,
            app_poll: std::sync::OnceLock::new(),
        }
    }

    /// Shares neighbours with the port's other queues.
    pub fn set_neighbor_table(&mut self, table: Arc<crate::net::arp::NeighborTable>) {
        self.iface.set_neighbor_table(table);
    }

    /// Publishes this dataplane's counters in `page` (block `queue_id`).
    pub fn set_stats_page(&mut self, page: Arc<StatsPage>) {
        self.page = Some(page);
    }

    /// One cycle: `submit` then `cycle`. `rets[i]` gets the result of `cmds[i]`; events are appended to
    /// `events` within its limit. Returns the number of events appended.
    pub fn run_io(&mut self, now: Instant, cmds: &[Command<'_>], rets: &mut [CmdResult], events: &mut Events) -> usize {
        self.begin_run_io();
        let before = events.len();
        self.submit(now, cmds, rets, events);
        self.cycle(now, events);
        events.len() - before
    }

    /// Starts a `run_io`: the app is done with the previous one's events, so frames released while it could still
    /// read them (quarantined) are free again. `submit` and `cycle` callers call this once per `run_io`.
    pub fn begin_run_io(&mut self) {
        self.pool.end_quarantine();
    }

    /// Executes the app's commands in order; `rets[i]` gets the result of `cmds[i]`.
    pub fn submit(&mut self, now: Instant, cmds: &[Command<'_>], rets: &mut [CmdResult], events: &mut Events) {
        let Dataplane { pool, iface, tx, stats, lent, lent_count, .. } = self;
        let mut io = Io { pool, tx, stats, events, lent: &mut lent[..], lent_count, now };
        for (i, cmd) in cmds.iter().enumerate() {
            let ret = execute(iface, &mut io, cmd);
            match ret {
                Ok(_) => {}
                Err(Ret::BadHandle) => io.stats.inc(Counter::CmdBadHandle),
                Err(Ret::Again | Ret::NoMem) => io.stats.inc(Counter::CmdAgain),
                Err(_) => io.stats.inc(Counter::CmdInvalid),
            }
            if let Some(r) = rets.get_mut(i) {
                *r = ret;
            }
        }
        io.stats.add(Counter::Commands, cmds.len() as u64);
        iface.flush(&mut io);
    }

    /// Runs due timers, takes at most B frames (from the NIC and from the inbox of frames other queues steered
    /// here; no more than `events` has room for: the rest waits in the NIC ring and the inbox, as in IX), pushes
    /// each through the stack, then posts TX and reclaims completions.
    pub fn cycle(&mut self, now: Instant, events: &mut Events) {
        let before = events.len();
        let Dataplane { nic, pool, iface, tx, rx, stats, lent, lent_count, batch, steering, .. } = self;
        nic.maintain(pool);
        let mut io = Io { pool, tx, stats, events, lent: &mut lent[..], lent_count, now };
        iface.poll_timers(&mut io);
        let max = (*batch).min(io.events.room()).min(rx.capacity());
        // Frames other queues steered here get at most half the batch ahead of the NIC's and whatever the NIC
        // leaves, so a flood through another queue cannot starve this one's own traffic. (They were counted in
        // the receiving queue's rx_* counters.)
        let mut steered = steering.as_ref().map_or(0, |s| take_steered(s, &mut io, rx, max.div_ceil(2)));
        if max > steered {
            let first = rx.len();
            let n = nic.receive(io.pool, rx, max - steered);
            io.stats.record_batch(n);
            io.stats.add(Counter::RxPackets, n as u64);
            io.stats.add(Counter::RxBytes, rx[first..].iter().map(|m| m.len() as u64).sum());
            if let Some(s) = steering.as_ref().filter(|_| max > steered + n) {
                steered += take_steered(s, &mut io, rx, max - steered - n);
            }
        }
        io.stats.add(Counter::SteeredIn, steered as u64);
        for m in rx.drain(..) {
            iface.receive(&mut io, m);
        }
        iface.flush(&mut io);
        if io.events.deferred() > 0 {
            io.stats.inc(Counter::EventsDeferred);
        }
        if !io.tx.is_empty() {
            let queued = io.tx.len();
            let bytes: u64 = io.tx.iter().map(|m| m.len() as u64).sum();
            nic.transmit(io.pool, io.tx);
            let left: u64 = io.tx.iter().map(|m| m.len() as u64).sum();
            io.stats.add(Counter::TxPackets, (queued - io.tx.len()) as u64);
            io.stats.add(Counter::TxBytes, bytes - left);
            io.stats.add(Counter::TxRingFull, io.tx.len() as u64);
        }
        nic.maintain(io.pool);
        let produced = events.len() - before;
        self.stats.inc(Counter::Cycles);
        self.stats.add(Counter::Events, produced as u64);
        if now - self.last_publish >= PUBLISH_INTERVAL {
            self.publish(now);
        }
    }

    /// Copies counters and gauges into the statistics page now.
    pub fn publish(&mut self, now: Instant) {
        self.refresh_gauges();
        self.last_publish = now;
        if let Some(page) = &self.page {
            page.publish(self.queue_id, &self.stats);
        }
    }

    fn refresh_gauges(&mut self) {
        let n = self.nic.stats();
        let s = &mut self.stats;
        s.set(Counter::PoolAvailable, self.pool.available() as u64);
        let held = self.nic.frames_held();
        s.set(Counter::NicFramesHeld, held as u64);
        s.set(Counter::MbufsInStack, (self.pool.capacity() - self.pool.available()).saturating_sub(held) as u64);
        s.set(Counter::MbufsLent, self.lent_count as u64);
        s.set(Counter::NicRxDropped, n.rx_dropped);
        s.set(Counter::NicRxErrors, n.rx_errors);
        s.set(Counter::NicTxErrors, n.tx_errors);
        s.set(Counter::NicFillStarved, n.fill_starved);
        let (half_open, accept_queue) = self.iface.tcp_listener_queues();
        s.set(Counter::TcpHalfOpen, half_open);
        s.set(Counter::TcpAcceptQueue, accept_queue);
    }

    /// The counters as of now (gauges as of the last publish).
    pub fn counters(&self) -> &Stats {
        &self.stats
    }

    /// A snapshot of the counters with fresh gauges.
    pub fn stats(&mut self) -> Stats {
        self.refresh_gauges();
        self.stats.clone()
    }

    /// Largest UDP payload one `UdpSend` carries (one frame: the MTU less the IP and UDP headers; the dataplane
    /// does not fragment).
    pub fn max_udp_payload(&self) -> usize {
        self.iface.max_udp_payload()
    }

    /// The lent buffer's bytes, if `buf` is currently lent (safe access for Rust callers).
    pub fn lent_data(&self, buf: &crate::api::LentBuf) -> Option<&[u8]> {
        let m = self.lent.get(buf.index as usize)?.as_ref()?;
        let data = self.pool.data(m);
        (data.as_ptr() == buf.ptr && data.len() == buf.len as usize).then_some(data)
    }

    /// Whether the next cycle has work without waiting: frames left to transmit, or TCP output a full TX batch
    /// held back.
    pub fn has_pending_tx(&self) -> bool {
        !self.tx.is_empty() || self.iface.tcp_tx_starved()
    }

    /// When the stack's timers next need a cycle.
    pub fn poll_at(&self) -> Option<Instant> {
        self.iface.poll_at()
    }

    /// The fd to sleep on when idle (readable when frames wait).
    pub fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        self.nic.poll_fd()
    }

    /// The fd an app polls to sleep in its own event loop between `run_io`s: readable when the NIC has frames
    /// or, with software steering, when another queue handed frames to this one (then it is one fd watching
    /// both, and from the first call on, [`app_may_sleep`](Self::app_may_sleep) arms the inbox). `None` when
    /// the queue has nothing to poll.
    pub fn app_poll_fd(&self) -> io::Result<Option<std::os::fd::RawFd>> {
        let Some(s) = &self.steering else { return Ok(self.nic.poll_fd()) };
        if let Some(set) = self.app_poll.get() {
            return Ok(Some(set.raw_fd()));
        }
        let fds: Vec<_> = self.nic.poll_fd().into_iter().chain(s.steering().wake_fd(s.queue())).collect();
        let set = crate::sys::PollSet::new(&fds)?;
        Ok(Some(self.app_poll.get_or_init(|| set).raw_fd()))
    }

    /// Control goes back to an app that may sleep on [`app_poll_fd`](Self::app_poll_fd): from now on frames
    /// steered here make that fd readable (at once if some already wait). Nothing unless the app asked for it.
    pub fn app_may_sleep(&self) {
        if let Some(s) = self.app_polled_inbox() {
            if !s.steering().sleep_begin(s.queue()) {
                s.steering().signal_self(s.queue());
            }
        }
    }

    /// The app called back in (`run_io`): steered frames no longer signal the fd.
    pub fn app_awake(&self) {
        if let Some(s) = self.app_polled_inbox() {
            s.steering().sleep_end(s.queue());
        }
    }

    /// This queue's steering, once the app polls [`app_poll_fd`](Self::app_poll_fd) (which then watches its inbox).
    fn app_polled_inbox(&self) -> Option<&QueueSteering> {
        self.app_poll.get().and(self.steering.as_ref())
    }

    /// Sleeps until the NIC has frames or `timeout` passes (bounded by the next timer). Returns whether frames
    /// are ready. Queues without an fd return at once.
    pub fn idle_wait(&mut self, now: Instant, timeout: Duration) -> io::Result<bool> {
        let mut timeout = timeout;
        if let Some(at) = self.poll_at() {
            timeout = timeout.min(at - now);
        }
        let Some(fd) = self.nic.poll_fd() else {
            return Ok(false);
        };
        let Some(s) = self.steering.clone() else {
            self.stats.inc(Counter::IdleSleeps);
            // Going to sleep: publish now, so what ixctl shows is never behind an idle dataplane.
            self.publish(now);
            return crate::sys::poll_readable(fd, timeout);
        };
        let (steering, queue) = (s.steering(), s.queue());
        if !steering.sleep_begin(queue) {
            return Ok(true);
        }
        self.stats.inc(Counter::IdleSleeps);
        self.publish(now);
        let wake = steering.wake_fd(queue).unwrap_or(-1);
        let ready = crate::sys::poll_any_readable(&[fd, wake], timeout);
        steering.sleep_end(queue);
        ready
    }

    /// Whether the next cycle has work without waiting: [`has_pending_tx`](Dataplane::has_pending_tx), or frames
    /// other queues steered to this one.
    pub fn has_pending_work(&self) -> bool {
        self.has_pending_tx() || self.steering.as_ref().is_some_and(|s| s.steering().has_frames(s.queue()))
    }

    /// Turns on software steering between the port's queues (see [`crate::steer`]): `TcpConnect` picks ports
    /// this queue owns, TCP frames for ports other queues own and UDP datagrams for ports only another queue
    /// bound go to their inboxes, and each cycle also runs the frames other queues sent here. For backends whose
    /// receive hash we cannot predict (AF_XDP on veth).
    pub fn set_steering(&mut self, steering: Arc<Steering>) {
        let qs = QueueSteering::new(steering, self.queue_id);
        self.iface.set_steering(qs.clone());
        self.steering = Some(qs);
    }

    /// Makes `TcpConnect` choose local ports whose replies the NIC steers to this queue (paper §4.4).
    pub fn set_tcp_port_filter(&mut self, filter: crate::tcp::stack::PortFilter) {
        self.iface.tcp_port_filter(filter);
    }

    /// Keepalive timing for every TCP connection of this core (defaults: 2 h, 75 s, 9 probes).
    pub fn set_tcp_keepalive_timing(&mut self, idle: Duration, interval: Duration, count: u8) {
        self.iface.tcp_keepalive_timing(idle, interval, count);
    }

    /// One line per live TCP connection, for diagnostics and tests (timers shown relative to `now`).
    pub fn tcp_describe(&self, now: Instant) -> Vec<String> {
        self.iface.tcp_describe(now)
    }

    /// The queue's index in its port.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Our MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.iface.mac()
    }

    /// The pool (for accounting in tests and tools).
    pub fn pool(&self) -> &MbufPool {
        &self.pool
    }

    /// Frames currently outside the free list: held by the NIC, lent to the app, parked or queued.
    pub fn frames_in_use(&self) -> u32 {
        self.pool.capacity() - self.pool.available()
    }

    /// Frames the NIC holds (RX buffers posted, TX in flight).
    pub fn frames_held_by_nic(&self) -> u32 {
        self.nic.frames_held()
    }

    /// Releases everything (lent buffers, parked and queued frames, the NIC's buffers) and returns the pool, so
    /// a test can check that every frame came home.
    pub fn shutdown(mut self) -> MbufPool {
        self.release_all();
        self.pool.end_quarantine();
        // Drop the NIC queue (closing an AF_XDP socket) before handing its memory back.
        let Dataplane { nic, pool, .. } = self;
        drop(nic);
        pool
    }

    fn release_all(&mut self) {
        for slot in self.lent.iter_mut() {
            if let Some(m) = slot.take() {
                self.pool.free(m);
            }
        }
        self.lent_count = 0;
        for m in self.tx.drain(..) {
            self.pool.free(m);
        }
        let mut events = Events::with_capacity(0);
        let mut io = Io {
            pool: &mut self.pool,
            tx: &mut self.tx,
            stats: &mut self.stats,
            events: &mut events,
            lent: &mut self.lent[..],
            lent_count: &mut self.lent_count,
            now: Instant::default(),
        };
        self.iface.release(&mut io);
        for m in self.tx.drain(..) {
            self.pool.free(m);
        }
        self.nic.release(&mut self.pool);
    }
}

/// Moves up to `max` frames from this queue's inbox into `rx` (copies into fresh mbufs), stopping early when the
/// pool runs dry or `rx` is full (the rest waits). Returns how many.
fn take_steered(s: &QueueSteering, io: &mut Io<'_>, rx: &mut Batch, max: usize) -> usize {
    let mut taken = 0;
    while taken < max && io.pool.available() > 0 && !rx.is_full() {
        match s.steering().receive(s.queue(), |bytes| io.pool.alloc_from(bytes)) {
            Some(Some(m)) => {
                rx.push(m);
                taken += 1;
            }
            // Cannot happen (a free mbuf was there and the sender checked the length); counted all the same.
            Some(None) => io.stats.inc(Counter::DropNoMbuf),
            None => break,
        }
    }
    taken
}

fn execute(iface: &mut Interface, io: &mut Io<'_>, cmd: &Command<'_>) -> CmdResult {
    let unit = |r: Ret| if r == Ret::Ok { Ok(0) } else { Err(r) };
    match *cmd {
        Command::UdpBind { port } => unit(iface.udp_bind(port)),
        Command::UdpUnbind { port } => unit(iface.udp_unbind(port)),
        Command::UdpSend { src_port, dst, payload, cookie } => {
            if io.events.room() == 0 {
                return Err(Ret::Again);
            }
            let ret = iface.udp_send(io, src_port, dst, payload);
            if ret == Ret::Ok {
                io.events.push(Event::UdpSent { cookie });
            }
            unit(ret)
        }
        Command::RecvDone { data } => {
            let Some((index, _)) = io.pool.index_of_ptr(data) else { return Err(Ret::BadHandle) };
            match io.lent.get_mut(index as usize).and_then(Option::take) {
                Some(m) => {
                    *io.lent_count -= 1;
                    io.pool.free(m);
                    Ok(0)
                }
                None => Err(Ret::BadHandle),
            }
        }
        Command::TcpListen { port, backlog } => unit(iface.tcp_listen(port, backlog)),
        Command::TcpUnlisten { port } => unit(iface.tcp_unlisten(port)),
        Command::TcpConnect { dst, cookie } => iface.tcp_connect(io, dst, cookie),
        Command::TcpAccept { handle, cookie } => unit(iface.tcp_accept(io, handle, cookie)),
        Command::TcpReject { handle } => unit(iface.tcp_reject(io, handle)),
        Command::TcpSendv { handle, bufs } => iface.tcp_sendv(io, handle, bufs),
        Command::TcpRecvDone { handle, len } => unit(iface.tcp_recv_done(io, handle, len)),
        Command::TcpClose { handle } => unit(iface.tcp_close(io, handle)),
        Command::TcpAbort { handle } => unit(iface.tcp_abort(io, handle)),
        Command::TcpKeepalive { handle, enable } => unit(iface.tcp_keepalive(io, handle, enable)),
    }
}
