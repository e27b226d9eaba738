//! Hugging Face's weight initialisation (`PreTrainedModel._init_weights` and the families'
//! overrides in transformers 5.24), seeded and device-independent. Which rule a variable gets
//! is its family's ([`super::Architecture::init_rule`]: for BERT, normal(0,
//! `initializer_range`) for Linear and Embedding weights, 0 for biases, 1 and 0 for
//! LayerNorms, 0 for an embedding's padding row); how the values are drawn is here.
//!
//! The random values are drawn on the CPU from a counter-based generator keyed by
//! (seed, variable name, chunk), not from libtorch's global generator: every variable gets
//! the same values whatever the device, the thread count, the order of initialisation or which
//! other variables exist (so initialising the missing MLM head of a loaded checkpoint gives
//! the same head as initialising a whole model with the same seed).

use mlm_seeds::splitmix64;
use rayon::prelude::*;
use tch::Tensor;

use super::arch::InitRule;
use super::config::EncoderConfig;

/// Elements per independent random stream: the unit of parallel work.
const CHUNK: usize = 1 << 16;

/// Re-initialises every variable of `vs` as transformers' `_init_weights` does, from `seed`.
pub fn init_weights_like_hf(vs: &tch::nn::VarStore, config: &EncoderConfig, seed: u64) {
    for (name, tensor) in vs.variables() {
        init_variable_like_hf(&name, &tensor, config, seed);
    }
}

/// Initialises one variable by its Hugging Face name, by its family's rule. Returns false
/// (and leaves the variable untouched) for a name the family has no rule for.
pub fn init_variable_like_hf(
    name: &str,
    tensor: &Tensor,
    config: &EncoderConfig,
    seed: u64,
) -> bool {
    let Some(rule) = config.architecture().init_rule(name, config) else {
        return false;
    };
    let mut target = tensor.shallow_clone();
    let _no_grad = tch::no_grad_guard();
    match rule {
        InitRule::Ones => {
            let _ = target.fill_(1.0);
        }
        InitRule::Zeros => {
            let _ = target.zero_();
        }
        InitRule::Normal { std, zero_row } => {
            let shape = tensor.size();
            let values = normal_values(seed, name, tensor.numel(), std);
            target.copy_(&Tensor::from_slice(&values).view(shape.as_slice()));
            if let Some(row) = zero_row
                && shape.first().is_some_and(|rows| row < *rows)
            {
                let _ = target.get(row).zero_();
            }
        }
        InitRule::TruncatedNormal { std, cutoff } => {
            let values = truncated_normal_values(seed, name, tensor.numel(), std, cutoff);
            target.copy_(&Tensor::from_slice(&values).view(tensor.size().as_slice()));
        }
    }
    true
}

/// `count` draws of normal(0, std) for variable `name`, as f32.
fn normal_values(seed: u64, name: &str, count: usize, std: f64) -> Vec<f32> {
    let key = splitmix64(seed ^ fnv1a(name.as_bytes()));
    let mut values = vec![0f32; count];
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(index, chunk)| fill_normal(chunk, key.wrapping_add(index as u64), std));
    values
}

/// `count` draws of normal(0, std) truncated to `[-cutoff * std, cutoff * std]`, as f32: the
/// distribution of `torch.nn.init.trunc_normal_`, drawn by rejection (a draw outside the
/// bounds is replaced by the stream's next), so that it stays a pure function of the key.
fn truncated_normal_values(seed: u64, name: &str, count: usize, std: f64, cutoff: f64) -> Vec<f32> {
    let key = splitmix64(seed ^ fnv1a(name.as_bytes()));
    let bound = cutoff * std;
    let mut values = vec![0f32; count];
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(index, chunk)| {
            let mut draws = NormalStream::new(key.wrapping_add(index as u64), std);
            for value in chunk {
                *value = loop {
                    let draw = draws.next_value();
                    // `bound` 0 (std 0) keeps the only value inside: 0.
                    if draw.abs() <= bound || bound <= 0.0 {
                        break if bound <= 0.0 { 0.0 } else { draw as f32 };
                    }
                };
            }
        });
    values
}

/// Normal(0, std) draws of one stream, one at a time (Box-Muller pairs, as [`fill_normal`]).
struct NormalStream {
    state: u64,
    std: f64,
    spare: Option<f64>,
}

