//! `synscope exporter`: the probes of a config file run continuously, their
//! kernel-timestamped stage durations served to Prometheus as histograms on
//! `/metrics`, and a blackbox-compatible `/probe?target=...&module=...`.
//!
//! One task per probe, running one probe at a time; the probes of one address
//! start evenly spread over their interval and two scheduled runs to one
//! address start at least `TARGET_GAP` apart, so a host never gets a burst.
//! Every socket is opened once, at start: the raw senders, and per source
//! address a port block, its capture and its nftables table (`plane`); DNS
//! probes use ordinary UDP/TCP sockets. Then every capability goes. SIGHUP
//! reloads the config over the same metric families, unless it would need a
//! new source address (refused, counted as a failed reload, the running
//! config stays: `reloaded`); SIGTERM or SIGINT ends
//! a handshake in flight with an RST, then the tasks, and exits 0 (the
//! nftables owner tables go with the process, SIGKILL included).

pub mod config;
pub(crate) mod http;
pub(crate) mod plane;
pub(crate) mod run;

use super::{CmdError, Log};
use crate::cli::UsageError;
use crate::report::metrics::{self, ExporterMetrics, ProbeInfo};
use config::Config;
use prometheus_client::registry::Registry;
use run::Senders;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;

/// Validated settings of `synscope exporter`.
#[derive(Debug, Clone)]
pub struct ExporterSettings {
    /// The config file.
    pub config: PathBuf,
    /// `--listen`: overrides the config's address.
    pub listen: Option<SocketAddr>,
}

/// What the HTTP handlers share.
struct Shared {
    registry: Registry,
    metrics: ExporterMetrics,
    config: RwLock<Arc<Config>>,
    senders: Senders,
    log: Log,
}

/// How long before Prometheus' scrape timeout a /probe run must end
/// (blackbox_exporter's default `timeout_offset`).
const SCRAPE_TIMEOUT_OFFSET: f64 = 0.5;

/// HTTP connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// The least time between the starts of two scheduled runs to one target
/// address, whatever the probes: several probes of a host never arrive in a burst.
const TARGET_GAP: Duration = Duration::from_millis(20);

/// When the last scheduled run to each target address started.
type Gates =
    std::collections::HashMap<std::net::IpAddr, Arc<tokio::sync::Mutex<tokio::time::Instant>>>;

/// The running probe tasks and the switch that ends them.
struct Probes {
    tasks: JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Resolves once `rx` says stop (or its sender is gone).
pub(crate) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Spawns one task per probe; each records its runs in `m`. The probes of one
/// target address start evenly spread over their interval (a random offset
/// for the first), and no two scheduled runs to an address start within
/// [`TARGET_GAP`].
fn spawn_probes(cfg: &Config, m: &ExporterMetrics, senders: &Senders, log: Log) -> Probes {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    m.info.clear();
    let mut gates: Gates = Gates::new();
    let start = tokio::time::Instant::now();
    let offset: f64 = rand::random();
    for spec in cfg.probes.iter().cloned() {
        m.info
            .get_or_create(&ProbeInfo {
                probe: spec.name.clone(),
                kind: spec.kind.name().to_string(),
                target: spec.target.to_string(),
            })
            .set(1);
        let ip = spec.target.ip();
        let same: Vec<&config::ProbeSpec> =
            cfg.probes.iter().filter(|p| p.target.ip() == ip).collect();
        let k = same.iter().position(|p| p.name == spec.name).unwrap_or(0);
        let phase = spec
            .interval
            .mul_f64(((offset + k as f64 / same.len() as f64) % 1.0).clamp(0.0, 1.0));
        let gate = gates
            .entry(ip)
            .or_insert_with(|| {
                let before = start.checked_sub(TARGET_GAP).unwrap_or(start);
                Arc::new(tokio::sync::Mutex::new(before))
            })
            .clone();
        let (m, senders, rx) = (m.clone(), senders.clone(), rx.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(start + phase, spec.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped(rx.clone()) => return,
                    _ = tick.tick() => {}
                }
                {
                    let mut last = gate.lock().await;
                    let at = (*last + TARGET_GAP).max(tokio::time::Instant::now());
                    tokio::time::sleep_until(at).await;
                    *last = at;
                }
                let o = run::once(&spec, spec.target, &senders, log, stopped(rx.clone())).await;
                if let Some(e) = &o.error {
                    log.debug(|| format!("probe {}: {e}", spec.name));
                }
                if *rx.borrow() {
                    // cut short by a reload or SIGTERM: not a real outcome
                    return;
                }
                m.record(&spec.name, spec.kind.name(), &o);
            }
        });
    }
    Probes { tasks, stop }
}

