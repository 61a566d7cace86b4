//! libFuzzer target `project_yaml`: see `prism_fuzz::targets::project_yaml`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::project_yaml::run(data));
