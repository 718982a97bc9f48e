//! Putting a provider on the ledger: its models (registered once, by whoever publishes them
//! first), its self-bonded stake and its price list. Idempotent: running it again changes only
//! what differs.

use agora_types::tx::{HardwareSummary, ModelKind, ModelPrice, ModelRegistration, ProviderInfo};
use agora_types::{Amount, Hash, TxBody};

use crate::chain::{ChainError, TxSender};
use crate::protocol::Price;

/// A model as the provider registers it.
#[derive(Debug, Clone)]
pub struct ModelListing {
    pub sha256: Hash,
    pub name: String,
    /// Free-text architecture family (informational).
    pub family: String,
    /// What the model is for; gateways route by it.
    pub kind: ModelKind,
    pub license: String,
    /// Royalty asked if this provider is the first to register the model.
    pub royalty_bps: u16,
    pub price: Price,
}

/// What [`ensure_registered`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registration {
    pub models_registered: usize,
    pub bonded: Amount,
    pub provider_updated: bool,
}

/// Registers missing models, tops self-stake up to `stake`, and (re)registers the provider
/// record with `listings`' prices, `peer_id` and `endpoints` when it differs from the ledger's.
pub async fn ensure_registered(
    sender: &TxSender,
    listings: &[ModelListing],
    stake: Amount,
    peer_id: Vec<u8>,
    endpoints: Vec<String>,
    hardware: HardwareSummary,
) -> Result<Registration, ChainError> {
    let chain = sender.chain();
    let me = sender.address();
    let mut out = Registration::default();
    for l in listings {
        if chain.model(&l.sha256).await?.is_none() {
            let sent = sender
                .send(TxBody::RegisterModel(ModelRegistration {
                    sha256: l.sha256,
                    name: l.name.clone(),
                    family: l.family.clone(),
                    kind: l.kind,
                    license: l.license.clone(),
                    royalty_bps: l.royalty_bps,
                }))
                .await;
            match sent {
                Ok(_) => out.models_registered += 1,
                // Another provider of the same model registered it between our read and our
                // transaction (found by the chaos suite: two providers starting together).
                // The registry keeps the first registration; serving it is all we wanted.
                Err(ChainError::TxFailed { .. }) if chain.model(&l.sha256).await?.is_some() => {}
                Err(e) => return Err(e),
            }
        }
    }
    let account = chain.account(&me).await?;
    if account.self_stake < stake {
        let amount = stake.saturating_sub(account.self_stake);
        sender.send(TxBody::Bond { target: me, amount }).await?;
        out.bonded = amount;
    }
    let info = ProviderInfo {
        peer_id,
        endpoints,
        hardware,
        models: listings
            .iter()
            .map(|l| ModelPrice {
                model: l.sha256,
                input_per_million: l.price.input_per_million,
                output_per_million: l.price.output_per_million,
            })
            .collect(),
    };
    let current = chain.provider(&me).await?;
    if current.as_ref().map(|p| &p.record.info) != Some(&info) {
        sender.send(TxBody::RegisterProvider(info)).await?;
        out.provider_updated = true;
    }
    Ok(out)
}
