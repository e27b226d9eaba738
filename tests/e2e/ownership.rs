//! Never destroy what the tool did not write, and one job per directory (issue 24):
//! `export --out` refuses a folder it did not write (and replaces an earlier export only with
//! `--overwrite`); a second main job or prepare on a directory another job holds is refused
//! naming the holder, or waits with `--wait-for-lock`; a killed job's lock blocks nobody.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mlm_durable::{DirLock, WhenHeld};

use crate::train::{metrics, tiny_config, train};
use crate::{Scratch, mlm_train, run};

/// `mlm-train export --checkpoint CHECKPOINT --out OUT [more]`: (success, stderr).
fn export(checkpoint: &Path, out: &Path, more: &[&str]) -> (bool, String) {
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .args(more));
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stderr)
}

/// A user's folder: a note and a file in a subfolder.
fn users_folder(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("notes.txt"), "my notes").unwrap();
    std::fs::write(dir.join("sub/data.bin"), [1u8, 2, 3]).unwrap();
}

fn assert_users_folder_intact(dir: &Path) {
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"my notes");
    assert_eq!(
        std::fs::read(dir.join("sub/data.bin")).unwrap(),
        [1u8, 2, 3]
    );
}

#[test]
fn an_export_never_removes_what_it_did_not_write() {
    let scratch = Scratch::new("own-export");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let checkpoint = scratch.path().join("run/checkpoint-2");

    // A user's folder given as --out survives, with or without --overwrite.
    let foreign = scratch.path().join("models");
    users_folder(&foreign);
    for more in [&[][..], &["--overwrite"][..]] {
        let (ok, stderr) = export(&checkpoint, &foreign, more);
        assert!(!ok, "{more:?}: {stderr}");
        assert!(stderr.contains(&foreign.display().to_string()), "{stderr}");
        assert!(
            stderr.contains("never removes what it did not write"),
            "{stderr}"
        );
        assert_users_folder_intact(&foreign);
        assert!(!foreign.join("config.json").exists());
    }

    // An empty directory is written; an earlier export is replaced only with --overwrite.
    let out = scratch.path().join("hf");
    std::fs::create_dir(&out).unwrap();
    let (ok, stderr) = export(&checkpoint, &out, &[]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = export(&checkpoint, &out, &[]);
    assert!(!ok && stderr.contains("--overwrite"), "{stderr}");
    let (ok, stderr) = export(&checkpoint, &out, &["--overwrite"]);
    assert!(ok, "{stderr}");

    // A file the user added to an export is never removed, even with --overwrite.
    std::fs::write(out.join("README.md"), "model card").unwrap();
    let (ok, stderr) = export(&checkpoint, &out, &["--overwrite"]);
    assert!(!ok && stderr.contains("README.md"), "{stderr}");
    assert_eq!(std::fs::read(out.join("README.md")).unwrap(), b"model card");

    // A checkpoint is not an export: --out at one is refused, the checkpoint untouched.
    let before = std::fs::read(checkpoint.join("model.safetensors")).unwrap();
    let (ok, stderr) = export(&checkpoint, &checkpoint, &["--overwrite"]);
    assert!(!ok && stderr.contains("checkpoint directory"), "{stderr}");
    assert_eq!(
        std::fs::read(checkpoint.join("model.safetensors")).unwrap(),
        before
    );
    assert!(checkpoint.join("optimizer.safetensors").exists() || checkpoint.is_dir());
}

/// Starts the main job on `config` and returns once it has logged its first step.
fn start_job(config: &Path, args: &[&str]) -> Child {
    let mut child = mlm_train()
        .arg("--config")
        .arg(config)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the job ended before a step was logged:\n{seen}");
        seen.push_str(&line);
        if line.starts_with("step ") {
            break;
        }
    }
    // Keep draining stderr so the job never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_second_job_on_a_run_directory_is_refused_naming_the_first() {
    let scratch = Scratch::new("own-two-jobs");
    let config = tiny_config(&scratch, "max_steps = 100000", "");
    let mut first = start_job(&config, &[]);

    let (output, _, stderr) = train(&config, &[]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another job"), "{stderr}");
    assert!(stderr.contains(&format!("pid {} ", first.id())), "{stderr}");
    assert!(
        !stderr.contains("step "),
        "the second job trained: {stderr}"
    );

    signal(&first, "-TERM");
    assert_eq!(first.wait().unwrap().code(), Some(130));
    let steps: Vec<u64> = metrics(&scratch.path().join("run"))
        .iter()
        .filter(|r| r["split"] == "train")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert!(!steps.is_empty());
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "each step once, in order: {steps:?}"
    );
}

#[test]
fn a_killed_jobs_lock_blocks_nobody() {
    let scratch = Scratch::new("own-killed");
    let config = tiny_config(&scratch, "max_steps = 100000", "");
    let mut first = start_job(&config, &[]);
    signal(&first, "-KILL");
    first.wait().unwrap();
    let (output, _, stderr) = train(&config, &["--stop-after-step", "3"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("in use"), "{stderr}");
}

#[test]
fn a_prepare_waits_for_or_refuses_a_corpus_another_job_writes() {
    let scratch = Scratch::new("own-prepare");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let corpus = scratch.path().join("corpus");
    let (output, _, stderr) = run(mlm_train()
        .args(["vocab", "train", "--config"])
        .arg(&config));
    assert!(output.status.success(), "{stderr}");
    // This test process plays the other job.
    let holder =
        DirLock::acquire(&corpus, ".mlm-train-prepare.lock", WhenHeld::Refuse, |_| {}).unwrap();

    let (output, _, stderr) = run(mlm_train().arg("prepare").arg("--config").arg(&config));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another job"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {} ", std::process::id())),
        "{stderr}"
    );
    assert!(!corpus.join("manifest.json").exists());
    // The main job's own prepare stage is held off the same way.
    let (output, _, stderr) = train(&config, &[]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another job"), "{stderr}");

    let mut waiting = mlm_train()
        .args(["prepare", "--wait-for-lock", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting.try_wait().unwrap().is_none(), "it waits");
    assert!(!corpus.join("manifest.json").exists());
    drop(holder);
    let output = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for"), "{stderr}");
    assert!(corpus.join("manifest.json").exists());
}
