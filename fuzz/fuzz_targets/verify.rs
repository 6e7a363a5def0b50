//! Hostile segments fed to the SYN-ACK fingerprint and `--verify`'s handshake
//! check: never a panic, and a verification only ever ends in one of its three
//! results.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use synscope_probe::event::Timestamp;
use synscope_probe::probe::fingerprint::{Fingerprint, Verification};
use synscope_probe::probe::verify::Verifier;
use synscope_wire::SeqNumber;

fuzz_target!(|data: &[u8]| {
    let at = Timestamp(1_000_000_000);
    let fp = Fingerprint::of(data, at);
    if let Some(f) = &fp {
        let v = Verification::of(f, std::slice::from_ref(f));
        assert!(["verified", "syn-proxy", "unverified"].contains(&v.name()));
    }
    let mut v = Verifier::new("198.18.1.1".parse().unwrap(), "198.18.4.2:8090".parse().unwrap(), 64);
    v.start(56031, SeqNumber(1), data, at, Duration::from_micros(50), 1);
    v.on_packet(data, at);
    v.learn(data, at);
    let _ = v.check_rst(data, at);
    for done in v.on_time(Timestamp(u64::MAX), 2) {
        assert!(!done.rst.is_empty());
    }
});
