#!/usr/bin/env bash
# The install, as a user meets it: `cmake --install BUILD --prefix P` into a temporary prefix, then
#   1. the layout: libix.so.X.Y.Z with soname libix.so.X, the links libix.so.X and libix.so, the tools, ix.h,
#      libevent's headers under include/libix, libix.pc, the CMake package;
#   2. a small libevent program (event2/event.h + event2/listener.h + ix.h) built with
#      `pkg-config --cflags --libs libix`, checked to compile against the installed headers and to need
#      libix.so.0, run: it must run on libix (event_base_get_method says "libix") and accept a connection;
#   3. the same program built by a CMake project with `find_package(libix CONFIG REQUIRED)` / `libix::ix`, run;
#   4. a second configure with -DIX_INSTALL_LIBEVENT_SONAMES=ON installed into another prefix: libevent's
#      sonames, dev links and .pc files point at libix, and a program built against Debian's libevent
#      (-levent_core, system headers, nothing of libix) runs on libix with LD_LIBRARY_PATH=P/lib (and on the
#      real libevent without it).
# Temporary directories are removed on exit, also on failure. Usage: packaging_test.sh BUILD_DIR
set -euo pipefail

build_dir="$(cd "${1:?usage: packaging_test.sh BUILD_DIR}" && pwd)"
src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d /tmp/libix-packaging.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "packaging: FAIL: $*" >&2
    exit 1
}
step() { echo "packaging: $*"; }

for tool in cmake gcc pkg-config readelf; do
    command -v "$tool" >/dev/null || fail "$tool is needed (scripts/setup.sh installs it)"
done

version="$(sed -n 's/^version = "\([0-9.]*\)"$/\1/p' "$src_dir/Cargo.toml" | head -1)"
major="${version%%.*}"
[ -n "$version" ] || fail "no version in Cargo.toml"

# --- 1. install and layout --------------------------------------------------------------------------------------
prefix="$tmp/prefix"
step "cmake --install $build_dir --prefix $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "install"; }
lib="$prefix/lib"
[ -f "$lib/libix.so.$version" ] && [ ! -L "$lib/libix.so.$version" ] || fail "lib/libix.so.$version is not a file"
[ "$(readlink "$lib/libix.so.$major")" = "libix.so.$version" ] || fail "libix.so.$major does not link libix.so.$version"
[ "$(readlink "$lib/libix.so")" = "libix.so.$major" ] || fail "libix.so does not link libix.so.$major"
soname="$(readelf -d "$lib/libix.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libix.so.$major" ] || fail "soname is '$soname', expected libix.so.$major"
for tool in ixctl ixbench ixnetem; do
    [ -x "$prefix/bin/$tool" ] || fail "bin/$tool missing"
done
for header in ix.h libix/event.h libix/event2/event.h libix/event2/listener.h libix/event2/thread.h \
    libix/event2/event-config.h; do
    [ -f "$prefix/include/$header" ] || fail "include/$header missing"
done
[ -f "$lib/pkgconfig/libix.pc" ] || fail "lib/pkgconfig/libix.pc missing"
[ -f "$lib/cmake/libix/libixConfig.cmake" ] && [ -f "$lib/cmake/libix/libixConfigVersion.cmake" ] \
    || fail "CMake package files missing"
if ls "$lib" | grep -q '^libevent'; then fail "libevent links installed without IX_INSTALL_LIBEVENT_SONAMES"; fi
"$prefix/bin/ixctl" --help >/dev/null || fail "installed ixctl does not run"
step "layout ok (libix.so.$version, soname libix.so.$major, tools, headers, pkg-config, CMake package)"

# The program users write: libevent's API from the installed headers, and ix.h next to it.
cat >"$tmp/app.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <ix.h>

static int accepted;

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	(void)l; (void)sa; (void)len;
	accepted++;
	close(fd);
	event_base_loopbreak(arg);
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct evconnlistener *l = evconnlistener_new_bind(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE, -1,
	    (struct sockaddr *)&sin, sizeof(sin));
	if (!base || !l)
		return 2;
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sin, slen) != 0)
		return 3;
	event_base_dispatch(base);
	printf("method=%s version=%s accepted=%d\n", event_base_get_method(base), event_get_version(), accepted);
	close(c);
	evconnlistener_free(l);
	event_base_free(base);
	return accepted == 1 ? 0 : 4;
}
EOF

