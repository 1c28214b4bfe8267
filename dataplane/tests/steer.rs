//! Software steering between the queues of one port, over the in-memory wire: a client port with two queues
//! whose every received frame arrives on queue 1, while queue 0 opens the connection (as when a Linux peer's
//! veth picks the TX queue from its own random hash). Queue 1 must hand the connection's frames to queue 0, and
//! an echo transfer must complete byte-exact with every mbuf back home. Time is simulated.
use dataplane::api::{AppBuf, Command, DeadReason, Endpoint, Event, Events, Ret};
use dataplane::dataplane::{Dataplane, DataplaneConfig};
use dataplane::mbuf::MbufPool;
use dataplane::net::arp::NeighborTable;
use dataplane::nic::wire::{FaultConfig, WireEnd, WireLink, WireProbe, DEFAULT_MAC_A};
use dataplane::nic::{Batch, NicCaps, NicQueue, NicStats};
use dataplane::stats::Counter;
use dataplane::steer::Steering;
use dataplane::time::{Duration, Instant};
use dataplane::wire::{Ipv4Address, Ipv4Cidr};
use std::os::fd::RawFd;
use std::sync::Arc;

mod common;
use common::{pattern, run};

const SERVER_IP: Ipv4Address = Ipv4Address([198, 18, 0, 1]);
const CLIENT_IP: Ipv4Address = Ipv4Address([198, 18, 0, 2]);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const FRAMES: u32 = 4096;
const PORT: u16 = 7;
const MAX_STEPS: u32 = 200_000;

/// The server's NIC: it receives from both client queues' links but transmits only toward client queue 1.
#[derive(Debug)]
struct RepliesToQueue1 {
    from_queue0: WireEnd,
    to_queue1: WireEnd,
}

impl NicQueue for RepliesToQueue1 {
    fn receive(&mut self, pool: &mut MbufPool, out: &mut Batch, max: usize) -> usize {
        let n = self.from_queue0.receive(pool, out, max);
        n + self.to_queue1.receive(pool, out, max - n)
    }
    fn transmit(&mut self, pool: &mut MbufPool, batch: &mut Batch) {
        self.to_queue1.transmit(pool, batch);
    }
    fn maintain(&mut self, pool: &mut MbufPool) {
        self.from_queue0.maintain(pool);
        self.to_queue1.maintain(pool);
    }
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
    fn caps(&self) -> NicCaps {
        self.to_queue1.caps()
    }
    fn mac(&self) -> [u8; 6] {
        DEFAULT_MAC_A
    }
    fn stats(&self) -> NicStats {
        self.to_queue1.stats()
    }
    fn frames_held(&self) -> u32 {
        self.from_queue0.frames_held() + self.to_queue1.frames_held()
    }
    fn release(&mut self, pool: &mut MbufPool) {
        self.from_queue0.release(pool);
        self.to_queue1.release(pool);
    }
}

struct Setup {
    server: Dataplane,
    queues: [Dataplane; 2],
    probes: [WireProbe; 2],
}

/// A server, and a client port of two queues (shared neighbours, as `runtime::Port` gives them); `steering`
/// turns software steering on for the client's queues.
fn setup(steering: bool) -> Setup {
    let (s0, c0) = WireLink::pair(FaultConfig::default(), 1);
    let (s1, c1) = WireLink::pair(FaultConfig::default(), 2);
    let probes = [s0.probe(), s1.probe()];
    let server_nic = RepliesToQueue1 { from_queue0: s0, to_queue1: s1 };
    let pool = || MbufPool::new(FRAMES, false).expect("pool");
    let server =
        Dataplane::new(Box::new(server_nic), pool(), &DataplaneConfig::new(Ipv4Cidr::new(SERVER_IP, 24).unwrap()));
    let neighbors = Arc::new(NeighborTable::default());
    let hub = Steering::new(2).expect("steering");
    let client_queue = |end: WireEnd, queue_id: u32| {
        let mut cfg = DataplaneConfig::new(Ipv4Cidr::new(CLIENT_IP, 24).unwrap());
        cfg.queue_id = queue_id;
        let mut dp = Dataplane::new(Box::new(end.with_mac(CLIENT_MAC)), pool(), &cfg);
        dp.set_neighbor_table(neighbors.clone());
        if steering {
            dp.set_steering(hub.clone());
        }
        dp
    };
    let queues = [client_queue(c0, 0), client_queue(c1, 1)];
    Setup { server, queues, probes }
}

