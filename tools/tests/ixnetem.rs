//! ixnetem end to end: host A and host B in their own network namespaces, joined through a third namespace in
//! which ixnetem bridges the two veth pairs; UDP from A to B checks each fault against ixnetem's counters.
//!
//!   ns A: ve0 198.18.0.1/24 ── xa [ns M: ixnetem --a xa --b xb] xb ── ve0 198.18.0.2/24 :ns B
//!
//! Needs root (namespaces, AF_PACKET). Without it the tests fail, unless IX_SKIP_PRIVILEGED=1 (then they print
//! SKIP and pass). Every namespace is unique to the test and removed on drop, also when a test panics; only
//! 198.18.0.0/15 is addressed. IPv6 is off and the neighbours are static, so the UDP datagrams of a test are the
//! only frames that cross ixnetem and its counters can be compared exactly with what B received.
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ixnetem");
const A_IP: &str = "198.18.0.1";
const B_IP: &str = "198.18.0.2";
const A_MAC: &str = "02:18:00:00:00:01";
const B_MAC: &str = "02:18:00:00:00:02";
const PORT: u16 = 9000;
const MAGIC: [u8; 4] = *b"ixnt";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Whether to run: root runs; otherwise fail, or skip when IX_SKIP_PRIVILEGED=1.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("IX_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIP: the ixnetem tests need root (network namespaces, AF_PACKET)");
        return false;
    }
    panic!("the ixnetem tests need root (network namespaces, AF_PACKET); set IX_SKIP_PRIVILEGED=1 to skip them");
}

#[track_caller]
fn sh(args: &[&str]) {
    let out =
        Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", args[0]));
    assert!(out.status.success(), "{:?} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// Counters of one direction, from ixnetem's final report.
type Counters = HashMap<String, u64>;

/// Three namespaces and the ixnetem process joining them.
struct Impaired {
    /// A, M (ixnetem), B.
    ns: [String; 3],
    child: Option<Child>,
    log: PathBuf,
}

impl Impaired {
    fn new(netem_args: &[&str]) -> Impaired {
        let tag = format!("{}x{}", std::process::id() % 1_000_000, NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let mut t = Impaired {
            ns: [format!("ixna{tag}"), format!("ixnm{tag}"), format!("ixnb{tag}")],
            child: None,
            log: std::env::temp_dir().join(format!("ixnetem-test-{tag}.log")),
        };
        let [a, m, b] = t.ns.clone();
        // Built step by step; Drop removes whatever exists if a step fails.
        for ns in &t.ns {
            sh(&["ip", "netns", "add", ns]);
            // No IPv6 chatter (router solicitations, DAD, MLD): only the test's datagrams cross ixnetem.
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "dev", "lo", "up"]);
        }
        sh(&["ip", "-n", &m, "link", "add", "name", "xa", "type", "veth", "peer", "name", "ve0", "netns", &a]);
        sh(&["ip", "-n", &m, "link", "add", "name", "xb", "type", "veth", "peer", "name", "ve0", "netns", &b]);
        for (ns, mac, ip, peer_ip, peer_mac) in [(&a, A_MAC, A_IP, B_IP, B_MAC), (&b, B_MAC, B_IP, A_IP, A_MAC)] {
            sh(&["ip", "-n", ns, "link", "set", "dev", "ve0", "address", mac]);
            sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "ve0"]);
            // Complete checksums (so corruption is detectable) and no super-frames over the veth.
            sh(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", "ve0", "tx", "off", "tso", "off", "gso", "off", "gro",
                "off",
            ]);
            // Static neighbours: no ARP through the impaired link.
            sh(&["ip", "-n", ns, "neigh", "add", peer_ip, "lladdr", peer_mac, "dev", "ve0", "nud", "permanent"]);
            sh(&["ip", "-n", ns, "link", "set", "dev", "ve0", "up"]);
        }
        for ifc in ["xa", "xb"] {
            sh(&[
                "ip", "netns", "exec", &m, "ethtool", "-K", ifc, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ]);
            sh(&["ip", "-n", &m, "link", "set", "dev", ifc, "up"]);
        }
        let log = File::create(&t.log).expect("create the log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &m, BIN, "--a", "xa", "--b", "xb", "--duration", "60"])
            .args(netem_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log fd"))
            .stderr(log)
            .spawn()
            .expect("start ixnetem");
        t.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if t.log_text().lines().any(|l| l.starts_with("ixnetem: running")) {
                return t;
            }
            let exited = t.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "ixnetem exited at start ({exited:?}):\n{}", t.log_text());
            assert!(Instant::now() < deadline, "ixnetem did not start in 10 s:\n{}", t.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Stops ixnetem with SIGTERM and returns its final counters: (A→B, B→A).
    fn stop(&mut self) -> (Counters, Counters) {
        let mut child = self.child.take().expect("ixnetem running");
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for ixnetem") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ixnetem ignored SIGTERM for 10 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let log = self.log_text();
        assert!(status.success(), "ixnetem exited with {status}:\n{log}");
        assert!(log.contains("ixnetem: stopped (SIGTERM)"), "no clean stop:\n{log}");
        let dir = |d: &str| -> Counters {
            let prefix = format!("ixnetem: final {d} ");
            let line = log.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix}:\n{log}"));
            line[prefix.len()..]
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or_else(|_| panic!("bad counter {k}={v}"))))
                .collect()
        };
        let (ab, ba) = (dir("a>b"), dir("b>a"));
        for (name, c) in [("a>b", &ab), ("b>a", &ba)] {
            let lhs = c["rx"] + c["duplicated"];
            let rhs = c["forwarded"] + c["lost"] + c["overflow"] + c["oversize"] + c["tx_errors"] + c["queued"];
            assert_eq!(lhs, rhs, "{name}: counters do not balance: {c:?}");
        }
        (ab, ba)
    }

    /// Runs `f` on a thread inside namespace `which` (0: A, 2: B).
    fn spawn_in<T: Send + 'static>(&self, which: usize, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.ns[which]);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) on a namespace fd we hold; it moves only this thread.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Impaired {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes the veth ends inside it, and with them their peers.
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("ixnetem log kept at {}", self.log.display());
        }
    }
}

