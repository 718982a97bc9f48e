//! Twenty nodes in one process over loopback TCP: DHT discovery of every provider by every
//! gateway within a bound, and expiry of an offline provider's offer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use agora_p2p::node::NetEvent;
use agora_p2p::{Handle, NetConfig, PeerId, generate_seed};

use crate::common::{cfg_with_boot, start, start_seeded, test_offers};

const MODEL: [u8; 32] = [0xab; 32];
const PROVIDERS: usize = 6;
const GATEWAYS: usize = 13; // + 1 bootstrap node = 20
const FIND_BOUND: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_every_gateway_finds_every_provider_and_dead_offers_expire() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (boot, _bin, boot_addr) = start(NetConfig::local_test()).await;
        let mut providers: Vec<Handle> = Vec::new();
        let mut seeds = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..PROVIDERS {
            let seed = generate_seed();
            let (h, inbound, _) = start_seeded(seed, cfg_with_boot(&boot_addr)).await;
            keep.push(inbound);
            providers.push(h);
            seeds.push(seed);
        }
        let mut gateways: Vec<Handle> = Vec::new();
        for _ in 0..GATEWAYS {
            let (h, inbound, _) = start(cfg_with_boot(&boot_addr)).await;
            keep.push(inbound);
            gateways.push(h);
        }
        assert_eq!(1 + providers.len() + gateways.len(), 20);

        // Providers announce the model in the DHT (retrying until the announcement reaches
        // peers) and gossip an offer; the last one with a short TTL, to go offline later.
        let t0 = Instant::now();
        for (i, (p, seed)) in providers.iter().zip(&seeds).enumerate() {
            let ttl = if i == PROVIDERS - 1 { Duration::from_secs(2) } else { Duration::from_secs(60) };
            p.set_offer(Some(test_offers::terms(*seed, vec![MODEL], ttl))).await.expect("offer");
        }
        let want: HashSet<PeerId> = providers.iter().map(|p| p.peer_id()).collect();
        for p in &providers {
            for attempt in 0.. {
                match p.provide(MODEL).await {
                    Ok(()) => break,
                    Err(e) if attempt < 20 => {
                        tracing_note(&format!("provide retry: {e}"));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("provide failed: {e}"),
                }
            }
        }

        // Every gateway finds every provider through the DHT alone.
        let mut found_all = vec![false; gateways.len()];
        while found_all.iter().any(|f| !f) && t0.elapsed() < FIND_BOUND {
            for (i, g) in gateways.iter().enumerate() {
                if found_all[i] {
                    continue;
                }
                let got: HashSet<PeerId> = g
                    .find_providers(MODEL)
                    .await
                    .expect("alive")
                    .into_iter()
                    .filter(|e| e.in_dht)
                    .map(|e| e.peer)
                    .collect();
                found_all[i] = want.is_subset(&got);
            }
            if found_all.iter().any(|f| !f) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let took = t0.elapsed();
        assert!(
            found_all.iter().all(|f| *f),
            "after {took:?} gateways missing providers: {found_all:?}"
        );
        eprintln!("20 nodes: every gateway found all {PROVIDERS} providers via the DHT in {took:?}");

        // Every gateway also holds every provider's signed offer from gossip.
        let deadline = Instant::now() + Duration::from_secs(15);
        let leaver = providers[PROVIDERS - 1].peer_id();
        let mut all_offers = false;
        while !all_offers && Instant::now() < deadline {
            all_offers = true;
            for g in &gateways {
                let have: HashSet<PeerId> = g.offers().await.expect("alive").into_iter().map(|(p, _)| p).collect();
                all_offers &= want.is_subset(&have);
            }
            if !all_offers {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        assert!(all_offers, "offers did not reach every gateway");

        // The short-TTL provider goes offline: its offer disappears everywhere after expiry
        // (2 s) and not much later; the others stay.
        let mut expired_events = gateways[0].events();
        providers[PROVIDERS - 1].shutdown().await;
        let off_at = Instant::now();
        let deadline = off_at + Duration::from_secs(8);
        let mut gone = false;
        while !gone && Instant::now() < deadline {
            gone = true;
            for g in &gateways {
                gone &= !g.offers().await.expect("alive").iter().any(|(p, _)| *p == leaver);
            }
            if !gone {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let gone_after = off_at.elapsed();
        assert!(gone, "offline provider's offer still held after {gone_after:?}");
        eprintln!("offline provider's offer gone from all gateways {gone_after:?} after shutdown (TTL 2 s)");
        // `offers()` hides expired offers at once; the table is pruned (and the event sent) on
        // the next 100 ms housekeeping tick.
        let saw = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match expired_events.recv().await {
                    Ok(NetEvent::OfferExpired { provider }) if provider == leaver => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(saw, "no OfferExpired event for the leaver");
        for g in &gateways {
            let have: HashSet<PeerId> = g.offers().await.expect("alive").into_iter().map(|(p, _)| p).collect();
            assert_eq!(have.len(), PROVIDERS - 1, "live providers' offers must stay");
        }
        for h in providers.iter().chain(gateways.iter()).chain(std::iter::once(&boot)) {
            h.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}

fn tracing_note(msg: &str) {
    eprintln!("{msg}");
}
