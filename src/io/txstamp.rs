//! Kernel transmit timestamps of our own sends (SO_TIMESTAMPING): the kernel
//! stamps each datagram as the device takes it (software stamp, CLOCK_REALTIME,
//! the clock of the capture and of tcpdump) and queues the stamp on the
//! socket's error queue. With OPT_ID each stamp carries the socket's send
//! counter (0, 1, 2, ... per datagram sent, on raw and UDP sockets alike), which
//! is how a stamp is matched to the query it belongs to; OPT_TSONLY leaves the
//! datagram itself out of the error queue.

use super::IoError;
use crate::event::Timestamp;
use std::os::fd::RawFd;

const BATCH: usize = 64;
/// Room for one SCM_TIMESTAMPING (3 timespecs) and one IP_RECVERR cmsg.
const CONTROL: usize = 256;

fn setsockopt_int(fd: RawFd, level: i32, name: i32, val: i32) -> std::io::Result<()> {
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

/// Turns on software transmit stamps with send counters on `fd` (and receive
/// stamps in an SCM_TIMESTAMPING message with every datagram read, if `rx`).
/// The error queue counts against the receive buffer: `rcvbuf` bytes are asked
/// for (forced when CAP_NET_ADMIN allows), so that a burst of stamps fits.
pub fn enable(fd: RawFd, rx: bool, rcvbuf: usize) -> Result<(), IoError> {
    let mut flags = libc::SOF_TIMESTAMPING_TX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_ID
        | libc::SOF_TIMESTAMPING_OPT_TSONLY;
    if rx {
        flags |= libc::SOF_TIMESTAMPING_RX_SOFTWARE;
    }
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, flags as i32).map_err(
        |source| IoError::Socket {
            op: "enable SO_TIMESTAMPING",
            source,
        },
    )?;
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf as i32).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf as i32);
    }
    Ok(())
}

/// The software stamp of an SCM_TIMESTAMPING control message, if this is one.
///
/// # Safety
/// `cmsg` must point at a control message inside a buffer the kernel filled.
pub unsafe fn scm_timestamp(cmsg: *const libc::cmsghdr) -> Option<Timestamp> {
    // SAFETY: the caller guarantees cmsg is a valid control message header.
    let c = unsafe { &*cmsg };
    if c.cmsg_level != libc::SOL_SOCKET || c.cmsg_type != libc::SCM_TIMESTAMPING {
        return None;
    }
    // SAFETY: an SCM_TIMESTAMPING message carries three timespecs; [0] is software.
    let ts = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec) };
    (ts.tv_sec != 0 || ts.tv_nsec != 0)
        .then(|| Timestamp(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64))
}

/// Reads every transmit stamp queued on `fd`'s error queue, without waiting:
/// (send counter, kernel time) pairs in the order the kernel queued them.
/// Returns how many were read.
pub fn drain(fd: RawFd, out: &mut Vec<(u32, Timestamp)>) -> Result<usize, IoError> {
    let mut total = 0;
    let mut control = [[0u64; CONTROL / 8]; BATCH];
    let mut dummy = [0u8; 1];
    loop {
        // SAFETY: zeroed iovec/mmsghdr are valid; each header points at the one
        // live byte of `dummy` and at its own live control buffer of the stated
        // size; the CMSG walk stays within msg_controllen as the kernel set it.
        let n = unsafe {
            let mut iov = libc::iovec {
                iov_base: dummy.as_mut_ptr() as *mut libc::c_void,
                iov_len: dummy.len(),
            };
            let mut msgs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
            for (m, c) in msgs.iter_mut().zip(control.iter_mut()) {
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = c.as_mut_ptr() as *mut libc::c_void;
                m.msg_hdr.msg_controllen = CONTROL;
            }
            let n = libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(total);
                }
                return Err(IoError::Socket {
                    op: "read transmit timestamps",
                    source: e,
                });
            }
            for m in &msgs[..n as usize] {
                let hdr = &m.msg_hdr;
                let mut stamp = None;
                let mut key = None;
                let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
                while !cmsg.is_null() {
                    if let Some(t) = scm_timestamp(cmsg) {
                        stamp = Some(t);
                    } else {
                        let c = &*cmsg;
                        let recverr = (c.cmsg_level == libc::SOL_IP
                            && c.cmsg_type == libc::IP_RECVERR)
                            || (c.cmsg_level == libc::SOL_IPV6
                                && c.cmsg_type == libc::IPV6_RECVERR);
                        if recverr {
                            let ee = std::ptr::read_unaligned(
                                libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err
                            );
                            if ee.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                                && ee.ee_errno == libc::ENOMSG as u32
                            {
                                key = Some(ee.ee_data);
                            }
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
                }
                if let (Some(k), Some(t)) = (key, stamp) {
                    out.push((k, t));
                }
            }
            n as usize
        };
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// Matches transmit stamps (by send counter) to what was sent: the caller
/// records each datagram as it is sent, in order, and hands the stamps in.
#[derive(Debug)]
pub struct SendLog<K> {
    /// The send counter of `sent[0]`.
    base: u32,
    sent: std::collections::VecDeque<K>,
}

impl<K: Copy> SendLog<K> {
    pub fn new() -> SendLog<K> {
        SendLog {
            base: 0,
            sent: std::collections::VecDeque::new(),
        }
    }

    /// One datagram the kernel accepted (it took the next send counter).
    pub fn sent(&mut self, key: K) {
        self.sent.push_back(key);
    }

    /// The key of the datagram with this send counter. Stamps come in send
    /// order, so older entries (whose stamps never came) are forgotten.
    pub fn stamped(&mut self, counter: u32) -> Option<K> {
        let ahead = counter.wrapping_sub(self.base);
        if ahead as usize >= self.sent.len() {
            return None; // unknown, or already matched
        }
        self.sent.drain(..ahead as usize);
        self.base = counter.wrapping_add(1);
        self.sent.pop_front()
    }
}

impl<K: Copy> Default for SendLog<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_matched_by_counter_lost_ones_skipped() {
        let mut l = SendLog::new();
        for k in ['a', 'b', 'c', 'd'] {
            l.sent(k);
        }
        assert_eq!(l.stamped(0), Some('a'));
        assert_eq!(l.stamped(0), None); // a duplicate
        assert_eq!(l.stamped(2), Some('c')); // b's stamp never came
        assert_eq!(l.stamped(1), None); // too late
        assert_eq!(l.stamped(9), None);
        assert_eq!(l.stamped(3), Some('d'));
        l.sent('e');
        assert_eq!(l.stamped(4), Some('e'));
    }
}