# --- 2. pkg-config -----------------------------------------------------------------------------------------------
export PKG_CONFIG_PATH="$lib/pkgconfig"
flags="$(pkg-config --cflags --libs libix)" || fail "pkg-config does not know libix"
step "pkg-config --cflags --libs libix: $flags"
[ "$(pkg-config --modversion libix)" = "$version" ] || fail "pkg-config version is not $version"
# shellcheck disable=SC2086
gcc -Wall -Wextra -Werror -o "$tmp/app_pc" "$tmp/app.c" $flags -MD -MF "$tmp/app_pc.d" \
    || fail "building with pkg-config's flags"
# The headers came from the install (not from a system libevent-dev, nor from the source tree).
grep -q "$prefix/lib/pkgconfig/../../include/libix/event2/event.h\|$prefix/include/libix/event2/event.h" \
    "$tmp/app_pc.d" || fail "event2/event.h did not come from the installed include/libix"
readelf -d "$tmp/app_pc" | grep -q 'NEEDED.*\[libix.so.'"$major"'\]' || fail "app does not need libix.so.$major"
out="$(LD_LIBRARY_PATH="$lib" "$tmp/app_pc")" || fail "pkg-config app failed: $out"
step "pkg-config app: $out"
case "$out" in "method=libix version=2.1.12-stable accepted=1") ;; *) fail "unexpected output: $out" ;; esac
ldd_out="$(LD_LIBRARY_PATH="$lib" ldd "$tmp/app_pc")"
grep -q "libix.so.$major => $lib/libix.so.$major" <<<"$ldd_out" || fail "app did not load the installed libix"

# --- 3. CMake find_package ---------------------------------------------------------------------------------------
mkdir -p "$tmp/cmake-app"
cp "$tmp/app.c" "$tmp/cmake-app/app.c"
cat >"$tmp/cmake-app/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(libix_consumer C)
find_package(libix $version CONFIG REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE libix::ix)
EOF
cmake -S "$tmp/cmake-app" -B "$tmp/cmake-app/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake-app.log" 2>&1 \
    || { cat "$tmp/cmake-app.log"; fail "find_package(libix CONFIG REQUIRED)"; }
cmake --build "$tmp/cmake-app/build" >>"$tmp/cmake-app.log" 2>&1 || { cat "$tmp/cmake-app.log"; fail "CMake build"; }
# CMake's build RPATH points at the installed lib directory: no LD_LIBRARY_PATH needed.
out="$("$tmp/cmake-app/build/app")" || fail "CMake app failed: $out"
step "find_package app: $out"
case "$out" in "method=libix version=2.1.12-stable accepted=1") ;; *) fail "unexpected output: $out" ;; esac
# A version it does not provide is refused.
sed -i "s/find_package(libix $version/find_package(libix 99.0/" "$tmp/cmake-app/CMakeLists.txt"
if cmake -S "$tmp/cmake-app" -B "$tmp/cmake-app/build99" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
    fail "find_package(libix 99.0) succeeded"
fi

# --- 4. libevent's sonames ---------------------------------------------------------------------------------------
prefix2="$tmp/prefix-sonames"
step "configure with -DIX_INSTALL_LIBEVENT_SONAMES=ON, install into $prefix2"
profile="$(sed -n 's/^IX_CARGO_PROFILE:STRING=//p' "$build_dir/CMakeCache.txt")"
cmake -S "$src_dir" -B "$tmp/build-sonames" -DIX_INSTALL_LIBEVENT_SONAMES=ON -DIX_CARGO_PROFILE="${profile:-release}" \
    >"$tmp/configure2.log" 2>&1 || { cat "$tmp/configure2.log"; fail "configure with IX_INSTALL_LIBEVENT_SONAMES"; }
cmake --install "$tmp/build-sonames" --prefix "$prefix2" >"$tmp/install2.log" \
    || { cat "$tmp/install2.log"; fail "install with sonames"; }
