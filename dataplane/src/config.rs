//! Dataplane configuration, read from the environment (`IX_*`), with one clear error per bad value.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `IX_IFACE` | interface whose queues the dataplane owns | required |
//! | `IX_IP` | the dataplane's address and prefix, `198.18.0.1/24` | required |
//! | `IX_GATEWAY` | next hop for destinations outside the prefix | none (off-link traffic is refused) |
//! | `IX_BACKEND` | `afxdp`, `tap` or `auto` (AF_XDP, else TAP) | `auto` |
//! | `IX_XDP_MODE` | `native`, `generic` or `auto` | `auto` |
//! | `IX_QUEUES` | NIC queues (one dataplane thread each) | 1 |
//! | `IX_BATCH` | bound B on packets per cycle (§3, adaptive bounded batching) | 64 |
//! | `IX_POOL_FRAMES` | mbufs per queue | 8192 |
//! | `IX_HUGEPAGES` | `1` to put pools on 2 MiB huge pages when available, `0` never | 1 |
//! | `IX_CSUM` | `strict`, or `accept-partial` to take partial checksums from a Linux peer over veth | `strict` |
//! | `IX_STATS_DIR` | where the live statistics page is published for `ixctl` | `/dev/shm` |
//! | `IX_STRICT` | `1`: fail instead of falling back to the kernel when the dataplane cannot start | 0 |
//! | `IX_LOG` | log filter (env_logger syntax), read by libix | `warn` |
use crate::wire::{Ipv4Address, Ipv4Cidr};
use std::path::PathBuf;
use std::str::FromStr;

/// Which NIC backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AF_XDP, falling back to TAP.
    Auto,
    /// An AF_XDP socket per queue of an existing interface.
    AfXdp,
    /// A multi-queue TAP interface the dataplane creates (named `IX_IFACE`).
    Tap,
}

/// How the XDP redirect program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode, falling back to generic.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// What to do with a TCP/UDP checksum that is only the pseudo-header sum (CHECKSUM_PARTIAL from a veth peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPolicy {
    /// Drop it like any bad checksum (counted separately, with a one-time hint in the log).
    Strict,
    /// Accept it: only sensible on a veth whose peer is a local Linux stack.
    AcceptPartial,
}

/// Everything a dataplane needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Interface name.
    pub iface: String,
    /// Our address and prefix.
    pub ip: Ipv4Cidr,
    /// Next hop for off-link destinations.
    pub gateway: Option<Ipv4Address>,
    /// Backend choice.
    pub backend: Backend,
    /// XDP attach mode.
    pub xdp_mode: XdpAttach,
    /// Number of queues.
    pub queues: u32,
    /// Batch bound B.
    pub batch: usize,
    /// Mbufs per queue.
    pub pool_frames: u32,
    /// Try huge pages for pools.
    pub hugepages: bool,
    /// Partial-checksum policy.
    pub checksum: ChecksumPolicy,
    /// Directory of the statistics page.
    pub stats_dir: PathBuf,
    /// Fail rather than fall back to the kernel.
    pub strict: bool,
}

