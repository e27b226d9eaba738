//! What a run writes for people to look at: TensorBoard event files (read back with
//! TensorBoard's own reader) and, in `plot`, PNG charts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Scratch;
use crate::train::{metrics, tiny_config, train};

/// Record keys that are not metrics (they are the event's step or its tag prefix).
const NOT_SCALARS: [&str; 3] = ["step", "total_steps", "split"];

/// `tests/python/read_tensorboard.py DIR`: what TensorBoard reads in `dir`.
fn read_tensorboard(dir: &Path) -> serde_json::Value {
    let output = mlm_pyref::run("read_tensorboard.py", [dir]);
    serde_json::from_slice(&output.stdout).expect("read_tensorboard.py prints JSON")
}

/// metrics.jsonl as TensorBoard scalars: `<split>/<key>` -> [(step, value as f32)].
fn expected_scalars(run_dir: &Path) -> BTreeMap<String, Vec<(u64, f32)>> {
    let mut scalars: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
    for record in metrics(run_dir) {
        let step = record["step"].as_u64().unwrap();
        let split = record["split"].as_str().unwrap();
        for (key, value) in record.as_object().unwrap() {
            if let (false, Some(number)) = (NOT_SCALARS.contains(&key.as_str()), value.as_f64()) {
                let tag = format!("{split}/{key}");
                scalars.entry(tag).or_default().push((step, number as f32));
            }
        }
    }
    scalars
}

fn read_scalars(read: &serde_json::Value) -> BTreeMap<String, Vec<(u64, f32)>> {
    read["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points.as_array().unwrap().iter().map(|point| {
                (
                    point[0].as_u64().unwrap(),
                    point[1].as_f64().unwrap() as f32,
                )
            });
            (tag.clone(), points.collect())
        })
        .collect()
}

#[test]
fn tensorboard_reads_every_metric_and_a_resume_appends_without_duplicate_steps() {
    let scratch = Scratch::new("logging-tensorboard");
    let checkpoint = "[checkpoint]\nsave_steps = 4\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 8", checkpoint);
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    // Resumed from step 4 of a run that went on to step 8: steps 5..8 are trained (and
    // logged) again, and must not appear twice.
    let run_dir = scratch.path().join("run");
    let resume_from = run_dir.join("checkpoint-4");
    let (output, _, stderr) = train(&config, &["--resume", resume_from.to_str().unwrap()]);
    assert!(output.status.success(), "{stderr}");

    let read = read_tensorboard(&run_dir.join("runs"));
    assert_eq!(read["duplicates"], serde_json::json!([]), "{read}");
    assert_eq!(read["files"], 1, "one event file after a resume");
    let expected = expected_scalars(&run_dir);
    for tag in [
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "eval/loss",
    ] {
        assert!(expected.contains_key(tag), "{tag} in {expected:?}");
    }
    for tag in ["eval/perplexity", "eval/accuracy", "eval/top5_accuracy"] {
        assert!(expected.contains_key(tag), "{tag} in {expected:?}");
    }
    assert_eq!(read_scalars(&read), expected, "tags, steps and values");
    let train_steps: Vec<u64> = expected["train/loss"].iter().map(|(s, _)| *s).collect();
    assert_eq!(train_steps, (1..=8).collect::<Vec<_>>());

    // The resolved config, as text, at the start of each session.
    let texts = read["texts"]["config"].as_array().unwrap();
    let steps: Vec<u64> = texts.iter().map(|t| t[0].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 4], "{read}");
    assert!(
        texts[0][1].as_str().unwrap().contains("[training]"),
        "{read}"
    );

    // Off by config: no event files.
    let set = "training.output_dir=\"quiet\"";
    let (output, _, stderr) = train(
        &config,
        &[
            "--set",
            set,
            "--set",
            "logging.tensorboard=false",
            "--set",
            "training.max_steps=2",
        ],
    );
    assert!(output.status.success(), "{stderr}");
    assert!(!scratch.path().join("quiet/runs").exists());
}

/// A PNG's width, height and RGBA pixels.
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

/// Distinct colours in an RGB(A) buffer (a blank or text-only chart has very few).
fn colours(pixels: &[u8]) -> usize {
    let set: std::collections::BTreeSet<&[u8]> = pixels.chunks(3).collect();
    set.len()
}

#[test]
fn plots_are_drawn_at_the_end_of_a_run_and_for_several_runs() {
    let scratch = Scratch::new("logging-plots");
    let config = tiny_config(&scratch, "max_steps = 8", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("plots    8 charts in"), "{stderr}");
    // The stages before training report progress too, as plain lines off a terminal.
    assert!(stderr.contains("\nvocab: "), "{stderr}");
    assert!(
        stderr.contains("\nprepare: ") && stderr.contains("% of"),
        "{stderr}"
    );
    // And evaluation, at its second batch here (then every 10 seconds).
    let eval_line = "eval step 0: 16/32 held-out sequences (50%)";
    assert!(stderr.contains(eval_line), "{stderr}");
    let set = [
        "--set",
        "training.output_dir=\"slow\"",
        "--set",
        "training.learning_rate=1e-5",
    ];
    let (output, _, stderr) = train(&config, &set);
    assert!(output.status.success(), "{stderr}");
    let (fast, slow) = (scratch.path().join("run"), scratch.path().join("slow"));

    let names = [
        "train_loss",
        "learning_rate",
        "grad_norm",
        "eval_loss",
        "eval_perplexity",
    ];
    for name in names.iter().chain(&["eval_accuracy", "eval_top5_accuracy"]) {
        let path = fast.join(format!("plots/{name}.png"));
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(bytes > 20_000, "{} is {bytes} bytes", path.display());
        let (width, height, pixels) = decode_png(&path);
        assert_eq!((width, height), (1600, 640), "{}", path.display());
        assert!(
            colours(&pixels) > 50,
            "{} has lines and text",
            path.display()
        );
    }
    // Two runs with different learning rates draw different charts.
    let fast_loss = decode_png(&fast.join("plots/learning_rate.png")).2;
    let slow_loss = decode_png(&slow.join("plots/learning_rate.png")).2;
    assert!(fast_loss != slow_loss);

    // Both runs on one chart, through the command.
    let out = scratch.path().join("compare");
    let (output, stdout, stderr) = crate::run(
        crate::mlm_train()
            .args([
                "plot",
                fast.to_str().unwrap(),
                slow.to_str().unwrap(),
                "--out",
            ])
            .arg(&out),
    );
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    let both = decode_png(&out.join("train_loss.png")).2;
    assert!(both != decode_png(&fast.join("plots/train_loss.png")).2);
    let (output, _, stderr) = crate::run(crate::mlm_train().args(["plot", "no/such/run"]));
    assert!(!output.status.success());
    assert!(stderr.contains("no/such/run/metrics.jsonl"), "{stderr}");
}
