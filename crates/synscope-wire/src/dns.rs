//! DNS messages (RFC 1035, EDNS0 RFC 6891) over `hickory-proto`: a query we
//! build ([`QueryRepr`]) and a reply we read ([`ReplyRepr`]). Replies are
//! untrusted: parsing never panics, and records are turned into plain strings
//! in presentation format (as kdig prints them) so the rest of synscope never
//! touches the DNS crate's types for output.

use super::WireError;
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

mod answers;

/// The header length of every DNS message.
pub const HEADER_LEN: usize = 12;

/// EDNS0 settings of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdnsRepr {
    /// The largest UDP reply we accept, in bytes (sent as at least 512; 1232
    /// by default, the DNS Flag Day 2020 value).
    pub udp_size: u16,
    /// The DO bit (RFC 3225): ask for DNSSEC records.
    pub dnssec_ok: bool,
    /// EDNS Client Subnet (RFC 7871): address and source prefix length.
    pub client_subnet: Option<(IpAddr, u8)>,
}

impl Default for EdnsRepr {
    fn default() -> Self {
        EdnsRepr {
            udp_size: 1232,
            dnssec_ok: false,
            client_subnet: None,
        }
    }
}

/// A question: name, type, class. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// QNAME, absolute.
    pub name: Name,
    /// QTYPE.
    pub qtype: RecordType,
    /// QCLASS (IN for the questions we ask).
    pub qclass: DNSClass,
}

impl Question {
    /// The question as hickory decoded it.
    fn of(q: &Query) -> Question {
        Question {
            name: q.name().clone(),
            qtype: q.query_type(),
            qclass: q.query_class(),
        }
    }

    /// `self == other` (names compared case-insensitively), label by label
    /// without hickory's general ordering: what bulk mode asks of every reply.
    pub fn same(&self, other: &Question) -> bool {
        if self.qtype != other.qtype
            || self.qclass != other.qclass
            || self.name.is_fqdn() != other.name.is_fqdn()
        {
            return false;
        }
        let (mut a, mut b) = (self.name.iter(), other.name.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
                _ => return false,
            }
        }
    }

    /// A question of class IN.
    pub fn new(name: Name, qtype: RecordType) -> Question {
        Question {
            name,
            qtype,
            qclass: DNSClass::IN,
        }
    }
}

/// A query we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRepr {
    /// Message ID, matched against the reply's.
    pub id: u16,
    /// The one question.
    pub question: Question,
    /// The RD bit: ask a resolver to recurse.
    pub recursion_desired: bool,
    /// The OPT record to add; None: a plain RFC 1035 query.
    pub edns: Option<EdnsRepr>,
}

impl QueryRepr {
    /// The query's wire bytes.
    pub fn emit(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        self.emit_into(&mut b);
        b
    }

    /// Appends the query's wire bytes to `b` (bulk mode writes them straight
    /// after the IP and UDP headers: [`crate::IpRepr::emit_udp`]).
    pub fn emit_into(&self, b: &mut Vec<u8>) {
        match &self.edns {
            Some(e) if e.client_subnet.is_some() => b.extend_from_slice(&self.emit_hickory()),
            _ => self.emit_plain(b),
        }
    }

    /// Header, question and a plain OPT record, written directly (what bulk
    /// mode sends per name: a sixth of the cost of building a Message);
    /// byte for byte what [`QueryRepr::emit_hickory`] writes.
    fn emit_plain(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.id.to_be_bytes());
        b.push(if self.recursion_desired { 0x01 } else { 0x00 });
        b.push(0);
        let arcount = u16::from(self.edns.is_some());
        for count in [1u16, 0, 0, arcount] {
            b.extend_from_slice(&count.to_be_bytes());
        }
        for label in self.question.name.iter() {
            b.push(label.len() as u8);
            b.extend_from_slice(label);
        }
        b.push(0);
        b.extend_from_slice(&u16::from(self.question.qtype).to_be_bytes());
        b.extend_from_slice(&u16::from(self.question.qclass).to_be_bytes());
        if let Some(e) = &self.edns {
            b.push(0); // root
            b.extend_from_slice(&41u16.to_be_bytes()); // OPT
            b.extend_from_slice(&e.udp_size.max(512).to_be_bytes());
            // extended rcode, version, flags (DO), no options
            b.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
    }

    fn emit_hickory(&self) -> Vec<u8> {
        let mut m = Message::new(self.id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = self.recursion_desired;
        let mut q = Query::query(self.question.name.clone(), self.question.qtype);
        q.set_query_class(self.question.qclass);
        m.add_query(q);
        if let Some(e) = &self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(e.udp_size.max(512));
            edns.set_dnssec_ok(e.dnssec_ok);
            if let Some((addr, prefix)) = e.client_subnet {
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
            }
            m.set_edns(edns);
        }
        // a message with one question and at most one OPT record always encodes
        m.to_vec().unwrap_or_default()
    }
}

