//! Azure's native error shapes, written as Azure writes them: ARM's
//! `{"error": {"code", "message", "additionalInfo"}}`, Key Vault's
//! `{"error": {"code", "message", "innererror"}}`, and the headers Azure clients read
//! (`x-ms-error-code`, the request and correlation ids, the Bearer challenge, `Retry-After`).
//!
//! Which refusal a request gets, and why, is the pipeline's (`pipeline/error.rs`); this file
//! only writes it in the service's own shape, so SDKs raise their usual errors.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::route::Service;
use crate::upstream::client::{Body, full};

/// What the writer needs to know about the request.
pub struct ErrorContext<'a> {
    pub service: &'a Service,
    pub request_id: &'a str,
    pub correlation_id: &'a str,
    /// `{authority}/{tenant}` for challenges.
    pub authority: &'a str,
    /// The audience agents must ask tokens for (the Key Vault challenge's resource).
    pub audience: &'a str,
}

/// One error, in the vocabulary of the service it is written for.
pub struct NativeError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Details beside the message: ARM's `additionalInfo`, Key Vault's `innererror`.
    pub detail: Option<Value>,
    /// For a 401: the challenge's description of what was wrong with the token.
    pub challenge: Option<String>,
    /// Seconds a client should wait before it retries.
    pub retry_after: Option<u64>,
    /// The approval the error is about (`x-portcullis-approval`).
    pub approval: Option<String>,
}

/// Text fit for a quoted header parameter: printable ASCII, no quotes or backslashes.
fn quote(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => ' ',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

impl NativeError {
    pub fn write(self, ctx: &ErrorContext<'_>) -> Response<Body> {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(detail) = self.detail {
            let key = match ctx.service {
                Service::KeyVault { .. } => "innererror",
                Service::Arm => "additionalInfo",
            };
            error[key] = detail;
        }
        let body = serde_json::to_vec(&json!({ "error": error })).expect("a Value serializes");
        let mut r = Response::new(full(Bytes::from(body)));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("x-ms-error-code", HeaderValue::from_static(self.code));
        h.insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        if let Ok(v) = HeaderValue::from_str(ctx.request_id) {
            h.insert("x-ms-request-id", v.clone());
            h.insert("x-portcullis-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(ctx.correlation_id) {
            h.insert("x-ms-correlation-request-id", v);
        }
        if let Some(description) = &self.challenge {
            let challenge = match ctx.service {
                Service::KeyVault { .. } => format!(
                    "Bearer authorization=\"{}\", resource=\"{}\"",
                    ctx.authority,
                    quote(ctx.audience)
                ),
                Service::Arm => format!(
                    "Bearer authorization_uri=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                    ctx.authority,
                    quote(description)
                ),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                h.insert(http::header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(id) = self
            .approval
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            h.insert("x-portcullis-approval", id);
        }
        if let Some(secs) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
