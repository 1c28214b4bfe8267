//! The stateful stack of one core: Ethernet in/out, ARP, IPv4 input, ICMP echo, UDP ports.
//!
//! Heads up: read RFC 791 (IPv4), RFC 792 (ICMP), RFC 768 (UDP), RFC 1122 (host requirements).
//! Frames come in as [`Mbuf`]s from the NIC; each is consumed exactly once: answered in place (ARP, ICMP echo),
//! lent to the app (UDP payloads), or freed with a counter saying why. Nothing here allocates, formats strings or
//! panics on what a peer sends.
pub mod arp;
pub mod link;

use crate::api::{AppBuf, CmdResult};
use crate::api::{Endpoint, Event, Events, LentBuf, Ret};
use crate::config::ChecksumPolicy;
use crate::mbuf::{Mbuf, MbufPool};
use crate::nic::Batch;
use crate::stats::{Counter, Stats};
use crate::tcp::conn::TcpConfig;
use crate::tcp::stack::{Handle, TcpStack};
use crate::time::{Duration, Instant};
use crate::wire::{
    checksum, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Icmpv4Message, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use arp::NeighborTable;
use link::Link;
use std::io::IoSlice;
use std::sync::Arc;

pub(crate) const ETH_LEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
const DEFAULT_TTL: u8 = 64;
/// ICMP errors sent per second at most (RFC 1812 §4.3.2.8 asks for a limit; Linux uses a token bucket too).
const ICMP_ERRORS_PER_SEC: u32 = 100;

/// What a cycle lends the stack: the pool, the frames to transmit, counters, events and lent buffers.
#[derive(Debug)]
pub struct Io<'a> {
    /// The core's pool.
    pub pool: &'a mut MbufPool,
    /// Frames to hand to the NIC at the end of the cycle.
    pub tx: &'a mut Batch,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Events for the app (bounded).
    pub events: &'a mut Events,
    /// Mbufs lent to the app, by frame index.
    pub lent: &'a mut [Option<Mbuf>],
    /// Number of `Some` in `lent`.
    pub lent_count: &'a mut u32,
    /// The cycle's time.
    pub now: Instant,
}

impl Io<'_> {
    /// Queues a frame for transmit, or frees it and counts when the TX batch is full.
    pub(crate) fn push_tx(&mut self, m: Mbuf) {
        if let Err(e) = self.tx.try_push(m) {
            self.stats.inc(Counter::TxRingFull);
            self.pool.free(e.element());
        }
    }

    pub(crate) fn drop_frame(&mut self, m: Mbuf, why: Counter) {
        self.stats.inc(why);
        self.pool.free(m);
    }

    fn event_room(&self) -> bool {
        self.events.room() > 0
    }
}

/// A set of bound UDP ports: one bit per port, O(1), 8 KiB.
#[derive(Debug)]
struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl PortSet {
    fn new() -> Self {
        PortSet { bits: Box::new([0; 1024]) }
    }
    fn contains(&self, port: u16) -> bool {
        self.bits[port as usize / 64] & (1 << (port % 64)) != 0
    }
    fn insert(&mut self, port: u16) -> bool {
        let had = self.contains(port);
        self.bits[port as usize / 64] |= 1 << (port % 64);
        !had
    }
    fn remove(&mut self, port: u16) -> bool {
        let had = self.contains(port);
        self.bits[port as usize / 64] &= !(1 << (port % 64));
        had
    }
}

/// A one-second window rate limiter.
#[derive(Debug)]
struct RateLimiter {
    window_start: Instant,
    used: u32,
    per_sec: u32,
}

impl RateLimiter {
    fn allow(&mut self, now: Instant) -> bool {
        if now - self.window_start >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.per_sec
    }
}

/// Our identity on the link and the per-core protocol state.
#[derive(Debug)]
pub struct Interface {
    link: Link,
    tcp: TcpStack,
    checksum_policy: ChecksumPolicy,
    udp_ports: PortSet,
    icmp_errors: RateLimiter,
    partial_hint_given: bool,
    /// Software steering between the port's queues (UDP here; TCP's is in the TCP stack).
    steering: Option<crate::steer::QueueSteering>,
}

impl Interface {
    /// A stack with address `cidr` on a link with `mac` and `mtu`.
    pub fn new(mac: EthernetAddress, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>, mtu: u16) -> Interface {
        let link = Link::new(mac, cidr, gateway, mtu);
        Interface {
            tcp: TcpStack::new(TcpConfig::default(), link.mtu()),
            link,
            checksum_policy: ChecksumPolicy::Strict,
            udp_ports: PortSet::new(),
            icmp_errors: RateLimiter { window_start: Instant::default(), used: 0, per_sec: ICMP_ERRORS_PER_SEC },
            partial_hint_given: false,
            steering: None,
        }
    }

