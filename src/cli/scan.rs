//! Arguments and settings of `synscope scan`.

use super::{
    Env, FamilyArgs, GlobalArgs, OutputArgs, PcapArgs, ProgressArgs, SendArgs, TtlArgs, UsageError,
    parse_duration, resolve_in,
};
use crate::report::OutputFormat;
use crate::scan::targets::{Range, parse_target};
use crate::scan::{PortList, Shard, TargetSet};
use clap::Args;
use std::net::IpAddr;
use std::time::Duration;

/// The one-line help of `synscope scan`.
pub const ABOUT: &str = "Stateless SYN scan of many hosts × ports, with sharding.";

/// The long help of `synscope scan`.
pub const LONG_ABOUT: &str = "\
Stateless SYN scan of many hosts × ports, with sharding.

Each probe's sequence number is a keyed hash (SipHash) of its 4-tuple, so
replies are checked without per-probe state; probes go out in a
pseudo-random order over the whole (host, port) space. Verdicts: open
(SYN-ACK, then torn down with an RST), closed (RST), filtered (ICMP error,
named) and no-response (after --retries).

Each target is probed from the source address and interface of its own
route. On-link targets (a directly attached Ethernet link) are first
asked for with ARP / Neighbor Solicitation: only hosts that answer get
SYNs, the others are reported once as `down (no ARP reply)`. Network and
broadcast addresses of on-link prefixes are skipped. A full send queue
slows the scan down, it never ends it.

On a terminal, a progress bar on stderr shows the probes sent, the rate
and the time left (not with --quiet or --no-progress).

--pcap FILE writes what the capture reads (the replies: SYN-ACKs, RSTs,
ICMP errors, with kernel stamps), not the SYNs sent: the file grows with
the answers, not with the size of the scan.

Examples:
  synscope scan 198.18.0.2 -p-  --rate 200000
  synscope scan 198.18.0.0/16 -p 22,80,443 --open --ndjson
  synscope scan 198.18.200.0/24 -p 80          (a local LAN: ARP first)
  synscope scan 127.0.0.1 198.18.200.2 198.18.220.5 -p 80,81
  synscope scan -f hosts.txt --top-ports 100 --shard 0/4 --seed 7
  synscope scan 198.18.0.2 -p 1-1024 --pcap replies.pcap";

/// The EXIT STATUS section of `synscope scan --help`.
pub const EXIT_CODES: &str = "\
EXIT STATUS:
  0  the scan ran to its end (whatever it found)
  1  it was interrupted (SIGINT/SIGTERM): results so far and the summary are
     printed, with the pairs never sent counted as not probed (a second
     signal ends it at once, without them)
  2  usage or setup error (bad targets or ports, missing privileges)";

