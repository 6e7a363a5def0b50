//! Command-line arguments, and the one place where they become validated
//! settings; nothing after this re-parses strings.

use crate::report::OutputFormat;
use crate::report::ping::Expect;
use crate::scan::targets::{Range, parse_target};
use crate::scan::{PortList, Shard, TargetSet};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub mod path;

pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  the port answered as expected (--expect, default open)
  1  it did not (other verdict, or no answer at all); with --verify, a
     SYN-ACK from a host that answers every port (its canary ports answer
     too) is not counted as open
  2  usage or setup error (bad arguments, unknown host, missing privileges)
  On Ctrl-C (SIGINT) or SIGTERM the summary so far is printed and the exit
  status is computed from the probes finished so far.";

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
    about = "Look inside TCP and DNS exchanges with real hosts",
    long_about = "synscope crafts raw TCP segments itself, captures the replies with kernel \
timestamps, correlates them by sequence numbers and times every stage.\n\n\
Durations (1s, 200ms, 5ms) are at most 24h.\n\n\
It needs raw sockets: run it as root, or give the binary the capabilities with\n  \
setcap cap_net_raw,cap_net_admin+ep synscope",
    after_long_help = ALL_EXIT_CODES
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
    /// Each target is probed from the source address and interface of its own
    /// route. On-link targets (a directly attached Ethernet link) are first
    /// asked for with ARP / Neighbor Solicitation: only hosts that answer get
    /// SYNs, the others are reported once as `down (no ARP reply)`. Network and
    /// broadcast addresses of on-link prefixes are skipped. A full send queue
    /// slows the scan down, it never ends it.
    ///
    /// Examples:
    ///   synscope scan 198.18.0.2 -p-  --rate 200000
    ///   synscope scan 198.18.0.0/16 -p 22,80,443 --open --ndjson
    ///   synscope scan 198.18.200.0/24 -p 80          (a local LAN: ARP first)
    ///   synscope scan 127.0.0.1 198.18.200.2 198.18.220.5 -p 80,81
    ///   synscope scan --targets-file hosts.txt --top-ports 100 --shard 0/4 --seed 7
    #[command(after_long_help = SCAN_EXIT_CODES, verbatim_doc_comment)]
    Scan(ScanArgs),
    /// Time a whole TCP connection stage by stage: handshake, data, teardown.
    ///
    /// synscope plays the client with raw segments: SYN, ACK, the request (if
    /// any), ACKs for what the server sends, then FIN (or RST) and the last ACK,
    /// and TIME_WAIT. It prints a ladder diagram with both sides' states and a
    /// table of stage times taken from the kernel's packet timestamps. While it
    /// runs, an nftables table (owner flag: it vanishes with the process, even
    /// on SIGKILL) keeps the local kernel from resetting exactly this flow.
    ///
    /// The SYN-ACK's fingerprint (TTL / hop limit, window, option layout,
    /// timestamp clock) is compared with the server's later segments: `port:
    /// open (syn-proxy: ttl 62, later 61, window 0, later 64)` when a SYN proxy
    /// answered for the server, `port: open (verified: ...)` when they match
    /// (JSON: `verification`).
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
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Query DNS servers with raw UDP packets, check answers, resolve lists fast.
    ///
    /// Each query is a DNS message in a UDP datagram built by synscope (random
    /// source port, random id), timed with kernel timestamps; an answer counts only
    /// if its server, ports, id and question match. A truncated (TC) answer is
    /// repeated over TCP and both timings are shown. With several @SERVERs every
    /// server is asked at once and the answers are compared. An ICMP error quoting
    /// a query (port unreachable, ...) ends that query at once, with the reason.
    ///
    /// Without CAP_NET_RAW (or with --no-raw) queries, single or bulk, go out on
    /// ordinary UDP sockets instead, timed by those sockets' kernel TX and RX
    /// stamps: no privilege needed. The output says which timed it
    /// (`timed by: raw capture` or `timed by: socket timestamps`).
    ///
    /// Bulk (--file): one `name[,type[,server]]` per line, each to every
    /// @SERVER (--spread: to one, in turn), every --expect* checked per query;
    /// NDJSON (or --json, --short) and a summary with per-check failure counts.
    ///
    /// Examples:
    ///   synscope dns example.com
    ///   synscope dns www.lab.test A AAAA @198.18.0.2
    ///   synscope dns lab.test MX @198.18.0.2 @2001:db8::2 --json
    ///   synscope dns -x 198.18.0.10 @198.18.0.2 --short
    ///   synscope dns a.lab.test @198.18.0.2 --expect 198.18.0.10 --max-time 50ms
    ///   synscope dns nx.lab.test @198.18.0.2 --expect-rcode NXDOMAIN
    ///   synscope dns a.lab.test @198.18.0.2 --no-raw
    ///   synscope dns www.signed.test @198.18.0.2:8053 --expect-ad --expect-signed
    ///   synscope dns --file names.txt @198.18.0.2 --rate 50000 > results.ndjson
    ///   synscope dns -f names.txt @198.18.0.2 @198.18.0.3 --spread --expect-rcode NOERROR
    #[command(after_long_help = DNS_EXIT_CODES, verbatim_doc_comment)]
    Dns(DnsArgs),
    /// Run SYN, handshake and DNS probes continuously for Prometheus.
    ///
    /// The probes of a TOML config run at their intervals (one at a time per
    /// probe, spread over time per target); their kernel-timestamped stage times
    /// are served on http://LISTEN/metrics as histograms
    /// (synscope_stage_duration_seconds{probe,stage}), with counters of probes,
    /// answers by verdict, losses (an unanswered or retransmitted SYN is loss,
    /// never latency), failed DNS checks and ignored packets. /probe?target=
    /// HOST:PORT&module=NAME runs probe NAME once against the target and
    /// answers like blackbox_exporter (probe_success, probe_duration_seconds).
    /// Every socket is opened at start, then every capability is dropped;
    /// SIGHUP reloads the config (counters carry on) unless it needs a new
    /// source address (refused: restart); SIGTERM stops it.
    ///
    /// Config (each [[probe]]: name, kind = syn | handshake | dns, target,
    /// interval, timeout ≤ interval; handshake: request, close = fin | rst;
    /// dns: query, type, expect, expect_contains, expect_rcode, expect_regex,
    /// max_time; syn, handshake: bare_syn):
    ///   [[probe]]
    ///   name = "web"
    ///   kind = "syn"
    ///   target = "198.18.0.2:80"
    ///   interval = "1s"
    ///   timeout = "500ms"
    ///
    /// Examples:
    ///   synscope exporter --config probes.toml
    ///   synscope exporter --config probes.toml --listen [::1]:9799
    ///   curl 'http://127.0.0.1:9799/probe?target=198.18.0.2:443&module=web'
    #[command(after_long_help = EXPORTER_EXIT_CODES, verbatim_doc_comment)]
    Exporter(ExporterArgs),
    /// Find where a port's SYNs die: a TCP traceroute to the real port.
    ///
    /// SYNs to HOST:PORT with TTL / hop limit 1, 2, 3, ... (--count per hop, all
    /// in flight at once, timed by kernel timestamps). Each router answers the
    /// SYN whose TTL ran out there with ICMP time-exceeded; the destination
    /// answers with a SYN-ACK or an RST; a filter with an ICMP error or nothing.
    /// The result names the last hop that forwarded and the hop that dropped or
    /// rejected. Each time-exceeded quotes our SYN as that router saw it: the
    /// ladder shows, at the first hop whose quote shows it, what changed against
    /// what was sent (MSS clamped, window scale / SACK / timestamps stripped,
    /// DSCP or ECN rewritten, ECE/CWR bleached, addresses and ports rewritten by
    /// NAT, IP ID, TTL). A router quotes a SYN as it arrived: a change made by
    /// hop N on its way out shows at hop N+1. When the destination's answer
    /// crossed fewer routers back (by its TTL) than the SYNs took out, a note
    /// says something nearer answered for it (a SYN proxy, a load balancer).
    /// Hops go out 5 ahead of the farthest answer; 5 silent hops end the run.
    ///
    /// Examples:
    ///   synscope path 198.18.4.2:443
    ///   synscope path [2001:db8:4::2]:8080 -c 5 --json
    ///   synscope path 198.18.4.2:8081 --ecn --tos 0xb8
    ///   synscope path db.example -p 5432 -m 20 -W 2s
    #[command(after_long_help = path::PATH_EXIT_CODES, verbatim_doc_comment)]
    Path(path::PathArgs),
}

