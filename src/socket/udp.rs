//! UDP datagram sockets on the dataplane.
//!
//! A SOCK_DGRAM socket moves to the dataplane when it binds to the dataplane's address (port 0: an ephemeral port
//! the layer picks), or, still unbound, connects or sends to a host in the dataplane's subnet (an implicit bind to
//! the dataplane's address and an ephemeral port, as Linux's autobind). Its fd becomes a placeholder eventfd, as
//! for TCP. Bound to INADDR_ANY it lives on both worlds, as a TCP listener does: its fd becomes an epoll over the
//! kernel socket (bound for real) and the placeholder, it receives from either, and sends go by destination (the
//! dataplane's subnet through the dataplane, anything else through the kernel).
//!
//! Ownership follows the shards: a UDP socket is bound (`UdpBind`) on one queue, the one the binding thread last
//! used (else round-robin), and its datagrams arrive there (steering hands a datagram to the queue that bound its
//! port). Its state (receive queue, peer, options) has a lock of its own, taken under that shard's lock by the
//! shard's cycle (lock order: shard → the UDP port map → one socket's state). Sends come from any thread: the
//! payload is copied and queued on the owning shard, which submits it (`UdpSend`, copied into a frame) at its next
//! cycle, run at once by the sending call.
//!
//! Received datagrams are copied out of the lent buffer when their event is handled, and the buffer is given back
//! at once (`RecvDone`): a datagram is small, and no mbuf stays lent to a socket the app does not read. The queue
//! is bounded as SO_RCVBUF bounds Linux's (payload plus a per-datagram overhead); beyond it datagrams are dropped
//! and counted.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use dataplane::api::{Endpoint, LentBuf};
use dataplane::wire::ipv4::Ipv4Address;

use super::{
    drive, fdmap, home, kernel, make_placeholder, set_home, to_ipv4, wait_ready, Errno, InsideGuard, Layer, Loc,
    Notify, Opts, Pending, Shard,
};

/// Linux's default `net.core.rmem_default`: a UDP socket's receive bound until SO_RCVBUF changes it.
pub(super) const DEFAULT_RCVBUF: usize = 212_992;
/// What a queued datagram costs against the bound besides its payload (Linux charges an skb's truesize).
const DATAGRAM_OVERHEAD: usize = 256;
/// Linux's ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// A UDP socket on the dataplane.
#[derive(Debug)]
pub(super) struct UdpSock {
    pub(super) port: u16,
    /// The shard whose queue bound the port (its datagrams arrive there, its sends leave from there).
    pub(super) shard: usize,
    pub(super) local: SocketAddrV4,
    /// The kernel socket of an INADDR_ANY socket (then the app's fd is an epoll instance over it and the
    /// placeholder eventfd).
    pub(super) kernel: Option<RawFd>,
    pub(super) state: Mutex<UdpState>,
}

#[derive(Debug)]
pub(super) struct UdpState {
    pub(super) n: Notify,
    pub(super) o: Opts,
    /// The default destination set by `connect`, which also filters what is received.
    pub(super) peer: Option<SocketAddrV4>,
    /// Received datagrams: source and payload.
    rx: VecDeque<(SocketAddrV4, Box<[u8]>)>,
    /// What `rx` costs against `rcvbuf`.
    rx_charge: usize,
    pub(super) rcvbuf: usize,
    /// Datagrams dropped for want of room.
    pub(super) drops: u64,
    closed: bool,
}

impl UdpSock {
    pub(super) fn lock(&self) -> MutexGuard<'_, UdpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl UdpState {
    pub(super) fn readable(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Readable on either half (the kernel half of an INADDR_ANY socket asked without waiting).
    pub(super) fn readable_any(&self, u: &UdpSock) -> bool {
        self.readable()
            || u.kernel.is_some_and(|k| {
                let mut p = [libc::pollfd { fd: k, events: libc::POLLIN, revents: 0 }];
                kernel::poll(&mut p, 0) == Ok(1)
            })
    }

    /// FIONREAD: the size of the next datagram, from either half.
    pub(super) fn next_len_any(&self, u: &UdpSock) -> usize {
        match (self.rx.front(), u.kernel) {
            (None, Some(k)) => kernel::fionread(k).unwrap_or(0).max(0) as usize,
            _ => self.next_len(),
        }
    }

    /// Readable when a datagram is queued; always writable (a send is copied and queued).
    pub(super) fn post(&mut self) {
        let r = self.readable();
        self.n.post(r, true, false);
    }

    /// FIONREAD: the size of the next datagram.
    pub(super) fn next_len(&self) -> usize {
        self.rx.front().map_or(0, |(_, d)| d.len())
    }
}

/// A datagram waiting for its shard's next cycle.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) src_port: u16,
    pub(super) dst: Endpoint,
    pub(super) payload: Box<[u8]>,
}

