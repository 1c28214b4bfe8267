#!/usr/bin/env bash
# Namespace test of the dataplane's TCP against the Linux stack, with a given NIC backend (afxdp | tap):
#  1. Linux client -> native-API echo server on the dataplane: BYTES each way, SHA-256 checked
#  2. dataplane client (native API) -> Linux echo server: BYTES each way, every byte checked
# With NETEM="--loss 0.05 --reorder 0.25 ..." (ixnetem's options: this kernel has no sch_netem) the link between
# the dataplane and Linux is impaired both ways, for both transfers (AF_XDP only).
# Usage: tcp_test.sh BACKEND BUILD_DIR [BYTES]   (root)
set -euo pipefail
backend="$1"
build="$2"
bytes="${3:-268435456}"
here="$(cd "$(dirname "$0")" && pwd)"
ixctl="${IXCTL:-$here/../target/release/ixctl}"
TH_ID="t${backend:0:1}$$"
source "$here/../scripts/testhost.sh"
source "$here/../scripts/impaired_link.sh"
work="$(mktemp -d)"
export IX_IP="$TH_DP_IP/24" IX_BACKEND="$backend" IX_STATS_DIR="$work" IX_LOG="${IX_LOG:-info}"
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
    testhost_create 1
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

if [ "$backend" = afxdp ]; then
    echo "== dataplane client -> Linux echo server, $bytes bytes each way"
    in_ns python3 "$here/peer.py" tcp-echo-server 9000 --seconds 900 >"$work/echo.log" 2>&1 &
    TH_PIDS+=("$!")
    wait_for_line "$work/echo.log" ready 10 || fail "Linux echo server"
    timeout 900 "$build/ix_tcp_echo" client "$TH_PEER_IP" 9000 "$bytes" | tee "$work/client.log" \
        || fail "dataplane client transfer"
    grep -q "client ok" "$work/client.log" || fail "dataplane client"
fi
[ -n "${NETEM:-}" ] && impaired_stop
echo "PASS tcp_test $backend ${NETEM:-clean}"
