//! Proofs of inference on the request path: an honest provider's answer carries a proof its
//! receipt binds, the client gets both, and a provider that sends no proof, an undecodable one,
//! one for another length or one its receipt does not bind is not counted as a matching receipt.

use std::sync::Arc;
use std::time::Duration;

use agora_market::protocol::{Frame, Job, ProofBytes, Replay, SignedReceipt, Usage};
use agora_types::{Encode, Hash, SecretKey};
use agora_verify::toploc::Proof;
use serde_json::{Value, json};

use crate::hostile::{Script, done, proof_for, toks};
use crate::net::{API_KEY, MODEL, TestNet, price, spare_keys};

async fn chat(net: &TestNet, max_tokens: u32) -> Value {
    let resp = reqwest::Client::new()
        .post(net.url("/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "prove it"}],
            "max_tokens": max_tokens}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_answer_carries_a_proof_its_receipt_binds_and_the_client_gets_both() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, Default::default()).await;
    // 40 tokens: the prompt chunk and two decode chunks (32 + 7 rows).
    let v = chat(&net, 40).await;
    let seg = &v["choices"][0]["agora"]["segments"][0];
    assert_eq!(seg["receipt_ok"], true, "{v}");
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap() as u32;
    let bytes = hex::decode(seg["proof"].as_str().expect("a proof")).unwrap();
    let proof = Proof::decode(&bytes, Proof::max_decode_chunks(40)).unwrap();
    assert_eq!(proof.decode.len(), Proof::max_decode_chunks(tokens));
    let bound: Hash = serde_json::from_value(seg["receipt"]["receipt"]["proof_hash"].clone())
        .expect("the receipt carries the proof's hash");
    assert_eq!(bound, proof.hash());
    // The receipt store serves the same proof beside the receipt.
    let id = v["choices"][0]["agora"]["request_id"].as_str().unwrap();
    let kept: Value = reqwest::Client::new()
        .get(net.url(&format!("/v1/receipts/{id}")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["data"][0]["proof"], seg["proof"], "{kept}");
    // Not the prompt and tokens: any key may ask for any request id (the dashboard shows them).
    assert!(kept["data"][0].get("replay").is_none(), "{kept}");
    // The store keeps what an auditor needs to replay it, bound by the receipt's hashes.
    let rid = Hash::from_hex(id).unwrap();
    let stored = net.gateway.relay.receipts.get(&rid);
    let replay: Replay = stored[0].replay.clone().expect("a replay for the auditors");
    let receipt: SignedReceipt = serde_json::from_value(seg["receipt"].clone()).unwrap();
    assert_eq!(replay.output.len(), tokens as usize);
    assert_eq!(replay.mismatch(&receipt.receipt), None);
    let mut edited = replay.clone();
    edited.output[0] += 1;
    assert_eq!(edited.mismatch(&receipt.receipt), Some("output_hash"));
}

/// How the liar spoils the proof of an otherwise honest answer.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    Missing,
    Garbage,
    OtherLength,
    Unbound,
}

