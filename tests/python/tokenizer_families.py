"""Reference tokenizers of the RoBERTa / XLM-R / CamemBERT / ModernBERT families, for the
parity tests of crates/corpus/tests/families.rs and vocab_extend.rs: it builds small
tokenizers with Hugging Face `tokenizers` and `transformers` (trained here, nothing
downloaded), and encodes texts with them.

Subcommands:

  make KIND DIR [--train FILE.jsonl ...] [--vocab-size N]
      Trains a tokenizer of KIND on the project's fixture abstracts plus a few multilingual
      sentences (or on the `title` + `abstract` of the given JSONL files) and saves it in DIR:
      - roberta-files: `ByteLevelBPETokenizer` with roberta-base's layout (`<s>` 0, `<pad>` 1,
        `</s>` 2, `<unk>` 3, `<mask>` last), saved as the slow files of roberta-base:
        vocab.json + merges.txt, and the tokenizer_config.json / special_tokens_map.json
        transformers 4 writes for it (`<mask>` with lstrip), no tokenizer.json.
      - roberta-json: the same loaded by transformers' `RobertaTokenizer` and saved with
        `save_pretrained` (tokenizer.json + tokenizer_config.json, as a hub RoBERTa dir).
      - roberta-prefix: as roberta-json with `add_prefix_space=True`.
      - xlmr: a `UnigramTrainer` Unigram with XLM-R's layout (`<s>` 0, `<pad>` 1, `</s>` 2,
        `<unk>` 3, `<mask>` last with lstrip) and the pipeline transformers'
        `XLMRobertaTokenizer` builds (WhitespaceSplit + Metaspace, no normaliser), saved
        through `XLMRobertaTokenizer.save_pretrained`.
      - xlmr-ulp-tie: a five-piece XLM-R layout Unigram (no training) where "6111" ties
        within one ulp of the scores: `tokenizers` and transformers 5 segment it differently
        (see `encode`).
      - spm-unigram: `SentencePieceUnigramTokenizer` (Nmt + NFKC + collapsed spaces,
        Metaspace) with the same specials, tokenizer.json only (loaded as
        `PreTrainedTokenizerFast`).
      - modernbert: answerdotai/ModernBERT-base's layout at small scale: a byte-level BPE
        (OLMo's set-up: no normaliser, ByteLevel without prefix space, regex split, no unk)
        with `|||IP_ADDRESS|||` (id 0, not special) and `<|padding|>` (id 1) first,
        `<|endoftext|>` after the merges, then `[UNK]`, `[CLS]`, `[SEP]`, `[PAD]`, `[MASK]`
        (lstrip) as special added tokens, `[unusedN]` fillers up to a multiple of 64 and
        TemplateProcessing `[CLS] $A [SEP]` (`[CLS] $A [SEP] $B [SEP]`). tokenizer.json is
        `PreTrainedTokenizerFast.save_pretrained`'s; tokenizer_config.json and
        special_tokens_map.json are the hub's (transformers 4: `PreTrainedTokenizerFast`,
        `added_tokens_decoder`, model_max_length 8192). `--vocab-size` counts the BPE
        entries; the specials and fillers come on top. Checked on the way out with
        `AutoTokenizer`: framing, the special ids, `[MASK]`'s lstrip, `len` % 64.
      - modernbert-nfc: the same with GPT-NeoX's NFC normaliser, as some ModernBERT files have.

  encode DIR TEXTS.json
      Prints one JSON object: `AutoTokenizer.from_pretrained(DIR)`'s class, `len()`, special
      ids (the named ones, `all_special_ids`, and the ids of every added token flagged
      special), `model_input_names`, `("a b")` and `("a", "b")` with special tokens, and for
      every text of TEXTS.json (a JSON list of strings) the ids with
      `add_special_tokens=False` and the word starts from `word_ids()` (a token starts a word
      when it is the first, has no word id, or its word id differs from the previous
      token's). When DIR has a tokenizer.json, the rows are the raw `tokenizers` library's
      (`Tokenizer.from_file`, the reference of the fast paths) and transformers must give the
      same ids and word ids (else exit status 1), with one allowance: a Unigram text where
      the two differ only because transformers 5 reads the scores with Python's float parser
      and `tokenizers` with serde_json's (1 ulp apart on some 17-digit scores, which flips an
      exact tie between two segmentations). Such a text must encode as transformers does once
      the raw tokenizer is given Python's scores; it is counted in "score_parse_ties".

  jsonl FILE.jsonl ... --out TEXTS.json
      Writes the documents of the JSONL files (`title` + " " + `abstract`) as TEXTS.json.
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "crates/corpus/tests/fixtures/abstracts.jsonl"

# Sentences in a few scripts so that the small vocabularies have pieces beyond ASCII.
EXTRA = [
    "Café naïve façade résumé Über straße garçon déjà vu.",
    "東京都の病院で臨床試験が行われた。北京和上海的医院。",
    "Внутривенное введение препарата вызвало гипотензию.",
    "مرضى السكري في المستشفى",
    "Emoji 😀 and symbols ☺ ✓ — µg/kg, 10 °C, ± 5%, α-β blockers.",
    "don't can't I'm we'll they've she'd it's",
] * 5


def documents(files):
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    texts.append(f"{obj['title']} {obj['abstract']}")
    return texts


def make_roberta_files(out, texts, vocab_size):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size - 1, min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False,
    )
    bpe.save_model(str(out))
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == vocab_size - 1, "the training text is too small for the vocabulary"
    vocab["<mask>"] = len(vocab)  # roberta-base: <mask> is the last id of vocab.json
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")


MASK_LSTRIP = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False,
               "single_word": False, "special": True}


def make_roberta_slow_dir(out, texts, vocab_size):
    """roberta-base's slow files as transformers 4.34+ saves them (tokenizer.json left out)."""
    make_roberta_files(out, texts, vocab_size)
    mask_id = vocab_size - 1
    names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
             "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    config = dict(names, tokenizer_class="RobertaTokenizer", add_prefix_space=False,
                  errors="replace", trim_offsets=True, model_max_length=512,
                  added_tokens_decoder={str(mask_id): MASK_LSTRIP})
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    names["mask_token"] = MASK_LSTRIP
    (out / "special_tokens_map.json").write_text(json.dumps(names), encoding="utf-8")


