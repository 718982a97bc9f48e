//! Ledger blocks as consensus sees them.
//!
//! Simplex and marshal order opaque blocks by a 32-byte digest. [`ChainBlock`] wraps a ledger
//! [`Block`] and names it by `sha256(block id)`, where the block id is the ledger's own header
//! hash (which commits to parent, height, txs, receipts and state root). Height 0 is the genesis
//! anchor: it carries no ledger block, and its digest is `sha256(Hash::ZERO)`, the parent that
//! the ledger's first block names. So `parent()` of every block is just the digest of its
//! header's `parent` field, with no special case.
//!
//! Wire format: tag `0` = genesis; tag `1`, a `u32` length, then the ledger block's canonical
//! encoding, decoded with the ledger's own bounds (`MAX_BLOCK_BYTES`).

use agora_types::tx::limits::MAX_BLOCK_BYTES;
use agora_types::{Block, Encode, Hash};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, Write};
use commonware_consensus::Heightable;
use commonware_consensus::types::Height;
use commonware_cryptography::{Digestible, Hasher, Sha256, sha256};

/// The digest consensus uses for blocks.
pub type Digest = sha256::Digest;

/// Maps a ledger block id to the digest consensus orders.
pub fn digest_of(id: &Hash) -> Digest {
    Sha256::hash(&[&id.0])
}

/// A ledger block, or the genesis anchor at height 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBlock {
    block: Option<Block>,
    digest: Digest,
    parent: Digest,
}

impl ChainBlock {
    /// The height-0 anchor every chain starts from.
    pub fn genesis() -> ChainBlock {
        let digest = digest_of(&Hash::ZERO);
        ChainBlock {
            block: None,
            digest,
            parent: digest,
        }
    }

    pub fn new(block: Block) -> ChainBlock {
        ChainBlock {
            digest: digest_of(&block.id()),
            parent: digest_of(&block.header.parent),
            block: Some(block),
        }
    }

    /// The ledger block, `None` for the genesis anchor.
    pub fn block(&self) -> Option<&Block> {
        self.block.as_ref()
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;
    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.block.as_ref().map_or(0, |b| b.header.height))
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> Digest {
        self.parent
    }
}

const TAG_GENESIS: u8 = 0;
const TAG_BLOCK: u8 = 1;

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        match &self.block {
            None => buf.put_u8(TAG_GENESIS),
            Some(block) => {
                let bytes = block.encode();
                buf.put_u8(TAG_BLOCK);
                // Blocks are bounded by MAX_BLOCK_BYTES, far below u32::MAX.
                buf.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                buf.put_slice(&bytes);
            }
        }
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        match &self.block {
            None => 1,
            Some(block) => 1 + 4 + block.encode().len(),
        }
    }
}

impl Read for ChainBlock {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        if buf.remaining() < 1 {
            return Err(CodecError::EndOfBuffer);
        }
        match buf.get_u8() {
            TAG_GENESIS => Ok(ChainBlock::genesis()),
            TAG_BLOCK => {
                if buf.remaining() < 4 {
                    return Err(CodecError::EndOfBuffer);
                }
                let len = buf.get_u32() as usize;
                if len > MAX_BLOCK_BYTES {
                    return Err(CodecError::InvalidLength(len));
                }
                if buf.remaining() < len {
                    return Err(CodecError::EndOfBuffer);
                }
                let bytes = buf.copy_to_bytes(len);
                let block = Block::decode_bounded(&bytes)
                    .map_err(|_| CodecError::Invalid("ChainBlock", "malformed ledger block"))?;
                Ok(ChainBlock::new(block))
            }
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl commonware_consensus::BoundedBlock for ChainBlock {
    fn max_encode_size(_: &()) -> usize {
        1 + 4 + MAX_BLOCK_BYTES
    }
}
