//! Classic BPF filters for the capture socket, so the kernel wakes us only for
//! our own flows. Programs run on AF_PACKET/SOCK_DGRAM sockets, where offset 0
//! is the network header. Pure: compiled here, attached in [`super::capture`].
//!
//! What a filter lets through, for one local address and one transport:
//! - replies: from the remote (or anyone) to us, on the ports asked for. On
//!   IPv6 the extension-header chain is walked first: Hop-by-Hop, Routing,
//!   Destination Options, Authentication and atomic Fragment headers are
//!   skipped by their lengths. cBPF cannot loop, so the walk is unrolled for
//!   [`BPF_EXT_HEADERS`] headers; a longer chain is let through by its
//!   addresses alone and read in user space (which walks up to
//!   [`crate::wire::ip::MAX_EXT_HEADERS`]).
//! - fragments of such replies: later fragments carry no transport header, so
//!   every fragment (IPv4 MF or offset, IPv6 Fragment header with M or an
//!   offset) is matched by its addresses and protocol; the capture layer
//!   reassembles them ([`crate::wire::reassembly`]).
//! - from the remote to us, what nobody can read: ESP, IPv6 No Next Header, the
//!   experimental protocol numbers 253 and 254; user space counts them as
//!   unreadable instead of losing them in silence. (Other protocols are other
//!   flows and stay out.)
//! - ICMP / ICMPv6 from anyone to us (errors come from routers too).
//! - with `outbound`, our own packets to the remote (to timestamp our sends);
//!   we build those ourselves, without extension headers or fragments.

use std::net::{IpAddr, SocketAddr};

/// One cBPF instruction (same layout as `struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class, size, mode / operation, source.
    pub code: u16,
    /// Instructions to skip when a conditional jump is true.
    pub jt: u8,
    /// Instructions to skip when it is false.
    pub jf: u8,
    /// The operand (constant, offset, jump distance).
    pub k: u32,
}

pub(crate) mod op {
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_H_ABS: u16 = 0x28;
    pub const LD_B_ABS: u16 = 0x30;
    pub const LD_H_IND: u16 = 0x48;
    pub const LD_B_IND: u16 = 0x50;
    pub const LD_MEM: u16 = 0x60;
    pub const LDX_IMM: u16 = 0x01;
    pub const LDX_B_MSH: u16 = 0xb1;
    pub const ST: u16 = 0x02;
    pub const ADD_K: u16 = 0x04;
    pub const ADD_X: u16 = 0x0c;
    pub const LSH_K: u16 = 0x64;
    pub const TAX: u16 = 0x07;
    pub const TXA: u16 = 0x87;
    pub const JA: u16 = 0x05;
    pub const JEQ_K: u16 = 0x15;
    pub const JGE_K: u16 = 0x35;
    pub const JGT_K: u16 = 0x25;
    pub const JSET_K: u16 = 0x45;
    pub const RET_K: u16 = 0x06;
    /// Ancillary load of skb->protocol (host order).
    pub const AD_PROTOCOL: u32 = (-0x1000i32) as u32;
    /// Ancillary load of the interface index the packet was seen on.
    pub const AD_IFINDEX: u32 = (-0x1000i32 + 8) as u32;
    /// Ancillary load of the packet type (4 = outgoing).
    pub const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
}

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
/// Bytes kept of each accepted packet.
pub const SNAPLEN: u32 = 65535;
/// IPv6 extension headers the filter walks before letting a packet through
/// by its addresses alone.
pub const BPF_EXT_HEADERS: usize = 6;

const ICMP: u32 = 1;
const ICMPV6: u32 = 58;
const ESP: u32 = 50;
/// Next headers whose content synscope cannot read (ESP, No Next Header,
/// experimental): let through from the remote to be counted.
const OPAQUE: [u32; 4] = [ESP, 59, 253, 254];
/// IPv6 extension headers with a (len + 1) * 8 length.
const EXT_8: [u32; 3] = [0, 43, 60];
const FRAGMENT: u32 = 44;
const AUTH: u32 = 51;

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

/// A jump target: the next instruction, or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    L(usize),
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Op(u16, u32),
    Jump(u16, u32, To, To),
    Ja(usize),
    Mark(usize),
}

