//! Bulk DNS as a machine the drive loop runs: lines come in through a feed
//! (reading the file is the command's), each becomes a query to each server
//! (or, with `spread`, to one server in turn), a window of them is kept in
//! flight, and every finished query is reported as it ends. The queries,
//! their retries, timeouts and answers are [`DnsExchange`]'s (one per source
//! address); this machine adds the window, the rate, the ids and ports, and
//! "a server that refused (ICMP error) is asked no more".

use super::dns::{DnsExchange, DnsOutcome, DnsProbeConfig, QueryKey, Received, Refusal};
use super::fxhash::FxMap;
use super::machine::{Context, Machine, Packet, Stop};
use super::syn::RttSource;
use crate::event::Timestamp;
use crate::wire::dns::{EdnsRepr, QueryRepr, Question};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::time::Duration;

/// Queries built in one [`Machine::poll`] at most; the rest go out on the
/// next turn, after the answers read in between.
const BUDGET: usize = 256;

/// One source address's queries: its exchange and its source ports.
#[derive(Debug, Clone)]
pub struct BulkPath {
    /// How its queries are sent and how long they wait.
    pub config: DnsProbeConfig,
    /// The source ports its queries use, in turn (held by the link).
    pub ports: Vec<u16>,
}

/// How a bulk run goes.
#[derive(Debug, Clone)]
pub struct BulkConfig {
    /// One per source address (e.g. one IPv4, one IPv6).
    pub paths: Vec<BulkPath>,
    /// The `@SERVER`s, each with the path (index in `paths`) that reaches it.
    pub servers: Vec<(SocketAddr, usize)>,
    /// Each line to one server in turn instead of to each.
    pub spread: bool,
    /// Queries in flight at most.
    pub concurrency: usize,
    /// Queries per second at most.
    pub rate: Option<u64>,
    /// The RD bit of the queries.
    pub recursion_desired: bool,
    /// The EDNS record of the queries.
    pub edns: Option<EdnsRepr>,
    /// A truncated answer asks for the query again over TCP (the command
    /// does that exchange).
    pub tcp_fallback: bool,
}

/// One input line read as a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkLine {
    /// Its number in the input (from 1).
    pub line: u64,
    /// The name asked.
    pub name: Name,
    /// The type asked.
    pub qtype: RecordType,
    /// The line's own server and the path that reaches it, if it names one.
    pub server: Option<(SocketAddr, usize)>,
}

/// What the feed hands the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkInput {
    /// A line to query.
    Line(BulkLine),
    /// A line that cannot be queried (reported as it is, the rest go on).
    Bad {
        /// Its number.
        line: u64,
        /// Its text (lossy if it was not UTF-8).
        input: String,
        /// Why.
        error: String,
    },
}

/// What a bulk run reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkEvent {
    /// A line that cannot be queried.
    Bad {
        /// Its number.
        line: u64,
        /// Its text.
        input: String,
        /// Why.
        error: String,
    },
    /// A query finished: answered, given up, or refused.
    Done(Box<Finished>),
}

/// A finished query of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How it ended (`tag` is the line number).
    pub outcome: DnsOutcome,
    /// Its server had refused an earlier query: it was not sent.
    pub unsent: bool,
    /// How many queries its line made (one per server): the last one in
    /// completes the line.
    pub of: usize,
    /// The query to repeat over TCP (its answer was truncated).
    pub tcp: Option<QueryRepr>,
}

/// The bulk machine over a feed of lines.
pub struct BulkMachine<I> {
    cfg: BulkConfig,
    feed: I,
    exs: Vec<DnsExchange>,
    /// Per path: the next port slot.
    slots: Vec<usize>,
    /// Servers that refused a query (ICMP error): later lines to them are not sent.
    refused: FxMap<SocketAddr, Refusal>,
    /// Per line with several queries out: how many it made, how many are still to finish.
    of: FxMap<u64, (usize, usize)>,
    /// The earliest deadline of the exchanges, kept after each call.
    wake: Option<Timestamp>,
    fed: bool,
    started: Option<Timestamp>,
    /// Queries built (not retries): what the rate counts.
    sent: u64,
    next_server: usize,
    stopped: bool,
    /// When the rate lets the next query out (None: it does now, or no rate).
    rate_wait: Option<Timestamp>,
    /// More lines are due at once (the budget ran out).
    more: bool,
    /// Figures for the summary.
    pub counts: BulkCounts,
}

