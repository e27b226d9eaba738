//! How a failed command tells the user why: the error and its causes, one per line, without
//! the C++ backtrace libtorch appends to its exceptions.

/// Prints `error: ...` and a `caused by: ...` line per cause to stderr.
pub fn print_error(error: &anyhow::Error) {
    eprintln!("error: {}", without_cpp_backtrace(&error.to_string()));
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {}", without_cpp_backtrace(&cause.to_string()));
    }
}

/// The message of a libtorch exception without its backtrace. `c10::Error::what()` (the text
/// tch's `TchError::Torch` carries) is the message, then `Exception raised from <function> at
/// <file>:<line> (most recent call first):` and a `frame #N: ...` line per stack frame; Python
/// shows only the message (`what_without_backtrace`, torch/csrc/Exceptions.h), so do we.
/// Other text is returned unchanged.
pub fn without_cpp_backtrace(text: &str) -> &str {
    let cut = ["Exception raised from ", "frame #0: "]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min();
    match cut {
        Some(at) => text[..at].trim_end(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_backtraces_are_cut_and_other_messages_kept() {
        let torch = "Internal torch error: shape '[24, 32]' is invalid for input of size 10\n\
                     Exception raised from computeStride at aten/src/ATen/TensorUtils.cpp:90 \
                     (most recent call first):\nframe #0: c10::Error::Error(...) + 0x9e \
                     (0x7f in libc10.so)\nframe #1: ...";
        assert_eq!(
            without_cpp_backtrace(torch),
            "Internal torch error: shape '[24, 32]' is invalid for input of size 10"
        );
        let frames_only = "copy failed\nframe #0: at::native::copy_ + 0x1";
        assert_eq!(without_cpp_backtrace(frames_only), "copy failed");
        let plain = "invalid config run.toml: unknown field `max_step`";
        assert_eq!(without_cpp_backtrace(plain), plain);
    }
}
