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
            #[doc = "As the C function it stands for: the caller passes what its C prototype requires."]
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
    fcntl => ixc_fcntl,
    fcntl64 => ixc_fcntl64,
    ioctl => ixc_ioctl,
    event_err => ixc_event_err,
    event_warn => ixc_event_warn,
    event_sock_err => ixc_event_sock_err,
    event_sock_warn => ixc_event_sock_warn,
    event_errx => ixc_event_errx,
    event_warnx => ixc_event_warnx,
    event_msgx => ixc_event_msgx,
    event_debugx_ => ixc_event_debugx_,
    event_logv_ => ixc_event_logv_,
    evbuffer_add_printf => ixc_evbuffer_add_printf,
    evbuffer_add_vprintf => ixc_evbuffer_add_vprintf,
}
