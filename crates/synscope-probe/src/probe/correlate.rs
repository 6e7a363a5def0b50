//! Matching captured packets to outstanding SYN probes. A reply counts only if it
//! belongs to a probe we sent: same 4-tuple and ack = our ISN + 1 for SYN-ACK
//! and RST, or the same headers quoted in an ICMP error. Everything else is
//! ignored and counted by reason.

use super::answer::SynReply;
use crate::event::{Direction, Timestamp};
use crate::wire::datagram::Checksums;
use crate::wire::{Datagram, SeqNumber, TcpFlags, Transport, WireError};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// A probe's identity on the wire: our source port and initial sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Our source port.
    pub src_port: u16,
    /// Our SYN's initial sequence number: a SYN-ACK or RST acks it + 1.
    pub isn: SeqNumber,
}

impl Ord for FlowKey {
    /// A total order for maps (not TCP's wrap-aware order).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.src_port, self.isn.0).cmp(&(other.src_port, other.isn.0))
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a captured packet was not taken as a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignored {
    /// Could not be parsed (truncated, bad length, bad checksum).
    Malformed,
    /// Not between us and the target port.
    OtherFlow,
    /// Right ports but no probe outstanding on them (late or duplicate reply).
    NoProbe,
    /// A SYN-ACK or RST whose ack is not our ISN + 1.
    WrongAck,
    /// A reply to an outstanding probe stamped after that probe's deadline.
    Late,
    /// A TCP segment that answers nothing (no SYN-ACK/RST, e.g. a bare ACK or SYN).
    Unexpected,
    /// An ICMP message that is not an error, or quotes something else.
    IcmpOther,
    /// Our own outgoing packets other than probes (e.g. the kernel's RST).
    OwnTraffic,
    /// To us in a protocol synscope cannot read: ESP (encrypted), an unknown
    /// IPv6 next header, or an extension-header chain too long to walk.
    Unreadable,
}

impl Ignored {
    /// The kebab-case name used in counters and JSON (`wrong-ack`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::OtherFlow => "other-flow",
            Ignored::NoProbe => "no-probe",
            Ignored::WrongAck => "wrong-ack",
            Ignored::Late => "late",
            Ignored::Unexpected => "unexpected",
            Ignored::IcmpOther => "icmp-other",
            Ignored::OwnTraffic => "own-traffic",
            Ignored::Unreadable => "unreadable",
        }
    }
}

/// The outcome of looking at one captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The kernel's stamp of one of our probes leaving.
    Sent(FlowKey, Timestamp),
    /// An answer to the probe `FlowKey` (received at the stamp handed to
    /// [`Correlator::classify`]).
    Reply(FlowKey, SynReply),
    /// Not a reply to any outstanding probe, and why (also counted).
    Ignored(Ignored),
}

/// Correlates packets with the probes outstanding towards one target.
#[derive(Debug, Clone)]
pub struct Correlator {
    /// Our address, the probes' source.
    pub local: IpAddr,
    /// The target address and port.
    pub remote: SocketAddr,
    /// Outstanding probes, by source port then ISN: several probes may share a
    /// port (a fixed `--source-port`), told apart by the ack = ISN + 1 of the
    /// answer or the sequence number an ICMP error quotes.
    outstanding: BTreeSet<FlowKey>,
    ignored: BTreeMap<Ignored, u64>,
}

impl Correlator {
    /// A correlator with nothing outstanding.
    pub fn new(local: IpAddr, remote: SocketAddr) -> Correlator {
        Correlator {
            local,
            remote,
            outstanding: BTreeSet::new(),
            ignored: BTreeMap::new(),
        }
    }

    /// Expects answers to the probe `key` (call before sending it).
    pub fn track(&mut self, key: FlowKey) {
        self.outstanding.insert(key);
    }

    /// Stops expecting answers to `key` (answered or given up).
    pub fn remove(&mut self, key: FlowKey) {
        self.outstanding.remove(&key);
    }

