//! libFuzzer target `npy`: see `prism_fuzz::targets::npy`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::npy::run(data));
