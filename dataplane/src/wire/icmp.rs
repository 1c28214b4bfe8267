//! ICMPv4: echo request/reply and destination unreachable.
//!
//! Heads up: read RFC 792 (message formats), RFC 1122 §3.2.2 (when a host must and must not send an ICMP error:
//! never about an ICMP error, a broadcast or multicast destination, a non-initial fragment, or a source that is not
//! a unicast address; that policy lives in `net/`, not here) and RFC 1812 §4.3.2.3 (how much of the offending
//! datagram to quote; hosts quote the IP header plus 8 bytes, see [`error_quote`]).
//!
//! The ICMP message has no length field: it runs to the end of the IP payload, so wrap `ipv4.payload()`.
use super::checksum;
use super::field_io::{read_u16, read_u32, write_u16, write_u32};
use super::ipv4::Ipv4Packet;
use super::{Error, Result};

enum_with_unknown! {
    /// The ICMPv4 message type.
    pub enum Icmpv4Message(u8) {
        /// Echo reply (0).
        EchoReply = 0,
        /// Destination unreachable (3).
        DstUnreachable = 3,
        /// Redirect (5).
        Redirect = 5,
        /// Echo request (8).
        EchoRequest = 8,
        /// Router advertisement (9).
        RouterAdvert = 9,
        /// Router solicitation (10).
        RouterSolicit = 10,
        /// Time exceeded (11).
        TimeExceeded = 11,
        /// Parameter problem (12).
        ParamProblem = 12,
        /// Timestamp (13).
        Timestamp = 13,
        /// Timestamp reply (14).
        TimestampReply = 14,
    }
}

/// Codes of a destination unreachable message (RFC 792, RFC 1122 §3.2.2.1).
pub mod dst_unreachable {
    /// Net unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Protocol unreachable: no handler for the IP protocol.
    pub const PROTO_UNREACHABLE: u8 = 2;
    /// Port unreachable: no UDP socket on the destination port.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Fragmentation needed and DF set (the rest-of-header then carries the next-hop MTU, RFC 1191).
    pub const FRAG_REQUIRED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const DATA: RangeFrom<usize> = 8..;
}

/// Length of an ICMPv4 header: type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = field::DATA.start;

/// Bytes of the offending datagram's payload that an ICMP error quotes after its IP header.
pub const QUOTED_PAYLOAD_LEN: usize = 8;

/// What an ICMP error about `packet` should quote: its IP header (options included) and the first 8 bytes of its
/// payload, or less if the packet is shorter. Never panics, whatever the packet's fields say.
pub fn error_quote<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> &[u8] {
    let buf = packet.as_ref();
    if buf.len() < super::ipv4::HEADER_LEN {
        return buf;
    }
    let end =
        (usize::from(packet.header_len()) + QUOTED_PAYLOAD_LEN).min(usize::from(packet.total_len())).min(buf.len());
    &buf[..end]
}