fn spoiling(spoil: Spoil) -> Script {
    Arc::new(move |job: &Job, key: &SecretKey| {
        let n = job.sampling.max_tokens.min(4);
        let ids: Vec<u32> = (0..n).map(|i| 100 + i).collect();
        let usage = Usage {
            prompt_tokens: 20,
            completion_tokens: n,
            cached_tokens: 0,
        };
        let mut last = done(job, key, usage, &ids);
        if let Frame::Done { proof, receipt, .. } = &mut last {
            match spoil {
                // No proof, and a receipt re-signed to claim none.
                Spoil::Missing => {
                    let mut r = receipt.receipt.clone();
                    r.proof_hash = Hash::ZERO;
                    **receipt = r.sign(key);
                    *proof = None;
                }
                Spoil::Garbage => *proof = Some(ProofBytes(vec![1, 2, 3, 4, 5])),
                // A well-formed proof of 40 tokens, bound by a receipt re-signed for it, on an
                // answer of 4.
                Spoil::OtherLength => {
                    let other = proof_for(40).unwrap();
                    let mut r = receipt.receipt.clone();
                    r.proof_hash = other.hash();
                    **receipt = r.sign(key);
                    *proof = Some(ProofBytes(other.encode()));
                }
                // The right shape, but not the proof the signed receipt names.
                Spoil::Unbound => {
                    let mut rows: Vec<f32> = (0..n * 8).map(|i| i as f32).collect();
                    rows[0] = 99.0;
                    let rows = agora_verify::Rows::new(&rows, 8).unwrap();
                    let other = agora_verify::toploc::prove(rows, 1).unwrap();
                    *proof = Some(ProofBytes(other.encode()));
                }
            }
        }
        vec![
            Frame::Started {
                prompt_tokens: 20,
                cached_tokens: 0,
            },
            Frame::Tokens {
                tokens: toks(n as usize),
            },
            last,
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_its_proof_is_not_a_matching_receipt() {
    for spoil in [
        Spoil::Missing,
        Spoil::Garbage,
        Spoil::OtherLength,
        Spoil::Unbound,
    ] {
        let net = TestNet::start(&[], Duration::ZERO, Default::default()).await;
        let _liar = net
            .start_liar(spare_keys()[0].clone(), price(1, 1), spoiling(spoil))
            .await;
        net.wait_for_providers(1).await;
        let v = chat(&net, 8).await;
        let seg = &v["choices"][0]["agora"]["segments"][0];
        assert_eq!(seg["receipt_ok"], false, "{spoil:?}: {v}");
        let stats = net.gateway.market.stats();
        assert!(
            stats.values().any(|s| s.failures >= 1),
            "{spoil:?}: the bad proof does not count against the provider"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slashed_provider_is_routed_around() {
    use agora_types::tx::claim_message;
    use agora_types::{Evidence, SignDomain, TxBody};
    // The first provider is cheaper, so it serves while it is in good standing.
    let net = TestNet::start(
        &[price(1, 1), price(5, 5)],
        Duration::ZERO,
        Default::default(),
    )
    .await;
    let cheap = net.provider_keys[0].public();
    let serving = |v: &Value| v["choices"][0]["agora"]["segments"][0]["provider"].clone();
    let v = chat(&net, 4).await;
    assert_eq!(serving(&v), json!(cheap.to_string()));
    // It equivocates (two different signed claims about one subject) and a stranger reports it:
    // slashed and jailed by the ledger.
    let key = &net.provider_keys[0];
    let subject = Hash([3; 32]);
    let (a, b) = (Hash([1; 32]), Hash([2; 32]));
    let evidence = Evidence::ConflictingClaims {
        offender: cheap,
        subject,
        claim_a: a,
        signature_a: key.sign(SignDomain::Claim, &claim_message(&subject, &a)),
        claim_b: b,
        signature_b: key.sign(SignDomain::Claim, &claim_message(&subject, &b)),
    };
    let reporter = agora_provider::TxSender::new(spare_keys()[1].clone(), net.chain.clone())
        .await
        .unwrap();
    reporter.send(TxBody::Slash(evidence)).await.unwrap();
    let record = net.chain.provider(&cheap).await.unwrap().unwrap();
    assert!(record.record.jailed_until > record.height, "jailed");
    // The gateway's next look at the market leaves it out, offer or not.
    net.gateway.market.refresh().await;
    for _ in 0..3 {
        let v = chat(&net, 4).await;
        assert_eq!(
            serving(&v),
            json!(net.provider_keys[1].public().to_string()),
            "{v}"
        );
    }
}

/// The redundant tier on real providers (test engine, same seed): two distinct providers run
/// the request, their tokens agree, and each signed a receipt the gateway matched. One provider
/// is five times cheaper, so the router picks it for both runs unless the second avoids it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_execution_runs_on_two_distinct_providers_that_agree() {
    let prices = [price(1_000_000, 1_000_000), price(5_000_000, 5_000_000)];
    let net = TestNet::start(&prices, Duration::ZERO, Default::default()).await;
    let resp = reqwest::Client::new()
        .post(net.url("/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "twice"}],
            "max_tokens": 12, "seed": 3, "agora": {"verification": "redundant"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    let agora = &v["choices"][0]["agora"];
    let first = &agora["segments"][0];
    let second = &agora["redundant"]["segments"][0];
    assert_ne!(first["provider"], second["provider"], "{v}");
    assert_eq!(agora["redundant"]["agreed"], true, "{v}");
    assert_eq!(
        (&first["receipt_ok"], &second["receipt_ok"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(first["completion_tokens"], second["completion_tokens"]);
    assert_ne!(agora["request_id"], agora["redundant"]["request_id"]);
}
