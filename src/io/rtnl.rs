//! The routing table over rtnetlink, without the `ip` tool: one RTM_GETROUTE
//! per address gives the kernel's own decision (route type, interface, source
//! address, gateway), and a dump of every table gives the prefixes where that
//! decision can change, so a big target set is split at those boundaries and
//! looked up once per piece instead of once per address.
//!
//! Message building and parsing are pure (and tested on bytes); the socket is
//! [`Rtnl`].

use super::IoError;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour state of an entry an administrator set (`ip neigh ... nud permanent`).
pub const NUD_PERMANENT: u16 = 0x80;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const HDR: usize = 16;
const RTMSG: usize = 12;

/// Route types (`rtm_type`) that matter to a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteType {
    /// A gateway or on-link route (RTN_UNICAST).
    Unicast,
    /// One of this host's own addresses.
    Local,
    /// A broadcast address (RTN_BROADCAST).
    Broadcast,
    /// A multicast route (RTN_MULTICAST).
    Multicast,
    /// Unreachable, prohibit, blackhole, throw, anything else.
    Other(u8),
}

impl RouteType {
    fn from_raw(t: u8) -> RouteType {
        match t {
            1 => RouteType::Unicast,
            2 => RouteType::Local,
            3 => RouteType::Broadcast,
            5 => RouteType::Multicast,
            n => RouteType::Other(n),
        }
    }
}

/// One route message: a dumped route, or the answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMsg {
    /// `rtm_type`.
    pub kind: RouteType,
    /// Destination prefix (the looked-up address itself in an answer).
    pub dst: IpAddr,
    /// Prefix length in bits (`rtm_dst_len`).
    pub dst_len: u8,
    /// Routing table id (254 main, 255 local).
    pub table: u32,
    /// `rtm_protocol`: 2 = made by the kernel for an interface address.
    pub protocol: u8,
    /// `rtm_scope`: 253 = link (on-link), 254 = host.
    pub scope: u8,
    /// Output interface index (RTA_OIF); None for routes without one.
    pub oif: Option<u32>,
    /// Next hop (RTA_GATEWAY); None: on-link.
    pub gateway: Option<IpAddr>,
    /// Preferred source address (RTA_PREFSRC); None: the kernel picks.
    pub prefsrc: Option<IpAddr>,
}

impl RouteMsg {
    /// The prefix as an inclusive interval of addresses (as integers).
    pub fn interval(&self) -> (u128, u128) {
        let (bits, x) = match self.dst {
            IpAddr::V4(a) => (32u32, u32::from(a) as u128),
            IpAddr::V6(a) => (128, u128::from(a)),
        };
        let host_bits = bits.saturating_sub(self.dst_len as u32);
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        (x & !mask, (x & !mask) | mask)
    }
}

/// One neighbour table entry (ARP / ND cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighMsg {
    /// Interface index.
    pub ifindex: u32,
    /// NUD_* bits.
    pub state: u16,
    /// The neighbour's address.
    pub dst: IpAddr,
    /// Its link-layer address; None while unresolved or failed.
    pub lladdr: Option<crate::wire::MacAddr>,
}

/// One message read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A route (RTM_NEWROUTE).
    Route(RouteMsg),
    /// A neighbour entry (RTM_NEWNEIGH).
    Neigh(NeighMsg),
    /// The end of a dump (NLMSG_DONE).
    Done,
    /// NLMSG_ERROR with a negative errno (0 is an ACK).
    Error(i32),
}

fn family(v6: bool) -> u8 {
    if v6 {
        libc::AF_INET6 as u8
    } else {
        libc::AF_INET as u8
    }
}

fn header(out: &mut Vec<u8>, flags: u16, seq: u32) {
    header_of(out, RTM_GETROUTE, flags, seq)
}

fn header_of(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    out.extend_from_slice(&0u32.to_ne_bytes()); // length, set at the end
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
}

fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let len = (out.len() as u32).to_ne_bytes();
    out[..4].copy_from_slice(&len);
    out
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// RTM_GETROUTE for one address (optionally leaving through interface `oif`).
pub fn encode_get(seq: u32, dst: IpAddr, oif: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    header(&mut out, NLM_F_REQUEST, seq);
    let bits = if dst.is_ipv4() { 32 } else { 128 };
    out.extend_from_slice(&[family(dst.is_ipv6()), bits, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    attr(&mut out, RTA_DST, &octets(dst));
    if let Some(i) = oif {
        attr(&mut out, RTA_OIF, &i.to_ne_bytes());
    }
    finish(out)
}

/// A dump of every route of one family, in every table.
pub fn encode_dump(seq: u32, v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    header(&mut out, NLM_F_REQUEST | NLM_F_DUMP, seq);
    out.extend_from_slice(&[family(v6), 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_ne_bytes());
    finish(out)
}

/// A dump of the neighbour table of one family.
pub fn encode_neigh_dump(seq: u32, v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    header_of(&mut out, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq);
    out.extend_from_slice(&[family(v6), 0, 0, 0]);
    out.extend_from_slice(&[0u8; 8]);
    finish(out)
}

fn parse_neigh(body: &[u8]) -> Option<NeighMsg> {
    let nd = body.get(..12)?;
    let v6 = match nd[0] as i32 {
        libc::AF_INET => false,
        libc::AF_INET6 => true,
        _ => return None,
    };
    let mut n = NeighMsg {
        ifindex: u32::from_ne_bytes([nd[4], nd[5], nd[6], nd[7]]),
        state: u16::from_ne_bytes([nd[8], nd[9]]),
        dst: if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        },
        lladdr: None,
    };
    let mut have_dst = false;
    let mut attrs = &body[12..];
    while let Some(a) = attrs.get(..4) {
        let len = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let kind = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        let data = attrs.get(4..len.max(4))?;
        match kind {
            NDA_DST => {
                n.dst = addr_of(v6, data)?;
                have_dst = true;
            }
            NDA_LLADDR if data.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(data);
                n.lladdr = Some(crate::wire::MacAddr(m));
            }
            _ => {}
        }
        attrs = attrs.get(((len + 3) & !3).max(4)..).unwrap_or(&[]);
    }
    have_dst.then_some(n)
}

fn addr_of(v6: bool, data: &[u8]) -> Option<IpAddr> {
    if v6 {
        let o: [u8; 16] = data.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(o)))
    } else {
        let o: [u8; 4] = data.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(o)))
    }
}

fn u32_of(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

/// Parses the route messages of one netlink read whose sequence number is
/// `seq` (others are skipped). Never panics; a malformed message ends the walk.
pub fn parse(buf: &[u8], seq: u32) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(h) = buf.get(off..off + HDR) {
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        let Some(body) = (len >= HDR)
            .then(|| buf.get(off + HDR..off + len))
            .flatten()
        else {
            break;
        };
        off += (len + 3) & !3;
        if mseq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => out.push(Reply::Done),
            NLMSG_ERROR => {
                if let Some(code) = body.get(..4) {
                    out.push(Reply::Error(i32::from_ne_bytes([
                        code[0], code[1], code[2], code[3],
                    ])));
                }
            }
            RTM_NEWROUTE => {
                if let Some(r) = parse_route(body) {
                    out.push(Reply::Route(r));
                }
            }
            RTM_NEWNEIGH => {
                if let Some(n) = parse_neigh(body) {
                    out.push(Reply::Neigh(n));
                }
            }
            _ => {}
        }
    }
    out
}

fn parse_route(body: &[u8]) -> Option<RouteMsg> {
    let rt = body.get(..RTMSG)?;
    let v6 = match rt[0] as i32 {
        libc::AF_INET => false,
        libc::AF_INET6 => true,
        _ => return None,
    };
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let mut r = RouteMsg {
        kind: RouteType::from_raw(rt[7]),
        dst: unspecified,
        dst_len: rt[1],
        table: rt[4] as u32,
        protocol: rt[5],
        scope: rt[6],
        oif: None,
        gateway: None,
        prefsrc: None,
    };
    if r.dst_len > if v6 { 128 } else { 32 } {
        return None;
    }
    let mut attrs = &body[RTMSG..];
    while let Some(a) = attrs.get(..4) {
        let len = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let kind = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        let data = attrs.get(4..len.max(4))?;
        match kind {
            RTA_DST => r.dst = addr_of(v6, data)?,
            RTA_OIF => r.oif = u32_of(data),
            RTA_GATEWAY => r.gateway = addr_of(v6, data),
            RTA_PREFSRC => r.prefsrc = addr_of(v6, data),
            RTA_TABLE => r.table = u32_of(data).unwrap_or(r.table),
            _ => {}
        }
        attrs = attrs.get(((len + 3) & !3).max(4)..).unwrap_or(&[]);
    }
    Some(r)
}

