//! `ping` as machines the drive loop runs: [`PingMachine`] sends SYN probes at
//! an interval (up to a window in flight, each from a source port of its own
//! or all from one fixed port) and, with `--verify`, completes and checks the
//! handshake of every open answer; [`CanaryMachine`] first probes a few random
//! closed ports so the check knows what the host's own answers look like.

use super::answer::SynAnswer;
pub use super::machine::SETTLE;
use super::machine::{Context, Machine, Packet, Stop};
use super::syn::{ProbeResult, SynPinger, SynProbeConfig};
use super::verify::{self, ProbeCheck, Verifier};
use crate::event::{Direction, Timestamp};
use crate::wire::SeqNumber;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Our timestamp clock for TSval: milliseconds.
pub fn tsval(t: Timestamp) -> u32 {
    (t.0 / 1_000_000) as u32
}

/// A whole ping run.
#[derive(Debug, Clone)]
pub struct PingConfig {
    /// How each SYN is built and how long it waits.
    pub probe: SynProbeConfig,
    /// From one probe to the next.
    pub interval: Duration,
    /// Probes to send (None: until stopped).
    pub count: Option<u64>,
    /// Every probe from this port (held by the caller): one in flight at a
    /// time, since a second SYN on the same four-tuple would meet the first
    /// one's half-open state at the peer (a bare ACK, not a SYN-ACK).
    pub fixed_port: Option<u16>,
    /// The most probes in flight at once (each holds a port).
    pub window: usize,
    /// How long the whole run may last on the monotonic clock (see
    /// [`Machine::bound`]); probes still out then are not counted.
    pub bound: Option<Duration>,
    /// How long after a deadline a probe is expired: [`SETTLE`] for a capture
    /// of our own, more when packets come through another task's hands.
    pub settle: Duration,
}

/// What a ping run reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingEvent {
    /// A probe went out.
    Sent {
        /// Its number, 0 for the first.
        seq: u64,
        /// Its source port.
        src_port: u16,
        /// Its initial sequence number.
        isn: SeqNumber,
    },
    /// A probe finished (unverified).
    Probe(ProbeResult),
    /// A probe finished, with `--verify`'s check of its answer.
    Checked(ProbeResult, Option<ProbeCheck>),
    /// The window is full while probes are due: they go out less often
    /// than asked (said once).
    WindowFull {
        /// Probes (and verifications) in flight.
        outstanding: usize,
    },
    /// Source ports ran out: the window shrank to what is in flight.
    WindowShrunk {
        /// The new window.
        window: usize,
    },
}

/// `--verify`'s state: the handshakes being checked, the probes whose
/// report waits for them.
#[derive(Debug)]
pub struct Verifying {
    verifier: Verifier,
    waiting: BTreeMap<u16, ProbeResult>,
    answers_every_port: bool,
}

impl Verifying {
    /// `answers_every_port`: every canary port answered SYN-ACK, so a SYN-ACK
    /// proves nothing.
    pub fn new(verifier: Verifier, answers_every_port: bool) -> Verifying {
        Verifying {
            verifier,
            waiting: BTreeMap::new(),
            answers_every_port,
        }
    }
}

/// The ping state machine.
#[derive(Debug)]
pub struct PingMachine {
    cfg: PingConfig,
    pinger: SynPinger,
    verify: Option<Verifying>,
    window: usize,
    window_said: bool,
    next_send: Option<Timestamp>,
    sent: u64,
    first_sent: Option<Timestamp>,
    last_sent: Option<Timestamp>,
    stopped: bool,
}

impl PingMachine {
    /// A run with nothing sent yet; `verify`: `--verify`'s state after the canaries.
    pub fn new(cfg: PingConfig, verify: Option<Verifying>) -> PingMachine {
        let window = if cfg.fixed_port.is_some() {
            1
        } else {
            cfg.window.max(1)
        };
        PingMachine {
            pinger: SynPinger::new(cfg.probe.clone()),
            cfg,
            verify,
            window,
            window_said: false,
            next_send: None,
            sent: 0,
            first_sent: None,
            last_sent: None,
            stopped: false,
        }
    }

    /// Every probe goes from one fixed port.
    pub fn fixed_port(&self) -> bool {
        self.cfg.fixed_port.is_some()
    }
    /// Probes sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }
    /// When the first and the last probe went out (user-space stamps).
    pub fn send_span(&self) -> Option<(Timestamp, Timestamp)> {
        self.first_sent.zip(self.last_sent)
    }
    /// The window was found full at least once.
    pub fn window_was_full(&self) -> bool {
        self.window_said
    }
    /// Ignored packets by reason.
    pub fn ignored(&self) -> &BTreeMap<super::Ignored, u64> {
        self.pinger.ignored()
    }

    fn more_to_send(&self) -> bool {
        !self.stopped && self.cfg.count.is_none_or(|c| self.sent < c)
    }

    /// Probes (or verifications) still under way.
    fn busy(&self) -> usize {
        self.pinger.outstanding() + self.verify.as_ref().map_or(0, |v| v.waiting.len())
    }

