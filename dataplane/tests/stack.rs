//! The whole stack over the in-memory wire: a hand-driven peer, two dataplanes with injected faults, garbage
//! input, back-pressure and API misuse. Time is simulated: no test depends on the wall clock.
use std::io::IoSlice;

use dataplane::api::{Command, Endpoint, Event, Events, Ret};
use dataplane::dataplane::{Dataplane, DataplaneConfig};
use dataplane::mbuf::MbufPool;
use dataplane::nic::wire::{FaultConfig, WireEnd, WireLink, WireProbe, DEFAULT_MAC_A, DEFAULT_MAC_B};
use dataplane::nic::{Batch, NicQueue};
use dataplane::stats::Counter;
use dataplane::time::{Duration, Instant};
use dataplane::wire::*;
use proptest::prelude::*;

const DP_IP: Ipv4Address = Ipv4Address([198, 18, 0, 1]);
const PEER_IP: Ipv4Address = Ipv4Address([198, 18, 0, 2]);
const FRAMES: u32 = 1024;

fn dataplane(end: WireEnd, ip: Ipv4Address) -> Dataplane {
    let pool = MbufPool::new(FRAMES, false).expect("pool");
    Dataplane::new(Box::new(end), pool, &DataplaneConfig::new(Ipv4Cidr::new(ip, 24).unwrap()))
}

/// A peer that speaks raw frames through its own end of the link.
struct Peer {
    end: WireEnd,
    pool: MbufPool,
}

impl Peer {
    fn send(&mut self, frame: &[u8]) {
        let mut b = Batch::new();
        b.push(self.pool.alloc_from(frame).expect("peer pool"));
        self.end.transmit(&mut self.pool, &mut b);
        assert!(b.is_empty(), "link refused a frame");
    }
    fn recv_all(&mut self) -> Vec<Vec<u8>> {
        let mut b = Batch::new();
        self.end.receive(&mut self.pool, &mut b, 256);
        b.drain(..)
            .map(|m| {
                let v = self.pool.data(&m).to_vec();
                self.pool.free(m);
                v
            })
            .collect()
    }
}

fn eth(dst: EthernetAddress, ethertype: EtherType, payload_len: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload_len];
    EthernetRepr { src_addr: EthernetAddress(DEFAULT_MAC_B), dst_addr: dst, ethertype }
        .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f
}

fn arp_request(target: Ipv4Address) -> Vec<u8> {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(DEFAULT_MAC_B),
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut f = eth(EthernetAddress::BROADCAST, EtherType::Arp, repr.buffer_len());
    repr.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    f
}

fn ipv4_frame(dst: Ipv4Address, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(EthernetAddress(DEFAULT_MAC_A), EtherType::Ipv4, 20 + l4.len());
    Ipv4Repr { src_addr: PEER_IP, dst_addr: dst, next_header: proto, payload_len: l4.len(), hop_limit: 64 }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    f[34..].copy_from_slice(l4);
    f
}

fn ping(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data };
    let mut l4 = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut l4[..]));
    ipv4_frame(DP_IP, IpProtocol::Icmp, &l4)
}

fn udp(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload.len()];
    l4[8..].copy_from_slice(payload);
    let mut p = UdpPacket::new_unchecked(&mut l4[..]);
    UdpRepr { src_port: 5555, dst_port }.emit_header(&mut p, payload.len());
    p.fill_checksum(PEER_IP, DP_IP);
    ipv4_frame(DP_IP, IpProtocol::Udp, &l4)
}

