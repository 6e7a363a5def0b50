//! Command-line arguments, and the one place where they become validated
//! settings; nothing after this re-parses strings.

use crate::report::OutputFormat;
use crate::report::ping::Expect;
use crate::scan::targets::{Range, parse_target};
use crate::scan::{PortList, Shard, TargetSet};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  the port answered as expected (--expect, default open)
  1  it did not (other verdict, or no answer at all)
  2  usage or setup error (bad arguments, unknown host, missing privileges)
  On Ctrl-C (SIGINT) or SIGTERM the summary so far is printed and the exit
  status is computed from the probes finished so far.";

#[derive(Debug, Parser)]
#[command(
    name = "synscope",
    version,
    about = "Look inside TCP and DNS exchanges with real hosts",
    long_about = "synscope crafts raw TCP segments itself, captures the replies with kernel \
timestamps, correlates them by sequence numbers and times every stage.\n\n\
It needs raw sockets: run it as root, or give the binary the capabilities with\n  \
setcap cap_net_raw,cap_net_admin+ep synscope",
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Print debug logs (ignored packets, sockets, timings) to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure TCP handshake latency like ping, with raw SYN probes.
    ///
    /// Each probe is one SYN; a SYN-ACK means open, an RST closed, an ICMP error
    /// filtered (the error is named), silence filtered (no answer). RTTs are the
    /// difference of the kernel's timestamps of the SYN leaving and the reply
    /// arriving. The local kernel answers each SYN-ACK with an RST, which frees
    /// the server's half-open state.
    ///
    /// Examples:
    ///   synscope ping 198.18.0.2:80 -c 5
    ///   synscope ping [2001:db8::2]:443 --interval 200ms --json
    ///   synscope ping db.example -p 5432 --expect closed -c 3
    #[command(after_long_help = EXIT_CODES, verbatim_doc_comment)]
    Ping(PingArgs),
    /// Stateless SYN scan of many hosts × ports, with sharding.
    ///
    /// Each probe's sequence number is a keyed hash (SipHash) of its 4-tuple, so
    /// replies are checked without per-probe state; probes go out in a
    /// pseudo-random order over the whole (host, port) space. Verdicts: open
    /// (SYN-ACK, then torn down with an RST), closed (RST), filtered (ICMP error,
    /// named) and no-response (after --retries).
    ///
    /// Examples:
    ///   synscope scan 198.18.0.2 -p-  --rate 200000
    ///   synscope scan 198.18.0.0/16 -p 22,80,443 --open --ndjson
    ///   synscope scan --targets-file hosts.txt --top-ports 100 --shard 0/4 --seed 7
    #[command(after_long_help = SCAN_EXIT_CODES, verbatim_doc_comment)]
    Scan(ScanArgs),
    /// Build a throwaway namespace lab and ping an open, a closed and a filtered port.
    ///
    /// Needs root (network namespaces, veth, nftables) and the `ip` and `nft` tools.
    /// Sends nothing outside the lab; removes everything it made when it ends.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct PingArgs {
    /// Target: NAME, IPv4, IPv6, with an optional port: host:80, [2001:db8::2]:443.
    #[arg(value_name = "HOST[:PORT]")]
    pub target: String,
    /// Destination port (default 80, or the port given with the host).
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Number of probes (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<u64>,
    /// Time between probes, e.g. 1s, 200ms, 5ms.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long each probe waits for its answer.
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Source port for every probe (default: a fresh free port per probe).
    #[arg(long)]
    pub source_port: Option<u16>,
    /// Send through this interface (SO_BINDTODEVICE) and capture only on it.
    #[arg(short = 'I', long)]
    pub interface: Option<String>,
    /// IP TTL / hop limit of the probes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: u8,
    /// Send a bare SYN without options (default: MSS, SACK-permitted, timestamps
    /// and window scale, like Linux, so middleboxes treat it as real).
    #[arg(long)]
    pub bare_syn: bool,
    /// The verdict that makes the exit status 0.
    #[arg(long, value_enum, default_value = "open")]
    pub expect: Expect,
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with = "ndjson")]
    pub json: bool,
    /// Print one JSON line per probe as it happens, then the summary.
    #[arg(long)]
    pub ndjson: bool,
}

