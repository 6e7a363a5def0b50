//! Command-line arguments, and the one place where they become validated
//! settings; nothing after this re-parses strings.
//!
//! One file per command (`ping.rs`, `scan.rs`, ...): its clap arguments, its
//! validated settings and the step from one to the other. What several commands
//! share is declared once here and flattened into them: [`TargetArgs`]
//! (`HOST[:PORT]`, `-p`, `-4`/`-6`), [`SendArgs`] (`-I`, `--bare-syn`,
//! `--source-port`, `--ttl`), [`OutputArgs`] (`--json`, `--ndjson`),
//! [`PcapArgs`] and [`ProgressArgs`]. The step from arguments to settings reads
//! the outside world (names, files, the terminal) only through an [`Env`], so
//! it is tested without root, network or files.

// The doc comments of clap arguments are --help text, written for people:
// `[2001:db8::2]:443` there is an address, not an intra-doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod completions;
pub mod demo;
pub mod dns;
pub mod exporter;
pub mod path;
pub mod ping;
pub mod scan;
pub mod trace;

pub use demo::DemoArgs;
pub use dns::{BulkSource, DnsArgs, DnsChecks, DnsFormat, DnsSettings};
pub use exporter::ExporterArgs;
pub use ping::{PingArgs, PingSettings};
pub use scan::{ScanArgs, ScanRate, ScanSettings};
pub use trace::{TraceArgs, TraceSettings, unescape};

/// The EXIT STATUS section of `synscope --help`: every command's statuses.
pub const ALL_EXIT_CODES: &str = "\
EXIT STATUS:
  0  success: the command's expectation held (ping: the port answered as
     expected; scan: it ran to its end; trace: every trace did all it
     was asked: handshake, request acknowledged, teardown as --close says;
     dns: every check passed; path: the destination answered the SYNs;
     exporter: stopped by SIGTERM or SIGINT)
  1  the expectation failed (ping: another verdict; scan: interrupted;
     trace: a trace did not, and its result line says what did not
     happen; dns: a check failed; path: the SYNs were dropped or rejected
     on the way)
  2  usage or setup error (one line on stderr says what and on what)
  3  dns only: no answer
  Each command's page (synscope-ping(1), ...) gives its own details.";

#[derive(Debug, Parser)]
#[command(
    name = "synscope",
    version,
    propagate_version = true,
    about = "Look inside TCP and DNS exchanges with real hosts",
    long_about = "synscope crafts raw TCP segments itself, captures the replies with kernel \
timestamps, correlates them by sequence numbers and times every stage.\n\n\
The same flag means the same thing in every command: -W/--timeout how long an answer \
is waited for, --retries the tries after the first, -i/--interval the time between \
probes, -c/--count how many, -f/--file an input list (- for stdin), --json one JSON \
document, --ndjson one JSON line per result, --pcap a capture file, -q/--quiet no \
progress and no diagnostics.\n\n\
Durations are a number of seconds (0.2) or a number with a unit (1s, 200ms, 5ms, 1m), \
at most 24h.\n\n\
It needs raw sockets: run it as root, or give the binary the capabilities with\n  \
setcap cap_net_raw,cap_net_admin+ep synscope",
    after_long_help = ALL_EXIT_CODES
)]
/// The whole command line: global flags and one command.
pub struct Cli {
    /// `-v`, `-q`.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after its name.
#[derive(Debug, Clone, Copy, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Print debug logs (ignored packets, sockets, timings) to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// No progress bar and no diagnostics on stderr, only errors (results
    /// still go to stdout).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The commands (`synscope COMMAND`).
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(
        about = ping::ABOUT,
        long_about = ping::LONG_ABOUT,
        after_long_help = ping::EXIT_CODES
    )]
    /// `synscope ping`.
    Ping(PingArgs),
    #[command(
        about = scan::ABOUT,
        long_about = scan::LONG_ABOUT,
        after_long_help = scan::EXIT_CODES
    )]
    /// `synscope scan`.
    Scan(ScanArgs),
    #[command(
        about = trace::ABOUT,
        long_about = trace::LONG_ABOUT,
        after_long_help = trace::EXIT_CODES
    )]
    /// `synscope trace`.
    Trace(TraceArgs),
    /// `synscope demo`.
    #[cfg(feature = "demo")]
    #[command(about = demo::ABOUT, long_about = demo::LONG_ABOUT)]
    Demo(DemoArgs),
    #[command(
        about = dns::ABOUT,
        long_about = dns::LONG_ABOUT,
        after_long_help = dns::EXIT_CODES
    )]
    /// `synscope dns`.
    Dns(DnsArgs),
    #[command(
        about = exporter::ABOUT,
        long_about = exporter::LONG_ABOUT,
        after_long_help = exporter::EXIT_CODES
    )]
    /// `synscope exporter`.
    Exporter(ExporterArgs),
    #[command(
        about = path::ABOUT,
        long_about = path::LONG_ABOUT,
        after_long_help = path::EXIT_CODES
    )]
    /// `synscope path`.
    Path(path::PathArgs),
    /// `synscope completions`.
    #[command(about = completions::ABOUT, long_about = completions::LONG_ABOUT)]
    Completions(completions::CompletionsArgs),
}

