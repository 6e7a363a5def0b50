//! Classic BPF filters for the capture socket, so the kernel wakes us only for
//! our own flows. Programs run on AF_PACKET/SOCK_DGRAM sockets, where offset 0
//! is the network header. Pure: compiled here, attached in [`super::capture`].

use std::net::IpAddr;

/// One cBPF instruction (same layout as `struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

pub(crate) mod op {
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_H_ABS: u16 = 0x28;
    pub const LD_B_ABS: u16 = 0x30;
    pub const LD_H_IND: u16 = 0x48;
    pub const LDX_B_MSH: u16 = 0xb1;
    pub const JEQ_K: u16 = 0x15;
    pub const JGE_K: u16 = 0x35;
    pub const JGT_K: u16 = 0x25;
    pub const RET_K: u16 = 0x06;
    /// Ancillary load of skb->protocol (host order).
    pub const AD_PROTOCOL: u32 = (-0x1000i32) as u32;
    /// Ancillary load of the interface index the packet was seen on.
    pub const AD_IFINDEX: u32 = (-0x1000i32 + 8) as u32;
    /// Ancillary load of the packet type (4 = outgoing).
    pub const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
    pub const JA: u16 = 0x05;
}

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
/// Bytes kept of each accepted packet.
pub const SNAPLEN: u32 = 65535;

/// What the capture socket should let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFilter {
    /// Our own address.
    pub local: IpAddr,
    /// The peer, or any peer.
    pub remote: Option<IpAddr>,
    /// The peer's TCP/UDP port, or any.
    pub remote_port: Option<u16>,
    /// Our ports (inclusive range), or any.
    pub local_ports: Option<(u16, u16)>,
    /// Transport protocol (TCP or UDP).
    pub protocol: u8,
    /// Also let through our own packets to the remote (to timestamp our sends).
    pub outbound: bool,
}

/// A check that either holds (fall through) or fails (jump to the next alternative).
enum Check {
    Proto(u32),
    Byte(u32, u32),
    Word(u32, u32),
    /// A 16-bit port at this offset of the transport header, within a range.
    /// For IPv4 the transport offset comes from the IHL (`ldx 4*([0]&0xf)`).
    Port {
        v4: bool,
        off: u32,
        lo: u16,
        hi: u16,
    },
}

impl Check {
    fn compile(&self, fail: u8, out: &mut Vec<Insn>) {
        // `fail` is the distance from *after* this check's first jump to the
        // next alternative; each later jump in the same check is one closer.
        let mut push = |code, jt, jf, k| out.push(Insn { code, jt, jf, k });
        match *self {
            Check::Proto(p) => {
                push(op::LD_H_ABS, 0, 0, op::AD_PROTOCOL);
                push(op::JEQ_K, 0, fail, p);
            }
            Check::Byte(off, v) => {
                push(op::LD_B_ABS, 0, 0, off);
                push(op::JEQ_K, 0, fail, v);
            }
            Check::Word(off, v) => {
                push(op::LD_W_ABS, 0, 0, off);
                push(op::JEQ_K, 0, fail, v);
            }
            Check::Port { v4, off, lo, hi } => {
                if v4 {
                    push(op::LDX_B_MSH, 0, 0, 0);
                    push(op::LD_H_IND, 0, 0, off);
                } else {
                    push(op::LD_H_ABS, 0, 0, 40 + off);
                }
                push(op::JGE_K, 0, fail, lo as u32);
                push(op::JGT_K, fail.saturating_sub(1), 0, hi as u32);
            }
        }
    }

    /// Instructions this check compiles to.
    fn len(&self) -> usize {
        match self {
            Check::Port { v4: true, .. } => 4,
            Check::Port { v4: false, .. } => 3,
            _ => 2,
        }
    }
}

fn addr_checks(addr: IpAddr, src: bool, out: &mut Vec<Check>) {
    match addr {
        IpAddr::V4(a) => out.push(Check::Word(if src { 12 } else { 16 }, u32::from(a))),
        IpAddr::V6(a) => {
            let base = if src { 8 } else { 24 };
            for (i, c) in a.octets().chunks(4).enumerate() {
                out.push(Check::Word(
                    base + 4 * i as u32,
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                ));
            }
        }
    }
}

