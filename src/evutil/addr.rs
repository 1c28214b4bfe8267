//! Internet addresses as libevent 2.1.12 handles them: its own IPv4/IPv6 parsers (stricter than `inet_aton`,
//! with `sscanf`'s and `strtol`'s leniencies where libevent uses them), its IPv6 formatter (`::`-compression and
//! the IPv4-mapped form), `evutil_parse_sockaddr_port`'s `host:port` grammar and the address predicates.

use super::text::{atoi, is_digit, is_xdigit, scan_uint, scan_ulong};

/// Parses dotted-quad IPv4 as libevent does: `sscanf("%u.%u.%u.%u%c") == 4` with every part ≤ 255. So spaces
/// and a '+' before a part are accepted, anything after the last part is not. Network byte order.
pub fn parse_ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut at = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        if i > 0 {
            if s.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let (value, len) = scan_uint(&s[at..])?;
        *byte = u8::try_from(value).ok()?;
        at += len;
    }
    (at == s.len()).then_some(out)
}

/// Reads a hex word as `strtol(s, &end, 16)` would starting at a hex digit (so a "0x" prefix counts), returning
/// its value and length.
fn scan_hex_word(s: &[u8]) -> (u64, usize) {
    let prefix = if s.len() > 2 && s[0] == b'0' && (s[1] | 0x20) == b'x' && is_xdigit(s[2]) { 2 } else { 0 };
    let digits = s[prefix..].iter().take_while(|&&c| is_xdigit(c)).count();
    let value = s[prefix..prefix + digits]
        .iter()
        .fold(0u64, |v, &c| v.saturating_mul(16).saturating_add(super::text::hex_value(c) as u64));
    (value, prefix + digits)
}

