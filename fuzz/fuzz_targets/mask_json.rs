//! An answer body → `Masker::mask_json`, `Masker::mask_text` and `StreamMasker`. Input: one
//! byte choosing the plan, one the cut point, one the chunk size, then the body.
//! Properties: `checks::mask` (docs/fuzzing.md), all of them: the skips of findings F2, F5,
//! F6 and F7 are gone, so a run confirms their fixes (and the detectors' new shapes, issue
//! 19 finding 8).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/portcullis/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [which, cut, step, body @ ..] = data else {
        return;
    };
    checks::mask(
        usize::from(*which),
        body,
        usize::from(*cut),
        usize::from(*step % 32) + 1,
        false,
    );
});
