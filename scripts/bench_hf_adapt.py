#!/usr/bin/env python3
"""The transformers arm of scripts/bench-adapt: continue pre-training a Hugging Face checkpoint
the way `run_mlm.py` on `Trainer` does, on the sequences of a corpus `mlm-train prepare`
wrote (the same tokens our arm trains on), and save the result for `mlm-train eval`.

The recipe is Trainer's (tests/python/trainer_recipe.py): BertForMaskedLM.from_pretrained
(transformers initialises the missing MLM head), DataCollatorForLanguageModeling (15%,
80/10/10) on batches drawn by a seeded RandomSampler, epoch after epoch until max steps,
AdamW in Trainer's two decay groups (fused), its schedule and warmup rounding, clipping at
max_grad_norm, fp32, sdpa attention, dropout on. One seed drives the head initialisation,
the data order, the masks and dropout (Trainer's `seed`).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from trainer_recipe import masked_lm_loss, optimizer_for, optimizer_step, scheduler_for  # noqa: E402


def train_sequences(corpus):
    """Every training sequence of a prepared corpus, as lists of token ids."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    sequences = []
    for shard in manifest["train"]["shards"]:
        sequences.extend(pq.read_table(corpus / shard["file"], columns=["input_ids"])["input_ids"].to_pylist())
    return sequences


def batches(sequences, batch_size, generator):
    """Trainer's train dataloader with a RandomSampler, epoch after epoch (last batch kept,
    `dataloader_drop_last=False`)."""
    while True:
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            yield [{"input_ids": sequences[i]} for i in order[start : start + batch_size]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face model directory")
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus mlm-train prepared")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model = BertForMaskedLM.from_pretrained(args.model, attn_implementation="sdpa").train()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    spec = {
        "learning_rate": args.lr, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
        "weight_decay": args.weight_decay, "lr_schedule": "linear", "warmup_steps": None,
        "warmup_ratio": args.warmup_ratio, "total_steps": args.steps,
    }
    optimizer = optimizer_for(model, spec)
    scheduler = scheduler_for(optimizer, spec)
    stream = batches(train_sequences(args.corpus), args.batch_size, torch.Generator().manual_seed(args.seed))

    tokens = 0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = collator(next(stream))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = masked_lm_loss(logits, batch["labels"])
        loss.backward()
        _, grad_norm = optimizer_step(model, optimizer, scheduler, args.max_grad_norm)
        tokens += batch["input_ids"].numel()
        if step % 10 == 0 or step == args.steps:
            rate = tokens / (time.perf_counter() - start)
            print(f"step {step}/{args.steps} loss {loss.item():.4f} grad_norm {grad_norm:.3f} "
                  f"tokens/s {rate:,.0f}", flush=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)


if __name__ == "__main__":
    main()