impl Command {
    /// The subcommand's name, as typed (`scan`), for "see synscope scan --help".
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping(_) => "ping",
            Command::Scan(_) => "scan",
            Command::Trace(_) => "trace",
            #[cfg(feature = "demo")]
            Command::Demo(_) => "demo",
            Command::Dns(_) => "dns",
            Command::Exporter(_) => "exporter",
            Command::Path(_) => "path",
            Command::Completions(_) => "completions",
        }
    }
}

// ---- the outside world, seen by the step from arguments to settings ----

/// What turning arguments into settings may ask of the outside world: name
/// resolution, files, stdin and whether stderr is a terminal. [`SystemEnv`] is
/// the real one; tests hand a fixed one.
pub trait Env {
    /// The addresses of a host name or address literal, with `port`.
    fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
    /// The contents of a file.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// All of standard input.
    fn read_stdin(&self) -> std::io::Result<String>;
    /// Is stderr a terminal (progress bars are drawn only there)?
    fn stderr_is_terminal(&self) -> bool;
}

/// The real [`Env`]: the system resolver, the file system, the process's stdin and stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn read_stdin(&self) -> std::io::Result<String> {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    }
    fn stderr_is_terminal(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

// ---- arguments shared by several commands ----

/// `HOST[:PORT]`, `-p`, `-4`/`-6`: one target host and port (ping, trace, path).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Target: NAME, IPv4, IPv6, with an optional port: host:80, [2001:db8::2]:443.
    #[arg(value_name = "HOST[:PORT]")]
    pub target: String,
    /// Destination port (default 80, or the port given with the host).
    #[arg(short, long)]
    pub port: Option<u16>,
    /// `-4` / `-6`.
    #[command(flatten)]
    pub family: FamilyArgs,
}

/// `-4` / `-6`: which address family a name resolves to.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct FamilyArgs {
    /// Use IPv4 only (names resolve to their IPv4 address).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (names resolve to their IPv6 address).
    #[arg(short = '6')]
    pub ipv6: bool,
}

impl TargetArgs {
    /// The host as given and its resolved address and port (default port 80).
    pub fn resolve(&self, env: &dyn Env) -> Result<(String, SocketAddr), UsageError> {
        let (host, port_in_target) = split_host_port(&self.target)?;
        let port = match (self.port, port_in_target) {
            (Some(a), Some(b)) if a != b => {
                return Err(UsageError(format!(
                    "port given twice: -p {a} and '{}'",
                    self.target
                )));
            }
            (Some(0), _) => return Err(UsageError("bad port 0: expected 1-65535".into())),
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => 80,
        };
        let addr = resolve_in(env, &host, port, self.family.ipv4, self.family.ipv6)?;
        Ok((host, addr))
    }
}

