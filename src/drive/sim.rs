//! A simulated network for the drive loop: a scripted peer behind a path that
//! loses, delays, duplicates and reorders packets, on a simulated clock that
//! jumps to the next event. Deterministic (every choice comes from a seed or
//! a script) and needs no privileges, so the command loops run in plain
//! `cargo test`.
//!
//! It is a discrete-event simulation: each datagram we send is stamped
//! leaving (as the real capture sees our own packets), reaches the peer after
//! the forward path's delay, and the peer's answers come back over the
//! return path. Built with the `sim` feature (and in tests).

use crate::event::{Direction, Timestamp};
use crate::io::{Captured, Clock, IoError, Link};
use crate::probe::machine::SplitMix64;
use crate::wire::{
    Datagram, IcmpRepr, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The simulated clock, shared by the link and the drive loop: it stands
/// still until the link jumps it to its next event (or the deadline asked).
#[derive(Debug, Clone)]
pub struct SimClock {
    now: Arc<AtomicU64>,
    start: u64,
    /// A simulated Ctrl-C's instant: the clock stops there on its way.
    alarm: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock that reads `t` until a link moves it.
    pub fn starting_at(t: Timestamp) -> SimClock {
        SimClock {
            now: Arc::new(AtomicU64::new(t.0)),
            start: t.0,
            alarm: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
    /// `until`, or the alarm if it comes first.
    fn stop_for_alarm(&self, until: Timestamp) -> Timestamp {
        let alarm = Timestamp(self.alarm.load(Ordering::Relaxed));
        if alarm > self.now() {
            until.min(alarm)
        } else {
            until
        }
    }
    fn advance_to(&self, t: Timestamp) {
        self.now.fetch_max(t.0, Ordering::Relaxed);
    }
}

impl SimClock {
    /// An interrupt (a simulated Ctrl-C) that fires once this clock reads `at`.
    pub fn interrupt_at(&self, at: Timestamp) -> crate::cmd::Interrupt<'static> {
        self.alarm.fetch_min(at.0, Ordering::Relaxed);
        let clock = self.clone();
        crate::cmd::Interrupt::when(std::future::poll_fn(move |cx| {
            if clock.now() >= at {
                std::task::Poll::Ready(())
            } else {
                // the drive loop polls it again every turn
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }))
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::Relaxed))
    }
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now.load(Ordering::Relaxed) - self.start)
    }
}

/// Which way a packet crosses the simulated path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// From us to the peer.
    Out,
    /// From the peer to us.
    Back,
}

/// What the path does to each packet: the delays after which its copies
/// arrive (none: lost; two: duplicated). `n` counts the packets on that leg
/// from 0.
pub type Path = Box<dyn FnMut(Leg, u64, &[u8]) -> Vec<Duration>>;

/// A path with a fixed one-way delay, and per packet: loss, duplication and
/// up to `jitter` more delay (which reorders packets sent closer than it),
/// drawn from `seed`.
pub fn random_path(
    seed: u64,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    duplicate: f64,
) -> Path {
    let mut rng = SplitMix64(seed);
    Box::new(move |_, _, _| {
        if rng.chance(loss) {
            return Vec::new();
        }
        let one = |rng: &mut SplitMix64| {
            delay + Duration::from_nanos(rng.below(jitter.as_nanos() as u64 + 1))
        };
        let mut out = vec![one(&mut rng)];
        if rng.chance(duplicate) {
            out.push(one(&mut rng));
        }
        out
    })
}

/// A perfect path with a fixed one-way delay.
pub fn clean_path(delay: Duration) -> Path {
    Box::new(move |_, _, _| vec![delay])
}

/// The far end: what it sends back for a datagram arriving at `at`, each
/// answer after its own extra delay (a server's think time, a later FIN).
pub trait Peer {
    /// The datagrams sent back for `datagram` arriving at `at`, each with its delay after `at`.
    fn on_datagram(&mut self, at: Timestamp, datagram: &[u8]) -> Vec<(Duration, Vec<u8>)>;
}

#[derive(Debug)]
enum Event {
    ToPeer(Vec<u8>),
    ToUs(Direction, Vec<u8>),
}