pub const EXPORTER_EXIT_CODES: &str = "\
EXIT STATUS:
  0  stopped by SIGTERM or SIGINT
  2  usage or setup error: a bad config (one line says which file, line and
     field), the listen address taken, missing privileges
  A bad config on SIGHUP is reported on stderr and the running one stays.";

/// Arguments of `synscope exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// The TOML file listing the probes.
    #[arg(short, long, value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Where to serve /metrics and /probe (default: the config's `listen`,
    /// else 127.0.0.1:9799).
    #[arg(short, long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

impl ExporterArgs {
    pub fn settings(&self) -> crate::cmd::exporter::ExporterSettings {
        crate::cmd::exporter::ExporterSettings {
            config: self.config.clone(),
            listen: self.listen,
        }
    }
}

/// `HOST[:PORT]`, `-p`, `-4`/`-6`: one target host and port (ping, trace).
#[derive(Debug, Args)]
pub struct TargetArgs {
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
}

impl TargetArgs {
    /// The host as given and its resolved address and port (default port 80).
    pub fn resolve(&self) -> Result<(String, SocketAddr), UsageError> {
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
        let addr = resolve(&host, port, self.ipv4, self.ipv6)?;
        Ok((host, addr))
    }
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub dest: TargetArgs,
    /// Number of probes (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<u64>,
    /// Time between probes, e.g. 1s, 200ms, 5ms, down to 1ns (as fast as
    /// possible). Probes in flight are bounded (one reserved source port each:
    /// half the ephemeral range, within the open-file limit; one with
    /// --source-port); when that many are unanswered, the next waits, and
    /// stderr says so once.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long each probe waits for its answer, from the kernel's stamp of
    /// its SYN leaving: a reply the kernel stamped later counts as loss
    /// (`late` among the ignored packets).
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Source port for every probe (default: a fresh free port per probe); one
    /// probe is in flight at a time.
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
    /// Check that the SYN-ACK really comes from the server. First, SYNs to 3
    /// random closed-on-any-normal-host canary ports (49152-65535): if all
    /// answer SYN-ACK, the host answers every port (tarpit/proxy), said once,
    /// and its SYN-ACKs are not counted as open. Then each SYN-ACK's handshake
    /// is completed from raw (ACK, then a keepalive-style probe the server
    /// ACKs), the server's next segments are compared with the SYN-ACK (TTL,
    /// window, options, timestamp clock) and the connection is reset:
    /// `open (syn-proxy: ttl 62, later 61, window 0, later 63)` when they
    /// differ, `open (verified)` when not. An RST whose TTL or IP ID is not the
    /// host's is shown as `closed (rst not from the host?: ...)`. The kernel's
    /// own RSTs to the target port are held back by an nftables rule for the
    /// run. Example: synscope ping 198.18.4.2:8090 -c 3 --verify
    #[arg(long)]
    pub verify: bool,
}

