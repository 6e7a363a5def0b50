//! Verified verdicts for a scan: what follows a host's first answers.
//!
//! - Canaries: a host's first SYN-ACK (with `--verify`, its first answer of
//!   any kind) sends a SYN to a random high port that is not scanned and is
//!   closed on any normal host; only if that one answers SYN-ACK do the
//!   others ([`CANARIES`] in all) go out. A host that answers all of them
//!   with SYN-ACK answers every port (a tarpit or a proxy): it is said once,
//!   and its SYN-ACKs are not open ports. A normal host costs one canary (its
//!   RST judges it), or none: an RST from a scanned port says what a
//!   canary's would (without `--verify`, a host that sent one gets no canary,
//!   or is judged at once if its canary is out). Until its canaries are judged, the host's results are
//!   held (a round trip, two for a suspect host); after, they pass at once.
//!   Silent and closed-only hosts cost nothing (without `--verify`).
//! - `--verify`: each SYN-ACK's handshake is completed, the server's next
//!   segments are compared with the SYN-ACK ([`crate::probe::verify`]) and
//!   the connection is reset; a closed port's RST is compared with what is
//!   known of the host (its canary's RST, its verified segments).
//!
//! Sans-IO and generic over the caller's result type `T`: answers, captured
//! packets and timestamps in, [`Action`]s out. Without `--verify` the caller
//! resets every SYN-ACK itself, as it comes; with it, the RSTs come from here
//! (after the handshake's check). State lives for one block of
//! the scan ([`FollowUp::close`] ends it), so memory is bounded by the hosts
//! that answered in a block.

use super::ScanMatcher;
use crate::event::Timestamp;
use crate::probe::SynAnswer;
use crate::probe::verify::{self, Probe, ProbeCheck, Verifier};
use crate::wire::IpRepr;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Canary ports of a host that answers the first one with a SYN-ACK (a
/// normal host gets only the first).
pub const CANARIES: usize = 3;

/// What a canary port answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryAnswer {
    /// A SYN-ACK: the port answers (it should not on a normal host).
    SynAck,
    /// An RST: closed, as on a normal host.
    Rst,
    /// An ICMP error.
    Icmp,
    /// Nothing (after one retry), or not sent (the first canary did not
    /// answer SYN-ACK).
    NoAnswer,
}

impl CanaryAnswer {
    /// `syn-ack`, `rst`, `icmp`, `no-answer`.
    pub fn name(self) -> &'static str {
        match self {
            CanaryAnswer::SynAck => "syn-ack",
            CanaryAnswer::Rst => "rst",
            CanaryAnswer::Icmp => "icmp",
            CanaryAnswer::NoAnswer => "no-answer",
        }
    }
}

/// A host that answered every canary with a SYN-ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswersEveryPort {
    /// The host.
    pub host: IpAddr,
    /// Its canary ports and what each answered.
    pub canaries: Vec<(u16, CanaryAnswer)>,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<T> {
    /// Send this datagram (IP header included) to this host.
    Send(IpAddr, Vec<u8>),
    /// Report this result, with what the checks found.
    Report(T, Option<ProbeCheck>),
    /// A SYN-ACK of a host that answers every port: not an open port, not
    /// reported on its own (counted with the host).
    Absorbed(T),
    /// Say once that this host answers every port.
    EveryPort(AnswersEveryPort),
}

/// What a scan's checks cost and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowCounts {
    /// Hosts that got canaries, and the canary SYNs sent (retries included).
    pub canary_hosts: u64,
    /// Canary SYNs sent.
    pub canary_probes: u64,
    /// Handshakes completed and reset by `--verify`.
    pub handshakes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Canaries out: the host's results wait.
    Pending,
    Normal,
    EveryPort,
}

#[derive(Debug)]
struct Held<T> {
    item: T,
    port: u16,
    open: bool,
    /// A verification of its handshake is under way.
    waiting: bool,
    check: Option<ProbeCheck>,
    /// A closed port's RST (for the check once the host is known).
    rst: Option<(Vec<u8>, Timestamp)>,
}

