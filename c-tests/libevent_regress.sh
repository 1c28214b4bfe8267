#!/usr/bin/env bash
# ctest entry: libevent 2.1.12's own regression suite and test programs (Debian's source package, built as-is by
# compat/regress/fetch-build.sh, cached in BUILD_DIR/libevent-src) against
#   1. Debian's libevent (the baseline): its per-group pass counts must equal compat/regress/expected-system.txt,
#      which tests the harness itself;
#   2. libix.so standing in for libevent_core and libevent_pthreads (and libevent-2.1.so.7, which the benchmarks
#      load), with libevent's own libevent_extra (evhttp, evdns, evrpc, evtag; built from the same tree) running on
#      top of it, as on a machine where libix replaces libevent_core: compat/regress/expected-libix.txt's minimum
#      pass counts ('GROUP >= N') are asserted (a ratchet for the ABI work). Then the three edge-trigger cases
#      again with IX_EVENT_METHOD=epoll: they choose their expectation by comparing event_base_get_method() with
#      "epoll", and libix's name is its own; with the name they know, they must all pass.
# libevent's benchmarks (bench, bench_cascade) run against both in the same run when libix exports the ABI.
# Usage: libevent_regress.sh BUILD_DIR      (root: apt-get for the source and build deps, a private netns)
# Env: LIBIX_SO=path overrides target/release/libix.so; REGRESS_JOBS (default 2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="${1:-$repo/build}"
mkdir -p "$build"
build="$(cd "$build" && pwd)"
cache="$build/libevent-src"
reg="$repo/compat/regress"
libix="${LIBIX_SO:-$repo/target/release/libix.so}"
jobs="${REGRESS_JOBS:-2}"
t0=$(date +%s)

bash "$reg/fetch-build.sh" "$cache"
echo "build: $(( $(date +%s) - t0 ))s"

exported=0
if [ -f "$libix" ] && [ "$(nm -D --defined-only "$libix" 2>/dev/null | grep -c ' event_base_new$' || true)" -ge 1 ]; then
    exported=1
fi
bench=()
[ "$exported" = 1 ] && bench=(--bench)

rc=0
bash "$reg/run.sh" --impl system --cache "$cache" --jobs "$jobs" --json "$build/libevent-regress-system.json" \
    --expect "$reg/expected-system.txt" --label libevent-2.1.12 "${bench[@]}" || rc=1

if [ "$exported" = 1 ]; then
    impl="$(mktemp -d)"
    trap 'rm -rf "$impl"' EXIT
    for s in libevent-2.1.so.7 libevent_core-2.1.so.7 libevent_pthreads-2.1.so.7; do
        ln -s "$(readlink -f "$libix")" "$impl/$s"
    done
    cp "$cache/impl/tree/libevent_extra-2.1.so.7" "$impl/"
    expect=()
    [ -f "$reg/expected-libix.txt" ] && expect=(--expect "$reg/expected-libix.txt")
    lrc=0
    bash "$reg/run.sh" --impl "$impl" --cache "$cache" --jobs "$jobs" --json "$build/libevent-regress-libix.json" \
        --label libix --timeout 20 --deadline 360 "${bench[@]}" "${expect[@]}" || lrc=$?
    [ "${#expect[@]}" -gt 0 ] && [ "$lrc" != 0 ] && rc=1
    printf 'et 3\n' >"$impl/expected-et.txt"
    echo
    IX_EVENT_METHOD=epoll bash "$reg/run.sh" --impl "$impl" --cache "$cache" --jobs "$jobs" --filter '^et/' \
        --json "$build/libevent-regress-libix-et.json" --label libix-named-epoll --timeout 20 --deadline 120 \
        --no-standalone --expect "$impl/expected-et.txt" || rc=1
    echo
    python3 "$reg/compare.py" "$build/libevent-regress-system.json" "$build/libevent-regress-libix.json"
else
    echo
    echo "libix: $libix does not export the libevent ABI yet (no event_base_new): libix column not measured"
    python3 "$reg/compare.py" "$build/libevent-regress-system.json" "libix=not exported yet"
fi
echo "libevent_regress: $(( $(date +%s) - t0 ))s total; baseline $([ "$rc" = 0 ] && echo as expected || echo MISMATCH)"
exit "$rc"
