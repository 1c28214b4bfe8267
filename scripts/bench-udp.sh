#!/usr/bin/env bash
# UDP echo, Linux vs libix, side by side in one run (DESIGN.md §7): same veth, same cores, same client.
#
#   sudo scripts/bench-udp.sh            (env: DURATION=8 WARMUP=1 SIZE=64 HIGH_CONN=4 HIGH_WINDOW=32)
#
# Topology: two namespaces joined by one veth pair (scripts/testhost.sh makes the client side):
#   client ns  <TH_NS>   veth <TH_PEER>  198.18.0.2/24   ixbench, pinned to CPU 0, busy-polling
#   server ns  <SRV_NS>  veth <TH_LOCAL> 198.18.0.1/24   the server under test, pinned to CPU 1:
#     linux-block  kernel_udp_echo (recvmmsg/sendmmsg, blocking)
#     linux-busy   kernel_udp_echo --busy --busy-poll 50 (spins on non-blocking recvmmsg, SO_BUSY_POLL 50 us)
#     libix        ix_udp_echo on AF_XDP (native attach, copy mode on veth), IX_BATCH 64, default idle policy
#                  (spin IX_SPIN_US=100 us, then sleep on the XSK fd); the veth end has no IP: the dataplane owns it
#     libix-sleep  the same with IX_SPIN_US=0 (sleeps on the XSK fd as soon as a cycle finds nothing)
# Points per server: window 1 on 1 socket (replies/s + RTT percentiles) and HIGH_WINDOW outstanding on each of
# HIGH_CONN sockets (replies/s). Server CPU (utime+stime from /proc/PID/stat) is sampled by ixbench over the
# measured window. Results (JSON per point, server logs, ixctl counters) stay in the directory printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "scripts/bench-udp.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "scripts/bench-udp.sh needs 2 CPUs (client on CPU 0, server on CPU 1)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-1}"
SIZE="${SIZE:-64}"
HIGH_CONN="${HIGH_CONN:-4}"
HIGH_WINDOW="${HIGH_WINDOW:-32}"
VARIANTS="${VARIANTS:-linux-block linux-busy libix libix-sleep}"
out="$(mktemp -d /tmp/bench-udp.XXXXXX)"
bin="$out/bin"
mkdir -p "$bin" "$out/stats"

echo "== building (release) -> $bin"
cargo build --release -q -p ix-tools -p libix
gcc -O2 -Wall -Wextra -o "$bin/kernel_udp_echo" c-tests/kernel_udp_echo.c
gcc -O2 -Wall -Wextra -Iinclude c-tests/ix_udp_echo.c -Ltarget/release -Wl,-rpath,"$root/target/release" -lix \
    -lpthread -o "$bin/ix_udp_echo"
cp target/release/ixbench target/release/ixctl "$bin/"

TH_ID="bu$$"
source scripts/testhost.sh
SRV_NS="ixs${TH_ID}"
SRV_PID=""

# kill_ns_pids: whatever still runs in our two namespaces was started by this script.
kill_ns_pids() {
    local p
    for p in $(ip netns pids "$SRV_NS" 2>/dev/null) $(ip netns pids "$TH_NS" 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SRV_PID" ]; then
        kill -TERM "$SRV_PID" 2>/dev/null || true
        sleep 0.3
        kill -KILL "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
    kill_ns_pids
    testhost_cleanup
    ip netns del "$SRV_NS" 2>/dev/null || true
    [ "$rc" -eq 0 ] || echo "bench-udp: failed (rc=$rc); namespaces removed, logs in $out" >&2
    exit "$rc"
}

testhost_create 1                     # client namespace $TH_NS with $TH_PEER = 198.18.0.2/24, tx csum off
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$SRV_NS"
ip link set "$TH_LOCAL" netns "$SRV_NS"
ip -n "$SRV_NS" link set lo up
ip -n "$SRV_NS" link set "$TH_LOCAL" up
in_srv() { ip netns exec "$SRV_NS" "$@"; }
echo "== client ns $TH_NS ($TH_PEER $TH_PEER_IP), server ns $SRV_NS ($TH_LOCAL), veth, 1 queue"
{
    echo "kernel $(uname -r), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "server veth offloads: $(in_srv ethtool -k "$TH_LOCAL" 2>/dev/null | grep -E '^(generic-receive-offload|rx-gro-list|tx-checksumming):' | tr '\n' ' ')"
    echo "busy_read=$(sysctl -n net.core.busy_read) busy_poll=$(sysctl -n net.core.busy_poll)"
} | tee "$out/machine.txt"

# stop_server: SIGTERM, wait up to 5 s, then SIGKILL.
stop_server() {
    [ -n "$SRV_PID" ] || return 0
    kill -TERM "$SRV_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
    kill_ns_pids
}

# start_server NAME CMD...: start CMD in the server namespace on CPU 1, wait for its "ready" line.
start_server() {
    local name="$1"
    shift
    # Not through a shell function: $! must be the server itself (ip netns exec, taskset and env all exec).
    ip netns exec "$SRV_NS" taskset -c 1 "$@" >"$out/$name.server.log" 2>&1 &
    SRV_PID=$!
    wait_for_line "$out/$name.server.log" '^ready' 20
    echo "-- $name: pid $SRV_PID ($(cat /proc/$SRV_PID/comm)), $(head -1 "$out/$name.server.log" | grep -v '^\[' || true)"
}

# point NAME TAG ARGS...: one ixbench run from the client namespace on CPU 0.
point() {
    local name="$1" tag="$2"
    shift 2
    timeout $((${DURATION%.*} + ${WARMUP%.*} + 15)) \
        ip netns exec "$TH_NS" taskset -c 0 "$bin/ixbench" udp-echo --server "$TH_DP_IP:7" --size "$SIZE" \
        --duration "$DURATION" --warmup "$WARMUP" --busy-poll --cpu-pid "$SRV_PID" --label "$name $tag" \
        --json "$out/$name.$tag.json" "$@" | tee "$out/$name.$tag.txt"
    kill -0 "$SRV_PID" 2>/dev/null || { echo "server $name died" >&2; cat "$out/$name.server.log" >&2; return 1; }
}

measure() {
    local name="$1"
    point "$name" w1 --connections 1 --window 1
    point "$name" high --connections "$HIGH_CONN" --window "$HIGH_WINDOW"
}

for v in $VARIANTS; do
    echo
    echo "================ $v"
    case "$v" in
        linux-*)
            ip -n "$SRV_NS" addr flush dev "$TH_LOCAL"
            ip -n "$SRV_NS" addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
            ip -n "$TH_NS" neigh flush dev "$TH_PEER"
            if [ "$v" = linux-busy ]; then
                start_server "$v" "$bin/kernel_udp_echo" --port 7 --busy --busy-poll 50
            else
                start_server "$v" "$bin/kernel_udp_echo" --port 7
            fi
            measure "$v"
            stop_server
            cat "$out/$v.server.log"
            ;;
        libix*)
            ip -n "$SRV_NS" addr flush dev "$TH_LOCAL"
            ip -n "$TH_NS" neigh flush dev "$TH_PEER"
            spin=100
            [ "$v" = libix-sleep ] && spin=0
            rm -f "$out/stats/"*
            start_server "$v" env IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_XDP_MODE=native \
                IX_BATCH=64 IX_SPIN_US="$spin" IX_STATS_DIR="$out/stats" IX_LOG=info "$bin/ix_udp_echo" server 7
            grep -iE "attach|xdp|copy|huge" "$out/$v.server.log" | sed 's/^/   /' | head -5 || true
            measure "$v"
            "$bin/ixctl" --dir "$out/stats" stats >"$out/$v.ixctl.txt" 2>&1 || true
            "$bin/ixctl" --dir "$out/stats" stats --json >"$out/$v.ixctl.json" 2>/dev/null || true
            echo "-- ixctl stats ($v, both points):"
            sed 's/^/   /' "$out/$v.ixctl.txt"
            stop_server
            grep -E "echoed" "$out/$v.server.log" || true
            ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
