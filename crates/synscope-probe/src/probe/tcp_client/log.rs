//! The event log: every segment with its instant, every state change of
//! both sides (the peer's inferred from what crossed the wire), when the
//! connection ended and how.

use super::{
    Dir, Note, SegmentEvent, Side, StampSource, StateEntry, TcpClient, TcpState, Teardown,
};
use crate::event::Timestamp;
use crate::wire::{TcpFlags, TcpRepr};

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

    pub(super) fn record_received(&mut self, seg: &TcpRepr, now: Timestamp, note: Option<Note>) {
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