def make_roberta_json(out, texts, vocab_size, add_prefix_space):
    from transformers import RobertaTokenizer

    files = out / "slow"
    files.mkdir(parents=True, exist_ok=True)
    make_roberta_files(files, texts, vocab_size)
    tok = RobertaTokenizer(
        vocab=str(files / "vocab.json"), merges=str(files / "merges.txt"),
        add_prefix_space=add_prefix_space,
    )
    tok.save_pretrained(str(out))
    for name in ("vocab.json", "merges.txt"):
        (files / name).unlink()
    files.rmdir()


def xlmr_specials():
    return ["<s>", "<pad>", "</s>", "<unk>"]


def make_xlmr(out, texts, vocab_size):
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import Unigram
    from transformers import XLMRobertaTokenizer

    tk = Tokenizer(Unigram())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"),
    ])
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1, special_tokens=xlmr_specials(), unk_token="<unk>",
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    model = json.loads(tk.to_str())["model"]
    # <mask> last, in the model vocabulary too (xlm-roberta-base: id 250001).
    vocab = [tuple(v) for v in model["vocab"]] + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=vocab)
    tok.save_pretrained(str(out))


# Scores whose shortest decimal forms serde_json reads 1 ulp off (Python reads them exactly),
# chosen so that "6111" = "▁6" + "1" + "11" = "▁6" + "11" + "1" ties within that ulp.
ULP_TIE_VOCAB = [("\u25816", -7.13771663187637), ("1", -11.524673882682695),
                 ("11", -7.777948078012031), ("\u2581", -20.0), ("6", -20.0)]


def make_xlmr_ulp_tie(out):
    """An XLM-R layout Unigram of ULP_TIE_VOCAB, saved as make_xlmr saves (exact scores)."""
    from transformers import XLMRobertaTokenizer

    vocab = [(t, 0.0) for t in xlmr_specials()] + ULP_TIE_VOCAB + [("<mask>", 0.0)]
    XLMRobertaTokenizer(vocab=vocab).save_pretrained(str(out))


