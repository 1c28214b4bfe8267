//! Multi-queue TAP backend: one [`TapQueue`] per queue fd of a TAP interface, for machines without XDP.
//!
//! Frames are copied (one `read` or `writev` per frame), so this is the slow path; it needs nothing but
//! `/dev/net/tun`.
//!
//! # Who is who on the link
//!
//! A TAP interface is a virtual wire between the Linux stack (the interface, with its own kernel MAC) and us (the
//! fd side). The dataplane is the *host on the far end of that wire*, so it needs its own MAC address, distinct
//! from the kernel's: [`TapConfig::mac`], by default the locally administered [`DEFAULT_TAP_MAC`]. Linux learns it
//! through ARP (the dataplane answers) or a static neighbour entry. [`TapQueue::kernel_mac`] is the Linux side's.
//!
//! # Checksums
//!
//! The device is created with every offload off, so Linux finishes checksums before a frame reaches the TAP. Should
//! a frame still arrive marked `VIRTIO_NET_HDR_F_NEEDS_CSUM` (partial checksum, pseudo-header sum only), the receive
//! path completes it in software at `csum_start`/`csum_offset`, so the stack always sees complete checksums and
//! [`NicCaps::rx_partial_checksums`] is false. Frames we transmit carry a zeroed vnet header (complete checksums,
//! no GSO).
//!
//! # Steering
//!
//! With more than one queue, [`open`] attaches an eBPF socket-filter program ([`steering_program`]) through
//! `TUNSETSTEERINGEBPF`, so the dataplane, not the kernel, decides which queue a flow's frames land on; and
//! [`steer_queue`] is the same function in Rust. A core that opens a connection picks an ephemeral port whose
//! replies steer to its own queue ([`steer_queue_for_flow`]). The function:
//!
//! - not IPv4 (ARP included), IPv4 with a bad version/IHL, or a frame too short for any field it reads: queue 0;
//! - otherwise `h = src ^ dst` (addresses as big-endian `u32`), then `h ^= (sport << 16) | dport` for TCP and UDP
//!   unless the datagram is a fragment (`MF` or a fragment offset: all fragments of a datagram then share a queue);
//! - `h *= 0x9e37_79b1` (wrapping); `h ^= h >> 16`; queue `h % queues`.
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::{Batch, NicCaps, NicQueue, NicStats};
use crate::mbuf::MbufPool;
use crate::sys::bpf::BpfInsn;
use crate::sys::tap::{SteeringProgram, TapDevice, TapQueueFd, VirtioNetHdr, VNET_HDR_LEN};

/// The dataplane's MAC on a TAP link unless configured: locally administered (`02:…`), "IX" in the middle.
pub const DEFAULT_TAP_MAC: [u8; 6] = [0x02, 0x49, 0x58, 0x00, 0x00, 0x01];

/// Settings of the dataplane's end of a TAP link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapConfig {
    /// The dataplane's own MAC (not the kernel interface's).
    pub mac: [u8; 6],
    /// L3 MTU reported in [`NicCaps`]; keep it equal to the interface's MTU (1500 by default).
    pub mtu: u16,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig { mac: DEFAULT_TAP_MAC, mtu: 1500 }
    }
}

/// Creates TAP interface `name` with `queues` queues (attaching the steering program when `queues > 1`) and
/// returns one [`TapQueue`] per queue, queue `i` at index `i`. Needs CAP_NET_ADMIN (and CAP_BPF for steering).
///
/// The interface is left down and unaddressed in the caller's namespace; see [`TapDevice::set_up`] and
/// [`crate::sys::tap::set_link_up`]. It disappears when every returned queue is dropped.
pub fn open(name: &str, queues: u32, cfg: &TapConfig) -> io::Result<Vec<TapQueue>> {
    let dev = TapDevice::create(name, queues)?;
    if queues > 1 {
        let prog = SteeringProgram::load(&steering_program(queues))?;
        dev.attach_steering(&prog)?;
        // The device holds its own reference to the program; ours closes here.
    }
    Ok(dev.into_queues().into_iter().zip(0..).map(|(fd, i)| TapQueue::new(fd, i, cfg)).collect())
}

/// One queue of a TAP interface, owned by one core.
#[derive(Debug)]
pub struct TapQueue {
    fd: TapQueueFd,
    index: u32,
    cfg: TapConfig,
    stats: NicStats,
    checksums_completed: u64,
}

