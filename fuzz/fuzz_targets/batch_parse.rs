//! Any bytes as a batch body (JSON) → `batch::parse`. Properties: `checks::batch_parse`
//! (docs/fuzzing.md), less the inner-URL check on the shape of finding F1 and the
//! re-normalization of too long re-encodings (F4), already known.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/portcullis/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::batch_parse(data, true);
});
