//! Property tests of emission and Yuma: the schedule is minted exactly, every split conserves
//! the whole to the base unit, nothing goes to anyone without a share, and Yuma's outputs stay
//! in range whatever the (valid) input, hostile magnitudes included.

use agora_ledger::emission::{MarketSplit, Redirect, Schedule, largest_remainder, pay_market};
use agora_ledger::yuma::{
    EpochInput, Fixed, ProviderInput, ValidatorInput, YumaError, YumaParams, run_epoch,
};
use proptest::prelude::*;

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop_oneof![Just(0u128), 1u128..1_000_000_000_000, Just(u128::MAX >> 64)],
        0u64..10_000,
    )
        .prop_map(|(initial_block_reward, halving_interval_blocks)| Schedule {
            initial_block_reward,
            halving_interval_blocks,
        })
}

fn fixed_vec(n: usize) -> impl Strategy<Value = Vec<Fixed>> {
    proptest::collection::vec(prop_oneof![Just(0u64), 0u64..=(1 << 32)], n)
        .prop_map(|v| v.into_iter().map(Fixed::from_bits).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Epochs tile the chain: summing per-epoch emission over consecutive epochs gives the
    /// per-block sum, and the closed form never disagrees with it.
    #[test]
    fn epoch_emission_is_exactly_the_schedule(s in schedule(), first in 0u64..50_000, lens in proptest::collection::vec(1u64..700, 1..6)) {
        let mut start = first;
        let mut by_epoch = 0u128;
        for len in &lens {
            by_epoch += s.emission_between(start, start + len - 1);
            start += len;
        }
        let by_block: u128 = (first..start).map(|h| s.block_reward(h)).sum();
        prop_assert_eq!(by_epoch, by_block);
        if let Some(cap) = s.cap() {
            prop_assert!(s.emission_between(1, start) <= cap);
        }
    }

    #[test]
    fn largest_remainder_conserves_and_pays_only_positive_weights(
        total in prop_oneof![0u128..1_000_000, any::<u128>()],
        weights in proptest::collection::vec(prop_oneof![Just(0u128), 0u128..1_000, any::<u128>()], 0..40),
    ) {
        let parts = largest_remainder(total, &weights);
        prop_assert_eq!(parts.len(), weights.len());
        let scaled_any = {
            let max = weights.iter().copied().max().unwrap_or(0);
            let bits = |x: u128| 128 - x.leading_zeros();
            let shift = (bits(max) + bits(weights.len() as u128)).saturating_sub(64);
            weights.iter().any(|w| (w >> shift) > 0)
        };
        let paid: u128 = parts.iter().sum();
        prop_assert_eq!(paid, if scaled_any { total } else { 0 });
        for (p, w) in parts.iter().zip(&weights) {
            if *w == 0 { prop_assert_eq!(*p, 0); }
        }
    }

    /// A market's payout: owner + providers + validators + treasury is the amount exactly; a
    /// provider without incentive and a validator without dividends (or stake, in the
    /// fallback) get nothing; a redirect is stated whenever a pool left its own recipients.
    #[test]
    fn a_market_payout_conserves_and_explains_itself(
        amount in prop_oneof![0u128..10_000_000, any::<u128>()],
        owner_bps in 0u16..=12_000, provider_bps in 0u16..=12_000,
        incentive in fixed_vec(6), dividends in fixed_vec(4), stake in fixed_vec(4),
    ) {
        let p = pay_market(amount, &MarketSplit { owner_bps, provider_bps }, &incentive, &dividends, &stake);
        let total = p.owner + p.providers.iter().sum::<u128>() + p.validators.iter().sum::<u128>() + p.treasury;
        prop_assert_eq!(total, amount);
        prop_assert_eq!(p.providers.len(), incentive.len());
        prop_assert_eq!(p.validators.len(), dividends.len());
        for (paid, i) in p.providers.iter().zip(&incentive) {
            if *i == Fixed::ZERO { prop_assert_eq!(*paid, 0); }
        }
        let by_stake = p.redirects.contains(&Redirect::NoIncentiveToValidatorsByStake)
            || (!dividends.iter().any(|d| *d > Fixed::ZERO) && stake.iter().any(|s| *s > Fixed::ZERO));
        let basis = if by_stake { &stake } else { &dividends };
        for (paid, b) in p.validators.iter().zip(basis) {
            if *b == Fixed::ZERO { prop_assert_eq!(*paid, 0); }
        }
        if p.treasury > 0 { prop_assert!(p.redirects.contains(&Redirect::NoValidatorsToTreasury)); }
    }

    /// Whatever the stakes (up to u128::MAX), weights and bonds, an epoch never panics and its
    /// outputs stay in range: incentive and dividends are shares (sum at most 1, and close to 1
    /// when anything ranked), trust and bonds in [0, 1], consensus at most the highest weight.
    #[test]
    fn an_epoch_stays_in_range_for_any_valid_input(
        stakes in proptest::collection::vec(prop_oneof![Just(0u128), 1u128..1_000, any::<u128>()], 1..8),
        providers in 1usize..10,
        seed_weights in proptest::collection::vec(proptest::collection::vec(any::<u16>(), 10), 8),
        seed_bonds in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 10), 8),
        permits in proptest::collection::vec(any::<bool>(), 8),
        liquid in any::<bool>(), kappa_ppm in 0u32..=1_000_000, penalty in 0u32..=1_000_000,
        block in 0u64..100, last_updates in proptest::collection::vec(0u64..100, 8),
    ) {
        let params = YumaParams { liquid_alpha: liquid, kappa_ppm, bonds_penalty_ppm: penalty, max_validators: 4, activity_cutoff_blocks: 30, ..YumaParams::default() };
        let validators = stakes.iter().enumerate().map(|(i, &stake)| ValidatorInput {
            stake,
            permit: permits[i],
            last_update: last_updates[i],
            weights: (0..providers).filter(|j| seed_weights[i][*j] % 3 != 0).map(|j| (j as u32, seed_weights[i][j])).collect(),
            bonds: (0..providers).map(|j| (j as u32, Fixed::from_bits(seed_bonds[i][j] >> 31))).collect(),
            own_provider: None,
        }).collect();
        let input = EpochInput { block, last_epoch_block: block.saturating_sub(10), validators, providers: vec![ProviderInput { registered_at: 0 }; providers] };
        let out = run_epoch(&params, &input).expect("valid");
        let ulp = |n: usize| Fixed::from_bits(n as u64 + 1);
        let isum = Fixed::sum(out.incentive.iter().copied());
        prop_assert!(isum <= Fixed::ONE);
        if out.rank.iter().any(|r| *r > Fixed::ZERO) { prop_assert!(Fixed::ONE.saturating_sub(isum) <= ulp(providers)); }
        prop_assert!(Fixed::sum(out.dividends.iter().copied()) <= Fixed::ONE);
        for t in &out.validator_trust { prop_assert!(*t <= Fixed::ONE.saturating_add(ulp(providers))); }
        for row in &out.bonds { for b in row { prop_assert!(*b <= Fixed::ONE); } }
        prop_assert!(out.new_permits.iter().filter(|p| **p).count() <= 4);
        for (j, c) in out.consensus.iter().enumerate() {
            let top = out.weights.iter().map(|row| row[j]).max().unwrap_or(Fixed::ZERO);
            prop_assert!(*c <= top);
        }
    }
}

#[test]
fn an_epoch_refuses_weights_and_bonds_outside_the_market() {
    let params = YumaParams::default();
    let input = |weights: Vec<(u32, u16)>, bonds: Vec<(u32, Fixed)>| EpochInput {
        block: 1,
        last_epoch_block: 0,
        validators: vec![ValidatorInput {
            stake: 1,
            permit: true,
            last_update: 1,
            weights,
            bonds,
            own_provider: None,
        }],
        providers: vec![ProviderInput::default(); 2],
    };
    assert_eq!(
        run_epoch(&params, &input(vec![(2, 1)], vec![])),
        Err(YumaError::WeightOutOfRange {
            validator: 0,
            provider: 2,
            providers: 2
        })
    );
    assert_eq!(
        run_epoch(&params, &input(vec![(1, 1), (1, 2)], vec![])),
        Err(YumaError::DuplicateWeight {
            validator: 0,
            provider: 1
        })
    );
    assert_eq!(
        run_epoch(&params, &input(vec![], vec![(9, Fixed::ONE)])),
        Err(YumaError::BondOutOfRange {
            validator: 0,
            provider: 9,
            providers: 2
        })
    );
}
