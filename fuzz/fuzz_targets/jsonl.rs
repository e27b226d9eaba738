//! `scripts/fuzz jsonl MINUTES`: see mlm_fuzz_entries::jsonl.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::jsonl(data));