fn force_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: valid fd and option pointer of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The Udp line of the calling thread's namespace's SNMP MIB, as name → value.
fn udp_mib() -> HashMap<String, u64> {
    let s = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let udp: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    udp[0]
        .split_whitespace()
        .zip(udp[1].split_whitespace())
        .skip(1)
        .map(|(k, v)| (k.into(), v.parse().unwrap_or(0)))
        .collect()
}

/// What B received of a one-way UDP run: sequence numbers in arrival order, payloads that were not intact, and
/// B's UDP MIB afterwards.
struct Received {
    seqs: Vec<u32>,
    damaged: usize,
    mib: HashMap<String, u64>,
}

fn payload(seq: u32, size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size];
    p[..4].copy_from_slice(&MAGIC);
    p[4..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(7).wrapping_add(i) as u8;
    }
    p
}

/// Sends `n` datagrams of `size` bytes from A to B, paced (50 per millisecond at most), and collects what B gets
/// until the link has been quiet for 300 ms.
fn udp_one_way(t: &Impaired, n: u32, size: usize) -> Received {
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let rx_done = Arc::clone(&done);
    let receiver = t.spawn_in(2, move || {
        let s = UdpSocket::bind((B_IP, PORT)).expect("bind in B");
        force_rcvbuf(&s, 16 << 20);
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        ready_tx.send(()).unwrap();
        let mut r = Received { seqs: Vec::new(), damaged: 0, mib: HashMap::new() };
        let mut buf = [0u8; 2048];
        let mut quiet = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while quiet < 3 && Instant::now() < deadline {
            match s.recv(&mut buf) {
                Ok(len) => {
                    quiet = 0;
                    if len >= 8 && buf[..4] == MAGIC {
                        let seq = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        r.seqs.push(seq);
                        if buf[..len] != payload(seq, size)[..] {
                            r.damaged += 1;
                        }
                    } else {
                        r.damaged += 1;
                    }
                }
                Err(_) if rx_done.load(Ordering::Acquire) => quiet += 1,
                Err(_) => {}
            }
        }
        r.mib = udp_mib();
        r
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let sender = t.spawn_in(0, move || {
        let s = UdpSocket::bind((A_IP, 0)).expect("bind in A");
        s.connect((B_IP, PORT)).unwrap();
        for seq in 0..n {
            s.send(&payload(seq, size)).expect("send");
            if seq % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    sender.join().expect("sender");
    done.store(true, Ordering::Release);
    receiver.join().expect("receiver")
}

/// Asserts `count` lies within 5 standard deviations of a binomial(n, p) mean.
#[track_caller]
fn assert_rate(count: u64, n: u32, p: f64) {
    let mean = f64::from(n) * p;
    let sd = (mean * (1.0 - p)).sqrt();
    assert!((count as f64 - mean).abs() < 5.0 * sd, "count {count} far from {mean} (sd {sd:.1})");
}

/// Nothing went wrong inside ixnetem or the kernel around it: every frame it was offered it handled itself.
#[track_caller]
fn assert_clean(c: &Counters) {
    for k in ["overflow", "oversize", "tx_errors", "sock_drops", "csum_partial", "queued"] {
        assert_eq!(c[k], 0, "{k} in {c:?}");
    }
}

const N: u32 = 5000;

#[test]
fn loss_matches_what_the_receiver_missed() {
    if !privileged() {
        return;
    }
    let mut t = Impaired::new(&["--loss", "0.2", "--seed", "7"]);
    let r = udp_one_way(&t, N, 64);
    let (ab, ba) = t.stop();
    assert_clean(&ab);
    assert_eq!(ab["rx"], u64::from(N), "ixnetem saw exactly the test's datagrams: {ab:?}");
    assert_eq!(ba["rx"], 0, "nothing went back: {ba:?}");
    assert_eq!(r.mib["RcvbufErrors"], 0, "B's socket dropped datagrams: {:?}", r.mib);
    let missed = u64::from(N) - r.seqs.len() as u64;
    assert_eq!(missed, ab["lost"], "receiver missed {missed}, ixnetem lost {}: {ab:?}", ab["lost"]);
    assert_rate(missed, N, 0.2);
    assert!(r.seqs.windows(2).all(|w| w[0] < w[1]), "loss alone keeps order, no copies");
    assert_eq!(r.damaged, 0);
}

#[test]
fn duplicates_arrive() {
    if !privileged() {
        return;
    }
    let mut t = Impaired::new(&["--duplicate", "0.1", "--seed", "8"]);
    let r = udp_one_way(&t, N, 64);
    let (ab, _) = t.stop();
    assert_clean(&ab);
    assert_eq!(ab["rx"], u64::from(N));
    assert_rate(ab["duplicated"], N, 0.1);
    assert_eq!(r.seqs.len() as u64, u64::from(N) + ab["duplicated"], "every copy arrived: {ab:?}");
    let adjacent = r.seqs.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    assert_eq!(adjacent, ab["duplicated"], "a copy follows its original");
    let mut unique = r.seqs.clone();
    unique.dedup();
    assert_eq!(unique, (0..N).collect::<Vec<_>>());
}

#[test]
fn corruption_is_counted_and_caught_by_checksums() {
    if !privileged() {
        return;
    }
    let n = 2000;
    let mut t = Impaired::new(&["--corrupt", "1.0", "--seed", "9"]);
    let r = udp_one_way(&t, n, 200);
    let (ab, _) = t.stop();
    assert_clean(&ab);
    assert_eq!(ab["corrupted"], u64::from(n), "every frame had a bit flipped: {ab:?}");
    assert_eq!(ab["forwarded"], u64::from(n));
    // A flipped bit in the IP header, UDP header or payload fails a checksum; only flips in the Ethernet
    // source address and the like get through, and those leave the payload intact.
    assert!(r.seqs.len() < n as usize / 4, "{} of {n} corrupted datagrams accepted", r.seqs.len());
    assert_eq!(r.damaged, 0, "a damaged payload got past the checksums");
    assert!(r.mib["InCsumErrors"] > u64::from(n) / 2, "B's UDP checksum errors: {:?}", r.mib);
}

#[test]
fn reordering_is_seen_by_the_receiver() {
    if !privileged() {
        return;
    }
    let mut t = Impaired::new(&["--reorder", "0.5", "--seed", "10"]);
    let r = udp_one_way(&t, N, 64);
    let (ab, _) = t.stop();
    assert_clean(&ab);
    let inversions = r.seqs.windows(2).filter(|w| w[0] > w[1]).count() as u64;
    assert!(inversions > u64::from(N) / 10, "{inversions} out-of-order arrivals");
    assert_eq!(inversions, ab["reordered"], "each held frame arrives right behind the one that overtook it");
    let mut sorted = r.seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>(), "reordering loses and adds nothing");
}

/// Round trips of `count` sequential UDP echoes from A through B and back (None: no reply within `wait`).
fn echo_rtts(t: &Impaired, count: u32, wait: Duration) -> Vec<Option<Duration>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let echo_stop = Arc::clone(&stop);
    let echo = t.spawn_in(2, move || {
        let s = UdpSocket::bind((B_IP, PORT)).expect("bind in B");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !echo_stop.load(Ordering::Acquire) && Instant::now() < deadline {
            if let Ok((len, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..len], from);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("echo ready");
    let rtts = t
        .spawn_in(0, move || {
            let s = UdpSocket::bind((A_IP, 0)).expect("bind in A");
            s.connect((B_IP, PORT)).unwrap();
            s.set_read_timeout(Some(wait)).unwrap();
            let mut buf = [0u8; 256];
            (0..count)
                .map(|seq| {
                    let sent = Instant::now();
                    s.send(&payload(seq, 32)).expect("send");
                    loop {
                        match s.recv(&mut buf) {
                            Ok(len) if buf[..len] == payload(seq, 32)[..] => return Some(sent.elapsed()),
                            Ok(_) => continue,
                            Err(_) => return None,
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .join()
        .expect("pinger");
    stop.store(true, Ordering::Release);
    echo.join().expect("echo");
    rtts
}

#[test]
fn delay_applies_each_way() {
    if !privileged() {
        return;
    }
    let mut t = Impaired::new(&["--delay", "20"]);
    let rtts = echo_rtts(&t, 10, Duration::from_secs(1));
    let (ab, ba) = t.stop();
    assert!(rtts.iter().all(Option::is_some), "lost echoes on a lossless link: {rtts:?}");
    // A semantic check, not a performance threshold: each datagram waits 20 ms in each direction.
    for rtt in rtts.iter().flatten() {
        assert!(*rtt >= Duration::from_millis(40), "round trip {rtt:?} shorter than 2 x 20 ms");
    }
    assert_eq!((ab["delayed"], ba["delayed"]), (10, 10));
}

#[test]
fn directions_take_their_own_overrides() {
    if !privileged() {
        return;
    }
    let mut t = Impaired::new(&["--delay", "5", "--b-to-a", "loss=1,delay=0"]);
    let rtts = echo_rtts(&t, 5, Duration::from_millis(200));
    let (ab, ba) = t.stop();
    assert!(rtts.iter().all(Option::is_none), "replies crossed a B→A direction losing everything: {rtts:?}");
    assert_eq!((ab["forwarded"], ab["delayed"], ab["lost"]), (5, 5, 0), "{ab:?}");
    assert_eq!((ba["rx"], ba["lost"], ba["delayed"]), (5, 5, 0), "{ba:?}");
}
