#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs redis-server when it is
# missing (the integration tests start their own Redis processes), then checks
# formatting and lints, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> redis-server not found; installing Debian's redis-server"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> benches, smoke run (small sizes, debug build)"
cargo test --benches --locked
echo "==> cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "==> all checks passed"
