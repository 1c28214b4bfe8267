#!/usr/bin/env bash
# memcached, Linux vs libix, side by side in one run (IX §5.5; issue: memcached on the dataplane): the same
# memcached binary (Debian's), the same cores, the same client (ixbench memcached in the test host's namespace).
#
#   sudo scripts/bench-memcached.sh     (env: DURATION=3 WARMUP=0.5 KEYS=100000 THREADS=1 CONNS=32
#                                              USR_RATES=... ETC_RATES=... VARIANTS="linux libix libix-sleep")
# About 6-8 minutes. Prints a table and writes JSON + PNG plots into the directory it names; figures and their
# reading in BENCHMARKS.md (section memcached).
#
# Topology: scripts/testhost.sh (namespace + veth). The client ixbench runs in the namespace on CPU 0; the server
# memcached -t THREADS -U 0 runs on CPU 1 with the veth end 198.18.0.1:
#   linux        memcached on Linux: 198.18.0.1/24 on the veth end, kernel TCP, real libevent
#   libix        the same binary under ixrun (AF_XDP on the veth end, no kernel IP), IX_SPIN_US default (100 us)
#   libix-sleep  the same with IX_SPIN_US=0 (loops sleep at once when idle)
# Per variant: (1) unloaded latency: one connection, one request at a time (USR); (2) USR and ETC open-loop sweeps
# with the unloaded measuring connection (max RPS whose p99 < 500 us); (3) server CPU time per request at one
# equal offered load (USR at CPU_RATE), from the server's own /proc accounting.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/bench-memcached.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (client on CPU 0, server on CPU 1)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
DURATION="${DURATION:-3}"
WARMUP="${WARMUP:-0.5}"
KEYS="${KEYS:-100000}"
THREADS="${THREADS:-1}"
CONNS="${CONNS:-32}"
USR_RATES="${USR_RATES:-20000,40000,60000,80000,100000,120000,150000}"
ETC_RATES="${ETC_RATES:-20000,40000,60000,80000,100000}"
CPU_RATE="${CPU_RATE:-40000}"
VARIANTS="${VARIANTS:-linux libix libix-sleep}"
PORT=11211
out="$(mktemp -d /tmp/bench-memcached.XXXXXX)"

echo "== building (release)"
cargo build --release -q -p ix-tools -p libix
bin="$PWD/target/release"
bash scripts/setup.sh >/dev/null

TH_ID="bm$$"
source scripts/testhost.sh
testhost_create 1
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; testhost_cleanup' EXIT
# Debian's service may hold 127.0.0.1:11211 (our INADDR_ANY listener also binds the kernel port).
if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
    PORT=11311
fi

start_server() {
    local variant="$1"
    local args=(-u root -t "$THREADS" -p "$PORT" -U 0 -m 2048 -c 4096)
    case "$variant" in
        linux)
            ip addr add "$TH_DP_IP/24" dev "$TH_LOCAL"
            ethtool -K "$TH_LOCAL" tx off >/dev/null 2>&1 || true
            taskset -c 1 memcached "${args[@]}" >"$out/$variant.log" 2>&1 &
            ;;
        libix | libix-sleep)
            ip addr flush dev "$TH_LOCAL"
            local spin=()
            [ "$variant" = libix-sleep ] && spin=(--spin-us 0)
            taskset -c 1 "$bin/ixrun" --iface "$TH_LOCAL" --ip "$TH_DP_IP/24" --stats-dir "$out" "${spin[@]}" -- \
                memcached "${args[@]}" >"$out/$variant.log" 2>&1 &
            ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        in_ns python3 -c "import socket; socket.create_connection(('$TH_DP_IP', $PORT), timeout=1).close()" \
            2>/dev/null && return 0
        sleep 0.1
    done
    echo "the $variant server did not come up:" >&2
    cat "$out/$variant.log" >&2
    return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ixb() { in_ns taskset -c 0 "$bin/ixbench" memcached --server "$TH_DP_IP:$PORT" --keys "$KEYS" "$@"; }

for v in $VARIANTS; do
    echo "== $v"
    start_server "$v"
    # (1) Unloaded latency: one connection, one request at a time.
    ixb --workload usr --conns 1 --depth 1 --duration "$DURATION" --warmup "$WARMUP" \
        --json "$out/$v-unloaded.json" | tail -3
    # (2) Sweeps (the prefill of the first run is reused: same keys, same values).
    ixb --workload usr --no-prefill --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --sweep "$USR_RATES" \
        --json "$out/$v-usr.json" --plot "$out/$v-usr.png" | tail -12
    ixb --workload etc --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --sweep "$ETC_RATES" \
        --json "$out/$v-etc.json" --plot "$out/$v-etc.png" | tail -10
    # (3) Server CPU per request at an equal offered load.
    c0="$(cpu_ticks "$server_pid")"
    ixb --workload usr --no-prefill --conns "$CONNS" --duration "$DURATION" --warmup 0 --rate "$CPU_RATE" \
        --measure-conn false --json "$out/$v-cpu.json" >/dev/null
    c1="$(cpu_ticks "$server_pid")"
    echo "$((c1 - c0))" >"$out/$v-cpu.ticks"
    stop_server
done

python3 - "$out" "$VARIANTS" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
out, variants, hz = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def max_under(rows, slo=500.0):
    ok = [r for r in rows if r.get("errors", 0) == 0 and r["p99"] <= slo and r.get("unsent", 0) == 0]
    return max((r["achieved"] for r in ok), default=0.0)
res = {}
for v in variants:
    un = load(f"{v}-unloaded.json") or [{}]
    usr, etc, cpu = load(f"{v}-usr.json") or [], load(f"{v}-etc.json") or [], load(f"{v}-cpu.json") or [{}]
    ticks = int(open(os.path.join(out, f"{v}-cpu.ticks")).read()) if os.path.exists(os.path.join(out, f"{v}-cpu.ticks")) else 0
    reqs = cpu[0].get("requests", 0)
    res[v] = {
        "unloaded_avg": un[0].get("avg"), "unloaded_p99": un[0].get("p99"),
        "usr_max_rps_p99_500us": max_under(usr), "etc_max_rps_p99_500us": max_under(etc),
        "cpu_us_per_req": (ticks / hz * 1e6 / reqs) if reqs else None,
    }
json.dump(res, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(f"\n{'':28}" + "".join(f"{v:>14}" for v in variants) + ("   libix/linux" if "linux" in res and "libix" in res else ""))
rows = [("unloaded avg (us)", "unloaded_avg"), ("unloaded p99 (us)", "unloaded_p99"),
        ("USR max RPS, p99<500us", "usr_max_rps_p99_500us"), ("ETC max RPS, p99<500us", "etc_max_rps_p99_500us"),
        ("server CPU us / request", "cpu_us_per_req")]
for label, key in rows:
    vals = [res[v][key] for v in variants]
    line = f"{label:28}" + "".join(f"{(x if x is not None else float('nan')):>14.1f}" for x in vals)
    if "linux" in res and "libix" in res and res["linux"][key] and res["libix"][key]:
        line += f"{res['libix'][key] / res['linux'][key]:>14.2f}"
    print(line)
print(f"\nresults: {out} (summary.json, per-variant JSON and PNG plots)")
PY
