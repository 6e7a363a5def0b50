//! The library in one call: a SYN probe, a scan, a DNS query, each one `async`
//! function with options that have defaults. Each opens what the command of
//! the same name opens (route, raw sender, kernel-timestamped capture) and runs
//! the same sans-IO state machine; none gives up the caller's privileges or
//! catches its signals. Raw sockets need CAP_NET_RAW (a DNS query without it
//! uses an ordinary UDP socket with kernel timestamps).
//!
//! ```no_run
//! # async fn f() -> Result<(), synscope::Error> {
//! let opts = synscope::PingOptions::default().timeout(std::time::Duration::from_millis(500));
//! let reply = synscope::syn_ping("198.18.0.2:80".parse().unwrap(), &opts).await?;
//! println!("{} {:?} {:?}", reply.target, reply.state, reply.rtt);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use crate::cli::{DnsChecks, DnsFormat, DnsSettings, ScanSettings};
use crate::cmd::{CmdError, Log};
use crate::io::PortReservation;
use crate::io::{CaptureLink, Packets};
use crate::probe::{ProbeResult, SynAnswer, SynProbeConfig};
use crate::report::scan::{ScanOutput, ScanResult};
use crate::scan::targets::parse_target;
use crate::scan::{PortList, Shard, TargetSet};
use crate::wire::dns::{EdnsRepr, ReplyRepr};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What failed, on which address, and why.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {address}: {source}")]
#[non_exhaustive]
pub struct Error {
    /// `syn_ping`, `scan`, `dns_query`.
    pub operation: &'static str,
    /// The target, the targets or the server, as given.
    pub address: String,
    #[source]
    /// The cause: the I/O error (which names its own operation and address) or a bad argument.
    pub source: CmdError,
}

impl Error {
    fn new(operation: &'static str, address: impl ToString, source: impl Into<CmdError>) -> Error {
        Error {
            operation,
            address: address.to_string(),
            source: source.into(),
        }
    }

    /// Opening a raw socket or capture was refused: CAP_NET_RAW is missing.
    pub fn needs_privileges(&self) -> bool {
        matches!(&self.source, CmdError::Io(e) if e.is_permission())
    }
}

/// What a port answered to a SYN.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortState {
    /// SYN-ACK: something listens.
    Open,
    /// RST: the host answered, nothing listens.
    Closed,
    /// An ICMP error (`reason` names it, `from` sent it) or silence
    /// (`reason` is `no-answer`, `from` is None).
    Filtered {
        /// The ICMP error's name (`admin-prohibited`, ...) or `no-answer`.
        reason: String,
        /// Who sent the ICMP error; None for silence.
        from: Option<IpAddr>,
    },
}

impl PortState {
    fn filtered(reason: &str, from: Option<IpAddr>) -> PortState {
        let reason = reason.to_string();
        PortState::Filtered { reason, from }
    }
}

impl From<&SynAnswer> for PortState {
    fn from(v: &SynAnswer) -> PortState {
        match v {
            SynAnswer::Open => PortState::Open,
            SynAnswer::Closed => PortState::Closed,
            SynAnswer::Filtered { error, from } => PortState::filtered(&error.name(), Some(*from)),
            SynAnswer::NoAnswer => PortState::filtered("no-answer", None),
        }
    }
}

/// Options of [`syn_ping`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PingOptions {
    /// How long to wait for an answer (default 1 s).
    pub timeout: Duration,
    /// IP TTL / hop limit of the SYN (default 64).
    pub ttl: u8,
    /// Linux-like SYN options (MSS, SACK, timestamps, window scale); false
    /// sends a bare SYN (default true).
    pub syn_options: bool,
    /// Send and capture on this interface (default: the route's).
    pub interface: Option<String>,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            timeout: Duration::from_secs(1),
            ttl: 64,
            syn_options: true,
            interface: None,
        }
    }
}

