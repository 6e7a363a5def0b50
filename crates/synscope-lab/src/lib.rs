//! A throwaway namespace lab: a client and a server network namespace joined by
//! a veth pair, addresses from 198.18.0.0/15 and 2001:db8::/32, real kernel TCP
//! listeners in the server, ports dropped or rejected by nftables. Used by
//! `synscope demo` and the tests (a test-support crate, not synscope's public
//! API). Everything is removed when the `Lab` drops.
//!
//! Needs root and the `ip` (iproute2) and `nft` (nftables) tools.

#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use synscope_wire as wire;

/// The client's end of the veth pair (198.18.0.0/24).
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's end of the veth pair.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's end of the veth pair (2001:db8::/64).
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The server's end of the veth pair.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const CLIENT_MAC: &str = "02:53:53:00:00:01";
const SERVER_MAC: &str = "02:53:53:00:00:02";
/// Both veth ends carry this name, each inside its own namespace.
pub const VETH: &str = "veth0";

/// Which server ports do what; every other port is closed (kernel RST).
#[derive(Debug, Clone, Default)]
pub struct LabSpec {
    /// Served by a kernel listener in the server namespace (SYN-ACK).
    pub open: Vec<u16>,
    /// Silently dropped by nftables.
    pub dropped: Vec<u16>,
    /// Rejected with ICMP administratively prohibited (3/13, ICMPv6 1/1).
    pub admin_prohibited: Vec<u16>,
    /// Rejected with ICMP port unreachable (3/3, ICMPv6 1/4).
    pub port_unreachable: Vec<u16>,
    /// An IPv4 prefix the server answers for as a whole (`ip route add local
    /// PREFIX dev lo` there, routed via the server on the client): one
    /// namespace standing in for thousands of hosts.
    pub many_hosts_v4: Option<String>,
    /// A LAN on the client, as real networks have: a bridge `lan0` in the
    /// client namespace holding [`CLIENT_LAN_V4`]/24 and [`CLIENT_LAN_V6`]/64,
    /// and one namespace per host here, each on its own veth port of the
    /// bridge, answering ARP and ND with its kernel, listening on its open
    /// ports. No static neighbour entries: every other address of the LAN
    /// answers nothing at all. Empty: no LAN.
    pub lan: Vec<LanHost>,
    /// A second route with its own source address: client interface `veth1`
    /// ([`CLIENT_R2_V4`]/24, [`CLIENT_R2_V6`]/64) to a router namespace that
    /// answers for [`FAR_V4`] and [`FAR_V6`] as a whole (routed via it), with
    /// these ports open. None: no second route.
    pub second_route: Option<Vec<u16>>,
    /// A policer on the server: nftables drops TCP SYNs over this many per
    /// second (`limit rate over N/second drop`), before any other rule.
    pub syn_policer: Option<u32>,
    /// A bottleneck on the server's replies: an HTB class of this many
    /// kbit/s on its veth with a short (10 packet) queue; what overflows is
    /// dropped. (A stand-in for a router's queue: the path between client
    /// and server is one veth.)
    pub reply_bottleneck_kbit: Option<u32>,
    /// Keep the server's ICMP rate limits at the Linux defaults (else they
    /// are off, so every rejected probe is answered).
    pub icmp_ratelimit: bool,
}

/// One host of the lab's LAN: 198.18.200.`host` and 2001:db8:200::`host`
/// (the same number, as an IPv6 group), with these ports open.
#[derive(Debug, Clone, Default)]
pub struct LanHost {
    /// The host number (not 1, the client's): its addresses' last group.
    pub host: u8,
    /// Ports with a kernel listener on this host.
    pub open: Vec<u16>,
}

