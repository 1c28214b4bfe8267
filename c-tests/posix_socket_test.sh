#!/usr/bin/env bash
# POSIX sockets on libix against the Linux TCP stack: c-tests/posix_socket_test.c (plain POSIX C) runs
#  1. as the control: no libix, the kernel owning 198.18.0.1 on the veth end (proves the test checks POSIX);
#  2. under LD_PRELOAD=libix.so with the dataplane (AF_XDP) on that veth end, so its sockets on 198.18.0.1 and to
#     198.18.0.0/24 are dataplane sockets; after every case the dataplane's counters (ixctl) must show no TCP
#     connection and every mbuf back (pool_available at its idle value).
# The Linux peers (c-tests/peer.py) run in the test host's namespace (198.18.0.2).
# Usage: posix_socket_test.sh BUILD_DIR [LIBIX_SO]   (root; POSIX_QUEUES=N: N NIC queues, default 1)
#        posix_socket_test.sh --idle WORK_DIR start|caseN|end quiet|verbose   (the idle check the C program runs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"

if [ "${1:-}" = "--idle" ]; then
    work="$2" what="$3" verbose="$4"
    "$ixctl" --dir "$work" stats --json 2>/dev/null | python3 -c '
import json, sys
work, what, verbose = sys.argv[1:]
pages = json.load(sys.stdin)
v = {}
for name in ("tcp_connections", "mbufs_lent", "mbufs_in_stack", "pool_available", "pool_capacity",
             "cmd_bad_handle", "cmd_invalid", "steered_in", "drop_steer_full"):
    vals = [q[name] for p in pages for q in p["queues"] if name in q]
    v[name] = sum(vals) if vals else -1
if v["pool_capacity"] <= 0:
    sys.exit(f"idle check {what}: no statistics page in {work}")
if what == "start":
    open(f"{work}/idle_pool", "w").write(str(v["pool_available"]))
idle = int(open(f"{work}/idle_pool").read())
# The fill ring is topped up in batches of 32, so the idle pool level moves by up to 31 per queue
# (tcp_scale_test.sh).
# Commands the dataplane refused (bad handle, invalid) would mean the layer lost track of a connection.
slack = 31 * max(1, sum(len(p["queues"]) for p in pages))
ok = v["tcp_connections"] == 0 and v["mbufs_lent"] == 0 and v["mbufs_in_stack"] in (0, -1) \
    and idle - slack <= v["pool_available"] <= idle + slack and v["cmd_bad_handle"] == 0 and v["cmd_invalid"] == 0
if verbose == "verbose" or (ok and what != "start"):
    state = "ok" if ok else "NOT IDLE"
    print(f"  idle check {what}: {state} {v} (idle pool_available {idle})", flush=True)
sys.exit(0 if ok else 1)
' "$work" "$what" "$verbose"
    exit
fi

build="$1"
libix="${2:-$here/../target/release/libix.so}"
prog="$build/posix_socket_test"
[ -x "$prog" ] || { echo "missing $prog" >&2; exit 1; }
[ -f "$libix" ] || { echo "missing $libix" >&2; exit 1; }
TH_ID="px$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
queues="${POSIX_QUEUES:-1}"   # NIC queues of the veth pair and the dataplane
testhost_create "$queues"
# Case 18's destination with no route: in 198.19.0.0/16 (ours, outside the /24), unique per run. The dataplane
# has no gateway, so nothing routes it; for the control run the kernel is told so by a policy rule (its main
# table would send it to the default route): an `unreachable` rule answers ENETUNREACH and sends nothing.
unroutable="198.19.$(($$ / 254 % 256)).$(($$ % 254 + 1))"
ip rule add to "$unroutable/32" unreachable
trap 'ip rule del to "$unroutable/32" unreachable 2>/dev/null; testhost_cleanup; rm -rf "$work"' EXIT

export POSIX_DP_IP="$TH_DP_IP" POSIX_PEER_IP="$TH_PEER_IP" POSIX_UNROUTABLE="$unroutable"
export POSIX_PEER="ip netns exec $TH_NS python3 $here/peer.py"
# Our listening ports (TCP base + 0..10, UDP base + 0..3); INADDR_ANY needs TCP base + 8 and UDP base + 3 free on
# 127.0.0.1 too.
export POSIX_PORT="$((21000 + ($$ % 500) * 20))"
rc=0

echo "== control: the same program on the Linux kernel (198.18.0.1 on $TH_LOCAL)"
ip addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
ethtool -K "$TH_LOCAL" tx off >/dev/null 2>&1 || true
for _ in $(seq 50); do in_ns ping -c 1 -W 1 "$TH_DP_IP" >/dev/null 2>&1 && break; sleep 0.1; done
timeout 600 "$prog" || { echo "FAIL: control run (kernel) failed: the test, not libix, is wrong" >&2; rc=1; }
ip addr flush dev "$TH_LOCAL"
in_ns ip neigh flush all

echo "== libix: LD_PRELOAD=$libix, dataplane on $TH_LOCAL (AF_XDP)"
export POSIX_IDLE="bash $here/posix_socket_test.sh --idle $work"
IXCTL="$ixctl" LD_PRELOAD="$libix" IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_QUEUES="$queues" \
    IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-warn}" timeout 600 "$prog" || { echo "FAIL: libix run" >&2; rc=1; }
[ "$rc" -eq 0 ] && echo "PASS posix_socket_test"
exit "$rc"
