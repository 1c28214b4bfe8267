//! Per-core counters, kept as plain integers on the hot path and published to a shared-memory page that `ixctl`
//! reads without stopping the dataplane.
//!
//! The page (`<IX_STATS_DIR>/libix.<pid>.stats`) is an array of `u64`: a [`HEADER_WORDS`]-word header, then one
//! block of [`Counter::COUNT`] words per queue. Publishing copies the block with relaxed atomic stores (plain
//! moves on x86-64), so readers may see a block mid-update but never a torn word.
use crate::sys::shm::SharedWords;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One counter of a dataplane.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $($(#[$doc])* $variant,)* }
        impl Counter {
            /// Number of counters.
            pub const COUNT: usize = [$($name),*].len();
            /// Every counter, in page order.
            pub const ALL: [Counter; Self::COUNT] = [$(Counter::$variant),*];
            /// The counter's name as `ixctl` shows it.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
        }
    };
}

counters! {
    /// Frames received from the NIC.
    RxPackets = "rx_packets",
    /// Bytes received.
    RxBytes = "rx_bytes",
    /// Frames handed to the NIC.
    TxPackets = "tx_packets",
    /// Bytes handed to the NIC.
    TxBytes = "tx_bytes",
    /// Cycles run.
    Cycles = "cycles",
    /// Times the loop slept on the queue's fd.
    IdleSleeps = "idle_sleeps",
    /// Commands executed.
    Commands = "commands",
    /// Events delivered.
    Events = "events",
    /// Frames too short or otherwise not Ethernet.
    DropEthMalformed = "drop_eth_malformed",
    /// Frames for another MAC.
    DropEthNotForUs = "drop_eth_not_for_us",
    /// Ethertypes we do not speak (IPv6, VLAN, ...).
    DropEthUnknownType = "drop_eth_unknown_type",
    /// Malformed ARP packets.
    DropArpMalformed = "drop_arp_malformed",
    /// Malformed IPv4 headers.
    DropIpMalformed = "drop_ip_malformed",
    /// IPv4 header checksum failures.
    DropIpChecksum = "drop_ip_checksum",
    /// IPv4 fragments (not reassembled).
    DropIpFragment = "drop_ip_fragment",
    /// IPv4 packets for another address.
    DropIpNotForUs = "drop_ip_not_for_us",
    /// IP protocols we do not speak.
    DropIpUnknownProto = "drop_ip_unknown_proto",
    /// Malformed ICMP or bad ICMP checksums.
    DropIcmpMalformed = "drop_icmp_malformed",
    /// ICMP types we do not act on.
    DropIcmpOther = "drop_icmp_other",
    /// Malformed UDP headers.
    DropUdpMalformed = "drop_udp_malformed",
    /// UDP checksum failures.
    DropUdpChecksum = "drop_udp_checksum",
    /// UDP checksums that were only the pseudo-header sum (a veth peer with TX checksum offload on).
    DropChecksumPartial = "drop_checksum_partial",
    /// UDP datagrams to ports nobody bound (answered with ICMP port unreachable, rate-limited).
    DropUdpNoPort = "drop_udp_no_port",
    /// Received frames dropped because no mbuf was free for the reply.
    DropNoMbuf = "drop_no_mbuf",
    /// Frames dropped because their next hop never answered ARP or the pending queue was full.
    DropArpUnresolved = "drop_arp_unresolved",
    /// Frames the NIC refused because its TX ring was full (retried next cycle).
    TxRingFull = "tx_ring_full",
    /// ARP requests sent.
    ArpRequestsSent = "arp_requests_sent",
    /// ARP replies sent.
    ArpRepliesSent = "arp_replies_sent",
    /// ICMP echo requests answered.
    IcmpEchoReplies = "icmp_echo_replies",
    /// ICMP port-unreachable messages sent.
    IcmpUnreachSent = "icmp_unreach_sent",
    /// UDP datagrams delivered to the app.
    UdpRxDelivered = "udp_rx_delivered",
    /// UDP datagrams sent for the app.
    UdpTxSent = "udp_tx_sent",
    /// Commands refused with a bad handle or buffer.
    CmdBadHandle = "cmd_bad_handle",
    /// Commands refused for back-pressure (try again).
    CmdAgain = "cmd_again",
    /// Commands refused as invalid.
    CmdInvalid = "cmd_invalid",
    /// TCP segments received.
    TcpSegmentsIn = "tcp_segments_in",
    /// TCP segments sent.
    TcpSegmentsOut = "tcp_segments_out",
    /// Connections opened by `TcpConnect`.
    TcpActiveOpens = "tcp_active_opens",
    /// Connections opened by peers.
    TcpPassiveOpens = "tcp_passive_opens",
    /// Connections freed.
    TcpClosed = "tcp_closed",
    /// Connections aborted by the app.
    TcpAborts = "tcp_aborts",
    /// Connections reset by the peer.
    TcpResetsReceived = "tcp_resets_received",
    /// RSTs sent for segments that matched no connection.
    TcpRstSent = "tcp_rst_sent",
    /// Retransmission timeouts.
    TcpRetransmitTimeouts = "tcp_retransmit_timeouts",
    /// Segments sent again (RACK-found losses, probes, after timeouts).
    TcpRetransmits = "tcp_retransmits",
    /// Loss timers fired: RACK's reordering timer and tail loss probes (RFC 8985).
    TcpLossTimers = "tcp_loss_timers",
    /// Keepalive probes sent.
    TcpKeepalivesSent = "tcp_keepalives_sent",
    /// SYNs dropped because the app is not accepting (backlog full).
    TcpBacklogDrops = "tcp_backlog_drops",
    /// SYN-ACKs sent with a SYN cookie (SYN backlog full).
    TcpSynCookiesSent = "tcp_syn_cookies_sent",
    /// Connections established from a valid SYN cookie.
    TcpSynCookiesValid = "tcp_syn_cookies_valid",
    /// Open connections, TIME_WAIT excluded (gauge).
    TcpConnections = "tcp_connections",
    /// Connections in TIME_WAIT (gauge).
    TcpTimeWait = "tcp_time_wait",
    /// Listeners' half-open connections (SYN_RECEIVED, within the SYN backlog; gauge).
    TcpHalfOpen = "tcp_half_open",
    /// Listeners' established connections the app has not accepted yet (gauge).
    TcpAcceptQueue = "tcp_accept_queue",
    /// Malformed TCP segments.
    DropTcpMalformed = "drop_tcp_malformed",
    /// TCP checksum failures.
    DropTcpChecksum = "drop_tcp_checksum",
    /// Events that did not fit the app's array and were delivered a cycle later.
    EventsDeferred = "events_deferred",
    /// TCP frames for a port another queue owns, handed to that queue's inbox (software steering).
    SteeredOut = "steered_out",
    /// Frames taken from this queue's inbox (sent by other queues) and run through the stack.
    SteeredIn = "steered_in",
    /// Frames for another queue dropped because its inbox was full.
    DropSteerFull = "drop_steer_full",
    /// Batches of 1 packet.
    Batch1 = "batch_1",
    /// Batches of 2-3 packets.
    Batch2 = "batch_2_3",
    /// Batches of 4-7 packets.
    Batch4 = "batch_4_7",
    /// Batches of 8-15 packets.
    Batch8 = "batch_8_15",
    /// Batches of 16-31 packets.
    Batch16 = "batch_16_31",
    /// Batches of 32-63 packets.
    Batch32 = "batch_32_63",
    /// Batches of 64-127 packets.
    Batch64 = "batch_64_127",
    /// Batches of 128 packets or more.
    Batch128 = "batch_128_up",
    /// Mbufs in the pool (gauge).
    PoolCapacity = "pool_capacity",
    /// Free mbufs (gauge).
    PoolAvailable = "pool_available",
    /// Mbufs lent to the app in UDP `recv` events (gauge).
    MbufsLent = "mbufs_lent",
    /// Mbufs the NIC holds: RX buffers posted, TX in flight (gauge).
    NicFramesHeld = "nic_frames_held",
    /// Mbufs held by the stack and the app: everything not free and not the NIC's (gauge). Zero when idle with
    /// no connection open, or something leaked.
    MbufsInStack = "mbufs_in_stack",
    /// Kernel-side drops reported by the NIC backend (AF_XDP ring full, TAP overrun).
    NicRxDropped = "nic_rx_dropped",
    /// NIC receive errors (bad descriptors).
    NicRxErrors = "nic_rx_errors",
    /// NIC transmit errors.
    NicTxErrors = "nic_tx_errors",
    /// Fill ring top-ups that found the pool empty.
    NicFillStarved = "nic_fill_starved",
}

