//! libevent 2.1's event API (`event2/event.h`, `event2/event_compat.h`, `event2/thread.h`) over [`crate::event`].
//!
//! Every export null-checks, converts, calls one engine method and maps the result to libevent's convention; panics
//! stop at [`super::guard`]. `struct event_base *` is the address of an engine [`Base`] placed in memory from the
//! application's allocator (`event_set_mem_functions`), `struct event *` the application's own 128 bytes.
//!
//! Process-wide state lives here because libevent's ABI defines it process-wide: the 1.4 "current base"
//! (`event_init`, exported as libevent's `event_global_current_base_`), the allocator, the log and fatal callbacks,
//! debug mode and the thread callbacks (`evthread_lock_fns_`/`evthread_cond_fns_`, exported data as in libevent so
//! programs built with its internal macros keep working).
#![allow(non_camel_case_types, non_upper_case_globals)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_long, c_short, c_uint, c_ulong, c_void, CStr, CString};
use std::mem::{align_of, size_of};
use std::ptr::{self, null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::event::base::{self as eb, Base, Config, DelMode, Error, Severity};
use crate::event::raw::{self, EvPtr, EventCb, FinalizeCb, RawEvent, Timeval};
use crate::event::time::Usec;

use super::guard;

/// `struct event_base` (opaque to C).
#[repr(C)]
pub struct event_base {
    _opaque: [u8; 0],
}

/// `struct event_config` (opaque to C).
#[repr(C)]
pub struct event_config {
    _opaque: [u8; 0],
}

/// `struct event`: 128 bytes, libevent's layout ([`RawEvent`]).
pub type event = RawEvent;

/// `event_base_foreach_event_cb`.
pub type ForeachCb = unsafe extern "C" fn(*const event_base, *const event, *mut c_void) -> c_int;
/// `event_log_cb`.
pub type LogCb = unsafe extern "C" fn(c_int, *const c_char);
/// `event_fatal_cb`.
pub type FatalCb = unsafe extern "C" fn(c_int);

const EVENT_BASE_FLAG_NOLOCK: c_int = 0x01;
const EVENT_BASE_FLAG_IGNORE_ENV: c_int = 0x02;
const EVENT_BASE_FLAG_NO_CACHE_TIME: c_int = 0x08;
const EVENT_BASE_FLAG_PRECISE_TIMER: c_int = 0x20;
const EVENT_ERR_ABORT: c_int = 0xdeaddead_u32 as c_int;
const EVENT_FINALIZE_FREE_: c_uint = 0x10000;
/// libevent 2.1.12's version.
const VERSION: &CStr = c"2.1.12-stable";
const VERSION_NUMBER: u32 = 0x02010c00;

/// The backend name bases report (`event_base_get_method`): "libix", or `IX_EVENT_METHOD` from the environment
/// for programs (or test suites) that decide things by comparing it with libevent's names, e.g. "epoll", whose
/// semantics libix's kernel-fd backend has.
fn method_name() -> &'static CStr {
    static NAME: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    NAME.get_or_init(|| match std::env::var("IX_EVENT_METHOD") {
        Ok(v) if !v.is_empty() && !v.contains('\0') => CString::new(v).unwrap_or_else(|_| c"libix".to_owned()),
        _ => c"libix".to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Process-wide settings (libevent's ABI)
// ---------------------------------------------------------------------------------------------------------------

/// The 1.4 API's current base (`event_init`); libevent exports it under this name and its test suite reads it.
#[no_mangle]
pub static event_global_current_base_: AtomicPtr<event_base> = AtomicPtr::new(null_mut());

/// `event_enable_debug_logging`'s mask (exported data, as in libevent).
#[no_mangle]
pub static event_debug_logging_mask_: AtomicU32 = AtomicU32::new(0);

pub(crate) fn current_base() -> *mut event_base {
    event_global_current_base_.load(Ordering::Acquire)
}

static MM_MALLOC: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static MM_REALLOC: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static MM_FREE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static LOG_CB: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static FATAL_CB: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

/// `malloc` through `event_set_mem_functions`' allocator (NULL for 0 bytes, as libevent).
pub(crate) fn mm_malloc(n: usize) -> *mut c_void {
    if n == 0 {
        return null_mut();
    }
    let f = MM_MALLOC.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: plain malloc.
        unsafe { libc::malloc(n) }
    } else {
        // SAFETY: stored from a `void *(*)(size_t)` by event_set_mem_functions.
        let f: unsafe extern "C" fn(usize) -> *mut c_void = unsafe { std::mem::transmute(f) };
        // SAFETY: calling the application's allocator as libevent would.
        unsafe { f(n) }
    }
}

/// `calloc` through the configured allocator.
pub(crate) fn mm_calloc(count: usize, size: usize) -> *mut c_void {
    if count == 0 || size == 0 {
        return null_mut();
    }
    let Some(n) = count.checked_mul(size) else {
        crate::event::sys::set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = mm_malloc(n);
    if !p.is_null() {
        // SAFETY: `p` has `n` bytes.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, n) };
    }
    p
}

/// `realloc` through the configured allocator.
pub(crate) fn mm_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    let f = MM_REALLOC.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: `p` came from this allocator family (the caller's promise).
        unsafe { libc::realloc(p, n) }
    } else {
        // SAFETY: stored from a `void *(*)(void *, size_t)`.
        let f: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void = unsafe { std::mem::transmute(f) };
        // SAFETY: the application's allocator, called as libevent would.
        unsafe { f(p, n) }
    }
}

/// `free` through the configured allocator.
pub(crate) fn mm_free(p: *mut c_void) {
    let f = MM_FREE.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: `p` is NULL or came from malloc (the caller's promise).
        unsafe { libc::free(p) }
    } else {
        // SAFETY: stored from a `void (*)(void *)`.
        let f: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(f) };
        // SAFETY: the application's allocator.
        unsafe { f(p) }
    }
}

/// `event_mm_malloc_` (libevent's internal allocator entry points, exported by libevent_core).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_mm_malloc_(n: usize) -> *mut c_void {
    mm_malloc(n)
}

/// `event_mm_calloc_`.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_mm_calloc_(count: usize, size: usize) -> *mut c_void {
    mm_calloc(count, size)
}

/// `event_mm_realloc_`.
///
/// # Safety
/// `p` NULL or from this allocator.
#[no_mangle]
pub unsafe extern "C" fn event_mm_realloc_(p: *mut c_void, n: usize) -> *mut c_void {
    mm_realloc(p, n)
}

/// `event_mm_free_`.
///
/// # Safety
/// `p` NULL or from this allocator, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn event_mm_free_(p: *mut c_void) {
    mm_free(p)
}

