//! Which source address and interface the kernel would use for a destination,
//! and source ports that no local socket can collide with.

use super::IoError;
use socket2::{Domain, Socket, Type};
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The kernel's choice of path to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination looked up.
    pub dst: IpAddr,
    /// The source address the kernel picks for it.
    pub src: IpAddr,
    /// Interface holding `src` (where replies arrive), with its index and MTU.
    pub interface: String,
    /// Its interface index.
    pub ifindex: u32,
    /// Its MTU, in bytes.
    pub mtu: u32,
    /// The user named the interface (`-I`).
    pub pinned: bool,
}

impl Route {
    /// Asks the routing table (by connecting a UDP socket, which sends nothing),
    /// optionally restricted to one interface.
    pub fn lookup(dst: IpAddr, interface: Option<&str>) -> Result<Route, IoError> {
        let pinned = interface.is_some();
        let re = |source| IoError::Route { addr: dst, source };
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::DGRAM, None).map_err(re)?;
        if let Some(name) = interface {
            sock.bind_device(Some(name.as_bytes()))
                .map_err(|e| IoError::Interface {
                    name: name.to_string(),
                    why: e.to_string(),
                })?;
        }
        sock.connect(&SocketAddr::new(dst, 9).into()).map_err(re)?;
        let udp: UdpSocket = sock.into();
        let src = udp.local_addr().map_err(re)?.ip();
        let interface = match interface {
            Some(n) => n.to_string(),
            None => interface_of(src).ok_or_else(|| IoError::Route {
                addr: dst,
                source: std::io::Error::other(format!("no interface holds source address {src}")),
            })?,
        };
        let ifindex =
            nix::net::if_::if_nametoindex(interface.as_str()).map_err(|e| IoError::Interface {
                name: interface.clone(),
                why: e.desc().to_string(),
            })?;
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500);
        Ok(Route {
            dst,
            src,
            interface,
            ifindex,
            mtu,
            pinned,
        })
    }

    /// Where to capture: the named interface, or every interface (0), since
    /// replies may come back on another interface than the route's.
    pub fn capture_ifindex(&self) -> u32 {
        if self.pinned { self.ifindex } else { 0 }
    }

    /// The MSS a local stack would announce on this path.
    pub fn mss(&self) -> u16 {
        let overhead = if self.dst.is_ipv4() { 40 } else { 60 };
        self.mtu.saturating_sub(overhead).clamp(536, 65495) as u16
    }
}

impl std::fmt::Display for Route {
    /// `source 198.18.0.1 via veth0 (ifindex 2, mtu 1500)`, for `-v` logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "source {} via {} (ifindex {}, mtu {})",
            self.src, self.interface, self.ifindex, self.mtu
        )
    }
}

/// The interface that holds `addr`.
fn interface_of(addr: IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let Some(a) = ifa.address else { continue };
        let found = match addr {
            IpAddr::V4(v4) => a.as_sockaddr_in().map(|s| s.ip() == v4).unwrap_or(false),
            IpAddr::V6(v6) => a.as_sockaddr_in6().map(|s| s.ip() == v6).unwrap_or(false),
        };
        if found {
            return Some(ifa.interface_name);
        }
    }
    None
}

/// A TCP port bound (not listening) on our source address for as long as this
/// lives: the kernel will hand it to no other socket, so our raw flows never
/// collide with local connections. Replies to it still get the kernel's RST.
pub struct PortReservation {
    _sock: Socket,
    /// The port reserved.
    pub port: u16,
}

impl PortReservation {
    /// Reserves TCP `port`, or a free ephemeral port when `port` is 0.
    pub fn reserve(src: IpAddr, port: u16) -> Result<PortReservation, IoError> {
        Self::bind(src, port, Type::STREAM)
    }

    /// How many ephemeral ports one run may hold at once: half the kernel's
    /// ephemeral range (the rest stays for other programs' connections), and no
    /// more than the open-file limit allows (one socket each, 64 kept for the
    /// rest). The soft open-file limit is first raised to the hard one.
    pub fn capacity() -> usize {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace().map(|w| w.parse::<usize>().ok());
                let (lo, hi) = (it.next()??, it.next()??);
                Some(hi.saturating_sub(lo) + 1)
            })
            .unwrap_or(28232);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: get/setrlimit read or write one live rlimit struct.
        let files = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                if lim.rlim_cur < lim.rlim_max {
                    let raised = libc::rlimit {
                        rlim_cur: lim.rlim_max,
                        rlim_max: lim.rlim_max,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                        lim = raised;
                    }
                }
                lim.rlim_cur as usize
            } else {
                1024
            }
        };
        (range / 2).min(files.saturating_sub(64)).max(1)
    }

    /// Reserves a UDP `port` (a free one when 0) by binding a UDP socket to it,
    /// so no local socket receives the replies to our raw queries and the kernel
    /// answers them with no ICMP port unreachable.
    pub fn reserve_udp(src: IpAddr, port: u16) -> Result<PortReservation, IoError> {
        Self::bind(src, port, Type::DGRAM)
    }

    /// Reserves `n` consecutive ports of `src` (TCP, or UDP with `udp`), so
    /// one BPF range covers them: from a random base in `lo..=hi - n`,
    /// `tries` bases at most. The base and the reservations; None: no free
    /// block was found (or `lo..hi` is shorter than `n`).
    pub fn block(
        src: IpAddr,
        n: u16,
        udp: bool,
        (lo, hi): (u16, u16),
        tries: usize,
    ) -> Option<(u16, Vec<PortReservation>)> {
        if hi < lo || hi - lo < n {
            return None;
        }
        let span = u32::from(hi - lo) + 1 - u32::from(n);
        for _ in 0..tries {
            let base = lo + (rand::random::<u32>() % span) as u16;
            let mut held = Vec::with_capacity(n as usize);
            for p in base..base + n {
                let r = if udp {
                    Self::reserve_udp(src, p)
                } else {
                    Self::reserve(src, p)
                };
                match r {
                    Ok(r) => held.push(r),
                    Err(_) => break,
                }
            }
            if held.len() == n as usize {
                return Some((base, held));
            }
        }
        None
    }

    fn bind(src: IpAddr, port: u16, kind: Type) -> Result<PortReservation, IoError> {
        let pe = |source| IoError::Port {
            addr: src,
            port,
            source,
        };
        let domain = if src.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, kind, None).map_err(pe)?;
        if kind == Type::DGRAM {
            // never read: datagrams queued here are dropped, not answered
            let _ = sock.set_recv_buffer_size(0);
        }
        sock.bind(&SocketAddr::new(src, port).into()).map_err(pe)?;
        let bound = sock
            .local_addr()
            .map_err(pe)?
            .as_socket()
            .map(|a| a.port())
            .unwrap_or(port);
        Ok(PortReservation {
            _sock: sock,
            port: bound,
        })
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn a_block_is_consecutive_and_inside_its_range() {
        let lo_addr: IpAddr = "127.0.0.1".parse().unwrap();
        for udp in [false, true] {
            let (base, held) = PortReservation::block(lo_addr, 4, udp, (40000, 50000), 20)
                .expect("a free block of 4 loopback ports");
            assert!((40000..=49996).contains(&base));
            let ports: Vec<u16> = held.iter().map(|r| r.port).collect();
            assert_eq!(ports, (base..base + 4).collect::<Vec<_>>());
        }
        assert!(PortReservation::block(lo_addr, 4, false, (40000, 40002), 5).is_none());
        assert!(PortReservation::block(lo_addr, 4, false, (40002, 40000), 5).is_none());
    }
}
