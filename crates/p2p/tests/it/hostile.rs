//! Hostile peers: garbage on the wire, oversized frames, forged and expired offers. The node
//! must not crash, must reject, and must score down and disconnect the sender.

use std::time::Duration;

use agora_p2p::bench::{serve_synthetic, synthetic_request};
use agora_p2p::node::{NetEvent, OFFERS_TOPIC};
use agora_p2p::{Handle, Multiaddr, NetConfig, OfferHeader, PeerId};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Swarm, gossipsub, identity::Keypair, noise, tcp, yamux};
use tokio::io::AsyncWriteExt as _;

use crate::common::{start, test_offers};

#[derive(NetworkBehaviour)]
struct Raw {
    stream: libp2p_stream::Behaviour,
    gossip: gossipsub::Behaviour,
}

fn raw_peer(key: Keypair) -> Swarm<Raw> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(200))
                .build()
                .expect("gossip config");
            Ok(Raw {
                stream: libp2p_stream::Behaviour::new(),
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    cfg,
                )
                .expect("gossip"),
            })
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Drives the raw swarm in the background; returns a stream control, a dial request channel
/// and a channel of connection events (true = established, false = closed).
fn drive(
    mut swarm: Swarm<Raw>,
    target: Multiaddr,
) -> (
    libp2p_stream::Control,
    tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    tokio::sync::mpsc::UnboundedReceiver<bool>,
) {
    let control = swarm.behaviour().stream.new_control();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (dial_tx, mut dial_rx) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
    swarm.dial(target).expect("dial");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = tx.send(true);
                    }
                    SwarmEvent::ConnectionClosed { .. } => {
                        let _ = tx.send(false);
                    }
                    _ => {}
                },
                a = dial_rx.recv() => match a {
                    Some(a) => {
                        let _ = swarm.dial(a);
                    }
                    None => return,
                },
            }
        }
    });
    (control, dial_tx, rx)
}

