"""`pytorch_model.bin` files in the forms real checkpoints have, with what `torch.load` and
`transformers` make of them, for crates/torch-pickle/tests/torch_load_parity.rs (our reader
against torch.load, bit for bit) and crates/trainer/tests/hf_parity (the loaded model's
logits against transformers').

  make OUT   A tiny random BertForMaskedLM (hidden 32, 2 layers; weights scaled up as in
             bert_parity.py so that logits are O(1..10)), saved as, one directory per case:
               ordered_zip      torch.save(model.state_dict()): an OrderedDict with `_metadata`,
                                zip format (PyTorch >= 1.6): how hub checkpoints were written
               ordered_legacy   the same in the legacy format (PyTorch < 1.6:
                                _use_new_zipfile_serialization=False), with the int64
                                `bert.embeddings.position_ids` buffer older transformers saved
                                (a stride-0 expanded view)
               fp16_zip, fp16_legacy, bf16_zip, bf16_legacy
                                model.half() / model.to(torch.bfloat16)
               plain_dict       a plain dict of cloned tensors (no shared storage)
               views_zip, views_legacy
                                tensors that are views: Q/K/V weights slices of one fused
                                storage (offsets), transposed weights (non-contiguous), a
                                stride-2 bias, a LayerNorm weight inside a larger buffer, a
                                broadcast (stride 0) token type embedding, position_ids
               sharded          as transformers 4's save_pretrained(safe_serialization=False,
                                max_shard_size="20KB"): pytorch_model-0000i-of-0000n.bin +
                                pytorch_model.bin.index.json
               protocol4        torch.save(..., pickle_protocol=4) (torch.load needs
                                weights_only=False for it, so transformers cannot load it)
               hostile/         files to refuse (never loaded here): numpy.bin (a numpy array
                                among the tensors), command_{zip,legacy}.bin (an object whose
                                unpickling would run os.system)
             Each case has config.json; each .bin file FILE has FILE.expected.safetensors (what
             torch.load(FILE, weights_only=True) returns, each tensor made contiguous).
               expected.json    case -> file -> tensor -> index in the file, dtype, shape,
                                stride, storage offset, and the first tensor of the file
                                sharing its storage
               reference.safetensors
                                input_ids, attention_mask, and logits_<case> of
                                BertForMaskedLM.from_pretrained(case, dtype=float32) for every
                                case transformers loads

Usage: .venv/bin/python tests/python/torch_save_forms.py make OUT
"""

import json
import os
import sys

import numpy
import torch
import transformers
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM

from bert_parity import randomise

CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=24,
    hidden_act="gelu",
    pad_token_id=0,
)
LAYER = "bert.encoder.layer.{}."
DTYPES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
    torch.int64: "i64",
}


def position_ids():
    """As BertEmbeddings registers it (persistent in transformers < 4.31): a stride-0 view."""
    return torch.arange(CONFIG["max_position_embeddings"]).expand((1, -1))


def copy(state):
    """A copy of a state dict that keeps its `_metadata` attribute."""
    result = state.copy()
    result._metadata = state._metadata
    return result


def views(state):
    """`state` with its tensors stored as views of other storages."""
    state = copy(state)
    hidden = CONFIG["hidden_size"]
    for layer in range(CONFIG["num_hidden_layers"]):
        prefix = LAYER.format(layer) + "attention."
        names = [prefix + f"self.{part}.weight" for part in ("query", "key", "value")]
        fused = torch.cat([state[name] for name in names], 0)
        for i, name in enumerate(names):
            state[name] = fused[i * hidden : (i + 1) * hidden]
        for name in (prefix + "output.dense.weight", LAYER.format(layer) + "intermediate.dense.weight"):
            state[name] = state[name].t().contiguous().t()
        bias = prefix + "output.dense.bias"
        spaced = torch.zeros(2 * hidden)
        spaced[::2] = state[bias]
        state[bias] = spaced[::2]
        norm = LAYER.format(layer) + "output.LayerNorm.weight"
        buffer = torch.randn(hidden + 7)
        buffer[5 : 5 + hidden] = state[norm]
        state[norm] = buffer[5 : 5 + hidden]
    # A broadcast (stride 0) view: both token types get the first one's embedding.
    token_types = "bert.embeddings.token_type_embeddings.weight"
    state[token_types] = state[token_types][0:1].expand(2, -1)
    state["bert.embeddings.position_ids"] = position_ids()
    return state


def with_position_ids(state):
    state = copy(state)
    state["bert.embeddings.position_ids"] = position_ids()
    return state


