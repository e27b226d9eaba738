//! Statistical and determinism tests over >= 1 M tokens (fast in release: the masker does
//! tens of millions of tokens per second).
//!
//! Tolerances are about 5 standard deviations of the binomial estimate they bound, so an
//! honest masker fails them with probability below 1e-6 while a 1-point bias fails them.

use crate::{
    MaskInput, MaskKey, MaskedSequence, Masker, MaskingConfig, SelectionMode, SpecialTokens,
    collate,
};

const VOCAB: u32 = 30522;
const PAD: u32 = 0;
const UNK: u32 = 100;
const CLS: u32 = 101;
const SEP: u32 = 102;
const MASK: u32 = 103;
const SEQS: usize = 8192;
const LEN: usize = 128;

fn special() -> SpecialTokens {
    SpecialTokens {
        vocab_size: VOCAB,
        pad_id: PAD,
        mask_id: MASK,
        special_ids: vec![PAD, UNK, CLS, SEP, MASK],
    }
}

fn masker(config: &MaskingConfig) -> Masker {
    Masker::new(config, special()).unwrap()
}

/// A deterministic corpus: [CLS] words [SEP], every 5th sequence ending in padding, the odd
/// [UNK]; words of 1-4 pieces. 8192 x 128 = 1,048,576 tokens.
struct Corpus {
    ids: Vec<Vec<u32>>,
    word_starts: Vec<Vec<bool>>,
}

fn corpus() -> Corpus {
    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state = mlm_seeds::splitmix64(state);
        state
    };
    let (mut ids, mut word_starts) = (Vec::with_capacity(SEQS), Vec::with_capacity(SEQS));
    for s in 0..SEQS {
        let real = if s % 5 == 0 {
            64 + (next() % 60) as usize
        } else {
            LEN
        };
        let (mut row, mut starts) = (vec![CLS], vec![true]);
        let mut left_in_word = 0;
        while row.len() < real - 1 {
            let start = left_in_word == 0;
            if start {
                left_in_word = 1 + (next() % 4) as usize;
            }
            left_in_word -= 1;
            let r = next();
            row.push(if r % 97 == 0 {
                UNK
            } else {
                104 + (r >> 8) as u32 % (VOCAB - 104)
            });
            // A piece that follows [UNK] says "continuation" on purpose: the masker must still
            // start a word there.
            starts.push(start);
        }
        row.push(SEP);
        starts.push(true);
        row.resize(LEN, PAD);
        starts.resize(LEN, true);
        ids.push(row);
        word_starts.push(starts);
    }
    Corpus { ids, word_starts }
}

/// Counts over a masked corpus, checking the invariants every masked token must satisfy.
#[derive(Default, Debug)]
struct Tally {
    eligible: usize,
    selected: usize,
    mask: usize,
    random: usize,
    keep: usize,
    random_buckets: [usize; 16],
}

fn tally(m: &Masker, original: &[u32], out: &MaskedSequence, t: &mut Tally) -> usize {
    assert_eq!(out.input_ids.len(), original.len());
    let mut selected = 0;
    for ((&orig, &seen), &label) in original.iter().zip(&out.input_ids).zip(&out.labels) {
        let eligible = m.is_maskable(orig);
        t.eligible += usize::from(eligible);
        if label == -100 {
            assert_eq!(seen, orig, "an unselected token changed");
            continue;
        }
        assert!(eligible, "special, pad or mask token {orig} was selected");
        assert_eq!(label, i64::from(orig), "label is not the original id");
        selected += 1;
        if seen == MASK {
            t.mask += 1;
        } else if seen == orig {
            t.keep += 1;
        } else {
            assert!(
                m.is_maskable(seen),
                "random replacement {seen} is special or out of range"
            );
            t.random += 1;
            t.random_buckets[(seen as usize * 16) / VOCAB as usize] += 1;
        }
    }
    t.selected += selected;
    selected
}

fn assert_near(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: {got:.5} not within {tol} of {want}"
    );
}

