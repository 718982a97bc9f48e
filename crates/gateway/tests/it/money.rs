//! The money path as a property: random interleavings of honest and hostile actions over an
//! in-process network with the real ledger (an honest provider, a lying provider whose lie
//! changes between requests, customers that stream, cancel and race their own credit, channels
//! closed mid-run), then the books of every party are checked against what must hold whatever
//! happened:
//! - each customer was charged exactly what the providers were paid for its requests (the sum of
//!   every voucher the gateway signed), and never more than its credit;
//! - the lying provider was paid no more than the bounds of the jobs it was sent;
//! - the honest provider's unpaid work is within its per-payer limit;
//! - the ledger's supply is conserved to the base unit, and no channel paid out more than the
//!   gateway signed on it (no voucher redeemed twice).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use agora_gateway::Customer;
use agora_market::bounds::max_cost;
use agora_market::protocol::{Frame, Job, Usage};
use agora_types::{Amount, SecretKey};
use proptest::prelude::*;
use serde_json::json;

use crate::hostile::{Script, done, toks};
use crate::net::{API_KEY, MODEL, TestNet, price, spare_keys};

#[derive(Debug, Clone)]
enum Action {
    /// A request from the well-funded key.
    Ask { max_tokens: u32, stream: bool },
    /// A stream whose client leaves after `after` chunks.
    Cancel { after: usize },
    /// `k` requests at once from the key with credit for about one.
    Race { k: usize },
    /// The lying provider changes its lie.
    Lie(u8),
    /// The gateway closes every channel (new ones open on the next request).
    CloseAll,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1u32..12, any::<bool>()).prop_map(|(max_tokens, stream)| Action::Ask { max_tokens, stream }),
        2 => (1usize..4).prop_map(|after| Action::Cancel { after }),
        2 => (2usize..5).prop_map(|k| Action::Race { k }),
        2 => (0u8..5).prop_map(Action::Lie),
        1 => Just(Action::CloseAll),
    ]
}

/// The lie of the moment: 0 none, 1 a huge prompt, 2 `Started` three times, 3 more tokens than
/// asked, 4 a receipt that claims more than was sent.
fn liar_script(mode: Arc<AtomicU8>) -> Script {
    Arc::new(move |job: &Job, key: &SecretKey| {
        let n = job.sampling.max_tokens.min(4) as usize;
        let ids: Vec<u32> = (0..n as u32).map(|i| 100 + i).collect();
        let honest = Usage {
            prompt_tokens: 20,
            completion_tokens: n as u32,
            cached_tokens: 0,
        };
        let started = |prompt_tokens| Frame::Started {
            prompt_tokens,
            cached_tokens: 0,
        };
        match mode.load(Ordering::Relaxed) {
            1 => vec![started(50_000_000), Frame::Tokens { tokens: toks(n) }],
            2 => vec![
                started(20),
                started(200),
                started(270),
                Frame::Tokens { tokens: toks(n) },
            ],
            3 => vec![
                started(20),
                Frame::Tokens {
                    tokens: toks(n + 50),
                },
            ],
            4 => {
                let mut claimed = honest;
                claimed.completion_tokens += 10;
                vec![
                    started(20),
                    Frame::Tokens { tokens: toks(n) },
                    done(job, key, claimed, &ids),
                ]
            }
            _ => vec![
                started(20),
                Frame::Tokens { tokens: toks(n) },
                done(job, key, honest, &ids),
            ],
        }
    })
}

const LOW_KEY: &str = "sk-agora-low";

async fn ask(net: &TestNet, key: &str, max_tokens: u32, stream: bool) {
    let r = reqwest::Client::new()
        .post(net.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens, "stream": stream}),
        )
        .send()
        .await
        .unwrap();
    let _ = r.bytes().await;
}

