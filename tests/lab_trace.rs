//! `synscope trace` against the Linux kernel's TCP in a namespace lab: each
//! teardown variant, stage times checked against a tcpdump capture, server
//! states checked with `ss -tan`, and the nftables RST filter: scoped to the
//! flow, gone after SIGINT and SIGKILL. Needs root, `ip`, `nft`, `tcpdump`, `ss`.

use serde_json::Value;
use std::process::Command;
use synscope::io::nft::RstFilter;
use synscope::lab::{Lab, LabSpec, in_netns};

fn lab() -> Lab {
    Lab::up(&LabSpec::default()).expect("lab up (needs root, iproute2, nftables)")
}

/// `nft list ruleset` inside a namespace.
fn ruleset(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rst_filter_table_lives_exactly_as_long_as_its_socket() {
    let lab = lab();
    let ns = lab.client_ns.clone();
    let (filter, listing) = in_netns(&ns.clone(), move || {
        let f = RstFilter::install(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
        )
        .unwrap();
        let l = ruleset(&ns);
        (f, l)
    })
    .unwrap();
    assert!(listing.contains(&filter.table), "{listing}");
    assert!(listing.contains("flags owner"), "{listing}");
    assert!(
        listing.contains("ip saddr 198.18.0.1 ip daddr 198.18.0.2 tcp sport 40000 tcp dport 80"),
        "{listing}"
    );
    assert!(listing.contains("drop"), "{listing}");
    drop(filter);
    let after = ruleset(&lab.client_ns);
    assert!(!after.contains("synscope_"), "{after}");
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a lab server treats each connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Sends a banner and closes at once (it closes first).
    BannerClose,
    /// Reads until our FIN, waits this many ms (in CLOSE_WAIT), then closes.
    WaitForFin(u64),
    /// Reads the request, answers, then waits for our FIN.
    Echo,
    /// Closes with SO_LINGER 0: an RST instead of a FIN.
    Reset,
}

/// A kernel TCP server in the server namespace; stopped (and joined) on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(lab: &Lab, port: u16, b: Behaviour) -> Server {
        let listener = in_netns(&lab.server_ns, move || {
            TcpListener::bind(("::", port)).unwrap()
        })
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((c, _)) => handle(c, b),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

fn handle(mut c: TcpStream, b: Behaviour) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    match b {
        Behaviour::BannerClose => {
            let _ = c.write_all(b"SSH-2.0-synscope-lab\r\n");
        }
        Behaviour::WaitForFin(ms) => {
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            std::thread::sleep(Duration::from_millis(ms));
        }
        Behaviour::Echo => {
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
        Behaviour::Reset => {
            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn trace(lab: &Lab, args: &[&str]) -> Output {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `ss -tan` lines in the server namespace about one client port.
fn ss_server(lab: &Lab, client_port: u16) -> Vec<String> {
    let out = lab.server_command("ss").args(["-tan"]).output().unwrap();
    let needle = format!(":{client_port}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|p| p.ends_with(&needle))
        })
        .map(str::to_string)
        .collect()
}

fn states_of(run: &Value, side: &str) -> Vec<String> {
    run["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["side"] == side)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

fn stage_ns(run: &Value, name: &str) -> Option<u64> {
    run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["ns"].as_u64())
}

/// Spawns a trace with `--json`; the child is the synscope process itself
/// (`ip netns exec` execs it).
fn spawn_trace(lab: &Lab, args: &[&str]) -> std::process::Child {
    lab.client_command(env!("CARGO_BIN_EXE_synscope"))
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) for `cond`, polling.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn we_close_first_four_segments_server_close_wait_seen_by_ss() {
    let lab = lab();
    let _srv = Server::start(&lab, 7001, Behaviour::WaitForFin(600));
    let child = spawn_trace(
        &lab,
        &[
            "198.18.0.2:7001",
            "--json",
            "--idle",
            "100ms",
            "--time-wait",
            "300ms",
        ],
    );
    // after our FIN (~100 ms) the server sits in CLOSE_WAIT for 600 ms
    let mut seen = Vec::new();
    wait_for("CLOSE-WAIT on the server", 5, || {
        let out = lab
            .server_command("ss")
            .args(["-tan", "state", "close-wait"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let hit = text.contains("198.18.0.2]:7001") || text.contains("198.18.0.2:7001");
        if hit {
            seen.push(text);
        }
        hit
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&out);
    let run = &doc["traces"][0];
    assert_eq!(run["teardown"], "we-closed-first", "{run}");
    assert_eq!(
        states_of(run, "client"),
        [
            "SYN_SENT",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "FIN_WAIT_2",
            "TIME_WAIT",
            "CLOSED"
        ]
    );
    assert_eq!(
        states_of(run, "server"),
        [
            "SYN_RECV",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSED"
        ]
    );
    let flags: Vec<&str> = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flags"].as_str().unwrap())
        .collect();
    assert_eq!(flags, ["S", "S.", ".", "F.", ".", "F.", "."]);
    // the server waited 600 ms in CLOSE_WAIT before its FIN
    let fin_to_fin = stage_ns(run, "FIN → peer FIN").unwrap();
    assert!(
        (600_000_000..900_000_000).contains(&fin_to_fin),
        "{fin_to_fin}"
    );
    assert!(stage_ns(run, "FIN → ACK").unwrap() < 50_000_000);
    let tw = stage_ns(run, "TIME_WAIT held").unwrap();
    assert!((300_000_000..400_000_000).contains(&tw), "{tw}");
    // the server's socket is gone (it was LAST_ACK until our last ACK)
    let port = run["source"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ss_server(&lab, port).is_empty(),
        "{:?}",
        ss_server(&lab, port)
    );
}

#[test]
fn peer_closes_first_banner_server_in_time_wait() {
    let lab = lab();
    let _srv = Server::start(&lab, 7002, Behaviour::BannerClose);
    let out = trace(&lab, &["198.18.0.2:7002", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&out);
    let run = &doc["traces"][0];
    assert_eq!(run["teardown"], "peer-closed-first", "{run}");
    assert_eq!(run["received_bytes"], 22);
    assert_eq!(
        states_of(run, "client"),
        [
            "SYN_SENT",
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSED"
        ]
    );
    assert_eq!(
        states_of(run, "server"),
        [
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "FIN_WAIT_2",
            "TIME_WAIT"
        ]
    );
    assert!(
        stage_ns(run, "ACK → first byte (server spoke first)").is_some(),
        "{run}"
    );
    // the server side holds TIME_WAIT (Linux: 60 s), as the trace says
    let port: u16 = run["source"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lines = ss_server(&lab, port);
    assert!(
        lines.len() == 1 && lines[0].starts_with("TIME-WAIT"),
        "{lines:?}"
    );
}

#[test]
fn server_resets_instead_of_closing() {
    let lab = lab();
    let _srv = Server::start(&lab, 7004, Behaviour::Reset);
    let out = trace(&lab, &["198.18.0.2:7004", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "reset-by-peer", "{run}");
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["dir"], "received");
    assert!(last["flags"].as_str().unwrap().contains('R'), "{last}");
}

#[test]
fn request_response_then_abort_with_rst() {
    let lab = lab();
    let _srv = Server::start(&lab, 7003, Behaviour::Echo);
    let out = trace(
        &lab,
        &[
            "198.18.0.2:7003",
            "--send",
            "hello\\r\\n",
            "--close",
            "rst",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = &json_of(&out)["traces"][0];
    assert_eq!(run["teardown"], "aborted-by-us", "{run}");
    assert_eq!(run["received_bytes"], 7);
    assert!(stage_ns(run, "request → first byte").is_some(), "{run}");
    let last = run["segments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["dir"].as_str(), last["flags"].as_str()),
        (Some("sent"), Some("R."))
    );
    // our RST+ACK passed the RST filter: nothing is left on the server
    let port: u16 = run["source"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ss_server(&lab, port).is_empty(),
        "{:?}",
        ss_server(&lab, port)
    );
}
