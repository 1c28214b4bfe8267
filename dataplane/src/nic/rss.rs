//! Receive-side scaling as a NIC computes it: the Toeplitz hash and the indirection table, so that `connect` can
//! pick an ephemeral port whose replies the NIC delivers to the caller's own queue (paper §4.4).
//!
//! Heads up: read Microsoft's "RSS hashing functions" and "Verifying the RSS hash calculation" (the test vectors
//! below), and the kernel's `struct ethtool_rxfh` (`ETHTOOL_GRSSH`, what `ethtool -x` prints).
//!
//! A NIC hashes a received IPv4/TCP frame over source address, destination address, source port and
//! destination port (network byte order, 12 bytes) with a secret key, and sends it to queue
//! `indirection[hash % indirection.len()]`. For a reply to our connection the source is the peer and the
//! destination is us. Assumed: the NIC hashes TCP over the 4-tuple (the default of the drivers that report
//! their key: ixgbe, i40e, ice, mlx5); a port whose hash function is not Toeplitz, or whose input is transformed
//! (symmetric hashing), is not used: the dataplane steers in software instead (`crate::steer`).
use crate::wire::Ipv4Address;

/// `ETH_RSS_HASH_TOP`: the Toeplitz hash function bit of `ethtool_rxfh::hfunc`.
pub const HASH_FUNCTION_TOEPLITZ: u8 = 1;

