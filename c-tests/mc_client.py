#!/usr/bin/env python3
"""Memcached test client for libix CI: proves that a memcached served through libix's
TCP stack (stock memcached under LD_PRELOAD) behaves exactly like memcached.

  mc_client.py --host H --port P protocol [--allow-flush]
      every text and binary command with exact expected replies, values 0 B .. 1 MiB
  mc_client.py --host H --port P bulk [--keys N]
      N pipelined text sets + multi-get read-back, then N/10 via binary SETQ/GETKQ
  mc_client.py --host H --port P load [--conns C] [--seconds S] [--threads T] [--max-requests R]
      C non-blocking connections, random set/get/delete/incr checked against a model
  mc_client.py --host H --port P stats-check
      prints curr_connections / total_connections / curr_items as key=value lines

Common options: --timeout (per socket operation), --seed (printed in the summary so a
failure can be replayed), --prefix (key prefix; random per run so runs never collide),
--time-limit (hard bound on bulk and load). Exit status 0 on success, 1 on check failures,
2 when the server cannot be used at all, 3 on an internal client error. The last line is always
`mc_client MODE: ok ...` or `mc_client MODE: FAILED ...`.

Note: protocol mode asserts exact deltas of the global counters curr_items, cmd_get and
get_hits, so no other client should use the server while it runs.
"""
import argparse
import collections
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
from typing import NamedTuple, Optional

MAX_FAILURES_PRINTED = 20
MAX_LINE = 64 * 1024  # a reply line longer than this is a protocol error
RECV_SIZE = 256 * 1024
MAX_STATS_LINES = 10000
MIB = 1024 * 1024
U64 = 1 << 64


# --------------------------------------------------------------------------- reporting

class Report:
    """Counts checks, prints the first failures one line each. Thread safe."""

    def __init__(self, max_printed=MAX_FAILURES_PRINTED):
        self.checks = 0
        self.failures = 0
        self.max_printed = max_printed
        self._lock = threading.Lock()

    def fail(self, message, always_print=False):
        with self._lock:
            self.checks += 1
            self.failures += 1
            if self.failures <= self.max_printed or always_print:
                print(f"FAIL: {message}", flush=True)
            elif self.failures == self.max_printed + 1:
                print("FAIL: (further failures not printed)", flush=True)

    def passed(self, count=1):
        with self._lock:
            self.checks += count

    def check(self, condition, message):
        if condition:
            self.passed()
        else:
            self.fail(message)
        return condition

    def equal(self, actual, expected, what):
        if actual == expected:
            self.passed()
            return True
        self.fail(f"{what}: {describe_mismatch(actual, expected)}")
        return False


def short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_mismatch(actual, expected):
    if isinstance(actual, (bytes, bytearray)) and isinstance(expected, (bytes, bytearray)):
        first = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b),
                     min(len(actual), len(expected)))
        return (f"got {len(actual)} bytes, expected {len(expected)} bytes, "
                f"first difference at offset {first}")
    return f"got {short(actual)}, expected {short(expected)}"


def summary_line(mode, report, started, seed, extra=""):
    status = "ok" if report.failures == 0 else "FAILED"
    elapsed = time.monotonic() - started
    tail = f" {extra}" if extra else ""
    return (f"mc_client {mode}: {status} checks={report.checks} failures={report.failures}"
            f"{tail} seed={seed} elapsed={elapsed:.1f}s")


class ProtocolError(Exception):
    """The server sent something that does not parse as the expected reply."""


# --------------------------------------------------------------------------- text protocol

class Item(NamedTuple):
    flags: int
    value: bytes
    cas: Optional[int]


class TextClient:
    """Blocking memcached text-protocol client with exact, buffered reply parsing."""

    def __init__(self, host, port, timeout, sock=None, leftover=b""):
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._buf = bytearray(leftover)

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(RECV_SIZE)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buf += chunk

    def read_line(self):
        """One reply line without its CRLF (bytes)."""
        scanned = 0
        while True:
            end = self._buf.find(b"\r\n", scanned)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 2]
                return line
            if len(self._buf) > MAX_LINE:
                raise ProtocolError(f"reply line longer than {MAX_LINE}: {short(bytes(self._buf[:60]))}")
            scanned = max(0, len(self._buf) - 1)
            self._fill()

    def read_exact(self, count):
        while len(self._buf) < count:
            self._fill()
        data = bytes(self._buf[:count])
        del self._buf[:count]
        return data

    def pending_bytes(self):
        return len(self._buf)

    # -- commands

    def command(self, line):
        """Send one command line, return the one-line reply as str."""
        self.send(line.encode() + b"\r\n")
        return self.read_line().decode(errors="replace")

    @staticmethod
    def storage_request(cmd, key, value, flags=0, exptime=0, cas_unique=None, noreply=False):
        header = f"{cmd} {key} {flags} {exptime} {len(value)}"
        if cas_unique is not None:
            header += f" {cas_unique}"
        if noreply:
            header += " noreply"
        return header.encode() + b"\r\n" + value + b"\r\n"

    def store(self, cmd, key, value, flags=0, exptime=0, cas_unique=None, noreply=False):
        """set/add/replace/append/prepend/cas; returns the reply line, or None with noreply."""
        self.send(self.storage_request(cmd, key, value, flags, exptime, cas_unique, noreply))
        return None if noreply else self.read_line().decode(errors="replace")

    def read_values(self, max_items):
        """Parse VALUE ... blocks up to END; returns {key: Item} in reply order."""
        items = {}
        for _ in range(max_items + 1):
            line = self.read_line()
            if line == b"END":
                return items
            fields = line.split(b" ")
            if fields[0] != b"VALUE" or len(fields) not in (4, 5):
                raise ProtocolError(f"unexpected retrieval reply {short(line)}")
            key = fields[1].decode()
            flags, size = int(fields[2]), int(fields[3])
            cas = int(fields[4]) if len(fields) == 5 else None
            block = self.read_exact(size + 2)
            if block[-2:] != b"\r\n":
                raise ProtocolError(f"value of {key} not followed by CRLF")
            if key in items:
                raise ProtocolError(f"key {key} returned twice")
            items[key] = Item(flags, block[:-2], cas)
        raise ProtocolError(f"more than {max_items} values for {max_items} keys")

    def retrieve(self, cmd, keys, exptime=None):
        """get/gets (exptime None) or gat/gats; returns {key: Item}."""
        keys = list(keys)
        words = [cmd] + ([str(exptime)] if exptime is not None else []) + keys
        self.send(" ".join(words).encode() + b"\r\n")
        return self.read_values(len(keys))

    def get(self, key):
        return self.retrieve("get", [key]).get(key)

    def gets(self, key):
        return self.retrieve("gets", [key]).get(key)

    def stats(self, group=""):
        self.send((f"stats {group}" if group else "stats").encode().strip() + b"\r\n")
        result = {}
        for _ in range(MAX_STATS_LINES):
            line = self.read_line().decode(errors="replace")
            if line == "END":
                return result
            fields = line.split(" ", 2)
            if fields[0] != "STAT" or len(fields) != 3:
                raise ProtocolError(f"unexpected stats line {short(line)}")
            result[fields[1]] = fields[2]
        raise ProtocolError(f"stats reply longer than {MAX_STATS_LINES} lines")


# --------------------------------------------------------------------------- binary protocol

REQUEST_MAGIC = 0x80
RESPONSE_MAGIC = 0x81
HEADER = struct.Struct(">BBHBBHIIQ")  # magic opcode keylen extlen datatype status/vb bodylen opaque cas

OP_GET, OP_SET, OP_ADD, OP_REPLACE, OP_DELETE = 0x00, 0x01, 0x02, 0x03, 0x04
OP_INCREMENT, OP_DECREMENT, OP_QUIT, OP_FLUSH, OP_GETQ = 0x05, 0x06, 0x07, 0x08, 0x09
OP_NOOP, OP_VERSION, OP_GETK, OP_GETKQ, OP_APPEND = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
OP_PREPEND, OP_STAT, OP_SETQ, OP_TOUCH, OP_GAT = 0x0F, 0x10, 0x11, 0x1C, 0x1D

