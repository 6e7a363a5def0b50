//! `synscope trace` against the Linux kernel's TCP in a namespace lab: each
//! teardown variant, stage times checked against a tcpdump capture, server
//! states checked with `ss -tan`, and the nftables RST filter: scoped to the
//! flow, gone after SIGINT and SIGKILL. Needs root, `ip`, `nft`, `tcpdump`, `ss`.

use serde_json::Value;
use std::process::Command;
use synscope::io::nft::RstFilter;
use synscope_lab::{Lab, LabSpec, in_netns};

mod common;

fn lab() -> Lab {
    Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)")
}

/// `nft list ruleset` inside a namespace.
fn ruleset(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rst_filter_table_lives_exactly_as_long_as_its_socket() {
    if synscope_lab::skip_unless_root("rst_filter_table_lives_exactly_as_long_as_its_socket") {
        return;
    }
    let lab = lab();
    let ns = lab.client_ns.clone();
    let (filter, listing) = in_netns(&ns.clone(), move || {
        let f = RstFilter::install(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
        )
        .unwrap();
        let l = ruleset(&ns);
        (f, l)
    })
    .unwrap();
    assert!(listing.contains(&filter.table), "{listing}");
    assert!(listing.contains("flags owner"), "{listing}");
    assert!(
        listing.contains("ip saddr 198.18.0.1 ip daddr 198.18.0.2 tcp sport 40000 tcp dport 80"),
        "{listing}"
    );
    assert!(listing.contains("drop"), "{listing}");
    drop(filter);
    let after = ruleset(&lab.client_ns);
    assert!(!after.contains("synscope_"), "{after}");
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a lab server treats each connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Sends a banner and closes at once (it closes first).
    BannerClose,
    /// Reads until our FIN, waits this many ms (in CLOSE_WAIT), then closes.
    WaitForFin(u64),
    /// Reads the request, answers, then waits for our FIN.
    Echo,
    /// Closes with SO_LINGER 0: an RST instead of a FIN.
    Reset,
}

/// A kernel TCP server in the server namespace; stopped (and joined) on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(lab: &Lab, port: u16, b: Behaviour) -> Server {
        let listener = in_netns(&lab.server_ns, move || {
            TcpListener::bind(("::", port)).unwrap()
        })
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((c, _)) => handle(c, b),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

fn handle(mut c: TcpStream, b: Behaviour) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    match b {
        Behaviour::BannerClose => {
            let _ = c.write_all(b"SSH-2.0-synscope-lab\r\n");
        }
        Behaviour::WaitForFin(ms) => {
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            std::thread::sleep(Duration::from_millis(ms));
        }
        Behaviour::Echo => {
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        Behaviour::Reset => {
            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn trace(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
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

/// `ss -tan` lines in the server namespace about one client port.
fn ss_server(lab: &Lab, client_port: u16) -> Vec<String> {
    let out = lab.server_command("ss").args(["-tan"]).output().unwrap();
    let needle = format!(":{client_port}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|p| p.ends_with(&needle))
        })
        .map(str::to_string)
        .collect()
}

fn states_of(run: &Value, side: &str) -> Vec<String> {
    run["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["side"] == side)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

/// Our source port in a trace's JSON (`"source": "198.18.0.1:40123"`).
fn source_port(run: &Value) -> u16 {
    run["source"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A stage's duration in ns, by its id (`syn_synack`).
fn stage_ns(run: &Value, id: &str) -> Option<u64> {
    run["stages_us"][id]
        .as_f64()
        .map(|us| (us * 1e3).round() as u64)
}

/// Spawns a trace with `--json`; the child is the synscope process itself
/// (`ip netns exec` execs it).
fn spawn_trace(lab: &Lab, args: &[&str]) -> std::process::Child {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) for `cond`, polling.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn we_close_first_four_segments_server_close_wait_seen_by_ss() {
    if synscope_lab::skip_unless_root("we_close_first_four_segments_server_close_wait_seen_by_ss") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7001, Behaviour::WaitForFin(600));
    let child = spawn_trace(
        &lab,
        &[
            "198.18.0.2:7001",
            "--json",
            "--idle",
            "100ms",
            "--time-wait",
            "300ms",
        ],
    );
    // after our FIN (~100 ms) the server sits in CLOSE_WAIT for 600 ms
    let mut seen = Vec::new();
    wait_for("CLOSE-WAIT on the server", 5, || {
        let out = lab
            .server_command("ss")
            .args(["-tan", "state", "close-wait"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let hit = text.contains("198.18.0.2]:7001") || text.contains("198.18.0.2:7001");
        if hit {
            seen.push(text);
        }
        hit
    });
    let out = child.wait_with_output().unwrap();
    common::assert_status(&out, 0);
    let doc = json_of(&out);
    let run = &doc["traces"][0];
    assert_eq!(run["teardown"], "we_closed_first", "{run}");
    assert_eq!(
        states_of(run, "client"),
        [
            "syn_sent",
            "established",
            "fin_wait_1",
            "fin_wait_2",
            "time_wait",
            "closed"
        ]
    );
    assert_eq!(
        states_of(run, "server"),
        [
            "syn_recv",
            "established",
            "close_wait",
            "last_ack",
            "closed"
        ]
    );
    let flags: Vec<&str> = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flags"].as_str().unwrap())
        .collect();
    assert_eq!(flags, ["S", "S.", ".", "F.", ".", "F.", "."]);
    // the server waited 600 ms in CLOSE_WAIT before its FIN
    let fin_to_fin = stage_ns(run, "fin_peer_fin").unwrap();
    assert!(
        (600_000_000..900_000_000).contains(&fin_to_fin),
        "{fin_to_fin}"
    );
    assert!(stage_ns(run, "fin_ack").unwrap() < 50_000_000);
    let tw = stage_ns(run, "time_wait").unwrap();
    assert!((300_000_000..400_000_000).contains(&tw), "{tw}");
    // the server's socket is gone (it was LAST_ACK until our last ACK)
    let port = source_port(run);
    assert!(
        ss_server(&lab, port).is_empty(),
        "{:?}",
        ss_server(&lab, port)
    );
}

#[test]
fn peer_closes_first_banner_server_in_time_wait() {
    if synscope_lab::skip_unless_root("peer_closes_first_banner_server_in_time_wait") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7002, Behaviour::BannerClose);
    let out = trace(&lab, &["198.18.0.2:7002", "--json"]);
    common::assert_status(&out, 0);
    let doc = json_of(&out);
    let run = &doc["traces"][0];
    assert_eq!(run["teardown"], "peer_closed_first", "{run}");
    assert_eq!(run["received_bytes"], 22);
    assert_eq!(
        states_of(run, "client"),
        [
            "syn_sent",
            "established",
            "close_wait",
            "last_ack",
            "closed"
        ]
    );
    assert_eq!(
        states_of(run, "server"),
        [
            "syn_recv",
            "established",
            "fin_wait_1",
            "fin_wait_2",
            "time_wait"
        ]
    );
    assert!(stage_ns(run, "ack_first_byte").is_some(), "{run}");
    // the server side holds TIME_WAIT (Linux: 60 s), as the trace says
    let port = source_port(run);
    let lines = ss_server(&lab, port);
    assert!(
        lines.len() == 1 && lines[0].starts_with("TIME-WAIT"),
        "{lines:?}"
    );
}

#[test]
fn server_resets_instead_of_closing() {
    if synscope_lab::skip_unless_root("server_resets_instead_of_closing") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7004, Behaviour::Reset);
    let out = trace(&lab, &["198.18.0.2:7004", "--json"]);
    // an RST is not the FIN close asked for (issue 9 §6): exit 1, and why
    common::assert_status(&out, 1);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "reset_by_peer", "{run}");
    assert_eq!(run["succeeded"], false);
    assert_eq!(
        run["not_done"][0],
        "no orderly close with FINs (--close fin): reset by peer (RST instead of FIN)"
    );
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["dir"], "received");
    assert!(last["flags"].as_str().unwrap().contains('R'), "{last}");
}

#[test]
fn request_response_then_abort_with_rst() {
    if synscope_lab::skip_unless_root("request_response_then_abort_with_rst") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7003, Behaviour::Echo);
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7003",
            "--send",
            "hello\\r\\n",
            "--close",
            "rst",
            "--json",
        ],
    );
    common::assert_status(&out, 0);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "aborted_by_us", "{run}");
    assert_eq!(run["received_bytes"], 7);
    assert!(stage_ns(run, "request_first_byte").is_some(), "{run}");
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["dir"].as_str(), last["flags"].as_str()),
        (Some("sent"), Some("R."))
    );
    // our RST+ACK passed the RST filter: nothing is left on the server
    let port = source_port(run);
    assert!(
        ss_server(&lab, port).is_empty(),
        "{:?}",
        ss_server(&lab, port)
    );
}