/// Parses IPv6 text (no zone) as libevent's `evutil_inet_pton(AF_INET6)`: up to 8 hex words of at most 4
/// characters, one `::`, an optional trailing dotted quad.
pub fn parse_ipv6(s: &[u8]) -> Option<[u8; 16]> {
    // The dotted quad, if any, starts at the run of digits before the first '.'.
    let dot = s.iter().position(|&c| c == b'.');
    let (end_of_words, tail) = match dot {
        Some(0) => return None,
        None => (s.len(), None),
        Some(d) => {
            let start = d - s[..d].iter().rev().take_while(|&&c| is_digit(c)).count();
            let v4 = parse_ipv4(&s[start..])?;
            (start, Some([u16::from_be_bytes([v4[0], v4[1]]), u16::from_be_bytes([v4[2], v4[3]])]))
        }
    };
    let mut head: Vec<u16> = Vec::with_capacity(8);
    let mut gap: Option<usize> = None;
    let mut at = 0;
    while at < end_of_words {
        if head.len() > 7 {
            return None;
        }
        let c = s[at];
        if is_xdigit(c) {
            let (value, len) = scan_hex_word(&s[at..]);
            if len > 4 || value > 0xffff {
                return None;
            }
            head.push(value as u16);
            at += len;
            if s.get(at) != Some(&b':') && at != end_of_words {
                return None;
            }
            at += 1;
        } else if c == b':' && !head.is_empty() && gap.is_none() {
            gap = Some(head.len());
            at += 1;
        } else if c == b':' && head.is_empty() && s.get(at + 1) == Some(&b':') && gap.is_none() {
            gap = Some(0);
            at += 2;
        } else {
            return None;
        }
    }
    let tail: &[u16] = tail.as_ref().map_or(&[], |t| &t[..]);
    let set = head.len() + tail.len();
    let mut words: Vec<u16> = match gap {
        None if set == 8 => head,
        Some(g) if set < 8 => {
            let mut w = head[..g].to_vec();
            w.resize(g + 8 - set, 0);
            w.extend_from_slice(&head[g..]);
            w
        }
        _ => return None,
    };
    words.extend_from_slice(tail);
    let mut out = [0u8; 16];
    for (chunk, w) in out.chunks_exact_mut(2).zip(&words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    Some(out)
}

/// An IPv6 zone after '%' (`evutil_inet_pton_scope`): an interface name (resolved by `name_to_index`) or a decimal
/// index as `strtoul` reads it (an empty zone means 0). `None` if it is neither.
pub fn parse_zone(zone: &[u8], name_to_index: impl FnOnce(&[u8]) -> u32) -> Option<u32> {
    match name_to_index(zone) {
        0 => {
            let r = scan_ulong(zone);
            // strtoul's end pointer must reach the end of the string.
            (r.len == zone.len()).then_some(r.value as u32)
        }
        index => Some(index),
    }
}

/// Formats IPv4 as "a.b.c.d".
pub fn format_ipv4(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Formats IPv6 as libevent does: `::a.b.c.d` / `::ffff:a.b.c.d` for IPv4-compatible and mapped addresses, else
/// lowercase hex words with the first longest run (two or more) of zero words written `::`.
pub fn format_ipv6(a: [u8; 16]) -> String {
    let words: Vec<u16> = a.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    if words[..5].iter().all(|&w| w == 0) && ((words[5] == 0 && words[6] != 0 && words[7] != 0) || words[5] == 0xffff) {
        let v4 = format_ipv4([a[12], a[13], a[14], a[15]]);
        return if words[5] == 0 { format!("::{v4}") } else { format!("::{:x}:{v4}", words[5]) };
    }
    let (mut best_pos, mut best_len) = (None, 0);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let run = words[i..].iter().take_while(|&&w| w == 0).count();
            if run > best_len {
                (best_pos, best_len) = (Some(i), run);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    if best_len <= 1 {
        best_pos = None;
    }
    let mut out = String::with_capacity(40);
    let mut i = 0;
    while i < 8 {
        if Some(i) == best_pos {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best_len;
        } else {
            out.push_str(&format!("{:x}", words[i]));
            if i != 7 {
                out.push(':');
            }
            i += 1;
        }
    }
    out
}

/// What `evutil_parse_sockaddr_port` found in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockaddrText {
    /// An IPv4 address (network order) and port.
    V4 {
        /// Address bytes.
        addr: [u8; 4],
        /// Port (host order), 0 if none was given.
        port: u16,
    },
    /// An IPv6 address, port and zone index.
    V6 {
        /// Address bytes.
        addr: [u8; 16],
        /// Port (host order), 0 if none was given.
        port: u16,
        /// The zone's interface index, 0 without one.
        scope_id: u32,
    },
}

/// `evutil_parse_sockaddr_port`'s grammar: `[ipv6]:port`, `[ipv6]`, `ipv6`, `ipv4:port`, `ipv4`. A port must be
/// 1..=65535 as `atoi` reads it (trailing garbage ignored); the bracketed or IPv4 part is at most 127 bytes.
pub fn parse_sockaddr_port(s: &[u8], name_to_index: impl FnOnce(&[u8]) -> u32) -> Option<SockaddrText> {
    const MAX_ADDR: usize = 127;
    let first_colon = s.iter().position(|&c| c == b':');
    let (addr, port_text, is_v6) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&c| c == b']')?;
        let addr = &s[1..close];
        if addr.len() > MAX_ADDR {
            return None;
        }
        let port = (s.get(close + 1) == Some(&b':')).then(|| &s[close + 2..]);
        (addr, port, true)
    } else if let Some(c) = first_colon {
        if s[c + 1..].contains(&b':') {
            (s, None, true)
        } else {
            if c > MAX_ADDR {
                return None;
            }
            (&s[..c], Some(&s[c + 1..]), false)
        }
    } else {
        (s, None, false)
    };
    let port = match port_text {
        None => 0,
        Some(p) => u16::try_from(atoi(p)).ok().filter(|&p| p != 0)?,
    };
    if is_v6 {
        let (addr, scope_id) = parse_ipv6_scoped(addr, name_to_index)?;
        Some(SockaddrText::V6 { addr, port, scope_id })
    } else {
        Some(SockaddrText::V4 { addr: parse_ipv4(addr)?, port })
    }
}

/// IPv6 text with an optional `%zone` (`evutil_inet_pton_scope`): the address and the zone's index (0 without).
pub fn parse_ipv6_scoped(s: &[u8], name_to_index: impl FnOnce(&[u8]) -> u32) -> Option<([u8; 16], u32)> {
    match s.iter().position(|&c| c == b'%') {
        None => Some((parse_ipv6(s)?, 0)),
        Some(p) => {
            let index = parse_zone(&s[p + 1..], name_to_index)?;
            Some((parse_ipv6(&s[..p])?, index))
        }
    }
}

/// `evutil_v4addr_is_local_`: 0.0.0.0, 127/8, 169.254/16 (link-local) or 224/4 (multicast).
pub fn v4_is_local(a: [u8; 4]) -> bool {
    a == [0; 4] || a[0] == 127 || (a[0] == 169 && a[1] == 254) || (a[0] & 0xf0) == 0xe0
}

/// `evutil_v6addr_is_local_`: first 64 bits zero (covers ::, ::1, IPv4-compatible), fc00::/7, fe80::/10,
/// fec0::/10, ff00::/8.
pub fn v6_is_local(a: [u8; 16]) -> bool {
    a[..8].iter().all(|&b| b == 0)
        || (a[0] & 0xfe) == 0xfc
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        || a[0] == 0xff
}

