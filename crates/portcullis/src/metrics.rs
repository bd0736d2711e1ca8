//! What the gateway counts about itself, exported in Prometheus' text format at `/metrics`
//! on the admin listener. One registry per process: the gateway runs one per process.
//!
//! Label values come from a small closed set (decisions, status codes, detector names),
//! except the Azure action, which an authenticated agent chooses: at most `MAX_ACTIONS`
//! distinct actions get their own series, later ones count as `other`, so a hostile agent
//! cannot grow the registry without bound.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Distinct actions labelled before the rest count as `other`.
const MAX_ACTIONS: usize = 512;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `allow`, `deny`, `approve` (held, then passed or refused), or `none` (refused
    /// before policy: unauthenticated, malformed).
    pub decision: &'static str,
    pub action: String,
    pub status: u16,
}

/// What became of a request: `allowed` (forwarded), `allowed_after_approval` (forwarded
/// once an approval let it through), `held` (held for approval and let go undecided: a
/// long-running operation's `202`, `ApprovalPending`, `GatewayShuttingDown`; nothing sent)
/// or `refused`. The same outcomes sessions count (audit/record.rs, `Outcome`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub request_seconds: Family<DecisionLabels, Histogram>,
    pub upstream_seconds: Histogram,
    pub held: Gauge,
    /// Approvals pending in the store (all replicas), refreshed by the expiry sweep.
    pub approvals_pending: Gauge,
    /// New approvals refused because their principal had the most pending allowed.
    pub approvals_capped: Counter,
    pub audit_commit_seconds: Histogram,
    pub audit_records: Counter,
    pub audit_commit_failures: Counter,
    pub jwks_refresh_failures: Counter,
    pub upstream_token_failures: Counter,
    pub policy_reloads: Counter,
    pub policy_reload_failures: Counter,
    pub masked_values: Counter,
    pub masked_responses: Family<KindLabels, Counter>,
    actions: Mutex<HashSet<String>>,
}

fn latency_buckets() -> Histogram {
    // 250 µs to ~65 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 19))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let m = Metrics {
            requests: Family::default(),
            outcomes: Family::default(),
            request_seconds: Family::new_with_constructor(latency_buckets),
            upstream_seconds: latency_buckets(),
            held: Gauge::default(),
            approvals_pending: Gauge::default(),
            approvals_capped: Counter::default(),
            audit_commit_seconds: latency_buckets(),
            audit_records: Counter::default(),
            audit_commit_failures: Counter::default(),
            jwks_refresh_failures: Counter::default(),
            upstream_token_failures: Counter::default(),
            policy_reloads: Counter::default(),
            policy_reload_failures: Counter::default(),
            masked_values: Counter::default(),
            masked_responses: Family::default(),
            actions: Mutex::new(HashSet::new()),
            registry: Registry::default(),
        };
        registry.register(
            "build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "requests",
            "Requests answered, by policy decision, Azure action and status",
            m.requests.clone(),
        );
        registry.register(
            "request_outcomes",
            "Requests answered, by outcome: allowed, allowed_after_approval, held (nothing sent; the approval pending) or refused",
            m.outcomes.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by decision",
            m.request_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time Azure took to answer a forwarded request (to its headers)",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "held_requests",
            "Requests held open on this replica waiting for an approval",
            m.held.clone(),
        );
        registry.register(
            "approvals_pending",
            "Approvals waiting for a decision, in the store all replicas share",
            m.approvals_pending.clone(),
        );
        registry.register(
            "approvals_capped",
            "New approvals refused because the principal had approvals.max_pending_per_principal pending",
            m.approvals_capped.clone(),
        );
        registry.register(
            "audit_commit_duration_seconds",
            "Time to commit one batch of audit records to the store",
            m.audit_commit_seconds.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records committed",
            m.audit_records.clone(),
        );
        registry.register(
            "audit_commit_failures",
            "Audit commits that failed (their requests were refused or cut off)",
            m.audit_commit_failures.clone(),
        );
        registry.register(
            "jwks_refresh_failures",
            "Signing key set fetches that failed",
            m.jwks_refresh_failures.clone(),
        );
        registry.register(
            "upstream_token_failures",
            "The gateway's own Azure token requests that failed",
            m.upstream_token_failures.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policies swapped in by hot reload",
            m.policy_reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Reloads refused because the new policy was invalid",
            m.policy_reload_failures.clone(),
        );
        registry.register(
            "masked_values",
            "Secret values replaced by placeholders in answers",
            m.masked_values.clone(),
        );
        registry.register(
            "masked_responses",
            "Answers in which a kind of secret was masked",
            m.masked_responses.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one answered request.
    pub fn request(
        &self,
        outcome: &'static str,
        decision: &'static str,
        action: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let action = match action {
            None => "-".to_owned(),
            Some(a) => {
                let a = a.to_ascii_lowercase();
                let mut seen = self.actions.lock().expect("not poisoned");
                if seen.contains(&a) {
                    a
                } else if seen.len() < MAX_ACTIONS {
                    seen.insert(a.clone());
                    a
                } else {
                    "other".to_owned()
                }
            }
        };
        self.requests
            .get_or_create(&RequestLabels {
                decision,
                action,
                status,
            })
            .inc();
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.request_seconds
            .get_or_create(&DecisionLabels { decision })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts secrets masked in one answer.
    pub fn masked<'a>(&self, count: usize, kinds: impl IntoIterator<Item = &'a str>) {
        self.masked_values.inc_by(count as u64);
        for kind in kinds {
            self.masked_responses
                .get_or_create(&KindLabels {
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Holds the held-requests gauge up while alive.
pub struct HeldGuard(());

impl HeldGuard {
    pub fn enter() -> HeldGuard {
        METRICS.held.inc();
        HeldGuard(())
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        METRICS.held.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_beyond_the_cap_count_as_other() {
        let m = Metrics::new();
        for i in 0..MAX_ACTIONS + 10 {
            m.request(
                "allowed",
                "allow",
                Some(&format!("Microsoft.X/t{i}/read")),
                200,
                Duration::from_millis(1),
            );
        }
        m.request("refused", "deny", None, 401, Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains(
                r#"portcullis_requests_total{decision="allow",action="other",status="200"} 10"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"portcullis_requests_total{decision="deny",action="-",status="401"} 1"#
            )
        );
        assert!(text.contains("portcullis_request_duration_seconds_bucket"));
        assert!(
            text.contains(r#"portcullis_request_outcomes_total{outcome="allowed"} 522"#),
            "{text}"
        );
        assert!(text.contains(r#"portcullis_request_outcomes_total{outcome="refused"} 1"#));
    }
}
