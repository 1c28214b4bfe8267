//! The part of libevent's `getaddrinfo` it does without a resolver (`evutil_getaddrinfo_common_`): hints
//! completion, numeric and named ports, the NULL-host answers (any/loopback, IPv4 first) and literal IPv4/IPv6
//! hosts. Whatever needs DNS is reported as such, with the port, for the caller's resolver.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::addr::{parse_ipv4, parse_ipv6_scoped};
use super::text::scan_int;

/// `EVUTIL_EAI_NEED_RESOLVE` (util-internal.h): no literal address, ask a resolver.
pub const EAI_NEED_RESOLVE: i32 = -90002;

/// The fields of `struct evutil_addrinfo` hints this logic reads and completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hints {
    /// ai_flags (system AI_* values).
    pub flags: i32,
    /// ai_family.
    pub family: i32,
    /// ai_socktype.
    pub socktype: i32,
    /// ai_protocol.
    pub protocol: i32,
}

/// Fills in the protocol from the socket type and the other way round (TCP ↔ stream, UDP ↔ datagram, SCTP →
/// stream), as libevent does before looking anything up.
pub fn infer_protocols(h: &mut Hints) {
    if h.protocol == 0 && h.socktype != 0 {
        if h.socktype == libc::SOCK_DGRAM {
            h.protocol = libc::IPPROTO_UDP;
        } else if h.socktype == libc::SOCK_STREAM {
            h.protocol = libc::IPPROTO_TCP;
        }
    }
    if h.socktype == 0 && h.protocol != 0 {
        if h.protocol == libc::IPPROTO_UDP {
            h.socktype = libc::SOCK_DGRAM;
        } else if h.protocol == libc::IPPROTO_TCP || h.protocol == libc::IPPROTO_SCTP {
            h.socktype = libc::SOCK_STREAM;
        }
    }
}

/// A decimal port as libevent accepts one (`strtol`, whole string, 0..=65535).
pub fn numeric_port(serv: &[u8]) -> Option<u16> {
    let (n, len) = scan_int(serv);
    (!serv.is_empty() && len == serv.len()).then_some(n).and_then(|n| u16::try_from(n).ok())
}

/// What `evutil_getaddrinfo_common_` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Common {
    /// The answer, in order (each becomes one addrinfo per socket type).
    Addrs(Vec<SocketAddr>),
    /// The host must be resolved; the port is already known.
    NeedResolve(u16),
}

/// `evutil_getaddrinfo_common_`: completes `hints`, finds the port (`service_port` looks a name up for a protocol
/// name), answers NULL hosts and literal addresses. `Err` holds an EAI_* code.
pub fn common(
    node: Option<&[u8]>,
    serv: Option<&[u8]>,
    hints: &mut Hints,
    service_port: impl FnOnce(&[u8], i32) -> Option<u16>,
    name_to_index: impl FnOnce(&[u8]) -> u32,
) -> Result<Common, i32> {
    if node.is_none() && serv.is_none() {
        return Err(libc::EAI_NONAME);
    }
    if ![libc::AF_UNSPEC, libc::AF_INET, libc::AF_INET6].contains(&hints.family) {
        return Err(libc::EAI_FAMILY);
    }
    infer_protocols(hints);
    let port = match serv {
        None => 0,
        Some(s) => match numeric_port(s) {
            Some(p) => p,
            None if hints.flags & libc::AI_NUMERICSERV == 0 => {
                service_port(s, hints.protocol).ok_or(libc::EAI_NONAME)?
            }
            None => return Err(libc::EAI_NONAME),
        },
    };
    let want_v4 = hints.family != libc::AF_INET6;
    let want_v6 = hints.family != libc::AF_INET;
    let Some(node) = node else {
        // No host: the wildcard address to bind to, or loopback to connect to; IPv4 first.
        let passive = hints.flags & libc::AI_PASSIVE != 0;
        let mut out = Vec::new();
        if want_v4 {
            let ip = if passive { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::LOCALHOST };
            out.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
        }
        if want_v6 {
            let ip = if passive { Ipv6Addr::UNSPECIFIED } else { Ipv6Addr::LOCALHOST };
            out.push(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)));
        }
        return Ok(Common::Addrs(out));
    };
    if want_v6 {
        if let Some((ip, scope)) = parse_ipv6_scoped(node, name_to_index) {
            return Ok(Common::Addrs(vec![SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, scope))]));
        }
    }
    if want_v4 {
        if let Some(ip) = parse_ipv4(node) {
            return Ok(Common::Addrs(vec![SocketAddr::V4(SocketAddrV4::new(ip.into(), port))]));
        }
    }
    if hints.flags & libc::AI_NUMERICHOST != 0 {
        return Err(libc::EAI_NONAME);
    }
    Ok(Common::NeedResolve(port))
}

