#!/usr/bin/env bash
# A short load run: start `realtime serve` (embedded log) on a free port,
# run `realtime bench` scenarios against it, stop it. Used by `make bench`.
# Longer runs: see README "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/realtime
export REALTIME_JWT_SECRET=${REALTIME_JWT_SECRET:-load-test-secret-load-test-secret-0123}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)
REALTIME_ADDR=127.0.0.1:$port REALTIME_LOG_LEVEL=warn REALTIME_PUBLISH_RATE=0 "$bin" serve >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
sub=$("$bin" token --sub bench --workspace '*' --ttl 1h)
pub=$("$bin" token --sub bench-pub --workspace '*' --scope events:publish --ttl 1h)
common=(--url "http://127.0.0.1:$port" --token "$sub" --pub-token "$pub" --pid "$pid")
"$bin" bench "${common[@]}" --label short/steady --mode steady -n 1000 -w 10 --rate 200 --duration 5s | grep -v '^{'
"$bin" bench "${common[@]}" --label short/burst --mode burst -n 2000 --bursts 3 --burst-gap 1s | grep -v '^{'
