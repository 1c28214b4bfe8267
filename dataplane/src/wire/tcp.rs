//! TCP segments and options (parse and emit only; the state machine lives in `tcp/`).
//!
//! Heads up: read RFC 9293 §3.1 (header format, pseudo-header checksum; it obsoletes RFC 793), RFC 7323
//! (window scale and timestamps; a shift above 14 is taken as 14), RFC 2018 (SACK), RFC 3168 (ECE and CWR) and
//! RFC 6691 (MSS). Options of a known kind with a wrong length, and any option whose length byte is missing, below
//! 2 or past the header, make the whole segment an [`Error`]; unknown kinds are skipped by their length.
//!
//! TCP has no length field: a segment runs to the end of the IP payload, so wrap `ipv4.payload()`, and emit into
//! a buffer of exactly `TcpRepr::buffer_len()` bytes (the checksum covers the whole buffer).
use core::fmt;
use core::ops;

use super::checksum;
use super::field_io::{read_u16, read_u32, write_u16, write_u32};
use super::ipv4::{IpProtocol, Ipv4Address};
use super::{Error, Result};

/// The TCP control bits (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No flags.
    pub const EMPTY: TcpFlags = TcpFlags(0);
    /// FIN: no more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN: synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST: reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH: push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK: the acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG: the urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE: ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR: congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The flags of a raw flags byte.
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    /// The raw flags byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0
    }

    /// Sets or clears the flags of `other`.
    pub fn set(&mut self, other: TcpFlags, value: bool) {
        if value {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }
}

impl ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0
    }
}

