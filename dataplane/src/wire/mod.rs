//! Stateless parse and emit of the headers the dataplane speaks: Ethernet, ARP, IPv4, ICMPv4, UDP and TCP, plus
//! the Internet checksum.
//!
//! This module's one job is to turn bytes into values and values into bytes. It keeps no state, allocates
//! nothing, and knows nothing of sockets, caches or timers (those live in `net/`, `tcp/` and `udp/`).
//!
//! # Two kinds of types
//!
//! Every protocol comes as a pair:
//!
//! - a *view*, `XxxPacket<T: AsRef<[u8]>>` (`EthernetFrame` for Ethernet), that wraps a buffer and reads or writes
//!   header fields in place. Getters need `T: AsRef<[u8]>`, setters `T: AsMut<[u8]>` as well. A view is how the
//!   receive path looks at an mbuf without copying it, and how the transmit path writes headers straight into a
//!   UMEM frame;
//! - a *representation*, `XxxRepr`, a plain value holding the fields the stack cares about, with
//!   `parse(&view, ..) -> Result<Repr>` (which validates), `emit(&self, &mut view, ..)` and `buffer_len()`.
//!
//! # The panic contract
//!
//! - `XxxPacket::new_unchecked(buffer)` wraps any buffer without looking at it. Accessors and setters on such a
//!   view index the buffer directly and **may panic** if it is too short for the field (or, for fields behind a
//!   length field such as `payload()`, if the length field points past the end). Use it only to emit into a buffer
//!   you sized yourself with `Repr::buffer_len()`.
//! - `XxxPacket::new_checked(buffer)` (equivalently `new_unchecked` + `check_len()`) returns [`Error`] unless the
//!   buffer is long enough for every length the header claims. On a view that `new_checked` accepted, **no getter
//!   panics, whatever the bytes are**. (A setter that changes a length field voids that promise for the view it
//!   modified.)
//! - `XxxRepr::parse` re-validates what it needs, so it never panics on any input, not even on a view made with
//!   `new_unchecked`. Malformed input is an [`Error`], never a panic: the receive path counts it and drops the
//!   frame. The fuzz target in `fuzz/` holds us to this.
//! - `emit` writes into a view whose buffer is at least `buffer_len()` long; a shorter buffer panics (a bug in
//!   the caller, not bad input).
//!
//! Checksums are never checked by `new_checked`: call `verify_checksum` (or pass `checksum_check = true` to a
//! `parse`) so that a NIC with RX checksum offload can skip the work. Built with `--cfg fuzzing`, every
//! `verify_checksum` returns `true` so that the fuzzer reaches the code behind it.
//!
//! All multi-byte fields are big-endian (network order) on the wire and host-order values in the API.

use core::fmt;

/// Declares a `#[repr]`-less enum over an integer type with named values and an `Unknown(raw)` catch-all, with
/// lossless `From` conversions both ways.
///
/// Build values from the wire with `From` (`EtherType::from(0x0800) == EtherType::Ipv4`); constructing
/// `Unknown(x)` by hand for an `x` that has a name gives a value that does not compare equal to the named one.
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($repr:ty) {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident = $value:expr
            ),+ $(,)?
        }
    ) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $(#[$enum_attr])*
        pub enum $name {
            $(
                $(#[$variant_attr])*
                $variant,
            )+
            /// A value with no name here, kept as it was on the wire.
            Unknown($repr),
        }

        impl ::core::convert::From<$repr> for $name {
            #[inline]
            fn from(raw: $repr) -> Self {
                $(
                    if raw == $value {
                        return $name::$variant;
                    }
                )+
                $name::Unknown(raw)
            }
        }

        impl ::core::convert::From<$name> for $repr {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(raw) => raw,
                }
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use self::icmp::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use self::ipv4::{IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr};
pub use self::tcp::{TcpFlags, TcpOption, TcpOptionIter, TcpPacket, TcpRepr};
pub use self::udp::{UdpPacket, UdpRepr};

/// Length of an Ethernet II header (no VLAN tag).
pub const ETHERNET_HEADER_LEN: usize = ethernet::HEADER_LEN;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_PACKET_LEN: usize = arp::PACKET_LEN;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = ipv4::HEADER_LEN;
/// Length of an ICMPv4 header (type, code, checksum and the 4-byte "rest of header").
pub const ICMPV4_HEADER_LEN: usize = icmp::HEADER_LEN;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = udp::HEADER_LEN;
/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = tcp::HEADER_LEN;

/// A packet could not be parsed: it is truncated, malformed, or uses a feature this module does not support.
///
/// Deliberately carries no detail: the receive path only counts and drops, and a unit error costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Error;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("truncated, malformed or unsupported packet")
    }
}

impl std::error::Error for Error {}

/// The result of a parse.
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian field access shared by the protocol modules. Each function panics if the slice is too short, as
/// the panic contract allows for `new_unchecked` views.
mod field_io {
    #[inline]
    pub(crate) fn read_u16(bytes: &[u8]) -> u16 {
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline]
    pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    #[inline]
    pub(crate) fn write_u16(bytes: &mut [u8], value: u16) {
        bytes[..2].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    pub(crate) fn write_u32(bytes: &mut [u8], value: u32) {
        bytes[..4].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum_with_unknown! {
        /// A test enum.
        pub enum Color(u8) {
            /// Red.
            Red = 1,
            /// Green.
            Green = 2,
        }
    }

    #[test]
    fn enum_with_unknown_round_trips_every_value() {
        for raw in 0..=u8::MAX {
            let c = Color::from(raw);
            assert_eq!(u8::from(c), raw);
            match raw {
                1 => assert_eq!(c, Color::Red),
                2 => assert_eq!(c, Color::Green),
                _ => assert_eq!(c, Color::Unknown(raw)),
            }
        }
    }

    #[test]
    fn error_is_a_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(Error);
        assert_eq!(e.to_string(), "truncated, malformed or unsupported packet");
    }

    #[test]
    fn field_io_round_trips() {
        let mut b = [0u8; 6];
        field_io::write_u16(&mut b[1..], 0xabcd);
        field_io::write_u32(&mut b[2..], 0x0102_0304);
        assert_eq!(b, [0, 0xab, 1, 2, 3, 4]);
        assert_eq!(field_io::read_u16(&b[1..]), 0xab01);
        assert_eq!(field_io::read_u32(&b[2..]), 0x0102_0304);
    }
}
