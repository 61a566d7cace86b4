//! libFuzzer target `image`: see `prism_fuzz::targets::image`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prism_fuzz::targets::image::run(data));
