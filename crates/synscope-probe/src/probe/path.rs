//! The `path` probe: SYNs to the real destination port with increasing TTL /
//! hop limit, several per hop, all in flight at once. Each router on the way
//! answers the SYN whose TTL ran out there with ICMP time-exceeded, quoting the
//! SYN as it arrived; the destination answers with a SYN-ACK or an RST; a
//! filter answers with an ICMP error or not at all. The result names the last
//! hop that forwarded and the one that dropped or rejected, and per hop what
//! changed in the quoted SYN compared with what we sent (MSS clamped, options
//! stripped, DSCP / ECN rewritten, NAT, ...).
//!
//! Sans-IO: the caller asks [`PathProber::due`] which TTLs to send, builds each
//! SYN with [`PathProber::probe`], feeds every captured packet and the time.
//! Each probe has its own source port, sequence number and IP ID: an ICMP error
//! is matched by the sequence number it quotes, else by its source port, so
//! a NAT that rewrites ports or a box that rewrites sequence numbers still
//! leaves one key intact.
//!
//! Hops are sent in a window: at first TTL 1 to [`GAP`], then up to [`GAP`]
//! beyond the farthest hop that answered; once the destination (or a filter)
//! answered at TTL `d`, nothing above `d` is sent. [`GAP`] silent hops in a
//! row beyond the last answer end the run.
//!
//! As a [`Machine`] it reports each hop as soon as it is final
//! ([`PathEvent::Hop`]), in TTL order: hop `k` is final once every probe of
//! TTLs 1 to `k` is answered or expired and none more of them will be sent.
//! Nothing can change it then: its probes are done, the changes it shows
//! first depend only on the hops before it, and whether it belongs to the
//! result at all (it is not beyond the destination) could only be changed by
//! an answer at a lower TTL. Hops beyond the destination are never reported.

use super::correlate::Ignored;
use super::machine::{Context, Machine, Packet, SETTLE, Stop, settled};
use crate::event::{Direction, Timestamp};
use crate::wire::datagram::Checksums;
use crate::wire::quote::{QuotedTcp, traffic_class};
use crate::wire::{
    Datagram, IcmpError, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Silent hops in a row beyond the farthest answer before the run gives up,
/// and how far ahead of it probes go out (as scamper's gap limit).
pub const GAP: u8 = 5;

/// How the SYNs are built and how long each waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// Our source address.
    pub src: IpAddr,
    /// The destination address and port.
    pub dst: SocketAddr,
    /// The highest TTL / hop limit sent.
    pub max_hops: u8,
    /// Probes per hop.
    pub count: u16,
    /// Wait for each probe's answer.
    pub timeout: Duration,
    /// Linux-like options (MSS, SACK-permitted, timestamps, window scale).
    pub syn_options: bool,
    /// The MSS option's value, in bytes (with `syn_options`).
    pub mss: u16,
    /// The SYNs' TCP window, in bytes.
    pub window: u16,
    /// IPv4 TOS / IPv6 traffic class of every SYN (DSCP and ECN field).
    pub tos: u8,
    /// An ECN-setup SYN (ECE and CWR set, RFC 3168).
    pub ecn: bool,
    /// Every probe from one source port (`--source-port`): one probe in
    /// flight at a time, so the destination never meets a second SYN on the
    /// four-tuple of a half-open one; probes are told apart by their ISN.
    pub one_port: bool,
}

/// One field that differs between what we sent and what a hop quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `mss`, `sack-permitted`, `timestamps`, `window-scale`, `options`,
    /// `dscp`, `ecn`, `tcp-flags`, `window`, `ttl`, `ip-id`, `df`,
    /// `flow-label`, `src-addr`, `dst-addr`, `src-port`, `dst-port`, `seq`.
    pub field: &'static str,
    /// The value we sent, as text.
    pub sent: String,
    /// The value the hop quoted, as text; `absent` for a stripped option.
    pub seen: String,
}

impl Change {
    /// `mss 1460->1200`, `sack-permitted stripped`.
    pub fn describe(&self) -> String {
        match self.seen.as_str() {
            "absent" => format!("{} stripped", self.field),
            _ => format!("{} {}->{}", self.field, self.sent, self.seen),
        }
    }
}

/// What answered one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A router: the TTL ran out there. `changes` compares its quote of our
    /// SYN with what we sent (`quoted_options` false when the quote was too
    /// short to show the TCP options).
    TimeExceeded {
        /// The router's address.
        from: IpAddr,
        /// What its quote shows changed.
        changes: Vec<Change>,
        /// The quote reached the TCP options.
        quoted_options: bool,
    },
    /// Another ICMP error (a filter's reject, unreachable, ...).
    Error {
        /// Who sent it.
        from: IpAddr,
        /// Its type and code.
        error: IcmpError,
        /// What its quote shows changed.
        changes: Vec<Change>,
    },
    /// The destination: SYN-ACK (something listens) or RST (nothing does).
    Destination {
        /// The destination address (as it answered).
        from: IpAddr,
        /// The answer's TCP flags.
        flags: TcpFlags,
        /// Its IP TTL / hop limit on arrival.
        ttl: u8,
        /// Its TCP window, unscaled.
        window: u16,
        /// Its TCP options.
        options: TcpOptions,
    },
}

impl Answer {
    /// The address that answered.
    pub fn from(&self) -> IpAddr {
        match self {
            Answer::TimeExceeded { from, .. }
            | Answer::Error { from, .. }
            | Answer::Destination { from, .. } => *from,
        }
    }
}

/// One probe, finished (answered or timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The probe's TTL / hop limit.
    pub ttl: u8,
    /// Its source port.
    pub src_port: u16,
    /// Its sequence number.
    pub isn: SeqNumber,
    /// When it left.
    pub sent_at: Timestamp,
    /// The send time is the kernel's stamp of the SYN leaving (else the
    /// user-space time before the send call).
    pub kernel_stamped: bool,
    /// From `sent_at` to the answer's receive stamp; None: no answer in time.
    pub rtt: Option<Duration>,
    /// What answered; None: nothing in time.
    pub answer: Option<Answer>,
}

/// All probes of one TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The TTL / hop limit (1 is the first router).
    pub ttl: u8,
    /// Its probes, in send order.
    pub probes: Vec<ProbeOutcome>,
}

