#!/usr/bin/env python3
"""Classifies every libevent regress case by what it needs from libevent beyond the public API.

Two independent measurements, both against the tree built by fetch-build.sh:
  dynamic  each case runs once under ld.so's LD_DEBUG=bindings with the tree's libraries (which export
           everything); every symbol the regress *binary* binds to a libevent library is recorded. Private =
           not among the 448 functions declared in include/event2/*.h.
  static   clang-14's AST of every regress source file: for each case (its entry in the testcase_t tables, with
           its setup/cleanup and every test-side function reachable from it), the struct fields it reads or
           writes, split into fields of libevent's private structs (defined in *-internal.h etc.) and fields of
           the structs of the installed *_struct.h headers (public headers, but a layout an ABI must match).

Writes cases.tsv (one row per case) and public-api-cases.txt (cases that need neither private symbols nor
private struct fields, beyond the test-support symbols listed in TEST_SUPPORT) next to this script, and prints a
summary. Run through run.sh (`run.sh classify`), which provides the loopback-only network namespace."""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import runner  # noqa: E402

# Private symbols that the suite's own machinery needs (not the code under test). regress cannot load without the
# four data objects (copy relocations); regress's main() seeds its PRNG with evutil_weakrand_seed_ before any
# case; basic_test_cleanup() calls event_base_assert_ok_ after every case that has a base; test-time and
# test-ratelim draw random numbers with evutil_weakrand_, test-dumpevents makes its pipes with
# evutil_make_internal_pipe_. An ABI that exports these (all trivial) lets the suite run; they are listed, not
# held against a case.
TEST_SUPPORT = ["evthread_lock_fns_", "evthread_cond_fns_", "event_debug_logging_mask_", "event_global_current_base_",
                "evutil_weakrand_seed_", "evutil_weakrand_", "event_base_assert_ok_", "evutil_make_internal_pipe_"]

REGRESS_SOURCES = ["regress.c", "regress.gen.c", "regress_buffer.c", "regress_bufferevent.c", "regress_dns.c",
                   "regress_et.c", "regress_finalize.c", "regress_http.c", "regress_listener.c", "regress_main.c",
                   "regress_minheap.c", "regress_rpc.c", "regress_testutils.c", "regress_util.c", "tinytest.c",
                   "regress_thread.c", "regress_zlib.c"]


