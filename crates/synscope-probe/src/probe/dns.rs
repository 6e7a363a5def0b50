//! The DNS exchange over raw UDP, sans-IO: queries go out as whole IP datagrams,
//! captured packets and timestamps come in. A reply is accepted only when it
//! comes from the server and port we asked, to the source port we used, with
//! our id, the QR bit and our question; everything else is ignored and counted
//! by reason. Retries and deadlines run on the timestamps handed in.

use super::fxhash::{FxMap, FxSet};
use super::syn::RttSource;
use crate::event::{Direction, Timestamp};
use crate::wire::datagram::Checksums;
use crate::wire::dns::{QueryRepr, Question, ReplyRepr};
use crate::wire::{Datagram, IcmpError, IpRepr, Protocol, Transport, UdpRepr};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How queries are sent and how long they wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProbeConfig {
    /// Our source address (one family).
    pub src: IpAddr,
    /// IP TTL (hop limit) of the queries.
    pub ttl: u8,
    /// Wait for an answer, per attempt.
    pub timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// Read only the answer section (bulk mode prints nothing else): the
    /// authority and additional sections are left out of the reply.
    pub answers_only: bool,
}

/// One query's identity on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    /// The server's address and port.
    pub server: SocketAddr,
    /// Our UDP source port.
    pub src_port: u16,
    /// The DNS message ID.
    pub id: u16,
}

/// Why a captured packet was not taken as an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsIgnored {
    /// Unreadable IP/UDP/DNS (truncated, bad length, bad checksum).
    Malformed,
    /// Not between a server we asked and a port we use.
    OtherFlow,
    /// Right server and port, but nothing outstanding there (late or duplicate).
    NoQuery,
    /// Right server and port, an id we did not send.
    WrongId,
    /// Right id, but the question differs from ours.
    WrongQuestion,
    /// The QR bit is off: a query, not a response.
    NotResponse,
    /// ICMP, a fragment, or another protocol.
    NotUdp,
    /// Our own outgoing packets that are not queries.
    OwnTraffic,
}

impl DnsIgnored {
    /// The kebab-case name used in counters and JSON (`wrong-id`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DnsIgnored::Malformed => "malformed",
            DnsIgnored::OtherFlow => "other-flow",
            DnsIgnored::NoQuery => "no-query",
            DnsIgnored::WrongId => "wrong-id",
            DnsIgnored::WrongQuestion => "wrong-question",
            DnsIgnored::NotResponse => "not-response",
            DnsIgnored::NotUdp => "not-udp",
            DnsIgnored::OwnTraffic => "own-traffic",
        }
    }
}

/// An ICMP error that ended a query at once: what it said and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The ICMP type and code.
    pub error: IcmpError,
    /// The server itself, or a router on the way.
    pub from: IpAddr,
    /// From the query leaving to the error arriving.
    pub after: Duration,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.error.name(), self.from)
    }
}

/// Does this ICMP error end a query? Unreachable (except "fragmentation
/// needed" and "packet too big", which only ask for smaller packets), time
/// exceeded and parameter problem do; source quench and redirects do not.
pub fn ends_query(e: &IcmpError) -> bool {
    match (e.v6, e.icmp_type) {
        (false, 3) => e.code != 4,
        (false, 11 | 12) => true,
        (true, 1 | 3 | 4) => true,
        _ => false,
    }
}

/// A finished query: answered or given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOutcome {
    /// The caller's tag (line number, server index).
    pub tag: u64,
    /// The query's identity on the wire (the same for every attempt).
    pub key: QueryKey,
    /// What was asked.
    pub question: Question,
    /// Bytes of the DNS query message (no IP or UDP header).
    pub query_size: usize,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// When the last attempt left (kernel stamp if captured).
    pub sent_at: Timestamp,
    /// From `sent_at` to the answer's receive stamp; None without an answer.
    pub rtt: Option<Duration>,
    /// Whether the send stamp came from the kernel or user space.
    pub rtt_source: RttSource,
    /// None: no answer after every attempt, or refused.
    pub reply: Option<ReplyRepr>,
    /// The ICMP error that ended the query without an answer.
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone)]
struct Pending {
    tag: u64,
    /// The query as sent: a retry builds its datagram again (no copy of
    /// every datagram kept for the few that are retried).
    query: QueryRepr,
    query_size: usize,
    user_sent: Timestamp,
    kernel_sent: Option<Timestamp>,
    deadline: Timestamp,
    attempts: u32,
}

impl Pending {
    /// When the query left: the kernel's stamp when there is one.
    fn sent_at(&self) -> Timestamp {
        self.kernel_sent.unwrap_or(self.user_sent)
    }

