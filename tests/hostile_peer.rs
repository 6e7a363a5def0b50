//! A hostile peer in the lab: a raw responder in the server namespace answers
//! every probe with garbage first (truncated and malformed segments, bad
//! checksums, wrong acks, wrong addresses and ports, RST floods, ICMP errors
//! quoting truncated or foreign headers), then the genuine answer, duplicated
//! and reordered. A UDP responder does the same to DNS queries (wrong id,
//! mismatched question, compression-pointer loops, counts larger than the
//! message). Every command must keep the right verdict, count what it ignored,
//! never panic and never run past its timeout.

use serde_json::Value;
mod common;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use synscope::io::RawSender;
use synscope::io::bpf::FlowFilter;
use synscope::io::capture::BlockingCapture;
use synscope::wire::datagram::Checksums;
use synscope::wire::{
    Datagram, IcmpRepr, IpRepr, Protocol, SeqNumber, TcpFlags, TcpRepr, Transport,
};
use synscope_lab::{Lab, LabSpec, SERVER_V4, spawn_in_netns};

/// Answered by the hostile responder (nftables keeps the server's kernel out).
const HOSTILE: u16 = 7777;
const DNS_PORT: u16 = 5353;

fn ip(src: IpAddr, dst: IpAddr, protocol: u8) -> IpRepr {
    IpRepr {
        src,
        dst,
        protocol,
        ttl: 64,
        ident: 7,
        later_fragment: false,
        flow_label: 0,
    }
}

/// Everything sent in answer to one SYN: garbage, then the genuine RST twice,
/// with garbage in between.
fn hostile_answers(syn_ip: &IpRepr, syn: &TcpRepr, syn_bytes: &[u8]) -> Vec<Vec<u8>> {
    let (us, them) = (syn_ip.dst, syn_ip.src);
    let seg = |src: IpAddr, sport: u16, dport: u16, flags: TcpFlags, ack: SeqNumber| {
        let t = TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq: SeqNumber(1000),
            ack,
            flags,
            window: 100,
            ..TcpRepr::default()
        };
        ip(src, them, Protocol::TCP).emit(&t.emit(src, them))
    };
    let ra = TcpFlags::RST.union(TcpFlags::ACK);
    let sa = TcpFlags::SYN.union(TcpFlags::ACK);
    let right = syn.seq + 1;
    let genuine = seg(us, HOSTILE, syn.src_port, ra, right);
    let mut v = Vec::new();
    // truncated: a TCP header cut at 10 bytes
    let mut cut = genuine.clone();
    cut.truncate(30);
    v.push(cut);
    // bad checksum on an otherwise perfect SYN-ACK
    let mut bad = seg(us, HOSTILE, syn.src_port, sa, right);
    bad[37] ^= 0x55;
    v.push(bad);
    // impossible data offset
    let mut off = seg(us, HOSTILE, syn.src_port, sa, right);
    off[32] = 0xf0;
    v.push(off);
    // wrong ack, wrong source address, wrong source port, wrong destination port
    v.push(seg(us, HOSTILE, syn.src_port, sa, right + 1));
    v.push(seg(
        "198.18.0.3".parse().unwrap(),
        HOSTILE,
        syn.src_port,
        sa,
        right,
    ));
    v.push(seg(us, HOSTILE + 1, syn.src_port, sa, right));
    v.push(seg(us, HOSTILE, syn.src_port.wrapping_add(1), sa, right));
    // an RST flood with wrong acks, and a bare ACK
    for i in 0..20 {
        v.push(seg(us, HOSTILE, syn.src_port, ra, right + 2 + i));
    }
    v.push(seg(us, HOSTILE, syn.src_port, TcpFlags::ACK, right));
    // ICMP errors: quoting a truncated header, and quoting someone else's SYN
    let icmp = |quote: &[u8]| {
        ip(us, them, Protocol::ICMP).emit(&IcmpRepr::emit_error(3, 13, quote, us, them))
    };
    v.push(icmp(&syn_bytes[..22]));
    let mut foreign = syn_bytes.to_vec();
    foreign[27] ^= 1; // another sequence number
    v.push(icmp(&foreign));
    // the genuine answer, then garbage, then the genuine answer again
    v.push(genuine.clone());
    v.push(seg(us, HOSTILE, syn.src_port, sa, right + 7));
    v.push(genuine);
    v
}

