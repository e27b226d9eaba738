//! What mlm-train needs from libtorch that `tch` 0.24 does not expose, through a small C++
//! shim (`csrc/shim.cpp`) compiled against the same libtorch:
//!
//! - autocast for CPU *and* CUDA with a chosen dtype (`tch::autocast` only toggles CUDA
//!   autocast, in fp16): [`set_autocast_dtype`], [`autocast_dtype`], [`Autocast`];
//! - facts for `mlm-train doctor`: the libtorch version and the file it was loaded from, CUDA
//!   runtime / driver / cuDNN versions, GPU names, memory and compute capability.
//!
//! (`pytorch_model.bin` state dicts are read without libtorch, by mlm-torch-pickle.)
//!
//! Every shim call catches C++ exceptions and reports them as [`TorchExtError::Torch`].

use std::ffi::{CStr, c_char, c_int, c_long, c_void};
use std::path::PathBuf;

use tch::Kind;

pub mod attention;
pub mod cuda_graph;
pub mod dist;
pub mod foreach;
pub mod launch;
pub mod matmul;

mod ffi {
    use super::{c_char, c_int, c_long, c_void};

    unsafe extern "C" {
        pub fn mlmx_last_error() -> *const c_char;
        pub fn mlmx_torch_version() -> *const c_char;
        pub fn mlmx_libtorch_path(buffer: *mut c_char, capacity: usize) -> c_int;
        pub fn mlmx_set_autocast_dtype(device_type: c_int, scalar_type: c_int) -> c_int;
        pub fn mlmx_get_autocast_dtype(device_type: c_int, scalar_type: *mut c_int) -> c_int;
        pub fn mlmx_set_autocast_enabled(device_type: c_int, enabled: bool) -> c_int;
        pub fn mlmx_is_autocast_enabled(device_type: c_int, enabled: *mut bool) -> c_int;
        pub fn mlmx_autocast_enter() -> c_int;
        pub fn mlmx_autocast_exit() -> c_int;
        pub fn mlmx_cuda_runtime_version() -> c_long;
        pub fn mlmx_set_float32_matmul_precision(precision: *const c_char) -> c_int;
        pub fn mlmx_float32_matmul_precision() -> c_int;
        pub fn mlmx_cudnn_version() -> c_long;
        pub fn mlmx_cuda_driver_version() -> c_int;
        pub fn mlmx_pin_memory(tensor: *const c_void, out: *mut *mut c_void) -> c_int;
        pub fn mlmx_set_current_device(device_type: c_int, index: c_int) -> c_int;
        pub fn mlmx_current_device(device_type: c_int, index: *mut c_int) -> c_int;
        pub fn mlmx_cuda_device_info(
            index: c_int,
            name: *mut c_char,
            name_capacity: usize,
            total_memory: *mut usize,
            cc_major: *mut c_int,
            cc_minor: *mut c_int,
        ) -> c_int;
    }
}

/// Errors from the libtorch shim.
#[derive(Debug, thiserror::Error)]
pub enum TorchExtError {
    /// libtorch threw a C++ exception; its message is kept.
    #[error("libtorch: {operation}: {message}")]
    Torch {
        operation: &'static str,
        message: String,
    },
    /// A dtype libtorch autocast cannot use, or that `tch::Kind` cannot name.
    #[error("unsupported autocast dtype {0}")]
    UnsupportedDtype(String),
}

type Result<T> = std::result::Result<T, TorchExtError>;

/// Turns a shim status code into a `Result`, fetching the C++ exception message on failure.
fn check(status: c_int, operation: &'static str) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message, valid
    // until the next failing call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(ffi::mlmx_last_error()) }
        .to_string_lossy()
        .into_owned();
    Err(TorchExtError::Torch { operation, message })
}

/// The device types libtorch's autocast is used with here (values are `c10::DeviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDevice {
    Cpu = 0,
    Cuda = 1,
}

/// `at::ScalarType` codes of the dtypes autocast can run in.
fn scalar_type_code(kind: Kind) -> Result<c_int> {
    match kind {
        Kind::Half => Ok(5),
        Kind::Float => Ok(6),
        Kind::BFloat16 => Ok(15),
        other => Err(TorchExtError::UnsupportedDtype(format!("{other:?}"))),
    }
}

fn kind_from_code(code: c_int) -> Result<Kind> {
    match code {
        5 => Ok(Kind::Half),
        6 => Ok(Kind::Float),
        15 => Ok(Kind::BFloat16),
        other => Err(TorchExtError::UnsupportedDtype(format!(
            "at::ScalarType {other}"
        ))),
    }
}

