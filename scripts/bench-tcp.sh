#!/usr/bin/env bash
# TCP, Linux vs libix, side by side in one run (DESIGN.md §7, IX §5.2-5.3): same veth, same cores, same client.
#
#   sudo scripts/bench-tcp.sh   (env: DURATION=5 WARMUP=1 PP_SECS=1.5 PP_SIZES=64,256,1024,4096,16384,65536
#                                     CONNS="1 8 64" ROUNDS="1 1024" SIZE=64 VARIANTS="linux linux-busy libix"
#                                     NPTCP=1 NICE=0 STEER=server|none|both OUT=<dir>)
# About 4.5 minutes; results in OUT (default a new /tmp/bench-tcp.XXXXXX); figures and their reading in
# BENCHMARKS.md (section TCP).
#
# Topology (as scripts/bench-udp.sh): two namespaces joined by one veth pair with 1 queue:
#   client ns <TH_NS>  veth <TH_PEER>  198.18.0.2/24  ixbench, pinned to CPU 0
#   server ns <SRV_NS> veth <TH_LOCAL> 198.18.0.1/24  the server under test, pinned to CPU 1:
#     linux        kernel_tcp_echo: epoll, non-blocking, 1 thread, sleeps in epoll_wait
#     linux-busy   kernel_tcp_echo --busy --busy-poll 50: spins in epoll_wait(timeout 0), SO_BUSY_POLL 50 us
#     libix        ix_tcp_echo (IX native API, zero-copy echo) on AF_XDP, native attach, copy mode on veth;
#                  default idle policy (spin IX_SPIN_US=100 us, then sleep on the XSK fd); no IP on the veth end
#     libix-sleep  (optional) the same with IX_SPIN_US=0
# Points per server (the client busy-polls in every point, so only the server's idle policy differs):
#   pp           ixbench pingpong: one connection, PP_SIZES, PP_SECS per size: one-way latency (RTT/2), goodput
#   e<N>c<C>     ixbench echo --rst-close: SIZE-byte messages, N round trips per connection (the paper's n), C
#                concurrent connections, each closed with RST after its N round trips and replaced (IX §5.3):
#                messages/s, connections/s, RTT percentiles, server CPU
# NPTCP=1 adds NetPIPE (Debian netpipe-tcp, installed if missing): NPtcp needs NPtcp at both ends (its receiver
# speaks a protocol: sync strings, repeat counts, times), so it can run Linux <-> Linux only; it is compared
# with an ixbench pingpong whose both ends sleep (no --busy-poll) against the sleeping Linux server, as NPtcp's do.
# Any failure or signal kills the servers and removes both namespaces; results stay in the directory printed.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "scripts/bench-tcp.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "scripts/bench-tcp.sh needs 2 CPUs (client on CPU 0, server on CPU 1)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
PP_SECS="${PP_SECS:-1.5}"
PP_SIZES="${PP_SIZES:-64,256,1024,4096,16384,65536}"
CONNS="${CONNS:-1 8 64}"
ROUNDS="${ROUNDS:-1 1024}"
SIZE="${SIZE:-64}"
NICE="${NICE:-0}"
NPTCP="${NPTCP:-1}"
VARIANTS="${VARIANTS:-linux linux-busy libix}"
# Where each side's veth receive runs: server (default), none or both (scripts/testhost.sh, "STEER"). linux-busy's
# SO_BUSY_POLL cannot poll an RPS backlog: with STEER=server it waits for the IPI like the sleeping server (on a
# NIC it would poll the NIC's queue), so compare it only with STEER=none.
STEER="${STEER:-server}"
TH_ID="bt$$"
source scripts/testhost.sh
steer_check
[[ " $VARIANTS " != *" linux-busy "* ]] || [ "$STEER" = none ] ||
    echo "note: linux-busy under STEER=$STEER cannot busy-poll its receive (an RPS backlog); see STEER=none" >&2
PORT=7
if [ -n "${OUT:-}" ]; then
    out="$OUT"
    mkdir -p "$out"
else
    out="$(mktemp -d /tmp/bench-tcp.XXXXXX)"
fi
bin="$out/bin"
mkdir -p "$bin" "$out/stats"

