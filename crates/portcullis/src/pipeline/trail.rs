//! What a request has been found to be, phase by phase (who sent it, which operation, what
//! policy decided), and `finish`: the one place that writes a refusal's record, the
//! metrics and the access line, whatever the outcome.

use std::time::Instant;

use http::{Method, Request, Response};

use super::error::GatewayError;
use super::{Gateway, record};
use crate::audit::record::{AuditRecord, Phase};
use crate::azure::batch::InnerSummary;
use crate::azure::error::ErrorContext;
use crate::azure::route::{Routed, Service};
use crate::upstream::client::Body;

/// The ids a request's records, answers and log lines carry.
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: String,
    /// The session the audit records group this request in.
    pub session: String,
    pub correlation_id: String,
}

pub(super) struct Trail {
    pub ids: Ids,
    pub started: Instant,
    pub method: Method,
    /// The URL as recorded: as sent until the request is routed, then the path and query
    /// forwarded.
    url: String,
    /// The path as the access line shows it (masked when written).
    path: String,
    /// The request's headers as the audit store keeps them (credentials redacted).
    pub headers: Vec<(String, String)>,
    /// The service whose shape refusals are written in (ARM until routed).
    service: Service,
    /// The audience a vault reached by its host name challenges for.
    vault_audience: Option<String>,
    pub principal: Option<String>,
    /// The principal's name and kind as the token gave them, for the record's readers.
    pub principal_name: Option<String>,
    pub action: Option<String>,
    pub scope: Option<String>,
    /// What policy decided (`none` until it has).
    pub decided: &'static str,
    /// A batch's or deployment's inner requests as judged.
    pub inner: Vec<InnerSummary>,
    /// Answered while held for approval (a long-running operation's `202`), not forwarded.
    pub held: bool,
}

impl Trail {
    pub fn begin<B>(request_id: String, req: &Request<B>) -> Trail {
        let correlation_id = req
            .headers()
            .get("x-ms-correlation-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Trail {
            ids: Ids {
                request_id,
                session: String::new(),
                correlation_id,
            },
            started: Instant::now(),
            method: req.method().clone(),
            // Set when the request is routed (or found unroutable, as sent).
            url: String::new(),
            path: String::new(),
            headers: record::audit_headers(req.headers()),
            service: Service::Arm,
            vault_audience: None,
            principal: None,
            principal_name: None,
            action: None,
            scope: None,
            decided: "none",
            inner: Vec::new(),
            held: false,
        }
    }

    /// The request cannot be routed: its records name it as sent.
    pub fn unroutable<B>(&mut self, gw: &Gateway, req: &Request<B>) {
        self.url = req.uri().to_string();
        self.path = req.uri().path().to_owned();
        // In a session of its own: nobody is authenticated yet.
        self.ids.session = gw.sessions.of(req.headers(), None, self.started);
    }

    /// The request is routed: its records name the path and query forwarded.
    pub fn routed(&mut self, gw: &Gateway, routed: &Routed, query: &str) {
        let sep = if query.is_empty() { "" } else { "?" };
        self.url = format!("{}{sep}{query}", routed.upstream_path);
        self.path = routed.path.clone();
        self.service = routed.service.clone();
        self.vault_audience = routed
            .vault_domain()
            .filter(|_| gw.vault_audience)
            .map(|d| format!("https://{d}"));
    }

    /// A record of this request with all the trail knows.
    pub fn record(&self, phase: Phase) -> AuditRecord {
        let mut record = AuditRecord::new(
            self.ids.request_id.clone(),
            self.ids.session.clone(),
            phase,
            self.method.to_string(),
            self.url.clone(),
        );
        record.principal = self.principal.clone();
        record.principal_name = self.principal_name.clone();
        record.action = self.action.clone();
        record.scope = self.scope.clone();
        record.headers = self.headers.clone();
        record.inner = self.inner.clone();
        record
    }

    /// Ends the request: a refusal is recorded and written in the service's shape; every
    /// outcome is counted and logged.
    pub async fn finish(
        mut self,
        gw: &Gateway,
        outcome: Result<Response<Body>, GatewayError>,
    ) -> Response<Body> {
        let outcome_label = match &outcome {
            Ok(_) if self.held => "held",
            Ok(_) if self.decided == "approve" => "allowed_after_approval",
            Ok(_) => "allowed",
            Err(e) if e.held() => "held",
            Err(_) => "refused",
        };
        let response = match outcome {
            Ok(r) => r,
            Err(mut e) => {
                e.name_principal(&gw.auth.directory).await;
                let mut record = AuditRecord::new(
                    self.ids.request_id.clone(),
                    self.ids.session.clone(),
                    Phase::Refused,
                    self.method.to_string(),
                    std::mem::take(&mut self.url),
                );
                record.principal = self.principal.clone();
                record.principal_name = self.principal_name.take();
                record.action = self.action.clone();
                record.scope = self.scope.take();
                record.headers = std::mem::take(&mut self.headers);
                record.inner = std::mem::take(&mut self.inner);
                match &e {
                    GatewayError::Forbidden { decision, .. } => {
                        self.decided = decision.effect.name();
                        record.decision = Some(self.decided.to_owned());
                        record.rule = decision.rule.clone();
                    }
                    GatewayError::Approval(r) => {
                        if r.code == "GatewayShuttingDown" {
                            gw.approvals.let_go_at_shutdown(false);
                        }
                        self.decided = "approve";
                        record.decision = Some("approve".to_owned());
                        record.rule = r.approval.rule.clone();
                        record.approval = Some(r.approval.id.clone());
                    }
                    // Refused after policy allowed it (credential, store, Azure, masking):
                    // the record still says what policy decided.
                    _ if self.decided != "none" => record.decision = Some(self.decided.to_owned()),
                    _ => {}
                }
                record::refused(gw, record, &e, &self.service, self.started).await;
                e.render(&ErrorContext {
                    service: &self.service,
                    request_id: &self.ids.request_id,
                    correlation_id: &self.ids.correlation_id,
                    authority: &gw.challenge_authority,
                    audience: self.vault_audience.as_deref().unwrap_or(&gw.audience),
                })
            }
        };
        crate::metrics::METRICS.request(
            outcome_label,
            self.decided,
            self.action.as_deref(),
            response.status().as_u16(),
            self.started.elapsed(),
        );
        // The access log; the path is masked as in the audit record (an agent can put
        // anything in a path, secrets included).
        if tracing::enabled!(tracing::Level::INFO) {
            tracing::info!(
                method = %self.method,
                path = %record::audit_text(gw, &self.path),
                principal = self.principal.as_deref().unwrap_or("-"),
                decision = self.decided,
                action = self.action.as_deref().unwrap_or("-"),
                status = response.status().as_u16(),
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "request"
            );
        }
        response
    }
}
