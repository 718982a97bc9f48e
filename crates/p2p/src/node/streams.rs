//! Inference streams on `/agora/infer/3`: the requester's side (open, send the request frame,
//! retry a stream lost before its first frame, forward tokens) and the provider's side (accept
//! within the peer's rate and the inbound-stream cap, read one bounded request, write the
//! tokens back with one flush per burst). The actor never touches these streams.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::{Semaphore, mpsc};
use tracing::warn;

use super::error::InferError;
use super::handle::Command;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::scoring::{Offence, PeerBook};
use crate::wire::{Chunk, FrameError, INFER_PROTOCOL, InferenceRequest, read_frame, write_frame};

/// Tries of one inference request on fresh streams before the first frame (see `infer`).
const INFER_ATTEMPTS: u32 = 4;

/// A streamed inference request arriving at this node.
pub struct InferenceCall {
    /// Who asked.
    pub peer: PeerId,
    /// What they asked for.
    pub request: InferenceRequest,
    /// Where the tokens go.
    pub tokens: TokenSink,
}

/// The client went away (or the stream broke): stop generating.
#[derive(Debug, thiserror::Error)]
#[error("the requester closed the stream")]
pub struct StreamClosed;

/// The provider's end of a streamed response. Bounded: `send` waits when the network (and so
/// the client) is slower than generation.
pub struct TokenSink {
    tx: mpsc::Sender<Chunk>,
}

impl TokenSink {
    /// Sends some tokens, waiting for room.
    pub async fn send(&self, tokens: Vec<u8>) -> Result<(), StreamClosed> {
        self.tx
            .send(Chunk::Token(tokens))
            .await
            .map_err(|_| StreamClosed)
    }

    /// Resolves once the requester is gone (its stream reset or ended), whether or not
    /// anything is being sent: a job waiting on something else can race this to stop early.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Ends the response successfully.
    pub async fn finish(self) -> Result<(), StreamClosed> {
        self.tx.send(Chunk::End).await.map_err(|_| StreamClosed)
    }

    /// Ends the response with an error message.
    pub async fn fail(self, message: impl Into<String>) -> Result<(), StreamClosed> {
        self.tx
            .send(Chunk::Error(message.into()))
            .await
            .map_err(|_| StreamClosed)
    }
}

/// The requester's end of a streamed response.
pub struct TokenStream {
    rx: mpsc::Receiver<Result<Vec<u8>, InferError>>,
}

impl TokenStream {
    /// The next tokens; `None` once the provider ended the response.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, InferError>> {
        self.rx.recv().await
    }

    /// Reads the whole response.
    pub async fn collect(mut self) -> Result<Vec<Vec<u8>>, InferError> {
        let mut out = Vec::new();
        while let Some(t) = self.next().await {
            out.push(t?);
        }
        Ok(out)
    }
}

