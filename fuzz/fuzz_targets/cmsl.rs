//! libFuzzer target `cmsl`: see `prism_fuzz::targets::cmsl`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::cmsl::run(data));
