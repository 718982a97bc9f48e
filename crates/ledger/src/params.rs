//! Every economic constant in one governable struct, read from genesis.

use crate::incentives::IncentiveParams;
use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::{Address, Amount};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Smallest fee a transaction may offer.
    pub min_fee: Amount,
    /// Share of every fee that is burned; the rest goes to the block's proposer.
    pub fee_burn_bps: u16,
    /// Blocks between `Unbond` and the moment the tokens can be withdrawn.
    pub unbonding_period_blocks: u64,
    /// Share of an offender's stake (bonded and unbonding) that a slash takes.
    pub slash_fraction_bps: u16,
    /// Share of the slashed amount paid to the reporter; the rest is burned.
    pub slash_reporter_bps: u16,
    /// Blocks a slashed provider or validator stays jailed.
    pub jail_blocks: u64,
    /// Largest royalty a model owner may ask, in basis points of each payment.
    pub max_royalty_bps: u16,
    /// Share of every channel payment that goes to the treasury.
    pub protocol_fee_bps: u16,
    /// Where protocol fees go. A derived address no one holds a key for; governance spends it.
    pub treasury: Address,
    /// Blocks a provider has to redeem after a payer asks to close a channel (or after expiry).
    pub channel_challenge_blocks: u64,
    /// Self-bonded stake a provider needs to register.
    pub min_provider_stake: Amount,
    /// Self-bonded stake a validator needs to register.
    pub min_validator_stake: Amount,
    /// Most validators in the active set (top by stake), used by consensus at epoch boundaries.
    pub max_validators: u32,
    /// Blocks per epoch; the validator set changes only at epoch boundaries.
    pub epoch_length_blocks: u64,
    /// Share of committed receipts an auditor re-runs, in basis points (`audit::selected`).
    /// Default 300 (3%): within the 2-5% that verification.md §6 recommends, and with the
    /// default `audit_slash_bps` and minimum stake it already makes cheating a losing bet
    /// (docs/design/verification.md, "Slashing economics"); validators' cost is 3% of the
    /// network's jobs times the prefill/generation ratio, about 1.5%.
    #[serde(default = "defaults::audit_bps")]
    pub audit_bps: u16,
    /// Share of a provider's stake (bonded and unbonding, own and delegated) that a failed
    /// audit takes (`Evidence::FailedAudit`). Default 1,000 (10%): on the minimum provider stake
    /// (100 AGR) that is a 10 AGR slash, which satisfies the proof-of-sampling condition
    /// `p * detection * (R + S) >= 2 * cost saved` for any job charging up to about 0.137 AGR
    /// (1.37M generated tokens at the dev price), while a false fault (two independent wrong
    /// verdicts) costs an honest provider and its delegators a tenth, not all, of their stake.
    #[serde(default = "defaults::audit_slash_bps")]
    pub audit_slash_bps: u16,
    /// Blocks after a failed audit during which every one of the provider's receipts is
    /// audited (`audit::on_probation`). Default 36,000 (10 earnings-lock windows, about 10 h of
    /// idle dev blocks): long enough that a provider coming out of jail (`jail_blocks`) serves
    /// many jobs under a 100% audit rate before it goes back to sampling.
    #[serde(default = "defaults::probation_blocks")]
    pub probation_blocks: u64,
    /// Blocks a provider's channel earnings stay locked (countable, slashable by forfeiture,
    /// not spendable) before they join its balance. 0 credits them at once (no lock; for tests).
    /// Default 3,600: about 77 minutes of idle dev blocks (~1.3 s) and still about 19 minutes
    /// at dev's full load (~0.3 s), several times what a gateway's commitment, an audit, two
    /// re-audits and the evidence transaction take (docs/design/verification.md, "The earnings lock").
    #[serde(default = "defaults::earnings_lock_blocks")]
    pub earnings_lock_blocks: u64,
    /// Markets, Yuma and emission (`crate::incentives`).
    #[serde(default)]
    pub incentives: IncentiveParams,
}

