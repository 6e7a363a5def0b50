//! A sans-IO TCP client that lives one whole connection: SYN, ACK, optional
//! request data, ACKs for what the peer sends, FIN (or RST), final ACK and
//! TIME_WAIT. Segments and timestamps in, segments to send out; retransmission,
//! idle and TIME_WAIT timers are explicit deadlines read by [`TcpClient::poll_at`].
//!
//! Besides its own state (RFC 9293 names) it keeps the textbook state the peer
//! must be in, inferred from what crossed the wire, and a log of every segment
//! with the instant it was sent or received. The I/O layer may later replace a
//! sent segment's user-space instant with the kernel's stamp
//! ([`TcpClient::on_sent_stamp`]), so every stage is timed on the capture clock.

use crate::event::Timestamp;
use crate::wire::{IcmpError, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// TCP connection states (RFC 9293 §3.3.2), named as `ss` and textbooks name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TcpState {
    /// No connection (before our SYN, after the end).
    #[serde(rename = "CLOSED")]
    Closed,
    /// Waiting for a SYN (the server before ours arrives).
    #[serde(rename = "LISTEN")]
    Listen,
    /// SYN sent, waiting for the SYN-ACK.
    #[serde(rename = "SYN_SENT")]
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for its ACK.
    #[serde(rename = "SYN_RECV")]
    SynReceived,
    /// Handshake done: data flows both ways.
    #[serde(rename = "ESTABLISHED")]
    Established,
    /// We sent FIN, not yet acknowledged.
    #[serde(rename = "FIN_WAIT_1")]
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's.
    #[serde(rename = "FIN_WAIT_2")]
    FinWait2,
    /// Both FINs sent, ours not yet acknowledged (simultaneous close).
    #[serde(rename = "CLOSING")]
    Closing,
    /// Both FINs acknowledged; lingering for retransmitted FINs.
    #[serde(rename = "TIME_WAIT")]
    TimeWait,
    /// The peer's FIN received; our application has not closed yet.
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait,
    /// FIN sent after the peer's, waiting for its ACK.
    #[serde(rename = "LAST_ACK")]
    LastAck,
}

impl TcpState {
    /// The name as `ss` prints it (`SYN_SENT`, `TIME_WAIT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::Closing => "CLOSING",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
        }
    }
}

/// How we end the connection when it is our turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseMode {
    /// An orderly close with FIN.
    Fin,
    /// An abort with RST (like SO_LINGER 0).
    Rst,
}

/// Everything the client needs to know; numbers a test wants exact are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpClientConfig {
    /// Our address and port.
    pub src: SocketAddr,
    /// The server's address and port.
    pub dst: SocketAddr,
    /// Our initial sequence number.
    pub isn: SeqNumber,
    /// IP TTL (hop limit) of our segments.
    pub ttl: u8,
    /// MSS we announce (and the most we put in one segment).
    pub mss: u16,
    /// MSS, SACK-permitted, timestamps and window scale on the SYN, like Linux.
    pub syn_options: bool,
    /// Request bytes sent once the connection is established.
    pub payload: Vec<u8>,
    /// FIN or RST when we close.
    pub close: CloseMode,
    /// Send the SYN, record the SYN-ACKs, never complete the handshake.
    pub half_open: bool,
    /// First retransmission timeout; doubles on each retry.
    pub rto: Duration,
    /// Retransmissions of one segment before giving up.
    pub max_retries: u32,
    /// We close once the connection has been quiet this long (our data acknowledged).
    pub idle: Duration,
    /// How long we stay in TIME_WAIT answering retransmitted FINs.
    pub time_wait: Duration,
    /// Upper bound on the whole trace (half-open: how long SYN-ACKs are watched).
    pub max_wait: Duration,
}

/// Who sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// We sent it.
    Sent,
    /// The peer sent it.
    Received,
}

/// Where a segment's instant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StampSource {
    /// The kernel's stamp (capture or transmit timestamp).
    Kernel,
    /// The user-space clock at the send call (not replaced by a kernel stamp yet).
    User,
}

/// Something worth saying about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Note {
    /// We sent this again after its timer expired.
    Retransmission,
    /// The peer sent again what we already had (its retransmission).
    Duplicate,
    /// The peer's segment starts beyond what we expect: not taken, ACKed with rcv_nxt.
    OutOfOrder,
    /// Not acceptable (bad ACK, out-of-window RST, after close): ignored.
    Ignored,
    /// Half-open mode: a SYN-ACK left unanswered.
    Unanswered,
    /// One byte sent into the peer's zero window, to learn when it opens
    /// (the persist timer; counted among the retransmissions).
    WindowProbe,
}

/// One segment on the wire, as the ladder draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentEvent {
    /// When it was sent or received.
    pub at: Timestamp,
    /// Where `at` came from.
    pub stamp: StampSource,
    /// Who sent it.
    pub dir: Dir,
    /// Its TCP flags (tcpdump's letters in JSON).
    #[serde(serialize_with = "flags_str")]
    pub flags: TcpFlags,
    /// Its sequence number.
    pub seq: SeqNumber,
    /// Its acknowledgment number.
    pub ack: SeqNumber,
    /// Relative to the sender's ISN.
    pub rel_seq: u32,
    /// Relative to the receiver's ISN (0 without ACK).
    pub rel_ack: u32,
    /// Bytes of data it carries.
    pub len: u32,
    /// Its TCP window, unscaled.
    pub window: u16,
    /// What is special about it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Note>,
    /// Not a segment but an ICMP error quoting ours (`ICMP admin-prohibited
    /// from 198.18.0.2`); `seq` is the quoted sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<String>,
    /// Our state once this segment was sent or processed.
    pub client_state: TcpState,
    /// The peer's state the textbook says it is in once it sent or received this.
    pub server_state: TcpState,
}

fn flags_str<S: serde::Serializer>(f: &TcpFlags, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&f.to_string())
}

/// Which side a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Us.
    Client,
    /// The peer.
    Server,
}

/// A state entered, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    /// Whose state.
    pub side: Side,
    /// The state entered.
    pub state: TcpState,
    /// When: the instant of the segment or timer that caused it.
    pub at: Timestamp,
    /// The segment (index in the log) that caused it, if any (timers cause none).
    #[serde(skip)]
    pub cause: Option<usize>,
}

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Teardown {
    /// We sent FIN, the peer ACKed it, then sent its own FIN: four segments.
    WeClosedFirst,
    /// We sent FIN, the peer answered with FIN+ACK in one segment: three segments.
    ThreeSegmentClose,
    /// The peer's FIN came first (e.g. a banner server); we were in CLOSE_WAIT.
    PeerClosedFirst,
    /// Both FINs crossed: both sides went through CLOSING.
    SimultaneousClose,
    /// The peer reset the connection instead of closing it.
    ResetByPeer,
    /// We aborted with RST, as `--close rst` asks.
    AbortedByUs,
    /// Our retransmissions went unanswered (or unacknowledged): we gave up and
    /// reset the connection.
    GaveUp,
    /// RST in answer to our SYN: nothing listens.
    Refused,
    /// Our SYN was never answered.
    NoAnswer,
    /// An ICMP error quoting one of our segments ended the connection.
    Unreachable,
    /// `--half-open`: the handshake was left incomplete on purpose.
    HalfOpen,
    /// Still open at `--timeout`: reset by us.
    Unfinished,
    /// Interrupted (Ctrl-C, SIGTERM) before the connection ended.
    Interrupted,
}

impl Teardown {
    /// A sentence for the text report.
    pub fn describe(self) -> &'static str {
        match self {
            Teardown::WeClosedFirst => "we closed first (four segments: FIN, ACK, FIN, ACK)",
            Teardown::ThreeSegmentClose => {
                "we closed first, peer merged its ACK and FIN (three segments)"
            }
            Teardown::PeerClosedFirst => "peer closed first (its FIN, our ACK, our FIN, its ACK)",
            Teardown::SimultaneousClose => "simultaneous close (FINs crossed, both CLOSING)",
            Teardown::ResetByPeer => "reset by peer (RST instead of FIN)",
            Teardown::AbortedByUs => "aborted by us with RST (--close rst)",
            Teardown::GaveUp => {
                "gave up: our retransmissions went unacknowledged, then reset by us"
            }
            Teardown::Refused => "refused (RST to our SYN)",
            Teardown::NoAnswer => "no answer to our SYN",
            Teardown::Unreachable => "unreachable (an ICMP error quoting our segment)",
            Teardown::HalfOpen => "half-open: SYN-ACK never acknowledged, cleaned up with RST",
            Teardown::Unfinished => "unfinished: still open at --timeout, reset by us",
            Teardown::Interrupted => "interrupted before the connection ended",
        }
    }

    /// A short name for one-line summaries (as in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            Teardown::WeClosedFirst => "we-closed-first",
            Teardown::ThreeSegmentClose => "three-segment-close",
            Teardown::PeerClosedFirst => "peer-closed-first",
            Teardown::SimultaneousClose => "simultaneous-close",
            Teardown::ResetByPeer => "reset-by-peer",
            Teardown::AbortedByUs => "aborted-by-us",
            Teardown::GaveUp => "gave-up",
            Teardown::Refused => "refused",
            Teardown::NoAnswer => "no-answer",
            Teardown::Unreachable => "unreachable",
            Teardown::HalfOpen => "half-open",
            Teardown::Unfinished => "unfinished",
            Teardown::Interrupted => "interrupted",
        }
    }

    /// An orderly close: both FINs sent and acknowledged.
    pub fn is_orderly(self) -> bool {
        matches!(
            self,
            Teardown::WeClosedFirst
                | Teardown::ThreeSegmentClose
                | Teardown::PeerClosedFirst
                | Teardown::SimultaneousClose
        )
    }
}

