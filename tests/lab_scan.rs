//! `synscope scan` against the kernel's TCP in a namespace lab: every port of
//! the lab host classified (IPv4 and IPv6), a 65,536-host scan, and shards
//! whose union is the full scan without duplicates. Needs root, `ip`, `nft`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6};

mod common;

fn scan(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("scan")
        .args(args)
        .output()
        .unwrap()
}

fn ndjson(out: &Output) -> Vec<Value> {
    common::assert_status(out, 0);
    common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout))
}

/// (verdict, reason) of every port, from one scan's NDJSON.
fn verdicts(lines: &[Value]) -> BTreeMap<u64, (String, Option<String>)> {
    let mut m = BTreeMap::new();
    for v in lines.iter().filter(|v| v["kind"] == "result") {
        let port = v["port"].as_u64().unwrap();
        let prev = m.insert(
            port,
            (
                v["verdict"].as_str().unwrap().to_string(),
                v["reason"].as_str().map(str::to_string),
            ),
        );
        assert!(prev.is_none(), "port {port} reported twice");
    }
    m
}

fn every_port_classified(target: &str) {
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let out = scan(
        &lab,
        &[
            target,
            "-p-",
            "--rate",
            "100000",
            "--timeout",
            "300ms",
            "--ndjson",
        ],
    );
    let lines = ndjson(&out);
    let got = verdicts(&lines);
    assert_eq!(got.len(), 65535);
    let spec = LabSpec::standard();
    for port in 1..=65535u16 {
        let want: (&str, Option<&str>) = if spec.open.contains(&port) {
            ("open", None)
        } else if spec.dropped.contains(&port) {
            ("no_response", None)
        } else if spec.admin_prohibited.contains(&port) {
            ("filtered", Some("admin_prohibited"))
        } else if spec.port_unreachable.contains(&port) {
            ("filtered", Some("port_unreachable"))
        } else {
            ("closed", None)
        };
        let (v, r) = &got[&(port as u64)];
        assert_eq!((v.as_str(), r.as_deref()), want, "port {port}");
    }
    let summary = lines.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["open"], 3);
    assert_eq!(summary["capture_drops"], 0);
}

#[test]
fn every_port_of_the_lab_host_ipv4() {
    if synscope_lab::skip_unless_root("every_port_of_the_lab_host_ipv4") {
        return;
    }
    every_port_classified(&SERVER_V4.to_string());
}

#[test]
fn every_port_of_the_lab_host_ipv6() {
    if synscope_lab::skip_unless_root("every_port_of_the_lab_host_ipv6") {
        return;
    }
    every_port_classified(&SERVER_V6.to_string());
}