/// `event_mm_strdup_`: NULL with EINVAL for NULL.
///
/// # Safety
/// `s` NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn event_mm_strdup_(s: *const c_char) -> *mut c_char {
    if s.is_null() {
        crate::event::sys::set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: non-NULL C string (the caller's promise).
    let bytes = unsafe { CStr::from_ptr(s) }.to_bytes_with_nul();
    let p = mm_malloc(bytes.len()).cast::<u8>();
    if p.is_null() {
        crate::event::sys::set_errno(libc::ENOMEM);
        return null_mut();
    }
    // SAFETY: `p` has room for `bytes.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    p.cast()
}

/// Moves `v` into memory from the configured allocator (so pointers handed to C come from it, as in libevent).
fn mm_box<T>(v: T) -> *mut T {
    const { assert!(align_of::<T>() <= 16) };
    let p = mm_malloc(size_of::<T>().max(1)).cast::<T>();
    if p.is_null() || !(p as usize).is_multiple_of(align_of::<T>()) {
        if !p.is_null() {
            mm_free(p.cast());
        }
        return null_mut();
    }
    // SAFETY: `p` is fresh, large enough and aligned.
    unsafe { p.write(v) };
    p
}

/// Drops and frees what [`mm_box`] made.
///
/// # Safety
/// `p` came from `mm_box::<T>` and is not used afterwards.
unsafe fn mm_unbox<T>(p: *mut T) {
    // SAFETY: the caller's promise.
    unsafe { ptr::drop_in_place(p) };
    mm_free(p.cast());
}

/// libevent's log path: the application's callback, else `[sev] msg` on stderr. Debug messages only with
/// `event_enable_debug_logging`. For every part of libix that reports as libevent does.
pub(crate) fn log_msg(sev: Severity, msg: &str) {
    if sev == Severity::Debug && event_debug_logging_mask_.load(Ordering::Relaxed) == 0 {
        return;
    }
    let cb = LOG_CB.load(Ordering::Acquire);
    if cb.is_null() {
        let name = match sev {
            Severity::Debug => "debug",
            Severity::Msg => "msg",
            Severity::Warn => "warn",
            Severity::Err => "err",
        };
        eprintln!("[{name}] {msg}");
    } else {
        let c = CString::new(msg.replace('\0', "")).unwrap_or_default();
        // SAFETY: stored from an `event_log_cb` by event_set_log_callback.
        let f: LogCb = unsafe { std::mem::transmute(cb) };
        // SAFETY: calling the application's callback with a valid C string.
        unsafe { f(sev as c_int, c.as_ptr()) };
    }
}

/// `event_warnx`.
pub(crate) fn warnx(msg: &str) {
    log_msg(Severity::Warn, msg);
}

/// `event_errx`: logs, then the fatal callback, then exit (abort for EVENT_ERR_ABORT_ without a callback).
pub(crate) fn errx(code: c_int, msg: &str) -> ! {
    log_msg(Severity::Err, msg);
    let cb = FATAL_CB.load(Ordering::Acquire);
    if !cb.is_null() {
        // SAFETY: stored from an `event_fatal_cb`.
        let f: FatalCb = unsafe { std::mem::transmute(cb) };
        // SAFETY: the application's callback.
        unsafe { f(code) };
        std::process::exit(code);
    }
    if code == EVENT_ERR_ABORT {
        std::process::abort();
    }
    std::process::exit(code)
}

fn getenv(name: &str) -> Option<std::ffi::OsString> {
    // libevent's evutil_getenv_ ignores the environment in setuid programs.
    // SAFETY: getauxval has no preconditions.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return None;
    }
    std::env::var_os(name)
}

// Debug mode: libevent's map of set-up events, checking use-before-assign and assign-while-added. Whether an
// event is added is read from its EVLIST_INSERTED/EVLIST_TIMEOUT flags, which the base keeps exact (also across
// deletions the loop makes itself, such as a non-persistent event firing).
static DEBUG_ON: AtomicBool = AtomicBool::new(false);
static DEBUG_TOO_LATE: AtomicBool = AtomicBool::new(false);
static DEBUG_MAP: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn debug_map() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    DEBUG_MAP.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe(ev: EvPtr) -> String {
    format!("{:p} (events: 0x{:x}, fd: {}, flags: 0x{:x})", ev.as_ptr(), ev.events() as u16, ev.fd(), ev.flags() as u16)
}

fn debug_note_setup(ev: EvPtr) {
    if DEBUG_ON.load(Ordering::Relaxed) {
        debug_map().get_or_insert_with(HashSet::new).insert(ev.as_ptr() as usize);
    }
    DEBUG_TOO_LATE.store(true, Ordering::Relaxed);
}

fn debug_note_teardown(ev: EvPtr) {
    if DEBUG_ON.load(Ordering::Relaxed) {
        if let Some(m) = debug_map().as_mut() {
            m.remove(&(ev.as_ptr() as usize));
        }
    }
}

#[inline]
fn debug_assert_setup(ev: EvPtr, what: &str) {
    if DEBUG_ON.load(Ordering::Relaxed) {
        let known = debug_map().as_ref().is_some_and(|m| m.contains(&(ev.as_ptr() as usize)));
        if !known {
            errx(EVENT_ERR_ABORT, &format!("{what} called on a non-initialized event {}", describe(ev)));
        }
    }
}

#[inline]
fn debug_assert_not_added(ev: EvPtr, what: &str) {
    if DEBUG_ON.load(Ordering::Relaxed) {
        let known = debug_map().as_ref().is_some_and(|m| m.contains(&(ev.as_ptr() as usize)));
        if known && ev.flags() & (raw::EVLIST_INSERTED | raw::EVLIST_TIMEOUT) != 0 {
            errx(EVENT_ERR_ABORT, &format!("{what} called on an already added event {}", describe(ev)));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------------------------

/// The engine base behind a C handle.
///
/// # Safety
/// `b` is NULL or a live handle from `event_base_new*`.
pub(crate) unsafe fn base_ref<'a>(b: *const event_base) -> Option<&'a Base> {
    // SAFETY: the caller's promise; handles are `Base`s placed by `mm_box`.
    unsafe { b.cast::<Base>().as_ref() }
}

/// The event, and its base (None when `ev_base` is NULL).
///
/// # Safety
/// `ev` is NULL or points to a `struct event` the application keeps valid while the base knows it; its `ev_base`
/// is NULL or a live base.
unsafe fn event_and_base<'a>(ev: *const event) -> Option<(EvPtr, Option<&'a Base>)> {
    // SAFETY: the caller's promise (libevent's rules for struct event).
    let e = unsafe { EvPtr::new(ev.cast_mut()) }?;
    // SAFETY: ev_base is written by event_assign with a live base handle (or NULL).
    let b = unsafe { base_ref(e.base() as *const event_base) };
    Some((e, b))
}

/// A C timeval pointer as a relative timeout for `b`.
///
/// # Safety
/// `tv` is NULL or valid for reads.
unsafe fn timeout_arg(b: &Base, tv: *const libc::timeval) -> Option<Usec> {
    // SAFETY: the caller's promise.
    unsafe { tv.as_ref() }.map(|t| b.timeout_of(Timeval { tv_sec: t.tv_sec, tv_usec: t.tv_usec }))
}

fn write_tv(out: *mut libc::timeval, t: Timeval) {
    if let Some(o) = ptr::NonNull::new(out) {
        // SAFETY: non-NULL out-parameter from the caller, valid for writes.
        unsafe { o.as_ptr().write(libc::timeval { tv_sec: t.tv_sec, tv_usec: t.tv_usec }) };
    }
}

/// Reports an engine error as libevent would (some failures are silent in libevent).
fn report(op: &str, fd: c_int, e: &Error) {
    match e {
        Error::Backend(io) => warnx(&format!("{op}: epoll_ctl on fd {fd} failed: {io}")),
        Error::TooMany(_) | Error::SignalWithIo | Error::Reentrant => warnx(&format!("{op}: {e}")),
        Error::MixedEdge(_) => warnx(&e.to_string()),
        Error::BadSignal(_) | Error::Finalizing | Error::Invalid => {}
    }
}

/// The sentinel `event_self_cbarg` returns.
static SELF_CBARG: u8 = 0;

fn self_cbarg() -> *mut c_void {
    ptr::addr_of!(SELF_CBARG) as *mut c_void
}

fn free_event_mem(ev: EvPtr) {
    debug_note_teardown(ev);
    mm_free(ev.as_ptr().cast());
}

// ---------------------------------------------------------------------------------------------------------------
// event_config
// ---------------------------------------------------------------------------------------------------------------

struct Cfg {
    avoid: Vec<CString>,
    flags: c_int,
    require: c_int,
    n_cpus: c_int,
    max_interval: Option<Usec>,
    max_callbacks: c_int,
    limit_after_prio: c_int,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            avoid: Vec::new(),
            flags: 0,
            require: 0,
            n_cpus: 0,
            max_interval: None,
            max_callbacks: i32::MAX,
            limit_after_prio: 1,
        }
    }
}

/// # Safety
/// `c` is NULL or a live handle from `event_config_new`.
unsafe fn cfg_mut<'a>(c: *mut event_config) -> Option<&'a mut Cfg> {
    // SAFETY: the caller's promise; handles are `Cfg`s placed by `mm_box`.
    unsafe { c.cast::<Cfg>().as_mut() }
}

/// `event_config_new`: a configuration with no restrictions.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_config_new() -> *mut event_config {
    guard(null_mut(), || mm_box(Cfg::default()).cast())
}

/// `event_config_free`.
///
/// # Safety
/// `cfg` is NULL or from `event_config_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn event_config_free(cfg: *mut event_config) {
    if !cfg.is_null() {
        // SAFETY: the caller hands back a handle made by mm_box::<Cfg>.
        guard((), || unsafe { mm_unbox(cfg.cast::<Cfg>()) });
    }
}

