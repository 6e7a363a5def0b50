//! `synscope scan` on networks as users have them (issue 9 §1–2): a LAN of
//! real kernels behind a bridge with no static neighbour entries (most of its
//! addresses answer nothing at all), and a second route with its own source
//! address. Needs root, `ip`, `nft`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::Output;
use synscope_lab::{FAR_V4, Lab, LabSpec, LanHost, in_netns, lan_v4, lan_v6};

mod common;

/// LAN hosts .2 (22 closed, 80 and 443 open), .3 (22 open) and .77 (nothing
/// open); a second route to a router answering for 198.18.220.0/24 (80 open).
fn spec() -> LabSpec {
    LabSpec {
        lan: vec![
            LanHost {
                host: 2,
                open: vec![80, 443],
            },
            LanHost {
                host: 3,
                open: vec![22],
            },
            LanHost {
                host: 77,
                open: vec![],
            },
        ],
        second_route: Some(vec![80]),
        ..LabSpec::standard()
    }
}

const UP: [u8; 3] = [2, 3, 77];

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

/// (host, port) → verdict of every result line; each pair at most once.
fn verdicts(lines: &[Value]) -> BTreeMap<(String, u64), String> {
    let mut m = BTreeMap::new();
    for v in lines.iter().filter(|v| v["kind"] == "result") {
        let key = (
            v["host"].as_str().unwrap().to_string(),
            v["port"].as_u64().unwrap(),
        );
        let verdict = v["verdict"].as_str().unwrap().to_string();
        assert!(m.insert(key.clone(), verdict).is_none(), "{key:?} twice");
    }
    m
}

/// host → (state, reason) of every host line; each host at most once.
fn hosts(lines: &[Value]) -> BTreeMap<String, (String, String)> {
    let mut m = BTreeMap::new();
    for v in lines.iter().filter(|v| v["kind"] == "host") {
        let h = v["host"].as_str().unwrap().to_string();
        let s = (
            v["state"].as_str().unwrap().to_string(),
            v["reason"].as_str().unwrap().to_string(),
        );
        assert!(m.insert(h.clone(), s).is_none(), "host {h} twice");
    }
    m
}

fn summary(lines: &[Value]) -> &Value {
    let s = lines.last().unwrap();
    assert_eq!(s["kind"], "summary");
    s
}

/// The verdicts the LAN's kernels give on ports 22, 80, 81.
fn lan_want(host: u8, port: u64) -> &'static str {
    match (host, port) {
        (2, 80) | (3, 22) => "open",
        _ => "closed",
    }
}