/// A tiny cBPF assembler with forward labels. Conditional jumps reach at most
/// 255 instructions; farther ones go through an unconditional `ja` placed
/// right after them.
#[derive(Debug, Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Op(code, k));
    }
    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.items.push(Item::Jump(code, k, jt, jf));
    }
    /// `if A == k goto l`.
    fn jeq_to(&mut self, k: u32, l: usize) {
        self.jump(op::JEQ_K, k, To::L(l), To::Next);
    }
    /// `if A != k goto l`.
    fn jne_to(&mut self, k: u32, l: usize) {
        self.jump(op::JEQ_K, k, To::Next, To::L(l));
    }
    fn ja(&mut self, l: usize) {
        self.items.push(Item::Ja(l));
    }
    fn mark(&mut self, l: usize) {
        self.items.push(Item::Mark(l));
    }

    fn positions(&self) -> Vec<usize> {
        let mut pos = vec![0; self.labels];
        let mut n = 0;
        for it in &self.items {
            match it {
                Item::Mark(l) => pos[*l] = n,
                _ => n += 1,
            }
        }
        pos
    }

    /// Lays the program out. Every jump in this module goes forward.
    fn finish(mut self) -> Vec<Insn> {
        // give far conditional jumps a trampoline, until none is left
        for _ in 0..=self.items.len() {
            let pos = self.positions();
            let far = |n: usize, to: To| match to {
                To::L(l) => pos[l] > n + 1 + u8::MAX as usize,
                To::Next => false,
            };
            let mut n = 0;
            let mut fix = None;
            for (i, it) in self.items.iter().enumerate() {
                match *it {
                    Item::Mark(_) => continue,
                    Item::Jump(_, _, jt, jf) if far(n, jt) || far(n, jf) => {
                        fix = Some(i);
                        break;
                    }
                    _ => {}
                }
                n += 1;
            }
            let Some(i) = fix else {
                break;
            };
            let Item::Jump(code, k, jt, jf) = self.items[i] else {
                break;
            };
            let pos_i = pos_of(&self.items, i);
            let mut tail = Vec::new();
            let relink = |to: To, this: &mut Self, tail: &mut Vec<Item>| match to {
                To::L(l) if pos[l] > pos_i + 1 + u8::MAX as usize => {
                    let near = this.label();
                    tail.push(Item::Mark(near));
                    tail.push(Item::Ja(l));
                    To::L(near)
                }
                other => other,
            };
            let jt2 = relink(jt, &mut self, &mut tail);
            let jf2 = relink(jf, &mut self, &mut tail);
            // a branch that fell through now has to jump over the trampolines
            let after = self.label();
            tail.push(Item::Mark(after));
            let next = |to: To| if to == To::Next { To::L(after) } else { to };
            self.items[i] = Item::Jump(code, k, next(jt2), next(jf2));
            self.items.splice(i + 1..i + 1, tail);
        }
        let pos = self.positions();
        let mut out = Vec::new();
        for it in &self.items {
            let n = out.len();
            let dist = |to: To| match to {
                To::Next => 0,
                To::L(l) => pos[l]
                    .checked_sub(n + 1)
                    .expect("cBPF jumps go forward (layout bug)"),
            };
            match *it {
                Item::Mark(_) => {}
                Item::Op(code, k) => out.push(Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                }),
                Item::Ja(l) => out.push(Insn {
                    code: op::JA,
                    jt: 0,
                    jf: 0,
                    k: dist(To::L(l)) as u32,
                }),
                Item::Jump(code, k, jt, jf) => out.push(Insn {
                    code,
                    jt: u8::try_from(dist(jt)).expect("near jump (layout bug)"),
                    jf: u8::try_from(dist(jf)).expect("near jump (layout bug)"),
                    k,
                }),
            }
        }
        out
    }
}

/// The instruction index item `i` will have.
fn pos_of(items: &[Item], i: usize) -> usize {
    items[..i]
        .iter()
        .filter(|it| !matches!(it, Item::Mark(_)))
        .count()
}

