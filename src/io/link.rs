//! Sending at the link layer (AF_PACKET, SOCK_DGRAM: the kernel adds the
//! Ethernet header for the address we give): ARP requests, Neighbor
//! Solicitations, and the SYNs to on-link hosts whose Ethernet address
//! discovery learned — so the kernel's neighbour table is neither needed nor
//! touched. A full device queue (EAGAIN, ENOBUFS) is back-pressure: waited
//! out and counted, never an error.

use super::IoError;
use crate::wire::MacAddr;
use socket2::{Domain, Protocol, Socket, Type};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Longest a single packet may be held back by a full queue before it is given up.
const MAX_STALL: Duration = Duration::from_secs(2);

/// What an interface can do at the link layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Its Ethernet address, when it is an Ethernet-like device that resolves
    /// neighbours (ARP/ND); None for loopback, tunnels, NOARP devices.
    pub mac: Option<MacAddr>,
}

impl LinkInfo {
    /// Reads /sys/class/net/NAME: type 1 (ARPHRD_ETHER), IFF_NOARP clear.
    pub fn of(ifindex: u32) -> Result<LinkInfo, IoError> {
        let name = nix::net::if_::if_indextoname(ifindex)
            .map_err(|e| IoError::Interface {
                name: format!("#{ifindex}"),
                why: e.desc().to_string(),
            })?
            .to_string_lossy()
            .into_owned();
        let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}")).ok();
        let ether = read("type").is_some_and(|t| t.trim() == "1");
        let noarp = read("flags")
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .is_none_or(|f| f & libc::IFF_NOARP as u32 != 0);
        let mac = read("address")
            .and_then(|a| MacAddr::parse(&a))
            .filter(|m| ether && !noarp && m.is_unicast());
        Ok(LinkInfo { name, ifindex, mac })
    }
}

/// Interfaces that are ports of a bridge or slaves of a bond (they have a
/// master): what arrives there is seen again on the master.
pub fn enslaved_interfaces() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .flatten()
        .filter(|e| e.path().join("master").exists())
        .filter_map(|e| {
            std::fs::read_to_string(e.path().join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    out.sort_unstable();
    out
}

/// What one batch of sends met.
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Packets the kernel refused (skipped).
    pub refused: usize,
    /// The first refusal's error; None if none was refused.
    pub first_error: Option<IoError>,
    /// Times a full queue made us wait (EAGAIN / ENOBUFS).
    pub stalls: u64,
}

/// Is this send error a full queue (back-pressure), not a refusal?
pub fn is_backpressure(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Waits out back-pressure: sleeps a little longer after each stall in a row.
pub struct Backoff {
    since: Option<Instant>,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            since: None,
            delay: Duration::from_micros(20),
        }
    }
}

impl Backoff {
    /// One more stall: sleeps, and says whether the packet is still worth waiting for.
    pub fn stall(&mut self) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > MAX_STALL {
            self.reset();
            return false;
        }
        std::thread::sleep(self.delay);
        self.delay = (self.delay * 2).min(Duration::from_millis(5));
        true
    }
    /// A send went through: the next stall starts from the shortest wait.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// An AF_PACKET socket that sends on one interface.
pub struct LinkSender {
    sock: Socket,
    /// The interface it sends on.
    pub info: LinkInfo,
}

fn sockaddr_ll(ifindex: u32, proto: u16, mac: MacAddr) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac.0);
    sll
}

