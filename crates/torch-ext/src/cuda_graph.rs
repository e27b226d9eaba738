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

/// Why [`CudaGraph::capture`] failed.
#[derive(Debug)]
pub enum CaptureFailure<E> {
    /// The captured body failed: its own error.
    Body(E),
    /// Beginning or ending the capture failed (the body succeeded or never ran).
    Capture(TorchExtError),
}

/// `begin`, then `body` with autocast's weight cache off, then `end`, which runs whenever
/// `begin` succeeded (ending is needed even after a failed body, or the stream stays in
/// capture mode). The body's error wins over the end's.
fn bracketed<T, E>(
    begin: impl FnOnce() -> Result<()>,
    body: impl FnOnce() -> std::result::Result<T, E>,
    end: impl FnOnce() -> Result<()>,
) -> std::result::Result<T, CaptureFailure<E>> {
    begin().map_err(CaptureFailure::Capture)?;
    let outcome = {
        let _cache_off = AutocastCacheOff::new();
        body()
    };
    let ended = end();
    let value = outcome.map_err(CaptureFailure::Body)?;
    ended.map_err(CaptureFailure::Capture)?;
    Ok(value)
}

/// Autocast's weight cache off until dropped, then as it was (also when the body panics).
struct AutocastCacheOff {
    was: bool,
}

impl AutocastCacheOff {
    fn new() -> Self {
        // SAFETY: a plain flag of libtorch's thread-local autocast state.
        let was = unsafe { ffi::mlmx_is_autocast_cache_enabled() };
        // SAFETY: as above; the call cannot fail.
        let _ = unsafe { ffi::mlmx_set_autocast_cache_enabled(false) };
        Self { was }
    }
}

impl Drop for AutocastCacheOff {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        let _ = unsafe { ffi::mlmx_set_autocast_cache_enabled(self.was) };
    }
}

/// A captured CUDA graph.
pub struct CudaGraph(*mut c_void);

impl CudaGraph {
    /// Captures what `body` queues on the current stream, which must be a [`SideStream`]'s
    /// (capture on the default stream is illegal). The device is synchronised first. Autocast's
    /// weight cache is off during capture (torch.cuda.graphs' advice: a cast cached inside
    /// the graph's memory pool would be freed into it) and restored after, whatever happens.
    /// With `share_pool_with`, the graph allocates from that graph's pool; replay them in
    /// capture order.
    ///
    /// `body` must not wait for the device (no reading values back) and must leave the tensors
    /// it writes alive, since replays write the same memory. A failed `body` is
    /// [`CaptureFailure::Body`] with its own error, even when ending the (then broken)
    /// capture fails too: the body's error is the cause a user needs.
    pub fn capture<T, E>(
        share_pool_with: Option<&CudaGraph>,
        body: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<(Self, T), CaptureFailure<E>> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: the shim writes a heap-allocated graph handle on success, owned by us.
        let status = unsafe { ffi::mlmx_cuda_graph_new(&raw mut handle) };
        check(status, "new CUDA graph").map_err(CaptureFailure::Capture)?;
        let graph = Self(handle);
        let share = share_pool_with.map_or(std::ptr::null(), |g| g.0.cast_const());
        let begin = || {
            // SAFETY: both handles are live graphs (`share` may be null).
            let status = unsafe { ffi::mlmx_cuda_graph_capture_begin(graph.0, share) };
            check(status, "begin CUDA graph capture")
        };
        let end = || {
            // SAFETY: the graph is capturing (begun above).
            let status = unsafe { ffi::mlmx_cuda_graph_capture_end(graph.0) };
            check(status, "end CUDA graph capture")
        };
        let value = bracketed(begin, body, end)?;
        Ok((graph, value))
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
        let Err(CaptureFailure::Capture(error)) = CudaGraph::capture(None, || Ok::<_, ()>(()))
        else {
            panic!("no CUDA device: the capture itself fails");
        };
        assert!(error.to_string().contains("CUDA graph"), "{error}");
    }

    fn cache_enabled() -> bool {
        // SAFETY: reads a thread-local flag.
        unsafe { ffi::mlmx_is_autocast_cache_enabled() }
    }

    fn torch_error(message: &str) -> TorchExtError {
        TorchExtError::Torch {
            operation: "end CUDA graph capture",
            message: message.to_owned(),
        }
    }

    /// A body that fails inside a capture whose end then fails too (as a broken capture
    /// does): the body's error comes back, and autocast's cache is as it was before.
    #[test]
    fn a_failed_body_keeps_its_error_and_the_cache_setting_is_restored() {
        assert!(cache_enabled(), "libtorch's default");
        let mut cache_during = None;
        let outcome = bracketed(
            || Ok(()),
            || {
                cache_during = Some(cache_enabled());
                Err::<(), _>("the body's error")
            },
            || {
                Err(torch_error(
                    "operation not permitted when stream is capturing",
                ))
            },
        );
        assert!(matches!(
            outcome,
            Err(CaptureFailure::Body("the body's error"))
        ));
        assert_eq!(cache_during, Some(false), "off while capturing");
        assert!(cache_enabled(), "restored");

        let outcome = bracketed(|| Ok(()), || Ok::<_, ()>(7), || Err(torch_error("end")));
        assert!(matches!(outcome, Err(CaptureFailure::Capture(_))));
        let outcome = bracketed(|| Ok(()), || Ok::<_, ()>(7), || Ok(()));
        assert!(matches!(outcome, Ok(7)));
        let mut ran = false;
        let outcome = bracketed(
            || Err(torch_error("begin")),
            || {
                ran = true;
                Ok::<_, ()>(())
            },
            || Ok(()),
        );
        assert!(matches!(outcome, Err(CaptureFailure::Capture(_))) && !ran);

        // A panicking body restores it too.
        let caught = std::panic::catch_unwind(|| {
            let body = || -> std::result::Result<(), ()> { panic!("a bug in the body") };
            let _ = bracketed(|| Ok(()), body, || Ok(()));
        });
        assert!(caught.is_err());
        assert!(cache_enabled());
    }
}