/// Arguments of `synscope scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Targets: addresses, CIDR prefixes (198.18.0.0/16, 2001:db8::/120), ranges
    /// (198.18.0.1-198.18.0.9, 198.18.0.1-9) or names (IPv4 unless -6); - reads
    /// them from stdin, one per line.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Read more targets from a file (one per line, # comments), or - for stdin.
    #[arg(short, long, value_name = "FILE", alias = "targets-file")]
    pub file: Option<String>,
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
    #[arg(long, value_name = "RATE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub min_rate: u64,
    /// Highest rate `--rate auto` may reach (probes/s).
    #[arg(long, value_name = "RATE", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_rate: u64,
    /// Extra rounds for probes that got no answer, 0-10.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// How long a round waits for late replies after its last probe, at most
    /// (it ends sooner once replies have stopped for 3 times the RTT that
    /// 99.9 % of replies came within, at least 5 ms; before a retry round 2
    /// times the 90 % RTT).
    #[arg(short = 'W', long, alias = "wait", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
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
    /// Probe on-link targets without asking for them first. By default,
    /// targets on a directly attached Ethernet link are resolved with ARP
    /// (IPv4) or Neighbor Solicitation (IPv6) before any SYN: only hosts that
    /// answer get SYNs (sent to their Ethernet address), the others are
    /// reported once as `down (no ARP reply)`.
    /// Example: synscope scan 198.18.200.0/24 -p 80 --no-discovery
    #[arg(long)]
    pub no_discovery: bool,
    /// Check each open port: complete its handshake, compare the SYN-ACK with
    /// the server's next segments (TTL, window, options, timestamp clock),
    /// then reset it; a SYN proxy shows as `syn-ack (syn-proxy: ttl 62, later
    /// 61, ...)`. Closed ports' RSTs are compared with the host's own (its
    /// canary's RST): an injected one shows as `rst not from the host?`.
    /// Costs a handshake per open port, and canaries for every host that
    /// answered. Example: synscope scan 198.18.4.2 -p 80,8090 --verify
    #[arg(long)]
    pub verify: bool,
    /// Send no canaries. By default a host's first SYN-ACK sends a SYN to a
    /// random unscanned port in 49152-65535 (closed on a normal host), and 2
    /// more such SYNs if it answers SYN-ACK; a host that answers all 3
    /// answers every port (tarpit, proxy): it is reported once, and its
    /// SYN-ACKs are not counted as open.
    #[arg(long)]
    pub no_canaries: bool,
    /// `-4` / `-6`.
    #[command(flatten)]
    pub family: FamilyArgs,
    /// Probes per block of state (tests: many blocks from a small scan).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub block_size: Option<u64>,
    /// `-I`, `--bare-syn`, `--source-port`, `--ttl`.
    #[command(flatten)]
    pub send: SendArgs,
    /// `--ttl`.
    #[command(flatten)]
    pub ttl: TtlArgs,
    /// `--json`, `--ndjson`.
    #[command(flatten)]
    pub output: OutputArgs,
    /// `--no-progress`.
    #[command(flatten)]
    pub progress: ProgressArgs,
    /// `--pcap`: the replies the capture sees (not the SYNs sent).
    #[command(flatten)]
    pub pcap: PcapArgs,
}

/// `--rate` of a scan: closed-loop, or fixed probes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanRate {
    /// `auto`: the rate controller decides.
    Auto,
    /// Probes per second, 1..=10,000,000.
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
    /// The ports probed on every host.
    pub ports: PortList,
    /// The fixed rate, or with --rate auto the rate the controller starts at
    /// (also the rate of host discovery).
    pub rate: u64,
    /// --rate auto: the controller's bounds (min, max); None: fixed rate.
    pub auto_rate: Option<(u64, u64)>,
    /// `--retries`: extra rounds for unanswered probes.
    pub retries: u32,
    /// `--timeout`: the longest wait for late replies after each round.
    pub wait: Duration,
    /// `--open`: print only open ports.
    pub open_only: bool,
    /// `--shard`: this machine's part ([`Shard::WHOLE`] without it).
    pub shard: Shard,
    /// The probe order's seed (given, derived from the shard, or random).
    pub seed: u64,
    /// `--ttl`.
    pub ttl: u8,
    /// Resolve on-link targets with ARP / ND before probing them.
    pub discovery: bool,
    /// Text, JSON or NDJSON.
    pub format: OutputFormat,
    /// Draw the progress bar (stderr is a terminal, no --quiet, no --no-progress).
    pub progress: bool,
    /// `--pcap FILE`: every packet the capture reads (the replies).
    pub pcap: Option<std::path::PathBuf>,
    /// `-v`.
    pub verbose: bool,
    /// Probes per block of per-probe state (default: from the rate).
    pub block_size: Option<u64>,
    /// `--verify`: complete and check open ports' handshakes, check RSTs.
    pub verify: bool,
    /// Canaries to hosts that answered a SYN-ACK (off with `--no-canaries`).
    pub canaries: bool,
    /// `--source-port`, `-I`, `--bare-syn`.
    pub send: crate::cli::SendSettings,
}