pub const TRACE_EXIT_CODES: &str = "\
EXIT STATUS:
  0  every trace did all it was asked: the handshake, the request
     (--send, --send-file) acknowledged in full, and the teardown --close
     asks for (fin: both FINs sent and acknowledged; rst: our RST)
     (half-open: got a SYN-ACK)
  1  a trace did not: refused, unanswered, ended by an ICMP error, request
     not acknowledged (e.g. a zero window), reset by the peer, given up
     after unanswered retransmissions, still open at --max-wait, or
     interrupted; its result: INCOMPLETE line (JSON: succeeded,
     not_done) says what did not happen
  2  usage or setup error";

#[derive(Debug, Args)]
pub struct TraceArgs {
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

/// `--close`: the command line's spelling of [`CloseMode`](crate::probe::tcp_client::CloseMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloseArg {
    /// An orderly close with FIN.
    Fin,
    /// An abort with RST (like SO_LINGER 0).
    Rst,
}

impl From<CloseArg> for crate::probe::tcp_client::CloseMode {
    fn from(c: CloseArg) -> Self {
        match c {
            CloseArg::Fin => Self::Fin,
            CloseArg::Rst => Self::Rst,
        }
    }
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
        let (host, target) = self.dest.resolve()?;
        let max_wait = self.max_wait.unwrap_or(if self.half_open {
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

pub const SCAN_EXIT_CODES: &str = "\
EXIT STATUS:
  0  the scan ran to its end (whatever it found)
  1  it was interrupted (SIGINT/SIGTERM): results so far and the summary are
     printed, with the pairs never sent counted as not probed (a second
     signal ends it at once, without them)
  2  usage or setup error (bad targets or ports, missing privileges)";

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Targets: addresses, CIDR prefixes (198.18.0.0/16, 2001:db8::/120), ranges
    /// (198.18.0.1-198.18.0.9, 198.18.0.1-9) or names (IPv4 unless -6); - reads
    /// them from stdin, one per line.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Read more targets from a file (one per line, # comments), or - for stdin.
    #[arg(long, value_name = "FILE")]
    pub targets_file: Option<String>,
    /// Leave these out (same forms as targets; repeat or separate with commas).
    #[arg(long, value_name = "TARGET", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Ports: 22,80,1000-2000; a range open at its end runs to 65535 (1024- is
    /// 1024-65535, 1- every port); - for all (-p-).
    #[arg(short, long, value_name = "PORTS")]
    pub ports: Option<String>,
    /// Scan the N most common TCP ports (built-in list).
    #[arg(long, value_name = "N")]
    pub top_ports: Option<usize>,
    /// Probes per second: `auto` (closed-loop: starts at 20,000/s, ramps up
    /// while replies keep pace, backs off when they stop, see docs/rate.md), or
    /// a fixed number, evenly paced (e.g. --rate 10000).
    #[arg(long, default_value = "auto", value_parser = parse_scan_rate)]
    pub rate: ScanRate,
    /// Lowest rate `--rate auto` may fall to (probes/s).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub min_rate: u64,
    /// Highest rate `--rate auto` may reach (probes/s).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_rate: u64,
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
    /// This machine's part of the scan: I/N with 0 <= I < N. N machines running
    /// the same scan probe every (host, port) exactly once together: without
    /// --seed the order's seed is derived from the targets, ports and N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Seed of the probe order (the same on every shard; default: random, or
    /// with --shard derived from the targets, ports and shard count).
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
    /// Probe on-link targets without asking for them first. By default,
    /// targets on a directly attached Ethernet link are resolved with ARP
    /// (IPv4) or Neighbor Solicitation (IPv6) before any SYN: only hosts that
    /// answer get SYNs (sent to their Ethernet address), the others are
    /// reported once as `down (no ARP reply)`.
    /// Example: synscope scan 198.18.200.0/24 -p 80 --no-discovery
    #[arg(long)]
    pub no_discovery: bool,
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
    /// Check each open port: complete its handshake, compare the SYN-ACK with
    /// the server's next segments (TTL, window, options, timestamp clock),
    /// then reset it; a SYN proxy shows as `syn-ack (syn-proxy: ttl 62, later
    /// 61, ...)`. Closed ports' RSTs are compared with the host's own (its
    /// canaries' RSTs): an injected one shows as `rst not from the host?`.
    /// Costs a handshake per open port, and canaries for every host that
    /// answered. Example: synscope scan 198.18.4.2 -p 80,8090 --verify
    #[arg(long)]
    pub verify: bool,
    /// Send no canaries. By default a host's first SYN-ACK sends SYNs to 3
    /// random unscanned ports in 49152-65535 (closed on a normal host); a
    /// host that answers all of them answers every port (tarpit, proxy): it
    /// is reported once, and its SYN-ACKs are not counted as open.
    #[arg(long)]
    pub no_canaries: bool,
    /// Probes per block of state (tests: many blocks from a small scan).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub block_size: Option<u64>,
}

pub const DNS_EXIT_CODES: &str = "\
EXIT STATUS:
  0  every query was answered and every check passed
  1  a check failed (--expect, --expect-contains, --expect-rcode, --expect-regex,
     --max-time, --expect-ad, --expect-signed); one line on stderr says which
     and why
  2  usage or setup error (bad arguments, no server, missing privileges)
  3  no answer: a server did not answer after every retry, or an ICMP error
     (e.g. port-unreachable) ended a query (bulk: some query got no answer)
  Bulk (--file): every query is checked, and the status is the worst outcome:
  2 if some line could not be read or parsed (not UTF-8, bad name, type or
  server; each is reported with its line number, and the other lines are still
  queried), else 3 if some query got no answer, else 1 if some check failed,
  else 0.
  On SIGINT or SIGTERM the run stops (bulk: the summary so far is printed,
  with \"interrupted\": true) and the status is 1.";

#[derive(Debug, Args)]
pub struct DnsArgs {
    /// NAME [TYPE...] [@SERVER...]: types A AAAA CNAME MX NS TXT SOA PTR SRV CAA
    /// ANY TYPEnnn (default A); servers as @198.18.0.2, @[2001:db8::2]:5353, @name
    /// (default: the first nameserver of /etc/resolv.conf).
    #[arg(value_name = "NAME|TYPE|@SERVER", allow_hyphen_values = false)]
    pub args: Vec<String>,
    /// Reverse lookup: query the PTR record of this address.
    #[arg(short = 'x', value_name = "ADDR")]
    pub reverse: Option<IpAddr>,
    /// EDNS0 UDP payload size advertised, 512 to 65535, e.g. --bufsize 4096 (as
    /// kdig +bufsize=4096). Answers bigger than the path MTU arrive in IP
    /// fragments, which synscope reassembles; an answer bigger than the size
    /// comes back truncated (TC) and is repeated over TCP.
    #[arg(long, default_value_t = 1232, value_parser = clap::value_parser!(u16).range(512..))]
    pub bufsize: u16,
    /// Set the EDNS0 DO (DNSSEC OK) bit.
    #[arg(long = "do")]
    pub dnssec_ok: bool,
    /// EDNS Client Subnet option: ADDR/PREFIX, e.g. 198.18.0.0/24.
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub ecs: Option<String>,
    /// Send no OPT record (plain RFC 1035: answers above 512 bytes come truncated).
    #[arg(long, conflicts_with_all = ["dnssec_ok", "ecs", "expect_ad", "expect_signed"])]
    pub no_edns: bool,
    /// Clear the RD (recursion desired) bit.
    #[arg(long)]
    pub norecurse: bool,
    /// Do not repeat a truncated (TC) answer over TCP; show it as it is.
    #[arg(long)]
    pub ignore_tc: bool,
    /// Time queries (single and bulk) with ordinary UDP sockets' kernel
    /// timestamps (TX stamps from the error queue, RX stamps on each answer)
    /// instead of raw sockets and a packet capture. Without CAP_NET_RAW this
    /// is what happens anyway; the output says which timed it (`timed by:`).
    #[arg(long)]
    pub no_raw: bool,
    /// Retries after the first attempt, per query.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Wait for an answer, per attempt (e.g. 2s, 300ms).
    #[arg(short = 'W', long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print only the answers' data, one per line (like dig +short).
    #[arg(long, conflicts_with_all = ["json", "ndjson"])]
    pub short: bool,
    /// Print one JSON document at the end.
    #[arg(long, conflicts_with = "ndjson")]
    pub json: bool,
    /// Print one JSON line per query (bulk: per name), then a summary line.
    #[arg(long)]
    pub ndjson: bool,
    /// The answer set (data of the answers of the queried type) must be exactly
    /// these; `--expect` with no value expects an empty answer (NODATA).
    #[arg(long, num_args = 0.., value_name = "VALUE")]
    pub expect: Option<Vec<String>>,
    /// The answer set must contain these.
    #[arg(long, num_args = 1.., value_name = "VALUE")]
    pub expect_contains: Vec<String>,
    /// The response code must be this: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    #[arg(long, value_name = "RCODE")]
    pub expect_rcode: Option<String>,
    /// At least one answer's data must match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub expect_regex: Option<String>,
    /// The AD bit must be set: the resolver validated the answer with DNSSEC.
    /// Sets the DO bit (a resolver sets AD only for a query with DO or AD).
    #[arg(long)]
    pub expect_ad: bool,
    /// Every RRset of the answer section must come with an RRSIG covering it
    /// (same owner, same type); with an empty answer (NXDOMAIN, NODATA) the
    /// authority section must hold RRSIGs. Sets the DO bit.
    #[arg(long)]
    pub expect_signed: bool,
    /// The answer must arrive within this time (e.g. 50ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_time: Option<Duration>,
    /// Bulk: read `name[,type[,server]]` lines from this file (`-` for stdin).
    /// Each line is queried at each @SERVER (or, with --spread, at one of
    /// them) and checked with every --expect* given; one NDJSON line per query,
    /// then a summary with per-check failure counts. A line that cannot be read
    /// or parsed is reported with its number and the others are still queried.
    #[arg(short, long, value_name = "PATH")]
    pub file: Option<String>,
    /// Bulk: send each line to one @SERVER, taking them in turn (round-robin),
    /// instead of to every @SERVER.
    #[arg(long)]
    pub spread: bool,
    /// Bulk: queries per second (default: as fast as --concurrency allows).
    #[arg(long, value_name = "QPS")]
    pub rate: Option<u32>,
    /// Bulk: queries outstanding at once.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub concurrency: u32,
    /// Bulk: no progress line on stderr (it is shown only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// `--rate` of a scan: closed-loop, or fixed probes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanRate {
    Auto,
    Fixed(u64),
}

fn parse_scan_rate(s: &str) -> Result<ScanRate, String> {
    if s == "auto" {
        return Ok(ScanRate::Auto);
    }
    match s.parse::<u64>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(ScanRate::Fixed(n)),
        _ => Err(format!(
            "'{s}' is not a rate: give auto or probes per second, 1-10000000"
        )),
    }
}

/// Validated settings of `synscope scan`.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// One set per address family, IPv4 first (scanned in turn).
    pub targets: Vec<TargetSet>,
    pub ports: PortList,
    /// The fixed rate, or with --rate auto the rate the controller starts at
    /// (also the rate of host discovery).
    pub rate: u64,
    /// --rate auto: the controller's bounds (min, max); None: fixed rate.
    pub auto_rate: Option<(u64, u64)>,
    pub retries: u32,
    pub wait: Duration,
    pub open_only: bool,
    pub shard: Shard,
    pub seed: u64,
    pub source_port: Option<u16>,
    pub interface: Option<String>,
    pub ttl: u8,
    pub syn_options: bool,
    /// Resolve on-link targets with ARP / ND before probing them.
    pub discovery: bool,
    pub format: OutputFormat,
    pub progress: bool,
    pub verbose: bool,
    /// Probes per block of per-probe state (default: from the rate).
    pub block_size: Option<u64>,
    /// Complete and check open ports' handshakes, check RSTs.
    pub verify: bool,
    /// Canaries to hosts that answered a SYN-ACK.
    pub canaries: bool,
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
        // `-` as a target, like `--targets-file -`, reads targets from stdin (once)
        let stdin =
            self.targets.iter().any(|t| t == "-") || self.targets_file.as_deref() == Some("-");
        let mut specs: Vec<String> = self.targets.iter().filter(|t| *t != "-").cloned().collect();
        let mut texts = Vec::new();
        if stdin {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| UsageError(format!("read targets from stdin: {e}")))?;
            texts.push(s);
        }
        if let Some(f) = self.targets_file.as_ref().filter(|f| *f != "-") {
            texts.push(
                std::fs::read_to_string(f)
                    .map_err(|e| UsageError(format!("read targets file '{f}': {e}")))?,
            );
        }
        for text in &texts {
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
        let targets = TargetSet::build_families(&parse(&specs)?, &parse(&self.exclude)?)
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
        // shards must agree on the order: without --seed they derive it from
        // the scan's definition; a whole scan takes a random one
        let seed = match self.seed {
            Some(seed) => seed,
            None if shard.count > 1 => {
                crate::scan::permute::derived_seed(&targets, &ports, shard.count)
            }
            None => rand::random(),
        };
        if self.min_rate > self.max_rate {
            return Err(UsageError(format!(
                "--min-rate {} is above --max-rate {}",
                self.min_rate, self.max_rate
            )));
        }
        let (rate, auto_rate) = match self.rate {
            ScanRate::Fixed(n) => (n, None),
            ScanRate::Auto => (
                (crate::scan::rate::START as u64).clamp(self.min_rate, self.max_rate),
                Some((self.min_rate, self.max_rate)),
            ),
        };
        Ok(ScanSettings {
            targets,
            ports,
            rate,
            auto_rate,
            retries: self.retries,
            wait: self.wait,
            open_only: self.open,
            shard,
            seed,
            source_port: self.source_port,
            interface: self.interface.clone(),
            ttl: self.ttl,
            syn_options: !self.bare_syn,
            discovery: !self.no_discovery,
            format,
            progress: !self.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            verbose,
            block_size: self.block_size,
            verify: self.verify,
            canaries: !self.no_canaries,
        })
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Probes per port.
    #[arg(short, long, default_value_t = 3)]
    pub count: u64,
}

/// How `synscope dns` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFormat {
    Text,
    Short,
    Json,
    Ndjson,
}

