//! A capture through a TPACKET_V3 receive ring (PACKET_RX_RING): the kernel
//! copies every packet that passes the cBPF filter straight into memory it
//! shares with us, packed into blocks, with the packet's kernel timestamp in
//! its frame header (the stamp tcpdump reads: libpcap reads the same ring).
//! Reading costs no system call and no copy per packet; a `poll` only when
//! the ring is empty. The kernel also skips the socket buffer it would
//! otherwise clone for each packet.
//!
//! The kernel hands a block over when it is full or after
//! `RETIRE_MS` with packets in it; we read its packets in order and hand
//! it back. Fragments are reassembled as in [`super::capture`].

use super::IoError;
use super::bpf::FlowFilter;
use super::capture::{CapturedRef, Defrag, FragmentStats, packet_drops};
use super::sys::setsockopt_int;
use crate::event::{Direction, Timestamp};
use crate::wire::reassembly::Outcome;
use socket2::Socket;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Bytes per block: room for the largest datagram on loopback (64 KiB).
const BLOCK_SIZE: usize = 128 << 10;
/// Frame size the kernel wants to be told (V3 packs packets of any size).
const FRAME_SIZE: usize = 2048;
/// A block with packets in it is handed over after this long at most.
const RETIRE_MS: u32 = 1;

const TP_STATUS_USER: u32 = 1;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const PACKET_OUTGOING: u8 = 4;

/// A capture read from a plain thread through a TPACKET_V3 ring.
pub struct RingCapture {
    sock: Socket,
    map: NonNull<u8>,
    blocks: usize,
    /// The next block to read.
    next: usize,
    defrag: Defrag,
}

// SAFETY: the mapping belongs to this value alone (it is unmapped on drop,
// never shared), so moving it to another thread is as safe as moving a Vec.
unsafe impl Send for RingCapture {}

