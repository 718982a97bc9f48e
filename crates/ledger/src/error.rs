//! Error enums, one per operation. Each has a stable numeric code that goes into receipts, so
//! clients can match on failures without parsing messages.

use agora_types::{Amount, Hash};
use thiserror::Error;

/// Why a transaction cannot be included in a block at all (the block would be invalid).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("encoded transaction is {len} bytes; at most {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("transaction is for chain {got:?}, this is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("signature does not verify for the signer")]
    BadSignature,
    #[error("nonce {got} is wrong; the account's next nonce is {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("fee {offered} is below the minimum {min}")]
    FeeTooLow { offered: Amount, min: Amount },
    #[error("balance {balance} cannot pay the fee {fee}")]
    CannotPayFee { balance: Amount, fee: Amount },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("balance {balance} is less than {needed}")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("recipient balance would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BondError {
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("balance {balance} is less than {needed}")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("target is neither the signer nor a registered validator or provider")]
    UnknownTarget,
    #[error("target is jailed until height {until}")]
    TargetJailed { until: u64 },
    #[error("stake would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnbondError {
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("bonded {bonded} is less than {requested}")]
    InsufficientStake { bonded: Amount, requested: Amount },
    #[error(
        "a registered provider's self-bonded stake would drop to {left}, below the provider minimum {min}"
    )]
    BelowProviderMinimum { left: Amount, min: Amount },
    #[error("amount would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WithdrawError {
    #[error("nothing has finished unbonding (the next entry matures at height {next:?})")]
    NothingMatured { next: Option<u64> },
    #[error("balance would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    #[error("self-bonded stake {bonded} is below the minimum {min}")]
    InsufficientStake { bonded: Amount, min: Amount },
    #[error("already registered")]
    AlreadyRegistered,
    #[error("jailed until height {until}")]
    Jailed { until: u64 },
    #[error("royalty {bps} bps exceeds the maximum {max} bps")]
    RoyaltyTooHigh { bps: u16, max: u16 },
    #[error("model {0} is not registered")]
    UnknownModel(Hash),
    #[error("{0}")]
    Invalid(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    #[error("deposit must be positive")]
    ZeroAmount,
    #[error("balance {balance} is less than {needed}")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("provider is not registered")]
    UnknownProvider,
    #[error("provider is jailed until height {until}")]
    ProviderJailed { until: u64 },
    #[error("expiry height {expiry} is not after the current height {height}")]
    ExpiryInPast { expiry: u64, height: u64 },
    #[error("no such channel")]
    UnknownChannel,
    #[error("channel is already settled")]
    Settled,
    #[error("channel is closing; it can no longer be topped up")]
    Closing,
    #[error("only the channel's {0} may do this")]
    NotAllowed(&'static str),
    #[error("the channel cannot be settled before height {at}")]
    TooEarly { at: u64 },
    #[error("deposit would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedeemError {
    #[error("no such channel")]
    UnknownChannel,
    #[error("channel is already settled")]
    Settled,
    #[error("only the channel's provider may redeem")]
    NotProvider,
    #[error("voucher is for chain {0:?}")]
    WrongChain(String),
    #[error("voucher signature is not the payer's")]
    BadSignature,
    #[error(
        "voucher cumulative {cumulative} does not exceed what was already redeemed ({redeemed})"
    )]
    NotIncreasing {
        cumulative: Amount,
        redeemed: Amount,
    },
    #[error("voucher cumulative {cumulative} exceeds the deposit {deposit}")]
    OverDeposit { cumulative: Amount, deposit: Amount },
    #[error("voucher per-model list must be sorted by model with no duplicates")]
    UnsortedModels,
    #[error("model {0} is not registered")]
    UnknownModel(Hash),
    #[error("per-model amount for {0} went down")]
    ModelAmountDecreased(Hash),
    #[error(
        "per-model increases sum to {models}; they must sum to exactly the voucher's increase {increase}"
    )]
    ModelAmountsDoNotMatchIncrease { models: Amount, increase: Amount },
    #[error("amount would overflow")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlashError {
    #[error("the offender may not report itself")]
    ReporterIsOffender,
    #[error("the two claims or votes do not conflict")]
    NoConflict,
    #[error("the offender is not a registered validator")]
    NotAValidator,
    #[error("a claim signature is not the offender's")]
    BadSignature,
    #[error("this offence was already slashed")]
    AlreadySlashed,
    #[error("the offender has no stake to slash")]
    NothingToSlash,
    #[error("amount would overflow")]
    Overflow,
    #[error("the receipt is for chain {0:?}")]
    ReceiptWrongChain(String),
    #[error("the receipt's signature is not its provider's")]
    BadReceiptSignature,
    #[error("the receipt's provider is not a registered provider")]
    NotAProvider,
    #[error("{count} verdicts; between {min} and {max} failing verdicts are needed")]
    VerdictCount {
        count: usize,
        min: usize,
        max: usize,
    },
    #[error("verdict {index} is for chain {chain:?}")]
    VerdictWrongChain { index: usize, chain: String },
    #[error("verdict {index} is about another receipt")]
    VerdictWrongReceipt { index: usize },
    #[error("verdict {index} does not say the audit failed")]
    VerdictNotFailed { index: usize },
    #[error("verdict {index} is signed by the offender itself")]
    VerdictFromOffender { index: usize },
    #[error("verdict {index} is by an auditor who already signed an earlier verdict")]
    DuplicateAuditor { index: usize },
    #[error("verdict {index} is not by an active validator")]
    VerdictNotFromValidator { index: usize },
    #[error("verdict {index}'s signature is not its auditor's")]
    BadVerdictSignature { index: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitError {
    #[error("a commitment stands for 1 to {max} receipts, not {count}")]
    BadCount { count: u32, max: u32 },
    #[error("the zero root commits to nothing")]
    ZeroRoot,
    #[error("this account already committed this root (at height {height})")]
    AlreadyCommitted { height: u64 },
}

/// Why a market or weights transaction failed (`incentives::markets`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarketError {
    #[error("market name must be 1-64 bytes of a-z, 0-9, '/', '-', '_' or '.'")]
    BadName,
    #[error("a market covers 1 to 16 distinct registered models")]
    BadModels,
    #[error("model {0} is not registered")]
    UnknownModel(Hash),
    #[error("model {model} already belongs to market {market}")]
    ModelTaken { model: Hash, market: Hash },
    #[error("a market with this name exists")]
    NameTaken,
    #[error("the ledger holds its maximum of {max} markets")]
    TooManyMarkets { max: u32 },
    #[error("balance {balance} cannot lock the market deposit {deposit}")]
    CannotPayDeposit { balance: Amount, deposit: Amount },
    #[error("no market {0}")]
    UnknownMarket(Hash),
    #[error("the signer is not a registered provider")]
    NotAProvider,
    #[error("the signer is not a registered validator")]
    NotAValidator,
    #[error("jailed until height {until}")]
    Jailed { until: u64 },
    #[error("the provider serves none of the market's models")]
    ServesNoModel,
    #[error("already a member")]
    AlreadyMember,
    #[error("the market is full and every member is within its immunity period")]
    MarketFull,
    #[error("no weights committed to in this market")]
    NoCommitment,
    #[error("committed at height {committed_at}: weights can be revealed from height {from}")]
    RevealTooEarly { committed_at: u64, from: u64 },
    #[error("committed at height {committed_at}: the reveal window closed at height {closed}")]
    RevealExpired { committed_at: u64, closed: u64 },
    #[error("the revealed weights and salt do not match the commitment")]
    CommitmentMismatch,
    #[error("weights must name 1 to {max} distinct members, at least one above 0")]
    BadWeights { max: u32 },
    #[error("provider {0} is not a member of the market")]
    NotAMember(agora_types::Address),
    #[error("amount would overflow")]
    Overflow,
}

