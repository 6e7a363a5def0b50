//! `synscope path` in a routed namespace lab (client — router 1 — router 2 —
//! router 3 — server, real kernels forwarding; router 2 drops, rejects and
//! rewrites by nftables): the dropping and the rejecting hop are named, every
//! rewrite is seen where it first shows, v4 and v6. Needs root, `ip`, `nft`.

use serde_json::Value;
use std::process::Output;
use synscope_lab::Lab;
use synscope_lab::routed::{self, RoutedSpec};

mod common;

fn lab() -> Lab {
    Lab::up_routed(&RoutedSpec::standard()).expect("routed lab up (needs root, iproute2, nftables)")
}

fn synscope(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(args)
        .output()
        .expect("run synscope")
}

#[test]
fn the_routed_lab_forwards_and_its_routers_answer_time_exceeded() {
    if synscope_lab::skip_unless_root(
        "the_routed_lab_forwards_and_its_routers_answer_time_exceeded",
    ) {
        return;
    }
    let lab = lab();
    let server = format!("{}:80", routed::server_v4(3));
    let out = synscope(&lab, &["ping", &server, "-c", "1", "--json"]);
    common::assert_status(&out, 0);
    let out = synscope(
        &lab,
        &[
            "ping", &server, "-c", "1", "--ttl", "2", "--expect", "filtered",
        ],
    );
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("time-exceeded from 198.18.2.2"), "{text}");
    let server6 = format!("[{}]:80", routed::server_v6(3));
    let out = synscope(
        &lab,
        &[
            "ping", &server6, "-c", "1", "--ttl", "1", "--expect", "filtered",
        ],
    );
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("time-exceeded from 2001:db8:1::2"), "{text}");
}

