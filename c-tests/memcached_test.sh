#!/usr/bin/env bash
# memcached on libix, checked with memcached's own behaviour as the oracle (c-tests/mc_client.py):
#   MODE stock: Debian's memcached binary, unmodified, under ixrun (LD_PRELOAD, dataplane on AF_XDP)
#   MODE built: memcached built from Debian's source against libix's headers and libix.so (memcached-patch/build.sh)
#   MODE patched: the same with memcached-patch/*.patch (each worker accepts and serves its own connections)
# A Linux client in the test host's namespace reaches it through the dataplane: text and binary protocol
# (every command, values 0 B .. 1 MiB), 100,000 keys written and read back, stats; while a kernel client on
# 127.0.0.1 uses the same instance; a get through memcached's UDP protocol (-U, INADDR_ANY) on both worlds; then 100 connections hammering for a bounded time with zero errors. Afterwards
# no connection, fd or mbuf is left over, and SIGTERM ends memcached cleanly.
# Usage: memcached_test.sh MODE THREADS BUILD_DIR        (root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
mode="$1" threads="$2" build="$(cd "$3" && pwd)"
bin="${IX_BIN_DIR:-$repo/target/release}"
client="$here/mc_client.py"
load_seconds="${MC_LOAD_SECONDS:-10}"

TH_ID="mc$$"
source "$repo/scripts/testhost.sh"
work="$(mktemp -d)"
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT

fail() {
    echo "memcached_test ($mode, -t $threads): FAILED: $*" >&2
    echo "--- memcached/libix log (tail)" >&2
    tail -30 "$work/memcached.log" >&2 || true
    "$bin/ixctl" --dir "$work" stats 2>&1 | grep -E "tcp_|pool_|mbufs_|drop_" >&2 || true
    # A stall is diagnosed from where memcached's threads wait.
    if [ -n "${MC:-}" ] && kill -0 "$MC" 2>/dev/null && command -v gdb >/dev/null; then
        echo "--- memcached threads" >&2
        timeout 60 gdb -p "$MC" -batch -ex "thread apply all bt 12" 2>/dev/null | grep -E "^Thread|^#" >&2 || true
    fi
    exit 1
}

case "$mode" in
    stock) memcached=(/usr/bin/memcached) ;;
    built | patched)
        variant=--plain
        [ "$mode" = patched ] && variant=--patched
        memcached=("$(bash "$repo/memcached-patch/build.sh" "$variant" "$build/memcached" "$bin/libix.so" | tail -1)")
        [ -x "${memcached[0]}" ] || fail "memcached was not built"
        ;;
    *) echo "usage: memcached_test.sh stock|built|patched THREADS BUILD_DIR" >&2; exit 2 ;;
esac

# A kernel port nobody uses (the INADDR_ANY listener binds it on the kernel side too; tests run in parallel).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# UDP too (memcached's UDP protocol: an 8-byte frame header per datagram), on INADDR_ANY: dataplane and kernel.
udp_port="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
args=(-u root -t "$threads" -p "$port" -U "$udp_port" -m 1024 -I 2m -c 4096)
if [ "$mode" = stock ]; then
    "$bin/ixrun" --iface "$TH_LOCAL" --ip "$TH_DP_IP/24" --stats-dir "$work" --log info -- \
        "${memcached[@]}" "${args[@]}" >"$work/memcached.log" 2>&1 &
else
    # Linked against libix.so (its rpath finds it): no preload, the same IX_* configuration.
    IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG=info \
        "${memcached[@]}" "${args[@]}" >"$work/memcached.log" 2>&1 &
fi
MC=$!
TH_PIDS+=("$MC")
for ((i = 0; i < 100; i++)); do
    in_ns python3 -c "import socket; socket.create_connection(('$TH_DP_IP', $port), timeout=1).close()" \
        2>/dev/null && break
    kill -0 "$MC" 2>/dev/null || fail "memcached exited at start"
    sleep 0.1
done
grep -q "dataplane sockets on $TH_LOCAL" "$work/memcached.log" || fail "memcached is not on the dataplane"
echo "memcached ($mode, -t $threads) on the dataplane $TH_DP_IP:$port and the kernel 127.0.0.1:$port"

counters() {
    "$bin/ixctl" --dir "$work" stats --json | python3 -c '
import json, sys
pages = json.load(sys.stdin)
for name in sys.argv[1:]:
    print(sum(q.get(name, 0) for p in pages for q in p["queues"]), end=" ")
' "$@"
}
read -r pool_idle <<<"$(counters pool_available)"