/// What a bulk run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    /// Lines that named something (not blank, not comments), bad ones too.
    pub names: u64,
    /// Queries asked (one per line and server), sent or not.
    pub queries: u64,
    /// Datagrams sent, retries included.
    pub packets: u64,
}

impl<I: Iterator<Item = BulkInput>> BulkMachine<I> {
    /// A run of `cfg` over the lines of `feed`.
    pub fn new(cfg: BulkConfig, feed: I) -> BulkMachine<I> {
        let exs = cfg
            .paths
            .iter()
            .map(|p| DnsExchange::new(p.config.clone()))
            .collect();
        let slots = vec![0; cfg.paths.len()];
        BulkMachine {
            cfg,
            feed,
            exs,
            slots,
            refused: FxMap::default(),
            of: FxMap::default(),
            wake: None,
            fed: false,
            started: None,
            sent: 0,
            next_server: 0,
            stopped: false,
            rate_wait: None,
            more: false,
            counts: BulkCounts::default(),
        }
    }

    /// Reports `o` (of path `path`); an ICMP error that ended it ends every
    /// other query to its server too.
    fn finish(&mut self, path: usize, o: DnsOutcome, cx: &mut dyn Context<BulkEvent>) {
        if let Some(refusal) = o.refused {
            self.refused.entry(o.key.server).or_insert(refusal);
            let rest = self.exs[path].give_up_server(o.key.server, refusal);
            self.report(o, false, cx);
            for r in rest {
                self.report(r, false, cx);
            }
        } else {
            self.report(o, false, cx);
        }
    }

    fn report(&mut self, o: DnsOutcome, unsent: bool, cx: &mut dyn Context<BulkEvent>) {
        let of = match self.of.get_mut(&o.tag) {
            Some((of, left)) => {
                let of = *of;
                *left -= 1;
                if *left == 0 {
                    self.of.remove(&o.tag);
                }
                of
            }
            None => 1,
        };
        let tcp = (self.cfg.tcp_fallback && o.reply.as_ref().is_some_and(|r| r.flags.tc))
            .then(|| self.query(o.key.id, o.question.clone()));
        cx.report(BulkEvent::Done(Box::new(Finished {
            outcome: o,
            unsent,
            of,
            tcp,
        })));
    }

    /// The query `id` for `question`, as the run asks (RD, EDNS).
    fn query(&self, id: u16, question: Question) -> QueryRepr {
        QueryRepr {
            id,
            question,
            recursion_desired: self.cfg.recursion_desired,
            edns: self.cfg.edns.clone(),
        }
    }

    /// Builds and sends the query of `line` to `server` over path `path`.
    fn ask(
        &mut self,
        now: Timestamp,
        line: u64,
        question: Question,
        server: SocketAddr,
        path: usize,
        cx: &mut dyn Context<BulkEvent>,
    ) {
        let ports = &self.cfg.paths[path].ports;
        let slot = self.slots[path];
        self.slots[path] = slot.wrapping_add(1);
        let src_port = ports[slot % ports.len()];
        let mut q = self.query(cx.random() as u16, question);
        // an id not in use on that port towards that server
        for _ in 0..100 {
            let key = QueryKey {
                server,
                src_port,
                id: q.id,
            };
            if !self.exs[path].in_use(&key) {
                break;
            }
            q.id = cx.random() as u16;
        }
        let (_, datagram) = self.exs[path].query(now, line, server, src_port, &q);
        cx.send(server.ip(), datagram);
        self.counts.packets += 1;
        self.sent += 1;
    }

