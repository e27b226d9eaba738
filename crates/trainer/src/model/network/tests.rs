use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::{init_weights_like_hf, trainable_named_variables};

/// Odd sizes, as in the parity test, so that transposed or mixed-up dimensions cannot pass.
pub(crate) fn tiny_config() -> EncoderConfig {
    EncoderConfig {
        vocab_size: 97,
        hidden_size: 36,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 50,
        max_position_embeddings: 40,
        ..EncoderConfig::default()
    }
}

fn tiny_model(config: &EncoderConfig, seed: u64) -> (VarStore, MaskedLanguageModel) {
    let vs = VarStore::new(Device::Cpu);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    init_weights_like_hf(&vs, config, seed);
    (vs, model)
}

/// Two rows: one full, one with 3 padding positions.
fn inputs() -> (Tensor, Tensor) {
    let ids = Tensor::from_slice(&[2i64, 15, 33, 8, 90, 3, 2, 41, 7, 3, 0, 0, 0, 0]).view([2, 7]);
    let mask = ids.ne(0).to_kind(Kind::Int64);
    // Row 0 has no pad id at all, so its mask is all ones.
    (ids, mask)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// `BertForMaskedLM(config).state_dict().keys()` in transformers 5.24 (2 layers), minus the
/// tied `cls.predictions.decoder.{weight,bias}`, plus `bert.pooler.dense.*` (kept for
/// fine-tuning; `BertModel`'s name for it).
fn hf_names(layers: usize) -> Vec<String> {
    let mut names: Vec<String> = [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias",
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "cls.predictions.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.LayerNorm.bias",
    ]
    .map(str::to_owned)
    .to_vec();
    for layer in 0..layers {
        for suffix in [
            "attention.self.query.weight",
            "attention.self.query.bias",
            "attention.self.key.weight",
            "attention.self.key.bias",
            "attention.self.value.weight",
            "attention.self.value.bias",
            "attention.output.dense.weight",
            "attention.output.dense.bias",
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "intermediate.dense.weight",
            "intermediate.dense.bias",
            "output.dense.weight",
            "output.dense.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ] {
            names.push(format!("bert.encoder.layer.{layer}.{suffix}"));
        }
    }
    names.sort();
    names
}

#[test]
fn variable_names_are_hugging_face_state_dict_keys() {
    let config = tiny_config();
    let (vs, _model) = tiny_model(&config, 0);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, hf_names(2));
}

#[test]
fn variable_shapes_follow_the_config() {
    let config = tiny_config();
    let (vs, _model) = tiny_model(&config, 0);
    let variables = vs.variables();
    let shape = |name: &str| variables[name].size();
    assert_eq!(shape("bert.embeddings.word_embeddings.weight"), [97, 36]);
    assert_eq!(
        shape("bert.embeddings.position_embeddings.weight"),
        [40, 36]
    );
    assert_eq!(
        shape("bert.embeddings.token_type_embeddings.weight"),
        [2, 36]
    );
    assert_eq!(
        shape("bert.encoder.layer.1.intermediate.dense.weight"),
        [50, 36]
    );
    assert_eq!(shape("bert.encoder.layer.1.output.dense.weight"), [36, 50]);
    assert_eq!(shape("cls.predictions.bias"), [97]);
    let total: i64 = variables.values().map(|t| t.numel() as i64).sum();
    assert_eq!(total, config.num_parameters());
    let trainable: i64 = crate::model::trainable_named_variables(&vs)
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(trainable, config.num_trainable_parameters());
}

#[test]
fn the_pooler_is_frozen_and_everything_else_trains() {
    let config = tiny_config();
    let (vs, _model) = tiny_model(&config, 0);
    let trainable: Vec<String> = trainable_named_variables(&vs)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let expected: Vec<String> = hf_names(2)
        .into_iter()
        .filter(|n| !n.starts_with("bert.pooler."))
        .collect();
    assert_eq!(trainable, expected);
    assert_eq!(vs.trainable_variables().len(), expected.len());
}

