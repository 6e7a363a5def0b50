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
//!
//! By concern: this file holds the configuration, the states and the public
//! API; `arrival` what each arriving segment does, `send` building and
//! (re)sending segments and the timers, `log` the event log (its types are
//! re-exported here), the state changes of both sides with the peer's
//! inferred ones, and how the connection ended; `tests` the exchanges.

use crate::event::Timestamp;
use crate::wire::{IcmpError, IpRepr, Protocol, SeqNumber, TcpFlags, TcpRepr};
use send::Retransmit;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

mod arrival;
mod log;
mod send;
#[cfg(test)]
mod tests;

pub use log::{Dir, IcmpEnd, Note, SegmentEvent, Side, StampSource, StateEntry, Teardown};

/// TCP connection states (RFC 9293 §3.3.2), named as `ss` and textbooks name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No connection (before our SYN, after the end).
    Closed,
    /// Waiting for a SYN (the server before ours arrives).
    Listen,
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for its ACK.
    SynReceived,
    /// Handshake done: data flows both ways.
    Established,
    /// We sent FIN, not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's.
    FinWait2,
    /// Both FINs sent, ours not yet acknowledged (simultaneous close).
    Closing,
    /// Both FINs acknowledged; lingering for retransmitted FINs.
    TimeWait,
    /// The peer's FIN received; our application has not closed yet.
    CloseWait,
    /// FIN sent after the peer's, waiting for its ACK.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}
