use super::*;
use crate::optim::AdamWConfig;

/// A fresh directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mlm-ckpt-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn state(step: u64) -> TrainerState {
    TrainerState {
        global_step: step,
        epoch: 1,
        epoch_position: 7 * step,
        tokens_seen: 128 * step,
        config_hash: "abc".into(),
        schedule: serde_json::json!({"kind": "linear"}),
        ..TrainerState::default()
    }
}

fn weights(contents: &'static str) -> impl FnOnce(&Path) -> Result<(), TrainError> {
    move |dir: &Path| {
        fs::write(dir.join("model.safetensors"), contents)
            .map_err(|e| TrainError::io("write", dir, e))
    }
}

fn steps(manager: &CheckpointManager) -> Vec<u64> {
    manager
        .list()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn save_then_latest_and_read_state() {
    let scratch = Scratch::new("basic");
    let run = scratch.0.join("run");
    let manager = CheckpointManager::new(&run, 3);
    assert_eq!(manager.latest().unwrap(), None, "no run dir yet");
    let mut s = state(10);
    let dir = manager.save(10, weights("w10"), &mut s, None).unwrap();
    assert_eq!(dir, run.join("checkpoint-10"));
    assert_eq!(manager.latest().unwrap(), Some(dir.clone()));
    assert_eq!(CheckpointManager::read_state(&dir).unwrap(), s);
    assert_eq!(
        fs::read_to_string(dir.join("model.safetensors")).unwrap(),
        "w10"
    );
    let leftovers: Vec<_> = fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("checkpoint-10")]);
}

#[test]
fn failed_write_keeps_the_previous_checkpoint_latest_and_valid() {
    let scratch = Scratch::new("failed");
    let manager = CheckpointManager::new(&scratch.0, 2);
    let mut s = state(100);
    let good = manager
        .save(100, weights("good"), &mut s, Some(2.0))
        .unwrap();

    // The writer produces half a file, then fails (disk full, say).
    let mut next = state(200);
    let error = manager
        .save(
            200,
            |dir| {
                fs::write(dir.join("model.safetensors"), "half").unwrap();
                Err(TrainError::from_io_like(dir, "No space left on device"))
            },
            &mut next,
            Some(1.0),
        )
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("checkpoint-200") && message.contains("untouched"),
        "{message}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "keeps the cause"
    );
    assert_eq!(manager.latest().unwrap(), Some(good.clone()));
    assert_eq!(
        fs::read_to_string(good.join("model.safetensors")).unwrap(),
        "good"
    );
    assert_eq!(
        CheckpointManager::read_state(&good).unwrap().global_step,
        100
    );
    assert!(!scratch.0.join("checkpoint-200").exists());
    assert!(
        !scratch.0.join(".tmp-checkpoint-200").exists(),
        "temp dir cleaned up"
    );
    // The failed save did not claim the best.
    assert_eq!(next.best_metric, None);
    assert_eq!(s.best_checkpoint.as_deref(), Some("checkpoint-100"));
}

#[test]
fn a_crash_mid_write_is_invisible_and_cleaned_up_later() {
    let scratch = Scratch::new("crash");
    let manager = CheckpointManager::new(&scratch.0, 2);
    let mut s = state(100);
    let good = manager.save(100, weights("good"), &mut s, None).unwrap();
    // A panicking writer stands in for a killed process: its temp dir stays behind.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut next = state(200);
        let _ = manager.save(
            200,
            |dir| {
                fs::write(dir.join("model.safetensors"), "partial").unwrap();
                panic!("killed");
            },
            &mut next,
            None,
        );
    }));
    assert!(panicked.is_err());
    assert!(scratch.0.join(".tmp-checkpoint-200").exists());
    // A directory that looks like a checkpoint but has no state file is not one either.
    fs::create_dir(scratch.0.join("checkpoint-300")).unwrap();
    fs::write(scratch.0.join("checkpoint-300/model.safetensors"), "x").unwrap();
    assert_eq!(manager.latest().unwrap(), Some(good));

    let mut next = state(200);
    manager.save(200, weights("w200"), &mut next, None).unwrap();
    assert!(!scratch.0.join(".tmp-checkpoint-200").exists());
    assert_eq!(
        manager.latest().unwrap(),
        Some(scratch.0.join("checkpoint-200"))
    );
}

