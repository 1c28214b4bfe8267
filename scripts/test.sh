#!/usr/bin/env bash
# Runs every libix test: Rust unit/property/integration tests (cargo test), then the C tests and the
# namespace tests through ctest. Needs root (namespaces, AF_XDP, TAP). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/test.sh needs root (network namespaces, AF_XDP, TAP)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
echo "== cargo test"
cargo test --workspace --all-targets 2>&1
echo "== C tests (ctest)"
build="${BUILD_DIR:-build}"
cmake -S . -B "$build" -DIX_CARGO_PROFILE=release >/dev/null
cmake --build "$build" -j 2
(cd "$build" && ctest --output-on-failure --timeout 600)
