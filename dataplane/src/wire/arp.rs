//! ARP for IPv4 over Ethernet.
//!
//! Heads up: read RFC 826 (the packet and the receive algorithm), RFC 5227 (ARP probes and announcements: a
//! sender protocol address of 0.0.0.0, and gratuitous ARP) and RFC 5494 (operation codes). Only Ethernet (hardware
//! type 1, 6-byte addresses) and IPv4 (protocol type 0x0800, 4-byte addresses) are supported; anything else is an
//! [`Error`] at `new_checked`.
use super::ethernet::{EtherType, EthernetAddress};
use super::field_io::{read_u16, write_u16};
use super::ipv4::Ipv4Address;
use super::{Error, Result};

enum_with_unknown! {
    /// The ARP operation code.
    pub enum ArpOperation(u16) {
        /// Who has `target_protocol_addr`? (1)
        Request = 1,
        /// `source_protocol_addr` is at `source_hardware_addr`. (2)
        Reply = 2,
    }
}

/// Hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A view of an Ethernet/IPv4 ARP packet in a buffer (which may be longer: Ethernet padding follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const PACKET_LEN: usize = PACKET_LEN;

    /// Wraps `buffer` without checking it (see the panic contract in [`wire`](super)).
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err` unless the buffer holds 28 bytes and the packet is Ethernet/IPv4 (hardware type 1, protocol type
    /// 0x0800, address lengths 6 and 4).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN
            || self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != EtherType::Ipv4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// The protocol type (IPv4).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16(&self.buffer.as_ref()[field::PTYPE]))
    }

    /// The hardware address length (6).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length (4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(&self.buffer.as_ref()[field::OPER]))
    }

    /// The sender's MAC address.
    #[inline]
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// The sender's IPv4 address.
    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::SPA])
    }

    /// The target's MAC address (zero in a request).
    #[inline]
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// The target's IPv4 address.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Address {
        Ipv4Address::from_bytes(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::HTYPE], value)
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::PTYPE], value.into())
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], value.into())
    }

    /// Sets the sender's MAC address.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0)
    }

    /// Sets the sender's IPv4 address.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Address) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.0)
    }

    /// Sets the target's MAC address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0)
    }

    /// Sets the target's IPv4 address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Address) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.0)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An Ethernet/IPv4 ARP packet as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply, or another code (kept, so the caller can count and drop it).
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 (0.0.0.0 in an RFC 5227 probe).
    pub source_protocol_addr: Ipv4Address,
    /// Target MAC (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4.
    pub target_protocol_addr: Ipv4Address,
}

impl ArpRepr {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const PACKET_LEN: usize = PACKET_LEN;

    /// Reads `packet` after re-checking its length and format. Unknown operations parse (as
    /// `ArpOperation::Unknown`); deciding what to do with them is the caller's job.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// The packet length (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the whole packet, format fields included.
    ///
    /// # Panics
    /// If the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, EthernetRepr};
    use proptest::prelude::*;

    /// A captured ARP request, Ethernet header and padding included: 02:00:00:00:00:02 (198.18.0.2) asks who has
    /// 198.18.0.1.
    static REQUEST_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, oper
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 198, 18, 0, 2, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 18, 0, 1, // tha, tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    /// The reply from 02:00:00:00:00:01 (198.18.0.1), unpadded (as we emit it).
    static REPLY_FRAME: [u8; 42] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // htype, ptype, hlen, plen, oper
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 198, 18, 0, 1, // sha, spa
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 198, 18, 0, 2, // tha, tpa
    ];

    const MAC1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC2: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const IP1: Ipv4Address = Ipv4Address([198, 18, 0, 1]);
    const IP2: Ipv4Address = Ipv4Address([198, 18, 0, 2]);

    #[test]
    fn parse_captured_request() {
        let frame = EthernetFrame::new_checked(&REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Arp);
        let packet = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!((packet.hardware_len(), packet.protocol_len()), (6, 4));
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(
            ArpRepr::parse(&packet),
            Ok(ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: MAC2,
                source_protocol_addr: IP2,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: IP1,
            })
        );
    }

    #[test]
    fn emit_reply_matches_capture() {
        let eth = EthernetRepr { src_addr: MAC1, dst_addr: MAC2, ethertype: EtherType::Arp };
        let arp = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: MAC1,
            source_protocol_addr: IP1,
            target_hardware_addr: MAC2,
            target_protocol_addr: IP2,
        };
        let mut buf = [0xa5u8; 42];
        assert_eq!(eth.buffer_len() + arp.buffer_len(), buf.len());
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        assert_eq!(buf, REPLY_FRAME);
        let parsed = ArpRepr::parse(&ArpPacket::new_checked(&REPLY_FRAME[14..]).unwrap());
        assert_eq!(parsed, Ok(arp));
    }

    #[test]
    fn rejects_truncated_and_foreign_formats() {
        let arp = &REQUEST_FRAME[14..42];
        for len in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&arp[..len]), Err(Error));
            assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&arp[..len])), Err(Error));
        }
        for (offset, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = [0u8; 28];
            bad.copy_from_slice(arp);
            bad[offset] = value;
            assert_eq!(ArpPacket::new_checked(&bad[..]), Err(Error), "byte {offset} = {value}");
            assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&bad[..])), Err(Error));
        }
    }

    #[test]
    fn unknown_operation_parses() {
        let mut b = [0u8; 28];
        b.copy_from_slice(&REQUEST_FRAME[14..42]);
        b[7] = 3; // RARP request
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap().operation,
            ArpOperation::Unknown(3)
        );
    }

    proptest! {
        #[test]
        fn accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), fix in any::<bool>()) {
            let mut bytes = bytes;
            if fix && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            }
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                let repr = ArpRepr::parse(&p).unwrap();
                let mut out = vec![0u8; repr.buffer_len()];
                repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
                prop_assert_eq!(&out[..], &bytes[..28]);
            }
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&bytes[..]));
        }

        #[test]
        fn emit_then_parse(
            op in any::<u16>(),
            sha in any::<[u8; 6]>(),
            spa in any::<[u8; 4]>(),
            tha in any::<[u8; 6]>(),
            tpa in any::<[u8; 4]>(),
        ) {
            let repr = ArpRepr {
                operation: ArpOperation::from(op),
                source_hardware_addr: EthernetAddress(sha),
                source_protocol_addr: Ipv4Address(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Address(tpa),
            };
            let mut buf = [0u8; PACKET_LEN];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
        }
    }
}
