#!/usr/bin/env bash
# libevent's API on dataplane sockets (c-tests/dataplane_event_test.c): the dataplane on a veth end (AF_XDP), the
# Linux peers in the namespace, first against Debian's libevent on the kernel (the control), then on libix: a UDP
# sender (a datagram every 50 ms, at most 1200), the pattern client of
# peer.py (CONNS connections echoing BYTES each through evconnlistener + bufferevents) and a Linux echo server
# for the bufferevent client. Usage: dataplane_event_test.sh BUILD_DIR [CONNS] [BYTES]   (root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1/dataplane_event_test"
conns="${2:-16}"
bytes="${3:-4194304}"
TH_ID="de$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT
port=7171

# The Linux echo server for part 3 (bounded: it stops after 180 s).
in_ns python3 "$here/peer.py" tcp-echo-server $((port + 2)) --seconds 180 >"$work/echo.log" 2>&1 &
TH_PIDS+=("$!")
wait_for_line "$work/echo.log" '^ready' 20

# run NAME PROGRAM [ENV...]: one pass of the program against fresh peers.
run() {
    local name="$1" program="$2" rc=0
    shift 2
    echo "== $name"
    env "$@" "$program" "$TH_DP_IP" "$TH_PEER_IP" "$port" "$conns" "$bytes" >"$work/$name.log" 2>&1 &
    local prog=$!
    TH_PIDS+=("$prog")
    wait_for_line "$work/$name.log" '^ready udp' 20 || return 1
    in_ns python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(1200):
    s.sendto(b"datagram %d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.05)
' "$TH_DP_IP" "$port" 2>/dev/null &
    local udp_sender=$!
    TH_PIDS+=("$udp_sender")
    wait_for_line "$work/$name.log" '^ready tcp' 60 || return 1
    kill "$udp_sender" 2>/dev/null || true
    in_ns python3 "$here/peer.py" tcp-pattern-client "$TH_DP_IP" $((port + 1)) --conns "$conns" --bytes "$bytes" \
        --timeout 60 || rc=$?
    wait "$prog" || rc=$?
    grep -v " INFO " "$work/$name.log"
    [ "$rc" = 0 ] || { echo "dataplane_event_test ($name): FAILED (rc $rc)" >&2; return 1; }
}

# 1. The control: Debian's libevent on the kernel, which owns 198.18.0.1 on the veth end for this pass (it proves
#    the program checks libevent's behaviour).
ip addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
ethtool -K "$TH_LOCAL" tx off >/dev/null 2>&1 || true
run control "$1/dataplane_event_test_libevent"
ip addr flush dev "$TH_LOCAL"
in_ns ip neigh flush dev "$TH_PEER"
# 2. libix, the dataplane on the veth end.
run libix "$bin" IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG=info
echo "dataplane_event_test: ok"
