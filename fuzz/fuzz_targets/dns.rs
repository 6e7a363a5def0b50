//! DNS messages from hostile servers: pointer loops, counts larger than the
//! message, truncated records. Parsing must fail cleanly or give a reply whose
//! answer set can be read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope::wire::dns::{ReplyRepr, parse_type};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ReplyRepr::parse(data) {
        for t in ["A", "ANY", "TXT"] {
            let _ = r.answer_set(parse_type(t).expect("known type"));
        }
    }
});
