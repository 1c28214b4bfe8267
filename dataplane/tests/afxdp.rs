//! The AF_XDP backend against real veth pairs: a Linux host in a network namespace (198.18.0.0/15 only) sends
//! and receives UDP through our XSK, in native and generic XDP mode, on one queue and on two.
//!
//! Needs root (netns, veth, bpf, AF_XDP). Without it the tests fail with a clear message, unless
//! `IX_SKIP_PRIVILEGED=1` is set: then they print SKIP and pass. Every loop is bounded by a deadline; every
//! namespace and interface is removed by `TestHost`'s `Drop`, also when a test panics.
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::mbuf::{MbufPool, HEADROOM};
use dataplane::netns::{TestHost, TestHostConfig};
use dataplane::nic::afxdp::{errno, XdpMode, XdpProgram, XskConfig, XskQueue};
use dataplane::nic::{Batch, NicQueue};

/// The dataplane's address (no kernel address on `local_if`: the static neighbour entry in the namespace points
/// it at `local_if`'s MAC).
const LOCAL_IP: [u8; 4] = [198, 18, 0, 1];
/// The Linux end's address (`TestHostConfig::default()`).
const PEER_IP: [u8; 4] = [198, 18, 0, 2];
const LOCAL_PORT: u16 = 9000;
const DEADLINE: Duration = Duration::from_secs(10);
const POOL_FRAMES: u32 = 4096;

/// True when the test may run; false (after printing SKIP) when it must be skipped; panics otherwise.
fn privileged(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let problem = if !root {
        Some("not running as root (needs CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW for netns, XDP and AF_XDP)".to_string())
    } else {
        match dataplane::sys::xdp::socket() {
            Ok(_) => None,
            Err(e) => Some(format!("cannot create an AF_XDP socket: {e}")),
        }
    };
    let Some(problem) = problem else { return true };
    if std::env::var("IX_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: {problem}");
        return false;
    }
    panic!("{test}: {problem}; run as root, or set IX_SKIP_PRIVILEGED=1 to skip the privileged tests");
}

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A namespace host with a static neighbour entry for the dataplane address.
struct Rig {
    host: TestHost,
    local_mac: [u8; 6],
    peer_mac: [u8; 6],
}

fn rig(queues: u32) -> Rig {
    let host = TestHost::new(&TestHostConfig { queues, ..TestHostConfig::default() }).expect("create test host");
    let local_mac = dataplane::sys::interface_mac(&host.local_if).expect("local MAC");
    let peer_if = host.peer_if.clone();
    let peer_mac = host.run_in(move || dataplane::sys::interface_mac(&peer_if)).expect("enter ns").expect("peer MAC");
    // The dataplane answers ARP in the product; here the peer simply knows the MAC.
    host.exec(&[
        "ip",
        "neigh",
        "replace",
        &Ipv4Addr::from(LOCAL_IP).to_string(),
        "lladdr",
        &mac_str(local_mac),
        "dev",
        &host.peer_if,
        "nud",
        "permanent",
    ])
    .expect("static neighbour");
    Rig { host, local_mac, peer_mac }
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in c.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 (DF, TTL 64, given id) + UDP with correct checksums.
#[allow(clippy::too_many_arguments)]
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    src_port: u16,
    dst_port: u16,
    ip_id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src_ip);
    ip[16..20].copy_from_slice(&dst_ip);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let pseudo = [&src_ip[..], &dst_ip[..], &[0, 17], &(udp_len as u16).to_be_bytes()[..]].concat();
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// The UDP payload of `frame` if it is IPv4/UDP to `dst_port` (ignores the peer's IPv6 chatter).
fn udp_payload(frame: &[u8], dst_port: u16) -> Option<&[u8]> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 || frame[14] != 0x45 {
        return None;
    }
    if u16::from_be_bytes([frame[36], frame[37]]) != dst_port {
        return None;
    }
    Some(&frame[42..])
}

/// Checks that `got` is exactly the frame Linux should have sent for `payload` (all bytes; the IP id is taken from
/// `got`, and both checksums must then match ours).
fn assert_exact_frame(rig: &Rig, got: &[u8], src_port: u16, payload: &[u8]) {
    let ip_id = u16::from_be_bytes([got[18], got[19]]);
    let want = udp_frame(rig.local_mac, rig.peer_mac, PEER_IP, LOCAL_IP, src_port, LOCAL_PORT, ip_id, payload);
    assert_eq!(got.len(), want.len(), "frame length");
    assert_eq!(&got[..14], &want[..14], "Ethernet header");
    assert_eq!(&got[14..34], &want[14..34], "IPv4 header (checksum included)");
    assert_eq!(&got[34..42], &want[34..42], "UDP header (complete checksum: the peer has TX offload off)");
    assert_eq!(&got[42..], payload, "payload");
}