/// The ICMP error that ended a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IcmpEnd {
    /// Its name, as ping gives it (`admin-prohibited`, `port-unreachable`, ...).
    pub reason: String,
    /// Who sent it (the target or a router on the way).
    pub from: IpAddr,
}

#[derive(Debug, Clone)]
struct Retransmit {
    deadline: Timestamp,
    rto: Duration,
    tries: u32,
}

/// The client state machine.
#[derive(Debug)]
pub struct TcpClient {
    cfg: TcpClientConfig,
    state: TcpState,
    server: TcpState,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    irs: Option<SeqNumber>,
    rcv_nxt: SeqNumber,
    /// Sequence number of our FIN once sent.
    fin_seq: Option<SeqNumber>,
    peer_mss: u16,
    peer_window: u32,
    /// Peer's window shift and ours, when both sides agreed to scale.
    wscale: Option<(u8, u8)>,
    ts_recent: Option<u32>,
    rtx: Option<Retransmit>,
    close_at: Option<Timestamp>,
    time_wait_until: Option<Timestamp>,
    give_up_at: Option<Timestamp>,
    started: Option<Timestamp>,
    ident: u16,
    events: Vec<SegmentEvent>,
    states: Vec<StateEntry>,
    teardown: Option<Teardown>,
    peer_fin_first: bool,
    peer_fin_crossed: bool,
    merged_fin_ack: bool,
    received_data: u64,
    /// The peer advertised a zero window while our request was not all sent.
    zero_window: bool,
    icmp: Option<IcmpEnd>,
    /// How many segments were logged when we reached CLOSED.
    closed_after: Option<usize>,
}

const OUR_WSCALE: u8 = 7;
const OUR_WINDOW: u32 = 64240;
/// Largest request we send (bounded memory and retransmission work).
pub const MAX_PAYLOAD: usize = 1 << 20;

impl TcpClient {
    /// A client in CLOSED, nothing sent; the payload is cut to [`MAX_PAYLOAD`].
    pub fn new(cfg: TcpClientConfig) -> TcpClient {
        let isn = cfg.isn;
        let mut cfg = cfg;
        cfg.payload.truncate(MAX_PAYLOAD);
        TcpClient {
            cfg,
            state: TcpState::Closed,
            server: TcpState::Listen,
            snd_una: isn,
            snd_nxt: isn,
            irs: None,
            rcv_nxt: SeqNumber(0),
            fin_seq: None,
            peer_mss: 536,
            peer_window: 0,
            wscale: None,
            ts_recent: None,
            rtx: None,
            close_at: None,
            time_wait_until: None,
            give_up_at: None,
            started: None,
            ident: 1,
            events: Vec::new(),
            states: Vec::new(),
            teardown: None,
            peer_fin_first: false,
            peer_fin_crossed: false,
            merged_fin_ack: false,
            received_data: 0,
            zero_window: false,
            icmp: None,
            closed_after: None,
        }
    }

    /// The configuration it was made with (payload cut to [`MAX_PAYLOAD`]).
    pub fn config(&self) -> &TcpClientConfig {
        &self.cfg
    }
    /// Our state.
    pub fn state(&self) -> TcpState {
        self.state
    }
    /// The state the peer must be in, inferred from the segments seen.
    pub fn server_state(&self) -> TcpState {
        self.server
    }
    /// Every segment sent and received, in order.
    pub fn events(&self) -> &[SegmentEvent] {
        &self.events
    }
    /// Every state change of both sides, in order.
    pub fn states(&self) -> &[StateEntry] {
        &self.states
    }
    /// How the connection ended; None while it goes on.
    pub fn teardown(&self) -> Option<Teardown> {
        self.teardown
    }
    /// Our initial sequence number.
    pub fn isn(&self) -> SeqNumber {
        self.cfg.isn
    }
    /// The peer's initial sequence number, once its SYN-ACK arrived.
    pub fn peer_isn(&self) -> Option<SeqNumber> {
        self.irs
    }
    /// Bytes of data received from the peer (in order, each counted once).
    pub fn received_bytes(&self) -> u64 {
        self.received_data
    }
    /// When [`TcpClient::start`] sent the SYN.
    pub fn started_at(&self) -> Option<Timestamp> {
        self.started
    }
    /// The trace is over: nothing more will be sent or awaited.
    pub fn is_done(&self) -> bool {
        self.teardown.is_some() && self.state == TcpState::Closed
    }

    /// Sends the SYN. Call once, first.
    pub fn start(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        if self.started.is_some() {
            return Vec::new();
        }
        self.started = Some(now);
        self.give_up_at = Some(now + self.cfg.max_wait);
        let syn = self.syn(now);
        self.snd_nxt = self.cfg.isn + 1;
        self.set_state(
            Side::Client,
            TcpState::SynSent,
            now,
            Some(self.events.len()),
        );
        self.arm_rtx(now, true);
        vec![self.record_sent(syn, now, None)]
    }

    /// Ends the trace early (Ctrl-C): an RST if a connection is open.
    pub fn abort(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        if self.is_done() {
            return Vec::new();
        }
        let out = self.send_rst_if_synchronized(now);
        self.finish(Teardown::Interrupted, now);
        out
    }

    /// An ICMP error quoting one of our segments (by its sequence number): an unreachable, prohibited or time-exceeded error
    /// ends the trace at once, with the reason, as ping reports it (a connection
    /// already open is reset). Path-MTU signals (fragmentation needed, packet
    /// too big), source quench and redirects do not.
    pub fn on_icmp(
        &mut self,
        error: IcmpError,
        from: IpAddr,
        quoted_seq: Option<SeqNumber>,
        now: Timestamp,
    ) -> Vec<TcpRepr> {
        let ends = match (error.v6, error.icmp_type, error.code) {
            (false, 3, 4) | (false, 4 | 5, _) | (true, 2, _) => false,
            (false, 3 | 11 | 12, _) | (true, 1 | 3 | 4, _) => true,
            _ => false,
        };
        if !ends || self.started.is_none() || self.is_done() {
            return Vec::new();
        }
        let reason = error.name();
        // the quote must name a segment we sent by its sequence number (a
        // quote too short to carry it, against RFC 792/4443, names nothing)
        let Some(q) = quoted_seq else {
            return Vec::new();
        };
        if !self.events.iter().any(|e| e.dir == Dir::Sent && e.seq == q) {
            return Vec::new();
        }
        self.events.push(SegmentEvent {
            at: now,
            stamp: StampSource::Kernel,
            dir: Dir::Received,
            flags: TcpFlags::default(),
            seq: q,
            ack: SeqNumber(0),
            rel_seq: 0,
            rel_ack: 0,
            len: 0,
            window: 0,
            note: None,
            icmp: Some(format!("ICMP {reason} from {from}")),
            client_state: self.state,
            server_state: self.server,
        });
        self.icmp = Some(IcmpEnd { reason, from });
        let out = self.send_rst_if_synchronized(now);
        self.finish(Teardown::Unreachable, now);
        out
    }

    /// The ICMP error that ended the trace, if one did.
    pub fn icmp(&self) -> Option<&IcmpEnd> {
        self.icmp.as_ref()
    }

    /// What was asked of this trace and did not happen, one clause each;
    /// empty when the handshake, the request (acknowledged in full) and the
    /// teardown asked for (`--close`) all happened. Call once it is done.
    pub fn shortfalls(&self) -> Vec<String> {
        let mut out = Vec::new();
        let teardown = self.teardown.unwrap_or(Teardown::Interrupted);
        if teardown == Teardown::Interrupted {
            out.push("interrupted before the connection ended".to_string());
            return out;
        }
        if self.irs.is_none() {
            out.push(match &self.icmp {
                Some(i) => format!("no handshake: ICMP {} from {}", i.reason, i.from),
                None => format!("no handshake: {}", teardown.describe()),
            });
            return out;
        }
        if self.cfg.half_open {
            return out;
        }
        let total = self.cfg.payload.len() as u32;
        let acked = (self.snd_una.diff(self.cfg.isn + 1).max(0) as u32).min(total);
        if acked < total {
            out.push(format!(
                "request not acknowledged: {acked} of {total} bytes{}",
                if self.zero_window {
                    " (the peer advertised a zero window)"
                } else {
                    ""
                }
            ));
        }
        let (asked_ok, asked) = match self.cfg.close {
            CloseMode::Fin => (
                teardown.is_orderly(),
                "no orderly close with FINs (--close fin)",
            ),
            CloseMode::Rst => (
                teardown == Teardown::AbortedByUs,
                "no abort by our RST (--close rst)",
            ),
        };
        if !asked_ok {
            out.push(match &self.icmp {
                Some(i) => format!("{asked}: ICMP {} from {}", i.reason, i.from),
                None => format!("{asked}: {}", teardown.describe()),
            });
        }
        out
    }