    /// Counts a packet ignored by the caller (e.g. a reply after its deadline).
    pub(crate) fn count_ignored(&mut self, why: Ignored) {
        *self.ignored.entry(why).or_default() += 1;
    }

    /// The probes outstanding on source port `port`.
    fn on_port(&self, port: u16) -> impl Iterator<Item = &FlowKey> {
        let key = |isn| FlowKey {
            src_port: port,
            isn: SeqNumber(isn),
        };
        self.outstanding.range(key(0)..=key(u32::MAX))
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.on_port(port).next().is_some()
    }

    /// The outstanding probe on `port` with ISN `isn`; if none, why the packet
    /// is ignored (a probe on that port with another ISN, or none at all).
    fn lookup(&self, port: u16, isn: SeqNumber) -> Result<FlowKey, Ignored> {
        let key = FlowKey {
            src_port: port,
            isn,
        };
        if self.outstanding.contains(&key) {
            Ok(key)
        } else if self.port_in_use(port) {
            Err(Ignored::WrongAck)
        } else {
            Err(Ignored::NoProbe)
        }
    }

    /// Number of probes tracked and not yet removed.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Counts of ignored packets by reason.
    pub fn ignored(&self) -> &BTreeMap<Ignored, u64> {
        &self.ignored
    }

    /// Classifies one captured packet (starting at its IP header).
    pub fn classify(
        &mut self,
        data: &[u8],
        direction: Direction,
        at: Timestamp,
        offloaded: bool,
    ) -> Match {
        let m = self.classify_inner(data, direction, at, offloaded);
        if let Match::Ignored(why) = m {
            *self.ignored.entry(why).or_default() += 1;
        }
        m
    }

