//! Any text as YAML → the configuration loader (`config::parse`) and the policy loader
//! (`config::policy::validate_policy`). Properties: `checks::config_and_policy`
//! (docs/fuzzing.md).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/portcullis/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Configuration files are read as UTF-8 text.
    if let Ok(text) = std::str::from_utf8(data) {
        checks::config_and_policy(text);
    }
});