/// The simulated link: implements [`Link`] like the real capture does.
pub struct SimLink<P> {
    clock: SimClock,
    /// The far end, open for the test to inspect (what it saw, what it counted).
    pub peer: P,
    path: Path,
    queue: BTreeMap<(Timestamp, u64), Event>,
    order: u64,
    legs: [u64; 2],
    rng: SplitMix64,
    held: BTreeSet<u16>,
    next_port: u16,
    /// The most ports held at once (then reserving fails as exhaustion).
    pub port_limit: usize,
    /// Every datagram we sent, with the instant.
    pub sent: Vec<(Timestamp, Vec<u8>)>,
    /// Every packet handed to us, with its stamp and direction.
    pub delivered: Vec<(Timestamp, Direction)>,
    /// How long after it is handed over a datagram leaves (a sender thread
    /// behind the loop), from `lag_from` on; zero by default.
    pub send_lag: Duration,
    /// When the sends start to lag.
    pub lag_from: Timestamp,
    /// When each tagged datagram left.
    left: BTreeMap<u64, Timestamp>,
    /// Hand-over instants of datagrams not yet left, with when they leave.
    in_flight: std::collections::VecDeque<(Timestamp, Timestamp)>,
    /// Our kernel answers each SYN-ACK that reaches us with an RST (as
    /// Linux does when no socket owns the connection): it leaves, seen
    /// only while the resets are watched, and crosses to the peer.
    pub kernel_resets: bool,
    /// The link can show the resets leaving ([`Link::watch_resets`]).
    pub shows_resets: bool,
    /// The resets leaving are shown now.
    pub watching: bool,
    /// RSTs our kernel sent.
    pub kernel_rsts: u64,
}

/// How long after the send call the kernel stamps our packet leaving.
pub const TX_STAMP_DELAY: Duration = Duration::from_micros(5);

impl<P: Peer> SimLink<P> {
    /// A link to `peer` over `path` on `clock`; `seed` seeds the link's
    /// random numbers ([`Link::random`]).
    pub fn new(clock: &SimClock, peer: P, path: Path, seed: u64) -> SimLink<P> {
        SimLink {
            clock: clock.clone(),
            peer,
            path,
            queue: BTreeMap::new(),
            order: 0,
            legs: [0; 2],
            rng: SplitMix64(seed),
            held: BTreeSet::new(),
            next_port: 40000,
            port_limit: usize::MAX,
            sent: Vec::new(),
            delivered: Vec::new(),
            send_lag: Duration::ZERO,
            lag_from: Timestamp(0),
            left: BTreeMap::new(),
            in_flight: Default::default(),
            kernel_resets: false,
            shows_resets: false,
            watching: false,
            kernel_rsts: 0,
        }
    }

    /// The send lag now.
    fn lag(&self) -> Duration {
        if self.clock.now() >= self.lag_from {
            self.send_lag
        } else {
            Duration::ZERO
        }
    }

    /// Source ports held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn push(&mut self, at: Timestamp, e: Event) {
        self.order += 1;
        self.queue.insert((at, self.order), e);
    }

    fn cross(&mut self, leg: Leg, at: Timestamp, d: Vec<u8>) {
        let i = leg as usize;
        let n = self.legs[i];
        self.legs[i] += 1;
        for delay in (self.path)(leg, n, &d) {
            let e = match leg {
                Leg::Out => Event::ToPeer(d.clone()),
                Leg::Back => Event::ToUs(Direction::Incoming, d.clone()),
            };
            self.push(at + delay, e);
        }
    }

    /// Our kernel's RST to a SYN-ACK that reached us at `at`.
    fn kernel_reset(&mut self, at: Timestamp, d: &[u8]) {
        let Some((ip, t)) = parse_tcp(d) else { return };
        if t.flags != TcpFlags::SYN.union(TcpFlags::ACK) {
            return;
        }
        let rst = TcpRepr {
            src_port: t.dst_port,
            dst_port: t.src_port,
            seq: t.ack,
            flags: TcpFlags::RST,
            ..TcpRepr::default()
        };
        let rst = tcp_datagram(ip.dst, ip.src, &rst);
        let left = at + Duration::from_micros(1);
        self.kernel_rsts += 1;
        if self.watching {
            self.push(left, Event::ToUs(Direction::Outgoing, rst.clone()));
        }
        self.cross(Leg::Out, left, rst);
    }

    /// The next packet for us due by `until`, running the peer on the way.
    fn next_by(&mut self, until: Timestamp) -> Option<Captured> {
        while let Some(entry) = self.queue.first_entry() {
            let at = entry.key().0;
            if at > until {
                break;
            }
            self.clock.advance_to(at);
            match entry.remove() {
                Event::ToPeer(d) => {
                    for (think, answer) in self.peer.on_datagram(at, &d) {
                        self.cross(Leg::Back, at + think, answer);
                    }
                }
                Event::ToUs(direction, data) => {
                    if direction == Direction::Incoming && self.kernel_resets {
                        self.kernel_reset(at, &data);
                    }
                    self.delivered.push((at, direction));
                    return Some(Captured {
                        data,
                        timestamp: at,
                        direction,
                        checksum_offloaded: false,
                        ifindex: 1,
                    });
                }
            }
        }
        None
    }
}

