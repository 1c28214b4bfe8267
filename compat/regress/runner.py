#!/usr/bin/env python3
"""Runs libevent 2.1.12's regression suite and standalone test programs against one implementation of libevent's
sonames, each regress case in its own process, and reports per-group counts (and JSON). Called by run.sh, which
puts the run in a private network namespace (loopback only) first. See README.md."""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SONAMES = ["libevent-2.1.so.7", "libevent_core-2.1.so.7", "libevent_extra-2.1.so.7", "libevent_pthreads-2.1.so.7"]
CORE_GROUPS = ["main", "et", "evbuffer", "signal", "util", "bufferevent", "listener"]
REST_GROUPS = ["http", "dns", "rpc", "thread", "finalize", "evtag", "heap"]
# The standalone programs from libevent's test/ directory (as test/test.sh and the CMake build run them).
STANDALONE = ["test-eof", "test-weof", "test-time", "test-changelist", "test-closed", "test-fdleak",
              "test-dumpevents", "test-ratelim"]
# Cases that ask the *system* resolver (/etc/resolv.conf) about a nonexistent name. Inside run.sh's private
# network namespace that query cannot leave the machine; outside it they are not run (loopback-only rule).
SYSTEM_RESOLVER_CASES = {"dns/bufferevent_connect_hostname", "dns/bufferevent_connect_hostname_emfile"}
BENCH = [("bench", ["-n", "100", "-a", "1", "-w", "100"]),
         ("bench", ["-n", "1000", "-a", "100", "-w", "1000"]),
         ("bench", ["-n", "5000", "-a", "100", "-w", "1000"]),  # bench raises RLIMIT_NOFILE to 2n+50
         ("bench_cascade", ["-n", "100"]),
         ("bench_cascade", ["-n", "1000"])]


def group_of(case):
    return case.split("/", 1)[0]


def system_libdir():
    try:
        ma = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    except OSError:
        ma = ""
    for d in ([f"/usr/lib/{ma}"] if ma else []) + ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]:
        if os.path.exists(os.path.join(d, "libevent_core-2.1.so.7")):
            return d
    sys.exit("runner: no system libevent (apt-get install libevent-2.1-7 libevent-dev)")


def resolve_impl(impl, cache):
    if impl == "system":
        return system_libdir()
    if impl in ("tree", "public"):
        return os.path.join(cache, "impl", impl)
    d = os.path.abspath(impl)
    missing = [s for s in SONAMES if not os.path.exists(os.path.join(d, s))]
    if missing:
        sys.exit(f"runner: {d} lacks {' '.join(missing)} (symlink them to the implementation's .so)")
    return d


