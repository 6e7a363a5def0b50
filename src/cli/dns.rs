//! Arguments and settings of `synscope dns`.

use super::{
    Env, GlobalArgs, OutputArgs, PcapArgs, ProgressArgs, UsageError, parse_duration, resolve_in,
    split_host_port,
};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The one-line help of `synscope dns`.
pub const ABOUT: &str =
    "Query DNS servers with raw UDP packets, check answers, resolve lists fast.";

/// The long help of `synscope dns`.
pub const LONG_ABOUT: &str = "\
Query DNS servers with raw UDP packets, check answers, resolve lists fast.

Each query is a DNS message in a UDP datagram built by synscope (random
source port, random id), timed with kernel timestamps; an answer counts only
if its server, ports, id and question match. A truncated (TC) answer is
repeated over TCP and both timings are shown. With several @SERVERs every
server is asked at once and the answers are compared. An ICMP error quoting
a query (port unreachable, ...) ends that query at once, with the reason.

Without CAP_NET_RAW (or with --no-raw) queries, single or bulk, go out on
ordinary UDP sockets instead, timed by those sockets' kernel TX and RX
stamps: no privilege needed. The output says which timed it
(`timed by: raw capture` or `timed by: socket timestamps`).

--pcap FILE (raw path: not with --no-raw) writes each query and its
answer as the capture saw them, kernel-stamped, single or bulk; with
several types or servers single queries then run one after another.

Bulk (--file): one `name[,type[,server]]` (or `name type server`) per line, each to every
@SERVER (--spread: to one, in turn), every --expect* checked per query;
NDJSON (or --json, --short) and a summary with per-check failure counts.

Examples:
  synscope dns example.com
  synscope dns www.lab.test A AAAA @198.18.0.2
  synscope dns lab.test MX @198.18.0.2 @2001:db8::2 --json
  synscope dns -x 198.18.0.10 @198.18.0.2 --short
  synscope dns a.lab.test @198.18.0.2 --expect 198.18.0.10 --max-time 50ms
  synscope dns nx.lab.test @198.18.0.2 --expect-rcode NXDOMAIN
  synscope dns a.lab.test @198.18.0.2 --no-raw
  synscope dns a.lab.test A AAAA @198.18.0.2 --pcap dns.pcap
  synscope dns www.signed.test @198.18.0.2:8053 --expect-ad --expect-signed
  synscope dns --file names.txt @198.18.0.2 --rate 50000 > results.ndjson
  synscope dns -f names.txt @198.18.0.2 @198.18.0.3 --spread --expect-rcode NOERROR";

/// The EXIT STATUS section of `synscope dns --help`.
pub const EXIT_CODES: &str = "\
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
  On SIGINT or SIGTERM the run stops (bulk: the results and summary so far
  are printed, with \"interrupted\": true and \"in_flight\", the queries sent
  and not answered yet, which are not counted as answered nor timed out)
  and the status is 1.";

/// Arguments of `synscope dns`.
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
    /// Retries after the first attempt, per query, 0-10.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// How long each attempt waits for its answer (e.g. 2, 300ms).
    #[arg(short = 'W', long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print only the answers' data, one per line (like dig +short).
    #[arg(long, conflicts_with_all = ["json", "ndjson"])]
    pub short: bool,
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
    /// Bulk: read `name[,type[,server]]` (or `name [type [server]]`) lines from this file (`-` for stdin).
    /// Each line is queried at each @SERVER (or, with --spread, at one of
    /// them) and checked with every --expect* given; one NDJSON line per query,
    /// then a summary with per-check failure counts. A line that cannot be read
    /// or parsed is reported with its number and the others are still queried.
    #[arg(short, long, value_name = "FILE")]
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
    /// `--json`, `--ndjson`.
    #[command(flatten)]
    pub output: OutputArgs,
    /// `--no-progress`.
    #[command(flatten)]
    pub progress: ProgressArgs,
    /// `--pcap`: queries over the raw path (single or bulk); the query and answer packets.
    #[command(flatten)]
    pub pcap: PcapArgs,
}

// what dns prints and checks belong to the report (it formats and checks
// answers); re-exported so `cli::DnsChecks` names them too
pub use crate::report::dns_options::{DnsChecks, DnsFormat};

/// Where bulk names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkSource {
    /// `--file -`.
    Stdin,
    /// `--file PATH`.
    File(std::path::PathBuf),
}

/// Validated settings of `synscope dns`.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The name as given (or the address for -x), for messages.
    pub display_name: String,
    /// Single mode: the query name; None in bulk mode.
    pub name: Option<hickory_proto::rr::Name>,
    /// The record types asked for (at least one; A by default).
    pub types: Vec<hickory_proto::rr::RecordType>,
    /// The servers asked (at least one).
    pub servers: Vec<SocketAddr>,
    /// The server came from /etc/resolv.conf (no @SERVER given).
    pub default_server: bool,
    /// The OPT record; None with `--no-edns`.
    pub edns: Option<crate::wire::dns::EdnsRepr>,
    /// The RD bit (off with `--norecurse`).
    pub recursion_desired: bool,
    /// Repeat a truncated answer over TCP (off with `--ignore-tc`).
    pub tcp_fallback: bool,
    /// Single queries over an ordinary UDP socket even with CAP_NET_RAW.
    pub no_raw: bool,
    /// `--pcap FILE` (raw path, single or bulk): every query and answer packet.
    pub pcap: Option<std::path::PathBuf>,
    /// `--retries`: attempts after the first, per query.
    pub retries: u32,
    /// `--timeout`: wait per attempt.
    pub timeout: Duration,
    /// How results are printed.
    pub format: DnsFormat,
    /// What each answer must satisfy.
    pub checks: DnsChecks,
    /// Bulk mode's input; None: one query per type and server.
    pub bulk: Option<BulkSource>,
    /// Bulk: queries per second; None: as fast as `concurrency` allows.
    pub rate: Option<u32>,
    /// Bulk: queries outstanding at once.
    pub concurrency: u32,
    /// Bulk: each line to one server in turn, not to every server.
    pub spread: bool,
    /// Draw the progress bar.
    pub progress: bool,
    /// `-v`.
    pub verbose: bool,
}

