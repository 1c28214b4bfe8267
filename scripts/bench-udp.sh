#!/usr/bin/env bash
# UDP echo, Linux vs libix, side by side in one run (DESIGN.md §7): same veth, same cores, same client.
#
#   sudo scripts/bench-udp.sh     (env: DURATION=8 WARMUP=1 SIZE=64 HIGH_CONN=4 HIGH_WINDOW=32 OPEN_RATE=100000
#                                        VARIANTS="linux-block linux-busy libix libix-sleep" NICE=0)
# About 2.5 minutes; figures and their reading in BENCHMARKS.md.
#
# Topology: two namespaces joined by one veth pair (scripts/testhost.sh makes the client side):
#   client ns  <TH_NS>   veth <TH_PEER>  198.18.0.2/24   ixbench, pinned to CPU 0, busy-polling
#   server ns  <SRV_NS>  veth <TH_LOCAL> 198.18.0.1/24   the server under test, pinned to CPU 1:
#     linux-block  kernel_udp_echo (recvmmsg/sendmmsg, blocking)
#     linux-busy   kernel_udp_echo --busy --busy-poll 50 (spins on non-blocking recvmmsg, SO_BUSY_POLL 50 us; the
#                  veth has GRO off by default, hence no NAPI context and SO_BUSY_POLL polls nothing)
#     linux-napi   (optional) the same with GRO on on the server's veth end: NAPI exists, SO_BUSY_POLL polls it
#     libix        ix_udp_echo on AF_XDP (native attach, copy mode on veth), IX_BATCH 64, default idle policy
#                  (spin IX_SPIN_US=100 us, then sleep on the XSK fd); the veth end has no IP: the dataplane owns it
#     libix-sleep  the same with IX_SPIN_US=0 (sleeps on the XSK fd as soon as a cycle finds nothing)
# Points per server: window 1 on 1 socket (replies/s + RTT percentiles); HIGH_WINDOW outstanding on each of
# HIGH_CONN sockets (replies/s); open loop, Poisson arrivals at OPEN_RATE over HIGH_CONN sockets, latency from the
# intended send time (OPEN_RATE=0 skips it). ixbench samples the server's CPU time (utime+stime, /proc/PID/stat)
# and both CPUs' busy shares (/proc/stat) over each measured window; drop/error counters of both veth ends and both
# namespaces' UDP MIBs are diffed around each point. Results (JSON per point, server logs, ixctl counters) stay in
# the directory printed at the end. Any failure or signal kills the servers and removes both namespaces.
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
OPEN_RATE="${OPEN_RATE:-100000}"
NICE="${NICE:-0}"          # e.g. NICE=-10 to favour client and server over other work on a shared machine
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
    echo "server veth offloads: $(in_srv ethtool -k "$TH_LOCAL" 2>/dev/null |
        grep -E '^(generic-receive-offload|rx-gro-list|tx-checksumming):' | tr '\n' ' ')"
    echo "busy_read=$(sysctl -n net.core.busy_read) busy_poll=$(sysctl -n net.core.busy_poll) nice=$NICE"
    echo "loadavg at start: $(cat /proc/loadavg)"
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
    ip netns exec "$SRV_NS" nice -n "$NICE" taskset -c 1 "$@" >"$out/$name.server.log" 2>&1 &
    SRV_PID=$!
    wait_for_line "$out/$name.server.log" '^ready' 20
    echo "-- $name: pid $SRV_PID ($(cat "/proc/$SRV_PID/comm"))," \
        "$(head -1 "$out/$name.server.log" | grep -v '^\[' || true)"
}

