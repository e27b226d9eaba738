//! `mlm-train doctor`: the set-up report users check first.

use serde_json::Value;

use crate::{mlm_train, run};

fn doctor_json() -> Value {
    let (output, stdout, stderr) = run(mlm_train().args(["doctor", "--json"]));
    assert!(output.status.success(), "{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{stdout}"))
}

#[test]
fn reports_libtorch_2_11_0_and_the_file_it_was_loaded_from() {
    let report = doctor_json();
    assert_eq!(report["libtorch_version"], "2.11.0");
    let path = report["libtorch_path"]
        .as_str()
        .expect("libtorch_path is known");
    assert!(path.ends_with("libtorch_cpu.so"), "{path}");
    assert!(std::path::Path::new(path).exists(), "{path}");
}

#[test]
fn cuda_is_reported_consistently_with_the_gpus_found() {
    let report = doctor_json();
    let cuda = report["cuda_available"]
        .as_bool()
        .expect("cuda_available is a bool");
    let gpus = report["gpus"].as_array().expect("gpus is a list");
    assert_eq!(cuda, !gpus.is_empty(), "{report:#}");
    assert_eq!(
        report["bf16"]["cuda_autocast"].as_bool(),
        Some(cuda && gpus[0]["bf16"] == true)
    );
    // The wheel is a CUDA build: libtorch_cuda must be linked even where there is no GPU,
    // or the same binary would never see a GPU.
    assert!(
        report["cuda_runtime_version"].is_string(),
        "libtorch_cuda not linked: {report:#}"
    );
    // And scripts/setup's torch brings the CUDA runtime headers and nccl.h (nvidia-* wheels),
    // so the shim's CUDA parts were compiled, not their stubs.
    assert_eq!(report["build"]["cuda_graphs"], true, "{report:#}");
    assert_eq!(report["build"]["nccl"], true, "{report:#}");
}

#[test]
fn cpu_bf16_autocast_really_runs() {
    assert_eq!(doctor_json()["bf16"]["cpu_autocast"], true);
}

/// The library `runtime.cpu_matmul = "auto"` would take, with its reason.
#[test]
fn the_report_names_the_cpu_matmul_library_auto_takes() {
    let report = doctor_json();
    let matmul = report["cpu_matmul"]
        .as_str()
        .expect("cpu_matmul is a string");
    assert!(
        matmul.starts_with("oneDNN (auto: CPU vendor ") || matmul.starts_with("BLAS (auto: "),
        "{matmul}"
    );
}

#[test]
fn thread_cap_reaches_libtorch_and_rayon() {
    let report = doctor_json();
    assert_eq!(report["threads"]["libtorch_intra_op"], 1);
    assert_eq!(report["threads"]["rayon"], 1);
    let (output, stdout, _) = run(mlm_train().args(["doctor", "--json", "--threads", "2"]));
    assert!(output.status.success());
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["threads"]["libtorch_intra_op"], 2);
    assert_eq!(report["threads"]["rayon"], 2);
}

#[test]
fn table_runs_without_any_library_path_set() {
    // The rpath set at link time is what finds libtorch: no LD_LIBRARY_PATH needed.
    let (output, stdout, stderr) = run(mlm_train().arg("doctor").env_remove("LD_LIBRARY_PATH"));
    assert!(output.status.success(), "{stderr}");
    for row in [
        "libtorch",
        "2.11.0",
        "loaded from",
        "cuda",
        "bf16 autocast",
        "threads",
        "cpu matmul",
    ] {
        assert!(
            stdout.contains(row),
            "doctor table lacks {row:?}:\n{stdout}"
        );
    }
}
