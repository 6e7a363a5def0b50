//! `synscope scan --rate auto` (issue 12) against real kernels in the lab: a
//! path that polices SYNs (nftables `limit rate over 20000/second drop` on the
//! server), a clean path, and shards without a seed. Needs root, `ip`, `nft`.
//! Figures are printed; the only timed assertion is a generous bound.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Instant;
use synscope::lab::{Lab, LabSpec};

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
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// port → verdict of every result line.
fn verdicts(lines: &[Value]) -> BTreeMap<u64, String> {
    lines
        .iter()
        .filter(|v| v["type"] == "result")
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
        21 | 8443 => "no-response",
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
    assert_eq!(s["type"], "summary");
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
    // generous: the policer alone needs 3.3 s
    assert!(auto_s < 60.0, "{auto_s}");

    let (out, fixed_s) = scan(&lab, &["198.18.0.2", "-p-", "--rate", "200000", "--ndjson"]);
    let lines = ndjson(&out);
    let bad = wrong(&lines);
    let c = &summary(&lines)["coverage"];
    eprintln!("policed, --rate 200000: {fixed_s:.2} s, {bad} wrong verdicts, coverage {c}");
    assert!(bad > 0, "a fixed rate 10x the policer loses verdicts");
    // and the estimate says so
    assert!(c["uncertain_pairs"].as_f64().unwrap() >= 1.0, "{c}");
}

#[test]
fn clean_path_auto_is_near_the_fixed_ceiling_and_says_no_loss() {
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
                "--wait",
                "200ms",
                "--ndjson",
            ],
        );
        let lines = ndjson(&out);
        seeds.push(summary(&lines)["seed"].as_u64().unwrap());
        for (port, verdict) in verdicts(&lines) {
            assert_eq!(verdict, want(port), "port {port}");
            *seen.entry(port).or_default() += 1;
        }
    }
    assert!(seeds.windows(2).all(|w| w[0] == w[1]), "{seeds:?}");
    assert_eq!(seen.len(), 3000);
    assert!(seen.values().all(|&n| n == 1));
}
