#!/usr/bin/env bash
# Connection scalability of the dataplane's TCP (IX §5.3-5.4), Linux client in a namespace, AF_XDP, 1 queue:
#  1. 10,000 concurrent connections (ixbench hold, over 2 client addresses): each does 3 verified echo round
#     trips, all are held open together (the dataplane must count 10,000 live), each does one more round trip,
#     then all close with FIN (the dataplane closes passively: CLOSE_WAIT -> LAST_ACK -> freed, no TIME_WAIT);
#  2. 100,000 connect / 64-byte echo / close cycles, 200 at a time, closed with RST (as the paper's clients do);
#  3. the same closed with FIN: the Linux client holds TIME_WAIT, so its connections are spread over 4 client
#     addresses with the namespace's whole port range, and net.ipv4.tcp_tw_reuse=1 in the namespace: without it
#     Linux's connect() slows from ~25k/s to ~300/s once ~30k TIME_WAIT sockets exist (port search, seen with a
#     Linux server too), and the dataplane then also sees 4-tuples reused after >= 1 s.
# After each step, bounded waits until the dataplane's tcp_connections is 0, nothing is lent to the app or held
# by the stack (mbufs_lent = 0; mbufs_in_stack = pool_capacity - pool_available - nic_frames_held = 0: every
# frame is free or posted to the NIC) and pool_available is back to its idle value (frames posted to the fill
# ring never come back to the pool; the ring is topped up only in batches of 32, so the idle value itself moves
# by up to 31 frames), and the dataplane's passive opens and frees moved by exactly the connections the client
# established. ixbench verifies every echoed byte and must report zero errors. Any failure prints the counters
# and the server log.
# Usage: tcp_scale_test.sh BUILD_DIR   (root; env IXCTL, IXBENCH override the tools' paths). About 25 s; every
# step is bounded so that even a hanging dataplane fails the whole test within 5 minutes.
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"
ixbench="${IXBENCH:-$(dirname "$ixctl")/ixbench}"
[ -x "$ixbench" ] || ixbench="$here/../target/release/ixbench"
TH_ID="sc$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
export IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-info}" IX_POOL_FRAMES=65536
SERVER=""

fail() {
    echo "FAIL: $*" >&2
    echo "--- dataplane counters:" >&2
    "$ixctl" --dir "$work" stats 2>&1 | grep -E "tcp_|pool_|mbufs_|nic_|drop_" >&2 || true
    for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null; fi
    # ixbench runs are in our namespace: nothing else runs there.
    for p in $(ip netns pids "$TH_NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    if [ -n "$SERVER" ]; then
        for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER" 2>/dev/null
    fi
    testhost_cleanup
    rm -rf "$work"
    exit "$rc"
}

testhost_create 1
trap cleanup EXIT
export IX_IFACE="$TH_LOCAL"
sources4="$TH_PEER_IP,198.18.0.3,198.18.0.4,198.18.0.5"
for a in 198.18.0.3 198.18.0.4 198.18.0.5; do ip -n "$TH_NS" addr add "$a/24" dev "$TH_PEER"; done
in_ns sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
in_ns sysctl -qw net.ipv4.tcp_tw_reuse=1

# counters NAME...: the dataplane's counters (summed over queues), "name=value" per line.
counters() {
    { "$ixctl" --dir "$work" stats --json 2>/dev/null || echo '[]'; } | python3 -c '
import json, sys
pages = json.load(sys.stdin)
for name in sys.argv[1:]:
    vals = [q[name] for p in pages for q in p["queues"] if name in q]
    print(f"{name}={sum(vals) if vals else -1}")
' "$@"
}
counter() { counters "$1" | cut -d= -f2; }

# wait_idle STEP: bounded wait for no connections and every buffer back in the pool.
wait_idle() {
    local step="$1" i c
    for ((i = 0; i < 200; i++)); do   # 20 s: RTO backoff of a lost FIN/ACK can take a few seconds
        kill -0 "$SERVER" 2>/dev/null || fail "$step: the dataplane server died"
        c="$(counters tcp_connections mbufs_lent mbufs_in_stack pool_available | tr '\n' ' ')"
        # shellcheck disable=SC2086
        if python3 - "$idle_pool" $c <<'PY'
import sys
idle = int(sys.argv[1])
v = dict(a.split("=") for a in sys.argv[2:])
v = {k: int(x) for k, x in v.items()}
ok = v["tcp_connections"] == 0 and v["mbufs_lent"] == 0 and v["mbufs_in_stack"] in (0, -1) \
    and idle - 31 <= v["pool_available"] <= idle + 31
sys.exit(0 if ok else 1)
PY
        then
            echo "  $step: idle after $((i / 10)).$((i % 10)) s: $c"
            return 0
        fi
        sleep 0.1
    done
    fail "$step: the dataplane did not return to idle within 20 s: $c (idle pool_available $idle_pool)"
}

# json_get FILE KEY: a top-level value of ixbench's JSON report.
json_get() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

echo "== dataplane: ix_tcp_echo server 7 on $TH_LOCAL (AF_XDP, 1 queue, IX_POOL_FRAMES=$IX_POOL_FRAMES)"
"$build/ix_tcp_echo" server 7 >"$work/server.log" 2>&1 &
SERVER=$!
wait_for_line "$work/server.log" '^ready' 20 || fail "server did not start"
# The idle pool: what is left once the fill ring is posted (the same value twice, 0.2 s apart).
idle_pool=-1
for ((i = 0; i < 50; i++)); do
    p="$(counter pool_available)"
    if [ "$p" -gt 0 ] && [ "$p" = "$idle_pool" ]; then break; fi
    idle_pool="$p"
    sleep 0.2
done
[ "$idle_pool" -gt 0 ] || fail "no statistics page in $work"
echo "  idle: $(counters pool_capacity pool_available tcp_connections | tr '\n' ' ')"

opens_before=0
check_opens() {  # check_opens STEP EXPECTED: passive opens and frees of this step, as the dataplane counted them
    local step="$1" want="$2" opens closed
    opens=$(($(counter tcp_passive_opens) - opens_before))
    closed=$(($(counter tcp_closed) - closed_before))
    echo "  $step: dataplane counted $opens passive opens and $closed frees (client established $want);" \
        "so far: $(counters nic_rx_dropped tcp_retransmit_timeouts tcp_syn_cookies_sent tcp_backlog_drops |
            tr '\n' ' ')"
    [ "$opens" -eq "$want" ] && [ "$closed" -eq "$want" ] ||
        fail "$step: the dataplane's tcp_passive_opens/tcp_closed moved by $opens/$closed, expected $want"
}
mark() { opens_before=$(counter tcp_passive_opens); closed_before=$(counter tcp_closed); }

