//! Recognising scan replies without per-probe state: a reply is ours when it
//! comes from a target (host, port) to our source port and carries the cookie
//! of that 4-tuple (ack = cookie + 1, or the cookie quoted in an ICMP error).

use super::routes::SourceMap;
use super::{Cookie, PortList, TargetSet};
use crate::event::Timestamp;
use crate::probe::{Ignored, SynAnswer, SynReply};
use crate::wire::datagram::Checksums;
use crate::wire::{
    Datagram, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
};
use std::net::IpAddr;

/// A reply matched to a probe: the reply as read ([`SynReply`]), which probe
/// it answers and when it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReply {
    /// host index × number of ports + port index.
    pub index: u64,
    /// The reply: Open, Closed or Filtered, its TTL, window, flags, options.
    pub reply: SynReply,
    /// The kernel's receive stamp.
    pub at: Timestamp,
}

impl ScanReply {
    /// The target host.
    pub fn host(&self) -> IpAddr {
        self.reply.remote.ip()
    }
    /// The target port.
    pub fn port(&self) -> u16 {
        self.reply.remote.port()
    }
    /// Open, Closed or Filtered (a pair never answered is NoAnswer in the report).
    pub fn verdict(&self) -> &SynAnswer {
        &self.reply.answer
    }
}

/// Everything needed to build probes and check replies.
#[derive(Debug, Clone)]
pub struct ScanMatcher {
    /// The source address of each target (its route's).
    pub sources: SourceMap,
    /// Our source port, the same for every probe.
    pub sport: u16,
    /// Makes each probe's sequence number.
    pub cookie: Cookie,
    /// The hosts scanned.
    pub targets: TargetSet,
    /// The ports scanned on each host.
    pub ports: PortList,
    /// IP TTL (hop limit) of the probes.
    pub ttl: u8,
    /// Linux-like SYN options (MSS, SACK-permitted, timestamps, window scale).
    pub syn_options: bool,
    /// The MSS option's value, in bytes (with `syn_options`).
    pub mss: u16,
}

impl ScanMatcher {
    /// Probes in the whole scan (hosts × ports).
    pub fn len(&self) -> u64 {
        self.targets.len() * self.ports.len()
    }

    /// No probes at all (no hosts or no ports).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (host, port) of probe `index`.
    pub fn target(&self, index: u64) -> Option<(IpAddr, u16)> {
        let n = self.ports.len();
        Some((self.targets.get(index / n)?, self.ports.get(index % n)?))
    }

    fn index_of(&self, host: IpAddr, port: u16) -> Option<u64> {
        Some(self.targets.index_of(host)? * self.ports.len() + self.ports.index_of(port)?)
    }

    /// The SYN of probe `index`, IP header included.
    pub fn syn(&self, index: u64, ident: u16, tsval: u32) -> Option<Vec<u8>> {
        let (host, port) = self.target(index)?;
        self.syn_to(host, port, ident, tsval)
    }

    /// Our sequence number towards `host:port` (the cookie): the ISN of
    /// the handshake `--verify` completes.
    pub fn isn(&self, host: IpAddr, port: u16) -> Option<SeqNumber> {
        let local = self.sources.source_for(host)?;
        Some(SeqNumber(self.cookie.seq(local, host, self.sport, port)))
    }

    /// A SYN to any port of a target (a canary port), IP header included;
    /// its reply is recognised by [`ScanMatcher::classify_with`].
    pub fn syn_to(&self, host: IpAddr, port: u16, ident: u16, tsval: u32) -> Option<Vec<u8>> {
        let local = self.sources.source_for(host)?;
        let options = TcpOptions::syn(self.syn_options, self.mss, tsval);
        let tcp = TcpRepr {
            src_port: self.sport,
            dst_port: port,
            seq: SeqNumber(self.cookie.seq(local, host, self.sport, port)),
            flags: TcpFlags::SYN,
            window: 64240,
            options,
            ..TcpRepr::default()
        };
        Some(self.ip(local, host, ident).emit(&tcp.emit(local, host)))
    }

    /// An RST that tears down the half-open connection an open port made.
    pub fn rst(&self, host: IpAddr, port: u16) -> Option<Vec<u8>> {
        let local = self.sources.source_for(host)?;
        let tcp = TcpRepr {
            src_port: self.sport,
            dst_port: port,
            seq: SeqNumber(self.cookie.seq(local, host, self.sport, port)) + 1,
            flags: TcpFlags::RST,
            ..TcpRepr::default()
        };
        Some(self.ip(local, host, 0).emit(&tcp.emit(local, host)))
    }