def save_sharded(state, directory):
    """transformers 4.4x's save_pretrained(safe_serialization=False) (modeling_utils.py)."""
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="pytorch_model{suffix}.bin", max_shard_size="20KB"
    )
    for filename, names in split.filename_to_tensors.items():
        torch.save({name: state[name].contiguous() for name in names}, os.path.join(directory, filename))
    index = {"metadata": {**split.metadata, "total_size": sum(t.nbytes for t in state.values())}, "weight_map": split.tensor_to_filename}
    with open(os.path.join(directory, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2)


def describe(loaded):
    """What torch.load made of one file: dtype, shape, stride, offset and storage sharing."""
    owners, result = {}, {}
    for name, tensor in loaded.items():
        owner = owners.setdefault(tensor.untyped_storage().data_ptr(), name)
        result[name] = {
            "index": len(result),
            "dtype": DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "stride": list(tensor.stride()),
            "offset": tensor.storage_offset(),
            "storage_owner": owner,
        }
    return result


def write_case(out, case, config, state, save):
    directory = os.path.join(out, case)
    os.makedirs(directory)
    config.save_pretrained(directory)
    save(state, directory)
    expected = {}
    for filename in sorted(os.listdir(directory)):
        if not filename.endswith(".bin"):
            continue
        path = os.path.join(directory, filename)
        loaded = torch.load(path, weights_only=case != "protocol4")
        expected[filename] = describe(loaded)
        save_file({k: v.contiguous().clone() for k, v in loaded.items()}, path + ".expected.safetensors")
    return expected


class RunsACommand:
    """What a malicious pickle does: unpickling calls os.system. Never loaded here."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def write_hostile(directory, state):
    """Files a state-dict reader must refuse (written, never loaded): a numpy array among the
    tensors, and an object whose unpickling runs a shell command."""
    os.makedirs(directory)
    torch.save({**state, "numpy": numpy.zeros(3)}, os.path.join(directory, "numpy.bin"))
    for suffix, kwargs in (("zip", {}), ("legacy", dict(_use_new_zipfile_serialization=False))):
        path = os.path.join(directory, f"command_{suffix}.bin")
        torch.save({**state, "x": RunsACommand()}, path, **kwargs)


def single(**kwargs):
    return lambda state, directory: torch.save(state, os.path.join(directory, "pytorch_model.bin"), **kwargs)


def make(out):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(4321)
    config = BertConfig(**CONFIG)
    model = BertForMaskedLM(config).eval()
    randomise(model, generator)
    legacy = dict(_use_new_zipfile_serialization=False)
    half, bf16 = BertForMaskedLM(config).eval(), BertForMaskedLM(config).eval()
    half.load_state_dict(model.state_dict())
    bf16.load_state_dict(model.state_dict())
    half.half()
    bf16.to(torch.bfloat16)
    cases = {
        "ordered_zip": (model.state_dict(), single()),
        "ordered_legacy": (with_position_ids(model.state_dict()), single(**legacy)),
        "fp16_zip": (half.state_dict(), single()),
        "fp16_legacy": (half.state_dict(), single(**legacy)),
        "bf16_zip": (bf16.state_dict(), single()),
        "bf16_legacy": (bf16.state_dict(), single(**legacy)),
        "plain_dict": ({k: v.clone() for k, v in model.state_dict().items()}, single()),
        "views_zip": (views(model.state_dict()), single()),
        "views_legacy": (views(model.state_dict()), single(**legacy)),
        "sharded": (model.state_dict(), save_sharded),
        "protocol4": (model.state_dict(), single(pickle_protocol=4)),
    }
    write_hostile(os.path.join(out, "hostile"), model.state_dict())
    ids = torch.randint(1, CONFIG["vocab_size"], (3, 9), generator=generator)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    ids = ids * mask
    tensors = {"input_ids": ids, "attention_mask": mask}
    expected = {}
    for case, (state, save) in cases.items():
        expected[case] = write_case(out, case, config, state, save)
        if case == "protocol4":
            continue
        loaded = BertForMaskedLM.from_pretrained(os.path.join(out, case), dtype=torch.float32).eval()
        with torch.no_grad():
            tensors[f"logits_{case}"] = loaded(input_ids=ids, attention_mask=mask).logits.contiguous()
    save_file(tensors, os.path.join(out, "reference.safetensors"))
    meta = {"torch": torch.__version__, "transformers": transformers.__version__, "cases": expected}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main():
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
