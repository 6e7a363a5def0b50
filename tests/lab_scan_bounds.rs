//! Huge target sets, interrupts, memory bounds and names (issue 9, sections 3
//! and 7), against the real binary in namespace labs. Every packet stays in a
//! lab namespace: the client namespace has no route out of the lab.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

/// A lab whose client sends everything not on the veth to the server
/// namespace (which routes nothing further: it has only lo and its veth end),
/// so a scan of 0.0.0.0/0 has a route and still never leaves the lab.
fn closed_world() -> Lab {
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let ip = |ns: &str, args: &[&str]| {
        let out = Command::new("ip")
            .arg("-n")
            .arg(ns)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ip(
        &lab.client_ns,
        &["route", "add", "default", "via", &SERVER_V4.to_string()],
    );
    // nothing leaves: each namespace has only lo and its end of the lab's veth pair
    for ns in [&lab.client_ns, &lab.server_ns] {
        let links: Vec<String> = ip(ns, &["-o", "link", "show"])
            .lines()
            .map(|l| {
                l.split(':')
                    .nth(1)
                    .unwrap()
                    .trim()
                    .split('@')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(links, ["lo", "veth0"], "{ns}");
    }
    assert!(
        ip(&lab.server_ns, &["route", "show", "default"])
            .trim()
            .is_empty()
    );
    lab
}

/// A `synscope scan` running in a lab under GNU time, which reports the
/// scan's own peak memory (a forked test process would lend it its own).
struct Scan {
    time: Child,
    /// synscope's pid (time's child).
    pid: u32,
    peak_file: std::path::PathBuf,
}

/// Starts `synscope scan ARGS` in the lab's client namespace, stdout to a file.
fn start_scan(lab: &Lab, args: &[&str], stdout: &std::path::Path) -> Scan {
    let peak_file = stdout.with_extension("peak");
    let time = lab
        .client_command("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&peak_file)
        .arg(BIN)
        .arg("scan")
        .args(args)
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU time (scripts/setup.sh installs it)");
    let children = format!("/proc/{0}/task/{0}/children", time.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        let list = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(p) = list.split_whitespace().next() {
            break p.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "synscope did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    Scan {
        time,
        pid,
        peak_file,
    }
}

impl Scan {
    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// VmHWM (peak resident set, KiB) so far.
    fn vm_hwm(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn running(&mut self) -> bool {
        self.time.try_wait().unwrap().is_none()
    }

    /// Waits for the end: exit code, peak resident memory (KiB), stderr.
    fn finish(mut self) -> (Option<i32>, u64, String) {
        let status = self.time.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.time.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let peak = std::fs::read_to_string(&self.peak_file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.peak_file);
        // time writes "Command exited with non-zero status N" before the figure
        let peak = peak.lines().last().and_then(|l| l.trim().parse().ok());
        (status.code(), peak.expect("no peak from time"), err)
    }
}

fn ndjson_lines(path: &std::path::Path) -> Vec<Value> {
    common::schema::check_lines("scan", &std::fs::read_to_string(path).unwrap())
}

/// The results, and the summary (the last line).
fn results_and_summary(lines: &[Value]) -> (Vec<&Value>, &Value) {
    let summary = lines.last().expect("no output at all");
    assert_eq!(summary["kind"], "summary", "{summary}");
    (
        lines.iter().filter(|v| v["kind"] == "result").collect(),
        summary,
    )
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("synscope-bounds-{}-{name}", std::process::id()))
}

#[test]
fn a_scan_of_every_address_and_port_runs_in_bounded_memory_and_stops_on_sigint() {
    if synscope_lab::skip_unless_root(
        "a_scan_of_every_address_and_port_runs_in_bounded_memory_and_stops_on_sigint",
    ) {
        return;
    }
    let lab = closed_world();
    let path = temp("all.ndjson");
    let mut scan = start_scan(
        &lab,
        &["0.0.0.0/0", "-p-", "--rate", "20000", "--ndjson"],
        &path,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(scan.running(), "the scan ended by itself");
    let hwm_running = scan.vm_hwm();
    scan.signal("-INT");
    let signalled = Instant::now();
    let (code, peak, err) = scan.finish();
    let took = signalled.elapsed();
    assert_eq!(code, Some(1), "{err}");
    eprintln!(
        "0.0.0.0/0 -p-: VmHWM {hwm_running} KiB while running, peak {peak} KiB, exit {took:?} after SIGINT"
    );
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after SIGINT"
    );
    // a 2^48-probe space in a few MiB (it once asked for 35 TB)
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    let lines = ndjson_lines(&path);
    let _ = std::fs::remove_file(&path);
    let (results, summary) = results_and_summary(&lines);
    assert_eq!(summary["interrupted"], true);
    // every address but the on-link /24's, which ARP finds down but the server,
    // and those that are never unicast destinations (0/8, 224/4, 240/4)
    let probes = summary["probes"].as_u64().unwrap();
    let reserved = (1u64 << 24) + (1u64 << 29);
    assert_eq!(probes, ((1u64 << 32) - 255 - reserved) * 65535, "{summary}");
    // nothing unsent is reported, and every probe is accounted for once
    assert!(results.iter().all(|r| r["verdict"] != "no_response"));
    let count = |k: &str| summary[k].as_u64().unwrap();
    let sent = count("sent");
    assert!(sent > 1000, "{summary}");
    assert!((results.len() as u64) <= sent);
    assert_eq!(
        count("open")
            + count("closed")
            + count("filtered")
            + count("no_response")
            + count("cut_short")
            + count("not_probed"),
        count("probes")
    );
    assert!(count("not_probed") >= count("probes") - sent);
}

/// A scan whose output nobody reads blocks writing it, so the first SIGINT
/// cannot end it (its summary has nowhere to go); the second ends it at once.
#[test]
fn a_second_sigint_ends_the_scan_at_once() {
    if synscope_lab::skip_unless_root("a_second_sigint_ends_the_scan_at_once") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let target = SERVER_V4.to_string();
    let mut child = lab
        .client_command(BIN)
        .args(["scan", &target, "-p-", "--rate", "100000", "--ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 65,535 result lines fill the pipe (64 KiB) long before the scan ends
    std::thread::sleep(Duration::from_secs(2));
    common::signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(500));
    let stuck = child.try_wait().unwrap().is_none();
    common::signal(&child, "-INT");
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second SIGINT did not end the scan");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        stuck,
        "the first SIGINT ended a scan whose output is blocked"
    );
    assert_eq!(status.code(), Some(1), "status of an interrupted scan");
    assert!(signalled.elapsed() < Duration::from_secs(1));
}

#[test]
fn an_interrupted_scan_lists_no_probe_it_did_not_send() {
    if synscope_lab::skip_unless_root("an_interrupted_scan_lists_no_probe_it_did_not_send") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let path = temp("cut.ndjson");
    let target = SERVER_V4.to_string();
    // 65,535 probes at 2,000/s: about a tenth sent when the signal comes
    let scan = start_scan(&lab, &[&target, "-p-", "--rate", "2000", "--ndjson"], &path);
    std::thread::sleep(Duration::from_secs(3));
    scan.signal("-TERM");
    let (code, _, err) = scan.finish();
    assert_eq!(code, Some(1), "{err}");
    let lines = ndjson_lines(&path);
    let _ = std::fs::remove_file(&path);
    let (results, summary) = results_and_summary(&lines);
    let count = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(summary["interrupted"], true);
    assert!(
        results.iter().all(|r| r["verdict"] != "no_response"),
        "{summary}"
    );
    assert_eq!(count("no_response"), 0);
    assert!(count("not_probed") > 50_000, "{summary}");
    assert!(count("sent") > 1000 && count("sent") < 20_000, "{summary}");
    assert_eq!(
        results.len() as u64 + count("cut_short") + count("not_probed"),
        65535,
        "{summary}"
    );
}

/// Deletes a namespace this test made, also when the test fails.
struct Netns(String);

impl Netns {
    fn add(name: &str) -> Netns {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns(name.to_string())
    }
    fn exists(&self) -> bool {
        std::path::Path::new(&format!("/run/netns/{}", self.0)).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_file(format!("/run/synscope/{}", self.0));
    }
}

/// A pid no process has: past the kernel's pid_max.
fn absent_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    max + 1
}

#[test]
fn demo_removes_only_namespaces_it_can_prove_are_its_own() {
    if synscope_lab::skip_unless_root("demo_removes_only_namespaces_it_can_prove_are_its_own") {
        return;
    }
    let gone = absent_pid();
    // someone else's: named like ours, its pid absent here, but no owner marker
    let foreign = Netns::add(&format!("synscope-{gone}-0-cli"));
    // ours, provably: the marker names a process of this PID namespace that is gone
    let stale = Netns::add(&format!("synscope-{gone}-1-cli"));
    let me = synscope_lab::Owner::me().unwrap();
    let dead = synscope_lab::Owner { pid: gone, ..me };
    std::fs::create_dir_all("/run/synscope").unwrap();
    std::fs::write(format!("/run/synscope/{}", stale.0), dead.to_text()).unwrap();
    let out = Command::new(BIN)
        .args(["demo", "-c", "1"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    assert!(
        foreign.exists(),
        "the demo removed a namespace it did not make"
    );
    assert!(!stale.exists(), "the demo left a namespace of a killed lab");
}

/// Memory of a text-mode scan in which nothing answers: the table does not
/// keep a row per silent probe.
#[test]
fn text_output_of_a_large_silent_scan_keeps_memory_flat() {
    if synscope_lab::skip_unless_root("text_output_of_a_large_silent_scan_keeps_memory_flat") {
        return;
    }
    let ports: Vec<u16> = (2001..=2100).collect();
    let spec = LabSpec {
        dropped: ports.clone(),
        many_hosts_v4: Some("198.19.0.0/16".into()),
        ..LabSpec::standard()
    };
    let lab = Lab::up(&spec).unwrap();
    let plist = "2001-2100";
    let run = |targets: &str| {
        let path = temp(&format!("text-{}", targets.replace('/', "_")));
        let scan = start_scan(
            &lab,
            &[
                targets,
                "-p",
                plist,
                "--rate",
                "100000",
                "--retries",
                "0",
                "--timeout",
                "200ms",
            ],
            &path,
        );
        let (code, peak, err) = scan.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(code, Some(0), "{err}\n{text}");
        (peak, text)
    };
    let (small, _) = run("198.19.0.0/24");
    // 4,096 hosts × 100 ports: 409,600 silent probes (a row each once took ~100 bytes)
    let (large, text) = run("198.19.0.0/20");
    eprintln!("text mode peak RSS: /24×100 {small} KiB, /20×100 {large} KiB");
    assert!(large < small + 12 * 1024, "{small} KiB -> {large} KiB");
    assert!(
        text.contains("409600 (host, port) pairs gave no response (not listed: more than 1000; --ndjson lists each): 4096 hosts × 100 ports answered nothing at all"),
        "{text}"
    );
    assert!(!text.contains("no-response  no-response"));
}

#[test]
fn targets_from_stdin_open_port_ranges_and_both_families_in_one_scan() {
    if synscope_lab::skip_unless_root(
        "targets_from_stdin_open_port_ranges_and_both_families_in_one_scan",
    ) {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let scan = |args: &[&str], stdin: &str| {
        let mut child = lab
            .client_command(BIN)
            .arg("scan")
            .args(args)
            .args(["--ndjson", "--timeout", "300ms"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        common::assert_status(&out, 0);
        let lines = common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout));
        let mut got: Vec<(String, u64, String)> = lines
            .iter()
            .filter(|v| v["kind"] == "result")
            .map(|v| {
                (
                    v["host"].as_str().unwrap().to_string(),
                    v["port"].as_u64().unwrap(),
                    v["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        got.sort();
        (got, lines.last().unwrap().clone())
    };
    let (v4, v6) = (SERVER_V4.to_string(), SERVER_V6.to_string());
    let row = |h: &str, p: u64, v: &str| (h.to_string(), p, v.to_string());

    // `scan -` reads targets from stdin
    let (got, _) = scan(&["-", "-p", "80,81"], &format!("# lab\n{v4}\n"));
    assert_eq!(got, [row(&v4, 80, "open"), row(&v4, 81, "closed")]);

    // an open range runs to 65535
    let (got, sum) = scan(&[&v4, "-p", "65530-"], "");
    assert_eq!(sum["ports"], 6);
    assert!(
        got.iter().all(|(_, p, v)| *p >= 65530 && v == "closed"),
        "{got:?}"
    );

    // IPv4 and IPv6 targets in one scan: both scanned, one report
    let (got, sum) = scan(&[&v4, &v6, "-p", "80,81"], "");
    assert_eq!(
        got,
        [
            row(&v4, 80, "open"),
            row(&v4, 81, "closed"),
            row(&v6, 80, "open"),
            row(&v6, 81, "closed"),
        ]
    );
    assert_eq!(
        (sum["hosts"].as_u64(), sum["probes"].as_u64()),
        (Some(2), Some(4))
    );
}

/// A name with IPv6 listed first in the hosts file still means IPv4, unless -6.
#[test]
fn a_dual_stack_name_means_ipv4_unless_minus_6() {
    if synscope_lab::skip_unless_root("a_dual_stack_name_means_ipv4_unless_minus_6") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    // `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Dir(std::path::PathBuf::from(format!(
        "/etc/netns/{}",
        lab.client_ns
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(
        dir.0.join("hosts"),
        format!("{SERVER_V6} dual.lab.test\n{SERVER_V4} dual.lab.test\n"),
    )
    .unwrap();
    for (extra, want) in [
        (None, SERVER_V4.to_string()),
        (Some("-6"), SERVER_V6.to_string()),
    ] {
        let out = lab
            .client_command(BIN)
            .args([
                "scan",
                "dual.lab.test",
                "-p",
                "80",
                "--ndjson",
                "--timeout",
                "300ms",
            ])
            .args(extra)
            .output()
            .unwrap();
        common::assert_status(&out, 0);
        let first: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        assert_eq!(first["host"], want.as_str(), "{extra:?}");
        assert_eq!(first["verdict"], "open");
    }
}

/// Many blocks: every port of the lab host in blocks of 4,096 probes (each
/// sent, retried, reported, then reused) gets the verdict a single block gives,
/// exactly once; replies arriving after their block was reported are ignored.
#[test]
fn a_scan_in_many_small_blocks_classifies_every_port_once() {
    if synscope_lab::skip_unless_root("a_scan_in_many_small_blocks_classifies_every_port_once") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let out = lab
        .client_command(BIN)
        .args(["scan", &SERVER_V4.to_string(), "-p-", "--rate", "100000"])
        .args(["--timeout", "300ms", "--ndjson", "--block-size", "4096"])
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    let lines = common::schema::check_lines("scan", &String::from_utf8_lossy(&out.stdout));
    let (results, summary) = results_and_summary(&lines);
    let mut seen = std::collections::BTreeMap::new();
    for r in &results {
        let port = r["port"].as_u64().unwrap() as u16;
        assert!(
            seen.insert(port, r["verdict"].as_str().unwrap()).is_none(),
            "port {port} twice"
        );
    }
    assert_eq!(seen.len(), 65535);
    let spec = LabSpec::standard();
    for (port, verdict) in seen {
        let want = if spec.open.contains(&port) {
            "open"
        } else if spec.dropped.contains(&port) {
            "no_response"
        } else if spec.admin_prohibited.contains(&port) || spec.port_unreachable.contains(&port) {
            "filtered"
        } else {
            "closed"
        };
        assert_eq!(verdict, want, "port {port}");
    }
    assert_eq!(summary["not_probed"], 0);
    assert_eq!(summary["cut_short"], 0);
}