/// Runs `maintain` + `receive` until `pred` says enough UDP frames to `dst_port` arrived, or the deadline.
fn collect(
    q: &mut XskQueue,
    pool: &mut MbufPool,
    dst_port: u16,
    got: &mut Vec<(Vec<u8>, usize)>,
    mut done: impl FnMut(&[(Vec<u8>, usize)]) -> bool,
) {
    let start = Instant::now();
    let mut batch = Batch::new();
    while !done(got) && start.elapsed() < DEADLINE {
        q.maintain(pool);
        if q.receive(pool, &mut batch, 64) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        for m in batch.drain(..) {
            let data = pool.data(&m);
            if udp_payload(data, dst_port).is_some() {
                got.push((data.to_vec(), m.offset()));
            }
            pool.free(m);
        }
    }
}

/// Sends `payloads` from `PEER_IP:src_port` to `LOCAL_IP:LOCAL_PORT` from inside the namespace.
fn send_from_peer(host: &TestHost, src_port: u16, payloads: Vec<Vec<u8>>) {
    host.run_in(move || -> std::io::Result<()> {
        let s = UdpSocket::bind(SocketAddrV4::new(PEER_IP.into(), src_port))?;
        for p in &payloads {
            s.send_to(p, SocketAddrV4::new(LOCAL_IP.into(), LOCAL_PORT))?;
        }
        Ok(())
    })
    .expect("enter ns")
    .expect("send from peer");
}

fn open_queue(prog: &Arc<XdpProgram>, ifname: &str, qid: u32, pool: &mut MbufPool) -> XskQueue {
    XskQueue::open(prog, ifname, qid, pool, XskConfig::default()).expect("open XSK")
}

