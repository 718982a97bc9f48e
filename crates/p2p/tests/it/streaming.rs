//! Streamed inference round trips, backpressure and cancellation between two real nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agora_p2p::bench::{serve_synthetic, synthetic_request};
use agora_p2p::{InferenceRequest, NetConfig};

use crate::common::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tokens_arrive_in_order_and_rpc_round_trips() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (provider, inbound, paddr) = start(NetConfig::local_test()).await;
        serve_synthetic(inbound);
        let (gw, _gin, _) = start(NetConfig::local_test()).await;
        gw.dial(paddr).await.expect("dial");
        let toks = gw
            .infer(provider.peer_id(), synthetic_request(1000, 8))
            .await
            .expect("open")
            .collect()
            .await
            .expect("stream");
        assert_eq!(toks.len(), 1000);
        for (i, t) in toks.iter().enumerate() {
            assert_eq!(t[..4], (i as u32).to_be_bytes(), "token {i} out of order");
        }
        let echo = gw
            .rpc(provider.peer_id(), b"ping".to_vec())
            .await
            .expect("rpc");
        assert_eq!(echo, b"ping");
        // Requests above the caps are refused locally, before touching the network.
        let big = vec![0u8; NetConfig::local_test().limits.rpc_max_request_bytes + 1];
        assert!(gw.rpc(provider.peer_id(), big).await.is_err());
        let m = gw.metrics().render();
        assert!(
            m.contains("p2p_infer_chunks_total{direction=\"in\"} 1000"),
            "{m}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_blocks_the_provider_and_a_vanished_reader_cancels_it() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (provider, mut inbound, paddr) = start(NetConfig::local_test()).await;
        let produced = Arc::new(AtomicU32::new(0));
        let cancelled = Arc::new(AtomicU32::new(0));
        let (p2, c2) = (produced.clone(), cancelled.clone());
        tokio::spawn(async move {
            while let Some(call) = inbound.inference.recv().await {
                let (p3, c3) = (p2.clone(), c2.clone());
                tokio::spawn(async move {
                    for _ in 0..16_384u32 {
                        if call.tokens.send(vec![0u8; 4096]).await.is_err() {
                            c3.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        p3.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = call.tokens.finish().await;
                });
            }
        });
        let (gw, _gin, _) = start(NetConfig::local_test()).await;
        gw.dial(paddr).await.expect("dial");
        let req = InferenceRequest {
            model: [1; 32],
            payload: vec![],
        };
        let mut s = gw
            .infer(provider.peer_id(), req.clone())
            .await
            .expect("open");
        // Read one chunk, then stall: the provider must stop well short of 64 MiB.
        assert!(s.next().await.expect("first").is_ok());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stalled_at = produced.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            produced.load(Ordering::SeqCst),
            stalled_at,
            "provider kept producing while blocked"
        );
        assert!(
            stalled_at < 16_384 / 2,
            "no backpressure: {stalled_at} chunks produced"
        );
        let mut n = 1u32;
        while let Some(t) = s.next().await {
            t.expect("chunk");
            n += 1;
        }
        assert_eq!(n, 16_384);
        // Cancellation: drop the stream after one chunk; the provider's send must fail.
        produced.store(0, Ordering::SeqCst);
        let mut s = gw.infer(provider.peer_id(), req).await.expect("open");
        assert!(s.next().await.expect("first").is_ok());
        drop(s);
        let mut ok = false;
        for _ in 0..100 {
            if cancelled.load(Ordering::SeqCst) == 1 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "provider was not told the client went away");
        assert!(produced.load(Ordering::SeqCst) < 16_384);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_benchmark_streams_through_the_relay_then_directly() {
    use agora_p2p::Path;
    use agora_p2p::bench::{BenchConfig, run};
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        run(BenchConfig {
            rpc_rounds: 20,
            rpc_bytes: 64,
            tokens: 500,
            token_bytes: 16,
        }),
    )
    .await
    .expect("benchmark timed out")
    .expect("benchmark runs");
    assert_eq!(r.relayed.path, Path::Relayed);
    assert_eq!(r.direct.path, Path::Direct);
    assert_eq!((r.relayed.tokens, r.direct.tokens), (500, 500));
    assert!(r.rpc_p50_us > 0.0 && r.rpc_p99_us >= r.rpc_p50_us);
    assert!(r.direct.tokens_per_sec > 0.0 && r.relayed.tokens_per_sec > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_requests_to_one_provider_all_complete() {
    // A gateway with many clients opens many streams to one provider at once; libp2p-stream
    // drops inbound streams that arrive faster than the provider accepts them, and `infer`
    // must resend those rather than fail the request.
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut cfg = NetConfig::local_test();
        cfg.limits.requests_per_sec = 1e6;
        cfg.limits.request_burst = 1e6;
        let (provider, inbound, paddr) = start(cfg).await;
        serve_synthetic(inbound);
        let (gw, _gin, _) = start(NetConfig::local_test()).await;
        gw.dial(paddr).await.expect("dial");
        let mut tasks = Vec::new();
        for round in 0..4u32 {
            for i in 0..64u32 {
                let gw = gw.clone();
                let peer = provider.peer_id();
                let n = 1 + (round * 64 + i) % 7;
                tasks.push(tokio::spawn(async move {
                    let toks = gw
                        .infer(peer, synthetic_request(n, 8))
                        .await?
                        .collect()
                        .await?;
                    Ok::<_, agora_p2p::InferError>((n, toks.len() as u32))
                }));
            }
        }
        for t in tasks {
            let (want, got) = t.await.expect("task").expect("request failed");
            assert_eq!(got, want);
        }
    })
    .await
    .expect("test timed out");
}
