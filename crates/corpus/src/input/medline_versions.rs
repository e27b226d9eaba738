//! Which MEDLINE records survive: a later record of a PMID replaces every earlier one and a
//! `DeleteCitation` removes it, across all input files in their order (baseline files, then
//! the daily update files that revise them).
//!
//! Memory stays bounded whatever the corpus size: a first pass reads the files from the
//! *last* to the first, each file's (PMID, kind) events in reverse. The first time a PMID is
//! met in that reverse order is its final state; every earlier record of it is superseded
//! (or deleted, when the final state is a deletion). What is held:
//! - two bitsets indexed by PMID ("seen", "finally deleted"): max PMID / 4 bytes, about 10 MB
//!   for today's ~40 M PMIDs (PMIDs above 2^32 fall back to a hash set);
//! - one verdict bit pair per article record (2 bits x records: ~9 MB for 36 M records);
//! - the events of one file at a time (NLM files hold ~30,000 records).
//!
//! The first pass only scans bytes for `<PMID>` (no XML parsing of the text), so it costs a
//! decompression and a byte scan of each MEDLINE file; the second pass (the real read) then
//! drops records by their verdict.

use std::collections::HashSet;
use std::sync::Arc;

use super::medline_records::{RecordKind, RecordSplitter, all_pmids, first_pmid};
use super::{ByteCounter, DropReason, InputFile, open_stream};
use crate::config::BadRecordPolicy;
use crate::error::{BadRecordKind, CorpusError};

/// A growable bitset.
#[derive(Debug, Default, Clone)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    pub fn with_len(n: u64) -> Self {
        Self(vec![0; n.div_ceil(64) as usize])
    }
    pub fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn set(&mut self, i: u64) {
        let word = (i / 64) as usize;
        if word >= self.0.len() {
            self.0.resize((word + 1).next_power_of_two(), 0);
        }
        self.0[word] |= 1 << (i % 64);
    }
}

/// PMIDs as a bitset, with a hash-set fallback for ids a bitset should not cover.
#[derive(Debug, Default)]
struct PmidSet {
    bits: BitSet,
    large: HashSet<u64>,
}

const BITSET_LIMIT: u64 = 1 << 32;

impl PmidSet {
    fn contains(&self, pmid: u64) -> bool {
        if pmid < BITSET_LIMIT {
            self.bits.get(pmid)
        } else {
            self.large.contains(&pmid)
        }
    }
    fn insert(&mut self, pmid: u64) {
        if pmid < BITSET_LIMIT {
            self.bits.set(pmid);
        } else {
            self.large.insert(pmid);
        }
    }
}

/// The verdicts of one file's article records, by their 0-based ordinal among the file's
/// `PubmedArticle` records.
#[derive(Debug, Default)]
pub struct FileVerdicts {
    dropped: BitSet,
    deleted: BitSet,
}

impl FileVerdicts {
    /// `None` when the record is kept, else why it is dropped.
    pub fn verdict(&self, ordinal: u64) -> Option<DropReason> {
        if !self.dropped.get(ordinal) {
            None
        } else if self.deleted.get(ordinal) {
            Some(DropReason::Deleted)
        } else {
            Some(DropReason::Superseded)
        }
    }
}

enum Event {
    /// An article record: its ordinal and PMID (None when the scan finds none; the second
    /// pass reports the record as malformed).
    Article(u64, Option<u64>),
    Delete(u64),
}

/// Reads the events of one file in order. Under `fail`, a read problem is an error here
/// already; under `skip` the events read so far count (the second pass meets and counts
/// the same problem).
fn file_events(
    input: &InputFile,
    policy: BadRecordPolicy,
    counter: &ByteCounter,
) -> Result<Vec<Event>, CorpusError> {
    let stream = match open_stream(&input.path, counter) {
        Ok(s) => s,
        Err(e) => {
            return match policy {
                BadRecordPolicy::Fail => Err(super::BadRecord::new(
                    BadRecordKind::UnreadableFile,
                    "open",
                    format!("cannot open: {e}"),
                )
                .with_source(e)
                .into_error(&input.path)),
                BadRecordPolicy::Skip => Ok(Vec::new()),
            };
        }
    };
    let mut events = Vec::new();
    let mut articles = 0;
    for raw in RecordSplitter::new(stream) {
        let raw = match raw {
            Ok(raw) => raw,
            Err(bad) => match policy {
                BadRecordPolicy::Fail => return Err(bad.into_error(&input.path)),
                BadRecordPolicy::Skip => break,
            },
        };
        match raw.kind {
            RecordKind::Article => {
                events.push(Event::Article(articles, first_pmid(&raw.bytes)));
                articles += 1;
            }
            RecordKind::Delete => {
                events.extend(all_pmids(&raw.bytes).into_iter().map(Event::Delete))
            }
            RecordKind::Book => {}
        }
    }
    Ok(events)
}

