// CUDA graphs for the training step (`training.cuda_graphs`): a side stream to warm up and
// capture on, and at::cuda::CUDAGraph's capture and replay, in the order torch.cuda.graph
// uses them (torch/cuda/graphs.py): synchronize, capture on a non-default stream (legal
// capture needs one), replay on any stream.
//
// Compiled with the CUDA runtime headers when build.rs finds them beside a CUDA torch (the
// nvidia-* wheels); otherwise every call reports how the shim was built.

#include "guard.hpp"

#include <stdexcept>

#ifdef MLMX_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

namespace {

// A stream from libtorch's pool and the stream that was current before it was entered.
struct SideStream {
    c10::cuda::CUDAStream side;
    std::optional<c10::cuda::CUDAStream> outer;
};

// `waiter` runs nothing queued after this call before what `done` has queued so far
// (torch.cuda.Stream.wait_stream): an event, no host wait. c10's device-generic event goes
// through the CUDA guard libtorch registers, so this file calls no CUDA runtime function.
void wait_for(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& done) {
    c10::Event event(c10::DeviceType::CUDA);
    event.record(done.unwrap());
    event.block(waiter.unwrap());
}

}  // namespace

extern "C" {

int mlmx_cuda_side_stream_new(int device, void** out) {
    return mlmx::guarded([&] {
        auto stream = c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device));
        *out = new SideStream{stream, std::nullopt};
    });
}

// Makes the side stream current on this thread, after what the current stream has queued.
int mlmx_cuda_side_stream_enter(void* handle) {
    return mlmx::guarded([&] {
        auto* stream = static_cast<SideStream*>(handle);
        if (stream->outer) throw std::logic_error("the side stream is already entered");
        auto outer = c10::cuda::getCurrentCUDAStream(stream->side.device_index());
        wait_for(stream->side, outer);
        c10::cuda::setCurrentCUDAStream(stream->side);
        stream->outer = outer;
    });
}

// Makes the previous stream current again, after what the side stream has queued.
int mlmx_cuda_side_stream_exit(void* handle) {
    return mlmx::guarded([&] {
        auto* stream = static_cast<SideStream*>(handle);
        if (!stream->outer) throw std::logic_error("the side stream is not entered");
        wait_for(*stream->outer, stream->side);
        c10::cuda::setCurrentCUDAStream(*stream->outer);
        stream->outer.reset();
    });
}

void mlmx_cuda_side_stream_free(void* handle) { delete static_cast<SideStream*>(handle); }

int mlmx_cuda_graph_new(void** out) {
    return mlmx::guarded([&] { *out = new at::cuda::CUDAGraph(); });
}

// Starts capturing the current stream (which must not be the default stream) into `graph`.
// Work queued before is finished first, as torch.cuda.graph does. With `share_pool_with`,
// the graph allocates from that graph's private memory pool: safe when the graphs are
// replayed in the order they were captured.
int mlmx_cuda_graph_capture_begin(void* graph, const void* share_pool_with) {
    return mlmx::guarded([&] {
        c10::cuda::device_synchronize();
        auto* shared = static_cast<const at::cuda::CUDAGraph*>(share_pool_with);
        at::cuda::MempoolId_t pool = {0, 0};
        if (shared != nullptr) pool = const_cast<at::cuda::CUDAGraph*>(shared)->pool();
        static_cast<at::cuda::CUDAGraph*>(graph)->capture_begin(pool);
    });
}

int mlmx_cuda_graph_capture_end(void* graph) {
    return mlmx::guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->capture_end(); });
}

// Launches the captured work on the current stream; the default CUDA generator's seed and
// offset are read at this call (a manual_seed before it reseeds the graph's dropout).
int mlmx_cuda_graph_replay(void* graph) {
    return mlmx::guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->replay(); });
}

void mlmx_cuda_graph_free(void* graph) { delete static_cast<at::cuda::CUDAGraph*>(graph); }

bool mlmx_built_with_cuda_graphs() { return true; }

}  // extern "C"

#else

namespace {
int unavailable() {
    return mlmx::guarded([] {
        throw std::runtime_error(
            "this mlm-train was built without the CUDA runtime headers (no libtorch_cuda.so or "
            "cuda_runtime_api.h beside the torch it linked), so it cannot capture CUDA graphs; "
            "set training.cuda_graphs = false or rebuild against a CUDA torch");
    });
}
}  // namespace

extern "C" {
int mlmx_cuda_side_stream_new(int, void**) { return unavailable(); }
int mlmx_cuda_side_stream_enter(void*) { return unavailable(); }
int mlmx_cuda_side_stream_exit(void*) { return unavailable(); }
void mlmx_cuda_side_stream_free(void*) {}
int mlmx_cuda_graph_new(void**) { return unavailable(); }
int mlmx_cuda_graph_capture_begin(void*, const void*) { return unavailable(); }
int mlmx_cuda_graph_capture_end(void*) { return unavailable(); }
int mlmx_cuda_graph_replay(void*) { return unavailable(); }
void mlmx_cuda_graph_free(void*) {}
bool mlmx_built_with_cuda_graphs() { return false; }
}  // extern "C"

#endif
