//! The event log: every segment with its instant, every state change of
//! both sides (the peer's inferred from what crossed the wire), when the
//! connection ended and how.

use super::{TcpClient, TcpState};
use crate::event::Timestamp;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};
use std::net::IpAddr;

/// Who sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// We sent it.
    Sent,
    /// The peer sent it.
    Received,
}

/// Where a segment's instant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampSource {
    /// The kernel's stamp (capture or transmit timestamp).
    Kernel,
    /// The user-space clock at the send call (not replaced by a kernel stamp yet).
    User,
}

/// Something worth saying about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEvent {
    /// When it was sent or received.
    pub at: Timestamp,
    /// Where `at` came from.
    pub stamp: StampSource,
    /// Who sent it.
    pub dir: Dir,
    /// Its TCP flags (tcpdump's letters in JSON).
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
    pub note: Option<Note>,
    /// Not a segment but an ICMP error quoting ours (`ICMP admin-prohibited
    /// from 198.18.0.2`); `seq` is the quoted sequence number.
    pub icmp: Option<String>,
    /// Our state once this segment was sent or processed.
    pub client_state: TcpState,
    /// The peer's state the textbook says it is in once it sent or received this.
    pub server_state: TcpState,
}

/// Which side a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Us.
    Client,
    /// The peer.
    Server,
}

/// A state entered, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Whose state.
    pub side: Side,
    /// The state entered.
    pub state: TcpState,
    /// When: the instant of the segment or timer that caused it.
    pub at: Timestamp,
    /// The segment (index in the log) that caused it, if any (timers cause none).
    pub cause: Option<usize>,
}

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpEnd {
    /// Its name, as ping gives it (`admin-prohibited`, `port-unreachable`, ...).
    pub reason: String,
    /// Who sent it (the target or a router on the way).
    pub from: IpAddr,
}

impl TcpClient {
    /// CLOSED comes after every segment sent or received before it, on the
    /// wire's clock too: one we sent just before processing the segment that
    /// closed us may leave (be stamped) after that segment arrived.
    pub(super) fn settle_closed(&mut self) {
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

    pub(super) fn closing_kind(&self) -> Teardown {
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

    pub(super) fn enter_time_wait(&mut self, now: Timestamp, cause: usize) {
        self.set_state(Side::Client, TcpState::TimeWait, now, Some(cause));
        self.time_wait_until = Some(now + self.cfg.time_wait);
        self.rtx = None;
        self.close_at = None;
    }

    /// Ends the trace. CLOSED is caused by the last segment if it was sent or
    /// received at this very instant (our RST, the peer's RST or last ACK), so
    /// it takes that segment's kernel stamp and never precedes it.
    pub(super) fn finish(&mut self, kind: Teardown, now: Timestamp) {
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

    pub(super) fn set_state(
        &mut self,
        side: Side,
        state: TcpState,
        at: Timestamp,
        cause: Option<usize>,
    ) {
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
    pub(super) fn record_sent(
        &mut self,
        seg: TcpRepr,
        now: Timestamp,
        note: Option<Note>,
    ) -> TcpRepr {
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
        self.log_segment(&seg, now, Dir::Sent, note);
        seg
    }

    /// Logs one of the peer's segments.
    pub(super) fn record_received(&mut self, seg: &TcpRepr, now: Timestamp, note: Option<Note>) {
        self.log_segment(seg, now, Dir::Received, note);
    }

    /// One line of the log; sequence numbers relative to the sender's ISN and
    /// acknowledgments to the receiver's, as tcpdump shows them.
    fn log_segment(&mut self, seg: &TcpRepr, now: Timestamp, dir: Dir, note: Option<Note>) {
        let (stamp, seq_base, ack_base) = match dir {
            Dir::Sent => (
                StampSource::User,
                self.cfg.isn,
                self.irs.unwrap_or_default(),
            ),
            Dir::Received => (
                StampSource::Kernel,
                self.irs.unwrap_or(seg.seq),
                self.cfg.isn,
            ),
        };
        self.events.push(SegmentEvent {
            at: now,
            stamp,
            dir,
            flags: seg.flags,
            seq: seg.seq,
            ack: seg.ack,
            rel_seq: seg.seq.0.wrapping_sub(seq_base.0),
            rel_ack: if seg.flags.contains(TcpFlags::ACK) {
                seg.ack.0.wrapping_sub(ack_base.0)
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