def make_spm_unigram(out, texts, vocab_size):
    from tokenizers import AddedToken, SentencePieceUnigramTokenizer, processors

    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(
        texts, vocab_size=vocab_size - 1, special_tokens=xlmr_specials(), unk_token="<unk>",
        show_progress=False,
    )
    tk = spm._tokenizer
    tk.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tk.save(str(out / "tokenizer.json"))


MODERNBERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]


def added_token_entry(token):
    return {"content": token.content, "lstrip": token.lstrip, "normalized": token.normalized,
            "rstrip": token.rstrip, "single_word": token.single_word, "special": token.special}


def make_modernbert(out, texts, vocab_size, nfc=False):
    """ModernBERT-base's tokenizer files (see the module docstring); `vocab_size` BPE entries."""
    from tokenizers import (
        AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers,
    )
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(BPE())
    if nfc:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, trim_offsets=True, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1,
        special_tokens=["|||IP_ADDRESS|||", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    assert tk.get_vocab_size() == vocab_size, "the training text is too small for the vocabulary"
    # GPT-NeoX / OLMo: |||IP_ADDRESS||| is an ordinary (normalised, not special) added token.
    raw = json.loads(tk.to_str())
    raw["added_tokens"][0].update(special=False, normalized=True)
    tk = Tokenizer.from_str(json.dumps(raw))
    tk.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    tk.add_special_tokens([
        AddedToken(t, special=True, normalized=False, lstrip=t == "[MASK]")
        for t in MODERNBERT_SPECIALS
    ])
    # Fillers so that the embedding has a multiple of 64 rows (ModernBERT: 50,368).
    tk.add_tokens([f"[unused{i}]" for i in range(-tk.get_vocab_size() % 64)])
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    names = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
             "sep_token": "[SEP]", "unk_token": "[UNK]"}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, model_max_length=8192, clean_up_tokenization_spaces=True,
        model_input_names=["input_ids", "attention_mask"], **names,
    )
    fast.save_pretrained(str(out))
    added = sorted(tk.get_added_tokens_decoder().items())
    decoder = {str(i): added_token_entry(t) for i, t in added}
    config = dict(names, added_tokens_decoder=decoder, clean_up_tokenization_spaces=True,
                  model_input_names=["input_ids", "attention_mask"], model_max_length=8192,
                  tokenizer_class="PreTrainedTokenizerFast")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    names["mask_token"] = dict(MASK_LSTRIP, content="[MASK]")
    (out / "special_tokens_map.json").write_text(json.dumps(names, indent=2), encoding="utf-8")
    check_modernbert(out)