impl<P: Peer> Link for SimLink<P> {
    fn send(&mut self, _dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        let handed = self.clock.now();
        let now = handed + self.lag();
        if now > handed {
            self.in_flight.push_back((handed, now));
        }
        self.sent.push((now, datagram.to_vec()));
        let left = now + TX_STAMP_DELAY;
        self.push(left, Event::ToUs(Direction::Outgoing, datagram.to_vec()));
        self.cross(Leg::Out, left, datagram.to_vec());
        Ok(())
    }

    fn send_many(&mut self, datagrams: &mut Vec<crate::io::Outgoing>) -> Result<(), IoError> {
        for o in datagrams.drain(..) {
            self.send(o.dst, &o.datagram)?;
            if let Some(tag) = o.tag {
                self.left.insert(tag, self.clock.now() + self.lag());
            }
        }
        Ok(())
    }

    fn send_frames(
        &mut self,
        frames: &mut Vec<crate::probe::machine::Frame>,
    ) -> Result<(), IoError> {
        // a frame crosses the path as a datagram does: its payload, stamped
        // leaving, then to the peer (which answers ARP / ND as it likes)
        for f in frames.drain(..) {
            self.send(f.host, &f.payload)?;
        }
        Ok(())
    }

    fn watch_resets(&mut self, on: bool) -> bool {
        self.watching = on && self.shows_resets;
        self.shows_resets
    }

    fn left_at(&mut self, tag: u64) -> Option<Timestamp> {
        // as the real link: only when the send lags
        self.left
            .get(&tag)
            .copied()
            .filter(|_| !self.send_lag.is_zero())
    }

    fn sent_through(&mut self) -> Option<Timestamp> {
        let now = self.clock.now();
        while self.in_flight.front().is_some_and(|f| f.1 <= now) {
            self.in_flight.pop_front();
        }
        self.in_flight.front().map(|f| f.0)
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        let until = self.clock.stop_for_alarm(until);
        let p = self.next_by(until);
        if p.is_none() {
            self.clock.advance_to(until);
        }
        Ok(p)
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        Ok(self.next_by(self.clock.now()))
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        if self.held.len() >= self.port_limit {
            return Err(IoError::Port {
                addr: IpAddr::from([198, 18, 0, 1]),
                port: 0,
                source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
            });
        }
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(1024);
            if self.held.insert(p) {
                return Ok(p);
            }
        }
    }

    fn release_port(&mut self, port: u16) {
        self.held.remove(&port);
    }

    fn random(&mut self) -> u32 {
        self.rng.next_u64() as u32
    }
}

/// An IP datagram from `src` to `dst` carrying `tcp`.
pub fn tcp_datagram(src: IpAddr, dst: IpAddr, tcp: &TcpRepr) -> Vec<u8> {
    ip_header(src, dst, Protocol::TCP).emit(&tcp.emit(src, dst))
}

/// An IP datagram from `src` to `dst` carrying `udp`.
pub fn udp_datagram(src: IpAddr, dst: IpAddr, udp: &crate::wire::UdpRepr) -> Vec<u8> {
    ip_header(src, dst, Protocol::UDP).emit(&udp.emit(src, dst))
}

/// The header of a simulated peer's datagram (TTL 64, no ID, no fragments).
fn ip_header(src: IpAddr, dst: IpAddr, protocol: u8) -> IpRepr {
    IpRepr {
        src,
        dst,
        protocol,
        ttl: 64,
        ident: 0,
        later_fragment: false,
        flow_label: 0,
    }
}