/// The requester's side of [`Handle::infer`](super::Handle::infer).
pub(super) async fn infer(
    control: &libp2p_stream::Control,
    cmd: &mpsc::Sender<Command>,
    metrics: &Metrics,
    limits: &Limits,
    peer: PeerId,
    request: InferenceRequest,
) -> Result<TokenStream, InferError> {
    let body = request.encode();
    if body.len() > limits.infer_max_request_bytes {
        return Err(InferError::TooLarge {
            len: body.len(),
            max: limits.infer_max_request_bytes,
        });
    }
    let max_chunk = limits.infer_max_chunk_bytes;
    // libp2p-stream hands inbound streams to the provider through a one-slot queue and
    // drops (resets) a stream that arrives while the slot is taken, so a burst of requests
    // to one provider loses some before the provider ever read them. Such a loss shows as a
    // failed write or an end of stream before the first frame; nothing was served, so the
    // request is sent again on a new stream, a bounded number of times. A stream that cannot
    // be opened at all means the peer is unreachable: that is returned at once.
    let mut attempt = 0u32;
    let (mut stream, first) = loop {
        let mut stream = open_infer_stream(control, peer).await?;
        let sent = async {
            write_frame(&mut stream, &body).await?;
            stream.flush().await
        }
        .await;
        let err = match sent {
            Ok(()) => match read_frame(&mut stream, max_chunk).await {
                Ok(bytes) => break (stream, Ok(bytes)),
                Err(e) if e.is_protocol_violation() => break (stream, Err(e)),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        let err = InferError::Stream { peer, reason: err };
        attempt += 1;
        if attempt >= INFER_ATTEMPTS {
            return Err(err);
        }
        metrics
            .infer_streams
            .with_label_values(&["out", "retried"])
            .inc();
        tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
    };
    let (tx, rx) = mpsc::channel(32);
    let cmd = cmd.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let mut first = Some(first);
        loop {
            let next = async {
                match first.take() {
                    Some(r) => r,
                    None => read_frame(&mut stream, max_chunk).await,
                }
            };
            let item = tokio::select! {
                r = next => r.and_then(|bytes| Chunk::decode(&bytes)),
                // The caller dropped the TokenStream: dropping an unclosed yamux stream
                // resets it, which fails the provider's next write (its cancellation).
                () = tx.closed() => {
                    metrics.infer_streams.with_label_values(&["out", "cancelled"]).inc();
                    return;
                }
            };
            match item {
                Ok(Chunk::Token(t)) => {
                    metrics.infer_chunks.with_label_values(&["in"]).inc();
                    if tx.send(Ok(t)).await.is_err() {
                        // The caller dropped the stream: return, dropping (resetting) ours.
                        metrics
                            .infer_streams
                            .with_label_values(&["out", "cancelled"])
                            .inc();
                        return;
                    }
                }
                Ok(Chunk::End) => {
                    metrics
                        .infer_streams
                        .with_label_values(&["out", "ok"])
                        .inc();
                    return;
                }
                Ok(Chunk::Error(message)) => {
                    metrics
                        .infer_streams
                        .with_label_values(&["out", "remote_error"])
                        .inc();
                    let _ = tx.send(Err(InferError::Remote { peer, message })).await;
                    return;
                }
                Err(e) => {
                    if e.is_protocol_violation() {
                        let off = offence_of(&e);
                        let _ = cmd.send(Command::Report(peer, off)).await;
                    }
                    metrics
                        .infer_streams
                        .with_label_values(&["out", "broken"])
                        .inc();
                    let _ = tx
                        .send(Err(InferError::Stream {
                            peer,
                            reason: e.to_string(),
                        }))
                        .await;
                    return;
                }
            }
        }
    });
    Ok(TokenStream { rx })
}

/// Opens an inference stream to `peer`.
async fn open_infer_stream(
    control: &libp2p_stream::Control,
    peer: PeerId,
) -> Result<libp2p::Stream, InferError> {
    control
        .clone()
        .open_stream(peer, INFER_PROTOCOL)
        .await
        .map_err(|e| InferError::Open {
            peer,
            reason: e.to_string(),
        })
}

fn offence_of(e: &FrameError) -> Offence {
    match e {
        FrameError::Oversized { .. } => Offence::OversizedFrame,
        _ => Offence::MalformedFrame,
    }
}

/// The provider's side: serves every inbound inference stream until the node stops.
pub(super) async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    infer_tx: mpsc::Sender<InferenceCall>,
    cmd: mpsc::Sender<Command>,
    book: Arc<Mutex<PeerBook>>,
    metrics: Metrics,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_inbound_streams));
    while let Some((peer, mut stream)) = incoming.next().await {
        let allowed = {
            let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            !b.is_banned(&peer, now) && b.allow_request(peer, now)
        };
        if !allowed {
            metrics
                .infer_streams
                .with_label_values(&["in", "rate_limited"])
                .inc();
            let _ = cmd.try_send(Command::Report(peer, Offence::RateLimited));
            tokio::spawn(async move {
                let _ =
                    write_frame(&mut stream, &Chunk::Error("rate limited".into()).encode()).await;
                let _ = stream.close().await;
            });
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .infer_streams
                .with_label_values(&["in", "busy"])
                .inc();
            tokio::spawn(async move {
                let _ = write_frame(&mut stream, &Chunk::Error("busy".into()).encode()).await;
                let _ = stream.close().await;
            });
            continue;
        };
        let infer_tx = infer_tx.clone();
        let cmd = cmd.clone();
        let metrics = metrics.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_stream(peer, stream, infer_tx, cmd, metrics, limits).await;
        });
    }
}

