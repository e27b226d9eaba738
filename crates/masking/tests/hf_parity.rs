//! Parity with Hugging Face `DataCollatorForLanguageModeling` (transformers/data/
//! data_collator.py, `torch_mask_tokens`): tests/python/masking_parity.py runs HF's collator
//! many times on a fixed batch from a tokenizer it builds itself and prints its statistics;
//! this test masks the same ids with our masker as many times and compares selection rate,
//! per-position selection rate and the [MASK] / random / keep split. The random-token
//! distribution is not compared: ours draws from the non-special vocabulary on purpose (HF's
//! can insert [PAD], [CLS] or [MASK]), which is checked instead.
//!
//! Needs the project's Python venv (`.venv/bin/python` with transformers): `scripts/setup`.

// The comparison helpers report the statistics they compare (`--nocapture` shows them).
#![allow(clippy::print_stderr)]

use mlm_masking::{MaskKey, Masker, MaskingConfig, SpecialTokens, collate};
use serde_json::Value;

/// Runs the Python side and parses its JSON.
fn hf_stats(args: &[&str]) -> Value {
    let out = mlm_pyref::run("masking_parity.py", args);
    serde_json::from_slice(&out.stdout).expect("masking_parity.py prints one JSON object")
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("JSON key {key} missing"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The same statistics as the Python script, from our masker on the same ids.
struct Stats {
    seq_len: usize,
    selected_per_cell: Vec<Vec<f64>>,
    selected: f64,
    mask: f64,
    random: f64,
    keep: f64,
    random_special: usize,
}

fn our_stats(hf: &Value, config: &MaskingConfig, runs: u64) -> Stats {
    let special = SpecialTokens {
        vocab_size: num(hf, "vocab_size") as u32,
        pad_id: num(hf, "pad_id") as u32,
        mask_id: num(hf, "mask_id") as u32,
        special_ids: ids(&hf["special_ids"]),
    };
    let (pad, mask) = (special.pad_id, special.mask_id);
    let masker = Masker::new(config, special).expect("valid masker");
    let rows: Vec<Vec<u32>> = hf["input_ids"]
        .as_array()
        .expect("input_ids")
        .iter()
        .map(ids)
        .collect();
    let mut s = Stats {
        seq_len: 0,
        selected_per_cell: vec![],
        selected: 0.0,
        mask: 0.0,
        random: 0.0,
        keep: 0.0,
        random_special: 0,
    };
    for run in 0..runs {
        // A run is an epoch: each row gets a fresh mask, as HF's global generator gives.
        let seqs: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| masker.mask(r, None, MaskKey::train(2024, run, i as u64)))
            .collect();
        let batch = collate(&seqs, pad, mask, config.pad_to_multiple_of);
        if s.selected_per_cell.is_empty() {
            s.seq_len = batch.seq_len;
            s.selected_per_cell = vec![vec![0.0; batch.seq_len]; rows.len()];
        }
        for (k, &p) in batch.masked_positions.iter().enumerate() {
            let (row, col) = (p as usize / batch.seq_len, p as usize % batch.seq_len);
            s.selected_per_cell[row][col] += 1.0;
            s.selected += 1.0;
            let (seen, orig) = (
                batch.input_ids[p as usize] as u32,
                batch.masked_labels[k] as u32,
            );
            if batch.masked_is_mask_token[k] {
                s.mask += 1.0;
            } else if seen == orig {
                s.keep += 1.0;
            } else {
                s.random += 1.0;
                s.random_special += usize::from(!masker.is_maskable(seen));
            }
        }
    }
    s
}

/// Compares HF's statistics with ours. Every bound is about 5 standard deviations of the
/// difference of two independent binomial estimates, so an honest pair fails with
/// probability below about 1e-5 over the whole test.
fn compare(hf: &Value, config: &MaskingConfig, runs: u64) {
    let ours = our_stats(hf, config, runs);
    let r = runs as f64;
    let p = config.mlm_probability;
    assert_eq!(
        ours.seq_len,
        num(hf, "seq_len") as usize,
        "padded length (pad_to_multiple_of) differs"
    );

    // 1. Selection rate over every eligible (row, column, run).
    let trials = num(hf, "eligible_cells") * r;
    let (hf_rate, our_rate) = (num(hf, "selected") / trials, ours.selected / trials);
    let sd = (2.0 * p * (1.0 - p) / trials).sqrt();
    eprintln!(
        "selection rate: HF {hf_rate:.5}, ours {our_rate:.5} (nominal {p}, sd of difference {sd:.5})"
    );
    assert!(
        (hf_rate - our_rate).abs() <= 5.0 * sd,
        "selection rates differ: HF {hf_rate}, ours {our_rate}"
    );

    // 2. Per position: the same cells are eligible (HF never selects special tokens or
    // padding; nor do we), and each cell's rate agrees. With `runs` trials per cell, z is
    // the standardised difference; sum z^2 is chi-square with K degrees of freedom.
    let hf_cells = hf["selected_per_cell"]
        .as_array()
        .expect("selected_per_cell");
    let cell_sd = (2.0 * p * (1.0 - p) / r).sqrt();
    let (mut chi2, mut k, mut max_z) = (0.0f64, 0usize, 0.0f64);
    let mut hf_cols = vec![0.0; ours.seq_len];
    let mut our_cols = vec![0.0; ours.seq_len];
    let mut col_cells = vec![0usize; ours.seq_len];
    for (row, hf_row) in hf_cells.iter().enumerate() {
        for (col, hf_count) in hf_row.as_array().expect("row").iter().enumerate() {
            let (a, b) = (
                hf_count.as_f64().expect("count"),
                ours.selected_per_cell[row][col],
            );
            assert_eq!(
                a == 0.0,
                b == 0.0,
                "cell ({row}, {col}): HF selected it {a} times, we {b} times"
            );
            if a == 0.0 {
                continue;
            }
            let z = (a - b) / r / cell_sd;
            chi2 += z * z;
            max_z = max_z.max(z.abs());
            k += 1;
            hf_cols[col] += a;
            our_cols[col] += b;
            col_cells[col] += 1;
        }
    }
    let kf = k as f64;
    eprintln!(
        "per-cell rates over {k} cells: chi2 {chi2:.1} (expected {k} +- {:.1}), max |z| {max_z:.2}",
        (2.0 * kf).sqrt()
    );
    assert_eq!(
        k as f64,
        num(hf, "eligible_cells"),
        "every eligible cell is selected sometimes"
    );
    assert!(
        chi2 < kf + 6.0 * (2.0 * kf).sqrt(),
        "per-cell selection rates differ: chi2 {chi2} over {k} cells"
    );
    assert!(max_z < 5.5, "a cell's selection rate differs by {max_z} sd");
    for col in 0..ours.seq_len {
        if col_cells[col] > 0 {
            let n = col_cells[col] as f64 * r;
            let z = (hf_cols[col] - our_cols[col]) / n / (2.0 * p * (1.0 - p) / n).sqrt();
            assert!(
                z.abs() < 5.0,
                "position {col}: HF rate {}, ours {} ({z:.1} sd)",
                hf_cols[col] / n,
                our_cols[col] / n
            );
        }
    }

    // 3. The split of selected tokens. A random draw equal to the original id looks like a
    // kept token, and HF's can also equal [MASK] (it draws from the whole vocabulary): each
    // shifts a share by at most random_replace_prob / vocabulary, hence the extra margin.
    let (hs, os) = (num(hf, "selected"), ours.selected);
    let margin = 2.0 * config.random_replace_prob / (num(hf, "vocab_size") - 5.0);
    for (name, hf_n, our_n) in [
        ("mask", num(hf, "mask"), ours.mask),
        ("random", num(hf, "random"), ours.random),
        ("keep", num(hf, "keep"), ours.keep),
    ] {
        let (a, b) = (hf_n / hs, our_n / os);
        let q = (a + b) / 2.0;
        let sd = (q * (1.0 - q) * (1.0 / hs + 1.0 / os)).sqrt();
        eprintln!("{name} share: HF {a:.5}, ours {b:.5} (sd of difference {sd:.5})");
        assert!(
            (a - b).abs() <= 5.0 * sd + margin,
            "{name} share differs: HF {a}, ours {b}"
        );
    }

    // What we fix on purpose: HF's "random" tokens include special ids, ours never do.
    eprintln!(
        "random replacements that are special tokens: HF {}, ours {}",
        num(hf, "random_special"),
        ours.random_special
    );
    assert_eq!(ours.random_special, 0);
}

#[test]
fn default_80_10_10_matches_hugging_face() {
    let runs = 4000;
    let hf = hf_stats(&["--runs", &runs.to_string()]);
    compare(&hf, &MaskingConfig::default(), runs);
}

#[test]
fn configured_rates_match_hugging_face() {
    let runs = 1500;
    let hf = hf_stats(&[
        "--runs",
        &runs.to_string(),
        "--seed",
        "7",
        "--mlm-probability",
        "0.3",
        "--mask-replace-prob",
        "0.5",
        "--random-replace-prob",
        "0.4",
    ]);
    let config = MaskingConfig {
        mlm_probability: 0.3,
        mask_replace_prob: 0.5,
        random_replace_prob: 0.4,
        ..MaskingConfig::default()
    };
    compare(&hf, &config, runs);
}
