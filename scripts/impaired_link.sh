# Shell helpers: the test host of scripts/testhost.sh behind an impaired link (loss, duplication, reordering,
# corruption, delay), for tests that need `tc netem`-style faults on a kernel without sch_netem.
# Source it (it sources testhost.sh), then call impaired_create with ixnetem's fault options:
#
#   source scripts/impaired_link.sh
#   impaired_create --loss 0.05 --reorder 0.25 --duplicate 0.05 --corrupt 0.01 --delay 2 --jitter 1 --seed 1
#   ... run the dataplane on $TH_LOCAL, the Linux peer with in_ns ...
#   impaired_stop      # optional: stop ixnetem now and print its final counters
#
# Topology (names unique per TH_ID, default $$; only 198.18.0.0/15 is addressed):
#
#   root ns: TH_LOCAL (ixd$ID, up, no address: the dataplane's)
#              │ veth
#   ns IM_NS (ixm$ID): IM_A (ixa$ID) ══ ixnetem --a IM_A --b IM_B ══ IM_B (ixb$ID)     no addresses, no IPv6
#                                                                       │ veth
#   ns TH_NS (ixn$ID): TH_PEER (ixp$ID) 198.18.0.2/24, the Linux test host
#
# Offloads, so that every frame crossing ixnetem is a complete Ethernet frame of at most MTU + 14 bytes:
#   - TH_PEER: `ethtool -K tx off tso off gso off gro off` (testhost_peer_setup already turns tx off: a Linux
#     sender over veth otherwise leaves TCP/UDP checksums partial; ixnetem would complete them in software and
#     count them as csum_partial/csum_fixed, but the dataplane should see frames as a real wire carries them);
#   - IM_A, IM_B: `tx off tso off gso off gro off`; TH_LOCAL: `tso off gso off gro off` (no GSO super-frames, no
#     GRO merging; the dataplane's own frames are complete and at most MTU-sized anyway).
#
# Cleanup: impaired_create installs `trap 'impaired_cleanup; testhost_cleanup' EXIT` (and INT/TERM → exit 130).
# A caller that installs its own EXIT trap must keep both, in that order: impaired_cleanup stops ixnetem and
# deletes IM_NS, testhost_cleanup kills the other TH_PIDS and deletes TH_NS and TH_LOCAL. ixnetem's pid is also
# in TH_PIDS, so testhost_cleanup alone still stops it (then only IM_NS is left behind). ixnetem's own hard stop
# (--duration, default 600 s) bounds it even if nothing cleans up.
#
# ixnetem binary: $IXNETEM, else target/release/ixnetem, else target/debug/ixnetem
# (build: cargo build --release -p ix-tools --bin ixnetem). Its output goes to $IM_LOG, removed by
# impaired_cleanup unless the script exits with a failure.

IM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
declare -F testhost_cleanup >/dev/null || source "$IM_DIR/testhost.sh"

IM_NS="ixm${TH_ID}"
IM_A="ixa${TH_ID}"
IM_B="ixb${TH_ID}"
IM_PID=""
IM_LOG=""

# impaired_bin: path of the ixnetem binary, or an error.
impaired_bin() {
    local c
    for c in "${IXNETEM:-}" "$IM_DIR/../target/release/ixnetem" "$IM_DIR/../target/debug/ixnetem"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    echo "impaired_link.sh: no ixnetem binary; build it (cargo build --release -p ix-tools --bin ixnetem) or set IXNETEM" >&2
    return 1
}

impaired_cleanup() {
    # Runs from an EXIT trap under `set -e`: nothing here may abort the rest of the cleanup. $? is the exit
    # status: ixnetem's log is kept (and named) only when the script fails.
    local rc=$?
    set +e
    if [ -n "$IM_PID" ]; then
        kill "$IM_PID" 2>/dev/null
        wait "$IM_PID" 2>/dev/null
        IM_PID=""
    fi
    ip netns del "$IM_NS" 2>/dev/null
    if [ -n "$IM_LOG" ] && [ -f "$IM_LOG" ]; then
        if [ "$rc" -eq 0 ]; then
            rm -f "$IM_LOG"
        else
            echo "impaired_link.sh: ixnetem log kept at $IM_LOG" >&2
        fi
    fi
    true
}

# impaired_create NETEM_ARGS...: build the topology above and start ixnetem with NETEM_ARGS (see ixnetem --help:
# --loss P --duplicate P --reorder P --corrupt P --delay MS --jitter MS --seed N --duration S --stats-every S
# --a-to-b K=V,... --b-to-a K=V,...; A is the dataplane side, B the Linux test host's side).
# Returns once ixnetem forwards; fails (and prints its log) if it does not start.
impaired_create() {
    local bin ifc i
    bin="$(impaired_bin)" || return 1
    trap 'impaired_cleanup; testhost_cleanup' EXIT
    trap 'exit 130' INT TERM
    ip netns add "$TH_NS"
    ip netns add "$IM_NS"
    # The middle namespace only bridges: no IPv6 link-local chatter of its own onto either link.
    ip netns exec "$IM_NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip link add name "$TH_LOCAL" type veth peer name "$IM_A" netns "$IM_NS"
    ip -n "$IM_NS" link add name "$IM_B" type veth peer name "$TH_PEER" netns "$TH_NS"
    ethtool -K "$TH_LOCAL" tso off gso off gro off >/dev/null 2>&1 || true
    ip link set dev "$TH_LOCAL" up
    for ifc in "$IM_A" "$IM_B"; do
        ip netns exec "$IM_NS" ethtool -K "$ifc" tx off tso off gso off gro off >/dev/null
        ip -n "$IM_NS" link set dev "$ifc" up
    done
    testhost_peer_setup "$TH_PEER"
    in_ns ethtool -K "$TH_PEER" tx off tso off gso off gro off >/dev/null || {
        echo "impaired_link.sh: cannot turn offloads off on $TH_PEER (is ethtool installed?)" >&2
        return 1
    }
    IM_LOG="$(mktemp "/tmp/ixnetem.${TH_ID}.XXXXXX")"
    ip netns exec "$IM_NS" "$bin" --a "$IM_A" --b "$IM_B" "$@" >"$IM_LOG" 2>&1 &
    IM_PID=$!
    TH_PIDS+=("$IM_PID")
    for ((i = 0; i < 100; i++)); do
        grep -q '^ixnetem: running' "$IM_LOG" 2>/dev/null && return 0
        if ! kill -0 "$IM_PID" 2>/dev/null; then
            echo "impaired_link.sh: ixnetem did not start:" >&2
            cat "$IM_LOG" >&2
            IM_PID=""
            return 1
        fi
        sleep 0.05
    done
    echo "impaired_link.sh: ixnetem not running after 5 s:" >&2
    cat "$IM_LOG" >&2
    return 1
}

# impaired_stop: stop ixnetem (SIGTERM) and print its final counters, one line per direction (a>b: toward the
# Linux test host, b>a: toward the dataplane).
impaired_stop() {
    if [ -n "$IM_PID" ]; then
        kill "$IM_PID" 2>/dev/null || true
        wait "$IM_PID" 2>/dev/null || true
        IM_PID=""
    fi
    grep '^ixnetem: final\|^ixnetem: stopped' "$IM_LOG" 2>/dev/null || true
}

# impaired_stats: the latest counters ixnetem printed (with --stats-every), or its final ones.
impaired_stats() {
    grep '^ixnetem: [0-9.]*s \|^ixnetem: final' "$IM_LOG" 2>/dev/null | tail -n 2
}