def base_env(libdir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EVENT_") and k not in ("LD_PRELOAD", "LD_BIND_NOW", "LD_LIBRARY_PATH")}
    env["LD_LIBRARY_PATH"] = libdir
    return env


def run_proc(argv, env, timeout, stdin_data=None, cwd=None):
    """Runs argv in its own process group; returns (rc or None on timeout, output, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(stdin_data, timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        rc = None
    finally:
        # forked children of a test may outlive it: end the whole group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return rc, out.decode("utf-8", "replace"), time.monotonic() - t0


MISSING_RE = re.compile(r"(?:symbol lookup error|relocation error).*?undefined symbol: ([A-Za-z_0-9]+)")
MISSING2_RE = re.compile(r"undefined symbol: ([A-Za-z_0-9]+)")


def classify(rc, out, is_regress=True):
    """-> (status, detail). status: pass, fail, skip, crash, timeout, missing-symbol."""
    if rc is None:
        return "timeout", ""
    m = MISSING_RE.search(out) or MISSING2_RE.search(out)
    if m:
        return "missing-symbol", m.group(1)
    if "cannot open shared object file" in out:
        return "missing-symbol", "(library not found)"
    if rc < 0:
        return "crash", signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(rc)
    if is_regress:
        if "[Lost connection!]" in out:
            return "crash", "forked test child died"
        if re.search(r"^1 tests ok\.\s+\(0 skipped\)", out, re.M) and rc == 0:
            return "pass", ""
        if re.search(r"^0 tests ok\.\s+\(1 skipped\)", out, re.M) and rc == 0:
            return "skip", ""
        if "TESTS FAILED" in out:
            return "fail", ""
        return ("crash" if rc >= 128 else "fail"), f"exit {rc}"
    return ("pass", "") if rc == 0 else (("crash" if rc >= 128 else "fail"), f"exit {rc}")


def list_cases(bindir, cache):
    # The list is a property of the binary: ask it with the tree's own libraries.
    rc, out, _ = run_proc([os.path.join(bindir, "regress"), "--list-tests"],
                          base_env(os.path.join(cache, "impl", "tree")), 60)
    cases, off = [], []
    started = False
    for line in out.splitlines():
        if line.startswith("Known tests are:"):
            started = True
            continue
        if started and line.startswith("    "):
            name = line.split()[0]
            (off if "Off by default" in line or "(DISABLED)" in line else cases).append(name)
    if not cases:
        sys.exit(f"runner: regress --list-tests listed nothing (rc={rc}):\n{out[-2000:]}")
    return cases, off


def tail(s, n=4000):
    return s if len(s) <= n else "...\n" + s[-n:]


def run_case(case, bindir, env, timeout, retries, logdir):
    attempts = []
    for _ in range(1 + retries):
        rc, out, secs = run_proc([os.path.join(bindir, "regress"), case], env, timeout)
        status, detail = classify(rc, out)
        attempts.append((status, detail, secs, out, rc))
        # retry only outcomes a loaded machine can cause (a missing symbol is deterministic, a timeout costly)
        if status not in ("fail", "crash"):
            break
    final = next((a for a in attempts if a[0] == "pass"), attempts[-1])
    status, detail, secs, out, rc = final
    res = {"case": case, "group": group_of(case), "status": status, "detail": detail,
           "seconds": round(sum(a[2] for a in attempts), 3), "attempts": len(attempts)}
    if status == "pass" and len(attempts) > 1:
        res["flaky"] = [a[0] for a in attempts]
    if status != "pass" and logdir:
        fn = os.path.join(logdir, case.replace("/", "__") + ".log")
        with open(fn, "w") as f:
            for a in attempts:
                f.write(f"=== attempt: {a[0]} {a[1]} rc={a[4]} {a[2]:.2f}s\n{a[3]}\n")
        res["log"] = fn
        res["output_tail"] = tail(out, 1500)
    return res


def run_standalone(bindir, env, timeout, retries, over_deadline=lambda: False):
    results = []
    for prog in STANDALONE:
        path = os.path.join(bindir, prog)
        if over_deadline():
            results.append({"program": prog, "status": "not-run", "detail": "deadline", "seconds": 0, "attempts": 0})
            continue
        attempts = []
        for _ in range(1 + retries):
            if prog == "test-dumpevents":
                # as libevent's test.sh / CMake: the output is checked by check-dumpevents.py
                rc, out, secs = run_proc([path], env, timeout)
                status, detail = classify(rc, out, is_regress=False)
                if status == "pass":
                    chk = subprocess.run([sys.executable, os.path.join(bindir, "check-dumpevents.py")],
                                         input=out.encode(), capture_output=True)
                    if chk.returncode != 0:
                        status, detail = "fail", "check-dumpevents.py: " + tail(
                            (chk.stdout + chk.stderr).decode("utf-8", "replace"), 500)
            else:
                rc, out, secs = run_proc([path], env, timeout)
                status, detail = classify(rc, out, is_regress=False)
            attempts.append((status, detail, secs, out))
            if status not in ("fail", "crash", "timeout"):
                break
        final = next((a for a in attempts if a[0] == "pass"), attempts[-1])
        r = {"program": prog, "status": final[0], "detail": final[1], "seconds": round(sum(a[2] for a in attempts), 3),
             "attempts": len(attempts)}
        if final[0] != "pass":
            r["output_tail"] = tail(final[3], 1500)
        results.append(r)
    return results


def run_bench(bindir, env, timeout, over_deadline=lambda: False):
    results = []
    for prog, args in BENCH:
        if over_deadline():
            results.append({"program": prog, "args": " ".join(args), "status": "not-run", "detail": "deadline",
                            "seconds": 0})
            continue
        rc, out, secs = run_proc([os.path.join(bindir, prog)] + args, env, timeout)
        status, detail = classify(rc, out, is_regress=False)
        vals = [int(x) for x in out.splitlines() if re.fullmatch(r"\d+", x.strip())]
        r = {"program": prog, "args": " ".join(args), "status": status, "detail": detail,
             "seconds": round(secs, 3)}
        if status == "pass" and vals:
            r.update(runs=len(vals), usec_median=statistics.median(vals), usec_min=min(vals))
        elif status != "pass":
            r["output_tail"] = tail(out, 800)
        results.append(r)
    return results


def load_list(path):
    with open(path) as f:
        return [l.split()[0] for l in f if l.strip() and not l.startswith("#")]


def summarize(cases, public):
    groups = {}
    zero = {"cases": 0, "pass": 0, "fail": 0, "skip": 0, "crash": 0, "timeout": 0, "missing-symbol": 0,
            "not-run": 0, "public_cases": 0, "public_pass": 0}
    for r in cases:
        g = groups.setdefault(r["group"], dict(zero))
        g["cases"] += 1
        g[r["status"]] += 1
        if r["case"] in public:
            g["public_cases"] += 1
            g["public_pass"] += r["status"] == "pass"
    order = [g for g in CORE_GROUPS + REST_GROUPS if g in groups] + sorted(set(groups) - set(CORE_GROUPS + REST_GROUPS))

    def total(names):
        t = dict(zero)  # also when a --filter matched no case
        for n in names:
            for k, v in groups[n].items():
                t[k] += v
        return t
    return order, groups, total([g for g in order if g in CORE_GROUPS]), \
        total([g for g in order if g not in CORE_GROUPS]), total(order)


def print_table(order, groups, core, rest, allg, public_known):
    cols = ["cases", "pass", "fail", "crash", "timeout", "missing-symbol", "skip"]
    hdr = f"{'group':<13}" + "".join(f"{c:>9}" for c in ["cases", "pass", "fail", "crash", "timeout", "missing", "skip"])
    if public_known:
        hdr += f"  {'public-API pass':>16}"
    print(hdr)

    def row(name, g):
        s = f"{name:<13}" + "".join(f"{g[c]:>9}" for c in cols)
        if public_known:
            s += f"  {str(g['public_pass']) + '/' + str(g['public_cases']):>16}"
        print(s)
    for n in order:
        if n in CORE_GROUPS:
            row(n, groups[n])
    row("= core", core)
    for n in order:
        if n not in CORE_GROUPS:
            row(n, groups[n])
    row("= rest", rest)
    row("= all", allg)


def check_expect(path, got, results):
    """Expectation file lines: 'KEY N' (exactly N passes; a case listed as 'flaky CASE' may fail without a
    mismatch), 'KEY >= N' (at least N: a ratchet). KEY: a group, core, all, public-core, public, standalone."""
    want, flaky = [], set()
    with open(path) as f:
        for line in f:
            p = line.split("#", 1)[0].split()
            if not p:
                continue
            if p[0] == "flaky":
                flaky.add(p[1])
            elif len(p) == 3 and p[1] == ">=":
                want.append((p[0], ">=", int(p[2])))
            else:
                want.append((p[0], "==", int(p[1])))
    status = {r["case"]: r["status"] for r in results}
    msgs, ok = [], True
    for key, op, n in want:
        g = got.get(key, 0)
        if op == ">=":
            good = g >= n
        else:
            # flaky cases that did not pass lower the count by at most their number
            slack = sum(1 for c in flaky if status.get(c) not in (None, "pass") and
                        (key in ("all", "public") or c.split("/")[0] == key or
                         (key in ("core", "public-core") and c.split("/")[0] in CORE_GROUPS)))
            good = n - slack <= g <= n
        if not good:
            ok = False
            msgs.append(f"{key}: expected {op} {n} passes, got {g}")
    for c in sorted(flaky):
        if status.get(c) not in (None, "pass"):
            msgs.append(f"known-flaky {c} did not pass ({status[c]}); tolerated")
    return ok, msgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, help="system | tree | public | DIR with libevent's sonames")
    ap.add_argument("--cache", default=os.path.join(REPO, "build", "libevent-src"))
    ap.add_argument("--json")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a failed or crashed case")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--filter", help="regex on case names")
    ap.add_argument("--no-standalone", action="store_true")
    ap.add_argument("--bench", action="store_true", help="also run bench and bench_cascade")
    ap.add_argument("--public-list", default=os.path.join(HERE, "public-api-cases.txt"))
    ap.add_argument("--expect", help="expectation file (see check_expect): exit 1 unless the pass counts match")
    ap.add_argument("--label")
    ap.add_argument("--deadline", type=float, default=0,
                    help="wall-clock budget (s) for the whole run; what has not started by then is recorded as not-run")
    a = ap.parse_args()

    t_start = time.monotonic()
    bindir = os.path.join(a.cache, "bin")
    if not os.path.exists(os.path.join(bindir, "regress")):
        sys.exit(f"runner: no build in {a.cache}: run compat/regress/fetch-build.sh first")
    libdir = resolve_impl(a.impl, a.cache)
    env = base_env(libdir)
    label = a.label or (a.impl if a.impl in ("system", "tree", "public") else os.path.basename(libdir.rstrip("/")))
    logdir = os.path.join(a.cache, "logs", re.sub(r"[^A-Za-z0-9_.-]", "_", label))
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir, exist_ok=True)
    in_netns = os.environ.get("LIBEVENT_REGRESS_NETNS") == "1"

    cases, off = list_cases(bindir, a.cache)
    not_run = {c: "off by default in libevent itself (Internet lookups, slow or manual tests)" for c in off}
    if not in_netns:
        for c in SYSTEM_RESOLVER_CASES & set(cases):
            not_run[c] = "asks the system resolver; only run inside run.sh's private network namespace"
    if a.filter:
        rx = re.compile(a.filter)
        cases = [c for c in cases if rx.search(c)]
    cases = [c for c in cases if c not in not_run]
    public = set(load_list(a.public_list)) if os.path.exists(a.public_list) else set()

    print(f"== libevent regress against {label}: LD_LIBRARY_PATH={libdir}  ({len(cases)} cases, {a.jobs} at a time,"
          f" timeout {a.timeout:g}s, {a.retries} retry){'' if in_netns else '  [host network]'}", flush=True)
    results = []
    t0 = time.monotonic()

    def one(c):
        if a.deadline and time.monotonic() - t_start > a.deadline:
            return {"case": c, "group": group_of(c), "status": "not-run", "detail": "deadline", "seconds": 0,
                    "attempts": 0}
        return run_case(c, bindir, env, a.timeout, a.retries, logdir)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        futs = {ex.submit(one, c): c for c in cases}
        for fu in concurrent.futures.as_completed(futs):
            results.append(fu.result())
    regress_secs = time.monotonic() - t0
    idx = {c: i for i, c in enumerate(cases)}
    results.sort(key=lambda r: idx[r["case"]])

    order, groups, core, rest, allg = summarize(results, public)
    print_table(order, groups, core, rest, allg, bool(public))
    missing = {}
    for r in results:
        if r["status"] == "missing-symbol":
            missing.setdefault(r["detail"], []).append(r["case"])
    if missing:
        print("missing symbols (first one hit per case): " +
              ", ".join(f"{s} x{len(c)}" for s, c in sorted(missing.items(), key=lambda kv: -len(kv[1]))))
    bad = [r for r in results if r["status"] not in ("pass", "skip", "missing-symbol")]
    if bad:
        print("not passing: " + " ".join(f"{r['case']}({r['status']})" for r in bad[:60]) +
              (" ..." if len(bad) > 60 else ""))
    flaky = [r["case"] for r in results if "flaky" in r]
    if flaky:
        print("passed on retry: " + " ".join(flaky))
    print(f"regress: {regress_secs:.1f}s wall; logs of non-passing cases in {logdir}")

    def over():
        return bool(a.deadline) and time.monotonic() - t_start > a.deadline
    standalone = []
    if not a.no_standalone:
        t1 = time.monotonic()
        standalone = run_standalone(bindir, env, max(a.timeout, 30), a.retries, over)
        print("standalone: " + "  ".join(f"{s['program']}={s['status']}" + (f"({s['detail']})" if s['detail'] and
                                          s['status'] != 'pass' else "") for s in standalone) +
              f"  [{time.monotonic() - t1:.1f}s]")
    bench = []
    if a.bench:
        bench = run_bench(bindir, env, 60, over)
        for b in bench:
            extra = (f"median {b['usec_median']:.0f} us, min {b['usec_min']} us over {b['runs']} runs"
                     if b["status"] == "pass" else f"{b['status']} {b['detail']}")
            print(f"bench: {b['program']} {b['args']}: {extra}")

    report = {
        "impl": a.impl, "label": label, "libdir": libdir, "netns": in_netns,
        "seconds": {"regress": round(regress_secs, 1), "total": round(time.monotonic() - t_start, 1)},
        "groups": groups, "core": core, "rest": rest, "all": allg, "core_groups": CORE_GROUPS,
        "not_run": not_run, "missing_symbols": {k: len(v) for k, v in missing.items()},
        "cases": results, "standalone": standalone, "bench": bench,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    n_pass = allg["pass"] + sum(s["status"] == "pass" for s in standalone)
    n_fail = allg["cases"] - allg["pass"] - allg["skip"] + sum(s["status"] != "pass" for s in standalone)

    rc = 0
    if a.expect:
        got = {g: groups[g]["pass"] for g in groups}
        got.update({"core": core["pass"], "all": allg["pass"], "public-core": core["public_pass"],
                    "public": allg["public_pass"], "standalone": sum(s["status"] == "pass" for s in standalone)})
        ok, msgs = check_expect(a.expect, got, results)
        print(("per-group pass counts match " if ok else "EXPECTATION MISMATCH: ") + os.path.basename(a.expect))
        for m in msgs:
            print("  " + m)
        rc = 0 if ok else 1
    print(f"{label}: {n_pass} passed, {n_fail} failed, {allg['skip']} skipped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
