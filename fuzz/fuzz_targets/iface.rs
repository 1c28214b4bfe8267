//! The whole stack under arbitrary input: frames (length-prefixed in the fuzz input) arrive from a peer over the
//! in-memory wire into a dataplane with a bound UDP port; interleaved app commands include forged `RecvDone`
//! pointers and sends to arbitrary destinations. After each input every lent buffer is given back and no mbuf
//! may be missing. The dataplane is kept across inputs (building a pool per input would dominate the run).
#![no_main]

use std::cell::RefCell;
use std::io::IoSlice;

use dataplane::api::{Command, Endpoint, Event, Events};
use dataplane::dataplane::{Dataplane, DataplaneConfig};
use dataplane::mbuf::MbufPool;
use dataplane::nic::wire::{FaultConfig, WireEnd, WireLink};
use dataplane::nic::{Batch, NicQueue};
use dataplane::time::{Duration, Instant};
use dataplane::wire::{Ipv4Address, Ipv4Cidr};
use libfuzzer_sys::fuzz_target;

const FRAMES: u32 = 512;

struct Rig {
    dp: Dataplane,
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
        Rig { dp, peer: b, peer_pool: MbufPool::new(256, false).unwrap(), events, now: Instant::from_millis(1) }
    });
}

fuzz_target!(|data: &[u8]| {
    RIG.with(|rig| {
        let rig = &mut *rig.borrow_mut();
        let mut rest = data;
        let mut batch = Batch::new();
        let mut sends: Vec<(u32, u16, Vec<u8>)> = Vec::new();
        let mut forged: Vec<usize> = Vec::new();
        while rest.len() >= 2 {
            let tag = rest[0];
            let len = (rest[1] as usize) << 3 | (tag as usize & 7);
            rest = &rest[2..];
            let take = len.min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            match tag >> 6 {
                // An app send to an arbitrary destination and payload.
                0 if chunk.len() >= 6 => {
                    let dst = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    sends.push((dst, u16::from_be_bytes([chunk[4], chunk[5]]), chunk[6..].to_vec()));
                }
                // A forged RecvDone pointer.
                1 if chunk.len() >= 8 => forged.push(usize::from_le_bytes(chunk[..8].try_into().unwrap())),
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
        for _ in 0..3 {
            rig.now = rig.now + Duration::from_millis(400);
            let mut rets = vec![Ok(0); cmds.len()];
            rig.events.reset(256);
            rig.dp.run_io(rig.now, &cmds, &mut rets, &mut rig.events);
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
            let done: Vec<Command<'_>> = done.into_iter().map(|d| Command::RecvDone { data: d }).collect();
            let mut rets = vec![Ok(0); done.len()];
            rig.events.reset(256);
            rig.dp.run_io(rig.now, &done, &mut rets, &mut rig.events);
            assert!(rets.iter().all(|r| r.is_ok()), "a lent buffer could not be given back");
            let mut out = Batch::new();
            rig.peer.receive(&mut rig.peer_pool, &mut out, 256);
            for m in out.drain(..) {
                rig.peer_pool.free(m);
            }
        }
        // Frames may wait for ARP (parked, bounded) but nothing else may hold an mbuf.
        let in_use = rig.dp.frames_in_use();
        assert!(in_use <= 64, "mbufs missing: {in_use}");
        assert_eq!(rig.peer_pool.available(), rig.peer_pool.capacity());
    });
});
