//! Host discovery on one link, sans-IO: which on-link addresses to ask for
//! (ARP request or Neighbor Solicitation), when to ask again, and when to
//! stop. The caller sends, paces and reads; time comes in as kernel stamps.
//!
//! Every address is asked once, then the unanswered ones again (`retries`
//! more rounds). After each round we wait until replies have stopped for
//! several times the largest round-trip seen (a link answers in well under a
//! millisecond), never longer than `max_wait`.

use super::TargetSet;
use super::pace::Pacer;
use crate::event::{Direction, Timestamp};
use crate::probe::machine::{Context, Frame, Machine, Packet, Stop};
use crate::wire::{ArpOp, ArpRepr, MacAddr, NdpKind, NdpRepr};
use std::net::IpAddr;
use std::time::Duration;

/// Shortest quiet period that ends a round's wait once replies were seen.
const MIN_QUIET: Duration = Duration::from_millis(20);
/// The same for the last round: a slow host (a sleeping Wi-Fi client may take
/// a hundred milliseconds to answer) still gets its last chance.
const LAST_QUIET: Duration = Duration::from_millis(100);

/// A host that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Its address.
    pub addr: IpAddr,
    /// The link-layer address it answered with.
    pub mac: MacAddr,
    /// From our request's kernel send stamp to the reply's receive stamp.
    pub rtt_ns: Option<u64>,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask for these addresses now.
    Send(Vec<IpAddr>),
    /// Read replies until then, and call `step` again.
    WaitUntil(Timestamp),
    /// Every address answered, or the last round's wait is over.
    Done,
}

/// The discovery state machine for one set of on-link addresses.
pub struct Discovery {
    set: TargetSet,
    answered: Vec<u64>,
    sent_at: Vec<u64>,
    up: Vec<Neighbour>,
    retries: u32,
    round: u32,
    next: u64,
    last_send: u64,
    last_reply: u64,
    max_rtt: u64,
    max_wait: u64,
    requests: u64,
}

impl Discovery {
    /// Largest number of addresses discovered on one link (memory: 8 bytes
    /// and a bit each, 8.5 MiB at most).
    pub const MAX_ADDRESSES: u64 = 1 << 20;

    /// Discovers the first [`Self::MAX_ADDRESSES`] of `set`, in `retries`
    /// rounds after the first, waiting at most `max_wait` after each.
    pub fn new(set: TargetSet, retries: u32, max_wait: Duration) -> Discovery {
        let n = set.len().min(Self::MAX_ADDRESSES);
        Discovery {
            answered: vec![0; n.div_ceil(64) as usize],
            sent_at: vec![0; n as usize],
            set,
            up: Vec::new(),
            retries,
            round: 0,
            next: 0,
            last_send: 0,
            last_reply: 0,
            max_rtt: 0,
            max_wait: max_wait.as_nanos().min(u64::MAX as u128) as u64,
            requests: 0,
        }
    }

    fn len(&self) -> u64 {
        self.sent_at.len() as u64
    }

