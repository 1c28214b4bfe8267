//! ASCII text helpers with libevent's exact semantics: locale-independent character classes (`EVUTIL_IS*_`),
//! case folding, case-insensitive comparison, the C library's number scanning rules (as `sscanf("%u")`, `atoi` and
//! `strtoul` apply them, which libevent's parsers build on), RFC 1123 dates and `snprintf`-style output.

/// `EVUTIL_ISALPHA_`: A-Z, a-z.
pub fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

/// `EVUTIL_ISALNUM_`: letters and digits.
pub fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// `EVUTIL_ISSPACE_`: space, \t, \n, \v, \f, \r (the C locale's isspace; Rust's own set lacks \v).
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `EVUTIL_ISDIGIT_`.
pub fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// `EVUTIL_ISXDIGIT_`.
pub fn is_xdigit(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// `EVUTIL_ISPRINT_`: 0x20..=0x7e.
pub fn is_print(c: u8) -> bool {
    (0x20..0x7f).contains(&c)
}

/// `EVUTIL_ISLOWER_`.
pub fn is_lower(c: u8) -> bool {
    c.is_ascii_lowercase()
}

/// `EVUTIL_ISUPPER_`.
pub fn is_upper(c: u8) -> bool {
    c.is_ascii_uppercase()
}

/// `evutil_hex_char_to_int_`: the value of a hex digit, -1 for anything else.
pub fn hex_value(c: u8) -> i32 {
    match c {
        b'0'..=b'9' => i32::from(c - b'0'),
        b'a'..=b'f' => i32::from(c - b'a' + 10),
        b'A'..=b'F' => i32::from(c - b'A' + 10),
        _ => -1,
    }
}

/// `evutil_ascii_strncasecmp` over NUL-terminated byte strings given as slices that include (or run up to) the
/// terminator: compares at most `n` characters, -1/0/1. libevent compares the lowered characters as C `char`, which
/// is signed on x86_64, so bytes ≥ 0x80 sort before ASCII; that order is kept.
pub fn ascii_casecmp(s1: &[u8], s2: &[u8], n: usize) -> i32 {
    for i in 0..n {
        let c1 = s1.get(i).copied().unwrap_or(0).to_ascii_lowercase() as i8;
        let c2 = s2.get(i).copied().unwrap_or(0).to_ascii_lowercase() as i8;
        if c1 != c2 {
            return if c1 < c2 { -1 } else { 1 };
        }
        if c1 == 0 {
            return 0;
        }
    }
    0
}

/// `evutil_rtrim_lws_`: how many bytes of `s` remain once trailing spaces and tabs are cut.
pub fn rtrim_lws_len(s: &[u8]) -> usize {
    s.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |i| i + 1)
}

/// The result of scanning an unsigned number the way `strtoul` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// The value as `unsigned long` (negated modulo 2^64 after a '-', `u64::MAX` on overflow).
    pub value: u64,
    /// Bytes consumed, 0 if no digit was found (then `strtoul` consumes nothing).
    pub len: usize,
}

