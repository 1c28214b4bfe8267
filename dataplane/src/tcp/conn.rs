//! One TCP connection: its state machine, send and receive sides, and what it asks the stack to emit.
//!
//! Heads up: read RFC 9293 (§3.10.7 "SEGMENT ARRIVES" is the skeleton of `input`), RFC 7323 (window scale and
//! timestamps), RFC 6298 (RTO), RFC 5681 (congestion control), RFC 8985 and RFC 6675 (loss detection and SACK
//! recovery, see [`super::rack`]), RFC 2883 (D-SACK), RFC 5961 (blind RST/SYN/ACK attacks), RFC 1122 §4.2.3.2
//! (delayed ACK) and §4.2.2.17 (zero-window probes).
//!
//! Loss recovery: every segment sent is recorded in the scoreboard; ACKs and SACK blocks mark it delivered, RACK
//! marks it lost once a segment sent after it was delivered and a reordering window has passed, and `output`
//! resends lost segments before new data while RFC 6675's `pipe` is below `cwnd`. A tail loss probe (RFC 8985
//! §7) answers a silent tail in two RTTs rather than an RTO. Without SACK, three duplicate ACKs (and NewReno's
//! partial ACKs) mark the first segment lost.
//!
//! IX semantics (paper §4.3): `sendv` accepts only what the peer's window has room for and does not copy (the app
//! keeps its buffers until `Sent` covers them); received segments are lent to the app in order, and the window
//! reopens only when the app says `RecvDone`. So a connection holds no send buffer and no receive buffer of its
//! own: just references to app memory and the mbufs it lent.
use std::collections::VecDeque;

use arrayvec::ArrayVec;

use super::appbuf::AppBuf;
use super::congestion::Congestion;
use super::rack::{Scoreboard, ToSend};
use super::rtt::RttEstimator;
use super::seq::SeqNumber;
use crate::api::Endpoint;
use crate::mbuf::{Mbuf, MbufPool};
use crate::time::{Duration, Instant};
use crate::timer::TimerId;
use crate::wire::TcpFlags;

/// `a < b` in sequence space.
#[inline]
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
/// `a <= b` in sequence space.
#[inline]
pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
/// `a > b` in sequence space.
#[inline]
pub(crate) fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}
/// `a >= b` in sequence space.
#[inline]
pub(crate) fn seq_ge(a: u32, b: u32) -> bool {
    seq_le(b, a)
}

/// Connection states (RFC 9293 §3.3.2). `Listen` lives in the listener table, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out.
    SynSent,
    /// Their SYN arrived, our SYN-ACK is out.
    SynReceived,
    /// Both directions open.
    Established,
    /// We closed; our FIN is queued or unacknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for theirs.
    FinWait2,
    /// They closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// They closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both FINs acknowledged; lingering for old duplicates.
    TimeWait,
    /// Gone.
    Closed,
}

/// Why a connection ended, as `TcpDead` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum DeadReason {
    /// Both sides closed normally.
    Closed = 0,
    /// The peer reset the connection.
    Reset = 1,
    /// Retransmissions (or keepalives) went unanswered.
    TimedOut = 2,
    /// The peer refused the connection (RST in answer to our SYN).
    Refused = 3,
    /// No route or neighbour for the peer.
    Unreachable = 4,
}

/// A parsed segment: the header fields the state machine needs. The payload stays in its mbuf.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number, if ACK is set.
    pub ack: Option<u32>,
    /// Control bits (ACK is carried by `ack`).
    pub flags: TcpFlags,
    /// Window field, unscaled.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub wscale: Option<u8>,
    /// Timestamps option.
    pub timestamps: Option<(u32, u32)>,
    /// SACK-permitted option (SYN only).
    pub sack_permitted: bool,
    /// SACK blocks (RFC 2018).
    pub sack: [Option<(u32, u32)>; 3],
    /// Payload length.
    pub len: u32,
}

impl Segment {
    /// Sequence space the segment occupies: payload plus one for SYN and one for FIN.
    pub fn seq_len(&self) -> u32 {
        self.len + self.flags.contains(TcpFlags::SYN) as u32 + self.flags.contains(TcpFlags::FIN) as u32
    }
}

/// Which timer a connection has armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Retransmission (or SYN retry, or zero-window probe).
    Retransmit,
    /// Delayed ACK.
    DelayedAck,
    /// TIME_WAIT expiry, or FIN_WAIT_2 of an orphan.
    Linger,
    /// Keepalive probe.
    Keepalive,
    /// RACK's reordering timer or a tail loss probe (RFC 8985 §6.2 step 5, §7).
    LossProbe,
}

/// Tunables of the TCP stack.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// Receive window per connection, bytes (what may be lent to the app plus out-of-order data).
    pub rcv_buf: u32,
    /// Most bytes a connection accepts from `sendv` beyond what is acknowledged (also bounded by the peer's
    /// window).
    pub snd_buf: u32,
    /// Delayed-ACK timeout.
    pub delayed_ack: Duration,
    /// TIME_WAIT duration (2 MSL).
    pub time_wait: Duration,
    /// How long a closed connection waits in FIN_WAIT_2 for the peer's FIN.
    pub fin_wait2: Duration,
    /// Retransmissions of one segment before giving up.
    pub max_retries: u8,
    /// SYN retransmissions before a connect fails.
    pub max_syn_retries: u8,
    /// Keepalive: idle time before the first probe, interval, probes.
    pub keepalive: (Duration, Duration, u8),
    /// Lower bound of the retransmission timeout. 200 ms, as Linux: a peer may delay its ACK by 40 ms and more
    /// (Linux's delayed ACK), and a lower floor then retransmits spuriously whenever a client goes quiet after a
    /// response. With peers that ACK at once, a data center can go far lower (Vasudevan et al., SIGCOMM 2009).
    pub rto_min: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            rcv_buf: 256 * 1024,
            snd_buf: 4 * 1024 * 1024,
            delayed_ack: Duration::from_millis(40),
            time_wait: Duration::from_secs(60),
            fin_wait2: Duration::from_secs(60),
            max_retries: 15,
            max_syn_retries: 6,
            keepalive: (Duration::from_secs(7200), Duration::from_secs(75), 9),
            rto_min: Duration::from_millis(200),
        }
    }
}

/// Most out-of-order segments held per connection; more are dropped (the sender retransmits). Kept on the heap
/// (allocated the first time a connection sees reordering or loss), so idle connections stay small.
pub const OOO_MAX: usize = 256;

/// Least tail loss probe timeout: a namespace's RTT is tens of µs, less than the jitter of a peer's ACKs
/// (Linux's floor is also 2 ms).
pub const PTO_MIN: Duration = Duration::from_millis(2);

/// The µs clock the scoreboard records send times in (truncated: it compares with wrapping arithmetic).
fn micros(now: Instant) -> u32 {
    now.total_micros() as u32
}

/// What the connection wants sent: a header description; payload (if any) is copied from the send queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emit {
    /// Sequence number.
    pub seq: u32,
    /// Control bits (ACK is always set on synchronized connections: `ack` says).
    pub flags: TcpFlags,
    /// Acknowledgment number.
    pub ack: Option<u32>,
    /// Window field (already scaled down).
    pub window: u16,
    /// Payload: `len` bytes starting `offset` bytes into the send queue.
    pub offset: usize,
    /// Payload length.
    pub len: usize,
    /// SYN options: MSS and window scale.
    pub syn_opts: Option<(u16, Option<u8>)>,
    /// Timestamps to put in the segment.
    pub timestamps: Option<(u32, u32)>,
    /// SACK-permitted option (SYN, SYN-ACK).
    pub sack_permitted: bool,
    /// SACK blocks (pure ACKs only: data segments have no room for them under the MSS).
    pub sack: [Option<(u32, u32)>; 3],
    /// Data sent before (counted in the stats).
    pub retransmit: bool,
}

/// `Conn::due` of a disarmed timer.
const NOT_DUE: u64 = u64::MAX;

/// A TCP connection.
#[derive(Debug)]
pub struct Conn {
    /// Current state.
    pub state: State,
    /// Our port.
    pub local_port: u16,
    /// The peer.
    pub remote: Endpoint,
    /// The app's value, echoed in events.
    pub cookie: u64,
    /// Whether events flow to the app (connect, or accepted after a knock).
    pub accepted: bool,
    /// Whether the app has given up the handle (closed and told `Dead`, or aborted).
    pub released: bool,
    /// Listener port that owns this connection until it is accepted.
    pub listener: Option<u16>,
    /// Whether the app asked for keepalives.
    pub keepalive: bool,
    /// Keepalive probes sent since the peer was last heard from.
    pub keepalive_probes: u8,
    /// The app was told the connection is up (knock or connected).
    pub up: bool,
    /// The stack counts this connection among those in TIME_WAIT.
    pub time_wait_counted: bool,

