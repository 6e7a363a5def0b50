//! `synscope dns --file` (bulk) against a real NSD in a namespace lab: checks on
//! every line with their exit status and per-check counts, bad and non-UTF-8
//! lines, several servers, a closed UDP port (the kernel's ICMP
//! port-unreachable). Needs root, `ip`, `nft`, `nsd` (scripts/setup.sh); each
//! test builds and removes its own lab.

use serde_json::Value;
use std::io::Write;
use std::process::{Output, Stdio};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec};

mod common;

fn lab() -> (LabDns, Lab) {
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    (dns, lab)
}

/// `synscope dns -f - ARGS` in the client namespace with `input` on stdin.
fn bulk(lab: &Lab, input: &[u8], args: &[&str]) -> Output {
    run_bulk(lab, &[], input, args)
}

/// The same as user `nobody` with no capability at all.
fn bulk_as_nobody(lab: &Lab, input: &[u8], args: &[&str]) -> Output {
    let setpriv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--",
    ];
    run_bulk(lab, &setpriv, input, args)
}

fn run_bulk(lab: &Lab, wrapper: &[&str], input: &[u8], args: &[&str]) -> Output {
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.push(env!("CARGO_BIN_EXE_synscope"));
    let mut child = lab
        .client_command(argv[0])
        .args(&argv[1..])
        .args(["dns", "--file", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The NDJSON lines of the output: (per-query and error lines, summary).
fn ndjson(out: &Output) -> (Vec<Value>, Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = common::schema::check_lines("dns-bulk", &text);
    let last = lines.pop().expect("a summary line");
    assert_eq!(last["kind"], "summary", "{last}");
    (lines, last)
}

#[test]
fn checks_on_every_line_set_the_status_and_are_counted_per_check() {
    if synscope_lab::skip_unless_root(
        "checks_on_every_line_set_the_status_and_are_counted_per_check",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    // the example: a failing --expect in bulk is not silent
    let out = bulk(
        &lab,
        b"www.lab.test\n",
        &["@198.18.0.2", "--expect", "1.2.3.4"],
    );
    common::assert_status(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("check failed: line 1: --expect: www.lab.test. A @198.18.0.2:53: answer is 198.18.0.10 instead of 1.2.3.4"),
        "{err}"
    );

    // 3 lines pass, one fails --expect, one fails --expect and --expect-rcode
    let input = b"a.lab.test\nwww.lab.test\nb.lab.test\nc3.lab.test\nnx.lab.test\n";
    let out = bulk(
        &lab,
        input,
        &[
            "@198.18.0.2",
            "--expect",
            "198.18.0.10",
            "--expect-rcode",
            "NOERROR",
        ],
    );
    common::assert_status(&out, 1);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 5);
    let by_line = |n: u64| lines.iter().find(|l| l["line"] == n).unwrap();
    for n in [1, 2, 4] {
        assert_eq!(
            by_line(n)["checks"],
            serde_json::json!([]),
            "{}",
            by_line(n)
        );
    }
    assert_eq!(
        by_line(3)["checks"][0],
        "--expect: b.lab.test. A @198.18.0.2:53: answer is 198.18.0.11, 198.18.0.12 instead of 198.18.0.10"
    );
    assert_eq!(by_line(5)["checks"].as_array().unwrap().len(), 2);
    assert_eq!(sum["failed_checks"], 2);
    assert_eq!(sum["check_failures"]["expect"], 2);
    assert_eq!(sum["check_failures"]["expect_rcode"], 1);
    assert_eq!(sum["answered"], 5);

    // every check passing: status 0; --json is one document, --short the data
    let out = bulk(
        &lab,
        b"a.lab.test\nwww.lab.test\n",
        &["@198.18.0.2", "--expect-contains", "198.18.0.10", "--json"],
    );
    common::assert_status(&out, 0);
    let doc = common::schema::check_document("dns-bulk", &String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["results"].as_array().unwrap().len(), 2);
    assert_eq!(doc["results"][1]["checks"], serde_json::json!([]));
    assert_eq!(doc["summary"]["failed_checks"], 0);
    let out = bulk(
        &lab,
        b"a.lab.test\nlab.test,MX\n",
        &["@198.18.0.2", "--short"],
    );
    common::assert_status(&out, 0);
    let mut short: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    short.sort();
    assert_eq!(
        short,
        [
            "a.lab.test. 198.18.0.10",
            "lab.test. 10 mail.lab.test.",
            "lab.test. 20 mail2.lab.test."
        ]
    );
}

#[test]
fn a_non_utf8_line_is_an_error_of_that_line_and_the_others_are_answered() {
    if synscope_lab::skip_unless_root(
        "a_non_utf8_line_is_an_error_of_that_line_and_the_others_are_answered",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    let out = bulk(
        &lab,
        b"a.lab.test\nb\xff\xfe.lab.test\nbad..name\nb.lab.test,AAAA\n",
        &["@198.18.0.2"],
    );
    common::assert_status(&out, 2);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let by_line = |n: u64| lines.iter().find(|l| l["line"] == n).unwrap();
    assert_eq!(
        by_line(2)["error"],
        "not UTF-8 (byte 0xff at column 2)",
        "{}",
        by_line(2)
    );
    assert!(by_line(3)["error"].as_str().is_some(), "{}", by_line(3));
    assert_eq!(by_line(1)["answers"][0], "198.18.0.10");
    assert_eq!(by_line(4)["answers"][0], "2001:db8::11");
    assert_eq!(sum["bad_lines"], 2);
    assert_eq!(sum["answered"], 2);
}

#[test]
fn several_servers_each_line_to_each_or_spread_in_turn() {
    if synscope_lab::skip_unless_root("several_servers_each_line_to_each_or_spread_in_turn") {
        return;
    }
    let (_dns, lab) = lab();
    let names = b"a.lab.test\nb.lab.test\nwww.lab.test\nnx.lab.test\n";
    // default: every line to every server (here IPv4 and IPv6: two senders)
    let out = bulk(&lab, names, &["@198.18.0.2", "@[2001:db8::2]"]);
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 8);
    for n in 1..=4u64 {
        let mut servers: Vec<&str> = lines
            .iter()
            .filter(|l| l["line"] == n)
            .map(|l| l["server"].as_str().unwrap())
            .collect();
        servers.sort();
        assert_eq!(servers, ["198.18.0.2:53", "[2001:db8::2]:53"], "line {n}");
    }
    assert_eq!(
        (sum["names"].clone(), sum["queries"].clone()),
        (4.into(), 8.into())
    );
    // --spread: each line to one server, in turn
    let out = bulk(&lab, names, &["@198.18.0.2", "@[2001:db8::2]", "--spread"]);
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        let want = if l["line"].as_u64().unwrap() % 2 == 1 {
            "198.18.0.2:53"
        } else {
            "[2001:db8::2]:53"
        };
        assert_eq!(l["server"], want, "{l}");
    }
    assert_eq!(sum["answered"], 4);
}

#[test]
fn a_closed_udp_port_ends_its_queries_at_once_with_the_icmp_reason() {
    if synscope_lab::skip_unless_root(
        "a_closed_udp_port_ends_its_queries_at_once_with_the_icmp_reason",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    // nothing listens on UDP 5353: the server's kernel answers port-unreachable
    let names = "a.lab.test\n".repeat(50);
    let t0 = std::time::Instant::now();
    let out = bulk(
        &lab,
        names.as_bytes(),
        &[
            "@198.18.0.2:5353",
            "@198.18.0.2",
            "--timeout",
            "2s",
            "--retries",
            "2",
        ],
    );
    // waiting out the retries would take 6 s
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        t0.elapsed()
    );
    common::assert_status(&out, 3);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 100);
    for l in &lines {
        if l["server"] == "198.18.0.2:5353" {
            assert!(
                l["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("port-unreachable from 198.18.0.2"),
                "{l}"
            );
            assert!(
                l["status"].is_null() && l["attempts"].as_u64().unwrap() <= 1,
                "{l}"
            );
        } else {
            assert_eq!(l["status"], "NOERROR", "{l}");
        }
    }
    assert_eq!(sum["answered"], 50);
    assert_eq!(sum["no_response"], 0);
    let refused: u64 = sum["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 50);
}

/// The question name and the server address of a DNS datagram (query or
/// answer) as tcpdump captured it: (name, server, is_answer).
fn dns_of(ip: &[u8]) -> Option<(String, String, bool)> {
    let (hl, src, dst): (usize, std::net::IpAddr, std::net::IpAddr) = match ip.first()? >> 4 {
        4 => {
            let hl = usize::from(ip[0] & 0xf) * 4;
            let a = |o: usize| -> std::net::IpAddr {
                std::net::Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]).into()
            };
            (hl, a(12), a(16))
        }
        6 => {
            let a = |o: usize| -> std::net::IpAddr {
                let b: [u8; 16] = ip[o..o + 16].try_into().unwrap();
                std::net::Ipv6Addr::from(b).into()
            };
            (40, a(8), a(24))
        }
        _ => return None,
    };
    let udp = ip.get(hl..)?;
    let (sport, dport) = (
        u16::from_be_bytes([udp[0], udp[1]]),
        u16::from_be_bytes([udp[2], udp[3]]),
    );
    let msg = udp.get(8..)?;
    let answer = msg.get(2)? & 0x80 != 0;
    let mut name = String::new();
    let mut o = 12;
    loop {
        let n = usize::from(*msg.get(o)?);
        if n == 0 {
            break;
        }
        name += &String::from_utf8_lossy(msg.get(o + 1..o + 1 + n)?);
        name += ".";
        o += 1 + n;
    }
    let server = if answer {
        std::net::SocketAddr::new(src, sport)
    } else {
        std::net::SocketAddr::new(dst, dport)
    };
    Some((name.to_lowercase(), server.to_string(), answer))
}

#[test]
fn bulk_latency_from_kernel_stamps_matches_tcpdump() {
    if synscope_lab::skip_unless_root("bulk_latency_from_kernel_stamps_matches_tcpdump") {
        return;
    }
    let (_dns, lab) = lab();
    // raw sockets and a capture (as root), then ordinary UDP sockets
    for (extra, timed_by) in [
        (None, "raw_capture"),
        (Some("--no-raw"), "socket_timestamps"),
    ] {
        latency_vs_tcpdump(&lab, extra, timed_by);
    }
}

fn latency_vs_tcpdump(lab: &Lab, extra: Option<&str>, timed_by: &str) {
    // distinct names (NXDOMAIN but for a few), so tcpdump's packets map to lines
    let n = 2000;
    let names: String = (0..n).map(|i| format!("n{i}.lab.test\n")).collect();
    let tcpdump = common::Tcpdump::start(lab, "bulk-rtt", "udp port 53");
    let mut args = vec!["@198.18.0.2", "@[2001:db8::2]", "--rate", "20000"];
    args.extend(extra);
    let out = bulk(lab, names.as_bytes(), &args);
    let packets = tcpdump.stop();
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(sum["timing"], "kernel", "{sum}");
    assert_eq!(sum["timed_by"], timed_by, "{sum}");
    // the truth: tcpdump's stamps of each query leaving and its answer arriving
    let mut sent = std::collections::HashMap::new();
    let mut truth = std::collections::HashMap::new();
    for (ts, ip) in &packets {
        let Some((name, server, answer)) = dns_of(ip) else {
            continue;
        };
        if answer {
            if let Some(t0) = sent.get(&(name.clone(), server.clone())) {
                truth.insert((name, server), ts - t0);
            }
        } else {
            sent.insert((name, server), *ts);
        }
    }
    let mut errors: Vec<f64> = Vec::new();
    for l in &lines {
        assert_eq!(l["rtt_source"], "kernel", "{l}");
        let key = (
            l["name"].as_str().unwrap().to_lowercase(),
            l["server"].as_str().unwrap().to_string(),
        );
        if let Some(t) = truth.get(&key) {
            errors.push((l["time_us"].as_f64().unwrap() - *t as f64 / 1000.0).abs());
        }
    }
    // tcpdump may miss a few packets under load; most are there
    assert!(
        errors.len() > lines.len() * 9 / 10,
        "{} of {}",
        errors.len(),
        lines.len()
    );
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    eprintln!(
        "bulk RTT ({timed_by}) vs tcpdump: |error| median {median:.3} µs, p90 {:.3} µs, over {} queries",
        errors[errors.len() * 9 / 10],
        errors.len()
    );
    assert!(median < 10.0, "median error {median} µs");
}

/// `--pcap` in bulk mode: every query (at its kernel TX stamp) and every
/// answer (at its RX stamp), IPv4 and IPv6; each line's time is the
/// distance between its two packets in the file. Without CAP_NET_RAW
/// `--pcap` is a setup error, not a silent empty file.
#[test]
fn bulk_pcap_holds_every_query_and_answer_with_the_stamps_that_timed_them() {
    if synscope_lab::skip_unless_root(
        "bulk_pcap_holds_every_query_and_answer_with_the_stamps_that_timed_them",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    let path = std::env::temp_dir().join(format!("synscope-bulk-{}.pcap", std::process::id()));
    let p = path.to_str().unwrap();
    let n = 300;
    let names: String = (0..n).map(|i| format!("n{i}.lab.test\n")).collect();
    let out = bulk(
        &lab,
        names.as_bytes(),
        &["@198.18.0.2", "@[2001:db8::2]", "--pcap", p],
    );
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(sum["timing"], "kernel", "{sum}");
    assert_eq!(lines.len(), 2 * n);
    let packets = common::read_pcap(&path);
    let _ = std::fs::remove_file(&path);
    let mut sent = std::collections::HashMap::new();
    let mut got = std::collections::HashMap::new();
    for (ts, ip) in &packets {
        let (name, server, answer) = dns_of(ip).expect("DNS over UDP only");
        let to = if answer { &mut got } else { &mut sent };
        assert!(to.insert((name, server), *ts).is_none(), "a packet twice");
    }
    assert_eq!((sent.len(), got.len()), (2 * n, 2 * n));
    for l in &lines {
        let key = (
            l["name"].as_str().unwrap().to_lowercase(),
            l["server"].as_str().unwrap().to_string(),
        );
        let rtt_ns = got[&key] - sent[&key];
        let time_us = l["time_us"].as_f64().unwrap();
        // the same two stamps (the JSON keeps three decimals of a µs)
        assert!(
            (time_us - rtt_ns as f64 / 1000.0).abs() < 0.002,
            "{l}: {rtt_ns} ns in the pcap"
        );
    }
    let out = bulk_as_nobody(&lab, b"a.lab.test\n", &["@198.18.0.2", "--pcap", p]);
    common::assert_status(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pcap"), "{err}");
    assert!(!path.exists());
}

/// The benchmark (printed, not asserted; run by bench/dns.sh with --release):
/// bulk q/s beside dnsperf's against the same NSD (RRL off), in the same run,
/// on a mixed query set (A, AAAA, CNAME chain, MX, TXT, NXDOMAIN) and on one
/// repeated name, BENCH_ROUNDS times (default 3). synscope's every answer is
/// checked against the zone. BENCH_SECS (default 5) is dnsperf's run time;
/// synscope resolves BENCH_NAMES names (default 500,000).
#[test]
#[ignore]
fn bench_bulk_vs_dnsperf() {
    if synscope_lab::skip_unless_root("bench_bulk_vs_dnsperf") {
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (secs, names, rounds) = (
        env("BENCH_SECS", 5),
        env("BENCH_NAMES", 500_000) as usize,
        env("BENCH_ROUNDS", 3),
    );
    let (_dns, lab) = lab();
    let dir = std::env::temp_dir().join(format!("{}-bench", lab.client_ns));
    std::fs::create_dir_all(&dir).unwrap();
    // (synscope line, dnsperf line, status, answer set)
    let mixed: &[(&str, &str, &str, &[&str])] = &[
        ("a.lab.test", "a.lab.test A", "NOERROR", &["198.18.0.10"]),
        (
            "a.lab.test,AAAA",
            "a.lab.test AAAA",
            "NOERROR",
            &["2001:db8::10"],
        ),
        (
            "www.lab.test",
            "www.lab.test A",
            "NOERROR",
            &["198.18.0.10"],
        ),
        (
            "lab.test,MX",
            "lab.test MX",
            "NOERROR",
            &["10 mail.lab.test.", "20 mail2.lab.test."],
        ),
        (
            "txt.lab.test,TXT",
            "txt.lab.test TXT",
            "NOERROR",
            &["\"hello synlab\""],
        ),
        ("nx.lab.test", "nx.lab.test A", "NXDOMAIN", &[]),
    ];
    let single = &mixed[..1];
    for round in 1..=rounds {
        for (set, kinds) in [("mixed", mixed), ("single-name", single)] {
            let qfile = dir.join("queries.txt");
            let text: String = kinds.iter().map(|k| format!("{}\n", k.1)).collect();
            std::fs::write(&qfile, text).unwrap();
            // dnsperf as it comes (queries without EDNS), and with -e: an
            // OPT record in every query, as synscope sends by default, so
            // that the server does the same work for both
            let dnsperf = |extra: &[&str]| {
                let o = lab
                    .client_command("/usr/bin/time")
                    .args(["-f", "TIMECPU %U %S", "dnsperf"])
                    .args(["-s", "198.18.0.2", "-l", &secs.to_string(), "-d"])
                    .arg(&qfile)
                    .args(extra)
                    .output()
                    .expect("dnsperf (scripts/setup.sh --bench)");
                let text = String::from_utf8_lossy(&o.stdout);
                let qps: f64 = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Queries per second:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(f64::NAN);
                let queries: f64 = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Queries completed:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(f64::NAN);
                let (user, sys) = cpu_split(&o.stderr);
                (qps, (user + sys) * 1e6 / queries, user * 1e6 / queries)
            };
            let (dnsperf_qps, dnsperf_cpu, dnsperf_user) = dnsperf(&[]);
            let (edns_qps, edns_cpu, edns_user) = dnsperf(&["-e"]);

            let nfile = dir.join("names.txt");
            let text: String = (0..names)
                .map(|i| format!("{}\n", kinds[i % kinds.len()].0))
                .collect();
            std::fs::write(&nfile, text).unwrap();
            // BENCH_BINS (comma-separated) runs other builds of synscope
            // (e.g. main's) in the same round, one after another
            let bins: Vec<String> = std::env::var("BENCH_BINS")
                .map(|b| b.split(',').map(str::to_string).collect())
                .unwrap_or_else(|_| vec![env!("CARGO_BIN_EXE_synscope").to_string()]);
            for bin in &bins {
                let label = if bins.len() > 1 {
                    format!(" [{bin}]")
                } else {
                    String::new()
                };
                let ofile = dir.join("out.ndjson");
                let out = lab
                    .client_command("/usr/bin/time")
                    .args(["-f", "TIMECPU %U %S", bin.as_str()])
                    .args(["dns", "--file"])
                    .arg(&nfile)
                    .args(["@198.18.0.2", "--timeout", "1s"])
                    .stdout(std::fs::File::create(&ofile).unwrap())
                    .stderr(Stdio::piped())
                    .output()
                    .unwrap();
                // every answer checked against the zone
                let (mut ok, mut bad) = (0u64, 0u64);
                let mut summary = Value::Null;
                let text = std::fs::read_to_string(&ofile).unwrap();
                for l in text.lines() {
                    let v: Value = serde_json::from_str(l).unwrap();
                    if v["kind"] == "summary" {
                        summary = v;
                        continue;
                    }
                    let (_, _, status, answers) =
                        kinds[(v["line"].as_u64().unwrap() - 1) as usize % kinds.len()];
                    let got: Vec<&str> = v["answers"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    if v["status"] == status && got == answers {
                        ok += 1;
                    } else {
                        bad += 1;
                        if bad <= 3 {
                            println!("not as the zone says: {l}");
                        }
                    }
                }
                let ours = summary["qps"].as_f64().unwrap_or(f64::NAN);
                let lines = text.lines().count() as u64 - 1;
                if lines != names as u64 {
                    println!("{lines} result lines for {names} names");
                }
                println!(
                    "round {round} {set:<11}: synscope{label} {ours:>8.0} q/s ({ok} answers checked ok, {bad} not, timeouts {}, p50 {} µs, {} timestamps, CPU {:.2} µs/query, user {:.2}) | dnsperf {dnsperf_qps:>8.0} q/s (CPU {dnsperf_cpu:.2} µs/query, user {dnsperf_user:.2}), ratio {:.2} | dnsperf -e {edns_qps:>8.0} q/s (CPU {edns_cpu:.2} µs/query, user {edns_user:.2}), ratio {:.2}",
                    summary["no_response"],
                    summary["time"]["p50_us"],
                    summary["timing"],
                    cpu_secs(&out.stderr) * 1e6 / names as f64,
                    cpu_split(&out.stderr).0 * 1e6 / names as f64,
                    ours / dnsperf_qps,
                    ours / edns_qps
                );
                if !out.status.success() {
                    println!(
                        "synscope stderr: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// User + system CPU seconds from `/usr/bin/time -f "TIMECPU %U %S"` on stderr.
fn cpu_secs(stderr: &[u8]) -> f64 {
    let (user, sys) = cpu_split(stderr);
    user + sys
}

/// User and system CPU seconds from `/usr/bin/time -f "TIMECPU %U %S"`.
fn cpu_split(stderr: &[u8]) -> (f64, f64) {
    let v: Vec<f64> = String::from_utf8_lossy(stderr)
        .lines()
        .find_map(|l| l.strip_prefix("TIMECPU "))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|v| v.parse::<f64>().ok())
                .collect()
        })
        .unwrap_or_default();
    match v[..] {
        [u, s] => (u, s),
        _ => (f64::NAN, f64::NAN),
    }
}

/// For profiling: runs `$PROFILE_CMD synscope dns --file ... $PROFILE_ARGS`
/// (e.g. PROFILE_CMD="perf record -g -o /tmp/bulk.perf") on 300,000 mixed names;
/// PROFILE_BIN names another synscope binary to run instead of this build's.
#[test]
#[ignore]
fn profile_bulk() {
    if synscope_lab::skip_unless_root("profile_bulk") {
        return;
    }
    let (_dns, lab) = lab();
    let file = std::env::temp_dir().join(format!("{}-names.txt", lab.client_ns));
    let kinds = [
        "a.lab.test",
        "a.lab.test,AAAA",
        "www.lab.test",
        "lab.test,MX",
        "txt.lab.test,TXT",
        "nx.lab.test",
    ];
    let text: String = (0..300_000)
        .map(|i| format!("{}\n", kinds[i % kinds.len()]))
        .collect();
    std::fs::write(&file, text).unwrap();
    let cmd = std::env::var("PROFILE_CMD").unwrap_or_default();
    let mut argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    // PROFILE_BIN: another build of synscope (e.g. main's) to profile
    argv.push(
        std::env::var("PROFILE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_synscope").into()),
    );
    let out = lab
        .client_command(&argv[0])
        .args(&argv[1..])
        .args(["dns", "--file"])
        .arg(&file)
        .args(["@198.18.0.2"])
        .args(
            std::env::var("PROFILE_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    println!("{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unprivileged_bulk_uses_udp_sockets_with_kernel_stamps() {
    if synscope_lab::skip_unless_root("unprivileged_bulk_uses_udp_sockets_with_kernel_stamps") {
        return;
    }
    let (_dns, lab) = lab();
    // as nobody with no capability: ordinary UDP sockets, IPv4 and IPv6
    let kinds: &[(&str, &str, &[&str])] = &[
        ("a.lab.test", "NOERROR", &["198.18.0.10"]),
        ("www.lab.test", "NOERROR", &["198.18.0.10"]),
        ("b.lab.test,AAAA", "NOERROR", &["2001:db8::11"]),
        ("nx.lab.test", "NXDOMAIN", &[]),
        ("huge.lab.test,TXT", "NOERROR", &[]), // truncated: repeated over TCP
    ];
    let n = 500;
    let input: String = (0..n)
        .map(|i| format!("{}\n", kinds[i % kinds.len()].0))
        .collect();
    let out = bulk_as_nobody(&lab, input.as_bytes(), &["@198.18.0.2", "@[2001:db8::2]"]);
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 2 * n);
    for l in &lines {
        let (name, status, answers) =
            kinds[(l["line"].as_u64().unwrap() as usize - 1) % kinds.len()];
        assert_eq!(l["status"], status, "{l}");
        if name.starts_with("huge") {
            assert_eq!(l["transport"], "tcp", "{l}");
        } else {
            assert_eq!(l["answers"], serde_json::json!(answers), "{l}");
        }
        assert_eq!(l["rtt_source"], "kernel", "{l}");
    }
    assert_eq!(sum["timed_by"], "socket_timestamps");
    assert_eq!(sum["timing"], "kernel");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timed by socket timestamps"), "{err}");

    // a closed port: the ICMP error comes through IP_RECVERR and ends the
    // server's queries at once
    let t0 = std::time::Instant::now();
    let out = bulk_as_nobody(
        &lab,
        "a.lab.test\n".repeat(20).as_bytes(),
        &["@198.18.0.2:5353", "--timeout", "2s"],
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(4));
    common::assert_status(&out, 3);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 20);
    for l in &lines {
        assert!(
            l["error"]
                .as_str()
                .unwrap()
                .starts_with("port-unreachable from 198.18.0.2"),
            "{l}"
        );
    }
    assert_eq!(sum["answered"], 0);
}

#[test]
fn dnssec_checks_in_bulk_see_every_rrset_and_the_denial() {
    if synscope_lab::skip_unless_root("dnssec_checks_in_bulk_see_every_rrset_and_the_denial") {
        return;
    }
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let _nsd = synscope_lab::dns::LabDns::start_signed(&lab)
        .expect("nsd with a signed zone (nsd, ldnsutils)");
    // signed answers, a signed CNAME chain, a signed denial: all pass
    let out = bulk(
        &lab,
        b"www.signed.test\nalias.signed.test\nwww.signed.test,AAAA\nnx.signed.test\n",
        &["@198.18.0.2", "--expect-signed"],
    );
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 4);
    assert!(
        lines.iter().all(|l| l["checks"] == serde_json::json!([])),
        "{lines:?}"
    );
    assert_eq!(sum["failed_checks"], 0);
    // the unsigned zone: an answer and a denial without RRSIGs both fail
    let out = bulk(
        &lab,
        b"a.lab.test\nnx.lab.test\n",
        &["@198.18.0.2", "--expect-signed"],
    );
    common::assert_status(&out, 1);
    let (_, sum) = ndjson(&out);
    assert_eq!(sum["check_failures"]["expect_signed"], 2, "{sum}");
}

#[test]
fn an_interrupt_counts_the_queries_in_flight_and_says_the_run_was_cut_short() {
    if synscope_lab::skip_unless_root(
        "an_interrupt_counts_the_queries_in_flight_and_says_the_run_was_cut_short",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    // NSD answers at once; 198.18.0.3 never does: with a 30 s timeout its
    // queries are all in flight when the SIGINT comes
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["dns", "--file", "-", "@198.18.0.2", "@198.18.0.3"])
        .args(["--timeout", "30s", "--retries", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("a.lab.test\n".repeat(50).as_bytes())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // `ip netns exec` runs synscope in its own process: the signal is its
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    common::assert_status(&out, 1);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 50, "NSD's answers: {lines:?}");
    assert!(lines.iter().all(|l| l["server"] == "198.18.0.2:53"));
    assert_eq!(sum["interrupted"], true, "{sum}");
    assert_eq!(sum["in_flight"], 50, "{sum}");
    assert_eq!(sum["answered"], 50, "{sum}");
    assert_eq!(sum["no_response"], 0, "{sum}");
    assert_eq!(sum["queries"], 100, "{sum}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interrupted: 50 queries were in flight and are not counted as answered"),
        "{err}"
    );
}

#[test]
fn several_servers_list_the_lines_whose_answers_differed() {
    if synscope_lab::skip_unless_root("several_servers_list_the_lines_whose_answers_differed") {
        return;
    }
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let nsd = LabDns::start_signed(&lab).expect("nsd with a signed zone (nsd, ldnsutils)");
    let _unbound = synscope_lab::dns::LabUnbound::start(&lab, &nsd)
        .expect("unbound in the lab (apt-get install unbound)");
    let unbound = format!("@198.18.0.2:{}", synscope_lab::dns::UNBOUND_PORT);
    // the resolver answers localhost from its own default zone; NSD is not
    // authoritative for it and refuses: lines 2 and 4 differ, the others
    // (lab.test through the resolver, or straight from NSD) do not
    let input = b"a.lab.test\nlocalhost\nwww.lab.test\nlocalhost,AAAA\nnx.lab.test\n";
    let out = bulk(&lab, input, &["@198.18.0.2", &unbound]);
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 10);
    assert_eq!(sum["differing_lines"], 2, "{sum}");
    let mut d = sum["differences"].as_array().unwrap().clone();
    d.sort_by_key(|x| x["line"].as_u64());
    let at_nsd = "198.18.0.2:53";
    let at_unbound = &unbound[1..];
    assert_eq!(d[0]["line"], 2);
    assert_eq!(d[0]["name"], "localhost.");
    assert_eq!(d[0]["type"], "A");
    assert_eq!(d[0]["answers"][at_unbound], "NOERROR [127.0.0.1]", "{d:?}");
    assert_eq!(d[0]["answers"][at_nsd], "REFUSED []", "{d:?}");
    assert_eq!(d[1]["line"], 4);
    assert_eq!(d[1]["answers"][at_unbound], "NOERROR [::1]", "{d:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 lines got different answers from the servers"),
        "{err}"
    );
    // --spread sends each line to one server: nothing to compare
    let out = bulk(&lab, input, &["@198.18.0.2", &unbound, "--spread"]);
    common::assert_status(&out, 0);
    let (lines, sum) = ndjson(&out);
    assert_eq!(lines.len(), 5);
    assert!(sum.get("differing_lines").is_none(), "{sum}");
}
