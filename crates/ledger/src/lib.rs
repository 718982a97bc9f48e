//! The pure deterministic ledger state machine: apply(state, block) -> (state', receipts, events).
//!
//! ```text
//!            ┌──────────── block ────────────┐
//!  state ──► │ header checks (chain, height,  │
//!            │   parent, time)                │
//!            │ batch signature check          │
//!            │ per tx: size, chain, nonce, fee│──► invalid tx => invalid block
//!            │   charge fee, bump nonce       │
//!            │   run action ──────────────────│──► failed action => failed receipt, state as
//!            │     accounts | staking |       │    if only the fee had been charged
//!            │     registry | channels |      │
//!            │     slashing | audit           │
//!            │ release matured earnings       │
//!            │ commit: state root, diff       │──► roots must equal the header's
//!            └────────────────────────────────┘
//! ```
//! No clock, no randomness that changes results, no floats, no hash maps: time arrives in the
//! block header, and every map is a `BTreeMap`. All arithmetic is checked `u128`.

pub mod accounts;
pub mod audit;
pub mod channels;
pub mod earnings;
pub mod emission;
pub mod epochs;
pub mod error;
pub mod events;
pub mod genesis;
pub mod incentives;
pub mod params;
pub mod registry;
pub mod slashing;
pub mod staking;
pub mod state;
pub mod yuma;

pub use error::{BlockError, ExecError, TxError};
pub use events::Event;
pub use genesis::Genesis;
pub use params::Params;
pub use state::{State, StateDiff, StateKey};

use agora_types::tx::limits::{MAX_RECEIPT_MESSAGE, MAX_TX_BYTES, MAX_TXS_PER_BLOCK};
use agora_types::{
    Address, BatchVerifier, Block, BlockHeader, Encode, Outcome, Receipt, SignDomain, SignedTx,
    TxBody,
};

/// The result of applying a block.
#[derive(Debug, Clone)]
pub struct Applied {
    pub receipts: Vec<Receipt>,
    pub events: Vec<Event>,
    /// The records the block changed, for storage to write with the block.
    pub diff: StateDiff,
    /// The incentive epochs this block ran (its last block of an epoch), one per market:
    /// every account's line and why (`incentives::report`). Outputs, like events.
    pub epochs: Vec<incentives::EpochReport>,
}

/// Checks that a transaction could be included on top of `state` (the mempool's admission test
/// and the first half of every block's per-transaction check). Does not check the signature.
pub fn check_tx_static(state: &State, stx: &SignedTx) -> Result<(), TxError> {
    let len = stx.encode().len();
    if len > MAX_TX_BYTES {
        return Err(TxError::TooLarge {
            len,
            max: MAX_TX_BYTES,
        });
    }
    if stx.tx.chain_id != state.chain_id() {
        return Err(TxError::WrongChain {
            expected: state.chain_id().to_string(),
            got: stx.tx.chain_id.clone(),
        });
    }
    let min = state.params().min_fee;
    if stx.tx.fee < min {
        return Err(TxError::FeeTooLow {
            offered: stx.tx.fee,
            min,
        });
    }
    Ok(())
}

/// Full admission check against the current state, including nonce, fee and signature.
pub fn check_tx(state: &State, stx: &SignedTx) -> Result<(), TxError> {
    check_tx_static(state, stx)?;
    let acct = state.account(&stx.tx.signer);
    if stx.tx.nonce != acct.nonce {
        return Err(TxError::BadNonce {
            expected: acct.nonce,
            got: stx.tx.nonce,
        });
    }
    if acct.balance < stx.tx.fee {
        return Err(TxError::CannotPayFee {
            balance: acct.balance,
            fee: stx.tx.fee,
        });
    }
    stx.verify_signature().map_err(|_| TxError::BadSignature)
}

