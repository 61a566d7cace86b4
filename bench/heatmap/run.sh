#!/usr/bin/env bash
# Heatmap throughput, Prism vs Zennit, in one run: 1000 relevance maps of 224×224 (float32)
# rendered to PNG files by Zennit's imsave and by prism-heatmap (release build), both with the
# array already in memory. Prints both throughputs, the ratios, and checks identical pixels.
#
#   PYTHON=/root/anchors/bin/python bench/heatmap/run.sh [N] [CMAP]
#
# Needs a Python with numpy, pillow and zennit. Outputs go to bench/out/heatmap (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
N=${1:-1000}
CMAP=${2:-coldnhot}
OUT=bench/out/heatmap
mkdir -p "$OUT"

"$PYTHON" -c "
import numpy as np
rng = np.random.default_rng(0)
# smooth-ish signed maps (like real attributions), not white noise
base = rng.standard_normal(($N, 56, 56)).astype(np.float32)
maps = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2) + 0.3 * rng.standard_normal(($N, 224, 224)).astype(np.float32)
np.save('$OUT/relevance.npy', maps.astype(np.float32))
"
cargo build --release --quiet -p prism-heatmap --example bench_render
BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_render

rm -rf "$OUT/prism" "$OUT/prism1" "$OUT/zennit"
prism1=$(RAYON_NUM_THREADS=1 "$BIN" "$OUT/relevance.npy" "$OUT/prism1" "$CMAP" --symmetric)
prism=$("$BIN" "$OUT/relevance.npy" "$OUT/prism" "$CMAP" --symmetric)
zennit=$("$PYTHON" bench/heatmap/zennit_imsave.py "$OUT/relevance.npy" "$OUT/zennit" --cmap "$CMAP" --symmetric --compare "$OUT/prism")
echo "$zennit"
echo "$prism1"
echo "$prism"
rate() { sed -E 's/.*= ([0-9.]+) images\/s.*/\1/' <<<"$1" | head -1; }
z=$(rate "$zennit"); p1=$(rate "$prism1"); p=$(rate "$prism")
"$PYTHON" -c "print(f'ratio prism/zennit: {$p1/$z:.1f}x on 1 thread, {$p/$z:.1f}x on all threads')"
du -sh "$OUT/zennit" "$OUT/prism" | sed 's/^/size of PNGs: /'