/// A configuration error: which variable, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set (e.g. IX_IFACE=veth0 IX_IP=198.18.0.1/24)")]
    Missing(&'static str),
    /// A variable has a value we cannot use.
    #[error("{var}={value:?}: {why}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Largest batch bound accepted (the NIC batch array's size).
pub const MAX_BATCH: usize = crate::nic::MAX_BATCH;

impl Config {
    /// A configuration with defaults for everything but interface and address.
    pub fn new(iface: &str, ip: Ipv4Cidr) -> Config {
        Config {
            iface: iface.to_string(),
            ip,
            gateway: None,
            backend: Backend::Auto,
            xdp_mode: XdpAttach::Auto,
            queues: 1,
            batch: 64,
            pool_frames: 8192,
            hugepages: true,
            checksum: ChecksumPolicy::Strict,
            stats_dir: PathBuf::from("/dev/shm"),
            strict: false,
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (the environment, a file, or a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let iface = get("IX_IFACE").filter(|s| !s.is_empty()).ok_or(ConfigError::Missing("IX_IFACE"))?;
        if iface.len() >= 16 || iface.contains('/') || iface.contains(char::is_whitespace) {
            return Err(invalid("IX_IFACE", &iface, "not an interface name (at most 15 characters, no '/')"));
        }
        let ip_s = get("IX_IP").ok_or(ConfigError::Missing("IX_IP"))?;
        let ip = Ipv4Cidr::from_str(&ip_s).map_err(|_| invalid("IX_IP", &ip_s, "expected ADDRESS/PREFIX"))?;
        if ip.addr.is_unspecified() || ip.addr.is_multicast() || ip.addr.is_broadcast() || ip.prefix_len > 30 {
            return Err(invalid("IX_IP", &ip_s, "needs a unicast address and a prefix of at most /30"));
        }
        let mut c = Config::new(&iface, ip);
        if let Some(g) = get("IX_GATEWAY").filter(|s| !s.is_empty()) {
            let gw = Ipv4Address::from_str(&g).map_err(|_| invalid("IX_GATEWAY", &g, "not an IPv4 address"))?;
            if !ip.contains(gw) {
                return Err(invalid("IX_GATEWAY", &g, "the gateway must be inside IX_IP's prefix"));
            }
            c.gateway = Some(gw);
        }
        if let Some(v) = get("IX_BACKEND") {
            c.backend = match v.as_str() {
                "auto" | "" => Backend::Auto,
                "afxdp" | "af_xdp" | "xdp" => Backend::AfXdp,
                "tap" => Backend::Tap,
                _ => return Err(invalid("IX_BACKEND", &v, "expected afxdp, tap or auto")),
            };
        }
        if let Some(v) = get("IX_XDP_MODE") {
            c.xdp_mode = match v.as_str() {
                "auto" | "" => XdpAttach::Auto,
                "native" | "drv" => XdpAttach::Native,
                "generic" | "skb" => XdpAttach::Generic,
                _ => return Err(invalid("IX_XDP_MODE", &v, "expected native, generic or auto")),
            };
        }
        c.queues = number(&get, "IX_QUEUES", 1, 64)?.unwrap_or(1) as u32;
        c.batch = number(&get, "IX_BATCH", 1, MAX_BATCH as u64)?.unwrap_or(64) as usize;
        c.pool_frames = number(&get, "IX_POOL_FRAMES", 512, 1 << 20)?.unwrap_or(8192) as u32;
        c.hugepages = number(&get, "IX_HUGEPAGES", 0, 1)?.unwrap_or(1) == 1;
        c.strict = number(&get, "IX_STRICT", 0, 1)?.unwrap_or(0) == 1;
        if let Some(v) = get("IX_CSUM") {
            c.checksum = match v.as_str() {
                "strict" | "" => ChecksumPolicy::Strict,
                "accept-partial" => ChecksumPolicy::AcceptPartial,
                _ => return Err(invalid("IX_CSUM", &v, "expected strict or accept-partial")),
            };
        }
        if let Some(v) = get("IX_STATS_DIR").filter(|s| !s.is_empty()) {
            c.stats_dir = PathBuf::from(v);
        }
        Ok(c)
    }
}

fn invalid(var: &'static str, value: &str, why: &'static str) -> ConfigError {
    ConfigError::Invalid { var, value: value.to_string(), why }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = get(var).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        Ok(_) => Err(invalid(var, &v, "out of range")),
        Err(_) => Err(invalid(var, &v, "not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&[("IX_IFACE", "veth0"), ("IX_IP", "198.18.0.1/24")]).unwrap();
        assert_eq!(c.batch, 64);
        assert_eq!(c.queues, 1);
        assert_eq!(c.backend, Backend::Auto);
        let c = parse(&[
            ("IX_IFACE", "veth0"),
            ("IX_IP", "198.18.0.1/24"),
            ("IX_BATCH", "16"),
            ("IX_QUEUES", "2"),
            ("IX_BACKEND", "tap"),
            ("IX_GATEWAY", "198.18.0.254"),
            ("IX_CSUM", "accept-partial"),
        ])
        .unwrap();
        assert_eq!((c.batch, c.queues, c.backend), (16, 2, Backend::Tap));
        assert_eq!(c.gateway, Some(Ipv4Address([198, 18, 0, 254])));
        assert_eq!(c.checksum, ChecksumPolicy::AcceptPartial);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(parse(&[("IX_IP", "198.18.0.1/24")]), Err(ConfigError::Missing("IX_IFACE")));
        assert_eq!(parse(&[("IX_IFACE", "veth0")]), Err(ConfigError::Missing("IX_IP")));
        for (var, val) in [
            ("IX_IP", "198.18.0.1"),
            ("IX_IP", "banana/24"),
            ("IX_IP", "0.0.0.0/24"),
            ("IX_BATCH", "0"),
            ("IX_BATCH", "100000"),
            ("IX_BATCH", "-3"),
            ("IX_QUEUES", "many"),
            ("IX_BACKEND", "dpdk"),
            ("IX_GATEWAY", "203.0.113.1"),
        ] {
            let mut pairs = vec![("IX_IFACE", "veth0"), ("IX_IP", "198.18.0.1/24")];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, val));
            match parse(&pairs) {
                Err(ConfigError::Invalid { var: v, .. }) => assert_eq!(v, var),
                other => panic!("{var}={val} gave {other:?}"),
            }
        }
        let err = parse(&[("IX_IFACE", "veth0"), ("IX_IP", "x")]).unwrap_err().to_string();
        assert!(err.contains("IX_IP"), "{err}");
    }
}
