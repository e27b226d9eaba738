"""Checks an `mlm-train export` directory against Hugging Face transformers.

Usage: fill_mask_parity.py HF_DIR OURS_JSON TEXT TOP_K

- `pipeline("fill-mask")` on HF_DIR gives the same tokens, sequences and scores (1e-5) as
  `mlm-train fill-mask` did (OURS_JSON, the binary's stdout for TEXT with one [MASK]);
- `AutoModelForMaskedLM` loads it with no missing weights (an exported pooler, kept for
  fine-tuning, is the only unexpected key transformers 5 may report);
- `AutoModelForSequenceClassification` loads it with only the new classifier missing
  (`classifier.*`, and DistilBERT's `pre_classifier.*`; RoBERTa's classifier head is
  `classifier.dense` + `classifier.out_proj`).
Prints one JSON line with what it compared; exits non-zero on a mismatch.
"""
import json
import sys

from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification,
                          pipeline)


def main() -> None:
    hf_dir, ours_path, text, top_k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ours = json.load(open(ours_path))
    fill = pipeline("fill-mask", model=hf_dir, device="cpu")
    theirs = fill(text, top_k=top_k)
    problems = []
    for a, b in zip(ours, theirs, strict=True):
        if a["token"] != b["token"] or a["token_str"] != b["token_str"] or a["sequence"] != b["sequence"]:
            problems.append(f"candidate differs: ours {a} theirs {b}")
        if abs(a["score"] - b["score"]) > 1e-5:
            problems.append(f"score differs: ours {a['score']} theirs {b['score']}")

    _, mlm_info = AutoModelForMaskedLM.from_pretrained(hf_dir, output_loading_info=True)
    if mlm_info["missing_keys"]:
        problems.append(f"AutoModelForMaskedLM missing keys: {mlm_info['missing_keys']}")
    unexpected = [k for k in mlm_info["unexpected_keys"] if "pooler" not in k]
    if unexpected:
        problems.append(f"AutoModelForMaskedLM unexpected keys: {unexpected}")
    _, cls_info = AutoModelForSequenceClassification.from_pretrained(
        hf_dir, num_labels=3, output_loading_info=True)
    new_head = ("classifier.", "pre_classifier.")
    missing = [k for k in cls_info["missing_keys"] if not k.startswith(new_head)]
    if missing:
        problems.append(f"AutoModelForSequenceClassification missing keys: {missing}")

    print(json.dumps({"compared": len(ours), "max_score_diff": max(
        abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)), "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
