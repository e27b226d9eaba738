//! `scripts/fuzz fast_tokenizer MINUTES`: see mlm_fuzz_entries::fast_tokenizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::fast_tokenizer(data));
