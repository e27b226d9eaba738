"""Broken model directories and corpus files for the bad-input catalogue
(tests/e2e/catalogue/), written the way real files are written: transformers'
save_pretrained, safetensors, torch.save(model.state_dict()), pyarrow.

  make OUT   OUT/<case>/ for each case below, each a copy of `good` with one thing wrong:
    good            a tiny random BertForMaskedLM (hidden 32, 1 layer, a 24-token WordPiece
                    tokenizer.json), as save_pretrained writes it (config.json,
                    model.safetensors)
    bin_zip         weights as pytorch_model.bin, torch.save(model.state_dict()), zip format
    no_config       config.json removed
    bad_config_json config.json cut in the middle
    unknown_type    config.json with model_type "gpt2"
    wrong_family    config.json saying "roberta" over BERT weights
    no_weights      no weights file at all
    misshaped       word embeddings of 23 rows where config.json says 24
    int_dtype       a LayerNorm weight stored as int64
    extra_tensor    one more tensor, of no BERT parameter
    missing_tensor  the encoder's last attention output dense weight left out
    small_vocab     config.json and weights for 20 tokens under the 24-token tokenizer
    truncated_st    model.safetensors cut at half its size
    header_st       model.safetensors whose JSON header is garbage
    truncated_zip   pytorch_model.bin (zip) cut at half its size
    truncated_legacy pytorch_model.bin (legacy format, PyTorch < 1.6) cut at half its size
    whole_module    torch.save(model): a pickled module, not a state dict
    nested_dict     torch.save({"model": state_dict, "step": 3}) (a training checkpoint)
    no_tokenizer    tokenizer.json removed
    no_mask_token   a tokenizer.json without [MASK]
  and OUT/corpus/: missing_column.parquet (no `abstract` column), truncated.parquet (a valid
  file cut at half), int_text.parquet, binary_text.parquet and list_text.parquet (`abstract`
  of int64, binary and list<string>), snappy.parquet (a good file in pyarrow's default
  compression), large_dictionary.parquet (the good text, `title` a large_string and
  `abstract` dictionary-encoded, as pandas categoricals are written) and string_view.parquet
  (both string_view).

Usage: .venv/bin/python tests/python/bad_inputs.py make OUT
"""

import io
import json
import pathlib
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["aspirin", "inhibits", "platelet", "aggregation", "in", "patients", "the", "of",
         "and", "a", "##s", "dose", "low", "renal", "failure", "."]
VOCAB = SPECIAL + WORDS + ["[unused0]", "[unused1]", "[unused2]"]
assert len(VOCAB) == 24


def tokenizer(vocab):
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.add_special_tokens([t for t in SPECIAL if t in vocab])
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return wordpiece.to_str()


def model(vocab_size=24):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return BertForMaskedLM(config)


def weights(m):
    """The state dict save_pretrained writes: tied copies left out, each tensor its own."""
    state = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    state.pop("cls.predictions.decoder.weight")
    state.pop("cls.predictions.decoder.bias", None)
    return state


def write_dir(out, name, m, state=None, vocab=VOCAB):
    folder = out / name
    folder.mkdir(parents=True)
    m.config.to_json_file(folder / "config.json")
    (folder / "tokenizer.json").write_text(tokenizer(vocab))
    if state is not None:
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def model_cases(out):
    m = model()
    state = weights(m)
    write_dir(out, "good", m, state)
    bin_zip = write_dir(out, "bin_zip", m)
    torch.save(m.state_dict(), bin_zip / "pytorch_model.bin")
    (write_dir(out, "no_config", m, state) / "config.json").unlink()
    cut(write_dir(out, "bad_config_json", m, state) / "config.json")
    edit_config(write_dir(out, "unknown_type", m, state), model_type="gpt2")
    edit_config(write_dir(out, "wrong_family", m, state), model_type="roberta")
    write_dir(out, "no_weights", m)
    misshaped = dict(state)
    misshaped["bert.embeddings.word_embeddings.weight"] = state[
        "bert.embeddings.word_embeddings.weight"][:23].clone()
    write_dir(out, "misshaped", m, misshaped)
    ints = dict(state)
    ints["bert.embeddings.LayerNorm.weight"] = torch.ones(32, dtype=torch.int64)
    write_dir(out, "int_dtype", m, ints)
    write_dir(out, "extra_tensor", m, dict(state, **{"bert.adapter.weight": torch.zeros(4, 4)}))
    missing = dict(state)
    missing.pop("bert.encoder.layer.0.attention.output.dense.weight")
    write_dir(out, "missing_tensor", m, missing)
    small = model(vocab_size=20)
    write_dir(out, "small_vocab", small, weights(small))
    cut(write_dir(out, "truncated_st", m, state) / "model.safetensors")
    header = write_dir(out, "header_st", m, state) / "model.safetensors"
    data = bytearray(header.read_bytes())
    data[8:24] = b"{not json at all"
    header.write_bytes(bytes(data))
    for name, zipped in [("truncated_zip", True), ("truncated_legacy", False)]:
        path = write_dir(out, name, m) / "pytorch_model.bin"
        torch.save(m.state_dict(), path, _use_new_zipfile_serialization=zipped)
        cut(path)
    torch.save(m, write_dir(out, "whole_module", m) / "pytorch_model.bin")
    nested = write_dir(out, "nested_dict", m) / "pytorch_model.bin"
    torch.save({"model": m.state_dict(), "step": 3}, nested)
    (write_dir(out, "no_tokenizer", m, state) / "tokenizer.json").unlink()
    no_mask = [t if t != "[MASK]" else "[unused3]" for t in VOCAB]
    write_dir(out, "no_mask_token", m, state, vocab=no_mask)


def corpus_cases(out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = out / "corpus"
    folder.mkdir(parents=True)
    rows = {"pmid": [1, 2, 3], "title": ["Aspirin.", "Renal failure.", "Dose."]}
    pq.write_table(pa.table(rows), folder / "missing_column.parquet")
    good = pa.table(dict(rows, abstract=["Aspirin inhibits platelet aggregation. " * 40] * 3))
    pq.write_table(good, folder / "truncated.parquet")
    cut(folder / "truncated.parquet")
    # Text columns of other types than strings: refused, naming the column and its type.
    wrong_types = {
        "int_text": pa.array([1, 2, 3]),
        "binary_text": pa.array([b"Aspirin.", b"Renal.", b"Dose."]),
        "list_text": pa.array([["Aspirin.", "Renal."], ["Dose."], []]),
    }
    for name, abstract in wrong_types.items():
        pq.write_table(pa.table(dict(rows, abstract=abstract)), folder / f"{name}.parquet")
    # pyarrow's default compression (Snappy): a good file, to be read.
    pq.write_table(good, folder / "snappy.parquet")
    # The good text in the other string layouts: read as text.
    title, abstract = good["title"].combine_chunks(), good["abstract"].combine_chunks()
    layouts = {
        "large_dictionary": (title.cast(pa.large_string()), abstract.dictionary_encode()),
        "string_view": (title.cast(pa.string_view()), abstract.cast(pa.string_view())),
    }
    for name, (title, abstract) in layouts.items():
        table = pa.table({"pmid": rows["pmid"], "title": title, "abstract": abstract})
        pq.write_table(table, folder / f"{name}.parquet")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "make":
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[2])
    shutil.rmtree(out, ignore_errors=True)
    model_cases(out)
    corpus_cases(out)
