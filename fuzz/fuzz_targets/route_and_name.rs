//! A request line → `route` + `normalize` + `name_arm` (and `name_keyvault` where it routes
//! there). Input: `METHOD\nHOST\nTARGET` (TARGET is `path?query`); fewer lines mean `GET`,
//! host `gw`. Properties: `checks::route_and_name` (docs/fuzzing.md), less the
//! re-normalization of paths whose re-encoding is too long (finding F4, already known).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/portcullis/tests/properties/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (method, host, target) = match (lines.next(), lines.next(), lines.next()) {
        (Some(m), Some(h), Some(t)) => (m, h, t),
        (Some(h), Some(t), None) => ("GET", h, t),
        (Some(t), None, None) => ("GET", "gw", t),
        _ => return,
    };
    checks::route_and_name(method, host, target, true);
});
