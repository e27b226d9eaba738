//! Word-level held-out evaluation (`mlm-train eval --words`), for comparing models whose
//! tokenizers split words differently (a base vocabulary, an extended one, a domain one):
//! whole words are masked (every piece becomes the mask token), and a word is scored as a
//! unit: its loss is the sum of its pieces' cross-entropies (the log-probability of the whole
//! word under the model's factorisation), and it is right when every piece is.
//!
//! Which words are masked must not depend on the tokenization, so it is not drawn per token
//! position as training masks are: a word is selected when a hash of (`eval_seed`, the
//! document's ordinal, the word's text, the previous word's text, and how often that pair
//! occurred before in the document) falls under `mlm_probability`. The text is the decoded
//! pieces (normalised, e.g. lowercased, as the tokenizer sees it); documents are counted by the
//! separators between them (`concat` packing; with `document` packing the split is one
//! stream). Tokenizers with the same normaliser and pre-tokenizer then select the same word
//! occurrences, up to the words at the edges of a sequence, which are neither selected nor
//! counted (a sequence border may cut a word, at different places for different
//! tokenizations). The occurrence count makes each occurrence its own draw: a key of the texts
//! alone would select every "of the" or none, and a few frequent pairs would dominate.

use std::collections::HashMap;

use mlm_corpus::{DomainTokenizer, PreparedCorpus, Split};
use mlm_masking::{Batch, IGNORE_INDEX, MaskedSequence, collate};
use serde::{Deserialize, Serialize};
use tch::Kind;

use super::RunError;
use super::eval::CheckpointEval;
use super::precision::ForwardPrecision;
use super::step::{batch_tensors, masked_logits};
use crate::model::{MaskedLanguageModel, load_model_dir};

/// Word-level metrics of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WordMetrics {
    /// Masked words scored.
    pub words: u64,
    /// Mean over masked words of the summed cross-entropy of their pieces (nats).
    pub loss_per_word: f64,
    /// Share of masked words whose every piece is predicted right (top-1).
    pub word_accuracy: f64,
    /// Masked pieces per masked word.
    pub pieces_per_word: f64,
    /// Share of masked words of two pieces or more.
    pub split_share: f64,
    /// Mean cross-entropy per masked piece.
    pub loss_per_piece: f64,
    pub sequences: u64,
}

/// Sums over masked words (f64).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WordSums {
    pub words: u64,
    pub pieces: u64,
    pub loss: f64,
    pub right_words: u64,
    pub split_words: u64,
    pub sequences: u64,
}

/// Pure reduction of the sums.
pub fn finish_word_metrics(sums: &WordSums) -> WordMetrics {
    let per = |x: f64, n: u64| if n == 0 { f64::NAN } else { x / n as f64 };
    WordMetrics {
        words: sums.words,
        loss_per_word: per(sums.loss, sums.words),
        word_accuracy: per(sums.right_words as f64, sums.words),
        pieces_per_word: per(sums.pieces as f64, sums.words),
        split_share: per(sums.split_words as f64, sums.words),
        loss_per_piece: per(sums.loss, sums.pieces),
        sequences: sums.sequences,
    }
}

/// Adds the pieces of masked words to `sums`: `word_of[i]` is the word of masked piece i,
/// pieces of one word adjacent.
pub fn add_words(sums: &mut WordSums, word_of: &[u64], piece_loss: &[f64], piece_right: &[bool]) {
    let mut i = 0;
    while i < word_of.len() {
        let end = i + word_of[i..]
            .iter()
            .take_while(|&&w| w == word_of[i])
            .count();
        sums.words += 1;
        sums.pieces += (end - i) as u64;
        sums.loss += piece_loss[i..end].iter().sum::<f64>();
        sums.right_words += u64::from(piece_right[i..end].iter().all(|&r| r));
        sums.split_words += u64::from(end - i > 1);
        i = end;
    }
}

/// FNV-1a of a word's text (stable across builds and platforms, unlike std's hasher).
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where a word occurrence is: what its selection is a pure function of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordKey {
    pub document: u64,
    pub previous: u64,
    pub text: u64,
    /// Earlier occurrences of (previous, text) in the document.
    pub occurrence: u64,
}

/// Whether the occurrence `key` is masked.
pub fn word_selected(seed: u64, key: &WordKey, probability: f64) -> bool {
    let h = mlm_seeds::mix(&[
        seed,
        0x776f_7264_6576_616c,
        key.document,
        key.previous,
        key.text,
        key.occurrence,
    ]);
    ((h >> 11) as f64) / ((1u64 << 53) as f64) < probability
}

/// The position in the held-out stream: document ordinal, pair counts within it, word count.
#[derive(Debug, Default)]
struct Cursor {
    document: u64,
    seen: HashMap<(u64, u64), u64>,
    next_word: u64,
}

