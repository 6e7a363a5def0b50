//! The one drive loop: runs any probe [`Machine`] over a [`Link`] (the real
//! network, or the simulated one of the tests) on a [`Clock`], handing what it
//! reports to a [`Reporter`], until it is done, interrupted or out of time.
//!
//! Each turn waits for a packet or the machine's next deadline, reads every
//! packet the capture queued (bounded), and only then runs the machine's
//! timers: a burst of answers waiting in the capture buffer is never taken
//! for silence.

use crate::cmd::{CmdError, Interrupt};
use crate::io::{Captured, Clock, IoError, Link, Outgoing};
use crate::probe::machine::{Context, Frame, Machine, Packet, PreRead, Stop};
use std::net::IpAddr;
use std::time::Duration;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

/// Packets read from the capture in one go before timers run again (the rest
/// are read on the next turn, and no timer runs until the queue is empty).
const DRAIN_MAX: usize = 4096;

/// Where a machine's reports go (a command's report writer, a test's list).
pub trait Reporter<E> {
    /// Takes one event; an error (e.g. stdout closed) ends the drive.
    fn report(&mut self, event: E) -> Result<(), CmdError>;
}

impl<E, F: FnMut(E) -> Result<(), CmdError>> Reporter<E> for F {
    fn report(&mut self, event: E) -> Result<(), CmdError> {
        self(event)
    }
}

/// How a drive ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// Ctrl-C (or SIGTERM) stopped it.
    pub interrupted: bool,
    /// The machine's bound on the monotonic clock stopped it.
    pub out_of_time: bool,
}

/// The drive loop's side of [`Context`]: sends and reports are queued and
/// carried out after the machine's call returns; ports and randomness come
/// from the link.
struct Cx<'l, L, E> {
    link: &'l mut L,
    sends: Vec<Outgoing>,
    frames: Vec<Frame>,
    events: Vec<E>,
    failed: Option<IoError>,
}

impl<L: Link, E> Context<E> for Cx<'_, L, E> {
    fn send(&mut self, dst: IpAddr, datagram: Vec<u8>) {
        self.sends.push(Outgoing {
            dst,
            datagram,
            tag: None,
        });
    }
    fn send_frame(&mut self, frame: Frame) {
        self.frames.push(frame);
    }
    fn report(&mut self, event: E) {
        self.events.push(event);
    }
    fn reserve_port(&mut self, may_wait: bool) -> Option<u16> {
        match self.link.reserve_port() {
            Ok(p) => Some(p),
            Err(e) if may_wait && e.is_exhaustion() => None,
            Err(e) => {
                self.failed.get_or_insert(e);
                None
            }
        }
    }
    fn release_port(&mut self, port: u16) {
        self.link.release_port(port);
    }
    fn random(&mut self) -> u32 {
        self.link.random()
    }
    fn send_tagged(&mut self, dst: IpAddr, datagram: Vec<u8>, tag: u64) {
        self.sends.push(Outgoing {
            dst,
            datagram,
            tag: Some(tag),
        });
    }
    fn left_at(&mut self, tag: u64) -> Option<crate::event::Timestamp> {
        self.link.left_at(tag)
    }
    fn send_stalls(&mut self) -> u64 {
        self.link.take_stalls()
    }
    fn sent_through(&mut self) -> Option<crate::event::Timestamp> {
        self.link.sent_through()
    }
    fn capture_drops(&mut self) -> u64 {
        self.link.take_drops()
    }
    fn watch_resets(&mut self, on: bool) -> bool {
        self.link.watch_resets(on)
    }
}

impl<L: Link, E> Cx<'_, L, E> {
    /// Carries out what the machine asked for.
    fn flush(&mut self, reporter: &mut impl Reporter<E>) -> Result<(), CmdError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        if !self.sends.is_empty() {
            self.link.send_many(&mut self.sends)?;
            self.sends.clear();
        }
        if !self.frames.is_empty() {
            self.link.send_frames(&mut self.frames)?;
            self.frames.clear();
        }
        for e in self.events.drain(..) {
            reporter.report(e)?;
        }
        Ok(())
    }
}