done

echo
echo "================ summary (size $SIZE B, ${DURATION}s per point, client busy-polls on CPU 0, server on CPU 1)"
python3 - "$out" $VARIANTS <<'PY'
import json, os, sys
out, variants = sys.argv[1], sys.argv[2:]
r = {}
for v in variants:
    for tag in ("w1", "high"):
        p = os.path.join(out, f"{v}.{tag}.json")
        if os.path.exists(p):
            r[(v, tag)] = json.load(open(p))
def g(v, tag, *path):
    x = r.get((v, tag))
    for k in path:
        if x is None:
            return None
        x = x.get(k)
    return x
def f(x, fmt):
    return "-" if x is None else format(x, fmt)
policy = {"linux-block": "blocking recvmmsg", "linux-busy": "spin recvmmsg+SO_BUSY_POLL 50",
          "libix": "IX_SPIN_US=100 then sleep", "libix-sleep": "IX_SPIN_US=0 (sleep at once)"}
hdr = f"{'server':<12} {'idle policy':<30} {'kpps w1':>8} {'kpps hi':>8} {'p50 us':>7} {'p90':>7} {'p99':>7} " \
      f"{'p99.9':>7} {'max':>8} {'lost':>5} {'cpu us/pkt w1':>13} {'hi':>6}"
print(hdr)
for v in variants:
    print(f"{v:<12} {policy.get(v, ''):<30} {f(g(v,'w1','pps') and g(v,'w1','pps')/1e3,'8.1f')} "
          f"{f(g(v,'high','pps') and g(v,'high','pps')/1e3,'8.1f')} {f(g(v,'w1','rtt_us','p50'),'7.2f')} "
          f"{f(g(v,'w1','rtt_us','p90'),'7.2f')} {f(g(v,'w1','rtt_us','p99'),'7.2f')} "
          f"{f(g(v,'w1','rtt_us','p99_9'),'7.2f')} {f(g(v,'w1','rtt_us','max'),'8.1f')} "
          f"{(g(v,'w1','lost') or 0) + (g(v,'high','lost') or 0):>5} "
          f"{f(g(v,'w1','cpu_us_per_reply'),'13.3f')} {f(g(v,'high','cpu_us_per_reply'),'6.3f')}")
print()
print("ratios libix / Linux (pps: higher is better for libix; latency and CPU: lower is better)")
for ix in [v for v in variants if v.startswith("libix")]:
    for lx in [v for v in variants if v.startswith("linux")]:
        def ratio(*key):
            a, b = g(ix, *key), g(lx, *key)
            return None if a is None or not b else a / b
        print(f"  {ix:<11} / {lx:<11}  pps w1 {f(ratio('w1','pps'),'5.2f')}  pps hi {f(ratio('high','pps'),'5.2f')}  "
              f"p50 {f(ratio('w1','rtt_us','p50'),'5.2f')}  p99 {f(ratio('w1','rtt_us','p99'),'5.2f')}  "
              f"cpu/pkt hi {f(ratio('high','cpu_us_per_reply'),'5.2f')}")
PY
echo
echo "results: $out"
