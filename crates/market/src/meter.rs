//! What a job owes, computed by one function on both sides of the stream.
//!
//! The provider charges each frame before it sends it; the gateway pays each frame after it
//! arrives; the receipt's `charged` must equal what the gateway paid. Both feed the same frames
//! into a [`Meter`], so the figures agree by construction rather than by comparison.
//!
//! ```text
//!  Started{prompt_tokens} ──► meter.prompt(p)     ──► increase owed (provider: charge; gateway: pay)
//!  Tokens[n]              ──► meter.generated(n)  ──► increase owed
//!  Done{receipt}          ──  receipt.charged == meter.owed()
//! ```
//!
//! Rounding (`agora_types::Price::cost`): a job costs `ceil((prompt x input_per_million + completion x output_per_million) /
//! 10^6)` base units, computed on the running totals (never summed per frame), so the rounding is
//! paid once per job and the total is monotone in both counts. Arithmetic is checked u128; a
//! total that would overflow is `Amount(u128::MAX)`, which no deposit covers.

use agora_types::Amount;

use crate::protocol::Price;

/// The running bill of one job at one price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    price: Price,
    prompt_tokens: u32,
    completion_tokens: u32,
    owed: Amount,
}

impl Meter {
    pub fn new(price: Price) -> Meter {
        Meter {
            price,
            prompt_tokens: 0,
            completion_tokens: 0,
            owed: Amount::ZERO,
        }
    }

    /// Records the prompt's size (prompt plus continuation, as `Started` reports it); returns
    /// what that adds to the amount owed.
    pub fn prompt(&mut self, prompt_tokens: u32) -> Amount {
        self.prompt_tokens = prompt_tokens;
        self.settle()
    }

    /// Records `n` more generated tokens; returns what they add to the amount owed.
    pub fn generated(&mut self, n: usize) -> Amount {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.completion_tokens = self.completion_tokens.saturating_add(n);
        self.settle()
    }

    /// Everything owed so far (what the receipt's `charged` says).
    pub fn owed(&self) -> Amount {
        self.owed
    }

    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    pub fn completion_tokens(&self) -> u32 {
        self.completion_tokens
    }

    pub fn price(&self) -> Price {
        self.price
    }