/// Header flags of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// Query/Response: set in a response.
    pub qr: bool,
    /// Authoritative Answer.
    pub aa: bool,
    /// TrunCation: the reply did not fit (retry over TCP or with a larger EDNS size).
    pub tc: bool,
    /// Recursion Desired, copied from the query.
    pub rd: bool,
    /// Recursion Available.
    pub ra: bool,
    /// Authentic Data (RFC 4035): the resolver validated the answer with DNSSEC.
    pub ad: bool,
    /// Checking Disabled (RFC 4035), copied from the query.
    pub cd: bool,
}

impl Flags {
    /// `qr aa rd` as kdig prints them.
    pub fn names(&self) -> String {
        let all = [
            (self.qr, "qr"),
            (self.aa, "aa"),
            (self.tc, "tc"),
            (self.rd, "rd"),
            (self.ra, "ra"),
            (self.ad, "ad"),
            (self.cd, "cd"),
        ];
        let v: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        v.join(" ")
    }
}

/// One resource record, in presentation format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRepr {
    /// Owner name, absolute (`www.example.com.`).
    pub name: String,
    /// Time to live, in seconds.
    pub ttl: u32,
    /// `IN`, `CH`, ..., `CLASS<n>`.
    pub class: String,
    /// Type mnemonic ([`type_name`]).
    pub rtype: String,
    /// RDATA in presentation format, as kdig prints it.
    pub data: String,
    /// The numeric type, for comparing without the mnemonic.
    pub type_code: u16,
}

/// The OPT pseudo-record of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdnsInfo {
    /// EDNS version (0 is the only one defined).
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// The largest UDP message the server accepts, in bytes.
    pub udp_size: u16,
    /// The options, one text each (`ECS: ...` for Client Subnet, else the option code).
    pub options: Vec<String>,
}

/// A reply as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRepr {
    /// Message ID, as the query's if the reply is ours.
    pub id: u16,
    /// The QR bit (the same as `flags.qr`).
    pub is_response: bool,
    /// OPCODE (0: standard query).
    pub opcode: u8,
    /// The header flags.
    pub flags: Flags,
    /// The full response code (12 bits with EDNS).
    pub rcode: u16,
    /// The first question; None when the reply carries none.
    pub question: Option<Question>,
    /// QDCOUNT as read (a reply should echo exactly one question).
    pub question_count: u16,
    /// The answer section.
    pub answer: Vec<RecordRepr>,
    /// The authority section (empty when not read: [`ReplyRepr::parse_answers`]).
    pub authority: Vec<RecordRepr>,
    /// The additional section, without the OPT record (empty when not read).
    pub additional: Vec<RecordRepr>,
    /// The OPT record; None when the reply has none or it was not read.
    pub edns: Option<EdnsInfo>,
    /// Size of the message in bytes.
    pub size: usize,
    /// Only the header and question could be read (a truncated reply whose
    /// records are cut).
    pub partial: bool,
}

