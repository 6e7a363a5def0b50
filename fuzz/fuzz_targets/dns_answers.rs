//! Bulk mode's read of a reply straight over its bytes: on any input it either
//! gives up (hickory reads the message then) or reads exactly what hickory's
//! answers-only parse reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use synscope_wire::dns::ReplyRepr;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = ReplyRepr::parse_answers_over_bytes(data) {
        assert_eq!(Some(fast), ReplyRepr::parse_answers_hickory(data).ok());
    }
});
