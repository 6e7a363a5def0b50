//! What each arriving segment does: to our state, to the peer's inferred
//! state, to the sequence space and to what we send in answer.

use super::{Note, OUR_WINDOW, OUR_WSCALE, Side, TcpClient, TcpState, Teardown};
use crate::event::Timestamp;
use crate::wire::{TcpFlags, TcpRepr};

impl TcpClient {
    pub(super) fn on_segment_syn_sent(&mut self, seg: &TcpRepr, now: Timestamp) -> Vec<TcpRepr> {
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

    pub(super) fn on_segment_synchronized(
        &mut self,
        seg: &TcpRepr,
        now: Timestamp,
    ) -> Vec<TcpRepr> {
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
    pub(super) fn note_zero_window(&mut self) {
        let end = self.cfg.isn + 1 + self.cfg.payload.len() as u32;
        if self.peer_window == 0 && self.snd_una < end && !self.cfg.payload.is_empty() {
            self.zero_window = true;
        }
    }

    pub(super) fn peer_fin_seen(&self) -> bool {
        matches!(
            self.state,
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
        )
    }

    pub(super) fn receive_window(&self) -> u32 {
        OUR_WINDOW
    }

    pub(super) fn scaled(&self, window: u16) -> u32 {
        match self.wscale {
            Some((peer, _)) => (window as u32) << peer,
            None => window as u32,
        }
    }
}
