//! Arguments and settings of `synscope path`.

use super::{TargetArgs, UsageError, parse_duration};
use crate::report::OutputFormat;
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

pub const PATH_EXIT_CODES: &str = "\
EXIT STATUS:
  0  the destination answered the SYNs (SYN-ACK: open, or RST: closed):
     they get through
  1  they do not: dropped (silence beyond the last hop that answered) or
     rejected (an ICMP error from a router or from the destination), or
     the run was interrupted (Ctrl-C, SIGTERM: the result so far is printed)
  2  usage or setup error";

#[derive(Debug, Args)]
pub struct PathArgs {
    #[command(flatten)]
    pub dest: TargetArgs,
    /// Probes per hop (RTT statistics per hop from them), 1-16.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub count: u16,
    /// The highest TTL / hop limit probed.
    #[arg(short, long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..))]
    pub max_hops: u8,
    /// How long each probe waits for its answer.
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration)]
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
    /// Send a bare SYN without options (default: MSS, SACK-permitted,
    /// timestamps and window scale, like Linux, so changes to them show).
    #[arg(long)]
    pub bare_syn: bool,
    /// Send through this interface (SO_BINDTODEVICE) and capture only on it.
    #[arg(short = 'I', long)]
    pub interface: Option<String>,
    /// Source port for every probe, as in ping and scan (default: a fresh
    /// free port per probe, all hops in flight at once). With it every probe
    /// has the same four-tuple (one path through ECMP load balancers, a
    /// firewall's view of one flow), and one probe is in flight at a time: a
    /// silent hop costs its whole --timeout.
    /// Example: synscope path 198.18.4.2:80 --source-port 53
    #[arg(long)]
    pub source_port: Option<u16>,
    /// Write every packet sent and received to this pcap file (nanosecond
    /// stamps), as in ping and trace.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Print one JSON document at the end.
    #[arg(long)]
    pub json: bool,
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
    pub host: String,
    pub target: SocketAddr,
    pub count: u16,
    pub max_hops: u8,
    pub timeout: Duration,
    pub ecn: bool,
    pub tos: u8,
    pub syn_options: bool,
    pub interface: Option<String>,
    pub format: OutputFormat,
    pub source_port: Option<u16>,
    pub pcap: Option<std::path::PathBuf>,
}

impl PathArgs {
    pub fn settings(&self) -> Result<PathSettings, UsageError> {
        let (host, target) = self.dest.resolve()?;
        if self.source_port == Some(0) {
            return Err(UsageError("--source-port must be 1-65535".into()));
        }
        Ok(PathSettings {
            host,
            target,
            count: self.count,
            max_hops: self.max_hops,
            timeout: self.timeout,
            ecn: self.ecn,
            tos: self.tos,
            syn_options: !self.bare_syn,
            interface: self.interface.clone(),
            format: if self.json {
                OutputFormat::Json
            } else {
                OutputFormat::Text
            },
            source_port: self.source_port,
            pcap: self.pcap.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<PathSettings, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        let Command::Path(p) = cli.command else {
            panic!("not path")
        };
        p.settings().map_err(|e| e.0)
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
        assert_eq!(s.source_port, Some(53));
        assert_eq!(s.pcap.as_deref(), Some(std::path::Path::new("p.pcap")));
        assert!(settings(&["synscope", "path", "198.18.4.2", "--source-port", "0"]).is_err());
    }
}
