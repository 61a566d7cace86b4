#!/usr/bin/env bash
# Browser tests of the viewer (`prism serve`) in headless Chromium.
#
# Installs Debian's chromium (apt) if missing and playwright-core (npm, pinned by
# tests/browser/package-lock.json), builds `prism` and the project generator, writes a small
# generated project, a generated token project and one with 10^6 points, and runs tests/browser/viewer.test.mjs with node's
# test runner. Screenshots and the 10^6-point frame times go to $ARTIFACTS
# (default: target/browser-artifacts).
#
#   scripts/ci-browser.sh                   # generated projects
#   PROJECT=demo/project.yaml scripts/ci-browser.sh   # test another project (e.g. the demo)
#   BIG_POINTS=0 scripts/ci-browser.sh      # skip the 10^6-point measurement
#   DEMO_DIR=0 scripts/ci-browser.sh        # skip `prism demo --serve` (its screenshot test)
#
# `prism demo --serve` works in $DEMO_DIR (default: $TARGET/tmp/demo, where `cargo test -p
# prism-cli --test demo` leaves its run, so after scripts/test's cargo test the demo's steps are
# done), kept between runs: without it the demo attributes and clusters 10 000 digits (minutes
# in this debug build); with it, it reuses the finished steps (seconds).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ARTIFACTS=${ARTIFACTS:-$TARGET/browser-artifacts}
BIG_POINTS=${BIG_POINTS:-1000000}
DEMO_DIR=${DEMO_DIR:-$TARGET/tmp/demo}
[ "$DEMO_DIR" = "0" ] && DEMO_DIR=""
mkdir -p "$ARTIFACTS"

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== installing playwright-core (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== building prism and the project generator"
cargo build -q -p prism-cli --bin prism
cargo build -q -p prism-viewer --example synth_project

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
GENERATED=0
if [ -z "${PROJECT:-}" ]; then
  PROJECT=$("$TARGET/debug/examples/synth_project" "$WORK/demo")
  GENERATED=1
fi
echo "== generating a token project"
TOKEN_PROJECT=$("$TARGET/debug/examples/synth_project" "$WORK/tokens" --tokens 12)
BIG_PROJECT=""
if [ "$BIG_POINTS" != "0" ]; then
  echo "== generating a project with $BIG_POINTS points"
  BIG_PROJECT=$("$TARGET/debug/examples/synth_project" "$WORK/big" --points "$BIG_POINTS")
fi

if [ -n "$DEMO_DIR" ]; then
  echo "== the demo into $DEMO_DIR (reuses finished steps)"
  "$TARGET/debug/prism" demo --output "$DEMO_DIR" | tail -3
fi

echo "== browser tests ($(chromium --version 2>/dev/null | head -1))"
PRISM_BIN="$TARGET/debug/prism" DEMO_DIR="$DEMO_DIR" PROJECT="$PROJECT" BIG_PROJECT="$BIG_PROJECT" TOKEN_PROJECT="$TOKEN_PROJECT" ARTIFACTS="$ARTIFACTS" GENERATED="$GENERATED" \
  node --test --test-concurrency=1 --test-timeout=600000 tests/browser/viewer.test.mjs
echo "== artefacts in $ARTIFACTS"