#[test]
fn keeps_the_last_k_plus_the_best() {
    let scratch = Scratch::new("rotate");
    let manager = CheckpointManager::new(&scratch.0, 2);
    let mut s = state(0);
    let saves = [
        (100, Some(3.0)),
        (200, Some(1.0)),
        (300, Some(2.0)),
        (400, None),
        (500, Some(f64::NAN)),
        (600, Some(1.5)),
    ];
    for (step, metric) in saves {
        s.global_step = step;
        manager.save(step, weights("w"), &mut s, metric).unwrap();
    }
    assert_eq!(steps(&manager), vec![200, 500, 600]);
    assert_eq!(s.best_metric, Some(1.0));
    assert_eq!(s.best_checkpoint.as_deref(), Some("checkpoint-200"));
    let written = CheckpointManager::read_state(&scratch.0.join("checkpoint-600")).unwrap();
    assert_eq!(written.best_checkpoint.as_deref(), Some("checkpoint-200"));

    // A new best moves the protection: 200 is then just old.
    s.global_step = 700;
    manager.save(700, weights("w"), &mut s, Some(0.5)).unwrap();
    assert_eq!(steps(&manager), vec![600, 700]);
    assert_eq!(s.best_checkpoint.as_deref(), Some("checkpoint-700"));
}

#[test]
fn keep_last_zero_keeps_everything() {
    let scratch = Scratch::new("keepall");
    let manager = CheckpointManager::new(&scratch.0, 0);
    let mut s = state(0);
    for step in [1, 2, 3, 4] {
        manager.save(step, weights("w"), &mut s, None).unwrap();
    }
    assert_eq!(steps(&manager), vec![1, 2, 3, 4]);
}

#[test]
fn resaving_a_step_replaces_it() {
    let scratch = Scratch::new("replace");
    let manager = CheckpointManager::new(&scratch.0, 2);
    let mut s = state(50);
    manager.save(50, weights("first"), &mut s, None).unwrap();
    let dir = manager.save(50, weights("second"), &mut s, None).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("model.safetensors")).unwrap(),
        "second"
    );
    assert_eq!(steps(&manager), vec![50]);
    assert!(!scratch.0.join(".old-checkpoint-50").exists());
}

#[test]
fn rewinding_drops_checkpoints_of_the_abandoned_future() {
    let scratch = Scratch::new("rewind");
    let manager = CheckpointManager::new(&scratch.0, 5);
    let mut s = state(0);
    for step in [100, 200, 300] {
        manager.save(step, weights("w"), &mut s, None).unwrap();
    }
    // Resumed from checkpoint-100, the run saves at 150: 200 and 300 are another history.
    let mut resumed = CheckpointManager::read_state(&scratch.0.join("checkpoint-100")).unwrap();
    manager.save(150, weights("w"), &mut resumed, None).unwrap();
    assert_eq!(steps(&manager), vec![100, 150]);
    assert_eq!(
        manager.latest().unwrap(),
        Some(scratch.0.join("checkpoint-150"))
    );
}

#[test]
fn save_with_writes_optimizer_and_config() {
    let scratch = Scratch::new("extras");
    let manager = CheckpointManager::new(&scratch.0, 1);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = (vs.root() / "layer").zeros("weight", &[2, 2]);
    let optimizer = AdamW::new(&vs, AdamWConfig::default());
    let extras = CheckpointExtras {
        optimizer: Some(&optimizer),
        resolved_config: Some("[training]\nmax_steps = 3\n"),
    };
    let mut s = state(3);
    let dir = manager
        .save_with(3, extras, weights("w"), &mut s, None)
        .unwrap();
    assert_eq!(
        fs::read_to_string(dir.join(RESOLVED_CONFIG_FILE)).unwrap(),
        "[training]\nmax_steps = 3\n"
    );
    let mut restored = AdamW::new(&vs, AdamWConfig::default());
    restored.load(&dir.join(OPTIMIZER_FILE)).unwrap();
}

#[test]
fn unreadable_state_names_the_file() {
    let scratch = Scratch::new("badstate");
    let dir = scratch.0.join("checkpoint-5");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(STATE_FILE), "{\"global_step\": \"five\"}").unwrap();
    let message = CheckpointManager::read_state(&dir).unwrap_err().to_string();
    assert!(message.contains("trainer_state.json"), "{message}");
    let missing = CheckpointManager::read_state(&scratch.0)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("could not read"), "{missing}");
}

