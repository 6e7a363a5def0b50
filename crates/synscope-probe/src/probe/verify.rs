//! `--verify` for SYN probes (ping; scan later): after a SYN-ACK, complete the
//! handshake from raw, draw one more segment from the server, compare it with
//! the SYN-ACK ([`super::fingerprint`]) and reset the connection. Canary ports
//! tell a host that answers every port. Sans-IO: captured packets and
//! timestamps in, datagrams to send and findings out.

use super::fingerprint::{Fingerprint, Mismatch, Verification, VerificationJson, check_rst};
use crate::event::Timestamp;
use crate::wire::{IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a verification watches for the server's segments after the
/// SYN-ACK: four round trips, at least this ...
pub const VERIFY_MIN_WAIT: Duration = Duration::from_millis(20);

/// Segments of a host kept as the reference for its RSTs.
const HOST_MEMORY: usize = 64;

/// What `--verify` found out about one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// A SYN-ACK, compared with the server's later segments.
    Handshake(VerificationJson),
    /// An RST whose TTL or IP ID is not the host's: injected or spoofed.
    SuspectRst {
        /// How the RST differs from the host's other segments.
        evidence: Vec<Mismatch>,
    },
    /// The host answered canary ports too: the SYN-ACK proves nothing.
    AnswersEveryPort,
}

/// The four counts a run's checks add up to, in ping's and scan's summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// The SYN-ACK's host sent the later segments.
    Verified,
    /// A SYN proxy answered: the later segments are not the SYN-ACK's host.
    SynProxy,
    /// Nothing came after the SYN-ACK to compare.
    Unverified,
    /// An RST whose TTL or IP ID is not the host's.
    SuspectRst,
}

impl ProbeCheck {
    /// The count this check adds to; none for a host that answers every
    /// port, which the summaries count per host.
    pub fn tally(&self) -> Option<Tally> {
        match self {
            ProbeCheck::Handshake(v) => Some(match v.result {
                "verified" => Tally::Verified,
                "syn-proxy" => Tally::SynProxy,
                _ => Tally::Unverified,
            }),
            ProbeCheck::SuspectRst { .. } => Some(Tally::SuspectRst),
            ProbeCheck::AnswersEveryPort => None,
        }
    }

