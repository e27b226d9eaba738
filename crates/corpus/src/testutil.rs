//! Helpers of the crate's unit tests: scratch directories and a tiny WordPiece vocabulary.

use std::path::{Path, PathBuf};

/// A fresh directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mlm-corpus-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Words of the tiny vocabulary (beside single letters, digits and their `##` forms).
pub const WORDS: &[&str] = &[
    "the", "a", "of", "and", "in", "is", "to", "cat", "sat", "on", "mat", "dog", "ran", "aspirin",
    "patients", "with", "cancer", "were", "treated", "dose", "un", "##aff", "##able", "don",
    "hello", "world", "cell", "##s", "##ed", "##ing", "protein", "gene", "study", "results",
];

/// A BERT-layout vocabulary: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then words,
/// punctuation, letters and digits (and their `##` continuations).
pub fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    v.extend(WORDS.iter().map(|w| w.to_string()));
    for c in ".,;:!?'()-/<>\"".chars() {
        v.push(c.to_string());
    }
    for c in ('a'..='z').chain('0'..='9') {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|t| seen.insert(t.clone()));
    v
}

/// Writes `vocab.txt` into `dir` and returns its path.
pub fn write_tiny_vocab(dir: &Path) -> PathBuf {
    let path = dir.join("vocab.txt");
    std::fs::write(&path, tiny_vocab().join("\n") + "\n").unwrap();
    path
}

/// Texts of the JSONL fixture (title + abstract), for training small tokenizers.
pub fn fixture_texts() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abstracts.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["title"].as_str().unwrap(),
                v["abstract"].as_str().unwrap()
            )
        })
        .collect()
}

/// A RoBERTa byte-level BPE (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` last) trained
/// on the fixture, small enough to split words into several pieces.
pub fn tiny_bpe() -> crate::tokenizer::DomainTokenizer {
    let config = crate::config::VocabConfig {
        model: crate::config::VocabModel::Bpe,
        vocab_size: 300,
        min_frequency: 1,
        ..Default::default()
    };
    crate::tokenizer::train::train_bpe(&config, fixture_texts().into_iter()).unwrap()
}

/// Writes [`tiny_bpe`]'s Hugging Face files into `dir`.
pub fn write_tiny_bpe(dir: &Path) {
    tiny_bpe().write_hf_files(dir, 512).unwrap();
}

/// [`tiny_bpe`] with ModernBERT-base's layout: the BPE entries, then `[UNK]` 295, `[CLS]`,
/// `[SEP]`, `[PAD]`, `[MASK]` 299; `[CLS] ... [SEP]`.
pub fn write_tiny_modernbert(dir: &Path) {
    let config = crate::config::VocabConfig {
        model: crate::config::VocabModel::Bpe,
        layout: Some(crate::config::VocabLayout::ModernBert),
        vocab_size: 300,
        min_frequency: 1,
        ..Default::default()
    };
    let tok = crate::tokenizer::train::train(&config, fixture_texts().into_iter()).unwrap();
    tok.write_hf_files(dir, 8192).unwrap();
}