#[derive(Debug)]
struct Host<T> {
    state: State,
    /// Its canary ports (drawn at once) and their answers; the first `sent`
    /// are out.
    canaries: Vec<(u16, Option<CanaryAnswer>)>,
    sent: usize,
    retried: bool,
    held: Vec<Held<T>>,
    verifier: Option<Verifier>,
}

/// The checks of one block of a scan.
#[derive(Debug)]
pub struct FollowUp<T> {
    canaries: bool,
    verify: bool,
    hosts: HashMap<IpAddr, Host<T>>,
    /// Hosts judged normal with nothing left to do (no `--verify`): their
    /// answers pass at once. Kept apart from `hosts`, whose entries are
    /// large: a block of many hosts would otherwise hold one per host that
    /// answered, and grow the loop's memory (page faults) the whole scan.
    settled: HashSet<IpAddr>,
    /// What the checks cost so far.
    pub counts: FollowCounts,
}

impl<T> FollowUp<T> {
    /// `canaries`: look for hosts answering every port; `verify`: complete
    /// and compare handshakes, check RSTs.
    pub fn new(canaries: bool, verify: bool) -> FollowUp<T> {
        FollowUp {
            canaries,
            verify,
            hosts: HashMap::new(),
            settled: HashSet::new(),
            counts: FollowCounts::default(),
        }
    }

    /// Is there anything to do at all?
    pub fn enabled(&self) -> bool {
        self.canaries || self.verify
    }

    /// Hosts whose canaries are out, or handshakes under way.
    pub fn busy(&self) -> bool {
        self.hosts.values().any(|h| {
            h.state == State::Pending || h.verifier.as_ref().is_some_and(|v| v.outstanding() > 0)
        })
    }

    /// A first answer (open or closed) to a scan probe: `data` is the
    /// captured reply, `rtt` the probe's round trip. `random` draws canary
    /// ports; `now` is when the caller acts on it.
    #[allow(clippy::too_many_arguments)]
    pub fn on_answer(
        &mut self,
        m: &ScanMatcher,
        item: T,
        (host, port, verdict): (IpAddr, u16, &SynAnswer),
        data: &[u8],
        at: Timestamp,
        rtt: Duration,
        now: Timestamp,
        random: impl FnMut() -> u16,
    ) -> Vec<Action<T>> {
        let tsval = tsval(now);
        let open = *verdict == SynAnswer::Open;
        let closed = *verdict == SynAnswer::Closed;
        let mut out = Vec::new();
        if closed && self.canaries && !self.verify {
            // an RST from a scanned port says what a canary's would: not a
            // host that answers every port (its canary is spared)
            match self.hosts.get_mut(&host) {
                None => {
                    self.settled.insert(host);
                }
                Some(h) if h.state == State::Pending => {
                    h.state = State::Normal;
                    release(h, &mut out);
                    self.settle(host);
                }
                Some(_) => {}
            }
        }
        if !(open || closed) || !self.enabled() || (closed && !self.verify) {
            if open {
                self.reset(m, host, port, &mut out);
            }
            out.push(Action::Report(item, None));
            return out;
        }
        if self.settled.contains(&host) {
            // normal, no --verify: the caller resets a SYN-ACK itself
            out.push(Action::Report(item, None));
            return out;
        }
        if !self.hosts.contains_key(&host) {
            let h = self.new_host(m, host, tsval, random, &mut out);
            self.hosts.insert(host, h);
        }
        let verify = self.verify;
        let Some(h) = self.hosts.get_mut(&host) else {
            return out;
        };
        if open && h.state == State::EveryPort {
            if verify && let Some(rst) = m.rst(host, port) {
                out.push(Action::Send(host, rst));
            }
            out.push(Action::Absorbed(item));
            return out;
        }
        let mut held = Held {
            item,
            port,
            open,
            waiting: false,
            check: None,
            rst: None,
        };
        if open {
            let started = match (verify, h.verifier.as_mut(), m.isn(host, port)) {
                (true, Some(v), Some(isn)) => v.start_probe(
                    Probe {
                        dst_port: port,
                        src_port: m.sport,
                        isn,
                        acked_at: now,
                    },
                    data,
                    at,
                    rtt,
                    tsval,
                ),
                _ => Vec::new(),
            };
            if started.is_empty() {
                if verify && let Some(rst) = m.rst(host, port) {
                    out.push(Action::Send(host, rst));
                }
            } else {
                self.counts.handshakes += 1;
                held.waiting = true;
                out.extend(started.into_iter().map(|d| Action::Send(host, d)));
            }
        } else if h.state == State::Pending {
            held.rst = Some((data.to_vec(), at));
        } else if let Some(v) = &h.verifier {
            held.check = v.check_rst(data, at);
        }
        h.held.push(held);
        release(h, &mut out);
        self.settle(host);
        out
    }