/// `addr` at the source (or destination) address field, else goto `fail`.
fn addr_is(a: &mut Asm, addr: IpAddr, src: bool, fail: usize) {
    match addr {
        IpAddr::V4(v4) => {
            a.op(op::LD_W_ABS, if src { 12 } else { 16 });
            a.jne_to(u32::from(v4), fail);
        }
        IpAddr::V6(v6) => {
            let base = if src { 8 } else { 24 };
            for (i, c) in v6.octets().chunks(4).enumerate() {
                a.op(op::LD_W_ABS, base + 4 * i as u32);
                a.jne_to(u32::from_be_bytes([c[0], c[1], c[2], c[3]]), fail);
            }
        }
    }
}

/// The 16-bit port at `off` of the transport header within [lo, hi], else
/// goto `fail`. `load` is LD_H_IND (X holds the transport offset) or LD_H_ABS
/// (`base` is the transport offset).
fn port_in(a: &mut Asm, load: u16, base: u32, off: u32, (lo, hi): (u16, u16), fail: usize) {
    if (lo, hi) == (0, u16::MAX) {
        return;
    }
    a.op(load, base + off);
    a.jump(op::JGE_K, lo as u32, To::Next, To::L(fail));
    a.jump(op::JGT_K, hi as u32, To::L(fail), To::Next);
}

impl FlowFilter {
    /// One flow over `protocol`: our packets from `local` to `remote` (let
    /// through to stamp our sends) and the remote's answers. Port 0 in
    /// `local`: any of our ports.
    pub fn flow(local: SocketAddr, remote: SocketAddr, protocol: u8) -> FlowFilter {
        FlowFilter {
            local: local.ip(),
            remote: Some(remote.ip()),
            remote_port: Some(remote.port()),
            local_ports: match local.port() {
                0 => None,
                p => Some((p, p)),
            },
            protocol,
            outbound: true,
        }
    }

    fn ports(&self, inbound: bool) -> ((u16, u16), (u16, u16)) {
        let any = (0, u16::MAX);
        let local = self.local_ports.unwrap_or(any);
        let remote = self.remote_port.map(|p| (p, p)).unwrap_or(any);
        if inbound {
            (remote, local)
        } else {
            (local, remote)
        }
    }

    /// The source is the remote (when one is set), else goto `fail`.
    fn source_is_remote(&self, a: &mut Asm, fail: usize) {
        if let Some(r) = self.remote {
            addr_is(a, r, true, fail);
        }
    }

    /// Replies, fragments, ESP and ICMP to us over IPv4.
    fn inbound_v4(&self, a: &mut Asm, accept: usize, fail: usize) {
        let proto = self.protocol as u32;
        let (frag, ports) = (a.label(), a.label());
        addr_is(a, self.local, false, fail);
        a.op(op::LD_H_ABS, 6);
        a.jump(op::JSET_K, 0x3fff, To::L(frag), To::Next); // MF or an offset
        a.op(op::LD_B_ABS, 9);
        a.jeq_to(ICMP, accept);
        self.source_is_remote(a, fail);
        a.op(op::LD_B_ABS, 9);
        a.jeq_to(proto, ports);
        for t in OPAQUE {
            a.jeq_to(t, accept);
        }
        a.ja(fail);
        a.mark(ports);
        let (sp, dp) = self.ports(true);
        a.op(op::LDX_B_MSH, 0);
        port_in(a, op::LD_H_IND, 0, 0, sp, fail);
        port_in(a, op::LD_H_IND, 0, 2, dp, fail);
        a.ja(accept);
        // a fragment: by addresses and protocol
        a.mark(frag);
        a.op(op::LD_B_ABS, 9);
        a.jne_to(proto, fail);
        self.source_is_remote(a, fail);
        a.ja(accept);
    }

