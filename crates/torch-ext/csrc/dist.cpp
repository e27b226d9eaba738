// Data parallelism on PyTorch's own engine (c10d), for mlm-torch-ext's `dist` module: a
// TCPStore (optionally under a prefix), a ProcessGroup with Gloo (CPU) or NCCL (CUDA, in
// dist_nccl.cpp), the collectives the trainer calls directly, and the Reducer that
// DistributedDataParallel drives (gradient buckets all-reduced during backward).
//
// The Reducer is set up as torch/nn/parallel/distributed.py's `_ddp_init_helper` does: one
// bucket for the first iteration (find_unused_parameters=False), buckets listed in reverse
// (gradients are produced roughly in reverse order of definition), rebuilt after the first
// iteration in the order gradients actually arrived, capped at `bucket_bytes_cap` with a
// smaller first bucket.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <c10/util/Logging.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "guard.hpp"

struct MlmxStore {
    c10::intrusive_ptr<c10d::Store> store;
};

struct MlmxGroup {
    c10::intrusive_ptr<c10d::ProcessGroup> group;
    std::chrono::milliseconds timeout;
};

struct MlmxReducer {
    std::shared_ptr<c10d::Reducer> reducer;
};

// In dist_nccl.cpp (or its stub when the shim is built without NCCL).
c10::intrusive_ptr<c10d::Backend> mlmx_make_nccl_backend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, std::chrono::milliseconds timeout);

namespace {

using mlmx::guarded;

std::vector<at::Tensor> tensor_list(at::Tensor* const* tensors, size_t n) {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) list.push_back(*tensors[i]);
    return list;
}

std::vector<std::string> key_list(const char* const* keys, size_t n) {
    return std::vector<std::string>(keys, keys + n);
}

// Gloo with one transport device per interface named in GLOO_SOCKET_IFNAME (comma-separated),
// as torch's Python binding sets it up.
c10::intrusive_ptr<c10d::Backend> gloo_backend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, std::chrono::milliseconds timeout,
    const char* interfaces) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (interfaces != nullptr && *interfaces != '\0') {
        std::string names(interfaces);
        size_t start = 0;
        while (start <= names.size()) {
            size_t end = std::min(names.find(',', start), names.size());
            if (end > start) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, end - start)));
            start = end + 1;
        }
    } else {
        // The machine's hostname, or loopback when it does not resolve.
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // A fresh store namespace per backend, as c10d's Python front end gives each backend.
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo/", store);
    return c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, options);
}

void wait_for(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
    work->wait(timeout);
}

}  // namespace

extern "C" {

// A TCPStore client of host:port, or its server when `is_server` (rank 0 of a standalone
// run); keys under `prefix` when it is non-empty (torchrun's agent store).
int mlmx_store_open(const char* host, uint16_t port, bool is_server, const char* prefix, int64_t timeout_ms,
                    MlmxStore** out) {
    return guarded([&] {
        c10d::TCPStoreOptions options;
        options.port = port;
        options.isServer = is_server;
        options.numWorkers = std::nullopt;
        options.waitWorkers = false;
        options.timeout = std::chrono::milliseconds(timeout_ms);
        c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, options);
        if (prefix != nullptr && *prefix != '\0') store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
        *out = new MlmxStore{store};
    });
}

void mlmx_store_free(MlmxStore* store) { delete store; }

// Raises c10's log threshold to errors: once a job is known to have failed, c10d's warnings
// about closed sockets (each with a C++ backtrace) say nothing the error message does not.
void mlmx_quiet_c10_warnings() { FLAGS_caffe2_log_level = 2; }

int mlmx_store_set(MlmxStore* store, const char* key, const uint8_t* value, size_t len) {
    return guarded([&] { store->store->set(key, std::vector<uint8_t>(value, value + len)); });
}

// The value of `key` (waiting for it up to the store's timeout), copied into `buffer`;
// `len` receives the value's full length.
int mlmx_store_get(MlmxStore* store, const char* key, uint8_t* buffer, size_t capacity, size_t* len) {
    return guarded([&] {
        auto value = store->store->get(key);
        *len = value.size();
        std::memcpy(buffer, value.data(), std::min(capacity, value.size()));
    });
}

// Whether every key is set, without waiting.
int mlmx_store_check(MlmxStore* store, const char* const* keys, size_t n, bool* all_set) {
    return guarded([&] { *all_set = store->store->check(key_list(keys, n)); });
}

