//! Probe outcomes as Prometheus metrics (OpenMetrics text, `prometheus-client`):
//! the exporter's long-lived families and the one-shot page of `/probe`.
//!
//! Durations are observed only when both ends carry kernel stamps; an
//! unanswered or retransmitted SYN is counted as loss, never as latency.
//! Labels stay low-cardinality: probe name (from the config), kind, stage,
//! verdict, check and ignore reason, each from a fixed set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The content type of every page this module writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The outcome of one probe run, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The run did what it was asked (open port, whole connection, every check passed).
    pub success: bool,
    /// `open`, `closed`, `filtered`, `answered`, `no-answer` or `error`.
    pub verdict: &'static str,
    /// Kernel-timestamped stage durations, by stage slug.
    pub stages: Vec<(&'static str, Duration)>,
    /// SYNs (or queries) sent and not answered: unanswered or retransmitted.
    pub losses: u64,
    /// Failed checks, by check slug (dns).
    pub check_failures: Vec<&'static str>,
    /// Packets ignored while the run was waiting, by reason.
    pub ignored: Vec<(&'static str, u64)>,
    /// Why the run could not be made (setup or send error).
    pub error: Option<String>,
    /// Wall time of the whole run.
    pub duration: Duration,
}

impl Outcome {
    /// A run that could not be made: the probe it was is lost.
    pub fn error(e: String, duration: Duration) -> Outcome {
        Outcome {
            success: false,
            verdict: "error",
            stages: Vec::new(),
            losses: 1,
            check_failures: Vec::new(),
            ignored: Vec::new(),
            error: Some(e),
            duration,
        }
    }
    /// Did an answer come (any verdict but no answer or an error)?
    pub fn answered(&self) -> bool {
        !matches!(self.verdict, "no-answer" | "error")
    }
}

/// Every verdict a kind can have, for the last-verdict state set.
pub fn verdicts(kind: &str) -> &'static [&'static str] {
    match kind {
        "dns" => &["answered", "filtered", "no-answer", "error"],
        _ => &["open", "closed", "filtered", "no-answer", "error"],
    }
}

/// 1 µs, 2 µs, 4 µs ... 8.4 s: kernel-stamped RTTs on a veth are a few µs,
/// a TCP stage across the world hundreds of ms.
pub fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-6, 2.0, 24)
}

fn histogram() -> Histogram {
    Histogram::new(buckets())
}

/// Labels `probe`, `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeKind {
    /// The probe's name.
    pub probe: String,
    /// `syn`, `handshake` or `dns`.
    pub kind: String,
}

/// Label `probe`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeOnly {
    /// The probe's name.
    pub probe: String,
}

/// Labels `probe`, `stage`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeStage {
    /// The probe's name.
    pub probe: String,
    /// The stage's slug, as in [`Outcome::stages`].
    pub stage: String,
}

/// Labels `probe`, `verdict`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeVerdict {
    /// The probe's name.
    pub probe: String,
    /// As [`Outcome::verdict`].
    pub verdict: String,
}

/// Labels `probe`, `check`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeCheck {
    /// The probe's name.
    pub probe: String,
    /// The DNS check that failed.
    pub check: String,
}

/// Labels `probe`, `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeReason {
    /// The probe's name.
    pub probe: String,
    /// Why a packet was ignored (`wrong-ack`, ...).
    pub reason: String,
}

/// Labels of `synscope_probe_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeInfo {
    /// The probe's name.
    pub probe: String,
    /// `syn`, `handshake` or `dns`.
    pub kind: String,
    /// The target as written in the config.
    pub target: String,
}

/// Label `result` (config reloads).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}

/// Label `path` (HTTP requests).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// `/metrics`, `/probe`, `/` or `other`.
    pub path: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// The exporter's metric families. Cloning shares them: a config reload
