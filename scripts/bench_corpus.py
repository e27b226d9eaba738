"""Driver of scripts/bench-corpus (see there). Also the Hugging Face side when run as
`bench_corpus.py hf ...` in a child process, so both sides are measured the same way: wall
time of the process and peak RSS summed over its whole process tree (sampled from /proc
every 50 ms; Hugging Face's num_proc workers are separate processes)."""

import argparse
import collections
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def tree_rss_bytes(root_pid):
    """(RSS, anonymous RSS) summed over root_pid and its descendants. Anonymous RSS is the
    heap and buffers; the rest is file-backed (shared libraries such as libtorch)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    total, anon, todo = 0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total, anon


def measure(cmd, env=None):
    """Runs cmd; returns (wall seconds, (peak RSS, peak anonymous RSS) of its process tree,
    stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0, 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss, anon = tree_rss_bytes(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out}\n{err}")
    return wall, tuple(peak), out


def replicate(source, target, megabytes, new_words):
    """Copies of the source JSONL until `megabytes`; ids made unique per copy.

    With `new_words`, copy k > 0 also renames the sample's rarest word types (whitespace
    words; hapaxes first) to made-up words of the same length and character classes, as many
    as Heaps' law fitted on the sample itself (V = K n^beta) says a corpus k + 1 times the
    sample's size has beyond one k times it. Without it every copy repeats the sample's words
    exactly, which flatters any cache keyed on words or segments.
    """
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    rare, types, beta = rare_types(docs) if new_words else ([], 0, 0.0)
    limit, written, copy = megabytes * 1_000_000, 0, 0
    seen = set()
    with open(target, "w", encoding="utf-8") as f:
        while written < limit:
            renamed = {}
            if new_words and copy > 0:
                count = round(types * ((copy + 1) ** beta - copy ** beta))
                renamed = {w: made_up(w, copy) for w in rare[:count]}
            for obj in docs:
                obj = dict(obj)
                obj["pmid"] = f"{obj['pmid']}-{copy}"
                for field in ("title", "abstract"):
                    if renamed and obj.get(field):
                        obj[field] = WORD.sub(lambda m: renamed.get(m.group(0), m.group(0)), obj[field])
                text = json.dumps(obj) + "\n"
                if new_words:
                    seen.update(WORD.findall(obj.get("title", "") + " " + obj.get("abstract", "")))
                f.write(text)
                written += len(text.encode("utf-8"))
                if written >= limit:
                    break
            copy += 1
    return written, len(seen) if new_words else None


WORD = re.compile(r"\S+")


def rare_types(docs):
    """The sample's word types, rarest first; their number; Heaps' beta from 10% to 100%."""
    words = [w for d in docs for w in WORD.findall(d.get("title", "") + " " + d.get("abstract", ""))]
    counts = collections.Counter(words)
    tenth = len(set(words[: len(words) // 10]))
    beta = math.log(len(counts) / tenth) / math.log(10)
    return sorted(counts, key=lambda w: (counts[w], w)), len(counts), beta


# Affine maps x -> a x + b of the 26 letters, one per copy (a coprime with 26): 311 copies
# without repeating a made-up word.
AFFINE = [(a, b) for a in (1, 3, 5, 7, 9, 11, 15, 17, 19, 21, 23, 25) for b in range(26) if (a, b) != (1, 0)]


def made_up(word, copy):
    a, b = AFFINE[(copy - 1) % len(AFFINE)]

    def letter(c):
        if "a" <= c <= "z":
            return chr(ord("a") + (a * (ord(c) - ord("a")) + b) % 26)
        if "A" <= c <= "Z":
            return chr(ord("A") + (a * (ord(c) - ord("A")) + b) % 26)
        if "0" <= c <= "9":
            return chr(ord("0") + (ord(c) - ord("0") + copy) % 10)
        return c

    return "".join(letter(c) for c in word)


def run_ours(binary, data, tokenizer, work, threads):
    config = work / "prepare.toml"
    out = work / "prepared"
    config.write_text(
        "[corpus]\n"
        f"inputs = [{json.dumps(str(data))}]\n"
        'text_fields = ["title", "abstract"]\n'
        'id_field = "pmid"\n'
        f"tokenizer = {json.dumps(str(tokenizer))}\n"
        f"output = {json.dumps(str(out))}\n"
        "max_seq_len = 128\n"
        'packing = "concat"\n'
        # A held-out split is required (an empty one is a config error); both splits are
        # tokenized, so the token counts below add them up.
        "validation_fraction = 0.05\n"
    )
    env = dict(os.environ, MLM_TRAIN_THREADS=str(threads))
    wall, peak, _ = measure([binary, "prepare", "--config", str(config)], env)
    manifest = json.loads((out / "manifest.json").read_text())
    splits = [manifest["train"], manifest["validation"]]
    shutil.rmtree(out)
    return {"wall_s": wall, "pipeline_s": wall, "peak_rss": peak[0], "peak_anon_rss": peak[1],
            "document_tokens": sum(s["document_tokens"] for s in splits),
            "sequences": sum(s["sequences"] for s in splits)}


def run_hf(data, tokenizer, work, num_proc):
    cache = work / "hf-cache"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    wall, peak, out = measure(
        [sys.executable, __file__, "hf", "--data", str(data), "--tokenizer", str(tokenizer),
         "--cache", str(cache), "--num-proc", str(num_proc)],
        env,
    )
    result = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(cache, ignore_errors=True)
    return {"wall_s": wall, "peak_rss": peak[0], "peak_anon_rss": peak[1], **result}


def hf_child(args):
    """transformers run_mlm.py's data path: load_dataset json, tokenize_function with
    map(batched=True, num_proc), group_texts with map(batched=True, num_proc)."""
    t0 = time.perf_counter()
    from itertools import chain

    from datasets import load_dataset
    from transformers import AutoTokenizer

    t_import = time.perf_counter() - t0
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    raw = load_dataset("json", data_files=args.data, split="train", cache_dir=args.cache)
    max_seq_length = 128

    def tokenize_function(examples):
        # The text mlm-train prepares: title and abstract joined with a space.
        texts = [t + " " + a if a.strip() else t for t, a in zip(examples["title"], examples["abstract"])]
        return tokenizer(texts, return_special_tokens_mask=True)

    tokenized = raw.map(tokenize_function, batched=True, num_proc=args.num_proc, remove_columns=raw.column_names)

    def group_texts(examples):  # run_mlm.py
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // max_seq_length) * max_seq_length
        return {
            k: [t[i : i + max_seq_length] for i in range(0, total_length, max_seq_length)]
            for k, t in concatenated.items()
        }

    grouped = tokenized.map(group_texts, batched=True, num_proc=args.num_proc)
    pipeline = time.perf_counter() - start
    # Counted after the timed part: document tokens = all tokens - [CLS]/[SEP] per document.
    total = sum(len(ids) for ids in tokenized["input_ids"])
    print(json.dumps({
        "pipeline_s": pipeline,
        "import_s": t_import,
        "document_tokens": total - 2 * tokenized.num_rows,
        "sequences": grouped.num_rows,
    }))


# --family: tokenizers trained on the PubMed CDR sample (train.jsonl), built once and cached
# under --tokenizers-dir. `vocab train` makes the byte-level BPEs (our trainer, the layouts
# `prepare` users get); tests/python/tokenizer_families.py the Unigram (tokenizers'
# UnigramTrainer shaped as transformers' XLMRobertaTokenizer: WhitespaceSplit + Metaspace).
FAMILIES = {
    # roberta-base's 50,265 entries; specials first, <mask> last.
    "roberta-50k": {"layout": "roberta", "vocab_size": 50265},
    # ModernBERT-base's 50,280 BPE entries, then its five specials.
    "modernbert-50k": {"layout": "modernbert", "vocab_size": 50285},
    # xlm-roberta-base has 250,002 entries; the trainer stops at what its seed holds on this
    # sample (about 30.7k), which is what the tokenizer then has.
    "xlmr-unigram": {"unigram": 250002},
    # xlm-roberta-base's scale: the same trainer on an 80 MB replica of the sample with new
    # words (`replicate`, the construction of the benchmark corpus, of which it is the first
    # 80 MB), which holds enough pieces for all 250,002 entries.
    "xlmr-unigram-250k": {"unigram": 250002, "train_mb": 80},
}


def family_tokenizer(binary, family, source, cache):
    """The tokenizer directory of `family`, trained on the sample `source` belongs to unless
    already in `cache`."""
    spec = FAMILIES[family]
    out = Path(cache).resolve() / family
    # The whole PubMed CDR sample: train.jsonl and valid.jsonl.
    sources = [source, source.parent / "valid.jsonl"]
    if (out / "tokenizer.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"training {family} into {out}", flush=True)
    if "train_mb" in spec:
        replica = out.parent / f"{family}-train.jsonl"
        replicate(source, replica, spec["train_mb"], True)
        sources = [replica]
    if "unigram" in spec:
        script = Path(__file__).resolve().parents[1] / "tests/python/tokenizer_families.py"
        env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
        subprocess.run([sys.executable, str(script), "make", "xlmr", str(out), "--train", *map(str, sources),
                        "--vocab-size", str(spec["unigram"])], check=True, env=env)
        if "train_mb" in spec:
            sources[0].unlink()
        return out
    config = out.parent / f"{family}.toml"
    config.write_text(
        "[vocab]\n"
        'model = "bpe"\n'
        f'layout = "{spec["layout"]}"\n'
        f"vocab_size = {spec['vocab_size']}\n"
        # min_frequency 2 stops near 29k entries on this sample; 1 goes as far as the text allows.
        "min_frequency = 1\n"
        f"output = {json.dumps(str(out))}\n"
        "[corpus]\n"
        f"inputs = {json.dumps([str(f) for f in sources])}\n"
        'text_fields = ["title", "abstract"]\n'
        'id_field = "pmid"\n'
        "validation_fraction = 0.01\n"
        f"tokenizer = {json.dumps(str(out))}\n"
        f"output = {json.dumps(str(out.parent / 'unused-prepared'))}\n"
    )
    subprocess.run([binary, "vocab", "train", "--config", str(config)], check=True)
    return out


def human(n):
    return f"{n / 2**20:.0f} MiB"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "hf":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("--data")
        p.add_argument("--tokenizer")
        p.add_argument("--cache")
        p.add_argument("--num-proc", type=int, default=2)
        hf_child(p.parse_args())
        return
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    p.add_argument("--sizes-mb", default="25,100")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer file or directory for both sides (default: ../shared's bert-base-uncased)")
    p.add_argument("--no-hf", action="store_true", help="measure mlm-train prepare only")
    p.add_argument("--words", choices=["new", "repeated"], default="new",
                   help="new: each copy of the sample brings new rare words at the rate Heaps' law "
                        "fitted on the sample predicts (default); repeated: exact copies")
    p.add_argument("--family", choices=sorted(FAMILIES),
                   help="a tokenizer trained on the PubMed sample (cached in --tokenizers-dir), in place of --tokenizer")
    p.add_argument("--tokenizers-dir", default=str(Path(__file__).resolve().parents[1] / "runs/bench-tokenizers"),
                   help="where --family tokenizers are trained once and kept")
    args = p.parse_args()
    shared = Path(args.shared)
    source = shared / "data/pubmed-cdr/train.jsonl"
    tokenizer = Path(args.tokenizer).resolve() if args.tokenizer else shared / "tokenizers/bert-base-uncased"
    if args.family:
        tokenizer = family_tokenizer(args.binary, args.family, source, args.tokenizers_dir)
    print(f"tokenizer: {tokenizer}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    # The binary links libtorch (and CUDA's libraries): its start-up alone has a sizeable
    # RSS, whatever the corpus. Measured so the pipeline's own share can be told apart.
    _, start_rss, _ = measure([args.binary, "--version"])
    rows = []
    try:
        for mb in [int(s) for s in args.sizes_mb.split(",")]:
            data = work / f"pubmed-{mb}mb.jsonl"
            size, word_types = replicate(source, data, mb, args.words == "new")
            if word_types is not None:
                print(f"{mb} MB: {word_types:,} distinct whitespace words", flush=True)
            ours = run_ours(args.binary, data, tokenizer, work, args.threads)
            hf = None if args.no_hf else run_hf(data, tokenizer, work, args.threads)
            rows.append((mb, size, ours, hf))
            ours["word_types"] = word_types
            data.unlink()
            print(json.dumps({"size_mb": mb, "bytes": size, "ours": ours, "hf": hf}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"`mlm-train --version` alone: peak RSS {human(start_rss[0])} ({human(start_rss[1])} anonymous)")
    print()
    print("| corpus | tool | document tokens | time (s) | tokens/s | ratio | peak RSS (anonymous) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mb, size, ours, hf in rows:
        o_rate = ours["document_tokens"] / ours["pipeline_s"]
        if hf is None:
            print(f"| {size / 1e6:.0f} MB | mlm-train prepare | {ours['document_tokens']:,} | {ours['pipeline_s']:.1f} | "
                  f"{o_rate:,.0f} | - | {human(ours['peak_rss'])} ({human(ours['peak_anon_rss'])}) |")
            continue
        h_rate = hf["document_tokens"] / hf["pipeline_s"]
        h_rate_wall = hf["document_tokens"] / hf["wall_s"]
        print(f"| {size / 1e6:.0f} MB | mlm-train prepare | {ours['document_tokens']:,} | {ours['pipeline_s']:.1f} | "
              f"{o_rate:,.0f} | {o_rate / h_rate:.2f}x | {human(ours['peak_rss'])} ({human(ours['peak_anon_rss'])}) |")
        print(f"| {size / 1e6:.0f} MB | datasets map + group_texts | {hf['document_tokens']:,} | "
              f"{hf['pipeline_s']:.1f} (process {hf['wall_s']:.1f}) | {h_rate:,.0f} ({h_rate_wall:,.0f} with start-up) | 1 | "
              f"{human(hf['peak_rss'])} ({human(hf['peak_anon_rss'])}) |")


if __name__ == "__main__":
    main()
