//! The canonical value encodings of the state's records and keys (what the state root hashes).

use super::*;

impl Encode for StateKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            StateKey::Meta => out.put_u8(0),
            StateKey::Account(a) => {
                out.put_u8(1);
                a.encode_to(out);
            }
            StateKey::Stake(t, d) => {
                out.put_u8(2);
                t.encode_to(out);
                d.encode_to(out);
            }
            StateKey::Unbonding(d, t, h) => {
                out.put_u8(3);
                d.encode_to(out);
                t.encode_to(out);
                // Big-endian so byte order equals numeric order.
                out.extend_from_slice(&h.to_be_bytes());
            }
            StateKey::Validator(a) => {
                out.put_u8(4);
                a.encode_to(out);
            }
            StateKey::Provider(a) => {
                out.put_u8(5);
                a.encode_to(out);
            }
            StateKey::Model(h) => {
                out.put_u8(6);
                h.encode_to(out);
            }
            StateKey::Dataset(h) => {
                out.put_u8(7);
                h.encode_to(out);
            }
            StateKey::Channel(h) => {
                out.put_u8(8);
                h.encode_to(out);
            }
            StateKey::Evidence(h) => {
                out.put_u8(9);
                h.encode_to(out);
            }
            StateKey::Locked(a) => {
                out.put_u8(10);
                a.encode_to(out);
            }
            StateKey::Probation(a) => {
                out.put_u8(11);
                a.encode_to(out);
            }
            StateKey::Commitment(a, h) => {
                out.put_u8(12);
                a.encode_to(out);
                h.encode_to(out);
            }
            StateKey::Market(h) => {
                out.put_u8(13);
                h.encode_to(out);
            }
            StateKey::WeightCommit(m, a) => {
                out.put_u8(14);
                m.encode_to(out);
                a.encode_to(out);
            }
            StateKey::Weights(m, a) => {
                out.put_u8(15);
                m.encode_to(out);
                a.encode_to(out);
            }
            StateKey::Bonds(m, a) => {
                out.put_u8(16);
                m.encode_to(out);
                a.encode_to(out);
            }
        }
    }
}

impl Decode for StateKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => StateKey::Meta,
            1 => StateKey::Account(Decode::decode_from(r)?),
            2 => StateKey::Stake(Decode::decode_from(r)?, Decode::decode_from(r)?),
            3 => StateKey::Unbonding(
                Decode::decode_from(r)?,
                Decode::decode_from(r)?,
                u64::from_be_bytes(r.array()?),
            ),
            4 => StateKey::Validator(Decode::decode_from(r)?),
            5 => StateKey::Provider(Decode::decode_from(r)?),
            6 => StateKey::Model(Decode::decode_from(r)?),
            7 => StateKey::Dataset(Decode::decode_from(r)?),
            8 => StateKey::Channel(Decode::decode_from(r)?),
            9 => StateKey::Evidence(Decode::decode_from(r)?),
            10 => StateKey::Locked(Decode::decode_from(r)?),
            11 => StateKey::Probation(Decode::decode_from(r)?),
            12 => StateKey::Commitment(Decode::decode_from(r)?, Decode::decode_from(r)?),
            13 => StateKey::Market(Decode::decode_from(r)?),
            14 => StateKey::WeightCommit(Decode::decode_from(r)?, Decode::decode_from(r)?),
            15 => StateKey::Weights(Decode::decode_from(r)?, Decode::decode_from(r)?),
            16 => StateKey::Bonds(Decode::decode_from(r)?, Decode::decode_from(r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "state key",
                    tag,
                });
            }
        })
    }
}

/// A locked-earnings queue: `u32` count, then per entry the unlock height and the amount.
pub(super) fn encode_locked(queue: &[(u64, Amount)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + queue.len() * 24);
    out.put_len(queue.len());
    for (height, amount) in queue {
        out.put_u64(*height);
        amount.encode_to(&mut out);
    }
    out
}

/// Decodes a locked-earnings queue: at most [`MAX_LOCKED_ENTRIES`], unlock heights strictly
/// increasing and amounts positive (the only queues the ledger writes).
pub(super) fn decode_locked(bytes: &[u8]) -> Result<Vec<(u64, Amount)>, DecodeError> {
    let mut r = Reader::new(bytes);
    let n = r.len("locked earnings", MAX_LOCKED_ENTRIES, 24)?;
    let mut queue: Vec<(u64, Amount)> = Vec::with_capacity(n);
    for _ in 0..n {
        let entry = (r.u64()?, Amount::decode_from(&mut r)?);
        let ordered = queue.last().is_none_or(|last| last.0 < entry.0);
        if !ordered || entry.1.is_zero() {
            return Err(DecodeError::Invalid {
                what: "locked earnings",
                reason: "unlock heights must increase and amounts be positive",
            });
        }
        queue.push(entry);
    }
    r.finish()?;
    if queue.is_empty() {
        return Err(DecodeError::Invalid {
            what: "locked earnings",
            reason: "an empty queue is not stored",
        });
    }
    Ok(queue)
}

