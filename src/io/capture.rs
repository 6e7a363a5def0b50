//! Capture with kernel timestamps: an AF_PACKET/SOCK_DGRAM socket sees both the
//! packets we send (PACKET_OUTGOING) and the replies, stamped by the kernel on
//! one clock (CLOCK_REALTIME, the same stamp tcpdump reads), and a cBPF filter
//! keeps everything else out of our process.
//!
//! IP fragments never reach the caller: they are reassembled here (bounded,
//! see [`crate::wire::reassembly`]) and handed over as one whole datagram,
//! stamped with the arrival of the fragment that completed it (the last to
//! arrive). Every command (ping, scan, trace, dns) reads through this layer,
//! IPv4 and IPv6 alike.

use super::IoError;
use super::bpf::{FlowFilter, Insn};
use super::sys::setsockopt_int;
use crate::wire::reassembly::{FragmentDrop, Outcome, Reassembler};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;
use tokio::io::unix::AsyncFd;

pub use crate::event::{Direction, Timestamp};

/// One captured packet, starting at its IP header.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The packet, from its IP header (fragments reassembled).
    pub data: Vec<u8>,
    /// The kernel's stamp (receive, or send for our own packets).
    pub timestamp: Timestamp,
    /// Ours going out, or someone's coming in.
    pub direction: Direction,
    /// The kernel did not fill in the transport checksum (offload on veth, lo).
    pub checksum_offloaded: bool,
    /// The interface it was captured on.
    pub ifindex: i32,
}

/// What reassembly did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Datagrams put back together from fragments.
    pub reassembled: u64,
    /// Fragments that did not end up in a datagram, by reason.
    pub dropped: BTreeMap<FragmentDrop, u64>,
}

impl FragmentStats {
    /// "2 reassembled; 1 overlap, 3 timeout" for -v logs (None if no fragment came).
    pub fn describe(&self) -> Option<String> {
        if self.reassembled == 0 && self.dropped.is_empty() {
            return None;
        }
        let mut s = format!(
            "{} datagram(s) reassembled from fragments",
            self.reassembled
        );
        if !self.dropped.is_empty() {
            let parts: Vec<String> = self
                .dropped
                .iter()
                .map(|(k, v)| format!("{v} {}", k.name()))
                .collect();
            s.push_str(&format!("; fragments dropped: {}", parts.join(", ")));
        }
        Some(s)
    }
}

/// One reassembler per direction (on lo, the same fragment is seen leaving
/// and arriving).
#[derive(Debug, Default)]
pub(super) struct Defrag {
    incoming: Reassembler,
    outgoing: Reassembler,
}

impl Defrag {
    /// The packet as it is, the datagram it completed, or None (held or dropped).
    fn take(&mut self, c: Captured) -> Option<Captured> {
        match self.of(c.direction).push(&c.data, c.timestamp.0) {
            Outcome::Whole => Some(c),
            Outcome::Complete(data) => Some(Captured { data, ..c }),
            Outcome::Held | Outcome::Dropped(_) => None,
        }
    }

    pub(super) fn of(&mut self, direction: Direction) -> &mut Reassembler {
        match direction {
            Direction::Incoming => &mut self.incoming,
            Direction::Outgoing => &mut self.outgoing,
        }
    }