    /// Moves `host` to the settled set if nothing of it is left to do: judged
    /// normal, nothing held, every canary sent answered, no verification.
    fn settle(&mut self, host: IpAddr) {
        let done = |h: &Host<T>| {
            h.state == State::Normal
                && h.held.is_empty()
                && h.verifier.is_none()
                && h.canaries[..h.sent].iter().all(|c| c.1.is_some())
        };
        if !self.verify && self.hosts.get(&host).is_some_and(done) {
            self.hosts.remove(&host);
            self.settled.insert(host);
        }
    }

    /// An RST for a SYN-ACK not handed to a verification: ours to send only
    /// with `--verify` (without it the caller resets every SYN-ACK at once,
    /// duplicates too).
    fn reset(&self, m: &ScanMatcher, host: IpAddr, port: u16, out: &mut Vec<Action<T>>) {
        if self.verify
            && let Some(rst) = m.rst(host, port)
        {
            out.push(Action::Send(host, rst));
        }
    }

    fn new_host(
        &mut self,
        m: &ScanMatcher,
        host: IpAddr,
        tsval: u32,
        random: impl FnMut() -> u16,
        out: &mut Vec<Action<T>>,
    ) -> Host<T> {
        let ports = if self.canaries {
            verify::canary_ports_avoiding(CANARIES, |p| m.ports.index_of(p).is_some(), random)
        } else {
            Vec::new()
        };
        // one canary first: the others only if it answers SYN-ACK
        let sent = ports.len().min(1);
        for &p in &ports[..sent] {
            if let Some(syn) = m.syn_to(host, p, 0, tsval) {
                out.push(Action::Send(host, syn));
                self.counts.canary_probes += 1;
            }
        }
        if !ports.is_empty() {
            self.counts.canary_hosts += 1;
        }
        let verifier = match (self.verify, m.sources.source_for(host)) {
            (true, Some(src)) => Some(Verifier::new(src, SocketAddr::new(host, 0), m.ttl)),
            _ => None,
        };
        Host {
            state: if ports.is_empty() {
                State::Normal
            } else {
                State::Pending
            },
            canaries: ports.into_iter().map(|p| (p, None)).collect(),
            sent,
            retried: false,
            held: Vec::new(),
            verifier,
        }
    }

