//! Test hosts in network namespaces, joined to the dataplane by a veth pair: used by tests, the demo and ixbench.
//!
//! A [`TestHost`] creates a namespace holding one end of a veth pair (Linux, with an address in 198.18.0.0/15) and
//! leaves the other end in the caller's namespace, unaddressed, for the dataplane to own. Names are unique per
//! process and call, so tests run in parallel; `Drop` deletes the namespace (which deletes the veth pair), also when
//! a test panics. Only addresses inside 198.18.0.0/15 are accepted.
use std::io;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::wire::{Ipv4Address, Ipv4Cidr};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// How the veth pair is set up.
#[derive(Debug, Clone)]
pub struct TestHostConfig {
    /// Address (with prefix) the Linux end gets inside the namespace.
    pub peer_cidr: Ipv4Cidr,
    /// RX/TX queues on each veth end (AF_XDP binds one socket per queue).
    pub queues: u32,
    /// Turn checksum offload off on the Linux end so frames carry complete checksums, as on a real wire.
    pub peer_tx_checksum_off: bool,
}

impl Default for TestHostConfig {
    fn default() -> Self {
        TestHostConfig {
            peer_cidr: Ipv4Cidr::new(Ipv4Address([198, 18, 0, 2]), 24).expect("valid prefix"),
            queues: 1,
            peer_tx_checksum_off: true,
        }
    }
}

/// A Linux host in its own network namespace, reachable through a veth pair.
#[derive(Debug)]
pub struct TestHost {
    /// Namespace name (`ip netns exec <ns> ...`).
    pub ns: String,
    /// The veth end left in the caller's namespace, for the dataplane.
    pub local_if: String,
    /// The veth end inside the namespace.
    pub peer_if: String,
    /// The peer's address.
    pub peer_cidr: Ipv4Cidr,
}

fn run(args: &[&str]) -> io::Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {:?}: {e} (is iproute2 installed?)", args[0])))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Whether `addr` lies in 198.18.0.0/15, the only range our tests may address.
pub fn in_test_range(addr: Ipv4Address) -> bool {
    addr.0[0] == 198 && (addr.0[1] == 18 || addr.0[1] == 19)
}

impl TestHost {
    /// Creates the namespace and veth pair. Needs root (CAP_NET_ADMIN).
    pub fn new(cfg: &TestHostConfig) -> io::Result<TestHost> {
        if !in_test_range(cfg.peer_cidr.addr) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "test hosts must use 198.18.0.0/15"));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{}", std::process::id() % 1_000_000, id);
        let host = TestHost {
            ns: format!("ixt{tag}"),
            local_if: format!("ixd{tag}"),
            peer_if: format!("ixp{tag}"),
            peer_cidr: cfg.peer_cidr,
        };
        // Build it step by step; `Drop` removes whatever part exists if a step fails.
        run(&["ip", "netns", "add", &host.ns])?;
        let q = cfg.queues.max(1).to_string();
        run(&[
            "ip",
            "link",
            "add",
            &host.local_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &host.peer_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &host.ns,
        ])?;
        // The dataplane end carries no kernel address: the dataplane answers ARP and IP itself.
        run(&["ip", "link", "set", &host.local_if, "up"])?;
        host.exec(&["ip", "addr", "add", &cfg.peer_cidr.to_string(), "dev", &host.peer_if])?;
        host.exec(&["ip", "link", "set", &host.peer_if, "up"])?;
        host.exec(&["ip", "link", "set", "lo", "up"])?;
        // Keep a flow on one TX queue across retransmits (the dataplane serves the queue a flow hashes to).
        let _ = host.exec(&["sysctl", "-qw", "net.core.txrehash=0"]);
        if cfg.peer_tx_checksum_off {
            // A Linux sender over veth leaves TCP/UDP checksums partial; with TX offload off they are complete.
            host.exec(&["ethtool", "-K", &host.peer_if, "tx", "off"])?;
        }
        Ok(host)
    }

    /// Runs a command inside the namespace and returns its output, or an error with its stderr.
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// A `Command` that runs `program` inside the namespace (for long-running peers).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Runs `f` on a fresh thread that has entered the namespace, so sockets it creates live there.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::spawn(move || -> io::Result<T> {
            let file = std::fs::File::open(&path)?;
            crate::sys::enter_netns(&file)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in test namespace panicked"))?
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace destroys the peer end, which destroys the whole veth pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip").args(["link", "del", &self.local_if]).output();
    }
}
