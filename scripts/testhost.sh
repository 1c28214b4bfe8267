# Shell helpers for tests and the demo: a Linux test host in a network namespace, joined by veth.
# Source it, then call testhost_create. Names are unique per process; cleanup runs on exit, also on failure.
# Only 198.18.0.0/15 is used: the dataplane is 198.18.0.1/24, the Linux host 198.18.0.2/24.

TH_ID="${TH_ID:-$$}"
TH_NS="ixn${TH_ID}"
TH_LOCAL="ixd${TH_ID}"
TH_PEER="ixp${TH_ID}"
TH_DP_IP=198.18.0.1
TH_PEER_IP=198.18.0.2
TH_PIDS=()

testhost_cleanup() {
    # Runs from an EXIT trap under `set -e`: nothing here may abort the rest of the cleanup.
    set +e
    local p
    for p in "${TH_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${TH_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    # Whatever still runs in the namespace (a peer started through a shell function: its recorded pid is the
    # subshell's, not the peer's) would otherwise outlive the test and keep the namespace alive.
    for p in $(ip netns pids "$TH_NS" 2>/dev/null); do kill "$p" 2>/dev/null; done
    ip netns del "$TH_NS" 2>/dev/null
    ip link del "$TH_LOCAL" 2>/dev/null
    true
}

# testhost_create [QUEUES]: namespace + veth; the Linux end gets 198.18.0.2/24 with TX checksum offload off
# (a Linux sender over veth otherwise leaves partial checksums, DESIGN.md §4).
testhost_create() {
    local q="${1:-1}"
    trap testhost_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns add "$TH_NS"
    ip link add "$TH_LOCAL" numtxqueues "$q" numrxqueues "$q" type veth peer name "$TH_PEER" \
        numtxqueues "$q" numrxqueues "$q" netns "$TH_NS"
    ip link set "$TH_LOCAL" up
    testhost_peer_setup "$TH_PEER"
}

# testhost_ns_only: just the namespace (the TAP backend creates its interface and we move it in).
testhost_ns_only() {
    trap testhost_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns add "$TH_NS"
}

# testhost_peer_setup IFACE [ADDRESS]: address (default the test host's, 198.18.0.2) and bring up IFACE inside the
# namespace.
testhost_peer_setup() {
    local ifc="$1"
    ip -n "$TH_NS" addr add "${2:-$TH_PEER_IP}/24" dev "$ifc"
    ip -n "$TH_NS" link set "$ifc" up
    ip -n "$TH_NS" link set lo up
    ip netns exec "$TH_NS" sysctl -qw net.core.txrehash=0 || true
    ip netns exec "$TH_NS" ethtool -K "$ifc" tx off >/dev/null 2>&1 || true
}

# steer_rps NS DEV CPU_MASK: every receive queue of DEV (inside namespace NS) hands its packets to the CPUs of
# CPU_MASK (hex, as rps_cpus takes it). veth runs a receive in its sender's context; RPS moves it to the
# receiver's side, as a NIC's interrupt would.
steer_rps() {
    local f found=0
    for f in $(ip netns exec "$1" sh -c 'ls -d /sys/class/net/$0/queues/rx-* 2>/dev/null' "$2"); do
        ip netns exec "$1" sh -c 'echo "$1" >"$0/rps_cpus"' "$f" "$3" || return 1
        found=1
    done
    [ "$found" = 1 ] || { echo "steer_rps: $2 has no receive queues with RPS (a kernel without CONFIG_RPS?)" >&2; return 1; }
}

# STEER (benchmarks): where each side's veth receive runs, client on CPU 0, server on CPU 1.
#   server  RPS on the server's veth end: the server's kernel receive (Linux's TCP) runs on the server's core, as
#           after a NIC's interrupt; libix's native XDP still runs in veth's sender context (RPS comes after it),
#           standing for a NIC's RSS and DMA into the ring
#   none    veth as it is: each receive in the sender's context (the Linux server's TCP receive on the client's
#           core, uncounted for the server)
#   both    also RPS on the client's end: the client pays for its own receive (and is then the first to run out
#           of CPU on 2 vCPUs)
# steer_check: exits 2 on any other value.
steer_check() {
    case "${STEER:-}" in server | none | both) ;; *) echo "STEER must be server, none or both" >&2; exit 2 ;; esac
}
# steer_apply CLIENT_NS CLIENT_DEV SERVER_NS SERVER_DEV: the steering of $STEER on one veth pair.
steer_apply() {
    [ "$STEER" != both ] || steer_rps "$1" "$2" 1
    [ "$STEER" = none ] || steer_rps "$3" "$4" 2
}

# in_ns CMD...: run a command on the Linux test host.
in_ns() { ip netns exec "$TH_NS" "$@"; }

# wait_tcp PORT SECONDS [ADDRESS]: wait until the test host connects to ADDRESS:PORT (default: the dataplane's).
wait_tcp() {
    local port="$1" secs="$2" addr="${3:-$TH_DP_IP}" i
    for ((i = 0; i < secs * 10; i++)); do
        in_ns python3 -c "import socket; socket.create_connection(('$addr', $port), timeout=1).close()" \
            2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# wait_for_line FILE PATTERN SECONDS: wait until FILE has a line matching PATTERN.
wait_for_line() {
    local f="$1" pat="$2" secs="$3" i
    for ((i = 0; i < secs * 20; i++)); do
        grep -q "$pat" "$f" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timed out after ${secs}s waiting for '$pat' in $f:" >&2
    cat "$f" >&2
    return 1
}
