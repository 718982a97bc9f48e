//! Golden fixtures for consensus-critical bytes: a sample tx, block and receipt encoding with
//! their hashes, and the state root after a seeded sequence. A change here is a consensus change:
//! regenerate deliberately with `UPDATE_GOLDEN=1 cargo nextest run -p agora-ledger golden` and
//! say why in the commit.

use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::{Amount, Encode, Hash, SecretKey, TxBody};
use std::collections::BTreeMap;

/// The fixtures' path, from the package directory the test runner gives at run time (a warm build
/// cache may hold a binary built in another checkout).
fn fixtures_path() -> String {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    format!("{dir}/tests/golden/fixtures.json")
}

fn seeded_sequence() -> (BTreeMap<String, String>, Chain) {
    let keys = test_keys(8);
    let genesis = test_genesis(
        &keys,
        Amount::from_agr(1_000),
        agora_ledger::Params::default(),
    );
    let mut chain = Chain::new(&genesis);
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    let mut out = BTreeMap::new();
    let first = f.sign(
        &keys[0],
        TxBody::Transfer {
            to: keys[1].public(),
            amount: Amount::from_agr(5),
        },
    );
    out.insert("tx.encoding".into(), hex::encode(first.encode()));
    out.insert("tx.id".into(), first.id().to_hex());
    let built = chain.produce(vec![first]);
    out.insert("block1.encoding".into(), hex::encode(built.block.encode()));
    out.insert("block1.id".into(), built.block.id().to_hex());
    out.insert(
        "receipt.encoding".into(),
        hex::encode(built.applied.receipts[0].encode()),
    );
    // A deterministic pseudo-random sequence of transfers and bonds over 20 blocks.
    let mut x: u64 = 42;
    for _ in 0..20 {
        let mut txs = vec![];
        for _ in 0..10 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let from = (x >> 33) as usize % keys.len();
            let to = (x >> 40) as usize % keys.len();
            let amount = Amount(u128::from(x >> 44) + 1);
            let body = if x.is_multiple_of(5) {
                TxBody::Bond {
                    target: keys[from].public(),
                    amount,
                }
            } else {
                TxBody::Transfer {
                    to: keys[to].public(),
                    amount,
                }
            };
            txs.push(f.sign(&keys[from], body));
        }
        let b = chain.produce(txs);
        assert!(b.rejected.is_empty());
    }
    out.insert("sequence.height".into(), chain.state.height().to_string());
    out.insert("sequence.state_root".into(), chain.state.root().to_hex());
    out.insert(
        "genesis.state_root".into(),
        genesis.into_state().unwrap().root().to_hex(),
    );
    audit_fixtures(&keys, &mut f, &mut out);
    (out, chain)
}

/// The audit bytes and draws that gateways, providers and auditors must agree on with the
/// ledger: a commitment tx, failed-audit evidence and its id, a receipt id, a receipts root, a
/// beacon, and which receipts and auditors that beacon draws.
fn audit_fixtures(keys: &[SecretKey], f: &mut TxFactory, out: &mut BTreeMap<String, String>) {
    use agora_ledger::audit::{auditors, beacon, receipts_root, selected};
    use agora_types::receipt::InferenceReceipt;
    use agora_types::{AuditVerdict, Evidence, HashDomain, Price, receipt_id};
    let receipt = InferenceReceipt {
        chain_id: TEST_CHAIN.into(),
        request_id: Hash([1; 32]),
        provider: keys[1].public(),
        payer: keys[0].public(),
        channel: Hash([2; 32]),
        model: Hash([3; 32]),
        seed: 4,
        params_hash: Hash([5; 32]),
        work_hash: Hash([6; 32]),
        continuation_hash: Hash([7; 32]),
        prompt_hash: Hash([8; 32]),
        engine: "golden".into(),
        prompt_tokens: 9,
        completion_tokens: 10,
        continuation_tokens: 0,
        price: Price {
            input_per_million: Amount(11),
            output_per_million: Amount(12),
        },
        charged: Amount(13),
        output_hash: Hash([14; 32]),
        time_ms: 15,
        complete: true,
        proof_hash: Hash([16; 32]),
    }
    .sign(&keys[1]);
    let rid = receipt_id(&receipt);
    let verdicts = (2..4)
        .map(|i| {
            AuditVerdict {
                chain_id: TEST_CHAIN.into(),
                receipt: rid,
                failed: true,
                detail: Hash([i as u8; 32]),
            }
            .sign(&keys[i])
        })
        .collect();
    let evidence = Evidence::FailedAudit {
        receipt: Box::new(receipt),
        verdicts,
    };
    out.insert("audit.receipt_id".into(), rid.to_hex());
    out.insert(
        "audit.evidence.encoding".into(),
        hex::encode(evidence.encode()),
    );
    out.insert("audit.evidence.id".into(), evidence.id().to_hex());
    let ids: Vec<Hash> = (0u64..100)
        .map(|i| Hash::of(HashDomain::Request, &i.to_le_bytes()))
        .collect();
    let root = receipts_root(&ids);
    out.insert("audit.receipts_root".into(), root.to_hex());
    let commit = f.sign(&keys[0], TxBody::CommitReceipts { root, count: 100 });
    out.insert("audit.commit.encoding".into(), hex::encode(commit.encode()));
    let b = beacon(Hash([9; 32]), root);
    out.insert("audit.beacon".into(), b.to_hex());
    let drawn: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| selected(b, **id, 300, false))
        .map(|(i, _)| i.to_string())
        .collect();
    out.insert("audit.selected_at_300_bps".into(), drawn.join(","));
    let validators: Vec<_> = keys.iter().map(SecretKey::public).collect();
    let picked: Vec<String> = auditors(b, ids[0], &validators, 3)
        .iter()
        .map(|a| a.to_string())
        .collect();
    out.insert("audit.auditors".into(), picked.join(","));
}

#[test]
fn golden_encodings_and_roots_are_unchanged() {
    let (computed, _) = seeded_sequence();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(
            fixtures_path(),
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(fixtures_path()).expect("golden file is committed"),
    )
    .expect("golden file is valid JSON");
    assert_eq!(
        committed, computed,
        "consensus bytes changed; see the module docs"
    );
    // The fixture's hash fields really are hashes of its encodings.
    let tx = agora_types::SignedTx::decode_bounded_for_test(
        &hex::decode(&committed["tx.encoding"]).unwrap(),
    );
    assert_eq!(tx.id(), Hash::from_hex(&committed["tx.id"]).unwrap());
}

trait DecodeForTest {
    fn decode_bounded_for_test(bytes: &[u8]) -> Self;
}

impl DecodeForTest for agora_types::SignedTx {
    fn decode_bounded_for_test(bytes: &[u8]) -> Self {
        <agora_types::SignedTx as agora_types::Decode>::decode(bytes).expect("fixture decodes")
    }
}