impl ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Prints `SYN|ACK`, or `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;

    pub const OPT_END: u8 = 0;
    pub const OPT_NOP: u8 = 1;
    pub const OPT_MSS: u8 = 2;
    pub const OPT_WS: u8 = 3;
    pub const OPT_SACKPERM: u8 = 4;
    pub const OPT_SACKRNG: u8 = 5;
    pub const OPT_TSTAMP: u8 = 8;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// Most option bytes a header can carry (data offset 15 → 60-byte header).
pub const MAX_OPTIONS_LEN: usize = 40;

/// Largest window scale shift (RFC 7323 §2.3).
pub const MAX_WINDOW_SCALE: u8 = 14;

/// A view of a TCP segment in a buffer (the whole IP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a TCP header without options.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps `buffer` without checking it (see the panic contract in [`wire`](super)).
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err` unless the buffer holds 20 bytes and `20 <= header_len <= buffer length`. Options are checked only
    /// when iterated (or by [`TcpRepr::parse`]).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// The acknowledgment number (meaningful only with ACK).
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// The header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// All eight control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().contains(TcpFlags::PSH)
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags().contains(TcpFlags::URG)
    }

    /// ECE.
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags().contains(TcpFlags::ECE)
    }

    /// CWR.
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags().contains(TcpFlags::CWR)
    }

    /// The window field, unscaled.
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The urgent pointer (meaningful only with URG).
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The raw option bytes, between the fixed header and `header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// The options, parsed one at a time.
    #[inline]
    pub fn options_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// The payload: everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Sequence space the segment occupies: payload length, plus one for SYN and one for FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    fn checksum_sum(&self, src: &Ipv4Address, dst: &Ipv4Address) -> u16 {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::Tcp, data.len() as u32),
            checksum::data(data),
        ])
    }

    /// Whether the checksum is correct for a segment from `src` to `dst`. Always true under `cfg(fuzzing)`.
    pub fn verify_checksum(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        if checksum::FUZZING {
            return true;
        }
        self.checksum_sum(&src, &dst) == 0xffff
    }

    /// Whether the checksum field holds only the pseudo-header sum that a Linux sender with TX checksum offload
    /// leaves behind (see [`checksum::is_partial`]).
    pub fn is_checksum_partial(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        let len = self.buffer.as_ref().len() as u32;
        checksum::is_partial(self.checksum(), &src, &dst, IpProtocol::Tcp, len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port)
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port)
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], value)
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], value)
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60), keeping the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((len / 4) << 4);
    }

    /// Sets all eight control bits.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0
    }

    fn set_flag(&mut self, flag: TcpFlags, value: bool) {
        let mut flags = self.flags();
        flags.set(flag, value);
        self.set_flags(flags)
    }

    /// Sets or clears FIN.
    #[inline]
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(TcpFlags::FIN, value)
    }

    /// Sets or clears SYN.
    #[inline]
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(TcpFlags::SYN, value)
    }

    /// Sets or clears RST.
    #[inline]
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(TcpFlags::RST, value)
    }

    /// Sets or clears PSH.
    #[inline]
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(TcpFlags::PSH, value)
    }

    /// Sets or clears ACK.
    #[inline]
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(TcpFlags::ACK, value)
    }

    /// Sets or clears URG.
    #[inline]
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(TcpFlags::URG, value)
    }

    /// Sets or clears ECE.
    #[inline]
    pub fn set_ece(&mut self, value: bool) {
        self.set_flag(TcpFlags::ECE, value)
    }

    /// Sets or clears CWR.
    #[inline]
    pub fn set_cwr(&mut self, value: bool) {
        self.set_flag(TcpFlags::CWR, value)
    }

    /// Sets the window field.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], value)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value)
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], value)
    }

    /// The option bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum over the pseudo header and the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Address, dst: Ipv4Address) {
        self.set_checksum(0);
        let sum = self.checksum_sum(&src, &dst);
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); the rest of the option space is padding.
    EndOfList,
    /// No-operation (kind 1), used for alignment.
    NoOperation,
    /// Maximum segment size (kind 2, SYN only).
    MaxSegmentSize(u16),
    /// Window scale shift count (kind 3, SYN only), as sent (possibly above 14).
    WindowScale(u8),
    /// SACK permitted (kind 4, SYN only).
    SackPermitted,
    /// SACK blocks (kind 5): up to three `(left, right)` edges; a fourth block, possible without timestamps, is
    /// dropped on parse.
    SackRange([Option<(u32, u32)>; 3]),
    /// Timestamps (kind 8).
    Timestamps {
        /// The sender's timestamp value.
        tsval: u32,
        /// The echoed timestamp.
        tsecr: u32,
    },
    /// Any other kind, with its data (the bytes after kind and length).
    Unknown {
        /// The option kind.
        kind: u8,
        /// The option data.
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buffer`; returns the bytes after it and the option. `Err` on an empty
    /// buffer, a missing length byte, a length below 2 or past the buffer, or a wrong length for a known kind.
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>)> {
        let (&kind, after_kind) = buffer.split_first().ok_or(Error)?;
        match kind {
            field::OPT_END => return Ok((after_kind, TcpOption::EndOfList)),
            field::OPT_NOP => return Ok((after_kind, TcpOption::NoOperation)),
            _ => {}
        }
        let len = usize::from(*after_kind.first().ok_or(Error)?);
        if len < 2 || len > buffer.len() {
            return Err(Error);
        }
        let data = &buffer[2..len];
        let rest = &buffer[len..];
        let option = match (kind, len) {
            (field::OPT_MSS, 4) => TcpOption::MaxSegmentSize(read_u16(data)),
            (field::OPT_WS, 3) => TcpOption::WindowScale(data[0]),
            (field::OPT_SACKPERM, 2) => TcpOption::SackPermitted,
            (field::OPT_SACKRNG, _) => {
                if data.is_empty() || data.len() & 7 != 0 {
                    return Err(Error);
                }
                let mut blocks = [None; 3];
                for (slot, block) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((read_u32(&block[..4]), read_u32(&block[4..])));
                }
                TcpOption::SackRange(blocks)
            }
            (field::OPT_TSTAMP, 10) => TcpOption::Timestamps { tsval: read_u32(data), tsecr: read_u32(&data[4..]) },
            (field::OPT_MSS | field::OPT_WS | field::OPT_SACKPERM | field::OPT_TSTAMP, _) => return Err(Error),
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok((rest, option))
    }

    /// The bytes this option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(blocks) => 2 + 8 * blocks.iter().flatten().count(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the bytes after it.
    ///
    /// # Panics
    /// If `buffer` is shorter than [`buffer_len`](Self::buffer_len), or an `Unknown` option has more than 253
    /// bytes of data.
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (out, rest) = buffer.split_at_mut(len);
        match *self {
            TcpOption::EndOfList => out[0] = field::OPT_END,
            TcpOption::NoOperation => out[0] = field::OPT_NOP,
            _ => {
                out[1] = u8::try_from(len).expect("TCP option longer than 255 bytes");
                match *self {
                    TcpOption::MaxSegmentSize(mss) => {
                        out[0] = field::OPT_MSS;
                        write_u16(&mut out[2..], mss);
                    }
                    TcpOption::WindowScale(shift) => {
                        out[0] = field::OPT_WS;
                        out[2] = shift;
                    }
                    TcpOption::SackPermitted => out[0] = field::OPT_SACKPERM,
                    TcpOption::SackRange(blocks) => {
                        out[0] = field::OPT_SACKRNG;
                        for ((left, right), chunk) in blocks.iter().flatten().zip(out[2..].chunks_exact_mut(8)) {
                            write_u32(&mut chunk[..4], *left);
                            write_u32(&mut chunk[4..], *right);
                        }
                    }
                    TcpOption::Timestamps { tsval, tsecr } => {
                        out[0] = field::OPT_TSTAMP;
                        write_u32(&mut out[2..], tsval);
                        write_u32(&mut out[6..], tsecr);
                    }
                    TcpOption::Unknown { kind, data } => {
                        out[0] = kind;
                        out[2..].copy_from_slice(data);
                    }
                    TcpOption::EndOfList | TcpOption::NoOperation => unreachable!(),
                }
            }
        }
        rest
    }
}

