//! Reading the request: where it goes (the one host it names, the service and canonical
//! path), whether its head and framing are acceptable, its size, and its body, read only
//! as far as policy needs. The body forwarded is always the bytes read, then the rest of
//! the stream: reading never changes it.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;

use super::error::GatewayError;
use super::trail::Trail;
use super::{Exchange, Gateway, RequestBody};
use crate::azure::operation::Operation;
use crate::azure::rewrite::Binder;
use crate::azure::route::{self, Service};
use crate::identity::principal::Principal;
use crate::policy::{Policy, condition};
use crate::upstream::client::{Body, BoxError, full};

/// Routes the request: the service it is for and its path in canonical form.
pub(super) fn route<B>(
    gw: &Gateway,
    req: &Request<B>,
    trail: &mut Trail,
) -> Result<Exchange, GatewayError> {
    let routed = request_host(req).and_then(|host| {
        route::route(&host, req.uri().path(), gw.public_host.as_deref()).map_err(|e| {
            GatewayError::BadRequest {
                code: "InvalidRequestPath",
                message: e.to_string(),
            }
        })
    });
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            trail.unroutable(gw, req);
            return Err(e);
        }
    };
    let (query, binding) = Binder::split(req.uri().query().unwrap_or(""));
    trail.routed(gw, &routed, &query);
    Ok(Exchange {
        routed,
        query,
        binding,
        raw_path: req.uri().path().to_owned(),
    })
}

/// The one host a request names: its `Host` header, or the URI's authority (HTTP/2's
/// `:authority`, an absolute-form target). Two `Host` headers, or a `Host` that differs from
/// the authority, are two answers to where the request goes: refused, never one picked
/// (RFC 9110 §7.2, RFC 9113 §8.3.1).
fn request_host<B>(req: &Request<B>) -> Result<String, GatewayError> {
    let bad = |message: &str| GatewayError::BadRequest {
        code: "InvalidHost",
        message: message.to_owned(),
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad("the request has more than one Host header")),
        (Some(h), None) => Some(
            h.to_str()
                .map_err(|_| bad("the Host header is not valid text"))?
                .to_owned(),
        ),
        (None, None) => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    match (header, authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(&a) => Err(bad(
            "the Host header names another host than the request's authority",
        )),
        (Some(h), _) => Ok(h),
        (None, Some(a)) => Ok(a),
        (None, None) => Ok(String::new()),
    }
}

/// What the listener does not check for every protocol: the header count (HTTP/2 has no
/// cap of its own in hyper) and transfer codings other than plain `chunked` (hyper undoes
/// the chunking only; a `gzip, chunked` body would reach Azure still encoded, unread).
pub(super) fn framing(gw: &Gateway, headers: &HeaderMap) -> Result<(), GatewayError> {
    if headers.len() > gw.limits.max_headers {
        return Err(GatewayError::Protocol {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code: "RequestHeaderFieldsTooLarge",
            message: format!(
                "the request has more than {} header fields",
                gw.limits.max_headers
            ),
        });
    }
    for te in headers.get_all(header::TRANSFER_ENCODING) {
        if !te
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
        {
            return Err(GatewayError::Protocol {
                status: StatusCode::NOT_IMPLEMENTED,
                code: "UnsupportedTransferEncoding",
                message: "only the chunked transfer coding is accepted".into(),
            });
        }
    }
    Ok(())
}

/// A body not read yet, and the most this service takes.
pub(super) struct Unread<B> {
    body: B,
    cap: usize,
}

/// The request's head, once its declared size and method are acceptable.
pub(super) fn head<B>(
    gw: &Gateway,
    ex: &Exchange,
    req: Request<B>,
) -> Result<(http::request::Parts, Unread<B>), GatewayError> {
    let cap = match ex.routed.service {
        Service::Arm => gw.limits.max_body_arm,
        Service::KeyVault { .. } => gw.limits.max_body_keyvault,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(GatewayError::TooLarge { limit: cap });
    }
    refuse_method_overrides(req.headers())?;
    let (parts, body) = req.into_parts();
    Ok((parts, Unread { body, cap }))
}

