//! A routed lab: client — router 1 — … — router N — server, each a network
//! namespace, joined by veth pairs, the routers forwarding IPv4 and IPv6 with
//! real kernels (so they send real ICMP time-exceeded, without rate limit).
//! One router (the policy router) applies an nftables policy to forwarded
//! traffic: ports dropped, ports rejected (admin-prohibited), the MSS of SYNs
//! rewritten, DSCP / ECN rewritten, TCP options stripped. Used by the tests of
//! `synscope path`. Everything is removed when the [`Lab`] drops.
//!
//! Addressing (link 0 joins the client and router 1, link N router N and the
//! server): link `i` is 198.18.(i+1).0/24 and 2001:db8:(i+1)::/64, its client
//! side `.1` / `::1`, its server side `.2` / `::2`. Router `k` answers from
//! its client-side address [`router_v4`]`(k)`. Link addresses stay inside
//! 198.18.0.0/15 and 2001:db8::/32.
//!
//! A router quotes a SYN in its time-exceeded as the SYN *arrived* there:
//! Linux checks the TTL before the forward hook, so a rewrite by router `k`'s
//! forward chain is first visible in router `k + 1`'s quote. The standard
//! spec has three routers with the policy on router 2, so router 3 shows it.

use super::{
    COUNTER, Lab, LabError, in_netns, mark_owned, remove_stale_namespaces, run, spawn_reaper,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::Ordering;

/// The MSS the policy router writes into forwarded SYNs of [`RoutedSpec::mss_clamp`] ports.
pub const CLAMPED_MSS: u16 = 1200;
/// The most routers a routed lab has.
pub const MAX_ROUTERS: usize = 8;

/// The routed topology and what its policy router does, by server port.
/// Every server port not listed in `open` is closed (kernel RST).
#[derive(Debug, Clone, Default)]
pub struct RoutedSpec {
    /// Routers between client and server (1 to [`MAX_ROUTERS`]).
    pub routers: usize,
    /// Which router (1-based) applies the policy below to forwarded traffic.
    pub policy_router: usize,
    /// Ports with a kernel listener on the server.
    pub open: Vec<u16>,
    /// Forwarded SYNs to these ports are dropped silently.
    pub dropped: Vec<u16>,
    /// Rejected with ICMP administratively prohibited (3/13, ICMPv6 1/1).
    pub admin_prohibited: Vec<u16>,
    /// Forwarded SYNs get MSS [`CLAMPED_MSS`] (`tcp option maxseg size set`).
    pub mss_clamp: Vec<u16>,
    /// DSCP rewritten to CS1, ECN field to not-ECT, and ECE/CWR cleared on SYNs.
    pub dscp_ecn: Vec<u16>,
    /// SACK-permitted, timestamps and window scale replaced by NOPs.
    pub strip_options: Vec<u16>,
    /// Answered by a SYN proxy (nftables `synproxy`) on the last router, in
    /// front of the server: the router answers the SYN itself, with the
    /// server's address, and opens the connection to the server only once
    /// the client completes the handshake. IPv4 only: on this kernel (6.18)
    /// the IPv6 `synproxy` swallowed SYNs without answering, so IPv6 SYNs to
    /// these ports go to the server as to any other.
    pub syn_proxy: Vec<u16>,
    /// (A, B): the destination port of forwarded segments to A is rewritten
    /// to B, and the source port of the server's answers from B back to A,
    /// statelessly (`tcp dport set`): a port-forwarding NAT that leaves ICMP
    /// quotes alone. (A Linux conntrack NAT, `dnat`, translates the quote in
    /// the ICMP errors it forwards back: its rewrite never shows upstream.)
    pub port_rewrite: Vec<(u16, u16)>,
    /// The IPv4 ID of forwarded SYNs is set to [`REWRITTEN_IP_ID`].
    pub ip_id_rewrite: Vec<u16>,
    /// The TTL / hop limit of forwarded SYNs is set to 64 after the policy
    /// router's own decrement: hops after it never see them expire, and the
    /// destination answers SYNs sent with a TTL too small to reach it.
    pub ttl_raise: Vec<u16>,
    /// (A, B): a Linux NAT (conntrack `dnat`) on the policy router sends
    /// connections to port A to the server's port B. It translates the ICMP
    /// errors about them back, quotes and source address both: the policy
    /// router and every hop after it answer time-exceeded from the server's
    /// address, and no quote shows the port change.
    pub dnat: Vec<(u16, u16)>,
    /// A slow link with a short queue on router 1: HTB at this many kbit/s
    /// with a 10-packet pfifo on both its interfaces (what the client sends
    /// and what comes back); what overflows is dropped. None: full speed.
    pub bottleneck_kbit: Option<u32>,
}

/// The IPv4 ID the policy router writes into SYNs of [`RoutedSpec::ip_id_rewrite`] ports.
pub const REWRITTEN_IP_ID: u16 = 4242;

impl RoutedSpec {
    /// The tests' map: 3 routers, the policy on router 2; 80 open and
    /// untouched, 8443 dropped, 111 rejected, 8080 MSS-clamped, 8081 DSCP/ECN
    /// rewritten, 8082 options stripped (all three open); 8090 open behind a
    /// SYN proxy on router 3; 8083 forwarded to the server's 8084 (stateless
    /// port rewrite), 8085's IPv4 ID and 8086's TTL rewritten (all open),
    /// 8087 sent to 8084 by a conntrack NAT.
    pub fn standard() -> RoutedSpec {
        RoutedSpec {
            routers: 3,
            policy_router: 2,
            open: vec![80, 8080, 8081, 8082, 8084, 8085, 8086, 8090],
            dropped: vec![8443],
            admin_prohibited: vec![111],
            mss_clamp: vec![8080],
            dscp_ecn: vec![8081],
            strip_options: vec![8082],
            syn_proxy: vec![8090],
            port_rewrite: vec![(8083, 8084)],
            ip_id_rewrite: vec![8085],
            ttl_raise: vec![8086],
            dnat: vec![(8087, 8084)],
            bottleneck_kbit: None,
        }
    }
}

/// The IPv4 address of side `side` (1 client side, 2 server side) of link `link`.
pub fn link_v4(link: usize, side: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (link + 1) as u8, side)
}