/// The responder thread in the server namespace (stops when `stop` is set).
fn tcp_responder(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    spawn_in_netns(&lab.server_ns, move || {
        let filter = FlowFilter {
            local: IpAddr::V4(SERVER_V4),
            remote: None,
            remote_port: None,
            local_ports: Some((HOSTILE, HOSTILE)),
            protocol: Protocol::TCP,
            outbound: false,
        };
        let mut cap = BlockingCapture::open(0, &filter, 1 << 20).unwrap();
        let raw = RawSender::open(IpAddr::V4(SERVER_V4), None).unwrap();
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
            if t.flags != TcpFlags::SYN {
                continue;
            }
            for pkt in hostile_answers(&d.ip, t, &p.data) {
                let _ = raw.send(d.ip.src, &pkt);
            }
        }
    })
    .unwrap()
}

fn hostile_lab() -> Lab {
    // the server's own kernel must not answer the hostile port: drop it in nftables
    // (the responder's packet socket sees the SYN before the input hook)
    let mut spec = LabSpec::standard();
    spec.dropped.push(HOSTILE);
    Lab::up(&spec).unwrap()
}

fn run(lab: &Lab, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let t0 = Instant::now();
    let out = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!e.contains("panicked"), "{e}");
    (out.status.code(), o, e, t0.elapsed())
}