/// `-I` and `--bare-syn`: how SYNs leave (every command that sends raw SYNs).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Sending")]
pub struct SynArgs {
    /// Send through this interface (SO_BINDTODEVICE) and capture only on it.
    #[arg(short = 'I', long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Send SYNs without any TCP option. By default a SYN carries what Linux
    /// sends (MSS, SACK-permitted, timestamps, window scale), so middleboxes
    /// treat it as real and changes to the options show. After a bare SYN
    /// the peer assumes an MSS of 536 (IPv4) or 1220 (IPv6), and the
    /// connection has no SACK, timestamps or window scaling.
    #[arg(long)]
    pub bare_syn: bool,
}

/// [`SynArgs`] plus `--source-port` (ping, scan, trace, path).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sending")]
pub struct SendArgs {
    /// `-I`, `--bare-syn`.
    #[command(flatten)]
    pub syn: SynArgs,
    /// Source port of the probes (default: a free port held while it is
    /// used: a fresh one per probe in ping and path, per trace in trace, one
    /// for the whole scan in scan). A fixed port gives every probe the same
    /// four-tuple (one flow for ECMP load balancers and firewalls); ping and
    /// path then have one probe in flight at a time, so an unanswered one
    /// costs its whole --timeout.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub source_port: Option<u16>,
}

impl SendArgs {
    /// How the probes leave, as the commands use it.
    pub fn settings(&self) -> SendSettings {
        SendSettings {
            source_port: self.source_port,
            interface: self.syn.interface.clone(),
            syn_options: !self.syn.bare_syn,
        }
    }
}

/// Validated [`SendArgs`]: how the probes leave (ping, scan, trace, path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSettings {
    /// `--source-port`; None: a free port held while it is used (per probe,
    /// per trace or per scan: see [`SendArgs`]).
    pub source_port: Option<u16>,
    /// `-I`; None: the route's interface.
    pub interface: Option<String>,
    /// Linux-like SYN options (off with `--bare-syn`).
    pub syn_options: bool,
}

/// `--ttl` (ping, scan, trace; path varies it hop by hop).
#[derive(Debug, Clone, Copy, Args)]
#[command(next_help_heading = "Sending")]
pub struct TtlArgs {
    /// IP TTL / hop limit of the probes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: u8,
}

/// `--json` / `--ndjson` (every command that reports).
#[derive(Debug, Clone, Copy, Default, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with = "ndjson")]
    pub json: bool,
    /// Print one JSON line per result as it happens, then a summary line.
    #[arg(long)]
    pub ndjson: bool,
}

impl OutputArgs {
    /// The format asked for; text when neither flag is given.
    pub fn format(&self) -> crate::report::OutputFormat {
        use crate::report::OutputFormat;
        match (self.json, self.ndjson) {
            (true, _) => OutputFormat::Json,
            (_, true) => OutputFormat::Ndjson,
            _ => OutputFormat::Text,
        }
    }
}