pub const SCAN_EXIT_CODES: &str = "\
EXIT STATUS:
  0  the scan ran to its end (whatever it found)
  1  it was interrupted (SIGINT/SIGTERM); results so far are printed
  2  usage or setup error (bad targets or ports, missing privileges)";

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Targets: addresses, CIDR prefixes (198.18.0.0/16, 2001:db8::/120), ranges
    /// (198.18.0.1-198.18.0.9, 198.18.0.1-9) or names.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Read more targets from a file (one per line, # comments), or - for stdin.
    #[arg(long, value_name = "FILE")]
    pub targets_file: Option<String>,
    /// Leave these out (same forms as targets; repeat or separate with commas).
    #[arg(long, value_name = "TARGET", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Ports: 22,80,1000-2000; - for all (-p-).
    #[arg(short, long, value_name = "PORTS")]
    pub ports: Option<String>,
    /// Scan the N most common TCP ports (built-in list).
    #[arg(long, value_name = "N")]
    pub top_ports: Option<usize>,
    /// Probes per second, evenly paced.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate: u64,
    /// Extra rounds for probes that got no answer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// The longest wait for late replies after each round (it ends sooner once
    /// replies have stopped for several times the largest RTT seen).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Print only open ports.
    #[arg(long)]
    pub open: bool,
    /// This machine's part of the scan: I/N with 0 <= I < N. N machines with the
    /// same --seed probe every (host, port) exactly once together.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Seed of the probe order (the same on every shard).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Source port of every probe (default: a free port, held for the scan).
    #[arg(long)]
    pub source_port: Option<u16>,
    /// Send through this interface and capture only on it.
    #[arg(short = 'I', long)]
    pub interface: Option<String>,
    /// IP TTL / hop limit of the probes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: u8,
    /// Send bare SYNs without options.
    #[arg(long)]
    pub bare_syn: bool,
    /// Resolve names to IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Resolve names to IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with = "ndjson")]
    pub json: bool,
    /// Print one JSON line per result as replies arrive, then the summary.
    #[arg(long)]
    pub ndjson: bool,
    /// Never draw the progress bar (it is drawn on stderr only when that is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Validated settings of `synscope scan`.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub targets: TargetSet,
    pub ports: PortList,
    pub rate: u64,
    pub retries: u32,
    pub wait: Duration,
    pub open_only: bool,
    pub shard: Shard,
    pub seed: u64,
    pub source_port: Option<u16>,
    pub interface: Option<String>,
    pub ttl: u8,
    pub syn_options: bool,
    pub format: OutputFormat,
    pub progress: bool,
    pub verbose: bool,
}

impl ScanArgs {
    pub fn settings(&self, verbose: bool) -> Result<ScanSettings, UsageError> {
        let ports = match (&self.ports, self.top_ports) {
            (None, None) => {
                return Err(UsageError(
                    "give ports with -p (e.g. -p 22,80 or -p-) or --top-ports N".into(),
                ));
            }
            (Some(p), None) => PortList::parse(p).map_err(|e| UsageError(e.0))?,
            (None, Some(n)) => PortList::top(n).map_err(|e| UsageError(e.0))?,
            (Some(p), Some(n)) => PortList::parse(p)
                .map_err(|e| UsageError(e.0))?
                .union(&PortList::top(n).map_err(|e| UsageError(e.0))?),
        };
        let mut specs = self.targets.clone();
        if let Some(f) = &self.targets_file {
            let text = if f == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| UsageError(format!("read targets from stdin: {e}")))?;
                s
            } else {
                std::fs::read_to_string(f)
                    .map_err(|e| UsageError(format!("read targets file '{f}': {e}")))?
            };
            specs.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
        if specs.is_empty() {
            return Err(UsageError(
                "no targets: give addresses, prefixes, ranges or names, or --targets-file".into(),
            ));
        }
        let (v4, v6) = (self.ipv4, self.ipv6);
        let resolver = |name: &str| -> Result<IpAddr, String> {
            resolve(name, 0, v4, v6).map(|a| a.ip()).map_err(|e| e.0)
        };
        let parse = |list: &[String]| -> Result<Vec<Range>, UsageError> {
            list.iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_target(s, &resolver).map_err(|e| UsageError(e.0)))
                .collect()
        };
        let targets = TargetSet::build(&parse(&specs)?, &parse(&self.exclude)?)
            .map_err(|e| UsageError(e.0))?;
        let shard = match &self.shard {
            Some(s) => Shard::parse(s).map_err(UsageError)?,
            None => Shard::WHOLE,
        };
        if self.source_port == Some(0) {
            return Err(UsageError("--source-port must be 1-65535".into()));
        }
        let format = match (self.json, self.ndjson) {
            (true, _) => OutputFormat::Json,
            (_, true) => OutputFormat::Ndjson,
            _ => OutputFormat::Text,
        };
        Ok(ScanSettings {
            targets,
            ports,
            rate: self.rate,
            retries: self.retries,
            wait: self.wait,
            open_only: self.open,
            shard,
            seed: self.seed.unwrap_or_else(rand::random),
            source_port: self.source_port,
            interface: self.interface.clone(),
            ttl: self.ttl,
            syn_options: !self.bare_syn,
            format,
            progress: !self.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            verbose,
        })
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Probes per port.
    #[arg(short, long, default_value_t = 3)]
    pub count: u64,
}

