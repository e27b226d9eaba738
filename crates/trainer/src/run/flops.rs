//! Model FLOPs utilisation (MFU): the training FLOPs a step's tokens need (the model's
//! [`ModelFlops`], counted by its family: model/cost.rs) over the device's dense peak.
//!
//! Peaks are the vendors' dense (no sparsity) figures; see [`gpu_peak_tflops`] and
//! [`cpu_peak_tflops`], documented in docs/benchmarks.md. `[logging] peak_tflops` overrides.

pub use crate::model::ModelFlops;

/// The number format the step's matmuls run in, for the peak to compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulFormat {
    /// bf16 or fp16 tensor cores (AMX on CPUs).
    Half,
    /// TF32 tensor cores (fp32 runs with `training.tf32`).
    Tf32,
    Fp32,
    Fp64,
}

/// Dense peaks of data-centre and workstation GPUs in TFLOP/s: (name fragment, bf16/fp16,
/// tf32, fp32, fp64), from NVIDIA's data sheets (SXM forms unless the name says PCIe/NVL).
/// Matched in order on the CUDA device name, so specific names come before their prefixes.
const GPU_PEAKS: [(&str, f64, f64, f64, f64); 17] = [
    ("B200", 2250.0, 1100.0, 80.0, 40.0),
    ("H100 PCIe", 756.0, 378.0, 51.2, 25.6),
    ("H100 NVL", 835.0, 418.0, 60.0, 30.0),
    ("H100", 989.4, 494.7, 66.9, 33.5),
    ("H200", 989.4, 494.7, 66.9, 33.5),
    ("H800", 989.4, 494.7, 66.9, 33.5),
    ("GH200", 989.4, 494.7, 66.9, 33.5),
    ("A100", 312.0, 156.0, 19.5, 9.7),
    ("A800", 312.0, 156.0, 19.5, 9.7),
    ("L40S", 362.1, 183.0, 91.6, 1.4),
    ("L4", 121.0, 60.0, 30.3, 0.5),
    ("A10", 125.0, 62.5, 31.2, 1.0),
    ("RTX 4090", 165.2, 82.6, 82.6, 1.3),
    ("RTX 3090", 71.0, 35.6, 35.6, 0.6),
    // Volta and Turing have fp16 tensor cores only; TF32 falls back to fp32.
    ("V100", 125.0, 15.7, 15.7, 7.8),
    ("T4", 65.0, 8.1, 8.1, 0.25),
    ("A6000", 154.8, 77.4, 38.7, 0.6),
];

/// The dense peak of the GPU named `name` (as CUDA reports it) in `format`, TFLOP/s.
pub fn gpu_peak_tflops(name: &str, format: MatmulFormat) -> Option<f64> {
    // The GH200's name contains "H200"'s letters after "G"; match the longest fragment.
    let (_, half, tf32, fp32, fp64) = GPU_PEAKS
        .iter()
        .filter(|(fragment, ..)| name.contains(fragment))
        .max_by_key(|(fragment, ..)| fragment.len())?;
    Some(match format {
        MatmulFormat::Half => *half,
        MatmulFormat::Tf32 => *tf32,
        MatmulFormat::Fp32 => *fp32,
        MatmulFormat::Fp64 => *fp64,
    })
}

/// What a CPU can do per core and cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx512: bool,
    pub avx2_fma: bool,
    /// Intel AMX tiles with bf16 (Sapphire Rapids and newer).
    pub amx_bf16: bool,
    /// AVX-512 BF16 dot products (Cooper Lake, Zen 4 and newer).
    pub avx512_bf16: bool,
}

impl CpuFeatures {
    /// The features of `/proc/cpuinfo`'s `flags` line.
    pub fn from_flags(flags: &str) -> Self {
        let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
        Self {
            avx512: has("avx512f"),
            avx2_fma: has("avx2") && has("fma"),
            amx_bf16: has("amx_bf16"),
            avx512_bf16: has("avx512_bf16"),
        }
    }

