#!/usr/bin/env python3
"""The Linux side of libix's namespace tests: runs inside the test host's network namespace.

  peer.py udp-client HOST PORT [--sizes 1-1472] [--timeout S]   byte-exact UDP echo check, every size once
  peer.py udp-echo-server PORT --seconds S                       Linux UDP echo (for the dataplane's client)
  peer.py malformed IFACE DST_MAC                                 send malformed frames to the dataplane
  peer.py syn-flood IFACE DST_MAC / syn-after-time-wait IFACE DST_MAC   raw SYNs (tcp_edge_test)
  peer.py tcp-pattern-client HOST PORT [--bytes N] [--conns K]    pattern echo check (posix_socket_test)
  peer.py tcp-steps HOST PORT STEPS / tcp-steps-server PORT STEPS scripted connection (posix_socket_test)
Only addresses in 198.18.0.0/15 are accepted.
"""
import argparse
import os
import socket
import struct
import sys
import time


def in_test_range(host):
    a = socket.inet_aton(host)
    return a[0] == 198 and a[1] in (18, 19)


def pattern(size, seq):
    return bytes(((seq * 131 + i * 7 + (i >> 8)) & 0xFF) for i in range(size))


def udp_client(args):
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    lo, hi = (int(x) for x in args.sizes.split("-"))
    socks = []
    for _ in range(args.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(args.timeout)
        socks.append(s)
    ok = bad = lost = retries = 0
    for seq, size in enumerate(range(lo, hi + 1)):
        s = socks[seq % len(socks)]  # several flows, so a multi-queue NIC spreads them
        payload = pattern(size, seq)
        for attempt in range(5):
            s.sendto(payload, (args.host, args.port))
            try:
                while True:
                    data, _ = s.recvfrom(65536)
                    if data == payload:
                        ok += 1
                        break
                    if len(data) == size:
                        bad += 1
                        break
                    # a late echo of an earlier datagram: keep waiting for ours
                break
            except socket.timeout:
                retries += 1
        else:
            lost += 1
    print(f"udp-client ok={ok} bad={bad} lost={lost} retries={retries} sizes={lo}-{hi}")
    sys.exit(0 if ok == hi - lo + 1 and bad == 0 else 1)


def udp_send(args):
    """Fire-and-forget datagrams (no reply expected)."""
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(args.count):
        s.sendto(pattern(32, i), (args.host, args.port))
    print(f"udp-send sent={args.count}")


def udp_echo_server(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.port))
    s.settimeout(0.2)
    print("ready", flush=True)
    end = time.time() + args.seconds
    n = 0
    while time.time() < end:
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            continue
        s.sendto(data, addr)
        n += 1
    print(f"echo-server echoed={n}")


def tcp_client(args):
    """Send --bytes to an echo server on each of --conns connections and check the echo (SHA-256 both ways)."""
    import hashlib
    import threading
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    block = os.urandom(1 << 20)
    results = []

    def one(idx):
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
        s.settimeout(args.timeout)
        sent_hash, recv_hash = hashlib.sha256(), hashlib.sha256()
        err = []

        def sender():
            try:
                left = args.bytes
                off = idx * 4099
                while left > 0:
                    chunk = block[off % len(block):][:min(left, 65536)]
                    s.sendall(chunk)
                    sent_hash.update(chunk)
                    left -= len(chunk)
                    off += len(chunk)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=sender)
        t.start()
        got = 0
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                recv_hash.update(d)
                got += len(d)
        except OSError as e:
            err.append(e)
        t.join()
        s.close()
        results.append((got, sent_hash.hexdigest() == recv_hash.hexdigest(), err))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.conns)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.time() - start
    ok = all(g == args.bytes and same and not e for g, same, e in results)
    total = sum(g for g, _, _ in results)
    print(f"tcp-client conns={args.conns} bytes_each={args.bytes} echoed={total} "
          f"match={all(same for _, same, _ in results)} errors={[str(e) for _, _, e in results if e]} "
          f"MB/s={2 * total / secs / 1e6:.1f}")
    sys.exit(0 if ok else 1)


def tcp_rst_midway(args):
    """Send some data, then reset the connection (SO_LINGER 0) without reading the echo."""
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    s = socket.create_connection((args.host, args.port), timeout=5)
    s.sendall(os.urandom(args.bytes))
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("tcp-rst-midway sent", args.bytes)


def tcp_refused(args):
    """Expect a RST for a SYN to a port nobody listens on."""
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    try:
        socket.create_connection((args.host, args.port), timeout=3)
    except ConnectionRefusedError:
        print("tcp-refused ok")
        return
    except OSError as e:
        sys.exit(f"expected ECONNREFUSED, got {e}")
    sys.exit("connection was accepted")


