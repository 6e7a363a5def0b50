//! Arguments and settings of `synscope trace`.

use super::{Env, OutputArgs, PcapArgs, SendArgs, TargetArgs, TtlArgs, UsageError, parse_duration};
use crate::probe::tcp_client::CloseMode;
use crate::report::OutputFormat;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// The one-line help of `synscope trace`.
pub const ABOUT: &str = "Time a whole TCP connection stage by stage: handshake, data, teardown.";

/// The long help of `synscope trace`.
pub const LONG_ABOUT: &str = "\
Time a whole TCP connection stage by stage: handshake, data, teardown.

synscope plays the client with raw segments: SYN, ACK, the request (if
any), ACKs for what the server sends, then FIN (or RST) and the last ACK,
and TIME_WAIT. It prints a ladder diagram with both sides' states and a
table of stage times taken from the kernel's packet timestamps. While it
runs, an nftables table (owner flag: it vanishes with the process, even
on SIGKILL) keeps the local kernel from resetting exactly this flow.

The SYN-ACK's fingerprint (TTL / hop limit, window, option layout,
timestamp clock) is compared with the server's later segments: `port:
open (syn-proxy: ttl 62, later 61, window 0, later 64)` when a SYN proxy
answered for the server, `port: open (verified: ...)` when they match
(JSON: `verification`).

Examples:
  synscope trace 198.18.0.2:80 --send 'GET / HTTP/1.0\\r\\n\\r\\n'
  synscope trace 198.18.0.2:22                  # a banner server closes first?
  synscope trace 198.18.0.2:80 --close rst --json
  synscope trace 198.18.0.2:80 --count 20       # per-stage statistics
  synscope trace 198.18.0.2:80 -c 5 --ndjson    # a `trace` line per run, then `summary`
  synscope trace 198.18.0.2:80 --half-open -W 70s
  synscope trace 198.18.0.2:80 --pcap trace.pcap";

/// The EXIT STATUS section of `synscope trace --help`.
pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  every trace did all it was asked: the handshake, the request
     (--send, --send-file) acknowledged in full, and the teardown --close
     asks for (fin: both FINs sent and acknowledged; rst: our RST)
     (half-open: got a SYN-ACK)
  1  a trace did not: refused, unanswered, ended by an ICMP error, request
     not acknowledged (e.g. a zero window), reset by the peer, given up
     after unanswered retransmissions, still open at --timeout, or
     interrupted; its result: INCOMPLETE line (JSON: succeeded,
     not_done) says what did not happen
  2  usage or setup error";

/// Arguments of `synscope trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// `HOST[:PORT]`, `-p`, `-4`/`-6`.
    #[command(flatten)]
    pub dest: TargetArgs,
    /// Send this request once connected; \r \n \t \\ are unescaped.
    #[arg(long, value_name = "STRING", conflicts_with = "send_file")]
    pub send: Option<String>,
    /// Send the contents of this file once connected (at most 1 MiB).
    #[arg(long, value_name = "FILE")]
    pub send_file: Option<std::path::PathBuf>,
    /// How we end the connection: fin (orderly) or rst (abort).
    #[arg(long, value_enum, default_value = "fin")]
    pub close: CloseArg,
    /// We close once the connection has been quiet this long (our data acknowledged).
    #[arg(long, default_value = "200ms", value_name = "DURATION", value_parser = parse_duration)]
    pub idle: Duration,
    /// How long we hold TIME_WAIT, answering retransmitted FINs (Linux holds 60s).
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub time_wait: Duration,
    /// First retransmission timeout of our segments (doubles on each retry).
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub rto: Duration,
    /// Retransmissions of one segment before giving up, 0-15.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=15))]
    pub retries: u32,
    /// How long one trace may take before it is ended (default 10s; with
    /// --half-open 70s, the time Linux needs to give up on its SYN-ACK
    /// retransmissions).
    #[arg(short = 'W', long, alias = "max-wait", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Send the SYN and never ACK the SYN-ACK: record the server's SYN-ACK
    /// retransmission schedule, then clean up with an RST.
    #[arg(long, conflicts_with_all = ["send", "send_file"])]
    pub half_open: bool,
    /// Repeat the trace N times and give per-stage statistics.
    #[arg(short, long, default_value_t = 1)]
    pub count: u64,
    /// Pause between traces: seconds (0.5) or with a unit (100ms).
    #[arg(short, long, default_value = "100ms", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,
    /// `-I`, `--bare-syn`, `--source-port`, `--ttl`.
    #[command(flatten)]
    pub send_args: SendArgs,
    /// `--ttl`.
    #[command(flatten)]
    pub ttl: TtlArgs,
    /// `--json`, `--ndjson`.
    #[command(flatten)]
    pub output: OutputArgs,
    /// `--pcap`.
    #[command(flatten)]
    pub pcap: PcapArgs,
}

/// `--close`: the command line's names of [`CloseMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloseArg {
    /// An orderly close with FIN.
    Fin,
    /// An abort with RST (like SO_LINGER 0).
    Rst,
}

impl From<CloseArg> for CloseMode {
    fn from(c: CloseArg) -> CloseMode {
        match c {
            CloseArg::Fin => CloseMode::Fin,
            CloseArg::Rst => CloseMode::Rst,
        }
    }
}

