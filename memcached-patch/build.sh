#!/usr/bin/env bash
# Builds memcached 1.6.18 from Debian's source package (`apt-get source memcached`, Debian's patches applied)
# against libix: libix's libevent-compatible headers and libix.so standing in for -levent, through memcached's own
# `./configure --with-libevent=DIR`. With --patched, memcached-patch/*.patch is applied first (the IX-friendly
# variant). Prints the path of the built binary on its last line.
#
# Usage: build.sh [--plain|--patched] WORK_DIR [LIBIX_SO]     (root for apt; LIBIX_SO default target/release/libix.so)
# WORK_DIR/src holds the source, WORK_DIR/libevent-dir the headers + lib/libevent.so -> libix.so, WORK_DIR/<variant>
# the build. Cached: a second run with the same libix and recipe only prints the path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
variant=plain
case "${1:-}" in
    --plain) shift ;;
    --patched) variant=patched; shift ;;
esac
work="${1:?usage: build.sh [--plain|--patched] WORK_DIR [LIBIX_SO]}"
libix="$(readlink -f "${2:-$repo/target/release/libix.so}")"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
recipe=1
log() { echo "[memcached-build] $*" >&2; }
[ -f "$libix" ] || { log "no $libix: build libix first (cargo build --release)"; exit 1; }
# Tests run in parallel and share WORK_DIR: one build at a time.
exec 9>"$work/.lock"
flock 9

# ---- the source, once
src="$work/src/memcached-1.6.18"
if [ ! -f "$src/memcached.c" ]; then
    command -v make >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null; }
    command -v dpkg-source >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null; }
    if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        log "enabling deb-src (DESIGN.md §7)"
        sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
        apt-get update -qq
    fi
    rm -rf "$work/src"
    mkdir -p "$work/src"
    log "apt-get source memcached"
    (cd "$work/src" && apt-get source -qq memcached >/dev/null 2>"$work/src/apt.log") \
        || { cat "$work/src/apt.log" >&2; exit 1; }
    [ -f "$src/memcached.c" ] || { log "apt-get source did not give memcached 1.6.18"; ls "$work/src" >&2; exit 1; }
fi

# ---- libix as a libevent installation: headers + lib/libevent.so -> libix.so (soname libix.so.0)
le="$work/libevent-dir"
rm -rf "$le"
mkdir -p "$le/include" "$le/lib"
cp -r "$repo/compat/include/." "$le/include/"
cp "$repo/include/ix.h" "$le/include/"
ln -s "$libix" "$le/lib/libix.so.0"
ln -s libix.so.0 "$le/lib/libix.so"
ln -s libix.so.0 "$le/lib/libevent.so"

# ---- configure + build (out of the pristine tree: a copy per variant)
obj="$work/$variant"
stamp="recipe=$recipe libix=$(stat -c %Y "$libix") patches=$( (cat "$here"/*.patch 2>/dev/null || true) | md5sum | cut -c1-12)"
if [ -x "$obj/memcached" ] && [ "$(cat "$obj/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "cached build in $obj"
    echo "$obj/memcached"
    exit 0
fi
rm -rf "$obj"
cp -r "$src" "$obj"
if [ "$variant" = patched ]; then
    for p in "$here"/*.patch; do
        log "applying $(basename "$p")"
        patch -d "$obj" -p1 --quiet <"$p"
    done
fi
log "configure --with-libevent=$le ($variant)"
(cd "$obj" && ./configure --with-libevent="$le" >"$obj/configure.out" 2>&1) \
    || { tail -30 "$obj/configure.out" >&2; exit 1; }
log "make memcached"
(cd "$obj" && make -j"${MEMCACHED_BUILD_JOBS:-2}" memcached >"$obj/make.out" 2>&1) \
    || { tail -30 "$obj/make.out" >&2; exit 1; }
# The binary must need libix, not a libevent.
libs="$(ldd "$obj/memcached")"
grep -q "libix.so.0 => $le/lib/libix.so.0" <<<"$libs" || { log "the build does not link libix:"; echo "$libs" >&2; exit 1; }
if awk '{print $1}' <<<"$libs" | grep -q '^libevent'; then
    log "the build also links a libevent:"; echo "$libs" >&2; exit 1
fi
echo "$stamp" >"$obj/stamp"
echo "$obj/memcached"
