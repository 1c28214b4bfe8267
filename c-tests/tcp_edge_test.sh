#!/usr/bin/env bash
# TCP edge cases of the dataplane against the Linux stack (AF_XDP), each checked through the dataplane's own
# counters (ixctl) and, at the end of each case, no connection left and no mbuf missing:
#   refused   SYN to a closed port gets RST (Linux sees ECONNREFUSED)
#   reset     peer RST in the middle of a transfer: the connection dies (TcpDead) and is freed
#   halfclose the peer shuts down its direction first; we keep sending, then close (the echo test)
#   unread    the app closes while still holding received data: freed when the connection dies
#   backlog   the app never accepts: the backlog fills, later SYNs are dropped and counted
#   synflood  a raw-socket SYN flood at a small backlog gets SYN cookies while a real client is served; once
#             the flood's half-open connections are reset, the backlog is free again (no cookie for the next)
#   timewait  a stray SYN from the port of a connection the peer holds in TIME_WAIT: the SYN-ACK draws that
#             socket's ACK (not a RST); the half-open connection still ends in seconds, not SYN retries (~2 min)
# Usage: tcp_edge_test.sh BUILD_DIR   (root)
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"
TH_ID="te$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
# At info, the dataplane lists the connections still open when the server stops (what a failed settle needs).
export IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-warn,ix::runtime=info}"
server=
fail() {
    echo "FAIL: $*" >&2
    "$ixctl" --dir "$work" stats >&2 || true
    if [ -n "$server" ] && kill -TERM "$server" 2>/dev/null; then
        wait "$server" || true
    fi
    tail -40 "$work/server.log" >&2 || true
    exit 1
}
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT
export IX_IFACE="$TH_LOCAL"
dp_mac="$(cat "/sys/class/net/$TH_LOCAL/address")"

counter() { "$ixctl" --dir "$work" stats --json | python3 -c "import json,sys; print(sum(q['$1'] for q in json.load(sys.stdin)[0]['queues']))"; }
# settle NAME VALUE SECONDS: wait until a counter (published each millisecond) reaches VALUE.
settle() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(counter "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 is $(counter "$1"), expected $2"
}
start() {
    "$build/ix_tcp_echo" "$@" >"$work/server.log" 2>&1 &
    server=$!
    TH_PIDS=("$server")
    wait_for_line "$work/server.log" '^ready' 20 || fail "server $* did not start"

}
stop() {
    settle tcp_connections 0 10
    settle mbufs_in_stack 0 5
    kill -TERM "$server"
    wait "$server" || fail "server exit status"
    TH_PIDS=()
}

echo "== refused"
start server 7
in_ns python3 "$here/peer.py" tcp-refused "$TH_DP_IP" 9 || fail "no RST for a closed port"
[ "$(counter tcp_rst_sent)" -ge 1 ] || fail "tcp_rst_sent"

echo "== reset mid-transfer"
in_ns python3 "$here/peer.py" tcp-rst-midway "$TH_DP_IP" 7 --bytes 300000
settle tcp_resets_received 1 5

echo "== half-close: the peer shuts down first, the echo keeps coming, then we close"
in_ns python3 "$here/peer.py" tcp-client "$TH_DP_IP" 7 --bytes 2000000 --conns 4 || fail "half-close echo"
stop

echo "== closing with unread data"
start sink 7
in_ns python3 "$here/peer.py" tcp-client "$TH_DP_IP" 7 --bytes 1000 --conns 3 --timeout 5 >/dev/null 2>&1 || true
stop

echo "== backlog overflow"
start noaccept 7 16
in_ns python3 "$here/peer.py" tcp-connect-many "$TH_DP_IP" 7 --count 40 --timeout 3 | tee "$work/many.log"
# Past the backlog, SYN cookies answer and Linux believes those connections are up (as with a Linux server);
# the dataplane keeps exactly the backlog waiting for accept and drops the rest, counted.
sleep 0.5
[ "$(counter tcp_connections)" -eq 16 ] || fail "expected the backlog (16) waiting, got $(counter tcp_connections)"
[ "$(counter tcp_accept_queue)" -eq 16 ] || fail "tcp_accept_queue is $(counter tcp_accept_queue), expected 16"
[ "$(counter tcp_backlog_drops)" -ge 1 ] || fail "tcp_backlog_drops"
kill -TERM "$server"; wait "$server" || true; TH_PIDS=()

echo "== SYN flood at backlog 64 while a real client is served"
start server 7 64
in_ns python3 "$here/peer.py" syn-flood "$TH_PEER" "$dp_mac" --port 7 --count 30000 --seconds 4 >"$work/flood.log" &
flood=$!
TH_PIDS+=("$flood")
in_ns python3 "$here/peer.py" tcp-client "$TH_DP_IP" 7 --bytes 8000000 --conns 2 || fail "client starved by the flood"
wait "$flood" || true
cat "$work/flood.log"
cookies="$(counter tcp_syn_cookies_sent)" opens="$(counter tcp_passive_opens)"
echo "syn cookies sent: $cookies, passive opens: $opens"
[ "$cookies" -ge 1 ] || fail "no SYN cookies under flood"
settle tcp_connections 0 10
settle tcp_half_open 0 1
in_ns python3 "$here/peer.py" tcp-client "$TH_DP_IP" 7 --bytes 1000 --conns 1 >/dev/null || fail "client after the flood"
[ "$(counter tcp_syn_cookies_sent)" = "$cookies" ] || fail "the backlog stayed full after the flood (a cookie again)"
[ "$(counter tcp_passive_opens)" = $((opens + 1)) ] || fail "passive opens after the flood"
stop

echo "== stray SYN from a port in TIME_WAIT at the peer"
start server 7
in_ns python3 "$here/peer.py" syn-after-time-wait "$TH_PEER" "$dp_mac" --port 7
settle tcp_passive_opens 2 5
stop
echo "PASS tcp_edge_test"
