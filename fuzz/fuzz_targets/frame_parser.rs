//! Parses arbitrary bytes as an Ethernet frame and, by EtherType and IP protocol, every layer below it: views
//! (every getter), reprs, then re-emits each repr into a fresh buffer and checks that it parses back to the same
//! value. Any panic is a bug: `new_checked` views and `Repr::parse` must never panic (see `dataplane::wire`).
//!
//! Built by cargo-fuzz with `--cfg fuzzing`, so every `verify_checksum` passes and the fuzzer reaches the code
//! behind the checksum checks without having to forge checksums.
#![no_main]

use dataplane::wire::icmp::error_quote;
use dataplane::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;

fuzz_target!(|data: &[u8]| {
    // Also poke the unchecked constructors' safe paths: parse must reject, not panic.
    let _ = EthernetRepr::parse(&EthernetFrame::new_unchecked(data));
    let _ = ArpRepr::parse(&ArpPacket::new_unchecked(data));
    let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(data), true);
    let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(data), true);
    let _ = UdpRepr::parse(&UdpPacket::new_unchecked(data), Ipv4Address::UNSPECIFIED, Ipv4Address::BROADCAST, true);
    let _ = TcpRepr::parse(&TcpPacket::new_unchecked(data), Ipv4Address::UNSPECIFIED, Ipv4Address::BROADCAST, true);
    let _ = black_box(error_quote(&Ipv4Packet::new_unchecked(data)));

    let Ok(frame) = EthernetFrame::new_checked(data) else { return };
    black_box((frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload()));
    let eth = EthernetRepr::parse(&frame).expect("a checked frame parses");
    let mut buf = vec![0u8; eth.buffer_len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()), Ok(eth));

    match eth.ethertype {
        EtherType::Arp => arp(frame.payload()),
        EtherType::Ipv4 => ipv4(frame.payload()),
        _ => {}
    }
});

fn arp(bytes: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(bytes) else { return };
    black_box((packet.hardware_type(), packet.protocol_type(), packet.hardware_len(), packet.protocol_len()));
    black_box((packet.operation(), packet.source_hardware_addr(), packet.source_protocol_addr()));
    black_box((packet.target_hardware_addr(), packet.target_protocol_addr()));
    let repr = ArpRepr::parse(&packet).expect("a checked ARP packet parses");
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    assert_eq!(&buf[..], &bytes[..repr.buffer_len()]);
    assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
}

fn ipv4(bytes: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else { return };
    black_box((packet.version(), packet.header_len(), packet.dscp_ecn(), packet.total_len(), packet.ident()));
    black_box((packet.dont_frag(), packet.more_frags(), packet.frag_offset(), packet.is_fragment()));
    black_box((packet.hop_limit(), packet.next_header(), packet.checksum(), packet.src_addr(), packet.dst_addr()));
    black_box((packet.options(), packet.payload(), packet.verify_checksum()));
    let quote = error_quote(&packet);
    assert!(quote.len() <= usize::from(packet.total_len()));

    let Ok(repr) = Ipv4Repr::parse(&packet, true) else {
        panic!("a checked IPv4 packet parses when checksums pass");
    };
    assert_eq!(repr.payload_len, packet.payload().len());
    let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
    let mut out = Ipv4Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut out);
    out.payload_mut().copy_from_slice(packet.payload());
    let reparsed = Ipv4Packet::new_checked(&buf[..]).expect("an emitted IPv4 packet is well formed");
    assert!(reparsed.verify_checksum());
    assert_eq!(Ipv4Repr::parse(&reparsed, true), Ok(repr));

    if packet.is_fragment() {
        return; // The stack drops fragments; parsing their payload as L4 would be meaningless.
    }
    let (src, dst) = (repr.src_addr, repr.dst_addr);
    match repr.next_header {
        IpProtocol::Icmp => icmp(packet.payload(), quote),
        IpProtocol::Udp => udp(packet.payload(), src, dst),
        IpProtocol::Tcp => tcp(packet.payload(), src, dst),
        IpProtocol::Unknown(_) => {}
    }
}