/// builds new probe tasks over the same families, so counters carry on.
#[derive(Debug, Clone)]
pub struct ExporterMetrics {
    /// `synscope_probes_total`: runs started.
    pub probes: Family<ProbeKind, Counter>,
    /// `synscope_answers_total`: answers by verdict.
    pub answers: Family<ProbeVerdict, Counter>,
    /// `synscope_losses_total`: SYNs or queries never answered.
    pub losses: Family<ProbeOnly, Counter>,
    /// `synscope_probe_errors_total`: runs that could not be made.
    pub errors: Family<ProbeOnly, Counter>,
    /// `synscope_check_failures_total`: failed DNS checks.
    pub check_failures: Family<ProbeCheck, Counter>,
    /// `synscope_ignored_packets_total`: captured packets ignored, by reason.
    pub ignored: Family<ProbeReason, Counter>,
    /// `synscope_stage_duration_seconds`: kernel-stamped stage durations.
    pub stages: Family<ProbeStage, Histogram, fn() -> Histogram>,
    /// `synscope_last_verdict`: 1 for the last run's verdict, 0 for the others.
    pub last_verdict: Family<ProbeVerdict, Gauge>,
    /// `synscope_last_success`: 1 if the last run succeeded.
    pub last_success: Family<ProbeOnly, Gauge>,
    /// `synscope_last_run_duration_seconds`: wall time of the last run.
    pub last_duration: Family<ProbeOnly, FGauge>,
    /// `synscope_probe_info`: 1 per configured probe.
    pub info: Family<ProbeInfo, Gauge>,
    /// `synscope_exporter_config_reloads_total`: SIGHUP reloads by result.
    pub reloads: Family<ResultLabel, Counter>,
    /// `synscope_exporter_http_requests_total`: HTTP requests by path.
    pub http_requests: Family<PathLabel, Counter>,
    /// `synscope_exporter_config_last_reload_successful`: 1 if the last load succeeded.
    pub reload_ok: Gauge,
    /// `synscope_exporter_start_time_seconds`: start time, Unix epoch.
    pub start_time: FGauge,
}

impl ExporterMetrics {
    /// The families, registered in a new registry.
    pub fn new() -> (ExporterMetrics, Registry) {
        let m = ExporterMetrics {
            probes: Family::default(),
            answers: Family::default(),
            losses: Family::default(),
            errors: Family::default(),
            check_failures: Family::default(),
            ignored: Family::default(),
            stages: Family::new_with_constructor(histogram),
            last_verdict: Family::default(),
            last_success: Family::default(),
            last_duration: Family::default(),
            info: Family::default(),
            reloads: Family::default(),
            http_requests: Family::default(),
            reload_ok: Gauge::default(),
            start_time: FGauge::default(),
        };
        let mut r = Registry::with_prefix("synscope");
        r.register("probes", "Probe runs started", m.probes.clone());
        r.register(
            "answers",
            "Answers by verdict (open, closed, filtered by ICMP, answered)",
            m.answers.clone(),
        );
        r.register(
            "losses",
            "SYNs or queries sent and never answered (unanswered or retransmitted): loss, never latency",
            m.losses.clone(),
        );
        r.register(
            "probe_errors",
            "Probe runs that could not be made (no route, send failed); each also counts as a loss",
            m.errors.clone(),
        );
        r.register(
            "check_failures",
            "Failed DNS checks by check",
            m.check_failures.clone(),
        );
        r.register(
            "ignored_packets",
            "Captured packets ignored by reason",
            m.ignored.clone(),
        );
        r.register_with_unit(
            "stage_duration",
            "Kernel-timestamped duration of each probe stage",
            Unit::Seconds,
            m.stages.clone(),
        );
        r.register(
            "last_verdict",
            "1 for the verdict of the last run, 0 for the others",
            m.last_verdict.clone(),
        );
        r.register(
            "last_success",
            "1 if the last run succeeded",
            m.last_success.clone(),
        );
        r.register_with_unit(
            "last_run_duration",
            "Wall time of the last run",
            Unit::Seconds,
            m.last_duration.clone(),
        );
        r.register(
            "probe_info",
            "The configured probes (value 1)",
            m.info.clone(),
        );
        r.register(
            "exporter_config_reloads",
            "Configuration reloads (SIGHUP) by result",
            m.reloads.clone(),
        );
        r.register(
            "exporter_http_requests",
            "HTTP requests by path (/metrics, /probe, /, other)",
            m.http_requests.clone(),
        );
        r.register(
            "exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded",
            m.reload_ok.clone(),
        );
        r.register_with_unit(
            "exporter_start_time",
            "Start time of the exporter since the Unix epoch",
            Unit::Seconds,
            m.start_time.clone(),
        );
        (m, r)
    }