/// Ends every probe task: a handshake in progress is aborted with an RST
/// (as `trace` does on SIGINT); after a bound the rest are cancelled. Their
/// sockets and nftables tables are gone when this returns.
async fn stop(p: &mut Probes) {
    let _ = p.stop.send(true);
    let all = async { while p.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), all)
        .await
        .is_err()
    {
        p.tasks.abort_all();
        while p.tasks.join_next().await.is_some() {}
    }
}

/// The source addresses the raw probes (`syn`, `handshake`) of `cfg` leave
/// from, by the routes of now, with the probe that needs each; a probe whose
/// target has no route now is said on stderr and left out.
fn raw_sources(cfg: &Config) -> Vec<(String, std::net::IpAddr)> {
    let mut out = Vec::new();
    for p in &cfg.probes {
        if matches!(p.kind, config::Kind::Dns { .. }) {
            continue;
        }
        match crate::io::Route::lookup(p.target.ip(), None) {
            Ok(r) => out.push((p.name.clone(), r.src)),
            Err(e) => note!(
                "synscope: probe {}: {e}: no source address to prepare for it",
                p.name
            ),
        }
    }
    out
}

/// The config at `path` for a reload: valid, and with every raw probe leaving
/// from a source address whose sockets were opened at start (no new ones can
/// be opened once the privileges are gone).
fn reloaded(path: &std::path::Path, plane: &plane::Plane) -> Result<Config, String> {
    let new = config::load(path).map_err(|e| e.to_string())?;
    match raw_sources(&new)
        .into_iter()
        .find(|(_, src)| !plane.has(*src))
    {
        Some((name, src)) => Err(format!(
            "probe {name} leaves from {src}, whose sockets are opened only at start: \
             restart the exporter"
        )),
        None => Ok(new),
    }
}

fn usage(e: config::ConfigError) -> CmdError {
    CmdError::Usage(UsageError(e.to_string()))
}

/// Runs until SIGTERM or SIGINT; returns the exit status (0).
pub async fn run(s: &ExporterSettings, log: Log) -> Result<u8, CmdError> {
    let cfg = config::load(&s.config).map_err(usage)?;
    let listen = match (s.listen, cfg.listen) {
        (Some(l), _) | (None, Some(l)) => l,
        (None, None) => config::DEFAULT_LISTEN
            .parse()
            .map_err(|_| CmdError::Setup("bad default listen address".into()))?,
    };
    let senders = Senders::open(raw_sources(&cfg).into_iter().map(|(_, src)| src))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CmdError::Setup(format!("listen on {listen}: {e}")))?;
    // before anything is announced: a SIGHUP from then on reloads, never kills
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| CmdError::Setup(format!("catch SIGHUP: {e}")))?;
    // every socket and nftables table is open: no capability is needed any more
    crate::io::privileges::drop_all()?;
    let (m, registry) = ExporterMetrics::new();
    m.start_time.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    );
    m.reload_ok.set(1);
    let shared = Arc::new(Shared {
        registry,
        metrics: m.clone(),
        config: RwLock::new(Arc::new(cfg.clone())),
        senders: senders.clone(),
        log,
    });
    let mut probes = spawn_probes(&cfg, &m, &senders, log);
    note!(
        "synscope: exporter serving http://{listen}/metrics and /probe ({} probe(s) from {})",
        cfg.probes.len(),
        s.config.display()
    );
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let signal = super::interrupted();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = hup.recv() => match reloaded(&s.config, &senders.plane) {
                Ok(new) => {
                    stop(&mut probes).await;
                    if new.listen.is_some() && new.listen != Some(listen) && s.listen.is_none() {
                        note!("synscope: reload: the listen address changes only on restart");
                    }
                    probes = spawn_probes(&new, &m, &senders, log);
                    note!("synscope: reloaded {} ({} probe(s))", s.config.display(), new.probes.len());
                    if let Ok(mut c) = shared.config.write() {
                        *c = Arc::new(new);
                    }
                    m.reloads.get_or_create(&metrics::ResultLabel { result: "success".into() }).inc();
                    m.reload_ok.set(1);
                }
                Err(e) => {
                    note!("synscope: reload: {e}; the running config stays");
                    m.reloads.get_or_create(&metrics::ResultLabel { result: "failure".into() }).inc();
                    m.reload_ok.set(0);
                }
            },
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                // beyond the bound a connection is closed unanswered: a flood of
                // idle clients cannot pile up tasks (each has a 10 s read limit)
                let Ok(permit) = connections.clone().try_acquire_owned() else { continue };
                let sh = shared.clone();
                tokio::spawn(async move {
                    serve(stream, &sh).await;
                    drop(permit);
                });
            }
            // a probe task never ends on its own; if one panicked, say so
            Some(r) = probes.tasks.join_next(), if !probes.tasks.is_empty() => {
                if let Err(e) = r && e.is_panic() {
                    eprintln!("synscope: a probe task failed: {e}");
                }
            }
        }
    }
    stop(&mut probes).await;
    note!("synscope: exporter stopped");
    Ok(0)
}

