//! The contract every probe state machine keeps, so that one drive loop (in the
//! `synscope` crate) runs them all, over the real network or a simulated one.
//!
//! A machine is sans-IO: it is handed each captured packet with the kernel's
//! stamp ([`Machine::on_packet`]), its timers are run at an explicit instant
//! ([`Machine::poll`]) and it says when it next needs that
//! ([`Machine::poll_at`]). What it wants done in the world (send a datagram,
//! hold a source port, report a finished probe) it asks of a [`Context`],
//! which the drive loop implements; randomness comes from the context too, so
//! a seeded context makes a whole run exact.
//!
//! Flow matching is the machine's job: the drive loop hands it every packet
//! the capture delivered, and the machine ignores those not of its flows.

use crate::event::{Direction, Timestamp};
use crate::wire::MacAddr;
use std::net::IpAddr;
use std::time::Duration;

/// What a link's own reader thread already made of a packet (bulk DNS
/// parses its answers off the drive loop's thread), for the machine that
/// knows the type to take it; empty for most links.
pub type PreRead = std::cell::Cell<Option<Box<dyn std::any::Any + Send>>>;

/// One captured packet, starting at its IP header, as a machine sees it.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    /// The datagram, from its IP header.
    pub data: &'a [u8],
    /// Ours leaving (for the kernel's send stamp) or an answer arriving.
    pub direction: Direction,
    /// The kernel's stamp.
    pub at: Timestamp,
    /// The transport checksum was left to the hardware (veth, lo): not checked.
    pub offloaded: bool,
    /// What the link's reader already read of it, if it reads ahead (a
    /// machine may take it instead of reading `data` again).
    pub read: Option<&'a PreRead>,
}

impl std::fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("data", &self.data)
            .field("direction", &self.direction)
            .field("at", &self.at)
            .field("offloaded", &self.offloaded)
            .finish_non_exhaustive()
    }
}

/// One link-layer frame for an interface (an ARP request, a Neighbor
/// Solicitation): what a machine that works below IP hands the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The interface it leaves by.
    pub ifindex: u32,
    /// Its EtherType (0x0806 ARP, 0x86dd IPv6).
    pub ethertype: u16,
    /// The Ethernet address it goes to.
    pub dst: MacAddr,
    /// The payload, from the network header on (the link adds Ethernet's).
    pub payload: Vec<u8>,
    /// The host it is about, for error messages.
    pub host: IpAddr,
}

/// What a machine may ask of the world while it handles a packet or a timer.
/// Sends and reports are carried out after the call returns, in order.
pub trait Context<E> {
    /// Sends one IP datagram (header included) to `dst`.
    fn send(&mut self, dst: IpAddr, datagram: Vec<u8>);
    /// [`Context::send`], and the link keeps when the datagram actually
    /// left under `tag` ([`Context::left_at`]): a link whose sender thread
    /// may lag behind the machine's clock times each send itself.
    fn send_tagged(&mut self, dst: IpAddr, datagram: Vec<u8>, tag: u64) {
        let _ = tag;
        self.send(dst, datagram)
    }
    /// When the datagram sent with `tag` (a recent one) left; None when the
    /// link does not know (it sends at once: when it was handed over).
    fn left_at(&mut self, tag: u64) -> Option<Timestamp> {
        let _ = tag;
        None
    }
    /// Sends one link-layer frame (a link that sends only IP datagrams
    /// fails the run when the call returns).
    fn send_frame(&mut self, frame: Frame);
    /// Hands a finished result to the reporter.
    fn report(&mut self, event: E);
    /// A local source port no local socket may take until it is released.
    /// None when none can be had: with `may_wait` because ports ran out (the
    /// caller's own outstanding probes will free some); otherwise the run
    /// fails with the reason once the call returns.
    fn reserve_port(&mut self, may_wait: bool) -> Option<u16>;
    /// Gives back a port from [`Context::reserve_port`].
    fn release_port(&mut self, port: u16);
    /// Randomness (ISNs, IP identifiers): seeded in simulations.
    fn random(&mut self) -> u32;
    /// Times the link's send queue was full (back-pressure) since the last
    /// call: a machine that paces its sends slows down.
    fn send_stalls(&mut self) -> u64 {
        0
    }
    /// Every datagram handed over before this instant has left; None: every
    /// one has (a link that sends at once). A link with a sender thread
    /// behind the loop says how far behind.
    fn sent_through(&mut self) -> Option<Timestamp> {
        None
    }
    /// Packets the capture dropped (its buffer full) since the last call:
    /// the reader cannot keep up.
    fn capture_drops(&mut self) -> u64 {
        0
    }
    /// Shows (`on`) or stops showing the TCP resets leaving from a scan's
    /// port, as outgoing packets: a scan learns whether the kernel resets
    /// its SYN-ACKs ([`crate::scan::reset`]). False: the link cannot.
    fn watch_resets(&mut self, on: bool) -> bool {
        let _ = on;
        false
    }
}