/// `event_config_avoid_method`: never use the backend named `method`.
///
/// # Safety
/// `cfg` as in `event_config_free`; `method` NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn event_config_avoid_method(cfg: *mut event_config, method: *const c_char) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(c), false) = (unsafe { cfg_mut(cfg) }, method.is_null()) else { return -1 };
        // SAFETY: non-NULL C string from the caller.
        c.avoid.push(unsafe { CStr::from_ptr(method) }.to_owned());
        0
    })
}

/// `event_config_require_features`.
///
/// # Safety
/// `cfg` as in `event_config_free`.
#[no_mangle]
pub unsafe extern "C" fn event_config_require_features(cfg: *mut event_config, features: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || match unsafe { cfg_mut(cfg) } {
        Some(c) => {
            c.require = features;
            0
        }
        None => -1,
    })
}

/// `event_config_set_flag`: ORs in an EVENT_BASE_FLAG_*.
///
/// # Safety
/// `cfg` as in `event_config_free`.
#[no_mangle]
pub unsafe extern "C" fn event_config_set_flag(cfg: *mut event_config, flag: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || match unsafe { cfg_mut(cfg) } {
        Some(c) => {
            c.flags |= flag;
            0
        }
        None => -1,
    })
}

/// `event_config_set_num_cpus_hint` (recorded; only IOCP used it).
///
/// # Safety
/// `cfg` as in `event_config_free`.
#[no_mangle]
pub unsafe extern "C" fn event_config_set_num_cpus_hint(cfg: *mut event_config, cpus: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || match unsafe { cfg_mut(cfg) } {
        Some(c) => {
            c.n_cpus = cpus;
            0
        }
        None => -1,
    })
}

/// `event_config_set_max_dispatch_interval`: bounds how long (or how many callbacks) the loop runs callbacks of
/// priority >= `min_priority` before checking for new events.
///
/// # Safety
/// `cfg` as in `event_config_free`; `max_interval` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn event_config_set_max_dispatch_interval(
    cfg: *mut event_config,
    max_interval: *const libc::timeval,
    max_callbacks: c_int,
    min_priority: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(c) = (unsafe { cfg_mut(cfg) }) else { return -1 };
        // SAFETY: NULL or valid, the caller's promise.
        c.max_interval = unsafe { max_interval.as_ref() }
            .map(|t| Usec::from_timeval(Timeval { tv_sec: t.tv_sec, tv_usec: t.tv_usec }));
        c.max_callbacks = if max_callbacks >= 0 { max_callbacks } else { i32::MAX };
        c.limit_after_prio = min_priority.max(0);
        0
    })
}

// ---------------------------------------------------------------------------------------------------------------
// event_base
// ---------------------------------------------------------------------------------------------------------------

fn new_base(cfg: Option<&Cfg>) -> *mut event_base {
    DEBUG_TOO_LATE.store(true, Ordering::Relaxed);
    let flags = cfg.map_or(0, |c| c.flags);
    let check_env = flags & EVENT_BASE_FLAG_IGNORE_ENV == 0;
    let precise = flags & EVENT_BASE_FLAG_PRECISE_TIMER != 0 || (check_env && getenv("EVENT_PRECISE_TIMER").is_some());
    // One backend ("libix"): the configuration or the environment may rule it out.
    let features = crate::event::poller::features::ET
        | crate::event::poller::features::O1
        | crate::event::poller::features::EARLY_CLOSE;
    let name = method_name();
    let avoided = cfg.is_some_and(|c| c.avoid.iter().any(|m| m.as_c_str() == name));
    let lacking = cfg.is_some_and(|c| features & c.require != c.require);
    let env_off = format!("EVENT_NO{}", name.to_string_lossy().to_uppercase());
    if avoided || lacking || (check_env && getenv(&env_off).is_some()) {
        warnx("event_base_new_with_config: no event mechanism available");
        return null_mut();
    }
    let threaded = locking_enabled() && flags & EVENT_BASE_FLAG_NOLOCK == 0;
    let config = Config {
        no_cache_time: flags & EVENT_BASE_FLAG_NO_CACHE_TIME != 0,
        precise_timer: precise,
        threaded,
        max_dispatch_interval: cfg.and_then(|c| c.max_interval),
        max_dispatch_callbacks: cfg.map_or(i32::MAX, |c| c.max_callbacks),
        limit_after_prio: cfg.map_or(1, |c| c.limit_after_prio),
        log: log_msg,
        free_event: Some(free_event_mem),
        debug_mode: DEBUG_ON.load(Ordering::Relaxed),
        ..Config::default()
    };
    let base = match Base::new(config) {
        Ok(b) => b,
        Err(e) => {
            warnx(&format!("event_base_new_with_config: {e}"));
            return null_mut();
        }
    };
    if getenv("EVENT_SHOW_METHOD").is_some() {
        log_msg(Severity::Msg, &format!("libevent using: {}", name.to_string_lossy()));
    }
    mm_box(base).cast()
}

/// `event_base_new`: a base with the default configuration.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_base_new() -> *mut event_base {
    guard(null_mut(), || new_base(Some(&Cfg::default())))
}

/// `event_base_new_with_config`; NULL when the configuration rules out our backend.
///
/// # Safety
/// `cfg` is NULL or from `event_config_new`.
#[no_mangle]
pub unsafe extern "C" fn event_base_new_with_config(cfg: *const event_config) -> *mut event_base {
    // SAFETY: the caller's promise.
    guard(null_mut(), || new_base(unsafe { cfg.cast::<Cfg>().as_ref() }))
}

fn free_base(base: *mut event_base, run_finalizers: bool) {
    let base = if base.is_null() { current_base() } else { base };
    // SAFETY: a live handle from event_base_new* (the caller's promise), or the current base.
    let Some(b) = (unsafe { base_ref(base) }) else {
        warnx("event_base_free_: no base to free");
        return;
    };
    b.shutdown(run_finalizers);
    let _ = event_global_current_base_.compare_exchange(base, null_mut(), Ordering::AcqRel, Ordering::Acquire);
    // SAFETY: the handle was made by mm_box::<Base> and the caller gives it up.
    unsafe { mm_unbox(base.cast::<Base>()) };
}

/// `event_base_free`: deletes the events still pending (running pending finalizers) and frees the base. NULL
/// frees the current base.
///
/// # Safety
/// `base` is NULL or a live base, not running, not used afterwards; events still added must be valid memory.
#[no_mangle]
pub unsafe extern "C" fn event_base_free(base: *mut event_base) {
    guard((), || free_base(base, true))
}

/// `event_base_free_nofinalize`: as `event_base_free` without running finalizers.
///
/// # Safety
/// As `event_base_free`.
#[no_mangle]
pub unsafe extern "C" fn event_base_free_nofinalize(base: *mut event_base) {
    guard((), || free_base(base, false))
}

/// `event_reinit`: call in the child after fork.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_reinit(base: *mut event_base) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { base_ref(base) }) else { return -1 };
        match b.reinit() {
            Ok(()) => 0,
            Err(e) => {
                warnx(&format!("event_reinit: {e}"));
                -1
            }
        }
    })
}

/// `event_base_get_method`: "libix" (see `method_name`).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_method(base: *const event_base) -> *const c_char {
    // SAFETY: the caller's promise.
    guard(null(), || if unsafe { base_ref(base) }.is_some() { method_name().as_ptr() } else { null() })
}

/// `event_base_get_features`: EV_FEATURE_ET | EV_FEATURE_O1 | EV_FEATURE_EARLY_CLOSE.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_features(base: *const event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { base_ref(base) }.map_or(0, Base::features))
}

struct Methods([*const c_char; 2]);
// SAFETY: pointers to immutable C strings that live for the whole process.
unsafe impl Sync for Methods {}
// SAFETY: as for Sync.
unsafe impl Send for Methods {}

/// `event_get_supported_methods`: {"libix", NULL}.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_get_supported_methods() -> *const *const c_char {
    static METHODS: std::sync::OnceLock<Methods> = std::sync::OnceLock::new();
    guard(null(), || METHODS.get_or_init(|| Methods([method_name().as_ptr(), null()])).0.as_ptr())
}

/// `event_get_version`.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_get_version() -> *const c_char {
    VERSION.as_ptr()
}

/// `event_get_version_number`.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_get_version_number() -> u32 {
    VERSION_NUMBER
}