impl ReplyRepr {
    /// Parses a reply. A message whose records cannot be decoded but whose
    /// header and question can is returned with `partial` set when its TC bit is
    /// on (a truncated UDP reply); anything else unreadable is an error.
    pub fn parse(bytes: &[u8]) -> Result<ReplyRepr, WireError> {
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated("dns"));
        }
        match Message::from_vec(bytes) {
            Ok(m) => Ok(Self::from_message(&m, bytes.len())),
            Err(_) => Self::parse_head(bytes),
        }
    }

    /// As [`ReplyRepr::parse`], but only the header, the question and the
    /// answer section are decoded; the authority and additional sections are not
    /// read at all (so neither is EDNS: the rcode is the header's 4 bits). Of
    /// the answers, only the records of the question's type (every type for
    /// ANY) and their RRSIGs are decoded; the others (a CNAME chain's links)
    /// are stepped over unread. What bulk mode needs (the answer set), at a
    /// fraction of the cost of a whole message. The records keep their data
    /// and type code only (their owner, class and type text are left empty:
    /// bulk mode prints and checks the answer set alone). The usual reply is
    /// read straight over its bytes (`answers.rs`), the others by hickory.
    pub fn parse_answers(bytes: &[u8]) -> Result<ReplyRepr, WireError> {
        match answers::parse_answers(bytes) {
            Some(r) => Ok(r),
            None => Self::parse_answers_hickory(bytes),
        }
    }

    /// The read over the bytes alone (None where hickory must read the
    /// message): for the `dns_answers` fuzz target, which compares it with
    /// [`ReplyRepr::parse_answers_hickory`].
    #[doc(hidden)]
    pub fn parse_answers_over_bytes(bytes: &[u8]) -> Option<ReplyRepr> {
        answers::parse_answers(bytes)
    }

    /// [`ReplyRepr::parse_answers`] of any message, through hickory.
    #[doc(hidden)]
    pub fn parse_answers_hickory(bytes: &[u8]) -> Result<ReplyRepr, WireError> {
        let mut r = Self::parse_answers_hickory_whole(bytes)?;
        for a in &mut r.answer {
            (a.name, a.class, a.rtype) = Default::default();
        }
        Ok(r)
    }

    fn parse_answers_hickory_whole(bytes: &[u8]) -> Result<ReplyRepr, WireError> {
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated("dns"));
        }
        let mut d = BinDecoder::new(bytes);
        let head = (|| -> Option<ReplyRepr> {
            let h = Header::read(&mut d).ok()?;
            let mut question = None;
            for _ in 0..h.counts.queries {
                let q = Query::read(&mut d).ok()?;
                question.get_or_insert(Question::of(&q));
            }
            let qtype = question.as_ref().map(|q: &Question| q.qtype);
            let mut answer = Vec::with_capacity(usize::from(h.counts.answers).min(16));
            for _ in 0..h.counts.answers {
                // the record's type, read ahead of decoding it
                let at = d.index();
                let name_end = skip_name(bytes, at)?;
                let field = |o: usize| -> Option<u16> {
                    let b = bytes.get(name_end + o..name_end + o + 2)?;
                    Some(u16::from_be_bytes([b[0], b[1]]))
                };
                let rtype = RecordType::from(field(0)?);
                if matches!(rtype, RecordType::OPT | RecordType::SIG | RecordType::TSIG) {
                    return None; // only allowed in the additional section
                }
                if keeps(qtype, rtype) {
                    let r = Record::read(&mut d).ok()?;
                    answer.extend(record_repr(&r));
                } else {
                    let len = name_end - at + 10 + usize::from(field(8)?);
                    d.read_slice(len).ok()?;
                }
            }
            Some(Self::from_header(&h, question, answer, bytes.len(), false))
        })();
        match head {
            Some(r) => Ok(r),
            None => Self::parse_head(bytes),
        }
    }

    fn parse_head(bytes: &[u8]) -> Result<ReplyRepr, WireError> {
        let mut d = BinDecoder::new(bytes);
        let h = Header::read(&mut d).map_err(|_| WireError::Truncated("dns"))?;
        if !h.metadata.truncation {
            return Err(WireError::BadLength("dns"));
        }
        let question = if h.counts.queries >= 1 {
            let q = Query::read(&mut d).map_err(|_| WireError::BadLength("dns"))?;
            Some(Question::of(&q))
        } else {
            None
        };
        Ok(Self::from_header(
            &h,
            question,
            Vec::new(),
            bytes.len(),
            true,
        ))
    }

    /// A reply of a header, its question and answers, and nothing else.
    fn from_header(
        h: &Header,
        question: Option<Question>,
        answer: Vec<RecordRepr>,
        size: usize,
        partial: bool,
    ) -> ReplyRepr {
        let md = &h.metadata;
        ReplyRepr {
            id: md.id,
            is_response: md.message_type == MessageType::Response,
            opcode: u8::from(md.op_code),
            flags: flags_of(md),
            rcode: u16::from(md.response_code),
            question,
            question_count: h.counts.queries,
            answer,
            authority: Vec::new(),
            additional: Vec::new(),
            edns: None,
            size,
            partial,
        }
    }

    fn from_message(m: &Message, size: usize) -> ReplyRepr {
        let md = &m.metadata;
        let edns = m.edns.as_ref().map(|e| EdnsInfo {
            version: e.version(),
            dnssec_ok: e.flags().dnssec_ok,
            udp_size: e.max_payload(),
            options: e
                .options()
                .as_ref()
                .iter()
                .map(|(code, opt)| edns_option_text(*code, opt))
                .collect(),
        });
        let records = |v: &[Record]| v.iter().filter_map(record_repr).collect::<Vec<_>>();
        ReplyRepr {
            id: md.id,
            is_response: md.message_type == MessageType::Response,
            opcode: u8::from(md.op_code),
            flags: flags_of(md),
            rcode: u16::from(md.response_code),
            question: m.queries.first().map(Question::of),
            question_count: m.queries.len() as u16,
            answer: records(&m.answers),
            authority: records(&m.authorities),
            additional: records(&m.additionals),
            edns,
            size,
            partial: false,
        }
    }

    /// The data of the answer records of type `qtype` (every answer for ANY):
    /// the "answer set" the checks compare.
    pub fn answer_set(&self, qtype: RecordType) -> Vec<String> {
        let code = u16::from(qtype);
        self.answer
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.type_code == code)
            .map(|r| r.data.clone())
            .collect()
    }
}

/// Does the answers-only parse keep a record of type `rtype` for a question
/// of type `qtype`?
fn keeps(qtype: Option<RecordType>, rtype: RecordType) -> bool {
    match qtype {
        None | Some(RecordType::ANY) => true,
        Some(q) => rtype == q || rtype == RecordType::RRSIG,
    }
}

/// Where the domain name at `at` ends (after its root label or its
/// compression pointer), without following pointers; None if it runs off the
/// message or uses a label type other than plain or pointer.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => return (at + 2 <= b.len()).then_some(at + 2),
            _ => return None,
        }
    }
    None
}

fn flags_of(md: &hickory_proto::op::Metadata) -> Flags {
    Flags {
        qr: md.message_type == MessageType::Response,
        aa: md.authoritative,
        tc: md.truncation,
        rd: md.recursion_desired,
        ra: md.recursion_available,
        ad: md.authentic_data,
        cd: md.checking_disabled,
    }
}

