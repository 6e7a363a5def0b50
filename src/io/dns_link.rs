//! The raw link of bulk DNS ([`RawBulkLink`]): per source address a raw
//! sender (queries sent in batches with sendmmsg, kernel TX stamps off its
//! error queue), a block of reserved source ports, and a capture of the
//! replies read by a thread of its own (sending and receiving each get a
//! core, as in dnsperf), which hands them over in batches.
//!
//! To the drive loop it is a [`Link`] like the others: what it delivers is
//! what a capture of the interface would hold, our queries leaving (with the
//! kernel's TX stamps) and the replies arriving (with the kernel's RX stamps).

use super::bpf::FlowFilter;
use super::capture::{BlockingCapture, CapturedRef};
use super::pcap::PcapWriter;
use super::ring::RingCapture;
use super::txstamp::SendLog;
use super::{
    Captured, Direction, IoError, Link, Outgoing, PortReservation, RawSender, StampedUdp, UdpEvent,
};
use crate::event::Timestamp;
use crate::probe::dns::read_packet;
use crate::wire::{IcmpRepr, IpRepr, Protocol};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Source ports of one path (one reserved block, one BPF range).
pub const PORTS: u16 = 64;
/// A packet as the receiver thread read it (the DNS parse, off the drive
/// loop's thread), for [`Link::take_read`].
type PreRead = Option<Box<dyn std::any::Any + Send>>;

/// Packets the receiver thread hands over at most at once.
const RX_BATCH: usize = 256;

/// The capture of one path's replies.
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

/// One source address: its sender, ports and capture.
struct RawPath {
    src: IpAddr,
    /// How its replies are parsed.
    answers_only: bool,
    sender: RawSender,
    /// Held for the run.
    _ports: Vec<PortReservation>,
    /// Until the receiver thread starts.
    capture: Option<Replies>,
    /// The capture sees our queries leave, with their kernel stamps.
    sends_captured: bool,
    /// Else the kernel stamps our sends (SO_TIMESTAMPING on the raw socket).
    tx_stamps: bool,
    /// What waits for the next flush.
    batch: Vec<(IpAddr, Vec<u8>)>,
    refused_at: Vec<usize>,
    /// Each datagram sent, by send counter, until its TX stamp comes.
    sends: SendLog<Vec<u8>>,
}

