//! The validator committee, derived from the ledger's staking module.
//!
//! Simplex counts votes (n >= 3f + 1, each member one vote), so stake decides *membership*, not
//! vote weight: a validator is in the committee when it is registered, not jailed, and its total
//! bonded stake (self + delegated) is at least `Params::min_validator_stake`; the top
//! `Params::max_validators` by stake are taken (ties broken by address, so every replica agrees).
//!
//! The committee for epoch `e` is computed from the finalized state at the last block of epoch
//! `e - 1` (`Params::epoch_length_blocks` per epoch); epoch 0 uses the genesis state.

use crate::app::ValidatorKey;
use agora_ledger::State;
use agora_types::{Address, Amount};
use commonware_codec::DecodeExt;

/// Why a committee could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum CommitteeError {
    #[error("no validator has at least the minimum stake")]
    Empty,
    #[error("address {0} is not a valid ed25519 public key")]
    BadKey(Address),
}

/// The committee members by descending stake, as `(address, stake)`
/// ([`agora_ledger::epochs::active_set`]).
pub fn committee(state: &State) -> Vec<(Address, Amount)> {
    agora_ledger::epochs::active_set(state)
}

/// The committee as consensus keys (sorted the way simplex orders participants).
pub fn committee_keys(state: &State) -> Result<Vec<ValidatorKey>, CommitteeError> {
    let members = committee(state);
    if members.is_empty() {
        return Err(CommitteeError::Empty);
    }
    let mut keys = members
        .iter()
        .map(|(address, _)| key_of(address))
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort();
    Ok(keys)
}

/// An Agora address as a consensus key (both are the raw ed25519 public key).
pub fn key_of(address: &Address) -> Result<ValidatorKey, CommitteeError> {
    ValidatorKey::decode(bytes::Bytes::copy_from_slice(&address.0))
        .map_err(|_| CommitteeError::BadKey(*address))
}

/// The epoch a height belongs to.
pub fn epoch_of(height: u64, epoch_length_blocks: u64) -> u64 {
    agora_ledger::epochs::epoch_of(height, epoch_length_blocks)
}

/// Whether the committee derived from `state` changes at the next epoch boundary compared
/// with `current` (the engine for the next epoch must then be started with the new set).
pub fn committee_changes(state: &State, current: &[ValidatorKey]) -> bool {
    committee_keys(state).map_or(true, |next| next.as_slice() != current)
}
