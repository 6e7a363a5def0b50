//! ICMP and ICMPv6 messages with the datagram they quote (often cut short).
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::IcmpRepr;

fuzz_target!(|data: &[u8]| {
    for v6 in [false, true] {
        if let Ok(i) = IcmpRepr::parse_unchecked(data, v6) {
            if let Some(e) = i.error() {
                assert!(!e.name().is_empty());
            }
        }
    }
});
