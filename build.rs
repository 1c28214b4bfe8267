//! Generates `include/ix.h`, the native C API, from `capi/native.rs` with cbindgen.
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
}