async fn serve_stream(
    peer: PeerId,
    mut stream: libp2p::Stream,
    infer_tx: mpsc::Sender<InferenceCall>,
    cmd: mpsc::Sender<Command>,
    metrics: Metrics,
    limits: Limits,
) {
    let read = tokio::time::timeout(
        Duration::from_millis(limits.request_read_timeout_ms),
        read_frame(&mut stream, limits.infer_max_request_bytes),
    )
    .await;
    let request = match read {
        Err(_) => {
            let _ = cmd.send(Command::Report(peer, Offence::Timeout)).await;
            metrics
                .infer_streams
                .with_label_values(&["in", "timeout"])
                .inc();
            return;
        }
        Ok(Err(e)) => {
            if e.is_protocol_violation() {
                warn!(target: "agora_p2p::infer", %peer, error = %e, "garbage request frame");
                let _ = cmd.send(Command::Report(peer, offence_of(&e))).await;
                metrics
                    .infer_streams
                    .with_label_values(&["in", "malformed"])
                    .inc();
            }
            return;
        }
        Ok(Ok(bytes)) => match InferenceRequest::decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                warn!(target: "agora_p2p::infer", %peer, error = %e, "undecodable request");
                let _ = cmd
                    .send(Command::Report(peer, Offence::MalformedFrame))
                    .await;
                metrics
                    .infer_streams
                    .with_label_values(&["in", "malformed"])
                    .inc();
                return;
            }
        },
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let call = InferenceCall {
        peer,
        request,
        tokens: TokenSink { tx },
    };
    if infer_tx.try_send(call).is_err() {
        metrics
            .infer_streams
            .with_label_values(&["in", "busy"])
            .inc();
        let _ = write_frame(&mut stream, &Chunk::Error("not serving".into()).encode()).await;
        let _ = stream.close().await;
        return;
    }
    let mut outcome = "dropped";
    'outer: loop {
        // The requester sends nothing after its request, so anything the stream yields while
        // the provider is between chunks (a reset, an end, stray bytes) means it is gone. Seen
        // here, not only at the next write, so a job held back (waiting for a voucher, say)
        // learns at once that nobody is listening.
        let mut probe = [0u8; 1];
        let first = tokio::select! {
            next = rx.recv() => next,
            _ = stream.read(&mut probe) => {
                outcome = "client_gone";
                break;
            }
        };
        let Some(first) = first else { break };
        // Write every chunk already queued, then flush once: one syscall per burst, not per token.
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            let last = !matches!(chunk, Chunk::Token(_));
            if matches!(chunk, Chunk::Token(_)) {
                metrics.infer_chunks.with_label_values(&["out"]).inc();
            }
            if write_frame(&mut stream, &chunk.encode()).await.is_err() {
                outcome = "client_gone";
                break 'outer;
            }
            if last {
                outcome = if matches!(chunk, Chunk::End) {
                    "ok"
                } else {
                    "error"
                };
                let _ = stream.close().await;
                break 'outer;
            }
            next = rx.try_recv().ok();
        }
        if stream.flush().await.is_err() {
            outcome = "client_gone";
            break;
        }
    }
    if outcome == "dropped" {
        let _ = write_frame(
            &mut stream,
            &Chunk::Error("provider dropped the request".into()).encode(),
        )
        .await;
        let _ = stream.close().await;
    }
    metrics
        .infer_streams
        .with_label_values(&["in", outcome])
        .inc();
}
