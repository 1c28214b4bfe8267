#!/usr/bin/env bash
# Fetches Debian's libevent 2.1.12 source (`apt-get source libevent`) and builds libevent's own test programs
# from it, unmodified, with libevent's own build system (autotools, regenerated with autoreconf as Debian's
# package build does), so that they link *dynamically* against libevent's public sonames:
#   regress, test-*  -> libevent_core-2.1.so.7, libevent_extra-2.1.so.7, libevent_pthreads-2.1.so.7
#   bench, bench_*   -> libevent-2.1.so.7
# None of them carries an RPATH, so LD_LIBRARY_PATH picks the implementation at run time (run.sh --impl).
#
# Usage: fetch-build.sh [CACHE_DIR]        (default: <repo>/build/libevent-src; reused when already built)
#
# Layout of CACHE_DIR after a build:
#   src/libevent-2.1.12-stable/   the Debian source tree (patches applied by dpkg-source), autoreconf'd
#   obj/                          out-of-tree autotools build
#   bin/                          the real test binaries (not libtool's wrapper scripts), check-dumpevents.py
#   impl/tree/                    the tree's own libevent sonames (same code as Debian's package)
#   impl/public/                  one library with the tree's code that exports ONLY the public API (the 448
#                                 functions declared in include/event2/*.h) plus the 4 private data symbols
#                                 that regress copy-relocates (see README.md): the "public symbols only" reference
#   public-symbols.txt, regress-private-imports.txt, stamp
# Build choices: OpenSSL off (libevent_openssl is not part of libix's ABI), samples off, static libs off;
# test programs linked with -z lazy so that a missing private function fails only the case that calls it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${1:-$repo/build/libevent-src}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
jobs="${LIBEVENT_BUILD_JOBS:-2}"
# Bump when the build recipe changes, so cached builds are redone.
recipe=3
log() { echo "[fetch-build] $*" >&2; }

if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "recipe=$recipe" ] && [ -x "$cache/bin/regress" ]; then
    log "cached build in $cache"
    exit 0
fi
rm -f "$cache/stamp"

# ---- build dependencies (Debian packages only)
need=()
for p in dpkg-dev autoconf automake libtool make gcc zlib1g-dev libevent-2.1-7 libevent-dev binutils iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { log "missing packages (${need[*]}) and not root"; exit 1; }
    log "apt-get install ${need[*]}"
    apt-get update -q >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >"$cache/apt-install.log" 2>&1 \
        || { cat "$cache/apt-install.log" >&2; exit 1; }
fi

# ---- source: apt-get source libevent (needs deb-src)
srcroot="$cache/src"
src="$(ls -d "$srcroot"/libevent-2.1.*/ 2>/dev/null | head -1 || true)"
if [ -z "$src" ] || [ ! -f "$src/.autoreconf-done" ]; then
    rm -rf "$srcroot"
    mkdir -p "$srcroot"
    sources=/etc/apt/sources.list.d/debian.sources
    if ! grep -rqs 'deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        [ -f "$sources" ] || { log "no deb-src and no $sources to enable it in"; exit 1; }
        log "enabling deb-src in $sources"
        sed -i 's/^Types: deb$/Types: deb deb-src/' "$sources"
        apt-get update -q >/dev/null
    fi
    log "apt-get source libevent"
    # Same version as the installed runtime, so 'system' and 'tree' are the same code.
    ver="$(dpkg-query -W -f='${Version}' libevent-2.1-7 2>/dev/null || true)"
    (cd "$srcroot" && { apt-get source -q "libevent${ver:+=$ver}" || apt-get source -q libevent; }) \
        >"$cache/apt-source.log" 2>&1 || { cat "$cache/apt-source.log" >&2; exit 1; }
    src="$(ls -d "$srcroot"/libevent-2.1.*/ | head -1)"
    # Debian's patches touch Makefile.am: regenerate the build system as the package build does.
    log "autoreconf -fi"
    (cd "$src" && autoreconf -fi) >"$cache/autoreconf.log" 2>&1 || { cat "$cache/autoreconf.log" >&2; exit 1; }
    touch "$src/.autoreconf-done"
fi
src="${src%/}"

# ---- configure + build (out of tree)
obj="$cache/obj"
rm -rf "$obj"
mkdir -p "$obj/test"
cflags="$(dpkg-buildflags --get CFLAGS)"
cppflags="$(dpkg-buildflags --get CPPFLAGS)"
ldflags="$(dpkg-buildflags --get LDFLAGS) -Wl,-z,lazy"
log "configure (CFLAGS=$cflags)"
(cd "$obj" && "$src/configure" -q --disable-openssl --disable-samples --disable-static \
    --disable-dependency-tracking CFLAGS="$cflags" CPPFLAGS="$cppflags" LDFLAGS="$ldflags") \
    >"$cache/configure.log" 2>&1 || { tail -30 "$cache/configure.log" >&2; exit 1; }
log "make -j$jobs"
(cd "$obj" && make -j"$jobs") >"$cache/make.log" 2>&1 || { tail -40 "$cache/make.log" >&2; exit 1; }

