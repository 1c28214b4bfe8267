//! The multi-queue TAP backend against the real kernel: frames both ways through a TAP moved into a namespace,
//! checksum completion, and eBPF steering checked against its Rust twin.
//!
//! Needs root (CAP_NET_ADMIN for TAP and namespaces, CAP_BPF for the steering program) and iproute2. Without
//! them every test fails with a message saying so, unless `IX_SKIP_PRIVILEGED=1`, which turns them into a
//! printed SKIP. Addresses are in 198.18.0.0/15 and live only in namespaces these tests create and delete.
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::mbuf::MbufPool;
use dataplane::nic::tap::{self, steer_queue, steering_program, TapConfig, TapQueue};
use dataplane::nic::{Batch, NicQueue};
use dataplane::sys::tap::{SteeringProgram, TapDevice};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether to run; `false` (after printing SKIP) only when `IX_SKIP_PRIVILEGED=1`. Fails loudly otherwise.
fn privileged(test: &str) -> bool {
    if std::env::var("IX_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: IX_SKIP_PRIVILEGED=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{test} needs root (CAP_NET_ADMIN for TAP devices and namespaces, CAP_BPF for steering); run it as root, \
         or set IX_SKIP_PRIVILEGED=1 to skip it"
    );
    true
}

/// A unique short tag for interface and namespace names (IFNAMSIZ is 16).
fn tag() -> String {
    format!("{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
}

/// A network namespace, deleted on drop (also when the test panics).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let ns = Netns { name: format!("ixtap{}", tag()) };
        run(&["ip", "netns", "add", &ns.name]);
        // No IPv6 chatter (router solicitations, MLD) on the TAP: the tests expect only their own frames.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full);
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full);
    }

    /// Runs `f` on a new thread inside the namespace (sockets it opens live there).
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            dataplane::sys::enter_netns(&file).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A TAP with `queues` queues, moved into a fresh namespace as `198.18.<net>.2/24`, with a static neighbour entry
/// for the dataplane at `198.18.<net>.1`.
struct Setup {
    queues: Vec<TapQueue>,
    kernel_mac: [u8; 6],
    net: u8,
    // Declared last, dropped last: the queues close first, then the namespace goes.
    ns: Netns,
}

const DP_MAC: [u8; 6] = [0x02, 0x49, 0x58, 0xaa, 0xbb, 0x01];

impl Setup {
    fn new(queues: u32, net: u8) -> Setup {
        let ns = Netns::new();
        let name = format!("ixtap{}", tag());
        let cfg = TapConfig { mac: DP_MAC, ..TapConfig::default() };
        let queues = tap::open(&name, queues, &cfg).unwrap_or_else(|e| panic!("open TAP {name}: {e}"));
        assert_eq!(queues[0].interface_name().unwrap(), name);
        let kernel_mac = queues[0].kernel_mac().unwrap();
        assert_ne!(kernel_mac, DP_MAC);
        run(&["ip", "link", "set", &name, "netns", &ns.name]);
        // The interface left our namespace, but its fds still reach it.
        assert!(dataplane::sys::if_nametoindex(&name).is_err(), "{name} should have moved");
        for q in &queues {
            assert_eq!(q.interface_name().unwrap(), name, "queue fd works after the move");
        }
        let peer = format!("198.18.{net}.2/24");
        let dp = format!("198.18.{net}.1");
        let mac = DP_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ns.ip(&["addr", "add", &peer, "dev", &name]);
        ns.ip(&["link", "set", &name, "up"]);
        ns.ip(&["neigh", "add", &dp, "lladdr", &mac, "dev", &name, "nud", "permanent"]);
        Setup { queues, kernel_mac, net, ns }
    }

