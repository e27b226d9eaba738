//! Outputs the tool did not write, and directories another job holds (issue 24): refused
//! naming the path (and the holder), with nothing removed or written.

use mlm_durable::{DirLock, WhenHeld};

use super::{Case, check_all};
use crate::Scratch;
use crate::train::{tiny_config, train};

#[test]
fn outputs_the_tool_did_not_write_or_another_job_holds_are_refused() {
    let scratch = Scratch::new("catalogue-ownership");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let checkpoint = scratch.path().join("run/checkpoint-2");
    let foreign = scratch.path().join("models");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "my notes").unwrap();
    let file = scratch.write("a-file", "x");
    let export = |name: &'static str, out: &std::path::Path, more: &[&str]| {
        Case::new(
            name,
            [
                "export".as_ref(),
                "--checkpoint".as_ref(),
                checkpoint.as_os_str(),
            ],
        )
        .more_args(&["--out".as_ref(), out.as_os_str()])
        .more_args(more)
        .names(&[&out.display().to_string()])
    };
    // This test process plays the job that holds the run directory and the corpus.
    let run_dir = scratch.path().join("run");
    let corpus = scratch.path().join("corpus");
    let _run = DirLock::acquire(&run_dir, ".mlm-train-run.lock", WhenHeld::Refuse, |_| {}).unwrap();
    let _corpus =
        DirLock::acquire(&corpus, ".mlm-train-prepare.lock", WhenHeld::Refuse, |_| {}).unwrap();
    let holder = format!("pid {} ", std::process::id());
    let cases = vec![
        export("export_into_a_users_folder", &foreign, &[])
            .names(&["never removes what it did not write"])
            .absent(foreign.join("config.json")),
        export(
            "export_overwrite_a_users_folder",
            &foreign,
            &["--overwrite"],
        )
        .names(&["never removes what it did not write"])
        .absent(foreign.join("config.json")),
        export("export_over_a_checkpoint", &checkpoint, &["--overwrite"])
            .names(&["checkpoint directory"])
            .absent(checkpoint.join("tokenizer.json.tmp")),
        export("export_onto_a_file", &file, &[]).names(&["not a directory"]),
        Case::new("second_main_job", ["--config".as_ref(), config.as_os_str()]).names(&[
            "in use by another job",
            &holder,
            &run_dir.display().to_string(),
        ]),
        Case::new(
            "second_prepare",
            ["prepare".as_ref(), "--config".as_ref(), config.as_os_str()],
        )
        .names(&[
            "in use by another job",
            &holder,
            &corpus.display().to_string(),
        ]),
    ];
    check_all(&cases);
    assert_eq!(
        std::fs::read(foreign.join("notes.txt")).unwrap(),
        b"my notes"
    );
    assert!(checkpoint.join("trainer_state.json").exists());
}
