//! `synscope exporter` in the namespace lab, scraped by a real Prometheus
//! (Debian package `prometheus`) running in the client namespace: the SYN
//! stage's histogram_quantile against a tcpdump capture of the same packets,
//! the loss counter of a dropped port, the blackbox-style /probe job, DNS
//! checks against NSD; `promtool check metrics` on both pages; config errors;
//! a target whose link goes down; SIGHUP and SIGTERM. Needs root, iproute2,
//! nftables, tcpdump, nsd and prometheus (scripts/setup.sh installs them).
//! Every process a test starts is killed by a Drop guard, also on failure.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use synscope_lab::dns::LabDns;
use synscope_lab::{Lab, LabSpec, in_netns};

const LISTEN: &str = "127.0.0.1:9799";
const PROMETHEUS: &str = "127.0.0.1:9090";

/// A child process killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("synscope-exporter-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lab() -> Lab {
    Lab::up(&LabSpec::standard()).expect("lab up (needs root, iproute2, nftables)")
}

/// GET `path` from `addr` inside the client namespace: (status, body).
fn get(lab: &Lab, addr: &str, path: &str) -> Option<(u16, String)> {
    let (addr, path) = (addr.parse().unwrap(), path.to_string());
    in_netns(&lab.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut r = Vec::new();
        s.read_to_end(&mut r).ok()?;
        let text = String::from_utf8_lossy(&r).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    })
    .unwrap()
}

/// The value of one series (`name{labels}` exactly as exposed) in a text page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn metrics(lab: &Lab) -> String {
    match get(lab, LISTEN, "/metrics") {
        Some((200, body)) => body,
        other => panic!("/metrics: {other:?}"),
    }
}