/// `event_base_dispatch`: runs the loop until no events remain or it is told to stop.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_dispatch(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { event_base_loop(base, 0) }
}

/// `event_base_loop`: 0 when stopped or done (EVLOOP_ONCE/NONBLOCK), 1 when no events remain, -1 on error.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_loop(base: *mut event_base, flags: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { base_ref(base) }) else { return -1 };
        match b.run(flags) {
            Ok(r) => r,
            Err(Error::Backend(e)) => {
                warnx(&format!("epoll_wait: {e}"));
                -1
            }
            Err(e) => {
                warnx(&format!("event_base_loop: {e}"));
                -1
            }
        }
    })
}

/// `event_base_loopexit`: stop after the iteration in which `tv` (NULL: now) has passed.
///
/// # Safety
/// `base` is NULL or a live base; `tv` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn event_base_loopexit(base: *mut event_base, tv: *const libc::timeval) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { base_ref(base) }) else { return -1 };
        // SAFETY: the caller's promise.
        let t = unsafe { timeout_arg(b, tv) };
        if b.loopexit(t).is_ok() {
            0
        } else {
            -1
        }
    })
}

/// `event_base_loopbreak`: stop after the running callback.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_loopbreak(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { base_ref(base) }.map_or(-1, |b| if b.loopbreak().is_ok() { 0 } else { -1 }))
}

/// `event_base_loopcontinue`: after the running callback, poll for new events before running more.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_loopcontinue(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { base_ref(base) }.map_or(-1, |b| if b.loopcontinue().is_ok() { 0 } else { -1 }))
}

/// `event_base_got_break`.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_got_break(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { base_ref(base) }.map_or(0, |b| b.got_break() as c_int))
}

/// `event_base_got_exit`.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_got_exit(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { base_ref(base) }.map_or(0, |b| b.got_exit() as c_int))
}

/// `event_base_priority_init`: `n` priorities (1..=255); fails while callbacks are active.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_priority_init(base: *mut event_base, npriorities: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { base_ref(base) }.map_or(-1, |b| if b.priority_init(npriorities).is_ok() { 0 } else { -1 }))
}

/// `event_base_get_npriorities` (NULL: the current base).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_npriorities(base: *mut event_base) -> c_int {
    let base = if base.is_null() { current_base() } else { base };
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { base_ref(base) }.map_or(-1, |b| b.npriorities() as c_int))
}

/// `event_base_gettimeofday_cached`: the loop's cached time (wall clock), or gettimeofday.
///
/// # Safety
/// `base` is NULL or a live base; `tv` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn event_base_gettimeofday_cached(base: *mut event_base, tv: *mut libc::timeval) -> c_int {
    guard(-1, || {
        let base = if base.is_null() { current_base() } else { base };
        // SAFETY: the caller's promise.
        let t = match unsafe { base_ref(base) } {
            Some(b) => b.gettimeofday_cached(),
            None => crate::event::time::SystemClock::new(true).wall_timeval(),
        };
        write_tv(tv, t);
        0
    })
}

/// `event_base_update_cache_time`: refresh the cached time (inside a running loop).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_update_cache_time(base: *mut event_base) -> c_int {
    let base = if base.is_null() { current_base() } else { base };
    // SAFETY: the caller's promise.
    guard(-1, || match unsafe { base_ref(base) } {
        Some(b) => {
            b.update_cache_time();
            0
        }
        None => -1,
    })
}

/// `event_gettime_monotonic`: the base's monotonic clock, now.
///
/// # Safety
/// `base` is NULL or a live base; `tv` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn event_gettime_monotonic(base: *mut event_base, tv: *mut libc::timeval) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        match (unsafe { base_ref(base) }, tv.is_null()) {
            (Some(b), false) => {
                write_tv(tv, b.gettime_monotonic());
                0
            }
            _ => -1,
        }
    })
}

/// `event_base_init_common_timeout`: a timeval standing for `duration` in this base (libevent's encoding);
/// `event_add` with it is a plain timeout of that duration.
///
/// # Safety
/// `base` is NULL or a live base; `duration` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn event_base_init_common_timeout(
    base: *mut event_base,
    duration: *const libc::timeval,
) -> *const libc::timeval {
    guard(null(), || {
        // SAFETY: the caller's promise.
        let (Some(b), Some(d)) = (unsafe { base_ref(base) }, unsafe { duration.as_ref() }) else { return null() };
        // Timeval and libc::timeval have the same layout (two longs).
        b.init_common_timeout(Timeval { tv_sec: d.tv_sec, tv_usec: d.tv_usec }).cast()
    })
}

/// `event_base_get_num_events`: EVENT_BASE_COUNT_ACTIVE / _VIRTUAL / _ADDED, summed.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_num_events(base: *mut event_base, which: c_uint) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { base_ref(base) }.map_or(0, |b| b.num_events(which)))
}

/// `event_base_get_max_events`: high-water marks of the same counts, optionally reset.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_max_events(base: *mut event_base, which: c_uint, clear: c_int) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { base_ref(base) }.map_or(0, |b| b.max_events(which, clear != 0)))
}

/// `event_base_get_running_event`: the event whose callback runs, asked from the loop's thread.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_get_running_event(base: *mut event_base) -> *mut event {
    // SAFETY: the caller's promise.
    guard(null_mut(), || unsafe { base_ref(base) }.and_then(Base::running_event).map_or(null_mut(), EvPtr::as_ptr))
}

/// `event_base_foreach_event`: `fn(base, ev, arg)` for every added or active event until it returns non-zero
/// (which is returned). `fn` must not add or delete events.
///
/// # Safety
/// `base` is NULL or a live base; `fn_` NULL or a valid callback.
#[no_mangle]
pub unsafe extern "C" fn event_base_foreach_event(
    base: *mut event_base,
    fn_: Option<ForeachCb>,
    arg: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(b), Some(f)) = (unsafe { base_ref(base) }, fn_) else { return -1 };
        for ev in b.snapshot() {
            // SAFETY: the application's callback, with events the base holds.
            let r = unsafe { f(base, ev.as_ptr(), arg) };
            if r != 0 {
                return r;
            }
        }
        0
    })
}

/// `event_base_dump_events`: the added and active events, libevent's format.
///
/// # Safety
/// `base` is NULL or a live base; `output` a valid `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn event_base_dump_events(base: *mut event_base, output: *mut libc::FILE) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { base_ref(base) }) else { return };
        if output.is_null() {
            return;
        }
        let text = CString::new(b.dump()).unwrap_or_default();
        // SAFETY: valid FILE* (the caller's promise) and C string.
        unsafe { libc::fputs(text.as_ptr(), output) };
    })
}

/// `event_base_active_by_fd`: activates the events on `fd` waiting on `events` (EV_TIMEOUT: the timeouts of
/// events with that fd).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_active_by_fd(base: *mut event_base, fd: c_int, events: c_short) {
    // SAFETY: the caller's promise.
    guard((), || unsafe { base_ref(base) }.map_or((), |b| b.active_by_fd(fd, events)))
}

/// `event_base_active_by_signal`: activates the events on signal `sig` once.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_active_by_signal(base: *mut event_base, sig: c_int) {
    // SAFETY: the caller's promise.
    guard((), || unsafe { base_ref(base) }.map_or((), |b| b.active_by_signal(sig)))
}

/// `event_base_once`: `callback(fd, what, arg)` once, on I/O (EV_READ/EV_WRITE/EV_CLOSED) or a timeout.
///
/// # Safety
/// `base` is NULL or a live base; `tv` NULL or valid; `callback` valid for the base's lifetime.
#[no_mangle]
pub unsafe extern "C" fn event_base_once(
    base: *mut event_base,
    fd: c_int,
    events: c_short,
    callback: Option<EventCb>,
    arg: *mut c_void,
    tv: *const libc::timeval,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { base_ref(base) }) else { return -1 };
        // SAFETY: the caller's promise.
        let t = unsafe { timeout_arg(b, tv) };
        match b.once(fd, events, callback, arg, t) {
            Ok(()) => 0,
            Err(e) => {
                report("event_base_once", fd, &e);
                -1
            }
        }
    })
}

/// `event_base_assert_ok_`: aborts when the base's internal structures are inconsistent (libevent's test hook).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_assert_ok_(base: *mut event_base) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some(b) = unsafe { base_ref(base) } {
            if let Err(msg) = b.check() {
                errx(EVENT_ERR_ABORT, &format!("event_base_assert_ok_: {msg}"));
            }
        }
    })
}

