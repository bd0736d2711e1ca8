//! Counters the gateway keeps about itself (exported by the operability work).

use std::sync::atomic::AtomicU64;

/// Key-set fetches that failed (the previous keys were kept, if any).
pub static JWKS_REFRESH_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Upstream token requests that failed.
pub static UPSTREAM_TOKEN_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Policies swapped in by hot reload.
pub static POLICY_RELOADS: AtomicU64 = AtomicU64::new(0);
/// Reloads refused because the new policy was invalid.
pub static POLICY_RELOAD_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Secret values replaced by placeholders in answers.
pub static MASKED_VALUES: AtomicU64 = AtomicU64::new(0);