echo "== building (release) -> $bin"
cargo build --release -q -p ix-tools -p libix
gcc -O2 -Wall -Wextra -Werror -pthread -o "$bin/kernel_tcp_echo" c-tests/kernel_tcp_echo.c
gcc -O2 -Wall -Wextra -Iinclude c-tests/ix_tcp_echo.c -Ltarget/release -Wl,-rpath,"$root/target/release" -lix \
    -lpthread -o "$bin/ix_tcp_echo"
cp target/release/ixbench target/release/ixctl "$bin/"
if [ "$NPTCP" = 1 ] && ! command -v NPtcp >/dev/null; then
    echo "== installing netpipe-tcp (NPtcp)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q netpipe-tcp >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q netpipe-tcp \
            >/dev/null 2>&1; } || { echo "   netpipe-tcp not installable: NPtcp skipped"; NPTCP=0; }
fi

SRV_NS="ixs${TH_ID}"
SRV_PID=""

kill_ns_pids() {   # whatever still runs in our two namespaces was started by this script
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
    [ "$rc" -eq 0 ] || echo "bench-tcp: failed (rc=$rc); namespaces removed, logs in $out" >&2
    exit "$rc"
}

testhost_create 1
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$SRV_NS"
ip link set "$TH_LOCAL" netns "$SRV_NS"
ip -n "$SRV_NS" link set lo up
ip -n "$SRV_NS" link set "$TH_LOCAL" up
in_srv() { ip netns exec "$SRV_NS" "$@"; }
steer_apply "$TH_NS" "$TH_PEER" "$SRV_NS" "$TH_LOCAL"
echo "== client ns $TH_NS ($TH_PEER $TH_PEER_IP), server ns $SRV_NS ($TH_LOCAL), veth, 1 queue, receive steering: $STEER"
{
    echo "kernel $(uname -r), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "busy_read=$(sysctl -n net.core.busy_read) busy_poll=$(sysctl -n net.core.busy_poll) nice=$NICE steer=$STEER"
    echo "loadavg at start: $(cat /proc/loadavg)"
} | tee "$out/machine.txt"