/// An ICMP error from `from` about `original` (sent by `to`).
pub fn icmp_datagram(
    from: IpAddr,
    to: IpAddr,
    icmp_type: u8,
    code: u8,
    original: &[u8],
) -> Vec<u8> {
    let protocol = if from.is_ipv6() {
        Protocol::ICMPV6
    } else {
        Protocol::ICMP
    };
    ip_header(from, to, protocol).emit(&IcmpRepr::emit_error(icmp_type, code, original, from, to))
}

fn parse_tcp(d: &[u8]) -> Option<(IpRepr, TcpRepr)> {
    let p = Datagram::parse(d).ok()?;
    match p.transport {
        Transport::Tcp(t) => Some((p.ip, t)),
        _ => None,
    }
}

/// How a [`SynPeer`] port answers a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortIs {
    /// Answers SYN-ACK.
    Open,
    /// Answers RST.
    Closed,
    /// An ICMP administratively-prohibited error.
    Prohibited,
    /// Answers nothing.
    Silent,
}

/// A host answering SYNs by port, after `think`; the unlisted ports answer
/// as `others` (closed unless set).
#[derive(Debug, Clone)]
pub struct SynPeer {
    /// Each listed port's answer.
    pub ports: BTreeMap<u16, PortIs>,
    /// How every other port answers (Closed; Open for a tarpit).
    pub others: PortIs,
    /// Delay between a SYN's arrival and the answer (20 µs by default).
    pub think: Duration,
    /// SYNs that reached it.
    pub syns: u64,
}

impl SynPeer {
    /// A host with the listed ports, the others closed.
    pub fn new(ports: &[(u16, PortIs)]) -> SynPeer {
        SynPeer {
            ports: ports.iter().copied().collect(),
            others: PortIs::Closed,
            think: Duration::from_micros(20),
            syns: 0,
        }
    }

    /// A host that answers every port with a SYN-ACK (a tarpit, a proxy).
    pub fn tarpit() -> SynPeer {
        SynPeer {
            others: PortIs::Open,
            ..SynPeer::new(&[])
        }
    }
}

/// Many hosts behind one path, each answering as its [`SynPeer`] does; an
/// address not listed is not there (silent).
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Each host's behaviour.
    pub hosts: BTreeMap<IpAddr, SynPeer>,
}

impl Peer for Hosts {
    fn on_datagram(&mut self, at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Ok((ip, _)) = IpRepr::parse(d) else {
            return Vec::new();
        };
        match self.hosts.get_mut(&ip.dst) {
            Some(h) => h.on_datagram(at, d),
            None => Vec::new(),
        }
    }
}

/// A policer in front of a peer: SYNs above `rate` per second (a token
/// bucket of `burst`) are dropped; other packets pass.
#[derive(Debug, Clone)]
pub struct Policer<P> {
    /// What is behind it.
    pub inner: P,
    /// SYNs per second let through.
    pub rate: f64,
    /// The bucket's size (SYNs).
    pub burst: f64,
    tokens: f64,
    last: Option<Timestamp>,
    /// SYNs dropped.
    pub dropped: u64,
    /// SYNs let through.
    pub passed: u64,
}

impl<P> Policer<P> {
    /// A policer of `rate` SYNs/s with a bucket of `burst`, in front of `inner`.
    pub fn new(inner: P, rate: f64, burst: f64) -> Policer<P> {
        Policer {
            inner,
            rate,
            burst,
            tokens: burst,
            last: None,
            dropped: 0,
            passed: 0,
        }
    }
}

impl<P: Peer> Peer for Policer<P> {
    fn on_datagram(&mut self, at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let syn = parse_tcp(d).is_some_and(|(_, t)| t.flags == TcpFlags::SYN);
        if syn {
            let since = self.last.map_or(Duration::ZERO, |l| at.saturating_sub(l));
            self.last = Some(at);
            self.tokens = (self.tokens + since.as_secs_f64() * self.rate).min(self.burst);
            if self.tokens < 1.0 {
                self.dropped += 1;
                return Vec::new();
            }
            self.tokens -= 1.0;
            self.passed += 1;
        }
        self.inner.on_datagram(at, d)
    }
}

