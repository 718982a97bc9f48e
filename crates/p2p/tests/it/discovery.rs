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
