//! Capture filters for host discovery: ARP messages and Neighbor
//! Solicitations / Advertisements that concern one of our addresses (our own
//! requests, for their kernel send stamps, and the answers to them).

use super::bpf::{Insn, SNAPLEN, op};
use std::net::{Ipv4Addr, Ipv6Addr};

const ETH_P_ARP: u32 = 0x0806;
const ETH_P_IPV6: u32 = 0x86dd;
const PACKET_OUTGOING: u32 = 4;

/// A tiny assembler: loads, equality tests that jump to a label when false,
/// accepts and labels, resolved to relative jumps.
enum Item {
    Load(u16, u32),
    /// Falls through when A == k, else jumps to the label.
    EqOr(u32, usize),
    Accept,
    Label(usize),
}

fn assemble(items: &[Item]) -> Vec<Insn> {
    // position of every label among the emitted instructions
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for i in items {
        match i {
            Item::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let reject = n;
    let mut out = Vec::with_capacity(n + 1);
    for i in items {
        let pc = out.len();
        match *i {
            Item::Load(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Item::EqOr(k, label) => {
                let target = at.get(&label).copied().unwrap_or(reject);
                let jf = target.saturating_sub(pc + 1).min(255) as u8;
                out.push(Insn {
                    code: op::JEQ_K,
                    jt: 0,
                    jf,
                    k,
                });
            }
            Item::Accept => out.push(Insn {
                code: op::RET_K,
                jt: 0,
                jf: 0,
                k: SNAPLEN,
            }),
            Item::Label(_) => {}
        }
    }
    out.push(Insn {
        code: op::RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    out
}

const REJECT: usize = usize::MAX;

/// ARP messages about `local`: replies to it and its own requests.
pub fn arp(local: Ipv4Addr) -> Vec<Insn> {
    use Item::*;
    assemble(&[
        Load(op::LD_H_ABS, op::AD_PROTOCOL),
        EqOr(ETH_P_ARP, REJECT),
        // target protocol address: a reply to us
        Load(op::LD_W_ABS, 24),
        EqOr(u32::from(local), 1),
        Accept,
        Label(1),
        // sender protocol address: our own request
        Load(op::LD_W_ABS, 14),
        EqOr(u32::from(local), REJECT),
        Accept,
    ])
}

/// Neighbor Advertisements to `local` and its own Neighbor Solicitations
/// (ND messages carry no extension headers: ICMPv6 right after 40 bytes).
pub fn ndp(local: Ipv6Addr) -> Vec<Insn> {
    use Item::*;
    let words: Vec<u32> = local
        .octets()
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut p = vec![
        Load(op::LD_H_ABS, op::AD_PROTOCOL),
        EqOr(ETH_P_IPV6, REJECT),
        Load(op::LD_B_ABS, 6),
        EqOr(58, REJECT),
        Load(op::LD_B_ABS, 40),
        EqOr(136, 1),
    ];
    for (i, w) in words.iter().enumerate() {
        p.push(Load(op::LD_W_ABS, 24 + 4 * i as u32));
        p.push(EqOr(*w, REJECT));
    }
    p.push(Accept);
    p.push(Label(1));
    p.push(EqOr(135, REJECT));
    for (i, w) in words.iter().enumerate() {
        p.push(Load(op::LD_W_ABS, 8 + 4 * i as u32));
        p.push(EqOr(*w, REJECT));
    }
    p.push(Accept);
    assemble(&p)
}

/// `program`, behind checks that drop what a capture on every interface
/// would see twice: our own packets leaving (on loopback a reply to
/// ourselves is seen leaving and arriving) and packets on any of `ifindexes`
/// (the ports of a bridge or bond: a reply seen there is seen again on the
/// master it is delivered up to).
pub fn incoming_once(ifindexes: &[u32], program: Vec<Insn>) -> Vec<Insn> {
    incoming_once_or(ifindexes, program, Vec::new())
}

/// [`incoming_once`], except that what it drops goes to `leaving` (none:
/// dropped), which decides: a scan's capture of the resets leaving
/// ([`super::bpf::resets_leaving`]).
pub fn incoming_once_or(ifindexes: &[u32], program: Vec<Insn>, leaving: Vec<Insn>) -> Vec<Insn> {
    let n = ifindexes.len().min(200);
    let ld = |k| Insn {
        code: op::LD_W_ABS,
        jt: 0,
        jf: 0,
        k,
    };
    // every test jumps to the `ret 0` after the last one when true
    let mut out = vec![
        ld(op::AD_PKTTYPE),
        Insn {
            code: op::JEQ_K,
            jt: (n + 2) as u8,
            jf: 0,
            k: PACKET_OUTGOING,
        },
        ld(op::AD_IFINDEX),
    ];
    for (i, &ix) in ifindexes.iter().take(n).enumerate() {
        out.push(Insn {
            code: op::JEQ_K,
            jt: (n - i) as u8,
            jf: 0,
            k: ix,
        });
    }
    // none held: skip the `ret 0`
    out.push(Insn {
        code: op::JA,
        jt: 0,
        jf: 0,
        k: 1,
    });
    out.push(if leaving.is_empty() {
        Insn {
            code: op::RET_K,
            jt: 0,
            jf: 0,
            k: 0,
        }
    } else {
        // over the program, to the test of what leaves
        Insn {
            code: op::JA,
            jt: 0,
            jf: 0,
            k: program.len() as u32,
        }
    });
    out.extend(program);
    out.extend(leaving);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::bpf::run;

    static ARP_REQ: &[u8] = crate::wire::testutil::ARP_REQUEST_V4;
    static ARP_REP: &[u8] = crate::wire::testutil::ARP_REPLY_V4;
    static NS: &[u8] = crate::wire::testutil::NS_V6;
    static NA: &[u8] = crate::wire::testutil::NA_V6;

    #[test]
    fn outgoing_and_bridge_port_copies_are_dropped_before_the_program() {
        let prog = incoming_once(&[7, 9], arp(Ipv4Addr::new(198, 18, 200, 1)));
        assert_eq!((prog[0].k, prog[2].k), (op::AD_PKTTYPE, op::AD_IFINDEX));
        // every test lands on the `ret 0` at 6 when true
        for (at, k) in [(1, 4), (3, 7), (4, 9)] {
            assert_eq!((prog[at].code, prog[at].k), (op::JEQ_K, k));
            assert_eq!(at + 1 + prog[at].jt as usize, 6, "test at {at}");
            assert_eq!(prog[at].jf, 0);
        }
        // none held: the jump over it lands on the program's first instruction
        assert_eq!((prog[5].code, prog[5].k), (op::JA, 1));
        assert_eq!((prog[6].code, prog[6].k), (op::RET_K, 0));
        assert_eq!(prog[7], arp(Ipv4Addr::new(198, 18, 200, 1))[0]);
        // the interpreter sees an incoming packet on no interface: the program decides
        assert_eq!(run(&prog, ARP_REP, 0x0806), SNAPLEN);
        assert_eq!(run(&incoming_once(&[], vec![]), ARP_REP, 0x0806), 0);
    }

    #[test]
    fn what_leaves_goes_to_the_leaving_program() {
        use crate::io::bpf::{resets_leaving, run_as};
        use crate::wire::testutil::fixture;
        // the kernel's RST from 198.18.0.2:81, and a SYN from 198.18.0.1:53190
        let (rst, syn) = (fixture("rst_v4"), fixture("syn_v4"));
        let leaving = resets_leaving(&["198.18.0.2".parse().unwrap()], 81);
        let prog = incoming_once_or(&[7], arp(Ipv4Addr::new(198, 18, 200, 1)), leaving.clone());
        assert_eq!(run_as(&prog, rst, 0x0800, PACKET_OUTGOING), SNAPLEN);
        // incoming, it is the program's to judge (ARP only: dropped)
        assert_eq!(run_as(&prog, rst, 0x0800, 0), 0);
        assert_eq!(run_as(&prog, ARP_REP, 0x0806, 0), SNAPLEN);
        assert_eq!(run_as(&prog, ARP_REP, 0x0806, PACKET_OUTGOING), 0);
        // a SYN leaving is not a reset
        let ours = resets_leaving(&["198.18.0.1".parse().unwrap()], 53190);
        assert_eq!(run_as(&ours, syn, 0x0800, PACKET_OUTGOING), 0);
        // nor another port's, another source's, or another family's
        for other in [
            resets_leaving(&["198.18.0.2".parse().unwrap()], 82),
            resets_leaving(&["198.18.0.3".parse().unwrap()], 81),
        ] {
            assert_eq!(run_as(&other, rst, 0x0800, PACKET_OUTGOING), 0);
        }
        assert_eq!(run_as(&leaving, rst, 0x86dd, PACKET_OUTGOING), 0);
        // IPv6, several sources
        let v6 = resets_leaving(
            &[
                "198.18.0.9".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ],
            81,
        );
        assert_eq!(
            run_as(&v6, fixture("rst_v6"), 0x86dd, PACKET_OUTGOING),
            SNAPLEN
        );
        assert_eq!(
            run_as(&v6, &fixture("rst_v6")[..50], 0x86dd, PACKET_OUTGOING),
            0
        );
        assert_eq!(run_as(&v6, fixture("syn_v6"), 0x86dd, PACKET_OUTGOING), 0);
    }

    #[test]
    fn arp_of_our_address_only() {
        let ours = arp(Ipv4Addr::new(198, 18, 200, 1));
        assert_eq!(run(&ours, ARP_REQ, 0x0806), SNAPLEN);
        assert_eq!(run(&ours, ARP_REP, 0x0806), SNAPLEN);
        assert_eq!(run(&ours, ARP_REP, 0x0800), 0);
        assert_eq!(run(&ours, &ARP_REP[..20], 0x0806), 0);
        let other = arp(Ipv4Addr::new(198, 18, 200, 9));
        assert_eq!(run(&other, ARP_REQ, 0x0806), 0);
        assert_eq!(run(&other, ARP_REP, 0x0806), 0);
    }

    #[test]
    fn ndp_of_our_address_only() {
        let ours = ndp("2001:db8:200::1".parse().unwrap());
        assert_eq!(run(&ours, NS, 0x86dd), SNAPLEN);
        assert_eq!(run(&ours, NA, 0x86dd), SNAPLEN);
        assert_eq!(run(&ours, NA, 0x0806), 0);
        let other = ndp("2001:db8:200::9".parse().unwrap());
        assert_eq!(run(&other, NS, 0x86dd), 0);
        assert_eq!(run(&other, NA, 0x86dd), 0);
        // the host we asked sees our NS: not ours to capture there
        let target = ndp("2001:db8:200::2".parse().unwrap());
        assert_eq!(run(&target, NS, 0x86dd), 0);
        assert_eq!(
            run(&ours, crate::wire::testutil::fixture("synack_v6"), 0x86dd),
            0
        );
    }
}
