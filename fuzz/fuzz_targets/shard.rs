//! `scripts/fuzz shard MINUTES`: see mlm_fuzz_entries::shard. A panic that the shard reader
//! contains (mlm_corpus::untrusted: it becomes an error naming the shard, as users see it) is
//! not a crash; any other panic still aborts through libFuzzer's hook.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: mlm_fuzz_entries::contain_decoder_panics(),
    |data: &[u8]| mlm_fuzz_entries::shard(data)
);
