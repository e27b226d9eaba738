//! `scripts/fuzz trainer_state MINUTES`: see mlm_fuzz_entries::trainer_state.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::trainer_state(data));
