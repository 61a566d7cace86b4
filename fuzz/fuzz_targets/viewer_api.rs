//! libFuzzer target `viewer_api`: see `prism_fuzz::targets::viewer_api`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::viewer_api::run(data));