#[derive(Debug, Default)]
struct Outcome {
    received: Vec<u8>,
    client_dead: Option<DeadReason>,
    server_dead: Option<DeadReason>,
    connect_failed: Option<Ret>,
}

/// Client queue 0 sends `payload` to the echo server and reads it back; queue 1 only runs its cycles.
fn echo_from_queue0(s: &mut Setup, payload: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let (mut sev, mut ev0, mut ev1) =
        (Events::with_capacity(512), Events::with_capacity(512), Events::with_capacity(512));
    let mut now = Instant::from_millis(1);
    assert!(run(&mut s.server, now, &[Command::TcpListen { port: PORT, backlog: 16 }], &mut sev)[0].is_ok());
    let dst = Endpoint { addr: SERVER_IP, port: PORT };
    let h = run(&mut s.queues[0], now, &[Command::TcpConnect { dst, cookie: 1 }], &mut ev0)[0].expect("connect");
    let (mut sent, mut up, mut closed) = (0usize, false, false);
    let mut next: Vec<Command<'static>> = Vec::new();
    // Server: one connection, echoing what it received (kept at a stable address for zero-copy sendv).
    let mut echo: Vec<u8> = Vec::with_capacity(payload.len());
    let (mut s_handle, mut s_sent, mut s_eof, mut s_closed) = (None, 0usize, false, false);
    for _ in 0..MAX_STEPS {
        now = now + Duration::from_micros(100);
        for p in &s.probes {
            p.advance(now);
        }
        let mut cmds: Vec<Command<'_>> = std::mem::take(&mut next);
        let bufs;
        if up && sent < payload.len() {
            // SAFETY (test): `payload` outlives the transfer and does not change.
            bufs = [unsafe { AppBuf::new(payload.as_ptr().add(sent), payload.len() - sent) }];
            cmds.push(Command::TcpSendv { handle: h, bufs: &bufs });
        }
        let rets = run(&mut s.queues[0], now, &cmds, &mut ev0);
        for (cmd, r) in cmds.iter().zip(&rets) {
            if let (Command::TcpSendv { .. }, Ok(n)) = (cmd, r) {
                sent += *n as usize;
            }
        }
        for e in ev0.as_slice() {
            match *e {
                Event::TcpConnected { ret, .. } if ret != Ret::Ok => out.connect_failed = Some(ret),
                Event::TcpConnected { .. } => up = true,
                Event::TcpRecv { handle, data, len, .. } => {
                    // SAFETY (test): the dataplane lends `len` bytes at `data` until TcpRecvDone.
                    out.received.extend_from_slice(unsafe { std::slice::from_raw_parts(data, len as usize) });
                    next.push(Command::TcpRecvDone { handle, len: len as u64 });
                }
                Event::TcpDead { reason, .. } => out.client_dead = Some(reason),
                _ => {}
            }
        }
        if out.received.len() == payload.len() && !closed {
            next.push(Command::TcpClose { handle: h });
            closed = true;
        }
        run(&mut s.queues[1], now, &[], &mut ev1);
        assert!(ev1.is_empty(), "queue 1 has no connection to report on: {:?}", ev1.as_slice());

        let mut s_cmds: Vec<Command<'_>> = Vec::new();
        for e in sev.as_slice() {
            match *e {
                Event::TcpKnock { handle, .. } => {
                    s_handle = Some(handle);
                    s_cmds.push(Command::TcpAccept { handle, cookie: 7 });
                }
                Event::TcpRecv { handle, data, len, .. } => {
                    // SAFETY (test): lent until TcpRecvDone, sent below (we copy first).
                    echo.extend_from_slice(unsafe { std::slice::from_raw_parts(data, len as usize) });
                    assert!(echo.len() <= payload.len(), "more data than sent");
                    s_cmds.push(Command::TcpRecvDone { handle, len: len as u64 });
                }
                Event::TcpEof { .. } => s_eof = true,
                Event::TcpDead { reason, .. } => out.server_dead = Some(reason),
                _ => {}
            }
        }
        let sbuf;
        if let Some(sh) = s_handle {
            if s_sent < echo.len() {
                // SAFETY (test): `echo` never reallocates (capacity reserved) and its sent bytes never change.
                sbuf = [unsafe { AppBuf::new(echo.as_ptr().add(s_sent), echo.len() - s_sent) }];
                s_cmds.push(Command::TcpSendv { handle: sh, bufs: &sbuf });
            } else if s_eof && !s_closed {
                s_cmds.push(Command::TcpClose { handle: sh });
                s_closed = true;
            }
        }
        let rets = run(&mut s.server, now, &s_cmds, &mut sev);
        for (cmd, r) in s_cmds.iter().zip(&rets) {
            if let (Command::TcpSendv { .. }, Ok(n)) = (cmd, r) {
                s_sent += *n as usize;
            }
        }
        if (out.client_dead.is_some() && out.server_dead.is_some()) || out.connect_failed.is_some() {
            break;
        }
    }
    out
}

