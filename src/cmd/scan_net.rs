//! The network side of a scan, before any SYN: which route each target
//! takes (the target set is cut at the routing table's prefix boundaries and
//! each piece looked up once), which addresses are network or broadcast
//! addresses (skipped), which on-link hosts answer ARP / Neighbor
//! Solicitation (only they get SYNs), and the sockets that send each probe the
//! way its route says.

use super::{CmdError, Interrupt, Log};
use crate::cli::ScanSettings;
use crate::drive::drive;
use crate::io::bpf::{FlowFilter, compile_any, resets_leaving};
use crate::io::bpf_neigh;
use crate::io::capture::BlockingCapture;
use crate::io::discovery_link::DiscoveryLink;
use crate::io::egress::Egress;
use crate::io::link::{LinkInfo, LinkSender, enslaved_interfaces};
use crate::io::rtnl::{NUD_PERMANENT, RouteMsg, RouteType, Rtnl};
use crate::io::{IoError, PortReservation, RawSender};
use crate::report::scan::{DiscoverySummary, HostResult, ScanOutput};
use crate::scan::TargetSet;
use crate::scan::discovery::{Discovery, DiscoveryMachine, Neighbour, OnLinkGroup};
use crate::scan::routes::{self, Regions, SourceMap, split};
use crate::wire::{MacAddr, Protocol};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Rounds of discovery after the first, for addresses that did not answer.
const DISCOVERY_RETRIES: u32 = 2;
/// Longest wait for replies after each discovery round.
const DISCOVERY_WAIT: Duration = Duration::from_millis(250);
/// Source addresses one capture filter can hold (cBPF programs are bounded).
const MAX_SOURCES: usize = 64;
/// Addresses named in the "skipped" line on stderr.
const NAMED_SKIPS: usize = 4;

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

/// On-link addresses reached on one Ethernet link from one source address.
struct OnLink {
    link: usize,
    src: IpAddr,
    mac: MacAddr,
    set: TargetSet,
    capture: BlockingCapture,
}

/// Routes, sockets and the discovery still to run.
pub struct Network {
    pub sources: SourceMap,
    pub egress: Egress,
    /// The capture of replies to every source address.
    pub capture: BlockingCapture,
    pub reservation: PortReservation,
    pub mss: u16,
    /// Network and broadcast addresses left out.
    pub skipped: u64,
    /// Target addresses with no usable route, left out.
    pub unroutable: u64,
    /// Times discovery's sends met a full queue.
    pub stalls: u64,
    /// Targets that are this host's own addresses (probed without asking).
    own: u64,
    /// On-link targets with a permanent neighbour entry (probed without asking).
    neighbours: u64,
    v6: bool,
    /// Targets probed without discovery (off-link, local, or discovery off).
    direct: Vec<(u128, u128)>,
    on_link: Vec<OnLink>,
}

/// A family's network side, or why none of its targets can be probed.
pub enum Opened {
    Net(Box<Network>),
    /// No target of the family has a usable route: `addresses` of them, the
    /// first lookup's error.
    NoRoute {
        addresses: u64,
        error: IoError,
    },
}

/// What discovery leaves to probe.
pub struct Discovered {
    pub targets: TargetSet,
    pub summary: Option<DiscoverySummary>,
}

impl Network {
    /// Looks up the routes and opens every socket (this needs the privileges
    /// that are dropped right after).
    pub fn open(s: &ScanSettings, targets: &TargetSet, log: Log) -> Result<Opened, CmdError> {
        let v6 = targets.is_ipv6();
        let mut rtnl = Rtnl::open()?;
        let oif = match &s.send.interface {
            Some(name) => Some(nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| {
                IoError::Interface {
                    name: name.clone(),
                    why: e.desc().to_string(),
                }
            })?),
            None => None,
        };
        let table = rtnl.dump(v6)?;
        // network and broadcast addresses of the IPv4 prefixes this host is on
        let mut special: Vec<u128> = Vec::new();
        if !v6 {
            for r in &table {
                if r.kind == RouteType::Unicast
                    && r.protocol == 2
                    && r.scope == 253
                    && r.gateway.is_none()
                    && r.dst_len <= 30
                {
                    let (lo, hi) = r.interval();
                    special.extend([lo, hi]);
                }
            }
            special.sort_unstable();
            special.dedup();
        }
        let cuts = table
            .iter()
            .map(|r| r.interval())
            .chain(special.iter().map(|&x| (x, x)))
            .chain(routes::reserved(v6).iter().copied());
        let regions = Regions::new(cuts);
        let pieces = regions.split(targets.ranges());
        log.debug(|| {
            format!(
                "routes: {} prefixes in the table, {} target pieces",
                table.len(),
                pieces.len()
            )
        });

