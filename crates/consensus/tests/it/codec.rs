//! Blocks received from peers: round trip, and malformed or oversized bytes rejected.

use agora_consensus::ChainBlock;
use agora_ledger::{BlockContext, Params};
use agora_testkit::{TxFactory, test_genesis, test_keys};
use agora_types::{Amount, TxBody};
use commonware_codec::{Decode, Encode};
use commonware_consensus::{Block as _, Heightable};
use commonware_cryptography::Digestible;

fn sample_block() -> ChainBlock {
    let keys = test_keys(2);
    let state = test_genesis(&keys, Amount::from_agr(100), Params::default())
        .into_state()
        .unwrap();
    let mut txs = TxFactory::new(state.chain_id(), state.params().min_fee);
    let tx = txs.sign(
        &keys[0],
        TxBody::Transfer {
            to: keys[1].public(),
            amount: Amount::from_agr(1),
        },
    );
    let built = agora_ledger::build_block(
        &state,
        &BlockContext {
            timestamp_ms: 1,
            proposer: keys[0].public(),
        },
        vec![tx],
    );
    assert!(built.rejected.is_empty());
    ChainBlock::new(built.block)
}

#[test]
fn block_round_trips_and_links_to_genesis() {
    let block = sample_block();
    let bytes = block.encode();
    let back = ChainBlock::decode_cfg(bytes, &()).unwrap();
    assert_eq!(back, block);
    assert_eq!(back.digest(), block.digest());
    assert_eq!(block.height().get(), 1);
    assert_eq!(block.parent(), ChainBlock::genesis().digest());
    let genesis = ChainBlock::decode_cfg(ChainBlock::genesis().encode(), &()).unwrap();
    assert_eq!(genesis.height().get(), 0);
}

#[test]
fn malformed_and_oversized_blocks_are_rejected() {
    let good = sample_block().encode().to_vec();
    // Truncated.
    assert!(ChainBlock::decode_cfg(good[..good.len() - 1].to_vec(), &()).is_err());
    // Unknown tag.
    let mut bad_tag = good.clone();
    bad_tag[0] = 7;
    assert!(ChainBlock::decode_cfg(bad_tag.clone(), &()).is_err());
    // Declared length beyond the block limit: rejected before reading.
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(ChainBlock::decode_cfg(huge.clone(), &()).is_err());
    // Corrupted payload (flip a byte in the header's chain id length).
    let mut corrupt = good.clone();
    corrupt[6] ^= 0xff;
    assert!(ChainBlock::decode_cfg(corrupt.clone(), &()).is_err());
    // Trailing garbage.
    let mut trailing = good;
    trailing.push(0);
    assert!(ChainBlock::decode_cfg(trailing.clone(), &()).is_err());
}