fn counter(dp: &mut Dataplane, c: Counter) -> u64 {
    dp.stats().get(c)
}

#[test]
fn replies_arriving_on_another_queue_are_steered_to_the_queue_that_connected() {
    let payload = pattern(1 << 20, 3);
    let mut s = setup(true);
    let out = echo_from_queue0(&mut s, &payload);
    let Setup { mut server, queues: [mut q0, mut q1], .. } = s;
    for c in [Counter::SteeredOut, Counter::SteeredIn, Counter::RxPackets, Counter::TcpRstSent, Counter::DropSteerFull]
    {
        eprintln!("{:<16} queue0 {:>8} queue1 {:>8}", c.name(), counter(&mut q0, c), counter(&mut q1, c));
    }
    assert_eq!(out.connect_failed, None);
    assert_eq!(out.received.len(), payload.len(), "bytes echoed");
    assert!(out.received == payload, "echoed bytes differ");
    assert_eq!(out.client_dead, Some(DeadReason::Closed));
    assert_eq!(out.server_dead, Some(DeadReason::Closed));
    // Every frame of the connection reached queue 1 and was run by queue 0.
    let steered = counter(&mut q1, Counter::SteeredOut);
    assert!(steered > 700, "the echoed MiB came through the inbox ({steered} frames)");
    assert_eq!(counter(&mut q0, Counter::SteeredIn), steered);
    assert_eq!(counter(&mut q0, Counter::RxPackets), 0, "the server never sent to queue 0's link");
    assert_eq!(counter(&mut q1, Counter::TcpRstSent) + counter(&mut q0, Counter::TcpRstSent), 0);
    assert_eq!(counter(&mut q1, Counter::DropSteerFull), 0);
    assert_eq!(counter(&mut server, Counter::TcpResetsReceived), 0);
    for (name, dp) in [("server", server), ("queue 0", q0), ("queue 1", q1)] {
        assert_eq!(dp.shutdown().available(), FRAMES, "{name} leaked mbufs");
    }
}

