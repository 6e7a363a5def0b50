//! Hostile packets fed to the path probe (quoted SYNs read field by field):
//! never a panic, whatever the quote holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use synscope_probe::event::{Direction, Timestamp};
use synscope_probe::probe::path::{PathConfig, PathProber};
use synscope_wire::SeqNumber;
use synscope_wire::quote::QuotedTcp;

fuzz_target!(|data: &[u8]| {
    let _ = QuotedTcp::parse(data);
    let mut p = PathProber::new(PathConfig {
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2:80".parse().unwrap(),
        max_hops: 30,
        count: 1,
        timeout: Duration::from_secs(1),
        syn_options: true,
        mss: 1460,
        window: 64240,
        tos: 0,
        ecn: true,
        one_port: false,
    });
    // the ISN and port of the SYN in the captured fixtures
    p.probe(Timestamp(1), 1, 53190, SeqNumber(644410958), 1, 1);
    for dir in [Direction::Incoming, Direction::Outgoing] {
        p.on_packet(data, dir, Timestamp(2), true);
        p.on_packet(data, dir, Timestamp(2), false);
    }
    let _ = p.result();
});
