//! Building our segments, sending request data within the peer's window,
//! closing (FIN or RST), retransmission and the timers that drive them.

use super::{CloseMode, Note, OUR_WINDOW, OUR_WSCALE, Side, TcpClient, TcpState, Teardown};
use crate::event::Timestamp;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use std::time::Duration;

/// The retransmission timer of the oldest unacknowledged segment.
#[derive(Debug, Clone)]
pub(super) struct Retransmit {
    pub(super) deadline: Timestamp,
    pub(super) rto: Duration,
    pub(super) tries: u32,
}

impl TcpClient {
    pub(super) fn syn(&mut self, now: Timestamp) -> TcpRepr {
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

    pub(super) fn segment(
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

    pub(super) fn ack_now(&mut self, now: Timestamp) -> TcpRepr {
        let seq = self.snd_nxt;
        let a = self.segment(TcpFlags::ACK, seq, Vec::new(), now);
        self.record_sent(a, now, None)
    }

    /// Sends request bytes not sent yet, within the peer's window.
    pub(super) fn send_data(&mut self, now: Timestamp, retransmission: bool) -> Vec<TcpRepr> {
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
    pub(super) fn close(&mut self, now: Timestamp) -> Vec<TcpRepr> {
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

    pub(super) fn retransmit(&mut self, now: Timestamp) -> Vec<TcpRepr> {
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

    pub(super) fn send_rst_if_synchronized(&mut self, now: Timestamp) -> Vec<TcpRepr> {
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

    pub(super) fn half_open_cleanup(&mut self, now: Timestamp) -> Vec<TcpRepr> {
        let out = self.send_rst_if_synchronized(now);
        self.finish(Teardown::HalfOpen, now);
        out
    }

    /// Activity: restarts the idle timer that decides when we close.
    pub(super) fn touch(&mut self, now: Timestamp) {
        if matches!(self.state, TcpState::Established) {
            self.close_at = Some(now + self.cfg.idle);
        }
    }

    pub(super) fn arm_rtx(&mut self, now: Timestamp, restart: bool) {
        if restart || self.rtx.is_none() {
            self.rtx = Some(Retransmit {
                deadline: now + self.cfg.rto,
                rto: self.cfg.rto,
                tries: 0,
            });
        }
    }
}

/// Our TCP timestamp clock: milliseconds, wrapping.
pub(super) fn tsval(now: Timestamp) -> u32 {
    (now.0 / 1_000_000) as u32
}
