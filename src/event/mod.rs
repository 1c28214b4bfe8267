//! The libevent 2.1 event core: one job, running `event_base` loops with libevent's observable semantics on kernel
//! fds (and, later, on dataplane sockets through the same [`Poller`] seam).
//!
//! - [`raw`]: `struct event` as C sees it (128 bytes, libevent's offsets) and [`EvPtr`], the only way the engine
//!   touches an event in application memory.
//! - [`base`]: [`Base`], the loop: timeouts, active queues by priority, EV_PERSIST/EV_ET/EV_CLOSED/EV_SIGNAL,
//!   loopexit/loopbreak/loopcontinue, once-events, finalizers, foreach/dump, fork (`reinit`), threads.
//! - [`poller`]: the [`Poller`] trait (one `wait` per loop iteration: where the dataplane's `run_io` will run) and
//!   [`Epoll`], its kernel implementation.
//! - [`heap`], [`queue`], [`map`]: the timer heap, the active queues, the fd and signal maps.
//! - [`signal`]: the sigaction self-pipe. [`time`]: [`Usec`] and the injected [`Clock`]. [`sys`]: every syscall.
//! - [`once`]: engine-owned events (`event_base_once`, `event_base_loopexit`).
//! - [`linger`]: deferred epoll removals (a deleted fd's registration kept until the next wait).
//! - [`deferred`]: deferred callbacks (libevent's `event_deferred_cb_*`), run by the loop on its next iteration.
//!
//! The C ABI over this is `capi/event.rs`; it owns the process-wide settings libevent's API defines (current base,
//! allocator, log callbacks, thread callbacks). The engine has one process-wide value of its own: the fd the signal
//! handler writes to (see [`signal`]).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod base;
pub mod deferred;
pub mod heap;
pub mod linger;
pub mod map;
pub mod once;
pub mod poller;
pub mod queue;
pub mod raw;
pub mod signal;
pub mod sys;
pub mod time;

pub use base::{Base, Config, DelMode, Error, LogFn, Severity};
pub use poller::{Epoll, Interest, Poller, Ready};
pub use raw::{EvPtr, EventCb, FinalizeCb, RawEvent, Timeval};
pub use time::{Clock, SystemClock, Usec};