    /// The earliest instant at which [`TcpClient::poll`] has something to do.
    pub fn poll_at(&self) -> Option<Timestamp> {
        if self.is_done() {
            return None;
        }
        [
            self.rtx.as_ref().map(|r| r.deadline),
            self.close_at,
            self.time_wait_until,
            self.give_up_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        let mut out = Vec::new();
        if self.is_done() || self.started.is_none() {
            return out;
        }
        if self.time_wait_until.is_some_and(|t| now >= t) {
            self.time_wait_until = None;
            self.finish(self.closing_kind(), now);
            return out;
        }
        if self.give_up_at.is_some_and(|t| now >= t) {
            self.give_up_at = None;
            if self.cfg.half_open && self.irs.is_some() {
                out.extend(self.half_open_cleanup(now));
                return out;
            }
            let kind = if self.irs.is_none() {
                Teardown::NoAnswer
            } else {
                Teardown::Unfinished
            };
            out.extend(self.send_rst_if_synchronized(now));
            self.finish(kind, now);
            return out;
        }
        if let Some(r) = self.rtx.clone().filter(|r| now >= r.deadline) {
            if r.tries >= self.cfg.max_retries {
                self.rtx = None;
                let kind = if self.irs.is_none() {
                    Teardown::NoAnswer
                } else {
                    Teardown::GaveUp
                };
                out.extend(self.send_rst_if_synchronized(now));
                self.finish(kind, now);
                return out;
            }
            out.extend(self.retransmit(now));
            let rto = r.rto.saturating_mul(2);
            self.rtx = Some(Retransmit {
                deadline: now + rto,
                rto,
                tries: r.tries + 1,
            });
        }
        if self.close_at.is_some_and(|t| now >= t) {
            self.close_at = None;
            out.extend(self.close(now));
        }
        out
    }

    /// Feeds one segment received from the peer (already known to be of this flow).
    pub fn on_segment(&mut self, seg: &TcpRepr, now: Timestamp) -> Vec<TcpRepr> {
        if self.started.is_none() || self.is_done() {
            self.record_received(seg, now, Some(Note::Ignored));
            return Vec::new();
        }
        if self.state == TcpState::SynSent {
            return self.on_segment_syn_sent(seg, now);
        }
        self.on_segment_synchronized(seg, now)
    }

    /// The kernel's stamp of one of our segments leaving: replaces the user-space
    /// instant of the earliest matching sent segment not stamped yet.
    pub fn on_sent_stamp(&mut self, seg: &TcpRepr, at: Timestamp) -> bool {
        let Some(i) = self.events.iter().position(|e| {
            e.dir == Dir::Sent
                && e.stamp == StampSource::User
                && e.seq == seg.seq
                && e.ack == seg.ack
                && e.flags == seg.flags
                && e.len == seg.payload.len() as u32
        }) else {
            return false;
        };
        self.events[i].at = at;
        self.events[i].stamp = StampSource::Kernel;
        for s in self.states.iter_mut().filter(|s| s.cause == Some(i)) {
            s.at = at;
        }
        if self.closed_after.is_some_and(|n| i < n) {
            self.settle_closed();
        }
        true
    }

    /// CLOSED comes after every segment sent or received before it, on the
    /// wire's clock too: one we sent just before processing the segment that
    /// closed us may leave (be stamped) after that segment arrived.
    fn settle_closed(&mut self) {
        let Some(n) = self.closed_after else {
            return;
        };
        let Some(latest) = self.events[..n.min(self.events.len())]
            .iter()
            .map(|e| e.at)
            .max()
        else {
            return;
        };
        if let Some(c) = self
            .states
            .iter_mut()
            .rev()
            .find(|s| s.side == Side::Client && s.state == TcpState::Closed)
            && c.at < latest
        {
            c.at = latest;
        }
    }

    /// The whole IP datagram for one of our segments.
    pub fn datagram(&mut self, seg: &TcpRepr) -> Vec<u8> {
        let ip = IpRepr {
            src: self.cfg.src.ip(),
            dst: self.cfg.dst.ip(),
            protocol: Protocol::TCP,
            ttl: self.cfg.ttl,
            ident: self.ident,
            later_fragment: false,
            flow_label: 0,
        };
        self.ident = self.ident.wrapping_add(1);
        ip.emit(&seg.emit(ip.src, ip.dst))
    }

    // ---- incoming ----

    fn on_segment_syn_sent(&mut self, seg: &TcpRepr, now: Timestamp) -> Vec<TcpRepr> {
        let f = seg.flags;
        let ack_ok = f.contains(TcpFlags::ACK) && seg.ack == self.cfg.isn + 1;
        if f.contains(TcpFlags::ACK) && !ack_ok {
            self.record_received(seg, now, Some(Note::Ignored));
            return Vec::new();
        }
        if f.contains(TcpFlags::RST) {
            if ack_ok {
                self.server = TcpState::Closed;
                self.record_received(seg, now, None);
                self.finish(Teardown::Refused, now);
            } else {
                self.record_received(seg, now, Some(Note::Ignored));
            }
            return Vec::new();
        }
        if !(f.contains(TcpFlags::SYN) && ack_ok) {
            // a bare SYN (simultaneous open) or stray segment: not traced
            self.record_received(seg, now, Some(Note::Ignored));
            return Vec::new();
        }
        if self.cfg.half_open {
            let note = if self.irs == Some(seg.seq) {
                Note::Duplicate
            } else {
                Note::Unanswered
            };
            if self.irs.is_none() {
                self.irs = Some(seg.seq);
                self.rcv_nxt = seg.seq + 1;
                self.rtx = None;
                self.server = TcpState::SynReceived;
                let idx = self.events.len();
                self.set_state(Side::Server, TcpState::SynReceived, now, Some(idx));
            }
            self.record_received(seg, now, Some(note));
            return Vec::new();
        }
        self.irs = Some(seg.seq);
        self.rcv_nxt = seg.seq + 1;
        self.snd_una = seg.ack;
        self.rtx = None;
        self.peer_mss = seg.options.mss.unwrap_or(536);
        let syn_ts = self.cfg.syn_options;
        if syn_ts {
            if let Some((val, _)) = seg.options.timestamps {
                self.ts_recent = Some(val);
            }
            if let Some(w) = seg.options.window_scale {
                self.wscale = Some((w.min(14), OUR_WSCALE));
            }
        }
        // the SYN-ACK's window is never scaled
        self.peer_window = seg.window as u32;
        self.note_zero_window();
        self.server = TcpState::SynReceived;
        let idx = self.events.len();
        self.set_state(Side::Server, TcpState::SynReceived, now, Some(idx));
        self.record_received(seg, now, None);
        // our ACK: ESTABLISHED here, and at the peer once it arrives
        self.state = TcpState::Established;
        let ack = self.segment(TcpFlags::ACK, self.snd_nxt, Vec::new(), now);
        let mut out = vec![self.record_sent(ack, now, None)];
        let idx = self.events.len() - 1;
        self.set_state(Side::Client, TcpState::Established, now, Some(idx));
        out.extend(self.send_data(now, false));
        self.touch(now);
        out
    }

    fn on_segment_synchronized(&mut self, seg: &TcpRepr, now: Timestamp) -> Vec<TcpRepr> {
        let f = seg.flags;
        let irs = self.irs.unwrap_or_default();
        let mut out = Vec::new();
        // a retransmitted SYN-ACK: our ACK was lost; ACK again
        if f.contains(TcpFlags::SYN) {
            let note = if seg.seq == irs {
                Note::Duplicate
            } else {
                Note::Ignored
            };
            self.record_received(seg, now, Some(note));
            if note == Note::Duplicate && self.state != TcpState::TimeWait {
                out.push(self.ack_now(now));
            }
            return out;
        }
        let window = self.receive_window();
        if f.contains(TcpFlags::RST) {
            let off = seg.seq.diff(self.rcv_nxt);
            if off >= 0 && (off as u32) < window.max(1) {
                self.server = TcpState::Closed;
                self.record_received(seg, now, None);
                let kind = if self.state == TcpState::TimeWait {
                    self.closing_kind()
                } else {
                    Teardown::ResetByPeer
                };
                self.finish(kind, now);
            } else {
                self.record_received(seg, now, Some(Note::Ignored));
            }
            return out;
        }
        if !f.contains(TcpFlags::ACK) {
            self.record_received(seg, now, Some(Note::Ignored));
            return out;
        }
        if seg.ack > self.snd_nxt {
            // acknowledges something never sent: ignore, ACK what is true
            self.record_received(seg, now, Some(Note::Ignored));
            out.push(self.ack_now(now));
            return out;
        }
        // ---- the ACK field ----
        let mut our_fin_acked_now = false;
        if seg.ack > self.snd_una {
            self.snd_una = seg.ack;
            if self.snd_una == self.snd_nxt {
                self.rtx = None;
            } else {
                self.arm_rtx(now, true);
            }
            if self.fin_seq.is_some_and(|s| seg.ack == s + 1) {
                our_fin_acked_now = true;
            }
            self.touch(now);
        }
        self.peer_window = self.scaled(seg.window);
        self.note_zero_window();
        // ---- the data and the FIN ----
        let len = seg.payload.len() as u32;
        let start = seg.seq.diff(self.rcv_nxt);
        let end = start as i64 + len as i64; // relative end of the data
        let mut note = None;
        let mut accepted = 0u32;
        let mut fin_now = false;
        let mut need_ack = false;
        if len > 0 {
            need_ack = true;
            if start > 0 {
                note = Some(Note::OutOfOrder);
            } else if end <= 0 {
                note = Some(Note::Duplicate);
            } else {
                accepted = end as u32;
                if start < 0 {
                    note = Some(Note::Duplicate); // partly old
                }
            }
        }
        if f.contains(TcpFlags::FIN) {
            need_ack = true;
            if note != Some(Note::OutOfOrder) {
                if end == accepted as i64 && !self.peer_fin_seen() {
                    fin_now = true;
                } else {
                    note = Some(Note::Duplicate); // a retransmitted FIN
                }
            }
        }
        if len == 0
            && !f.contains(TcpFlags::FIN)
            && !our_fin_acked_now
            && seg.ack == self.snd_una
            && start != 0
        {
            note = Some(Note::Duplicate);
        }
        if accepted > 0 {
            self.received_data += accepted as u64;
            self.rcv_nxt = self.rcv_nxt + accepted;
            self.touch(now);
        }
        if note.is_none()
            && let Some((val, _)) = seg.options.timestamps
        {
            self.ts_recent = Some(val);
        }
        // our FIN acknowledged: FIN_WAIT_1 → FIN_WAIT_2, CLOSING → TIME_WAIT, LAST_ACK → CLOSED
        let idx = self.events.len();
        if our_fin_acked_now {
            match self.state {
                TcpState::FinWait1 if fin_now => self.merged_fin_ack = true,
                TcpState::FinWait1 => {
                    self.set_state(Side::Client, TcpState::FinWait2, now, Some(idx))
                }
                TcpState::Closing => self.enter_time_wait(now, idx),
                TcpState::LastAck => {
                    self.record_received(seg, now, note);
                    self.finish(Teardown::PeerClosedFirst, now);
                    return out;
                }
                _ => {}
            }
        }
        if fin_now {
            self.rcv_nxt = self.rcv_nxt + 1;
            // the peer is sending its FIN: ESTABLISHED → FIN_WAIT_1, CLOSE_WAIT → LAST_ACK
            // a FIN that does not acknowledge ours left before ours arrived: the
            // peer went FIN_WAIT_1 and then CLOSING on our FIN
            let acks_ours = self.fin_seq.is_some_and(|s| seg.ack == s + 1);
            let peer = match self.server {
                TcpState::Established => TcpState::FinWait1,
                TcpState::CloseWait if self.fin_seq.is_some() && !acks_ours => TcpState::Closing,
                TcpState::CloseWait => TcpState::LastAck,
                other => other,
            };
            if peer != self.server {
                self.server = peer;
                self.set_state(Side::Server, peer, now, Some(idx));
            }
            match self.state {
                TcpState::Established => {
                    self.peer_fin_first = true;
                    self.set_state(Side::Client, TcpState::CloseWait, now, Some(idx));
                }
                TcpState::FinWait1 if self.merged_fin_ack => self.enter_time_wait(now, idx),
                TcpState::FinWait1 => {
                    self.peer_fin_crossed = true;
                    self.set_state(Side::Client, TcpState::Closing, now, Some(idx));
                }
                TcpState::FinWait2 => self.enter_time_wait(now, idx),
                _ => {}
            }
        }
        if self.state == TcpState::TimeWait && note == Some(Note::Duplicate) {
            // a retransmitted FIN in TIME_WAIT: our last ACK was lost
            need_ack = true;
        }
        self.record_received(seg, now, note);
        if need_ack {
            out.push(self.ack_now(now));
        }
        // an ACK may open the window: send what waits, then close if it was
        // our turn and everything is acknowledged
        out.extend(self.send_data(now, false));
        if self.state == TcpState::CloseWait {
            out.extend(self.close(now));
        }
        out
    }

    /// A zero window while request bytes wait to be sent or acknowledged.
    fn note_zero_window(&mut self) {
        let end = self.cfg.isn + 1 + self.cfg.payload.len() as u32;
        if self.peer_window == 0 && self.snd_una < end && !self.cfg.payload.is_empty() {
            self.zero_window = true;
        }
    }

    fn peer_fin_seen(&self) -> bool {
        matches!(
            self.state,
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
        )
    }

    // ---- outgoing ----

    fn syn(&mut self, now: Timestamp) -> TcpRepr {
        let mut options = TcpOptions::syn(self.cfg.syn_options, self.cfg.mss, tsval(now));
        if options.window_scale.is_some() {
            options.window_scale = Some(OUR_WSCALE);
        }
        TcpRepr {
            src_port: self.cfg.src.port(),
            dst_port: self.cfg.dst.port(),
            seq: self.cfg.isn,
            flags: TcpFlags::SYN,
            window: OUR_WINDOW as u16,
            options,
            ..TcpRepr::default()
        }
    }

    fn segment(
        &self,
        flags: TcpFlags,
        seq: SeqNumber,
        payload: Vec<u8>,
        now: Timestamp,
    ) -> TcpRepr {
        let window = match self.wscale {
            Some((_, ours)) => (OUR_WINDOW >> ours) as u16,
            None => OUR_WINDOW as u16,
        };
        let mut options = TcpOptions::default();
        if let Some(recent) = self.ts_recent {
            options.timestamps = Some((tsval(now), recent));
        }
        TcpRepr {
            src_port: self.cfg.src.port(),
            dst_port: self.cfg.dst.port(),
            seq,
            ack: if flags.contains(TcpFlags::ACK) {
                self.rcv_nxt
            } else {
                SeqNumber(0)
            },
            flags,
            window,
            options,
            payload,
            ..TcpRepr::default()
        }
    }

    fn ack_now(&mut self, now: Timestamp) -> TcpRepr {
        let seq = self.snd_nxt;
        let a = self.segment(TcpFlags::ACK, seq, Vec::new(), now);
        self.record_sent(a, now, None)
    }

    /// Sends request bytes not sent yet, within the peer's window.
    fn send_data(&mut self, now: Timestamp, retransmission: bool) -> Vec<TcpRepr> {
        let mut out = Vec::new();
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait) {
            return out;
        }
        let base = self.cfg.isn + 1;
        let total = self.cfg.payload.len() as u32;
        let mss = self.peer_mss.min(self.cfg.mss).max(1) as u32;
        let mut off = self.snd_nxt.diff(base).max(0) as u32;
        // a zero window takes nothing until the timer probes it with one byte
        let probe = retransmission && self.peer_window == 0;
        let limit = self.snd_una.diff(base).max(0) as u32 + self.peer_window.max(probe as u32);
        let note = if probe {
            Some(Note::WindowProbe)
        } else {
            retransmission.then_some(Note::Retransmission)
        };
        let first = off == 0;
        while off < total && off < limit {
            let n = mss.min(total - off).min(limit - off);
            let data = self.cfg.payload[off as usize..(off + n) as usize].to_vec();
            let flags = if off + n == total {
                TcpFlags::ACK.union(TcpFlags::PSH)
            } else {
                TcpFlags::ACK
            };
            let s = self.segment(flags, base + off, data, now);
            out.push(self.record_sent(s, now, note));
            off += n;
            self.snd_nxt = base + off;
        }
        if !out.is_empty() && (first || self.rtx.is_none()) {
            self.arm_rtx(now, true);
        }
        // a closed window with bytes still to send: the timer probes it with
        // one byte (the persist timer, counted as retransmissions)
        if off < total && self.rtx.is_none() {
            self.arm_rtx(now, true);
        }
        out
    }

