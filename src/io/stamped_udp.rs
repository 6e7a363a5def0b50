//! An ordinary UDP socket timed by the kernel, for runs without CAP_NET_RAW.
//! SO_TIMESTAMPING stamps every received datagram (RX) and every sent one
//! (TX, read back from the error queue, numbered by OPT_ID in send order);
//! IP_RECVERR / IPV6_RECVERR bring the ICMP errors about our datagrams to the
//! same error queue, with the offender's address and what the error quoted of
//! our payload. Software stamps are on CLOCK_REALTIME, the clock of the
//! capture path's stamps.
//!
//! Batch-shaped, so one socket serves one query or many: send any number of
//! datagrams (each gets the next sequence number), then drain [`UdpEvent`]s
//! (TX stamps by sequence number, replies with RX stamps, ICMP errors) until
//! [`StampedUdp::try_recv`] returns None, and [`StampedUdp::wait`] for more.

use super::sys::setsockopt_int;
use super::{IoError, Timestamp};
use crate::wire::IcmpError;
use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What the socket reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpEvent {
    /// A datagram from `from`, stamped by the kernel as it arrived (the
    /// stamp is the user-space read time only if the kernel gave none).
    Received {
        /// The sender.
        from: SocketAddr,
        /// Its receive stamp.
        at: Timestamp,
        /// `at` is the kernel's (else the read time).
        kernel_stamp: bool,
        /// The UDP payload.
        data: Vec<u8>,
    },
    /// Our datagram number `seq` (see [`StampedUdp::send_to`]) left at `at`.
    Sent {
        /// The number [`StampedUdp::send_to`] returned for it.
        seq: u32,
        /// The kernel's transmit stamp.
        at: Timestamp,
    },
    /// An ICMP error about a datagram we sent to `to`: the error, who sent it
    /// (`from`, or `to`'s address when the kernel names no offender) and the
    /// start of our payload as quoted.
    Icmp {
        /// Its type and code.
        error: IcmpError,
        /// Who sent it.
        from: IpAddr,
        /// Where our datagram went.
        to: SocketAddr,
        /// The start of our payload, as quoted.
        quoted: Vec<u8>,
        /// Its receive stamp.
        at: Timestamp,
    },
}

/// The socket, registered with tokio.
pub struct StampedUdp {
    fd: AsyncFd<Socket>,
    local: SocketAddr,
    /// The sequence number the next datagram gets (the kernel's OPT_ID counter).
    next_seq: u32,
    /// A send failed: the kernel may have used a number for it or not, so TX
    /// stamps can no longer be matched to datagrams and are dropped.
    numbering_lost: bool,
    buf: Vec<u8>,
}

/// The stamps asked of the kernel: software RX and TX, TX numbered, TX
/// messages without a copy of the datagram.
const STAMPING: u32 = libc::SOF_TIMESTAMPING_RX_SOFTWARE
    | libc::SOF_TIMESTAMPING_TX_SOFTWARE
    | libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_OPT_ID
    | libc::SOF_TIMESTAMPING_OPT_TSONLY;

/// What one receive on either queue gave.
enum Read {
    Event(UdpEvent),
    /// Something not for the caller (a local error, an unstamped TX report).
    Skip,
    Empty,
}

