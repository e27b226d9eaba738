use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mlm-integrity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid safetensors file: one f32 tensor of `n` values.
fn safetensors_bytes(n: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"__metadata__":{{"format":"pt"}},"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        4 * n
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..4 * n).map(|i| i as u8));
    bytes
}

fn sample(name: &str) -> Dir {
    let dir = Dir::new(name);
    std::fs::write(dir.0.join("model.safetensors"), safetensors_bytes(64)).unwrap();
    std::fs::write(dir.0.join("state.json"), b"{\"step\": 4}\n").unwrap();
    std::fs::write(dir.0.join("sub/notes.txt"), b"hello").unwrap();
    write_for_dir(&dir.0, KIND_EXPORT).unwrap();
    dir
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_written_directory_verifies_at_both_levels() {
    let dir = sample("ok");
    assert_eq!(
        verify(&dir.0, Level::Fast).unwrap(),
        Verified::Checked { files: 3 }
    );
    assert_eq!(
        verify(&dir.0, Level::Full).unwrap(),
        Verified::Checked { files: 3 }
    );
    let names: Vec<String> = Integrity::read(&dir.0)
        .unwrap()
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["model.safetensors", "state.json", "sub/notes.txt"]);
}

#[test]
fn a_directory_without_a_manifest_is_reported_as_such() {
    let dir = Dir::new("none");
    assert_eq!(verify(&dir.0, Level::Full).unwrap(), Verified::NoManifest);
}

#[test]
fn missing_truncated_and_flipped_files_are_named() {
    let dir = sample("bad");
    let model = dir.0.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();

    flip(&model, bytes.len() - 10);
    let error = verify(&dir.0, Level::Full).unwrap_err();
    assert!(matches!(error, IntegrityError::Hash { .. }), "{error}");
    assert_eq!(error.path(), model);

    std::fs::write(&model, &bytes[..bytes.len() - 4]).unwrap();
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(error.to_string().contains("truncated"), "{error}");
    assert_eq!(error.path(), model);

    std::fs::remove_file(&model).unwrap();
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(matches!(error, IntegrityError::Missing { .. }), "{error}");
}

#[test]
fn the_fast_level_checks_headers_and_hashes_small_files() {
    let dir = sample("fast");
    flip(&dir.0.join("state.json"), 3);
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(
        error.to_string().contains("state.json is corrupt"),
        "{error}"
    );

    let dir = sample("header");
    let model = dir.0.join("model.safetensors");
    // The header's length field: the header no longer fits the file.
    flip(&model, 6);
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(matches!(error, IntegrityError::Header { .. }), "{error}");
    assert!(error.to_string().contains("safetensors header"), "{error}");
}

#[test]
fn a_damaged_manifest_is_told_from_a_damaged_file() {
    let dir = sample("manifest");
    let path = dir.0.join(INTEGRITY_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    // A changed hash digit still parses: the manifest's own checksum catches it.
    let position = text.find("\"xxh3\": \"").unwrap() + 9;
    let mut bytes = text.into_bytes();
    bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(
        matches!(error, IntegrityError::ManifestChecksum { .. }),
        "{error}"
    );

    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(matches!(error, IntegrityError::Manifest { .. }), "{error}");
    assert_eq!(error.path(), path);
}

#[test]
fn a_damaged_section_is_named() {
    let dir = Dir::new("sections");
    let path = dir.0.join("data.bin");
    std::fs::write(&path, vec![7u8; 300]).unwrap();
    let sections = [
        ("row group 0".to_owned(), 0, 100),
        ("row group 1".to_owned(), 100, 100),
    ];
    let entry = FileEntry::of_file(&dir.0, "data.bin", &sections).unwrap();
    Integrity::new(vec![entry]).write(&dir.0).unwrap();
    flip(&path, 150);
    let error = verify(&dir.0, Level::Full).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("in row group 1 (bytes 100..200)"),
        "{error}"
    );
    flip(&path, 150);
    flip(&path, 250);
    let error = verify(&dir.0, Level::Full).unwrap_err();
    assert!(
        error.to_string().contains("outside its row groups"),
        "{error}"
    );
}

#[test]
fn parquet_magic_is_checked() {
    let dir = Dir::new("parquet");
    let mut bytes = b"PAR1".to_vec();
    bytes.extend([0u8; 20]);
    bytes.extend(4u32.to_le_bytes());
    bytes.extend(b"PAR1");
    std::fs::write(dir.0.join("train-00000.parquet"), &bytes).unwrap();
    write_for_dir(&dir.0, KIND_EXPORT).unwrap();
    verify(&dir.0, Level::Fast).unwrap();
    let cut = bytes.len() - 1;
    bytes[cut] = b'X';
    std::fs::write(dir.0.join("train-00000.parquet"), &bytes).unwrap();
    let error = verify(&dir.0, Level::Fast).unwrap_err();
    assert!(error.to_string().contains("PAR1"), "{error}");
}
