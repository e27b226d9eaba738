#!/usr/bin/env python3
"""The tables of scripts/bench-adapt from its work directory: one row per run (held-out
metrics of `mlm-train eval` on the final model, training tokens/s, wall time), then each
arm's mean and sample standard deviation over its seeds.

Usage: bench_adapt_report.py WORK_DIR
"""

import json
import re
import statistics
import sys
from pathlib import Path

METRICS = (("loss", ".3f"), ("perplexity", ",.1f"), ("accuracy", ".3f"),
           ("top5_accuracy", ".3f"), ("mask_accuracy", ".3f"))


def tokens_per_second(work, run):
    """Median training tokens/s over the logged windows after the first (start-up) one."""
    metrics = work / run / "metrics.jsonl"
    if metrics.exists():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        rates = [r["tokens_per_second"] for r in records if r.get("split") == "train"]
    else:  # the transformers arm logs "tokens/s N" (cumulative) every 10 steps
        rates = [float(m.replace(",", "")) for m in
                 re.findall(r"tokens/s ([\d,]+)", (work / f"{run}.log").read_text())]
        rates = rates[-1:]
    rates = rates[1:] or rates
    return statistics.median(rates) if rates else float("nan")


def runs(work):
    for line in (work / "times.tsv").read_text().splitlines():
        name, seconds, load = line.split("\t")
        arm, seed = name.rsplit("-s", 1)
        after = json.loads((work / f"{name}.eval.json").read_text())
        words_file = work / f"{name}.words.json"
        if words_file.exists():  # runs of an earlier bench-adapt have no word scores
            words = json.loads(words_file.read_text())
            after["loss_per_word"] = words["loss_per_word"]
            after["word_accuracy"] = words["word_accuracy"]
        yield {"run": name, "arm": arm, "seed": int(seed), "after": after,
               "tokens_per_second": tokens_per_second(work, name),
               "seconds": float(seconds), "load": load}


def spread(values, fmt):
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def main():
    work = Path(sys.argv[1])
    rows = sorted(runs(work), key=lambda r: (r["arm"], r["seed"]))
    if not rows:
        sys.exit(f"bench-adapt: {work}/times.tsv lists no finished run")
    print(f"held-out: {rows[0]['after']['masked_tokens']} masked tokens (the same fixed masks "
          "for every run; `mlm-train eval` on each run's final model)")
    head = ("run", "loss", "perplexity", "accuracy", "top5", "mask acc", "tokens/s", "wall s")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        values = " | ".join(format(r["after"][k], f) for k, f in METRICS)
        print(f"| {r['run']} | {values} | {r['tokens_per_second']:,.0f} | {r['seconds']:.0f} |")
    print()
    print("per arm: mean ± sample standard deviation over seeds")
    head = ("arm", "seeds", "loss", "perplexity", "accuracy", "top5", "mask acc")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        group = [r for r in rows if r["arm"] == arm]
        seeds = ",".join(str(r["seed"]) for r in group)
        values = " | ".join(spread([r["after"][k] for r in group], f) for k, f in METRICS)
        print(f"| {arm} | {seeds} | {values} |")
    word_rows = [r for r in rows if "loss_per_word" in r["after"]]
    if word_rows:
        print()
        print("whole words (`mlm-train eval --words`): per arm, mean ± sample standard deviation")
        print("| arm | seeds | loss per word | word accuracy |")
        print("| --- | --- | --- | --- |")
        for arm in dict.fromkeys(r["arm"] for r in word_rows):
            group = [r for r in word_rows if r["arm"] == arm]
            seeds = ",".join(str(r["seed"]) for r in group)
            loss = spread([r["after"]["loss_per_word"] for r in group], ".3f")
            accuracy = spread([r["after"]["word_accuracy"] for r in group], ".3f")
            print(f"| {arm} | {seeds} | {loss} | {accuracy} |")
    print()
    print("tokens/s: ours, the median over the logged 10-step windows after the first; "
          "transformers, the average over the whole run (its log's last figure). Wall time "
          "includes model loading and, for our arms, the held-out evaluations and the checkpoint.")


if __name__ == "__main__":
    main()