/// Builder-style setters, one per option field: `Options::default().timeout(d)`.
macro_rules! setters {
    ($t:ty { $($field:ident: $ty:ty),* $(,)? }) => {
        impl $t {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $field(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

setters!(PingOptions { timeout: Duration, ttl: u8, syn_options: bool, interface: Option<String> });
setters!(ScanOptions {
    rate: u64,
    retries: u32,
    timeout: Duration,
    ttl: u8,
    syn_options: bool,
    interface: Option<String>,
    discovery: bool,
});
setters!(DnsOptions {
    timeout: Duration,
    retries: u32,
    recursion_desired: bool,
    edns_udp_size: Option<u16>,
    tcp_fallback: bool,
    raw: bool,
});

/// The answer to one SYN.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reply {
    /// Where the SYN went.
    pub target: SocketAddr,
    /// The address the SYN was sent from.
    pub source: SocketAddr,
    /// What answered it.
    pub state: PortState,
    /// SYN to answer, from kernel timestamps when [`kernel_timed`](Self::kernel_timed).
    pub rtt: Option<Duration>,
    /// Whether both ends of the RTT are kernel timestamps.
    pub kernel_timed: bool,
    /// The answer's IP TTL / hop limit, TCP window and options (SYN-ACK or RST).
    pub ttl: Option<u8>,
    /// The SYN-ACK's or RST's TCP window (unscaled).
    pub window: Option<u16>,
    /// The SYN-ACK's or RST's TCP options.
    pub options: Option<crate::wire::TcpOptions>,
}

/// Sends one SYN to `target` and returns what answered it, timed by kernel
/// timestamps: open (SYN-ACK), closed (RST) or filtered (ICMP error or
/// silence within `opts.timeout`). Needs CAP_NET_RAW and CAP_NET_ADMIN.
///
/// ```no_run
/// # async fn f() -> Result<(), synscope::Error> {
/// let r = synscope::syn_ping("198.18.0.2:80".parse().unwrap(), &Default::default()).await?;
/// assert_eq!(r.state, synscope::PortState::Open);
/// # Ok(()) }
/// ```
pub async fn syn_ping(target: SocketAddr, opts: &PingOptions) -> Result<Reply, Error> {
    let fail = |e: CmdError| Error::new("syn_ping", target, e);
    let log = Log { verbose: false };
    let send = crate::cli::SendSettings {
        source_port: None,
        interface: opts.interface.clone(),
        syn_options: opts.syn_options,
    };
    let mut path = crate::cmd::open_syn_path(target, &send, None, log).map_err(fail)?;
    let src = path.route.src;
    // the source port stays ours (no other socket gets it) until the answer
    let port = PortReservation::reserve(src, 0).map_err(|e| fail(e.into()))?;
    let probe = SynProbeConfig {
        src,
        dst: target,
        ttl: opts.ttl,
        syn_options: opts.syn_options,
        mss: path.route.mss(),
        window: 64240,
        timeout: opts.timeout,
    };
    let mut link = CaptureLink::new(&path.sender, Packets::Capture(&mut path.capture), src, None)
        .map_err(|e| fail(e.into()))?;
    let settle = crate::probe::ping::SETTLE;
    let (result, _) = crate::cmd::ping::one_syn(probe, port.port, settle, None, &mut link)
        .await
        .map_err(fail)?;
    drop(port);
    let result =
        result.ok_or_else(|| fail(CmdError::Setup("the probe ended without a result".into())))?;
    Ok(reply_of(target, src, result))
}

fn reply_of(target: SocketAddr, src: IpAddr, r: ProbeResult) -> Reply {
    let answered = matches!(r.verdict, SynAnswer::Open | SynAnswer::Closed);
    Reply {
        target,
        source: SocketAddr::new(src, r.src_port),
        state: PortState::from(&r.verdict),
        rtt: r.rtt,
        kernel_timed: r.rtt_source == crate::probe::syn::RttSource::Kernel,
        ttl: r.reply.as_ref().map(|x| x.ttl),
        window: r.reply.as_ref().filter(|_| answered).map(|x| x.window),
        options: r.reply.filter(|_| answered).map(|x| x.options),
    }
}

/// Options of [`scan`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// SYNs per second (default 10,000).
    pub rate: u64,
    /// Further rounds to the ports that did not answer (default 1).
    pub retries: u32,
    /// How long to wait for late answers after each round (default 1 s), as
    /// `synscope scan -W`.
    pub timeout: Duration,
    /// IP TTL / hop limit of the SYNs (default 64).
    pub ttl: u8,
    /// Linux-like SYN options (default true); false: bare SYNs.
    pub syn_options: bool,
    /// Send and capture on this interface (default: each route's).
    pub interface: Option<String>,
    /// Resolve on-link targets with ARP / ND first, probing only those that
    /// answer (default true, as `synscope scan`).
    pub discovery: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            rate: 10_000,
            retries: 1,
            timeout: Duration::from_secs(1),
            ttl: 64,
            syn_options: true,
            interface: None,
            discovery: true,
        }
    }
}