lib2="$prefix2/lib"
for so in libevent_core-2.1.so.7 libevent_pthreads-2.1.so.7; do
    [ "$(readlink "$lib2/$so")" = "libix.so.$major" ] || fail "$so does not link libix.so.$major"
done
# libevent_extra stays libevent's own (it runs on libix); libevent-2.1.so.7 (core + extra) is a stub needing both.
[ ! -e "$lib2/libevent_extra-2.1.so.7" ] || fail "libevent_extra-2.1.so.7 installed: it must stay libevent's"
needed="$(readelf -d "$lib2/libevent-2.1.so.7" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
case "$needed" in
*"libix.so.$major "*"libevent_extra-2.1.so.7 "*) ;;
*) fail "libevent-2.1.so.7 needs '$needed', expected libix.so.$major and libevent_extra-2.1.so.7" ;;
esac
for so in libevent.so libevent_core.so libevent_pthreads.so; do
    [ "$(readlink "$lib2/$so")" = "libix.so" ] || fail "$so does not link libix.so"
done
for pc in libevent libevent_core libevent_pthreads; do
    libs="$(PKG_CONFIG_PATH="$lib2/pkgconfig" pkg-config --libs "$pc")" || fail "no $pc.pc"
    grep -q -- "-lix" <<<"$libs" || fail "$pc.pc does not link libix: $libs"
done
[ "$(PKG_CONFIG_PATH="$lib2/pkgconfig" pkg-config --modversion libevent)" = "2.1.12-stable" ] \
    || fail "libevent.pc version"

# An unmodified libevent program: Debian's headers and libevent_core, nothing of libix at build time.
[ -e /usr/include/event2/event.h ] || fail "Debian's libevent-dev is needed (scripts/setup.sh installs it)"
cat >"$tmp/plain.c" <<'EOF'
#include <stdio.h>
#include <event2/event.h>
int main(void)
{
	struct event_base *base = event_base_new();
	if (!base)
		return 2;
	printf("%s\n", event_base_get_method(base));
	event_base_free(base);
	return 0;
}
EOF
gcc -Wall -Werror -o "$tmp/plain" "$tmp/plain.c" -levent_core || fail "building against Debian's libevent"
readelf -d "$tmp/plain" | grep -q 'NEEDED.*\[libevent_core-2.1.so.7\]' || fail "plain program does not need libevent_core"
real="$(env -u LD_LIBRARY_PATH "$tmp/plain")" || fail "plain program on the real libevent"
[ "$real" != "libix" ] || fail "without the prefix the program already says libix"
ours="$(LD_LIBRARY_PATH="$lib2" "$tmp/plain")" || fail "plain program on libix"
step "unmodified -levent_core program: '$real' on Debian's libevent, '$ours' with LD_LIBRARY_PATH=$lib2"
[ "$ours" = "libix" ] || fail "with LD_LIBRARY_PATH=$lib2 the program says '$ours', expected libix"

# An unmodified -levent program using libevent_extra (evhttp, evtag): libevent's own libevent_extra on libix.
cat >"$tmp/extra.c" <<'EOF'
#include <stdio.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/tag.h>
int main(void)
{
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http || !evhttp_bind_socket_with_handle(http, "127.0.0.1", 0))
		return 2;
	struct evbuffer *buf = evbuffer_new();
	ev_uint32_t got = 0;
	evtag_init();
	evtag_marshal_int(buf, 7, 123456);
	if (evtag_unmarshal_int(buf, 7, &got) < 0 || got != 123456)
		return 3;
	printf("%s\n", event_base_get_method(base));
	evbuffer_free(buf);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
EOF
gcc -Wall -Werror -o "$tmp/extra" "$tmp/extra.c" -levent || fail "building an evhttp program against Debian's libevent"
ours="$(LD_LIBRARY_PATH="$lib2" "$tmp/extra")" || fail "evhttp/evtag program on libix + libevent_extra (rc $?)"
[ "$ours" = "libix" ] || fail "the -levent program says '$ours' with LD_LIBRARY_PATH=$lib2, expected libix"
step "unmodified -levent program (evhttp bind, evtag round trip): '$ours' with libevent's libevent_extra on top"

echo "packaging: PASSED"
