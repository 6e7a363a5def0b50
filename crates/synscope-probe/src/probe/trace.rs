//! `trace` as a machine the drive loop runs: one [`TcpClient`] connection,
//! with the flow matching that picks its packets out of the capture (ours
//! leaving, for the kernel's send stamps; the peer's segments; ICMP errors
//! quoting our segments) and the fingerprints of every peer segment, for the
//! SYN-ACK check.

use super::fingerprint::Fingerprint;
use super::machine::{Context, Machine, Packet, Stop};
use super::tcp_client::{TcpClient, TcpClientConfig};
use crate::event::{Direction, Timestamp};
use crate::wire::datagram::Checksums;
use crate::wire::{Datagram, Protocol, SeqNumber, TcpRepr, Transport};
use std::time::Duration;

/// How long a trace keeps reading once over: the kernel's stamps of our last
/// segments arrive a little after they were sent.
pub const LINGER: Duration = Duration::from_millis(20);

/// One traced connection.
#[derive(Debug)]
pub struct Trace {
    client: TcpClient,
    /// Every segment the peer sent on this flow.
    received: Vec<Fingerprint>,
}

impl Trace {
    /// A trace not started yet (its first poll sends the SYN).
    pub fn new(cfg: TcpClientConfig) -> Trace {
        Trace {
            client: TcpClient::new(cfg),
            received: Vec::new(),
        }
    }

    /// The connection's client, with its log of segments and states.
    pub fn client(&self) -> &TcpClient {
        &self.client
    }

    /// The client and the fingerprints of the peer's segments.
    pub fn into_parts(self) -> (TcpClient, Vec<Fingerprint>) {
        (self.client, self.received)
    }

    /// Feeds one captured packet: our own segment of this flow (its kernel
    /// stamp), the peer's, or an ICMP error quoting ours; anything else is
    /// not ours and ignored. Returns the segments to send.
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        direction: Direction,
        at: Timestamp,
        offloaded: bool,
    ) -> Vec<TcpRepr> {
        let local = self.client.config().src;
        let remote = self.client.config().dst;
        let mode = if offloaded {
            Checksums::Offloaded
        } else {
            Checksums::Verify
        };
        let Ok(d) = Datagram::parse_with(data, mode) else {
            return Vec::new();
        };
        let t = match d.transport {
            Transport::Tcp(t) => t,
            // an ICMP error quoting one of our segments of this flow
            Transport::Icmp(i) if direction == Direction::Incoming && d.ip.dst == local.ip() => {
                let (Some(error), Some(q)) = (i.error(), i.quoted.as_ref()) else {
                    return Vec::new();
                };
                if q.ip.src != local.ip()
                    || q.ip.dst != remote.ip()
                    || q.ip.protocol != Protocol::TCP
                    || q.src_port != local.port()
                    || q.dst_port != remote.port()
                {
                    return Vec::new();
                }
                return self
                    .client
                    .on_icmp(error, d.ip.src, q.tcp_seq.map(SeqNumber), at);
            }
            _ => return Vec::new(),
        };
        let ours = d.ip.src == local.ip()
            && t.src_port == local.port()
            && d.ip.dst == remote.ip()
            && t.dst_port == remote.port();
        let theirs = d.ip.src == remote.ip()
            && t.src_port == remote.port()
            && d.ip.dst == local.ip()
            && t.dst_port == local.port();
        match direction {
            Direction::Outgoing if ours => {
                self.client.on_sent_stamp(&t, at);
                Vec::new()
            }
            Direction::Incoming if theirs => {
                self.received.extend(Fingerprint::of(data, at));
                self.client.on_segment(&t, at)
            }
            _ => Vec::new(),
        }
    }

    fn send(&mut self, segs: Vec<TcpRepr>, cx: &mut dyn Context<TcpRepr>) {
        let dst = self.client.config().dst.ip();
        for s in segs {
            let bytes = self.client.datagram(&s);
            cx.send(dst, bytes);
            cx.report(s);
        }
    }
}

/// Reports each segment sent (for the `-v` log).
impl Machine for Trace {
    type Event = TcpRepr;

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<TcpRepr>) {
        let segs = self.on_datagram(p.data, p.direction, p.at, p.offloaded);
        self.send(segs, cx);
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<TcpRepr>) {
        let segs = if self.client.started_at().is_none() {
            self.client.start(now)
        } else {
            self.client.poll(now)
        };
        self.send(segs, cx);
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.client.started_at().is_none() {
            return Some(Timestamp(0));
        }
        self.client.poll_at()
    }

    fn is_done(&self) -> bool {
        self.client.is_done()
    }

    fn stop(&mut self, _why: Stop, now: Timestamp, cx: &mut dyn Context<TcpRepr>) {
        let segs = self.client.abort(now);
        self.send(segs, cx);
    }

    /// Every timer once, and a margin.
    fn bound(&self) -> Option<Duration> {
        let c = self.client.config();
        Some(c.max_wait + c.time_wait + Duration::from_secs(5))
    }

    fn linger(&self) -> Duration {
        LINGER
    }
}
