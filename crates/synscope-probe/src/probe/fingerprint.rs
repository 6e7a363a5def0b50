//! Is it really the server that answered? A SYN-ACK proves that *something*
//! answered: a SYN proxy (Linux SYNPROXY, a load balancer, a scrubber) or a
//! tarpit answers for the server. This module fingerprints the segments one
//! host sends (TTL / hop limit, IP ID, window, option layout, timestamp clock)
//! and compares the SYN-ACK with what the same host sends later in the
//! connection, and an RST with what is known of the host. Pure: bytes and
//! timestamps in, findings out.

use crate::event::Timestamp;
use crate::wire::{IpRepr, Protocol, TcpFlags, TcpRepr};
use std::fmt;

/// What one received TCP segment says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The kernel's receive stamp.
    pub at: Timestamp,
    /// The segment's TCP flags.
    pub flags: TcpFlags,
    /// TTL (IPv4) or hop limit (IPv6) as received.
    pub ttl: u8,
    /// The IPv4 identification; none for IPv6.
    pub ip_id: Option<u16>,
    /// The TCP window as sent, unscaled.
    pub window: u16,
    /// The options in the order sent, p0f's letters: `M` MSS, `N` NOP, `W`
    /// window scale, `S` SACK permitted, `K` SACK blocks, `T` timestamps, `E`
    /// end of list, `?K` an unknown kind K (`M,S,T,N,W` is Linux's SYN-ACK).
    pub options: String,
    /// The MSS option's value, in bytes; None without one.
    pub mss: Option<u16>,
    /// The window scale option's shift count; None without one.
    pub wscale: Option<u8>,
    /// The timestamp option's TSval (the sender's clock, in its own ticks);
    /// None without timestamps.
    pub tsval: Option<u32>,
}

/// The option kinds in order, as p0f writes them; stops at a malformed option.
fn option_layout(opts: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut b = opts;
    while let Some(&k) = b.first() {
        let (name, len) = match k {
            0 => ("E".to_string(), b.len()),
            1 => ("N".to_string(), 1),
            _ => {
                let Some(&l) = b.get(1) else { break };
                let l = l as usize;
                if l < 2 || l > b.len() {
                    parts.push("!".to_string());
                    break;
                }
                let n = match k {
                    2 => "M".to_string(),
                    3 => "W".to_string(),
                    4 => "S".to_string(),
                    5 => "K".to_string(),
                    8 => "T".to_string(),
                    _ => format!("?{k}"),
                };
                (n, l)
            }
        };
        parts.push(name);
        b = &b[len.min(b.len())..];
    }
    parts.join(",")
}

impl Fingerprint {
    /// Fingerprints a received IPv4/IPv6 datagram carrying TCP; `None` for
    /// anything else or anything truncated (checksums are not checked here).
    pub fn of(datagram: &[u8], at: Timestamp) -> Option<Fingerprint> {
        let (ip, payload) = IpRepr::parse(datagram).ok()?;
        if ip.protocol != Protocol::TCP {
            return None;
        }
        let t = TcpRepr::parse_unchecked(payload).ok()?;
        let off = (*payload.get(12)? >> 4) as usize * 4;
        let opts = payload.get(TcpRepr::HEADER_LEN..off).unwrap_or(&[]);
        Some(Fingerprint {
            at,
            flags: t.flags,
            ttl: ip.ttl,
            ip_id: ip.src.is_ipv4().then_some(ip.ident),
            window: t.window,
            options: option_layout(opts),
            mss: t.options.mss,
            wscale: t.options.window_scale,
            tsval: t.options.timestamps.map(|(v, _)| v),
        })
    }
}

/// How a host numbers its IPv4 datagrams, judged from several of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpIdBehaviour {
    /// Always 0 (Linux with DF set on a listener's SYN-ACK and on RSTs).
    Zero,
    /// The same non-zero value each time.
    Constant,
    /// Each one a little above the one before (a counter).
    Incrementing,
    /// Anything else.
    Random,
}

/// Steps up to this size between consecutive IDs count as a counter.
const ID_STEP_MAX: u16 = 1024;