/// What `synscope dns` checks (exit status 1 when one fails).
#[derive(Debug, Clone, Default)]
pub struct DnsChecks {
    pub expect: Option<Vec<String>>,
    pub contains: Vec<String>,
    pub rcode: Option<u16>,
    pub regex: Option<regex::Regex>,
    pub max_time: Option<Duration>,
    /// The AD bit must be set.
    pub ad: bool,
    /// The answer (or the denial) must be signed.
    pub signed: bool,
}

impl DnsChecks {
    /// The flags of the checks asked for, in the order they are evaluated.
    pub fn names(&self) -> Vec<&'static str> {
        let mut n = Vec::new();
        if self.rcode.is_some() {
            n.push("--expect-rcode");
        }
        if self.expect.is_some() {
            n.push("--expect");
        }
        if !self.contains.is_empty() {
            n.push("--expect-contains");
        }
        if self.regex.is_some() {
            n.push("--expect-regex");
        }
        if self.max_time.is_some() {
            n.push("--max-time");
        }
        if self.ad {
            n.push("--expect-ad");
        }
        if self.signed {
            n.push("--expect-signed");
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.expect.is_none()
            && self.contains.is_empty()
            && self.rcode.is_none()
            && self.regex.is_none()
            && self.max_time.is_none()
            && !self.ad
            && !self.signed
    }
}