/// `evutil_sockaddr_is_loopback_` for IPv4: 127/8.
pub fn v4_is_loopback(a: [u8; 4]) -> bool {
    a[0] == 127
}

/// `evutil_sockaddr_is_loopback_` for IPv6: exactly ::1.
pub fn v6_is_loopback(a: [u8; 16]) -> bool {
    a == std::net::Ipv6Addr::LOCALHOST.octets()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Option<String> {
        parse_ipv6(s.as_bytes()).map(format_ipv6)
    }

    #[test]
    fn ipv4_follows_sscanf() {
        assert_eq!(parse_ipv4(b"1.2.3.4"), Some([1, 2, 3, 4]));
        assert_eq!(parse_ipv4(b" 1. +2.3.04"), Some([1, 2, 3, 4]));
        assert_eq!(parse_ipv4(b"1.2.3.4 "), None);
        assert_eq!(parse_ipv4(b"1.2.3"), None);
        assert_eq!(parse_ipv4(b"256.2.3.4"), None);
        assert_eq!(parse_ipv4(b"-1.2.3.4"), None);
        assert_eq!(parse_ipv4(b"4294967297.2.3.4"), Some([1, 2, 3, 4]));
    }

    #[test]
    fn ipv6_round_trips() {
        assert_eq!(v6("::").as_deref(), Some("::"));
        assert_eq!(v6("::1").as_deref(), Some("::1"));
        assert_eq!(v6("1::").as_deref(), Some("1::"));
        assert_eq!(v6("::1.2.3.4").as_deref(), Some("::1.2.3.4"));
        assert_eq!(v6("::ffff:1.2.3.4").as_deref(), Some("::ffff:1.2.3.4"));
        assert_eq!(v6("1:0:0:2::3").as_deref(), Some("1:0:0:2::3"));
        assert_eq!(v6("1:0:0:2:0:0:3:4").as_deref(), Some("1::2:0:0:3:4"));
        assert_eq!(
            v6("ABCD:ef01:2345:6789:abcd:ef01:2345:6789").as_deref(),
            Some("abcd:ef01:2345:6789:abcd:ef01:2345:6789")
        );
        assert_eq!(v6("1:2:3:4:5:6:1.2.3.4").as_deref(), Some("1:2:3:4:5:6:102:304"));
        assert_eq!(v6("0x12::").as_deref(), Some("12::"));
        for bad in
            [":1::2", "1:::2", "1:2", "12345::", "1:2:3:4:5:6:7:8:9", "1::2::3", "1:2:3:4:5:6:7:1.2.3.4", ".1", "g::"]
        {
            assert_eq!(v6(bad), None, "{bad}");
        }
    }

    #[test]
    fn sockaddr_port_grammar() {
        let none = |_: &[u8]| 0;
        assert_eq!(parse_sockaddr_port(b"1.2.3.4:80", none), Some(SockaddrText::V4 { addr: [1, 2, 3, 4], port: 80 }));
        assert_eq!(parse_sockaddr_port(b"1.2.3.4:80x", none), Some(SockaddrText::V4 { addr: [1, 2, 3, 4], port: 80 }));
        assert_eq!(parse_sockaddr_port(b"1.2.3.4:0", none), None);
        assert_eq!(parse_sockaddr_port(b"1.2.3.4:65536", none), None);
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(parse_sockaddr_port(b"[::1]:8", none), Some(SockaddrText::V6 { addr: one, port: 8, scope_id: 0 }));
        assert_eq!(parse_sockaddr_port(b"::1", none), Some(SockaddrText::V6 { addr: one, port: 0, scope_id: 0 }));
        assert_eq!(parse_sockaddr_port(b"[::1%7]", none), Some(SockaddrText::V6 { addr: one, port: 0, scope_id: 7 }));
        assert!(parse_sockaddr_port(b"[::1%lo]", |n| if n == b"lo" { 1 } else { 0 }).is_some());
        assert_eq!(parse_sockaddr_port(b"[::1%x]", none), None);
        assert_eq!(parse_sockaddr_port(b"[::1", none), None);
    }

    #[test]
    fn predicates() {
        assert!(v4_is_local([169, 254, 1, 1]) && v4_is_local([239, 0, 0, 1]) && !v4_is_local([8, 8, 8, 8]));
        let mut a = [0u8; 16];
        a[0] = 0xfe;
        a[1] = 0x80;
        assert!(v6_is_local(a));
        a[0] = 0x20;
        assert!(!v6_is_local(a));
    }
}