    /// A line's queries: one per target, or its refusal when the server
    /// refused before. Returns how many went out.
    fn take(&mut self, now: Timestamp, l: BulkLine, cx: &mut dyn Context<BulkEvent>) -> usize {
        self.counts.names += 1;
        let one = match l.server {
            Some(t) => Some(t),
            None if self.cfg.spread => {
                let t = self.cfg.servers[self.next_server % self.cfg.servers.len()];
                self.next_server += 1;
                Some(t)
            }
            None => None,
        };
        let n = if one.is_some() {
            1
        } else {
            self.cfg.servers.len()
        };
        if n > 1 {
            self.of.insert(l.line, (n, n));
        }
        let mut sent = 0;
        for i in 0..n {
            let (server, path) = one.unwrap_or_else(|| self.cfg.servers[i]);
            self.counts.queries += 1;
            let question = Question::new(l.name.clone(), l.qtype);
            if let Some(&f) = self.refused.get(&server) {
                let o = unsent(l.line, server, question, f, now);
                self.report(o, true, cx);
                continue;
            }
            self.ask(now, l.line, question, server, path, cx);
            sent += 1;
        }
        sent
    }

    /// Sends new lines' queries as the window, the rate and the budget allow.
    fn feed(&mut self, now: Timestamp, cx: &mut dyn Context<BulkEvent>) {
        let started = *self.started.get_or_insert(now);
        self.rate_wait = None;
        self.more = false;
        let mut budget = BUDGET;
        while !self.fed && self.outstanding() < self.cfg.concurrency {
            if budget == 0 {
                self.more = true;
                return;
            }
            if let Some(rate) = self.cfg.rate.filter(|r| *r > 0) {
                // the instant the next query is due at this rate
                let due = started + Duration::from_nanos(self.sent * 1_000_000_000 / rate);
                if due > now {
                    self.rate_wait = Some(due);
                    return;
                }
            }
            match self.feed.next() {
                None => self.fed = true,
                Some(BulkInput::Bad { line, input, error }) => {
                    self.counts.names += 1;
                    cx.report(BulkEvent::Bad { line, input, error });
                }
                Some(BulkInput::Line(l)) => {
                    let sent = self.take(now, l, cx);
                    budget = budget.saturating_sub(sent);
                }
            }
        }
    }
}

impl<I> BulkMachine<I> {
    /// Each path's exchange (its ignored packets, for the summary).
    pub fn exchanges(&self) -> &[DnsExchange] {
        &self.exs
    }

    /// Queries neither answered nor given up.
    pub fn outstanding(&self) -> usize {
        self.exs.iter().map(DnsExchange::outstanding).sum()
    }

    fn rewake(&mut self) {
        self.wake = self
            .exs
            .iter_mut()
            .filter_map(DnsExchange::next_deadline)
            .min();
    }
}

/// A query never sent: its server refused an earlier one.
fn unsent(
    line: u64,
    server: SocketAddr,
    question: Question,
    refusal: Refusal,
    now: Timestamp,
) -> DnsOutcome {
    DnsOutcome {
        tag: line,
        key: QueryKey {
            server,
            src_port: 0,
            id: 0,
        },
        question,
        query_size: 0,
        attempts: 0,
        sent_at: now,
        rtt: None,
        rtt_source: RttSource::User,
        reply: None,
        refused: Some(refusal),
    }
}

