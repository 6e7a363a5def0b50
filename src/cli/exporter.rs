//! Arguments and settings of `synscope exporter`.

use clap::Args;
use std::net::SocketAddr;

/// The one-line help of `synscope exporter`.
pub const ABOUT: &str = "Run SYN, handshake and DNS probes continuously for Prometheus.";

/// The long help of `synscope exporter`.
pub const LONG_ABOUT: &str = "\
Run SYN, handshake and DNS probes continuously for Prometheus.

The probes of a TOML config run at their intervals (one at a time per
probe, spread over time per target); their kernel-timestamped stage times
are served on http://LISTEN/metrics as histograms
(synscope_stage_duration_seconds{probe,stage}), with counters of probes,
answers by verdict, losses (an unanswered or retransmitted SYN is loss,
never latency), failed DNS checks and ignored packets. /probe?target=
HOST:PORT&module=NAME runs probe NAME once against the target and
answers like blackbox_exporter (probe_success, probe_duration_seconds).
Every socket is opened at start, then every capability is dropped;
SIGHUP reloads the config (counters carry on) unless it needs a new
source address (refused: restart); SIGTERM stops it.

Config (each [[probe]]: name, kind = syn | handshake | dns, target,
interval, timeout ≤ interval; handshake: request, close = fin | rst;
dns: query, type, expect, expect_contains, expect_rcode, expect_regex,
max_time; syn, handshake: bare_syn):
  [[probe]]
  name = \"web\"
  kind = \"syn\"
  target = \"198.18.0.2:80\"
  interval = \"1s\"
  timeout = \"500ms\"

Examples:
  synscope exporter --config probes.toml
  synscope exporter --config probes.toml --listen [::1]:9799
  curl 'http://127.0.0.1:9799/probe?target=198.18.0.2:443&module=web'";

/// The EXIT STATUS section of `synscope exporter --help`.
pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  stopped by SIGTERM or SIGINT
  2  usage or setup error: a bad config (one line says which file, line and
     field), the listen address taken, missing privileges
  A bad config on SIGHUP is reported on stderr and the running one stays.";

/// Arguments of `synscope exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// The TOML file listing the probes. (`-c` is an old spelling, kept for
    /// now: `-c` means --count in the other commands.)
    #[arg(long, short_alias = 'c', value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Where to serve /metrics and /probe (default: the config's `listen`,
    /// else 127.0.0.1:9799).
    #[arg(short, long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

impl ExporterArgs {
    /// The settings (the config file is read by the command).
    pub fn settings(&self) -> crate::cmd::exporter::ExporterSettings {
        crate::cmd::exporter::ExporterSettings {
            config: self.config.clone(),
            listen: self.listen,
        }
    }
}
