//! Model inputs: a model directory's `model.safetensors`, a `pytorch_model.bin`, a
//! checkpoint's `trainer_state.json`.

use std::sync::Once;

use mlm_torch_pickle::StateDict;
use mlm_trainer::checkpoint::TrainerState;
use mlm_trainer::model::load_model_dir;

use super::{with_scratch, write};

/// A tiny BERT's `config.json`: the fuzzed weights are loaded into this model.
const TINY_CONFIG: &str = r#"{
  "model_type": "bert",
  "vocab_size": 16,
  "hidden_size": 4,
  "num_hidden_layers": 1,
  "num_attention_heads": 2,
  "intermediate_size": 8,
  "max_position_embeddings": 8,
  "type_vocab_size": 2
}"#;

/// `model.safetensors` of a model directory, loaded as `eval`, `export` and `fill-mask` load
/// one (`load_model_dir`: header, names, shapes, dtypes, then the copy into libtorch).
pub fn safetensors(data: &[u8]) {
    static ONE_THREAD: Once = Once::new();
    ONE_THREAD.call_once(|| tch::set_num_threads(1));
    with_scratch(|dir| {
        write(dir, "config.json", TINY_CONFIG.as_bytes());
        write(dir, "model.safetensors", data);
        let _ = load_model_dir(dir, tch::Device::Cpu);
    });
}

/// A `pytorch_model.bin` (`torch.save`, zip or legacy format), parsed by mlm-torch-pickle
/// and every tensor's bytes gathered as the loader gathers them before the copy.
pub fn torch_pickle(data: &[u8]) {
    let Ok(state) = StateDict::from_bytes("pytorch_model.bin", data.to_vec()) else {
        return;
    };
    for tensor in state.tensors() {
        let _ = (tensor.name(), tensor.dtype(), tensor.shape());
        let _ = tensor.contiguous_bytes();
    }
}

/// A checkpoint's `trainer_state.json`, read as a resume reads it.
pub fn trainer_state(data: &[u8]) {
    with_scratch(|dir| {
        let _ = TrainerState::read(&write(dir, "trainer_state.json", data));
    });
}