/// RX of exact frames, TX of a hand-built frame, and the pool back to full: one mode.
fn roundtrip(test: &str, mode: XdpMode) {
    if !privileged(test) {
        return;
    }
    init_log();
    let rig = rig(1);
    let ifname = rig.host.local_if.clone();
    let prog = XdpProgram::attach(&ifname, 1, mode).expect("attach XDP");
    assert_eq!(prog.mode(), mode);
    let mut pool = MbufPool::new(POOL_FRAMES, false).expect("pool");
    let mut q = open_queue(&prog, &ifname, 0, &mut pool);
    assert!(!q.is_zero_copy(), "veth has no zero-copy AF_XDP: None must fall back to copy mode");
    assert_eq!(q.driver(), "veth");
    assert!(q.caps().rx_partial_checksums, "veth => partial checksums possible");
    assert_eq!(q.caps().mtu, 1500);
    assert_eq!(q.mac(), rig.local_mac);
    assert_eq!(q.frames_held(), q.fill_target());
    assert_eq!(pool.available(), POOL_FRAMES - q.fill_target());

    // RX: small datagrams and one full-MTU one, each must arrive byte for byte.
    let src_port = 5555;
    let mut payloads: Vec<Vec<u8>> = (0..16).map(|i| format!("ix-afxdp {mode} rx #{i}").into_bytes()).collect();
    payloads.push((0..1472u32).map(|i| (i % 251) as u8).collect());
    send_from_peer(&rig.host, src_port, payloads.clone());
    let mut got = Vec::new();
    collect(&mut q, &mut pool, LOCAL_PORT, &mut got, |g| g.len() >= payloads.len());
    assert_eq!(got.len(), payloads.len(), "all datagrams received (stats: {:?})", q.stats());
    for ((frame, off), p) in got.iter().zip(&payloads) {
        assert_exact_frame(&rig, frame, src_port, p);
        assert_eq!(*off, HEADROOM, "copy mode puts data at XDP_PACKET_HEADROOM");
    }
    assert!(q.stats().rx_frames >= payloads.len() as u64);
    assert_eq!(q.stats().rx_errors, 0);

    // TX: a frame built by hand in an mbuf reaches a UDP socket in the namespace.
    let (ready_tx, ready_rx) = mpsc::channel();
    let payload = format!("hello from the dataplane over {mode} XDP").into_bytes();
    let expect = payload.clone();
    std::thread::scope(|sc| {
        let host = &rig.host;
        let receiver = sc.spawn(move || {
            host.run_in(move || -> std::io::Result<(Vec<u8>, std::net::SocketAddr)> {
                let s = UdpSocket::bind(SocketAddrV4::new(PEER_IP.into(), 7777))?;
                s.set_read_timeout(Some(DEADLINE))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 2048];
                let (n, from) = s.recv_from(&mut buf)?;
                Ok((buf[..n].to_vec(), from))
            })
        });
        ready_rx.recv_timeout(DEADLINE).expect("receiver ready");
        let frame = udp_frame(rig.peer_mac, rig.local_mac, LOCAL_IP, PEER_IP, LOCAL_PORT, 7777, 1, &payload);
        let m = pool.alloc_from(&frame).expect("mbuf");
        let mut batch = Batch::new();
        batch.push(m);
        q.transmit(&mut pool, &mut batch);
        assert!(batch.is_empty(), "the TX ring accepted the frame");
        let start = Instant::now();
        while !receiver.is_finished() && start.elapsed() < DEADLINE {
            q.maintain(&mut pool);
            std::thread::sleep(Duration::from_micros(200));
        }
        let (data, from) = receiver.join().expect("receiver thread").expect("enter ns").expect("peer receives");
        assert_eq!(data, expect, "payload received exactly");
        assert_eq!(from, SocketAddrV4::new(LOCAL_IP.into(), LOCAL_PORT).into());
    });
    // The completion comes back and the frame returns to the pool; no frame is lost on the way.
    let start = Instant::now();
    while q.tx_in_flight() != 0 && start.elapsed() < DEADLINE {
        q.maintain(&mut pool);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(q.tx_in_flight(), 0, "TX frame completed");
    assert_eq!(pool.available() + q.frames_held(), POOL_FRAMES, "frames conserved");
    assert_eq!(q.stats().tx_frames, 1);

    // A burst larger than the kernel's 32 frames per copy-mode kick: all of it arrives, in order.
    let burst = 128usize;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|sc| {
        let host = &rig.host;
        let receiver = sc.spawn(move || {
            host.run_in(move || -> std::io::Result<Vec<Vec<u8>>> {
                let s = UdpSocket::bind(SocketAddrV4::new(PEER_IP.into(), 7778))?;
                s.set_read_timeout(Some(DEADLINE))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while got.len() < burst {
                    let n = s.recv(&mut buf)?;
                    got.push(buf[..n].to_vec());
                }
                Ok(got)
            })
        });
        ready_rx.recv_timeout(DEADLINE).expect("receiver ready");
        let mut batch = Batch::new();
        for i in 0..burst {
            let p = format!("burst {i:03}").into_bytes();
            let frame = udp_frame(rig.peer_mac, rig.local_mac, LOCAL_IP, PEER_IP, LOCAL_PORT, 7778, i as u16, &p);
            batch.push(pool.alloc_from(&frame).expect("mbuf"));
        }
        q.transmit(&mut pool, &mut batch);
        assert!(batch.is_empty(), "{burst} frames fit the TX ring");
        let start = Instant::now();
        while !receiver.is_finished() && start.elapsed() < DEADLINE {
            q.maintain(&mut pool);
            std::thread::sleep(Duration::from_micros(200));
        }
        let got = receiver.join().expect("receiver thread").expect("enter ns").expect("peer receives the burst");
        let want: Vec<Vec<u8>> = (0..burst).map(|i| format!("burst {i:03}").into_bytes()).collect();
        assert_eq!(got, want, "burst delivered completely and in order");
    });
    let start = Instant::now();
    while q.tx_in_flight() != 0 && start.elapsed() < DEADLINE {
        q.maintain(&mut pool);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(q.tx_in_flight(), 0, "burst completed");
    assert_eq!(pool.available() + q.frames_held(), POOL_FRAMES, "frames conserved");
    assert_eq!(q.stats().tx_frames, 1 + burst as u64);

    let k = q.refresh_stats().expect("XDP_STATISTICS");
    assert_eq!(k.rx_invalid_descs + k.tx_invalid_descs, 0, "{k:?}");
    assert_eq!(q.stats().tx_errors, 0);
    q.release(&mut pool);
    assert!(!q.is_open());
    assert_eq!(q.frames_held(), 0);
    assert_eq!(pool.available(), POOL_FRAMES, "every frame back in the pool after release");
    // The kernel frees the queue in a deferred teardown; measure how long that takes.
    let start = Instant::now();
    let ifindex = prog.ifindex();
    while !dataplane::sys::xdp::queue_is_free(ifindex, 0, pool.region()).expect("probe") {
        assert!(start.elapsed() < DEADLINE, "queue never freed after close");
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("{mode}: queue bindable again {:?} after release", start.elapsed());
    drop(q);
    drop(prog);
    // Dropping the program closes the link fd, which detaches it. "Eventually": a child forked by a parallel test
    // holds a copy of every fd until it execs (they are all O_CLOEXEC), so poll, bounded.
    let start = Instant::now();
    loop {
        let out = std::process::Command::new("ip").args(["-d", "link", "show", "dev", &ifname]).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.contains("prog/xdp") {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "dropping the program detaches it: {out}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn native_xdp_receives_and_transmits_exact_frames() {
    roundtrip("native_xdp_receives_and_transmits_exact_frames", XdpMode::Native);
}

#[test]
fn generic_xdp_receives_and_transmits_exact_frames() {
    roundtrip("generic_xdp_receives_and_transmits_exact_frames", XdpMode::Generic);
}

#[test]
fn two_queues_each_with_a_socket() {
    if !privileged("two_queues_each_with_a_socket") {
        return;
    }
    init_log();
    let rig = rig(2);
    let ifname = rig.host.local_if.clone();
    let prog = XdpProgram::attach(&ifname, 2, XdpMode::Native).expect("attach XDP");
    let mut pools = [MbufPool::new(1024, false).unwrap(), MbufPool::new(1024, false).unwrap()];
    let mut queues: Vec<XskQueue> =
        (0..2).map(|qid| open_queue(&prog, &ifname, qid, &mut pools[qid as usize])).collect();
    assert!(queues.iter().all(XskQueue::is_open));

    // One datagram from each of 64 source ports: the peer hashes flows over its two TX queues, and veth delivers
    // TX queue i of the peer to RX queue i here.
    let n = 64u16;
    for i in 0..n {
        send_from_peer(&rig.host, 6000 + i, vec![format!("flow {i}").into_bytes()]);
    }
    let mut got: [Vec<(Vec<u8>, usize)>; 2] = [Vec::new(), Vec::new()];
    let start = Instant::now();
    while got[0].len() + got[1].len() < n as usize && start.elapsed() < DEADLINE {
        for (qi, q) in queues.iter_mut().enumerate() {
            let total_before = got[qi].len();
            collect(q, &mut pools[qi], LOCAL_PORT, &mut got[qi], |g| g.len() > total_before);
        }
    }
    let mut ports: Vec<u16> = got.iter().flatten().map(|(f, _)| u16::from_be_bytes([f[34], f[35]])).collect();
    ports.sort_unstable();
    assert_eq!(ports, (6000..6000 + n).collect::<Vec<_>>(), "every flow arrived exactly once");
    eprintln!("queue 0 got {} flows, queue 1 got {}", got[0].len(), got[1].len());
    assert!(!got[0].is_empty() && !got[1].is_empty(), "both queues receive");
    for (f, _) in got.iter().flatten() {
        let sport = u16::from_be_bytes([f[34], f[35]]);
        assert_exact_frame(&rig, f, sport, format!("flow {}", sport - 6000).as_bytes());
    }
    for (q, pool) in queues.iter_mut().zip(pools.iter_mut()) {
        q.release(pool);
        assert_eq!(pool.available(), pool.capacity());
    }
}

#[test]
fn setup_errors_are_clear() {
    if !privileged("setup_errors_are_clear") {
        return;
    }
    init_log();
    let e = XdpProgram::attach("ixnosuchif0", 1, XdpMode::Native).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");

    let rig = rig(1);
    let ifname = rig.host.local_if.clone();
    let prog = XdpProgram::attach(&ifname, 4, XdpMode::Auto).expect("attach XDP");
    assert_eq!(prog.mode(), XdpMode::Native, "veth has native XDP");

    let again = XdpProgram::attach(&ifname, 1, XdpMode::Native).unwrap_err();
    assert!(again.to_string().contains("already attached"), "{again}");
    assert_eq!(errno(&again), libc::EBUSY, "{again}");
    let other = XdpProgram::attach(&ifname, 1, XdpMode::Generic).unwrap_err();
    assert!(other.to_string().contains("already attached"), "{other}");
    assert_eq!(errno(&other), libc::EEXIST, "{other}");
    let auto = XdpProgram::attach(&ifname, 1, XdpMode::Auto).unwrap_err();
    assert_eq!(errno(&auto), libc::EBUSY, "Auto does not fall back when the interface is taken: {auto}");

    let mut pool = MbufPool::new(256, false).unwrap();
    let e = XskQueue::open(&prog, &ifname, 4, &mut pool, XskConfig::default()).unwrap_err();
    assert!(e.to_string().contains("outside the XSKMAP"), "{e}");
    let e = XskQueue::open(&prog, &ifname, 2, &mut pool, XskConfig::default()).unwrap_err();
    assert!(e.to_string().contains("has 1 RX queue"), "{e}");
    let e = XskQueue::open(&prog, &ifname, 0, &mut pool, XskConfig { zero_copy: Some(true), ..XskConfig::default() })
        .unwrap_err();
    assert!(e.to_string().contains("zero-copy"), "{e}");
    assert_eq!(pool.available(), 256, "failed opens take no frames");

    let mut q = open_queue(&prog, &ifname, 0, &mut pool);
    let mut pool2 = MbufPool::new(256, false).unwrap();
    let e = XskQueue::open(&prog, &ifname, 0, &mut pool2, XskConfig::default()).unwrap_err();
    assert!(e.to_string().contains("already has an AF_XDP socket"), "{e}");
    // A pool that is not the queue's UMEM is refused, not trusted.
    let mut batch = Batch::new();
    assert_eq!(q.receive(&mut pool2, &mut batch, 64), 0);
    q.maintain(&mut pool2);
    assert_eq!(pool2.available(), 256);
    q.release(&mut pool);
    assert_eq!(pool.available(), 256);
    drop(q);

    // Dropping without release leaves the kernel's frames out of the pool, and nothing worse.
    let mut pool3 = MbufPool::new(256, false).unwrap();
    let q = open_queue(&prog, &ifname, 0, &mut pool3);
    let held = q.frames_held();
    drop(q);
    assert_eq!(pool3.available(), 256 - held);
}

#[test]
fn native_attach_explains_veth_queue_mismatch() {
    if !privileged("native_attach_explains_veth_queue_mismatch") {
        return;
    }
    init_log();
    let rig = rig(2);
    let ifname = rig.host.local_if.clone();
    // One RX queue here, two TX queues on the peer: native XDP on veth refuses with ENOSPC.
    let out = std::process::Command::new("ethtool").args(["-L", &ifname, "rx", "1"]).output().expect("ethtool");
    assert!(out.status.success(), "ethtool -L: {}", String::from_utf8_lossy(&out.stderr));
    let e = XdpProgram::attach(&ifname, 1, XdpMode::Native).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    assert!(e.to_string().contains("RX queues"), "{e}");
    // Auto falls back to generic, which does not care.
    let prog = XdpProgram::attach(&ifname, 1, XdpMode::Auto).expect("auto falls back");
    assert_eq!(prog.mode(), XdpMode::Generic);
}

#[test]
fn release_is_safe_while_a_copy_of_the_socket_fd_lives() {
    if !privileged("release_is_safe_while_a_copy_of_the_socket_fd_lives") {
        return;
    }
    init_log();
    let rig = rig(1);
    let ifname = rig.host.local_if.clone();
    let prog = XdpProgram::attach(&ifname, 1, XdpMode::Native).expect("attach XDP");
    let frames = 1024;
    let mut pool = MbufPool::new(frames, false).unwrap();
    let mut q = open_queue(&prog, &ifname, 0, &mut pool);
    // What a child forked by another thread has until it execs: a second reference to the socket, which keeps it
    // bound after our close, with our frames still on its fill ring.
    let fd = q.poll_fd().expect("open socket");
    // SAFETY: `fd` is the queue's open socket; it stays open until `release` below, and we only duplicate it.
    let copy = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().expect("dup");
    q.release(&mut pool);
    assert_eq!(pool.available(), frames, "release returns every frame even though the socket lives on");

    // Reuse every frame, then send traffic at the interface: none of it may land in our frames.
    let mut held: Vec<_> = (0..frames).map(|_| pool.alloc().expect("frame")).collect();
    for m in &mut held {
        pool.tail_room_mut(m).fill(0xa5);
    }
    send_from_peer(&rig.host, 5556, (0..64).map(|i| format!("after release #{i}").into_bytes()).collect());
    std::thread::sleep(Duration::from_millis(200));
    for m in &mut held {
        assert!(pool.tail_room_mut(m).iter().all(|&b| b == 0xa5), "frame {} was written after release", m.index());
    }
    for m in held {
        pool.free(m);
    }
    drop(copy);
}
