#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skopos_fuzz::otlp_traces(data));