/// `--pcap FILE` (ping, scan: replies only, trace, path, dns: single queries).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Output")]
pub struct PcapArgs {
    /// Write every packet sent and received to this pcap file (nanosecond stamps).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// `--no-progress` (scan, bulk dns).
#[derive(Debug, Clone, Copy, Default, Args)]
#[command(next_help_heading = "Output")]
pub struct ProgressArgs {
    /// Never draw the progress bar (it is drawn on stderr only when that is a
    /// terminal, and never with --quiet).
    #[arg(long)]
    pub no_progress: bool,
}

impl ProgressArgs {
    /// Draw a progress bar: stderr is a terminal, and neither --no-progress nor --quiet.
    pub fn on(&self, global: GlobalArgs, env: &dyn Env) -> bool {
        !self.no_progress && !global.quiet && env.stderr_is_terminal()
    }
}

// ---- values ----

/// The longest duration any flag takes. Every timer adds durations to the
/// current instant (and a few double them); a day keeps all of that far from
/// any integer limit, and no wait of synscope's needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration argument: a number of seconds (`0.2`, `2`, as ping's `-i` and
/// `-W`) or humantime (`200ms`, `1s`, `1m 30s`); positive, at most
/// [`MAX_DURATION`]. The one place a duration argument becomes a setting, so no
/// later `Instant + Duration` overflows.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("bad duration '{s}' (examples: 0.2, 1s, 200ms, 5ms)"))?;
        if secs > MAX_DURATION.as_secs_f64() {
            return Err(format!("bad duration '{s}': at most 24h"));
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(t)
            .map_err(|e| format!("bad duration '{s}': {e} (examples: 0.2, 1s, 200ms, 5ms)"))?
    };
    if d.is_zero() {
        return Err(format!("bad duration '{s}': must be more than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("bad duration '{s}': at most 24h"));
    }
    Ok(d)
}

/// A usage error: what is wrong with which argument.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Splits `HOST[:PORT]`: `198.18.0.2:80`, `[2001:db8::2]:443`, `2001:db8::2`, `name:22`.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), UsageError> {
    let bad_port = |p: &str| UsageError(format!("bad port '{p}' in '{s}': expected 1-65535"));
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port(p)),
        Ok(n) => Ok(n),
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| UsageError(format!("missing ']' in '{s}'")))?;
        return match after {
            "" => Ok((host.to_string(), None)),
            a => match a.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
                None => Err(UsageError(format!("unexpected '{a}' after ']' in '{s}'"))),
            },
        };
    }
    if s.parse::<IpAddr>().is_ok() || s.matches(':').count() > 1 {
        return Ok((s.to_string(), None)); // a bare IPv6 address
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(parse_port(p)?))),
        None => Ok((s.to_string(), None)),
    }
}

/// [`resolve_in`] with the system resolver.
pub fn resolve(host: &str, port: u16, v4: bool, v6: bool) -> Result<SocketAddr, UsageError> {
    resolve_in(&SystemEnv, host, port, v4, v6)
}

/// Resolves a host name or address, honouring -4/-6. A name with both IPv4
/// and IPv6 addresses gives its IPv4 one unless `-6` is given (nmap's rule:
/// the same name means the same family on every host, whatever the resolver's order).
pub fn resolve_in(
    env: &dyn Env,
    host: &str,
    port: u16,
    v4: bool,
    v6: bool,
) -> Result<SocketAddr, UsageError> {
    if host.is_empty() {
        return Err(UsageError("empty host".into()));
    }
    let addrs = env
        .lookup(host, port)
        .map_err(|e| UsageError(format!("cannot resolve host '{host}': {e}")))?;
    let pick = if v6 {
        addrs.iter().find(|a| a.is_ipv6())
    } else {
        let first = if v4 { None } else { addrs.first() };
        addrs.iter().find(|a| a.is_ipv4()).or(first)
    };
    pick.copied().ok_or_else(|| {
        let fam = match (v4, v6) {
            (true, _) => "IPv4 ",
            (_, true) => "IPv6 ",
            _ => "",
        };
        UsageError(format!("host '{host}' has no {fam}address"))
    })
}

/// An [`Env`] with fixed names, files and stdin, for the settings' unit tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FixedEnv {
    pub hosts: Vec<(&'static str, Vec<IpAddr>)>,
    pub files: Vec<(&'static str, &'static [u8])>,
    pub stdin: &'static str,
    pub terminal: bool,
}

#[cfg(test)]
impl Env for FixedEnv {
    fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(a) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(a, port)]);
        }
        self.hosts
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a.iter().map(|a| SocketAddr::new(*a, port)).collect())
            .ok_or_else(|| std::io::Error::other("Name or service not known"))
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .iter()
            .find(|(p, _)| Path::new(p) == path)
            .map(|(_, d)| d.to_vec())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
    fn read_stdin(&self) -> std::io::Result<String> {
        Ok(self.stdin.to_string())
    }
    fn stderr_is_terminal(&self) -> bool {
        self.terminal
    }
}

