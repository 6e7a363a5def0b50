//! `synscope dns --file`: bulk resolution. Every line is a query to each
//! server (or, with `--spread`, to one server in turn), sent through one raw
//! sender per source address and answered through one capture, checked with
//! the same checks as a single query, and printed as one NDJSON line (or
//! `--json`, `--short`), then a summary.

use super::super::{CmdError, Log};
use super::{
    EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_NO_ANSWER, EXIT_OK, instant_of, over_tcp, query_of,
    result_of,
};
use crate::cli::{BulkSource, DnsFormat, DnsSettings};
use crate::event::Timestamp;
use crate::io::bpf::FlowFilter;
use crate::io::capture::{BlockingCapture, CapturedRef};
use crate::io::ring::RingCapture;
use crate::io::txstamp::SendLog;
use crate::io::{IoError, PortReservation, RawSender, Route, StampedUdp, UdpEvent};
use crate::probe::dns::{
    DnsExchange, DnsOutcome, DnsProbeConfig, QueryKey, Received, Refusal, read_packet,
};
use crate::probe::fxhash::{FxMap, FxSet};
use crate::report::dns::{BulkSummary, DifferingLine, DnsResult, TimedBy, answer_view, check};
use crate::wire::Protocol;
use crate::wire::dns::{QueryRepr, parse_name, parse_type, rcode_known, rcode_name};
use hickory_proto::rr::{Name, RecordType};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Bulk only: some input line could not be read or parsed (the others were
/// still queried).
pub use crate::cmd::status::BAD_LINES as EXIT_BAD_LINES;

/// One parsed bulk line.
struct BulkLine {
    name: Name,
    qtype: RecordType,
    /// The line's own server, if it names one.
    server: Option<SocketAddr>,
}

fn parse_line(line: &str) -> Result<BulkLine, String> {
    let mut parts = line.split(',').map(str::trim);
    let name = parse_name(parts.next().unwrap_or(""))?;
    let qtype = match parts.next() {
        None | Some("") => RecordType::A,
        Some(t) => parse_type(t).ok_or_else(|| format!("unknown type '{t}'"))?,
    };
    let server = match parts.next() {
        None | Some("") => None,
        Some(sv) => {
            let (h, p) =
                crate::cli::split_host_port(sv.trim_start_matches('@')).map_err(|e| e.0)?;
            let ip = h
                .parse()
                .map_err(|_| format!("server '{sv}' is not an IP address"))?;
            Some(SocketAddr::new(ip, p.unwrap_or(53)))
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

/// A line's text, or why it is not text.
type LineText<'a> = Result<&'a str, String>;

/// Lines as bytes, so that a line that is not UTF-8 is an error of that line
/// alone (with its number), not of the whole input.
struct Lines<R> {
    r: R,
    buf: Vec<u8>,
    no: u64,
}

impl<R: BufRead> Lines<R> {
    /// The next line's number and text (or why it is not text); None at the end.
    fn next_line(&mut self) -> Result<Option<(u64, LineText<'_>)>, CmdError> {
        self.buf.clear();
        let n = self
            .r
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CmdError::Setup(format!("read names: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        self.no += 1;
        let mut b = &self.buf[..];
        while let [rest @ .., b'\n' | b'\r'] = b {
            b = rest;
        }
        Ok(Some((
            self.no,
            std::str::from_utf8(b).map_err(|e| {
                format!(
                    "not UTF-8 (byte 0x{:02x} at column {})",
                    b[e.valid_up_to()],
                    e.valid_up_to() + 1
                )
            }),
        )))
    }
}

/// Reserves `n` consecutive UDP source ports (so one BPF range covers them).
fn reserve_block(src: IpAddr, n: u16) -> Result<Vec<PortReservation>, CmdError> {
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

/// Everything that goes out from one source address: the exchange, the
/// queries in flight, and how they are sent and received ([`Link`]).
struct Path {
    src: IpAddr,
    ex: DnsExchange,
    /// Queries sent and not reported yet (the exchange keeps the rest: the
    /// line number as its tag, the question).
    pending: FxSet<QueryKey>,
    next_port: usize,
    link: Link,
}

/// How a path's queries travel and are timed.
enum Link {
    Raw(Box<RawLink>),
    Socket(SocketLink),
}

/// With CAP_NET_RAW: a raw sender (kernel TX stamps from its error queue), a
/// block of reserved source ports, and a capture of the replies read by a
/// thread of its own.
struct RawLink {
    sender: RawSender,
    /// Until the receiver thread starts.
    capture: Option<Replies>,
    receiver: Option<std::thread::JoinHandle<Result<(), IoError>>>,
    ports: Vec<PortReservation>,
    batch: Vec<(IpAddr, Vec<u8>)>,
    /// The key of each datagram in `batch`.
    batch_keys: Vec<QueryKey>,
    refused_at: Vec<usize>,
    /// The capture sees our queries leave, with their kernel stamps.
    sends_captured: bool,
    /// Else the kernel stamps our sends (SO_TIMESTAMPING on the raw socket).
    tx_stamps: bool,
    sends: SendLog<QueryKey>,
    stamps: Vec<(u32, Timestamp)>,
}

/// Without CAP_NET_RAW (or with --no-raw): ordinary UDP sockets, timed by
/// their kernel TX stamps (error queue) and RX stamps ([`StampedUdp`]).
struct SocketLink {
    socks: Vec<StampedUdp>,
    /// Per socket: what was sent, in order, to match its TX stamps.
    sends: Vec<SendLog<QueryKey>>,
    /// Per socket: (server, DNS message, key) to send.
    batch: Vec<Vec<(SocketAddr, Vec<u8>, QueryKey)>>,
}

/// Source ports of the raw path (one reserved block, one BPF range).
const PORTS: u16 = 64;
/// Sockets of the socket path: each has its own receive buffer (an
/// unprivileged process cannot raise one above net.core.rmem_max).
const SOCKETS: usize = 16;

/// The DNS message of a UDP datagram we built (after the IP and UDP headers).
fn udp_payload(dgram: &[u8]) -> &[u8] {
    let ip_len = match dgram.first().map(|b| b >> 4) {
        Some(4) => usize::from(dgram[0] & 0xf) * 4,
        _ => 40,
    };
    dgram.get(ip_len + 8..).unwrap_or(&[])
}

impl Path {
    fn exchange(src: IpAddr, s: &DnsSettings) -> DnsExchange {
        DnsExchange::new(DnsProbeConfig {
            src,
            ttl: 64,
            timeout: s.timeout,
            retries: s.retries,
            // the answer set is all bulk prints and checks, except that
            // --expect-signed looks at every RRset and at the authority
            // section (a signed denial)
            answers_only: !s.checks.signed,
        })
    }

    fn open_raw(src: IpAddr, s: &DnsSettings, log: Log) -> Result<Path, CmdError> {
        let sender = RawSender::open(src, None)?;
        let ports = reserve_block(src, PORTS)?;
        let (lo, hi) = (ports[0].port, ports[ports.len() - 1].port);
        // the kernel stamps our sends on the raw socket (SO_TIMESTAMPING,
        // OPT_TSONLY, read off its error queue); without that, the ring
        // captures them leaving, as tcpdump does. Measured (300k mixed
        // queries, 3 runs each): stamps 0.30 s user + 0.67 s system, the
        // capture of our own queries 0.47 s + 0.54 s (its receiver thread
        // reads every query back)
        let tx_stamps = match sender.enable_tx_stamps() {
            Ok(()) => true,
            Err(e) => {
                log.debug(|| format!("bulk: no transmit timestamps ({e})"));
                false
            }
        };
        let mut filter = FlowFilter {
            local: src,
            remote: None,
            remote_port: None,
            local_ports: Some((lo, hi)),
            protocol: Protocol::UDP,
            outbound: !tx_stamps,
        };
        // a TPACKET_V3 ring: no system call nor copy per packet
        let ring = RingCapture::open(0, &filter, 8 << 20);
        let (capture, sends_captured, tx_stamps) = match ring {
            Ok(c) => {
                if tx_stamps {
                    // spares the kernel a copy of every query (best effort)
                    if let Err(e) = c.ignore_outgoing() {
                        log.debug(|| format!("bulk: {e}"));
                    }
                }
                (Replies::Ring(c), !tx_stamps, tx_stamps)
            }
            Err(e) => {
                log.debug(|| format!("bulk: no capture ring ({e}): socket reads"));
                // replies only (half the packets), read with recvmmsg
                filter.outbound = false;
                let c = BlockingCapture::open(0, &filter, 8 << 20)?;
                if let Err(e) = c.ignore_outgoing() {
                    log.debug(|| format!("bulk: {e}"));
                }
                // without stamps, RTTs start at the user-space send time
                (Replies::Queue(c), false, tx_stamps)
            }
        };
        log.debug(|| format!("bulk: raw sockets from {src}, ports {lo}-{hi}"));
        Ok(Path {
            src,
            ex: Self::exchange(src, s),
            pending: FxSet::default(),
            next_port: 0,
            link: Link::Raw(Box::new(RawLink {
                sender,
                capture: Some(capture),
                receiver: None,
                ports,
                batch: Vec::with_capacity(256),
                batch_keys: Vec::with_capacity(256),
                refused_at: Vec::new(),
                sends_captured,
                tx_stamps,
                sends: SendLog::new(),
                stamps: Vec::with_capacity(256),
            })),
        })
    }

    fn open_socket(src: IpAddr, s: &DnsSettings, log: Log) -> Result<Path, IoError> {
        let socks = (0..SOCKETS)
            .map(|_| StampedUdp::bind(SocketAddr::new(src, 0)))
            .collect::<Result<Vec<_>, _>>()?;
        log.debug(|| format!("bulk: {SOCKETS} UDP sockets from {src}, socket timestamps"));
        Ok(Path {
            src,
            ex: Self::exchange(src, s),
            pending: FxSet::default(),
            next_port: 0,
            link: Link::Socket(SocketLink {
                sends: (0..SOCKETS).map(|_| SendLog::new()).collect(),
                batch: (0..SOCKETS).map(|_| Vec::new()).collect(),
                socks,
            }),
        })
    }

    /// Are both ends of every RTT kernel stamps?
    fn kernel_timed(&self) -> bool {
        match &self.link {
            Link::Raw(r) => r.sends_captured || r.tx_stamps,
            Link::Socket(_) => true,
        }
    }

    fn timed_by(&self) -> TimedBy {
        match &self.link {
            Link::Raw(_) => TimedBy::RawCapture,
            Link::Socket(_) => TimedBy::SocketTimestamps,
        }
    }

    /// Builds a query and queues it for the next [`flush`](Self::flush).
    fn queue(&mut self, line_no: u64, server: SocketAddr, mut q: QueryRepr) {
        let slot = self.next_port;
        self.next_port = self.next_port.wrapping_add(1);
        let port = match &self.link {
            Link::Raw(r) => r.ports[slot % r.ports.len()].port,
            Link::Socket(k) => k.socks[slot % k.socks.len()].local_addr().port(),
        };
        let mut tries = 0;
        // not in use, nor finished and waiting to be reported
        while tries < 100 && {
            let k = QueryKey {
                server,
                src_port: port,
                id: q.id,
            };
            self.ex.in_use(&k) || self.pending.contains(&k)
        } {
            q.id = rand::random();
            tries += 1;
        }
        let (key, dgram) = self.ex.query(Timestamp::now(), line_no, server, port, &q);
        match &mut self.link {
            Link::Raw(r) => {
                r.batch.push((server.ip(), dgram));
                r.batch_keys.push(key);
            }
            Link::Socket(k) => {
                let i = slot % k.socks.len();
                k.batch[i].push((server, udp_payload(&dgram).to_vec(), key));
            }
        }
        self.pending.insert(key);
    }

    /// Sends what is queued (raw: one sendmmsg for the lot; a datagram the
    /// kernel refuses times out like a lost one).
    fn flush(&mut self) -> Result<(), CmdError> {
        match &mut self.link {
            Link::Raw(r) => {
                if r.batch.is_empty() {
                    return Ok(());
                }
                let refs: Vec<(IpAddr, &[u8])> =
                    r.batch.iter().map(|(a, d)| (*a, d.as_slice())).collect();
                r.refused_at.clear();
                r.sender.send_batch_noting(&refs, &mut r.refused_at)?;
                if r.tx_stamps {
                    // a refused datagram took no send counter
                    let mut refused = r.refused_at.iter().peekable();
                    for (i, k) in r.batch_keys.iter().enumerate() {
                        if refused.next_if_eq(&&i).is_none() {
                            r.sends.sent(*k);
                        }
                    }
                }
                r.batch.clear();
                r.batch_keys.clear();
                self.take_stamps()?;
            }
            Link::Socket(k) => {
                for (i, batch) in k.batch.iter_mut().enumerate() {
                    for (to, msg, key) in batch.drain(..) {
                        send_on(&mut k.socks[i], to, &msg)?;
                        k.sends[i].sent(key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies the transmit stamps the kernel queued on the raw socket
    /// (before any answer to those queries is read: veth and loopback stamp
    /// within the send call).
    fn take_stamps(&mut self) -> Result<(), CmdError> {
        let Link::Raw(r) = &mut self.link else {
            return Ok(());
        };
        if !r.tx_stamps {
            return Ok(());
        }
        r.stamps.clear();
        r.sender.tx_stamps(&mut r.stamps)?;
        for &(counter, at) in &r.stamps {
            if let Some(key) = r.sends.stamped(counter) {
                self.ex.on_sent(&key, at);
            }
        }
        Ok(())
    }

    /// Raw path: starts the thread that reads and parses the replies (the
    /// first lever of throughput: sending and receiving each get a core, as
    /// in dnsperf).
    fn start_receiver(&mut self, index: usize, tx: RxSender, stop: &Arc<AtomicBool>) {
        let Link::Raw(r) = &mut self.link else {
            return;
        };
        let Some(mut capture) = r.capture.take() else {
            return;
        };
        let (src, stop) = (self.src, Arc::clone(stop));
        let answers_only = self.ex.config().answers_only;
        r.receiver = Some(std::thread::spawn(move || {
            let mut batch = Vec::with_capacity(RX_BATCH);
            while !stop.load(Ordering::Relaxed) {
                // wait only when nothing is in hand
                let wait = if batch.is_empty() {
                    Duration::from_millis(20)
                } else {
                    Duration::ZERO
                };
                let n = capture.recv_batch(wait, |p| {
                    batch.push(read_packet(
                        src,
                        answers_only,
                        p.data,
                        p.direction,
                        p.timestamp,
                        p.checksum_offloaded,
                    ))
                })?;
                // hand over when the queue is empty, or a batch is full
                if batch.is_empty() || (n > 0 && batch.len() < RX_BATCH) {
                    continue;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(RX_BATCH));
                if tx.send((index, full)).is_err() {
                    break; // the main loop has ended
                }
            }
            Ok(())
        }));
    }

    /// An outcome: an ICMP error that ended a query means the server
    /// refused, so every other query to it ends too (no retries to a server
    /// that refused).
    fn finished(&mut self, o: DnsOutcome, done: &mut Vec<DnsOutcome>) {
        if let Some(refusal) = o.refused {
            done.extend(self.ex.give_up_server(o.key.server, refusal));
        }
        done.push(o);
    }

    /// Raw path: takes what the receiver thread read.
    fn on_received(&mut self, batch: Vec<Rx>, done: &mut Vec<DnsOutcome>) -> Result<(), CmdError> {
        // the send stamps of the queries first (their answers may be in this batch)
        self.take_stamps()?;
        for r in batch {
            if let Some(o) = self.ex.on_received(r) {
                self.finished(o, done);
            }
        }
        Ok(())
    }

    /// Socket path: reads what the sockets have queued, without waiting.
    fn poll_sockets(&mut self, done: &mut Vec<DnsOutcome>) -> Result<(), CmdError> {
        let Link::Socket(k) = &mut self.link else {
            return Ok(());
        };
        for (i, sock) in k.socks.iter_mut().enumerate() {
            let port = sock.local_addr().port();
            // bounded per turn, so one busy socket cannot starve the rest
            for _ in 0..1024 {
                let Some(ev) = sock.try_recv()? else {
                    break;
                };
                let o = match ev {
                    UdpEvent::Sent { seq, at } => {
                        if let Some(key) = k.sends[i].stamped(seq) {
                            self.ex.on_sent(&key, at);
                        }
                        None
                    }
                    answer => super::on_answer(&mut self.ex, port, answer),
                };
                if let Some(o) = o {
                    if let Some(refusal) = o.refused {
                        done.extend(self.ex.give_up_server(o.key.server, refusal));
                    }
                    done.push(o);
                }
            }
        }
        Ok(())
    }

    /// Retries and timeouts due by now.
    fn on_time(&mut self, sent: &mut u64, done: &mut Vec<DnsOutcome>) -> Result<(), CmdError> {
        let (gone, resend) = self.ex.on_time(Timestamp::now());
        for r in &resend {
            match &mut self.link {
                Link::Raw(l) => {
                    l.sender.send(r.key.server.ip(), &r.datagram)?;
                    if l.tx_stamps {
                        l.sends.sent(r.key);
                    }
                }
                Link::Socket(k) => {
                    if let Some(i) = k
                        .socks
                        .iter()
                        .position(|s| s.local_addr().port() == r.key.src_port)
                    {
                        send_on(&mut k.socks[i], r.key.server, udp_payload(&r.datagram))?;
                        k.sends[i].sent(r.key);
                    }
                }
            }
            *sent += 1;
        }
        if !resend.is_empty() {
            self.take_stamps()?;
        }
        done.extend(gone);
        Ok(())
    }

    /// Stops the receiver thread (it notices within 20 ms).
    fn stop_receiver(&mut self) -> Result<(), CmdError> {
        let Link::Raw(r) = &mut self.link else {
            return Ok(());
        };
        if let Some(h) = r.receiver.take() {
            match h.join() {
                Ok(r) => r?,
                Err(_) => return Err(CmdError::Setup("bulk receiver thread panicked".into())),
            }
        }
        Ok(())
    }
}

/// Sends on a UDP socket. An ICMP error about an earlier datagram leaves an
/// error on the socket that the next send reports instead of sending (its
/// details are on the error queue, where the socket path reads them): that
/// send is made again, once. A failed send takes no TX stamp counter (Linux
/// 6.x), so the stamps of later sends still match.
fn send_on(sock: &mut StampedUdp, to: SocketAddr, msg: &[u8]) -> Result<u32, IoError> {
    match sock.send_to(to, msg) {
        Err(IoError::Send { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(
                    libc::ECONNREFUSED
                        | libc::EHOSTUNREACH
                        | libc::ENETUNREACH
                        | libc::EHOSTDOWN
                        | libc::EPROTO
                )
            ) =>
        {
            sock.send_to(to, msg)
        }
        r => r,
    }
}

/// Waits until one of the socket path's sockets may have something queued
/// (never, without a socket path).
async fn sockets_ready(paths: &[Path]) -> Result<(), IoError> {
    let mut futs: Vec<_> = paths
        .iter()
        .filter_map(|p| match &p.link {
            Link::Socket(k) => Some(k.socks.iter()),
            Link::Raw(_) => None,
        })
        .flatten()
        .map(|s| Box::pin(s.wait()))
        .collect();
    if futs.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The capture of the raw path's replies.
enum Replies {
    Ring(RingCapture),
    Queue(BlockingCapture),
}

impl Replies {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        f: impl FnMut(CapturedRef<'_>),
    ) -> Result<usize, IoError> {
        match self {
            Replies::Ring(c) => c.recv_batch(timeout, f),
            Replies::Queue(c) => c.recv_batch(timeout, f),
        }
    }
}

/// What the receiver thread hands over: packets read and parsed, by value, in
/// batches (no allocation per packet beyond the parse).
type Rx = Received;

const RX_BATCH: usize = 256;
type RxSender = tokio::sync::mpsc::UnboundedSender<(usize, Vec<Rx>)>;

/// One NDJSON line of bulk output (fields in this order; `kind: answer`,
/// docs/schema/dns.schema.json).
#[derive(serde::Serialize)]
struct NdjsonLine<'a> {
    kind: &'static str,
    line: u64,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: &'a str,
    server: &'a str,
    status: Option<Cow<'static, str>>,
    answers: Answers<'a>,
    time_us: Option<crate::report::json::Us>,
    rtt_source: Option<&'static str>,
    attempts: u32,
    transport: &'static str,
    truncated: Option<bool>,
    /// Why there is no answer when a server refused (ICMP error).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// The checks that failed (empty: passed, or none given).
    checks: &'a [String],
}

/// A JSON string: written as it is when nothing in it needs an escape (the
/// usual name or record), else by serde_json.
fn json_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    if !needs_escape(s.as_bytes()) {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    } else {
        serde_json::to_writer(out, s).map_err(std::io::Error::from)
    }
}

/// A JSON string that needs no escape by how it was made (a server address,
/// a type or rcode mnemonic, a constant): written as it is, unchecked.
fn json_plain(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    out.write_all(s.as_bytes())?;
    out.write_all(b"\"")
}

/// Does `b` hold a byte that a JSON string escapes (a control byte, `"` or
/// `\\`)? Eight bytes at a time (the bit tricks of "has a byte less than n"
/// and "has a zero byte", exact for n <= 128).
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if below(x, 0x20)
            || below(x ^ (u64::from(b'"') * ONES), 1)
            || below(x ^ (u64::from(b'\\') * ONES), 1)
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A number in decimal, without the formatting machinery.
fn write_u64(out: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.write_all(&b[i..])
}

impl NdjsonLine<'_> {
    /// Writes the line as `serde_json::to_writer` would, byte for byte, at a
    /// fraction of the cost (the keys are constants, most strings need no
    /// escape): the NDJSON writer of bulk mode.
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"{\"kind\":\"answer\",\"line\":")?;
        write_u64(out, self.line)?;
        out.write_all(b",\"name\":")?;
        json_str(out, self.name)?;
        out.write_all(b",\"type\":")?;
        json_plain(out, self.qtype)?;
        out.write_all(b",\"server\":")?;
        json_plain(out, self.server)?;
        out.write_all(b",\"status\":")?;
        match &self.status {
            Some(st) => json_plain(out, st)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"answers\":[")?;
        if let Some(reply) = self.answers.0.reply() {
            let mut first = true;
            for a in &reply.answer {
                if self.answers.0.qtype_code == 255 || a.type_code == self.answers.0.qtype_code {
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    json_str(out, &a.data)?;
                }
            }
        }
        out.write_all(b"],\"time_us\":")?;
        serde_json::to_writer(&mut *out, &self.time_us).map_err(std::io::Error::from)?;
        out.write_all(b",\"rtt_source\":")?;
        match self.rtt_source {
            Some(s) => json_str(out, s)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"attempts\":")?;
        write_u64(out, u64::from(self.attempts))?;
        out.write_all(b",\"transport\":")?;
        json_plain(out, self.transport)?;
        out.write_all(b",\"truncated\":")?;
        out.write_all(match self.truncated {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        })?;
        if let Some(e) = self.error {
            out.write_all(b",\"error\":")?;
            json_str(out, e)?;
        }
        out.write_all(b",\"checks\":[")?;
        for (i, x) in self.checks.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            json_str(out, x)?;
        }
        out.write_all(b"]")?;
        out.write_all(b"}\n")
    }
}

/// The answer set of a result ([`DnsResult::answer_set`]), serialised
/// straight from the reply: no copy of each record's data.
struct Answers<'a>(&'a DnsResult);

impl serde::Serialize for Answers<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let r = self.0;
        let mut seq = ser.serialize_seq(None)?;
        if let Some(reply) = r.reply() {
            for a in &reply.answer {
                if r.qtype_code == 255 || a.type_code == r.qtype_code {
                    seq.serialize_element(&a.data)?;
                }
            }
        }
        seq.end()
    }
}

/// The `--json` document of a bulk run.
#[derive(serde::Serialize)]
struct BulkDocument<'a, S: serde::Serialize> {
    kind: &'static str,
    command: &'static str,
    results: &'a [serde_json::Value],
    errors: &'a [serde_json::Value],
    summary: &'a S,
}

/// A bad input line, as printed (`kind: error`).
#[derive(serde::Serialize)]
struct BadLine<'a> {
    line: u64,
    input: &'a str,
    error: &'a str,
}

/// Lines the summary lists of those whose servers' answers differed.
const DIFFERENCES_LISTED: usize = 100;

/// Each line to each of several servers: a line's answers side by side,
/// compared once its last one is in.
#[derive(Default)]
struct Comparison {
    /// Per line with queries out: results still to come, and each server's
    /// answer ([`answer_view`]) so far.
    open: FxMap<u64, (usize, Vec<(SocketAddr, String)>)>,
    differing: u64,
    listed: Vec<DifferingLine>,
}

impl Comparison {
    /// Line `line` goes to `servers` servers.
    fn expect(&mut self, line: u64, servers: usize) {
        if servers > 1 {
            self.open
                .insert(line, (servers, Vec::with_capacity(servers)));
        }
    }

    /// One of its results.
    fn add(&mut self, line: u64, r: &DnsResult) {
        let Some((left, views)) = self.open.get_mut(&line) else {
            return;
        };
        views.push((r.server, answer_view(r)));
        *left -= 1;
        if *left > 0 {
            return;
        }
        let Some((_, views)) = self.open.remove(&line) else {
            return;
        };
        if views.iter().all(|(_, v)| *v == views[0].1) {
            return;
        }
        self.differing += 1;
        if self.listed.len() < DIFFERENCES_LISTED {
            self.listed.push(DifferingLine {
                line,
                name: r.name.clone(),
                qtype: r.qtype.clone(),
                answers: views
                    .into_iter()
                    .map(|(sv, v)| (sv.to_string(), v))
                    .collect(),
            });
        }
    }
}

/// Where results go: the output in the chosen format, the summary's figures.
struct Report<'a, W: Write> {
    out: std::io::BufWriter<W>,
    s: &'a DnsSettings,
    sum: BulkSummary,
    several_servers: bool,
    /// `--json`: the document is written at the end.
    json_results: Vec<serde_json::Value>,
    json_errors: Vec<serde_json::Value>,
    first_failure: Option<String>,
    /// The NDJSON line being written (reused).
    line: Vec<u8>,
    /// Each server as printed (formatted once, not per line).
    server_text: Vec<(SocketAddr, String)>,
    /// Each line to each of several servers: their answers compared.
    compare: Option<Comparison>,
}

impl<W: Write> Report<'_, W> {
    fn bad_line(&mut self, line: u64, input: &str, error: &str) -> Result<(), CmdError> {
        self.sum.bad_lines += 1;
        let b = BadLine { line, input, error };
        match self.s.format {
            DnsFormat::Json => self.json_errors.push(
                serde_json::to_value(crate::report::json::kinded("error", &b)).unwrap_or_default(),
            ),
            DnsFormat::Ndjson => {
                serde_json::to_writer(&mut self.out, &crate::report::json::kinded("error", &b))
                    .map_err(std::io::Error::from)?;
                self.out.write_all(b"\n")?;
            }
            // results only on stdout: the error goes to stderr
            DnsFormat::Short | DnsFormat::Text => {
                eprintln!("synscope: line {line}: {error}");
            }
        }
        Ok(())
    }

    /// One finished query; `unsent` if it was not sent because its server
    /// had refused an earlier one.
    fn result(&mut self, line: u64, r: &DnsResult, unsent: bool) -> Result<(), CmdError> {
        if let Some(c) = &mut self.compare {
            c.add(line, r);
        }
        let refused = r.refused.map(|f| {
            if unsent {
                format!("{f} (refused before: not sent)")
            } else {
                f.to_string()
            }
        });
        let refused = refused.as_deref();
        let sum = &mut self.sum;
        match (r.reply(), r.time()) {
            (Some(rep), Some(t)) => {
                sum.answered += 1;
                match rcode_known(rep.rcode).and_then(|k| sum.rcodes.get_mut(k)) {
                    Some(n) => *n += 1,
                    None => *sum.rcodes.entry(rcode_name(rep.rcode)).or_default() += 1,
                }
                sum.rtts_decius
                    .push((t.as_nanos() / 100).min(u32::MAX as u128) as u32);
            }
            _ => match r.refused {
                Some(f) => *sum.refused.entry((f.error.name(), f.from)).or_default() += 1,
                None => sum.timeouts += 1,
            },
        }
        let with_checks = !self.s.checks.is_empty();
        // a check never passes on no answer: each one asked fails then
        let failures = if with_checks {
            check(r, &self.s.checks)
        } else {
            Vec::new()
        };
        for f in &failures {
            let flag = f.split(':').next().unwrap_or(f);
            *sum.check_failures.entry(flag.to_string()).or_default() += 1;
        }
        if !failures.is_empty() {
            sum.failed_queries += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(format!("line {line}: {}", failures[0]));
            }
        }
        if self.s.format == DnsFormat::Short {
            if let Some(rep) = r.reply() {
                for a in &rep.answer {
                    if self.several_servers {
                        writeln!(self.out, "@{} {} {}", r.server, r.name, a.data)?;
                    } else {
                        writeln!(self.out, "{} {}", r.name, a.data)?;
                    }
                }
            }
            return Ok(());
        }
        // a plain struct, serialised straight to the output: no JSON tree per name
        let known = self.server_text.iter().position(|(a, _)| *a == r.server);
        let known = known.or_else(|| {
            // the @SERVERs and a few per-line ones; the others formatted each time
            (self.server_text.len() < 16).then(|| {
                self.server_text.push((r.server, r.server.to_string()));
                self.server_text.len() - 1
            })
        });
        let other;
        let server = match known {
            Some(i) => &self.server_text[i].1,
            None => {
                other = r.server.to_string();
                &other
            }
        };
        let l = NdjsonLine {
            kind: "answer",
            line,
            name: &r.name,
            qtype: &r.qtype,
            server,
            status: r.reply().map(|x| match rcode_known(x.rcode) {
                Some(k) => Cow::Borrowed(k),
                None => Cow::Owned(rcode_name(x.rcode)),
            }),
            answers: Answers(r),
            time_us: r.time().map(crate::report::json::Us::of),
            rtt_source: r
                .udp
                .as_ref()
                .map(|u| crate::report::json::rtt_source(u.rtt_source)),
            attempts: r.attempts,
            transport: r.transport(),
            truncated: r.udp.as_ref().map(|u| u.reply.flags.tc),
            error: refused,
            checks: &failures,
        };
        if self.s.format == DnsFormat::Json {
            self.json_results
                .push(serde_json::to_value(&l).map_err(std::io::Error::from)?);
        } else {
            // built whole in a buffer of its own, then copied out once
            self.line.clear();
            l.write(&mut self.line)?;
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    /// The summary (last NDJSON line, or in the JSON document), the line on
    /// stderr, and the exit status.
    fn finish(
        mut self,
        ignored: &BTreeMap<crate::probe::dns::DnsIgnored, u64>,
    ) -> Result<u8, CmdError> {
        if let Some(c) = self.compare.take() {
            self.sum.differing_lines = Some(c.differing);
            self.sum.differences = c.listed;
        }
        let sum = &self.sum;
        let summary = sum.out(ignored);
        let summary = crate::report::json::kinded("summary", &summary);
        match self.s.format {
            DnsFormat::Json => {
                let doc = BulkDocument {
                    kind: "report",
                    command: "dns",
                    results: &self.json_results,
                    errors: &self.json_errors,
                    summary: &summary,
                };
                writeln!(
                    self.out,
                    "{}",
                    serde_json::to_string_pretty(&doc).map_err(std::io::Error::from)?
                )?;
            }
            DnsFormat::Ndjson => writeln!(
                self.out,
                "{}",
                serde_json::to_string(&summary).map_err(std::io::Error::from)?
            )?,
            DnsFormat::Short | DnsFormat::Text => {}
        }
        self.out.flush()?;
        let checks = if self.s.checks.is_empty() {
            String::new()
        } else {
            format!(
                ", {} queries failed a check {}",
                sum.failed_queries,
                serde_json::to_string(&summary.inner.check_failures).unwrap_or_default()
            )
        };
        let refused = if sum.refused.is_empty() {
            String::new()
        } else {
            let r: Vec<String> = summary
                .inner
                .refused
                .iter()
                .map(|r| format!("{} {} from {}", r.count, r.icmp, r.from))
                .collect();
            format!(", refused: {}", r.join(", "))
        };
        let time = summary
            .inner
            .time
            .clone()
            .unwrap_or(crate::report::RttStats {
                count: 0,
                min_us: 0.0,
                avg_us: 0.0,
                max_us: 0.0,
                mdev_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
            });
        let h = crate::report::human_us;
        note!(
            "synscope: {}, {}, {} answered, {} no response{refused}, {} in {}: {:.0} q/s; latency p50 {}, p90 {}, p99 {} ({} timestamps, timed by {}); rcodes {}{checks}",
            crate::report::plural(sum.names, "name"),
            crate::report::plural(sum.queries, "query"),
            sum.answered,
            sum.timeouts,
            crate::report::plural(sum.bad_lines, "bad line"),
            crate::report::human(sum.elapsed),
            summary.inner.qps,
            h(time.p50_us),
            h(time.p90_us),
            h(time.p99_us),
            sum.timing,
            sum.timed_by.name(),
            serde_json::to_string(&sum.rcodes).unwrap_or_default()
        );
        if let Some(f) = &self.first_failure {
            eprintln!("synscope: check failed: {f}");
        }
        if let (Some(n @ 1..), Some(d)) = (sum.differing_lines, sum.differences.first()) {
            let answers: Vec<String> = d
                .answers
                .iter()
                .map(|(sv, v)| format!("@{sv} {v}"))
                .collect();
            note!(
                "synscope: {n} lines got different answers from the servers (the summary lists the first {}); line {}: {} {}: {}",
                sum.differences.len(),
                d.line,
                d.name,
                d.qtype,
                answers.join(" / ")
            );
        }
        if sum.interrupted {
            eprintln!(
                "synscope: interrupted: {} queries were in flight and are not counted as answered",
                sum.in_flight
            );
        }
        Ok(if sum.interrupted {
            EXIT_INTERRUPTED
        } else if sum.bad_lines > 0 {
            EXIT_BAD_LINES
        } else if sum.timeouts > 0 || !sum.refused.is_empty() {
            EXIT_NO_ANSWER
        } else if sum.failed_queries > 0 {
            EXIT_CHECK_FAILED
        } else {
            EXIT_OK
        })
    }
}

/// A query that was never sent: its server refused an earlier one.
fn unsent(server: SocketAddr, q: &QueryRepr, refusal: Refusal, timed_by: TimedBy) -> DnsResult {
    DnsResult {
        server,
        name: crate::wire::dns::name_text(&q.question.name),
        qtype: crate::wire::dns::type_name(q.question.qtype),
        qtype_code: u16::from(q.question.qtype),
        query_size: 0,
        udp: None,
        attempts: 0,
        tcp: None,
        refused: Some(refusal),
        timed_by,
    }
}

pub(super) async fn bulk(
    s: &DnsSettings,
    src: &BulkSource,
    out: &mut impl Write,
    log: Log,
) -> Result<u8, CmdError> {
    // before the slow set-up (reading the file, sockets, the ring): the first
    // SIGINT/SIGTERM from then on sets the flag the loop reads every turn (a
    // busy loop never waits on a signal future), so the summary so far is
    // printed instead of the process dying unseen; a second ends it at once
    super::super::catch_signals();
    let reader: Box<dyn BufRead> = match src {
        BulkSource::Stdin => Box::new(std::io::BufReader::new(std::io::stdin())),
        BulkSource::File(p) => Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(p)
                .map_err(|e| CmdError::Setup(format!("open {}: {e}", p.display())))?,
        )),
    };
    let mut lines = Lines {
        r: reader,
        buf: Vec::with_capacity(256),
        no: 0,
    };
    // one path per source address of the @SERVERs (e.g. one IPv4, one IPv6);
    // raw sockets and a capture with CAP_NET_RAW, else (or with --no-raw)
    // ordinary UDP sockets timed by their kernel stamps
    let mut raw = !s.no_raw && crate::io::privileges::has_net_raw();
    if !raw && !s.no_raw {
        log.debug(|| "no CAP_NET_RAW: bulk timed with socket timestamps".into());
    }
    let mut paths: Vec<Path> = Vec::new();
    // which path reaches a server (None: none of ours does)
    let mut path_of: FxMap<IpAddr, Option<usize>> = FxMap::default();
    for server in &s.servers {
        let route = Route::lookup(server.ip(), None)?;
        let i = match paths.iter().position(|p| p.src == route.src) {
            Some(i) => i,
            None => {
                let path = match raw.then(|| Path::open_raw(route.src, s, log)) {
                    Some(Ok(p)) => p,
                    // no raw socket after all (e.g. a seccomp or LSM rule)
                    Some(Err(CmdError::Io(e))) if e.is_permission() && paths.is_empty() => {
                        log.debug(|| format!("{e}: bulk timed with socket timestamps"));
                        raw = false;
                        Path::open_socket(route.src, s, log)?
                    }
                    Some(Err(e)) => return Err(e),
                    None => Path::open_socket(route.src, s, log)?,
                };
                paths.push(path);
                paths.len() - 1
            }
        };
        path_of.insert(server.ip(), Some(i));
    }
    // bulk opens no socket after this (TCP fallback needs no privilege)
    crate::io::privileges::drop_all()?;
    // then the receiver threads start, with no capability either
    let (rx_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    for (i, p) in paths.iter_mut().enumerate() {
        p.start_receiver(i, rx_tx.clone(), &stop);
    }
    drop(rx_tx);
    let servers: Vec<SocketAddr> = s.servers.clone();
    let several = servers.len() > 1;
    let mut report = Report {
        out: std::io::BufWriter::with_capacity(1 << 16, out),
        s,
        sum: BulkSummary {
            servers: servers.clone(),
            timing: if paths.iter().all(|p| p.kernel_timed()) {
                "kernel"
            } else {
                "user-space send, kernel receive"
            },
            timed_by: paths.first().map(|p| p.timed_by()).unwrap_or_default(),
            ..BulkSummary::default()
        },
        several_servers: several,
        json_results: Vec::new(),
        json_errors: Vec::new(),
        first_failure: None,
        line: Vec::with_capacity(512),
        server_text: Vec::new(),
        compare: (servers.len() > 1 && !s.spread).then(Comparison::default),
    };
    // servers that refused a query (ICMP error): later lines to them are not sent
    let mut refused: FxMap<SocketAddr, Refusal> = FxMap::default();
    // the bar's total: the lines of a file (not of stdin), counted only when drawn
    let total = match (&s.bulk, s.progress) {
        (Some(BulkSource::File(path)), true) => super::super::progress::count_lines(path),
        _ => None,
    };
    let mut progress = super::super::progress::Bar::new(s.progress, total, "names");
    let started = Instant::now();
    let mut input_done = false;
    let mut queries_sent: u64 = 0;
    let mut next_server: usize = 0;
    let concurrency = s.concurrency as usize;
    let mut finished: Vec<DnsOutcome> = Vec::new();
    let mut targets: Vec<SocketAddr> = Vec::with_capacity(servers.len());
    let outstanding = |paths: &[Path]| paths.iter().map(|p| p.ex.outstanding()).sum::<usize>();

    loop {
        // 1. send what the rate and the concurrency allow
        let mut budget = 256usize;
        while !input_done && outstanding(&paths) < concurrency && budget > 0 {
            if let Some(rate) = s.rate {
                let allowed = (started.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
                if queries_sent >= allowed {
                    break;
                }
            }
            let Some((line_no, text)) = lines.next_line()? else {
                input_done = true;
                break;
            };
            let t = match text {
                Ok(t) => t.trim(),
                Err(e) => {
                    let input = String::from_utf8_lossy(&lines.buf).trim_end().to_string();
                    report.sum.names += 1;
                    report.bad_line(line_no, &input, &e)?;
                    continue;
                }
            };
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            report.sum.names += 1;
            let l = match parse_line(t) {
                Ok(l) => l,
                Err(e) => {
                    let t = t.to_string();
                    report.bad_line(line_no, &t, &e)?;
                    continue;
                }
            };
            targets.clear();
            match l.server {
                Some(sv) => targets.push(sv),
                None if s.spread => {
                    targets.push(servers[next_server % servers.len()]);
                    next_server += 1;
                }
                None => targets.extend_from_slice(&servers),
            }
            // every target must be reachable from one of our source addresses
            let unreachable = targets.iter().find(|sv| {
                path_of
                    .entry(sv.ip())
                    .or_insert_with(|| {
                        let src = Route::lookup(sv.ip(), None).ok()?.src;
                        paths.iter().position(|p| p.src == src)
                    })
                    .is_none()
            });
            if let Some(sv) = unreachable {
                let e = format!(
                    "server {sv} is not reached from a source address of the @SERVERs (bulk mode sends from those only)"
                );
                let t = t.to_string();
                report.bad_line(line_no, &t, &e)?;
                continue;
            }
            if let Some(c) = &mut report.compare {
                c.expect(line_no, targets.len());
            }
            for &server in &targets {
                let q = query_of(s, l.name.clone(), l.qtype);
                report.sum.queries += 1;
                if let Some(&f) = refused.get(&server) {
                    let by = report.sum.timed_by;
                    report.result(line_no, &unsent(server, &q, f, by), true)?;
                    continue;
                }
                budget = budget.saturating_sub(1);
                let Some(Some(i)) = path_of.get(&server.ip()).copied() else {
                    continue;
                };
                paths[i].queue(line_no, server, q);
                report.sum.sent_packets += 1;
                queries_sent += 1;
            }
        }
        for p in paths.iter_mut() {
            p.flush()?;
        }
        // 2. answers read so far, 3. deadlines
        while let Ok((i, batch)) = rx.try_recv() {
            paths[i].on_received(batch, &mut finished)?;
        }
        for p in paths.iter_mut() {
            p.poll_sockets(&mut finished)?;
            p.on_time(&mut report.sum.sent_packets, &mut finished)?;
        }
        for o in finished.drain(..) {
            let key = o.key;
            let Some(i) = path_of.get(&key.server.ip()).copied().flatten() else {
                continue;
            };
            if !paths[i].pending.remove(&key) {
                continue;
            }
            if let Some(f) = o.refused {
                refused.entry(key.server).or_insert(f);
            }
            let line_no = o.tag;
            let truncated = o.reply.as_ref().is_some_and(|x| x.flags.tc);
            let tc_question = truncated.then(|| o.question.clone());
            let qtype = o.question.qtype;
            let mut r = result_of(o, qtype);
            r.timed_by = paths[i].timed_by();
            if s.tcp_fallback
                && r.udp.as_ref().is_some_and(|u| u.reply.flags.tc)
                && let Some(question) = tc_question
            {
                // the query as it was sent (query_of, with its id)
                let q = QueryRepr {
                    id: key.id,
                    question,
                    recursion_desired: s.recursion_desired,
                    edns: s.edns.clone(),
                };
                r.tcp = Some(over_tcp(r.server, &q, s.timeout).await);
                report.sum.tcp += 1;
            }
            report.result(line_no, &r, false)?;
        }
        if input_done && outstanding(&paths) == 0 {
            break;
        }
        if super::super::signalled() {
            // stop: what is outstanding is neither answered nor timed out
            report.sum.interrupted = true;
            report.sum.in_flight = outstanding(&paths) as u64;
            break;
        }
        let sum = &report.sum;
        progress.update(sum.names, || {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            format!(
                "{} answered, {} timeouts, {} outstanding, {:.0} answers/s",
                sum.answered,
                sum.timeouts,
                outstanding(&paths),
                sum.answered as f64 / secs
            )
        });
        // 4. wait when there is nothing to send right now
        let can_send = !input_done && outstanding(&paths) < concurrency;
        let rate_wait = s.rate.map(|rate| {
            let next = (queries_sent as f64) / rate as f64;
            started + Duration::from_secs_f64(next)
        });
        let send_at = match (can_send, rate_wait) {
            (false, _) => None,
            (true, Some(at)) if at > Instant::now() => Some(at),
            (true, _) => continue,
        };
        let mut wake = paths
            .iter_mut()
            .filter_map(|p| p.ex.next_deadline())
            .min()
            .map(instant_of)
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        if let Some(at) = send_at {
            wake = wake.min(at);
        }
        // a signal is seen within this
        wake = wake.min(Instant::now() + Duration::from_millis(50));
        tokio::select! {
            got = rx.recv(), if raw => {
                match got {
                    Some((i, batch)) => paths[i].on_received(batch, &mut finished)?, // handled on the next turn
                    None => {
                        // every receiver thread ended: one failed
                        for p in paths.iter_mut() {
                            p.stop_receiver()?;
                        }
                        return Err(CmdError::Setup("bulk receiver threads ended".into()));
                    }
                }
            }
            r = sockets_ready(&paths) => r?, // read on the next turn
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    report.sum.elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for p in paths.iter_mut() {
        p.stop_receiver()?;
    }
    progress.finish();
    let mut ignored = BTreeMap::new();
    for p in &paths {
        for (k, v) in p.ex.ignored() {
            *ignored.entry(*k).or_default() += v;
        }
    }
    report.finish(&ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dns::UdpLeg;
    use crate::wire::dns::{Flags, RecordRepr, ReplyRepr};

    fn record(rtype: &str, type_code: u16, data: &str) -> RecordRepr {
        RecordRepr {
            name: "a.lab.test.".into(),
            ttl: 300,
            class: "IN".into(),
            rtype: rtype.into(),
            data: data.into(),
            type_code,
        }
    }

    fn result(answer: Option<Vec<RecordRepr>>, qtype_code: u16) -> DnsResult {
        DnsResult {
            server: "198.18.0.2:53".parse().unwrap(),
            name: "a.lab.test.".into(),
            qtype: "TXT".into(),
            qtype_code,
            query_size: 40,
            udp: answer.map(|answer| UdpLeg {
                rtt: Duration::from_nanos(123_456),
                rtt_source: crate::probe::syn::RttSource::Kernel,
                attempts: 2,
                reply: ReplyRepr {
                    id: 7,
                    is_response: true,
                    opcode: 0,
                    flags: Flags::default(),
                    rcode: 3,
                    question: None,
                    question_count: 1,
                    answer,
                    authority: Vec::new(),
                    additional: Vec::new(),
                    edns: None,
                    size: 100,
                    partial: false,
                },
            }),
            attempts: 2,
            tcp: None,
            refused: None,
            timed_by: TimedBy::RawCapture,
        }
    }

    #[test]
    fn needs_escape_is_the_byte_by_byte_test() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // bytes near the edges (0x1f, 0x20, '"', '\\', 0x7f, 0x80, 0xff) and plain ones
        let pick = [
            0x1f, 0x20, 0x21, b'"', b'#', b'\\', b'[', b']', 0x7f, 0x80, 0xff, 0x00, b'a',
        ];
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        pick[(r >> 8) as usize % pick.len()]
                    } else {
                        b'a' + (r >> 8) as u8 % 26
                    }
                })
                .collect();
            assert_eq!(needs_escape(&b), naive(&b), "{b:02x?}");
        }
    }

    #[test]
    fn ndjson_writer_writes_what_serde_json_writes() {
        let answers = vec![
            record("TXT", 16, "\"hello \\\"quoted\\\" synlab\""),
            record("RRSIG", 46, "TXT 13 3 300 …"),
            record("TXT", 16, "tab\there\u{1}"),
        ];
        let failed = ["--expect: got \"x\"".to_string(), "--expect-ad".into()];
        for r in [
            result(Some(answers), 16),
            result(Some(Vec::new()), 255),
            result(None, 16),
        ] {
            for checks in [&[][..], &failed[..]] {
                for error in [None, Some("port-unreachable from 198.18.0.2")] {
                    let l = NdjsonLine {
                        kind: "answer",
                        line: 18_446_744_073_709_551_615,
                        name: &r.name,
                        qtype: &r.qtype,
                        server: "[2001:db8::2]:53",
                        status: r.reply().map(|_| Cow::Borrowed("NXDOMAIN")),
                        answers: Answers(&r),
                        time_us: r.time().map(crate::report::json::Us::of),
                        rtt_source: r
                            .udp
                            .as_ref()
                            .map(|u| crate::report::json::rtt_source(u.rtt_source)),
                        attempts: r.attempts,
                        transport: r.transport(),
                        truncated: r.udp.as_ref().map(|u| u.reply.flags.tc),
                        error,
                        checks,
                    };
                    let mut ours = Vec::new();
                    l.write(&mut ours).unwrap();
                    let mut theirs = serde_json::to_vec(&l).unwrap();
                    theirs.push(b'\n');
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        String::from_utf8(theirs).unwrap()
                    );
                }
            }
        }
        let mut b = Vec::new();
        for n in [0, 7, 10, 65_535] {
            write_u64(&mut b, n).unwrap();
            b.push(b' ');
        }
        assert_eq!(b, b"0 7 10 65535 ");
    }
}
