//! The fixed-shape step against the plain one, on the CPU: what a captured graph replays is
//! this body, so its equivalence here is what `training.cuda_graphs` rests on.

use super::*;
use crate::model::{EncoderConfig, trainable_named_variables};
use crate::optim::AdamWConfig;
use crate::run::precision::ForwardPrecision;
use crate::run::step::forward_backward;
use mlm_masking::{MaskKey, MaskedSequence, Masker, SpecialTokens, collate};

const VOCAB: i64 = 60;

fn special() -> SpecialTokens {
    SpecialTokens {
        vocab_size: VOCAB as u32,
        pad_id: 0,
        mask_id: 4,
        special_ids: vec![0, 1, 2, 3, 4],
    }
}

fn masker(masking: &MaskingConfig) -> Masker {
    Masker::new(masking, special()).unwrap()
}

/// `rows` sequences of `len(i)` tokens between [CLS] and [SEP], masked for `step`.
fn sequences(
    masker: &Masker,
    step: u64,
    rows: u64,
    len: impl Fn(u64) -> usize,
) -> Vec<MaskedSequence> {
    (0..rows)
        .map(|i| {
            let mut ids = vec![2u32];
            ids.extend(
                (0..len(i)).map(|j| 5 + ((i as u32 * 13 + j as u32 * 7 + step as u32) % 55)),
            );
            ids.push(3);
            masker.mask(&ids, None, MaskKey::train(step, 0, i))
        })
        .collect()
}

#[test]
fn exact_selection_bounds_the_slots_and_independent_selection_covers_its_spread() {
    let exact = MaskingConfig {
        selection: SelectionMode::Exact,
        ..MaskingConfig::default()
    };
    // round(0.15 * 128) = 19 per sequence, x 4 = 76, rounded up to 80.
    assert_eq!(masked_slots(4, 128, &exact), 80);
    let capped = MaskingConfig {
        max_predictions_per_seq: Some(10),
        ..exact.clone()
    };
    assert_eq!(masked_slots(4, 128, &capped), 40);
    // Independent: 8192 cells, mean 1228.8, sd 32.3: 1422.7 -> 1424.
    let independent = MaskingConfig::default();
    assert_eq!(masked_slots(64, 128, &independent), 1424);
    let whole_words = MaskingConfig {
        whole_word_mask: true,
        ..independent.clone()
    };
    assert!(masked_slots(64, 128, &whole_words) > 1424);
    // Never more slots than cells.
    assert_eq!(masked_slots(1, 4, &independent), 8);

    // The real masker never exceeds them: 300 batches of 8 x 64, Bernoulli selection.
    let masker = masker(&independent);
    let slots = masked_slots(8, 64, &independent);
    let most = (0..300)
        .map(|step| {
            let batch = collate(&sequences(&masker, step, 8, |_| 62), 0, 4, None);
            batch.masked_tokens()
        })
        .max()
        .unwrap();
    assert!(most <= slots, "{most} masked tokens, {slots} slots");
    // Mean 76.8, sd 8.1: 125.3, rounded up.
    assert_eq!(slots, 128);
    let masker = self::masker(&exact);
    let batch = collate(&sequences(&masker, 0, 4, |_| 126), 0, 4, None);
    assert!(batch.masked_tokens() <= masked_slots(4, 128, &exact));
}

#[test]
fn laying_out_pads_rows_and_slots_and_reindexes_positions() {
    let batch = Batch {
        batch_size: 2,
        seq_len: 3,
        input_ids: vec![2, 9, 3, 2, 4, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 0],
        labels: vec![-100, 9, -100, -100, 7, -100],
        masked_positions: vec![1, 4],
        masked_labels: vec![9, 7],
        masked_is_mask_token: vec![false, true],
    };
    let shape = StaticShape {
        rows: 2,
        seq_len: 5,
        masked_slots: 4,
    };
    let laid = lay_out(&batch, shape, 0).unwrap();
    assert_eq!(laid.input_ids, vec![2, 9, 3, 0, 0, 2, 4, 0, 0, 0]);
    assert_eq!(laid.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 0, 0, 0]);
    // Row 1, token 1 was flat 4 in rows of 3; it is flat 6 in rows of 5.
    assert_eq!(laid.masked_positions, vec![1, 6, 0, 0]);
    assert_eq!(laid.masked_labels, vec![9, 7, -100, -100]);
    assert_eq!(laid.masked_is_mask_token, vec![false, true, false, false]);
    assert_eq!((laid.batch_size, laid.seq_len), (2, 5));

    for misfit in [
        StaticShape { rows: 3, ..shape },
        StaticShape {
            seq_len: 2,
            ..shape
        },
        StaticShape {
            masked_slots: 1,
            ..shape
        },
    ] {
        assert!(lay_out(&batch, misfit, 0).is_none(), "{misfit:?}");
    }
}