impl Peer for SynPeer {
    fn on_datagram(&mut self, _at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Some((ip, t)) = parse_tcp(d) else {
            return Vec::new();
        };
        if t.flags != TcpFlags::SYN {
            return Vec::new();
        }
        self.syns += 1;
        let answer = |flags, seq| TcpRepr {
            src_port: t.dst_port,
            dst_port: t.src_port,
            seq,
            ack: t.seq + 1,
            flags,
            window: 65160,
            options: TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        };
        let out = match self.ports.get(&t.dst_port).copied().unwrap_or(self.others) {
            PortIs::Open => tcp_datagram(
                ip.dst,
                ip.src,
                &answer(TcpFlags::SYN.union(TcpFlags::ACK), SeqNumber(0x5000_0000)),
            ),
            PortIs::Closed => tcp_datagram(
                ip.dst,
                ip.src,
                &TcpRepr {
                    options: TcpOptions::default(),
                    window: 0,
                    ..answer(TcpFlags::RST.union(TcpFlags::ACK), SeqNumber(0))
                },
            ),
            PortIs::Prohibited => icmp_datagram(ip.dst, ip.src, 3, 13, d),
            PortIs::Silent => return Vec::new(),
        };
        vec![(self.think, out)]
    }
}

/// How a [`TcpPeer`] ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// We close first: our FIN is acknowledged, the peer's FIN follows apart.
    Normal,
    /// We close first and the peer acknowledges our FIN with its own (FIN+ACK).
    MergedFinAck,
    /// The peer answers the request and closes first (its FIN after the data).
    PeerClosesFirst,
    /// The peer answers the request with an RST.
    Rst,
}

/// A TCP server playing one connection to its end: SYN-ACK, an ACK and a
/// response for the request, and the chosen ending. It receives in order
/// only, and sends each of its data and FIN segments twice (the second
/// after `rto`), a retransmission that does not wait for a loss.
#[derive(Debug, Clone)]
pub struct TcpPeer {
    /// How the connection ends.
    pub ending: Ending,
    /// The bytes sent back for the request.
    pub response: Vec<u8>,
    /// Delay before each answer (30 µs by default).
    pub think: Duration,
    /// When its data and FIN segments go out again.
    pub rto: Duration,
    iss: SeqNumber,
    snd_nxt: SeqNumber,
    rcv_nxt: Option<SeqNumber>,
    fin_sent: bool,
}

impl TcpPeer {
    /// A server answering the request with `response` and ending as `ending`.
    pub fn new(ending: Ending, response: &[u8]) -> TcpPeer {
        TcpPeer {
            ending,
            response: response.to_vec(),
            think: Duration::from_micros(30),
            rto: Duration::from_millis(200),
            iss: SeqNumber(0x7000_0000),
            snd_nxt: SeqNumber(0x7000_0001),
            rcv_nxt: None,
            fin_sent: false,
        }
    }
}

impl Peer for TcpPeer {
    /// Each of its data and FIN segments goes out a second time after
    /// [`TcpPeer::rto`] (one retransmission, whether or not it was lost).
    fn on_datagram(&mut self, at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let mut out = self.answer(at, d);
        let again: Vec<(Duration, Vec<u8>)> = out
            .iter()
            .filter(|(_, b)| {
                parse_tcp(b)
                    .is_some_and(|(_, t)| !t.payload.is_empty() || t.flags.contains(TcpFlags::FIN))
            })
            .map(|(delay, b)| (*delay + self.rto, b.clone()))
            .collect();
        out.extend(again);
        out
    }
}

