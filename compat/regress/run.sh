#!/usr/bin/env bash
# Runs libevent 2.1.12's regress suite (each case in its own process) and its standalone test programs against
# one implementation of libevent's sonames, and prints per-group counts.
#
# Usage: run.sh --impl system|tree|public|DIR [--json OUT] [--cache DIR] [--timeout S] [--jobs N]
#               [--retries N] [--filter REGEX] [--bench] [--no-standalone] [--expect FILE] [--label NAME]
#   system  Debian's installed libevent (libevent-2.1-7)
#   tree    the libraries built from the same source tree by fetch-build.sh
#   public  the tree's code exporting only the public API (+ 4 data symbols regress needs to load)
#   DIR     a directory in which libevent-2.1.so.7, libevent_core-2.1.so.7, libevent_extra-2.1.so.7 and
#           libevent_pthreads-2.1.so.7 exist (e.g. symlinks to libix.so)
#        run.sh classify [--cache DIR]   (regenerates cases.tsv and public-api-cases.txt; needs clang-14)
# Needs a build from fetch-build.sh (default cache: <repo>/build/libevent-src).
#
# As root, the run happens in a fresh network namespace with only `lo` up, so the suite can reach nothing but
# 127.0.0.1/::1 (two dns cases ask the system resolver about a nonexistent name; elsewhere they are not run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${LIBEVENT_REGRESS_NETNS:-}" != 1 ] && [ "${LIBEVENT_REGRESS_HOSTNET:-}" != 1 ] \
        && unshare -n true 2>/dev/null; then
    exec unshare -n env LIBEVENT_REGRESS_NETNS=1 bash "$0" "$@"
fi
if [ "${LIBEVENT_REGRESS_NETNS:-}" = 1 ]; then
    ip link set lo up
fi
ulimit -c 0
if [ "${1:-}" = classify ]; then
    shift
    exec python3 "$here/classify.py" "$@"
fi
exec python3 "$here/runner.py" "$@"
