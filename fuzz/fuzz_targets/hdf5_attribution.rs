//! libFuzzer target `hdf5_attribution`: see `prism_fuzz::targets::hdf5_attribution`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::hdf5_attribution::run(data));
