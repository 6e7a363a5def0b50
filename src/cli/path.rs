//! Arguments and settings of `synscope path`.

use super::{Env, OutputArgs, PcapArgs, SendArgs, TargetArgs, UsageError, parse_duration};
use crate::report::OutputFormat;
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// The one-line help of `synscope path`.
pub const ABOUT: &str = "Find where a port's SYNs die: a TCP traceroute to the real port.";

/// The long help of `synscope path`.
pub const LONG_ABOUT: &str = "\
Find where a port's SYNs die: a TCP traceroute to the real port.

SYNs to HOST:PORT with TTL / hop limit 1, 2, 3, ... (--count per hop, all
in flight at once, timed by kernel timestamps). Each router answers the
SYN whose TTL ran out there with ICMP time-exceeded; the destination
answers with a SYN-ACK or an RST; a filter with an ICMP error or nothing.
The result names the last hop that forwarded and the hop that dropped or
rejected. Each time-exceeded quotes our SYN as that router saw it: the
ladder shows, at the first hop whose quote shows it, what changed against
what was sent (MSS clamped, window scale / SACK / timestamps stripped,
DSCP or ECN rewritten, ECE/CWR bleached, addresses and ports rewritten by
NAT, IP ID, TTL). A router quotes a SYN as it arrived: a change made by
hop N on its way out shows at hop N+1. When the destination's answer
crossed fewer routers back (by its TTL) than the SYNs took out, a note
says something nearer answered for it (a SYN proxy, a load balancer).
Hops go out 5 ahead of the farthest answer; 5 silent hops end the run.

Examples:
  synscope path 198.18.4.2:443
  synscope path [2001:db8:4::2]:8080 -c 5 --json
  synscope path 198.18.4.2:443 --ndjson          # a `hop` line as each hop is final, then `summary`
  synscope path 198.18.4.2:8081 --ecn --tos 0xb8
  synscope path db.example -p 5432 -m 20 -W 2s
  synscope path 198.18.4.2:80 --source-port 53   (one flow, one probe at a time)";

/// The EXIT STATUS section of `synscope path --help`.
pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  the destination answered the SYNs (SYN-ACK: open, or RST: closed):
     they get through
  1  they do not: dropped (silence beyond the last hop that answered) or
     rejected (an ICMP error from a router or from the destination), or
     the run was interrupted (Ctrl-C, SIGTERM: the result so far is printed)
  2  usage or setup error";

/// Arguments of `synscope path`.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// `HOST[:PORT]`, `-p`, `-4`/`-6`.
    #[command(flatten)]
    pub dest: TargetArgs,
    /// Probes per hop (RTT statistics per hop from them), 1-16.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub count: u16,
    /// The highest TTL / hop limit probed.
    #[arg(short, long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..))]
    pub max_hops: u8,
    /// How long each probe waits for its answer.
    #[arg(short = 'W', long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Send an ECN-setup SYN (ECE and CWR set) and report whether the
    /// destination agreed (ECE in its SYN-ACK) and where the bits were bleached.
    #[arg(long)]
    pub ecn: bool,
    /// IPv4 TOS / IPv6 traffic class of the SYNs (DSCP << 2 | ECN), decimal or
    /// 0x hex, e.g. 0xb8 for DSCP EF, 0x02 for ECT(0), so rewrites show. (Linux
    /// refuses ECN for a SYN that is itself ECT: with --ecn, an ECT value finds
    /// bleaching but spoils the negotiation.)
    #[arg(long, value_parser = parse_tos, default_value = "0")]
    pub tos: u8,
    /// `-I`, `--bare-syn`, `--source-port`.
    #[command(flatten)]
    pub send: SendArgs,
    /// `--json`, `--ndjson`.
    #[command(flatten)]
    pub output: OutputArgs,
    /// `--pcap`.
    #[command(flatten)]
    pub pcap: PcapArgs,
}

fn parse_tos(s: &str) -> Result<u8, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse::<u8>(),
    };
    v.map_err(|_| format!("bad TOS '{s}': expected 0-255 or 0x00-0xff"))
}

/// Validated settings of `synscope path`.
#[derive(Debug, Clone)]
pub struct PathSettings {
    /// The target as given.
    pub host: String,
    /// Its resolved address and port.
    pub target: SocketAddr,
    /// `--count`: probes per hop.
    pub count: u16,
    /// `--max-hops`: the highest TTL probed.
    pub max_hops: u8,
    /// `--timeout`: wait per probe.
    pub timeout: Duration,
    /// `--ecn`: an ECN-setup SYN.
    pub ecn: bool,
    /// `--tos`: TOS / traffic class of the SYNs.
    pub tos: u8,
    /// Text or JSON.
    pub format: OutputFormat,
    /// `--pcap`: the capture file; None: none written.
    pub pcap: Option<std::path::PathBuf>,
    /// `--source-port`, `-I`, `--bare-syn`.
    pub send: crate::cli::SendSettings,
}

impl PathArgs {
    /// Validates the arguments; the name is resolved through `env`.
    pub fn settings(&self, env: &dyn Env) -> Result<PathSettings, UsageError> {
        let (host, target) = self.dest.resolve(env)?;
        Ok(PathSettings {
            host,
            target,
            count: self.count,
            max_hops: self.max_hops,
            timeout: self.timeout,
            ecn: self.ecn,
            tos: self.tos,
            format: self.output.format(),
            pcap: self.pcap.pcap.clone(),
            send: self.send.settings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, FixedEnv};
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<PathSettings, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Path(p) = cli.command else {
            panic!("not path")
        };
        p.settings(&FixedEnv::default()).map_err(|e| e.0)
    }

    #[test]
    fn path_settings_from_arguments() {
        let s = settings(&[
            "synscope",
            "path",
            "198.18.4.2:8080",
            "--tos",
            "0xb8",
            "--ecn",
        ])
        .unwrap();
        assert_eq!(
            (s.target.port(), s.tos, s.ecn, s.count, s.max_hops),
            (8080, 0xb8, true, 3, 30)
        );
        assert_eq!(
            settings(&["synscope", "path", "198.18.4.2", "--tos", "18"])
                .unwrap()
                .tos,
            18
        );
        assert!(settings(&["synscope", "path", "198.18.4.2", "--tos", "0x100"]).is_err());
        assert!(settings(&["synscope", "path", "198.18.4.2", "-c", "0"]).is_err());
        assert!(settings(&["synscope", "path", "198.18.4.2", "-m", "0"]).is_err());
        let s = settings(&[
            "synscope",
            "path",
            "198.18.4.2:80",
            "--source-port",
            "53",
            "--pcap",
            "p.pcap",
        ])
        .unwrap();
        assert_eq!(s.send.source_port, Some(53));
        assert_eq!(s.pcap.as_deref(), Some(std::path::Path::new("p.pcap")));
        assert!(settings(&["synscope", "path", "198.18.4.2", "--source-port", "0"]).is_err());
    }
}
