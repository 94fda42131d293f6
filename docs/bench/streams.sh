#!/usr/bin/env bash
# Response streams: appends per second with one writer and with eight (each append one chunk,
# acknowledged once stored), and how long a late reader takes to catch up with a stream of
# 10,000 chunks, open and after its end. On the default durable SQLite, then on memory.
# Run from the repository's root: bash docs/bench/streams.sh
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald/target}"
cargo build --release -p herald-server -p herald-loadgen
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
secret=0123456789abcdef0123456789abcdef
HERALD_LOAD_TOKEN="$("$bin/herald" token --jwt-secret "$secret" --sub bench --publish '*')"
export HERALD_LOAD_TOKEN

for storage in sqlite memory; do
    rm -rf "$work/data"
    HERALD_LOG=error "$bin/herald" --listen 127.0.0.1:9480 --data-dir "$work/data" \
        --static-dir "$work/none" --jwt-secret "$secret" --storage "$storage" \
        --publish-rate 0 --publish-byte-rate 0 --stream-max-open 1000 &
    pid=$!
    until (exec 3<>/dev/tcp/127.0.0.1/9480) 2>/dev/null; do sleep 0.1; done
    echo "== $storage"
    "$bin/herald-load" streams --addr 127.0.0.1:9480 "$@" 2>&1 >/dev/null | grep '^streams'
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