    fn release(&self, port: u16, cx: &mut dyn Context<PingEvent>) {
        if self.cfg.fixed_port.is_none() {
            cx.release_port(port);
        }
    }

    /// Ends the verifications due by `now`: RST each, report its probe.
    fn verify_due(&mut self, now: Timestamp, cx: &mut dyn Context<PingEvent>) {
        let dst = self.cfg.probe.dst.ip();
        let Some(v) = self.verify.as_mut() else {
            return;
        };
        for done in v.verifier.on_time(now, tsval(now)) {
            cx.send(dst, done.rst);
            if self.cfg.fixed_port.is_none() {
                cx.release_port(done.src_port);
            }
            let Some(r) = v.waiting.remove(&done.src_port) else {
                continue;
            };
            let check = if v.answers_every_port {
                ProbeCheck::AnswersEveryPort
            } else {
                done.check
            };
            cx.report(PingEvent::Checked(r, Some(check)));
        }
    }

    fn send_probe(&mut self, now: Timestamp, cx: &mut dyn Context<PingEvent>) {
        let outstanding = self.busy();
        let port = match self.cfg.fixed_port {
            Some(p) => p,
            None => match cx.reserve_port(outstanding > 0) {
                Some(p) => p,
                // ports or files used up by others: wait for ours to free
                None => {
                    if outstanding > 0 {
                        self.window = outstanding;
                        cx.report(PingEvent::WindowShrunk {
                            window: self.window,
                        });
                    }
                    return;
                }
            },
        };
        let isn = SeqNumber(cx.random());
        let ident = cx.random() as u16;
        let seq = self.sent;
        let (key, bytes) = self.pinger.probe(now, port, isn, ident, tsval(now));
        cx.send(self.cfg.probe.dst.ip(), bytes);
        cx.report(PingEvent::Sent {
            seq,
            src_port: key.src_port,
            isn: key.isn,
        });
        self.first_sent.get_or_insert(now);
        self.last_sent = Some(now);
        self.sent += 1;
        let next = self.next_send.unwrap_or(now) + self.cfg.interval;
        // after a stall, do not fire a burst to catch up
        self.next_send = Some(if next < now {
            now + self.cfg.interval
        } else {
            next
        });
    }
}

