//! The real network of a scan as the drive loop sees it: the SYNs of each
//! poll are handed, as one batch, to sender threads that send them with
//! `sendmmsg` (raw IP, or frames to discovered on-link hosts, [`Egress`]),
//! and replies are read from the scan's capture. On a veth the receiving
//! side's work runs inside the send call, on the sender's core: one sender
//! thread per core keeps the loop (which reads, matches and paces) free.
//! The threads only send; every decision is the loop's and its machine's.

use super::capture::Capture;
use super::egress::Egress;
use super::pcap::PcapWriter;
use super::timer::PreciseTimer;
use super::{Captured, IoError, Link, Outgoing};
use crate::event::{Direction, Timestamp};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Batches a sender thread may have queued before the loop waits for it.
const QUEUE: usize = 4;
/// Datagrams gathered (the RSTs of single replies) before they are handed
/// over without waiting for the loop to read again.
const GATHER: usize = 64;

/// Send times kept, by tag modulo this (the scan machine's ring of recent
/// sends is as long).
const TIMES: usize = 1 << 17;

type Batch = Vec<Outgoing>;

/// When each recent tagged datagram left: (tag + 1, stamp) by tag modulo
/// [`TIMES`], written by the sender threads just before each send call.
struct SendTimes {
    tag: Vec<AtomicU64>,
    at: Vec<AtomicU64>,
}