#[test]
fn without_steering_the_queue_that_did_not_connect_resets_the_connection() {
    // The problem the steering solves, shown on the same setup.
    let payload = pattern(4096, 5);
    let mut s = setup(false);
    let out = echo_from_queue0(&mut s, &payload);
    assert!(out.connect_failed.is_some() || out.received.len() < payload.len());
    assert!(counter(&mut s.queues[1], Counter::TcpRstSent) > 0, "queue 1 answered the SYN-ACK with RST");
}

#[test]
fn a_steered_frame_gets_the_checks_of_any_frame() {
    let mut s = setup(true);
    let hub = Steering::new(2).unwrap();
    s.queues[0].set_steering(hub.clone());
    let mut ev = Events::with_capacity(64);
    let now = Instant::from_millis(1);
    // Garbage, a runt, and a TCP segment with a broken checksum, as a misbehaving queue could pass on.
    hub.send(0, &[0xff; 100]).unwrap();
    hub.send(0, &[]).unwrap();
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&CLIENT_MAC);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&46u16.to_be_bytes());
    frame[23] = 6;
    frame[26..30].copy_from_slice(&SERVER_IP.0);
    frame[30..34].copy_from_slice(&CLIENT_IP.0);
    hub.send(0, &frame).unwrap();
    run(&mut s.queues[0], now, &[], &mut ev);
    let [mut q0, _] = s.queues;
    assert_eq!(counter(&mut q0, Counter::SteeredIn), 3);
    let stats = q0.stats();
    let dropped: u64 = Counter::ALL.iter().filter(|c| c.name().starts_with("drop_")).map(|&c| stats.get(c)).sum();
    assert_eq!(dropped, 3, "every steered frame was checked and dropped");
    assert_eq!(stats.get(Counter::DropIpChecksum), 1);
    assert!(ev.is_empty());
    assert!(!hub.has_frames(0));
    assert_eq!(q0.shutdown().available(), FRAMES, "no mbuf leaked");
}

#[test]
fn steered_frames_take_at_most_half_a_batch_while_the_nic_has_frames() {
    let (mut peer, end) = WireLink::pair(FaultConfig::default(), 9);
    let mut cfg = DataplaneConfig::new(Ipv4Cidr::new(CLIENT_IP, 24).unwrap());
    cfg.batch = 8;
    let mut q0 = Dataplane::new(Box::new(end.with_mac(CLIENT_MAC)), MbufPool::new(256, false).unwrap(), &cfg);
    let hub = Steering::new(2).unwrap();
    q0.set_steering(hub.clone());
    // A flood through the other queue (frames for another MAC: each is dropped after the usual checks) ...
    let stranger = [0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x08, 0x00];
    for _ in 0..20 {
        hub.send(0, &stranger).unwrap();
    }
    // ... and the queue's own NIC with as many.
    let mut peer_pool = MbufPool::new(64, false).unwrap();
    let mut batch = Batch::new();
    for _ in 0..20 {
        batch.push(peer_pool.alloc_from(&stranger).unwrap());
    }
    peer.transmit(&mut peer_pool, &mut batch);
    let mut ev = Events::with_capacity(64);
    let now = Instant::from_millis(1);
    for cycle in 1..=5 {
        run(&mut q0, now, &[], &mut ev);
        let taken = (counter(&mut q0, Counter::SteeredIn), counter(&mut q0, Counter::RxPackets));
        assert_eq!(taken, (4 * cycle, 4 * cycle), "half the batch each while both have frames");
    }
    // With the NIC drained, the inbox gets the whole batch.
    for _ in 0..16 {
        hub.send(0, &stranger).unwrap();
    }
    run(&mut q0, now, &[], &mut ev);
    assert_eq!(counter(&mut q0, Counter::SteeredIn), 20 + 8);
    run(&mut q0, now, &[], &mut ev);
    assert_eq!(counter(&mut q0, Counter::SteeredIn), 20 + 16);
    assert!(!hub.has_frames(0));
    assert_eq!(counter(&mut q0, Counter::DropEthNotForUs), 56);
    peer.maintain(&mut peer_pool);
    assert_eq!(q0.shutdown().available(), 256);
}