/// The IPv6 address of side `side` of link `link`.
pub fn link_v6(link: usize, side: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (link + 1) as u16, 0, 0, 0, 0, side as u16)
}

/// Router `k`'s (1-based) client-side IPv4 address: where its ICMP comes from.
pub fn router_v4(k: usize) -> Ipv4Addr {
    link_v4(k - 1, 2)
}

/// Router `k`'s client-side IPv6 address.
pub fn router_v6(k: usize) -> Ipv6Addr {
    link_v6(k - 1, 2)
}

/// The client's addresses.
pub fn client_v4() -> Ipv4Addr {
    link_v4(0, 1)
}
/// The client's IPv6 address.
pub fn client_v6() -> Ipv6Addr {
    link_v6(0, 1)
}

/// The server's addresses behind `routers` routers.
pub fn server_v4(routers: usize) -> Ipv4Addr {
    link_v4(routers, 2)
}
/// The server's IPv6 address behind `routers` routers.
pub fn server_v6(routers: usize) -> Ipv6Addr {
    link_v6(routers, 2)
}

fn mac(link: usize, side: u8) -> String {
    format!("02:53:53:01:{:02x}:{side:02x}", link + 1)
}

/// The policy router's nftables ruleset.
fn policy_ruleset(spec: &RoutedSpec) -> String {
    let set = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let mut rules = String::new();
    let mut add = |ports: &[u16], stmts: &[&str]| {
        if ports.is_empty() {
            return;
        }
        for s in stmts {
            rules += &format!("    tcp dport {{ {} }} {s}\n", set(ports));
        }
    };
    add(&spec.dropped, &["counter drop"]);
    add(
        &spec.admin_prohibited,
        &["counter reject with icmpx type admin-prohibited"],
    );
    let syn = "tcp flags & (syn | ack) == syn";
    add(
        &spec.mss_clamp,
        &[&format!("{syn} tcp option maxseg size set {CLAMPED_MSS}")],
    );
    add(
        &spec.dscp_ecn,
        &[
            "ip dscp set cs1 ip ecn set not-ect",
            "ip6 dscp set cs1 ip6 ecn set not-ect",
            &format!("{syn} tcp flags set syn"),
        ],
    );
    add(
        &spec.strip_options,
        &[
            "reset tcp option sack-perm",
            "reset tcp option timestamp",
            "reset tcp option window",
        ],
    );
    add(
        &spec.ip_id_rewrite,
        &[&format!("{syn} ip id set {REWRITTEN_IP_ID}")],
    );
    add(
        &spec.ttl_raise,
        &[
            &format!("{syn} ip ttl set 64"),
            &format!("{syn} ip6 hoplimit set 64"),
        ],
    );
    for (a, b) in &spec.port_rewrite {
        rules +=
            &format!("    tcp dport {a} tcp dport set {b}\n    tcp sport {b} tcp sport set {a}\n");
    }
    let mut nat = String::new();
    for (a, b) in &spec.dnat {
        let (v4, v6) = (server_v4(spec.routers), server_v6(spec.routers));
        nat += &format!(
            "    meta nfproto ipv4 tcp dport {a} dnat ip to {v4}:{b}\n    meta nfproto ipv6 tcp dport {a} dnat ip6 to [{v6}]:{b}\n"
        );
    }
    format!(
        "table inet synscope_lab {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{rules}  }}\n  chain nat {{\n    type nat hook prerouting priority dstnat; policy accept;\n{nat}  }}\n}}\n"
    )
}