#[test]
fn ping_keeps_the_right_verdict_against_a_hostile_peer() {
    if synscope_lab::skip_unless_root("ping_keeps_the_right_verdict_against_a_hostile_peer") {
        return;
    }
    let lab = hostile_lab();
    let stop = Arc::new(AtomicBool::new(false));
    let responder = tcp_responder(&lab, stop.clone());
    let target = format!("{SERVER_V4}:{HOSTILE}");
    let (code, out, err, took) = run(
        &lab,
        &[
            "ping", &target, "-c", "3", "-i", "100ms", "-W", "500ms", "--json", "--expect",
            "closed",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let doc = common::schema::check_report(&out);
    for p in doc["probes"].as_array().unwrap() {
        assert_eq!(p["verdict"], "closed", "{p}");
    }
    let ignored = &doc["summary"]["ignored"];
    // (other addresses and ports never reach the process: its BPF filter drops them)
    for why in [
        "malformed",
        "wrong_ack",
        "unexpected",
        "icmp_other",
        "no_probe",
    ] {
        assert!(
            ignored[why].as_u64().unwrap_or(0) > 0,
            "{why} not counted: {ignored}"
        );
    }
}

#[test]
fn scan_keeps_the_right_verdicts_against_a_hostile_peer() {
    if synscope_lab::skip_unless_root("scan_keeps_the_right_verdicts_against_a_hostile_peer") {
        return;
    }
    let lab = hostile_lab();
    let stop = Arc::new(AtomicBool::new(false));
    let responder = tcp_responder(&lab, stop.clone());
    let (code, out, err, took) = run(
        &lab,
        &[
            "scan",
            &SERVER_V4.to_string(),
            "-p",
            "80,81,7777,21",
            "--timeout",
            "300ms",
            "--ndjson",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let lines = common::schema::check_lines("scan", &out);
    let verdict = |port: u64| {
        let v: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "result" && l["port"] == port)
            .collect();
        assert_eq!(v.len(), 1, "port {port}: {v:?}");
        v[0]["verdict"].as_str().unwrap().to_string()
    };
    assert_eq!(verdict(80), "open");
    assert_eq!(verdict(81), "closed");
    assert_eq!(verdict(7777), "closed");
    assert_eq!(verdict(21), "no_response");
    let ignored = &lines.last().unwrap()["ignored"];
    for why in ["malformed", "wrong_ack", "no_probe"] {
        assert!(
            ignored[why].as_u64().unwrap_or(0) > 0,
            "{why} not counted: {ignored}"
        );
    }
}

/// Hostile DNS answers to one query, then the genuine one (from a real parse of it).
fn hostile_dns(query: &[u8]) -> Vec<Vec<u8>> {
    let id = [query[0], query[1]];
    let question_end = 12 + query[12..].iter().position(|&b| b == 0).unwrap() + 5;
    let question = &query[12..question_end];
    let header = |id: [u8; 2], qd: u16, an: u16| {
        let mut h = vec![id[0], id[1], 0x84, 0x00];
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&an.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    let answer = |name_ptr: u16| {
        let mut a = name_ptr.to_be_bytes().to_vec();
        a.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 10]);
        a
    };
    let mut v = Vec::new();
    // wrong id
    let mut m = header([id[0] ^ 0xff, id[1]], 1, 1);
    m.extend_from_slice(question);
    m.extend(answer(0xc00c));
    v.push(m);
    // mismatched question (another name of the same length: first label letter changed)
    let mut m = header(id, 1, 1);
    let mut q = question.to_vec();
    q[1] = q[1].wrapping_add(1);
    m.extend_from_slice(&q);
    m.extend(answer(0xc00c));
    v.push(m);
    // a compression pointer pointing at itself
    let mut m = header(id, 1, 1);
    m.extend_from_slice(question);
    let at = m.len() as u16;
    m.extend(answer(0xc000 | at));
    v.push(m);
    // counts larger than the message
    let mut m = header(id, 1, 60);
    m.extend_from_slice(question);
    v.push(m);
    // truncated header
    v.push(vec![id[0], id[1], 0x84]);
    // the genuine answer, twice
    let mut m = header(id, 1, 1);
    m.extend_from_slice(question);
    m.extend(answer(0xc00c));
    v.push(m.clone());
    v.push(m);
    v
}

#[test]
fn dns_keeps_the_right_answer_against_a_hostile_server() {
    if synscope_lab::skip_unless_root("dns_keeps_the_right_answer_against_a_hostile_server") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let server = spawn_in_netns(&lab.server_ns, move || {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(SERVER_V4), DNS_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 1500];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                continue;
            };
            if n < 17 {
                continue;
            }
            for m in hostile_dns(&buf[..n]) {
                let _ = s.send_to(&m, from);
            }
        }
    })
    .unwrap();
    let (code, out, err, took) = run(
        &lab,
        &[
            "dns",
            "a.lab.test",
            &format!("@{SERVER_V4}:{DNS_PORT}"),
            "--no-edns",
            "--json",
            "--expect",
            "198.18.0.10",
            "-W",
            "1s",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let doc = common::schema::check_report(&out);
    let text = doc.to_string();
    for why in ["wrong_id", "wrong_question", "malformed"] {
        assert!(
            text.contains(&format!("\"{why}\"")),
            "{why} not counted: {text}"
        );
    }
}

#[test]
fn trace_sees_the_genuine_rst_through_the_garbage() {
    if synscope_lab::skip_unless_root("trace_sees_the_genuine_rst_through_the_garbage") {
        return;
    }
    let lab = hostile_lab();
    let stop = Arc::new(AtomicBool::new(false));
    let responder = tcp_responder(&lab, stop.clone());
    let target = format!("{SERVER_V4}:{HOSTILE}");
    let (code, out, err, took) = run(&lab, &["trace", &target, "--json", "--timeout", "3s"]);
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
    // refused by the genuine RST: status 1, and well within --timeout
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let doc = common::schema::check_report(&out);
    let text = doc.to_string();
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
