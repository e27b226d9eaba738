//! Data parallel end to end on CPU with Gloo over 127.0.0.1: ranks started by the project
//! venv's real `torchrun`, by `mlm-train --nproc-per-node`, and as Slurm tasks (a fake
//! `srun` environment). A tiny BERT in float64 with dropout on: N ranks equal one process
//! with the same global batch (within 1e-10), across world sizes on resume too, and a rank
//! that dies or never joins makes the others exit, naming it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{Scratch, mlm_train, run, workspace_root};

/// A from-scratch run over the first 240 sample abstracts: micro-batches of 2 sequences,
/// `accumulation` of them per rank and step; float64, dropout 0.1.
fn config(scratch: &Scratch, accumulation: usize, extra: &str) -> PathBuf {
    let sample = workspace_root().join("data/sample/abstracts.jsonl");
    let text = std::fs::read_to_string(&sample).expect("data/sample/abstracts.jsonl");
    let corpus = text.lines().take(240).collect::<Vec<_>>().join("\n") + "\n";
    scratch.write("abstracts.jsonl", &corpus);
    scratch.write(
        "config.toml",
        &format!(
            r#"
[runtime]
device = "cpu"

[vocab]
vocab_size = 400
output = "tokenizer"

[corpus]
inputs = ["abstracts.jsonl"]
format = "jsonl"
text_fields = ["title", "abstract"]
id_field = "pmid"
validation_fraction = 0.1
tokenizer = "tokenizer"
max_seq_len = 32
output = "corpus"

[model]
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 64
dropout = 0.1

[training]
output_dir = "run"
batch_size = 2
gradient_accumulation_steps = {accumulation}
max_steps = 6
learning_rate = 1e-3
weight_decay = 0.01
warmup_steps = 2
logging_steps = 1
precision = "fp64"

[eval]
eval_steps = 3
eval_batch_size = 8
max_eval_samples = 24

[distributed]
timeout_seconds = 20
{extra}
"#
        ),
    )
}

/// `--config FILE`, the run directory, the accumulation and `args`: a job's command line.
fn job_args(config: &Path, run_dir: &str, accumulation: usize, args: &[&str]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec!["--config".into(), config.into()];
    all.push(format!("--set=training.output_dir=\"{run_dir}\"").into());
    all.push(format!("--set=training.gradient_accumulation_steps={accumulation}").into());
    all.extend(args.iter().map(OsString::from));
    all
}

/// Runs a job to its end (or a requested stop), returning its output and stderr.
fn finished(command: &mut Command) -> (Output, String) {
    let (output, _, stderr) = run(command);
    assert!(matches!(output.status.code(), Some(0 | 130)), "{stderr}");
    (output, stderr)
}

/// One process: the reference.
fn single(config: &Path, run_dir: &str, accumulation: usize, args: &[&str]) -> Output {
    finished(mlm_train().args(job_args(config, run_dir, accumulation, args))).0
}

/// `n` ranks under the project venv's torchrun (agent store, `--standalone` port).
fn torchrun(config: &Path, n: u32, run_dir: &str, accumulation: usize, args: &[&str]) -> String {
    let torchrun = workspace_root().join(".venv/bin/torchrun");
    assert!(torchrun.exists(), "{} (scripts/setup)", torchrun.display());
    let mut command = Command::new(torchrun);
    command
        .current_dir(workspace_root())
        .env("MLM_TRAIN_THREADS", "1")
        .args([
            "--standalone",
            "--nproc-per-node",
            &n.to_string(),
            "--no-python",
        ])
        .arg(env!("CARGO_BIN_EXE_mlm-train"))
        .args(job_args(config, run_dir, accumulation, args));
    finished(&mut command).1
}

