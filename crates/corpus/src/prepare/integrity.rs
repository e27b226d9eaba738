//! The prepared corpus's `integrity.json` (`mlm-integrity`): every shard with the byte range
//! and hash of each row group (so a damaged shard is reported with its row group), the
//! tokenizer files, and `manifest.json`. Written just before `manifest.json`, which stays the
//! commit point: a kill in between leaves an unfinished prepare that the rerun completes.

use std::path::Path;

use mlm_integrity::{FileEntry, Integrity};
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::CorpusError;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::split::Split;

/// Writes `out/integrity.json` for `manifest`, whose serialised text is `manifest_text`.
pub(super) fn write(
    out: &Path,
    manifest: &Manifest,
    manifest_text: &[u8],
) -> Result<(), CorpusError> {
    let mut files = Vec::new();
    for split in Split::ALL {
        for shard in &manifest.split(split).shards {
            let sections = row_groups(&out.join(&shard.file))?;
            files.push(
                FileEntry::of_file(out, &shard.file, &sections).map_err(CorpusError::Integrity)?,
            );
        }
    }
    let phrases = manifest.phrases.as_ref().map(|p| &p.file);
    for name in manifest.tokenizer_files.iter().chain(phrases) {
        files.push(FileEntry::of_file(out, name, &[]).map_err(CorpusError::Integrity)?);
    }
    files.push(FileEntry::of_bytes(MANIFEST_FILE, manifest_text));
    Integrity::new(files)
        .write(out)
        .map_err(CorpusError::Integrity)
}

/// (`row group i`, first byte, length) of every row group of a Parquet shard: from the first
/// to the last byte of its column chunks, as the footer records them.
fn row_groups(path: &Path) -> Result<Vec<(String, u64, u64)>, CorpusError> {
    let file = std::fs::File::open(path).map_err(|e| CorpusError::io("cannot open", path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| CorpusError::parquet(path, e))?;
    let groups = reader.metadata().row_groups();
    Ok(groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let ranges = group.columns().iter().map(|column| column.byte_range());
            let start = ranges.clone().map(|(start, _)| start).min().unwrap_or(0);
            let end = ranges
                .map(|(start, len)| start + len)
                .max()
                .unwrap_or(start);
            (format!("row group {i}"), start, end - start)
        })
        .collect())
}
