//! CUDA graphs (`torch.cuda.CUDAGraph` and `torch.cuda.graph`'s recipe, torch/cuda/graphs.py):
//! a [`SideStream`] to warm up and capture on, and [`CudaGraph`]s captured there and replayed
//! later. A replay relaunches the captured kernels on the same memory with no host work per
//! kernel, so the inputs a graph reads must be copied into the tensors it was captured with.
//!
//! Built only against a CUDA torch with the CUDA runtime headers (the nvidia-* wheels beside
//! it); elsewhere every call returns an error that says so.

use std::ffi::{c_int, c_void};

use crate::{Result, TorchExtError, check};

mod ffi {
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        pub fn mlmx_cuda_side_stream_new(device: c_int, out: *mut *mut c_void) -> c_int;
        pub fn mlmx_cuda_side_stream_enter(stream: *mut c_void) -> c_int;
        pub fn mlmx_cuda_side_stream_exit(stream: *mut c_void) -> c_int;
        pub fn mlmx_cuda_side_stream_free(stream: *mut c_void);
        pub fn mlmx_cuda_graph_new(out: *mut *mut c_void) -> c_int;
        pub fn mlmx_cuda_graph_capture_begin(graph: *mut c_void, share: *const c_void) -> c_int;
        pub fn mlmx_cuda_graph_capture_end(graph: *mut c_void) -> c_int;
        pub fn mlmx_cuda_graph_replay(graph: *mut c_void) -> c_int;
        pub fn mlmx_cuda_graph_free(graph: *mut c_void);
        pub fn mlmx_set_autocast_cache_enabled(enabled: bool) -> c_int;
        pub fn mlmx_is_autocast_cache_enabled() -> bool;
        pub fn mlmx_built_with_cuda_graphs() -> bool;
        pub fn mlmx_built_with_nccl() -> bool;
    }
}

/// Whether this build can capture CUDA graphs (compiled against the CUDA runtime headers).
pub fn built_with_cuda_graphs() -> bool {
    // SAFETY: a constant of the shim.
    unsafe { ffi::mlmx_built_with_cuda_graphs() }
}

/// Whether this build has the NCCL process group (`distributed.backend = "nccl"`).
pub fn built_with_nccl() -> bool {
    // SAFETY: a constant of the shim.
    unsafe { ffi::mlmx_built_with_nccl() }
}

/// A CUDA stream from libtorch's pool. Capture needs a stream other than the default one,
/// and the warm-up before it runs on the same stream, so lazily created per-stream state
/// (cuBLAS workspaces) exists before capture starts.
pub struct SideStream(*mut c_void);

impl SideStream {
    pub fn new(device: usize) -> Result<Self> {
        let device = c_int::try_from(device).map_err(|_| TorchExtError::Torch {
            operation: "side stream",
            message: format!("device index {device}"),
        })?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: the shim writes a heap-allocated stream handle on success, owned by us.
        let status = unsafe { ffi::mlmx_cuda_side_stream_new(device, &raw mut handle) };
        check(status, "side stream")?;
        Ok(Self(handle))
    }

    /// Makes this stream current on the calling thread (after the work queued on the current
    /// stream) until the guard drops, which makes the previous stream current again, after
    /// this stream's work.
    pub fn enter(&self) -> Result<SideStreamGuard<'_>> {
        // SAFETY: `self.0` is a live handle from `mlmx_cuda_side_stream_new`.
        let status = unsafe { ffi::mlmx_cuda_side_stream_enter(self.0) };
        check(status, "enter side stream")?;
        Ok(SideStreamGuard(self))
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and no guard borrows it any more.
        unsafe { ffi::mlmx_cuda_side_stream_free(self.0) }
    }
}

/// While alive, the side stream is the current stream.
pub struct SideStreamGuard<'a>(&'a SideStream);

impl Drop for SideStreamGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the stream was entered by `enter`. A failure here (a CUDA error) leaves the
        // side stream current; the next CUDA call reports the error.
        let _ = unsafe { ffi::mlmx_cuda_side_stream_exit((self.0).0) };
    }
}

/// A captured CUDA graph.
pub struct CudaGraph(*mut c_void);

impl CudaGraph {
    /// Captures what `body` queues on the current stream, which must be a [`SideStream`]'s
    /// (capture on the default stream is illegal). The device is synchronised first. Autocast's
    /// weight cache is off during capture (torch.cuda.graphs' advice: a cast cached inside
    /// the graph's memory pool would be freed into it). With `share_pool_with`, the graph
    /// allocates from that graph's pool; replay them in capture order.
    ///
    /// `body` must not wait for the device (no reading values back) and must leave the tensors
    /// it writes alive, since replays write the same memory. Returns the graph with what
    /// `body` returned; the graph is unusable if `body` failed.
    pub fn capture<R>(
        share_pool_with: Option<&CudaGraph>,
        body: impl FnOnce() -> R,
    ) -> Result<(Self, R)> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: the shim writes a heap-allocated graph handle on success, owned by us.
        let status = unsafe { ffi::mlmx_cuda_graph_new(&raw mut handle) };
        check(status, "new CUDA graph")?;
        let graph = Self(handle);
        let share = share_pool_with.map_or(std::ptr::null(), |g| g.0.cast_const());
        // SAFETY: both handles are live graphs (`share` may be null).
        let status = unsafe { ffi::mlmx_cuda_graph_capture_begin(graph.0, share) };
        check(status, "begin CUDA graph capture")?;
        // SAFETY: a plain flag of libtorch's thread-local autocast state.
        let cache = unsafe { ffi::mlmx_is_autocast_cache_enabled() };
        // SAFETY: as above; the call cannot fail.
        let _ = unsafe { ffi::mlmx_set_autocast_cache_enabled(false) };
        let result = body();
        // SAFETY: as above.
        let _ = unsafe { ffi::mlmx_set_autocast_cache_enabled(cache) };
        // SAFETY: the graph is capturing (begun above); ending is needed even after a failed
        // body, or the stream stays in capture mode.
        let status = unsafe { ffi::mlmx_cuda_graph_capture_end(graph.0) };
        check(status, "end CUDA graph capture")?;
        Ok((graph, result))
    }

    /// Launches the captured work on the current stream. The CUDA generator's seed and offset
    /// are read now: `manual_seed` before a replay reseeds its dropout as it would an eager
    /// forward's.
    pub fn replay(&self) -> Result<()> {
        // SAFETY: `self.0` is a live, captured graph.
        let status = unsafe { ffi::mlmx_cuda_graph_replay(self.0) };
        check(status, "replay CUDA graph")
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: the handle is ours.
        unsafe { ffi::mlmx_cuda_graph_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU (this test's machines), the calls fail with libtorch's or the stub's
    /// message instead of crashing; a capture never starts.
    #[test]
    fn without_a_gpu_every_call_is_an_error_not_a_crash() {
        if tch::Cuda::is_available() {
            return;
        }
        let error = SideStream::new(0)
            .err()
            .expect("no CUDA device")
            .to_string();
        assert!(error.contains("side stream"), "{error}");
        let error = CudaGraph::capture(None, || ())
            .err()
            .expect("no CUDA device")
            .to_string();
        assert!(error.contains("CUDA graph"), "{error}");
    }
}
