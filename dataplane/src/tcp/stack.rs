//! The TCP stack of one core: connection table with generation-checked handles, listeners with a bounded SYN
//! backlog and SYN cookies, demultiplexing, segment emission, timers, and the per-cycle flush that sends one ACK
//! and reports one `Sent` per connection per cycle (paper §4.2: coalescing within the batch).
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use arrayvec::ArrayVec;

use super::appbuf::AppBuf;
use super::conn::{Conn, Cx, DeadReason, Emit, InputResult, Segment, State, TcpConfig, TimerKind};
use crate::api::{Endpoint, Event, Ret};
use crate::config::ChecksumPolicy;
use crate::mbuf::Mbuf;
use crate::net::link::Link;
use crate::net::{Io, ETH_LEN};
use crate::stats::Counter;
use crate::time::{Duration, Instant};
use crate::timer::{TimerId, TimerWheel};
use crate::wire::{checksum, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr};

const IP_LEN: usize = 20;
/// Most timers (about four per connection).
const TIMER_CAPACITY: usize = 1 << 20;

/// A connection step's output context: the cycle's time, TX room and pool, and the stack's segment list and
/// tunables. A macro rather than a method because the connection being stepped is borrowed from `self.slots`
/// meanwhile (the expansion borrows only the fields it names).
macro_rules! cx {
    ($stack:expr, $io:expr) => {
        Cx {
            now: $io.now,
            tx_room: $io.tx.remaining_capacity(),
            pool: $io.pool,
            out: &mut $stack.out,
            cfg: &$stack.cfg,
        }
    };
}
/// First and last ephemeral port (IANA, RFC 6335).
const EPHEMERAL: (u16, u16) = crate::steer::EPHEMERAL_PORTS;

/// A connection handle: a slot index and the slot's generation, so a stale handle never names a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

impl Handle {
    fn new(slot: u32, generation: u32) -> Handle {
        Handle((generation as u64) << 32 | slot as u64)
    }
    fn slot(self) -> u32 {
        self.0 as u32
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    remote: u32,
    remote_port: u16,
    local_port: u16,
}

/// One 8-byte write: the flow table keeps std's keyed SipHash (peers choose the addresses and ports, so the hash
/// must resist collisions they could craft), fed one word instead of three field writes.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from(self.remote) << 32 | u64::from(self.remote_port) << 16 | u64::from(self.local_port));
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

#[derive(Debug, Clone, Copy)]
struct Listener {
    backlog: u32,
    /// Connections in SYN_RECEIVED.
    half_open: u32,
    /// Established connections the app has been told about (knock) but not accepted.
    waiting: u32,
}

#[derive(Debug, Clone, Copy)]
struct TimerTag {
    slot: u32,
    generation: u32,
    kind: TimerKind,
}

/// The per-core TCP stack.
pub struct TcpStack {
    cfg: TcpConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    flows: HashMap<FlowKey, u32>,
    listeners: HashMap<u16, Listener>,
    timers: TimerWheel<TimerTag>,
    dirty: Vec<u32>,
    /// Connections whose output stopped because the cycle's TX batch was full: flushed again next cycle.
    tx_starved: Vec<u32>,
    out: ArrayVec<Emit, 64>,
    secret: std::collections::hash_map::RandomState,
    next_port: u16,
    live: u32,
    time_wait: u32,
    our_mss: u16,
    fired: Vec<(TimerId, TimerTag)>,
    port_filter: Option<PortFilter>,
    /// Software steering: which ephemeral ports are this queue's, and the other queues' inboxes.
    steering: Option<crate::steer::QueueSteering>,
}

/// Says whether a local port would bring a connection's replies to this core's queue (paper §4.4: connect
/// picks an ephemeral port whose flow hash lands on the caller's queue). Arguments: remote address and port,
/// local port.
pub type PortFilter = Box<dyn Fn(crate::wire::Ipv4Address, u16, u16) -> bool + Send>;

impl std::fmt::Debug for TcpStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStack")
            .field("connections", &self.live)
            .field("time_wait", &self.time_wait)
            .field("listeners", &self.listeners.len())
            .field("timers", &self.timers.len())
            .field("port_filter", &self.port_filter.is_some())
            .field("steering", &self.steering.as_ref().map(|s| s.queue()))
            .finish()
    }
}

fn kind_index(k: TimerKind) -> usize {
    match k {
        TimerKind::Retransmit => 0,
        TimerKind::DelayedAck => 1,
        TimerKind::Linger => 2,
        TimerKind::Keepalive => 3,
        TimerKind::LossProbe => 4,
    }
}

impl TcpStack {
    /// A stack whose segments fit an L3 `mtu`.
    pub fn new(cfg: TcpConfig, mtu: usize) -> TcpStack {
        TcpStack {
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            flows: HashMap::new(),
            listeners: HashMap::new(),
            timers: TimerWheel::with_capacity(TIMER_CAPACITY),
            dirty: Vec::with_capacity(1024),
            tx_starved: Vec::new(),
            out: ArrayVec::new(),
            secret: std::collections::hash_map::RandomState::new(),
            next_port: EPHEMERAL.0,
            live: 0,
            time_wait: 0,
            // MSS = MTU - IP and TCP headers (RFC 9293 §3.7.1); timestamps come out of it per segment.
            our_mss: (mtu - IP_LEN - 20).min(65535) as u16,
            fired: Vec::with_capacity(256),
            port_filter: None,
            steering: None,
        }
    }

