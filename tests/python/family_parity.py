"""Reference outputs of transformers' masked-LM classes of every supported family, for
crates/trainer/tests/family_parity.rs.

  make FAMILY OUT   A random tiny `<Family>ForMaskedLM` (odd sizes; every weight, LayerNorms
                    included, drawn so that logits are O(1..10) and a 1e-4 tolerance means
                    something), saved with save_pretrained into OUT/model, and in
                    OUT/reference.safetensors: padded inputs, the logits (fp32, and `logits64`
                    of the model in fp64), a masked batch's labels and transformers' loss
                    on it.
  model-for FAMILY DIR
                    A random tiny `<Family>ForMaskedLM` sized for the tokenizer saved in DIR
                    (`len(AutoTokenizer)`, its padding id), saved into DIR beside it: a model
                    directory for `mlm-train fill-mask`.
  reload FAMILY OUT DIR
                    Loads DIR (our export) with AutoModelForMaskedLM and writes OUT/reload.json
                    (its class, missing and unexpected keys) and OUT/reload.safetensors (its
                    logits on the reference inputs).

FAMILY: bert, roberta, xlm-roberta, camembert, distilbert, modernbert (the model_type), or
modernbert-2024: the same ModernBERT with every bias switched on and no decoder bias, its
config.json rewritten in the 2024 hub form (`global_attn_every_n_layers`, `global_rope_theta`,
`local_rope_theta` instead of `layer_types` and `rope_parameters`) and reloaded from it, so
that the reference is what transformers computes from that form. ModernBERT's inputs are
longer than its window (`local_attention` 6: 3 tokens each side), so that the window matters.
"""

import json
import sys
from pathlib import Path

import torch
import transformers as t
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)

VOCAB, PAD = 83, 1


def modernbert_config(family, vocab, pad):
    """Odd sizes, rotary bases far from the defaults (so that swapping them shows) and a
    small window; `modernbert-2024` switches every bias on and the decoder's off."""
    biases = family == "modernbert-2024"
    return t.ModernBertConfig(
        vocab_size=vocab, pad_token_id=pad, cls_token_id=0, bos_token_id=0, sep_token_id=2,
        eos_token_id=2, hidden_size=36, intermediate_size=50, num_hidden_layers=4,
        num_attention_heads=3, max_position_embeddings=64, local_attention=6,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 55.0}},
        hidden_activation="gelu_new", classifier_activation="gelu",
        norm_bias=biases, attention_bias=biases, mlp_bias=biases, classifier_bias=biases,
        decoder_bias=not biases)


def as_2024_form(directory):
    """Rewrites DIR/config.json in the 2024 hub form (the same model)."""
    path = Path(directory) / "config.json"
    config = json.loads(path.read_text())
    types = config.pop("layer_types")
    rope = config.pop("rope_parameters")
    every = types.index("full_attention", 1)
    assert all((kind == "full_attention") == (i % every == 0) for i, kind in enumerate(types))
    config["global_attn_every_n_layers"] = every
    config["global_rope_theta"] = rope["full_attention"]["rope_theta"]
    config["local_rope_theta"] = rope["sliding_attention"]["rope_theta"]
    path.write_text(json.dumps(config, indent=2))


def config_for(family, vocab=VOCAB, pad=PAD):
    if family.startswith("modernbert"):
        return modernbert_config(family, vocab, pad)
    common = dict(vocab_size=vocab, pad_token_id=pad, max_position_embeddings=40)
    if family == "distilbert":
        return t.DistilBertConfig(dim=36, n_layers=2, n_heads=3, hidden_dim=50, **common)
    bert_like = dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=50, hidden_act="gelu_new", **common)
    classes = {"bert": t.BertConfig, "roberta": t.RobertaConfig,
               "xlm-roberta": t.XLMRobertaConfig, "camembert": t.CamembertConfig}
    extra = {} if family == "bert" else {"type_vocab_size": 1, "layer_norm_eps": 1e-5}
    return classes[family](**bert_like, **extra)


def inputs(family):
    """Two sequences, the second padded (ids above the padding id, as real tokens are);
    ModernBERT's longer than its window."""
    generator = torch.Generator().manual_seed(3)
    length, real = (19, 13) if family.startswith("modernbert") else (11, 7)
    ids = torch.randint(PAD + 1, VOCAB, (2, length), generator=generator)
    ids[1, real:] = PAD
    mask = (ids != PAD).long()
    labels = torch.full_like(ids, -100)
    for row, col in [(0, 1), (0, 4), (0, 10), (1, 2), (1, 6)]:
        labels[row, col] = ids[row, col]
        ids[row, col] = VOCAB - 1  # a stand-in mask token
    return ids, mask, labels


def random_model(config):
    torch.manual_seed(0)
    model = t.AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn_like(param) * (0.5 if param.dim() > 1 else 0.2))
            if name.endswith(("LayerNorm.weight", "_norm.weight", ".norm.weight")):
                param.add_(1.0)
    return model.eval()


def model_for(family, directory):
    tokenizer = t.AutoTokenizer.from_pretrained(directory)
    config = config_for(family, vocab=len(tokenizer), pad=tokenizer.pad_token_id)
    random_model(config).save_pretrained(directory)
    if family == "modernbert-2024":
        as_2024_form(directory)


def make(family, out):
    out = Path(out)
    model = random_model(config_for(family))
    model.save_pretrained(out / "model")
    if family == "modernbert-2024":
        as_2024_form(out / "model")
        model = t.AutoModelForMaskedLM.from_pretrained(out / "model", attn_implementation="sdpa")
        model.eval()
    ids, mask, labels = inputs(family)
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, labels=labels)
        logits64 = model.double()(input_ids=ids, attention_mask=mask).logits
    save_file({"input_ids": ids, "attention_mask": mask, "labels": labels,
               "logits": output.logits.contiguous(), "loss": output.loss.reshape(1),
               "logits64": logits64.contiguous()},
              out / "reference.safetensors")


def reload(family, out, export_dir):
    out = Path(out)
    model, info = t.AutoModelForMaskedLM.from_pretrained(export_dir, output_loading_info=True,
                                                        attn_implementation="sdpa")
    reference = load_file(out / "reference.safetensors")
    with torch.no_grad():
        logits = model.eval()(input_ids=reference["input_ids"],
                              attention_mask=reference["attention_mask"]).logits
    save_file({"logits": logits.contiguous()}, out / "reload.safetensors")
    report = {"class": type(model).__name__, "missing": sorted(info["missing_keys"]),
              "unexpected": sorted(info["unexpected_keys"])}
    (out / "reload.json").write_text(json.dumps(report))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make": make, "model-for": model_for, "reload": reload}[command](*args)