# snap FILE: drop/error counters of both veth ends (ethtool -S, link statistics) and both namespaces' UDP MIBs.
snap() {
    local side ns ifc f
    for side in client server; do
        if [ $side = client ]; then ns="$TH_NS" ifc="$TH_PEER"; else ns="$SRV_NS" ifc="$TH_LOCAL"; fi
        ip netns exec "$ns" ethtool -S "$ifc" 2>/dev/null | sed -n "s/^ *\([^:]*\): *\([0-9]*\)$/$side.veth.\1=\2/p"
        for f in rx_dropped tx_dropped rx_errors tx_errors; do
            echo "$side.link.$f=$(ip netns exec "$ns" cat "/sys/class/net/$ifc/statistics/$f")"
        done
        ip netns exec "$ns" awk -v side=$side '/^Udp:/ { if (!h) { split($0, k); h = 1 } else {
            for (i = 2; i <= NF; i++) print side ".Udp." k[i] "=" $i } }' /proc/net/snmp
    done >"$1"
}

# counters_delta BEFORE AFTER: print the drop/error counters that moved.
counters_delta() {
    python3 - "$1" "$2" <<'PY'
import re, sys
def load(p):
    return dict(l.strip().split("=", 1) for l in open(p) if "=" in l)
a, b = load(sys.argv[1]), load(sys.argv[2])
moved = []
for k, v in b.items():
    if re.search(r"drop|err|full|fail|Errors", k, re.I):
        try:
            d = int(v) - int(a.get(k, "0") or 0)
        except ValueError:
            continue
        if d:
            moved.append(f"{k}+{d}")
print("  drops/errors  " + (" ".join(moved) if moved else "none (veth, UDP MIBs of both namespaces)"))
PY
}

# point NAME TAG ARGS...: one ixbench run from the client namespace on CPU 0.
point() {
    local name="$1" tag="$2"
    shift 2
    snap "$out/$name.$tag.before"
    timeout $((${DURATION%.*} + ${WARMUP%.*} + 15)) \
        ip netns exec "$TH_NS" nice -n "$NICE" taskset -c 0 "$bin/ixbench" udp-echo --server "$TH_DP_IP:7" \
        --size "$SIZE" \
        --duration "$DURATION" --warmup "$WARMUP" --busy-poll --cpu-pid "$SRV_PID" --label "$name $tag" \
        --json "$out/$name.$tag.json" "$@" | tee "$out/$name.$tag.txt"
    snap "$out/$name.$tag.after"
    counters_delta "$out/$name.$tag.before" "$out/$name.$tag.after" | tee -a "$out/$name.$tag.txt"
    echo "  loadavg       $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/$name.$tag.txt"
    kill -0 "$SRV_PID" 2>/dev/null || { echo "server $name died" >&2; cat "$out/$name.server.log" >&2; return 1; }
}

measure() {
    local name="$1"
    point "$name" w1 --connections 1 --window 1
    point "$name" high --connections "$HIGH_CONN" --window "$HIGH_WINDOW"
    if [ "$OPEN_RATE" != 0 ]; then
        point "$name" open --connections "$HIGH_CONN" --mode open --rate "$OPEN_RATE"
    fi
}

for v in $VARIANTS; do
    echo
    echo "================ $v"
    case "$v" in
        linux-*)
            ip -n "$SRV_NS" addr flush dev "$TH_LOCAL"
            ip -n "$SRV_NS" addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
            ip -n "$TH_NS" neigh flush dev "$TH_PEER"
            if [ "$v" = linux-napi ]; then
                # GRO on gives the veth a NAPI context, so SO_BUSY_POLL has something to poll: the server's own
                # CPU then runs its receive path instead of the client's softirq.
                in_srv ethtool -K "$TH_LOCAL" gro on >/dev/null
                start_server "$v" "$bin/kernel_udp_echo" --port 7 --busy --busy-poll 50
            elif [ "$v" = linux-busy ]; then
                start_server "$v" "$bin/kernel_udp_echo" --port 7 --busy --busy-poll 50
            else
                start_server "$v" "$bin/kernel_udp_echo" --port 7
            fi
            measure "$v"
            stop_server
            in_srv ethtool -K "$TH_LOCAL" gro off >/dev/null 2>&1 || true
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
    for tag in ("w1", "high", "open"):
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
          "linux-napi": "spin, SO_BUSY_POLL 50, veth GRO on",
          "libix": "IX_SPIN_US=100 then sleep", "libix-sleep": "IX_SPIN_US=0 (sleep at once)"}
