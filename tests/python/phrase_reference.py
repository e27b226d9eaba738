"""Reference for masking phrases (issue 26): recomputes, from a prepared corpus's manifest,
tokenizer and inputs, the n-grams mined by PMI (Levine et al., "PMI-Masking", ICLR 2021) and
the phrase matches (leftmost, then longest), and compares them with the corpus's phrases.tsv.

PMI_n(w) = min over segmentations of w into two or more contiguous parts of
log p(w) - sum of log p(part), p(x) = count(x) / (positions of |x|-grams inside documents);
candidates seen at least min_count times, counted where both (n-1)-gram sub-parts are; ranked
by PMI, then count, then the words' ids.

Usage: phrase_reference.py PREPARED_DIR [--phrase-file FILE]
Prints OK, or each difference and exits 1.
"""

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from packing_reference import read_documents  # noqa: E402

MAX_NGRAM = 5
MAX_PHRASE_WORDS = 16


def words_of(tokenizer, text):
    """The document's words: runs of ids cut where the pre-tokenizer's word changes."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    words, word_ids = [], encoding.word_ids
    for j, token in enumerate(encoding.ids):
        if j == 0 or word_ids[j] is None or word_ids[j] != word_ids[j - 1]:
            words.append([])
        words[-1].append(token)
    return [tuple(w) for w in words]


def mine(documents, top, min_count):
    unigrams = Counter(w for d in documents for w in d)
    positions = [0] * (MAX_NGRAM + 1)
    positions[1] = sum(len(d) for d in documents)
    tables = {}

    def count(gram):
        return unigrams[gram[0]] if len(gram) == 1 else tables[len(gram)].get(gram, 0)

    for n in range(2, MAX_NGRAM + 1):
        table = Counter()
        for d in documents:
            for i in range(len(d) - n + 1):
                positions[n] += 1
                gram = tuple(d[i : i + n])
                if count(gram[:-1]) >= min_count and count(gram[1:]) >= min_count:
                    table[gram] += 1
        tables[n] = {g: c for g, c in table.items() if c >= min_count}

    def log_p(gram):
        return math.log(float(count(gram))) - math.log(float(positions[len(gram)]))

    scored = []
    for n in range(2, MAX_NGRAM + 1):
        for gram, c in tables[n].items():
            whole, best = log_p(gram), math.inf
            for cuts in range(1, 1 << (n - 1)):
                parts, start = 0.0, 0
                for end in range(1, n + 1):
                    if end == n or cuts & (1 << (end - 1)):
                        parts += log_p(gram[start:end])
                        start = end
                value = whole - parts
                if value < best:
                    best = value
            scored.append((best, c, gram))
    scored.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return scored[:top]


def file_phrases(path, tokenizer):
    phrases = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        phrase = line.split("\t")[0].strip()
        if not phrase or phrase.startswith("#"):
            continue
        forms = []
        for text in (phrase, " " + phrase):
            words = tuple(words_of(tokenizer, text))
            if 2 <= len(words) <= MAX_PHRASE_WORDS and words not in forms:
                forms.append(words)
        if forms:
            phrases.append((phrase, forms))
    return phrases


def count_matches(documents, forms_to_phrase, longest, phrases):
    matches = [0] * phrases
    for d in documents:
        k = 0
        while k < len(d):
            for length in range(min(longest, len(d) - k), 1, -1):
                phrase = forms_to_phrase.get(tuple(d[k : k + length]))
                if phrase is not None:
                    matches[phrase] += 1
                    k += length
                    break
            else:
                k += 1
    return matches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prepared")
    parser.add_argument("--phrase-file")
    args = parser.parse_args()
    prepared = Path(args.prepared)
    manifest = json.loads((prepared / "manifest.json").read_text())
    spec = manifest["phrases"]
    tokenizer = Tokenizer.from_file(str(prepared / "tokenizer.json"))
    train = [words_of(tokenizer, text) for _, text, split in read_documents(manifest) if split == "train"]
    train = [d for d in train if d]

    phrases = file_phrases(args.phrase_file, tokenizer) if args.phrase_file else []
    expected_mined = []
    if spec.get("pmi_ngrams"):
        for pmi, count, gram in mine(train, spec["pmi_ngrams"], spec["pmi_min_count"]):
            text = tokenizer.decode([t for w in gram for t in w], skip_special_tokens=True).strip()
            phrases.append((text, [gram]))
            expected_mined.append((text, count, pmi))

    forms_to_phrase, longest = {}, 0
    for index, (_, forms) in enumerate(phrases):
        for form in forms:
            forms_to_phrase.setdefault(form, index)
            longest = max(longest, len(form))
    expected_matches = count_matches(train, forms_to_phrase, min(longest, MAX_PHRASE_WORDS), len(phrases))

    rows = [line.split("\t") for line in (prepared / spec["file"]).read_text(encoding="utf-8").splitlines()[1:]]
    problems = []
    if len(rows) != len(phrases):
        problems.append(f"{len(rows)} phrases listed, the reference has {len(phrases)}")
    mined_rows = [r for r in rows if r[1] == "pmi"]
    for i, (row, (text, count, pmi)) in enumerate(zip(mined_rows, expected_mined)):
        if row[0] != text or int(row[3]) != count or abs(float(row[4]) - pmi) > 1e-6:
            problems.append(f"mined #{i}: listed {row[0]!r} {row[3]} {row[4]}, reference {text!r} {count} {pmi:.6f}")
    for i, (row, (text, _)) in enumerate(zip(rows, phrases)):
        if int(row[2]) != expected_matches[i]:
            problems.append(f"phrase #{i} {text!r}: {row[2]} matches listed, reference {expected_matches[i]}")
    total = sum(expected_matches)
    if spec["train_matches"] != total:
        problems.append(f"manifest train_matches {spec['train_matches']}, reference {total}")
    for p in problems[:20]:
        print(p)
    if problems:
        sys.exit(1)
    print(f"OK: {len(phrases)} phrases ({len(expected_mined)} mined), {total} matches over {len(train)} training documents")


if __name__ == "__main__":
    main()