def check_modernbert(out):
    """What the real ModernBERT-base gives, at this scale: `[CLS] ... [SEP]`, the five specials
    last but the fillers, a space before `[MASK]` belonging to it, `len` a multiple of 64."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    ids = [tok.convert_tokens_to_ids(t) for t in MODERNBERT_SPECIALS]
    first = ids[0]
    assert ids == list(range(first, first + 5)), ids
    assert (tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id,
            tok.mask_token_id) == tuple(ids), ids
    last = tok.convert_ids_to_tokens(len(tok) - 1)
    assert len(tok) % 64 == 0 and (last.startswith("[unused") or last == "[MASK]"), last
    a = tok("a", add_special_tokens=False)["input_ids"]
    assert tok("a")["input_ids"] == [tok.cls_token_id, *a, tok.sep_token_id]
    b = tok("b", add_special_tokens=False)["input_ids"]
    assert tok("a", "b")["input_ids"] == [tok.cls_token_id, *a, tok.sep_token_id, *b,
                                          tok.sep_token_id]
    hello = tok("hello", add_special_tokens=False)["input_ids"]
    masked = tok("hello [MASK]", add_special_tokens=False)["input_ids"]
    assert masked == [*hello, tok.mask_token_id], masked  # lstrip: " [MASK]" is one token
    assert tok("|||IP_ADDRESS|||", add_special_tokens=False)["input_ids"] == [0]


def make(args):
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = documents(args.train) if args.train else documents([FIXTURE]) + EXTRA
    kind = args.kind
    if kind == "roberta-files":
        make_roberta_slow_dir(out, texts, args.vocab_size)
    elif kind in ("roberta-json", "roberta-prefix"):
        make_roberta_json(out, texts, args.vocab_size, kind == "roberta-prefix")
    elif kind == "xlmr":
        make_xlmr(out, texts, args.vocab_size)
    elif kind == "xlmr-ulp-tie":
        make_xlmr_ulp_tie(out)
    elif kind == "spm-unigram":
        make_spm_unigram(out, texts, args.vocab_size)
    elif kind in ("modernbert", "modernbert-nfc"):
        make_modernbert(out, texts, args.vocab_size, nfc=kind == "modernbert-nfc")
    else:
        sys.exit(f"unknown kind {kind}")


def word_starts(word_ids):
    return [i == 0 or w is None or w != word_ids[i - 1] for i, w in enumerate(word_ids)]


def encode(args):
    from transformers import AutoTokenizer

    directory = Path(args.dir)
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(str(directory))
    batch = tok(texts, add_special_tokens=False)
    rows = [{"ids": batch["input_ids"][i], "starts": word_starts(batch.word_ids(i))}
            for i in range(len(texts))]
    failures, ties = [], 0
    raw_file = directory / "tokenizer.json"
    if raw_file.is_file():
        transformers_rows = rows
        rows = raw_rows(raw_tokenizer(raw_file), texts)
        exact_rows = None
        for i, (text, ours, theirs) in enumerate(zip(texts, rows, transformers_rows)):
            if ours == theirs:
                continue
            if exact_rows is None:
                exact_rows = raw_rows(raw_tokenizer(raw_file, python_scores=True), texts) or []
            if exact_rows and exact_rows[i] == theirs:
                ties += 1
                continue
            failures.append(f"tokenizers and transformers differ on {text!r}:\n"
                            f"  tokenizers   {tok.convert_ids_to_tokens(ours['ids'])}\n"
                            f"  transformers {tok.convert_ids_to_tokens(theirs['ids'])}")
    special = {k: getattr(tok, f"{k}_token_id") for k in ("cls", "sep", "pad", "mask", "unk")}
    print(json.dumps({
        "class": type(tok).__name__,
        "len": len(tok),
        "special": special,
        "all_special_ids": sorted(tok.all_special_ids),
        # Added tokens flagged special beyond the named ones (ModernBERT's <|endoftext|>):
        # transformers leaves them out of all_special_ids, our SpecialIds.all has them.
        "special_added": sorted(i for i, t in tok.added_tokens_decoder.items() if t.special),
        "model_input_names": tok.model_input_names,
        "with_special": tok("a b")["input_ids"],
        "pair": tok("a", "b")["input_ids"],
        "rows": rows,
        "score_parse_ties": ties,
    }))
    if ties:
        print(f"{ties} text(s) tie-broken differently by transformers (Unigram scores parsed "
              "by Python, not serde_json)", file=sys.stderr)
    if failures:
        print("\n".join(failures[:5]), file=sys.stderr)
        sys.exit(1)


def raw_tokenizer(raw_file, python_scores=False):
    """`tokenizers.Tokenizer.from_file`, untruncated and unpadded. With `python_scores`, a
    Unigram model gets its scores from Python's (correctly rounded) float parser, as
    transformers 5's XLMRobertaTokenizer builds it; None for other models."""
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram

    raw = Tokenizer.from_file(str(raw_file))
    raw.no_truncation()
    raw.no_padding()
    if python_scores:
        model = json.loads(raw_file.read_text(encoding="utf-8"))["model"]
        if model["type"] != "Unigram":
            return None
        raw.model = Unigram([tuple(v) for v in model["vocab"]], model.get("unk_id"),
                            model.get("byte_fallback", False))
    return raw


def raw_rows(raw, texts):
    if raw is None:
        return []
    return [{"ids": enc.ids, "starts": word_starts(enc.word_ids)}
            for enc in raw.encode_batch(texts, add_special_tokens=False)]


def jsonl(args):
    Path(args.out).write_text(json.dumps(documents(args.files)), encoding="utf-8")


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("kind")
    p.add_argument("dir")
    p.add_argument("--train", nargs="*", default=None)
    p.add_argument("--vocab-size", type=int, default=400)
    p = sub.add_parser("encode")
    p.add_argument("dir")
    p.add_argument("texts")
    p = sub.add_parser("jsonl")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    {"make": make, "encode": encode, "jsonl": jsonl}[args.command](args)


if __name__ == "__main__":
    main()