/// A view of an ICMPv4 message in a buffer (the whole IP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of an ICMPv4 header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps `buffer` without checking it (see the panic contract in [`wire`](super)).
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err` if the buffer is shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The 4 bytes after the checksum, whatever the type makes of them.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::REST])
    }

    /// The identifier of an echo request or reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// The sequence number of an echo request or reply.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the whole message is correct. Always true under `cfg(fuzzing)`.
    pub fn verify_checksum(&self) -> bool {
        if checksum::FUZZING {
            return true;
        }
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into()
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value
    }

    /// Sets the checksum field (see [`fill_checksum`](Self::fill_checksum)).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// Sets the 4 bytes after the checksum.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::REST], value)
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_IDENT], value)
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_SEQNO], value)
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes and writes the checksum over the whole buffer (write the data first).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv4 messages the dataplane handles, as values borrowing their data from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier, copied from the request.
        ident: u16,
        /// Sequence number, copied from the request.
        seq_no: u16,
        /// Data, copied from the request.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// The code, one of [`dst_unreachable`].
        reason: u8,
        /// The quoted datagram: its IP header and the first 8 bytes of its payload (see [`error_quote`]).
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads `packet`, with its checksum verified when `checksum_check` is set. Echo messages must have code 0;
    /// every other type but destination unreachable is an [`Error`] (unsupported).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        checksum_check: bool,
    ) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if checksum_check && !packet.verify_checksum() {
            return Err(Error);
        }
        // Borrow the data from the underlying buffer (lifetime 'a), not from the view.
        let buffer: &'a [u8] = packet.buffer.as_ref();
        let data = &buffer[field::DATA];
        match (packet.msg_type(), packet.msg_code()) {
            (Icmpv4Message::EchoRequest, 0) => {
                Ok(Icmpv4Repr::EchoRequest { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            (Icmpv4Message::EchoReply, 0) => {
                Ok(Icmpv4Repr::EchoReply { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            (Icmpv4Message::DstUnreachable, reason) => Ok(Icmpv4Repr::DstUnreachable { reason, data }),
            _ => Err(Error),
        }
    }

    /// The message length: 8-byte header plus data.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DstUnreachable { data, .. } => HEADER_LEN + data.len(),
        }
    }

    /// Writes the whole message, data and checksum included. The buffer should be exactly `buffer_len()` long,
    /// since the checksum covers all of it.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let data = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } | Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                let ty = match self {
                    Icmpv4Repr::EchoRequest { .. } => Icmpv4Message::EchoRequest,
                    _ => Icmpv4Message::EchoReply,
                };
                packet.set_msg_type(ty);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            Icmpv4Repr::DstUnreachable { reason, data } => {
                packet.set_msg_type(Icmpv4Message::DstUnreachable);
                packet.set_msg_code(reason);
                packet.set_rest_of_header(0);
                data
            }
        };
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Address, Ipv4Repr};
    use proptest::prelude::*;

    /// A captured ping (`ping -c1 -s 8 -p 6162 198.18.0.1` from 198.18.0.2): Ethernet, IPv4, ICMP echo request,
    /// padded to 60 bytes.
    static PING_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x24, 0x5e, 0x6b, 0x40, 0x00, 0x40, 0x01, 0x50, 0x46, 198, 18, 0, 2, 198, 18, 0,
        1, // IPv4
        0x08, 0x00, 0x60, 0x41, 0x12, 0x34, 0x00, 0x01, // ICMP header
        0x61, 0x62, 0x61, 0x62, 0x61, 0x62, 0x61, 0x62, // data
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // Ethernet padding
    ];

    fn icmp_bytes() -> &'static [u8] {
        &PING_FRAME[34..50]
    }

    #[test]
    fn parse_captured_ping() {
        let frame = EthernetFrame::new_checked(&PING_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, true).unwrap();
        assert_eq!(ip_repr.next_header, IpProtocol::Icmp);
        assert_eq!(ip_repr.payload_len, 16);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x6041);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 1));
        assert_eq!(icmp.rest_of_header(), 0x1234_0001);
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.data(), b"abababab");
        assert_eq!(
            Icmpv4Repr::parse(&icmp, true),
            Ok(Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: b"abababab" })
        );
    }

    #[test]
    fn emit_request_matches_capture_and_reply_verifies() {
        let repr = Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: b"abababab" };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], icmp_bytes());

        let reply = Icmpv4Repr::EchoReply { ident: 0x1234, seq_no: 1, data: b"abababab" };
        let mut buf = vec![0u8; reply.buffer_len()];
        reply.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[0], 0);
        // Type 8 -> 0 changes the checksum by 0x0800 (RFC 1624 incremental update).
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 0x6041 + 0x0800);
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet, true), Ok(reply));
    }

    #[test]
    fn port_unreachable_quotes_header_and_8_bytes() {
        // A UDP datagram with 20 bytes of payload; the error quotes 20 + 8 bytes of it.
        let mut udp_dgram = vec![0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1];
        udp_dgram.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90, 0, 28, 0, 0]);
        udp_dgram.extend_from_slice(&[0x55; 20]);
        let ip = Ipv4Packet::new_checked(&udp_dgram[..]).unwrap();
        let quote = error_quote(&ip);
        assert_eq!(quote, &udp_dgram[..28]);

        let repr = Icmpv4Repr::DstUnreachable { reason: dst_unreachable::PORT_UNREACHABLE, data: quote };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..2], &[3, 3]);
        assert_eq!(&buf[4..8], &[0, 0, 0, 0]);
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet, true), Ok(repr));

        // A short packet is quoted whole; a garbage header never panics.
        let short = Ipv4Packet::new_checked(&udp_dgram[..24]).map(|_| ()).unwrap_err();
        assert_eq!(short, Error);
        assert_eq!(error_quote(&Ipv4Packet::new_unchecked(&udp_dgram[..10])), &udp_dgram[..10]);
        let mut garbage = udp_dgram.clone();
        garbage[0] = 0x4f;
        garbage[2..4].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(error_quote(&Ipv4Packet::new_unchecked(&garbage[..])).len(), garbage.len());
    }

    #[test]
    fn rejects_truncated_bad_checksum_and_unsupported() {
        let bytes = icmp_bytes();
        for len in 0..HEADER_LEN {
            assert_eq!(Icmpv4Packet::new_checked(&bytes[..len]), Err(Error));
            assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..len]), false), Err(Error));
        }
        let mut bad = bytes.to_vec();
        bad[9] ^= 1;
        let packet = Icmpv4Packet::new_checked(&bad[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet, true), Err(Error));
        assert!(Icmpv4Repr::parse(&packet, false).is_ok());

        for (ty, code) in [(8u8, 1u8), (0, 5), (11, 0), (13, 0), (42, 0)] {
            let mut other = bytes.to_vec();
            other[0] = ty;
            other[1] = code;
            let mut packet = Icmpv4Packet::new_unchecked(&mut other[..]);
            packet.fill_checksum();
            let packet = Icmpv4Packet::new_checked(&other[..]).unwrap();
            assert!(packet.verify_checksum());
            assert_eq!(Icmpv4Repr::parse(&packet, true), Err(Error), "type {ty} code {code}");
        }
        // An all-zero message has a wrong checksum (its correct checksum would be 0xffff).
        assert!(!Icmpv4Packet::new_checked(&[0u8; 8][..]).unwrap().verify_checksum());
    }

    #[test]
    fn message_conversions() {
        assert_eq!(Icmpv4Message::from(8), Icmpv4Message::EchoRequest);
        assert_eq!(u8::from(Icmpv4Message::DstUnreachable), 3);
        assert_eq!(Icmpv4Message::from(200), Icmpv4Message::Unknown(200));
    }

    #[test]
    fn whole_echo_reply_frame() {
        // The reply the dataplane would send for PING_FRAME, built layer by layer.
        let mac1 = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mac2 = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let icmp = Icmpv4Repr::EchoReply { ident: 0x1234, seq_no: 1, data: b"abababab" };
        let ip = Ipv4Repr {
            src_addr: Ipv4Address::new(198, 18, 0, 1),
            dst_addr: Ipv4Address::new(198, 18, 0, 2),
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        crate::wire::EthernetRepr { src_addr: mac1, dst_addr: mac2, ethertype: EtherType::Ipv4 }.emit(&mut frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut ip_packet);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(ip_packet.payload_mut()));

        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        let ip_packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(Ipv4Repr::parse(&ip_packet, true), Ok(ip));
        let icmp_packet = Icmpv4Packet::new_checked(ip_packet.payload()).unwrap();
        assert_eq!(Icmpv4Repr::parse(&icmp_packet, true), Ok(icmp));
    }

    proptest! {
        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), csum in any::<bool>()) {
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header(), p.echo_ident());
                let _ = (p.echo_seq_no(), p.data(), p.verify_checksum());
            }
            let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&bytes[..]), csum);
            let _ = error_quote(&Ipv4Packet::new_unchecked(&bytes[..]));
        }

        #[test]
        fn emit_then_parse(
            kind in 0u8..3,
            ident in any::<u16>(),
            seq_no in any::<u16>(),
            reason in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let repr = match kind {
                0 => Icmpv4Repr::EchoRequest { ident, seq_no, data: &data },
                1 => Icmpv4Repr::EchoReply { ident, seq_no, data: &data },
                _ => Icmpv4Repr::DstUnreachable { reason, data: &data },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&packet, true), Ok(repr));
        }
    }
}
