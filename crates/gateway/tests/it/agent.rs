//! An agent with its own ledger account and no gateway (`agora_gateway::agent`): it pays
//! providers through channels it opens itself, its spend equals what the providers redeem to
//! the base unit, and a request over its per-request cap or its budget is refused before any
//! provider is asked to work.

use std::sync::Arc;
use std::time::Duration;

use agora_gateway::RelaySettings;
use agora_gateway::agent::{Agent, AgentError, AgentLimits};
use agora_market::protocol::{ChatMessage, SamplingParams};
use agora_provider::TxSender;
use agora_types::{Amount, SecretKey, TxBody};

use crate::net::{MODEL, TestNet, price, spare_keys};

/// Jobs the provider has seen, however they ended.
fn jobs_seen(net: &TestNet) -> u64 {
    let m = net.providers[0].as_ref().unwrap().provider.metrics();
    ["ok", "failed", "refused", "cancelled"]
        .iter()
        .map(|l| m.jobs.with_label_values(&[l]).get())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pays_providers_from_its_own_account_within_its_limits() {
    // 1 base unit per prompt token, 2 per generated token.
    let net = TestNet::start(
        &[price(1_000_000, 2_000_000)],
        Duration::ZERO,
        RelaySettings::default(),
    )
    .await;
    let key = SecretKey::from_test_seed("agent");
    let funder = TxSender::new(spare_keys()[1].clone(), net.chain.clone())
        .await
        .unwrap();
    funder
        .send(TxBody::Transfer {
            to: key.public(),
            amount: Amount::from_agr(2),
        })
        .await
        .unwrap();
    let sender = Arc::new(TxSender::new(key.clone(), net.chain.clone()).await.unwrap());
    let overlay = agora_gateway::agent::overlay_config(net.stranger_config());
    let (p2p, _inbound) = agora_p2p::spawn(key.to_bytes(), overlay, None)
        .await
        .unwrap();
    // A request of 8 tokens may cost about 300 (the prompt bound carries the template's
    // allowance) and costs about 30; one of 1,000 tokens may cost over 2,000.
    let limits = AgentLimits {
        budget: Amount(600),
        per_request_cap: Amount(500),
    };
    let agent = Agent::start(limits, p2p, sender, RelaySettings::default())
        .await
        .unwrap();
    // The agent's market hears the provider's offer on the overlay.
    for _ in 0..600 {
        if agent.model(MODEL).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ask = |text: &str, max_tokens: u32| {
        agent.ask(
            MODEL,
            vec![ChatMessage::new("user", text)],
            SamplingParams::greedy(max_tokens),
        )
    };
    let mut paid = Amount::ZERO;
    for i in 0..3 {
        let a = ask(&format!("hello {i}"), 8).await.unwrap();
        assert!(a.summary.completion_tokens > 0);
        paid = paid.checked_add(a.summary.charged).unwrap();
    }
    assert_eq!(agent.spent(), paid);
    assert!(!paid.is_zero());

    // Over the per-request cap: refused before any work.
    let seen = jobs_seen(&net);
    let channels = agent.payer.channels().await.len();
    let e = ask("a long essay please", 1_000).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Refused { code, .. } if code == "request_over_cap"),
        "{e}"
    );
    assert_eq!(jobs_seen(&net), seen, "no job reached a provider");
    assert_eq!(agent.payer.channels().await.len(), channels);
    assert_eq!(agent.spent(), paid);

    // Spend until the budget cannot cover a request's worst case: refused the same way.
    let mut refused = None;
    for i in 0..20 {
        match ask(&format!("more {i}"), 8).await {
            Ok(a) => paid = paid.checked_add(a.summary.charged).unwrap(),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the budget runs out");
    assert!(
        matches!(&refused, AgentError::Refused { code, .. } if code == "insufficient_quota"),
        "{refused}"
    );
    assert!(agent.spent() <= limits.budget);
    assert_eq!(agent.spent(), paid);

    // The providers redeem what the agent's vouchers promised: on the ledger, its channels paid
    // out exactly what the agent spent.
    let ids: Vec<_> = agent.payer.channels().await.iter().map(|c| c.id).collect();
    for _ in 0..200 {
        let chans = agent.payer.channels().await;
        if chans.iter().all(|c| c.acked() >= c.cumulative()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let provider = net.providers[0].as_ref().unwrap();
    provider.provider.redeem_now(&provider.sender).await;
    let mut redeemed = Amount::ZERO;
    for id in &ids {
        let on_chain = net.chain.channel(id).await.unwrap().unwrap();
        assert_eq!(on_chain.payer, key.public(), "the agent's own channel");
        redeemed = redeemed.checked_add(on_chain.redeemed).unwrap();
    }
    assert_eq!(
        redeemed,
        agent.spent(),
        "redeemed from the agent's channels"
    );
    // The node's RPC shows the same spend for the agent's account.
    let view = net.chain.spend(&key.public()).await.unwrap();
    assert_eq!(view.redeemed, agent.spent());
    assert_eq!(view.channel_count, ids.len() as u64);
    agent.shutdown().await;
}