impl Cursor {
    fn next_document(&mut self) {
        self.document += 1;
        self.seen.clear();
    }

    /// The key of the next occurrence of `text` after `previous` (and counts it).
    fn key(&mut self, previous: &str, text: &str) -> WordKey {
        let (previous, text) = (text_hash(previous), text_hash(text));
        let count = self.seen.entry((previous, text)).or_default();
        *count += 1;
        WordKey {
            document: self.document,
            previous,
            text,
            occurrence: *count - 1,
        }
    }
}

/// (start, length) of each word of a sequence: runs of non-special tokens cut at word starts.
pub fn word_spans(ids: &[u32], starts: &[bool], special: &[u32]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut in_word = false;
    for (i, id) in ids.iter().enumerate() {
        if special.contains(id) {
            in_word = false;
            continue;
        }
        if in_word && !starts.get(i).copied().unwrap_or(true) {
            if let Some(last) = spans.last_mut() {
                last.1 += 1;
            }
        } else {
            spans.push((i, 1));
        }
        in_word = true;
    }
    spans
}

/// What masking a sequence by words needs.
struct WordMasking<'a> {
    tokenizer: &'a DomainTokenizer,
    special: &'a [u32],
    sep_id: u32,
    mask_id: u32,
    seed: u64,
    probability: f64,
}

impl WordMasking<'_> {
    /// The sequence with its selected words masked, and the word number of each masked piece.
    fn mask(
        &self,
        ids: &[u32],
        starts: &[bool],
        cursor: &mut Cursor,
    ) -> Result<(MaskedSequence, Vec<u64>), RunError> {
        let spans = word_spans(ids, starts, self.special);
        let mut texts = Vec::with_capacity(spans.len());
        for &(start, len) in &spans {
            texts.push(self.tokenizer.decode(&ids[start..start + len])?);
        }
        // Separators between documents: a sep that is neither the first nor the last token.
        let separators: Vec<usize> = (1..ids.len().saturating_sub(1))
            .filter(|&i| ids[i] == self.sep_id)
            .collect();
        let mut out = MaskedSequence {
            input_ids: ids.to_vec(),
            labels: vec![IGNORE_INDEX; ids.len()],
        };
        let mut word_of = Vec::new();
        let mut crossed = 0;
        for (w, &(start, len)) in spans.iter().enumerate() {
            while crossed < separators.len() && separators[crossed] < start {
                cursor.next_document();
                crossed += 1;
            }
            // The first and last word may be cut by the sequence border: left out.
            if w == 0 || w + 1 == spans.len() {
                continue;
            }
            let key = cursor.key(&texts[w - 1], &texts[w]);
            if !word_selected(self.seed, &key, self.probability) {
                continue;
            }
            let pieces = start..start + len;
            for (label, &id) in out.labels[pieces.clone()]
                .iter_mut()
                .zip(&ids[pieces.clone()])
            {
                *label = i64::from(id);
            }
            out.input_ids[pieces].fill(self.mask_id);
            word_of.extend(std::iter::repeat_n(cursor.next_word, len));
            cursor.next_word += 1;
        }
        for _ in crossed..separators.len() {
            cursor.next_document();
        }
        Ok((out, word_of))
    }
}

/// Evaluates a checkpoint word by word on the held-out split (fp32), after checking that its
/// tokenizer is the corpus's. Uses `[masking] eval_seed` and `mlm_probability`, `[eval]
/// max_eval_samples` and `eval_batch_size`.
pub fn evaluate_checkpoint_words(request: &CheckpointEval<'_>) -> Result<WordMetrics, RunError> {
    let corpus = PreparedCorpus::open(request.corpus_dir)?;
    let tokenizer = DomainTokenizer::load(request.checkpoint, None)?;
    corpus.check_tokenizer(&tokenizer)?;
    let loaded = load_model_dir(request.checkpoint, request.device)?;
    let manifest = corpus.manifest();
    let masking = WordMasking {
        tokenizer: &tokenizer,
        special: &manifest.special_ids.all,
        sep_id: manifest.special_ids.sep,
        mask_id: manifest.special_ids.mask,
        seed: request.masking.eval_seed,
        probability: request.masking.mlm_probability,
    };
    let mut reader = corpus.split(Split::Validation)?;
    let total = request
        .eval
        .max_eval_samples
        .map_or(reader.len(), |m| m.min(reader.len()));
    let precision = ForwardPrecision::fp32(request.device);
    let mut sums = WordSums::default();
    let (mut pending, mut words) = (Vec::new(), Vec::new());
    let mut cursor = Cursor::default();
    let _no_grad = tch::no_grad_guard();
    for position in 0..total {
        let sequence = reader.get(position)?;
        let (masked, word_of) =
            masking.mask(&sequence.input_ids, &sequence.word_starts, &mut cursor)?;
        pending.push(masked);
        words.extend(word_of);
        if pending.len() == request.eval.eval_batch_size || position + 1 == total {
            let batch = collate(
                &pending,
                manifest.special_ids.pad,
                manifest.special_ids.mask,
                None,
            );
            score_batch(&loaded.model, &batch, &words, precision, &mut sums)?;
            sums.sequences += pending.len() as u64;
            pending.clear();
            words.clear();
        }
    }
    Ok(finish_word_metrics(&sums))
}

