#!/usr/bin/env bash
# The comparison in one command: libix against Linux, the same workloads, the same client, in one run, and one
# table of ratios (issue "ixbench: the side-by-side report that shows libix against Linux").
#
#   sudo scripts/compare.sh
#
# About 10 minutes on a 2-vCPU VM once built (it builds first: cargo + gcc, incremental).
# It runs scripts/bench-tcp.sh and scripts/bench-memcached.sh with reduced parameters, each against one Linux
# server and one libix server on veth pairs alike (client in a namespace on CPU 0, server in another on CPU 1; the
# memcached servers side by side, each behind its own pair, measured in turn at every rate).
# A shared machine is noisy in bursts of seconds to minutes, and one burst over one side's turn flips a line: so
# everything is measured REPEAT times, Linux and libix in turn each time, and the table shows the medians (for the
# sweeps: the per-rate medians of p99 and throughput, from which the lines are read), their ratio, and the range
# of the per-repeat ratios (how far one run could have misled):
#   memcached (Debian's binary; Linux: kernel TCP + real libevent; libix: the same binary under ixrun, AF_XDP)
#     - unloaded latency, USR, one connection, one request at a time: p50 and p99
#     - max requests/s whose p99 < 500 us, open-loop sweeps of USR and of ETC (and, as a fallback on a noisy
#       machine where no point meets the SLO, the highest rate the server kept up with)
#     - server CPU seconds per million requests (its utime+stime from /proc) at the same offered USR load, and the
#       busy time of its core (CPU 1, from /proc/stat: also the receive softirqs that ran while it slept)
#     - the last two again for libix with IX_SPIN_US=0 (its loop sleeps as soon as it is idle, as Linux's does):
#       what polling between requests buys in latency and costs in CPU
#   TCP echo (Linux: c-tests/kernel_tcp_echo.c, epoll; libix: c-tests/ix_tcp_echo.c, native API)
#     - echo messages/s, 64 B, n=1 and n=1024 round trips per connection (RST close), ECHO_CONNS connections
#     - ping-pong one-way latency (RTT/2) at 64 B, p50
# Prints "metric | linux | libix | ratio | repeats | better?" and writes summary.json (the same table with every
# repeat's figures, plus the run's details), the sub-runs' JSON and logs (tcp/rN, memcached/rN), and the first
# repeat's memcached latency-vs-throughput plots (PNG), all in OUT.
#
# env knobs (defaults in brackets):
#   OUT [/tmp/ixcompare.XXXXXX]  results directory
#   NICE [-10]                   nice level of client and server, both sides alike (a shared machine)
#   TCP_LINUX [linux]            the Linux TCP echo baseline: linux (sleeps in epoll_wait, as memcached does) or
#                                linux-busy (spins on epoll_wait(0))
#   ECHO_CONNS [64] ECHO_DURATION [5] ECHO_WARMUP [1] PP_SECS [3]
#   MC_DURATION [3] MC_WARMUP [0.5] MC_CONNS [32] MC_KEYS [100000] CPU_RATE [20000] (below both servers' capacity)
#   PLOT_MAX_US [auto]           latency axis of the plots (auto: 1.5x the largest latency of the points that kept
#                                up, per plot; set it to compare the linux and libix plots by eye)
#   USR_RATES [10000,20000,30000,40000,60000,80000,100000,125000,150000,200000]
#   ETC_RATES [10000,20000,30000,40000,60000,80000,100000,150000]
#                                (30k: Linux keeps up with ~40k/s once its receive is on its own core, STEER)
#   PARTS ["tcp memcached"]      which halves to run
#   REPEAT [3]                   repeats of every measurement (REPEAT=1: a third of the time, one draw)
#   CLIENT [busy]                memcached client: busy (polls, as mutilate does by default) or sleep (sleeps
#                                between events: its own wake-ups and late sends then add to every latency)
#   STEER [server]               where the servers' receive runs: server (RPS on the server's veth end: Linux's TCP
#                                receive on the server's core, where a NIC's interrupt would run it; libix's XDP
#                                stays in veth's sender context, as a NIC's DMA into the ring), none (veth as it
#                                is: the Linux server's TCP receive runs on the client's core, uncounted; needed
#                                for TCP_LINUX=linux-busy), or both (also the client's receive on the client's
#                                core; the client then limits the echo). scripts/testhost.sh says more.
#   HALT_POLL_NS [unset]         guest halt polling for the run (cpuidle-haltpoll's guest_halt_poll_ns, restored
#                                at the end): an idle vCPU polls that long before it halts, so waking it costs
#                                ~1 us instead of a VM exit and re-entry (~25-30 us here, and ~10 us for the IPI
#                                that wakes it). Both servers and the client run under it alike: the latency-tuned
#                                VM (tuned's realtime-virtual-guest does the same). Unset: the machine as it is.
# Any failure or signal stops the running half, whose own cleanup kills its servers and deletes its namespaces
# and interfaces (unique names per run); the script then checks that none is left. Exit status: 0 when every
# metric has both figures, 1 otherwise. Optional in CI (.ci/bench), never part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
[ "$(id -u)" -eq 0 ] || { echo "scripts/compare.sh needs root (network namespaces, AF_XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "scripts/compare.sh needs 2 CPUs (client on CPU 0, server on CPU 1)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

NICE="${NICE:--10}"
TCP_LINUX="${TCP_LINUX:-linux}"
ECHO_CONNS="${ECHO_CONNS:-64}"
ECHO_DURATION="${ECHO_DURATION:-5}"
ECHO_WARMUP="${ECHO_WARMUP:-1}"
PP_SECS="${PP_SECS:-3}"
MC_DURATION="${MC_DURATION:-3}"
MC_WARMUP="${MC_WARMUP:-0.5}"
MC_CONNS="${MC_CONNS:-32}"
MC_KEYS="${MC_KEYS:-100000}"
CPU_RATE="${CPU_RATE:-20000}"
CLIENT="${CLIENT:-busy}"
STEER="${STEER:-server}"
PLOT_MAX_US="${PLOT_MAX_US:-}"
USR_RATES="${USR_RATES:-10000,20000,30000,40000,60000,80000,100000,125000,150000,200000}"
ETC_RATES="${ETC_RATES:-10000,20000,30000,40000,60000,80000,100000,150000}"
PARTS="${PARTS:-tcp memcached}"
REPEAT="${REPEAT:-3}"
HALT_POLL_NS="${HALT_POLL_NS:-}"
halt_poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
case "$TCP_LINUX" in linux | linux-busy) ;; *) echo "TCP_LINUX must be linux or linux-busy" >&2; exit 2 ;; esac
STEER="$STEER" bash -c '. scripts/testhost.sh && steer_check' || exit 2
# SO_BUSY_POLL cannot poll an RPS backlog: linux-busy would wait for the IPI like the sleeping server does.
[ "$TCP_LINUX" != linux-busy ] || [ "$STEER" = none ] ||
    { echo "TCP_LINUX=linux-busy needs STEER=none (its busy polling cannot poll an RPS backlog)" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || { echo "REPEAT must be a number from 1 to 99" >&2; exit 2; }
if [ -n "${OUT:-}" ]; then
    out="$OUT"
    mkdir -p "$out"
else
    out="$(mktemp -d /tmp/ixcompare.XXXXXX)"
fi
start=$(date +%s)
halt_poll_was=""
if [ -n "$HALT_POLL_NS" ]; then
    [[ "$HALT_POLL_NS" =~ ^[0-9]+$ ]] || { echo "HALT_POLL_NS must be a number of nanoseconds" >&2; exit 2; }
    [ -w "$halt_poll" ] || { echo "HALT_POLL_NS: this kernel has no cpuidle-haltpoll ($halt_poll)" >&2; exit 2; }
    halt_poll_was="$(cat "$halt_poll")"
    echo "$HALT_POLL_NS" >"$halt_poll"
fi
restore_halt_poll() { [ -z "$halt_poll_was" ] || echo "$halt_poll_was" >"$halt_poll"; }
trap restore_halt_poll EXIT

# Each half runs as a job of its own (set -m: its own process group), so that a signal reaches the half's script
# and its servers at once (the script's trap then cleans up, after its bounded client command returns); tee
# ignores the signals, to keep the cleanup's output.
set -m
child=""
tee_pid=""
on_signal() {
    trap - INT TERM
    echo "compare: interrupted; stopping ${child:-nothing}" >&2
    if [ -n "$child" ]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    [ -z "$tee_pid" ] || wait "$tee_pid" 2>/dev/null || true
    exit 130
}
trap on_signal INT TERM
leftovers() {   # namespaces or interfaces of this run's halves still there (their names end in their pids)
    { ip netns list; ip -o link show; } 2>/dev/null | grep -oE "ix[nsdp](bt|bm)[0-9]+" | sort -u |
        while read -r name; do
            pid="${name##*[a-z]}"
            grep -qx "$pid" "$out/pids" 2>/dev/null && echo "$name"
        done || true
}
: >"$out/pids"
# run_half NAME CMD...: one half, its output on the terminal and in OUT/NAME.log; returns its exit status.
run_half() {
    local name="$1" rc=0
    shift
    # The job is the half's script itself (not a subshell around it), so that waiting for it waits for its cleanup.
    rm -f "$out/.fifo"
    mkfifo "$out/.fifo"
    (trap '' INT TERM HUP; exec tee "$out/$name.log" <"$out/.fifo") &
    tee_pid=$!
    "$@" >"$out/.fifo" 2>&1 &
    child=$!
    wait "$child" || rc=$?
    child=""
    wait "$tee_pid" || true
    tee_pid=""
    rm -f "$out/.fifo"
    # The half's script names its namespaces after its pid: read it from its log header.
    grep -oE "ix[ns](bt|bm)[0-9]+" "$out/$name.log" | head -1 | grep -oE "[0-9]+$" >>"$out/pids" || true
    return "$rc"
}

echo "== libix vs Linux, one run: results in $out"
{
    echo "date: $(date -u +%FT%TZ)"
    dirty="$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
    echo "kernel $(uname -r), $(nproc) CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "loadavg at start: $(cat /proc/loadavg)"
    # The host's noise floor: a p99 near 500 us is within reach of stalls like these (scripts/vcpustalls.py).
    echo "at start: $(python3 "$root/scripts/vcpustalls.py" 3)"
    echo "nice: $NICE; client on CPU 0, server on CPU 1; memcached client: $CLIENT; receive steering: $STEER"
    echo "guest halt polling (guest_halt_poll_ns): $(cat "$halt_poll" 2>/dev/null || echo 'no cpuidle-haltpoll')"\
"${halt_poll_was:+ (set for this run; was $halt_poll_was)}"
} | tee "$out/machine.txt"

echo "== building (release)"
bash scripts/setup.sh >/dev/null
cargo build --release -q -p ix-tools -p libix

failed=()
for r in $(seq 1 "$REPEAT"); do
    if [[ " $PARTS " == *" tcp "* ]]; then
        echo
        echo "################ TCP, repeat $r of $REPEAT: ping-pong and echo ($TCP_LINUX vs libix)"
        OUT="$out/tcp/r$r" VARIANTS="$TCP_LINUX libix" PP_SIZES=64 PP_SECS="$PP_SECS" CONNS="$ECHO_CONNS" \
            ROUNDS="1 1024" SIZE=64 DURATION="$ECHO_DURATION" WARMUP="$ECHO_WARMUP" NPTCP=0 NICE="$NICE" STEER="$STEER" \
            run_half "tcp-r$r" bash scripts/bench-tcp.sh || failed+=("tcp repeat $r (rc $?)")
    fi
    if [[ " $PARTS " == *" memcached "* ]]; then
        echo
        echo "################ memcached, repeat $r of $REPEAT: unloaded latency, USR and ETC sweeps, CPU per request"
        OUT="$out/memcached/r$r" VARIANTS="linux libix libix-sleep" NO_SWEEP="libix-sleep" \
            DURATION="$MC_DURATION" WARMUP="$MC_WARMUP" KEYS="$MC_KEYS" \
            THREADS=1 CONNS="$MC_CONNS" USR_RATES="$USR_RATES" ETC_RATES="$ETC_RATES" CPU_RATE="$CPU_RATE" \
            PLOT_MAX_US="$PLOT_MAX_US" NICE="$NICE" CLIENT="$CLIENT" STEER="$STEER" \
            run_half "memcached-r$r" bash scripts/bench-memcached.sh || failed+=("memcached repeat $r (rc $?)")
    fi
done
trap - INT TERM
set +m

left="$(leftovers)"
[ -z "$left" ] || { echo "compare: left behind: $left" >&2; failed+=("cleanup"); }
# The plots next to summary.json.
for f in "$out"/memcached/r1/*.png; do
    [ -e "$f" ] && cp "$f" "$out/memcached-$(basename "$f")"
done
echo "at end: $(python3 "$root/scripts/vcpustalls.py" 3)" | tee -a "$out/machine.txt"
secs=$(($(date +%s) - start))
echo
echo "################ summary (one run; ${secs} s; loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg))"
rc=0
failed_list="$(IFS=';'; echo "${failed[*]:-}")"
python3 - "$out" "$TCP_LINUX" "$ECHO_CONNS" "$CPU_RATE" "$secs" "$NICE" "$failed_list" "$PARTS" "$REPEAT" "$root/scripts" <<'PY' || rc=$?
import json, os, re, statistics, sys
out, tcp_linux, conns, cpu_rate, secs, nice, failed, parts, repeat = sys.argv[1:10]
sys.path.insert(0, sys.argv[10])
from sweeplines import max_sustained, max_under, median_rows
parts, repeats = parts.split(), [f"r{r}" for r in range(1, int(repeat) + 1)]
def load(*parts):
    p = os.path.join(out, *parts)
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
mcs = {r: load("memcached", r, "summary.json") or {} for r in repeats}
def mcv(v, key, r="r1"):
    return (mcs[r].get(v) or {}).get(key)
def pp(v, r):
    d = load("tcp", r, f"{v}.pp.json")
    s = d and next((s for s in d.get("sizes", []) if s["size"] == 64), None)
    return s and s["one_way_us"]["p50"]
def echo(v, n, r):
    d = load("tcp", r, f"{v}.e{n}c{conns}.json")
    return d and d.get("msgs_per_s")
def mc_line(v, key):
    return lambda r: mcv(v, key, r)
# The per-rate medians of the repeats' sweeps, per server and workload (None where no repeat swept).
sweeps = {(v, wl): median_rows([load("memcached", r, f"{v}-{wl}.json") for r in repeats]) or None
          for v in ("linux", "libix") for wl in ("usr", "etc")}
def sweep_line(fn, workload):
    """A sweep line read from the per-rate medians: linux's and libix's figures."""
    return tuple(None if sweeps[v, workload] is None else fn(sweeps[v, workload]) for v in ("linux", "libix"))
def slo_note(workload):
    top = [v for v in ("linux", "libix")
           if sweeps[v, workload] and 0 < max_under(sweeps[v, workload]) == max_under(sweeps[v, workload][-1:])]
    return (f"per-rate medians of {repeat} sweeps" + (f"; {'+'.join(top)} met it at the sweep's top rate "
                                                         "(a lower bound)" if top else ""))
def achieved(v):
    """The CPU point's achieved rates; '!' marks one below 95% of offered (its figure is capacity, not cost)."""
    rates = [mcv(v, "cpu_point_achieved_rps", r) or 0 for r in repeats]
    return "/".join(f"{a:.0f}" + ("!" if a < 0.95 * float(cpu_rate) else "") for a in rates)
# (name, unit, linux per repeat, libix per repeat, higher is better, note, overall figures: None for the medians
# of the repeats)
rows = [
    ("memcached USR unloaded p50", "us", mc_line("linux", "unloaded_p50"), mc_line("libix", "unloaded_p50"), False,
     "1 conn, 1 request at a time", None),
    ("memcached USR unloaded p99", "us", mc_line("linux", "unloaded_p99"), mc_line("libix", "unloaded_p99"), False,
     "1 conn, 1 request at a time", None),
    ("memcached USR max RPS, p99 < 500 us", "req/s", mc_line("linux", "usr_max_rps_p99_500us"),
     mc_line("libix", "usr_max_rps_p99_500us"), True, slo_note("usr"), sweep_line(max_under, "usr")),
    ("memcached ETC max RPS, p99 < 500 us", "req/s", mc_line("linux", "etc_max_rps_p99_500us"),
     mc_line("libix", "etc_max_rps_p99_500us"), True, slo_note("etc"), sweep_line(max_under, "etc")),
    ("memcached USR max RPS kept up (no SLO)", "req/s", mc_line("linux", "usr_max_sustained_rps"),
     mc_line("libix", "usr_max_sustained_rps"), True, ">= 95% of offered, <= 0.1% unsent, no errors",
     sweep_line(max_sustained, "usr")),
    ("memcached ETC max RPS kept up (no SLO)", "req/s", mc_line("linux", "etc_max_sustained_rps"),
     mc_line("libix", "etc_max_sustained_rps"), True, ">= 95% of offered, <= 0.1% unsent, no errors",
     sweep_line(max_sustained, "etc")),
    ("memcached server CPU per 1M requests", "s", mc_line("linux", "cpu_us_per_req"),
     mc_line("libix", "cpu_us_per_req"), False,
     f"USR offered {cpu_rate}/s; achieved linux {achieved('linux')}, libix {achieved('libix')}", None),
    # The whole server core (CPU 1) not idle (elapsed less /proc/stat's idle, iowait and steal): also the receive
    # softirqs that ran while the server slept, which the server's own accounting never sees (Linux's TCP receive
    # under STEER=server).
    ("memcached server core busy per 1M requests", "s", mc_line("linux", "core_us_per_req"),
     mc_line("libix", "core_us_per_req"), False, f"CPU 1's busy time at USR {cpu_rate}/s (receive softirqs too)",
     None),
    ("memcached server system-time share", "%", mc_line("linux", "cpu_system_share_pct"),
     mc_line("libix", "cpu_system_share_pct"), False,
     f"of the server's CPU at USR {cpu_rate}/s (IX paper: Linux ~75%, IX < 10%)", None),
    # The same binary with IX_SPIN_US=0: its loop sleeps as soon as it is idle, as Linux's does (what polling
    # between requests buys in latency and costs in CPU).
    ("memcached USR unloaded p50, IX_SPIN_US=0", "us", mc_line("linux", "unloaded_p50"),
     mc_line("libix-sleep", "unloaded_p50"), False, "libix loop sleeps at once when idle", None),
    ("memcached server CPU per 1M req, IX_SPIN_US=0", "s", mc_line("linux", "cpu_us_per_req"),
     mc_line("libix-sleep", "cpu_us_per_req"), False,
     f"USR offered {cpu_rate}/s; achieved libix-sleep {achieved('libix-sleep')}", None),
    (f"TCP echo msgs/s, n=1, c={conns}", "msg/s", lambda r: echo(tcp_linux, 1, r), lambda r: echo("libix", 1, r),
     True, "64 B, RST close, new connection per message", None),
    (f"TCP echo msgs/s, n=1024, c={conns}", "msg/s", lambda r: echo(tcp_linux, 1024, r),
     lambda r: echo("libix", 1024, r), True, "64 B, 1024 round trips per connection", None),
    ("TCP ping-pong one-way latency 64 B, p50", "us", lambda r: pp(tcp_linux, r), lambda r: pp("libix", r), False,
     "RTT/2, 1 connection", None),
]
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
metrics, complete = [], True
for name, unit, linux_at, libix_at, higher, note, overall in rows:
    lxs, ixs = [linux_at(r) for r in repeats], [libix_at(r) for r in repeats]
    lx, ix = overall or (median(lxs), median(ixs))
    ratio = ix / lx if (lx and ix is not None) else None
    # the ratio within each repeat (Linux and libix measured minutes apart, not the whole run apart)
    ratios = [b / a for a, b in zip(lxs, ixs) if a and b is not None]
    if lx is None or ix is None:
        better = "-"
        # a figure missing from a half that ran makes the run incomplete
        complete = complete and ("tcp" if name.startswith("TCP") else "memcached") not in parts
    elif lx == ix:
        better = "neither" if lx == 0 else "tie"
    else:
        better = "libix" if (ix > lx) == higher else "linux"
    metrics.append({"metric": name, "unit": unit, "linux": lx, "libix": ix, "ratio_libix_over_linux": ratio,
                    "higher_is_better": higher, "better": better, "note": note,
                    "per_repeat": {"linux": lxs, "libix": ixs, "ratio": ratios}})
def fmt(x):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:,.0f}" if abs(x) >= 1000 else (f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}")
def spread(m):
    r = m["per_repeat"]["ratio"]
    return "-" if len(r) < 2 else f"{min(r):.2f}-{max(r):.2f}"
w = max(len(m["metric"]) + len(m["unit"]) + 3 for m in metrics)
print(f"{'metric':<{w}} | {'linux':>10} | {'libix':>10} | {'ratio':>6} | {'repeats':>9} | better?")
print(f"{'-' * w}-+-{'-' * 10}-+-{'-' * 10}-+-{'-' * 6}-+-{'-' * 9}-+--------")
for m in metrics:
    label = f"{m['metric']} ({m['unit']})"
    r = "-" if m["ratio_libix_over_linux"] is None else f"{m['ratio_libix_over_linux']:.2f}"
    print(f"{label:<{w}} | {fmt(m['linux']):>10} | {fmt(m['libix']):>10} | {r:>6} | {spread(m):>9} | {m['better']}")
print(f"(linux, libix: medians of {repeat} repeats, the sweeps' lines read from the per-rate medians; ratio = "
      "libix / linux;\n repeats: the range of the ratio within each repeat; "
      f"linux TCP baseline: {tcp_linux}; a shared machine: noisy)")
machine = open(os.path.join(out, "machine.txt")).read().splitlines()
print(next((f"({line})" for line in machine if line.startswith("guest halt polling")), ""))
# The largest share of time the host stalled one vCPU, at the start or the end (vcpustalls.py's "for S s" and
# "cpuN K stalls, X ms"): from ~0.5% on, the requests the stalls hold up come near 1% of all at any rate, so whether
# a point's p99 stays under 500 us depends on where the stalls fell as much as on the server.
stall_pct = 0.0
for line in machine:
    if line.startswith("at start: vCPU stalls") or line.startswith("at end: vCPU stalls"):
        print(f"({line})")
        window = re.search(r"for ([0-9.]+) s", line)
        if window:
            stalled_ms = [float(ms) for ms in re.findall(r"stalls, ([0-9.]+) ms", line)]
            stall_pct = max([stall_pct] + [ms / 10 / float(window.group(1)) for ms in stalled_ms])
baselines = [mcv("linux", "core_idle_baseline_pct", r) for r in repeats]
if any(b is not None for b in baselines):
    print("(CPU 1 busy with every server asleep, in the core figures: "
          + "/".join("-" if b is None else f"{b:.1f}%" for b in baselines) + " per repeat)")
if stall_pct >= 0.5:
    print(f"(the host stalled a vCPU for up to {stall_pct:.1f}% of the time: at that level the requests its stalls "
          "hold up come near 1% of all,\n so the SLO lines of this run read the host's stalls as much as the servers)")
summary = {
    "run": {"seconds": int(secs), "nice": int(nice), "tcp_linux_baseline": tcp_linux, "machine": machine,
            "repeats": int(repeat), "host_stall_pct_max": stall_pct,
            "loadavg_end": open("/proc/loadavg").read().split()[:3],
            "failed_parts": failed.split(";") if failed else []},
    "metrics": metrics,
    "plots": sorted(f for f in os.listdir(out) if f.endswith(".png")),
    "details": {"memcached": "memcached/rN/ (summary.json, per-variant JSON, logs; sweeps in r1)",
                "tcp": "tcp/rN/ (per-point JSON and text)"},
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
sys.exit(0 if complete and not failed else 1)
PY
[ "${#failed[@]}" -eq 0 ] || echo "compare: failed parts: ${failed[*]}" >&2
echo "results: $out (summary.json, memcached-*.png, tcp/, memcached/)"
exit "$rc"
