//! The `ping` probe: one SYN at a time (or several in flight), each answered by
//! a SYN-ACK (open), an RST (closed), an ICMP error (filtered, with its reason)
//! or nothing before its deadline (filtered, no answer).

use super::answer::SynAnswer;
use super::answer::SynReply;
use super::correlate::{Correlator, FlowKey, Match};
use crate::event::{Direction, Timestamp};
use crate::wire::{IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How each SYN is built and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynProbeConfig {
    /// Our source address.
    pub src: IpAddr,
    /// The target address and port.
    pub dst: SocketAddr,
    /// IP TTL (hop limit) of the SYNs.
    pub ttl: u8,
    /// Carry Linux-like options (MSS, SACK-permitted, timestamps, window scale);
    /// false sends a bare SYN.
    pub syn_options: bool,
    /// The MSS option's value, in bytes (with `syn_options`).
    pub mss: u16,
    /// The SYNs' TCP window, in bytes.
    pub window: u16,
    /// Wait for each probe's answer.
    pub timeout: Duration,
}

/// Where a send time came from: the kernel's stamp of the SYN leaving, or (if the
/// capture missed it) the user-space clock just before the send call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RttSource {
    /// The kernel's stamp of the packet leaving.
    Kernel,
    /// The user-space clock just before the send call (a little before the
    /// packet left: the RTT comes out a little long).
    User,
}

/// One finished probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probe's number, 0 for the first, in send order.
    pub seq: u64,
    /// Its source port.
    pub src_port: u16,
    /// Its initial sequence number.
    pub isn: SeqNumber,
    /// What the answer (or its absence) means.
    pub verdict: SynAnswer,
    /// When it left.
    pub sent_at: Timestamp,
    /// From `sent_at` to the answer's receive stamp; None: no answer.
    pub rtt: Option<Duration>,
    /// Where `sent_at` came from.
    pub rtt_source: RttSource,
    /// The answer as read (TTL, window, flags, options); None: no answer.
    pub reply: Option<SynReply>,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    user_sent: Timestamp,
    kernel_sent: Option<Timestamp>,
    deadline: Timestamp,
}

/// The SYN ping state machine.
#[derive(Debug)]
pub struct SynPinger {
    cfg: SynProbeConfig,
    corr: Correlator,
    pending: BTreeMap<FlowKey, Pending>,
    /// The pending probes by deadline (then sequence): expiry and the next
    /// deadline cost O(log n) however many probes are in flight.
    deadlines: BTreeMap<(Timestamp, u64), FlowKey>,
    next_seq: u64,
}

