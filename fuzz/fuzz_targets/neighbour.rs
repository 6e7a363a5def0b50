//! ARP messages and IPv6 Neighbor Solicitations / Advertisements (host
//! discovery's replies); what parses is emitted again and must parse back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::{ArpRepr, NdpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = ArpRepr::parse(data) {
        assert_eq!(ArpRepr::parse(&a.emit()), Ok(a));
    }
    if let Ok((ip, nd)) = NdpRepr::parse_datagram(data) {
        if let (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) = (ip.src, ip.dst) {
            let again = nd.emit(s, d);
            let back = NdpRepr::parse(&again, s, d).expect("emitted message parses");
            assert_eq!((back.kind, back.target), (nd.kind, nd.target));
            // only the option we read survives the round trip
            assert_eq!(back.lladdr, nd.lladdr);
        }
    }
});
