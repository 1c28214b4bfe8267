#!/usr/bin/env bash
# Namespace test of the dataplane's TCP against the Linux stack, with a given NIC backend (afxdp | tap):
#  1. Linux client -> native-API echo server on the dataplane: BYTES each way, SHA-256 checked
#  2. dataplane client (native API) -> Linux echo server: BYTES each way, every byte checked (TAP too: the client's
#     interface joins the namespace as soon as it exists)
# With NETEM="--loss 0.05 --reorder 0.25 ..." (ixnetem's options: this kernel has no sch_netem) the link between
# the dataplane and Linux is impaired both ways, for both transfers (AF_XDP only).
# With QUEUES=2 (AF_XDP) both veth ends get 2 queues each way, both roles run with IX_QUEUES=2, and the client
# role opens CONNS connections (default 16) sharing BYTES: Linux picks each connection's TX queue from a random
# per-socket hash, so each one's replies land on the queue that opened it (0) or on the other (1), which must steer
# them to 0 in software. The test asserts that frames were steered (the chance that all 16 connections hashed to
# queue 0 is 2^-16) and that none was dropped for a full inbox is reported.
# Usage: tcp_test.sh BACKEND BUILD_DIR [BYTES [QUEUES [CONNS]]]   (root)
set -euo pipefail
backend="$1"
build="$2"
bytes="${3:-268435456}"
queues="${4:-1}"
conns="${5:-$([ "$queues" -gt 1 ] && echo 16 || echo 1)}"
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"
TH_ID="t${backend:0:1}${queues}$$"
source "$here/../scripts/testhost.sh"
source "$here/../scripts/impaired_link.sh"
work="$(mktemp -d)"
export IX_IP="$TH_DP_IP/24" IX_BACKEND="$backend" IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-info}" IX_QUEUES="$queues"
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }

if [ -n "${NETEM:-}" ]; then
    # shellcheck disable=SC2086
    impaired_create $NETEM
    trap 'impaired_cleanup; testhost_cleanup; rm -rf "$work"' EXIT
    echo "impaired link: $NETEM"
elif [ "$backend" = tap ]; then
    testhost_ns_only
    trap 'testhost_cleanup; rm -rf "$work"' EXIT
else
    testhost_create "$queues"
    trap 'testhost_cleanup; rm -rf "$work"' EXIT
fi
export IX_IFACE="$TH_LOCAL"

attach_peer() {  # after the dataplane created its TAP, move it into the namespace
    if [ "$backend" = tap ]; then
        ip link set "$TH_LOCAL" netns "$TH_NS"
        testhost_peer_setup "$TH_LOCAL"
    fi
}

echo "== Linux client -> dataplane echo server, $bytes bytes each way"
"$build/ix_tcp_echo" server 7 >"$work/server.log" 2>&1 &
server=$!
TH_PIDS+=("$server")
wait_for_line "$work/server.log" '^ready' 20 || fail "server did not start"
attach_peer
in_ns timeout 900 python3 "$here/peer.py" tcp-client "$TH_DP_IP" 7 --bytes "$bytes" --timeout 60 \
    || fail "Linux client transfer"
"$ixctl" --dir "$work" stats | grep -E "tcp_|drop_|rx_packets|tx_packets" || true
kill -TERM "$server"; wait "$server" || fail "server exit status"
grep connections= "$work/server.log"

grep "closed:" "$work/server.log" || true

per_conn=$((bytes / conns))
echo "== dataplane client -> Linux echo server, $conns connection(s) x $per_conn bytes each way, $queues queue(s)"
in_ns python3 "$here/peer.py" tcp-echo-server 9000 --seconds 900 >"$work/echo.log" 2>&1 &
TH_PIDS+=("$!")
wait_for_line "$work/echo.log" ready 10 || fail "Linux echo server"
start=$(date +%s%N)
if [ "$backend" = tap ]; then
    # The client creates its TAP interface as it starts; it joins the namespace once it exists (until then the
    # client's ARP request and SYN go nowhere and are sent again).
    timeout 900 "$build/ix_tcp_echo" client "$TH_PEER_IP" 9000 "$per_conn" "$conns" \
        >"$work/client.log" 2>"$work/client-dataplane.log" &
    client=$!
    TH_PIDS+=("$client")
    for _ in $(seq 200); do ip link show dev "$TH_LOCAL" >/dev/null 2>&1 && break; sleep 0.05; done
    attach_peer
    wait "$client" || fail "dataplane client transfer"
    cat "$work/client.log"
else
    timeout 900 "$build/ix_tcp_echo" client "$TH_PEER_IP" 9000 "$per_conn" "$conns" 2>"$work/client-dataplane.log" \
        | tee "$work/client.log" || fail "dataplane client transfer"
fi
echo "client transfer: $((($(date +%s%N) - start) / 1000000)) ms"
grep -q "client ok" "$work/client.log" || fail "dataplane client"
grep "closed:" "$work/client-dataplane.log" || true
if [ "$queues" -gt 1 ]; then
    total() { awk -F"$1=" 'NF > 1 { split($2, v, " "); s += v[1] } END { print s + 0 }' "$work/client-dataplane.log"; }
    steered=$(total steered_in)
    echo "client: frames steered between queues: $steered, dropped for a full inbox: $(total drop_steer_full)," \
        "RSTs sent: $(total tcp_rst_sent)"
    [ "$steered" -gt 0 ] || fail "no reply reached the queue that did not connect: steering not exercised"
fi
[ -n "${NETEM:-}" ] && impaired_stop
echo "PASS tcp_test $backend ${NETEM:-clean}"