    /// The short text after the verdict: `syn-proxy: ttl 62, later 61`.
    pub fn text(&self) -> String {
        let list = |m: &[Mismatch]| {
            m.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            ProbeCheck::Handshake(v) => match v.result {
                "syn-proxy" => format!("syn-proxy: {}", list(&v.evidence)),
                "verified" => "verified".to_string(),
                _ => "unverified: nothing came after the SYN-ACK".to_string(),
            },
            ProbeCheck::SuspectRst { evidence } => {
                format!("rst not from the host?: {}", list(evidence))
            }
            ProbeCheck::AnswersEveryPort => "answers every port".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Flow {
    /// The destination port of the probe (the host's side of the flow).
    dst_port: u16,
    syn_ack: Fingerprint,
    /// Our next sequence number (ISN + 1) and theirs (their ISN + 1).
    snd_nxt: SeqNumber,
    rcv_nxt: SeqNumber,
    their_tsval: Option<u32>,
    later: Vec<Fingerprint>,
    deadline: Timestamp,
}

/// Verifies SYN-ACKs from one destination address, any number at once (one
/// per pair of ports: ping varies its local port, scan its destination port).
#[derive(Debug)]
pub struct Verifier {
    src: IpAddr,
    dst: SocketAddr,
    ttl: u8,
    /// By (destination port, local port).
    flows: BTreeMap<(u16, u16), Flow>,
    /// What the host sent so far (verified later segments, RSTs of
    /// canaries), in arrival order: the reference for RSTs.
    host: Vec<Fingerprint>,
}

/// A finished verification: the probe's local port and its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The probe's local port.
    pub src_port: u16,
    /// The probe's destination port (the host's side).
    pub dst_port: u16,
    /// What the verification found.
    pub check: ProbeCheck,
    /// The RST that ends the server's side of the connection, to send now.
    pub rst: Vec<u8>,
}

impl Verifier {
    /// A verifier for SYN-ACKs from `dst` to `src`; its segments go out with `ttl`.
    pub fn new(src: IpAddr, dst: SocketAddr, ttl: u8) -> Verifier {
        Verifier {
            src,
            dst,
            ttl,
            flows: BTreeMap::new(),
            host: Vec::new(),
        }
    }

    fn datagram(&self, src_port: u16, tcp: TcpRepr) -> Vec<u8> {
        let tcp = TcpRepr { src_port, ..tcp };
        let ip = IpRepr {
            src: self.src,
            dst: self.dst.ip(),
            protocol: Protocol::TCP,
            ttl: self.ttl,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        ip.emit(&tcp.emit(ip.src, ip.dst))
    }

    fn segment(&self, f: &Flow, seq: SeqNumber, flags: TcpFlags, tsval: u32) -> TcpRepr {
        TcpRepr {
            dst_port: f.dst_port,
            seq,
            ack: f.rcv_nxt,
            flags,
            window: 502,
            options: TcpOptions {
                timestamps: f.their_tsval.map(|e| (tsval, e)),
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        }
    }

    /// Starts verifying the SYN-ACK `data` (captured at `at`, `rtt` after our
    /// SYN with ISN `isn` from `src_port`): returns the ACK that completes the
    /// handshake and a keepalive-style probe (one below our next sequence
    /// number, no data) that the server answers at once with an ACK. Nothing
    /// for a packet that is not a SYN-ACK.
    pub fn start(
        &mut self,
        src_port: u16,
        isn: SeqNumber,
        data: &[u8],
        at: Timestamp,
        rtt: Duration,
        tsval: u32,
    ) -> Vec<Vec<u8>> {
        let probe = Probe {
            dst_port: self.dst.port(),
            src_port,
            isn,
            acked_at: at,
        };
        self.start_probe(probe, data, at, rtt, tsval)
    }

    /// [`Verifier::start`] for a probe to any port of the host (scan: one
    /// local port, many destination ports).
    pub fn start_probe(
        &mut self,
        probe: Probe,
        data: &[u8],
        at: Timestamp,
        rtt: Duration,
        tsval: u32,
    ) -> Vec<Vec<u8>> {
        let Probe {
            dst_port,
            src_port,
            isn,
            acked_at,
        } = probe;
        let Some(syn_ack) = Fingerprint::of(data, at) else {
            return Vec::new();
        };
        let Ok((_, payload)) = IpRepr::parse(data) else {
            return Vec::new();
        };
        let Ok(t) = TcpRepr::parse_unchecked(payload) else {
            return Vec::new();
        };
        if !t.flags.contains(TcpFlags::SYN.union(TcpFlags::ACK)) || t.src_port != dst_port {
            return Vec::new();
        }
        let wait = (rtt * 4).max(VERIFY_MIN_WAIT);
        let f = Flow {
            dst_port,
            snd_nxt: isn + 1,
            rcv_nxt: t.seq + 1,
            their_tsval: syn_ack.tsval,
            syn_ack,
            later: Vec::new(),
            deadline: at.max(acked_at) + wait,
        };
        let ack = self.segment(&f, f.snd_nxt, TcpFlags::ACK, tsval);
        let probe = self.segment(&f, isn, TcpFlags::ACK, tsval);
        let out = vec![self.datagram(src_port, ack), self.datagram(src_port, probe)];
        self.flows.insert((dst_port, src_port), f);
        out
    }

    /// Feeds a captured packet from the destination; true when it belonged to
    /// a flow being verified (and was recorded).
    pub fn on_packet(&mut self, data: &[u8], at: Timestamp) -> bool {
        let Ok((ip, payload)) = IpRepr::parse(data) else {
            return false;
        };
        if ip.src != self.dst.ip() || ip.dst != self.src || ip.protocol != Protocol::TCP {
            return false;
        }
        let Ok(t) = TcpRepr::parse_unchecked(payload) else {
            return false;
        };
        let Some(f) = self.flows.get_mut(&(t.src_port, t.dst_port)) else {
            return false;
        };
        let Some(fp) = Fingerprint::of(data, at) else {
            return false;
        };
        // a retransmitted SYN-ACK says nothing new
        if !t.flags.contains(TcpFlags::SYN) {
            f.later.push(fp);
        }
        true
    }

    /// Ends the verifications whose wait is over by `now`.
    pub fn on_time(&mut self, now: Timestamp, tsval: u32) -> Vec<Verified> {
        let done: Vec<(u16, u16)> = self
            .flows
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for key in done {
            let Some(f) = self.flows.remove(&key) else {
                continue;
            };
            let v = VerificationJson::new(&f.syn_ack, &f.later);
            if v.result == Verification::Consistent.name() {
                self.host.push(f.syn_ack.clone());
                self.host.extend(f.later.iter().cloned());
                self.forget_old();
            }
            let rst = self.segment(&f, f.snd_nxt, TcpFlags::RST.union(TcpFlags::ACK), tsval);
            out.push(Verified {
                src_port: key.1,
                dst_port: key.0,
                check: ProbeCheck::Handshake(v),
                rst: self.datagram(key.1, rst),
            });
        }
        out
    }

    /// The earliest end of a verification under way.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.flows.values().map(|f| f.deadline).min()
    }

    /// Verifications under way.
    pub fn outstanding(&self) -> usize {
        self.flows.len()
    }

    /// Learns what the host's RSTs look like (e.g. from a closed canary port).
    pub fn learn(&mut self, data: &[u8], at: Timestamp) {
        self.host.extend(Fingerprint::of(data, at));
        self.forget_old();
    }

    /// Keeps the last [`HOST_MEMORY`] segments of the host (a scan verifies
    /// many ports of one host).
    fn forget_old(&mut self) {
        let over = self.host.len().saturating_sub(HOST_MEMORY);
        self.host.drain(..over);
    }

    /// Checks an RST that answered a probe against what is known of the host.
    pub fn check_rst(&self, data: &[u8], at: Timestamp) -> Option<ProbeCheck> {
        let rst = Fingerprint::of(data, at)?;
        let evidence = check_rst(&rst, &self.host);
        (!evidence.is_empty()).then_some(ProbeCheck::SuspectRst { evidence })
    }
}

/// Which probe a SYN-ACK answered: the host's port, our port, our ISN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The host's port the SYN went to.
    pub dst_port: u16,
    /// Our port it came from.
    pub src_port: u16,
    /// Our initial sequence number (the SYN's).
    pub isn: SeqNumber,
    /// When our ACK goes out: the wait for the server's segments runs from
    /// then (a busy reader may take the SYN-ACK from its queue late).
    pub acked_at: Timestamp,
}

/// Picks `n` canary ports (closed on any normal host): distinct, in the
/// dynamic range 49152-65535, never `avoid`; `random` supplies the randomness.
pub fn canary_ports(n: usize, avoid: u16, random: impl FnMut() -> u16) -> Vec<u16> {
    canary_ports_avoiding(n, |p| p == avoid, random)
}

/// [`canary_ports`] avoiding every port `avoid` says yes to (a scan's ports):
/// fewer than `n` (maybe none) when the draws keep hitting them.
pub fn canary_ports_avoiding(
    n: usize,
    avoid: impl Fn(u16) -> bool,
    mut random: impl FnMut() -> u16,
) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    // bounded: 16 384 ports to draw from, a few wanted
    for _ in 0..n * 64 {
        if out.len() == n {
            break;
        }
        let p = 49152 + random() % 16384;
        if !avoid(p) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Did the canaries show a host that answers every port? All of them must
/// have answered with a SYN-ACK (`answered_syn_ack` per canary).
pub fn answers_every_port(answered_syn_ack: &[bool]) -> bool {
    !answered_syn_ack.is_empty() && answered_syn_ack.iter().all(|&b| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(name: &str) -> &'static [u8] {
        match name {
            "proxy_synack" => include_bytes!("fixtures/synproxy_synack_v4.bin"),
            "proxy_ack" => include_bytes!("fixtures/synproxy_proxy_ack_v4.bin"),
            "proxy_server_ack" => include_bytes!("fixtures/synproxy_server_ack_v4.bin"),
            "server_synack" => include_bytes!("fixtures/server_synack_v4.bin"),
            "server_fin_ack" => include_bytes!("fixtures/server_fin_ack_v4.bin"),
            _ => panic!("no fixture {name}"),
        }
    }

    fn verifier(port: u16) -> Verifier {
        Verifier::new(
            "198.18.1.1".parse().unwrap(),
            SocketAddr::new("198.18.4.2".parse().unwrap(), port),
            64,
        )
    }

    const T0: Timestamp = Timestamp(1_000_000_000);

    #[test]
    fn the_handshake_is_completed_probed_and_reset() {
        let mut v = verifier(8090);
        // the proxy's SYN-ACK to sport 56031, ISN 2416171983, seq 4111589082
        let out = v.start(
            56031,
            SeqNumber(2416171983),
            lab("proxy_synack"),
            T0,
            Duration::from_micros(93),
            903609345,
        );
        assert_eq!(out.len(), 2);
        let (_, ack) = IpRepr::parse(&out[0]).unwrap();
        let ack = TcpRepr::parse_unchecked(ack).unwrap();
        assert_eq!(ack.flags, TcpFlags::ACK);
        assert_eq!((ack.seq.0, ack.ack.0), (2416171984, 4111589083));
        assert_eq!(ack.options.timestamps, Some((903609345, 4928087)));
        let (_, probe) = IpRepr::parse(&out[1]).unwrap();
        let probe = TcpRepr::parse_unchecked(probe).unwrap();
        assert_eq!((probe.seq.0, probe.payload.len()), (2416171983, 0));
        assert_eq!(v.next_deadline(), Some(T0 + VERIFY_MIN_WAIT));

        assert!(v.on_packet(lab("proxy_ack"), T0 + Duration::from_micros(200)));
        assert!(v.on_packet(lab("proxy_server_ack"), T0 + Duration::from_micros(202)));
        // another flow's segment is not ours
        assert!(!v.on_packet(lab("server_fin_ack"), T0));
        assert!(v.on_time(T0 + Duration::from_millis(19), 1).is_empty());
        let done = v.on_time(T0 + VERIFY_MIN_WAIT, 903609400);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].src_port, 56031);
        assert_eq!(
            done[0].check.text(),
            "syn-proxy: ttl 62, later 61, window 0, later 63"
        );
        let (_, rst) = IpRepr::parse(&done[0].rst).unwrap();
        let rst = TcpRepr::parse_unchecked(rst).unwrap();
        assert_eq!(rst.flags, TcpFlags::RST.union(TcpFlags::ACK));
        assert_eq!(rst.seq.0, 2416171984);
        assert_eq!(v.outstanding(), 0);
    }

    #[test]
    fn a_real_server_is_verified_and_then_known_to_rst_checks() {
        let mut v = verifier(80);
        let out = v.start(
            33165,
            SeqNumber(4242426286),
            lab("server_synack"),
            T0,
            Duration::from_millis(10),
            1,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(v.next_deadline(), Some(T0 + Duration::from_millis(40)));
        assert!(v.on_packet(lab("server_fin_ack"), T0 + Duration::from_millis(1)));
        let done = v.on_time(T0 + Duration::from_secs(1), 1);
        assert_eq!(done[0].check.text(), "verified");
        // the server's TTL is 61: an RST with 62 is someone else's
        let mut rst = crate::wire::testutil::fixture("rst_v4").to_vec();
        assert_eq!(
            v.check_rst(&rst, T0),
            Some(ProbeCheck::SuspectRst {
                evidence: vec![Mismatch::RstTtl { rst: 64, host: 61 }]
            })
        );
        rst[8] = 61;
        assert_eq!(v.check_rst(&rst, T0), None);
        // a SYN-ACK never followed by anything stays unverified
        v.start(
            1000,
            SeqNumber(1),
            lab("server_synack"),
            T0,
            Duration::ZERO,
            1,
        );
        let done = v.on_time(T0 + VERIFY_MIN_WAIT, 1);
        assert_eq!(
            done[0].check.text(),
            "unverified: nothing came after the SYN-ACK"
        );
        // not a SYN-ACK: nothing to verify
        assert!(
            v.start(1, SeqNumber(1), &rst, T0, Duration::ZERO, 1)
                .is_empty()
        );
        assert!(
            v.start(1, SeqNumber(1), &[0x45], T0, Duration::ZERO, 1)
                .is_empty()
        );
    }

    #[test]
    fn canaries() {
        let mut n = 0u16;
        let ports = canary_ports(3, 49152 + 1, || {
            n += 1;
            n
        });
        assert_eq!(ports, vec![49152 + 2, 49152 + 3, 49152 + 4]);
        // a stuck random source ends, with what it could get
        assert_eq!(canary_ports(3, 0, || 7), vec![49159]);
        assert!(answers_every_port(&[true, true, true]));
        assert!(!answers_every_port(&[true, false, true]));
        assert!(!answers_every_port(&[]));
    }
}