/// The SYN proxy's ruleset (on the router next to the server): SYNs to the
/// ports are not tracked, so they reach the `synproxy` statement as
/// untracked; the handshake's last ACK is invalid to conntrack
/// (`nf_conntrack_tcp_loose` 0) and goes to the proxy too.
fn synproxy_ruleset(ports: &[u16]) -> String {
    let set = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "table inet synscope_synproxy {{
  chain pre {{
    type filter hook prerouting priority raw; policy accept;
    meta nfproto ipv4 tcp dport {{ {set} }} tcp flags & (syn | ack) == syn notrack
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    meta nfproto ipv4 tcp dport {{ {set} }} ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    meta nfproto ipv4 tcp dport {{ {set} }} ct state invalid drop
  }}
}}
"
    )
}

impl Lab {
    /// Builds a routed lab (see the module documentation). `client_ns` and
    /// `server_ns` are the ends, `routers` the namespaces between them; the
    /// client's and the server's interfaces are both named [`super::VETH`].
    /// On failure everything made so far is removed.
    pub fn up_routed(spec: &RoutedSpec) -> Result<Lab, LabError> {
        let n = spec.routers;
        if !(1..=MAX_ROUTERS).contains(&n) || !(1..=n).contains(&spec.policy_router) {
            return Err(LabError(format!(
                "routed lab: {n} routers (1-{MAX_ROUTERS}), policy on router {} (1-{n})",
                spec.policy_router
            )));
        }
        remove_stale_namespaces();
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            client_ns: format!("synscope-{id}-cli"),
            server_ns: format!("synscope-{id}-srv"),
            routers: (1..=n).map(|k| format!("synscope-{id}-r{k}")).collect(),
            lan_ns: Vec::new(),
            router_ns: None,
            listeners: Vec::new(),
            created: Vec::new(),
            reaper: None,
        };
        // the chain of namespaces, client first
        let chain: Vec<String> = std::iter::once(lab.client_ns.clone())
            .chain(lab.routers.iter().cloned())
            .chain(std::iter::once(lab.server_ns.clone()))
            .collect();
        for ns in &chain {
            mark_owned(ns)?;
            lab.created.push(ns.clone());
            run(&["ip", "netns", "add", ns], None)?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"], None)?;
        }
        let names: Vec<&str> = chain.iter().map(String::as_str).collect();
        lab.reaper = spawn_reaper(&names);
        for link in 0..=n {
            let (a, b) = (&chain[link], &chain[link + 1]);
            let a_if = if link == 0 { super::VETH } else { "right" };
            let b_if = if link == n { super::VETH } else { "left" };
            let (ma, mb) = (mac(link, 1), mac(link, 2));
            run(
                &[
                    "ip", "link", "add", a_if, "netns", a, "address", &ma, "type", "veth", "peer",
                    "name", b_if, "netns", b, "address", &mb,
                ],
                None,
            )?;
            for (ns, ifname, side, peer_mac) in [(a, a_if, 1, &mb), (b, b_if, 2, &ma)] {
                let other = 3 - side;
                let v4 = format!("{}/24", link_v4(link, side));
                let v6 = format!("{}/64", link_v6(link, side));
                run(&["ip", "-n", ns, "addr", "add", &v4, "dev", ifname], None)?;
                run(
                    &[
                        "ip", "-n", ns, "-6", "addr", "add", &v6, "dev", ifname, "nodad",
                    ],
                    None,
                )?;
                run(&["ip", "-n", ns, "link", "set", ifname, "up"], None)?;
                // static neighbours: no ARP or ND in the measured path
                for peer in [
                    IpAddr::V4(link_v4(link, other)),
                    IpAddr::V6(link_v6(link, other)),
                ] {
                    run(
                        &[
                            "ip",
                            "-n",
                            ns,
                            "neigh",
                            "replace",
                            &peer.to_string(),
                            "lladdr",
                            peer_mac,
                            "dev",
                            ifname,
                            "nud",
                            "permanent",
                        ],
                        None,
                    )?;
                }
            }
        }
        // routes: the ends by default route, each router to every link it is not on
        let route = |ns: &str, to: &str, via: IpAddr| {
            let fam = if via.is_ipv4() { "-4" } else { "-6" };
            run(
                &[
                    "ip",
                    "-n",
                    ns,
                    fam,
                    "route",
                    "add",
                    to,
                    "via",
                    &via.to_string(),
                ],
                None,
            )
        };
        for (ns, link, side) in [(&chain[0], 0, 2), (&chain[n + 1], n, 1)] {
            route(ns, "default", IpAddr::V4(link_v4(link, side)))?;
            route(ns, "default", IpAddr::V6(link_v6(link, side)))?;
        }
        for (k, ns) in chain.iter().enumerate().take(n + 1).skip(1) {
            // router k sits on links k-1 (as side 2) and k (as side 1)
            for link in 0..=n {
                let (via4, via6) = if link + 1 < k {
                    (link_v4(k - 1, 1), link_v6(k - 1, 1))
                } else if link > k {
                    (link_v4(k, 2), link_v6(k, 2))
                } else {
                    continue;
                };
                let net4 = format!("198.18.{}.0/24", link + 1);
                let net6 = format!("2001:db8:{:x}::/64", link + 1);
                route(ns, &net4, IpAddr::V4(via4))?;
                route(ns, &net6, IpAddr::V6(via6))?;
            }
        }
        // forwarding on the routers; ICMP errors unlimited everywhere
        for (i, ns) in chain.iter().enumerate() {
            let router = i > 0 && i <= n;
            in_netns(ns, move || {
                let w = |p: &str, v: &str| {
                    let _ = std::fs::write(p, v);
                };
                w("/proc/sys/net/ipv4/icmp_ratelimit", "0");
                w("/proc/sys/net/ipv6/icmp/ratelimit", "0");
                w("/proc/sys/net/ipv4/icmp_msgs_per_sec", "100000");
                w("/proc/sys/net/ipv4/icmp_msgs_burst", "100000");
                if router {
                    w("/proc/sys/net/ipv4/ip_forward", "1");
                    w("/proc/sys/net/ipv6/conf/all/forwarding", "1");
                }
            })?;
        }
        if let Some(kbit) = spec.bottleneck_kbit {
            let rate = format!("{kbit}kbit");
            for dev in ["left", "right"] {
                for args in [
                    vec![
                        "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
                    ],
                    vec![
                        "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
                        "rate", &rate,
                    ],
                    vec![
                        "qdisc", "add", "dev", dev, "parent", "1:10", "pfifo", "limit", "10",
                    ],
                ] {
                    let mut full = vec!["ip", "netns", "exec", &chain[1], "tc"];
                    full.extend(args);
                    run(&full, None)?;
                }
            }
        }
        let policy = &chain[spec.policy_router];
        run(
            &["ip", "netns", "exec", policy, "nft", "-f", "-"],
            Some(&policy_ruleset(spec)),
        )?;
        if !spec.syn_proxy.is_empty() {
            let last = &chain[n];
            run(
                &["ip", "netns", "exec", last, "nft", "-f", "-"],
                Some(&synproxy_ruleset(&spec.syn_proxy)),
            )?;
            // conntrack is in use now, and with it this namespace's sysctl
            in_netns(last, || {
                std::fs::write("/proc/sys/net/netfilter/nf_conntrack_tcp_loose", "0")
            })?
            .map_err(|e| LabError(format!("set nf_conntrack_tcp_loose: {e}")))?;
        }
        let ports = spec.open.clone();
        lab.listeners = in_netns(
            &lab.server_ns,
            move || -> Result<Vec<TcpListener>, LabError> {
                ports
                    .iter()
                    .map(|p| {
                        TcpListener::bind(("::", *p))
                            .map_err(|e| LabError(format!("listen on port {p}: {e}")))
                    })
                    .collect()
            },
        )??;
        super::wait_links_active(&lab.created)?;
        Ok(lab)
    }

    /// A command that runs `program` inside router `k` (1-based).
    pub fn router_command(
        &self,
        k: usize,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.routers[k - 1]]).arg(program);
        c
    }
}