    pub(super) fn stats(&self) -> FragmentStats {
        let mut dropped = self.incoming.dropped().clone();
        for (k, v) in self.outgoing.dropped() {
            *dropped.entry(*k).or_default() += v;
        }
        FragmentStats {
            reassembled: self.incoming.reassembled() + self.outgoing.reassembled(),
            dropped,
        }
    }
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// The capture socket, registered with tokio.
pub struct Capture {
    fd: AsyncFd<Socket>,
    buf: Vec<u8>,
    defrag: Defrag,
}

/// Opens the packet socket: `filter` attached before it is bound to `ifindex`
/// (0 = every interface), so no unfiltered packet is ever queued.
fn open_socket(ifindex: u32, program: &[Insn], rcvbuf: usize) -> Result<Socket, IoError> {
    open_socket_with(ifindex, program, rcvbuf, |_| Ok(()))
}

/// As [`open_socket`], with `setup` run on the socket just before it is bound
/// (a receive ring must be in place before the first packet).
pub(super) fn open_socket_with(
    ifindex: u32,
    program: &[Insn],
    rcvbuf: usize,
    setup: impl FnOnce(&Socket) -> Result<(), IoError>,
) -> Result<Socket, IoError> {
    {
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        // protocol 0: receives nothing until bound, so no unfiltered packet sneaks in
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))
            .map_err(e("open capture socket"))?;
        let prog: Vec<SockFilter> = program
            .iter()
            .map(|i: &Insn| SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect();
        sock.attach_filter(&prog)
            .map_err(e("attach capture filter"))?;
        let fd = sock.as_raw_fd();
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .map_err(e("enable SO_TIMESTAMPNS"))?;
        // stamps on arrival from the first packet (else stamped when read)
        super::sys::await_rx_stamps(500);
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(e("enable PACKET_AUXDATA"))?;
        // a big buffer so bursts of replies are not dropped (FORCE needs CAP_NET_ADMIN)
        super::sys::set_rcvbuf(fd, rcvbuf);
        setup(&sock)?;
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll and the length matches.
        let r = unsafe {
            libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(IoError::Socket {
                op: "bind capture socket",
                source: std::io::Error::last_os_error(),
            });
        }
        sock.set_nonblocking(true)
            .map_err(e("set capture non-blocking"))?;
        Ok(sock)
    }
}

