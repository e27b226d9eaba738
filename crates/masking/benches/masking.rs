//! Masking + collation throughput on 256 x 128-token batches (std::time, no criterion).
//!
//! `cargo bench -p mlm-masking --bench masking [-- --seconds S]`; scripts/bench-masking runs
//! it beside Hugging Face's collator on the same batches. One thread; prints one line per
//! case: `case=<name> tokens_per_s=<median of 5 timed rounds> cpu_tokens_per_s=<the same by
//! on-CPU time>`.

// A bench reports its numbers on stdout (scripts/bench-masking reads them).
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mlm_masking::{
    MaskInput, MaskKey, MaskedSequence, Masker, MaskingConfig, SpecialTokens, collate,
};

const BATCH: usize = 256;
const LEN: usize = 128;
const DISTINCT_BATCHES: usize = 8;

/// The batches scripts/bench-masking builds for Hugging Face too: [CLS] 126 ids [SEP], id of
/// (batch b, row r, column t) = 1000 + ((b*131 + r*31 + t*17) * 2654435761 mod 2^32) mod 29000.
fn batches() -> Vec<Vec<Vec<u32>>> {
    (0..DISTINCT_BATCHES as u64)
        .map(|b| {
            (0..BATCH as u64)
                .map(|r| {
                    let mut row = vec![101u32];
                    row.extend((1..LEN as u64 - 1).map(|t| {
                        let h = ((b * 131 + r * 31 + t * 17) * 2_654_435_761) % (1 << 32);
                        1000 + (h % 29000) as u32
                    }));
                    row.push(102);
                    row
                })
                .collect()
        })
        .collect()
}

/// On-CPU time of this thread (Linux `/proc/thread-self/schedstat`, nanoseconds): on a
/// shared machine it leaves out the time other processes held the core.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// Median tokens/s of 5 rounds, each running `step` (one batch) for `seconds` / 5:
/// (by wall time, by on-CPU time).
fn measure(seconds: f64, mut step: impl FnMut(u64) -> usize) -> (f64, f64) {
    for i in 0..3 {
        black_box(step(i));
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut iteration = 3u64;
    for _ in 0..5 {
        let (start, cpu_start, mut tokens) = (Instant::now(), cpu_seconds(), 0usize);
        while start.elapsed() < Duration::from_secs_f64(seconds / 5.0) {
            tokens += step(iteration);
            iteration += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        wall.push(tokens as f64 / elapsed);
        let on_cpu = cpu_seconds()
            .zip(cpu_start)
            .map_or(elapsed, |(end, start)| end - start);
        cpu.push(tokens as f64 / on_cpu);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[2], cpu[2])
}

fn report(case: &str, (wall, cpu): (f64, f64)) {
    println!("case={case} tokens_per_s={wall:.0} cpu_tokens_per_s={cpu:.0}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(5.0);
    // `--only CASE` runs one case (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |case: &str| only.as_deref().is_none_or(|o| o == case);
    let special = SpecialTokens {
        vocab_size: 30522,
        pad_id: 0,
        mask_id: 103,
        special_ids: vec![0, 100, 101, 102, 103],
    };
    let masker = Masker::new(&MaskingConfig::default(), special).expect("valid config");
    let data = batches();
    let tokens = BATCH * LEN;

    // The API the trainer calls per sequence, then collate (Vec per sequence).
    if run("mask_then_collate") {
        let per_sequence = measure(seconds, |it| {
            let rows = &data[it as usize % DISTINCT_BATCHES];
            let seqs: Vec<MaskedSequence> = rows
                .iter()
                .enumerate()
                .map(|(r, ids)| {
                    masker.mask(
                        ids,
                        None,
                        MaskKey::train(42, 0, it * BATCH as u64 + r as u64),
                    )
                })
                .collect();
            black_box(collate(&seqs, 0, 103, Some(8))).masked_tokens();
            tokens
        });
        report("mask_then_collate", per_sequence);
    }

    // Masking straight into the batch arrays.
    if run("mask_batch") {
        let fused = measure(seconds, |it| {
            let rows = &data[it as usize % DISTINCT_BATCHES];
            let items: Vec<MaskInput<'_>> = rows
                .iter()
                .enumerate()
                .map(|(r, ids)| MaskInput {
                    input_ids: ids,
                    word_starts: None,
                    key: MaskKey::train(42, 0, it * BATCH as u64 + r as u64),
                })
                .collect();
            black_box(masker.mask_batch(&items, Some(8))).masked_tokens();
            tokens
        });
        report("mask_batch", fused);
    }

    // The same into one reused batch (a loader slot): no allocation in steady state.
    if run("mask_batch_into") {
        let mut batch = mlm_masking::Batch::default();
        let mut items: Vec<MaskInput<'_>> = Vec::with_capacity(BATCH);
        let reused = measure(seconds, |it| {
            items.clear();
            items.extend(data[it as usize % DISTINCT_BATCHES].iter().enumerate().map(
                |(r, ids)| MaskInput {
                    input_ids: ids,
                    word_starts: None,
                    key: MaskKey::train(42, 0, it * BATCH as u64 + r as u64),
                },
            ));
            masker.mask_batch_into(&items, Some(8), &mut batch);
            black_box(&batch);
            tokens
        });
        report("mask_batch_into", reused);
    }
}
