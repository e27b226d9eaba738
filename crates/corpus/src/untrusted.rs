//! Calls into the parquet crate on bytes nobody checked. parquet 60 still panics on some
//! corrupt pages instead of returning an error (an `expect` in its dictionary decoder, found
//! by fuzzing: `fuzz/regressions/parquet/`), and a corpus file or shard must never take the
//! process down. Those calls run through [`guarded`], under `catch_unwind`, with a
//! thread-local flag set, so that a panic hook can tell a contained decoder panic (reported
//! as an error naming the file) from a bug: [`quiet_contained_panics`] keeps the CLI from
//! printing a panic location for the former, and the fuzz targets count only the latter.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside [`guarded`].
pub fn in_guarded_decoder() -> bool {
    GUARDED.with(Cell::get)
}

/// Runs `decode`; a panic in it becomes `Err` with the panic's message.
pub fn guarded<T>(decode: impl FnOnce() -> T) -> Result<T, String> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GUARDED.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(GUARDED.with(|flag| flag.replace(true)));
    catch_unwind(AssertUnwindSafe(decode)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// Wraps the process's panic hook: panics that [`guarded`] contains print nothing (their
/// message reaches the user in the error naming the file); every other panic goes to the
/// hook that was installed before.
pub fn quiet_contained_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !in_guarded_decoder() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_an_error_and_the_flag_is_restored() {
        assert!(!in_guarded_decoder());
        assert_eq!(guarded(in_guarded_decoder), Ok(true));
        let failed: Result<(), String> = guarded(|| panic!("bad page {}", 3));
        assert_eq!(failed, Err("bad page 3".to_owned()));
        assert!(!in_guarded_decoder(), "restored after an unwind");
        let nested = guarded(|| guarded(|| ()).map(|()| in_guarded_decoder()));
        assert_eq!(nested, Ok(Ok(true)), "an inner call keeps the outer flag");
    }
}