/// One (host, port) of a [`scan`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PortResult {
    /// The address probed.
    pub host: IpAddr,
    /// The port probed.
    pub port: u16,
    /// What answered.
    pub state: PortState,
    /// SYN to answer, from kernel timestamps (first round only).
    pub rtt: Option<Duration>,
    /// The answer's IP TTL / hop limit.
    pub ttl: Option<u8>,
}

impl From<ScanResult> for PortResult {
    fn from(r: ScanResult) -> PortResult {
        PortResult {
            host: r.host,
            port: r.port,
            state: PortState::from(&r.verdict),
            rtt: r.rtt_ns.map(Duration::from_nanos),
            ttl: r.ttl,
        }
    }
}

/// Scans every (host, port) of `targets` × `ports` with stateless SYNs, as
/// `synscope scan` does, and returns one result each (hosts down in host
/// discovery have none), sorted by host and port. Targets are addresses,
/// prefixes (`198.18.0.0/24`) or ranges (`198.18.0.1-9`) of either family.
///
/// ```no_run
/// # async fn f() -> Result<(), synscope::Error> {
/// let opts = synscope::ScanOptions::default().rate(1000);
/// for r in synscope::scan(&["198.18.0.2"], &[22, 80, 81], &opts).await? {
///     println!("{}:{} {:?}", r.host, r.port, r.state);
/// }
/// # Ok(()) }
/// ```
pub async fn scan(
    targets: &[&str],
    ports: &[u16],
    opts: &ScanOptions,
) -> Result<Vec<PortResult>, Error> {
    let address = targets.join(",");
    let fail = |e: CmdError| Error::new("scan", &address, e);
    let usage = |m: String| fail(CmdError::Usage(crate::cli::UsageError(m)));
    let no_names = |name: &str| -> Result<IpAddr, String> {
        Err(format!("'{name}': give addresses, not names"))
    };
    let ranges = targets
        .iter()
        .map(|t| parse_target(t, &no_names))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(e.0))?;
    let sets = TargetSet::build_families(&ranges, &[]).map_err(|e| usage(e.0))?;
    if ports.contains(&0) || ports.is_empty() {
        return Err(usage("ports must be 1-65535, at least one".into()));
    }
    let s = ScanSettings {
        targets: sets,
        ports: PortList::from_ports(ports.to_vec()),
        rate: opts.rate.max(1),
        auto_rate: None,
        retries: opts.retries,
        wait: opts.timeout,
        open_only: false,
        pcap: None,
        shard: Shard::WHOLE,
        seed: rand::random(),
        ttl: opts.ttl,
        send: crate::cli::SendSettings {
            source_port: None,
            interface: opts.interface.clone(),
            syn_options: opts.syn_options,
        },
        discovery: opts.discovery,
        format: crate::report::OutputFormat::Ndjson,
        progress: false,
        verbose: false,
        block_size: None,
        // the library's results stay every SYN-ACK as it came (no canaries)
        verify: false,
        canaries: false,
    };
    // the scan's drive loop runs on a thread and runtime of its own (its
    // discovery blocks), as the command's does
    let done = tokio::task::spawn_blocking(move || {
        let mut output = ScanOutput::collecting(std::io::sink());
        crate::cmd::scan::in_runtime(crate::cmd::scan::scan_into(
            &s,
            &mut output,
            false,
            Log { verbose: false },
            &mut crate::cmd::Interrupt::never(),
        ))?;
        Ok::<_, CmdError>(output.into_results())
    })
    .await
    .map_err(|e| fail(CmdError::Setup(format!("scan task: {e}"))))?;
    Ok(done
        .map_err(fail)?
        .into_iter()
        .map(PortResult::from)
        .collect())
}

/// Options of [`dns_query`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsOptions {
    /// How long to wait for each attempt (default 2 s).
    pub timeout: Duration,
    /// Attempts after the first (default 2).
    pub retries: u32,
    /// Set the RD bit (default true).
    pub recursion_desired: bool,
    /// EDNS0 with this UDP payload size (default 1232); None: no EDNS.
    pub edns_udp_size: Option<u16>,
    /// Repeat a truncated (TC) answer over TCP (default true).
    pub tcp_fallback: bool,
    /// Raw sockets and a capture when CAP_NET_RAW is there (default true);
    /// false: an ordinary UDP socket timed by its kernel stamps.
    pub raw: bool,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            timeout: Duration::from_secs(2),
            retries: 2,
            recursion_desired: true,
            edns_udp_size: Some(EdnsRepr::default().udp_size),
            tcp_fallback: true,
            raw: true,
        }
    }
}