fn tiny_model(dropout: f64) -> (VarStore, MaskedLanguageModel) {
    let config = EncoderConfig {
        vocab_size: VOCAB,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 40,
        hidden_dropout_prob: dropout,
        attention_probs_dropout_prob: dropout,
        ..EncoderConfig::default()
    };
    let mut vs = VarStore::new(Device::Cpu);
    let model = MaskedLanguageModel::initialised(&vs, &config, 7);
    vs.double();
    (vs, model)
}

fn fused_adamw(vs: &VarStore) -> AdamW {
    let mut optimizer = AdamW::new(
        vs,
        AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    );
    optimizer.set_fused(true);
    optimizer
}

fn context(step: u64, normaliser: usize) -> StepContext<'static> {
    StepContext {
        precision: ForwardPrecision::fp32(Device::Cpu),
        seed: 5,
        step,
        first_micro_batch: 0,
        normaliser: normaliser as f64,
        reducer: None,
        scaler: None,
        unpad: None,
    }
}

/// Trains two copies of a tiny f64 model for 4 steps of 2 micro-batches, one by the plain
/// step (run/train.rs's `plain_step`: forward_backward, device clipping, fused AdamW), one
/// by the fixed-shape step in `shape`; returns the largest relative differences of the loss
/// sums and of the weights.
fn plain_against_fixed(dropout: f64, shape: StaticShape, len: impl Fn(u64) -> usize) -> (f64, f64) {
    let (plain_vs, plain_model) = tiny_model(dropout);
    let (fixed_vs, fixed_model) = tiny_model(dropout);
    let (mut plain_opt, mut fixed_opt) = (fused_adamw(&plain_vs), fused_adamw(&fixed_vs));
    let mut fixed = GraphedStep::new(shape, 0, Device::Cpu, Kind::Double).unwrap();
    let masker = masker(&MaskingConfig::default());
    let mut loss_diff: f64 = 0.0;
    for (step, lr) in [1e-2, 8e-3, 5e-3, 2e-3].into_iter().enumerate() {
        let step = step as u64;
        let batches: Vec<Batch> = (0..2)
            .map(|m| collate(&sequences(&masker, step * 2 + m, 4, &len), 0, 4, Some(8)))
            .collect();
        let masked: usize = batches.iter().map(Batch::masked_tokens).sum();
        let ctx = context(step, masked);

        plain_opt.zero_grad();
        let plain_loss = forward_backward(&plain_model, &batches, &ctx).unwrap();
        let (norm, found_inf) = unscale_and_clip(&plain_vs, None, 1.0, false).unwrap();
        let norm = norm.unwrap();
        plain_opt.step_unless(lr, found_inf.as_ref());

        let mut trainee = Trainee {
            model: &fixed_model,
            vs: &fixed_vs,
            optimizer: &mut fixed_opt,
            scaler: None,
        };
        let outputs = fixed
            .step(&mut trainee, &batches, &ctx, lr, 1.0)
            .unwrap()
            .expect("the batches fit");
        let (a, b) = (
            plain_loss.double_value(&[]),
            outputs.loss_sum.double_value(&[]),
        );
        loss_diff = loss_diff.max((a - b).abs() / a.abs());
        let (a, b) = (norm.double_value(&[]), outputs.grad_norm.double_value(&[]));
        assert!((a - b).abs() <= 1e-10 * a, "step {step}: norms {a} and {b}");
    }
    assert_eq!(plain_opt.steps_taken(), fixed_opt.steps_taken());
    // On the CPU every step runs the fixed-shape body eagerly: none replayed.
    let eager = GraphCounts {
        eager: 4,
        ..GraphCounts::default()
    };
    assert_eq!(fixed.counts(), eager);
    let weight_diff = trainable_named_variables(&plain_vs)
        .into_iter()
        .zip(trainable_named_variables(&fixed_vs))
        .map(|((name, a), (_, b))| {
            let scale = a.abs().max().double_value(&[]).max(1e-6);
            let diff = (&a - &b).abs().max().double_value(&[]) / scale;
            assert!(diff.is_finite(), "{name}");
            diff
        })
        .fold(0.0, f64::max);
    (loss_diff, weight_diff)
}

