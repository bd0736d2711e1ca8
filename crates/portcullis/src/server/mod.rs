//! The listeners: the agent-facing HTTPS listener (HTTP/2 and HTTP/1.1) that runs the
//! pipeline, and the admin listener (health now; approvals and the console later).
//! `run` takes already-bound listeners and a shutdown signal, so tests bind port 0.

pub mod admin;
mod approvals_api;
pub mod build;
pub mod reload;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::pipeline::{Gateway, handle};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Listeners {
    pub gateway: TcpListener,
    pub admin: TcpListener,
}

/// Serves both listeners until `shutdown` turns true; then stops accepting, lets every
/// connection finish what it has started (HTTP/2 GOAWAY, HTTP/1.1 close after the current
/// answer) and closes those still busy after `grace`.
pub async fn run(
    listeners: Listeners,
    tls: Arc<rustls::ServerConfig>,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let admin = tokio::spawn(serve(
        listeners.admin,
        acceptor.clone(),
        shutdown.clone(),
        Arc::new(|gw: Arc<Gateway>, req| Box::pin(admin::handle(gw, req))),
        gateway.clone(),
        grace,
    ));
    serve(
        listeners.gateway,
        acceptor,
        shutdown,
        Arc::new(|gw: Arc<Gateway>, req| Box::pin(handle(gw, req))),
        gateway,
        grace,
    )
    .await;
    let _ = admin.await;
}

type Handler = Arc<
    dyn Fn(
            Arc<Gateway>,
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
                    accepted = listener.accept() => accepted.map(|(tcp, _)| (tcp, permit)),
                    _ = shutdown.changed() => break,
                }
            }
            _ = shutdown.changed() => break,
        };
        let (tcp, permit) = match accepted {
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
            serve_connection(stream, handler, gateway, conn_shutdown, &limits).await;
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
    handler: Handler,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
    limits: &crate::config::Limits,
) {
    let activity = Arc::new(activity::Activity::default());
    let in_flight = activity.clone();
    let service = service_fn(move |req| {
        let fut = handler(gateway.clone(), req);
        let guard = in_flight.begin();
        async move {
            let response = fut.await;
            drop(guard);
            Ok::<_, std::convert::Infallible>(response)
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
    let io = activity::Tracked::new(stream, activity.clone());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let mut check = tokio::time::interval(idle.min(Duration::from_secs(5)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.changed() => break,
            _ = check.tick() => {
                if activity.idle_for() >= idle {
                    break;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

mod activity {
    //! When a connection last moved bytes, and how many requests it has in flight.

    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub struct Activity {
        start: Instant,
        /// Milliseconds since `start` of the last read or write.
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
            self.0.touch();
            self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl Activity {
        fn touch(&self) {
            self.last
                .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }

        pub fn begin(self: &Arc<Self>) -> InFlight {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            InFlight(self.clone())
        }

        /// How long the connection has been idle; zero while a request is in flight.
        pub fn idle_for(&self) -> Duration {
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                return Duration::ZERO;
            }
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            self.start.elapsed().saturating_sub(last)
        }
    }

    pub struct Tracked<S> {
        inner: S,
        activity: Arc<Activity>,
    }

    impl<S> Tracked<S> {
        pub fn new(inner: S, activity: Arc<Activity>) -> Self {
            Tracked { inner, activity }
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            let r = Pin::new(&mut self.inner).poll_read(cx, buf);
            if buf.filled().len() > before {
                self.activity.touch();
            }
            r
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = &r
                && *n > 0
            {
                self.activity.touch();
            }
            r
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            if let Poll::Ready(Ok(n)) = &r
                && *n > 0
            {
                self.activity.touch();
            }
            r
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }
}