    /// Peak FLOPs per core per cycle: two FMA ports of 16 (AVX-512) or 8 (AVX2) fp32 lanes;
    /// AMX's TMUL does 1,024 bf16 FLOPs per cycle (Intel's optimisation manual, 16x32x16 per
    /// 16 cycles); AVX-512 BF16 doubles the fp32 rate; fp64 is half of fp32.
    pub fn flops_per_cycle(&self, format: MatmulFormat) -> f64 {
        let fp32 = if self.avx512 {
            64.0
        } else if self.avx2_fma {
            32.0
        } else {
            8.0
        };
        match format {
            MatmulFormat::Half if self.amx_bf16 => 1024.0,
            MatmulFormat::Half if self.avx512_bf16 => 2.0 * fp32,
            MatmulFormat::Half | MatmulFormat::Tf32 | MatmulFormat::Fp32 => fp32,
            MatmulFormat::Fp64 => fp32 / 2.0,
        }
    }
}

/// The peak of `cores` cores at `ghz` with `features` in `format`, TFLOP/s.
pub fn cpu_peak_tflops(features: CpuFeatures, cores: usize, ghz: f64, format: MatmulFormat) -> f64 {
    features.flops_per_cycle(format) * cores as f64 * ghz / 1e3
}

/// A device's peak and where the figure came from (for the plan).
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePeak {
    pub tflops: f64,
    pub source: String,
}

/// The peak of `device` in `format`: the GPU table by CUDA's device name, or the CPU's
/// vector units x the threads libtorch uses x the maximum clock. `None` when unknown.
pub fn device_peak(device: tch::Device, format: MatmulFormat) -> Option<DevicePeak> {
    match device {
        tch::Device::Cuda(index) => {
            let name = mlm_torch_ext::gpu_info(index).ok()?.name;
            let tflops = gpu_peak_tflops(&name, format)?;
            Some(DevicePeak {
                tflops,
                source: format!("{name}, {format:?} dense"),
            })
        }
        tch::Device::Cpu => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
            let flags = cpuinfo_field(&cpuinfo, "flags")?;
            let features = CpuFeatures::from_flags(flags);
            let ghz = max_cpu_ghz(&cpuinfo)?;
            let cores = usize::try_from(tch::get_num_threads()).ok()?.max(1);
            let per_cycle = features.flops_per_cycle(format);
            Some(DevicePeak {
                tflops: cpu_peak_tflops(features, cores, ghz, format),
                source: format!("{cores} threads x {ghz:.2} GHz x {per_cycle} FLOP/cycle"),
            })
        }
        _ => None,
    }
}

/// The first `key : value` line of `/proc/cpuinfo`.
fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then_some(value.trim())
    })
}

/// The highest clock the kernel reports (cpufreq's maximum, else cpuinfo's current MHz).
fn max_cpu_ghz(cpuinfo: &str) -> Option<f64> {
    let cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
    if let Some(khz) = std::fs::read_to_string(cpufreq)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
    {
        return Some(khz / 1e6);
    }
    let mhz: f64 = cpuinfo_field(cpuinfo, "cpu MHz")?.parse().ok()?;
    Some(mhz / 1e3)
}

