//! IPv4 and IPv6 headers, whole and as quoted in ICMP errors; what parses is
//! emitted again and must parse to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::IpRepr;
use synscope_wire::ip::ExtHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((ip, payload)) = IpRepr::parse(data) {
        if ip.protocol < 128 && !ip.later_fragment && !ExtHeader::is_skippable(ip.protocol) {
            let again = ip.emit(payload);
            let (back, p2) = IpRepr::parse(&again).expect("emitted header parses");
            assert_eq!((back.src, back.dst, back.protocol, back.ttl), (ip.src, ip.dst, ip.protocol, ip.ttl));
            assert_eq!(p2, payload);
        }
    }
    let _ = IpRepr::parse_quoted(data);
    // the detailed parse agrees with the plain one
    if let Ok(p) = IpRepr::parse_detail(data) {
        assert_eq!(IpRepr::parse(data), Ok((p.repr.clone(), p.payload)));
        if let Some(f) = p.fragment {
            assert!(f.header_len <= data.len() && f.next_header_at < f.header_len.max(1));
        }
    }
});
