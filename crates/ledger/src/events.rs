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
}
