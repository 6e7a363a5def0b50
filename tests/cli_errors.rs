//! Bad command lines: one clear line on stderr and exit status 2, no panic.
//! These need no privileges and no network.

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

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
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
    ];
    for (args, want) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("synscope: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn clap_errors_exit_2() {
    for args in [
        &["ping", "h", "-i", "fast"][..],
        &["ping", "h", "--ttl", "0"],
        &["ping", "h", "--json", "--ndjson"],
        &["ping", "h", "-4", "-6"],
        &["ping", "h", "--expect", "maybe"],
        &["nosuchcommand"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}");
    }
    assert_eq!(run(&["--help"]).0, Some(0));
}
