//! Which library multiplies fp32 linear layers on the CPU: the BLAS ATen calls (MKL in the
//! torch wheels) or oneDNN's matmul (csrc/onednn.cpp). Both compute in fp32; the choice is
//! made once per process ([`set_cpu_matmul`]) and read by [`linear`], which every network's
//! linear layer and MLM decoder goes through.
//!
//! Why a choice: the wheel's MKL takes a generic sgemm path on CPUs that are not Intel's; on
//! an AVX-512 AMD EPYC oneDNN runs the same linear layers, forward and backward, 1.7x-2.2x
//! faster (docs/benchmarks.md). On Intel CPUs MKL has its own AVX-512 kernels and stays.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, Kind, Tensor};

use crate::{Result, check};

mod ffi {
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        pub fn mlmx_onednn_linear(
            input: *const c_void,
            weight: *const c_void,
            bias: *const c_void,
            out: *mut *mut c_void,
        ) -> c_int;
        pub fn mlmx_has_onednn() -> bool;
    }
}

/// The library fp32 CPU linear layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMatmul {
    /// ATen's own `linear` (the BLAS libtorch was built with: MKL in the wheels).
    Blas,
    /// oneDNN's matmul, forward and backward ([`linear`]).
    OneDnn,
}

static ONEDNN: AtomicBool = AtomicBool::new(false);

/// Sets the library fp32 CPU linear layers use from now on, in every thread. `OneDnn` where
/// [`onednn_supported`] is false is refused (the caller names why).
pub fn set_cpu_matmul(choice: CpuMatmul) -> std::result::Result<(), UnsupportedOneDnn> {
    if choice == CpuMatmul::OneDnn && !onednn_supported() {
        return Err(UnsupportedOneDnn);
    }
    if choice == CpuMatmul::OneDnn {
        bound_primitive_cache();
    }
    ONEDNN.store(choice == CpuMatmul::OneDnn, Ordering::Relaxed);
    Ok(())
}

/// The environment variable of oneDNN's primitive cache capacity, and the value set when the
/// user has not: no cache.
const PRIMITIVE_CACHE_CAPACITY: &str = "ONEDNN_PRIMITIVE_CACHE_CAPACITY";

/// Turns oneDNN's primitive cache off unless the user sized it. It keeps up to 1,024
/// primitives, one per operand shape, with their memory; the MLM decoder's shape changes with
/// every batch's masked-token count, so the cache filled with decoder primitives: a 6 x 384
/// ModernBERT's peak RSS grew to 2.13 GB over 120 steps against 1.63 GB without the cache,
/// and creating each primitive anew was no slower (docs/benchmarks.md). oneDNN reads the
/// variable when it first makes a primitive, which has not happened yet.
fn bound_primitive_cache() {
    if std::env::var_os(PRIMITIVE_CACHE_CAPACITY).is_none() {
        // SAFETY: called while the run sets itself up, before any model work, from the
        // thread that sets up the run: nothing else reads the environment at this point.
        unsafe { std::env::set_var(PRIMITIVE_CACHE_CAPACITY, "0") };
    }
}

/// The library fp32 CPU linear layers use now.
pub fn cpu_matmul() -> CpuMatmul {
    if ONEDNN.load(Ordering::Relaxed) {
        CpuMatmul::OneDnn
    } else {
        CpuMatmul::Blas
    }
}

/// oneDNN's fp32 matmul cannot run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "oneDNN's fp32 matmul needs libtorch built with oneDNN and an x86-64 CPU with AVX-512 \
     (BW, VL, DQ)"
)]
pub struct UnsupportedOneDnn;

/// Whether oneDNN's fp32 matmul can run in this process: libtorch has oneDNN and the CPU has
/// what ATen's `mkldnn_matmul` checks for fp32 operands (AVX-512 BW, VL and DQ on x86-64).
pub fn onednn_supported() -> bool {
    // SAFETY: a plain query of libtorch's build; no arguments.
    let built = unsafe { ffi::mlmx_has_onednn() };
    built && avx512_for_onednn()
}

#[cfg(target_arch = "x86_64")]
fn avx512_for_onednn() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_for_onednn() -> bool {
    false
}

/// The CPU's vendor string from `cpuid` (`GenuineIntel`, `AuthenticAMD`, ...); `None` off
/// x86-64.
pub fn cpu_vendor() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let leaf = std::arch::x86_64::__cpuid(0);
        let bytes: Vec<u8> = [leaf.ebx, leaf.edx, leaf.ecx]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// `xs @ weight^T + bias` (`nn.functional.linear`), by the library [`set_cpu_matmul`] chose
/// for fp32 CPU tensors and by ATen for everything else (GPU, fp64, bf16, fp16). The oneDNN
/// path is differentiable with respect to all three; under CPU autocast it defers to ATen.
///
/// # Panics
///
/// Where libtorch refuses the operands (shapes that do not chain), as `Tensor::linear` does.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let fp32_cpu = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    let onednn = ONEDNN.load(Ordering::Relaxed)
        && fp32_cpu(xs)
        && fp32_cpu(weight)
        && bias.is_none_or(fp32_cpu);
    if !onednn {
        return xs.linear(weight, bias);
    }
    onednn_linear(xs, weight, bias).unwrap_or_else(|error| panic!("{error}"))
}

