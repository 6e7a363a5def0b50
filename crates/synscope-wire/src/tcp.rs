//! TCP segments (RFC 9293) with the options real stacks put on a SYN.

use super::{Protocol, SeqNumber, WireError, transport_checksum};
use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};
use std::fmt;
use std::net::IpAddr;

/// The TCP control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers: opens a connection.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push buffered data to the application.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is valid.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is valid.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Are all bits of `other` set here?
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The bits of both.
    pub fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }

    /// What these flags say in answer to a SYN: SYN-ACK (someone listens),
    /// RST+ACK (nobody does), or nothing a SYN can get (None).
    pub fn answer_to_syn(self) -> Option<AnswerSegment> {
        if self.contains(Self::SYN.union(Self::ACK)) && !self.contains(Self::RST) {
            Some(AnswerSegment::SynAck)
        } else if self.contains(Self::RST.union(Self::ACK)) {
            Some(AnswerSegment::Rst)
        } else {
            None
        }
    }
}

/// The two segments that can answer a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSegment {
    /// SYN+ACK: the port is open.
    SynAck,
    /// RST+ACK: the port is closed.
    Rst,
}

impl fmt::Display for TcpFlags {
    /// tcpdump's letters: S SYN, F FIN, R RST, P PSH, . ACK, U URG, E ECE, W CWR.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, c) in [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::URG, 'U'),
            (Self::ECE, 'E'),
            (Self::CWR, 'W'),
            (Self::ACK, '.'),
        ] {
            if self.contains(flag) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The TCP options synscope understands; others are skipped and their kinds kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum Segment Size (kind 2), in bytes.
    pub mss: Option<u16>,
    /// Window scale shift count (kind 3, RFC 7323; 0..=14 is meaningful).
    pub window_scale: Option<u8>,
    /// SACK-permitted (kind 4, RFC 2018).
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
    /// Number of SACK blocks carried.
    pub sack_blocks: u8,
    /// Kinds of options not understood (skipped by their length byte).
    pub unknown: Vec<u8>,
    /// The option area ended in a malformed option (the rest was ignored).
    pub malformed: bool,
}

mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

impl TcpOptions {
    /// The options of every SYN synscope sends (ping, scan, path, trace), in
    /// one place so that `--bare-syn` means one thing everywhere: Linux's set
    /// ([`linux_syn`](Self::linux_syn)) or, bare, no option at all (as
    /// hping3 sends).
    pub fn syn(linux_like: bool, mss: u16, tsval: u32) -> TcpOptions {
        if linux_like {
            Self::linux_syn(mss, tsval)
        } else {
            TcpOptions::default()
        }
    }

    /// Options like Linux puts on its own SYN.
    pub fn linux_syn(mss: u16, tsval: u32) -> TcpOptions {
        TcpOptions {
            mss: Some(mss),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((tsval, 0)),
            ..TcpOptions::default()
        }
    }

    /// None of the SYN options (MSS, window scale, SACK-permitted, timestamps)
    /// is present.
    pub fn is_empty(&self) -> bool {
        self.mss.is_none()
            && self.window_scale.is_none()
            && !self.sack_permitted
            && self.timestamps.is_none()
    }

    /// Reads an option area. Never fails: a malformed tail is flagged, not fatal.
    pub fn parse(mut b: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        while let Some(&k) = b.first() {
            match k {
                kind::EOL => break,
                kind::NOP => {
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let len = match b.get(1) {
                Some(&l) if l >= 2 && (l as usize) <= b.len() => l as usize,
                _ => {
                    o.malformed = true;
                    break;
                }
            };
            let body = &b[2..len];
            match (k, body.len()) {
                (kind::MSS, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (kind::WSCALE, 1) => o.window_scale = Some(body[0]),
                (kind::SACK_PERM, 0) => o.sack_permitted = true,
                (kind::TIMESTAMP, 8) => {
                    o.timestamps = Some((
                        u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    ))
                }
                (kind::SACK, n) if n % 8 == 0 => o.sack_blocks = (n / 8) as u8,
                (kind::MSS | kind::WSCALE | kind::SACK_PERM | kind::TIMESTAMP | kind::SACK, _) => {
                    o.malformed = true
                }
                _ => o.unknown.push(k),
            }
            b = &b[len..];
        }
        o
    }

    /// The option area in Linux's layout, padded to a multiple of 4 bytes.
    pub fn emit(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(20);
        if let Some(mss) = self.mss {
            v.extend_from_slice(&[kind::MSS, 4]);
            v.extend_from_slice(&mss.to_be_bytes());
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some(_)) => v.extend_from_slice(&[kind::SACK_PERM, 2]),
            (true, None) => v.extend_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERM, 2]),
            (false, Some(_)) => v.extend_from_slice(&[kind::NOP, kind::NOP]),
            (false, None) => {}
        }
        if let Some((val, ecr)) = self.timestamps {
            v.extend_from_slice(&[kind::TIMESTAMP, 10]);
            v.extend_from_slice(&val.to_be_bytes());
            v.extend_from_slice(&ecr.to_be_bytes());
        }
        if let Some(ws) = self.window_scale {
            v.extend_from_slice(&[kind::NOP, kind::WSCALE, 3, ws]);
        }
        while v.len() % 4 != 0 {
            v.push(kind::EOL);
        }
        v
    }
}