    /// A captured packet the scan's matcher did not take: a canary's answer,
    /// or a segment of a handshake being verified. None when it is neither.
    pub fn on_packet(
        &mut self,
        m: &ScanMatcher,
        data: &[u8],
        offloaded: bool,
        at: Timestamp,
    ) -> Option<Vec<Action<T>>> {
        if self.hosts.is_empty() {
            return None;
        }
        let (ip, _) = IpRepr::parse(data).ok()?;
        if let Some(v) = self
            .hosts
            .get_mut(&ip.src)
            .and_then(|h| h.verifier.as_mut())
            && v.on_packet(data, at)
        {
            return Some(Vec::new());
        }
        let hosts = &self.hosts;
        let r = m
            .classify_with(data, offloaded, at, |h, p| {
                let host = hosts.get(&h)?;
                host.canaries[..host.sent]
                    .iter()
                    .any(|c| c.0 == p)
                    .then_some(0)
            })
            .ok()?;
        let (host, port) = (r.host(), r.port());
        let h = self.hosts.get_mut(&host)?;
        let answer = match r.reply.answer {
            SynAnswer::Open => CanaryAnswer::SynAck,
            SynAnswer::Closed => CanaryAnswer::Rst,
            _ => CanaryAnswer::Icmp,
        };
        let mut out = Vec::new();
        if answer == CanaryAnswer::SynAck
            && let Some(rst) = m.rst(host, port)
        {
            out.push(Action::Send(host, rst));
        }
        if answer == CanaryAnswer::Rst
            && let Some(v) = h.verifier.as_mut()
        {
            v.learn(data, at);
        }
        for c in h.canaries.iter_mut().filter(|c| c.0 == port) {
            c.1.get_or_insert(answer);
        }
        // the first canary answered SYN-ACK: a suspect host, the others go out
        if h.state == State::Pending
            && h.sent < h.canaries.len()
            && h.canaries[..h.sent]
                .iter()
                .all(|c| c.1 == Some(CanaryAnswer::SynAck))
        {
            for &(p, _) in &h.canaries[h.sent..] {
                if let Some(syn) = m.syn_to(host, p, 0, tsval(at)) {
                    out.push(Action::Send(host, syn));
                    self.counts.canary_probes += 1;
                }
            }
            h.sent = h.canaries.len();
        }
        if h.state == State::Pending {
            decide(host, h, false, &mut out);
        }
        self.settle(host);
        Some(out)
    }

    /// Ends the verifications due by `now` and releases what they held.
    pub fn on_time(&mut self, now: Timestamp, tsval: u32) -> Vec<Action<T>> {
        let mut out = Vec::new();
        for (&host, h) in self.hosts.iter_mut() {
            let Some(v) = h.verifier.as_mut() else {
                continue;
            };
            if v.next_deadline().is_none_or(|d| d > now) {
                continue;
            }
            for done in v.on_time(now, tsval) {
                out.push(Action::Send(host, done.rst));
                if let Some(held) = h
                    .held
                    .iter_mut()
                    .find(|x| x.waiting && x.port == done.dst_port)
                {
                    held.waiting = false;
                    held.check = Some(done.check);
                }
            }
            release(h, &mut out);
        }
        out
    }

    /// The earliest end of a verification under way.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.hosts
            .values()
            .filter_map(|h| h.verifier.as_ref()?.next_deadline())
            .min()
    }

    /// Sends the canaries out and still unanswered again, once per host (at
    /// the end of a block, before [`FollowUp::close`]). A first canary whose
    /// retry answers SYN-ACK sends the others then (not retried).
    pub fn retry_canaries(&mut self, m: &ScanMatcher, tsval: u32) -> Vec<Action<T>> {
        let mut out = Vec::new();
        for (&host, h) in self.hosts.iter_mut() {
            if h.state != State::Pending || h.retried {
                continue;
            }
            h.retried = true;
            for c in h.canaries[..h.sent].iter().filter(|c| c.1.is_none()) {
                if let Some(syn) = m.syn_to(host, c.0, 0, tsval) {
                    out.push(Action::Send(host, syn));
                    self.counts.canary_probes += 1;
                }
            }
        }
        out
    }

    /// Ends the block: a host whose canaries did not all answer is a normal
    /// host; handshakes under way end now; everything held is released.
    pub fn close(&mut self, tsval: u32) -> Vec<Action<T>> {
        let mut out = self.on_time(Timestamp(u64::MAX), tsval);
        self.settled.clear();
        let mut hosts: Vec<(IpAddr, Host<T>)> = self.hosts.drain().collect();
        hosts.sort_by_key(|(a, _)| *a);
        for (host, mut h) in hosts {
            if h.state == State::Pending {
                decide(host, &mut h, true, &mut out);
            }
            h.state = match h.state {
                State::Pending => State::Normal,
                s => s,
            };
            for x in &mut h.held {
                x.waiting = false;
            }
            release(&mut h, &mut out);
        }
        out
    }
}

