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
}