    /// Our turn to close: FIN (or RST with `--close rst`) once our data is acknowledged.
    fn close(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait)
            || self.fin_seq.is_some()
        {
            return Vec::new();
        }
        let data_end = self.cfg.isn + 1 + self.cfg.payload.len() as u32;
        if self.snd_una != self.snd_nxt || self.snd_nxt < data_end {
            self.touch(now);
            return Vec::new();
        }
        if self.cfg.close == CloseMode::Rst {
            let out = self.send_rst_if_synchronized(now);
            self.finish(Teardown::AbortedByUs, now);
            return out;
        }
        let seq = self.snd_nxt;
        self.fin_seq = Some(seq);
        self.snd_nxt = seq + 1;
        let next = if self.state == TcpState::CloseWait {
            TcpState::LastAck
        } else {
            TcpState::FinWait1
        };
        let idx = self.events.len();
        self.state = next;
        self.set_state(Side::Client, next, now, Some(idx));
        let fin = self.segment(TcpFlags::FIN.union(TcpFlags::ACK), seq, Vec::new(), now);
        let out = vec![self.record_sent(fin, now, None)];
        self.close_at = None;
        self.arm_rtx(now, true);
        out
    }

    fn retransmit(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        let mut out = Vec::new();
        if self.state == TcpState::SynSent {
            let syn = self.syn(now);
            out.push(self.record_sent(syn, now, Some(Note::Retransmission)));
            return out;
        }
        // go back to the oldest unacknowledged byte
        let fin_pending = self.fin_seq.is_some_and(|f| self.snd_una.diff(f) <= 0);
        let data_end = self.cfg.isn + 1 + self.cfg.payload.len() as u32;
        if self.snd_una < data_end {
            self.snd_nxt = self.snd_una;
            let saved_fin = self.fin_seq.take();
            let state = self.state;
            // send_data only runs in ESTABLISHED/CLOSE_WAIT
            self.state = TcpState::Established;
            out.extend(self.send_data(now, true));
            self.state = state;
            self.fin_seq = saved_fin;
        }
        if let (true, Some(f)) = (fin_pending, self.fin_seq) {
            let s = self.segment(TcpFlags::FIN.union(TcpFlags::ACK), f, Vec::new(), now);
            out.push(self.record_sent(s, now, Some(Note::Retransmission)));
            self.snd_nxt = f + 1;
        }
        out
    }

    fn send_rst_if_synchronized(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        // half-open mode stays in SYN_SENT with the peer's ISN known
        if self.irs.is_none() || matches!(self.state, TcpState::Closed | TcpState::TimeWait) {
            return Vec::new();
        }
        // RST+ACK: the kernel's own RSTs to this flow carry no ACK and are the
        // ones the RST filter drops; ours must pass. Its sequence number must
        // fall in the peer's window or the peer drops it: like Linux
        // (tcp_acceptable_seq), snd_nxt, or the window's end if snd_nxt is
        // beyond it (a zero-window probe the peer never took).
        // (half-open: our SYN's ACK was never taken in, snd_una is still the ISN)
        let acked = if self.snd_una < self.cfg.isn + 1 {
            self.cfg.isn + 1
        } else {
            self.snd_una
        };
        let wnd_end = acked + self.peer_window;
        let seq = if self.snd_nxt > wnd_end {
            wnd_end
        } else {
            self.snd_nxt
        };
        let rst = self.segment(TcpFlags::RST.union(TcpFlags::ACK), seq, Vec::new(), now);
        self.server = TcpState::Closed;
        let idx = self.events.len();
        let out = vec![self.record_sent(rst, now, None)];
        self.set_state(Side::Server, TcpState::Closed, now, Some(idx));
        out
    }

    fn half_open_cleanup(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        let out = self.send_rst_if_synchronized(now);
        self.finish(Teardown::HalfOpen, now);
        out
    }

    // ---- bookkeeping ----

    fn closing_kind(&self) -> Teardown {
        if self.peer_fin_crossed {
            Teardown::SimultaneousClose
        } else if self.merged_fin_ack {
            Teardown::ThreeSegmentClose
        } else if self.peer_fin_first {
            Teardown::PeerClosedFirst
        } else {
            Teardown::WeClosedFirst
        }
    }

    fn enter_time_wait(&mut self, now: Timestamp, cause: usize) {
        self.set_state(Side::Client, TcpState::TimeWait, now, Some(cause));
        self.time_wait_until = Some(now + self.cfg.time_wait);
        self.rtx = None;
        self.close_at = None;
    }

    /// Ends the trace. CLOSED is caused by the last segment if it was sent or
    /// received at this very instant (our RST, the peer's RST or last ACK), so
    /// it takes that segment's kernel stamp and never precedes it.
    fn finish(&mut self, kind: Teardown, now: Timestamp) {
        let cause = self
            .events
            .len()
            .checked_sub(1)
            .filter(|&i| self.events[i].at == now);
        self.teardown = Some(kind);
        self.rtx = None;
        self.close_at = None;
        self.time_wait_until = None;
        self.give_up_at = None;
        if self.state != TcpState::Closed {
            self.set_state(Side::Client, TcpState::Closed, now, cause);
            self.closed_after = Some(self.events.len());
            self.settle_closed();
        }
    }

    /// Activity: restarts the idle timer that decides when we close.
    fn touch(&mut self, now: Timestamp) {
        if matches!(self.state, TcpState::Established) {
            self.close_at = Some(now + self.cfg.idle);
        }
    }

    fn arm_rtx(&mut self, now: Timestamp, restart: bool) {
        if restart || self.rtx.is_none() {
            self.rtx = Some(Retransmit {
                deadline: now + self.cfg.rto,
                rto: self.cfg.rto,
                tries: 0,
            });
        }
    }

    fn receive_window(&self) -> u32 {
        OUR_WINDOW
    }

    fn scaled(&self, window: u16) -> u32 {
        match self.wscale {
            Some((peer, _)) => (window as u32) << peer,
            None => window as u32,
        }
    }

    fn set_state(&mut self, side: Side, state: TcpState, at: Timestamp, cause: Option<usize>) {
        if side == Side::Client {
            self.state = state;
        }
        self.states.push(StateEntry {
            side,
            state,
            at,
            cause,
        });
    }

    /// Logs one of our segments and updates the peer's textbook state as it arrives.
    fn record_sent(&mut self, seg: TcpRepr, now: Timestamp, note: Option<Note>) -> TcpRepr {
        let idx = self.events.len();
        let f = seg.flags;
        let before = self.server;
        if f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::RST) {
            // what our ACK completes at the peer
            self.server = match self.server {
                TcpState::SynReceived => TcpState::Established,
                TcpState::FinWait1 if self.peer_fin_seen() => TcpState::FinWait2,
                TcpState::Closing if self.peer_fin_seen() => TcpState::TimeWait,
                TcpState::LastAck if self.peer_fin_seen() => TcpState::Closed,
                s => s,
            };
        }
        if f.contains(TcpFlags::FIN) && note.is_none() {
            self.server = match self.server {
                TcpState::Established => TcpState::CloseWait,
                TcpState::FinWait1 => TcpState::Closing,
                TcpState::FinWait2 => TcpState::TimeWait,
                s => s,
            };
        }
        if self.server != before {
            let s = self.server;
            self.states.push(StateEntry {
                side: Side::Server,
                state: s,
                at: now,
                cause: Some(idx),
            });
        }
        let irs = self.irs.unwrap_or_default();
        self.events.push(SegmentEvent {
            at: now,
            stamp: StampSource::User,
            dir: Dir::Sent,
            flags: f,
            seq: seg.seq,
            ack: seg.ack,
            rel_seq: seg.seq.0.wrapping_sub(self.cfg.isn.0),
            rel_ack: if f.contains(TcpFlags::ACK) {
                seg.ack.0.wrapping_sub(irs.0)
            } else {
                0
            },
            len: seg.payload.len() as u32,
            window: seg.window,
            note,
            icmp: None,
            client_state: self.state,
            server_state: self.server,
        });
        seg
    }

    fn record_received(&mut self, seg: &TcpRepr, now: Timestamp, note: Option<Note>) {
        let f = seg.flags;
        let irs = self.irs.unwrap_or(seg.seq);
        self.events.push(SegmentEvent {
            at: now,
            stamp: StampSource::Kernel,
            dir: Dir::Received,
            flags: f,
            seq: seg.seq,
            ack: seg.ack,
            rel_seq: seg.seq.0.wrapping_sub(irs.0),
            rel_ack: if f.contains(TcpFlags::ACK) {
                seg.ack.0.wrapping_sub(self.cfg.isn.0)
            } else {
                0
            },
            len: seg.payload.len() as u32,
            window: seg.window,
            note,
            icmp: None,
            client_state: self.state,
            server_state: self.server,
        });
    }
}

