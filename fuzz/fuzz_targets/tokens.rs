//! libFuzzer target `tokens`: see `prism_fuzz::targets::tokens`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::tokens::run(data));