    /// Open connections: every state but CLOSED and TIME_WAIT.
    pub fn connections(&self) -> u32 {
        self.live - self.time_wait
    }

    /// Over all listeners: connections half-open (SYN_RECEIVED) and established but not accepted yet.
    pub fn listener_queues(&self) -> (u64, u64) {
        let sum = |(h, w): (u64, u64), l: &Listener| (h + u64::from(l.half_open), w + u64::from(l.waiting));
        self.listeners.values().fold((0, 0), sum)
    }

    /// Connections lingering in TIME_WAIT (the app is done with them; they hold no mbufs).
    pub fn time_wait(&self) -> u32 {
        self.time_wait
    }

    /// One line per live connection, for diagnostics.
    pub fn describe(&self, now: Instant) -> Vec<String> {
        self.slots.iter().filter_map(|s| s.conn.as_ref()).map(|c| c.describe(now)).collect()
    }

    /// Bytes of connection state per connection (the struct, not the lent mbufs).
    pub fn conn_size() -> usize {
        std::mem::size_of::<Conn>()
    }

    fn conn(&mut self, h: Handle) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(h.slot() as usize)?;
        if slot.generation != h.generation() {
            return None;
        }
        slot.conn.as_mut().filter(|c| !c.released)
    }

    fn handle_of(&self, slot: u32) -> Handle {
        Handle::new(slot, self.slots[slot as usize].generation)
    }

    fn alloc_slot(&mut self, conn: Conn) -> u32 {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.conn = Some(conn);
            return i;
        }
        self.slots.push(Slot { generation: 1, conn: Some(conn) });
        (self.slots.len() - 1) as u32
    }

    /// Frees a connection: its mbufs, timers, flow entry and handle (the generation moves on).
    fn free_slot(&mut self, slot: u32, io: &mut Io<'_>) {
        let Some(s) = self.slots.get_mut(slot as usize) else { return };
        let Some(mut conn) = s.conn.take() else { return };
        s.generation = s.generation.wrapping_add(1).max(1);
        if conn.time_wait_counted {
            self.time_wait -= 1;
        }
        conn.release(io.pool);
        for id in conn.timers.iter().flatten() {
            self.timers.cancel(*id);
        }
        // Still the listener's (not accepted): half-open until it came up, then waiting for accept. Not by
        // `state`: a reset in SYN_RECEIVED leaves it CLOSED, and counting that as "waiting" kept the backlog full
        // of dead half-open connections after a SYN flood (every later client got a cookie).
        if let Some(l) = conn.listener.and_then(|port| self.listeners.get_mut(&port)) {
            if conn.up {
                l.waiting = l.waiting.saturating_sub(1);
            } else {
                l.half_open = l.half_open.saturating_sub(1);
            }
        }
        self.flows.remove(&FlowKey {
            remote: conn.remote.addr.to_u32(),
            remote_port: conn.remote.port,
            local_port: conn.local_port,
        });
        self.free.push(slot);
        self.live -= 1;
        io.stats.inc(Counter::TcpClosed);
    }

    fn isn(&self, key: &FlowKey, now: Instant) -> u32 {
        // RFC 6528: a 4 µs clock plus a keyed hash of the connection's identity.
        let mut h = self.secret.build_hasher();
        h.write_u32(key.remote);
        h.write_u16(key.remote_port);
        h.write_u16(key.local_port);
        ((now.total_micros() / 4) as u32).wrapping_add(h.finish() as u32)
    }

    fn cookie_hash(&self, key: &FlowKey, peer_isn: u32, t: u32) -> u32 {
        let mut h = self.secret.build_hasher();
        h.write_u32(0x5eed_c00c);
        h.write_u32(key.remote);
        h.write_u16(key.remote_port);
        h.write_u16(key.local_port);
        h.write_u32(peer_isn);
        h.write_u32(t);
        (h.finish() as u32) & 0x00ff_ffff
    }

    // ------------------------------------------------------------------------------------------ commands

    /// `listen`: accept connections on `port`, at most `backlog` pending (half-open beyond that use SYN
    /// cookies; established-but-unaccepted beyond that are refused).
    pub fn listen(&mut self, port: u16, backlog: u32) -> Ret {
        if port == 0 {
            return Ret::Invalid;
        }
        if self.listeners.contains_key(&port) {
            return Ret::AddrInUse;
        }
        self.listeners.insert(port, Listener { backlog: backlog.clamp(1, 65535), half_open: 0, waiting: 0 });
        Ret::Ok
    }

    /// Stops listening on `port` (connections already made stay).
    pub fn unlisten(&mut self, port: u16) -> Ret {
        if self.listeners.remove(&port).is_some() {
            Ret::Ok
        } else {
            Ret::BadHandle
        }
    }

    /// `connect`: returns the new connection's handle; `TcpConnected` follows.
    pub fn connect(&mut self, link: &mut Link, io: &mut Io<'_>, dst: Endpoint, cookie: u64) -> Result<Handle, Ret> {
        if dst.port == 0 || dst.addr.is_unspecified() || dst.addr.is_multicast() || link.is_our_broadcast(dst.addr) {
            return Err(Ret::Invalid);
        }
        if link.next_hop(dst.addr).is_none() {
            return Err(Ret::Unreachable);
        }
        let Some(local_port) = self.pick_port(dst) else { return Err(Ret::Again) };
        let key = FlowKey { remote: dst.addr.to_u32(), remote_port: dst.port, local_port };
        let iss = self.isn(&key, io.now);
        let mut cx = cx!(self, io);
        let mut conn = Conn::connect(local_port, dst, iss, self.our_mss, &mut cx);
        conn.cookie = cookie;
        let slot = self.alloc_slot(conn);
        self.flows.insert(key, slot);
        self.emit_pending(slot, link, io);
        self.arm(slot, TimerKind::Retransmit, io.now);
        io.stats.inc(Counter::TcpActiveOpens);
        Ok(self.handle_of(slot))
    }

    /// Sets the filter `connect` uses to pick ports whose replies reach this queue.
    pub fn set_port_filter(&mut self, filter: PortFilter) {
        self.port_filter = Some(filter);
    }

    /// Turns on software steering: `connect` picks only ports this queue owns, and segments for ports another
    /// queue owns that match nothing here go to that queue's inbox.
    pub fn set_steering(&mut self, steering: crate::steer::QueueSteering) {
        self.steering = Some(steering);
    }

    fn pick_port(&mut self, dst: Endpoint) -> Option<u16> {
        let span = (EPHEMERAL.1 - EPHEMERAL.0) as u32 + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p == EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            let key = FlowKey { remote: dst.addr.to_u32(), remote_port: dst.port, local_port: p };
            if self.flows.contains_key(&key) || self.listeners.contains_key(&p) {
                continue;
            }
            if self.port_filter.as_ref().is_some_and(|f| !f(dst.addr, dst.port, p)) {
                continue;
            }
            if self.steering.as_ref().is_some_and(|s| !s.owns(p)) {
                continue;
            }
            return Some(p);
        }
        None
    }

    /// `accept`: the app takes a knocked connection and names its cookie; data that arrived meanwhile is
    /// reported now.
    pub fn accept(&mut self, io: &mut Io<'_>, h: Handle, cookie: u64) -> Ret {
        let Some(conn) = self.conn(h) else { return Ret::BadHandle };
        if conn.accepted || conn.listener.is_none() || conn.state == State::SynReceived {
            return Ret::BadHandle;
        }
        if io.events.room() < 2 {
            return Ret::Again;
        }
        conn.accepted = true;
        conn.cookie = cookie;
        let port = conn.listener.take();
        let mut owed = Vec::new();
        conn.take_undelivered(io.pool, &mut owed);
        let eof = std::mem::take(&mut conn.eof_pending);
        for (ptr, len) in owed {
            push_event(io, Event::TcpRecv { cookie, handle: h.0, data: ptr, len });
        }
        if eof {
            push_event(io, Event::TcpEof { cookie, handle: h.0 });
        }
        if let Some(l) = port.and_then(|p| self.listeners.get_mut(&p)) {
            l.waiting = l.waiting.saturating_sub(1);
        }
        Ret::Ok
    }

    /// `reject`: refuse a knocked connection with a RST.
    pub fn reject(&mut self, link: &mut Link, io: &mut Io<'_>, h: Handle) -> Ret {
        self.abort(link, io, h)
    }

    /// `sendv`: returns the bytes the window took (possibly 0: wait for `TcpSent`).
    pub fn sendv(&mut self, link: &mut Link, io: &mut Io<'_>, h: Handle, bufs: &[AppBuf]) -> Result<u64, Ret> {
        let cfg = self.cfg;
        let Some(conn) = self.conn(h) else { return Err(Ret::BadHandle) };
        if !matches!(conn.state, State::Established | State::CloseWait) || conn.listener.is_some() {
            return Err(if conn.state == State::SynSent { Ret::Again } else { Ret::NotConnected });
        }
        let taken = conn.sendv(bufs, &cfg);
        let slot = h.slot();
        self.run_output(slot, link, io);
        Ok(taken as u64)
    }

    /// `recv_done`: the app gives back `len` bytes of received data; the window reopens.
    pub fn recv_done(&mut self, io: &mut Io<'_>, h: Handle, len: u64) -> Ret {
        let Some(conn) = self.conn(h) else { return Ret::BadHandle };
        if len > u32::MAX as u64 || !conn.recv_done(len as u32, io.pool) {
            return Ret::Invalid;
        }
        if conn.ack_now && !conn.dirty {
            conn.dirty = true;
            self.dirty.push(h.slot());
        }
        Ret::Ok
    }

    /// Turns keepalive probing on or off for a connection (SO_KEEPALIVE).
    pub fn set_keepalive(&mut self, io: &mut Io<'_>, h: Handle, on: bool) -> Ret {
        let Some(conn) = self.conn(h) else { return Ret::BadHandle };
        conn.keepalive = on;
        let slot = h.slot();
        if on {
            self.arm(slot, TimerKind::Keepalive, io.now);
        } else {
            self.cancel(slot, TimerKind::Keepalive);
        }
        Ret::Ok
    }

    /// Sets the keepalive timing for every connection: idle time, probe interval, probes.
    pub fn set_keepalive_timing(&mut self, idle: Duration, interval: Duration, count: u8) {
        self.cfg.keepalive = (idle, interval, count);
    }

    /// `close`: FIN after the data; the handle stays valid until `TcpDead`.
    pub fn close(&mut self, link: &mut Link, io: &mut Io<'_>, h: Handle) -> Ret {
        let Some(conn) = self.conn(h) else { return Ret::BadHandle };
        if conn.state == State::SynSent {
            // Nothing to say to the peer yet.
            let slot = h.slot();
            self.report_dead(slot, DeadReason::Closed, io);
            self.free_slot(slot, io);
            return Ret::Ok;
        }
        if !conn.close() {
            return Ret::Invalid;
        }
        self.run_output(h.slot(), link, io);
        Ret::Ok
    }

    /// `abort`: RST now; the handle is invalid at once and no more events come.
    pub fn abort(&mut self, link: &mut Link, io: &mut Io<'_>, h: Handle) -> Ret {
        let Some(conn) = self.conn(h) else { return Ret::BadHandle };
        let (remote, local, seq, ack) = (conn.remote, conn.local_port, conn.rst_seq(), conn.seqs().2);
        let synced = conn.state != State::SynSent;
        if synced {
            self.emit_rst(link, io, local, remote, seq, Some(ack));
        }
        self.free_slot(h.slot(), io);
        io.stats.inc(Counter::TcpAborts);
        Ret::Ok
    }

    // ------------------------------------------------------------------------------------------ input

    /// Consumes a TCP segment (the whole frame in `m`; IPv4 header `hlen` bytes, packet `total` bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn input(
        &mut self,
        link: &mut Link,
        io: &mut Io<'_>,
        mut m: Mbuf,
        ip: &Ipv4Repr,
        hlen: usize,
        total: usize,
        policy: ChecksumPolicy,
    ) {
        let parsed = {
            let l4 = &io.pool.data(&m)[ETH_LEN + hlen..ETH_LEN + total];
            let packet = match TcpPacket::new_checked(l4) {
                Ok(p) => p,
                Err(_) => return io.drop_frame(m, Counter::DropTcpMalformed),
            };
            if !packet.verify_checksum(ip.src_addr, ip.dst_addr) {
                let partial = checksum::is_partial(
                    packet.checksum(),
                    &ip.src_addr,
                    &ip.dst_addr,
                    IpProtocol::Tcp,
                    l4.len() as u32,
                );
                if !partial {
                    return io.drop_frame(m, Counter::DropTcpChecksum);
                }
                if policy == ChecksumPolicy::Strict {
                    return io.drop_frame(m, Counter::DropChecksumPartial);
                }
            }
            match TcpRepr::parse(&packet, ip.src_addr, ip.dst_addr, false) {
                Ok(r) => (
                    r.src_port,
                    r.dst_port,
                    Segment {
                        seq: r.seq,
                        ack: r.ack,
                        flags: r.flags,
                        window: r.window_len,
                        mss: r.max_seg_size,
                        wscale: r.window_scale,
                        timestamps: r.timestamps,
                        sack_permitted: r.sack_permitted,
                        sack: r.sack_ranges,
                        len: r.payload.len() as u32,
                    },
                    packet.header_len() as usize,
                ),
                Err(_) => return io.drop_frame(m, Counter::DropTcpMalformed),
            }
        };
        let (src_port, dst_port, seg, thl) = parsed;
        if src_port == 0 || dst_port == 0 || ip.dst_addr != link.addr() {
            return io.drop_frame(m, Counter::DropTcpMalformed);
        }
        let key = FlowKey { remote: ip.src_addr.to_u32(), remote_port: src_port, local_port: dst_port };
        let flow = self.flows.get(&key).copied();
        if flow.is_none() && !self.listeners.contains_key(&dst_port) {
            if let Some(owner) = self.steering.as_ref().and_then(|s| s.foreign_owner(dst_port)) {
                return self.steer_to(owner, io, m);
            }
        }
        io.stats.inc(Counter::TcpSegmentsIn);
        let payload = if seg.len > 0 {
            if m.adjust(ETH_LEN + hlen + thl).and_then(|_| m.trim(seg.len as usize)).is_err() {
                return io.drop_frame(m, Counter::DropTcpMalformed);
            }
            Some(m)
        } else {
            io.pool.free(m);
            None
        };
        let remote = Endpoint { addr: ip.src_addr, port: src_port };
        if let Some(slot) = flow {
            return self.input_conn(slot, &seg, payload, link, io);
        }
        if let Some(m) = payload {
            io.pool.free(m);
        }
        self.input_no_conn(key, remote, &seg, link, io);
    }

    /// Hands a segment for a port `owner` owns to its inbox (the whole frame, unchanged: the owner parses and
    /// checks it again as if its NIC had received it).
    fn steer_to(&mut self, owner: u32, io: &mut Io<'_>, m: Mbuf) {
        let Some(steering) = &self.steering else { return io.pool.free(m) };
        match steering.steering().send(owner, io.pool.data(&m)) {
            Ok(()) => io.stats.inc(Counter::SteeredOut),
            Err(_) => io.stats.inc(Counter::DropSteerFull),
        }
        io.pool.free(m);
    }

    fn input_no_conn(&mut self, key: FlowKey, remote: Endpoint, seg: &Segment, link: &mut Link, io: &mut Io<'_>) {
        let syn = seg.flags.contains(TcpFlags::SYN);
        let rst = seg.flags.contains(TcpFlags::RST);
        if rst {
            return;
        }
        let listener = self.listeners.get(&key.local_port).copied();
        if let (Some(l), true, None) = (listener, syn, seg.ack) {
            return self.passive_open(key, remote, seg, l, link, io);
        }
        if let (Some(_), false, Some(ack)) = (listener, syn, seg.ack) {
            if let Some(mss) = self.check_cookie(&key, seg.seq.wrapping_sub(1), ack.wrapping_sub(1), io.now) {
                return self.cookie_open(key, remote, seg, mss, link, io);
            }
        }
        // RFC 9293 §3.10.7.1: a segment for no connection gets a RST.
        io.stats.inc(Counter::TcpRstSent);
        match seg.ack {
            Some(ack) => self.emit_rst(link, io, key.local_port, remote, ack, None),
            None => self.emit_rst(link, io, key.local_port, remote, 0, Some(seg.seq.wrapping_add(seg.seq_len()))),
        }
    }

    fn passive_open(
        &mut self,
        key: FlowKey,
        remote: Endpoint,
        seg: &Segment,
        l: Listener,
        link: &mut Link,
        io: &mut Io<'_>,
    ) {
        if l.waiting >= l.backlog {
            // The app is not accepting: drop the SYN, the client retries (Linux does the same).
            return io.stats.inc(Counter::TcpBacklogDrops);
        }
        if l.half_open + l.waiting >= l.backlog {
            // SYN flood: answer statelessly with a cookie (RFC 4987 §3.6).
            io.stats.inc(Counter::TcpSynCookiesSent);
            let mss = seg.mss.unwrap_or(536).min(self.our_mss);
            let idx = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
            let t = cookie_time(io.now);
            let cookie = (t & 0x1f) << 27 | idx << 24 | self.cookie_hash(&key, seg.seq, t);
            let e = Emit {
                seq: cookie,
                flags: TcpFlags::SYN,
                ack: Some(seg.seq.wrapping_add(1)),
                window: self.cfg.rcv_buf.min(65535) as u16,
                offset: 0,
                len: 0,
                syn_opts: Some((MSS_TABLE[idx as usize], None)),
                timestamps: None,
                sack_permitted: false,
                sack: [None; 3],
                retransmit: false,
            };
            return self.emit_segment(link, io, key.local_port, remote, &e, None);
        }
        let iss = self.isn(&key, io.now);
        let mut cx = cx!(self, io);
        let mut conn = Conn::accept_syn(key.local_port, remote, iss, self.our_mss, seg, &mut cx);
        conn.listener = Some(key.local_port);
        let slot = self.alloc_slot(conn);
        self.flows.insert(key, slot);
        if let Some(l) = self.listeners.get_mut(&key.local_port) {
            l.half_open += 1;
        }
        self.emit_pending(slot, link, io);
        self.arm(slot, TimerKind::Retransmit, io.now);
        io.stats.inc(Counter::TcpPassiveOpens);
    }

    fn check_cookie(&self, key: &FlowKey, peer_isn: u32, cookie: u32, now: Instant) -> Option<u16> {
        let t_now = cookie_time(now);
        let t5 = cookie >> 27;
        let idx = (cookie >> 24) & 0x7;
        // Valid for the current and the previous 64-second period.
        let t = [t_now, t_now.wrapping_sub(1)].into_iter().find(|t| t & 0x1f == t5)?;
        (self.cookie_hash(key, peer_isn, t) == cookie & 0x00ff_ffff).then(|| MSS_TABLE[idx as usize])
    }

    fn cookie_open(
        &mut self,
        key: FlowKey,
        remote: Endpoint,
        seg: &Segment,
        mss: u16,
        link: &mut Link,
        io: &mut Io<'_>,
    ) {
        let Some(l) = self.listeners.get_mut(&key.local_port) else { return };
        if l.waiting >= l.backlog {
            return io.stats.inc(Counter::TcpBacklogDrops);
        }
        l.waiting += 1;
        let mut cx = cx!(self, io);
        let mut conn = Conn::from_cookie(key.local_port, remote, seg, mss, &mut cx);
        conn.listener = Some(key.local_port);
        conn.up = true;
        let slot = self.alloc_slot(conn);
        self.flows.insert(key, slot);
        io.stats.inc(Counter::TcpSynCookiesValid);
        io.stats.inc(Counter::TcpPassiveOpens);
        let h = self.handle_of(slot);
        push_event(io, Event::TcpKnock { handle: h.0, remote, local_port: key.local_port });
        let _ = link;
    }

    fn input_conn(&mut self, slot: u32, seg: &Segment, payload: Option<Mbuf>, link: &mut Link, io: &mut Io<'_>) {
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else {
            if let Some(m) = payload {
                io.pool.free(m);
            }
            return;
        };
        let was_syn_received = conn.state == State::SynReceived;
        let mut cx = cx!(self, io);
        let res = conn.input(seg, payload, &mut cx);
        self.after_input(slot, res, was_syn_received, link, io);
    }

    fn after_input(&mut self, slot: u32, res: InputResult, was_syn_received: bool, link: &mut Link, io: &mut Io<'_>) {
        self.emit_pending(slot, link, io);
        if let Some(ack) = res.rst {
            let conn = self.slots[slot as usize].conn.as_ref();
            if let Some(c) = conn {
                let (local, remote) = (c.local_port, c.remote);
                self.emit_rst(link, io, local, remote, ack, None);
            }
        }
        let h = self.handle_of(slot);
        if let Some(reason) = res.dead {
            self.report_dead(slot, reason, io);
            if reason == DeadReason::Reset {
                io.stats.inc(Counter::TcpResetsReceived);
            }
            return self.free_slot(slot, io);
        }
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
        if res.established {
            conn.up = true;
            if was_syn_received {
                if let Some(l) = conn.listener.and_then(|p| self.listeners.get_mut(&p)) {
                    l.half_open = l.half_open.saturating_sub(1);
                    l.waiting += 1;
                }
                push_event(io, Event::TcpKnock { handle: h.0, remote: conn.remote, local_port: conn.local_port });
            } else {
                push_event(
                    io,
                    Event::TcpConnected { cookie: conn.cookie, handle: h.0, ret: Ret::Ok, local_port: conn.local_port },
                );
            }
        }
        if conn.accepted && !conn.released {
            for back in (0..res.delivered as usize).rev() {
                if let Some((data, len)) = conn.newest_lent(io.pool, back) {
                    push_event(io, Event::TcpRecv { cookie: conn.cookie, handle: h.0, data, len });
                }
            }
            if conn.eof_pending {
                conn.eof_pending = false;
                push_event(io, Event::TcpEof { cookie: conn.cookie, handle: h.0 });
            }
        }
        if res.time_wait {
            if let Some(c) = self.slots[slot as usize].conn.as_mut() {
                if !c.time_wait_counted {
                    c.time_wait_counted = true;
                    self.time_wait += 1;
                }
            }
            self.report_dead(slot, DeadReason::Closed, io);
            if let Some(c) = self.slots[slot as usize].conn.as_mut() {
                c.released = true;
                c.release(io.pool);
            }
            self.cancel(slot, TimerKind::Retransmit);
            self.rearm(slot, TimerKind::Linger, io.now + self.cfg.time_wait);
        }
        self.mark_dirty(slot);
    }

    /// Tells the app the connection is over: `TcpConnected` with the error if a connect never came up, else
    /// `TcpDead`. Nothing if the app does not hold it.
    fn report_dead(&mut self, slot: u32, reason: DeadReason, io: &mut Io<'_>) {
        let h = self.handle_of(slot);
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
        if !conn.accepted || conn.released {
            return;
        }
        conn.released = true;
        if !conn.up {
            let ret = match reason {
                DeadReason::Refused | DeadReason::Reset => Ret::Refused,
                DeadReason::TimedOut => Ret::TimedOut,
                _ => Ret::Unreachable,
            };
            push_event(io, Event::TcpConnected { cookie: conn.cookie, handle: h.0, ret, local_port: conn.local_port });
        } else {
            push_event(io, Event::TcpDead { cookie: conn.cookie, handle: h.0, reason });
        }
    }

    fn mark_dirty(&mut self, slot: u32) {
        if let Some(c) = self.slots[slot as usize].conn.as_mut() {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ output

    fn run_output(&mut self, slot: u32, link: &mut Link, io: &mut Io<'_>) {
        let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
        let mut cx = cx!(self, io);
        conn.output(&mut cx);
        self.emit_pending(slot, link, io);
        self.mark_dirty(slot);
    }

    /// Turns the connection's queued `Emit`s into frames.
    fn emit_pending(&mut self, slot: u32, link: &mut Link, io: &mut Io<'_>) {
        if self.out.is_empty() {
            return;
        }
        // Read in place: the queue is an inline array (64 `Emit`s, kilobytes), which moving out and back would
        // copy twice per call.
        if let Some(c) = self.slots[slot as usize].conn.as_ref() {
            let (local, remote) = (c.local_port, c.remote);
            for e in &self.out {
                self.emit_segment(link, io, local, remote, e, Some(slot));
            }
        }
        self.out.clear();
    }

    fn emit_rst(&mut self, link: &mut Link, io: &mut Io<'_>, local: u16, remote: Endpoint, seq: u32, ack: Option<u32>) {
        let e = Emit {
            seq,
            flags: TcpFlags::RST,
            ack,
            window: 0,
            offset: 0,
            len: 0,
            syn_opts: None,
            timestamps: None,
            sack_permitted: false,
            sack: [None; 3],
            retransmit: false,
        };
        self.emit_segment(link, io, local, remote, &e, None);
    }

    fn emit_segment(
        &self,
        link: &mut Link,
        io: &mut Io<'_>,
        local: u16,
        remote: Endpoint,
        e: &Emit,
        slot: Option<u32>,
    ) {
        let Some(next_hop) = link.next_hop(remote.addr) else { return io.stats.inc(Counter::DropArpUnresolved) };
        let repr = TcpRepr {
            src_port: local,
            dst_port: remote.port,
            seq: e.seq,
            ack: e.ack,
            flags: e.flags,
            window_len: e.window,
            max_seg_size: e.syn_opts.map(|(mss, _)| mss),
            window_scale: e.syn_opts.and_then(|(_, ws)| ws),
            sack_permitted: e.sack_permitted,
            sack_ranges: e.sack,
            timestamps: e.timestamps,
            payload: &[],
        };
        let thl = repr.header_len();
        let Some(mut m) = io.pool.alloc() else { return io.stats.inc(Counter::DropNoMbuf) };
        if m.set_len(ETH_LEN + IP_LEN + thl + e.len).is_err() {
            return io.pool.free(m);
        }
        let src = link.addr();
        let buf = io.pool.data_mut(&mut m);
        if e.len > 0 {
            if let Some(c) = slot.and_then(|s| self.slots[s as usize].conn.as_ref()) {
                c.copy_payload(e.offset, &mut buf[ETH_LEN + IP_LEN + thl..]);
            }
        }
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[ETH_LEN + IP_LEN..]), src, remote.addr);
        Ipv4Repr {
            src_addr: src,
            dst_addr: remote.addr,
            next_header: IpProtocol::Tcp,
            payload_len: thl + e.len,
            hop_limit: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..]));
        io.stats.inc(Counter::TcpSegmentsOut);
        if e.retransmit {
            io.stats.inc(Counter::TcpRetransmits);
        }
        link.send_frame(io, m, next_hop, None);
    }

    // ------------------------------------------------------------------------------------------ timers

    fn arm(&mut self, slot: u32, kind: TimerKind, now: Instant) {
        let Some(conn) = self.slots[slot as usize].conn.as_ref() else { return };
        let at = match kind {
            TimerKind::Retransmit => now + conn.rto(),
            TimerKind::DelayedAck => now + self.cfg.delayed_ack,
            TimerKind::Linger => now + self.cfg.time_wait,
            TimerKind::Keepalive => now + self.cfg.keepalive.0,
            TimerKind::LossProbe => conn.loss_timer().unwrap_or(now),
        };
        self.rearm(slot, kind, at);
    }

    /// Arms `kind` for `at`. Lazily: a wheel entry already due no later than `at` is kept (when it fires early,
    /// `poll_timers` places it again at the connection's deadline), and only an earlier deadline moves it. A
    /// request-response flow re-arms its retransmission, loss-probe and delayed-ACK timers at every exchange;
    /// this keeps the wheel work to about one placement per timer period instead of a removal and an insertion
    /// per segment.
    fn rearm(&mut self, slot: u32, kind: TimerKind, at: Instant) {
        let k = kind_index(kind);
        let TcpStack { slots, timers, .. } = self;
        let s = &mut slots[slot as usize];
        let Some(c) = s.conn.as_mut() else { return };
        c.set_due(k, Some(at));
        if let Some(id) = c.timers[k] {
            match timers.deadline(id) {
                Some(d) if d <= at => return,
                Some(_) if timers.reschedule(id, at) => return,
                _ => c.timers[k] = None,
            }
        }
        match timers.add(at, TimerTag { slot, generation: s.generation, kind }) {
            Ok(id) => c.timers[k] = Some(id),
            // The wheel is full: the timer counts as unarmed, so the next flush tries again.
            Err(_) => c.set_due(k, None),
        }
    }

    /// Disarms `kind`. Lazily: the wheel entry stays and fires into nothing (or is reused by the next arm).
    fn cancel(&mut self, slot: u32, kind: TimerKind) {
        if let Some(c) = self.slots[slot as usize].conn.as_mut() {
            c.set_due(kind_index(kind), None);
        }
    }

    /// Runs due timers.
    pub fn poll_timers(&mut self, link: &mut Link, io: &mut Io<'_>) {
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.timers.advance(io.now, |id, tag| fired.push((id, tag)));
        for &(id, tag) in &fired {
            let Some(s) = self.slots.get(tag.slot as usize) else { continue };
            if s.generation != tag.generation {
                continue;
            }
            let Some(conn) = self.slots[tag.slot as usize].conn.as_mut() else { continue };
            let k = kind_index(tag.kind);
            if conn.timers[k] != Some(id) {
                continue;
            }
            conn.timers[k] = None;
            match conn.due(k) {
                // Cancelled since it was placed.
                None => {}
                // Re-armed later since it was placed: placed again at the connection's deadline.
                Some(at) if at > io.now => self.rearm(tag.slot, tag.kind, at),
                Some(_) => {
                    conn.set_due(k, None);
                    self.on_timer(tag.slot, tag.kind, link, io);
                }
            }
        }
        self.fired = fired;
    }

    fn on_timer(&mut self, slot: u32, kind: TimerKind, link: &mut Link, io: &mut Io<'_>) {
        match kind {
            TimerKind::Retransmit => {
                let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
                link.doubt_neighbor(conn.remote.addr, io.now);
                let mut cx = cx!(self, io);
                io.stats.inc(Counter::TcpRetransmitTimeouts);
                match conn.on_retransmit_timeout(&mut cx) {
                    Some(reason) => {
                        self.out.clear();
                        self.report_dead(slot, reason, io);
                        self.free_slot(slot, io);
                    }
                    None => {
                        self.emit_pending(slot, link, io);
                        self.arm(slot, TimerKind::Retransmit, io.now);
                    }
                }
            }
            TimerKind::DelayedAck => {
                let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
                if conn.ack_delayed() || conn.ack_now {
                    let mut cx = cx!(self, io);
                    conn.send_ack(&mut cx);
                    self.emit_pending(slot, link, io);
                }
            }
            TimerKind::LossProbe => {
                let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
                let mut cx = cx!(self, io);
                conn.on_loss_timer(&mut cx);
                io.stats.inc(Counter::TcpLossTimers);
                self.emit_pending(slot, link, io);
                // The flush sets the timers again (reordering timer, RTO).
                self.mark_dirty(slot);
            }
            TimerKind::Linger => {
                let Some(conn) = self.slots[slot as usize].conn.as_ref() else { return };
                if conn.state == State::FinWait2 {
                    self.report_dead(slot, DeadReason::TimedOut, io);
                }
                self.free_slot(slot, io);
            }
            TimerKind::Keepalive => {
                // RFC 1122 §4.2.3.6: after `idle` without a segment, probe every `interval`; give up after
                // `count` unanswered probes.
                let (idle, interval, count) = self.cfg.keepalive;
                let Some(conn) = self.slots[slot as usize].conn.as_mut() else { return };
                if !conn.keepalive || conn.state != State::Established {
                    return;
                }
                let quiet = conn.idle(io.now);
                if quiet < idle {
                    let at = io.now + Duration::from_micros(idle.total_micros() - quiet.total_micros());
                    return self.rearm(slot, TimerKind::Keepalive, at);
                }
                if conn.keepalive_probes >= count {
                    self.report_dead(slot, DeadReason::TimedOut, io);
                    return self.free_slot(slot, io);
                }
                conn.keepalive_probes += 1;
                let mut cx = cx!(self, io);
                conn.send_keepalive(&mut cx);
                io.stats.inc(Counter::TcpKeepalivesSent);
                self.emit_pending(slot, link, io);
                self.rearm(slot, TimerKind::Keepalive, io.now + interval);
            }
        }
    }

    /// Whether some connection has data the last cycle's full TX batch held back (the next cycle sends it).
    pub fn tx_starved(&self) -> bool {
        !self.tx_starved.is_empty()
    }

    /// When the next timer is due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ------------------------------------------------------------------------------------------ flush

    /// End of cycle: for each connection touched, send what it owes (data the window now allows, else one
    /// ACK), report one `Sent`, and set its timers.
    pub fn flush(&mut self, link: &mut Link, io: &mut Io<'_>) {
        for slot in std::mem::take(&mut self.tx_starved) {
            self.mark_dirty(slot);
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let h = self.handle_of(slot);
            let cfg = self.cfg;
            let Some(conn) = self.slots[slot as usize].conn.as_mut() else { continue };
            conn.dirty = false;
            let mut cx = cx!(self, io);
            let owed = conn.ack_now;
            let sent_data = conn.output(&mut cx);
            // Data segments carry the ACK, but not SACK blocks (no room under the MSS): with out-of-order data
            // held, the ACK goes out on its own.
            if owed && (!sent_data || conn.needs_sack()) {
                conn.send_ack(&mut cx);
            }
            // One `TcpSent` per cycle: bytes acknowledged, or the window reopening for an app that is waiting.
            let window = conn.send_room(&cfg) as u64;
            let unblocked = conn.app_blocked && window > 0;
            if conn.accepted && !conn.released && (conn.acked_to_report > 0 || unblocked) {
                let acked = u64::from(std::mem::take(&mut conn.acked_to_report));
                // An app told "window 0" is still waiting: it must hear when the window opens, even though that
                // news (a window update) acknowledges nothing new.
                if window > 0 {
                    conn.app_blocked = false;
                }
                push_event(io, Event::TcpSent { cookie: conn.cookie, handle: h.0, acked, window });
            } else {
                conn.acked_to_report = 0;
            }
            let in_flight = conn.has_in_flight();
            let restart = std::mem::take(&mut conn.rto_restart);
            let rto_armed = conn.due(0).is_some();
            let delayed = conn.ack_delayed();
            let dack_armed = conn.due(1).is_some();
            let loss_timer = conn.loss_timer();
            let loss_armed = conn.due(4);
            let state = conn.state;
            // Zero-window probing: TCP's own unsent data, or an app blocked on a shut window (persist timer).
            let probe = (conn.has_unsent() || conn.app_waits_for_window()) && !in_flight;
            self.emit_pending(slot, link, io);
            if let Some(c) = self.slots[slot as usize].conn.as_mut() {
                if std::mem::take(&mut c.tx_starved) {
                    self.tx_starved.push(slot);
                }
            }
            if state == State::TimeWait || state == State::Closed {
                continue;
            }
            if in_flight || probe {
                if restart || !rto_armed {
                    self.arm(slot, TimerKind::Retransmit, io.now);
                }
            } else if rto_armed {
                self.cancel(slot, TimerKind::Retransmit);
            }
            match loss_timer {
                Some(at) if loss_armed != Some(at) => self.rearm(slot, TimerKind::LossProbe, at),
                None if loss_armed.is_some() => self.cancel(slot, TimerKind::LossProbe),
                _ => {}
            }
            if delayed && !dack_armed {
                self.arm(slot, TimerKind::DelayedAck, io.now);
            } else if !delayed && dack_armed {
                self.cancel(slot, TimerKind::DelayedAck);
            }
            if state == State::FinWait2 {
                if let Some(c) = self.slots[slot as usize].conn.as_ref() {
                    if c.released && c.due(2).is_none() {
                        self.rearm(slot, TimerKind::Linger, io.now + cfg.fin_wait2);
                    }
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Frees every connection (shutdown).
    pub fn release(&mut self, io: &mut Io<'_>) {
        for slot in 0..self.slots.len() as u32 {
            self.free_slot(slot, io);
        }
    }
}

/// MSS values a SYN cookie can encode (3 bits), like Linux's table.
const MSS_TABLE: [u16; 8] = [216, 536, 1200, 1300, 1400, 1440, 1460, 8960];

fn cookie_time(now: Instant) -> u32 {
    (now.total_micros() / 64_000_000) as u32
}

fn push_event(io: &mut Io<'_>, ev: Event) {
    if !io.events.push(ev) {
        io.stats.inc(Counter::EventsDeferred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_state_stays_small() {
        // The paper's 250K-connection test was limited by PCB size (§5.4): keep the per-connection struct small.
        let size = TcpStack::conn_size();
        println!("bytes per connection: {size} (+ a flow-table entry and the slot's generation)");
        assert!(size <= 512, "Conn grew to {size} bytes");
    }

    #[test]
    fn handles_carry_slot_and_generation() {
        let h = Handle::new(7, 3);
        assert_eq!((h.slot(), h.generation()), (7, 3));
        assert_ne!(Handle::new(7, 4), h);
    }
}