    /// How the query ended: answered (`reply`, `rtt`), refused, or neither.
    fn outcome(
        self,
        key: QueryKey,
        rtt: Option<Duration>,
        reply: Option<ReplyRepr>,
        refused: Option<Refusal>,
    ) -> DnsOutcome {
        DnsOutcome {
            tag: self.tag,
            key,
            sent_at: self.sent_at(),
            question: self.query.question,
            query_size: self.query_size,
            attempts: self.attempts,
            rtt,
            rtt_source: source_of(self.kernel_sent),
            reply,
            refused,
        }
    }
}

/// Deadlines in time order. With one timeout for every query they are
/// pushed in order (a queue, O(1)); one out of order (the clock stepped back)
/// is inserted where it belongs.
#[derive(Debug, Default)]
struct Deadlines(VecDeque<(Timestamp, QueryKey)>);

impl Deadlines {
    fn push(&mut self, at: Timestamp, key: QueryKey) {
        match self.0.back() {
            Some(&(last, _)) if last > at => {
                let i = self.0.partition_point(|&(t, _)| t <= at);
                self.0.insert(i, (at, key));
            }
            _ => self.0.push_back((at, key)),
        }
    }

    fn peek(&self) -> Option<(Timestamp, QueryKey)> {
        self.0.front().copied()
    }

    fn pop(&mut self) {
        self.0.pop_front();
    }
}

/// Queries outstanding towards any number of servers.
#[derive(Debug)]
pub struct DnsExchange {
    cfg: DnsProbeConfig,
    pending: FxMap<QueryKey, Pending>,
    /// Outstanding queries per (server, source port), to tell wrong ids from other flows.
    ports: FxMap<(SocketAddr, u16), u32>,
    /// Every source port we have used: replies to them are late, not foreign.
    used_ports: FxSet<u16>,
    deadlines: Deadlines,
    ignored: BTreeMap<DnsIgnored, u64>,
}

/// A datagram to (re)send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// The query it carries.
    pub key: QueryKey,
    /// The whole IP datagram, headers included.
    pub datagram: Vec<u8>,
}