impl NormalStream {
    fn new(key: u64, std: f64) -> Self {
        Self {
            state: splitmix64(key),
            std,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        ((splitmix64(self.state) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    fn next_value(&mut self) -> f64 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt() * self.std;
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

/// Fills `out` with normal(0, std) draws from stream `key` (Box-Muller on splitmix64).
fn fill_normal(out: &mut [f32], key: u64, std: f64) {
    let mut draws = NormalStream::new(key, std);
    for value in out {
        *value = draws.next_value() as f32;
    }
}

/// FNV-1a, 64-bit: a stable hash of the variable name (std's hashers are not stable).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Mean and standard deviation of a float tensor, in f64.
#[cfg(test)]
fn mean_std(tensor: &Tensor) -> (f64, f64) {
    let values = tensor.to_kind(tch::Kind::Double);
    (
        values.mean(tch::Kind::Double).double_value(&[]),
        values.std(false).double_value(&[]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use crate::model::MaskedLanguageModel;

    fn tiny() -> EncoderConfig {
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

    fn model(config: &EncoderConfig, seed: u64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _model = MaskedLanguageModel::new(&vs.root(), config);
        init_weights_like_hf(&vs, config, seed);
        vs
    }

    fn get(vs: &VarStore, name: &str) -> Tensor {
        vs.variables()
            .remove(name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn normal_draws_have_the_requested_moments() {
        let values = normal_values(7, "x.weight", 200_001, 0.02);
        let tensor = Tensor::from_slice(&values);
        let (mean, std) = mean_std(&tensor);
        assert!(mean.abs() < 2e-4, "mean {mean}");
        assert!((std - 0.02).abs() < 2e-4, "std {std}");
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn truncated_draws_stay_within_the_cutoff_with_the_truncated_moments() {
        let values = truncated_normal_values(5, "w", 200_000, 0.02, 2.0);
        assert!(values.iter().all(|v| v.abs() <= 0.04));
        let tensor = Tensor::from_slice(&values);
        let (mean, std) = mean_std(&tensor);
        // The standard deviation of N(0, 1) truncated at +-2 is 0.8796.
        assert!(mean.abs() < 2e-4, "{mean}");
        assert!((std / 0.02 - 0.8796).abs() < 0.005, "{std}");
        assert_eq!(values, truncated_normal_values(5, "w", 200_000, 0.02, 2.0));
        assert_ne!(values, truncated_normal_values(5, "v", 200_000, 0.02, 2.0));
    }

    #[test]
    fn streams_depend_on_seed_and_name_only() {
        assert_eq!(
            normal_values(1, "a.weight", 1000, 1.0),
            normal_values(1, "a.weight", 1000, 1.0)
        );
        assert_ne!(
            normal_values(1, "a.weight", 1000, 1.0),
            normal_values(2, "a.weight", 1000, 1.0)
        );
        assert_ne!(
            normal_values(1, "a.weight", 1000, 1.0),
            normal_values(1, "b.weight", 1000, 1.0)
        );
        // A longer tensor starts with the same draws: chunks are keyed by index, not by size.
        let long = normal_values(1, "a.weight", 3 * CHUNK + 5, 1.0);
        assert_eq!(&long[..1000], &normal_values(1, "a.weight", 1000, 1.0)[..]);
    }

    #[test]
    fn follows_hf_init_weights_rules() {
        let config = tiny();
        let vs = model(&config, 3);
        for (name, tensor) in vs.variables() {
            let (mean, std) = mean_std(&tensor);
            if name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight") {
                assert_eq!((mean, std), (1.0, 0.0), "{name}");
            } else if name.ends_with(".bias") {
                assert_eq!((mean, std), (0.0, 0.0), "{name}");
            } else {
                assert!((std - 0.02).abs() < 0.004, "{name}: std {std}");
            }
        }
        let word = get(&vs, "bert.embeddings.word_embeddings.weight");
        assert_eq!(
            word.get(0).abs().sum(Kind::Double).double_value(&[]),
            0.0,
            "padding row"
        );
        assert!(word.get(1).abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }

    #[test]
    fn same_seed_same_model_other_seed_other_model() {
        let config = tiny();
        let (a, b, c) = (model(&config, 11), model(&config, 11), model(&config, 12));
        for (name, tensor) in a.variables() {
            assert!(tensor.equal(&get(&b, &name)), "{name}");
            if name.ends_with("dense.weight") {
                assert!(!tensor.equal(&get(&c, &name)), "{name}");
            }
        }
    }

    #[test]
    fn initialising_one_variable_matches_the_whole_model_init() {
        let config = tiny();
        let whole = model(&config, 5);
        let vs = VarStore::new(Device::Cpu);
        let _model = MaskedLanguageModel::new(&vs.root(), &config);
        let name = "cls.predictions.transform.dense.weight";
        assert!(init_variable_like_hf(name, &get(&vs, name), &config, 5));
        assert!(get(&vs, name).equal(&get(&whole, name)));
    }

    #[test]
    fn initialisation_uses_initializer_range() {
        let config = EncoderConfig {
            initializer_range: 0.5,
            ..tiny()
        };
        let vs = model(&config, 1);
        let (_, std) = mean_std(&get(&vs, "bert.encoder.layer.0.intermediate.dense.weight"));
        assert!((std - 0.5).abs() < 0.05, "std {std}");
    }
}