/// 80/10/10 within 5 sigma of the per-token binomial split. A random draw equal to the
/// original id (1 in 30,517) looks like a kept token, so the expected shares move by that.
fn assert_split(t: &Tally, mask: f64, random: f64) {
    let s = t.selected as f64;
    let collide = random / f64::from(VOCAB - 5);
    let tol = |p: f64| 5.0 * (p.max(collide) * (1.0 - p).max(collide) / s).sqrt() + 1e-9;
    assert_near("mask share", t.mask as f64 / s, mask, tol(mask));
    assert_near(
        "random share",
        t.random as f64 / s,
        random - collide,
        tol(random),
    );
    let keep = 1.0 - mask - random + collide;
    assert_near("keep share", t.keep as f64 / s, keep, tol(keep));
}

#[test]
fn independent_selection_rate_and_split_over_a_million_tokens() {
    let c = corpus();
    let m = masker(&MaskingConfig::default());
    let mut t = Tally::default();
    for (i, ids) in c.ids.iter().enumerate() {
        let out = m.mask(
            ids,
            Some(&c.word_starts[i]),
            MaskKey::train(42, 0, i as u64),
        );
        tally(&m, ids, &out, &mut t);
    }
    assert!(t.eligible > 1_000_000 * 9 / 10, "{t:?}");
    // sd of the rate = sqrt(0.15 * 0.85 / 1e6) = 3.6e-4: the 0.002 is 5.6 sd.
    assert_near(
        "selected fraction",
        t.selected as f64 / t.eligible as f64,
        0.15,
        0.002,
    );
    assert_split(&t, 0.8, 0.1);
    // Random replacements spread over the whole vocabulary: 16 buckets of ids, each within
    // 5 sd of its share of non-special ids.
    let per = t.random as f64 / 16.0;
    for (b, &n) in t.random_buckets.iter().enumerate() {
        assert_near(
            &format!("random bucket {b}"),
            n as f64,
            per,
            5.0 * per.sqrt() + 20.0,
        );
    }
}

#[test]
fn other_rates_and_splits_are_honoured() {
    let c = corpus();
    for (p, mask, random) in [
        (0.3, 0.8, 0.1),
        (0.15, 0.5, 0.4),
        (0.15, 0.0, 1.0),
        (0.15, 1.0, 0.0),
        (0.2, 0.0, 0.0),
    ] {
        let cfg = MaskingConfig {
            mlm_probability: p,
            mask_replace_prob: mask,
            random_replace_prob: random,
            ..Default::default()
        };
        let m = masker(&cfg);
        let mut t = Tally::default();
        for (i, ids) in c.ids.iter().enumerate().take(SEQS / 2) {
            tally(
                &m,
                ids,
                &m.mask(ids, None, MaskKey::train(7, 1, i as u64)),
                &mut t,
            );
        }
        let tol = 5.0 * (p * (1.0 - p) / t.eligible as f64).sqrt();
        assert_near(
            &format!("rate at p={p}"),
            t.selected as f64 / t.eligible as f64,
            p,
            tol,
        );
        assert_split(&t, mask, random);
    }
    for (p, want_all) in [(0.0, false), (1.0, true)] {
        let m = masker(&MaskingConfig {
            mlm_probability: p,
            ..Default::default()
        });
        let mut t = Tally::default();
        for (i, ids) in c.ids.iter().enumerate().take(64) {
            tally(
                &m,
                ids,
                &m.mask(ids, None, MaskKey::train(7, 1, i as u64)),
                &mut t,
            );
        }
        assert_eq!(t.selected, if want_all { t.eligible } else { 0 });
    }
}

#[test]
fn whole_word_masking_is_all_or_nothing_and_targets_the_rate() {
    let c = corpus();
    let m = masker(&MaskingConfig {
        whole_word_mask: true,
        ..Default::default()
    });
    let mut t = Tally::default();
    for (i, ids) in c.ids.iter().enumerate() {
        let starts = &c.word_starts[i];
        let out = m.mask(ids, Some(starts), MaskKey::train(42, 3, i as u64));
        tally(&m, ids, &out, &mut t);
        assert_words_all_or_nothing(&m, ids, starts, &out.labels);
    }
    // Words average 2.5 pieces: the token rate's sd is about sqrt(3) times the per-token one.
    assert_near(
        "whole-word selected fraction",
        t.selected as f64 / t.eligible as f64,
        0.15,
        0.003,
    );
    assert_split(&t, 0.8, 0.1);
}