/// The tarpit's addresses in a routed lab with `routers` routers: on the
/// server's link, beside the server.
pub fn tarpit_v4(routers: usize) -> Ipv4Addr {
    link_v4(routers, 3)
}
/// The tarpit's IPv6 address in a routed lab with `routers` routers.
pub fn tarpit_v6(routers: usize) -> Ipv6Addr {
    link_v6(routers, 3)
}

/// A host that answers every TCP port with a SYN-ACK (a tarpit, or a proxy
/// that accepts everything), in a routed lab's server namespace at
/// [`tarpit_v4`] / [`tarpit_v6`]: a raw responder reads SYNs from a packet
/// socket and answers each with a SYN-ACK (MSS 1460, window 29200, TTL 64)
/// while nftables keeps the server's kernel from answering them. Stopped
/// (and joined) on drop; its addresses vanish with the lab.
pub struct Tarpit {
    /// Its IPv4 address ([`tarpit_v4`]).
    pub v4: Ipv4Addr,
    /// Its IPv6 address ([`tarpit_v6`]).
    pub v6: Ipv6Addr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Tarpit {
    /// Starts the tarpit in `lab`, a routed lab with `routers` routers.
    pub fn start(lab: &Lab, routers: usize) -> Result<Tarpit, LabError> {
        let (v4, v6) = (tarpit_v4(routers), tarpit_v6(routers));
        let srv = &lab.server_ns;
        let last = lab
            .routers
            .get(routers.wrapping_sub(1))
            .ok_or_else(|| LabError(format!("tarpit: no router {routers} in this lab")))?;
        run(
            &[
                "ip",
                "-n",
                srv,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                super::VETH,
            ],
            None,
        )?;
        run(
            &[
                "ip",
                "-n",
                srv,
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                super::VETH,
                "nodad",
            ],
            None,
        )?;
        for a in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            run(
                &[
                    "ip",
                    "-n",
                    last,
                    "neigh",
                    "replace",
                    &a.to_string(),
                    "lladdr",
                    &mac(routers, 2),
                    "dev",
                    "right",
                    "nud",
                    "permanent",
                ],
                None,
            )?;
        }
        run(
            &["ip", "netns", "exec", srv, "nft", "-f", "-"],
            Some(&format!(
                "table inet synscope_tarpit {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    ip daddr {v4} meta l4proto tcp drop\n    ip6 daddr {v6} meta l4proto tcp drop\n  }}\n}}\n"
            )),
        )?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut t = Tarpit {
            v4,
            v6,
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for local in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = stop.clone();
            t.threads.push(super::spawn_in_netns(srv, move || {
                tarpit_loop(local, &stop, ready_tx)
            })?);
            ready_rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .map_err(|_| LabError("tarpit: responder did not start".into()))?
                .map_err(|e| LabError(format!("tarpit responder on {local}: {e}")))?;
        }
        Ok(t)
    }
}