    fn is_answered(&self, i: u64) -> bool {
        self.answered[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// The next step at `now`; at most `max` addresses per `Send`.
    pub fn step(&mut self, now: Timestamp, max: usize) -> Step {
        loop {
            let mut batch = Vec::new();
            while self.next < self.len() && batch.len() < max.max(1) {
                let i = self.next;
                self.next += 1;
                if self.is_answered(i) {
                    continue;
                }
                if let Some(a) = self.set.get(i) {
                    self.sent_at[i as usize] = now.0;
                    batch.push(a);
                }
            }
            if !batch.is_empty() {
                self.last_send = now.0;
                self.requests += batch.len() as u64;
                return Step::Send(batch);
            }
            if self.up.len() as u64 >= self.len() {
                return Step::Done;
            }
            let min_quiet = if self.round >= self.retries {
                LAST_QUIET
            } else {
                MIN_QUIET
            };
            let quiet = if self.max_rtt == 0 {
                self.max_wait
            } else {
                (self.max_rtt.saturating_mul(8))
                    .max(min_quiet.as_nanos() as u64)
                    .min(self.max_wait.max(1))
            };
            let deadline = (self.last_send.max(self.last_reply).saturating_add(quiet))
                .min(self.last_send.saturating_add(self.max_wait));
            if now.0 < deadline {
                return Step::WaitUntil(Timestamp(deadline));
            }
            if self.round >= self.retries {
                return Step::Done;
            }
            self.round += 1;
            self.next = 0;
        }
    }

    /// The kernel's send stamp of our request for `target` (more exact than
    /// the time `step` handed it out).
    pub fn on_request_sent(&mut self, target: IpAddr, at: Timestamp) {
        if let Some(i) = self.set.index_of(target).filter(|i| *i < self.len()) {
            self.sent_at[i as usize] = at.0;
        }
    }

    /// A reply: `addr` is at `mac`. False if it is no target of ours or
    /// already answered (a duplicate, or a second host claiming the address).
    pub fn on_reply(&mut self, addr: IpAddr, mac: MacAddr, at: Timestamp) -> bool {
        let Some(i) = self.set.index_of(addr).filter(|i| *i < self.len()) else {
            return false;
        };
        if self.is_answered(i) || !mac.is_unicast() {
            return false;
        }
        self.answered[(i / 64) as usize] |= 1 << (i % 64);
        let sent = self.sent_at[i as usize];
        let rtt_ns = (sent != 0 && at.0 >= sent).then(|| at.0 - sent);
        if let Some(r) = rtt_ns {
            self.max_rtt = self.max_rtt.max(r);
        }
        self.last_reply = self.last_reply.max(at.0);
        self.up.push(Neighbour { addr, mac, rtt_ns });
        true
    }

    /// Hosts that answered, in the order they did.
    pub fn up(&self) -> &[Neighbour] {
        &self.up
    }

    /// Addresses asked for that never answered, ascending (one never asked,
    /// because discovery was interrupted, is not down: nothing is known of it).
    pub fn down(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..self.len())
            .filter(|i| !self.is_answered(*i) && self.sent_at[*i as usize] != 0)
            .filter_map(|i| self.set.get(i))
    }

    /// Addresses asked for (each once however many rounds).
    pub fn addresses(&self) -> u64 {
        self.len()
    }

    /// Requests handed out, retries included.
    pub fn requests(&self) -> u64 {
        self.requests
    }
}

/// EtherType of IPv6 (ARP's is [`ArpRepr::ETHERTYPE`]).
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The on-link addresses one source address asks for on one interface.
#[derive(Debug, Clone)]
pub struct OnLinkGroup {
    /// The interface the requests leave by.
    pub ifindex: u32,
    /// Our address on it (the requests' sender).
    pub src: IpAddr,
    /// Our Ethernet address on it.
    pub mac: MacAddr,
    /// The addresses to ask for.
    pub set: TargetSet,
}

struct Group {
    ifindex: u32,
    src: IpAddr,
    mac: MacAddr,
    discovery: Discovery,
    done: bool,
}

/// Discovery on every on-link group at once, as a [`Machine`] the drive loop
/// runs (so several links take as long as the slowest, not their sum):
/// requests paced at one rate in all, each group's [`Discovery`] deciding
/// what to ask and when to stop. Reports each host as it answers; the full
/// up and down lists are read from [`DiscoveryMachine::results`] at the end.
pub struct DiscoveryMachine {
    groups: Vec<Group>,
    rate: u64,
    batch: usize,
    retries: u32,
    max_wait: Duration,
    pacer: Option<Pacer<Timestamp>>,
    sent: u64,
    paced: u64,
    wake: Option<Timestamp>,
    stopped: bool,
}

impl DiscoveryMachine {
    /// Discovers `groups` at `rate` requests per second in all, each in
    /// `retries` rounds after the first, waiting at most `max_wait` after each.
    pub fn new(
        groups: Vec<OnLinkGroup>,
        rate: u64,
        retries: u32,
        max_wait: Duration,
    ) -> DiscoveryMachine {
        DiscoveryMachine {
            groups: groups
                .into_iter()
                .map(|g| Group {
                    ifindex: g.ifindex,
                    src: g.src,
                    mac: g.mac,
                    discovery: Discovery::new(g.set, retries, max_wait),
                    done: false,
                })
                .collect(),
            rate: rate.max(1),
            batch: (rate / 5000).clamp(1, 64) as usize,
            retries,
            max_wait,
            pacer: None,
            sent: 0,
            paced: 0,
            // the first poll sends at once
            wake: Some(Timestamp(0)),
            stopped: false,
        }
    }

    /// Each group's discovery, in the order the groups were given.
    pub fn results(&self) -> impl Iterator<Item = &Discovery> + '_ {
        self.groups.iter().map(|g| &g.discovery)
    }
}

