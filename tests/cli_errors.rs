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
            "-W",
            "18446744073709551615s",
        ],
        "at most 24h",
    ),
    (
        &["scan", "198.18.0.1", "-p", "80", "--timeout", "90000"],
        "bad duration '90000': at most 24h",
    ),
    // the old spelling of --timeout is still read (hidden alias)
    (
        &["scan", "198.18.0.1", "-p", "80", "--wait", "0"],
        "must be more than zero",
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
        &["trace", "198.18.0.2:80", "--timeout", "1000y"],
        "at most 24h",
    ),
    (
        &["trace", "198.18.0.2:80", "--timeout", "1000y"],
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
        &["scan", "--file", "/nonexistent/targets", "-p", "80"],
        "read targets file '/nonexistent/targets'",
    ),
    (
        &["scan", "--targets-file", "/nonexistent/targets", "-p", "80"],
        "read targets file '/nonexistent/targets'",
    ),
    (
        &["scan", "198.18.0.1", "-p", "80", "--source-port", "0"],
        "--source-port",
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
        &["scan", "198.18.0.1", "-p", "80", "--rate", "fast"],
        "'fast' is not a rate: give auto or probes per second",
    ),
    (
        &[
            "scan",
            "198.18.0.1",
            "-p",
            "80",
            "--min-rate",
            "5000",
            "--max-rate",
            "1000",
        ],
        "--min-rate 5000 is above --max-rate 1000",
    ),
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
    (&["ping", "h", "-q", "-v"], "cannot be used with"),
    (&["completions", "tcsh"], "invalid value 'tcsh'"),
    (&["completions"], "<SHELL>"),
    // exporter (its config errors: tests/lab_exporter.rs)
    (&["exporter"], "--config <FILE>"),
    (
        &["exporter", "--config", "x.toml", "--listen", "localhost"],
        "invalid value 'localhost'",
    ),
];

/// Cases of [`CASES`] that fail while running, not while reading arguments.
const RUN_ERRORS: &[&[&str]] = &[&["dns", "--file", "/nonexistent/names", "@198.18.0.2"]];

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
        // the line ends with where to read more: the subcommand's own help
        // (not after an error of the run itself, such as an input file that
        // cannot be opened)
        if RUN_ERRORS.iter().any(|r| r == args) {
            continue;
        }
        let help = match args[0] {
            "nosuchcommand" => "synscope --help".to_string(),
            cmd => format!("synscope {cmd} --help"),
        };
        assert!(
            err.trim_end().ends_with(&format!("(see {help})")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn errors_after_global_flags_still_name_the_subcommand() {
    let (code, err) = run(&["-v", "scan", "198.18.0.1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("give ports with -p") && err.contains("(see synscope scan --help)"));
    let (code, err) = run(&["--quiet", "dns", "a.test", "-W", "soon"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("(see synscope dns --help)"), "{err}");
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(run(&["--help"]).0, Some(0));
    assert_eq!(run(&["--version"]).0, Some(0));
    assert_eq!(run(&["ping", "--help"]).0, Some(0));
    for cmd in [
        "ping",
        "scan",
        "trace",
        "dns",
        "path",
        "exporter",
        "demo",
        "completions",
    ] {
        for flag in ["-V", "--version"] {
            let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
                .args([cmd, flag])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{cmd} {flag}");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(env!("CARGO_PKG_VERSION")),
                "{cmd} {flag}: {text}"
            );
        }
    }
}

#[test]
fn a_closed_pipe_ends_completions_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_synscope"))
        .args(["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the script is written
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// The completion scripts parse in their shells (bash always; zsh and fish
/// when installed, each says when it is not).
#[test]
fn completion_scripts_parse() {
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(out.stdout.len() > 1000, "{shell}: a short script");
        let path = std::env::temp_dir().join(format!(
            "synscope-completion-{}.{shell}",
            std::process::id()
        ));
        std::fs::write(&path, &out.stdout).unwrap();
        let parsed = Command::new(shell).arg(check).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        match parsed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && shell != "bash" => {
                eprintln!("{shell} is not installed: its completion script is not parsed");
            }
            Err(e) => panic!("run {shell}: {e}"),
            Ok(o) => assert!(
                o.status.success(),
                "{shell} {check}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
}

/// bash completes a subcommand's flag from the generated script.
#[test]
fn bash_completes_a_flag_of_a_subcommand() {
    let script = Command::new(env!("CARGO_BIN_EXE_synscope"))
        .args(["completions", "bash"])
        .output()
        .unwrap()
        .stdout;
    let path = std::env::temp_dir().join(format!("synscope-complete-{}.bash", std::process::id()));
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(synscope scan --ti); COMP_CWORD=2; \
             _synscope synscope --ti scan; echo \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "--timeout");
}