/// Validated settings of `synscope trace`.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// The target as given.
    pub host: String,
    /// Its resolved address and port.
    pub target: SocketAddr,
    /// The request (`--send` unescaped, or `--send-file`); empty: none.
    pub payload: Vec<u8>,
    /// `--close`: FIN or RST.
    pub close: CloseMode,
    /// `--idle`: quiet time before we close.
    pub idle: Duration,
    /// `--time-wait`: how long we hold TIME_WAIT.
    pub time_wait: Duration,
    /// `--rto`: the first retransmission timeout.
    pub rto: Duration,
    /// `--retries`: retransmissions of one segment.
    pub retries: u32,
    /// `--timeout`: the bound on one trace.
    pub max_wait: Duration,
    /// `--half-open`: never ACK the SYN-ACK.
    pub half_open: bool,
    /// `--count`: traces, at least 1.
    pub count: u64,
    /// `--interval`: pause between traces.
    pub interval: Duration,
    /// `--ttl`.
    pub ttl: u8,
    /// Text or JSON.
    pub format: OutputFormat,
    /// `--pcap`: the capture file; None: none written.
    pub pcap: Option<std::path::PathBuf>,
    /// `--source-port`, `-I`, `--bare-syn`.
    pub send: crate::cli::SendSettings,
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
    /// Validates the arguments; the name and `--send-file` are read through `env`.
    pub fn settings(&self, env: &dyn Env) -> Result<TraceSettings, UsageError> {
        if self.count == 0 {
            return Err(UsageError("--count must be at least 1".into()));
        }
        let max = crate::probe::tcp_client::MAX_PAYLOAD;
        let payload = match (&self.send, &self.send_file) {
            (Some(s), _) => unescape(s),
            (None, Some(path)) => {
                let data = env
                    .read(path)
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
        let (host, target) = self.dest.resolve(env)?;
        let max_wait = self.timeout.unwrap_or(if self.half_open {
            Duration::from_secs(70)
        } else {
            Duration::from_secs(10)
        });
        Ok(TraceSettings {
            host,
            target,
            payload,
            close: self.close.into(),
            idle: self.idle,
            time_wait: self.time_wait,
            rto: self.rto,
            retries: self.retries,
            max_wait,
            half_open: self.half_open,
            count: self.count,
            interval: self.interval,
            ttl: self.ttl.ttl,
            format: self.output.format(),
            pcap: self.pcap.pcap.clone(),
            send: self.send_args.settings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, FixedEnv, parse};

    fn trace_in(env: &FixedEnv, args: &[&str]) -> Result<TraceSettings, String> {
        let mut v = vec!["trace"];
        v.extend(args);
        let cli = parse(&v)?;
        let Command::Trace(t) = cli.command else {
            panic!("not trace")
        };
        t.settings(env).map_err(|e| e.0)
    }

    fn trace(args: &[&str]) -> Result<TraceSettings, String> {
        trace_in(&FixedEnv::default(), args)
    }

    #[test]
    fn trace_settings() {
        let s = trace(&[
            "198.18.0.2:8080",
            "--send",
            "GET / HTTP/1.0\\r\\n\\r\\n",
            "--close",
            "rst",
        ])
        .unwrap();
        assert_eq!(s.target, "198.18.0.2:8080".parse().unwrap());
        assert_eq!(s.payload, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(s.close, CloseMode::Rst);
        assert_eq!(s.max_wait, Duration::from_secs(10));
        assert_eq!(unescape("a\\\\b\\x"), b"a\\b\\x");
        assert!(trace(&["h", "--half-open", "--send", "x"]).is_err());
        let s = trace(&["198.18.0.2", "--half-open"]).unwrap();
        assert_eq!(s.max_wait, Duration::from_secs(70));
        // -W / --timeout, and the old --max-wait
        for w in [["-W", "3"], ["--timeout", "3s"], ["--max-wait", "3s"]] {
            let s = trace(&["198.18.0.2", w[0], w[1]]).unwrap();
            assert_eq!(s.max_wait, Duration::from_secs(3), "{w:?}");
        }
        let s = trace(&["198.18.0.2", "--retries", "15", "-i", "0.5", "--json"]).unwrap();
        assert_eq!((s.retries, s.interval), (15, Duration::from_millis(500)));
        assert!(trace(&["198.18.0.2", "--retries", "16"]).is_err());
        assert_eq!(s.format, OutputFormat::Json);
        let s = trace(&["198.18.0.2", "--ndjson"]).unwrap();
        assert_eq!(s.format, OutputFormat::Ndjson);
        assert!(trace(&["198.18.0.2", "--ndjson", "--json"]).is_err());
        assert!(
            trace(&["198.18.0.2", "-c", "0"])
                .unwrap_err()
                .contains("--count")
        );
    }

    #[test]
    fn send_file_through_the_env() {
        let env = FixedEnv {
            files: vec![("req.txt", b"HEAD / HTTP/1.0\r\n\r\n")],
            ..FixedEnv::default()
        };
        let s = trace_in(&env, &["198.18.0.2", "--send-file", "req.txt"]).unwrap();
        assert_eq!(s.payload, b"HEAD / HTTP/1.0\r\n\r\n");
        let e = trace_in(&env, &["198.18.0.2", "--send-file", "nope"]).unwrap_err();
        assert!(e.contains("read --send-file nope"), "{e}");
    }
}
