//! `synscope dns`: raw UDP queries timed by kernel timestamps, TCP after a
//! truncated answer, several servers at once; bulk resolution is in `bulk`.

pub(crate) mod bulk;

use super::{CmdError, Interrupt, Log};
use crate::cli::DnsSettings;
use crate::io::bpf::FlowFilter;
use crate::io::dns_link::SocketLink;
use crate::io::pcap::PcapWriter;
use crate::io::{
    Capture, CaptureLink, IoError, Packets, PortReservation, RawSender, RealClock, Route, dns_tcp,
};
use crate::probe::dns::{DnsExchange, DnsIgnored, DnsOutcome, DnsProbeConfig};
use crate::probe::dns_query::{OneQuery, QueryEvent};
use crate::report::dns::{DnsResult, TcpLeg, TimedBy, UdpLeg, write_results};
use crate::wire::Protocol;
use crate::wire::dns::{QueryRepr, Question, ReplyRepr, type_name};
use hickory_proto::rr::{Name, RecordType};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Exit statuses of `synscope dns` (see `DNS_EXIT_CODES`; defined in cmd::status).
pub use super::status::{
    FAILED as EXIT_CHECK_FAILED, INTERRUPTED as EXIT_INTERRUPTED, NO_ANSWER as EXIT_NO_ANSWER,
    OK as EXIT_OK,
};

fn add_ignored(to: &mut BTreeMap<DnsIgnored, u64>, from: &BTreeMap<DnsIgnored, u64>) {
    for (k, v) in from {
        *to.entry(*k).or_default() += v;
    }
}

/// Runs the command; returns the exit status.
pub async fn run(s: &DnsSettings, out: &mut impl Write, log: Log) -> Result<u8, CmdError> {
    if s.default_server {
        log.debug(|| format!("server from /etc/resolv.conf: {}", s.servers[0]));
    }
    match &s.bulk {
        Some(src) => bulk::bulk(s, src, out, log).await,
        None => {
            // every server gets its own sockets as its query starts
            crate::io::privileges::keep_only_network()?;
            // one query ends within its timeouts anyway; an interrupt just ends it sooner
            tokio::select! {
                r = single(s, out, log) => r,
                _ = super::interrupted() => {
                    eprintln!("synscope: interrupted before every answer came");
                    Ok(EXIT_INTERRUPTED)
                }
            }
        }
    }
}

fn query_of(s: &DnsSettings, name: Name, qtype: RecordType) -> QueryRepr {
    QueryRepr {
        id: rand::random(),
        question: Question::new(name, qtype),
        recursion_desired: s.recursion_desired,
        edns: s.edns.clone(),
    }
}

/// Repeats `query` over TCP after a truncated answer.
async fn over_tcp(server: SocketAddr, query: &QueryRepr, timeout: Duration) -> TcpLeg {
    match dns_tcp::exchange(server, &query.emit(), timeout).await {
        Ok(a) => {
            let (reply, error) = match ReplyRepr::parse(&a.message) {
                Ok(r) if r.id == query.id && r.question.as_ref() == Some(&query.question) => {
                    (Some(r), None)
                }
                Ok(_) => (
                    None,
                    Some("TCP answer does not match the query".to_string()),
                ),
                Err(e) => (None, Some(format!("TCP answer unreadable: {e}"))),
            };
            TcpLeg {
                connect: a.connect,
                exchange: a.exchange,
                total: a.total,
                reply,
                error,
            }
        }
        Err(e) => TcpLeg {
            connect: Duration::ZERO,
            exchange: Duration::ZERO,
            total: Duration::ZERO,
            reply: None,
            error: Some(e.to_string()),
        },
    }
}

fn result_of(o: DnsOutcome, qtype: RecordType) -> DnsResult {
    DnsResult {
        server: o.key.server,
        name: crate::wire::dns::name_text(&o.question.name),
        qtype: type_name(qtype),
        qtype_code: u16::from(qtype),
        query_size: o.query_size,
        attempts: o.attempts,
        udp: match (o.reply, o.rtt) {
            (Some(reply), Some(rtt)) => Some(UdpLeg {
                rtt,
                rtt_source: o.rtt_source,
                attempts: o.attempts,
                reply,
            }),
            _ => None,
        },
        tcp: None,
        refused: o.refused,
        timed_by: TimedBy::RawCapture,
    }
}

/// How single queries are sent and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Raw sockets, with a capture stamping our query and the answer.
    Raw,
    /// An ordinary UDP socket with kernel TX and RX stamps (no privilege).
    Socket,
}

/// The raw path unless asked not to or CAP_NET_RAW is missing.
pub(crate) fn path_of(s: &DnsSettings) -> Path {
    if s.no_raw || !crate::io::privileges::has_net_raw() {
        Path::Socket
    } else {
        Path::Raw
    }
}