impl Hop {
    /// The distinct addresses that answered at this TTL, in order of first answer.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        for p in &self.probes {
            if let Some(a) = &p.answer
                && !v.contains(&a.from())
            {
                v.push(a.from());
            }
        }
        v
    }

    /// The changes its quotes show (the first probe's that quoted).
    pub fn changes(&self) -> Option<&[Change]> {
        self.probes.iter().find_map(|p| match &p.answer {
            Some(Answer::TimeExceeded { changes, .. }) | Some(Answer::Error { changes, .. }) => {
                Some(changes.as_slice())
            }
            _ => None,
        })
    }

    fn time_exceeded_from(&self) -> Option<IpAddr> {
        self.probes.iter().find_map(|p| match &p.answer {
            Some(Answer::TimeExceeded { from, .. }) => Some(*from),
            _ => None,
        })
    }
}

/// Where the SYNs ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination answered, first at TTL `hop` (its distance).
    Reached {
        /// The lowest TTL it answered at.
        hop: u8,
        /// It answered with a SYN-ACK (else an RST).
        open: bool,
    },
    /// An ICMP error other than time-exceeded, first at TTL `ttl`, from `from`,
    /// which is hop `hop` (the hop with that address, or `ttl` itself).
    Rejected {
        /// The lowest TTL that drew the error.
        ttl: u8,
        /// The hop the error came from.
        hop: u8,
        /// The error's sender.
        from: IpAddr,
        /// Its type and code.
        error: IcmpError,
        /// The error came from the destination address itself.
        by_destination: bool,
    },
    /// Nothing answered beyond `after` (0: not even the first hop), whose
    /// address is `from`.
    Dropped {
        /// The last hop that answered (0: none).
        after: u8,
        /// That hop's address; None when `after` is 0.
        from: Option<IpAddr>,
    },
}

/// The ECN-setup SYN's fate (with `--ecn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcnOutcome {
    /// The destination's SYN-ACK had ECE (and not CWR): it agreed to ECN.
    /// None when no SYN-ACK came.
    pub negotiated: Option<bool>,
    /// The first hop whose quote lacks ECE or CWR.
    pub bleached_at: Option<u8>,
}

/// How far away the destination's answer came from, by its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyDistance {
    /// The answer's TTL / hop limit as it arrived.
    pub ttl: u8,
    /// The initial TTL it most likely left with (the next of 32, 64, 128, 255).
    pub initial: u8,
    /// Routers it crossed on its way back: `initial - ttl`.
    pub hops_back: u8,
    /// It crossed fewer routers than the SYN took to reach the destination:
    /// something nearer answered for it (a SYN proxy, a load balancer), or
    /// the way back is shorter.
    pub nearer: bool,
    /// It crossed more routers than the SYN took to reach the destination:
    /// a hop raised the SYNs' TTL on their way (so they reached it with a
    /// TTL too small to), or the way back is longer.
    pub farther: bool,
    /// A SYN-ACK with window 0, as Linux SYNPROXY sends.
    pub zero_window: bool,
}

/// A run's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathResult {
    /// Hops 1 to the destination's distance (or to the farthest probe).
    pub hops: Vec<Hop>,
    /// Where the SYNs ended.
    pub outcome: Outcome,
    /// Each change, with the hop whose quote showed it first.
    pub first_seen: Vec<(u8, Change)>,
    /// The ECN-setup SYN's fate; None without [`PathConfig::ecn`].
    pub ecn: Option<EcnOutcome>,
    /// Where the destination's first answer came from, by its TTL.
    pub reply_distance: Option<ReplyDistance>,
    /// Probes sent beyond the destination's distance (answered by it too).
    pub beyond: usize,
    /// Counts of captured packets ignored, by reason.
    pub ignored: BTreeMap<Ignored, u64>,
}

#[derive(Debug, Clone)]
struct Pending {
    ttl: u8,
    src_port: u16,
    isn: SeqNumber,
    ident: u16,
    tsval: u32,
    user_sent: Timestamp,
    kernel_sent: Option<Timestamp>,
    deadline: Timestamp,
}

/// The TTL ladder state machine.
#[derive(Debug)]
pub struct PathProber {
    cfg: PathConfig,
    /// Every probe, by id (send order).
    probes: Vec<Pending>,
    outcomes: Vec<Option<ProbeOutcome>>,
    by_seq: HashMap<u32, usize>,
    by_port: HashMap<u16, usize>,
    /// The highest TTL sent so far.
    sent_up_to: u8,
    /// The lowest TTL at which the destination or a filter answered.
    end_at: Option<u8>,
    /// The highest TTL a router answered with time-exceeded.
    farthest: u8,
    ignored: BTreeMap<Ignored, u64>,
    /// Source ports of probes finished since [`PathProber::take_finished`].
    finished: Vec<u16>,
    /// Hops 1 to this one were handed out by [`PathProber::take_final_hops`].
    reported: u8,
    /// The changes those hops' quotes showed first, with the hop.
    reported_changes: Vec<(u8, Change)>,
    /// Told to stop (see [`Machine::stop`]): nothing more is sent.
    stopped: bool,
    /// The one source port of [`PathConfig::one_port`], held by the caller;
    /// None: each probe reserves its own from the [`Context`].
    source_port: Option<u16>,
}