/// `nft list tables` in a namespace.
fn tables(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rst_filter_is_scoped_to_the_flow_and_gone_after_sigint() {
    if synscope_lab::skip_unless_root("rst_filter_is_scoped_to_the_flow_and_gone_after_sigint") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7005, Behaviour::WaitForFin(0));
    let _other = Server::start(&lab, 7015, Behaviour::BannerClose);
    let child = spawn_trace(&lab, &["198.18.0.2:7005", "--json", "--idle", "20s"]);
    let ns = lab.client_ns.clone();
    wait_for("the trace's nftables table", 5, || {
        tables(&ns).contains("synscope_")
    });
    // the handshake is done and the kernel's RST to the SYN-ACK was dropped
    wait_for("a dropped RST", 5, || {
        let r = ruleset(&ns);
        r.contains("counter packets") && !r.contains("counter packets 0 ")
    });
    // other connections are untouched: a kernel connection works ...
    let echoed = in_netns(&lab.client_ns, || {
        let mut c = TcpStream::connect("198.18.0.2:7015").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = Vec::new();
        c.read_to_end(&mut b).is_ok() && b.starts_with(b"SSH-2.0")
    })
    .unwrap();
    assert!(echoed);
    // ... and the kernel still resets other raw flows: a SYN ping's SYN-ACK gets
    // the kernel's RST, so the server keeps no SYN-RECV for it
    let ping = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["ping", "198.18.0.2:7005", "-c", "1", "--json"])
        .output()
        .unwrap();
    assert_eq!(ping.status.code(), Some(0));
    let ping_port = json_of(&ping)["probes"][0]["src_port"].as_u64().unwrap() as u16;
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        ss_server(&lab, ping_port).is_empty(),
        "{:?}",
        ss_server(&lab, ping_port)
    );
    // our trace's connection is still ESTABLISHED on the server
    let run_port = {
        let out = lab
            .server_command("ss")
            .args(["-tan", "state", "established"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(":7005"))
            .count()
    };
    assert_eq!(run_port, 1);

    common::signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "interrupted: not all traces finished"
    );
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "interrupted");
    assert_eq!(json_of(&out)["interrupted"], true);
    // we aborted with RST+ACK, which passed the filter: the server dropped it
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["flags"], "R.");
    assert!(
        !tables(&lab.client_ns).contains("synscope_"),
        "{}",
        tables(&lab.client_ns)
    );
}

