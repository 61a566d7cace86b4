//! libFuzzer target `hdf5_dataset`: see `prism_fuzz::targets::hdf5_dataset`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::hdf5_dataset::run(data));
