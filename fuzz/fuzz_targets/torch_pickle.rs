//! `scripts/fuzz torch_pickle MINUTES`: see mlm_fuzz_entries::torch_pickle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlm_fuzz_entries::torch_pickle(data));
