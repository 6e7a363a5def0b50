//! One DNS query over raw UDP as a machine the drive loop runs: the query
//! leaves on the first poll, retries go out on [`DnsExchange`]'s deadlines,
//! and the run is over once it is answered, refused or given up.

use super::dns::{DnsExchange, DnsOutcome};
use super::machine::{Context, Machine, Packet, Stop};
use crate::event::Timestamp;
use crate::wire::dns::QueryRepr;
use std::net::SocketAddr;

/// What a [`OneQuery`] reports as it goes (for the `-v` log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryEvent {
    /// The query went out.
    Sent {
        /// Its DNS message ID.
        id: u16,
    },
    /// No answer yet: it went out again.
    Retry {
        /// The retry's DNS message ID.
        id: u16,
    },
}

/// One query to one server from one (held) source port.
#[derive(Debug)]
pub struct OneQuery<'a> {
    ex: &'a mut DnsExchange,
    server: SocketAddr,
    src_port: u16,
    query: QueryRepr,
    sent: bool,
    stopped: bool,
    /// The exchange's next deadline, kept after each call.
    wake: Option<Timestamp>,
    outcome: Option<DnsOutcome>,
}

impl<'a> OneQuery<'a> {
    /// `query` to `server` from `src_port`, through `ex` (its timeout and retries).
    pub fn new(
        ex: &'a mut DnsExchange,
        server: SocketAddr,
        src_port: u16,
        query: QueryRepr,
    ) -> OneQuery<'a> {
        OneQuery {
            ex,
            server,
            src_port,
            query,
            sent: false,
            stopped: false,
            wake: None,
            outcome: None,
        }
    }

    /// How the query ended; None if it was stopped first.
    pub fn take_outcome(&mut self) -> Option<DnsOutcome> {
        self.outcome.take()
    }
}

impl Machine for OneQuery<'_> {
    type Event = QueryEvent;

    fn on_packet(&mut self, p: &Packet<'_>, _cx: &mut dyn Context<QueryEvent>) {
        if self.outcome.is_none()
            && let Some(o) = self.ex.on_packet(p.data, p.direction, p.at, p.offloaded)
        {
            self.outcome = Some(o);
        }
        self.wake = self.ex.next_deadline();
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<QueryEvent>) {
        if !self.sent {
            self.sent = true;
            let (key, d) = self
                .ex
                .query(now, 0, self.server, self.src_port, &self.query);
            cx.send(self.server.ip(), d);
            cx.report(QueryEvent::Sent { id: key.id });
        } else if self.outcome.is_none() {
            let (mut done, resend) = self.ex.on_time(now);
            for r in resend {
                cx.report(QueryEvent::Retry { id: r.key.id });
                cx.send(self.server.ip(), r.datagram);
            }
            self.outcome = done.pop();
        }
        self.wake = self.ex.next_deadline();
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if !self.sent {
            return Some(Timestamp(0));
        }
        self.wake
    }

    fn is_done(&self) -> bool {
        self.stopped || self.outcome.is_some()
    }

    fn stop(&mut self, _why: Stop, _now: Timestamp, _cx: &mut dyn Context<QueryEvent>) {
        self.stopped = true;
    }
}
