//! The exporter's packet plane, opened once at start while it still holds its
//! capabilities, then shared by every SYN and handshake run for its life.
//!
//! Per source address (the routes of the configured targets at start):
//! - a block of [`BLOCK`] consecutive TCP ports, each bound (not listening)
//!   so the kernel gives them to no other socket: the first [`SYN_PORTS`] for
//!   SYN probes (the kernel's RST to the SYN-ACK ends the half-open connection
//!   at the target, as with `ping`), the other [`HANDSHAKE_PORTS`] for
//!   handshakes;
//! - one nftables owner table whose rule drops the kernel's bare RSTs from the
//!   handshake ports only (to any peer): `trace`'s per-flow rule widened to
//!   the block, gone when the process ends, SIGKILL included;
//! - one AF_PACKET capture for the whole block (our segments, the peers'
//!   answers, ICMP errors quoting them), read by one dispatcher task that
//!   hands each packet to the run leasing its local port.
//!
//! A run leases a port (the least recently used one: a peer's TIME_WAIT for
//! it has the most time to go) and gets the packets of that port until the
//! lease is dropped. Ports come back often (64 of them), so a handshake's
//! initial sequence number grows with the clock ([`Lease::isn`]): a peer still
//! holding the last connection of the port in TIME_WAIT takes the new SYN as a
//! new connection, as Linux does for its own reused ports, also for a SYN
//! without timestamps (`bare_syn`).

use crate::cmd::CmdError;
use crate::io::bpf::FlowFilter;
use crate::io::nft::RstFilter;
use crate::io::{Capture, Captured, Direction, PortReservation};
use crate::wire::datagram::Checksums;
use crate::wire::{Datagram, Protocol, SeqNumber, Transport};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Source ports per address for SYN probes (runs in flight at once).
pub const SYN_PORTS: u16 = 64;
/// Source ports per address for handshakes.
pub const HANDSHAKE_PORTS: u16 = 64;
/// The whole block reserved per source address.
pub const BLOCK: u16 = SYN_PORTS + HANDSHAKE_PORTS;
/// Packets queued for one run before more are dropped.
const QUEUE: usize = 1024;
/// Tries at finding a free block in the ephemeral range.
const BLOCK_TRIES: usize = 64;

/// What a leased port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Syn,
    Handshake,
}

type Routes = Arc<Mutex<HashMap<u16, mpsc::Sender<Captured>>>>;

/// Everything opened for one source address.
struct Source {
    src: IpAddr,
    /// Free ports, SYN and handshake, least recently used first.
    free: Mutex<[VecDeque<u16>; 2]>,
    routes: Routes,
    isn_offset: u32,
    _ports: Vec<PortReservation>,
    /// None: it could not be installed (no CAP_NET_ADMIN), so no handshakes.
    rst: Option<RstFilter>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

/// The sockets of every source address, opened at start.
#[derive(Default)]
pub struct Plane {
    sources: HashMap<IpAddr, Arc<Source>>,
}

/// A port held by one run, with the packets captured for it.
pub struct Lease {
    pub port: u16,
    pub rx: mpsc::Receiver<Captured>,
    kind: Use,
    source: Arc<Source>,
}

impl Lease {
    /// A clock-driven initial sequence number, as RFC 6528 and Linux: a
    /// random offset of this process plus the time in 64 ns ticks (a wrap takes
    /// 275 s, more than four times the longest TIME_WAIT), so each connection
    /// of a port starts after everything the previous one sent.
    pub fn isn(&self) -> SeqNumber {
        let ticks = (crate::event::Timestamp::now().0 >> 6) as u32;
        SeqNumber(self.source.isn_offset.wrapping_add(ticks))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut r) = self.source.routes.lock() {
            r.remove(&self.port);
        }
        if let Ok(mut f) = self.source.free.lock() {
            f[self.kind as usize].push_back(self.port);
        }
    }
}

/// The kernel's ephemeral port range.
fn ephemeral() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|w| w.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        // the block's end (base + BLOCK) must fit in a u16
        .map(|(lo, hi)| (lo.max(1), hi.min(u16::MAX - 1)))
        .filter(|(lo, hi)| hi > lo && hi - lo >= BLOCK)
        .unwrap_or((32768, 60999))
}

/// Binds [`BLOCK`] consecutive TCP ports of `src` in the ephemeral range.
fn reserve_block(src: IpAddr) -> Result<(u16, Vec<PortReservation>), CmdError> {
    let (lo, hi) = ephemeral();
    PortReservation::block(src, BLOCK, false, (lo, hi), BLOCK_TRIES).ok_or_else(|| {
        CmdError::Setup(format!(
            "reserve {BLOCK} consecutive TCP ports on {src}: none free in {lo}-{hi}"
        ))
    })
}

/// Our port of a captured packet: the source port of our segments, the
/// destination port of the peer's, the quoted source port of an ICMP error.
fn local_port(p: &Captured) -> Option<u16> {
    let d = Datagram::parse_with(&p.data, Checksums::Offloaded).ok()?;
    match (d.transport, p.direction) {
        (Transport::Tcp(t), Direction::Outgoing) => Some(t.src_port),
        (Transport::Tcp(t), Direction::Incoming) => Some(t.dst_port),
        (Transport::Icmp(i), Direction::Incoming) => i.quoted.map(|q| q.src_port),
        _ => None,
    }
}