fn edns_option_text(code: EdnsCode, opt: &EdnsOption) -> String {
    match opt {
        EdnsOption::Subnet(s) => {
            let mut t = String::new();
            let _ = write!(t, "ECS: {s:?}");
            t
        }
        _ => format!("{code:?}"),
    }
}

/// A record in presentation format, or None for the OPT pseudo-record.
fn record_repr(r: &Record) -> Option<RecordRepr> {
    let rtype = r.record_type();
    if rtype == RecordType::OPT {
        return None;
    }
    Some(RecordRepr {
        name: name_text(&r.name),
        ttl: r.ttl,
        class: class_name(r.dns_class),
        rtype: type_name(rtype),
        data: rdata_text(&r.data),
        type_code: u16::from(rtype),
    })
}

/// `A`, `AAAA`, ..., `TYPE65` for types without a mnemonic here.
pub fn type_name(t: RecordType) -> String {
    // the common ones without formatting (as hickory's Display writes them)
    let known = match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::CNAME => "CNAME",
        RecordType::MX => "MX",
        RecordType::TXT => "TXT",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::SOA => "SOA",
        RecordType::SRV => "SRV",
        RecordType::RRSIG => "RRSIG",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => {
            let mut s = String::new();
            if write!(s, "{t}").is_err() || s.is_empty() || s == "Unknown" {
                return format!("TYPE{}", u16::from(t));
            }
            s
        }
    }
}

fn class_name(c: DNSClass) -> String {
    match c {
        DNSClass::IN => "IN".into(),
        DNSClass::CH => "CH".into(),
        DNSClass::HS => "HS".into(),
        DNSClass::NONE => "NONE".into(),
        DNSClass::ANY => "ANY".into(),
        other => format!("CLASS{}", u16::from(other)),
    }
}

/// Parses a query type as given on the command line: `A`, `mx`, `TYPE65`.
pub fn parse_type(s: &str) -> Option<RecordType> {
    let up = s.to_ascii_uppercase();
    if let Some(n) = up.strip_prefix("TYPE") {
        return n.parse::<u16>().ok().map(RecordType::from);
    }
    match RecordType::from_str(&up) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

/// A query name from user input: IDN labels converted to punycode (IDNA),
/// made absolute.
pub fn parse_name(s: &str) -> Result<Name, String> {
    if s.is_empty() {
        return Err("empty name".into());
    }
    // lower-case letters, digits and hyphens (and no punycode) are what IDNA
    // maps to themselves: read as wire bytes, at a fraction of the cost
    if let Some(n) = plain_name(s) {
        return Ok(n);
    }
    let n = Name::from_utf8(s);
    let mut n = n.map_err(|e| format!("bad name '{s}': {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name of plain labels (lower-case letters, digits, hyphens not first, no
/// punycode), read from the wire form we write for it; None for any other.
fn plain_name(s: &str) -> Option<Name> {
    let body = s.strip_suffix('.').unwrap_or(s);
    let mut wire = [0u8; 255];
    let mut at = 0;
    for l in body.split('.') {
        let b = l.as_bytes();
        let plain = (1..=63).contains(&b.len())
            && b[0] != b'-'
            && !l.starts_with("xn--")
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        // room for this label and the root's zero
        if !plain || at + 1 + b.len() + 1 > wire.len() {
            return None;
        }
        wire[at] = b.len() as u8;
        wire[at + 1..at + 1 + b.len()].copy_from_slice(b);
        at += 1 + b.len();
    }
    Name::read(&mut BinDecoder::new(&wire[..=at])).ok()
}

/// A name as [`Name::to_ascii`] writes it (`www.example.com.`), without its
/// per-character formatting when no character needs an escape.
pub fn name_text(n: &Name) -> String {
    let mut b = Vec::with_capacity(64);
    for l in n.iter() {
        let plain = l
            .iter()
            .enumerate()
            .all(|(i, &c)| c.is_ascii_alphanumeric() || c == b'_' || (c == b'-' && i > 0));
        if !plain || l.is_empty() {
            return n.to_ascii();
        }
        if !b.is_empty() {
            b.push(b'.');
        }
        b.extend_from_slice(l);
    }
    if n.is_root() || n.is_fqdn() {
        b.push(b'.');
    }
    // ASCII only, as checked
    String::from_utf8(b).unwrap_or_else(|_| n.to_ascii())
}

/// The PTR name of an address: `10.0.18.198.in-addr.arpa.`, `...ip6.arpa.`.
pub fn reverse_name(addr: IpAddr) -> Name {
    let mut n = Name::from(addr);
    n.set_fqdn(true);
    n
}

/// The name of an rcode as kdig prints it.
pub fn rcode_name(rcode: u16) -> String {
    match rcode_known(rcode) {
        Some(s) => s.to_string(),
        None => format!("RCODE{rcode}"),
    }
}

/// The name of a known rcode, without an allocation.
pub fn rcode_known(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return None,
    })
}

/// The rcode named `s` (case-insensitive, `RCODEnn` too).
pub fn parse_rcode(s: &str) -> Option<u16> {
    let up = s.to_ascii_uppercase();
    if let Some(n) = up.strip_prefix("RCODE") {
        return n.parse::<u16>().ok().filter(|n| *n < 4096);
    }
    (0..=23).find(|&n| rcode_name(n) == up)
}

/// The opcode's name.
pub fn opcode_name(op: u8) -> String {
    match op {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        n => format!("OPCODE{n}"),
    }
}

/// A character-string quoted as in zone files: `"` and `\` escaped,
/// non-printable bytes as `\DDD`.
fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03}");
            }
        }
    }
    s.push('"');
    s
}

