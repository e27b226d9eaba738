//! `scripts/fuzz parquet MINUTES`: see mlm_fuzz_entries::parquet. A panic that the reader
//! contains (mlm_corpus::untrusted: it becomes a `malformed_parquet` error naming the file,
//! as users see it) is not a crash; any other panic still aborts through libFuzzer's hook.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: mlm_fuzz_entries::contain_decoder_panics(),
    |data: &[u8]| mlm_fuzz_entries::parquet(data)
);
