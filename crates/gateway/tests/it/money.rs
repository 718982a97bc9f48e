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
//!   gateway signed on it (no voucher redeemed twice);
//! - a voucher the ledger would refuse (empty royalty split, over the deposit, forged, another
//!   chain) is refused by the honest provider and never held.
//!
//! Actions also include the gateway settling what is due and the lying provider crashing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use agora_gateway::Customer;
use agora_market::bounds::max_cost;
use agora_market::protocol::{Frame, Job, Usage};
use agora_types::{Amount, SecretKey};
use proptest::prelude::*;
use serde_json::json;

use crate::hostile::{DirectPayer, Script, done, toks};
use crate::net::{API_KEY, MODEL, TestNet, price, spare_keys};
use agora_market::protocol::RpcReply;

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
    /// The gateway settles what is due.
    Settle,
    /// The lying provider crashes (gone for the rest of the run).
    CrashLiar,
    /// A payer with its own channel to the honest provider sends a voucher the ledger would
    /// refuse: 0 an empty royalty split, 1 over the deposit, 2 signed by another key, 3 for
    /// another chain.
    BadVoucher(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1u32..12, any::<bool>()).prop_map(|(max_tokens, stream)| Action::Ask { max_tokens, stream }),
        2 => (1usize..4).prop_map(|after| Action::Cancel { after }),
        2 => (2usize..5).prop_map(|k| Action::Race { k }),
        2 => (0u8..5).prop_map(Action::Lie),
        1 => Just(Action::CloseAll),
        1 => Just(Action::Settle),
        1 => Just(Action::CrashLiar),
        2 => (0u8..4).prop_map(Action::BadVoucher),
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
    let direct_key = spare_keys()[1].clone();
    let stranger = SecretKey::from_test_seed("money-stranger");
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
            limits: Default::default(),
        },
    );
    let honest = net.providers[0].as_ref().unwrap();
    let direct =
        DirectPayer::start(&net, spare_keys()[1].clone(), price(3_000_000, 3_000_000)).await;
    let direct_channel = direct
        .open(honest.sender.address(), Amount::from_agr(1))
        .await;
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
            Action::Settle => {
                net.gateway.payer.settle_due().await;
            }
            Action::CrashLiar => liar.crash().await,
            Action::BadVoucher(kind) => {
                let (key, chain_id, cumulative, per_model) = match kind {
                    0 => (&direct_key, "agora-gateway-test", 10, vec![]),
                    1 => (
                        &direct_key,
                        "agora-gateway-test",
                        2_000_000_000,
                        vec![(crate::net::model_sha(), Amount(2_000_000_000))],
                    ),
                    2 => (
                        &stranger,
                        "agora-gateway-test",
                        10,
                        vec![(crate::net::model_sha(), Amount(10))],
                    ),
                    _ => (
                        &direct_key,
                        "another-chain",
                        10,
                        vec![(crate::net::model_sha(), Amount(10))],
                    ),
                };
                let voucher = agora_types::Voucher {
                    chain_id: chain_id.into(),
                    channel: direct_channel,
                    cumulative: Amount(cumulative),
                    per_model,
                }
                .sign(key);
                let reply = direct.send_voucher(honest, voucher).await;
                assert!(
                    matches!(reply, RpcReply::Rejected { .. }),
                    "bad voucher {kind} was {reply:?}"
                );
            }
        }
    }
    // No bad voucher is held.
    assert!(
        honest
            .provider
            .payments()
            .book(&direct_channel)
            .is_none_or(|b| b.best.is_none())
    );
    // Let cancelled jobs' graces run out and the last vouchers arrive.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Every voucher to a provider still on the network is acknowledged (a crashed liar cannot).
    let liar_address = spare_keys()[0].public();
    let crashed = actions.iter().any(|a| matches!(a, Action::CrashLiar));
    for _ in 0..200 {
        let chans = net.gateway.payer.channels().await;
        if chans
            .iter()
            .filter(|c| !(crashed && c.provider == liar_address))
            .all(|c| c.acked() >= c.cumulative())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Found by CI: five bad vouchers in one case once made the payer's fifth connection to the
/// provider be refused ("Dial error"), failing the case for a reason that is not the money path.
#[test]
fn many_bad_vouchers_in_a_row_are_each_refused() {
    let actions = (0..8).map(|i| Action::BadVoucher(i % 4)).collect();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run_case(actions));
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