        let mut skipped = 0u64;
        // never unicast destinations (0.0.0.0/8, multicast, 240/4; ::, ff00::/8)
        let mut reserved = 0u64;
        let mut own = 0u64;
        let mut neighbours = 0u64;
        let mut lookups = 0u64;
        let mut last: Option<(usize, Option<RouteMsg>)> = None;
        let mut unroutable = 0u64;
        let mut no_route: Option<IoError> = None;
        let mut named: Vec<IpAddr> = Vec::new();
        let mut spans = Vec::with_capacity(pieces.len());
        let mut direct = Vec::new();
        let mut groups: BTreeMap<(u32, IpAddr), Vec<(u128, u128)>> = BTreeMap::new();
        let mut links: BTreeMap<u32, LinkInfo> = BTreeMap::new();
        for (lo, hi) in pieces {
            let first = from_u128(v6, lo);
            if routes::is_reserved(v6, lo, hi) {
                reserved += (hi - lo + 1).min(u64::MAX as u128) as u64;
                continue;
            }
            let is_special = lo == hi && special.binary_search(&lo).is_ok();
            // one lookup per region, whatever the number of target intervals in it
            let region = regions.of(lo);
            let looked_up_before = lookups;
            let cached = match &last {
                Some((at, r)) if *at == region => Some(r.clone()),
                _ => None,
            };
            let r = if is_special {
                None
            } else if let Some(r) = cached {
                match r {
                    Some(r) => Some(r),
                    None => {
                        unroutable += (hi - lo + 1).min(u64::MAX as u128) as u64;
                        continue;
                    }
                }
            } else {
                // no route (or an unreachable, prohibit, blackhole one, or no
                // source address): these targets cannot be probed; said once
                lookups += 1;
                match rtnl.get(first, oif) {
                    Ok(r)
                        if !matches!(r.kind, RouteType::Other(_))
                            && (r.prefsrc.is_some() || r.kind == RouteType::Local) =>
                    {
                        last = Some((region, Some(r.clone())));
                        Some(r)
                    }
                    Ok(r) => {
                        last = Some((region, None));
                        unroutable += (hi - lo + 1).min(u64::MAX as u128) as u64;
                        no_route.get_or_insert(IoError::Route {
                            addr: first,
                            source: std::io::Error::other(format!(
                                "route of type {:?} with no source address",
                                r.kind
                            )),
                        });
                        continue;
                    }
                    Err(e) => {
                        last = Some((region, None));
                        unroutable += (hi - lo + 1).min(u64::MAX as u128) as u64;
                        no_route.get_or_insert(e);
                        continue;
                    }
                }
            };
            let Some(r) = r.filter(|r| r.kind != RouteType::Broadcast) else {
                skipped += (hi - lo + 1).min(u64::MAX as u128) as u64;
                if named.len() < NAMED_SKIPS {
                    named.push(first);
                }
                continue;
            };
            let src = r
                .prefsrc
                .or((r.kind == RouteType::Local).then_some(first))
                .ok_or_else(|| IoError::Route {
                    addr: first,
                    source: std::io::Error::other("the route gives no source address"),
                })?;
            spans.push((lo, hi, src));
            if r.kind == RouteType::Local {
                own += (hi - lo + 1).min(u64::MAX as u128) as u64;
            }
            let ifindex = r.oif.unwrap_or(0);
            if let std::collections::btree_map::Entry::Vacant(e) = links.entry(ifindex) {
                e.insert(LinkInfo::of(ifindex)?);
            }
            let link_local = matches!(first, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
            let on_link = s.discovery
                && r.kind == RouteType::Unicast
                && r.gateway.is_none()
                && links[&ifindex].mac.is_some()
                && !link_local;
            // once per lookup (not per target interval of a region)
            if lookups != looked_up_before {
                log.debug(|| {
                    format!(
                        "route {}..{}: {:?} via #{} from {src}{}{}",
                        first,
                        from_u128(v6, hi),
                        r.kind,
                        ifindex,
                        r.gateway
                            .map(|g| format!(" gateway {g}"))
                            .unwrap_or_default(),
                        if on_link { " (on-link)" } else { "" }
                    )
                });
            }
            if on_link {
                groups.entry((ifindex, src)).or_default().push((lo, hi));
            } else {
                direct.push((lo, hi));
            }
        }
        log.debug(|| {
            format!(
                "routes: {lookups} lookups for {} target addresses",
                targets.len()
            )
        });
        if reserved > 0 {
            note!(
                "synscope: skipped {reserved} address{} that cannot be unicast destinations ({})",
                if reserved == 1 { "" } else { "es" },
                if v6 {
                    "::, multicast ff00::/8"
                } else {
                    "0.0.0.0/8, multicast 224.0.0.0/4, reserved 240.0.0.0/4"
                }
            );
        }
        if skipped > 0 {
            let list: Vec<String> = named.iter().map(IpAddr::to_string).collect();
            note!(
                "synscope: skipped {skipped} network/broadcast address{} of on-link prefixes ({}{})",
                if skipped == 1 { "" } else { "es" },
                list.join(", "),
                if skipped > named.len() as u64 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        // both kinds count as skipped in the summary
        skipped += reserved;
        let sources = SourceMap::from_spans(spans);
        let srcs = sources.sources();
        if let Some(e) = no_route {
            if srcs.is_empty() {
                return Ok(Opened::NoRoute {
                    addresses: unroutable,
                    error: e,
                });
            }
            note!(
                "synscope: warning: {unroutable} target address{} not probed: {e}{}",
                if unroutable == 1 { "" } else { "es" },
                if unroutable > 1 {
                    " (the first of them)"
                } else {
                    ""
                }
            );
        }
        if srcs.is_empty() {
            return Err(CmdError::Setup(
                "every target is a network or broadcast address of an on-link prefix".into(),
            ));
        }
        if srcs.len() > MAX_SOURCES {
            return Err(CmdError::Setup(format!(
                "the targets' routes use {} source addresses; at most {MAX_SOURCES} in one scan",
                srcs.len()
            )));
        }

        // hosts with a static (permanent) neighbour entry are reached as the
        // kernel reaches them, without asking: an administrator said where they are
        if !groups.is_empty() {
            let fixed: Vec<(u32, u128)> = rtnl
                .neighbours(v6)?
                .into_iter()
                .filter(|n| n.state & NUD_PERMANENT != 0 && n.lladdr.is_some())
                .map(|n| (n.ifindex, to_u128(n.dst)))
                .collect();
            for ((ifindex, _), ranges) in groups.iter_mut() {
                let points: Vec<u128> = fixed
                    .iter()
                    .filter(|(i, _)| i == ifindex)
                    .map(|(_, x)| *x)
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let cut = split(ranges, points.iter().map(|&x| (x, x)));
                let (known, ask): (Vec<_>, Vec<_>) = cut
                    .into_iter()
                    .partition(|(lo, hi)| lo == hi && points.contains(lo));
                neighbours += known.len() as u64;
                direct.extend(known);
                *ranges = ask;
            }
            groups.retain(|_, r| !r.is_empty());
        }
        let raw = RawSender::open(srcs[0], s.send.interface.as_deref())?;
        // e.g. while the kernel resolves on-link targets probed with --no-discovery
        raw.set_send_buffer(RawSender::BULK_SEND_BUFFER);
        let mut senders: Vec<LinkSender> = Vec::new();
        let mut on_link = Vec::new();
        for ((ifindex, src), ranges) in groups {
            let info = links[&ifindex].clone();
            let Some(mac) = info.mac else { continue };
            let set = TargetSet::from_ranges(v6, ranges);
            if set.len() > Discovery::MAX_ADDRESSES {
                note!(
                    "synscope: warning: {} on-link addresses on {} are more than discovery takes ({}); probing them without it",
                    set.len(),
                    info.name,
                    Discovery::MAX_ADDRESSES
                );
                direct.extend_from_slice(set.ranges());
                continue;
            }
            let link = match senders.iter().position(|l| l.info.ifindex == ifindex) {
                Some(i) => i,
                None => {
                    senders.push(LinkSender::open(info)?);
                    senders.len() - 1
                }
            };
            let program = match src {
                IpAddr::V4(a) => bpf_neigh::arp(a),
                IpAddr::V6(a) => bpf_neigh::ndp(a),
            };
            let capture = BlockingCapture::open_program(ifindex, &program, 4 << 20)?;
            on_link.push(OnLink {
                link,
                src,
                mac,
                set,
                capture,
            });
        }

        // one source port for every source address: reserved on all of them
        // at once when there are several
        let reserve_on = if srcs.len() == 1 {
            srcs[0]
        } else if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let reservation = PortReservation::reserve(reserve_on, s.send.source_port.unwrap_or(0))?;
        let sport = reservation.port;
        let filters: Vec<FlowFilter> = srcs
            .iter()
            .map(|&local| FlowFilter {
                local,
                remote: None,
                remote_port: None,
                local_ports: Some((sport, sport)),
                protocol: Protocol::TCP,
                outbound: false,
            })
            .collect();
        // on every interface (or the one named), each reply once
        let ports = if oif.is_some() {
            Vec::new()
        } else {
            enslaved_interfaces()
        };
        // and the resets leaving from the scan's port (the kernel's to our
        // SYN-ACKs), shown while the scan learns who resets them
        let program = bpf_neigh::incoming_once_or(
            &ports,
            compile_any(&filters),
            resets_leaving(&srcs, sport),
        );
        let capture = BlockingCapture::open_program(oif.unwrap_or(0), &program, 64 << 20)?;
        // nothing leaving is wanted until the scan watches the resets: spare
        // the kernel a copy of each packet sent
        let _ = capture.ignore_outgoing();
        let mtu = links
            .values()
            .filter_map(|l| {
                std::fs::read_to_string(format!("/sys/class/net/{}/mtu", l.name))
                    .ok()
                    .and_then(|m| m.trim().parse::<u32>().ok())
            })
            .min()
            .unwrap_or(1500);
        let overhead = if v6 { 60 } else { 40 };
        Ok(Opened::Net(Box::new(Network {
            sources,
            egress: Egress::new(raw, senders),
            capture,
            reservation,
            mss: mtu.saturating_sub(overhead).clamp(536, 65495) as u16,
            skipped,
            unroutable,
            stalls: 0,
            own,
            neighbours,
            v6,
            direct,
            on_link,
        })))
    }

    /// Runs host discovery on every on-link group (at `rate` requests per
    /// second, through the drive loop), reports each host once through
    /// `output`, and returns what is left to probe: every direct target and
    /// the hosts that answered.
    pub async fn discover<W: std::io::Write>(
        &mut self,
        rate: u64,
        output: &mut ScanOutput<W>,
        log: Log,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<Discovered, CmdError> {
        let mut targets = std::mem::take(&mut self.direct);
        if self.on_link.is_empty() {
            return Ok(Discovered {
                targets: TargetSet::from_ranges(self.v6, targets),
                summary: None,
            });
        }
        let method = if self.v6 { "NDP" } else { "ARP" };
        let mut summary = DiscoverySummary {
            method: method.into(),
            known_own: self.own,
            known_neighbours: self.neighbours,
            ..DiscoverySummary::default()
        };
        let started = Instant::now();
        let senders = self.egress.links();
        let mut groups = Vec::new();
        let mut captures = Vec::new();
        let mut links = Vec::new();
        for g in std::mem::take(&mut self.on_link) {
            groups.push(OnLinkGroup {
                ifindex: senders[g.link].info.ifindex,
                src: g.src,
                mac: g.mac,
                set: g.set,
            });
            captures.push(g.capture.into_async()?);
            links.push((g.link, g.src));
        }
        let mut machine = DiscoveryMachine::new(groups, rate, DISCOVERY_RETRIES, DISCOVERY_WAIT);
        let mut link = DiscoveryLink::new(senders, captures)?;
        let clock = crate::io::RealClock::new();
        // hosts are reported once discovery is over, in order
        let mut answered = |_: Neighbour| Ok(());
        drive(&mut machine, &mut link, &clock, &mut answered, interrupt).await?;
        self.stalls += link.stalls();
        drop(link);
        for (&(link, src), d) in links.iter().zip(machine.results()) {
            summary.addresses += d.addresses();
            summary.requests += d.requests();
            summary.up += d.up().len() as u64;
            let mut up = d.up().to_vec();
            up.sort_by_key(|n| n.addr);
            for n in &up {
                self.egress.add_neighbour(n.addr, link, n.mac);
                let x = to_u128(n.addr);
                targets.push((x, x));
                output.host(&HostResult {
                    host: n.addr,
                    up: true,
                    method,
                    mac: Some(n.mac),
                    rtt_ns: n.rtt_ns,
                })?;
            }
            for a in d.down() {
                summary.down += 1;
                output.host(&HostResult {
                    host: a,
                    up: false,
                    method,
                    mac: None,
                    rtt_ns: None,
                })?;
            }
            log.debug(|| {
                format!(
                    "discovery from {} on link #{}: {} of {} up",
                    src,
                    link,
                    d.up().len(),
                    d.addresses()
                )
            });
        }
        summary.elapsed_s = started.elapsed().as_secs_f64();
        note!("synscope: {}", summary.line());
        Ok(Discovered {
            targets: TargetSet::from_ranges(self.v6, targets),
            summary: Some(summary),
        })
    }
}
