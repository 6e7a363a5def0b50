//! `synscope demo` end to end (root), and what an unprivileged user is told.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

#[test]
fn demo_runs_every_case_and_cleans_up() {
    let before = lab_namespaces();
    let child = Command::new(BIN)
        .args(["demo", "-c", "1"])
        .output()
        .unwrap();
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
    // every namespace the demo made is gone (other test binaries run one at a time)
    let after = lab_namespaces();
    assert!(
        after.is_subset(&before),
        "left behind: {:?}",
        after.difference(&before)
    );
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