/// Applies one already signature-checked transaction: fee and nonce always, then the action.
fn apply_tx(
    state: &mut State,
    height: u64,
    proposer: &Address,
    stx: &SignedTx,
    events: &mut Vec<Event>,
) -> Result<Receipt, TxError> {
    check_tx_static(state, stx)?;
    let tx = &stx.tx;
    let acct = state.account(&tx.signer);
    if tx.nonce != acct.nonce {
        return Err(TxError::BadNonce {
            expected: acct.nonce,
            got: tx.nonce,
        });
    }
    events.push(accounts::charge_fee(state, &tx.signer, tx.fee, proposer)?);
    let signer = &tx.signer;
    let result: Result<Vec<Event>, ExecError> = match &tx.body {
        TxBody::Transfer { to, amount } => {
            accounts::transfer(state, signer, to, *amount).map_err(Into::into)
        }
        TxBody::Bond { target, amount } => {
            staking::bond(state, height, signer, target, *amount).map_err(Into::into)
        }
        TxBody::Unbond { target, amount } => {
            staking::unbond(state, height, signer, target, *amount).map_err(Into::into)
        }
        TxBody::Withdraw => staking::withdraw(state, height, signer).map_err(Into::into),
        TxBody::RegisterValidator => {
            registry::register_validator(state, height, signer).map_err(Into::into)
        }
        TxBody::RegisterProvider(info) => {
            registry::register_provider(state, height, signer, info.clone()).map_err(Into::into)
        }
        TxBody::RegisterModel(info) => {
            registry::register_model(state, height, signer, info.clone()).map_err(Into::into)
        }
        TxBody::RegisterDataset(info) => {
            registry::register_dataset(state, height, signer, info.clone()).map_err(Into::into)
        }
        TxBody::OpenChannel {
            provider,
            deposit,
            expiry_height,
        } => channels::open(
            state,
            height,
            signer,
            tx.nonce,
            provider,
            *deposit,
            *expiry_height,
        )
        .map_err(Into::into),
        TxBody::TopUpChannel { channel, amount } => {
            channels::top_up(state, signer, channel, *amount).map_err(Into::into)
        }
        TxBody::RedeemVoucher(v) => channels::redeem(state, height, signer, v).map_err(Into::into),
        TxBody::CloseChannel { channel } => {
            channels::close(state, height, signer, channel).map_err(Into::into)
        }
        TxBody::SettleChannel { channel } => {
            channels::settle(state, height, signer, channel).map_err(Into::into)
        }
        TxBody::Slash(evidence) => {
            slashing::slash(state, height, signer, evidence).map_err(Into::into)
        }
        TxBody::CommitReceipts { root, count } => {
            audit::commit_receipts(state, height, signer, *root, *count).map_err(Into::into)
        }
        TxBody::CreateMarket(spec) => {
            incentives::markets::create(state, height, signer, spec).map_err(Into::into)
        }
        TxBody::JoinMarket { market } => {
            incentives::markets::join(state, height, signer, market).map_err(Into::into)
        }
        TxBody::CommitWeights { market, commitment } => {
            incentives::markets::commit(state, height, signer, market, commitment)
                .map_err(Into::into)
        }
        TxBody::RevealWeights(reveal) => {
            incentives::markets::reveal(state, height, signer, reveal).map_err(Into::into)
        }
    };
    let outcome = match result {
        Ok(evs) => {
            events.extend(evs);
            Outcome::Success
        }
        Err(e) => Outcome::Failed {
            code: e.code(),
            message: receipt_message(e.to_string()),
        },
    };
    Ok(Receipt {
        tx: stx.id(),
        fee: tx.fee,
        outcome,
    })
}

