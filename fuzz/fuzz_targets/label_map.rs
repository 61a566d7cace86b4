//! libFuzzer target `label_map`: see `prism_fuzz::targets::label_map`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::label_map::run(data));
