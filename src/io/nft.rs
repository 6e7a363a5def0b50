//! Keeps the local kernel from answering the peer's segments of a raw flow
//! with RSTs, for exactly one flow and no longer than this process lives.
//!
//! An nftables table with the `owner` flag is created over a netlink socket that
//! [`RstFilter`] keeps open: the kernel deletes the table as soon as that socket
//! closes — on drop, on exit, and on SIGKILL alike. Its one rule, in the output
//! hook, drops TCP segments from our address and port to the peer's address and
//! port that have RST set and ACK clear:
//!
//! ```text
//! table ip synscope_<pid>_<port> {  # flags owner
//!   chain out { type filter hook output priority filter; policy accept;
//!     ip saddr S ip daddr D tcp sport SP tcp dport DP tcp flags & (rst|ack) == rst counter drop } }
//! ```
//!
//! The kernel's RSTs to a flow it has no socket for carry no ACK when the segment
//! they answer had one (every segment of the peer after its SYN-ACK), while the
//! RSTs synscope sends on purpose are RST+ACK, so those pass.

use super::IoError;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook, Immediate,
    InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register,
    RuleAttribute, RuleMessage, TableAttribute, TableFlags, TableMessage, Verdict,
    VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NLMSG_ERROR: u16 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// nft_payload bases.
const NETWORK_HEADER: u32 = 1;
const TRANSPORT_HEADER: u32 = 2;
const CHAIN: &str = "out";

/// The RST filter of one flow; the rule exists exactly as long as this value.
pub struct RstFilter {
    // held, never read: closing it is what deletes the table
    _sock: Socket,
    /// The nftables table's name (`synscope_<pid>_<port>`).
    pub table: String,
}

impl std::fmt::Debug for RstFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RstFilter")
            .field("table", &self.table)
            .finish()
    }
}

fn err(op: &'static str) -> impl FnOnce(std::io::Error) -> IoError {
    move |source| IoError::Socket { op, source }
}

fn cmp_eq(data: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(Operator::Equal),
        Cmp::Data(DataAttribute::Value(data)),
    ])
    .into()
}

fn load(base: u32, offset: u32, len: u32) -> ListAttribute<ExpressionAttribute> {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The rule's expressions for `local` → `remote` (both of one family).
fn rule_expressions(
    local: SocketAddr,
    remote: SocketAddr,
) -> Vec<ListAttribute<ExpressionAttribute>> {
    let (src_off, dst_off, alen) = if local.is_ipv4() {
        (12, 16, 4)
    } else {
        (8, 24, 16)
    };
    let mut e = vec![
        load(NETWORK_HEADER, src_off, alen),
        cmp_eq(addr_bytes(local.ip())),
        load(NETWORK_HEADER, dst_off, alen),
        cmp_eq(addr_bytes(remote.ip())),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::L4Proto),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        cmp_eq(vec![6]),
    ];
    // local port 0: any of ours (ping --verify, one rule for the whole run)
    if local.port() != 0 {
        e.push(load(TRANSPORT_HEADER, 0, 2));
        e.push(cmp_eq(local.port().to_be_bytes().to_vec()));
    }
    e.extend([
        load(TRANSPORT_HEADER, 2, 2),
        cmp_eq(remote.port().to_be_bytes().to_vec()),
    ]);
    e.extend(bare_rst_drop());
    e
}

/// The end of every rule: `tcp flags & (rst|ack) == rst counter drop`.
fn bare_rst_drop() -> [ListAttribute<ExpressionAttribute>; 5] {
    [
        load(TRANSPORT_HEADER, 13, 1),
        Expressions::Bitwise(vec![
            netlink_packet_netfilter::nftables::Bitwise::SourceRegister(Register::Reg1),
            netlink_packet_netfilter::nftables::Bitwise::DestinationRegister(Register::Reg1),
            netlink_packet_netfilter::nftables::Bitwise::Length(1),
            netlink_packet_netfilter::nftables::Bitwise::Mask(DataAttribute::Value(vec![0x14])),
            netlink_packet_netfilter::nftables::Bitwise::Xor(DataAttribute::Value(vec![0])),
        ])
        .into(),
        cmp_eq(vec![0x04]),
        ListAttribute::Element(vec![ExpressionAttribute::Name("counter".to_string())]),
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Verdict),
            Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
                Verdict::Other(NF_DROP),
            )])),
        ])
        .into(),
    ]
}