fn weights_bin(contents: &'static str) -> impl FnOnce(&Path) -> Result<(), TrainError> {
    move |dir: &Path| {
        fs::write(dir.join("weights.bin"), contents).map_err(|e| TrainError::io("write", dir, e))
    }
}

#[test]
fn every_checkpoint_lists_its_files_and_a_damaged_newest_is_passed_over() {
    let scratch = Scratch::new("intact");
    let manager = CheckpointManager::new(&scratch.0.join("run"), 0);
    let mut s = state(4);
    let older = manager.save(4, weights_bin("w4"), &mut s, None).unwrap();
    let newest = manager.save(8, weights_bin("w8"), &mut s, None).unwrap();
    let listed = mlm_integrity::verify(&newest, Level::Full).unwrap();
    assert_eq!(listed, Verified::Checked { files: 2 }, "weights and state");

    fs::write(newest.join("weights.bin"), "w9").unwrap();
    let search = manager.latest_intact().unwrap();
    assert_eq!(search.found, Some((older, Verified::Checked { files: 2 })));
    assert_eq!(search.refused.len(), 1);
    let (refused, error) = &search.refused[0];
    assert_eq!(refused, &newest);
    let reason = std::error::Error::source(error).unwrap().to_string();
    assert!(reason.contains("weights.bin is corrupt"), "{reason}");

    // A checkpoint of an earlier version (no integrity.json) is taken as it is.
    fs::remove_file(newest.join("integrity.json")).unwrap();
    let search = manager.latest_intact().unwrap();
    assert_eq!(search.found, Some((newest, Verified::NoManifest)));
}

#[test]
fn rotation_and_resaves_never_remove_a_directory_they_cannot_prove_they_wrote() {
    let scratch = Scratch::new("foreign");
    let manager = CheckpointManager::new(&scratch.0, 1);
    // A Hugging Face Trainer checkpoint copied into the run directory (no integrity.json).
    let theirs = scratch.0.join("checkpoint-1");
    fs::create_dir_all(&theirs).unwrap();
    fs::write(theirs.join(STATE_FILE), "{}").unwrap();
    fs::write(theirs.join("pytorch_model.bin"), "theirs").unwrap();
    let mut s = state(2);
    manager.save(2, weights("w2"), &mut s, None).unwrap();
    manager.save(3, weights("w3"), &mut s, None).unwrap();
    assert!(
        theirs.join("pytorch_model.bin").exists(),
        "rotation left it"
    );
    assert!(
        !scratch.0.join("checkpoint-2").exists(),
        "ours rotated away"
    );

    // A file added to one of ours makes it not provably ours: kept by rotation too.
    fs::write(scratch.0.join("checkpoint-3/notes.txt"), "mine").unwrap();
    manager.save(4, weights("w4"), &mut s, None).unwrap();
    assert!(scratch.0.join("checkpoint-3/notes.txt").exists());

    // Re-saving the foreign step is refused rather than replacing it.
    let error = manager.save(1, weights("w1"), &mut s, None).unwrap_err();
    assert!(error.to_string().contains("checkpoint-1"), "{error}");
    assert!(
        format!("{:?}", error).contains("ForeignCheckpoint"),
        "{error:?}"
    );
    assert_eq!(
        fs::read(theirs.join("pytorch_model.bin")).unwrap(),
        b"theirs"
    );
}

#[test]
fn one_of_ours_with_a_damaged_integrity_list_is_still_replaced() {
    let scratch = Scratch::new("damaged-list");
    let manager = CheckpointManager::new(&scratch.0, 2);
    let mut s = state(4);
    let dir = manager.save(4, weights("w4"), &mut s, None).unwrap();
    let manifest = dir.join(mlm_integrity::INTEGRITY_FILE);
    let text = fs::read_to_string(&manifest).unwrap();
    // A flipped hash digit: the list's own checksum fails, resume passes the checkpoint over.
    let damaged = text.replacen("\"xxh3\": \"", "\"xxh3\": \"f", 1);
    fs::write(&manifest, damaged).unwrap();
    assert!(verify_checkpoint(&dir, Level::Fast).is_err());
    manager.save(4, weights("again"), &mut s, None).unwrap();
    assert_eq!(fs::read(dir.join("model.safetensors")).unwrap(), b"again");
}
