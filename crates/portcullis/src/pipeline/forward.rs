//! Forwarding: the request as Azure receives it (the agent's credentials and hop-by-hop
//! headers gone, the gateway's own token for the deciding rule's credential, answers asked
//! unencoded so they can be read), sent once a [`Committed`] record proves it is recorded.

use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::error::GatewayError;
use super::record::{Committed, UpstreamLatency};
use super::send::Outbound;
use super::{Gateway, answer};
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::upstream::client::{Body, ClientError};

/// Headers that never cross the gateway: hop-by-hop ones (RFC 9110 §7.6.1), the agent's
/// credentials, and anything that would let the agent speak for the gateway.
pub(super) const STRIPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-ms-authorization-auxiliary",
];

/// Forwards a recorded request to Azure and returns its answer, rewritten and masked
/// (`answer.rs`). The [`Committed`] proof is the point: nothing is forwarded unrecorded.
pub async fn forward(
    gw: &Gateway,
    principal: &Principal,
    out: Outbound,
    _recorded: &Committed,
) -> Result<Response<Body>, GatewayError> {
    let (base, resource) = upstream_base(gw, &out.service);
    // The deciding rule may name a credential (e.g. `elevated`); else the default one.
    let credential = out
        .credential
        .as_deref()
        .unwrap_or(&gw.upstream.default_credential);
    let token = gw
        .tokens
        .token(credential, resource)
        .await
        .map_err(|e| GatewayError::UpstreamCredential(e.to_string()))?;
    let sep = if out.query.is_empty() { "" } else { "?" };
    let url = format!("{base}{}{sep}{}", out.upstream_path, out.query);
    let mut req = Request::builder().method(out.method.clone()).uri(&url);
    let headers = req.headers_mut().expect("a fresh builder has headers");
    for (k, v) in &out.headers {
        if !STRIPPED_REQUEST_HEADERS.contains(&k.as_str())
            && !k.as_str().starts_with("x-portcullis-")
        {
            headers.append(k.clone(), v.clone());
        }
    }
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        GatewayError::UpstreamCredential("the upstream token is not header text".into())
    })?;
    headers.insert(header::AUTHORIZATION, bearer);
    // Answers must be readable to be masked: ask for them unencoded.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        "x-ms-correlation-request-id",
        HeaderValue::from_str(&out.ids.correlation_id).expect("checked printable ASCII"),
    );
    let upstream_req = req.body(out.body).map_err(|e| GatewayError::Upstream {
        timeout: false,
        message: e.to_string(),
    })?;
    let sent = Instant::now();
    let resp = gw.http.send(upstream_req).await.map_err(|e| match e {
        ClientError::Timeout { .. } => GatewayError::Upstream {
            timeout: true,
            message: e.to_string(),
        },
        other => GatewayError::Upstream {
            timeout: false,
            message: other.to_string(),
        },
    })?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        // Azure refused the gateway's own token: never hand the agent Azure's challenge.
        return Err(GatewayError::UpstreamCredential(
            "Azure refused the gateway's token (401)".into(),
        ));
    }
    let upstream = UpstreamLatency(sent.elapsed());
    crate::metrics::METRICS
        .upstream_seconds
        .observe(upstream.0.as_secs_f64());
    let lro = UpstreamLro::of(&resp, &base);
    let answer = answer::Answer {
        ids: &out.ids,
        method: &out.method,
        path: &out.path,
        gateway_base: &out.gateway_base,
        principal,
        base: &base,
        plan: &out.plan,
    };
    let mut response = answer::rewrite(gw, answer, resp).await?;
    response.extensions_mut().insert(upstream);
    response.extensions_mut().insert(lro);
    Ok(response)
}

/// The upstream's base URL and token resource for a service.
fn upstream_base<'g>(gw: &'g Gateway, service: &Service) -> (String, &'g str) {
    match service {
        Service::Arm => (
            gw.upstream.arm_url.clone(),
            gw.upstream.arm_resource.as_str(),
        ),
        Service::KeyVault { vault } => (
            gw.upstream.vault_url(vault),
            gw.upstream.keyvault_resource.as_str(),
        ),
    }
}

/// Azure's own status and result URLs in a long-running operation's first answer, as
/// paths below the upstream base (a response extension; the agent sees them rewritten).
#[derive(Debug, Clone, Default)]
pub(super) struct UpstreamLro {
    pub async_operation: Option<String>,
    pub location: Option<String>,
}

impl UpstreamLro {
    fn of<B>(resp: &Response<B>, base: &str) -> UpstreamLro {
        let below = |name: &str| {
            let v = resp.headers().get(name)?.to_str().ok()?;
            below_base(v, base)
        };
        let async_operation = below("azure-asyncoperation");
        // A `Location` is an operation's result URL only on a 202 or beside a status URL
        // (a 201 may name the created resource).
        let location = (resp.status() == StatusCode::ACCEPTED || async_operation.is_some())
            .then(|| below("location"))
            .flatten();
        UpstreamLro {
            async_operation,
            location,
        }
    }
}

/// `url` as a path and query below the upstream `base`, or `None` when it points elsewhere
/// (then the gateway does not follow it).
fn below_base(url: &str, base: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let b = url::Url::parse(base).ok()?;
    if u.scheme() != b.scheme()
        || !u.host_str()?.eq_ignore_ascii_case(b.host_str()?)
        || u.port_or_known_default() != b.port_or_known_default()
    {
        return None;
    }
    let below = u.path().strip_prefix(b.path().trim_end_matches('/'))?;
    if !below.starts_with('/') {
        return None;
    }
    Some(match u.query() {
        Some(q) => format!("{below}?{q}"),
        None => below.to_owned(),
    })
}
