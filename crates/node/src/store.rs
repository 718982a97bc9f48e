//! Blocks, receipts and ledger state on disk, in one redb database.
//!
//! Each finalized block is written in **one** redb write transaction together with its receipts,
//! the state records it changed and the new tip. redb commits are atomic and durable (a
//! copy-on-write B-tree with a checksummed commit slot), so a process killed at any instant
//! restarts at the last committed block with exactly that block's state: never half a block.
//!
//! Why redb rather than commonware-storage here: the ledger state is a keyed map that we update
//! in place per block, which is what a B-tree gives directly; commonware's journals and MMR are
//! append-only logs, the right fit for the consensus journal (the BFT issue uses them there).

use agora_ledger::{Applied, Genesis, State};
use agora_types::{Block, DecodeError, Encode, Hash, Receipt};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// tx id -> (height, index in block)
const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
/// (market id, epoch big-endian) -> the epoch's report as JSON (`agora_ledger::incentives`):
/// outputs of applying blocks, kept so the RPC can explain them.
const EPOCHS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("epochs");
/// "tip" -> (height, block id); "genesis" -> hash of the genesis JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(#[from] DecodeError),
    #[error("the data directory belongs to another genesis (stored {stored}, given {given})")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("genesis: {0}")]
    Genesis(#[from] agora_ledger::genesis::GenesisError),
    #[error("block {got} does not follow the stored tip {tip}")]
    NotNext { tip: u64, got: u64 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub struct Store {
    db: Database,
}

/// Where a transaction landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        Ok(Store { db })
    }

    /// Loads the state at the stored tip, or writes the genesis state if the store is new.
    pub fn load_or_init(&self, genesis: &Genesis) -> Result<State, StoreError> {
        let genesis_hash = genesis_id(genesis);
        let read = self.db.begin_read()?;
        let stored_genesis = match read.open_table(META) {
            Ok(t) => t.get("genesis")?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        drop(read);
        match stored_genesis {
            None => {
                let state = genesis.into_state()?;
                let w = self.db.begin_write()?;
                {
                    let mut t = w.open_table(STATE)?;
                    for (k, v) in state.all_records() {
                        if let Some(v) = v {
                            t.insert(k.as_slice(), v.as_slice())?;
                        }
                    }
                    let mut m = w.open_table(META)?;
                    m.insert("genesis", genesis_hash.0.as_slice())?;
                    m.insert("tip", tip_bytes(0, &Hash::ZERO).as_slice())?;
                    w.open_table(BLOCKS)?;
                    w.open_table(RECEIPTS)?;
                    w.open_table(TX_INDEX)?;
                }
                w.commit()?;
                Ok(state)
            }
            Some(stored) => {
                let stored = Hash(stored.try_into().map_err(|_| DecodeError::Invalid {
                    what: "genesis hash",
                    reason: "not 32 bytes",
                })?);
                if stored != genesis_hash {
                    return Err(StoreError::GenesisMismatch {
                        stored,
                        given: genesis_hash,
                    });
                }
                let read = self.db.begin_read()?;
                let t = read.open_table(STATE)?;
                let mut records = Vec::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    records.push((k.value().to_vec(), v.value().to_vec()));
                }
                let mut state = State::from_records(records)?;
                let (_, id) = self.tip()?;
                state.set_last_block(id);
                Ok(state)
            }
        }
    }

    /// (height, id) of the last stored block; (0, zero) before the first block.
    pub fn tip(&self) -> Result<(u64, Hash), StoreError> {
        let read = self.db.begin_read()?;
        let m = read.open_table(META)?;
        let v = m.get("tip")?.ok_or(DecodeError::Invalid {
            what: "store",
            reason: "no tip",
        })?;
        let b = v.value();
        if b.len() != 40 {
            return Err(DecodeError::Invalid {
                what: "tip",
                reason: "wrong length",
            }
            .into());
        }
        let height = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let id = Hash(b[8..].try_into().expect("32 bytes"));
        Ok((height, id))
    }

    /// Writes a finalized block, its receipts and the state it changed, atomically.
    pub fn commit_block(&self, block: &Block, applied: &Applied) -> Result<(), StoreError> {
        let (tip, _) = self.tip()?;
        if block.header.height != tip + 1 {
            return Err(StoreError::NotNext {
                tip,
                got: block.header.height,
            });
        }
        let h = block.header.height;
        let w = self.db.begin_write()?;
        {
            w.open_table(BLOCKS)?.insert(h, block.encode().as_slice())?;
            let mut receipts = Vec::new();
            agora_types::codec::Writer::put_vec(&mut receipts, &applied.receipts);
            w.open_table(RECEIPTS)?.insert(h, receipts.as_slice())?;
            let mut idx = w.open_table(TX_INDEX)?;
            for (i, stx) in block.txs.iter().enumerate() {
                idx.insert(&stx.id().0, (h, i as u32))?;
            }
            let mut state = w.open_table(STATE)?;
            for (k, v) in &applied.diff {
                match v {
                    Some(v) => {
                        state.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        state.remove(k.as_slice())?;
                    }
                }
            }
            let mut epochs = w.open_table(EPOCHS)?;
            for report in &applied.epochs {
                let json = serde_json::to_vec(report).map_err(|e| StoreError::Db(e.to_string()))?;
                epochs.insert(
                    epoch_key(&report.market, report.epoch).as_slice(),
                    json.as_slice(),
                )?;
            }
            w.open_table(META)?
                .insert("tip", tip_bytes(h, &block.id()).as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    /// The report of `market`'s epoch `epoch`, if this node applied the block that ran it.
    pub fn epoch_report(
        &self,
        market: &Hash,
        epoch: u64,
    ) -> Result<Option<agora_ledger::incentives::EpochReport>, StoreError> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(EPOCHS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(epoch_key(market, epoch).as_slice())? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(|_| {
                DecodeError::Invalid {
                    what: "epoch report",
                    reason: "not the JSON this node writes",
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Writes a small named value next to the chain (consensus bookkeeping).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        w.open_table(META)?.insert(key, value)?;
        w.commit()?;
        Ok(())
    }

    /// A value written with [`Store::put_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read()?;
        let m = read.open_table(META)?;
        Ok(m.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(BLOCKS)?;
        match t.get(height)? {
            Some(v) => Ok(Some(Block::decode_bounded(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn receipts(&self, height: u64) -> Result<Vec<Receipt>, StoreError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(RECEIPTS)?;
        match t.get(height)? {
            Some(v) => {
                let mut r = agora_types::codec::Reader::new(v.value());
                let receipts = r.vec("receipts", agora_types::tx::limits::MAX_TXS_PER_BLOCK, 40)?;
                r.finish()?;
                Ok(receipts)
            }
            None => Ok(Vec::new()),
        }
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>, StoreError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(TX_INDEX)?;
        Ok(t.get(&id.0)?.map(|v| {
            let (height, index) = v.value();
            TxLocation { height, index }
        }))
    }
}

fn tip_bytes(height: u64, id: &Hash) -> Vec<u8> {
    let mut b = height.to_le_bytes().to_vec();
    b.extend_from_slice(&id.0);
    b
}

/// A stable id of a genesis: the hash of its genesis state's root and chain id.
pub fn genesis_id(genesis: &Genesis) -> Hash {
    let root = genesis.into_state().map(|s| s.root()).unwrap_or_default();
    Hash::of_parts(
        agora_types::HashDomain::BlockId,
        &[genesis.chain_id.as_bytes(), &root.0],
    )
}

fn epoch_key(market: &Hash, epoch: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&market.0);
    key[32..].copy_from_slice(&epoch.to_be_bytes());
    key
}
