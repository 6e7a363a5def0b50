//! While a scan and a trace run, an unrelated TCP connection on the same host
//! keeps working; and a scan stopped by SIGTERM prints what it has and ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};
use synscope_lab::{Lab, LabSpec, SERVER_V4, spawn_in_netns};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_synscope");

#[test]
fn an_unrelated_connection_keeps_working_during_scan_and_trace() {
    if synscope_lab::skip_unless_root("an_unrelated_connection_keeps_working_during_scan_and_trace")
    {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let echo_addr = SocketAddr::new(SERVER_V4.into(), 9000);
    // an echo server, bounded in time
    let server = spawn_in_netns(&lab.server_ns, move || {
        let l = TcpListener::bind(echo_addr).unwrap();
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || c.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // the client talks every 10 ms for 3 s, counting round trips and failures
    let client = spawn_in_netns(&lab.client_ns, move || {
        let mut s = TcpStream::connect(echo_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (mut ok, mut failed) = (0u32, Vec::new());
        let end = Instant::now() + Duration::from_secs(3);
        let mut i = 0u32;
        while Instant::now() < end {
            let msg = format!("ping {i}\n");
            let mut back = vec![0u8; msg.len()];
            match s
                .write_all(msg.as_bytes())
                .and_then(|_| s.read_exact(&mut back))
            {
                Ok(()) if back == msg.as_bytes() => ok += 1,
                other => failed.push(format!("{i}: {other:?}")),
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        (ok, failed)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let scan = lab
        .client_command(BIN)
        .args([
            "scan",
            &SERVER_V4.to_string(),
            "-p-",
            "--rate",
            "100000",
            "--timeout",
            "300ms",
            "--ndjson",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let trace = lab
        .client_command(BIN)
        .args([
            "trace",
            &format!("{SERVER_V4}:80"),
            "--count",
            "3",
            "--close",
            "rst",
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let scan = scan.wait_with_output().unwrap();
    let (ok, failed) = client.join().unwrap();
    server.join().unwrap();
    assert_eq!(scan.status.code(), Some(0));
    assert_eq!(
        trace.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&trace.stdout)
    );
    // the scan saw the echo server's port open too, and never disturbed it
    let port_9000: Vec<serde_json::Value> = String::from_utf8_lossy(&scan.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["port"] == 9000)
        .collect();
    assert_eq!(port_9000.len(), 1);
    assert_eq!(port_9000[0]["verdict"], "open");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 100, "{ok} round trips");
}

#[test]
fn sigterm_stops_a_scan_with_the_results_so_far() {
    if synscope_lab::skip_unless_root("sigterm_stops_a_scan_with_the_results_so_far") {
        return;
    }
    let lab = Lab::up(&LabSpec::standard()).unwrap();
    let child = lab
        .client_command(BIN)
        .args([
            "scan",
            &SERVER_V4.to_string(),
            "-p-",
            "--rate",
            "2000",
            "--ndjson",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    common::signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    common::assert_status(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = common::schema::check_lines("scan", &text);
    let summary = lines.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["interrupted"], true);
    assert!(summary["sent"].as_u64().unwrap() < 65535);
}
