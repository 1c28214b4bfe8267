#!/usr/bin/env bash
# LD_PRELOAD=libix.so on programs built against Debian's libevent: one that uses only the event core runs on libix;
# one that also uses evhttp (not in libix yet) is told so and runs entirely on the real libevent.
# Usage: preload_check_test.sh LIBIX_SO
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lib="$(readlink -f "$1")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O1 -o "$work/core_user" "$here/programs/core_user.c" -levent_core
gcc -O1 -o "$work/evhttp_user" "$here/programs/evhttp_user.c" -levent

out="$(LD_PRELOAD="$lib" "$work/core_user" 2>"$work/core.err")"
[ "$out" = "method=libix" ] || { echo "core_user on libix printed '$out'"; cat "$work/core.err"; exit 1; }
[ ! -s "$work/core.err" ] || { echo "core_user: unexpected stderr:"; cat "$work/core.err"; exit 1; }

out="$(LD_PRELOAD="$lib" "$work/evhttp_user" 2>"$work/http.err")"
[ "$out" = "method=epoll http=yes" ] || { echo "evhttp_user printed '$out' (expected the real libevent)"; exit 1; }
grep -q "evhttp_free, evhttp_new" "$work/http.err" \
    || { echo "no clear message naming the missing functions:"; cat "$work/http.err"; exit 1; }
# Without the preload both use the real libevent (the test's own control).
[ "$("$work/core_user")" = "method=epoll" ] || { echo "control: core_user without libix is not on epoll"; exit 1; }
echo "preload_check: ok ($(head -c 160 "$work/http.err"))"