/// The client's address on the LAN bridge (198.18.200.0/24).
pub const CLIENT_LAN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
/// The client's address on the LAN bridge (2001:db8:200::/64).
pub const CLIENT_LAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1);
/// The LAN's bridge in the client namespace.
pub const LAN_BRIDGE: &str = "lan0";
/// The client's source address on the second route (198.18.210.0/24).
pub const CLIENT_R2_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 210, 1);
/// The client's source address on the second route (2001:db8:210::/64).
pub const CLIENT_R2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x210, 0, 0, 0, 0, 1);
/// The second route's router, the client's next hop there.
pub const ROUTER_R2_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 210, 2);
/// The second route's router, the client's next hop there.
pub const ROUTER_R2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x210, 0, 0, 0, 0, 2);
/// The client's interface of the second route.
pub const VETH_R2: &str = "veth1";
/// Answered as a whole by the router namespace of the second route.
pub const FAR_V4: &str = "198.18.220.0/24";
/// The IPv6 prefix answered as a whole by the second route's router.
pub const FAR_V6: &str = "2001:db8:220::/120";

/// The IPv4 address of LAN host `h`.
pub fn lan_v4(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 200, h)
}

/// The IPv6 address of LAN host `h`.
pub fn lan_v6(h: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, h as u16)
}

impl LabSpec {
    /// The demo's and tests' default map.
    pub fn standard() -> LabSpec {
        LabSpec {
            open: vec![22, 80, 443],
            dropped: vec![21, 8443],
            admin_prohibited: vec![111],
            port_unreachable: vec![113],
            many_hosts_v4: None,
            lan: Vec::new(),
            second_route: None,
            syn_policer: None,
            reply_bottleneck_kbit: None,
            icmp_ratelimit: false,
        }
    }
}

/// A lab step that failed: the command or file and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("lab: {0}")]
pub struct LabError(pub String);

/// A running lab. Dropping it deletes both namespaces (and so the veth pair,
/// the nftables table and the listeners' sockets).
pub struct Lab {
    /// The client namespace's name (`synscope-<pid>-<n>-cli`): run probes in it.
    pub client_ns: String,
    /// The server namespace's name: listeners, nftables rules, NSD.
    pub server_ns: String,
    /// The routed lab's routers between client and server, client side
    /// first (see [`routed`]; empty in a lab made by [`Lab::up`]).
    pub routers: Vec<String>,
    /// The namespaces of the LAN hosts (as in [`LabSpec::lan`]).
    pub lan_ns: Vec<String>,
    /// The router namespace of the second route.
    pub router_ns: Option<String>,
    listeners: Vec<TcpListener>,
    created: Vec<String>,
    /// Deletes the namespaces if this process dies without dropping the lab.
    reaper: Option<std::process::Child>,
}

pub mod dns;
pub mod routed;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Loads `script` (`nft -f -`) into namespace `ns`: a test's own rules,
/// removed with the namespace.
pub fn nft(ns: &str, script: &str) -> Result<(), LabError> {
    run(&["ip", "netns", "exec", ns, "nft", "-f", "-"], Some(script))
}

/// Runs a command, turning failure into a one-line error.
fn run(args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|e| {
        LabError(format!(
            "cannot run '{}': {e} (install iproute2 and nftables)",
            args[0]
        ))
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| LabError(format!("{}: {e}", args.join(" "))))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError(format!("{}: {e}", args.join(" "))))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(LabError(format!(
            "'{}' failed: {}",
            args.join(" "),
            err.trim()
        )));
    }
    Ok(())
}

/// Waits (at most 5 s) until every interface of `namespaces` that is up and
/// has its carrier can send. A veth set up while its peer is still down gets
/// its carrier when the peer comes up, but its queueing discipline only later,
/// from the kernel's link-watch worker (rate-limited to about one run a second
/// host-wide, and slow on a busy host); until then it is `noop`, which drops
/// every packet before a capture sees it: a lab test's first probe vanished.
fn wait_links_active(namespaces: &[String]) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for ns in namespaces {
        loop {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", "up"])
                .stderr(Stdio::null())
                .output()
                .map_err(|e| LabError(format!("cannot run 'ip': {e} (install iproute2)")))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let pending = text
                .lines()
                .find(|l| l.contains("LOWER_UP") && l.contains("qdisc noop"));
            let Some(line) = pending else { break };
            if Instant::now() > deadline {
                return Err(LabError(format!(
                    "{ns}: an interface still cannot send after 5 s: {line}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it creates stay there.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| LabError(format!("open {path}: {e}")))?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError(format!("enter namespace: {e}")))?;
        Ok(f())
    })
    .join()
    .map_err(|_| LabError("namespace thread panicked".into()))?
}

/// Starts `f` on a thread inside namespace `ns` and returns at once (for
/// servers and responders that run while a test goes on).
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, LabError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| LabError(format!("open {path}: {e}")))?;
    Ok(std::thread::spawn(move || {
        // a thread that cannot enter the namespace must not run there by mistake
        if let Err(e) = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
            panic!("enter namespace: {e}");
        }
        f()
    }))
}