async fn expect_conn(rx: &mut tokio::sync::mpsc::UnboundedReceiver<bool>, up: bool) {
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = rx.recv().await {
            if e == up {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        got,
        Ok(true),
        "expected connection {}",
        if up { "up" } else { "closed" }
    );
}

async fn still_serves(node: &Handle, node_addr: Multiaddr) {
    let (gw, _gin, _) = start(NetConfig::local_test()).await;
    gw.dial(node_addr).await.expect("honest dial");
    let toks = gw
        .infer(node.peer_id(), synthetic_request(10, 4))
        .await
        .expect("open")
        .collect()
        .await
        .expect("honest stream after hostile traffic");
    assert_eq!(toks.len(), 10);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_the_tcp_port_do_not_hurt_the_node() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (node, inbound, addr) = start(NetConfig::local_test()).await;
        serve_synthetic(inbound);
        let port = addr
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
                _ => None,
            })
            .expect("tcp port");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20 {
            let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let len = 1 + round * 3000;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = sock.write_all(&junk).await;
        }
        still_serves(&node, addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_frames_disconnect_then_ban_the_peer() {
    tokio::time::timeout(Duration::from_secs(40), async {
        let (node, inbound, addr) = start(NetConfig::local_test()).await;
        serve_synthetic(inbound);
        let mut events = node.events();
        let key = Keypair::generate_ed25519();
        let hostile = key.public().to_peer_id();
        let (mut control, redial, mut conns) = drive(raw_peer(key), addr.clone());
        expect_conn(&mut conns, true).await;

        // 1. A frame announcing 4 GiB.
        let mut s = control
            .open_stream(node.peer_id(), agora_p2p::wire::INFER_PROTOCOL)
            .await
            .expect("open");
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
        s.flush().await.expect("flush");
        expect_conn(&mut conns, false).await;
        let (score, _) = node.peer_score(hostile).await.expect("score");
        assert!(score < 0.0, "not scored down: {score}");
        assert!(saw_penalty(&mut events, hostile).await, "no penalty event");

        // 2. Reconnect and send a well-framed but undecodable request (shorter than a model id).
        redial.send(addr.clone()).expect("driver alive");
        expect_conn(&mut conns, true).await;
        let mut s = control
            .open_stream(node.peer_id(), agora_p2p::wire::INFER_PROTOCOL)
            .await
            .expect("open");
        s.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.expect("write");
        s.flush().await.expect("flush");
        let mut buf = [0u8; 16];
        // The node answers nothing and drops the connection.
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        expect_conn(&mut conns, false).await;
        assert!(
            agora_p2p::bench::wait_until(&node, Duration::from_secs(5), |st| {
                !st.connections.iter().any(|c| c.peer == hostile)
            })
            .await,
            "banned peer still connected"
        );
        let (score2, _) = node.peer_score(hostile).await.expect("score");
        assert!(
            score2 <= -100.0,
            "second offence should reach the ban threshold: {score2}"
        );
        assert!(node.metrics().render().contains("p2p_bans_total"));
        assert_eq!(node.status().await.expect("alive").banned, vec![hostile]);

        // 3. Banned: a new connection is closed at once and never carries a stream.
        redial.send(addr.clone()).expect("driver alive");
        let opened = tokio::time::timeout(
            Duration::from_secs(3),
            control.open_stream(node.peer_id(), agora_p2p::wire::INFER_PROTOCOL),
        )
        .await;
        assert!(!matches!(opened, Ok(Ok(_))), "banned peer opened a stream");
        let m = node.metrics().render();
        assert!(
            m.contains("p2p_offences_total{kind=\"oversized_frame\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("p2p_offences_total{kind=\"malformed_frame\"} 1"),
            "{m}"
        );
        still_serves(&node, addr).await;
    })
    .await
    .expect("test timed out");
}

async fn saw_penalty(
    events: &mut tokio::sync::broadcast::Receiver<NetEvent>,
    peer: PeerId,
) -> bool {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(NetEvent::Penalised { peer: p, .. }) if p == peer => return true,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn offer_by(key: &Keypair, expires_at_ms: u64, issued_at_ms: u64) -> OfferHeader {
    OfferHeader {
        provider: test_offers::provider_key(key),
        seq: 1,
        issued_at_ms,
        expires_at_ms,
        models: vec![[5; 32]],
    }
}

/// One invalid offer from a fresh hostile peer to a fresh node: rejected, not stored, sender
/// scored down by us and by gossipsub. (One per node because after the first, gossipsub has
/// graylisted the sender and drops its messages before validation, which is the point.)
async fn invalid_offer_is_rejected(payload: impl FnOnce(&Keypair, u64) -> Vec<u8>) {
    let (node, _inbound, addr) = start(NetConfig::local_test()).await;
    let key = Keypair::generate_ed25519();
    let hostile = key.public().to_peer_id();
    let mut swarm = raw_peer(key.clone());
    let topic = gossipsub::IdentTopic::new(OFFERS_TOPIC);
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&topic)
        .expect("subscribe");
    swarm.dial(addr).expect("dial");
    let msg = payload(&key, agora_p2p::offer::now_ms());
    let mut published = false;
    let mut rejected = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !rejected && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if !published {
                    published = swarm.behaviour_mut().gossip.publish(topic.clone(), msg.clone()).is_ok();
                }
                let m = node.metrics().render();
                rejected = m.contains("p2p_gossip_messages_total{topic=\"offers\",verdict=\"reject\"} 1");
            }
        }
    }
    assert!(published, "hostile peer could not publish");
    assert!(
        rejected,
        "invalid offer not rejected: {}",
        node.metrics().render()
    );
    assert!(
        node.offers().await.expect("alive").is_empty(),
        "an invalid offer was stored"
    );
    let (ours, gossip) = node.peer_score(hostile).await.expect("score");
    assert!(ours < -20.0, "app score {ours}");
    let gossip = gossip.expect("gossipsub scores the peer");
    assert!(gossip < -50.0, "gossipsub score {gossip}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_with_a_bad_signature_is_rejected() {
    tokio::time::timeout(
        Duration::from_secs(30),
        invalid_offer_is_rejected(|key, now| {
            let mut forged = test_offers::encode(key, &offer_by(key, now + 60_000, now));
            forged[32 + 24 + 1] ^= 1; // the model
            forged
        }),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_expired_offer_is_rejected() {
    tokio::time::timeout(
        Duration::from_secs(30),
        invalid_offer_is_rejected(|key, now| {
            test_offers::encode(key, &offer_by(key, now - 3_600_000, now - 3_700_000))
        }),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_republished_by_a_third_party_is_rejected() {
    tokio::time::timeout(
        Duration::from_secs(30),
        invalid_offer_is_rejected(|_, now| {
            let other = Keypair::generate_ed25519();
            test_offers::encode(&other, &offer_by(&other, now + 60_000, now))
        }),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_offer_bytes_are_rejected() {
    tokio::time::timeout(
        Duration::from_secs(30),
        invalid_offer_is_rejected(|_, _| b"AGOF\x01 definitely not an offer".to_vec()),
    )
    .await
    .expect("test timed out");
}
