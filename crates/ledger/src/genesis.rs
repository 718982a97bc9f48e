//! The genesis: chain id, parameters and initial allocations, read from a JSON file.

use crate::params::{Params, ParamsError};
use crate::state::{Meta, State, Supply, ValidatorRecord};
use agora_types::{Address, Amount};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub timestamp_ms: u64,
    #[serde(default)]
    pub params: Params,
    pub accounts: Vec<GenesisAccount>,
    /// Validators with self-bonded stake, taken out of nothing else: their stake is part of
    /// the genesis supply.
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub address: Address,
    pub stake: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("invalid params: {0}")]
    Params(#[from] ParamsError),
    #[error("chain id must be 1..=64 characters of [a-z0-9-]")]
    BadChainId,
    #[error("account {0} appears twice")]
    DuplicateAccount(Address),
    #[error("validator {0} appears twice")]
    DuplicateValidator(Address),
    #[error("total supply overflows")]
    Overflow,
}

impl Genesis {
    /// Builds the state at height 0.
    pub fn into_state(&self) -> Result<State, GenesisError> {
        self.params.validate()?;
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= agora_types::tx::limits::MAX_CHAIN_ID
            && self
                .chain_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(GenesisError::BadChainId);
        }
        let mut total = Amount::ZERO;
        let mut state = State::empty(Meta {
            chain_id: self.chain_id.clone(),
            height: 0,
            last_timestamp_ms: self.timestamp_ms,
            supply: Supply::default(),
            params: self.params.clone(),
        });
        for a in &self.accounts {
            if state.accounts.contains_key(&a.address) {
                return Err(GenesisError::DuplicateAccount(a.address));
            }
            total = total.checked_add(a.balance).ok_or(GenesisError::Overflow)?;
            state.account_mut(&a.address).balance = a.balance;
        }
        for v in &self.validators {
            if state.validator(&v.address).is_some() {
                return Err(GenesisError::DuplicateValidator(v.address));
            }
            total = total.checked_add(v.stake).ok_or(GenesisError::Overflow)?;
            state.set_stake(&v.address, &v.address, v.stake);
            state.set_stake_total(&v.address, v.stake);
            state.insert_validator(
                v.address,
                ValidatorRecord {
                    registered_at: 0,
                    jailed_until: 0,
                },
            );
        }
        state.meta_mut().supply.genesis = total;
        state.commit();
        Ok(state)
    }
}
