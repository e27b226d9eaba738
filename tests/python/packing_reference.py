"""Reference implementation of mlm-corpus' packing, with Hugging Face tools only.

Reads a directory written by `mlm-train prepare` (its manifest.json names the JSONL inputs,
fields, split, tokenizer, sequence length and packing), rebuilds every sequence and its word
starts with transformers' tokenizer (AutoTokenizer on the tokenizer directory the config
names) and the `group_texts` logic of transformers' examples/pytorch/language-modeling/
run_mlm.py, and compares them with the Parquet shards, read with pyarrow and with
`datasets.load_dataset("parquet", data_dir=...)`.

The packing (docs/corpus.md, "Packing"), against run_mlm's `group_texts`, with the
tokenizer's own cls / sep ([CLS] / [SEP] for BERT, <s> / </s> for RoBERTa; written [CLS] /
[SEP] below):
- concat: the documents of a split, in input order, are one stream `d1 [SEP] d2 ... dn`
  (run_mlm concatenates `[CLS] d [SEP]` per document, in batches of 1000 documents); the
  stream is cut into blocks of max_seq_len - 2 tokens, each wrapped `[CLS] block [SEP]`;
  the last, shorter block is kept (run_mlm drops each batch's tail).
- document: each document alone is cut into such windows.
- word starts: [CLS]/[SEP] start words; a token starts a word when its word id (the
  tokenizer's `word_ids()`) differs from the previous token's of the same document; the
  first content token of every sequence starts a word.
- held out: u = (first 8 bytes of SHA-256("mlm-corpus split v1\\0" + seed as 8 LE bytes +
  id), read little-endian) >> 11, divided by 2**53; validation when u < fraction.

Usage: packing_reference.py PREPARED_DIR [--cache-dir DIR]. Exit status 0 when everything
matches; otherwise the first differences are printed.
"""

import argparse
import hashlib
import json
import sys
from itertools import chain
from pathlib import Path


def held_out(doc_id: str, seed: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    digest = hashlib.sha256(
        b"mlm-corpus split v1\0" + seed.to_bytes(8, "little") + doc_id.encode("utf-8")
    ).digest()
    h = int.from_bytes(digest[:8], "little")
    return (h >> 11) * 2.0**-53 < fraction


def read_documents(manifest):
    """(id, text, split) of every JSONL document, in input order (held-out inputs first)."""
    cfg = manifest["config"]
    fields, sep, id_field = cfg["text_fields"], cfg["field_separator"], cfg["id_field"]
    fraction, seed = manifest["split"]["validation_fraction"], manifest["split"]["split_seed"]
    held_sources = [s["path"] for s in manifest["sources"] if s["held_out"]]
    docs, held_ids = [], set()
    for source in manifest["sources"]:
        assert source["format"] == "jsonl", "the reference reads JSONL inputs only"
        with open(source["path"], encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                obj = json.loads(line)
                text = sep.join(obj[k] for k in fields if obj[k].strip())
                if not text.strip():
                    continue
                doc_id = str(obj[id_field]) if id_field else None
                assert doc_id is not None, "the reference needs an id_field"
                if source["path"] in held_sources:
                    held_ids.add(doc_id)
                    split = "validation"
                elif doc_id in held_ids:
                    continue
                else:
                    split = "validation" if held_out(doc_id, seed, fraction) else "train"
                docs.append((doc_id, text, split))
    return docs


def tokenize(tokenizer, texts):
    """run_mlm's tokenize_function without special tokens, plus word starts per document."""
    encoded = tokenizer(texts, add_special_tokens=False)
    out = []
    for i, ids in enumerate(encoded["input_ids"]):
        words = encoded.word_ids(i)
        starts = [j == 0 or w is None or w != words[j - 1] for j, w in enumerate(words)]
        out.append((ids, starts))
    return out


def group_texts(documents, max_seq_len, cls, sep, packing):
    """group_texts of run_mlm.py over a whole split, with [SEP] joins, [CLS]/[SEP] wraps and
    the tail kept (see the module docstring)."""
    block = max_seq_len - 2
    if packing == "concat":
        streams = [list(chain.from_iterable(
            ([(sep, True)] if k > 0 else []) + list(zip(ids, starts))
            for k, (ids, starts) in enumerate(documents)
        ))]
    else:
        streams = [list(zip(ids, starts)) for ids, starts in documents]
    sequences = []
    for stream in streams:
        total_length = len(stream)  # run_mlm: (total_length // block) * block drops the tail
        for i in range(0, total_length, block):
            chunk = stream[i : i + block]
            ids = [cls] + [t for t, _ in chunk] + [sep]
            starts = [True] + [s or j == 0 for j, (_, s) in enumerate(chunk)] + [True]
            sequences.append((ids, starts))
    return sequences


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prepared")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    prepared = Path(args.prepared)
    manifest = json.loads((prepared / "manifest.json").read_text())

    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(manifest["config"]["tokenizer"])
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert (cls, sep) == (manifest["special_ids"]["cls"], manifest["special_ids"]["sep"])
    docs = read_documents(manifest)
    failures = 0
    continuations = 0
    for split in ("train", "validation"):
        texts = [text for _, text, s in docs if s == split]
        documents = [d for d in tokenize(tokenizer, texts) if d[0]]
        expected = group_texts(
            documents, manifest["max_seq_len"], cls, sep, manifest["config"]["packing"]
        )
        got = []
        for shard in manifest[split]["shards"]:
            table = pq.read_table(prepared / shard["file"])
            got.extend(zip(table.column("input_ids").to_pylist(), table.column("word_start").to_pylist()))
        if len(got) != len(expected):
            print(f"{split}: {len(got)} sequences in the shards, {len(expected)} in the reference")
            failures += 1
        for k, (g, e) in enumerate(zip(got, expected)):
            if list(g[0]) != e[0] or list(g[1]) != e[1]:
                print(f"{split} sequence {k} differs:\n  ours      {g}\n  reference {e}")
                failures += 1
                break
        continuations += sum(not s for _, starts in expected for s in starts)
        assert manifest[split]["documents"] == len(documents), (split, manifest[split]["documents"], len(documents))
        print(f"{split}: {len(expected)} sequences from {len(documents)} documents compared")

    from datasets import load_dataset

    dataset = load_dataset("parquet", data_dir=str(prepared), cache_dir=args.cache_dir)
    for split in ("train", "validation"):
        rows = manifest[split]["sequences"]
        if rows == 0:
            continue
        if split not in dataset or dataset[split].num_rows != rows:
            print(f"datasets: split {split} has {dataset.get(split) and dataset[split].num_rows} rows, manifest {rows}")
            failures += 1
            continue
        first = dataset[split][0]
        table = pq.read_table(prepared / manifest[split]["shards"][0]["file"])
        if first["input_ids"] != table.column("input_ids")[0].as_py():
            print(f"datasets: first {split} row differs from pyarrow's")
            failures += 1
    print(f"continuation tokens (word_start false): {continuations}")
    print(f"datasets: {', '.join(f'{k} {v.num_rows}' for k, v in dataset.items())}; features {dataset['train'].features}")
    if failures:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
