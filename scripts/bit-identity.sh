#!/usr/bin/env bash
# Bit-identity check for refactors: runs a fixed matrix of Prism jobs with two `prism` binaries
# (e.g. built from main before and after a change) and byte-compares every output file.
#
#   scripts/bit-identity.sh BEFORE_PRISM AFTER_PRISM [--no-demo] [--keep DIR]
#
# The matrix: `predict` and `explain` on the fixture models (every built-in composite in f32 and
# f64, gradient, zero-bias + logit seed, no canonizers, SmoothGrad, Integrated Gradients,
# Occlusion), `attribute` on the bundled demo data (whole, two shards + `merge`, a compressed
# Gamma run with predicted targets), `analyze`, `project`, `heatmap`, `evaluate` and, unless
# --no-demo, the whole `prism demo`. Exit status 0 iff every output is identical (see `same`). Run from anywhere;
# outputs go to a temporary folder (kept with --keep DIR).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
before=$(realpath "$1"); after=$(realpath "$2"); shift 2
demo=1; keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-demo) demo=0 ;;
    --keep) keep=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
work=${keep:-$(mktemp -d)}
mkdir -p "$work"
F=$root/tests/fixtures; A=$root/assets/demo

matrix() { # matrix PRISM OUT
  local P=$1 O=$2
  mkdir -p "$O/explain" "$O/predict" "$O/run" "$O/heat"
  cd "$O" || return 1
  run() { echo "+ $*" >> commands.log; "$@" >> stdout.log 2>> stderr.log || echo "FAILED($?): $*" >> commands.log; }
  for m in tiny_vgg tiny_vgg_bn tiny_resnet tiny_densenet tiny_mobilenetv2 mlp conv1d ops_conv ops_pool \
           ops_elementwise helper_matmul helper_gemm_flags; do
    run "$P" predict "$F/$m.onnx" "$F/$m.input.npy" --output "predict/$m.npy"
    run "$P" predict "$F/$m.onnx" "$F/$m.input.npy" --output "predict/$m.f64.npy" --dtype f64
    for c in epsilon-gamma-box epsilon-plus epsilon-plus-flat epsilon-alpha2-beta1 epsilon-alpha2-beta1-flat \
             excitation-backprop deconvnet guided-backprop beta-smooth; do
      for d in f32 f64; do
        run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.$c.$d.npy" --composite "$c" \
          --dtype "$d" --low -2 --high 2
      done
    done
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.grad.npy" --dtype f64
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.eps-zb.npy" --composite epsilon-plus \
      --zero-bias --dtype f64 --seed-mode logit
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.nocanon.npy" \
      --composite epsilon-gamma-box --no-canonize --dtype f64 --low -1 --high 1 --gamma 0.5
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.sg.npy" --attributor smoothgrad --n-iter 3 --seed 7
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.ig.npy" --attributor integrated-gradients \
      --n-iter 4 --composite epsilon-plus
    run "$P" explain "$F/$m.onnx" "$F/$m.input.npy" --output "explain/$m.occ.npy" --attributor occlusion \
      --window 4 --stride 4 --dtype f64
  done
  local att=(--model "$A/mnist-cnn.onnx" --dataset "$A/mnist.h5" --composite epsilon-plus-flat --batch-size 8 --limit 200 --threads 1)
  run "$P" attribute "${att[@]}" --output run/attr.h5
  run "$P" attribute "${att[@]}" --output 'run/attr-{shard}.h5' --shard 0/2
  run "$P" attribute "${att[@]}" --output 'run/attr-{shard}.h5' --shard 1/2
  run "$P" merge run/attr-000-of-002.h5 run/attr-001-of-002.h5 --output run/merged.h5
  run "$P" attribute --model "$A/mnist-cnn.onnx" --dataset "$A/mnist.h5" --output run/attr-gamma.h5 \
    --composite epsilon-gamma-box --low 0 --high 1 --batch-size 16 --limit 96 --target predicted --compression 4
  run "$P" analyze run/attr.h5 --output run/analysis.h5 --cache-dir cache
  cp "$A/mnist.h5" "$A/label-map.json" run/
  run "$P" project --dataset run/mnist.h5 --attribution run/attr.h5 --analysis run/analysis.h5 \
    --label-map run/label-map.json --output run/project.yaml
  run "$P" heatmap explain/tiny_vgg.epsilon-plus-flat.f32.npy --output heat/ --cmap coldnhot --symmetric
  run "$P" evaluate "$F/tiny_vgg.onnx" "$F/tiny_vgg.input.npy" --output-dir eval --no-plots
  [ "$demo" = 1 ] && run "$P" demo --output demo
  rm -rf cache
}

(matrix "$before" "$work/before")
(matrix "$after" "$work/after")
# HDF5 object headers carry write times, so .h5 files are compared by their full `h5dump`
# (apt package hdf5-tools); JSON reports without their "*_seconds" timings; everything else by bytes.
json_norm() {
  python3 -c 'import json, sys
def f(o):
    if isinstance(o, dict): return {k: f(v) for k, v in o.items() if not k.endswith("_seconds")}
    if isinstance(o, list): return [f(v) for v in o]
    return o
print(json.dumps(f(json.load(open(sys.argv[1]))), sort_keys=True))' "$1"
}
same() {
  case "$1" in
    *.h5) diff -q <(h5dump "$work/before/$1" | tail -n +2) <(h5dump "$work/after/$1" | tail -n +2) >/dev/null ;;
    *.json) diff -q <(json_norm "$work/before/$1") <(json_norm "$work/after/$1") >/dev/null ;;
    *) cmp -s "$work/before/$1" "$work/after/$1" ;;
  esac
}
command -v h5dump >/dev/null || { echo "h5dump not found: apt-get install hdf5-tools" >&2; exit 2; }
bad=0; n=0
while IFS= read -r f; do
  n=$((n + 1))
  if [ ! -f "$work/after/$f" ]; then echo "only before: $f"; bad=$((bad + 1));
  elif ! same "$f"; then echo "differs: $f"; bad=$((bad + 1)); fi
done < <(cd "$work/before" && find . -type f ! -name '*.log' ! -path '*.cache/*' | sort)
while IFS= read -r f; do
  [ -f "$work/before/$f" ] || { echo "only after: $f"; bad=$((bad + 1)); }
done < <(cd "$work/after" && find . -type f ! -name '*.log' ! -path '*.cache/*' | sort)
diff <(grep -c FAILED "$work/before/commands.log") <(grep -c FAILED "$work/after/commands.log") >/dev/null \
  || { echo "the two binaries failed different commands:"; grep FAILED "$work"/*/commands.log; bad=$((bad + 1)); }
diff -q "$work/before/stdout.log" "$work/after/stdout.log" >/dev/null || { echo "stdout differs (see $work/*/stdout.log)"; }
echo "$n files compared, $bad differ${keep:+ (outputs in $work)}"
[ -z "$keep" ] && [ "$bad" -eq 0 ] && rm -rf "$work"
[ "$bad" -eq 0 ]