impl DnsExchange {
    /// An exchange with nothing outstanding.
    pub fn new(cfg: DnsProbeConfig) -> DnsExchange {
        DnsExchange {
            cfg,
            pending: FxMap::default(),
            ports: FxMap::default(),
            used_ports: FxSet::default(),
            deadlines: Deadlines::default(),
            ignored: BTreeMap::new(),
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &DnsProbeConfig {
        &self.cfg
    }

    /// Queries neither answered nor given up.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Is this (server, port, id) in use? The caller picks another id if so.
    pub fn in_use(&self, key: &QueryKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Counts of ignored packets by reason.
    pub fn ignored(&self) -> &BTreeMap<DnsIgnored, u64> {
        &self.ignored
    }

    fn ignore(&mut self, why: DnsIgnored) -> Option<DnsOutcome> {
        *self.ignored.entry(why).or_default() += 1;
        None
    }

    /// Builds the datagram of a query and tracks it; the caller sends it right
    /// away. `now` is the user-space time just before the send (the fallback
    /// send stamp). The query's id must not be [`in_use`](Self::in_use).
    pub fn query(
        &mut self,
        now: Timestamp,
        tag: u64,
        server: SocketAddr,
        src_port: u16,
        query: &QueryRepr,
    ) -> (QueryKey, Vec<u8>) {
        let key = QueryKey {
            server,
            src_port,
            id: query.id,
        };
        let (datagram, query_size) = datagram_of(&self.cfg, &key, query);
        let deadline = now + self.cfg.timeout;
        if self.pending.contains_key(&key) {
            self.forget(&key);
        }
        self.pending.insert(
            key,
            Pending {
                tag,
                query: query.clone(),
                query_size,
                user_sent: now,
                kernel_sent: None,
                deadline,
                attempts: 1,
            },
        );
        *self.ports.entry((server, src_port)).or_default() += 1;
        self.used_ports.insert(src_port);
        self.deadlines.push(deadline, key);
        (key, datagram)
    }

    fn forget(&mut self, key: &QueryKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        let pk = (key.server, key.src_port);
        if let Some(n) = self.ports.get_mut(&pk) {
            *n -= 1;
            if *n == 0 {
                self.ports.remove(&pk);
            }
        }
        Some(p)
    }

    /// The earliest deadline of an outstanding query.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        while let Some((at, key)) = self.deadlines.peek() {
            match self.pending.get(&key) {
                Some(p) if p.deadline == at => return Some(at),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Queries whose deadline passed: retried (returned as datagrams to send,
    /// stamped `now`) or given up (returned as outcomes without a reply).
    pub fn on_time(&mut self, now: Timestamp) -> (Vec<DnsOutcome>, Vec<Resend>) {
        let mut done = Vec::new();
        let mut resend = Vec::new();
        while let Some((at, key)) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(p) = self.pending.get_mut(&key) else {
                continue;
            };
            if p.deadline != at {
                continue; // superseded by a retry
            }
            if p.attempts <= self.cfg.retries {
                p.attempts += 1;
                p.user_sent = now;
                p.kernel_sent = None;
                p.deadline = now + self.cfg.timeout;
                self.deadlines.push(p.deadline, key);
                resend.push(Resend {
                    key,
                    datagram: datagram_of(&self.cfg, &key, &p.query).0,
                });
            } else if let Some(p) = self.forget(&key) {
                done.push(p.outcome(key, None, None, None));
            }
        }
        (done, resend)
    }

    /// Looks at one captured packet (from its IP header): an answer to one of
    /// our queries, the kernel's stamp of a query leaving, an ICMP error that
    /// ends a query, or ignored.
    pub fn on_packet(
        &mut self,
        data: &[u8],
        direction: Direction,
        at: Timestamp,
        checksum_offloaded: bool,
    ) -> Option<DnsOutcome> {
        let r = read_packet(
            self.cfg.src,
            self.cfg.answers_only,
            data,
            direction,
            at,
            checksum_offloaded,
        );
        self.on_received(r)
    }

    /// Takes a packet [`read_packet`] read (possibly on another thread).
    pub fn on_received(&mut self, r: Received) -> Option<DnsOutcome> {
        match r {
            Received::Ignored(why) => self.ignore(why),
            Received::Sent { key, from, at } => {
                if from != self.cfg.src || !self.on_sent(&key, at) {
                    return self.ignore(DnsIgnored::OwnTraffic);
                }
                None
            }
            Received::Answer {
                server,
                local_port,
                id,
                message,
                at,
            } => self.on_reply(server, local_port, id, message, at),
            Received::Icmp {
                server,
                local_port,
                id,
                error,
                from,
                at,
            } => self.on_icmp(server, local_port, id, error, from, at),
        }
    }

    /// The kernel's stamp of a query leaving (captured, or a socket's TX
    /// stamp). False if no such query waits for one.
    pub fn on_sent(&mut self, key: &QueryKey, at: Timestamp) -> bool {
        match self.pending.get_mut(key) {
            Some(p) if p.kernel_sent.is_none() => {
                p.kernel_sent = Some(at);
                true
            }
            _ => false,
        }
    }

    /// A DNS message from `server` to our `local_port` (read off a capture or
    /// an ordinary UDP socket), received at `at`: the answer to one of our
    /// queries, or ignored.
    pub fn on_message(
        &mut self,
        server: SocketAddr,
        local_port: u16,
        payload: &[u8],
        at: Timestamp,
    ) -> Option<DnsOutcome> {
        let Some(id) = payload.get(..2) else {
            return self.ignore(DnsIgnored::Malformed);
        };
        let message = parse_message(payload, self.cfg.answers_only);
        self.on_reply(
            server,
            local_port,
            u16::from_be_bytes([id[0], id[1]]),
            message,
            at,
        )
    }

    /// A DNS message with this `id` from `server` to our `local_port`,
    /// already parsed (None: unreadable): the answer to one of our queries, or
    /// ignored.
    pub fn on_reply(
        &mut self,
        server: SocketAddr,
        local_port: u16,
        id: u16,
        message: Option<ReplyRepr>,
        at: Timestamp,
    ) -> Option<DnsOutcome> {
        let key = QueryKey {
            server,
            src_port: local_port,
            id,
        };
        // one look-up for both: is it ours, and does it answer our question
        let question_ok = self.pending.get(&key).map(|p| {
            message.as_ref().is_some_and(|reply| {
                reply.question_count == 1
                    && reply
                        .question
                        .as_ref()
                        .is_some_and(|q| q.same(&p.query.question))
            })
        });
        let Some(question_ok) = question_ok else {
            return self.ignore(if self.ports.contains_key(&(server, local_port)) {
                DnsIgnored::WrongId
            } else if self.used_ports.contains(&local_port) {
                DnsIgnored::NoQuery
            } else {
                DnsIgnored::OtherFlow
            });
        };
        let Some(reply) = message else {
            return self.ignore(DnsIgnored::Malformed);
        };
        if !reply.is_response {
            return self.ignore(DnsIgnored::NotResponse);
        }
        if !question_ok {
            return self.ignore(DnsIgnored::WrongQuestion);
        }
        let p = self.forget(&key)?;
        let rtt = at.saturating_sub(p.sent_at());
        Some(p.outcome(key, Some(rtt), Some(reply), None))
    }

    /// An ICMP error from `from` about a datagram we sent from `local_port` to
    /// `server`; `id` is the DNS id it quotes, when it quotes that far (then
    /// it must be an outstanding query's; without it, the error counts only
    /// when one query is outstanding on that port). Errors that end a query
    /// ([`ends_query`]) end it at once, without a retry.
    pub fn on_icmp(
        &mut self,
        server: SocketAddr,
        local_port: u16,
        id: Option<u16>,
        error: IcmpError,
        from: IpAddr,
        at: Timestamp,
    ) -> Option<DnsOutcome> {
        if !ends_query(&error) {
            return self.ignore(DnsIgnored::NotUdp);
        }
        let key = match id {
            Some(id) => QueryKey {
                server,
                src_port: local_port,
                id,
            },
            None if self.ports.get(&(server, local_port)) == Some(&1) => {
                match self
                    .pending
                    .keys()
                    .find(|k| k.server == server && k.src_port == local_port)
                {
                    Some(k) => *k,
                    None => return self.ignore(DnsIgnored::NoQuery),
                }
            }
            None => return self.ignore(DnsIgnored::NoQuery),
        };
        if !self.pending.contains_key(&key) {
            return self.ignore(if self.used_ports.contains(&local_port) {
                DnsIgnored::NoQuery
            } else {
                DnsIgnored::OtherFlow
            });
        }
        let p = self.forget(&key)?;
        let refused = Refusal {
            error,
            from,
            after: at.saturating_sub(p.sent_at()),
        };
        Some(p.outcome(key, None, None, Some(refused)))
    }
}

impl DnsExchange {
    /// Ends every query outstanding to `server` at once, without an answer:
    /// it refused one of them (`refusal`), so there is no point retrying or
    /// waiting (bulk mode, where many queries to one server are in flight).
    pub fn give_up_server(&mut self, server: SocketAddr, refusal: Refusal) -> Vec<DnsOutcome> {
        let keys: Vec<QueryKey> = self
            .pending
            .keys()
            .filter(|k| k.server == server)
            .copied()
            .collect();
        let mut done = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(p) = self.forget(&key) {
                done.push(p.outcome(key, None, None, Some(refusal)));
            }
        }
        done
    }
}

/// The IP datagram of `query` as `key` says (headers and message in one
/// buffer), and the size of its DNS message.
fn datagram_of(cfg: &DnsProbeConfig, key: &QueryKey, query: &QueryRepr) -> (Vec<u8>, usize) {
    let ip = IpRepr {
        src: cfg.src,
        dst: key.server.ip(),
        protocol: Protocol::UDP,
        ttl: cfg.ttl,
        ident: query.id,
        later_fragment: false,
        flow_label: 0,
    };
    let datagram = ip.emit_udp(key.src_port, key.server.port(), |b| query.emit_into(b));
    let size = datagram.len() - ip.header_len() - UdpRepr::HEADER_LEN;
    (datagram, size)
}

fn parse_message(payload: &[u8], answers_only: bool) -> Option<ReplyRepr> {
    if answers_only {
        ReplyRepr::parse_answers(payload).ok()
    } else {
        ReplyRepr::parse(payload).ok()
    }
}

/// A captured packet as read without the exchange's state: what needs no
/// state, above all the DNS parse, can run on a thread of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A DNS message with this `id` from `server` to our `local_port`, parsed
    /// (None: unreadable).
    Answer {
        /// Who sent it (address and port).
        server: SocketAddr,
        /// Our port it went to.
        local_port: u16,
        /// Its message ID.
        id: u16,
        /// The parsed message.
        message: Option<ReplyRepr>,
        /// The kernel's receive stamp.
        at: Timestamp,
    },
    /// A query of ours leaving (an outgoing capture), stamped by the kernel.
    Sent {
        /// The query it carries.
        key: QueryKey,
        /// Its source address (checked against the exchange's).
        from: IpAddr,
        /// The kernel's send stamp.
        at: Timestamp,
    },
    /// An ICMP error about a UDP datagram we sent (see [`DnsExchange::on_icmp`]).
    Icmp {
        /// The quoted datagram's destination: the server asked.
        server: SocketAddr,
        /// The quoted source port: ours.
        local_port: u16,
        /// The quoted query's ID; None when the quote stops before it.
        id: Option<u16>,
        /// The ICMP type and code.
        error: IcmpError,
        /// Who sent the error.
        from: IpAddr,
        /// The kernel's receive stamp.
        at: Timestamp,
    },
    /// Nothing for the exchange, and why.
    Ignored(DnsIgnored),
}

/// Reads one captured packet (from its IP header) for an exchange whose
/// source address is `src`; `answers_only` as in [`DnsProbeConfig`].
pub fn read_packet(
    src: IpAddr,
    answers_only: bool,
    data: &[u8],
    direction: Direction,
    at: Timestamp,
    checksum_offloaded: bool,
) -> Received {
    if direction == Direction::Outgoing {
        return read_sent(data, at);
    }
    // replies over veth/lo may carry partial checksums
    let mode = if checksum_offloaded {
        Checksums::Offloaded
    } else {
        Checksums::Verify
    };
    let Ok(d) = Datagram::parse_with(data, mode) else {
        return Received::Ignored(DnsIgnored::Malformed);
    };
    let u = match d.transport {
        Transport::Udp(u) => u,
        Transport::Icmp(i) if d.ip.dst == src => {
            let (Some(error), Some(q)) = (i.error(), i.quoted) else {
                return Received::Ignored(DnsIgnored::NotUdp);
            };
            if q.ip.protocol != Protocol::UDP || q.ip.src != src {
                return Received::Ignored(DnsIgnored::NotUdp);
            }
            return Received::Icmp {
                server: SocketAddr::new(q.ip.dst, q.dst_port),
                local_port: q.src_port,
                id: q.udp_payload_id,
                error,
                from: d.ip.src,
                at,
            };
        }
        _ => return Received::Ignored(DnsIgnored::NotUdp),
    };
    if d.ip.dst != src {
        return Received::Ignored(DnsIgnored::OtherFlow);
    }
    let Some(id) = u.payload.get(..2) else {
        return Received::Ignored(DnsIgnored::Malformed);
    };
    Received::Answer {
        server: SocketAddr::new(d.ip.src, u.src_port),
        local_port: u.dst_port,
        id: u16::from_be_bytes([id[0], id[1]]),
        message: parse_message(&u.payload, answers_only),
        at,
    }
}

/// One of our own datagrams leaving (a capture of outgoing packets, or a
/// link's TX stamp), read at its fixed offsets: what a query's send stamp
/// needs (addresses, ports, id) and nothing more: no checksum to check (ours
/// are partial) and no DNS to parse. Bulk reads one per query.
fn read_sent(data: &[u8], at: Timestamp) -> Received {
    let own = Received::Ignored(DnsIgnored::OwnTraffic);
    let bad = Received::Ignored(DnsIgnored::Malformed);
    let v4 = |o: usize| -> Option<IpAddr> {
        let b: [u8; 4] = data.get(o..o + 4)?.try_into().ok()?;
        Some(IpAddr::from(b))
    };
    let v6 = |o: usize| -> Option<IpAddr> {
        let b: [u8; 16] = data.get(o..o + 16)?.try_into().ok()?;
        Some(IpAddr::from(b))
    };
    let (src, dst, l4) = match data.first().map(|b| b >> 4) {
        Some(4) => {
            let hl = usize::from(data[0] & 0x0f) * 4;
            let Some(&[f0, f1]) = data.get(6..8) else {
                return bad;
            };
            if hl < 20 || data.len() < hl {
                return bad;
            }
            // UDP, and not a later fragment (no UDP header there)
            if data[9] != 17 || u16::from_be_bytes([f0, f1]) & 0x1fff != 0 {
                return own;
            }
            match (v4(12), v4(16)) {
                (Some(s), Some(d)) => (s, d, hl),
                _ => return bad,
            }
        }
        Some(6) => {
            // our queries carry no extension header
            if data.get(6) != Some(&17) {
                return own;
            }
            match (v6(8), v6(24)) {
                (Some(s), Some(d)) => (s, d, 40),
                _ => return bad,
            }
        }
        _ => return bad,
    };
    let Some(u) = data.get(l4..l4 + 8) else {
        return bad;
    };
    let Some(id) = data.get(l4 + 8..l4 + 10) else {
        return own;
    };
    Received::Sent {
        key: QueryKey {
            server: SocketAddr::new(dst, u16::from_be_bytes([u[2], u[3]])),
            src_port: u16::from_be_bytes([u[0], u[1]]),
            id: u16::from_be_bytes([id[0], id[1]]),
        },
        from: src,
        at,
    }
}

fn source_of(kernel: Option<Timestamp>) -> RttSource {
    if kernel.is_some() {
        RttSource::Kernel
    } else {
        RttSource::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::{EdnsRepr, parse_name};
    use crate::wire::testutil::Noise;
    use hickory_proto::rr::RecordType;

    const CLIENT: &str = "198.18.0.1";
    const SERVER: &str = "198.18.0.2:53";

    fn ex(retries: u32) -> DnsExchange {
        DnsExchange::new(DnsProbeConfig {
            src: CLIENT.parse().unwrap(),
            ttl: 64,
            timeout: Duration::from_millis(100),
            retries,
            answers_only: false,
        })
    }

    fn query(id: u16, name: &str) -> QueryRepr {
        QueryRepr {
            id,
            question: Question::new(parse_name(name).unwrap(), RecordType::A),
            recursion_desired: true,
            edns: Some(EdnsRepr::default()),
        }
    }

    /// A real NSD answer to `a.lab.test A` (id 0xbeef, EDNS 1232), captured in
    /// the lab on the client's veth, IP header included, checksum offloaded.
    pub(crate) const NSD_A_V4: &[u8] = crate::wire::testutil::NSD_A_V4;

    /// The reply datagram `server → client:port` carrying `msg`, full checksum.
    fn reply_datagram(port: u16, msg: &[u8]) -> Vec<u8> {
        let ip = IpRepr {
            src: "198.18.0.2".parse().unwrap(),
            dst: CLIENT.parse().unwrap(),
            protocol: Protocol::UDP,
            ttl: 64,
            ident: 1,
            later_fragment: false,
            flow_label: 0,
        };
        let u = UdpRepr {
            src_port: 53,
            dst_port: port,
            payload: msg.to_vec(),
        };
        ip.emit(&u.emit(ip.src, ip.dst))
    }

    /// The DNS message inside the fixture.
    fn fixture_msg() -> Vec<u8> {
        let d = Datagram::parse_with(NSD_A_V4, Checksums::Offloaded).unwrap();
        let Transport::Udp(u) = d.transport else {
            panic!()
        };
        u.payload
    }

    #[test]
    fn nsd_fixture_is_read_like_kdig() {
        let r = ReplyRepr::parse(&fixture_msg()).unwrap();
        assert_eq!(r.id, 0xbeef);
        assert_eq!(r.flags.names(), "qr aa rd");
        assert_eq!(r.rcode, 0);
        assert_eq!(r.answer.len(), 1);
        let a = &r.answer[0];
        assert_eq!(
            (
                a.name.as_str(),
                a.ttl,
                a.class.as_str(),
                a.rtype.as_str(),
                a.data.as_str()
            ),
            ("a.lab.test.", 300, "IN", "A", "198.18.0.10")
        );
        assert_eq!(r.edns.as_ref().unwrap().udp_size, 1232);
        assert_eq!(r.answer_set(RecordType::A), vec!["198.18.0.10"]);
    }

    #[test]
    fn answer_matched_with_kernel_stamps() {
        let mut e = ex(0);
        let server: SocketAddr = SERVER.parse().unwrap();
        let (key, dgram) = e.query(
            Timestamp(1_000),
            7,
            server,
            40000,
            &query(0xbeef, "a.lab.test"),
        );
        assert_eq!(dgram[9], 17);
        // our query leaving, seen by the capture: the kernel's send stamp
        assert!(
            e.on_packet(&dgram, Direction::Outgoing, Timestamp(2_000), true)
                .is_none()
        );
        let msg = fixture_msg();
        let r = e
            .on_packet(
                &reply_datagram(40000, &msg),
                Direction::Incoming,
                Timestamp(52_000),
                false,
            )
            .unwrap();
        assert_eq!((r.tag, r.key, r.attempts), (7, key, 1));
        assert_eq!(r.rtt, Some(Duration::from_micros(50)));
        assert_eq!(r.rtt_source, RttSource::Kernel);
        assert_eq!(e.outstanding(), 0);
        // the same reply again is a duplicate
        assert!(
            e.on_packet(
                &reply_datagram(40000, &msg),
                Direction::Incoming,
                Timestamp(60_000),
                false
            )
            .is_none()
        );
        assert_eq!(e.ignored().get(&DnsIgnored::NoQuery), Some(&1));
    }

    #[test]
    fn our_query_leaving_is_read_at_its_offsets_and_cut_short_never_panics() {
        let mut e = ex(0);
        let server: SocketAddr = SERVER.parse().unwrap();
        let (key, dgram) = e.query(Timestamp(1), 0, server, 40000, &query(0xbeef, "a.lab.test"));
        let at = Timestamp(5);
        let sent = |d: &[u8]| {
            read_packet(
                CLIENT.parse().unwrap(),
                true,
                d,
                Direction::Outgoing,
                at,
                true,
            )
        };
        assert_eq!(
            sent(&dgram),
            Received::Sent {
                key,
                from: CLIENT.parse().unwrap(),
                at
            }
        );
        // up to the id (20 + 8 + 2 bytes) it is not read; past it, as a whole
        for n in 0..dgram.len() {
            let r = sent(&dgram[..n]);
            assert_eq!(
                matches!(r, Received::Sent { .. }),
                n >= 30,
                "{n} bytes: {r:?}"
            );
        }
        // not UDP: someone else's traffic of ours
        let mut tcp = dgram.clone();
        tcp[9] = 6;
        assert_eq!(sent(&tcp), Received::Ignored(DnsIgnored::OwnTraffic));
    }

    #[test]
    fn wrong_id_port_question_and_qr_are_ignored() {
        let mut e = ex(0);
        let server: SocketAddr = SERVER.parse().unwrap();
        e.query(Timestamp(0), 0, server, 40000, &query(0xbeef, "a.lab.test"));
        let msg = fixture_msg();
        let mut wrong_id = msg.clone();
        wrong_id[1] ^= 1;
        let mut not_resp = msg.clone();
        not_resp[2] &= 0x7f;
        let mut other_q = msg.clone();
        other_q[13] = b'b'; // b.lab.test
        let cases = [
            (reply_datagram(40000, &wrong_id), DnsIgnored::WrongId),
            (reply_datagram(40001, &msg), DnsIgnored::OtherFlow),
            (reply_datagram(40000, &not_resp), DnsIgnored::NotResponse),
            (reply_datagram(40000, &other_q), DnsIgnored::WrongQuestion),
            (reply_datagram(40000, &msg[..5]), DnsIgnored::Malformed),
        ];
        for (pkt, why) in cases {
            assert!(
                e.on_packet(&pkt, Direction::Incoming, Timestamp(1), false)
                    .is_none()
            );
            assert_eq!(e.ignored().get(&why), Some(&1), "{why:?}");
        }
        // a corrupted checksum is malformed unless the kernel says offloaded
        let mut bad = reply_datagram(40000, &msg);
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        assert!(
            e.on_packet(&bad, Direction::Incoming, Timestamp(1), false)
                .is_none()
        );
        assert_eq!(e.ignored().get(&DnsIgnored::Malformed), Some(&2));
        // the question matches case-insensitively
        let mut upper = msg.clone();
        upper[13] = b'A';
        assert!(
            e.on_packet(
                &reply_datagram(40000, &upper),
                Direction::Incoming,
                Timestamp(9),
                false
            )
            .is_some()
        );
    }

    /// An ICMP error of `icmp_type`/`code` from `from`, quoting `original`.
    fn icmp_datagram(from: &str, icmp_type: u8, code: u8, original: &[u8]) -> Vec<u8> {
        let (src, dst): (IpAddr, IpAddr) = (from.parse().unwrap(), CLIENT.parse().unwrap());
        let ip = IpRepr {
            src,
            dst,
            protocol: Protocol::ICMP,
            ttl: 64,
            ident: 2,
            later_fragment: false,
            flow_label: 0,
        };
        ip.emit(&crate::wire::IcmpRepr::emit_error(
            icmp_type, code, original, src, dst,
        ))
    }

    #[test]
    fn icmp_port_unreachable_ends_the_query_at_once() {
        let mut e = ex(2);
        let server: SocketAddr = SERVER.parse().unwrap();
        let (key, dgram) = e.query(
            Timestamp(1_000),
            4,
            server,
            40000,
            &query(0xbeef, "a.lab.test"),
        );
        assert!(e.on_sent(&key, Timestamp(2_000)));
        // (that the single query's capture filter lets this error through is
        // tested in io::bpf)
        let unreach = icmp_datagram("198.18.0.2", 3, 3, &dgram);
        // errors that do not end a query, or quote another id, are ignored
        let frag = icmp_datagram("198.18.0.2", 3, 4, &dgram);
        assert!(
            e.on_packet(&frag, Direction::Incoming, Timestamp(3_000), false)
                .is_none()
        );
        let mut other = dgram.clone();
        other[28] ^= 1;
        let wrong = icmp_datagram("198.18.0.2", 3, 3, &other);
        assert!(
            e.on_packet(&wrong, Direction::Incoming, Timestamp(3_000), false)
                .is_none()
        );
        assert_eq!(e.outstanding(), 1);
        let o = e
            .on_packet(&unreach, Direction::Incoming, Timestamp(39_000), false)
            .unwrap();
        assert_eq!((o.tag, o.key, o.attempts, o.reply), (4, key, 1, None));
        let r = o.refused.unwrap();
        assert_eq!(r.to_string(), "port-unreachable from 198.18.0.2");
        assert_eq!(r.after, Duration::from_micros(37));
        assert_eq!(e.outstanding(), 0);
        // no retry follows
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn icmp_quoting_only_the_udp_header_matches_the_port() {
        let mut e = ex(0);
        let server: SocketAddr = SERVER.parse().unwrap();
        let (key, dgram) = e.query(Timestamp(0), 0, server, 40000, &query(7, "a.lab.test"));
        // a router quoting the RFC 792 minimum: IP header + 8 bytes
        let short = icmp_datagram("198.18.0.254", 11, 0, &dgram[..28]);
        let o = e
            .on_packet(&short, Direction::Incoming, Timestamp(5), false)
            .unwrap();
        assert_eq!(o.key, key);
        assert_eq!(
            o.refused.unwrap().to_string(),
            "time-exceeded from 198.18.0.254"
        );
        // with two queries on one port the id is needed
        e.query(Timestamp(0), 0, server, 40000, &query(8, "a.lab.test"));
        let (_, d9) = e.query(Timestamp(0), 0, server, 40000, &query(9, "a.lab.test"));
        let short = icmp_datagram("198.18.0.2", 3, 3, &d9[..28]);
        assert!(
            e.on_packet(&short, Direction::Incoming, Timestamp(5), false)
                .is_none()
        );
        assert_eq!(e.outstanding(), 2);
    }

    #[test]
    fn retries_then_timeout() {
        let mut e = ex(1);
        let server: SocketAddr = SERVER.parse().unwrap();
        let (key, dgram) = e.query(Timestamp(0), 3, server, 40000, &query(1, "a.lab.test"));
        assert_eq!(e.next_deadline(), Some(Timestamp(100_000_000)));
        let (done, resend) = e.on_time(Timestamp(50_000_000));
        assert!(done.is_empty() && resend.is_empty());
        let (done, resend) = e.on_time(Timestamp(100_000_000));
        assert!(done.is_empty());
        assert_eq!(
            resend,
            vec![Resend {
                key,
                datagram: dgram
            }]
        );
        assert_eq!(e.next_deadline(), Some(Timestamp(200_000_000)));
        let (done, resend) = e.on_time(Timestamp(200_000_000));
        assert!(resend.is_empty());
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].tag, done[0].attempts, done[0].reply.is_none()),
            (3, 2, true)
        );
        assert_eq!(done[0].rtt_source, RttSource::User);
        assert_eq!(e.outstanding(), 0);
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn a_refusal_ends_every_query_to_that_server_at_once() {
        let mut e = ex(2);
        let server: SocketAddr = SERVER.parse().unwrap();
        let other: SocketAddr = "198.18.0.9:53".parse().unwrap();
        let (_, d1) = e.query(Timestamp(0), 1, server, 40000, &query(1, "a.lab.test"));
        e.query(Timestamp(0), 2, server, 40001, &query(2, "b.lab.test"));
        e.query(Timestamp(0), 3, other, 40000, &query(3, "a.lab.test"));
        let (src, from) = (CLIENT.parse().unwrap(), "198.18.0.2".parse().unwrap());
        let icmp = crate::wire::IcmpRepr::emit_error(3, 3, &d1, from, src);
        let ip = IpRepr {
            src: from,
            dst: src,
            protocol: Protocol::ICMP,
            ttl: 64,
            ident: 9,
            later_fragment: false,
            flow_label: 0,
        };
        let pkt = ip.emit(&icmp);
        let r = read_packet(src, true, &pkt, Direction::Incoming, Timestamp(5), false);
        let o = e.on_received(r).unwrap();
        let refusal = o.refused.unwrap();
        assert_eq!(
            (o.tag, refusal.to_string()),
            (1, "port-unreachable from 198.18.0.2".into())
        );
        let done = e.give_up_server(o.key.server, refusal);
        assert_eq!(done.iter().map(|o| o.tag).collect::<Vec<_>>(), vec![2]);
        assert_eq!(done[0].refused, Some(refusal));
        assert_eq!(e.outstanding(), 1);
    }

    #[test]
    fn deadlines_in_time_order_even_pushed_out_of_order() {
        let k = |id| QueryKey {
            server: SERVER.parse().unwrap(),
            src_port: 1,
            id,
        };
        let mut d = Deadlines::default();
        d.push(Timestamp(5), k(1));
        d.push(Timestamp(7), k(2));
        d.push(Timestamp(3), k(3)); // the clock stepped back
        d.push(Timestamp(7), k(4));
        let mut order = Vec::new();
        while let Some((t, key)) = d.peek() {
            order.push((t.0, key.id));
            d.pop();
        }
        assert_eq!(order, vec![(3, 3), (5, 1), (7, 2), (7, 4)]);
    }

    #[test]
    fn never_panics_on_noise() {
        let mut e = ex(0);
        let server: SocketAddr = SERVER.parse().unwrap();
        e.query(Timestamp(0), 0, server, 40000, &query(0xbeef, "a.lab.test"));
        let base = reply_datagram(40000, &fixture_msg());
        let mut n = Noise::new(9);
        for i in 0..30_000 {
            let dir = if i % 2 == 0 {
                Direction::Incoming
            } else {
                Direction::Outgoing
            };
            let _ = e.on_packet(&n.mutate(&base), dir, Timestamp(1), i % 3 == 0);
            let _ = e.on_packet(&n.bytes(60), dir, Timestamp(1), true);
        }
    }
}