#[test]
fn open_only_text_table() {
    if synscope_lab::skip_unless_root("open_only_text_table") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let out = scan(
        &lab,
        &[
            &SERVER_V4.to_string(),
            "-p",
            "1-1000",
            "--open",
            "--rate",
            "50000",
            "--timeout",
            "200ms",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for port in ["22/tcp", "80/tcp", "443/tcp"] {
        assert!(text.contains(port), "{text}");
    }
    assert!(
        !text.contains("closed ports not shown") && !text.contains("111/tcp"),
        "{text}"
    );
    assert!(text.contains("scanned 1 host x 1000 ports"), "{text}");
}

/// (host, port, verdict) of every result line.
fn results(lines: &[Value]) -> Vec<(String, u64, String)> {
    lines
        .iter()
        .filter(|v| v["kind"] == "result")
        .map(|v| {
            (
                v["host"].as_str().unwrap().to_string(),
                v["port"].as_u64().unwrap(),
                v["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn many_hosts_and_shards_union_to_the_full_scan() {
    if synscope_lab::skip_unless_root("many_hosts_and_shards_union_to_the_full_scan") {
        return;
    }
    let spec = LabSpec {
        many_hosts_v4: Some("198.19.0.0/16".into()),
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    let common = [
        "198.19.0.0/16",
        "-p",
        "80,81",
        "--rate",
        "100000",
        "--timeout",
        "500ms",
        "--seed",
        "7",
        "--ndjson",
    ];
    let full = results(&ndjson(&scan(&lab, &common)));
    assert_eq!(full.len(), 65536 * 2);
    let full_set: BTreeSet<_> = full.iter().cloned().collect();
    assert_eq!(full_set.len(), full.len(), "duplicates in the full scan");
    assert!(
        full.iter()
            .all(|(_, p, v)| (*p == 80 && v == "open") || (*p == 81 && v == "closed"))
    );

    let mut union = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let mut args = common.to_vec();
        args.extend(["--shard", &shard]);
        let part = results(&ndjson(&scan(&lab, &args)));
        assert!(
            (43690..=43691).contains(&part.len()),
            "shard {shard}: {}",
            part.len()
        );
        union.extend(part);
    }
    let union_set: BTreeSet<_> = union.iter().cloned().collect();
    assert_eq!(
        union.len(),
        union_set.len(),
        "a (host, port) probed by two shards"
    );
    assert_eq!(union_set, full_set);
}

/// `--pcap FILE`: the replies the capture read, with their kernel stamps:
/// a SYN-ACK from each open port, an RST from a closed one, no SYN of ours.
#[test]
fn scan_pcap_holds_the_replies() {
    if synscope_lab::skip_unless_root("scan_pcap_holds_the_replies") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let path = std::env::temp_dir().join(format!("synscope-scan-{}.pcap", std::process::id()));
    let target = SERVER_V4.to_string();
    let out = scan(
        &lab,
        &[
            &target,
            "-p",
            "22,80,443,1000",
            "--timeout",
            "300ms",
            "--ndjson",
            "--pcap",
            path.to_str().unwrap(),
        ],
    );
    ndjson(&out);
    let packets = common::read_pcap(&path);
    let _ = std::fs::remove_file(&path);
    // (source port, TCP flags) of each IPv4 TCP datagram from the server
    let from_server: Vec<(u16, u8)> = packets
        .iter()
        .filter(|(_, d)| {
            d.len() >= 40 && d[0] >> 4 == 4 && d[9] == 6 && d[12..16] == SERVER_V4.octets()
        })
        .map(|(_, d)| {
            let ihl = (d[0] & 0x0f) as usize * 4;
            (u16::from_be_bytes([d[ihl], d[ihl + 1]]), d[ihl + 13])
        })
        .collect();
    for port in [22, 80, 443] {
        assert!(
            from_server
                .iter()
                .any(|&(p, f)| p == port && f & 0x12 == 0x12),
            "no SYN-ACK from port {port} in the pcap: {from_server:?}"
        );
    }
    assert!(
        from_server.iter().any(|&(p, f)| p == 1000 && f & 0x04 != 0),
        "no RST from port 1000 in the pcap: {from_server:?}"
    );
    assert!(
        !packets
            .iter()
            .any(|(_, d)| d.len() >= 20 && d[16..20] == SERVER_V4.octets()),
        "only replies: nothing sent to the server is in the pcap"
    );
    assert!(
        packets.iter().all(|(t, _)| *t > 0),
        "every record has its kernel stamp"
    );
}

/// The packets counted by the server's `rsts` counter since the last call
/// (the RSTs that came to its open ports), reset as read.
fn server_rsts(lab: &Lab) -> u64 {
    let out = lab
        .server_command("nft")
        .args(["reset", "counter", "inet", "rsts", "rsts"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

/// Who resets the SYN-ACKs: the kernel of the client does (no socket owns
/// the connection), so synscope learns that from the first and sends none
/// of its own: one RST per open port reaches the server, not two. With the
/// client's firewall keeping SYN-ACKs from its kernel, synscope resets each
/// itself. Either way no connection is left half-open on the server.
#[test]
fn syn_acks_are_reset_once_by_the_kernel_or_by_us() {
    if synscope_lab::skip_unless_root("syn_acks_are_reset_once_by_the_kernel_or_by_us") {
        return;
    }
    let spec = LabSpec {
        many_hosts_v4: Some("198.19.0.0/24".into()),
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    synscope_lab::nft(
        &lab.server_ns,
        "table inet rsts {\n counter rsts {}\n chain in { type filter hook input priority -10; tcp dport { 22, 80, 443 } tcp flags rst counter name rsts; }\n}\n",
    ).unwrap();
    let args = [
        "198.19.0.0/24",
        "-p",
        "22,80,81,443",
        "--timeout",
        "300ms",
        "--ndjson",
        "-v",
    ];
    let half_open = |lab: &Lab| {
        let out = lab
            .server_command("ss")
            .args(["-Htn", "state", "syn-recv"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    for (kernel_sees, said) in [
        (true, "resets: the kernel reset 16 SYN-ACKs to"),
        (false, "synscope resets every SYN-ACK to"),
    ] {
        if !kernel_sees {
            // the capture reads the SYN-ACKs before the input hook drops them
            synscope_lab::nft(
                &lab.client_ns,
                "table inet nosynack {\n chain in { type filter hook input priority 0; tcp flags & (syn | ack) == syn | ack drop; }\n}\n",
            ).unwrap();
        }
        server_rsts(&lab);
        let out = scan(&lab, &args);
        let lines = ndjson(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(said),
            "kernel sees SYN-ACKs: {kernel_sees}: {stderr}"
        );
        let open = lines.iter().filter(|v| v["verdict"] == "open").count() as u64;
        assert_eq!(open, 256 * 3);
        let summary = lines.last().unwrap();
        let ours = summary["resets_sent"].as_u64().unwrap();
        assert_eq!(ours, if kernel_sees { 0 } else { open }, "{summary}");
        // one RST per open port: the kernel's, or ours
        assert_eq!(
            server_rsts(&lab),
            open,
            "kernel sees SYN-ACKs: {kernel_sees}"
        );
        assert_eq!(half_open(&lab), 0);
    }
}

/// Interrupted, a scan whose SYN-ACKs the kernel cannot reset (the client's
/// firewall keeps them from it) reads on briefly and resets those still on
/// their way: no connection is left half-open on the server.
#[test]
fn an_interrupted_scan_leaves_no_half_open_connection() {
    if synscope_lab::skip_unless_root("an_interrupted_scan_leaves_no_half_open_connection") {
        return;
    }
    let spec = LabSpec {
        many_hosts_v4: Some("198.19.0.0/16".into()),
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    synscope_lab::nft(
        &lab.client_ns,
        "table inet nosynack {\n chain in { type filter hook input priority 0; tcp flags & (syn | ack) == syn | ack drop; }\n}\n",
    ).unwrap();
    let child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args([
            "scan",
            "198.19.0.0/16",
            "-p",
            "22,80,81,443",
            "--ndjson",
            "--open",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    common::assert_status(&out, 1);
    let lines = common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout));
    let summary = lines.last().unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    let open = summary["open"].as_u64().unwrap();
    assert!(
        open > 0 && summary["resets_sent"].as_u64().unwrap() >= open,
        "{summary}"
    );
    let half_open = lab
        .server_command("ss")
        .args(["-Htn", "state", "syn-recv"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&half_open.stdout).lines().count();
    assert_eq!(left, 0, "half-open on the server after the interrupt");
}
