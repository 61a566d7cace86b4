//! libFuzzer target `hdf5_concepts`: see `prism_fuzz::targets::hdf5_concepts`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::hdf5_concepts::run(data));
