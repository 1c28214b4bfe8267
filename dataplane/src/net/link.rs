//! The link and network layer's output side: our identity on the wire, routing to a next hop, ARP resolution
//! (answering, learning, parking frames until a neighbour resolves) and handing frames to the TX batch.
//!
//! Heads up: read RFC 826 (ARP) and RFC 1122 §2.3.2 (ARP cache, queueing while unresolved).
use super::arp::{self, ArpCache, Lookup, NeighborTable};
use super::{Io, ETH_LEN};
use crate::mbuf::{Mbuf, MbufPool};
use crate::stats::Counter;
use crate::time::Instant;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Ipv4Address, Ipv4Cidr,
};
use arrayvec::ArrayVec;
use std::sync::Arc;

/// Where IPv4 traffic goes from our address: on the link within our subnet (and to its broadcast addresses),
/// through the gateway otherwise, nowhere without one. A plain value, so that the socket layer can refuse an
/// unroutable destination at `sendto`/`connect` by the same rule the dataplane sends by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Our address and subnet.
    pub cidr: Ipv4Cidr,
    /// The next hop for anything off the subnet.
    pub gateway: Option<Ipv4Address>,
}

impl Route {
    /// Whether `ip` is a broadcast address on our link.
    pub fn is_our_broadcast(&self, ip: Ipv4Address) -> bool {
        // A /31 or /32 has no directed broadcast (RFC 3021): its top address is a host.
        ip.is_broadcast() || (self.cidr.prefix_len < 31 && ip == self.cidr.broadcast())
    }

