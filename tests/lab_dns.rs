//! `synscope dns` against a real NSD in a namespace lab, every answer compared
//! with kdig's for the same query. Needs root, `ip`, `nft`, `nsd`, `kdig`
//! (scripts/setup.sh installs them); each test builds and removes its own lab.

use serde_json::Value;
use std::process::{Output, Stdio};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec, VETH, in_netns};

mod common;

fn lab() -> (LabDns, Lab) {
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    (dns, lab)
}

/// Regenerates `crates/synscope-wire/src/fixtures/nsd_a_v4.bin`: NSD's answer to `a.lab.test A`
/// with id 0xbeef and EDNS 1232, as captured on the client's veth.
#[test]
#[ignore]
fn capture_nsd_fixture() {
    if synscope_lab::skip_unless_root("capture_nsd_fixture") {
        return;
    }
    let (_dns, lab) = lab();
    let pcap = std::env::temp_dir().join(format!("{}-fixture.pcap", lab.client_ns));
    let mut tcpdump = lab
        .client_command("tcpdump")
        .args(["-i", VETH, "-U", "-c", "2", "-w"])
        .arg(&pcap)
        .args(["udp", "port", "53"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let q = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01a\x03lab\x04test\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    in_netns(&lab.client_ns, move || {
        let s = std::net::UdpSocket::bind("198.18.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        s.send_to(q, "198.18.0.2:53").unwrap();
        let mut b = [0u8; 512];
        s.recv_from(&mut b).unwrap();
    })
    .unwrap();
    let _ = tcpdump.wait();
    let raw = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_file(&pcap);
    // pcap: 24-byte file header, then (16-byte record header, frame)*
    let mut off = 24;
    let mut frames = Vec::new();
    while off + 16 <= raw.len() {
        let len = u32::from_le_bytes(raw[off + 8..off + 12].try_into().unwrap()) as usize;
        frames.push(raw[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    let reply = &frames[1][14..]; // strip Ethernet
    std::fs::write(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/synscope-wire/src/fixtures/nsd_a_v4.bin"
        ),
        reply,
    )
    .unwrap();
}

fn synscope(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("dns")
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    if out.stdout.starts_with(b"{") {
        common::schema::check_document("dns", &String::from_utf8_lossy(&out.stdout));
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// kdig's status and (answer, authority) records as (name, ttl, class, type, data).
type Rr = (String, u64, String, String, String);

fn kdig(lab: &Lab, args: &[&str]) -> (String, Vec<Rr>, Vec<Rr>) {
    let o = lab
        .client_command("kdig")
        .args(["+timeout=2", "+retry=1"])
        .args(args)
        .output()
        .expect("kdig (apt-get install knot-dnsutils)");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(';').next().unwrap().trim().to_string())
        .unwrap_or_else(|| panic!("no status in kdig output:\n{text}"));
    let section = |title: &str| -> Vec<Rr> {
        let mut in_it = false;
        let mut v = Vec::new();
        for l in text.lines() {
            if l.starts_with(";; ") && l.ends_with("SECTION:") {
                in_it = l == format!(";; {title} SECTION:");
                continue;
            }
            if in_it {
                if l.trim().is_empty() || l.starts_with(";;") {
                    in_it = false;
                    continue;
                }
                let w: Vec<&str> = l.split_whitespace().collect();
                v.push((
                    w[0].to_string(),
                    w[1].parse().unwrap(),
                    w[2].to_string(),
                    w[3].to_string(),
                    w[4..].join(" "),
                ));
            }
        }
        v
    };
    (status, section("ANSWER"), section("AUTHORITY"))
}

fn records(v: &Value) -> Vec<Rr> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["ttl"].as_u64().unwrap(),
                r["class"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                r["data"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// (synscope args, kdig args, expected status, expected transport)
const CASES: &[(&[&str], &[&str], &str, &str)] = &[
    (
        &["a.lab.test", "A"],
        &["a.lab.test", "A", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["a.lab.test", "AAAA"],
        &["a.lab.test", "AAAA", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["b.lab.test"],
        &["b.lab.test", "A", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["www.lab.test", "A"],
        &["www.lab.test", "A", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["c3.lab.test", "CNAME"],
        &["c3.lab.test", "CNAME", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["lab.test", "MX"],
        &["lab.test", "MX", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["lab.test", "NS"],
        &["lab.test", "NS", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["lab.test", "SOA"],
        &["lab.test", "SOA", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["txt.lab.test", "TXT"],
        &["txt.lab.test", "TXT", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["_sip._udp.lab.test", "SRV"],
        &["_sip._udp.lab.test", "SRV", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["lab.test", "CAA"],
        &["lab.test", "CAA", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["lab.test", "TYPE257"],
        &["lab.test", "CAA", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["-x", "198.18.0.10"],
        &["-x", "198.18.0.10", "+edns"],
        "NOERROR",
        "udp",
    ),
    (
        &["bücher.lab.test"],
        &["xn--bcher-kva.lab.test", "A", "+edns", "+noidn"],
        "NOERROR",
        "udp",
    ),
    (
        &["nx.lab.test", "A"],
        &["nx.lab.test", "A", "+edns"],
        "NXDOMAIN",
        "udp",
    ),
    (
        &["nodata.lab.test", "A"],
        &["nodata.lab.test", "A", "+edns"],
        "NOERROR",
        "udp",
    ),
    // 962 B: truncated without EDNS (kdig's default too), both retry over TCP
    (
        &["big.lab.test", "TXT", "--no-edns"],
        &["big.lab.test", "TXT"],
        "NOERROR",
        "tcp",
    ),
    (
        &["big.lab.test", "TXT"],
        &["big.lab.test", "TXT", "+edns"],
        "NOERROR",
        "udp",
    ),
    // 2.4 KB: truncated even with EDNS 1232 (kdig's own default buffer is
    // larger, and NSD answers up to 4096 bytes: ask kdig for 1232 too)
    (
        &["huge.lab.test", "TXT"],
        &["huge.lab.test", "TXT", "+bufsize=1232"],
        "NOERROR",
        "tcp",
    ),
];

fn compare_with_kdig(server: &str) {
    let (_dns, lab) = lab();
    for &(ours, theirs, status, transport) in CASES {
        let mut args: Vec<&str> = ours.to_vec();
        let at = format!("@{server}");
        args.extend([at.as_str(), "--json", "--timeout", "1s"]);
        let out = synscope(&lab, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = json_of(&out);
        let r = &doc["results"][0];
        let mut kargs = vec![at.as_str()];
        kargs.extend(theirs);
        let (kstatus, kanswer, kauthority) = kdig(&lab, &kargs);
        assert_eq!(r["status"], status, "{args:?}");
        assert_eq!(kstatus, status, "kdig {kargs:?}");
        assert_eq!(r["transport"], transport, "{args:?}");
        let m = &r["message"];
        assert_eq!(
            records(&m["answer"]),
            kanswer,
            "answer of {args:?} vs kdig {kargs:?}"
        );
        assert_eq!(
            records(&m["authority"]),
            kauthority,
            "authority of {args:?}"
        );
        assert_eq!(m["flags"]["qr"], true);
        assert_eq!(r["udp"]["rtt_source"], "kernel", "{args:?}");
        if transport == "tcp" {
            assert_eq!(r["udp"]["truncated"], true);
            assert!(r["tcp"]["total_us"].as_f64().unwrap() > 0.0);
        }
        if status == "NOERROR" && ours[0] == "nodata.lab.test" {
            assert_eq!(records(&m["answer"]), vec![], "NODATA");
            assert_eq!(kauthority[0].3, "SOA");
        }
    }
}

#[test]
fn answers_match_kdig_v4() {
    if synscope_lab::skip_unless_root("answers_match_kdig_v4") {
        return;
    }
    compare_with_kdig("198.18.0.2");
}

#[test]
fn answers_match_kdig_v6() {
    if synscope_lab::skip_unless_root("answers_match_kdig_v6") {
        return;
    }
    compare_with_kdig("2001:db8::2");
}

fn code_and_err(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn checks_and_exit_codes() {
    if synscope_lab::skip_unless_root("checks_and_exit_codes") {
        return;
    }
    let (_dns, lab) = lab();
    let s = "@198.18.0.2";
    let pass: &[&[&str]] = &[
        &["a.lab.test", s, "--expect", "198.18.0.10"],
        &["b.lab.test", s, "--expect", "198.18.0.12", "198.18.0.11"],
        &[
            "www.lab.test",
            s,
            "--expect",
            "198.18.0.10",
            "--max-time",
            "1s",
        ],
        &["b.lab.test", s, "--expect-contains", "198.18.0.11"],
        &[
            "lab.test",
            "MX",
            s,
            "--expect",
            "10 mail.lab.test",
            "20 MAIL2.lab.test.",
        ],
        &["nx.lab.test", s, "--expect-rcode", "nxdomain"],
        &[
            "nodata.lab.test",
            s,
            "--expect-rcode",
            "NOERROR",
            "--expect",
        ],
        &["txt.lab.test", "TXT", s, "--expect-regex", "^\"hello"],
    ];
    for args in pass {
        let out = synscope(&lab, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            code_and_err(&out).1
        );
    }
    let fail: &[(&[&str], &str)] = &[
        (
            &["a.lab.test", s, "--expect", "198.18.0.11"],
            "--expect: a.lab.test. A @198.18.0.2:53: answer is 198.18.0.10 instead of 198.18.0.11",
        ),
        (&["b.lab.test", s, "--expect", "198.18.0.11"], "--expect"),
        (
            &["b.lab.test", s, "--expect-contains", "198.18.0.99"],
            "lacks 198.18.0.99",
        ),
        (
            &["nx.lab.test", s, "--expect-rcode", "NOERROR"],
            "status NXDOMAIN instead of NOERROR",
        ),
        (
            &["txt.lab.test", "TXT", s, "--expect-regex", "^bye"],
            "--expect-regex",
        ),
        (&["a.lab.test", s, "--max-time", "1ns"], "--max-time"),
    ];
    for (args, msg) in fail {
        let (code, err) = code_and_err(&synscope(&lab, args));
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // nobody at .3: no answer after every retry
    let (code, err) = code_and_err(&synscope(
        &lab,
        &[
            "a.lab.test",
            "@198.18.0.3",
            "--timeout",
            "100ms",
            "--retries",
            "1",
        ],
    ));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no answer from 198.18.0.3:53") && err.contains("2 attempt"),
        "{err}"
    );
    // usage errors
    for (args, msg) in [
        (
            &["a.lab.test", "BOGUS", s][..],
            "unexpected argument 'BOGUS'",
        ),
        (
            &["a.lab.test", s, "--expect-rcode", "NOPE"][..],
            "bad --expect-rcode",
        ),
        (&["a.lab.test", s, "--ecs", "1.2.3.4"][..], "bad --ecs"),
        (&[s][..], "no name to query"),
    ] {
        let (code, err) = code_and_err(&synscope(&lab, args));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

#[test]
fn truncated_answer_shown_with_ignore_tc_and_both_timings_in_text() {
    if synscope_lab::skip_unless_root(
        "truncated_answer_shown_with_ignore_tc_and_both_timings_in_text",
    ) {
        return;
    }
    let (_dns, lab) = lab();
    let out = synscope(
        &lab,
        &[
            "big.lab.test",
            "TXT",
            "@198.18.0.2",
            "--no-edns",
            "--ignore-tc",
            "--json",
        ],
    );
    let doc = json_of(&out);
    let r = &doc["results"][0];
    assert_eq!(r["transport"], "udp");
    assert_eq!(r["message"]["flags"]["tc"], true);
    assert_eq!(r["message"]["answer"].as_array().unwrap().len(), 0);
    let out = synscope(&lab, &["big.lab.test", "TXT", "@198.18.0.2", "--no-edns"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(";; WARNING: truncated reply from 198.18.0.2@53(UDP) in "),
        "{text}"
    );
    assert!(text.contains(";; From 198.18.0.2@53(TCP) in "), "{text}");
    assert!(text.contains("\"big4-"), "{text}");
}

#[test]
fn several_servers_compared() {
    if synscope_lab::skip_unless_root("several_servers_compared") {
        return;
    }
    let (_dns, lab) = lab();
    let out = synscope(
        &lab,
        &["a.lab.test", "A", "AAAA", "@198.18.0.2", "@2001:db8::2"],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(";; COMPARISON: all 2 servers gave the same answers"),
        "{text}"
    );
    assert_eq!(text.matches(";; ->>HEADER<<-").count(), 4, "{text}");
    // a silent server is a difference, and exit status 3
    let out = synscope(
        &lab,
        &[
            "a.lab.test",
            "@198.18.0.2",
            "@198.18.0.3",
            "--timeout",
            "100ms",
            "--retries",
            "0",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let doc = json_of(&out);
    let d: Vec<&str> = doc["summary"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        d,
        vec![
            "a.lab.test. A @198.18.0.2:53: NOERROR [198.18.0.10]",
            "a.lab.test. A @198.18.0.3:53: no answer"
        ]
    );
}

#[test]
fn bulk_ndjson_every_answer_checked() {
    if synscope_lab::skip_unless_root("bulk_ndjson_every_answer_checked") {
        return;
    }
    let (_dns, lab) = lab();
    let dir = std::env::temp_dir().join(format!("{}-bulk", lab.client_ns));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("names.txt");
    // (line, expected status, expected answers)
    let kinds: &[(&str, &str, &[&str])] = &[
        ("a.lab.test", "NOERROR", &["198.18.0.10"]),
        ("a.lab.test,AAAA", "NOERROR", &["2001:db8::10"]),
        ("www.lab.test,A", "NOERROR", &["198.18.0.10"]),
        (
            "lab.test,MX,198.18.0.2",
            "NOERROR",
            &["10 mail.lab.test.", "20 mail2.lab.test."],
        ),
        ("nx.lab.test", "NXDOMAIN", &[]),
        ("nodata.lab.test,A", "NOERROR", &[]),
        ("huge.lab.test,TXT", "NOERROR", &[]),
    ];
    let mut text = String::from("# a comment\n");
    let n = 3000;
    for i in 0..n {
        text += kinds[i % kinds.len()].0;
        text += "\n";
    }
    text += "bad..name\n";
    std::fs::write(&file, text).unwrap();
    let out = synscope(
        &lab,
        &[
            "--file",
            file.to_str().unwrap(),
            "@198.18.0.2",
            "--rate",
            "20000",
            "--timeout",
            "1s",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    // the bad line makes the status 2; every other line was still queried
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines = common::schema::check_lines("dns-bulk", &String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        lines.len(),
        n + 2,
        "one line per name, the bad line, the summary"
    );
    let mut seen = vec![false; n];
    for l in &lines[..lines.len() - 1] {
        if l["kind"] == "error" {
            assert_eq!(l["input"], "bad..name");
            continue;
        }
        // line numbers start at 2 (line 1 is the comment)
        let i = l["line"].as_u64().unwrap() as usize - 2;
        seen[i] = true;
        let (_, status, answers) = kinds[i % kinds.len()];
        assert_eq!(l["status"], status, "{l}");
        if !kinds[i % kinds.len()].0.starts_with("huge") {
            let got: Vec<&str> = l["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(got, answers.to_vec(), "{l}");
        } else {
            assert_eq!(l["transport"], "tcp", "{l}");
        }
        // the raw socket's transmit stamp to the capture's receive stamp
        assert_eq!(l["rtt_source"], "kernel", "{l}");
    }
    assert!(seen.iter().all(|s| *s));
    let s = &lines[lines.len() - 1];
    assert_eq!(s["kind"], "summary");
    assert_eq!(s["names"], n as u64 + 1);
    assert_eq!(s["answered"], n as u64);
    assert_eq!(s["no_response"], 0);
    assert_eq!(s["bad_lines"], 1);
    assert_eq!(
        s["rcodes"]["NXDOMAIN"],
        (n / kinds.len()) as u64 + u64::from(n % kinds.len() > 4)
    );
    assert!(s["time"]["p99_us"].as_f64().unwrap() > 0.0);
    assert!(err.contains("q/s"), "{err}");

    // stdin, with nobody answering: exit status 3 and every name a timeout
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args([
            "dns",
            "--file",
            "-",
            "@198.18.0.3",
            "--timeout",
            "100ms",
            "--retries",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a.lab.test\nb.lab.test,AAAA\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "summary");
    assert_eq!(last["no_response"], 2);
}

/// The benchmark (printed, not asserted; run by bench/dns.sh with --release):
/// bulk qps vs dnsperf against the same NSD, single-query latency vs kdig, peak
/// RSS of a 1,000,000-name bulk run. BENCH_SECS (default 5) bounds each run.
#[test]
#[ignore]
fn bench_vs_dnsperf_and_kdig() {
    if synscope_lab::skip_unless_root("bench_vs_dnsperf_and_kdig") {
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let names: usize = std::env::var("BENCH_NAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (_dns, lab) = lab();
    let dir = std::env::temp_dir().join(format!("{}-bench", lab.client_ns));
    std::fs::create_dir_all(&dir).unwrap();
    let qfile = dir.join("queries.txt");
    std::fs::write(&qfile, "a.lab.test A\n").unwrap();
    // dnsperf
    let o = lab
        .client_command("dnsperf")
        .args(["-s", "198.18.0.2", "-l", &secs.to_string(), "-d"])
        .arg(&qfile)
        .output()
        .expect("dnsperf (scripts/setup.sh --bench)");
    let text = String::from_utf8_lossy(&o.stdout);
    let pick = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "dnsperf -l {secs}: {} | {} | {}",
        pick("Queries per second"),
        pick("Queries lost"),
        pick("Average Latency")
    );

    // synscope bulk: 1M names (all a.lab.test A, every answer checked below)
    let nfile = dir.join("names.txt");
    std::fs::write(&nfile, "a.lab.test\n".repeat(names)).unwrap();
    let started = std::time::Instant::now();
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["dns", "--file"])
        .arg(&nfile)
        .args(["@198.18.0.2", "--timeout", "1s", "--retries", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // read the NDJSON as it comes: checks every answer, stops after BENCH_SECS*4
    let (mut ok, mut bad) = (0u64, 0u64);
    let mut summary = Value::Null;
    {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == "summary" {
                summary = v;
                break;
            }
            if v["status"] == "NOERROR" && v["answers"][0] == "198.18.0.10" {
                ok += 1;
            } else {
                bad += 1;
            }
            if started.elapsed().as_secs() > secs * 6 {
                let _ = child.kill();
                break;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    // peak RSS of the children waited for so far (synscope is by far the largest)
    // SAFETY: getrusage fills a zeroed rusage struct we own.
    let rss_kb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss
    };
    let s = &summary;
    println!(
        "synscope bulk {names} names: {:.0} q/s answered, {ok} answers checked ok, {bad} not, no response {}, p50 {} µs p99 {} µs, elapsed {:.2} s, peak RSS {} MiB",
        s["qps"].as_f64().unwrap_or(0.0),
        s["no_response"],
        s["time"]["p50_us"],
        s["time"]["p99_us"],
        s["elapsed_us"].as_f64().unwrap_or(0.0) / 1e6,
        rss_kb / 1024
    );
    println!(
        "synscope stderr: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );

    // single-query latency: 50 synscope processes (kernel RTT) vs kdig (its own timer)
    let mut ours = Vec::new();
    for _ in 0..50 {
        let o = synscope(&lab, &["a.lab.test", "@198.18.0.2", "--ndjson"]);
        let v: Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap())
                .unwrap();
        ours.push(v["udp"]["rtt_us"].as_f64().unwrap());
    }
    let mut theirs = Vec::new();
    for _ in 0..50 {
        let o = lab
            .client_command("kdig")
            .args([
                "@198.18.0.2",
                "a.lab.test",
                "A",
                "+noall",
                "+stats",
                "+timeout=1",
                "+retry=0",
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        if let Some(ms) = t.split(" in ").nth(1).and_then(|r| r.split(" ms").next()) {
            theirs.push(ms.trim().parse::<f64>().unwrap_or(f64::NAN) * 1000.0);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "single query a.lab.test A, median of 50: synscope {:.1} µs (kernel timestamps), kdig {:.0} µs (0.1 ms resolution)",
        med(&mut ours),
        med(&mut theirs)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_stops_bulk_with_the_summary_so_far() {
    if synscope_lab::skip_unless_root("sigterm_stops_bulk_with_the_summary_so_far") {
        return;
    }
    let (_dns, lab) = lab();
    let file = std::env::temp_dir().join(format!("{}-names.txt", lab.client_ns));
    std::fs::write(&file, "a.lab.test\n".repeat(10_000)).unwrap();
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["dns", "--file"])
        .arg(&file)
        .args(["@198.18.0.2", "--rate", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the signal goes once answers come out (the handler is installed before
    // the first query), not after a fixed sleep a loaded machine can outlast
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    common::signal(&child, "-TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(t0.elapsed() < std::time::Duration::from_secs(3));
    common::assert_status(&out, 1);
    let text = first + &rest;
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "summary");
    assert_eq!(last["interrupted"], true);
    let answered = last["answered"].as_u64().unwrap();
    assert!(answered > 10 && answered < 10_000, "{answered}");
}