/// Words in the page header.
pub const HEADER_WORDS: usize = 8;
/// First word of a statistics page: "IXSTATS1".
pub const MAGIC: u64 = u64::from_le_bytes(*b"IXSTATS1");

/// The counters of one dataplane, plain integers.
#[derive(Debug, Clone)]
pub struct Stats {
    values: [u64; Counter::COUNT],
}

impl Default for Stats {
    fn default() -> Self {
        Stats { values: [0; Counter::COUNT] }
    }
}

impl Stats {
    /// Adds one.
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.values[c as usize] += 1;
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.values[c as usize] += n;
    }
    /// Sets a gauge.
    #[inline]
    pub fn set(&mut self, c: Counter, n: u64) {
        self.values[c as usize] = n;
    }
    /// Reads a counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }
    /// Records a batch of `n` packets in the histogram (`n > 0`).
    #[inline]
    pub fn record_batch(&mut self, n: usize) {
        let bucket = match n {
            0 => return,
            1 => Counter::Batch1,
            2..=3 => Counter::Batch2,
            4..=7 => Counter::Batch4,
            8..=15 => Counter::Batch8,
            16..=31 => Counter::Batch16,
            32..=63 => Counter::Batch32,
            64..=127 => Counter::Batch64,
            _ => Counter::Batch128,
        };
        self.inc(bucket);
    }
    /// All values in page order.
    pub fn values(&self) -> &[u64; Counter::COUNT] {
        &self.values
    }
}