/// Scans a decimal `unsigned long` as `strtoul(s, &end, 10)`: leading C whitespace, an optional sign, digits.
pub fn scan_ulong(s: &[u8]) -> Scanned {
    let mut i = s.iter().take_while(|&&c| is_space(c)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i.min(s.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Scanned { value: 0, len: 0 };
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &c in &s[i..i + digits] {
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(c - b'0'))) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    let value = if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Scanned { value, len: i + digits }
}

/// `sscanf`'s `%u`: `strtoul`'s scan, stored into an `unsigned int` (truncated, as glibc does).
pub fn scan_uint(s: &[u8]) -> Option<(u32, usize)> {
    let r = scan_ulong(s);
    (r.len > 0).then_some((r.value as u32, r.len))
}

/// `strtol(s, &end, 10)` cast to `int`, as libevent's `parse_numeric_servname` does: the value (truncated to 32
/// bits like the cast) and the bytes consumed (0 if there were no digits).
pub fn scan_int(s: &[u8]) -> (i32, usize) {
    let lead = s.iter().take_while(|&&c| is_space(c)).count();
    let signed = matches!(s.get(lead), Some(b'-' | b'+'));
    let digits = s[(lead + usize::from(signed)).min(s.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return (0, 0);
    }
    (atoi(s), lead + usize::from(signed) + digits)
}

/// `atoi`: glibc's `(int) strtol(s, NULL, 10)`; garbage after the digits is ignored, no digits give 0.
pub fn atoi(s: &[u8]) -> i32 {
    let mut i = s.iter().take_while(|&&c| is_space(c)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    for &c in s[i.min(s.len())..].iter().take_while(|c| c.is_ascii_digit()) {
        let d = i64::from(c - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(d)
        } else {
            value.saturating_mul(10).saturating_add(d)
        };
    }
    value as i32
}

/// `snprintf`'s contract for a formatted string `s` and a buffer `out`: writes as much as fits followed by a
/// NUL (nothing for an empty buffer) and returns the full length, as libevent's `evutil_snprintf` does.
pub fn copy_truncated(out: &mut [u8], s: &[u8]) -> usize {
    if let Some(room) = out.len().checked_sub(1) {
        let n = s.len().min(room);
        out[..n].copy_from_slice(&s[..n]);
        out[n] = 0;
    }
    s.len()
}

/// `event_strlcpy_`: copies what fits of `src` (without its NUL) into `dst` with a NUL, returns `src`'s length.
pub fn strlcpy(dst: &mut [u8], src: &[u8]) -> usize {
    copy_truncated(dst, src)
}

/// The calendar fields of a `struct tm` that an RFC 1123 date needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateFields {
    /// tm_year: years since 1900.
    pub year: i32,
    /// tm_mon: 0..=11.
    pub month: i32,
    /// tm_mday: 1..=31.
    pub day: i32,
    /// tm_wday: 0 = Sunday.
    pub weekday: i32,
    /// tm_hour.
    pub hour: i32,
    /// tm_min.
    pub minute: i32,
    /// tm_sec.
    pub second: i32,
}

/// `evutil_date_rfc1123`'s text: "Sun, 06 Nov 1994 08:49:37 GMT" (`%s, %02d %s %4d %02d:%02d:%02d GMT`).
/// libevent indexes its name tables unchecked; out-of-range fields print "???" here instead of reading garbage.
pub fn rfc1123_date(t: &DateFields) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let name = |table: &[&'static str], i: i32| usize::try_from(i).ok().and_then(|i| table.get(i).copied());
    format!(
        "{}, {:02} {} {:4} {:02}:{:02}:{:02} GMT",
        name(&DAYS, t.weekday).unwrap_or("???"),
        t.day,
        name(&MONTHS, t.month).unwrap_or("???"),
        1900i64 + i64::from(t.year),
        t.hour,
        t.minute,
        t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_the_c_locale() {
        for c in 0..=255u8 {
            assert_eq!(is_space(c), b" \t\n\x0b\x0c\r".contains(&c), "{c}");
            assert_eq!(is_print(c), (b' '..=b'~').contains(&c), "{c}");
        }
        assert!(!is_alpha(0xc9) && !is_upper(0xc9) && is_xdigit(b'F') && !is_xdigit(b'g'));
        assert_eq!((hex_value(b'a'), hex_value(b'F'), hex_value(b'9'), hex_value(b'x')), (10, 15, 9, -1));
    }

    #[test]
    fn casecmp_orders_like_signed_char() {
        assert_eq!(ascii_casecmp(b"ABC\0", b"abc\0", usize::MAX), 0);
        assert_eq!(ascii_casecmp(b"abc\0", b"abd\0", usize::MAX), -1);
        assert_eq!(ascii_casecmp(b"abcd\0", b"abc\0", usize::MAX), 1);
        assert_eq!(ascii_casecmp(b"abcd\0", b"abce\0", 3), 0);
        assert_eq!(ascii_casecmp(b"\xe9\0", b"a\0", usize::MAX), -1);
    }

    #[test]
    fn scanning_follows_libc() {
        assert_eq!(scan_uint(b" +12x"), Some((12, 4)));
        assert_eq!(scan_uint(b"-1"), Some((u32::MAX, 2)));
        assert_eq!(scan_uint(b"4294967297"), Some((1, 10)));
        assert_eq!(scan_uint(b"99999999999999999999999"), Some((u32::MAX, 23)));
        assert_eq!(scan_uint(b"x1"), None);
        assert_eq!((atoi(b" 80x"), atoi(b"-3"), atoi(b"abc"), atoi(b"99999999999999999999")), (80, -3, 0, -1));
    }

    #[test]
    fn truncation_keeps_the_full_length() {
        let mut buf = [0xffu8; 4];
        assert_eq!(copy_truncated(&mut buf, b"hello"), 5);
        assert_eq!(&buf, b"hel\0");
        assert_eq!(copy_truncated(&mut [], b"hello"), 5);
        assert_eq!(rtrim_lws_len(b"a b \t "), 3);
        assert_eq!(rtrim_lws_len(b" \t"), 0);
    }

    #[test]
    fn rfc1123() {
        let t = DateFields { year: 94, month: 10, day: 6, weekday: 0, hour: 8, minute: 49, second: 37 };
        assert_eq!(rfc1123_date(&t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