#[test]
fn local_ipv4_subnet_up_hosts_probed_down_hosts_said_once() {
    if synscope_lab::skip_unless_root("local_ipv4_subnet_up_hosts_probed_down_hosts_said_once") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(&lab, &["198.18.200.0/24", "-p", "22,80,81", "--ndjson"]);
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // discovery: 256 - network - broadcast - our own address = 253 asked
    assert!(
        stderr.contains("253 addresses, 3 hosts up (ARP), 1 known without asking (own address) in"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped 2 network/broadcast addresses")
            && stderr.contains("198.18.200.0, 198.18.200.255"),
        "{stderr}"
    );
    let h = hosts(&lines);
    assert_eq!(h.len(), 253);
    for i in 2..=254u8 {
        let want = if UP.contains(&i) {
            ("up", "arp_reply")
        } else {
            ("down", "no_reply")
        };
        let got = &h[&lan_v4(i).to_string()];
        assert_eq!((got.0.as_str(), got.1.as_str()), want, "198.18.200.{i}");
    }
    let up_line = lines
        .iter()
        .find(|v| v["host"] == "198.18.200.77" && v["kind"] == "host")
        .unwrap();
    assert_eq!(up_line["mac"], "02:53:53:c8:00:4d");
    assert!(up_line["rtt_us"].as_f64().unwrap() > 0.0);
    // SYNs only to hosts that answered (and to our own address, over lo)
    let v = verdicts(&lines);
    let probed: BTreeSet<&str> = v.keys().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        probed,
        BTreeSet::from([
            "198.18.200.1",
            "198.18.200.2",
            "198.18.200.3",
            "198.18.200.77"
        ])
    );
    for host in UP {
        for port in [22, 80, 81] {
            assert_eq!(
                v[&(lan_v4(host).to_string(), port)],
                lan_want(host, port),
                "198.18.200.{host}:{port}"
            );
        }
    }
    for port in [22, 80, 81] {
        assert_eq!(v[&("198.18.200.1".to_string(), port)], "closed");
    }
    let s = summary(&lines);
    assert_eq!(s["skipped_addresses"], 2);
    assert_eq!(s["discovery"]["method"], "arp");
    assert_eq!(s["discovery"]["up"], 3);
    assert_eq!(s["discovery"]["down"], 250);
    assert_eq!(s["send_errors"], 0);
    assert_eq!(s["no_response"], 0);
    // each reply seen once (not again on the bridge, nor twice on lo)
    assert_eq!(s["ignored"], serde_json::json!({}), "{s}");

    // the text table: one line per down host, none of its ports
    let out = scan(&lab, &["198.18.200.0/24", "-p", "22,80,81"]);
    common::assert_status(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("198.18.200.9  down (no ARP reply)").count(), 1);
    assert_eq!(text.matches("down (no ARP reply)").count(), 250);
    assert!(!text.contains("/tcp    no-response"), "{text}");
    assert!(text.contains("80/tcp    open"), "{text}");
    assert!(
        text.contains("skipped 2 network/broadcast addresses"),
        "{text}"
    );
}

#[test]
fn local_ipv6_range_resolved_by_neighbor_solicitation() {
    if synscope_lab::skip_unless_root("local_ipv6_range_resolved_by_neighbor_solicitation") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(&lab, &["2001:db8:200::/120", "-p", "22,80,81", "--ndjson"]);
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 256 addresses but our own: IPv6 has no broadcast address to skip
    assert!(
        stderr.contains("255 addresses, 3 hosts up (NDP), 1 known without asking (own address) in"),
        "{stderr}"
    );
    let h = hosts(&lines);
    assert_eq!(h.len(), 255);
    for i in (0..=255u8).filter(|i| *i != 1) {
        let want = if UP.contains(&i) {
            ("up", "nd_reply")
        } else {
            ("down", "no_reply")
        };
        let got = &h[&lan_v6(i).to_string()];
        assert_eq!((got.0.as_str(), got.1.as_str()), want, "{}", lan_v6(i));
    }
    let v = verdicts(&lines);
    assert_eq!(v.len(), 4 * 3, "{v:?}");
    for host in UP {
        for port in [22, 80, 81] {
            assert_eq!(
                v[&(lan_v6(host).to_string(), port)],
                lan_want(host, port),
                "{}:{port}",
                lan_v6(host)
            );
        }
    }
    let s = summary(&lines);
    assert_eq!(
        (
            s["skipped_addresses"].as_u64(),
            s["discovery"]["down"].as_u64()
        ),
        (Some(0), Some(252))
    );
}

/// The reports of the old code: EAGAIN at --rate 1000 and EACCES on the
/// broadcast address, both ending the scan with exit 2.
#[test]
fn local_range_never_aborts_at_low_or_high_rates() {
    if synscope_lab::skip_unless_root("local_range_never_aborts_at_low_or_high_rates") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    for target in ["198.18.200.1-254", "198.18.200.0/24"] {
        for rate in ["1000", "1000000"] {
            for discovery in [true, false] {
                let mut args = vec![target, "-p", "80", "--rate", rate, "--ndjson"];
                if !discovery {
                    args.push("--no-discovery");
                }
                let out = scan(&lab, &args);
                let lines = ndjson(&out);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!stderr.contains("CAP_NET_RAW"), "{args:?}: {stderr}");
                let v = verdicts(&lines);
                assert_eq!(v[&("198.18.200.2".into(), 80)], "open", "{args:?}");
                assert_eq!(v[&("198.18.200.3".into(), 80)], "closed", "{args:?}");
                assert!(!v.contains_key(&("198.18.200.255".into(), 80)), "{args:?}");
                let s = summary(&lines);
                assert_eq!(s["send_errors"], 0, "{args:?}");
                assert!(s["send_backpressure"].is_u64(), "{args:?}");
            }
        }
    }
    // only the broadcast address: nothing to probe, said as such
    let out = scan(&lab, &["198.18.200.255", "-p", "80"]);
    common::assert_status(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("every target is a network or broadcast address")
            && !stderr.contains("CAP_NET_RAW"),
        "{stderr}"
    );
}