async fn run_case(actions: Vec<Action>) {
    let net = TestNet::start(
        &[price(3_000_000, 3_000_000)],
        Duration::from_millis(2),
        Default::default(),
    )
    .await;
    let mode = Arc::new(AtomicU8::new(0));
    // The liar is cheaper, so it is picked whenever it has not just failed.
    let liar = net
        .start_liar(
            spare_keys()[0].clone(),
            price(1_000_000, 1_000_000),
            liar_script(mode.clone()),
        )
        .await;
    net.wait_for_providers(2).await;
    net.gateway.customers.insert(
        LOW_KEY,
        Customer {
            name: "low".into(),
            account: net.owner.public(),
            credit: Amount(2_000),
            spent: Amount::ZERO,
        },
    );
    for a in &actions {
        match a {
            Action::Ask { max_tokens, stream } => ask(&net, API_KEY, *max_tokens, *stream).await,
            Action::Cancel { after } => {
                let mut r = reqwest::Client::new()
                    .post(net.url("/v1/chat/completions"))
                    .bearer_auth(API_KEY)
                    .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "a long story"}],
                        "max_tokens": 64, "stream": true}))
                    .send()
                    .await
                    .unwrap();
                for _ in 0..*after {
                    if r.chunk().await.ok().flatten().is_none() {
                        break;
                    }
                }
            }
            Action::Race { k } => {
                futures::future::join_all((0..*k).map(|_| ask(&net, LOW_KEY, 8, false))).await;
            }
            Action::Lie(m) => mode.store(*m, Ordering::Relaxed),
            Action::CloseAll => {
                net.gateway.payer.close_all(Duration::from_secs(3)).await;
            }
        }
    }
    // Let cancelled jobs' graces run out and the last vouchers arrive.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    net.settle_vouchers().await;
    let honest = net.providers[0].as_ref().unwrap();
    honest.provider.redeem_now(&honest.sender).await;

    // What the gateway signed, per channel, open or closing.
    let mut signed: Vec<(agora_types::Hash, Amount)> = net
        .gateway
        .payer
        .channels()
        .await
        .iter()
        .map(|c| (c.id, c.cumulative()))
        .collect();
    signed.extend(
        net.gateway
            .payer
            .closing()
            .await
            .iter()
            .map(|c| (c.id, c.signed)),
    );
    let total_signed = signed
        .iter()
        .fold(Amount::ZERO, |a, (_, s)| a.checked_add(*s).unwrap());
    let spent = net.gateway.customers.total_spent();
    assert_eq!(
        spent, total_signed,
        "customers were charged {spent:?}, providers were signed {total_signed:?} ({actions:?})"
    );
    for key in [API_KEY, LOW_KEY] {
        let c = net
            .gateway
            .customers
            .get(&agora_gateway::customers::key_hash(key))
            .unwrap();
        assert!(c.spent <= c.credit, "{key}: {c:?}");
    }
    let bound = liar.jobs.lock().unwrap().iter().fold(Amount::ZERO, |a, j| {
        let b = max_cost(&j.price, &j.work, &j.sampling, j.continuation.len()).unwrap();
        a.checked_add(b).unwrap()
    });
    assert!(
        liar.paid() <= bound,
        "the liar was paid {:?}, its jobs' bounds add up to {bound:?}",
        liar.paid()
    );
    for (id, s) in &signed {
        if let Some(book) = honest.provider.payments().book(id) {
            assert!(
                book.owed.saturating_sub(book.paid()) <= Amount(1_000_000),
                "honest provider left with {:?} unpaid on {id}",
                book.owed.saturating_sub(book.paid())
            );
        }
        if let Some(on_chain) = net.chain.channel(id).await.unwrap() {
            assert!(
                on_chain.redeemed <= *s,
                "channel {id} paid out {:?}, more than the {s:?} signed",
                on_chain.redeemed
            );
        }
    }
    let validator = net.node.validator.as_ref().unwrap();
    let chain = validator.shared.chain.lock().unwrap();
    let state = chain.state();
    assert_eq!(
        state.circulating_total(),
        state.supply().expected_total(),
        "supply"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_money_path_holds_under_random_honest_and_hostile_actions(
        actions in proptest::collection::vec(action(), 4..10)
    ) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_case(actions));
    }
}