def tcp_connect_many(args):
    """Open --count connections at once (non-blocking); report how many complete within --timeout."""
    import selectors
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(args.count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((args.host, args.port))
        sel.register(s, selectors.EVENT_WRITE)
        socks.append(s)
    up = 0
    end = time.time() + args.timeout
    while time.time() < end and up < args.count:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            sel.unregister(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                up += 1
    print(f"tcp-connect-many established={up} of {args.count}")
    for s in socks:
        s.close()


def raw_link(args):
    """For the raw-frame modes (raw_frames_parser's arguments): a packet socket on IFACE, our MAC and DST_MAC.
    Refuses --src/--dst outside 198.18.0.0/15."""
    if not (in_test_range(args.src) and in_test_range(args.dst)):
        sys.exit("refusing addresses outside 198.18.0.0/15")
    src_mac = bytes.fromhex(open(f"/sys/class/net/{args.iface}/address").read().strip().replace(":", ""))
    dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    return s, src_mac, dst_mac


class RawSyn:
    """Hand-made SYNs from SRC (random ports unless one is given) to DST:PORT, sent on IFACE to DST_MAC."""

    def __init__(self, args):
        self.sock, src_mac, dst_mac = raw_link(args)
        self.eth = dst_mac + src_mac + struct.pack("!H", 0x0800)
        self.pseudo_base = socket.inet_aton(args.src) + socket.inet_aton(args.dst)
        self.args = args

    def send(self, sport, seq):
        tcp = struct.pack("!HHIIBBHHH", sport, self.args.port, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
        c = csum(self.pseudo_base + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        self.sock.send(self.eth + ip_header(self.args.src, self.args.dst, 6, len(tcp)) + tcp)


def syn_flood(args):
    """Raw SYNs to DST:PORT from random source ports of our address, at most --count, for at most --seconds."""
    import random
    raw = RawSyn(args)
    sent = 0
    end = time.time() + args.seconds
    while sent < args.count and time.time() < end:
        raw.send(random.randint(20000, 60000), random.getrandbits(32))
        sent += 1
    print(f"syn-flood sent={sent}")


def syn_after_time_wait(args):
    """A real connection to DST:PORT that we close first (so it lingers in TIME_WAIT here), then a stray SYN
    from the same port (as a SYN flood's random port may be): the SYN-ACK it draws meets our TIME_WAIT socket,
    which answers with an ACK, not a RST; the far end must still settle its half-open connection."""
    import random
    raw = RawSyn(args)
    c = socket.create_connection((args.dst, args.port), timeout=5)
    c.settimeout(5)
    port = c.getsockname()[1]
    c.sendall(b"x" * 100)
    got = b""
    while len(got) < 100:
        d = c.recv(100 - len(got))
        if not d:
            sys.exit("echo ended early")
        got += d
    c.shutdown(socket.SHUT_WR)
    while c.recv(4096):
        pass
    c.close()
    # The echo server closed after us: this end is in TIME_WAIT now (ss shows it).
    raw.send(port, random.getrandbits(32))
    print(f"syn-after-time-wait port={port}")


def tcp_echo_server(args):
    import threading
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", args.port))
    srv.listen(1024)
    srv.settimeout(0.5)
    print("ready", flush=True)
    end = time.time() + args.seconds
    total = [0]

    def serve(c):
        c.settimeout(args.seconds)
        try:
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                c.sendall(d)
                total[0] += len(d)
        except OSError:
            pass
        c.close()

    while time.time() < end:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    print(f"tcp-echo-server echoed={total[0]}")


# The byte pattern posix_socket_test.c checks (pattern(i) = (j % 251 + j / 251) & 0xff, j = i % 64256): any lost,
# duplicated or reordered range shows up at its offset.
PAT_PERIOD = 64256
PAT_BLOCK = bytes(((j % 251) + (j // 251)) & 0xFF for j in range(PAT_PERIOD))


def pat(off, n):
    out = bytearray()
    while n > 0:
        j = off % PAT_PERIOD
        k = min(n, PAT_PERIOD - j)
        out += PAT_BLOCK[j:j + k]
        off += k
        n -= k
    return bytes(out)


def tcp_pattern_client(args):
    """--conns connections at once, each sends --bytes of the pattern, shuts down its direction and expects the
    same bytes echoed, then EOF."""
    import threading
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    results = []

    def one(idx):
        err = []
        got = 0
        try:
            s = socket.create_connection((args.host, args.port), timeout=args.timeout)
            s.settimeout(args.timeout)
        except OSError as e:
            results.append((idx, 0, [f"connect: {e}"]))
            return

        def sender():
            try:
                off = 0
                while off < args.bytes:
                    n = min(65536, args.bytes - off)
                    s.sendall(pat(off, n))
                    off += n
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(f"send: {e}")

        t = threading.Thread(target=sender)
        t.start()
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                if d != pat(got, len(d)):
                    err.append(f"echo differs in [{got}, {got + len(d)})")
                    break
                got += len(d)
        except OSError as e:
            err.append(f"recv: {e}")
        t.join()
        s.close()
        results.append((idx, got, err))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [(i, g, e) for i, g, e in results if g != args.bytes or e]
    print(f"tcp-pattern-client conns={args.conns} bytes_each={args.bytes} bad={bad}", flush=True)
    sys.exit(1 if bad or len(results) != args.conns else 0)


def run_steps(s, steps, timeout):
    """Runs ';'-separated steps on connected socket s: send N | recv N | eof | shutwr | sleep S | rst | close |
    expect-reset. Data sent and expected is the pattern, each direction from offset 0."""
    import errno
    s.settimeout(timeout)
    tx = rx = 0
    for step in [x.strip() for x in steps.split(";") if x.strip()]:
        verb, _, arg = step.partition(" ")
        if verb == "send":
            n = int(arg)
            s.sendall(pat(tx, n))
            tx += n
        elif verb == "recv":
            want = rx + int(arg)
            while rx < want:
                d = s.recv(want - rx)
                if not d:
                    raise RuntimeError(f"{step}: EOF after {rx} bytes")
                if d != pat(rx, len(d)):
                    raise RuntimeError(f"{step}: bytes differ in [{rx}, {rx + len(d)})")
                rx += len(d)
        elif verb == "eof":
            d = s.recv(1)
            if d:
                raise RuntimeError(f"{step}: got data instead of EOF")
        elif verb == "shutwr":
            s.shutdown(socket.SHUT_WR)
        elif verb == "sleep":
            time.sleep(float(arg))
        elif verb == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            return
        elif verb == "close":
            s.close()
            return
        elif verb == "expect-reset":
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        raise RuntimeError(f"{step}: got EOF (FIN), expected a reset")
            except ConnectionResetError:
                pass
            except OSError as e:
                if e.errno != errno.ECONNRESET:
                    raise RuntimeError(f"{step}: got {e}, expected ECONNRESET")
        else:
            raise RuntimeError(f"unknown step {step!r}")
    s.close()


def tcp_steps(args):
    """Connect to HOST PORT and run STEPS (see run_steps)."""
    if not in_test_range(args.host):
        sys.exit("refusing a target outside 198.18.0.0/15")
    try:
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
        run_steps(s, args.steps, args.timeout)
    except (OSError, RuntimeError) as e:
        sys.exit(f"tcp-steps {args.host}:{args.port} '{args.steps}': {e}")
    print("tcp-steps ok", flush=True)


def tcp_steps_server(args):
    """Listen on PORT, print ready, accept one connection and run STEPS (see run_steps)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", args.port))
    srv.listen(16)
    srv.settimeout(args.timeout)
    print("ready", flush=True)
    try:
        c, _ = srv.accept()
        srv.close()
        run_steps(c, args.steps, args.timeout)
    except (OSError, RuntimeError) as e:
        sys.exit(f"tcp-steps-server :{args.port} '{args.steps}': {e}")
    print("tcp-steps-server ok", flush=True)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_header(src, dst, proto, payload_len, flags_frag=0x4000, ihl=5, total=None, ttl=64):
    total = 20 + payload_len if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, total, 1, flags_frag, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def malformed(args):
    """Each frame targets one drop counter of the dataplane; the test then checks the counters."""
    s, src_mac, dst_mac = raw_link(args)
    src, dst = args.src, args.dst
    eth = lambda t: dst_mac + src_mac + struct.pack("!H", t)
    udp_ok = struct.pack("!HHHH", 5555, 7, 8 + 4, 0) + b"abcd"
    frames = {
        "header_only": eth(0x0800),
        "unknown_ethertype": eth(0x88B5) + b"\0" * 46,
        "ipv6": eth(0x86DD) + b"\x60" + b"\0" * 45,
        "arp_truncated": eth(0x0806) + b"\x00\x01\x08\x00\x06",
        "ip_truncated": eth(0x0800) + b"\x45\x00\x00",
        "ip_bad_version": eth(0x0800) + b"\x65" + ip_header(src, dst, 17, 12)[1:] + udp_ok,
        "ip_bad_ihl": eth(0x0800) + b"\x43" + ip_header(src, dst, 17, 12)[1:] + udp_ok,
        "ip_total_too_long": eth(0x0800) + ip_header(src, dst, 17, 12, total=1400) + udp_ok,
        "ip_bad_checksum": eth(0x0800) + ip_header(src, dst, 17, 12)[:10] + b"\xde\xad"
        + ip_header(src, dst, 17, 12)[12:] + udp_ok,
        "ip_fragment": eth(0x0800) + ip_header(src, dst, 17, 12, flags_frag=0x2000) + udp_ok,
        "ip_not_for_us": eth(0x0800) + ip_header(src, "198.18.0.77", 17, 12) + udp_ok,
        "ip_unknown_proto": eth(0x0800) + ip_header(src, dst, 99, 12) + udp_ok,
        "udp_bad_len": eth(0x0800) + ip_header(src, dst, 17, 12) + struct.pack("!HHHH", 5555, 7, 200, 0) + b"abcd",
        "udp_bad_checksum": eth(0x0800) + ip_header(src, dst, 17, 12) + struct.pack("!HHHH", 5555, 7, 12, 0x1234)
        + b"abcd",
        "icmp_bad_checksum": eth(0x0800) + ip_header(src, dst, 1, 12) + struct.pack("!BBHHH", 8, 0, 0x4321, 1, 1)
        + b"abcd",
        "other_mac": b"\x02\x99\x99\x99\x99\x99" + src_mac + struct.pack("!H", 0x0800) + ip_header(src, dst, 17, 12)
        + udp_ok,
    }
    sent = 0
    for _ in range(args.repeat):
        for name, f in frames.items():
            try:
                s.send(f)
                sent += 1
            except OSError as e:  # the kernel may refuse a runt; the others still go
                print(f"malformed: {name} not sent: {e}", file=sys.stderr)
    print(f"malformed sent={sent} kinds={','.join(frames)}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    def raw_frames_parser(name):
        """A mode that sends hand-made frames on IFACE to DST_MAC, from --src to --dst."""
        r = sub.add_parser(name)
        r.add_argument("iface")
        r.add_argument("dst_mac")
        r.add_argument("--src", default="198.18.0.2")
        r.add_argument("--dst", default="198.18.0.1")
        return r

    c = sub.add_parser("udp-client")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--sizes", default="1-1472")
    c.add_argument("--timeout", type=float, default=0.5)
    c.add_argument("--sockets", type=int, default=1)
    tc = sub.add_parser("tcp-client")
    tc.add_argument("host")
    tc.add_argument("port", type=int)
    tc.add_argument("--bytes", type=int, default=1 << 20)
    tc.add_argument("--conns", type=int, default=1)
    tc.add_argument("--timeout", type=float, default=30)
    ts = sub.add_parser("tcp-echo-server")
    ts.add_argument("port", type=int)
    ts.add_argument("--seconds", type=float, default=120)
    r = sub.add_parser("tcp-rst-midway")
    r.add_argument("host")
    r.add_argument("port", type=int)
    r.add_argument("--bytes", type=int, default=100000)
    rf = sub.add_parser("tcp-refused")
    rf.add_argument("host")
    rf.add_argument("port", type=int)
    cm = sub.add_parser("tcp-connect-many")
    cm.add_argument("host")
    cm.add_argument("port", type=int)
    cm.add_argument("--count", type=int, default=100)
    cm.add_argument("--timeout", type=float, default=5)
    sf = raw_frames_parser("syn-flood")
    sf.add_argument("--port", type=int, default=7)
    sf.add_argument("--count", type=int, default=20000)
    sf.add_argument("--seconds", type=float, default=5)
    raw_frames_parser("syn-after-time-wait").add_argument("--port", type=int, default=7)
    pc = sub.add_parser("tcp-pattern-client")
    pc.add_argument("host")
    pc.add_argument("port", type=int)
    pc.add_argument("--bytes", type=int, default=1 << 20)
    pc.add_argument("--conns", type=int, default=1)
    pc.add_argument("--timeout", type=float, default=20)
    st = sub.add_parser("tcp-steps")
    st.add_argument("host")
    st.add_argument("port", type=int)
    st.add_argument("steps")
    st.add_argument("--timeout", type=float, default=10)
    ss = sub.add_parser("tcp-steps-server")
    ss.add_argument("port", type=int)
    ss.add_argument("steps")
    ss.add_argument("--timeout", type=float, default=10)
    u = sub.add_parser("udp-send")
    u.add_argument("host")
    u.add_argument("port", type=int)
    u.add_argument("--count", type=int, default=10)
    e = sub.add_parser("udp-echo-server")
    e.add_argument("port", type=int)
    e.add_argument("--seconds", type=float, default=60)
    m = raw_frames_parser("malformed")
    m.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    {"tcp-rst-midway": tcp_rst_midway, "tcp-refused": tcp_refused, "tcp-connect-many": tcp_connect_many,
     "syn-flood": syn_flood, "syn-after-time-wait": syn_after_time_wait, "tcp-client": tcp_client,
     "tcp-pattern-client": tcp_pattern_client, "tcp-steps": tcp_steps, "tcp-steps-server": tcp_steps_server, "tcp-echo-server": tcp_echo_server, "udp-client": udp_client, "udp-send": udp_send, "udp-echo-server": udp_echo_server, "malformed": malformed}[a.cmd](a)


if __name__ == "__main__":
    main()
