//! Issue 9 §6: `synscope trace` tells the truth about how a connection ended.
//! Real peers: raw responders in the server namespace play a zero-window peer
//! and a peer whose RST is out of window (nftables keeps the server's own
//! kernel off their ports); nftables rejects with ICMP admin-prohibited and
//! port-unreachable. Each trace must end with the right reason, say what did
//! not happen and exit 1; before, the first two exited 0 ("aborted by us with
//! RST") and the ICMP ones retransmitted for 10 s and said "no answer".

use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use synscope::io::RawSender;
use synscope::io::bpf::FlowFilter;
use synscope::io::capture::BlockingCapture;
use synscope::wire::datagram::Checksums;
use synscope::wire::{
    Datagram, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
};
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6, spawn_in_netns};

mod common;

/// Answers with a zero window and never acknowledges a byte.
const ZERO_WINDOW: u16 = 7781;
/// Answers each data segment with an RST whose sequence number is far outside
/// our window, and acknowledges nothing.
const OOW_RST: u16 = 7782;
/// The responder's initial sequence number.
const IRS: SeqNumber = SeqNumber(0x4000_0000);

fn lab() -> Lab {
    let mut spec = LabSpec::standard();
    spec.dropped.extend([ZERO_WINDOW, OOW_RST]);
    Lab::up(&spec).expect("lab up (needs root, iproute2, nftables)")
}

/// One segment from the responder's port back to the client.
fn answer(to: &IpRepr, from_port: u16, to_port: u16, seg: TcpRepr) -> Vec<u8> {
    let t = TcpRepr {
        src_port: from_port,
        dst_port: to_port,
        ..seg
    };
    let ip = IpRepr {
        src: to.dst,
        dst: to.src,
        protocol: Protocol::TCP,
        ttl: 64,
        ident: 1,
        later_fragment: false,
        flow_label: 0,
    };
    ip.emit(&t.emit(ip.src, ip.dst))
}

/// The responder thread in the server namespace, until `stop` is set (and at
/// most 60 s).
fn responder(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    spawn_in_netns(&lab.server_ns, move || {
        let filter = FlowFilter {
            local: IpAddr::V4(SERVER_V4),
            remote: None,
            remote_port: None,
            local_ports: Some((ZERO_WINDOW, OOW_RST)),
            protocol: Protocol::TCP,
            outbound: false,
        };
        let mut cap = BlockingCapture::open(0, &filter, 1 << 20).unwrap();
        let raw = RawSender::open(IpAddr::V4(SERVER_V4), None).unwrap();
        // the client's ISN by its port
        let mut isn: HashMap<u16, SeqNumber> = HashMap::new();
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let Ok(Some(p)) = cap.recv_timeout(Duration::from_millis(20)) else {
                continue;
            };
            let Ok(d) = Datagram::parse_with(&p.data, Checksums::Offloaded) else {
                continue;
            };
            let Transport::Tcp(t) = &d.transport else {
                continue;
            };
            let reply = |seg: TcpRepr| answer(&d.ip, t.dst_port, t.src_port, seg);
            let out = if t.flags == TcpFlags::SYN {
                isn.insert(t.src_port, t.seq);
                let window = if t.dst_port == ZERO_WINDOW { 0 } else { 65535 };
                Some(reply(TcpRepr {
                    seq: IRS,
                    ack: t.seq + 1,
                    flags: TcpFlags::SYN.union(TcpFlags::ACK),
                    window,
                    options: TcpOptions {
                        mss: Some(1460),
                        ..TcpOptions::default()
                    },
                    ..TcpRepr::default()
                }))
            } else if t.flags.contains(TcpFlags::RST) {
                None
            } else if let Some(&their_isn) = isn.get(&t.src_port) {
                let data = !t.payload.is_empty() || t.flags.contains(TcpFlags::FIN);
                match (t.dst_port, data) {
                    // acknowledge nothing beyond the SYN, window still zero
                    (ZERO_WINDOW, true) => Some(reply(TcpRepr {
                        seq: IRS + 1,
                        ack: their_isn + 1,
                        flags: TcpFlags::ACK,
                        window: 0,
                        ..TcpRepr::default()
                    })),
                    // an RST a million bytes beyond what the client expects
                    (OOW_RST, true) => Some(reply(TcpRepr {
                        seq: IRS + 1_000_001,
                        flags: TcpFlags::RST,
                        ..TcpRepr::default()
                    })),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(pkt) = out {
                let _ = raw.send(d.ip.src, &pkt);
            }
        }
    })
    .unwrap()
}

fn trace(lab: &Lab, args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t0.elapsed())
}