impl Lab {
    /// Builds the lab. On failure everything made so far is removed. Namespaces
    /// left by a lab whose process was killed (SIGKILL runs no destructor) are
    /// removed first: their owner markers name a process that is gone.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        remove_stale_namespaces();
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            client_ns: format!("synscope-{id}-cli"),
            server_ns: format!("synscope-{id}-srv"),
            routers: Vec::new(),
            lan_ns: spec
                .lan
                .iter()
                .map(|h| format!("synscope-{id}-h{}", h.host))
                .collect(),
            router_ns: spec
                .second_route
                .as_ref()
                .map(|_| format!("synscope-{id}-r2")),
            listeners: Vec::new(),
            created: Vec::new(),
            reaper: None,
        };
        let (c, s) = (lab.client_ns.clone(), lab.server_ns.clone());
        let mut all = vec![c.clone(), s.clone()];
        all.extend(lab.lan_ns.iter().cloned());
        all.extend(lab.router_ns.iter().cloned());
        for ns in &all {
            // the marker first: a namespace is never there without its proof of owner
            mark_owned(ns)?;
            lab.created.push(ns.clone());
            run(&["ip", "netns", "add", ns], None)?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"], None)?;
        }
        lab.reaper = spawn_reaper(&all.iter().map(String::as_str).collect::<Vec<_>>());
        run(
            &[
                "ip", "link", "add", VETH, "netns", &c, "address", CLIENT_MAC, "type", "veth",
                "peer", "name", VETH, "netns", &s, "address", SERVER_MAC,
            ],
            None,
        )?;
        for (ns, v4, v6, peer4, peer6, mac) in [
            (&c, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, SERVER_MAC),
            (&s, SERVER_V4, SERVER_V6, CLIENT_V4, CLIENT_V6, CLIENT_MAC),
        ] {
            run(
                &[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{v4}/24"),
                    "dev",
                    VETH,
                ],
                None,
            )?;
            run(
                &[
                    "ip",
                    "-n",
                    ns,
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    VETH,
                    "nodad",
                ],
                None,
            )?;
            run(&["ip", "-n", ns, "link", "set", VETH, "up"], None)?;
            // static neighbours: no ARP or ND in the measured path
            for peer in [IpAddr::V4(peer4), IpAddr::V6(peer6)] {
                let p = peer.to_string();
                run(
                    &[
                        "ip",
                        "-n",
                        ns,
                        "neigh",
                        "replace",
                        &p,
                        "lladdr",
                        mac,
                        "dev",
                        VETH,
                        "nud",
                        "permanent",
                    ],
                    None,
                )?;
            }
        }
        if let Some(prefix) = &spec.many_hosts_v4 {
            run(
                &["ip", "-n", &s, "route", "add", "local", prefix, "dev", "lo"],
                None,
            )?;
            run(
                &[
                    "ip",
                    "-n",
                    &c,
                    "route",
                    "add",
                    prefix,
                    "via",
                    &SERVER_V4.to_string(),
                ],
                None,
            )?;
        }
        // the server answers every rejected probe (no ICMP rate limit)
        if !spec.icmp_ratelimit {
            in_netns(&s, || {
                let _ = std::fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0");
                let _ = std::fs::write("/proc/sys/net/ipv6/icmp/ratelimit", "0");
            })?;
        }
        if let Some(kbit) = spec.reply_bottleneck_kbit {
            let rate = format!("{kbit}kbit");
            for args in [
                vec![
                    "qdisc", "add", "dev", VETH, "root", "handle", "1:", "htb", "default", "10",
                ],
                vec![
                    "class", "add", "dev", VETH, "parent", "1:", "classid", "1:10", "htb", "rate",
                    &rate,
                ],
                vec![
                    "qdisc", "add", "dev", VETH, "parent", "1:10", "pfifo", "limit", "10",
                ],
            ] {
                let mut full = vec!["ip", "netns", "exec", &s, "tc"];
                full.extend(args);
                run(&full, None)?;
            }
        }
        if !(spec.dropped.is_empty()
            && spec.admin_prohibited.is_empty()
            && spec.port_unreachable.is_empty()
            && spec.syn_policer.is_none())
        {
            run(
                &["ip", "netns", "exec", &s, "nft", "-f", "-"],
                Some(&nft_ruleset(spec)),
            )?;
        }
        let ports = spec.open.clone();
        lab.listeners = in_netns(&s, move || -> Result<Vec<TcpListener>, LabError> {
            ports
                .iter()
                .map(|p| {
                    TcpListener::bind(("::", *p))
                        .map_err(|e| LabError(format!("listen on port {p}: {e}")))
                })
                .collect()
        })??;
        lab.build_lan(spec)?;
        lab.build_second_route(spec)?;
        wait_links_active(&lab.created)?;
        Ok(lab)
    }

    /// The LAN of [`LabSpec::lan`]: a bridge in the client, one namespace per host.
    fn build_lan(&mut self, spec: &LabSpec) -> Result<(), LabError> {
        if spec.lan.is_empty() {
            return Ok(());
        }
        let c = self.client_ns.clone();
        run(
            &[
                "ip",
                "-n",
                &c,
                "link",
                "add",
                LAN_BRIDGE,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
            None,
        )?;
        addresses(&c, LAN_BRIDGE, CLIENT_LAN_V4, CLIENT_LAN_V6)?;
        for (h, ns) in spec.lan.iter().zip(self.lan_ns.clone()) {
            // a host of a real LAN has long finished duplicate address
            // detection; a fresh namespace would ignore ND until it has
            no_dad(&ns)?;
            let port = format!("lan{}", h.host);
            let mac = format!("02:53:53:c8:00:{:02x}", h.host);
            run(
                &[
                    "ip", "link", "add", &port, "netns", &c, "type", "veth", "peer", "name",
                    "eth0", "netns", &ns, "address", &mac,
                ],
                None,
            )?;
            run(
                &[
                    "ip", "-n", &c, "link", "set", &port, "master", LAN_BRIDGE, "up",
                ],
                None,
            )?;
            addresses(&ns, "eth0", lan_v4(h.host), lan_v6(h.host))?;
            run(
                &[
                    "ip",
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &CLIENT_LAN_V4.to_string(),
                ],
                None,
            )?;
            let ports = h.open.clone();
            let listeners = in_netns(&ns, move || listen(&ports))??;
            self.listeners.extend(listeners);
        }
        Ok(())
    }

    /// The second route of [`LabSpec::second_route`].
    fn build_second_route(&mut self, spec: &LabSpec) -> Result<(), LabError> {
        let (Some(open), Some(r)) = (&spec.second_route, self.router_ns.clone()) else {
            return Ok(());
        };
        let c = self.client_ns.clone();
        no_dad(&r)?;
        run(
            &[
                "ip",
                "link",
                "add",
                VETH_R2,
                "netns",
                &c,
                "address",
                "02:53:53:d2:00:01",
                "type",
                "veth",
                "peer",
                "name",
                VETH_R2,
                "netns",
                &r,
                "address",
                "02:53:53:d2:00:02",
            ],
            None,
        )?;
        addresses(&c, VETH_R2, CLIENT_R2_V4, CLIENT_R2_V6)?;
        addresses(&r, VETH_R2, ROUTER_R2_V4, ROUTER_R2_V6)?;
        run(
            &["ip", "-n", &r, "route", "add", "local", FAR_V4, "dev", "lo"],
            None,
        )?;
        run(
            &[
                "ip", "-n", &r, "-6", "route", "add", "local", FAR_V6, "dev", "lo",
            ],
            None,
        )?;
        run(
            &[
                "ip",
                "-n",
                &c,
                "route",
                "add",
                FAR_V4,
                "via",
                &ROUTER_R2_V4.to_string(),
            ],
            None,
        )?;
        run(
            &[
                "ip",
                "-n",
                &c,
                "-6",
                "route",
                "add",
                FAR_V6,
                "via",
                &ROUTER_R2_V6.to_string(),
            ],
            None,
        )?;
        in_netns(&r, || {
            let _ = std::fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0");
            let _ = std::fs::write("/proc/sys/net/ipv6/icmp/ratelimit", "0");
        })?;
        let ports = open.clone();
        let listeners = in_netns(&r, move || listen(&ports))??;
        self.listeners.extend(listeners);
        Ok(())
    }

    /// A command that runs `program` inside the client namespace.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns]).arg(program);
        c
    }

    /// A command that runs `program` inside the server namespace.
    pub fn server_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server_ns]).arg(program);
        c
    }
}

