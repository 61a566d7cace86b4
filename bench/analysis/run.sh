#!/usr/bin/env bash
# SpRAy benchmark: Prism vs CoRelAy on the same attribution file, plus a scale run.
#
#   bash bench/analysis/run.sh [WORKDIR]
#
# Needs: cmake >= 3.26 on PATH (pip install cmake) for the bundled HDF5, and a Python venv with
# corelay[umap,hdbscan] (default /root/anchors-analysis; override with PY=...). Not run by CI.
# Results go to WORKDIR (default /tmp/prism-bench-analysis): *.log with per-stage timings.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/prism-bench-analysis}
PY=${PY:-/root/anchors-analysis/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p "$WORK"
cargo build --release -p prism-analysis --examples
cargo build --release -p prism-cli --bin prism
BIN=$CARGO_TARGET_DIR/release/examples
TIME="/usr/bin/time -f %e_s_wall_%M_KiB_peak"

# 1. One ImageNet-sized class: N = 1300, 3x224x224, whole pipeline, defaults on both sides.
[ -f "$WORK/n1300.h5" ] || $BIN/synthetic_attribution "$WORK/n1300.h5" 1 1300 3 224
# -v logs per-stage seconds; `uptime` records the box's load (the dev box is shared).
uptime | tee "$WORK/n1300-prism.log"
$TIME $CARGO_TARGET_DIR/release/prism -v analyze "$WORK/n1300.h5" --output "$WORK/n1300-prism.h5" --no-cache --force \
    2>&1 | tee -a "$WORK/n1300-prism.log"
uptime | tee -a "$WORK/n1300-prism.log"
uptime | tee "$WORK/n1300-corelay.log"
$TIME nice -n 0 "$PY" bench/analysis/corelay_pipeline.py "$WORK/n1300.h5" --json "$WORK/n1300-corelay.json" \
    2>&1 | tee -a "$WORK/n1300-corelay.log"
uptime | tee -a "$WORK/n1300-corelay.log"

# 2. Scale: N = 100 000 of 3x32x32 in one category (agglomerative is skipped above 20 000;
#    DBSCAN's O(N^2) neighbour lists are left out here).
[ -f "$WORK/n100k.h5" ] || $BIN/synthetic_attribution "$WORK/n100k.h5" 1 100000 3 32
uptime | tee "$WORK/n100k-prism.log"
$TIME $CARGO_TARGET_DIR/release/prism -vv analyze "$WORK/n100k.h5" --output "$WORK/n100k-prism.h5" --no-cache --force \
    --config bench/analysis/scale.toml 2>&1 | grep -v ' stage$' | tee -a "$WORK/n100k-prism.log"
uptime | tee -a "$WORK/n100k-prism.log"