/// humantime durations, positive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad duration '{s}': {e} (examples: 1s, 200ms, 5ms)"))?;
    if d.is_zero() {
        return Err(format!("bad duration '{s}': must be more than zero"));
    }
    Ok(d)
}

/// A usage error: what is wrong with which argument.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Validated settings of `synscope ping`.
#[derive(Debug, Clone)]
pub struct PingSettings {
    pub host: String,
    pub target: SocketAddr,
    pub count: Option<u64>,
    pub interval: Duration,
    pub timeout: Duration,
    pub source_port: Option<u16>,
    pub interface: Option<String>,
    pub ttl: u8,
    pub syn_options: bool,
    pub expect: Expect,
    pub format: OutputFormat,
    pub verbose: bool,
}

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

/// Resolves a host name or address, honouring -4/-6.
pub fn resolve(host: &str, port: u16, v4: bool, v6: bool) -> Result<SocketAddr, UsageError> {
    if host.is_empty() {
        return Err(UsageError("empty host".into()));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("cannot resolve host '{host}': {e}")))?
        .collect();
    let pick = addrs
        .iter()
        .find(|a| (!v4 || a.is_ipv4()) && (!v6 || a.is_ipv6()));
    pick.copied().ok_or_else(|| {
        let fam = if v4 { "IPv4" } else { "IPv6" };
        UsageError(format!("host '{host}' has no {fam} address"))
    })
}

impl PingArgs {
    pub fn settings(&self, verbose: bool) -> Result<PingSettings, UsageError> {
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
        if self.count == Some(0) {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if self.source_port == Some(0) {
            return Err(UsageError("--source-port must be 1-65535".into()));
        }
        let target = resolve(&host, port, self.ipv4, self.ipv6)?;
        let format = match (self.json, self.ndjson) {
            (true, _) => OutputFormat::Json,
            (_, true) => OutputFormat::Ndjson,
            _ => OutputFormat::Text,
        };
        Ok(PingSettings {
            host,
            target,
            count: self.count,
            interval: self.interval,
            timeout: self.timeout,
            source_port: self.source_port,
            interface: self.interface.clone(),
            ttl: self.ttl,
            syn_options: !self.bare_syn,
            expect: self.expect,
            format,
            verbose,
        })
    }
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
    fn settings_from_arguments() {
        let cli = Cli::try_parse_from([
            "synscope",
            "ping",
            "[2001:db8::2]:443",
            "-c",
            "3",
            "-i",
            "5ms",
        ])
        .unwrap();
        let Command::Ping(p) = cli.command else {
            panic!()
        };
        let s = p.settings(false).unwrap();
        assert_eq!(s.target, "[2001:db8::2]:443".parse().unwrap());
        assert_eq!((s.count, s.interval), (Some(3), Duration::from_millis(5)));
        assert!(s.syn_options);
        let cli = Cli::try_parse_from(["synscope", "ping", "198.18.0.2:80", "-p", "81"]).unwrap();
        let Command::Ping(p) = cli.command else {
            panic!()
        };
        assert!(p.settings(false).is_err());
        let cli = Cli::try_parse_from(["synscope", "ping", "198.18.0.2", "-6"]).unwrap();
        let Command::Ping(p) = cli.command else {
            panic!()
        };
        assert!(p.settings(false).unwrap_err().0.contains("no IPv6 address"));
        assert!(Cli::try_parse_from(["synscope", "ping", "h", "-i", "0s"]).is_err());
        assert!(Cli::try_parse_from(["synscope", "ping", "h", "--ttl", "0"]).is_err());
        assert!(Cli::try_parse_from(["synscope", "ping", "h", "--json", "--ndjson"]).is_err());
    }
}
