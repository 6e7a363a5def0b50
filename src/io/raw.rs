//! Sending whole IP datagrams we built ourselves (IP_HDRINCL / IPV6_HDRINCL).

use super::IoError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};

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
}