stop_server() {   # SIGTERM, up to 5 s, then SIGKILL
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

# start_server NAME CMD...: CMD in the server namespace on CPU 1; waits for its "ready" line.
start_server() {
    local name="$1"
    shift
    # Not through a shell function: $! must be the server itself (ip netns exec, nice, taskset and env all exec).
    ip netns exec "$SRV_NS" nice -n "$NICE" taskset -c 1 "$@" >"$out/$name.server.log" 2>&1 &
    SRV_PID=$!
    wait_for_line "$out/$name.server.log" '^ready' 20
    echo "-- $name: pid $SRV_PID ($(cat "/proc/$SRV_PID/comm")), $(grep -m1 '^ready' "$out/$name.server.log")"
}

alive() { kill -0 "$SRV_PID" 2>/dev/null || { echo "server $1 died" >&2; cat "$out/$1.server.log" >&2; return 1; }; }

# client SECONDS ARGS...: ixbench in the client namespace on CPU 0, bounded.
client() {
    local secs="$1"
    shift
    timeout "$secs" ip netns exec "$TH_NS" nice -n "$NICE" taskset -c 0 "$bin/ixbench" "$@"
}

measure() {
    local name="$1" n c tag nsizes
    nsizes=$(echo "$PP_SIZES" | tr ',' '\n' | wc -l)
    client $((nsizes * 10 + 20)) pingpong --server "$TH_DP_IP:$PORT" --sizes "$PP_SIZES" \
        --duration-per-size "$PP_SECS" --busy-poll --cpu-pid "$SRV_PID" --label "$name pp" \
        --json "$out/$name.pp.json" | tee "$out/$name.pp.txt"
    alive "$name"
    for n in $ROUNDS; do
        for c in $CONNS; do
            tag="e${n}c${c}"
            # Errors are reported in the JSON and the summary; the run goes on.
            client $((${DURATION%.*} + ${WARMUP%.*} + 20)) echo --server "$TH_DP_IP:$PORT" --connections "$c" \
                --size "$SIZE" --rounds "$n" --rst-close --busy-poll --duration "$DURATION" --warmup "$WARMUP" \
                --cpu-pid "$SRV_PID" --label "$name $tag" --json "$out/$name.$tag.json" \
                | tee "$out/$name.$tag.txt" || echo "   (ixbench echo reported errors)"
            echo "  loadavg       $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/$name.$tag.txt"
            alive "$name"
        done
    done
}

for v in $VARIANTS; do
    echo
    echo "================ $v"
    case "$v" in
        linux*)
            ip -n "$SRV_NS" addr flush dev "$TH_LOCAL"
            ip -n "$SRV_NS" addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
            ip -n "$TH_NS" neigh flush dev "$TH_PEER"
            if [ "$v" = linux-busy ]; then
                start_server "$v" "$bin/kernel_tcp_echo" --port "$PORT" --busy --busy-poll 50
            else
                start_server "$v" "$bin/kernel_tcp_echo" --port "$PORT"
            fi
            measure "$v"
            if [ "$v" = linux ] && [ "$NPTCP" = 1 ]; then
                # Cross-check: ixbench pingpong with both ends sleeping, against NPtcp <-> NPtcp (both sleep).
                client 90 pingpong --server "$TH_DP_IP:$PORT" --sizes "$PP_SIZES" --duration-per-size "$PP_SECS" \
                    --label "linux pp-sleep" --json "$out/linux.pp-sleep.json" | tee "$out/linux.pp-sleep.txt"
                stop_server
                lo=$(echo "$PP_SIZES" | tr ',' '\n' | sort -n | head -1)
                hi=$(echo "$PP_SIZES" | tr ',' '\n' | sort -n | tail -1)
                (cd "$out" && exec ip netns exec "$SRV_NS" taskset -c 1 timeout 120 NPtcp -l "$lo" -u "$hi" -p 0 \
                    >"$out/nptcp.rx.log" 2>&1) &
                np_rx=$!
                sleep 0.5
                (cd "$out" && timeout 120 ip netns exec "$TH_NS" taskset -c 0 NPtcp -h "$TH_DP_IP" -l "$lo" -u "$hi" \
                    -p 0 -o "$out/nptcp.linux.out") >"$out/nptcp.linux.log" 2>&1 || echo "   NPtcp failed"
                wait "$np_rx" || true
                echo "-- NPtcp <-> NPtcp (Linux both ends, blocking), one-way latency:"
                awk '{ printf "   %8d B  %9.2f us  %10.1f Mbit/s\n", $1, $3 * 1e6, $2 }' "$out/nptcp.linux.out" || true
            fi
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
                IX_BATCH=64 IX_SPIN_US="$spin" IX_STATS_DIR="$out/stats" IX_LOG=info "$bin/ix_tcp_echo" server "$PORT"
            grep -iE "copy|huge" "$out/$v.server.log" | sed 's/^/   /' | head -3 || true
            measure "$v"
            if [ "$NPTCP" = 1 ] && [ "$v" = libix ]; then
                # NPtcp against a plain echo server: expected to fail (it needs an NPtcp receiver).
                (cd "$out" && timeout 20 ip netns exec "$TH_NS" taskset -c 0 NPtcp -h "$TH_DP_IP" -P "$PORT" \
                    -l 64 -u 1024 -p 0 -o "$out/nptcp.libix.out") >"$out/nptcp.libix.log" 2>&1 || true
                echo "-- NPtcp against ix_tcp_echo: $(grep -m1 -iE 'incorrect|error' "$out/nptcp.libix.log" ||
                    echo 'no error?')"
            fi
            sleep 1 # the last connections' LAST_ACK, and the stats page's publish interval
            "$bin/ixctl" --dir "$out/stats" stats >"$out/$v.ixctl.txt" 2>&1 || true
            echo "-- ixctl stats ($v, whole run):"
            grep -E "tcp_|nic_rx_dropped|retransmit|pool_|batch" "$out/$v.ixctl.txt" | sed 's/^/   /' || true
            stop_server
            grep -E "connections=" "$out/$v.server.log" || true
            ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
done

