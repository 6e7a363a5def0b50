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