fn unknown_rdata(bytes: &[u8]) -> String {
    let mut s = format!("\\# {}", bytes.len());
    if !bytes.is_empty() {
        s.push(' ');
        for b in bytes {
            let _ = write!(s, "{b:02X}");
        }
    }
    s
}

/// RRSIG's type code.
pub const RRSIG: u16 = 46;

/// The type an RRSIG record covers (the first field of its data), or None for
/// other records. Reads the presentation format (a type mnemonic) and the
/// generic form (`\# N HEX`, shown when the data does not parse).
pub fn rrsig_covers(r: &RecordRepr) -> Option<u16> {
    if r.type_code != RRSIG {
        return None;
    }
    let mut w = r.data.split_whitespace();
    match w.next()? {
        "\\#" => {
            let _len = w.next()?;
            u16::from_str_radix(w.next()?.get(..4)?, 16).ok()
        }
        t => parse_type(t).map(u16::from),
    }
}

/// Standard base64 (RFC 4648, with padding), as zone files show keys and signatures.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (c.get(1).copied().unwrap_or(0) as u32) << 8
            | c.get(2).copied().unwrap_or(0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Seconds since the epoch as `YYYYMMDDHHmmSS` (UTC), as RRSIG validity is shown.
fn sig_time(t: u32) -> String {
    let (days, secs) = ((t / 86400) as i64, t % 86400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An uncompressed name at the start of `b` (RRSIG signer, NSEC next name)
/// and the bytes after it.
fn rdata_name(b: &[u8]) -> Option<(String, &[u8])> {
    let mut d = BinDecoder::new(b);
    let n = Name::read(&mut d).ok()?;
    let used = b.len() - d.len();
    Some((name_text(&n), &b[used..]))
}

/// The types of an NSEC/NSEC3 type bitmap (RFC 4034 4.1.2), as mnemonics.
fn type_bitmap(mut b: &[u8]) -> Option<Vec<String>> {
    let mut types = Vec::new();
    while !b.is_empty() {
        let (window, len) = (*b.first()? as u16, *b.get(1)? as usize);
        let bits = b.get(2..2 + len)?;
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    let t = window << 8 | (i as u16 * 8 + bit);
                    types.push(type_name(RecordType::from(t)));
                }
            }
        }
        b = &b[2 + len..];
    }
    Some(types)
}

/// RRSIG, DNSKEY, DS and NSEC data in presentation format (RFC 4034), which
/// hickory reads only with its DNSSEC features; None if it does not parse.
fn dnssec_text(code: u16, b: &[u8]) -> Option<String> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let u32_at = |i: usize| {
        Some(u32::from_be_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
            *b.get(i + 2)?,
            *b.get(i + 3)?,
        ]))
    };
    match code {
        // RRSIG: covered, algorithm, labels, original TTL, expiration,
        // inception, key tag, signer, signature
        RRSIG => {
            let (signer, sig) = rdata_name(b.get(18..)?)?;
            Some(format!(
                "{} {} {} {} {} {} {} {signer} {}",
                type_name(RecordType::from(u16_at(0)?)),
                b.get(2)?,
                b.get(3)?,
                u32_at(4)?,
                sig_time(u32_at(8)?),
                sig_time(u32_at(12)?),
                u16_at(16)?,
                base64(sig)
            ))
        }
        // DNSKEY: flags, protocol, algorithm, key
        48 => Some(format!(
            "{} {} {} {}",
            u16_at(0)?,
            b.get(2)?,
            b.get(3)?,
            base64(b.get(4..)?)
        )),
        // DS: key tag, algorithm, digest type, digest
        43 => {
            let mut digest = String::new();
            for x in b.get(4..)? {
                let _ = write!(digest, "{x:02X}");
            }
            Some(format!(
                "{} {} {} {digest}",
                u16_at(0)?,
                b.get(2)?,
                b.get(3)?
            ))
        }
        // NSEC: next name, type bitmap
        47 => {
            let (next, rest) = rdata_name(b)?;
            let mut words = vec![next];
            words.extend(type_bitmap(rest)?);
            Some(words.join(" "))
        }
        _ => None,
    }
}

