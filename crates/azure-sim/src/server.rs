//! The listener: TLS (HTTP/2 and HTTP/1.1), one task per connection, fault injection, the
//! call log, and the dispatch of each request to the service it addresses (by host for Key
//! Vault, by path for everything else).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::calls::{CallRecord, Caller, Service};
use crate::faults::Injected;
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, arm_error};
use crate::{arm, control, entra, graph, keyvault};

/// Largest request body the simulator reads (ARM's own limit is 4 MB for most requests).
const MAX_BODY: usize = 32 * 1024 * 1024;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Returned to hyper to make it close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// Accepts connections until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sim: Arc<Sim>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let sim = sim.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = service_fn(move |req| handle(sim.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

async fn handle(
    sim: Arc<Sim>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let r = arm_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The request body is too large.",
            );
            return Ok(into_hyper(r));
        }
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| sim.base_url.trim_start_matches("https://").to_owned());
    let req = SimRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        raw_query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
        base_url: format!("https://{host}"),
    };
    if req.path.starts_with("/_sim/") {
        return Ok(into_hyper(control::handle(&sim, &req)));
    }
    let (delay, injected) = sim.faults.draw(&req.path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let faulted = || service_of(&req, &host, &req.segments());
    let (response, caller, service) = match injected {
        Some(Injected::Drop) => return Err(DropConnection),
        Some(Injected::Throttle(secs)) => {
            let r = arm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request is being throttled (fault injection).",
            )
            .header("retry-after", secs.to_string());
            (r, None, faulted())
        }
        Some(Injected::Error(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                arm_error(
                    status,
                    "InternalServerError",
                    "The server encountered an internal error (fault injection).",
                ),
                None,
                faulted(),
            )
        }
        None => dispatch(&sim, &req, &host),
    };
    let response = match sim.faults.forced_encoding(&req.path) {
        Some(coding) if !response.body.is_empty() => encode(response, &coding),
        _ => response,
    };
    sim.calls.push(CallRecord {
        seq: 0,
        time: crate::world::now_rfc3339(),
        service,
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.raw_query.clone(),
        caller,
        status: response.status.as_u16(),
        batch: false,
    });
    // A HEAD answer carries the GET's headers, Content-Length included, and no body
    // (RFC 9110 §9.3.2): hyper leaves the body out on HTTP/1.1 but would send it on HTTP/2.
    let response = if req.method == http::Method::HEAD && !response.body.is_empty() {
        let mut r = response;
        r.headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(r.body.len()),
        );
        r.body = Bytes::new();
        r
    } else {
        response
    };
    Ok(into_hyper(response))
}

/// `demo-kv` for `demo-kv.vault.azure.net[:port]` (any suffix after `.vault.`).
fn vault_from_host(host: &str) -> Option<String> {
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let (first, rest) = host.split_once('.')?;
    rest.to_ascii_lowercase()
        .starts_with("vault.")
        .then(|| first.to_owned())
}

/// Which service a request addresses: Key Vault by host or `/keyvault/{vault}`, the
/// managed-identity endpoints, Graph (`/v1.0`), the Entra authority (`/{tenant}/...`), else ARM.
fn service_of(req: &SimRequest, host: &str, segments: &[String]) -> Service {
    if vault_from_host(host).is_some() {
        return Service::KeyVault;
    }
    let first = segments
        .first()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match first.as_str() {
        "keyvault" if segments.len() >= 2 => Service::KeyVault,
        "metadata"
            if req
                .path
                .eq_ignore_ascii_case("/metadata/identity/oauth2/token") =>
        {
            Service::ManagedIdentity
        }
        "msi" if req.path.eq_ignore_ascii_case("/msi/token") => Service::ManagedIdentity,
        "v1.0" => Service::Graph,
        _ if entra::owns(segments) => Service::Entra,
        _ => Service::Arm,
    }
}

fn dispatch(sim: &Sim, req: &SimRequest, host: &str) -> (SimResponse, Option<Caller>, Service) {
    let segments = req.segments();
    let service = service_of(req, host, &segments);
    let (response, caller) = match service {
        Service::KeyVault => match vault_from_host(host) {
            Some(vault) => keyvault::handle(sim, &vault, &segments, req, &req.base_url),
            None => {
                let base = format!("{}/keyvault/{}", req.base_url, segments[1]);
                keyvault::handle(sim, &segments[1], &segments[2..], req, &base)
            }
        },
        Service::ManagedIdentity if req.path.eq_ignore_ascii_case("/msi/token") => {
            (entra::managed_identity::app_service(sim, req), None)
        }
        Service::ManagedIdentity => (entra::managed_identity::imds(sim, req), None),
        Service::Graph => graph::handle(sim, &segments, req),
        Service::Entra => (entra::handle(sim, &segments, req), None),
        Service::Arm => arm::handle(sim, req),
    };
    (response, caller, service)
}

/// Encodes an answer's body (fault injection: `force_encoding`).
fn encode(mut r: SimResponse, coding: &str) -> SimResponse {
    use std::io::Write;
    let body = match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&r.body).and_then(|_| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&r.body).and_then(|_| e.finish())
        }
        _ => {
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &r.body[..], &mut out, &Default::default()).map(|_| out)
        }
    };
    match body {
        Ok(b) => {
            r.body = Bytes::from(b);
            r.headers.remove(http::header::CONTENT_LENGTH);
            r.header("content-encoding", coding)
        }
        Err(_) => r,
    }
}

fn into_hyper(r: SimResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(r.body));
    *response.status_mut() = r.status;
    *response.headers_mut() = r.headers;
    response
        .headers_mut()
        .insert("server", HeaderValue::from_static("azure-sim"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_hosts() {
        assert_eq!(
            vault_from_host("demo-kv.vault.azure.net").as_deref(),
            Some("demo-kv")
        );
        assert_eq!(
            vault_from_host("demo-kv.vault.localhost:8443").as_deref(),
            Some("demo-kv")
        );
        assert_eq!(vault_from_host("127.0.0.1:8443"), None);
        assert_eq!(vault_from_host("management.azure.com"), None);
    }
}
