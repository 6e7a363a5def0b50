//! Verified verdicts in the routed lab (client — 3 routers — server, real
//! kernels): port 8090 is answered by router 3's nftables `synproxy` (IPv4),
//! port 80 by the server itself, and the tarpit beside the server answers
//! every port with a raw SYN-ACK. `trace` and `ping --verify` must name the
//! SYN proxy, keep the plain open port plain (no false alarm) and, for ping,
//! report the tarpit as answering every port. Needs root, `ip`, `nft`.

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

fn json(out: &Output) -> Value {
    if out.stdout.starts_with(b"{") {
        common::schema::check_report(&String::from_utf8_lossy(&out.stdout));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn trace_names_the_syn_proxy_and_leaves_the_real_server_plain() {
    if synscope_lab::skip_unless_root("trace_names_the_syn_proxy_and_leaves_the_real_server_plain")
    {
        return;
    }
    let lab = lab();
    let proxied = format!("{}:8090", routed::server_v4(3));
    // (the lab's server never closes: the trace ends INCOMPLETE after our FIN)
    let out = synscope(
        &lab,
        &[
            "trace",
            &proxied,
            "--idle",
            "100ms",
            "--time-wait",
            "100ms",
            "--timeout",
            "2s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("port: open (syn-proxy: ttl 62, later 61, window 0, later"),
        "{text}"
    );
    let out = synscope(
        &lab,
        &[
            "trace",
            &proxied,
            "--idle",
            "100ms",
            "--time-wait",
            "100ms",
            "--timeout",
            "2s",
            "--json",
        ],
    );
    let doc = json(&out);
    let v = &doc["traces"][0]["verification"];
    assert_eq!(v["result"], "syn_proxy", "{v}");
    assert_eq!(v["evidence"][0]["field"], "ttl", "{v}");
    assert_eq!(v["evidence"][0]["syn_ack"], 62, "{v}");
    assert_eq!(v["evidence"][0]["later"], 61, "{v}");
    assert_eq!(v["evidence"][1]["field"], "zero_window", "{v}");
    assert_eq!(v["syn_ack"]["window"], 0, "{v}");

    // the server itself, v4 and v6: verified, no alarm
    for t in [
        format!("{}:80", routed::server_v4(3)),
        format!("[{}]:80", routed::server_v6(3)),
        // IPv6 to 8090 bypasses the proxy (see RoutedSpec::syn_proxy)
        format!("[{}]:8090", routed::server_v6(3)),
    ] {
        let out = synscope(
            &lab,
            &[
                "trace",
                &t,
                "--idle",
                "100ms",
                "--time-wait",
                "100ms",
                "--timeout",
                "2s",
                "--json",
            ],
        );
        let doc = json(&out);
        let v = &doc["traces"][0]["verification"];
        assert_eq!(v["result"], "verified", "{t}: {v}");
        assert_eq!(v["evidence"], serde_json::json!([]), "{t}: {v}");
        let out = synscope(
            &lab,
            &[
                "trace",
                &t,
                "--idle",
                "100ms",
                "--time-wait",
                "100ms",
                "--timeout",
                "2s",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port: open (verified"), "{t}: {text}");
        assert!(!text.contains("syn-proxy"), "{t}: {text}");
    }

    // the tarpit sends nothing after its SYN-ACK: nothing to compare with
    // (trace has no canaries: `ping --verify` names a host answering every port)
    let tarpit = routed::Tarpit::start(&lab, 3).expect("tarpit up");
    let t = format!("{}:80", tarpit.v4);
    let out = synscope(
        &lab,
        &[
            "trace",
            &t,
            "--idle",
            "100ms",
            "--time-wait",
            "100ms",
            "--timeout",
            "2s",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("port: open (unverified: nothing came after the SYN-ACK)"),
        "{text}"
    );
}

#[test]
fn ping_verify_names_the_syn_proxy_the_tarpit_and_nothing_else() {
    if synscope_lab::skip_unless_root("ping_verify_names_the_syn_proxy_the_tarpit_and_nothing_else")
    {
        return;
    }
    let lab = lab();
    let tarpit = routed::Tarpit::start(&lab, 3).expect("tarpit up");
    let ping = |target: &str, extra: &[&str]| {
        let mut args = vec!["ping", target, "-c", "2", "-i", "100ms", "--verify"];
        args.extend_from_slice(extra);
        synscope(&lab, &args)
    };

    // the SYN proxy: open, and said to be a proxy, with its evidence
    let proxied = format!("{}:8090", routed::server_v4(3));
    let out = ping(&proxied, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    common::assert_status(&out, 0);
    assert!(
        text.contains("open (syn-proxy: ttl 62, later 61, window 0, later"),
        "{text}"
    );
    assert!(text.contains("canary ports: "), "{text}");
    assert!(!text.contains("answers every port"), "{text}");
    let doc = json(&ping(&proxied, &["--json"]));
    let c = &doc["probes"][0]["check"];
    assert_eq!(c["check"], "handshake", "{c}");
    assert_eq!(c["result"], "syn_proxy", "{c}");
    assert_eq!(c["evidence"][0]["field"], "ttl", "{c}");
    assert_eq!(c["evidence"][0]["syn_ack"], 62, "{c}");
    assert_eq!(c["evidence"][0]["later"], 61, "{c}");
    assert_eq!(doc["summary"]["verify"]["syn_proxy"], 2, "{doc}");
    assert_eq!(doc["summary"]["open"], 2, "{doc}");

    // the server itself, v4 and v6 (v6 8090 bypasses the proxy): verified
    for t in [
        format!("{}:80", routed::server_v4(3)),
        format!("[{}]:80", routed::server_v6(3)),
        format!("[{}]:8090", routed::server_v6(3)),
    ] {
        let out = ping(&t, &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}");
        common::assert_status(&out, 0);
        assert_eq!(text.matches("open (verified)").count(), 2, "{t}: {text}");
        assert!(!text.contains("syn-proxy:"), "{t}: {text}");
        assert!(
            text.contains("verify: 2 verified, 0 syn-proxy"),
            "{t}: {text}"
        );
        assert!(!text.contains("answers every port"), "{t}: {text}");
        assert_eq!(
            text.lines()
                .find(|l| l.starts_with("canary ports: "))
                .map(|l| l.matches(" rst").count()),
            Some(3),
            "{t}: canaries closed: {text}"
        );
    }
    // every checked handshake was reset: no connection left on the server
    let ss = lab
        .server_command("ss")
        .args(["-Htn", "state", "established"])
        .output()
        .expect("run ss");
    let left = String::from_utf8_lossy(&ss.stdout);
    assert!(
        !left.contains(":80 ") && !left.contains(":8090 "),
        "left open: {left}"
    );

    // one fixed source port: the next probe waits for the check (and its RST)
    let t = format!("{}:80", routed::server_v4(3));
    let out = synscope(
        &lab,
        &[
            "ping",
            &t,
            "-c",
            "3",
            "-i",
            "1ns",
            "--verify",
            "--source-port",
            "40999",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    common::assert_status(&out, 0);
    assert_eq!(text.matches("open (verified)").count(), 3, "{text}");

    // a closed port: its RST is the host's, no alarm
    let closed = format!("{}:7777", routed::server_v4(3));
    let out = ping(&closed, &["--expect", "closed"]);
    let text = String::from_utf8_lossy(&out.stdout);
    common::assert_status(&out, 0);
    assert!(!text.contains("rst not from the host"), "{text}");

    // the tarpit answers its canaries too: said once, not counted as open
    let t = format!("{}:80", tarpit.v4);
    let out = ping(&t, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    common::assert_status(&out, 1);
    assert_eq!(
        text.matches("answers every port (tarpit/proxy): canary ports")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("(0 open"), "{text}");
    assert!(text.contains("seq=0 sport="), "{text}");
    assert!(!text.contains(" open (answers"), "{text}");
    let doc = json(&ping(&t, &["--json"]));
    assert_eq!(
        doc["summary"]["verify"]["answers_every_port"], true,
        "{doc}"
    );
    assert_eq!(doc["summary"]["open"], 0, "{doc}");
    assert_eq!(doc["probes"][0]["verdict"], "answers_every_port", "{doc}");
    let out = ping(&t, &["--ndjson"]);
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(""),
    )
    .expect("an NDJSON line");
    assert_eq!(first["kind"], "canaries", "{first}");
    assert_eq!(first["answers_every_port"], true, "{first}");
    let t6 = format!("[{}]:443", tarpit.v6);
    let out = ping(&t6, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    common::assert_status(&out, 1);
    assert!(text.contains("answers every port (tarpit/proxy)"), "{text}");
}

#[test]
fn ping_verify_tells_an_rst_injected_on_the_way_from_the_hosts_own() {
    if synscope_lab::skip_unless_root(
        "ping_verify_tells_an_rst_injected_on_the_way_from_the_hosts_own",
    ) {
        return;
    }
    let lab = lab();
    // router 3 answers SYNs to 7778 with an RST in the server's name: one hop
    // closer than the server, so its TTL arrives one higher
    inject_rst(&lab, 7778);
    let injected = format!("{}:7778", routed::server_v4(3));
    let out = synscope(
        &lab,
        &[
            "ping", &injected, "-c", "1", "--verify", "--expect", "closed",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    common::assert_status(&out, 0);
    assert!(
        text.contains("closed (rst not from the host?: rst ttl 62, host 61)"),
        "{text}"
    );
    let out = synscope(
        &lab,
        &[
            "ping", &injected, "-c", "1", "--verify", "--expect", "closed", "--json",
        ],
    );
    let doc = json(&out);
    let c = &doc["probes"][0]["check"];
    assert_eq!(c["check"], "suspect_rst", "{c}");
    assert_eq!(c["evidence"][0]["field"], "rst_ttl", "{c}");
    assert_eq!(c["evidence"][0]["rst"], 62, "{c}");
    assert_eq!(c["evidence"][0]["host"], 61, "{c}");
    assert_eq!(doc["summary"]["verify"]["suspect_rst"], 1, "{doc}");
}

/// The scan of the routed lab's server and tarpit, in `format` (text when
/// empty), with `extra` arguments.
fn scan(lab: &Lab, tarpit: &routed::Tarpit, format: &str, extra: &[&str]) -> Output {
    let server = routed::server_v4(3).to_string();
    let tarpit = tarpit.v4.to_string();
    let mut args = vec![
        "scan",
        &server,
        &tarpit,
        "-p",
        "80,111,7777,8080,8081,8082,8090,8443",
        "--rate",
        "2000",
        "--wait",
        "500ms",
    ];
    if !format.is_empty() {
        args.push(format);
    }
    args.extend_from_slice(extra);
    let out = synscope(lab, &args);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// NDJSON lines of a scan's output.
fn lines(out: &Output) -> Vec<Value> {
    common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout))
}

#[test]
fn scan_names_the_tarpit_once_and_verify_names_the_syn_proxy() {
    if synscope_lab::skip_unless_root("scan_names_the_tarpit_once_and_verify_names_the_syn_proxy") {
        return;
    }
    let lab = lab();
    let tarpit = routed::Tarpit::start(&lab, 3).expect("tarpit up");
    let server = routed::server_v4(3).to_string();

    // canaries (on by default): the tarpit once, its ports not open; the
    // server's ports as they are, 8090 plain open without --verify
    let out = scan(&lab, &tarpit, "", &[]);
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("answers every port (tarpit/proxy): SYN-ACKs from 6 scanned ports and from canary ports ")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches(" open ").count(), 5, "{text}");
    assert!(
        text.contains(": 5 open, 1 closed, 2 filtered, 2 no-response"),
        "{text}"
    );
    // the server costs one canary, or none when its closed port's RST came
    // before its first SYN-ACK (the probes' order is the random seed's)
    assert!(
        [
            "checks: 4 canary SYNs to 2 hosts, 1 answers every port (6 SYN-ACKs not counted as open)",
            "checks: 3 canary SYNs to 1 host, 1 answers every port (6 SYN-ACKs not counted as open)"
        ]
        .iter()
        .any(|c| text.contains(c)),
        "{text}"
    );
    assert!(!text.contains("syn-proxy"), "{text}");

    // --verify: 8090 is the SYN proxy's, the other open ports verified
    let out = scan(&lab, &tarpit, "", &["--verify"]);
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "8090/tcp  open         syn-ack (syn-proxy: ttl 62, later 61, window 0, later"
        ),
        "{text}"
    );
    assert_eq!(text.matches("syn-ack (verified)").count(), 4, "{text}");
    assert_eq!(text.matches("answers every port").count(), 2, "{text}");
    assert!(
        text.contains(": 5 open, 1 closed, 2 filtered, 2 no-response"),
        "{text}"
    );
    assert!(
        text.contains("4 verified, 1 syn-proxy, 0 unverified"),
        "{text}"
    );
    assert!(text.contains("0 suspect RSTs"), "{text}");

    // NDJSON: the evidence in `check`, the tarpit one record, the counts
    let out = scan(&lab, &tarpit, "--ndjson", &["--verify"]);
    common::assert_status(&out, 0);
    let all = lines(&out);
    let proxied = all
        .iter()
        .find(|l| l["port"] == 8090 && l["host"] == server.as_str())
        .expect("8090's line");
    assert_eq!(proxied["verdict"], "open", "{proxied}");
    let c = &proxied["check"];
    assert_eq!(
        (c["check"].as_str(), c["result"].as_str()),
        (Some("handshake"), Some("syn_proxy")),
        "{c}"
    );
    assert_eq!(c["evidence"][0]["field"], "ttl", "{c}");
    assert_eq!(c["evidence"][0]["syn_ack"], 62, "{c}");
    assert_eq!(c["evidence"][0]["later"], 61, "{c}");
    for l in all
        .iter()
        .filter(|l| l["verdict"] == "open" && l["port"] != 8090)
    {
        assert_eq!(l["check"]["result"], "verified", "{l}");
    }
    let t = tarpit.v4.to_string();
    let every: Vec<&Value> = all
        .iter()
        .filter(|l| l["state"] == "answers_every_port")
        .collect();
    assert_eq!(every.len(), 1, "{all:?}");
    assert_eq!(every[0]["host"], t.as_str());
    assert_eq!(every[0]["canaries"].as_array().map(Vec::len), Some(3));
    assert!(
        !all.iter()
            .any(|l| l["host"] == t.as_str() && l["verdict"] == "open"),
        "{all:?}"
    );
    let sum = all.last().expect("a summary");
    assert_eq!(sum["kind"], "summary");
    assert_eq!(sum["open"], 5, "{sum}");
    assert_eq!(sum["verify"]["answers_every_port_hosts"], 1, "{sum}");
    assert_eq!(sum["verify"]["answers_every_port_pairs"], 6, "{sum}");
    assert_eq!(sum["verify"]["syn_proxy"], 1, "{sum}");
    assert_eq!(sum["verify"]["verified"], 4, "{sum}");
    // one canary to the server (its RST), three to the tarpit
    assert_eq!(sum["verify"]["canary_probes"], 4, "{sum}");

    // JSON: the same, in one document; IPv6 (no proxy there): verified
    let t6 = tarpit.v6.to_string();
    let s6 = routed::server_v6(3).to_string();
    let out = synscope(
        &lab,
        &[
            "scan",
            &s6,
            &t6,
            "-p",
            "80,7777,8090",
            "--rate",
            "2000",
            "--wait",
            "500ms",
            "--verify",
            "--json",
        ],
    );
    common::assert_status(&out, 0);
    let doc = json(&out);
    let r = doc["results"].as_array().expect("results");
    assert_eq!(
        r.iter()
            .filter(|l| l["check"]["result"] == "verified")
            .count(),
        2,
        "{doc}"
    );
    assert_eq!(
        r.iter()
            .filter(|l| l["state"] == "answers_every_port" && l["host"] == t6.as_str())
            .count(),
        1,
        "{doc}"
    );
    assert_eq!(doc["summary"]["open"], 2, "{doc}");

    // every checked handshake was reset: no connection left on the server
    let ss = lab
        .server_command("ss")
        .args(["-Htn", "state", "established"])
        .output()
        .expect("run ss");
    let left = String::from_utf8_lossy(&ss.stdout);
    assert!(left.trim().is_empty(), "left open: {left}");
}

#[test]
fn scan_verify_tells_an_injected_rst_and_raises_no_alarm_elsewhere() {
    if synscope_lab::skip_unless_root(
        "scan_verify_tells_an_injected_rst_and_raises_no_alarm_elsewhere",
    ) {
        return;
    }
    let lab = lab();
    inject_rst(&lab, 7778);
    let server = routed::server_v4(3).to_string();
    let out = synscope(
        &lab,
        &[
            "scan",
            &server,
            "-p",
            "80,7777,7778,8080",
            "--rate",
            "2000",
            "--wait",
            "500ms",
            "--verify",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    common::assert_status(&out, 0);
    assert!(
        text.contains("7778/tcp  closed       rst not from the host?: rst ttl 62, host 61"),
        "{text}"
    );
    assert!(
        !text.contains("7777/tcp"),
        "7777's RST is the host's: {text}"
    );
    assert!(text.contains("1 closed port not shown (rst)"), "{text}");
    assert!(text.contains("1 suspect RST"), "{text}");
    assert!(!text.contains("(tarpit/proxy)"), "{text}");
    let out = synscope(
        &lab,
        &[
            "scan",
            &server,
            "-p",
            "80,7777,7778,8080",
            "--rate",
            "2000",
            "--wait",
            "500ms",
            "--verify",
            "--ndjson",
        ],
    );
    let all = lines(&out);
    let l = all.iter().find(|l| l["port"] == 7778).expect("7778");
    assert_eq!(l["verdict"], "closed", "{l}");
    assert_eq!(l["check"]["check"], "suspect_rst", "{l}");
    assert_eq!(l["check"]["evidence"][0]["field"], "rst_ttl", "{l}");
    assert_eq!(all.last().unwrap()["verify"]["suspect_rst"], 1);
}

/// Router 3 answers SYNs to `port` with an RST in the server's name: one hop
/// closer than the server, so its TTL arrives one higher.
fn inject_rst(lab: &Lab, port: u16) {
    let rules = format!(
        "table inet synscope_inject {{\n  chain inject {{\n    type filter hook forward priority filter; policy accept;\n    tcp dport {port} reject with tcp reset\n  }}\n}}\n"
    );
    synscope_lab::nft(&lab.routers[2], &rules).unwrap();
}
