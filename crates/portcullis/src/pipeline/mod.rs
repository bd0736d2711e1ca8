//! The request path. [`handle_in`] is the list of phases, in order; each phase is a file of
//! its own:
//!
//! - `read.rs`: where the request goes (routing, the one host), its framing, its size, and
//!   its body, read only as far as policy needs;
//! - `authenticate.rs`: who sent it (the Entra token), and whether they may send now;
//! - `decide.rs`: which Azure operation it is, and what policy says, batches' and
//!   deployments' inner operations included;
//! - `hold.rs`: a request policy holds waits for its approvers;
//! - `send.rs`: the one way out: record, forward (`forward.rs`), rewrite and mask the
//!   answer (`answer.rs`), record the answer as it streams (`record.rs`);
//! - `operations.rs`: an approval presented as a long-running operation (its status and
//!   result URLs, the forward once approved, following Azure's own operation);
//! - `trail.rs`: what the request has been found to be, and `finish`, which writes every
//!   refusal's record, the metrics and the access line;
//! - `error.rs`: every refusal and how the agent is told.
//!
//! A phase returns what the next one needs, or the refusal that ends the request. Nothing
//! is forwarded that was not decided, and nothing without a committed record: `forward`
//! takes a [`Committed`], which only `record::commit` makes.

mod answer;
mod authenticate;
mod decide;
mod error;
mod forward;
mod hold;
mod operations;
mod read;
mod record;
mod send;
mod trail;

use std::sync::Arc;

use http::{Request, Response};

use crate::azure::rewrite::Binder;
use crate::azure::route::{Owner, Routed};
use crate::config::UpstreamConfig;
use crate::identity::Authenticator;
use crate::mask::Masker;
use crate::policy::Policy;
use crate::upstream::client::{Body, BoxError, HttpClient};
use crate::upstream::credential::TokenProvider;

pub use authenticate::authenticate;
pub use error::GatewayError;
pub use forward::forward;
pub use record::{Committed, commit};
pub use send::Outbound;

use hold::Held;
use trail::Trail;

/// A request body the phases read and forward: hyper's own from the data listener, or any
/// body a front end builds for the request it turns a call into.
pub trait RequestBody:
    hyper::body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl<B> RequestBody for B
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
}

/// Everything a request needs that outlives it.
pub struct Gateway {
    pub auth: Authenticator,
    /// The policy in force; hot reload swaps it whole. Each request loads it once, so it is
    /// decided by exactly one complete policy.
    pub policy: arc_swap::ArcSwap<Policy>,
    pub upstream: UpstreamConfig,
    pub tokens: Arc<TokenProvider>,
    pub http: HttpClient,
    pub binder: Arc<Binder>,
    /// Replaces secrets in answers by placeholders.
    pub masker: Arc<Masker>,
    /// Commits audit records (one writer, group commit).
    pub recorder: crate::audit::writer::Recorder,
    /// Held requests and their approvals.
    pub approvals: Arc<crate::approval::Approvals>,
    /// Groups requests into sessions for replay.
    pub sessions: crate::audit::session::Sessions,
    pub audit: crate::config::AuditConfig,
    /// The largest answer read whole (to mask it, or rewrite its nextLinks).
    pub max_answer_bytes: usize,
    pub public_host: Option<String>,
    /// `{authority}/{tenant}`: where the challenge sends clients for a token.
    pub challenge_authority: String,
    /// The audience agents ask tokens for.
    pub audience: String,
    /// Whether `https://vault.{public_host}` is an accepted audience: then a vault reached
    /// by its host name challenges for it, as the Key Vault SDKs' default settings require.
    pub vault_audience: bool,
    /// What one client may ask (connections, heads, bodies, rate).
    pub limits: crate::config::Limits,
    /// Requests per principal per second.
    pub limiter: crate::ratelimit::RateLimiter,
}

/// The request as the phases after routing see it.
struct Exchange {
    routed: Routed,
    /// The query without the gateway's binding parameter: what is forwarded.
    query: String,
    /// The gateway's binding parameter, if the URL is one the gateway handed out.
    binding: Option<String>,
    /// The path as sent (what bindings sign).
    raw_path: String,
}

/// Answers one request to Azure (or to the gateway's own operation URLs), whatever way it
/// came in: every phase, in order, for every request.
pub async fn handle<B: RequestBody>(gw: Arc<Gateway>, req: Request<B>) -> Response<Body> {
    use tracing::Instrument;
    let request_id = uuid::Uuid::new_v4().to_string();
    // Every log line a request causes carries its id: the one its answer carries in
    // `x-portcullis-request-id`, and its audit records' `request_id`.
    let span = tracing::info_span!("request", request_id = %request_id);
    handle_in(gw, req, request_id).instrument(span).await
}

async fn handle_in<B: RequestBody>(
    gw: Arc<Gateway>,
    req: Request<B>,
    request_id: String,
) -> Response<Body> {
    let mut trail = Trail::begin(request_id, &req);
    let outcome = phases(&gw, req, &mut trail).await;
    trail.finish(&gw, outcome).await
}

/// The phases, in order. Each notes in the trail what it found, so that a refusal is
/// recorded with all that was known.
async fn phases<B: RequestBody>(
    gw: &Gateway,
    req: Request<B>,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    let ex = read::route(gw, &req, trail)?;
    let principal = authenticate::request(gw, &req, trail).await?;
    match ex.routed.owner() {
        // Boxed: its state must not grow every request's future.
        Owner::Gateway => return Box::pin(operations::poll(gw, &ex, &principal, trail)).await,
        Owner::Azure => {}
    }
    let (parts, body) = read::head(gw, &ex, req)?;
    let operation = decide::classify(&ex, &parts.method, trail)?;
    let policy = gw.policy.load_full();
    let body = read::body(body, &policy, &principal, &operation, &parts.method).await?;
    let judged = decide::decide(gw, &policy, &ex, &principal, operation, &parts, body, trail)?;
    let cleared = match hold::hold(gw, &ex, &principal, judged, &parts, trail).await? {
        Held::Cleared(cleared) => cleared,
        Held::Answered(response) => return Ok(response),
    };
    let (out, record) = send::prepare(gw, ex, parts, cleared, trail);
    send::send(gw, &principal, out, record, trail.started)
        .await
        .map_err(send::Failure::into_error)
}

#[cfg(test)]
mod future_size {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<Gateway>, Request<hyper::body::Incoming>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every request in flight, held ones included, keeps this state machine alive (10,000
    /// held requests are 10,000 of them): it must not grow unnoticed.
    #[test]
    fn a_requests_state_machine_stays_small() {
        let size = future_size(handle::<hyper::body::Incoming>);
        assert!(
            size < 24 * 1024,
            "pipeline::handle's future is {size} bytes"
        );
    }
}
