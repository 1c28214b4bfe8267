#!/usr/bin/env bash
# Two event bases watching one dataplane UDP socket (c-tests/shared_watch_test.c): the dataplane on a veth end
# (AF_XDP), a Linux peer in the namespace sending a datagram every 50 ms (at most 600: 30 s).
# Usage: shared_watch_test.sh BUILD_DIR   (root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1/shared_watch_test"
TH_ID="sw$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT
port=7171

IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG=info \
    "$bin" "$TH_DP_IP" "$port" >"$work/out.log" 2>&1 &
prog=$!
TH_PIDS+=("$prog")
wait_for_line "$work/out.log" '^ready' 20 || { cat "$work/out.log"; exit 1; }
in_ns python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(600):
    s.sendto(b"datagram %d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.05)
' "$TH_DP_IP" "$port" 2>/dev/null &
TH_PIDS+=("$!")
rc=0
wait "$prog" || rc=$?
cat "$work/out.log"
exit "$rc"