// Waits until every key is set; fails after `timeout_ms`.
int mlmx_store_wait(MlmxStore* store, const char* const* keys, size_t n, int64_t timeout_ms) {
    return guarded([&] { store->store->wait(key_list(keys, n), std::chrono::milliseconds(timeout_ms)); });
}

// A process group on `store`: backend 0 = Gloo (serves CPU tensors, and CUDA ones through the
// host), 1 = NCCL (CUDA; Gloo stays registered for CPU tensors).
int mlmx_group_new(MlmxStore* store, int rank, int size, int backend, int64_t timeout_ms,
                   const char* gloo_interfaces, MlmxGroup** out) {
    return guarded([&] {
        auto timeout = std::chrono::milliseconds(timeout_ms);
        auto group = c10::make_intrusive<c10d::ProcessGroup>(store->store, rank, size);
        auto gloo = gloo_backend(store->store, rank, size, timeout, gloo_interfaces);
        group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
        if (backend == 1) {
            auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", store->store);
            auto nccl = mlmx_make_nccl_backend(prefixed, rank, size, timeout);
            group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
            group->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
        } else {
            group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
            group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
        }
        *out = new MlmxGroup{group, timeout};
    });
}

void mlmx_group_free(MlmxGroup* group) { delete group; }

// Copies rank `root`'s tensors to every rank, coalesced into 250 MB transfers as DDP's
// `_sync_module_states` does.
int mlmx_group_broadcast(MlmxGroup* group, at::Tensor* const* tensors, size_t n, int root) {
    return guarded([&] {
        constexpr size_t kBroadcastBucketBytes = 250 * 1024 * 1024;
        c10d::broadcast_coalesced(group->group, tensor_list(tensors, n), kBroadcastBucketBytes, root);
    });
}

// In-place all-reduce of each tensor: op 0 = sum, 1 = max.
int mlmx_group_all_reduce(MlmxGroup* group, at::Tensor* const* tensors, size_t n, int op) {
    return guarded([&] {
        c10d::AllreduceOptions options;
        options.reduceOp = op == 1 ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
        options.timeout = group->timeout;
        auto list = tensor_list(tensors, n);
        wait_for(group->group->allreduce(list, options), group->timeout);
    });
}

int mlmx_group_barrier(MlmxGroup* group) {
    return guarded([&] {
        c10d::BarrierOptions options;
        options.timeout = group->timeout;
        wait_for(group->group->barrier(options), group->timeout);
    });
}

// The Reducer over `params` (leaf tensors that require grad, in definition order), with
// names for its error messages. Fails, naming the difference, when ranks' parameters differ
// in number, shape or dtype (DDP's `_verify_param_shape_across_processes`).
int mlmx_reducer_new(MlmxGroup* group, at::Tensor* const* params, const char* const* names, size_t n,
                     int64_t bucket_bytes_cap, int64_t first_bucket_bytes_cap, bool gradient_as_bucket_view,
                     MlmxReducer** out) {
    return guarded([&] {
        auto list = tensor_list(params, n);
        c10d::verify_params_across_processes(group->group, list, std::nullopt);
        std::vector<bool> sparse(n, false);
        auto [indices, limits] = c10d::compute_bucket_assignment_by_size(
            list, {std::numeric_limits<size_t>::max()}, sparse);
        std::reverse(indices.begin(), indices.end());
        std::unordered_map<size_t, std::string> param_names;
        for (size_t i = 0; i < n; ++i) param_names.emplace(i, names[i]);
        auto reducer = std::make_shared<c10d::Reducer>(
            list, indices, group->group, sparse, bucket_bytes_cap, /*find_unused_parameters=*/false,
            gradient_as_bucket_view, param_names, first_bucket_bytes_cap,
            /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
            /*bucket_bytes_cap_list=*/std::vector<int64_t>{});
        *out = new MlmxReducer{reducer};
    });
}

void mlmx_reducer_free(MlmxReducer* reducer) { delete reducer; }

// Before the forward pass of a micro-batch whose backward synchronises gradients (DDP's
// `_pre_forward` with `require_backward_grad_sync`): after the first such iteration the
// buckets are rebuilt in the order gradients arrived.
int mlmx_reducer_prepare_for_forward(MlmxReducer* reducer) {
    return guarded([&] {
        reducer->reducer->prepare_for_forward();
        reducer->reducer->rebuild_buckets();
    });
}

// After that forward pass, before backward: arms the autograd hooks, so that this backward
// all-reduces the buckets (all gradients are expected; no unused parameters).
int mlmx_reducer_prepare_for_backward(MlmxReducer* reducer) {
    return guarded([&] { reducer->reducer->prepare_for_backward({}); });
}

}  // extern "C"
