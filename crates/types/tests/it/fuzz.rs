//! Decoding fuzzed by proptest: 100k random and mutated inputs per type. Decoding must never
//! panic, and whatever decodes must re-encode to exactly the input (one encoding per value).

use agora_types::codec::{Decode, Encode};
use agora_types::tx::claim_message;
use agora_types::*;
use proptest::prelude::*;

const CASES: u32 = 100_000;

/// One encoding of each sample transaction (a transfer, registrations, a redeem, two slashes, an
/// open), then a block of them, a receipt and a voucher.
pub(crate) fn samples() -> Vec<Vec<u8>> {
    let k = SecretKey::from_test_seed("fuzz");
    let to = SecretKey::from_test_seed("fuzz-to").public();
    let tx = |body: TxBody| {
        Tx {
            chain_id: "agora-fuzz".into(),
            signer: k.public(),
            nonce: 7,
            fee: Amount(1_000),
            body,
        }
        .sign(&k)
    };
    let voucher = Voucher {
        chain_id: "agora-fuzz".into(),
        channel: Hash([1; 32]),
        cumulative: Amount(99),
        per_model: vec![(Hash([2; 32]), Amount(99))],
    }
    .sign(&k);
    let subject = Hash([4; 32]);
    let txs = vec![
        tx(TxBody::Transfer {
            to,
            amount: Amount(5),
        }),
        tx(TxBody::RegisterProvider(ProviderInfo {
            peer_id: vec![1, 2, 3],
            endpoints: vec!["/ip4/1.2.3.4/tcp/9".into()],
            hardware: HardwareSummary {
                accelerator: "rtx 4090".into(),
                memory_mib: 24_000,
                cpu_cores: 16,
            },
            models: vec![ModelPrice {
                model: Hash([3; 32]),
                input_per_million: Amount(1),
                output_per_million: Amount(2),
            }],
        })),
        tx(TxBody::RegisterModel(ModelRegistration {
            sha256: Hash([3; 32]),
            name: "smollm2".into(),
            family: "llama".into(),
            kind: ModelKind::Chat,
            license: "apache-2.0".into(),
            royalty_bps: 100,
        })),
        tx(TxBody::RedeemVoucher(voucher.clone())),
        tx(TxBody::Slash(Evidence::ConflictingClaims {
            offender: to,
            subject,
            claim_a: Hash([5; 32]),
            signature_a: k.sign(SignDomain::Claim, &claim_message(&subject, &Hash([5; 32]))),
            claim_b: Hash([6; 32]),
            signature_b: k.sign(SignDomain::Claim, &claim_message(&subject, &Hash([6; 32]))),
        })),
        tx(TxBody::OpenChannel {
            provider: to,
            deposit: Amount(10),
            expiry_height: 100,
        }),
        tx(TxBody::Slash(Evidence::ConflictingVotes {
            offender: to,
            epoch: 1,
            view: 300,
            vote_a: ConsensusVote {
                kind: VoteKind::Notarize,
                parent_view: 299,
                payload: Hash([7; 32]),
                signature: Signature([8; 64]),
            },
            vote_b: ConsensusVote {
                kind: VoteKind::Nullify,
                parent_view: 0,
                payload: Hash::ZERO,
                signature: Signature([9; 64]),
            },
        })),
    ];
    let block = Block {
        header: BlockHeader {
            chain_id: "agora-fuzz".into(),
            height: 3,
            parent: Hash([8; 32]),
            timestamp_ms: 1,
            proposer: k.public(),
            tx_root: Block::tx_root_of(&txs),
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
        },
        txs: txs.clone(),
    };
    let receipt = Receipt {
        tx: Hash([9; 32]),
        fee: Amount(3),
        outcome: Outcome::Failed {
            code: 100,
            message: "no".into(),
        },
    };
    let mut out: Vec<Vec<u8>> = txs.iter().map(Encode::encode).collect();
    out.push(block.encode());
    out.push(receipt.encode());
    out.push(voucher.encode());
    out
}

/// Random bytes, or a valid encoding with a few bytes flipped, inserted, removed or cut off.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let samples = samples();
    let mutated = (
        0..samples.len(),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..6),
    )
        .prop_map(move |(i, edits)| {
            let mut b = samples[i].clone();
            for (pos, byte, kind) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let p = usize::from(pos) % b.len();
                match kind {
                    0 => b[p] ^= byte | 1,
                    1 => b.insert(p, byte),
                    2 => {
                        b.remove(p);
                    }
                    _ => b.truncate(p),
                }
            }
            b
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), mutated]
}

fn check<T: Decode + Encode>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = T::decode(bytes) {
        prop_assert_eq!(
            v.encode(),
            bytes.to_vec(),
            "decoded value re-encodes differently"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn signed_tx_decoding_never_panics(b in input()) { check::<SignedTx>(&b)?; }

    #[test]
    fn block_decoding_never_panics(b in input()) {
        check::<Block>(&b)?;
        let _ = Block::decode_bounded(&b);
    }

    #[test]
    fn receipt_decoding_never_panics(b in input()) { check::<Receipt>(&b)?; }

    #[test]
    fn voucher_and_evidence_decoding_never_panics(b in input()) {
        check::<SignedVoucher>(&b)?;
        check::<Evidence>(&b)?;
        check::<BlockHeader>(&b)?;
    }
}

#[test]
fn valid_samples_round_trip() {
    let s = samples();
    let tx = SignedTx::decode(&s[0]).unwrap();
    assert!(tx.verify_signature().is_ok());
    assert_eq!(tx.encode(), s[0]);
    let block = Block::decode(&s[s.len() - 3]).unwrap();
    assert_eq!(block.txs.len(), 7);
}