fn json_of(out: &Output) -> Value {
    if out
        .stdout
        .starts_with(b"{\"kind\":\"report\",\"command\":\"trace\"")
    {
        common::schema::check_document("trace", &String::from_utf8_lossy(&out.stdout));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn not_done(run: &Value) -> Vec<String> {
    run["not_done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The ladder's client states, in order: never backwards (no state reappears
/// after a later one).
fn assert_monotone(run: &Value) {
    let order: Vec<&str> = run["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["side"] == "client")
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    let mut furthest = 0;
    for e in run["segments"].as_array().unwrap() {
        let st = e["client_state"].as_str().unwrap();
        let r = order.iter().position(|s| *s == st).unwrap_or(0);
        assert!(r >= furthest, "{st} after {}: {run}", order[furthest]);
        furthest = r;
    }
}

#[test]
fn zero_window_peer_request_never_acknowledged_exits_1_and_says_so() {
    if synscope_lab::skip_unless_root(
        "zero_window_peer_request_never_acknowledged_exits_1_and_says_so",
    ) {
        return;
    }
    let lab = lab();
    let stop = Arc::new(AtomicBool::new(false));
    let r = responder(&lab, stop.clone());
    let target = format!("{SERVER_V4}:{ZERO_WINDOW}");
    let args = [
        target.as_str(),
        "--send",
        "hi",
        "--close",
        "fin",
        "--rto",
        "100ms",
        "--retries",
        "2",
    ];
    let (out, _) = trace(&lab, &[&args[..], &["--json"]].concat());
    let (text, _) = trace(&lab, &args);
    stop.store(true, Ordering::Relaxed);
    r.join().unwrap();
    common::assert_status(&out, 1);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "gave_up", "{run}");
    assert_eq!(run["succeeded"], false);
    assert_eq!(
        not_done(run),
        [
            "request not acknowledged: 0 of 2 bytes (the peer advertised a zero window)",
            "no orderly close with FINs (--close fin): gave up: our retransmissions went \
             unacknowledged, then reset by us"
        ]
    );
    // nothing into the closed window but one-byte probes on the timer, then our RST
    let segs = run["segments"].as_array().unwrap();
    let probes = segs
        .iter()
        .filter(|e| e["dir"] == "sent" && e["len"] == 1 && e["note"] == "window_probe")
        .count();
    assert_eq!(probes, 2, "{run}");
    assert!(
        !segs
            .iter()
            .any(|e| e["dir"] == "sent" && e["len"].as_u64() > Some(1)),
        "{run}"
    );
    assert!(
        !segs
            .iter()
            .any(|e| e["dir"] == "sent" && e["flags"].as_str().unwrap().contains('F')),
        "no FIN while our data is unacknowledged: {run}"
    );
    // our RST sits at the edge of the zero window (rel seq 1), where the
    // peer takes it, not after the probe byte it never took
    assert_eq!(segs.last().unwrap()["flags"], "R.");
    assert_eq!(segs.last().unwrap()["rel_seq"], 1);
    assert_monotone(run);
    common::assert_status(&text, 1);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(
        t.contains("result: INCOMPLETE: request not acknowledged: 0 of 2 bytes (the peer advertised a zero window)"),
        "{t}"
    );
}

/// The same against the Linux kernel itself: a listener that never reads,
/// with the smallest receive buffer, fills up and advertises a zero window;
/// the kernel answers our one-byte probes with zero-window ACKs.
#[test]
fn zero_window_from_a_real_kernel() {
    if synscope_lab::skip_unless_root("zero_window_from_a_real_kernel") {
        return;
    }
    let lab = lab();
    let listener = synscope_lab::in_netns(&lab.server_ns, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(1).unwrap(); // the kernel's minimum
        s.bind(&std::net::SocketAddr::from((SERVER_V4, 7783)).into())
            .unwrap();
        s.listen(8).unwrap();
        s
    })
    .unwrap();
    let file = std::env::temp_dir().join(format!("synscope-zw-{}.bin", std::process::id()));
    std::fs::write(&file, vec![b'x'; 256 * 1024]).unwrap();
    let (out, _) = trace(
        &lab,
        &[
            &format!("{SERVER_V4}:7783"),
            "--send-file",
            file.to_str().unwrap(),
            "--rto",
            "100ms",
            "--retries",
            "2",
            "--json",
        ],
    );
    let _ = std::fs::remove_file(&file);
    drop(listener);
    common::assert_status(&out, 1);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "gave_up", "{run}");
    let nd = not_done(run);
    assert!(
        nd[0].starts_with("request not acknowledged: ")
            && nd[0].ends_with(" of 262144 bytes (the peer advertised a zero window)"),
        "{nd:?}"
    );
    // the kernel took some bytes, then its window closed
    let zero_acks = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dir"] == "received" && e["window"] == 0)
        .count();
    assert!(zero_acks >= 1, "{run}");
    assert_monotone(run);
}

#[test]
fn out_of_window_rst_is_ignored_and_the_trace_fails_truthfully() {
    if synscope_lab::skip_unless_root("out_of_window_rst_is_ignored_and_the_trace_fails_truthfully")
    {
        return;
    }
    let lab = lab();
    let stop = Arc::new(AtomicBool::new(false));
    let r = responder(&lab, stop.clone());
    let target = format!("{SERVER_V4}:{OOW_RST}");
    let (out, _) = trace(
        &lab,
        &[
            &target,
            "--send",
            "hi",
            "--rto",
            "100ms",
            "--retries",
            "2",
            "--json",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    r.join().unwrap();
    common::assert_status(&out, 1);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "gave_up", "{run}");
    let nd = not_done(run);
    assert_eq!(nd[0], "request not acknowledged: 0 of 2 bytes", "{nd:?}");
    assert!(nd[1].starts_with("no orderly close with FINs"), "{nd:?}");
    // every RST the peer sent was out of window: ignored, not believed
    let rsts: Vec<&Value> = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dir"] == "received" && e["flags"] == "R")
        .collect();
    assert_eq!(rsts.len(), 3, "{run}");
    assert!(rsts.iter().all(|e| e["note"] == "ignored"), "{run}");
    assert_monotone(run);
}

#[test]
fn icmp_errors_end_a_trace_at_once_with_the_reason() {
    if synscope_lab::skip_unless_root("icmp_errors_end_a_trace_at_once_with_the_reason") {
        return;
    }
    let lab = lab();
    for (target, reason) in [
        (format!("{SERVER_V4}:111"), "admin-prohibited"),
        (format!("[{SERVER_V6}]:111"), "admin-prohibited"),
        (format!("{SERVER_V4}:113"), "port-unreachable"),
    ] {
        let (out, took) = trace(&lab, &[&target, "--json"]);
        common::assert_status(&out, 1);
        // before: retransmissions for --timeout (10 s), then "no answer"
        assert!(took < Duration::from_secs(3), "{target}: {took:?}");
        let run = &json_of(&out)["traces"][0];
        assert_eq!(run["teardown"], "unreachable", "{run}");
        assert_eq!(run["icmp"]["reason"], reason.replace('-', "_"), "{run}");
        let segs = run["segments"].as_array().unwrap();
        assert_eq!(segs.len(), 2, "one SYN, one ICMP error: {run}");
        assert!(
            segs[1]["icmp"]
                .as_str()
                .unwrap()
                .starts_with(&format!("ICMP {reason} from ")),
            "{run}"
        );
        assert_eq!(
            not_done(run)[0],
            format!(
                "no handshake: ICMP {reason} from {}",
                run["icmp"]["from"].as_str().unwrap()
            )
        );
        let (text, _) = trace(&lab, &[&target]);
        let t = String::from_utf8_lossy(&text.stdout);
        assert!(t.contains(&format!("ICMP {reason} from")), "{t}");
        assert!(t.contains("teardown: unreachable"), "{t}");
    }
}

#[test]
fn count_summaries_print_words() {
    if synscope_lab::skip_unless_root("count_summaries_print_words") {
        return;
    }
    let lab = lab();
    let (out, _) = trace(&lab, &[&format!("{SERVER_V4}:111"), "-c", "3", "-i", "1ms"]);
    common::assert_status(&out, 1);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains(
            ": unreachable, INCOMPLETE (no handshake: ICMP admin-prohibited from 198.18.0.2)"
        ),
        "{t}"
    );
    assert!(t.contains("--- 3 traces, 0 complete"), "{t}");
    for rust_name in [
        "Unreachable",
        "AbortedByUs",
        "PeerClosedFirst",
        "Some(",
        "[0",
    ] {
        assert!(!t.contains(rust_name), "{rust_name}: {t}");
    }
}

/// CLOSED is stamped no earlier than the last segment before it (with `--close
/// rst`, before: ~9 µs before our RST's kernel stamp on every trace).
fn assert_closed_after_last_segment(run: &Value) {
    let closed = run["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["side"] == "client" && s["state"] == "closed")
        .map(|s| s["at_ns"].as_str().unwrap().parse::<u64>().unwrap())
        .next_back()
        .unwrap();
    let last = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["note"] != "ignored")
        .map(|e| e["at_ns"].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert!(
        closed >= last,
        "CLOSED {} ns before the last segment: {run}",
        last - closed
    );
}

/// A banner server closes first: its FIN often arrives while our ACK of the
/// banner is still leaving (before: 7 of 30 ladders read CLOSE_WAIT →
/// ESTABLISHED). And `--close rst` against a kernel listener.
#[test]
fn ladder_never_goes_backwards_and_closed_comes_last() {
    if synscope_lab::skip_unless_root("ladder_never_goes_backwards_and_closed_comes_last") {
        return;
    }
    let lab = lab();
    let listener = synscope_lab::in_netns(&lab.server_ns, || {
        std::net::TcpListener::bind((SERVER_V4, 7784)).unwrap()
    })
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let end = Instant::now() + Duration::from_secs(60);
        while !st.load(Ordering::Relaxed) && Instant::now() < end {
            match listener.accept() {
                Ok((mut c, _)) => {
                    let _ = c.write_all(b"SSH-2.0-synscope-lab\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    let (out, _) = trace(
        &lab,
        &[
            &format!("{SERVER_V4}:7784"),
            "-c",
            "20",
            "-i",
            "1ms",
            "--time-wait",
            "5ms",
            "--json",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    common::assert_status(&out, 0);
    for run in json_of(&out)["traces"].as_array().unwrap() {
        assert_eq!(run["teardown"], "peer_closed_first", "{run}");
        assert_monotone(run);
        assert_closed_after_last_segment(run);
    }
    let (out, _) = trace(
        &lab,
        &[
            &format!("{SERVER_V4}:80"),
            "--close",
            "rst",
            "--idle",
            "5ms",
            "-c",
            "5",
            "-i",
            "1ms",
            "--json",
        ],
    );
    common::assert_status(&out, 0);
    for run in json_of(&out)["traces"].as_array().unwrap() {
        assert_eq!(run["teardown"], "aborted_by_us", "{run}");
        assert_eq!(
            run["result"],
            "complete: handshake, aborted with our RST as asked"
        );
        assert_monotone(run);
        assert_closed_after_last_segment(run);
    }
}