/// Sets the dtype autocast casts to on `device` (`at::autocast::set_autocast_dtype`), for the
/// calling thread: libtorch keeps autocast dtype and enablement per thread.
pub fn set_autocast_dtype(device: AutocastDevice, kind: Kind) -> Result<()> {
    let code = scalar_type_code(kind)?;
    // SAFETY: plain values in, status out; exceptions are caught in the shim.
    let status = unsafe { ffi::mlmx_set_autocast_dtype(device as c_int, code) };
    check(status, "set_autocast_dtype")
}

/// The dtype autocast casts to on `device` (libtorch's defaults: fp16 on CUDA, bf16 on CPU).
pub fn autocast_dtype(device: AutocastDevice) -> Result<Kind> {
    let mut code: c_int = -1;
    // SAFETY: `code` outlives the call, which writes one int to it.
    let status = unsafe { ffi::mlmx_get_autocast_dtype(device as c_int, &mut code) };
    check(status, "get_autocast_dtype")?;
    kind_from_code(code)
}

/// Whether autocast is on for `device` in this thread.
pub fn is_autocast_enabled(device: AutocastDevice) -> Result<bool> {
    let mut enabled = false;
    // SAFETY: `enabled` outlives the call, which writes one bool to it.
    let status = unsafe { ffi::mlmx_is_autocast_enabled(device as c_int, &mut enabled) };
    check(status, "is_autocast_enabled")?;
    Ok(enabled)
}

fn set_autocast_enabled(device: AutocastDevice, enabled: bool) -> Result<()> {
    // SAFETY: plain values in, status out.
    let status = unsafe { ffi::mlmx_set_autocast_enabled(device as c_int, enabled) };
    check(status, "set_autocast_enabled")
}

/// An autocast region, like Python's `with torch.autocast(device, dtype)`: while the value
/// lives, eligible ops on `device` (matmuls, linear layers, attention) run in `dtype`. On drop
/// the previous state is restored and, leaving the outermost region, the cast cache cleared.
///
/// Autocast state is thread-local in libtorch: create and drop the guard on one thread.
#[derive(Debug)]
#[must_use = "autocast is switched off again when the guard is dropped"]
pub struct Autocast {
    device: AutocastDevice,
    previous_enabled: bool,
    previous_dtype: Kind,
    // Not Send: libtorch keeps autocast state per thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Autocast {
    pub fn new(device: AutocastDevice, dtype: Kind) -> Result<Self> {
        let previous_enabled = is_autocast_enabled(device)?;
        let previous_dtype = autocast_dtype(device)?;
        set_autocast_dtype(device, dtype)?;
        set_autocast_enabled(device, true)?;
        // SAFETY: no arguments; exceptions are caught in the shim.
        check(unsafe { ffi::mlmx_autocast_enter() }, "autocast enter")?;
        Ok(Self {
            device,
            previous_enabled,
            previous_dtype,
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // Restoring values that were valid when the guard was made cannot fail short of a
        // libtorch bug; there is no way to report from drop, so failures are ignored.
        // SAFETY: no arguments; exceptions are caught in the shim.
        let _ = check(unsafe { ffi::mlmx_autocast_exit() }, "autocast exit");
        let _ = set_autocast_enabled(self.device, self.previous_enabled);
        let _ = set_autocast_dtype(self.device, self.previous_dtype);
    }
}

/// The libtorch version the shim and tch were compiled against, e.g. `2.11.0`.
pub fn libtorch_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string literal.
    unsafe { CStr::from_ptr(ffi::mlmx_torch_version()) }
        .to_string_lossy()
        .into_owned()
}

/// The `libtorch_cpu.so` file this process loaded.
pub fn libtorch_path() -> Result<PathBuf> {
    let mut buffer = vec![0u8; 4096];
    // SAFETY: the shim writes at most `buffer.len()` bytes, NUL included.
    let status = unsafe { ffi::mlmx_libtorch_path(buffer.as_mut_ptr().cast(), buffer.len()) };
    check(status, "libtorch path")?;
    let text = CStr::from_bytes_until_nul(&buffer)
        .expect("shim NUL-terminates")
        .to_string_lossy();
    Ok(PathBuf::from(text.into_owned()))
}

/// A CUDA version number as libtorch and the driver report it (1000 x major + 10 x minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaVersion(pub i64);

impl std::fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 / 1000, (self.0 % 1000) / 10)
    }
}

/// CUDA runtime version libtorch was built with; `None` for a CPU-only libtorch.
pub fn cuda_runtime_version() -> Option<CudaVersion> {
    // SAFETY: no arguments; reads libtorch's registered CUDA hooks.
    let version = unsafe { ffi::mlmx_cuda_runtime_version() };
    (version > 0).then_some(CudaVersion(version))
}