pub(super) fn is_udp_v4(fd: RawFd) -> bool {
    kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_INET)
        && kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_DGRAM)
}

/// Whether kernel socket `fd` is not bound yet (an implicit bind may take it to the dataplane).
fn unbound(fd: RawFd) -> bool {
    kernel::getsockname_v4(fd).is_ok_and(|a| a.port() == 0 && a.ip().is_unspecified())
}

/// Whether a kernel socket sending to, or connecting to, `dst` goes to the dataplane: an unbound IPv4 UDP socket
/// and a destination in the dataplane's subnet.
pub(super) fn takes_implicit(l: &Layer, fd: RawFd, dst: SocketAddrV4) -> bool {
    let ip = *dst.ip();
    !ip.is_loopback() && !ip.is_unspecified() && l.in_subnet(ip) && is_udp_v4(fd) && unbound(fd)
}

/// Takes kernel UDP socket `fd` to the dataplane, bound to `port` on the dataplane's address (0: an ephemeral one),
/// or with `any` to INADDR_ANY on both worlds: the kernel socket binds for real (port 0: the kernel's choice) and
/// moves to another number, and `fd` becomes an epoll instance over it and the placeholder.
pub(super) fn take(l: &Layer, fd: RawFd, port: u16, any: bool) -> Result<Arc<UdpSock>, Errno> {
    let _inside = InsideGuard::enter();
    let reuseaddr = kernel::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR).unwrap_or(0) != 0;
    // The port map stays locked until the socket is in it: two binds of one port cannot both succeed.
    let ports = l.udp_ports_mut();
    if any {
        if port != 0 && ports.contains_key(&port) {
            return Err(libc::EADDRINUSE);
        }
        kernel::bind_v4(fd, SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port))?;
        let port = kernel::getsockname_v4(fd)?.port();
        if ports.contains_key(&port) {
            return Err(libc::EADDRINUSE);
        }
        let cloexec = kernel::fcntl(fd, libc::F_GETFD, 0)? & libc::FD_CLOEXEC != 0;
        let nonblocking = kernel::fcntl(fd, libc::F_GETFL, 0)? & libc::O_NONBLOCK != 0;
        let kfd = kernel::dup_cloexec(fd)?;
        let made = (|| {
            // The kernel socket stays non-blocking: `recv` decides whether to wait.
            kernel::fcntl(kfd, libc::F_SETFL, (libc::O_RDWR | libc::O_NONBLOCK) as usize)?;
            let notify = kernel::eventfd()?;
            let ep = kernel::epoll_create()?;
            let r = kernel::epoll_add(ep, kfd, libc::EPOLLIN as u32)
                .and_then(|_| kernel::epoll_add(ep, notify, libc::EPOLLIN as u32))
                .and_then(|_| kernel::dup3(ep, fd, cloexec));
            kernel::close(ep);
            if r.is_err() {
                kernel::close(notify);
            }
            r.map(|_| notify)
        })();
        let notify = match made {
            Ok(n) => n,
            Err(e) => {
                kernel::close(kfd);
                return Err(e);
            }
        };
        let local = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port);
        return Ok(install(l, ports, fd, notify, port, local, nonblocking, reuseaddr, Some(kfd)));
    }
    let port = if port == 0 {
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as usize + 1;
        let start = l.next_ephemeral.fetch_add(1, Ordering::Relaxed);
        (0..span)
            .map(|k| EPHEMERAL.start() + ((start + k) % span) as u16)
            .find(|p| !ports.contains_key(p))
            .ok_or(libc::EADDRINUSE)?
    } else if ports.contains_key(&port) {
        return Err(libc::EADDRINUSE);
    } else {
        port
    };
    let (_, _, nonblocking) = make_placeholder(fd)?;
    let local = SocketAddrV4::new(l.address(), port);
    Ok(install(l, ports, fd, fd, port, local, nonblocking, reuseaddr, None))
}