fn icmp(bytes: &[u8], quote: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(bytes) else { return };
    black_box((packet.msg_type(), packet.msg_code(), packet.checksum(), packet.rest_of_header()));
    black_box((packet.echo_ident(), packet.echo_seq_no(), packet.data(), packet.verify_checksum()));
    if let Ok(repr) = Icmpv4Repr::parse(&packet, true) {
        round_trip_icmp(repr);
        // What the stack would send back to a ping.
        if let Icmpv4Repr::EchoRequest { ident, seq_no, data } = repr {
            round_trip_icmp(Icmpv4Repr::EchoReply { ident, seq_no, data });
        }
    }
    // The port-unreachable error the stack would send about this datagram.
    round_trip_icmp(Icmpv4Repr::DstUnreachable { reason: 3, data: quote });
}

fn round_trip_icmp(repr: Icmpv4Repr<'_>) {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
    let packet = Icmpv4Packet::new_checked(&buf[..]).expect("an emitted ICMP message is well formed");
    assert_eq!(Icmpv4Repr::parse(&packet, true), Ok(repr));
}

fn udp(bytes: &[u8], src: Ipv4Address, dst: Ipv4Address) {
    let Ok(packet) = UdpPacket::new_checked(bytes) else { return };
    black_box((packet.src_port(), packet.dst_port(), packet.len(), packet.checksum(), packet.payload()));
    black_box((packet.verify_checksum(src, dst), packet.is_checksum_partial(src, dst)));
    let repr = UdpRepr::parse(&packet, src, dst, true).expect("a checked UDP datagram parses");
    let payload = packet.payload();
    let mut buf = vec![0u8; repr.buffer_len(payload.len())];
    // The reply path: swap ports and addresses.
    let reply = UdpRepr { src_port: repr.dst_port, dst_port: repr.src_port };
    reply.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), dst, src, payload);
    let out = UdpPacket::new_checked(&buf[..]).expect("an emitted UDP datagram is well formed");
    assert_ne!(out.checksum(), 0);
    assert_eq!(out.payload(), payload);
    assert_eq!(UdpRepr::parse(&out, dst, src, true), Ok(reply));
}

fn tcp(bytes: &[u8], src: Ipv4Address, dst: Ipv4Address) {
    let Ok(packet) = TcpPacket::new_checked(bytes) else { return };
    black_box((packet.src_port(), packet.dst_port(), packet.seq_number(), packet.ack_number()));
    black_box((packet.header_len(), packet.flags(), packet.fin(), packet.syn(), packet.rst(), packet.psh()));
    black_box((packet.ack(), packet.urg(), packet.ece(), packet.cwr(), packet.window_len(), packet.checksum()));
    black_box((packet.urgent_at(), packet.options(), packet.payload(), packet.segment_len()));
    black_box((packet.verify_checksum(src, dst), packet.is_checksum_partial(src, dst)));
    for option in packet.options_iter().flatten() {
        let mut buf = [0u8; 64];
        if option.buffer_len() <= buf.len() {
            let _ = option.emit(&mut buf);
        }
    }
    let Ok(repr) = TcpRepr::parse(&packet, src, dst, true) else { return };
    assert_eq!(repr.payload, packet.payload());
    assert_eq!(repr.ack.is_some(), packet.ack());
    assert!(repr.header_len() <= 60 && repr.header_len() % 4 == 0);

    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
    let out = TcpPacket::new_checked(&buf[..]).expect("an emitted TCP segment is well formed");
    let again = TcpRepr::parse(&out, src, dst, true).expect("an emitted TCP segment parses");
    // Emit may drop trailing SACK blocks that do not fit in 40 option bytes; everything else is kept.
    let kept = again.sack_ranges.iter().flatten().count();
    assert_eq!(again.sack_ranges[..kept], repr.sack_ranges[..kept]);
    assert_eq!(TcpRepr { sack_ranges: repr.sack_ranges, ..again }, repr);
}