/// Header fields of a statistics page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// Process that publishes.
    pub pid: u32,
    /// Queues (blocks) in the page.
    pub queues: u32,
    /// Interface name.
    pub iface: String,
    /// Dataplane address, host byte order.
    pub ip: u32,
    /// Prefix length.
    pub prefix_len: u8,
}

/// A statistics page shared by the queues of one process.
#[derive(Debug)]
pub struct StatsPage {
    words: SharedWords,
    queues: u32,
}

impl StatsPage {
    /// The page path for process `pid` in `dir`.
    pub fn path_for(dir: &Path, pid: u32) -> PathBuf {
        dir.join(format!("libix.{pid}.stats"))
    }

    /// Creates this process's page with one block per queue.
    pub fn create(dir: &Path, info: &PageInfo) -> io::Result<Arc<StatsPage>> {
        let queues = info.queues.max(1);
        let words =
            SharedWords::create(&Self::path_for(dir, info.pid), HEADER_WORDS + queues as usize * Counter::COUNT)?;
        let w = words.words();
        let mut name = [0u8; 16];
        for (d, s) in name.iter_mut().zip(info.iface.bytes().take(15)) {
            *d = s;
        }
        w[1].store(Counter::COUNT as u64, Ordering::Relaxed);
        w[2].store(info.pid as u64 | (queues as u64) << 32, Ordering::Relaxed);
        w[3].store(u64::from_le_bytes(name[..8].try_into().expect("8 bytes")), Ordering::Relaxed);
        w[4].store(u64::from_le_bytes(name[8..].try_into().expect("8 bytes")), Ordering::Relaxed);
        w[5].store(info.ip as u64 | (info.prefix_len as u64) << 32, Ordering::Relaxed);
        w[0].store(MAGIC, Ordering::Release);
        Ok(Arc::new(StatsPage { words, queues }))
    }

    /// Opens another process's page for reading.
    pub fn open(path: &Path) -> io::Result<StatsPage> {
        let words = SharedWords::open(path)?;
        let w = words.words();
        if w.len() < HEADER_WORDS || w[0].load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a libix statistics page"));
        }
        if w[1].load(Ordering::Relaxed) != Counter::COUNT as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "statistics page from another libix version"));
        }
        let queues = (w[2].load(Ordering::Relaxed) >> 32) as u32;
        if w.len() < HEADER_WORDS + queues as usize * Counter::COUNT {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated statistics page"));
        }
        Ok(StatsPage { words, queues })
    }

    /// The header.
    pub fn info(&self) -> PageInfo {
        let w = self.words.words();
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(&w[3].load(Ordering::Relaxed).to_le_bytes());
        name[8..].copy_from_slice(&w[4].load(Ordering::Relaxed).to_le_bytes());
        let end = name.iter().position(|&b| b == 0).unwrap_or(16);
        let ipw = w[5].load(Ordering::Relaxed);
        PageInfo {
            pid: w[2].load(Ordering::Relaxed) as u32,
            queues: self.queues,
            iface: String::from_utf8_lossy(&name[..end]).into_owned(),
            ip: ipw as u32,
            prefix_len: (ipw >> 32) as u8,
        }
    }

    /// Copies queue `queue`'s counters into the page.
    pub fn publish(&self, queue: u32, stats: &Stats) {
        if queue >= self.queues {
            return;
        }
        let start = HEADER_WORDS + queue as usize * Counter::COUNT;
        for (dst, v) in self.words.words()[start..start + Counter::COUNT].iter().zip(stats.values()) {
            dst.store(*v, Ordering::Relaxed);
        }
    }

    /// Reads queue `queue`'s counters.
    pub fn read(&self, queue: u32) -> Stats {
        let mut s = Stats::default();
        if queue < self.queues {
            let start = HEADER_WORDS + queue as usize * Counter::COUNT;
            for (v, src) in s.values.iter_mut().zip(&self.words.words()[start..start + Counter::COUNT]) {
                *v = src.load(Ordering::Relaxed);
            }
        }
        s
    }

    /// The page's file.
    pub fn path(&self) -> &Path {
        self.words.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_read_back_through_the_file() {
        let dir = std::env::temp_dir();
        let pid = 4_000_000_000u32 - std::process::id();
        let info = PageInfo { pid, queues: 2, iface: "veth-test0".into(), ip: 0xc612_0001, prefix_len: 24 };
        let page = StatsPage::create(&dir, &info).unwrap();
        let mut s = Stats::default();
        s.inc(Counter::RxPackets);
        s.add(Counter::TxBytes, 1500);
        s.record_batch(64);
        page.publish(1, &s);
        let reader = StatsPage::open(&StatsPage::path_for(&dir, pid)).unwrap();
        assert_eq!(reader.info(), info);
        let r = reader.read(1);
        assert_eq!(r.get(Counter::RxPackets), 1);
        assert_eq!(r.get(Counter::TxBytes), 1500);
        assert_eq!(r.get(Counter::Batch64), 1);
        assert_eq!(reader.read(0).get(Counter::RxPackets), 0);
        let path = page.path().to_path_buf();
        drop(reader);
        drop(page);
        assert!(!path.exists(), "the creator removes its page");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
    }
}