#[test]
fn rst_filter_table_vanishes_after_sigkill() {
    if synscope_lab::skip_unless_root("rst_filter_table_vanishes_after_sigkill") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7006, Behaviour::WaitForFin(0));
    let child = spawn_trace(&lab, &["198.18.0.2:7006", "--idle", "20s"]);
    let ns = lab.client_ns.clone();
    wait_for("the trace's nftables table", 5, || {
        tables(&ns).contains("synscope_")
    });
    common::signal(&child, "-KILL");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by a signal");
    // the kernel deletes an owner table when its netlink socket closes
    wait_for("the table to vanish", 2, || {
        !tables(&ns).contains("synscope_")
    });
    assert_eq!(tables(&ns).trim(), "", "no table at all is left");
}

/// (flags, seq, ack, len) → capture timestamps, from captured packets.
fn capture_index(packets: Vec<(u64, Vec<u8>)>) -> Vec<((String, u32, u32, u32), u64)> {
    use synscope::wire::datagram::Checksums;
    use synscope::wire::{Datagram, Transport};
    packets
        .into_iter()
        .filter_map(|(ts, pkt)| {
            let d = Datagram::parse_with(&pkt, Checksums::Offloaded).ok()?;
            let Transport::Tcp(t) = d.transport else {
                return None;
            };
            let key = (
                t.flags.to_string(),
                t.seq.0,
                t.ack.0,
                t.payload.len() as u32,
            );
            Some((key, ts))
        })
        .collect()
}

