//! The start-up check of `LD_PRELOAD=libix.so`: the program must not mix two libevent implementations.
//!
//! When libix is preloaded into a program that calls a libevent function libix does not provide (say `evhttp_new`
//! before the HTTP layer exists), that call would bind to the real libevent while the rest binds to libix, and the
//! two would share `struct event_base` pointers they do not understand. So, as the program loads, libix lists the
//! libevent functions the executable imports, and if one is missing here it says which and re-executes the program
//! without itself in `LD_PRELOAD`: the program then runs entirely on the real libevent and the kernel.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Set in the environment of the re-executed program, so the check never loops.
const SKIPPED_ENV: &str = "IX_PRELOAD_SKIPPED";

/// Name prefixes of libevent's exported functions and data.
const LIBEVENT_PREFIXES: &[&str] = &[
    "event_",
    "evbuffer_",
    "bufferevent_",
    "evconnlistener_",
    "evutil_",
    "evhttp_",
    "evdns_",
    "evrpc_",
    "evtag_",
    "evthread_",
    "evmap_",
    "evsig_",
    "ev_token_bucket_",
    "libevent_global_shutdown",
];

fn is_libevent_name(name: &str) -> bool {
    LIBEVENT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The libevent names `elf` (an executable or library) imports.
pub fn libevent_imports(elf: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(elf).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|n| is_libevent_name(n))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The path of the object holding this code (libix.so when preloaded).
fn own_path() -> Option<CString> {
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    let addr = check_at_load as *const libc::c_void;
    // SAFETY: dladdr reads the address and fills `info`, a valid out-pointer.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker, valid while we are loaded.
    Some(unsafe { CStr::from_ptr(info.dli_fname) }.to_owned())
}

fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// Which of `names` this object does not define.
fn missing_here(names: &[String], own: &CStr) -> Vec<String> {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to an object already loaded (us).
    let handle = unsafe { libc::dlopen(own.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return Vec::new();
    }
    let own_set: HashSet<&[u8]> = [own.to_bytes()].into_iter().collect();
    let mut missing = Vec::new();
    for name in names {
        let Ok(c) = CString::new(name.as_str()) else { continue };
        // SAFETY: a valid handle and a NUL-terminated name.
        let sym = unsafe { libc::dlsym(handle, c.as_ptr()) };
        let mut info = unsafe_zeroed_dl_info();
        // SAFETY: dladdr on a non-null symbol address with a valid out-pointer.
        let ours = !sym.is_null()
            && unsafe { libc::dladdr(sym, &mut info) } != 0
            && !info.dli_fname.is_null()
            // SAFETY: as above, a linker-owned C string.
            && own_set.contains(unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes());
        if !ours {
            missing.push(name.clone());
        }
    }
    // SAFETY: the handle came from dlopen; NOLOAD handles are reference-counted like any other.
    unsafe { libc::dlclose(handle) };
    missing
}

/// `LD_PRELOAD` without the entries naming `own`.
fn preload_without(value: &OsStr, own: &CStr) -> OsString {
    let own_name = std::path::Path::new(OsStr::from_bytes(own.to_bytes())).file_name().map(OsStr::to_owned);
    let kept: Vec<&[u8]> = value
        .as_bytes()
        .split(|&b| b == b':' || b == b' ')
        .filter(|e| !e.is_empty())
        .filter(|e| {
            let name = std::path::Path::new(OsStr::from_bytes(e)).file_name().map(OsStr::to_owned);
            *e != own.to_bytes() && (name.is_none() || name != own_name)
        })
        .collect();
    OsString::from_vec(kept.join(&b':'))
}

fn reexec_without_us(own: &CStr) -> std::io::Error {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return std::io::Error::other("cannot read /proc/self/cmdline");
    };
    let args: Vec<CString> =
        cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).filter_map(|a| CString::new(a).ok()).collect();
    let mut env: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let v = if k == "LD_PRELOAD" { preload_without(&v, own) } else { v };
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend(v.into_vec());
        if let Ok(c) = CString::new(kv) {
            env.push(c);
        }
    }
    env.push(CString::new(format!("{SKIPPED_ENV}=1")).expect("no NUL"));
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call (execve returns only on
    // failure).
    unsafe { libc::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    std::io::Error::last_os_error()
}

extern "C" fn check_at_load() {
    let _ = std::panic::catch_unwind(|| {
        let Some(preload) = std::env::var_os("LD_PRELOAD") else { return };
        if std::env::var_os(SKIPPED_ENV).is_some() {
            return;
        }
        let Some(own) = own_path() else { return };
        let own_name = std::path::Path::new(OsStr::from_bytes(own.to_bytes())).file_name().map(OsStr::to_owned);
        let preloaded = preload.as_bytes().split(|&b| b == b':' || b == b' ').any(|e| {
            e == own.to_bytes()
                || std::path::Path::new(OsStr::from_bytes(e)).file_name().map(OsStr::to_owned) == own_name
        });
        if !preloaded {
            return;
        }
        let Ok(exe) = std::fs::read("/proc/self/exe") else { return };
        let Ok(imports) = libevent_imports(&exe) else { return };
        let missing = missing_here(&imports, &own);
        if missing.is_empty() {
            return;
        }
        let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
        eprintln!(
            "libix: this program uses {} libevent function(s) libix does not provide yet ({}{}); running it without \
             libix so that two libevent implementations never mix",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" }
        );
        let err = reexec_without_us(&own);
        eprintln!("libix: could not re-execute the program without libix ({err}); continuing with libix");
    });
}

/// Runs [`check_at_load`] when the dynamic linker loads libix (before the program's `main`).
#[used]
#[unsafe(link_section = ".init_array")]
static CHECK_AT_LOAD: extern "C" fn() = check_at_load;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_list_loses_only_us() {
        let own = c"/opt/ix/lib/libix.so";
        assert_eq!(preload_without(OsStr::new("/opt/ix/lib/libix.so"), own), OsString::new());
        assert_eq!(preload_without(OsStr::new("libfoo.so:/opt/ix/lib/libix.so libbar.so"), own), "libfoo.so:libbar.so");
        assert_eq!(preload_without(OsStr::new("/elsewhere/libix.so:libfoo.so"), own), "libfoo.so");
    }

    #[test]
    fn recognises_libevent_names() {
        assert!(is_libevent_name("event_base_new") && is_libevent_name("evhttp_new"));
        assert!(!is_libevent_name("eventfd") && !is_libevent_name("read"));
    }

    #[test]
    fn lists_imports_of_a_real_libevent_program() {
        // Our own test binary imports no libevent function; a system library that links libevent would. Parse
        // ourselves at least: the parser must accept a real ELF and find nothing.
        let exe = std::fs::read("/proc/self/exe").expect("own executable");
        assert!(libevent_imports(&exe).expect("parses").is_empty());
    }
}
