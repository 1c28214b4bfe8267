//! TCP for IX's native API (paper §4.3): explicit flow control, zero-copy send from app buffers, received
//! segments lent to the app.
//!
//! - [`stack`]: the per-core stack: connection table with generation-checked handles, listeners (bounded SYN
//!   backlog, SYN cookies), demultiplexing, segment emission, timers, the per-cycle flush.
//! - [`conn`]: one connection's state machine, send and receive sides.
//! - [`appbuf`]: the one place that reads app memory after the call that named it.
//! - [`rack`]: the send side's per-segment scoreboard and RACK-TLP loss detection (RFC 8985, RFC 6675 `pipe`).
//! - [`seq`], [`rtt`], [`congestion`]: sequence arithmetic, RFC 6298 RTO, NewReno windows.
pub mod appbuf;
pub mod congestion;
pub mod conn;
pub mod rack;
pub mod rtt;
pub mod seq;
pub mod stack;