/// Listeners on `ports` (IPv6 and IPv4) in the calling thread's namespace.
fn listen(ports: &[u16]) -> Result<Vec<TcpListener>, LabError> {
    ports
        .iter()
        .map(|p| {
            TcpListener::bind(("::", *p)).map_err(|e| LabError(format!("listen on port {p}: {e}")))
        })
        .collect()
}

/// Addresses on `dev` in `ns` (IPv4 /24, IPv6 /64 without DAD), and the link up.
fn addresses(ns: &str, dev: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<(), LabError> {
    run(
        &[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{v4}/24"),
            "dev",
            dev,
        ],
        None,
    )?;
    run(
        &[
            "ip",
            "-n",
            ns,
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            dev,
            "nodad",
        ],
        None,
    )?;
    run(&["ip", "-n", ns, "link", "set", dev, "up"], None)
}

/// Turns duplicate address detection off for interfaces that come to `ns`.
fn no_dad(ns: &str) -> Result<(), LabError> {
    in_netns(ns, || {
        for f in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/accept_dad"), "0");
        }
    })
}

/// Where a lab records which process owns each of its namespaces.
const OWNERS: &str = "/run/synscope";

/// Who made a namespace: a process, told apart from a later one with the same
/// pid by its start time, in a PID namespace (a pid means nothing outside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its process id, in `pid_ns`.
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    pub start: u64,
    /// The inode of /proc/self/ns/pid.
    pub pid_ns: u64,
}

