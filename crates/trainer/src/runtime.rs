//! Where the work runs: the `[runtime]` config section, device resolution and thread pools.
//! Every command goes through here, so device and thread policy live in one place.

use std::fmt;
use std::str::FromStr;

use mlm_torch_ext::matmul::{CpuMatmul, UnsupportedOneDnn};
use serde::{Deserialize, Deserializer};

/// Errors resolving the runtime set-up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime.device = \"{requested}\" but {reason} (run `mlm-train doctor` to see why)")]
    DeviceUnavailable { requested: String, reason: String },
    #[error("runtime.cpu_threads = 0 must be >= 1 (leave it out to use every core)")]
    ZeroThreads,
    #[error("runtime.cpu_matmul = \"onednn\" but {0} (set \"auto\" or \"blas\")")]
    OneDnnUnsupported(UnsupportedOneDnn),
    #[error("could not size the rayon thread pool to {threads} threads")]
    ThreadPool {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

/// Which device to train and evaluate on: `auto` (the first GPU if CUDA is available, else
/// the CPU), `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!("unknown device \"{text}\": expected auto, cpu, cuda or cuda:N")
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceChoice {
    /// The device to use, given how many CUDA devices libtorch sees.
    pub fn resolve_with(self, cuda_devices: usize) -> Result<tch::Device, RuntimeError> {
        match self {
            Self::Cpu => Ok(tch::Device::Cpu),
            Self::Auto if cuda_devices > 0 => Ok(tch::Device::Cuda(0)),
            Self::Auto => Ok(tch::Device::Cpu),
            Self::Cuda(index) if index < cuda_devices => Ok(tch::Device::Cuda(index)),
            Self::Cuda(_) => Err(RuntimeError::DeviceUnavailable {
                requested: self.to_string(),
                reason: match cuda_devices {
                    0 => "CUDA is not available".to_owned(),
                    n => format!("only {n} CUDA device(s) are visible"),
                },
            }),
        }
    }

    /// The device to use on this machine.
    pub fn resolve(self) -> Result<tch::Device, RuntimeError> {
        let visible = if tch::Cuda::is_available() {
            tch::Cuda::device_count()
        } else {
            0
        };
        self.resolve_with(usize::try_from(visible).unwrap_or(0))
    }
}

/// A device as users write it in configs: `cpu`, `cuda:0`, ...
pub fn device_label(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu".to_owned(),
        tch::Device::Cuda(index) => format!("cuda:{index}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The `[runtime]` section of a run config.
///
/// ```toml
/// [runtime]
/// device = "auto"     # auto | cpu | cuda | cuda:N
/// cpu_threads = 8     # libtorch intra-op and rayon threads; default: every core
/// cpu_keep_freed_memory = true   # CPU runs: freed tensors' memory reused (default false)
/// cpu_matmul = "auto" # auto | blas | onednn: the library of fp32 linear layers on the CPU
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Device to train on. Default `auto`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Threads for libtorch's intra-op pool and for rayon (tokenization, masking). Default:
    /// libtorch's and rayon's own defaults (every core).
    #[serde(default)]
    pub cpu_threads: Option<usize>,
    /// On the CPU, whether memory freed by tensors stays in the process for the next step's
    /// tensors ([`keep_freed_memory`]). Default false: faster steps, but a larger RSS that
    /// kept growing in steps over a 400-step run.
    #[serde(default)]
    pub cpu_keep_freed_memory: bool,
    /// On the CPU, the library that multiplies fp32 linear layers ([`CpuMatmulChoice`]).
    #[serde(default)]
    pub cpu_matmul: CpuMatmulChoice,
}

/// `runtime.cpu_matmul`: which library multiplies fp32 linear layers (and MLM decoders) on
/// the CPU, forward and backward. Both compute in fp32; results differ by rounding only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuMatmulChoice {
    /// oneDNN where it runs and the CPU is not Intel's (the wheel's MKL then takes a generic
    /// sgemm path, about half oneDNN's speed); the BLAS elsewhere.
    #[default]
    Auto,
    /// ATen's own linear: the BLAS libtorch was built with (MKL in the wheels).
    Blas,
    /// oneDNN's matmul (needs AVX-512 BW/VL/DQ).
    Onednn,
}

impl fmt::Display for CpuMatmulChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Blas => "blas",
            Self::Onednn => "onednn",
        })
    }
}

/// What `runtime.cpu_matmul` resolved to on this machine, and why, for the run's first lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMatmulResolved {
    pub library: CpuMatmul,
    pub reason: String,
}

impl fmt::Display for CpuMatmulResolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let library = match self.library {
            CpuMatmul::Blas => "BLAS",
            CpuMatmul::OneDnn => "oneDNN",
        };
        write!(f, "{library} ({})", self.reason)
    }
}

