//! The whole stack under arbitrary input: frames (length-prefixed in the fuzz input) arrive from a peer over the
//! in-memory wire into a dataplane with a bound UDP port and a TCP listener; interleaved app commands include
//! forged `RecvDone` pointers, UDP sends to arbitrary destinations, and TCP commands (connect, sendv, recv_done,
//! close, abort, accept, reject) on real, stale and made-up handles. After each input every lent buffer is given
//! back and no mbuf may be missing beyond what open connections may hold. The dataplane is kept across inputs
//! (building a pool per input would dominate the run).
#![no_main]

use std::cell::RefCell;
use std::io::IoSlice;

use dataplane::api::{AppBuf, Command, Endpoint, Event, Events};
use dataplane::stats::Counter;
use dataplane::dataplane::{Dataplane, DataplaneConfig};
use dataplane::mbuf::MbufPool;
use dataplane::nic::wire::{FaultConfig, WireEnd, WireLink};
use dataplane::nic::{Batch, NicQueue};
use dataplane::time::{Duration, Instant};
use dataplane::wire::{Ipv4Address, Ipv4Cidr};
use libfuzzer_sys::fuzz_target;

const FRAMES: u32 = 512;

static DATA: [u8; 65536] = [0x5a; 65536];

struct Rig {
    dp: Dataplane,
    handles: Vec<u64>,
    peer: WireEnd,
    peer_pool: MbufPool,
    events: Events,
    now: Instant,
}

thread_local! {
    static RIG: RefCell<Rig> = RefCell::new({
        let (a, b) = WireLink::pair(FaultConfig::default(), 1);
        let cidr = Ipv4Cidr::new(Ipv4Address([198, 18, 0, 1]), 24).unwrap();
        let mut dp = Dataplane::new(Box::new(a), MbufPool::new(FRAMES, false).unwrap(), &DataplaneConfig::new(cidr));
        let mut events = Events::with_capacity(256);
        let mut rets = [Ok(0)];
        dp.run_io(Instant::from_millis(1), &[Command::UdpBind { port: 7 }], &mut rets, &mut events);
        dp.run_io(Instant::from_millis(1), &[Command::TcpListen { port: 80, backlog: 8 }], &mut rets, &mut events);
        Rig { dp, handles: Vec::new(), peer: b, peer_pool: MbufPool::new(256, false).unwrap(), events, now: Instant::from_millis(1) }
    });
}