    /// Records one finished run of probe `probe` of kind `kind`.
    pub fn record(&self, probe: &str, kind: &str, o: &Outcome) {
        let p = || probe.to_string();
        self.probes
            .get_or_create(&ProbeKind {
                probe: p(),
                kind: kind.to_string(),
            })
            .inc();
        if o.answered() {
            self.answers
                .get_or_create(&ProbeVerdict {
                    probe: p(),
                    verdict: o.verdict.to_string(),
                })
                .inc();
        }
        // present from the first run on, so rate() works from zero
        let losses = self.losses.get_or_create(&ProbeOnly { probe: p() });
        losses.inc_by(o.losses);
        drop(losses);
        if o.error.is_some() {
            self.errors.get_or_create(&ProbeOnly { probe: p() }).inc();
        }
        for c in &o.check_failures {
            self.check_failures
                .get_or_create(&ProbeCheck {
                    probe: p(),
                    check: c.to_string(),
                })
                .inc();
        }
        for (reason, n) in &o.ignored {
            self.ignored
                .get_or_create(&ProbeReason {
                    probe: p(),
                    reason: reason.to_string(),
                })
                .inc_by(*n);
        }
        for (stage, d) in &o.stages {
            self.stages
                .get_or_create(&ProbeStage {
                    probe: p(),
                    stage: stage.to_string(),
                })
                .observe(d.as_secs_f64());
        }
        for v in verdicts(kind) {
            self.last_verdict
                .get_or_create(&ProbeVerdict {
                    probe: p(),
                    verdict: v.to_string(),
                })
                .set(i64::from(*v == o.verdict));
        }
        self.last_success
            .get_or_create(&ProbeOnly { probe: p() })
            .set(i64::from(o.success));
        self.last_duration
            .get_or_create(&ProbeOnly { probe: p() })
            .set(o.duration.as_secs_f64());
    }
}

/// The page `/probe` returns for one run: blackbox_exporter's `probe_success`,
/// `probe_duration_seconds` and `probe_ip_protocol`, then synscope's own.
pub fn probe_page(o: &Outcome, ipv6: bool) -> String {
    let mut r = Registry::default();
    let gauge = |v: f64| {
        let g = FGauge::default();
        g.set(v);
        g
    };
    r.register(
        "probe_success",
        "Displays whether or not the probe was a success",
        gauge(if o.success { 1.0 } else { 0.0 }),
    );
    r.register_with_unit(
        "probe_duration",
        "Returns how long the probe took to complete in seconds",
        Unit::Seconds,
        gauge(o.duration.as_secs_f64()),
    );
    r.register(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        gauge(if ipv6 { 6.0 } else { 4.0 }),
    );
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Stage {
        stage: String,
    }
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Verdict {
        verdict: String,
    }
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Check {
        check: String,
    }
    let stages: Family<Stage, FGauge> = Family::default();
    for (s, d) in &o.stages {
        stages
            .get_or_create(&Stage {
                stage: s.to_string(),
            })
            .set(d.as_secs_f64());
    }
    r.register_with_unit(
        "synscope_probe_stage",
        "Kernel-timestamped duration of each stage of this run",
        Unit::Seconds,
        stages,
    );
    let verdict: Family<Verdict, Gauge> = Family::default();
    verdict
        .get_or_create(&Verdict {
            verdict: o.verdict.to_string(),
        })
        .set(1);
    r.register(
        "synscope_probe_verdict",
        "The verdict of this run (value 1)",
        verdict,
    );
    r.register(
        "synscope_probe_losses",
        "SYNs or queries of this run that were never answered",
        gauge(o.losses as f64),
    );
    let checks: Family<Check, Gauge> = Family::default();
    for c in &o.check_failures {
        checks
            .get_or_create(&Check {
                check: c.to_string(),
            })
            .set(1);
    }
    r.register(
        "synscope_probe_check_failed",
        "DNS checks that failed in this run (value 1)",
        checks,
    );
    encode(&r)
}