/// CUDA driver version; `None` where no NVIDIA driver is installed.
pub fn cuda_driver_version() -> Option<CudaVersion> {
    // SAFETY: no arguments; opens libcuda.so.1 if present.
    let version = unsafe { ffi::mlmx_cuda_driver_version() };
    (version > 0).then_some(CudaVersion(i64::from(version)))
}

/// cuDNN version loaded at run time (e.g. 91900); `None` without cuDNN.
pub fn cudnn_version() -> Option<i64> {
    // SAFETY: no arguments; reads libtorch's registered CUDA hooks.
    let version = unsafe { ffi::mlmx_cudnn_version() };
    (version > 0).then_some(version)
}

/// `torch.set_float32_matmul_precision`: how fp32 matmuls run on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float32MatmulPrecision {
    /// Full fp32 (PyTorch's default).
    Highest,
    /// TF32 tensor cores (Ampere and newer): `torch.backends.cuda.matmul.allow_tf32 = True`.
    High,
}

/// Sets how fp32 matmuls run, for the whole process (libtorch's global context).
pub fn set_float32_matmul_precision(precision: Float32MatmulPrecision) -> Result<()> {
    let name: &CStr = match precision {
        Float32MatmulPrecision::Highest => c"highest",
        Float32MatmulPrecision::High => c"high",
    };
    // SAFETY: a NUL-terminated static string; the shim catches C++ exceptions.
    check(
        unsafe { ffi::mlmx_set_float32_matmul_precision(name.as_ptr()) },
        "set float32 matmul precision",
    )
}

/// The current fp32 matmul precision (`medium` reads as `High`: both allow reduced precision).
pub fn float32_matmul_precision() -> Float32MatmulPrecision {
    // SAFETY: no arguments; reads libtorch's global context.
    match unsafe { ffi::mlmx_float32_matmul_precision() } {
        0 => Float32MatmulPrecision::Highest,
        _ => Float32MatmulPrecision::High,
    }
}

/// One GPU as the CUDA driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub total_memory_bytes: u64,
    pub compute_capability: (i32, i32),
}

impl GpuInfo {
    /// bf16 tensor cores (and so useful bf16 autocast) start with Ampere, compute capability 8.0.
    pub fn supports_bf16(&self) -> bool {
        self.compute_capability.0 >= 8
    }
}

/// Describes CUDA device `index` (name, memory, compute capability) through the driver.
pub fn gpu_info(index: usize) -> Result<GpuInfo> {
    let mut name = vec![0u8; 256];
    let mut total_memory = 0usize;
    let (mut major, mut minor) = (0, 0);
    let device = c_int::try_from(index).map_err(|_| TorchExtError::Torch {
        operation: "cuda device info",
        message: format!("device index {index} out of range"),
    })?;
    // SAFETY: every out-pointer outlives the call; `name` holds `name.len()` bytes.
    let status = unsafe {
        ffi::mlmx_cuda_device_info(
            device,
            name.as_mut_ptr().cast(),
            name.len(),
            &mut total_memory,
            &mut major,
            &mut minor,
        )
    };
    check(status, "cuda device info")?;
    let name = CStr::from_bytes_until_nul(&name)
        .expect("shim NUL-terminates")
        .to_string_lossy()
        .into_owned();
    Ok(GpuInfo {
        index,
        name,
        total_memory_bytes: total_memory as u64,
        compute_capability: (major, minor),
    })
}

/// `c10::DeviceType::CUDA`.
const CUDA_DEVICE_TYPE: c_int = 1;

/// `tensor.pin_memory()`: a copy in page-locked host memory, for a non-blocking upload. Not
/// tch's `pin_memory(device)`, whose device argument libtorch 2.11 warns about on every call.
/// Needs a CUDA device (an error elsewhere).
pub fn pin_memory(tensor: &tch::Tensor) -> Result<tch::Tensor> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: `tensor` is a live `at::Tensor*` borrowed for the call; on success the shim
    // writes a fresh heap-allocated `at::Tensor*` to `out`; it catches C++ exceptions.
    let status = unsafe { ffi::mlmx_pin_memory(tensor.as_ptr().cast(), &raw mut out) };
    check(status, "pin memory")?;
    // SAFETY: on success `out` is a fresh `at::Tensor*` nothing else owns; tch takes it over.
    Ok(unsafe { tch::Tensor::from_ptr(out.cast()) })
}

