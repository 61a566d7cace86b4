//! libFuzzer target `onnx`: see `prism_fuzz::targets::onnx`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::onnx::run(data));