impl<I: Iterator<Item = BulkInput>> Machine for BulkMachine<I> {
    type Event = BulkEvent;

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<BulkEvent>) {
        if self.stopped {
            return;
        }
        // the path whose source address the packet is to or from
        let path = if self.exs.len() == 1 {
            0
        } else {
            let src = crate::wire::IpRepr::parse(p.data).ok().map(|(ip, _)| {
                if p.direction == crate::event::Direction::Outgoing {
                    ip.src
                } else {
                    ip.dst
                }
            });
            match self.exs.iter().position(|e| Some(e.config().src) == src) {
                Some(i) => i,
                None => return,
            }
        };
        // an answer only ends queries: the deadline kept may be an ended
        // query's (a poll for nothing, which drops it), never too late
        // the link's reader may have read it already (off this thread)
        let read = p
            .read
            .and_then(|r| r.take())
            .and_then(|b| b.downcast::<Received>().ok());
        let ex = &mut self.exs[path];
        let o = match read {
            Some(r) => ex.on_received(*r),
            None => ex.on_packet(p.data, p.direction, p.at, p.offloaded),
        };
        if let Some(o) = o {
            self.finish(path, o, cx);
        }
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<BulkEvent>) {
        if self.stopped {
            return;
        }
        for path in 0..self.exs.len() {
            let (gone, resend) = self.exs[path].on_time(now);
            for r in resend {
                cx.send(r.key.server.ip(), r.datagram);
                self.counts.packets += 1;
            }
            for o in gone {
                self.finish(path, o, cx);
            }
        }
        self.feed(now, cx);
        self.rewake();
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.stopped {
            return None;
        }
        let Some(started) = self.started else {
            return Some(Timestamp(0));
        };
        if self.more {
            return Some(started);
        }
        let window_open = !self.fed && self.outstanding() < self.cfg.concurrency;
        let feed_at = match (window_open, self.rate_wait) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            // answers opened the window since the last poll
            (true, None) => Some(started),
        };
        self.wake.into_iter().chain(feed_at).min()
    }

    fn is_done(&self) -> bool {
        self.stopped || (self.fed && self.outstanding() == 0)
    }

    fn stop(&mut self, _why: Stop, _now: Timestamp, _cx: &mut dyn Context<BulkEvent>) {
        // what is outstanding stays so: neither answered nor timed out
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Direction;
    use crate::probe::machine::Recorder;
    use crate::wire::{Datagram, IpRepr, Protocol, Transport, UdpRepr};

    const US: &str = "198.18.0.1";

    fn server(i: u8) -> SocketAddr {
        SocketAddr::new([198, 18, 0, 2 + i].into(), 53)
    }

    fn cfg(servers: usize, concurrency: usize) -> BulkConfig {
        BulkConfig {
            paths: vec![BulkPath {
                config: DnsProbeConfig {
                    src: US.parse().unwrap(),
                    ttl: 64,
                    timeout: Duration::from_millis(100),
                    retries: 1,
                    answers_only: true,
                },
                ports: vec![40000, 40001],
            }],
            servers: (0..servers as u8).map(|i| (server(i), 0)).collect(),
            spread: false,
            concurrency,
            rate: None,
            recursion_desired: true,
            edns: None,
            tcp_fallback: true,
        }
    }

    fn lines(n: u64) -> impl Iterator<Item = BulkInput> {
        (1..=n).map(|i| {
            BulkInput::Line(BulkLine {
                line: i,
                name: format!("n{i}.lab.test.").parse().unwrap(),
                qtype: RecordType::A,
                server: None,
            })
        })
    }

    /// The answer to `query` (a datagram we sent), with the TC bit if asked.
    fn answer(query: &[u8], tc: bool) -> Vec<u8> {
        let d = Datagram::parse(query).unwrap();
        let Transport::Udp(u) = d.transport else {
            panic!()
        };
        let mut msg = u.payload.clone();
        msg[2] |= 0x80 | if tc { 0x02 } else { 0 };
        let ip = IpRepr {
            src: d.ip.dst,
            dst: d.ip.src,
            protocol: Protocol::UDP,
            ttl: 64,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        let udp = UdpRepr {
            src_port: u.dst_port,
            dst_port: u.src_port,
            payload: msg,
        };
        ip.emit(&udp.emit(ip.src, ip.dst))
    }

    fn packet(data: &[u8], at: u64) -> Packet<'_> {
        Packet {
            data,
            direction: Direction::Incoming,
            at: Timestamp(at),
            offloaded: false,
            read: None,
        }
    }

    fn done(events: &[BulkEvent]) -> Vec<&Finished> {
        events
            .iter()
            .filter_map(|e| match e {
                BulkEvent::Done(f) => Some(&**f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_window_holds_and_answers_open_it() {
        let mut m = BulkMachine::new(cfg(1, 3), lines(5));
        let mut cx = Recorder::new(1);
        assert_eq!(m.poll_at(), Some(Timestamp(0)));
        m.poll(Timestamp(1_000), &mut cx);
        assert_eq!(cx.sent.len(), 3);
        assert_eq!(m.outstanding(), 3);
        // ports in turn
        let ports: Vec<u16> = cx
            .sent
            .iter()
            .map(|(_, d)| u16::from_be_bytes([d[20], d[21]]))
            .collect();
        assert_eq!(ports, [40000, 40001, 40000]);
        let a = answer(&cx.sent[1].1, false);
        m.on_packet(&packet(&a, 50_000), &mut cx);
        let f = done(&cx.events);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].outcome.tag, 2);
        assert_eq!(f[0].outcome.rtt, Some(Duration::from_nanos(49_000)));
        assert_eq!((f[0].of, f[0].unsent, f[0].tcp.is_none()), (1, false, true));
        // the window opened: the next poll is due at once
        assert!(m.poll_at().unwrap() <= Timestamp(50_000));
        m.poll(Timestamp(50_000), &mut cx);
        assert_eq!(cx.sent.len(), 4);
        assert!(!m.is_done());
    }

    #[test]
    fn a_truncated_answer_asks_for_tcp_with_the_same_query() {
        let mut m = BulkMachine::new(cfg(1, 10), lines(1));
        let mut cx = Recorder::new(1);
        m.poll(Timestamp(1_000), &mut cx);
        let a = answer(&cx.sent[0].1, true);
        m.on_packet(&packet(&a, 9_000), &mut cx);
        let f = done(&cx.events);
        let q = f[0].tcp.as_ref().expect("TCP asked");
        assert_eq!(q.id, f[0].outcome.key.id);
        assert_eq!(q.question, f[0].outcome.question);
        assert!(m.is_done());
    }

    #[test]
    fn the_rate_spaces_the_queries() {
        let mut c = cfg(1, 100);
        c.rate = Some(1000);
        let mut m = BulkMachine::new(c, lines(3));
        let mut cx = Recorder::new(1);
        m.poll(Timestamp(1_000_000), &mut cx);
        assert_eq!(cx.sent.len(), 1);
        assert_eq!(m.poll_at(), Some(Timestamp(2_000_000)));
        m.poll(Timestamp(2_000_000), &mut cx);
        assert_eq!(cx.sent.len(), 2);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_queried() {
        let feed = vec![
            BulkInput::Bad {
                line: 1,
                input: "x".into(),
                error: "bad".into(),
            },
            lines(1).next().unwrap(),
        ];
        let mut m = BulkMachine::new(cfg(2, 10), feed.into_iter());
        let mut cx = Recorder::new(1);
        m.poll(Timestamp(1_000), &mut cx);
        assert!(matches!(&cx.events[0], BulkEvent::Bad { line: 1, .. }));
        assert_eq!(cx.sent.len(), 2, "the good line to both servers");
        assert_eq!(m.counts.names, 2);
        assert_eq!(m.counts.queries, 2);
    }

    #[test]
    fn interrupted_it_counts_what_was_in_flight() {
        let mut m = BulkMachine::new(cfg(1, 10), lines(100));
        let mut cx = Recorder::new(1);
        m.poll(Timestamp(1_000), &mut cx);
        m.stop(Stop::Interrupted, Timestamp(2_000), &mut cx);
        assert!(m.is_done());
        assert_eq!(m.outstanding(), 10);
        assert_eq!(m.poll_at(), None);
    }
}
