//! Single `synscope dns` queries against real peers in a namespace lab: the
//! kernel's ICMP port-unreachable for a closed UDP port, checks on no answer,
//! unprivileged runs (socket timestamps) compared with kdig, and DNSSEC checks
//! against NSD serving a signed zone and unbound validating it. Needs root,
//! `ip`, `nft`, `nsd`, `kdig`, `unbound`, `ldns-utils`, `setpriv`
//! (scripts/setup.sh installs them); each test builds and removes its own lab.

use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};
use synscope::lab::{Lab, LabSpec};
use synscope::lab_dns::LabDns;

mod common;

fn lab() -> (LabDns, Lab) {
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    (dns, lab)
}

fn synscope(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("dns")
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn closed_udp_port_ends_at_once_with_the_icmp_reason() {
    let (_dns, lab) = lab();
    for (server, from) in [
        ("@198.18.0.2:5353", "198.18.0.2"),
        ("@[2001:db8::2]:5353", "2001:db8::2"),
    ] {
        let t = Instant::now();
        // a 5 s timeout with 2 retries: waiting would take 15 s
        let out = synscope(&lab, &["a.lab.test", server, "--timeout", "5s"]);
        let took = t.elapsed();
        common::assert_status(&out, 3);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("port-unreachable from {from}")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // generous bound for a loaded CI machine; the point is "not 5 s"
        assert!(took < Duration::from_secs(3), "{took:?}: {err}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port-unreachable from"), "{text}");
    }
    // JSON: no answer, the reason, the checks fail; one attempt, no retry
    let out = synscope(
        &lab,
        &[
            "a.lab.test",
            "@198.18.0.2:5353",
            "--expect",
            "198.18.0.10",
            "--json",
        ],
    );
    common::assert_status(&out, 3);
    let r = &json_of(&out)["results"][0];
    assert_eq!(r["answered"], false);
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["refused"]["icmp"], "port-unreachable");
    assert_eq!(r["refused"]["from"], "198.18.0.2");
    assert_eq!(
        r["checks"][0],
        "--expect: a.lab.test. A @198.18.0.2:5353: no answer (port-unreachable from 198.18.0.2)"
    );
    // several servers: the refusing one ends on its own, NSD still answers
    let t = Instant::now();
    let out = synscope(
        &lab,
        &[
            "a.lab.test",
            "@198.18.0.2",
            "@198.18.0.2:5353",
            "--timeout",
            "5s",
            "--json",
        ],
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    common::assert_status(&out, 3);
    let doc = json_of(&out);
    assert_eq!(doc["results"][0]["answers"][0], "198.18.0.10");
    assert_eq!(doc["results"][1]["refused"]["icmp"], "port-unreachable");
}

#[test]
fn no_answer_never_passes_a_check() {
    let (_dns, lab) = lab();
    // nobody at .3: silence
    let out = synscope(
        &lab,
        &[
            "a.lab.test",
            "@198.18.0.3",
            "--timeout",
            "100ms",
            "--retries",
            "0",
            "--expect",
            "198.18.0.10",
            "--json",
        ],
    );
    common::assert_status(&out, 3);
    let r = &json_of(&out)["results"][0];
    assert_eq!(r["answered"], false);
    assert_eq!(
        r["checks"],
        serde_json::json!(["--expect: a.lab.test. A @198.18.0.3:53: no answer"])
    );
}

/// `synscope dns ARGS` as user `nobody` with no capability at all.
fn as_nobody(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
            env!("CARGO_BIN_EXE_synscope"),
            "dns",
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

/// kdig's status and answer records as (type, data), sorted.
fn kdig(lab: &Lab, args: &[&str]) -> (String, Vec<(String, String)>) {
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
    let mut rrs: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| *l != ";; ANSWER SECTION:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with(";;"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[3].to_string(), w[4..].join(" "))
        })
        .collect();
    rrs.sort();
    (status, rrs)
}

fn answer_of(r: &Value) -> (String, Vec<(String, String)>) {
    let mut rrs: Vec<(String, String)> = r["message"]["answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_string(),
                a["data"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect();
    rrs.sort();
    (r["status"].as_str().unwrap().to_string(), rrs)
}

#[test]
fn unprivileged_runs_time_with_socket_stamps_and_agree_with_kdig() {
    let (_dns, lab) = lab();
    // (synscope args, kdig args, transport)
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["a.lab.test", "@198.18.0.2"],
            &["a.lab.test", "A", "@198.18.0.2"],
            "udp",
        ),
        (
            &["a.lab.test", "AAAA", "@2001:db8::2"],
            &["a.lab.test", "AAAA", "@2001:db8::2"],
            "udp",
        ),
        (
            &["www.lab.test", "@198.18.0.2"],
            &["www.lab.test", "A", "@198.18.0.2"],
            "udp",
        ),
        (
            &["lab.test", "MX", "@198.18.0.2"],
            &["lab.test", "MX", "@198.18.0.2"],
            "udp",
        ),
        (
            &["nx.lab.test", "@198.18.0.2"],
            &["nx.lab.test", "A", "@198.18.0.2"],
            "udp",
        ),
        // truncated without EDNS: repeated over TCP, as kdig does
        (
            &["big.lab.test", "TXT", "@198.18.0.2", "--no-edns"],
            &["big.lab.test", "TXT", "@198.18.0.2", "+noedns"],
            "tcp",
        ),
    ];
    for (args, kargs, transport) in cases {
        let mut a = args.to_vec();
        a.push("--json");
        let out = as_nobody(&lab, &a);
        common::assert_status(&out, 0);
        let r = &json_of(&out)["results"][0];
        assert_eq!(r["timed_by"], "socket-timestamps", "{args:?}");
        assert_eq!(r["transport"], *transport, "{args:?}");
        // the kernel stamped both the query leaving and the answer arriving
        assert_eq!(r["udp"]["rtt_source"], "kernel", "{args:?}: {r}");
        assert_eq!(answer_of(r), kdig(&lab, kargs), "{args:?}");
    }
    // text says it too
    let out = as_nobody(&lab, &["a.lab.test", "@198.18.0.2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timed by: socket timestamps"), "{text}");
    // as root the raw path stays the default; --no-raw forces the socket
    let out = synscope(&lab, &["a.lab.test", "@198.18.0.2", "--json"]);
    assert_eq!(json_of(&out)["results"][0]["timed_by"], "raw-capture");
    let out = synscope(&lab, &["a.lab.test", "@198.18.0.2", "--no-raw", "--json"]);
    assert_eq!(json_of(&out)["results"][0]["timed_by"], "socket-timestamps");
    // ICMP errors end the query at once here too (IP_RECVERR)
    for (server, from) in [
        ("@198.18.0.2:5353", "198.18.0.2"),
        ("@[2001:db8::2]:5353", "2001:db8::2"),
    ] {
        let t = Instant::now();
        let out = as_nobody(&lab, &["a.lab.test", server, "--timeout", "5s", "--json"]);
        assert!(t.elapsed() < Duration::from_secs(3));
        common::assert_status(&out, 3);
        assert!(
            stderr(&out).contains(&format!("port-unreachable from {from}")),
            "{}",
            stderr(&out)
        );
        let r = &json_of(&out)["results"][0];
        assert_eq!(r["refused"]["icmp"], "port-unreachable");
        assert_eq!(r["timed_by"], "socket-timestamps");
    }
}