/// One cycle; each command's result as a plain code (`Ret::Ok` for any value).
fn cycle(dp: &mut Dataplane, now: Instant, cmds: &[Command<'_>], events: &mut Events) -> Vec<Ret> {
    let mut rets = vec![Ok(0); cmds.len()];
    events.reset(usize::MAX);
    dp.run_io(now, cmds, &mut rets, events);
    codes(&rets)
}

fn codes(rets: &[dataplane::api::CmdResult]) -> Vec<Ret> {
    rets.iter().map(|r| r.map_or_else(|e| e, |_| Ret::Ok)).collect()
}

#[test]
fn answers_arp_and_ping_in_place() {
    let (a, b) = WireLink::pair(FaultConfig::default(), 1);
    let mut dp = dataplane(a, DP_IP);
    let mut peer = Peer { end: b, pool: MbufPool::new(64, false).unwrap() };
    let mut ev = Events::with_capacity(64);
    let t = Instant::from_millis(1);

    peer.send(&arp_request(DP_IP));
    peer.send(&arp_request(Ipv4Address([198, 18, 0, 9]))); // someone else: no answer
    cycle(&mut dp, t, &[], &mut ev);
    let replies = peer.recv_all();
    assert_eq!(replies.len(), 1);
    let f = EthernetFrame::new_checked(&replies[0][..]).unwrap();
    assert_eq!(f.dst_addr(), EthernetAddress(DEFAULT_MAC_B));
    assert_eq!(f.ethertype(), EtherType::Arp);
    let arp = ArpRepr::parse(&ArpPacket::new_checked(f.payload()).unwrap()).unwrap();
    assert_eq!(arp.operation, ArpOperation::Reply);
    assert_eq!(arp.source_hardware_addr, EthernetAddress(DEFAULT_MAC_A));
    assert_eq!(arp.source_protocol_addr, DP_IP);
    assert_eq!(arp.target_protocol_addr, PEER_IP);

    let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    peer.send(&ping(0x1234, 7, &data));
    cycle(&mut dp, t, &[], &mut ev);
    let replies = peer.recv_all();
    assert_eq!(replies.len(), 1);
    let f = EthernetFrame::new_checked(&replies[0][..]).unwrap();
    let ip = Ipv4Packet::new_checked(f.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (DP_IP, PEER_IP));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    match Icmpv4Repr::parse(&icmp, true).unwrap() {
        Icmpv4Repr::EchoReply { ident, seq_no, data: d } => {
            assert_eq!((ident, seq_no), (0x1234, 7));
            assert_eq!(d, &data[..]);
        }
        other => panic!("expected an echo reply, got {other:?}"),
    }
    let s = dp.stats();
    assert_eq!(s.get(Counter::ArpRepliesSent), 1);
    assert_eq!(s.get(Counter::IcmpEchoReplies), 1);
    assert_eq!(dp.shutdown().available(), FRAMES);
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable() {
    let (a, b) = WireLink::pair(FaultConfig::default(), 2);
    let mut dp = dataplane(a, DP_IP);
    let mut peer = Peer { end: b, pool: MbufPool::new(64, false).unwrap() };
    let mut ev = Events::with_capacity(64);
    peer.send(&udp(4444, b"anyone?"));
    cycle(&mut dp, Instant::from_millis(1), &[], &mut ev);
    let replies = peer.recv_all();
    assert_eq!(replies.len(), 1);
    let f = EthernetFrame::new_checked(&replies[0][..]).unwrap();
    let ip = Ipv4Packet::new_checked(f.payload()).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    match Icmpv4Repr::parse(&icmp, true).unwrap() {
        Icmpv4Repr::DstUnreachable { reason, data } => {
            assert_eq!(reason, 3);
            assert_eq!(data.len(), 28, "quotes the IP header and 8 bytes");
        }
        other => panic!("expected port unreachable, got {other:?}"),
    }
    assert!(ev.is_empty());
    assert_eq!(dp.stats().get(Counter::DropUdpNoPort), 1);
}

fn pattern(seq: u32, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (seq as usize * 131 + i * 7 + (i >> 8)) as u8).collect();
    if len >= 4 {
        v[..4].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

/// Client dataplane sends `count` datagrams to an echo dataplane over a faulty link; returns
/// (sent, echoes received byte-exact, wrong echoes).
fn echo_over(cfg: FaultConfig, seed: u64, count: u32) -> (u32, u32, u32, WireProbe, Dataplane, Dataplane) {
    let (a, b) = WireLink::pair(cfg, seed);
    let probe = a.probe();
    let mut server = dataplane(a, DP_IP);
    let mut client = dataplane(b, PEER_IP);
    let mut sev = Events::with_capacity(256);
    let mut cev = Events::with_capacity(256);
    let mut now = Instant::from_millis(1);
    assert_eq!(cycle(&mut server, now, &[Command::UdpBind { port: 7 }], &mut sev), vec![Ret::Ok]);
    assert_eq!(cycle(&mut client, now, &[Command::UdpBind { port: 5000 }], &mut cev), vec![Ret::Ok]);
    let mut next = 0u32;
    let (mut good, mut bad) = (0u32, 0u32);
    let mut seen = vec![false; count as usize];
    let mut server_cmds_store: Vec<(Endpoint, u16, *const u8, usize)> = Vec::new();
    for _step in 0..20_000 {
        now = now + Duration::from_micros(500);
        probe.advance(now);
        // Client: up to 4 new datagrams per step.
        let payloads: Vec<Vec<u8>> =
            (next..count.min(next + 4)).map(|s| pattern(s, 4 + (s as usize * 37) % 1469)).collect();
        let slices: Vec<[IoSlice<'_>; 1]> = payloads.iter().map(|p| [IoSlice::new(p)]).collect();
        let mut cmds: Vec<Command<'_>> = slices
            .iter()
            .enumerate()
            .map(|(k, s)| Command::UdpSend {
                src_port: 5000,
                dst: Endpoint { addr: DP_IP, port: 7 },
                payload: s,
                cookie: (next + k as u32) as u64,
            })
            .collect();
        let rets = cycle(&mut client, now, &cmds, &mut cev);
        let accepted = rets.iter().take_while(|r| **r == Ret::Ok).count() as u32;
        next += accepted;
        cmds.clear();
        let mut done: Vec<*const u8> = Vec::new();
        for e in cev.as_slice() {
            if let Event::UdpRecv { buf, .. } = e {
                let data = client.lent_data(buf).expect("lent buffer readable");
                let seq = if data.len() >= 4 { u32::from_le_bytes(data[..4].try_into().unwrap()) } else { u32::MAX };
                let ok = (seq as usize) < seen.len()
                    && data.len() == 4 + (seq as usize * 37) % 1469
                    && data == &pattern(seq, data.len())[..];
                if ok {
                    if !seen[seq as usize] {
                        seen[seq as usize] = true;
                        good += 1;
                    }
                } else if data.len() >= 4 {
                    bad += 1;
                }
                done.push(buf.ptr);
            }
        }
        let dcmds: Vec<Command<'_>> = done.iter().map(|&d| Command::RecvDone { data: d }).collect();
        assert!(cycle(&mut client, now, &dcmds, &mut cev).iter().all(|r| *r == Ret::Ok));
        // Server: echo everything (zero-copy: the reply points into the lent buffer), then give buffers back.
        server_cmds_store.clear();
        for e in sev.as_slice() {
            if let Event::UdpRecv { buf, src, dst_port } = e {
                server_cmds_store.push((*src, *dst_port, buf.ptr, buf.len as usize));
            }
        }
        // The app reads the lent bytes through the dataplane (a C app uses the pointer directly).
        let lent: Vec<Vec<u8>> = sev
            .as_slice()
            .iter()
            .filter_map(|e| match e {
                Event::UdpRecv { buf, .. } => Some(server.lent_data(buf).expect("lent").to_vec()),
                _ => None,
            })
            .collect();
        let iov: Vec<[IoSlice<'_>; 1]> = lent.iter().map(|s| [IoSlice::new(s)]).collect();
        let mut scmds: Vec<Command<'_>> = Vec::new();
        for (k, (src, port, ptr, _)) in server_cmds_store.iter().enumerate() {
            scmds.push(Command::UdpSend { src_port: *port, dst: *src, payload: &iov[k], cookie: 0 });
            scmds.push(Command::RecvDone { data: *ptr });
        }
        let rets = cycle(&mut server, now, &scmds, &mut sev);
        assert!(rets.iter().all(|r| *r == Ret::Ok), "server commands: {rets:?}");
        if next == count && probe.in_flight(0) == 0 && probe.in_flight(1) == 0 && _step > 100 {
            // Let retries and late frames drain for a few simulated seconds.
            if good == count {
                break;
            }
        }
    }
    (next, good, bad, probe, server, client)
}

#[test]
fn two_dataplanes_echo_byte_exact_on_a_perfect_link() {
    let (sent, good, bad, probe, mut server, mut client) = echo_over(FaultConfig::default(), 7, 2000);
    if good != sent {
        for c in Counter::ALL {
            let (a, b) = (server.stats().get(c), client.stats().get(c));
            if a + b > 0 {
                eprintln!("{:<24} server {a:>8} client {b:>8}", c.name());
            }
        }
        eprintln!("faults {:?} {:?}", probe.fault_stats(0), probe.fault_stats(1));
    }
    assert_eq!((sent, good, bad), (2000, 2000, 0));
    assert!(client.frames_in_use() == 0 || client.frames_in_use() == client.frames_held_by_nic());
    assert_eq!(server.shutdown().available(), FRAMES);
    assert_eq!(client.shutdown().available(), FRAMES);
}

#[test]
fn faults_never_deliver_wrong_bytes_and_never_leak() {
    // Each fault alone, then all at once; fixed seeds so a failure reproduces.
    let all = FaultConfig {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.25,
        corrupt: 0.01,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        ..FaultConfig::default()
    };
    let cases = [
        FaultConfig { loss: 0.05, ..FaultConfig::default() },
        FaultConfig { reorder: 0.25, ..FaultConfig::default() },
        FaultConfig { duplicate: 0.05, ..FaultConfig::default() },
        FaultConfig { corrupt: 0.05, ..FaultConfig::default() },
        all,
    ];
    for (i, cfg) in cases.into_iter().enumerate() {
        let seed = 1000 + i as u64;
        let (sent, good, bad, probe, server, client) = echo_over(cfg, seed, 1000);
        assert_eq!(sent, 1000, "seed {seed}");
        assert_eq!(bad, 0, "seed {seed}: a corrupted datagram reached the app");
        let f = probe.fault_stats(0);
        let g = probe.fault_stats(1);
        assert!(good > 700, "seed {seed}: only {good} echoes (faults {f:?} {g:?})");
        if cfg.loss == 0.0 && cfg.corrupt == 0.0 {
            assert_eq!(good, 1000, "seed {seed}: no loss configured, all must come back");
        }
        if cfg.corrupt > 0.0 {
            let s = server.counters();
            assert!(
                s.get(Counter::DropUdpChecksum)
                    + s.get(Counter::DropIpChecksum)
                    + s.get(Counter::DropEthNotForUs)
                    + s.get(Counter::DropEthUnknownType)
                    + s.get(Counter::DropIpMalformed)
                    + s.get(Counter::DropUdpMalformed)
                    + s.get(Counter::DropIpNotForUs)
                    + s.get(Counter::DropUdpNoPort)
                    > 0,
                "seed {seed}: corruption was injected ({f:?}) but nothing was dropped"
            );
        }
        assert_eq!(server.shutdown().available(), FRAMES, "seed {seed}: server leaked");
        assert_eq!(client.shutdown().available(), FRAMES, "seed {seed}: client leaked");
    }
}

#[test]
fn events_bound_rx_and_the_rest_waits_in_the_ring() {
    let (a, b) = WireLink::pair(FaultConfig::default(), 3);
    let probe = a.probe();
    let mut dp = dataplane(a, DP_IP);
    let mut peer = Peer { end: b, pool: MbufPool::new(256, false).unwrap() };
    let mut ev = Events::with_capacity(64);
    let mut rets = [Ok(0)];
    ev.reset(64);
    dp.run_io(Instant::from_millis(1), &[Command::UdpBind { port: 7 }], &mut rets, &mut ev);
    for i in 0..100u32 {
        peer.send(&udp(7, &i.to_le_bytes()));
    }
    ev.reset(10);
    dp.run_io(Instant::from_millis(2), &[], &mut [], &mut ev);
    assert_eq!(ev.len(), 10, "RX stops at the event bound");
    assert_eq!(probe.in_flight(1), 90, "the rest waits on the link");
    let first: Vec<*const u8> = ev
        .as_slice()
        .iter()
        .filter_map(|e| match e {
            Event::UdpRecv { buf, .. } => Some(buf.ptr),
            _ => None,
        })
        .collect();
    let mut got = 10;
    let mut order = Vec::new();
    for e in ev.as_slice() {
        if let Event::UdpRecv { buf, .. } = e {
            order.push(u32::from_le_bytes(dp.lent_data(buf).unwrap().try_into().unwrap()));
        }
    }
    let done: Vec<Command<'_>> = first.iter().map(|&d| Command::RecvDone { data: d }).collect();
    let mut r = vec![Ok(0); done.len()];
    for _ in 0..20 {
        ev.reset(64);
        dp.run_io(Instant::from_millis(3), &done[..0], &mut [], &mut ev);
        for e in ev.as_slice() {
            if let Event::UdpRecv { buf, .. } = e {
                order.push(u32::from_le_bytes(dp.lent_data(buf).unwrap().try_into().unwrap()));
                got += 1;
            }
        }
    }
    assert_eq!(got, 100);
    assert_eq!(order, (0..100).collect::<Vec<_>>(), "delivered in order");
    ev.reset(64);
    dp.run_io(Instant::from_millis(4), &done, &mut r, &mut ev);
    assert!(codes(&r).iter().all(|x| *x == Ret::Ok));
    // Giving the same buffers back twice is refused.
    dp.run_io(Instant::from_millis(4), &done, &mut r, &mut ev);
    assert!(codes(&r).iter().all(|x| *x == Ret::BadHandle));
    assert_eq!(dp.shutdown().available(), FRAMES);
}

#[test]
fn recv_done_accepts_any_address_inside_the_buffer_once() {
    let (a, b) = WireLink::pair(FaultConfig::default(), 4);
    let mut dp = dataplane(a, DP_IP);
    let mut peer = Peer { end: b, pool: MbufPool::new(16, false).unwrap() };
    let mut ev = Events::with_capacity(16);
    cycle(&mut dp, Instant::from_millis(1), &[Command::UdpBind { port: 9 }], &mut ev);
    peer.send(&udp(9, b"hello, dataplane"));
    cycle(&mut dp, Instant::from_millis(2), &[], &mut ev);
    let Some(Event::UdpRecv { buf, src, dst_port }) = ev.as_slice().first().copied() else {
        panic!("no datagram: {:?}", ev.as_slice())
    };
    assert_eq!((src.addr, src.port, dst_port), (PEER_IP, 5555, 9));
    assert_eq!(dp.lent_data(&buf), Some(&b"hello, dataplane"[..]));
    let inside = buf.ptr.wrapping_add(5);
    let rets = cycle(&mut dp, Instant::from_millis(3), &[Command::RecvDone { data: inside }], &mut ev);
    assert_eq!(rets, vec![Ret::Ok]);
    assert_eq!(dp.lent_data(&buf), None, "no longer lent");
    let rets = cycle(&mut dp, Instant::from_millis(3), &[Command::RecvDone { data: buf.ptr }], &mut ev);
    assert_eq!(rets, vec![Ret::BadHandle]);
    let rets = cycle(
        &mut dp,
        Instant::from_millis(3),
        &[Command::UdpUnbind { port: 9 }, Command::UdpUnbind { port: 9 }],
        &mut ev,
    );
    assert_eq!(rets, vec![Ret::Ok, Ret::BadHandle]);
}

#[test]
fn unresolved_neighbour_is_retried_then_given_up() {
    let (a, b) = WireLink::pair(FaultConfig::default(), 5);
    let probe = a.probe();
    let mut dp = dataplane(a, DP_IP);
    let mut peer = Peer { end: b, pool: MbufPool::new(64, false).unwrap() };
    let mut ev = Events::with_capacity(16);
    let payload = [IoSlice::new(b"x")];
    let ghost = Endpoint { addr: Ipv4Address([198, 18, 0, 99]), port: 9 };
    let mut now = Instant::from_millis(1);
    let rets =
        cycle(&mut dp, now, &[Command::UdpSend { src_port: 1, dst: ghost, payload: &payload, cookie: 1 }], &mut ev);
    assert_eq!(rets, vec![Ret::Ok]);
    let mut requests = 0;
    for _ in 0..50 {
        now = now + Duration::from_millis(100);
        probe.advance(now);
        cycle(&mut dp, now, &[], &mut ev);
        for f in peer.recv_all() {
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(e.ethertype(), EtherType::Arp, "nothing but ARP may leave for an unresolved host");
            requests += 1;
        }
    }
    assert_eq!(requests, 3);
    let s = dp.stats();
    assert_eq!(s.get(Counter::DropArpUnresolved), 1);
    assert_eq!(s.get(Counter::ArpRequestsSent), 3);
    assert_eq!(dp.shutdown().available(), FRAMES);
}

fn valid_frames() -> Vec<Vec<u8>> {
    vec![arp_request(DP_IP), ping(1, 1, b"abcdefgh"), udp(7, b"payload"), udp(8, b"closed port")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage and mutated frames never panic the stack, never leak an mbuf, and never stop service.
    #[test]
    fn any_input_is_counted_and_dropped_or_served(
        frames in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..1600),
                (0usize..4, prop::collection::vec((0usize..1600, any::<u8>()), 1..6)).prop_map(|(k, edits)| {
                    let mut f = valid_frames()[k].clone();
                    for (at, v) in edits { let n = f.len(); f[at % n] = v; }
                    f
                }),
                (0usize..4, 0usize..100).prop_map(|(k, cut)| {
                    let mut f = valid_frames()[k].clone();
                    let n = f.len();
                    f.truncate(n.saturating_sub(cut));
                    f
                }),
            ],
            1..40,
        )
    ) {
        let (a, b) = WireLink::pair(FaultConfig::default(), 9);
        let mut dp = dataplane(a, DP_IP);
        let mut peer = Peer { end: b, pool: MbufPool::new(128, false).unwrap() };
        let mut ev = Events::with_capacity(64);
        cycle(&mut dp, Instant::from_millis(1), &[Command::UdpBind { port: 7 }], &mut ev);
        for f in &frames {
            if f.len() <= 1514 && !f.is_empty() {
                peer.send(f);
            }
        }
        let mut lent = Vec::new();
        for _ in 0..4 {
            cycle(&mut dp, Instant::from_millis(2), &[], &mut ev);
            for e in ev.as_slice() {
                if let Event::UdpRecv { buf, .. } = e { lent.push(buf.ptr); }
            }
            peer.recv_all();
        }
        let done: Vec<Command<'_>> = lent.iter().map(|&d| Command::RecvDone { data: d }).collect();
        let rets = cycle(&mut dp, Instant::from_millis(3), &done, &mut ev);
        prop_assert!(rets.iter().all(|r| *r == Ret::Ok));
        // Service continues: a good ping is still answered.
        peer.send(&ping(9, 9, b"still there?"));
        cycle(&mut dp, Instant::from_millis(4), &[], &mut ev);
        let replies = peer.recv_all();
        prop_assert!(replies.iter().any(|r| r.len() >= 34 && r[23] == 1), "no ping reply after garbage");
        prop_assert_eq!(dp.frames_in_use(), 0);
        prop_assert_eq!(dp.shutdown().available(), FRAMES);
    }
}

#[test]
fn queues_of_one_port_share_what_they_learn_by_arp() {
    use dataplane::net::arp::NeighborTable;
    use std::sync::Arc;
    let table = Arc::new(NeighborTable::default());
    let (a0, b0) = WireLink::pair(FaultConfig::default(), 11);
    let (a1, b1) = WireLink::pair(FaultConfig::default(), 12);
    let mut q0 = dataplane(a0, DP_IP);
    let mut q1 = dataplane(a1, DP_IP);
    q0.set_neighbor_table(table.clone());
    q1.set_neighbor_table(table.clone());
    let mut peer0 = Peer { end: b0, pool: MbufPool::new(64, false).unwrap() };
    let mut peer1 = Peer { end: b1, pool: MbufPool::new(64, false).unwrap() };
    let mut ev = Events::with_capacity(16);
    let t = Instant::from_millis(1);
    let payload = [IoSlice::new(b"hi")];
    let peer = Endpoint { addr: PEER_IP, port: 9 };

    // Queue 1 sends first: its frame waits and an ARP request goes out on its queue...
    cycle(&mut q1, t, &[Command::UdpSend { src_port: 7, dst: peer, payload: &payload, cookie: 0 }], &mut ev);
    let out = peer1.recv_all();
    assert_eq!(out.len(), 1);
    assert_eq!(EthernetFrame::new_checked(&out[0][..]).unwrap().ethertype(), EtherType::Arp);
    // ...but the reply is hashed to queue 0.
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(DEFAULT_MAC_B),
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress(DEFAULT_MAC_A),
        target_protocol_addr: DP_IP,
    };
    let mut f = eth(EthernetAddress(DEFAULT_MAC_A), EtherType::Arp, reply.buffer_len());
    reply.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    peer0.send(&f);
    cycle(&mut q0, t, &[], &mut ev);
    // Queue 1 sends its waiting datagram on its next cycle, and later ones without asking again.
    let rets = cycle(&mut q1, t, &[Command::UdpSend { src_port: 7, dst: peer, payload: &payload, cookie: 1 }], &mut ev);
    assert_eq!(rets, vec![Ret::Ok]);
    assert_eq!(table.get(PEER_IP), Some(EthernetAddress(DEFAULT_MAC_B)), "queue 0 published what it learned");
    let out = peer1.recv_all();
    assert_eq!(out.len(), 2, "both datagrams leave queue 1");
    for f in &out {
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((e.ethertype(), e.dst_addr()), (EtherType::Ipv4, EthernetAddress(DEFAULT_MAC_B)));
    }
    assert_eq!(q1.stats().get(Counter::ArpRequestsSent), 1);
    assert_eq!(q1.shutdown().available(), FRAMES);
}

#[test]
fn partial_checksums_are_dropped_with_a_count_unless_accepted() {
    use dataplane::config::ChecksumPolicy;
    // What a Linux sender with TX checksum offload leaves on a veth: the folded pseudo-header sum only.
    let payload = b"partial";
    let mut frame = udp(7, payload);
    let l4_len = (8 + payload.len()) as u32;
    // The kernel stores ~csum_tcpudp_magic(), which is the folded pseudo-header sum, not complemented.
    let field = checksum::pseudo_header(&PEER_IP, &DP_IP, IpProtocol::Udp, l4_len);
    frame[40..42].copy_from_slice(&field.to_be_bytes());
    for (policy, delivered) in [(ChecksumPolicy::Strict, false), (ChecksumPolicy::AcceptPartial, true)] {
        let (a, b) = WireLink::pair(FaultConfig::default(), 13);
        let pool = MbufPool::new(FRAMES, false).unwrap();
        let mut cfg = DataplaneConfig::new(Ipv4Cidr::new(DP_IP, 24).unwrap());
        cfg.checksum = policy;
        let mut dp = Dataplane::new(Box::new(a), pool, &cfg);
        let mut peer = Peer { end: b, pool: MbufPool::new(16, false).unwrap() };
        let mut ev = Events::with_capacity(16);
        cycle(&mut dp, Instant::from_millis(1), &[Command::UdpBind { port: 7 }], &mut ev);
        peer.send(&frame);
        cycle(&mut dp, Instant::from_millis(2), &[], &mut ev);
        assert_eq!(ev.len() == 1, delivered, "{policy:?}");
        let s = dp.stats();
        assert_eq!(s.get(Counter::DropChecksumPartial), u64::from(!delivered), "{policy:?}");
        assert_eq!(s.get(Counter::DropUdpChecksum), 0, "a partial checksum is not counted as corruption");
    }
}