    /// The neighbour to send to for `dst`: itself when on-link, else the gateway; `None` when unreachable.
    pub fn next_hop(&self, dst: Ipv4Address) -> Option<Ipv4Address> {
        if self.is_our_broadcast(dst) || self.cidr.contains(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

/// Our identity on the link, the neighbour cache and the route to anything off-link.
#[derive(Debug)]
pub struct Link {
    mac: EthernetAddress,
    route: Route,
    mtu: u16,
    arp: ArpCache,
    shared: Option<Arc<NeighborTable>>,
    shared_seen: u64,
}

impl Link {
    /// A link with our `mac`, address `cidr`, optional `gateway` and L3 `mtu`.
    pub fn new(mac: EthernetAddress, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>, mtu: u16) -> Link {
        Link { mac, route: Route { cidr, gateway }, mtu, arp: ArpCache::new(), shared: None, shared_seen: 0 }
    }

    /// Shares learned neighbours with the other queues of the port through `table`.
    pub fn set_neighbor_table(&mut self, table: Arc<NeighborTable>) {
        self.shared = Some(table);
    }

    /// Our MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// Our address and prefix.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.route.cidr
    }

    /// Our address.
    pub fn addr(&self) -> Ipv4Address {
        self.route.cidr.addr
    }

    /// The L3 MTU, bounded by what one mbuf holds.
    pub fn mtu(&self) -> usize {
        (self.mtu as usize).min(crate::mbuf::MAX_DATA - ETH_LEN)
    }

    /// Whether `ip` is a broadcast address on our link.
    pub fn is_our_broadcast(&self, ip: Ipv4Address) -> bool {
        self.route.is_our_broadcast(ip)
    }

    /// The neighbour to send to for `dst`: itself when on-link, else the gateway; `None` when unreachable.
    pub fn next_hop(&self, dst: Ipv4Address) -> Option<Ipv4Address> {
        self.route.next_hop(dst)
    }

    /// Consumes an ARP frame: learns the sender, answers requests for our address in place.
    pub fn arp_input(&mut self, io: &mut Io<'_>, mut m: Mbuf) {
        let repr = {
            let frame = EthernetFrame::new_unchecked(io.pool.data(&m));
            match ArpPacket::new_checked(frame.payload()).and_then(|p| ArpRepr::parse(&p)) {
                Ok(r) => r,
                Err(_) => return io.drop_frame(m, Counter::DropArpMalformed),
            }
        };
        let for_us = repr.target_protocol_addr == self.route.cidr.addr;
        let from_our_subnet = self.route.cidr.contains(repr.source_protocol_addr);
        if from_our_subnet && self.arp.learn(repr.source_protocol_addr, repr.source_hardware_addr, io.now, for_us) {
            if let Some(shared) = &self.shared {
                shared.publish(repr.source_protocol_addr, repr.source_hardware_addr);
            }
            self.flush_parked(io, repr.source_protocol_addr, repr.source_hardware_addr);
        }
        if !(for_us && repr.operation == ArpOperation::Request && repr.source_hardware_addr.is_unicast()) {
            // Replies, gratuitous ARP and requests for other hosts: learned from above, nothing to answer.
            return io.pool.free(m);
        }
        // Answer in place: the request frame becomes the reply.
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.route.cidr.addr,
            target_hardware_addr: repr.source_hardware_addr,
            target_protocol_addr: repr.source_protocol_addr,
        };
        let eth = EthernetRepr { src_addr: self.mac, dst_addr: repr.source_hardware_addr, ethertype: EtherType::Arp };
        if m.trim(ETH_LEN + reply.buffer_len()).is_err() {
            return io.drop_frame(m, Counter::DropArpMalformed);
        }
        let buf = io.pool.data_mut(&mut m);
        let mut frame = EthernetFrame::new_unchecked(buf);
        eth.emit(&mut frame);
        reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        io.stats.inc(Counter::ArpRepliesSent);
        io.push_tx(m);
    }

    /// A transport timed out waiting for `dst` (negative advice, as Linux's TCP gives its route): the next frame
    /// to it refreshes the neighbour's address, so a wrong one (a corrupted or stale ARP reply) is replaced
    /// after one retransmission instead of when the entry expires.
    pub fn doubt_neighbor(&mut self, dst: Ipv4Address, now: Instant) {
        if let Some(hop) = self.next_hop(dst) {
            self.arp.doubt(hop, now);
        }
    }

    /// Fills in the Ethernet header of an IPv4 frame and sends it, or parks it until `next_hop` resolves.
    pub fn send_frame(
        &mut self,
        io: &mut Io<'_>,
        mut m: Mbuf,
        next_hop: Ipv4Address,
        dst_mac: Option<EthernetAddress>,
    ) {
        let mac = match dst_mac {
            Some(mac) => Some(mac),
            None => match self.arp.lookup(next_hop, io.now) {
                Lookup::Hit(mac) => Some(mac),
                Lookup::Refresh(mac) => {
                    self.send_arp_request(io, next_hop);
                    Some(mac)
                }
                Lookup::Miss => {
                    let known = self.shared.as_ref().and_then(|t| t.get(next_hop));
                    if let Some(mac) = known {
                        // Another queue resolved it: frames already waiting go first, keeping order.
                        self.arp.learn(next_hop, mac, io.now, true);
                        self.flush_parked(io, next_hop, mac);
                    }
                    known
                }
            },
        };
        let src = self.mac;
        let buf = io.pool.data_mut(&mut m);
        let mut frame = EthernetFrame::new_unchecked(buf);
        frame.set_src_addr(src);
        frame.set_ethertype(EtherType::Ipv4);
        match mac {
            Some(mac) => {
                frame.set_dst_addr(mac);
                io.push_tx(m);
            }
            None => match self.arp.park(next_hop, m, io.now) {
                Ok(true) => self.send_arp_request(io, next_hop),
                Ok(false) => {}
                Err(m) => io.drop_frame(m, Counter::DropArpUnresolved),
            },
        }
    }

    fn flush_parked(&mut self, io: &mut Io<'_>, ip: Ipv4Address, mac: EthernetAddress) {
        while self.arp.has_parked(ip) {
            let mut ready: ArrayVec<Mbuf, 16> = ArrayVec::new();
            self.arp.take_parked(ip, &mut ready);
            for mut m in ready {
                EthernetFrame::new_unchecked(io.pool.data_mut(&mut m)).set_dst_addr(mac);
                io.push_tx(m);
            }
        }
    }

    fn send_arp_request(&mut self, io: &mut Io<'_>, target: Ipv4Address) {
        let Some(mut m) = io.pool.alloc() else {
            return io.stats.inc(Counter::DropNoMbuf);
        };
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.route.cidr.addr,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        if m.set_len(ETH_LEN + arp.buffer_len()).is_err() {
            return io.pool.free(m);
        }
        let mut frame = EthernetFrame::new_unchecked(io.pool.data_mut(&mut m));
        EthernetRepr { src_addr: self.mac, dst_addr: EthernetAddress::BROADCAST, ethertype: EtherType::Arp }
            .emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        io.stats.inc(Counter::ArpRequestsSent);
        io.push_tx(m);
    }

    /// Runs due ARP retries and expiries, and resolves frames another queue learned the neighbour of.
    pub fn poll_timers(&mut self, io: &mut Io<'_>) {
        // Another queue may have learned a neighbour our frames wait for (its ARP reply hashed there).
        if let Some(shared) = self.shared.clone() {
            let generation = shared.generation();
            if generation != self.shared_seen && self.arp.has_waiting() {
                self.shared_seen = generation;
                while let Some((ip, mac)) = self.arp.parked_resolvable(&shared) {
                    self.arp.learn(ip, mac, io.now, true);
                    self.flush_parked(io, ip, mac);
                }
            }
        }
        if self.arp.poll_at().is_none_or(|t| t > io.now) {
            return;
        }
        let mut due = arp::Due::default();
        self.arp.poll(io.now, &mut due);
        for ip in due.requests {
            self.send_arp_request(io, ip);
        }
        for m in due.expired {
            io.drop_frame(m, Counter::DropArpUnresolved);
        }
    }

    /// When the link next needs `poll_timers`.
    pub fn poll_at(&self) -> Option<Instant> {
        self.arp.poll_at()
    }

    /// Frees every parked frame (shutdown).
    pub fn release(&mut self, pool: &mut MbufPool) {
        for m in self.arp.drain_parked() {
            pool.free(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;
    use crate::wire::{Ipv4Address, Ipv4Cidr};

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Address {
        Ipv4Address::new(a, b, c, d)
    }

    fn cidr(addr: Ipv4Address, prefix_len: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(addr, prefix_len).expect("a valid prefix")
    }

    #[test]
    fn on_link_and_broadcast_go_direct_the_rest_through_the_gateway_or_nowhere() {
        let lone = Route { cidr: cidr(ip(198, 18, 0, 1), 24), gateway: None };
        assert_eq!(lone.next_hop(ip(198, 18, 0, 2)), Some(ip(198, 18, 0, 2)));
        assert_eq!(lone.next_hop(ip(198, 18, 0, 255)), Some(ip(198, 18, 0, 255)));
        assert_eq!(lone.next_hop(ip(255, 255, 255, 255)), Some(ip(255, 255, 255, 255)));
        assert_eq!(lone.next_hop(ip(198, 19, 0, 1)), None);
        let routed = Route { gateway: Some(ip(198, 18, 0, 254)), ..lone };
        assert_eq!(routed.next_hop(ip(198, 19, 0, 1)), Some(ip(198, 18, 0, 254)));
        assert_eq!(routed.next_hop(ip(198, 18, 0, 7)), Some(ip(198, 18, 0, 7)));
        // A /31 has no directed broadcast: its top address is the other host (RFC 3021).
        let p2p = Route { cidr: cidr(ip(198, 18, 0, 0), 31), gateway: None };
        assert!(!p2p.is_our_broadcast(ip(198, 18, 0, 1)));
        assert_eq!(p2p.next_hop(ip(198, 18, 0, 1)), Some(ip(198, 18, 0, 1)));
    }
}
