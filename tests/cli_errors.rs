//! Bad command lines: one clear line on stderr and exit status 2, no panic.
//! These need no privileges and no network (they fail before any packet).

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (arguments, a piece of the one line that must explain it)
const CASES: &[(&[&str], &str)] = &[
    // ping
    (&["ping", "198.18.0.2:0"], "bad port '0'"),
    (&["ping", "198.18.0.2:99999"], "bad port '99999'"),
    (&["ping", "198.18.0.2:80", "-p", "81"], "port given twice"),
    (
        &["ping", "no-such-host.invalid"],
        "cannot resolve host 'no-such-host.invalid'",
    ),
    (&["ping", "198.18.0.2", "-6"], "has no IPv6 address"),
    (
        &["ping", "198.18.0.2", "-c", "0"],
        "--count must be at least 1",
    ),
    (&["ping", "[2001:db8::2"], "missing ']'"),
    (&["ping", "h", "-i", "fast"], "bad duration 'fast'"),
    (&["ping", "h", "-W", "0s"], "must be more than zero"),
    (&["ping", "h", "--ttl", "0"], "--ttl"),
    (&["ping", "h", "--json", "--ndjson"], "cannot be used with"),
    (&["ping", "h", "-4", "-6"], "cannot be used with"),
    (&["ping", "h", "--expect", "maybe"], "invalid value 'maybe'"),
    // scan
    (&["scan", "198.18.0.2"], "give ports with -p"),
    (&["scan", "-p", "80"], "no targets"),
    (&["scan", "198.18.0.2", "-p", "0"], "bad port '0'"),
    (
        &["scan", "198.18.0.2", "-p", "10-5"],
        "range end is below its start",
    ),
    (&["scan", "198.18.0.2", "-p", "80,,81"], "empty item"),
    (&["scan", "2001:db8::/64", "-p", "80"], "at most 16777216"),
    (&["scan", "::/0", "-p", "80"], "2^128 addresses, too many"),
    (&["scan", "-", "-p", "80"], "no targets"),
    (
        &[
            "scan",
            "198.18.0.1",
            "-p",
            "80",
            "--wait",
            "18446744073709551615s",
        ],
        "at most 24h",
    ),
    (
        &["ping", "h", "-i", "18446744073709551615s"],
        "bad duration '18446744073709551615s': at most 24h",
    ),
    (&["ping", "h", "-W", "25h"], "at most 24h"),
    (
        &[
            "trace",
            "198.18.0.2:80",
            "--time-wait",
            "18446744073709551615s",
        ],
        "at most 24h",
    ),
    (
        &["trace", "198.18.0.2:80", "--max-wait", "1000y"],
        "at most 24h",
    ),
    (
        &[
            "dns",
            "a.lab.test",
            "@198.18.0.2",
            "--max-time",
            "18446744073709551615s",
        ],
        "at most 24h",
    ),
    (
        &["scan", "198.18.0.0/33", "-p", "80"],
        "prefix length must be 0-32",
    ),
    (
        &["scan", "198.18.0.9-198.18.0.1", "-p", "80"],
        "range end is below its start",
    ),
    (
        &[
            "scan",
            "198.18.0.1",
            "--exclude",
            "198.18.0.0/24",
            "-p",
            "80",
        ],
        "every target is excluded",
    ),
    (
        &["scan", "no-such-host.invalid", "-p", "80"],
        "cannot resolve host",
    ),
    (
        &["scan", "--targets-file", "/nonexistent/targets", "-p", "80"],
        "read targets file '/nonexistent/targets'",
    ),
    (
        &["scan", "198.18.0.1", "-p", "80", "--shard", "4/4"],
        "bad shard '4/4'",
    ),
    (
        &["scan", "198.18.0.1", "-p", "80", "--top-ports", "0"],
        "--top-ports takes",
    ),
    (&["scan", "198.18.0.1", "-p", "80", "--rate", "0"], "--rate"),
    (
        &["scan", "198.18.0.1", "-p", "80", "--wait", "soon"],
        "bad duration 'soon'",
    ),
    // dns
    (&["dns", "a.lab.test", "@999.1.1.1"], "999.1.1.1"),
    (
        &["dns", "a.lab.test", "@198.18.0.2", "-W", "never"],
        "bad duration 'never'",
    ),
    (
        &["dns", "--file", "/nonexistent/names", "@198.18.0.2"],
        "/nonexistent/names",
    ),
    (
        &["dns", "a.lab.test", "@198.18.0.2", "--spread"],
        "--spread applies to bulk mode",
    ),
    (
        &[
            "dns",
            "a.lab.test",
            "@198.18.0.2",
            "--expect-rcode",
            "BOGUS",
        ],
        "BOGUS",
    ),
    // trace
    (&["trace", "198.18.0.2:0"], "bad port '0'"),
    (
        &["trace", "198.18.0.2:80", "--send", "x", "--send-file", "f"],
        "cannot be used with",
    ),
    (
        &[
            "trace",
            "198.18.0.2:80",
            "--send-file",
            "/nonexistent/request",
        ],
        "/nonexistent/request",
    ),
    (&["nosuchcommand"], "unrecognized subcommand"),
    // exporter (its config errors: tests/lab_exporter.rs)
    (&["exporter"], "--config <FILE>"),
    (
        &["exporter", "-c", "x.toml", "--listen", "localhost"],
        "invalid value 'localhost'",
    ),
];

#[test]
fn every_bad_command_line_gets_one_line_and_status_2() {
    for (args, want) in CASES {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("synscope: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(run(&["--help"]).0, Some(0));
    assert_eq!(run(&["--version"]).0, Some(0));
    assert_eq!(run(&["ping", "--help"]).0, Some(0));
}