impl Capture {
    /// Opens a capture on `ifindex` (0 = every interface) with `filter` attached
    /// before any packet can be queued. Must be called inside a tokio runtime.
    pub fn open(ifindex: u32, filter: &FlowFilter) -> Result<Capture, IoError> {
        let sock = open_socket(ifindex, &filter.compile(), 8 << 20)?;
        // SAFETY: the Socket owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|err| IoError::Socket {
            op: "register capture socket",
            source: err.into_parts().1,
        })?;
        Ok(Capture {
            fd,
            buf: vec![0u8; 65536],
            defrag: Defrag::default(),
        })
    }

    /// Waits for the next packet (or reassembled datagram).
    pub async fn recv(&mut self) -> Result<Captured, IoError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| IoError::Socket {
                op: "wait on capture socket",
                source,
            })?;
            let raw = guard.get_inner().as_raw_fd();
            let buf = &mut self.buf;
            match guard.try_io(|_| recv_one(raw, buf)) {
                Ok(r) => {
                    let c = r.map_err(|source| IoError::Socket {
                        op: "read capture socket",
                        source,
                    })?;
                    if let Some(c) = self.defrag.take(c) {
                        return Ok(c);
                    }
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads a packet (or reassembled datagram) if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        let fd = self.fd.get_ref().as_raw_fd();
        while let Some(c) = try_recv_one(fd, &mut self.buf)? {
            if let Some(c) = self.defrag.take(c) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// What reassembly did so far.
    pub fn fragments(&self) -> FragmentStats {
        self.defrag.stats()
    }

    /// Packets the kernel dropped for lack of buffer space since the last call.
    pub fn drops(&self) -> u64 {
        packet_drops(self.fd.get_ref().as_raw_fd())
    }

    /// Stops (`ignore`) or starts again showing this socket the packets this
    /// host sends (PACKET_IGNORE_OUTGOING, Linux 4.20): each one shown costs
    /// the kernel a copy, and the filter's run.
    pub fn set_ignore_outgoing(&self, ignore: bool) -> Result<(), IoError> {
        set_ignore_outgoing(self.fd.get_ref().as_raw_fd(), ignore)
    }
}

/// A capture read from a plain thread (the scanner's receiver), without tokio.
pub struct BlockingCapture {
    sock: Socket,
    buf: Vec<u8>,
    defrag: Defrag,
    /// Buffers of [`BlockingCapture::recv_batch`], made on first use.
    batch_buf: Vec<u8>,
}

impl BlockingCapture {
    /// As [`Capture::open`], with a receive buffer of `rcvbuf` bytes.
    pub fn open(
        ifindex: u32,
        filter: &FlowFilter,
        rcvbuf: usize,
    ) -> Result<BlockingCapture, IoError> {
        Self::open_program(ifindex, &filter.compile(), rcvbuf)
    }

    /// As [`BlockingCapture::open`], with a program of its own (several flow
    /// filters chained, or the ARP / ND filters of host discovery).
    pub fn open_program(
        ifindex: u32,
        program: &[Insn],
        rcvbuf: usize,
    ) -> Result<BlockingCapture, IoError> {
        Ok(BlockingCapture {
            sock: open_socket(ifindex, program, rcvbuf)?,
            buf: vec![0u8; 65536],
            defrag: Defrag::default(),
            batch_buf: Vec::new(),
        })
    }

    /// The next packet (or reassembled datagram), or None if none came within
    /// `timeout`.
    pub fn recv_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Captured>, IoError> {
        let fd = self.sock.as_raw_fd();
        let deadline = Instant::now() + timeout.min(std::time::Duration::from_secs(3600));
        loop {
            while let Some(c) = try_recv_one(fd, &mut self.buf)? {
                if let Some(c) = self.defrag.take(c) {
                    return Ok(Some(c));
                }
                // a stream of fragments that complete nothing must not hold us past the deadline
                if Instant::now() >= deadline {
                    return Ok(None);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r <= 0 {
                return Ok(None);
            }
        }
    }

    /// What reassembly did so far.
    pub fn fragments(&self) -> FragmentStats {
        self.defrag.stats()
    }

    /// The same capture read from tokio (a scan's drive loop), its queue
    /// and reassembly kept. Must be called inside a tokio runtime.
    pub fn into_async(self) -> Result<Capture, IoError> {
        // SAFETY: the Socket owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(self.sock) }.map_err(|err| IoError::Socket {
            op: "register capture socket",
            source: err.into_parts().1,
        })?;
        Ok(Capture {
            fd,
            buf: self.buf,
            defrag: self.defrag,
        })
    }

    /// A packet (or reassembled datagram) if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Captured>, IoError> {
        let fd = self.sock.as_raw_fd();
        while let Some(c) = try_recv_one(fd, &mut self.buf)? {
            if let Some(c) = self.defrag.take(c) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Packets the kernel dropped for lack of buffer space since the last call
    /// (PACKET_STATISTICS).
    pub fn drops(&self) -> u64 {
        packet_drops(self.sock.as_raw_fd())
    }

    /// Stops this socket from seeing the packets this host sends
    /// (PACKET_IGNORE_OUTGOING, Linux 4.20): the kernel then no longer copies
    /// each one for it, which a capture of replies alone does not need.
    pub fn ignore_outgoing(&self) -> Result<(), IoError> {
        set_ignore_outgoing(self.sock.as_raw_fd(), true)
    }
}

/// Sets PACKET_IGNORE_OUTGOING on a packet socket.
fn set_ignore_outgoing(fd: RawFd, ignore: bool) -> Result<(), IoError> {
    const PACKET_IGNORE_OUTGOING: i32 = 23;
    setsockopt_int(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, ignore as i32).map_err(|source| {
        IoError::Socket {
            op: "set PACKET_IGNORE_OUTGOING",
            source,
        }
    })
}

/// PACKET_STATISTICS: packets dropped for lack of buffer space since the last call.
pub(super) fn packet_drops(fd: RawFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: st is a live tpacket_stats and len its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 { 0 } else { st.tp_drops as u64 }
}

/// One packet if one is queued (None if not), without waiting.
fn try_recv_one(fd: RawFd, buf: &mut [u8]) -> Result<Option<Captured>, IoError> {
    match recv_one(fd, buf) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(source) => Err(IoError::Socket {
            op: "read capture socket",
            source,
        }),
    }
}

/// One packet of a batch, borrowed from the capture's buffers.
#[derive(Debug, Clone, Copy)]
pub struct CapturedRef<'a> {
    /// The packet, from its IP header.
    pub data: &'a [u8],
    /// The kernel's stamp.
    pub timestamp: Timestamp,
    /// Ours going out, or someone's coming in.
    pub direction: Direction,
    /// The kernel did not fill in the transport checksum.
    pub checksum_offloaded: bool,
}

/// Packets read by one `recvmmsg`.
const BATCH: usize = 16;
const CONTROL: usize = 32;

impl BlockingCapture {
    /// Reads up to 16 queued packets with one `recvmmsg` and hands each to
    /// `f`, borrowed (no copy, no allocation); waits up to `timeout` when none
    /// is queued. Returns how many were read.
    pub fn recv_batch(
        &mut self,
        timeout: std::time::Duration,
        mut f: impl FnMut(CapturedRef<'_>),
    ) -> Result<usize, IoError> {
        if self.batch_buf.is_empty() {
            self.batch_buf = vec![0u8; BATCH * 65536];
        }
        let fd = self.sock.as_raw_fd();
        let mut waited = false;
        loop {
            let mut sll: [libc::sockaddr_ll; BATCH] =
                // SAFETY: sockaddr_ll is plain old data; zeroed is valid.
                unsafe { std::mem::zeroed() };
            let mut control = [[0u64; CONTROL]; BATCH];
            let mut iovs: Vec<libc::iovec> = self
                .batch_buf
                .chunks_exact_mut(65536)
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr are valid; each points at its own live
            // iovec, sockaddr_ll and control buffer of the stated sizes.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, m) in msgs.iter_mut().enumerate() {
                m.msg_hdr.msg_name = &mut sll[i] as *mut _ as *mut libc::c_void;
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
                m.msg_hdr.msg_iov = &mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = control[i].as_mut_ptr() as *mut libc::c_void;
                m.msg_hdr.msg_controllen = size_of_val(&control[i]);
            }
            // SAFETY: msgs is a valid array of BATCH initialised headers.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(IoError::Socket {
                        op: "read capture socket",
                        source: e,
                    });
                }
                if waited {
                    return Ok(0);
                }
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                    return Ok(0);
                }
                waited = true;
                continue;
            }
            let n = n as usize;
            for (i, m) in msgs[..n].iter().enumerate() {
                // SAFETY: the kernel filled this message's control buffer.
                let super::sys::Control {
                    stamp: timestamp,
                    aux_status: status,
                    ..
                } = unsafe { super::sys::read_control(&m.msg_hdr) };
                let len = (m.msg_len as usize).min(65536);
                let data = &self.batch_buf[i * 65536..i * 65536 + len];
                let timestamp = timestamp.unwrap_or_else(Timestamp::now);
                let direction = if sll[i].sll_pkttype == PACKET_OUTGOING {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                let whole;
                let data = match self.defrag.of(direction).push(data, timestamp.0) {
                    Outcome::Whole => data,
                    Outcome::Complete(d) => {
                        whole = d;
                        &whole[..]
                    }
                    Outcome::Held | Outcome::Dropped(_) => continue,
                };
                f(CapturedRef {
                    data,
                    timestamp,
                    direction,
                    checksum_offloaded: status & TP_STATUS_CSUMNOTREADY != 0,
                });
            }
            return Ok(n);
        }
    }
}

/// One `recvmsg` with its control messages: timestamp and auxdata.
fn recv_one(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Captured> {
    // SAFETY: zeroed sockaddr_ll / msghdr / control buffer are valid; every pointer
    // handed to recvmsg points into a live local buffer of the stated length, and
    // the CMSG_* walk stays within msg_controllen as the kernel set it.
    unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 32];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let super::sys::Control {
            stamp: timestamp,
            aux_status: status,
            ..
        } = super::sys::read_control(&msg);
        let len = (n as usize).min(buf.len());
        Ok(Captured {
            data: buf[..len].to_vec(),
            // the kernel stamps every packet once SO_TIMESTAMPNS is on (and
            // sys::await_rx_stamps saw stamping switched on); fall back to now
            timestamp: timestamp.unwrap_or_else(Timestamp::now),
            direction: if sll.sll_pkttype == PACKET_OUTGOING {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            // only a partial checksum (CHECKSUM_PARTIAL: sent by this host, or
            // GRO-merged) cannot be checked; a "valid" one is checked anyway,
            // since veth marks whatever a peer namespace sent as valid
            checksum_offloaded: status & TP_STATUS_CSUMNOTREADY != 0,
            ifindex: sll.sll_ifindex,
        })
    }
}