/// `synscope path TARGET ARGS.. --json` from the client: its exit status and document.
fn path_json(lab: &Lab, target: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["path", target, "--json"];
    all.extend_from_slice(args);
    let out = synscope(lab, &all);
    if out.stdout.starts_with(b"{") {
        common::schema::check_document("path", &String::from_utf8_lossy(&out.stdout));
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{target}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

fn targets(port: u16) -> [(String, [String; 3]); 2] {
    [
        (
            format!("{}:{port}", routed::server_v4(3)),
            [1, 2, 3].map(|k| routed::router_v4(k).to_string()),
        ),
        (
            format!("[{}]:{port}", routed::server_v6(3)),
            [1, 2, 3].map(|k| routed::router_v6(k).to_string()),
        ),
    ]
}

/// (hop, field, sent, seen) of the document's first-seen changes.
fn changes(doc: &Value) -> Vec<(u64, String, String, String)> {
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hop"].as_u64().unwrap(),
                c["field"].as_str().unwrap().to_string(),
                c["sent"].as_str().unwrap().to_string(),
                c["seen"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_open_port_is_reached_at_the_right_distance_through_every_router() {
    if synscope_lab::skip_unless_root(
        "an_open_port_is_reached_at_the_right_distance_through_every_router",
    ) {
        return;
    }
    let lab = lab();
    for (target, routers) in targets(80) {
        let (code, doc) = path_json(&lab, &target, &["-c", "2"]);
        assert_eq!(code, 0, "{doc}");
        let o = &doc["outcome"];
        assert_eq!(o["result"], "reached", "{doc}");
        assert_eq!(o["hop"], 4, "three routers, then the server: {doc}");
        assert_eq!(o["open"], true);
        let hops = doc["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 4);
        for (h, r) in hops.iter().zip(&routers) {
            assert_eq!(h["addresses"][0], r.as_str(), "{h}");
            assert_eq!(h["answer"], "time_exceeded");
            assert_eq!(h["answered"], 2);
            assert!(h["rtt"]["min_us"].as_f64().unwrap() > 0.0);
            assert_eq!(h["changes"].as_array().unwrap().len(), 0, "{h}");
        }
        assert_eq!(hops[3]["answer"], "syn_ack");
        assert_eq!(changes(&doc), vec![], "an untouched port shows no change");
        for p in hops.iter().flat_map(|h| h["probes"].as_array().unwrap()) {
            assert_eq!(p["kernel_stamped"], true, "{p}");
        }
    }
}

#[test]
fn a_closed_port_is_reached_too() {
    if synscope_lab::skip_unless_root("a_closed_port_is_reached_too") {
        return;
    }
    let lab = lab();
    let (code, doc) = path_json(&lab, &format!("{}:9", routed::server_v4(3)), &[]);
    assert_eq!(code, 0);
    assert_eq!(doc["outcome"]["result"], "reached");
    assert_eq!(doc["outcome"]["open"], false);
    assert_eq!(doc["hops"][3]["answer"], "rst");
}

#[test]
fn a_drop_is_named_after_the_last_hop_that_forwarded() {
    if synscope_lab::skip_unless_root("a_drop_is_named_after_the_last_hop_that_forwarded") {
        return;
    }
    let lab = lab();
    for (target, routers) in targets(8443) {
        let (code, doc) = path_json(&lab, &target, &["-c", "2", "-W", "300ms"]);
        assert_eq!(code, 1, "{doc}");
        let o = &doc["outcome"];
        assert_eq!(o["result"], "dropped", "{doc}");
        assert_eq!(o["hop"], 2);
        assert_eq!(o["address"], routers[1].as_str());
        let text = format!(
            "dropped after hop 2 ({}): no answer from hop 3 on",
            routers[1]
        );
        assert_eq!(o["text"], text.as_str());
        // the run gave up after GAP silent hops beyond hop 2
        let hops = doc["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 2 + synscope::probe::path::GAP as usize);
        assert!(hops[2..].iter().all(|h| h["answered"] == 0));
    }
    // the text form says the same
    let out = synscope(&lab, &["path", &targets(8443)[0].0, "-W", "300ms"]);
    common::assert_status(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("result: dropped after hop 2 (198.18.2.2)"),
        "{text}"
    );
}

#[test]
fn a_reject_is_named_with_its_hop_and_reason() {
    if synscope_lab::skip_unless_root("a_reject_is_named_with_its_hop_and_reason") {
        return;
    }
    let lab = lab();
    for (target, routers) in targets(111) {
        let (code, doc) = path_json(&lab, &target, &[]);
        assert_eq!(code, 1, "{doc}");
        let o = &doc["outcome"];
        assert_eq!(o["result"], "rejected", "{doc}");
        assert_eq!(o["reason"], "admin_prohibited");
        // router 2 answers time-exceeded at TTL 2 and rejects from TTL 3: hop 2
        assert_eq!(o["hop"], 2);
        assert_eq!(o["address"], routers[1].as_str());
        assert_eq!(o["by_destination"], false);
        assert_eq!(doc["hops"].as_array().unwrap().len(), 3);
        assert_eq!(doc["hops"][2]["answer"], "admin_prohibited");
    }
    let out = synscope(&lab, &["path", &targets(111)[0].0]);
    common::assert_status(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("result: rejected by hop 2 (198.18.2.2): admin-prohibited"),
        "{text}"
    );
}

#[test]
fn an_mss_clamp_shows_in_the_next_routers_quote() {
    if synscope_lab::skip_unless_root("an_mss_clamp_shows_in_the_next_routers_quote") {
        return;
    }
    let lab = lab();
    for (i, (target, _)) in targets(8080).iter().enumerate() {
        let (code, doc) = path_json(&lab, target, &[]);
        assert_eq!(code, 0, "{doc}");
        let mss = doc["sent"]["options"]["mss"].as_u64().unwrap().to_string();
        assert_eq!(mss, if i == 0 { "1460" } else { "1440" });
        assert_eq!(
            changes(&doc),
            vec![(3, "mss".into(), mss, routed::CLAMPED_MSS.to_string())],
            "{doc}"
        );
        assert_eq!(doc["hops"][2]["first_seen"][0]["field"], "mss");
    }
    let out = synscope(&lab, &["path", &targets(8080)[0].0]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed: mss 1460->1200 (first seen in hop 3's quote"),
        "{text}"
    );
}

#[test]
fn dscp_ecn_and_ece_cwr_bleaching_show_where_they_happen() {
    if synscope_lab::skip_unless_root("dscp_ecn_and_ece_cwr_bleaching_show_where_they_happen") {
        return;
    }
    let lab = lab();
    for (target, _) in targets(8081) {
        // DSCP EF with ECT(0), ECE and CWR on the SYN
        let (code, doc) = path_json(&lab, &target, &["--ecn", "--tos", "0xba"]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["sent"]["flags"], "SEW");
        let got = changes(&doc);
        for want in [
            (3, "dscp", "ef", "cs1"),
            (3, "ecn", "ect0", "not-ect"),
            (3, "tcp_flags", "SEW", "S"),
        ] {
            let w = (want.0, want.1.into(), want.2.into(), want.3.into());
            assert!(got.contains(&w), "{want:?} not in {got:?}");
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(doc["ecn"]["bleached_at"], 3);
    }
}

#[test]
fn ecn_negotiation_is_reported_from_the_syn_ack() {
    if synscope_lab::skip_unless_root("ecn_negotiation_is_reported_from_the_syn_ack") {
        return;
    }
    let lab = lab();
    // Linux (net.ipv4.tcp_ecn = 2) agrees to ECN asked for by a not-ECT SYN
    let (code, doc) = path_json(&lab, &targets(80)[0].0, &["--ecn"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["ecn"]["negotiated"], true, "{doc}");
    assert_eq!(doc["ecn"]["bleached_at"], Value::Null);
    assert_eq!(doc["hops"][3]["probes"][0]["reply"]["flags"], "SE.");
    // where router 2 clears ECE and CWR, the server never sees the request
    let (_, doc) = path_json(&lab, &targets(8081)[0].0, &["--ecn"]);
    assert_eq!(doc["ecn"]["negotiated"], false, "{doc}");
    assert_eq!(doc["ecn"]["bleached_at"], 3);
}

#[test]
fn stripped_options_are_named() {
    if synscope_lab::skip_unless_root("stripped_options_are_named") {
        return;
    }
    let lab = lab();
    for (target, _) in targets(8082) {
        let (code, doc) = path_json(&lab, &target, &[]);
        assert_eq!(code, 0, "{doc}");
        let fields: Vec<String> = changes(&doc).into_iter().map(|c| c.1).collect();
        assert_eq!(
            fields,
            vec!["window_scale", "sack_permitted", "timestamps"],
            "{doc}"
        );
        assert!(changes(&doc).iter().all(|c| c.0 == 3 && c.3 == "absent"));
        // the server answers the stripped SYN without them
        let reply = &doc["hops"][3]["probes"][0]["reply"]["options"];
        assert_eq!(reply["sack_permitted"], false, "{reply}");
    }
}

#[test]
fn rtts_are_the_kernel_stamps_tcpdump_sees() {
    if synscope_lab::skip_unless_root("rtts_are_the_kernel_stamps_tcpdump_sees") {
        return;
    }
    use synscope::wire::datagram::Checksums;
    use synscope::wire::{Datagram, Transport, quote::QuotedTcp};
    let lab = lab();
    let dump = common::Tcpdump::start(&lab, "path", "tcp port 8080 or icmp");
    let (code, doc) = path_json(&lab, &targets(8080)[0].0, &[]);
    let captured = dump.stop();
    assert_eq!(code, 0);
    // tcpdump's view: each SYN (by sequence number) and the first answer to it
    let mut syn_at = std::collections::HashMap::new();
    let mut rtt = std::collections::HashMap::new();
    for (ts, pkt) in &captured {
        let Ok(d) = Datagram::parse_with(pkt, Checksums::Offloaded) else {
            continue;
        };
        let isn = match d.transport {
            Transport::Tcp(t)
                if t.flags.contains(synscope::wire::TcpFlags::SYN) && t.ack.0 == 0 =>
            {
                syn_at.insert(t.seq.0, *ts);
                continue;
            }
            Transport::Tcp(t) => t.ack.0.wrapping_sub(1),
            Transport::Icmp(_) => {
                let (_, icmp) = synscope::wire::IpRepr::parse(pkt).unwrap();
                match QuotedTcp::parse_icmp(icmp).ok().and_then(|q| q.seq) {
                    Some(s) => s,
                    None => continue,
                }
            }
            _ => continue,
        };
        if let Some(s) = syn_at.get(&isn) {
            rtt.entry(isn).or_insert(ts - s);
        }
    }
    let mut compared = 0;
    for p in doc["hops"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["probes"].as_array().unwrap())
    {
        let isn = p["isn"].as_u64().unwrap() as u32;
        let ours = (p["rtt_us"].as_f64().unwrap() * 1e3).round() as i64;
        let wire = *rtt
            .get(&isn)
            .unwrap_or_else(|| panic!("{p} not in capture")) as i64;
        // the same kernel stamps; the bound leaves room for a loaded machine
        assert!(
            (ours - wire).abs() < 200_000,
            "{p}: ours {ours} ns, tcpdump {wire} ns"
        );
        compared += 1;
    }
    assert_eq!(compared, 12, "4 hops x 3 probes");
}

#[test]
fn bad_command_lines_say_why_in_one_line_with_status_2() {
    if synscope_lab::skip_unless_root("bad_command_lines_say_why_in_one_line_with_status_2") {
        return;
    }
    for (args, why) in [
        (&["path", "198.18.4.2:0"][..], "bad port '0'"),
        (&["path", "198.18.4.2", "--tos", "0x1ff"], "bad TOS '0x1ff'"),
        (&["path", "198.18.4.2", "-c", "17"], "--count"),
        (&["path", "198.18.4.2", "-m", "0"], "--max-hops"),
        (
            &["path", "198.18.4.2", "-W", "0s"],
            "must be more than zero",
        ),
        (&["path", "198.18.4.2", "-6"], "has no IPv6 address"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_synscope"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn sigint_prints_the_result_so_far() {
    if synscope_lab::skip_unless_root("sigint_prints_the_result_so_far") {
        return;
    }
    let lab = lab();
    let child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["path", &targets(8443)[0].0, "-W", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    common::signal(&child, "-INT");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    common::assert_status(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(interrupted: result so far)"), "{text}");
    assert!(text.contains("dropped after hop 2 (198.18.2.2)"), "{text}");
}

#[test]
fn a_syn_proxy_nearer_than_the_server_is_told_by_its_ttl() {
    if synscope_lab::skip_unless_root("a_syn_proxy_nearer_than_the_server_is_told_by_its_ttl") {
        return;
    }
    let lab = lab();
    // router 3 answers SYNs to 8090 itself (nftables synproxy, IPv4)
    let (code, doc) = path_json(&lab, &targets(8090)[0].0, &["-c", "1"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["outcome"]["hop"], 4, "{doc}");
    let d = &doc["reply_distance"];
    assert_eq!(d["ttl"], 62, "{doc}");
    assert_eq!(d["hops_back"], 2);
    assert_eq!(d["nearer_than_destination"], true);
    assert_eq!(d["zero_window"], true);
    let out = synscope(&lab, &["path", &targets(8090)[0].0, "-c", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("something nearer answered for it"), "{text}");
    assert!(text.contains("as Linux SYNPROXY's"), "{text}");
    // the server itself: no such note
    let (_, doc) = path_json(&lab, &targets(80)[0].0, &["-c", "1"]);
    assert_eq!(doc["reply_distance"]["hops_back"], 3, "{doc}");
    assert_eq!(doc["reply_distance"]["nearer_than_destination"], false);
    let out = synscope(&lab, &["path", &targets(80)[0].0, "-c", "1"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("note:"));
}

#[test]
fn the_lab_tarpit_answers_every_port_through_the_routers() {
    if synscope_lab::skip_unless_root("the_lab_tarpit_answers_every_port_through_the_routers") {
        return;
    }
    let lab = lab();
    let tarpit = routed::Tarpit::start(&lab, 3).expect("tarpit");
    for target in [
        format!("{}:1", tarpit.v4),
        format!("{}:47123", tarpit.v4),
        format!("[{}]:2", tarpit.v6),
    ] {
        let (code, doc) = path_json(&lab, &target, &["-c", "1"]);
        assert_eq!(code, 0, "{target}: {doc}");
        assert_eq!(doc["outcome"]["result"], "reached", "{doc}");
        assert_eq!(doc["outcome"]["open"], true, "{doc}");
        assert_eq!(doc["outcome"]["hop"], 4, "{doc}");
        assert_eq!(doc["hops"][3]["probes"][0]["reply"]["window"], 29200);
    }
    drop(tarpit);
}

#[test]
fn one_source_port_and_a_pcap_as_in_ping() {
    if synscope_lab::skip_unless_root("one_source_port_and_a_pcap_as_in_ping") {
        return;
    }
    let lab = lab();
    let dir = std::env::temp_dir().join(format!("synscope-path-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (target, routers) in targets(80) {
        let pcap = dir.join("path.pcap");
        let pcap_arg = pcap.to_string_lossy().to_string();
        let (code, doc) = path_json(
            &lab,
            &target,
            &["-c", "2", "--source-port", "40123", "--pcap", &pcap_arg],
        );
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["outcome"]["result"], "reached", "{doc}");
        assert_eq!(doc["outcome"]["hop"], 4, "{doc}");
        let hops = doc["hops"].as_array().unwrap();
        for (h, r) in hops.iter().zip(&routers) {
            assert_eq!(h["addresses"][0], r.as_str(), "{h}");
            assert_eq!(h["answered"], 2, "{h}");
        }
        // every probe from the one port, each answered (the server's two
        // SYN-ACKs too: one SYN at a time, never two on one four-tuple)
        let probes: Vec<&Value> = hops
            .iter()
            .flat_map(|h| h["probes"].as_array().unwrap())
            .collect();
        assert_eq!(probes.len(), 8, "{doc}");
        for p in &probes {
            assert_eq!(p["src_port"], 40123, "{p}");
            assert_eq!(p["kernel_stamped"], true, "{p}");
        }
        assert_eq!(hops[3]["answer"], "syn_ack", "{doc}");
        // the pcap holds our 8 SYNs and the 8 answers (ICMP and SYN-ACKs)
        let packets = common::read_pcap(&pcap);
        let syns = packets
            .iter()
            .filter(|(_, d)| {
                synscope::wire::Datagram::parse(d).is_ok_and(|d| {
                    matches!(d.transport, synscope::wire::Transport::Tcp(ref t)
                        if t.src_port == 40123 && t.flags == synscope::wire::TcpFlags::SYN)
                })
            })
            .count();
        assert_eq!(syns, 8, "{target}: {} packets", packets.len());
        assert!(packets.len() >= 16, "{target}: {} packets", packets.len());
        std::fs::remove_file(&pcap).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn port_ip_id_ttl_and_nat_rewrites_are_named_at_their_hop() {
    if synscope_lab::skip_unless_root("port_ip_id_ttl_and_nat_rewrites_are_named_at_their_hop") {
        return;
    }
    let lab = lab();
    // router 2 forwards 8083 to the server's 8084 (stateless port rewrite):
    // router 3's quote shows it; the answer comes back as from 8083
    for (target, routers) in targets(8083) {
        let (code, doc) = path_json(&lab, &target, &["-c", "2"]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["outcome"]["result"], "reached", "{doc}");
        assert_eq!(doc["outcome"]["hop"], 4, "{doc}");
        assert_eq!(doc["hops"][2]["addresses"][0], routers[2].as_str());
        assert_eq!(
            changes(&doc),
            vec![(3, "dst_port".into(), "8083".into(), "8084".into())],
            "{target}"
        );
    }
    let out = synscope(&lab, &["path", &targets(8083)[0].0, "-c", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed: dst-port 8083->8084 (first seen in hop 3's quote: by hop 2 on its way out or hop 3 on its way in)"),
        "{text}"
    );
    // 8085: the IPv4 ID set to 4242 by router 2
    let (code, doc) = path_json(&lab, &targets(8085)[0].0, &["-c", "2"]);
    assert_eq!(code, 0, "{doc}");
    let c = changes(&doc);
    assert_eq!(c.len(), 1, "{doc}");
    assert_eq!(
        (c[0].0, c[0].1.as_str(), c[0].3.as_str()),
        (3, "ip_id", "4242"),
        "{doc}"
    );
    // 8086: router 2 sets the TTL to 64 after its own decrement: the server
    // answers the SYN sent with TTL 3, and its answer crosses 3 routers
    for (target, routers) in targets(8086) {
        let (code, doc) = path_json(&lab, &target, &["-c", "2"]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["outcome"]["hop"], 3, "{doc}");
        let d = &doc["reply_distance"];
        assert_eq!(d["hops_back"], 3, "{doc}");
        assert_eq!(d["farther_than_destination"], true, "{doc}");
        assert_eq!(d["ttl_raised_by_hop"], 2, "{doc}");
        assert_eq!(doc["hops"][1]["addresses"][0], routers[1].as_str());
    }
    let out = synscope(&lab, &["path", &targets(8086)[0].0, "-c", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed: ttl raised by hop 2 (198.18.2.2) on its way out (or a later hop): the SYNs reached the destination with TTL 3, but its answer crossed 3 routers (TTL 61, left with 64)"),
        "{text}"
    );
    // 8087: router 2's conntrack NAT sends it to 8084 and rewrites the
    // errors about it: no quote shows the port, hops 2 and 3 answer from the
    // server's address, and hop 2 is named
    for (target, routers) in targets(8087) {
        let (code, doc) = path_json(&lab, &target, &["-c", "1"]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["outcome"]["hop"], 4, "{doc}");
        assert_eq!(doc["nat_at_hop"], 2, "{doc}");
        assert_eq!(doc["hops"][0]["addresses"][0], routers[0].as_str());
        let server = &doc["hops"][3]["addresses"][0];
        assert_eq!(&doc["hops"][1]["addresses"][0], server, "{doc}");
        assert_eq!(&doc["hops"][2]["addresses"][0], server, "{doc}");
        assert_eq!(changes(&doc), vec![], "{target}");
    }
    let out = synscope(&lab, &["path", &targets(8087)[0].0, "-c", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed: by a NAT at hop 2: from hop 2 on, time-exceeded comes from the destination's own address (198.18.4.2)"),
        "{text}"
    );
    // the untouched port: no such note
    let (_, doc) = path_json(&lab, &targets(80)[0].0, &["-c", "1"]);
    assert_eq!(
        doc["reply_distance"]["farther_than_destination"], false,
        "{doc}"
    );
    assert!(doc.get("nat_at_hop").is_none(), "{doc}");
}
