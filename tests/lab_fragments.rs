//! Replies behind IPv6 extension headers and replies that arrive IP-fragmented,
//! from real peers in a namespace lab:
//! - NSD answers a 3.4 KB TXT set over UDP in IP fragments (IPv4 and IPv6);
//!   `synscope dns --bufsize 4096` must get the same answer as kdig, and a
//!   small buffer must still end in TC and a retry over TCP.
//! - a raw responder in the server namespace answers SYNs with valid SYN-ACKs
//!   behind Hop-by-Hop + Destination Options headers, an atomic Fragment
//!   header, a chain of 7 headers (deeper than the capture filter walks), in
//!   IPv4 or IPv6 fragments (sent last fragment first), or inside ESP; ping,
//!   scan and trace must see the handshake, and count ESP as unreadable;
//!   a SYN-ACK whose fragments come 30 ms apart is timed to its last fragment.
//!
//! Needs root, `ip`, `nft`, `nsd`, `kdig`, `tcpdump`. `SYNSCOPE_BIN=path`
//! runs another synscope binary (e.g. an older build) against the same peers.

use serde_json::Value;
use std::net::IpAddr;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use synscope::io::RawSender;
use synscope::io::bpf::FlowFilter;
use synscope::io::capture::BlockingCapture;
use synscope::wire::datagram::Checksums;
use synscope::wire::ip::insert_v6_ext_headers;
use synscope::wire::reassembly::fragment;
use synscope::wire::{
    Datagram, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6, spawn_in_netns};

mod common;

fn bin() -> String {
    std::env::var("SYNSCOPE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_synscope").to_string())
}