    /// Re-prices the running totals; returns the increase since the last call.
    fn settle(&mut self) -> Amount {
        let now = self
            .price
            .cost(
                u64::from(self.prompt_tokens),
                u64::from(self.completion_tokens),
            )
            .unwrap_or(Amount(u128::MAX));
        let increase = now.saturating_sub(self.owed);
        self.owed = now;
        increase
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

    /// One job's frames: the prompt size, then the token count of each `Tokens` frame.
    struct Frames {
        prompt: u32,
        tokens: Vec<u32>,
    }

    /// The gateway's computation before the meter (relay.rs): per frame, the increase paid and
    /// the segment's running charge.
    fn gateway_before_the_meter(pr: Price, f: &Frames) -> Vec<(Amount, Amount)> {
        let cost_now = |p: u32, c: u32| {
            pr.cost(u64::from(p), u64::from(c))
                .unwrap_or(Amount(u128::MAX))
        };
        let mut out = Vec::new();
        let (mut completion, mut charged) = (0u32, Amount::ZERO);
        let c = cost_now(f.prompt, completion);
        out.push((c.saturating_sub(charged), c));
        charged = c;
        for n in &f.tokens {
            completion += n;
            let c = cost_now(f.prompt, completion);
            out.push((c.saturating_sub(charged), c));
            charged = c;
        }
        out
    }

    /// The provider's computation before the meter (service.rs): per frame, the amount charged
    /// to the channel and the running `billed` the receipt carries.
    fn provider_before_the_meter(pr: Price, f: &Frames) -> Vec<(Amount, Amount)> {
        let bill = |p: u32, c: usize| pr.cost(u64::from(p), c as u64).unwrap_or(Amount(u128::MAX));
        let mut out = Vec::new();
        let (mut generated, mut billed) = (0usize, Amount::ZERO);
        let cost = bill(f.prompt, 0);
        out.push((cost.saturating_sub(billed), cost));
        billed = cost;
        for n in &f.tokens {
            generated += *n as usize;
            let cost = bill(f.prompt, generated);
            out.push((cost.saturating_sub(billed), cost));
            billed = cost;
        }
        out
    }

    fn metered(pr: Price, f: &Frames) -> Vec<(Amount, Amount)> {
        let mut m = Meter::new(pr);
        let mut out = vec![(m.prompt(f.prompt), m.owed())];
        for n in &f.tokens {
            out.push((m.generated(*n as usize), m.owed()));
        }
        out
    }

    fn amounts(v: &[(u128, u128)]) -> Vec<(Amount, Amount)> {
        v.iter().map(|(a, b)| (Amount(*a), Amount(*b))).collect()
    }

    /// Today's figures, pinned: both code paths and the meter give exactly these.
    #[test]
    fn the_meter_charges_what_gateway_and_provider_computed_before_it() {
        // (price, frames, per frame: (increase, running total)).
        type Case = (Price, Frames, Vec<(u128, u128)>);
        let cases: Vec<Case> = vec![
            // 10 prompt tokens at 1 base unit per million: rounds up to 1, then tokens at 3/M
            // stay under one base unit until the total crosses it.
            (
                price(1, 3),
                Frames {
                    prompt: 10,
                    tokens: vec![1, 16, 16],
                },
                vec![(1, 1), (0, 1), (0, 1), (0, 1)],
            ),
            // Typical: 0.1 AGR-scale prices (base units per million).
            (
                price(100_000_000, 400_000_000),
                Frames {
                    prompt: 37,
                    tokens: vec![1, 16, 5],
                },
                vec![
                    (3_700, 3_700),
                    (400, 4_100),
                    (6_400, 10_500),
                    (2_000, 12_500),
                ],
            ),
            // Rounding is paid once on the running total, not per frame.
            (
                price(333_333, 666_667),
                Frames {
                    prompt: 3,
                    tokens: vec![1, 1, 1],
                },
                vec![(1, 1), (1, 2), (1, 3), (0, 3)],
            ),
            // Free prompt, embeddings-like (no tokens).
            (
                price(0, 7),
                Frames {
                    prompt: 500,
                    tokens: vec![],
                },
                vec![(0, 0)],
            ),
            // Overflow saturates to u128::MAX and then adds nothing.
            (
                price(u128::MAX, 1),
                Frames {
                    prompt: 2,
                    tokens: vec![4],
                },
                vec![(u128::MAX, u128::MAX), (0, u128::MAX)],
            ),
        ];
        for (pr, frames, want) in cases {
            let want = amounts(&want);
            assert_eq!(gateway_before_the_meter(pr, &frames), want);
            assert_eq!(provider_before_the_meter(pr, &frames), want);
            assert_eq!(metered(pr, &frames), want);
        }
    }

    proptest! {
        #[test]
        fn the_meter_agrees_with_both_former_computations(
            i in prop_oneof![0u128..10_000_000_000, Just(u128::MAX / 3)],
            o in prop_oneof![0u128..10_000_000_000, Just(u128::MAX / 5)],
            prompt in 0u32..100_000,
            tokens in proptest::collection::vec(0u32..64, 0..40),
        ) {
            let pr = price(i, o);
            let f = Frames { prompt, tokens };
            let got = metered(pr, &f);
            prop_assert_eq!(&got, &gateway_before_the_meter(pr, &f));
            prop_assert_eq!(&got, &provider_before_the_meter(pr, &f));
            // The increases add up to the total (no rounding lost or paid twice).
            let sum = got.iter().try_fold(Amount::ZERO, |s, (d, _)| s.checked_add(*d));
            if let (Some(sum), Some((_, last))) = (sum, got.last()) {
                prop_assert_eq!(sum, *last);
            }
        }
    }
}
