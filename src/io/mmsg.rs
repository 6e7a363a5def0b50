//! The buffers of one `sendmmsg` call: an iovec and a message header per
//! datagram, each header naming its own destination address.

/// Builds one `mmsghdr` per `(name, name_len, datagram)` and hands them to
/// `f`. The iovecs live until `f` returns; the names are the caller's, and
/// outlive `f` since the caller holds them across this call.
pub(crate) fn with_headers<'a, R>(
    datagrams: impl ExactSizeIterator<Item = (*const libc::c_void, u32, &'a [u8])>,
    f: impl FnOnce(&mut [libc::mmsghdr]) -> R,
) -> R {
    let mut names = Vec::with_capacity(datagrams.len());
    let mut iovs: Vec<libc::iovec> = datagrams
        .map(|(name, len, b)| {
            names.push((name, len));
            libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            }
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&names)
        .map(|(iov, &(name, len))| {
            // SAFETY: a zeroed mmsghdr is valid; it points at one live iovec of
            // `iovs` and at the caller's name of the stated length.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = name as *mut libc::c_void;
            m.msg_hdr.msg_namelen = len;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    f(&mut msgs)
}

/// Sends `msgs` on `fd` with as few `sendmmsg` calls as possible, telling
/// `sent` of every run of datagrams the kernel took. A full queue (EAGAIN) is
/// waited out in 20 µs pauses, at most 1,000 of them. Stops at the first
/// datagram the kernel refuses, or when the queue stays full: `Err((index of
/// that datagram, the error))` (a queue that stayed full says WouldBlock).
pub(crate) fn send_all(
    fd: std::os::fd::RawFd,
    msgs: &mut [libc::mmsghdr],
    mut sent: impl FnMut(usize),
) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    let mut stalls = 0;
    while done < msgs.len() {
        let rest = &mut msgs[done..];
        // SAFETY: `rest` is a valid slice of initialised mmsghdr (with_headers).
        let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) };
        if n > 0 {
            done += n as usize;
            sent(n as usize);
            continue;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock && stalls < 1000 {
            stalls += 1;
            std::thread::sleep(std::time::Duration::from_micros(20));
            continue;
        }
        return Err((done, err));
    }
    Ok(())
}