impl TcpOptions {
    /// Like `Display` but without the timestamp values, which change with every
    /// packet: `mss 1460,sackOK,TS,wscale 7`.
    pub fn brief(&self) -> String {
        self.describe(false)
    }

    fn describe(&self, ts_values: bool) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mss {
            parts.push(format!("mss {m}"));
        }
        if self.sack_permitted {
            parts.push("sackOK".into());
        }
        if let Some((v, e)) = self.timestamps {
            parts.push(if ts_values {
                format!("TS val {v} ecr {e}")
            } else {
                "TS".into()
            });
        }
        if let Some(w) = self.window_scale {
            parts.push(format!("wscale {w}"));
        }
        if self.sack_blocks > 0 {
            parts.push(format!("sack {}", self.sack_blocks));
        }
        for k in &self.unknown {
            parts.push(format!("opt-{k}"));
        }
        if self.malformed {
            parts.push("malformed".into());
        }
        parts.join(",")
    }
}

impl fmt::Display for TcpOptions {
    /// tcpdump-like: `mss 1460,sackOK,TS val 1 ecr 0,wscale 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(true))
    }
}

/// A TCP segment's header fields and payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNumber,
    /// Acknowledgment number (meaningful with ACK set).
    pub ack: SeqNumber,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window as sent, in bytes before any window scaling.
    pub window: u16,
    /// Urgent pointer (meaningful with URG set).
    pub urgent: u16,
    /// The options carried.
    pub options: TcpOptions,
    /// Segment data.
    pub payload: Vec<u8>,
}

impl TcpRepr {
    /// Bytes of a header without options.
    pub const HEADER_LEN: usize = 20;

    /// Parses a segment; the checksum is verified against the pseudo-header
    /// of `src` → `dst`.
    pub fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<TcpRepr, WireError> {
        let repr = Self::parse_unchecked(bytes)?;
        if transport_checksum(src, dst, Protocol::TCP, bytes) != 0 {
            return Err(WireError::Checksum("tcp"));
        }
        Ok(repr)
    }

    /// Parses a segment without looking at its checksum.
    pub fn parse_unchecked(bytes: &[u8]) -> Result<TcpRepr, WireError> {
        let p = TcpPacket::new(bytes).ok_or(WireError::Truncated("tcp"))?;
        let off = p.get_data_offset() as usize * 4;
        if off < Self::HEADER_LEN || off > bytes.len() {
            return Err(WireError::BadLength("tcp"));
        }
        Ok(TcpRepr {
            src_port: p.get_source(),
            dst_port: p.get_destination(),
            seq: SeqNumber(p.get_sequence()),
            ack: SeqNumber(p.get_acknowledgement()),
            flags: TcpFlags(bytes[13]),
            window: p.get_window(),
            urgent: p.get_urgent_ptr(),
            options: TcpOptions::parse(&bytes[Self::HEADER_LEN..off]),
            payload: bytes[off..].to_vec(),
        })
    }

    /// Sequence space this segment occupies (SYN and FIN count one each).
    pub fn segment_len(&self) -> u32 {
        self.payload.len() as u32
            + self.flags.contains(TcpFlags::SYN) as u32
            + self.flags.contains(TcpFlags::FIN) as u32
    }