/// Polls `f` every 200 ms for up to `limit`; its last value.
fn until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the exporter in the client namespace, stderr to `dir/exporter.err`,
/// and waits until /metrics answers.
fn exporter(lab: &Lab, dir: &Path, config: &str) -> Guard {
    let cfg = dir.join("probes.toml");
    std::fs::write(&cfg, config).unwrap();
    let err = std::fs::File::create(dir.join("exporter.err")).unwrap();
    let child = lab
        .client_command(env!("CARGO_BIN_EXE_synscope"))
        .args(["exporter", "--listen", LISTEN, "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let g = Guard(child);
    let up = until(Duration::from_secs(15), || {
        get(lab, LISTEN, "/metrics").filter(|(s, _)| *s == 200)
    });
    assert!(up.is_some(), "exporter not up: {}", stderr_of(dir));
    g
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("exporter.err")).unwrap_or_default()
}

fn syn_probe(name: &str, port: u16, interval: &str, timeout: &str) -> String {
    format!(
        "[[probe]]\nname = \"{name}\"\nkind = \"syn\"\ntarget = \"198.18.0.2:{port}\"\n\
         interval = \"{interval}\"\ntimeout = \"{timeout}\"\n\n"
    )
}

/// `%XX` for everything but unreserved characters (a PromQL query in a URL).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query to Prometheus: the values of the result vector.
fn query(lab: &Lab, q: &str) -> Vec<f64> {
    let Some((200, body)) = get(
        lab,
        PROMETHEUS,
        &format!("/api/v1/query?query={}", url_encode(q)),
    ) else {
        return Vec::new();
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    doc["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["value"][1].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn one(lab: &Lab, q: &str) -> Option<f64> {
    let v = query(lab, q);
    (v.len() == 1 && v[0].is_finite()).then(|| v[0])
}

/// SYN → SYN-ACK times (seconds) of the client's SYNs in a capture.
fn syn_synack_truth(packets: &[(u64, Vec<u8>)]) -> Vec<f64> {
    let mut syn_at = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (ts, d) in packets {
        if d.len() < 20 || d[0] >> 4 != 4 {
            continue;
        }
        let ihl = usize::from(d[0] & 0xf) * 4;
        let Some(t) = d.get(ihl..ihl + 14) else {
            continue;
        };
        let (sport, dport) = (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        );
        match t[13] & 0x17 {
            0x02 if d[12..16] == [198, 18, 0, 1] => {
                syn_at.insert(sport, *ts);
            }
            0x12 => {
                if let Some(s) = syn_at.remove(&dport) {
                    out.push((ts - s) as f64 / 1e9);
                }
            }
            _ => {}
        }
    }
    out
}

/// A tiny HTTP server at 198.18.0.2:8080 in the server namespace: answers
/// each request and closes (the lab's own listeners never accept). Stops
/// when dropped.
struct HttpServer(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl HttpServer {
    fn start(lab: &Lab) -> HttpServer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        synscope_lab::spawn_in_netns(&lab.server_ns, move || {
            let l = std::net::TcpListener::bind("198.18.0.2:8080").unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let end = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        if c.read(&mut buf).is_ok_and(|n| n > 0) {
                            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
        .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        HttpServer(stop)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn prometheus(lab: &Lab, dir: &Path) -> Guard {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: synscope
    static_configs:
      - targets: ['{LISTEN}']
  # blackbox_exporter's relabelling, unchanged
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [open]
    static_configs:
      - targets: ['198.18.0.2:443']
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {LISTEN}
"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.err")).unwrap();
    let child = lab
        .client_command("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run prometheus (Debian package prometheus)");
    let g = Guard(child);
    let ready = until(Duration::from_secs(30), || {
        get(lab, PROMETHEUS, "/-/ready").filter(|(s, _)| *s == 200)
    });
    assert!(
        ready.is_some(),
        "prometheus not ready: {}",
        std::fs::read_to_string(dir.join("prometheus.err")).unwrap_or_default()
    );
    g
}

#[test]
fn prometheus_scrapes_stage_histograms_losses_and_blackbox_probes() {
    if synscope_lab::skip_unless_root(
        "prometheus_scrapes_stage_histograms_losses_and_blackbox_probes",
    ) {
        return;
    }
    let lab = lab();
    let nsd = LabDns::start(&lab).expect("nsd up");
    let dir = TempDir::new("prom");
    let http = HttpServer::start(&lab);
    let truth = common::Tcpdump::start(&lab, "exporter-prom", "tcp port 80");
    let config = format!(
        "{}{}{}{}{}{}",
        syn_probe("open", 80, "200ms", "190ms"),
        syn_probe("dropped", 21, "200ms", "190ms"),
        syn_probe("admin", 111, "200ms", "190ms"),
        "[[probe]]\nname = \"web\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:8080\"\n\
         interval = \"1s\"\ntimeout = \"900ms\"\nrequest = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n\n",
        "[[probe]]\nname = \"ns\"\nkind = \"dns\"\ntarget = \"198.18.0.2\"\ninterval = \"1s\"\n\
         timeout = \"900ms\"\nquery = \"a.lab.test\"\nexpect = [\"198.18.0.10\"]\nexpect_rcode = \"NOERROR\"\n\n",
        "[[probe]]\nname = \"ns-wrong\"\nkind = \"dns\"\ntarget = \"198.18.0.2\"\ninterval = \"1s\"\n\
         timeout = \"900ms\"\nquery = \"a.lab.test\"\nexpect = [\"198.18.0.99\"]\n\n",
    );
    let exp = exporter(&lab, &dir.0, &config);
    let prom = prometheus(&lab, &dir.0);
    // enough scrapes for every family, and the blackbox job's page
    let enough = until(Duration::from_secs(60), || {
        let n = one(&lab, "sum(synscope_probes_total{probe=\"open\"})")?;
        let b = one(&lab, "probe_success{job=\"blackbox\"}")?;
        let w = one(&lab, "sum(synscope_probes_total{probe=\"web\"})")?;
        (n >= 20.0 && b >= 0.0 && w >= 3.0).then_some(())
    });
    assert!(
        enough.is_some(),
        "no data in Prometheus: {}\n{}",
        stderr_of(&dir.0),
        std::fs::read_to_string(dir.0.join("prometheus.err")).unwrap_or_default()
    );
    let ctx = || format!("exporter: {}", stderr_of(&dir.0));

    // the SYN stage of the open port: the median estimated by Prometheus from
    // the buckets lies within a bucket (factor 2) of the capture's median
    let q50 = one(
        &lab,
        "histogram_quantile(0.5, sum by (le) (synscope_stage_duration_seconds_bucket{probe=\"open\",stage=\"syn_synack\"}))",
    )
    .unwrap_or_else(|| panic!("no quantile; {}", ctx()));
    std::thread::sleep(Duration::from_millis(1500)); // tcpdump's tail
    let mut rtts = syn_synack_truth(&truth.stop());
    rtts.sort_by(f64::total_cmp);
    assert!(
        rtts.len() >= 10,
        "capture: {} SYN/SYN-ACK pairs",
        rtts.len()
    );
    let truth50 = rtts[rtts.len() / 2];
    assert!(
        q50 > truth50 / 2.5 && q50 < truth50 * 2.5,
        "median: Prometheus {q50} s, capture {truth50} s"
    );
    // every probe of the dropped port is a loss, none an answer or a latency
    let lost = one(
        &lab,
        "sum(synscope_losses_total{probe=\"dropped\"}) / sum(synscope_probes_total{probe=\"dropped\"})",
    );
    assert_eq!(lost, Some(1.0), "{}", ctx());
    assert!(query(&lab, "synscope_answers_total{probe=\"dropped\"}").is_empty());
    assert!(
        query(
            &lab,
            "synscope_stage_duration_seconds_count{probe=\"dropped\"}"
        )
        .is_empty()
    );
    assert_eq!(
        one(
            &lab,
            "synscope_last_verdict{probe=\"dropped\",verdict=\"no-answer\"}"
        ),
        Some(1.0)
    );
    // admin-prohibited: answered (ICMP), no loss
    assert!(
        one(
            &lab,
            "sum(synscope_answers_total{probe=\"admin\",verdict=\"filtered\"}) / sum(synscope_probes_total{probe=\"admin\"})"
        )
        .is_some_and(|r| r >= 0.9),
        "{}",
        ctx()
    );
    // answered ports lose nothing (a tenth allowed: a machine stalled past
    // the timeout makes a loss, never a latency)
    for probe in ["admin", "open"] {
        let r = one(
            &lab,
            &format!(
                "sum(synscope_losses_total{{probe=\"{probe}\"}}) / sum(synscope_probes_total{{probe=\"{probe}\"}})"
            ),
        );
        assert!(r.is_some_and(|r| r <= 0.1), "{probe}: loss ratio {r:?}");
    }
    // the whole connection: every stage of trace, each run complete
    for stage in ["syn_synack", "synack_ack", "request_first_byte", "fin_ack"] {
        let n = one(
            &lab,
            &format!("synscope_stage_duration_seconds_count{{probe=\"web\",stage=\"{stage}\"}}"),
        );
        assert!(n.is_some_and(|n| n >= 3.0), "web {stage}: {n:?}; {}", ctx());
    }
    assert_eq!(one(&lab, "synscope_last_success{probe=\"web\"}"), Some(1.0));
    // DNS against NSD: the right expectation passes, the wrong one is counted
    assert_eq!(
        one(&lab, "synscope_last_success{probe=\"ns\"}"),
        Some(1.0),
        "{}",
        ctx()
    );
    assert!(
        one(
            &lab,
            "synscope_stage_duration_seconds_count{probe=\"ns\",stage=\"query_answer\"}"
        )
        .is_some_and(|n| n >= 3.0)
    );
    assert!(
        one(
            &lab,
            "synscope_check_failures_total{probe=\"ns-wrong\",check=\"expect\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{}",
        ctx()
    );
    assert_eq!(
        one(
            &lab,
            "synscope_check_failures_total{probe=\"ns\",check=\"expect\"}"
        ),
        None
    );
    // the blackbox-style job: /probe of module `open` against 198.18.0.2:443
    assert_eq!(
        one(
            &lab,
            "probe_success{job=\"blackbox\",instance=\"198.18.0.2:443\"}"
        ),
        Some(1.0)
    );
    assert!(
        one(
            &lab,
            "synscope_probe_stage_seconds{job=\"blackbox\",stage=\"syn_synack\"}"
        )
        .is_some_and(|s| s > 0.0 && s < 1.0)
    );
    // every query of the example Grafana dashboard is valid PromQL and,
    // for the stages this lab has, returns data
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/grafana-exporter.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$probe", ".*")
                .replace("$__rate_interval", "10s");
            let path = format!("/api/v1/query?query={}", url_encode(&q));
            let (status, body) = get(&lab, PROMETHEUS, &path).unwrap();
            assert_eq!(status, 200, "{q}: {body}");
            let title = panel["title"].as_str().unwrap();
            if title.starts_with("SYN →") || title.starts_with("DNS") || title.starts_with("Loss")
            {
                assert!(!query(&lab, &q).is_empty(), "no data for {title}: {q}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 10);
    drop(prom);
    drop(exp);
    drop(nsd);
    drop(http);
}

#[test]
fn promtool_accepts_metrics_and_probe_pages() {
    if synscope_lab::skip_unless_root("promtool_accepts_metrics_and_probe_pages") {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("promtool");
    let exp = exporter(
        &lab,
        &dir.0,
        &format!(
            "{}{}{}{}",
            syn_probe("open", 80, "100ms", "80ms"),
            syn_probe("dropped", 21, "100ms", "80ms"),
            syn_probe("open6", 80, "100ms", "80ms").replace("198.18.0.2", "[2001:db8::2]"),
            // a handshake to a dropped port: the SYN and its retransmission
            // (after 1 s; the next would be at 3 s) are two losses, and no latency
            "[[probe]]\nname = \"hs21\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:21\"\n\
             interval = \"3s\"\ntimeout = \"2500ms\"\n\n\
             [[probe]]\nname = \"dns-closed\"\nkind = \"dns\"\ntarget = \"198.18.0.2:5\"\n\
             interval = \"1s\"\ntimeout = \"900ms\"\nquery = \"a.lab.test\"\n"
        ),
    );
    let hs = until(Duration::from_secs(15), || {
        let p = metrics(&lab);
        (value(
            &p,
            "synscope_probes_total{probe=\"hs21\",kind=\"handshake\"}",
        )? >= 1.0)
            .then_some(p)
    })
    .expect("a handshake run to a dropped port");
    let runs = value(
        &hs,
        "synscope_probes_total{probe=\"hs21\",kind=\"handshake\"}",
    )
    .unwrap();
    assert_eq!(
        value(&hs, "synscope_losses_total{probe=\"hs21\"}"),
        Some(2.0 * runs),
        "{hs}"
    );
    assert!(
        !hs.contains("stage_duration_seconds_count{probe=\"hs21\""),
        "{hs}"
    );
    assert_eq!(
        value(
            &hs,
            "synscope_last_verdict{probe=\"hs21\",verdict=\"no-answer\"}"
        ),
        Some(1.0)
    );
    // a DNS query to a closed UDP port: refused by ICMP, an answer (filtered), no loss
    let dns = until(Duration::from_secs(10), || {
        let p = metrics(&lab);
        value(
            &p,
            "synscope_answers_total{probe=\"dns-closed\",verdict=\"filtered\"}",
        )?;
        Some(p)
    })
    .expect("an ICMP-refused DNS probe");
    assert_eq!(
        value(&dns, "synscope_losses_total{probe=\"dns-closed\"}"),
        Some(0.0),
        "{dns}"
    );
    assert_eq!(
        value(&dns, "synscope_last_success{probe=\"dns-closed\"}"),
        Some(0.0)
    );
    // every family present
    let page = until(Duration::from_secs(15), || {
        let p = metrics(&lab);
        (value(&p, "synscope_losses_total{probe=\"dropped\"}")? >= 1.0
            && value(
                &p,
                "synscope_answers_total{probe=\"open6\",verdict=\"open\"}",
            )? >= 1.0
            && p.contains("synscope_stage_duration_seconds_bucket"))
        .then_some(p)
    })
    .expect("stage histogram and losses on /metrics");
    let (status, probe) = get(&lab, LISTEN, "/probe?target=198.18.0.2%3A81&module=open").unwrap();
    assert_eq!(status, 200);
    assert_eq!(value(&probe, "probe_success"), Some(0.0), "{probe}");
    assert_eq!(
        value(&probe, "synscope_probe_verdict{verdict=\"closed\"}"),
        Some(1.0)
    );
    let (_, probe6) = get(
        &lab,
        LISTEN,
        "/probe?target=%5B2001%3Adb8%3A%3A2%5D%3A443&module=open",
    )
    .unwrap();
    assert_eq!(value(&probe6, "probe_success"), Some(1.0), "{probe6}");
    assert_eq!(value(&probe6, "probe_ip_protocol"), Some(6.0));
    for (what, text) in [("/metrics", &page), ("/probe", &probe)] {
        let mut c = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool (Debian package prometheus)");
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool on {what}: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // blackbox's errors: a missing target or an unknown module is a 400
    assert_eq!(get(&lab, LISTEN, "/probe?module=open").unwrap().0, 400);
    assert_eq!(
        get(&lab, LISTEN, "/probe?target=198.18.0.2:80&module=nope")
            .unwrap()
            .0,
        400
    );
    assert_eq!(get(&lab, LISTEN, "/nothing").unwrap().0, 404);
    let own = metrics(&lab);
    assert_eq!(
        value(
            &own,
            "synscope_exporter_http_requests_total{path=\"other\"}"
        ),
        Some(1.0)
    );
    assert!(
        value(
            &own,
            "synscope_exporter_http_requests_total{path=\"/probe\"}"
        )
        .is_some_and(|n| n >= 4.0)
    );
    drop(exp);
}

#[test]
fn config_errors_are_one_line_and_exit_2() {
    if synscope_lab::skip_unless_root("config_errors_are_one_line_and_exit_2") {
        return;
    }
    let dir = TempDir::new("config");
    let cases: &[(&str, &str)] = &[
        ("", "no [[probe]]"),
        ("[[probe]]\nname = 1\n", "line 2"),
        (&syn_probe("a", 80, "1s", "2s"), "longer than the interval"),
        (
            &syn_probe("a", 80, "1s", "1s").replace("syn", "icmp"),
            "bad kind 'icmp'",
        ),
        (
            &format!("{}colour = 1\n", syn_probe("a", 80, "1s", "1s")),
            "colour",
        ),
    ];
    for (text, want) in cases {
        let p = dir.0.join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
            .args(["exporter", "--listen", "127.0.0.1:1", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        common::assert_status(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want) && err.contains("bad.toml"), "{err}");
    }
    // a listen address in use: one line, status 2, before any probe
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = dir.0.join("good.toml");
    // (loopback: this exporter runs outside the lab, though it never gets to probe)
    std::fs::write(
        &p,
        syn_probe("a", 80, "1s", "1s").replace("198.18.0.2", "127.0.0.1"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
        .args([
            "exporter",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--config",
        ])
        .arg(&p)
        .output()
        .unwrap();
    common::assert_status(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("listen on 127.0.0.1:"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_synscope"))
        .args(["exporter", "--config", "/nonexistent/probes.toml"])
        .output()
        .unwrap();
    common::assert_status(&out, 2);
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn link_down_is_loss_sighup_keeps_counters_sigterm_ends() {
    if synscope_lab::skip_unless_root("link_down_is_loss_sighup_keeps_counters_sigterm_ends") {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("life");
    let mut exp = exporter(&lab, &dir.0, &syn_probe("open", 80, "100ms", "80ms"));
    let series = "synscope_probes_total{probe=\"open\",kind=\"syn\"}";
    let losses = "synscope_losses_total{probe=\"open\"}";
    until(Duration::from_secs(10), || {
        (value(&metrics(&lab), series)? >= 5.0).then_some(())
    })
    .expect("probes run");
    let before = value(&metrics(&lab), losses).unwrap();

    let ip = |state: &str| {
        let st = lab
            .client_command("ip")
            .args(["link", "set", "veth0", state])
            .status()
            .unwrap();
        assert!(st.success());
    };
    ip("down");
    let lost = until(Duration::from_secs(10), || {
        let l = value(&metrics(&lab), losses)?;
        (l >= before + 5.0).then_some(l)
    });
    ip("up");
    assert!(
        lost.is_some(),
        "no loss with the link down: {}",
        stderr_of(&dir.0)
    );
    assert!(
        exp.0.try_wait().unwrap().is_none(),
        "exporter died: {}",
        stderr_of(&dir.0)
    );
    // answers come back once the link is up again
    let answers = "synscope_answers_total{probe=\"open\",verdict=\"open\"}";
    let a0 = value(&metrics(&lab), answers).unwrap_or(0.0);
    until(Duration::from_secs(15), || {
        (value(&metrics(&lab), answers)? > a0 + 2.0).then_some(())
    })
    .expect("answers again after the link came back");

    // SIGHUP: a new probe appears, the counters of the old one carry on
    let n0 = value(&metrics(&lab), series).unwrap();
    std::fs::write(
        dir.0.join("probes.toml"),
        format!(
            "{}{}",
            syn_probe("open", 80, "100ms", "80ms"),
            syn_probe("closed", 81, "100ms", "80ms")
        ),
    )
    .unwrap();
    common::signal(&exp.0, "-HUP");
    let closed = "synscope_answers_total{probe=\"closed\",verdict=\"closed\"}";
    until(Duration::from_secs(10), || value(&metrics(&lab), closed)).expect("reloaded probe runs");
    let page = metrics(&lab);
    assert!(
        value(&page, series).unwrap() >= n0,
        "counter reset by reload"
    );
    assert!(value(&page, losses).unwrap() >= lost.unwrap());
    assert_eq!(
        value(
            &page,
            "synscope_exporter_config_reloads_total{result=\"success\"}"
        ),
        Some(1.0)
    );
    // a broken config on SIGHUP: said on stderr, the running one stays
    std::fs::write(dir.0.join("probes.toml"), "[[probe]]\nname = \n").unwrap();
    common::signal(&exp.0, "-HUP");
    until(Duration::from_secs(10), || {
        value(
            &metrics(&lab),
            "synscope_exporter_config_reloads_total{result=\"failure\"}",
        )
    })
    .expect("failed reload counted");
    assert_eq!(
        value(
            &metrics(&lab),
            "synscope_exporter_config_last_reload_successful"
        ),
        Some(0.0)
    );
    assert!(stderr_of(&dir.0).contains("the running config stays"));
    let c0 = value(&metrics(&lab), closed).unwrap();
    until(Duration::from_secs(10), || {
        (value(&metrics(&lab), closed)? > c0).then_some(())
    })
    .expect("probes still run after a failed reload");

    // SIGTERM while a handshake waits on a dropped port (its nftables table
    // in place): a clean exit, status 0, the table gone
    std::fs::write(
        dir.0.join("probes.toml"),
        format!(
            "{}[[probe]]\nname = \"hs\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:21\"\n\
             interval = \"3s\"\ntimeout = \"2900ms\"\n",
            syn_probe("open", 80, "100ms", "80ms")
        ),
    )
    .unwrap();
    common::signal(&exp.0, "-HUP");
    let tables = || {
        let out = lab
            .client_command("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    until(Duration::from_secs(15), || {
        tables().contains("synscope_").then_some(())
    })
    .expect("a handshake's nftables table");
    common::signal(&exp.0, "-TERM");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = exp.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "exporter still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&dir.0));
    assert!(stderr_of(&dir.0).contains("exporter stopped"));
    assert!(!tables().contains("synscope_"), "left behind: {}", tables());
}

/// `CapEff` and `CapPrm` of a running process.
fn capabilities(pid: u32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.starts_with("CapEff:") || l.starts_with("CapPrm:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn no_capability_left_every_kind_works_tables_go_with_sigkill() {
    if synscope_lab::skip_unless_root("no_capability_left_every_kind_works_tables_go_with_sigkill")
    {
        return;
    }
    let lab = lab();
    let _nsd = LabDns::start(&lab).expect("nsd up");
    let dir = TempDir::new("caps");
    let _http = HttpServer::start(&lab);
    let config = format!(
        "{}{}{}{}",
        syn_probe("open", 80, "100ms", "90ms"),
        "[[probe]]\nname = \"open6\"\nkind = \"syn\"\ntarget = \"[2001:db8::2]:80\"\n\
         interval = \"100ms\"\ntimeout = \"90ms\"\n\n",
        "[[probe]]\nname = \"web\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:8080\"\n\
         interval = \"300ms\"\ntimeout = \"250ms\"\nrequest = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n\n",
        "[[probe]]\nname = \"ns\"\nkind = \"dns\"\ntarget = \"198.18.0.2\"\ninterval = \"300ms\"\n\
         timeout = \"250ms\"\nquery = \"a.lab.test\"\nexpect = [\"198.18.0.10\"]\n\n",
    );
    let mut exp = exporter(&lab, &dir.0, &config);
    let pid = exp.0.id();
    // every kind succeeds, again and again, with no privilege left
    let ok = |series: &str, n: f64| {
        until(Duration::from_secs(20), || {
            (value(&metrics(&lab), series)? >= n).then_some(())
        })
        .is_some()
    };
    for series in [
        "synscope_answers_total{probe=\"open\",verdict=\"open\"}",
        "synscope_answers_total{probe=\"open6\",verdict=\"open\"}",
        "synscope_answers_total{probe=\"web\",verdict=\"open\"}",
        "synscope_answers_total{probe=\"ns\",verdict=\"answered\"}",
        "synscope_stage_duration_seconds_count{probe=\"web\",stage=\"request_first_byte\"}",
        "synscope_stage_duration_seconds_count{probe=\"ns\",stage=\"query_answer\"}",
    ] {
        assert!(
            ok(series, 5.0),
            "{series}: {}\n{}",
            stderr_of(&dir.0),
            metrics(&lab)
                .lines()
                .filter(|l| l.contains("web"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(
        capabilities(pid),
        ["CapPrm:\t0000000000000000", "CapEff:\t0000000000000000"]
    );
    let page = metrics(&lab);
    for (probe, verdict) in [
        ("open", "open"),
        ("open6", "open"),
        ("web", "open"),
        ("ns", "answered"),
    ] {
        let last = format!("synscope_last_verdict{{probe=\"{probe}\",verdict=\"{verdict}\"}}");
        assert_eq!(value(&page, &last), Some(1.0), "{page}");
        let errors = format!("synscope_probe_errors_total{{probe=\"{probe}\"}}");
        assert_eq!(value(&page, &errors).unwrap_or(0.0), 0.0, "{page}");
    }
    // /probe of a handshake, unprivileged: the shared capture serves it too
    let (status, body) = get(&lab, LISTEN, "/probe?target=198.18.0.2:8080&module=web").unwrap();
    assert_eq!(status, 200);
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");

    // a reload that needs a new source address (loopback's) is refused and counted
    std::fs::write(
        dir.0.join("probes.toml"),
        format!(
            "{config}{}",
            "[[probe]]\nname = \"lo\"\nkind = \"syn\"\ntarget = \"127.0.0.1:9\"\ninterval = \"1s\"\ntimeout = \"100ms\"\n"
        ),
    )
    .unwrap();
    common::signal(&exp.0, "-HUP");
    until(Duration::from_secs(10), || {
        value(
            &metrics(&lab),
            "synscope_exporter_config_reloads_total{result=\"failure\"}",
        )
    })
    .expect("refused reload counted");
    let err = stderr_of(&dir.0);
    assert!(
        err.contains("probe lo leaves from 127.0.0.1") && err.contains("the running config stays"),
        "{err}"
    );

    // one owner table, scoped to our ports; gone when the process is killed
    let tables = || {
        let out = lab
            .client_command("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t = tables();
    assert_eq!(
        t.matches("synscope_").count(),
        2,
        "one per source address: {t}"
    );
    let out = lab
        .client_command("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    // each table drops the bare RSTs of its address' handshake ports, to anyone
    for (family, src) in [("ip", "198.18.0.1"), ("ip6", "2001:db8::1")] {
        let name = rules
            .lines()
            .find_map(|l| l.strip_prefix(&format!("table {family} synscope_{pid}_")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {family} table: {rules}"));
        let (lo, hi) = name.split_once('_').unwrap();
        // the handshake half of the block: SYN probes' ports keep the
        // kernel's RST, which ends the half-open connection at the target
        let span = hi.parse::<u16>().unwrap() - lo.parse::<u16>().unwrap() + 1;
        assert_eq!(span, 64, "{rules}");
        let rule =
            format!("{family} saddr {src} tcp sport {lo}-{hi} tcp flags rst / rst,ack counter");
        assert!(rules.contains(&rule), "{rule}: {rules}");
    }
    assert!(!rules.contains("daddr"), "{rules}");
    let _ = exp.0.kill();
    let _ = exp.0.wait();
    until(Duration::from_secs(5), || {
        (!tables().contains("synscope_")).then_some(())
    })
    .unwrap_or_else(|| panic!("left behind after SIGKILL: {}", tables()));
}

#[test]
fn handshake_ports_come_back_without_loss_while_the_peer_holds_time_wait() {
    if synscope_lab::skip_unless_root(
        "handshake_ports_come_back_without_loss_while_the_peer_holds_time_wait",
    ) {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("reuse");
    let _http = HttpServer::start(&lab);
    // the server closes first (HTTP/1.0), so it holds each connection in
    // TIME_WAIT for 60 s; three probes share the 64 handshake ports, each
    // reused after about 2 s; a SYN without timestamps, so only its sequence
    // number tells the peer it is a new connection
    let probe = |name: &str| {
        format!(
            "[[probe]]\nname = \"{name}\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:8080\"\n\
             interval = \"100ms\"\ntimeout = \"100ms\"\nbare_syn = true\n\
             request = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n\n"
        )
    };
    let names = ["w1", "w2", "w3"];
    let config: String = names.iter().map(|n| probe(n)).collect();
    let exp = exporter(&lab, &dir.0, &config);
    let sum = |page: &str, f: &dyn Fn(&str) -> String| -> f64 {
        names
            .iter()
            .map(|n| value(page, &f(n)).unwrap_or(0.0))
            .sum()
    };
    let runs = |n: &str| format!("synscope_probes_total{{probe=\"{n}\",kind=\"handshake\"}}");
    let page = until(Duration::from_secs(40), || {
        let p = metrics(&lab);
        (sum(&p, &runs) >= 200.0).then_some(p)
    })
    .unwrap_or_else(|| panic!("too few runs: {}", stderr_of(&dir.0)));
    let tw = lab
        .server_command("ss")
        .args(["-tan", "state", "time-wait"])
        .output()
        .unwrap();
    let tw = String::from_utf8_lossy(&tw.stdout).lines().count();
    drop(exp);
    let n = sum(&page, &runs);
    let open = sum(&page, &|n| {
        format!("synscope_answers_total{{probe=\"{n}\",verdict=\"open\"}}")
    });
    let lost = sum(&page, &|n| {
        format!("synscope_losses_total{{probe=\"{n}\"}}")
    });
    // the block's ports in TIME_WAIT at the server (a header line, and a port
    // or two may be in use): 200 runs over 64 ports, each reused while the
    // server still held its last connection
    assert!(tw >= 48, "the server holds {tw} lines of TIME_WAIT");
    // a run in flight at the scrape may not be counted yet
    assert!(
        open >= n - 3.0 && lost == 0.0,
        "runs {n}, open {open}, losses {lost}: {page}"
    );
}

#[test]
fn without_cap_net_admin_syn_probes_run_and_handshakes_are_errors() {
    if synscope_lab::skip_unless_root(
        "without_cap_net_admin_syn_probes_run_and_handshakes_are_errors",
    ) {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("noadmin");
    let cfg = dir.0.join("probes.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[[probe]]\nname = \"hs\"\nkind = \"handshake\"\ntarget = \"198.18.0.2:80\"\n\
             interval = \"200ms\"\ntimeout = \"150ms\"\n",
            syn_probe("open", 80, "100ms", "90ms")
        ),
    )
    .unwrap();
    let err = std::fs::File::create(dir.0.join("exporter.err")).unwrap();
    // root without CAP_NET_ADMIN: no nftables table can be made
    let child = lab
        .client_command("setpriv")
        .args(["--bounding-set", "-net_admin", "--inh-caps", "-all"])
        .arg(env!("CARGO_BIN_EXE_synscope"))
        .args(["exporter", "--listen", LISTEN, "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let _g = Guard(child);
    let up = until(Duration::from_secs(15), || {
        get(&lab, LISTEN, "/metrics").filter(|(s, _)| *s == 200)
    });
    assert!(up.is_some(), "exporter not up: {}", stderr_of(&dir.0));
    let ok = until(Duration::from_secs(15), || {
        let p = metrics(&lab);
        let open = value(
            &p,
            "synscope_answers_total{probe=\"open\",verdict=\"open\"}",
        )?;
        let errors = value(&p, "synscope_probe_errors_total{probe=\"hs\"}")?;
        (open >= 3.0 && errors >= 2.0).then_some(())
    });
    assert!(ok.is_some(), "{}", stderr_of(&dir.0));
    assert!(
        stderr_of(&dir.0).contains("handshake probes from 198.18.0.1 will fail"),
        "{}",
        stderr_of(&dir.0)
    );
}
