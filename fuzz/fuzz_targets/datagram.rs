//! Whole captured datagrams, as the capture socket hands them over.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::Datagram;
use synscope_wire::datagram::Checksums;

fuzz_target!(|data: &[u8]| {
    let _ = Datagram::parse(data);
    let _ = Datagram::parse_with(data, Checksums::Offloaded);
});