    // Send side (RFC 9293 §3.3.1 names).
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_max: u32,
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    /// Peer's MSS for our segments.
    pub mss: u16,
    snd_shift: u8,
    /// Data the app handed us, unacknowledged or unsent, in order.
    sendq: VecDeque<AppBuf>,
    /// Bytes of `sendq[0]` already acknowledged.
    sendq_head_acked: usize,
    /// Bytes in `sendq` past `sendq_head_acked`.
    sendq_len: usize,
    /// Sequence number of the first byte of `sendq` not yet acknowledged.
    send_base: u32,
    fin_queued: bool,

    // Receive side.
    irs: u32,
    rcv_nxt: u32,
    /// Right edge of the window we last advertised (never moved left, RFC 9293 §3.8.6.2.2).
    rcv_adv: u32,
    rcv_shift: u8,
    rcv_buf: u32,
    /// Bytes lent to the app and not yet given back.
    unread: u32,
    lent: VecDeque<Mbuf>,
    /// Bytes of `lent[0]` the app already gave back.
    lent_head_done: u32,
    /// Lent segments whose `Recv` event is still owed (arrived before the app accepted).
    undelivered: u32,
    /// Out-of-order segments, sorted by sequence number, disjoint.
    ooo: Vec<(u32, Mbuf)>,
    /// The peer's FIN has been received (and `Eof` is owed or delivered).
    pub fin_received: bool,
    /// `Eof` must be reported.
    pub eof_pending: bool,

    // Options.
    ts_ok: bool,
    ts_recent: u32,
    /// Both sides offered SACK (RFC 2018).
    sack_ok: bool,
    /// Segments in flight: what was SACKed, what is lost, when each was sent (RACK-TLP).
    sb: Scoreboard,
    /// `snd_una` when the last recovery began, and its retransmissions not yet reported needless by a D-SACK
    /// at or above it; `None` once undo is off (a timeout).
    undo: Option<(u32, u16)>,
    /// When the loss timer is due, and whether it is RACK's reordering timer (else a tail loss probe).
    loss_timer: Option<(Instant, bool)>,
    /// A recovery just began: its first retransmission may exceed `cwnd`.
    rexmit_now: bool,
    /// Start of the out-of-order segment received last (first SACK block, RFC 2018 §4).
    last_ooo: Option<u32>,
    /// A duplicate segment arrived: report it in the next ACK's first SACK block (D-SACK, RFC 2883).
    dsack_out: Option<(u32, u32)>,

    // Loss recovery and timing.
    rtt: RttEstimator,
    cc: Congestion,
    dupacks: u32,
    retries: u8,
    /// The SYN being timed for an RTT sample (data is timed by the scoreboard).
    timed: Option<(u32, Instant)>,
    /// Timers by kind: the deadline the connection wants (`due`; `None`: disarmed) and the wheel entry standing
    /// for it (`timers`), which may be earlier than `due` or outlive a disarm (see `TcpStack::rearm`).
    pub timers: [Option<TimerId>; 5],
    /// See `timers`: monotonic microseconds, `NOT_DUE` when disarmed (a plain word keeps `Conn` small).
    due: [u64; 5],
    /// Last time anything arrived (keepalive).
    last_rx: Instant,

    // Per-cycle work the stack flushes once per connection per cycle.
    /// An ACK must go out now.
    pub ack_now: bool,
    /// Full-sized segments received since our last ACK.
    segs_unacked: u8,
    /// Bytes newly acknowledged, to report in one `Sent` event.
    pub acked_to_report: u32,
    /// The connection is on the stack's per-cycle work list.
    pub dirty: bool,
    /// Output stopped on a full TX batch with data still allowed by the window.
    pub tx_starved: bool,
    /// New data was acknowledged: restart the retransmission timer (RFC 6298 §5.3).
    pub rto_restart: bool,
    /// The app's last `sendv` did not fit: it waits for a `TcpSent` saying the window opened.
    pub app_blocked: bool,
}

/// Everything the state machine needs from the stack during one call.
#[derive(Debug)]
pub struct Cx<'a> {
    /// The cycle's time.
    pub now: Instant,
    /// Frames the cycle's TX batch can still take: output stops there (and resumes next cycle) rather than
    /// emitting segments that would be dropped and wait for a retransmission timeout.
    pub tx_room: usize,
    /// The core's pool (to free mbufs).
    pub pool: &'a mut MbufPool,
    /// Segments to emit, in order.
    pub out: &'a mut ArrayVec<Emit, 64>,
    /// Stack tunables.
    pub cfg: &'a TcpConfig,
}

/// What `input` tells the stack.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputResult {
    /// In-order segments appended to the lent queue (each owes a `Recv` event if accepted).
    pub delivered: u32,
    /// The connection just became established (passive: knock; active: connected).
    pub established: bool,
    /// The connection is over; report `Dead` with this reason (if the app holds it) and free it.
    pub dead: Option<DeadReason>,
    /// Answer with a RST carrying this sequence number (segment was unacceptable in a way that warrants one).
    pub rst: Option<u32>,
    /// The connection entered TIME_WAIT: the app is done with it.
    pub time_wait: bool,
}

/// The timestamp clock: milliseconds (RFC 7323 §5.4: 1 ms - 1 s per tick keeps PAWS safe for 24 days).
pub fn ts_now(now: Instant) -> u32 {
    (now.total_micros() / 1000) as u32
}

/// Window scale that lets `buf` bytes be advertised.
pub fn wscale_for(buf: u32) -> u8 {
    let mut shift = 0;
    while shift < 14 && (buf >> shift) > 65535 {
        shift += 1;
    }
    shift
}

impl Conn {
    /// When timer `k` (a `TimerKind` index) is due, if armed.
    pub fn due(&self, k: usize) -> Option<Instant> {
        (self.due[k] != NOT_DUE).then(|| Instant::from_micros(self.due[k]))
    }

    /// Arms (`Some`) or disarms timer `k`'s deadline (the wheel entry is the stack's business).
    pub fn set_due(&mut self, k: usize, at: Option<Instant>) {
        self.due[k] = at.map_or(NOT_DUE, |t| t.total_micros().min(NOT_DUE - 1));
    }

    fn new(local_port: u16, remote: Endpoint, iss: u32, mss: u16, cfg: &TcpConfig, now: Instant) -> Conn {
        Conn {
            state: State::Closed,
            local_port,
            remote,
            cookie: 0,
            accepted: false,
            released: false,
            listener: None,
            keepalive: false,
            keepalive_probes: 0,
            up: false,
            time_wait_counted: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            mss,
            snd_shift: 0,
            sendq: VecDeque::new(),
            sendq_head_acked: 0,
            sendq_len: 0,
            send_base: iss.wrapping_add(1),
            fin_queued: false,
            irs: 0,
            rcv_nxt: 0,
            rcv_adv: 0,
            rcv_shift: wscale_for(cfg.rcv_buf),
            rcv_buf: cfg.rcv_buf,
            unread: 0,
            lent: VecDeque::new(),
            lent_head_done: 0,
            undelivered: 0,
            ooo: Vec::new(),
            fin_received: false,
            eof_pending: false,
            ts_ok: false,
            ts_recent: 0,
            sack_ok: false,
            sb: Scoreboard::new(),
            undo: None,
            loss_timer: None,
            rexmit_now: false,
            last_ooo: None,
            dsack_out: None,
            rtt: RttEstimator::with_min_rto(cfg.rto_min),
            cc: Congestion::new_reno(mss as u32),
            dupacks: 0,
            retries: 0,
            timed: None,
            timers: [None; 5],
            due: [NOT_DUE; 5],
            last_rx: now,
            ack_now: false,
            segs_unacked: 0,
            acked_to_report: 0,
            dirty: false,
            tx_starved: false,
            rto_restart: false,
            app_blocked: false,
        }
    }

    /// An active open: emits the SYN.
    pub fn connect(local_port: u16, remote: Endpoint, iss: u32, our_mss: u16, cx: &mut Cx<'_>) -> Conn {
        // `mss` holds our own MSS until the SYN-ACK says the peer's.
        let mut c = Conn::new(local_port, remote, iss, our_mss, cx.cfg, cx.now);
        c.state = State::SynSent;
        c.accepted = true;
        c.ts_ok = true; // offered; confirmed by the SYN-ACK
        c.sack_ok = true;
        c.send_syn(our_mss, true, cx);
        c
    }

