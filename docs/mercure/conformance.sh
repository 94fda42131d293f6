#!/usr/bin/env bash
# Runs Mercure's public conformance suite (the Playwright tests of dunglas/mercure at tag
# v0.24.2) against Herald, in Chromium: builds Herald, starts it with the suite's key and
# anonymous subscribers, runs the suite, stops Herald.
#
#   bash docs/mercure/conformance.sh
#
# Needs Node.js and npm, Chromium (Debian's package at /usr/bin/chromium, or CHROMIUM=path), and
# network access to GitHub for the suite's file. Herald serves the hub on 127.0.0.1:18090.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
herald=""
trap '[ -n "$herald" ] && kill "$herald" 2>/dev/null; rm -rf "$work"' EXIT

curl -fsSL -o "$work/mercure.spec.ts" \
  https://raw.githubusercontent.com/dunglas/mercure/v0.24.2/conformance-tests/mercure.spec.ts
cp "$root/docs/mercure/playwright.config.ts" "$work/"
(cd "$work" && npm init -y >/dev/null && npm install --silent @playwright/test dotenv)

cargo build --release -p herald-server --bin herald --manifest-path "$root/Cargo.toml"
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$work/data"
"$target/release/herald" --listen 127.0.0.1:18090 --data-dir "$work/data" \
  --jwt-secret '!ChangeThisMercureHubJWTSecretKey!' --mercure-anonymous \
  --publish-rate 0 --new-client-rate 0 2>"$work/herald.log" &
herald=$!
until grep -q "listening on" "$work/herald.log"; do sleep 0.2; done

cd "$work"
BASE_URL=http://127.0.0.1:18090/.well-known/mercure CUSTOM_ID=1 \
  npx playwright test --config playwright.config.ts
