//! The network as a probe's drive loop sees it ([`Link`]), and the real one
//! ([`CaptureLink`]): datagrams out through a raw socket, packets in from a
//! kernel-timestamped capture (ours leaving and the answers), source ports
//! held by reservations, randomness from the system.

use super::pcap::PcapWriter;
use super::timer::PreciseTimer;
use super::{Capture, Captured, IoError, PortReservation, RawSender};
use crate::event::Timestamp;
use crate::probe::machine::Frame;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where a probe's packets go and come from. Implemented by the real network
/// ([`CaptureLink`]) and by the simulated one of the tests.
pub trait Link {
    /// Sends one IP datagram (header included) to `dst`.
    fn send(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError>;
    /// Sends datagrams in order; a link that batches them (sendmmsg, a
    /// sender thread) takes the whole batch, and may take the buffers.
    fn send_many(&mut self, datagrams: &mut Vec<Outgoing>) -> Result<(), IoError> {
        for o in datagrams.drain(..) {
            self.send(o.dst, &o.datagram)?;
        }
        Ok(())
    }
    /// Sends link-layer frames in order (ARP, Neighbor Discovery); a link
    /// that sends only IP datagrams refuses them.
    fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), IoError> {
        let host = frames.first().map(|f| f.host);
        frames.clear();
        Err(IoError::Socket {
            op: "send a link-layer frame on an IP-only link",
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("no link-layer sender (for {host:?})"),
            ),
        })
    }
    /// When the datagram sent with `tag` left, if this link times its sends
    /// itself (see [`crate::probe::machine::Context::left_at`]).
    fn left_at(&mut self, _tag: u64) -> Option<Timestamp> {
        None
    }
    /// Times the send queue was full (back-pressure) since the last call.
    fn take_stalls(&mut self) -> u64 {
        0
    }
    /// Packets the capture dropped since the last call.
    fn take_drops(&mut self) -> u64 {
        0
    }
    /// Shows (or stops showing) the resets leaving from a scan's port (see
    /// [`crate::probe::machine::Context::watch_resets`]); false: cannot.
    fn watch_resets(&mut self, _on: bool) -> bool {
        false
    }
    /// Every datagram handed over before this instant has left (None: all).
    fn sent_through(&mut self) -> Option<Timestamp> {
        None
    }
    /// The next captured packet, or None once the capture clock reads `until`.
    fn recv(
        &mut self,
        until: Timestamp,
    ) -> impl std::future::Future<Output = Result<Option<Captured>, IoError>>;
    /// A packet already queued, without waiting.
    fn try_recv(&mut self) -> Result<Option<Captured>, IoError>;
    /// What a reader of the link's own already made of the packet last
    /// received (see [`crate::probe::machine::PreRead`]); None for most.
    fn take_read(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }
    /// Holds a local source port until [`Link::release_port`].
    fn reserve_port(&mut self) -> Result<u16, IoError>;
    /// Gives back a port from [`Link::reserve_port`].
    fn release_port(&mut self, port: u16);
    /// Randomness for ISNs and IP identifiers.
    fn random(&mut self) -> u32;
}

/// One datagram for [`Link::send_many`]: where to, the bytes (IP header
/// included) and the tag its send time is kept under, if any.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The destination.
    pub dst: IpAddr,
    /// The datagram, from its IP header.
    pub datagram: Vec<u8>,
    /// See [`crate::probe::machine::Context::send_tagged`].
    pub tag: Option<u64>,
}

/// Where a [`CaptureLink`] reads: a capture of its own, or a channel fed by a
/// capture shared with other flows (the exporter's dispatcher).
pub enum Packets<'a> {
    /// A capture of the link's own.
    Capture(&'a mut Capture),
    /// The packets a shared capture routes to this flow.
    Channel(&'a mut tokio::sync::mpsc::Receiver<Captured>),
}

/// The real network: a raw sender, a capture, port reservations on `src`,
/// and (optionally) a pcap file every captured packet is written to.
pub struct CaptureLink<'a> {
    sender: &'a RawSender,
    packets: Packets<'a>,
    pcap: Option<&'a mut PcapWriter>,
    src: IpAddr,
    held: BTreeMap<u16, PortReservation>,
    timer: PreciseTimer,
}

impl<'a> CaptureLink<'a> {
    /// Must be called inside a tokio runtime.
    pub fn new(
        sender: &'a RawSender,
        packets: Packets<'a>,
        src: IpAddr,
        pcap: Option<&'a mut PcapWriter>,
    ) -> Result<CaptureLink<'a>, IoError> {
        Ok(CaptureLink {
            sender,
            packets,
            pcap,
            src,
            held: BTreeMap::new(),
            timer: PreciseTimer::new()?,
        })
    }

    fn seen(&mut self, p: Captured) -> Result<Captured, IoError> {
        if let Some(w) = self.pcap.as_mut() {
            w.write(p.timestamp, &p.data)?;
        }
        Ok(p)
    }
}

fn channel_closed() -> IoError {
    IoError::Socket {
        op: "read shared capture",
        source: std::io::Error::other("the shared capture ended"),
    }
}

impl Link for CaptureLink<'_> {
    fn send(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        self.sender.send(dst, datagram)
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        let wake = super::clock::instant_of(until);
        let p = match &mut self.packets {
            Packets::Capture(c) => tokio::select! {
                biased;
                p = c.recv() => Some(p?),
                t = self.timer.sleep_until(wake) => { t?; None }
            },
            Packets::Channel(rx) => tokio::select! {
                biased;
                p = rx.recv() => Some(p.ok_or_else(channel_closed)?),
                t = self.timer.sleep_until(wake) => { t?; None }
            },
        };
        p.map(|p| self.seen(p)).transpose()
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        let p = match &mut self.packets {
            Packets::Capture(c) => c.try_recv()?,
            Packets::Channel(rx) => match rx.try_recv() {
                Ok(p) => Some(p),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    return Err(channel_closed());
                }
            },
        };
        p.map(|p| self.seen(p)).transpose()
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        let r = PortReservation::reserve(self.src, 0)?;
        let port = r.port;
        self.held.insert(port, r);
        Ok(port)
    }

    fn release_port(&mut self, port: u16) {
        self.held.remove(&port);
    }

    fn random(&mut self) -> u32 {
        rand::random()
    }
}