/// A route netlink socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens and binds a NETLINK_ROUTE socket.
    pub fn open() -> Result<Rtnl, IoError> {
        let e = |op: &'static str| move |source| IoError::Socket { op, source };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(e("open route netlink socket"))?;
        sock.bind_auto().map_err(e("bind route netlink socket"))?;
        socket2::SockRef::from(&sock)
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(e("set route netlink timeout"))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0u8; 1 << 16],
        })
    }

    fn exchange(&mut self, msg: &[u8], seq: u32, dump: bool) -> std::io::Result<Vec<Reply>> {
        self.sock.send(msg, 0)?;
        let mut routes = Vec::new();
        // bounded: a dump of even a full Internet table ends well within this
        for _ in 0..100_000 {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for r in parse(&self.buf[..n.min(self.buf.len())], seq) {
                match r {
                    Reply::Route(_) | Reply::Neigh(_) => {
                        routes.push(r);
                        if !dump {
                            return Ok(routes);
                        }
                    }
                    Reply::Done => return Ok(routes),
                    Reply::Error(0) => {}
                    Reply::Error(code) => {
                        return Err(std::io::Error::from_raw_os_error(-code));
                    }
                }
            }
        }
        Err(std::io::Error::other("route netlink answer never ended"))
    }

    /// The kernel's route to `dst` (through interface `oif` if given).
    pub fn get(&mut self, dst: IpAddr, oif: Option<u32>) -> Result<RouteMsg, IoError> {
        self.seq += 1;
        let seq = self.seq;
        let re = |source| IoError::Route { addr: dst, source };
        match self
            .exchange(&encode_get(seq, dst, oif), seq, false)
            .map_err(re)?
            .pop()
        {
            Some(Reply::Route(r)) => Ok(r),
            _ => Err(re(std::io::Error::other("the kernel answered no route"))),
        }
    }

    /// The neighbour table (ARP or ND cache) of one family.
    pub fn neighbours(&mut self, v6: bool) -> Result<Vec<NeighMsg>, IoError> {
        self.seq += 1;
        let seq = self.seq;
        let all = self
            .exchange(&encode_neigh_dump(seq, v6), seq, true)
            .map_err(|source| IoError::Socket {
                op: "dump neighbour table",
                source,
            })?;
        Ok(all
            .into_iter()
            .filter_map(|r| match r {
                Reply::Neigh(n) => Some(n),
                _ => None,
            })
            .collect())
    }

    /// Every route of one family in every table.
    pub fn dump(&mut self, v6: bool) -> Result<Vec<RouteMsg>, IoError> {
        self.seq += 1;
        let seq = self.seq;
        let all = self
            .exchange(&encode_dump(seq, v6), seq, true)
            .map_err(|source| IoError::Socket {
                op: "dump routing table",
                source,
            })?;
        Ok(all
            .into_iter()
            .filter_map(|r| match r {
                Reply::Route(m) => Some(m),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::Noise;

    /// An answer laid out as the kernel lays out its answer to `ip route get
    /// 198.18.200.7` in a namespace whose veth0 (ifindex 2) holds
    /// 198.18.200.1/24: unicast, main table, link scope (the live kernel's
    /// answers are checked in `the_kernel_answers_for_loopback`).
    fn answer_v4() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[2, 32, 0, 0, 254, 0, 0, 1]);
        b.extend_from_slice(&0x200u32.to_ne_bytes());
        attr(&mut b, RTA_TABLE, &254u32.to_ne_bytes());
        attr(&mut b, RTA_DST, &[198, 18, 200, 7]);
        attr(&mut b, RTA_OIF, &2u32.to_ne_bytes());
        attr(&mut b, RTA_PREFSRC, &[198, 18, 200, 1]);
        finish(b)
    }

    #[test]
    fn get_request_bytes() {
        let m = encode_get(9, "198.18.200.7".parse().unwrap(), Some(3));
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 44);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_GETROUTE);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST);
        assert_eq!(&m[16..20], &[2, 32, 0, 0]);
        assert_eq!(&m[28..36], &[8, 0, 1, 0, 198, 18, 200, 7]);
        let d = encode_dump(1, true);
        assert_eq!(d.len(), 28);
        assert_eq!(u16::from_ne_bytes([d[6], d[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(d[16], libc::AF_INET6 as u8);
    }

    #[test]
    fn answers_parse() {
        let mut two = answer_v4();
        let mut done = Vec::new();
        header(&mut done, 0, 7);
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        two.extend_from_slice(&finish(done));
        let got = parse(&two, 7);
        assert_eq!(got.len(), 2);
        let Reply::Route(r) = &got[0] else { panic!() };
        assert_eq!(r.kind, RouteType::Unicast);
        assert_eq!(r.dst, "198.18.200.7".parse::<IpAddr>().unwrap());
        assert_eq!((r.oif, r.gateway, r.table), (Some(2), None, 254));
        assert_eq!(r.prefsrc, Some("198.18.200.1".parse().unwrap()));
        assert_eq!(got[1], Reply::Done);
        // another request's answers are skipped
        assert!(parse(&two, 8).is_empty());
    }

    #[test]
    fn neighbour_entries() {
        // a permanent entry 198.18.0.2 at 02:53:53:00:00:02 on ifindex 2
        let mut b = Vec::new();
        header_of(&mut b, RTM_NEWNEIGH, 2, 5);
        b.extend_from_slice(&[2, 0, 0, 0]);
        b.extend_from_slice(&2i32.to_ne_bytes());
        b.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
        b.extend_from_slice(&[0, 1]);
        attr(&mut b, NDA_DST, &[198, 18, 0, 2]);
        attr(&mut b, NDA_LLADDR, &[2, 0x53, 0x53, 0, 0, 2]);
        let got = parse(&finish(b), 5);
        assert_eq!(
            got,
            [Reply::Neigh(NeighMsg {
                ifindex: 2,
                state: NUD_PERMANENT,
                dst: "198.18.0.2".parse().unwrap(),
                lladdr: Some(crate::wire::MacAddr([2, 0x53, 0x53, 0, 0, 2])),
            })]
        );
        let d = encode_neigh_dump(3, false);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_GETNEIGH);
        assert_eq!(d.len(), 28);
    }

    #[test]
    fn intervals() {
        let mut r = match parse(&answer_v4(), 7).pop() {
            Some(Reply::Route(r)) => r,
            _ => panic!(),
        };
        r.dst_len = 24;
        assert_eq!(r.interval(), (0xc612c800, 0xc612c8ff));
        r.dst_len = 0;
        assert_eq!(r.interval(), (0, 0xffff_ffff));
        r.dst = "2001:db8::".parse().unwrap();
        r.dst_len = 0;
        assert_eq!(r.interval(), (0, u128::MAX));
    }

    /// The running kernel's own answers (a lookup sends no packet): the route
    /// to 127.0.0.1 is `local` via lo from 127.0.0.1, and 127.0.0.0/8 is in
    /// the dump (from the local table, which /proc/net/route does not show).
    #[test]
    fn the_kernel_answers_for_loopback() {
        let mut nl = Rtnl::open().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let r = nl.get(lo, None).unwrap();
        assert_eq!((r.kind, r.dst, r.prefsrc), (RouteType::Local, lo, Some(lo)));
        assert_eq!(r.oif, Some(nix::net::if_::if_nametoindex("lo").unwrap()));
        let table = nl.dump(false).unwrap();
        assert!(
            table.iter().any(|m| m.kind == RouteType::Local
                && m.dst_len == 8
                && m.interval().0 == 0x7f00_0000),
            "{table:?}"
        );
        let v6 = nl.get("::1".parse().unwrap(), None).unwrap();
        assert_eq!(v6.kind, RouteType::Local);
        assert!(nl.dump(true).unwrap().iter().all(|m| m.dst.is_ipv6()));
        let _ = nl.neighbours(false).unwrap();
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(17);
        let seed = answer_v4();
        for _ in 0..50_000 {
            let _ = parse(&n.mutate(&seed), 7);
            let _ = parse(&n.bytes(80), 7);
        }
    }
}