/// The whole exposition of a registry, ending with `# EOF`.
pub fn encode(r: &Registry) -> String {
    let mut s = String::new();
    // writing to a String cannot fail
    let _ = prometheus_client::encoding::text::encode(&mut s, r);
    s
}

/// Does an `Accept` header ask for OpenMetrics (Prometheus does)? Anything
/// else (curl, promtool) gets the classic text format 0.0.4.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The content type of [`to_text_format`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text to the classic Prometheus text format: a counter family
/// is named with its `_total` suffix, and the `# UNIT` and `# EOF` lines go.
pub fn to_text_format(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in om.lines() {
        if l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| l.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(l);
                }
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rtt_us: u64) -> Outcome {
        Outcome {
            success: true,
            verdict: "open",
            stages: vec![("syn_synack", Duration::from_micros(rtt_us))],
            losses: 0,
            check_failures: Vec::new(),
            ignored: vec![("other-flow", 2)],
            error: None,
            duration: Duration::from_micros(300),
        }
    }

    #[test]
    fn families_accumulate_and_stay_low_cardinality() {
        let (m, r) = ExporterMetrics::new();
        m.record("web", "syn", &open(30));
        m.record("web", "syn", &open(3000));
        m.record(
            "web",
            "syn",
            &Outcome::error("no route".into(), Duration::ZERO),
        );
        let text = encode(&r);
        assert!(
            text.contains("synscope_probes_total{probe=\"web\",kind=\"syn\"} 3"),
            "{text}"
        );
        assert!(text.contains("synscope_answers_total{probe=\"web\",verdict=\"open\"} 2"));
        assert!(text.contains("synscope_losses_total{probe=\"web\"} 1"));
        assert!(text.contains("synscope_probe_errors_total{probe=\"web\"} 1"));
        assert!(
            text.contains("synscope_ignored_packets_total{probe=\"web\",reason=\"other-flow\"} 4")
        );
        // 30 µs lands in the 32 µs bucket, 3 ms in the 4.096 ms one
        assert!(text.contains(
            "synscope_stage_duration_seconds_bucket{le=\"0.000032\",probe=\"web\",stage=\"syn_synack\"} 1"
        ), "{text}");
        assert!(text.contains(
            "synscope_stage_duration_seconds_count{probe=\"web\",stage=\"syn_synack\"} 2"
        ));
        assert!(text.contains("synscope_last_verdict{probe=\"web\",verdict=\"error\"} 1"));
        assert!(text.contains("synscope_last_verdict{probe=\"web\",verdict=\"open\"} 0"));
        assert!(text.ends_with("# EOF\n"));
        let classic = to_text_format(&text);
        assert!(classic.contains("# HELP synscope_probes_total Probe runs started."));
        assert!(classic.contains("# TYPE synscope_probes_total counter\n"));
        assert!(classic.contains("# TYPE synscope_stage_duration_seconds histogram\n"));
        assert!(!classic.contains("# UNIT") && !classic.contains("# EOF"));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")) && !wants_openmetrics(None));
    }

    #[test]
    fn probe_page_is_blackbox_compatible() {
        let text = probe_page(&open(30), false);
        assert!(text.contains("probe_success 1.0"), "{text}");
        assert!(text.contains("# TYPE probe_duration_seconds gauge"));
        assert!(text.contains("probe_ip_protocol 4.0"));
        assert!(text.contains("synscope_probe_stage_seconds{stage=\"syn_synack\"} 0.00003"));
        assert!(text.contains("synscope_probe_verdict{verdict=\"open\"} 1"));
    }
}