/// Iterates over the options in a header's option bytes. Yields each option (an `EndOfList` last, if present)
/// and stops; on a malformed option yields one `Err` and stops. Never panics.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over `options` (the bytes between the fixed header and the data).
    pub const fn new(options: &'a [u8]) -> TcpOptionIter<'a> {
        TcpOptionIter { rest: options, done: false }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, option)) => {
                self.rest = rest;
                if option == TcpOption::EndOfList {
                    self.done = true;
                }
                Some(Ok(option))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for TcpOptionIter<'_> {}

/// A TCP segment as a value: the header fields and options the stack uses, and the payload it borrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number; `Some` exactly when ACK is set.
    pub ack: Option<u32>,
    /// The control bits other than ACK (which `ack` carries): parse clears ACK here, emit ignores it here.
    /// URG is kept, but the urgent pointer is not represented and emit writes 0.
    pub flags: TcpFlags,
    /// The window field, unscaled.
    pub window_len: u16,
    /// The MSS option.
    pub max_seg_size: Option<u16>,
    /// The window scale option, clamped to 14 on parse (RFC 7323 §2.3).
    pub window_scale: Option<u8>,
    /// The SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks, `(left, right)`, first ones first. Emit writes as many as fit in the 40 option bytes.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// The timestamps option, `(tsval, tsecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Reads `packet`, a segment from `src` to `dst`, after re-checking its lengths and parsing every option;
    /// with `checksum_check`, also rejects a wrong checksum. Flag combinations (SYN with FIN, ...) are not judged
    /// here: that is the state machine's business.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Address,
        dst: Ipv4Address,
        checksum_check: bool,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if checksum_check && !packet.verify_checksum(src, dst) {
            return Err(Error);
        }
        // Borrow options and payload from the underlying buffer (lifetime 'a), not from the view.
        let buffer: &'a [u8] = packet.buffer.as_ref();
        let header_len = usize::from(packet.header_len());

        let mut flags = packet.flags();
        let ack = if flags.contains(TcpFlags::ACK) { Some(packet.ack_number()) } else { None };
        flags.remove(TcpFlags::ACK);

        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack,
            flags,
            window_len: packet.window_len(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamps: None,
            payload: &buffer[header_len..],
        };
        for option in TcpOptionIter::new(&buffer[HEADER_LEN..header_len]) {
            match option? {
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift.min(MAX_WINDOW_SCALE)),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(blocks) => repr.sack_ranges = blocks,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some((tsval, tsecr)),
            }
        }
        Ok(repr)
    }

    /// How many SACK blocks emit writes, given `used` option bytes before them.
    fn sack_blocks_to_emit(&self, used: usize) -> usize {
        let present = self.sack_ranges.iter().flatten().count();
        // Two NOPs, kind, length: 4 bytes, then 8 per block.
        let room = MAX_OPTIONS_LEN.saturating_sub(used).saturating_sub(4) / 8;
        present.min(room)
    }

    /// Option bytes before the SACK blocks, in emit's layout.
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4; // MSS
        }
        if self.sack_permitted || self.timestamps.is_some() {
            // SACKOK + TS, or NOP NOP TS: 12; NOP NOP SACKOK: 4.
            len += if self.timestamps.is_some() { 12 } else { 4 };
        }
        if self.window_scale.is_some() {
            len += 4; // NOP WS
        }
        len
    }

    /// The option bytes emit writes (always a multiple of 4, at most 40).
    fn options_len(&self) -> usize {
        let fixed = self.fixed_options_len();
        let blocks = self.sack_blocks_to_emit(fixed);
        if blocks == 0 {
            fixed
        } else {
            fixed + 4 + 8 * blocks
        }
    }

    /// The header length emit writes, options included.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The segment length: header plus payload. Emit into a buffer of exactly this size.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies: payload length, plus one for SYN and one for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.flags.contains(TcpFlags::SYN))
            + usize::from(self.flags.contains(TcpFlags::FIN))
    }

    /// Writes the whole segment for `src` -> `dst`: header, options, payload and checksum. ACK is set exactly when
    /// `ack` is `Some`; reserved bits and the urgent pointer are zero.
    ///
    /// Options are laid out as Linux does, each 4-byte aligned: MSS; SACK-permitted and timestamps (padded with
    /// NOPs when only one is present); NOP + window scale; NOP NOP + SACK blocks (as many as fit).
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len). A longer buffer gives a wrong checksum:
    /// the segment is the whole buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>, src: Ipv4Address, dst: Ipv4Address) {
        let header_len = self.header_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack.unwrap_or(0));
        packet.buffer.as_mut()[field::DATA_OFF] = 0; // reserved bits
        packet.set_header_len(header_len as u8);
        let mut flags = self.flags;
        flags.set(TcpFlags::ACK, self.ack.is_some());
        packet.set_flags(flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);

        let fixed = self.fixed_options_len();
        let mut out = packet.options_mut();
        if let Some(mss) = self.max_seg_size {
            out = TcpOption::MaxSegmentSize(mss).emit(out);
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some((tsval, tsecr))) => {
                out = TcpOption::SackPermitted.emit(out);
                out = TcpOption::Timestamps { tsval, tsecr }.emit(out);
            }
            (false, Some((tsval, tsecr))) => {
                out = TcpOption::NoOperation.emit(out);
                out = TcpOption::NoOperation.emit(out);
                out = TcpOption::Timestamps { tsval, tsecr }.emit(out);
            }
            (true, None) => {
                out = TcpOption::NoOperation.emit(out);
                out = TcpOption::NoOperation.emit(out);
                out = TcpOption::SackPermitted.emit(out);
            }
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::WindowScale(shift).emit(out);
        }
        let blocks = self.sack_blocks_to_emit(fixed);
        if blocks > 0 {
            let mut ranges = [None; 3];
            for (slot, range) in ranges.iter_mut().zip(self.sack_ranges.iter().flatten()).take(blocks) {
                *slot = Some(*range);
            }
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::NoOperation.emit(out);
            out = TcpOption::SackRange(ranges).emit(out);
        }
        debug_assert!(out.is_empty(), "option layout and options_len disagree");

        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv4Repr};
    use proptest::prelude::*;

    const CLIENT: Ipv4Address = Ipv4Address([198, 18, 0, 2]);
    const SERVER: Ipv4Address = Ipv4Address([198, 18, 0, 1]);

    /// A Linux SYN as captured (`nc 198.18.0.1 8080` from 198.18.0.2:40000): Ethernet, IPv4, TCP with
    /// MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    static SYN_FRAME: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x3c, 0x1d, 0x2e, 0x40, 0x00, 0x40, 0x06, 0x91, 0x66, 0xc6, 0x12, 0x00, 0x02, 0xc6, 0x12,
        0x00, 0x01, // IPv4
        0x9c, 0x40, 0x1f, 0x90, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x98, 0x64,
        0x00, 0x00, // TCP header
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07, // options
    ];

    /// The SYN-ACK a Linux server would send back (IPv4 + TCP).
    static SYNACK_PACKET: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0x94, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // IPv4
        0x1f, 0x90, 0x9c, 0x40, 0xca, 0xfe, 0xba, 0xbe, 0x12, 0x34, 0x56, 0x79, 0xa0, 0x12, 0xfe, 0x88, 0x97, 0x62,
        0x00, 0x00, // TCP header
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x03, 0x04, 0x01, 0x03,
        0x03, 0x09, // options
    ];

    fn syn_segment() -> &'static [u8] {
        &SYN_FRAME[34..]
    }

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 8080,
            seq: 0x1234_5678,
            ack: None,
            flags: TcpFlags::SYN,
            window_len: 64240,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamps: Some((0x0102_0304, 0)),
            payload: &[],
        }
    }

    #[test]
    fn parse_captured_syn() {
        let frame = EthernetFrame::new_checked(&SYN_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, true).unwrap();
        assert_eq!((ip_repr.src_addr, ip_repr.dst_addr, ip_repr.next_header), (CLIENT, SERVER, IpProtocol::Tcp));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 8080));
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (0x1234_5678, 0));
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst() && !tcp.psh() && !tcp.urg());
        assert!(!tcp.ece() && !tcp.cwr());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0x9864);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(tcp.options().len(), 20);
        assert!(tcp.payload().is_empty());
        assert_eq!(tcp.segment_len(), 1);
        assert!(tcp.verify_checksum(CLIENT, SERVER));
        assert!(!tcp.is_checksum_partial(CLIENT, SERVER));
        let options: Vec<_> = tcp.options_iter().collect();
        assert_eq!(
            options,
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamps { tsval: 0x0102_0304, tsecr: 0 }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
        assert_eq!(TcpRepr::parse(&tcp, CLIENT, SERVER, true), Ok(syn_repr()));
        assert_eq!(syn_repr().segment_len(), 1);
    }

    #[test]
    fn emit_reproduces_captured_syn() {
        let repr = syn_repr();
        assert_eq!(repr.header_len(), 40);
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER);
        assert_eq!(&buf[..], syn_segment());
    }

    #[test]
    fn emit_synack_matches_linux_layout() {
        let repr = TcpRepr {
            src_port: 8080,
            dst_port: 40000,
            seq: 0xcafe_babe,
            ack: Some(0x1234_5679),
            flags: TcpFlags::SYN,
            window_len: 65160,
            max_seg_size: Some(1460),
            window_scale: Some(9),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamps: Some((0xaabb_ccdd, 0x0102_0304)),
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: SERVER,
            dst_addr: CLIENT,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + repr.buffer_len()];
        let mut ip_packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut ip_packet);
        repr.emit(&mut TcpPacket::new_unchecked(ip_packet.payload_mut()), SERVER, CLIENT);
        assert_eq!(&buf[..], &SYNACK_PACKET[..]);

        let ip_packet = Ipv4Packet::new_checked(&SYNACK_PACKET[..]).unwrap();
        let tcp = TcpPacket::new_checked(ip_packet.payload()).unwrap();
        assert_eq!(tcp.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(TcpRepr::parse(&tcp, SERVER, CLIENT, true), Ok(repr));
    }

    #[test]
    fn data_segment_with_sack_round_trips() {
        let payload = b"GET / HTTP/1.0\r\n\r\n";
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 8080,
            seq: 0x1234_5679,
            ack: Some(0xcafe_babf),
            flags: TcpFlags::PSH | TcpFlags::FIN,
            window_len: 502,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [Some((1, 2)), Some((3, 4)), Some((5, 6))],
            timestamps: Some((7, 8)),
            payload,
        };
        // NOP NOP TS (12) + NOP NOP SACK with 3 blocks (28) = 40.
        assert_eq!(repr.header_len(), 60);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER);
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(tcp.verify_checksum(CLIENT, SERVER));
        assert_eq!(tcp.payload(), payload);
        assert_eq!(tcp.segment_len(), payload.len() + 1);
        assert_eq!(TcpRepr::parse(&tcp, CLIENT, SERVER, true), Ok(repr));
    }

    #[test]
    fn sack_blocks_are_cut_to_fit() {
        let repr = TcpRepr {
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_ranges: [Some((1, 2)), Some((3, 4)), Some((5, 6))],
            ..syn_repr()
        };
        // MSS 4 + SACKOK/TS 12 + NOP WS 4 = 20; 20 left holds NOP NOP SACK with 2 blocks.
        assert_eq!(repr.header_len(), 60);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER);
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        let parsed = TcpRepr::parse(&tcp, CLIENT, SERVER, true).unwrap();
        assert_eq!(parsed.sack_ranges, [Some((1, 2)), Some((3, 4)), None]);
    }

    #[test]
    fn ack_flag_lives_in_ack_field() {
        // ACK in `flags` without an ack number is not emitted; parse moves ACK out of `flags`.
        let repr = TcpRepr { flags: TcpFlags::ACK | TcpFlags::RST, ..syn_repr() };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), CLIENT, SERVER);
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(tcp.flags(), TcpFlags::RST);
        let parsed = TcpRepr::parse(&tcp, CLIENT, SERVER, true).unwrap();
        assert_eq!((parsed.flags, parsed.ack), (TcpFlags::RST, None));
    }

    #[test]
    fn window_scale_is_clamped() {
        let mut b = syn_segment().to_vec();
        b[39] = 15;
        let mut tcp = TcpPacket::new_unchecked(&mut b[..]);
        tcp.fill_checksum(CLIENT, SERVER);
        let tcp = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(tcp.options_iter().last(), Some(Ok(TcpOption::WindowScale(15))));
        assert_eq!(TcpRepr::parse(&tcp, CLIENT, SERVER, true).unwrap().window_scale, Some(14));
    }

    #[test]
    fn rejects_truncated_and_bad_checksum() {
        let seg = syn_segment();
        for len in 0..40 {
            assert!(TcpRepr::parse(&TcpPacket::new_unchecked(&seg[..len]), CLIENT, SERVER, false).is_err());
        }
        for len in 0..20 {
            assert_eq!(TcpPacket::new_checked(&seg[..len]), Err(Error));
        }
        for off in [0x40u8, 0x00, 0xb0, 0xf0] {
            // Data offset 4 (< 20 bytes), 0, 44 and 60 (> 40-byte buffer).
            let mut b = seg.to_vec();
            b[12] = off;
            assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error), "data offset {off:#x}");
        }
        let mut b = seg.to_vec();
        b[4] ^= 0x80;
        let tcp = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(!tcp.verify_checksum(CLIENT, SERVER));
        assert_eq!(TcpRepr::parse(&tcp, CLIENT, SERVER, true), Err(Error));
        assert!(TcpRepr::parse(&tcp, CLIENT, SERVER, false).is_ok());
    }

    #[test]
    fn partial_checksum_is_recognised() {
        // What __tcp_v4_send_check() writes with CHECKSUM_PARTIAL: ~tcp_v4_check(len, saddr, daddr, 0).
        let len = syn_segment().len() as u32;
        let nofold: u32 = 0xc612 + 0x0002 + 0xc612 + 0x0001 + 6 + len;
        let tcp_v4_check = !((nofold & 0xffff) + (nofold >> 16)) as u16;
        let mut b = syn_segment().to_vec();
        b[16..18].copy_from_slice(&(!tcp_v4_check).to_be_bytes());
        let tcp = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(!tcp.verify_checksum(CLIENT, SERVER));
        assert!(tcp.is_checksum_partial(CLIENT, SERVER));
    }

    #[test]
    fn malformed_options_are_errors() {
        let cases: &[&[u8]] = &[
            &[2],                         // kind without length
            &[2, 4, 5],                   // MSS past the end
            &[2, 3, 5],                   // MSS with length 3
            &[3, 4, 7, 0],                // WS with length 4
            &[4, 3, 0],                   // SACKOK with length 3
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // TS with length 9
            &[5, 2],                      // SACK with no block
            &[5, 6, 0, 0, 0, 0],          // SACK with half a block
            &[30, 1],                     // unknown kind, length 1
            &[30, 0],                     // unknown kind, length 0 (would loop forever if accepted)
            &[30, 5, 0, 0],               // unknown kind, past the end
            &[1, 1, 2, 4, 5, 0xb4, 3, 3], // good options, then a truncated one
        ];
        for case in cases {
            assert!(TcpOptionIter::new(case).any(|o| o.is_err()), "{case:?}");
            let mut it = TcpOptionIter::new(case);
            while let Some(Ok(_)) = it.next() {}
            assert_eq!(it.next(), None, "iterator stops after an error");
        }
        assert_eq!(TcpOption::parse(&[]), Err(Error));

        // Inside a segment, a bad option fails the whole parse.
        let mut b = syn_segment().to_vec();
        b[21] = 3; // MSS length 3
        let tcp = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&tcp, CLIENT, SERVER, false), Err(Error));
    }

    #[test]
    fn options_parse_edge_cases() {
        // Unknown kinds are kept, EOL stops the iteration, four SACK blocks keep the first three.
        let opts = [30, 4, 0xde, 0xad, 0, 2, 4, 5, 0xb4];
        let got: Vec<_> = TcpOptionIter::new(&opts).collect();
        assert_eq!(got, vec![Ok(TcpOption::Unknown { kind: 30, data: &[0xde, 0xad] }), Ok(TcpOption::EndOfList)]);
        let mut four = vec![5, 34];
        for i in 1..=8u32 {
            four.extend_from_slice(&i.to_be_bytes());
        }
        assert_eq!(
            TcpOption::parse(&four),
            Ok((&[][..], TcpOption::SackRange([Some((1, 2)), Some((3, 4)), Some((5, 6))])))
        );
    }

    #[test]
    fn option_emit_parse_round_trip() {
        let options = [
            TcpOption::EndOfList,
            TcpOption::NoOperation,
            TcpOption::MaxSegmentSize(8960),
            TcpOption::WindowScale(14),
            TcpOption::SackPermitted,
            TcpOption::SackRange([Some((10, 20)), None, None]),
            TcpOption::SackRange([Some((10, 20)), Some((30, 40)), Some((50, 60))]),
            TcpOption::Timestamps { tsval: 1, tsecr: 2 },
            TcpOption::Unknown { kind: 34, data: &[1, 2, 3] },
        ];
        for option in options {
            let mut buf = [0u8; 40];
            let len = option.buffer_len();
            let rest = option.emit(&mut buf);
            assert_eq!(rest.len(), 40 - len);
            let (rest, parsed) = TcpOption::parse(&buf[..len]).unwrap();
            assert!(rest.is_empty());
            assert_eq!(parsed, option);
        }
    }

    #[test]
    fn flags_helpers() {
        let mut f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && f.intersects(TcpFlags::ACK | TcpFlags::FIN));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        f.remove(TcpFlags::SYN);
        f.set(TcpFlags::FIN, true);
        assert_eq!(f, TcpFlags::from_bits(0x11));
        assert_eq!(format!("{f:?}"), "FIN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::EMPTY), "-");
        assert!(TcpFlags::default().is_empty());
        assert_eq!((f & TcpFlags::ACK).bits(), 0x10);

        let mut b = syn_segment().to_vec();
        let mut tcp = TcpPacket::new_unchecked(&mut b[..]);
        tcp.set_syn(false);
        tcp.set_fin(true);
        tcp.set_rst(true);
        tcp.set_psh(true);
        tcp.set_ack(true);
        tcp.set_urg(true);
        tcp.set_ece(true);
        tcp.set_cwr(true);
        assert_eq!(tcp.flags().bits(), 0xfd);
        assert_eq!(tcp.header_len(), 40);
    }

    /// Any repr, with an empty payload.
    fn arb_repr() -> impl Strategy<Value = TcpRepr<'static>> {
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<Option<u32>>(), any::<u8>(), any::<u16>()),
            (any::<Option<u16>>(), proptest::option::of(0u8..=14), any::<bool>()),
            (any::<[Option<(u32, u32)>; 3]>(), any::<Option<(u32, u32)>>()),
        )
            .prop_map(|((sp, dp, seq, ack, flags, win), (mss, ws, sackok), (sack, ts))| {
                // Parse reads SACK blocks back first-first, with no holes.
                let mut ranges = [None; 3];
                for (slot, r) in ranges.iter_mut().zip(sack.iter().flatten()) {
                    *slot = Some(*r);
                }
                TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq,
                    ack,
                    flags: TcpFlags::from_bits(flags & !TcpFlags::ACK.bits()),
                    window_len: win,
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted: sackok,
                    sack_ranges: ranges,
                    timestamps: ts,
                    payload: &[],
                }
            })
    }

    proptest! {
        #[test]
        fn accessors_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            fix in any::<bool>(),
            csum in any::<bool>(),
        ) {
            let mut bytes = bytes;
            if fix && bytes.len() >= 20 {
                // A plausible data offset, so options get parsed.
                let max_words = (bytes.len() / 4).min(15) as u8;
                bytes[12] = (5 + bytes[12] % (max_words - 4)) << 4;
            }
            let (src, dst) = (CLIENT, SERVER);
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.header_len(), p.flags());
                let _ = (p.fin(), p.syn(), p.rst(), p.psh(), p.ack(), p.urg(), p.ece(), p.cwr());
                let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.options(), p.payload(), p.segment_len());
                let _ = (p.verify_checksum(src, dst), p.is_checksum_partial(src, dst));
                for option in p.options_iter().flatten() {
                    let _ = option.buffer_len();
                }
            }
            let _ = TcpRepr::parse(&TcpPacket::new_unchecked(&bytes[..]), src, dst, csum);
        }

        #[test]
        fn option_iter_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let n = TcpOptionIter::new(&bytes).count();
            prop_assert!(n <= bytes.len());
        }

        #[test]
        fn emit_then_parse(
            repr in arb_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let repr = TcpRepr { payload: &payload, ..repr };
            let (src, dst) = (Ipv4Address(src), Ipv4Address(dst));
            let mut buf = vec![0u8; repr.buffer_len()];
            prop_assert!(repr.header_len() <= 60 && repr.header_len() & 3 == 0);
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum(src, dst));
            let parsed = TcpRepr::parse(&packet, src, dst, true).unwrap();
            let fixed = repr.fixed_options_len();
            let kept = repr.sack_blocks_to_emit(fixed);
            let mut expected = repr;
            for slot in expected.sack_ranges.iter_mut().skip(kept) {
                *slot = None;
            }
            prop_assert_eq!(parsed, expected);
        }
    }
}
