//! Links `mlm-train` and its end-to-end tests: rpath to libtorch, libtorch_cuda kept.
//! The arguments come from mlm-torch-ext's build script (see its doc comment for why).
// A build script talks to cargo through stdout (`cargo:` lines).
#![allow(clippy::print_stdout)]

fn main() {
    let args =
        std::env::var("DEP_MLM_TORCH_EXT_LINK_ARGS").expect("mlm-torch-ext exports link args");
    for arg in args.split(';') {
        println!("cargo:rustc-link-arg={arg}");
    }
}
