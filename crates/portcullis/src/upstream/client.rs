//! The gateway's outbound HTTP client: pooled HTTP/1.1 and HTTP/2 connections over rustls,
//! trusting the system's roots plus any configured CA files (the simulator's, a corporate
//! proxy's). Used for forwarding to Azure and for the gateway's own calls (OIDC metadata,
//! JWKS, token endpoints, Graph).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Bodies flowing through the gateway, streamed.
pub type Body = BoxBody<Bytes, BoxError>;

/// Largest answer the gateway reads whole for its own calls (metadata, keys, tokens).
const MAX_CONTROL_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no certificate")]
    EmptyCa { path: PathBuf },
    #[error("tls setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{method} {url}: {source}")]
    Request {
        method: Method,
        url: String,
        source: BoxError,
    },
    #[error("{method} {url}: timed out after {secs}s")]
    Timeout {
        method: Method,
        url: String,
        secs: u64,
    },
    #[error("{method} {url}: answered {status}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: the answer is not the JSON expected: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Body>,
    timeout: Duration,
}

impl HttpClient {
    /// `extra_cas`: PEM files trusted besides the system roots.
    pub fn new(extra_cas: &[PathBuf], timeout: Duration) -> Result<HttpClient, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        for path in extra_cas {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                path: path.clone(),
                source,
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                roots.add(cert)?;
                added += 1;
            }
            if added == 0 {
                return Err(ClientError::EmptyCa { path: path.clone() });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(HttpClient { inner, timeout })
    }

    /// Sends a request; the answer's body streams. The timeout covers the answer's head.
    pub async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let (method, url) = (req.method().clone(), req.uri().to_string());
        match tokio::time::timeout(self.timeout, self.inner.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(ClientError::Request {
                method,
                url,
                source: Box::new(e),
            }),
            Err(_) => Err(ClientError::Timeout {
                method,
                url,
                secs: self.timeout.as_secs(),
            }),
        }
    }

    /// A small request whose JSON answer the gateway reads itself (metadata, keys, tokens).
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut b = Request::builder().method(method.clone()).uri(url);
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        let req = match body {
            Some((content_type, bytes)) => b
                .header(http::header::CONTENT_TYPE, content_type)
                .body(full(bytes)),
            None => b.body(empty()),
        }
        .map_err(|e| ClientError::Request {
            method: method.clone(),
            url: url.to_owned(),
            source: Box::new(e),
        })?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let bytes = tokio::time::timeout(
            self.timeout,
            Limited::new(resp.into_body(), MAX_CONTROL_BODY).collect(),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            method: method.clone(),
            url: url.to_owned(),
            secs: self.timeout.as_secs(),
        })?
        .map_err(|e| ClientError::Request {
            method: method.clone(),
            url: url.to_owned(),
            source: e,
        })?
        .to_bytes();
        if !status.is_success() {
            // The body may explain (an AADSTS code); it never holds our secret.
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(ClientError::Status {
                method,
                url: url.to_owned(),
                status,
                body,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Json {
            url: url.to_owned(),
            source,
        })
    }
}