impl ScanArgs {
    /// Validates the arguments; names and files are read through `env`.
    pub fn settings(&self, env: &dyn Env, global: GlobalArgs) -> Result<ScanSettings, UsageError> {
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
        // `-` as a target, like `--file -`, reads targets from stdin (once)
        let stdin = self.targets.iter().any(|t| t == "-") || self.file.as_deref() == Some("-");
        let mut specs: Vec<String> = self.targets.iter().filter(|t| *t != "-").cloned().collect();
        let mut texts = Vec::new();
        if stdin {
            texts.push(
                env.read_stdin()
                    .map_err(|e| UsageError(format!("read targets from stdin: {e}")))?,
            );
        }
        if let Some(f) = self.file.as_ref().filter(|f| *f != "-") {
            let bytes = env
                .read(std::path::Path::new(f))
                .map_err(|e| UsageError(format!("read targets file '{f}': {e}")))?;
            texts.push(
                String::from_utf8(bytes)
                    .map_err(|_| UsageError(format!("read targets file '{f}': not UTF-8 text")))?,
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
                "no targets: give addresses, prefixes, ranges or names, or --file".into(),
            ));
        }
        let (v4, v6) = (self.family.ipv4, self.family.ipv6);
        let resolver = |name: &str| -> Result<IpAddr, String> {
            resolve_in(env, name, 0, v4, v6)
                .map(|a| a.ip())
                .map_err(|e| e.0)
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
            wait: self.timeout,
            open_only: self.open,
            shard,
            seed,
            ttl: self.ttl.ttl,
            discovery: !self.no_discovery,
            format: self.output.format(),
            progress: self.progress.on(global, env),
            pcap: self.pcap.pcap.clone(),
            verbose: global.verbose,
            block_size: self.block_size,
            verify: self.verify,
            canaries: !self.no_canaries,
            send: self.send.settings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, FixedEnv, parse};

    fn scan_in(env: &FixedEnv, args: &[&str]) -> Result<ScanSettings, String> {
        let mut v = vec!["scan"];
        v.extend(args);
        let cli = parse(&v)?;
        let Command::Scan(s) = cli.command else {
            panic!("not scan")
        };
        s.settings(env, cli.global).map_err(|e| e.0)
    }

    fn scan(args: &[&str]) -> Result<ScanSettings, String> {
        scan_in(&FixedEnv::default(), args)
    }

    fn count(s: &ScanSettings) -> u64 {
        s.targets.iter().map(|t| t.len()).sum()
    }

    #[test]
    fn targets_from_arguments_files_stdin_and_names() {
        let env = FixedEnv {
            hosts: vec![(
                "web.test",
                vec![
                    "2001:db8::80".parse().unwrap(),
                    "198.18.0.80".parse().unwrap(),
                ],
            )],
            files: vec![("hosts.txt", b"# lab\n198.18.0.1\n198.18.0.8/30 # four\n\n")],
            stdin: "198.18.1.1\n",
            terminal: true,
        };
        let s = scan_in(&env, &["-f", "hosts.txt", "web.test", "-p", "80"]).unwrap();
        assert_eq!(count(&s), 6);
        // the old spelling still works (hidden alias)
        let s = scan_in(&env, &["--targets-file", "hosts.txt", "-p", "80"]).unwrap();
        assert_eq!(count(&s), 5);
        let s = scan_in(&env, &["-", "-p", "80"]).unwrap();
        assert_eq!(count(&s), 1);
        let s = scan_in(&env, &["--file", "-", "-p", "80"]).unwrap();
        assert_eq!(count(&s), 1);
        // a name is IPv4 unless -6
        let s = scan_in(&env, &["web.test", "-p", "80", "-6"]).unwrap();
        assert_eq!(s.targets.len(), 1);
        let e = scan_in(&env, &["-f", "nope.txt", "-p", "80"]).unwrap_err();
        assert!(e.contains("read targets file 'nope.txt'"), "{e}");
        let e = scan_in(&env, &["nx.test", "-p", "80"]).unwrap_err();
        assert!(e.contains("cannot resolve host 'nx.test'"), "{e}");
        let e = scan_in(&env, &["-p", "80"]).unwrap_err();
        assert!(e.contains("no targets"), "{e}");
        let e = scan_in(
            &env,
            &["198.18.0.1", "--exclude", "198.18.0.0/24", "-p", "80"],
        );
        assert!(e.unwrap_err().contains("every target is excluded"));
    }