/// Reserves `n` consecutive UDP source ports (so one BPF range covers them).
fn reserve_block(src: IpAddr, n: u16) -> Result<Vec<PortReservation>, IoError> {
    let mut last = None;
    for _ in 0..50 {
        let base: u16 = 20000 + (rand::random::<u16>() % 40000);
        let mut held = Vec::with_capacity(n as usize);
        for p in base..base + n {
            match PortReservation::reserve_udp(src, p) {
                Ok(r) => held.push(r),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if held.len() == n as usize {
            return Ok(held);
        }
    }
    Err(last.unwrap_or_else(|| IoError::Port {
        addr: src,
        port: 0,
        source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
    }))
}

/// The raw link of bulk DNS (see the module).
pub struct RawBulkLink {
    paths: Vec<RawPath>,
    rx: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<(Captured, PreRead)>>>,
    receivers: Vec<std::thread::JoinHandle<Result<(), IoError>>>,
    stop: Arc<AtomicBool>,
    /// Our queries' TX stamps, delivered before what the capture read next.
    stamped: VecDeque<Captured>,
    /// The batch being delivered.
    batch: std::vec::IntoIter<(Captured, PreRead)>,
    /// What the receiver read of the packet delivered last.
    read: PreRead,
    stamps: Vec<(u32, Timestamp)>,
    pcap: Option<PcapWriter>,
}

impl RawBulkLink {
    /// No path yet; `pcap` gets every packet delivered.
    pub fn new(pcap: Option<PcapWriter>) -> RawBulkLink {
        RawBulkLink {
            paths: Vec::new(),
            rx: None,
            receivers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            stamped: VecDeque::new(),
            batch: Vec::new().into_iter(),
            read: None,
            stamps: Vec::with_capacity(RX_BATCH),
            pcap,
        }
    }

    /// Opens the sockets of source address `src` (raw sender, port block,
    /// capture); returns its ports. Its receiver reads each reply as
    /// [`read_packet`] does (`answers_only` as the exchange's). `log` gets
    /// what fell back to what.
    pub fn add_path(
        &mut self,
        src: IpAddr,
        answers_only: bool,
        log: impl Fn(String),
    ) -> Result<Vec<u16>, IoError> {
        let sender = RawSender::open(src, None)?;
        // queries to a server whose neighbour entry is unresolved wait in the
        // kernel; a default buffer full of them refused every other send
        sender.set_send_buffer(RawSender::BULK_SEND_BUFFER);
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
                log(format!("bulk: no transmit timestamps ({e})"));
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
        let (capture, sends_captured) = match RingCapture::open(0, &filter, 8 << 20) {
            Ok(c) => {
                if tx_stamps {
                    // spares the kernel a copy of every query (best effort)
                    if let Err(e) = c.ignore_outgoing() {
                        log(format!("bulk: {e}"));
                    }
                }
                (Replies::Ring(c), !tx_stamps)
            }
            Err(e) => {
                log(format!("bulk: no capture ring ({e}): socket reads"));
                // replies only (half the packets), read with recvmmsg
                filter.outbound = false;
                let c = BlockingCapture::open(0, &filter, 8 << 20)?;
                if let Err(e) = c.ignore_outgoing() {
                    log(format!("bulk: {e}"));
                }
                // without TX stamps, RTTs start at the user-space send time
                (Replies::Queue(c), false)
            }
        };
        log(format!("bulk: raw sockets from {src}, ports {lo}-{hi}"));
        let numbers = ports.iter().map(|p| p.port).collect();
        self.paths.push(RawPath {
            src,
            answers_only,
            sender,
            _ports: ports,
            capture: Some(capture),
            sends_captured,
            tx_stamps,
            batch: Vec::with_capacity(RX_BATCH),
            refused_at: Vec::new(),
            sends: SendLog::new(),
        });
        Ok(numbers)
    }

    /// Are both ends of every RTT kernel stamps?
    pub fn kernel_timed(&self) -> bool {
        self.paths.iter().all(|p| p.sends_captured || p.tx_stamps)
    }

    /// Starts the threads that read the captures (after privileges are
    /// dropped: they need none).
    pub fn start(&mut self) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // the bytes are read again only for the pcap file, or to tell the
        // paths apart: else the parse alone crosses (no copy per reply)
        let keep_data = self.pcap.is_some() || self.paths.len() > 1;
        for p in &mut self.paths {
            let Some(mut capture) = p.capture.take() else {
                continue;
            };
            let (tx, stop) = (tx.clone(), Arc::clone(&self.stop));
            let (src, answers_only) = (p.src, p.answers_only);
            self.receivers.push(std::thread::spawn(move || {
                let mut batch = Vec::with_capacity(RX_BATCH);
                while !stop.load(Ordering::Relaxed) {
                    // wait only when nothing is in hand
                    let wait = if batch.is_empty() {
                        Duration::from_millis(20)
                    } else {
                        Duration::ZERO
                    };
                    let n = capture.recv_batch(wait, |p| {
                        // the parse here, beside the drive loop's thread
                        let read = read_packet(
                            src,
                            answers_only,
                            p.data,
                            p.direction,
                            p.timestamp,
                            p.checksum_offloaded,
                        );
                        let c = Captured {
                            data: if keep_data {
                                p.data.to_vec()
                            } else {
                                Vec::new()
                            },
                            timestamp: p.timestamp,
                            direction: p.direction,
                            checksum_offloaded: p.checksum_offloaded,
                            ifindex: 0,
                        };
                        let read: Box<dyn std::any::Any + Send> = Box::new(read);
                        batch.push((c, Some(read)))
                    })?;
                    // hand over when the queue is empty, or a batch is full
                    if batch.is_empty() || (n > 0 && batch.len() < RX_BATCH) {
                        continue;
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(RX_BATCH));
                    if tx.send(full).is_err() {
                        break; // the drive loop has ended
                    }
                }
                Ok(())
            }));
        }
        self.rx = Some(rx);
    }

    /// Stops the receiver threads (they notice within 20 ms) and flushes
    /// the pcap file.
    pub fn finish(&mut self) -> Result<(), IoError> {
        self.stop.store(true, Ordering::Relaxed);
        self.rx = None;
        let mut first = None;
        for h in self.receivers.drain(..) {
            let r = h.join().unwrap_or_else(|_| {
                Err(IoError::Socket {
                    op: "read bulk capture",
                    source: std::io::Error::other("the receiver thread panicked"),
                })
            });
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        if let Some(w) = self.pcap.as_mut() {
            w.flush()?;
        }
        first.map_or(Ok(()), Err)
    }

    /// The TX stamps the kernel queued so far, as our queries leaving.
    fn take_stamps(&mut self) -> Result<(), IoError> {
        for p in &mut self.paths {
            // nothing sent is waiting for its stamp: no system call
            if !p.tx_stamps || p.sends.is_empty() {
                continue;
            }
            self.stamps.clear();
            p.sender.tx_stamps(&mut self.stamps)?;
            for &(counter, at) in &self.stamps {
                if let Some(data) = p.sends.stamped(counter) {
                    self.stamped.push_back(Captured {
                        data,
                        timestamp: at,
                        direction: Direction::Outgoing,
                        checksum_offloaded: true,
                        ifindex: 0,
                    });
                }
            }
        }
        Ok(())
    }

    fn seen(&mut self, p: Captured) -> Result<Captured, IoError> {
        if let Some(w) = self.pcap.as_mut() {
            w.write(p.timestamp, &p.data)?;
        }
        Ok(p)
    }

    /// The next packet in hand: TX stamps first, then the batch.
    fn in_hand(&mut self) -> Option<Captured> {
        if let Some(p) = self.stamped.pop_front() {
            self.read = None;
            return Some(p);
        }
        let (p, read) = self.batch.next()?;
        self.read = read;
        Some(p)
    }
}

fn receivers_ended() -> IoError {
    IoError::Socket {
        op: "read bulk capture",
        source: std::io::Error::other("the receiver threads ended"),
    }
}

impl RawBulkLink {
    /// Queues a datagram on the path of its source address.
    fn queue(&mut self, dst: IpAddr, datagram: Vec<u8>) -> Result<(), IoError> {
        // our source address: bytes 12..16 of an IPv4 header, 8..24 of IPv6
        let src = match datagram.first().map(|b| b >> 4) {
            Some(4) => datagram
                .get(12..16)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(IpAddr::from),
            _ => datagram
                .get(8..24)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(IpAddr::from),
        };
        let p = match self.paths.iter_mut().find(|p| Some(p.src) == src) {
            Some(p) => p,
            None => match self.paths.first_mut() {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        p.batch.push((dst, datagram));
        Ok(())
    }

    /// One sendmmsg per path for what was queued; a datagram the kernel
    /// refuses times out like a lost one.
    fn flush_batches(&mut self) -> Result<(), IoError> {
        let mut any = false;
        for p in &mut self.paths {
            if p.batch.is_empty() {
                continue;
            }
            any = true;
            let refs: Vec<(IpAddr, &[u8])> =
                p.batch.iter().map(|(a, d)| (*a, d.as_slice())).collect();
            p.refused_at.clear();
            p.sender.send_batch_noting(&refs, &mut p.refused_at)?;
            let mut refused = p.refused_at.iter().peekable();
            for (i, (_, d)) in p.batch.drain(..).enumerate() {
                // a refused datagram took no send counter
                if refused.next_if_eq(&&i).is_none() && p.tx_stamps {
                    p.sends.sent(d);
                }
            }
        }
        if any {
            // veth and loopback stamp within the send call
            self.take_stamps()?;
        }
        Ok(())
    }
}

impl Link for RawBulkLink {
    fn send(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        self.queue(dst, datagram.to_vec())?;
        self.flush_batches()
    }

    /// The machine's datagrams are kept without a copy, one sendmmsg per path.
    fn send_many(&mut self, datagrams: &mut Vec<Outgoing>) -> Result<(), IoError> {
        for o in datagrams.drain(..) {
            self.queue(o.dst, o.datagram)?;
        }
        self.flush_batches()
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        if let Some(p) = self.try_recv()? {
            return Ok(Some(p));
        }
        if until <= Timestamp::now() {
            return Ok(None);
        }
        let Some(rx) = self.rx.as_mut() else {
            return Err(receivers_ended());
        };
        let wake = tokio::time::Instant::from_std(super::clock::instant_of(until));
        tokio::select! {
            biased;
            b = rx.recv() => {
                self.batch = b.ok_or_else(receivers_ended)?.into_iter();
            }
            _ = tokio::time::sleep_until(wake) => return Ok(None),
        }
        self.try_recv()
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        if self.stamped.is_empty() && self.batch.len() == 0 {
            // the stamps of what was sent before the answers read next
            self.take_stamps()?;
            if self.stamped.is_empty()
                && let Some(rx) = self.rx.as_mut()
            {
                match rx.try_recv() {
                    Ok(b) => self.batch = b.into_iter(),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        return Err(receivers_ended());
                    }
                }
            }
        }
        match self.in_hand() {
            Some(p) => self.seen(p).map(Some),
            None => Ok(None),
        }
    }

    fn take_read(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        self.read.take()
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        // the bulk machine uses the ports of its paths, held here
        Err(IoError::Port {
            addr: self
                .paths
                .first()
                .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.src),
            port: 0,
            source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        })
    }

    fn release_port(&mut self, _port: u16) {}

    fn random(&mut self) -> u32 {
        rand::random()
    }
}

impl Drop for RawBulkLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sockets of the socket path, per source address: each has its own receive
/// buffer (an unprivileged process cannot raise one above net.core.rmem_max).
pub const SOCKETS: usize = 16;

/// The unprivileged link of DNS queries: ordinary UDP sockets with kernel
/// TX stamps (error queue) and RX stamps ([`StampedUdp`]). To the drive loop
/// it delivers what a capture would have held: each query leaving at its TX
/// stamp (the datagram as built), each answer as the IP datagram it came in
/// (headers rebuilt from the socket's addresses around the payload), and
/// each ICMP error the socket reports as the ICMP datagram quoting our query.
/// So the machines read one kind of packet, whichever way it travelled.
pub struct SocketLink {
    socks: Vec<StampedUdp>,
    /// Per socket: what waits for the next flush (server, payload, datagram).
    batch: Vec<Vec<(SocketAddr, Vec<u8>)>>,
    /// Per socket: each datagram sent with its sequence number, until its
    /// TX stamp comes (in send order).
    sends: Vec<VecDeque<(u32, Vec<u8>)>>,
    /// The socket read first on the next turn (so no socket starves the rest).
    next: usize,
}

impl SocketLink {
    /// `n` sockets on each of `srcs`, on ports the kernel picks.
    pub fn open(srcs: &[IpAddr], n: usize) -> Result<SocketLink, IoError> {
        let socks = srcs
            .iter()
            .flat_map(|src| (0..n).map(|_| StampedUdp::bind(SocketAddr::new(*src, 0))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SocketLink {
            batch: socks.iter().map(|_| Vec::new()).collect(),
            sends: socks.iter().map(|_| VecDeque::new()).collect(),
            socks,
            next: 0,
        })
    }

    /// The sockets' local ports on `src`.
    pub fn ports(&self, src: IpAddr) -> Vec<u16> {
        self.socks
            .iter()
            .map(StampedUdp::local_addr)
            .filter(|a| a.ip() == src)
            .map(|a| a.port())
            .collect()
    }

    /// Waits until the kernel has something for us (one socket's first).
    pub async fn ready_stamps(&mut self) -> Result<bool, IoError> {
        let mut all = true;
        for s in &mut self.socks {
            all &= s.ready_stamps().await?;
        }
        Ok(all)
    }

    /// What socket `i` reported, as the datagram a capture would hold.
    fn packet_of(&mut self, i: usize, ev: UdpEvent) -> Option<Captured> {
        let local = self.socks[i].local_addr();
        let ip = |src: IpAddr, dst: IpAddr, protocol| IpRepr {
            src,
            dst,
            protocol,
            ttl: 64,
            ident: 0,
            later_fragment: false,
            flow_label: 0,
        };
        let (data, timestamp, direction) = match ev {
            UdpEvent::Sent { seq, at } => {
                (stamped(&mut self.sends[i], seq)?, at, Direction::Outgoing)
            }
            UdpEvent::Received { from, at, data, .. } => {
                let d = ip(from.ip(), local.ip(), Protocol::UDP).emit_udp(
                    from.port(),
                    local.port(),
                    |b| b.extend_from_slice(&data),
                );
                (d, at, Direction::Incoming)
            }
            UdpEvent::Icmp {
                error,
                from,
                to,
                quoted,
                at,
            } => {
                let original =
                    ip(local.ip(), to.ip(), Protocol::UDP)
                        .emit_udp(local.port(), to.port(), |b| b.extend_from_slice(&quoted));
                let protocol = if from.is_ipv6() {
                    Protocol::ICMPV6
                } else {
                    Protocol::ICMP
                };
                let icmp =
                    IcmpRepr::emit_error(error.icmp_type, error.code, &original, from, local.ip());
                (
                    ip(from, local.ip(), protocol).emit(&icmp),
                    at,
                    Direction::Incoming,
                )
            }
        };
        Some(Captured {
            data,
            timestamp,
            direction,
            // made here: nothing to verify
            checksum_offloaded: true,
            ifindex: 0,
        })
    }

    /// Waits until one of the sockets may have something queued.
    async fn readable(&self) -> Result<(), IoError> {
        let mut futs: Vec<_> = self.socks.iter().map(|s| Box::pin(s.wait())).collect();
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
}

/// The datagram sent with sequence number `seq`; those sent before it
/// whose stamps never came are forgotten (stamps come in send order).
fn stamped(sent: &mut VecDeque<(u32, Vec<u8>)>, seq: u32) -> Option<Vec<u8>> {
    while let Some((s, _)) = sent.front() {
        // wrap-aware: is `s` before `seq`?
        match seq.wrapping_sub(*s) {
            0 => return sent.pop_front().map(|(_, d)| d),
            d if d < u32::MAX / 2 => {
                sent.pop_front();
            }
            _ => return None,
        }
    }
    None
}

/// Sends on a UDP socket. An ICMP error about an earlier datagram leaves an
/// error on the socket that the next send reports instead of sending (its
/// details are on the error queue, where they are read): that send is made
/// again, once. A failed send takes no TX stamp counter (Linux 6.x), so the
/// stamps of later sends still match.
fn send_on(sock: &mut StampedUdp, to: SocketAddr, msg: &[u8]) -> Result<u32, IoError> {
    match sock.send_to(to, msg) {
        Err(IoError::Send { source, .. }) if super::stamped_udp::is_unreachable_errno(&source) => {
            sock.send_to(to, msg)
        }
        r => r,
    }
}

impl SocketLink {
    /// Queues the datagram's UDP payload on the socket of its source port
    /// (its headers are the machine's; the socket's are the kernel's).
    fn queue(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        let hl = match datagram.first().map(|b| b >> 4) {
            Some(4) => usize::from(datagram[0] & 0xf) * 4,
            _ => 40,
        };
        let Some(udp) = datagram.get(hl..hl + 8) else {
            return Ok(());
        };
        let (sport, dport) = (
            u16::from_be_bytes([udp[0], udp[1]]),
            u16::from_be_bytes([udp[2], udp[3]]),
        );
        if let Some(i) = self
            .socks
            .iter()
            .position(|s| s.local_addr().port() == sport)
        {
            self.batch[i].push((SocketAddr::new(dst, dport), datagram.to_vec()));
        }
        Ok(())
    }

    /// Sends what was queued, each payload on its own socket.
    fn flush_batches(&mut self) -> Result<(), IoError> {
        for (i, batch) in self.batch.iter_mut().enumerate() {
            for (to, d) in batch.drain(..) {
                let hl = match d[0] >> 4 {
                    4 => usize::from(d[0] & 0xf) * 4,
                    _ => 40,
                };
                let seq = send_on(&mut self.socks[i], to, &d[hl + 8..])?;
                self.sends[i].push_back((seq, d));
            }
        }
        Ok(())
    }
}

impl Link for SocketLink {
    fn send(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        self.queue(dst, datagram)?;
        self.flush_batches()
    }

    fn send_many(&mut self, datagrams: &mut Vec<Outgoing>) -> Result<(), IoError> {
        for o in datagrams.drain(..) {
            self.queue(o.dst, &o.datagram)?;
        }
        self.flush_batches()
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        if let Some(p) = self.try_recv()? {
            return Ok(Some(p));
        }
        if until <= Timestamp::now() {
            return Ok(None);
        }
        let wake = tokio::time::Instant::from_std(super::clock::instant_of(until));
        tokio::select! {
            biased;
            r = self.readable() => r?,
            _ = tokio::time::sleep_until(wake) => return Ok(None),
        }
        self.try_recv()
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        let n = self.socks.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            // bounded: stamps that match nothing are skipped
            for _ in 0..64 {
                let Some(ev) = self.socks[i].try_recv()? else {
                    break;
                };
                if let Some(p) = self.packet_of(i, ev) {
                    self.next = (i + 1) % n;
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        // the machines use the sockets' ports, held here
        Err(IoError::Port {
            addr: self
                .socks
                .first()
                .map_or(IpAddr::from([0, 0, 0, 0]), |s| s.local_addr().ip()),
            port: 0,
            source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        })
    }

    fn release_port(&mut self, _port: u16) {}

    fn random(&mut self) -> u32 {
        rand::random()
    }
}
