//! `mlm-train --config FILE`: loading, checking and reporting config errors.

use crate::{Scratch, mlm_train, run};

#[test]
fn quickstart_config_resolves() {
    let (output, stdout, stderr) = run(mlm_train().args(["--config", "configs/quickstart.toml"]));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("quickstart.toml"), "{stdout}");
    assert!(stdout.contains("threads  libtorch 1, rayon 1"), "{stdout}");
    assert!(
        stdout.contains("device   cpu (runtime.device = \"auto\")")
            || stdout.contains("device   cuda:0"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was trained"), "{stdout}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let scratch = Scratch::new("unknown-key");
    let path = scratch.write("bad.toml", "[runtime]\ndevice = \"cpu\"\ncpu_treads = 4\n");
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("unknown field `cpu_treads`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_section_is_refused() {
    let scratch = Scratch::new("unknown-section");
    let path = scratch.write("bad.toml", "[runtim]\ndevice = \"cpu\"\n");
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("unknown field `runtim`"), "{stderr}");
}

#[test]
fn bad_device_value_is_explained() {
    let scratch = Scratch::new("bad-device");
    let path = scratch.write("bad.toml", "[runtime]\ndevice = \"gpu\"\n");
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        stderr.contains("expected auto, cpu, cuda or cuda:N"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let (output, _, stderr) = run(mlm_train().args(["--config", "configs/no-such.toml"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read config configs/no-such.toml"),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn forcing_cuda_fails_clearly_without_a_gpu_and_works_with_one() {
    let scratch = Scratch::new("cuda");
    let path = scratch.write("cuda.toml", "[runtime]\ndevice = \"cuda\"\n");
    let (output, stdout, stderr) = run(mlm_train().arg("--config").arg(&path));
    let (_, doctor, _) = run(mlm_train().args(["doctor", "--json"]));
    if doctor.contains("\"cuda_available\": true") {
        assert!(output.status.success(), "{stderr}");
        assert!(stdout.contains("device   cuda:0"), "{stdout}");
    } else {
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stderr.contains("runtime.device = \"cuda:0\" but CUDA is not available"),
            "{stderr}"
        );
    }
}

#[test]
fn zero_threads_is_refused_with_the_key() {
    let scratch = Scratch::new("zero-threads");
    let path = scratch.write("zero.toml", "[runtime]\ncpu_threads = 0\n");
    let (output, _, stderr) = run(mlm_train()
        .arg("--config")
        .arg(&path)
        .env_remove("MLM_TRAIN_THREADS"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("runtime.cpu_threads must be at least 1"),
        "{stderr}"
    );
}
