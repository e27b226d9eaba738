//! `scripts/fuzz parquet MINUTES`: see mlm_fuzz_entries::parquet.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::parquet(data));
