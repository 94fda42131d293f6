#!/usr/bin/env bash
# HTTP/2 beside HTTP/1.1: memory per idle event stream with 1 and with 100 streams per
# connection, over TLS and in cleartext (h2c), and the server's CPU time per delivery of a
# broadcast to every stream; then the HTTP/1.1 figures of the same build.
# Run from the repository's root: bash docs/bench/http2.sh [STREAMS]
# Builds herald and herald-load in release mode, makes a throwaway certificate with openssl,
# starts a fresh Herald on 127.0.0.1:9443 for each run, and prints one line per figure.
set -euo pipefail
streams="${1:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald/target}"
cargo build --release -p herald-server -p herald-loadgen
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
secret=0123456789abcdef0123456789abcdef
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE 2>/dev/null
HERALD_LOAD_TOKEN="$("$bin/herald" token --jwt-secret "$secret" --sub bench --publish '*')"
export HERALD_LOAD_TOKEN
tls=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")

start() {
    rm -rf "$work/data"
    HERALD_LOG=error "$bin/herald" --listen 127.0.0.1:9443 --data-dir "$work/data" \
        --static-dir "$work/none" --jwt-secret "$secret" --max-connections-per-address 0 \
        --new-client-rate 0 --publish-rate 0 --publish-byte-rate 0 "$@" &
    pid=$!
    until (exec 3<>/dev/tcp/127.0.0.1/9443) 2>/dev/null; do sleep 0.1; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
http2() {
    "$bin/herald-load" http2 --addr 127.0.0.1:9443 --server-pid "$pid" --streams "$streams" "$@" \
        2>&1 >/dev/null | grep '^http2'
}

for per_connection in 100 1; do
    start
    http2 --per-connection "$per_connection"
    stop
    start "${tls[@]}"
    http2 --per-connection "$per_connection" --tls-ca "$work/cert.pem"
    stop
done
start
http2 --per-connection 100 --broadcasts 80 --rate 10
stop
start "${tls[@]}"
http2 --per-connection 100 --broadcasts 80 --rate 10 --tls-ca "$work/cert.pem"
stop
start
"$bin/herald-load" run --scenario idle --target herald --addr 127.0.0.1:9443 \
    --server-pid "$pid" --subscribers "$streams" 2>&1 >/dev/null | grep "memory per idle"
stop
start
"$bin/herald-load" run --scenario broadcast --target herald --addr 127.0.0.1:9443 \
    --server-pid "$pid" --subscribers "$streams" --rates 10 --step-secs 8 2>&1 >/dev/null \
    | grep -E "CPU per delivery|deliveries"
stop
