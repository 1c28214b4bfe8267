//! evutil: libevent's portability helpers (`event2/util.h`) as safe Rust, for `capi/util.rs` to export.
//!
//! Everything here works on Rust values (byte slices, arrays, integers); the C boundary (pointers, `struct
//! sockaddr`, errno, allocation) stays in `capi/util.rs`. Behaviour follows libevent 2.1.12 on Linux, including its
//! quirks where programs can see them (what its parsers accept, how its formatters truncate).
//!
//! - [`addr`]: IPv4/IPv6 text ↔ binary (libevent's own parsers and formatter, not libc's), `host:port` parsing,
//!   address predicates.
//! - [`text`]: ASCII character classes, case-insensitive comparison, C-style number scanning, RFC 1123 dates,
//!   `snprintf`-style copying into a caller's buffer.
//! - [`getaddrinfo`]: the resolver-free part of `evutil_getaddrinfo` (ports, NULL hosts, literal addresses).
//! - [`rand`]: the weak linear-congruential generator libevent uses for non-security randomness.
//! - [`time`]: the monotonic-clock choice and the ratchet that keeps a wall-clock fallback from going backwards.

pub mod addr;
pub mod getaddrinfo;
pub mod rand;
pub mod text;
pub mod time;