/// Every word (as the masker must see it: a corpus word start, or any token after a
/// special one) is predicted entirely or not at all.
fn assert_words_all_or_nothing(m: &Masker, ids: &[u32], starts: &[bool], labels: &[i64]) {
    let mut word: Option<bool> = None;
    for i in 0..ids.len() {
        if !m.is_maskable(ids[i]) {
            word = None;
            continue;
        }
        let selected = labels[i] != -100;
        match word {
            Some(w) if !starts[i] => assert_eq!(w, selected, "word split at position {i}"),
            _ => word = Some(selected),
        }
    }
}

#[test]
fn exact_selection_takes_round_p_n_capped() {
    let c = corpus();
    let exact = MaskingConfig {
        selection: SelectionMode::Exact,
        ..Default::default()
    };
    let m = masker(&exact);
    let mut t = Tally::default();
    let mut per_position = vec![0usize; LEN];
    for (i, ids) in c.ids.iter().enumerate() {
        let out = m.mask(ids, None, MaskKey::train(1, 0, i as u64));
        let eligible = ids.iter().filter(|&&id| m.is_maskable(id)).count();
        assert_eq!(tally(&m, ids, &out, &mut t), m.exact_count(eligible));
        if ids[LEN - 1] != PAD {
            for (p, &l) in out.labels.iter().enumerate() {
                per_position[p] += usize::from(l != -100);
            }
        }
    }
    assert_eq!(m.exact_count(126), 19, "round(0.15 * 126) = 19");
    assert_eq!(m.exact_count(3), 1, "at least one, as BERT");
    assert_split(&t, 0.8, 0.1);
    // Selection sampling is uniform over positions: full rows have 126 eligible tokens and
    // 19 selected, so every inner position is selected with 19/126 (sd 0.004 over ~6.5 k rows).
    let full = c.ids.iter().filter(|r| r[LEN - 1] != PAD).count() as f64;
    for (p, &n) in per_position.iter().enumerate().take(LEN - 1).skip(1) {
        assert_near(
            &format!("position {p}"),
            n as f64 / full,
            19.0 / 126.0,
            0.025,
        );
    }

    let capped = masker(&MaskingConfig {
        mlm_probability: 0.3,
        max_predictions_per_seq: Some(20),
        ..exact.clone()
    });
    let wwm = masker(&MaskingConfig {
        whole_word_mask: true,
        max_predictions_per_seq: Some(20),
        ..exact
    });
    let (mut short, mut total) = (0usize, 0usize);
    for (i, ids) in c.ids.iter().enumerate().take(2048) {
        let key = MaskKey::train(1, 0, i as u64);
        let count = capped
            .mask(ids, None, key)
            .labels
            .iter()
            .filter(|&&l| l != -100)
            .count();
        let eligible = ids.iter().filter(|&&id| capped.is_maskable(id)).count();
        assert_eq!(count, capped.exact_count(eligible));
        if eligible >= 67 {
            assert_eq!(count, 20, "round(0.3 * {eligible}) > 20 is capped at 20");
        }
        let out = wwm.mask(ids, Some(&c.word_starts[i]), key);
        assert_words_all_or_nothing(&wwm, ids, &c.word_starts[i], &out.labels);
        let eligible = ids.iter().filter(|&&id| wwm.is_maskable(id)).count();
        let count = out.labels.iter().filter(|&&l| l != -100).count();
        let k = wwm.exact_count(eligible);
        assert!(count <= k && count <= 20, "{count} > {k}");
        short += k - count;
        total += k;
    }
    // BERT's greedy fill skips words that would overshoot, then keeps looking for shorter ones:
    // it almost always lands on k.
    assert!(
        short * 100 < total,
        "whole-word exact selection fell {short} short of {total}"
    );
}

