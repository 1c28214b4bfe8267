#!/usr/bin/env bash
# The main job: builds libix, creates a Linux test host in a network namespace joined by veth, starts a UDP
# echo server on the dataplane (AF_XDP on the veth end, native IX API), pings it, runs a UDP echo load against
# it, prints the figures and the dataplane's own counters, and cleans up. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/demo.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
build="${BUILD_DIR:-build}"
echo "== building (release)"
cmake -S . -B "$build" -DIX_CARGO_PROFILE=release >/dev/null
cmake --build "$build" -j 2 >/dev/null
bin="target/release"

TH_ID="demo$$"
source scripts/testhost.sh
work="$(mktemp -d)"
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT

export IX_IFACE="$TH_LOCAL" IX_IP="$TH_DP_IP/24" IX_BACKEND=afxdp IX_STATS_DIR="$work" IX_LOG=info
echo "== test host: namespace $TH_NS ($TH_PEER_IP), dataplane on $TH_LOCAL ($TH_DP_IP)"
taskset -c 1 "$build/ix_udp_echo" server 7 >"$work/server.log" 2>&1 &
TH_PIDS+=("$!")
wait_for_line "$work/server.log" '^ready' 20
grep -E "attached|AF_XDP socket" "$work/server.log" | sed 's/^\[[^]]*\] /  /'

echo "== ping from Linux to the dataplane (ICMP answered by our stack)"
in_ns ping -c 200 -i 0.005 -q "$TH_DP_IP" | tail -2

echo "== UDP echo: Linux client in the namespace -> dataplane, 64-byte datagrams"
if [ -x "$bin/ixbench" ]; then
    in_ns taskset -c 0 "$bin/ixbench" udp-echo --server "$TH_DP_IP:7" --size 64 --duration 5 --window 16 \
        --connections 4
else
    in_ns python3 c-tests/peer.py udp-client "$TH_DP_IP" 7 --sizes 1-1472
fi

echo "== the dataplane's counters (ixctl stats)"
"$bin/ixctl" --dir "$work" stats
