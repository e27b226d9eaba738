use std::io::Write;

use super::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mlm-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A directory `name` holding `file` = `content` and `sub/inner` = `content`.
fn filled_dir(scratch: &Scratch, name: &str, content: &str) -> PathBuf {
    let dir = scratch.join(name);
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("file"), content).unwrap();
    fs::write(dir.join("sub/inner"), content).unwrap();
    dir
}

#[test]
fn a_file_is_written_whole_and_no_temporary_stays() {
    let scratch = Scratch::new("write");
    let path = scratch.join("state.json");
    let value = write_file_atomically(&path, |file| {
        file.write_all(b"{}\n")?;
        Ok(7)
    })
    .unwrap();
    assert_eq!(value, 7);
    assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    assert_eq!(scratch.names(), ["state.json"]);
    // Rewriting replaces the content.
    write_file_atomically(&path, |file| file.write_all(b"[]\n")).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "[]\n");
}

#[test]
fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
    let scratch = Scratch::new("write-fails");
    let path = scratch.join("state.json");
    fs::write(&path, "old").unwrap();
    let error = write_file_atomically(&path, |file| {
        file.write_all(b"half")?;
        Err::<(), _>(io::Error::other("disk full"))
    })
    .unwrap_err();
    assert_eq!(error.operation(), Operation::Write);
    assert_eq!(error.path(), temp_path(&path));
    assert_eq!(error.io_error().to_string(), "disk full");
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(scratch.names(), ["state.json"]);
}

#[test]
fn a_chosen_temporary_name_is_used_and_renamed_away() {
    let scratch = Scratch::new("write-via");
    let path = scratch.join("events.out.tfevents.1");
    let temp = scratch.join(".partial-events");
    write_file_atomically_via(&path, &temp, |file| file.write_all(b"events")).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"events");
    assert_eq!(scratch.names(), ["events.out.tfevents.1"]);
}

#[test]
fn a_missing_directory_is_a_create_error_naming_the_temporary() {
    let scratch = Scratch::new("write-nodir");
    let path = scratch.join("absent/file");
    let error = write_file_atomically(&path, |file| file.write_all(b"x")).unwrap_err();
    assert_eq!(error.operation(), Operation::Create);
    assert_eq!(error.path(), scratch.join("absent/file.tmp"));
    let message = error.to_string();
    assert!(message.starts_with("cannot create "), "{message}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "keeps the cause"
    );
}

#[test]
fn a_file_written_by_the_caller_is_published() {
    let scratch = Scratch::new("publish-file");
    let path = scratch.join("train-00000.parquet");
    let temp = temp_path(&path);
    assert_eq!(temp, scratch.join("train-00000.parquet.tmp"));
    fs::write(&temp, "rows").unwrap();
    publish_file(&temp, &path).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "rows");
    assert_eq!(scratch.names(), ["train-00000.parquet"]);
    let error = publish_file(&temp, &path).unwrap_err();
    assert_eq!((error.operation(), error.path()), (Operation::Sync, &*temp));
}

#[test]
fn a_tree_is_synced_and_a_missing_one_is_a_list_error() {
    let scratch = Scratch::new("sync-tree");
    let dir = filled_dir(&scratch, "tree", "x");
    sync_tree(&dir).unwrap();
    fsync_dir(&dir).unwrap();
    fsync_file(&dir.join("file")).unwrap();
    let missing = scratch.join("missing");
    let error = sync_tree(&missing).unwrap_err();
    assert_eq!(
        (error.operation(), error.path()),
        (Operation::List, &*missing)
    );
}

#[test]
fn a_directory_is_published_onto_a_free_name_only() {
    let scratch = Scratch::new("publish-dir");
    let temp = filled_dir(&scratch, ".tmp-out", "new");
    let dir = scratch.join("out");
    publish_dir(&temp, &dir).unwrap();
    assert_eq!(fs::read_to_string(dir.join("sub/inner")).unwrap(), "new");
    assert_eq!(scratch.names(), ["out"]);
    // Onto a directory that holds files the rename fails and both stay as they were.
    let temp = filled_dir(&scratch, ".tmp-out", "newer");
    let error = publish_dir(&temp, &dir).unwrap_err();
    assert_eq!(
        (error.operation(), error.path()),
        (Operation::Rename, &*dir)
    );
    assert_eq!(fs::read_to_string(dir.join("file")).unwrap(), "new");
    assert_eq!(fs::read_to_string(temp.join("file")).unwrap(), "newer");
}

#[test]
fn a_directory_replaces_an_existing_one_and_the_aside_is_removed() {
    let scratch = Scratch::new("replace-dir");
    let dir = scratch.join("checkpoint-4");
    let aside = scratch.join(".old-checkpoint-4");
    // Nothing to replace: a plain publish.
    let temp = filled_dir(&scratch, ".tmp-checkpoint-4", "first");
    replace_dir(&temp, &dir, &aside).unwrap();
    assert_eq!(fs::read_to_string(dir.join("file")).unwrap(), "first");
    // Replacing, with a leftover aside of an interrupted replace in the way.
    filled_dir(&scratch, ".old-checkpoint-4", "stale");
    let temp = filled_dir(&scratch, ".tmp-checkpoint-4", "second");
    replace_dir(&temp, &dir, &aside).unwrap();
    assert_eq!(fs::read_to_string(dir.join("sub/inner")).unwrap(), "second");
    assert_eq!(scratch.names(), ["checkpoint-4"]);
}

#[test]
fn a_replace_that_cannot_sync_the_new_directory_changes_nothing() {
    let scratch = Scratch::new("replace-fails");
    let dir = filled_dir(&scratch, "out", "old");
    let aside = scratch.join(".out.old");
    let error = replace_dir(&scratch.join(".out.tmp"), &dir, &aside).unwrap_err();
    assert_eq!(error.operation(), Operation::List);
    assert_eq!(fs::read_to_string(dir.join("file")).unwrap(), "old");
    assert_eq!(scratch.names(), ["out"]);
}

#[test]
fn operations_read_as_verbs() {
    let error = DurableError::new(
        Operation::Rename,
        Path::new("/runs/checkpoint-8"),
        io::Error::other("no space"),
    );
    assert_eq!(
        error.to_string(),
        "cannot rename into place /runs/checkpoint-8"
    );
    let (operation, path, source) = error.into_parts();
    assert_eq!(operation.to_string(), "rename into place");
    assert_eq!(path, Path::new("/runs/checkpoint-8"));
    assert_eq!(source.to_string(), "no space");
}