/// A failure message cut to what a receipt may carry (at a character boundary): a message
/// quoting a caller's string (a chain id, escaped) could otherwise exceed the receipt's decode
/// bound and make the block's receipts unreadable.
fn receipt_message(mut message: String) -> String {
    if message.len() > MAX_RECEIPT_MESSAGE {
        let mut end = MAX_RECEIPT_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

fn check_header(state: &State, header: &BlockHeader, tx_count: usize) -> Result<(), BlockError> {
    if header.chain_id != state.chain_id() {
        return Err(BlockError::WrongChain {
            expected: state.chain_id().to_string(),
            got: header.chain_id.clone(),
        });
    }
    if header.height != state.height() + 1 {
        return Err(BlockError::WrongHeight {
            expected_prev: state.height(),
            got: header.height,
        });
    }
    if header.parent != state.last_block() {
        return Err(BlockError::WrongParent {
            expected: state.last_block(),
            got: header.parent,
        });
    }
    if header.timestamp_ms < state.last_timestamp_ms() {
        return Err(BlockError::TimestampRegressed {
            parent: state.last_timestamp_ms(),
            got: header.timestamp_ms,
        });
    }
    if tx_count > MAX_TXS_PER_BLOCK {
        return Err(BlockError::TooManyTxs {
            count: tx_count,
            max: MAX_TXS_PER_BLOCK,
        });
    }
    Ok(())
}

/// Says whether the transaction at an index of the block (or candidate list) had its signature
/// checked by this replica already (for example at mempool admission). It must only answer
/// `true` for a transaction whose exact bytes passed
/// [`SignedTx::verify_signature`]; the transaction id commits to those bytes, so a set of
/// admitted ids is a sound answer. Skipping such checks never changes a verdict.
pub type SignatureChecked<'a> = &'a dyn Fn(usize, &SignedTx) -> bool;

/// Checks in one batch the signatures of every transaction `checked` does not vouch for;
/// returns the indices (into `txs`) of the bad ones.
fn bad_signatures(txs: &[SignedTx], checked: SignatureChecked<'_>) -> Vec<usize> {
    let mut batch = BatchVerifier::new();
    let mut queued = Vec::new();
    for (i, stx) in txs.iter().enumerate() {
        if checked(i, stx) {
            continue;
        }
        batch.queue(
            &stx.tx.signer,
            SignDomain::Transaction,
            &stx.tx.encode(),
            &stx.signature,
        );
        queued.push(i);
    }
    batch
        .verify()
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| queued.get(k).copied())
        .collect()
}

/// Applies a block in place. On `Err` the state may be partly changed and must be discarded
/// (use [`apply_block`] to keep the input untouched).
pub fn apply_block_in_place(state: &mut State, block: &Block) -> Result<Applied, BlockError> {
    apply_block_in_place_with(state, block, &|_, _| false)
}

/// [`apply_block_in_place`] that skips the signatures `checked` vouches for.
pub fn apply_block_in_place_with(
    state: &mut State,
    block: &Block,
    checked: SignatureChecked<'_>,
) -> Result<Applied, BlockError> {
    let header = &block.header;
    check_header(state, header, block.txs.len())?;
    if let Some(index) = bad_signatures(&block.txs, checked).first() {
        return Err(BlockError::InvalidTx {
            index: *index,
            error: TxError::BadSignature,
        });
    }
    let tx_root = Block::tx_root_of(&block.txs);
    if tx_root != header.tx_root {
        return Err(BlockError::RootMismatch {
            what: "tx",
            claimed: header.tx_root,
            computed: tx_root,
        });
    }
    let mut receipts = Vec::with_capacity(block.txs.len());
    let mut events = Vec::new();
    for (index, stx) in block.txs.iter().enumerate() {
        let receipt = apply_tx(state, header.height, &header.proposer, stx, &mut events)
            .map_err(|error| BlockError::InvalidTx { index, error })?;
        receipts.push(receipt);
    }
    let receipts_root = Receipt::receipts_root(&receipts);
    if receipts_root != header.receipts_root {
        return Err(BlockError::RootMismatch {
            what: "receipts",
            claimed: header.receipts_root,
            computed: receipts_root,
        });
    }
    let (finished, epochs) = finish_block(state, header);
    events.extend(finished);
    let (root, diff) = state.commit();
    if root != header.state_root {
        return Err(BlockError::RootMismatch {
            what: "state",
            claimed: header.state_root,
            computed: root,
        });
    }
    state.set_last_block(block.id());
    Ok(Applied {
        receipts,
        events,
        diff,
        epochs,
    })
}

/// `apply(state, block) -> (state', receipts, events)`, leaving `state` untouched.
pub fn apply_block(state: &State, block: &Block) -> Result<(State, Applied), BlockError> {
    apply_block_with(state, block, &|_, _| false)
}

/// [`apply_block`] that skips the signatures `checked` vouches for.
pub fn apply_block_with(
    state: &State,
    block: &Block,
    checked: SignatureChecked<'_>,
) -> Result<(State, Applied), BlockError> {
    let mut next = state.clone();
    let applied = apply_block_in_place_with(&mut next, block, checked)?;
    Ok((next, applied))
}

/// The end of every block: at the last block of an incentive epoch, Yuma runs and emission is
/// paid; then locked earnings due at this height join their balances, and the height and time
/// advance.
fn finish_block(
    state: &mut State,
    header: &BlockHeader,
) -> (Vec<Event>, Vec<incentives::EpochReport>) {
    let meta = state.meta_mut();
    meta.height = header.height;
    meta.last_timestamp_ms = header.timestamp_ms;
    let (mut events, epochs) = incentives::finish_epoch(state, header.height);
    events.extend(earnings::release(state, header.height));
    (events, epochs)
}

/// What a proposer needs to build a block.
#[derive(Debug, Clone)]
pub struct BlockContext {
    pub timestamp_ms: u64,
    pub proposer: Address,
}

/// A block built by a proposer, with the state it leads to.
pub struct Built {
    pub block: Block,
    pub state: State,
    pub applied: Applied,
    /// Candidates left out and why (bad signature, wrong nonce, cannot pay the fee, ...).
    pub rejected: Vec<(SignedTx, TxError)>,
}

/// Builds the next block from candidate transactions (in the order given), skipping any that
/// cannot be included. The returned state is what every replica will reach by applying the block.
pub fn build_block(
    state: &State,
    ctx: &BlockContext,
    candidates: impl IntoIterator<Item = SignedTx>,
) -> Built {
    build_block_with(state, ctx, candidates, &|_, _| false)
}

/// [`build_block`] that skips the signatures `checked` vouches for.
pub fn build_block_with(
    state: &State,
    ctx: &BlockContext,
    candidates: impl IntoIterator<Item = SignedTx>,
    checked: SignatureChecked<'_>,
) -> Built {
    let mut next = state.clone();
    let height = state.height() + 1;
    let candidates: Vec<SignedTx> = candidates.into_iter().take(MAX_TXS_PER_BLOCK).collect();
    let bad: std::collections::BTreeSet<usize> =
        bad_signatures(&candidates, checked).into_iter().collect();
    let mut txs = Vec::new();
    let mut receipts = Vec::new();
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (i, stx) in candidates.into_iter().enumerate() {
        if bad.contains(&i) {
            rejected.push((stx, TxError::BadSignature));
            continue;
        }
        // A rejected tx may have charged nothing: apply_tx checks before it writes.
        match apply_tx(&mut next, height, &ctx.proposer, &stx, &mut events) {
            Ok(receipt) => {
                receipts.push(receipt);
                txs.push(stx);
            }
            Err(e) => rejected.push((stx, e)),
        }
    }
    let timestamp_ms = ctx.timestamp_ms.max(state.last_timestamp_ms());
    let mut header = BlockHeader {
        chain_id: state.chain_id().to_string(),
        height,
        parent: state.last_block(),
        timestamp_ms,
        proposer: ctx.proposer,
        tx_root: Block::tx_root_of(&txs),
        receipts_root: Receipt::receipts_root(&receipts),
        state_root: agora_types::Hash::ZERO,
    };
    let (finished, epochs) = finish_block(&mut next, &header);
    events.extend(finished);
    let (root, diff) = next.commit();
    header.state_root = root;
    let block = Block { header, txs };
    next.set_last_block(block.id());
    Built {
        block,
        state: next,
        applied: Applied {
            receipts,
            events,
            diff,
            epochs,
        },
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{Amount, SecretKey, Tx};

    #[test]
    fn skipping_vouched_signatures_never_lets_an_unvouched_bad_one_through() {
        let keys: Vec<SecretKey> = (0..2)
            .map(|i| SecretKey::from_test_seed(&format!("skip-{i}")))
            .collect();
        let state = Genesis {
            chain_id: "skip".into(),
            timestamp_ms: 0,
            params: Params::default(),
            accounts: keys
                .iter()
                .map(|k| genesis::GenesisAccount {
                    address: k.public(),
                    balance: Amount::from_agr(10),
                })
                .collect(),
            validators: Vec::new(),
        }
        .into_state()
        .unwrap();
        let transfer = |k: &SecretKey| {
            Tx {
                chain_id: "skip".into(),
                signer: k.public(),
                nonce: 0,
                fee: state.params().min_fee,
                body: TxBody::Transfer {
                    to: k.public(),
                    amount: Amount::from_agr(1),
                },
            }
            .sign(k)
        };
        let ctx = BlockContext {
            timestamp_ms: 1,
            proposer: keys[0].public(),
        };
        let good = build_block(&state, &ctx, [transfer(&keys[0]), transfer(&keys[1])]);
        assert!(good.rejected.is_empty());
        // Vouching for valid signatures changes nothing.
        let (s1, _) = apply_block(&state, &good.block).unwrap();
        let (s2, _) = apply_block_with(&state, &good.block, &|_, _| true).unwrap();
        let (s3, _) = apply_block_with(&state, &good.block, &|i, _| i == 1).unwrap();
        assert_eq!(s1.root(), s2.root());
        assert_eq!(s1.root(), s3.root());
        // A forged signature at index 1 is caught unless index 1 is vouched for.
        let mut forged = good.block.clone();
        forged.txs[1].signature = forged.txs[0].signature;
        let err = apply_block_with(&state, &forged, &|i, _| i == 0).unwrap_err();
        assert!(matches!(
            err,
            BlockError::InvalidTx {
                index: 1,
                error: TxError::BadSignature
            }
        ));
        assert!(apply_block(&state, &forged).is_err());
        // Building skips only vouched candidates: an unvouched forged one is rejected.
        let mut bad = transfer(&keys[1]);
        bad.signature = transfer(&keys[0]).signature;
        let built = build_block_with(&state, &ctx, [transfer(&keys[0]), bad], &|i, _| i == 0);
        assert_eq!(built.block.txs.len(), 1);
        assert!(matches!(built.rejected[0].1, TxError::BadSignature));
    }
}
