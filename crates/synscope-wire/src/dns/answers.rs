//! The answers-only read of a reply ([`ReplyRepr::parse_answers`]) straight
//! over the message's bytes: no hickory record, no decoded name per record,
//! one pass. It covers what bulk mode meets nearly always (one question of
//! class IN, answers of type A, AAAA, CNAME, NS, PTR, MX and TXT in class IN,
//! names of plain labels) and gives up (None) on anything else, which
//! hickory then reads: so its result, when there is one, is exactly the one
//! of the hickory read (a unit test and the `dns_answers` fuzz target compare
//! the two on arbitrary bytes).

use super::{Flags, HEADER_LEN, Question, RecordRepr, ReplyRepr, ipv4_text, keeps};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// Names longer than this (in wire bytes) are left to hickory, which checks
/// the limits of 255 bytes and characters.
const MAX_NAME: usize = 200;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let x = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([x[0], x[1]]))
}

/// Writes the name at `at` as [`super::name_text`] does (`www.lab.test.`),
/// following compression pointers as hickory does (each to before the part
/// that points, none into what was read before); returns where the name ends
/// in place. None for a name hickory would refuse or that is not all plain
/// labels (letters, digits, `_`, `-` not first), whose text needs escapes.
fn name_text_at(b: &[u8], mut at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut end = None;
    // where the current run of labels started, and the bound it may not reach
    let mut run_start = at;
    let mut limit = usize::MAX;
    let mut wire_len = 0usize;
    let mut labels = 0usize;
    loop {
        if at >= limit {
            return None;
        }
        let len = *b.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                if labels == 0 {
                    out.push(b'.');
                }
                return Some(end.unwrap_or(at + 1));
            }
            0x00 => {
                let l = b.get(at + 1..at + 1 + usize::from(len))?;
                wire_len += 1 + l.len();
                if wire_len > MAX_NAME {
                    return None;
                }
                let plain = l
                    .iter()
                    .enumerate()
                    .all(|(i, &c)| c.is_ascii_alphanumeric() || c == b'_' || (c == b'-' && i > 0));
                if !plain {
                    return None;
                }
                out.extend_from_slice(l);
                out.push(b'.');
                labels += 1;
                at += 1 + l.len();
            }
            0xc0 => {
                let ptr = usize::from(be16(b, at)? & 0x3fff);
                if ptr >= run_start {
                    return None;
                }
                end.get_or_insert(at + 2);
                limit = run_start;
                run_start = ptr;
                at = ptr;
            }
            _ => return None,
        }
    }
}

/// The data of a record of type `rtype` in presentation format, as
/// [`super::rdata_text`] writes hickory's decoding of it; `start..end` is the
/// record data in `b` (names in it may point back into the message).
fn rdata_text_at(b: &[u8], rtype: u16, start: usize, end: usize) -> Option<String> {
    let d = b.get(start..end)?;
    let mut s = Vec::with_capacity(32);
    match rtype {
        1 => {
            let a: [u8; 4] = d.try_into().ok()?;
            return Some(ipv4_text(a.into()));
        }
        28 => {
            let a: [u8; 16] = d.try_into().ok()?;
            ipv6_text(a, &mut s)?;
        }
        // CNAME, NS, PTR: one name filling the data
        5 | 2 | 12 => {
            if name_text_at(b, start, &mut s)? != end {
                return None;
            }
        }
        // MX: preference, exchange
        15 => {
            decimal(be16(d, 0)?, &mut s);
            s.push(b' ');
            if name_text_at(b, start + 2, &mut s)? != end {
                return None;
            }
        }
        // TXT: character-strings filling the data, each quoted
        16 => {
            let mut at = 0;
            while at < d.len() {
                let len = usize::from(d[at]);
                let text = d.get(at + 1..at + 1 + len)?;
                if at > 0 {
                    s.push(b' ');
                }
                s.push(b'"');
                for &c in text {
                    match c {
                        b'"' | b'\\' => s.extend_from_slice(&[b'\\', c]),
                        0x20..=0x7e => s.push(c),
                        _ => s.extend_from_slice(&[
                            b'\\',
                            b'0' + c / 100,
                            b'0' + c / 10 % 10,
                            b'0' + c % 10,
                        ]),
                    }
                }
                s.push(b'"');
                at += 1 + len;
            }
        }
        _ => return None,
    }
    // ASCII only, as written above
    String::from_utf8(s).ok()
}

