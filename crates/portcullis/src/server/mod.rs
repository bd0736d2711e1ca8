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
use hyper_util::rt::{TokioExecutor, TokioIo};
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
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
        let (tcp, _) = tokio::select! {
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
        let (acceptor, handler, gateway, mut conn_shutdown) = (
            acceptor.clone(),
            handler.clone(),
            gateway.clone(),
            shutdown.clone(),
        );
        connections.spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = service_fn(move |req| {
                let fut = handler(gateway.clone(), req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = conn_shutdown.changed() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
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
