"""Writes the small valid inputs the fuzz targets start from into fuzz/regressions/<target>/
(seed-*): generated here, never copied from real data. Run by scripts/fuzz when a target's
folder has no seed yet; the files are committed, so the regression test sees them too.

Usage: .venv/bin/python fuzz/make_seeds.py [REGRESSIONS_DIR]
"""

import io
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "regressions"

ABSTRACTS = [
    (101, "Aspirin and platelets.", "Aspirin inhibits platelet aggregation in 12 patients."),
    (102, "Lithium toxicity.", "Lithium induced nephrogenic diabetes insipidus.\nTwo cases."),
    (103, "", "An abstract without a title, with unicode: Straße, 東京."),
]

# Matches TINY_CONFIG of crates/fuzz-entries/src/model.rs.
TINY = dict(
    vocab_size=16,
    hidden_size=4,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=8,
    max_position_embeddings=8,
    type_vocab_size=2,
)


def write(target, name, data):
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / f"seed-{name}").write_bytes(data)


def config_seeds():
    write("config", "minimal.toml", "[training]\nmax_steps = 10\nbatch_size = 4\n")
    write(
        "config",
        "full.toml",
        """#set training.max_steps=5
#set model.dropout=0.2
[runtime]
device = "cpu"
cpu_threads = 2

[vocab]
output = "vocab"
vocab_size = 2000

[corpus]
inputs = ["data/*.jsonl"]
format = "jsonl"
text_fields = ["title", "abstract"]
id_field = "pmid"
tokenizer = "vocab/tokenizer.json"
output = "prepared"
max_seq_len = 128
validation_fraction = 0.05

[model]
hidden_size = 128
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 512

[masking]
mlm_probability = 0.15
whole_word_mask = true

[training]
output_dir = "runs/x"
batch_size = 8
learning_rate = 5e-4
warmup_ratio = 0.1

[eval]
eval_steps = 50

[checkpoint]
save_steps = 100
keep_last = 2
""",
    )


def corpus_seeds():
    lines = [json.dumps({"pmid": p, "title": t, "abstract": a}) for p, t, a in ABSTRACTS]
    write("jsonl", "pubmed.jsonl", "\n".join(lines) + "\n")
    write("jsonl", "odd.jsonl", '{"pmid": "x1", "abstract": 5}\n\n{"title": null}\r\n[1,2]\n')
    write("text", "lines.txt", "\n".join(a for _, _, a in ABSTRACTS) + "\n")
    write("text", "paragraphs.txt", "\x01first line\nsecond line\n\n\n third\r\n\r\nlast")
    articles = "".join(
        f"""<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">
<PMID Version="{v}">{p}</PMID><Article><ArticleTitle>{t}</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND">{a.replace(chr(10), ' ')}</AbstractText>
<AbstractText>More &amp; more <i>italic</i>.</AbstractText></Abstract></Article>
</MedlineCitation></PubmedArticle>
"""
        for v, (p, t, a) in enumerate(ABSTRACTS, start=1)
    )
    write(
        "medline",
        "baseline.xml",
        '<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n'
        + articles
        + "<DeleteCitation><PMID Version=\"1\">102</PMID></DeleteCitation>\n"
        + "</PubmedArticleSet>\n",
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "pmid": [p for p, _, _ in ABSTRACTS],
            "title": [t for _, t, _ in ABSTRACTS],
            "abstract": [a for _, _, a in ABSTRACTS],
        }
    )
    for name, options in [("plain", {}), ("zstd", {"compression": "zstd"})]:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=2, **options)
        write("parquet", f"{name}.parquet", buffer.getvalue())


def shard_seeds():
    """Prepared shards as `prepare` writes them (crates/corpus/src/shard.rs: `input_ids`
    list<uint16> or list<uint32>, `word_start` list<bool>, non-null items named `item`, zstd,
    small row groups), and two of another column type, which the reader refuses."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [[2, 40, 41, 3], [2, 7, 3], [2, 9, 10, 11, 3]]
    starts = [[True, True, False, True], [True, True, True], [True, True, False, False, True]]

    def lists(rows, item):
        return pa.array(rows, pa.list_(pa.field("item", item, nullable=False)))

    def shard(name, input_ids, word_start):
        schema = pa.schema(
            [
                pa.field("input_ids", input_ids.type, nullable=False),
                pa.field("word_start", word_start.type, nullable=False),
            ]
        )
        table = pa.Table.from_arrays([input_ids, word_start], schema=schema)
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression="zstd",
            row_group_size=2,
            use_dictionary=False,
            use_compliant_nested_type=False,  # list items named `item`, as arrow-rs names them
        )
        write("shard", f"{name}.parquet", buffer.getvalue())

    shard("uint16", lists(ids, pa.uint16()), lists(starts, pa.bool_()))
    shard("uint32", lists(ids, pa.uint32()), lists(starts, pa.bool_()))
    as_ints = [[int(s) for s in row] for row in starts]
    shard("word-start-int32", lists(ids, pa.uint16()), lists(as_ints, pa.int32()))
    as_text = [[str(i) for i in row] for row in ids]
    shard("input-ids-string", lists(as_text, pa.string()), lists(starts, pa.bool_()))


def tokenizer_seeds():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "aspirin", "in", "##hibit", "##s"]
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    write("tokenizer", "wordpiece.json", wordpiece.to_str())
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "s", "p", "i", "r", "n", "as", "Ġ"]
    bpe = Tokenizer(models.BPE({t: i for i, t in enumerate(pieces)}, [("a", "s")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    write("tokenizer", "bpe.json", bpe.to_str())


def model_seeds():
    import torch
    from safetensors.torch import save
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY))
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    del state["cls.predictions.decoder.weight"]  # tied to the word embeddings
    del state["cls.predictions.decoder.bias"]  # tied to cls.predictions.bias
    write("safetensors", "tiny-bert.safetensors", save(state))
    half = {k: v.half() for k, v in list(state.items())[:4]}
    write("safetensors", "half-partial.safetensors", save(half))
    for name, zipped in [("zip", True), ("legacy", False)]:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer, _use_new_zipfile_serialization=zipped)
        write("torch_pickle", f"tiny-bert-{name}.bin", buffer.getvalue())


def trainer_state_seeds():
    state = {
        "global_step": 40,
        "epoch": 1,
        "epoch_position": 12,
        "tokens_seen": 163840,
        "config_hash": "3f2a",
        "best_metric": 4.25,
        "best_checkpoint": "checkpoint-40",
        "last_eval": {"loss": 4.25, "perplexity": 70.1, "accuracy": 0.2},
        "schedule": {"kind": "linear", "peak_lr": 0.0005, "warmup_steps": 4, "total_steps": 100},
    }
    write("trainer_state", "state.json", json.dumps(state, indent=2))


if __name__ == "__main__":
    config_seeds()
    corpus_seeds()
    shard_seeds()
    tokenizer_seeds()
    model_seeds()
    trainer_state_seeds()