/// The raw path's sockets for one query: sender, source port, capture.
fn open_raw(
    route: &Route,
    server: SocketAddr,
) -> Result<(RawSender, PortReservation, Capture), IoError> {
    let sender = RawSender::open(route.src, None)?;
    let port = PortReservation::reserve_udp(route.src, 0)?;
    let filter = FlowFilter::flow(SocketAddr::new(route.src, port.port), server, Protocol::UDP);
    let capture = Capture::open(0, &filter)?;
    Ok((sender, port, capture))
}

/// What a single query's machine reports, as the `-v` log puts it (`how`:
/// the path it takes).
fn query_log<'a>(
    server: SocketAddr,
    src: std::net::IpAddr,
    port: u16,
    query: &'a QueryRepr,
    how: &'static str,
    log: Log,
) -> impl FnMut(QueryEvent) -> Result<(), CmdError> + 'a {
    move |e| {
        match e {
            QueryEvent::Sent { id } => log.debug(|| {
                format!(
                    "sent {} {} to {server} from {src}:{port} id {id} ({how})",
                    query.question.name,
                    type_name(query.question.qtype),
                )
            }),
            QueryEvent::Retry { id } => {
                log.debug(|| format!("no answer from {server} yet: retrying id {id}"))
            }
        }
        Ok(())
    }
}

/// Runs `query` over raw UDP until answered, refused or given up (the one
/// drive loop; an interrupt ends the whole command around it).
async fn exchange_raw(
    ex: &mut DnsExchange,
    (sender, port, mut capture): (RawSender, PortReservation, Capture),
    server: SocketAddr,
    query: &QueryRepr,
    pcap: Option<&mut PcapWriter>,
    log: Log,
) -> Result<DnsOutcome, CmdError> {
    let src = ex.config().src;
    let mut q = OneQuery::new(ex, server, port.port, query.clone());
    let mut link = CaptureLink::new(&sender, Packets::Capture(&mut capture), src, pcap)?;
    let outcome = drive_query(
        &mut q,
        &mut link,
        (server, src, port.port),
        query,
        "raw",
        log,
    )
    .await;
    drop(link);
    if let Some(f) = capture.fragments().describe() {
        log.debug(|| format!("{server}: {f}"));
    }
    outcome
}

/// Drives one query's machine over `link` to its outcome, logging (`-v`)
/// what it reports; `how` names the path in the log.
async fn drive_query(
    q: &mut OneQuery<'_>,
    link: &mut impl crate::io::Link,
    (server, src, port): (SocketAddr, std::net::IpAddr, u16),
    query: &QueryRepr,
    how: &'static str,
    log: Log,
) -> Result<DnsOutcome, CmdError> {
    let mut reporter = query_log(server, src, port, query, how, log);
    let clock = RealClock::new();
    crate::drive::drive(q, link, &clock, &mut reporter, &mut Interrupt::never()).await?;
    q.take_outcome()
        .ok_or_else(|| CmdError::Setup(format!("query to {server} ended without an outcome")))
}

/// Runs `query` over an ordinary UDP socket until answered, refused or given
/// up, through the same drive loop and machine as the raw path: the socket
/// link hands the machine the kernel's TX stamp (error queue) and RX stamp,
/// and ICMP errors (IP_RECVERR), as the packets a capture would hold.
async fn exchange_socket(
    ex: &mut DnsExchange,
    server: SocketAddr,
    query: &QueryRepr,
    log: Log,
) -> Result<DnsOutcome, CmdError> {
    let src = ex.config().src;
    let mut link = SocketLink::open(&[src], 1)?;
    if !link.ready_stamps().await? {
        log.debug(|| "no kernel receive stamps: answers timed in user space".into());
    }
    let port = link.ports(src)[0];
    let mut q = OneQuery::new(ex, server, port, query.clone());
    drive_query(
        &mut q,
        &mut link,
        (server, src, port),
        query,
        "UDP socket",
        log,
    )
    .await
}

/// One query to one server over UDP, raw or through a socket (then TCP if
/// truncated).
pub(crate) async fn one_query(
    s: &DnsSettings,
    server: SocketAddr,
    name: Name,
    qtype: RecordType,
    path: Path,
    log: Log,
) -> Result<(DnsResult, BTreeMap<DnsIgnored, u64>), CmdError> {
    one_query_to(s, server, name, qtype, path, None, log).await
}