impl Machine for PingMachine {
    type Event = PingEvent;

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<PingEvent>) {
        if let Some(v) = self.verify.as_mut()
            && p.direction == Direction::Incoming
            && v.verifier.on_packet(p.data, p.at)
        {
            return;
        }
        let Some(r) = self
            .pinger
            .on_packet(p.data, p.direction, p.at, p.offloaded)
        else {
            return;
        };
        let dst = self.cfg.probe.dst.ip();
        let fixed = self.cfg.fixed_port.is_some();
        let Some(v) = self.verify.as_mut() else {
            self.release(r.src_port, cx);
            return cx.report(PingEvent::Probe(r));
        };
        match r.verdict {
            SynAnswer::Open => {
                let segs = v.verifier.start(
                    r.src_port,
                    r.isn,
                    p.data,
                    p.at,
                    r.rtt.unwrap_or_default(),
                    tsval(p.at),
                );
                let none = segs.is_empty();
                for d in segs {
                    cx.send(dst, d);
                }
                if none {
                    if !fixed {
                        cx.release_port(r.src_port);
                    }
                    cx.report(PingEvent::Probe(r));
                } else {
                    // the port stays held until the RST
                    v.waiting.insert(r.src_port, r);
                }
            }
            SynAnswer::Closed => {
                if !fixed {
                    cx.release_port(r.src_port);
                }
                let check = v.verifier.check_rst(p.data, p.at);
                cx.report(PingEvent::Checked(r, check));
            }
            _ => {
                if !fixed {
                    cx.release_port(r.src_port);
                }
                cx.report(PingEvent::Probe(r));
            }
        }
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<PingEvent>) {
        if self.stopped {
            return;
        }
        let settled = Timestamp(now.0.saturating_sub(self.cfg.settle.as_nanos() as u64));
        for r in self.pinger.on_time(settled) {
            self.release(r.src_port, cx);
            cx.report(PingEvent::Probe(r));
        }
        self.verify_due(settled, cx);
        if !self.more_to_send() {
            return;
        }
        let due = self.next_send.is_none_or(|t| now >= t);
        let outstanding = self.busy();
        if outstanding >= self.window && due && !self.window_said {
            self.window_said = true;
            cx.report(PingEvent::WindowFull { outstanding });
        }
        if outstanding < self.window && due {
            self.send_probe(now, cx);
        }
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.stopped {
            return None;
        }
        let expiry = [
            self.pinger.next_deadline(),
            self.verify
                .as_ref()
                .and_then(|v| v.verifier.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d + self.cfg.settle);
        let send = (self.more_to_send() && self.busy() < self.window)
            .then(|| self.next_send.unwrap_or_default());
        match (expiry, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_done(&self) -> bool {
        self.stopped || (!self.more_to_send() && self.busy() == 0)
    }

    fn bound(&self) -> Option<Duration> {
        self.cfg.bound
    }

    /// Probes still outstanding are not counted; handshakes under check are
    /// reset, unreported.
    fn stop(&mut self, _why: Stop, now: Timestamp, cx: &mut dyn Context<PingEvent>) {
        self.stopped = true;
        let dst = self.cfg.probe.dst.ip();
        if let Some(v) = self.verify.as_mut() {
            for done in v.verifier.on_time(Timestamp(u64::MAX), tsval(now)) {
                cx.send(dst, done.rst);
            }
        }
    }
}

/// `--verify`'s canaries: SYNs to a few random high ports, all at once, each
/// answered or waited for (the probe timeout and 50 ms). The closed ones'
/// RSTs teach the verifier what the host's RSTs look like.
#[derive(Debug)]
pub struct CanaryMachine {
    probes: Vec<SynPinger>,
    results: Vec<Option<SynAnswer>>,
    held: Vec<u16>,
    verifier: Verifier,
    deadline: Option<Timestamp>,
    over: bool,
}

/// What the canaries found.
#[derive(Debug)]
pub struct Canaries {
    /// The canary ports probed.
    pub ports: Vec<u16>,
    /// `syn-ack`, `rst`, an ICMP error's name, or `no-answer`, per port.
    pub verdicts: Vec<String>,
    /// Every canary answered SYN-ACK.
    pub all_answer: bool,
    /// The verifier, with what the closed canaries taught it.
    pub verifier: Verifier,
}

/// How many canary ports `--verify` probes first.
pub const CANARIES: usize = 3;

impl CanaryMachine {
    /// Canaries for `cfg`'s target (its port avoided); `random` picks the ports.
    pub fn new(cfg: &SynProbeConfig, random: impl FnMut() -> u16) -> CanaryMachine {
        let ports = verify::canary_ports(CANARIES, cfg.dst.port(), random);
        let probes: Vec<SynPinger> = ports
            .iter()
            .map(|&port| {
                SynPinger::new(SynProbeConfig {
                    dst: SocketAddr::new(cfg.dst.ip(), port),
                    ..cfg.clone()
                })
            })
            .collect();
        CanaryMachine {
            results: vec![None; probes.len()],
            probes,
            held: Vec::new(),
            verifier: Verifier::new(cfg.src, cfg.dst, cfg.ttl),
            deadline: None,
            over: false,
        }
    }

    /// What the canaries found (call once done).
    pub fn finish(self) -> Canaries {
        let verdicts = self
            .results
            .iter()
            .map(|v| match v {
                Some(SynAnswer::Open) => "syn-ack".to_string(),
                Some(SynAnswer::Closed) => "rst".to_string(),
                Some(v) => v.reason().unwrap_or_else(|| "filtered".into()),
                None => "no-answer".to_string(),
            })
            .collect();
        let all_answer = verify::answers_every_port(
            &self
                .results
                .iter()
                .map(|v| *v == Some(SynAnswer::Open))
                .collect::<Vec<_>>(),
        );
        Canaries {
            ports: self.probes.iter().map(|p| p.config().dst.port()).collect(),
            verdicts,
            all_answer,
            verifier: self.verifier,
        }
    }

    fn end(&mut self, cx: &mut dyn Context<()>) {
        if !self.over {
            self.over = true;
            for p in self.held.drain(..) {
                cx.release_port(p);
            }
        }
    }
}

impl Machine for CanaryMachine {
    type Event = ();

    fn on_packet(&mut self, p: &Packet<'_>, cx: &mut dyn Context<()>) {
        for (i, pr) in self.probes.iter_mut().enumerate() {
            if let Some(r) = pr.on_packet(p.data, p.direction, p.at, p.offloaded) {
                if r.verdict == SynAnswer::Closed {
                    self.verifier.learn(p.data, p.at);
                }
                self.results[i] = Some(r.verdict);
            }
        }
        if self.deadline.is_some() && self.results.iter().all(Option::is_some) {
            self.end(cx);
        }
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<()>) {
        let Some(deadline) = self.deadline else {
            for pr in &mut self.probes {
                let Some(port) = cx.reserve_port(false) else {
                    self.over = true;
                    return;
                };
                self.held.push(port);
                let isn = SeqNumber(cx.random());
                let ident = cx.random() as u16;
                let (_, bytes) = pr.probe(now, port, isn, ident, tsval(now));
                cx.send(pr.config().dst.ip(), bytes);
            }
            let timeout = self
                .probes
                .first()
                .map_or(Duration::ZERO, |p| p.config().timeout);
            self.deadline = Some(now + timeout + Duration::from_millis(50));
            return;
        };
        if now >= deadline {
            self.end(cx);
        }
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.over {
            return None;
        }
        Some(self.deadline.unwrap_or_default())
    }

    fn is_done(&self) -> bool {
        self.over
    }

    fn stop(&mut self, _why: Stop, _now: Timestamp, cx: &mut dyn Context<()>) {
        self.end(cx);
    }
}
