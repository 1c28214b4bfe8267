#!/usr/bin/env python3
"""Prints runs of run.sh (its --json files) side by side: per-group regress passes, the public-API subset,
the standalone programs and the benchmarks. A column may be a plain label (e.g. 'libix=not exported yet')."""

import json
import sys

CORE = ["main", "et", "evbuffer", "signal", "util", "bufferevent", "listener"]
REST = ["http", "dns", "rpc", "thread", "finalize", "evtag", "heap"]


def main(args):
    cols = []
    for a in args:
        if a.endswith(".json"):
            with open(a) as f:
                cols.append(json.load(f))
        else:
            label, _, text = a.partition("=")
            cols.append({"label": label, "text": text})
    runs = [c for c in cols if "groups" in c]
    groups = []
    for r in runs:
        for g in list(r["groups"]):
            if g not in groups:
                groups.append(g)
    groups = [g for g in CORE + REST if g in groups] + [g for g in groups if g not in CORE + REST]
    w = 22

    def cell(c, fn):
        if "text" in c:
            return c["text"]
        try:
            return fn(c)
        except (KeyError, TypeError, StopIteration, RuntimeError):
            return "-"
    print(f"{'':<16}" + "".join(f"{c['label']:>{w}}" for c in cols))
    print(f"{'(pass/cases, public-API pass/public cases)':<16}")

    def grp(c, g):
        x = c["groups"][g]
        return f"{x['pass']}/{x['cases']}  {x['public_pass']}/{x['public_cases']}"

    def tot(c, k):
        x = c[k]
        return f"{x['pass']}/{x['cases']}  {x['public_pass']}/{x['public_cases']}"
    for g in groups:
        if g in CORE:
            print(f"{g:<16}" + "".join(f"{cell(c, lambda c: grp(c, g)):>{w}}" for c in cols))
    print(f"{'= core':<16}" + "".join(f"{cell(c, lambda c: tot(c, 'core')):>{w}}" for c in cols))
    for g in groups:
        if g not in CORE:
            print(f"{g:<16}" + "".join(f"{cell(c, lambda c: grp(c, g)):>{w}}" for c in cols))
    print(f"{'= rest':<16}" + "".join(f"{cell(c, lambda c: tot(c, 'rest')):>{w}}" for c in cols))
    print(f"{'= all':<16}" + "".join(f"{cell(c, lambda c: tot(c, 'all')):>{w}}" for c in cols))
    progs = []
    for r in runs:
        for s in r.get("standalone", []):
            if s["program"] not in progs:
                progs.append(s["program"])
    for p in progs:
        print(f"{p:<16}" + "".join(
            f"{cell(c, lambda c: next((s['status'] for s in c['standalone'] if s['program'] == p), '-')):>{w}}"
            for c in cols))
    benches = []
    for r in runs:
        for b in r.get("bench", []):
            k = (b["program"], b["args"])
            if k not in benches:
                benches.append(k)
    if benches:
        print("benchmarks (median us of 25 runs; lower is better)")

    def bcell(c, k):
        b = next((b for b in c["bench"] if (b["program"], b["args"]) == k), None)
        if b is None:
            return "-"
        return f"{b['usec_median']:.0f}" if b["status"] == "pass" else b["status"]
    for k in benches:
        name = f"{k[0]} {k[1]}"
        print(f"  {name:<30}" + "".join(f"{cell(c, lambda c: bcell(c, k)):>{w}}" for c in cols))
    print(f"{'seconds':<16}" + "".join(f"{cell(c, lambda c: c['seconds']['total']):>{w}}" for c in cols))


if __name__ == "__main__":
    main(sys.argv[1:])
