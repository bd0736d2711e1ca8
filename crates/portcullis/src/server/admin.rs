//! The admin listener's service: the admin API's router ([`crate::admin`]) and the console's
//! ([`crate::console`]) composed, behind the listener's cross-cutting limits, outermost
//! first: a per-client rate limit (429), path normalization (a trailing `/` is the same
//! page), a body cap and a timeout on producing an answer's head.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admin::AdminState;
use crate::audit::store::Store;
use crate::console::{Console, ConsoleState};
use crate::pipeline::Gateway;

/// The most any admin request may send (its routes cap their own bodies lower).
const MAX_BODY: usize = 1024 * 1024;
/// How long an answer's head may take (an event stream's body then flows for as long as
/// the client stays).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often clients that have not been seen for a while are forgotten by the rate limit.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// What the admin listener serves from beside the gateway.
pub struct AdminParts {
    /// The audit store, for reading: sessions, records, console sign-ins.
    pub store: Store,
    /// The console's sign-in (`None`: the console is off).
    pub console: Option<Arc<Console>>,
}

/// One admin request, from a client at a peer address, to its answer.
pub type AdminService = BoxCloneSyncService<
    (SocketAddr, http::Request<hyper::body::Incoming>),
    Response,
    std::convert::Infallible,
>;

/// Forgets the clients the rate limit no longer limits (their buckets are full again).
pub type Forget = Box<dyn Fn() + Send + Sync>;

/// The admin listener's service, and the rate limit's bookkeeping to run beside it
/// ([`forget_idle`]). `limits.admin_rate_per_client` requests per second from one client
/// address, `limits.admin_burst_per_client` at once above it; no limit when the rate is 0.
pub fn service(gateway: Arc<Gateway>, parts: AdminParts) -> (AdminService, Option<Forget>) {
    let (rate, burst) = (
        gateway.limits.admin_rate_per_client,
        gateway.limits.admin_burst_per_client,
    );
    let admin = AdminState {
        gateway,
        store: parts.store,
    };
    let console = ConsoleState {
        admin: admin.clone(),
        console: parts.console,
    };
    let routes = crate::admin::router(admin)
        .merge(crate::console::router(console))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            ANSWER_TIMEOUT,
        ));
    let normalized = tower::ServiceBuilder::new()
        .map_response(
            |r: http::Response<tower_http::limit::ResponseBody<axum::body::Body>>| {
                r.into_response()
            },
        )
        .layer(NormalizePathLayer::trim_trailing_slash())
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .service(routes);
    let config = (rate > 0.0)
        .then(|| {
            GovernorConfigBuilder::default()
                .period(Duration::from_secs_f64(1.0 / rate))
                .burst_size(burst.clamp(1.0, f64::from(u32::MAX)) as u32)
                .key_extractor(PeerIpKeyExtractor)
                .finish()
        })
        .flatten();
    let forget = config.as_ref().map(|c| {
        let limiter = c.limiter().clone();
        Box::new(move || {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }) as Forget
    });
    let limited = tower::ServiceBuilder::new()
        .option_layer(config.map(|c| GovernorLayer::new(c).error_handler(too_many)))
        .service(normalized);
    // The limit is keyed by the peer's address, which the connection knows.
    let service = limited.map_request(
        |(peer, mut req): (SocketAddr, http::Request<hyper::body::Incoming>)| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        },
    );
    (BoxCloneSyncService::new(service), forget)
}

/// A refusal in ARM's shape, saying when to come back.
fn too_many(e: tower_governor::GovernorError) -> Response {
    match e {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            (
                [(http::header::RETRY_AFTER, wait.to_string())],
                crate::admin::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    &format!(
                        "too many requests from this address to the admin listener (limits.admin_rate_per_client); retry after {wait} s"
                    ),
                ),
            )
                .into_response()
        }
        other => {
            tracing::error!(error = %other, "the admin rate limit could not place a request");
            crate::admin::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the request could not be placed",
            )
        }
    }
}

/// Forgets the clients whose buckets are full again, every [`FORGET_EVERY`], until
/// `shutdown`: a client is remembered only while it is limited.
pub fn forget_idle(
    forget: Forget,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FORGET_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => forget(),
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// An axum body made `Sync`, as the listeners' body type is: it is only ever polled,
/// through `&mut`, so the lock is never taken. Its size hint is read once, before the
/// first frame, which is when hyper reads it (a known length becomes `Content-Length`).
pub struct SyncBody {
    body: std::sync::Mutex<axum::body::Body>,
    hint: http_body::SizeHint,
    ended: bool,
}

impl SyncBody {
    pub fn new(body: axum::body::Body) -> SyncBody {
        SyncBody {
            hint: http_body::Body::size_hint(&body),
            ended: http_body::Body::is_end_stream(&body),
            body: std::sync::Mutex::new(body),
        }
    }
}

impl http_body::Body for SyncBody {
    type Data = bytes::Bytes;
    type Error = crate::upstream::client::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let body = this
            .body
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let frame = std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into);
        if let std::task::Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.hint
    }
}