#[test]
fn output_shapes() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 1);
    let (ids, mask) = inputs();
    assert_eq!(model.encode(&ids, &mask, false).size(), [2, 7, 36]);
    assert_eq!(model.logits(&ids, &mask, false).size(), [2, 7, 97]);
    let positions = Tensor::from_slice(&[1i64, 4, 8]);
    assert_eq!(
        model.masked_logits(&ids, &mask, &positions, false).size(),
        [3, 97]
    );
    assert_eq!(
        model
            .pooled(&model.encode(&ids, &mask, false))
            .unwrap()
            .size(),
        [2, 36]
    );
}

#[test]
fn masked_logits_are_the_full_logits_at_those_positions() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 2);
    let (ids, mask) = inputs();
    let positions = Tensor::from_slice(&[0i64, 5, 6, 9]);
    let full = model
        .logits(&ids, &mask, false)
        .view([14, 97])
        .index_select(0, &positions);
    let masked = model.masked_logits(&ids, &mask, &positions, false);
    assert!(max_abs_diff(&full, &masked) < 1e-6);
}

#[test]
fn padding_does_not_change_the_real_positions() {
    let config = EncoderConfig {
        initializer_range: 0.5,
        ..tiny_config()
    };
    let (_vs, model) = tiny_model(&config, 3);
    let short = Tensor::from_slice(&[2i64, 41, 7, 3]).view([1, 4]);
    let padded = Tensor::from_slice(&[2i64, 41, 7, 3, 0, 0, 0]).view([1, 7]);
    let short_out = model.logits(&short, &short.ones_like(), false);
    let padded_out = model.logits(&padded, &padded.ne(0).to_kind(Kind::Int64), false);
    let diff = max_abs_diff(&short_out, &padded_out.narrow(1, 0, 4));
    assert!(diff < 1e-5, "padding leaked into attention: {diff}");
    // And without the mask the pads do change the output (the test can fail).
    let unmasked = model.logits(&padded, &padded.ones_like(), false);
    assert!(max_abs_diff(&short_out, &unmasked.narrow(1, 0, 4)) > 1e-3);
}

#[test]
fn a_fully_padded_row_gives_finite_outputs() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 4);
    let ids = Tensor::zeros([2, 5], (Kind::Int64, Device::Cpu));
    let mask = Tensor::zeros([2, 5], (Kind::Int64, Device::Cpu));
    let logits = model.logits(&ids, &mask, true);
    assert!(bool::try_from(logits.isfinite().all()).unwrap());
}

#[test]
fn dropout_only_when_training() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 5);
    let (ids, mask) = inputs();
    let eval_a = model.logits(&ids, &mask, false);
    let eval_b = model.logits(&ids, &mask, false);
    assert!(eval_a.equal(&eval_b), "eval must be deterministic");
    let train_a = model.logits(&ids, &mask, true);
    let train_b = model.logits(&ids, &mask, true);
    assert!(
        max_abs_diff(&train_a, &train_b) > 1e-4,
        "train mode must drop out"
    );
    assert!(max_abs_diff(&train_a, &eval_a) > 1e-4);
}

#[test]
fn zero_dropout_training_equals_eval() {
    let config = EncoderConfig {
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..tiny_config()
    };
    let (_vs, model) = tiny_model(&config, 6);
    let (ids, mask) = inputs();
    let diff = max_abs_diff(
        &model.logits(&ids, &mask, true),
        &model.logits(&ids, &mask, false),
    );
    assert!(diff < 1e-6, "{diff}");
}

#[test]
fn attention_dropout_is_applied() {
    // Only attention-probability dropout on: the output must still vary between calls.
    let config = EncoderConfig {
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.5,
        ..tiny_config()
    };
    let (_vs, model) = tiny_model(&config, 6);
    let (ids, mask) = inputs();
    let diff = max_abs_diff(
        &model.logits(&ids, &mask, true),
        &model.logits(&ids, &mask, true),
    );
    assert!(diff > 1e-4, "{diff}");
}