impl PathProber {
    /// A run with nothing sent yet.
    pub fn new(cfg: PathConfig) -> PathProber {
        PathProber {
            cfg,
            probes: Vec::new(),
            outcomes: Vec::new(),
            by_seq: HashMap::new(),
            by_port: HashMap::new(),
            sent_up_to: 0,
            end_at: None,
            farthest: 0,
            ignored: BTreeMap::new(),
            finished: Vec::new(),
            reported: 0,
            reported_changes: Vec::new(),
            stopped: false,
            source_port: None,
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &PathConfig {
        &self.cfg
    }

    /// Every probe from `port` (held by the caller; see [`PathConfig::one_port`])
    /// when run as a [`Machine`].
    pub fn set_source_port(&mut self, port: u16) {
        self.source_port = Some(port);
    }

    /// Gives back the ports of finished probes the context reserved.
    fn release_finished(&mut self, cx: &mut dyn Context<PathEvent>) {
        for port in self.take_finished() {
            if self.source_port != Some(port) {
                cx.release_port(port);
            }
        }
    }

    /// Reports the hops that became final.
    fn report_final_hops(&mut self, cx: &mut dyn Context<PathEvent>) {
        for h in self.take_final_hops() {
            cx.report(PathEvent::Hop(h));
        }
    }

    /// The TTLs of the probes to send now, `count` of each, lowest first
    /// (with [`PathConfig::one_port`]: the next one, once none is outstanding).
    pub fn due(&self) -> Vec<u8> {
        let limit = self.limit();
        if self.cfg.one_port {
            if self.outstanding() > 0 {
                return Vec::new();
            }
            let sent = |t: u8| self.probes.iter().filter(|p| p.ttl == t).count();
            return (1..=limit)
                .find(|&t| sent(t) < self.cfg.count as usize)
                .into_iter()
                .collect();
        }
        (self.sent_up_to.saturating_add(1)..=limit)
            .flat_map(|t| std::iter::repeat_n(t, self.cfg.count as usize))
            .collect()
    }

    /// The highest TTL that may be sent now.
    fn limit(&self) -> u8 {
        self.end_at
            .unwrap_or(u8::MAX)
            .min(self.cfg.max_hops)
            .min(self.farthest.saturating_add(GAP))
    }

    /// Hop `ttl` is final (see the module's doc), its lower ones being so.
    fn is_final(&self, ttl: u8) -> bool {
        if self.end_at.is_some_and(|e| ttl > e) {
            // beyond the destination: not a hop of the result
            return false;
        }
        let mut sent = 0;
        for (p, o) in self.probes.iter().zip(&self.outcomes) {
            if p.ttl == ttl {
                if o.is_none() {
                    return false;
                }
                sent += 1;
            }
        }
        // more of its probes may go out only one at a time (one_port), up to count
        let more = !self.stopped && ttl <= self.limit() && sent < self.cfg.count as usize;
        sent > 0 && !more
    }

    /// The hops that became final (see the module's doc) since the last
    /// call, lowest TTL first, each with the changes its quote shows first.
    pub fn take_final_hops(&mut self) -> Vec<FinalHop> {
        let mut out = Vec::new();
        while self.reported < u8::MAX && self.is_final(self.reported + 1) {
            let ttl = self.reported + 1;
            let probes = self
                .outcomes
                .iter()
                .flatten()
                .filter(|o| o.ttl == ttl)
                .cloned()
                .collect();
            let hop = Hop { ttl, probes };
            let known = self.reported_changes.len();
            note_first_seen(&mut self.reported_changes, &hop);
            let first_seen = self.reported_changes[known..]
                .iter()
                .map(|(_, c)| c.clone())
                .collect();
            out.push(FinalHop { hop, first_seen });
            self.reported = ttl;
        }
        out
    }

    /// Probes sent and not yet finished.
    pub fn outstanding(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_none()).count()
    }

    /// Nothing due and nothing outstanding.
    pub fn is_done(&self) -> bool {
        self.outstanding() == 0 && self.due().is_empty()
    }

    /// Builds the SYN of a probe with TTL `ttl`; `now` is the user-space time
    /// just before the send (the fallback send stamp). Port, ISN, IP ID and
    /// TSval come from the caller; the port must be unique to this probe.
    pub fn probe(
        &mut self,
        now: Timestamp,
        ttl: u8,
        src_port: u16,
        isn: SeqNumber,
        ident: u16,
        tsval: u32,
    ) -> Vec<u8> {
        let (ip, tcp) = self.syn(ttl, src_port, isn, ident, tsval);
        let mut bytes = ip.emit(&tcp.emit(ip.src, ip.dst));
        set_traffic_class(&mut bytes, self.cfg.tos);
        let id = self.probes.len();
        self.probes.push(Pending {
            ttl,
            src_port,
            isn,
            ident,
            tsval,
            user_sent: now,
            kernel_sent: None,
            deadline: now + self.cfg.timeout,
        });
        self.outcomes.push(None);
        self.by_seq.insert(isn.0, id);
        self.by_port.insert(src_port, id);
        self.sent_up_to = self.sent_up_to.max(ttl);
        bytes
    }

    fn syn(
        &self,
        ttl: u8,
        src_port: u16,
        isn: SeqNumber,
        ident: u16,
        tsval: u32,
    ) -> (IpRepr, TcpRepr) {
        let options = TcpOptions::syn(self.cfg.syn_options, self.cfg.mss, tsval);
        let flags = if self.cfg.ecn {
            TcpFlags::SYN.union(TcpFlags::ECE).union(TcpFlags::CWR)
        } else {
            TcpFlags::SYN
        };
        let tcp = TcpRepr {
            src_port,
            dst_port: self.cfg.dst.port(),
            seq: isn,
            flags,
            window: self.cfg.window,
            options,
            ..TcpRepr::default()
        };
        let ip = IpRepr {
            src: self.cfg.src,
            dst: self.cfg.dst.ip(),
            protocol: Protocol::TCP,
            ttl,
            ident,
            later_fragment: false,
            flow_label: 0,
        };
        (ip, tcp)
    }

    /// The next moment a probe expires.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.probes
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, o)| o.is_none())
            .map(|(p, _)| p.deadline)
            .min()
    }

    /// Expires the probes whose deadline passed by `now`; returns how many.
    pub fn on_time(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        for id in 0..self.probes.len() {
            if self.outcomes[id].is_none() && self.probes[id].deadline <= now {
                self.finish(id, None, None);
                n += 1;
            }
        }
        n
    }

    fn count(&mut self, why: Ignored) {
        *self.ignored.entry(why).or_default() += 1;
    }

    fn finish(&mut self, id: usize, at: Option<Timestamp>, answer: Option<Answer>) {
        let p = &self.probes[id];
        let sent = p.kernel_sent.unwrap_or(p.user_sent);
        match &answer {
            Some(Answer::TimeExceeded { .. }) => self.farthest = self.farthest.max(p.ttl),
            Some(_) => self.end_at = Some(self.end_at.map_or(p.ttl, |e| e.min(p.ttl))),
            None => {}
        }
        let p = &self.probes[id];
        self.finished.push(p.src_port);
        self.outcomes[id] = Some(ProbeOutcome {
            ttl: p.ttl,
            src_port: p.src_port,
            isn: p.isn,
            sent_at: sent,
            kernel_stamped: p.kernel_sent.is_some(),
            rtt: at.map(|a| a.saturating_sub(sent)),
            answer,
        });
    }

    /// Feeds one captured packet (from its IP header).
    pub fn on_packet(&mut self, data: &[u8], direction: Direction, at: Timestamp, offloaded: bool) {
        let checks = if offloaded || direction == Direction::Outgoing {
            Checksums::Offloaded
        } else {
            Checksums::Verify
        };
        let Ok(d) = Datagram::parse_with(data, checks) else {
            return self.count(Ignored::Malformed);
        };
        match (direction, d.transport) {
            (Direction::Outgoing, Transport::Tcp(t)) => {
                // by ISN: one source port may carry several probes (--source-port)
                let id = self.by_seq.get(&t.seq.0).copied();
                match id {
                    Some(id)
                        if self.probes[id].src_port == t.src_port
                            && t.flags.contains(TcpFlags::SYN) =>
                    {
                        let p = &mut self.probes[id];
                        if p.kernel_sent.is_none() {
                            p.kernel_sent = Some(at);
                            // the timeout runs from the moment the SYN left
                            p.deadline = p.deadline.max(at + self.cfg.timeout);
                        }
                    }
                    _ => self.count(Ignored::OwnTraffic),
                }
            }
            (Direction::Outgoing, _) => self.count(Ignored::OwnTraffic),
            (Direction::Incoming, Transport::Tcp(t)) => {
                if d.ip.src != self.cfg.dst.ip() || t.src_port != self.cfg.dst.port() {
                    return self.count(Ignored::OtherFlow);
                }
                let Some(&id) = self.by_port.get(&t.dst_port) else {
                    return self.count(Ignored::NoProbe);
                };
                if t.flags.answer_to_syn().is_none() {
                    return self.count(Ignored::Unexpected);
                }
                // the probe whose ISN it acknowledges (one port, several probes)
                let id = match self.by_seq.get(&t.ack.0.wrapping_sub(1)) {
                    Some(&i) if self.probes[i].src_port == t.dst_port => i,
                    _ => id,
                };
                if t.ack != self.probes[id].isn + 1 {
                    return self.count(Ignored::WrongAck);
                }
                self.answer(
                    id,
                    at,
                    Answer::Destination {
                        from: d.ip.src,
                        flags: t.flags,
                        ttl: d.ip.ttl,
                        window: t.window,
                        options: t.options,
                    },
                );
            }
            (Direction::Incoming, Transport::Icmp(i)) => {
                let Some(error) = i.error() else {
                    return self.count(Ignored::IcmpOther);
                };
                let Ok((_, icmp_bytes)) = IpRepr::parse(data) else {
                    return self.count(Ignored::Malformed);
                };
                let Ok(q) = QuotedTcp::parse_icmp(icmp_bytes) else {
                    return self.count(Ignored::IcmpOther);
                };
                // ours: by the quoted sequence number, else the source port
                let id = q
                    .seq
                    .and_then(|s| self.by_seq.get(&s).copied())
                    .or_else(|| self.by_port.get(&q.src_port).copied());
                let Some(id) = id else {
                    return self.count(Ignored::NoProbe);
                };
                if q.dst_port != self.cfg.dst.port() && q.ip.dst != self.cfg.dst.ip() {
                    return self.count(Ignored::IcmpOther);
                }
                let mut changes = self.diff(id, &q);
                if !is_time_exceeded(error) {
                    // only a router whose TTL check fired saw it arrive as 1
                    changes.retain(|c| c.field != "ttl");
                }
                let answer = if is_time_exceeded(error) {
                    Answer::TimeExceeded {
                        from: d.ip.src,
                        changes,
                        quoted_options: q.options.is_some(),
                    }
                } else {
                    Answer::Error {
                        from: d.ip.src,
                        error,
                        changes,
                    }
                };
                self.answer(id, at, answer);
            }
            (Direction::Incoming, _) => self.count(Ignored::OtherFlow),
        }
    }

    fn answer(&mut self, id: usize, at: Timestamp, answer: Answer) {
        if self.outcomes[id].is_some() {
            return self.count(Ignored::NoProbe);
        }
        if self.probes[id].deadline < at {
            return self.count(Ignored::Late);
        }
        self.finish(id, Some(at), Some(answer));
    }

    /// What the quote `q` of probe `id` shows changed.
    fn diff(&self, id: usize, q: &QuotedTcp) -> Vec<Change> {
        let p = &self.probes[id];
        let (ip, tcp) = self.syn(p.ttl, p.src_port, p.isn, p.ident, p.tsval);
        let mut v = Vec::new();
        let mut add = |field: &'static str, sent: String, seen: String| {
            if sent != seen {
                v.push(Change { field, sent, seen });
            }
        };
        add("src-addr", ip.src.to_string(), q.ip.src.to_string());
        add("dst-addr", ip.dst.to_string(), q.ip.dst.to_string());
        add("src-port", tcp.src_port.to_string(), q.src_port.to_string());
        add("dst-port", tcp.dst_port.to_string(), q.dst_port.to_string());
        if let Some(s) = q.seq {
            add("seq", tcp.seq.0.to_string(), s.to_string());
        }
        // the TTL ran out where it was quoted: it arrived as 1
        add("ttl", "1".into(), q.ip.ttl.to_string());
        add("dscp", dscp_name(self.cfg.tos >> 2), dscp_name(q.tos >> 2));
        add("ecn", ecn_name(self.cfg.tos & 3), ecn_name(q.tos & 3));
        if ip.is_ipv6() {
            add("flow-label", "0".into(), q.ip.flow_label.to_string());
        } else {
            add("ip-id", ip.ident.to_string(), q.ip.ident.to_string());
            add(
                "df",
                "set".into(),
                (if q.dont_fragment { "set" } else { "clear" }).into(),
            );
        }
        if let Some(f) = q.flags {
            add("tcp-flags", tcp.flags.to_string(), f.to_string());
        }
        if let Some(w) = q.window {
            add("window", tcp.window.to_string(), w.to_string());
        }
        if let Some(o) = &q.options {
            let s = &tcp.options;
            let opt = |v: Option<String>| v.unwrap_or_else(|| "absent".into());
            add(
                "mss",
                opt(s.mss.map(|m| m.to_string())),
                opt(o.mss.map(|m| m.to_string())),
            );
            add(
                "window-scale",
                opt(s.window_scale.map(|m| m.to_string())),
                opt(o.window_scale.map(|m| m.to_string())),
            );
            let sack = |b: bool| (if b { "present" } else { "absent" }).to_string();
            add(
                "sack-permitted",
                sack(s.sack_permitted),
                sack(o.sack_permitted),
            );
            add(
                "timestamps",
                opt(s.timestamps.map(|t| format!("val {}", t.0))),
                opt(o.timestamps.map(|t| format!("val {}", t.0))),
            );
            if !o.unknown.is_empty() || o.malformed {
                add("options", s.brief(), o.brief());
            }
        }
        v
    }

    /// The source ports of the probes finished (answered or expired) since
    /// the last call: their reservations can go.
    pub fn take_finished(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.finished)
    }

    /// Counts of packets that were not answers to our probes, by reason.
    pub fn ignored(&self) -> &BTreeMap<Ignored, u64> {
        &self.ignored
    }

    /// The result so far (probes still outstanding count as unanswered).
    pub fn result(&self) -> PathResult {
        let outcomes: Vec<ProbeOutcome> = self
            .probes
            .iter()
            .zip(&self.outcomes)
            .map(|(p, o)| {
                o.clone().unwrap_or(ProbeOutcome {
                    ttl: p.ttl,
                    src_port: p.src_port,
                    isn: p.isn,
                    sent_at: p.kernel_sent.unwrap_or(p.user_sent),
                    kernel_stamped: p.kernel_sent.is_some(),
                    rtt: None,
                    answer: None,
                })
            })
            .collect();
        let last = self.end_at.unwrap_or(self.sent_up_to);
        let mut hops: Vec<Hop> = (1..=last)
            .map(|ttl| Hop {
                ttl,
                probes: Vec::new(),
            })
            .collect();
        let mut beyond = 0;
        for o in outcomes {
            match hops.get_mut(o.ttl as usize - 1) {
                Some(h) if o.ttl <= last => h.probes.push(o),
                _ => beyond += 1,
            }
        }
        let outcome = self.outcome(&hops);
        let mut first_seen: Vec<(u8, Change)> = Vec::new();
        for h in &hops {
            note_first_seen(&mut first_seen, h);
        }
        let ecn = self.cfg.ecn.then(|| EcnOutcome {
            negotiated: hops
                .iter()
                .flat_map(|h| &h.probes)
                .find_map(|p| match &p.answer {
                    Some(Answer::Destination { flags, .. }) if flags.contains(TcpFlags::SYN) => {
                        Some(flags.contains(TcpFlags::ECE) && !flags.contains(TcpFlags::CWR))
                    }
                    _ => None,
                }),
            bleached_at: first_seen
                .iter()
                .find(|(_, c)| {
                    c.field == "tcp-flags" && !(c.seen.contains('E') && c.seen.contains('W'))
                })
                .map(|(h, _)| *h),
        });
        let reply_distance = match outcome {
            Outcome::Reached { hop, .. } => {
                hops[hop as usize - 1]
                    .probes
                    .iter()
                    .find_map(|p| match &p.answer {
                        Some(Answer::Destination {
                            ttl, window, flags, ..
                        }) => Some(reply_distance(*ttl, hop, *window, *flags)),
                        _ => None,
                    })
            }
            _ => None,
        };
        PathResult {
            hops,
            outcome,
            first_seen,
            ecn,
            reply_distance,
            beyond,
            ignored: self.ignored.clone(),
        }
    }

    fn outcome(&self, hops: &[Hop]) -> Outcome {
        let end = hops.iter().find_map(|h| {
            h.probes.iter().find_map(|p| match &p.answer {
                Some(Answer::Destination { flags, .. }) => {
                    Some(Err((h.ttl, flags.contains(TcpFlags::SYN))))
                }
                Some(Answer::Error { from, error, .. }) => Some(Ok((h.ttl, *from, *error))),
                _ => None,
            })
        });
        match end {
            Some(Err((hop, open))) => Outcome::Reached { hop, open },
            Some(Ok((ttl, from, error))) => {
                let hop = hops
                    .iter()
                    .find(|h| h.ttl < ttl && h.time_exceeded_from() == Some(from))
                    .map_or(ttl, |h| h.ttl);
                Outcome::Rejected {
                    ttl,
                    hop,
                    from,
                    error,
                    by_destination: from == self.cfg.dst.ip(),
                }
            }
            None => {
                let last = hops
                    .iter()
                    .rev()
                    .find_map(|h| h.time_exceeded_from().map(|a| (h.ttl, a)));
                Outcome::Dropped {
                    after: last.map_or(0, |(t, _)| t),
                    from: last.map(|(_, a)| a),
                }
            }
        }
    }
}