/// Model FLOPs utilisation of `flops` done in `seconds` on a device of `peak_tflops`.
pub fn mfu(flops: f64, seconds: f64, peak_tflops: f64) -> f64 {
    flops / seconds.max(1e-12) / (peak_tflops * 1e12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EncoderConfig;

    fn bert_base() -> EncoderConfig {
        EncoderConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            ..EncoderConfig::default()
        }
    }

    #[test]
    fn bert_base_costs_six_times_its_encoder_weights_plus_attention_per_token() {
        let flops = bert_base().cost(128).flops;
        // 12 layers x (4 x 768^2 + 2 x 768 x 3072) = 84.9 M encoder matmul weights.
        let encoder_weights = 12.0 * (4.0 * 768.0 * 768.0 + 2.0 * 768.0 * 3072.0);
        assert_eq!(encoder_weights, 84_934_656.0);
        let attention = 6.0 * 12.0 * 2.0 * 128.0 * 768.0;
        assert_eq!(flops.per_token, 6.0 * encoder_weights + attention);
        // The head: 6 x (768^2 + 768 x 30522) = 144 MFLOP per masked token.
        assert_eq!(
            flops.per_masked_token,
            6.0 * (768.0 * 768.0 + 768.0 * 30522.0)
        );
        // At 15% masked, ~0.55 GFLOP per token.
        let per_token = flops.per_token_at(0.15);
        assert!((per_token / 1e9 - 0.545).abs() < 0.005, "{per_token}");
        assert_eq!(
            flops.training_flops(100, 15),
            100.0 * flops.per_token + 15.0 * flops.per_masked_token
        );
    }

    #[test]
    fn longer_sequences_cost_more_attention() {
        let short = bert_base().cost(128).flops.per_token;
        let long = bert_base().cost(512).flops.per_token;
        assert_eq!(long - short, 6.0 * 12.0 * 2.0 * 384.0 * 768.0);
    }

    #[test]
    fn gpu_names_as_cuda_reports_them_find_their_peaks() {
        let h100 = gpu_peak_tflops("NVIDIA H100 80GB HBM3", MatmulFormat::Half);
        assert_eq!(h100, Some(989.4));
        let pcie = gpu_peak_tflops("NVIDIA H100 PCIe", MatmulFormat::Half);
        assert_eq!(pcie, Some(756.0));
        assert_eq!(
            gpu_peak_tflops("NVIDIA H200", MatmulFormat::Fp32),
            Some(66.9)
        );
        assert_eq!(
            gpu_peak_tflops("NVIDIA A100-SXM4-80GB", MatmulFormat::Tf32),
            Some(156.0)
        );
        assert_eq!(
            gpu_peak_tflops("Tesla V100-SXM2-16GB", MatmulFormat::Half),
            Some(125.0)
        );
        assert_eq!(
            gpu_peak_tflops("NVIDIA L40S", MatmulFormat::Half),
            Some(362.1)
        );
        assert_eq!(
            gpu_peak_tflops("NVIDIA L4", MatmulFormat::Half),
            Some(121.0)
        );
        assert_eq!(gpu_peak_tflops("Some Future GPU", MatmulFormat::Half), None);
    }

    #[test]
    fn cpu_peaks_follow_the_vector_units() {
        let flags = "fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile";
        let amx = CpuFeatures::from_flags(flags);
        assert!(amx.amx_bf16 && amx.avx512 && amx.avx512_bf16);
        // 2 cores at 2 GHz: fp32 64 FLOP/cycle -> 0.256 TFLOP/s; AMX bf16 1024 -> 4.096.
        assert!((cpu_peak_tflops(amx, 2, 2.0, MatmulFormat::Fp32) - 0.256).abs() < 1e-12);
        assert!((cpu_peak_tflops(amx, 2, 2.0, MatmulFormat::Half) - 4.096).abs() < 1e-12);
        let avx2 = CpuFeatures::from_flags("avx2 fma");
        assert_eq!(avx2.flops_per_cycle(MatmulFormat::Fp32), 32.0);
        assert_eq!(avx2.flops_per_cycle(MatmulFormat::Half), 32.0);
        assert_eq!(avx2.flops_per_cycle(MatmulFormat::Fp64), 16.0);
        // "avx512f" must match a whole flag, not "avx512fp16" alone.
        assert!(!CpuFeatures::from_flags("avx512fp16").avx512);
    }

    #[test]
    fn mfu_is_achieved_over_peak() {
        // 0.5 GFLOP/token x 286k tokens/s on a 989.4 TFLOP/s H100 = 14.5%.
        let value = mfu(0.5e9 * 286_000.0, 1.0, 989.4);
        assert!((value - 0.1445).abs() < 1e-3, "{value}");
    }
}
