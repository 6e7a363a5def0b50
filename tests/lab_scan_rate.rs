//! `synscope scan --rate auto` (issue 12) against real kernels in the lab: a
//! path that polices SYNs (nftables `limit rate over 20000/second drop` on the
//! server), a router with a slow link and a short queue (HTB), a server with
//! Linux's default ICMP rate limits, a clean path, and shards without a seed.
//! Needs root, `ip`, `nft`, `tc`. Figures are printed; the only timed
//! assertions are generous bounds.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Instant;
use synscope_lab::routed::{self, RoutedSpec};
use synscope_lab::{Lab, LabSpec};

mod common;

fn scan(lab: &Lab, args: &[&str]) -> (Output, f64) {
    let t = Instant::now();
    let out = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("scan")
        .args(args)
        .output()
        .unwrap();
    (out, t.elapsed().as_secs_f64())
}

fn ndjson(out: &Output) -> Vec<Value> {
    common::assert_status(out, 0);
    common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout))
}

/// port → verdict of every result line.
fn verdicts(lines: &[Value]) -> BTreeMap<u64, String> {
    lines
        .iter()
        .filter(|v| v["kind"] == "result")
        .map(|v| {
            (
                v["port"].as_u64().unwrap(),
                v["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The standard lab's verdict for a port of 198.18.0.2.
fn want(port: u64) -> &'static str {
    match port {
        22 | 80 | 443 => "open",
        21 | 8443 => "no_response",
        111 | 113 => "filtered",
        _ => "closed",
    }
}

/// Ports whose verdict is wrong (or missing) in a -p- scan of the server.
fn wrong(lines: &[Value]) -> u64 {
    let v = verdicts(lines);
    (1..=65535u64)
        .filter(|p| v.get(p).map(String::as_str) != Some(want(*p)))
        .count() as u64
}

fn summary(lines: &[Value]) -> &Value {
    let s = lines.last().unwrap();
    assert_eq!(s["kind"], "summary");
    s
}

fn policed() -> LabSpec {
    LabSpec {
        syn_policer: Some(20_000),
        ..LabSpec::standard()
    }
}

#[test]
fn policed_path_auto_gets_every_verdict_right_where_a_fixed_high_rate_does_not() {
    if synscope_lab::skip_unless_root(
        "policed_path_auto_gets_every_verdict_right_where_a_fixed_high_rate_does_not",
    ) {
        return;
    }
    let lab = Lab::up(&policed()).unwrap();
    let (out, auto_s) = scan(&lab, &["198.18.0.2", "-p-", "--ndjson"]);
    let lines = ndjson(&out);
    let s = summary(&lines);
    let c = &s["coverage"];
    eprintln!(
        "policed (20,000 SYN/s), default --rate auto: {auto_s:.2} s, {} SYNs, coverage {c}",
        s["sent"]
    );
    assert_eq!(wrong(&lines), 0, "{s}");
    assert_eq!(c["mode"], "auto");
    assert!(c["peak_loss"].as_f64().unwrap() > 0.0, "{c}");
    assert!(c["uncertain_pairs"].as_f64().unwrap() < 1.0, "{c}");
    // generous: the policer alone needs 3.3 s. The bound grows with what
    // this machine manages right now (a busy 2-core host once took over
    // 60 s): a scan at a fixed rate below the policer, same lab, same
    // moment, must take at least 65,535 / 12,000 = 5.5 s when not loaded
    let (out, ref_s) = scan(&lab, &["198.18.0.2", "-p-", "--rate", "12000", "--ndjson"]);
    ndjson(&out);
    eprintln!("policed, --rate 12000 (the yardstick): {ref_s:.2} s");
    assert!(auto_s < 60.0f64.max(4.0 * ref_s), "{auto_s} vs {ref_s}");

    let (out, fixed_s) = scan(&lab, &["198.18.0.2", "-p-", "--rate", "200000", "--ndjson"]);
    let lines = ndjson(&out);
    let bad = wrong(&lines);
    let c = &summary(&lines)["coverage"];
    eprintln!("policed, --rate 200000: {fixed_s:.2} s, {bad} wrong verdicts, coverage {c}");
    assert!(bad > 0, "a fixed rate 10x the policer loses verdicts");
    // and the estimate says so, and about how many: from what the retry
    // round recovered (84-100 % of the wrong count in 7 runs, one run lower;
    // with a loss-free baseline alone it said 3-13 %)
    let u = c["uncertain_pairs"].as_f64().unwrap();
    assert!(u >= 1.0, "{c}");
    assert!(u >= 0.25 * bad as f64, "{u} estimated, {bad} wrong");
}

/// A router between client and server with a slow link and a short queue
/// (HTB at 8 Mbit/s, a 10-packet pfifo, both ways): auto backs off to what
/// it carries, every verdict right; a fixed 200k/s loses verdicts.
#[test]
fn router_bottleneck_with_a_short_queue_auto_gets_every_verdict_right() {
    if synscope_lab::skip_unless_root(
        "router_bottleneck_with_a_short_queue_auto_gets_every_verdict_right",
    ) {
        return;
    }
    let spec = RoutedSpec {
        routers: 1,
        policy_router: 1,
        open: vec![22, 80, 443],
        dropped: vec![21, 8443],
        admin_prohibited: vec![111, 113],
        bottleneck_kbit: Some(8_000),
        ..RoutedSpec::default()
    };
    let lab = Lab::up_routed(&spec).unwrap();
    let server = routed::server_v4(1).to_string();
    let (out, t) = scan(&lab, &[&server, "-p-", "--ndjson"]);
    let lines = ndjson(&out);
    let s = summary(&lines);
    eprintln!(
        "router HTB 8 Mbit/s, 10-packet queue, default --rate auto: {t:.2} s, {} SYNs, coverage {}",
        s["sent"], s["coverage"]
    );
    assert_eq!(wrong(&lines), 0, "{s}");
    assert!(s["coverage"]["peak_loss"].as_f64().unwrap() > 0.0, "{s}");
    // the bottleneck carries ~13,500 SYNs/s: 4.9 s at best
    assert!(t < 120.0, "{t}");
    let (out, t) = scan(&lab, &[&server, "-p-", "--rate", "200000", "--ndjson"]);
    let lines = ndjson(&out);
    let bad = wrong(&lines);
    eprintln!(
        "router HTB, --rate 200000: {t:.2} s, {bad} wrong, coverage {}",
        summary(&lines)["coverage"]
    );
    assert!(bad > 0, "a fixed rate 15x the bottleneck loses verdicts");
}

/// The server keeps Linux's default ICMP rate limits (a fresh namespace's
/// `net.ipv4.icmp_ratelimit` 1000 ms and `icmp_msgs_per_sec` 1000, IPv6's
/// `icmp/ratelimit` 100 ms on this 6.18 kernel) and rejects 102 ports: most rejections are never
/// sent. Those ports must never read open or closed; each is filtered (its
/// ICMP came) or no-response, and the summary counts the no-responses of
/// hosts that sent ICMP errors (the honest figure: they may be rejections).
#[test]
fn icmp_rate_limited_rejections_are_never_closed_and_are_counted() {
    if synscope_lab::skip_unless_root(
        "icmp_rate_limited_rejections_are_never_closed_and_are_counted",
    ) {
        return;
    }
    let rejected: Vec<u16> = (5000..5100).collect();
    let spec = LabSpec {
        admin_prohibited: [vec![111], rejected.clone()].concat(),
        icmp_ratelimit: true,
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    for (key, want_value) in [
        ("net.ipv4.icmp_ratelimit", "1000"),
        ("net.ipv4.icmp_msgs_per_sec", "1000"),
        ("net.ipv6.icmp.ratelimit", "100"),
    ] {
        let out = lab
            .server_command("sysctl")
            .args(["-n", key])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want_value,
            "{key}"
        );
    }
    for target in ["198.18.0.2", "2001:db8::2"] {
        let (out, t) = scan(&lab, &[target, "-p", "1-10000", "--ndjson"]);
        let lines = ndjson(&out);
        let s = summary(&lines);
        let v = verdicts(&lines);
        let mut hidden = 0;
        for port in 1..=10000u64 {
            let got = v.get(&port).map(String::as_str);
            if rejected.contains(&(port as u16)) || port == 111 || port == 113 {
                assert!(
                    matches!(got, Some("filtered" | "no_response")),
                    "{target} port {port}: {got:?}"
                );
                hidden += (got == Some("no_response")) as u64;
            } else {
                assert_eq!(got, Some(want(port)), "{target} port {port}");
            }
        }
        let c = &s["coverage"];
        eprintln!(
            "{target}, default ICMP rate limits, 102 rejected ports: {t:.2} s, {} filtered, {hidden} hidden by the limit, coverage {c}",
            s["filtered"]
        );
        assert!(s["filtered"].as_u64().unwrap() >= 1, "{s}");
        assert!(hidden > 0, "the rate limit hid no rejection: {s}");
        // every no-response of this host is counted as maybe a rejection
        // (the rejected ones and the dropped 21 and 8443)
        assert_eq!(
            c["icmp_silent_pairs"].as_u64().unwrap(),
            s["no_response"].as_u64().unwrap(),
            "{s}"
        );
    }
}

#[test]
fn clean_path_auto_is_near_the_fixed_ceiling_and_says_no_loss() {
    if synscope_lab::skip_unless_root("clean_path_auto_is_near_the_fixed_ceiling_and_says_no_loss")
    {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let (out, auto_s) = scan(&lab, &["198.18.0.2", "-p-", "--ndjson"]);
    let lines = ndjson(&out);
    let s = summary(&lines);
    assert_eq!(wrong(&lines), 0, "{s}");
    let (out, fixed_s) = scan(
        &lab,
        &["198.18.0.2", "-p-", "--rate", "1000000", "--ndjson"],
    );
    let fixed = ndjson(&out);
    assert_eq!(wrong(&fixed), 0);
    let (out, old_s) = scan(&lab, &["198.18.0.2", "-p-", "--rate", "10000", "--ndjson"]);
    assert_eq!(wrong(&ndjson(&out)), 0);
    eprintln!(
        "clean -p-: auto {auto_s:.2} s (settled {} pkt/s, send rate {:.0}), fixed 1M {fixed_s:.2} s, fixed 10k (the old default) {old_s:.2} s",
        s["coverage"]["settled_pps"],
        s["send_rate_pps"].as_f64().unwrap()
    );
    assert!(s["coverage"]["uncertain_pairs"].as_f64().unwrap() < 1.0);
    // generous: auto ramps from 20k/s, fixed starts at the ceiling
    assert!(auto_s < 4.0 * fixed_s + 3.0, "{auto_s} vs {fixed_s}");
}

#[test]
fn shards_without_a_seed_agree_and_cover_every_pair_once() {
    if synscope_lab::skip_unless_root("shards_without_a_seed_agree_and_cover_every_pair_once") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut seeds = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let (out, _) = scan(
            &lab,
            &[
                "198.18.0.2",
                "-p",
                "1-3000",
                "--shard",
                &shard,
                "--timeout",
                "200ms",
                "--ndjson",
            ],
        );
        let lines = ndjson(&out);
        seeds.push(
            summary(&lines)["seed"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        for (port, verdict) in verdicts(&lines) {
            assert_eq!(verdict, want(port), "port {port}");
            *seen.entry(port).or_default() += 1;
        }
    }
    assert!(seeds.windows(2).all(|w| w[0] == w[1]), "{seeds:?}");
    assert_eq!(seen.len(), 3000);
    assert!(seen.values().all(|&n| n == 1));
}
