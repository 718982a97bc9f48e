//! Helpers shared by the integration tests.

use std::time::Duration;

use agora_p2p::bench::wait_until;
use agora_p2p::{Handle, Inbound, Multiaddr, NetConfig, generate_seed, spawn};
use libp2p::multiaddr::Protocol;

/// Starts a loopback node and waits until it listens; returns its dialable `/p2p/` address.
pub async fn start(cfg: NetConfig) -> (Handle, Inbound, Multiaddr) {
    let (h, inbound) = spawn(generate_seed(), cfg, None)
        .await
        .expect("node starts");
    assert!(
        wait_until(&h, Duration::from_secs(5), |s| !s.listen_addrs.is_empty()).await,
        "node did not listen"
    );
    let addr = h.status().await.expect("running").listen_addrs[0]
        .clone()
        .with(Protocol::P2p(h.peer_id()));
    (h, inbound, addr)
}

/// A loopback config bootstrapping from `boot`.
pub fn cfg_with_boot(boot: &Multiaddr) -> NetConfig {
    NetConfig {
        bootstrap: vec![boot.clone()],
        ..NetConfig::local_test()
    }
}
