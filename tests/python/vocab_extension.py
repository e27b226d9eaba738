"""Checks of a vocabulary grown by `mlm-train vocab extend` (tests/e2e/vocab_extend.rs).

rows BASE GROWN TOLERANCE
    BASE and GROWN are model directories (model.safetensors): GROWN's vocab-extension.json
    lists the new rows. Every base row that no new token took keeps its value, and every new
    row (word embeddings and output bias) is the mean of its base pieces' rows, computed here
    in float64 from BASE and rounded to GROWN's dtype (both within TOLERANCE, absolute; 0 means
    bit for bit). Prints what it checked as JSON.
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

BIASES = ("cls.predictions.bias", "lm_head.bias", "vocab_projector.bias", "decoder.bias")
EMBEDDINGS = ("embeddings.word_embeddings.weight", "embeddings.tok_embeddings.weight")


def vocabulary_tensors(directory):
    weights = load_file(str(Path(directory) / "model.safetensors"))
    embeddings = next(v for k, v in weights.items() if k.endswith(EMBEDDINGS))
    bias = next(weights[k] for k in BIASES if k in weights)
    return {"embeddings": embeddings, "bias": bias}


def rows(base_dir, grown_dir, tolerance):
    extension = json.loads((Path(grown_dir) / "vocab-extension.json").read_text())
    base, grown = vocabulary_tensors(base_dir), vocabulary_tensors(grown_dir)
    new_ids = [t["id"] for t in extension["tokens"]]
    base_rows = extension["base_vocab_size"]
    kept = [i for i in range(base_rows) if i not in set(new_ids)]
    checked = {}
    for name in ("embeddings", "bias"):
        old, new = base[name], grown[name]
        assert new.shape[0] == base_rows + sum(i >= base_rows for i in new_ids), (name, new.shape)
        diff = (new[kept].double() - old[kept].double()).abs().max().item()
        assert diff <= tolerance, f"{name}: a base row changed by {diff}"
        worst = 0.0
        for token in extension["tokens"]:
            mean = old.double()[token["base_ids"]].mean(0).to(new.dtype).double()
            worst = max(worst, (new[token["id"]].double() - mean).abs().max().item())
        assert worst <= tolerance, f"{name}: a new row differs from its piece mean by {worst}"
        checked[name] = {"kept_rows": len(kept), "new_rows": len(new_ids), "max_new_diff": worst}
    print(json.dumps(checked))


def main():
    command, *args = sys.argv[1:]
    if command == "rows":
        rows(args[0], args[1], float(args[2]))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
