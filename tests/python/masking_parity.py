"""Masking statistics of Hugging Face's DataCollatorForLanguageModeling, for the parity test
crates/masking/tests/hf_parity.rs.

Builds a small WordPiece tokenizer of its own (vocab.txt in a temporary directory), tokenizes
a fixed batch of sentences as run_mlm.py does (return_special_tokens_mask=True), runs the
collator --runs times on that batch, and prints one JSON object: the tokenizer's special ids,
the unpadded input ids (so the Rust masker masks the same ids), the padded length, and the
counts the test compares: selections per (row, column), and the split of selected tokens
into [MASK] / random / kept.

Usage: .venv/bin/python tests/python/masking_parity.py [--runs N] [--seed S]
           [--mlm-probability P] [--mask-replace-prob P] [--random-replace-prob P]
"""

import argparse
import json
import os
import string
import sys
import tempfile

import torch
from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

SENTENCES = [
    "Cisplatin induced nephrotoxicity was observed in twelve patients receiving chemotherapy.",
    "The hepatotoxic effect of acetaminophen overdose remains a leading cause of liver failure.",
    "We measured serum creatinine before and after treatment.",
    "Lithium",
    "Haloperidol caused extrapyramidal symptoms in elderly subjects with dementia.",
    "Bleeding events were more frequent with warfarin than with placebo in this randomized trial.",
    "Seizures occurred after an intravenous bolus of lidocaine.",
    "Doxorubicin cardiomyopathy is dose dependent and often irreversible.",
    "No significant difference in blood pressure was found between the groups.",
    "Rats given streptozotocin developed hyperglycemia within three days.",
    "Vancomycin levels were monitored to reduce the risk of kidney injury.",
    "The patient recovered fully after the drug was withdrawn.",
    "Methotrexate toxicity presented as mucositis, pancytopenia and elevated liver enzymes.",
    "Propofol infusion syndrome is rare but frequently fatal.",
    "Amiodarone induced pulmonary fibrosis was confirmed by biopsy.",
    "Results suggest that the combination therapy was well tolerated.",
]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(directory):
    """A WordPiece vocabulary: specials, single characters and their ## continuations (so any
    word splits into pieces), some suffixes, the short words of the text, and filler tokens up
    to 1000 entries. Long words are left out on purpose so they split into several pieces."""
    words = sorted({w.strip(".,").lower() for s in SENTENCES for w in s.split()})
    chars = list(string.ascii_lowercase + string.digits) + [".", ","]
    vocab = SPECIALS + chars + ["##" + c for c in chars]
    vocab += ["##ing", "##ed", "##s", "##ity", "##tion", "##ic", "##al", "##in", "##ol", "##ate"]
    vocab += [w for w in words if len(w) <= 8 and w not in vocab]
    vocab = list(dict.fromkeys(vocab))  # a word may equal a character or a suffix
    vocab += [f"filler{i}" for i in range(1000 - len(vocab))]
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    # from_pretrained on a directory holding vocab.txt works across transformers 4 and 5
    # (5 renamed the constructor argument vocab_file to vocab).
    return BertTokenizerFast.from_pretrained(directory, do_lower_case=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--mask-replace-prob", type=float, default=0.8)
    parser.add_argument("--random-replace-prob", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(tmp)
        # As run_mlm.py's tokenize_function (line_by_line): special tokens mask returned.
        features = [
            dict(e)
            for e in (
                tok(s, truncation=True, max_length=args.max_length, return_special_tokens_mask=True)
                for s in SENTENCES
            )
        ]
        collator = DataCollatorForLanguageModeling(
            tok,
            mlm_probability=args.mlm_probability,
            mask_replace_prob=args.mask_replace_prob,
            random_replace_prob=args.random_replace_prob,
            pad_to_multiple_of=8,
            seed=args.seed,
        )
        padded = tok.pad([{"input_ids": f["input_ids"]} for f in features], pad_to_multiple_of=8, return_tensors="pt")
        original = padded["input_ids"]
        special_ids = torch.tensor(sorted(set(tok.all_special_ids)))

        selected = torch.zeros(original.shape, dtype=torch.long)
        counts = {"mask": 0, "random": 0, "keep": 0, "random_special": 0}
        for _ in range(args.runs):
            batch = collator([{k: list(v) for k, v in f.items()} for f in features])
            if batch["input_ids"].shape != original.shape:
                sys.exit(f"collator padded to {tuple(batch['input_ids'].shape)}, expected {tuple(original.shape)}")
            chosen = batch["labels"] != -100
            seen = batch["input_ids"]
            is_mask = chosen & (seen == tok.mask_token_id)
            is_keep = chosen & (seen == original)
            is_random = chosen & ~is_mask & ~is_keep
            selected += chosen.long()
            counts["mask"] += int(is_mask.sum())
            counts["keep"] += int(is_keep.sum())
            counts["random"] += int(is_random.sum())
            counts["random_special"] += int((is_random & torch.isin(seen, special_ids)).sum())

        eligible_cells = int((padded["attention_mask"].bool() & ~torch.isin(original, special_ids)).sum())
        total_selected = int(selected.sum())
        print(
            json.dumps(
                {
                    "transformers_collator": "DataCollatorForLanguageModeling",
                    "vocab_size": len(tok),
                    "pad_id": tok.pad_token_id,
                    "mask_id": tok.mask_token_id,
                    "special_ids": special_ids.tolist(),
                    "input_ids": [f["input_ids"] for f in features],
                    "seq_len": original.shape[1],
                    "runs": args.runs,
                    "mlm_probability": args.mlm_probability,
                    "mask_replace_prob": args.mask_replace_prob,
                    "random_replace_prob": args.random_replace_prob,
                    "eligible_cells": eligible_cells,
                    "selected_per_cell": selected.tolist(),
                    "selected": total_selected,
                    **counts,
                    "selection_rate": total_selected / (eligible_cells * args.runs),
                    "per_position_rate": (selected.sum(0).double() / args.runs / len(SENTENCES)).tolist(),
                    "split": {k: counts[k] / max(total_selected, 1) for k in ("mask", "random", "keep")},
                }
            )
        )


if __name__ == "__main__":
    main()