/// `@198.18.0.2`, `@[2001:db8::2]:5353`, `@ns.example` → a socket address.
pub fn parse_server(env: &dyn Env, s: &str) -> Result<SocketAddr, UsageError> {
    let (host, port) = split_host_port(s)?;
    if host.is_empty() {
        return Err(UsageError(format!("empty server in '@{s}'")));
    }
    resolve_in(env, &host, port.unwrap_or(53), false, false)
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
    /// Validates the arguments; names and files are read through `env`.
    pub fn settings(&self, env: &dyn Env, global: GlobalArgs) -> Result<DnsSettings, UsageError> {
        use crate::wire::dns;
        let mut name: Option<hickory_proto::rr::Name> = None;
        let mut display_name = String::new();
        let mut types = Vec::new();
        let mut servers = Vec::new();
        for a in &self.args {
            if let Some(srv) = a.strip_prefix('@') {
                servers.push(parse_server(env, srv)?);
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
        if bulk.is_some() && (!types.is_empty() || dns::parse_type(&display_name).is_some()) {
            return Err(UsageError(
                "TYPE arguments apply to single queries: with --file each line names its own type (name,type)".into(),
            ));
        }
        if bulk.is_some() && name.is_some() {
            return Err(UsageError(format!(
                "give either NAME ('{display_name}') or --file, not both"
            )));
        }
        if self.pcap.pcap.is_some() && self.no_raw {
            return Err(UsageError(
                "--pcap writes what the raw path's capture saw: not with --no-raw".into(),
            ));
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
            let text = env
                .read(std::path::Path::new("/etc/resolv.conf"))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
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
        let format = match (self.short, self.output.json, self.output.ndjson) {
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
            pcap: self.pcap.pcap.clone(),
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
            progress: self.progress.on(global, env),
            verbose: global.verbose,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, FixedEnv, parse};
    use hickory_proto::rr::RecordType;

    fn dns_in(env: &FixedEnv, args: &[&str]) -> Result<DnsSettings, UsageError> {
        let mut v = vec!["dns"];
        v.extend(args);
        let cli = parse(&v).map_err(UsageError)?;
        let Command::Dns(d) = cli.command else {
            panic!()
        };
        d.settings(env, cli.global)
    }

    fn dns(args: &[&str]) -> Result<DnsSettings, UsageError> {
        dns_in(&FixedEnv::default(), args)
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
        let s = dns(&["a", "@198.18.0.2", "--pcap", "q.pcap"]).unwrap();
        assert_eq!(s.pcap.as_deref(), Some(std::path::Path::new("q.pcap")));
        for bad in [
            &["a", "--no-raw", "--pcap", "q"][..],
            &["--file", "-", "--no-raw", "--pcap", "q"],
        ] {
            assert!(dns(bad).unwrap_err().0.contains("--pcap"), "{bad:?}");
        }
        for bad in [
            &["--file", "-", "AAAA"][..],
            &["--file", "-", "a.test", "MX"],
        ] {
            assert!(dns(bad).unwrap_err().0.contains("TYPE"), "{bad:?}");
        }
        let s = dns(&["--file", "-", "@198.18.0.2", "--pcap", "q.pcap"]).unwrap();
        assert!(s.bulk.is_some() && s.pcap.is_some());
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

    #[test]
    fn default_server_names_and_shared_flags_through_the_env() {
        let env = FixedEnv {
            hosts: vec![("ns.test", vec!["198.18.0.53".parse().unwrap()])],
            files: vec![("/etc/resolv.conf", b"nameserver 198.18.0.9\n")],
            terminal: true,
            ..FixedEnv::default()
        };
        let s = dns_in(&env, &["a.test"]).unwrap();
        assert!(s.default_server);
        assert_eq!(s.servers, vec!["198.18.0.9:53".parse().unwrap()]);
        let s = dns_in(&env, &["a.test", "@ns.test:5353"]).unwrap();
        assert_eq!(s.servers, vec!["198.18.0.53:5353".parse().unwrap()]);
        let e = dns(&["a.test"]).unwrap_err().0;
        assert!(e.contains("no nameserver in /etc/resolv.conf"), "{e}");
        let s = dns_in(
            &env,
            &["-f", "-", "@ns.test", "-W", "0.3", "--retries", "0"],
        )
        .unwrap();
        assert_eq!((s.timeout, s.retries), (Duration::from_millis(300), 0));
        assert!(dns(&["a", "@198.18.0.2", "--retries", "11"]).is_err());
        assert!(s.progress);
        assert!(
            !dns_in(&env, &["-f", "-", "@ns.test", "-q"])
                .unwrap()
                .progress
        );
        assert_eq!(
            dns(&["a", "@198.18.0.2", "--json"]).unwrap().format,
            DnsFormat::Json
        );
        assert!(dns(&["a", "@198.18.0.2", "--short", "--json"]).is_err());
    }
}