/// Where bulk names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkSource {
    Stdin,
    File(std::path::PathBuf),
}

/// Validated settings of `synscope dns`.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The name as given (or the address for -x), for messages.
    pub display_name: String,
    /// Single mode: the query name; None in bulk mode.
    pub name: Option<hickory_proto::rr::Name>,
    pub types: Vec<hickory_proto::rr::RecordType>,
    pub servers: Vec<SocketAddr>,
    /// The server came from /etc/resolv.conf (no @SERVER given).
    pub default_server: bool,
    pub edns: Option<crate::wire::dns::EdnsRepr>,
    pub recursion_desired: bool,
    pub tcp_fallback: bool,
    /// Single queries over an ordinary UDP socket even with CAP_NET_RAW.
    pub no_raw: bool,
    pub retries: u32,
    pub timeout: Duration,
    pub format: DnsFormat,
    pub checks: DnsChecks,
    pub bulk: Option<BulkSource>,
    pub rate: Option<u32>,
    pub concurrency: u32,
    /// Bulk: each line to one server in turn, not to every server.
    pub spread: bool,
    pub progress: bool,
    pub verbose: bool,
}

/// `@198.18.0.2`, `@[2001:db8::2]:5353`, `@ns.example` → a socket address.
pub fn parse_server(s: &str) -> Result<SocketAddr, UsageError> {
    let (host, port) = split_host_port(s)?;
    if host.is_empty() {
        return Err(UsageError(format!("empty server in '@{s}'")));
    }
    resolve(&host, port.unwrap_or(53), false, false)
}