    /// A passive open from a SYN that matched a listener: emits the SYN-ACK.
    pub fn accept_syn(
        local_port: u16,
        remote: Endpoint,
        iss: u32,
        our_mss: u16,
        seg: &Segment,
        cx: &mut Cx<'_>,
    ) -> Conn {
        let mut c = Conn::new(local_port, remote, iss, seg.mss.unwrap_or(536).min(our_mss), cx.cfg, cx.now);
        c.state = State::SynReceived;
        c.irs = seg.seq;
        c.rcv_nxt = seg.seq.wrapping_add(1);
        c.rcv_adv = c.rcv_nxt;
        c.apply_syn_options(seg);
        c.cc = Congestion::new_reno(c.smss() as u32);
        c.snd_wnd = seg.window as u32; // never scaled in a SYN
        c.snd_wl1 = seg.seq;
        c.send_syn(our_mss, false, cx);
        c
    }

    /// A connection rebuilt from a valid SYN cookie (no state was kept: no window scaling or timestamps).
    pub fn from_cookie(local_port: u16, remote: Endpoint, seg: &Segment, mss: u16, cx: &mut Cx<'_>) -> Conn {
        let iss = seg.ack.unwrap_or(0).wrapping_sub(1);
        let mut c = Conn::new(local_port, remote, iss, mss, cx.cfg, cx.now);
        c.state = State::Established;
        c.irs = seg.seq.wrapping_sub(1);
        c.rcv_nxt = seg.seq;
        c.rcv_shift = 0;
        c.rcv_buf = cx.cfg.rcv_buf.min(65535);
        c.snd_una = iss.wrapping_add(1);
        c.snd_nxt = c.snd_una;
        c.snd_max = c.snd_una;
        c.send_base = c.snd_una;
        c.snd_wnd = seg.window as u32;
        c.snd_wl1 = seg.seq;
        c.snd_wl2 = c.snd_una;
        c.rcv_adv = c.rcv_nxt.wrapping_add(c.rcv_window());
        c.cc = Congestion::new_reno(mss as u32);
        c
    }

    fn apply_syn_options(&mut self, seg: &Segment) {
        match seg.wscale {
            Some(s) => self.snd_shift = s.min(14),
            None => {
                // Scaling is used only if both sides offer it (RFC 7323 §2.2).
                self.snd_shift = 0;
                self.rcv_shift = 0;
                self.rcv_buf = self.rcv_buf.min(65535);
            }
        }
        self.ts_ok = seg.timestamps.is_some();
        if let Some((tsval, _)) = seg.timestamps {
            self.ts_recent = tsval;
        }
        self.sack_ok = seg.sack_permitted;
    }

    fn send_syn(&mut self, our_mss: u16, active: bool, cx: &mut Cx<'_>) {
        let wscale = if active || self.rcv_shift > 0 || self.snd_shift > 0 { Some(self.rcv_shift) } else { None };
        let ts = self.ts_ok.then(|| (ts_now(cx.now), if active { 0 } else { self.ts_recent }));
        // A SYN's window is never scaled (RFC 7323 §2.2); it is what the peer may send first.
        let window = self.rcv_window().min(65535);
        if !active {
            let right = self.rcv_nxt.wrapping_add(window);
            if seq_gt(right, self.rcv_adv) {
                self.rcv_adv = right;
            }
        }
        let _ = cx.out.try_push(Emit {
            seq: self.iss,
            flags: TcpFlags::SYN,
            ack: (!active).then_some(self.rcv_nxt),
            window: window as u16,
            offset: 0,
            len: 0,
            syn_opts: Some((our_mss, wscale)),
            timestamps: ts,
            sack_permitted: self.sack_ok,
            sack: [None; 3],
            retransmit: false,
        });
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = self.snd_nxt;
        if self.timed.is_none() {
            self.timed = Some((self.iss, cx.now));
        }
    }

    // ------------------------------------------------------------------------------------------ window

    /// Bytes we can still take in: the buffer minus what the app holds and what waits out of order.
    fn rcv_window(&self) -> u32 {
        let ooo: u32 = self.ooo.iter().map(|(_, m)| m.len() as u32).sum();
        self.rcv_buf.saturating_sub(self.unread + ooo)
    }

    /// What the peer may still send beyond `rcv_nxt` per our last advertisement (0 once data filled it).
    fn advertised(&self) -> u32 {
        if seq_gt(self.rcv_adv, self.rcv_nxt) {
            self.rcv_adv.wrapping_sub(self.rcv_nxt)
        } else {
            0
        }
    }

    /// The window field for an outgoing segment; advances `rcv_adv` (never backwards).
    fn advertise(&mut self) -> u16 {
        let wnd = self.rcv_window();
        let right = self.rcv_nxt.wrapping_add(wnd);
        let right = if seq_gt(right, self.rcv_adv) { right } else { self.rcv_adv };
        self.rcv_adv = right;
        let field = right.wrapping_sub(self.rcv_nxt) >> self.rcv_shift;
        field.min(65535) as u16
    }

    /// Bytes `sendv` may accept now.
    pub fn send_room(&self, cfg: &TcpConfig) -> usize {
        if !matches!(self.state, State::Established | State::CloseWait) || self.fin_queued {
            return 0;
        }
        let wnd = (self.snd_wnd as usize).max(self.in_flight_bytes());
        let cap = wnd.min(cfg.snd_buf as usize);
        cap.saturating_sub(self.sendq_len)
    }

    /// Payload bytes per full segment: the MSS less the options every segment carries (timestamps: 12).
    pub fn smss(&self) -> usize {
        (self.mss as usize).saturating_sub(if self.ts_ok { 12 } else { 0 }).max(64)
    }

    fn in_flight_bytes(&self) -> usize {
        self.snd_nxt.wrapping_sub(self.snd_una) as usize
    }