impl LinkSender {
    /// Opens a send-only packet socket for `info`'s interface.
    pub fn open(info: LinkInfo) -> Result<LinkSender, IoError> {
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        // protocol 0: this socket receives nothing
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))
            .map_err(e("open link-layer socket"))?;
        let _ = sock.set_recv_buffer_size(0);
        sock.set_nonblocking(true)
            .map_err(e("set link-layer socket non-blocking"))?;
        Ok(LinkSender { sock, info })
    }

    /// Sends each payload (network header first) to its Ethernet address, as
    /// `proto` (an EtherType), with one sendmmsg per run of packets. `addrs[i]`
    /// names the host each packet is for, for error messages.
    pub fn send_batch(
        &self,
        proto: u16,
        packets: &[(MacAddr, &[u8])],
        hosts: &[std::net::IpAddr],
    ) -> SendOutcome {
        let addrs: Vec<libc::sockaddr_ll> = packets
            .iter()
            .map(|(m, _)| sockaddr_ll(self.info.ifindex, proto, *m))
            .collect();
        let named = addrs.iter().zip(packets).map(|(a, (_, b))| {
            (
                a as *const libc::sockaddr_ll as *const libc::c_void,
                size_of::<libc::sockaddr_ll>() as u32,
                *b,
            )
        });
        let fd = self.sock.as_raw_fd();
        super::mmsg::with_headers(named, |msgs| {
            send_all(
                msgs,
                |rest| {
                    // SAFETY: `rest` is a valid slice of initialised mmsghdr (with_headers).
                    unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) }
                },
                |i| hosts.get(i).copied(),
            )
        })
    }
}

/// Drives sendmmsg over `msgs` until each was sent or refused, waiting out
/// back-pressure. Shared by the link-layer and the raw IP sender.
pub(crate) fn send_all(
    msgs: &mut [libc::mmsghdr],
    mut sendmmsg: impl FnMut(&mut [libc::mmsghdr]) -> libc::c_int,
    host: impl Fn(usize) -> Option<std::net::IpAddr>,
) -> SendOutcome {
    let mut out = SendOutcome::default();
    let mut backoff = Backoff::default();
    let mut done = 0;
    while done < msgs.len() {
        let n = sendmmsg(&mut msgs[done..]);
        if n > 0 {
            done += n as usize;
            backoff.reset();
            continue;
        }
        let err = std::io::Error::last_os_error();
        if is_backpressure(&err) {
            out.stalls += 1;
            if backoff.stall() {
                continue;
            }
        }
        out.refused += 1;
        if out.first_error.is_none() {
            out.first_error = host(done).map(|addr| IoError::Send { addr, source: err });
        }
        done += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_errno(e: i32) {
        // SAFETY: errno is this thread's own variable.
        unsafe { *libc::__errno_location() = e }
    }

    /// A fake sendmmsg: takes the next scripted answer (n sent, or -errno).
    fn run(script: &[i32], packets: usize) -> (SendOutcome, Vec<usize>) {
        // SAFETY: zeroed mmsghdr is valid; the fake never reads them.
        let mut msgs: Vec<libc::mmsghdr> = (0..packets)
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut calls = Vec::new();
        let mut i = 0;
        let out = send_all(
            &mut msgs,
            |rest| {
                calls.push(rest.len());
                let r = script.get(i).copied().unwrap_or(rest.len() as i32);
                i += 1;
                if r < 0 {
                    set_errno(-r);
                    -1
                } else {
                    r
                }
            },
            |_| Some("198.18.200.9".parse().unwrap()),
        );
        (out, calls)
    }

    #[test]
    fn a_full_queue_is_waited_out_and_counted() {
        let (o, calls) = run(&[2, -libc::EAGAIN, -libc::ENOBUFS, 3], 5);
        assert_eq!((o.refused, o.stalls), (0, 2));
        assert!(o.first_error.is_none());
        assert_eq!(calls, [5, 3, 3, 3]);
    }

    #[test]
    fn a_refused_packet_is_skipped_not_fatal() {
        let (o, calls) = run(&[1, -libc::EACCES, -libc::EPERM], 4);
        assert_eq!((o.refused, o.stalls), (2, 0));
        assert_eq!(calls, [4, 3, 2, 1]);
        let e = o.first_error.unwrap();
        assert!(!e.is_permission(), "{e}");
        assert!(e.to_string().starts_with("send to 198.18.200.9"), "{e}");
    }
}
