// The NCCL backend for dist.cpp, compiled only when build.rs finds libtorch_cuda.so, the
// CUDA runtime headers and nccl.h (the nvidia-* wheels beside torch). Otherwise the stub
// below says how the shim was built.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <stdexcept>

#ifdef MLMX_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

c10::intrusive_ptr<c10d::Backend> mlmx_make_nccl_backend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, std::chrono::milliseconds timeout) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
}

extern "C" bool mlmx_built_with_nccl() { return true; }
#else
c10::intrusive_ptr<c10d::Backend> mlmx_make_nccl_backend(
    const c10::intrusive_ptr<c10d::Store>&, int, int, std::chrono::milliseconds) {
    throw std::runtime_error(
        "this mlm-train was built without NCCL (no libtorch_cuda.so, CUDA runtime headers or nccl.h "
        "beside the torch it linked); use distributed.backend = \"gloo\" or rebuild against a CUDA torch");
}

extern "C" bool mlmx_built_with_nccl() { return false; }
#endif
