//! Validators, providers (peer id, endpoint hints, hardware, served models with prices, minimum
//! stake), models (weights hash, owner, licence, royalty) and datasets (content hash, owner,
//! licence).

use crate::error::RegisterError;
use crate::events::Event;
use crate::state::{DatasetRecord, ModelRecord, ProviderRecord, State, ValidatorRecord};
use agora_types::{Address, DatasetInfo, ModelRegistration, ProviderInfo};

pub(crate) fn register_validator(
    state: &mut State,
    height: u64,
    who: &Address,
) -> Result<Vec<Event>, RegisterError> {
    if let Some(v) = state.validator(who) {
        if v.jailed_until > height {
            return Err(RegisterError::Jailed {
                until: v.jailed_until,
            });
        }
        return Err(RegisterError::AlreadyRegistered);
    }
    let bonded = state.stake(who, who);
    let min = state.params().min_validator_stake;
    if bonded < min {
        return Err(RegisterError::InsufficientStake { bonded, min });
    }
    state.insert_validator(
        *who,
        ValidatorRecord {
            registered_at: height,
            jailed_until: 0,
        },
    );
    Ok(vec![Event::ValidatorRegistered { validator: *who }])
}

/// Registers a provider or updates its record (prices, endpoints, models).
pub(crate) fn register_provider(
    state: &mut State,
    height: u64,
    who: &Address,
    info: ProviderInfo,
) -> Result<Vec<Event>, RegisterError> {
    let existing = state.provider(who).cloned();
    if let Some(p) = existing.as_ref().filter(|p| p.jailed_until > height) {
        return Err(RegisterError::Jailed {
            until: p.jailed_until,
        });
    }
    let bonded = state.stake(who, who);
    let min = state.params().min_provider_stake;
    if bonded < min {
        return Err(RegisterError::InsufficientStake { bonded, min });
    }
    if info.models.is_empty() {
        return Err(RegisterError::Invalid(
            "a provider must serve at least one model",
        ));
    }
    if info.endpoints.iter().any(|e| e.trim().is_empty()) {
        return Err(RegisterError::Invalid("endpoint hints must not be empty"));
    }
    for (i, m) in info.models.iter().enumerate() {
        if state.model(&m.model).is_none() {
            return Err(RegisterError::UnknownModel(m.model));
        }
        if info.models[..i].iter().any(|o| o.model == m.model) {
            return Err(RegisterError::Invalid("a model is listed twice"));
        }
    }
    let registered_at = existing.map(|p| p.registered_at).unwrap_or(height);
    state.insert_provider(
        *who,
        ProviderRecord {
            info,
            registered_at,
            jailed_until: 0,
        },
    );
    Ok(vec![Event::ProviderRegistered { provider: *who }])
}

pub(crate) fn register_model(
    state: &mut State,
    height: u64,
    owner: &Address,
    info: ModelRegistration,
) -> Result<Vec<Event>, RegisterError> {
    if state.model(&info.sha256).is_some() {
        return Err(RegisterError::AlreadyRegistered);
    }
    let max = state.params().max_royalty_bps;
    if info.royalty_bps > max {
        return Err(RegisterError::RoyaltyTooHigh {
            bps: info.royalty_bps,
            max,
        });
    }
    if info.name.trim().is_empty() {
        return Err(RegisterError::Invalid("model name must not be empty"));
    }
    let id = info.sha256;
    state.insert_model(
        id,
        ModelRecord {
            info,
            owner: *owner,
            registered_at: height,
        },
    );
    Ok(vec![Event::ModelRegistered {
        model: id,
        owner: *owner,
    }])
}

pub(crate) fn register_dataset(
    state: &mut State,
    height: u64,
    owner: &Address,
    info: DatasetInfo,
) -> Result<Vec<Event>, RegisterError> {
    if state.dataset(&info.content_hash).is_some() {
        return Err(RegisterError::AlreadyRegistered);
    }
    if info.name.trim().is_empty() {
        return Err(RegisterError::Invalid("dataset name must not be empty"));
    }
    let id = info.content_hash;
    state.insert_dataset(
        id,
        DatasetRecord {
            info,
            owner: *owner,
            registered_at: height,
        },
    );
    Ok(vec![Event::DatasetRegistered {
        dataset: id,
        owner: *owner,
    }])
}