/// `torch.cuda.set_device(index)`: the calling thread's current CUDA device, which streams
/// from the pool, graph capture and NCCL use. An error without CUDA.
pub fn set_current_cuda_device(index: usize) -> Result<()> {
    let index = c_int::try_from(index).map_err(|_| TorchExtError::Torch {
        operation: "set the current CUDA device",
        message: format!("device index {index}"),
    })?;
    // SAFETY: plain values; the shim catches C++ exceptions.
    let status = unsafe { ffi::mlmx_set_current_device(CUDA_DEVICE_TYPE, index) };
    check(status, "set the current CUDA device")
}

/// `torch.cuda.current_device()`. An error without CUDA.
pub fn current_cuda_device() -> Result<usize> {
    let mut index: c_int = -1;
    // SAFETY: the shim writes an int on success and catches C++ exceptions.
    let status = unsafe { ffi::mlmx_current_device(CUDA_DEVICE_TYPE, &raw mut index) };
    check(status, "read the current CUDA device")?;
    Ok(usize::try_from(index).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Tensor};

    /// Without a GPU (these tests' machines) pinning and device selection are errors, not
    /// crashes; with one, they work (the CUDA half runs on a lent GPU).
    #[test]
    fn pinning_and_the_current_device_are_errors_without_cuda() {
        let host = Tensor::from_slice(&[1i64, 2, 3]);
        if tch::Cuda::is_available() {
            assert!(pin_memory(&host).unwrap().is_pinned(Device::Cuda(0)));
            set_current_cuda_device(0).unwrap();
            assert_eq!(current_cuda_device().unwrap(), 0);
            return;
        }
        let error = pin_memory(&host).unwrap_err().to_string();
        assert!(error.contains("pin memory"), "{error}");
        let error = set_current_cuda_device(0).unwrap_err().to_string();
        assert!(error.contains("current CUDA device"), "{error}");
        assert!(current_cuda_device().is_err());
    }

    #[test]
    fn autocast_dtype_round_trips_through_libtorch() {
        for device in [AutocastDevice::Cpu, AutocastDevice::Cuda] {
            let before = autocast_dtype(device).unwrap();
            set_autocast_dtype(device, Kind::BFloat16).unwrap();
            assert_eq!(autocast_dtype(device).unwrap(), Kind::BFloat16);
            set_autocast_dtype(device, Kind::Half).unwrap();
            assert_eq!(autocast_dtype(device).unwrap(), Kind::Half);
            set_autocast_dtype(device, before).unwrap();
        }
    }

    #[test]
    fn float32_matmul_precision_round_trips() {
        assert_eq!(float32_matmul_precision(), Float32MatmulPrecision::Highest);
        set_float32_matmul_precision(Float32MatmulPrecision::High).unwrap();
        assert_eq!(float32_matmul_precision(), Float32MatmulPrecision::High);
        set_float32_matmul_precision(Float32MatmulPrecision::Highest).unwrap();
        assert_eq!(float32_matmul_precision(), Float32MatmulPrecision::Highest);
    }

    #[test]
    fn non_floating_autocast_dtype_is_rejected_before_libtorch() {
        let error = set_autocast_dtype(AutocastDevice::Cpu, Kind::Int64).unwrap_err();
        assert!(
            matches!(error, TorchExtError::UnsupportedDtype(_)),
            "{error}"
        );
    }

    #[test]
    fn cpu_autocast_region_runs_matmul_in_bf16_and_restores_state() {
        let a = Tensor::ones([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([8, 2], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        {
            let _autocast = Autocast::new(AutocastDevice::Cpu, Kind::BFloat16).unwrap();
            assert!(is_autocast_enabled(AutocastDevice::Cpu).unwrap());
            let product = a.matmul(&b);
            assert_eq!(product.kind(), Kind::BFloat16);
            assert_eq!(product.double_value(&[0, 0]), 8.0);
        }
        assert!(!is_autocast_enabled(AutocastDevice::Cpu).unwrap());
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn reports_the_libtorch_it_was_built_against() {
        assert_eq!(libtorch_version(), "2.11.0");
        let path = libtorch_path().unwrap();
        assert!(path.ends_with("libtorch_cpu.so"), "{}", path.display());
        assert!(path.exists());
    }

    #[test]
    fn libtorch_cuda_is_linked_so_cuda_hooks_are_registered() {
        // Without libtorch_cuda.so loaded, libtorch reports no CUDA runtime at all; with it
        // (the wheel is a CUDA build) the runtime version is known even on a CPU-only machine.
        assert!(
            cuda_runtime_version().is_some(),
            "libtorch_cuda.so was not loaded: the --no-as-needed link argument is missing"
        );
    }

    #[test]
    fn asking_for_a_missing_gpu_is_an_error_not_a_crash() {
        let count = tch::Cuda::device_count() as usize;
        let error = gpu_info(count + 3).unwrap_err();
        assert!(matches!(error, TorchExtError::Torch { .. }), "{error}");
    }
}
