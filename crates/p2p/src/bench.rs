//! Loopback benchmark of the overlay: small-message round trips and streamed responses, direct
//! and through a relay. Run with `agora net bench`; figures go to `docs/benchmarks.md`.
//!
//! Three nodes on 127.0.0.1: a relay (relay v2 server with our raised limits), a provider that
//! holds a reservation on it and answers instantly (zero-cost "inference": the figures are the
//! overlay's own cost), and a gateway with hole punching off, so the relayed path stays relayed
//! until the gateway dials the provider directly.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{NetConfig, RelayServerConfig};
use crate::identity::generate_seed;
use crate::node::{self, Handle, Inbound, Path};
use crate::wire::InferenceRequest;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// RPC round trips.
    pub rpc_rounds: usize,
    /// Bytes per RPC request and response.
    pub rpc_bytes: usize,
    /// Tokens per streamed response.
    pub tokens: u32,
    /// Bytes per token chunk (a token as text is ~4 bytes; with ids and logprob proof
    /// material ~16-32).
    pub token_bytes: u32,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            rpc_rounds: 2000,
            rpc_bytes: 64,
            tokens: 20_000,
            token_bytes: 16,
        }
    }
}

/// Figures of one streamed response.
#[derive(Debug, Clone, Serialize)]
pub struct StreamFigures {
    /// Path the stream used.
    pub path: Path,
    /// Tokens received.
    pub tokens: u32,
    /// Time from request to first token (ms).
    pub first_token_ms: f64,
    /// Tokens per second, whole response.
    pub tokens_per_sec: f64,
    /// Wall time per token (µs): the overlay's per-token overhead.
    pub us_per_token: f64,
}

/// The benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// RPC round trips measured.
    pub rpc_rounds: usize,
    /// Bytes per RPC message.
    pub rpc_bytes: usize,
    /// Median RPC round trip (µs).
    pub rpc_p50_us: f64,
    /// 99th percentile RPC round trip (µs).
    pub rpc_p99_us: f64,
    /// Median round trip of a one-token stream (open stream, request, one chunk, end) (µs).
    pub stream_rtt_p50_us: f64,
    /// 99th percentile of the same (µs).
    pub stream_rtt_p99_us: f64,
    /// Streaming directly.
    pub direct: StreamFigures,
    /// Streaming through the relay.
    pub relayed: StreamFigures,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A node failed to start.
    #[error("node: {0}")]
    Spawn(#[from] node::SpawnError),
    /// A step did not complete.
    #[error("{0}")]
    Step(String),
}

fn step<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> BenchError {
    move |e| BenchError::Step(format!("{what}: {e}"))
}

/// Serves every inference call with `n` tokens of `size` bytes, `n` and `size` taken from the
/// payload (`u32 n | u32 size`), and echoes every RPC.
pub fn serve_synthetic(mut inbound: Inbound) {
    tokio::spawn(async move {
        while let Some(call) = inbound.inference.recv().await {
            tokio::spawn(async move {
                let p = &call.request.payload;
                let (n, size) = if p.len() >= 8 {
                    (
                        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                        u32::from_be_bytes([p[4], p[5], p[6], p[7]]).min(4096),
                    )
                } else {
                    (1, 4)
                };
                for i in 0..n {
                    let mut tok = vec![0u8; size as usize];
                    if size >= 4 {
                        tok[..4].copy_from_slice(&i.to_be_bytes());
                    }
                    if call.tokens.send(tok).await.is_err() {
                        return;
                    }
                }
                let _ = call.tokens.finish().await;
            });
        }
    });
    tokio::spawn(async move {
        while let Some(call) = inbound.rpc.recv().await {
            let _ = call.reply.send(call.request);
        }
    });
}

/// A synthetic request for [`serve_synthetic`].
pub fn synthetic_request(tokens: u32, token_bytes: u32) -> InferenceRequest {
    let mut payload = tokens.to_be_bytes().to_vec();
    payload.extend_from_slice(&token_bytes.to_be_bytes());
    InferenceRequest {
        model: [0u8; 32],
        payload,
    }
}