#[test]
fn every_segment_and_stage_time_matches_a_tcpdump_capture() {
    if synscope_lab::skip_unless_root("every_segment_and_stage_time_matches_a_tcpdump_capture") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7007, Behaviour::Echo);
    let dump = common::Tcpdump::start(&lab, "trace", "tcp port 7007");
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7007",
            "--send",
            "GET / HTTP/1.0\\r\\n\\r\\n",
            "--json",
            "--time-wait",
            "200ms",
        ],
    );
    let captured = dump.stop();
    common::assert_status(&out, 0);
    let index = capture_index(captured);
    let run = &json_of(&out)["traces"][0];
    let segs = run["segments"].as_array().unwrap();
    assert!(segs.len() >= 8, "{run}");
    let mut wire_at = Vec::new();
    for s in segs {
        let key = (
            s["flags"].as_str().unwrap().to_string(),
            s["seq"].as_u64().unwrap() as u32,
            s["ack"].as_u64().unwrap() as u32,
            s["len"].as_u64().unwrap() as u32,
        );
        let at: u64 = s["at_ns"].as_str().unwrap().parse().unwrap();
        let wire = index
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, ts)| *ts)
            .min_by_key(|ts| ts.abs_diff(at))
            .unwrap_or_else(|| panic!("segment {s} not in the capture"));
        assert_eq!(s["stamp"], "kernel", "{s}");
        // kernel stamps like tcpdump's: usually within a few µs (a received packet
        // is stamped per packet socket after veth crosses namespaces, and under a
        // loaded CI the two deliveries can drift apart by tens of µs); user-space
        // stamps would be off by far more. bench/ shows the precision itself.
        assert!(wire.abs_diff(at) < 200_000, "{s}: capture {wire}");
        wire_at.push(wire);
    }
    // stages recomputed from the capture's own times
    let find = |dir: &str, flags: &str| {
        segs.iter()
            .position(|s| s["dir"] == dir && s["flags"] == flags)
            .unwrap()
    };
    let syn = find("sent", "S");
    let synack = find("received", "S.");
    let req = segs
        .iter()
        .position(|s| s["dir"] == "sent" && s["len"].as_u64() > Some(0))
        .unwrap();
    let resp = segs
        .iter()
        .position(|s| s["dir"] == "received" && s["len"].as_u64() > Some(0))
        .unwrap();
    let our_fin = find("sent", "F.");
    let peer_fin = find("received", "F.");
    for (name, a, b) in [
        ("syn_synack", syn, synack),
        ("request_first_byte", req, resp),
        ("fin_peer_fin", our_fin, peer_fin),
    ] {
        let reported = stage_ns(run, name).unwrap();
        let wire = wire_at[b] - wire_at[a];
        assert!(
            reported.abs_diff(wire) < 200_000,
            "{name}: reported {reported} ns, capture {wire} ns"
        );
    }
}