    /// The same over IPv6, after walking the extension headers. X holds the
    /// offset of the header at hand, A its type; M[0] and M[1] are scratch.
    fn inbound_v6(&self, a: &mut Asm, accept: usize, fail: usize) {
        let proto = self.protocol as u32;
        let (done, frag, loose, ports) = (a.label(), a.label(), a.label(), a.label());
        addr_is(a, self.local, false, fail);
        a.op(op::LD_B_ABS, 6);
        a.op(op::LDX_IMM, 40);
        for _ in 0..BPF_EXT_HEADERS {
            let (ext8, auth, skip, fragment, next) =
                (a.label(), a.label(), a.label(), a.label(), a.label());
            for t in EXT_8 {
                a.jeq_to(t, ext8);
            }
            a.jeq_to(FRAGMENT, fragment);
            a.jeq_to(AUTH, auth);
            a.ja(done);
            // X += (len + 1) * 8
            a.mark(ext8);
            a.op(op::LD_B_IND, 0);
            a.op(op::ST, 0);
            a.op(op::LD_B_IND, 1);
            a.op(op::ADD_K, 1);
            a.op(op::LSH_K, 3);
            a.ja(skip);
            // X += (len + 2) * 4
            a.mark(auth);
            a.op(op::LD_B_IND, 0);
            a.op(op::ST, 0);
            a.op(op::LD_B_IND, 1);
            a.op(op::ADD_K, 2);
            a.op(op::LSH_K, 2);
            a.mark(skip);
            a.op(op::ADD_X, 0);
            a.op(op::TAX, 0);
            a.op(op::LD_MEM, 0);
            a.ja(next);
            // a fragment of a larger datagram (M or an offset) is matched
            // as such; an atomic one is skipped like any other header
            a.mark(fragment);
            a.op(op::LD_H_IND, 2);
            a.jump(op::JSET_K, 0xfff9, To::L(frag), To::Next);
            a.op(op::LD_B_IND, 0);
            a.op(op::ST, 0);
            a.op(op::TXA, 0);
            a.op(op::ADD_K, 8);
            a.op(op::TAX, 0);
            a.op(op::LD_MEM, 0);
            a.mark(next);
        }
        // still an extension header after the unrolled walk: too deep for cBPF
        for t in EXT_8.into_iter().chain([FRAGMENT, AUTH]) {
            a.jeq_to(t, loose);
        }
        // A: the upper-layer protocol, X: its offset
        a.mark(done);
        a.jeq_to(ICMPV6, accept);
        a.op(op::ST, 1);
        self.source_is_remote(a, fail);
        a.op(op::LD_MEM, 1);
        a.jeq_to(proto, ports);
        for t in OPAQUE {
            a.jeq_to(t, accept);
        }
        a.ja(fail);
        a.mark(ports);
        let (sp, dp) = self.ports(true);
        port_in(a, op::LD_H_IND, 0, 0, sp, fail);
        port_in(a, op::LD_H_IND, 0, 2, dp, fail);
        a.ja(accept);
        // a fragment: by its Fragment header's next header and the addresses
        a.mark(frag);
        a.op(op::LD_B_IND, 0);
        a.jeq_to(ICMPV6, accept);
        for t in [proto, ESP, AUTH, 60] {
            a.jeq_to(t, loose);
        }
        a.ja(fail);
        a.mark(loose);
        self.source_is_remote(a, fail);
        a.ja(accept);
    }

    /// Our own packets to the remote: built by us, so fixed offsets.
    fn outbound(&self, a: &mut Asm, accept: usize, fail: usize) {
        let v4 = self.local.is_ipv4();
        a.op(op::LD_B_ABS, if v4 { 9 } else { 6 });
        a.jne_to(self.protocol as u32, fail);
        addr_is(a, self.local, true, fail);
        if let Some(r) = self.remote {
            addr_is(a, r, false, fail);
        }
        let (sp, dp) = self.ports(false);
        let (load, base) = if v4 {
            a.op(op::LDX_B_MSH, 0);
            (op::LD_H_IND, 0)
        } else {
            (op::LD_H_ABS, 40)
        };
        port_in(a, load, base, 0, sp, fail);
        port_in(a, load, base, 2, dp, fail);
        a.ja(accept);
    }

    /// The cBPF program (see the module documentation for what it accepts).
    pub fn compile(&self) -> Vec<Insn> {
        compile_any(std::slice::from_ref(self))
    }

