//! `synscope demo` end to end (root), and what an unprivileged user is told.

use std::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

#[test]
fn demo_runs_every_case_and_cleans_up() {
    if synscope_lab::skip_unless_root("demo_runs_every_case_and_cleans_up") {
        return;
    }
    let child = Command::new(BIN)
        .args(["demo", "-c", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("synscope-{}-", child.id());
    let child = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    let err = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(0), "{out}\n{err}");
    for want in [
        "seq=0 sport=",
        " open rtt=",
        " closed rtt=",
        "filtered (no answer)",
        "filtered (admin-prohibited from 198.18.0.2)",
        "([2001:db8::2]:443)",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(
        err.contains("lab removed; every port answered as expected"),
        "{err}"
    );
    // every namespace the demo made (named after its pid) is gone
    let left: Vec<String> = lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn lab_namespaces() -> std::collections::BTreeSet<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("synscope-"))
        .map(str::to_string)
        .collect()
}

/// Runs the binary as user `nobody`, with no capabilities.
fn as_nobody(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(BIN)
        .args(args)
        .output()
        .expect("setpriv (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_privileges_one_line_says_what_is_needed() {
    if synscope_lab::skip_unless_root("without_privileges_one_line_says_what_is_needed") {
        return;
    }
    let (code, err) = as_nobody(&["ping", "127.0.0.1:80", "-c", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("run as root") && err.contains("setcap cap_net_raw,cap_net_admin+ep"),
        "{err}"
    );
    let (code, err) = as_nobody(&["demo"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("demo needs root"), "{err}");
}

/// `setpriv` arguments that run as `nobody` with only these capabilities.
fn nobody_with(caps: &str) -> Vec<String> {
    vec![
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps=-all,{caps}"),
        "--".into(),
        BIN.into(),
    ]
}

#[test]
fn with_only_the_two_capabilities_it_works_then_drops_them() {
    if synscope_lab::skip_unless_root("with_only_the_two_capabilities_it_works_then_drops_them") {
        return;
    }
    use synscope_lab::{Lab, LabSpec, SERVER_V4};
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let target = format!("{SERVER_V4}:80");
    let argv = nobody_with("+net_raw,+net_admin");
    let out = lab
        .client_command(&argv[0])
        .args(&argv[1..])
        .args(["ping", &target, "-c", "2", "-i", "50ms"])
        .output()
        .unwrap();
    common::assert_status(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(" open rtt="));
    let out = lab
        .client_command(&argv[0])
        .args(&argv[1..])
        .args([
            "scan",
            &SERVER_V4.to_string(),
            "-p",
            "79-81",
            "--timeout",
            "200ms",
            "--ndjson",
        ])
        .output()
        .unwrap();
    common::assert_status(&out, 0);

    // as root, a running ping holds no capability once its sockets are open
    let child = lab
        .client_command(BIN)
        .args(["ping", &target, "-c", "30", "-i", "50ms"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let caps: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("CapEff:") || l.starts_with("CapPrm:"))
        .collect();
    common::signal(&child, "-INT");
    let _ = child.wait_with_output();
    assert_eq!(
        caps,
        ["CapPrm:\t0000000000000000", "CapEff:\t0000000000000000"],
        "{status}"
    );
}

#[test]
fn a_killed_demo_leaves_no_namespace_behind() {
    if synscope_lab::skip_unless_root("a_killed_demo_leaves_no_namespace_behind") {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["demo", "-c", "20"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("synscope-{}-", child.id());
    // wait (bounded) until its lab is up, then SIGKILL it: no destructor runs
    let t0 = std::time::Instant::now();
    while lab_namespaces().iter().all(|n| !n.starts_with(&prefix))
        && t0.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        lab_namespaces().iter().any(|n| n.starts_with(&prefix)),
        "the lab of the demo never came up"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // its reaper notices within 100 ms and deletes the namespaces (bounded wait)
    let t0 = std::time::Instant::now();
    let mut left: Vec<String>;
    loop {
        left = lab_namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if left.is_empty() || t0.elapsed() > std::time::Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(left.is_empty(), "left behind: {left:?}");
}
