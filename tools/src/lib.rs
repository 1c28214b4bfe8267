//! ix-tools' library: what the tools' binaries share with the integration tests in `tools/tests/`.
//!
//! - [`memcached`]: `ixbench memcached`, the mutilate-style memcached load generator (IX §5.5).

pub mod memcached;
