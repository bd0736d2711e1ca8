//! The simulator's view of one HTTP exchange, and the native error shapes of each Azure
//! service, so every handler answers the way the real service would.
//!
//! Bodies are buffered: the simulator is a test double, and whole bodies make batch
//! (which replays inner requests through the same handlers) straightforward.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

/// One request, already read in full.
#[derive(Debug, Clone)]
pub struct SimRequest {
    pub method: Method,
    /// The path as sent (percent-encoding intact); handlers split and decode segments.
    pub path: String,
    /// The raw query string, without `?`.
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `https://{Host}`: absolute URLs in responses (`nextLink`, LRO headers) are built on it,
    /// so clients keep talking to whatever address reached the simulator.
    pub base_url: String,
}

impl SimRequest {
    /// A query parameter, by case-insensitive name (ARM treats `api-version` so).
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.raw_query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The decoded path segments, empty ones dropped.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect()
    }

    /// The body as JSON; an empty body is `null`.
    pub fn json(&self) -> Result<Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))
    }
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 are kept as they came.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// One response, built in full.
#[derive(Debug, Clone)]
pub struct SimResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimResponse {
    pub fn empty(status: StatusCode) -> SimResponse {
        SimResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub fn json(status: StatusCode, value: &Value) -> SimResponse {
        let mut r = SimResponse::empty(status);
        r.body = Bytes::from(serde_json::to_vec(value).expect("a Value always serializes"));
        r.header("content-type", "application/json; charset=utf-8")
    }

    /// Adds a header; values that are not valid header text are a programming error.
    pub fn header(mut self, name: &'static str, value: impl AsRef<str>) -> SimResponse {
        let value = HeaderValue::from_str(value.as_ref()).expect("header values are ASCII");
        self.headers.append(HeaderName::from_static(name), value);
        self
    }

    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// ARM's error body: `{"error":{"code","message"}}` with `x-ms-error-code`.
/// <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/common-api-details.md#error-response-content>
pub fn arm_error(status: StatusCode, code: &str, message: impl Into<String>) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"error": {"code": code, "message": message.into()}}),
    )
    .header("x-ms-error-code", code)
}

/// Key Vault's error body (`{"error":{"code","message"}}`, optionally an inner error).
pub fn kv_error(status: StatusCode, code: &str, message: impl Into<String>) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"error": {"code": code, "message": message.into()}}),
    )
    .header("x-ms-error-code", code)
}

/// Entra ID's OAuth error body, with its AADSTS code.
pub fn aad_error(status: StatusCode, error: &str, aadsts: u32, description: &str) -> SimResponse {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace = uuid::Uuid::new_v4();
    SimResponse::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description} Trace ID: {trace} Timestamp: {now}"),
            "error_codes": [aadsts],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": uuid::Uuid::new_v4(),
        }),
    )
}

/// Graph's error body.
pub fn graph_error(status: StatusCode, code: &str, message: &str) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {"request-id": uuid::Uuid::new_v4()}}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_handles_edges() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("ab%41"), "abA");
        assert_eq!(percent_decode("%ff"), "%ff");
    }
}
