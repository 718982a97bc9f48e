//! The JSON the node's RPC serves (`GET /v1/blocks/{height}?txs=full`) parses back into the
//! same values: a typed client (the auditor following the chain) reads every transaction kind.

use agora_types::codec::Decode;
use agora_types::*;

use crate::fuzz::samples;

#[test]
fn every_sample_transaction_round_trips_through_json() {
    let s = samples();
    // The transactions are every sample but the block, receipt and voucher at the end.
    for bytes in &s[..s.len() - 3] {
        let tx = SignedTx::decode(bytes).unwrap();
        let json = serde_json::to_string(&tx).unwrap();
        let back: SignedTx = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(back, tx, "{json}");
    }
}

#[test]
fn a_commit_receipts_transaction_round_trips_through_json() {
    let body = TxBody::CommitReceipts {
        root: Hash([1; 32]),
        count: 3,
    };
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(json["type"], "commit_receipts");
    assert_eq!(serde_json::from_value::<TxBody>(json).unwrap(), body);
}
