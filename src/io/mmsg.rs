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