/// `event_base_add_virtual_`: keeps the loop alive without an event (libevent's internal hook).
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_add_virtual_(base: *mut event_base) {
    // SAFETY: the caller's promise.
    guard((), || unsafe { base_ref(base) }.map_or((), Base::add_virtual))
}

/// `event_base_del_virtual_`.
///
/// # Safety
/// `base` is NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_base_del_virtual_(base: *mut event_base) {
    // SAFETY: the caller's promise.
    guard((), || unsafe { base_ref(base) }.map_or((), Base::del_virtual))
}

// ---------------------------------------------------------------------------------------------------------------
// struct event
// ---------------------------------------------------------------------------------------------------------------

fn assign(ev: EvPtr, base: Option<&Base>, fd: c_int, events: c_short, cb: Option<EventCb>, arg: *mut c_void) -> c_int {
    let arg = if arg == self_cbarg() { ev.as_ptr().cast() } else { arg };
    debug_assert_not_added(ev, "event_assign");
    match Base::assign(base, ev, fd, events, cb, arg) {
        Ok(()) => {
            debug_note_setup(ev);
            0
        }
        Err(e) => {
            report("event_assign", fd, &e);
            -1
        }
    }
}

/// `event_assign`: prepares an application-allocated event (NULL base: the current base).
///
/// # Safety
/// `ev` is NULL or 128 writable bytes, not currently added; `base` NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_assign(
    ev: *mut event,
    base: *mut event_base,
    fd: c_int,
    events: c_short,
    callback: Option<EventCb>,
    arg: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some(e) = (unsafe { EvPtr::new(ev) }) else { return -1 };
        let base = if base.is_null() { current_base() } else { base };
        // SAFETY: the caller's promise.
        assign(e, unsafe { base_ref(base) }, fd, events, callback, arg)
    })
}

/// `event_new`: an event in memory from the configured allocator, freed with `event_free`.
///
/// # Safety
/// `base` NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn event_new(
    base: *mut event_base,
    fd: c_int,
    events: c_short,
    callback: Option<EventCb>,
    arg: *mut c_void,
) -> *mut event {
    guard(null_mut(), || {
        let p = mm_malloc(size_of::<RawEvent>()).cast::<RawEvent>();
        // SAFETY: fresh allocation of 128 bytes (malloc alignment suffices).
        let Some(e) = (unsafe { EvPtr::new(p) }) else { return null_mut() };
        // SAFETY: initialize the whole struct before use.
        unsafe { p.write(RawEvent::zeroed()) };
        let base = if base.is_null() { current_base() } else { base };
        // SAFETY: the caller's promise.
        if assign(e, unsafe { base_ref(base) }, fd, events, callback, arg) < 0 {
            mm_free(p.cast());
            return null_mut();
        }
        p
    })
}

/// `event_free`: deletes and frees an event from `event_new`.
///
/// # Safety
/// `ev` is NULL or from `event_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn event_free(ev: *mut event) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return };
        if let Some(b) = b {
            let _ = b.del(e, DelMode::AutoBlock);
        }
        free_event_mem(e);
    })
}

/// `event_debug_unassign`: marks an idle event as no longer set up (needed only in debug mode).
///
/// # Safety
/// `ev` is NULL or a valid event, not added.
#[no_mangle]
pub unsafe extern "C" fn event_debug_unassign(ev: *mut event) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some(e) = (unsafe { EvPtr::new(ev) }) else { return };
        debug_assert_not_added(e, "event_debug_unassign");
        debug_note_teardown(e);
        e.set_flags(e.flags() & !raw::EVLIST_INIT);
    })
}

/// `event_add`: makes the event pending; `tv` a relative timeout (NULL: none), replacing any earlier one.
///
/// # Safety
/// `ev` is NULL or an assigned event the application keeps valid while pending; `tv` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn event_add(ev: *mut event, tv: *const libc::timeval) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return -1 };
        let Some(b) = b else {
            warnx("event_add: event has no event_base set.");
            return -1;
        };
        debug_assert_setup(e, "event_add");
        // SAFETY: the caller's promise.
        let t = unsafe { timeout_arg(b, tv) };
        match b.add(e, t) {
            Ok(()) => 0,
            Err(err) => {
                report("event_add", e.fd(), &err);
                -1
            }
        }
    })
}

fn del_with(ev: *mut event, mode: DelMode, name: &str) -> c_int {
    // SAFETY: the exported callers' promise (a valid event).
    let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return -1 };
    let Some(b) = b else {
        warnx("event_del_: event has no event_base set.");
        return -1;
    };
    debug_assert_setup(e, name);
    match b.del(e, mode) {
        Ok(()) => 0,
        Err(err) => {
            report(name, e.fd(), &err);
            -1
        }
    }
}

/// `event_del`: makes the event non-pending and non-active. From another thread, waits for its running
/// callback (unless EV_FINALIZE).
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_del(ev: *mut event) -> c_int {
    guard(-1, || del_with(ev, DelMode::AutoBlock, "event_del"))
}

/// `event_del_block`: as `event_del`, always waiting for a callback running in another thread.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_del_block(ev: *mut event) -> c_int {
    guard(-1, || del_with(ev, DelMode::Block, "event_del_block"))
}

/// `event_del_noblock`: as `event_del`, never waiting.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_del_noblock(ev: *mut event) -> c_int {
    guard(-1, || del_with(ev, DelMode::NoBlock, "event_del_noblock"))
}

/// `event_remove_timer`: drops the event's timeout, keeping its I/O or signal pending.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_remove_timer(ev: *mut event) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return -1 };
        let Some(b) = b else {
            warnx("event_remove_timer: event has no event_base set.");
            return -1;
        };
        debug_assert_setup(e, "event_remove_timer");
        b.remove_timer(e);
        0
    })
}

/// `event_active`: runs the callback with `res` on the next loop pass (`ncalls`: times, for signal events).
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_active(ev: *mut event, res: c_int, ncalls: c_short) {
    guard((), || {
        // SAFETY: the caller's promise.
        let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return };
        let Some(b) = b else {
            warnx("event_active: event has no event_base set.");
            return;
        };
        debug_assert_setup(e, "event_active");
        b.active(e, res as i16, ncalls);
    })
}

/// `event_active_later_`: activates on the next loop iteration (libevent's internal hook).
///
/// # Safety
/// `ev` is NULL or an assigned event with a base.
#[no_mangle]
pub unsafe extern "C" fn event_active_later_(ev: *mut event, res: c_int) {
    guard((), || {
        // SAFETY: the caller's promise.
        if let Some((e, Some(b))) = unsafe { event_and_base(ev) } {
            b.active_later(e, res as i16);
        }
    })
}

/// `event_pending`: which of `what` the event is pending or active on; with EV_TIMEOUT, the deadline (wall
/// clock) in `tv`.
///
/// # Safety
/// `ev` is NULL or an assigned event; `tv` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn event_pending(ev: *const event, what: c_short, tv: *mut libc::timeval) -> c_int {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return 0 };
        let Some(b) = b else {
            warnx("event_pending: event has no event_base set.");
            return 0;
        };
        debug_assert_setup(e, "event_pending");
        let (r, t) = b.pending(e, what);
        if let Some(t) = t {
            write_tv(tv, t);
        }
        r as c_int
    })
}

/// `event_initialized`: 1 if assigned.
///
/// # Safety
/// `ev` is NULL or 128 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn event_initialized(ev: *const event) -> c_int {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { EvPtr::new(ev.cast_mut()) }.map_or(0, |e| (e.flags() & raw::EVLIST_INIT != 0) as c_int))
}

/// `event_priority_set`: fails while the event is active or for a priority the base lacks.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_priority_set(ev: *mut event, pri: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let Some((e, Some(b))) = (unsafe { event_and_base(ev) }) else { return -1 };
        debug_assert_setup(e, "event_priority_set");
        if b.priority_set(e, pri).is_ok() {
            0
        } else {
            -1
        }
    })
}

/// Reads one field of an assigned event.
fn getter<T>(ev: *const event, name: &str, f: impl FnOnce(EvPtr) -> T, none: T) -> T {
    // SAFETY: the exported callers' promise (NULL or a valid event).
    match unsafe { EvPtr::new(ev.cast_mut()) } {
        Some(e) => {
            debug_assert_setup(e, name);
            f(e)
        }
        None => none,
    }
}

