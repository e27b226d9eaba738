//! `scripts/fuzz medline MINUTES`: see mlm_fuzz_entries::medline.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::medline(data));
