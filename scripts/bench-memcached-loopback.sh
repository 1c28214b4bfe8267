#!/usr/bin/env bash
# Cross-check of `ixbench memcached` against an independent load generator, Debian's memcaslap (libmemcached-tools),
# on the Linux baseline: both drive the same loopback memcached, closed loop, one client thread, the same number of
# connections each with one request outstanding, the same duration, alternately, ROUNDS times. For each run it
# prints what the tool reports and what the server counted (cmd_get + cmd_set before and after, from `stats`).
#
#   scripts/bench-memcached-loopback.sh   (env: ROUNDS=3 DURATION=5 CONNS=32 KEYS=100000 WORKLOADS="usr etc"
#                                           MC_THREADS=4 PORT=<free>)
# About ROUNDS x 2 x (2 DURATION + 2) seconds. No root, no namespace: 127.0.0.1 only.
#
# Workloads: memcaslap is given a config (-F) that mimics each ixbench workload:
#   usr  19 B keys, 2 B values, 99% GET: exact.
#   etc  75% GET; keys and values in 20 equal-probability bins of the GEV / GPareto quantiles, each drawn uniformly
#        within its bin, and the 0..14 B discrete head exactly (0 B as 1 B, memcaslap's least): an approximation.
# memcaslap only GETs keys it has SET (no misses by construction); ixbench SETs all KEYS keys first (not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-32}"
KEYS="${KEYS:-100000}"
WORKLOADS="${WORKLOADS:-usr etc}"
MC_THREADS="${MC_THREADS:-4}"
for tool in memcached memcaslap python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: memcached libmemcached-tools python3)" >&2; exit 1; }
done
cargo build --release -q -p ix-tools
ixbench="$PWD/target/release/ixbench"
work="$(mktemp -d /tmp/bench-memcached.XXXXXX)"
PORT="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
memcached -u root -p "$PORT" -U 0 -l 127.0.0.1 -m 1024 -t "$MC_THREADS" >"$work/memcached.log" 2>&1 &
mc_pid=$!
trap 'kill "$mc_pid" 2>/dev/null; wait "$mc_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=1)" 2>/dev/null && break
    sleep 0.1
done

# The server's cmd_get + cmd_set.
server_ops() {
    python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"stats\r\n")
d = b""
while not d.endswith(b"END\r\n"):
    d += s.recv(65536)
st = dict(l.split()[1:3] for l in d.decode().splitlines() if l.startswith("STAT"))
print(int(st["cmd_get"]) + int(st["cmd_set"]))
PY
}

# memcaslap configs that mimic the ixbench workloads.
printf 'key\n19 19 1\nvalue\n2 2 1\ncmd\n0 0.01\n1 0.99\n' >"$work/usr.cfg"
python3 - "$work/etc.cfg" <<'PY'
import math, sys
gev = lambda u: 30.7984 + 8.20449 * ((-math.log(u)) ** -0.078688 - 1) / 0.078688
gpareto = lambda u: 15.0 + 214.476 * ((1 - u) ** -0.348238 - 1) / 0.348238
head = [0.00536, 0.00047, 0.17820, 0.09239, 0.00018, 0.02740, 0.00065, 0.00606, 0.00023, 0.00837, 0.00837,
        0.08989, 0.00092, 0.00326, 0.01980]
bins = 20
lines = ["key"]
for i in range(bins):
    lo = max(16, int(gev((i + 0.001) / bins)))
    lines.append(f"{lo} {max(lo, int(gev(min((i + 1) / bins, 0.999))))} {1 / bins:.4f}")
lines.append("value")
lines += [f"{max(1, size)} {max(1, size)} {p:.5f}" for size, p in enumerate(head)]
for i in range(bins):
    lo = int(gpareto(i / bins))
    lines.append(f"{lo} {max(lo, int(gpareto(min((i + 1) / bins, 0.999))))} {(1 - sum(head)) / bins:.5f}")
lines += ["cmd", "0 0.25", "1 0.75"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY

echo "== memcached -t $MC_THREADS on 127.0.0.1:$PORT; $CONNS connections, 1 client thread, closed loop," \
    "${DURATION}s per run"
for w in $WORKLOADS; do
    "$ixbench" memcached --server "127.0.0.1:$PORT" --workload "$w" --keys "$KEYS" --conns "$CONNS" \
        --duration 0.2 --warmup 0 >"$work/prefill-$w.txt"
done
printf '%-5s %-5s %-10s %12s %14s\n' round load tool "tool req/s" "server ops/s"
for r in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        a=$(server_ops)
        timeout $((DURATION + 30)) memcaslap -s "127.0.0.1:$PORT" -t "${DURATION}s" -c "$CONNS" -T 1 \
            -F "$work/$w.cfg" >"$work/memcaslap-$w-$r.txt" 2>&1
        b=$(server_ops)
        tps=$(sed -n 's/.*TPS: \([0-9]*\).*/\1/p' "$work/memcaslap-$w-$r.txt" | tail -1)
        printf '%-5s %-5s %-10s %12s %14.0f\n' "$r" "$w" memcaslap "$tps" "$(echo "($b - $a) / $DURATION" | bc -l)"
        a=$(server_ops)
        "$ixbench" memcached --server "127.0.0.1:$PORT" --workload "$w" --keys "$KEYS" --no-prefill \
            --conns "$CONNS" --threads 1 --depth 1 --duration "$DURATION" --warmup 0 \
            --json "$work/ixbench-$w-$r.json" >"$work/ixbench-$w-$r.txt" 2>&1
        b=$(server_ops)
        achieved=$(sed -n 's/.*"achieved":\([0-9.]*\).*/\1/p' "$work/ixbench-$w-$r.json")
        printf '%-5s %-5s %-10s %12.0f %14.0f\n' "$r" "$w" ixbench "$achieved" "$(echo "($b - $a) / $DURATION" | bc -l)"
    done
done
echo "== outputs in $work"