async fn dispatch(mut capture: Capture, routes: Routes) {
    loop {
        let p = match capture.recv().await {
            Ok(p) => p,
            Err(_) => {
                // e.g. the interface went away: the runs see silence (loss)
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(port) = local_port(&p) else { continue };
        let tx = routes.lock().ok().and_then(|r| r.get(&port).cloned());
        if let Some(tx) = tx {
            // a run that stopped reading loses the rest, never blocks the others
            let _ = tx.try_send(p);
        }
    }
}

impl Plane {
    /// Opens the ports, nftables table and capture of each source address.
    /// Needs CAP_NET_RAW and CAP_NET_ADMIN, and a tokio runtime.
    pub fn open(srcs: impl IntoIterator<Item = IpAddr>) -> Result<Plane, CmdError> {
        let mut sources = HashMap::new();
        for src in srcs {
            if sources.contains_key(&src) {
                continue;
            }
            let (base, ports) = reserve_block(src)?;
            let hs = base + SYN_PORTS;
            // without CAP_NET_ADMIN, SYN probes still work: only handshakes fail
            let rst = match RstFilter::install_range(src, hs, base + BLOCK - 1) {
                Ok(r) => Some(r),
                Err(e) if e.is_permission() => {
                    note!("synscope: {e}: handshake probes from {src} will fail");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let filter = FlowFilter {
                local: src,
                remote: None,
                remote_port: None,
                local_ports: Some((base, base + BLOCK - 1)),
                protocol: Protocol::TCP,
                outbound: true,
            };
            // every interface: replies may come back on another one
            let capture = Capture::open(0, &filter)?;
            let routes: Routes = Arc::default();
            let dispatcher = tokio::spawn(dispatch(capture, routes.clone()));
            let free = [
                (base..hs).collect::<VecDeque<u16>>(),
                (hs..base + BLOCK).collect(),
            ];
            sources.insert(
                src,
                Arc::new(Source {
                    src,
                    free: Mutex::new(free),
                    routes,
                    isn_offset: rand::random(),
                    _ports: ports,
                    rst,
                    dispatcher,
                }),
            );
        }
        Ok(Plane { sources })
    }

    /// Was `src` prepared at start?
    pub fn has(&self, src: IpAddr) -> bool {
        self.sources.contains_key(&src)
    }

    /// One of `src`'s free ports for `kind`, with its packets from now on.
    pub fn lease(&self, src: IpAddr, kind: Use) -> Result<Lease, CmdError> {
        let source = self.sources.get(&src).ok_or_else(|| {
            CmdError::Setup(format!(
                "source address {src} was not prepared at start (sockets are opened \
                 only then, before the privileges go): restart the exporter"
            ))
        })?;
        if kind == Use::Handshake && source.rst.is_none() {
            return Err(CmdError::Setup(format!(
                "no nftables table keeps the kernel's RSTs off {src}'s handshake ports \
                 (CAP_NET_ADMIN was missing at start)"
            )));
        }
        let port = source
            .free
            .lock()
            .ok()
            .and_then(|mut f| f[kind as usize].pop_front())
            .ok_or_else(|| {
                CmdError::Setup(format!(
                    "all source ports of {} for {kind:?} runs are busy",
                    source.src
                ))
            })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Ok(mut r) = source.routes.lock() {
            r.insert(port, tx);
        }
        Ok(Lease {
            port,
            rx,
            kind,
            source: source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::fixture;

    fn captured(name: &str, direction: Direction) -> Captured {
        Captured {
            data: fixture(name).to_vec(),
            timestamp: crate::event::Timestamp(0),
            direction,
            checksum_offloaded: true,
            ifindex: 1,
        }
    }

    #[test]
    fn packets_go_to_our_port_of_their_flow() {
        let port = |name: &str, d: Direction| local_port(&captured(name, d));
        // our SYN from 53190 and the SYN-ACK to it
        assert_eq!(port("syn_v4", Direction::Outgoing), Some(53190));
        assert_eq!(port("synack_v4", Direction::Incoming), Some(53190));
        assert_eq!(port("rst_v4", Direction::Incoming), Some(60236));
        assert_eq!(port("syn_v6", Direction::Outgoing), Some(56882));
        assert_eq!(port("synack_v6", Direction::Incoming), Some(56882));
        // ICMP errors: the source port of the segment they quote
        assert_eq!(port("icmp_admin_v4", Direction::Incoming), Some(60800));
        assert_eq!(port("icmp6_admin_v6", Direction::Incoming), Some(60516));
        // an ICMP error we send, and a truncated packet, go nowhere
        assert_eq!(port("icmp_admin_v4", Direction::Outgoing), None);
        let mut junk = captured("syn_v4", Direction::Incoming);
        junk.data.truncate(30);
        assert_eq!(local_port(&junk), None);
    }
}
