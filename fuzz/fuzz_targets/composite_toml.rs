//! libFuzzer target `composite_toml`: see `prism_fuzz::targets::composite_toml`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::composite_toml::run(data));