# ---- collect the real binaries (libtool leaves wrapper scripts in test/, the programs in test/.libs/)
rm -rf "$cache/bin" "$cache/impl"
mkdir -p "$cache/bin" "$cache/impl/tree" "$cache/impl/public"
progs="regress test-eof test-weof test-time test-changelist test-closed test-fdleak test-dumpevents test-ratelim
       test-init bench bench_cascade bench_http bench_httpclient"
for p in $progs; do
    f="$obj/test/.libs/$p"
    [ -x "$f" ] || f="$obj/test/$p"
    [ "$(head -c4 "$f" | tail -c3)" = ELF ] || { log "no ELF binary for $p"; exit 1; }
    cp "$f" "$cache/bin/$p"
    if readelf -d "$cache/bin/$p" | grep -qE 'RPATH|RUNPATH'; then log "$p has an RPATH: LD_LIBRARY_PATH would not win"; exit 1; fi
done
cp "$src/test/check-dumpevents.py" "$cache/bin/"
sonames="libevent-2.1.so.7 libevent_core-2.1.so.7 libevent_extra-2.1.so.7 libevent_pthreads-2.1.so.7"
for s in $sonames; do
    cp -L "$obj/.libs/$s" "$cache/impl/tree/$s"
done

# ---- the public API: functions declared in the installed headers (gcc -aux-info), as exported by the tree
cat >"$cache/public-headers.c" <<'EOF'
#include <event2/event-config.h>
#include <sys/types.h>
#include <sys/time.h>
#include <stdio.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/event_compat.h>
#include <event2/buffer.h>
#include <event2/buffer_compat.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/bufferevent_compat.h>
#include <event2/dns.h>
#include <event2/dns_compat.h>
#include <event2/dns_struct.h>
#include <event2/http.h>
#include <event2/http_compat.h>
#include <event2/http_struct.h>
#include <event2/listener.h>
#include <event2/rpc.h>
#include <event2/rpc_compat.h>
#include <event2/rpc_struct.h>
#include <event2/tag.h>
#include <event2/tag_compat.h>
#include <event2/thread.h>
#include <event2/util.h>
EOF
gcc -I"$obj/include" -I"$src/include" -aux-info "$cache/public-headers.aux" -fsyntax-only "$cache/public-headers.c"
grep '/event2/' "$cache/public-headers.aux" \
    | sed -E 's#^/\* [^*]* \*/ ##' \
    | grep -oE '[A-Za-z_][A-Za-z_0-9]*[[:space:]]*\((\)|[^*])' \
    | sed -E 's/[[:space:]]*\(.*$//' | sort -u >"$cache/declared.txt"
for s in $sonames; do nm -D --defined-only "$cache/impl/tree/$s" | awk 'NF==3{print $3}'; done | sort -u >"$cache/exported.txt"
comm -12 "$cache/declared.txt" "$cache/exported.txt" >"$cache/public-symbols.txt"
npub=$(wc -l <"$cache/public-symbols.txt")
nexp=$(wc -l <"$cache/exported.txt")
log "public API: $npub functions declared in include/event2 (of $nexp symbols the Debian-style build exports)"

# ---- what regress imports from libevent beyond the public API (functions resolve lazily, data at load time)
readelf --dyn-syms -W "$cache/bin/regress" | awk '$7=="UND"{print $4, $8}' | sed 's/@.*//' | sort -u \
    | while read -r typ name; do
        grep -qxF "$name" "$cache/exported.txt" || continue
        grep -qxF "$name" "$cache/public-symbols.txt" && continue
        echo "$name $typ"
    done >"$cache/regress-private-imports.txt"
# Data symbols (R_X86_64_COPY) must exist at load time or no case can start at all.
readelf -r -W "$cache/bin/regress" | awk '$3=="R_X86_64_COPY"{print $5}' | sed 's/@.*//' | sort -u \
    | grep -xF -f "$cache/exported.txt" >"$cache/regress-copy-relocs.txt" || true
log "regress imports $(wc -l <"$cache/regress-private-imports.txt") private symbols;" \
    "load-time data: $(tr '\n' ' ' <"$cache/regress-copy-relocs.txt")"

# ---- impl/public: the tree's code, one library, exporting only public functions + load-time data symbols
{
    echo '{ global:'
    sed 's/$/;/' "$cache/public-symbols.txt" "$cache/regress-copy-relocs.txt"
    echo 'local: *; };'
} >"$cache/public.map"
objs=$(cd "$obj" && printf 'p:\n\t@echo $(libevent_la_OBJECTS) $(libevent_pthreads_la_OBJECTS)\n' \
    | make -s -f Makefile -f - p | tr ' ' '\n' | sed -n 's#^\(.*\)\.lo$#.libs/\1.o#p' | tr '\n' ' ')
(cd "$obj" && gcc -shared -o "$cache/impl/public/libevent-public.so" -Wl,-soname,libevent-public.so \
    -Wl,--version-script="$cache/public.map" $objs -lpthread)
for s in $sonames; do ln -sf libevent-public.so "$cache/impl/public/$s"; done

echo "recipe=$recipe" >"$cache/stamp"
log "built in $cache ($(basename "$src"))"
