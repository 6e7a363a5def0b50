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