#[test]
fn masks_are_a_pure_function_of_the_key() {
    let c = corpus();
    let m = masker(&MaskingConfig::default());
    let rows = &c.ids[..256];
    let once: Vec<MaskedSequence> = rows
        .iter()
        .enumerate()
        .map(|(i, ids)| m.mask(ids, None, MaskKey::train(5, 2, 1000 + i as u64)))
        .collect();
    // Same key, same masks; a fresh masker (a resumed run) too.
    let again = masker(&MaskingConfig::default());
    for (i, ids) in rows.iter().enumerate() {
        assert_eq!(
            again.mask(ids, None, MaskKey::train(5, 2, 1000 + i as u64)),
            once[i]
        );
    }
    // Another epoch, seed or sample index: other masks (agreement only by chance, ~75%).
    let others: [fn(u64) -> MaskKey; 3] = [
        |i| MaskKey::train(5, 3, i),
        |i| MaskKey::train(6, 2, i),
        |i| MaskKey::train(5, 2, i + 1),
    ];
    for key in others {
        let (mut same, mut total) = (0, 0);
        for (i, ids) in rows.iter().enumerate() {
            let other = m.mask(ids, None, key(1000 + i as u64));
            same += other
                .labels
                .iter()
                .zip(&once[i].labels)
                .filter(|(a, b)| (**a != -100) == (**b != -100))
                .count();
            total += ids.len();
        }
        assert!(
            (same as f64 / total as f64) < 0.8,
            "masks barely changed: {same}/{total}"
        );
    }
    // A global batch split across 1, 2 or 4 ranks (or loader threads), each masking its
    // contiguous slice by global sample index, gives exactly one process's batch.
    let whole = collate(&once, PAD, MASK, Some(8));
    for ranks in [1usize, 2, 4] {
        let per = rows.len() / ranks;
        let parts: Vec<Vec<MaskedSequence>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..ranks)
                .map(|r| {
                    let m = &m;
                    scope.spawn(move || {
                        (r * per..(r + 1) * per)
                            .map(|i| m.mask(&rows[i], None, MaskKey::train(5, 2, 1000 + i as u64)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let joined: Vec<MaskedSequence> = parts.into_iter().flatten().collect();
        assert_eq!(collate(&joined, PAD, MASK, Some(8)), whole, "{ranks} ranks");
        // The fused path too, rank by rank.
        for r in 0..ranks {
            let items: Vec<MaskInput<'_>> = (r * per..(r + 1) * per)
                .map(|i| MaskInput {
                    input_ids: &rows[i],
                    word_starts: None,
                    key: MaskKey::train(5, 2, 1000 + i as u64),
                })
                .collect();
            let got = m.mask_batch(&items, Some(8));
            assert_eq!(
                got.labels[..],
                whole.labels[r * per * LEN..(r + 1) * per * LEN]
            );
        }
    }
}

#[test]
fn evaluation_masks_are_fixed_by_position() {
    let c = corpus();
    let m = masker(&MaskingConfig::default());
    let ids = &c.ids[3];
    let first = m.mask(ids, None, MaskKey::eval(m.config().eval_seed, 3));
    assert_eq!(
        m.mask(ids, None, MaskKey::eval(m.config().eval_seed, 3)),
        first
    );
    assert_ne!(
        m.mask(ids, None, MaskKey::eval(m.config().eval_seed, 4)),
        first
    );
    assert_ne!(
        m.mask(ids, None, MaskKey::train(m.config().eval_seed, 0, 3)),
        first
    );
}

#[test]
fn bad_word_starts_and_ids_never_panic() {
    let m = masker(&MaskingConfig {
        whole_word_mask: true,
        mlm_probability: 1.0,
        ..Default::default()
    });
    let ids = [CLS, 5000, 6000, VOCAB + 7, u32::MAX, 7000, SEP];
    let out = m.mask(&ids, Some(&[true, true]), MaskKey::train(0, 0, 0));
    assert_eq!(
        out.labels,
        vec![-100, 5000, 6000, -100, -100, 7000, -100],
        "out-of-range ids are never labels"
    );
    assert!(
        m.try_mask(&ids, Some(&[true, true]), MaskKey::train(0, 0, 0))
            .is_err()
    );
    let exact = masker(&MaskingConfig {
        whole_word_mask: true,
        selection: SelectionMode::Exact,
        ..Default::default()
    });
    let out = exact.mask(&ids, Some(&[]), MaskKey::train(0, 0, 0));
    assert_eq!(out.labels.iter().filter(|&&l| l != -100).count(), 1);
    assert_eq!(
        m.mask(&[], None, MaskKey::train(0, 0, 0)).labels,
        Vec::<i64>::new()
    );
}

/// Spans (unit = "span") over the corpus's words: the predicted-token rate within 5 standard
/// errors of p (each sequence's spread measured), every run whole words, one 80/10/10 choice
/// per run, and the 80/10/10 split over runs.
#[test]
fn spans_meet_the_rate_whole_words_and_one_choice_per_run() {
    use crate::MaskingUnit;
    let c = corpus();
    for p in [0.15, 0.3] {
        let m = masker(&MaskingConfig {
            mlm_probability: p,
            unit: Some(MaskingUnit::Span),
            ..Default::default()
        });
        let (mut gaps, mut runs_seen, mut masked_runs) = (Vec::new(), 0usize, 0usize);
        let mut halves = [0usize; 2];
        for (s, (ids, starts)) in c.ids.iter().zip(&c.word_starts).enumerate() {
            let mut runs = Vec::new();
            let key = MaskKey::train(5, 0, s as u64);
            let out = m.mask_with_runs(ids, Some(starts), key, p, Some(&mut runs));
            let mut t = Tally::default();
            let chosen = tally(&m, ids, &out, &mut t);
            gaps.push(chosen as f64 - p * t.eligible as f64);
            // Full rows only ([SEP] last): shorter rows end in padding.
            let full = ids[LEN - 1] == SEP;
            // Away from the edges: a span grows rightwards from its start word, so the first
            // words of a sequence are covered less often (as in SpanBERT).
            for (i, &label) in out.labels.iter().enumerate().take(LEN - 16).skip(16) {
                if !full {
                    break;
                }
                halves[usize::from(i >= LEN / 2)] += usize::from(label != -100);
            }
            assert_words_all_or_nothing(&m, ids, starts, &out.labels);
            for run in &runs {
                let masks = run.clone().filter(|&i| out.input_ids[i] == MASK).count();
                assert!(
                    masks == 0 || masks == run.len(),
                    "one choice per run: {run:?}"
                );
                masked_runs += usize::from(masks > 0);
            }
            runs_seen += runs.len();
        }
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert!(
            mean.abs() < 5.0 * sd / n.sqrt(),
            "p {p}: gap {mean}, sd {sd}"
        );
        // Start words are drawn uniformly: both halves of the middle are selected alike.
        let ratio = halves[0] as f64 / halves[1] as f64;
        assert!((ratio - 1.0).abs() < 0.05, "p {p}: halves {halves:?}");
        // Binomial over runs: 5 sd of 0.8 over tens of thousands of runs is about 0.01.
        let share = masked_runs as f64 / runs_seen as f64;
        let tolerance = 5.0 * (0.16 / runs_seen as f64).sqrt();
        assert!(
            (share - 0.8).abs() < tolerance,
            "p {p}: [MASK] runs {share}"
        );
    }
}

/// Realised span lengths (in words) on long sequences of one-piece words at a low rate, where
/// a span is rarely cut, follow the clipped geometric: chi-square with 9 degrees of freedom
/// under 40 (p < 1e-5).
#[test]
fn span_lengths_follow_the_clipped_geometric() {
    use crate::{MaskingUnit, SpanLengths};
    let m = masker(&MaskingConfig {
        unit: Some(MaskingUnit::Span),
        ..Default::default()
    });
    let ids: Vec<u32> = (0..200_000u32).map(|i| 1000 + i % 20_000).collect();
    let mut observed = [0u64; 10];
    for key in 0..10 {
        let mut runs = Vec::new();
        m.mask_with_runs(
            &ids,
            None,
            MaskKey::train(1, 0, key),
            0.002,
            Some(&mut runs),
        );
        for run in runs {
            observed[run.len() - 1] += 1;
        }
    }
    let total: u64 = observed.iter().sum();
    let expected = SpanLengths::new(0.2, 10).probabilities();
    let chi2: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| (o as f64 - e * total as f64).powi(2) / (e * total as f64))
        .sum();
    assert!(total > 800, "{total} spans");
    assert!(chi2 < 40.0, "chi-square {chi2} over {observed:?}");
    // A uniform length (the wrong distribution) fails the same test.
    let uniform = [total as f64 / 10.0; 10];
    let wrong: f64 = uniform
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| (o - e * total as f64).powi(2) / (e * total as f64))
        .sum();
    assert!(wrong > 40.0, "the test can fail: {wrong}");
}
