#!/usr/bin/env bash
# Installs what libix's build, tests and demo need on a fresh Debian 12 machine (run as root), and reserves
# 2 MiB huge pages for the mbuf pools. Idempotent: quick when everything is already there.
set -euo pipefail
need=()
for pkg in iproute2:ip ethtool:ethtool iputils-ping:ping cmake:cmake gcc:gcc python3:python3 \
           memcached:memcached libmemcached-tools:memcaslap libevent-dev:/usr/include/event2/event.h \
           util-linux:taskset pkgconf:pkg-config gdb:gdb; do
    name="${pkg%%:*}" probe="${pkg#*:}"
    if [[ "$probe" == /* ]]; then [ -e "$probe" ] || need+=("$name"); else command -v "$probe" >/dev/null || need+=("$name"); fi
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || { echo "setup: no Rust toolchain (cargo) found; install rustup first" >&2; exit 1; }
fi
# Huge pages for the mbuf pools (DESIGN.md §3); the dataplane falls back to 4 KiB pages without them.
want=256
have="$(cat /proc/sys/vm/nr_hugepages)"
if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages || true
fi
echo "setup: ok ($(cat /proc/sys/vm/nr_hugepages) huge pages reserved)"