/// `evutil_adjust_hints_for_addrconfig_`'s choice: with AI_ADDRCONFIG and AF_UNSPEC, narrow to the one family
/// the host has non-local addresses of (if it has exactly one).
pub fn family_for_addrconfig(hints: &Hints, have_v4: bool, have_v6: bool) -> i32 {
    if hints.flags & libc::AI_ADDRCONFIG == 0 || hints.family != libc::AF_UNSPEC {
        return hints.family;
    }
    match (have_v4, have_v6) {
        (true, false) => libc::AF_INET,
        (false, true) => libc::AF_INET6,
        _ => hints.family,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(node: Option<&str>, serv: Option<&str>, hints: &mut Hints) -> Result<Common, i32> {
        common(node.map(str::as_bytes), serv.map(str::as_bytes), hints, |s, _| (s == b"http").then_some(80), |_| 0)
    }

    #[test]
    fn null_host_is_any_or_loopback_v4_first() {
        let mut h = Hints { flags: libc::AI_PASSIVE, ..Hints::default() };
        let Ok(Common::Addrs(a)) = run(None, Some("8080"), &mut h) else { panic!() };
        assert_eq!(a, vec!["0.0.0.0:8080".parse().unwrap(), "[::]:8080".parse().unwrap()]);
        let mut h = Hints { family: libc::AF_INET6, ..Hints::default() };
        let Ok(Common::Addrs(a)) = run(None, Some("http"), &mut h) else { panic!() };
        assert_eq!(a, vec!["[::1]:80".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn literals_ports_and_errors() {
        let mut h = Hints { socktype: libc::SOCK_DGRAM, ..Hints::default() };
        let Ok(Common::Addrs(a)) = run(Some("1.2.3.4"), Some("53"), &mut h) else { panic!() };
        assert_eq!(a, vec!["1.2.3.4:53".parse::<SocketAddr>().unwrap()]);
        assert_eq!(h.protocol, libc::IPPROTO_UDP);
        assert_eq!(run(Some("example.com"), Some("1"), &mut Hints::default()), Ok(Common::NeedResolve(1)));
        let mut numeric = Hints { flags: libc::AI_NUMERICHOST, ..Hints::default() };
        assert_eq!(run(Some("example.com"), None, &mut numeric), Err(libc::EAI_NONAME));
        assert_eq!(run(None, None, &mut Hints::default()), Err(libc::EAI_NONAME));
        assert_eq!(run(None, Some("nope"), &mut Hints::default()), Err(libc::EAI_NONAME));
        assert_eq!(run(None, Some("65536"), &mut Hints::default()), Err(libc::EAI_NONAME));
        assert_eq!(
            run(None, Some("1"), &mut Hints { family: libc::AF_UNIX, ..Hints::default() }),
            Err(libc::EAI_FAMILY)
        );
        let mut v4only = Hints { family: libc::AF_INET, ..Hints::default() };
        assert_eq!(run(Some("::1"), None, &mut v4only), Ok(Common::NeedResolve(0)));
    }

    #[test]
    fn addrconfig_narrows_only_unspec() {
        let h = Hints { flags: libc::AI_ADDRCONFIG, ..Hints::default() };
        assert_eq!(family_for_addrconfig(&h, true, false), libc::AF_INET);
        assert_eq!(family_for_addrconfig(&h, false, true), libc::AF_INET6);
        assert_eq!(family_for_addrconfig(&h, true, true), libc::AF_UNSPEC);
        assert_eq!(family_for_addrconfig(&Hints::default(), true, false), libc::AF_UNSPEC);
    }
}