impl SendTimes {
    fn new() -> SendTimes {
        SendTimes {
            tag: (0..TIMES).map(|_| AtomicU64::new(0)).collect(),
            at: (0..TIMES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn note(&self, tag: u64, at: Timestamp) {
        let i = (tag as usize) % TIMES;
        self.at[i].store(at.0, Ordering::Relaxed);
        self.tag[i].store(tag + 1, Ordering::Release);
    }

    fn get(&self, tag: u64) -> Option<Timestamp> {
        let i = (tag as usize) % TIMES;
        (self.tag[i].load(Ordering::Acquire) == tag + 1)
            .then(|| Timestamp(self.at[i].load(Ordering::Relaxed)))
    }
}

/// One sender thread as the loop sees it.
struct Lane {
    tx: SyncSender<Batch>,
    /// Batches it finished.
    done: Arc<AtomicU64>,
    /// When each batch not known to be finished was handed over.
    pending: VecDeque<Timestamp>,
    /// Batches handed over and known to be finished.
    finished: u64,
}

impl Lane {
    /// Batches handed over and not known to be finished.
    fn outstanding(&mut self) -> usize {
        let done = self.done.load(Ordering::Acquire);
        while self.finished < done && self.pending.pop_front().is_some() {
            self.finished += 1;
        }
        self.pending.len()
    }
}

/// What the sender threads did.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    refused: AtomicU64,
    stalls: AtomicU64,
    first_error: Mutex<Option<IoError>>,
}

/// What a scan's sends came to, once its link is finished.
#[derive(Debug, Default)]
pub struct SendTotals {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (skipped).
    pub refused: u64,
    /// Times the kernel's queue was full (back-pressure).
    pub stalls: u64,
    /// The first refusal's error.
    pub first_error: Option<IoError>,
}

/// A scan's [`Link`]: sender threads over one [`Egress`], the capture read
/// by the loop, and a pcap file of every reply read.
pub struct ScanLink<'a> {
    capture: Capture,
    pcap: Option<&'a mut PcapWriter>,
    timer: PreciseTimer,
    lanes: Vec<Lane>,
    next_lane: usize,
    threads: Vec<JoinHandle<()>>,
    counts: Arc<Counts>,
    times: Arc<SendTimes>,
    stalls_seen: u64,
    /// Small sends gathered into one batch, and when the first came: handed
    /// over when the loop next reads (or waits), or once there are enough.
    gathered: Batch,
    gathered_at: Option<Timestamp>,
    /// Batches sent, handed back to be freed where they were allocated.
    spent: Receiver<Batch>,
}

impl<'a> ScanLink<'a> {
    /// Sends through `egress` from `lanes` threads (at least one) and reads
    /// `capture`. Must be called inside a tokio runtime.
    pub fn new(
        egress: Egress,
        capture: Capture,
        pcap: Option<&'a mut PcapWriter>,
        lanes: usize,
    ) -> Result<ScanLink<'a>, IoError> {
        let egress = Arc::new(egress);
        let counts = Arc::new(Counts::default());
        let times = Arc::new(SendTimes::new());
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let (spent_tx, spent) = channel::<Batch>();
        for lane in 0..lanes.max(1) {
            let (tx, rx) = sync_channel::<Batch>(QUEUE);
            let done = Arc::new(AtomicU64::new(0));
            let (egress, counts, finished, stamps, spent_tx): (_, _, _, _, Sender<Batch>) = (
                Arc::clone(&egress),
                Arc::clone(&counts),
                Arc::clone(&done),
                Arc::clone(&times),
                spent_tx.clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("scan-send-{lane}"))
                .spawn(move || {
                    while let Ok(batch) = rx.recv() {
                        let refs: Vec<(IpAddr, &[u8])> = batch
                            .iter()
                            .map(|o| (o.dst, o.datagram.as_slice()))
                            .collect();
                        // the send time of each, as close to the send call as can be
                        let now = Timestamp::now();
                        for tag in batch.iter().filter_map(|o| o.tag) {
                            stamps.note(tag, now);
                        }
                        let out = egress.send_many(&refs);
                        counts
                            .sent
                            .fetch_add((refs.len() - out.refused) as u64, Ordering::Relaxed);
                        counts
                            .refused
                            .fetch_add(out.refused as u64, Ordering::Relaxed);
                        counts.stalls.fetch_add(out.stalls, Ordering::Relaxed);
                        if let Some(e) = out.first_error {
                            let mut first =
                                counts.first_error.lock().unwrap_or_else(|e| e.into_inner());
                            first.get_or_insert(e);
                        }
                        finished.fetch_add(1, Ordering::Release);
                        drop(refs);
                        // freed by the thread that allocated it (see `spent`)
                        let _ = spent_tx.send(batch);
                    }
                })
                .map_err(|source| IoError::Socket {
                    op: "start a sender thread",
                    source,
                })?;
            senders.push(Lane {
                tx,
                done,
                pending: VecDeque::new(),
                finished: 0,
            });
            threads.push(t);
        }
        Ok(ScanLink {
            capture,
            pcap,
            timer: PreciseTimer::new()?,
            lanes: senders,
            next_lane: 0,
            threads,
            counts,
            times,
            stalls_seen: 0,
            gathered: Vec::new(),
            gathered_at: None,
            spent,
        })
    }

    /// Frees the batches the sender threads are done with, on this thread,
    /// which allocated them: freed on a sender thread, the allocator's blocks
    /// return to the loop's heap only later (about 10 % more probes/s on
    /// 65,536 hosts × 4 ports; the loop's remaining page faults come from
    /// growth elsewhere).
    fn free_spent(&mut self) {
        while self.spent.try_recv().is_ok() {}
    }

    /// Waits for every batch handed over to be sent, and says what the sends
    /// came to.
    pub fn finish(&mut self) -> SendTotals {
        let _ = self.hand_over_gathered();
        self.lanes.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.free_spent();
        let c = &self.counts;
        SendTotals {
            sent: c.sent.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            first_error: c
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        }
    }

    /// The capture (its drops and reassembly counts).
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    fn seen(&mut self, p: Captured) -> Result<Captured, IoError> {
        // the pcap holds the replies (not the resets seen leaving)
        if let Some(w) = self
            .pcap
            .as_mut()
            .filter(|_| p.direction == Direction::Incoming)
        {
            w.write(p.timestamp, &p.data)?;
        }
        Ok(p)
    }

    /// Hands the gathered small sends over.
    fn hand_over_gathered(&mut self) -> Result<(), IoError> {
        match self.gathered_at.take() {
            Some(at) => {
                let batch = std::mem::take(&mut self.gathered);
                self.hand_over(batch, at)
            }
            None => Ok(()),
        }
    }

