//! Data parallelism on c10d, PyTorch's own distributed engine, through the shim
//! (`csrc/dist.cpp`): a [`Store`] (TCPStore, as torchrun's agent or rank 0 hosts it), a
//! [`ProcessGroup`] (Gloo on CPU, NCCL on CUDA), the collectives the trainer calls itself,
//! and the [`Reducer`] behind `DistributedDataParallel` (gradient buckets all-reduced while
//! backward runs). Every call returns a `Result`; a failed collective (a peer died, a timeout)
//! is a [`TorchExtError::Torch`] with c10d's message.

use std::ffi::{CString, c_char, c_int};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

use crate::{Result, TorchExtError, check};

#[repr(C)]
struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct RawReducer {
    _private: [u8; 0],
}

type TensorPtr = *mut std::ffi::c_void;

unsafe extern "C" {
    fn mlmx_store_open(
        host: *const c_char,
        port: u16,
        is_server: bool,
        prefix: *const c_char,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> c_int;
    fn mlmx_store_free(store: *mut RawStore);
    fn mlmx_quiet_c10_warnings();
    fn mlmx_store_set(
        store: *mut RawStore,
        key: *const c_char,
        value: *const u8,
        len: usize,
    ) -> c_int;
    fn mlmx_store_get(
        store: *mut RawStore,
        key: *const c_char,
        buffer: *mut u8,
        capacity: usize,
        len: *mut usize,
    ) -> c_int;
    fn mlmx_store_check(
        store: *mut RawStore,
        keys: *const *const c_char,
        n: usize,
        all_set: *mut bool,
    ) -> c_int;
    fn mlmx_store_wait(
        store: *mut RawStore,
        keys: *const *const c_char,
        n: usize,
        timeout_ms: i64,
    ) -> c_int;
    fn mlmx_group_new(
        store: *mut RawStore,
        rank: c_int,
        size: c_int,
        backend: c_int,
        timeout_ms: i64,
        gloo_interfaces: *const c_char,
        out: *mut *mut RawGroup,
    ) -> c_int;
    fn mlmx_group_free(group: *mut RawGroup);
    fn mlmx_group_broadcast(
        group: *mut RawGroup,
        tensors: *const TensorPtr,
        n: usize,
        root: c_int,
    ) -> c_int;
    fn mlmx_group_all_reduce(
        group: *mut RawGroup,
        tensors: *const TensorPtr,
        n: usize,
        op: c_int,
    ) -> c_int;
    fn mlmx_group_barrier(group: *mut RawGroup) -> c_int;
    fn mlmx_reducer_new(
        group: *mut RawGroup,
        params: *const TensorPtr,
        names: *const *const c_char,
        n: usize,
        bucket_bytes_cap: i64,
        first_bucket_bytes_cap: i64,
        gradient_as_bucket_view: bool,
        out: *mut *mut RawReducer,
    ) -> c_int;
    fn mlmx_reducer_free(reducer: *mut RawReducer);
    fn mlmx_reducer_prepare_for_forward(reducer: *mut RawReducer) -> c_int;
    fn mlmx_reducer_prepare_for_backward(reducer: *mut RawReducer) -> c_int;
}

fn c_string(text: &str, what: &'static str) -> Result<CString> {
    CString::new(text).map_err(|_| TorchExtError::Torch {
        operation: what,
        message: format!("{text:?} contains a NUL byte"),
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn tensor_ptrs(tensors: &[&Tensor]) -> Vec<TensorPtr> {
    tensors
        .iter()
        .map(|t| t.as_ptr().cast_mut().cast())
        .collect()
}

/// Hides c10's warnings from here on (errors still print): for a job that has failed, whose
/// error message already says what c10d's closed-socket warnings (with C++ backtraces) would.
pub fn quiet_c10_warnings() {
    // SAFETY: sets one global int in libc10.
    unsafe { mlmx_quiet_c10_warnings() }
}

/// A c10d key-value store: a TCPStore client (or, for the rank that hosts it, the server).
pub struct Store {
    raw: NonNull<RawStore>,
}

// SAFETY: c10d's TCPStore client serialises its requests internally; the handle is only
// freed once, on drop.
unsafe impl Send for Store {}
// SAFETY: as for Send: concurrent calls are serialised by the TCPStore client.
unsafe impl Sync for Store {}

impl Store {
    /// Connects to (or, with `is_server`, hosts) the store at `host:port`, retrying until
    /// `timeout`; keys are kept under `prefix` when it is not empty.
    pub fn open(
        host: &str,
        port: u16,
        is_server: bool,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let host = c_string(host, "TCPStore host")?;
        let prefix = c_string(prefix, "store prefix")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C strings; `raw` receives an owned handle on success.
        let status = unsafe {
            mlmx_store_open(
                host.as_ptr(),
                port,
                is_server,
                prefix.as_ptr(),
                millis(timeout),
                &mut raw,
            )
        };
        check(status, "TCPStore")?;
        Ok(Self {
            raw: NonNull::new(raw).expect("the shim returns a store on success"),
        })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c_string(key, "store key")?;
        // SAFETY: the handle is live; key and value outlive the call.
        let status =
            unsafe { mlmx_store_set(self.raw.as_ptr(), key.as_ptr(), value.as_ptr(), value.len()) };
        check(status, "store set")
    }

    /// The first 8 bytes of `key`'s value as a little-endian u64 (a counter); waits for the
    /// key up to the store's timeout.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let key = c_string(key, "store key")?;
        let mut buffer = [0u8; 8];
        let mut len = 0usize;
        // SAFETY: the handle is live; `buffer` holds 8 bytes, the shim copies at most that.
        let status = unsafe {
            mlmx_store_get(
                self.raw.as_ptr(),
                key.as_ptr(),
                buffer.as_mut_ptr(),
                8,
                &mut len,
            )
        };
        check(status, "store get")?;
        Ok(u64::from_le_bytes(buffer))
    }

    /// Whether every key is set now (no waiting).
    pub fn check(&self, keys: &[String]) -> Result<bool> {
        let (_owned, pointers) = c_strings(keys)?;
        let mut all_set = false;
        // SAFETY: `pointers` points into `_owned`, alive for the call.
        let status = unsafe {
            mlmx_store_check(
                self.raw.as_ptr(),
                pointers.as_ptr(),
                pointers.len(),
                &mut all_set,
            )
        };
        check(status, "store check")?;
        Ok(all_set)
    }

    /// Waits until every key is set; an error after `timeout`.
    pub fn wait(&self, keys: &[String], timeout: Duration) -> Result<()> {
        let (_owned, pointers) = c_strings(keys)?;
        // SAFETY: as in `check`.
        let status = unsafe {
            mlmx_store_wait(
                self.raw.as_ptr(),
                pointers.as_ptr(),
                pointers.len(),
                millis(timeout),
            )
        };
        check(status, "store wait")
    }
}

fn c_strings(texts: &[String]) -> Result<(Vec<CString>, Vec<*const c_char>)> {
    let owned = texts
        .iter()
        .map(|t| c_string(t, "store key"))
        .collect::<Result<Vec<_>>>()?;
    let pointers = owned.iter().map(|c| c.as_ptr()).collect();
    Ok((owned, pointers))
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and freed once.
        unsafe { mlmx_store_free(self.raw.as_ptr()) }
    }
}

/// Which c10d backend carries the gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors (CUDA ones through host copies).
    Gloo,
    /// NCCL: CUDA tensors (Gloo stays available for CPU tensors).
    Nccl,
}

/// What a reduction combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// A c10d `ProcessGroup` of `size` ranks.
pub struct ProcessGroup {
    raw: NonNull<RawGroup>,
    rank: u32,
    size: u32,
}

// SAFETY: the handle is freed once, on drop; c10d process groups accept collectives from
// any thread (each call enqueues work on the backend's own threads).
unsafe impl Send for ProcessGroup {}
// SAFETY: as for Send; the training loop issues its collectives from one thread in order.
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group through `store` (every rank must call this; it returns once all have
    /// connected, or fails after `timeout`). `gloo_interfaces`: GLOO_SOCKET_IFNAME's value.
    pub fn new(
        store: &Store,
        rank: u32,
        size: u32,
        backend: Backend,
        timeout: Duration,
        gloo_interfaces: &str,
    ) -> Result<Self> {
        let interfaces = c_string(gloo_interfaces, "GLOO_SOCKET_IFNAME")?;
        let backend_code = match backend {
            Backend::Gloo => 0,
            Backend::Nccl => 1,
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: the store handle is live; `raw` receives an owned handle on success.
        let status = unsafe {
            mlmx_group_new(
                store.raw.as_ptr(),
                rank as c_int,
                size as c_int,
                backend_code,
                millis(timeout),
                interfaces.as_ptr(),
                &mut raw,
            )
        };
        check(status, "process group")?;
        Ok(Self {
            raw: NonNull::new(raw).expect("the shim returns a group on success"),
            rank,
            size,
        })
    }

    pub fn rank(&self) -> u32 {
        self.rank
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Copies `root`'s tensors into every rank's (in place).
    pub fn broadcast(&self, tensors: &[&Tensor], root: u32) -> Result<()> {
        let pointers = tensor_ptrs(tensors);
        // SAFETY: the pointers are live tensors for the duration of the call.
        let status = unsafe {
            mlmx_group_broadcast(
                self.raw.as_ptr(),
                pointers.as_ptr(),
                pointers.len(),
                root as c_int,
            )
        };
        check(status, "broadcast")
    }

    /// Reduces each tensor over all ranks, in place, and waits for the result.
    pub fn all_reduce(&self, tensors: &[&Tensor], op: ReduceOp) -> Result<()> {
        let pointers = tensor_ptrs(tensors);
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
        };
        // SAFETY: as in `broadcast`.
        let status = unsafe {
            mlmx_group_all_reduce(self.raw.as_ptr(), pointers.as_ptr(), pointers.len(), op)
        };
        check(status, "all-reduce")
    }

    /// Returns once every rank has reached the barrier.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the handle is live.
        check(unsafe { mlmx_group_barrier(self.raw.as_ptr()) }, "barrier")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and freed once.
        unsafe { mlmx_group_free(self.raw.as_ptr()) }
    }
}

/// DDP's bucket sizes: `bucket_cap_mb = 25` and `_DEFAULT_FIRST_BUCKET_BYTES` (1 MiB).
#[derive(Debug, Clone, Copy)]
pub struct BucketCaps {
    pub bucket_bytes: i64,
    pub first_bucket_bytes: i64,
}

impl Default for BucketCaps {
    fn default() -> Self {
        Self {
            bucket_bytes: 25 * 1024 * 1024,
            first_bucket_bytes: 1024 * 1024,
        }
    }
}

/// c10d's `Reducer`: hooks on every parameter's gradient accumulator that copy gradients
/// into buckets and all-reduce each bucket (averaging over ranks) as soon as it is full,
/// overlapping communication with the rest of backward.
pub struct Reducer {
    raw: NonNull<RawReducer>,
}

// SAFETY: used from the training thread only; freed once, on drop.
unsafe impl Send for Reducer {}

impl Reducer {
    /// A reducer over `params` (named, in definition order) on `group`. With
    /// `gradient_as_bucket_view`, each `.grad` becomes a view into its bucket (no copy, as
    /// DDP's `gradient_as_bucket_view=True`). Fails when ranks' parameters differ.
    pub fn new(
        group: &ProcessGroup,
        params: &[(String, Tensor)],
        caps: BucketCaps,
        gradient_as_bucket_view: bool,
    ) -> Result<Self> {
        let names: Vec<String> = params.iter().map(|(name, _)| name.clone()).collect();
        let (_owned, name_pointers) = c_strings(&names)?;
        let tensors: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        let pointers = tensor_ptrs(&tensors);
        let mut raw = std::ptr::null_mut();
        // SAFETY: tensors and names live through the call; the reducer keeps its own
        // references to the tensors.
        let status = unsafe {
            mlmx_reducer_new(
                group.raw.as_ptr(),
                pointers.as_ptr(),
                name_pointers.as_ptr(),
                pointers.len(),
                caps.bucket_bytes,
                caps.first_bucket_bytes,
                gradient_as_bucket_view,
                &mut raw,
            )
        };
        check(status, "DDP reducer")?;
        Ok(Self {
            raw: NonNull::new(raw).expect("the shim returns a reducer on success"),
        })
    }

    /// Before the forward pass of a micro-batch whose backward synchronises gradients.
    pub fn prepare_for_forward(&self) -> Result<()> {
        // SAFETY: the handle is live.
        let status = unsafe { mlmx_reducer_prepare_for_forward(self.raw.as_ptr()) };
        check(status, "DDP prepare_for_forward")
    }

    /// After that forward pass, before its backward: the backward that follows all-reduces.
    /// Backward passes not preceded by this accumulate locally (DDP's `no_sync`).
    pub fn prepare_for_backward(&self) -> Result<()> {
        // SAFETY: the handle is live.
        let status = unsafe { mlmx_reducer_prepare_for_backward(self.raw.as_ptr()) };
        check(status, "DDP prepare_for_backward")
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and freed once.
        unsafe { mlmx_reducer_free(self.raw.as_ptr()) }
    }
}