impl TapQueue {
    /// Wraps queue fd `fd`, which is queue number `index` of its device.
    pub fn new(fd: TapQueueFd, index: u32, cfg: &TapConfig) -> TapQueue {
        TapQueue { fd, index, cfg: *cfg, stats: NicStats::default(), checksums_completed: 0 }
    }

    /// This queue's number in its device.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The MAC of the Linux side of the interface (the neighbour the dataplane talks to).
    pub fn kernel_mac(&self) -> io::Result<[u8; 6]> {
        self.fd.kernel_mac()
    }

    /// The interface's name (as the kernel has it now).
    pub fn interface_name(&self) -> io::Result<String> {
        self.fd.interface_name()
    }

    /// Received frames whose partial (`NEEDS_CSUM`) checksum this queue completed in software.
    pub fn checksums_completed(&self) -> u64 {
        self.checksums_completed
    }

    /// The queue fd, for device-wide ioctls ([`TapQueueFd::set_steering`]).
    pub fn fd(&self) -> &TapQueueFd {
        &self.fd
    }
}

impl NicQueue for TapQueue {
    fn receive(&mut self, pool: &mut MbufPool, out: &mut Batch, max: usize) -> usize {
        let want = max.min(out.remaining_capacity());
        let mut got = 0;
        // One read per attempt, so a queue that keeps failing cannot hold the core.
        for _ in 0..want {
            let Some(mut m) = pool.alloc() else {
                self.stats.fill_starved += 1;
                break;
            };
            // Read the vnet header into the headroom, so the Ethernet frame lands at HEADROOM like any other.
            if m.prepend(VNET_HDR_LEN).is_err() {
                pool.free(m);
                break;
            }
            let len = match self.fd.read(pool.tail_room_mut(&mut m)) {
                Ok(len) => len,
                Err(e) => {
                    pool.free(m);
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.stats.rx_errors += 1;
                    }
                    break;
                }
            };
            if len < VNET_HDR_LEN + 14 || m.set_len(len).is_err() {
                self.stats.rx_errors += 1;
                pool.free(m);
                continue;
            }
            let mut hdr_bytes = [0u8; VNET_HDR_LEN];
            hdr_bytes.copy_from_slice(&pool.data(&m)[..VNET_HDR_LEN]);
            let hdr = VirtioNetHdr::from_bytes(&hdr_bytes);
            if m.adjust(VNET_HDR_LEN).is_err() || hdr.gso_type != VirtioNetHdr::GSO_NONE {
                // GSO is off (TUNSETOFFLOAD 0), so a GSO frame means the device was reconfigured behind our back.
                self.stats.rx_errors += 1;
                pool.free(m);
                continue;
            }
            if hdr.flags & VirtioNetHdr::NEEDS_CSUM != 0 {
                if !complete_checksum(pool.data_mut(&mut m), hdr.csum_start.into(), hdr.csum_offset.into()) {
                    self.stats.rx_errors += 1;
                    pool.free(m);
                    continue;
                }
                self.checksums_completed += 1;
            }
            if let Err(e) = out.try_push(m) {
                pool.free(e.element());
                break;
            }
            self.stats.rx_frames += 1;
            got += 1;
        }
        got
    }

    fn transmit(&mut self, pool: &mut MbufPool, batch: &mut Batch) {
        let hdr = [0u8; VNET_HDR_LEN];
        let mut done = 0;
        for m in batch.iter() {
            match self.fd.write(&hdr, pool.data(m)) {
                Ok(_) => self.stats.tx_frames += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.tx_ring_full += 1;
                    break;
                }
                // Refused for good (too long, device gone): drop it rather than retry it forever.
                Err(_) => self.stats.tx_errors += 1,
            }
            done += 1;
        }
        // Written frames were copied by the kernel: they complete at once.
        for m in batch.drain(..done) {
            pool.free(m);
        }
    }

    fn maintain(&mut self, _pool: &mut MbufPool) {}

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn caps(&self) -> NicCaps {
        NicCaps::with_mtu(self.cfg.mtu)
    }

    fn mac(&self) -> [u8; 6] {
        self.cfg.mac
    }

    fn stats(&self) -> NicStats {
        self.stats
    }

    fn frames_held(&self) -> u32 {
        0
    }

    /// Holds no frames: reads and writes copy.
    fn release(&mut self, _pool: &mut MbufPool) {}
}

