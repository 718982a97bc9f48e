//! The stake-weighted κ-quantile of one provider's column: the consensus weight.
//!
//! `C = max{ w : Σ_i s_i [w_i ≥ w] ≥ κ }`, the highest level that validators holding at least κ
//! of the counted stake put at or above. This is what subtensor's `weighted_median` returns
//! (its quickselect keeps `stake(< v) ≤ total - κ` and `stake(≤ v) > total - κ`, which in exact
//! integer sums are `stake(≥ v) ≥ κ` and `stake(> v) < κ`); a sort gives the same level and is
//! easier to check. When rounding leaves the counted stake just under κ, the target is the
//! whole counted stake, so the lowest weight is the answer rather than nothing.

use super::Fixed;

/// `entries` are (weight, stake) for each validator that counts; order does not matter.
pub fn kappa_quantile(mut entries: Vec<(Fixed, Fixed)>, kappa: Fixed) -> Fixed {
    let total = Fixed::sum(entries.iter().map(|(_, s)| *s));
    if total == Fixed::ZERO {
        return Fixed::ZERO;
    }
    let target = kappa.min(total);
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let mut at_or_above = Fixed::ZERO;
    for (i, (weight, stake)) in entries.iter().enumerate() {
        at_or_above = at_or_above.saturating_add(*stake);
        let last_of_level = entries.get(i + 1).is_none_or(|next| next.0 != *weight);
        if last_of_level && at_or_above >= target {
            return *weight;
        }
    }
    Fixed::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ppm: u32) -> Fixed {
        Fixed::from_ppm(ppm)
    }

    #[test]
    fn majority_level_wins_and_minority_overweight_is_ignored() {
        // 60% of stake says 0.3, 40% says 1.0: consensus is 0.3.
        let c = kappa_quantile(
            vec![(f(300_000), f(600_000)), (f(1_000_000), f(400_000))],
            f(500_000),
        );
        assert_eq!(c, f(300_000));
        // 60% says 1.0: consensus is 1.0.
        let c = kappa_quantile(
            vec![(f(300_000), f(400_000)), (f(1_000_000), f(600_000))],
            f(500_000),
        );
        assert_eq!(c, f(1_000_000));
    }

    #[test]
    fn exactly_kappa_at_a_level_is_enough_and_ties_count_together() {
        let half = f(500_000);
        // Exactly half the stake at 0.8 and above: 0.8.
        let c = kappa_quantile(vec![(f(800_000), half), (f(100_000), half)], half);
        assert_eq!(c, f(800_000));
        // Two validators tie at 0.4 with 30% each, 40% at 0.9: 0.4 (the tie group reaches κ).
        let c = kappa_quantile(
            vec![
                (f(400_000), f(300_000)),
                (f(900_000), f(400_000)),
                (f(400_000), f(300_000)),
            ],
            half,
        );
        assert_eq!(c, f(400_000));
    }

    #[test]
    fn no_stake_no_consensus() {
        assert_eq!(kappa_quantile(vec![], f(500_000)), Fixed::ZERO);
        assert_eq!(
            kappa_quantile(vec![(f(900_000), Fixed::ZERO)], f(500_000)),
            Fixed::ZERO
        );
    }

    #[test]
    fn kappa_above_the_rounded_total_takes_the_lowest_level() {
        let third = Fixed::ratio(1, 3);
        let c = kappa_quantile(
            vec![
                (f(200_000), third),
                (f(700_000), third),
                (f(900_000), third),
            ],
            Fixed::ONE,
        );
        assert_eq!(c, f(200_000));
    }
}
