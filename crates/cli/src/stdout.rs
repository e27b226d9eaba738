//! Printing a command's result to stdout without panicking when the reader goes away
//! (`mlm-train config --reference | head`): a closed pipe ends the output quietly.

use std::io::{ErrorKind, Write};

use anyhow::{Context, Result};

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// `println!` for a command's result: a reader that goes away (`mlm-train doctor | head -1`)
/// ends the output quietly instead of panicking as `println!` does; any other write error is
/// returned (`?`), so the enclosing function returns `anyhow::Result`.
macro_rules! outln {
    () => {
        $crate::stdout::print("\n")?
    };
    ($($arg:tt)*) => {
        $crate::stdout::print(&format!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use outln;