/// The first `nameserver` of a resolv.conf text.
pub fn resolv_conf_server(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next() != Some("nameserver") {
            return None;
        }
        // a link-local address may carry a zone (fe80::1%eth0): not supported here
        let a: IpAddr = w.next()?.parse().ok()?;
        Some(SocketAddr::new(a, 53))
    })
}

impl DnsArgs {
    pub fn settings(&self, verbose: bool) -> Result<DnsSettings, UsageError> {
        use crate::wire::dns;
        let mut name: Option<hickory_proto::rr::Name> = None;
        let mut display_name = String::new();
        let mut types = Vec::new();
        let mut servers = Vec::new();
        for a in &self.args {
            if let Some(srv) = a.strip_prefix('@') {
                servers.push(parse_server(srv)?);
            } else if let (true, Some(t)) =
                (name.is_some() || self.reverse.is_some(), dns::parse_type(a))
            {
                types.push(t);
            } else if name.is_none() && self.reverse.is_none() {
                name = Some(dns::parse_name(a).map_err(UsageError)?);
                display_name = a.clone();
            } else if let Some(t) = dns::parse_type(a) {
                types.push(t);
            } else {
                return Err(UsageError(format!(
                    "unexpected argument '{a}': not a query type (A, AAAA, MX, TYPE65, ...) or @SERVER"
                )));
            }
        }
        if let Some(addr) = self.reverse {
            name = Some(dns::reverse_name(addr));
            display_name = addr.to_string();
            if types.is_empty() {
                types.push(hickory_proto::rr::RecordType::PTR);
            }
        }
        let bulk = match &self.file {
            Some(f) if f == "-" => Some(BulkSource::Stdin),
            Some(f) => Some(BulkSource::File(f.into())),
            None => None,
        };
        if bulk.is_some() && name.is_some() {
            return Err(UsageError(format!(
                "give either NAME ('{display_name}') or --file, not both"
            )));
        }
        if bulk.is_none() && self.spread {
            return Err(UsageError(
                "--spread applies to bulk mode: give --file FILE".into(),
            ));
        }
        if bulk.is_none() && name.is_none() {
            return Err(UsageError(
                "no name to query: give NAME, -x ADDR or --file FILE".into(),
            ));
        }
        if types.is_empty() {
            types.push(hickory_proto::rr::RecordType::A);
        }
        let default_server = servers.is_empty();
        if default_server {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let s = resolv_conf_server(&text).ok_or_else(|| {
                UsageError("no @SERVER given and no nameserver in /etc/resolv.conf".into())
            })?;
            servers.push(s);
        }
        let client_subnet = match &self.ecs {
            None => None,
            Some(s) => {
                let bad = || {
                    UsageError(format!(
                        "bad --ecs '{s}': expected ADDR/PREFIX, e.g. 198.18.0.0/24"
                    ))
                };
                let (a, p) = s.split_once('/').ok_or_else(bad)?;
                let a: IpAddr = a.parse().map_err(|_| bad())?;
                let p: u8 = p.parse().map_err(|_| bad())?;
                if p > if a.is_ipv4() { 32 } else { 128 } {
                    return Err(bad());
                }
                Some((a, p))
            }
        };
        let edns = (!self.no_edns).then_some(dns::EdnsRepr {
            udp_size: self.bufsize,
            dnssec_ok: self.dnssec_ok || self.expect_ad || self.expect_signed,
            client_subnet,
        });
        let rcode = match &self.expect_rcode {
            None => None,
            Some(r) => Some(dns::parse_rcode(r).ok_or_else(|| {
                UsageError(format!(
                    "bad --expect-rcode '{r}': expected NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ... or RCODEnn"
                ))
            })?),
        };
        let regex = match &self.expect_regex {
            None => None,
            Some(r) => Some(regex::Regex::new(r).map_err(|e| {
                UsageError(format!(
                    "bad --expect-regex '{r}': {}",
                    e.to_string().lines().last().unwrap_or("")
                ))
            })?),
        };
        let format = match (self.short, self.json, self.ndjson) {
            (true, _, _) => DnsFormat::Short,
            (_, true, _) => DnsFormat::Json,
            (_, _, true) => DnsFormat::Ndjson,
            _ if bulk.is_some() => DnsFormat::Ndjson,
            _ => DnsFormat::Text,
        };
        if self.rate == Some(0) {
            return Err(UsageError("--rate must be at least 1".into()));
        }
        Ok(DnsSettings {
            display_name,
            name,
            types,
            servers,
            default_server,
            edns,
            recursion_desired: !self.norecurse,
            tcp_fallback: !self.ignore_tc,
            no_raw: self.no_raw,
            retries: self.retries,
            timeout: self.timeout,
            format,
            checks: DnsChecks {
                expect: self.expect.clone(),
                contains: self.expect_contains.clone(),
                rcode,
                regex,
                max_time: self.max_time,
                ad: self.expect_ad,
                signed: self.expect_signed,
            },
            bulk,
            rate: self.rate,
            concurrency: self.concurrency,
            spread: self.spread,
            progress: !self.no_progress,
            verbose,
        })
    }
}

