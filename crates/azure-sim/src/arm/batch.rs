//! `POST /batch?api-version=2020-06-01`: many ARM requests in one, each served as if sent
//! alone by the same caller, each answered in its own entry.
//! Request: `{"requests":[{"name","httpMethod","url"|"relativeUrl","content"}]}`;
//! response: `{"responses":[{"name","httpStatusCode","headers","content","contentLength"}]}`.
//! (This is the batch endpoint the Azure portal uses; it is not in the public REST reference.)

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::arm::{Ctx, serve};
use crate::calls::{CallRecord, Service};
use crate::wire::{SimRequest, SimResponse, arm_error};

/// ARM refuses larger batches.
const MAX_REQUESTS: usize = 500;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inner {
    name: Option<String>,
    http_method: String,
    url: Option<String>,
    relative_url: Option<String>,
    content: Option<Value>,
}

#[derive(Deserialize)]
struct Batch {
    requests: Vec<Inner>,
}

fn invalid(message: impl Into<String>) -> SimResponse {
    arm_error(StatusCode::BAD_REQUEST, "InvalidBatchRequest", message)
}

pub fn handle(ctx: &Ctx<'_>) -> SimResponse {
    if ctx.req.method != Method::POST {
        return arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Batch requests use POST.",
        );
    }
    let batch: Batch = match serde_json::from_slice(&ctx.req.body) {
        Ok(b) => b,
        Err(e) => return invalid(format!("The batch request body is not valid: {e}")),
    };
    if batch.requests.is_empty() || batch.requests.len() > MAX_REQUESTS {
        return invalid(format!(
            "A batch must contain between 1 and {MAX_REQUESTS} requests."
        ));
    }
    let mut responses = Vec::with_capacity(batch.requests.len());
    for (i, inner) in batch.requests.into_iter().enumerate() {
        let name = inner.name.clone().unwrap_or_else(|| i.to_string());
        let response = match inner_request(ctx, &inner) {
            Ok(req) => {
                let r = serve(ctx.sim, &req, ctx.caller, true);
                ctx.sim.calls.push(CallRecord {
                    seq: 0,
                    time: crate::world::now_rfc3339(),
                    service: Service::Arm,
                    method: req.method.to_string(),
                    path: req.path.clone(),
                    query: req.raw_query.clone(),
                    caller: ctx.caller.cloned(),
                    status: r.status.as_u16(),
                    batch: true,
                });
                r
            }
            Err(r) => r,
        };
        responses.push(entry(&name, response));
    }
    SimResponse::json(StatusCode::OK, &json!({ "responses": responses }))
}

fn inner_request(ctx: &Ctx<'_>, inner: &Inner) -> Result<SimRequest, SimResponse> {
    let method: Method = inner
        .http_method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| invalid(format!("'{}' is not an HTTP method.", inner.http_method)))?;
    let target = inner
        .url
        .as_deref()
        .or(inner.relative_url.as_deref())
        .ok_or_else(|| invalid("Each batch request needs a url."))?;
    let (path, query) = if target.starts_with('/') {
        match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (target.to_owned(), String::new()),
        }
    } else {
        let u = url::Url::parse(target)
            .map_err(|e| invalid(format!("The url '{target}' is not valid: {e}")))?;
        (
            u.path().to_owned(),
            u.query().unwrap_or_default().to_owned(),
        )
    };
    let body = match &inner.content {
        None | Some(Value::Null) => Bytes::new(),
        Some(v) => Bytes::from(serde_json::to_vec(v).expect("a Value serializes")),
    };
    let mut headers = HeaderMap::new();
    if let Some(c) = ctx.req.headers.get("x-ms-correlation-request-id") {
        headers.insert("x-ms-correlation-request-id", c.clone());
    }
    Ok(SimRequest {
        method,
        path,
        raw_query: query,
        headers,
        body,
        base_url: ctx.req.base_url.clone(),
    })
}

fn entry(name: &str, r: SimResponse) -> Value {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        if let Ok(v) = v.to_str() {
            headers.insert(k.as_str().to_owned(), json!(v));
        }
    }
    let mut e = json!({
        "name": name,
        "httpStatusCode": r.status.as_u16(),
        "headers": headers,
        "contentLength": r.body.len(),
    });
    if let Some(content) = r.body_json() {
        e["content"] = content;
    }
    e
}
