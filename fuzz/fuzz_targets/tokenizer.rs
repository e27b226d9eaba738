//! `scripts/fuzz tokenizer MINUTES`: see mlm_fuzz_entries::tokenizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::tokenizer(data));
