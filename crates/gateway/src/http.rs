//! The HTTP server loop: axum's router on hyper, with the limits a public endpoint needs.
//!
//! `axum::serve` sets no timer, so hyper would wait forever for the headers of a client that
//! trickles them (slowloris) and accept any number of such connections. Here every connection
//! must finish its request head within `header_timeout`, request bodies must keep arriving
//! (`body_timeout`, in the router), and at most `max_connections` are served at once; beyond
//! that a new connection is closed at once instead of queueing memory.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits on client connections.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Longest time to receive a request's head (request line and headers), also between
    /// requests on a kept-alive connection.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(target: "agora::gateway", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(target: "agora::gateway", "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|r: hyper::Request<Incoming>| r.map(axum::body::Body::new)),
        );
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(target: "agora::gateway", error = %e, "connection ended with an error");
            }
        });
    }
}