/// `event_get_fd`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_fd(ev: *const event) -> c_int {
    guard(-1, || getter(ev, "event_get_fd", EvPtr::fd, -1))
}

/// `event_get_base`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_base(ev: *const event) -> *mut event_base {
    guard(null_mut(), || getter(ev, "event_get_base", |e| e.base().cast(), null_mut()))
}

/// `event_get_events`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_events(ev: *const event) -> c_short {
    guard(0, || getter(ev, "event_get_events", EvPtr::events, 0))
}

/// `event_get_callback`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_callback(ev: *const event) -> Option<EventCb> {
    guard(None, || getter(ev, "event_get_callback", EvPtr::callback, None))
}

/// `event_get_callback_arg`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_callback_arg(ev: *const event) -> *mut c_void {
    guard(null_mut(), || getter(ev, "event_get_callback_arg", EvPtr::arg, null_mut()))
}

/// `event_get_priority`.
///
/// # Safety
/// `ev` is NULL or an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_get_priority(ev: *const event) -> c_int {
    guard(-1, || getter(ev, "event_get_priority", |e| e.pri() as c_int, -1))
}

/// `event_get_assignment`: each non-NULL out-parameter receives the corresponding field.
///
/// # Safety
/// `ev` an assigned event; out-parameters NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn event_get_assignment(
    ev: *const event,
    base_out: *mut *mut event_base,
    fd_out: *mut c_int,
    events_out: *mut c_short,
    callback_out: *mut Option<EventCb>,
    arg_out: *mut *mut c_void,
) {
    guard((), || {
        getter(
            ev,
            "event_get_assignment",
            |e| {
                // SAFETY: each out-pointer is NULL or valid for writes (the caller's promise).
                unsafe {
                    if !base_out.is_null() {
                        base_out.write(e.base().cast());
                    }
                    if !fd_out.is_null() {
                        fd_out.write(e.fd());
                    }
                    if !events_out.is_null() {
                        events_out.write(e.events());
                    }
                    if !callback_out.is_null() {
                        callback_out.write(e.callback());
                    }
                    if !arg_out.is_null() {
                        arg_out.write(e.arg());
                    }
                }
            },
            (),
        )
    })
}

/// `event_get_struct_event_size`: 128.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_get_struct_event_size() -> usize {
    size_of::<RawEvent>()
}

/// `event_self_cbarg`: as the callback argument of `event_new`/`event_assign`, stands for the event itself.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_self_cbarg() -> *mut c_void {
    self_cbarg()
}

fn finalize(flags: c_uint, ev: *mut event, cb: Option<FinalizeCb>, free: bool) -> c_int {
    // SAFETY: the exported callers' promise.
    let Some((e, b)) = (unsafe { event_and_base(ev) }) else { return -1 };
    let Some(b) = b else {
        warnx("event_finalize_impl_: event has no event_base set.");
        return -1;
    };
    b.finalize(e, cb, free || flags & EVENT_FINALIZE_FREE_ != 0);
    0
}

/// `event_finalize`: deletes the event and runs `cb(ev, arg)` from the loop once no callback of it can run.
///
/// # Safety
/// `ev` an assigned event with a base, valid until `cb` runs.
#[no_mangle]
pub unsafe extern "C" fn event_finalize(flags: c_uint, ev: *mut event, cb: Option<FinalizeCb>) -> c_int {
    guard(-1, || finalize(flags, ev, cb, false))
}

/// `event_free_finalize`: as `event_finalize`, then frees the event (from `event_new`).
///
/// # Safety
/// As `event_finalize`; `ev` from `event_new`.
#[no_mangle]
pub unsafe extern "C" fn event_free_finalize(flags: c_uint, ev: *mut event, cb: Option<FinalizeCb>) -> c_int {
    guard(-1, || finalize(flags, ev, cb, true))
}

// ---------------------------------------------------------------------------------------------------------------
// Allocator, logging, debug
// ---------------------------------------------------------------------------------------------------------------

/// `event_set_mem_functions`: the allocator for everything libix allocates for the application. Call before
/// anything else.
///
/// # Safety
/// The functions must behave like malloc/realloc/free (or be NULL for the defaults).
#[no_mangle]
pub unsafe extern "C" fn event_set_mem_functions(
    malloc_fn: Option<unsafe extern "C" fn(usize) -> *mut c_void>,
    realloc_fn: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    free_fn: Option<unsafe extern "C" fn(*mut c_void)>,
) {
    MM_MALLOC.store(malloc_fn.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
    MM_REALLOC.store(realloc_fn.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
    MM_FREE.store(free_fn.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
}

/// `event_set_log_callback` (NULL: stderr).
///
/// # Safety
/// `cb` NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn event_set_log_callback(cb: Option<LogCb>) {
    LOG_CB.store(cb.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
}

/// `event_set_fatal_callback`: called (then exit) on fatal errors instead of exit/abort.
///
/// # Safety
/// `cb` NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn event_set_fatal_callback(cb: Option<FatalCb>) {
    FATAL_CB.store(cb.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
}

/// `event_enable_debug_logging`: EVENT_DBG_ALL or EVENT_DBG_NONE.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_enable_debug_logging(which: u32) {
    event_debug_logging_mask_.store(which, Ordering::Relaxed);
}

/// `event_enable_debug_mode`: checks misuse of events (use before assign, re-assign while added); must come
/// before any base or event is created, once.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_enable_debug_mode() {
    guard((), || {
        if DEBUG_ON.load(Ordering::Relaxed) {
            errx(1, "event_enable_debug_mode was called twice!");
        }
        if DEBUG_TOO_LATE.load(Ordering::Relaxed) {
            errx(1, "event_enable_debug_mode must be called *before* creating any events or event_bases");
        }
        *debug_map() = Some(HashSet::new());
        DEBUG_ON.store(true, Ordering::Relaxed);
    })
}

/// `event_disable_debug_mode` (libevent's internal counterpart).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_disable_debug_mode() {
    guard((), || {
        *debug_map() = None;
        DEBUG_ON.store(false, Ordering::Relaxed);
    })
}

/// `libevent_global_shutdown`: releases process-wide state.
///
/// # Safety
/// No libix object may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn libevent_global_shutdown() {
    // SAFETY: no preconditions.
    unsafe { event_disable_debug_mode() };
}

// ---------------------------------------------------------------------------------------------------------------
// The 1.4 compatibility API (event_compat.h): the current base
// ---------------------------------------------------------------------------------------------------------------

/// `event_init`: a new base that becomes the current base (fatal on failure, as libevent).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_init() -> *mut event_base {
    guard(null_mut(), || {
        let b = new_base(None);
        if b.is_null() {
            errx(1, "event_init: Unable to construct event_base");
        }
        event_global_current_base_.store(b, Ordering::Release);
        b
    })
}

/// `event_set`: `event_assign` on the current base.
///
/// # Safety
/// As `event_assign`.
#[no_mangle]
pub unsafe extern "C" fn event_set(
    ev: *mut event,
    fd: c_int,
    events: c_short,
    callback: Option<EventCb>,
    arg: *mut c_void,
) {
    // SAFETY: the caller's promise.
    unsafe { event_assign(ev, current_base(), fd, events, callback, arg) };
}

/// `event_base_set`: moves an assigned, idle event to `base`.
///
/// # Safety
/// `base` a live base; `ev` an assigned event.
#[no_mangle]
pub unsafe extern "C" fn event_base_set(base: *mut event_base, ev: *mut event) -> c_int {
    guard(-1, || {
        // SAFETY: the caller's promise.
        let (Some(b), Some(e)) = (unsafe { base_ref(base) }, unsafe { EvPtr::new(ev) }) else { return -1 };
        debug_assert_setup(e, "event_base_set");
        if b.set_base_of(e).is_ok() {
            0
        } else {
            -1
        }
    })
}

/// `event_dispatch`: `event_base_dispatch` on the current base.
///
/// # Safety
/// None beyond the current base being live.
#[no_mangle]
pub unsafe extern "C" fn event_dispatch() -> c_int {
    // SAFETY: the current base is live or NULL.
    unsafe { event_base_loop(current_base(), 0) }
}