#[test]
fn count_gives_per_stage_statistics_and_pcap_is_readable() {
    if synscope_lab::skip_unless_root("count_gives_per_stage_statistics_and_pcap_is_readable") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7008, Behaviour::WaitForFin(0));
    let pcap = std::env::temp_dir().join(format!("synscope-own-{}.pcap", std::process::id()));
    let args = [
        "198.18.0.2:7008",
        "--count",
        "4",
        "--interval",
        "10ms",
        "--idle",
        "20ms",
        "--time-wait",
        "50ms",
        "--json",
        "--pcap",
    ];
    let out = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .arg(&pcap)
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    let doc = json_of(&out);
    assert_eq!(doc["traces"].as_array().unwrap().len(), 4);
    let st = &doc["stats"]["syn_synack"];
    assert_eq!(st["count"], 4);
    for k in ["min_us", "avg_us", "max_us", "p50_us", "p90_us", "p99_us"] {
        assert!(st[k].as_f64().unwrap() > 0.0, "{k}: {st}");
    }
    assert_eq!(doc["stats"]["time_wait"]["count"], 4);
    // every packet of the four traces, readable by tcpdump
    let segments: usize = doc["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["segments"].as_array().unwrap().len())
        .sum();
    let r = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&r.stdout);
    assert_eq!(text.lines().count(), segments, "{text}");
    assert!(text.lines().next().unwrap().contains("Flags [S]"), "{text}");

    // text form: the first ladder, one line per later trace, a statistics table
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7008",
            "-c",
            "3",
            "-i",
            "10ms",
            "--idle",
            "20ms",
            "--time-wait",
            "20ms",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "--- 3 traces, 3 complete (handshake, request acknowledged, teardown as asked) ---"
        ),
        "{text}"
    );
    assert!(
        text.contains("p99") && text.contains("SYN → SYN-ACK"),
        "{text}"
    );
    assert_eq!(text.matches("|-- S ").count(), 1, "one ladder: {text}");
}

#[test]
fn retransmitted_fin_is_answered_in_time_wait_while_server_sits_in_last_ack() {
    if synscope_lab::skip_unless_root(
        "retransmitted_fin_is_answered_in_time_wait_while_server_sits_in_last_ack",
    ) {
        return;
    }
    let lab = lab();
    // in the server: once it has sent its FIN, drop our pure ACKs, so it stays
    // in LAST_ACK and retransmits its FIN
    let rules = "table inet lastack {\n chain out { type filter hook output priority 0; tcp sport 7009 tcp flags & fin == fin ct mark set 1; }\n chain in { type filter hook input priority 0; tcp dport 7009 ct mark 1 tcp flags == ack drop; }\n}\n";
    let mut nft = lab
        .server_command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success());
    let _srv = Server::start(&lab, 7009, Behaviour::WaitForFin(0));
    let child = spawn_trace(
        &lab,
        &[
            "198.18.0.2:7009",
            "--json",
            "--idle",
            "50ms",
            "--time-wait",
            "1500ms",
        ],
    );
    let mut last_ack = false;
    wait_for("LAST-ACK on the server", 5, || {
        let out = lab
            .server_command("ss")
            .args(["-tan", "state", "last-ack"])
            .output()
            .unwrap();
        last_ack = String::from_utf8_lossy(&out.stdout).contains(":7009");
        last_ack
    });
    let out = child.wait_with_output().unwrap();
    common::assert_status(&out, 0);
    let run = &json_of(&out)["traces"][0];
    assert!(
        states_of(run, "server").contains(&"last_ack".to_string()),
        "{run}"
    );
    let segs = run["segments"].as_array().unwrap();
    let dup_fins: Vec<usize> = segs
        .iter()
        .enumerate()
        .filter(|(_, s)| s["dir"] == "received" && s["note"] == "duplicate" && s["flags"] == "F.")
        .map(|(i, _)| i)
        .collect();
    assert!(
        !dup_fins.is_empty(),
        "the server retransmitted its FIN: {run}"
    );
    for i in dup_fins {
        assert_eq!(segs[i]["client_state"], "time_wait");
        let next = &segs[i + 1];
        assert_eq!(
            (next["dir"].as_str(), next["flags"].as_str()),
            (Some("sent"), Some(".")),
            "answered"
        );
    }
}

