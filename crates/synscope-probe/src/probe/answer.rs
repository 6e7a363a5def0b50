//! What answered a SYN, in one vocabulary for ping, scan and the exporter, and
//! the reading of a captured packet as such an answer that their matchers
//! share: the matchers differ only in how they recognise *their* SYN (ping by
//! the probes it remembers, scan by the cookie in the sequence number).

use super::correlate::Ignored;
use crate::wire::{
    AnswerSegment, Datagram, IcmpError, Protocol, SeqNumber, TcpFlags, TcpOptions, Transport,
};
use std::net::{IpAddr, SocketAddr};

/// What came back to one SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynAnswer {
    /// SYN-ACK: something listens.
    Open,
    /// RST: the host answered, nothing listens.
    Closed,
    /// An ICMP error, and who sent it (a router, a filter or the host).
    Filtered {
        /// Its type and code.
        error: IcmpError,
        /// Who sent it.
        from: IpAddr,
    },
    /// Nothing came back before the deadline.
    NoAnswer,
}

impl SynAnswer {
    /// `open`, `closed` or `filtered` (an ICMP error or silence).
    pub fn class(&self) -> &'static str {
        match self {
            SynAnswer::Open => "open",
            SynAnswer::Closed => "closed",
            SynAnswer::Filtered { .. } | SynAnswer::NoAnswer => "filtered",
        }
    }

    /// Why it is filtered: the ICMP error's name or `no-answer`.
    pub fn reason(&self) -> Option<String> {
        match self {
            SynAnswer::Filtered { error, .. } => Some(error.name()),
            SynAnswer::NoAnswer => Some("no-answer".into()),
            _ => None,
        }
    }
}

/// A captured packet read as the answer to a TCP SYN of ours, before the
/// caller checks that it answers one of *its* SYNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynReply {
    /// Our address and port as the reply names them (for an ICMP error, the
    /// quoted SYN's source, which is also where the error was sent).
    pub local: SocketAddr,
    /// The target's address and port (for an ICMP error, the quoted SYN's
    /// destination; the error itself comes from `answer`'s `from`).
    pub remote: SocketAddr,
    /// The initial sequence number of ours the reply names: ack − 1 of a
    /// SYN-ACK or RST, the sequence number an ICMP error quotes (None when the
    /// quote stops short of it, against RFC 792/4443).
    pub isn: Option<SeqNumber>,
    /// Open, Closed or Filtered; never NoAnswer.
    pub answer: SynAnswer,
    /// The reply's own hop limit.
    pub ttl: u8,
    /// The reply's TCP window, unscaled; 0 for ICMP.
    pub window: u16,
    /// The reply's TCP flags; none for ICMP.
    pub flags: TcpFlags,
    /// The reply's TCP options; none for ICMP.
    pub options: TcpOptions,
}

impl SynReply {
    /// Reads an incoming datagram as an answer to a SYN, or says why it is none:
    /// [`Ignored::Unexpected`] for a TCP segment that answers no SYN (a bare
    /// ACK, a SYN), [`Ignored::IcmpOther`] for ICMP that is not an error quoting
    /// a TCP segment from the address it was sent to, [`Ignored::Unreadable`]
    /// for a protocol synscope cannot read, [`Ignored::OtherFlow`] otherwise.
    pub fn read(d: &Datagram) -> Result<SynReply, Ignored> {
        match &d.transport {
            Transport::Tcp(t) => {
                let answer = match t.flags.answer_to_syn() {
                    Some(AnswerSegment::SynAck) => SynAnswer::Open,
                    Some(AnswerSegment::Rst) => SynAnswer::Closed,
                    None => return Err(Ignored::Unexpected),
                };
                Ok(SynReply {
                    local: SocketAddr::new(d.ip.dst, t.dst_port),
                    remote: SocketAddr::new(d.ip.src, t.src_port),
                    isn: Some(SeqNumber(t.ack.0.wrapping_sub(1))),
                    answer,
                    ttl: d.ip.ttl,
                    window: t.window,
                    flags: t.flags,
                    options: t.options.clone(),
                })
            }
            Transport::Icmp(i) => {
                let (Some(error), Some(q)) = (i.error(), i.quoted.as_ref()) else {
                    return Err(Ignored::IcmpOther);
                };
                if q.ip.protocol != Protocol::TCP || q.ip.src != d.ip.dst {
                    return Err(Ignored::IcmpOther);
                }
                Ok(SynReply {
                    local: SocketAddr::new(q.ip.src, q.src_port),
                    remote: SocketAddr::new(q.ip.dst, q.dst_port),
                    isn: q.tcp_seq.map(SeqNumber),
                    answer: SynAnswer::Filtered {
                        error,
                        from: d.ip.src,
                    },
                    ttl: d.ip.ttl,
                    window: 0,
                    flags: TcpFlags::default(),
                    options: TcpOptions::default(),
                })
            }
            Transport::Other(_) => Err(Ignored::Unreadable),
            _ => Err(Ignored::OtherFlow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::datagram::Checksums;
    use crate::wire::testutil::fixture;

    fn read(name: &str) -> Result<SynReply, Ignored> {
        SynReply::read(&Datagram::parse_with(fixture(name), Checksums::Offloaded).unwrap())
    }

    #[test]
    fn kernel_answers_read_as_the_same_vocabulary() {
        // the fixtures' flow: 198.18.0.1:53190 -> 198.18.0.2:80, ISN 644410958
        let s = read("synack_v4").unwrap();
        assert_eq!(s.answer, SynAnswer::Open);
        assert_eq!(s.local, "198.18.0.1:53190".parse().unwrap());
        assert_eq!(s.remote, "198.18.0.2:80".parse().unwrap());
        assert_eq!(s.isn, Some(SeqNumber(644410958)));
        assert_eq!(read("rst_v4").unwrap().answer, SynAnswer::Closed);
        let icmp = read("icmp_admin_v4").unwrap();
        assert!(matches!(icmp.answer, SynAnswer::Filtered { .. }));
        assert_eq!(icmp.answer.class(), "filtered");
        assert_eq!(icmp.answer.reason().as_deref(), Some("admin-prohibited"));
        assert_eq!(icmp.remote.port(), 111);
        assert!(matches!(
            read("icmp6_admin_v6").unwrap().answer,
            SynAnswer::Filtered { .. }
        ));
        // our own SYN answers nothing
        assert_eq!(read("syn_v4"), Err(Ignored::Unexpected));
    }
}