/// Per-piece loss and top-1 of one batch, summed word by word.
fn score_batch(
    model: &MaskedLanguageModel,
    batch: &Batch,
    word_of: &[u64],
    precision: ForwardPrecision,
    sums: &mut WordSums,
) -> Result<(), RunError> {
    if batch.masked_tokens() == 0 {
        return Ok(());
    }
    let tensors = batch_tensors(batch, precision.device());
    let logits = masked_logits(model, &tensors, precision, false)?.to_kind(Kind::Double);
    let labels = &tensors.masked_labels;
    let log_probs = logits.log_softmax(-1, Kind::Double);
    let piece_loss = -log_probs
        .gather(1, &labels.unsqueeze(1), false)
        .squeeze_dim(1);
    let right = logits.argmax(-1, false).eq_tensor(labels);
    let piece_loss = Vec::<f64>::try_from(&piece_loss.to_device(tch::Device::Cpu))?;
    let right = Vec::<bool>::try_from(&right.to_device(tch::Device::Cpu))?;
    add_words(sums, word_of, &piece_loss, &right);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_right_only_when_all_its_pieces_are_and_its_loss_is_their_sum() {
        let mut sums = WordSums::default();
        // words 7 (2 pieces), 8 (1 piece), 9 (3 pieces)
        let word_of = [7, 7, 8, 9, 9, 9];
        let loss = [1.0, 2.0, 0.5, 0.25, 0.25, 0.5];
        let right = [true, false, true, true, true, true];
        add_words(&mut sums, &word_of, &loss, &right);
        assert_eq!((sums.words, sums.pieces, sums.right_words), (3, 6, 2));
        assert_eq!(sums.split_words, 2);
        let m = finish_word_metrics(&sums);
        assert!((m.loss_per_word - 4.5 / 3.0).abs() < 1e-15);
        assert!((m.word_accuracy - 2.0 / 3.0).abs() < 1e-15);
        assert!((m.pieces_per_word - 2.0).abs() < 1e-15);
        assert!((m.split_share - 2.0 / 3.0).abs() < 1e-15);
        assert!((m.loss_per_piece - 0.75).abs() < 1e-15);
        assert!(
            finish_word_metrics(&WordSums::default())
                .loss_per_word
                .is_nan()
        );
    }

    #[test]
    fn words_are_runs_of_non_special_tokens_cut_at_word_starts() {
        // [CLS] a ##b c [SEP] d ##e [SEP]
        let ids = [2, 10, 11, 12, 3, 13, 14, 3];
        let starts = [true, true, false, true, true, true, false, true];
        assert_eq!(word_spans(&ids, &starts, &[2, 3]), [(1, 2), (3, 1), (5, 2)]);
        // A continuation right after a special token starts a word.
        assert_eq!(
            word_spans(&[2, 11, 3], &[true, false, true], &[2, 3]),
            [(1, 1)]
        );
    }

    #[test]
    fn each_occurrence_is_its_own_draw_at_the_rate_asked() {
        let mut cursor = Cursor::default();
        let first = cursor.key("of", "the");
        let second = cursor.key("of", "the");
        assert_eq!((first.occurrence, second.occurrence), (0, 1));
        cursor.next_document();
        assert_eq!(
            cursor.key("of", "the").occurrence,
            0,
            "counts restart per document"
        );
        // One frequent pair: about 15% of its occurrences, not all or none.
        let mut cursor = Cursor::default();
        let hits = (0..20_000)
            .filter(|_| word_selected(5, &cursor.key("of", "the"), 0.15))
            .count();
        assert!((hits as f64 / 20_000.0 - 0.15).abs() < 0.01, "{hits}");
        let key = WordKey {
            document: 3,
            previous: 1,
            text: 2,
            occurrence: 0,
        };
        assert_eq!(word_selected(5, &key, 0.15), word_selected(5, &key, 0.15));
        let differs = (0..2000)
            .map(|n| WordKey {
                occurrence: n,
                ..key
            })
            .filter(|k| word_selected(5, k, 0.5) != word_selected(6, k, 0.5))
            .count();
        assert!(differs > 500, "another seed selects other occurrences");
        assert!(!word_selected(5, &key, 0.0) && word_selected(5, &key, 1.0));
    }
}
