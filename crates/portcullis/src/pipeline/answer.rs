//! The answer: Azure's long-running-operation URLs and `nextLink`s rewritten to point
//! back at the gateway (bound to the principal, `azure/rewrite.rs`), and secrets masked
//! (`mask/`) before anything leaves: streamed when only strings need looking at, read
//! whole (bounded) when the catalog names the answer's fields or it is encoded.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Gateway;
use super::error::GatewayError;
use super::trail::Ids;
use crate::azure::batch::Inner;
use crate::azure::operation::Operation;
use crate::azure::rewrite::Continuation;
use crate::identity::principal::Principal;
use crate::mask::{Masked, Plan};
use crate::upstream::client::{Body, BoxError, full};

const STRIPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
];

/// Azure's long-running-operation headers that hold absolute URLs to rewrite.
pub(super) const LRO_HEADERS: &[&str] = &["azure-asyncoperation", "location", "operation-location"];

/// What masking a request's answer follows: the operation's plan, less what the deciding
/// rule lets through; a batch's answer per inner request.
pub(super) fn plan(
    gw: &Gateway,
    operation: &Operation,
    batch: Option<&[Inner]>,
    unmask: &[String],
) -> Plan {
    match batch {
        Some(inner) => {
            let ops: Vec<(String, Operation)> = inner
                .iter()
                .map(|i| (i.name.clone(), i.operation.clone()))
                .collect();
            gw.masker.plan_batch(&ops, unmask)
        }
        None => gw.masker.plan(operation, unmask),
    }
}

/// The request an answer is for, as rewriting needs it.
pub(super) struct Answer<'a> {
    pub ids: &'a Ids,
    pub method: &'a Method,
    /// The decoded path: a page binding continues this list.
    pub path: &'a str,
    pub gateway_base: &'a str,
    pub principal: &'a Principal,
    /// The upstream base the answer came from.
    pub base: &'a str,
    pub plan: &'a Plan,
}