echo
echo "================ summary (client busy-polls on CPU 0, server on CPU 1; ${DURATION}s per echo point)"
python3 - "$out" "$PP_SIZES" "$ROUNDS" "$CONNS" $VARIANTS <<'PY'
import json, os, sys
out, sizes, rounds, conns, variants = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5:]
sizes = [int(s) for s in sizes.split(",")]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def f(x, fmt):
    return "-" if x is None else format(x, fmt)
pp = {v: load(f"{v}.pp.json") for v in variants}
def pps(v, size):
    d = pp.get(v)
    return None if not d else next((s for s in d["sizes"] if s["size"] == size), None)
print("pingpong, one-way latency us (RTT/2): p50 / avg, and goodput Mbit/s")
print(f"{'bytes':>8} " + " ".join(f"{v:>26}" for v in variants))
for s in sizes:
    row = []
    for v in variants:
        x = pps(v, s)
        row.append("-" if not x else f"{x['one_way_us']['p50']:7.2f} /{x['one_way_us']['avg']:7.2f} {x['goodput_mbps']:8.0f}")
    print(f"{s:>8} " + " ".join(f"{r:>26}" for r in row))
echo = {}
for v in variants:
    for n in rounds:
        for c in conns:
            echo[(v, n, c)] = load(f"{v}.e{n}c{c}.json")
print()
def other(x):
    # Busy share of the server's CPU (1) not accounted to the server process: other work, or softirq while idle.
    c1 = [c for c in x.get("cpus", []) if c["cpu"] == 1]
    if x.get("cpu_s") is None or not c1:
        return None
    return max(0.0, c1[0]["busy"] - 100.0 * x["cpu_s"] / x["duration_s"])
print("echo, RST close (IX §5.3)")
print(f"  {'point':<12} {'server':<12} {'msgs/s':>10} {'conns/s':>9} {'p50 us':>8} {'p99 us':>8} "
      f"{'cpu us/msg':>10} {'cpu1 other%':>11} {'errors':>6}")
for n in rounds:
    for c in conns:
        for v in variants:
            x = echo[(v, n, c)]
            if not x:
                continue
            print(f"  {'n=%s c=%s' % (n, c):<12} {v:<12} {x['msgs_per_s']:>10.0f} {x['conns_per_s']:>9.0f} "
                  f"{x['rtt_us']['p50']:>8.1f} {x['rtt_us']['p99']:>8.1f} {f(x['cpu_us_per_msg'], '10.2f')} "
                  f"{f(other(x), '11.0f')} {x['errors']:>6}")
print()
print("ratios libix / Linux (msgs/s: higher favours libix; latency: lower favours libix)")
for ix in [v for v in variants if v.startswith("libix")]:
    for lx in [v for v in variants if v.startswith("linux")]:
        lat = []
        for s in sizes:
            a, b = pps(ix, s), pps(lx, s)
            lat.append(f"{s}:{f(a and b and a['one_way_us']['p50'] / b['one_way_us']['p50'], '.2f')}")
        print(f"  {ix} / {lx}: one-way p50 " + " ".join(lat))
        thr = []
        for n in rounds:
            for c in conns:
                a, b = echo[(ix, n, c)], echo[(lx, n, c)]
                thr.append(f"n{n}c{c}:{f(a and b and b['msgs_per_s'] and a['msgs_per_s'] / b['msgs_per_s'], '.2f')}")
        print(f"  {ix} / {lx}: msgs/s " + " ".join(thr))
np_out = os.path.join(out, "nptcp.linux.out")
ps = load("linux.pp-sleep.json")
if os.path.exists(np_out) and ps:
    print()
    print("cross-check, both ends sleeping, Linux server: NPtcp <-> NPtcp vs ixbench pingpong (no --busy-poll)")
    np = {int(l.split()[0]): float(l.split()[2]) * 1e6 for l in open(np_out) if l.strip()}
    for s in sizes:
        x = next((y for y in ps["sizes"] if y["size"] == s), None)
        print(f"  {s:>8} B  NPtcp {f(np.get(s), '8.2f')} us   ixbench avg {f(x and x['one_way_us']['avg'], '8.2f')} "
              f"p50 {f(x and x['one_way_us']['p50'], '8.2f')} us")
PY
echo
echo "results: $out"
