//! Blocks and receipts.
//!
//! A block header commits to its parent, its transactions, the receipts they produced and the
//! state root *after* applying them, so a replica that applies the block can check every byte.
//! Time arrives in the header (set by the proposer); the ledger never reads a clock.

use crate::amount::Amount;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash, HashDomain, merkle_root};
use crate::keys::PublicKey;
use crate::tx::{ChainId, SignedTx, limits::*};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub chain_id: ChainId,
    pub height: u64,
    pub parent: Hash,
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
    pub tx_root: Hash,
    pub receipts_root: Hash,
    pub state_root: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTx>,
}

/// The outcome of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx: Hash,
    /// The fee actually charged (charged even when the transaction failed).
    pub fee: Amount,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The transaction was valid to include but its action failed; state is as if only the fee
    /// and nonce had been applied. `code` is stable, `message` is for people.
    Failed {
        code: u16,
        message: String,
    },
}

impl BlockHeader {
    pub fn id(&self) -> Hash {
        Hash::of(HashDomain::BlockId, &self.encode())
    }
}

impl Block {
    pub fn id(&self) -> Hash {
        self.header.id()
    }

    pub fn tx_root_of(txs: &[SignedTx]) -> Hash {
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        merkle_root(HashDomain::TxRoot, &ids)
    }

    pub fn decode_bounded(bytes: &[u8]) -> Result<Block, DecodeError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DecodeError::TooLong {
                what: "block",
                len: bytes.len(),
                max: MAX_BLOCK_BYTES,
            });
        }
        Block::decode(bytes)
    }
}

impl Receipt {
    pub fn receipts_root(receipts: &[Receipt]) -> Hash {
        let leaves: Vec<Hash> = receipts
            .iter()
            .map(|r| Hash::of(HashDomain::ReceiptsRoot, &r.encode()))
            .collect();
        merkle_root(HashDomain::ReceiptsRoot, &leaves)
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        out.put_u64(self.height);
        self.parent.encode_to(out);
        out.put_u64(self.timestamp_ms);
        self.proposer.encode_to(out);
        self.tx_root.encode_to(out);
        self.receipts_root.encode_to(out);
        self.state_root.encode_to(out);
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockHeader {
            chain_id: r.string("chain id", MAX_CHAIN_ID)?,
            height: r.u64()?,
            parent: Decode::decode_from(r)?,
            timestamp_ms: r.u64()?,
            proposer: Decode::decode_from(r)?,
            tx_root: Decode::decode_from(r)?,
            receipts_root: Decode::decode_from(r)?,
            state_root: Decode::decode_from(r)?,
        })
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        out.put_vec(&self.txs);
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Block {
            header: Decode::decode_from(r)?,
            // The smallest signed tx is well over 100 bytes; 100 bounds the count by input size.
            txs: r.vec("block txs", MAX_TXS_PER_BLOCK, 100)?,
        })
    }
}

impl Encode for Receipt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.tx.encode_to(out);
        self.fee.encode_to(out);
        match &self.outcome {
            Outcome::Success => out.put_u8(0),
            Outcome::Failed { code, message } => {
                out.put_u8(1);
                out.put_u16(*code);
                out.put_bytes(message.as_bytes());
            }
        }
    }
}

impl Decode for Receipt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tx = Decode::decode_from(r)?;
        let fee = Decode::decode_from(r)?;
        let outcome = match r.u8()? {
            0 => Outcome::Success,
            1 => Outcome::Failed {
                code: r.u16()?,
                message: r.string("receipt message", MAX_RECEIPT_MESSAGE)?,
            },
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "receipt outcome",
                    tag,
                });
            }
        };
        Ok(Receipt { tx, fee, outcome })
    }
}