    #[test]
    fn one_name_per_flag_and_the_old_ones_still_parse() {
        let s = scan(&["198.18.0.1", "-p", "80", "-W", "0.5", "--retries", "0"]).unwrap();
        assert_eq!((s.wait, s.retries), (Duration::from_millis(500), 0));
        let s = scan(&["198.18.0.1", "-p", "80", "--wait", "2s"]).unwrap();
        assert_eq!(s.wait, Duration::from_secs(2));
        let s = scan(&["198.18.0.1", "-p", "80", "--timeout", "300ms"]).unwrap();
        assert_eq!(s.wait, Duration::from_millis(300));
        assert_eq!(s.format, OutputFormat::Text);
        let s = scan(&[
            "198.18.0.1",
            "-p",
            "80",
            "--ndjson",
            "--bare-syn",
            "--ttl",
            "9",
        ])
        .unwrap();
        assert_eq!(
            (s.format, s.send.syn_options, s.ttl),
            (OutputFormat::Ndjson, false, 9)
        );
        assert!(scan(&["198.18.0.1", "-p", "80", "--json", "--ndjson"]).is_err());
    }

    #[test]
    fn rates_ports_shards_and_progress() {
        let s = scan(&["198.18.0.1", "-p", "80", "--rate", "5000"]).unwrap();
        assert_eq!((s.rate, s.auto_rate), (5000, None));
        let s = scan(&[
            "198.18.0.1",
            "-p",
            "80",
            "--min-rate",
            "10",
            "--max-rate",
            "50",
        ])
        .unwrap();
        assert_eq!((s.rate, s.auto_rate), (50, Some((10, 50))));
        let e = scan(&[
            "198.18.0.1",
            "-p",
            "80",
            "--min-rate",
            "5",
            "--max-rate",
            "1",
        ]);
        assert!(
            e.unwrap_err()
                .contains("--min-rate 5 is above --max-rate 1")
        );
        assert!(scan(&["198.18.0.1", "-p", "80", "--rate", "0"]).is_err());
        assert!(
            scan(&["198.18.0.1"])
                .unwrap_err()
                .contains("give ports with -p")
        );
        let a = scan(&["198.18.0.0/24", "-p", "80", "--shard", "1/4"]).unwrap();
        let b = scan(&["198.18.0.0/24", "-p", "80", "--shard", "2/4"]).unwrap();
        assert_eq!(a.seed, b.seed, "shards derive the same seed");
        assert!(scan(&["198.18.0.1", "-p", "80", "--shard", "4/4"]).is_err());
        // the bar: only on a terminal, never with --quiet or --no-progress
        let term = FixedEnv {
            terminal: true,
            ..FixedEnv::default()
        };
        assert!(
            scan_in(&term, &["198.18.0.1", "-p", "80"])
                .unwrap()
                .progress
        );
        assert!(!scan(&["198.18.0.1", "-p", "80"]).unwrap().progress);
        assert!(
            !scan_in(&term, &["198.18.0.1", "-p", "80", "-q"])
                .unwrap()
                .progress
        );
        let s = scan_in(&term, &["198.18.0.1", "-p", "80", "--no-progress"]).unwrap();
        assert!(!s.progress);
    }
}