    /// Hands `batch` (gathered since `at`) to the next sender thread.
    fn hand_over(&mut self, batch: Batch, at: Timestamp) -> Result<(), IoError> {
        self.free_spent();
        if self.lanes.is_empty() || batch.is_empty() {
            return Ok(());
        }
        // the thread with the least handed over and not sent yet (a full
        // queue of one must not hold the loop while the other idles); ties
        // taken in turn
        let n = self.lanes.len();
        let start = self.next_lane;
        self.next_lane = self.next_lane.wrapping_add(1);
        let i = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.lanes[i].outstanding())
            .unwrap_or(0);
        let lane = &mut self.lanes[i];
        lane.pending.push_back(at);
        // a full queue waits for the thread (the loop then sends no faster
        // than the kernel takes)
        lane.tx.send(batch).map_err(|_| IoError::Socket {
            op: "hand SYNs to a sender thread",
            source: std::io::Error::other("the sender thread ended"),
        })
    }
}

impl Drop for ScanLink<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Link for ScanLink<'_> {
    fn send(&mut self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        self.send_many(&mut vec![Outgoing {
            dst,
            datagram: datagram.to_vec(),
            tag: None,
        }])
    }

    /// A poll's batch of SYNs goes at once; a reply's RST or two is
    /// gathered with the next ones (one hand-over, one wake of a sender
    /// thread, per turn of the loop rather than per reply).
    fn send_many(&mut self, datagrams: &mut Vec<Outgoing>) -> Result<(), IoError> {
        self.gathered_at.get_or_insert_with(Timestamp::now);
        self.gathered.append(datagrams);
        if self.gathered.len() >= 8 {
            self.hand_over_gathered()?;
        }
        Ok(())
    }

    fn left_at(&mut self, tag: u64) -> Option<Timestamp> {
        self.times.get(tag)
    }

    fn sent_through(&mut self) -> Option<Timestamp> {
        let mut through: Option<Timestamp> = self.gathered_at;
        for lane in &mut self.lanes {
            lane.outstanding();
            // everything handed over before its oldest unfinished batch has left
            if let Some(&t) = lane.pending.front() {
                through = Some(through.map_or(t, |x| x.min(t)));
            }
        }
        through
    }

    fn take_drops(&mut self) -> u64 {
        self.capture.drops()
    }

    /// The scan's capture program lets the resets leaving through
    /// ([`super::bpf::resets_leaving`]); the socket is shown what leaves
    /// only while they are watched.
    fn watch_resets(&mut self, on: bool) -> bool {
        self.capture.set_ignore_outgoing(!on).is_ok()
    }

    fn take_stalls(&mut self) -> u64 {
        let now = self.counts.stalls.load(Ordering::Relaxed);
        let new = now - self.stalls_seen;
        self.stalls_seen = now;
        new
    }

    async fn recv(&mut self, until: Timestamp) -> Result<Option<Captured>, IoError> {
        // what was gathered goes before the loop waits
        self.hand_over_gathered()?;
        let wake = super::clock::instant_of(until);
        let p = tokio::select! {
            biased;
            p = self.capture.recv() => Some(p?),
            t = self.timer.sleep_until(wake) => { t?; None }
        };
        p.map(|p| self.seen(p)).transpose()
    }

    fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        if self.gathered.len() >= GATHER {
            self.hand_over_gathered()?;
        }
        let p = self.capture.try_recv()?;
        p.map(|p| self.seen(p)).transpose()
    }

    fn reserve_port(&mut self) -> Result<u16, IoError> {
        // a scan sends from its one reserved port
        Err(IoError::Socket {
            op: "reserve a source port",
            source: std::io::Error::other("a scan holds one port for the whole scan"),
        })
    }

    fn release_port(&mut self, _port: u16) {}

    fn random(&mut self) -> u32 {
        rand::random()
    }
}
