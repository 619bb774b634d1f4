#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skopos_fuzz::zipkin(data));