    /// Shares learned neighbours with the other queues of the port through `table`.
    pub fn set_neighbor_table(&mut self, table: Arc<NeighborTable>) {
        self.link.set_neighbor_table(table);
    }

    /// Sets the partial-checksum policy.
    pub fn set_checksum_policy(&mut self, policy: ChecksumPolicy) {
        self.checksum_policy = policy;
    }

    /// Our MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.link.mac()
    }

    /// Our address and prefix.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.link.cidr()
    }

    /// Largest UDP payload that fits one frame.
    pub fn max_udp_payload(&self) -> usize {
        self.link.mtu() - IP_LEN - UDP_LEN
    }

    // ---------------------------------------------------------------- input

    /// Consumes one received frame.
    pub fn receive(&mut self, io: &mut Io<'_>, m: Mbuf) {
        let (dst, ethertype) = match EthernetFrame::new_checked(io.pool.data(&m)) {
            Ok(f) => (f.dst_addr(), f.ethertype()),
            Err(_) => return io.drop_frame(m, Counter::DropEthMalformed),
        };
        if dst != self.link.mac() && !dst.is_broadcast() {
            return io.drop_frame(m, Counter::DropEthNotForUs);
        }
        match ethertype {
            EtherType::Arp => self.link.arp_input(io, m),
            EtherType::Ipv4 => self.ipv4_input(io, m),
            _ => io.drop_frame(m, Counter::DropEthUnknownType),
        }
    }

    fn ipv4_input(&mut self, io: &mut Io<'_>, m: Mbuf) {
        let (ip, ip_hlen, ip_total) = {
            let frame = EthernetFrame::new_unchecked(io.pool.data(&m));
            let packet = match Ipv4Packet::new_checked(frame.payload()) {
                Ok(p) => p,
                Err(_) => return io.drop_frame(m, Counter::DropIpMalformed),
            };
            if !packet.verify_checksum() {
                return io.drop_frame(m, Counter::DropIpChecksum);
            }
            if packet.is_fragment() {
                return io.drop_frame(m, Counter::DropIpFragment);
            }
            match Ipv4Repr::parse(&packet, false) {
                Ok(r) => (r, packet.header_len() as usize, packet.total_len() as usize),
                Err(_) => return io.drop_frame(m, Counter::DropIpMalformed),
            }
        };
        let to_us = ip.dst_addr == self.link.addr();
        if !to_us && !self.link.is_our_broadcast(ip.dst_addr) {
            return io.drop_frame(m, Counter::DropIpNotForUs);
        }
        if ip.src_addr.is_broadcast() || ip.src_addr.is_multicast() {
            return io.drop_frame(m, Counter::DropIpMalformed);
        }
        match ip.next_header {
            IpProtocol::Icmp if to_us => self.icmp_input(io, m, &ip, ip_hlen, ip_total),
            IpProtocol::Udp => self.udp_input(io, m, &ip, ip_hlen, ip_total, to_us),
            IpProtocol::Tcp if to_us => {
                self.tcp.input(&mut self.link, io, m, &ip, ip_hlen, ip_total, self.checksum_policy)
            }
            IpProtocol::Icmp => io.drop_frame(m, Counter::DropIcmpOther),
            _ => io.drop_frame(m, Counter::DropIpUnknownProto),
        }
    }

    fn icmp_input(&mut self, io: &mut Io<'_>, mut m: Mbuf, ip: &Ipv4Repr, hlen: usize, total: usize) {
        let is_echo = {
            let l4 = &io.pool.data(&m)[ETH_LEN + hlen..ETH_LEN + total];
            match Icmpv4Packet::new_checked(l4) {
                Ok(p) if !p.verify_checksum() => return io.drop_frame(m, Counter::DropIcmpMalformed),
                Ok(p) => matches!(Icmpv4Repr::parse(&p, false), Ok(Icmpv4Repr::EchoRequest { .. })),
                Err(_) => return io.drop_frame(m, Counter::DropIcmpMalformed),
            }
        };
        if !is_echo {
            return io.drop_frame(m, Counter::DropIcmpOther);
        }
        // Turn the request into the reply in place: same ident, sequence and data.
        if m.trim(ETH_LEN + total).is_err() {
            return io.drop_frame(m, Counter::DropIcmpMalformed);
        }
        let mac = self.link.mac();
        let our_ip = self.link.addr();
        let peer = ip.src_addr;
        let buf = io.pool.data_mut(&mut m);
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        let peer_mac = frame.src_addr();
        frame.set_dst_addr(peer_mac);
        frame.set_src_addr(mac);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        packet.set_src_addr(our_ip);
        packet.set_dst_addr(peer);
        packet.set_hop_limit(DEFAULT_TTL);
        packet.fill_checksum();
        let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[ETH_LEN + hlen..]);
        icmp.set_msg_type(Icmpv4Message::EchoReply);
        icmp.set_msg_code(0);
        icmp.fill_checksum();
        io.stats.inc(Counter::IcmpEchoReplies);
        io.push_tx(m);
    }

    fn udp_input(&mut self, io: &mut Io<'_>, mut m: Mbuf, ip: &Ipv4Repr, hlen: usize, total: usize, to_us: bool) {
        let (src_port, dst_port, payload_len) = {
            let l4 = &io.pool.data(&m)[ETH_LEN + hlen..ETH_LEN + total];
            let packet = match UdpPacket::new_checked(l4) {
                Ok(p) => p,
                Err(_) => return io.drop_frame(m, Counter::DropUdpMalformed),
            };
            if !packet.verify_checksum(ip.src_addr, ip.dst_addr) {
                let partial = checksum::is_partial(
                    packet.checksum(),
                    &ip.src_addr,
                    &ip.dst_addr,
                    IpProtocol::Udp,
                    packet.len() as u32,
                );
                if !partial {
                    return io.drop_frame(m, Counter::DropUdpChecksum);
                }
                if self.checksum_policy == ChecksumPolicy::Strict {
                    if !self.partial_hint_given {
                        self.partial_hint_given = true;
                        log::warn!(
                            "dropping UDP with partial checksums from {}: the peer has TX checksum offload on \
                             (run `ethtool -K <peer-if> tx off` on the Linux side, or set IX_CSUM=accept-partial \
                             for a local veth peer)",
                            ip.src_addr
                        );
                    }
                    return io.drop_frame(m, Counter::DropChecksumPartial);
                }
            }
            match UdpRepr::parse(&packet, ip.src_addr, ip.dst_addr, false) {
                Ok(r) => (r.src_port, r.dst_port, packet.len() as usize - UDP_LEN),
                Err(_) => return io.drop_frame(m, Counter::DropUdpMalformed),
            }
        };
        if dst_port == 0 || !self.udp_ports.contains(dst_port) {
            if let Some(owner) = self.steering.as_ref().filter(|_| to_us).and_then(|s| s.foreign_udp_binder(dst_port)) {
                return self.steer_to(io, owner, m);
            }
            if to_us && src_port != 0 {
                return self.send_port_unreachable(io, m, hlen, total);
            }
            return io.drop_frame(m, Counter::DropUdpNoPort);
        }
        if !io.event_room() {
            // Cannot happen with `run_io`'s sizing; still no panic and no leak.
            return io.drop_frame(m, Counter::CmdAgain);
        }
        if m.adjust(ETH_LEN + hlen + UDP_LEN).and_then(|_| m.trim(payload_len)).is_err() {
            return io.drop_frame(m, Counter::DropUdpMalformed);
        }
        let buf = LentBuf { ptr: io.pool.data(&m).as_ptr(), len: payload_len as u32, index: m.index() };
        let slot = m.index() as usize;
        if slot >= io.lent.len() || io.lent[slot].is_some() {
            return io.drop_frame(m, Counter::DropUdpMalformed);
        }
        io.lent[slot] = Some(m);
        *io.lent_count += 1;
        io.stats.inc(Counter::UdpRxDelivered);
        io.events.push(Event::UdpRecv { buf, src: Endpoint { addr: ip.src_addr, port: src_port }, dst_port });
    }

    /// Hands a frame for a port queue `owner` serves to its inbox (unchanged: it checks the frame again).
    fn steer_to(&mut self, io: &mut Io<'_>, owner: u32, m: Mbuf) {
        if let Some(s) = &self.steering {
            match s.steering().send(owner, io.pool.data(&m)) {
                Ok(()) => io.stats.inc(Counter::SteeredOut),
                Err(_) => io.stats.inc(Counter::DropSteerFull),
            }
        }
        io.pool.free(m);
    }

    /// ICMP destination unreachable (port), quoting the offending IP header and 8 bytes (RFC 792, RFC 1122).
    fn send_port_unreachable(&mut self, io: &mut Io<'_>, m: Mbuf, hlen: usize, total: usize) {
        io.stats.inc(Counter::DropUdpNoPort);
        if !self.icmp_errors.allow(io.now) {
            return io.pool.free(m);
        }
        let Some(mut out) = io.pool.alloc() else {
            io.stats.inc(Counter::DropNoMbuf);
            return io.pool.free(m);
        };
        let (peer_mac, peer_ip) = {
            let frame = EthernetFrame::new_unchecked(io.pool.data(&m));
            let ip = Ipv4Packet::new_unchecked(frame.payload());
            (frame.src_addr(), ip.src_addr())
        };
        let quote_len = (hlen + UDP_LEN).min(total);
        let mut quote = [0u8; 60 + UDP_LEN];
        quote[..quote_len].copy_from_slice(&io.pool.data(&m)[ETH_LEN..ETH_LEN + quote_len]);
        io.pool.free(m);
        let icmp = Icmpv4Repr::DstUnreachable { reason: 3, data: &quote[..quote_len] };
        let len = ETH_LEN + IP_LEN + icmp.buffer_len();
        if out.set_len(len).is_err() {
            return io.pool.free(out);
        }
        let ip = Ipv4Repr {
            src_addr: self.link.addr(),
            dst_addr: peer_ip,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: DEFAULT_TTL,
        };
        let buf = io.pool.data_mut(&mut out);
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        EthernetRepr { src_addr: self.link.mac(), dst_addr: peer_mac, ethertype: EtherType::Ipv4 }.emit(&mut frame);
        ip.emit(&mut Ipv4Packet::new_unchecked(frame.payload_mut()));
        icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[ETH_LEN + IP_LEN..]));
        io.stats.inc(Counter::IcmpUnreachSent);
        io.push_tx(out);
    }

    // ---------------------------------------------------------------- commands

    /// `UdpBind`.
    pub fn udp_bind(&mut self, port: u16) -> Ret {
        if port == 0 {
            Ret::Invalid
        } else if self.udp_ports.insert(port) {
            if let Some(s) = &self.steering {
                s.steering().claim_udp(port, s.queue());
            }
            Ret::Ok
        } else {
            Ret::AddrInUse
        }
    }

    /// `UdpUnbind`.
    pub fn udp_unbind(&mut self, port: u16) -> Ret {
        if self.udp_ports.remove(port) {
            if let Some(s) = &self.steering {
                s.steering().release_udp(port, s.queue());
            }
            Ret::Ok
        } else {
            Ret::BadHandle
        }
    }

    /// `UdpSend`: builds one frame, copying the payload, and hands it to ARP resolution.
    pub fn udp_send(&mut self, io: &mut Io<'_>, src_port: u16, dst: Endpoint, payload: &[IoSlice<'_>]) -> Ret {
        if src_port == 0 || dst.port == 0 || dst.addr.is_unspecified() || dst.addr.is_multicast() {
            return Ret::Invalid;
        }
        let len: usize = payload.iter().map(|s| s.len()).sum();
        if len > self.max_udp_payload() {
            return Ret::TooBig;
        }
        let broadcast = self.link.is_our_broadcast(dst.addr);
        let Some(next_hop) = self.link.next_hop(dst.addr) else { return Ret::Unreachable };
        if io.tx.is_full() {
            return Ret::Again;
        }
        let Some(mut m) = io.pool.alloc() else {
            return Ret::NoMem;
        };
        let frame_len = ETH_LEN + IP_LEN + UDP_LEN + len;
        if m.set_len(frame_len).is_err() {
            io.pool.free(m);
            return Ret::TooBig;
        }
        let our_ip = self.link.addr();
        let buf = io.pool.data_mut(&mut m);
        let mut at = ETH_LEN + IP_LEN + UDP_LEN;
        for s in payload {
            buf[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        let ip = Ipv4Repr {
            src_addr: our_ip,
            dst_addr: dst.addr,
            next_header: IpProtocol::Udp,
            payload_len: UDP_LEN + len,
            hop_limit: DEFAULT_TTL,
        };
        {
            let mut udp = UdpPacket::new_unchecked(&mut buf[ETH_LEN + IP_LEN..]);
            UdpRepr { src_port, dst_port: dst.port }.emit_header(&mut udp, len);
            udp.fill_checksum(our_ip, dst.addr);
        }
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..]));
        let dst_mac = if broadcast { Some(EthernetAddress::BROADCAST) } else { None };
        self.link.send_frame(io, m, next_hop, dst_mac);
        io.stats.inc(Counter::UdpTxSent);
        Ret::Ok
    }

    // ---------------------------------------------------------------- timers

    /// Runs due timers.
    pub fn poll_timers(&mut self, io: &mut Io<'_>) {
        self.link.poll_timers(io);
        self.tcp.poll_timers(&mut self.link, io);
    }

    /// Whether TCP has output the last cycle's TX batch could not take (the next cycle should come soon).
    pub fn tcp_tx_starved(&self) -> bool {
        self.tcp.tx_starved()
    }

    /// When the stack next needs `poll_timers`.
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.link.poll_at(), self.tcp.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// End of cycle: one ACK and one `TcpSent` per touched connection.
    pub fn flush(&mut self, io: &mut Io<'_>) {
        self.tcp.flush(&mut self.link, io);
        io.stats.set(Counter::TcpConnections, self.tcp.connections() as u64);
        io.stats.set(Counter::TcpTimeWait, self.tcp.time_wait() as u64);
    }

    /// Frees every frame the stack holds (shutdown).
    pub fn release(&mut self, io: &mut Io<'_>) {
        self.tcp.release(io);
        self.link.release(io.pool);
    }

    // ---------------------------------------------------------------- TCP commands

    /// `TcpListen`.
    pub fn tcp_listen(&mut self, port: u16, backlog: u32) -> Ret {
        self.tcp.listen(port, backlog)
    }

    /// `TcpUnlisten`.
    pub fn tcp_unlisten(&mut self, port: u16) -> Ret {
        self.tcp.unlisten(port)
    }

    /// `TcpConnect`.
    pub fn tcp_connect(&mut self, io: &mut Io<'_>, dst: Endpoint, cookie: u64) -> CmdResult {
        self.tcp.connect(&mut self.link, io, dst, cookie).map(|h| h.0)
    }

    /// `TcpAccept`.
    pub fn tcp_accept(&mut self, io: &mut Io<'_>, handle: u64, cookie: u64) -> Ret {
        self.tcp.accept(io, Handle(handle), cookie)
    }

    /// `TcpReject`.
    pub fn tcp_reject(&mut self, io: &mut Io<'_>, handle: u64) -> Ret {
        self.tcp.reject(&mut self.link, io, Handle(handle))
    }

    /// `TcpSendv`.
    pub fn tcp_sendv(&mut self, io: &mut Io<'_>, handle: u64, bufs: &[AppBuf]) -> CmdResult {
        self.tcp.sendv(&mut self.link, io, Handle(handle), bufs)
    }

    /// `TcpRecvDone`.
    pub fn tcp_recv_done(&mut self, io: &mut Io<'_>, handle: u64, len: u64) -> Ret {
        self.tcp.recv_done(io, Handle(handle), len)
    }

    /// `TcpClose`.
    pub fn tcp_close(&mut self, io: &mut Io<'_>, handle: u64) -> Ret {
        self.tcp.close(&mut self.link, io, Handle(handle))
    }

    /// Makes `connect` pick local ports whose replies reach this queue.
    pub fn tcp_port_filter(&mut self, filter: crate::tcp::stack::PortFilter) {
        self.tcp.set_port_filter(filter);
    }

    /// Turns on software steering of TCP and UDP between the port's queues (see [`crate::steer`]).
    pub fn set_steering(&mut self, steering: crate::steer::QueueSteering) {
        self.tcp.set_steering(steering.clone());
        self.steering = Some(steering);
    }

    /// Our address.
    pub fn addr(&self) -> Ipv4Address {
        self.link.addr()
    }

    /// `TcpKeepalive`.
    pub fn tcp_keepalive(&mut self, io: &mut Io<'_>, handle: u64, enable: bool) -> Ret {
        self.tcp.set_keepalive(io, Handle(handle), enable)
    }

    /// Sets keepalive timing for every connection of this core.
    pub fn tcp_keepalive_timing(&mut self, idle: Duration, interval: Duration, count: u8) {
        self.tcp.set_keepalive_timing(idle, interval, count);
    }

    /// `TcpAbort`.
    pub fn tcp_abort(&mut self, io: &mut Io<'_>, handle: u64) -> Ret {
        self.tcp.abort(&mut self.link, io, Handle(handle))
    }

    /// Over all TCP listeners: half-open connections and connections waiting for accept.
    pub fn tcp_listener_queues(&self) -> (u64, u64) {
        self.tcp.listener_queues()
    }

    /// One line per live TCP connection, for diagnostics.
    pub fn tcp_describe(&self, now: crate::time::Instant) -> Vec<String> {
        self.tcp.describe(now)
    }

    /// Bytes of state per TCP connection.
    pub fn tcp_conn_size() -> usize {
        TcpStack::conn_size()
    }
}
