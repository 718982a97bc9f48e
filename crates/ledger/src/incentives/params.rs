//! The incentive parameters (part of `Params`, so in genesis and governable), with their
//! canonical encoding.

use crate::emission::{MarketSplit, Schedule};
use crate::yuma::YumaParams;
use agora_types::Amount;
use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::market::MAX_WEIGHTS;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncentiveParams {
    /// Blocks per incentive epoch: Yuma runs and emission is paid at the last block of each.
    pub epoch_blocks: u64,
    /// The supply schedule.
    pub schedule: Schedule,
    /// Owner / providers / validators shares of a market's emission.
    pub split: MarketSplit,
    /// Yuma's parameters, the same for every market.
    pub yuma: YumaParams,
    /// Locked from the creator when a market is created.
    pub market_deposit: Amount,
    pub max_markets: u32,
    /// Slots per market (at most `agora_types::market::MAX_WEIGHTS`).
    pub max_members: u32,
    /// Blocks after joining during which a member cannot be pruned.
    pub immunity_blocks: u64,
    /// Epochs after the commit's during which weights may still be revealed.
    pub reveal_window_epochs: u64,
}

impl Default for IncentiveParams {
    fn default() -> Self {
        IncentiveParams {
            // About six minutes of idle dev blocks; subtensor's tempo is 360 blocks too.
            epoch_blocks: 360,
            // 1 AGR a block, halving every 10,512,000 blocks (four years of 12 s blocks): a cap
            // of 21,024,000 AGR, minted only while markets serve paid work.
            schedule: Schedule {
                initial_block_reward: Amount::from_agr(1).0,
                halving_interval_blocks: 10_512_000,
            },
            split: MarketSplit::default(),
            yuma: YumaParams::default(),
            market_deposit: Amount::from_agr(1_000),
            max_markets: 128,
            max_members: 256,
            immunity_blocks: 5_000,
            reveal_window_epochs: 2,
        }
    }
}

impl IncentiveParams {
    /// What a genesis may not hold; `None` when the parameters are usable.
    pub fn problem(&self) -> Option<&'static str> {
        let y = &self.yuma;
        if self.epoch_blocks == 0 {
            Some("incentives.epoch_blocks must be at least 1")
        } else if self.max_members == 0 || self.max_members as usize > MAX_WEIGHTS {
            Some("incentives.max_members must be 1..=256")
        } else if u32::from(self.split.owner_bps) + u32::from(self.split.provider_bps) > 10_000 {
            Some("incentives.split: owner_bps + provider_bps must not exceed 10000")
        } else if [
            y.kappa_ppm,
            y.bonds_penalty_ppm,
            y.bonds_moving_average_ppm,
            y.alpha_low_ppm,
            y.alpha_high_ppm,
        ]
        .iter()
        .any(|p| *p > 1_000_000)
        {
            Some("incentives.yuma: shares are parts per million, at most 1000000")
        } else if y.alpha_low_ppm > y.alpha_high_ppm {
            Some("incentives.yuma: alpha_low_ppm must not exceed alpha_high_ppm")
        } else {
            None
        }
    }
}

impl Encode for IncentiveParams {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u64(self.epoch_blocks);
        out.put_u128(self.schedule.initial_block_reward);
        out.put_u64(self.schedule.halving_interval_blocks);
        out.put_u16(self.split.owner_bps);
        out.put_u16(self.split.provider_bps);
        let y = &self.yuma;
        for ppm in [y.kappa_ppm, y.bonds_penalty_ppm, y.bonds_moving_average_ppm] {
            out.put_u32(ppm);
        }
        out.put_bool(y.liquid_alpha);
        for v in [
            y.alpha_low_ppm,
            y.alpha_high_ppm,
            y.alpha_steepness,
            y.max_validators,
        ] {
            out.put_u32(v);
        }
        out.put_u64(y.activity_cutoff_blocks);
        self.market_deposit.encode_to(out);
        out.put_u32(self.max_markets);
        out.put_u32(self.max_members);
        out.put_u64(self.immunity_blocks);
        out.put_u64(self.reveal_window_epochs);
    }
}

impl Decode for IncentiveParams {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(IncentiveParams {
            epoch_blocks: r.u64()?,
            schedule: Schedule {
                initial_block_reward: r.u128()?,
                halving_interval_blocks: r.u64()?,
            },
            split: MarketSplit {
                owner_bps: r.u16()?,
                provider_bps: r.u16()?,
            },
            yuma: YumaParams {
                kappa_ppm: r.u32()?,
                bonds_penalty_ppm: r.u32()?,
                bonds_moving_average_ppm: r.u32()?,
                liquid_alpha: r.bool("liquid alpha")?,
                alpha_low_ppm: r.u32()?,
                alpha_high_ppm: r.u32()?,
                alpha_steepness: r.u32()?,
                max_validators: r.u32()?,
                activity_cutoff_blocks: r.u64()?,
            },
            market_deposit: Decode::decode_from(r)?,
            max_markets: r.u32()?,
            max_members: r.u32()?,
            immunity_blocks: r.u64()?,
            reveal_window_epochs: r.u64()?,
        })
    }
}