    fn ip(&self, src: IpAddr, dst: IpAddr, ident: u16) -> IpRepr {
        IpRepr {
            src,
            dst,
            protocol: Protocol::TCP,
            ttl: self.ttl,
            ident,
            later_fragment: false,
            flow_label: 0,
        }
    }

    /// Classifies one incoming packet.
    pub fn classify(
        &self,
        data: &[u8],
        offloaded: bool,
        at: Timestamp,
    ) -> Result<ScanReply, Ignored> {
        self.classify_with(data, offloaded, at, |h, p| self.index_of(h, p))
    }

    /// [`ScanMatcher::classify`] with another map from (host, port) to probe
    /// number: `index_of` says which pairs were probed (e.g. canary ports,
    /// given any number).
    pub fn classify_with(
        &self,
        data: &[u8],
        offloaded: bool,
        at: Timestamp,
        index_of: impl Fn(IpAddr, u16) -> Option<u64>,
    ) -> Result<ScanReply, Ignored> {
        let checks = if offloaded {
            Checksums::Offloaded
        } else {
            Checksums::Verify
        };
        let d = Datagram::parse_with(data, checks).map_err(|_| Ignored::Malformed)?;
        // the quoted or answering target's own source address, not just any of ours
        let local = |target: IpAddr| self.sources.source_for(target);
        match &d.transport {
            Transport::Tcp(t) => {
                if t.dst_port != self.sport || local(d.ip.src) != Some(d.ip.dst) {
                    return Err(Ignored::OtherFlow);
                }
                let index = index_of(d.ip.src, t.src_port).ok_or(Ignored::OtherFlow)?;
                let r = SynReply::read(&d)?;
                let cookie = SeqNumber(self.cookie.seq(d.ip.dst, d.ip.src, self.sport, t.src_port));
                if r.isn != Some(cookie) {
                    return Err(Ignored::WrongAck);
                }
                Ok(ScanReply {
                    index,
                    reply: r,
                    at,
                })
            }
            Transport::Icmp(_) => {
                let r = SynReply::read(&d)?;
                let (host, port) = (r.remote.ip(), r.remote.port());
                if local(host) != Some(r.local.ip()) || r.local.port() != self.sport {
                    return Err(Ignored::IcmpOther);
                }
                let index = index_of(host, port).ok_or(Ignored::IcmpOther)?;
                let cookie = SeqNumber(self.cookie.seq(r.local.ip(), host, self.sport, port));
                if r.isn.is_some_and(|s| s != cookie) {
                    return Err(Ignored::WrongAck);
                }
                Ok(ScanReply {
                    index,
                    reply: r,
                    at,
                })
            }
            Transport::Other(_) => Err(Ignored::Unreadable),
            _ => Err(Ignored::OtherFlow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::targets::parse_target;
    use crate::wire::IcmpRepr;

    fn matcher() -> ScanMatcher {
        let no = |_: &str| Err("none".to_string());
        ScanMatcher {
            sources: SourceMap::single("198.18.0.1".parse().unwrap()),
            sport: 40000,
            cookie: Cookie::new([3; 16]),
            targets: TargetSet::build(&[parse_target("198.18.0.0/30", &no).unwrap()], &[]).unwrap(),
            ports: PortList::parse("22,80,81").unwrap(),
            ttl: 64,
            syn_options: true,
            mss: 1460,
        }
    }

    /// The server's answer to probe `index`, as its kernel would build it.
    fn answer(m: &ScanMatcher, index: u64, flags: TcpFlags, ack_delta: u32) -> Vec<u8> {
        let syn = Datagram::parse(&m.syn(index, 1, 1).unwrap()).unwrap();
        let Transport::Tcp(s) = syn.transport else {
            panic!()
        };
        let tcp = TcpRepr {
            src_port: s.dst_port,
            dst_port: s.src_port,
            seq: SeqNumber(99),
            ack: s.seq + 1 + ack_delta,
            flags,
            window: 65160,
            ..TcpRepr::default()
        };
        let ip = IpRepr {
            src: syn.ip.dst,
            dst: syn.ip.src,
            ..syn.ip.clone()
        };
        ip.emit(&tcp.emit(ip.src, ip.dst))
    }

    #[test]
    fn every_probe_index_round_trips_through_its_reply() {
        let m = matcher();
        assert_eq!(m.len(), 12);
        let sa = TcpFlags::SYN.union(TcpFlags::ACK);
        for i in 0..m.len() {
            let r = m
                .classify(&answer(&m, i, sa, 0), false, Timestamp(1))
                .unwrap();
            assert_eq!((r.index, r.verdict()), (i, &SynAnswer::Open));
            assert_eq!(Some((r.host(), r.port())), m.target(i));
        }
        let ra = TcpFlags::RST.union(TcpFlags::ACK);
        assert_eq!(
            m.classify(&answer(&m, 4, ra, 0), false, Timestamp(1))
                .unwrap()
                .reply
                .answer,
            SynAnswer::Closed
        );
    }

    #[test]
    fn fragments_and_esp_are_not_read_as_replies() {
        let m = matcher();
        let sa = TcpFlags::SYN.union(TcpFlags::ACK);
        let whole = answer(&m, 2, sa, 0);
        // the capture layer reassembles; a lone fragment is no answer
        let pieces = crate::wire::reassembly::fragment(&whole, 5, 16);
        assert_eq!(
            m.classify(&pieces[0], false, Timestamp(1)),
            Err(Ignored::OtherFlow)
        );
        let d = Datagram::parse(&whole).unwrap();
        let esp = IpRepr {
            protocol: 50,
            ..d.ip
        }
        .emit(&whole[20..]);
        assert_eq!(
            m.classify(&esp, false, Timestamp(1)),
            Err(Ignored::Unreadable)
        );
    }

    #[test]
    fn forged_replies_are_ignored() {
        let m = matcher();
        let sa = TcpFlags::SYN.union(TcpFlags::ACK);
        assert_eq!(
            m.classify(&answer(&m, 1, sa, 1), false, Timestamp(1)),
            Err(Ignored::WrongAck)
        );
        let mut other = matcher();
        other.cookie = Cookie::new([4; 16]);
        assert_eq!(
            m.classify(&answer(&other, 1, sa, 0), false, Timestamp(1)),
            Err(Ignored::WrongAck)
        );
        other = matcher();
        other.sport = 40001;
        assert_eq!(
            m.classify(&answer(&other, 1, sa, 0), false, Timestamp(1)),
            Err(Ignored::OtherFlow)
        );
        assert_eq!(
            m.classify(&answer(&m, 1, TcpFlags::ACK, 0), false, Timestamp(1)),
            Err(Ignored::Unexpected)
        );
        assert_eq!(
            m.classify(&[0x45, 0, 0], false, Timestamp(1)),
            Err(Ignored::Malformed)
        );
    }

    #[test]
    fn each_target_from_its_own_source() {
        let no = |_: &str| Err("none".to_string());
        let (lo, lan): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "198.18.0.1".parse().unwrap());
        let m = ScanMatcher {
            sources: SourceMap::from_spans(vec![
                (0x7f00_0000, 0x7fff_ffff, lo),
                (0xc612_0000, 0xc612_00ff, lan),
            ]),
            targets: TargetSet::build(
                &[
                    parse_target("127.0.0.1", &no).unwrap(),
                    parse_target("198.18.0.2", &no).unwrap(),
                ],
                &[],
            )
            .unwrap(),
            ..matcher()
        };
        let sa = TcpFlags::SYN.union(TcpFlags::ACK);
        for i in 0..m.len() {
            let syn = Datagram::parse(&m.syn(i, 1, 1).unwrap()).unwrap();
            let want = if i < 3 { lo } else { lan };
            assert_eq!(syn.ip.src, want, "probe {i}");
            let r = m.classify(&answer(&m, i, sa, 0), false, Timestamp(1));
            assert_eq!(r.map(|r| r.index), Ok(i));
        }
        // 198.18.0.2 answering to the loopback source is not our flow
        let mut wrong = answer(&m, 4, sa, 0);
        wrong[16..20].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            m.classify(&wrong, true, Timestamp(1)),
            Err(Ignored::OtherFlow)
        );
    }

    #[test]
    fn icmp_errors_quote_the_cookie() {
        let m = matcher();
        let syn = m.syn(5, 1, 1).unwrap();
        let (router, local): (IpAddr, IpAddr) = (
            "198.18.0.254".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
        );
        let wrap = |quote: &[u8]| {
            let ip = IpRepr {
                src: router,
                dst: local,
                protocol: 1,
                ttl: 60,
                ident: 0,
                later_fragment: false,
                flow_label: 0,
            };
            ip.emit(&IcmpRepr::emit_error(3, 13, quote, router, local))
        };
        let r = m.classify(&wrap(&syn), false, Timestamp(1)).unwrap();
        assert_eq!(r.index, 5);
        assert_eq!(
            r.reply.answer,
            SynAnswer::Filtered {
                error: crate::wire::IcmpError {
                    v6: false,
                    icmp_type: 3,
                    code: 13
                },
                from: router
            }
        );
        let mut forged = syn.clone();
        forged[26] ^= 0xff;
        assert_eq!(
            m.classify(&wrap(&forged), false, Timestamp(1)),
            Err(Ignored::WrongAck)
        );
    }
}