/// The behaviour of a sequence of IP IDs in arrival order; `None` for fewer than two.
pub fn ip_id_behaviour(ids: &[u16]) -> Option<IpIdBehaviour> {
    if ids.len() < 2 {
        return None;
    }
    if ids.iter().all(|&i| i == 0) {
        return Some(IpIdBehaviour::Zero);
    }
    if ids.windows(2).all(|w| w[0] == w[1]) {
        return Some(IpIdBehaviour::Constant);
    }
    if ids
        .windows(2)
        .all(|w| (1..=ID_STEP_MAX).contains(&w[1].wrapping_sub(w[0])))
    {
        return Some(IpIdBehaviour::Incrementing);
    }
    Some(IpIdBehaviour::Random)
}

/// One way a SYN-ACK (or an RST) differs from the host's other segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// TTL / hop limit: the SYN-ACK's and the later segments' (a proxy sits
    /// a different number of hops away, or starts from another initial TTL).
    Ttl {
        /// The SYN-ACK's.
        syn_ack: u8,
        /// The last later segment's that differs.
        later: u8,
    },
    /// The SYN-ACK offered a zero window, the later segments a non-zero one
    /// (Linux SYNPROXY answers with window 0).
    ZeroWindow {
        /// The last non-zero window offered later.
        later: u16,
    },
    /// Timestamps on the SYN-ACK but not later, or the other way round
    /// (RFC 7323: once negotiated, every segment carries them).
    Timestamps {
        /// The SYN-ACK carried timestamps.
        syn_ack: bool,
        /// The last later segment (not an RST) carried them.
        later: bool,
    },
    /// The timestamp clock ran backwards (more than a SYN cookie's 63 ticks)
    /// or faster than 1 MHz (with slack)
    /// between the SYN-ACK and a later segment: another clock.
    TsClock {
        /// The SYN-ACK's TSval.
        syn_ack: u32,
        /// The later segment's TSval.
        later: u32,
        /// Milliseconds between the two segments' receive stamps.
        elapsed_ms: u64,
    },
    /// An RST whose TTL differs from the host's other segments.
    RstTtl {
        /// The RST's TTL.
        rst: u8,
        /// The TTL of the host's last segment.
        host: u8,
    },
    /// An RST whose IP ID is far from the host's counter.
    RstIpId {
        /// The RST's IP ID.
        rst: u16,
        /// The IP ID of the host's last segment.
        host_last: u16,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Ttl { syn_ack, later } => write!(f, "ttl {syn_ack}, later {later}"),
            Mismatch::ZeroWindow { later } => write!(f, "window 0, later {later}"),
            Mismatch::Timestamps { syn_ack, later } => {
                let s = |b: &bool| if *b { "timestamps" } else { "none" };
                write!(f, "options {}, later {}", s(syn_ack), s(later))
            }
            Mismatch::TsClock {
                syn_ack,
                later,
                elapsed_ms,
            } => write!(f, "tsval {syn_ack}, {later} after {elapsed_ms} ms"),
            Mismatch::RstTtl { rst, host } => write!(f, "rst ttl {rst}, host {host}"),
            Mismatch::RstIpId { rst, host_last } => {
                write!(f, "rst ip id {rst}, host's last {host_last}")
            }
        }
    }
}

/// The fastest timestamp clock taken as one host's: 1 MHz (Linux 6.7+ can
/// run TSval in microseconds, `tcp_usec_ts`; RFC 7323's usual clock is
/// 1 kHz). Another host's clock has an unrelated offset, 32 random bits, and
/// almost never lands this close ...
const TS_HZ_MAX: u64 = 1_000_000;
/// ... plus this much slack in ticks (stamps are taken at different layers).
const TS_SLACK: u64 = 1000;
/// How far back a later TSval may be: a SYN cookie's SYN-ACK (Linux under a
/// SYN flood) carries its options in the TSval's low 6 bits, so the real
/// clock after it may read up to 63 ticks less.
const TS_BACK_MAX: u32 = 64;