/// Queue 0 binds a UDP port and sends datagrams to a server that echoes them; every echo reaches queue 1.
/// Returns what queue 0 received and the counters of both queues.
fn udp_echo_from_queue0(mut s: Setup, datagrams: usize) -> (Vec<Vec<u8>>, Dataplane, Dataplane) {
    const CLIENT_PORT: u16 = 5000;
    let (mut sev, mut ev0, mut ev1) = (Events::with_capacity(64), Events::with_capacity(64), Events::with_capacity(64));
    let mut now = Instant::from_millis(1);
    assert!(run(&mut s.server, now, &[Command::UdpBind { port: PORT }], &mut sev)[0].is_ok());
    assert!(run(&mut s.queues[0], now, &[Command::UdpBind { port: CLIENT_PORT }], &mut ev0)[0].is_ok());
    let dst = Endpoint { addr: SERVER_IP, port: PORT };
    let mut received = Vec::new();
    let mut q0_next: Vec<Command<'static>> = Vec::new();
    for step in 0..2000u32 {
        now = now + Duration::from_micros(100);
        for p in &s.probes {
            p.advance(now);
        }
        let payload = (step as usize) < datagrams;
        let body = [step as u8; 32];
        let iov = [std::io::IoSlice::new(&body)];
        let mut cmds: Vec<Command<'_>> = std::mem::take(&mut q0_next);
        if payload {
            cmds.push(Command::UdpSend { src_port: CLIENT_PORT, dst, payload: &iov, cookie: step as u64 });
        }
        run(&mut s.queues[0], now, &cmds, &mut ev0);
        for e in ev0.as_slice() {
            if let Event::UdpRecv { buf, .. } = *e {
                // SAFETY (test): the dataplane lends `len` bytes at `ptr` until RecvDone.
                received.push(unsafe { std::slice::from_raw_parts(buf.ptr, buf.len as usize) }.to_vec());
                q0_next.push(Command::RecvDone { data: buf.ptr });
            }
        }
        run(&mut s.queues[1], now, &[], &mut ev1);
        assert!(ev1.is_empty(), "queue 1 bound nothing: {:?}", ev1.as_slice());
        // The server echoes each datagram from its port, copying it first (the send copies the payload too).
        let mut echoes: Vec<(Endpoint, Vec<u8>, *const u8)> = Vec::new();
        for e in sev.as_slice() {
            if let Event::UdpRecv { buf, src, .. } = *e {
                // SAFETY (test): lent until RecvDone, below.
                echoes.push((src, unsafe { std::slice::from_raw_parts(buf.ptr, buf.len as usize) }.to_vec(), buf.ptr));
            }
        }
        let iovs: Vec<[std::io::IoSlice<'_>; 1]> = echoes.iter().map(|(_, b, _)| [std::io::IoSlice::new(b)]).collect();
        let mut s_cmds: Vec<Command<'_>> = Vec::new();
        for ((src, _, ptr), iov) in echoes.iter().zip(&iovs) {
            s_cmds.push(Command::UdpSend { src_port: PORT, dst: *src, payload: iov, cookie: 0 });
            s_cmds.push(Command::RecvDone { data: *ptr });
        }
        run(&mut s.server, now, &s_cmds, &mut sev);
    }
    run(&mut s.queues[0], now, &std::mem::take(&mut q0_next), &mut ev0);
    let Setup { queues: [q0, q1], .. } = s;
    (received, q0, q1)
}

#[test]
fn udp_replies_arriving_on_another_queue_reach_the_queue_that_bound_the_port() {
    let (received, mut q0, mut q1) = udp_echo_from_queue0(setup(true), 50);
    assert_eq!(received.len(), 50, "every echo came back to queue 0");
    for (i, d) in received.iter().enumerate() {
        assert_eq!(d, &vec![i as u8; 32], "echo {i}");
    }
    assert_eq!(counter(&mut q1, Counter::SteeredOut), 50);
    assert_eq!(counter(&mut q0, Counter::SteeredIn), 50);
    assert_eq!(counter(&mut q1, Counter::IcmpUnreachSent), 0);
    assert_eq!(q0.shutdown().available(), FRAMES, "queue 0 leaked mbufs");
    assert_eq!(q1.shutdown().available(), FRAMES, "queue 1 leaked mbufs");
}

#[test]
fn without_steering_udp_replies_on_the_other_queue_are_refused() {
    let (received, _, mut q1) = udp_echo_from_queue0(setup(false), 5);
    assert!(received.is_empty());
    assert!(counter(&mut q1, Counter::DropUdpNoPort) > 0, "queue 1 had no such port");
}

/// Whether `fd` polls readable now.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY (test): one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn an_app_sleeping_on_its_queue_fd_wakes_for_frames_another_queue_steers_to_it() {
    let mut s = setup(true);
    let (mut sev, mut ev0, mut ev1) = (Events::with_capacity(64), Events::with_capacity(64), Events::with_capacity(64));
    let mut now = Instant::from_millis(1);
    assert!(run(&mut s.server, now, &[Command::TcpListen { port: PORT, backlog: 16 }], &mut sev)[0].is_ok());
    let fd = s.queues[0].app_poll_fd().expect("poll set").expect("a queue with steering has an fd");
    assert_eq!(s.queues[0].app_poll_fd().unwrap(), Some(fd), "one fd per queue");
    let dst = Endpoint { addr: SERVER_IP, port: PORT };
    run(&mut s.queues[0], now, &[Command::TcpConnect { dst, cookie: 1 }], &mut ev0)[0].expect("connect");
    // Until the server has the SYN, every side runs (queue 0 resolves the server's address first); queue 1 has
    // not run since the server answered.
    for _ in 0..100 {
        now = now + Duration::from_micros(100);
        for p in &s.probes {
            p.advance(now);
        }
        run(&mut s.queues[0], now, &[], &mut ev0);
        run(&mut s.server, now, &[], &mut sev);
        if counter(&mut s.server, Counter::TcpPassiveOpens) > 0 {
            break;
        }
        run(&mut s.queues[1], now, &[], &mut ev1);
    }
    assert_eq!(counter(&mut s.server, Counter::TcpPassiveOpens), 1, "the SYN reached the server");
    // The app takes control back and sleeps on the fd; the SYN-ACK comes back on queue 1's link.
    s.queues[0].app_may_sleep();
    assert!(!readable(fd), "nothing for queue 0 yet");
    assert_eq!(counter(&mut s.queues[1], Counter::SteeredOut), 0);
    let mut woke = false;
    for _ in 0..100 {
        now = now + Duration::from_micros(100);
        for p in &s.probes {
            p.advance(now);
        }
        run(&mut s.server, now, &[], &mut sev);
        run(&mut s.queues[1], now, &[], &mut ev1);
        if readable(fd) {
            woke = true;
            break;
        }
    }
    assert!(woke, "the SYN-ACK queue 1 steered to queue 0 must wake queue 0's app");
    assert!(counter(&mut s.queues[1], Counter::SteeredOut) >= 1);
    // The app calls back in: the steered SYN-ACK is run, the fd quiets down once the inbox is empty.
    s.queues[0].app_awake();
    run(&mut s.queues[0], now, &[], &mut ev0);
    assert!(
        ev0.as_slice().iter().any(|e| matches!(e, Event::TcpConnected { ret: Ret::Ok, .. })),
        "connected through the inbox: {:?}",
        ev0.as_slice()
    );
    s.queues[0].app_may_sleep();
    assert!(!readable(fd), "inbox drained: the fd must not stay readable");
}
