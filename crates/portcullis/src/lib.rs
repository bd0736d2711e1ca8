//! Portcullis: an identity-aware gateway between AI agents and Azure.
//!
//! Every request flows through `pipeline/`: route → authenticate → classify → decide → hold
//! → record → forward → mask → record the answer. See ARCHITECTURE.md for the map, the
//! layers and a reading order.
#![forbid(unsafe_code)]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod azure;
pub mod cli;
pub mod config;
pub mod console;
pub mod identity;
pub mod ids;
pub mod json;
pub mod mask;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod ratelimit;
pub mod secret;
pub mod server;
pub mod time;
pub mod upstream;

/// Timestamps in audit records: RFC 3339, UTC, microseconds.
pub fn audit_time() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