/// The key of Microsoft's RSS verification suite (also many drivers' default).
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`: for every set bit of the input (most significant first), XOR in
/// the 32 key bits that start at that bit's position. Key bits past the end of `key` count as zero (a key
/// must be at least 4 bytes longer than the input to be meaningful; RSS keys are 40 or 52 bytes).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| key.get(i / 8).map_or(0, |b| u32::from((b >> (7 - i % 8)) & 1));
    let mut window = (0..32).fold(0u32, |w, i| (w << 1) | key_bit(i));
    let mut hash = 0;
    for (byte_index, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(32 + byte_index * 8 + bit);
        }
    }
    hash
}

/// A port's RSS configuration as the NIC applies it to IPv4/TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssTable {
    key: Vec<u8>,
    indirection: Vec<u32>,
}

impl RssTable {
    /// The table of a NIC that reported `hfunc`, `input_xfrm`, `key` and `indirection` (`ETHTOOL_GRSSH`), if
    /// it is one we can reproduce: the Toeplitz function on untransformed input, a key long enough for an
    /// IPv4/TCP tuple, and a non-empty indirection table.
    pub fn new(hfunc: u8, input_xfrm: u8, key: Vec<u8>, indirection: Vec<u32>) -> Option<RssTable> {
        (hfunc == HASH_FUNCTION_TOEPLITZ && input_xfrm == 0 && key.len() >= 16 && !indirection.is_empty())
            .then_some(RssTable { key, indirection })
    }

    /// The queue the NIC delivers an IPv4/TCP frame from `src:src_port` to `dst:dst_port` to.
    pub fn queue_of_tcp4(&self, src: Ipv4Address, dst: Ipv4Address, src_port: u16, dst_port: u16) -> u32 {
        let mut tuple = [0u8; 12];
        tuple[..4].copy_from_slice(&src.0);
        tuple[4..8].copy_from_slice(&dst.0);
        tuple[8..10].copy_from_slice(&src_port.to_be_bytes());
        tuple[10..].copy_from_slice(&dst_port.to_be_bytes());
        let hash = toeplitz(&self.key, &tuple);
        self.indirection[hash as usize % self.indirection.len()]
    }

    /// Every queue the indirection table names at least once, so each can find ports of its own.
    pub fn queues(&self) -> impl Iterator<Item = u32> + '_ {
        let max = self.indirection.iter().copied().max().unwrap_or(0);
        (0..=max).filter(|q| self.indirection.contains(q))
    }

    /// Whether each of queues `0..queues` receives some flows (otherwise a queue could find no port whose
    /// replies reach it).
    pub fn covers(&self, queues: u32) -> bool {
        (0..queues).all(|q| self.indirection.contains(&q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: [u8; 4]) -> Ipv4Address {
        Ipv4Address(a)
    }

    /// An address and port.
    type End = ([u8; 4], u16);

    /// Microsoft's "Verifying the RSS hash calculation", IPv4: (destination, source, IP-only hash, TCP hash).
    /// The hash input is source address, destination address, source port, destination port.
    const VECTORS: [(End, End, u32, u32); 5] = [
        (([161, 142, 100, 80], 1766), ([66, 9, 149, 187], 2794), 0x323e8fc2, 0x51ccc178),
        (([65, 69, 140, 83], 4739), ([199, 92, 111, 2], 14230), 0xd718262a, 0xc626b0ea),
        (([12, 22, 207, 184], 38024), ([24, 19, 198, 95], 12898), 0xd2d0a5de, 0x5c2b394a),
        (([209, 142, 163, 6], 2217), ([38, 27, 205, 30], 48228), 0x82989176, 0xafc7327f),
        (([202, 188, 127, 2], 1303), ([153, 39, 163, 191], 44251), 0x5d1809c5, 0x10e828a2),
    ];

    #[test]
    fn toeplitz_matches_microsofts_ipv4_verification_vectors() {
        for ((dst, dport), (src, sport), ip_hash, tcp_hash) in VECTORS {
            let mut ip = [0u8; 8];
            ip[..4].copy_from_slice(&src);
            ip[4..].copy_from_slice(&dst);
            assert_eq!(toeplitz(&MICROSOFT_KEY, &ip), ip_hash, "IPv4 {src:?} -> {dst:?}");
            let mut tcp = [0u8; 12];
            tcp[..8].copy_from_slice(&ip);
            tcp[8..10].copy_from_slice(&sport.to_be_bytes());
            tcp[10..].copy_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz(&MICROSOFT_KEY, &tcp), tcp_hash, "IPv4/TCP {src:?}:{sport} -> {dst:?}:{dport}");
        }
    }

    #[test]
    fn the_indirection_table_picks_the_queue_by_the_hash_low_bits() {
        // 128 entries spread over 4 queues, as ixgbe sets them up.
        let table = RssTable::new(HASH_FUNCTION_TOEPLITZ, 0, MICROSOFT_KEY.to_vec(), (0..128).map(|i| i % 4).collect())
            .unwrap();
        for ((dst, dport), (src, sport), _, tcp_hash) in VECTORS {
            let q = table.queue_of_tcp4(addr(src), addr(dst), sport, dport);
            assert_eq!(q, (tcp_hash % 128) % 4);
        }
        assert_eq!(table.queues().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert!(table.covers(4) && table.covers(2) && !table.covers(5));
    }

    #[test]
    fn a_connect_on_each_queue_finds_ephemeral_ports_whose_replies_come_back_to_it() {
        let table = RssTable::new(HASH_FUNCTION_TOEPLITZ, 0, MICROSOFT_KEY.to_vec(), (0..128).map(|i| i % 4).collect())
            .unwrap();
        let (peer, us) = (addr([198, 18, 0, 2]), addr([198, 18, 0, 1]));
        let mut per_queue = [0u32; 4];
        for port in crate::steer::EPHEMERAL_PORTS.0..=crate::steer::EPHEMERAL_PORTS.1 {
            per_queue[table.queue_of_tcp4(peer, us, 80, port) as usize] += 1;
        }
        // About a quarter each: the hash spreads ports evenly enough for every queue to have thousands.
        assert!(per_queue.iter().all(|&n| n > 3000), "{per_queue:?}");
    }

    #[test]
    fn configurations_we_cannot_reproduce_are_refused() {
        let key = MICROSOFT_KEY.to_vec();
        assert!(RssTable::new(2, 0, key.clone(), vec![0, 1]).is_none(), "XOR hash");
        assert!(RssTable::new(HASH_FUNCTION_TOEPLITZ, 1, key.clone(), vec![0, 1]).is_none(), "symmetric input");
        assert!(RssTable::new(HASH_FUNCTION_TOEPLITZ, 0, key[..8].to_vec(), vec![0, 1]).is_none(), "short key");
        assert!(RssTable::new(HASH_FUNCTION_TOEPLITZ, 0, key, vec![]).is_none(), "no table");
    }
}