    /// The segment's bytes, checksum computed for `src` → `dst`.
    pub fn emit(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let opts = self.options.emit();
        let hl = Self::HEADER_LEN + opts.len();
        let mut buf = vec![0u8; hl + self.payload.len()];
        {
            let mut p = MutableTcpPacket::new(&mut buf).expect("buffer sized above");
            p.set_source(self.src_port);
            p.set_destination(self.dst_port);
            p.set_sequence(self.seq.0);
            p.set_acknowledgement(self.ack.0);
            p.set_data_offset((hl / 4) as u8);
            p.set_window(self.window);
            p.set_urgent_ptr(self.urgent);
        }
        buf[13] = self.flags.0;
        buf[Self::HEADER_LEN..hl].copy_from_slice(&opts);
        buf[hl..].copy_from_slice(&self.payload);
        let c = transport_checksum(src, dst, Protocol::TCP, &buf);
        buf[16..18].copy_from_slice(&c.to_be_bytes());
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagram::Checksums;
    use crate::testutil::Noise;
    use crate::testutil::{fixture, with_full_checksum};
    use crate::{Datagram, Transport};

    /// A SYN sent by Linux 6.18 (Python `connect` to 198.18.0.2:80 in the lab), captured
    /// by tcpdump on the client veth.
    pub static LINUX_SYN: &[u8] = include_bytes!("fixtures/linux_syn_v4.bin");

    #[test]
    fn options_like_linux() {
        let o = TcpOptions::linux_syn(1460, 0x0102_0304);
        assert_eq!(
            o.emit(),
            [
                2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7
            ]
        );
        assert_eq!(TcpOptions::parse(&o.emit()), o);
        assert_eq!(
            o.to_string(),
            "mss 1460,sackOK,TS val 16909060 ecr 0,wscale 7"
        );
        assert_eq!(o.brief(), "mss 1460,sackOK,TS,wscale 7");
    }

    #[test]
    fn options_unknown_skipped_malformed_flagged() {
        // unknown kind 30 (MPTCP) with 4 bytes, then MSS
        let o = TcpOptions::parse(&[30, 4, 0, 0, 2, 4, 1, 0]);
        assert_eq!(o.unknown, vec![30]);
        assert_eq!(o.mss, Some(256));
        // length byte larger than the area
        let o = TcpOptions::parse(&[2, 4, 5]);
        assert!(o.malformed);
        assert_eq!(o.mss, None);
        // length 0 would loop forever in a naive parser
        assert!(TcpOptions::parse(&[99, 0, 1, 1]).malformed);
        // MSS with wrong length
        assert!(TcpOptions::parse(&[2, 3, 5, 0]).malformed);
    }

    #[test]
    fn parses_a_real_linux_syn() {
        let d = Datagram::parse_with(LINUX_SYN, Checksums::Offloaded).unwrap();
        let Transport::Tcp(t) = d.transport else {
            panic!("not tcp")
        };
        assert_eq!(t.src_port, 53190);
        assert_eq!(t.dst_port, 80);
        assert_eq!(t.seq, SeqNumber(644410958));
        assert_eq!(t.flags, TcpFlags::SYN);
        assert_eq!(t.window, 64240);
        let mut want = TcpOptions::linux_syn(1460, 1890636195);
        want.window_scale = Some(10);
        assert_eq!(t.options, want);

        let d = Datagram::parse_with(fixture("synack_v6"), Checksums::Offloaded).unwrap();
        let Transport::Tcp(t) = d.transport else {
            panic!("not tcp")
        };
        assert_eq!((t.src_port, t.dst_port), (80, 56882));
        assert_eq!(t.flags, TcpFlags::SYN.union(TcpFlags::ACK));
        assert_eq!(t.ack, SeqNumber(825161695));
        assert_eq!(t.options.mss, Some(1440));
        assert_eq!(t.options.timestamps, Some((4185172279, 868152276)));
    }

    #[test]
    fn bad_checksum_and_offsets_rejected() {
        let full = with_full_checksum(LINUX_SYN);
        let d = Datagram::parse(&full).unwrap();
        let mut seg = full[20..].to_vec();
        seg[17] ^= 1;
        assert_eq!(
            TcpRepr::parse(&seg, d.ip.src, d.ip.dst),
            Err(WireError::Checksum("tcp"))
        );
        let mut seg = LINUX_SYN[20..].to_vec();
        seg[12] = 0xf0; // 60-byte header in a 40-byte segment
        assert_eq!(
            TcpRepr::parse_unchecked(&seg),
            Err(WireError::BadLength("tcp"))
        );
        seg[12] = 0x40;
        assert_eq!(
            TcpRepr::parse_unchecked(&seg),
            Err(WireError::BadLength("tcp"))
        );
        assert_eq!(
            TcpRepr::parse_unchecked(&seg[..19]),
            Err(WireError::Truncated("tcp"))
        );
    }

    #[test]
    fn flags_display_like_tcpdump() {
        assert_eq!(TcpFlags::SYN.union(TcpFlags::ACK).to_string(), "S.");
        assert_eq!(TcpFlags::RST.union(TcpFlags::ACK).to_string(), "R.");
    }

    #[test]
    fn never_panics_on_noise() {
        let mut n = Noise::new(11);
        for _ in 0..100_000 {
            let input = n.mutate(&LINUX_SYN[20..]);
            let _ = TcpRepr::parse_unchecked(&input);
            let _ = TcpOptions::parse(&n.bytes(40));
        }
    }
}
