//! DNS messages from hostile servers: pointer loops, counts larger than the
//! message, truncated records. Parsing must fail cleanly or give a reply whose
//! answer set can be read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::dns::{ReplyRepr, parse_type};

fuzz_target!(|data: &[u8]| {
    let full = ReplyRepr::parse(data);
    if let Ok(r) = &full {
        for t in ["A", "ANY", "TXT"] {
            let _ = r.answer_set(parse_type(t).expect("known type"));
        }
    }
    // bulk mode's answers-only parse reads the same answer set as the full
    // parse (it keeps only the question's type and RRSIGs)
    if let (Ok(f), Ok(q)) = (&full, ReplyRepr::parse_answers(data)) {
        if !f.partial && !q.partial {
            if let Some(question) = &q.question {
                let t = question.qtype;
                assert_eq!(f.answer_set(t), q.answer_set(t));
            }
            assert_eq!((f.id, &f.question), (q.id, &q.question));
        }
    }
});