/// Registers a UDP socket taken to the dataplane and binds its port on its shard's queue.
#[allow(clippy::too_many_arguments)]
fn install(
    l: &Layer,
    mut ports: std::sync::RwLockWriteGuard<'_, super::HashMap<u16, Arc<UdpSock>>>,
    fd: RawFd,
    notify: RawFd,
    port: u16,
    local: SocketAddrV4,
    nonblocking: bool,
    reuseaddr: bool,
    kernel: Option<RawFd>,
) -> Arc<UdpSock> {
    let shard = home().unwrap_or_else(|| l.next_connect.fetch_add(1, Ordering::Relaxed)) % l.shards.len();
    let mut o = Opts { nonblocking, ..Opts::default() };
    if reuseaddr {
        o.options.insert((libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
    }
    let state = UdpState {
        n: Notify::new(Some(fd), notify),
        o,
        peer: None,
        rx: VecDeque::new(),
        rx_charge: 0,
        rcvbuf: DEFAULT_RCVBUF,
        drops: 0,
        closed: false,
    };
    let u = Arc::new(UdpSock { port, shard, local, kernel, state: Mutex::new(state) });
    ports.insert(port, u.clone());
    drop(ports);
    l.fds_mut().insert(fd, Loc::Udp(u.clone()));
    fdmap::mark(fd);
    l.shard(shard).push(Pending::UdpBind { port });
    u.lock().post();
    drive();
    u
}

/// `connect` on a dataplane UDP socket: sets (or with `None`, dissolves) the default peer. The kernel half of an
/// INADDR_ANY socket connects too when the peer is on the kernel's side (it filters for us); with a peer on the
/// dataplane's side, the kernel half is not read.
pub(super) fn connect(l: &Layer, u: &UdpSock, peer: Option<SocketAddrV4>) -> Result<(), Errno> {
    if let Some(p) = peer {
        if p.port() == 0 || p.ip().is_unspecified() {
            return Err(libc::EINVAL);
        }
    }
    if let Some(k) = u.kernel {
        match peer {
            Some(p) if !l.in_subnet(*p.ip()) => kernel::connect_v4(k, Some(p))?,
            _ => {
                let _ = kernel::connect_v4(k, None);
            }
        }
    } else if peer.is_some_and(|p| !l.routable(*p.ip())) {
        // As Linux's connect finding no route (the dataplane would drop every datagram to it).
        return Err(libc::ENETUNREACH);
    }
    let mut st = u.lock();
    // As Linux: what was queued before stays readable; only later arrivals are filtered.
    st.peer = peer;
    st.post();
    Ok(())
}

/// Handles a `UdpRecv` event in shard `g`'s cycle: the datagram is copied into its socket's queue (or dropped),
/// and the buffer goes back.
pub(super) fn deliver(l: &Layer, g: &mut Shard, buf: LentBuf, src: Endpoint, dst_port: u16) {
    let u = l.udp.read().unwrap_or_else(|p| p.into_inner()).get(&dst_port).cloned();
    if let Some(u) = u {
        let from = SocketAddrV4::new(to_ipv4(src.addr), src.port);
        let mut st = u.lock();
        let wanted = !st.closed && st.peer.is_none_or(|p| p == from);
        let charge = buf.len as usize + DATAGRAM_OVERHEAD;
        if !wanted {
            // A connected socket takes datagrams from its peer only.
        } else if st.rx_charge + charge > st.rcvbuf.max(charge) && !st.rx.is_empty() {
            st.drops += 1;
        } else if let Some(data) = g.queue.0.dataplane().lent_data(&buf) {
            st.n.arrived();
            st.rx.push_back((from, data.into()));
            st.rx_charge += charge;
            st.post();
        }
    }
    g.push(Pending::UdpDone { data: buf.ptr as usize });
}

/// What a receive returned: bytes copied (or the datagram's length with MSG_TRUNC), the source, and whether the
/// datagram was longer than the buffers.
pub struct Datagram {
    /// The call's return value.
    pub len: usize,
    /// The sender.
    pub from: SocketAddrV4,
    /// The datagram did not fit (recvmsg's MSG_TRUNC in `msg_flags`).
    pub truncated: bool,
}

/// `recv` family on a UDP socket: one datagram per call. `flags`: MSG_PEEK, MSG_DONTWAIT, MSG_TRUNC.
pub(super) fn recv(l: &Layer, u: &UdpSock, bufs: &mut [&mut [u8]], flags: i32) -> Result<Datagram, Errno> {
    set_home(u.shard);
    let mut deadline = None;
    loop {
        let mut st = u.lock();
        let nonblocking = st.o.nonblocking || flags & libc::MSG_DONTWAIT != 0;
        let deadline = *deadline.get_or_insert_with(|| st.o.rcvtimeo.and_then(|t| Instant::now().checked_add(t)));
        if let Some((from, data)) = st.rx.front() {
            let (from, real) = (*from, data.len());
            let mut copied = 0;
            for b in bufs.iter_mut() {
                if copied == real {
                    break;
                }
                let n = b.len().min(real - copied);
                b[..n].copy_from_slice(&data[copied..copied + n]);
                copied += n;
            }
            if flags & libc::MSG_PEEK == 0 {
                st.rx.pop_front();
                st.rx_charge -= real + DATAGRAM_OVERHEAD;
                st.post();
            }
            let len = if flags & libc::MSG_TRUNC != 0 { real } else { copied };
            return Ok(Datagram { len, from, truncated: copied < real });
        }
        if let Some(k) = u.kernel.filter(|_| !st.peer.is_some_and(|p| l.in_subnet(*p.ip()))) {
            // The kernel half of an INADDR_ANY socket.
            let kflags = (flags & (libc::MSG_PEEK | libc::MSG_TRUNC)) | libc::MSG_DONTWAIT;
            match kernel::recv_dgram(k, bufs, kflags) {
                Ok((len, from, truncated)) => return Ok(Datagram { len, from, truncated }),
                Err(libc::EAGAIN) => {}
                Err(e) => return Err(e),
            }
        }
        if nonblocking {
            return Err(libc::EAGAIN);
        }
        // A dual socket's fd is the epoll instance over both halves.
        let notify = st.n.fd.unwrap_or(st.n.notify);
        drop(st);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SO_RCVTIMEO passed.
            return Err(libc::EAGAIN);
        }
        wait_ready(l, notify, libc::POLLIN, deadline);
    }
}

/// `send` family on a UDP socket: one datagram to `dst`, or to the connected peer.
pub(super) fn send(
    l: &Layer,
    u: &UdpSock,
    bufs: &[&[u8]],
    dontwait: bool,
    dst: Option<SocketAddrV4>,
) -> Result<usize, Errno> {
    let dst = match dst {
        Some(d) => d,
        None => u.lock().peer.ok_or(libc::EDESTADDRREQ)?,
    };
    if let Some(k) = u.kernel.filter(|_| !l.in_subnet(*dst.ip())) {
        // An INADDR_ANY socket sends outside the dataplane's subnet through the kernel.
        return kernel::send_dgram(k, bufs, Some(dst), 0);
    }
    if dst.port() == 0 || dst.ip().is_unspecified() {
        return Err(libc::EINVAL);
    }
    if !l.routable(*dst.ip()) {
        // Fail here, as Linux's sendto does with no route, not in the cycle where nobody hears of it.
        return Err(libc::ENETUNREACH);
    }
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    if len > l.max_udp {
        // The dataplane sends a datagram in one frame: it does not fragment.
        return Err(libc::EMSGSIZE);
    }
    let mut payload = Vec::with_capacity(len);
    bufs.iter().for_each(|b| payload.extend_from_slice(b));
    let out = Outgoing {
        src_port: u.port,
        dst: Endpoint { addr: Ipv4Address(dst.ip().octets()), port: dst.port() },
        payload: payload.into(),
    };
    let (sndbuf, nonblocking, sndtimeo) = {
        let st = u.lock();
        (st.o.sndbuf, st.o.nonblocking || dontwait, st.o.sndtimeo)
    };
    let deadline = sndtimeo.and_then(|t| Instant::now().checked_add(t));
    let mut out = Some(out);
    loop {
        {
            let mut g = l.shard(u.shard);
            // One datagram always fits an empty queue (as Linux, whose SO_SNDBUF check admits a first one).
            if g.udp_out.is_empty() || g.udp_out_bytes + len <= sndbuf {
                g.udp_out_bytes += len;
                g.udp_out.extend(out.take());
                g.mark_work();
                break;
            }
        }
        if nonblocking || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(libc::EAGAIN);
        }
        // The queue drains as cycles find TX room: run them (a blocking sender polls, as IX's threads do).
        if !drive() {
            std::thread::yield_now();
        }
    }
    set_home(u.shard);
    // Out now (one cycle), not at the next event-loop iteration: a datagram has no coalescing to wait for.
    drive();
    Ok(len)
}

/// `close` of a UDP socket: the port is unbound and what was queued goes.
pub(super) fn close(l: &Layer, fd: RawFd, u: &Arc<UdpSock>) {
    {
        let mut ports = l.udp_ports_mut();
        if ports.get(&u.port).is_some_and(|o| Arc::ptr_eq(o, u)) {
            ports.remove(&u.port);
        }
    }
    let mut st = u.lock();
    st.closed = true;
    st.n.fd = None;
    st.n.unwatch_all(fd);
    st.rx.clear();
    st.rx_charge = 0;
    let notify = st.n.notify;
    drop(st);
    if let Some(k) = u.kernel {
        kernel::close(k);
        kernel::close(notify);
    }
    l.shard(u.shard).push(Pending::UdpUnbind { port: u.port });
}

/// The local address (the dataplane's, and the bound port).
pub(super) fn local(u: &UdpSock) -> SocketAddrV4 {
    u.local
}