/// Where an answer with TTL `ttl` came from, for a destination `hop` hops out.
pub fn reply_distance(ttl: u8, hop: u8, window: u16, flags: TcpFlags) -> ReplyDistance {
    let initial = [32u8, 64, 128, 255]
        .into_iter()
        .find(|i| *i >= ttl)
        .unwrap_or(255);
    let hops_back = initial - ttl;
    ReplyDistance {
        ttl,
        initial,
        hops_back,
        nearer: (hops_back as u16 + 1) < hop as u16,
        farther: (hops_back as u16 + 1) > hop as u16,
        zero_window: window == 0 && flags.contains(TcpFlags::SYN),
    }
}

/// Adds the changes hop `h`'s quote shows that no earlier hop's did (the
/// TTL it arrived with aside) to `first_seen`.
fn note_first_seen(first_seen: &mut Vec<(u8, Change)>, h: &Hop) {
    for c in h.changes().unwrap_or(&[]) {
        if c.field != "ttl" && !first_seen.iter().any(|(_, f)| same_change(f, c)) {
            first_seen.push((h.ttl, c.clone()));
        }
    }
}

/// The same rewrite seen again at a later hop: the same field rewritten to
/// the same value, or for the fields each probe sends differently (IP ID,
/// sequence number, source port, TSval) the same field rewritten at all.
fn same_change(a: &Change, b: &Change) -> bool {
    let per_probe = |c: &Change| {
        matches!(c.field, "ip-id" | "seq" | "src-port")
            || (c.field == "timestamps" && c.seen != "absent")
    };
    a.field == b.field && (a.seen == b.seen || (per_probe(a) && per_probe(b)))
}