    fn classify_inner(
        &self,
        data: &[u8],
        direction: Direction,
        at: Timestamp,
        offloaded: bool,
    ) -> Match {
        let checks = if offloaded {
            Checksums::Offloaded
        } else {
            Checksums::Verify
        };
        let d = match Datagram::parse_with(data, checks) {
            Ok(d) => d,
            Err(WireError::Checksum(_)) | Err(_) => return Match::Ignored(Ignored::Malformed),
        };
        let target = self.remote.ip();
        match (&d.transport, direction) {
            (Transport::Tcp(t), Direction::Outgoing) => {
                if d.ip.src != self.local || d.ip.dst != target || t.dst_port != self.remote.port()
                {
                    // e.g. the target's own packets looped back on lo
                    return Match::Ignored(Ignored::OtherFlow);
                }
                let key = FlowKey {
                    src_port: t.src_port,
                    isn: t.seq,
                };
                if t.flags == TcpFlags::SYN && self.outstanding.contains(&key) {
                    Match::Sent(key, at)
                } else {
                    Match::Ignored(Ignored::OwnTraffic)
                }
            }
            (Transport::Tcp(t), Direction::Incoming) => {
                if d.ip.src != target || d.ip.dst != self.local || t.src_port != self.remote.port()
                {
                    return Match::Ignored(Ignored::OtherFlow);
                }
                if !self.port_in_use(t.dst_port) {
                    return Match::Ignored(Ignored::NoProbe);
                }
                let reply = match SynReply::read(&d) {
                    Ok(r) => r,
                    Err(why) => return Match::Ignored(why),
                };
                let key = match self.lookup(t.dst_port, reply.isn.unwrap_or_default()) {
                    Ok(k) => k,
                    Err(why) => return Match::Ignored(why),
                };
                Match::Reply(key, reply)
            }
            (Transport::Icmp(_), Direction::Incoming) => {
                let reply = match SynReply::read(&d) {
                    Ok(r) => r,
                    Err(why) => return Match::Ignored(why),
                };
                if reply.local.ip() != self.local || reply.remote != self.remote {
                    return Match::Ignored(Ignored::IcmpOther);
                }
                // a quote with 8 transport bytes carries our ISN; a shorter one
                // (against RFC 792/4443) names the probe only if it is alone on its port
                let port = reply.local.port();
                let key = match reply.isn {
                    Some(isn) => match self.lookup(port, isn) {
                        Ok(k) => k,
                        Err(why) => return Match::Ignored(why),
                    },
                    None => {
                        let mut on_port = self.on_port(port);
                        match (on_port.next(), on_port.next()) {
                            (Some(k), None) => *k,
                            (None, _) => return Match::Ignored(Ignored::NoProbe),
                            (Some(_), Some(_)) => return Match::Ignored(Ignored::WrongAck),
                        }
                    }
                };
                Match::Reply(key, reply)
            }
            (_, Direction::Outgoing) => Match::Ignored(Ignored::OwnTraffic),
            (Transport::Other(_), Direction::Incoming)
                if d.ip.src == target && d.ip.dst == self.local =>
            {
                Match::Ignored(Ignored::Unreadable)
            }
            _ => Match::Ignored(Ignored::OtherFlow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::answer::SynAnswer;
    use crate::wire::testutil::fixture;
    use crate::wire::{IcmpError, IcmpRepr, IpRepr, TcpRepr};

    /// The fixtures' flows: 198.18.0.1:53190 -> 198.18.0.2:80, ISN 644410958.
    fn v4() -> Correlator {
        let mut c = Correlator::new(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
        );
        c.track(FlowKey {
            src_port: 53190,
            isn: SeqNumber(644410958),
        });
        c
    }

    const T: Timestamp = Timestamp(1_000);

    #[test]
    fn real_syn_and_synack_match() {
        let mut c = v4();
        let key = FlowKey {
            src_port: 53190,
            isn: SeqNumber(644410958),
        };
        assert_eq!(
            c.classify(fixture("syn_v4"), Direction::Outgoing, T, true),
            Match::Sent(key, T)
        );
        let Match::Reply(k, info) = c.classify(fixture("synack_v4"), Direction::Incoming, T, true)
        else {
            panic!("no reply")
        };
        assert_eq!(k, key);
        assert_eq!(info.answer, SynAnswer::Open);
        assert_eq!(
            (info.ttl, info.window, info.options.mss),
            (64, 65160, Some(1460))
        );
    }

    #[test]
    fn real_rst_and_icmp_match() {
        let mut c = Correlator::new(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2:81".parse().unwrap(),
        );
        c.track(FlowKey {
            src_port: 60236,
            isn: SeqNumber(2041246510),
        });
        assert!(matches!(
            c.classify(fixture("rst_v4"), Direction::Incoming, T, true),
            Match::Reply(
                _,
                SynReply {
                    answer: SynAnswer::Closed,
                    ..
                }
            )
        ));
        let mut c = Correlator::new(
            "2001:db8::1".parse().unwrap(),
            "[2001:db8::2]:111".parse().unwrap(),
        );
        c.track(FlowKey {
            src_port: 60516,
            isn: SeqNumber(3715143809),
        });
        let Match::Reply(_, info) =
            c.classify(fixture("icmp6_admin_v6"), Direction::Incoming, T, false)
        else {
            panic!("no reply")
        };
        let SynAnswer::Filtered { error, from } = info.answer else {
            panic!()
        };
        assert_eq!(error.name(), "admin-prohibited");
        assert_eq!(from, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn synack_behind_extension_headers_matches_and_esp_is_unreadable() {
        use crate::wire::ip::insert_v6_ext_headers;
        let raw = fixture("synack_v6");
        let d = Datagram::parse_with(raw, Checksums::Offloaded).unwrap();
        let Transport::Tcp(t) = &d.transport else {
            panic!()
        };
        let mut c = Correlator::new(d.ip.dst, SocketAddr::new(d.ip.src, t.src_port));
        let key = FlowKey {
            src_port: t.dst_port,
            isn: t.ack + u32::MAX, // ack - 1
        };
        c.track(key);
        let hbh: &[u8] = &[0, 0, 1, 4, 0, 0, 0, 0];
        let dstopt: &[u8] = &[0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let atomic: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 1];
        let ah: &[u8] = &[
            0, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        for exts in [
            vec![(0u8, hbh), (60, dstopt)],
            vec![(44, atomic)],
            vec![(0, hbh), (51, ah), (44, atomic), (60, dstopt)],
        ] {
            let bytes = insert_v6_ext_headers(raw, &exts).unwrap();
            let Match::Reply(k, info) = c.classify(&bytes, Direction::Incoming, T, true) else {
                panic!("{exts:?} not matched")
            };
            assert_eq!((k, info.answer), (key, SynAnswer::Open));
        }
        // the same segment inside ESP: counted, never read
        let esp = IpRepr {
            protocol: 50,
            ..d.ip.clone()
        }
        .emit(&[&[0, 0, 1, 0, 0, 0, 0, 1][..], &raw[40..]].concat());
        assert_eq!(
            c.classify(&esp, Direction::Incoming, T, true),
            Match::Ignored(Ignored::Unreadable)
        );
        // and an unknown next header after Destination Options
        let unknown = insert_v6_ext_headers(&esp, &[(60, dstopt)]).map(|mut b| {
            b[40] = 253;
            b
        });
        assert_eq!(
            c.classify(&unknown.unwrap(), Direction::Incoming, T, true),
            Match::Ignored(Ignored::Unreadable)
        );
        assert_eq!(c.ignored()[&Ignored::Unreadable], 2);
    }

    /// Builds a reply from the target like the fixture's SYN-ACK, with changes.
    fn spoof(f: impl FnOnce(&mut IpRepr, &mut TcpRepr)) -> Vec<u8> {
        let d = Datagram::parse_with(fixture("synack_v4"), Checksums::Offloaded).unwrap();
        let Transport::Tcp(mut t) = d.transport else {
            panic!()
        };
        let mut ip = d.ip;
        f(&mut ip, &mut t);
        ip.emit(&t.emit(ip.src, ip.dst))
    }

    #[test]
    fn spoofed_and_mismatched_replies_are_ignored_and_counted() {
        let mut c = v4();
        let cases: Vec<(Vec<u8>, Ignored)> = vec![
            (spoof(|_, t| t.ack = t.ack + 1), Ignored::WrongAck),
            (
                spoof(|ip, _| ip.src = "198.18.0.3".parse().unwrap()),
                Ignored::OtherFlow,
            ),
            (spoof(|_, t| t.src_port = 81), Ignored::OtherFlow),
            (spoof(|_, t| t.dst_port = 1234), Ignored::NoProbe),
            (spoof(|_, t| t.flags = TcpFlags::ACK), Ignored::Unexpected),
            (spoof(|_, t| t.flags = TcpFlags::RST), Ignored::Unexpected),
            (fixture("synack_v4")[..30].to_vec(), Ignored::Malformed),
        ];
        for (bytes, why) in &cases {
            assert_eq!(
                c.classify(bytes, Direction::Incoming, T, false),
                Match::Ignored(*why),
                "{why:?}"
            );
        }
        // a bad checksum where the kernel says the checksum is complete
        let mut bad = spoof(|_, _| {});
        bad[37] ^= 0x5a;
        assert_eq!(
            c.classify(&bad, Direction::Incoming, T, false),
            Match::Ignored(Ignored::Malformed)
        );
        assert_eq!(c.ignored()[&Ignored::WrongAck], 1);
        assert_eq!(c.ignored()[&Ignored::Malformed], 2);
        // the genuine one still matches afterwards
        assert!(matches!(
            c.classify(&spoof(|_, _| {}), Direction::Incoming, T, false),
            Match::Reply(..)
        ));
        // and once the probe is done, a duplicate is late
        c.remove(FlowKey {
            src_port: 53190,
            isn: SeqNumber(644410958),
        });
        assert_eq!(
            c.classify(&spoof(|_, _| {}), Direction::Incoming, T, false),
            Match::Ignored(Ignored::NoProbe)
        );
    }

    #[test]
    fn probes_sharing_a_port_are_told_apart_by_isn() {
        let mut c = v4();
        let (a, b) = (SeqNumber(644410958), SeqNumber(77));
        c.track(FlowKey {
            src_port: 53190,
            isn: b,
        });
        assert_eq!(c.outstanding(), 2);
        // the fixture's SYN-ACK answers the first; one acking b + 1 the second
        let Match::Reply(k, _) = c.classify(&spoof(|_, _| {}), Direction::Incoming, T, false)
        else {
            panic!()
        };
        assert_eq!(k.isn, a);
        let Match::Reply(k, _) =
            c.classify(&spoof(|_, t| t.ack = b + 1), Direction::Incoming, T, false)
        else {
            panic!()
        };
        assert_eq!(k.isn, b);
        // an ack matching neither is a wrong ack, not a missing probe
        assert_eq!(
            c.classify(&spoof(|_, t| t.ack = b + 2), Direction::Incoming, T, false),
            Match::Ignored(Ignored::WrongAck)
        );
        c.remove(FlowKey {
            src_port: 53190,
            isn: a,
        });
        assert_eq!(c.outstanding(), 1);
        c.remove(k);
        assert_eq!(
            c.classify(&spoof(|_, t| t.ack = b + 1), Direction::Incoming, T, false),
            Match::Ignored(Ignored::NoProbe)
        );
    }

    #[test]
    fn icmp_quoting_another_seq_or_port_is_ignored() {
        let mut c = v4();
        let syn = crate::wire::testutil::with_full_checksum(fixture("syn_v4"));
        let (r, l): (IpAddr, IpAddr) = (
            "198.18.0.254".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
        );
        let icmp = |quote: &[u8]| {
            let ip = IpRepr {
                src: r,
                dst: l,
                protocol: 1,
                ttl: 63,
                ident: 1,
                later_fragment: false,
                flow_label: 0,
            };
            ip.emit(&IcmpRepr::emit_error(3, 13, quote, r, l))
        };
        // a router's error quoting our SYN counts, and names the router
        let Match::Reply(_, info) = c.classify(&icmp(&syn), Direction::Incoming, T, false) else {
            panic!()
        };
        assert_eq!(
            info.answer,
            SynAnswer::Filtered {
                error: IcmpError {
                    v6: false,
                    icmp_type: 3,
                    code: 13
                },
                from: r
            }
        );
        let mut other_seq = syn.clone();
        other_seq[27] ^= 1;
        assert_eq!(
            c.classify(&icmp(&other_seq), Direction::Incoming, T, false),
            Match::Ignored(Ignored::WrongAck)
        );
        let mut other_port = syn.clone();
        other_port[23] = 81;
        assert_eq!(
            c.classify(&icmp(&other_port), Direction::Incoming, T, false),
            Match::Ignored(Ignored::IcmpOther)
        );
        assert_eq!(
            c.classify(&icmp(&syn[..20]), Direction::Incoming, T, false),
            Match::Ignored(Ignored::IcmpOther)
        );
    }

    #[test]
    fn our_kernels_rst_is_own_traffic() {
        let mut c = v4();
        let rst = spoof(|ip, t| {
            std::mem::swap(&mut ip.src, &mut ip.dst);
            std::mem::swap(&mut t.src_port, &mut t.dst_port);
            t.flags = TcpFlags::RST;
        });
        assert_eq!(
            c.classify(&rst, Direction::Outgoing, T, false),
            Match::Ignored(Ignored::OwnTraffic)
        );
    }
}
