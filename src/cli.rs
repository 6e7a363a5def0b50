//! Command-line arguments, and the one place where they become validated
//! settings; nothing after this re-parses strings.

use crate::report::OutputFormat;
use crate::report::ping::Expect;
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
    /// Time a whole TCP connection stage by stage: handshake, data, teardown.
    ///
    /// synscope plays the client with raw segments: SYN, ACK, the request (if
    /// any), ACKs for what the server sends, then FIN (or RST) and the last ACK,
    /// and TIME_WAIT. It prints a ladder diagram with both sides' states and a
    /// table of stage times taken from the kernel's packet timestamps. While it
    /// runs, an nftables table (owner flag: it vanishes with the process, even
    /// on SIGKILL) keeps the local kernel from resetting exactly this flow.
    ///
    /// Examples:
    ///   synscope trace 198.18.0.2:80 --send 'GET / HTTP/1.0\r\n\r\n'
    ///   synscope trace 198.18.0.2:22                  # a banner server closes first?
    ///   synscope trace 198.18.0.2:80 --close rst --json
    ///   synscope trace 198.18.0.2:80 --count 20       # per-stage statistics
    ///   synscope trace 198.18.0.2:80 --half-open --max-wait 70s
    ///   synscope trace 198.18.0.2:80 --pcap trace.pcap
    #[command(after_long_help = TRACE_EXIT_CODES, verbatim_doc_comment)]
    Trace(TraceArgs),
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
    /// Write every packet sent and received to this pcap file (nanosecond stamps).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
}

pub const TRACE_EXIT_CODES: &str = "\
EXIT STATUS:
  0  every trace completed the handshake (half-open: got a SYN-ACK)
  1  a trace was refused, unanswered or interrupted
  2  usage or setup error";

#[derive(Debug, Args)]
pub struct TraceArgs {
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
    /// Send this request once connected; \r \n \t \\ are unescaped.
    #[arg(long, value_name = "STRING", conflicts_with = "send_file")]
    pub send: Option<String>,
    /// Send the contents of this file once connected (at most 1 MiB).
    #[arg(long, value_name = "FILE")]
    pub send_file: Option<std::path::PathBuf>,
    /// How we end the connection: fin (orderly) or rst (abort).
    #[arg(long, value_enum, default_value = "fin")]
    pub close: crate::probe::tcp_client::CloseMode,
    /// We close once the connection has been quiet this long (our data acknowledged).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub idle: Duration,
    /// How long we hold TIME_WAIT, answering retransmitted FINs (Linux holds 60s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub time_wait: Duration,
    /// First retransmission timeout of our segments (doubles on each retry).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub rto: Duration,
    /// Retransmissions of one segment before giving up.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Upper bound on one trace (default 10s; with --half-open 70s, the time
    /// Linux needs to give up on its SYN-ACK retransmissions).
    #[arg(long, value_parser = parse_duration)]
    pub max_wait: Option<Duration>,
    /// Send the SYN and never ACK the SYN-ACK: record the server's SYN-ACK
    /// retransmission schedule, then clean up with an RST.
    #[arg(long, conflicts_with_all = ["send", "send_file"])]
    pub half_open: bool,
    /// Repeat the trace N times and give per-stage statistics.
    #[arg(short, long, default_value_t = 1)]
    pub count: u64,
    /// Pause between traces.
    #[arg(short, long, default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Source port (default: a fresh free port per trace).
    #[arg(long)]
    pub source_port: Option<u16>,
    /// Send through this interface and capture only on it.
    #[arg(short = 'I', long)]
    pub interface: Option<String>,
    /// IP TTL / hop limit.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: u8,
    /// Send a SYN with only the MSS option (no timestamps, SACK, window scale).
    #[arg(long)]
    pub bare_syn: bool,
    /// Print one JSON document at the end.
    #[arg(long)]
    pub json: bool,
    /// Write every packet sent and received to this pcap file (nanosecond stamps).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
}

/// Validated settings of `synscope trace`.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub host: String,
    pub target: SocketAddr,
    pub payload: Vec<u8>,
    pub close: crate::probe::tcp_client::CloseMode,
    pub idle: Duration,
    pub time_wait: Duration,
    pub rto: Duration,
    pub retries: u32,
    pub max_wait: Duration,
    pub half_open: bool,
    pub count: u64,
    pub interval: Duration,
    pub source_port: Option<u16>,
    pub interface: Option<String>,
    pub ttl: u8,
    pub syn_options: bool,
    pub format: OutputFormat,
    pub pcap: Option<std::path::PathBuf>,
}

/// `\r`, `\n`, `\t`, `\\` and `\0` in a `--send` string.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some(o) => {
                out.push(b'\\');
                let mut b = [0u8; 4];
                out.extend_from_slice(o.encode_utf8(&mut b).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

impl TraceArgs {
    pub fn settings(&self) -> Result<TraceSettings, UsageError> {
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
        if self.count == 0 {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if self.source_port == Some(0) {
            return Err(UsageError("--source-port must be 1-65535".into()));
        }
        let max = crate::probe::tcp_client::MAX_PAYLOAD;
        let payload = match (&self.send, &self.send_file) {
            (Some(s), _) => unescape(s),
            (None, Some(path)) => {
                let data = std::fs::read(path)
                    .map_err(|e| UsageError(format!("read --send-file {}: {e}", path.display())))?;
                if data.len() > max {
                    return Err(UsageError(format!(
                        "--send-file {}: {} bytes, at most {max}",
                        path.display(),
                        data.len()
                    )));
                }
                data
            }
            (None, None) => Vec::new(),
        };
        if payload.len() > max {
            return Err(UsageError(format!("--send: at most {max} bytes")));
        }
        let target = resolve(&host, port, self.ipv4, self.ipv6)?;
        let max_wait = self.max_wait.unwrap_or(if self.half_open {
            Duration::from_secs(70)
        } else {
            Duration::from_secs(10)
        });
        Ok(TraceSettings {
            host,
            target,
            payload,
            close: self.close,
            idle: self.idle,
            time_wait: self.time_wait,
            rto: self.rto,
            retries: self.retries.min(15),
            max_wait,
            half_open: self.half_open,
            count: self.count,
            interval: self.interval,
            source_port: self.source_port,
            interface: self.interface.clone(),
            ttl: self.ttl,
            syn_options: !self.bare_syn,
            format: if self.json {
                OutputFormat::Json
            } else {
                OutputFormat::Text
            },
            pcap: self.pcap.clone(),
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
    pub pcap: Option<std::path::PathBuf>,
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
            pcap: self.pcap.clone(),
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
    fn trace_settings() {
        let cli = Cli::try_parse_from([
            "synscope",
            "trace",
            "198.18.0.2:8080",
            "--send",
            "GET / HTTP/1.0\\r\\n\\r\\n",
            "--close",
            "rst",
        ])
        .unwrap();
        let Command::Trace(t) = cli.command else {
            panic!()
        };
        let s = t.settings().unwrap();
        assert_eq!(s.target, "198.18.0.2:8080".parse().unwrap());
        assert_eq!(s.payload, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(s.close, crate::probe::tcp_client::CloseMode::Rst);
        assert_eq!(s.max_wait, Duration::from_secs(10));
        assert_eq!(unescape("a\\\\b\\x"), b"a\\b\\x");
        assert!(
            Cli::try_parse_from(["synscope", "trace", "h", "--half-open", "--send", "x"]).is_err()
        );
        let cli = Cli::try_parse_from(["synscope", "trace", "198.18.0.2", "--half-open"]).unwrap();
        let Command::Trace(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.settings().unwrap().max_wait, Duration::from_secs(70));
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