/// Answers every SYN to `local` with a SYN-ACK until `stop`; says on `ready`
/// once its sockets are open (or why they are not).
fn tarpit_loop(
    local: IpAddr,
    stop: &std::sync::atomic::AtomicBool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    use crate::wire::datagram::Checksums;
    use crate::wire::{
        Datagram, IpRepr, Protocol, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Transport,
    };
    let opened = TarpitSockets::open(local);
    let socks = match opened {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut buf = vec![0u8; 65536];
    let mut n: u32 = 0;
    // bounded: at most a day of 20 ms waits
    for _ in 0..(24 * 3600 * 50) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(len) = socks.recv(&mut buf) else {
            continue;
        };
        let Ok(d) = Datagram::parse_with(&buf[..len], Checksums::Offloaded) else {
            continue;
        };
        let Transport::Tcp(t) = d.transport else {
            continue;
        };
        if d.ip.dst != local
            || t.flags.0 & (TcpFlags::SYN.0 | TcpFlags::ACK.0 | TcpFlags::RST.0) != TcpFlags::SYN.0
        {
            continue;
        }
        n = n.wrapping_add(1);
        let tcp = TcpRepr {
            src_port: t.dst_port,
            dst_port: t.src_port,
            seq: SeqNumber(0x7a7a_0000 ^ n.wrapping_mul(2_654_435_761)),
            ack: t.seq + 1,
            flags: TcpFlags::SYN.union(TcpFlags::ACK),
            window: 29200,
            options: TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        };
        let ip = IpRepr {
            src: local,
            dst: d.ip.src,
            protocol: Protocol::TCP,
            ttl: 64,
            ident: n as u16,
            later_fragment: false,
            flow_label: 0,
        };
        socks.send(d.ip.src, &ip.emit(&tcp.emit(ip.src, ip.dst)));
    }
}

