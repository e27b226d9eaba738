//! Compiles the C++ shim (csrc/shim.cpp) against the libtorch that torch-sys found, and tells
//! the crates that link libtorch how to link a binary that runs with no environment.
//!
//! `cargo:rustc-link-arg` reaches only the targets of the package that prints it, so this
//! script exports the arguments (`DEP_MLM_TORCH_EXT_LINK_ARGS`, `;`-separated) and every
//! package with a binary or test target that links libtorch prints them from its own build.rs.
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

/// The NCCL process group needs the CUDA runtime headers and `nccl.h`, which the nvidia-*
/// wheels beside a CUDA torch ship (`site-packages/nvidia/*/include`). Without them (a CPU
/// torch), or with `MLM_TRAIN_NO_NCCL` set, a stub that reports how the shim was built.
fn compile_nccl_backend(include: &Path, lib_dir: &Path) {
    let mut build = shim_build(include);
    let site_packages = lib_dir
        .canonicalize()
        .ok()
        .and_then(|lib| lib.parent().and_then(Path::parent).map(Path::to_path_buf));
    let nvidia_includes: Vec<PathBuf> = site_packages
        .map(|dir| dir.join("nvidia"))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("include")))
        .filter(|dir| dir.is_dir())
        .collect();
    let has = |header: &str| nvidia_includes.iter().any(|dir| dir.join(header).exists());
    let wanted = env::var_os("MLM_TRAIN_NO_NCCL").is_none();
    if wanted
        && lib_dir.join("libtorch_cuda.so").exists()
        && has("cuda_runtime_api.h")
        && has("nccl.h")
    {
        let mut with_nccl = build.clone();
        with_nccl
            .includes(&nvidia_includes)
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("MLMX_WITH_NCCL", None)
            .file("csrc/dist_nccl.cpp");
        match with_nccl.try_compile("mlm_torch_ext_nccl") {
            Ok(()) => return,
            Err(e) => println!(
                "cargo:warning=building without NCCL: the CUDA headers beside torch do not \
                 compile c10d's ProcessGroupNCCL.hpp ({e}); scripts/setup installs them"
            ),
        }
    }
    build
        .file("csrc/dist_nccl.cpp")
        .compile("mlm_torch_ext_nccl");
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

    for file in ["shim.cpp", "dist.cpp", "dist_nccl.cpp", "guard.hpp"] {
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
    build.file("csrc/shim.cpp").file("csrc/dist.cpp");
    build.compile("mlm_torch_ext");
    compile_nccl_backend(&include, &lib_dir);

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