fn is_time_exceeded(e: IcmpError) -> bool {
    if e.v6 {
        e.icmp_type == 3
    } else {
        e.icmp_type == 11
    }
}

/// Writes the TOS byte (IPv4, checksum updated) or traffic class (IPv6) of a datagram.
fn set_traffic_class(d: &mut [u8], tos: u8) {
    if traffic_class(d) == Some(tos) {
        return;
    }
    match d.first().map(|b| b >> 4) {
        Some(4) if d.len() >= 20 => {
            d[1] = tos;
            d[10] = 0;
            d[11] = 0;
            let c = crate::wire::checksum_with(0, &d[..(d[0] as usize & 0x0f) * 4]);
            d[10..12].copy_from_slice(&c.to_be_bytes());
        }
        Some(6) if d.len() >= 2 => {
            d[0] = 0x60 | (tos >> 4);
            d[1] = (tos << 4) | (d[1] & 0x0f);
        }
        _ => {}
    }
}

/// `cs1`, `af41`, `ef`, else the number.
pub(crate) fn dscp_name(d: u8) -> String {
    match d {
        0 => "cs0".into(),
        46 => "ef".into(),
        44 => "voice-admit".into(),
        d if d % 8 == 0 => format!("cs{}", d / 8),
        d if d % 2 == 0 && (10..=38).contains(&d) && (d % 8) / 2 >= 1 => {
            format!("af{}{}", d / 8, (d % 8) / 2)
        }
        d => d.to_string(),
    }
}

