//! libix: IX's dataplane behind libevent 2.1's C ABI.
//!
//! - [`runtime`]: opening the dataplane from configuration (ports, queues), the idle policy around `run_io`,
//!   logging and per-thread error reporting.
//! - [`event`]: the libevent 2.1 event core (`event_base` loops); [`listener`]: evconnlistener on it.
//! - `capi` (directory `capi/`): the exported C ABI, a thin shell over the above; `capi/native.rs` is IX's
//!   native API from which `include/ix.h` is generated.
//!
//! libix talks to the dataplane only through `dataplane::Dataplane::run_io` and the `dataplane::api` values
//! (DESIGN.md §2): that door stays the same when the dataplane moves behind a protection boundary.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod buffer;
pub mod bufferevent;
#[path = "../capi/mod.rs"]
pub mod capi;
pub mod event;
pub mod evutil;
pub mod listener;
pub mod preload;
pub mod runtime;
pub mod socket;