#[test]
fn the_padding_row_gets_no_gradient_through_the_embedding_lookup() {
    // nn.Embedding(padding_idx=pad_token_id): pad ids in the input add nothing to row 0's grad.
    let config = tiny_config();
    let (vs, model) = tiny_model(&config, 7);
    let (ids, mask) = inputs();
    model.encode(&ids, &mask, false).sum(Kind::Float).backward();
    let grad = vs.variables()["bert.embeddings.word_embeddings.weight"].grad();
    assert_eq!(
        grad.get(0).abs().sum(Kind::Double).double_value(&[]),
        0.0,
        "padding row"
    );
    assert!(
        grad.get(2).abs().sum(Kind::Double).double_value(&[]) > 0.0,
        "a used row"
    );
    assert_eq!(
        grad.get(5).abs().sum(Kind::Double).double_value(&[]),
        0.0,
        "an unused row"
    );
}

#[test]
fn the_decoder_is_the_word_embedding_matrix() {
    let config = tiny_config();
    let (vs, model) = tiny_model(&config, 7);
    let (ids, mask) = inputs();
    let positions = Tensor::from_slice(&[1i64, 2, 8]);
    let labels = Tensor::from_slice(&[5i64, 6, 9]);
    let logits = model.masked_logits(&ids, &mask, &positions, false);
    crate::model::masked_lm_loss_sum(&logits, &labels).backward();
    let variables = vs.variables();
    // Token 5 never appears in the input: its row gets gradient only through the tied decoder.
    let grad = variables["bert.embeddings.word_embeddings.weight"].grad();
    assert!(grad.get(5).abs().sum(Kind::Double).double_value(&[]) > 0.0);
    assert!(
        !variables["bert.pooler.dense.weight"].grad().defined(),
        "the pooler is frozen"
    );
    // Changing the word embedding changes the logits of every position it decodes.
    let before = logits.detach();
    tch::no_grad(|| {
        let _ = variables["bert.embeddings.word_embeddings.weight"]
            .get(5)
            .fill_(0.0);
    });
    let after = model.masked_logits(&ids, &mask, &positions, false);
    assert!(max_abs_diff(&before.select(1, 5), &after.select(1, 5)) > 1e-6);
}

#[test]
fn check_inputs_rejects_what_would_crash_libtorch() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 8);
    let (ids, mask) = inputs();
    assert!(model.check_inputs(&ids, &mask).is_ok());
    let too_long = Tensor::ones([1, 41], (Kind::Int64, Device::Cpu));
    assert!(
        model
            .check_inputs(&too_long, &too_long)
            .unwrap_err()
            .to_string()
            .contains("max_position_embeddings")
    );
    let out_of_vocab = Tensor::from_slice(&[1i64, 97]).view([1, 2]);
    assert!(
        model
            .check_inputs(&out_of_vocab, &out_of_vocab.ones_like())
            .unwrap_err()
            .to_string()
            .contains("vocab_size")
    );
    assert!(model.check_inputs(&ids, &mask.narrow(1, 0, 3)).is_err());
    assert!(
        model
            .check_inputs(&ids.to_kind(Kind::Float), &mask)
            .is_err()
    );
}

#[test]
fn bf16_autocast_on_the_cpu_keeps_fully_padded_rows_finite() {
    let config = tiny_config();
    let (_vs, model) = tiny_model(&config, 9);
    let ids = Tensor::from_slice(&[2i64, 15, 33, 0, 0, 0, 0, 0]).view([2, 4]);
    let mask = ids.ne(0).to_kind(Kind::Int64);
    let fp32 = model.logits(&ids, &mask, false);
    let _autocast =
        mlm_torch_ext::Autocast::new(mlm_torch_ext::AutocastDevice::Cpu, Kind::BFloat16).unwrap();
    let bf16 = model.logits(&ids, &mask, false);
    assert_eq!(bf16.kind(), Kind::BFloat16);
    assert!(bool::try_from(bf16.isfinite().all()).unwrap());
    let diff = max_abs_diff(&fp32, &bf16.to_kind(Kind::Float));
    assert!(diff < 0.05, "{diff}");
}

