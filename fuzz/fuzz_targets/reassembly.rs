//! Fragment reassembly: the input is cut into packets (a length byte before
//! each) handed to one reassembler 1 ms apart, with tight bounds. Nothing may
//! panic, the bounds must hold, and the length field of whatever comes out
//! must say how long it is.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use synscope_wire::IpRepr;
use synscope_wire::reassembly::{Limits, Outcome, Reassembler};

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(Limits {
        max_datagrams: 4,
        max_bytes: 4096,
        timeout: Duration::from_millis(20),
    });
    let mut rest = data;
    let mut now = 0u64;
    while let Some((&n, tail)) = rest.split_first() {
        let (packet, tail) = tail.split_at(tail.len().min(n as usize * 4));
        rest = tail;
        now += 1_000_000;
        if let Outcome::Complete(d) = r.push(packet, now) {
            let len = if d[0] >> 4 == 4 {
                u16::from_be_bytes([d[2], d[3]]) as usize
            } else {
                40 + u16::from_be_bytes([d[4], d[5]]) as usize
            };
            assert_eq!(len, d.len());
            let _ = IpRepr::parse_detail(&d);
        }
        assert!(r.in_progress() <= 4 && r.bytes_held() <= 4096);
    }
});