impl CpuMatmulChoice {
    /// The library this choice means on a CPU from `vendor` (`cpuid`'s string, `None` off
    /// x86-64) where oneDNN's fp32 matmul runs or not (`onednn_runs`).
    pub fn resolve_with(
        self,
        vendor: Option<&str>,
        onednn_runs: bool,
    ) -> Result<CpuMatmulResolved, RuntimeError> {
        let resolved = |library, reason: String| CpuMatmulResolved { library, reason };
        match self {
            Self::Blas => Ok(resolved(CpuMatmul::Blas, "runtime.cpu_matmul".into())),
            Self::Onednn if onednn_runs => {
                Ok(resolved(CpuMatmul::OneDnn, "runtime.cpu_matmul".into()))
            }
            Self::Onednn => Err(RuntimeError::OneDnnUnsupported(UnsupportedOneDnn)),
            Self::Auto => {
                let vendor = vendor.unwrap_or("not x86-64");
                Ok(if !onednn_runs {
                    resolved(
                        CpuMatmul::Blas,
                        "auto: oneDNN's fp32 matmul does not run here".into(),
                    )
                } else if vendor == "GenuineIntel" {
                    resolved(
                        CpuMatmul::Blas,
                        "auto: CPU vendor GenuineIntel, MKL's own kernels".into(),
                    )
                } else {
                    resolved(
                        CpuMatmul::OneDnn,
                        format!("auto: CPU vendor {vendor}, where MKL is generic"),
                    )
                })
            }
        }
    }

    /// Resolves the choice on this machine and makes every fp32 CPU linear layer of the
    /// process use that library from now on.
    pub fn apply(self) -> Result<CpuMatmulResolved, RuntimeError> {
        let vendor = mlm_torch_ext::matmul::cpu_vendor();
        let onednn_runs = mlm_torch_ext::matmul::onednn_supported();
        let resolved = self.resolve_with(vendor.as_deref(), onednn_runs)?;
        mlm_torch_ext::matmul::set_cpu_matmul(resolved.library)
            .map_err(RuntimeError::OneDnnUnsupported)?;
        Ok(resolved)
    }
}

/// Makes glibc's `malloc` keep memory that tensors free for the next allocation instead of
/// returning it to the kernel: no `mmap` for large blocks (`M_MMAP_MAX` 0) and no trimming of
/// the heap (`M_TRIM_THRESHOLD` at its maximum). libtorch's CPU allocator is `malloc` itself,
/// so by default every step's large tensors (the logits, the embedding's gradient, above
/// glibc's 32 MiB `mmap` ceiling) are mapped, page-faulted and zeroed by the kernel anew: 14%
/// of a 6 x 384 ModernBERT step's CPU time went to the kernel. Measured (docs/benchmarks.md):
/// training 1.24x faster, peak RSS 1.44 -> 2.08 GB at 40 steps, and the RSS kept growing in
/// steps (2.09 -> 2.40 GB over 400 steps: the heap fragments as the masked-token count, and
/// with it the logits' size, changes from batch to batch), hence opt-in. The CPU counterpart
/// of the caching allocator libtorch has on CUDA, and of preloading jemalloc or tcmalloc.
/// Returns whether glibc took both settings (false off glibc).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; any value is valid to pass.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

impl RuntimeConfig {
    /// Checks the section when the config loads. `device` is checked when it is resolved:
    /// whether a GPU is there depends on the machine, not on the config.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.cpu_threads == Some(0) {
            return Err(RuntimeError::ZeroThreads);
        }
        Ok(())
    }
}

/// Thread counts actually in effect after [`configure_threads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCounts {
    pub libtorch_intra_op: usize,
    pub libtorch_inter_op: usize,
    pub rayon: usize,
}

/// Sizes libtorch's intra-op pool and rayon's global pool to `threads` (or leaves their
/// defaults with `None`). Call once, before any parallel work: rayon's global pool can only
/// be sized before first use.
pub fn configure_threads(threads: Option<usize>) -> Result<ThreadCounts, RuntimeError> {
    if let Some(threads) = threads {
        if threads == 0 {
            return Err(RuntimeError::ZeroThreads);
        }
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|source| RuntimeError::ThreadPool { threads, source })?;
    }
    Ok(current_threads())
}

