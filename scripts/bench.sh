#!/usr/bin/env bash
# The whole comparison, on this machine, loopback only, bounded in time
# (about 15 minutes; --quick: about 2): folio against nginx proxy_cache and
# Varnish. Installs what is missing first: wrk, oha (cargo, with the system's
# OpenSSL rather than its default rustls, whose crypto needs a CMake build),
# nginx, varnish and redis-server (Debian packages), matplotlib (for the
# chart). Results go to benches/results/.
#
#   scripts/bench.sh            # the full run: latest.md, <date>.md, chart.png
#   scripts/bench.sh --quick    # 2 s runs, one round: a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v varnishd >/dev/null 2>&1 || [ -x /usr/sbin/varnishd ] || missing+=(varnish)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v oha >/dev/null 2>&1 || missing+=(libssl-dev pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v oha >/dev/null 2>&1; then
  echo "==> installing oha (cargo install; a few minutes)"
  cargo install --locked --no-default-features --features native-tls oha
fi
if ! python3 -c "import matplotlib" 2>/dev/null; then
  echo "==> installing matplotlib (for the chart)"
  python3 -m pip install --quiet matplotlib
fi
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
exec python3 benches/compare.py "$@"
