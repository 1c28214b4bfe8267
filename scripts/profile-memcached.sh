#!/usr/bin/env bash
# Where memcached's cycles go, per request: user-space instructions (callgrind) and system calls (strace) of the
# same memcached binary (Debian's, -t 1) on Linux (real libevent, kernel TCP) and under ixrun (libix, AF_XDP on
# a veth end), for the same request stream: one connection in the test host's namespace, one request at a time,
# alternating `set` (2-byte values, USR-like) and `get` of REQUESTS keys. Counters are zeroed after a warm-up and
# read after the measured requests, so start-up is not counted. The kernel's instructions are not counted by
# callgrind (Linux's TCP runs there, ours in user space): the system-call count says what each side asks of it.
#
#   sudo scripts/profile-memcached.sh        (env: REQUESTS=20000 OUT=<dir>)
# Variants: linux; libix-sleep (IX_SPIN_US=0: each request's own work, no polling between requests); libix (the
# default spin: what polling between requests adds).
# Takes a few minutes (memcached runs ~50x slower under callgrind). Prints a table; the callgrind files and
# per-object/per-function breakdowns stay in OUT (default a new /tmp/profile-memcached.XXXXXX).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/profile-memcached.sh needs root (namespaces, AF_XDP)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
REQUESTS="${REQUESTS:-20000}"
out="${OUT:-$(mktemp -d /tmp/profile-memcached.XXXXXX)}"
mkdir -p "$out"
command -v valgrind >/dev/null && command -v strace >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind strace >/dev/null
cargo build --release -q -p ix-tools -p libix
bin="$PWD/target/release"
bash scripts/setup.sh >/dev/null
TH_ID="pm$$"
source scripts/testhost.sh
testhost_create 1
server=""
cleanup() {
    set +e
    [ -z "$server" ] || { kill -KILL "$server"; wait "$server"; } 2>/dev/null
    testhost_cleanup
}
trap cleanup EXIT
PORT=11311
# memcached sets RLIMIT_NOFILE's hard limit to -c, which valgrind refuses (it keeps fds of its own above the
# limit): under callgrind a preloaded no-op setrlimit for RLIMIT_NOFILE stands in.
cat >"$out/nofile.c" <<'C'
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
int setrlimit(__rlimit_resource_t r, const struct rlimit *l)
{
    return r == RLIMIT_NOFILE ? 0 : (int)syscall(SYS_prlimit64, 0, r, l, NULL);
}
C
gcc -O1 -shared -fPIC -o "$out/nofile.so" "$out/nofile.c"

# requests N: N requests from the test host, one at a time; fails on a wrong answer.
requests() {
    in_ns python3 - "$TH_DP_IP" "$PORT" "$1" <<'PY'
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
for i in range(n):
    key = b"k%d" % (i // 2 % 5000)
    if i % 2 == 0:
        s.sendall(b"set " + key + b" 0 0 2\r\nab\r\n")
        assert f.readline() == b"STORED\r\n"
    else:
        s.sendall(b"get " + key + b"\r\n")
        assert f.readline().startswith(b"VALUE "), "get"
        assert f.readline() == b"ab\r\n" and f.readline() == b"END\r\n"
PY
}

wait_up() {
    wait_tcp "$PORT" 60 || { echo "the server did not come up" >&2; return 1; }
}

# start VARIANT PRELOAD TOOL...: memcached on Linux or libix, under TOOL (valgrind or strace command line), with
# PRELOAD (or "") preloaded too.
start() {
    local variant="$1" preload="$2"
    shift 2
    local mc=(memcached -u root -t 1 -p "$PORT" -U 0 -m 256)
    in_ns ip neigh flush dev "$TH_PEER"
    if [ "$variant" = linux ]; then
        ip addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
        ethtool -K "$TH_LOCAL" tx off >/dev/null 2>&1 || true
        LD_PRELOAD="$preload" "$@" "${mc[@]}" >"$out/$variant-server.log" 2>&1 &
    else
        local spin=()
        [ "$variant" = libix-sleep ] && spin=(--spin-us 0)
        LD_PRELOAD="$preload" "$bin/ixrun" "${spin[@]}" --iface "$TH_LOCAL" --ip "$TH_DP_IP/24" -- "$@" "${mc[@]}" >"$out/$variant-server.log" 2>&1 &
    fi
    server=$!
    wait_up
}

stop() {
    # Under strace, memcached is strace's child: it goes first, and strace writes its summary as it exits.
    pkill -TERM -P "$server" 2>/dev/null || true
    sleep 0.5
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
    ip addr flush dev "$TH_LOCAL"
}

for v in linux libix-sleep libix; do
    echo "== $v: callgrind"
    start "$v" "$out/nofile.so" valgrind --tool=callgrind --callgrind-out-file="$out/$v.callgrind" --dump-instr=no
    requests 2000
    # The valgrind process is the server itself (ixrun execs it).
    callgrind_control -z "$server" >/dev/null
    requests "$REQUESTS"
    callgrind_control -d "$server" >/dev/null
    stop
    echo "== $v: strace"
    start "$v" "" strace -f -c -o "$out/$v.strace"
    requests "$REQUESTS"
    stop
done

python3 - "$out" "$REQUESTS" <<'PY'
import glob, re, subprocess, sys, collections
out, n = sys.argv[1], int(sys.argv[2])
res = {}
variants = ("linux", "libix-sleep", "libix")
for v in variants:
    # The dump made after the measured requests (callgrind_control -d writes FILE.N; the exit writes FILE).
    dumps = sorted(glob.glob(f"{out}/{v}.callgrind.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    ann = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", dumps[-1]],
                         capture_output=True, text=True).stdout
    open(f"{out}/{v}.annotate.txt", "w").write(ann)
    # Self cost by ELF object, read from the callgrind file itself: a cost line right after `calls=` is the
    # inclusive cost of that call (skipped), any other is the current function's own.
    total, by_obj, names, ob, after_call = 0, collections.Counter(), {}, "?", False
    for line in open(dumps[-1]):
        if line.startswith(("ob=", "cob=")):
            # Compressed names: "(id) path" defines id (in ob= or cob= lines), "(id)" refers to it.
            m = re.match(r"c?ob=(?:\((\d+)\))?\s*(.*)", line.rstrip("\n"))
            if m.group(2):
                names[m.group(1)] = m.group(2).rsplit("/", 1)[-1]
            if line.startswith("ob="):
                ob = names.get(m.group(1), m.group(2).rsplit("/", 1)[-1])
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            parts = line.split()
            if len(parts) >= 2:
                by_obj[ob] += int(parts[-1])
        elif line.startswith("summary:") or line.startswith("totals:"):
            total = int(line.split()[1])
    calls = 0
    for line in open(f"{out}/{v}.strace"):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            calls += int(m.group(1))
    res[v] = (total, by_obj, calls)
print(f"\nper request ({n} requests, one at a time)" + "".join(f"{v:>14}" for v in variants))
print(f"{'user-space instructions':41}" + "".join(f"{res[v][0] / n:>14,.0f}" for v in variants))
print(f"{'system calls':41}" + "".join(f"{res[v][2] / n:>14.2f}" for v in variants))
for v in variants:
    print(f"\n{v}: instructions per request by object")
    for obj, ir in res[v][1].most_common(8):
        print(f"  {obj:40} {ir / n:>10,.0f}")
print(f"\nfiles: {out} (*.annotate.txt: per function; *.strace: system calls)")
PY
