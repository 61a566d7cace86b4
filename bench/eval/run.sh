#!/usr/bin/env bash
# Region perturbation, Prism vs Quantus (see bench/eval/README.md). Arguments go to bench.py:
#   bench/eval/run.sh                  # the issue's setting: 100 images, 100 steps
#   bench/eval/run.sh --n 8 --steps 25 # a quick run
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/root/anchors/bin/python}
"$PY" -c "import quantus" 2>/dev/null || "$PY" -m pip install -q quantus==0.6.0
exec "$PY" bench/eval/bench.py "$@"
