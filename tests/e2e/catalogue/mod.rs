//! The bad-input catalogue (issue 16): table-driven cases of what a user may feed
//! `mlm-train` (configs, corpora, tokenizers, model directories, command lines), one
//! `#[test]` per group. Every case states the command, the exit status, what stderr must
//! name (the file, key or argument), and what must not exist afterwards (output that would
//! look complete); every case also checks that nothing panicked and that no C++ backtrace
//! from libtorch reached the user. docs/reliability.md lists the groups.

mod cli_args;
mod configs;
mod corpora;
mod models;
mod ownership;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::{mlm_train, run};

/// Text in stderr or stdout that means a crash reached the user: a Rust panic, a C++
/// exception's backtrace from libtorch (`frame #3: ...`, `Exception raised from ...`).
const CRASH_MARKS: [&str; 5] = [
    "panicked",
    "frame #",
    "Exception raised from",
    "stack backtrace",
    "RUST_BACKTRACE",
];

/// One bad input: a command and what it must do.
pub struct Case {
    name: &'static str,
    args: Vec<OsString>,
    code: i32,
    names: Vec<String>,
    absent: Vec<PathBuf>,
}

impl Case {
    /// `mlm-train ARGS`, expected to fail with status 1 (a failure while working).
    pub fn new<I, S>(name: &'static str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self {
            name,
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            code: 1,
            names: Vec::new(),
            absent: Vec::new(),
        }
    }

    /// More arguments, after those given to [`Case::new`].
    pub fn more_args<S: AsRef<OsStr>>(mut self, more: &[S]) -> Self {
        self.args.extend(more.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The expected exit status (2: a usage or config error, nothing done; 0: accepted).
    pub fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    /// Text stderr must contain (a file name, a key, an argument, the problem).
    pub fn names(mut self, texts: &[&str]) -> Self {
        self.names.extend(texts.iter().map(|t| (*t).to_owned()));
        self
    }

    /// A path that must not exist after the command (output that would look complete).
    pub fn absent(mut self, path: impl AsRef<Path>) -> Self {
        self.absent.push(path.as_ref().to_owned());
        self
    }

    /// Runs the case; the problems found, each naming the case.
    fn problems(&self) -> Vec<String> {
        let (output, stdout, stderr) = run(mlm_train().args(&self.args));
        let shown = || format!("{}: mlm-train {:?}\n{stderr}", self.name, self.args);
        let mut problems = Vec::new();
        if output.status.code() != Some(self.code) {
            let status = output.status;
            problems.push(format!("exit {status}, not {}; {}", self.code, shown()));
        }
        for name in self
            .names
            .iter()
            .filter(|name| !stderr.contains(name.as_str()))
        {
            problems.push(format!("stderr lacks {name:?}; {}", shown()));
        }
        for mark in CRASH_MARKS {
            if stderr.contains(mark) || stdout.contains(mark) {
                problems.push(format!("output shows {mark:?}; {}", shown()));
            }
        }
        for path in self.absent.iter().filter(|path| path.exists()) {
            problems.push(format!("{} was left behind; {}", path.display(), shown()));
        }
        problems
    }
}

/// The broken model directories and Parquet files of `tests/python/bad_inputs.py`, written
/// once per test binary (the script imports torch and transformers: seconds). They live in
/// cargo's scratch directory for integration tests (`target/tmp`), rewritten by each run, so
/// runs do not pile copies up in the system's temporary directory.
pub fn python_fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("catalogue-python");
        let _ = std::fs::remove_dir_all(&dir);
        mlm_pyref::run("bad_inputs.py", ["make".as_ref(), dir.as_os_str()]);
        dir
    })
}

/// Runs every case (all of them, not stopping at the first failure) and fails with every
/// problem found.
pub fn check_all(cases: &[Case]) {
    let problems: Vec<String> = cases.iter().flat_map(Case::problems).collect();
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );
}