/// `training.unpad`: the encoder on the real tokens only gives the padded forward's masked
/// logits, and its gradients, up to f64 rounding; for RoBERTa's positions after padding and
/// ModernBERT's rotary positions and window (3 tokens in all, shorter than the rows) too.
#[test]
fn the_unpadded_forward_and_backward_are_the_padded_ones() {
    use crate::model::{TokenLayout, index_tensor, real_positions, rows_among};
    for model_type in ["bert", "roberta", "modernbert"] {
        let mut extra = serde_json::Map::new();
        extra.insert("local_attention".into(), 3.into());
        extra.insert("global_attn_every_n_layers".into(), 2.into());
        let config = EncoderConfig {
            model_type: Some(model_type.to_owned()),
            pad_token_id: Some(1),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            extra: if model_type == "modernbert" {
                extra
            } else {
                Default::default()
            },
            ..tiny_config()
        };
        config.validate().unwrap();
        let (mut vs, model) = tiny_model(&config, 4);
        vs.double();
        let ids = [
            2i64, 15, 33, 8, 90, 3, 2, 41, 7, 3, 1, 1, 1, 1, 2, 5, 3, 1, 1, 1, 1,
        ];
        let mask: Vec<i64> = ids.iter().map(|&id| i64::from(id != 1)).collect();
        let (ids, mask_tensor) = (
            Tensor::from_slice(&ids).view([3, 7]),
            Tensor::from_slice(&mask).view([3, 7]),
        );
        let positions = [1i64, 4, 8, 15];
        let real = real_positions(&mask);
        let rows = index_tensor(&rows_among(&real, &positions).unwrap());
        let layout = TokenLayout::new(index_tensor(&real), &mask_tensor);

        let gradients = |logits: Tensor| {
            let params = trainable_named_variables(&vs);
            for (_, p) in &params {
                let _ = p.grad().defined().then(|| p.grad().zero_());
            }
            (&logits * &logits).sum(Kind::Double).backward();
            let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad().copy()).collect();
            (logits.detach(), grads)
        };
        let (padded, padded_grads) = gradients(model.masked_logits(
            &ids,
            &mask_tensor,
            &Tensor::from_slice(&positions),
            true,
        ));
        let (unpadded, unpadded_grads) = gradients(
            model
                .masked_logits_unpadded(&ids, &layout, &rows, true)
                .unwrap(),
        );
        assert_eq!(unpadded.size(), vec![4, 97]);
        let diff = max_abs_diff(&padded, &unpadded);
        assert!(diff < 1e-12, "{model_type}: logits differ by {diff}");
        for (a, b) in padded_grads.iter().zip(&unpadded_grads) {
            let scale = a.abs().max().double_value(&[]).max(1e-6);
            let diff = max_abs_diff(a, b) / scale;
            assert!(diff < 1e-10, "{model_type}: gradients differ by {diff}");
        }
    }
}

/// A varlen kernel that refuses its input (here: no CUDA) is an error through the forward,
/// for every family's varlen path, not a panic; `masked_logits` then names training.unpad.
#[test]
fn a_refused_varlen_kernel_is_an_error_naming_training_unpad() {
    use crate::model::{TokenLayout, cumulative_lengths, index_tensor, real_positions};
    use crate::run::RunError;
    for model_type in ["bert", "modernbert"] {
        let config = EncoderConfig {
            model_type: Some(model_type.to_owned()),
            pad_token_id: Some(1),
            ..tiny_config()
        };
        let (_vs, model) = tiny_model(&config, 4);
        let mask = [1i64, 1, 1, 1, 1, 0];
        let ids = Tensor::from_slice(&[2i64, 15, 3, 2, 3, 1]).view([2, 3]);
        let mask_tensor = Tensor::from_slice(&mask).view([2, 3]);
        let (cu_seqlens, max_len) = cumulative_lengths(&mask, 3);
        let layout = TokenLayout::new(index_tensor(&real_positions(&mask)), &mask_tensor)
            .with_varlen(Tensor::from_slice(&cu_seqlens), max_len);
        let rows = index_tensor(&[1]);
        let error = model
            .masked_logits_unpadded(&ids, &layout, &rows, true)
            .unwrap_err();
        assert!(
            error.to_string().contains("varlen"),
            "{model_type}: {error}"
        );
        let named = RunError::Unpad { source: error }.to_string();
        assert!(named.starts_with("training.unpad:"), "{named}");
    }
}
