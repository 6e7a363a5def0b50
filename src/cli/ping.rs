//! Arguments and settings of `synscope ping`.

use super::{
    Env, GlobalArgs, OutputArgs, PcapArgs, SendArgs, TargetArgs, TtlArgs, UsageError,
    parse_duration,
};
use crate::report::OutputFormat;
use crate::report::ping::Expect;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// The one-line help of `synscope ping`.
pub const ABOUT: &str = "Measure TCP handshake latency like ping, with raw SYN probes.";

/// The long help of `synscope ping`.
pub const LONG_ABOUT: &str = "\
Measure TCP handshake latency like ping, with raw SYN probes.

Each probe is one SYN; a SYN-ACK means open, an RST closed, an ICMP error
filtered (the error is named), silence filtered (no answer). RTTs are the
difference of the kernel's timestamps of the SYN leaving and the reply
arriving. The local kernel answers each SYN-ACK with an RST, which frees
the server's half-open state.

Examples:
  synscope ping 198.18.0.2:80 -c 5
  synscope ping [2001:db8::2]:443 -i 0.2 --json
  synscope ping db.example -p 5432 --expect closed -c 3";

/// The EXIT STATUS section of `synscope ping --help`.
pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  the port answered as expected (--expect, default open)
  1  it did not (other verdict, or no answer at all); with --verify, a
     SYN-ACK from a host that answers every port (its canary ports answer
     too) is not counted as open
  2  usage or setup error (bad arguments, unknown host, missing privileges)
  On Ctrl-C (SIGINT) or SIGTERM the summary so far is printed and the exit
  status is computed from the probes finished so far.";

/// Arguments of `synscope ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// `HOST[:PORT]`, `-p`, `-4`/`-6`.
    #[command(flatten)]
    pub dest: TargetArgs,
    /// Number of probes (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<u64>,
    /// Time between probes: seconds (0.2) or with a unit (200ms, 5ms), down
    /// to 1ns (as fast as possible). Probes in flight are bounded (one
    /// reserved source port each: half the ephemeral range, within the
    /// open-file limit; one with --source-port); when that many are
    /// unanswered, the next waits, and stderr says so once.
    #[arg(short, long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long each probe waits for its answer, from the kernel's stamp of
    /// its SYN leaving: a reply the kernel stamped later counts as loss
    /// (`late` among the ignored packets).
    #[arg(short = 'W', long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The verdict that makes the exit status 0.
    #[arg(long, value_enum, default_value = "open")]
    pub expect: ExpectArg,
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
    /// `-I`, `--bare-syn`, `--source-port`, `--ttl`.
    #[command(flatten)]
    pub send: SendArgs,
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

/// `--expect`: the command line's names of [`Expect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
// the variants' docs are not --help text (help = None): --expect's help names them
pub enum ExpectArg {
    /// [`Expect::Open`].
    #[value(help = None)]
    Open,
    /// [`Expect::Closed`].
    #[value(help = None)]
    Closed,
    /// [`Expect::Filtered`].
    #[value(help = None)]
    Filtered,
}

impl From<ExpectArg> for Expect {
    fn from(e: ExpectArg) -> Expect {
        match e {
            ExpectArg::Open => Expect::Open,
            ExpectArg::Closed => Expect::Closed,
            ExpectArg::Filtered => Expect::Filtered,
        }
    }
}

/// Validated settings of `synscope ping`.
#[derive(Debug, Clone)]
pub struct PingSettings {
    /// The target as given.
    pub host: String,
    /// Its resolved address and port.
    pub target: SocketAddr,
    /// `--count`; None: until interrupted.
    pub count: Option<u64>,
    /// `--interval`: time between probes.
    pub interval: Duration,
    /// `--timeout`: wait per probe.
    pub timeout: Duration,
    /// `--ttl`.
    pub ttl: u8,
    /// `--expect`: the verdict that makes the exit status 0.
    pub expect: Expect,
    /// Text, JSON or NDJSON.
    pub format: OutputFormat,
    /// `-v`.
    pub verbose: bool,
    /// `--pcap`: the capture file; None: none written.
    pub pcap: Option<std::path::PathBuf>,
    /// Canary ports first, then complete and check each handshake.
    pub verify: bool,
    /// `--source-port`, `-I`, `--bare-syn`.
    pub send: crate::cli::SendSettings,
}

impl PingArgs {
    /// Validates the arguments; the name is resolved through `env`.
    pub fn settings(&self, env: &dyn Env, global: GlobalArgs) -> Result<PingSettings, UsageError> {
        if self.count == Some(0) {
            return Err(UsageError("--count must be at least 1".into()));
        }
        let (host, target) = self.dest.resolve(env)?;
        Ok(PingSettings {
            host,
            target,
            count: self.count,
            interval: self.interval,
            timeout: self.timeout,
            ttl: self.ttl.ttl,
            expect: self.expect.into(),
            format: self.output.format(),
            verbose: global.verbose,
            pcap: self.pcap.pcap.clone(),
            verify: self.verify,
            send: self.send.settings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, FixedEnv, parse};

    fn ping(args: &[&str]) -> Result<PingSettings, String> {
        let mut v = vec!["ping"];
        v.extend(args);
        let cli = parse(&v)?;
        let Command::Ping(p) = cli.command else {
            panic!("not ping")
        };
        p.settings(&FixedEnv::default(), cli.global)
            .map_err(|e| e.0)
    }

    #[test]
    fn settings_from_arguments() {
        let s = ping(&["[2001:db8::2]:443", "-c", "3", "-i", "5ms"]).unwrap();
        assert_eq!(s.target, "[2001:db8::2]:443".parse().unwrap());
        assert_eq!((s.count, s.interval), (Some(3), Duration::from_millis(5)));
        assert!(s.send.syn_options && s.send.source_port.is_none() && s.ttl == 64);
        assert_eq!((s.expect, s.format), (Expect::Open, OutputFormat::Text));
        // -i in seconds, as ping's
        let s = ping(&["198.18.0.2", "-i", "0.2", "-W", "2", "--bare-syn"]).unwrap();
        assert_eq!(s.interval, Duration::from_millis(200));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.target.port(), 80);
        assert!(!s.send.syn_options);
        let s = ping(&[
            "198.18.0.2",
            "-p",
            "22",
            "--expect",
            "closed",
            "--ndjson",
            "--source-port",
            "4000",
            "--ttl",
            "3",
            "-I",
            "veth0",
            "--pcap",
            "p.pcap",
        ])
        .unwrap();
        assert_eq!(s.target.port(), 22);
        assert_eq!((s.expect, s.format), (Expect::Closed, OutputFormat::Ndjson));
        assert_eq!((s.send.source_port, s.ttl), (Some(4000), 3));
        assert_eq!(s.send.interface.as_deref(), Some("veth0"));
        assert_eq!(s.pcap.unwrap().to_str(), Some("p.pcap"));
        assert!(
            ping(&["198.18.0.2:80", "-p", "81"])
                .unwrap_err()
                .contains("port given twice")
        );
        assert!(
            ping(&["198.18.0.2", "-6"])
                .unwrap_err()
                .contains("no IPv6 address")
        );
        assert!(
            ping(&["198.18.0.2", "-c", "0"])
                .unwrap_err()
                .contains("--count")
        );
        assert!(ping(&["h", "-i", "0s"]).is_err());
        assert!(ping(&["h", "--ttl", "0"]).is_err());
        assert!(ping(&["h", "--source-port", "0"]).is_err());
        assert!(ping(&["h", "--json", "--ndjson"]).is_err());
    }
}