# ---------------------------------------------------------------- dynamic: LD_DEBUG=bindings
BIND_RE = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `([^']+)'")


def bound_symbols(argv, env, timeout, exe_name):
    with tempfile.TemporaryDirectory() as td:
        e = dict(env, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=os.path.join(td, "ld"))
        rc, out, secs = runner.run_proc(argv, e, timeout)
        syms = set()
        for fn in os.listdir(td):
            with open(os.path.join(td, fn), errors="replace") as f:
                for line in f:
                    m = BIND_RE.search(line)
                    if m and os.path.basename(m.group(1)) == exe_name and "libevent" in os.path.basename(m.group(2)):
                        syms.add(m.group(3))
    return rc, out, syms


# ---------------------------------------------------------------- static: clang AST
class TU:
    """One translation unit's AST, reduced to: top-level definitions, their references, their member accesses."""

    def __init__(self, path, flags, src_root):
        self.path = path
        self.name = os.path.basename(path)
        ast = json.loads(subprocess.run(["clang-14", "-fsyntax-only", "-Xclang", "-ast-dump=json"] + flags + [path],
                                        capture_output=True, check=True).stdout)
        self.src_root = src_root
        self.last_file = None
        self.field_owner = {}      # FieldDecl id -> (record label, file class)
        self.defs = {}             # top-level name -> {"static": bool, "refs": set(names), "fields": set(...)}
        self.tables = {}           # VarDecl name -> InitListExpr node (testcase tables / testgroups)
        for node in ast.get("inner", []):
            self._top(node)

    # clang's JSON writes a location's file only when it changes: follow it in document order
    def _loc(self, loc):
        if not isinstance(loc, dict):
            return None
        if "spellingLoc" in loc:
            self._loc(loc["spellingLoc"])
            f = self.last_file
            self._loc(loc.get("expansionLoc"))
            return f
        if "file" in loc:
            self.last_file = loc["file"]
        return self.last_file

    def _locs(self, node):
        f = self._loc(node.get("loc"))
        r = node.get("range")
        if isinstance(r, dict):
            self._loc(r.get("begin"))
            self._loc(r.get("end"))
        return f

    def file_class(self, f):
        if not f:
            return "system"
        f = os.path.normpath(f)
        if "/include/event2/" in f:
            return "public"
        if "/test/" in f or f.endswith("regress.gen.h"):
            return "test"
        if f.startswith(self.src_root):
            return "private"
        return "system"

    def _walk(self, node, sink, record=None):
        """Walks node (document order, tracking files); collects into sink refs and member accesses."""
        kind = node.get("kind")
        f = self._locs(node)
        if kind == "RecordDecl":
            label = ("struct " if node.get("tagUsed", "struct") == "struct" else node.get("tagUsed", "") + " ") + \
                (node.get("name") or (record + ".<anon>" if record else "<anon>"))
            record = label
            rclass = self.file_class(f)
            for ch in node.get("inner", []):
                if ch.get("kind") == "FieldDecl":
                    self.field_owner[ch["id"]] = (label, rclass, ch.get("name", ""))
        if sink is not None:
            if kind == "DeclRefExpr":
                rd = node.get("referencedDecl", {})
                if rd.get("kind") in ("FunctionDecl", "VarDecl") and rd.get("name"):
                    sink["refs"].add(rd["name"])
            elif kind == "MemberExpr":
                mid = node.get("referencedMemberDecl")
                if mid:
                    sink["members"].add(mid)
        for ch in node.get("inner", []) or []:
            self._walk(ch, sink, record)

    def _top(self, node):
        kind = node.get("kind")
        name = node.get("name")
        if kind in ("FunctionDecl", "VarDecl") and name and (node.get("inner") and not node.get("isImplicit")):
            f = self._locs(node)
            sink = {"refs": set(), "members": set()}
            for ch in node.get("inner", []):
                self._walk(ch, sink)
            is_def = kind == "VarDecl" or any(ch.get("kind") == "CompoundStmt" for ch in node.get("inner", []))
            if is_def:
                d = self.defs.setdefault(name, {"static": node.get("storageClass") == "static", "refs": set(),
                                                "members": set(), "file": self.file_class(f)})
                d["refs"] |= sink["refs"]
                d["members"] |= sink["members"]
                if kind == "VarDecl":
                    for ch in node.get("inner", []):
                        if ch.get("kind") == "InitListExpr":
                            self.tables[name] = ch
        else:
            self._walk(node, None)


def strings_and_refs(node, acc):
    k = node.get("kind")
    if k == "StringLiteral":
        acc["strings"].append(json.loads(node["value"]))
    elif k == "DeclRefExpr":
        rd = node.get("referencedDecl", {})
        if rd.get("name"):
            acc["refs"].add(rd["name"])
    for ch in node.get("inner", []) or []:
        strings_and_refs(ch, acc)
    return acc


def static_analysis(cache, src):
    obj = os.path.join(cache, "obj")
    flags = ["-DHAVE_CONFIG_H", "-DTINYTEST_LOCAL", "-pthread", "-I" + obj, "-I" + src, "-I" + src + "/compat",
             "-I" + obj + "/include", "-I" + src + "/include", "-I" + obj + "/test", "-I" + src + "/test"]
    tus = []
    for s in REGRESS_SOURCES:
        p = os.path.join(src, "test", s)
        if not os.path.exists(p):
            p = os.path.join(obj, "test", s)
        print(f"[classify] clang AST {s}", file=sys.stderr, flush=True)
        tus.append(TU(p, flags, os.path.normpath(src)))
    # global (non-static) definitions by name
    glob = {}
    for tu in tus:
        for n, d in tu.defs.items():
            if not d["static"]:
                glob.setdefault(n, tu)

    def node_of(tu, name):
        if name in tu.defs:
            return (tu, name)
        if name in glob:
            return (glob[name], name)
        return None

    def closure(tu, roots):
        seen, stack = set(), [node_of(tu, r) for r in roots]
        while stack:
            n = stack.pop()
            if not n or (n[0].name, n[1]) in seen:
                continue
            # never walk into the tables themselves (they reference every case)
            if n[1] in ("testgroups",) or n[1].endswith("_testcases"):
                continue
            seen.add((n[0].name, n[1]))
            for r in n[0].defs[n[1]]["refs"]:
                stack.append(node_of(n[0], r))
        return seen

    tu_by_name = {tu.name: tu for tu in tus}
    main = tu_by_name["regress_main.c"]
    groups = []
    for el in main.tables["testgroups"].get("inner", []):
        acc = strings_and_refs(el, {"strings": [], "refs": set()})
        if acc["strings"]:
            groups.append((acc["strings"][0], sorted(acc["refs"])[0]))
    cases = {}
    for prefix, table in groups:
        tu = next((t for t in tus if table in t.tables), None)
        if tu is None:
            continue
        for el in tu.tables[table].get("inner", []):
            acc = strings_and_refs(el, {"strings": [], "refs": set()})
            if not acc["strings"]:
                continue
            reach = closure(tu, acc["refs"])
            priv, pub = set(), set()
            for tn, fn in reach:
                for mid in tu_by_name[tn].defs[fn]["members"]:
                    owner = tu_by_name[tn].field_owner.get(mid)  # clang's ids are per translation unit
                    if not owner:
                        continue
                    label, rclass, field = owner
                    if rclass == "private" or (rclass == "public" and field.endswith("internal_")):
                        priv.add(f"{label}.{field}")
                    elif rclass == "public":
                        pub.add(f"{label}.{field}")
            cases[prefix + acc["strings"][0]] = {"private_fields": priv, "public_struct_fields": pub,
                                                 "functions": sorted(f for _, f in reach)}
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(REPO, "build", "libevent-src"))
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--no-static", action="store_true")
    ap.add_argument("--reuse-dynamic", action="store_true", help="reuse the last ld.so measurement")
    a = ap.parse_args()
    cache = a.cache
    bindir = os.path.join(cache, "bin")
    src = next(os.path.join(cache, "src", d) for d in os.listdir(os.path.join(cache, "src"))
               if d.startswith("libevent-2.1") and os.path.isdir(os.path.join(cache, "src", d)))
    public = set(runner.load_list(os.path.join(cache, "public-symbols.txt")))
    env = runner.base_env(os.path.join(cache, "impl", "tree"))
    in_netns = os.environ.get("LIBEVENT_REGRESS_NETNS") == "1"
    if not in_netns:
        sys.exit("classify: run it through run.sh (`run.sh classify`): it needs the loopback-only namespace")

    os.makedirs(a.out_dir, exist_ok=True)
    cases, off = runner.list_cases(bindir, cache)
    dyn_file = os.path.join(cache, "classify-dynamic.json")
    dyn, standalone = {}, {}
    if a.reuse_dynamic and os.path.exists(dyn_file):
        with open(dyn_file) as f:
            dyn, standalone = json.load(f)
    for i, c in enumerate(c for c in cases if c not in dyn):
        rc, out, syms = bound_symbols([os.path.join(bindir, "regress"), c], env, a.timeout, "regress")
        st, _ = runner.classify(rc, out)
        dyn[c] = {"status": st, "private_symbols": sorted(s for s in syms if s not in public)}
        if i % 50 == 0:
            print(f"[classify] ld.so bindings {i}/{len(cases)}", file=sys.stderr, flush=True)
    for p in runner.STANDALONE:
        if p not in standalone:
            rc, out, syms = bound_symbols([os.path.join(bindir, p)], env, 120, p)
            standalone[p] = sorted(s for s in syms if s not in public)
    with open(dyn_file, "w") as f:
        json.dump([dyn, standalone], f)

    stat = {} if a.no_static else static_analysis(cache, src)
    support = set(TEST_SUPPORT)
    rows, public_cases = [], []
    counts = collections.Counter()
    sym_use = collections.Counter()
    struct_use = collections.Counter()
    for c in cases:
        g = runner.group_of(c)
        d = dyn[c]
        s = stat.get(c, {"private_fields": set(), "public_struct_fields": set()})
        psyms = [x for x in d["private_symbols"] if x not in support]
        pfields = sorted(s["private_fields"])
        if c not in stat and not a.no_static:
            print(f"[classify] warning: {c} not found in the testcase tables", file=sys.stderr)
        verdict = ("public" if not psyms and not pfields else
                   "private-symbols+fields" if psyms and pfields else
                   "private-symbols" if psyms else "private-fields")
        for x in psyms:
            sym_use[x] += 1
        for x in {f.split(".")[0] for f in pfields}:
            struct_use[x] += 1
        counts[(g, verdict)] += 1
        counts[(g, "baseline-pass-" + verdict)] += d["status"] == "pass"
        rows.append([c, g, verdict, d["status"], ",".join(psyms) or "-", ",".join(pfields) or "-",
                     ",".join(sorted(s["public_struct_fields"])) or "-"])
        if verdict == "public":
            public_cases.append(c)

    with open(os.path.join(a.out_dir, "cases.tsv"), "w") as f:
        f.write("# Generated by compat/regress/classify.py (run.sh classify) from libevent 2.1.12's regress. Columns:\n"
                "# case, group, verdict, status with the tree's own libevent, private symbols called (beyond the\n"
                "# test-support set " + " ".join(TEST_SUPPORT) + "),\n"
                "# private struct fields touched, fields of public *_struct.h structs touched\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
        for c in off:
            f.write("\t".join([c, runner.group_of(c), "off-by-default", "not-run", "-", "-", "-"]) + "\n")
    with open(os.path.join(a.out_dir, "public-api-cases.txt"), "w") as f:
        f.write("# regress cases that use only libevent's public API (see cases.tsv, classify.py)\n")
        f.write("\n".join(public_cases) + "\n")

    groups = [g for g in runner.CORE_GROUPS + runner.REST_GROUPS if any(k[0] == g for k in counts)]
    print(f"{'group':<12}{'cases':>7}{'public':>8}{'priv-sym':>9}{'priv-fld':>9}{'both':>6}   public & passing (tree)")
    tot = collections.Counter()
    for g in groups:
        n = sum(v for k, v in counts.items() if k[0] == g and not k[1].startswith("baseline"))
        row = [n, counts[(g, "public")], counts[(g, "private-symbols")], counts[(g, "private-fields")],
               counts[(g, "private-symbols+fields")], counts[(g, "baseline-pass-public")]]
        for i, v in enumerate(row):
            tot[i] += v
            if g in runner.CORE_GROUPS:
                tot[("core", i)] += v
        print(f"{g:<12}{row[0]:>7}{row[1]:>8}{row[2]:>9}{row[3]:>9}{row[4]:>6}   {row[5]}")
    print(f"{'= core':<12}" + "".join(f"{tot[('core', i)]:>{w}}" for i, w in enumerate([7, 8, 9, 9, 6])) +
          f"   {tot[('core', 5)]}")
    print(f"{'= all':<12}" + "".join(f"{tot[i]:>{w}}" for i, w in enumerate([7, 8, 9, 9, 6])) + f"   {tot[5]}")
    print("private symbols by number of cases: " + ", ".join(f"{k} {v}" for k, v in sym_use.most_common()))
    print("private structs by number of cases: " + ", ".join(f"{k} {v}" for k, v in struct_use.most_common()))
    print("standalone programs' private symbols: " +
          "; ".join(f"{p}: {','.join(v) or '-'}" for p, v in standalone.items()))
    print(f"off by default (not run): {len(off)}")


if __name__ == "__main__":
    main()
