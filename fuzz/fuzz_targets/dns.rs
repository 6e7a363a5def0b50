//! DNS messages from hostile servers: pointer loops, counts larger than the
//! message, truncated records. Parsing must fail cleanly or give a reply whose
//! answer set can be read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope::wire::dns::{ReplyRepr, parse_type};

fuzz_target!(|data: &[u8]| {
    let full = ReplyRepr::parse(data);
    if let Ok(r) = &full {
        for t in ["A", "ANY", "TXT"] {
            let _ = r.answer_set(parse_type(t).expect("known type"));
        }
    }
    // bulk mode's answers-only parse reads the same answers as the full parse
    if let (Ok(f), Ok(q)) = (&full, ReplyRepr::parse_answers(data)) {
        if !f.partial && !q.partial {
            assert_eq!(f.answer, q.answer);
            assert_eq!((f.id, &f.question), (q.id, &q.question));
        }
    }
});