/// Parses a command line (without the leading `synscope`) for the settings' tests.
#[cfg(test)]
pub(crate) fn parse(args: &[&str]) -> Result<Cli, String> {
    Cli::try_parse_from(std::iter::once("synscope").chain(args.iter().copied()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("198.18.0.2:80"), ("198.18.0.2".into(), Some(80)));
        assert_eq!(ok("[2001:db8::2]:443"), ("2001:db8::2".into(), Some(443)));
        assert_eq!(ok("[2001:db8::2]"), ("2001:db8::2".into(), None));
        assert_eq!(ok("2001:db8::2"), ("2001:db8::2".into(), None));
        assert_eq!(ok("localhost"), ("localhost".into(), None));
        assert!(split_host_port("h:0").is_err());
        assert!(split_host_port("h:70000").is_err());
        assert!(split_host_port("[2001:db8::2").is_err());
        assert!(split_host_port("[2001:db8::2]x").is_err());
    }

    #[test]
    fn a_name_means_ipv4_unless_minus_6() {
        let both = FixedEnv {
            hosts: vec![(
                "dual.test",
                vec![
                    "2001:db8::2".parse().unwrap(),
                    "198.18.0.2".parse().unwrap(),
                ],
            )],
            ..FixedEnv::default()
        };
        let r = |h, v4, v6| resolve_in(&both, h, 80, v4, v6);
        assert_eq!(
            r("dual.test", false, false).unwrap().ip().to_string(),
            "198.18.0.2"
        );
        assert!(r("dual.test", true, false).unwrap().is_ipv4());
        assert!(r("dual.test", false, true).unwrap().is_ipv6());
        assert!(r("::1", false, false).unwrap().is_ipv6());
        assert!(
            r("198.18.0.2", false, true)
                .unwrap_err()
                .0
                .contains("no IPv6 address")
        );
        assert!(
            r("nx.test", false, false)
                .unwrap_err()
                .0
                .contains("cannot resolve host 'nx.test'")
        );
        assert!(r("", false, false).is_err());
    }

    #[test]
    fn durations_are_seconds_or_humantime_and_bounded() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("86400"), Ok(MAX_DURATION));
        for huge in [
            "24h 1ns",
            "18446744073709551615s",
            "1000y",
            "86401",
            "1e300",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(
                e.contains("at most 24h") || e.contains("bad duration"),
                "{huge}: {e}"
            );
        }
        assert!(
            parse_duration("18446744073709551615")
                .unwrap_err()
                .contains("at most 24h")
        );
        for zero in ["0", "0.0", "0s"] {
            assert!(
                parse_duration(zero).unwrap_err().contains("more than zero"),
                "{zero}"
            );
        }
        for bad in ["", ".", "1.2.3", "fast", "-1", "NaN", "inf"] {
            assert!(
                parse_duration(bad).unwrap_err().contains("bad duration"),
                "{bad}"
            );
        }
    }

    #[test]
    fn quiet_and_verbose_are_global_and_exclusive() {
        let c = parse(&["ping", "198.18.0.2", "-q"]).unwrap();
        assert!(c.global.quiet && !c.global.verbose);
        let c = parse(&["-v", "dns", "a.test"]).unwrap();
        assert!(c.global.verbose);
        assert!(parse(&["scan", "-q", "-v", "198.18.0.2", "-p", "80"]).is_err());
    }

    #[test]
    fn every_subcommand_has_a_version_and_its_name() {
        use clap::CommandFactory;
        let top = Cli::command();
        for sub in top.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            let e = Cli::try_parse_from(["synscope", name, "-V"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion, "{name}");
        }
    }

    #[test]
    fn progress_needs_a_terminal_and_no_quiet() {
        let term = FixedEnv {
            terminal: true,
            ..FixedEnv::default()
        };
        let on = ProgressArgs { no_progress: false };
        let g = GlobalArgs::default();
        assert!(on.on(g, &term));
        assert!(!on.on(g, &FixedEnv::default()));
        assert!(!on.on(GlobalArgs { quiet: true, ..g }, &term));
        assert!(!ProgressArgs { no_progress: true }.on(g, &term));
    }
}