/// Polls `status` until `pred` holds or `timeout` passes.
pub async fn wait_until(
    h: &Handle,
    timeout: Duration,
    mut pred: impl FnMut(&node::NetStatus) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(s) = h.status().await
            && pred(&s)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn stream_once(
    gw: &Handle,
    provider: crate::PeerId,
    cfg: &BenchConfig,
) -> Result<StreamFigures, BenchError> {
    let path = gw
        .status()
        .await
        .map_err(step("status"))?
        .path_to(&provider);
    let t0 = Instant::now();
    let mut s = gw
        .infer(provider, synthetic_request(cfg.tokens, cfg.token_bytes))
        .await
        .map_err(step("infer"))?;
    let mut first = None;
    let mut n = 0u32;
    while let Some(t) = s.next().await {
        t.map_err(step("token"))?;
        if first.is_none() {
            first = Some(t0.elapsed());
        }
        n += 1;
    }
    let total = t0.elapsed().as_secs_f64();
    if n != cfg.tokens {
        return Err(BenchError::Step(format!(
            "got {n} of {} tokens",
            cfg.tokens
        )));
    }
    Ok(StreamFigures {
        path,
        tokens: n,
        first_token_ms: first.unwrap_or_default().as_secs_f64() * 1e3,
        tokens_per_sec: n as f64 / total,
        us_per_token: total * 1e6 / n as f64,
    })
}

/// Runs the benchmark on loopback.
pub async fn run(cfg: BenchConfig) -> Result<BenchReport, BenchError> {
    let relay_cfg = NetConfig {
        relay_server: Some(RelayServerConfig::default()),
        ..NetConfig::local_test()
    };
    let (relay, _relay_in) = node::spawn(generate_seed(), relay_cfg, None).await?;
    if !wait_until(&relay, Duration::from_secs(5), |s| {
        !s.listen_addrs.is_empty()
    })
    .await
    {
        return Err(BenchError::Step("relay did not listen".into()));
    }
    let relay_addr = relay.status().await.map_err(step("status"))?.listen_addrs[0]
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(relay.peer_id()));

    // The provider is not public: it reserves a slot on the relay it bootstraps from.
    // The rate limit is lifted: the benchmark is one gateway hammering one provider.
    let mut prov_cfg = NetConfig {
        public: false,
        bootstrap: vec![relay_addr.clone()],
        ..NetConfig::local_test()
    };
    prov_cfg.limits.requests_per_sec = 1e9;
    prov_cfg.limits.request_burst = 1e9;
    let (provider, prov_in) = node::spawn(generate_seed(), prov_cfg, None).await?;
    serve_synthetic(prov_in);
    if !wait_until(&provider, Duration::from_secs(10), |s| {
        !s.relays.is_empty()
            && s.listen_addrs.iter().any(|a| {
                a.iter()
                    .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
            })
    })
    .await
    {
        return Err(BenchError::Step("provider got no relay reservation".into()));
    }
    let prov_direct = provider
        .status()
        .await
        .map_err(step("status"))?
        .listen_addrs
        .into_iter()
        .find(|a| {
            !a.iter()
                .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
        })
        .ok_or_else(|| BenchError::Step("provider has no direct address".into()))?;

    let gw_cfg = NetConfig {
        hole_punching: false,
        ..NetConfig::local_test()
    };
    let (gw, _gw_in) = node::spawn(generate_seed(), gw_cfg, None).await?;
    let pid = provider.peer_id();
    let circuit = relay_addr
        .with(libp2p::multiaddr::Protocol::P2pCircuit)
        .with(libp2p::multiaddr::Protocol::P2p(pid));
    gw.dial(circuit).await.map_err(step("relayed dial"))?;
    let relayed = stream_once(&gw, pid, &cfg).await?;

    gw.dial(prov_direct.with(libp2p::multiaddr::Protocol::P2p(pid)))
        .await
        .map_err(step("direct dial"))?;
    if !wait_until(&gw, Duration::from_secs(5), |s| {
        s.path_to(&pid) == Path::Direct
    })
    .await
    {
        return Err(BenchError::Step(
            "relayed connection was not replaced".into(),
        ));
    }
    let direct = stream_once(&gw, pid, &cfg).await?;

    let msg = vec![7u8; cfg.rpc_bytes];
    let mut rtts = Vec::with_capacity(cfg.rpc_rounds);
    for _ in 0..cfg.rpc_rounds.min(50) {
        gw.rpc(pid, msg.clone()).await.map_err(step("rpc warmup"))?;
    }
    for _ in 0..cfg.rpc_rounds {
        let t = Instant::now();
        let back = gw.rpc(pid, msg.clone()).await.map_err(step("rpc"))?;
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
        if back != msg {
            return Err(BenchError::Step("rpc echo mismatch".into()));
        }
    }
    rtts.sort_by(f64::total_cmp);
    let mut srtts = Vec::new();
    for _ in 0..cfg.rpc_rounds.min(1000) {
        let t = Instant::now();
        let toks = gw
            .infer(pid, synthetic_request(1, cfg.token_bytes))
            .await
            .map_err(step("infer"))?
            .collect()
            .await
            .map_err(step("stream"))?;
        srtts.push(t.elapsed().as_secs_f64() * 1e6);
        if toks.len() != 1 {
            return Err(BenchError::Step(
                "one-token stream returned wrong count".into(),
            ));
        }
    }
    srtts.sort_by(f64::total_cmp);
    for h in [&gw, &provider, &relay] {
        h.shutdown().await;
    }
    Ok(BenchReport {
        rpc_rounds: cfg.rpc_rounds,
        rpc_bytes: cfg.rpc_bytes,
        rpc_p50_us: percentile(&rtts, 0.5),
        rpc_p99_us: percentile(&rtts, 0.99),
        stream_rtt_p50_us: percentile(&srtts, 0.5),
        stream_rtt_p99_us: percentile(&srtts, 0.99),
        direct,
        relayed,
    })
}