fn refuse_method_overrides(headers: &HeaderMap) -> Result<(), GatewayError> {
    match crate::azure::METHOD_OVERRIDES
        .iter()
        .find(|h| headers.contains_key(**h))
    {
        Some(h) => Err(GatewayError::BadRequest {
            code: "MethodOverrideNotAllowed",
            message: format!(
                "the {h} header is not accepted: the method sent is the method evaluated"
            ),
        }),
        None => Ok(()),
    }
}

/// The body: what is forwarded, what conditions see, and the whole bytes when read whole.
pub(super) struct ReadBody {
    /// The bytes to forward (capped at the service's limit when sent).
    pub forward: Body,
    pub seen: condition::Body,
    pub whole: Option<Bytes>,
    /// The service's limit on a body.
    pub cap: usize,
    /// Policy's limit on a body read (`max_body_bytes`).
    pub limit: usize,
}

/// Reads the body when something needs it: a condition or an approve rule that could
/// apply, a batch (its inner requests are judged), or a write (its record holds the body,
/// masked). Anything else streams through unread.
pub(super) async fn body<B: RequestBody>(
    unread: Unread<B>,
    policy: &Policy,
    principal: &Principal,
    operation: &Operation,
    method: &Method,
) -> Result<ReadBody, GatewayError> {
    let Unread { body, cap } = unread;
    let writes = matches!(*method, Method::PUT | Method::PATCH | Method::POST);
    if operation.is_batch()
        || writes
        || policy.needs_body(principal, operation)
        || policy.may_hold(principal, operation)
    {
        let (forward, seen, whole) = read_for_conditions(body, policy.max_body_bytes, cap).await?;
        Ok(ReadBody {
            forward,
            seen,
            whole,
            cap,
            limit: policy.max_body_bytes,
        })
    } else {
        Ok(ReadBody {
            forward: body.map_err(Into::into).boxed(),
            seen: condition::Body::Absent,
            whole: None,
            cap,
            limit: policy.max_body_bytes,
        })
    }
}

/// Reads up to `cap` bytes of a body for conditions. The body forwarded afterwards is the
/// same bytes (what was read, then the rest of the stream): reading never changes it.
async fn read_for_conditions<B: RequestBody>(
    mut body: B,
    cap: usize,
    hard_cap: usize,
) -> Result<(Body, condition::Body, Option<Bytes>), GatewayError> {
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatewayError::BadRequest {
            code: "InvalidRequestBody",
            message: format!("reading the request body: {}", e.into()),
        })?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            // A body without a declared length, past the service's cap: refused before
            // anything is recorded as forwarded.
            if read.len() > hard_cap {
                return Err(GatewayError::TooLarge { limit: hard_cap });
            }
            if read.len() > cap {
                let prefix = read.freeze();
                return Ok((
                    Prefixed {
                        prefix: Some(prefix),
                        rest: body,
                    }
                    .boxed(),
                    condition::Body::TooLarge,
                    None,
                ));
            }
        }
    }
    let bytes = read.freeze();
    let seen = if bytes.iter().all(u8::is_ascii_whitespace) {
        condition::Body::Absent
    } else {
        match crate::json::parse(&bytes) {
            Ok(v) => condition::Body::Json(v),
            // Judged one way here and perhaps another by Azure: refused.
            Err(crate::json::StrictError::Duplicate) => {
                return Err(GatewayError::BadRequest {
                    code: "InvalidRequestContent",
                    message: "the JSON body writes a key twice in one object (perhaps in different case); Azure and the gateway could read it differently".into(),
                });
            }
            Err(crate::json::StrictError::NotJson(_)) => condition::Body::NotJson,
        }
    };
    Ok((full(bytes.clone()), seen, Some(bytes)))
}

/// A body whose first bytes were already read: those, then the rest of the stream.
struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B: RequestBody> hyper::body::Body for Prefixed<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(p))));
        }
        std::pin::Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }
}