impl TcpPeer {
    fn answer(&mut self, _at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Some((ip, t)) = parse_tcp(d) else {
            return Vec::new();
        };
        let seg = |seq: SeqNumber, ack: SeqNumber, flags: TcpFlags, payload: Vec<u8>| {
            tcp_datagram(
                ip.dst,
                ip.src,
                &TcpRepr {
                    src_port: t.dst_port,
                    dst_port: t.src_port,
                    seq,
                    ack,
                    flags,
                    window: 65160,
                    payload,
                    ..TcpRepr::default()
                },
            )
        };
        let think = self.think;
        let f = t.flags;
        if f.contains(TcpFlags::RST) {
            return Vec::new();
        }
        if f.contains(TcpFlags::SYN) {
            // a new connection, or our SYN again: the same SYN-ACK
            self.rcv_nxt = Some(t.seq + 1);
            let synack = tcp_datagram(
                ip.dst,
                ip.src,
                &TcpRepr {
                    src_port: t.dst_port,
                    dst_port: t.src_port,
                    seq: self.iss,
                    ack: t.seq + 1,
                    flags: TcpFlags::SYN.union(TcpFlags::ACK),
                    window: 65160,
                    options: TcpOptions {
                        mss: Some(1460),
                        ..TcpOptions::default()
                    },
                    ..TcpRepr::default()
                },
            );
            return vec![(think, synack)];
        }
        let Some(rcv) = self.rcv_nxt else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let ack = TcpFlags::ACK;
        if !t.payload.is_empty() && t.seq == rcv {
            let rcv = rcv + t.payload.len() as u32;
            self.rcv_nxt = Some(rcv);
            if self.ending == Ending::Rst {
                out.push((think, seg(self.snd_nxt, rcv, TcpFlags::RST, Vec::new())));
                self.rcv_nxt = None;
                return out;
            }
            out.push((think, seg(self.snd_nxt, rcv, ack, Vec::new())));
            if !self.response.is_empty() {
                let data = self.response.clone();
                let n = data.len() as u32;
                out.push((
                    think * 2,
                    seg(self.snd_nxt, rcv, ack.union(TcpFlags::PSH), data),
                ));
                self.snd_nxt = self.snd_nxt + n;
            }
            if self.ending == Ending::PeerClosesFirst && !self.fin_sent {
                self.fin_sent = true;
                out.push((
                    think * 3,
                    seg(self.snd_nxt, rcv, ack.union(TcpFlags::FIN), Vec::new()),
                ));
                self.snd_nxt = self.snd_nxt + 1;
            }
            return out;
        }
        if t.seq != rcv && (f.contains(TcpFlags::FIN) || !t.payload.is_empty()) {
            // a retransmission of what it has, or a segment ahead of a gap:
            // acknowledge what it has (an in-order receiver keeps nothing ahead)
            out.push((think, seg(self.snd_nxt, rcv, ack, Vec::new())));
            return out;
        }
        if f.contains(TcpFlags::FIN) {
            let rcv = t.seq + t.payload.len() as u32 + 1;
            self.rcv_nxt = Some(rcv);
            if self.fin_sent {
                // our FIN crossed or followed theirs: acknowledge it
                out.push((think, seg(self.snd_nxt, rcv, ack, Vec::new())));
                return out;
            }
            self.fin_sent = true;
            match self.ending {
                Ending::MergedFinAck => {
                    out.push((
                        think,
                        seg(self.snd_nxt, rcv, ack.union(TcpFlags::FIN), Vec::new()),
                    ));
                }
                _ => {
                    out.push((think, seg(self.snd_nxt, rcv, ack, Vec::new())));
                    out.push((
                        think * 4,
                        seg(self.snd_nxt, rcv, ack.union(TcpFlags::FIN), Vec::new()),
                    ));
                }
            }
            self.snd_nxt = self.snd_nxt + 1;
        }
        out
    }
}

/// A chain of routers before the destination: a SYN whose TTL runs out at
/// hop `n` (1-based, n <= routers) gets ICMP time-exceeded from router n; one
/// that gets through reaches a destination answering as `dst` does.
#[derive(Debug, Clone)]
pub struct Routers {
    /// Each hop's address, the nearest first.
    pub routers: Vec<IpAddr>,
    /// How the destination answers.
    pub dst: SynPeer,
    /// Routers that drop time-exceeded errors silently (1-based hops).
    pub silent: BTreeSet<u8>,
    /// The extra delay of each hop on the way back: an answer from hop n comes n × `per_hop` after the datagram.
    pub per_hop: Duration,
}

impl Peer for Routers {
    fn on_datagram(&mut self, at: Timestamp, d: &[u8]) -> Vec<(Duration, Vec<u8>)> {
        let Ok((ip, _)) = IpRepr::parse(d) else {
            return Vec::new();
        };
        let hops = self.routers.len();
        if usize::from(ip.ttl) <= hops {
            let hop = ip.ttl;
            if hop == 0 || self.silent.contains(&hop) {
                return Vec::new();
            }
            let from = self.routers[usize::from(hop) - 1];
            let (t, c) = if from.is_ipv6() { (3, 0) } else { (11, 0) };
            let back = self.per_hop * u32::from(hop);
            return vec![(back, icmp_datagram(from, ip.src, t, c, d))];
        }
        let back = self.per_hop * (hops as u32 + 1);
        self.dst
            .on_datagram(at, d)
            .into_iter()
            .map(|(think, a)| (back + think, a))
            .collect()
    }
}