/// [`linear`] by oneDNN whatever [`set_cpu_matmul`] chose: fp32 CPU tensors (under CPU
/// autocast, ATen's `linear`). Where oneDNN does not run ([`onednn_supported`]) the error
/// says why.
pub fn onednn_linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let pointer = |t: &Tensor| t.as_ptr().cast::<c_void>();
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: the tensors are live `at::Tensor*` borrowed for the call (bias may be null); on
    // success the shim writes a fresh heap-allocated `at::Tensor*` to `out`; it catches C++
    // exceptions.
    let status = unsafe {
        ffi::mlmx_onednn_linear(
            pointer(xs),
            pointer(weight),
            bias.map_or(std::ptr::null(), pointer),
            &raw mut out,
        )
    };
    check(status, "oneDNN linear")?;
    // SAFETY: on success `out` is a fresh `at::Tensor*` nothing else owns; tch takes it over.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::*;

    fn random(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true)
    }

    /// Output and the gradients of input, weight and bias, as fp64 for comparing.
    fn with_grads(
        f: impl Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor,
        xs: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        upstream: &Tensor,
    ) -> Vec<Tensor> {
        let detached = |t: &Tensor| t.detach().set_requires_grad(true);
        let (xs, weight, bias) = (detached(xs), detached(weight), bias.map(detached));
        let out = f(&xs, &weight, bias.as_ref());
        (&out * upstream).sum(Kind::Float).backward();
        let mut all = vec![out.detach(), xs.grad(), weight.grad()];
        all.extend(bias.map(|b| b.grad()));
        all.iter().map(|t| t.to_kind(Kind::Double)).collect()
    }

    fn max_relative_difference(a: &[Tensor], b: &[Tensor]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(a, b)| {
                let scale = b.abs().max().double_value(&[]).max(1e-30);
                (a - b).abs().max().double_value(&[]) / scale
            })
            .fold(0.0, f64::max)
    }

    /// oneDNN's forward and backward equal ATen's to fp32 rounding: 3-D input, with and
    /// without a bias, an input that is a transposed view, a weight that is a slice of a
    /// larger one (as `forward_outputs` passes); a dropped product or a transposed gradient
    /// would be off by O(1).
    #[test]
    fn onednn_linear_equals_aten_forward_and_backward() {
        if !onednn_supported() {
            assert_eq!(set_cpu_matmul(CpuMatmul::OneDnn), Err(UnsupportedOneDnn));
            return;
        }
        tch::manual_seed(7);
        let stacked = random(&[9, 13]);
        let cases: Vec<(Tensor, Tensor, Option<Tensor>)> = vec![
            (random(&[2, 5, 13]), random(&[6, 13]), Some(random(&[6]))),
            (random(&[7, 13]), random(&[6, 13]), None),
            (
                random(&[13, 7]).transpose(0, 1),
                random(&[6, 13]),
                Some(random(&[6])),
            ),
            (random(&[3, 13]), stacked.narrow(0, 3, 4), None),
        ];
        for (index, (xs, weight, bias)) in cases.iter().enumerate() {
            let mut shape = xs.size();
            *shape.last_mut().expect("rank >= 1") = weight.size()[0];
            let upstream = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
            let aten = with_grads(
                |x, w, b| x.linear(w, b),
                xs,
                weight,
                bias.as_ref(),
                &upstream,
            );
            let onednn = |x: &Tensor, w: &Tensor, b: Option<&Tensor>| {
                onednn_linear(x, w, b).expect("oneDNN runs here")
            };
            let ours = with_grads(onednn, xs, weight, bias.as_ref(), &upstream);
            assert_eq!(ours[0].size(), aten[0].size(), "case {index}");
            let difference = max_relative_difference(&ours, &aten);
            assert!(difference < 1e-5, "case {index}: differs by {difference}");
        }
    }

    /// Under CPU autocast the product runs in bf16 as ATen's would; fp64 and the BLAS choice
    /// go to ATen itself, bit for bit.
    #[test]
    fn linear_defers_to_aten_off_fp32_and_under_autocast() {
        let xs = Tensor::randn([4, 8], (Kind::Double, Device::Cpu));
        let weight = Tensor::randn([3, 8], (Kind::Double, Device::Cpu));
        assert!(linear(&xs, &weight, None).equal(&xs.linear(&weight, None::<&Tensor>)));
        if !onednn_supported() {
            return;
        }
        let (xs, weight) = (xs.to_kind(Kind::Float), weight.to_kind(Kind::Float));
        let _autocast =
            crate::Autocast::new(crate::AutocastDevice::Cpu, Kind::BFloat16).expect("CPU autocast");
        let out = onednn_linear(&xs, &weight, None).expect("runs");
        assert_eq!(out.kind(), Kind::BFloat16);
    }
}