/// Verdicts for each MEDLINE file of `files` (in the same order; `None` for other formats).
pub fn resolve_versions(
    files: &[InputFile],
    policy: BadRecordPolicy,
    counter: &ByteCounter,
) -> Result<Vec<Option<Arc<FileVerdicts>>>, CorpusError> {
    let mut seen = PmidSet::default();
    let mut finally_deleted = PmidSet::default();
    let mut out: Vec<Option<Arc<FileVerdicts>>> = vec![None; files.len()];
    for (index, input) in files.iter().enumerate().rev() {
        if input.format != super::ResolvedFormat::Medline {
            continue;
        }
        let events = file_events(input, policy, counter)?;
        let mut verdicts = FileVerdicts::default();
        for event in events.iter().rev() {
            match *event {
                Event::Delete(pmid) => {
                    if !seen.contains(pmid) {
                        seen.insert(pmid);
                        finally_deleted.insert(pmid);
                    }
                }
                Event::Article(_, None) => {}
                Event::Article(ordinal, Some(pmid)) => {
                    if seen.contains(pmid) {
                        verdicts.dropped.set(ordinal);
                        if finally_deleted.contains(pmid) {
                            verdicts.deleted.set(ordinal);
                        }
                    } else {
                        seen.insert(pmid);
                    }
                }
            }
        }
        out[index] = Some(Arc::new(verdicts));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(pmid: u64, title: &str) -> String {
        format!(
            "<PubmedArticle><MedlineCitation><PMID Version=\"1\">{pmid}</PMID><Article><ArticleTitle>{title}</ArticleTitle><Abstract><AbstractText>abstract of {title}</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>\n"
        )
    }

    fn file(dir: &std::path::Path, name: &str, body: &str) -> InputFile {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("<PubmedArticleSet>\n{body}</PubmedArticleSet>\n"),
        )
        .unwrap();
        InputFile {
            path,
            format: super::super::ResolvedFormat::Medline,
            bytes: 0,
            held_out: false,
        }
    }

    #[test]
    fn later_versions_and_deletions_win_across_files() {
        let dir = std::env::temp_dir().join(format!("mlm-corpus-versions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = vec![
            // 1 is revised in the update; 2 is deleted by it; 3 appears twice in one file.
            file(&dir, "base.xml", &[article(1, "one"), article(2, "two"), article(3, "three a"), article(3, "three b")].concat()),
            file(
                &dir,
                "update.xml",
                &[
                    article(1, "one revised"),
                    "<DeleteCitation><PMID Version=\"1\">2</PMID><PMID Version=\"1\">77</PMID></DeleteCitation>\n".into(),
                    article(77, "re-added after its deletion? no: deletion comes first"),
                ]
                .concat(),
            ),
        ];
        let verdicts =
            resolve_versions(&files, BadRecordPolicy::Fail, &ByteCounter::default()).unwrap();
        let base = verdicts[0].as_ref().unwrap();
        assert_eq!(base.verdict(0), Some(DropReason::Superseded));
        assert_eq!(base.verdict(1), Some(DropReason::Deleted));
        assert_eq!(base.verdict(2), Some(DropReason::Superseded));
        assert_eq!(base.verdict(3), None);
        let update = verdicts[1].as_ref().unwrap();
        assert_eq!(update.verdict(0), None);
        // 77 is deleted, then a record of it follows: the later record wins.
        assert_eq!(update.verdict(1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bitset_grows() {
        let mut b = BitSet::default();
        assert!(!b.get(1_000_000));
        b.set(1_000_000);
        assert!(b.get(1_000_000) && !b.get(999_999));
    }
}
