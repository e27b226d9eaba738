//! `mlm-train doctor`: what this binary runs with, so a user can tell at once whether the GPU
//! is used, bf16 works and which libtorch was loaded.

use std::fmt::Write as _;

use mlm_torch_ext::{Autocast, AutocastDevice};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::stdout::outln;

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub mlm_train_version: &'static str,
    pub libtorch_version: String,
    /// The libtorch_cpu.so this process loaded.
    pub libtorch_path: Option<String>,
    pub cuda_available: bool,
    /// CUDA runtime libtorch was built with; set even without a GPU for a CUDA build.
    pub cuda_runtime_version: Option<String>,
    pub cuda_driver_version: Option<String>,
    pub cudnn_version: Option<String>,
    pub gpus: Vec<Gpu>,
    pub bf16: Bf16Support,
    pub threads: Threads,
    /// What `runtime.cpu_matmul = "auto"` picks here for fp32 linear layers on the CPU.
    pub cpu_matmul: String,
    pub build: Build,
}

#[derive(Debug, Serialize)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub memory_gib: f64,
    pub compute_capability: String,
    pub bf16: bool,
}

#[derive(Debug, Serialize)]
pub struct Bf16Support {
    /// A matmul under CPU autocast(bf16) really produced bf16.
    pub cpu_autocast: bool,
    /// The CPU has bf16 instructions (avx512_bf16 or amx_bf16); without them bf16 is emulated
    /// and slower than fp32.
    pub cpu_native: bool,
    /// A matmul under CUDA autocast(bf16) on GPU 0 produced bf16 (false without a GPU).
    pub cuda_autocast: bool,
}

#[derive(Debug, Serialize)]
pub struct Threads {
    pub cpu_cores: usize,
    pub libtorch_intra_op: usize,
    pub libtorch_inter_op: usize,
    pub rayon: usize,
}

#[derive(Debug, Serialize)]
pub struct Build {
    pub mkl: bool,
    pub mkldnn: bool,
    pub openmp: bool,
    /// The shim was compiled with the CUDA runtime headers (`training.cuda_graphs`) and with
    /// NCCL (`distributed.backend = "nccl"`): both need the nvidia-* wheels beside a CUDA
    /// torch at build time.
    pub cuda_graphs: bool,
    pub nccl: bool,
}

/// The library `runtime.cpu_matmul = "auto"` resolves to on this machine, and why.
fn auto_cpu_matmul() -> String {
    let vendor = mlm_torch_ext::matmul::cpu_vendor();
    let resolved = mlm_trainer::runtime::CpuMatmulChoice::Auto
        .resolve_with(vendor.as_deref(), mlm_torch_ext::matmul::onednn_supported());
    match resolved {
        Ok(resolved) => resolved.to_string(),
        Err(error) => error.to_string(),
    }
}