ST_OK, ST_KEY_ENOENT, ST_KEY_EEXISTS, ST_E2BIG = 0x00, 0x01, 0x02, 0x03
ST_EINVAL, ST_NOT_STORED, ST_DELTA_BADVAL, ST_UNKNOWN_COMMAND = 0x04, 0x05, 0x06, 0x81

EXPTIME_NO_CREATE = 0xFFFFFFFF  # incr/decr: fail with KEY_ENOENT instead of creating


class BinResponse(NamedTuple):
    opcode: int
    status: int
    key: bytes
    extras: bytes
    value: bytes
    cas: int
    opaque: int

    def flags(self):
        return struct.unpack(">I", self.extras)[0] if len(self.extras) == 4 else None

    def counter(self):
        return struct.unpack(">Q", self.value)[0] if len(self.value) == 8 else None


class BinaryClient:
    """Blocking memcached binary-protocol client (protocol_binary.h framing)."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._next_opaque = 1

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(RECV_SIZE)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buf += chunk

    def _read_exact(self, count):
        while len(self._buf) < count:
            self._fill()
        data = bytes(self._buf[:count])
        del self._buf[:count]
        return data

    def new_opaque(self):
        opaque = self._next_opaque
        self._next_opaque = (self._next_opaque + 1) & 0xFFFFFFFF or 1
        return opaque

    @staticmethod
    def packet(opcode, key=b"", value=b"", extras=b"", cas=0, opaque=0):
        header = HEADER.pack(REQUEST_MAGIC, opcode, len(key), len(extras), 0, 0,
                             len(extras) + len(key) + len(value), opaque, cas)
        return header + extras + key + value

    def send(self, data):
        self.sock.sendall(data)

    def read_response(self):
        magic, opcode, keylen, extlen, datatype, status, bodylen, opaque, cas = \
            HEADER.unpack(self._read_exact(HEADER.size))
        if magic != RESPONSE_MAGIC:
            raise ProtocolError(f"response magic 0x{magic:02x}, expected 0x81")
        if datatype != 0 or keylen + extlen > bodylen:
            raise ProtocolError(f"bad response header datatype={datatype} keylen={keylen} "
                                f"extlen={extlen} bodylen={bodylen}")
        body = self._read_exact(bodylen)
        return BinResponse(opcode, status, body[extlen:extlen + keylen], body[:extlen],
                           body[extlen + keylen:], cas, opaque)

    def call(self, opcode, key=b"", value=b"", extras=b"", cas=0):
        """One request, one response; the response must echo the opcode and opaque."""
        opaque = self.new_opaque()
        self.send(self.packet(opcode, key, value, extras, cas, opaque))
        response = self.read_response()
        if response.opcode != opcode or response.opaque != opaque:
            raise ProtocolError(f"response opcode 0x{response.opcode:02x} opaque {response.opaque}"
                                f" for request opcode 0x{opcode:02x} opaque {opaque}")
        return response

    # -- commands

    def get(self, key, opcode=OP_GET):
        return self.call(opcode, key.encode())

    def store(self, opcode, key, value, flags=0, exptime=0, cas=0):
        return self.call(opcode, key.encode(), value, struct.pack(">II", flags, exptime), cas)

    def concat(self, opcode, key, value, cas=0):
        return self.call(opcode, key.encode(), value, b"", cas)

    def delete(self, key, cas=0):
        return self.call(OP_DELETE, key.encode(), cas=cas)

    def arith(self, opcode, key, delta, initial=0, exptime=EXPTIME_NO_CREATE):
        return self.call(opcode, key.encode(), b"", struct.pack(">QQI", delta, initial, exptime))

    def touch(self, key, exptime):
        return self.call(OP_TOUCH, key.encode(), b"", struct.pack(">I", exptime))

    def gat(self, key, exptime):
        return self.call(OP_GAT, key.encode(), b"", struct.pack(">I", exptime))

    def stat(self, group=""):
        """STAT: one response per statistic, terminated by one with an empty key."""
        opaque = self.new_opaque()
        self.send(self.packet(OP_STAT, group.encode(), opaque=opaque))
        result = {}
        for _ in range(MAX_STATS_LINES):
            response = self.read_response()
            if response.opcode != OP_STAT or response.opaque != opaque or response.status != ST_OK:
                raise ProtocolError(f"STAT response opcode 0x{response.opcode:02x} "
                                    f"status 0x{response.status:02x}")
            if not response.key:
                if response.value:
                    raise ProtocolError("STAT terminator carries a value")
                return result
            result[response.key.decode()] = response.value.decode(errors="replace")
        raise ProtocolError("STAT never terminated")


# --------------------------------------------------------------------------- shared helpers

def random_prefix():
    return f"mct{os.getpid() % 100000}-{random.SystemRandom().getrandbits(32):08x}-"


def make_value(rng, size):
    """Random bytes of exactly `size`, with protocol look-alikes (CRLF, END, VALUE) inside."""
    if size == 0:
        return b""
    data = bytearray(rng.randbytes(size))
    for marker in (b"\r\nEND\r\n", b"\r\nVALUE x 0 1\r\n", b"\r\n", b"\x00\x80\x81\xff"):
        if size >= 4 * len(marker):
            position = rng.randrange(size - len(marker))
            data[position:position + len(marker)] = marker
    if size >= 2:
        data[-2:] = b"\r\n"  # a value that itself ends in CRLF right before the protocol's CRLF
    return bytes(data)


def value_sizes(item_size_max):
    """The protocol-mode sizes; the last is the largest the server's -I setting allows."""
    largest = MIB if item_size_max >= 2 * MIB else item_size_max - 1024
    sizes = [0, 1, 2, 100, 1000, 4095, 4096, 4097, 65535, 65536, 100000, 524288, largest]
    return sorted(set(size for size in sizes if size <= largest))


def chunks(sequence, size):
    for start in range(0, len(sequence), size):
        yield sequence[start:start + size]


def format_rate(count, seconds):
    return f"{count / seconds:.0f}" if seconds > 0 else "inf"


# --------------------------------------------------------------------------- protocol mode

class ProtocolContext:
    """What the protocol checks share: target, report, seeded rng, key naming."""

    def __init__(self, args, report):
        self.args = args
        self.report = report
        self.rng = random.Random(args.seed)
        self.prefix = args.prefix
        self._key_serial = 0
        self.item_size_max = 0
        self.version = None

    def key(self, tag):
        self._key_serial += 1
        return f"{self.prefix}{tag}:{self._key_serial}"

    def text_client(self):
        return TextClient(self.args.host, self.args.port, self.args.timeout)

    def binary_client(self):
        return BinaryClient(self.args.host, self.args.port, self.args.timeout)


def text_sizes(c, ctx):
    r = ctx.report
    for size in value_sizes(ctx.item_size_max):
        key, value = ctx.key(f"t-size{size}"), make_value(ctx.rng, size)
        flags = ctx.rng.choice([0, 1, 0xFFFFFFFF, ctx.rng.getrandbits(32)])
        r.equal(c.store("set", key, value, flags), "STORED", f"text set {size} B")
        got = c.get(key)
        if r.check(got is not None, f"text get {size} B: miss after set"):
            r.equal(got.value, value, f"text get {size} B value")
            r.equal(got.flags, flags, f"text get {size} B flags")
            r.equal(got.cas, None, f"text get {size} B must not carry a cas")
        got = c.gets(key)
        if r.check(got is not None, f"text gets {size} B: miss after set"):
            r.equal(got.value, value, f"text gets {size} B value")
            r.check(got.cas is not None and got.cas > 0, f"text gets {size} B: cas {got.cas}")


def text_cas(c, ctx):
    r = ctx.report
    key = ctx.key("t-cas")
    r.equal(c.store("set", key, b"first", 3), "STORED", "text cas: set")
    first = c.gets(key)
    r.equal(c.store("cas", key, b"second", 77, 0, first.cas), "STORED", "text cas with current cas")
    second = c.gets(key)
    r.equal((second.value, second.flags), (b"second", 77), "text cas: stored value and flags")
    r.check(second.cas != first.cas, f"text cas: cas unchanged ({first.cas}) after a cas store")
    r.equal(c.store("cas", key, b"third", 0, 0, first.cas), "EXISTS", "text cas with stale cas")
    r.equal(c.get(key).value, b"second", "text cas: value after stale cas")
    r.equal(c.store("cas", ctx.key("t-cas-missing"), b"x", 0, 0, first.cas), "NOT_FOUND",
            "text cas on missing key")
    r.equal(c.store("set", key, b"fourth"), "STORED", "text cas: plain set")
    r.check(c.gets(key).cas != second.cas, "text cas: cas unchanged after set")
    r.equal(c.store("cas", key, b"fifth", 0, 0, second.cas), "EXISTS", "text cas after intervening set")