#[test]
fn half_open_records_the_synack_retransmission_schedule() {
    if synscope_lab::skip_unless_root("half_open_records_the_synack_retransmission_schedule") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7010, Behaviour::WaitForFin(0));
    let child = spawn_trace(
        &lab,
        &[
            "198.18.0.2:7010",
            "--half-open",
            "--timeout",
            "3500ms",
            "--json",
        ],
    );
    // meanwhile the server holds a request socket in SYN-RECV
    wait_for("SYN-RECV on the server", 3, || {
        let out = lab
            .server_command("ss")
            .args(["-tan", "state", "syn-recv"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(":7010")
    });
    let out = child.wait_with_output().unwrap();
    common::assert_status(&out, 0);
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "half_open");
    let h = &run["half_open"];
    assert_eq!(h["server_kept"], "half_open_state", "{h}");
    let iv: Vec<f64> = h["intervals_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // Linux: first retransmission after 1 s, then 2 s
    assert!(iv.len() >= 2, "{h}");
    assert!(
        (900e3..1300e3).contains(&iv[0]) && (1800e3..2500e3).contains(&iv[1]),
        "{h}"
    );
    // no ACK was ever sent; the RST cleaned up the server's request socket
    let segs = run["segments"].as_array().unwrap();
    assert!(
        !segs.iter().any(|s| s["dir"] == "sent" && s["flags"] == "."),
        "{run}"
    );
    assert_eq!(segs.last().unwrap()["flags"], "R.");
    let out = lab
        .server_command("ss")
        .args(["-tan", "state", "syn-recv"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(":7010"));
}

#[test]
fn half_open_recognises_syn_cookies() {
    if synscope_lab::skip_unless_root("half_open_recognises_syn_cookies") {
        return;
    }
    let lab = lab();
    in_netns(&lab.server_ns, || {
        std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").unwrap()
    })
    .unwrap();
    let _srv = Server::start(&lab, 7011, Behaviour::WaitForFin(0));
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7011",
            "--half-open",
            "--timeout",
            "2s",
            "--json",
        ],
    );
    common::assert_status(&out, 0);
    let run = &json_of(&out)["traces"][0];
    let h = &run["half_open"];
    assert_eq!(h["server_kept"], "syn_cookies", "{h}");
    assert_eq!(h["retransmissions"], 0);
}

#[test]
fn ping_writes_a_pcap_too() {
    if synscope_lab::skip_unless_root("ping_writes_a_pcap_too") {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7012, Behaviour::WaitForFin(0));
    let pcap = std::env::temp_dir().join(format!("synscope-ping-{}.pcap", std::process::id()));
    let out = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["ping", "198.18.0.2:7012", "-c", "2", "-i", "20ms", "--pcap"])
        .arg(&pcap)
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    let r = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&r.stdout);
    // two SYNs and two SYN-ACKs (the kernel's RSTs too, when captured in time)
    assert!(text.matches("Flags [S]").count() == 2, "{text}");
    assert!(text.matches("Flags [S.]").count() == 2, "{text}");
}

#[test]
fn bare_syn_means_no_option_at_all_and_the_connection_still_completes() {
    if synscope_lab::skip_unless_root(
        "bare_syn_means_no_option_at_all_and_the_connection_still_completes",
    ) {
        return;
    }
    let lab = lab();
    let _srv = Server::start(&lab, 7008, Behaviour::Echo);
    let pcap = std::env::temp_dir().join(format!("synscope-bare-{}.pcap", std::process::id()));
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7008",
            "--bare-syn",
            "--send",
            "hello\\r\\n",
            "--json",
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    );
    common::assert_status(&out, 0);
    assert_eq!(json_of(&out)["traces"][0]["received_bytes"], 7);
    let packets = common::read_pcap(&pcap);
    let _ = std::fs::remove_file(&pcap);
    // the first packet is our SYN: a 20-byte IPv4 header, then a TCP header of
    // 20 bytes (data offset 5): no option, as ping's and scan's bare SYNs
    let syn = &packets.first().expect("a SYN in the pcap").1;
    assert_eq!(syn[20 + 13] & 0x12, 0x02, "a SYN: {syn:02x?}");
    assert_eq!(syn[20 + 12] >> 4, 5, "no TCP options: {syn:02x?}");
}