/// `n` in decimal.
fn decimal(n: u16, out: &mut Vec<u8>) {
    let mut b = [0u8; 5];
    let mut i = b.len();
    let mut n = n;
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// An IPv6 address as its `Display` writes it (RFC 5952: lower-case hex, the
/// first longest run of two or more zero groups as `::`); None for the forms
/// `Display` writes otherwise (IPv4-mapped), left to hickory.
fn ipv6_text(a: [u8; 16], out: &mut Vec<u8>) -> Option<()> {
    let g: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    if g[..5] == [0; 5] && g[5] == 0xffff {
        return None;
    }
    // the longest run of zero groups (the first of equal ones), if 2 or more
    let (mut best, mut best_len, mut run) = (0, 0, 0);
    for (i, &x) in g.iter().enumerate() {
        if x == 0 {
            run += 1;
            if run > best_len {
                (best, best_len) = (i + 1 - run, run);
            }
        } else {
            run = 0;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let group = |x: u16, out: &mut Vec<u8>| {
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let nib = usize::from((x >> shift) & 0xf);
            if nib != 0 || started || shift == 0 {
                out.push(HEX[nib]);
                started = true;
            }
        }
    };
    let mut i = 0;
    while i < 8 {
        if best_len >= 2 && i == best {
            out.extend_from_slice(b"::");
            i += best_len;
            continue;
        }
        if i > 0 && !(best_len >= 2 && i == best + best_len) {
            out.push(b':');
        }
        group(g[i], out);
        i += 1;
    }
    Some(())
}

/// [`ReplyRepr::parse_answers`] over the bytes, or None where hickory must
/// read the message (see the module's text).
pub(super) fn parse_answers(b: &[u8]) -> Option<ReplyRepr> {
    let h = b.get(..HEADER_LEN)?;
    let opcode = (h[2] >> 3) & 0xf;
    if opcode != 0 || be16(h, 4)? != 1 {
        return None;
    }
    let answers = be16(h, 6)?;
    // the question: its name as hickory holds it (compared with ours
    // case-insensitively), type and class
    let mut d = BinDecoder::new(b);
    d.read_slice(HEADER_LEN).ok()?;
    let name = Name::read(&mut d).ok()?;
    let at = d.index();
    let qtype = RecordType::from(be16(b, at)?);
    if be16(b, at + 2)? != 1 {
        return None;
    }
    let mut at = at + 4;
    let mut answer = Vec::with_capacity(usize::from(answers).min(4));
    // the owner names are checked as hickory would read them, not kept
    let mut owner = Vec::with_capacity(64);
    for _ in 0..answers {
        let name_end = super::skip_name(b, at)?;
        let rtype = be16(b, name_end)?;
        let class = be16(b, name_end + 2)?;
        let ttl_b = b.get(name_end + 4..name_end + 8)?;
        let ttl = u32::from_be_bytes([ttl_b[0], ttl_b[1], ttl_b[2], ttl_b[3]]);
        let rd_start = name_end + 10;
        let rd_end = rd_start + usize::from(be16(b, name_end + 8)?);
        if rd_end > b.len() {
            return None;
        }
        let rt = RecordType::from(rtype);
        if matches!(rt, RecordType::OPT | RecordType::SIG | RecordType::TSIG) {
            return None;
        }
        if keeps(Some(qtype), rt) {
            // an empty data is an update's marker to hickory
            if class != 1 || rd_end == rd_start {
                return None;
            }
            owner.clear();
            name_text_at(b, at, &mut owner)?;
            answer.push(RecordRepr {
                name: String::new(),
                ttl,
                class: String::new(),
                rtype: String::new(),
                data: rdata_text_at(b, rtype, rd_start, rd_end)?,
                type_code: rtype,
            });
        }
        at = rd_end;
    }
    let flag = |byte: usize, bit: u8| h[byte] & bit != 0;
    Some(ReplyRepr {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: flag(2, 0x80),
        opcode,
        flags: Flags {
            qr: flag(2, 0x80),
            aa: flag(2, 0x04),
            tc: flag(2, 0x02),
            rd: flag(2, 0x01),
            ra: flag(3, 0x80),
            ad: flag(3, 0x20),
            cd: flag(3, 0x10),
        },
        rcode: u16::from(h[3] & 0xf),
        question: Some(Question {
            name,
            qtype,
            qclass: DNSClass::IN,
        }),
        question_count: 1,
        answer,
        authority: Vec::new(),
        additional: Vec::new(),
        edns: None,
        size: b.len(),
        partial: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Noise;

    // Replies as NSD writes them for the bulk benchmark's mixed set (header,
    // question, answers with compressed names; the denial's SOA unread).
    /// a.lab.test A
    const A: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\
        \x01a\x03lab\x04test\x00\x00\x01\x00\x01\
        \xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc6\x12\x00\x0a";
    /// a.lab.test AAAA
    const AAAA: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\
        \x01a\x03lab\x04test\x00\x00\x1c\x00\x01\
        \xc0\x0c\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x10\
        \x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10";
    /// www.lab.test A: a CNAME to a.lab.test (written as `a` + a pointer to
    /// `lab.test`), then its A (owner: a pointer into the CNAME's data)
    const CNAME_CHAIN: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x02\x00\x00\x00\x00\
        \x03www\x03lab\x04test\x00\x00\x01\x00\x01\
        \xc0\x0c\x00\x05\x00\x01\x00\x00\x01\x2c\x00\x04\x01a\xc0\x10\
        \xc0\x2a\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc6\x12\x00\x0a";
    /// lab.test MX: two exchanges under the zone
    const MX: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x02\x00\x00\x00\x00\
        \x03lab\x04test\x00\x00\x0f\x00\x01\
        \xc0\x0c\x00\x0f\x00\x01\x00\x00\x01\x2c\x00\x09\x00\x0a\x04mail\xc0\x0c\
        \xc0\x0c\x00\x0f\x00\x01\x00\x00\x01\x2c\x00\x0a\x00\x14\x05mail2\xc0\x0c";
    /// txt.lab.test TXT: two strings, one with a quote, a backslash and a
    /// control byte
    const TXT: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\
        \x03txt\x03lab\x04test\x00\x00\x10\x00\x01\
        \xc0\x0c\x00\x10\x00\x01\x00\x00\x01\x2c\x00\x12\
        \x0chello synlab\x04a\"\\\x01";
    /// nx.lab.test A: NXDOMAIN, the zone's SOA in the authority section
    const NX: &[u8] = b"\x12\x34\x84\x03\x00\x01\x00\x00\x00\x01\x00\x00\
        \x02nx\x03lab\x04test\x00\x00\x01\x00\x01\
        \xc0\x0f\x00\x06\x00\x01\x00\x00\x01\x2c\x00\x1a\
        \x02ns\xc0\x0f\x04host\xc0\x0f\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x03\x84";

    fn hickory(b: &[u8]) -> Option<ReplyRepr> {
        ReplyRepr::parse_answers_hickory(b).ok()
    }

    /// (type, data) of an answer: all the answers-only read keeps.
    type Kept<'a> = (u16, &'a str);

    fn data(r: &ReplyRepr) -> Vec<Kept<'_>> {
        r.answer
            .iter()
            .map(|a| (a.type_code, a.data.as_str()))
            .collect()
    }

    #[test]
    fn the_usual_replies_read_over_the_bytes_as_hickory_reads_them() {
        let cases: [(&[u8], &[Kept]); 6] = [
            (A, &[(1, "198.18.0.10")]),
            (AAAA, &[(28, "2001:db8::10")]),
            // the A at the end of the chain (its owner points into the CNAME)
            (CNAME_CHAIN, &[(1, "198.18.0.10")]),
            (MX, &[(15, "10 mail.lab.test."), (15, "20 mail2.lab.test.")]),
            (TXT, &[(16, "\"hello synlab\" \"a\\\"\\\\\\001\"")]),
            (NX, &[]),
        ];
        for (bytes, want) in cases {
            let fast = parse_answers(bytes).expect("read over the bytes");
            assert_eq!(data(&fast), want);
            assert_eq!(Some(&fast), hickory(bytes).as_ref());
            assert_eq!(fast.size, bytes.len());
            assert!(fast.answer.iter().all(|a| a.ttl == 300));
        }
        let nx = parse_answers(NX).unwrap();
        assert_eq!((nx.rcode, nx.flags.aa, nx.flags.qr), (3, true, true));
    }

    #[test]
    fn what_it_does_not_cover_is_left_to_hickory() {
        let with = |at: usize, v: &[u8]| {
            let mut b = A.to_vec();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };
        for b in [
            with(2, b"\x8c"),      // opcode 1
            with(5, b"\x02"),      // two questions
            with(27, b"\x03"),     // class CH question
            with(32, b"\x00\x03"), // class CH answer
            with(13, b"*"),        // an owner whose text hickory escapes
            with(29, b"\x1c"),     // owner: a pointer to itself
            with(28, b"\xc0\x30"), // owner: a pointer forward
            with(39, b"\x05"),     // an A of 5 bytes
            with(39, b"\x00"),     // empty data (an update's marker)
        ] {
            assert_eq!(parse_answers(&b), None, "{b:02x?}");
        }
        // an RRSIG (with --do) is left to hickory's read of DNSSEC records
        let mut b = A.to_vec();
        b[31] = 46;
        assert_eq!(parse_answers(&b), None);
    }

    #[test]
    fn ipv6_text_is_displays() {
        let mut n = Noise::new(6);
        let mut shown = 0;
        for i in 0..200_000u32 {
            // mostly zero groups, to try every run of them
            let mut a = [0u8; 16];
            for g in 0..8 {
                if n.next().is_multiple_of(3) {
                    let v = if i % 2 == 0 {
                        n.next() as u16
                    } else {
                        (n.next() % 16) as u16
                    };
                    a[2 * g..2 * g + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
            let mut t = Vec::new();
            let want = std::net::Ipv6Addr::from(a).to_string();
            match ipv6_text(a, &mut t) {
                Some(()) => {
                    assert_eq!(String::from_utf8(t).unwrap(), want);
                    shown += 1;
                }
                None => assert!(want.starts_with("::ffff:"), "{want}"),
            }
        }
        assert!(shown > 190_000);
        let mut t = Vec::new();
        for (n, want) in [(0u16, "0"), (7, "7"), (10, "10"), (65535, "65535")] {
            t.clear();
            decimal(n, &mut t);
            assert_eq!(t, want.as_bytes());
        }
    }

    #[test]
    fn never_panics_and_agrees_with_hickory_on_noise() {
        let mut n = Noise::new(1035);
        let mut agreed = 0;
        for base in [A, AAAA, CNAME_CHAIN, MX, TXT, NX] {
            for _ in 0..40_000 {
                let b = n.mutate(base);
                if let Some(fast) = parse_answers(&b) {
                    assert_eq!(Some(&fast), hickory(&b).as_ref(), "{b:02x?}");
                    agreed += 1;
                }
            }
        }
        for _ in 0..50_000 {
            let b = n.bytes(80);
            if let Some(fast) = parse_answers(&b) {
                assert_eq!(Some(&fast), hickory(&b).as_ref(), "{b:02x?}");
            }
        }
        // the mutations that leave a reply readable are read here, not by hickory
        assert!(agreed > 10_000, "{agreed}");
    }
}
