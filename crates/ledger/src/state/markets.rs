//! The incentive records: markets and their members, validators' weight commitments, revealed
//! weights and bonds (see `crate::incentives`), with their canonical encodings.

use agora_types::codec::{Decode, DecodeError, Encode, Reader, Writer};
use agora_types::market::{MAX_MARKET_NAME, MAX_MODELS_PER_MARKET, MAX_WEIGHTS, ProviderWeight};
use agora_types::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};

/// A market: who owns it, which models' usage counts for it, its members (a member's index is
/// its slot, Yuma's uid), and what the last epoch left behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketRecord {
    pub name: String,
    pub owner: Address,
    pub models: Vec<Hash>,
    /// Locked when the market was created (counts in supply; not spendable).
    pub deposit: Amount,
    pub created_at: u64,
    pub members: Vec<Member>,
    /// Validators holding a permit after the last epoch (ascending address).
    pub permits: Vec<Address>,
    /// Paid usage of the market's models since the last epoch, less what failed audits forfeited.
    pub usage: Amount,
    /// Epochs run so far; the next is numbered this.
    pub epochs_run: u64,
}

/// One slot of a market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub provider: Address,
    /// Height it took the slot: weights set (and bonds built) before it do not count for it.
    pub joined_at: u64,
    /// Its incentive at the last epoch, in ppm (pruning replaces the lowest).
    pub incentive_ppm: u32,
}

/// A validator's commitment to weights it has not revealed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightCommit {
    pub commitment: Hash,
    pub height: u64,
}

/// A validator's revealed weights over a market's members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedWeights {
    pub weights: Vec<ProviderWeight>,
    /// The height of the commitment they were revealed from: Yuma's "last update".
    pub committed_at: u64,
}

/// A validator's bonds in a market's members: (provider, Q32.32 bits of a bond in [0, 1]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondRow(pub Vec<(Address, u64)>);

impl Encode for Member {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.provider.encode_to(out);
        out.put_u64(self.joined_at);
        out.put_u32(self.incentive_ppm);
    }
}

impl Decode for Member {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Member {
            provider: Decode::decode_from(r)?,
            joined_at: r.u64()?,
            incentive_ppm: r.u32()?,
        })
    }
}

impl Encode for MarketRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.name.as_bytes());
        self.owner.encode_to(out);
        out.put_vec(&self.models);
        self.deposit.encode_to(out);
        out.put_u64(self.created_at);
        out.put_vec(&self.members);
        out.put_vec(&self.permits);
        self.usage.encode_to(out);
        out.put_u64(self.epochs_run);
    }
}

impl Decode for MarketRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MarketRecord {
            name: r.string("market name", MAX_MARKET_NAME)?,
            owner: Decode::decode_from(r)?,
            models: r.vec("market models", MAX_MODELS_PER_MARKET, 32)?,
            deposit: Decode::decode_from(r)?,
            created_at: r.u64()?,
            members: r.vec("market members", MAX_WEIGHTS, 44)?,
            permits: r.vec("market permits", 65_536, 32)?,
            usage: Decode::decode_from(r)?,
            epochs_run: r.u64()?,
        })
    }
}

impl Encode for WeightCommit {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.commitment.encode_to(out);
        out.put_u64(self.height);
    }
}

impl Decode for WeightCommit {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(WeightCommit {
            commitment: Decode::decode_from(r)?,
            height: r.u64()?,
        })
    }
}

impl Encode for RevealedWeights {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_vec(&self.weights);
        out.put_u64(self.committed_at);
    }
}

impl Decode for RevealedWeights {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RevealedWeights {
            weights: r.vec("weights", MAX_WEIGHTS, 34)?,
            committed_at: r.u64()?,
        })
    }
}

impl Encode for BondRow {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_len(self.0.len());
        for (provider, bits) in &self.0 {
            provider.encode_to(out);
            out.put_u64(*bits);
        }
    }
}

impl Decode for BondRow {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len("bonds", MAX_WEIGHTS, 40)?;
        let mut row = Vec::with_capacity(n);
        for _ in 0..n {
            row.push((Decode::decode_from(r)?, r.u64()?));
        }
        Ok(BondRow(row))
    }
}