impl RingCapture {
    /// Opens a capture on `ifindex` (0 = every interface) with `filter`
    /// attached and a ring of about `bytes` (at least 8 blocks) in place
    /// before any packet can arrive.
    pub fn open(ifindex: u32, filter: &FlowFilter, bytes: usize) -> Result<RingCapture, IoError> {
        let blocks = (bytes / BLOCK_SIZE).clamp(8, 1024);
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        let sock = super::capture::open_socket_with(ifindex, &filter.compile(), 1 << 16, |s| {
            let fd = s.as_raw_fd();
            setsockopt_int(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_VERSION,
                libc::tpacket_versions::TPACKET_V3 as i32,
            )
            .map_err(e("set TPACKET_V3"))?;
            let req = libc::tpacket_req3 {
                tp_block_size: BLOCK_SIZE as u32,
                tp_block_nr: blocks as u32,
                tp_frame_size: FRAME_SIZE as u32,
                tp_frame_nr: (BLOCK_SIZE / FRAME_SIZE * blocks) as u32,
                tp_retire_blk_tov: RETIRE_MS,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            // SAFETY: passes a pointer to a live tpacket_req3 and its exact size.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_RX_RING,
                    &req as *const libc::tpacket_req3 as *const libc::c_void,
                    size_of::<libc::tpacket_req3>() as u32,
                )
            };
            if r < 0 {
                return Err(e("set PACKET_RX_RING")(std::io::Error::last_os_error()));
            }
            Ok(())
        })?;
        // SAFETY: maps the ring the kernel just allocated for this socket, at
        // its exact size; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK_SIZE * blocks,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(e("map capture ring")(std::io::Error::last_os_error()));
        }
        let map = NonNull::new(p as *mut u8)
            .ok_or_else(|| e("map capture ring")(std::io::Error::other("null mapping")))?;
        Ok(RingCapture {
            sock,
            map,
            blocks,
            next: 0,
            defrag: Defrag::default(),
        })
    }

    /// Stops this socket from seeing the packets this host sends
    /// (PACKET_IGNORE_OUTGOING, Linux 4.20).
    pub fn ignore_outgoing(&self) -> Result<(), IoError> {
        setsockopt_int(
            self.sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        )
        .map_err(|source| IoError::Socket {
            op: "set PACKET_IGNORE_OUTGOING",
            source,
        })
    }

    /// Packets the kernel dropped (ring full) since the last call.
    pub fn drops(&self) -> u64 {
        packet_drops(self.sock.as_raw_fd())
    }

    /// What reassembly did so far.
    pub fn fragments(&self) -> FragmentStats {
        self.defrag.stats()
    }

    /// The status word of block `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block i lies inside the mapping (i < blocks); its status
        // word (tpacket_block_desc.hdr.bh1.block_status, offset 8) is 4-byte
        // aligned (blocks are page aligned), lives as long as `self`, and is
        // only ever accessed atomically, here and by the kernel.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(i * BLOCK_SIZE + 8) as *mut u32) }
    }

    /// Reads the packets of the next block the kernel has handed over and
    /// hands each to `f`, borrowed from the ring (no copy); waits up to
    /// `timeout` when none is ready. Returns how many packets were read.
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(CapturedRef<'_>),
    ) -> Result<usize, IoError> {
        let i = self.next;
        if self.status(i).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            if timeout.is_zero() {
                return Ok(0);
            }
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    return Ok(0);
                }
                return Err(IoError::Socket {
                    op: "wait on capture ring",
                    source: e,
                });
            }
            if self.status(i).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return Ok(0);
            }
        }
        // SAFETY: block i is inside the mapping; the kernel handed it over
        // (TP_STATUS_USER, read with Acquire above) and writes nothing in it
        // until we hand it back below, after the last use of this slice.
        let block = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(i * BLOCK_SIZE), BLOCK_SIZE)
        };
        let defrag = &mut self.defrag;
        let n = frames(block, |fr| {
            let direction = if fr.pkttype == PACKET_OUTGOING {
                Direction::Outgoing
            } else {
                Direction::Incoming
            };
            let whole;
            let data = match defrag.of(direction).push(fr.data, fr.timestamp.0) {
                Outcome::Whole => fr.data,
                Outcome::Complete(d) => {
                    whole = d;
                    &whole[..]
                }
                Outcome::Held | Outcome::Dropped(_) => return,
            };
            f(CapturedRef {
                data,
                timestamp: fr.timestamp,
                direction,
                checksum_offloaded: fr.status & TP_STATUS_CSUMNOTREADY != 0,
            });
        });
        self.status(i).store(0, Ordering::Release); // TP_STATUS_KERNEL
        self.next = (i + 1) % self.blocks;
        Ok(n)
    }
}

impl Drop for RingCapture {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; nothing borrows
        // it any more (every borrow ends with the `recv_batch` that made it).
        unsafe {
            libc::munmap(
                self.map.as_ptr() as *mut libc::c_void,
                BLOCK_SIZE * self.blocks,
            );
        }
    }
}

/// One packet of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame<'a> {
    data: &'a [u8],
    timestamp: Timestamp,
    /// tpacket3_hdr.tp_status.
    status: u32,
    /// sockaddr_ll.sll_pkttype.
    pkttype: u8,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

/// tpacket3_hdr, TPACKET_ALIGN'ed: the sockaddr_ll follows it.
const HDR3_LEN: usize = 48;
/// Offset of sll_pkttype in sockaddr_ll.
const SLL_PKTTYPE: usize = 10;

/// Walks the packets of a block the kernel handed over (tpacket_block_desc,
/// then tpacket3_hdr + sockaddr_ll + data per packet, chained by
/// tp_next_offset) and hands each to `f`. Every offset is checked: a header
/// or a packet that does not fit in the block ends the walk. Returns how many
/// packets were handed over.
fn frames<'a>(block: &'a [u8], mut f: impl FnMut(Frame<'a>)) -> usize {
    let (Some(num), Some(first)) = (u32_at(block, 12), u32_at(block, 16)) else {
        return 0;
    };
    let mut at = first as usize;
    let mut n = 0;
    for k in 0..num {
        let Some(fr) = frame_at(block, at) else {
            break;
        };
        f(fr);
        n += 1;
        let next = u32_at(block, at).unwrap_or(0) as usize;
        if next == 0 || k + 1 == num {
            break;
        }
        at = match at.checked_add(next) {
            Some(a) => a,
            None => break,
        };
    }
    n
}

