#!/usr/bin/env bash
# Regenerates crates/prism-model/src/onnx/proto.rs from crates/prism-model/proto/onnx.proto.
# The generated code is committed so that building Prism needs no protoc; run this only when
# the vendored onnx.proto changes. Uses prost-build with a protoc binary shipped on crates.io.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
cargo run --release --quiet --manifest-path "$root/scripts/protogen/Cargo.toml" \
  --target-dir "$out/target" -- "$root/crates/prism-model/proto/onnx.proto" "$out"
cp "$out/onnx.rs" "$root/crates/prism-model/src/onnx/proto.rs"
echo "wrote crates/prism-model/src/onnx/proto.rs"
