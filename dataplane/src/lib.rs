//! The libix dataplane: one `Dataplane` per elastic thread, run to completion (IX, OSDI 2014, §3-§4).
//!
//! Layers, bottom up:
//! - [`sys`]: the only module that talks to the kernel (syscalls, mmap, bpf, AF_XDP and TAP ioctls).
//! - [`mbuf`]: fixed-size packet buffers in a per-core pool carved from huge pages; for AF_XDP the pool *is* the UMEM.
//! - [`nic`]: NIC queues behind one small trait: `afxdp`, `tap`, and the in-memory `wire` link used by tests.
//! - [`wire`]: stateless parse/emit of Ethernet, ARP, IPv4, ICMP and UDP headers and the Internet checksum.
//! - [`net`]: the stateful stack of one core: ARP cache, IPv4 input, ICMP echo, UDP ports.
//! - [`api`]: IX's native API as Rust types: batched commands in, event conditions out (the only door for libix).
//! - [`dataplane`]: the run-to-completion cycle that ties a NIC queue, a pool and the stack together.
//! - [`steer`]: software flow steering between a port's queues when the NIC's receive hash is not ours to
//!   predict (AF_XDP on veth): partitioned ephemeral ports and per-queue inboxes of frame copies.
//! - [`stats`]: per-core counters, published in a shared-memory page that `ixctl` reads live.
//! - [`config`]: configuration from the environment (`IX_IFACE`, `IX_IP`, `IX_QUEUES`, `IX_BATCH`, ...).
//!
//! Time is passed in ([`time::Instant`]); nothing below `libix`'s C API reads the clock on its own.
#![deny(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod config;
pub mod dataplane;
pub mod mbuf;
pub mod net;
pub mod netns;
pub mod nic;
pub mod stats;
pub mod steer;
pub mod sys;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod wire;

pub use crate::config::Config;
pub use crate::dataplane::Dataplane;
