//! Disk full and unwritable output, on small tmpfs mounts: a clear error naming the path and
//! "No space left on device", the last good checkpoint intact and chosen on rerun.
//!
//! Mounting needs root, so the tests that mount are `#[ignore]`d: the runner counts them as
//! skipped, and `.ci/run` (root) runs them with `--ignored`. Once run, a mount that fails is a
//! failure, never a silent pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::crash::assert_clean_failure;
use crate::train::{tiny_config, train};
use crate::{Scratch, mlm_train, run};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Panics (the test fails) when this process may not mount: run as root.
    fn tmpfs(at: &Path, options: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs (the tmpfs tests need root)");
        let reason = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "cannot mount a tmpfs on {} (the tmpfs tests need root): {reason}",
            at.display()
        );
        Self(at.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn checkpoints(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("checkpoint"))
        .collect();
    names.sort();
    names
}

#[test]
#[ignore = "mounts a tmpfs (root): .ci/run runs it with --ignored"]
fn a_full_disk_stops_the_run_naming_the_path_and_the_last_checkpoint_survives() {
    let scratch = Scratch::new("disk-full");
    let config = tiny_config(
        &scratch,
        "max_steps = 8",
        "[checkpoint]\nsave_steps = 4\nkeep_last = 1",
    );
    // Room for one checkpoint (about 450 kB) and the logs, not for a second beside it.
    let mount = Mount::tmpfs(&scratch.path().join("small"), "size=700k");
    let run_dir = mount.0.join("run");
    let output_dir = format!("training.output_dir={}", run_dir.display());
    let (output, _, stderr) = train(&config, &["--set", &output_dir]);
    assert_clean_failure(&output, 1, &stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains(&run_dir.display().to_string()), "{stderr}");
    assert_eq!(checkpoints(&run_dir), ["checkpoint-4"], "no temporary left");
    let (output, _, stderr) = run(mlm_train()
        .args(["inspect", "--verify"])
        .arg(run_dir.join("checkpoint-4")));
    assert!(
        output.status.success(),
        "the last checkpoint is intact: {stderr}"
    );

    // Space freed: the rerun resumes from the last good checkpoint and finishes.
    mount.remount("size=8m");
    let (output, _, stderr) = train(&config, &["--set", &output_dir]);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("checkpoint-4 at step 4"), "{stderr}");
    assert_eq!(checkpoints(&run_dir), ["checkpoint-8"]);
}

#[test]
#[ignore = "mounts a tmpfs (root): .ci/run runs it with --ignored"]
fn a_full_disk_during_prepare_is_named_and_the_rerun_finishes() {
    let scratch = Scratch::new("disk-full-prepare");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let mount = Mount::tmpfs(&scratch.path().join("small"), "size=8k");
    let corpus = mount.0.join("corpus");
    let output = format!("corpus.output={}", corpus.display());
    let (result, _, stderr) = train(&config, &["--set", &output]);
    assert_clean_failure(&result, 1, &stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains(&corpus.display().to_string()), "{stderr}");
    assert!(
        !corpus.join("manifest.json").exists(),
        "no corpus looks complete"
    );

    mount.remount("size=8m");
    let (result, _, stderr) = train(&config, &["--set", &output]);
    assert!(result.status.success(), "{stderr}");
    let (result, _, stderr) = run(mlm_train().args(["inspect", "--verify"]).arg(&corpus));
    assert!(result.status.success(), "{stderr}");
}

#[test]
fn a_file_in_place_of_the_output_directory_is_named() {
    let scratch = Scratch::new("unwritable");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    // A file where the run directory should be (root ignores permission bits, not this).
    let file = scratch.write("not-a-directory", "x");
    let (output, _, stderr) = train(
        &config,
        &["--set", &format!("training.output_dir={}", file.display())],
    );
    assert_clean_failure(&output, 1, &stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
#[ignore = "mounts a tmpfs (root): .ci/run runs it with --ignored"]
fn a_read_only_output_is_named() {
    let scratch = Scratch::new("read-only");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let mount = Mount::tmpfs(&scratch.path().join("read-only"), "ro,size=1m");
    let run_dir = mount.0.join("run");
    let (output, _, stderr) = train(
        &config,
        &[
            "--set",
            &format!("training.output_dir={}", run_dir.display()),
        ],
    );
    assert_clean_failure(&output, 1, &stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(stderr.contains(&run_dir.display().to_string()), "{stderr}");
}
