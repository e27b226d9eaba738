// mlm-torch-ext: what the trainer needs from libtorch that tch 0.24 does not expose.
//
// Every function has C linkage, never lets a C++ exception cross the boundary (it is caught
// and kept in a thread-local message, read with mlmx_last_error), and returns 0 on success.
// Tensors, when functions take them, arrive as `at::Tensor*` (tch's `Tensor::as_ptr`).

#include <ATen/autocast_mode.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/headeronly/version.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <memory>
#include <optional>

#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_sub.h>
#include <ATen/ops/_foreach_zero.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_flash_attention_forward.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>

#include <dlfcn.h>

#include "guard.hpp"

#include <cmath>
#include <cstddef>
#include <vector>
#include <cstring>
#include <exception>
#include <string>

namespace {

using mlmx::guarded;

void copy_string(const std::string& text, char* buffer, size_t capacity) {
    if (capacity == 0) return;
    size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
    std::memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
}

// Only the two device types autocast is used with here; anything else is a caller bug.
at::DeviceType autocast_device(int device_type) {
    switch (device_type) {
        case 0: return at::kCPU;
        case 1: return at::kCUDA;
        default: throw std::invalid_argument("autocast device type must be 0 (cpu) or 1 (cuda), got " + std::to_string(device_type));
    }
}

// The CUDA driver API, opened at run time: libtorch exposes no device name or memory size
// without the CUDA headers (which the wheel does not ship), and the driver library is only
// present on GPU machines. These signatures and attribute numbers are stable across CUDA 11-13.
struct CudaDriver {
    using Init = int (*)(unsigned int);
    using GetCount = int (*)(int*);
    using Get = int (*)(int*, int);
    using GetName = int (*)(char*, int, int);
    using TotalMem = int (*)(size_t*, int);
    using GetAttribute = int (*)(int*, int, int);
    using DriverVersion = int (*)(int*);
    Init init = nullptr;
    GetCount get_count = nullptr;
    Get get = nullptr;
    GetName get_name = nullptr;
    TotalMem total_mem = nullptr;
    GetAttribute get_attribute = nullptr;
    DriverVersion driver_version = nullptr;
    bool ready = false;

    static const CudaDriver& instance() {
        static CudaDriver driver = open();
        return driver;
    }

   private:
    static CudaDriver open() {
        CudaDriver d;
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) return d;
        d.init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
        d.get_count = reinterpret_cast<GetCount>(dlsym(lib, "cuDeviceGetCount"));
        d.get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
        d.get_name = reinterpret_cast<GetName>(dlsym(lib, "cuDeviceGetName"));
        d.total_mem = reinterpret_cast<TotalMem>(dlsym(lib, "cuDeviceTotalMem_v2"));
        d.get_attribute = reinterpret_cast<GetAttribute>(dlsym(lib, "cuDeviceGetAttribute"));
        d.driver_version = reinterpret_cast<DriverVersion>(dlsym(lib, "cuDriverGetVersion"));
        d.ready = d.init && d.get_count && d.get && d.get_name && d.total_mem && d.get_attribute &&
                  d.driver_version && d.init(0) == 0;
        return d;
    }
};

constexpr int kComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kComputeCapabilityMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

}  // namespace

