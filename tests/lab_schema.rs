//! Every command's real `--json` and `--ndjson` output, run in a namespace
//! lab, validates against the published JSON Schema (docs/schema/). Needs
//! root, `ip`, `nft`, `nsd` (scripts/setup.sh installs them); each test
//! builds and removes its own lab.

use std::io::Write;
use std::process::{Output, Stdio};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec, SERVER_V4, SERVER_V6};

mod common;

fn run(lab: &Lab, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `args` with `--json` and with `--ndjson` and checks both outputs
/// against the command's schema.
fn both(lab: &Lab, command: &str, args: &[&str], input: Option<&[u8]>) {
    for flag in ["--json", "--ndjson"] {
        let mut a = args.to_vec();
        a.push(flag);
        let out = run(lab, &a, input);
        let text = String::from_utf8_lossy(&out.stdout);
        if let Ok(dir) = std::env::var("SYNSCOPE_SCHEMA_DUMP") {
            let name = a.join("_").replace(['/', ':', '[', ']', '@'], "-");
            std::fs::write(format!("{dir}/{name}"), text.as_bytes()).unwrap();
        }
        assert!(
            !text.trim().is_empty(),
            "{a:?}: no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if flag == "--json" {
            common::schema::check_document(command, &text);
        } else {
            let lines = common::schema::check_lines(command, &text);
            // trace and path: their items as they end, then one summary
            let item = match command {
                "trace" => Some("trace"),
                "path" => Some("hop"),
                _ => None,
            };
            if let Some(item) = item {
                let (last, items) = lines.split_last().unwrap();
                assert_eq!(last["kind"], "summary", "{a:?}: {text}");
                assert!(!items.is_empty(), "{a:?}: {text}");
                assert!(items.iter().all(|l| l["kind"] == item), "{a:?}: {text}");
            }
        }
    }
}

#[test]
fn ping_scan_and_trace_output_match_the_schema() {
    if synscope_lab::skip_unless_root("ping_scan_and_trace_output_match_the_schema") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).expect("lab up (needs root, iproute2, nftables)");
    for server in [SERVER_V4.to_string(), format!("[{SERVER_V6}]")] {
        for port in [80, 81, 21, 111] {
            let t = format!("{server}:{port}");
            both(
                &lab,
                "ping",
                &["ping", &t, "-c", "2", "-i", "20ms", "-W", "200ms"],
                None,
            );
        }
        let t = format!("{server}:80");
        both(
            &lab,
            "ping",
            &["ping", &t, "-c", "1", "-W", "200ms", "--verify"],
            None,
        );
        let host = server.trim_matches(['[', ']']);
        both(
            &lab,
            "scan",
            &[
                "scan",
                host,
                "-p",
                "20-25,79-81,110-114,443",
                "--wait",
                "200ms",
            ],
            None,
        );
        both(
            &lab,
            "trace",
            &[
                "trace",
                &t,
                "-c",
                "2",
                "--idle",
                "50ms",
                "--time-wait",
                "100ms",
            ],
            None,
        );
        both(
            &lab,
            "trace",
            &["trace", &t, "--half-open", "--max-wait", "300ms"],
            None,
        );
    }
    // an empty scan: the document with no results
    let v4 = SERVER_V4.to_string();
    both(
        &lab,
        "scan",
        &[
            "scan",
            &v4,
            "-p",
            "80",
            "--open",
            "--wait",
            "100ms",
            "--retries",
            "0",
        ],
        None,
    );
}

#[test]
fn dns_output_matches_the_schema() {
    if synscope_lab::skip_unless_root("dns_output_matches_the_schema") {
        return;
    }
    let lab = Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)");
    let _dns = LabDns::start(&lab).expect("nsd in the lab (apt-get install nsd)");
    both(&lab, "dns", &["dns", "b.lab.test", "@198.18.0.2"], None);
    both(
        &lab,
        "dns",
        &[
            "dns",
            "lab.test",
            "MX",
            "@198.18.0.2",
            "@[2001:db8::2]",
            "--expect-rcode",
            "NXDOMAIN",
        ],
        None,
    );
    both(
        &lab,
        "dns",
        &["dns", "b.lab.test", "@198.18.0.2:5353", "--retries", "0"],
        None,
    );
    let input = b"a.lab.test\nwww.lab.test\nb.lab.test\nnx.lab.test\nbad..name\n";
    both(
        &lab,
        "dns-bulk",
        &["dns", "--file", "-", "@198.18.0.2"],
        Some(input),
    );
    both(
        &lab,
        "dns-bulk",
        &[
            "dns",
            "--file",
            "-",
            "@198.18.0.2",
            "@[2001:db8::2]",
            "--expect",
            "198.18.0.10",
        ],
        Some(input),
    );
}

#[test]
fn path_output_matches_the_schema() {
    if synscope_lab::skip_unless_root("path_output_matches_the_schema") {
        return;
    }
    use synscope_lab::routed::{self, RoutedSpec};
    let lab = Lab::up_routed(&RoutedSpec::standard())
        .expect("routed lab up (needs root, iproute2, nftables)");
    for port in [80, 81] {
        let t = format!("{}:{port}", routed::server_v4(3));
        both(&lab, "path", &["path", &t, "-c", "2"], None);
        let t = format!("[{}]:{port}", routed::server_v6(3));
        both(&lab, "path", &["path", &t, "-c", "1", "--ecn"], None);
    }
}