/// Hands one captured packet to the machine, with what the link already
/// read of it.
fn deliver<M: Machine, L: Link>(machine: &mut M, p: &Captured, cx: &mut Cx<'_, L, M::Event>) {
    let read = PreRead::new(cx.link.take_read());
    machine.on_packet(&packet(p, &read), cx);
}

fn packet<'a>(p: &'a Captured, read: &'a PreRead) -> Packet<'a> {
    Packet {
        data: &p.data,
        direction: p.direction,
        at: p.timestamp,
        offloaded: p.checksum_offloaded,
        read: Some(read),
    }
}

/// [`drive`] with a reporter that only logs (`-v`) each event, as `describe`
/// puts it: for machines whose result is read from them at the end.
pub async fn drive_logged<M, L, C>(
    machine: &mut M,
    link: &mut L,
    clock: &C,
    interrupt: &mut Interrupt<'_>,
    log: crate::cmd::Log,
    describe: impl Fn(&M::Event) -> String,
) -> Result<Ended, CmdError>
where
    M: Machine,
    L: Link,
    C: Clock,
{
    let mut reporter = |e: M::Event| {
        log.debug(|| describe(&e));
        Ok(())
    };
    drive(machine, link, clock, &mut reporter, interrupt).await
}

/// Runs `machine` over `link` until it is done, `interrupt` fires (the
/// machine is stopped: it resets what is open) or its bound passes.
pub async fn drive<M, L, C, R>(
    machine: &mut M,
    link: &mut L,
    clock: &C,
    reporter: &mut R,
    interrupt: &mut Interrupt<'_>,
) -> Result<Ended, CmdError>
where
    M: Machine,
    L: Link,
    C: Clock,
    R: Reporter<M::Event>,
{
    let mut ended = Ended::default();
    let mut cx = Cx {
        link,
        sends: Vec::new(),
        frames: Vec::new(),
        events: Vec::new(),
        failed: None,
    };
    let bound = machine.bound();
    // the monotonic bound, as a deadline on the capture clock
    let bound_at = |clock: &C| {
        bound.map(|b| clock.now() + b.saturating_sub(clock.elapsed()) + Duration::from_nanos(1))
    };
    if interrupt.fired() {
        ended.interrupted = true;
        machine.stop(Stop::Interrupted, clock.now(), &mut cx);
        cx.flush(reporter)?;
    }
    while !machine.is_done() {
        if bound.is_some_and(|b| clock.elapsed() > b) {
            ended.out_of_time = true;
            machine.stop(Stop::Bound, clock.now(), &mut cx);
            cx.flush(reporter)?;
            break;
        }
        let wake = [machine.poll_at(), bound_at(clock)]
            .into_iter()
            .flatten()
            .min()
            // nothing due: a packet must come (the bound ends a wait for nothing)
            .unwrap_or(clock.now() + Duration::from_secs(3600));
        let got = tokio::select! {
            biased;
            _ = interrupt.wait(), if !interrupt.fired() => {
                ended.interrupted = true;
                machine.stop(Stop::Interrupted, clock.now(), &mut cx);
                cx.flush(reporter)?;
                break;
            }
            p = cx.link.recv(wake) => p?,
        };
        let now = clock.now();
        if let Some(p) = got {
            deliver(machine, &p, &mut cx);
            cx.flush(reporter)?;
        }
        // everything the kernel queued before `now` is read before a timer runs
        let mut drained = false;
        for _ in 0..DRAIN_MAX {
            match cx.link.try_recv()? {
                Some(p) => {
                    deliver(machine, &p, &mut cx);
                    cx.flush(reporter)?;
                }
                None => {
                    drained = true;
                    break;
                }
            }
        }
        if drained {
            machine.poll(now, &mut cx);
            cx.flush(reporter)?;
        }
        // a deadline already past never waits: let the runtime poll its
        // sockets and signals
        tokio::task::consume_budget().await;
    }
    // the kernel's stamps of the last segments sent
    let linger = machine.linger();
    if !linger.is_zero() {
        let until = clock.now() + linger;
        while let Some(p) = cx.link.recv(until).await? {
            deliver(machine, &p, &mut cx);
            // done: nothing more goes out, unless the machine says so
            if !machine.sends_while_lingering() {
                cx.sends.clear();
                cx.frames.clear();
            }
            cx.flush(reporter)?;
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests;
