#!/usr/bin/env bash
# ixbench against an independent tool (sockperf, Debian's sockperf 3.7) on the same veth and cores: TCP ping-pong,
# 64-byte messages, one connection, both ends sleeping (blocking poll), one-way latency = RTT/2 in both tools.
#
#   sudo scripts/crosscheck-sockperf.sh     (env: SECS=3 ROUNDS=3 SIZE=64)
# About 40 s per round. Prints, per round, three lines measured back to back:
#   sockperf  -> sockperf server, Linux      (sockperf's own client and server: the reference)
#   ixbench   -> kernel_tcp_echo, Linux      (ixbench pingpong; a plain echo server, as sockperf's answers only
#                                             sockperf messages: same kernel path, same poll-and-echo loop)
#   sockperf  -> sockperf server on libix    (the same unmodified sockperf binary under ixrun: LD_PRELOAD, the
#                                             POSIX socket layer over AF_XDP; an independent tool's view of libix)
# The first two agreeing says ixbench measures what sockperf measures. Topology: scripts/testhost.sh (client
# namespace 198.18.0.2 on CPU 0; server 198.18.0.1 on the veth end in the root namespace on CPU 1). Everything
# started here is killed and the namespace removed on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, AF_XDP)" >&2; exit 1; }
SECS="${SECS:-3}"
ROUNDS="${ROUNDS:-3}"
SIZE="${SIZE:-64}"
PORT=9103
command -v sockperf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q sockperf >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p libix -p ix-tools
work="$(mktemp -d /tmp/ixsockperf.XXXXXX)"
gcc -O2 -Wall -pthread -o "$work/kernel_tcp_echo" c-tests/kernel_tcp_echo.c
echo "T:198.18.0.1:$PORT" >"$work/feed.txt"

TH_ID="sp$$"
source scripts/testhost.sh
testhost_create 1
SRV=""
stop_srv() {
    [ -n "$SRV" ] || return 0
    kill -TERM "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
    SRV=""
}
start_srv() {   # start_srv LOG CMD...: on CPU 1, remembered for cleanup
    local log="$1"
    shift
    taskset -c 1 "$@" >"$log" 2>&1 &
    SRV=$!
    TH_PIDS+=("$SRV")
    sleep 1.5
    kill -0 "$SRV" 2>/dev/null || { cat "$log" >&2; echo "server did not start" >&2; exit 1; }
}
in_client() { timeout $((SECS + 15)) ip netns exec "$TH_NS" taskset -c 0 "$@"; }

# sockperf's summary: avg, p50, p99 (us)
sockperf_line() {
    local out="$1"
    local avg p50 p99
    avg=$(sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p' "$out" | head -1)
    p50=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$out" | head -1)
    p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$out" | head -1)
    [ -n "$avg" ] || { cat "$out" >&2; echo "no sockperf result" >&2; exit 1; }
    printf '%8.2f %8.2f %8.2f' "$avg" "$p50" "$p99"
}
ixbench_line() {
    local out="$1"
    awk -v s="$SIZE" '$1 == s { printf "%8.2f %8.2f %8.2f", $3, $4, $5; found = 1 } END { exit !found }' "$out" ||
        { cat "$out" >&2; echo "no ixbench result" >&2; exit 1; }
}

printf '%-5s %-40s %8s %8s %8s   (one-way us, %d-byte TCP ping-pong, %ss each)\n' round measurement avg p50 p99 \
    "$SIZE" "$SECS"
for ((r = 1; r <= ROUNDS; r++)); do
    ip addr replace 198.18.0.1/24 dev "$TH_LOCAL"
    start_srv "$work/sp-linux.log" sockperf server -f "$work/feed.txt" -F poll
    in_client sockperf ping-pong --tcp -i 198.18.0.1 -p "$PORT" -m "$SIZE" -t "$SECS" >"$work/c1.txt" 2>&1 || true
    printf '%-5s %-40s %s\n' "$r" "sockperf -> sockperf server, Linux" "$(sockperf_line "$work/c1.txt")"
    stop_srv

    start_srv "$work/kte.log" "$work/kernel_tcp_echo" --port "$PORT"
    in_client ./target/release/ixbench pingpong --server "198.18.0.1:$PORT" --sizes "$SIZE" \
        --duration-per-size "$SECS" >"$work/c2.txt" 2>&1 || true
    printf '%-5s %-40s %s\n' "$r" "ixbench  -> kernel_tcp_echo, Linux" "$(ixbench_line "$work/c2.txt")"
    stop_srv

    ip addr flush dev "$TH_LOCAL"
    ip -n "$TH_NS" neigh flush dev "$TH_PEER"
    start_srv "$work/sp-libix.log" ./target/release/ixrun --iface "$TH_LOCAL" --ip 198.18.0.1/24 -- \
        sockperf server -f "$work/feed.txt" -F poll
    in_client sockperf ping-pong --tcp -i 198.18.0.1 -p "$PORT" -m "$SIZE" -t "$SECS" >"$work/c3.txt" 2>&1 || true
    printf '%-5s %-40s %s\n' "$r" "sockperf -> sockperf server on libix" "$(sockperf_line "$work/c3.txt")"
    stop_srv
done
echo "logs: $work"