/// The outcome of a [`dns_query`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsAnswer {
    /// The server asked.
    pub server: SocketAddr,
    /// The name asked, fully qualified (`b.lab.test.`).
    pub name: String,
    /// The record type asked, e.g. `A`.
    pub rtype: String,
    /// The answer that counts (over TCP after a truncated UDP one); None: no
    /// answer after every attempt, or an ICMP error ([`refused`](Self::refused)).
    pub reply: Option<ReplyRepr>,
    /// The response code's name (`NOERROR`, `NXDOMAIN`, ...), with a reply.
    pub rcode: Option<String>,
    /// The answer section's data, one text per record (`198.18.0.10`, ...).
    pub answers: Vec<String>,
    /// Query to answer over UDP, by kernel timestamps.
    pub rtt: Option<Duration>,
    /// Connect + exchange over TCP, after a truncated UDP answer.
    pub tcp_time: Option<Duration>,
    /// Datagrams sent over UDP (1 + retries used).
    pub attempts: u32,
    /// The ICMP error that ended the query (`port-unreachable from 198.18.0.2`).
    pub refused: Option<String>,
}

/// Asks `server` for `name`'s records of type `rtype` (`A`, `AAAA`, `MX`, ...)
/// over UDP, as `synscope dns` does: retries, ICMP errors end it, a
/// truncated answer is repeated over TCP. Raw sockets with CAP_NET_RAW, an
/// ordinary UDP socket without.
///
/// ```no_run
/// # async fn f() -> Result<(), synscope::Error> {
/// let server = "198.18.0.2:53".parse().unwrap();
/// let a = synscope::dns_query(server, "www.lab.test", "A", &Default::default()).await?;
/// println!("{:?} {:?} in {:?}", a.rcode, a.answers, a.rtt);
/// # Ok(()) }
/// ```
pub async fn dns_query(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    opts: &DnsOptions,
) -> Result<DnsAnswer, Error> {
    let fail = |e: CmdError| Error::new("dns_query", server, e);
    let usage = |m: String| fail(CmdError::Usage(crate::cli::UsageError(m)));
    let qtype: hickory_proto::rr::RecordType = rtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| usage(format!("unknown record type '{rtype}'")))?;
    let qname = hickory_proto::rr::Name::from_utf8(name)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| usage(format!("bad name '{name}': {e}")))?;
    let s = DnsSettings {
        display_name: name.to_string(),
        name: Some(qname.clone()),
        types: vec![qtype],
        servers: vec![server],
        default_server: false,
        edns: opts.edns_udp_size.map(|udp_size| EdnsRepr {
            udp_size,
            ..EdnsRepr::default()
        }),
        recursion_desired: opts.recursion_desired,
        tcp_fallback: opts.tcp_fallback,
        no_raw: !opts.raw,
        pcap: None,
        retries: opts.retries,
        timeout: opts.timeout,
        format: DnsFormat::Json,
        checks: DnsChecks::default(),
        bulk: None,
        rate: None,
        concurrency: 1,
        spread: false,
        progress: false,
        verbose: false,
    };
    let path = crate::cmd::dns::path_of(&s);
    let (r, _) = crate::cmd::dns::one_query(&s, server, qname, qtype, path, Log { verbose: false })
        .await
        .map_err(fail)?;
    let reply = r.reply().cloned();
    Ok(DnsAnswer {
        server,
        name: r.name.clone(),
        rtype: r.qtype.clone(),
        rcode: reply
            .as_ref()
            .map(|x| crate::wire::dns::rcode_name(x.rcode)),
        answers: reply
            .as_ref()
            .map(|x| x.answer.iter().map(|a| a.data.clone()).collect())
            .unwrap_or_default(),
        reply,
        rtt: r.udp.as_ref().map(|u| u.rtt),
        tcp_time: r
            .tcp
            .as_ref()
            .filter(|t| t.reply.is_some())
            .map(|t| t.total),
        attempts: r.attempts,
        refused: r.refused.as_ref().map(|f| f.to_string()),
    })
}