impl DoctorReport {
    pub fn collect() -> Self {
        let cuda_available = tch::Cuda::is_available();
        let gpu_count = if cuda_available {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        let gpus = (0..gpu_count)
            .map(|index| match mlm_torch_ext::gpu_info(index) {
                Ok(info) => Gpu {
                    index,
                    memory_gib: info.total_memory_bytes as f64 / f64::from(1u32 << 30),
                    compute_capability: format!(
                        "{}.{}",
                        info.compute_capability.0, info.compute_capability.1
                    ),
                    bf16: info.supports_bf16(),
                    name: info.name,
                },
                Err(error) => Gpu {
                    index,
                    name: format!("(unknown: {error})"),
                    memory_gib: 0.0,
                    compute_capability: "?".to_owned(),
                    bf16: false,
                },
            })
            .collect();
        let threads = mlm_trainer::runtime::current_threads();
        Self {
            mlm_train_version: env!("CARGO_PKG_VERSION"),
            libtorch_version: mlm_torch_ext::libtorch_version(),
            libtorch_path: mlm_torch_ext::libtorch_path()
                .ok()
                .map(|path| path.display().to_string()),
            cuda_available,
            cuda_runtime_version: mlm_torch_ext::cuda_runtime_version().map(|v| v.to_string()),
            cuda_driver_version: mlm_torch_ext::cuda_driver_version().map(|v| v.to_string()),
            cudnn_version: mlm_torch_ext::cudnn_version().map(cudnn_version_string),
            gpus,
            bf16: Bf16Support {
                cpu_autocast: autocast_produces_bf16(AutocastDevice::Cpu, Device::Cpu),
                cpu_native: cpu_has_bf16_instructions(),
                cuda_autocast: gpu_count > 0
                    && autocast_produces_bf16(AutocastDevice::Cuda, Device::Cuda(0)),
            },
            threads: Threads {
                cpu_cores: std::thread::available_parallelism().map_or(1, usize::from),
                libtorch_intra_op: threads.libtorch_intra_op,
                libtorch_inter_op: threads.libtorch_inter_op,
                rayon: threads.rayon,
            },
            cpu_matmul: auto_cpu_matmul(),
            build: Build {
                mkl: tch::utils::has_mkl(),
                mkldnn: tch::utils::has_mkldnn(),
                openmp: tch::utils::has_openmp(),
                cuda_graphs: mlm_torch_ext::cuda_graph::built_with_cuda_graphs(),
                nccl: mlm_torch_ext::cuda_graph::built_with_nccl(),
            },
        }
    }

    /// The report as an aligned two-column table.
    pub fn render(&self) -> String {
        let yes_no = |flag: bool| if flag { "yes" } else { "no" };
        let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".to_owned());
        let mut rows: Vec<(&str, String)> = vec![
            ("mlm-train", self.mlm_train_version.to_owned()),
            ("libtorch", self.libtorch_version.clone()),
            ("loaded from", or_none(&self.libtorch_path)),
            ("cuda", self.cuda_available.to_string()),
            ("cuda runtime (built)", or_none(&self.cuda_runtime_version)),
            ("cuda driver", or_none(&self.cuda_driver_version)),
            ("cudnn", or_none(&self.cudnn_version)),
        ];
        if self.gpus.is_empty() {
            rows.push(("gpus", "none".to_owned()));
        }
        for gpu in &self.gpus {
            rows.push((
                "gpu",
                format!(
                    "{}: {}, {:.1} GiB, compute {}, bf16 {}",
                    gpu.index,
                    gpu.name,
                    gpu.memory_gib,
                    gpu.compute_capability,
                    yes_no(gpu.bf16)
                ),
            ));
        }
        rows.extend([
            (
                "bf16 autocast",
                format!(
                    "cpu {} ({}), cuda {}",
                    yes_no(self.bf16.cpu_autocast),
                    if self.bf16.cpu_native {
                        "native bf16 instructions"
                    } else {
                        "emulated: no avx512_bf16/amx_bf16"
                    },
                    yes_no(self.bf16.cuda_autocast)
                ),
            ),
            (
                "threads",
                format!(
                    "libtorch intra-op {}, inter-op {}, rayon {} ({} cores)",
                    self.threads.libtorch_intra_op,
                    self.threads.libtorch_inter_op,
                    self.threads.rayon,
                    self.threads.cpu_cores
                ),
            ),
            ("cpu matmul", self.cpu_matmul.clone()),
            (
                "build",
                format!(
                    "mkl {}, mkldnn {}, openmp {}, cuda graphs {}, nccl {}",
                    yes_no(self.build.mkl),
                    yes_no(self.build.mkldnn),
                    yes_no(self.build.openmp),
                    yes_no(self.build.cuda_graphs),
                    yes_no(self.build.nccl)
                ),
            ),
        ]);
        let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }
}

/// cuDNN reports 91900 for 9.19.0 (major x 10000 + minor x 100 + patch since cuDNN 9).
fn cudnn_version_string(version: i64) -> String {
    format!(
        "{}.{}.{}",
        version / 10_000,
        (version % 10_000) / 100,
        version % 100
    )
}

/// Runs a tiny matmul under autocast(bf16) on `device`: proof, not a guess, that bf16 works.
fn autocast_produces_bf16(autocast_device: AutocastDevice, device: Device) -> bool {
    let Ok(_autocast) = Autocast::new(autocast_device, Kind::BFloat16) else {
        return false;
    };
    Tensor::f_ones([8, 8], (Kind::Float, device))
        .and_then(|a| a.f_matmul(&a))
        .is_ok_and(|product| product.kind() == Kind::BFloat16)
}

fn cpu_has_bf16_instructions() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| {
                line.split_whitespace()
                    .any(|flag| flag == "avx512_bf16" || flag == "amx_bf16")
            })
    })
}

/// `mlm-train doctor [--json]`: the report, after sizing the thread pools as a job would.
/// `doctor --fault-points`: one line per fault point, its name then where it sits.
pub fn print_fault_points() {
    for (name, place) in mlm_faults::FAULT_POINTS {
        println!("{name:<34} {place}");
    }
}

pub fn run(json: bool, threads: Option<usize>) -> anyhow::Result<()> {
    mlm_trainer::runtime::configure_threads(threads)?;
    let report = DoctorReport::collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::stdout::print(&report.render())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cudnn_versions_read_like_nvidia_writes_them() {
        assert_eq!(cudnn_version_string(91900), "9.19.0");
        assert_eq!(cudnn_version_string(90102), "9.1.2");
    }
}
