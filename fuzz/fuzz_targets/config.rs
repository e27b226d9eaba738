//! `scripts/fuzz config MINUTES`: see mlm_fuzz_entries::config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::config(data));
