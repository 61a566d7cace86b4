#!/usr/bin/env bash
# The Python package's tests (crates/prism-py/tests, pytest): builds the extension into a
# private virtual environment (target/py-test-venv) with `maturin develop` in the dev profile,
# which reuses what `cargo test --workspace` built, and compares it with the `prism` binary of
# the same profile.
#
#   scripts/test-python.sh                # all Python tests
#   scripts/test-python.sh -k explain     # extra arguments go to pytest
#   PYTHON=python3.12 scripts/test-python.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${PRISM_TEST_VENV:-$TARGET/py-test-venv}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "error: $PYTHON is missing or older than 3.9; set PYTHON to a Python 3.9+ interpreter" >&2
  exit 1
fi
if [ -d "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "== $VENV is incomplete (an interrupted earlier run?): making it again"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "== installing python3-venv (apt)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
    else
      echo "error: cannot create a virtual environment with $PYTHON -m venv" >&2
      exit 1
    fi
  fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q "maturin>=1.9,<2" "pytest>=7" "numpy>=1.21"
echo "== building prism-xai (maturin develop, dev profile)"
cargo build -q --locked -p prism-cli
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop -q --locked --profile dev -m crates/prism-py/Cargo.toml
echo "== pytest crates/prism-py/tests"
PRISM_BIN="$TARGET/debug/prism" "$VENV/bin/python" -m pytest crates/prism-py/tests -q "$@"
