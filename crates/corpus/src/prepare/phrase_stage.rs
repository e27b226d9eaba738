//! The phrase stage of `prepare` (`[masking] unit = "phrase"`): the phrase list (the user's
//! file and/or n-grams mined by PMI over the training split) before packing, and after it
//! `phrases.tsv` with the matches counted and the manifest's record of it.

use rayon::prelude::*;

use super::plan::Plan;
use super::state::MatchCounts;
use crate::error::CorpusError;
use crate::fsutil::sha256_file;
use crate::input::ByteCounter;
use crate::phrases::pmi::{self, WordCorpus};
use crate::phrases::{
    PHRASES_FILE, Phrase, PhraseList, PhraseMatcher, PhraseOrigin, PhraseSpec, PhrasesManifest,
    split_words, write_phrases_file,
};
use crate::progress::Observer;
use crate::split::Split;
use crate::stream::DocumentStream;

/// PMI mining holds the training split's words, 4 bytes each (plus the distinct words): it
/// stops reading at this many, about 400 MB.
pub const PMI_MAX_WORDS: usize = 100_000_000;

/// Documents tokenized together while mining.
const MINING_BATCH: usize = 2048;

/// The phrases of this prepare and their matcher.
pub(super) struct PhraseStage {
    pub list: PhraseList,
    pub matcher: PhraseMatcher,
    spec: PhraseSpec,
    source_sha256: Option<String>,
}

/// The SHA-256 of the spec's phrase file (part of the config key), if it names one.
pub(super) fn source_digest(spec: &PhraseSpec) -> Result<Option<String>, CorpusError> {
    spec.file.as_deref().map(sha256_file).transpose()
}

/// The phrase list of `plan`, or None when the corpus is not prepared for phrase masking
/// (a `phrases.tsv` left by an earlier prepare is then removed).
pub(super) fn build(
    plan: &Plan<'_>,
    observer: &dyn Observer,
) -> Result<Option<PhraseStage>, CorpusError> {
    let Some(spec) = plan.config.phrases.clone() else {
        let stale = plan.out.join(PHRASES_FILE);
        if stale.is_file() {
            std::fs::remove_file(&stale)
                .map_err(|e| CorpusError::io("cannot remove", &stale, e))?;
        }
        return Ok(None);
    };
    let mut list = match &spec.file {
        Some(path) => PhraseList::read_file(path, &plan.tokenizer)?,
        None => PhraseList::default(),
    };
    if list.skipped_lines > 0 {
        observer.warning(&format!(
            "{} lines of the phrase file are a single word once tokenized (a word is a unit \
             already) and were skipped",
            list.skipped_lines
        ));
    }
    if let Some(top) = spec.pmi_ngrams {
        observer.phase("mining phrases by PMI over the training split");
        let words = train_words(plan, observer)?;
        list.phrases
            .extend(mined_phrases(plan, &words, top, spec.pmi_min_count)?);
    }
    let matcher = PhraseMatcher::new(&list);
    Ok(Some(PhraseStage {
        source_sha256: source_digest(&spec)?,
        list,
        matcher,
        spec,
    }))
}

/// The training split's words, read and tokenized as packing will read them.
fn train_words(plan: &Plan<'_>, observer: &dyn Observer) -> Result<WordCorpus, CorpusError> {
    let stream = DocumentStream::open(
        plan.config,
        plan.files.clone(),
        ByteCounter::default(),
        observer,
    )?;
    let mut words = WordCorpus::default();
    let mut batch = Vec::with_capacity(MINING_BATCH);
    for doc in stream {
        let doc = doc?;
        if doc.split == Split::Train {
            batch.push(doc.doc.text);
        }
        if batch.len() == MINING_BATCH {
            add_documents(plan, &mut words, &batch)?;
            batch.clear();
            if words.codes.len() >= PMI_MAX_WORDS {
                observer.warning(&format!(
                    "PMI phrases are mined over the first {PMI_MAX_WORDS} training words only"
                ));
                return Ok(words);
            }
        }
    }
    add_documents(plan, &mut words, &batch)?;
    Ok(words)
}

fn add_documents(
    plan: &Plan<'_>,
    words: &mut WordCorpus,
    texts: &[String],
) -> Result<(), CorpusError> {
    let tokenized: Vec<Vec<Vec<u32>>> = texts
        .par_iter()
        .map(|text| {
            let (ids, starts) = plan.tokenizer.encode_words(text)?;
            Ok(split_words(&ids, &starts))
        })
        .collect::<Result<_, CorpusError>>()?;
    for document in tokenized.iter().filter(|d| !d.is_empty()) {
        words.push_document(document);
    }
    Ok(())
}

/// The top n-grams by PMI as phrases, their text decoded by the tokenizer.
fn mined_phrases(
    plan: &Plan<'_>,
    words: &WordCorpus,
    top: usize,
    min_count: u64,
) -> Result<Vec<Phrase>, CorpusError> {
    pmi::mine(words, top, min_count)
        .into_iter()
        .map(|ngram| {
            let ids: Vec<u32> = ngram.words.concat();
            Ok(Phrase {
                text: plan.tokenizer.decode(&ids)?.trim().to_string(),
                origin: PhraseOrigin::Pmi,
                forms: vec![ngram.words],
                ngram_count: Some(ngram.count),
                pmi: Some(ngram.pmi),
            })
        })
        .collect()
}

/// Writes `phrases.tsv` with the training split's matches; returns the manifest's record.
pub(super) fn finish(
    plan: &Plan<'_>,
    stage: &PhraseStage,
    counts: &MatchCounts,
) -> Result<PhrasesManifest, CorpusError> {
    write_phrases_file(&plan.out, &stage.list.to_tsv(&counts.per_phrase))?;
    Ok(PhrasesManifest {
        file: PHRASES_FILE.to_string(),
        sha256: stage.list.digest(),
        phrases: stage.list.phrases.len(),
        source_sha256: stage.source_sha256.clone(),
        pmi_ngrams: stage.spec.pmi_ngrams,
        pmi_min_count: stage.spec.pmi_min_count,
        train_matches: counts.per_phrase.iter().sum(),
        train_phrase_tokens: counts.tokens,
    })
}
