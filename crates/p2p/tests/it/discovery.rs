//! Bootstrapping from a `PeerSource` (what the node implements over the on-chain provider
//! registry), over QUIC.

use std::sync::Arc;
use std::time::Duration;

use agora_p2p::bench::{serve_synthetic, synthetic_request, wait_until};
use agora_p2p::{NetConfig, StaticPeers, generate_seed, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bootstraps_from_the_registry_source_over_quic_and_streams() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let quic = NetConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr")],
            ..NetConfig::local_test()
        };
        let (provider, inbound) = spawn(generate_seed(), quic.clone(), None)
            .await
            .expect("spawn");
        serve_synthetic(inbound);
        assert!(
            wait_until(&provider, Duration::from_secs(5), |s| !s
                .listen_addrs
                .is_empty())
            .await
        );
        let paddr = provider.status().await.expect("alive").listen_addrs[0].clone();
        assert!(paddr.to_string().contains("quic-v1"), "{paddr}");
        provider.provide([9; 32]).await.ok();

        // No bootstrap list: the only source of peers is the registry.
        let registry = StaticPeers(vec![(provider.peer_id(), vec![paddr])]);
        let (gw, _gin) = spawn(generate_seed(), quic, Some(Arc::new(registry)))
            .await
            .expect("spawn");
        assert!(
            wait_until(&gw, Duration::from_secs(10), |s| s
                .connections
                .iter()
                .any(|c| c.peer == provider.peer_id()
                    && c.remote_addr.to_string().contains("quic-v1")))
            .await,
            "gateway did not reach the registry's provider over QUIC"
        );
        let toks = gw
            .infer(provider.peer_id(), synthetic_request(100, 8))
            .await
            .expect("open")
            .collect()
            .await
            .expect("stream");
        assert_eq!(toks.len(), 100);
        // The provider also announced the model in the DHT; the gateway finds it there.
        let mut found = false;
        for _ in 0..40 {
            if gw
                .find_providers([9; 32])
                .await
                .expect("alive")
                .iter()
                .any(|e| e.peer == provider.peer_id() && e.in_dht)
            {
                found = true;
                break;
            }
            provider.provide([9; 32]).await.ok();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "provider record not found through the DHT");
    })
    .await
    .expect("test timed out");
}

/// Found by the chaos suite (`short.toml` seed 1): after the gateway, every provider's
/// bootstrap peer, was killed and restarted, the providers dialled it again only at the next
/// minute's rediscovery, so the gateway had no offers (404 `model_not_found`) for up to a
/// minute. A lost bootstrap peer is now dialled again after 1 s, then 2, 4, 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seed_1_a_restarted_bootstrap_peer_is_dialled_again_within_seconds() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let boot_cfg = NetConfig {
            listen: vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")],
            ..NetConfig::local_test()
        };
        let seed = generate_seed();
        let (boot, _bin) = spawn(seed, boot_cfg.clone(), None).await.expect("spawn");
        let addr: agora_p2p::Multiaddr =
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", boot.peer_id())
                .parse()
                .expect("addr");
        let node_cfg = NetConfig {
            bootstrap: vec![addr],
            ..NetConfig::local_test()
        };
        assert_eq!(node_cfg.rediscover_secs, 60, "the wait this test beats");
        let (node, _nin) = spawn(generate_seed(), node_cfg, None).await.expect("spawn");
        let has_boot =
            |s: &agora_p2p::NetStatus| s.connections.iter().any(|c| c.peer == boot.peer_id());
        assert!(
            wait_until(&node, Duration::from_secs(10), has_boot).await,
            "first connection"
        );
        boot.shutdown().await;
        drop(boot);
        assert!(
            wait_until(&node, Duration::from_secs(10), |s| s.connections.is_empty()).await,
            "the node saw its bootstrap peer go"
        );
        // Down for 3 s, then back with the same identity and address.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (boot, _bin) = spawn(seed, boot_cfg, None).await.expect("respawn");
        let has_boot =
            |s: &agora_p2p::NetStatus| s.connections.iter().any(|c| c.peer == boot.peer_id());
        assert!(
            wait_until(&node, Duration::from_secs(15), has_boot).await,
            "the node did not dial its restarted bootstrap peer within 15 s"
        );
    })
    .await
    .expect("within 60 s");
}
