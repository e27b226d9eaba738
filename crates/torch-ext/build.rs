//! Compiles the C++ shim (csrc/shim.cpp) against the libtorch that torch-sys found, and tells
//! the crates that link libtorch how to link a binary that runs with no environment.
//!
//! `cargo:rustc-link-arg` reaches only the targets of the package that prints it, so this
//! script exports the arguments (`DEP_MLM_TORCH_EXT_LINK_ARGS`, `;`-separated) and every
//! package with a binary or test target that links libtorch prints them from its own build.rs.
// A build script talks to cargo through stdout (`cargo:` lines).
#![allow(clippy::print_stdout)]

use std::env;
use std::path::{Path, PathBuf};

/// The C++ settings every shim file is compiled with.
fn shim_build(include: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        // The torch 2.x wheels are built with the C++11 ABI, as is tch's own wrapper.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        // c10d's headers declare the Gloo process group and the distributed API only with
        // these (the wheel is built with both); Gloo's own headers are Debian's libgloo-dev.
        .define("USE_DISTRIBUTED", None)
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        // c10's CUDA headers align to the compiler's cache-line constant; gcc warns that it
        // may vary, which is harmless for a shim built and linked in one go.
        .flag_if_supported("-Wno-interference-size");
    build
}

/// The `site-packages/nvidia/*/include` directories beside the torch whose libraries are in
/// `lib_dir` (the CUDA runtime headers and `nccl.h` ship in the nvidia-* wheels a CUDA torch
/// depends on), when that torch has CUDA (`libtorch_cuda.so`).
fn cuda_includes(lib_dir: &Path) -> Vec<PathBuf> {
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return Vec::new();
    }
    let site_packages = lib_dir
        .canonicalize()
        .ok()
        .and_then(|lib| lib.parent().and_then(Path::parent).map(Path::to_path_buf));
    site_packages
        .map(|dir| dir.join("nvidia"))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("include")))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Compiles `file` as library `name` with the CUDA headers and `defines` when `wanted`
/// (the headers are there and the caller's conditions hold); otherwise, or when that does
/// not compile, without them: each such file has a stub that reports how the shim was built.
fn compile_cuda_part(include: &Path, cuda: &[PathBuf], wanted: bool, file: &str, defines: &[&str]) {
    let name = format!("mlm_torch_ext_{}", file.trim_end_matches(".cpp"));
    let path = format!("csrc/{file}");
    if wanted {
        let mut with_cuda = shim_build(include);
        with_cuda
            .includes(cuda)
            .define("USE_CUDA", None)
            .file(&path);
        for define in defines {
            with_cuda.define(define, None);
        }
        match with_cuda.try_compile(&name) {
            Ok(()) => return,
            Err(e) => println!(
                "cargo:warning=building {file} without CUDA: the CUDA headers beside torch do \
                 not compile it ({e}); scripts/setup installs them"
            ),
        }
    }
    shim_build(include).file(&path).compile(&name);
}

/// The NCCL process group needs the CUDA runtime headers and `nccl.h`; CUDA graph capture
/// needs the runtime headers. Without them (a CPU torch), or with `MLM_TRAIN_NO_NCCL` set
/// for NCCL, stubs that report how the shim was built.
fn compile_cuda_backends(include: &Path, lib_dir: &Path) {
    let cuda = cuda_includes(lib_dir);
    let has = |header: &str| cuda.iter().any(|dir| dir.join(header).exists());
    let runtime = has("cuda_runtime_api.h");
    let nccl = runtime && has("nccl.h") && env::var_os("MLM_TRAIN_NO_NCCL").is_none();
    compile_cuda_part(
        include,
        &cuda,
        nccl,
        "dist_nccl.cpp",
        &["USE_C10D_NCCL", "MLMX_WITH_NCCL"],
    );
    compile_cuda_part(
        include,
        &cuda,
        runtime,
        "cuda_graph.cpp",
        &["MLMX_WITH_CUDA"],
    );
    if runtime {
        // c10's CUDA streams, which torch-sys does not link (libtorch_cuda needs it itself).
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

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

    for file in [
        "shim.cpp",
        "dist.cpp",
        "dist_nccl.cpp",
        "cuda_graph.cpp",
        "onednn.cpp",
        "guard.hpp",
    ] {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }
    println!("cargo:rerun-if-env-changed=MLM_TRAIN_NO_NCCL");
    if !Path::new("/usr/include/gloo/config.h").exists() {
        panic!(
            "the Gloo headers (/usr/include/gloo) are missing: run scripts/setup, which \
             installs Debian's libgloo-dev"
        );
    }
    let mut build = shim_build(&include);
    build
        .file("csrc/shim.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/onednn.cpp");
    build.compile("mlm_torch_ext");
    compile_cuda_backends(&include, &lib_dir);

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