def text_add_replace(c, ctx):
    r = ctx.report
    key = ctx.key("t-add")
    r.equal(c.store("add", key, b"added", 5), "STORED", "text add of new key")
    r.equal(c.store("add", key, b"again", 6), "NOT_STORED", "text add of present key")
    r.equal(c.get(key), Item(5, b"added", None), "text add: value kept after failed add")
    missing = ctx.key("t-replace-missing")
    r.equal(c.store("replace", missing, b"x"), "NOT_STORED", "text replace of absent key")
    r.equal(c.get(missing), None, "text replace of absent key must not create it")
    r.equal(c.store("replace", key, b"replaced", 9), "STORED", "text replace of present key")
    r.equal(c.get(key), Item(9, b"replaced", None), "text replace: new value and flags")


def text_append_prepend(c, ctx):
    r = ctx.report
    key = ctx.key("t-concat")
    r.equal(c.store("set", key, b"middle", 5), "STORED", "text append: set")
    before = c.gets(key)
    r.equal(c.store("append", key, b"-end\r\n", 99), "STORED", "text append")
    r.equal(c.store("prepend", key, b"\r\nstart-", 98), "STORED", "text prepend")
    after = c.gets(key)
    r.equal(after.value, b"\r\nstart-middle-end\r\n", "text append/prepend value")
    r.equal(after.flags, 5, "text append/prepend must keep the original flags")
    r.check(after.cas != before.cas, "text append: cas unchanged")
    missing = ctx.key("t-concat-missing")
    r.equal(c.store("append", missing, b"x"), "NOT_STORED", "text append to absent key")
    r.equal(c.store("prepend", missing, b"x"), "NOT_STORED", "text prepend to absent key")
    r.equal(c.get(missing), None, "text append/prepend must not create a key")
    big = ctx.key("t-concat-big")
    part1, part2 = make_value(ctx.rng, 70000), make_value(ctx.rng, 70001)
    c.store("set", big, part1)
    r.equal(c.store("append", big, part2), "STORED", "text append of 70001 B")
    r.equal(c.get(big).value, part1 + part2, "text append of large values")
    r.equal(c.store("cas", key, b"x", 0, 0, before.cas), "EXISTS", "text cas stale after append")


def text_delete(c, ctx):
    r = ctx.report
    key = ctx.key("t-del")
    c.store("set", key, b"doomed")
    r.equal(c.command(f"delete {key}"), "DELETED", "text delete of present key")
    r.equal(c.get(key), None, "text get after delete")
    r.equal(c.command(f"delete {key}"), "NOT_FOUND", "text delete of absent key")