// Dropout is off in these tests: the generator is global to the process, and tests running
// beside them reseed it. tests/e2e/speed.rs checks the graphed step with dropout, in a
// process of its own.
#[test]
fn full_rows_train_as_the_plain_step() {
    // concat packing: every row 24 tokens long, the shape's length. Only the sums over the
    // unused slots' zeros differ.
    let shape = StaticShape::new(4, 24, &MaskingConfig::default());
    let (loss, weights) = plain_against_fixed(0.0, shape, |_| 22);
    assert!(loss < 1e-12, "loss sums differ by {loss}");
    assert!(weights < 1e-10, "weights differ by {weights}");
}

#[test]
fn padded_rows_train_as_the_plain_step() {
    // document packing: rows of 6-22 tokens padded to 24, in a shape of 32: the extra
    // padding changes nothing but rounding.
    let shape = StaticShape::new(4, 32, &MaskingConfig::default());
    let (loss, weights) = plain_against_fixed(0.0, shape, |i| 4 + (i as usize * 5) % 17);
    assert!(loss < 1e-12, "loss sums differ by {loss}");
    assert!(weights < 1e-10, "weights differ by {weights}");
}

#[test]
fn a_batch_that_does_not_fit_leaves_the_step_to_the_plain_path() {
    let (vs, model) = tiny_model(0.0);
    let mut optimizer = fused_adamw(&vs);
    let shape = StaticShape {
        rows: 4,
        seq_len: 16,
        masked_slots: 8,
    };
    let mut fixed = GraphedStep::new(shape, 0, Device::Cpu, Kind::Double).unwrap();
    let masker = masker(&MaskingConfig {
        mlm_probability: 0.5,
        ..MaskingConfig::default()
    });
    let batch = collate(&sequences(&masker, 0, 4, |_| 14), 0, 4, None);
    assert!(batch.masked_tokens() > 8);
    let before = trainable_named_variables(&vs)[0].1.copy();
    let mut trainee = Trainee {
        model: &model,
        vs: &vs,
        optimizer: &mut optimizer,
        scaler: None,
    };
    let done = fixed
        .step(&mut trainee, &[batch], &context(0, 20), 1e-2, 1.0)
        .unwrap();
    assert!(done.is_none());
    assert_eq!(optimizer.steps_taken(), 0);
    assert!(trainable_named_variables(&vs)[0].1.equal(&before));
    // Every row there, too many masked tokens: a full batch that did not fit.
    let full = GraphCounts {
        full_batch_fallbacks: 1,
        ..GraphCounts::default()
    };
    assert_eq!(fixed.counts(), full);

    // A short last batch (3 rows of the shape's 4), told apart from it.
    let short = collate(&sequences(&masker, 1, 3, |_| 14), 0, 4, None);
    let mut trainee = Trainee {
        model: &model,
        vs: &vs,
        optimizer: &mut optimizer,
        scaler: None,
    };
    let done = fixed
        .step(&mut trainee, &[short], &context(1, 6), 1e-2, 1.0)
        .unwrap();
    assert!(done.is_none());
    let both = GraphCounts {
        short_batch_fallbacks: 1,
        ..full
    };
    assert_eq!(fixed.counts(), both);
    assert_eq!(fixed.steps(), 0);
}
