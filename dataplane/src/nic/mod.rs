//! NIC queues behind one small trait, so the dataplane cycle does not care where frames come from.
//!
//! Backends: [`afxdp`] (AF_XDP socket on one queue of any Linux NIC, veth included), [`tap`] (multi-queue TAP,
//! for machines without XDP) and [`wire`] (an in-memory link between two stacks in one process, with fault
//! injection, for deterministic tests). All of them move [`Mbuf`]s of the caller's [`MbufPool`], in batches.
use crate::mbuf::{Mbuf, MbufPool};
use arrayvec::ArrayVec;
use std::os::fd::RawFd;

pub mod afxdp;
pub mod rss;
pub mod tap;
pub mod wire;

/// Most frames moved in one batch.
pub const MAX_BATCH: usize = 256;

/// A batch of frames on the stack, no heap allocation.
pub type Batch = ArrayVec<Mbuf, MAX_BATCH>;

/// What a queue can do and how big its frames are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NicCaps {
    /// Largest IP packet (L3 MTU).
    pub mtu: u16,
    /// Whether received TCP/UDP checksums may be partial (a Linux sender over veth with TX offload on):
    /// the stack then tells the user how to fix the peer instead of silently dropping.
    pub rx_partial_checksums: bool,
}

impl NicCaps {
    /// Capabilities with the given MTU and complete checksums.
    pub const fn with_mtu(mtu: u16) -> NicCaps {
        NicCaps { mtu, rx_partial_checksums: false }
    }
}

/// Counters a backend keeps about itself (events the stack cannot see).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the NIC.
    pub tx_frames: u64,
    /// Receive errors reported by the kernel or device.
    pub rx_errors: u64,
    /// Transmit errors reported by the kernel or device.
    pub tx_errors: u64,
    /// Frames dropped by the kernel before we saw them (AF_XDP `rx_dropped` + `rx_ring_full`, TAP overruns).
    pub rx_dropped: u64,
    /// Transmit attempts refused because the TX ring was full (the frames stay with the caller).
    pub tx_ring_full: u64,
    /// Times the fill ring could not be topped up because the pool was empty.
    pub fill_starved: u64,
}

/// One receive/transmit queue of a NIC, owned by one core.
pub trait NicQueue: std::fmt::Debug {
    /// Moves up to `max` received frames into `out` (never more than its spare capacity) and returns how many.
    /// The caller owns them afterwards. Never blocks.
    fn receive(&mut self, pool: &mut MbufPool, out: &mut Batch, max: usize) -> usize;

    /// Posts the frames of `batch` for transmit, in order. Accepted frames are removed from `batch` and belong to
    /// the queue, which returns them to `pool` once sent; frames left in `batch` were refused (ring full) and stay
    /// with the caller.
    fn transmit(&mut self, pool: &mut MbufPool, batch: &mut Batch);

    /// Once per cycle: reclaims completed TX frames into `pool`, tops up RX buffers in bulk and rings the doorbell.
    fn maintain(&mut self, pool: &mut MbufPool);

    /// An fd that polls readable when frames are waiting, for the idle sleep; `None` if the queue cannot sleep.
    fn poll_fd(&self) -> Option<RawFd>;

    /// The queue's capabilities.
    fn caps(&self) -> NicCaps;

    /// The interface's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The backend's own counters.
    fn stats(&self) -> NicStats;

    /// Frames of `pool` the queue currently holds (RX buffers posted, TX in flight), for leak accounting.
    fn frames_held(&self) -> u32;

    /// Returns every frame the queue holds to `pool` (shutdown). Frames still owned by the kernel are lost to
    /// the pool only if the kernel never returns them; backends say so in their docs.
    fn release(&mut self, pool: &mut MbufPool);
}