/// The rule's expressions for every flow from `local`'s TCP ports `lo..=hi`
/// (any peer): a long-running prober's whole block of source ports.
fn range_expressions(local: IpAddr, lo: u16, hi: u16) -> Vec<ListAttribute<ExpressionAttribute>> {
    let (src_off, alen) = if local.is_ipv4() { (12, 4) } else { (8, 16) };
    let cmp = |op: Operator, data: Vec<u8>| -> ListAttribute<ExpressionAttribute> {
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(op),
            Cmp::Data(DataAttribute::Value(data)),
        ])
        .into()
    };
    let mut e = vec![
        load(NETWORK_HEADER, src_off, alen),
        cmp_eq(addr_bytes(local)),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::L4Proto),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        cmp_eq(vec![6]),
        // ports compare as big-endian bytes, which nft_cmp does (memcmp)
        load(TRANSPORT_HEADER, 0, 2),
        cmp(Operator::GreatherThanEqual, lo.to_be_bytes().to_vec()),
        load(TRANSPORT_HEADER, 0, 2),
        cmp(Operator::LessThanEqual, hi.to_be_bytes().to_vec()),
    ];
    e.extend(bare_rst_drop());
    e
}

/// The netlink batch that creates the owner table, its chain and its rule.
pub fn batch(table: &str, local: SocketAddr, remote: SocketAddr, pid: u32) -> Vec<u8> {
    batch_of(table, local.is_ipv4(), rule_expressions(local, remote), pid)
}

/// The netlink batch of an owner table whose rule drops the kernel's bare RSTs
/// from `local`'s TCP ports `lo..=hi` to anyone.
pub fn range_batch(table: &str, local: IpAddr, lo: u16, hi: u16, pid: u32) -> Vec<u8> {
    batch_of(
        table,
        local.is_ipv4(),
        range_expressions(local, lo, hi),
        pid,
    )
}

fn batch_of(
    table: &str,
    v4: bool,
    expressions: Vec<ListAttribute<ExpressionAttribute>>,
    pid: u32,
) -> Vec<u8> {
    let family = if v4 {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    let ctl = |m: ControlMessage| {
        NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            m,
        ))
    };
    let nft = |m: NfTablesMessage, flags: u16| {
        let mut n =
            NetlinkMessage::from(NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), m));
        n.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        n
    };
    let mut msgs = [
        ctl(ControlMessage::BatchBegin),
        nft(
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![
                    TableAttribute::Name(table.to_string()),
                    TableAttribute::Flags(TableFlags::Owner),
                ],
            }),
            NLM_F_CREATE,
        ),
        nft(
            NfTablesMessage::NewChain(netlink_packet_netfilter::nftables::ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.to_string()),
                    ChainAttribute::Name(CHAIN.to_string()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::LocalOut.into()),
                        Hook::Priority(0),
                    ]),
                    ChainAttribute::Policy(NF_ACCEPT),
                    ChainAttribute::Type("filter".to_string()),
                ],
            }),
            NLM_F_CREATE,
        ),
        nft(
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.to_string()),
                    RuleAttribute::Chain(CHAIN.to_string()),
                    RuleAttribute::Expressions(expressions),
                ],
            }),
            NLM_F_CREATE | NLM_F_APPEND,
        ),
        ctl(ControlMessage::BatchEnd),
    ];
    let mut out = Vec::new();
    for (i, m) in msgs.iter_mut().enumerate() {
        m.header.sequence_number = i as u32 + 1;
        m.header.port_number = pid;
        if matches!(m.payload, NetlinkPayload::InnerMessage(_)) && m.header.flags == 0 {
            m.header.flags = NLM_F_REQUEST;
        }
        m.finalize();
        let start = out.len();
        out.resize(start + m.buffer_len(), 0);
        m.serialize(&mut out[start..]);
    }
    out
}

impl RstFilter {
    /// Installs the filter for the flow `local` → `remote` (local port 0: from
    /// any of our ports). Needs CAP_NET_ADMIN.
    pub fn install(local: SocketAddr, remote: SocketAddr) -> Result<RstFilter, IoError> {
        let table = format!("synscope_{}_{}", std::process::id(), local.port());
        let t = table.clone();
        Self::install_batch(table, move |pid| batch(&t, local, remote, pid))
    }

    /// Installs the filter for every flow from `local`'s TCP ports `lo..=hi`
    /// (a block reserved for as long as this lives). Needs CAP_NET_ADMIN once;
    /// the rule stays after the privileges are gone.
    pub fn install_range(local: IpAddr, lo: u16, hi: u16) -> Result<RstFilter, IoError> {
        let table = format!("synscope_{}_{lo}_{hi}", std::process::id());
        let t = table.clone();
        Self::install_batch(table, move |pid| range_batch(&t, local, lo, hi, pid))
    }

