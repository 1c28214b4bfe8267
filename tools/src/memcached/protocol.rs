//! memcached's text and binary protocols, only what the load generator sends: GET and SET requests, encoded
//! into a caller's buffer (no allocation once it has grown), and their replies, parsed in place.

use clap::ValueEnum;
use std::io::Write;
use std::ops::Range;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Protocol {
    Text,
    Binary,
}

const BIN_REQUEST: u8 = 0x80;
const BIN_RESPONSE: u8 = 0x81;
const OP_GET: u8 = 0x00;
const OP_SET: u8 = 0x01;
const BIN_HEADER: usize = 24;
const STATUS_KEY_NOT_FOUND: u16 = 0x0001;
/// A text reply line longer than this (without its CRLF) is a protocol error.
const MAX_LINE: usize = 2048;

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Text => "text",
            Protocol::Binary => "binary",
        }
    }

    /// Appends a GET of `key` to `out`. `opaque` comes back in a binary reply.
    pub fn encode_get(self, out: &mut Vec<u8>, key: &[u8], opaque: u32) {
        match self {
            Protocol::Text => {
                out.extend_from_slice(b"get ");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\r\n");
            }
            Protocol::Binary => {
                binary_header(out, OP_GET, key.len(), 0, key.len(), opaque);
                out.extend_from_slice(key);
            }
        }
    }

    /// Appends a SET of `key` to `value` with `flags` (no expiry) to `out`.
    pub fn encode_set(self, out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8], opaque: u32) {
        match self {
            Protocol::Text => {
                out.extend_from_slice(b"set ");
                out.extend_from_slice(key);
                write!(out, " {flags} 0 {}\r\n", value.len()).expect("writing to a Vec");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            Protocol::Binary => {
                binary_header(out, OP_SET, key.len(), 8, 8 + key.len() + value.len(), opaque);
                out.extend_from_slice(&flags.to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes()); // expiry: never
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
        }
    }

    /// Parses the reply at the start of `buf` to a GET (`get`) or a SET.
    pub fn parse(self, buf: &[u8], get: bool) -> Parsed {
        match self {
            Protocol::Text => parse_text(buf, get),
            Protocol::Binary => parse_binary(buf, get),
        }
    }
}

fn binary_header(out: &mut Vec<u8>, opcode: u8, key_len: usize, extras: u8, body: usize, opaque: u32) {
    out.extend_from_slice(&[BIN_REQUEST, opcode]);
    out.extend_from_slice(&(key_len as u16).to_be_bytes());
    out.extend_from_slice(&[extras, 0, 0, 0]); // extras length, data type, vbucket
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // CAS
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reply {
    /// A GET found its key: flags, where the value is in the buffer and (text only) where the key is.
    Hit { flags: u32, value: Range<usize>, key: Option<Range<usize>> },
    /// A GET found nothing.
    Miss,
    /// A SET stored its value.
    Stored,
    /// The server answered with an error, or a reply that does not fit the request.
    Failed,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Parsed {
    /// More bytes needed.
    Incomplete,
    /// A whole reply of `len` bytes; `opaque` for the binary protocol.
    Reply { reply: Reply, len: usize, opaque: Option<u32> },
    /// Not memcached's protocol: the connection cannot be resynchronized.
    Malformed,
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..].windows(2).position(|w| w == b"\r\n").map(|p| from + p)
}

fn parse_text(buf: &[u8], get: bool) -> Parsed {
    let Some(eol) = line_end(buf, 0) else {
        return if buf.len() > MAX_LINE { Parsed::Malformed } else { Parsed::Incomplete };
    };
    let line = &buf[..eol];
    let one_line = |reply| Parsed::Reply { reply, len: eol + 2, opaque: None };
    if line == b"STORED" {
        return one_line(if get { Reply::Failed } else { Reply::Stored });
    }
    if line == b"END" {
        return one_line(if get { Reply::Miss } else { Reply::Failed });
    }
    if line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
        || line == b"NOT_STORED"
        || line == b"EXISTS"
        || line == b"NOT_FOUND"
    {
        return one_line(Reply::Failed);
    }
    let Some(rest) = line.strip_prefix(b"VALUE ") else { return Parsed::Malformed };
    if !get {
        return Parsed::Malformed;
    }
    // VALUE <key> <flags> <bytes> [<cas>]
    let mut fields = rest.split(|&b| b == b' ');
    let (Some(key), Some(flags), Some(bytes)) = (fields.next(), fields.next(), fields.next()) else {
        return Parsed::Malformed;
    };
    let (Some(flags), Some(bytes)) = (parse_decimal(flags), parse_decimal(bytes)) else {
        return Parsed::Malformed;
    };
    let (Ok(flags), Ok(bytes)) = (u32::try_from(flags), usize::try_from(bytes)) else {
        return Parsed::Malformed;
    };
    let value_start = eol + 2;
    let value_end = value_start + bytes;
    let total = value_end + 2 + 5; // value CRLF, then END CRLF
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    if &buf[value_end..total] != b"\r\nEND\r\n" {
        return Parsed::Malformed;
    }
    let key_start = 6;
    Parsed::Reply {
        reply: Reply::Hit { flags, value: value_start..value_end, key: Some(key_start..key_start + key.len()) },
        len: total,
        opaque: None,
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64))
}

fn parse_binary(buf: &[u8], get: bool) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if buf[0] != BIN_RESPONSE {
        return Parsed::Malformed;
    }
    if buf.len() < BIN_HEADER {
        return Parsed::Incomplete;
    }
    let opcode = buf[1];
    let key_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let extras = buf[4] as usize;
    let status = u16::from_be_bytes([buf[6], buf[7]]);
    let body = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let opaque = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if extras + key_len > body {
        return Parsed::Malformed;
    }
    let len = BIN_HEADER + body;
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let expected_op = if get { OP_GET } else { OP_SET };
    let reply = if opcode != expected_op {
        Reply::Failed
    } else if get && status == 0 && extras == 4 {
        let flags = u32::from_be_bytes([buf[24], buf[25], buf[26], buf[27]]);
        Reply::Hit { flags, value: BIN_HEADER + extras + key_len..len, key: None }
    } else if get && status == STATUS_KEY_NOT_FOUND {
        Reply::Miss
    } else if !get && status == 0 {
        Reply::Stored
    } else {
        Reply::Failed
    };
    Parsed::Reply { reply, len, opaque: Some(opaque) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replies() {
        let p = Protocol::Text;
        assert_eq!(p.parse(b"STORED\r\nEND", false), Parsed::Reply { reply: Reply::Stored, len: 8, opaque: None });
        assert_eq!(p.parse(b"END\r\n", true), Parsed::Reply { reply: Reply::Miss, len: 5, opaque: None });
        assert_eq!(p.parse(b"VALUE k 7 3\r\nab", true), Parsed::Incomplete);
        let hit = b"VALUE k1 7 3\r\nabc\r\nEND\r\nSTORED\r\n";
        match p.parse(hit, true) {
            Parsed::Reply { reply: Reply::Hit { flags: 7, value, key: Some(key) }, len: 24, opaque: None } => {
                assert_eq!(&hit[value], b"abc");
                assert_eq!(&hit[key], b"k1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.parse(b"VALUE k 7 3\r\nabcdEND\r\nxx", true), Parsed::Malformed);
        assert!(matches!(
            p.parse(b"SERVER_ERROR out of memory\r\n", false),
            Parsed::Reply { reply: Reply::Failed, .. }
        ));
        assert_eq!(p.parse(b"HELLO\r\n", true), Parsed::Malformed);
    }

    #[test]
    fn binary_round_trip_shapes() {
        let p = Protocol::Binary;
        let mut out = Vec::new();
        p.encode_set(&mut out, b"key", 9, b"value", 42);
        assert_eq!(out.len(), 24 + 8 + 3 + 5);
        assert_eq!(&out[..2], &[0x80, 0x01]);
        assert_eq!(u32::from_be_bytes(out[12..16].try_into().unwrap()), 42);
        // A GET hit: header, 4 bytes of flags, the value.
        let mut reply = vec![0x81, 0x00, 0, 0, 4, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 5];
        reply.extend_from_slice(&[0; 8]);
        reply.extend_from_slice(&9u32.to_be_bytes());
        reply.extend_from_slice(b"abc");
        match p.parse(&reply, true) {
            Parsed::Reply { reply: Reply::Hit { flags: 9, value, key: None }, len: 31, opaque: Some(5) } => {
                assert_eq!(&reply[value], b"abc")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.parse(&reply[..30], true), Parsed::Incomplete);
        assert_eq!(p.parse(b"VALUE", true), Parsed::Malformed);
    }
}
