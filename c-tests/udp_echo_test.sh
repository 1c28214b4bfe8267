#!/usr/bin/env bash
# Namespace test of the dataplane with a given NIC backend (afxdp | tap), against the Linux stack:
#  1. Linux ping to the dataplane: 1000 echoes, 0 lost          (ICMP, ARP Linux -> dataplane)
#  2. Linux UDP client vs the native-API C echo server, sizes 1..1472, byte-exact
#  3. malformed frames from a raw socket: each counted in its drop counter, service continues
#  4. the dataplane as UDP client of a Linux echo server        (ARP dataplane -> Linux)
# Usage: udp_echo_test.sh BACKEND BUILD_DIR [QUEUES]   (run as root)
# With QUEUES > 1 (AF_XDP), the UDP load uses 16 flows and every queue must have served some of them.
set -euo pipefail
backend="$1"
bin="$2/ix_udp_echo"
queues="${3:-1}"
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"
TH_ID="u${backend:0:1}${queues}$$"
source "$here/../scripts/testhost.sh"
work="$(mktemp -d)"
trap 'testhost_cleanup; rm -rf "$work"' EXIT

export IX_IP="$TH_DP_IP/24" IX_QUEUES="$queues" IX_BACKEND="$backend" IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-info}"
fail() { echo "FAIL: $*" >&2; echo "--- server log:" >&2; cat "$work/server.log" >&2 || true; exit 1; }

if [ "$backend" = tap ]; then
    testhost_ns_only
    export IX_IFACE="$TH_LOCAL"
else
    testhost_create "$queues"
    export IX_IFACE="$TH_LOCAL"
fi
trap 'testhost_cleanup; rm -rf "$work"' EXIT

"$bin" server 7 >"$work/server.log" 2>&1 &
server=$!
TH_PIDS+=("$server")
wait_for_line "$work/server.log" '^ready' 20 || fail "server did not start"
if [ "$backend" = tap ]; then
    # The TAP interface is the Linux host's side of the link: move it into the namespace.
    ip link set "$TH_LOCAL" netns "$TH_NS"
    testhost_peer_setup "$TH_LOCAL"
    peer_if="$TH_LOCAL"
else
    peer_if="$TH_PEER"
fi

echo "== ping: 1000 echoes"
out="$(in_ns ping -c 1000 -i 0.002 -W 2 -q "$TH_DP_IP")" || true
echo "$out" | tail -2
echo "$out" | grep -q "1000 packets transmitted, 1000 received" || fail "ping lost echoes"

echo "== ARP: Linux resolved the dataplane"
dp_mac="$(in_ns ip neigh show "$TH_DP_IP" dev "$peer_if" | awk '{print $3}')"
[ -n "$dp_mac" ] && [ "$dp_mac" != FAILED ] || fail "no neighbour entry for the dataplane"
echo "dataplane MAC seen by Linux: $dp_mac"

echo "== UDP echo, sizes 1..1472"
in_ns python3 "$here/peer.py" udp-client "$TH_DP_IP" 7 --sizes 1-1472 --sockets 16 || fail "UDP echo not byte-exact"

echo "== malformed frames"
in_ns python3 "$here/peer.py" malformed "$peer_if" "$dp_mac" --repeat 3
sleep 0.3
in_ns python3 "$here/peer.py" udp-client "$TH_DP_IP" 7 --sizes 1-64 || fail "service stopped after malformed frames"
"$ixctl" --dir "$work" stats --json >"$work/stats.json"
python3 - "$work/stats.json" <<'PY' || fail "drop counters"
import json, sys
queues = json.load(open(sys.argv[1]))[0]["queues"]
served = [x["udp_rx_delivered"] for x in queues]
print("datagrams per queue:", served)
if min(served) == 0:
    print("a queue served no flow")
    sys.exit(1)
q = {k: sum(x[k] for x in queues) for k in queues[0]}
want = ["drop_eth_not_for_us", "drop_eth_unknown_type", "drop_arp_malformed", "drop_ip_malformed", "drop_ip_checksum",
        "drop_ip_fragment", "drop_ip_not_for_us", "drop_ip_unknown_proto", "drop_udp_malformed",
        "drop_udp_checksum", "drop_icmp_malformed"]
missing = [w for w in want if q[w] < 3]
print({w: q[w] for w in want})
print("rx_packets", q["rx_packets"], "tx_packets", q["tx_packets"], "icmp_echo_replies", q["icmp_echo_replies"])
if missing:
    print("missing drops:", missing)
    sys.exit(1)
PY

if [ "$backend" = afxdp ]; then
    echo "== partial checksums (peer TX offload on): counted and dropped, with a hint in the log"
    in_ns ethtool -K "$peer_if" tx on >/dev/null
    in_ns python3 "$here/peer.py" udp-send "$TH_DP_IP" 7 --count 10
    sleep 0.3
    in_ns ethtool -K "$peer_if" tx off >/dev/null
    "$ixctl" --dir "$work" stats --json >"$work/stats2.json"
    python3 -c 'import json,sys; q=json.load(open(sys.argv[1]))[0]["queues"]; n=sum(x["drop_checksum_partial"] for x in q); print("drop_checksum_partial", n); sys.exit(0 if n >= 10 else 1)' "$work/stats2.json" || fail "partial checksums not counted"
    grep -q "ethtool -K" "$work/server.log" || fail "no hint about TX offload in the log"
fi

kill -TERM "$server"
wait "$server" || fail "server exited with an error"
TH_PIDS=()
grep echoed "$work/server.log"

echo "== the dataplane as client: ARP dataplane -> Linux"
if [ "$queues" -gt 1 ]; then
    echo "(skipped with several queues: on veth, Linux picks the queue of its replies, not our flow hash)"
else
    in_ns python3 "$here/peer.py" udp-echo-server 9000 --seconds 60 >"$work/echo.log" 2>&1 &
    TH_PIDS+=("$!")
    wait_for_line "$work/echo.log" ready 10 || fail "Linux echo server did not start"
    if [ "$backend" = tap ]; then
        # The first TAP went away with the server; the client creates a new one, which we move into the
        # namespace before it starts sending.
        IX_CLIENT_GO_FILE="$work/go" "$bin" client "$TH_PEER_IP" 9000 3000 >"$work/client.log" 2>&1 &
        client=$!
        TH_PIDS+=("$client")
        wait_for_line "$work/client.log" '^opened' 20 || fail "client did not open its TAP"
        ip link set "$TH_LOCAL" netns "$TH_NS"
        testhost_peer_setup "$TH_LOCAL"
        touch "$work/go"
        wait "$client" || true
        cat "$work/client.log"
    else
        in_ns ip neigh flush dev "$peer_if" || true
        "$bin" client "$TH_PEER_IP" 9000 3000 2>&1 | tee "$work/client.log"
    fi
    grep -q "ok=3000 bad=0 lost=0" "$work/client.log" || fail "dataplane client"
fi
echo "PASS udp_echo_test $backend"