extern "C" {

const char* mlmx_last_error() { return mlmx::last_error.c_str(); }

// The libtorch version of the headers the shim was compiled against (the same libtorch tch links).
const char* mlmx_torch_version() { return TORCH_VERSION; }

// Path of the libtorch_cpu shared object this process actually loaded.
int mlmx_libtorch_path(char* buffer, size_t capacity) {
    return guarded([&] {
        Dl_info info;
        auto symbol = reinterpret_cast<void*>(&at::get_num_threads);
        if (dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) {
            throw std::runtime_error("dladdr could not locate libtorch");
        }
        copy_string(info.dli_fname, buffer, capacity);
    });
}

int mlmx_set_autocast_dtype(int device_type, int scalar_type) {
    return guarded([&] {
        at::autocast::set_autocast_dtype(autocast_device(device_type), static_cast<at::ScalarType>(scalar_type));
    });
}

int mlmx_get_autocast_dtype(int device_type, int* scalar_type) {
    return guarded([&] {
        *scalar_type = static_cast<int>(at::autocast::get_autocast_dtype(autocast_device(device_type)));
    });
}

int mlmx_set_autocast_enabled(int device_type, bool enabled) {
    return guarded([&] { at::autocast::set_autocast_enabled(autocast_device(device_type), enabled); });
}

int mlmx_is_autocast_enabled(int device_type, bool* enabled) {
    return guarded([&] { *enabled = at::autocast::is_autocast_enabled(autocast_device(device_type)); });
}

// Autocast caches casted weights while nesting > 0; leaving the outermost region clears it
// (what torch.autocast's __exit__ does).
int mlmx_autocast_enter() {
    return guarded([&] { at::autocast::increment_nesting(); });
}

int mlmx_autocast_exit() {
    return guarded([&] {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    });
}

// CUDA runtime version libtorch was built with (e.g. 13000), 0 without CUDA.
long mlmx_cuda_runtime_version() {
    long version = 0;
    // A failure here means "unknown", reported as 0; no exception may cross extern "C".
    guarded([&] {
        const auto& hooks = at::detail::getCUDAHooks();
        version = hooks.hasCUDART() ? hooks.versionCUDART() : 0;
    });
    return version;
}

// cuDNN version found at run time (e.g. 91900), 0 without cuDNN.
long mlmx_cudnn_version() {
    long version = 0;
    guarded([&] {
        const auto& hooks = at::detail::getCUDAHooks();
        version = hooks.hasCuDNN() ? hooks.versionRuntimeCuDNN() : 0;
    });
    return version;
}

// CUDA driver version (e.g. 13000), 0 where there is no driver.
int mlmx_cuda_driver_version() {
    const auto& driver = CudaDriver::instance();
    int version = 0;
    if (!driver.ready || driver.driver_version(&version) != 0) return 0;
    return version;
}

// Facts about CUDA device `index` from the driver. Returns non-zero where there is no driver
// or no such device.
int mlmx_cuda_device_info(int index, char* name, size_t name_capacity, size_t* total_memory, int* cc_major,
                          int* cc_minor) {
    return guarded([&] {
        const auto& driver = CudaDriver::instance();
        if (!driver.ready) throw std::runtime_error("no CUDA driver (libcuda.so.1) in this process");
        int count = 0;
        if (driver.get_count(&count) != 0 || index < 0 || index >= count) {
            throw std::runtime_error("no CUDA device " + std::to_string(index));
        }
        int device = 0;
        char buffer[256] = {0};
        if (driver.get(&device, index) != 0 || driver.get_name(buffer, sizeof(buffer), device) != 0 ||
            driver.total_mem(total_memory, device) != 0 ||
            driver.get_attribute(cc_major, kComputeCapabilityMajor, device) != 0 ||
            driver.get_attribute(cc_minor, kComputeCapabilityMinor, device) != 0) {
            throw std::runtime_error("CUDA driver query failed for device " + std::to_string(index));
        }
        copy_string(buffer, name, name_capacity);
    });
}

// Tensors passed as an array of `at::Tensor*` (tch's `Tensor::as_ptr`), as a vector of
// handles sharing their storage.
std::vector<at::Tensor> tensor_list(at::Tensor* const* tensors, size_t n) {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) list.push_back(*tensors[i]);
    return list;
}

// One AdamW step over `n` parameters with PyTorch's fused kernel (torch.optim.AdamW with
// fused=True: torch/optim/adam.py `_fused_adam`): `steps` (one f32 scalar tensor per
// parameter, on its device) are incremented first, as the Python optimizer does, then the
// kernel updates params, exp_avgs and exp_avg_sqs in place, with decoupled weight decay.
// With `lr_tensor` (not null) the learning rate is read from that tensor when the kernel
// runs (the `_fused_adamw_.tensor_lr` overload: f32 on the parameters' CUDA device, any
// float on the CPU), so a captured CUDA graph follows the schedule; `lr` is then unused.
int mlmx_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* exp_avgs,
                     at::Tensor* const* exp_avg_sqs, at::Tensor* const* steps, size_t n, double lr,
                     const at::Tensor* lr_tensor, double beta1, double beta2, double weight_decay,
                     double eps, const at::Tensor* found_inf) {
    return guarded([&] {
        if (n == 0) return;
        auto step_list = tensor_list(steps, n);
        at::_foreach_add_(step_list, 1);
        std::optional<at::Tensor> skip;
        if (found_inf != nullptr) skip = *found_inf;
        if (lr_tensor != nullptr) {
            at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                              tensor_list(exp_avg_sqs, n), {}, step_list, *lr_tensor, beta1, beta2,
                              weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false,
                              /*grad_scale=*/std::nullopt, skip);
        } else {
            at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                              tensor_list(exp_avg_sqs, n), {}, step_list, lr, beta1, beta2, weight_decay,
                              eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, skip);
        }
        // A skipped update does not count as a step (torch/optim/adam.py `_fused_adam` undoes
        // the increment with `_foreach_sub_(device_state_steps, [device_found_inf] * n)`).
        if (skip) {
            std::vector<at::Tensor> undo(n, skip->reshape({}).to(step_list[0].scalar_type()));
            at::_foreach_sub_(step_list, undo);
        }
    });
}

