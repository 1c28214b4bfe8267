//! Exports of libevent functions whose bodies are C (`capi/c/*.c`): the C-variadic ones (`evutil_snprintf`,
//! `evbuffer_add_printf`, ...) and their `va_list` twins, which stable Rust cannot define.
//!
//! rustc exports only Rust symbols from a cdylib, so a C function in the linked `libixc.a` stays hidden. Each
//! public name is therefore a naked Rust function that is a single `jmp` to the C body: the jump keeps every
//! register (including `%al`, the variadic vector-register count) and the caller's stack, so the C function sees
//! exactly the call the application made.

/// `export_c!(public_name => c_body_name, ...)`: one exported trampoline per pair.
macro_rules! export_c {
    ($($public:ident => $body:ident),+ $(,)?) => {
        unsafe extern "C" {
            $(fn $body();)+
        }
        $(
            #[doc = concat!("`", stringify!($public), "`: jumps to the C body `", stringify!($body), "`.")]
            #[doc = ""]
            #[doc = "# Safety"]
            #[doc = "The C function's contract (libevent's documentation of the public name)."]
            #[unsafe(naked)]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $public() {
                // A tail jump: arguments, return address and %al are the application's own.
                #[cfg(target_arch = "x86_64")]
                core::arch::naked_asm!("jmp {}", sym $body);
                #[cfg(target_arch = "aarch64")]
                core::arch::naked_asm!("b {}", sym $body);
            }
        )+
    };
}

export_c! {
    evutil_snprintf => ixc_evutil_snprintf,
    evutil_vsnprintf => ixc_evutil_vsnprintf,
    evbuffer_add_printf => ixc_evbuffer_add_printf,
    evbuffer_add_vprintf => ixc_evbuffer_add_vprintf,
}
