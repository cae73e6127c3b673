#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when
# it is missing (redis-server, which the integration tests start themselves;
# python3, for the layering check; Chromium and the playwright-core driver,
# for the dashboard's browser test), then checks the shape of the code
# (scripts/check-layers.py), formatting and lints, that the Dockerfile's
# build stage compiles from exactly the files it copies, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
redis-server --version
if [ ! -d tests/dashboard/node_modules/playwright-core ]; then
  echo "==> installing the browser driver (playwright-core, pinned in tests/dashboard)"
  npm ci --prefix tests/dashboard --no-audit --no-fund --loglevel=error
fi

echo "==> no import cycle between modules, no source file over 600 lines"
python3 scripts/check-layers.py
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> the Docker image's build stage compiles what the Dockerfile copies"
bash scripts/check-docker-context.sh
echo "==> cargo test"
cargo test --locked
echo "==> benches, smoke run (small sizes, debug build)"
cargo test --benches --locked
echo "==> cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "==> all checks passed"
