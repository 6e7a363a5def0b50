//! Hostile replies fed to the SYN ping correlator and the scan matcher: never a
//! panic, and whatever they accept really answers an outstanding probe.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_probe::event::{Direction, Timestamp};
use synscope_probe::probe::correlate::{FlowKey, Match};
use synscope_probe::probe::Correlator;
use synscope_wire::SeqNumber;

fuzz_target!(|data: &[u8]| {
    let mut c = Correlator::new("198.18.0.1".parse().unwrap(), "198.18.0.2:80".parse().unwrap());
    let key = FlowKey { src_port: 53190, isn: SeqNumber(644410958) };
    c.track(key);
    for dir in [Direction::Incoming, Direction::Outgoing] {
        match c.classify(data, dir, Timestamp(1), true) {
            Match::Reply(k, _) | Match::Sent(k, _) => assert_eq!(k, key),
            Match::Ignored(_) => {}
        }
    }
});
