//! `synscope dns`: raw UDP queries timed by kernel timestamps, TCP after a
//! truncated answer, several servers at once, and bulk resolution.

use super::{CmdError, Log};
use crate::cli::{BulkSource, DnsSettings};
use crate::event::Timestamp;
use crate::io::bpf::FlowFilter;
use crate::io::{
    Capture, IoError, PortReservation, RawSender, Route, StampedUdp, UdpEvent, dns_tcp,
};
use crate::probe::dns::{DnsExchange, DnsIgnored, DnsOutcome, DnsProbeConfig, QueryKey};
use crate::report::dns::{BulkSummary, DnsResult, TcpLeg, TimedBy, UdpLeg, write_results};
use crate::wire::Protocol;
use crate::wire::dns::{
    QueryRepr, Question, ReplyRepr, parse_name, parse_type, rcode_name, type_name,
};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Exit statuses of `synscope dns` (see `DNS_EXIT_CODES`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_CHECK_FAILED: u8 = 1;
pub const EXIT_NO_ANSWER: u8 = 3;
/// Stopped by SIGINT or SIGTERM (the summary so far is printed).
pub const EXIT_INTERRUPTED: u8 = 1;

fn add_ignored(to: &mut BTreeMap<DnsIgnored, u64>, from: &BTreeMap<DnsIgnored, u64>) {
    for (k, v) in from {
        *to.entry(*k).or_default() += v;
    }
}

fn instant_of(t: Timestamp) -> Instant {
    let now = Timestamp::now();
    Instant::now() + Duration::from_nanos(t.0.saturating_sub(now.0))
}

/// Runs the command; returns the exit status.
pub async fn run(s: &DnsSettings, out: &mut impl Write, log: Log) -> Result<u8, CmdError> {
    if s.default_server {
        log.debug(|| format!("server from /etc/resolv.conf: {}", s.servers[0]));
    }
    match &s.bulk {
        Some(src) => bulk(s, src, out, log).await,
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
        name: o.question.name.to_ascii(),
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
enum Path {
    /// Raw sockets, with a capture stamping our query and the answer.
    Raw,
    /// An ordinary UDP socket with kernel TX and RX stamps (no privilege).
    Socket,
}

/// The raw path unless asked not to or CAP_NET_RAW is missing.
fn path_of(s: &DnsSettings) -> Path {
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
    let filter = FlowFilter {
        local: route.src,
        remote: Some(server.ip()),
        remote_port: Some(server.port()),
        local_ports: Some((port.port, port.port)),
        protocol: Protocol::UDP,
        outbound: true,
    };
    let capture = Capture::open(0, &filter)?;
    Ok((sender, port, capture))
}

/// Runs `query` over raw UDP until answered, refused or given up.
async fn exchange_raw(
    ex: &mut DnsExchange,
    (sender, port, mut capture): (RawSender, PortReservation, Capture),
    server: SocketAddr,
    query: &QueryRepr,
    log: Log,
) -> Result<DnsOutcome, CmdError> {
    let (_, dgram) = ex.query(Timestamp::now(), 0, server, port.port, query);
    sender.send(server.ip(), &dgram)?;
    log.debug(|| {
        format!(
            "sent {} {} to {server} from {}:{} id {} (raw)",
            query.question.name,
            type_name(query.question.qtype),
            ex.config().src,
            port.port,
            query.id
        )
    });
    loop {
        let wake = ex
            .next_deadline()
            .map(instant_of)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            pkt = capture.recv() => {
                let p = pkt?;
                if let Some(o) = ex.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded) {
                    return Ok(o);
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                let (mut done, resend) = ex.on_time(Timestamp::now());
                for r in resend {
                    log.debug(|| format!("no answer from {server} yet: retrying id {}", r.key.id));
                    sender.send(server.ip(), &r.datagram)?;
                }
                if let Some(o) = done.pop() {
                    return Ok(o);
                }
            }
        }
    }
}

/// Runs `query` over an ordinary UDP socket until answered, refused or given
/// up: the kernel's TX stamp (error queue) and RX stamp time it, ICMP errors
/// come through IP_RECVERR.
async fn exchange_socket(
    ex: &mut DnsExchange,
    server: SocketAddr,
    query: &QueryRepr,
    log: Log,
) -> Result<DnsOutcome, CmdError> {
    let src = ex.config().src;
    let mut sock = StampedUdp::bind(SocketAddr::new(src, 0))?;
    let port = sock.local_addr().port();
    let msg = query.emit();
    // the sequence number of each datagram in flight, to match its TX stamp
    let mut in_flight: HashMap<u32, QueryKey> = HashMap::new();
    let (key, _) = ex.query(Timestamp::now(), 0, server, port, query);
    in_flight.insert(sock.send_to(server, &msg)?, key);
    log.debug(|| {
        format!(
            "sent {} {} to {server} from {src}:{port} id {} (UDP socket)",
            query.question.name,
            type_name(query.question.qtype),
            query.id
        )
    });
    loop {
        while let Some(ev) = sock.try_recv()? {
            let done = match ev {
                UdpEvent::Sent { seq, at } => {
                    if let Some(k) = in_flight.remove(&seq) {
                        ex.on_sent(&k, at);
                    }
                    None
                }
                UdpEvent::Received { from, at, data, .. } => ex.on_message(from, port, &data, at),
                UdpEvent::Icmp {
                    error,
                    from,
                    to,
                    quoted,
                    at,
                } => {
                    let id = quoted.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    ex.on_icmp(to, port, id, error, from, at)
                }
            };
            if let Some(o) = done {
                return Ok(o);
            }
        }
        let wake = ex
            .next_deadline()
            .map(instant_of)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            r = sock.wait() => r?,
            _ = tokio::time::sleep_until(wake) => {
                let (mut done, resend) = ex.on_time(Timestamp::now());
                for r in resend {
                    log.debug(|| format!("no answer from {server} yet: retrying id {}", r.key.id));
                    // a stamp of an earlier attempt must not time this one
                    in_flight.retain(|_, k| *k != r.key);
                    in_flight.insert(sock.send_to(server, &msg)?, r.key);
                }
                if let Some(o) = done.pop() {
                    return Ok(o);
                }
            }
        }
    }
}

/// One query to one server over UDP, raw or through a socket (then TCP if
/// truncated).
async fn one_query(
    s: &DnsSettings,
    server: SocketAddr,
    name: Name,
    qtype: RecordType,
    path: Path,
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
            Err(e) if e.is_permission() => {
                log.debug(|| format!("{e}: timing with socket timestamps instead"));
                None
            }
            Err(e) => return Err(e.into()),
        },
        Path::Socket => None,
    };
    let (outcome, timed_by) = match raw {
        Some(r) => (
            exchange_raw(&mut ex, r, server, &query, log).await?,
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
    if path == Path::Socket && !s.no_raw {
        log.debug(|| "no CAP_NET_RAW: timing with socket timestamps".into());
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut order = Vec::new();
    for &qtype in &s.types {
        for &server in &s.servers {
            let (s2, n2) = (s.clone(), name.clone());
            order.push((server, qtype));
            tasks.spawn(async move { one_query(&s2, server, n2, qtype, path, log).await });
        }
    }
    let mut results = Vec::new();
    let mut ignored = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (res, ign) = r.map_err(|e| CmdError::Setup(format!("query task: {e}")))??;
        add_ignored(&mut ignored, &ign);
        results.push(res);
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

/// One parsed bulk line.
struct BulkLine {
    name: Name,
    qtype: RecordType,
    server: SocketAddr,
}

fn parse_line(line: &str, default: SocketAddr) -> Result<BulkLine, String> {
    let mut parts = line.split(',').map(str::trim);
    let name = parse_name(parts.next().unwrap_or(""))?;
    let qtype = match parts.next() {
        None | Some("") => RecordType::A,
        Some(t) => parse_type(t).ok_or_else(|| format!("unknown type '{t}'"))?,
    };
    let server = match parts.next() {
        None | Some("") => default,
        Some(sv) => {
            let (h, p) =
                crate::cli::split_host_port(sv.trim_start_matches('@')).map_err(|e| e.0)?;
            let ip = h
                .parse()
                .map_err(|_| format!("server '{sv}' is not an IP address"))?;
            SocketAddr::new(ip, p.unwrap_or(53))
        }
    };
    if parts.next().is_some() {
        return Err("too many fields: expected name[,type[,server]]".into());
    }
    Ok(BulkLine {
        name,
        qtype,
        server,
    })
}

/// Reserves `n` consecutive UDP source ports (so one BPF range covers them).
fn reserve_block(src: std::net::IpAddr, n: u16) -> Result<Vec<PortReservation>, CmdError> {
    for _ in 0..50 {
        let base: u16 = 20000 + (rand::random::<u16>() % 40000);
        let mut held = Vec::with_capacity(n as usize);
        for p in base..base + n {
            match PortReservation::reserve_udp(src, p) {
                Ok(r) => held.push(r),
                Err(_) => break,
            }
        }
        if held.len() == n as usize {
            return Ok(held);
        }
    }
    Err(CmdError::Setup(format!(
        "could not reserve {n} consecutive UDP ports on {src}"
    )))
}

struct Pending {
    line_no: u64,
    query: QueryRepr,
}

/// One NDJSON line of bulk output (fields in this order).
#[derive(serde::Serialize)]
struct NdjsonLine<'a> {
    line: u64,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: &'a str,
    server: SocketAddr,
    status: Option<String>,
    answers: Vec<String>,
    time_us: Option<f64>,
    rtt_source: Option<crate::probe::syn::RttSource>,
    attempts: u32,
    transport: &'static str,
    truncated: Option<bool>,
}

async fn bulk(
    s: &DnsSettings,
    src: &BulkSource,
    out: &mut impl Write,
    log: Log,
) -> Result<u8, CmdError> {
    let reader: Box<dyn BufRead> = match src {
        BulkSource::Stdin => Box::new(std::io::BufReader::new(std::io::stdin())),
        BulkSource::File(p) => Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(p)
                .map_err(|e| CmdError::Setup(format!("open {}: {e}", p.display())))?,
        )),
    };
    let mut lines = reader.lines();
    let default = s.servers[0];
    let route = Route::lookup(default.ip(), None)?;
    let sender = RawSender::open(route.src, None)?;
    const PORTS: u16 = 64;
    let ports = reserve_block(route.src, PORTS)?;
    let (lo, hi) = (ports[0].port, ports[ports.len() - 1].port);
    let filter = FlowFilter {
        local: route.src,
        remote: None,
        remote_port: None,
        local_ports: Some((lo, hi)),
        protocol: Protocol::UDP,
        // bulk: not our own queries (half the packets); latency is from the
        // user-space send time to the kernel's receive stamp
        outbound: false,
    };
    let mut capture = Capture::open(0, &filter)?;
    // bulk opens no socket after this (TCP fallback needs no privilege)
    crate::io::privileges::drop_all()?;
    log.debug(|| format!("bulk: source {} ports {lo}-{hi}", route.src));
    let mut ex = DnsExchange::new(DnsProbeConfig {
        src: route.src,
        ttl: 64,
        timeout: s.timeout,
        retries: s.retries,
        answers_only: true,
    });
    let mut pending: std::collections::HashMap<crate::probe::dns::QueryKey, Pending> =
        std::collections::HashMap::new();
    let mut sum = BulkSummary::default();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let progress = s.progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = started;
    let mut input_done = false;
    let mut line_no: u64 = 0;
    let mut first_sent: u64 = 0;
    let mut next_port: usize = 0;
    let concurrency = s.concurrency as usize;
    let mut route_ok: BTreeMap<std::net::IpAddr, bool> = BTreeMap::new();
    route_ok.insert(default.ip(), true);
    let mut carry: Vec<DnsOutcome> = Vec::new();
    let mut batch: Vec<(std::net::IpAddr, Vec<u8>)> = Vec::with_capacity(256);
    let signal = super::interrupted();
    tokio::pin!(signal);

    loop {
        // 1. send what the rate and the concurrency allow
        let mut budget = 256usize;
        while !input_done && ex.outstanding() < concurrency && budget > 0 {
            if let Some(rate) = s.rate {
                let allowed = (started.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
                if first_sent >= allowed {
                    break;
                }
            }
            let Some(line) = lines.next() else {
                input_done = true;
                break;
            };
            let line = line.map_err(|e| CmdError::Setup(format!("read names: {e}")))?;
            line_no += 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            sum.names += 1;
            let parsed = parse_line(t, default).and_then(|l| {
                let ok = *route_ok.entry(l.server.ip()).or_insert_with(|| {
                    Route::lookup(l.server.ip(), None).is_ok_and(|r| r.src == route.src)
                });
                if ok {
                    Ok(l)
                } else {
                    Err(format!(
                        "server {} is not reached from source {} (bulk mode uses one source address)",
                        l.server, route.src
                    ))
                }
            });
            let l = match parsed {
                Ok(l) => l,
                Err(e) => {
                    sum.bad_lines += 1;
                    writeln!(out, "{}", json!({"line": line_no, "input": t, "error": e}))?;
                    continue;
                }
            };
            budget -= 1;
            let port = ports[next_port % ports.len()].port;
            next_port += 1;
            let mut q = query_of(s, l.name, l.qtype);
            let mut tries = 0;
            while ex.in_use(&crate::probe::dns::QueryKey {
                server: l.server,
                src_port: port,
                id: q.id,
            }) && tries < 100
            {
                q.id = rand::random();
                tries += 1;
            }
            let (key, dgram) = ex.query(Timestamp::now(), line_no, l.server, port, &q);
            batch.push((l.server.ip(), dgram));
            sum.sent_packets += 1;
            first_sent += 1;
            pending.insert(key, Pending { line_no, query: q });
        }
        if !batch.is_empty() {
            // one sendmmsg for the lot; a refused datagram times out like a lost one
            let refs: Vec<(std::net::IpAddr, &[u8])> =
                batch.iter().map(|(a, d)| (*a, d.as_slice())).collect();
            sender.send_batch(&refs)?;
            batch.clear();
        }
        // 2. answers queued so far
        let mut finished: Vec<DnsOutcome> = std::mem::take(&mut carry);
        for _ in 0..4096 {
            match capture.try_recv()? {
                Some(p) => {
                    if let Some(o) =
                        ex.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded)
                    {
                        finished.push(o);
                    }
                }
                None => break,
            }
        }
        // 3. deadlines
        let (done, resend) = ex.on_time(Timestamp::now());
        for r in resend {
            sender.send(r.key.server.ip(), &r.datagram)?;
            sum.sent_packets += 1;
        }
        finished.extend(done);
        for o in finished {
            let Some(p) = pending.remove(&o.key) else {
                continue;
            };
            let mut r = result_of(o, p.query.question.qtype);
            if s.tcp_fallback && r.udp.as_ref().is_some_and(|u| u.reply.flags.tc) {
                r.tcp = Some(over_tcp(r.server, &p.query, s.timeout).await);
                sum.tcp += 1;
            }
            match (r.reply(), r.time()) {
                (Some(rep), Some(t)) => {
                    sum.answered += 1;
                    *sum.rcodes.entry(rcode_name(rep.rcode)).or_default() += 1;
                    sum.rtts_decius
                        .push((t.as_nanos() / 100).min(u32::MAX as u128) as u32);
                }
                _ => sum.timeouts += 1,
            }
            // a plain struct, serialised straight to the output: no JSON tree per name
            let line = NdjsonLine {
                line: p.line_no,
                name: &r.name,
                qtype: &r.qtype,
                server: r.server,
                status: r.reply().map(|x| rcode_name(x.rcode)),
                answers: r.answer_set(),
                time_us: r.time().map(crate::report::micros),
                rtt_source: r.udp.as_ref().map(|u| u.rtt_source),
                attempts: r.attempts,
                transport: r.transport(),
                truncated: r.udp.as_ref().map(|u| u.reply.flags.tc),
            };
            serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        if input_done && ex.outstanding() == 0 {
            break;
        }
        if progress && last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r{} names, {} answered, {} timeouts, {} outstanding, {:.0} q/s   ",
                sum.names,
                sum.answered,
                sum.timeouts,
                ex.outstanding(),
                sum.answered as f64 / secs
            );
        }
        // 4. wait when there is nothing to send right now
        let can_send = !input_done && ex.outstanding() < concurrency;
        let rate_wait = s.rate.map(|rate| {
            let next = (first_sent as f64) / rate as f64;
            started + Duration::from_secs_f64(next)
        });
        let send_at = match (can_send, rate_wait) {
            (false, _) => None,
            (true, Some(at)) if at > Instant::now() => Some(at),
            (true, _) => continue,
        };
        let mut wake = ex
            .next_deadline()
            .map(instant_of)
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        if let Some(at) = send_at {
            wake = wake.min(at);
        }
        tokio::select! {
            pkt = capture.recv() => {
                let p = pkt?;
                if let Some(o) = ex.on_packet(&p.data, p.direction, p.timestamp, p.checksum_offloaded) {
                    carry.push(o); // handled on the next turn
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut signal => {
                // stop: what is outstanding is neither answered nor timed out
                sum.interrupted = true;
                break;
            }
        }
    }
    sum.elapsed = started.elapsed();
    if progress {
        eprintln!();
    }
    let doc = sum.to_json(ex.ignored());
    writeln!(out, "{doc}")?;
    out.flush()?;
    let s2 = &doc["summary"];
    eprintln!(
        "synscope: {} names, {} answered, {} timeouts, {} bad lines in {:.3} s: {:.0} q/s; latency p50 {} µs, p90 {} µs, p99 {} µs; rcodes {}",
        sum.names,
        sum.answered,
        sum.timeouts,
        sum.bad_lines,
        sum.elapsed.as_secs_f64(),
        s2["qps"].as_f64().unwrap_or(0.0),
        s2["latency_us"]["p50"],
        s2["latency_us"]["p90"],
        s2["latency_us"]["p99"],
        s2["rcodes"]
    );
    Ok(if sum.interrupted {
        EXIT_INTERRUPTED
    } else if sum.timeouts > 0 {
        EXIT_NO_ANSWER
    } else {
        EXIT_OK
    })
}