/// The longest duration any flag takes. Every timer adds durations to the
/// current instant (and a few double them); a day keeps all of that far from
/// any integer limit, and no wait of synscope's needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// humantime durations, positive, at most [`MAX_DURATION`]: the one place a
/// duration argument becomes a setting, so no later `Instant + Duration` overflows.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad duration '{s}': {e} (examples: 1s, 200ms, 5ms)"))?;
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
    /// Canary ports first, then complete and check each handshake.
    pub verify: bool,
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

/// Resolves a host name or address, honouring -4/-6. A name with both IPv4
/// and IPv6 addresses gives its IPv4 one unless `-6` is given (nmap's rule:
/// the same name means the same family on every host, whatever the resolver's order).
pub fn resolve(host: &str, port: u16, v4: bool, v6: bool) -> Result<SocketAddr, UsageError> {
    if host.is_empty() {
        return Err(UsageError("empty host".into()));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("cannot resolve host '{host}': {e}")))?
        .collect();
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

impl PingArgs {
    pub fn settings(&self, verbose: bool) -> Result<PingSettings, UsageError> {
        if self.count == Some(0) {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if self.source_port == Some(0) {
            return Err(UsageError("--source-port must be 1-65535".into()));
        }
        let (host, target) = self.dest.resolve()?;
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
            verify: self.verify,
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
    fn a_name_means_ipv4_unless_minus_6() {
        // localhost has 127.0.0.1 (and often ::1, in any order)
        assert!(resolve("localhost", 80, false, false).unwrap().is_ipv4());
        assert!(resolve("localhost", 80, true, false).unwrap().is_ipv4());
        assert!(resolve("::1", 80, false, false).unwrap().is_ipv6());
        assert!(resolve("127.0.0.1", 80, false, true).is_err());
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        for huge in ["24h 1ns", "18446744073709551615s", "1000y"] {
            assert!(
                parse_duration(huge).unwrap_err().contains("at most 24h"),
                "{huge}"
            );
        }
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

#[cfg(test)]
mod dns_tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    fn dns(args: &[&str]) -> Result<DnsSettings, UsageError> {
        let mut v = vec!["synscope", "dns"];
        v.extend(args);
        let cli = Cli::try_parse_from(v).map_err(|e| UsageError(e.to_string()))?;
        let Command::Dns(d) = cli.command else {
            panic!()
        };
        d.settings(false)
    }

    #[test]
    fn dns_settings_from_arguments() {
        let s = dns(&[
            "lab.test",
            "MX",
            "aaaa",
            "@198.18.0.2",
            "@[2001:db8::2]:5353",
        ])
        .unwrap();
        assert_eq!(s.types, vec![RecordType::MX, RecordType::AAAA]);
        assert_eq!(
            s.servers,
            vec![
                "198.18.0.2:53".parse().unwrap(),
                "[2001:db8::2]:5353".parse().unwrap()
            ]
        );
        assert!(!s.default_server && s.tcp_fallback && s.recursion_desired);
        assert_eq!(s.edns.as_ref().unwrap().udp_size, 1232);
        let s = dns(&["-x", "198.18.0.10", "@198.18.0.2", "--no-edns", "--short"]).unwrap();
        assert_eq!(s.types, vec![RecordType::PTR]);
        assert_eq!(s.name.unwrap().to_ascii(), "10.0.18.198.in-addr.arpa.");
        assert!(s.edns.is_none());
        assert_eq!(s.format, DnsFormat::Short);
        let s = dns(&["--file", "-", "@198.18.0.2"]).unwrap();
        assert_eq!(
            (s.bulk, s.format),
            (Some(BulkSource::Stdin), DnsFormat::Ndjson)
        );
        let s = dns(&["a", "@198.18.0.2", "--ecs", "198.18.0.0/24", "--do"]).unwrap();
        let e = s.edns.unwrap();
        assert_eq!(e.client_subnet, Some(("198.18.0.0".parse().unwrap(), 24)));
        assert!(e.dnssec_ok);
        assert!(dns(&["a", "@198.18.0.2", "--ecs", "198.18.0.0/33"]).is_err());
        assert!(dns(&["a", "b", "@198.18.0.2"]).is_err());
        assert!(dns(&["a", "@198.18.0.2", "--file", "x"]).is_err());
        assert!(dns(&["a", "@198.18.0.2", "--bufsize", "100"]).is_err());
        let s = dns(&["a", "@198.18.0.2", "--bufsize", "65535"]).unwrap();
        assert_eq!(s.edns.unwrap().udp_size, 65535);
        assert!(dns(&["a", "@198.18.0.2", "--bufsize", "65536"]).is_err());
        assert!(dns(&["a", "@198.18.0.2", "--no-edns", "--do"]).is_err());
        // the DNSSEC checks set the DO bit, and need EDNS
        let s = dns(&["a", "@198.18.0.2", "--expect-ad"]).unwrap();
        assert!(s.edns.unwrap().dnssec_ok && s.checks.ad && !s.checks.signed);
        let s = dns(&["a", "@198.18.0.2", "--expect-signed"]).unwrap();
        assert!(s.edns.unwrap().dnssec_ok && s.checks.signed);
        assert!(dns(&["a", "@198.18.0.2", "--no-edns", "--expect-signed"]).is_err());
        assert!(!dns(&["a", "@198.18.0.2"]).unwrap().edns.unwrap().dnssec_ok);
        // bulk has the socket path too
        assert!(dns(&["--file", "-", "@198.18.0.2", "--no-raw"]).is_ok());
    }

    #[test]
    fn resolv_conf_first_nameserver() {
        let t = "# c\nsearch x\nnameserver 2001:db8::53\nnameserver 198.18.0.53\n";
        assert_eq!(
            resolv_conf_server(t),
            Some("[2001:db8::53]:53".parse().unwrap())
        );
        assert_eq!(resolv_conf_server("search x\n"), None);
    }
}
