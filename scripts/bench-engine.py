#!/usr/bin/env python3
"""The event engine against libevent's epoll backend, with libevent's own benchmarks (`bench`, `bench_cascade`).

Three measures of the same binaries, each side by side with Debian's libevent 2.1.12:
  - wall time: libevent's and libix's runs interleaved round by round (the order flips each round), the median of
    each process's per-run microseconds; the ratio is the median over rounds of each round's libix / libevent (a
    paired measure: both sides of a round see the same machine), with the quartiles of those ratios;
  - user-space instructions in the dispatch loop (valgrind callgrind, `--toggle-collect` on the loop function), the
    deterministic measure on a shared machine (skipped without valgrind);
  - system calls of the whole process (strace -c; skipped without strace).

Needs the regress cache (`bash compat/regress/fetch-build.sh DIR`: the benchmarks built from Debian's source and
libevent's libraries) and a release build of libix. Usage:
    python3 scripts/bench-engine.py --cache /work/regress-cache [--rounds 15] [--json out.json]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, program, args, the loop function callgrind counts)
CASES = [
    ("bench -n 100 -a 1 -w 100", "bench", ["-n", "100", "-a", "1", "-w", "100"], "event_base_loop"),
    ("bench -n 1000 -a 100 -w 1000", "bench", ["-n", "1000", "-a", "100", "-w", "1000"], "event_base_loop"),
    ("bench -n 5000 -a 100 -w 1000", "bench", ["-n", "5000", "-a", "100", "-w", "1000"], "event_base_loop"),
    ("bench_cascade -n 100", "bench_cascade", ["-n", "100"], "event_dispatch"),
    ("bench_cascade -n 1000", "bench_cascade", ["-n", "1000"], "event_dispatch"),
]

# bench raises RLIMIT_NOFILE, which valgrind refuses; a no-op setrlimit lets it run under callgrind.
NOSETRLIMIT_C = "#include <sys/resource.h>\nint setrlimit(int r, const struct rlimit *l) { (void)r; (void)l; return 0; }\n"


def impl_dirs(cache, libix, tmp):
    """Library directories standing in for libevent's sonames: Debian's libevent, and libix (+ Debian's extra)."""
    system = os.path.join(cache, "impl", "tree")
    ours = os.path.join(tmp, "libix")
    os.makedirs(ours)
    for name in ("libevent-2.1.so.7", "libevent_core-2.1.so.7", "libevent_pthreads-2.1.so.7"):
        os.symlink(libix, os.path.join(ours, name))
    shutil.copy(os.path.join(system, "libevent_extra-2.1.so.7"), ours)
    return {"libevent": system, "libix": ours}


def wall_median(binary, args, libdir):
    out = subprocess.run([binary] + args, env=dict(os.environ, LD_LIBRARY_PATH=libdir), capture_output=True,
                         text=True, timeout=300, check=True).stdout
    vals = [int(x) for x in out.split() if re.fullmatch(r"\d+", x)]
    if not vals:
        raise RuntimeError(f"{binary}: no timings in its output")
    return statistics.median(vals)


def instructions(binary, args, libdir, toggle, shim):
    with tempfile.NamedTemporaryFile(suffix=".cg") as out:
        env = dict(os.environ, LD_LIBRARY_PATH=libdir, LD_PRELOAD=shim)
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
                            f"--toggle-collect={toggle}", binary] + args, env=env, capture_output=True, text=True,
                           timeout=900)
        m = re.search(r"Collected : (\d+)", r.stderr)
        return int(m.group(1)) if m else None


def syscalls(binary, args, libdir):
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, binary] + args,
                       env=dict(os.environ, LD_LIBRARY_PATH=libdir), capture_output=True, timeout=300)
        lines = [l for l in open(out.name).read().splitlines() if l.strip()]
        total = lines[-1].split() if lines else []
        # "100.00 <seconds> <usecs/call> <calls> [errors] total"
        nums = [x for x in total if re.fullmatch(r"\d+", x)]
        return int(nums[-2]) if len(nums) >= 3 else (int(nums[-1]) if nums else None)


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="regress cache built by compat/regress/fetch-build.sh")
    ap.add_argument("--libix", default=os.path.join(ROOT, "target", "release", "libix.so"))
    ap.add_argument("--rounds", type=int, default=15, help="interleaved wall-time rounds (each: 25 runs per side)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    bindir = os.path.join(a.cache, "bin")
    for need in (a.libix, os.path.join(bindir, "bench"), os.path.join(a.cache, "impl", "tree")):
        if not os.path.exists(need):
            sys.exit(f"bench-engine: {need} is missing (build libix in release mode; run compat/regress/fetch-build.sh)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = impl_dirs(a.cache, os.path.abspath(a.libix), tmp)
        shim = None
        if shutil.which("valgrind") and shutil.which("cc"):
            src = os.path.join(tmp, "nosetrlimit.c")
            open(src, "w").write(NOSETRLIMIT_C)
            shim = os.path.join(tmp, "nosetrlimit.so")
            subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, src], check=True)
        for label, prog, args, toggle in CASES:
            binary = os.path.join(bindir, prog)
            walls = {"libevent": [], "libix": []}
            for rnd in range(a.rounds):
                order = ["libevent", "libix"] if rnd % 2 == 0 else ["libix", "libevent"]
                for impl in order:
                    walls[impl].append(wall_median(binary, args, dirs[impl]))
            ratios = sorted(x / y for x, y in zip(walls["libix"], walls["libevent"]))
            q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
            row = {"case": label, "wall_ratio": q[1], "wall_ratio_q1": q[0], "wall_ratio_q3": q[2]}
            for impl in ("libevent", "libix"):
                row[f"{impl}_usec"] = statistics.median(walls[impl])
                row[f"{impl}_instructions"] = instructions(binary, args, dirs[impl], toggle, shim) if shim else None
                row[f"{impl}_syscalls"] = syscalls(binary, args, dirs[impl]) if shutil.which("strace") else None
            results.append(row)
            print(f"done: {label}", file=sys.stderr)
    print(f"| program | wall us: libevent | libix | ratio (quartiles) | loop instructions: libevent | libix | ratio "
          f"| syscalls: libevent | libix | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['libevent_usec']:.0f} | {r['libix_usec']:.0f} | "
              f"{r['wall_ratio']:.2f} ({r['wall_ratio_q1']:.2f}-{r['wall_ratio_q3']:.2f}) | "
              f"{r['libevent_instructions'] or '-'} | "
              f"{r['libix_instructions'] or '-'} | {ratio(r['libix_instructions'], r['libevent_instructions'])} | "
              f"{r['libevent_syscalls'] or '-'} | {r['libix_syscalls'] or '-'} | "
              f"{ratio(r['libix_syscalls'], r['libevent_syscalls'])} |")
    print(f"\nwall time: {a.rounds} interleaved rounds, each process's median of its runs; ratio: median (quartiles) "
          f"of the rounds' paired ratios")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
