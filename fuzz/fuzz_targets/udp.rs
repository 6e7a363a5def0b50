//! UDP datagrams, with and without checksum checks; round trip of what parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::UdpRepr;

fuzz_target!(|data: &[u8]| {
    let (a, b) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
    let _ = UdpRepr::parse(data, a, b);
    if let Ok(u) = UdpRepr::parse_with(data, a, b, false) {
        let back = UdpRepr::parse(&u.emit(a, b), a, b).expect("emitted datagram parses");
        assert_eq!(back, u);
    }
});