impl StampedUdp {
    /// Opens a UDP socket bound to `local` (port 0: the kernel picks one) with
    /// kernel timestamps and ICMP error reports on. Needs no privilege. Must
    /// be called inside a tokio runtime.
    pub fn bind(local: SocketAddr) -> Result<StampedUdp, IoError> {
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        let domain = if local.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::DGRAM, None).map_err(e("open UDP socket"))?;
        let fd = sock.as_raw_fd();
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, STAMPING as i32)
            .map_err(e("enable SO_TIMESTAMPING"))?;
        if local.is_ipv4() {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
                .map_err(e("enable IP_RECVERR"))?;
        } else {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
                .map_err(e("enable IPV6_RECVERR"))?;
        }
        sock.bind(&SockAddr::from(local))
            .map_err(|source| IoError::Port {
                addr: local.ip(),
                port: local.port(),
                source,
            })?;
        sock.set_nonblocking(true)
            .map_err(e("set UDP socket non-blocking"))?;
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(local);
        // SAFETY: the Socket owns its fd for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|err| IoError::Socket {
            op: "register UDP socket",
            source: err.into_parts().1,
        })?;
        Ok(StampedUdp {
            fd,
            local,
            next_seq: 0,
            numbering_lost: false,
            buf: vec![0u8; 65536],
        })
    }

    /// The bound address (with the port the kernel picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The sequence number the next datagram sent will get.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Sends one datagram; returns its sequence number, which its
    /// [`UdpEvent::Sent`] carries. A send that fails (an error other than a
    /// full queue, which is waited out) may or may not have used a number in
    /// the kernel: from then on this socket reports no TX stamps (never a
    /// wrong one), and answers are timed from the user-space send time.
    pub fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> Result<u32, IoError> {
        let addr = SockAddr::from(to);
        let mut tries = 0;
        loop {
            match self.fd.get_ref().send_to(payload, &addr) {
                Ok(_) => {
                    let seq = self.next_seq;
                    self.next_seq = self.next_seq.wrapping_add(1);
                    return Ok(seq);
                }
                // a full send queue: yield briefly, a bounded number of times
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                Err(source) => {
                    self.numbering_lost = true;
                    return Err(IoError::Send {
                        addr: to.ip(),
                        source,
                    });
                }
            }
        }
    }

    /// Sends every datagram in order with as few system calls as possible
    /// (sendmmsg; a full queue is waited out, boundedly); returns the sequence
    /// number of the first (the others follow it). Stops at the first
    /// datagram the kernel refuses: those before it were sent, and
    /// [`next_seq`](Self::next_seq) tells how many.
    pub fn send_batch(&mut self, batch: &[(SocketAddr, &[u8])]) -> Result<u32, IoError> {
        let first = self.next_seq;
        let addrs: Vec<SockAddr> = batch.iter().map(|(a, _)| SockAddr::from(*a)).collect();
        let named = addrs
            .iter()
            .zip(batch)
            .map(|(a, (_, b))| (a.as_ptr() as *const libc::c_void, a.len(), *b));
        let fd = self.fd.get_ref().as_raw_fd();
        let next_seq = &mut self.next_seq;
        super::mmsg::with_headers(named, |msgs| {
            super::mmsg::send_all(fd, msgs, |n| *next_seq = next_seq.wrapping_add(n as u32))
        })
        .map(|()| first)
        .map_err(|(at, source)| {
            self.numbering_lost = true;
            IoError::Send {
                addr: batch[at].0.ip(),
                source,
            }
        })
    }

    /// The next event if one is queued, without waiting: TX stamps and ICMP
    /// errors (the error queue) first, then received datagrams.
    pub fn try_recv(&mut self) -> Result<Option<UdpEvent>, IoError> {
        let fd = self.fd.get_ref().as_raw_fd();
        // bounded: skipped reports and a pending socket error are few
        for _ in 0..64 {
            match recv(fd, &mut self.buf, true) {
                Ok(Read::Event(UdpEvent::Sent { .. })) if self.numbering_lost => continue,
                Ok(Read::Event(e)) => return Ok(Some(e)),
                Ok(Read::Skip) => continue,
                Ok(Read::Empty) => {}
                Err(source) => {
                    return Err(IoError::Socket {
                        op: "read UDP error queue",
                        source,
                    });
                }
            }
            match recv(fd, &mut self.buf, false) {
                Ok(Read::Event(e)) => return Ok(Some(e)),
                Ok(Read::Skip) => continue,
                Ok(Read::Empty) => return Ok(None),
                // an ICMP error also sets the socket error, which the next
                // read reports once: its details are on the error queue
                Err(e) if is_icmp_errno(&e) => continue,
                Err(source) => {
                    return Err(IoError::Socket {
                        op: "read UDP socket",
                        source,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Makes sure receive stamps are on before the first real datagram: the
    /// kernel switches RX software stamping on for the first socket asking
    /// from a work queue, a moment later, so a reply arriving at once could
    /// come unstamped. Sends one-byte datagrams to this socket itself (local
    /// delivery, nothing leaves the host) until one arrives stamped, at most
    /// 20 times 1 ms apart; every event they cause is consumed here. False if
    /// stamps never came (answers are then timed in user space, and say so).
    pub async fn ready_stamps(&mut self) -> Result<bool, IoError> {
        for _ in 0..20 {
            self.send_to(self.local, b"\0")?;
            let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1);
            loop {
                while let Some(ev) = self.try_recv()? {
                    if let UdpEvent::Received {
                        from,
                        kernel_stamp: true,
                        ..
                    } = ev
                        && from == self.local
                    {
                        // the probe's TX stamp may still be queued: take it too
                        while self.try_recv()?.is_some() {}
                        return Ok(true);
                    }
                }
                if tokio::time::timeout_at(until, self.wait()).await.is_err() {
                    break;
                }
            }
        }
        Ok(false)
    }

    /// Waits until a datagram or an error-queue report (TX stamp, ICMP error)
    /// may be queued; then drain with [`try_recv`](Self::try_recv).
    pub async fn wait(&self) -> Result<(), IoError> {
        let mut guard = self
            .fd
            .ready(Interest::READABLE | Interest::ERROR)
            .await
            .map_err(|source| IoError::Socket {
                op: "wait on UDP socket",
                source,
            })?;
        // the caller drains both queues next; later arrivals set it again
        guard.clear_ready();
        Ok(())
    }
}

/// An errno an ICMP error sets on the socket: these, and those of
/// [`is_unreachable_errno`].
fn is_icmp_errno(e: &std::io::Error) -> bool {
    is_unreachable_errno(e)
        || matches!(
            e.raw_os_error(),
            Some(libc::EACCES | libc::EPERM | libc::EMSGSIZE | libc::ENOPROTOOPT)
        )
}

/// An errno that only an ICMP unreachable (or a protocol error) about an
/// earlier datagram sets on the socket: a send reporting one did not fail
/// by itself (unlike EACCES, EPERM or EMSGSIZE, which a send may cause).
pub(super) fn is_unreachable_errno(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EPROTO
        )
    )
}

/// One `recvmsg` on the data queue or (`errqueue`) the error queue, with its
/// control messages read: the software stamp and the extended error.
fn recv(fd: RawFd, buf: &mut [u8], errqueue: bool) -> std::io::Result<Read> {
    // SAFETY: zeroed sockaddr_storage / msghdr / control buffer are valid;
    // every pointer handed to recvmsg points into a live local buffer of the
    // stated length; the kernel just filled the control buffer read_control walks.
    let (n, name, control) = unsafe {
        let mut name: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of_val(&control);
        let flags = libc::MSG_DONTWAIT | if errqueue { libc::MSG_ERRQUEUE } else { 0 };
        let n = libc::recvmsg(fd, &mut msg, flags);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(Read::Empty);
            }
            return Err(e);
        }
        let control = super::sys::read_control(&msg);
        (
            (n as usize).min(buf.len()),
            super::sys::socket_addr(&name),
            control,
        )
    };
    let (stamp, ee) = (control.stamp, control.error);
    if !errqueue {
        let Some(from) = name else {
            return Ok(Read::Skip);
        };
        return Ok(Read::Event(UdpEvent::Received {
            from,
            at: stamp.unwrap_or_else(Timestamp::now),
            kernel_stamp: stamp.is_some(),
            data: buf[..n].to_vec(),
        }));
    }
    let Some((e, offender)) = ee else {
        return Ok(Read::Skip);
    };
    match e.ee_origin {
        libc::SO_EE_ORIGIN_TIMESTAMPING => Ok(match stamp {
            // ee_info says which stamp (SCM_TSTAMP_SND = 0 for TX_SOFTWARE)
            Some(at) if e.ee_info == 0 => Read::Event(UdpEvent::Sent { seq: e.ee_data, at }),
            _ => Read::Skip,
        }),
        libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6 => {
            let Some(to) = name else {
                return Ok(Read::Skip);
            };
            Ok(Read::Event(UdpEvent::Icmp {
                error: IcmpError {
                    v6: e.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
                    icmp_type: e.ee_type,
                    code: e.ee_code,
                },
                from: offender.map(|a| a.ip()).unwrap_or(to.ip()),
                to,
                quoted: buf[..n].to_vec(),
                at: stamp.unwrap_or_else(Timestamp::now),
            }))
        }
        _ => Ok(Read::Skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Drains events for up to 2 s until `want` of them came.
    async fn events(s: &mut StampedUdp, want: usize) -> Vec<UdpEvent> {
        events_within(s, want, Duration::from_secs(2)).await
    }

    async fn events_within(s: &mut StampedUdp, want: usize, wait: Duration) -> Vec<UdpEvent> {
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        while got.len() < want && tokio::time::Instant::now() < until {
            while let Some(e) = s.try_recv().unwrap() {
                got.push(e);
            }
            if got.len() < want {
                let _ = tokio::time::timeout(Duration::from_millis(50), s.wait()).await;
            }
        }
        got
    }

    #[tokio::test]
    async fn after_a_failed_send_no_tx_stamp_is_reported() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut a = StampedUdp::bind(lo).unwrap();
        let mut b = StampedUdp::bind(lo).unwrap();
        assert!(a.ready_stamps().await.unwrap());
        // refused at once (wrong family): the kernel's numbering is unknown now
        assert!(a.send_to("[::1]:9".parse().unwrap(), b"x").is_err());
        a.send_batch(&[(b.local_addr(), b"late")]).unwrap();
        let got = events(&mut b, 1).await;
        assert!(matches!(&got[..], [UdpEvent::Received { data, .. }] if data == b"late"));
        let mine = events_within(&mut a, 1, Duration::from_millis(100)).await;
        assert!(mine.is_empty(), "{mine:?}");
    }

    #[tokio::test]
    async fn loopback_stamps_and_port_unreachable() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut a = StampedUdp::bind(lo).unwrap();
        let mut b = StampedUdp::bind(lo).unwrap();
        let (pa, pb) = (a.local_addr(), b.local_addr());
        assert_ne!(pa.port(), 0);
        // both ends: b's RX stamps are checked below
        assert!(a.ready_stamps().await.unwrap());
        assert!(b.ready_stamps().await.unwrap());
        // the stamp probes used the first numbers
        let first = a.next_seq();
        assert!(first > 0);
        let before = Timestamp::now();
        assert_eq!(a.send_batch(&[(pb, b"one"), (pb, b"two")]).unwrap(), first);
        let mut sent: Vec<u32> = events(&mut a, 2)
            .await
            .into_iter()
            .map(|e| match e {
                UdpEvent::Sent { seq, at } => {
                    assert!(at >= before, "{at:?} {before:?}");
                    seq
                }
                e => panic!("{e:?}"),
            })
            .collect();
        sent.sort();
        assert_eq!(sent, vec![first, first + 1]);
        let got = events(&mut b, 2).await;
        assert_eq!(got.len(), 2, "{got:?}");
        for (e, want) in got.iter().zip([&b"one"[..], b"two"]) {
            let UdpEvent::Received {
                from,
                kernel_stamp,
                data,
                ..
            } = e
            else {
                panic!("{e:?}")
            };
            assert_eq!((*from, *kernel_stamp, data.as_slice()), (pa, true, want));
        }
        // b's port closed: the kernel answers a's next datagram with ICMP
        drop(b);
        assert_eq!(a.send_to(pb, b"\x12\x34query").unwrap(), first + 2);
        let got = events(&mut a, 2).await;
        let icmp = got.iter().find_map(|e| match e {
            UdpEvent::Icmp {
                error,
                from,
                to,
                quoted,
                ..
            } => Some((error.name(), *from, *to, quoted.clone())),
            _ => None,
        });
        assert_eq!(
            icmp,
            Some((
                "port-unreachable".to_string(),
                pb.ip(),
                pb,
                b"\x12\x34query".to_vec()
            )),
            "{got:?}"
        );
    }
}
