//! libevent's bufferevent constants (bufferevent.h, bufferevent-internal.h), with the event flags they combine with.
// Names and values are libevent's, each documented in its headers; the groups say which header.
#![allow(missing_docs)]

/// `EV_TIMEOUT`, `EV_READ`, `EV_WRITE`, `EV_PERSIST`, `EV_FINALIZE` (event.h).
pub const EV_TIMEOUT: i16 = 0x01;
pub const EV_READ: i16 = 0x02;
pub const EV_WRITE: i16 = 0x04;
pub const EV_PERSIST: i16 = 0x10;
pub const EV_FINALIZE: i16 = 0x40;

/// What an event callback is told (`BEV_EVENT_*`).
pub const EVENT_READING: i16 = 0x01;
pub const EVENT_WRITING: i16 = 0x02;
pub const EVENT_EOF: i16 = 0x10;
pub const EVENT_ERROR: i16 = 0x20;
pub const EVENT_TIMEOUT: i16 = 0x40;
pub const EVENT_CONNECTED: i16 = 0x80;

/// `enum bufferevent_options`.
pub const OPT_CLOSE_ON_FREE: i32 = 1 << 0;
pub const OPT_THREADSAFE: i32 = 1 << 1;
pub const OPT_DEFER_CALLBACKS: i32 = 1 << 2;
pub const OPT_UNLOCK_CALLBACKS: i32 = 1 << 3;

/// `enum bufferevent_trigger_options` (`BEV_TRIG_DEFER_CALLBACKS` is `BEV_OPT_DEFER_CALLBACKS`).
pub const TRIG_IGNORE_WATERMARKS: i32 = 1 << 16;
pub const TRIG_DEFER_CALLBACKS: i32 = OPT_DEFER_CALLBACKS;
pub const TRIG_ALL: i32 = TRIG_IGNORE_WATERMARKS | TRIG_DEFER_CALLBACKS;

/// `enum bufferevent_flush_mode`.
pub const FLUSH_NORMAL: i32 = 0;
pub const FLUSH_FLUSH: i32 = 1;
pub const FLUSH_FINISHED: i32 = 2;

/// `enum bufferevent_filter_result`.
pub const FILTER_OK: i32 = 0;
pub const FILTER_NEED_MORE: i32 = 1;
pub const FILTER_ERROR: i32 = 2;

/// Why a direction is suspended (`bufferevent_suspend_flags`).
pub const SUSPEND_WM: u16 = 0x01;
pub const SUSPEND_BW: u16 = 0x02;
pub const SUSPEND_BW_GROUP: u16 = 0x04;
pub const SUSPEND_LOOKUP: u16 = 0x08;
pub const SUSPEND_FILT_READ: u16 = 0x10;

/// Default most bytes moved per readiness before rate limits (`MAX_SINGLE_READ_DEFAULT`, `..._WRITE_DEFAULT`).
pub const MAX_SINGLE_READ_DEFAULT: isize = 16384;
pub const MAX_SINGLE_WRITE_DEFAULT: isize = 16384;