// torch.nn.utils.clip_grad_norm_ with foreach=True: the global L2 norm of `n` gradients
// (norm of the per-tensor norms), and, when `max_norm` is finite, every gradient scaled by
// clamp(max_norm / (norm + 1e-6), max=1). `*total_out` receives the norm before clipping, a
// new 0-dim tensor on the gradients' device (undefined when n == 0), owned by the caller
// (tch's `Tensor::from_ptr`). No host synchronisation.
int mlmx_clip_grad_norm_device(at::Tensor* const* grads, size_t n, double max_norm, at::Tensor** total_out) {
    return guarded([&] {
        if (n == 0) {
            *total_out = new at::Tensor();
            return;
        }
        auto list = tensor_list(grads, n);
        auto norms = at::_foreach_norm(list, 2);
        auto total = at::linalg_vector_norm(at::stack(norms), 2);
        if (std::isfinite(max_norm)) {
            auto coefficient = ((total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
            at::_foreach_mul_(list, coefficient);
        }
        *total_out = new at::Tensor(total);
    });
}

// GradScaler.unscale_ (torch/amp/grad_scaler.py `_unscale_grads_`): every gradient multiplied
// by `inv_scale`, and `found_inf` (a 1-element f32 tensor on their device) set to 1 when any
// is inf or NaN. One kernel over all gradients, no host synchronisation.
int mlmx_amp_unscale(at::Tensor* const* grads, size_t n, at::Tensor* found_inf, const at::Tensor* inv_scale) {
    return guarded([&] {
        if (n == 0) return;
        at::_amp_foreach_non_finite_check_and_unscale_(tensor_list(grads, n), *found_inf, *inv_scale);
    });
}

// optimizer.zero_grad(set_to_none=False) over `n` gradients in one launch (the foreach form
// PyTorch's optimizers use), in place: the gradients keep their storage, which a captured
// CUDA graph reads and writes.
int mlmx_foreach_zero(at::Tensor* const* tensors, size_t n) {
    return guarded([&] {
        if (n == 0) return;
        at::_foreach_zero_(tensor_list(tensors, n));
    });
}

// Autocast's cache of weights cast to the autocast dtype (torch.autocast(cache_enabled=...)).
// CUDA graph capture turns it off, as torch.cuda.graphs asks: a cast cached during capture
// would be freed into the graph's private memory pool when autocast exits.
int mlmx_set_autocast_cache_enabled(bool enabled) {
    return guarded([&] { at::autocast::set_autocast_cache_enabled(enabled); });
}

bool mlmx_is_autocast_cache_enabled() { return at::autocast::is_autocast_cache_enabled(); }

// Unpadded (varlen) self-attention: FlashAttention over sequences packed back to back,
// `query`/`key`/`value` [tokens, heads, head_dim] (bf16/fp16 on CUDA), sequence b's tokens
// at rows cu_seqlens[b]..cu_seqlens[b + 1] (int32, [B + 1], on their device), the longest
// `max_len` long: the kernel PyTorch's nested-tensor SDPA and flash_attn_varlen_func run,
// differentiable through libtorch's autograd. `*out` receives the output, [tokens, heads,
// head_dim], owned by the caller. `window` >= 0: each query attends only the keys at most `window`
// positions before or after it in its sequence (FlashAttention's window_size_left/right, both
// inclusive: ModernBERT's local layers); < 0: every key of its sequence.
int mlmx_flash_attention_varlen(const at::Tensor* query, const at::Tensor* key, const at::Tensor* value,
                                const at::Tensor* cu_seqlens, int64_t max_len, double dropout, double scale,
                                int64_t window, at::Tensor** out) {
    return guarded([&] {
        std::optional<int64_t> side = window >= 0 ? std::optional<int64_t>(window) : std::nullopt;
        auto result = at::_flash_attention_forward(*query, *key, *value, *cu_seqlens, *cu_seqlens, max_len,
                                                   max_len, dropout, /*is_causal=*/false,
                                                   /*return_debug_mask=*/false, scale, side, side);
        *out = new at::Tensor(std::get<0>(result));
    });
}

// Pinned (page-locked) host memory for an asynchronous upload: `self.pin_memory()` with no
// device argument. tch's binding passes one, which libtorch 2.11 answers with a deprecation
// warning on every call (native/Memory.cpp): once per uploaded batch, a flooded log.
int mlmx_pin_memory(const at::Tensor* self, at::Tensor** out) {
    return guarded([&] { *out = new at::Tensor(self->pin_memory()); });
}

// torch.cuda.set_device / current_device through the device guard libtorch registers for
// the device type (`c10::DeviceType` value), so this file needs no CUDA header: makes
// `index` the calling thread's current device (streams, graph capture and NCCL then use it).
int mlmx_set_current_device(int device_type, int index) {
    return guarded([&] {
        auto type = static_cast<c10::DeviceType>(device_type);
        c10::impl::getDeviceGuardImpl(type)->setDevice(c10::Device(type, static_cast<c10::DeviceIndex>(index)));
    });
}

int mlmx_current_device(int device_type, int* index) {
    return guarded([&] {
        auto type = static_cast<c10::DeviceType>(device_type);
        *index = c10::impl::getDeviceGuardImpl(type)->getDevice().index();
    });
}

// torch.set_float32_matmul_precision: "highest" (fp32), "high" (TF32 tensor cores on Ampere
// and newer), "medium".
int mlmx_set_float32_matmul_precision(const char* precision) {
    return guarded([&] { at::globalContext().setFloat32MatmulPrecision(precision); });
}

// 0 highest, 1 high, 2 medium.
int mlmx_float32_matmul_precision() {
    return static_cast<int>(at::globalContext().float32MatmulPrecision());
}

}  // extern "C"