fuzz_target!(|data: &[u8]| {
    RIG.with(|rig| {
        let rig = &mut *rig.borrow_mut();
        let mut rest = data;
        let mut batch = Batch::new();
        let mut sends: Vec<(u32, u16, Vec<u8>)> = Vec::new();
        let mut forged: Vec<usize> = Vec::new();
        let mut tcp: Vec<(u8, u64, u64)> = Vec::new();
        while rest.len() >= 2 {
            let tag = rest[0];
            let len = (rest[1] as usize) << 3 | (tag as usize & 7);
            rest = &rest[2..];
            let take = len.min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            match tag >> 5 {
                // An app send to an arbitrary destination and payload.
                0 | 1 if chunk.len() >= 6 => {
                    let dst = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    sends.push((dst, u16::from_be_bytes([chunk[4], chunk[5]]), chunk[6..].to_vec()));
                }
                // A forged RecvDone pointer.
                2 if chunk.len() >= 8 => forged.push(usize::from_le_bytes(chunk[..8].try_into().unwrap())),
                // A TCP command on a known handle (or a made-up one), with a length argument.
                3 if chunk.len() >= 10 => {
                    let handle = if chunk[1] & 0x80 == 0 && !rig.handles.is_empty() {
                        rig.handles[chunk[1] as usize % rig.handles.len()]
                    } else {
                        u64::from_le_bytes(chunk[2..10].try_into().unwrap())
                    };
                    let arg = u16::from_le_bytes([chunk[2], chunk[3]]) as u64;
                    tcp.push((chunk[0], handle, arg));
                }
                // A frame from the peer.
                _ if !chunk.is_empty() && chunk.len() <= 1514 => {
                    if let Some(m) = rig.peer_pool.alloc_from(chunk) {
                        if batch.try_push(m).is_err() {
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        rig.peer.transmit(&mut rig.peer_pool, &mut batch);
        for m in batch.drain(..) {
            rig.peer_pool.free(m);
        }
        let payloads: Vec<[IoSlice<'_>; 1]> = sends.iter().map(|(_, _, p)| [IoSlice::new(p)]).collect();
        let mut cmds: Vec<Command<'_>> = sends
            .iter()
            .zip(&payloads)
            .map(|((dst, port, _), p)| Command::UdpSend {
                src_port: 7,
                dst: Endpoint { addr: Ipv4Address::from_u32(*dst), port: *port },
                payload: p,
                cookie: 0,
            })
            .collect();
        cmds.extend(forged.iter().map(|&p| Command::RecvDone { data: p as *const u8 }));
        let bufs: Vec<[AppBuf; 1]> =
            tcp.iter().map(|&(_, _, arg)| [AppBuf::from_static(&DATA[..(arg as usize).min(DATA.len())])]).collect();
        for (i, &(op, handle, arg)) in tcp.iter().enumerate() {
            let peer = Endpoint { addr: Ipv4Address([198, 18, 0, (op >> 3) % 4]), port: 80 + (op >> 5) as u16 };
            cmds.push(match op % 8 {
                0 => Command::TcpConnect { dst: peer, cookie: arg },
                1 => Command::TcpSendv { handle, bufs: &bufs[i] },
                2 => Command::TcpRecvDone { handle, len: arg },
                3 => Command::TcpClose { handle },
                4 => Command::TcpAbort { handle },
                5 => Command::TcpAccept { handle, cookie: arg },
                6 => Command::TcpReject { handle },
                _ => Command::TcpListen { port: arg as u16, backlog: (op >> 3) as u32 },
            });
        }
        for _ in 0..3 {
            rig.now = rig.now + Duration::from_millis(400);
            let mut rets = vec![Ok(0); cmds.len()];
            rig.events.reset(256);
            rig.dp.run_io(rig.now, &cmds, &mut rets, &mut rig.events);
            for (c, r) in cmds.iter().zip(&rets) {
                if let (Command::TcpConnect { .. }, Ok(h)) = (c, r) {
                    rig.handles.push(*h);
                }
            }
            cmds.clear();
            let done: Vec<*const u8> = rig
                .events
                .as_slice()
                .iter()
                .filter_map(|e| match e {
                    Event::UdpRecv { buf, .. } => Some(buf.ptr),
                    _ => None,
                })
                .collect();
            let mut done: Vec<Command<'_>> = done.into_iter().map(|d| Command::RecvDone { data: d }).collect();
            for e in rig.events.as_slice() {
                match *e {
                    Event::TcpKnock { handle, .. } => {
                        rig.handles.push(handle);
                        done.push(Command::TcpAccept { handle, cookie: 0 });
                    }
                    Event::TcpRecv { handle, len, .. } => done.push(Command::TcpRecvDone { handle, len: len as u64 }),
                    _ => {}
                }
            }
            if rig.handles.len() > 64 {
                rig.handles.drain(..32);
            }
            let mut rets = vec![Ok(0); done.len()];
            // No event room: this cycle receives nothing, so nothing is lent that the harness would not see.
            let mut spare = Events::with_capacity(0);
            rig.dp.run_io(rig.now, &done, &mut rets, &mut spare);
            for (c, r) in done.iter().zip(&rets) {
                // Giving back what was just lent must work (an accept may race a reset: not checked).
                if matches!(c, Command::RecvDone { .. } | Command::TcpRecvDone { .. }) {
                    assert!(r.is_ok(), "a lent buffer could not be given back: {c:?} {r:?}");
                }
            }
            let mut out = Batch::new();
            rig.peer.receive(&mut rig.peer_pool, &mut out, 256);
            for m in out.drain(..) {
                rig.peer_pool.free(m);
            }
        }
        // Events that did not fit the array wait for the next cycle; collect them (and give back what they lend).
        for _ in 0..64 {
            if rig.events.deferred() == 0 {
                break;
            }
            rig.events.reset(256);
            rig.dp.run_io(rig.now, &[], &mut [], &mut rig.events);
            let back: Vec<Command<'_>> = rig
                .events
                .as_slice()
                .iter()
                .filter_map(|e| match *e {
                    Event::UdpRecv { buf, .. } => Some(Command::RecvDone { data: buf.ptr }),
                    Event::TcpRecv { handle, len, .. } => Some(Command::TcpRecvDone { handle, len: len as u64 }),
                    _ => None,
                })
                .collect();
            let mut rets = vec![Ok(0); back.len()];
            let mut spare = Events::with_capacity(0); // no room: no RX in this cycle, nothing new lent
            rig.dp.run_io(rig.now, &back, &mut rets, &mut spare);
            assert!(rets.iter().all(|r| r.is_ok()), "deferred lent buffers could not be given back: {rets:?}");
        }
        // Frames may wait for ARP (parked, bounded) or out of order in an open connection; nothing else may
        // hold an mbuf.
        let conns = rig.dp.stats().get(Counter::TcpConnections);
        let in_use = rig.dp.frames_in_use() as u64;
        if in_use > 64 + 8 * conns {
            let s = rig.dp.stats();
            for c in Counter::ALL {
                if s.get(c) > 0 {
                    eprintln!("{} {}", c.name(), s.get(c));
                }
            }
            eprintln!("{:#?}", rig.dp.tcp_describe());
        }
        assert!(in_use <= 64 + 8 * conns, "mbufs missing: {in_use} in use with {conns} connections");
        assert_eq!(rig.peer_pool.available(), rig.peer_pool.capacity());
    });
});