impl FlowFilter {
    /// The cBPF program: accept (a) transport packets from the remote to us,
    /// (b) ours to the remote (to timestamp our own sends), (c) ICMP errors to us.
    pub fn compile(&self) -> Vec<Insn> {
        let v4 = self.local.is_ipv4();
        let (proto, proto_off, icmp) = if v4 {
            (ETH_P_IP, 9, 1)
        } else {
            (ETH_P_IPV6, 6, 58)
        };
        let any = (0, u16::MAX);
        let local_ports = self.local_ports.unwrap_or(any);
        let remote_ports = self.remote_port.map(|p| (p, p)).unwrap_or(any);
        let mut alternatives: Vec<Vec<Check>> = Vec::new();
        let directions: &[bool] = if self.outbound {
            &[true, false]
        } else {
            &[true]
        };
        for &inbound in directions {
            let mut c = vec![
                Check::Proto(proto),
                Check::Byte(proto_off, self.protocol as u32),
            ];
            let (src, dst) = if inbound {
                (self.remote, Some(self.local))
            } else {
                (Some(self.local), self.remote)
            };
            if let Some(s) = src {
                addr_checks(s, true, &mut c);
            }
            if let Some(d) = dst {
                addr_checks(d, false, &mut c);
            }
            let (sp, dp) = if inbound {
                (remote_ports, local_ports)
            } else {
                (local_ports, remote_ports)
            };
            for (off, (lo, hi)) in [(0, sp), (2, dp)] {
                if (lo, hi) != any {
                    c.push(Check::Port { v4, off, lo, hi });
                }
            }
            alternatives.push(c);
        }
        let mut c = vec![Check::Proto(proto), Check::Byte(proto_off, icmp)];
        addr_checks(self.local, false, &mut c);
        alternatives.push(c);

        let mut out = Vec::new();
        for alt in &alternatives {
            let total: usize = alt.iter().map(Check::len).sum::<usize>() + 1; // + accept
            let mut used = 0;
            for check in alt {
                // distance from after the check's first conditional jump to the end of this alternative
                let first_jump_end = used + check.len()
                    - if matches!(check, Check::Port { .. }) {
                        1
                    } else {
                        0
                    };
                let fail = (total - first_jump_end) as u8;
                check.compile(fail, &mut out);
                used += check.len();
            }
            out.push(Insn {
                code: op::RET_K,
                jt: 0,
                jf: 0,
                k: SNAPLEN,
            });
        }
        out.push(Insn {
            code: op::RET_K,
            jt: 0,
            jf: 0,
            k: 0,
        });
        out
    }
}