fn synscope(lab: &Lab, args: &[&str]) -> Output {
    let out = lab.client_command(bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    out
}

fn json_of(out: &Output) -> Value {
    if out.stdout.starts_with(b"{") {
        common::schema::check_report(&String::from_utf8_lossy(&out.stdout));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// ---------------------------------------------------------------- DNS

/// The TXT strings of kdig's answer, sorted, and the transport it says it used.
fn kdig_txt(lab: &Lab, args: &[&str]) -> (Vec<String>, String) {
    let o = lab
        .client_command("kdig")
        .args(["+timeout=2", "+retry=1"])
        .args(args)
        .output()
        .expect("kdig (apt-get install knot-dnsutils)");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut in_answer = false;
    let mut txt = Vec::new();
    for l in text.lines() {
        if l.starts_with(";; ") && l.ends_with("SECTION:") {
            in_answer = l == ";; ANSWER SECTION:";
            continue;
        }
        if in_answer && l.contains("\tTXT\t") {
            txt.extend(quoted_strings(l));
        }
    }
    txt.sort();
    let transport = text
        .lines()
        .find(|l| l.starts_with(";; From"))
        .map(|l| {
            if l.contains("(UDP)") {
                "udp".to_string()
            } else {
                "tcp".to_string()
            }
        })
        .unwrap_or_else(|| panic!("no ';; From' in kdig output:\n{text}"));
    (txt, transport)
}

/// The "..." strings of a TXT record's text form.
fn quoted_strings(s: &str) -> Vec<String> {
    s.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// synscope's TXT strings (sorted), its transport and its reply size.
fn synscope_txt(doc: &Value) -> (Vec<String>, String) {
    let r = &doc["results"][0];
    let mut txt: Vec<String> = r["message"]["answer"]
        .as_array()
        .unwrap_or_else(|| panic!("no answer: {doc}"))
        .iter()
        .filter(|a| a["type"] == "TXT")
        .flat_map(|a| quoted_strings(a["data"].as_str().unwrap()))
        .collect();
    txt.sort();
    (txt, r["transport"].as_str().unwrap_or("").to_string())
}

fn dns_lab() -> (LabDns, Lab) {
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    (dns, lab)
}

/// `frag.lab.test TXT` with a 4096-byte buffer from `server`: synscope gets
/// over UDP what kdig gets, and tcpdump saw the answer arrive in fragments.
fn fragmented_answer(server: &str, tcpdump_filter: &str) {
    let (_dns, lab) = dns_lab();
    let at = format!("@{server}");
    let (theirs, ktransport) = kdig_txt(&lab, &[&at, "frag.lab.test", "TXT", "+bufsize=4096"]);
    assert_eq!(ktransport, "udp", "kdig");
    let dump = common::Tcpdump::start(&lab, &format!("dnsfrag-{tcpdump_filter}"), tcpdump_filter);
    let out = synscope(
        &lab,
        &[
            "dns",
            "frag.lab.test",
            "TXT",
            &at,
            "--bufsize",
            "4096",
            "--json",
            "--timeout",
            "2s",
            "-v",
        ],
    );
    let packets = dump.stop();
    common::assert_status(&out, 0);
    let doc = json_of(&out);
    let (ours, transport) = synscope_txt(&doc);
    assert_eq!(transport, "udp", "{doc}");
    assert_eq!(ours.len(), 16, "{doc}");
    assert_eq!(ours, theirs);
    // the answer really came in pieces
    let fragments = packets
        .iter()
        .filter(|(_, p)| {
            IpRepr::parse_detail(p).is_ok_and(|d| {
                d.fragment.is_some() && d.repr.src.to_string() == server.trim_matches(['[', ']'])
            })
        })
        .count();
    assert!(fragments >= 2, "{fragments} fragments seen by tcpdump");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 datagram(s) reassembled"), "{err}");
}

/// Regenerates `crates/synscope-wire/src/fixtures/nsd_frag_v{4,6}_N.bin`: the IP fragments of
/// NSD's answer to `frag.lab.test TXT` (id 0xf4a6, EDNS 4096), as the kernel
/// sent them and tcpdump captured them on the client's veth.
#[test]
#[ignore]
fn capture_fragment_fixtures() {
    if synscope_lab::skip_unless_root("capture_fragment_fixtures") {
        return;
    }
    let (_dns, lab) = dns_lab();
    let q: &[u8] = b"\xf4\xa6\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x04frag\x03lab\x04test\x00\x00\x10\x00\x01\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00";
    for (family, client, server) in [
        ("v4", "198.18.0.1:0", "198.18.0.2:53"),
        ("v6", "[2001:db8::1]:0", "[2001:db8::2]:53"),
    ] {
        let dump = common::Tcpdump::start(
            &lab,
            &format!("fixture-{family}"),
            "src port 53 or ip[6:2] & 0x1fff != 0 or ip6[6] == 44",
        );
        synscope_lab::in_netns(&lab.client_ns, move || {
            let s = std::net::UdpSocket::bind(client).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            s.send_to(q, server).unwrap();
            let mut b = [0u8; 4096];
            s.recv_from(&mut b).unwrap();
        })
        .unwrap();
        let frags: Vec<Vec<u8>> = dump
            .stop()
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| IpRepr::parse_detail(p).is_ok_and(|d| d.fragment.is_some()))
            .collect();
        assert!(frags.len() >= 2, "{family}: {} fragments", frags.len());
        for (i, f) in frags.iter().enumerate() {
            let path = format!(
                "{}/crates/synscope-wire/src/fixtures/nsd_frag_{family}_{i}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::write(path, f).unwrap();
        }
    }
}

#[test]
fn dns_fragmented_answer_v4_equals_kdig() {
    if synscope_lab::skip_unless_root("dns_fragmented_answer_v4_equals_kdig") {
        return;
    }
    fragmented_answer("198.18.0.2", "ip");
}

#[test]
fn dns_fragmented_answer_v6_equals_kdig() {
    if synscope_lab::skip_unless_root("dns_fragmented_answer_v6_equals_kdig") {
        return;
    }
    fragmented_answer("[2001:db8::2]", "ip6");
}

#[test]
fn dns_bulk_reassembles_many_fragmented_answers() {
    if synscope_lab::skip_unless_root("dns_bulk_reassembles_many_fragmented_answers") {
        return;
    }
    let (_dns, lab) = dns_lab();
    let dir = std::env::temp_dir().join(format!("{}-fragbulk", lab.client_ns));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("names.txt");
    let n = 500;
    std::fs::write(&file, "frag.lab.test,TXT\n".repeat(n)).unwrap();
    let out = synscope(
        &lab,
        &[
            "dns",
            "--file",
            file.to_str().unwrap(),
            "@198.18.0.2",
            "--bufsize",
            "4096",
            "--rate",
            "20000",
            "--timeout",
            "2s",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    common::assert_status(&out, 0);
    let lines = common::schema::check_lines("dns-bulk", &String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), n + 1, "one line per name, then the summary");
    for l in &lines[..n] {
        assert_eq!(l["status"], "NOERROR", "{l}");
        assert_eq!(l["transport"], "udp", "{l}");
        let answers = l["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 1, "{l}");
        assert_eq!(
            quoted_strings(answers[0].as_str().unwrap()).len(),
            16,
            "{l}"
        );
    }
    let s = &lines[n];
    assert_eq!(
        (s["answered"].as_u64(), s["no_response"].as_u64()),
        (Some(n as u64), Some(0))
    );
}

#[test]
fn dns_small_buffer_still_falls_back_to_tcp() {
    if synscope_lab::skip_unless_root("dns_small_buffer_still_falls_back_to_tcp") {
        return;
    }
    let (_dns, lab) = dns_lab();
    for server in ["@198.18.0.2", "@[2001:db8::2]"] {
        let out = synscope(
            &lab,
            &[
                "dns",
                "frag.lab.test",
                "TXT",
                server,
                "--bufsize",
                "1232",
                "--json",
                "--timeout",
                "2s",
            ],
        );
        common::assert_status(&out, 0);
        let doc = json_of(&out);
        let (ours, transport) = synscope_txt(&doc);
        assert_eq!(transport, "tcp", "{doc}");
        assert_eq!(doc["results"][0]["udp"]["truncated"], true, "{doc}");
        let (theirs, ktransport) =
            kdig_txt(&lab, &[server, "frag.lab.test", "TXT", "+bufsize=1232"]);
        assert_eq!(ktransport, "tcp");
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 16);
    }
}

// ---------------------------------------------------------------- raw responder

/// Ports of the raw responder and how each answers (every other port is left
/// to the server's kernel).
const HBH_DSTOPT: u16 = 7001;
const ATOMIC_FRAGMENT: u16 = 7002;
const FRAGMENTED: u16 = 7003;
const ESP: u16 = 7004;
const DEEP_CHAIN: u16 = 7005;
const RAW_PORTS: [u16; 5] = [HBH_DSTOPT, ATOMIC_FRAGMENT, FRAGMENTED, ESP, DEEP_CHAIN];
/// Fragments of 8 bytes (3 for a SYN-ACK) in order, 30 ms apart.
const SLOW_FRAGMENTS: u16 = 7006;
const SLOW_GAP: Duration = Duration::from_millis(30);
/// The responder's initial sequence number.
const ISS: u32 = 0x5eed_0000;

/// The segment answering `t` (SYN -> SYN-ACK; FIN -> FIN-ACK; data -> ACK).
fn answer_to(t: &TcpRepr) -> Option<TcpRepr> {
    let base = TcpRepr {
        src_port: t.dst_port,
        dst_port: t.src_port,
        window: 65535,
        ..TcpRepr::default()
    };
    let len = t.payload.len() as u32;
    if t.flags == TcpFlags::SYN {
        return Some(TcpRepr {
            seq: SeqNumber(ISS),
            ack: t.seq + 1,
            flags: TcpFlags::SYN.union(TcpFlags::ACK),
            options: TcpOptions {
                mss: Some(1400),
                ..TcpOptions::default()
            },
            ..base
        });
    }
    if t.flags.contains(TcpFlags::RST) {
        return None;
    }
    if t.flags.contains(TcpFlags::FIN) {
        return Some(TcpRepr {
            seq: SeqNumber(ISS) + 1,
            ack: t.seq + len + 1,
            flags: TcpFlags::FIN.union(TcpFlags::ACK),
            ..base
        });
    }
    (len > 0).then(|| TcpRepr {
        seq: SeqNumber(ISS) + 1,
        ack: t.seq + len,
        flags: TcpFlags::ACK,
        ..base
    })
}

/// `reply` (a whole datagram) dressed as the port asks.
fn dress(port: u16, reply: &[u8], ip: &IpRepr, ident: u32) -> Vec<Vec<u8>> {
    let v6 = ip.is_ipv6();
    let hbh: &[u8] = &[0, 0, 1, 4, 0, 0, 0, 0];
    let dstopt: &[u8] = &[0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let atomic_id = ident.to_be_bytes();
    let atomic: &[u8] = &[
        0,
        0,
        0,
        0,
        atomic_id[0],
        atomic_id[1],
        atomic_id[2],
        atomic_id[3],
    ];
    match port {
        HBH_DSTOPT if v6 => vec![insert_v6_ext_headers(reply, &[(0, hbh), (60, dstopt)]).unwrap()],
        ATOMIC_FRAGMENT if v6 => vec![insert_v6_ext_headers(reply, &[(44, atomic)]).unwrap()],
        DEEP_CHAIN if v6 => {
            let chain: Vec<(u8, &[u8])> =
                std::iter::once((0, hbh)).chain([(60, dstopt); 6]).collect();
            vec![insert_v6_ext_headers(reply, &chain).unwrap()]
        }
        SLOW_FRAGMENTS => fragment(reply, ident, 8),
        FRAGMENTED => {
            // 16 bytes of TCP per fragment, the last one sent first
            let mut f = fragment(reply, ident, 16);
            f.reverse();
            f
        }
        ESP => {
            let hl = ip.header_len();
            let mut body = vec![0, 0, 0x10, 0, 0, 0, 0, 1]; // SPI, sequence number
            body.extend_from_slice(&reply[hl..]);
            vec![
                IpRepr {
                    protocol: 50,
                    ..ip.clone()
                }
                .emit(&body),
            ]
        }
        _ => vec![reply.to_vec()],
    }
}

/// A raw TCP responder for `local` in the server namespace, until `stop`.
fn responder(lab: &Lab, local: IpAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    spawn_in_netns(&lab.server_ns, move || {
        let filter = FlowFilter {
            local,
            remote: None,
            remote_port: None,
            local_ports: Some((HBH_DSTOPT, SLOW_FRAGMENTS)),
            protocol: Protocol::TCP,
            outbound: false,
        };
        let mut cap = BlockingCapture::open(0, &filter, 1 << 20).unwrap();
        let raw = RawSender::open(local, None).unwrap();
        let mut ident = 100u32;
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(p)) = cap.recv_timeout(Duration::from_millis(20)) else {
                continue;
            };
            let Ok(d) = Datagram::parse_with(&p.data, Checksums::Offloaded) else {
                continue;
            };
            let Transport::Tcp(t) = &d.transport else {
                continue;
            };
            let Some(a) = answer_to(t) else {
                continue;
            };
            let ip = IpRepr {
                src: local,
                dst: d.ip.src,
                protocol: Protocol::TCP,
                ttl: 64,
                ident: ident as u16,
                later_fragment: false,
                flow_label: 0,
            };
            ident += 1;
            let reply = ip.emit(&a.emit(ip.src, ip.dst));
            for (i, pkt) in dress(t.dst_port, &reply, &ip, ident).iter().enumerate() {
                if i > 0 && t.dst_port == SLOW_FRAGMENTS {
                    std::thread::sleep(SLOW_GAP);
                }
                raw.send(d.ip.src, pkt).unwrap();
            }
        }
    })
    .unwrap()
}

/// A lab whose server kernel ignores the raw ports (nftables drops them on
/// input; the responder's packet socket sees them first), with responders for
/// both families.
struct RawLab {
    lab: Lab,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RawLab {
    fn up() -> RawLab {
        let mut spec = LabSpec::standard();
        spec.dropped.extend(RAW_PORTS);
        spec.dropped.push(SLOW_FRAGMENTS);
        let lab = Lab::up(&spec).expect("lab up (needs root, iproute2, nftables)");
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            responder(&lab, IpAddr::V4(SERVER_V4), stop.clone()),
            responder(&lab, IpAddr::V6(SERVER_V6), stop.clone()),
        ];
        RawLab { lab, stop, threads }
    }
}

impl Drop for RawLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn target(v6: bool, port: u16) -> String {
    if v6 {
        format!("[{SERVER_V6}]:{port}")
    } else {
        format!("{SERVER_V4}:{port}")
    }
}

/// One ping probe's verdict and the summary's ignored counts.
fn ping(lab: &Lab, target: &str) -> (String, Value) {
    let out = synscope(lab, &["ping", target, "-c", "1", "-W", "500ms", "--json"]);
    let doc = json_of(&out);
    (
        doc["probes"][0]["verdict"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        doc["summary"]["ignored"].clone(),
    )
}

#[test]
fn ping_sees_synacks_behind_extension_headers_and_in_fragments() {
    if synscope_lab::skip_unless_root("ping_sees_synacks_behind_extension_headers_and_in_fragments")
    {
        return;
    }
    let raw = RawLab::up();
    let cases = [
        (true, HBH_DSTOPT),
        (true, ATOMIC_FRAGMENT),
        (true, DEEP_CHAIN),
        (true, FRAGMENTED),
        (false, FRAGMENTED),
    ];
    let mut wrong = Vec::new();
    for (v6, port) in cases {
        let t = target(v6, port);
        let (verdict, ignored) = ping(&raw.lab, &t);
        if verdict != "open" {
            wrong.push(format!("{t}: {verdict} (ignored {ignored})"));
        }
    }
    assert!(wrong.is_empty(), "not open: {wrong:#?}");
    // ESP: no answer synscope can read, and counted as such
    for v6 in [true, false] {
        let (verdict, ignored) = ping(&raw.lab, &target(v6, ESP));
        assert_eq!(verdict, "filtered");
        assert!(
            ignored["unreadable"].as_u64().unwrap_or(0) >= 1,
            "v6 {v6}: {ignored}"
        );
    }
}

#[test]
fn scan_sees_synacks_behind_extension_headers_and_in_fragments() {
    if synscope_lab::skip_unless_root("scan_sees_synacks_behind_extension_headers_and_in_fragments")
    {
        return;
    }
    let raw = RawLab::up();
    let ports = RAW_PORTS.map(|p| p.to_string()).join(",");
    for (host, open) in [
        (
            SERVER_V6.to_string(),
            vec![HBH_DSTOPT, ATOMIC_FRAGMENT, FRAGMENTED, DEEP_CHAIN],
        ),
        // (IPv4 has no extension headers: those ports answer plainly)
        (
            SERVER_V4.to_string(),
            vec![HBH_DSTOPT, ATOMIC_FRAGMENT, FRAGMENTED, DEEP_CHAIN],
        ),
    ] {
        let out = synscope(
            &raw.lab,
            &[
                "scan",
                &host,
                "-p",
                &ports,
                "--timeout",
                "300ms",
                "--ndjson",
            ],
        );
        common::assert_status(&out, 0);
        let lines = common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout));
        for port in RAW_PORTS {
            let v: Vec<&Value> = lines
                .iter()
                .filter(|l| l["kind"] == "result" && l["port"] == port)
                .collect();
            assert_eq!(v.len(), 1, "{host} port {port}: {v:?}");
            let want = if open.contains(&port) {
                "open"
            } else {
                "no_response"
            };
            assert_eq!(v[0]["verdict"], want, "{host} port {port}");
        }
        let ignored = &lines.last().unwrap()["ignored"];
        assert!(
            ignored["unreadable"].as_u64().unwrap_or(0) >= 1,
            "{host}: ESP not counted: {ignored}"
        );
    }
}

#[test]
fn trace_completes_through_extension_headers_and_fragments() {
    if synscope_lab::skip_unless_root("trace_completes_through_extension_headers_and_fragments") {
        return;
    }
    let raw = RawLab::up();
    for (v6, port) in [(true, HBH_DSTOPT), (true, FRAGMENTED), (false, FRAGMENTED)] {
        let t = target(v6, port);
        let out = synscope(
            &raw.lab,
            &[
                "trace",
                &t,
                "--json",
                "--time-wait",
                "100ms",
                "--timeout",
                "3s",
            ],
        );
        common::assert_status(&out, 0);
        let run = &json_of(&out)["traces"][0];
        // the responder answers our FIN with FIN+ACK at once
        assert_eq!(run["teardown"], "three_segment_close", "{t}: {run}");
        let flags: Vec<&str> = run["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["flags"].as_str().unwrap())
            .collect();
        assert_eq!(flags, ["S", "S.", ".", "F.", "F.", "."], "{t}");
    }
}

/// A SYN-ACK whose fragments arrive 30 ms apart is timed to its last fragment:
/// ping's RTT equals the time tcpdump saw between our SYN and the fragment that
/// completed the reply (found by reassembling tcpdump's capture).
#[test]
fn fragmented_reply_is_timed_by_its_last_fragment() {
    if synscope_lab::skip_unless_root("fragmented_reply_is_timed_by_its_last_fragment") {
        return;
    }
    use synscope::wire::reassembly::{Outcome, Reassembler};
    let raw = RawLab::up();
    for v6 in [false, true] {
        let dump = common::Tcpdump::start(
            &raw.lab,
            &format!("slowfrag-{v6}"),
            if v6 { "ip6" } else { "ip" },
        );
        let t = target(v6, SLOW_FRAGMENTS);
        let out = synscope(
            &raw.lab,
            &["ping", &t, "-c", "3", "-i", "200ms", "-W", "1s", "--ndjson"],
        );
        let captured = dump.stop();
        common::assert_status(&out, 0);
        // from the capture: SYN stamps, first-fragment and completing stamps by ISN
        let mut syn_at = std::collections::HashMap::new();
        let mut first_frag_at = std::collections::HashMap::new();
        let mut done_at = std::collections::HashMap::new();
        let mut r = Reassembler::default();
        let mut first_seen: Option<u64> = None;
        for (ts, pkt) in &captured {
            let whole = match r.push(pkt, *ts) {
                Outcome::Whole => pkt.clone(),
                Outcome::Complete(d) => d,
                Outcome::Held => {
                    first_seen.get_or_insert(*ts);
                    continue;
                }
                Outcome::Dropped(why) => panic!("{why:?}"),
            };
            let Ok(d) = Datagram::parse_with(&whole, Checksums::Offloaded) else {
                continue;
            };
            let Transport::Tcp(seg) = d.transport else {
                continue;
            };
            if seg.flags == TcpFlags::SYN {
                syn_at.insert(seg.seq.0, *ts);
            } else if seg.flags == TcpFlags::SYN.union(TcpFlags::ACK) {
                let isn = seg.ack.0.wrapping_sub(1);
                done_at.insert(isn, *ts);
                if let Some(f) = first_seen.take() {
                    first_frag_at.insert(isn, f);
                }
            }
        }
        let mut compared = 0;
        for v in common::schema::check_lines("ping", &String::from_utf8_lossy(&out.stdout)) {
            if v["kind"] != "probe" {
                continue;
            }
            assert_eq!(v["verdict"], "open", "{v}");
            let isn = v["isn"].as_u64().unwrap() as u32;
            let reported = (v["rtt_us"].as_f64().unwrap() * 1e3).round() as i64;
            let (syn, done, first) = (syn_at[&isn], done_at[&isn], first_frag_at[&isn]);
            // the pieces were spread over at least 2 gaps
            assert!(
                done - first >= 2 * SLOW_GAP.as_nanos() as u64 - 1_000_000,
                "{t}: first fragment at {first}, completed at {done}, syn at {syn}"
            );
            let truth = (done - syn) as i64;
            eprintln!(
                "{t} probe {isn}: rtt {reported} ns, tcpdump SYN to last fragment {truth} ns"
            );
            // kernel stamps like tcpdump's; the bound leaves room for a loaded machine
            assert!(
                (reported - truth).abs() < 200_000,
                "{t} probe {isn}: reported {reported} ns, last fragment at {truth} ns"
            );
            compared += 1;
        }
        assert_eq!(compared, 3, "{t}");
    }
}