    fn install_batch(
        table: String,
        bytes_of: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<RstFilter, IoError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err("open netlink socket"))?;
        let addr = sock.bind_auto().map_err(err("bind netlink socket"))?;
        let sref = socket2::SockRef::from(&sock);
        sref.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(err("set netlink timeout"))?;
        let bytes = bytes_of(addr.port_number());
        sock.send(&bytes, 0).map_err(err("send nftables batch"))?;
        // one ACK per message carrying NLM_F_ACK (table, chain, rule), or an error
        let mut acked = 0;
        let mut buf = vec![0u8; 16384];
        while acked < 3 {
            let n = sock
                .recv(&mut &mut buf[..], 0)
                .map_err(err("read nftables answer"))?;
            let mut off = 0;
            while off + 20 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                if len < 16 || off + len > n {
                    break;
                }
                if kind == NLMSG_ERROR {
                    let code =
                        i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or_default());
                    if code != 0 {
                        return Err(IoError::Socket {
                            op: "create nftables RST filter table",
                            source: std::io::Error::from_raw_os_error(-code),
                        });
                    }
                    acked += 1;
                }
                off += (len + 3) & !3;
            }
        }
        Ok(RstFilter { _sock: sock, table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_framed_and_carries_owner_flag_and_flow() {
        let b = batch(
            "synscope_1_40000",
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
            77,
        );
        // five messages, each length-prefixed and 4-aligned, ending exactly at the end
        let mut off = 0;
        let mut kinds = Vec::new();
        while off < b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes([b[off + 4], b[off + 5]]));
            off += (len + 3) & !3;
        }
        assert_eq!(off, b.len());
        // batch begin (0x10), NEWTABLE, NEWCHAIN, NEWRULE (subsystem 10), batch end (0x11)
        assert_eq!(kinds, [0x10, 0x0a00, 0x0a03, 0x0a06, 0x11]);
        let find = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        // NFTA_TABLE_FLAGS = NFT_TABLE_F_OWNER (big-endian u32)
        assert!(find(&[8, 0, 2, 0, 0, 0, 0, 2]));
        assert!(find(&[198, 18, 0, 1]) && find(&[198, 18, 0, 2]));
        assert!(find(&40000u16.to_be_bytes()) && find(b"counter\0"));
    }

    /// The rule's expressions by name, in order (each an NFTA_EXPR_NAME
    /// attribute: type 1, then the NUL-terminated name).
    fn expression_names(b: &[u8]) -> Vec<&'static str> {
        let names = ["payload", "cmp", "meta", "bitwise", "counter", "immediate"];
        let mut out = Vec::new();
        for i in 2..b.len() {
            if b[i - 2..i] != [1, 0] {
                continue;
            }
            for n in names {
                if b[i..].starts_with(n.as_bytes()) && b.get(i + n.len()) == Some(&0) {
                    out.push(n);
                }
            }
        }
        out
    }

    #[test]
    fn range_batch_scopes_the_rule_to_our_address_and_port_block() {
        let b = range_batch(
            "synscope_1_40000_40127",
            "198.18.0.1".parse().unwrap(),
            40000,
            40127,
            77,
        );
        let find = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(find(&[8, 0, 2, 0, 0, 0, 0, 2]), "owner flag");
        assert!(find(&[198, 18, 0, 1]));
        // NFTA_CMP_OP GTE (5) then the low port, LTE (3) then the high port,
        // both as NFTA_DATA_VALUE: 6-byte attribute, 2 bytes of big-endian port
        let op = |code: u8| [8u8, 0, 2, 0, 0, 0, 0, code];
        let port = |p: u16| {
            let [a, c] = p.to_be_bytes();
            [6u8, 0, 1, 0, a, c]
        };
        let gte = b.windows(8).position(|w| w == op(5)).expect("gte");
        let lte = b.windows(8).position(|w| w == op(3)).expect("lte");
        assert!(gte < lte);
        assert!(b[gte..lte].windows(6).any(|w| w == port(40000)));
        assert!(b[lte..].windows(6).any(|w| w == port(40127)));
        // source port only: offset 0 of the transport header loaded twice,
        // and no destination address or port compared
        assert!(find(b"counter\0") && !find(&[198, 18, 0, 2]));
        // saddr ==, tcp, sport >=, sport <=, flags & (rst|ack) == rst, counter, drop
        assert_eq!(
            expression_names(&b),
            [
                "payload",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "cmp",
                "payload",
                "cmp",
                "payload",
                "bitwise",
                "cmp",
                "counter",
                "immediate"
            ]
        );
        assert!(find(&[5, 0, 1, 0, 0x14]) && find(&[5, 0, 1, 0, 0x04]));
        // the per-flow rule ends the same way
        let flow = batch(
            "t",
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
            77,
        );
        assert_eq!(
            expression_names(&flow)[8..],
            [
                "payload",
                "cmp",
                "payload",
                "bitwise",
                "cmp",
                "counter",
                "immediate"
            ]
        );
        let v6 = range_batch("t", "2001:db8::1".parse().unwrap(), 1, 2, 77);
        assert!(v6.windows(16).any(|w| {
            w == "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        }));
    }
}
