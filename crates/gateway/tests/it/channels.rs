//! The payer's channels off the request path: one pending open per provider, never a wait
//! behind another provider's open, and an open journaled before it is sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_types::{Amount, TxBody};

use crate::net::{TestNet, price, spare_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_waits_behind_another_providers_channel_open() {
    let net = TestNet::start(
        &[price(1, 1), price(1, 1)],
        Duration::ZERO,
        Default::default(),
    )
    .await;
    let payer = net.gateway.payer.clone();
    let providers = net.gateway.market.providers();
    let (a, b) = (providers[0].clone(), providers[1].clone());
    // A's channel is open; B's is not.
    payer.channel_to(a.address, a.peer).await.unwrap();
    let opening = {
        let payer = payer.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            payer.channel_to(b.address, b.peer).await.unwrap();
            t.elapsed()
        })
    };
    // Let B's open get under way (it waits for a block to be final).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    payer.channel_to(a.address, a.peer).await.unwrap();
    let a_wait = t.elapsed();
    let b_open = opening.await.unwrap();
    eprintln!("A's channel in {a_wait:?} while B's open took {b_open:?}");
    assert!(
        a_wait * 4 < b_open,
        "a request to A waited {a_wait:?} behind B's open ({b_open:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_journaled_but_never_seen_final_is_closed_once_it_lands() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, Default::default()).await;
    let provider = net.gateway.market.providers()[0].clone();
    let key = spare_keys()[1].clone();
    let sender = Arc::new(
        agora_provider::TxSender::new(key.clone(), net.chain.clone())
            .await
            .unwrap(),
    );
    // A run journals its open, sends it, and dies (or gives up waiting) before seeing it final.
    let height = net.chain.info().await.unwrap().height;
    let (_, nonce) = sender
        .send(TxBody::OpenChannel {
            provider: provider.address,
            deposit: Amount::from_agr(1),
            expiry_height: height + 10_000,
        })
        .await
        .unwrap();
    let id = agora_ledger::channels::channel_id(&key.public(), &provider.address, nonce);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("channels.json");
    let pending = agora_gateway::payer::PendingOpen {
        id,
        provider: provider.address,
        expiry_height: height + 10_000,
    };
    std::fs::write(
        &journal,
        serde_json::to_vec(&serde_json::json!({"open": [], "closing": [], "pending": [pending]}))
            .unwrap(),
    )
    .unwrap();
    let next = agora_gateway::Payer::new(
        sender,
        net.gateway.relay.net.clone(),
        agora_gateway::PayerSettings {
            journal: Some(journal.clone()),
            ..Default::default()
        },
    );
    next.recover().await.unwrap();
    next.settle_due().await;
    let on_chain = net.chain.channel(&id).await.unwrap().unwrap();
    assert!(
        on_chain.close_deadline.is_some(),
        "the late open's deposit is left locked until expiry"
    );
    assert_eq!(next.closing().await.len(), 1);
    assert!(next.pending_opens().is_empty());
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains(&id.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_cancel_mid_stream_do_not_lock_the_channel() {
    // 2,000 base units a token: the tokens in flight when a client leaves are worth more than
    // rounding, and a few dozen of them exceed the provider's credit limit (100,000).
    let net = TestNet::start(
        &[price(2_000_000_000, 2_000_000_000)],
        Duration::from_millis(5),
        Default::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": crate::net::MODEL,
        "messages": [{"role": "user", "content": "a long story please"}],
        "max_tokens": 200, "stream": true});
    for _ in 0..40 {
        let mut resp = client
            .post(net.url("/v1/chat/completions"))
            .bearer_auth(crate::net::API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        for _ in 0..3 {
            resp.chunk().await.unwrap();
        }
        drop(resp);
    }
    // The next request goes through: the cancelled jobs' unpaid frames were forgiven (each
    // after the cancel grace) rather than left as debt that holds the channel.
    let (status, v) = {
        let r = client
            .post(net.url("/v1/chat/completions"))
            .bearer_auth(crate::net::API_KEY)
            .json(&serde_json::json!({"model": crate::net::MODEL,
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200, "{v}");
    let channel = net.gateway.payer.channels().await[0].id;
    let book = net.providers[0]
        .as_ref()
        .unwrap()
        .provider
        .payments()
        .book(&channel)
        .unwrap();
    let unpaid = book.owed.saturating_sub(book.paid());
    eprintln!(
        "after 40 cancelled streams the channel has {unpaid:?} unpaid; forgiven {:?} paid {:?}",
        book.forgiven,
        book.paid()
    );
    assert!(
        unpaid <= Amount(100_000),
        "cancelled streams left {unpaid:?} unpaid on the channel"
    );
}
