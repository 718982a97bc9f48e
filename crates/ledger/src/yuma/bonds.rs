//! Yuma3 bonds and dividends.
//!
//! A bond `B_ij` in [0, 1] is validator i's stake in provider j's future incentive, built up by
//! weighting j: each epoch `B = (1 - α) B_prev + α W_b`. With liquid alpha the rate is per pair:
//! fast (α_high) for a validator ahead of consensus or selling a bond, slow (α_low) for one
//! that only follows, so copying consensus is a slow way to earn. A bond to a provider the
//! validator no longer weights decays by (1 - α) (dense semantics; subtensor's sparse path
//! drops it at once). Dividends pay each validator its active stake times its share of each
//! provider's bonds times that provider's incentive.

use super::{Fixed, YumaParams, normalize};

/// The new bonds: validators x providers.
pub fn ema(
    params: &YumaParams,
    weights: &[Vec<Fixed>],
    previous: &[Vec<Fixed>],
    consensus: &[Fixed],
) -> Vec<Vec<Fixed>> {
    let liquid = params.liquid_alpha && consensus.iter().any(|c| *c > Fixed::ZERO);
    let fixed_alpha = Fixed::ONE.saturating_sub(Fixed::from_ppm(params.bonds_moving_average_ppm));
    weights
        .iter()
        .zip(previous)
        .map(|(w_row, b_row)| {
            w_row
                .iter()
                .zip(b_row)
                .zip(consensus)
                .map(|((&w, &b), &c)| {
                    let alpha = if liquid {
                        liquid_alpha(params, c, w, b)
                    } else {
                        fixed_alpha
                    };
                    let kept = Fixed::ONE.saturating_sub(alpha).mul_floor(b);
                    kept.saturating_add(alpha.mul_floor(w)).min(Fixed::ONE)
                })
                .collect()
        })
        .collect()
}

/// Subtensor's `alpha_sigmoid`: the distance that matters is how far the validator is above
/// consensus when it buys (`w ≥ b`), or how much bond it sheds when it sells (`w < b`);
/// `α = α_low + (α_high - α_low) / (1 + e^{-(steepness/100)(d - 1/2)})`, clamped.
pub fn liquid_alpha(params: &YumaParams, consensus: Fixed, weight: Fixed, bond: Fixed) -> Fixed {
    let low = Fixed::from_ppm(params.alpha_low_ppm);
    let high = Fixed::from_ppm(params.alpha_high_ppm).max(low);
    let distance = if weight >= bond {
        weight.saturating_sub(consensus)
    } else {
        bond.saturating_sub(weight)
    }
    .min(Fixed::ONE);
    let half = Fixed::ratio(1, 2);
    let slope = Fixed::ratio(u128::from(params.alpha_steepness), 100);
    // exp's argument is slope * (1/2 - d): positive when d < 1/2.
    let positive = distance < half;
    let magnitude = slope.mul_floor(if positive {
        half.saturating_sub(distance)
    } else {
        distance.saturating_sub(half)
    });
    let sigmoid =
        Fixed::ONE.div_floor(Fixed::ONE.saturating_add(super::fixed::exp(!positive, magnitude)));
    low.saturating_add(sigmoid.mul_floor(high.saturating_sub(low)))
        .clamp(low, high)
}

/// `D_i ∝ AS_i Σ_j (B_ij / Σ_k B_kj) I_j`, normalized.
pub fn dividends(bonds: &[Vec<Fixed>], incentive: &[Fixed], active_stake: &[Fixed]) -> Vec<Fixed> {
    let providers = incentive.len();
    let column_sums: Vec<Fixed> = (0..providers)
        .map(|j| Fixed::sum(bonds.iter().map(|row| row[j])))
        .collect();
    let mut dividends: Vec<Fixed> = bonds
        .iter()
        .zip(active_stake)
        .map(|(row, stake)| {
            let bonded = Fixed::sum(row.iter().zip(&column_sums).zip(incentive).map(
                |((b, sum), i)| {
                    if *sum > Fixed::ZERO {
                        b.div_floor(*sum).mul_floor(*i)
                    } else {
                        Fixed::ZERO
                    }
                },
            ));
            bonded.mul_floor(*stake)
        })
        .collect();
    normalize(&mut dividends);
    dividends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuma3_test_params() -> YumaParams {
        YumaParams {
            liquid_alpha: true,
            alpha_low_ppm: 100_000,
            alpha_high_ppm: 300_000,
            alpha_steepness: 1_000,
            bonds_penalty_ppm: 0,
            bonds_moving_average_ppm: 975_000,
            ..YumaParams::default()
        }
    }

    fn nano(x: Fixed) -> i64 {
        ((u128::from(x.to_bits()) * 1_000_000_000) >> 32) as i64
    }

    #[test]
    fn alpha_is_slow_for_followers_and_fast_for_leaders_and_sellers() {
        let p = yuma3_test_params();
        // Agreeing with consensus (d = 0): 0.1 + 0.2 σ(-5) = 0.101338.
        let follow = liquid_alpha(&p, Fixed::ONE, Fixed::ONE, Fixed::ZERO);
        assert!((nano(follow) - 101_338_570).abs() < 10, "{follow}");
        // Weight 1 where consensus is 0 (d = 1): 0.1 + 0.2 σ(5) = 0.298661.
        let lead = liquid_alpha(&p, Fixed::ZERO, Fixed::ONE, Fixed::ZERO);
        assert!((nano(lead) - 298_661_430).abs() < 10, "{lead}");
        // Selling a whole bond (b = 1, w = 0): as fast as leading.
        assert_eq!(liquid_alpha(&p, Fixed::ZERO, Fixed::ZERO, Fixed::ONE), lead);
        // d = 1/2 sits in the middle.
        let mid = liquid_alpha(&p, Fixed::ZERO, Fixed::ratio(1, 2), Fixed::ZERO);
        assert!((nano(mid) - 200_000_000).abs() < 2, "{mid}");
    }

    #[test]
    fn a_missing_weight_decays_the_bond_instead_of_dropping_it() {
        let p = YumaParams::default(); // liquid alpha off: α = 0.1
        let bonds = ema(
            &p,
            &[vec![Fixed::ZERO]],
            &[vec![Fixed::ratio(1, 2)]],
            &[Fixed::ZERO],
        );
        assert!(
            (nano(bonds[0][0]) - 450_000_000).abs() < 2,
            "{}",
            bonds[0][0]
        );
    }

    #[test]
    fn dividends_follow_bond_shares_and_stake() {
        // Two validators hold equal bonds in the only provider; stake 3:1 splits 3:1.
        let half = Fixed::ratio(1, 2);
        let d = dividends(
            &[vec![half], vec![half]],
            &[Fixed::ONE],
            &[Fixed::ratio(3, 4), Fixed::ratio(1, 4)],
        );
        assert_eq!(d, vec![Fixed::ratio(3, 4), Fixed::ratio(1, 4)]);
        // No incentive anywhere: nobody earns dividends.
        let d = dividends(&[vec![half]], &[Fixed::ZERO], &[Fixed::ONE]);
        assert_eq!(d, vec![Fixed::ZERO]);
    }
}
