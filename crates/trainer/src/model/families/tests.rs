//! Every registered family built through the seam: the variables it declares are the ones its
//! network creates (names, shapes, which train), and its cost counts that network.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Device;
use tch::nn::VarStore;

use super::ARCHITECTURES;
use crate::model::{EncoderConfig, MaskedLanguageModel, ScratchShape, SpecialIds};

/// A tiny model of `model_type` from scratch, with odd sizes so that swapped dimensions show.
fn tiny(model_type: &str) -> EncoderConfig {
    let shape = ScratchShape {
        vocab_size: 97,
        hidden_size: 36,
        num_hidden_layers: 3,
        num_attention_heads: 3,
        intermediate_size: 50,
        dropout: Some(0.1),
        max_seq_len: 24,
        max_position_embeddings: Some(40),
        special_ids: Some(SpecialIds {
            pad: 1,
            cls: 0,
            sep: 2,
        }),
        family_config: Default::default(),
    };
    EncoderConfig::scratch(model_type, &shape, Path::new("test")).unwrap()
}

/// (name -> (shape, trainable)) of the variables a built model holds.
fn built(config: &EncoderConfig) -> BTreeMap<String, (Vec<i64>, bool)> {
    let vs = VarStore::new(Device::Cpu);
    let _model = MaskedLanguageModel::new(&vs.root(), config);
    vs.variables()
        .into_iter()
        .map(|(name, tensor)| (name, (tensor.size(), tensor.requires_grad())))
        .collect()
}

#[test]
fn each_family_declares_exactly_the_variables_its_network_builds() {
    for arch in ARCHITECTURES {
        for known in arch.model_types() {
            let config = tiny(known.model_type);
            assert!(std::ptr::addr_eq(config.architecture(), arch));
            let declared: BTreeMap<String, (Vec<i64>, bool)> = arch
                .variables(&config)
                .into_iter()
                .map(|v| (v.name, (v.shape, v.trainable)))
                .collect();
            assert_eq!(declared, built(&config), "{}", known.model_type);
            let keys = arch.keys();
            for name in keys.vocabulary_variables() {
                assert_eq!(declared[name].0[0], 97, "{name} is indexed by token id");
            }
            for (_, target) in keys.tied {
                assert!(declared.contains_key(*target), "tied to {target}");
            }
        }
    }
}

#[test]
fn each_familys_parameter_count_and_flops_are_those_of_the_built_network() {
    for arch in ARCHITECTURES {
        let model_type = arch.model_types()[0].model_type;
        let config = tiny(model_type);
        let variables = built(&config);
        let numel = |shape: &Vec<i64>| shape.iter().product::<i64>();
        let cost = config.cost(0);
        let all: i64 = variables.values().map(|(shape, _)| numel(shape)).sum();
        let trainable: i64 = variables
            .values()
            .filter(|(_, trains)| *trains)
            .map(|(shape, _)| numel(shape))
            .sum();
        assert_eq!(cost.parameters, all, "{model_type}");
        assert_eq!(cost.trainable_parameters, trainable, "{model_type}");
        assert_eq!(config.num_parameters(), all, "{model_type}");

        // Without attention (length 0), a token that is masked costs 6 FLOPs per weight of
        // every matmul it passes: the trainable 2-D variables that are not embedding tables,
        // and the decoder (the word embeddings, tied).
        let matmul: i64 = variables
            .iter()
            .filter(|(name, (shape, trains))| {
                *trains && shape.len() == 2 && !name.contains("embeddings")
            })
            .map(|(_, (shape, _))| numel(shape))
            .sum();
        let decoder = config.vocab_size * config.hidden_size;
        let flops = cost.flops;
        assert_eq!(
            flops.per_token + flops.per_masked_token,
            6.0 * (matmul + decoder) as f64,
            "{model_type}"
        );
        // Full attention: 2 x 2 x attended length x hidden per layer, x 3 for the backward.
        let at_24 = config.cost(24).flops.per_token - flops.per_token;
        let layers = config.num_hidden_layers as f64;
        assert_eq!(at_24, 6.0 * layers * 2.0 * 24.0 * 36.0, "{model_type}");
    }
}

#[test]
fn model_types_are_registered_once_and_configs_round_trip_through_their_family() {
    let mut seen = Vec::new();
    for arch in ARCHITECTURES {
        for known in arch.model_types() {
            assert!(!seen.contains(&known.model_type), "{}", known.model_type);
            seen.push(known.model_type);
            assert!(
                arch.class_prefixes()
                    .iter()
                    .any(|prefix| known.masked_lm_class.starts_with(prefix))
            );
            let config = tiny(known.model_type);
            let text = serde_json::to_string(&config.to_hf_keys()).unwrap();
            let again = EncoderConfig::from_json(&text, Path::new("again")).unwrap();
            assert_eq!(again, config, "{}", known.model_type);
        }
    }
}
