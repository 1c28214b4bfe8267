//! Helpers shared by the integration tests that drive dataplanes over the in-memory wire.
#![allow(dead_code)]

use dataplane::api::{CmdResult, Command, Events};
use dataplane::dataplane::Dataplane;
use dataplane::time::Instant;

/// One `run_io` cycle of `dp` at `now` with `cmds`; the events land in `ev`, the results are returned.
pub fn run(dp: &mut Dataplane, now: Instant, cmds: &[Command<'_>], ev: &mut Events) -> Vec<CmdResult> {
    let mut rets = vec![Ok(0); cmds.len()];
    ev.reset(usize::MAX);
    dp.run_io(now, cmds, &mut rets, ev);
    rets
}

/// `len` pseudo-random bytes from `seed` (xorshift): transfers check every byte against it.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
