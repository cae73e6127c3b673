#!/usr/bin/env bash
# Builds folio and the example bookstore API (release), starts the bookstore
# on 127.0.0.1:8081 and folio in front of it on 127.0.0.1:8080 with the
# policies in policies/, L1 only (no Redis needed). Ctrl-C stops both.
#
#   FOLIO_PORT=8080 BOOKSTORE_PORT=8081 LATENCY_MS=20 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

folio_port="${FOLIO_PORT:-8080}"
bookstore_port="${BOOKSTORE_PORT:-8081}"
latency_ms="${LATENCY_MS:-20}"

echo "==> building (release; the first build takes a few minutes)"
cargo build --release --locked --bin folio --example bookstore

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./target/release/examples/bookstore --listen "127.0.0.1:${bookstore_port}" --latency-ms "$latency_ms" &
pids+=($!)
./target/release/folio --listen "127.0.0.1:${folio_port}" \
  --upstream "http://127.0.0.1:${bookstore_port}" --policies policies \
  --config config/folio.example.yaml &
pids+=($!)

sleep 1
cat <<MSG

folio is caching the bookstore API. Send requests to http://127.0.0.1:${folio_port}
Dashboard: http://127.0.0.1:9090/_folio/   metrics: http://127.0.0.1:9090/_folio/metrics
  curl -i -H 'X-Tenant-ID: acme' http://127.0.0.1:${folio_port}/api/v1/products/42   # x-cache: MISS
  curl -i -H 'X-Tenant-ID: acme' http://127.0.0.1:${folio_port}/api/v1/products/42   # x-cache: HIT
  curl -s http://127.0.0.1:${bookstore_port}/_origin/stats                           # what reached the API
  curl -s -X POST http://127.0.0.1:9090/_folio/purge -H 'Content-Type: application/json' -d '{"tags":["route:/api/v1/products/{id}"],"tenant":"acme"}'
Ctrl-C stops both.
MSG
wait -n
