#!/usr/bin/env bash
# Load test of the viewer on loopback: 50 concurrent clients ask for embeddings and heatmaps for
# 30 s against `prism serve` on a generated project; prints p50/p99 latency and the error count
# (non-zero exit on any error). Bounded in time (SECONDS_) and count (per-client cap).
#
#   bench/viewer/run.sh                  # 50 clients, 30 s, dev build
#   CLIENTS=10 SECONDS_=5 bench/viewer/run.sh
#   PROJECT=path/project.yaml bench/viewer/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CLIENTS=${CLIENTS:-50}
SECONDS_=${SECONDS_:-30}
PROFILE=${PROFILE:-debug}
flag=""; [ "$PROFILE" = release ] && flag="--release"
cargo build -q $flag -p prism-cli --bin prism
cargo build -q $flag -p prism-viewer --example synth_project --example viewer_load
WORK=$(mktemp -d)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PROJECT=${PROJECT:-$("$TARGET/$PROFILE/examples/synth_project" "$WORK/p" --classes 10 --per-class 200)}
"$TARGET/$PROFILE/prism" serve "$PROJECT" --port 0 > "$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q http:// "$WORK/serve.log" && break; sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1)
echo "server: $URL ($PROFILE build), project $PROJECT"
"$TARGET/$PROFILE/examples/viewer_load" "$URL" --clients "$CLIENTS" --seconds "$SECONDS_"
