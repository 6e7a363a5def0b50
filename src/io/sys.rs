//! The raw socket calls every socket of `io` shares, in one place: integer
//! options, a receive buffer forced where the capability allows, and the one
//! walk over a received message's control messages that reads the kernel's
//! stamps (SO_TIMESTAMPNS on the capture, SO_TIMESTAMPING on the stamped
//! sockets), packet auxdata and extended errors (TX-stamp counters, ICMP).

use crate::event::Timestamp;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// An integer socket option.
pub(crate) fn setsockopt_int(fd: RawFd, level: i32, name: i32, val: i32) -> std::io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &val as *const i32 as *const libc::c_void,
            size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks for a receive buffer of `bytes`: forced past `rmem_max` where
/// CAP_NET_ADMIN allows (SO_RCVBUFFORCE), else as much as the limit gives.
pub(crate) fn set_rcvbuf(fd: RawFd, bytes: usize) {
    let bytes = bytes.min(i32::MAX as usize) as i32;
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes);
    }
}

/// What the control messages of one received message said.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Control {
    /// The kernel's software stamp (SO_TIMESTAMPNS, or the software entry of
    /// SCM_TIMESTAMPING), CLOCK_REALTIME like tcpdump's.
    pub stamp: Option<Timestamp>,
    /// PACKET_AUXDATA's tp_status (e.g. TP_STATUS_CSUMNOTREADY), 0 if absent.
    pub aux_status: u32,
    /// IP_RECVERR / IPV6_RECVERR: the extended error, and the offender's
    /// address when the kernel gave one (SO_EE_OFFENDER).
    pub error: Option<(libc::sock_extended_err, Option<SocketAddr>)>,
}

/// Reads every control message of `msg` we know.
///
/// # Safety
/// `msg` must be a msghdr whose control buffer the kernel just filled.
pub(crate) unsafe fn read_control(msg: &libc::msghdr) -> Control {
    let mut out = Control::default();
    // SAFETY: the CMSG_* walk stays within msg_controllen as the kernel set it;
    // each payload is read unaligned and only when its length covers the type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let len =
                (c.cmsg_len as usize).saturating_sub(data.offset_from(cmsg as *const u8) as usize);
            let (level, kind) = (c.cmsg_level, c.cmsg_type);
            let timespec = len >= size_of::<libc::timespec>();
            if level == libc::SOL_SOCKET
                && (kind == libc::SO_TIMESTAMPNS || kind == libc::SCM_TIMESTAMPING)
                && timespec
            {
                // SCM_TIMESTAMPING carries three timespecs; [0] is the software one
                let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                if ts.tv_sec != 0 || ts.tv_nsec != 0 {
                    out.stamp = Some(Timestamp(
                        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
                    ));
                }
            } else if level == libc::SOL_PACKET
                && kind == libc::PACKET_AUXDATA
                && len >= size_of::<libc::tpacket_auxdata>()
            {
                let aux = std::ptr::read_unaligned(data as *const libc::tpacket_auxdata);
                out.aux_status = aux.tp_status;
            } else if ((level == libc::IPPROTO_IP && kind == libc::IP_RECVERR)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR))
                && len >= size_of::<libc::sock_extended_err>()
            {
                let e = std::ptr::read_unaligned(data as *const libc::sock_extended_err);
                // the offender's address follows the error (SO_EE_OFFENDER)
                let rest = len - size_of::<libc::sock_extended_err>();
                let mut off: libc::sockaddr_storage = std::mem::zeroed();
                let copy = rest.min(size_of::<libc::sockaddr_storage>());
                std::ptr::copy_nonoverlapping(
                    data.add(size_of::<libc::sock_extended_err>()),
                    &mut off as *mut _ as *mut u8,
                    copy,
                );
                let offender = if copy >= size_of::<libc::sockaddr_in>() {
                    socket_addr(&off)
                } else {
                    None
                };
                out.error = Some((e, offender));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    out
}

/// The address in a sockaddr_storage the kernel filled, if IPv4 or IPv6.
pub(crate) fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Waits until the kernel stamps packets as they arrive, at most `tries`
/// times 1 ms; false if that was not seen (no loopback here, or no stamps).
///
/// Asking a socket for receive stamps switches the kernel's stamping on for
/// the whole host, but when no other socket had asked, only once a kernel
/// worker gets to it (`net_enable_timestamp` defers it), which a busy host
/// can delay by milliseconds. Until then an SO_TIMESTAMPNS socket (the
/// capture) gets its packets stamped when they are *read*: our probe's copy,
/// read after the answer arrived, would carry a later stamp than the answer
/// (an RTT of 0), an answer read late one past its deadline. So once the
/// capture has asked, this sends a byte to a UDP socket of its own over
/// loopback (nothing leaves the host) until it arrives with an SO_TIMESTAMPING
/// software stamp, which the kernel gives only while stamping is on.
/// `StampedUdp::ready_stamps` does the same on its own socket.
pub(crate) fn await_rx_stamps(tries: u32) -> bool {
    use socket2::{Domain, Socket, Type};
    let flags = libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
    let bound = [
        (Domain::IPV4, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        (Domain::IPV6, SocketAddr::from((Ipv6Addr::LOCALHOST, 0))),
    ]
    .into_iter()
    .find_map(|(domain, addr)| {
        let s = Socket::new(domain, Type::DGRAM, None).ok()?;
        s.bind(&addr.into()).ok()?;
        let me = s.local_addr().ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_millis(1)))
            .ok()?;
        use std::os::fd::AsRawFd;
        setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            flags as i32,
        )
        .ok()?;
        Some((s, me))
    });
    let Some((sock, me)) = bound else {
        return false;
    };
    for _ in 0..tries {
        if sock.send_to(b"\0", &me).is_err() {
            return false;
        }
        let started = std::time::Instant::now();
        // the byte (or, after a timeout, an earlier try's): stamped or not
        while started.elapsed() < std::time::Duration::from_millis(1) {
            match recv_stamp(&sock) {
                Some(true) => return true,
                Some(false) => break,
                None => std::thread::sleep(std::time::Duration::from_micros(100)),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

/// One datagram from `sock`: whether it came with a kernel stamp (None:
/// nothing within the socket's read timeout).
fn recv_stamp(sock: &socket2::Socket) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let mut control = [0u64; 16];
    // SAFETY: every pointer handed to recvmsg points into a live local buffer
    // of the stated length; read_control walks what the kernel filled.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr() as *mut libc::c_void,
            iov_len: byte.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of_val(&control);
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) < 0 {
            return None;
        }
        Some(read_control(&msg).stamp.is_some())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn receive_stamps_are_seen_switched_on_over_loopback() {
        // this process asks for stamps itself: once its worker ran, they are on
        assert!(super::await_rx_stamps(500));
    }
}