    fn peer(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 2)
    }

    fn dp(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 1)
    }

    /// Receives on every queue until `want` frames match `keep` or 5 s pass; returns (queue, frame) pairs.
    fn collect(&mut self, pool: &mut MbufPool, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<(u32, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < deadline {
            let mut idle = true;
            for q in &mut self.queues {
                let mut out = Batch::new();
                if q.receive(pool, &mut out, 32) > 0 {
                    idle = false;
                }
                for m in out.drain(..) {
                    let bytes = pool.data(&m).to_vec();
                    pool.free(m);
                    if keep(&bytes) {
                        got.push((q.index(), bytes));
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        got
    }
}

/// One's-complement sum of `data` as big-endian words, added to `acc`, folded (not complemented).
fn sum16(data: &[u8], mut acc: u32) -> u16 {
    for w in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether `frame` is an IPv4 UDP frame to `dport`.
fn is_udp_to(frame: &[u8], dport: u16) -> bool {
    frame.len() >= 42 && frame[12..14] == [8, 0] && frame[23] == 17 && frame[36..38] == dport.to_be_bytes()
}

/// Builds an Ethernet + IPv4 + UDP frame with complete checksums. `id_frag` is the IP identification and
/// flags/fragment words (copied from a received frame when rebuilding what Linux sent).
#[allow(clippy::too_many_arguments)]
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    id_frag: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let ip_len = 20 + 8 + payload.len();
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0x00]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&id_frag);
    f.extend_from_slice(&[64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let ip_csum = !sum16(&f[14..34], 0);
    f[24..26].copy_from_slice(&ip_csum.to_be_bytes());
    let udp_len = (8 + payload.len()) as u16;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let udp_csum = match !sum16(&f[34..], u32::from(sum16(&pseudo, 0))) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&udp_csum.to_be_bytes());
    f
}

/// Sends the datagrams `(sport, payload)` from the namespace to `dst`, one socket per source port.
fn send_from_ns(setup: &Setup, dst: SocketAddrV4, datagrams: Vec<(u16, Vec<u8>)>) {
    let peer = setup.peer();
    setup
        .ns
        .spawn(move || {
            for (sport, payload) in datagrams {
                let sock = UdpSocket::bind(SocketAddrV4::new(peer, sport)).expect("bind in namespace");
                sock.send_to(&payload, dst).expect("send in namespace");
            }
        })
        .join()
        .expect("sender thread in the namespace panicked");
}

#[test]
fn udp_crosses_a_tap_moved_into_a_namespace_both_ways() {
    if !privileged("udp_crosses_a_tap_moved_into_a_namespace_both_ways") {
        return;
    }
    let mut pool = MbufPool::new(256, false).unwrap();
    let mut s = Setup::new(1, 60);
    let (peer, dp) = (s.peer(), s.dp());

    // The namespace's socket, waiting for the dataplane's frame on its own thread.
    let (ready_tx, ready_rx) = mpsc::channel();
    let listener = s.ns.spawn(move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(peer, 7001)).expect("bind listener");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = sock.recv_from(&mut buf).expect("the dataplane's datagram reaches the namespace");
        (buf[..n].to_vec(), from)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("listener ready");

    // Linux -> dataplane: three datagrams, each must arrive exactly as Linux built it, checksums complete.
    let payloads: Vec<Vec<u8>> = vec![b"one".to_vec(), vec![0xab; 1000], (0..=255u8).collect()];
    send_from_ns(&s, SocketAddrV4::new(dp, 9000), payloads.iter().map(|p| (7000, p.clone())).collect());
    let got = s.collect(&mut pool, 3, |f| is_udp_to(f, 9000));
    assert_eq!(got.len(), 3, "three datagrams received");
    for ((queue, frame), payload) in got.iter().zip(&payloads) {
        assert_eq!(*queue, 0);
        let id_frag = [frame[18], frame[19], frame[20], frame[21]];
        let want = udp_frame(DP_MAC, s.kernel_mac, peer, dp, 7000, 9000, id_frag, payload);
        assert_eq!(frame, &want, "frame as Linux sent it, with complete IP and UDP checksums");
    }
    assert_eq!(s.queues[0].checksums_completed(), 0, "offloads off: Linux completed the checksums itself");

    // Dataplane -> Linux: a hand-built frame to the listener.
    let payload = b"from the dataplane, byte for byte".to_vec();
    let frame = udp_frame(s.kernel_mac, DP_MAC, dp, peer, 9000, 7001, [0, 1, 0x40, 0], &payload);
    let mut batch = Batch::new();
    batch.push(pool.alloc_from(&frame).unwrap());
    s.queues[0].transmit(&mut pool, &mut batch);
    assert!(batch.is_empty(), "TAP accepted the frame");
    let (bytes, from) = listener.join().expect("listener thread panicked");
    assert_eq!(bytes, payload);
    assert_eq!(from, SocketAddrV4::new(dp, 9000).into());

    // With checksum offload turned on, Linux leaves UDP checksums partial; the queue completes them.
    s.queues[0].fd().set_offloads(libc::TUN_F_CSUM).unwrap();
    send_from_ns(&s, SocketAddrV4::new(dp, 9001), vec![(7002, b"partial please".to_vec())]);
    let got = s.collect(&mut pool, 1, |f| is_udp_to(f, 9001));
    assert_eq!(got.len(), 1);
    let frame = &got[0].1;
    let want = udp_frame(
        DP_MAC,
        s.kernel_mac,
        peer,
        dp,
        7002,
        9001,
        [frame[18], frame[19], frame[20], frame[21]],
        b"partial please",
    );
    assert_eq!(frame, &want, "partial checksum completed in software");
    assert_eq!(s.queues[0].checksums_completed(), 1);

    let stats = s.queues[0].stats();
    assert_eq!((stats.tx_frames, stats.tx_errors, stats.rx_errors), (1, 0, 0));
    assert!(stats.rx_frames >= 4);
    assert_eq!(pool.available(), pool.capacity(), "every mbuf back in the pool");
}

/// Sends UDP flows from 64 source ports (and one ARP request) through a TAP of `queues` queues and checks that
/// each frame lands on the queue `steer_queue` names, and that flows spread over every queue.
fn steering_matches_rust(queues: u32, net: u8) {
    let mut pool = MbufPool::new(512, false).unwrap();
    let mut s = Setup::new(queues, net);
    let dp = s.dp();
    let flows: Vec<(u16, Vec<u8>)> = (0..64u16).map(|i| (20000 + i * 7, i.to_be_bytes().to_vec())).collect();
    send_from_ns(&s, SocketAddrV4::new(dp, 9000), flows.clone());
    let got = s.collect(&mut pool, flows.len(), |f| is_udp_to(f, 9000));
    assert_eq!(got.len(), flows.len(), "every flow's datagram received");
    let mut per_queue = vec![0u32; queues as usize];
    for (queue, frame) in &got {
        assert_eq!(*queue, steer_queue(frame, queues), "kernel steering agrees with steer_queue");
        per_queue[*queue as usize] += 1;
    }
    assert!(per_queue.iter().all(|n| *n > 0), "flows spread over all queues: {per_queue:?}");

    // An address without a neighbour entry makes Linux ask by ARP: ARP goes to queue 0.
    let unknown = SocketAddrV4::new(Ipv4Addr::new(198, 18, net, 3), 9);
    send_from_ns(&s, unknown, vec![(7100, b"?".to_vec())]);
    let arp = s.collect(&mut pool, 1, |f| f.len() >= 14 && f[12..14] == [0x08, 0x06]);
    assert_eq!(arp.len(), 1, "ARP request seen");
    assert_eq!(arp[0].0, 0, "ARP lands on queue 0");
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn steering_two_queues_matches_steer_queue() {
    if privileged("steering_two_queues_matches_steer_queue") {
        steering_matches_rust(2, 61);
    }
}

#[test]
fn steering_three_queues_matches_steer_queue() {
    if privileged("steering_three_queues_matches_steer_queue") {
        steering_matches_rust(3, 62);
    }
}

#[test]
fn device_helpers_name_pattern_mac_link_up_and_steering_detach() {
    if !privileged("device_helpers_name_pattern_mac_link_up_and_steering_detach") {
        return;
    }
    let ns = Netns::new();
    let pattern = format!("ixtp{}x%d", std::process::id() % 100_000);
    let dev = TapDevice::create(&pattern, 2).unwrap_or_else(|e| panic!("create TAP {pattern}: {e}"));
    let name = dev.name().to_string();
    assert!(!name.contains('%'), "the kernel filled in the pattern: {name}");
    assert_eq!(dev.queue_count(), 2);
    assert!(dev.queue(2).is_none());
    for i in 0..2 {
        assert_eq!(dev.queue(i).unwrap().interface_name().unwrap(), name);
    }
    let sysfs_mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).unwrap();
    let mac = dev.kernel_mac().unwrap().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(mac, sysfs_mac.trim());
    let prog = SteeringProgram::load(&steering_program(2)).unwrap();
    dev.attach_steering(&prog).unwrap();
    drop(prog);
    dev.detach_steering().unwrap();

    // Bring the link up from inside the namespace it moved to.
    run(&["ip", "link", "set", &name, "netns", &ns.name]);
    let dev = ns.spawn(move || {
        dev.set_up().expect("SIOCSIFFLAGS IFF_UP in the namespace");
        dev
    });
    let dev = dev.join().expect("set_up thread panicked");
    let out = Command::new("ip").args(["-n", &ns.name, "-o", "link", "show", &name]).output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains(",UP"), "link is up: {line}");
    drop(dev);
}

/// splitmix64, for reproducible random frames.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// A random frame, mostly IPv4 but with odd EtherTypes, versions, IHLs, protocols, fragments and truncations.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let mut f: Vec<u8> = (0..80).map(|_| rng.next() as u8).collect();
    f[12..14].copy_from_slice(&rng.pick(&[[8u8, 0], [8, 0], [8, 0], [8, 0], [8, 6], [0x86, 0xdd], [0x81, 0]]));
    f[14] = rng.pick(&[0x45, 0x45, 0x45, 0x46, 0x4f, 0x44, 0x40, 0x65, 0x55]);
    f[23] = rng.pick(&[6, 17, 17, 6, 1, 47, 132]);
    let frag: u16 = rng.pick(&[0, 0, 0x4000, 0x2000, 0x0001, 0x1fff, 0x8000]);
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    let len = rng.pick(&[80, 80, 80, 60, 42, 38, 37, 35, 34, 33, 24, 15, 14, 13, 0]);
    f.truncate(len);
    f
}

#[test]
fn steering_program_matches_steer_queue_on_odd_frames() {
    if !privileged("steering_program_matches_steer_queue_on_odd_frames") {
        return;
    }
    let mut rng = Rng(2014);
    for queues in [1, 2, 3, 4, 7, 16] {
        let prog = SteeringProgram::load(&steering_program(queues)).expect("kernel accepts the steering program");
        for _ in 0..2000 {
            let frame = random_frame(&mut rng);
            let kernel = prog.test_run(&frame).expect("BPF_PROG_TEST_RUN");
            assert_eq!(kernel, steer_queue(&frame, queues), "queues {queues}, frame {frame:02x?}");
        }
    }
}
