//! Golden fixtures for consensus-critical bytes: a sample tx, block and receipt encoding with
//! their hashes, and the state root after a seeded sequence. A change here is a consensus change:
//! regenerate deliberately with `UPDATE_GOLDEN=1 cargo nextest run -p agora-ledger golden` and
//! say why in the commit.

use agora_testkit::{Chain, TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::{Amount, Encode, Hash, TxBody};
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
    (out, chain)
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
