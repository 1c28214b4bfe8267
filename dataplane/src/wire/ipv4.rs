//! IPv4 addresses, prefixes and packets.
//!
//! Heads up: read RFC 791 (header layout, fragmentation fields), RFC 1122 §3.2.1 (what a host must check on
//! input), RFC 1071 (the header checksum), RFC 1112 and RFC 5771 (multicast), RFC 6890 (special-purpose
//! addresses) and RFC 4632 (CIDR notation). IPv4 options are exposed raw and never emitted; fragments parse
//! fine, and it is up to the caller to count and drop them (`Ipv4Packet::is_fragment`).
use core::fmt;
use core::str::FromStr;

use super::checksum;
use super::field_io::{read_u16, write_u16};
use super::{Error, Result};

enum_with_unknown! {
    /// The IPv4 protocol field (the IPv6 "next header").
    pub enum IpProtocol(u8) {
        /// ICMP (1).
        Icmp = 1,
        /// TCP (6).
        Tcp = 6,
        /// UDP (17).
        Udp = 17,
    }
}

/// An IPv4 address, in network byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ipv4Address(pub [u8; 4]);

impl Ipv4Address {
    /// `0.0.0.0`.
    pub const UNSPECIFIED: Ipv4Address = Ipv4Address([0; 4]);
    /// `255.255.255.255`, the limited broadcast address.
    pub const BROADCAST: Ipv4Address = Ipv4Address([255; 4]);

    /// The address `a.b.c.d`.
    pub const fn new(a: u8, b: u8, c: u8, d: u8) -> Ipv4Address {
        Ipv4Address([a, b, c, d])
    }

    /// Builds an address from exactly four bytes in network order.
    ///
    /// # Panics
    /// If `bytes` is not four bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Ipv4Address {
        let mut addr = [0u8; 4];
        addr.copy_from_slice(bytes);
        Ipv4Address(addr)
    }

    /// The address as bytes, in network order.
    pub const fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The address as a host-order integer (`198.18.0.1` is `0xc612_0001`).
    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The address of a host-order integer (`0xc612_0001` is `198.18.0.1`).
    pub const fn from_u32(value: u32) -> Ipv4Address {
        Ipv4Address(value.to_be_bytes())
    }

    /// Whether this is the limited broadcast address `255.255.255.255`.
    pub const fn is_broadcast(&self) -> bool {
        self.to_u32() == u32::MAX
    }

    /// Whether this is a multicast (class D) address, `224.0.0.0/4`.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0xf0 == 0xe0
    }

    /// Whether this is `0.0.0.0`.
    pub const fn is_unspecified(&self) -> bool {
        self.to_u32() == 0
    }

    /// Whether this is in `127.0.0.0/8`.
    pub const fn is_loopback(&self) -> bool {
        self.0[0] == 127
    }

    /// Whether this is in `169.254.0.0/16`.
    pub const fn is_link_local(&self) -> bool {
        self.0[0] == 169 && self.0[1] == 254
    }

    /// Whether this can be a unicast address: not unspecified, broadcast or multicast. (A subnet's directed
    /// broadcast address looks unicast here; only [`Ipv4Cidr`] knows better.)
    pub const fn is_unicast(&self) -> bool {
        !(self.is_broadcast() || self.is_multicast() || self.is_unspecified())
    }
}

impl fmt::Display for Ipv4Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{}.{}.{}.{}", b[0], b[1], b[2], b[3])
    }
}

/// Parses one decimal octet: 1 to 3 ASCII digits, no sign, no leading zero (which some parsers read as octal).
fn parse_octet(s: &str) -> Result<u8> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err(Error);
    }
    s.parse::<u8>().map_err(|_| Error)
}

impl FromStr for Ipv4Address {
    type Err = Error;

    /// Parses dotted-quad notation, `198.18.0.1`, strictly: four decimal octets, no leading zeros.
    fn from_str(s: &str) -> Result<Self> {
        let mut addr = [0u8; 4];
        let mut parts = s.split('.');
        for byte in addr.iter_mut() {
            *byte = parse_octet(parts.next().ok_or(Error)?)?;
        }
        if parts.next().is_some() {
            return Err(Error);
        }
        Ok(Ipv4Address(addr))
    }
}

impl From<[u8; 4]> for Ipv4Address {
    fn from(bytes: [u8; 4]) -> Self {
        Ipv4Address(bytes)
    }
}

