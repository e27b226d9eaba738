//! Attention kernels of libtorch that tch does not expose.

use std::ffi::{c_int, c_void};

use tch::Tensor;

use crate::{Result, check};

mod ffi {
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        pub fn mlmx_flash_attention_varlen(
            query: *const c_void,
            key: *const c_void,
            value: *const c_void,
            cu_seqlens: *const c_void,
            max_len: i64,
            dropout: f64,
            scale: f64,
            window: i64,
            out: *mut *mut c_void,
        ) -> c_int;
    }
}

/// How [`flash_varlen`] attends: where the sequences are, dropout, scale and window.
#[derive(Debug, Clone, Copy)]
pub struct Varlen<'a> {
    /// Int32 `[B + 1]` on the tensors' device: sequence b is rows
    /// `cu_seqlens[b]..cu_seqlens[b + 1]`.
    pub cu_seqlens: &'a Tensor,
    /// The longest sequence.
    pub max_len: i64,
    /// Attention-probability dropout (0 when not training).
    pub dropout: f64,
    /// The scores' scale (`head_dim ** -0.5`).
    pub scale: f64,
    /// `Some(w)`: keys at most `w` positions either side of the query only.
    pub window: Option<i64>,
}

/// Bidirectional self-attention over sequences packed back to back without padding
/// (`flash_attn_varlen_func`; libtorch's `_flash_attention_forward` with cumulative lengths):
/// `query`, `key`, `value` are `[tokens, heads, head_dim]` in bf16 or fp16 on a CUDA device of
/// compute capability 8.0 or newer, sequence b is rows `cu_seqlens[b]..cu_seqlens[b + 1]`
/// (int32, `[B + 1]`, same device), the longest `max_len` tokens. Returns `[tokens, heads,
/// head_dim]`, differentiable. `window`: `Some(w)` lets each query attend only the keys at
/// most `w` positions before or after it in its sequence (`window_size_left = right = w`,
/// inclusive: ModernBERT's local layers, `w = local_attention / 2`); `None` every key of its
/// sequence. Elsewhere libtorch's error comes back.
pub fn flash_varlen(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    varlen: &Varlen<'_>,
) -> Result<Tensor> {
    let Varlen {
        cu_seqlens,
        max_len,
        dropout,
        scale,
        window,
    } = *varlen;
    let mut out: *mut c_void = std::ptr::null_mut();
    let pointer = |t: &Tensor| t.as_ptr().cast::<c_void>();
    // SAFETY: the four tensors are live `at::Tensor*` borrowed for the call; on success the
    // shim writes a fresh heap-allocated `at::Tensor*` to `out`; it catches C++ exceptions.
    let status: c_int = unsafe {
        ffi::mlmx_flash_attention_varlen(
            pointer(query),
            pointer(key),
            pointer(value),
            pointer(cu_seqlens),
            max_len,
            dropout,
            scale,
            window.unwrap_or(-1),
            &raw mut out,
        )
    };
    check(status, "varlen flash attention")?;
    // SAFETY: on success `out` is a fresh `at::Tensor*` nothing else owns; tch takes it over.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// On the CPU (these tests' machines) the kernel does not exist: an error, not a crash.
    #[test]
    fn off_cuda_the_kernel_reports_an_error() {
        let q = Tensor::zeros([5, 2, 8], (Kind::BFloat16, Device::Cpu));
        let cu = Tensor::from_slice(&[0i32, 3, 5]);
        let varlen = Varlen {
            cu_seqlens: &cu,
            max_len: 3,
            dropout: 0.0,
            scale: 0.35,
            window: None,
        };
        let error = flash_varlen(&q, &q, &q, &varlen).unwrap_err();
        assert!(
            error.to_string().contains("varlen flash attention"),
            "{error}"
        );
    }
}
