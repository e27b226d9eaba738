#!/usr/bin/env python3
"""Training throughput of the Python peers of `mlm-train`, on the same prepared corpus
(its train shards and tokenizer), model shape, batch, sequence length and precision:

  trainer   Hugging Face Trainer set up as run_mlm.py does it: BertForMaskedLM (SDPA;
            --family modernbert: ModernBertForMaskedLM, SDPA with its sliding-window mask),
            DataCollatorForLanguageModeling(mlm_probability=0.15), TrainingArguments with
            their defaults (optim: adamw_torch_fused on torch >= 2.8, max_grad_norm 1.0),
            bf16=True for bf16; --compile adds torch_compile=True.
  loop      a hand loop: the same model and collator, torch.optim.AdamW(fused=True),
            clip_grad_norm_, autocast for bf16.

Prints one JSON line: tokens/s over the timed steps (every token of the batch, as
mlm-train's metrics.jsonl counts them on concat-packed corpora), and the peer's settings.
Used by scripts/bench-speed (CPU) and scripts/gpu-check (GPU)."""
import argparse
import glob
import json
import os
import tempfile
import time

import pyarrow.parquet as pq
import torch
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM,
                          DataCollatorForLanguageModeling, ModernBertConfig,
                          ModernBertForMaskedLM, Trainer, TrainerCallback, TrainingArguments)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=["trainer", "loop"])
    parser.add_argument("--corpus", required=True, help="a directory `mlm-train prepare` wrote")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--compile", action="store_true", help="Trainer's torch_compile=True")
    parser.add_argument("--family", default="bert", choices=["bert", "modernbert"])
    parser.add_argument("--intermediate", type=int, default=None,
                        help="default: 4 x hidden (BERT), 1.5 x hidden (ModernBERT-base's ratio)")
    parser.add_argument("--local-attention", type=int, default=128,
                        help="ModernBERT's window, tokens in all")
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2"],
                        help="attn_implementation (flash_attention_2 needs the flash_attn package)")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return parser.parse_args()


def load_sequences(corpus: str, needed: int) -> list:
    """Train sequences of the prepared corpus (already packed to max_seq_len), cycled."""
    rows = []
    for shard in sorted(glob.glob(os.path.join(corpus, "train-*.parquet"))):
        rows += [{"input_ids": list(map(int, ids))}
                 for ids in pq.read_table(shard, columns=["input_ids"]).column(0).to_pylist()]
        if len(rows) >= needed:
            break
    if not rows:
        raise SystemExit(f"bench_peers: no train-*.parquet in {corpus}")
    return [rows[i % len(rows)] for i in range(needed)]


def build_model(args, tokenizer, seq_len: int):
    if args.family == "modernbert":
        config = ModernBertConfig(
            vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate or args.hidden * 3 // 2,
            max_position_embeddings=max(8192, seq_len), local_attention=args.local_attention,
            pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
            bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
            eos_token_id=tokenizer.sep_token_id, attn_implementation=args.attn)
        model = ModernBertForMaskedLM(config)
        # FlashAttention 2 runs in bf16/fp16 only: the weights stay fp32 under Trainer's
        # autocast, as for SDPA.
        return model
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden,
                        num_hidden_layers=args.layers, num_attention_heads=args.heads,
                        intermediate_size=args.intermediate or 4 * args.hidden,
                        max_position_embeddings=max(512, seq_len),
                        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa")
    return BertForMaskedLM(config)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Stopwatch(TrainerCallback):
    """Starts after `warmup` optimizer steps, stops at the end of training."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device = warmup, device
        self.start = self.end = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.end = time.perf_counter()


def run_trainer(args, tokenizer, sequences, seq_len: int) -> dict:
    model = build_model(args, tokenizer, seq_len)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch,
            max_steps=args.warmup + args.steps, learning_rate=1e-4, weight_decay=0.01,
            bf16=args.precision == "bf16", use_cpu=args.device == "cpu",
            torch_compile=args.compile, logging_strategy="no", save_strategy="no",
            eval_strategy="no", report_to=[], disable_tqdm=True, seed=0)
        watch = Stopwatch(args.warmup, args.device)
        trainer = Trainer(model=model, args=training_args, train_dataset=sequences,
                          data_collator=collator, callbacks=[watch])
        trainer.train()
        return {"seconds": watch.end - watch.start, "optim": getattr(training_args.optim, "value", str(training_args.optim)),
                "torch_compile": args.compile}


def run_loop(args, tokenizer, sequences, seq_len: int) -> dict:
    device = torch.device(args.device)
    model = build_model(args, tokenizer, seq_len).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    loader = torch.utils.data.DataLoader(sequences, batch_size=args.batch, collate_fn=collator,
                                         pin_memory=args.device == "cuda")
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    start = None
    for step, batch in enumerate(loader):
        if step == args.warmup:
            sync(args.device)
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(args.device)
    return {"seconds": time.perf_counter() - start, "optim": "AdamW(fused=True)",
            "torch_compile": False}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.corpus)
    sequences = load_sequences(args.corpus, (args.warmup + args.steps) * args.batch)
    seq_len = max(len(s["input_ids"]) for s in sequences)
    run = run_trainer if args.peer == "trainer" else run_loop
    result = run(args, tokenizer, sequences, seq_len)
    tokens = sum(len(s["input_ids"]) for s in sequences[args.warmup * args.batch:])
    print(json.dumps({
        "peer": args.peer + ("+compile" if args.compile else ""), "device": args.device,
        "precision": args.precision, "tokens_per_second": tokens / result["seconds"],
        "optim": result["optim"], "batch": args.batch, "seq_len": seq_len,
        "shape": f"{args.layers}x{args.hidden}", "vocab": len(tokenizer), "family": args.family,
        "attn": args.attn,
    }))


if __name__ == "__main__":
    main()