impl From<std::net::Ipv4Addr> for Ipv4Address {
    fn from(addr: std::net::Ipv4Addr) -> Self {
        Ipv4Address(addr.octets())
    }
}

impl From<Ipv4Address> for std::net::Ipv4Addr {
    fn from(addr: Ipv4Address) -> Self {
        std::net::Ipv4Addr::from(addr.0)
    }
}

/// An IPv4 address with a prefix length: an interface address and its subnet, `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address (host bits kept: this is an interface address, not only a network).
    pub addr: Ipv4Address,
    /// The prefix length, `0..=32`. Methods treat a larger value as 32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; `Err` if `prefix_len > 32`.
    pub const fn new(addr: Ipv4Address, prefix_len: u8) -> Result<Ipv4Cidr> {
        if prefix_len > 32 {
            Err(Error)
        } else {
            Ok(Ipv4Cidr { addr, prefix_len })
        }
    }

    /// The netmask as a host-order integer.
    const fn mask_u32(&self) -> u32 {
        let len = if self.prefix_len > 32 { 32 } else { self.prefix_len as u32 };
        // checked_shl: a shift by 32 is out of range for u32.
        match u32::MAX.checked_shl(32 - len) {
            Some(mask) => mask,
            None => 0,
        }
    }

    /// The netmask, `255.255.255.0` for a `/24`.
    pub const fn netmask(&self) -> Ipv4Address {
        Ipv4Address::from_u32(self.mask_u32())
    }

    /// The network address (host bits cleared), `198.18.0.0` for `198.18.0.1/24`.
    pub const fn network(&self) -> Ipv4Address {
        Ipv4Address::from_u32(self.addr.to_u32() & self.mask_u32())
    }

    /// The directed broadcast address (host bits set), `198.18.0.255` for `198.18.0.1/24`.
    ///
    /// For `/31` (RFC 3021) and `/32` this is just the highest address of the prefix, which is not a broadcast
    /// address there; check `prefix_len < 31` before treating it as one.
    pub const fn broadcast(&self) -> Ipv4Address {
        Ipv4Address::from_u32(self.addr.to_u32() | !self.mask_u32())
    }

    /// Whether `addr` is inside this prefix.
    pub const fn contains(&self, addr: Ipv4Address) -> bool {
        let mask = self.mask_u32();
        addr.to_u32() & mask == self.addr.to_u32() & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    /// Parses `198.18.0.1/24`. The `/len` part is required.
    fn from_str(s: &str) -> Result<Self> {
        let (addr, len) = s.split_once('/').ok_or(Error)?;
        let len = parse_octet(len)?;
        Ipv4Cidr::new(addr.parse()?, len)
    }
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet in a buffer. The buffer may be longer than the packet (Ethernet padding): the packet
/// ends at `total_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of an IPv4 header without options.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps `buffer` without checking it (see the panic contract in [`wire`](super)).
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err` unless the buffer holds a 20-byte header, the version is 4, and
    /// `20 <= header_len <= total_len <= buffer length`. The checksum is not checked.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || self.version() != 4 {
            return Err(Error);
        }
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || header_len > total_len || total_len > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for a packet `new_checked` accepted).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP (high 6 bits) and ECN (low 2 bits) byte, formerly TOS.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length field: header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flags_offset(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// The fragment offset, in bytes (the field counts 8-byte units; this is already multiplied).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this packet is a fragment: MF set or a non-zero offset. The dataplane does not reassemble.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// The time-to-live field.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The raw options, between the fixed header and `header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// The payload: from `header_len` to `total_len` (any Ethernet padding after it is excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }

    /// Whether the header checksum is correct. Always true under `cfg(fuzzing)`.
    pub fn verify_checksum(&self) -> bool {
        if checksum::FUZZING {
            return true;
        }
        checksum::data(&self.buffer.as_ref()[..usize::from(self.header_len())]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version field.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length, in bytes (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length field.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len)
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], ident)
    }

    fn set_flags_offset(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::FLG_OFF], value)
    }

    /// Clears the flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flags_offset(0)
    }

    /// Sets or clears Don't Fragment.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_DF } else { v & !FLAG_DF })
    }

    /// Sets or clears More Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_MF } else { v & !FLAG_MF })
    }

    /// Sets the fragment offset, in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.flags_offset();
        self.set_flags_offset((v & !OFFSET_MASK) | (offset >> 3))
    }

    /// Sets the time-to-live.
    #[inline]
    pub fn set_hop_limit(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol field.
    #[inline]
    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the checksum field (see [`fill_checksum`](Self::fill_checksum)).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Address) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.0)
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Address) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.0)
    }

    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload (`header_len..total_len`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (usize::from(self.header_len()), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }

    /// Computes and writes the header checksum (set every other header field first).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..usize::from(self.header_len())]);
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The IPv4 header fields the stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Address,
    /// Destination address.
    pub dst_addr: Ipv4Address,
    /// What the payload is.
    pub next_header: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
}

