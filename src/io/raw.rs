//! Sending whole IP datagrams we built ourselves (IP_HDRINCL / IPV6_HDRINCL).

use super::IoError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// A raw socket that sends complete IPv4 or IPv6 datagrams as given.
pub struct RawSender {
    sock: Socket,
}

impl RawSender {
    /// Opens a raw socket for `family` (taken from an address), optionally bound
    /// to an interface (SO_BINDTODEVICE).
    pub fn open(family: IpAddr, interface: Option<&str>) -> Result<RawSender, IoError> {
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        let domain = if family.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        // IPPROTO_RAW implies header-included sends on both families
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .map_err(e("open raw socket"))?;
        if family.is_ipv4() {
            sock.set_header_included_v4(true)
                .map_err(e("set IP_HDRINCL"))?;
        } else {
            sock.set_header_included_v6(true)
                .map_err(e("set IPV6_HDRINCL"))?;
        }
        if let Some(ifname) = interface {
            sock.bind_device(Some(ifname.as_bytes()))
                .map_err(e("bind raw socket to interface"))?;
        }
        // never read: keep the receive queue of this socket empty
        let _ = sock.set_recv_buffer_size(0);
        sock.set_nonblocking(true)
            .map_err(e("set raw socket non-blocking"))?;
        Ok(RawSender { sock })
    }

    /// Bytes of datagrams a raw sender that sends in bulk lets the kernel
    /// hold (scan, bulk DNS): while a neighbour is being resolved its queued
    /// datagrams count against the socket, ~40,000 SYNs' worth here.
    pub const BULK_SEND_BUFFER: usize = 32 << 20;

    /// Lets `bytes` of datagrams wait in the kernel (SO_SNDBUFFORCE with
    /// CAP_NET_ADMIN, else as much as the system allows): datagrams to
    /// on-link hosts whose neighbour entry is unresolved wait there, and a
    /// small buffer turns a few hundred of them into back-pressure.
    pub fn set_send_buffer(&self, bytes: usize) {
        let v = bytes.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: passes a pointer to a live c_int and its exact size.
        let r = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                &v as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let _ = self.sock.set_send_buffer_size(bytes);
        }
    }

    /// Asks the kernel for a transmit timestamp of every datagram sent from
    /// now on, numbered by a send counter from 0 (see [`super::txstamp`]).
    pub fn enable_tx_stamps(&self) -> Result<(), IoError> {
        // the socket receives nothing but its stamps: room for a burst of them
        super::txstamp::enable(self.sock.as_raw_fd(), false, 4 << 20)
    }

    /// The transmit stamps queued so far: (send counter, kernel time).
    pub fn tx_stamps(
        &self,
        out: &mut Vec<(u32, crate::event::Timestamp)>,
    ) -> Result<usize, IoError> {
        super::txstamp::drain(self.sock.as_raw_fd(), out)
    }

    /// Sends one datagram (IP header included) to `dst`.
    pub fn send(&self, dst: IpAddr, datagram: &[u8]) -> Result<(), IoError> {
        let addr = SockAddr::from(SocketAddr::new(dst, 0));
        let mut tries = 0;
        loop {
            match self.sock.send_to(datagram, &addr) {
                Ok(_) => return Ok(()),
                // a full send queue: yield briefly, a bounded number of times
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                Err(source) => return Err(IoError::Send { addr: dst, source }),
            }
        }
    }

    /// Sends many datagrams with as few system calls as possible (sendmmsg).
    /// A full queue is waited out, boundedly; a datagram the kernel refuses (e.g.
    /// no route to its destination) is skipped. Returns how many were refused and
    /// the first refusal.
    pub fn send_batch(
        &self,
        packets: &[(IpAddr, &[u8])],
    ) -> Result<(usize, Option<IoError>), IoError> {
        self.send_batch_noting(packets, &mut Vec::new())
    }

    /// As [`send_batch`](Self::send_batch), and notes the index of every
    /// datagram refused in `refused` (in order).
    pub fn send_batch_noting(
        &self,
        packets: &[(IpAddr, &[u8])],
        refused_at: &mut Vec<usize>,
    ) -> Result<(usize, Option<IoError>), IoError> {
        let addrs = sockaddrs(packets);
        let fd = self.sock.as_raw_fd();
        super::mmsg::with_headers(named(&addrs, packets), |msgs| {
            let mut done = 0;
            let mut refused = 0;
            let mut first = None;
            while done < msgs.len() {
                let Err((at, err)) = super::mmsg::send_all(fd, &mut msgs[done..], |_| {}) else {
                    break;
                };
                let stalled = err.kind() == std::io::ErrorKind::WouldBlock;
                done += at;
                let e = IoError::Send {
                    addr: packets[done].0,
                    source: err,
                };
                if e.is_permission() || stalled {
                    return Err(e);
                }
                refused += 1;
                refused_at.push(done);
                first.get_or_insert(e);
                done += 1;
            }
            Ok((refused, first))
        })
    }

    /// Sends many datagrams (sendmmsg) for a scan: a full queue (EAGAIN,
    /// ENOBUFS) is back-pressure, waited out with growing pauses and counted;
    /// a datagram the kernel refuses (no route, a broadcast address, a
    /// firewall) is skipped and counted. Nothing here ends a scan.
    pub fn send_many(&self, packets: &[(IpAddr, &[u8])]) -> super::link::SendOutcome {
        let addrs = sockaddrs(packets);
        let fd = self.sock.as_raw_fd();
        super::mmsg::with_headers(named(&addrs, packets), |msgs| {
            super::link::send_all(
                msgs,
                // SAFETY: `rest` is a valid slice of initialised mmsghdr (with_headers).
                |rest| unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) },
                |i| packets.get(i).map(|p| p.0),
            )
        })
    }
}

/// The destination of each datagram as a socket address (port 0: raw IP).
fn sockaddrs(packets: &[(IpAddr, &[u8])]) -> Vec<SockAddr> {
    packets
        .iter()
        .map(|(a, _)| SockAddr::from(SocketAddr::new(*a, 0)))
        .collect()
}

/// Each datagram with its destination's name, for [`super::mmsg::with_headers`].
fn named<'a>(
    addrs: &'a [SockAddr],
    packets: &'a [(IpAddr, &'a [u8])],
) -> impl ExactSizeIterator<Item = (*const libc::c_void, u32, &'a [u8])> {
    addrs
        .iter()
        .zip(packets)
        .map(|(a, (_, b))| (a.as_ptr() as *const libc::c_void, a.len(), *b))
}
