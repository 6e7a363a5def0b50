//! `synscope demo` end to end (root), and what an unprivileged user is told.

use std::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

#[test]
fn demo_runs_every_command_and_cleans_up() {
    if synscope_lab::skip_unless_root("demo_runs_every_command_and_cleans_up") {
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
        // ping: every kind of answer, and IPv6
        "seq=0 sport=",
        " open rtt=",
        " closed rtt=",
        "filtered (no answer)",
        "filtered (admin-prohibited from 198.18.0.2)",
        "([2001:db8::2]:443)",
        // scan of both addresses
        "### scan 198.18.0.2 and 2001:db8::2",
        "admin-prohibited from 2001:db8::2",
        "8080/tcp  open",
        "scanned 2 hosts x 8 ports",
        // trace with its ladder
        "### trace 198.18.0.2:8080",
        "FIN_WAIT_1",
        "TIME_WAIT",
        "result: complete: handshake, request acknowledged (18 bytes), orderly close with FINs",
        // DNS from the lab's NSD
        "### dns a.lab.test @198.18.0.2",
        "a.lab.test.             \t300\tIN\tA\t198.18.0.10",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(
        err.contains("lab removed; every command did what was expected"),
        "{err}"
    );
    // every namespace the demo made (named after its pid) is gone, and no
    // NSD of it runs
    assert!(namespaces_of(&prefix).is_empty(), "left behind");
    assert!(!nsd_runs(&prefix), "NSD left running");
}

/// The lab namespaces whose names start with `prefix`.
fn namespaces_of(prefix: &str) -> Vec<String> {
    lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Does an NSD of a lab named `prefix…` run (its config is in /tmp/PREFIX…)?
fn nsd_runs(prefix: &str) -> bool {
    let ps = Command::new("ps")
        .args(["-eo", "stat,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .any(|l| !l.starts_with('Z') && l.contains("nsd -d") && l.contains(prefix))
}

/// Starts `synscope demo -c 1 EXTRA` in a process group of its own, waits
/// until the lab is built (the first command's title is out), sends SIGINT
/// to the whole group as a terminal's Ctrl-C does, and returns the pid, the
/// output after the interrupt, stderr and the exit status.
fn demo_ctrl_c(extra: &[&str]) -> (u32, Vec<String>, String, Option<i32>) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(BIN)
        .args(["demo", "-c", "1"])
        .args(extra)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .take(50)
            .flatten()
            .any(|l| l.starts_with("### ping")),
        "no first command"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.take(10_000).flatten().collect();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (pid, rest, err, out.status.code())
}

#[test]
fn demo_interrupted_removes_everything() {
    if synscope_lab::skip_unless_root("demo_interrupted_removes_everything") {
        return;
    }
    let (pid, rest, err, code) = demo_ctrl_c(&[]);
    let prefix = format!("synscope-{pid}-");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("synscope demo: interrupted"), "{err}");
    assert!(err.contains("lab removed"), "{err}");
    assert!(
        !rest.iter().any(|l| l.starts_with("### scan")),
        "went on after the interrupt: {rest:?}"
    );
    assert!(namespaces_of(&prefix).is_empty(), "left behind");
    assert!(!nsd_runs(&prefix), "NSD left running");
}

#[test]
fn demo_keep_interrupted_once_built_keeps_a_working_lab() {
    if synscope_lab::skip_unless_root("demo_keep_interrupted_once_built_keeps_a_working_lab") {
        return;
    }
    let _guard = RemoveKept::new();
    // Ctrl-C reaches the demo's NSD too: the keeper runs its own
    let (pid, rest, err, code) = demo_ctrl_c(&["--keep"]);
    let prefix = format!("synscope-{pid}-");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the lab stays up"), "{err}");
    assert!(rest.iter().any(|l| l.contains("demo --remove")), "{rest:?}");
    let client = format!("{prefix}0-cli");
    let dns = Command::new("ip")
        .args(["netns", "exec", &client, BIN])
        .args([
            "dns",
            "a.lab.test",
            "@198.18.0.2",
            "--expect",
            "198.18.0.10",
        ])
        .output()
        .unwrap();
    assert!(
        dns.status.success(),
        "{}",
        String::from_utf8_lossy(&dns.stderr)
    );
    let rm = Command::new(BIN)
        .args(["demo", "--remove"])
        .output()
        .unwrap();
    assert_eq!(rm.status.code(), Some(0));
    assert!(namespaces_of(&prefix).is_empty(), "left behind");
    assert!(!nsd_runs(&prefix), "NSD left running");
}

/// Runs `synscope demo --remove` when dropped: a failing test leaves no lab.
/// It holds [`KEPT`]: `--remove` removes every kept lab, so the tests that
/// keep one run one at a time.
struct RemoveKept(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

static KEPT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl RemoveKept {
    fn new() -> RemoveKept {
        RemoveKept(KEPT.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for RemoveKept {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["demo", "--remove"]).output();
    }
}

#[test]
fn demo_keep_leaves_a_working_lab_until_remove() {
    if synscope_lab::skip_unless_root("demo_keep_leaves_a_working_lab_until_remove") {
        return;
    }
    let _guard = RemoveKept::new();
    let child = Command::new(BIN)
        .args(["demo", "-c", "1", "--keep"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("synscope-{}-", child.id());
    // the keeper must not hold the demo's output open: this returns
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
    assert!(err.contains("the lab stays up"), "{err}");
    let client = format!("{prefix}0-cli");
    for want in [
        format!("ip netns exec {client} {BIN} ping 198.18.0.2:80"),
        format!("{BIN} demo --remove"),
        "21, 8443".to_string(),
        "DNS (NSD)".to_string(),
    ] {
        assert!(text.contains(&want), "missing '{want}' in:\n{text}");
    }
    // the demo process is gone; its lab answers as before
    assert_eq!(namespaces_of(&prefix).len(), 2, "{:?}", lab_namespaces());
    let in_lab = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &client, BIN])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["ping", "198.18.0.2:80", "-c", "1", "--expect", "open"][..],
        &["ping", "[2001:db8::2]:22", "-c", "1", "--expect", "open"],
        &["ping", "198.18.0.2:111", "-c", "1", "--expect", "filtered"],
        &[
            "dns",
            "a.lab.test",
            "@198.18.0.2",
            "--expect",
            "198.18.0.10",
        ],
    ] {
        let o = in_lab(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // the kept server answers and closes: a whole trace, twice (no backlog)
    for _ in 0..2 {
        let o = in_lab(&[
            "trace",
            "198.18.0.2:80",
            "--send",
            "x\\n",
            "--time-wait",
            "50ms",
        ]);
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("result: complete"), "{t}");
    }
    let rm = Command::new(BIN)
        .args(["demo", "--remove"])
        .output()
        .unwrap();
    let rm_err = String::from_utf8_lossy(&rm.stderr);
    assert_eq!(rm.status.code(), Some(0), "{rm_err}");
    assert!(
        rm_err.contains(&format!("removed the kept lab ({client}")),
        "{rm_err}"
    );
    assert!(namespaces_of(&prefix).is_empty(), "left behind");
    assert!(!nsd_runs(&prefix), "NSD left running");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let keeper = format!("--hold /run/synscope/kept-demo-{prefix}");
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&keeper),
        "keeper still runs"
    );
    // nothing left to remove
    let again = Command::new(BIN)
        .args(["demo", "--remove"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("no kept lab"));
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