impl Ipv4Repr {
    /// Length of the header `emit` writes.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the header of `packet`, after re-checking its lengths; with `checksum_check`, also rejects a wrong
    /// header checksum. Options are skipped, and fragments are accepted (use [`Ipv4Packet::is_fragment`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, checksum_check: bool) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if checksum_check && !packet.verify_checksum() {
            return Err(Error);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len() - u16::from(packet.header_len())),
            hop_limit: packet.hop_limit(),
        })
    }

    /// The length of the header `emit` writes (20: no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header: version 4, IHL 5, DSCP/ECN 0, total length `20 + payload_len`, ident 0, DF set,
    /// no fragmentation, the TTL, protocol and addresses, then the header checksum. The payload is left alone.
    ///
    /// Ident 0 with DF is what Linux sends for DF packets (RFC 6864 §4.1: the ident of an atomic datagram has no
    /// meaning).
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes, or `payload_len > 65515` (the total length would not fit).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        let total_len = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 payload longer than 65515 bytes");
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp_ecn(0);
        packet.set_total_len(total_len);
        packet.set_ident(0);
        packet.set_flags_offset(FLAG_DF);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ICMP echo request from 198.18.0.2 to 198.18.0.1 (`ping -c1 -p 6162`), IPv4 header first, as captured
    /// after the Ethernet header.
    static PING_PACKET: [u8; 36] = [
        0x45, 0x00, 0x00, 0x24, 0x5e, 0x6b, 0x40, 0x00, 0x40, 0x01, 0x50, 0x46, 198, 18, 0, 2, 198, 18, 0,
        1, // IPv4
        0x08, 0x00, 0x60, 0x41, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x61, 0x62, 0x61, 0x62, 0x61, 0x62, // ICMP
    ];

    #[test]
    fn parse_captured_packet() {
        let packet = Ipv4Packet::new_checked(&PING_PACKET[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp_ecn(), 0);
        assert_eq!(packet.total_len(), 36);
        assert_eq!(packet.ident(), 0x5e6b);
        assert!(packet.dont_frag() && !packet.more_frags() && !packet.is_fragment());
        assert_eq!(packet.frag_offset(), 0);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.next_header(), IpProtocol::Icmp);
        assert_eq!(packet.checksum(), 0x5046);
        assert_eq!(packet.src_addr(), Ipv4Address::new(198, 18, 0, 2));
        assert_eq!(packet.dst_addr(), Ipv4Address::new(198, 18, 0, 1));
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload(), &PING_PACKET[20..]);
        assert!(packet.verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&packet, true),
            Ok(Ipv4Repr {
                src_addr: Ipv4Address::new(198, 18, 0, 2),
                dst_addr: Ipv4Address::new(198, 18, 0, 1),
                next_header: IpProtocol::Icmp,
                payload_len: 16,
                hop_limit: 64,
            })
        );
    }

    #[test]
    fn emit_matches_capture_up_to_ident() {
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&PING_PACKET[..]).unwrap(), true).unwrap();
        let mut buf = [0u8; 36];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&PING_PACKET[20..]);
        // We send ident 0; the capture has 0x5e6b. Everything else, checksum aside, is identical.
        let mut expected = PING_PACKET;
        expected[4..6].copy_from_slice(&[0, 0]);
        expected[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::data(&expected[..20]);
        expected[10..12].copy_from_slice(&(!sum).to_be_bytes());
        assert_eq!(buf, expected);
        assert!(Ipv4Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    #[test]
    fn payload_stops_at_total_len() {
        // Ethernet pads short frames; the padding is not payload.
        let mut padded = PING_PACKET.to_vec();
        padded.extend_from_slice(&[0xee; 10]);
        let packet = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload(), &PING_PACKET[20..]);
        assert_eq!(Ipv4Repr::parse(&packet, true).unwrap().payload_len, 16);
    }

    #[test]
    fn rejects_malformed() {
        let check = |bytes: &[u8]| {
            assert_eq!(Ipv4Packet::new_checked(bytes), Err(Error));
            assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(bytes), false), Err(Error));
        };
        for len in 0..36 {
            check(&PING_PACKET[..len]);
        }
        let mut b = PING_PACKET;
        b[0] = 0x65; // version 6
        check(&b);
        let mut b = PING_PACKET;
        b[0] = 0x44; // IHL 4
        check(&b);
        let mut b = PING_PACKET;
        b[0] = 0x4f; // IHL 15 = 60 bytes > total length 36
        check(&b);
        let mut b = PING_PACKET;
        b[2..4].copy_from_slice(&19u16.to_be_bytes()); // total length < header length
        check(&b);
        let mut b = PING_PACKET;
        b[2..4].copy_from_slice(&37u16.to_be_bytes()); // total length > buffer
        check(&b);
    }

    #[test]
    fn bad_checksum_is_rejected_only_when_asked() {
        let mut b = PING_PACKET;
        b[8] = 63; // TTL changed, checksum not updated
        let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet, true), Err(Error));
        assert!(Ipv4Repr::parse(&packet, false).is_ok());
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte option (NOP NOP NOP EOL), MF set, offset 185 (1480 bytes).
        let mut b = vec![0x46, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x20, 0xb9, 0x40, 0x11, 0, 0];
        b.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1, 0, 0xaa, 0xbb, 0xcc, 0xdd]);
        let mut packet = Ipv4Packet::new_unchecked(&mut b[..]);
        packet.fill_checksum();
        let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[1, 1, 1, 0]);
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(packet.more_frags() && !packet.dont_frag() && packet.is_fragment());
        assert_eq!(packet.frag_offset(), 1480);
        let repr = Ipv4Repr::parse(&packet, true).unwrap();
        assert_eq!(repr.payload_len, 4);
        // A last fragment: MF clear but offset non-zero.
        let mut b2 = b.clone();
        let mut packet = Ipv4Packet::new_unchecked(&mut b2[..]);
        packet.set_more_frags(false);
        assert!(packet.is_fragment());
        packet.set_frag_offset(0);
        packet.set_dont_frag(true);
        assert!(!packet.is_fragment() && packet.dont_frag());
    }

    #[test]
    fn address_properties() {
        assert!(Ipv4Address::BROADCAST.is_broadcast());
        assert!(Ipv4Address::UNSPECIFIED.is_unspecified());
        assert!(Ipv4Address::new(224, 0, 0, 1).is_multicast());
        assert!(Ipv4Address::new(239, 255, 255, 250).is_multicast());
        assert!(!Ipv4Address::new(240, 0, 0, 1).is_multicast());
        assert!(Ipv4Address::new(127, 1, 2, 3).is_loopback());
        assert!(Ipv4Address::new(169, 254, 1, 1).is_link_local());
        assert!(Ipv4Address::new(198, 18, 0, 1).is_unicast());
        assert!(!Ipv4Address::BROADCAST.is_unicast());
        let a = Ipv4Address::new(198, 18, 0, 1);
        assert_eq!(a.to_u32(), 0xc612_0001);
        assert_eq!(Ipv4Address::from_u32(0xc612_0001), a);
        assert_eq!(Ipv4Address::from_bytes(&[198, 18, 0, 1]), a);
        assert_eq!(a.as_bytes(), &[198, 18, 0, 1]);
        assert_eq!(std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(Ipv4Address::from(std::net::Ipv4Addr::new(198, 18, 0, 1)), a);
    }

    #[test]
    fn address_text() {
        let a = Ipv4Address::new(198, 18, 0, 1);
        assert_eq!(a.to_string(), "198.18.0.1");
        assert_eq!("198.18.0.1".parse(), Ok(a));
        assert_eq!("0.0.0.0".parse(), Ok(Ipv4Address::UNSPECIFIED));
        assert_eq!("255.255.255.255".parse(), Ok(Ipv4Address::BROADCAST));
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "1.2.3.4 ", "+1.2.3.4", "1.2.3.-4"] {
            assert_eq!(bad.parse::<Ipv4Address>(), Err(Error), "{bad:?}");
        }
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(c, Ipv4Cidr { addr: Ipv4Address::new(198, 18, 0, 1), prefix_len: 24 });
        assert_eq!(c.to_string(), "198.18.0.1/24");
        assert_eq!(c.netmask(), Ipv4Address::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Address::new(198, 18, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Address::new(198, 18, 0, 255));
        assert!(c.contains(Ipv4Address::new(198, 18, 0, 200)));
        assert!(!c.contains(Ipv4Address::new(198, 18, 1, 1)));

        let all = Ipv4Cidr::new(Ipv4Address::new(10, 1, 2, 3), 0).unwrap();
        assert_eq!(all.netmask(), Ipv4Address::UNSPECIFIED);
        assert!(all.contains(Ipv4Address::BROADCAST));
        assert_eq!(all.broadcast(), Ipv4Address::BROADCAST);

        let host = Ipv4Cidr::new(Ipv4Address::new(10, 1, 2, 3), 32).unwrap();
        assert_eq!(host.netmask(), Ipv4Address::BROADCAST);
        assert!(host.contains(Ipv4Address::new(10, 1, 2, 3)));
        assert!(!host.contains(Ipv4Address::new(10, 1, 2, 4)));

        let wide: Ipv4Cidr = "198.18.0.1/15".parse().unwrap();
        assert!(wide.contains(Ipv4Address::new(198, 19, 255, 1)));
        assert_eq!(wide.broadcast(), Ipv4Address::new(198, 19, 255, 255));

        assert_eq!(Ipv4Cidr::new(Ipv4Address::UNSPECIFIED, 33), Err(Error));
        // Out-of-range fields built by hand do not panic.
        let odd = Ipv4Cidr { addr: Ipv4Address::new(1, 2, 3, 4), prefix_len: 200 };
        assert_eq!(odd.netmask(), Ipv4Address::BROADCAST);
        for bad in ["198.18.0.1", "198.18.0.1/", "198.18.0.1/33", "198.18.0.1/024", "198.18.0/24", "/24", "1.2.3.4/2/3"]
        {
            assert_eq!(bad.parse::<Ipv4Cidr>(), Err(Error), "{bad:?}");
        }
    }

    #[test]
    fn protocol_conversions() {
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(u8::from(IpProtocol::Udp), 17);
        assert_eq!(IpProtocol::from(50), IpProtocol::Unknown(50));
    }

    proptest! {
        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100), fix in any::<bool>()) {
            let mut bytes = bytes;
            if fix && bytes.len() >= 20 {
                // Make a good share of inputs pass the first checks so the getters behind them run.
                bytes[0] = 0x40 | (bytes[0] & 0x0f).max(5);
                let total = (bytes.len() as u16).min(u16::from(bytes[2]) << 8 | u16::from(bytes[3]));
                let header_len = u16::from(bytes[0] & 0x0f) * 4;
                bytes[2..4].copy_from_slice(&total.max(header_len).to_be_bytes());
            }
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.header_len(), p.dscp_ecn(), p.total_len(), p.ident(), p.dont_frag());
                let _ = (p.more_frags(), p.frag_offset(), p.is_fragment(), p.hop_limit(), p.next_header());
                let _ = (p.checksum(), p.src_addr(), p.dst_addr(), p.options(), p.payload(), p.verify_checksum());
                prop_assert!(p.payload().len() + p.options().len() + 20 == usize::from(p.total_len()));
                prop_assert!(Ipv4Repr::parse(&p, false).is_ok());
            }
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&bytes[..]), true);
        }

        #[test]
        fn emit_then_parse(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            proto in any::<u8>(),
            payload_len in 0usize..2000,
            ttl in any::<u8>(),
        ) {
            let repr = Ipv4Repr {
                src_addr: Ipv4Address(src),
                dst_addr: Ipv4Address(dst),
                next_header: IpProtocol::from(proto),
                payload_len,
                hop_limit: ttl,
            };
            let mut buf = vec![0xa5u8; repr.buffer_len() + payload_len];
            let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut packet);
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert!(packet.dont_frag() && !packet.is_fragment());
            prop_assert_eq!(Ipv4Repr::parse(&packet, true), Ok(repr));
        }

        #[test]
        fn address_text_round_trips(bytes in any::<[u8; 4]>(), len in 0u8..=32) {
            let a = Ipv4Address(bytes);
            prop_assert_eq!(a.to_string().parse::<Ipv4Address>(), Ok(a));
            prop_assert_eq!(a.to_string().parse::<std::net::Ipv4Addr>().unwrap(), std::net::Ipv4Addr::from(a));
            let c = Ipv4Cidr::new(a, len).unwrap();
            prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>(), Ok(c));
            prop_assert!(c.contains(a) && c.contains(c.network()) && c.contains(c.broadcast()));
            prop_assert_eq!(c.netmask().to_u32().count_ones(), u32::from(len));
        }
    }
}
