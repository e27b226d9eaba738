#!/usr/bin/env python3
"""Fine-tunes a sequence classifier from a model mlm-train exported, with transformers.

The last step of docs/guide.md: the adapted encoder (a Hugging Face directory written by
`mlm-train export`) gets a classification head (`AutoModelForSequenceClassification` adds
it on the pooler) and is trained on labelled sentences, a JSONL file of
{"text": ..., "label": ...}. A plain PyTorch loop, so the script needs nothing beyond
torch and transformers; for real data sets use the Trainer and a held-out split.

Usage: finetune-classifier.py --model DIR --data FILE.jsonl --out DIR [--epochs N]
"""
import argparse
import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="directory written by mlm-train export")
    parser.add_argument("--data", required=True, help='JSONL of {"text": ..., "label": ...}')
    parser.add_argument("--out", required=True, help="where the classifier is saved")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    with open(args.data) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    labels = sorted({row["label"] for row in rows})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    model.train()
    for epoch in range(args.epochs):
        total = 0.0
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            inputs = tokenizer([r["text"] for r in batch], padding=True, truncation=True,
                               max_length=128, return_tensors="pt")
            target = torch.tensor([label2id[r["label"]] for r in batch])
            loss = model(**inputs, labels=target).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: loss {total / len(rows):.4f}")

    model.eval()
    with torch.no_grad():
        inputs = tokenizer([r["text"] for r in rows], padding=True, truncation=True,
                           max_length=128, return_tensors="pt")
        predicted = model(**inputs).logits.argmax(-1).tolist()
    correct = sum(p == label2id[r["label"]] for p, r in zip(predicted, rows))
    print(f"training accuracy {correct / len(rows):.3f} on {len(rows)} sentences")
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    classify = pipeline("text-classification", model=args.out, tokenizer=args.out)
    print(f"saved {args.out}; pipeline on the first sentence: {classify(rows[0]['text'])}")


if __name__ == "__main__":
    main()
