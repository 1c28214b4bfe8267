//! The exported C ABI: a thin, audited shell over libix. One file per libevent module (to come) plus the native
//! IX API (`native.rs`, from which cbindgen generates `include/ix.h`).
//!
//! Rules for every export: `unsafe extern "C"` with a `# Safety` note, null-check and convert arguments, call one
//! Rust method, map the result to the C convention, and never unwind into C (`catch_unwind`).
#![allow(unsafe_code)]

pub mod buffer;
pub mod bufferevent;
pub mod core_internal;
pub mod event;
pub mod listener;
pub mod native;
pub mod posix;
pub mod thread_internal;
pub mod util;
pub mod variadic;

/// Runs `f`, turning a panic into `on_panic` (a panic must never cross into C).
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log::error!("libix: internal panic caught at the C boundary");
            on_panic
        }
    }
}