/// `not-ect`, `ect1`, `ect0`, `ce`.
pub(crate) fn ecn_name(e: u8) -> String {
    ["not-ect", "ect1", "ect0", "ce"][(e & 3) as usize].into()
}

/// A probe of the ladder went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSent {
    /// Its TTL (hop limit).
    pub ttl: u8,
    /// Its source port.
    pub src_port: u16,
}

/// A hop that can no longer change (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalHop {
    /// The hop, its probes in send order.
    pub hop: Hop,
    /// The changes its quote shows that no earlier hop's did.
    pub first_seen: Vec<Change>,
}

/// What the ladder reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEvent {
    /// A probe went out.
    Sent(PathSent),
    /// A hop is final: in TTL order, each once, none beyond the destination.
    /// Hops a stop leaves unfinished are not reported; read them from
    /// [`PathProber::result`].
    Hop(FinalHop),
}

/// Every probe holds a source port of its own (from the context) until it is
/// answered or expires: no local connection can take its four-tuple meanwhile.
impl Machine for PathProber {
    type Event = PathEvent;

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<PathEvent>) {
        PathProber::on_packet(self, p.data, p.direction, p.at, p.offloaded);
        self.release_finished(cx);
        self.report_final_hops(cx);
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<PathEvent>) {
        self.on_time(settled(now));
        self.release_finished(cx);
        self.report_final_hops(cx);
        if self.stopped {
            return;
        }
        for ttl in self.due() {
            let Some(port) = self.source_port.or_else(|| cx.reserve_port(false)) else {
                self.stopped = true;
                return;
            };
            let isn = SeqNumber(cx.random());
            let ident = cx.random() as u16;
            let bytes = self.probe(now, ttl, port, isn, ident, (now.0 / 1_000_000) as u32);
            cx.send(self.cfg.dst.ip(), bytes);
            cx.report(PathEvent::Sent(PathSent {
                ttl,
                src_port: port,
            }));
        }
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.stopped {
            return None;
        }
        if !self.due().is_empty() {
            return Some(Timestamp(0));
        }
        self.next_deadline().map(|d| d + SETTLE)
    }

    fn is_done(&self) -> bool {
        self.stopped || PathProber::is_done(self)
    }

    /// Interrupted: probes still out stay unanswered; out of time: they expire.
    fn stop(&mut self, why: Stop, _now: Timestamp, cx: &mut dyn Context<PathEvent>) {
        self.stopped = true;
        if why == Stop::Bound {
            self.on_time(Timestamp(u64::MAX));
        }
        self.release_finished(cx);
    }

    /// Deadlines are on the kernel's (wall) clock; should it jump back, this
    /// bound still ends the run: every hop waited out once, and a second.
    fn bound(&self) -> Option<Duration> {
        Some(self.cfg.timeout * (u32::from(self.cfg.max_hops) + 1) + Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IcmpRepr;

    const SRC: &str = "198.18.1.1";
    const DST: &str = "198.18.4.2:8080";
    const T0: Timestamp = Timestamp(1_000_000_000);

    fn cfg() -> PathConfig {
        PathConfig {
            src: SRC.parse().unwrap(),
            dst: DST.parse().unwrap(),
            max_hops: 30,
            count: 2,
            timeout: Duration::from_secs(1),
            syn_options: true,
            mss: 1460,
            window: 64240,
            tos: 0,
            ecn: false,
            one_port: false,
        }
    }

    fn router(k: u8) -> IpAddr {
        format!("198.18.{k}.2").parse().unwrap()
    }

    /// Sends every due probe: ports 40000+, ISNs 1000+, IP IDs 500+.
    fn send_due(p: &mut PathProber, at: Timestamp) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        for ttl in p.due() {
            let n = p.probes.len() as u32;
            let b = p.probe(
                at,
                ttl,
                40000 + n as u16,
                SeqNumber(1000 + n),
                500 + n as u16,
                7,
            );
            out.push((ttl, b));
        }
        out
    }

    /// Router `from`'s time-exceeded (or other error) quoting `syn` as it
    /// arrived (TTL 1), after `edit` rewrote it.
    fn icmp(from: IpAddr, ty: u8, code: u8, syn: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let mut q = syn.to_vec();
        q[8] = 1;
        edit(&mut q);
        let to: IpAddr = SRC.parse().unwrap();
        let m = IcmpRepr::emit_error(ty, code, &q, from, to);
        IpRepr {
            src: from,
            dst: to,
            protocol: Protocol::ICMP,
            ttl: 64,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        }
        .emit(&m)
    }

    fn synack(syn: &[u8], flags: TcpFlags) -> Vec<u8> {
        let (ip, t) = IpRepr::parse(syn).unwrap();
        let t = TcpRepr::parse_unchecked(t).unwrap();
        let tcp = TcpRepr {
            src_port: t.dst_port,
            dst_port: t.src_port,
            seq: SeqNumber(9),
            ack: t.seq + 1,
            flags,
            window: 65160,
            ..TcpRepr::default()
        };
        let back = IpRepr {
            src: ip.dst,
            dst: ip.src,
            ttl: 62,
            ..ip
        };
        back.emit(&tcp.emit(back.src, back.dst))
    }

    #[test]
    fn the_window_opens_as_hops_answer_and_closes_at_the_destination() {
        let mut p = PathProber::new(cfg());
        let sent = send_due(&mut p, T0);
        // GAP hops, count each
        assert_eq!(sent.len(), GAP as usize * 2);
        assert!(p.due().is_empty());
        let at = T0 + Duration::from_micros(50);
        for (ttl, syn) in &sent {
            let pkt = match ttl {
                1..=3 => icmp(router(*ttl), 11, 0, syn, |_| {}),
                _ => synack(syn, TcpFlags::SYN.union(TcpFlags::ACK)),
            };
            p.on_packet(&pkt, Direction::Incoming, at, false);
        }
        assert_eq!(p.outstanding(), 0);
        // the destination answered at TTL 4: nothing more to send
        assert!(p.is_done());
        let r = p.result();
        assert_eq!(r.outcome, Outcome::Reached { hop: 4, open: true });
        assert_eq!(r.hops.len(), 4);
        assert_eq!(r.beyond, 2);
        assert_eq!(r.hops[0].addresses(), vec![router(1)]);
        assert_eq!(r.hops[0].probes[0].rtt, Some(Duration::from_micros(50)));
        assert!(r.first_seen.is_empty(), "{:?}", r.first_seen);
    }

    #[test]
    fn hops_are_final_in_ttl_order_once_nothing_below_can_change() {
        let mut p = PathProber::new(cfg());
        let sent = send_due(&mut p, T0);
        let at = T0 + Duration::from_micros(50);
        let answer = |p: &mut PathProber, i: usize| {
            let (ttl, syn) = &sent[i];
            let pkt = match ttl {
                1..=3 => icmp(router(*ttl), 11, 0, syn, |_| {}),
                _ => synack(syn, TcpFlags::SYN.union(TcpFlags::ACK)),
            };
            p.on_packet(&pkt, Direction::Incoming, at, false);
        };
        let ttls = |v: Vec<FinalHop>| v.iter().map(|h| h.hop.ttl).collect::<Vec<_>>();
        // hop 2 answered in full, hop 1 half: nothing is final
        for i in [2, 3, 0] {
            answer(&mut p, i);
        }
        assert!(p.take_final_hops().is_empty());
        // hop 1's second answer makes hops 1 and 2 final, in order
        answer(&mut p, 1);
        assert_eq!(ttls(p.take_final_hops()), vec![1, 2]);
        // the destination answers at 4 before hop 3 does: 4 waits for 3
        answer(&mut p, 6);
        answer(&mut p, 7);
        assert!(p.take_final_hops().is_empty());
        answer(&mut p, 4);
        assert!(
            p.take_final_hops().is_empty(),
            "hop 3's second probe is out"
        );
        // it expires: hops 3 and 4 are final; hop 5, beyond it, never is
        p.on_time(T0 + Duration::from_secs(2));
        let last = p.take_final_hops();
        assert_eq!(ttls(last.clone()), vec![3, 4]);
        assert!(p.take_final_hops().is_empty());
        // what was reported is what the result holds
        let r = p.result();
        assert_eq!(r.hops[2..], [last[0].hop.clone(), last[1].hop.clone()]);
    }

    #[test]
    fn one_source_port_sends_one_probe_at_a_time_and_tells_them_by_isn() {
        let mut p = PathProber::new(PathConfig {
            one_port: true,
            ..cfg()
        });
        let at = T0 + Duration::from_micros(50);
        let mut ttls = Vec::new();
        for n in 0..6u32 {
            let due = p.due();
            assert_eq!(due.len(), 1, "{due:?}");
            let b = p.probe(T0, due[0], 40000, SeqNumber(1000 + n), 500, 7);
            assert!(p.due().is_empty(), "one in flight at a time");
            // our own SYN, seen leaving: stamped on its probe (by ISN)
            p.on_packet(&b, Direction::Outgoing, T0, false);
            assert_eq!(p.probes[n as usize].kernel_sent, Some(T0));
            let pkt = match due[0] {
                1 | 2 => icmp(router(due[0]), 11, 0, &b, |_| {}),
                _ => synack(&b, TcpFlags::SYN.union(TcpFlags::ACK)),
            };
            p.on_packet(&pkt, Direction::Incoming, at, false);
            assert_eq!(p.outstanding(), 0);
            ttls.push(due[0]);
        }
        assert_eq!(ttls, vec![1, 1, 2, 2, 3, 3]);
        assert!(p.is_done());
        assert_eq!(p.result().outcome, Outcome::Reached { hop: 3, open: true });
    }

    #[test]
    fn silence_after_a_hop_is_a_drop_after_it_and_ends_the_run() {
        let mut p = PathProber::new(cfg());
        let sent = send_due(&mut p, T0);
        for (ttl, syn) in &sent {
            if *ttl <= 2 {
                let pkt = icmp(router(*ttl), 11, 0, syn, |_| {});
                p.on_packet(
                    &pkt,
                    Direction::Incoming,
                    T0 + Duration::from_micros(9),
                    false,
                );
            }
        }
        // hop 2 answered: the window reaches 2 + GAP
        let more = send_due(&mut p, T0 + Duration::from_millis(1));
        assert_eq!(more.len(), 2 * 2);
        assert_eq!(p.on_time(T0 + Duration::from_secs(2)), 3 * 2 + 2 * 2);
        assert!(p.is_done());
        assert_eq!(
            p.result().outcome,
            Outcome::Dropped {
                after: 2,
                from: Some(router(2))
            }
        );
    }

    #[test]
    fn a_reject_is_named_by_the_hop_with_its_address() {
        let mut p = PathProber::new(cfg());
        for (ttl, syn) in send_due(&mut p, T0) {
            let pkt = match ttl {
                1 | 2 => icmp(router(ttl), 11, 0, &syn, |_| {}),
                // router 2 rejects what it would forward
                _ => icmp(router(2), 3, 13, &syn, |q| q[8] = 64 - ttl),
            };
            p.on_packet(
                &pkt,
                Direction::Incoming,
                T0 + Duration::from_micros(9),
                false,
            );
        }
        assert!(p.is_done());
        let r = p.result();
        match r.outcome {
            Outcome::Rejected {
                ttl,
                hop,
                from,
                error,
                by_destination,
            } => {
                assert_eq!((ttl, hop, from), (3, 2, router(2)));
                assert_eq!(error.name(), "admin-prohibited");
                assert!(!by_destination);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(r.hops.len(), 3);
    }

    #[test]
    fn quotes_show_rewrites_where_they_first_appear() {
        let mut c = cfg();
        c.ecn = true;
        c.tos = 0xb8 | 2; // EF, ECT(0)
        let mut p = PathProber::new(c);
        for (ttl, syn) in send_due(&mut p, T0) {
            assert_eq!(traffic_class(&syn), Some(0xba));
            assert_eq!(syn[33], 0x02 | 0x40 | 0x80, "SYN with ECE and CWR");
            let pkt = match ttl {
                1 | 2 => icmp(router(ttl), 11, 0, &syn, |_| {}),
                3 => icmp(router(3), 11, 0, &syn, |q| {
                    // router 2 clamped the MSS, bleached DSCP/ECN and ECE/CWR
                    q[1] = 0x20;
                    q[33] = 0x02;
                    q[42..44].copy_from_slice(&1200u16.to_be_bytes());
                }),
                _ => synack(&syn, TcpFlags::SYN.union(TcpFlags::ACK)),
            };
            p.on_packet(
                &pkt,
                Direction::Incoming,
                T0 + Duration::from_micros(9),
                false,
            );
        }
        let r = p.result();
        let seen: Vec<(u8, String)> = r
            .first_seen
            .iter()
            .map(|(h, c)| (*h, c.describe()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (3, "dscp ef->cs1".to_string()),
                (3, "ecn ect0->not-ect".to_string()),
                (3, "tcp-flags SEW->S".to_string()),
                (3, "mss 1460->1200".to_string()),
            ]
        );
        assert_eq!(
            r.ecn,
            Some(EcnOutcome {
                negotiated: Some(false),
                bleached_at: Some(3)
            })
        );
    }

    #[test]
    fn strangers_and_duplicates_are_counted_not_taken() {
        let mut p = PathProber::new(cfg());
        let sent = send_due(&mut p, T0);
        let syn = &sent[0].1;
        let te = icmp(router(1), 11, 0, syn, |_| {});
        p.on_packet(&te, Direction::Incoming, T0, false);
        p.on_packet(&te, Direction::Incoming, T0, false);
        p.on_packet(&te[..30], Direction::Incoming, T0, false);
        // our own SYN leaving: the kernel's send stamp
        p.on_packet(
            &sent[1].1,
            Direction::Outgoing,
            T0 + Duration::from_micros(3),
            false,
        );
        assert_eq!(p.probes[1].kernel_sent, Some(T0 + Duration::from_micros(3)));
        let i = p.ignored();
        assert_eq!(i.get(&Ignored::NoProbe), Some(&1));
        assert_eq!(i.get(&Ignored::Malformed), Some(&1));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = crate::wire::testutil::Noise::new(21);
        let mut p = PathProber::new(cfg());
        let sent = send_due(&mut p, T0);
        let seeds: Vec<Vec<u8>> = vec![
            icmp(router(1), 11, 0, &sent[0].1, |_| {}),
            synack(&sent[2].1, TcpFlags::SYN.union(TcpFlags::ACK)),
            sent[3].1.clone(),
        ];
        for k in 0..30_000 {
            let m = n.mutate(&seeds[k % seeds.len()]);
            let dir = if k % 2 == 0 {
                Direction::Incoming
            } else {
                Direction::Outgoing
            };
            p.on_packet(&m, dir, T0, k % 3 == 0);
        }
        let _ = p.result();
    }

    #[test]
    fn a_rewrite_of_per_probe_fields_is_named_once() {
        let mut p = PathProber::new(cfg());
        for (ttl, syn) in send_due(&mut p, T0) {
            let pkt = match ttl {
                1 => icmp(router(1), 11, 0, &syn, |_| {}),
                // from hop 2 on every quote has IP ID 0 and a new sequence number
                2..=4 => icmp(router(ttl), 11, 0, &syn, |q| {
                    q[4] = 0;
                    q[5] = 0;
                    q[24] ^= 0xff;
                }),
                _ => synack(&syn, TcpFlags::SYN.union(TcpFlags::ACK)),
            };
            p.on_packet(
                &pkt,
                Direction::Incoming,
                T0 + Duration::from_micros(9),
                false,
            );
        }
        let r = p.result();
        let fields: Vec<(u8, &str)> = r.first_seen.iter().map(|(h, c)| (*h, c.field)).collect();
        // matched by source port although the quoted sequence number is not ours
        assert_eq!(fields, vec![(2, "seq"), (2, "ip-id")]);
        assert_eq!(r.first_seen[1].1.seen, "0");
    }

    #[test]
    fn an_answer_from_nearer_than_the_destination_is_told() {
        let syn_ack = TcpFlags::SYN.union(TcpFlags::ACK);
        // the server 4 hops out answers with 64 - 3
        let d = reply_distance(61, 4, 65160, syn_ack);
        assert_eq!(
            (d.initial, d.hops_back, d.nearer, d.zero_window),
            (64, 3, false, false)
        );
        // router 3 answers for it (SYNPROXY: window 0)
        let d = reply_distance(62, 4, 0, syn_ack);
        assert_eq!((d.hops_back, d.nearer, d.zero_window), (2, true, true));
        assert_eq!(reply_distance(250, 3, 1, syn_ack).initial, 255);
        assert!(!reply_distance(0, 1, 1, syn_ack).nearer);
        // TTL 61 (3 routers back) from a destination reached at TTL 3: a hop
        // raised the SYNs' TTL
        let d = reply_distance(61, 3, 65160, syn_ack);
        assert_eq!((d.hops_back, d.nearer, d.farther), (3, false, true));
        assert!(!reply_distance(61, 4, 65160, syn_ack).farther);
    }

    #[test]
    fn the_destination_rejecting_is_told_apart_from_a_router() {
        let mut p = PathProber::new(cfg());
        let dst: IpAddr = "198.18.4.2".parse().unwrap();
        for (ttl, syn) in send_due(&mut p, T0) {
            let pkt = match ttl {
                1..=3 => icmp(router(ttl), 11, 0, &syn, |_| {}),
                _ => icmp(dst, 3, 3, &syn, |_| {}),
            };
            p.on_packet(
                &pkt,
                Direction::Incoming,
                T0 + Duration::from_micros(9),
                false,
            );
        }
        match p.result().outcome {
            Outcome::Rejected {
                ttl,
                hop,
                from,
                error,
                by_destination,
            } => {
                assert_eq!((ttl, hop, from, by_destination), (4, 4, dst, true));
                assert_eq!(error.name(), "port-unreachable");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn an_on_link_destination_is_hop_1() {
        let mut c = cfg();
        c.count = 1;
        let mut p = PathProber::new(c);
        for (_, syn) in send_due(&mut p, T0) {
            let pkt = synack(&syn, TcpFlags::RST.union(TcpFlags::ACK));
            p.on_packet(
                &pkt,
                Direction::Incoming,
                T0 + Duration::from_micros(9),
                false,
            );
        }
        let r = p.result();
        assert_eq!(
            r.outcome,
            Outcome::Reached {
                hop: 1,
                open: false
            }
        );
        assert_eq!((r.hops.len(), r.beyond), (1, GAP as usize - 1));
    }
}
