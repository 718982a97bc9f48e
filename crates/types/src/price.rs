//! Prices of inference: base units per million tokens, and what a count of tokens costs at one.
//!
//! Rounding: a job costs `ceil((prompt x input_per_million + completion x output_per_million) /
//! 10^6)` base units, computed on the running totals (never summed per frame), so the rounding is
//! paid once per job and the total is monotone in both counts. Arithmetic is checked u128.

use serde::{Deserialize, Serialize};

use crate::Amount;
use crate::codec::{Decode, DecodeError, Encode, Reader};

/// Prices in base units per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_million: Amount,
    pub output_per_million: Amount,
}

impl Price {
    /// True if every component is at least `other`'s.
    pub fn covers(&self, other: &Price) -> bool {
        self.input_per_million >= other.input_per_million
            && self.output_per_million >= other.output_per_million
    }

    /// What `prompt` prompt tokens and `completion` generated tokens cost, rounded up to the base
    /// unit; `None` on overflow. Monotone in both counts, so a running total never goes down as
    /// tokens stream.
    pub fn cost(&self, prompt: u64, completion: u64) -> Option<Amount> {
        let p = u128::from(prompt).checked_mul(self.input_per_million.0)?;
        let c = u128::from(completion).checked_mul(self.output_per_million.0)?;
        let total = p.checked_add(c)?;
        Some(Amount(total.div_ceil(1_000_000)))
    }
}

impl Encode for Price {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.input_per_million.encode_to(out);
        self.output_per_million.encode_to(out);
    }
}

impl Decode for Price {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Price {
            input_per_million: Amount::decode_from(r)?,
            output_per_million: Amount::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn price(i: u128, o: u128) -> Price {
        Price {
            input_per_million: Amount(i),
            output_per_million: Amount(o),
        }
    }

    proptest! {
        #[test]
        fn cost_is_monotone_and_never_under_the_exact_price(
            i in 0u128..10_000_000_000, o in 0u128..10_000_000_000,
            p in 0u64..100_000, c in 0u64..100_000,
        ) {
            let pr = price(i, o);
            let a = pr.cost(p, c).unwrap();
            let b = pr.cost(p, c + 1).unwrap();
            prop_assert!(b >= a);
            let exact = u128::from(p) * i + u128::from(c) * o;
            prop_assert!(a.0 * 1_000_000 >= exact);
            prop_assert!(a.0 * 1_000_000 < exact + 1_000_000);
        }
    }
}
