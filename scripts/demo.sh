#!/usr/bin/env bash
# The main job: builds libix, creates a Linux test host in a network namespace joined by veth, runs Debian's own
# memcached binary, unmodified, on libix (`ixrun`: LD_PRELOAD, the dataplane on the veth end over AF_XDP), talks
# to it from the Linux host through the dataplane and from this host through the kernel (127.0.0.1), runs a
# memcaslap load against it from the namespace, prints the figures and the dataplane's counters, and cleans up.
# Needs root. DEMO_SECONDS (default 10) bounds the load.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/demo.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
build="${BUILD_DIR:-build}"
secs="${DEMO_SECONDS:-10}"
echo "== building (release)"
cmake -S . -B "$build" -DIX_CARGO_PROFILE=release >/dev/null
cmake --build "$build" -j 2 >/dev/null
bin="target/release"

TH_ID="demo$$"
source scripts/testhost.sh
work="$(mktemp -d)"
testhost_create 1
trap 'testhost_cleanup; rm -rf "$work"' EXIT
port=11211
# Debian's memcached service may hold 127.0.0.1:11211; our INADDR_ANY listener needs the kernel port too.
if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    port=11311
fi

echo "== test host: namespace $TH_NS ($TH_PEER_IP); the dataplane owns $TH_LOCAL ($TH_DP_IP)"
echo "== ixrun -- memcached (Debian's binary, unmodified): -t 2 -p $port"
taskset -c 1 "$bin/ixrun" --iface "$TH_LOCAL" --ip "$TH_DP_IP/24" --stats-dir "$work" --log info -- \
    memcached -u root -t 2 -p "$port" -U 0 -c 4096 >"$work/memcached.log" 2>&1 &
TH_PIDS+=("$!")
wait_for_line "$work/memcached.log" 'dataplane sockets on' 20
grep -E "attached|AF_XDP socket|dataplane sockets" "$work/memcached.log" | sed 's/^\[[^]]*\] /  /'
for _ in $(seq 100); do
    in_ns python3 -c "import socket; socket.create_connection(('$TH_DP_IP', $port), timeout=1)" 2>/dev/null && break
    sleep 0.1
done

echo "== ping from Linux to the dataplane (ICMP answered by our stack)"
in_ns ping -c 100 -i 0.005 -q "$TH_DP_IP" | tail -1

echo "== set over the dataplane (Linux client in the namespace), get over the kernel (127.0.0.1): one memcached"
in_ns python3 - "$TH_DP_IP" "$port" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"set libix-demo 0 0 23\r\nserved by the dataplane\r\n")
print("  dataplane:", s.recv(100).decode().strip())
PY
python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"get libix-demo\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    data += s.recv(1000)
print("  kernel:   ", data.decode().split("\r\n")[1])
PY

echo "== memcaslap from the namespace: 90% get / 10% set, 32 connections, ${secs}s"
in_ns timeout $((secs + 20)) taskset -c 0 memcaslap -s "$TH_DP_IP:$port" -t "${secs}s" -c 32 -T 1 2>&1 \
    | grep -E "^(cmd_get|cmd_set|get_misses|Run time)" | sed 's/^/  /'

echo "== the dataplane's counters (ixctl stats)"
"$bin/ixctl" --dir "$work" stats