/// The tarpit's own two sockets: an AF_PACKET socket that sees SYNs before the
/// input hook drops them (cooked: IP packets, no link header), and a raw socket
/// that sends whole IP packets.
struct TarpitSockets {
    capture: socket2::Socket,
    send: socket2::Socket,
}

impl TarpitSockets {
    fn open(local: IpAddr) -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        const ETH_P_ALL: u16 = 0x0003;
        let capture = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        capture.set_read_timeout(Some(std::time::Duration::from_millis(20)))?;
        const IPPROTO_RAW: i32 = 255;
        let send = match local {
            IpAddr::V4(_) => {
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?
            }
            IpAddr::V6(_) => {
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
                s.set_header_included_v6(true)?;
                s
            }
        };
        Ok(Self { capture, send })
    }

    /// One packet into `buf`, or None after the read timeout.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        use std::io::Read;
        (&self.capture).read(buf).ok()
    }

    fn send(&self, to: IpAddr, packet: &[u8]) {
        let _ = self
            .send
            .send_to(packet, &std::net::SocketAddr::new(to, 0).into());
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_links() {
        assert_eq!(client_v4(), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(router_v4(1), Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(router_v4(3), Ipv4Addr::new(198, 18, 3, 2));
        assert_eq!(server_v4(3), Ipv4Addr::new(198, 18, 4, 2));
        assert_eq!(server_v6(3).to_string(), "2001:db8:4::2");
        assert_eq!(mac(0, 1), "02:53:53:01:01:01");
    }

    #[test]
    fn policy_names_every_rewrite() {
        let r = policy_ruleset(&RoutedSpec::standard());
        assert!(r.contains("tcp dport { 8443 } counter drop"), "{r}");
        assert!(r.contains("maxseg size set 1200"), "{r}");
        assert!(r.contains("ip6 dscp set cs1 ip6 ecn set not-ect"), "{r}");
        assert!(r.contains("reset tcp option timestamp"), "{r}");
        assert!(r.contains("tcp dport 8083 tcp dport set 8084"), "{r}");
        assert!(r.contains("tcp sport 8084 tcp sport set 8083"), "{r}");
        assert!(
            r.contains("tcp dport { 8085 } tcp flags & (syn | ack) == syn ip id set 4242"),
            "{r}"
        );
        assert!(r.contains("ip6 hoplimit set 64"), "{r}");
        assert!(
            r.contains("tcp dport 8087 dnat ip to 198.18.4.2:8084"),
            "{r}"
        );
        assert!(r.contains("dnat ip6 to [2001:db8:4::2]:8084"), "{r}");
    }
}
