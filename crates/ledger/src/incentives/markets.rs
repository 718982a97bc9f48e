//! The incentive transactions: create and join markets, commit and reveal weights.
//!
//! Rules, each one a liar's test in `tests/it/markets.rs`:
//! - a market's models are registered and belong to no other market (usage is counted once);
//! - only a registered, unjailed provider serving one of the market's models joins; a full
//!   market replaces its lowest-incentive member past its immunity (ties: the earlier joiner,
//!   then the lower address), or refuses;
//! - only a registered, unjailed validator commits; a reveal must match the signer's own
//!   commitment, come in a later incentive epoch than the commit and within the reveal window,
//!   and name only current members, each once.

use crate::accounts::debit;
use crate::epochs::epoch_of;
use crate::error::MarketError;
use crate::events::Event;
use crate::state::{MarketRecord, Member, RevealedWeights, State, WeightCommit};
use agora_types::market::{MarketSpec, WeightsReveal, market_id, weights_commitment};
use agora_types::{Address, Hash};

pub(crate) fn create(
    state: &mut State,
    height: u64,
    owner: &Address,
    spec: &MarketSpec,
) -> Result<Vec<Event>, MarketError> {
    let params = state.params().incentives.clone();
    if !spec.name_is_valid() {
        return Err(MarketError::BadName);
    }
    if spec.models.is_empty()
        || spec
            .models
            .iter()
            .enumerate()
            .any(|(i, m)| spec.models[..i].contains(m))
    {
        return Err(MarketError::BadModels);
    }
    for model in &spec.models {
        if state.model(model).is_none() {
            return Err(MarketError::UnknownModel(*model));
        }
        if let Some(market) = state.market_of_model(model) {
            return Err(MarketError::ModelTaken {
                model: *model,
                market,
            });
        }
    }
    let id = market_id(&spec.name);
    if state.market(&id).is_some() {
        return Err(MarketError::NameTaken);
    }
    if state.markets().count() >= params.max_markets as usize {
        return Err(MarketError::TooManyMarkets {
            max: params.max_markets,
        });
    }
    let deposit = params.market_deposit;
    debit(state, owner, deposit)
        .map_err(|balance| MarketError::CannotPayDeposit { balance, deposit })?;
    state.insert_market(
        id,
        MarketRecord {
            name: spec.name.clone(),
            owner: *owner,
            models: spec.models.clone(),
            deposit,
            created_at: height,
            members: Vec::new(),
            permits: Vec::new(),
            usage: Default::default(),
            epochs_run: 0,
        },
    );
    Ok(vec![Event::MarketCreated {
        market: id,
        owner: *owner,
        deposit,
    }])
}

pub(crate) fn join(
    state: &mut State,
    height: u64,
    provider: &Address,
    market: &Hash,
) -> Result<Vec<Event>, MarketError> {
    let params = state.params().incentives.clone();
    let record = state
        .market(market)
        .ok_or(MarketError::UnknownMarket(*market))?;
    let registered = state.provider(provider).ok_or(MarketError::NotAProvider)?;
    if registered.jailed_until > height {
        return Err(MarketError::Jailed {
            until: registered.jailed_until,
        });
    }
    if !registered
        .info
        .models
        .iter()
        .any(|m| record.models.contains(&m.model))
    {
        return Err(MarketError::ServesNoModel);
    }
    if record.members.iter().any(|m| m.provider == *provider) {
        return Err(MarketError::AlreadyMember);
    }
    let newcomer = Member {
        provider: *provider,
        joined_at: height,
        incentive_ppm: 0,
    };
    let (slot, replaced) = if record.members.len() < params.max_members as usize {
        (record.members.len(), None)
    } else {
        let immune = |m: &Member| m.joined_at.saturating_add(params.immunity_blocks) > height;
        let (slot, pruned) = record
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| !immune(m))
            .min_by_key(|(_, m)| (m.incentive_ppm, m.joined_at, m.provider))
            .ok_or(MarketError::MarketFull)?;
        (slot, Some(pruned.provider))
    };
    let record = state
        .market_mut(market)
        .ok_or(MarketError::UnknownMarket(*market))?;
    if slot == record.members.len() {
        record.members.push(newcomer);
    } else {
        record.members[slot] = newcomer;
    }
    Ok(vec![Event::MarketJoined {
        market: *market,
        provider: *provider,
        slot: slot as u32,
        replaced,
    }])
}

fn check_validator(state: &State, height: u64, validator: &Address) -> Result<(), MarketError> {
    let record = state
        .validator(validator)
        .ok_or(MarketError::NotAValidator)?;
    if record.jailed_until > height {
        return Err(MarketError::Jailed {
            until: record.jailed_until,
        });
    }
    Ok(())
}

pub(crate) fn commit(
    state: &mut State,
    height: u64,
    validator: &Address,
    market: &Hash,
    commitment: &Hash,
) -> Result<Vec<Event>, MarketError> {
    state
        .market(market)
        .ok_or(MarketError::UnknownMarket(*market))?;
    check_validator(state, height, validator)?;
    state.set_weight_commit(
        *market,
        *validator,
        Some(WeightCommit {
            commitment: *commitment,
            height,
        }),
    );
    Ok(vec![Event::WeightsCommitted {
        market: *market,
        validator: *validator,
    }])
}

pub(crate) fn reveal(
    state: &mut State,
    height: u64,
    validator: &Address,
    reveal: &WeightsReveal,
) -> Result<Vec<Event>, MarketError> {
    let market = reveal.market;
    let params = state.params().incentives.clone();
    let record = state
        .market(&market)
        .ok_or(MarketError::UnknownMarket(market))?;
    check_validator(state, height, validator)?;
    let commit = *state
        .weight_commit(&market, validator)
        .ok_or(MarketError::NoCommitment)?;
    let epoch_blocks = params.epoch_blocks.max(1);
    let committed_epoch = epoch_of(commit.height, epoch_blocks);
    let now = epoch_of(height, epoch_blocks);
    if now <= committed_epoch {
        let from = committed_epoch
            .saturating_add(1)
            .saturating_mul(epoch_blocks);
        return Err(MarketError::RevealTooEarly {
            committed_at: commit.height,
            from,
        });
    }
    if now > committed_epoch.saturating_add(params.reveal_window_epochs) {
        let closed = committed_epoch
            .saturating_add(params.reveal_window_epochs)
            .saturating_add(1)
            .saturating_mul(epoch_blocks)
            .saturating_sub(1);
        return Err(MarketError::RevealExpired {
            committed_at: commit.height,
            closed,
        });
    }
    if weights_commitment(validator, reveal) != commit.commitment {
        return Err(MarketError::CommitmentMismatch);
    }
    let bad = MarketError::BadWeights {
        max: params.max_members,
    };
    let w = &reveal.weights;
    if w.is_empty()
        || w.len() > params.max_members as usize
        || w.iter().all(|pw| pw.weight == 0)
        || w.iter()
            .enumerate()
            .any(|(i, pw)| w[..i].iter().any(|o| o.provider == pw.provider))
    {
        return Err(bad);
    }
    if let Some(stranger) = w
        .iter()
        .find(|pw| !record.members.iter().any(|m| m.provider == pw.provider))
    {
        return Err(MarketError::NotAMember(stranger.provider));
    }
    state.set_weights(
        market,
        *validator,
        RevealedWeights {
            weights: w.clone(),
            committed_at: commit.height,
        },
    );
    state.set_weight_commit(market, *validator, None);
    Ok(vec![Event::WeightsRevealed {
        market,
        validator: *validator,
        committed_at: commit.height,
    }])
}