/// Why a machine is told to stop before it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The user asked (Ctrl-C): end now, reset what is open, report nothing more.
    Interrupted,
    /// The run outlived [`Machine::bound`] on the monotonic clock (the capture
    /// clock jumped, or the peer kept it alive): end with what is known.
    Bound,
}

/// The one contract of every probe state machine.
pub trait Machine {
    /// What the machine reports as it goes (a finished probe, a notice).
    type Event;
    /// One captured packet (of any flow) with its kernel stamp.
    fn on_packet(&mut self, packet: &Packet<'_>, cx: &mut dyn Context<Self::Event>);
    /// Runs what is due at `now`. The drive loop calls it only once every
    /// packet the capture queued before `now` was handed to
    /// [`Machine::on_packet`], so silence up to `now` is real.
    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<Self::Event>);
    /// When [`Machine::poll`] next has something to do (None: only a packet can
    /// move the machine, or it is done).
    fn poll_at(&self) -> Option<Timestamp>;
    /// Nothing more to send or wait for.
    fn is_done(&self) -> bool;
    /// Ends the run early (see [`Stop`]); the machine is done afterwards, or
    /// soon after (a last timer).
    fn stop(&mut self, why: Stop, now: Timestamp, cx: &mut dyn Context<Self::Event>);
    /// How long the whole run may last on the monotonic clock, at most.
    fn bound(&self) -> Option<Duration> {
        None
    }
    /// How long to keep reading packets once done, for the kernel's stamps
    /// of the last segments sent (or, a scan cut short, to reset the
    /// SYN-ACKs still on their way).
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
    /// Does what the machine sends while lingering go out? (Not by default:
    /// done means nothing more goes out.)
    fn sends_while_lingering(&self) -> bool {
        false
    }
}

/// How long after a deadline a probe is expired: a reply the kernel stamped
/// just before it may still be on its way into the capture queue (another
/// CPU's receive path stamps a packet a few µs before it queues it).
pub const SETTLE: Duration = Duration::from_millis(1);

/// `now` less [`SETTLE`]: the instant up to which silence is certain.
pub fn settled(now: Timestamp) -> Timestamp {
    Timestamp(now.0.saturating_sub(SETTLE.as_nanos() as u64))
}

/// A [`Context`] that records everything, for tests of one machine: ports
/// count up from `next_port`, randomness is a seeded SplitMix64.
#[derive(Debug)]
pub struct Recorder<E> {
    /// Every datagram sent, with its destination.
    pub sent: Vec<(IpAddr, Vec<u8>)>,
    /// Every link-layer frame sent.
    pub frames: Vec<Frame>,
    /// Every event reported.
    pub events: Vec<E>,
    /// The ports held now.
    pub held: std::collections::BTreeSet<u16>,
    /// The next port handed out.
    pub next_port: u16,
    /// The most ports that may be held at once.
    pub port_limit: usize,
    /// Where [`Context::random`] comes from.
    pub rng: SplitMix64,
}

impl<E> Recorder<E> {
    /// An empty recorder; ports from 40000, randomness seeded by `seed`.
    pub fn new(seed: u64) -> Recorder<E> {
        Recorder {
            sent: Vec::new(),
            frames: Vec::new(),
            events: Vec::new(),
            held: Default::default(),
            next_port: 40000,
            port_limit: usize::MAX,
            rng: SplitMix64(seed),
        }
    }
}

impl<E> Context<E> for Recorder<E> {
    fn send(&mut self, dst: IpAddr, datagram: Vec<u8>) {
        self.sent.push((dst, datagram));
    }
    fn send_frame(&mut self, frame: Frame) {
        self.frames.push(frame);
    }
    fn report(&mut self, event: E) {
        self.events.push(event);
    }
    fn reserve_port(&mut self, _may_wait: bool) -> Option<u16> {
        if self.held.len() >= self.port_limit {
            return None;
        }
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(1024);
            if self.held.insert(p) {
                return Some(p);
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

/// A tiny seeded generator (SplitMix64): exact, repeatable randomness for
/// simulations and tests, without a dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `p` (0.0..=1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}