/// The request for `target`: an ARP request broadcast, or a Neighbor
/// Solicitation to the target's solicited-node group.
fn request(ifindex: u32, src: IpAddr, mac: MacAddr, target: IpAddr) -> Option<Frame> {
    let (ethertype, dst, payload) = match (src, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) => (
            ArpRepr::ETHERTYPE,
            MacAddr::BROADCAST,
            ArpRepr::request(mac, s, t).emit(),
        ),
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            let (bytes, group) = NdpRepr::solicitation(s, mac, t);
            (ETHERTYPE_IPV6, group, bytes)
        }
        _ => return None,
    };
    Some(Frame {
        ifindex,
        ethertype,
        dst,
        payload,
        host: target,
    })
}

/// What a captured packet is to discovery: the kernel's stamp of our request
/// for a target (from `src`), or a reply for `src` saying where a host is.
enum Seen {
    Sent {
        src: IpAddr,
        target: IpAddr,
    },
    Reply {
        src: IpAddr,
        addr: IpAddr,
        mac: MacAddr,
    },
}

fn seen(p: &Packet<'_>) -> Option<Seen> {
    let outgoing = p.direction == Direction::Outgoing;
    if let Ok(a) = ArpRepr::parse(p.data) {
        return match a.op {
            ArpOp::Request if outgoing => Some(Seen::Sent {
                src: a.sender_ip.into(),
                target: a.target_ip.into(),
            }),
            ArpOp::Reply if !outgoing => Some(Seen::Reply {
                src: a.target_ip.into(),
                addr: a.sender_ip.into(),
                mac: a.sender_mac,
            }),
            _ => None,
        };
    }
    let (ip, nd) = NdpRepr::parse_datagram(p.data).ok()?;
    match nd.kind {
        NdpKind::Solicit if outgoing => Some(Seen::Sent {
            src: ip.src,
            target: nd.target.into(),
        }),
        NdpKind::Advert { .. } if !outgoing => Some(Seen::Reply {
            src: ip.dst,
            addr: nd.target.into(),
            mac: nd.lladdr?,
        }),
        _ => None,
    }
}

impl Machine for DiscoveryMachine {
    type Event = Neighbour;

    fn on_packet(&mut self, packet: &Packet<'_>, cx: &mut dyn Context<Neighbour>) {
        match seen(packet) {
            Some(Seen::Sent { src, target }) => {
                for g in self.groups.iter_mut().filter(|g| g.src == src) {
                    g.discovery.on_request_sent(target, packet.at);
                }
            }
            Some(Seen::Reply { src, addr, mac }) => {
                // the group that asked for it (a source address may be on two links)
                for g in self.groups.iter_mut().filter(|g| g.src == src) {
                    if g.discovery.on_reply(addr, mac, packet.at) {
                        if let Some(n) = g.discovery.up().last() {
                            cx.report(*n);
                        }
                        break;
                    }
                }
            }
            None => {}
        }
    }

    fn poll(&mut self, now: Timestamp, cx: &mut dyn Context<Neighbour>) {
        if self.stopped {
            return;
        }
        let pacer = self
            .pacer
            .get_or_insert_with(|| Pacer::new(self.rate as f64, now));
        // the last batches met a full queue (or not): slow down or recover
        let stalled = cx.send_stalls() > 0;
        if self.sent > self.paced || stalled {
            pacer.after_batch(self.sent, stalled, now);
            self.paced = self.sent;
        }
        let mut wake: Option<Timestamp> = None;
        let mut soonest = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        // one batch per group and poll: the drive loop reads the capture
        // (our requests' stamps, the replies) between them
        for g in self.groups.iter_mut().filter(|g| !g.done) {
            let due = pacer.due(self.sent);
            if due > now {
                soonest(due);
                continue;
            }
            match g.discovery.step(now, self.batch) {
                Step::Send(addrs) => {
                    for a in &addrs {
                        if let Some(f) = request(g.ifindex, g.src, g.mac, *a) {
                            cx.send_frame(f);
                        }
                    }
                    self.sent += addrs.len() as u64;
                    soonest(pacer.due(self.sent).max(now));
                }
                Step::WaitUntil(t) => soonest(t),
                Step::Done => g.done = true,
            }
        }
        self.wake = wake;
    }

    fn poll_at(&self) -> Option<Timestamp> {
        if self.is_done() { None } else { self.wake }
    }

    fn is_done(&self) -> bool {
        self.stopped || self.groups.iter().all(|g| g.done)
    }

    fn stop(&mut self, _why: Stop, _now: Timestamp, _cx: &mut dyn Context<Neighbour>) {
        self.stopped = true;
    }

