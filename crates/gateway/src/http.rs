//! The HTTP server loop: axum's router on hyper, with the limits a public endpoint needs.
//!
//! `axum::serve` sets no timer, so hyper would wait forever for the headers of a client that
//! trickles them (slowloris) and accept any number of such connections. Here every connection
//! must finish its request head within `header_timeout`, request bodies must keep arriving
//! (`body_timeout`, in the router), and at most `max_connections` are served at once; beyond
//! that a new connection is closed at once instead of queueing memory.
//!
//! Shutdown is graceful: the listener closes (no new connection), every connection finishes the
//! response it is sending (a server-sent event stream to its `[DONE]`) and then closes, and after
//! the drain time whatever is still open is cut.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
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

/// How long `Gateway::shutdown` lets in-flight responses (streams included) finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish its in-flight response for up to `drain`, and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer) = match accepted {
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
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopping.changed() => {
                    // Finish the response in flight (a stream to its end), then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(target: "agora::gateway", error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(target: "agora::gateway", connections = connections.len(), "responses still running after the drain time; cutting them");
        connections.abort_all();
    } else if open > 0 {
        tracing::info!(target: "agora::gateway", connections = open, "in-flight responses finished");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::tests::fake::{CHAT, Fake, Script};
    use crate::api::tests::{KEY, state_with};

    /// The app over `script` on a local port; the address, the stop signal and the server task.
    async fn serving(
        script: Script,
        drain: Duration,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let fake = Arc::new(Fake::new(script));
        let app = crate::api::app(state_with(fake, Duration::from_secs(30)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            HttpLimits::default(),
            async move {
                let _ = stopped.await;
            },
            drain,
        ));
        (addr, stop, server)
    }

    async fn start_stream(addr: std::net::SocketAddr) -> reqwest::Response {
        let body = serde_json::json!({"model": CHAT, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        let res = reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_in_flight_at_shutdown_finishes_with_done() {
        let tokens = vec!["a", "b", "c", "d", "e"];
        let (addr, stop, server) = serving(
            Script::Slow(tokens, Duration::from_millis(100)),
            Duration::from_secs(10),
        )
        .await;
        let res = start_stream(addr).await;
        stop.send(()).unwrap();
        // Stopped accepting: the listener is closed while the stream still runs.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert!(!server.is_finished(), "the server waits for the stream");
        let text = res.text().await.unwrap();
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
        // role, five tokens, finish, [DONE]
        assert_eq!(data.len(), 8, "{text}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server returns once the stream is done")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_that_outlasts_the_drain_time_is_cut() {
        let (addr, stop, server) = serving(Script::Hang, Duration::from_millis(200)).await;
        let res = start_stream(addr).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the drain time bounds the shutdown")
            .unwrap();
        let text = res.text().await.unwrap_or_default();
        assert!(!text.contains("[DONE]"));
    }
}