/// `event_loop`: `event_base_loop` on the current base.
///
/// # Safety
/// None beyond the current base being live.
#[no_mangle]
pub unsafe extern "C" fn event_loop(flags: c_int) -> c_int {
    // SAFETY: the current base is live or NULL.
    unsafe { event_base_loop(current_base(), flags) }
}

/// `event_loopexit` on the current base.
///
/// # Safety
/// `tv` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn event_loopexit(tv: *const libc::timeval) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { event_base_loopexit(current_base(), tv) }
}

/// `event_loopbreak` on the current base.
///
/// # Safety
/// None beyond the current base being live.
#[no_mangle]
pub unsafe extern "C" fn event_loopbreak() -> c_int {
    // SAFETY: the current base is live or NULL.
    unsafe { event_base_loopbreak(current_base()) }
}

/// `event_once` on the current base.
///
/// # Safety
/// As `event_base_once`.
#[no_mangle]
pub unsafe extern "C" fn event_once(
    fd: c_int,
    events: c_short,
    callback: Option<EventCb>,
    arg: *mut c_void,
    tv: *const libc::timeval,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { event_base_once(current_base(), fd, events, callback, arg, tv) }
}

/// `event_get_method`: the current base's method.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn event_get_method() -> *const c_char {
    guard(null(), || method_name().as_ptr())
}

/// `event_priority_init` on the current base.
///
/// # Safety
/// None beyond the current base being live.
#[no_mangle]
pub unsafe extern "C" fn event_priority_init(npriorities: c_int) -> c_int {
    // SAFETY: the current base is live or NULL.
    unsafe { event_base_priority_init(current_base(), npriorities) }
}

// ---------------------------------------------------------------------------------------------------------------
// Threads (thread.h)
// ---------------------------------------------------------------------------------------------------------------

/// `struct evthread_lock_callbacks`, as exported data.
#[repr(C)]
#[derive(Debug)]
pub struct LockCallbacks {
    lock_api_version: AtomicI32,
    supported_locktypes: AtomicU32,
    alloc: AtomicPtr<c_void>,
    free: AtomicPtr<c_void>,
    lock: AtomicPtr<c_void>,
    unlock: AtomicPtr<c_void>,
}

/// `struct evthread_condition_callbacks`, as exported data.
#[repr(C)]
#[derive(Debug)]
pub struct CondCallbacks {
    condition_api_version: AtomicI32,
    alloc_condition: AtomicPtr<c_void>,
    free_condition: AtomicPtr<c_void>,
    signal_condition: AtomicPtr<c_void>,
    wait_condition: AtomicPtr<c_void>,
}

const _: () = assert!(size_of::<LockCallbacks>() == 40 && size_of::<CondCallbacks>() == 40);

/// The lock callbacks in use (libevent exports this; its internal macros read it).
#[no_mangle]
pub static evthread_lock_fns_: LockCallbacks = LockCallbacks {
    lock_api_version: AtomicI32::new(0),
    supported_locktypes: AtomicU32::new(0),
    alloc: AtomicPtr::new(null_mut()),
    free: AtomicPtr::new(null_mut()),
    lock: AtomicPtr::new(null_mut()),
    unlock: AtomicPtr::new(null_mut()),
};

/// The condition callbacks in use.
#[no_mangle]
pub static evthread_cond_fns_: CondCallbacks = CondCallbacks {
    condition_api_version: AtomicI32::new(0),
    alloc_condition: AtomicPtr::new(null_mut()),
    free_condition: AtomicPtr::new(null_mut()),
    signal_condition: AtomicPtr::new(null_mut()),
    wait_condition: AtomicPtr::new(null_mut()),
};

static ID_FN: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

/// Whether lock callbacks are set: bases created from now on are thread-safe and notifiable.
fn locking_enabled() -> bool {
    !evthread_lock_fns_.lock.load(Ordering::Acquire).is_null()
}

/// The C layout of `struct evthread_lock_callbacks` (for reading the application's argument).
#[repr(C)]
struct LockCallbacksC {
    lock_api_version: c_int,
    supported_locktypes: c_uint,
    alloc: *mut c_void,
    free: *mut c_void,
    lock: *mut c_void,
    unlock: *mut c_void,
}

/// The C layout of `struct evthread_condition_callbacks`.
#[repr(C)]
struct CondCallbacksC {
    condition_api_version: c_int,
    alloc_condition: *mut c_void,
    free_condition: *mut c_void,
    signal_condition: *mut c_void,
    wait_condition: *mut c_void,
}

/// `evthread_set_lock_callbacks`: NULL disables; set once (the same set again is accepted).
///
/// # Safety
/// `cbs` NULL or a valid struct whose functions behave as thread.h describes.
#[no_mangle]
pub unsafe extern "C" fn evthread_set_lock_callbacks(cbs: *const c_void) -> c_int {
    guard(-1, || {
        let t = &evthread_lock_fns_;
        // SAFETY: NULL or valid (the caller's promise).
        let Some(c) = (unsafe { cbs.cast::<LockCallbacksC>().as_ref() }) else {
            if !t.alloc.load(Ordering::Acquire).is_null() {
                warnx("Trying to disable lock functions after they have been set up will probaby not work.");
            }
            t.lock_api_version.store(0, Ordering::Release);
            t.supported_locktypes.store(0, Ordering::Release);
            for p in [&t.alloc, &t.free, &t.lock, &t.unlock] {
                p.store(null_mut(), Ordering::Release);
            }
            return 0;
        };
        if !t.alloc.load(Ordering::Acquire).is_null() {
            let same = t.lock_api_version.load(Ordering::Acquire) == c.lock_api_version
                && t.supported_locktypes.load(Ordering::Acquire) == c.supported_locktypes
                && t.alloc.load(Ordering::Acquire) == c.alloc
                && t.free.load(Ordering::Acquire) == c.free
                && t.lock.load(Ordering::Acquire) == c.lock
                && t.unlock.load(Ordering::Acquire) == c.unlock;
            if same {
                return 0;
            }
            warnx("Can't change lock callbacks once they have been initialized.");
            return -1;
        }
        if c.alloc.is_null() || c.free.is_null() || c.lock.is_null() || c.unlock.is_null() {
            return -1;
        }
        t.lock_api_version.store(c.lock_api_version, Ordering::Release);
        t.supported_locktypes.store(c.supported_locktypes, Ordering::Release);
        t.alloc.store(c.alloc, Ordering::Release);
        t.free.store(c.free, Ordering::Release);
        t.unlock.store(c.unlock, Ordering::Release);
        t.lock.store(c.lock, Ordering::Release);
        0
    })
}

/// `evthread_set_condition_callbacks`: NULL disables; set once.
///
/// # Safety
/// `cbs` NULL or a valid struct.
#[no_mangle]
pub unsafe extern "C" fn evthread_set_condition_callbacks(cbs: *const c_void) -> c_int {
    guard(-1, || {
        let t = &evthread_cond_fns_;
        // SAFETY: NULL or valid (the caller's promise).
        let Some(c) = (unsafe { cbs.cast::<CondCallbacksC>().as_ref() }) else {
            if !t.alloc_condition.load(Ordering::Acquire).is_null() {
                warnx("Trying to disable condition functions after they have been set up will probaby not work.");
            }
            t.condition_api_version.store(0, Ordering::Release);
            for p in [&t.alloc_condition, &t.free_condition, &t.signal_condition, &t.wait_condition] {
                p.store(null_mut(), Ordering::Release);
            }
            return 0;
        };
        if !t.alloc_condition.load(Ordering::Acquire).is_null() {
            let same = t.condition_api_version.load(Ordering::Acquire) == c.condition_api_version
                && t.alloc_condition.load(Ordering::Acquire) == c.alloc_condition
                && t.free_condition.load(Ordering::Acquire) == c.free_condition
                && t.signal_condition.load(Ordering::Acquire) == c.signal_condition
                && t.wait_condition.load(Ordering::Acquire) == c.wait_condition;
            if same {
                return 0;
            }
            warnx("Can't change condition callbacks once they have been initialized.");
            return -1;
        }
        if c.alloc_condition.is_null()
            || c.free_condition.is_null()
            || c.signal_condition.is_null()
            || c.wait_condition.is_null()
        {
            return -1;
        }
        t.condition_api_version.store(c.condition_api_version, Ordering::Release);
        t.alloc_condition.store(c.alloc_condition, Ordering::Release);
        t.free_condition.store(c.free_condition, Ordering::Release);
        t.signal_condition.store(c.signal_condition, Ordering::Release);
        t.wait_condition.store(c.wait_condition, Ordering::Release);
        0
    })
}