#[test]
fn no_discovery_probes_every_address_and_says_no_host_state() {
    if synscope_lab::skip_unless_root("no_discovery_probes_every_address_and_says_no_host_state") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(
        &lab,
        &[
            "198.18.200.0/24",
            "-p",
            "80",
            "--no-discovery",
            "--timeout",
            "300ms",
            "--ndjson",
        ],
    );
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("hosts up"), "{stderr}");
    assert!(hosts(&lines).is_empty());
    let s = summary(&lines);
    assert!(s.get("discovery").is_none(), "{s}");
    assert_eq!(s["skipped_addresses"], 2);
    let v = verdicts(&lines);
    // every address but network and broadcast got its SYN
    assert_eq!(v.len(), 254);
    assert_eq!(v[&("198.18.200.2".into(), 80)], "open");
    assert_eq!(v[&("198.18.200.77".into(), 80)], "closed");
    // a silent address: no answer, or our own kernel's host-unreachable once
    // its ARP gave up
    let silent = &v[&("198.18.200.9".into(), 80)];
    assert!(silent == "no_response" || silent == "filtered", "{silent}");
}

/// One scan over loopback, the LAN and the second route: every target from
/// the source address its route gives, every verdict right.
#[test]
fn mixed_routes_each_target_from_its_own_source() {
    if synscope_lab::skip_unless_root("mixed_routes_each_target_from_its_own_source") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    // 127.0.0.1:80 listens in the client namespace
    let lo = in_netns(&lab.client_ns, || {
        TcpListener::bind("127.0.0.1:80").unwrap()
    })
    .unwrap();
    let far = FAR_V4.replace(".0/24", ".5");
    let out = scan(
        &lab,
        &[
            "127.0.0.1",
            "198.18.200.2",
            "198.18.200.9",
            "198.18.210.2",
            &far,
            // no route at all in the client: said once, not probed
            "198.18.230.1",
            "-p",
            "80,81",
            "--ndjson",
        ],
    );
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 target address not probed: no route to 198.18.230.1"),
        "{stderr}"
    );
    assert_eq!(summary(&lines)["unroutable_addresses"], 1);
    // nothing unreadable, forged or from elsewhere; a second answer to a SYN
    // retried under load (`no_probe`) is the only ignored kind allowed
    let ignored = summary(&lines)["ignored"].as_object().unwrap().clone();
    assert!(ignored.keys().all(|k| k == "no_probe"), "{ignored:?}");
    let v = verdicts(&lines);
    let want = [
        ("127.0.0.1", 80, "open"),
        ("127.0.0.1", 81, "closed"),
        ("198.18.200.2", 80, "open"),
        ("198.18.200.2", 81, "closed"),
        ("198.18.210.2", 80, "open"),
        ("198.18.210.2", 81, "closed"),
        (far.as_str(), 80, "open"),
        (far.as_str(), 81, "closed"),
    ];
    for (h, p, verdict) in want {
        assert_eq!(
            v.get(&(h.to_string(), p)).map(String::as_str),
            Some(verdict),
            "{h}:{p}"
        );
    }
    assert_eq!(v.len(), want.len(), "{v:?}");
    assert_eq!(
        hosts(&lines)["198.18.200.9"],
        ("down".to_string(), "no_reply".to_string())
    );
    drop(lo);

    let out = scan(
        &lab,
        &[
            "::1",
            "2001:db8:200::2",
            "2001:db8:220::5",
            "-p",
            "80,81",
            "--ndjson",
        ],
    );
    let v = verdicts(&ndjson(&out));
    for (h, p, verdict) in [
        ("::1", 80, "closed"),
        ("2001:db8:200::2", 80, "open"),
        ("2001:db8:200::2", 81, "closed"),
        ("2001:db8:220::5", 80, "open"),
        ("2001:db8:220::5", 81, "closed"),
    ] {
        assert_eq!(
            v.get(&(h.to_string(), p)).map(String::as_str),
            Some(verdict),
            "{h}:{p}"
        );
    }
}