/// Our TCP timestamp clock: milliseconds, wrapping.
fn tsval(now: Timestamp) -> u32 {
    (now.0 / 1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    const ISN: SeqNumber = SeqNumber(1000);
    const IRS: SeqNumber = SeqNumber(5000);
    const T0: Timestamp = Timestamp(1_000_000_000_000);

    fn at(us: u64) -> Timestamp {
        T0 + Duration::from_micros(us)
    }

    fn cfg() -> TcpClientConfig {
        TcpClientConfig {
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:80".parse().unwrap(),
            isn: ISN,
            ttl: 64,
            mss: 1460,
            syn_options: false,
            payload: Vec::new(),
            close: CloseMode::Fin,
            half_open: false,
            rto: Duration::from_millis(200),
            max_retries: 3,
            idle: Duration::from_millis(50),
            time_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(10),
        }
    }

    /// A segment from the peer (port 80 → 40000).
    fn peer(flags: TcpFlags, seq: SeqNumber, ack: SeqNumber, payload: &[u8]) -> TcpRepr {
        TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq,
            ack,
            flags,
            window: 65160,
            payload: payload.to_vec(),
            options: if flags.contains(TcpFlags::SYN) {
                TcpOptions {
                    mss: Some(1460),
                    ..TcpOptions::default()
                }
            } else {
                TcpOptions::default()
            },
            ..TcpRepr::default()
        }
    }

    const A: TcpFlags = TcpFlags::ACK;
    fn fa() -> TcpFlags {
        TcpFlags::FIN.union(TcpFlags::ACK)
    }
    fn sa() -> TcpFlags {
        TcpFlags::SYN.union(TcpFlags::ACK)
    }

    /// What we sent, as (flags, seq, ack, payload length).
    fn brief(segs: &[TcpRepr]) -> Vec<(TcpFlags, u32, u32, usize)> {
        segs.iter()
            .map(|s| (s.flags, s.seq.0, s.ack.0, s.payload.len()))
            .collect()
    }

    fn states(c: &TcpClient, side: Side) -> Vec<&'static str> {
        c.states()
            .iter()
            .filter(|s| s.side == side)
            .map(|s| s.state.name())
            .collect()
    }

    /// SYN at 0, SYN-ACK at 100 µs: returns the client in ESTABLISHED.
    fn established(cfg: TcpClientConfig) -> TcpClient {
        let mut c = TcpClient::new(cfg);
        let syn = c.start(at(0));
        assert_eq!(brief(&syn), [(TcpFlags::SYN, 1000, 0, 0)]);
        assert_eq!(c.state(), SynSent);
        let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        assert_eq!(out[0].flags, A);
        assert_eq!((out[0].seq, out[0].ack), (ISN + 1, IRS + 1));
        assert_eq!(c.state(), Established);
        assert_eq!(c.server_state(), Established);
        c
    }

    #[test]
    fn syn_sent_syn_ack_established_and_we_close_first_in_four_segments() {
        let mut c = established(cfg());
        // idle for 50 ms: we close
        assert_eq!(c.poll_at(), Some(at(100 + 50_000)));
        assert!(c.poll(at(50_000)).is_empty());
        let fin = c.poll(at(50_100));
        assert_eq!(brief(&fin), [(fa(), 1001, 5001, 0)]);
        assert_eq!((c.state(), c.server_state()), (FinWait1, CloseWait));
        // the peer ACKs our FIN, then closes too
        assert!(
            c.on_segment(&peer(A, IRS + 1, ISN + 2, b""), at(50_150))
                .is_empty()
        );
        assert_eq!(c.state(), FinWait2);
        let last = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(50_400));
        assert_eq!(brief(&last), [(A, 1002, 5002, 0)]);
        assert_eq!((c.state(), c.server_state()), (TimeWait, Closed));
        // a retransmitted FIN in TIME_WAIT is answered again
        let again = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(60_000));
        assert_eq!(brief(&again), [(A, 1002, 5002, 0)]);
        assert_eq!(c.events().last().unwrap().note, None);
        assert_eq!(c.events()[c.events().len() - 2].note, Some(Note::Duplicate));
        assert_eq!(c.poll_at(), Some(at(50_400 + 500_000)));
        assert!(c.poll(at(550_400)).is_empty());
        assert!(c.is_done());
        assert_eq!(c.teardown(), Some(Teardown::WeClosedFirst));
        assert_eq!(
            states(&c, Side::Client),
            [
                "SYN_SENT",
                "ESTABLISHED",
                "FIN_WAIT_1",
                "FIN_WAIT_2",
                "TIME_WAIT",
                "CLOSED"
            ]
        );
        assert_eq!(
            states(&c, Side::Server),
            [
                "SYN_RECV",
                "ESTABLISHED",
                "CLOSE_WAIT",
                "LAST_ACK",
                "CLOSED"
            ]
        );
        let t = |s: TcpState| {
            let e = c
                .states()
                .iter()
                .find(|e| e.side == Side::Client && e.state == s);
            e.unwrap().at
        };
        assert_eq!(t(TimeWait), at(50_400));
        assert_eq!(t(Closed), at(550_400));
        // relative numbers like tcpdump's: the peer's FIN is seq 1 ack 2
        let e = &c.events()[5];
        assert_eq!((e.dir, e.rel_seq, e.rel_ack), (Dir::Received, 1, 2));
    }

    #[test]
    fn merged_fin_ack_is_a_three_segment_close() {
        let mut c = established(cfg());
        c.poll(at(50_100));
        let last = c.on_segment(&peer(fa(), IRS + 1, ISN + 2, b""), at(50_300));
        assert_eq!(brief(&last), [(A, 1002, 5002, 0)]);
        assert_eq!(c.state(), TimeWait);
        c.poll(at(550_300));
        assert_eq!(c.teardown(), Some(Teardown::ThreeSegmentClose));
        assert_eq!(
            states(&c, Side::Client),
            [
                "SYN_SENT",
                "ESTABLISHED",
                "FIN_WAIT_1",
                "TIME_WAIT",
                "CLOSED"
            ]
        );
    }

    #[test]
    fn banner_then_close_peer_closes_first() {
        let mut c = established(cfg());
        // "SSH-2.0\r\n" and FIN in one segment
        let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b"SSH-2.0\r\n"), at(300));
        assert_eq!(
            brief(&out),
            [(A, 1001, 5000 + 1 + 9 + 1, 0), (fa(), 1001, 5011, 0)]
        );
        assert_eq!(c.state(), LastAck);
        assert_eq!(c.received_bytes(), 9);
        assert!(
            c.on_segment(&peer(A, IRS + 11, ISN + 2, b""), at(400))
                .is_empty()
        );
        assert!(c.is_done());
        assert_eq!(c.teardown(), Some(Teardown::PeerClosedFirst));
        assert_eq!(
            states(&c, Side::Client),
            [
                "SYN_SENT",
                "ESTABLISHED",
                "CLOSE_WAIT",
                "LAST_ACK",
                "CLOSED"
            ]
        );
        assert_eq!(
            states(&c, Side::Server),
            [
                "SYN_RECV",
                "ESTABLISHED",
                "FIN_WAIT_1",
                "FIN_WAIT_2",
                "TIME_WAIT"
            ]
        );
    }

    #[test]
    fn crossing_fins_are_a_simultaneous_close() {
        let mut c = established(cfg());
        c.poll(at(50_100));
        // the peer's FIN left before ours arrived: it acks only the handshake
        let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(50_120));
        assert_eq!(brief(&out), [(A, 1002, 5002, 0)]);
        assert_eq!(c.state(), Closing);
        assert!(
            c.on_segment(&peer(A, IRS + 2, ISN + 2, b""), at(50_200))
                .is_empty()
        );
        assert_eq!(c.state(), TimeWait);
        c.poll(at(550_200));
        assert_eq!(c.teardown(), Some(Teardown::SimultaneousClose));
        assert_eq!(
            states(&c, Side::Server),
            [
                "SYN_RECV",
                "ESTABLISHED",
                "CLOSE_WAIT",
                "CLOSING",
                "TIME_WAIT"
            ]
        );
    }

    #[test]
    fn request_response_with_duplicate_and_out_of_order_segments() {
        let mut cf = cfg();
        cf.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        let psh = TcpFlags::ACK.union(TcpFlags::PSH);
        assert_eq!(brief(&out), [(A, 1001, 5001, 0), (psh, 1001, 5001, 18)]);
        // out of order: bytes 6.. before 1..5 → duplicate ACK, nothing taken
        let out = c.on_segment(&peer(A, IRS + 6, ISN + 19, b"world"), at(300));
        assert_eq!(brief(&out), [(A, 1019, 5001, 0)]);
        assert_eq!(c.events().last().unwrap().note, None);
        assert_eq!(
            c.events()[c.events().len() - 2].note,
            Some(Note::OutOfOrder)
        );
        let out = c.on_segment(&peer(A, IRS + 1, ISN + 19, b"hello"), at(310));
        assert_eq!(brief(&out), [(A, 1019, 5006, 0)]);
        // the peer retransmits what we have: duplicate, ACKed again
        let out = c.on_segment(&peer(A, IRS + 1, ISN + 19, b"hello"), at(320));
        assert_eq!(brief(&out), [(A, 1019, 5006, 0)]);
        assert_eq!(c.events()[c.events().len() - 2].note, Some(Note::Duplicate));
        // partly old, partly new: the new part is taken
        let out = c.on_segment(&peer(A, IRS + 4, ISN + 19, b"loworld"), at(330));
        assert_eq!(brief(&out), [(A, 1019, 5011, 0)]);
        assert_eq!(c.received_bytes(), 10);
        // the request was acknowledged: no retransmission pending, idle close later
        assert_eq!(c.poll_at(), Some(at(330 + 50_000)));
    }

    #[test]
    fn unacknowledged_segments_are_retransmitted_with_backoff() {
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        assert_eq!(c.poll_at(), Some(at(200_000)));
        assert!(c.poll(at(199_999)).is_empty());
        let r1 = c.poll(at(200_000));
        assert_eq!(brief(&r1), [(TcpFlags::SYN, 1000, 0, 0)]);
        assert_eq!(c.events().last().unwrap().note, Some(Note::Retransmission));
        assert_eq!(c.poll_at(), Some(at(600_000)));
        assert_eq!(c.poll(at(600_000)).len(), 1);
        assert_eq!(c.poll_at(), Some(at(1_400_000)));
        assert_eq!(c.poll(at(1_400_000)).len(), 1);
        // three retries spent: the fourth deadline gives up
        assert!(c.poll(at(3_000_000)).is_empty());
        assert_eq!(c.teardown(), Some(Teardown::NoAnswer));
        assert!(c.is_done());

        // a lost request is sent again from the oldest unacknowledged byte
        let mut cf = cfg();
        cf.payload = vec![b'x'; 3000];
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        let out = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        assert_eq!(
            brief(&out)[1..],
            [
                (A, 1001, 5001, 1460),
                (A, 1001 + 1460, 5001, 1460),
                (TcpFlags::ACK.union(TcpFlags::PSH), 1001 + 2920, 5001, 80)
            ]
        );
        c.on_segment(&peer(A, IRS + 1, ISN + 1461, b""), at(200));
        let r = c.poll(at(200 + 200_000));
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].seq, r[0].payload.len()), (ISN + 1461, 1460));
    }

    #[test]
    fn our_fin_is_retransmitted_and_a_late_ack_still_counts() {
        let mut c = established(cfg());
        c.poll(at(50_100));
        let r = c.poll(at(250_100));
        assert_eq!(brief(&r), [(fa(), 1001, 5001, 0)]);
        assert!(
            c.on_segment(&peer(A, IRS + 1, ISN + 2, b""), at(250_200))
                .is_empty()
        );
        assert_eq!(c.state(), FinWait2);
    }

    #[test]
    fn rst_variants() {
        // refused: RST+ACK to our SYN
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
        assert!(
            c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 1, b""), at(50))
                .is_empty()
        );
        assert_eq!(c.teardown(), Some(Teardown::Refused));
        // an RST with a wrong ACK is not ours to believe
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 7, b""), at(50));
        assert_eq!(c.state(), SynSent);

        // reset by peer in ESTABLISHED: in-window accepted, out-of-window ignored
        let mut c = established(cfg());
        c.on_segment(
            &peer(TcpFlags::RST, IRS + 100_000, SeqNumber(0), b""),
            at(200),
        );
        assert_eq!(c.state(), Established);
        assert_eq!(c.events().last().unwrap().note, Some(Note::Ignored));
        c.on_segment(&peer(TcpFlags::RST, IRS + 1, SeqNumber(0), b""), at(300));
        assert_eq!(c.teardown(), Some(Teardown::ResetByPeer));
        assert_eq!(c.state(), Closed);

        // --close rst: RST+ACK instead of FIN
        let mut cf = cfg();
        cf.close = CloseMode::Rst;
        let mut c = established(cf);
        let out = c.poll(at(50_100));
        assert_eq!(brief(&out), [(rst_ack, 1001, 5001, 0)]);
        assert_eq!(c.teardown(), Some(Teardown::AbortedByUs));
        assert_eq!(c.server_state(), Closed);
        assert!(c.is_done());
    }

    #[test]
    fn half_open_records_synack_retransmissions_then_resets() {
        let mut cf = cfg();
        cf.half_open = true;
        cf.max_wait = Duration::from_secs(4);
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        assert!(
            c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100))
                .is_empty()
        );
        assert_eq!((c.state(), c.server_state()), (SynSent, SynReceived));
        // no SYN retransmission once the SYN-ACK came
        assert_eq!(c.poll_at(), Some(at(4_000_000)));
        assert!(
            c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(1_000_100))
                .is_empty()
        );
        assert!(
            c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(3_000_100))
                .is_empty()
        );
        let notes: Vec<_> = c.events().iter().map(|e| e.note).collect();
        assert_eq!(
            notes,
            [
                None,
                Some(Note::Unanswered),
                Some(Note::Duplicate),
                Some(Note::Duplicate)
            ]
        );
        let rst = c.poll(at(4_000_000));
        let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
        assert_eq!(brief(&rst), [(rst_ack, 1001, 5001, 0)]);
        assert_eq!(c.teardown(), Some(Teardown::HalfOpen));
    }

    #[test]
    fn kernel_stamps_replace_user_instants_of_segments_and_states() {
        let mut c = TcpClient::new(cfg());
        let syn = c.start(at(0));
        assert!(c.on_sent_stamp(&syn[0], at(7)));
        assert!(!c.on_sent_stamp(&syn[0], at(8)), "stamped once");
        assert_eq!(c.events()[0].at, at(7));
        assert_eq!(c.events()[0].stamp, StampSource::Kernel);
        assert_eq!(c.states()[0].at, at(7));
        let ack = c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        c.on_sent_stamp(&ack[0], at(112));
        let est = c.states().iter().find(|s| s.state == Established).unwrap();
        assert_eq!(est.at, at(112));
    }

    #[test]
    fn timestamps_and_window_scale_follow_the_syn_ack() {
        let mut cf = cfg();
        cf.syn_options = true;
        let mut c = TcpClient::new(cf);
        let syn = c.start(at(0));
        assert_eq!(syn[0].options.window_scale, Some(7));
        let mut sa_seg = peer(sa(), IRS, ISN + 1, b"");
        sa_seg.options.timestamps = Some((777, (at(0).0 / 1_000_000) as u32));
        sa_seg.options.window_scale = Some(7);
        let ack = c.on_segment(&sa_seg, at(100));
        assert_eq!(ack[0].options.timestamps.unwrap().1, 777);
        assert_eq!(ack[0].window, (64240 >> 7) as u16);
    }

    #[test]
    fn a_bare_syn_carries_no_option_at_all() {
        // --bare-syn means the same in trace as in ping, scan and path
        let syn = TcpClient::new(cfg()).start(at(0));
        assert_eq!(syn[0].options, TcpOptions::default());
    }

    fn icmp(v6: bool, icmp_type: u8, code: u8) -> IcmpError {
        IcmpError {
            v6,
            icmp_type,
            code,
        }
    }

    #[test]
    fn a_complete_trace_has_no_shortfalls_and_resets_or_half_closes_do() {
        let mut cf = cfg();
        cf.payload = b"hi".to_vec();
        let mut c = TcpClient::new(cf.clone());
        c.start(at(0));
        c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        c.on_segment(&peer(A, IRS + 1, ISN + 3, b""), at(200));
        c.poll(at(50_200));
        c.on_segment(&peer(fa(), IRS + 1, ISN + 4, b""), at(50_300));
        c.poll(at(550_300));
        assert_eq!(c.teardown(), Some(Teardown::ThreeSegmentClose));
        assert!(c.shortfalls().is_empty(), "{:?}", c.shortfalls());

        // the peer resets instead of closing: not the FIN close asked for
        let mut c = established(cfg());
        c.on_segment(&peer(TcpFlags::RST, IRS + 1, SeqNumber(0), b""), at(300));
        assert_eq!(
            c.shortfalls(),
            ["no orderly close with FINs (--close fin): reset by peer (RST instead of FIN)"]
        );
        // --close rst asked and done
        let mut cf = cfg();
        cf.close = CloseMode::Rst;
        let mut c = established(cf);
        c.poll(at(50_100));
        assert!(c.shortfalls().is_empty());
        // refused: no handshake, nothing else said
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
        c.on_segment(&peer(rst_ack, SeqNumber(0), ISN + 1, b""), at(50));
        assert_eq!(c.shortfalls(), ["no handshake: refused (RST to our SYN)"]);
    }

    /// The peer's last ACK closes us, but the ACK we had just sent to its
    /// retransmitted FIN leaves later on the wire: CLOSED follows it.
    #[test]
    fn closed_is_stamped_after_an_earlier_sent_segment_that_left_late() {
        let mut c = established(cfg());
        let out = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(1_000));
        assert_eq!(brief(&out), [(A, 1001, 5002, 0), (fa(), 1001, 5002, 0)]);
        let dup = c.on_segment(&peer(fa(), IRS + 1, ISN + 1, b""), at(1_010));
        assert_eq!(brief(&dup), [(A, 1002, 5002, 0)]);
        c.on_segment(&peer(A, IRS + 2, ISN + 2, b""), at(1_020));
        assert!(c.is_done());
        assert_eq!(c.states().last().unwrap().at, at(1_020));
        c.on_sent_stamp(&out[0], at(1_005));
        c.on_sent_stamp(&out[1], at(1_006));
        c.on_sent_stamp(&dup[0], at(1_030));
        let closed = c.states().last().unwrap();
        assert_eq!((closed.state, closed.at), (Closed, at(1_030)));
    }

    #[test]
    fn zero_window_peer_gets_one_byte_probes_then_we_give_up_and_say_why() {
        let mut cf = cfg();
        cf.payload = b"hi".to_vec();
        cf.max_retries = 2;
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        let mut synack = peer(sa(), IRS, ISN + 1, b"");
        synack.window = 0;
        let out = c.on_segment(&synack, at(100));
        // the ACK, nothing into the closed window until the timer probes it
        assert_eq!(brief(&out), [(A, 1001, 5001, 0)]);
        let mut zero_ack = peer(A, IRS + 1, ISN + 1, b"");
        zero_ack.window = 0;
        let r = c.poll(at(100 + 200_000));
        assert_eq!(brief(&r), [(A, 1001, 5001, 1)]);
        assert_eq!(c.events().last().unwrap().note, Some(Note::WindowProbe));
        assert!(c.on_segment(&zero_ack, at(200_200)).is_empty());
        let r = c.poll(at(100 + 600_000));
        assert_eq!(brief(&r), [(A, 1001, 5001, 1)]);
        // two retries spent: we give up with RST+ACK, at the window's edge
        // (the peer never took the probe byte); no FIN was ever sent
        let rst_ack = TcpFlags::RST.union(TcpFlags::ACK);
        let r = c.poll(at(100 + 1_400_000));
        assert_eq!(brief(&r), [(rst_ack, 1001, 5001, 0)]);
        assert_eq!(c.teardown(), Some(Teardown::GaveUp));
        assert_eq!(
            states(&c, Side::Client),
            ["SYN_SENT", "ESTABLISHED", "CLOSED"]
        );
        assert_eq!(
            c.shortfalls(),
            [
                "request not acknowledged: 0 of 2 bytes (the peer advertised a zero window)",
                "no orderly close with FINs (--close fin): gave up: our retransmissions went \
                 unacknowledged, then reset by us"
            ]
        );
        // CLOSED takes the kernel's stamp of our RST: never before it
        assert!(c.on_sent_stamp(&r[0], at(100 + 1_400_009)));
        let closed = c.states().last().unwrap();
        assert_eq!((closed.state, closed.at), (Closed, at(100 + 1_400_009)));
    }

    /// A request larger than the peer's window goes out as the window opens;
    /// when it closes, no FIN jumps ahead of the unsent bytes: the persist
    /// timer probes with one byte. (Before, an ACK of all that was sent so far
    /// let the idle timer send a FIN in the middle of the request.)
    #[test]
    fn window_limited_request_is_sent_as_the_window_opens_and_never_overtaken_by_fin() {
        let mut cf = cfg();
        cf.payload = vec![b'x'; 3000];
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        let mut synack = peer(sa(), IRS, ISN + 1, b"");
        synack.window = 1000;
        let out = c.on_segment(&synack, at(100));
        assert_eq!(brief(&out)[1..], [(A, 1001, 5001, 1000)]);
        let mut ack = peer(A, IRS + 1, ISN + 1001, b"");
        ack.window = 1000;
        let out = c.on_segment(&ack, at(200));
        assert_eq!(brief(&out), [(A, 2001, 5001, 1000)]);
        // the window closes with 1000 bytes unsent: nothing to send, and the
        // idle timer must not close
        ack.ack = ISN + 2001;
        ack.window = 0;
        assert!(c.on_segment(&ack, at(300)).is_empty());
        assert!(
            c.poll(at(300 + 50_000)).is_empty(),
            "the idle timer sends no FIN"
        );
        assert!(c.poll(at(300 + 100_000)).is_empty());
        let probe = c.poll(at(300 + 200_000));
        assert_eq!(brief(&probe), [(A, 3001, 5001, 1)]);
        // it opens again (the probe byte not taken yet): the rest after the
        // probe, with PSH, then the FIN once all is acknowledged
        ack.window = 2000;
        let out = c.on_segment(&ack, at(200_400));
        let psh = A.union(TcpFlags::PSH);
        assert_eq!(brief(&out), [(psh, 3002, 5001, 999)]);
        ack.ack = ISN + 3001;
        assert!(c.on_segment(&ack, at(200_500)).is_empty());
        let fin = c.poll(at(200_500 + 50_000));
        assert_eq!(brief(&fin), [(fa(), 4001, 5001, 0)]);
    }

    #[test]
    fn out_of_window_rst_is_ignored_and_the_unacknowledged_request_said() {
        let mut cf = cfg();
        cf.payload = b"hi".to_vec();
        cf.max_retries = 1;
        let mut c = TcpClient::new(cf);
        c.start(at(0));
        c.on_segment(&peer(sa(), IRS, ISN + 1, b""), at(100));
        let rst = peer(TcpFlags::RST, IRS + 1_000_000, SeqNumber(0), b"");
        assert!(c.on_segment(&rst, at(150)).is_empty());
        assert_eq!(c.events().last().unwrap().note, Some(Note::Ignored));
        assert_eq!(c.state(), Established);
        assert_eq!(
            brief(&c.poll(at(100 + 200_000))),
            [(A.union(TcpFlags::PSH), 1001, 5001, 2)]
        );
        c.on_segment(&rst, at(200_150));
        c.poll(at(100 + 600_000));
        assert_eq!(c.teardown(), Some(Teardown::GaveUp));
        assert_eq!(c.shortfalls()[0], "request not acknowledged: 0 of 2 bytes");
        assert_eq!(c.shortfalls().len(), 2);
    }

    #[test]
    fn icmp_errors_end_the_trace_at_once_with_their_reason() {
        let from: IpAddr = "198.18.0.2".parse().unwrap();
        // admin-prohibited quoting our SYN, in SYN_SENT: no retransmission
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        assert!(
            c.on_icmp(icmp(false, 3, 13), from, Some(ISN), at(40))
                .is_empty()
        );
        assert!(c.is_done());
        assert_eq!(c.teardown(), Some(Teardown::Unreachable));
        assert_eq!(c.poll_at(), None);
        assert_eq!(
            c.icmp(),
            Some(&IcmpEnd {
                reason: "admin-prohibited".into(),
                from
            })
        );
        assert_eq!(
            c.shortfalls(),
            ["no handshake: ICMP admin-prohibited from 198.18.0.2"]
        );
        assert_eq!(
            c.events().last().unwrap().icmp.as_deref(),
            Some("ICMP admin-prohibited from 198.18.0.2")
        );
        assert_eq!(c.states().last().unwrap().at, at(40));

        // quoting a sequence number we never sent (even our next one), no
        // sequence number at all, or a path-MTU signal: no end
        let mut c = TcpClient::new(cfg());
        c.start(at(0));
        assert!(
            c.on_icmp(icmp(false, 3, 13), from, Some(ISN + 1), at(40))
                .is_empty()
        );
        assert!(c.on_icmp(icmp(false, 3, 13), from, None, at(40)).is_empty());
        assert!(
            c.on_icmp(icmp(false, 3, 13), from, Some(ISN + 5), at(40))
                .is_empty()
        );
        assert!(
            c.on_icmp(icmp(false, 3, 4), from, Some(ISN), at(41))
                .is_empty()
        );
        assert!(
            c.on_icmp(icmp(true, 2, 0), from, Some(ISN), at(42))
                .is_empty()
        );
        assert_eq!(c.state(), SynSent);

        // ICMPv6 port unreachable on an open connection: we reset and end
        let mut c = established(cfg());
        let out = c.on_icmp(icmp(true, 1, 4), from, Some(ISN + 1), at(500));
        assert_eq!(brief(&out), [(TcpFlags::RST.union(A), 1001, 5001, 0)]);
        assert_eq!(c.teardown(), Some(Teardown::Unreachable));
        assert_eq!(
            c.shortfalls(),
            ["no orderly close with FINs (--close fin): ICMP port-unreachable from 198.18.0.2"]
        );
    }

    #[test]
    fn never_panics_on_noise() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut cf = cfg();
            cf.half_open = round % 5 == 0;
            cf.payload = vec![1; (rnd() % 4000) as usize];
            let mut c = TcpClient::new(cf);
            c.start(at(0));
            let mut now = 0;
            for _ in 0..200 {
                now += rnd() % 100_000;
                let r = rnd();
                let near = |base: SeqNumber, r: u64| base + (r % 8) as u32;
                let seg = TcpRepr {
                    src_port: 80,
                    dst_port: 40000,
                    seq: if r & 1 == 0 {
                        near(IRS, r >> 8)
                    } else {
                        SeqNumber(rnd() as u32)
                    },
                    ack: if r & 2 == 0 {
                        near(ISN, r >> 16)
                    } else {
                        SeqNumber(rnd() as u32)
                    },
                    flags: TcpFlags((rnd() & 0x3f) as u8),
                    window: rnd() as u16,
                    payload: vec![0; (rnd() % 3) as usize],
                    ..TcpRepr::default()
                };
                c.on_segment(&seg, at(now));
                if r & 4 == 0 {
                    c.poll(at(now));
                }
            }
            // bounded: every trace ends by max_wait at the latest
            for _ in 0..100 {
                match c.poll_at() {
                    Some(t) => {
                        c.poll(t);
                    }
                    None => break,
                }
            }
            assert!(c.is_done(), "round {round}: {:?}", c.state());
        }
    }
}
