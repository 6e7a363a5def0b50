//! IPv4 and IPv6 headers, whole and as quoted in ICMP errors; what parses is
//! emitted again and must parse to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope::wire::IpRepr;

fuzz_target!(|data: &[u8]| {
    if let Ok((ip, payload)) = IpRepr::parse(data) {
        if ip.protocol < 128 && !ip.later_fragment && !matches!(ip.protocol, 0 | 43 | 44 | 60) {
            let again = ip.emit(payload);
            let (back, p2) = IpRepr::parse(&again).expect("emitted header parses");
            assert_eq!((back.src, back.dst, back.protocol, back.ttl), (ip.src, ip.dst, ip.protocol, ip.ttl));
            assert_eq!(p2, payload);
        }
    }
    let _ = IpRepr::parse_quoted(data);
});
