//! TCP segments and their options; a parsed segment emitted again parses to
//! the same fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::{TcpOptions, TcpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = TcpRepr::parse_unchecked(data) {
        let (a, b) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let bytes = t.emit(a, b);
        let back = TcpRepr::parse(&bytes, a, b).expect("emitted segment parses with its checksum");
        assert_eq!((back.src_port, back.dst_port, back.seq, back.ack, back.flags), (t.src_port, t.dst_port, t.seq, t.ack, t.flags));
        assert_eq!(back.payload, t.payload);
        assert_eq!((back.options.mss, back.options.window_scale, back.options.timestamps), (t.options.mss, t.options.window_scale, t.options.timestamps));
        assert_eq!(back.options.sack_permitted, t.options.sack_permitted);
    }
    let _ = TcpOptions::parse(data);
});