/// Thread counts libtorch and rayon use now.
pub fn current_threads() -> ThreadCounts {
    ThreadCounts {
        libtorch_intra_op: usize::try_from(tch::get_num_threads()).unwrap_or(0),
        libtorch_inter_op: usize::try_from(tch::get_num_interop_threads()).unwrap_or(0),
        rayon: rayon::current_num_threads(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choice_parses_every_documented_spelling() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            let error = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(
                error.contains("expected auto, cpu, cuda or cuda:N"),
                "{bad}: {error}"
            );
        }
    }

    /// The settings take on glibc (they are process-wide and only change where freed memory
    /// goes, so setting them in a test is harmless).
    #[test]
    fn freed_memory_is_kept_on_glibc() {
        let on: RuntimeConfig = toml::from_str("cpu_keep_freed_memory = true").unwrap();
        assert!(on.cpu_keep_freed_memory);
        assert!(!RuntimeConfig::default().cpu_keep_freed_memory);
        assert_eq!(
            keep_freed_memory(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }

    #[test]
    fn cpu_matmul_auto_takes_onednn_off_intel_where_it_runs() {
        let library = |choice: CpuMatmulChoice, vendor: Option<&str>, runs: bool| {
            choice.resolve_with(vendor, runs).map(|r| r.library)
        };
        let auto = CpuMatmulChoice::Auto;
        assert_eq!(
            library(auto, Some("AuthenticAMD"), true).unwrap(),
            CpuMatmul::OneDnn
        );
        assert_eq!(
            library(auto, Some("HygonGenuine"), true).unwrap(),
            CpuMatmul::OneDnn
        );
        assert_eq!(
            library(auto, Some("GenuineIntel"), true).unwrap(),
            CpuMatmul::Blas
        );
        assert_eq!(
            library(auto, Some("AuthenticAMD"), false).unwrap(),
            CpuMatmul::Blas
        );
        assert_eq!(library(auto, None, false).unwrap(), CpuMatmul::Blas);
        let blas = CpuMatmulChoice::Blas;
        assert_eq!(
            library(blas, Some("AuthenticAMD"), true).unwrap(),
            CpuMatmul::Blas
        );
        let onednn = CpuMatmulChoice::Onednn;
        assert_eq!(
            library(onednn, Some("GenuineIntel"), true).unwrap(),
            CpuMatmul::OneDnn
        );
        let error = library(onednn, Some("AuthenticAMD"), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("runtime.cpu_matmul = \"onednn\""), "{error}");
        assert!(error.contains("AVX-512"), "{error}");
        let resolved = auto.resolve_with(Some("AuthenticAMD"), true).unwrap();
        assert_eq!(
            resolved.to_string(),
            "oneDNN (auto: CPU vendor AuthenticAMD, where MKL is generic)"
        );
        let config: RuntimeConfig = toml::from_str("cpu_matmul = \"onednn\"").unwrap();
        assert_eq!(config.cpu_matmul, CpuMatmulChoice::Onednn);
        let error = toml::from_str::<RuntimeConfig>("cpu_matmul = \"mkl\"").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected one of `auto`, `blas`, `onednn`"),
            "{error}"
        );
    }

    #[test]
    fn auto_takes_the_first_gpu_only_when_there_is_one() {
        assert_eq!(
            DeviceChoice::Auto.resolve_with(0).unwrap(),
            tch::Device::Cpu
        );
        assert_eq!(
            DeviceChoice::Auto.resolve_with(2).unwrap(),
            tch::Device::Cuda(0)
        );
        assert_eq!(DeviceChoice::Cpu.resolve_with(2).unwrap(), tch::Device::Cpu);
        assert_eq!(
            DeviceChoice::Cuda(1).resolve_with(2).unwrap(),
            tch::Device::Cuda(1)
        );
    }

    #[test]
    fn asking_for_a_missing_gpu_names_the_key_and_the_reason() {
        let message = DeviceChoice::Cuda(0)
            .resolve_with(0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("runtime.device = \"cuda:0\""), "{message}");
        assert!(message.contains("CUDA is not available"), "{message}");
        let message = DeviceChoice::Cuda(2)
            .resolve_with(2)
            .unwrap_err()
            .to_string();
        assert!(message.contains("only 2 CUDA device(s)"), "{message}");
    }

    #[test]
    fn runtime_section_rejects_unknown_keys_and_bad_devices() {
        let config: RuntimeConfig = toml::from_str("device = \"cpu\"\ncpu_threads = 2").unwrap();
        assert_eq!(
            config,
            RuntimeConfig {
                device: DeviceChoice::Cpu,
                cpu_threads: Some(2),
                cpu_keep_freed_memory: false,
                cpu_matmul: CpuMatmulChoice::Auto,
            }
        );
        assert_eq!(
            toml::from_str::<RuntimeConfig>("").unwrap(),
            RuntimeConfig::default()
        );
        let error = toml::from_str::<RuntimeConfig>("devise = \"cpu\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `devise`"), "{error}");
        let error = toml::from_str::<RuntimeConfig>("device = \"gpu\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown device \"gpu\""), "{error}");
    }

    #[test]
    fn devices_are_labelled_as_configs_spell_them() {
        assert_eq!(device_label(tch::Device::Cpu), "cpu");
        assert_eq!(device_label(tch::Device::Cuda(1)), "cuda:1");
    }

    #[test]
    fn zero_threads_is_refused() {
        assert!(matches!(
            configure_threads(Some(0)),
            Err(RuntimeError::ZeroThreads)
        ));
        let zero = RuntimeConfig {
            cpu_threads: Some(0),
            ..RuntimeConfig::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "runtime.cpu_threads = 0 must be >= 1 (leave it out to use every core)"
        );
        assert!(RuntimeConfig::default().validate().is_ok());
    }
}
