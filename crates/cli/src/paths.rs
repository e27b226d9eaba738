//! Paths as the CLI prints them: lexically normalised (`runs/x`, never `configs/../runs/x`),
//! and relative to the working directory when they lie under it.

use std::path::{Path, PathBuf};

/// `path` normalised for printing; relative to the working directory when under it.
pub fn shown(path: &Path) -> PathBuf {
    let normal = mlm_corpus::resolve_path(Path::new(""), path);
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| normal.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .filter(|rest| !rest.as_os_str().is_empty());
    relative.unwrap_or(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_normalised_and_relative_to_the_working_directory() {
        assert_eq!(shown(Path::new("configs/../runs/x")), Path::new("runs/x"));
        assert_eq!(shown(Path::new("./runs/./x/")), Path::new("runs/x"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(shown(&cwd.join("runs/../y")), Path::new("y"));
        assert_eq!(
            shown(Path::new("/elsewhere/a/../b")),
            Path::new("/elsewhere/b")
        );
    }
}
