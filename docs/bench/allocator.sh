#!/usr/bin/env bash
# The allocator A/B: Herald with glibc's malloc (the default) against mimalloc (the `mimalloc`
# feature), on the same scenarios: idle memory per subscriber, CPU per delivery and latency of
# unicast publishes, and memory through churn. Pinned like `cargo xtask bench` (the server on
# CPU 0, the load generator on CPU 1), default durable storage, a JWT-authenticated publisher.
# Run from the repository's root: bash docs/bench/allocator.sh
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald/target}"
work="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -p herald-server -p herald-loadgen
cp "$CARGO_TARGET_DIR/release/herald" "$work/herald-glibc"
cargo build --release -p herald-server --features mimalloc
cp "$CARGO_TARGET_DIR/release/herald" "$work/herald-mimalloc"
load="$CARGO_TARGET_DIR/release/herald-load"
ulimit -n "$(ulimit -Hn)"
secret=0123456789abcdef0123456789abcdef
HERALD_LOAD_TOKEN="$("$work/herald-glibc" token --jwt-secret "$secret" --sub bench --publish '*')"
export HERALD_LOAD_TOKEN

run() {
    local allocator=$1
    shift
    rm -rf "$work/data"
    HERALD_LOG=error taskset -c 0 "$work/herald-$allocator" --listen 127.0.0.1:9491 \
        --data-dir "$work/data" --static-dir "$work/none" --jwt-secret "$secret" \
        --max-connections-per-address 0 --new-client-rate 0 --publish-rate 0 \
        --publish-byte-rate 0 &
    pid=$!
    until (exec 3<>/dev/tcp/127.0.0.1/9491) 2>/dev/null; do sleep 0.1; done
    taskset -c 1 "$load" run --target herald --addr 127.0.0.1:9491 --server-pid "$pid" "$@" \
        2>&1 >/dev/null | { grep -E 'memory|CPU per delivery| p50 | p99 ' || true; } \
        | sed "s/^ */$allocator: /"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

for allocator in glibc mimalloc; do
    run "$allocator" --scenario idle --subscribers 10000
    run "$allocator" --scenario unicast --subscribers 5000 --rates 1000,3000 --step-secs 8
    run "$allocator" --scenario churn --subscribers 5000 --churn-secs 20
done
