//! Generates `include/ix.h`, the native C API, from `capi/native.rs` with cbindgen, and compiles the few C
//! sources in `capi/c/` (variadic libevent entry points such as `evbuffer_add_printf`, which stable Rust cannot
//! define) into a static library that `capi::variadic` exports through naked-jump trampolines, and gives libix.so
//! its soname, `libix.so.0`.
use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=capi/native.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new().with_config(config).with_src(format!("{dir}/capi/native.rs")).generate() {
        Ok(bindings) => {
            bindings.write_to_file(format!("{dir}/include/ix.h"));
        }
        // A parse error must not hide: the header is part of the product.
        Err(e) => panic!("cbindgen could not generate include/ix.h: {e}"),
    }
    compile_c_shims(Path::new(&dir));
    set_soname();
}

/// libix.so's soname is `libix.so.0` (the install is `libix.so.0.1.0` with the links `libix.so.0` and
/// `libix.so`), so programs linked with `-lix` need `libix.so.0` at run time. Next to the freshly built library
/// in `target/<profile>/` a link `libix.so.0 -> libix.so` lets such programs run from the build tree
/// (`-Wl,-rpath,target/release`, LD_LIBRARY_PATH) as well as from an install.
fn set_soname() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libix.so.0");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    // OUT_DIR is <target>/<profile>/build/libix-<hash>/out.
    let Some(profile_dir) = Path::new(&out).ancestors().nth(3) else { return };
    let link = profile_dir.join("libix.so.0");
    if std::fs::symlink_metadata(&link).is_err() {
        // Not fatal: only programs run from the build tree need it (CMake's build makes it as well).
        if let Err(e) = std::os::unix::fs::symlink("libix.so", &link) {
            println!("cargo:warning=could not create {}: {e}", link.display());
        }
    }
}

/// Builds every `capi/c/*.c` into `libixc.a`. A C function in a static library linked into a cdylib is not
/// exported (rustc's version script lists only Rust symbols), so each C entry point gets an internal name
/// (`ixc_*`) and a Rust trampoline exports the public one.
fn compile_c_shims(dir: &Path) {
    let c_dir = dir.join("capi/c");
    println!("cargo:rerun-if-changed={}", c_dir.display());
    let mut sources: Vec<_> = std::fs::read_dir(&c_dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    sources.retain(|p| p.extension().is_some_and(|e| e == "c"));
    sources.sort();
    if sources.is_empty() {
        return;
    }
    let mut build = cc::Build::new();
    build.include(dir.join("compat/include")).include(&c_dir).warnings(true).extra_warnings(true);
    build.flag_if_supported("-Werror").flag_if_supported("-fvisibility=hidden");
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
        build.file(source);
    }
    build.compile("ixc");
}