def other(v, tag):
    # Busy share of the server's CPU (1) not accounted to the server process: other work, or softirq while idle.
    x = r.get((v, tag))
    if not x or x.get("cpu_s") is None:
        return None
    c1 = [c for c in x.get("cpus", []) if c["cpu"] == 1]
    return None if not c1 else max(0.0, c1[0]["busy"] - 100.0 * x["cpu_s"] / x["duration_s"])
hdr = f"{'server':<12} {'idle policy':<30} {'kpps w1':>8} {'kpps hi':>8} {'p50 us':>7} {'p90':>7} {'p99':>7} " \
      f"{'p99.9':>7} {'max':>8} {'lost':>5} {'cpu us/pkt w1':>13} {'hi':>6} {'cpu1 other% w1/hi':>17}"
print(hdr)
for v in variants:
    print(f"{v:<12} {policy.get(v, ''):<30} {f(g(v,'w1','pps') and g(v,'w1','pps')/1e3,'8.1f')} "
          f"{f(g(v,'high','pps') and g(v,'high','pps')/1e3,'8.1f')} {f(g(v,'w1','rtt_us','p50'),'7.2f')} "
          f"{f(g(v,'w1','rtt_us','p90'),'7.2f')} {f(g(v,'w1','rtt_us','p99'),'7.2f')} "
          f"{f(g(v,'w1','rtt_us','p99_9'),'7.2f')} {f(g(v,'w1','rtt_us','max'),'8.1f')} "
          f"{(g(v,'w1','lost') or 0) + (g(v,'high','lost') or 0):>5} "
          f"{f(g(v,'w1','cpu_us_per_reply'),'13.3f')} {f(g(v,'high','cpu_us_per_reply'),'6.3f')} "
          f"{f(other(v,'w1'),'8.0f')}/{f(other(v,'high'),'<8.0f')}")
if any(k[1] == "open" for k in r):
    print()
    rate = next(x['rate'] for k, x in r.items() if k[1] == 'open')
    print(f"open loop, Poisson at {rate:.0f}/s: latency from the intended send time")
    print(f"{'server':<12} {'kpps':>8} {'p50 us':>8} {'p90':>8} {'p99':>8} {'p99.9':>9} {'lost':>6} "
          f"{'lag>100us':>9} {'cpu us/pkt':>10} {'cpu1 other%':>11}")
    for v in variants:
        if (v, "open") not in r:
            continue
        print(f"{v:<12} {f(g(v,'open','pps')/1e3,'8.1f')} {f(g(v,'open','rtt_us','p50'),'8.2f')} "
              f"{f(g(v,'open','rtt_us','p90'),'8.2f')} {f(g(v,'open','rtt_us','p99'),'8.2f')} "
              f"{f(g(v,'open','rtt_us','p99_9'),'9.1f')} {g(v,'open','lost'):>6} "
              f"{g(v,'open','send_lag_us','over_100us'):>9} {f(g(v,'open','cpu_us_per_reply'),'10.3f')} "
              f"{f(other(v,'open'),'11.0f')}")
print()
print("ratios libix / Linux (pps: higher is better for libix; latency and CPU: lower is better)")
for ix in [v for v in variants if v.startswith("libix")]:
    for lx in [v for v in variants if v.startswith("linux")]:
        def ratio(*key):
            a, b = g(ix, *key), g(lx, *key)
            return None if a is None or not b else a / b
        print(f"  {ix:<11} / {lx:<11}  pps w1 {f(ratio('w1','pps'),'.3g')}  pps hi {f(ratio('high','pps'),'.3g')}  "
              f"p50 {f(ratio('w1','rtt_us','p50'),'.3g')}  p99 {f(ratio('w1','rtt_us','p99'),'.3g')}  "
              f"cpu/pkt hi {f(ratio('high','cpu_us_per_reply'),'.3g')}  "
              f"open p50 {f(ratio('open','rtt_us','p50'),'.3g')}  open p99 {f(ratio('open','rtt_us','p99'),'.3g')}")
PY
echo
echo "results: $out"