/// Our timestamp clock for TSval: milliseconds.
pub fn tsval(t: Timestamp) -> u32 {
    (t.0 / 1_000_000) as u32
}

/// Judges a pending host by its canaries: every one a SYN-ACK, it answers
/// every port; any other answer, it is normal; else it stays pending (unless
/// `last`: then unanswered canaries count as no-answer).
fn decide<T>(host: IpAddr, h: &mut Host<T>, last: bool, out: &mut Vec<Action<T>>) {
    let answers: Vec<bool> = h
        .canaries
        .iter()
        .map(|c| c.1 == Some(CanaryAnswer::SynAck))
        .collect();
    if verify::answers_every_port(&answers) {
        h.state = State::EveryPort;
        out.push(Action::EveryPort(AnswersEveryPort {
            host,
            canaries: h
                .canaries
                .iter()
                .map(|c| (c.0, c.1.unwrap_or(CanaryAnswer::NoAnswer)))
                .collect(),
        }));
    } else if last
        || h.canaries
            .iter()
            .any(|c| c.1.is_some_and(|a| a != CanaryAnswer::SynAck))
    {
        h.state = State::Normal;
    } else {
        return;
    }
    release(h, out);
}

/// Releases what a judged host holds: results whose checks are done.
fn release<T>(h: &mut Host<T>, out: &mut Vec<Action<T>>) {
    if h.state == State::Pending {
        return;
    }
    let mut i = 0;
    while i < h.held.len() {
        if h.held[i].waiting {
            i += 1;
            continue;
        }
        let mut x = h.held.swap_remove(i);
        if let (Some((data, at)), Some(v)) = (x.rst.take(), h.verifier.as_ref()) {
            x.check = v.check_rst(&data, at);
        }
        if x.open && h.state == State::EveryPort {
            out.push(Action::Absorbed(x.item));
        } else {
            out.push(Action::Report(x.item, x.check));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::targets::parse_target;
    use crate::scan::{Cookie, PortList, SourceMap, TargetSet};
    use crate::wire::{Datagram, SeqNumber, TcpFlags, TcpRepr, Transport};

    const HOST: &str = "198.18.0.2";

    fn matcher() -> ScanMatcher {
        let no = |_: &str| Err("none".to_string());
        ScanMatcher {
            sources: SourceMap::single("198.18.0.1".parse().unwrap()),
            sport: 40000,
            cookie: Cookie::new([3; 16]),
            targets: TargetSet::build(&[parse_target(HOST, &no).unwrap()], &[]).unwrap(),
            ports: PortList::parse("22,80,81").unwrap(),
            ttl: 64,
            syn_options: true,
            mss: 1460,
        }
    }

    /// The host's answer (`flags`, TTL 61) to our SYN to `port`.
    fn answer(m: &ScanMatcher, port: u16, flags: TcpFlags) -> Vec<u8> {
        answer_ttl(m, port, flags, 61)
    }

    fn answer_ttl(m: &ScanMatcher, port: u16, flags: TcpFlags, ttl: u8) -> Vec<u8> {
        let host: IpAddr = HOST.parse().unwrap();
        let syn = Datagram::parse(&m.syn_to(host, port, 1, 1).unwrap()).unwrap();
        let Transport::Tcp(s) = syn.transport else {
            panic!()
        };
        let tcp = TcpRepr {
            src_port: s.dst_port,
            dst_port: s.src_port,
            seq: SeqNumber(99),
            ack: s.seq + 1,
            flags,
            window: 65160,
            ..TcpRepr::default()
        };
        let ip = IpRepr {
            src: syn.ip.dst,
            dst: syn.ip.src,
            ttl,
            ..syn.ip.clone()
        };
        ip.emit(&tcp.emit(ip.src, ip.dst))
    }

    const T0: Timestamp = Timestamp(1_000_000_000);

    fn sa() -> TcpFlags {
        TcpFlags::SYN.union(TcpFlags::ACK)
    }

    /// Draws 49152 + 7, + 8, ...: canaries 49159, 49160, 49161.
    fn draws() -> impl FnMut() -> u16 {
        let mut n = 6;
        move || {
            n += 1;
            n
        }
    }

    fn sent<T>(a: &[Action<T>]) -> Vec<u16> {
        a.iter()
            .filter_map(|a| match a {
                Action::Send(_, d) => {
                    let (_, t) = IpRepr::parse(d).ok()?;
                    Some(TcpRepr::parse_unchecked(t).ok()?.dst_port)
                }
                _ => None,
            })
            .collect()
    }

    /// The host's first answer (`verdict`, by a segment with `flags`) to
    /// our SYN to `port`, handed to `f`.
    fn answered(
        f: &mut FollowUp<u16>,
        m: &ScanMatcher,
        port: u16,
        verdict: SynAnswer,
        flags: TcpFlags,
    ) -> Vec<Action<u16>> {
        let host = HOST.parse().unwrap();
        f.on_answer(
            m,
            port,
            (host, port, &verdict),
            &answer(m, port, flags),
            T0,
            Duration::from_micros(50),
            T0,
            draws(),
        )
    }

    fn open(f: &mut FollowUp<u16>, m: &ScanMatcher, port: u16) -> Vec<Action<u16>> {
        answered(f, m, port, SynAnswer::Open, sa())
    }

    #[test]
    fn a_host_answering_its_canaries_is_said_once_and_its_ports_are_absorbed() {
        let m = matcher();
        let mut f = FollowUp::new(true, false);
        // the first SYN-ACK: one canary out, the port held (the caller resets it)
        let a = open(&mut f, &m, 80);
        assert_eq!(sent(&a), vec![49159]);
        assert!(!a.iter().any(|a| matches!(a, Action::Report(..))));
        assert!(f.busy());
        // another SYN-ACK while pending: held, no more canaries
        assert!(open(&mut f, &m, 81).is_empty());
        // the others are not ours yet
        assert!(
            f.on_packet(&m, &answer(&m, 49160, sa()), false, T0)
                .is_none()
        );
        // the first canary answers SYN-ACK: it is reset, the other two go out
        let out = f
            .on_packet(&m, &answer(&m, 49159, sa()), false, T0)
            .unwrap();
        assert_eq!(sent(&out), vec![49159, 49160, 49161]);
        assert!(!out.iter().any(|a| matches!(a, Action::Report(..))));
        assert!(f.busy());
        let mut out = Vec::new();
        for p in [49160, 49161] {
            out.extend(f.on_packet(&m, &answer(&m, p, sa()), false, T0).unwrap());
        }
        // each canary SYN-ACK reset; the host said once; its ports absorbed
        assert_eq!(sent(&out), vec![49160, 49161]);
        let every: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::EveryPort(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(every.len(), 1);
        assert_eq!(
            every[0].canaries,
            vec![
                (49159, CanaryAnswer::SynAck),
                (49160, CanaryAnswer::SynAck),
                (49161, CanaryAnswer::SynAck)
            ]
        );
        let mut absorbed: Vec<u16> = out
            .iter()
            .filter_map(|a| match a {
                Action::Absorbed(p) => Some(*p),
                _ => None,
            })
            .collect();
        absorbed.sort();
        assert_eq!(absorbed, vec![80, 81]);
        assert!(!f.busy());
        // later SYN-ACKs of the host: absorbed at once
        assert_eq!(open(&mut f, &m, 22), vec![Action::Absorbed(22)]);
        assert_eq!(f.counts.canary_probes, 3);
        assert_eq!(f.counts.canary_hosts, 1);
        // not a canary's answer, not ours
        assert!(f.on_packet(&m, &answer(&m, 80, sa()), false, T0).is_none());
    }

    #[test]
    fn a_normal_host_costs_one_canary_its_rst() {
        let m = matcher();
        let mut f = FollowUp::new(true, false);
        assert_eq!(sent(&open(&mut f, &m, 80)), vec![49159]);
        let rst = TcpFlags::RST.union(TcpFlags::ACK);
        let out = f.on_packet(&m, &answer(&m, 49159, rst), false, T0).unwrap();
        // no more canaries: the host is released at once
        assert_eq!(out, vec![Action::Report(80, None)]);
        assert_eq!(open(&mut f, &m, 81), vec![Action::Report(81, None)]);
        assert!(!f.busy());
        assert!(f.retry_canaries(&m, 1).is_empty());
        assert!(f.close(1).is_empty());
        assert_eq!(f.counts.canary_probes, 1);
        assert_eq!(f.counts.canary_hosts, 1);
    }

    fn closed(f: &mut FollowUp<u16>, m: &ScanMatcher, port: u16) -> Vec<Action<u16>> {
        let rst = TcpFlags::RST.union(TcpFlags::ACK);
        answered(f, m, port, SynAnswer::Closed, rst)
    }

    #[test]
    fn a_closed_scanned_port_spares_the_canary() {
        let m = matcher();
        // its RST first: the SYN-ACKs after pass at once, no canary
        let mut f = FollowUp::new(true, false);
        assert_eq!(closed(&mut f, &m, 81), vec![Action::Report(81, None)]);
        assert_eq!(open(&mut f, &m, 80), vec![Action::Report(80, None)]);
        assert_eq!((f.counts.canary_probes, f.busy()), (0, false));
        // its RST while the canary is out: what was held is released
        let mut f = FollowUp::new(true, false);
        assert_eq!(sent(&open(&mut f, &m, 80)), vec![49159]);
        assert_eq!(
            closed(&mut f, &m, 81),
            vec![Action::Report(80, None), Action::Report(81, None)]
        );
        assert_eq!(open(&mut f, &m, 22), vec![Action::Report(22, None)]);
        // the canary's answer still comes (reset if a SYN-ACK), then nothing is left
        let rst = TcpFlags::RST.union(TcpFlags::ACK);
        assert!(
            f.on_packet(&m, &answer(&m, 49159, rst), false, T0)
                .is_some()
        );
        assert!(!f.busy());
        assert!(f.close(1).is_empty());
        assert_eq!(f.counts.canary_probes, 1);
    }

    #[test]
    fn a_syn_ack_then_an_rst_is_not_a_host_answering_every_port() {
        let m = matcher();
        let mut f = FollowUp::new(true, false);
        open(&mut f, &m, 80);
        let out = f
            .on_packet(&m, &answer(&m, 49159, sa()), false, T0)
            .unwrap();
        assert_eq!(sent(&out), vec![49159, 49160, 49161]);
        // the second canary is closed: a normal host, released at once
        let rst = TcpFlags::RST.union(TcpFlags::ACK);
        let out = f.on_packet(&m, &answer(&m, 49160, rst), false, T0).unwrap();
        assert_eq!(out, vec![Action::Report(80, None)]);
        // the third's late SYN-ACK is reset, changes nothing
        let out = f
            .on_packet(&m, &answer(&m, 49161, sa()), false, T0)
            .unwrap();
        assert_eq!(sent(&out), vec![49161]);
        assert!(!out.iter().any(|a| matches!(a, Action::EveryPort(_))));
        assert_eq!(open(&mut f, &m, 81), vec![Action::Report(81, None)]);
        assert!(f.close(1).is_empty());
        assert_eq!(f.counts.canary_probes, 3);
    }

    #[test]
    fn unanswered_canaries_are_retried_once_then_the_close_decides() {
        let m = matcher();
        // the first canary silent: only it is retried; still silent, a
        // normal host at the close
        let mut f = FollowUp::new(true, false);
        open(&mut f, &m, 80);
        assert_eq!(sent(&f.retry_canaries(&m, 1)), vec![49159]);
        assert!(f.retry_canaries(&m, 1).is_empty(), "one retry only");
        assert!(f.busy());
        assert_eq!(f.close(1), vec![Action::Report(80, None)]);
        assert_eq!(f.counts.canary_probes, 2);

        // the retry answers SYN-ACK: the other two go out then
        let mut f = FollowUp::new(true, false);
        open(&mut f, &m, 80);
        f.retry_canaries(&m, 1);
        let out = f
            .on_packet(&m, &answer(&m, 49159, sa()), false, T0)
            .unwrap();
        assert_eq!(sent(&out), vec![49159, 49160, 49161]);
        assert_eq!(f.counts.canary_probes, 4);

        // two of three answer SYN-ACK, the third silent after its retry:
        // not every port
        let mut f = FollowUp::new(true, false);
        open(&mut f, &m, 80);
        for p in [49159, 49160] {
            f.on_packet(&m, &answer(&m, p, sa()), false, T0).unwrap();
        }
        assert_eq!(sent(&f.retry_canaries(&m, 1)), vec![49161]);
        assert!(f.busy());
        assert_eq!(f.close(1), vec![Action::Report(80, None)]);
        assert_eq!(f.counts.canary_probes, 4);
    }

    #[test]
    fn closed_ports_pass_at_once_without_verify_and_nothing_is_held_when_off() {
        let m = matcher();
        let mut f = FollowUp::new(true, false);
        assert_eq!(closed(&mut f, &m, 22), vec![Action::Report(22, None)]);
        assert_eq!(f.counts.canary_probes, 0, "closed-only hosts cost nothing");
        let mut off = FollowUp::new(false, false);
        assert_eq!(open(&mut off, &m, 80), vec![Action::Report(80, None)]);
        assert!(!off.busy());
    }

    #[test]
    fn verify_completes_the_handshake_and_resets_it_after_the_check() {
        let m = matcher();
        let mut f = FollowUp::new(false, true);
        let a = open(&mut f, &m, 80);
        // the ACK and the probe, to port 80; the result waits for the check
        assert_eq!(sent(&a), vec![80, 80]);
        assert!(f.busy());
        assert_eq!(f.next_deadline(), Some(T0 + verify::VERIFY_MIN_WAIT));
        // the server's ACK to the probe: same TTL, a window, no SYN
        let later = answer(&m, 80, TcpFlags::ACK);
        assert_eq!(f.on_packet(&m, &later, false, T0), Some(Vec::new()));
        assert!(f.on_time(T0, 1).is_empty());
        let out = f.on_time(T0 + verify::VERIFY_MIN_WAIT, 1);
        assert_eq!(sent(&out), vec![80]);
        match &out[1] {
            Action::Report(80, Some(c)) => assert_eq!(c.text(), "verified"),
            a => panic!("{a:?}"),
        }
        assert!(!f.busy());
        assert_eq!(f.counts.handshakes, 1);
    }

    #[test]
    fn with_verify_the_one_canary_rst_is_what_closed_ports_are_checked_against() {
        let m = matcher();
        let host: IpAddr = HOST.parse().unwrap();
        let mut f = FollowUp::new(true, true);
        let rst = TcpFlags::RST.union(TcpFlags::ACK);
        let closed = |f: &mut FollowUp<u16>, port: u16, ttl: u8| {
            f.on_answer(
                &m,
                port,
                (host, port, &SynAnswer::Closed),
                &answer_ttl(&m, port, rst, ttl),
                T0,
                Duration::ZERO,
                T0,
                draws(),
            )
        };
        // a closed port: one canary, the RST held until it is judged
        let a = closed(&mut f, 22, 62);
        assert_eq!(sent(&a), vec![49159]);
        assert!(!a.iter().any(|a| matches!(a, Action::Report(..))));
        // the canary's RST (TTL 61): the host's own; the held RST (62) differs
        let out = f.on_packet(&m, &answer(&m, 49159, rst), false, T0).unwrap();
        match &out[..] {
            [Action::Report(22, Some(c))] => {
                assert_eq!(c.text(), "rst not from the host?: rst ttl 62, host 61")
            }
            a => panic!("{a:?}"),
        }
        // a later RST with the host's TTL passes unremarked
        assert_eq!(closed(&mut f, 81, 61), vec![Action::Report(81, None)]);
        assert_eq!(f.counts.canary_probes, 1);
    }
}