impl SynPinger {
    /// A pinger with nothing sent yet.
    pub fn new(cfg: SynProbeConfig) -> SynPinger {
        let corr = Correlator::new(cfg.src, cfg.dst);
        SynPinger {
            cfg,
            corr,
            pending: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &SynProbeConfig {
        &self.cfg
    }

    /// Builds the next probe's datagram. The caller sends it right away; `now`
    /// is the user-space time just before the send (the fallback send stamp).
    /// `isn`, `ident` and `tsval` come from the caller so tests are exact.
    pub fn probe(
        &mut self,
        now: Timestamp,
        src_port: u16,
        isn: SeqNumber,
        ident: u16,
        tsval: u32,
    ) -> (FlowKey, Vec<u8>) {
        let options = TcpOptions::syn(self.cfg.syn_options, self.cfg.mss, tsval);
        let tcp = TcpRepr {
            src_port,
            dst_port: self.cfg.dst.port(),
            seq: isn,
            flags: TcpFlags::SYN,
            window: self.cfg.window,
            options,
            ..TcpRepr::default()
        };
        let ip = IpRepr {
            src: self.cfg.src,
            dst: self.cfg.dst.ip(),
            protocol: Protocol::TCP,
            ttl: self.cfg.ttl,
            ident,
            later_fragment: false,
            flow_label: 0,
        };
        let bytes = ip.emit(&tcp.emit(ip.src, ip.dst));
        let key = FlowKey { src_port, isn };
        self.corr.track(key);
        let p = Pending {
            seq: self.next_seq,
            user_sent: now,
            kernel_sent: None,
            deadline: (now + self.cfg.timeout),
        };
        self.deadlines.insert((p.deadline, p.seq), key);
        if let Some(old) = self.pending.insert(key, p) {
            // the same port and ISN again (a caller's choice): the newer wins
            self.deadlines.remove(&(old.deadline, old.seq));
        }
        self.next_seq += 1;
        (key, bytes)
    }

    /// Feeds one captured packet; returns the probe it finished, if any.
    pub fn on_packet(
        &mut self,
        data: &[u8],
        direction: Direction,
        at: Timestamp,
        offloaded: bool,
    ) -> Option<ProbeResult> {
        match self.corr.classify(data, direction, at, offloaded) {
            Match::Sent(key, ts) => {
                // the timeout runs from the moment the SYN left, not from the
                // user-space instant before the send call (which a busy
                // machine can delay by more than the timeout)
                if let Some(p) = self.pending.get_mut(&key)
                    && p.kernel_sent.is_none()
                {
                    p.kernel_sent = Some(ts);
                    let deadline = ts + self.cfg.timeout;
                    if deadline > p.deadline {
                        self.deadlines.remove(&(p.deadline, p.seq));
                        p.deadline = deadline;
                        self.deadlines.insert((deadline, p.seq), key);
                    }
                }
                None
            }
            Match::Reply(key, reply) => {
                // answered after its deadline (read late, e.g. behind a burst):
                // loss, as the timeout says; `on_time` expires the probe
                if self.pending.get(&key)?.deadline < at {
                    self.corr.count_ignored(super::Ignored::Late);
                    return None;
                }
                let p = self.pending.remove(&key)?;
                self.deadlines.remove(&(p.deadline, p.seq));
                self.corr.remove(key);
                let verdict = reply.answer;
                let (sent, source) = match p.kernel_sent {
                    Some(k) => (k, RttSource::Kernel),
                    None => (p.user_sent, RttSource::User),
                };
                Some(ProbeResult {
                    seq: p.seq,
                    src_port: key.src_port,
                    isn: key.isn,
                    verdict,
                    sent_at: sent,
                    rtt: Some(at.saturating_sub(sent)),
                    rtt_source: source,
                    reply: Some(reply),
                })
            }
            Match::Ignored(_) => None,
        }
    }

    /// Expires probes whose deadline has passed by `now`.
    pub fn on_time(&mut self, now: Timestamp) -> Vec<ProbeResult> {
        let mut expired = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            expired.push(entry.remove());
        }
        let mut out: Vec<ProbeResult> = expired
            .into_iter()
            .filter_map(|key| {
                let p = self.pending.remove(&key)?;
                self.corr.remove(key);
                Some(ProbeResult {
                    seq: p.seq,
                    src_port: key.src_port,
                    isn: key.isn,
                    verdict: SynAnswer::NoAnswer,
                    sent_at: p.kernel_sent.unwrap_or(p.user_sent),
                    rtt: None,
                    rtt_source: if p.kernel_sent.is_some() {
                        RttSource::Kernel
                    } else {
                        RttSource::User
                    },
                    reply: None,
                })
            })
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    /// The earliest deadline among outstanding probes.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.keys().next().map(|k| k.0)
    }

    /// Probes sent and not yet finished.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Ignored packets by reason.
    pub fn ignored(&self) -> &BTreeMap<super::Ignored, u64> {
        self.corr.ignored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::fixture;

    /// Replays the lab capture: our SYN (as Linux sent it) and the SYN-ACK.
    fn pinger(port: u16) -> SynPinger {
        SynPinger::new(SynProbeConfig {
            src: "198.18.0.1".parse().unwrap(),
            dst: SocketAddr::new("198.18.0.2".parse().unwrap(), port),
            ttl: 64,
            syn_options: true,
            mss: 1460,
            window: 64240,
            timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn syn_built_like_linux_and_synack_gives_open_with_kernel_rtt() {
        let mut p = pinger(80);
        let t0 = Timestamp(1_000_000_000);
        let (key, bytes) = p.probe(t0, 53190, SeqNumber(644410958), 0x8f0d, 1890636195);
        // same header fields as the kernel's SYN, but for window scale 7 vs 10
        let kernel = crate::wire::testutil::with_full_checksum(fixture("syn_v4"));
        assert_eq!(bytes.len(), kernel.len());
        assert_eq!(
            bytes[20..36],
            kernel[20..36],
            "ports, seq, ack, offset, flags, window"
        );
        // the kernel stamps our SYN at +5 µs and the SYN-ACK at +36.5 µs
        assert_eq!(
            p.on_packet(&bytes, Direction::Outgoing, Timestamp(t0.0 + 5_000), false),
            None
        );
        let r = p
            .on_packet(
                fixture("synack_v4"),
                Direction::Incoming,
                Timestamp(t0.0 + 36_500),
                true,
            )
            .unwrap();
        assert_eq!(r.verdict, SynAnswer::Open);
        assert_eq!(r.rtt, Some(Duration::from_nanos(31_500)));
        assert_eq!(r.rtt_source, RttSource::Kernel);
        assert_eq!(key.src_port, 53190);
        assert_eq!(p.outstanding(), 0);
        // a duplicate SYN-ACK changes nothing
        assert_eq!(
            p.on_packet(
                fixture("synack_v4"),
                Direction::Incoming,
                Timestamp(t0.0 + 50_000),
                true
            ),
            None
        );
    }

    #[test]
    fn rst_is_closed_icmp_is_filtered_silence_times_out() {
        let mut p = pinger(81);
        let t0 = Timestamp(5_000_000_000);
        p.probe(t0, 60236, SeqNumber(2041246510), 1, 1);
        let r = p
            .on_packet(
                fixture("rst_v4"),
                Direction::Incoming,
                Timestamp(t0.0 + 20_000),
                true,
            )
            .unwrap();
        assert_eq!(r.verdict, SynAnswer::Closed);
        assert_eq!(
            r.rtt_source,
            RttSource::User,
            "no captured SYN: user-space send time"
        );

        let mut p = pinger(111);
        p.probe(t0, 60800, SeqNumber(3424312317), 1, 1);
        let r = p
            .on_packet(
                fixture("icmp_admin_v4"),
                Direction::Incoming,
                Timestamp(t0.0 + 30_000),
                false,
            )
            .unwrap();
        assert_eq!(r.verdict.class(), "filtered");
        assert_eq!(r.verdict.reason().as_deref(), Some("admin-prohibited"));

        let mut p = pinger(21);
        p.probe(t0, 40000, SeqNumber(1), 1, 1);
        p.probe(t0 + Duration::from_millis(500), 40001, SeqNumber(2), 1, 1);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(p.on_time(t0 + Duration::from_millis(999)).is_empty());
        let done = p.on_time(t0 + Duration::from_secs(1));
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].seq, &done[0].verdict), (0, &SynAnswer::NoAnswer));
        assert_eq!(p.outstanding(), 1);
    }

    #[test]
    fn a_reply_stamped_after_its_deadline_is_late_and_the_probe_times_out() {
        let mut p = pinger(81);
        let t0 = Timestamp(5_000_000_000);
        p.probe(t0, 60236, SeqNumber(2041246510), 1, 1);
        // read only now, but stamped 1 ns after the deadline
        let late = t0 + Duration::from_secs(1) + Duration::from_nanos(1);
        assert_eq!(
            p.on_packet(fixture("rst_v4"), Direction::Incoming, late, true),
            None
        );
        assert_eq!(p.ignored()[&crate::probe::Ignored::Late], 1);
        let done = p.on_time(late);
        assert_eq!(done[0].verdict, SynAnswer::NoAnswer);
        // stamped at the deadline itself it still counts
        p.probe(t0, 60236, SeqNumber(2041246510), 1, 1);
        let r = p.on_packet(
            fixture("rst_v4"),
            Direction::Incoming,
            t0 + Duration::from_secs(1),
            true,
        );
        assert_eq!(r.unwrap().verdict, SynAnswer::Closed);
    }

    #[test]
    fn the_timeout_runs_from_the_kernels_send_stamp() {
        let mut p = pinger(81);
        let t0 = Timestamp(5_000_000_000);
        let (_, syn) = p.probe(t0, 60236, SeqNumber(2041246510), 1, 1);
        // the process was descheduled for 1.5 s between its clock read and the send
        let left = t0 + Duration::from_millis(1500);
        assert_eq!(p.on_packet(&syn, Direction::Outgoing, left, false), None);
        assert_eq!(p.next_deadline(), Some(left + Duration::from_secs(1)));
        assert!(p.on_time(t0 + Duration::from_secs(2)).is_empty());
        let r = p.on_packet(
            fixture("rst_v4"),
            Direction::Incoming,
            left + Duration::from_micros(2),
            true,
        );
        let r = r.unwrap();
        assert_eq!(
            (r.verdict, r.rtt),
            (SynAnswer::Closed, Some(Duration::from_micros(2)))
        );
    }

    #[test]
    fn many_probes_in_flight_expire_in_send_order() {
        let mut p = pinger(21);
        let t0 = Timestamp(1_000_000_000);
        for i in 0..10_000u32 {
            p.probe(
                t0 + Duration::from_nanos(i as u64),
                1000 + (i % 3) as u16,
                SeqNumber(i),
                1,
                1,
            );
        }
        assert_eq!(p.outstanding(), 10_000);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let done = p.on_time(t0 + Duration::from_secs(1) + Duration::from_nanos(4_999));
        assert_eq!(done.len(), 5_000);
        assert!(done.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(
            p.next_deadline(),
            Some(t0 + Duration::from_secs(1) + Duration::from_nanos(5_000))
        );
    }

    #[test]
    fn bare_syn_has_no_options() {
        let mut p = pinger(80);
        p.cfg.syn_options = false;
        let (_, bytes) = p.probe(Timestamp(0), 1000, SeqNumber(7), 1, 1);
        assert_eq!(bytes.len(), 40);
        assert_eq!(bytes[32], 0x50);
    }
}
