//! What the runner reads from the network once the load has stopped and every process is back
//! up: each validator's finalized chain, each customer's bill at the gateway, the ledger's
//! channels, redeems and slashes. Written beside the history as `facts.json`, so the checker can
//! judge a run again later (`agora testnet chaos --check DIR`).

use agora_types::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Each validator's finalized blocks, from height 1 to its tip.
    pub validators: Vec<NodeChain>,
    /// Each customer's bill as the gateway keeps it (`GET /dashboard/api/me`).
    pub customers: Vec<CustomerBill>,
    /// Every payment channel the ledger holds, with the redeem transactions on it in block order.
    pub channels: Vec<ChannelFact>,
    /// Every provider of the run and what the ledger did to it.
    pub providers: Vec<ProviderFact>,
    /// Successful `Slash` transactions, in block order.
    pub slashes: Vec<SlashFact>,
    /// The gateway's account as the blocks move it (absent from runs before it).
    #[serde(default)]
    pub payer_book: Option<PayerBook>,
}

/// The gateway's balance, rebuilt from every block: what came in and went out by transfers,
/// the fees it paid, and what it put into channels. Each settled channel gives back its
/// deposit less what was redeemed, so `actual` must equal the sum with those refunds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerBook {
    pub payer: Address,
    pub transfers_in: Amount,
    pub transfers_out: Amount,
    pub fees: Amount,
    /// Opened and topped-up deposits.
    pub deposits: Amount,
    /// Its balance on the ledger at the end.
    pub actual: Amount,
    /// Transactions of the payer whose effect on its balance the book does not model (a bond,
    /// say): the comparison is void when there is any.
    pub unmodelled: Vec<String>,
}

impl PayerBook {
    /// Adds one included transaction at `height` (`applied`: it succeeded; a failed one still
    /// paid its fee).
    pub fn follow(
        &mut self,
        height: u64,
        tx: &agora_types::Tx,
        receipt: &agora_types::Receipt,
        applied: bool,
    ) -> eyre::Result<()> {
        use agora_types::TxBody;
        let add = |a: Amount, b: Amount| {
            a.checked_add(b)
                .ok_or_else(|| eyre::eyre!("the payer's book overflows at height {height}"))
        };
        if let (TxBody::Transfer { to, amount }, true) = (&tx.body, applied)
            && *to == self.payer
        {
            self.transfers_in = add(self.transfers_in, *amount)?;
        }
        if tx.signer != self.payer {
            return Ok(());
        }
        self.fees = add(self.fees, receipt.fee)?;
        if !applied {
            return Ok(());
        }
        match &tx.body {
            TxBody::Transfer { amount, .. } => {
                self.transfers_out = add(self.transfers_out, *amount)?
            }
            TxBody::OpenChannel { deposit, .. } => self.deposits = add(self.deposits, *deposit)?,
            TxBody::TopUpChannel { amount, .. } => self.deposits = add(self.deposits, *amount)?,
            // No balance moves (a settle's refund is counted from the channel's final state).
            TxBody::CloseChannel { .. }
            | TxBody::SettleChannel { .. }
            | TxBody::CommitReceipts { .. } => {}
            other => {
                // The transaction's type, as its JSON names it.
                let kind = serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "transaction".into());
                self.unmodelled.push(format!("{kind} at height {height}"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChain {
    pub node: String,
    pub blocks: Vec<BlockFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFact {
    pub height: u64,
    /// The block's id (the hash of its header, which holds the state root).
    pub id: Hash,
    pub state_root: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerBill {
    /// The name clients use in `Call::*::customer`.
    pub name: String,
    pub account: Address,
    /// What the gateway says the key spent.
    pub spent: Amount,
    /// What it may still spend.
    pub credit: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFact {
    pub id: Hash,
    pub payer: Address,
    pub provider: Address,
    pub deposit: Amount,
    /// The ledger's `redeemed` (cumulative paid out).
    pub redeemed: Amount,
    pub settled: bool,
    /// A close was requested (`close_deadline` set).
    pub closing: bool,
    /// Each `RedeemVoucher` transaction on this channel, in block order.
    pub redeems: Vec<RedeemFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemFact {
    pub height: u64,
    pub tx: Hash,
    /// The voucher's cumulative amount.
    pub cumulative: Amount,
    /// The voucher's nonce or sequence as signed (two redeems of one voucher share it).
    pub voucher: Hash,
    /// The ledger applied it (`false`: the transaction is in a block with a failed outcome).
    pub applied: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderFact {
    pub name: String,
    pub address: Address,
    /// Honest by the scenario (a cheater or hostile provider is not).
    pub honest: bool,
    /// Stake when the run began and at the end.
    pub stake_before: Amount,
    pub stake_after: Amount,
    /// Jailed at the end (`jailed_until` past the tip).
    pub jailed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashFact {
    pub height: u64,
    pub tx: Hash,
    pub offender: Address,
    /// The evidence's kind (`failed_audit`, `conflicting_votes`, ...).
    pub evidence: String,
}
