#!/usr/bin/env python3
"""Training throughput of Hugging Face transformers' BertForMaskedLM, the peer of
`mlm-train` in scripts/gpu-check: same shape (BERT-base unless told), sequence length,
batch size and bf16 autocast, AdamW, 15% of tokens labelled. Prints tokens/s (all tokens of
the batch, as mlm-train's metrics.jsonl counts them)."""
import argparse
import time

import torch
from transformers import BertConfig, BertForMaskedLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda")
    config = BertConfig(vocab_size=args.vocab_size, hidden_size=args.hidden,
                        num_hidden_layers=args.layers, num_attention_heads=args.heads,
                        intermediate_size=4 * args.hidden, attn_implementation="sdpa")
    model = BertForMaskedLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    generator = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(5, args.vocab_size, (args.batch, args.seq), generator=generator).to(device)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(ids.shape, generator=generator).to(device) < 0.15
    labels[chosen] = ids[chosen]
    attention = torch.ones_like(ids)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"{args.steps * args.batch * args.seq / elapsed:.0f}")


if __name__ == "__main__":
    main()