impl Owner {
    /// This process.
    pub fn me() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            pid,
            start: start_time(pid)?,
            pid_ns: pid_namespace()?,
        })
    }

    /// `pid=… start=… pidns=…`, the marker file's text.
    pub fn to_text(&self) -> String {
        format!(
            "pid={} start={} pidns={}\n",
            self.pid, self.start, self.pid_ns
        )
    }

    /// Reads a marker file's text ([`Owner::to_text`]); None if a field is missing.
    pub fn parse(text: &str) -> Option<Owner> {
        let field = |k: &str| -> Option<u64> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
        };
        Some(Owner {
            pid: u32::try_from(field("pid")?).ok()?,
            start: field("start")?,
            pid_ns: field("pidns")?,
        })
    }

    /// Provably gone: it lived in our PID namespace and no process there has
    /// its pid and start time. (From another PID namespace nothing is provable.)
    pub fn is_gone(&self) -> bool {
        pid_namespace() == Some(self.pid_ns) && start_time(self.pid) != Some(self.start)
    }
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and ')': fields resume after the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

fn owner_marker(ns: &str) -> String {
    format!("{OWNERS}/{ns}")
}

/// Records this process as the owner of namespace `ns`.
fn mark_owned(ns: &str) -> Result<(), LabError> {
    let me = Owner::me().ok_or_else(|| LabError("read /proc/self/stat".into()))?;
    std::fs::create_dir_all(OWNERS)
        .and_then(|_| std::fs::write(owner_marker(ns), me.to_text()))
        .map_err(|e| LabError(format!("write {}: {e}", owner_marker(ns))))
}

