//! Looking into a [`Buffer`] without removing anything: byte positions, `evbuffer_search`/`search_range`,
//! end-of-line search in libevent's five styles, and `evbuffer_peek`'s regions.
//!
//! Positions are byte offsets from the front. A position equal to the length is valid ("just past the end") but
//! points at no byte; libevent's searches and peeks find nothing from there, and so do these.

use super::{Buffer, DataVec};

/// `enum evbuffer_eol_style`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EolStyle {
    /// Any run of CR and LF characters (`EVBUFFER_EOL_ANY`).
    Any,
    /// LF, optionally preceded by CR (`EVBUFFER_EOL_CRLF`).
    Crlf,
    /// Exactly CR LF (`EVBUFFER_EOL_CRLF_STRICT`).
    CrlfStrict,
    /// LF (`EVBUFFER_EOL_LF`).
    Lf,
    /// A NUL byte (`EVBUFFER_EOL_NUL`).
    Nul,
}

impl EolStyle {
    /// From libevent's numbering; None for values libevent rejects.
    pub fn from_c(v: i32) -> Option<EolStyle> {
        Some(match v {
            0 => EolStyle::Any,
            1 => EolStyle::Crlf,
            2 => EolStyle::CrlfStrict,
            3 => EolStyle::Lf,
            4 => EolStyle::Nul,
            _ => return None,
        })
    }
}

impl Buffer {
    /// The byte at `pos`.
    pub fn byte_at(&self, pos: usize) -> Option<u8> {
        let (i, off) = self.locate(pos)?;
        Some(self.segs[i].data()[off])
    }

    /// The bytes from `pos` on, segment by segment.
    fn chunks_from(&self, pos: usize) -> impl Iterator<Item = &[u8]> {
        let start = self.locate(pos);
        let (first, off) = start.unwrap_or((self.segs.len(), 0));
        self.segs.range(first..).enumerate().map(move |(k, s)| if k == 0 { &s.data()[off..] } else { s.data() })
    }

    /// The first position at or after `from` whose byte is one of `set`.
    fn find_any(&self, from: usize, set: &[u8]) -> Option<usize> {
        let mut pos = from;
        for chunk in self.chunks_from(from) {
            let hit = match set {
                [one] => chunk.iter().position(|b| b == one),
                _ => chunk.iter().position(|b| set.contains(b)),
            };
            if let Some(i) = hit {
                return Some(pos + i);
            }
            pos += chunk.len();
        }
        None
    }

    /// Whether the bytes at offset `off` of segment `seg` (and the following segments) are `what`.
    fn matches_at(&self, seg: usize, off: usize, what: &[u8]) -> bool {
        let mut rest = what;
        let mut off = off;
        for s in self.segs.range(seg..) {
            let chunk = &s.data()[off..];
            let k = chunk.len().min(rest.len());
            if chunk[..k] != rest[..k] {
                return false;
            }
            rest = &rest[k..];
            if rest.is_empty() {
                return true;
            }
            off = 0;
        }
        false
    }

    /// `evbuffer_search_range`: the first occurrence of `what` at or after `start` that ends by `end` (None: the
    /// buffer's end). An empty `what` is found at `start`, as in libevent. One pass over the segments: each
    /// candidate (a byte equal to `what[0]`) costs at most `what.len()` comparisons.
    pub fn search_range(&self, what: &[u8], start: usize, end: Option<usize>) -> Option<usize> {
        let Some(&first) = what.first() else { return Some(start) };
        let (seg0, off0) = self.locate(start)?;
        let mut base = start - off0; // position of the current segment's first byte
        for (i, s) in self.segs.range(seg0..).enumerate() {
            let data = s.data();
            let mut off = if i == 0 { off0 } else { 0 };
            while let Some(k) = data[off..].iter().position(|&b| b == first) {
                let at = off + k;
                let pos = base + at;
                if end.is_some_and(|e| pos >= e) {
                    return None;
                }
                if self.matches_at(seg0 + i, at, what) {
                    return match end {
                        Some(e) if pos + what.len() > e => None,
                        _ => Some(pos),
                    };
                }
                off = at + 1;
            }
            base += data.len();
        }
        None
    }

    /// `evbuffer_search_eol`: where the first end of line at or after `start` begins, and its length.
    pub fn search_eol(&self, start: usize, style: EolStyle) -> Option<(usize, usize)> {
        if start >= self.total {
            return None;
        }
        match style {
            EolStyle::Any => {
                let p = self.find_any(start, b"\r\n")?;
                let run = self.chunks_from(p).flat_map(|c| c.iter()).take_while(|b| matches!(b, b'\r' | b'\n')).count();
                Some((p, run))
            }
            EolStyle::CrlfStrict => self.search_range(b"\r\n", start, None).map(|p| (p, 2)),
            EolStyle::Crlf => {
                let p = self.find_any(start, b"\n")?;
                if p > start && self.byte_at(p - 1) == Some(b'\r') {
                    Some((p - 1, 2))
                } else {
                    Some((p, 1))
                }
            }
            EolStyle::Lf => self.find_any(start, b"\n").map(|p| (p, 1)),
            EolStyle::Nul => self.find_any(start, b"\0").map(|p| (p, 1)),
        }
    }

    /// `evbuffer_peek`: the regions holding the data from `start` (the first one starts mid-segment), enough to
    /// cover `len` bytes (all of them with None), at most `max` filled in. Returns how many regions the request
    /// needs (which may exceed `max`, as libevent reports) and the ones filled in.
    pub fn peek(&self, start: Option<usize>, len: Option<usize>, max: usize) -> (usize, Vec<DataVec>) {
        let mut out = Vec::new();
        let from = start.unwrap_or(0);
        if start.is_some_and(|s| s >= self.total) {
            return (0, out);
        }
        // With no room for regions and no limit, count what all the data needs.
        let len = if max == 0 && len.is_none() { Some(self.total - from) } else { len };
        let mut count = 0;
        let mut so_far = 0;
        for (k, chunk) in self.chunks_from(from).enumerate() {
            // The first region is always counted when a start is given (libevent does that before its loop).
            let forced = k == 0 && start.is_some();
            if !forced && len.is_some_and(|l| so_far >= l) {
                break;
            }
            if count < max {
                out.push((chunk.as_ptr(), chunk.len()));
            } else if len.is_none() {
                break;
            }
            count += 1;
            so_far += chunk.len();
        }
        (count, out)
    }
}