/// [`one_query`], writing the raw path's packets (query and answer, as the
/// capture saw them) to `pcap` when given.
async fn one_query_to(
    s: &DnsSettings,
    server: SocketAddr,
    name: Name,
    qtype: RecordType,
    path: Path,
    pcap: Option<&mut PcapWriter>,
    log: Log,
) -> Result<(DnsResult, BTreeMap<DnsIgnored, u64>), CmdError> {
    let route = Route::lookup(server.ip(), None)?;
    let mut ex = DnsExchange::new(DnsProbeConfig {
        src: route.src,
        ttl: 64,
        timeout: s.timeout,
        retries: s.retries,
        answers_only: false,
    });
    let query = query_of(s, name, qtype);
    let raw = match path {
        Path::Raw => match open_raw(&route, server) {
            Ok(r) => Some(r),
            // no raw socket after all (e.g. a seccomp or LSM rule): use a socket
            // (not with --pcap: it needs the capture)
            Err(e) if e.is_permission() && pcap.is_none() => {
                log.debug(|| format!("{e}: timing with socket timestamps instead"));
                None
            }
            Err(e) => return Err(e.into()),
        },
        Path::Socket => None,
    };
    let (outcome, timed_by) = match raw {
        Some(r) => (
            exchange_raw(&mut ex, r, server, &query, pcap, log).await?,
            TimedBy::RawCapture,
        ),
        None => (
            exchange_socket(&mut ex, server, &query, log).await?,
            TimedBy::SocketTimestamps,
        ),
    };
    log.debug(|| {
        format!(
            "{server}: sent at {} ({:?}), rtt {:?}, attempts {}, timed by {}",
            outcome.sent_at.0,
            outcome.rtt_source,
            outcome.rtt,
            outcome.attempts,
            timed_by.name()
        )
    });
    let mut result = result_of(outcome, qtype);
    result.timed_by = timed_by;
    if s.tcp_fallback && result.udp.as_ref().is_some_and(|u| u.reply.flags.tc) {
        log.debug(|| format!("truncated answer from {server}: repeating over TCP"));
        result.tcp = Some(over_tcp(server, &query, s.timeout).await);
    }
    Ok((result, ex.ignored().clone()))
}

async fn single(s: &DnsSettings, out: &mut impl Write, log: Log) -> Result<u8, CmdError> {
    let Some(name) = s.name.clone() else {
        return Err(CmdError::Setup("no name to query".into()));
    };
    let path = path_of(s);
    if path == Path::Socket && s.pcap.is_some() {
        return Err(CmdError::Setup(
            "--pcap needs raw sockets and a capture (CAP_NET_RAW)".into(),
        ));
    }
    let mut pcap = s.pcap.as_deref().map(PcapWriter::create).transpose()?;
    if path == Path::Socket {
        if !s.no_raw {
            log.debug(|| "no CAP_NET_RAW: timing with socket timestamps".into());
        }
        // ordinary UDP and TCP sockets need no capability at all
        crate::io::privileges::drop_all()?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut order = Vec::new();
    let mut results = Vec::new();
    let mut ignored = BTreeMap::new();
    for &qtype in &s.types {
        for &server in &s.servers {
            order.push((server, qtype));
            if let Some(w) = pcap.as_mut() {
                // one file: the queries one after another (each timed by its
                // own stamps, as when they run at once)
                let (res, ign) =
                    one_query_to(s, server, name.clone(), qtype, path, Some(w), log).await?;
                add_ignored(&mut ignored, &ign);
                results.push(res);
                continue;
            }
            let (s2, n2) = (s.clone(), name.clone());
            tasks.spawn(async move { one_query(&s2, server, n2, qtype, path, log).await });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let (res, ign) = r.map_err(|e| CmdError::Setup(format!("query task: {e}")))??;
        add_ignored(&mut ignored, &ign);
        results.push(res);
    }
    if let Some(w) = pcap.as_mut() {
        w.flush()?;
    }
    // in the order asked: types, then servers
    results.sort_by_key(|r| {
        order
            .iter()
            .position(|(sv, t)| *sv == r.server && u16::from(*t) == r.qtype_code)
    });
    if !ignored.is_empty() {
        log.debug(|| format!("ignored packets: {ignored:?}"));
    }
    let failures = write_results(out, s.format, &results, &s.checks, &ignored)?;
    out.flush()?;
    let unanswered: Vec<&DnsResult> = results.iter().filter(|r| r.reply().is_none()).collect();
    if let Some(r) = unanswered.first() {
        if let Some(f) = &r.refused {
            eprintln!(
                "synscope: no answer from {} for {} {}: {f} after {}",
                r.server,
                r.name,
                r.qtype,
                crate::report::human(f.after)
            );
            return Ok(EXIT_NO_ANSWER);
        }
        eprintln!(
            "synscope: no answer from {} for {} {} after {} attempt(s) of {}",
            r.server,
            r.name,
            r.qtype,
            r.attempts,
            crate::report::human(s.timeout)
        );
        return Ok(EXIT_NO_ANSWER);
    }
    if let Some(f) = failures.first() {
        eprintln!("synscope: check failed: {f}");
        return Ok(EXIT_CHECK_FAILED);
    }
    Ok(EXIT_OK)
}