/// Deletes `synscope-…` namespaces that a lab provably made and whose process
/// is provably gone (killed before its `Drop` ran): their owner marker under
/// /run/synscope names a process of our PID namespace that no longer runs.
/// A namespace without a marker, or whose owner runs or lives in another PID
/// namespace, is someone else's and is left alone.
pub fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir(OWNERS) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("synscope-") {
            continue;
        }
        let Some(owner) = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| Owner::parse(&t))
        else {
            continue;
        };
        if owner.is_gone() {
            if std::path::Path::new(&format!("/run/netns/{name}")).exists() {
                let _ = run(&["ip", "netns", "del", &name], None);
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn nft_ruleset(spec: &LabSpec) -> String {
    let set = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let mut rules = String::new();
    if let Some(n) = spec.syn_policer {
        rules += &format!(
            "    tcp flags & (syn | ack) == syn limit rate over {n}/second counter drop\n"
        );
    }
    for (ports, action) in [
        (&spec.dropped, "drop"),
        (
            &spec.admin_prohibited,
            "reject with icmpx type admin-prohibited",
        ),
        (
            &spec.port_unreachable,
            "reject with icmpx type port-unreachable",
        ),
    ] {
        if !ports.is_empty() {
            rules += &format!(
                "    meta l4proto tcp th dport {{ {} }} counter {action}\n",
                set(ports)
            );
        }
    }
    format!(
        "table inet synscope_lab {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n{rules}  }}\n}}\n"
    )
}

/// A watchdog in its own session: once this process is gone (even by SIGKILL,
/// which runs no destructor) it deletes the namespaces. It polls every 100 ms
/// for at most 24 hours, and is killed when the lab is dropped normally.
fn spawn_reaper(namespaces: &[&str]) -> Option<std::process::Child> {
    let dels: Vec<String> = namespaces
        .iter()
        .map(|n| format!("ip netns del {n} 2>/dev/null; rm -f {}", owner_marker(n)))
        .collect();
    let script = format!(
        "i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 864000 ]; do sleep 0.1; i=$((i+1)); done; {dels}",
        pid = std::process::id(),
        dels = dels.join("; ")
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Lab {
    /// Leaves the lab up after this value is gone (`synscope demo --keep`):
    /// stops the reaper, closes the listeners (whoever keeps the lab listens
    /// on the open ports instead) and returns the namespaces, which dropping
    /// this value no longer deletes. Their owner markers name this process
    /// until [`adopt`] names the keeper; a later lab removes them once the
    /// owner they name is gone.
    pub fn keep(mut self) -> Vec<String> {
        self.stop_reaper();
        self.listeners.clear();
        std::mem::take(&mut self.created)
    }

    fn stop_reaper(&mut self) {
        if let Some(mut r) = self.reaper.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

/// Records this process as the owner of `namespaces` (a kept lab's keeper).
pub fn adopt(namespaces: &[String]) -> Result<(), LabError> {
    namespaces.iter().try_for_each(|ns| mark_owned(ns))
}

/// Deletes `namespaces`, last first, and their owner markers.
pub fn delete_namespaces(namespaces: &[String]) {
    for ns in namespaces.iter().rev() {
        let _ = run(&["ip", "netns", "del", ns], None);
        let _ = std::fs::remove_file(owner_marker(ns));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_reaper();
        self.listeners.clear();
        delete_namespaces(&std::mem::take(&mut self.created));
    }
}

/// True, after saying why on the terminal, when this process is not root and a
/// lab test therefore cannot run: it needs network namespaces, veth links,
/// nftables and raw sockets. CI runs as root and runs every lab test. The
/// reason is written to stderr directly, not through `eprintln!`, so the test
/// harness does not swallow it. With `SYNSCOPE_REQUIRE_ROOT=1` (set by
/// `.ci/run`) a test that would skip fails instead.
pub fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("SYNSCOPE_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{test} needs root and SYNSCOPE_REQUIRE_ROOT=1 forbids skipping it");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs root (network namespaces, veth, nftables, raw sockets); CI runs it as root"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_this_process_until_its_start_time_differs() {
        let me = Owner::me().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(Owner::parse(&me.to_text()), Some(me.clone()));
        assert!(!me.is_gone());
        let reused_pid = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(reused_pid.is_gone());
        // another PID namespace: nothing provable, never gone
        let elsewhere = Owner {
            pid_ns: me.pid_ns + 1,
            start: me.start + 1,
            ..me
        };
        assert!(!elsewhere.is_gone());
        assert_eq!(Owner::parse("pid=1 start=x pidns=2"), None);
        assert_eq!(Owner::parse(""), None);
    }
}
