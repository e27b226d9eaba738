//! Expanding `inputs` (files, globs, directories) into an ordered list of files with their
//! formats. Order matters (MEDLINE update files must follow the baseline they revise), so
//! every expansion is sorted by path and the patterns keep the order they are given in.

use std::path::{Path, PathBuf};

use super::ResolvedFormat;
use crate::config::InputFormat;
use crate::error::CorpusError;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: ResolvedFormat,
    /// Size on disk (compressed size for gzip): the unit of progress and ETA.
    pub bytes: u64,
    /// Read from `validation_inputs`.
    pub held_out: bool,
}

/// The format of `path` by extension, after an optional `.gz`.
pub fn format_by_extension(path: &Path) -> Option<ResolvedFormat> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "txt" | "text" => Some(ResolvedFormat::Text),
        "jsonl" | "json" | "ndjson" => Some(ResolvedFormat::Jsonl),
        "parquet" => Some(ResolvedFormat::Parquet),
        "xml" => Some(ResolvedFormat::Medline),
        _ => None,
    }
}

fn resolve_format(path: &Path, format: InputFormat) -> Result<ResolvedFormat, CorpusError> {
    Ok(match format {
        InputFormat::Text => ResolvedFormat::Text,
        InputFormat::Jsonl => ResolvedFormat::Jsonl,
        InputFormat::Parquet => ResolvedFormat::Parquet,
        InputFormat::Medline => ResolvedFormat::Medline,
        InputFormat::Auto => format_by_extension(path).ok_or_else(|| {
            CorpusError::config_value(
                "corpus",
                "format",
                "\"auto\"",
                format!(
                    "cannot tell the format of {} from its extension; set corpus.format = \"text\" | \"jsonl\" | \"parquet\" | \"medline\"",
                    path.display()
                ),
            )
        })?,
    })
}

/// Files under `dir`, recursively, sorted; with `format = "auto"` only files of a known
/// extension (a directory may hold READMEs and checksums beside the data).
fn walk(dir: &Path, format: InputFormat, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CorpusError::io("cannot list", dir, e))? {
        let entry = entry.map_err(|e| CorpusError::io("cannot list", dir, e))?;
        entries.push(entry.path());
    }
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, format, out)?;
        } else if format != InputFormat::Auto || format_by_extension(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands patterns into files, in order, each file once (a file listed twice is read once,
/// at its first place).
pub fn discover_inputs(
    patterns: &[String],
    format: InputFormat,
    held_out: bool,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<Vec<InputFile>, CorpusError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let mut paths = Vec::new();
        let path = Path::new(pattern);
        if path.is_dir() {
            walk(path, format, &mut paths)?;
        } else if path.exists() {
            paths.push(path.to_path_buf());
        } else {
            // Like a shell, `*` does not match a leading dot (hidden files, editor backups).
            let options = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..glob::MatchOptions::new()
            };
            let matches = glob::glob_with(pattern, options).map_err(|e| {
                CorpusError::config(
                    "corpus",
                    "inputs",
                    format!("holds a bad glob pattern `{pattern}`: {e}"),
                )
            })?;
            for m in matches {
                let p = m.map_err(|e| {
                    let path = e.path().to_path_buf();
                    CorpusError::io("cannot read", path, e.into())
                })?;
                if p.is_dir() {
                    walk(&p, format, &mut paths)?;
                } else {
                    paths.push(p);
                }
            }
            paths.sort();
        }
        if paths.is_empty() {
            return Err(CorpusError::NoInputs {
                pattern: pattern.clone(),
            });
        }
        for path in paths {
            if !seen.insert(path.clone()) {
                continue;
            }
            let format = resolve_format(&path, format)?;
            // An unreadable file is reported when it is read (under the bad-record policy).
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            files.push(InputFile {
                path,
                format,
                bytes,
                held_out,
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(
            format_by_extension(Path::new("a/b.jsonl.gz")),
            Some(ResolvedFormat::Jsonl)
        );
        assert_eq!(
            format_by_extension(Path::new("pubmed25n0001.xml.gz")),
            Some(ResolvedFormat::Medline)
        );
        assert_eq!(
            format_by_extension(Path::new("x.TXT")),
            Some(ResolvedFormat::Text)
        );
        assert_eq!(
            format_by_extension(Path::new("x.parquet")),
            Some(ResolvedFormat::Parquet)
        );
        assert_eq!(format_by_extension(Path::new("x.md5")), None);
        assert_eq!(format_by_extension(Path::new("README")), None);
    }

    #[test]
    fn globs_and_directories_expand_sorted_and_once() {
        let dir = std::env::temp_dir().join(format!("mlm-corpus-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for name in [
            "b.txt",
            "a.txt",
            "sub/c.jsonl",
            "sub/notes.md5",
            ".hidden.txt",
        ] {
            std::fs::write(dir.join(name), "x\n").unwrap();
        }
        let mut seen = Default::default();
        let pat = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let files = discover_inputs(
            &[pat("b.txt"), pat("*.txt"), pat("sub")],
            InputFormat::Auto,
            false,
            &mut seen,
        )
        .unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["b.txt", "a.txt", "sub/c.jsonl"]);
        let err = discover_inputs(&[pat("nothing*.txt")], InputFormat::Auto, false, &mut seen)
            .unwrap_err();
        assert!(err.to_string().contains("matches no file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
