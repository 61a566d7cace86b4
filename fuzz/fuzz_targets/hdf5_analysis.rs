//! libFuzzer target `hdf5_analysis`: see `prism_fuzz::targets::hdf5_analysis`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::hdf5_analysis::run(data));
