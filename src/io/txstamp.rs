//! Kernel transmit timestamps of our own sends (SO_TIMESTAMPING): the kernel
//! stamps each datagram as the device takes it (software stamp, CLOCK_REALTIME,
//! the clock of the capture and of tcpdump) and queues the stamp on the
//! socket's error queue. With OPT_ID each stamp carries the socket's send
//! counter (0, 1, 2, ... per datagram sent, on raw and UDP sockets alike), which
//! is how a stamp is matched to the query it belongs to; OPT_TSONLY leaves the
//! datagram itself out of the error queue.

use super::IoError;
use super::sys::setsockopt_int;
use crate::event::Timestamp;
use std::os::fd::RawFd;

const BATCH: usize = 64;
/// Room for one SCM_TIMESTAMPING (3 timespecs) and one IP_RECVERR cmsg.
const CONTROL: usize = 256;

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
    super::sys::set_rcvbuf(fd, rcvbuf);
    Ok(())
}

/// Reads every transmit stamp queued on `fd`'s error queue, without waiting:
/// (send counter, kernel time) pairs in the order the kernel queued them.
/// Returns how many were read.
pub fn drain(fd: RawFd, out: &mut Vec<(u32, Timestamp)>) -> Result<usize, IoError> {
    let mut total = 0;
    // written by the kernel before it is read (up to each msg_controllen):
    // not zeroed on every call, which would cost more than the call itself
    // when the queue holds a few stamps
    let mut control = [std::mem::MaybeUninit::<[u64; CONTROL / 8]>::uninit(); BATCH];
    let mut dummy = [0u8; 1];
    loop {
        // SAFETY: zeroed iovec/mmsghdr are valid; each header points at the one
        // live byte of `dummy` and at its own live control buffer of the stated
        // size (uninitialised: the kernel only writes it); the CMSG walk stays
        // within msg_controllen as the kernel set it, bytes the kernel wrote.
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
                let c = super::sys::read_control(&m.msg_hdr);
                let key = c.error.and_then(|(ee, _)| {
                    (ee.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                        && ee.ee_errno == libc::ENOMSG as u32)
                        .then_some(ee.ee_data)
                });
                let stamp = c.stamp;
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

impl<K> SendLog<K> {
    /// An empty log; the first datagram recorded gets counter 0.
    pub fn new() -> SendLog<K> {
        SendLog {
            base: 0,
            sent: std::collections::VecDeque::new(),
        }
    }

    /// Nothing recorded waits for its stamp.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
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

impl<K> Default for SendLog<K> {
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
