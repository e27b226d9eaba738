//! Compiles the C++ shim (csrc/shim.cpp) against the libtorch that torch-sys found, and tells
//! the crates that link libtorch how to link a binary that runs with no environment.
//!
//! `cargo:rustc-link-arg` reaches only the targets of the package that prints it, so this
//! script exports the arguments (`DEP_MLM_TORCH_EXT_LINK_ARGS`, `;`-separated) and every
//! package with a binary or test target that links libtorch prints them from its own build.rs.
use std::env;
use std::path::PathBuf;

fn main() {
    // torch-sys (links = "tch") exports the libtorch lib dir it linked against.
    let lib_dir = PathBuf::from(env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB is unset: torch-sys did not find libtorch (run scripts/setup)",
    ));
    let torch_root = lib_dir
        .parent()
        .expect("libtorch lib dir has a parent")
        .to_path_buf();
    let include = torch_root.join("include");

    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // The torch 2.x wheels are built with the C++11 ABI, as is tch's own wrapper.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .file("csrc/shim.cpp")
        .compile("mlm_torch_ext");

    let mut link_args = vec![format!("-Wl,-rpath,{}", lib_dir.display())];
    // Nothing references libtorch_cuda.so directly, so `--as-needed` would drop it and CUDA
    // would be unavailable even on a GPU. Keep it as a needed library: it loads fine on a
    // machine without a GPU, so the same binary uses the GPU where there is one.
    if lib_dir.join("libtorch_cuda.so").exists() {
        link_args.push("-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned());
    }
    for arg in &link_args {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:libtorch_lib={}", lib_dir.display());
    println!("cargo:link_args={}", link_args.join(";"));
}
