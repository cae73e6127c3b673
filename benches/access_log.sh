#!/usr/bin/env bash
# What does the access log cost a hot hit? folio (release) pinned to CPU 0,
# wrk (one thread, 50 connections) pinned to CPU 1, one cached 1 KB product,
# 6 s per run, three interleaved rounds (medians) of: log off, human lines to a file
# through stdout, JSON lines to a file through stdout, --access-log FILE.
# Prints a markdown table (and writes it to benches/results/access-log.md)
# with req/s per run, the median per setting and its ratio to "off".
#
#   benches/access_log.sh        # needs wrk (apt-get install -y wrk)
#
# Loopback only; every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk"; exit 1; }
cargo build --release --locked --bin folio --example bookstore >/dev/null

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

api=18581
folio_port=18580
./target/release/examples/bookstore --listen "127.0.0.1:$api" --latency-ms 0 >/dev/null &
pids+=($!)
sleep 0.5

# run NAME ARGS...: starts folio with ARGS, warms the key, measures; prints req/s.
run() {
  local name="$1"; shift
  taskset -c 0 ./target/release/folio --listen "127.0.0.1:$folio_port" --admin-listen off \
    --upstream "http://127.0.0.1:$api" --policies policies "$@" >"$work/$name.stdout" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null -H 'X-Tenant-ID: acme' "http://127.0.0.1:$folio_port/api/v1/products/42" && break
    sleep 0.05
  done
  local rate
  rate="$(taskset -c 1 wrk -t1 -c50 -d6s -H 'X-Tenant-ID: acme' \
    "http://127.0.0.1:$folio_port/api/v1/products/42" | awk '/Requests\/sec/ {print $2}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$rate"
}

declare -A rates
settings=(off file human json)
for round in 1 2 3; do
  for setting in "${settings[@]}"; do
    case "$setting" in
      off) rate="$(run off --access-log off)" ;;
      human) rate="$(run human --access-log on)" ;;
      json) rate="$(run json --access-log on --log-format json)" ;;
      file) rate="$(run file --access-log "$work/access.log")" ;;
    esac
    rates[$setting]+="$rate "
    echo "round $round, $setting: $rate req/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
off="$(echo "${rates[off]}" | median)"
{
  echo "# Access log cost on a hot 1 KB hit ($(date -u +%Y-%m-%d))"
  echo
  echo "folio (release) on CPU 0, wrk -t1 -c50 -d6s on CPU 1, three interleaved rounds (medians);"
  echo "stdout redirected to a file. $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo
  echo "| access log | runs (req/s) | median | × off |"
  echo "|---|---|---:|---:|"
  for setting in "${settings[@]}"; do
    m="$(echo "${rates[$setting]}" | median)"
    ratio="$(awk -v a="$m" -v b="$off" 'BEGIN {printf "%.2f", a / b}')"
    echo "| $setting | ${rates[$setting]}| $m | $ratio |"
  done
} | tee benches/results/access-log.md