/// `n` ranks started by `mlm-train --nproc-per-node n`.
fn nproc(config: &Path, n: u32, run_dir: &str, accumulation: usize, args: &[&str]) -> String {
    let mut command = mlm_train();
    command
        .args(["--nproc-per-node", &n.to_string()])
        .args(job_args(config, run_dir, accumulation, args));
    finished(&mut command).1
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rank `rank` of `n`, started directly with `vars` (a launcher's environment).
fn rank_process(
    config: &Path,
    run_dir: &str,
    accumulation: usize,
    vars: &HashMap<&str, String>,
) -> Child {
    mlm_train()
        .args(job_args(config, run_dir, accumulation, &[]))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn torchrun_vars(rank: u32, n: u32, port: u16) -> HashMap<&'static str, String> {
    HashMap::from([
        ("RANK", rank.to_string()),
        ("LOCAL_RANK", rank.to_string()),
        ("WORLD_SIZE", n.to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", port.to_string()),
    ])
}

/// Every tensor of two checkpoints' `model.safetensors`, as f64: the largest difference,
/// relative to the tensor's largest magnitude when that is above 1 (absolute below: the
/// attention key biases get no gradient and stay at rounding noise around 0).
pub(crate) fn weight_difference(a: &Path, b: &Path) -> f64 {
    let read = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    let (a, b) = (read(a), read(b));
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut b_names = b.names();
    b_names.sort();
    assert_eq!(names, b_names);
    let mut worst = 0.0f64;
    for name in names {
        let (x, y) = (
            values(&a.tensor(name).unwrap()),
            values(&b.tensor(name).unwrap()),
        );
        let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (u, v) in x.iter().zip(&y) {
            worst = worst.max((u - v).abs() / scale);
        }
    }
    worst
}

fn values(view: &safetensors::tensor::TensorView<'_>) -> Vec<f64> {
    let bytes = view.data();
    match view.dtype() {
        safetensors::Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn train_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["split"] == "train")
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect()
}

fn assert_same_trajectory(scratch: &Scratch, reference: &str, other: &str, tolerance: f64) {
    let (a, b) = (scratch.path().join(reference), scratch.path().join(other));
    let (la, lb) = (train_losses(&a), train_losses(&b));
    assert_eq!(la.len(), lb.len(), "{la:?} vs {lb:?}");
    for ((sa, x), (sb, y)) in la.iter().zip(&lb) {
        assert_eq!(sa, sb);
        assert!(
            (x - y).abs() <= tolerance * x.abs(),
            "step {sa}: loss {x} vs {y}"
        );
    }
    let difference = weight_difference(&a.join("checkpoint-6"), &b.join("checkpoint-6"));
    assert!(
        difference <= tolerance,
        "{other}: weights differ from {reference} by {difference:e}"
    );
}

#[test]
fn two_and_three_ranks_train_as_one_process_with_the_same_global_batch() {
    let scratch = Scratch::new("dp-equal");
    let config = config(&scratch, 6, "");
    // Global batch 12 sequences = 6 micro-batches of 2, however the ranks share them.
    single(&config, "one", 6, &[]);
    let stderr = nproc(&config, 2, "two", 3, &[]);
    assert!(
        stderr.contains("all 2 ended with identical weights"),
        "{stderr}"
    );
    let stderr = torchrun(&config, 3, "three", 2, &[]);
    assert!(
        stderr.contains("all 3 ended with identical weights"),
        "{stderr}"
    );
    // Gradient accumulation on every rank, and none.
    let stderr = torchrun(
        &config,
        3,
        "three-no-accumulation",
        2,
        &[
            "--set=training.batch_size=4",
            "--set=training.gradient_accumulation_steps=1",
        ],
    );
    assert!(
        stderr.contains("all 3 ended with identical weights"),
        "{stderr}"
    );
    assert_same_trajectory(&scratch, "one", "two", 1e-10);
    assert_same_trajectory(&scratch, "one", "three", 1e-10);
    // Micro-batches of 4 (different dropout keys and padding): its own reference.
    single(&config, "one-b4", 3, &["--set=training.batch_size=4"]);
    assert_same_trajectory(&scratch, "one-b4", "three-no-accumulation", 1e-10);
}

#[test]
fn ranks_grouped_by_length_train_as_one_process() {
    let scratch = Scratch::new("dp-group-by-length");
    // One title per sequence (various lengths), megabatches sorted by length: every rank
    // reads the same megabatch, sized by the global batch of 8, and takes its slice.
    let config = config(&scratch, 4, "");
    let grouped = [
        "--set=corpus.packing=\"document\"",
        "--set=corpus.text_fields=[\"title\"]",
        "--set=training.group_by_length=true",
    ];
    single(&config, "one", 4, &grouped);
    let manifest = std::fs::read_to_string(scratch.path().join("corpus/manifest.json")).unwrap();
    assert!(manifest.contains("\"packing\": \"document\""), "{manifest}");
    let stderr = nproc(&config, 2, "two", 2, &grouped);
    assert!(
        stderr.contains("all 2 ended with identical weights"),
        "{stderr}"
    );
    assert_same_trajectory(&scratch, "one", "two", 1e-10);
}

#[test]
fn ranks_unpadded_train_as_one_process() {
    let scratch = Scratch::new("dp-unpad");
    // One title per sequence, batches padded to their longest: with training.unpad each rank
    // runs its micro-batch's real tokens only, and the all-reduce sees ordinary gradients.
    let config = config(&scratch, 4, "");
    let unpadded = [
        "--set=corpus.packing=\"document\"",
        "--set=corpus.text_fields=[\"title\"]",
        "--set=training.unpad=true",
    ];
    single(&config, "one", 4, &unpadded);
    let stderr = nproc(&config, 2, "two", 2, &unpadded);
    assert!(
        stderr.contains("unpad    encoder on the real tokens only"),
        "{stderr}"
    );
    assert!(
        stderr.contains("all 2 ended with identical weights"),
        "{stderr}"
    );
    assert_same_trajectory(&scratch, "one", "two", 1e-10);
}

/// Span and phrase masking (phrases mined by PMI, the rate moving 0.3 -> 0.15): masks are a
/// pure function of (seed, epoch, position) and the step, so two ranks mask as one process.
#[test]
fn span_and_phrase_masking_ranks_train_as_one_process() {
    for (name, unit) in [
        ("span", "--set=masking.unit=\"span\""),
        ("phrase", "--set=masking.unit=\"phrase\""),
    ] {
        let scratch = Scratch::new(&format!("dp-{name}"));
        let config = config(&scratch, 4, "");
        let masking = [
            unit,
            "--set=masking.pmi_ngrams=30",
            "--set=masking.pmi_min_count=3",
            "--set=masking.mlm_probability=0.3",
            "--set=masking.mlm_probability_end=0.15",
        ];
        let masking = if name == "span" {
            [&masking[..1], &masking[3..]].concat()
        } else {
            masking.to_vec()
        };
        single(&config, "one", 4, &masking);
        let stderr = nproc(&config, 2, "two", 2, &masking);
        assert!(
            stderr.contains("all 2 ended with identical weights"),
            "{stderr}"
        );
        assert_same_trajectory(&scratch, "one", "two", 1e-10);
    }
}

/// ModernBERT (a window of 8 tokens in all, shorter than the sequences; every dropout on):
/// two ranks, unpadded, equal one process in fp64.
#[test]
fn modernbert_ranks_train_as_one_process() {
    let scratch = Scratch::new("dp-modernbert");
    let config = config(&scratch, 4, "");
    let modernbert = [
        "--set=model.model_type=\"modernbert\"",
        "--set=vocab.model=\"bpe\"",
        "--set=vocab.layout=\"modernbert\"",
        "--set=model.family_config={local_attention=8, global_attn_every_n_layers=2}",
        "--set=corpus.packing=\"document\"",
        "--set=training.unpad=true",
    ];
    single(&config, "one", 4, &modernbert);
    let stderr = nproc(&config, 2, "two", 2, &modernbert);
    assert!(stderr.contains("ModernBertForMaskedLM"), "{stderr}");
    assert!(
        stderr.contains("all 2 ended with identical weights"),
        "{stderr}"
    );
    assert_same_trajectory(&scratch, "one", "two", 1e-10);
}

#[test]
fn cuda_graphs_refuse_a_data_parallel_job_naming_the_key() {
    let scratch = Scratch::new("dp-graphs-refused");
    let config = config(&scratch, 1, "");
    // A torchrun rank of a world of one: data parallel all the same (the Reducer's
    // all-reduce), which a captured step cannot hold.
    let port = free_port().to_string();
    let (output, _, stderr) = run(mlm_train()
        .envs([
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", port.as_str()),
        ])
        .args(job_args(
            &config,
            "graphs",
            1,
            &["--set=training.cuda_graphs=true"],
        )));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("training.cuda_graphs = true needs a single process"),
        "{stderr}"
    );
    assert!(!scratch.path().join("graphs").exists(), "{stderr}");
}

#[test]
fn a_run_stopped_on_two_ranks_resumes_on_one_and_the_reverse() {
    let scratch = Scratch::new("dp-resume");
    let config = config(&scratch, 4, "");
    single(&config, "uninterrupted", 4, &[]);
    nproc(&config, 2, "two-then-one", 2, &["--stop-after-step", "3"]);
    single(&config, "two-then-one", 4, &[]);
    single(&config, "one-then-two", 4, &["--stop-after-step", "3"]);
    nproc(&config, 2, "one-then-two", 2, &[]);
    assert_same_trajectory(&scratch, "uninterrupted", "two-then-one", 1e-10);
    assert_same_trajectory(&scratch, "uninterrupted", "one-then-two", 1e-10);
}

#[test]
fn slurm_tasks_find_each_other_through_the_job_environment() {
    let scratch = Scratch::new("dp-slurm");
    let config = config(&scratch, 2, "");
    single(&config, "one", 2, &[]);
    let port = free_port();
    let ranks: Vec<Child> = (0..2u32)
        .map(|rank| {
            let vars = HashMap::from([
                ("SLURM_PROCID", rank.to_string()),
                ("SLURM_LOCALID", rank.to_string()),
                ("SLURM_NTASKS", "2".to_string()),
                ("SLURM_JOB_ID", "4242".to_string()),
                ("SLURM_JOB_NODELIST", "127.0.0.1".to_string()),
                ("MASTER_PORT", port.to_string()),
            ]);
            rank_process(&config, "slurm", 1, &vars)
        })
        .collect();
    for child in ranks {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_same_trajectory(&scratch, "one", "slurm", 1e-10);
}

#[test]
fn fp32_ranks_agree_with_one_process_within_a_stated_tolerance() {
    let scratch = Scratch::new("dp-fp32");
    let config = config(&scratch, 4, "");
    let fp32 = "--set=training.precision=\"fp32\"";
    single(&config, "one", 4, &[fp32]);
    nproc(&config, 2, "two", 2, &[fp32]);
    // Float32 sums in another order: the ranks' gradients are averaged by the Reducer.
    assert_same_trajectory(&scratch, "one", "two", 1e-5);
}

/// Reads a child's stderr on a thread, so that its pipe never fills.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    })
}

fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

#[test]
fn a_killed_rank_makes_the_others_exit_naming_it() {
    let scratch = Scratch::new("dp-killed");
    let config = config(&scratch, 1, "");
    mlm_train()
        .args(["prepare", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let port = free_port();
    let long = ["--set=training.max_steps=100000"];
    let mut ranks: Vec<Child> = (0..3u32)
        .map(|rank| {
            let mut command = mlm_train();
            command
                .arg("--config")
                .arg(&config)
                .args(long)
                .envs(torchrun_vars(rank, 3, port))
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let logs: Vec<_> = ranks.iter_mut().map(collect_stderr).collect();
    // Let them train, then kill rank 2 outright.
    std::thread::sleep(Duration::from_secs(4));
    ranks[2].kill().unwrap();
    let started = Instant::now();
    for rank in [0, 1] {
        let status = wait_at_most(&mut ranks[rank], Duration::from_secs(40))
            .unwrap_or_else(|| panic!("rank {rank} still running 40 s after rank 2 was killed"));
        assert!(!status.success(), "rank {rank} exited 0");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let _ = ranks[2].wait();
    let logs: Vec<String> = logs.into_iter().map(|h| h.join().unwrap()).collect();
    for log in &logs[..2] {
        assert!(log.contains("rank 2 stopped answering"), "{log}");
        assert!(
            !log.contains("panicked") && !log.contains("frame #"),
            "{log}"
        );
    }
    // Only complete checkpoints, if any: no temporary directory left looking complete.
    for entry in std::fs::read_dir(scratch.path().join("run")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") {
            let dir = scratch.path().join("run").join(&name);
            assert!(
                dir.join("model.safetensors").exists(),
                "{name} is incomplete"
            );
        }
    }
}

#[test]
fn a_rank_that_never_joins_is_named_after_the_timeout() {
    let scratch = Scratch::new("dp-missing");
    let config = config(&scratch, 1, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let config = scratch.write(
        "config.toml",
        &text.replace("timeout_seconds = 20", "timeout_seconds = 2"),
    );
    let port = free_port();
    let mut rank0 = mlm_train()
        .arg("--config")
        .arg(&config)
        .envs(torchrun_vars(0, 3, port))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_stderr(&mut rank0);
    let status = wait_at_most(&mut rank0, Duration::from_secs(60)).expect("rank 0 exits");
    assert!(!status.success());
    let log = log.join().unwrap();
    assert!(
        log.contains("ranks 1, 2 of 3 did not join within distributed.timeout_seconds = 2"),
        "{log}"
    );
}

#[test]
fn sigterm_on_one_rank_saves_once_and_stops_every_rank() {
    let scratch = Scratch::new("dp-sigterm");
    let config = config(&scratch, 1, "");
    mlm_train()
        .args(["prepare", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let port = free_port();
    let mut ranks: Vec<Child> = (0..2u32)
        .map(|rank| {
            mlm_train()
                .arg("--config")
                .arg(&config)
                .arg("--set=training.max_steps=100000")
                .envs(torchrun_vars(rank, 2, port))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let logs: Vec<_> = ranks.iter_mut().map(collect_stderr).collect();
    std::thread::sleep(Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-TERM", &ranks[1].id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for (rank, child) in ranks.iter_mut().enumerate() {
        let status = wait_at_most(child, Duration::from_secs(60)).expect("the ranks stop");
        assert_eq!(status.code(), Some(130), "rank {rank}");
    }
    let logs: Vec<String> = logs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(logs[0].contains("interrupted at step"), "{}", logs[0]);
    let saved: Vec<String> = std::fs::read_dir(scratch.path().join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("checkpoint-") || name.starts_with(".tmp"))
        .collect();
    assert_eq!(saved.len(), 1, "one checkpoint, complete: {saved:?}");
}
