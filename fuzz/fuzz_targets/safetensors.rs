//! `scripts/fuzz safetensors MINUTES`: see mlm_fuzz_entries::safetensors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::safetensors(data));