def text_incr_decr(c, ctx):
    r = ctx.report
    key = ctx.key("t-num")
    c.store("set", key, b"10", 42)
    r.equal(c.command(f"incr {key} 5"), "15", "text incr 10+5")
    r.equal(c.command(f"decr {key} 3"), "12", "text decr 15-3")
    r.equal(c.get(key), Item(42, b"12", None), "text get after incr/decr (flags kept)")
    r.equal(c.command(f"incr {key} 1000"), "1012", "text incr growing the length")
    r.equal(c.get(key).value, b"1012", "text get after length-growing incr")
    # memcached decrements in place and pads the shorter number with spaces.
    c.store("set", key, b"10")
    r.equal(c.command(f"decr {key} 1"), "9", "text decr 10-1")
    r.equal(c.get(key).value, b"9 ", "text get after shrinking decr (space padded in place)")
    c.store("set", key, b"18446744073709551615")
    r.equal(c.command(f"incr {key} 1"), "0", "text incr wraps at 2^64")
    c.store("set", key, b"18446744073709551614")
    r.equal(c.command(f"incr {key} 3"), "1", "text incr wraps modulo 2^64")
    c.store("set", key, b"1")
    r.equal(c.command(f"incr {key} 18446744073709551615"), "0", "text incr by 2^64-1")
    c.store("set", key, b"3")
    r.equal(c.command(f"decr {key} 5"), "0", "text decr underflow clamps to 0")
    r.equal(c.command(f"decr {key} 1"), "0", "text decr of 0 stays 0")
    r.equal(c.command(f"incr {ctx.key('t-num-missing')} 1"), "NOT_FOUND", "text incr of absent key")
    r.equal(c.command(f"decr {ctx.key('t-num-missing')} 1"), "NOT_FOUND", "text decr of absent key")
    text_key = ctx.key("t-num-text")
    c.store("set", text_key, b"abc")
    r.equal(c.command(f"incr {text_key} 1"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value", "text incr of non-numeric value")
    r.equal(c.command(f"decr {text_key} 1"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value", "text decr of non-numeric value")
    r.equal(c.command(f"incr {key} abc"), "CLIENT_ERROR invalid numeric delta argument",
            "text incr with non-numeric delta")
    r.equal(c.get(text_key).value, b"abc", "text non-numeric value unchanged by incr")


def text_expiry(c, ctx):
    """touch, gat, gats, negative and absolute exptime; one sleep checks what expired."""
    r = ctx.report
    touched, expiring, gat_expiring, gat_persist = (ctx.key(t) for t in ("t-touch", "t-exp", "t-gat", "t-gatp"))
    r.equal(c.store("set", touched, b"touched", 1, 2), "STORED", "text set exptime 2")
    r.equal(c.command(f"touch {touched} 100"), "TOUCHED", "text touch of present key")
    r.equal(c.command(f"touch {ctx.key('t-touch-missing')} 100"), "NOT_FOUND", "text touch of absent key")
    r.equal(c.store("set", expiring, b"expiring", 2, 2), "STORED", "text set exptime 2")
    c.store("set", gat_expiring, b"gat-me", 3, 0)
    got = c.retrieve("gat", [gat_expiring], exptime=2)
    r.equal(got, {gat_expiring: Item(3, b"gat-me", None)}, "text gat reply")
    got = c.retrieve("gats", [gat_expiring], exptime=2)
    r.check(gat_expiring in got and got[gat_expiring].cas, f"text gats must return a cas: {short(got)}")
    c.store("set", gat_persist, b"gat-keep", 4, 2)
    r.equal(c.retrieve("gat", [gat_persist], exptime=0), {gat_persist: Item(4, b"gat-keep", None)},
            "text gat 0 reply")
    r.equal(c.retrieve("gat", [ctx.key("t-gat-missing")], exptime=10), {}, "text gat of absent key")
    negative = ctx.key("t-neg")
    r.equal(c.store("set", negative, b"x", 0, -1), "STORED", "text set exptime -1")
    r.equal(c.get(negative), None, "text negative exptime expires immediately")
    past, future = ctx.key("t-abs-past"), ctx.key("t-abs-future")
    now = int(time.time())
    c.store("set", past, b"past", 0, now - 100000)
    c.store("set", future, b"future", 0, now + 100000)
    r.equal(c.get(past), None, "text absolute exptime in the past")
    r.equal(c.get(future), Item(0, b"future", None), "text absolute exptime in the future")
    time.sleep(3.2)
    r.equal(c.get(touched), Item(1, b"touched", None), "text touched key must outlive its first exptime")
    r.equal(c.get(expiring), None, "text key with exptime 2 still present after 3.2 s")
    r.equal(c.get(gat_expiring), None, "text gat 2 did not set the expiry")
    r.equal(c.get(gat_persist), Item(4, b"gat-keep", None), "text gat 0 did not clear the expiry")


def text_multiget(c, ctx):
    r = ctx.report
    keys = [ctx.key(f"t-multi{i}") for i in range(100)]
    expected = {}
    requests = []
    for i, key in enumerate(keys):
        if i % 10 == 7:
            continue  # left absent: a multi-get must skip it
        expected[key] = Item(i, make_value(ctx.rng, ctx.rng.randint(0, 3000)), None)
        requests.append(TextClient.storage_request("set", key, expected[key].value, i))
    c.send(b"".join(requests))  # 90 pipelined sets in one send
    replies = [c.read_line() for _ in requests]
    r.equal(replies, [b"STORED"] * len(requests), "text pipelined sets")
    got = c.retrieve("get", keys)
    r.equal(list(got), list(expected), "text get of 100 keys: keys returned, in request order")
    r.equal(got, expected, "text get of 100 keys: values and flags")
    got = c.retrieve("gets", keys)
    r.equal({k: (v.flags, v.value) for k, v in got.items()},
            {k: (v.flags, v.value) for k, v in expected.items()}, "text gets of 100 keys")
    r.check(all(v.cas for v in got.values()), "text gets of 100 keys: every item has a cas")
    r.equal(len(set(v.cas for v in got.values())), len(got), "text gets: cas values unique")


def text_stats_counters(c, ctx):
    """curr_items, cmd_get, get_hits, get_misses move exactly (retried: the server is global)."""
    r = ctx.report
    counters = ("curr_items", "cmd_get", "get_hits", "get_misses")
    last_delta = None
    for attempt in range(3):
        keys = [ctx.key(f"t-stat{i}") for i in range(7)]
        before = c.stats()
        for key in keys:
            c.store("set", key, b"v")
        c.retrieve("get", keys[:5])
        c.get(keys[5])
        c.retrieve("get", [ctx.key("t-stat-miss1"), ctx.key("t-stat-miss2")])
        after = c.stats()
        last_delta = {name: int(after[name]) - int(before[name]) for name in counters}
        if last_delta == {"curr_items": 7, "cmd_get": 8, "get_hits": 6, "get_misses": 2}:
            break
    r.equal(last_delta, {"curr_items": 7, "cmd_get": 8, "get_hits": 6, "get_misses": 2},
            "text stats deltas after 7 sets, 6 hits, 2 misses")
    stats = c.stats()
    for name in ("pid", "uptime", "version", "curr_connections", "total_connections", "cmd_set"):
        r.check(name in stats, f"text stats lacks {name}")
    r.equal(stats.get("version"), ctx.version, "text stats version vs version command")
    r.check(stats.get("curr_connections", "x").isdigit() and int(stats["curr_connections"]) >= 1,
            f"text stats curr_connections={stats.get('curr_connections')}")


def text_version_and_errors(c, ctx):
    r = ctx.report
    line = c.command("version")
    r.check(line.startswith("VERSION ") and len(line.split()) == 2, f"text version reply {short(line)}")
    r.equal(c.command("no_such_command"), "ERROR", "text unknown command")
    r.equal(c.command("version"), line, "text stream in sync after an error")


def text_noreply(c, ctx):
    r = ctx.report
    a, b, d, n, t = (ctx.key(tag) for tag in ("t-nr-a", "t-nr-b", "t-nr-d", "t-nr-n", "t-nr-t"))
    c.store("set", a, b"one", 1, noreply=True)
    c.store("add", a, b"not-stored", 2, noreply=True)
    c.store("add", b, b"added", 3, noreply=True)
    c.store("replace", b, b"replaced", 4, noreply=True)
    c.store("append", a, b"-tail", noreply=True)
    c.store("prepend", a, b"head-", noreply=True)
    c.store("replace", ctx.key("t-nr-absent"), b"x", noreply=True)
    c.store("set", d, b"delete-me", noreply=True)
    c.send(f"delete {d} noreply\r\ndelete {d} noreply\r\n".encode())
    c.store("set", n, b"100", noreply=True)
    c.send(f"incr {n} 23 noreply\r\ndecr {n} 3 noreply\r\nincr {a} 1 noreply\r\n".encode())
    c.store("set", t, b"touch", 0, 2, noreply=True)
    c.send(f"touch {t} 100 noreply\r\n".encode())
    r.equal(c.store("set", n + "x", b"1"), "STORED", "text first reply after noreply commands")
    got = c.retrieve("get", [a, b, d, n, t])
    r.equal(got, {a: Item(1, b"head-one-tail", None), b: Item(4, b"replaced", None),
                  n: Item(0, b"120", None), t: Item(0, b"touch", None)},
            "text state after noreply commands")
    stale = c.gets(b).cas + 1000000
    c.store("cas", b, b"stale", 0, 0, stale, noreply=True)
    r.equal(c.get(b).value, b"replaced", "text cas noreply with stale cas")
    r.equal(c.command("version"), f"VERSION {ctx.version}", "text noreply left no stray reply")


def text_too_large(c, ctx):
    """A value over -I is refused, the old item is dropped, and the stream stays in sync."""
    r = ctx.report
    if ctx.item_size_max > 8 * MIB:
        return
    key = ctx.key("t-big")
    c.store("set", key, b"small")
    reply = c.store("set", key, bytes(ctx.item_size_max + 1))
    r.equal(reply, "SERVER_ERROR object too large for cache", "text set over item_size_max")
    r.equal(c.get(key), None, "text key after refused oversize set")
    r.equal(c.command("version"), f"VERSION {ctx.version}", "text stream in sync after oversize set")


TEXT_CHECKS = [text_version_and_errors, text_sizes, text_cas, text_add_replace, text_append_prepend,
               text_delete, text_incr_decr, text_multiget, text_stats_counters, text_noreply,
               text_too_large, text_expiry]


def binary_sizes(c, ctx):
    r = ctx.report
    for size in value_sizes(ctx.item_size_max):
        key, value = ctx.key(f"b-size{size}"), make_value(ctx.rng, size)
        flags = ctx.rng.choice([0, 1, 0xFFFFFFFF, ctx.rng.getrandbits(32)])
        stored = c.store(OP_SET, key, value, flags)
        r.equal(stored.status, ST_OK, f"binary SET {size} B status")
        r.check(stored.cas != 0, f"binary SET {size} B returned cas 0")
        got = c.get(key)
        r.equal(got.status, ST_OK, f"binary GET {size} B status")
        r.equal(got.value, value, f"binary GET {size} B value")
        r.equal(got.flags(), flags, f"binary GET {size} B flags")
        r.equal(got.cas, stored.cas, f"binary GET {size} B cas")
        r.equal(got.key, b"", f"binary GET {size} B must not echo the key")
        got = c.get(key, OP_GETK)
        r.equal((got.status, got.key, got.value), (ST_OK, key.encode(), value), f"binary GETK {size} B")


def binary_cas(c, ctx):
    r = ctx.report
    key = ctx.key("b-cas")
    first = c.store(OP_SET, key, b"first", 3)
    second = c.store(OP_SET, key, b"second", 77, cas=first.cas)
    r.equal(second.status, ST_OK, "binary SET with current cas")
    r.check(second.cas != first.cas, "binary SET with cas: cas unchanged")
    r.equal(c.store(OP_SET, key, b"third", cas=first.cas).status, ST_KEY_EEXISTS, "binary SET with stale cas")
    got = c.get(key)
    r.equal((got.value, got.flags(), got.cas), (b"second", 77, second.cas), "binary value after stale cas")
    r.equal(c.store(OP_SET, ctx.key("b-cas-missing"), b"x", cas=first.cas).status, ST_KEY_ENOENT,
            "binary SET with cas on absent key")
    r.equal(c.store(OP_REPLACE, key, b"r", cas=first.cas).status, ST_KEY_EEXISTS,
            "binary REPLACE with stale cas")
    r.equal(c.delete(key, cas=first.cas).status, ST_KEY_EEXISTS, "binary DELETE with stale cas")
    r.equal(c.delete(key, cas=second.cas).status, ST_OK, "binary DELETE with current cas")
    r.equal(c.get(key).status, ST_KEY_ENOENT, "binary GET after DELETE")


def binary_add_replace(c, ctx):
    r = ctx.report
    key = ctx.key("b-add")
    r.equal(c.store(OP_ADD, key, b"added", 5).status, ST_OK, "binary ADD of new key")
    r.equal(c.store(OP_ADD, key, b"again", 6).status, ST_KEY_EEXISTS, "binary ADD of present key")
    got = c.get(key)
    r.equal((got.value, got.flags()), (b"added", 5), "binary value kept after failed ADD")
    missing = ctx.key("b-replace-missing")
    r.equal(c.store(OP_REPLACE, missing, b"x").status, ST_KEY_ENOENT, "binary REPLACE of absent key")
    r.equal(c.get(missing).status, ST_KEY_ENOENT, "binary REPLACE must not create a key")
    r.equal(c.store(OP_REPLACE, key, b"replaced", 9).status, ST_OK, "binary REPLACE of present key")
    got = c.get(key)
    r.equal((got.value, got.flags()), (b"replaced", 9), "binary REPLACE value and flags")


def binary_append_prepend(c, ctx):
    r = ctx.report
    key = ctx.key("b-concat")
    before = c.store(OP_SET, key, b"middle", 5)
    appended = c.concat(OP_APPEND, key, b"-end\r\n")
    r.equal(appended.status, ST_OK, "binary APPEND")
    r.check(appended.cas not in (0, before.cas), "binary APPEND must return a new cas")
    r.equal(c.concat(OP_PREPEND, key, b"\r\nstart-").status, ST_OK, "binary PREPEND")
    got = c.get(key)
    r.equal((got.value, got.flags()), (b"\r\nstart-middle-end\r\n", 5), "binary APPEND/PREPEND value, flags")
    r.equal(c.concat(OP_APPEND, key, b"x", cas=before.cas).status, ST_KEY_EEXISTS,
            "binary APPEND with stale cas")
    missing = ctx.key("b-concat-missing")
    r.equal(c.concat(OP_APPEND, missing, b"x").status, ST_NOT_STORED, "binary APPEND to absent key")
    r.equal(c.concat(OP_PREPEND, missing, b"x").status, ST_NOT_STORED, "binary PREPEND to absent key")
    r.equal(c.get(missing).status, ST_KEY_ENOENT, "binary APPEND/PREPEND must not create a key")


def binary_delete(c, ctx):
    r = ctx.report
    key = ctx.key("b-del")
    c.store(OP_SET, key, b"doomed")
    r.equal(c.delete(key).status, ST_OK, "binary DELETE of present key")
    got = c.get(key)
    r.equal((got.status, got.extras), (ST_KEY_ENOENT, b""), "binary GET after DELETE")
    r.equal(c.delete(key).status, ST_KEY_ENOENT, "binary DELETE of absent key")


def binary_incr_decr(c, ctx):
    r = ctx.report
    key = ctx.key("b-num")
    c.store(OP_SET, key, b"10", 42)
    response = c.arith(OP_INCREMENT, key, 5)
    r.equal((response.status, response.counter()), (ST_OK, 15), "binary INCREMENT 10+5")
    r.check(response.cas != 0, "binary INCREMENT returned cas 0")
    r.equal(c.arith(OP_DECREMENT, key, 3).counter(), 12, "binary DECREMENT 15-3")
    got = c.get(key)
    r.equal((got.value, got.flags()), (b"12", 42), "binary GET after INCREMENT/DECREMENT")
    c.store(OP_SET, key, b"18446744073709551615")
    r.equal(c.arith(OP_INCREMENT, key, 1).counter(), 0, "binary INCREMENT wraps at 2^64")
    c.store(OP_SET, key, b"18446744073709551614")
    r.equal(c.arith(OP_INCREMENT, key, 3).counter(), 1, "binary INCREMENT wraps modulo 2^64")
    c.store(OP_SET, key, b"3")
    r.equal(c.arith(OP_DECREMENT, key, 5).counter(), 0, "binary DECREMENT underflow clamps to 0")
    missing = ctx.key("b-num-missing")
    r.equal(c.arith(OP_INCREMENT, missing, 1).status, ST_KEY_ENOENT,
            "binary INCREMENT of absent key with exptime 0xffffffff")
    response = c.arith(OP_INCREMENT, missing, 1, initial=1000, exptime=0)
    r.equal((response.status, response.counter()), (ST_OK, 1000), "binary INCREMENT creating with initial")
    r.equal(c.get(missing).value, b"1000", "binary value created by INCREMENT")
    r.equal(c.arith(OP_DECREMENT, missing, 1, initial=5, exptime=0).counter(), 999,
            "binary DECREMENT of created counter ignores initial")
    text_key = ctx.key("b-num-text")
    c.store(OP_SET, text_key, b"abc")
    r.equal(c.arith(OP_INCREMENT, text_key, 1).status, ST_DELTA_BADVAL, "binary INCREMENT of non-numeric")
    r.equal(c.arith(OP_DECREMENT, text_key, 1).status, ST_DELTA_BADVAL, "binary DECREMENT of non-numeric")
    r.equal(c.get(text_key).value, b"abc", "binary non-numeric value unchanged")


def binary_expiry(c, ctx):
    r = ctx.report
    touched, expiring, gat_expiring, gat_persist = (ctx.key(t) for t in ("b-touch", "b-exp", "b-gat", "b-gatp"))
    c.store(OP_SET, touched, b"touched", 1, 2)
    r.equal(c.touch(touched, 100).status, ST_OK, "binary TOUCH of present key")
    r.equal(c.touch(ctx.key("b-touch-missing"), 100).status, ST_KEY_ENOENT, "binary TOUCH of absent key")
    c.store(OP_SET, expiring, b"expiring", 2, 2)
    c.store(OP_SET, gat_expiring, b"gat-me", 3, 0)
    got = c.gat(gat_expiring, 2)
    r.equal((got.status, got.value, got.flags()), (ST_OK, b"gat-me", 3), "binary GAT reply")
    c.store(OP_SET, gat_persist, b"gat-keep", 4, 2)
    got = c.gat(gat_persist, 0)
    r.equal((got.status, got.value, got.flags()), (ST_OK, b"gat-keep", 4), "binary GAT 0 reply")
    r.equal(c.gat(ctx.key("b-gat-missing"), 10).status, ST_KEY_ENOENT, "binary GAT of absent key")
    time.sleep(3.2)
    got = c.get(touched)
    r.equal((got.status, got.value), (ST_OK, b"touched"), "binary touched key must outlive its first exptime")
    r.equal(c.get(expiring).status, ST_KEY_ENOENT, "binary key with exptime 2 still present after 3.2 s")
    r.equal(c.get(gat_expiring).status, ST_KEY_ENOENT, "binary GAT 2 did not set the expiry")
    r.equal(c.get(gat_persist).value, b"gat-keep", "binary GAT 0 did not clear the expiry")


def binary_multiget(c, ctx):
    """GETKQ x100 + NOOP: only hits answer, in order, then the NOOP; GETQ likewise."""
    r = ctx.report
    keys = [ctx.key(f"b-multi{i}") for i in range(100)]
    expected = {}
    for i, key in enumerate(keys):
        if i % 10 != 3:
            expected[key] = (i, make_value(ctx.rng, ctx.rng.randint(0, 3000)))
            c.store(OP_SET, key, expected[key][1], i)
    noop_opaque = 0xABCD0000
    c.send(b"".join(c.packet(OP_GETKQ, k.encode(), opaque=i) for i, k in enumerate(keys))
           + c.packet(OP_NOOP, opaque=noop_opaque))
    got = {}
    for _ in range(len(keys) + 1):
        response = c.read_response()
        if response.opcode == OP_NOOP:
            r.equal((response.status, response.opaque), (ST_OK, noop_opaque), "binary NOOP after GETKQ")
            break
        r.equal((response.opcode, response.status), (OP_GETKQ, ST_OK), "binary GETKQ hit response")
        r.equal(response.key, keys[response.opaque].encode(), "binary GETKQ key matches opaque")
        got[response.key.decode()] = (response.flags(), response.value)
    r.equal(list(got), list(expected), "binary GETKQ pipeline: keys answered, in order")
    r.equal(got, expected, "binary GETKQ pipeline: values and flags")
    hit, miss = keys[0], keys[3]
    c.send(c.packet(OP_GETQ, miss.encode(), opaque=1) + c.packet(OP_GETQ, hit.encode(), opaque=2)
           + c.packet(OP_NOOP, opaque=3))
    first, second = c.read_response(), c.read_response()
    r.equal((first.opcode, first.opaque, first.key, first.value), (OP_GETQ, 2, b"", expected[hit][1]),
            "binary GETQ: hit answered without key, miss silent")
    r.equal((second.opcode, second.opaque), (OP_NOOP, 3), "binary NOOP after GETQ")


def binary_stat_version_noop(c, ctx):
    r = ctx.report
    response = c.call(OP_NOOP)
    r.equal((response.status, response.value, response.extras), (ST_OK, b"", b""), "binary NOOP")
    response = c.call(OP_VERSION)
    r.equal((response.status, response.value.decode()), (ST_OK, ctx.version), "binary VERSION vs text version")
    last = None
    for attempt in range(3):
        before = c.stat()
        for i in range(5):
            c.store(OP_SET, ctx.key(f"b-stat{i}"), b"v")
        after = c.stat()
        last = int(after["curr_items"]) - int(before["curr_items"])
        if last == 5:
            break
    r.equal(last, 5, "binary STAT curr_items delta after 5 SETs")
    for name in ("pid", "uptime", "version", "curr_connections", "cmd_get"):
        r.check(name in before, f"binary STAT lacks {name}")
    r.equal(before.get("version"), ctx.version, "binary STAT version")
    settings = c.stat("settings")
    r.equal(settings.get("item_size_max"), str(ctx.item_size_max), "binary STAT settings item_size_max")


def binary_errors(c, ctx):
    r = ctx.report
    response = c.call(0xFE)
    r.equal(response.status, ST_UNKNOWN_COMMAND, "binary unknown opcode 0xfe")
    r.equal(c.call(OP_NOOP).status, ST_OK, "binary stream in sync after unknown opcode")
    if ctx.item_size_max <= 8 * MIB:
        key = ctx.key("b-big")
        c.store(OP_SET, key, b"small")
        r.equal(c.store(OP_SET, key, bytes(ctx.item_size_max + 1)).status, ST_E2BIG,
                "binary SET over item_size_max")
        r.equal(c.get(key).status, ST_KEY_ENOENT, "binary key after refused oversize SET")
        r.equal(c.call(OP_NOOP).status, ST_OK, "binary stream in sync after oversize SET")


def binary_flush(c, ctx):
    """FLUSH empties the whole server, so only with --allow-flush."""
    r = ctx.report
    if not ctx.args.allow_flush:
        return
    key = ctx.key("b-flush")
    c.store(OP_SET, key, b"x")
    r.equal(c.call(OP_FLUSH).status, ST_OK, "binary FLUSH")
    r.equal(c.get(key).status, ST_KEY_ENOENT, "binary GET after FLUSH")


def binary_quit(c, ctx):
    r = ctx.report
    response = c.call(OP_QUIT)
    r.equal(response.status, ST_OK, "binary QUIT status")
    try:
        closed = c.sock.recv(1) == b""
    except OSError:
        closed = True
    r.check(closed, "binary QUIT: server did not close the connection")


BINARY_CHECKS = [binary_stat_version_noop, binary_sizes, binary_cas, binary_add_replace,
                 binary_append_prepend, binary_delete, binary_incr_decr, binary_multiget,
                 binary_errors, binary_flush, binary_expiry, binary_quit]


def run_checks(checks, connect, ctx):
    """Run each check function; an exception fails that check and gets a fresh connection."""
    client = connect()
    for check in checks:
        try:
            check(client, ctx)
        except (OSError, ProtocolError, ValueError, AttributeError, IndexError, struct.error) as exc:
            ctx.report.fail(f"{check.__name__}: {type(exc).__name__}: {exc}")
            client.close()
            client = connect()
    client.close()


def mode_protocol(args, report):
    ctx = ProtocolContext(args, report)
    probe = ctx.text_client()
    ctx.version = probe.command("version").partition(" ")[2]
    ctx.item_size_max = int(probe.stats("settings")["item_size_max"])
    probe.close()
    run_checks(TEXT_CHECKS, ctx.text_client, ctx)
    run_checks(BINARY_CHECKS, ctx.binary_client, ctx)
    return f"version={ctx.version} item_size_max={ctx.item_size_max} prefix={ctx.prefix}"


# --------------------------------------------------------------------------- bulk mode

class BulkData:
    """Deterministic key -> (flags, value) for bulk mode: slices of one seeded random pool."""

    def __init__(self, seed, count, tag, prefix):
        rng = random.Random(f"{seed}:{tag}")
        self.pool = rng.randbytes(MIB + 2048)
        self.keys = [f"{prefix}{tag}:{i}" for i in range(count)]
        self.sizes = [rng.randint(1, 2000) for _ in range(count)]
        self.offsets = [rng.randrange(MIB) for _ in range(count)]
        self.flags = [rng.getrandbits(32) for _ in range(count)]

    def value(self, i):
        return self.pool[self.offsets[i]:self.offsets[i] + self.sizes[i]]


def bulk_text(args, report, data, deadline):
    client = TextClient(args.host, args.port, args.timeout)
    count = len(data.keys)
    started = time.monotonic()
    for batch in chunks(range(count), 100):
        if time.monotonic() > deadline:
            report.fail("bulk text: time limit reached while writing")
            return
        client.send(b"".join(TextClient.storage_request("set", data.keys[i], data.value(i), data.flags[i])
                             for i in batch))
        for i in batch:
            line = client.read_line()
            if line != b"STORED":
                report.fail(f"bulk text set {data.keys[i]}: {short(line)}")
            else:
                report.passed()
    write_seconds = time.monotonic() - started
    started = time.monotonic()
    for batch in chunks(range(count), 100):
        if time.monotonic() > deadline:
            report.fail("bulk text: time limit reached while reading")
            return
        got = client.retrieve("get", [data.keys[i] for i in batch])
        for i in batch:
            item = got.get(data.keys[i])
            if item is None:
                report.fail(f"bulk text get {data.keys[i]}: miss")
            elif item.value != data.value(i) or item.flags != data.flags[i]:
                report.fail(f"bulk text get {data.keys[i]}: flags {item.flags} vs {data.flags[i]}, "
                            f"{describe_mismatch(item.value, data.value(i))}")
            else:
                report.passed()
        if len(got) > len(batch):
            report.fail(f"bulk text get returned {len(got)} items for {len(batch)} keys")
    read_seconds = time.monotonic() - started
    client.close()
    print(f"bulk text: {count} keys, set {write_seconds:.2f}s ({format_rate(count, write_seconds)} keys/s), "
          f"get {read_seconds:.2f}s ({format_rate(count, read_seconds)} keys/s)", flush=True)


def read_until_noop(client, noop_opaque, report, what, limit):
    """Collect responses up to the NOOP with noop_opaque (at most `limit` others)."""
    responses = []
    for _ in range(limit + 1):
        response = client.read_response()
        if response.opcode == OP_NOOP and response.opaque == noop_opaque:
            return responses
        responses.append(response)
    report.fail(f"{what}: more than {limit} responses before the NOOP")
    raise ProtocolError("pipeline out of sync")


def bulk_binary(args, report, data, deadline):
    client = BinaryClient(args.host, args.port, args.timeout)
    count = len(data.keys)
    started = time.monotonic()
    for batch in chunks(range(count), 100):
        if time.monotonic() > deadline:
            report.fail("bulk binary: time limit reached while writing")
            return
        noop = client.new_opaque()
        client.send(b"".join(client.packet(OP_SETQ, data.keys[i].encode(), data.value(i),
                                           struct.pack(">II", data.flags[i], 0), opaque=i) for i in batch)
                    + client.packet(OP_NOOP, opaque=noop))
        for response in read_until_noop(client, noop, report, "bulk binary SETQ", len(batch)):
            report.fail(f"bulk binary SETQ opaque {response.opaque}: opcode 0x{response.opcode:02x} "
                        f"status 0x{response.status:02x}")
        report.passed(len(batch))
    write_seconds = time.monotonic() - started
    started = time.monotonic()
    for batch in chunks(range(count), 100):
        if time.monotonic() > deadline:
            report.fail("bulk binary: time limit reached while reading")
            return
        noop = client.new_opaque()
        client.send(b"".join(client.packet(OP_GETKQ, data.keys[i].encode(), opaque=i) for i in batch)
                    + client.packet(OP_NOOP, opaque=noop))
        answered = set()
        for response in read_until_noop(client, noop, report, "bulk binary GETKQ", len(batch)):
            i = response.opaque
            if (response.opcode, response.status) != (OP_GETKQ, ST_OK) or i >= count:
                report.fail(f"bulk binary GETKQ opaque {i}: opcode 0x{response.opcode:02x} "
                            f"status 0x{response.status:02x}")
            elif response.key != data.keys[i].encode() or response.value != data.value(i) \
                    or response.flags() != data.flags[i]:
                report.fail(f"bulk binary GETKQ {data.keys[i]}: key {short(response.key)}, "
                            f"flags {response.flags()} vs {data.flags[i]}, "
                            f"{describe_mismatch(response.value, data.value(i))}")
            else:
                answered.add(i)
                report.passed()
        for i in batch:
            if i not in answered:
                report.fail(f"bulk binary GETKQ {data.keys[i]}: miss")
    read_seconds = time.monotonic() - started
    client.close()
    print(f"bulk binary: {count} keys, SETQ {write_seconds:.2f}s ({format_rate(count, write_seconds)} keys/s), "
          f"GETKQ {read_seconds:.2f}s ({format_rate(count, read_seconds)} keys/s)", flush=True)


def mode_bulk(args, report):
    deadline = time.monotonic() + args.time_limit
    started = time.monotonic()
    text_data = BulkData(args.seed, args.keys, "bulk-t", args.prefix)
    bulk_text(args, report, text_data, deadline)
    binary_data = BulkData(args.seed, max(1, args.keys // 10), "bulk-b", args.prefix)
    bulk_binary(args, report, binary_data, deadline)
    total = len(text_data.keys) + len(binary_data.keys)
    seconds = time.monotonic() - started
    return f"keys={total} rate={format_rate(2 * total, seconds)} ops/s prefix={args.prefix}"


# --------------------------------------------------------------------------- load mode

KEYS_PER_CONNECTION = 24
COUNTERS_PER_CONNECTION = 4
SHARED_KEYS = 64
PIPELINE_DEPTH = 4


class LoadWorkload:
    """Shared keys written by the setup phase and the value pool every connection slices."""

    def __init__(self, args):
        rng = random.Random(f"{args.seed}:load-setup")
        self.pool = rng.randbytes(300 * 1024)
        self.shared = {}
        for i in range(SHARED_KEYS):
            size = 200 * 1024 if i % 16 == 0 else rng.randint(0, 16 * 1024)
            self.shared[f"{args.prefix}shared:{i}"] = (rng.getrandbits(32), make_value(rng, size))
        self.shared_keys = list(self.shared)

    def random_value(self, rng):
        draw = rng.random()
        if draw < 0.01:
            size = rng.randint(16 * 1024, 256 * 1024)
        elif draw < 0.3:
            size = rng.randint(1024, 16 * 1024)
        else:
            size = rng.randint(0, 1024)
        offset = rng.randrange(len(self.pool) - size + 1)
        return self.pool[offset:offset + size]


class LoadConnection:
    """One non-blocking connection, its own keys, its model and its in-flight expectations."""

    def __init__(self, index, sock, prefix, seed):
        self.index = index
        self.sock = sock
        self.rng = random.Random(f"{seed}:conn:{index}")
        self.counter_keys = [f"{prefix}L{index}:c{i}" for i in range(COUNTERS_PER_CONNECTION)]
        self.data_keys = [f"{prefix}L{index}:d{i}" for i in range(KEYS_PER_CONNECTION - COUNTERS_PER_CONNECTION)]
        self.all_keys = self.data_keys + self.counter_keys
        self.model = {}  # key -> (flags, value); absent = must miss
        self.outbuf = bytearray()
        self.inbuf = bytearray()
        self.pending = collections.deque()  # (op, key, expected)
        self.completed = 0
        self.last_activity = time.monotonic()
        self.dead = False
        self.want_write = False


def issue_request(conn, workload):
    """Append one random request to conn.outbuf and its expected reply to conn.pending."""
    rng = conn.rng
    draw = rng.random()
    if draw < 0.30:
        key = rng.choice(conn.all_keys)
        conn.outbuf += f"get {key}\r\n".encode()
        conn.pending.append(("get", key, conn.model.get(key)))
    elif draw < 0.45:
        key = rng.choice(workload.shared_keys)
        conn.outbuf += f"get {key}\r\n".encode()
        conn.pending.append(("get", key, workload.shared[key]))
    elif draw < 0.75:
        key = rng.choice(conn.all_keys)
        if key in conn.counter_keys:
            value = str(rng.randrange(10 ** rng.randint(1, 12))).encode()
        else:
            value = workload.random_value(rng)
        flags = rng.getrandbits(32)
        conn.outbuf += TextClient.storage_request("set", key, value, flags)
        conn.model[key] = (flags, value)
        conn.pending.append(("set", key, None))
    elif draw < 0.85:
        key = rng.choice(conn.all_keys)
        conn.outbuf += f"delete {key}\r\n".encode()
        conn.pending.append(("delete", key, conn.model.pop(key, None) is not None))
    else:
        key = rng.choice(conn.counter_keys)
        delta = rng.randrange(1, 1000)
        conn.outbuf += f"incr {key} {delta}\r\n".encode()
        current = conn.model.get(key)
        if current is None:
            conn.pending.append(("incr", key, None))
        else:
            new_value = (int(current[1]) + delta) % U64
            conn.model[key] = (current[0], str(new_value).encode())
            conn.pending.append(("incr", key, new_value))


class LoadError(Exception):
    pass


def parse_reply(conn, buf, start):
    """Parse the reply to conn.pending[0] from buf[start:]; return its end or -1 if incomplete."""
    op, key, expected = conn.pending[0]
    eol = buf.find(b"\r\n", start)
    if eol < 0:
        if len(buf) - start > MAX_LINE:
            raise LoadError(f"{op} {key}: reply line too long")
        return -1
    line = bytes(buf[start:eol])
    if op == "get":
        if line == b"END":
            if expected is not None:
                raise LoadError(f"get {key}: miss, expected {len(expected[1])} B")
            return eol + 2
        fields = line.split(b" ")
        if len(fields) != 4 or fields[0] != b"VALUE" or fields[1] != key.encode():
            raise LoadError(f"get {key}: unexpected reply {short(line)}")
        size = int(fields[3])
        data_start = eol + 2
        end = data_start + size + 7
        if len(buf) < end:
            return -1
        if buf[data_start + size:end] != b"\r\nEND\r\n":
            raise LoadError(f"get {key}: value not terminated by CRLF END")
        if expected is None:
            raise LoadError(f"get {key}: hit of {size} B, expected a miss")
        value = bytes(buf[data_start:data_start + size])
        if (int(fields[2]), value) != expected:
            raise LoadError(f"get {key}: flags {int(fields[2])} vs {expected[0]}, "
                            f"{describe_mismatch(value, expected[1])}")
        return end
    if op == "set":
        wanted = b"STORED"
    elif op == "delete":
        wanted = b"DELETED" if expected else b"NOT_FOUND"
    else:
        wanted = b"NOT_FOUND" if expected is None else str(expected).encode()
    if line != wanted:
        raise LoadError(f"{op} {key}: got {short(line)}, expected {short(wanted)}")
    return eol + 2


def consume_replies(conn):
    """Check every complete reply in conn.inbuf against its expectation."""
    buf = conn.inbuf
    position = 0
    completed = 0
    while conn.pending:
        end = parse_reply(conn, buf, position)
        if end < 0:
            break
        conn.pending.popleft()
        position = end
        completed += 1
    if position:
        del buf[:position]
    if conn.pending == collections.deque() and buf:
        raise LoadError(f"{len(buf)} unexpected bytes from the server: {short(bytes(buf[:40]))}")
    conn.completed += completed
    return completed


class LoadWorker:
    """Drives a share of the connections with one selector until the deadline or budget."""

    def __init__(self, conns, workload, args, report, max_requests):
        self.conns = conns
        self.workload = workload
        self.args = args
        self.report = report
        self.max_requests = max_requests
        self.issued = 0
        self.completed = 0
        self.errors = 0
        self.selector = selectors.DefaultSelector()

    def kill(self, conn, message):
        self.errors += 1
        self.report.fail(f"load conn {conn.index}: {message}")
        conn.dead = True
        conn.pending.clear()
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def update_interest(self, conn):
        want_write = bool(conn.outbuf)
        if want_write != conn.want_write:
            conn.want_write = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self.selector.modify(conn.sock, events, conn)

    def flush(self, conn):
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except BlockingIOError:
                break
            del conn.outbuf[:sent]
        self.update_interest(conn)

    def refill(self, conn, issuing):
        if not issuing:
            return
        if not conn.pending:
            conn.last_activity = time.monotonic()
        while len(conn.pending) < PIPELINE_DEPTH and self.issued < self.max_requests:
            issue_request(conn, self.workload)
            self.issued += 1
        self.flush(conn)

    def on_readable(self, conn):
        try:
            chunk = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            raise ConnectionError("server closed the connection")
        conn.inbuf += chunk
        done = consume_replies(conn)
        if done:
            self.completed += done
            conn.last_activity = time.monotonic()

    def run(self, stop_at):
        for conn in self.conns:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        for conn in self.conns:
            self.refill(conn, True)
        drain_deadline = stop_at + self.args.timeout
        last_timeout_scan = time.monotonic()
        while True:
            now = time.monotonic()
            issuing = now < stop_at and self.issued < self.max_requests
            live = [c for c in self.conns if not c.dead]
            if not issuing and not any(c.pending for c in live):
                break
            if now > drain_deadline:
                for conn in live:
                    if conn.pending:
                        self.kill(conn, f"{len(conn.pending)} replies still missing after the run")
                break
            for key, events in self.selector.select(timeout=0.2):
                conn = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        self.flush(conn)
                    if events & selectors.EVENT_READ:
                        self.on_readable(conn)
                    if not conn.dead:
                        self.refill(conn, issuing)
                except (LoadError, OSError, ValueError) as exc:
                    self.kill(conn, f"{type(exc).__name__}: {exc}")
            if now - last_timeout_scan > 0.5:
                last_timeout_scan = now
                for conn in live:
                    if not conn.dead and conn.pending and now - conn.last_activity > self.args.timeout:
                        self.kill(conn, f"timeout: no reply for {self.args.timeout}s "
                                        f"({len(conn.pending)} outstanding, next {conn.pending[0][0]})")
        self.selector.close()


def verify_connection_keys(conn, args, report):
    """Final check: every key the connection owns holds exactly what its model says."""
    conn.sock.setblocking(True)
    client = TextClient(args.host, args.port, args.timeout, sock=conn.sock, leftover=bytes(conn.inbuf))
    got = client.retrieve("get", conn.all_keys)
    errors = 0
    for key in conn.all_keys:
        expected = conn.model.get(key)
        item = got.get(key)
        actual = None if item is None else (item.flags, item.value)
        if actual != expected:
            errors += 1
            what = "miss" if actual is None else f"{len(actual[1])} B flags {actual[0]}"
            wanted = "a miss" if expected is None else f"{len(expected[1])} B flags {expected[0]}"
            report.fail(f"load final check conn {conn.index} {key}: {what}, expected {wanted}")
        else:
            report.passed()
    return errors


def open_load_connections(args):
    conns = []
    for index in range(args.conns):
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conns.append(LoadConnection(index, sock, args.prefix, args.seed))
    return conns


def write_shared_keys(args, workload, report):
    client = TextClient(args.host, args.port, args.timeout)
    client.send(b"".join(TextClient.storage_request("set", key, value, flags)
                         for key, (flags, value) in workload.shared.items()))
    for key in workload.shared_keys:
        report.equal(client.read_line(), b"STORED", f"load setup set {key}")
    return client


def mode_load(args, report):
    workload = LoadWorkload(args)
    setup_client = write_shared_keys(args, workload, report)
    conns = open_load_connections(args)
    threads = max(1, min(args.threads, args.conns))
    workers = [LoadWorker(conns[i::threads], workload, args, report, args.max_requests // threads
                          + (1 if i < args.max_requests % threads else 0)) for i in range(threads)]
    started = time.monotonic()
    stop_at = started + min(args.seconds, args.time_limit)
    runners = [threading.Thread(target=w.run, args=(stop_at,), name=f"load-{i}") for i, w in enumerate(workers)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(args.seconds + 4 * args.timeout + 60)
        if runner.is_alive():
            report.fail(f"load worker {runner.name} did not finish")
            return "worker hung"
    seconds = time.monotonic() - started
    completed = sum(w.completed for w in workers)
    errors = sum(w.errors for w in workers)
    report.passed(completed)
    for conn in conns:
        if conn.completed == 0 and not conn.dead:
            errors += 1
            report.fail(f"load conn {conn.index}: made no progress")
    verify_errors = 0
    for conn in conns:
        if not conn.dead:
            try:
                verify_errors += verify_connection_keys(conn, args, report)
            except (OSError, ProtocolError, ValueError) as exc:
                verify_errors += 1
                report.fail(f"load final check conn {conn.index}: {type(exc).__name__}: {exc}")
        conn.sock.close()
    try:
        shared = setup_client.retrieve("get", workload.shared_keys)
        report.equal({k: (v.flags, v.value) for k, v in shared.items()}, workload.shared, "load shared keys at end")
    except (OSError, ProtocolError, ValueError) as exc:
        report.fail(f"load final check of shared keys: {type(exc).__name__}: {exc}")
    setup_client.close()
    print(f"load: conns={args.conns} threads={threads} seconds={seconds:.1f} requests={completed} "
          f"rate={format_rate(completed, seconds)} req/s errors={errors} final_check_errors={verify_errors}",
          flush=True)
    return (f"requests={completed} rate={format_rate(completed, seconds)} req/s errors={errors + verify_errors} "
            f"conns={args.conns} prefix={args.prefix}")


# --------------------------------------------------------------------------- stats-check mode

def mode_stats_check(args, report):
    client = TextClient(args.host, args.port, args.timeout)
    stats = client.stats()
    client.close()
    for name in ("curr_connections", "total_connections", "curr_items"):
        if report.check(name in stats, f"stats lacks {name}"):
            print(f"{name}={stats[name]}")
    return ""


# --------------------------------------------------------------------------- main

MODES = {"protocol": mode_protocol, "bulk": mode_bulk, "load": mode_load, "stats-check": mode_stats_check}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="memcached behaviour checks for libix CI")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=10.0, help="socket timeout per operation (s)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--prefix", default=None, help="key prefix (default: random per run)")
    parser.add_argument("--time-limit", type=float, default=900.0, help="hard bound on the mode (s)")
    modes = parser.add_subparsers(dest="mode", required=True)
    protocol = modes.add_parser("protocol", help="exact text and binary protocol behaviour")
    protocol.add_argument("--allow-flush", action="store_true", help="also check binary FLUSH (empties the server)")
    bulk = modes.add_parser("bulk", help="pipelined writes and byte-exact read-back")
    bulk.add_argument("--keys", type=int, default=100000)
    load = modes.add_parser("load", help="many concurrent connections checked against a model")
    load.add_argument("--conns", type=int, default=100)
    load.add_argument("--seconds", type=float, default=10.0)
    load.add_argument("--threads", type=int, default=1)
    load.add_argument("--max-requests", type=int, default=5000000)
    modes.add_parser("stats-check", help="print connection and item counters")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if args.prefix is None:
        args.prefix = random_prefix()
    if any(ch.isspace() or ord(ch) < 33 for ch in args.prefix) or len(args.prefix) > 150:
        parser.error("--prefix must be printable, without spaces, at most 150 characters")
    if args.mode == "bulk" and args.keys < 1:
        parser.error("--keys must be >= 1")
    if args.mode == "load" and (args.conns < 1 or args.seconds <= 0 or args.threads < 1 or args.max_requests < 1):
        parser.error("--conns, --seconds, --threads and --max-requests must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    report = Report()
    started = time.monotonic()
    try:
        extra = MODES[args.mode](args, report)
    except (OSError, ProtocolError, ValueError, KeyError) as exc:
        report.fail(f"{args.mode}: cannot continue: {type(exc).__name__}: {exc}", always_print=True)
        print(summary_line(args.mode, report, started, args.seed), flush=True)
        return 2
    except Exception as exc:  # a client bug must still end with the summary line
        report.fail(f"{args.mode}: internal error: {type(exc).__name__}: {exc}", always_print=True)
        print(summary_line(args.mode, report, started, args.seed), flush=True)
        return 3
    print(summary_line(args.mode, report, started, args.seed, extra), flush=True)
    return 0 if report.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