/// Why a transaction's action failed (it stays in the block with a failed receipt).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    #[error("transfer: {0}")]
    Transfer(#[from] TransferError),
    #[error("bond: {0}")]
    Bond(#[from] BondError),
    #[error("unbond: {0}")]
    Unbond(#[from] UnbondError),
    #[error("withdraw: {0}")]
    Withdraw(#[from] WithdrawError),
    #[error("register: {0}")]
    Register(#[from] RegisterError),
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("redeem: {0}")]
    Redeem(#[from] RedeemError),
    #[error("slash: {0}")]
    Slash(#[from] SlashError),
    #[error("commit receipts: {0}")]
    Commit(#[from] CommitError),
    #[error("market: {0}")]
    Market(#[from] MarketError),
}

impl ExecError {
    /// Stable code for receipts: one per operation (the message says which rule failed).
    pub fn code(&self) -> u16 {
        match self {
            ExecError::Transfer(_) => 100,
            ExecError::Bond(_) => 200,
            ExecError::Unbond(_) => 300,
            ExecError::Withdraw(_) => 400,
            ExecError::Register(_) => 500,
            ExecError::Channel(_) => 600,
            ExecError::Redeem(_) => 700,
            ExecError::Slash(_) => 800,
            ExecError::Commit(_) => 900,
            ExecError::Market(_) => 1000,
        }
    }
}

/// Why a block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block is for chain {got:?}, expected {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("block height {got} does not follow {expected_prev}")]
    WrongHeight { expected_prev: u64, got: u64 },
    #[error("block parent {got} is not the last block {expected}")]
    WrongParent { expected: Hash, got: Hash },
    #[error("block timestamp {got} ms is before the parent's {parent} ms")]
    TimestampRegressed { parent: u64, got: u64 },
    #[error("block has {count} transactions; at most {max} allowed")]
    TooManyTxs { count: usize, max: usize },
    #[error("transaction {index} is invalid: {error}")]
    InvalidTx { index: usize, error: TxError },
    #[error("header {what} root {claimed} does not match the computed {computed}")]
    RootMismatch {
        what: &'static str,
        claimed: Hash,
        computed: Hash,
    },
}