echo "== 1. 10,000 concurrent connections: 3 verified round trips each, held 3 s, 1 more each, FIN close"
mark
in_ns timeout 75 "$ixbench" hold --server "$TH_DP_IP:7" --connections 10000 --sources "$TH_PEER_IP,198.18.0.3" \
    --rounds 3 --size 64 --seconds 3 --max-seconds 70 --json "$work/hold.json" >"$work/hold.log" 2>&1 &
hold=$!
TH_PIDS+=("$hold")
for ((i = 0; i < 700; i++)); do   # 70 s
    grep -q '^holding' "$work/hold.log" 2>/dev/null && break
    kill -0 "$hold" 2>/dev/null || break
    sleep 0.1
done
grep -q '^holding' "$work/hold.log" || { cat "$work/hold.log"; fail "hold: connections not established"; }
grep '^holding' "$work/hold.log"
live=0
for ((i = 0; i < 20; i++)); do   # the stats page is republished every few ms, and around idle sleeps
    live="$(counter tcp_connections)"
    [ "$live" -eq 10000 ] && break
    sleep 0.1
done
echo "  dataplane tcp_connections while holding: $live"
[ "$live" -eq 10000 ] || fail "hold: the dataplane counts $live live connections, the client holds 10000"
wait "$hold" || { cat "$work/hold.log"; fail "hold: ixbench failed"; }
TH_PIDS=()
sed 's/^/  /' "$work/hold.log"
[ "$(json_get "$work/hold.json" errors)" = 0 ] && [ "$(json_get "$work/hold.json" final_round_ok)" = 10000 ] ||
    fail "hold: errors or missing round trips"
wait_idle "hold"
check_opens "hold" 10000

for close in rst fin; do
    echo "== 2. 100,000 connect/echo/close cycles, 200 concurrent, close with $close"
    mark
    flags=(--rst-close)
    [ $close = fin ] && flags=(--sources "$sources4")
    in_ns timeout 65 "$ixbench" echo --server "$TH_DP_IP:7" --total-connections 100000 --connections 200 \
        --rounds 1 --size 64 --max-seconds 60 --timeout-ms 10000 --json "$work/echo-$close.json" "${flags[@]}" \
        >"$work/echo-$close.log" 2>&1 || { cat "$work/echo-$close.log"; fail "echo $close: ixbench failed"; }
    sed 's/^/  /' "$work/echo-$close.log"
    [ "$(json_get "$work/echo-$close.json" errors)" = 0 ] &&
        [ "$(json_get "$work/echo-$close.json" completed)" = 100000 ] || fail "echo $close: errors or incomplete"
    wait_idle "echo $close"
    check_opens "echo $close" 100000
done

kill -TERM "$SERVER"
wait "$SERVER" || fail "server exit status"
SERVER=""
grep connections= "$work/server.log"
echo "PASS tcp_scale_test"
