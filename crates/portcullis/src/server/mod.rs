//! The listeners: the agent-facing HTTPS listener (HTTP/2 and HTTP/1.1) that runs the
//! pipeline on plain hyper, and the admin listener (the admin API and the console, on axum:
//! `admin.rs`). `run` takes already-bound listeners and a shutdown signal, so tests bind
//! port 0.

pub mod admin;
pub mod build;
pub mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::pipeline::{Gateway, handle};

/// How long an idle connection's orderly close may take before it is dropped.
const IDLE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Listeners {
    pub gateway: TcpListener,
    pub admin: TcpListener,
}

/// Serves both listeners until `shutdown` turns true; then stops accepting, lets every
/// connection finish what it has started (HTTP/2 GOAWAY, HTTP/1.1 close after the current
/// answer) and closes those still busy after `grace`. `admin` is what the admin listener
/// serves from beside the gateway.
pub async fn run(
    listeners: Listeners,
    tls: Arc<rustls::ServerConfig>,
    gateway: Arc<Gateway>,
    admin: admin::AdminParts,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (service, forget) = admin::service(gateway.clone(), admin);
    let forgetting = forget.map(|f| admin::forget_idle(f, shutdown.clone()));
    let admin = tokio::spawn(serve(
        listeners.admin,
        acceptor.clone(),
        shutdown.clone(),
        Arc::new(move |_, peer, req| {
            let service = service.clone();
            Box::pin(async move {
                let Ok(response) = service.oneshot((peer, req)).await;
                response.map(|body| admin::SyncBody::new(body).boxed())
            })
        }),
        gateway.clone(),
        grace,
    ));
    serve(
        listeners.gateway,
        acceptor,
        shutdown,
        Arc::new(|gw: Arc<Gateway>, _, req| Box::pin(handle(gw, req))),
        gateway,
        grace,
    )
    .await;
    let _ = admin.await;
    if let Some(f) = forgetting {
        let _ = f.await;
    }
}

/// A listener's answer to one request, from a client at a peer address.
type Handler = Arc<
    dyn Fn(
            Arc<Gateway>,
            SocketAddr,
            http::Request<hyper::body::Incoming>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = http::Response<crate::upstream::client::Body>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
    handler: Handler,
    gateway: Arc<Gateway>,
    grace: Duration,
) {
    let limits = gateway.limits.clone();
    // Beyond `max_connections`, new connections wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            permit = slots.clone().acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                tokio::select! {
                    accepted = listener.accept() => accepted.map(|(tcp, peer)| (tcp, peer, permit)),
                    _ = shutdown.changed() => break,
                }
            }
            _ = shutdown.changed() => break,
        };
        let (tcp, peer, permit) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, handler, gateway, conn_shutdown, limits) = (
            acceptor.clone(),
            handler.clone(),
            gateway.clone(),
            shutdown.clone(),
            limits.clone(),
        );
        connections.spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_connection(stream, peer, handler, gateway, conn_shutdown, &limits).await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown grace over: closing connections still busy"
        );
        connections.shutdown().await;
    }
}

/// One connection: HTTP/2 or HTTP/1.1 with the configured caps, closed when idle (no
/// request in flight and no bytes moving for `idle_timeout`) or, gracefully, at shutdown.
async fn serve_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    handler: Handler,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
    limits: &crate::config::Limits,
) {
    let activity = Arc::new(activity::Activity::default());
    let in_flight = activity.clone();
    let service = service_fn(move |req| {
        // In flight from the request's arrival until its answer's body is done (or dropped):
        // a held request or a long download is not idle; pings and stray bytes are.
        let guard = in_flight.begin();
        let head = req.method() == http::Method::HEAD;
        let fut = handler(gateway.clone(), peer, req);
        async move {
            let response = fut.await;
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                let body = activity::Guarded {
                    body,
                    _guard: guard,
                };
                // An answer to HEAD has no body (RFC 9110 §9.3.2). hyper leaves it out on
                // HTTP/1.1 but sends it on HTTP/2, where DATA on a HEAD's stream is a
                // protocol error the client resets; the gateway's own answers (refusals)
                // have one.
                if head {
                    Bodiless(body).boxed()
                } else {
                    body.boxed()
                }
            }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let mut check = tokio::time::interval(idle.min(Duration::from_secs(5)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.changed() => break true,
            _ = check.tick() => {
                if activity.idle_for() >= idle {
                    break false;
                }
            }
        }
    };
    conn.as_mut().graceful_shutdown();
    if stopping {
        // Shutdown: the server's grace bounds the wait for requests in flight.
        let _ = conn.await;
    } else {
        // Idle: nothing is in flight; a client that does not take part in closing (an
        // HTTP/2 peer ignoring the final PING) is not waited for long.
        let _ = tokio::time::timeout(IDLE_CLOSE_WAIT, conn).await;
    }
}

mod activity {
    //! How many requests a connection has in flight (from arrival until the answer's body is
    //! done), and since when it has had none.

    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http_body::{Body, Frame, SizeHint};

    pub struct Activity {
        start: Instant,
        /// Milliseconds since `start` when the last request ended.
        last: AtomicU64,
        in_flight: AtomicUsize,
    }

    impl Default for Activity {
        fn default() -> Self {
            Activity {
                start: Instant::now(),
                last: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            }
        }
    }

    pub struct InFlight(Arc<Activity>);

    impl Drop for InFlight {
        fn drop(&mut self) {
            let a = &self.0;
            a.last
                .store(a.start.elapsed().as_millis() as u64, Ordering::Relaxed);
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl Activity {
        pub fn begin(self: &Arc<Self>) -> InFlight {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            InFlight(self.clone())
        }

        /// How long the connection has had nothing in flight; zero while it has.
        pub fn idle_for(&self) -> Duration {
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                return Duration::ZERO;
            }
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            self.start.elapsed().saturating_sub(last)
        }
    }

    /// An answer's body that keeps its request in flight until it is done or dropped.
    pub struct Guarded<B> {
        pub body: B,
        pub _guard: InFlight,
    }

    impl<B: Body<Data = Bytes> + Unpin> Body for Guarded<B> {
        type Data = Bytes;
        type Error = B::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Pin::new(&mut self.body).poll_frame(cx)
        }

        fn is_end_stream(&self) -> bool {
            self.body.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.body.size_hint()
        }
    }
}

/// An answer to HEAD: its body is still read to the end (so what it does on the way, such
/// as committing its audit record, happens), but nothing of it is sent.
struct Bodiless<B>(B);

impl<B> http_body::Body for Bodiless<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        loop {
            match std::pin::Pin::new(&mut self.0).poll_frame(cx) {
                std::task::Poll::Ready(Some(Ok(f))) if f.is_data() => continue,
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
