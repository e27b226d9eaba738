//! `scripts/fuzz text MINUTES`: see mlm_fuzz_entries::text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::text(data));
