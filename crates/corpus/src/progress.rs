//! Progress reporting from the pipeline to its caller (the CLI draws a bar from it).

/// Counters of a running prepare (or vocabulary training).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes read from input files (compressed bytes for gzip), all passes.
    pub bytes_read: u64,
    /// Total bytes the run will read (the sizes of the inputs, MEDLINE files twice).
    pub bytes_total: u64,
    /// Documents accepted so far.
    pub documents: u64,
    /// Tokens written so far ([CLS]/[SEP] included).
    pub tokens: u64,
    /// Sequences written so far.
    pub sequences: u64,
}

/// Receives progress. Methods are called from the pipeline's threads; implementations
/// should be cheap (the pipeline calls `progress` once per batch).
pub trait Observer: Sync {
    /// A named phase starts (`"scanning MEDLINE versions"`, `"tokenizing"`...).
    fn phase(&self, _name: &str) {}
    fn progress(&self, _progress: &Progress) {}
    /// A record skipped under `on_bad_record = "skip"` or another notable event.
    fn warning(&self, _message: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}