/// Completes a partial (`NEEDS_CSUM`) checksum: the field at `start + offset` holds the pseudo-header sum; the
/// checksum is the complement of the one's-complement sum from `start` to the end of the frame, field included.
/// False when the offsets leave the frame.
fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start + offset;
    if start >= frame.len() || field + 2 > frame.len() {
        return false;
    }
    let mut sum: u32 = 0;
    let mut words = frame[start..].chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // As the kernel's `skb_checksum_help`: a computed 0 goes out as 0xffff (0 means "no checksum" for UDP).
    let csum = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Multiplier of the steering hash (the golden-ratio constant of Fibonacci hashing).
const STEER_MUL: u32 = 0x9e37_79b1;

fn be16(frame: &[u8], at: usize) -> Option<u32> {
    let b = frame.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

fn be32(frame: &[u8], at: usize) -> Option<u32> {
    let b = frame.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The steering hash of an Ethernet frame, or `None` where [`steering_program`] returns 0 before hashing.
fn steer_hash(frame: &[u8]) -> Option<u32> {
    if be16(frame, 12)? != 0x0800 {
        return None;
    }
    let vihl = *frame.get(14)?;
    if vihl & 0xf0 != 0x40 || vihl & 0x0f < 5 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let mut h = be32(frame, 26)? ^ be32(frame, 30)?;
    let proto = *frame.get(23)?;
    let frag = be16(frame, 20)?;
    if frag & 0x3fff == 0 && (proto == 6 || proto == 17) {
        h ^= be32(frame, 14 + ihl)?;
    }
    Some(mix(h))
}

fn mix(h: u32) -> u32 {
    let h = h.wrapping_mul(STEER_MUL);
    h ^ (h >> 16)
}

/// The TAP queue (of `queues`) that Linux steers `frame` (a whole Ethernet frame) to: the Rust twin of
/// [`steering_program`]; see the module docs for the function. Returns 0 when `queues` is 0.
pub fn steer_queue(frame: &[u8], queues: u32) -> u32 {
    if queues == 0 {
        return 0;
    }
    steer_hash(frame).map_or(0, |h| h % queues)
}

/// The queue that frames of a TCP (`proto` 6) or UDP (17) flow *arriving* from `src:sport` to `dst:dport` steer to,
/// without building a frame: pick a local ephemeral `dport` for which this is the core's own queue.
pub fn steer_queue_for_flow(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16, queues: u32) -> u32 {
    if queues == 0 {
        return 0;
    }
    let mut h = u32::from_be_bytes(src) ^ u32::from_be_bytes(dst);
    if proto == 6 || proto == 17 {
        h ^= (u32::from(sport) << 16) | u32::from(dport);
    }
    mix(h) % queues
}

// eBPF opcode pieces (include/uapi/linux/bpf.h, bpf_common.h).
const LD: u8 = 0x00;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MUL: u8 = 0x20;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const MOD: u8 = 0x90;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const EXIT: u8 = 0x90;

/// One instruction; registers are 0..=10 (`dst_reg:4, src_reg:4`, dst in the low nibble on little-endian).
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    #[cfg(target_endian = "little")]
    let regs = (dst & 0xf) | (src << 4);
    #[cfg(target_endian = "big")]
    let regs = (dst << 4) | (src & 0xf);
    BpfInsn { code, regs, off, imm }
}

/// Number of instructions in [`steering_program`].
pub const STEERING_PROGRAM_LEN: usize = 31;

/// The eBPF socket-filter program that steers frames Linux sends into a TAP of `queues` queues, returning
/// [`steer_queue`]`(frame, queues)` (`queues` 0 is taken as 1).
///
/// Hand-assembled. Registers: r6 = the skb (the implicit operand of `LD_ABS`/`LD_IND`, which load big-endian
/// values of the frame into r0 and end the program with result 0 when the frame is too short: the `?` of the
/// Rust twin), r7 = IHL * 4, r8 = the hash, r9 = the IP protocol. The hash arithmetic is 32-bit (`ALU`), as in
/// the Rust twin. The kernel takes the result modulo the number of attached queues again, which changes nothing
/// while all `queues` are attached.
pub fn steering_program(queues: u32) -> [BpfInsn; STEERING_PROGRAM_LEN] {
    let i = insn;
    let q = queues.max(1) as i32;
    // A jump's offset counts instructions after it: a jump at `pc` with offset `o` goes to `pc + 1 + o`.
    const RET0: i16 = 29;
    const PORTS: i16 = 21;
    const HASH: i16 = 23;
    let to = |pc: i16, target: i16| target - pc - 1;
    [
        /* 0 */ i(ALU64 | MOV | X, 6, 1, 0, 0), // r6 = ctx (the skb)
        /* 1 */ i(LD | ABS | H, 0, 0, 0, 12), // r0 = ethertype
        /* 2 */
        i(JMP | JNE | K, 0, 0, to(2, RET0), 0x0800), // not IPv4 (ARP too) -> queue 0
        /* 3 */ i(LD | ABS | B, 0, 0, 0, 14), // r0 = version/IHL
        /* 4 */ i(ALU64 | MOV | X, 7, 0, 0, 0), // r7 = version/IHL
        /* 5 */ i(ALU | AND | K, 0, 0, 0, 0xf0), // w0 = version << 4
        /* 6 */ i(JMP | JNE | K, 0, 0, to(6, RET0), 0x40), // not version 4 -> queue 0
        /* 7 */ i(ALU | AND | K, 7, 0, 0, 0x0f), // w7 = IHL
        /* 8 */ i(JMP | JLT | K, 7, 0, to(8, RET0), 5), // IHL < 5 -> queue 0
        /* 9 */ i(ALU | LSH | K, 7, 0, 0, 2), // w7 = IHL * 4
        /* 10 */ i(LD | ABS | W, 0, 0, 0, 26), // r0 = source address
        /* 11 */ i(ALU64 | MOV | X, 8, 0, 0, 0), // r8 = source address
        /* 12 */ i(LD | ABS | W, 0, 0, 0, 30), // r0 = destination address
        /* 13 */ i(ALU | XOR | X, 8, 0, 0, 0), // w8 ^= destination address
        /* 14 */ i(LD | ABS | B, 0, 0, 0, 23), // r0 = protocol
        /* 15 */ i(ALU64 | MOV | X, 9, 0, 0, 0), // r9 = protocol
        /* 16 */ i(LD | ABS | H, 0, 0, 0, 20), // r0 = flags and fragment offset
        /* 17 */ i(ALU | AND | K, 0, 0, 0, 0x3fff), // w0 &= MF | fragment offset
        /* 18 */ i(JMP | JNE | K, 0, 0, to(18, HASH), 0), // a fragment: no ports
        /* 19 */ i(JMP | JEQ | K, 9, 0, to(19, PORTS), 6), // TCP -> ports
        /* 20 */
        i(JMP | JNE | K, 9, 0, to(20, HASH), 17), // neither TCP nor UDP: no ports
        /* 21 */
        i(LD | IND | W, 0, 7, 0, 14), // PORTS: r0 = (sport << 16) | dport at 14 + IHL * 4
        /* 22 */ i(ALU | XOR | X, 8, 0, 0, 0), // w8 ^= ports
        /* 23 */ i(ALU | MUL | K, 8, 0, 0, STEER_MUL as i32), // HASH: w8 *= STEER_MUL
        /* 24 */ i(ALU | MOV | X, 0, 8, 0, 0), // w0 = w8
        /* 25 */ i(ALU | RSH | K, 0, 0, 0, 16), // w0 >>= 16
        /* 26 */ i(ALU | XOR | X, 0, 8, 0, 0), // w0 ^= w8
        /* 27 */ i(ALU | MOD | K, 0, 0, 0, q), // w0 %= queues
        /* 28 */ i(JMP | EXIT, 0, 0, 0, 0), // return w0
        /* 29 */ i(ALU | MOV | K, 0, 0, 0, 0), // RET0: w0 = 0
        /* 30 */ i(JMP | EXIT, 0, 0, 0, 0), // return 0
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP/TCP frame with the given fields (checksums left zero: steering ignores them).
    fn frame(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, frag: u16, ihl: u8) -> Vec<u8> {
        let opts = usize::from(ihl - 5) * 4;
        let mut f = vec![0u8; 14 + 20 + opts + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x40 | ihl;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        let l4 = 34 + opts;
        f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        f
    }

    const A: [u8; 4] = [198, 18, 0, 2];
    const D: [u8; 4] = [198, 18, 0, 1];

    #[test]
    fn steering_matches_the_flow_form_and_spreads() {
        let mut per_queue = [0u32; 4];
        for port in 1000..1400u16 {
            for proto in [6, 17] {
                let f = frame(proto, A, D, port, 80, 0, 5);
                let q = steer_queue(&f, 4);
                assert_eq!(q, steer_queue_for_flow(A, D, proto, port, 80, 4));
                per_queue[q as usize] += 1;
            }
        }
        assert!(per_queue.iter().all(|n| *n > 120), "uneven spread {per_queue:?}");
    }

    #[test]
    fn steering_special_cases() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(steer_queue(&arp, 4), 0);
        assert_eq!(steer_queue(&[], 4), 0);
        assert_eq!(steer_queue(&frame(17, A, D, 1, 2, 0, 5)[..33], 4), 0, "too short for the addresses");
        assert_eq!(steer_queue(&frame(17, A, D, 1, 2, 0, 5)[..37], 4), 0, "too short for the ports");
        assert_eq!(steer_queue(&frame(17, A, D, 1, 2, 0, 5), 0), 0);
        // Options move the ports: the hash still finds them.
        for sport in 0..64 {
            assert_eq!(steer_queue(&frame(6, A, D, sport, 9, 0, 7), 8), steer_queue_for_flow(A, D, 6, sport, 9, 8));
        }
        // Fragments and other protocols hash the addresses only.
        let addr_only = steer_queue_for_flow(A, D, 1, 0, 0, 8);
        assert_eq!(steer_queue(&frame(17, A, D, 5, 6, 0x2000, 5), 8), addr_only, "first fragment (MF)");
        assert_eq!(steer_queue(&frame(17, A, D, 5, 6, 0x0010, 5), 8), addr_only, "later fragment");
        assert_eq!(steer_queue(&frame(1, A, D, 5, 6, 0, 5), 8), addr_only, "ICMP");
        // DF alone is not a fragment.
        assert_eq!(steer_queue(&frame(17, A, D, 5, 6, 0x4000, 5), 8), steer_queue_for_flow(A, D, 17, 5, 6, 8));
        let mut bad = frame(17, A, D, 5, 6, 0, 5);
        bad[14] = 0x44;
        assert_eq!(steer_queue(&bad, 8), 0, "IHL below 5");
        bad[14] = 0x65;
        assert_eq!(steer_queue(&bad, 8), 0, "IPv6 version nibble");
    }

    #[test]
    fn program_jumps_stay_inside_and_end_in_exit() {
        let prog = steering_program(4);
        for (pc, insn) in prog.iter().enumerate() {
            let (class, op) = (insn.code & 0x07, insn.code & 0xf0);
            if class == JMP && op != EXIT {
                let target = pc as i64 + 1 + i64::from(insn.off);
                assert!(target > pc as i64 && target < prog.len() as i64, "jump at {pc} leaves the program");
            }
        }
        assert_eq!(prog[STEERING_PROGRAM_LEN - 1].code, JMP | EXIT);
        #[cfg(target_endian = "little")]
        assert_eq!(prog[0].regs, 0x16, "r6 = r1: dst in the low nibble");
        assert_eq!(steering_program(0), steering_program(1), "0 queues is taken as 1");
    }

    #[test]
    fn partial_checksum_is_completed() {
        // UDP 198.18.0.2:1000 -> 198.18.0.1:2000, payload "hi!", checksum field holding the pseudo-header sum.
        let mut f = frame(17, A, D, 1000, 2000, 0, 5);
        f.extend_from_slice(b"hi!");
        let udp_len = 8 + 3u16;
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        let pseudo = {
            let mut s: u32 = 0;
            for w in [u16::from_be_bytes([A[0], A[1]]), u16::from_be_bytes([A[2], A[3]])] {
                s += u32::from(w);
            }
            for w in [u16::from_be_bytes([D[0], D[1]]), u16::from_be_bytes([D[2], D[3]])] {
                s += u32::from(w);
            }
            s += 17 + u32::from(udp_len);
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        f[40..42].copy_from_slice(&pseudo.to_be_bytes());
        assert!(complete_checksum(&mut f, 34, 6));
        // A receiver's check: pseudo header + UDP segment (checksum included) sums to 0xffff.
        let mut s = u32::from(pseudo);
        for w in f[34..].chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        assert_eq!(s, 0xffff);
        assert!(!complete_checksum(&mut f, 60, 0), "start past the end");
        assert!(!complete_checksum(&mut f, 34, 10), "field past the end");
    }
}
