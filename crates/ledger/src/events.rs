//! What a block did, for indexers, wallets and the node's logs. Events are outputs, not state:
//! they are not part of the state root.

use agora_types::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    FeePaid {
        payer: Address,
        fee: Amount,
        burned: Amount,
        to_proposer: Amount,
    },
    Transferred {
        from: Address,
        to: Address,
        amount: Amount,
    },
    Bonded {
        delegator: Address,
        target: Address,
        amount: Amount,
    },
    Unbonding {
        delegator: Address,
        target: Address,
        amount: Amount,
        release_height: u64,
    },
    Withdrawn {
        delegator: Address,
        amount: Amount,
    },
    ValidatorRegistered {
        validator: Address,
    },
    ProviderRegistered {
        provider: Address,
    },
    ModelRegistered {
        model: Hash,
        owner: Address,
    },
    DatasetRegistered {
        dataset: Hash,
        owner: Address,
    },
    ChannelOpened {
        channel: Hash,
        payer: Address,
        provider: Address,
        deposit: Amount,
    },
    ChannelToppedUp {
        channel: Hash,
        amount: Amount,
    },
    VoucherRedeemed {
        channel: Hash,
        increase: Amount,
        to_provider: Amount,
        royalties: Amount,
        protocol_fee: Amount,
    },
    ChannelClosing {
        channel: Hash,
        deadline: u64,
    },
    ChannelSettled {
        channel: Hash,
        refund: Amount,
    },
    Slashed {
        offender: Address,
        slashed: Amount,
        burned: Amount,
        reporter: Address,
        reward: Amount,
    },
    /// Channel earnings of a provider locked until the end of block `unlock_height`.
    EarningsLocked {
        provider: Address,
        amount: Amount,
        unlock_height: u64,
    },
    /// Locked earnings that joined the provider's balance at the end of this block.
    EarningsUnlocked {
        provider: Address,
        amount: Amount,
    },
    /// A failed audit was accepted (the stake slash itself is the `Slashed` event beside it):
    /// `forfeited` went back from the provider to the receipt's payer, and the provider is on
    /// probation until `probation_until`.
    AuditFailed {
        provider: Address,
        receipt: Hash,
        payer: Address,
        forfeited: Amount,
        probation_until: u64,
    },
    /// A gateway committed to a batch of receipts; the id of this block is their audit beacon.
    ReceiptsCommitted {
        committer: Address,
        root: Hash,
        count: u32,
        height: u64,
    },
    MarketCreated {
        market: Hash,
        owner: Address,
        deposit: Amount,
    },
    /// A provider took a slot; `replaced` is the member pruned to make room, if any.
    MarketJoined {
        market: Hash,
        provider: Address,
        slot: u32,
        replaced: Option<Address>,
    },
    WeightsCommitted {
        market: Hash,
        validator: Address,
    },
    WeightsRevealed {
        market: Hash,
        validator: Address,
        committed_at: u64,
    },
    /// A market's Yuma epoch ran and its share of the epoch's emission was paid.
    EpochPaid {
        market: Hash,
        epoch: u64,
        usage: Amount,
        emission: Amount,
        owner: Amount,
        providers: Amount,
        validators: Amount,
        treasury: Amount,
        /// Why a pool went elsewhere than its own recipients (`emission::Redirect`), if it did.
        redirects: Vec<crate::emission::Redirect>,
    },
    /// One account's line of an epoch (`role`: "provider", "validator" or "owner"); providers'
    /// emission is locked like their channel earnings.
    EmissionPaid {
        market: Hash,
        epoch: u64,
        account: Address,
        role: String,
        amount: Amount,
    },
    /// An epoch whose emission was not minted, and why.
    EmissionNotMinted {
        epoch: u64,
        amount: Amount,
        reason: String,
    },
}