    /// This filter's tests: goto `accept` when the packet matches, else goto
    /// (or fall through to) `reject`.
    fn emit(&self, a: &mut Asm, accept: usize, reject: usize) {
        let not_inbound = a.label();
        let v4 = self.local.is_ipv4();
        a.op(op::LD_H_ABS, op::AD_PROTOCOL);
        a.jne_to(if v4 { ETH_P_IP } else { ETH_P_IPV6 }, reject);
        if v4 {
            self.inbound_v4(a, accept, not_inbound);
        } else {
            self.inbound_v6(a, accept, not_inbound);
        }
        a.mark(not_inbound);
        if self.outbound {
            self.outbound(a, accept, reject);
        }
        a.ja(reject);
    }
}

/// One program that accepts what any of `filters` accepts (a scan's probes
/// leave from several source addresses): each filter's tests fall through to
/// the next filter's when they fail, and all share one accept and one reject.
pub fn compile_any(filters: &[FlowFilter]) -> Vec<Insn> {
    let mut a = Asm::default();
    let accept = a.label();
    for f in filters {
        let next = a.label();
        f.emit(&mut a, accept, next);
        a.mark(next);
    }
    a.op(op::RET_K, 0);
    a.mark(accept);
    a.op(op::RET_K, SNAPLEN);
    a.finish()
}

/// A program that accepts the TCP resets leaving from `sport` of any of
/// `sources` (a scan's: the kernel's RSTs to SYN-ACKs, and ours), and
/// nothing else. Both are built by a local stack: IPv4 with any header
/// length, IPv6 with TCP right after the fixed header.
pub fn resets_leaving(sources: &[IpAddr], sport: u16) -> Vec<Insn> {
    const RST: u32 = 0x04;
    let mut a = Asm::default();
    let accept = a.label();
    for &src in sources {
        let next = a.label();
        let v4 = src.is_ipv4();
        a.op(op::LD_H_ABS, op::AD_PROTOCOL);
        a.jne_to(if v4 { ETH_P_IP } else { ETH_P_IPV6 }, next);
        a.op(op::LD_B_ABS, if v4 { 9 } else { 6 });
        a.jne_to(6, next);
        addr_is(&mut a, src, true, next);
        let (load, base) = if v4 {
            a.op(op::LDX_B_MSH, 0);
            (op::LD_H_IND, 0)
        } else {
            (op::LD_H_ABS, 40)
        };
        port_in(&mut a, load, base, 0, (sport, sport), next);
        a.op(if v4 { op::LD_B_IND } else { op::LD_B_ABS }, base + 13);
        a.jump(op::JSET_K, RST, To::L(accept), To::L(next));
        a.mark(next);
    }
    a.op(op::RET_K, 0);
    a.mark(accept);
    a.op(op::RET_K, SNAPLEN);
    a.finish()
}

/// Runs a program the way the kernel would on a SOCK_DGRAM packet socket, for
/// tests: returns the number of bytes to keep (0 = drop). Only the opcodes this
/// module emits are supported; anything else drops.
pub fn run(prog: &[Insn], packet: &[u8], skb_protocol: u16) -> u32 {
    run_as(prog, packet, skb_protocol, 0)
}