/// Answers one connection.
async fn serve(mut stream: tokio::net::TcpStream, sh: &Shared) {
    let Some(head) = http::read_head(&mut stream, Duration::from_secs(10)).await else {
        return;
    };
    let reply = match http::parse_request(&head) {
        None => http::response(400, "text/plain", "bad request\n"),
        Some(r) if r.method != "GET" => http::response(405, "text/plain", "only GET\n"),
        Some(r) => {
            let known = ["/metrics", "/probe", "/"];
            let path = if known.contains(&r.path.as_str()) {
                r.path.as_str()
            } else {
                "other"
            };
            sh.metrics
                .http_requests
                .get_or_create(&metrics::PathLabel {
                    path: path.to_string(),
                })
                .inc();
            match r.path.as_str() {
                "/metrics" => page(&r, metrics::encode(&sh.registry)),
                "/probe" => probe(&r, sh).await,
                "/" => http::response(
                    200,
                    "text/html",
                    "<html><head><title>synscope exporter</title></head><body>\
                 <h1>synscope exporter</h1><p><a href=\"/metrics\">Metrics</a></p>\
                 <p>/probe?target=HOST:PORT&amp;module=PROBE_NAME</p></body></html>\n",
                ),
                _ => http::response(404, "text/plain", "not found: try /metrics or /probe\n"),
            }
        }
    };
    http::write(&mut stream, &reply).await;
}

/// `/probe?target=HOST:PORT&module=NAME`: the probe NAME of the config, once,
/// against the target; blackbox_exporter's page.
async fn probe(r: &http::Request, sh: &Shared) -> Vec<u8> {
    let bad = |msg: String| http::response(400, "text/plain", &format!("{msg}\n"));
    let Some(target) = r.param("target") else {
        return bad("target parameter is missing".into());
    };
    let module = r.param("module").unwrap_or("");
    let cfg = match sh.config.read() {
        Ok(c) => c.clone(),
        Err(_) => return bad("config unavailable".into()),
    };
    let Some(spec) = cfg.probe(module) else {
        return bad(format!(
            "unknown module '{module}': a probe name of the config"
        ));
    };
    let t = target.to_string();
    let port = spec.kind.default_port();
    let addr = match tokio::task::spawn_blocking(move || config::target(&t, port)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return bad(e),
        Err(e) => return bad(format!("resolve: {e}")),
    };
    // like blackbox_exporter: done half a second before Prometheus gives up
    let mut spec = spec.clone();
    if let Some(t) = r.scrape_timeout {
        let budget = Duration::from_secs_f64((t - SCRAPE_TIMEOUT_OFFSET).clamp(0.1, 86400.0));
        spec.timeout = spec.timeout.min(budget);
    }
    let o = run::once(&spec, addr, &sh.senders, sh.log, std::future::pending()).await;
    if let Some(e) = &o.error {
        sh.log.debug(|| format!("/probe {module} {addr}: {e}"));
    }
    page(r, metrics::probe_page(&o, addr.is_ipv6()))
}

/// A metrics page in the format the client accepts (OpenMetrics for
/// Prometheus, the classic text format for curl and promtool).
fn page(r: &http::Request, openmetrics: String) -> Vec<u8> {
    if metrics::wants_openmetrics(r.accept.as_deref()) {
        http::response(200, metrics::CONTENT_TYPE, &openmetrics)
    } else {
        http::response(
            200,
            metrics::TEXT_CONTENT_TYPE,
            &metrics::to_text_format(&openmetrics),
        )
    }
}