    fn bound(&self) -> Option<Duration> {
        // every round's requests at the rate, every round's longest wait, and slack
        let addresses: u64 = self.groups.iter().map(|g| g.discovery.addresses()).sum();
        let rounds = u64::from(self.retries) + 1;
        let sending = Duration::from_secs_f64(
            (addresses.saturating_mul(rounds) as f64 / self.rate as f64).min(1e9),
        );
        Some(sending + self.max_wait * (rounds as u32) + Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::targets::parse_target;

    fn set(s: &str) -> TargetSet {
        let no = |_: &str| Err("none".to_string());
        TargetSet::build(&[parse_target(s, &no).unwrap()], &[]).unwrap()
    }

    const MS: u64 = 1_000_000;
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn asks_everyone_then_retries_the_silent_and_stops() {
        let mut d = Discovery::new(set("198.18.200.1-4"), 1, Duration::from_millis(200));
        let t0 = 1_000 * MS;
        assert_eq!(
            d.step(Timestamp(t0), 3),
            Step::Send(vec![
                addr("198.18.200.1"),
                addr("198.18.200.2"),
                addr("198.18.200.3")
            ])
        );
        assert_eq!(
            d.step(Timestamp(t0 + MS), 3),
            Step::Send(vec![addr("198.18.200.4")])
        );
        // kernel send stamp, then the reply 0.3 ms later
        d.on_request_sent(addr("198.18.200.2"), Timestamp(t0 + 100_000));
        assert!(d.on_reply(addr("198.18.200.2"), MAC, Timestamp(t0 + 400_000)));
        assert!(!d.on_reply(addr("198.18.200.2"), MAC, Timestamp(t0 + 500_000)));
        assert!(!d.on_reply(addr("198.18.201.2"), MAC, Timestamp(t0 + 500_000)));
        assert!(!d.on_reply(addr("198.18.200.3"), MacAddr::BROADCAST, Timestamp(t0)));
        assert_eq!(d.up()[0].rtt_ns, Some(300_000));
        // quiet for 8 x 0.3 ms, at least 20 ms, after the last send
        assert_eq!(
            d.step(Timestamp(t0 + 2 * MS), 3),
            Step::WaitUntil(Timestamp(t0 + 21 * MS))
        );
        // round two: only the silent ones
        assert_eq!(
            d.step(Timestamp(t0 + 21 * MS), 10),
            Step::Send(vec![
                addr("198.18.200.1"),
                addr("198.18.200.3"),
                addr("198.18.200.4")
            ])
        );
        // the last round waits at least 100 ms for the slow
        assert_eq!(
            d.step(Timestamp(t0 + 22 * MS), 10),
            Step::WaitUntil(Timestamp(t0 + 121 * MS))
        );
        assert_eq!(d.step(Timestamp(t0 + 121 * MS), 10), Step::Done);
        assert_eq!(
            d.down().collect::<Vec<_>>(),
            [
                addr("198.18.200.1"),
                addr("198.18.200.3"),
                addr("198.18.200.4")
            ]
        );
        assert_eq!((d.addresses(), d.requests()), (4, 7));
    }

    #[test]
    fn an_address_never_asked_is_not_down() {
        let mut d = Discovery::new(set("198.18.200.1-4"), 0, Duration::from_millis(200));
        assert!(matches!(d.step(Timestamp(MS), 1), Step::Send(_)));
        // interrupted here: only .1 was asked
        assert_eq!(d.down().collect::<Vec<_>>(), [addr("198.18.200.1")]);
    }

    #[test]
    fn silence_waits_the_longest_and_all_answered_ends_at_once() {
        let mut d = Discovery::new(set("2001:db8:200::/127"), 2, Duration::from_millis(200));
        assert!(matches!(d.step(Timestamp(MS), 8), Step::Send(v) if v.len() == 2));
        assert_eq!(d.down().count(), 2);
        assert_eq!(
            d.step(Timestamp(MS), 8),
            Step::WaitUntil(Timestamp(201 * MS))
        );
        d.on_reply(addr("2001:db8:200::"), MAC, Timestamp(2 * MS));
        d.on_reply(addr("2001:db8:200::1"), MAC, Timestamp(2 * MS));
        assert_eq!(d.step(Timestamp(3 * MS), 8), Step::Done);
        assert_eq!(d.down().count(), 0);
    }

    mod machine {
        use super::*;
        use crate::probe::machine::Recorder;
        use crate::wire::{IpRepr, Protocol};
        use std::net::Ipv6Addr;

        const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
        const US: &str = "2001:db8:200::1";

        fn group(targets: &str) -> OnLinkGroup {
            OnLinkGroup {
                ifindex: 7,
                src: addr(US),
                mac: OURS,
                set: set(targets),
            }
        }

        /// The advertisement `target` sends us: "I am at `mac`".
        fn advert(target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
            let us: Ipv6Addr = US.parse().unwrap();
            let na = NdpRepr {
                kind: NdpKind::Advert {
                    router: false,
                    solicited: true,
                    override_: true,
                },
                target,
                lladdr: Some(mac),
            };
            let ip = IpRepr {
                src: target.into(),
                dst: us.into(),
                protocol: Protocol::ICMPV6,
                ttl: 255,
                ident: 0,
                later_fragment: false,
                flow_label: 0,
            };
            ip.emit(&na.emit(target, us))
        }

        #[test]
        fn solicits_one_paced_batch_a_poll_and_takes_the_advertisement() {
            // 1000/s: one request a batch, the next due 1 ms later
            let mut m = DiscoveryMachine::new(
                vec![group("2001:db8:200::2-2001:db8:200::3")],
                1000,
                0,
                Duration::from_millis(200),
            );
            let mut cx = Recorder::<Neighbour>::new(1);
            let t0 = 1_000 * MS;
            assert_eq!(m.poll_at(), Some(Timestamp(0)));
            m.poll(Timestamp(t0), &mut cx);
            assert_eq!(cx.frames.len(), 1);
            let f = &cx.frames[0];
            assert_eq!((f.ifindex, f.ethertype), (7, ETHERTYPE_IPV6));
            // to the target's solicited-node group
            assert_eq!(f.dst, MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
            assert_eq!(f.host, addr("2001:db8:200::2"));
            assert_eq!(m.poll_at(), Some(Timestamp(t0 + MS)));
            // not yet due: nothing more
            m.poll(Timestamp(t0 + MS / 2), &mut cx);
            assert_eq!(cx.frames.len(), 1);
            m.poll(Timestamp(t0 + MS), &mut cx);
            assert_eq!(cx.frames.len(), 2);
            // our solicitation leaving (the kernel's stamp), then the answer
            let ns = cx.frames[0].payload.clone();
            m.on_packet(
                &Packet {
                    data: &ns,
                    direction: Direction::Outgoing,
                    at: Timestamp(t0 + 10_000),
                    offloaded: false,
                    read: None,
                },
                &mut cx,
            );
            let mac = MacAddr([2, 0, 0, 0, 0, 2]);
            let na = advert("2001:db8:200::2".parse().unwrap(), mac);
            m.on_packet(
                &Packet {
                    data: &na,
                    direction: Direction::Incoming,
                    at: Timestamp(t0 + 60_000),
                    offloaded: false,
                    read: None,
                },
                &mut cx,
            );
            let want = Neighbour {
                addr: addr("2001:db8:200::2"),
                mac,
                rtt_ns: Some(50_000),
            };
            assert_eq!(cx.events, [want]);
            // an advertisement seen leaving is no answer
            m.on_packet(
                &Packet {
                    data: &na,
                    direction: Direction::Outgoing,
                    at: Timestamp(t0 + 70_000),
                    offloaded: false,
                    read: None,
                },
                &mut cx,
            );
            assert_eq!(cx.events.len(), 1);
            // ::3 stays silent: the only round's wait, then done
            m.poll(Timestamp(t0 + 2 * MS), &mut cx);
            assert!(!m.is_done());
            m.poll(Timestamp(t0 + 202 * MS), &mut cx);
            assert!(m.is_done());
            assert_eq!(m.poll_at(), None);
            let d = m.results().next().unwrap();
            assert_eq!(d.down().collect::<Vec<_>>(), [addr("2001:db8:200::3")]);
        }

        #[test]
        fn stop_ends_it_at_once() {
            let mut m = DiscoveryMachine::new(
                vec![group("2001:db8:200::/120")],
                10,
                1,
                Duration::from_secs(1),
            );
            let mut cx = Recorder::<Neighbour>::new(1);
            m.poll(Timestamp(MS), &mut cx);
            m.stop(Stop::Interrupted, Timestamp(2 * MS), &mut cx);
            assert!(m.is_done());
            m.poll(Timestamp(3 * MS), &mut cx);
            assert_eq!(cx.frames.len(), 1);
            assert!(m.bound().is_some_and(|b| b >= Duration::from_secs(2)));
        }
    }
}
