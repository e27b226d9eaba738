//! The last layer on the masked rows alone (model/queries.rs) against the full forward
//! gathered: logits and every gradient, fp64, on padded batches of mixed lengths longer than
//! ModernBERT's window, with the masked positions out of order and a sequence without any.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::tests::tiny_config;
use super::*;
use crate::model::{init_weights_like_hf, trainable_named_variables};

const PAD: i64 = 1;
const SEQ_LEN: usize = 12;

/// `model_type` with `layers` layers (ModernBERT: every second global from layer 0, so an
/// odd count ends global and an even one local; a window of 4 tokens, 2 each side), in fp64.
fn model(model_type: &str, layers: i64) -> (VarStore, MaskedLanguageModel) {
    let mut extra = serde_json::Map::new();
    if model_type == "modernbert" {
        extra.insert("local_attention".into(), 4.into());
        extra.insert("global_attn_every_n_layers".into(), 2.into());
    }
    let config = EncoderConfig {
        model_type: Some(model_type.to_owned()),
        pad_token_id: Some(PAD),
        num_hidden_layers: layers,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        extra,
        ..tiny_config()
    };
    config.validate().unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let model = MaskedLanguageModel::new(&vs.root(), &config);
    init_weights_like_hf(&vs, &config, 7);
    vs.double();
    (vs, model)
}

/// Three sequences of 12, 5 and 9 real tokens; masked: 9 positions, out of order, none in
/// the second sequence, some farther apart than the window.
fn batch() -> (Tensor, Tensor, Vec<i64>) {
    let lengths = [12, 5, 9];
    let mut ids = Vec::new();
    for (row, &length) in lengths.iter().enumerate() {
        for t in 0..SEQ_LEN {
            let id = 2 + ((row * 31 + t * 7) % 90) as i64;
            ids.push(if t < length { id } else { PAD });
        }
    }
    let mask: Vec<i64> = ids.iter().map(|&id| i64::from(id != PAD)).collect();
    let shape = [lengths.len() as i64, SEQ_LEN as i64];
    let positions = vec![11, 0, 5, 24 + 8, 6, 24, 24 + 3, 1, 24 + 4];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
        positions,
    )
}

/// Logits and gradients of `sum(logits^2)`.
fn with_gradients(vs: &VarStore, logits: &Tensor) -> (Tensor, Vec<Tensor>) {
    let params = trainable_named_variables(vs);
    for (_, p) in &params {
        let _ = p.grad().defined().then(|| p.grad().zero_());
    }
    (logits * logits).sum(Kind::Double).backward();
    let grads = params.iter().map(|(_, p)| p.grad().copy()).collect();
    (logits.detach(), grads)
}

fn grouped_and_full(model_type: &str, layers: i64) -> [(Tensor, Vec<Tensor>); 2] {
    let (vs, model) = model(model_type, layers);
    let (ids, mask, positions) = batch();
    let flat = Tensor::from_slice(&positions);
    let queries = MaskedQueries::new(&positions, 3, SEQ_LEN, |host| host).unwrap();
    let grouped = model.masked_logits_grouped(&ids, &mask, &flat, Some(&queries), true);
    let grouped = with_gradients(&vs, &grouped);
    let full = with_gradients(&vs, &model.masked_logits(&ids, &mask, &flat, true));
    [grouped, full]
}

#[test]
fn the_last_layer_on_masked_rows_gives_the_full_forwards_logits_and_gradients() {
    let cases = [
        ("bert", 2),
        ("distilbert", 2),
        ("modernbert", 2),
        ("modernbert", 3),
    ];
    for (model_type, layers) in cases {
        let [(grouped, grouped_grads), (full, full_grads)] = grouped_and_full(model_type, layers);
        assert_eq!(grouped.size(), [9, 97]);
        let diff = max_abs_diff(&grouped, &full);
        assert!(
            diff < 1e-12,
            "{model_type} x{layers}: logits differ by {diff}"
        );
        for (a, b) in grouped_grads.iter().zip(&full_grads) {
            let scale = a.abs().max().double_value(&[]).max(1e-6);
            let diff = max_abs_diff(a, b) / scale;
            assert!(
                diff < 1e-10,
                "{model_type} x{layers}: gradients differ by {diff}"
            );
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The rule every family's `encode_masked` follows: the last layer on the masked rows where
/// there is a grouping and the last layer draws no dropout in this pass; every row otherwise.
#[test]
fn the_last_layer_runs_on_masked_rows_only_with_queries_and_no_dropout_drawn() {
    let queries = MaskedQueries::new(&[1, 6], 2, 4, |t| t).expect("grouped");
    // A layer here is its dropout probability.
    let draws = |p: &f64| *p > 0.0;
    let split = last_layer_on_masked_rows(&[0.3, 0.2, 0.0], Some(&queries), true, draws);
    let (last, earlier, _) = split.expect("the last layer draws no dropout");
    assert_eq!((*last, earlier), (0.0, &[0.3, 0.2][..]));
    assert!(last_layer_on_masked_rows(&[0.0, 0.1], Some(&queries), true, draws).is_none());
    assert!(last_layer_on_masked_rows(&[0.0, 0.1], Some(&queries), false, draws).is_some());
    assert!(last_layer_on_masked_rows(&[0.0, 0.0], None, false, draws).is_none());
    assert!(last_layer_on_masked_rows(&[], Some(&queries), false, draws).is_none());
}