/// The figures of bench/lan_scan.sh (run with --ignored; prints, asserts
/// only that both tools found the LAN's hosts): the wall time of
/// `synscope scan 198.18.200.0/24 -p 80` beside `nmap -sS -p 80 -n` on the
/// same LAN in the same run, alternating, REPS times each.
#[test]
#[ignore]
fn bench_lan_scan_against_nmap() {
    if synscope_lab::skip_unless_root("bench_lan_scan_against_nmap") {
        return;
    }
    let up = [2u8, 3, 77, 100, 200];
    let spec = LabSpec {
        lan: up
            .iter()
            .map(|&h| LanHost {
                host: h,
                open: if h % 2 == 0 { vec![80] } else { vec![] },
            })
            .collect(),
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let timed = |cmd: &mut std::process::Command| {
        let t = std::time::Instant::now();
        let out = cmd.output().unwrap();
        (t.elapsed().as_secs_f64(), out)
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (family, target, nmap_flag) in [
        ("IPv4", "198.18.200.0/24", "-4"),
        ("IPv6", "2001:db8:200::/120", "-6"),
    ] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (t, out) = timed(
                lab.client_command(env!("CARGO_BIN_EXE_synscope"))
                    .args(["scan", target, "-p", "80", "--ndjson"]),
            );
            let lines = ndjson(&out);
            let open = verdicts(&lines).values().filter(|v| *v == "open").count();
            let found = hosts(&lines).values().filter(|s| s.0 == "up").count();
            assert_eq!((found, open), (5, 3), "synscope {family}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let disc = stderr
                .lines()
                .find(|l| l.contains("hosts up"))
                .unwrap_or("");
            println!("synscope  {family}  {t:6.3} s   {disc}");
            ours.push(t);

            let (t, out) = timed(
                lab.client_command("nmap")
                    .args([nmap_flag, "-sS", "-p", "80", "-n", target]),
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let done = text
                .lines()
                .find(|l| l.starts_with("Nmap done"))
                .unwrap_or("");
            // nmap counts this host (198.18.200.1, 2001:db8:200::1) among those up
            assert!(done.contains("(6 hosts up)"), "nmap {family}: {text}");
            assert_eq!(
                text.matches("80/tcp open").count(),
                3,
                "nmap {family}: {text}"
            );
            println!("nmap      {family}  {t:6.3} s   {done}");
            theirs.push(t);
        }
        println!(
            "median wall time, {target} -p 80 (5 hosts up, 3 open), {reps} runs each: synscope {:.3} s, nmap -sS {:.3} s",
            median(&mut ours),
            median(&mut theirs)
        );
    }
}

/// Routes are looked up per region of the routing table, not per target:
/// 128 scattered addresses behind the second route's gateway cost one lookup.
#[test]
fn scattered_targets_behind_one_route_cost_one_lookup() {
    if synscope_lab::skip_unless_root("scattered_targets_behind_one_route_cost_one_lookup") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let targets: Vec<String> = (0..128)
        .map(|i| format!("198.18.220.{}", 2 * i + 1))
        .collect();
    let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
    args.extend(["-p", "80", "-v", "--ndjson"]);
    let out = scan(&lab, &args);
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes: 1 lookups for 128 target addresses"),
        "{stderr}"
    );
    let v = verdicts(&lines);
    assert_eq!(v.len(), 128);
    assert!(v.values().all(|x| x == "open"), "{v:?}");
}

/// Issue 9 polish: targets probed without asking (our own address, a
/// permanent neighbour entry) are counted in the discovery line and summary.
#[test]
fn discovery_line_counts_targets_known_without_asking() {
    if synscope_lab::skip_unless_root("discovery_line_counts_targets_known_without_asking") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let st = lab
        .client_command("ip")
        .args([
            "neigh",
            "add",
            "198.18.200.50",
            "lladdr",
            "02:53:53:c8:00:32",
        ])
        .args(["dev", "lan0", "nud", "permanent"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = scan(
        &lab,
        &[
            "198.18.200.0/24",
            "-p",
            "80",
            "--timeout",
            "200ms",
            "--ndjson",
        ],
    );
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "252 addresses, 3 hosts up (ARP), 2 known without asking (own address, neighbour table) in"
        ),
        "{stderr}"
    );
    let d = &summary(&lines)["discovery"];
    assert_eq!(
        (d["known_own"].as_u64(), d["known_neighbours"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
    // the known hosts were probed without discovery
    let v = verdicts(&lines);
    assert_eq!(v[&("198.18.200.1".into(), 80)], "closed");
    assert!(v.contains_key(&("198.18.200.50".into(), 80)));
}

/// Issue 9 polish: with --no-discovery, a host that answered nothing gets one
/// line, not a table header with nothing under it.
#[test]
fn no_discovery_text_gives_silent_hosts_one_line() {
    if synscope_lab::skip_unless_root("no_discovery_text_gives_silent_hosts_one_line") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(
        &lab,
        &[
            "198.18.200.0/29",
            "-p",
            "80,81",
            "--no-discovery",
            "--timeout",
            "300ms",
        ],
    );
    common::assert_status(&out, 0);
    let t = String::from_utf8_lossy(&out.stdout);
    // tables for the hosts that answered (.1 ourselves, .2, .3), none else
    assert_eq!(t.matches("PORT").count(), 3, "{t}");
    for h in 4..=7 {
        let line = format!("198.18.200.{h}  no response (2 ports)");
        // or our kernel's host-unreachable once its ARP gave up: a table row
        assert!(t.contains(&line) || t.contains("filtered"), "{t}");
    }
}

/// Issue 9 polish: one family with no route at all does not stop the other.
#[test]
fn a_family_with_no_route_is_counted_and_the_other_scanned() {
    if synscope_lab::skip_unless_root("a_family_with_no_route_is_counted_and_the_other_scanned") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(
        &lab,
        &[
            "198.18.0.2",
            "2001:db8:ffff::1",
            "-p",
            "22,23",
            "--timeout",
            "200ms",
            "--ndjson",
        ],
    );
    let lines = ndjson(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 1 target address not probed")
            && stderr.contains("2001:db8:ffff::1"),
        "{stderr}"
    );
    let v = verdicts(&lines);
    assert_eq!(v.len(), 2);
    assert_eq!(v[&("198.18.0.2".into(), 22)], "open");
    assert_eq!(v[&("198.18.0.2".into(), 23)], "closed");
    assert_eq!(summary(&lines)["unroutable_addresses"], 1);
    // no target with a route at all: exit 2
    let out = scan(&lab, &["2001:db8:ffff::1", "198.18.254.1", "-p", "22"]);
    common::assert_status(&out, 2);
}

#[test]
fn quiet_leaves_stderr_empty_and_the_results_whole() {
    if synscope_lab::skip_unless_root("quiet_leaves_stderr_empty_and_the_results_whole") {
        return;
    }
    // the same scan says "hosts up (ARP)" and "skipped 2 network/broadcast
    // addresses" on stderr (above); with --quiet only errors would be there
    if synscope_lab::skip_unless_root("quiet_leaves_stderr_empty_and_the_results_whole") {
        return;
    }
    let lab = Lab::up(&spec()).unwrap();
    let out = scan(&lab, &["198.18.200.0/24", "-p", "80", "--ndjson", "-q"]);
    let lines = ndjson(&out);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(hosts(&lines).len(), 253);
    // port 80 of the hosts up and of our own address
    assert_eq!(verdicts(&lines).len(), UP.len() + 1);
}