/// An IPv4 address in dotted decimal, as its Display writes it, without the
/// formatting machinery (the most common record of all).
fn ipv4_text(a: std::net::Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// Record data in presentation format (names in ASCII, as on the wire).
pub fn rdata_text(d: &RData) -> String {
    match d {
        RData::A(a) => ipv4_text(a.0),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::MX(mx) => {
            let mut t = mx.preference.to_string();
            t.push(' ');
            t.push_str(&name_text(&mx.exchange));
            t
        }
        RData::SRV(s) => format!(
            "{} {} {} {}",
            s.priority,
            s.weight,
            s.port,
            name_text(&s.target)
        ),
        RData::SOA(s) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&s.mname),
            name_text(&s.rname),
            s.serial,
            s.refresh,
            s.retry,
            s.expire,
            s.minimum
        ),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(" "),
        RData::NULL(n) => unknown_rdata(&n.anything),
        RData::Unknown { code, rdata } => dnssec_text(u16::from(*code), &rdata.anything)
            .unwrap_or_else(|| unknown_rdata(&rdata.anything)),
        other => {
            // Display may fail (OPT has none): never panic, fall back to a marker
            let mut s = String::new();
            if write!(s, "{other}").is_err() {
                s = "\\# ?".into();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_query_bytes_are_hickorys() {
        for name in [
            "a.lab.test",
            "xn--bcher-kva.lab.test",
            "Mixed.CASE.test",
            "bücher.lab.test",
            "x",
        ] {
            for qtype in ["A", "AAAA", "TXT", "TYPE65", "ANY", "PTR"] {
                for rd in [true, false] {
                    for edns in [
                        None,
                        Some(EdnsRepr::default()),
                        Some(EdnsRepr {
                            udp_size: 4096,
                            dnssec_ok: true,
                            client_subnet: None,
                        }),
                        Some(EdnsRepr {
                            udp_size: 100,
                            dnssec_ok: false,
                            client_subnet: None,
                        }),
                    ] {
                        let q = QueryRepr {
                            id: 0xbeef,
                            question: Question::new(
                                parse_name(name).unwrap(),
                                parse_type(qtype).unwrap(),
                            ),
                            recursion_desired: rd,
                            edns,
                        };
                        let mut plain = vec![0xee]; // appended after what is there
                        q.emit_plain(&mut plain);
                        assert_eq!(
                            plain[1..],
                            q.emit_hickory(),
                            "{name} {qtype} {rd} {:?}",
                            q.edns
                        );
                    }
                }
            }
        }
    }
    use crate::testutil::Noise;

    /// The DNS message of NSD's real answer to `a.lab.test A` (captured in the lab).
    fn nsd_answer() -> Vec<u8> {
        let d = crate::Datagram::parse_with(
            include_bytes!("fixtures/nsd_a_v4.bin"),
            crate::datagram::Checksums::Offloaded,
        )
        .unwrap();
        let crate::Transport::Udp(u) = d.transport else {
            panic!("not udp")
        };
        u.payload
    }

    #[test]
    fn dnssec_records_in_presentation_format() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(sig_time(0), "19700101000000");
        assert_eq!(sig_time(1_798_590_764), "20261230003244");
        assert_eq!(sig_time(u32::MAX), "21060207062815");
        // RRSIG over A, alg 13, 3 labels, TTL 300, key 598, signer signed.test.
        let mut rrsig = vec![0, 1, 13, 3, 0, 0, 1, 44];
        rrsig.extend(1_798_590_764u32.to_be_bytes());
        rrsig.extend(0u32.to_be_bytes());
        rrsig.extend(598u16.to_be_bytes());
        rrsig.extend(b"\x06signed\x04test\x00");
        rrsig.extend(b"foobar");
        let text = dnssec_text(RRSIG, &rrsig).unwrap();
        assert_eq!(
            text,
            "A 13 3 300 20261230003244 19700101000000 598 signed.test. Zm9vYmFy"
        );
        let r = RecordRepr {
            name: "www.signed.test.".into(),
            ttl: 300,
            class: "IN".into(),
            rtype: "RRSIG".into(),
            data: text,
            type_code: RRSIG,
        };
        assert_eq!(rrsig_covers(&r), Some(1));
        // NSEC: next name, then A (1), RRSIG (46), NSEC (47) in window 0
        let nsec = b"\x03www\x06signed\x04test\x00\x00\x06\x40\x00\x00\x00\x00\x03";
        assert_eq!(
            dnssec_text(47, nsec).unwrap(),
            "www.signed.test. A RRSIG NSEC"
        );
        assert_eq!(
            dnssec_text(43, b"\x21\xe8\x0d\x02\xab\xcd").unwrap(),
            "8680 13 2 ABCD"
        );
        assert_eq!(
            dnssec_text(48, b"\x01\x00\x03\x0dfoo").unwrap(),
            "256 3 13 Zm9v"
        );
        // truncated or bad data: None (shown as \# N HEX), never a panic
        for n in 0..rrsig.len() - 6 {
            assert_eq!(dnssec_text(RRSIG, &rrsig[..n]), None, "{n}");
        }
        assert_eq!(dnssec_text(47, b"\x03www\x00\x00\x09\x40"), None);
        let mut noise = Noise::new(46);
        for _ in 0..20_000 {
            let b = noise.mutate(&rrsig);
            for code in [RRSIG, 43, 47, 48] {
                let _ = dnssec_text(code, &b);
            }
        }
    }

    #[test]
    fn answers_only_reads_what_the_full_parse_reads_of_the_answer() {
        let m = nsd_answer();
        let full = ReplyRepr::parse(&m).unwrap();
        let quick = ReplyRepr::parse_answers(&m).unwrap();
        // the answers-only read keeps each record's type and data
        let kept = |v: &[RecordRepr]| -> Vec<(u16, u32, String)> {
            v.iter()
                .map(|r| (r.type_code, r.ttl, r.data.clone()))
                .collect()
        };
        assert_eq!(kept(&quick.answer), kept(&full.answer));
        assert!(
            quick
                .answer
                .iter()
                .all(|r| r.name.is_empty() && r.rtype.is_empty())
        );
        assert_eq!(
            (quick.id, quick.rcode, &quick.question, quick.flags.tc),
            (full.id, full.rcode, &full.question, full.flags.tc)
        );
        assert!(!full.authority.is_empty() || !full.additional.is_empty() || full.edns.is_some());
        assert!(quick.authority.is_empty() && quick.additional.is_empty() && quick.edns.is_none());
        assert_eq!(
            quick.answer_set(RecordType::A),
            vec!["198.18.0.10".to_string()]
        );
        // a cut answer section without TC is an error; with TC, the head is kept
        let cut = &m[..m.len() - 20];
        let answers_end = 12 + 16 + 16; // header, question, one A record (compressed name)
        assert!(ReplyRepr::parse_answers(&m[..answers_end - 1]).is_err());
        let mut tc = m[..answers_end - 1].to_vec();
        tc[2] |= 0x02;
        assert!(ReplyRepr::parse_answers(&tc).unwrap().partial);
        assert!(
            ReplyRepr::parse_answers(cut).is_ok(),
            "cut in the additional section: not read"
        );
    }

    #[test]
    fn answers_only_steps_over_records_of_other_types() {
        use hickory_proto::rr::rdata::{A, CNAME};
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        let www = Name::from_ascii("www.lab.test.").unwrap();
        let c1 = Name::from_ascii("c1.lab.test.").unwrap();
        m.add_query(Query::query(www.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            www,
            300,
            RData::CNAME(CNAME(c1.clone())),
        ));
        m.add_answer(Record::from_rdata(
            c1,
            300,
            RData::A(A::new(198, 18, 0, 10)),
        ));
        let bytes = m.to_vec().unwrap();
        let full = ReplyRepr::parse(&bytes).unwrap();
        let quick = ReplyRepr::parse_answers(&bytes).unwrap();
        assert_eq!(full.answer.len(), 2);
        assert_eq!(quick.answer.len(), 1);
        assert_eq!(
            (quick.answer[0].type_code, &quick.answer[0].data),
            (full.answer[1].type_code, &full.answer[1].data)
        );
        assert_eq!(
            quick.answer_set(RecordType::A),
            full.answer_set(RecordType::A)
        );
        // cut inside the stepped-over CNAME: an error, as for the full parse
        assert!(ReplyRepr::parse_answers(&bytes[..bytes.len() - 20]).is_err());
    }

    #[test]
    fn same_question_is_eq() {
        let names = [
            "a.lab.test.",
            "A.Lab.TEST.",
            "a.lab.test",
            "b.lab.test.",
            "a.lab.",
            "lab.test.",
            "*.lab.test.",
            "ab.test.",
            "a.b.test.",
            ".",
        ];
        for x in names {
            for y in names {
                for (tx, ty) in [
                    (RecordType::A, RecordType::A),
                    (RecordType::A, RecordType::MX),
                ] {
                    let qx = Question::new(Name::from_ascii(x).unwrap(), tx);
                    let qy = Question::new(Name::from_ascii(y).unwrap(), ty);
                    assert_eq!(qx.same(&qy), qx == qy, "{x} {y}");
                }
            }
        }
        let mut other = Question::new(Name::from_ascii("a.").unwrap(), RecordType::A);
        other.qclass = DNSClass::CH;
        assert!(!other.same(&Question::new(
            Name::from_ascii("a.").unwrap(),
            RecordType::A
        )));
    }

    #[test]
    fn answers_only_never_panics_on_noise() {
        let mut n = Noise::new(21);
        let m = nsd_answer();
        for _ in 0..50_000 {
            let _ = ReplyRepr::parse_answers(&n.mutate(&m));
        }
    }

    fn q(name: &str, t: RecordType, edns: Option<EdnsRepr>) -> QueryRepr {
        QueryRepr {
            id: 0x1234,
            question: Question::new(parse_name(name).unwrap(), t),
            recursion_desired: true,
            edns,
        }
    }

    #[test]
    fn query_bytes_exact() {
        let b = q("a.lab.test", RecordType::A, None).emit();
        assert_eq!(
            b,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
              \x01a\x03lab\x04test\x00\x00\x01\x00\x01"
                .to_vec()
        );
        let b = q("a.lab.test.", RecordType::AAAA, Some(EdnsRepr::default())).emit();
        // header: ARCOUNT 1; OPT: root, type 41, class = 1232, ttl 0, rdlen 0
        assert_eq!(&b[10..12], &[0, 1]);
        assert_eq!(
            &b[b.len() - 11..],
            b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        );
        let mut e = EdnsRepr {
            dnssec_ok: true,
            ..Default::default()
        };
        e.client_subnet = Some(("198.18.0.0".parse().unwrap(), 24));
        let b = q("a.lab.test", RecordType::A, Some(e)).emit();
        let r = ReplyRepr::parse(&b).unwrap();
        let info = r.edns.unwrap();
        assert!(info.dnssec_ok);
        assert_eq!(info.options.len(), 1);
    }

    #[test]
    fn fast_paths_equal_the_general_ones() {
        for a in [
            "0.0.0.0",
            "198.18.0.10",
            "255.255.255.255",
            "10.100.1.99",
            "1.20.200.9",
        ] {
            let a: std::net::Ipv4Addr = a.parse().unwrap();
            assert_eq!(ipv4_text(a), a.to_string());
        }
        for n in [
            "a.lab.test",
            "a.lab.test.",
            "www-1.lab.test",
            "WWW.Lab.Test",
            "_dmarc.lab.test",
            "*.lab.test",
            "-a.lab.test",
            "a-.lab.test",
            "xn--bcher-kva.lab.test",
            "bücher.lab.test",
            "a\\.b.lab.test",
            ".",
            "a",
            "a..b",
            "a.b..",
            "9.x--y.ab--c.lab.test",
            &format!("{}.lab.test", "a".repeat(63)),
            &format!("{}.lab.test", "a".repeat(64)),
            &["abcdefghi"; 25].join("."),
            &["abcdefghi"; 26].join("."),
        ] {
            let slow = Name::from_utf8(n).map(|mut x| {
                x.set_fqdn(true);
                x
            });
            match (parse_name(n), slow) {
                (Ok(f), Ok(s)) => {
                    assert!(f.eq_case(&s), "{n}: {f:?} vs {s:?}");
                    assert_eq!(name_text(&f), s.to_ascii(), "{n}");
                }
                (f, s) => assert_eq!(f.is_ok(), s.is_ok(), "{n}: {f:?} vs {s:?}"),
            }
        }
        let mut bin = Name::from_labels(vec![&b"a b"[..], b"-x", b"*", b"\xff"]).unwrap();
        for fqdn in [false, true] {
            bin.set_fqdn(fqdn);
            assert_eq!(name_text(&bin), bin.to_ascii());
        }
        assert_eq!(name_text(&Name::root()), Name::root().to_ascii());
        let relative = Name::from_ascii("a.b").unwrap();
        assert_eq!(name_text(&relative), "a.b");
        for code in 0..300u16 {
            let t = RecordType::from(code);
            let general = match t {
                RecordType::Unknown(n) => format!("TYPE{n}"),
                t => format!("{t}"),
            };
            if !general.is_empty() && general != "Unknown" {
                assert_eq!(type_name(t), general, "{code}");
            }
        }
    }

    #[test]
    fn names_types_rcodes() {
        assert_eq!(
            parse_name("bücher.lab.test").unwrap().to_ascii(),
            "xn--bcher-kva.lab.test."
        );
        assert!(parse_name("").is_err());
        assert!(parse_name(&"a".repeat(64)).is_err());
        assert_eq!(
            reverse_name("198.18.0.10".parse().unwrap()).to_ascii(),
            "10.0.18.198.in-addr.arpa."
        );
        assert!(
            reverse_name("2001:db8::1".parse().unwrap())
                .to_ascii()
                .starts_with("1.0.0.0.")
        );
        assert_eq!(parse_type("mx"), Some(RecordType::MX));
        assert_eq!(parse_type("TYPE65"), Some(RecordType::from(65)));
        assert_eq!(parse_type("TYPE999"), Some(RecordType::Unknown(999)));
        assert_eq!(parse_type("NOPE"), None);
        assert_eq!(type_name(RecordType::Unknown(999)), "TYPE999");
        assert_eq!(type_name(RecordType::CAA), "CAA");
        assert_eq!(parse_rcode("nxdomain"), Some(3));
        assert_eq!(parse_rcode("RCODE12"), Some(12));
        assert_eq!(parse_rcode("bogus"), None);
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(quote(b"a\"b\\c\x01"), "\"a\\\"b\\\\c\\001\"");
    }

    #[test]
    fn never_panics_on_noise() {
        let base = q("www.lab.test", RecordType::A, Some(EdnsRepr::default())).emit();
        let mut n = Noise::new(5);
        for _ in 0..50_000 {
            let _ = ReplyRepr::parse(&n.bytes(80));
            let _ = ReplyRepr::parse(&n.mutate(&base));
        }
    }
}