dp() { in_ns python3 "$client" --host "$TH_DP_IP" --port "$port" "$@"; }
kern() { python3 "$client" --host 127.0.0.1 --port "$port" "$@"; }
# memcached counts its listening sockets (0.0.0.0 and ::) in curr_connections too: the idle value is the baseline.
curr_idle="$(kern stats-check | sed -n 's/^curr_connections=//p')"

# 1. Every command on both protocols, values 0 B .. 1 MiB (alone: it asserts server-wide stats deltas).
dp protocol || fail "protocol over the dataplane"
# The fd baseline, now that every worker has served a connection (each event loop opens its readiness sink's
# eventfd on its first dataplane socket).
fds_idle="$(ls /proc/$MC/fd | wc -l)"
# 2. 100,000 keys over the dataplane while a kernel client works the same instance.
kern --prefix "kern$$" bulk --keys 20000 >"$work/kernel-bulk.log" 2>&1 &
kernel_bulk=$!
dp --prefix "dp$$" bulk --keys 100000 || fail "100,000 keys over the dataplane"
wait "$kernel_bulk" || { cat "$work/kernel-bulk.log"; fail "the kernel client next to it"; }
tail -1 "$work/kernel-bulk.log"
# One instance behind both: what the dataplane client wrote, the kernel client reads.
in_ns python3 - "$TH_DP_IP" "$port" <<'PY' || fail "dataplane write, kernel read"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"set crossworld 7 0 9\r\ndataplane\r\n")
assert s.recv(100) == b"STORED\r\n"
PY
python3 - "$port" <<'PY' || fail "dataplane write, kernel read"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"get crossworld\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    data += s.recv(1000)
assert data == b"VALUE crossworld 7 9\r\ndataplane\r\nEND\r\n", data
print("dataplane write -> kernel read: ok")
PY
# UDP: the same key read through memcached's UDP protocol, over the dataplane and over the kernel.
udp_get='
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for attempt in range(5):
    rid = 4242 + attempt
    s.sendto(struct.pack("!HHHH", rid, 0, 1, 0) + b"get crossworld\r\n", (host, port))
    try:
        data, _ = s.recvfrom(65536)
    except socket.timeout:
        continue
    req, seq, total, _ = struct.unpack("!HHHH", data[:8])
    assert (req, seq, total) == (rid, 0, 1), (req, seq, total)
    assert data[8:] == b"VALUE crossworld 7 9\r\ndataplane\r\nEND\r\n", data
    print(f"udp get via {host}: ok")
    sys.exit(0)
sys.exit(f"udp get via {host}: no answer")
'
in_ns python3 -c "$udp_get" "$TH_DP_IP" "$udp_port" || fail "UDP get over the dataplane"
python3 -c "$udp_get" 127.0.0.1 "$udp_port" || fail "UDP get over the kernel"
# 3. 100 connections hammering, bounded.
dp load --conns 100 --seconds "$load_seconds" || fail "100 connections under load"

# 4. Nothing left over: connections (memcached's and the dataplane's), fds, mbufs.
for ((i = 0; i < 60; i++)); do   # ~20 s: a lost FIN can wait for its retransmission timeout
    read -r conns pool <<<"$(counters tcp_connections pool_available)"
    fds="$(ls /proc/$MC/fd | wc -l)"
    curr="$(dp stats-check | sed -n 's/^curr_connections=//p')"
    [ "$conns" -le 1 ] && [ "$fds" -le "$fds_idle" ] && [ "$curr" = "$curr_idle" ] \
        && [ $((pool - pool_idle)) -le 31 ] && [ $((pool_idle - pool)) -le 31 ] && break
    sleep 0.2
done
echo "after the clients: dataplane connections $conns, memcached curr_connections $curr (idle $curr_idle)," \
     "fds $fds (idle $fds_idle), free mbufs $pool (idle $pool_idle)"
[ "$fds" -le "$fds_idle" ] || fail "memcached holds $fds fds, $fds_idle when idle: a leak"
[ "$curr" = "$curr_idle" ] || fail "memcached still counts $curr connections ($curr_idle when idle)"
[ $((pool_idle - pool)) -le 31 ] || fail "$((pool_idle - pool)) mbufs missing from the pool: a leak"

# 5. SIGTERM: memcached shuts down cleanly.
kill -TERM "$MC"
rc=0
wait "$MC" || rc=$?
[ "$rc" = 0 ] || fail "memcached exited with $rc on SIGTERM"
grep -qi "panic\|libix: internal" "$work/memcached.log" && fail "libix logged an internal error"
echo "memcached_test ($mode, -t $threads): ok"