/// Compares a SYN-ACK with the segments the same address sent later in the
/// connection. Empty: nothing contradicts the SYN-ACK (or nothing came later:
/// see [`Verification`]).
pub fn compare(syn_ack: &Fingerprint, later: &[Fingerprint]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    // every later segment with another TTL than the SYN-ACK's: the last one
    // (the server's, when a proxy first answers for itself)
    if let Some(l) = later.iter().rev().find(|l| l.ttl != syn_ack.ttl) {
        out.push(Mismatch::Ttl {
            syn_ack: syn_ack.ttl,
            later: l.ttl,
        });
    }
    if syn_ack.window == 0
        && let Some(l) = later.iter().rev().find(|l| l.window != 0)
    {
        out.push(Mismatch::ZeroWindow { later: l.window });
    }
    let later_ts = later.iter().filter(|l| !l.flags.contains(TcpFlags::RST));
    if let Some(l) = later_ts.clone().next_back()
        && syn_ack.tsval.is_some() != l.tsval.is_some()
    {
        out.push(Mismatch::Timestamps {
            syn_ack: syn_ack.tsval.is_some(),
            later: l.tsval.is_some(),
        });
    }
    if let Some(s) = syn_ack.tsval {
        for l in later_ts {
            let Some(v) = l.tsval else { continue };
            let elapsed_ms = l.at.saturating_sub(syn_ack.at).as_millis() as u64;
            let ticks = v.wrapping_sub(s);
            let back = s.wrapping_sub(v);
            // backwards (more than half the space, beyond a SYN cookie's low
            // bits) or faster than 1 MHz
            let bad = if ticks > u32::MAX / 2 {
                back > TS_BACK_MAX
            } else {
                ticks as u64 > elapsed_ms * TS_HZ_MAX / 1000 + TS_SLACK
            };
            if bad {
                out.push(Mismatch::TsClock {
                    syn_ack: s,
                    later: v,
                    elapsed_ms,
                });
                break;
            }
        }
    }
    out
}

/// Checks an RST against what is known of the host (its SYN-ACK or later
/// segments, or its RSTs for closed ports, in arrival order): another TTL, or
/// an IP ID far from a host that counts, points at an injected or spoofed RST.
pub fn check_rst(rst: &Fingerprint, host: &[Fingerprint]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let Some(last) = host.last() else {
        return out;
    };
    if rst.ttl != last.ttl {
        out.push(Mismatch::RstTtl {
            rst: rst.ttl,
            host: last.ttl,
        });
    }
    let ids: Vec<u16> = host.iter().filter_map(|h| h.ip_id).collect();
    if let (Some(IpIdBehaviour::Incrementing), Some(id), Some(&prev)) =
        (ip_id_behaviour(&ids), rst.ip_id, ids.last())
        && !(1..=ID_STEP_MAX).contains(&id.wrapping_sub(prev))
        // a Linux RST from a closed port or a reset socket carries ID 0
        && id != 0
    {
        out.push(Mismatch::RstIpId {
            rst: id,
            host_last: prev,
        });
    }
    out
}

/// What completing the handshake showed about a SYN-ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The later segments look like the SYN-ACK's sender.
    Consistent,
    /// The SYN-ACK came from something else than the later segments.
    SynProxy(Vec<Mismatch>),
    /// Nothing came after the SYN-ACK to compare with.
    NoLaterSegment,
}

impl Verification {
    /// Compares a SYN-ACK with the segments its host sent later ([`compare`]).
    pub fn of(syn_ack: &Fingerprint, later: &[Fingerprint]) -> Verification {
        if later.is_empty() {
            return Verification::NoLaterSegment;
        }
        let m = compare(syn_ack, later);
        if m.is_empty() {
            Verification::Consistent
        } else {
            Verification::SynProxy(m)
        }
    }

    /// `verified`, `syn-proxy` or `unverified`.
    pub fn name(&self) -> &'static str {
        match self {
            Verification::Consistent => "verified",
            Verification::SynProxy(_) => "syn-proxy",
            Verification::NoLaterSegment => "unverified",
        }
    }

    /// The evidence, comma-separated: `ttl 62, later 61, window 0, later 63`.
    pub fn evidence(&self) -> String {
        match self {
            Verification::SynProxy(m) => m
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        }
    }
}

/// A verification's findings: its result (`verified`, `syn-proxy`,
/// `unverified`), the evidence, the SYN-ACK's and the later segments'
/// fingerprints. The report maps it to its JSON shape
/// (`report::json::VerificationOut`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationJson {
    /// [`Verification::name`].
    pub result: &'static str,
    /// The mismatches found; empty unless `syn-proxy`.
    pub evidence: Vec<Mismatch>,
    /// The SYN-ACK's fingerprint.
    pub syn_ack: Fingerprint,
    /// The fingerprints of the segments compared with it.
    pub later: Vec<Fingerprint>,
}