fn frame_at(block: &[u8], at: usize) -> Option<Frame<'_>> {
    let sec = u32_at(block, at.checked_add(4)?)?;
    let nsec = u32_at(block, at + 8)?;
    let snaplen = u32_at(block, at + 12)? as usize;
    let status = u32_at(block, at + 20)?;
    let mac = u16_at(block, at + 24)? as usize;
    let pkttype = *block.get(at.checked_add(HDR3_LEN + SLL_PKTTYPE)?)?;
    let start = at.checked_add(mac)?;
    let data = block.get(start..start.checked_add(snaplen)?)?;
    Some(Frame {
        data,
        timestamp: Timestamp(sec as u64 * 1_000_000_000 + nsec as u64),
        status,
        pkttype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel lays it out, with packets (data, pkttype, status).
    fn block(packets: &[(&[u8], u8, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        };
        put32(&mut b, 8, TP_STATUS_USER);
        put32(&mut b, 12, packets.len() as u32);
        put32(&mut b, 16, 48);
        let mut at = 48;
        for (i, (data, pkttype, status)) in packets.iter().enumerate() {
            let mac = 80; // TPACKET_ALIGN(48 + 20) + 16 as the kernel does for DGRAM
            let len = (mac + data.len()).next_multiple_of(16);
            let last = i + 1 == packets.len();
            put32(&mut b, at, if last { 0 } else { len as u32 });
            put32(&mut b, at + 4, 1_700_000_000 + i as u32);
            put32(&mut b, at + 8, 123_456_789);
            put32(&mut b, at + 12, data.len() as u32);
            put32(&mut b, at + 16, data.len() as u32);
            put32(&mut b, at + 20, *status);
            b[at + 24..at + 26].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + HDR3_LEN + SLL_PKTTYPE] = *pkttype;
            b[at + mac..at + mac + data.len()].copy_from_slice(data);
            at += len;
        }
        b
    }

    #[test]
    fn packets_of_a_block_in_order_with_stamps() {
        let b = block(&[(b"first", 0, 0), (b"second!", 4, TP_STATUS_CSUMNOTREADY)]);
        let mut got = Vec::new();
        assert_eq!(frames(&b, |f| got.push(f)), 2);
        assert_eq!(got[0].data, b"first");
        assert_eq!(got[0].timestamp, Timestamp(1_700_000_000_123_456_789));
        assert_eq!((got[0].pkttype, got[0].status), (0, 0));
        assert_eq!(got[1].data, b"second!");
        assert_eq!(got[1].timestamp, Timestamp(1_700_000_001_123_456_789));
        assert_eq!(got[1].pkttype, PACKET_OUTGOING);
        assert_eq!(got[1].status, TP_STATUS_CSUMNOTREADY);
    }

    #[test]
    fn offsets_outside_the_block_end_the_walk() {
        let mut b = block(&[(b"first", 0, 0), (b"second", 0, 0)]);
        // the second packet claims more data than the block holds
        let second = 48 + (80usize + 5).next_multiple_of(16);
        b[second + 12..second + 16].copy_from_slice(&5000u32.to_ne_bytes());
        let mut got = Vec::new();
        assert_eq!(frames(&b, |f| got.push(f.data)), 1);
        assert_eq!(got, [b"first"]);
        // a first packet past the end, a count larger than the chain, a block cut short
        let mut c = block(&[(b"x", 0, 0)]);
        c[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(frames(&c, |_| {}), 0);
        let mut d = block(&[(b"x", 0, 0)]);
        d[12..16].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(frames(&d, |_| {}), 1);
        assert_eq!(frames(&b[..10], |_| {}), 0);
        for cut in 0..b.len() {
            frames(&b[..cut], |_| {});
        }
    }
}