/// One program that accepts what any of `filters` accepts (a scan's probes
/// leave from several source addresses). Each program's alternatives fall
/// through to the next on failure and end in one `ret 0`, so the programs are
/// chained by dropping every final `ret 0` but the last.
pub fn compile_any(filters: &[FlowFilter]) -> Vec<Insn> {
    let mut out = Vec::new();
    for f in filters {
        let mut p = f.compile();
        p.pop();
        out.extend(p);
    }
    out.push(Insn {
        code: op::RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    out
}

/// Runs a program the way the kernel would on a SOCK_DGRAM packet socket, for
/// tests: returns the number of bytes to keep (0 = drop). Only the opcodes this
/// module emits are supported; anything else drops.
pub fn run(prog: &[Insn], packet: &[u8], skb_protocol: u16) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let load = |off: usize, n: usize| {
        packet
            .get(off..off + n)
            .map(|b| b.iter().fold(0u32, |v, &b| v << 8 | b as u32))
    };
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            op::LD_H_ABS if i.k == op::AD_PROTOCOL => a = skb_protocol as u32,
            // in tests: an incoming packet (type 0) on no interface (0)
            op::LD_W_ABS if i.k == op::AD_IFINDEX || i.k == op::AD_PKTTYPE => a = 0,
            op::JA => pc += i.k as usize,
            op::LD_W_ABS | op::LD_H_ABS | op::LD_B_ABS => {
                let n = match i.code {
                    op::LD_W_ABS => 4,
                    op::LD_H_ABS => 2,
                    _ => 1,
                };
                match load(i.k as usize, n) {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
            op::LD_H_IND => match load(x as usize + i.k as usize, 2) {
                Some(v) => a = v,
                None => return 0,
            },
            op::LDX_B_MSH => match load(i.k as usize, 1) {
                Some(v) => x = (v & 0xf) * 4,
                None => return 0,
            },
            op::JEQ_K => pc += jump(a == i.k),
            op::JGE_K => pc += jump(a >= i.k),
            op::JGT_K => pc += jump(a > i.k),
            op::RET_K => return i.k,
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::datagram::tests::fixture;

    fn filter(local: &str, remote: &str, port: u16) -> Vec<Insn> {
        FlowFilter {
            local: local.parse().unwrap(),
            remote: Some(remote.parse().unwrap()),
            remote_port: Some(port),
            local_ports: None,
            protocol: 6,
            outbound: true,
        }
        .compile()
    }

    #[test]
    fn v4_accepts_both_directions_and_icmp_rejects_others() {
        let f = filter("198.18.0.1", "198.18.0.2", 80);
        assert_eq!(run(&f, fixture("syn_v4"), 0x0800), SNAPLEN);
        assert_eq!(run(&f, fixture("synack_v4"), 0x0800), SNAPLEN);
        assert_eq!(run(&f, fixture("icmp_admin_v4"), 0x0800), SNAPLEN);
        // the RST came from port 81, not 80
        assert_eq!(run(&f, fixture("rst_v4"), 0x0800), 0);
        assert_eq!(run(&f, fixture("syn_v6"), 0x86dd), 0);
        // wrong skb protocol (e.g. ARP) never matches
        assert_eq!(run(&f, fixture("synack_v4"), 0x0806), 0);
        let other = filter("198.18.0.1", "198.18.0.3", 80);
        assert_eq!(run(&other, fixture("synack_v4"), 0x0800), 0);
        let rst = filter("198.18.0.1", "198.18.0.2", 81);
        assert_eq!(run(&rst, fixture("rst_v4"), 0x0800), SNAPLEN);
    }

    #[test]
    fn v6_accepts_both_directions_and_icmp6() {
        let f = filter("2001:db8::1", "2001:db8::2", 80);
        assert_eq!(run(&f, fixture("syn_v6"), 0x86dd), SNAPLEN);
        assert_eq!(run(&f, fixture("synack_v6"), 0x86dd), SNAPLEN);
        assert_eq!(run(&f, fixture("icmp6_admin_v6"), 0x86dd), SNAPLEN);
        assert_eq!(run(&f, fixture("rst_v6"), 0x86dd), 0);
        let wrong_local = filter("2001:db8::5", "2001:db8::2", 80);
        assert_eq!(run(&wrong_local, fixture("synack_v6"), 0x86dd), 0);
    }

    #[test]
    fn local_port_ranges() {
        let mut f = FlowFilter {
            local: "198.18.0.1".parse().unwrap(),
            remote: None,
            remote_port: None,
            local_ports: Some((53000, 53190)),
            protocol: 6,
            outbound: true,
        };
        // synack_v4 goes to port 53190
        assert_eq!(run(&f.compile(), fixture("synack_v4"), 0x0800), SNAPLEN);
        f.local_ports = Some((53191, 60000));
        assert_eq!(run(&f.compile(), fixture("synack_v4"), 0x0800), 0);
        f.local_ports = Some((50000, 53189));
        assert_eq!(run(&f.compile(), fixture("synack_v4"), 0x0800), 0);
        // inbound only: our own SYN (from port 53190) is not captured
        f.local_ports = Some((53190, 53190));
        f.outbound = false;
        assert_eq!(run(&f.compile(), fixture("synack_v4"), 0x0800), SNAPLEN);
        assert_eq!(run(&f.compile(), fixture("syn_v4"), 0x0800), 0);
    }

    #[test]
    fn several_local_addresses() {
        let one = |local: &str| FlowFilter {
            local: local.parse().unwrap(),
            remote: None,
            remote_port: None,
            local_ports: None,
            protocol: 6,
            outbound: false,
        };
        let f = compile_any(&[one("127.0.0.1"), one("198.18.0.1")]);
        assert_eq!(run(&f, fixture("synack_v4"), 0x0800), SNAPLEN);
        assert_eq!(run(&f, fixture("icmp_admin_v4"), 0x0800), SNAPLEN);
        let f = compile_any(&[one("198.18.0.1"), one("127.0.0.1")]);
        assert_eq!(run(&f, fixture("synack_v4"), 0x0800), SNAPLEN);
        let f = compile_any(&[one("127.0.0.1"), one("198.18.0.9")]);
        assert_eq!(run(&f, fixture("synack_v4"), 0x0800), 0);
        assert_eq!(run(&f, fixture("icmp_admin_v4"), 0x0800), 0);
    }

    #[test]
    fn truncated_packets_are_dropped_not_read_past() {
        let f = filter("198.18.0.1", "198.18.0.2", 80);
        assert_eq!(run(&f, &fixture("synack_v4")[..21], 0x0800), 0);
    }
}
