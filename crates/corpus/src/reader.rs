//! Reading a prepared corpus: the manifest, the tokenizer check and random access to
//! sequences in constant memory (a few decoded row groups and shard footers are cached).

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch};
use arrow::datatypes::{DataType, UInt16Type, UInt32Type};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};

use crate::error::CorpusError;
use crate::manifest::Manifest;
use crate::shard::{
    INPUT_IDS, TokenDtype, UNIT_START, WORD_START, check_column_chunks, check_shard_schema,
};
use crate::split::Split;
use crate::tokenizer::DomainTokenizer;
use crate::untrusted::guarded;

/// A prepared corpus directory.
#[derive(Debug, Clone)]
pub struct PreparedCorpus {
    dir: PathBuf,
    manifest: Manifest,
}

impl PreparedCorpus {
    /// Opens `dir`; refuses a directory whose prepare has not finished (no manifest) or
    /// whose shards are missing or of another size than the manifest says, or that fails the
    /// fast check of its `integrity.json` (sizes, Parquet headers, small files hashed).
    pub fn open(dir: &Path) -> Result<Self, CorpusError> {
        let manifest = Manifest::read(dir)?;
        mlm_integrity::verify(dir, mlm_integrity::Level::Fast).map_err(CorpusError::Integrity)?;
        for split in Split::ALL {
            for shard in &manifest.split(split).shards {
                let path = dir.join(&shard.file);
                let len = std::fs::metadata(&path)
                    .map_err(|e| CorpusError::prepared(dir, format!("shard {}: {e}", shard.file)))?
                    .len();
                if len != shard.bytes {
                    return Err(CorpusError::prepared(
                        dir,
                        format!(
                            "shard {} has {len} bytes, the manifest says {}",
                            shard.file, shard.bytes
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `tokenizer.json` of the corpus (prepare copies the tokenizer into the directory).
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    /// Errors unless `tokenizer` has the fingerprint the corpus was tokenized with.
    pub fn check_tokenizer(&self, tokenizer: &DomainTokenizer) -> Result<(), CorpusError> {
        let found = tokenizer.fingerprint();
        if found != self.manifest.tokenizer_fingerprint {
            return Err(CorpusError::FingerprintMismatch {
                dir: self.dir.clone(),
                expected: self.manifest.tokenizer_fingerprint.clone(),
                found,
            });
        }
        Ok(())
    }

    /// Verifies every byte against `integrity.json` (a damaged shard is named with its row
    /// group), or, for a corpus prepared before integrity manifests, every shard's SHA-256
    /// against the manifest. Reads all data once.
    pub fn verify(&self) -> Result<(), CorpusError> {
        let level = mlm_integrity::Level::Full;
        let verified = mlm_integrity::verify(&self.dir, level).map_err(CorpusError::Integrity)?;
        if verified != mlm_integrity::Verified::NoManifest {
            return Ok(());
        }
        for split in Split::ALL {
            for shard in &self.manifest.split(split).shards {
                let sha = crate::fsutil::sha256_file(&self.dir.join(&shard.file))?;
                if sha != shard.sha256 {
                    return Err(CorpusError::prepared(
                        &self.dir,
                        format!(
                            "shard {} is corrupt: its SHA-256 differs from the manifest's",
                            shard.file
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A random-access reader of one split.
    pub fn split(&self, split: Split) -> Result<SplitReader, CorpusError> {
        let m = self.manifest.split(split);
        let mut shards = Vec::with_capacity(m.shards.len());
        let mut first = 0u64;
        for s in &m.shards {
            shards.push(ShardEntry {
                path: self.dir.join(&s.file),
                first,
                rows: s.rows,
            });
            first = first.saturating_add(s.rows);
        }
        // Sequence i is looked up among the shards' rows: a count they do not add up to
        // would send a lookup past the last shard.
        if first != m.sequences {
            return Err(CorpusError::prepared(
                &self.dir,
                format!(
                    "the manifest's {} shards hold {first} rows, it says {} sequences",
                    split.as_str(),
                    m.sequences
                ),
            ));
        }
        Ok(SplitReader::new(
            shards,
            m.tokens,
            self.manifest.token_dtype,
            self.manifest.phrases.is_some(),
        ))
    }
}

/// One sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    pub input_ids: Vec<u32>,
    pub word_starts: Vec<bool>,
    /// Where masking units begin, in a corpus prepared with phrases (`unit_start`).
    pub unit_starts: Option<Vec<bool>>,
}

#[derive(Debug)]
struct ShardEntry {
    path: PathBuf,
    first: u64,
    rows: u64,
}

struct Footer {
    shard: usize,
    file: File,
    metadata: ArrowReaderMetadata,
    /// First row of each row group within the shard, and the end.
    group_starts: Vec<u64>,
}

impl Footer {
    /// Opens the shard at `path` and reads its footer: refused unless its column chunks lie
    /// inside the file and its columns are those `prepare` writes for `dtype`, so that no
    /// page of a shard of another layout is ever decoded.
    fn load(
        shard: usize,
        path: &Path,
        dtype: TokenDtype,
        with_units: bool,
    ) -> Result<Self, CorpusError> {
        let file = File::open(path).map_err(|e| CorpusError::io("cannot open", path, e))?;
        // Footers are decoded under `guarded` too, as the input reader's are.
        let metadata = guarded(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()))
            .map_err(|panic| bad_shard(path, &format!("the footer decoder failed: {panic}")))?
            .map_err(pq_err(path))?;
        let file_bytes = file.metadata().map_or(0, |m| m.len());
        check_column_chunks(metadata.metadata(), file_bytes).map_err(|e| bad_shard(path, &e))?;
        check_shard_schema(path, metadata.schema(), dtype, with_units)?;
        let mut group_starts = vec![0u64];
        for rg in metadata.metadata().row_groups() {
            let end = group_starts[group_starts.len() - 1];
            group_starts.push(end.saturating_add(rg.num_rows().max(0) as u64));
        }
        Ok(Self {
            shard,
            file,
            metadata,
            group_starts,
        })
    }

    /// Rows of the shard, as its footer counts them.
    fn rows(&self) -> u64 {
        self.group_starts[self.group_starts.len() - 1]
    }
}

struct DecodedGroup {
    /// Global index of its first row.
    first: u64,
    ids: Vec<u32>,
    starts: Vec<bool>,
    /// `unit_start` values, decoded in a phrase corpus.
    units: Option<Vec<bool>>,
    offsets: Vec<usize>,
}

impl DecodedGroup {
    fn rows(&self) -> u64 {
        (self.offsets.len() - 1) as u64
    }
}

/// Row groups kept decoded: EpochOrder's window spans this many blocks by default, so one
/// epoch decodes each row group once.
pub const DEFAULT_CACHED_ROW_GROUPS: usize = 8;
const CACHED_FOOTERS: usize = 8;

/// Random access to one split's sequences. `Send`; memory is a few row groups.
pub struct SplitReader {
    shards: Vec<ShardEntry>,
    len: u64,
    tokens: u64,
    /// The element type of `input_ids` the manifest declares: every shard must hold it.
    dtype: TokenDtype,
    /// The manifest lists phrases: every shard holds `unit_start`.
    with_units: bool,
    footers: VecDeque<Footer>,
    groups: VecDeque<DecodedGroup>,
    cache_groups: usize,
}

impl std::fmt::Debug for SplitReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitReader")
            .field("shards", &self.shards.len())
            .field("len", &self.len)
            .finish()
    }
}

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> CorpusError + '_ {
    move |e| CorpusError::parquet(path, e)
}

impl SplitReader {
    fn new(shards: Vec<ShardEntry>, tokens: u64, dtype: TokenDtype, with_units: bool) -> Self {
        let len = shards.last().map_or(0, |s| s.first.saturating_add(s.rows));
        Self {
            shards,
            len,
            tokens,
            dtype,
            with_units,
            footers: VecDeque::new(),
            groups: VecDeque::new(),
            cache_groups: DEFAULT_CACHED_ROW_GROUPS,
        }
    }

    /// A reader of one shard file on its own, with no manifest: its rows are the ones its
    /// footer lists, its `input_ids` must be of `dtype`, and its token count is not known
    /// (0). For the `shard` fuzz target, which feeds it untrusted files: any content gives
    /// sequences or an error.
    pub fn single_shard(path: &Path, dtype: TokenDtype) -> Result<Self, CorpusError> {
        let footer = Footer::load(0, path, dtype, false)?;
        let rows = footer.rows();
        let entry = ShardEntry {
            path: path.to_path_buf(),
            first: 0,
            rows,
        };
        let mut reader = Self::new(vec![entry], 0, dtype, false);
        reader.footers.push_front(footer);
        Ok(reader)
    }

    /// Number of sequences.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens over all sequences ([CLS] / [SEP] included).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Keeps up to `n` (at least 1) decoded row groups.
    pub fn set_cached_row_groups(&mut self, n: usize) {
        self.cache_groups = n.max(1);
        self.groups.truncate(self.cache_groups);
    }

    /// Sequence `index` of the split.
    pub fn get(&mut self, index: u64) -> Result<Sequence, CorpusError> {
        let (g, row) = self.locate(index)?;
        let (a, b) = (g.offsets[row], g.offsets[row + 1]);
        Ok(Sequence {
            input_ids: g.ids[a..b].to_vec(),
            word_starts: g.starts[a..b].to_vec(),
            unit_starts: g.units.as_ref().map(|u| u[a..b].to_vec()),
        })
    }

    /// The length in tokens of sequence `index`, without copying it out.
    pub fn sequence_len(&mut self, index: u64) -> Result<usize, CorpusError> {
        let (g, row) = self.locate(index)?;
        Ok(g.offsets[row + 1] - g.offsets[row])
    }

    /// The decoded row group holding `index` (decoding it if it is not cached), and the
    /// row in it.
    fn locate(&mut self, index: u64) -> Result<(&DecodedGroup, usize), CorpusError> {
        if index >= self.len {
            return Err(CorpusError::OutOfRange {
                index,
                len: self.len,
            });
        }
        let position = match self
            .groups
            .iter()
            .position(|g| index >= g.first && index < g.first + g.rows())
        {
            Some(p) => p,
            None => {
                let group = self.decode_group_of(index)?;
                if self.groups.len() >= self.cache_groups {
                    self.groups.pop_back();
                }
                self.groups.push_front(group);
                0
            }
        };
        let g = &self.groups[position];
        Ok((g, (index - g.first) as usize))
    }

    fn footer(&mut self, shard: usize) -> Result<&Footer, CorpusError> {
        if let Some(p) = self.footers.iter().position(|f| f.shard == shard) {
            return Ok(&self.footers[p]);
        }
        let path = &self.shards[shard].path;
        let footer = Footer::load(shard, path, self.dtype, self.with_units)?;
        if footer.rows() != self.shards[shard].rows {
            return Err(CorpusError::prepared(
                path.parent().unwrap_or(Path::new(".")),
                format!(
                    "{} holds {} rows, the manifest says {}",
                    path.display(),
                    footer.rows(),
                    self.shards[shard].rows
                ),
            ));
        }
        if self.footers.len() >= CACHED_FOOTERS {
            self.footers.pop_back();
        }
        self.footers.push_front(footer);
        Ok(&self.footers[0])
    }

    fn decode_group_of(&mut self, index: u64) -> Result<DecodedGroup, CorpusError> {
        let shard = self.shards.partition_point(|s| s.first + s.rows <= index);
        let shard_first = self.shards[shard].first;
        let path = self.shards[shard].path.clone();
        let with_units = self.with_units;
        let footer = self.footer(shard)?;
        let group = footer
            .group_starts
            .partition_point(|&s| s <= index - shard_first)
            - 1;
        let rows = (footer.group_starts[group + 1] - footer.group_starts[group]) as usize;
        let mut decoded = DecodedGroup::new(shard_first + footer.group_starts[group], with_units);
        let reader = read_row_group(footer, &path, group, rows)
            .map_err(|e| bad_shard(&path, &format!("row group {group}: {e}")))?;
        // A corrupt page can panic inside the decoder (untrusted.rs): an error naming the
        // shard and row group, like any other corrupt shard. Collecting stops at the first
        // error: after one, the batch reader returns the same error again and again.
        let batches = guarded(|| reader.collect::<Result<Vec<_>, _>>())
            .map_err(|panic| format!("the decoder failed: {panic}"))
            .and_then(|batches| batches.map_err(|e| e.to_string()))
            .map_err(|what| bad_shard(&path, &format!("row group {group}: {what}")))?;
        for batch in batches {
            decoded
                .append(&batch)
                .map_err(|what| bad_shard(&path, &what))?;
        }
        if decoded.rows() as usize != rows {
            let what = format!(
                "row group {group} decoded to {} rows, not {rows}",
                decoded.rows()
            );
            return Err(bad_shard(&path, &what));
        }
        Ok(decoded)
    }
}

/// A reader of row group `group` (`rows` rows, one batch) of the shard at `path`.
fn read_row_group(
    footer: &Footer,
    path: &Path,
    group: usize,
    rows: usize,
) -> Result<ParquetRecordBatchReader, CorpusError> {
    let file = footer
        .file
        .try_clone()
        .map_err(|e| CorpusError::io("cannot open", path, e))?;
    ParquetRecordBatchReaderBuilder::new_with_metadata(file, footer.metadata.clone())
        .with_row_groups(vec![group])
        .with_batch_size(rows.max(1))
        .build()
        .map_err(pq_err(path))
}

/// A shard whose content is not what `prepare` writes.
fn bad_shard(path: &Path, what: &str) -> CorpusError {
    CorpusError::prepared(
        path.parent().unwrap_or(Path::new(".")),
        format!("{}: {what}", path.display()),
    )
}

fn list_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ListArray, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| format!("no {name} list column"))
}

impl DecodedGroup {
    fn new(first: u64, with_units: bool) -> Self {
        Self {
            first,
            ids: Vec::new(),
            starts: Vec::new(),
            units: with_units.then(Vec::new),
            offsets: vec![0],
        }
    }

    /// Appends the rows of a decoded batch; the error says what is wrong with it.
    fn append(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let ids = list_column(batch, INPUT_IDS)?;
        let id_offsets = ids.value_offsets();
        let base = self.ids.len();
        let first = id_offsets[0] as usize;
        self.append_ids(ids.values(), first..id_offsets[ids.len()] as usize)?;
        append_flags(&mut self.starts, batch, WORD_START, id_offsets)?;
        if let Some(units) = self.units.as_mut() {
            append_flags(units, batch, UNIT_START, id_offsets)?;
        }
        self.offsets
            .extend(id_offsets[1..].iter().map(|&o| base + o as usize - first));
        Ok(())
    }

    /// Appends `values[range]` as u32 ids (shards store u16 for small vocabularies).
    fn append_ids(&mut self, values: &ArrayRef, range: Range<usize>) -> Result<(), String> {
        match values.data_type() {
            DataType::UInt16 => self.ids.extend(
                values.as_primitive::<UInt16Type>().values()[range]
                    .iter()
                    .map(|&v| u32::from(v)),
            ),
            DataType::UInt32 => self
                .ids
                .extend_from_slice(&values.as_primitive::<UInt32Type>().values()[range]),
            other => return Err(format!("input_ids of type {other}")),
        }
        Ok(())
    }
}

/// Appends the boolean list column `name` of `batch`, whose rows must have the lengths of
/// the `input_ids` rows (`id_offsets`): equal totals are not enough.
fn append_flags(
    out: &mut Vec<bool>,
    batch: &RecordBatch,
    name: &str,
    id_offsets: &[i32],
) -> Result<(), String> {
    let flags = list_column(batch, name)?;
    let offsets = flags.value_offsets();
    let row_len = |offsets: &[i32], row: usize| offsets[row + 1] - offsets[row];
    let rows = id_offsets.len() - 1;
    if flags.len() != rows {
        return Err(format!("{name} has {} rows, input_ids {rows}", flags.len()));
    }
    if let Some(row) = (0..rows).find(|&r| row_len(id_offsets, r) != row_len(offsets, r)) {
        return Err(format!("row {row}: {name} and input_ids differ in length"));
    }
    let values = flags
        .values()
        .as_boolean_opt()
        .ok_or_else(|| format!("{name} of type {}", flags.value_type()))?;
    let range = offsets[0] as usize..offsets[rows] as usize;
    out.extend(range.map(|i| values.value(i)));
    Ok(())
}

#[cfg(test)]
mod tests;