impl VerificationJson {
    /// Verifies `syn_ack` against `later` and keeps both for the report.
    pub fn new(syn_ack: &Fingerprint, later: &[Fingerprint]) -> VerificationJson {
        let v = Verification::of(syn_ack, later);
        VerificationJson {
            result: v.name(),
            evidence: match v {
                Verification::SynProxy(m) => m,
                _ => Vec::new(),
            },
            syn_ack: syn_ack.clone(),
            later: later.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::fixture;

    /// Segments captured on the routed lab's client (tests/lab_verify.rs):
    /// port 8090 behind router 3's nftables `synproxy`, port 80 straight to
    /// the server, and the raw tarpit.
    fn lab(name: &str) -> &'static [u8] {
        match name {
            "proxy_synack" => include_bytes!("fixtures/synproxy_synack_v4.bin"),
            "proxy_ack" => include_bytes!("fixtures/synproxy_proxy_ack_v4.bin"),
            "proxy_server_ack" => include_bytes!("fixtures/synproxy_server_ack_v4.bin"),
            "proxy_server_fin_ack" => include_bytes!("fixtures/synproxy_server_finack_ack_v4.bin"),
            "server_synack" => include_bytes!("fixtures/server_synack_v4.bin"),
            "server_fin_ack" => include_bytes!("fixtures/server_fin_ack_v4.bin"),
            "tarpit_synack" => include_bytes!("fixtures/tarpit_synack_v4.bin"),
            _ => panic!("no fixture {name}"),
        }
    }

    fn fp(bytes: &[u8], ms: u64) -> Fingerprint {
        Fingerprint::of(bytes, Timestamp(1_000_000_000 + ms * 1_000_000)).unwrap()
    }

    #[test]
    fn fingerprints_of_real_syn_acks() {
        let p = fp(lab("proxy_synack"), 0);
        assert_eq!(
            (p.ttl, p.ip_id, p.window, p.options.as_str()),
            (62, Some(0), 0, "M,S,T,N,W")
        );
        assert_eq!(
            (p.mss, p.wscale, p.tsval),
            (Some(1460), Some(7), Some(4928087))
        );
        let s = fp(lab("server_synack"), 0);
        assert_eq!(
            (s.ttl, s.window, s.wscale, s.options.as_str()),
            (61, 65160, Some(10), "M,S,T,N,W")
        );
        let t = fp(lab("tarpit_synack"), 0);
        assert_eq!(
            (t.ttl, t.ip_id, t.window, t.options.as_str(), t.tsval),
            (61, Some(1), 29200, "M", None)
        );
        let k = fp(fixture("synack_v6"), 0);
        assert_eq!(k.ip_id, None);
        let later = fp(lab("server_fin_ack"), 200);
        assert_eq!(
            (later.ttl, later.ip_id, later.options.as_str()),
            (61, Some(0xd31a), "N,N,T")
        );
        assert_eq!(
            Fingerprint::of(&lab("server_synack")[..30], Timestamp(0)),
            None
        );
        assert_eq!(
            Fingerprint::of(fixture("icmp_admin_v4"), Timestamp(0)),
            None
        );
    }

    #[test]
    fn option_layouts_stop_at_malformed_options() {
        assert_eq!(option_layout(&[2, 4, 5, 0xb4, 1, 1, 8, 10]), "M,N,N,!");
        assert_eq!(option_layout(&[30, 0]), "!");
        assert_eq!(option_layout(&[30]), "");
        assert_eq!(option_layout(&[254, 2, 0, 0]), "?254,E");
    }

    #[test]
    fn the_synproxys_syn_ack_differs_from_the_server_behind_it() {
        let syn_ack = fp(lab("proxy_synack"), 0);
        let later = [
            fp(lab("proxy_ack"), 0),
            fp(lab("proxy_server_ack"), 0),
            fp(lab("proxy_server_fin_ack"), 202),
        ];
        let v = Verification::of(&syn_ack, &later);
        assert_eq!(
            v,
            Verification::SynProxy(vec![
                Mismatch::Ttl {
                    syn_ack: 62,
                    later: 61
                },
                Mismatch::ZeroWindow { later: 64 },
            ])
        );
        assert_eq!(v.evidence(), "ttl 62, later 61, window 0, later 64");
        // only the proxy's own window update seen: its window still gives it away
        let v = Verification::of(&syn_ack, &later[..1]);
        assert_eq!(v.name(), "syn-proxy");
        let j = VerificationJson::new(&syn_ack, &later);
        assert_eq!(j.result, "syn-proxy");
        assert_eq!(j.evidence.len(), 2);
        assert_eq!(j.syn_ack.options, "M,S,T,N,W");
    }

    #[test]
    fn a_real_server_is_consistent_and_silence_is_unverified() {
        let syn_ack = fp(lab("server_synack"), 0);
        let later = [fp(lab("server_fin_ack"), 204)];
        assert_eq!(Verification::of(&syn_ack, &later), Verification::Consistent);
        assert_eq!(
            Verification::of(&fp(lab("tarpit_synack"), 0), &[]),
            Verification::NoLaterSegment
        );
    }

    #[test]
    fn another_timestamp_clock_or_lost_timestamps_are_evidence() {
        let syn_ack = fp(lab("server_synack"), 0);
        let mut later = fp(lab("server_fin_ack"), 204);
        // 10 000 s of 1 MHz ticks in 204 ms
        later.tsval = Some(syn_ack.tsval.unwrap().wrapping_add(1_000_000_000));
        assert!(matches!(
            compare(&syn_ack, &[later.clone()])[..],
            [Mismatch::TsClock {
                elapsed_ms: 204,
                ..
            }]
        ));
        later.tsval = Some(syn_ack.tsval.unwrap() - 65);
        assert_eq!(compare(&syn_ack, &[later.clone()]).len(), 1, "backwards");
        // a SYN cookie's low bits: up to 63 back is the same clock
        later.tsval = Some(syn_ack.tsval.unwrap() - 63);
        assert!(compare(&syn_ack, &[later.clone()]).is_empty());
        later.tsval = None;
        assert_eq!(
            compare(&syn_ack, &[later]),
            vec![Mismatch::Timestamps {
                syn_ack: true,
                later: false
            }]
        );
        // a 1 kHz clock over 204 ms is fine, and a 1 MHz one (tcp_usec_ts)
        let mut ok = fp(lab("server_fin_ack"), 204);
        ok.tsval = Some(syn_ack.tsval.unwrap() + 204);
        assert!(compare(&syn_ack, &[ok.clone()]).is_empty());
        ok.tsval = Some(syn_ack.tsval.unwrap() + 204_000);
        assert!(compare(&syn_ack, &[ok]).is_empty());
    }

    #[test]
    fn ip_id_behaviours() {
        assert_eq!(ip_id_behaviour(&[0]), None);
        assert_eq!(ip_id_behaviour(&[0, 0, 0]), Some(IpIdBehaviour::Zero));
        assert_eq!(ip_id_behaviour(&[7, 7]), Some(IpIdBehaviour::Constant));
        assert_eq!(
            ip_id_behaviour(&[65534, 65535, 2, 9]),
            Some(IpIdBehaviour::Incrementing)
        );
        assert_eq!(
            ip_id_behaviour(&[5600, 100, 40000]),
            Some(IpIdBehaviour::Random)
        );
    }

    #[test]
    fn an_rst_from_elsewhere_is_told_apart() {
        let host = [fp(lab("server_synack"), 0), fp(lab("server_fin_ack"), 204)];
        let mut rst = fp(fixture("rst_v4"), 300);
        rst.ttl = 61;
        rst.ip_id = Some(0);
        assert!(check_rst(&rst, &host).is_empty(), "Linux: same TTL, ID 0");
        rst.ttl = 62;
        assert_eq!(
            check_rst(&rst, &host),
            vec![Mismatch::RstTtl { rst: 62, host: 61 }]
        );
        // a counting host: an ID far from its counter
        let mut counting = host.to_vec();
        counting[0].ip_id = Some(100);
        counting[1].ip_id = Some(101);
        rst.ttl = 61;
        rst.ip_id = Some(40_000);
        assert_eq!(
            check_rst(&rst, &counting),
            vec![Mismatch::RstIpId {
                rst: 40_000,
                host_last: 101
            }]
        );
        rst.ip_id = Some(102);
        assert!(check_rst(&rst, &counting).is_empty());
        assert!(check_rst(&rst, &[]).is_empty());
    }
}
