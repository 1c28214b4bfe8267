//! UDP datagrams.
//!
//! Heads up: read RFC 768 (header and pseudo-header checksum; a transmitted checksum of zero means "none", and
//! a computed zero is sent as `0xffff`) and RFC 1122 §4.1.3.4 (a host must verify a non-zero checksum and drop
//! the datagram if it fails). For senders that leave the checksum to offload, see [`checksum::is_partial`].
use super::checksum;
use super::field_io::{read_u16, write_u16};
use super::ipv4::{IpProtocol, Ipv4Address};
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram in a buffer (the IP payload). The datagram ends at its length field; anything after
/// it in the buffer is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of a UDP header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps `buffer` without checking it (see the panic contract in [`wire`](super)).
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err` unless the buffer holds the 8-byte header and `8 <= length field <= buffer length`.
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > buffer_len {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The checksum field (0: the sender computed none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload, from the end of the header to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is correct for a datagram from `src` to `dst`. A zero checksum field means "no
    /// checksum" and passes. Always true under `cfg(fuzzing)`.
    pub fn verify_checksum(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        if checksum::FUZZING {
            return true;
        }
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let sum = checksum::combine(&[
            checksum::pseudo_header(&src, &dst, IpProtocol::Udp, u32::from(len)),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        sum == 0xffff
    }

    /// Whether the checksum field holds only the pseudo-header sum that a Linux sender with TX checksum offload
    /// leaves behind (see [`checksum::is_partial`]).
    pub fn is_checksum_partial(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        checksum::is_partial(self.checksum(), &src, &dst, IpProtocol::Udp, u32::from(self.len()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port)
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port)
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// The payload (up to the length field), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the pseudo header, the header and the payload (up to the length field) and
    /// writes it; a computed zero is written as `0xffff`, since zero means "no checksum".
    pub fn fill_checksum(&mut self, src: Ipv4Address, dst: Ipv4Address) {
        self.set_checksum(0);
        let len = self.len();
        let sum = checksum::combine(&[
            checksum::pseudo_header(&src, &dst, IpProtocol::Udp, u32::from(len)),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        let field = !sum;
        self.set_checksum(if field == 0 { 0xffff } else { field })
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The UDP header fields the stack keeps (the length and checksum follow from the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Length of a UDP header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the ports of `packet` after re-checking its lengths; with `checksum_check`, also rejects a wrong
    /// non-zero checksum for a datagram from `src` to `dst`. Port 0 is not rejected here: no socket matches it,
    /// and the caller's lookup counts it.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Address,
        dst: Ipv4Address,
        checksum_check: bool,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if checksum_check && !packet.verify_checksum(src, dst) {
            return Err(Error);
        }
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// The header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The datagram length for `payload_len` bytes of payload.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the ports, the length (`8 + payload_len`) and a zero checksum. The caller then copies the payload
    /// into `payload_mut()` and calls [`UdpPacket::fill_checksum`] (or leaves the checksum to offload).
    ///
    /// # Panics
    /// If the buffer is shorter than 8 bytes, or `payload_len > 65527`.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>, payload_len: usize) {
        let len = u16::try_from(HEADER_LEN + payload_len).expect("UDP payload longer than 65527 bytes");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
    }

    /// [`emit_header`](Self::emit_header), copies `payload`, then fills the checksum for `src` -> `dst`.
    ///
    /// # Panics
    /// If the buffer is shorter than `8 + payload.len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Address,
        dst: Ipv4Address,
        payload: &[u8],
    ) {
        self.emit_header(packet, payload.len());
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv4Repr};
    use proptest::prelude::*;

    const SRC: Ipv4Address = Ipv4Address([198, 18, 0, 2]);
    const DST: Ipv4Address = Ipv4Address([198, 18, 0, 1]);

    /// A captured datagram (`echo -n hello | nc -u -p 40000 198.18.0.1 8080` from 198.18.0.2), Ethernet and IPv4
    /// headers included, padded to 60 bytes.
    static UDP_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x21, 0xa1, 0x3c, 0x40, 0x00, 0x40, 0x11, 0x0d, 0x68, 198, 18, 0, 2, 198, 18, 0,
        1, // IPv4
        0x9c, 0x40, 0x1f, 0x90, 0x00, 0x0d, 0x74, 0x09, // UDP header
        b'h', b'e', b'l', b'l', b'o', // payload
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // Ethernet padding
    ];

    fn udp_bytes() -> &'static [u8] {
        &UDP_FRAME[34..47]
    }

    #[test]
    fn parse_captured_datagram() {
        let frame = EthernetFrame::new_checked(&UDP_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, true).unwrap();
        assert_eq!((ip_repr.src_addr, ip_repr.dst_addr, ip_repr.next_header), (SRC, DST, IpProtocol::Udp));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (40000, 8080, 13));
        assert_eq!(udp.checksum(), 0x7409);
        assert_eq!(udp.payload(), b"hello");
        assert!(udp.verify_checksum(SRC, DST));
        assert!(!udp.is_checksum_partial(SRC, DST));
        assert!(!udp.verify_checksum(DST, Ipv4Address([198, 18, 0, 3])));
        assert_eq!(UdpRepr::parse(&udp, SRC, DST, true), Ok(UdpRepr { src_port: 40000, dst_port: 8080 }));
    }

    #[test]
    fn emit_matches_capture() {
        let repr = UdpRepr { src_port: 40000, dst_port: 8080 };
        let mut buf = vec![0xa5u8; repr.buffer_len(5)];
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit_header(&mut packet, 5);
        assert_eq!(packet.checksum(), 0);
        packet.payload_mut().copy_from_slice(b"hello");
        packet.fill_checksum(SRC, DST);
        assert_eq!(&buf[..], udp_bytes());

        let mut buf2 = vec![0u8; 13];
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf2[..]), SRC, DST, b"hello");
        assert_eq!(buf2, buf);
    }

    #[test]
    fn payload_stops_at_length_field() {
        let mut longer = udp_bytes().to_vec();
        longer.extend_from_slice(&[0xee; 7]);
        let udp = UdpPacket::new_checked(&longer[..]).unwrap();
        assert_eq!(udp.payload(), b"hello");
        assert!(udp.verify_checksum(SRC, DST));
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut b = udp_bytes().to_vec();
        b[6] = 0;
        b[7] = 0;
        let udp = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(udp.verify_checksum(SRC, DST));
        assert!(UdpRepr::parse(&udp, SRC, DST, true).is_ok());
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick a payload word that makes the sum 0xffff, so the checksum would be zero.
        let repr = UdpRepr { src_port: 1, dst_port: 2 };
        let mut buf = [0u8; 10];
        repr.emit_header(&mut UdpPacket::new_unchecked(&mut buf[..]), 2);
        let partial =
            checksum::combine(&[checksum::pseudo_header(&SRC, &DST, IpProtocol::Udp, 10), checksum::data(&buf)]);
        let fix = 0xffff - partial; // one's-complement: partial + fix = 0xffff, no carry
        buf[8..10].copy_from_slice(&fix.to_be_bytes());
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        packet.fill_checksum(SRC, DST);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum(SRC, DST));
    }

    #[test]
    fn bad_and_partial_checksums() {
        let mut b = udp_bytes().to_vec();
        b[8] = b'j';
        let udp = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(!udp.verify_checksum(SRC, DST));
        assert_eq!(UdpRepr::parse(&udp, SRC, DST, true), Err(Error));
        assert!(UdpRepr::parse(&udp, SRC, DST, false).is_ok());

        // What Linux leaves in the packet with TX offload on: ~csum_tcpudp_magic(src, dst, 13, UDP, 0).
        let magic_nofold: u32 = 0xc612 + 0x0002 + 0xc612 + 0x0001 + 17 + 13;
        let folded = (magic_nofold & 0xffff) + (magic_nofold >> 16);
        let csum_tcpudp_magic = !(folded as u16);
        let mut p = udp_bytes().to_vec();
        p[6..8].copy_from_slice(&(!csum_tcpudp_magic).to_be_bytes());
        let udp = UdpPacket::new_checked(&p[..]).unwrap();
        assert!(!udp.verify_checksum(SRC, DST));
        assert!(udp.is_checksum_partial(SRC, DST));
    }

    #[test]
    fn rejects_malformed() {
        let b = udp_bytes();
        for len in 0..13 {
            assert_eq!(UdpPacket::new_checked(&b[..len]), Err(Error), "len {len}");
            assert_eq!(UdpRepr::parse(&UdpPacket::new_unchecked(&b[..len]), SRC, DST, false), Err(Error));
        }
        for bad_len in [0u16, 7, 14, 0xffff] {
            let mut v = b.to_vec();
            v[4..6].copy_from_slice(&bad_len.to_be_bytes());
            assert_eq!(UdpPacket::new_checked(&v[..]), Err(Error), "length field {bad_len}");
        }
        // Exactly a header is fine: an empty datagram.
        let mut v = b[..8].to_vec();
        v[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpPacket::new_checked(&v[..]).unwrap().payload().is_empty());
    }

    proptest! {
        #[test]
        fn accessors_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            fix in any::<bool>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let mut bytes = bytes;
            if fix && bytes.len() >= 8 {
                let len = (bytes.len() as u16).min(u16::from(bytes[5]).max(8));
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let (src, dst) = (Ipv4Address(src), Ipv4Address(dst));
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let _ = (p.verify_checksum(src, dst), p.is_checksum_partial(src, dst));
                prop_assert_eq!(p.payload().len() + 8, usize::from(p.len()));
            }
            let _ = UdpRepr::parse(&UdpPacket::new_unchecked(&bytes[..]), src, dst, true);
        }

        #[test]
        fn emit_then_parse(
            src_port in any::<u16>(),
            dst_port in any::<u16>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let (src, dst) = (Ipv4Address(src), Ipv4Address(dst));
            let repr = UdpRepr { src_port, dst_port };
            let mut buf = vec![0u8; repr.buffer_len(payload.len())];
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst, &payload);
            let packet = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.checksum() != 0);
            prop_assert!(packet.verify_checksum(src, dst));
            prop_assert_eq!(packet.payload(), &payload[..]);
            prop_assert_eq!(UdpRepr::parse(&packet, src, dst, true), Ok(repr));
        }
    }
}
