// fp32 `nn.Linear` on the CPU through oneDNN's matmul instead of the BLAS (MKL) ATen calls.
//
// Why: on CPUs that are not Intel's, the MKL inside the torch wheel takes a generic sgemm path
// (perf shows `mkl_blas_def_sgemm_kernel_0_zen` on an AVX-512 AMD EPYC), about half as fast
// as oneDNN's matmul on the same cores and the same fp32 operands: a linear layer's forward
// and backward measured 1.7x-2.2x faster (docs/benchmarks.md). ATen routes fp32 matmuls to
// oneDNN only in reduced precision (`torch.backends.mkldnn.matmul.fp32_precision` bf16/tf32);
// this keeps full fp32 (oneDNN's strict math mode) and changes only which library multiplies.
//
// The operator is an autograd function: forward `x @ w^T (+ b)`, backward `g @ w`, `g^T @ x`
// and `g.sum(0)`, every product by oneDNN. src/matmul.rs sends it fp32 CPU tensors only, when
// the run chose oneDNN; under CPU autocast `mlmx_onednn_linear` below calls `at::linear`.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "guard.hpp"

namespace at::native {
// ATen/native/mkldnn/Matmul.h (not shipped in the wheel's headers): result = beta * result +
// alpha * mat1 @ mat2, fp32/bf16/fp16, 2-D or 3-D, operands contiguous or transposed.
TORCH_API void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta,
                             float alpha);
}  // namespace at::native

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a @ b into a fresh [a.rows, b.cols] tensor.
at::Tensor onednn_mm(const at::Tensor& a, const at::Tensor& b) {
    auto out = at::empty({a.size(0), b.size(1)}, a.options());
    at::native::mkldnn_matmul(a, b, out, /*beta=*/0.0f, /*alpha=*/1.0f);
    return out;
}

// A gradient that may arrive broadcast or strided, as a row-major [rows, cols] matrix.
at::Tensor as_matrix(const at::Tensor& t, int64_t cols) { return t.reshape({-1, cols}).contiguous(); }

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias) {
        ctx->save_for_backward({input, weight});
        ctx->saved_data["has_bias"] = bias.has_value();
        const int64_t in_features = weight.size(1);
        auto rows = as_matrix(input, in_features);
        auto out = onednn_mm(rows, weight.t());
        if (bias) out.add_(*bias);
        auto shape = input.sizes().vec();
        shape.back() = weight.size(0);
        return out.view(shape);
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto saved = ctx->get_saved_variables();
        const auto& input = saved[0];
        const auto& weight = saved[1];
        auto grad = as_matrix(grads[0], weight.size(0));
        at::Tensor grad_input, grad_weight, grad_bias;
        if (ctx->needs_input_grad(0)) grad_input = onednn_mm(grad, weight).view(input.sizes());
        if (ctx->needs_input_grad(1)) grad_weight = onednn_mm(grad.t(), as_matrix(input, weight.size(1)));
        if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) grad_bias = grad.sum(0);
        return {grad_input, grad_weight, grad_bias};
    }
};

}  // namespace

extern "C" {

// `*out` = linear(input, weight, bias) by oneDNN, differentiable; `bias` may be null. The
// caller has checked that the three are fp32 CPU tensors; under CPU autocast (bf16 runs)
// `at::linear` runs instead, so that autocast casts the operands as it would anyway (and
// ATen sends bf16 products to oneDNN itself).
int mlmx_onednn_linear(const at::Tensor* input, const at::Tensor* weight, const at::Tensor* bias,
                       at::Tensor** out) {
    return mlmx::guarded([&] {
        auto b = bias ? std::optional<at::Tensor>(*bias) : std::nullopt;
        if (at::autocast::is_autocast_enabled(at::kCPU)) {
            *out = new at::Tensor(at::linear(*input, *weight, b));
        } else {
            *out = new at::Tensor(OneDnnLinear::apply(*input, *weight, b));
        }
    });
}

// Whether this libtorch was built with oneDNN (MKL-DNN).
bool mlmx_has_onednn() { return at::globalContext().hasMKLDNN(); }

}  // extern "C"
