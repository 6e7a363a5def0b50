//! The on-link interfaces of a scan's host discovery as the drive loop sees
//! them ([`Link`]): ARP requests and Neighbor Solicitations go out as
//! link-layer frames ([`LinkSender`]), and each discovery group's capture
//! (our requests leaving, for the kernel's stamps, and the replies) is read.

use super::capture::Capture;
use super::link::LinkSender;
use super::timer::PreciseTimer;
use super::{Captured, IoError, Link};
use crate::event::Timestamp;
use crate::probe::machine::Frame;
use std::net::IpAddr;
use std::time::Duration;

/// How long a wait on several captures sleeps between looks at each.
const LOOK: Duration = Duration::from_millis(1);

/// Discovery's [`Link`]: frames out through the interfaces' senders,
/// packets in from every group's capture.
pub struct DiscoveryLink<'a> {
    senders: &'a [LinkSender],
    captures: Vec<Capture>,
    next: usize,
    timer: PreciseTimer,
    /// Stalls not yet taken by [`Link::take_stalls`].
    fresh_stalls: u64,
    stalls: u64,
}

impl<'a> DiscoveryLink<'a> {
    /// Sends through `senders` (by interface index) and reads `captures`.
    /// Must be called inside a tokio runtime.
    pub fn new(
        senders: &'a [LinkSender],
        captures: Vec<Capture>,
    ) -> Result<DiscoveryLink<'a>, IoError> {
        Ok(DiscoveryLink {
            senders,
            captures,
            next: 0,
            timer: PreciseTimer::new()?,
            fresh_stalls: 0,
            stalls: 0,
        })
    }

    /// Times a full queue made a send wait, over the whole run.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}

fn unsupported(op: &'static str) -> IoError {
    IoError::Socket {
        op,
        source: std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "host discovery sends only ARP and Neighbor Discovery frames",
        ),
    }
}

impl Link for DiscoveryLink<'_> {
    fn send(&mut self, _dst: IpAddr, _datagram: &[u8]) -> Result<(), IoError> {
        Err(unsupported("send an IP datagram on the discovery link"))
    }

    fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), IoError> {
        // one sendmmsg per run of frames for the same interface and EtherType
        let mut rest: &[Frame] = frames;
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|f| f.ifindex == first.ifindex && f.ethertype == first.ethertype)
                .count();
            let (run, after) = rest.split_at(n);
            rest = after;
            // a frame for an interface we have no sender on is never asked for
            let Some(sender) = self
                .senders
                .iter()
                .find(|s| s.info.ifindex == first.ifindex)
            else {
                continue;
            };
            let packets: Vec<_> = run.iter().map(|f| (f.dst, f.payload.as_slice())).collect();
            let hosts: Vec<IpAddr> = run.iter().map(|f| f.host).collect();
            // refusals are skipped: an address not asked is not answered
            let o = sender.send_batch(first.ethertype, &packets, &hosts);
            self.fresh_stalls += o.stalls;
            self.stalls += o.stalls;
        }
        frames.clear();
        Ok(())
    }

    fn take_stalls(&mut self) -> u64 {
        std::mem::take(&mut self.fresh_stalls)
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        if let Some(p) = self.try_recv()? {
            return Ok(Some(p));
        }
        if let [only] = &mut self.captures[..] {
            // one link: sleep in its capture
            let wake = super::clock::instant_of(until);
            return tokio::select! {
                biased;
                p = only.recv() => Ok(Some(p?)),
                t = self.timer.sleep_until(wake) => { t?; Ok(None) }
            };
        }
        // several: look at each every millisecond (bounded by `until`)
        loop {
            let now = Timestamp::now();
            if now >= until {
                return Ok(None);
            }
            let wake = super::clock::instant_of(until.min(now + LOOK));
            self.timer.sleep_until(wake).await?;
            if let Some(p) = self.try_recv()? {
                return Ok(Some(p));
            }
        }
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        // round robin, so one busy link does not hide another's replies
        let n = self.captures.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(p) = self.captures[i].try_recv()? {
                self.next = (i + 1) % n;
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        Err(unsupported("reserve a source port on the discovery link"))
    }

    fn release_port(&mut self, _port: u16) {}

    fn random(&mut self) -> u32 {
        rand::random()
    }
}