    /// Bytes of data the app handed us that are not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.sendq_len
    }

    // ------------------------------------------------------------------------------------------ app calls

    /// `sendv`: takes as much of `bufs` as the window has room for; returns the bytes taken.
    pub fn sendv(&mut self, bufs: &[AppBuf], cfg: &TcpConfig) -> usize {
        let mut room = self.send_room(cfg);
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        self.app_blocked = offered > room;
        let mut taken = 0;
        for b in bufs {
            if room == 0 {
                break;
            }
            let n = b.len().min(room);
            if n == 0 {
                continue;
            }
            self.sendq.push_back(b.prefix(n));
            self.sendq_len += n;
            room -= n;
            taken += n;
        }
        taken
    }

    /// `recv_done`: the app gives back `len` bytes of lent data, oldest first. Returns false if it gives back
    /// more than it holds.
    pub fn recv_done(&mut self, len: u32, pool: &mut MbufPool) -> bool {
        if len > self.unread {
            return false;
        }
        let before = self.rcv_window();
        let mut left = len;
        while left > 0 {
            let Some(front) = self.lent.front() else { break };
            let avail = front.len() as u32 - self.lent_head_done;
            if left >= avail {
                left -= avail;
                self.lent_head_done = 0;
                if let Some(m) = self.lent.pop_front() {
                    pool.free(m);
                }
            } else {
                self.lent_head_done += left;
                left = 0;
            }
        }
        self.unread -= len;
        // Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): announce an opening of at least
        // min(half the buffer, one MSS)... or any opening from zero.
        let after = self.rcv_window();
        let adv_now = self.advertised();
        if after > adv_now && (before == 0 || after - adv_now >= (self.rcv_buf / 2).min(self.mss as u32)) {
            self.ack_now = true;
        }
        true
    }

    /// Pointers of lent segments whose `Recv` event is owed (delivered after a late accept), oldest first.
    pub fn take_undelivered(&mut self, pool: &MbufPool, out: &mut Vec<(*const u8, u32)>) {
        let n = self.undelivered as usize;
        let skip = self.lent.len() - n;
        for (i, m) in self.lent.iter().enumerate().skip(skip) {
            let data = pool.data(m);
            let off = if i == 0 { self.lent_head_done as usize } else { 0 };
            out.push((data[off..].as_ptr(), (data.len() - off) as u32));
        }
        self.undelivered = 0;
    }

    /// The newest lent segment (for its `Recv` event).
    pub fn newest_lent(&self, pool: &MbufPool, back: usize) -> Option<(*const u8, u32)> {
        let m = self.lent.get(self.lent.len().checked_sub(1 + back)?)?;
        let data = pool.data(m);
        Some((data.as_ptr(), data.len() as u32))
    }

    /// `close`: queue our FIN after the data (RFC 9293 §3.10.4).
    pub fn close(&mut self) -> bool {
        match self.state {
            State::Established => self.state = State::FinWait1,
            State::CloseWait => self.state = State::LastAck,
            State::SynReceived => self.state = State::FinWait1,
            _ => return false,
        }
        self.fin_queued = true;
        true
    }

    /// Frees every mbuf the connection holds. Lent ones may be in events the app has not read yet (data and the
    /// connection's end often come in one cycle): they wait out the app's turn in the pool's quarantine.
    pub fn release(&mut self, pool: &mut MbufPool) {
        for m in self.lent.drain(..) {
            pool.free_after_app(m);
        }
        for (_, m) in self.ooo.drain(..) {
            pool.free(m);
        }
        self.unread = 0;
        self.lent_head_done = 0;
        self.undelivered = 0;
        self.sendq.clear();
        self.sendq_len = 0;
        self.sb.clear();
        self.loss_timer = None;
    }

    /// Sequence number for a RST aborting this connection.
    pub fn rst_seq(&self) -> u32 {
        self.snd_nxt
    }

    /// Whether `Eof` was received and all data before it delivered.
    pub fn fin_seq_reached(&self) -> bool {
        self.fin_received
    }

    // ------------------------------------------------------------------------------------------ input

    /// Processes one segment addressed to this connection. `payload` is the segment's data (trimmed to the
    /// payload) when `seg.len > 0`; the connection keeps it (lent or out of order) or frees it.
    pub fn input(&mut self, seg: &Segment, payload: Option<Mbuf>, cx: &mut Cx<'_>) -> InputResult {
        let mut res = InputResult::default();
        self.last_rx = cx.now;
        self.keepalive_probes = 0;
        if self.state == State::SynSent {
            self.input_syn_sent(seg, cx, &mut res);
            if let Some(m) = payload {
                cx.pool.free(m); // data on a SYN-ACK is rare; the peer retransmits it
            }
            return res;
        }
        let payload = self.input_synchronized(seg, payload, cx, &mut res);
        if let Some(m) = payload {
            cx.pool.free(m);
        }
        res
    }

    fn input_syn_sent(&mut self, seg: &Segment, cx: &mut Cx<'_>, res: &mut InputResult) {
        let syn = seg.flags.contains(TcpFlags::SYN);
        let rst = seg.flags.contains(TcpFlags::RST);
        if let Some(ack) = seg.ack {
            if seq_le(ack, self.iss) || seq_gt(ack, self.snd_max) {
                if !rst {
                    res.rst = Some(ack);
                }
                return;
            }
        }
        if rst {
            if seg.ack.is_some() {
                res.dead = Some(DeadReason::Refused);
                self.state = State::Closed;
            }
            return;
        }
        if !syn {
            return;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.rcv_adv = self.rcv_nxt;
        self.mss = seg.mss.unwrap_or(536).min(self.mss);
        self.apply_syn_options(seg);
        if !self.ts_ok {
            self.ts_recent = 0;
        }
        self.cc = Congestion::new_reno(self.smss() as u32);
        match seg.ack {
            Some(ack) => {
                self.snd_una = ack;
                self.snd_wnd = seg.window as u32; // SYN-ACK windows are never scaled
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = ack;
                self.state = State::Established;
                self.sample_rtt(ack, seg, cx.now);
                if self.retries > 0 && self.rtt.srtt().is_none() {
                    self.rtt.reinit_after_syn_timeout(); // RFC 6298 §5.7
                }
                self.retries = 0;
                self.ack_now = true;
                res.established = true;
            }
            None => {
                // Simultaneous open (RFC 9293 §3.5): answer with SYN-ACK.
                self.state = State::SynReceived;
                self.snd_wnd = seg.window as u32;
                self.snd_wl1 = seg.seq;
                self.snd_nxt = self.iss;
                self.send_syn(self.mss, false, cx);
            }
        }
    }

    /// RFC 9293 §3.10.7.4 for every state past SYN-SENT. Returns the payload if nobody kept it.
    fn input_synchronized(
        &mut self,
        seg: &Segment,
        mut payload: Option<Mbuf>,
        cx: &mut Cx<'_>,
        res: &mut InputResult,
    ) -> Option<Mbuf> {
        let rst = seg.flags.contains(TcpFlags::RST);
        let syn = seg.flags.contains(TcpFlags::SYN);
        let fin = seg.flags.contains(TcpFlags::FIN);

        // 0. SYN-RECEIVED, before the sequence check: an ACK of anything but our SYN gets a RST <SEQ=SEG.ACK> and
        // is dropped (RFC 9293 §3.5.2 rule 2; Linux's `tcp_check_req` checks in this order too). The usual sender
        // is the peer's TIME_WAIT socket of an old connection on the same 4-tuple (a stray or flood SYN reused
        // its port): our SYN-ACK draws its ACK, not a RST, and re-ACKing that as the sequence check would (it
        // is out of window) made the two trade ACKs until our SYN retries ran out, ~2 minutes. The RST ends the
        // TIME_WAIT, so our next SYN-ACK meets no socket and draws the RST that frees this connection.
        if self.state == State::SynReceived && !rst {
            if let Some(ack) = seg.ack.filter(|&a| a != self.iss.wrapping_add(1)) {
                res.rst = Some(ack);
                return payload;
            }
        }

        // 1. Sequence acceptability.
        let wnd = self.advertised().max(self.rcv_window());
        let seg_len = seg.seq_len();
        let end = seg.seq.wrapping_add(seg_len.max(1)).wrapping_sub(1);
        let in_window = |s: u32| seq_le(self.rcv_nxt, s) && seq_lt(s, self.rcv_nxt.wrapping_add(wnd));
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            // A bare ACK from a peer that filled our window carries the right edge as its sequence number: RFC
            // 9293's `SEG.SEQ < RCV.NXT+RCV.WND` would drop it, and its ACK field with it, which deadlocks two
            // senders each waiting for the other's ACKs while a hole holds our right edge still. Linux and BSD
            // accept it (`seq <= rcv_nxt + window`).
            (0, _) => in_window(seg.seq) || (!rst && seg.seq == self.rcv_nxt.wrapping_add(wnd)),
            (_, 0) => false,
            _ => in_window(seg.seq) || in_window(end),
        };
        if !acceptable {
            if !rst {
                // An old duplicate (or a probe): re-ACK so the peer resynchronizes.
                self.ack_now = true;
            }
            // A zero-window probe still carries the peer's latest ACK and window.
            if seg_len > 0 && wnd == 0 && seg.seq == self.rcv_nxt && !rst {
                self.process_ack(seg, cx, res);
            }
            return payload;
        }

        // 2. RST (RFC 5961 §3.2): exact match resets; in-window but not exact gets a challenge ACK. In
        // TIME_WAIT a RST is ignored (RFC 1337: it would cut the quiet time short).
        if rst && self.state == State::TimeWait {
            return payload;
        }
        if rst {
            if seg.seq == self.rcv_nxt {
                res.dead = Some(DeadReason::Reset);
                self.state = State::Closed;
            } else {
                self.ack_now = true;
            }
            return payload;
        }

        // 3. SYN in a synchronized state (RFC 5961 §4.2): challenge ACK, drop.
        if syn {
            if self.state == State::SynReceived && seg.seq == self.irs {
                // A retransmitted SYN: our SYN-ACK was lost. Send it again.
                self.snd_nxt = self.iss;
                self.send_syn(self.mss, false, cx);
            } else {
                self.ack_now = true;
            }
            return payload;
        }

        // Timestamps: remember the most recent (RFC 7323 §4.3).
        if let Some((tsval, _)) = seg.timestamps {
            if self.ts_ok && seq_le(seg.seq, self.rcv_nxt) && seq_ge(tsval, self.ts_recent) {
                self.ts_recent = tsval;
            }
        }

        // 4. ACK.
        if seg.ack.is_none() {
            return payload;
        }
        if !self.process_ack(seg, cx, res) {
            return payload;
        }
        if res.dead.is_some() || self.state == State::Closed {
            return payload;
        }

        // 5. Data.
        if seg.len > 0 {
            if matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
                payload = self.accept_data(seg, payload, cx, res);
            } else {
                self.ack_now = true; // data after their FIN: just re-ACK
            }
        }

        // 6. FIN: only once everything before it is in.
        if fin && seg.seq.wrapping_add(seg.len) == self.rcv_nxt && !self.fin_received {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.fin_received = true;
            self.eof_pending = true;
            self.ack_now = true;
            match self.state {
                State::SynReceived | State::Established => self.state = State::CloseWait,
                State::FinWait1 => {
                    // Our FIN not yet acknowledged (else process_ack moved us to FIN_WAIT_2).
                    self.state = State::Closing;
                }
                State::FinWait2 => self.enter_time_wait(res),
                _ => {}
            }
        } else if fin && seq_gt(seg.seq.wrapping_add(seg.len), self.rcv_nxt) {
            // A FIN beyond a hole: ACK what we have so the peer retransmits the gap.
            self.ack_now = true;
        }
        payload
    }

    fn enter_time_wait(&mut self, res: &mut InputResult) {
        // The app is done with the connection (the stack reports `Dead`); it lingers for 2 MSL.
        self.state = State::TimeWait;
        res.time_wait = true;
    }

    /// The ACK field (step 5 of §3.10.7.4). Returns false when the segment must be dropped.
    fn process_ack(&mut self, seg: &Segment, cx: &mut Cx<'_>, res: &mut InputResult) -> bool {
        let Some(ack) = seg.ack else { return false };
        if self.state == State::SynReceived {
            if seq_lt(self.snd_una, ack) && seq_le(ack, self.snd_max) {
                self.state = State::Established;
                self.snd_wnd = (seg.window as u32) << self.snd_shift;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = ack;
                res.established = true;
            } else {
                res.rst = Some(ack);
                return false;
            }
        }
        if seq_gt(ack, self.snd_max) {
            // Acknowledges something we never sent (RFC 5961 §5.2): re-ACK and drop.
            self.ack_now = true;
            return false;
        }
        let max_wnd = (65535u32 << self.snd_shift).max(self.snd_wnd);
        if seq_lt(ack, self.snd_una.wrapping_sub(max_wnd)) {
            self.ack_now = true;
            return false;
        }
        let window = (seg.window as u32) << self.snd_shift;
        let now_us = micros(cx.now);
        let sack = if self.sack_ok { seg.sack } else { [None; 3] };
        let probe_repaired = self.sb.probe_repaired_loss(ack, false);
        let outcome = self.sb.on_ack(ack, &sack, self.snd_max, now_us);
        if let Some(rtt) = outcome.rtt_sample {
            // Records give an unambiguous sample (never retransmitted) for any ACK, not one per round trip.
            self.rtt.on_sample(Duration::from_micros(u64::from(rtt)));
        }
        if outcome.dsack {
            self.sb.on_dsack(self.snd_una, self.snd_max);
            // Only duplicates of what this recovery resent count: the network may duplicate segments itself.
            let left = sack[0].map_or(self.snd_una, |(l, _)| l);
            if let Some((marker, n)) = self.undo.as_mut() {
                if *n > 0 && seq_ge(left, *marker) {
                    *n -= 1;
                    if *n == 0 {
                        // Every retransmission of the last recovery arrived twice: the loss was reordering.
                        self.undo = None;
                        self.cc.undo();
                    }
                }
            }
        }
        let advanced = seq_gt(ack, self.snd_una);
        if advanced {
            if probe_repaired && !outcome.dsack && !self.cc.in_recovery() {
                self.cc.on_probe_repair(SeqNumber(self.snd_una), SeqNumber(self.snd_max));
            }
            self.on_new_ack(ack, seg, cx);
        } else if ack == self.snd_una
            && self.snd_max != self.snd_una
            && !seg.flags.contains(TcpFlags::FIN)
            && seg.len == 0
            && window == self.snd_wnd
            && !self.sack_ok
        {
            // A duplicate ACK (RFC 5681 §2). Without SACK the third one is all the loss detection there is.
            self.dupacks += 1;
            if self.dupacks == 3 && self.sb.mark_head_lost() {
                self.on_loss_found();
            }
        }
        if outcome.newly_sacked || advanced {
            self.rack_detect(cx.now);
            if self.loss_timer.is_none_or(|(_, reorder)| !reorder) {
                self.schedule_probe(cx.now, cx.cfg);
            }
        }
        // Window update (RFC 9293 §3.10.7.4, SND.WL1/WL2 rule).
        if seq_lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && seq_le(self.snd_wl2, ack)) {
            let opened = window > self.snd_wnd;
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            let _ = opened; // the stack flushes every connection that received a segment this cycle
        }
        // Our FIN acknowledged?
        let fin_acked = self.fin_queued && self.fin_sent() && ack == self.fin_seq().wrapping_add(1);
        match self.state {
            State::FinWait1 if fin_acked => self.state = State::FinWait2,
            State::Closing if fin_acked => self.enter_time_wait(res),
            State::LastAck if fin_acked => {
                self.state = State::Closed;
                res.dead = Some(DeadReason::Closed);
            }
            _ => {}
        }
        true
    }

    fn on_new_ack(&mut self, ack: u32, seg: &Segment, cx: &mut Cx<'_>) {
        let acked_seq = ack.wrapping_sub(self.snd_una);
        self.sample_rtt(ack, seg, cx.now);
        // Data bytes acknowledged: the part of [snd_una, ack) inside [send_base, send_base + sendq_len).
        let data_acked = {
            let start = if seq_gt(self.send_base, self.snd_una) { self.send_base } else { self.snd_una };
            let end_data = self.send_base.wrapping_add(self.sendq_len as u32);
            let end = if seq_lt(ack, end_data) { ack } else { end_data };
            if seq_gt(end, start) {
                end.wrapping_sub(start) as usize
            } else {
                0
            }
        };
        self.pop_acked(data_acked);
        self.acked_to_report = self.acked_to_report.saturating_add(data_acked as u32);
        self.snd_una = ack;
        if seq_lt(self.snd_nxt, self.snd_una) {
            self.snd_nxt = self.snd_una;
        }
        // RFC 6298 §5.3: new data acknowledged restarts the timer.
        self.rto_restart = true;
        if self.cc.on_ack(acked_seq as usize, SeqNumber(self.snd_una)) {
            self.sb.on_recovery_end();
        } else if self.cc.in_recovery() && !self.sack_ok && self.sb.mark_head_lost() {
            // NewReno (RFC 6582): a partial ACK means the next hole is lost too.
            self.on_loss_found();
        }
        self.dupacks = 0;
        self.retries = 0;
    }

    /// RACK (RFC 8985 §6.2 step 5) after an ACK or when the reordering timer fires: marks lost what has waited
    /// long enough, and sets the reordering timer for what has not yet.
    fn rack_detect(&mut self, now: Instant) {
        let srtt = self.rtt.srtt().map_or(u32::MAX, |d| d.total_micros().min(u64::from(u32::MAX)) as u32);
        let reo_wnd = self.sb.reo_wnd(srtt, self.cc.recovering(), self.smss() as u32);
        let (marked, wait) = self.sb.detect_loss(micros(now), reo_wnd);
        match wait {
            Some(us) => self.loss_timer = Some((now + Duration::from_micros(u64::from(us)), true)),
            None if self.loss_timer.is_some_and(|(_, reorder)| reorder) => self.loss_timer = None,
            None => {}
        }
        if marked {
            self.on_loss_found();
        }
    }

    /// Something was newly marked lost: a congestion event, unless it belongs to the one being handled.
    fn on_loss_found(&mut self) {
        if self.cc.on_loss(SeqNumber(self.snd_una), SeqNumber(self.snd_max)) {
            self.undo = Some((self.snd_una, 0));
            self.rexmit_now = true;
        }
    }

    /// Arms the tail loss probe (RFC 8985 §7.2) after new data went out or new data was acknowledged: two SRTTs
    /// (a floor of [`PTO_MIN`] for timer and ACK jitter), more when a lone segment may meet a delayed ACK, never
    /// past the RTO. Only for SACK peers (the probe's outcome is read from SACKs), one probe per episode.
    ///
    /// Unlike RFC 8985, also in recovery (fast, or after a timeout): a lost retransmission at the end of what was sent, or segments marked
    /// lost behind a `pipe` whose ACKs were lost (IX peers send one ACK per batch), otherwise leave nothing to
    /// elicit the SACKs RACK needs, and only the RTO would end the wait.
    fn schedule_probe(&mut self, now: Instant, cfg: &TcpConfig) {
        let in_recovery = self.cc.recovering();
        let eligible = self.sack_ok
            && (in_recovery || (self.sb.lost_bytes() == 0 && !self.sb.probe_outstanding()))
            && self.snd_max != self.snd_una
            && self.retries == 0;
        if !eligible {
            if self.loss_timer.is_some_and(|(_, reorder)| !reorder) {
                self.loss_timer = None;
            }
            return;
        }
        let Some(srtt) = self.rtt.srtt() else { return };
        let srtt = srtt.total_micros();
        let mut pto = (2 * srtt).max(PTO_MIN.total_micros());
        if self.snd_max.wrapping_sub(self.snd_una) as usize <= self.smss() {
            // The peer may hold its ACK for a lone segment for its delayed-ACK time (ours, and Linux's least).
            pto = pto.max(srtt + srtt / 2 + cfg.delayed_ack.total_micros());
        }
        let pto = pto.min(self.rtt.rto().total_micros());
        self.loss_timer = Some((now + Duration::from_micros(pto), false));
    }

    /// When the loss timer (reordering or tail loss probe) should fire, if at all.
    pub fn loss_timer(&self) -> Option<Instant> {
        self.loss_timer.map(|(at, _)| at)
    }

    /// The loss timer fired: run RACK again (reordering timer), or send a tail loss probe: new data if the
    /// peer's window allows, else the last segment again (RFC 8985 §7.3).
    pub fn on_loss_timer(&mut self, cx: &mut Cx<'_>) {
        let Some((_, reorder)) = self.loss_timer.take() else { return };
        if !self.sending_state() || self.snd_max == self.snd_una {
            return;
        }
        if reorder {
            self.rack_detect(cx.now);
            self.output(cx);
            return;
        }
        let in_recovery = self.cc.recovering();
        if in_recovery && self.sb.lost_bytes() > 0 {
            // Stalled behind `pipe`: resend the first lost segment whatever the window says.
            self.rexmit_now = true;
            self.output(cx);
            self.schedule_probe(cx.now, cx.cfg);
            return;
        }
        if !in_recovery && (self.sb.probe_outstanding() || self.sb.lost_bytes() > 0) {
            return;
        }
        let before = self.snd_max;
        self.output_with(cx, self.smss());
        if self.snd_max != before {
            if !in_recovery {
                self.sb.on_probe(self.snd_max, false);
            }
            return;
        }
        if let Some(last) = self.sb.last_unsacked() {
            if cx.out.is_full() || cx.out.len() >= cx.tx_room {
                return;
            }
            self.send_segment(last, cx);
            self.sb.on_retransmit(last.seq, micros(cx.now));
            if !in_recovery {
                // Only outside recovery does a repaired tail mean a loss congestion control has not heard of.
                self.sb.on_probe(self.snd_max, true);
            }
        }
        // Another probe if this one meets silence too (the RTO, which probes do not restart, still runs).
        self.schedule_probe(cx.now, cx.cfg);
    }

    fn pop_acked(&mut self, mut n: usize) {
        self.sendq_len -= n;
        self.send_base = self.send_base.wrapping_add(n as u32);
        while n > 0 {
            let Some(front) = self.sendq.front() else { break };
            let avail = front.len() - self.sendq_head_acked;
            if n >= avail {
                n -= avail;
                self.sendq_head_acked = 0;
                self.sendq.pop_front();
            } else {
                self.sendq_head_acked += n;
                n = 0;
            }
        }
    }

    fn sample_rtt(&mut self, ack: u32, seg: &Segment, now: Instant) {
        // Karn's rule: `timed` is cleared when the SYN is retransmitted, so a sample is never ambiguous.
        if let Some((seq, sent)) = self.timed {
            if seq_gt(ack, seq) {
                self.rtt.on_sample(now - sent);
                self.timed = None;
                return;
            }
        }
        let _ = seg;
    }

    fn accept_data(
        &mut self,
        seg: &Segment,
        payload: Option<Mbuf>,
        cx: &mut Cx<'_>,
        res: &mut InputResult,
    ) -> Option<Mbuf> {
        let mut m = payload?;
        let mut seq = seg.seq;
        // Trim what we already have off the front.
        if seq_lt(seq, self.rcv_nxt) {
            let dup = self.rcv_nxt.wrapping_sub(seq) as usize;
            // Tell the sender it sent this twice (RFC 2883): it may undo a needless window reduction.
            self.dsack_out = Some((seq, seq.wrapping_add(dup.min(m.len()) as u32)));
            if dup >= m.len() || m.adjust(dup).is_err() {
                self.ack_now = true;
                return Some(m);
            }
            seq = self.rcv_nxt;
        }
        // Trim what does not fit the window off the back.
        let adv_room = if seq_gt(self.rcv_adv, seq) { self.rcv_adv.wrapping_sub(seq) } else { 0 };
        let room = adv_room.max(self.rcv_window().saturating_sub(seq.wrapping_sub(self.rcv_nxt)));
        if (m.len() as u32) > room && (room == 0 || m.trim(room as usize).is_err()) {
            self.ack_now = true;
            return Some(m);
        }
        if seq != self.rcv_nxt {
            // Out of order: keep it (sorted, no overlap with what we hold) and send a duplicate ACK now.
            self.ack_now = true;
            return self.insert_ooo(seq, m, cx.pool);
        }
        self.deliver(m, res);
        // Anything that now fits from the out-of-order queue.
        while let Some(pos) = self.ooo.iter().position(|(s, _)| seq_le(*s, self.rcv_nxt)) {
            let (s, mut m) = self.ooo.remove(pos);
            let skip = self.rcv_nxt.wrapping_sub(s) as usize;
            if skip >= m.len() || m.adjust(skip).is_err() {
                cx.pool.free(m);
                continue;
            }
            self.deliver(m, res);
            self.ack_now = true; // filled a hole: tell the sender at once (RFC 5681 §4.2)
        }
        // Delayed ACK: every second full-sized segment at once, else on the timer (RFC 1122 §4.2.3.2).
        self.segs_unacked = self.segs_unacked.saturating_add(1);
        if self.segs_unacked >= 2 || !self.ooo.is_empty() {
            self.ack_now = true;
        }
        None
    }

    fn deliver(&mut self, m: Mbuf, res: &mut InputResult) {
        let len = m.len() as u32;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(len);
        self.unread += len;
        self.lent.push_back(m);
        res.delivered += 1;
        if !self.accepted {
            self.undelivered += 1;
        }
    }

    fn insert_ooo(&mut self, seq: u32, m: Mbuf, pool: &mut MbufPool) -> Option<Mbuf> {
        let end = seq.wrapping_add(m.len() as u32);
        let key = |s: u32| s.wrapping_sub(self.rcv_nxt);
        let pos = self.ooo.partition_point(|(s, _)| key(*s) < key(seq));
        // Drop it if it overlaps a neighbour (the sender fills gaps again; keeps the list disjoint).
        let overlaps_prev = pos > 0 && {
            let (s, held) = &self.ooo[pos - 1];
            seq_lt(seq, s.wrapping_add(held.len() as u32))
        };
        let overlaps_next = self.ooo.get(pos).is_some_and(|(s, _)| seq_lt(*s, end));
        if overlaps_prev || overlaps_next {
            if self.ooo.get(pos).is_some_and(|(s, held)| *s == seq && held.len() == m.len()) {
                self.dsack_out = Some((seq, end));
            }
            return Some(m);
        }
        if self.ooo.len() >= OOO_MAX {
            // Keep the segments closest to the hole: evict the farthest if the new one is nearer.
            if pos == self.ooo.len() {
                return Some(m);
            }
            if let Some((_, old)) = self.ooo.pop() {
                pool.free(old);
            }
        }
        self.ooo.insert(pos, (seq, m));
        self.last_ooo = Some(seq);
        None
    }

    // ------------------------------------------------------------------------------------------ output

    fn fin_seq(&self) -> u32 {
        self.send_base.wrapping_add(self.sendq_len as u32)
    }

    /// Our FIN has gone out at least once (so an ACK beyond it acknowledges it).
    fn fin_sent(&self) -> bool {
        self.fin_queued && seq_gt(self.snd_max, self.fin_seq())
    }

    /// SACK blocks for an ACK: a duplicate just received (D-SACK, RFC 2883 §4), then the out-of-order data we
    /// hold, merged into ranges, the most recently received range first (RFC 2018 §4).
    fn sack_blocks(&mut self) -> [Option<(u32, u32)>; 3] {
        let mut out = [None; 3];
        if !self.sack_ok {
            return out;
        }
        let dsack = self.dsack_out.take();
        if self.ooo.is_empty() {
            out[0] = dsack;
            return out;
        }
        // `ooo` is sorted and disjoint: merge touching segments into ranges on the fly.
        let mut first: Option<(u32, u32)> = None;
        let mut others: ArrayVec<(u32, u32), 3> = ArrayVec::new();
        let mut cur: Option<(u32, u32)> = None;
        let last = self.last_ooo;
        let mut flush = |r: (u32, u32), first: &mut Option<(u32, u32)>| {
            if first.is_none() && last.is_some_and(|s| seq_le(r.0, s) && seq_lt(s, r.1)) {
                *first = Some(r);
            } else if !others.is_full() {
                others.push(r);
            }
        };
        for (s, m) in &self.ooo {
            let e = s.wrapping_add(m.len() as u32);
            cur = match cur {
                Some((l, r)) if *s == r => Some((l, e)),
                Some(r) => {
                    flush(r, &mut first);
                    Some((*s, e))
                }
                None => Some((*s, e)),
            };
        }
        if let Some(r) = cur {
            flush(r, &mut first);
        }
        let mut n = 0;
        for r in dsack.into_iter().chain(first).chain(others) {
            if n < 3 {
                out[n] = Some(r);
                n += 1;
            }
        }
        out
    }

    /// Whether our ACKs must carry SACK blocks (out-of-order data held, or a D-SACK owed), so they go out as
    /// pure ACKs.
    pub fn needs_sack(&self) -> bool {
        !self.ooo.is_empty() || self.dsack_out.is_some()
    }

    /// Our FIN must go out from the current `snd_nxt` (first time, or again after a rewind).
    fn fin_pending(&self) -> bool {
        self.fin_queued && seq_le(self.snd_nxt, self.fin_seq())
    }

    fn header(&mut self, seq: u32, flags: TcpFlags, now: Instant) -> Emit {
        Emit {
            seq,
            flags,
            ack: Some(self.rcv_nxt),
            window: self.advertise(),
            offset: 0,
            len: 0,
            syn_opts: None,
            timestamps: self.ts_ok.then(|| (ts_now(now), self.ts_recent)),
            sack_permitted: false,
            sack: [None; 3],
            retransmit: false,
        }
    }

    fn sending_state(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck)
    }

    /// Sends what the congestion window allows: segments marked lost first (RFC 6675 NextSeg rule 1), then new
    /// data (and our FIN) as far as the peer's window allows. Returns whether anything went out.
    pub fn output(&mut self, cx: &mut Cx<'_>) -> bool {
        self.output_with(cx, 0)
    }

    /// [`output`](Conn::output) with `extra` bytes of congestion window (a tail loss probe's one segment).
    fn output_with(&mut self, cx: &mut Cx<'_>, extra: usize) -> bool {
        if !self.sending_state() {
            return false;
        }
        let mut sent = false;
        let cwnd = self.cc.cwnd() as usize + extra;
        let now_us = micros(cx.now);
        let mut from = self.snd_una;
        while let Some(seg) = self.sb.next_lost(from) {
            let pipe = self.pipe();
            // A recovery's first retransmission goes out whatever `pipe` says (RFC 6675 §5 step 4.3): ACKs may
            // have stopped (the peer coalesces them, some are lost), and only this one can bring more.
            let fast_retransmit = std::mem::take(&mut self.rexmit_now);
            if !fast_retransmit && pipe > 0 && pipe + seg.len.max(1) > cwnd {
                break;
            }
            if cx.out.is_full() || cx.out.len() >= cx.tx_room {
                self.tx_starved = true;
                return sent;
            }
            self.send_segment(seg, cx);
            self.sb.on_retransmit(seg.seq, now_us);
            if let Some((_, n)) = self.undo.as_mut() {
                *n = n.saturating_add(1);
            }
            from = seg.seq.wrapping_add(seg.len as u32 + seg.fin as u32);
            sent = true;
        }
        self.rexmit_now = false;
        loop {
            let offset = self.snd_nxt.wrapping_sub(self.send_base) as usize;
            let unsent = self.sendq_len.saturating_sub(offset);
            let peer_room = (self.snd_wnd as usize).saturating_sub(self.in_flight_bytes());
            let room = peer_room.min(cwnd.saturating_sub(self.pipe()));
            let len = unsent.min(room).min(self.smss());
            let fin_now = self.fin_pending() && len == unsent;
            if len == 0 && !fin_now {
                break;
            }
            if len == 0 && fin_now && offset > self.sendq_len {
                break;
            }
            if self.sb.is_full() {
                break;
            }
            if cx.out.is_full() || cx.out.len() >= cx.tx_room {
                self.tx_starved = true;
                break;
            }
            let mut flags = TcpFlags::EMPTY;
            if fin_now {
                flags.insert(TcpFlags::FIN);
            }
            if len > 0 && len == unsent {
                flags.insert(TcpFlags::PSH);
            }
            let mut e = self.header(self.snd_nxt, flags, cx.now);
            e.offset = offset;
            e.len = len;
            let _ = cx.out.try_push(e);
            self.sb.on_send(self.snd_nxt, len, fin_now, now_us);
            self.snd_nxt = self.snd_nxt.wrapping_add(len as u32 + fin_now as u32);
            if seq_gt(self.snd_nxt, self.snd_max) {
                self.snd_max = self.snd_nxt;
            }
            sent = true;
            self.ack_now = false;
            self.segs_unacked = 0;
            if fin_now {
                break;
            }
        }
        if sent && self.loss_timer.is_none_or(|(_, reorder)| !reorder) {
            self.schedule_probe(cx.now, cx.cfg);
        }
        sent
    }

    /// RFC 6675 `pipe`: bytes sent and presumed still in the network (neither SACKed nor marked lost).
    fn pipe(&self) -> usize {
        self.sb.pipe(self.snd_max.wrapping_sub(self.snd_una)) as usize
    }

    /// Sends a recorded segment again (its payload from the send queue, our FIN if it carried it).
    fn send_segment(&mut self, seg: ToSend, cx: &mut Cx<'_>) {
        let offset = seg.seq.wrapping_sub(self.send_base) as usize;
        let len = seg.len.min(self.sendq_len.saturating_sub(offset));
        let mut flags = TcpFlags::EMPTY;
        if seg.fin {
            flags.insert(TcpFlags::FIN);
        }
        let mut e = self.header(seg.seq, flags, cx.now);
        e.offset = offset;
        e.len = len;
        e.retransmit = true;
        let _ = cx.out.try_push(e);
        self.ack_now = false;
        self.segs_unacked = 0;
    }

    /// A bare ACK (flushes `ack_now`). It carries `snd_max` (an ACK numbered below the peer's `rcv_nxt` would be
    /// dropped as old), but never past the right edge of the peer's window (Linux's `tcp_acceptable_seq`): a
    /// peer whose buffer filled may shrink its window below data we sent, and then drops ACKs numbered beyond it,
    /// ACK field and all, so neither side would ever hear its data acknowledged.
    pub fn send_ack(&mut self, cx: &mut Cx<'_>) {
        let edge = self.snd_una.wrapping_add(self.snd_wnd);
        let seq = if seq_gt(self.snd_max, edge) { edge } else { self.snd_max };
        let mut e = self.header(seq, TcpFlags::EMPTY, cx.now);
        e.sack = self.sack_blocks();
        let _ = cx.out.try_push(e);
        self.ack_now = false;
        self.segs_unacked = 0;
    }

    /// Whether an ACK is owed but may wait for the delayed-ACK timer.
    pub fn ack_delayed(&self) -> bool {
        self.segs_unacked > 0 && !self.ack_now
    }

    /// The retransmission timer fired. Returns `Some(reason)` when the connection must die.
    pub fn on_retransmit_timeout(&mut self, cx: &mut Cx<'_>) -> Option<DeadReason> {
        let limit = if matches!(self.state, State::SynSent | State::SynReceived) {
            cx.cfg.max_syn_retries
        } else {
            cx.cfg.max_retries
        };
        if self.retries >= limit {
            return Some(DeadReason::TimedOut);
        }
        self.retries += 1;
        self.rtt.on_timeout();
        self.timed = None;
        match self.state {
            State::SynSent => {
                self.snd_nxt = self.iss;
                self.send_syn(self.mss.max(536), true, cx);
            }
            State::SynReceived => {
                self.snd_nxt = self.iss;
                self.send_syn(self.mss, false, cx);
            }
            _ if self.snd_una == self.snd_max && !self.has_unsent() && self.app_waits_for_window() => {
                // The app holds the data (IX flow control: sendv took nothing) and waits for the peer's window:
                // ask for it with a keepalive-style segment, so a lost window update cannot stall the flow. Not a
                // retry either.
                self.retries -= 1;
                self.send_keepalive(cx);
            }
            _ if self.snd_una == self.snd_max && self.has_unsent() && self.snd_wnd == 0 => {
                // Zero-window probe (RFC 9293 §3.8.6.1): one byte past the window; do not count it as a retry.
                self.retries -= 1;
                let offset = self.snd_nxt.wrapping_sub(self.send_base) as usize;
                let mut e = self.header(self.snd_nxt, TcpFlags::EMPTY, cx.now);
                e.offset = offset;
                e.len = 1.min(self.sendq_len.saturating_sub(offset));
                let _ = cx.out.try_push(e);
            }
            _ => {
                // Everything not SACKed is lost (RFC 8985 §6.3); `output` resends it from `snd_una` as the
                // window reopens (RFC 5681 §3.1 after RTO).
                self.cc.on_timeout(SeqNumber(self.snd_una), SeqNumber(self.snd_max));
                self.sb.mark_all_lost();
                self.undo = None;
                self.loss_timer = None;
                self.dupacks = 0;
                self.output(cx);
            }
        }
        None
    }

    /// The app's last `sendv` found the peer's window shut, and TCP has nothing of its own to probe with.
    pub fn app_waits_for_window(&self) -> bool {
        self.app_blocked && self.snd_wnd == 0 && matches!(self.state, State::Established | State::CloseWait)
    }

    /// Whether data is waiting to be sent.
    pub fn has_unsent(&self) -> bool {
        let offset = self.snd_nxt.wrapping_sub(self.send_base) as usize;
        offset < self.sendq_len || self.fin_pending()
    }

    /// Whether anything is unacknowledged (the retransmission timer must run).
    pub fn has_in_flight(&self) -> bool {
        self.snd_max != self.snd_una
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Copies `len` bytes of the send queue starting `offset` bytes after `send_base` into `out`.
    pub fn copy_payload(&self, offset: usize, out: &mut [u8]) {
        let mut skip = offset + self.sendq_head_acked;
        let mut at = 0;
        for b in &self.sendq {
            if at == out.len() {
                break;
            }
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let n = (b.len() - skip).min(out.len() - at);
            b.copy_to(skip, &mut out[at..at + n]);
            at += n;
            skip = 0;
        }
    }

    /// Whether keepalive probing applies now (idle long enough).
    pub fn keepalive_due(&self, now: Instant, idle: Duration) -> bool {
        self.keepalive && self.state == State::Established && now - self.last_rx >= idle
    }

    /// A keepalive probe: an ACK with a sequence number one below `snd_una` (RFC 1122 §4.2.3.6).
    pub fn send_keepalive(&mut self, cx: &mut Cx<'_>) {
        let e = self.header(self.snd_una.wrapping_sub(1), TcpFlags::EMPTY, cx.now);
        let _ = cx.out.try_push(e);
    }

    /// Time since the last segment arrived.
    pub fn idle(&self, now: Instant) -> Duration {
        now - self.last_rx
    }

    /// Bytes lent to the app and not yet returned.
    pub fn unread(&self) -> u32 {
        self.unread
    }

    /// A one-line summary for diagnostics (e.g. a connection found open at shutdown): state, peer, sequence
    /// space, and each armed timer's due time relative to `now`, marked when no wheel entry stands for it (a
    /// timer that can never fire).
    pub fn describe(&self, now: Instant) -> String {
        use std::fmt::Write;
        let mut s = format!(
            "{:?} {}:{} <- :{} accepted={} released={} una={} nxt={} max={} base={} sendq={} wnd={} cwnd={} \
             rcv_nxt={} adv={} unread={} lent={} ooo={} fin_q={} fin_rcvd={} dupacks={} retries={}",
            self.state,
            self.remote.addr,
            self.remote.port,
            self.local_port,
            self.accepted,
            self.released,
            self.snd_una.wrapping_sub(self.iss),
            self.snd_nxt.wrapping_sub(self.iss),
            self.snd_max.wrapping_sub(self.iss),
            self.send_base.wrapping_sub(self.iss),
            self.sendq_len,
            self.snd_wnd,
            self.cc.cwnd(),
            self.rcv_nxt.wrapping_sub(self.irs),
            self.advertised(),
            self.unread,
            self.lent.len(),
            self.ooo.len(),
            self.fin_queued,
            self.fin_received,
            self.dupacks,
            self.retries,
        );
        for (k, name) in ["rto", "dack", "linger", "keepalive", "loss"].iter().enumerate() {
            match (self.due(k), self.timers[k].is_some()) {
                (Some(at), entry) => {
                    let _ = write!(s, " {name}=+{}us", at.total_micros() as i64 - now.total_micros() as i64);
                    if !entry {
                        s.push_str("(no wheel entry)");
                    }
                }
                (None, true) => {
                    let _ = write!(s, " {name}=off(stale entry)");
                }
                (None, false) => {}
            }
        }
        s
    }

    /// Sequence numbers for tests and diagnostics: (snd_una, snd_nxt, rcv_nxt).
    pub fn seqs(&self) -> (u32, u32, u32) {
        (self.snd_una, self.snd_nxt, self.rcv_nxt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Address;

    fn segment(seq: u32, ack: u32, flags: TcpFlags, window: u16) -> Segment {
        Segment {
            seq,
            ack: Some(ack),
            flags,
            window,
            mss: None,
            wscale: None,
            timestamps: None,
            sack_permitted: false,
            sack: [None; 3],
            len: 0,
        }
    }

    /// A peer that filled our window ACKs with the right edge as its sequence number; the ACK must count.
    #[test]
    fn a_bare_ack_at_the_right_edge_is_processed() {
        let cfg = TcpConfig::default();
        let mut pool = MbufPool::new(64, false).expect("pool");
        let mut out = ArrayVec::new();
        let now = Instant::from_micros(1000);
        let mut cx = Cx { now, tx_room: 64, pool: &mut pool, out: &mut out, cfg: &cfg };
        let remote = Endpoint { addr: Ipv4Address([198, 18, 0, 2]), port: 80 };
        let mut c = Conn::connect(49152, remote, 100, 1460, &mut cx);
        let mut synack = segment(5000, 101, TcpFlags::SYN, 65535);
        synack.mss = Some(1460);
        assert!(c.input(&synack, None, &mut cx).established);
        c.send_ack(&mut cx); // advertises our window: right edge 5001 + 65535 (no scaling without the peer's)
        static DATA: [u8; 1000] = [7; 1000];
        assert_eq!(c.sendv(&[AppBuf::from_static(&DATA)], &cfg), 1000);
        assert!(c.output(&mut cx));
        assert_eq!(c.seqs().0, 101);
        let edge = 5001u32.wrapping_add(65535);
        c.input(&segment(edge, 1101, TcpFlags::EMPTY, 65535), None, &mut cx);
        assert_eq!(c.seqs().0, 1101, "the ACK field was used");
        // One past the edge is still out of the window.
        let mut c2 = c;
        c2.input(&segment(edge.wrapping_add(1), 1101, TcpFlags::EMPTY, 65535), None, &mut cx);
        assert!(c2.ack_now, "answered with an ACK, as RFC 9293 says");
    }

    /// Our bare ACKs stay inside the peer's window even when it shrank below data we sent.
    #[test]
    fn a_bare_ack_never_numbers_past_the_peers_window() {
        let cfg = TcpConfig::default();
        let mut pool = MbufPool::new(64, false).expect("pool");
        let mut out = ArrayVec::new();
        let mut cx = Cx { now: Instant::from_micros(1000), tx_room: 64, pool: &mut pool, out: &mut out, cfg: &cfg };
        let remote = Endpoint { addr: Ipv4Address([198, 18, 0, 2]), port: 80 };
        let mut c = Conn::connect(49152, remote, 100, 1460, &mut cx);
        let mut synack = segment(5000, 101, TcpFlags::SYN, 65535);
        synack.mss = Some(1460);
        c.input(&synack, None, &mut cx);
        static DATA: [u8; 4000] = [7; 4000];
        assert_eq!(c.sendv(&[AppBuf::from_static(&DATA)], &cfg), 4000);
        c.output(&mut cx);
        cx.out.clear();
        // The peer acknowledges nothing new and shrinks its window to 1000 bytes.
        c.input(&segment(5001, 101, TcpFlags::EMPTY, 1000), None, &mut cx);
        c.send_ack(&mut cx);
        assert_eq!(cx.out.last().map(|e| e.seq), Some(1101));
    }
}