/// Defaults of the fields a genesis written before they existed may leave out.
mod defaults {
    pub fn audit_bps() -> u16 {
        300
    }
    pub fn audit_slash_bps() -> u16 {
        1_000
    }
    pub fn probation_blocks() -> u64 {
        36_000
    }
    pub fn earnings_lock_blocks() -> u64 {
        3_600
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("{name} is {value} basis points; at most 10000 allowed")]
    BpsOutOfRange { name: &'static str, value: u16 },
    #[error(
        "max_royalty_bps + protocol_fee_bps must not exceed 10000 (a provider's share would be negative)"
    )]
    RoyaltyPlusFeeTooHigh,
    #[error("{name} must be at least 1")]
    ZeroPeriod { name: &'static str },
    #[error("{0}")]
    Incentives(&'static str),
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_fee: Amount(1_000),
            fee_burn_bps: 5_000,
            unbonding_period_blocks: 100,
            slash_fraction_bps: 1_000,
            slash_reporter_bps: 1_000,
            jail_blocks: 1_000,
            max_royalty_bps: 3_000,
            protocol_fee_bps: 100,
            treasury: Address::derived("treasury"),
            channel_challenge_blocks: 20,
            min_provider_stake: Amount::from_agr(100),
            min_validator_stake: Amount::from_agr(1_000),
            max_validators: 100,
            epoch_length_blocks: 100,
            audit_bps: defaults::audit_bps(),
            audit_slash_bps: defaults::audit_slash_bps(),
            probation_blocks: defaults::probation_blocks(),
            earnings_lock_blocks: defaults::earnings_lock_blocks(),
            incentives: IncentiveParams::default(),
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), ParamsError> {
        for (name, value) in [
            ("fee_burn_bps", self.fee_burn_bps),
            ("slash_fraction_bps", self.slash_fraction_bps),
            ("slash_reporter_bps", self.slash_reporter_bps),
            ("max_royalty_bps", self.max_royalty_bps),
            ("protocol_fee_bps", self.protocol_fee_bps),
            ("audit_bps", self.audit_bps),
            ("audit_slash_bps", self.audit_slash_bps),
        ] {
            if value > 10_000 {
                return Err(ParamsError::BpsOutOfRange { name, value });
            }
        }
        if u32::from(self.max_royalty_bps) + u32::from(self.protocol_fee_bps) > 10_000 {
            return Err(ParamsError::RoyaltyPlusFeeTooHigh);
        }
        for (name, value) in [
            ("unbonding_period_blocks", self.unbonding_period_blocks),
            ("channel_challenge_blocks", self.channel_challenge_blocks),
            ("epoch_length_blocks", self.epoch_length_blocks),
        ] {
            if value == 0 {
                return Err(ParamsError::ZeroPeriod { name });
            }
        }
        if let Some(problem) = self.incentives.problem() {
            return Err(ParamsError::Incentives(problem));
        }
        Ok(())
    }
}

impl Encode for Params {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.min_fee.encode_to(out);
        out.put_u16(self.fee_burn_bps);
        out.put_u64(self.unbonding_period_blocks);
        out.put_u16(self.slash_fraction_bps);
        out.put_u16(self.slash_reporter_bps);
        out.put_u64(self.jail_blocks);
        out.put_u16(self.max_royalty_bps);
        out.put_u16(self.protocol_fee_bps);
        self.treasury.encode_to(out);
        out.put_u64(self.channel_challenge_blocks);
        self.min_provider_stake.encode_to(out);
        self.min_validator_stake.encode_to(out);
        out.put_u32(self.max_validators);
        out.put_u64(self.epoch_length_blocks);
        out.put_u16(self.audit_bps);
        out.put_u16(self.audit_slash_bps);
        out.put_u64(self.probation_blocks);
        out.put_u64(self.earnings_lock_blocks);
        self.incentives.encode_to(out);
    }
}

impl Decode for Params {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Params {
            min_fee: Decode::decode_from(r)?,
            fee_burn_bps: r.u16()?,
            unbonding_period_blocks: r.u64()?,
            slash_fraction_bps: r.u16()?,
            slash_reporter_bps: r.u16()?,
            jail_blocks: r.u64()?,
            max_royalty_bps: r.u16()?,
            protocol_fee_bps: r.u16()?,
            treasury: Decode::decode_from(r)?,
            channel_challenge_blocks: r.u64()?,
            min_provider_stake: Decode::decode_from(r)?,
            min_validator_stake: Decode::decode_from(r)?,
            max_validators: r.u32()?,
            epoch_length_blocks: r.u64()?,
            audit_bps: r.u16()?,
            audit_slash_bps: r.u16()?,
            probation_blocks: r.u64()?,
            earnings_lock_blocks: r.u64()?,
            incentives: Decode::decode_from(r)?,
        })
    }
}