pub(super) async fn rewrite(
    gw: &Gateway,
    a: Answer<'_>,
    resp: Response<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let (method, principal, base, plan) = (a.method, a.principal, a.base, a.plan);
    let upstream = url::Url::parse(base).map_err(|e| GatewayError::Upstream {
        timeout: false,
        message: format!("upstream base {base}: {e}"),
    })?;
    let (mut parts, body) = resp.into_parts();
    for h in STRIPPED_RESPONSE_HEADERS {
        parts.headers.remove(*h);
    }
    let now = crate::azure::rewrite::now();
    for h in LRO_HEADERS {
        // `Location` is an operation's result only on 201 and 202; elsewhere it is not
        // Azure's async protocol and is not signed.
        let polled = *h != "location" || matches!(parts.status.as_u16(), 201 | 202);
        if polled
            && parts.status.is_success()
            && let Some(v) = parts.headers.get(*h).and_then(|v| v.to_str().ok())
            && let Some(new) = gw.binder.rewrite(
                v,
                &upstream,
                a.gateway_base,
                principal,
                Continuation::Poll,
                a.path,
                now,
            )
        {
            parts.headers.insert(
                HeaderName::from_static(h),
                HeaderValue::from_str(&new).expect("a rewritten URL is header text"),
            );
        }
    }
    parts.headers.insert(
        "x-portcullis-request-id",
        HeaderValue::from_str(&a.ids.request_id).expect("a uuid"),
    );
    // A HEAD answer has no body, whatever its headers say (RFC 9110 §9.3.2): nothing to
    // mask or page. Its Content-Length is the unmasked GET answer's, which the agent never
    // gets and which hints at a secret's length: it does not leave.
    if *method == Method::HEAD {
        parts.headers.remove(header::CONTENT_LENGTH);
        if !plan.is_empty() {
            weaken_etag(&mut parts.headers);
        }
        return Ok(Response::from_parts(parts, full(Bytes::new())));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let is_json = content_type.contains("json");
    let is_text = content_type.starts_with("text/");
    let encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let may_page = *method == Method::GET && is_json && parts.status.is_success();
    // Masking reads JSON and text answers whole; what the catalog names must be read even
    // when it does not say it is JSON. Binary answers stream through.
    let inspect = !plan.is_empty() && (is_json || is_text || plan.has_profiles());
    if !may_page && !inspect {
        return Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ));
    }
    // The fast path: JSON no catalog profile names streams, only its strings looked at
    // (detectors, nextLinks); nothing is held but the string being read.
    // The answer's own next page, bound as the continuation of this list.
    let page_link = || -> crate::mask::stream::LinkRewrite {
        let (binder, upstream, base, principal, list) = (
            gw.binder.clone(),
            upstream.clone(),
            a.gateway_base.to_owned(),
            principal.clone(),
            a.path.to_owned(),
        );
        Box::new(move |u: &str| {
            binder.rewrite(
                u,
                &upstream,
                &base,
                &principal,
                Continuation::Page,
                &list,
                now,
            )
        })
    };
    if is_json && encoding.is_none() && !plan.has_profiles() {
        let link = may_page.then(page_link);
        let masker = crate::mask::stream::StreamMasker::new(gw.masker.clone(), plan, link);
        parts.headers.remove(header::CONTENT_LENGTH);
        weaken_etag(&mut parts.headers);
        let body = crate::mask::stream::MaskedBody {
            inner: body,
            masker,
            finished: false,
        };
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    let bytes: Bytes = match Limited::new(body, gw.max_answer_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if inspect => {
            return Err(GatewayError::Unmaskable(format!(
                "the answer is larger than the {}-byte masking limit or could not be read ({e})",
                gw.max_answer_bytes
            )));
        }
        Err(e) => {
            return Err(GatewayError::Upstream {
                timeout: false,
                message: format!("reading Azure's answer: {e}"),
            });
        }
    };
    // An encoded answer is decoded (bounded) to be read; it then goes out unencoded, and its
    // strong ETag, which named the encoded bytes, becomes weak.
    let bytes = match &encoding {
        Some(coding) => match crate::mask::encoding::decode(coding, &bytes, gw.max_answer_bytes) {
            Ok(decoded) => {
                parts.headers.remove(header::CONTENT_ENCODING);
                weaken_etag(&mut parts.headers);
                Bytes::from(decoded)
            }
            Err(e) if inspect => return Err(GatewayError::Unmaskable(e.to_string())),
            // Nothing to mask: an answer we cannot decode passes as it came.
            Err(_) => bytes,
        },
        None => bytes,
    };
    // Mask before anything else reads the body: nothing after this point sees a secret.
    let masked = if !inspect {
        Masked::Unchanged
    } else if is_json || plan.has_profiles() {
        gw.masker
            .mask_json(plan, &bytes)
            .map_err(|e| GatewayError::Unmaskable(e.to_string()))?
    } else {
        gw.masker.mask_text(plan, &bytes)
    };
    let bytes = match masked {
        Masked::Unchanged => bytes,
        Masked::Changed { body, count, kinds } => {
            weaken_etag(&mut parts.headers);
            tracing::info!(masked = count, kinds = ?kinds, "masked secrets in the answer");
            crate::metrics::METRICS.masked(count, kinds.iter().map(String::as_str));
            Bytes::from(body)
        }
    };
    let bytes = if may_page {
        // The same reader as the streaming path: only the top-level nextLink changes, byte
        // for byte; an answer it cannot read keeps its bytes (there is no link to follow).
        let mut links =
            crate::mask::stream::StreamMasker::links_only(gw.masker.clone(), page_link());
        let mut out = Vec::with_capacity(bytes.len() + 128);
        match links
            .feed(&bytes, &mut out)
            .and_then(|()| links.finish(&mut out))
        {
            Ok(()) => Bytes::from(out),
            Err(_) => bytes,
        }
    } else {
        bytes
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Response::from_parts(parts, full(bytes)))
}

/// A strong ETag names exact bytes; once the gateway changed them, only a weak one is true.
fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(tag) = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.starts_with("W/"))
        .map(|t| format!("W/{t}"))
        && let Ok(v) = HeaderValue::from_str(&tag)
    {
        headers.insert(header::ETAG, v);
    }
}