/// `evthread_set_id_callback` (recorded; libix identifies threads with pthread_self).
///
/// # Safety
/// `id_fn` NULL or a valid function.
#[no_mangle]
pub unsafe extern "C" fn evthread_set_id_callback(id_fn: Option<unsafe extern "C" fn() -> c_ulong>) {
    ID_FN.store(id_fn.map_or(null_mut(), |f| f as *mut c_void), Ordering::Release);
}

const EVTHREAD_TRY: c_uint = 0x10;
const EVTHREAD_LOCKTYPE_RECURSIVE: c_uint = 1;

unsafe extern "C" fn posix_lock_alloc(locktype: c_uint) -> *mut c_void {
    let m = mm_malloc(size_of::<libc::pthread_mutex_t>()).cast::<libc::pthread_mutex_t>();
    if m.is_null() {
        return null_mut();
    }
    // SAFETY: zeroed attr is initialized by pthread_mutexattr_init before use; `m` has room for a mutex.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        let mut r = libc::pthread_mutexattr_init(&mut attr);
        if r == 0 && locktype & EVTHREAD_LOCKTYPE_RECURSIVE != 0 {
            r = libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_RECURSIVE);
        }
        if r == 0 {
            r = libc::pthread_mutex_init(m, &attr);
        }
        libc::pthread_mutexattr_destroy(&mut attr);
        if r != 0 {
            mm_free(m.cast());
            return null_mut();
        }
    }
    m.cast()
}

unsafe extern "C" fn posix_lock_free(lock: *mut c_void, _locktype: c_uint) {
    if lock.is_null() {
        return;
    }
    // SAFETY: `lock` came from posix_lock_alloc (libevent's lock contract) and is not held.
    unsafe { libc::pthread_mutex_destroy(lock.cast()) };
    mm_free(lock);
}

unsafe extern "C" fn posix_lock(mode: c_uint, lock: *mut c_void) -> c_int {
    // SAFETY: `lock` came from posix_lock_alloc.
    unsafe {
        if mode & EVTHREAD_TRY != 0 {
            libc::pthread_mutex_trylock(lock.cast())
        } else {
            libc::pthread_mutex_lock(lock.cast())
        }
    }
}

unsafe extern "C" fn posix_unlock(_mode: c_uint, lock: *mut c_void) -> c_int {
    // SAFETY: `lock` came from posix_lock_alloc and is held by this thread.
    unsafe { libc::pthread_mutex_unlock(lock.cast()) }
}

unsafe extern "C" fn posix_cond_alloc(_condtype: c_uint) -> *mut c_void {
    let c = mm_malloc(size_of::<libc::pthread_cond_t>()).cast::<libc::pthread_cond_t>();
    if c.is_null() {
        return null_mut();
    }
    // SAFETY: `c` has room for a condition variable.
    if unsafe { libc::pthread_cond_init(c, ptr::null()) } != 0 {
        mm_free(c.cast());
        return null_mut();
    }
    c.cast()
}

unsafe extern "C" fn posix_cond_free(cond: *mut c_void) {
    if cond.is_null() {
        return;
    }
    // SAFETY: `cond` came from posix_cond_alloc, no waiters.
    unsafe { libc::pthread_cond_destroy(cond.cast()) };
    mm_free(cond);
}

unsafe extern "C" fn posix_cond_signal(cond: *mut c_void, broadcast: c_int) -> c_int {
    // SAFETY: `cond` came from posix_cond_alloc.
    let r = unsafe {
        if broadcast != 0 {
            libc::pthread_cond_broadcast(cond.cast())
        } else {
            libc::pthread_cond_signal(cond.cast())
        }
    };
    if r != 0 {
        -1
    } else {
        0
    }
}

unsafe extern "C" fn posix_cond_wait(cond: *mut c_void, lock: *mut c_void, tv: *const libc::timeval) -> c_int {
    // SAFETY: `tv` NULL or valid (libevent's contract).
    match unsafe { tv.as_ref() } {
        Some(tv) => {
            let now = crate::event::time::SystemClock::new(true).wall_timeval();
            let abs =
                Usec::from_timeval(now).plus(Usec::from_timeval(Timeval { tv_sec: tv.tv_sec, tv_usec: tv.tv_usec }));
            let t = abs.to_timeval();
            let ts = libc::timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_usec * 1000 };
            // SAFETY: `cond`/`lock` from the posix allocators, `lock` held by this thread.
            let r = unsafe { libc::pthread_cond_timedwait(cond.cast(), lock.cast(), &ts) };
            match r {
                0 => 0,
                libc::ETIMEDOUT => 1,
                _ => -1,
            }
        }
        // SAFETY: as above.
        None => match unsafe { libc::pthread_cond_wait(cond.cast(), lock.cast()) } {
            0 => 0,
            _ => -1,
        },
    }
}

unsafe extern "C" fn posix_get_id() -> c_ulong {
    crate::event::sys::thread_id() as c_ulong
}

/// `evthread_use_pthreads`: pthread locks and conditions; bases created afterwards are safe to use from several
/// threads (adds, deletes and activations from other threads wake the loop).
///
/// # Safety
/// Call before creating bases.
#[no_mangle]
pub unsafe extern "C" fn evthread_use_pthreads() -> c_int {
    let lock = LockCallbacksC {
        lock_api_version: 1,
        supported_locktypes: EVTHREAD_LOCKTYPE_RECURSIVE,
        alloc: posix_lock_alloc as *mut c_void,
        free: posix_lock_free as *mut c_void,
        lock: posix_lock as *mut c_void,
        unlock: posix_unlock as *mut c_void,
    };
    let cond = CondCallbacksC {
        condition_api_version: 1,
        alloc_condition: posix_cond_alloc as *mut c_void,
        free_condition: posix_cond_free as *mut c_void,
        signal_condition: posix_cond_signal as *mut c_void,
        wait_condition: posix_cond_wait as *mut c_void,
    };
    // SAFETY: valid structs of the C layouts.
    unsafe {
        evthread_set_lock_callbacks((&lock as *const LockCallbacksC).cast());
        evthread_set_condition_callbacks((&cond as *const CondCallbacksC).cast());
        evthread_set_id_callback(Some(posix_get_id));
    }
    0
}

/// `evthread_enable_lock_debugging`: libix's own locks are checked by Rust, so there is nothing to wrap; but in
/// libevent this call also makes lock allocation succeed when no lock callbacks were set (its debug locks stand
/// alone), which programs see: BEV_OPT_THREADSAFE bufferevents can then be created (libevent's test-ratelim does
/// so). Without callbacks, libix installs its pthread locks for that.
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evthread_enable_lock_debugging() {
    if !evthread_lock_fns_.alloc.load(Ordering::Acquire).is_null() {
        return;
    }
    let lock = LockCallbacksC {
        lock_api_version: 1,
        supported_locktypes: EVTHREAD_LOCKTYPE_RECURSIVE,
        alloc: posix_lock_alloc as *mut c_void,
        free: posix_lock_free as *mut c_void,
        lock: posix_lock as *mut c_void,
        unlock: posix_unlock as *mut c_void,
    };
    // SAFETY: a valid struct of the C layout.
    unsafe { evthread_set_lock_callbacks((&lock as *const LockCallbacksC).cast()) };
}

/// `evthread_enable_lock_debuging` (libevent's misspelled alias).
///
/// # Safety
/// None.
#[no_mangle]
pub unsafe extern "C" fn evthread_enable_lock_debuging() {}

/// `evthread_make_base_notifiable`: another thread's changes wake this base's loop (an eventfd).
///
/// # Safety
/// `base` NULL or a live base.
#[no_mangle]
pub unsafe extern "C" fn evthread_make_base_notifiable(base: *mut event_base) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || unsafe { base_ref(base) }.map_or(-1, |b| if b.make_notifiable().is_ok() { 0 } else { -1 }))
}

const _: () = assert!(size_of::<c_long>() == 8);
const _: () = assert!(eb::MAX_PRIORITIES == 256);