impl Encode for Commitment {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u64(self.height);
        out.put_u32(self.count);
    }
}

impl Decode for Commitment {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Commitment {
            height: r.u64()?,
            count: r.u32()?,
        })
    }
}

impl Encode for Account {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.balance.encode_to(out);
        out.put_u64(self.nonce);
    }
}

impl Decode for Account {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Account {
            balance: Decode::decode_from(r)?,
            nonce: r.u64()?,
        })
    }
}

impl Encode for ValidatorRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u64(self.registered_at);
        out.put_u64(self.jailed_until);
    }
}

impl Decode for ValidatorRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ValidatorRecord {
            registered_at: r.u64()?,
            jailed_until: r.u64()?,
        })
    }
}

impl Encode for ProviderRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.info.encode_to(out);
        out.put_u64(self.registered_at);
        out.put_u64(self.jailed_until);
    }
}

impl Decode for ProviderRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProviderRecord {
            info: Decode::decode_from(r)?,
            registered_at: r.u64()?,
            jailed_until: r.u64()?,
        })
    }
}

impl Encode for ModelRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.info.encode_to(out);
        self.owner.encode_to(out);
        out.put_u64(self.registered_at);
    }
}

impl Decode for ModelRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelRecord {
            info: Decode::decode_from(r)?,
            owner: Decode::decode_from(r)?,
            registered_at: r.u64()?,
        })
    }
}

impl Encode for DatasetRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.info.encode_to(out);
        self.owner.encode_to(out);
        out.put_u64(self.registered_at);
    }
}

impl Decode for DatasetRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DatasetRecord {
            info: Decode::decode_from(r)?,
            owner: Decode::decode_from(r)?,
            registered_at: r.u64()?,
        })
    }
}

impl Encode for Channel {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.payer.encode_to(out);
        self.provider.encode_to(out);
        self.deposit.encode_to(out);
        self.redeemed.encode_to(out);
        let per_model: Vec<(Hash, Amount)> = self
            .redeemed_per_model
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        out.put_vec(&per_model);
        out.put_u64(self.opened_at);
        out.put_u64(self.expiry_height);
        match self.close_deadline {
            None => out.put_u8(0),
            Some(h) => {
                out.put_u8(1);
                out.put_u64(h);
            }
        }
        out.put_bool(self.settled);
    }
}

impl Decode for Channel {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let payer = Decode::decode_from(r)?;
        let provider = Decode::decode_from(r)?;
        let deposit = Decode::decode_from(r)?;
        let redeemed = Decode::decode_from(r)?;
        let per_model: Vec<(Hash, Amount)> = r.vec("channel models", 1 << 16, 48)?;
        let opened_at = r.u64()?;
        let expiry_height = r.u64()?;
        let close_deadline = if r.bool("close deadline")? {
            Some(r.u64()?)
        } else {
            None
        };
        let settled = r.bool("settled")?;
        Ok(Channel {
            payer,
            provider,
            deposit,
            redeemed,
            redeemed_per_model: per_model.into_iter().collect(),
            opened_at,
            expiry_height,
            close_deadline,
            settled,
        })
    }
}

impl Encode for Supply {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.genesis.encode_to(out);
        self.minted.encode_to(out);
        self.burned.encode_to(out);
    }
}

impl Decode for Supply {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Supply {
            genesis: Decode::decode_from(r)?,
            minted: Decode::decode_from(r)?,
            burned: Decode::decode_from(r)?,
        })
    }
}

impl Encode for Meta {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        out.put_u64(self.height);
        out.put_u64(self.last_timestamp_ms);
        self.supply.encode_to(out);
        self.params.encode_to(out);
    }
}

impl Decode for Meta {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Meta {
            chain_id: r.string("chain id", agora_types::tx::limits::MAX_CHAIN_ID)?,
            height: r.u64()?,
            last_timestamp_ms: r.u64()?,
            supply: Decode::decode_from(r)?,
            params: Decode::decode_from(r)?,
        })
    }
}