/// [`run`] on a packet of type `pkttype` (4: one leaving).
pub fn run_as(prog: &[Insn], packet: &[u8], skb_protocol: u16, pkttype: u32) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut mem = [0u32; 16];
    let load = |off: usize, n: usize| {
        packet
            .get(off..off.checked_add(n)?)
            .map(|b| b.iter().fold(0u32, |v, &b| v << 8 | b as u32))
    };
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        let size = |code: u16| match code & 0x18 {
            0x00 => 4,
            0x08 => 2,
            _ => 1,
        };
        match i.code {
            op::LD_H_ABS if i.k == op::AD_PROTOCOL => a = skb_protocol as u32,
            // in tests: a packet of `pkttype` on no interface (0)
            op::LD_W_ABS if i.k == op::AD_IFINDEX => a = 0,
            op::LD_W_ABS if i.k == op::AD_PKTTYPE => a = pkttype,
            op::LD_W_ABS | op::LD_H_ABS | op::LD_B_ABS => match load(i.k as usize, size(i.code)) {
                Some(v) => a = v,
                None => return 0,
            },
            op::LD_H_IND | op::LD_B_IND => match load(x as usize + i.k as usize, size(i.code)) {
                Some(v) => a = v,
                None => return 0,
            },
            op::LD_MEM => match mem.get(i.k as usize) {
                Some(&v) => a = v,
                None => return 0,
            },
            op::ST => match mem.get_mut(i.k as usize) {
                Some(m) => *m = a,
                None => return 0,
            },
            op::LDX_IMM => x = i.k,
            op::LDX_B_MSH => match load(i.k as usize, 1) {
                Some(v) => x = (v & 0xf) * 4,
                None => return 0,
            },
            op::ADD_K => a = a.wrapping_add(i.k),
            op::ADD_X => a = a.wrapping_add(x),
            op::LSH_K => a = a.checked_shl(i.k).unwrap_or(0),
            op::TAX => x = a,
            op::TXA => a = x,
            op::JA => pc += i.k as usize,
            op::JEQ_K => pc += jump(a == i.k),
            op::JGE_K => pc += jump(a >= i.k),
            op::JGT_K => pc += jump(a > i.k),
            op::JSET_K => pc += jump(a & i.k != 0),
            op::RET_K => return i.k,
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::fixture;

    #[test]
    fn flow_is_one_flow_or_any_local_port() {
        let remote: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let f = FlowFilter::flow("198.18.0.1:4000".parse().unwrap(), remote, 6);
        assert_eq!(
            (f.local, f.remote, f.remote_port, f.local_ports),
            (
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                Some(remote.ip()),
                Some(80),
                Some((4000, 4000))
            )
        );
        assert!(f.outbound && f.protocol == 6);
        let any = FlowFilter::flow("198.18.0.1:0".parse().unwrap(), remote, 17);
        assert_eq!((any.local_ports, any.protocol), (None, 17));
    }

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
    fn a_single_dns_query_filter_lets_its_port_unreachable_through() {
        use crate::wire::{IcmpRepr, IpRepr, Protocol, UdpRepr};
        let (client, server): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let ip = |src, dst, protocol| IpRepr {
            src,
            dst,
            protocol,
            ttl: 64,
            ident: 2,
            later_fragment: false,
            flow_label: 0,
        };
        let udp = UdpRepr {
            src_port: 40000,
            dst_port: 53,
            payload: b"query".to_vec(),
        };
        let query = ip(client, server, Protocol::UDP).emit(&udp.emit(client, server));
        let unreach = ip(server, client, Protocol::ICMP)
            .emit(&IcmpRepr::emit_error(3, 3, &query, server, client));
        let filter = FlowFilter {
            local: client,
            remote: Some(server),
            remote_port: Some(53),
            local_ports: Some((40000, 40000)),
            protocol: Protocol::UDP,
            outbound: true,
        }
        .compile();
        assert_ne!(run(&filter, &unreach, 0x0800), 0);
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

    use crate::wire::ip::insert_v6_ext_headers;
    use crate::wire::reassembly::fragment;
    use crate::wire::testutil::with_full_checksum;

    const HBH: &[u8] = &[0, 0, 1, 4, 0, 0, 0, 0];
    const DSTOPT: &[u8] = &[0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const ROUTING: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0];
    const ATOMIC: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 1];
    const AH: &[u8] = &[
        0, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// The real SYN-ACK (2001:db8::2:80 -> 2001:db8::1) behind `exts`.
    fn synack_v6_behind(exts: &[(u8, &[u8])]) -> Vec<u8> {
        insert_v6_ext_headers(fixture("synack_v6"), exts).unwrap()
    }

    #[test]
    fn v6_replies_behind_extension_headers_are_accepted() {
        let f = filter("2001:db8::1", "2001:db8::2", 80);
        let scan = FlowFilter {
            local: "2001:db8::1".parse().unwrap(),
            remote: None,
            remote_port: None,
            local_ports: Some((1, 1)),
            protocol: 6,
            outbound: false,
        };
        let chains: [&[(u8, &[u8])]; 6] = [
            &[(0, HBH), (60, DSTOPT)],
            &[(44, ATOMIC)],
            &[(51, AH)],
            &[
                (0, HBH),
                (43, ROUTING),
                (51, AH),
                (44, ATOMIC),
                (60, DSTOPT),
            ],
            // six headers: as deep as the unrolled walk goes
            &[
                (0, HBH),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
            ],
            // seven: let through by addresses, parsed in user space
            &[
                (0, HBH),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
                (60, DSTOPT),
            ],
        ];
        for exts in chains {
            let p = synack_v6_behind(exts);
            assert_eq!(run(&f, &p, 0x86dd), SNAPLEN, "{exts:?}");
            // the same reply to another local port: dropped (ports are read
            // behind the headers), except where the chain was too long to walk
            let deep = exts.len() > BPF_EXT_HEADERS;
            assert_eq!(
                run(&scan.compile(), &p, 0x86dd) == SNAPLEN,
                deep,
                "{exts:?}"
            );
            // from another peer: dropped
            let mut other = p.clone();
            other[23] = 9;
            assert_eq!(run(&f, &other, 0x86dd), 0, "{exts:?}");
            // cut inside the headers: dropped, never read past the end
            assert_eq!(run(&f, &p[..44], 0x86dd), 0);
        }
        // the RST from port 81 behind headers is still another flow
        let rst = insert_v6_ext_headers(fixture("rst_v6"), &[(0, HBH), (60, DSTOPT)]).unwrap();
        assert_eq!(run(&f, &rst, 0x86dd), 0);
        let rst81 = filter("2001:db8::1", "2001:db8::2", 81);
        assert_eq!(run(&rst81, &rst, 0x86dd), SNAPLEN);
    }

    #[test]
    fn fragments_of_our_flows_are_accepted_by_address() {
        for (local, remote, name, proto) in [
            ("198.18.0.1", "198.18.0.2", "synack_v4", 0x0800),
            ("2001:db8::1", "2001:db8::2", "synack_v6", 0x86dd),
        ] {
            let f = filter(local, remote, 80);
            let whole = with_full_checksum(fixture(name));
            let pieces = fragment(&whole, 77, 16);
            assert!(pieces.len() >= 3);
            for p in &pieces {
                assert_eq!(run(&f, p, proto), SNAPLEN, "{name}");
                // from someone else, or of another protocol: dropped
                let mut other = p.clone();
                if proto == 0x0800 {
                    other[15] = 9;
                } else {
                    other[23] = 9;
                }
                assert_eq!(run(&f, &other, proto), 0, "{name}");
                let udp = FlowFilter {
                    local: local.parse().unwrap(),
                    remote: Some(remote.parse().unwrap()),
                    remote_port: Some(80),
                    local_ports: None,
                    protocol: 17,
                    outbound: true,
                };
                assert_eq!(run(&udp.compile(), p, proto), 0, "{name}");
            }
        }
        // an IPv6 fragment behind a Hop-by-Hop header
        let f = filter("2001:db8::1", "2001:db8::2", 80);
        let whole = with_full_checksum(fixture("synack_v6"));
        let later = &fragment(&whole, 5, 16)[1];
        let mut behind = later[..40].to_vec();
        behind[6] = 0;
        behind[4..6].copy_from_slice(&((later.len() - 40 + 8) as u16).to_be_bytes());
        behind.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        behind.extend_from_slice(&later[40..]);
        assert_eq!(run(&f, &behind, 0x86dd), SNAPLEN);
    }

    #[test]
    fn real_fragments_of_a_dns_answer_are_accepted() {
        use crate::wire::testutil::nsd_fragments;
        for (v6, local, server, proto) in [
            (false, "198.18.0.1", "198.18.0.2", 0x0800),
            (true, "2001:db8::1", "2001:db8::2", 0x86dd),
        ] {
            let f = nsd_fragments(v6);
            // the first fragment carries the UDP header: our port
            let udp = &f[0][if v6 { 48 } else { 20 }..];
            let port = u16::from_be_bytes([udp[2], udp[3]]);
            let dns = |local_port: u16, remote: &str| FlowFilter {
                local: local.parse().unwrap(),
                remote: Some(remote.parse().unwrap()),
                remote_port: Some(53),
                local_ports: Some((local_port, local_port)),
                protocol: 17,
                outbound: true,
            };
            for frag in f {
                assert_eq!(run(&dns(port, server).compile(), frag, proto), SNAPLEN);
            }
            // every fragment passes on addresses alone, the first one too
            // (user space reassembles it, then reads the ports)
            let other = dns(port.wrapping_add(1), server).compile();
            assert_eq!(run(&other, f[0], proto), SNAPLEN);
            let elsewhere = if v6 { "2001:db8::9" } else { "198.18.0.9" };
            for frag in f {
                assert_eq!(run(&dns(port, elsewhere).compile(), frag, proto), 0);
            }
        }
    }

    #[test]
    fn unreadable_protocols_from_the_peer_are_let_through_to_be_counted() {
        for (local, remote, name, proto) in [
            ("198.18.0.1", "198.18.0.2", "synack_v4", 0x0800),
            ("2001:db8::1", "2001:db8::2", "synack_v6", 0x86dd),
        ] {
            let f = filter(local, remote, 80);
            let other = filter(
                local,
                if proto == 0x0800 {
                    "198.18.0.3"
                } else {
                    "2001:db8::3"
                },
                80,
            );
            // ESP, No Next Header, experimental; then GRE and SCTP, other flows
            for (next, let_through) in [
                (50, true),
                (59, true),
                (253, true),
                (254, true),
                (47, false),
                (132, false),
            ] {
                let mut p = fixture(name).to_vec();
                p[if proto == 0x0800 { 9 } else { 6 }] = next;
                assert_eq!(run(&f, &p, proto) == SNAPLEN, let_through, "{name} {next}");
                assert_eq!(run(&other, &p, proto), 0, "{name} {next}");
                // behind extension headers too
                if proto == 0x86dd {
                    let behind = insert_v6_ext_headers(&p, &[(0, HBH), (60, DSTOPT)]).unwrap();
                    assert_eq!(run(&f, &behind, proto) == SNAPLEN, let_through, "{next}");
                }
            }
        }
    }

    #[test]
    fn far_conditional_jumps_go_through_a_trampoline() {
        // byte 0: 1 jumps over `far` instructions to accept, 2 runs them, else reject
        for far in [10usize, 254, 255, 256, 300] {
            let mut a = Asm::default();
            let (accept, reject) = (a.label(), a.label());
            a.op(op::LD_B_ABS, 0);
            a.jeq_to(1, accept);
            a.jne_to(2, reject);
            for _ in 0..far {
                a.op(op::ADD_K, 1);
            }
            a.op(op::RET_K, 5);
            a.mark(reject);
            a.op(op::RET_K, 0);
            a.mark(accept);
            a.op(op::RET_K, 7);
            let prog = a.finish();
            assert_eq!(run(&prog, &[1], 0), 7, "{far}");
            assert_eq!(run(&prog, &[3], 0), 0, "{far}");
            // byte 2: falls through the additions
            assert_eq!(run(&prog, &[2], 0), 5, "{far}");
            let trampolines = prog.iter().filter(|i| i.code == op::JA).count();
            assert_eq!(trampolines > 0, far + 3 > 255, "{far}: {prog:?}");
        }
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        for local in ["198.18.0.1", "2001:db8::1"] {
            for outbound in [false, true] {
                for remote in [
                    None,
                    Some(if local.contains(':') {
                        "2001:db8::2"
                    } else {
                        "198.18.0.2"
                    }),
                ] {
                    let prog = FlowFilter {
                        local: local.parse().unwrap(),
                        remote: remote.map(|r| r.parse().unwrap()),
                        remote_port: Some(53),
                        local_ports: Some((1000, 2000)),
                        protocol: 17,
                        outbound,
                    }
                    .compile();
                    assert!(prog.len() < 4096);
                    assert_eq!(prog.last().map(|i| i.code), Some(op::RET_K));
                    for (n, i) in prog.iter().enumerate().filter(|(_, i)| i.code != op::RET_K) {
                        let reach = if i.code == op::JA {
                            i.k as usize
                        } else {
                            i.jt.max(i.jf) as usize
                        };
                        assert!(n + 1 + reach < prog.len(), "{local} {n}: {i:?}");
                    }
                }
            }
        }
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
