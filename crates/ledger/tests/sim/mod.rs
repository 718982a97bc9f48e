//! A seeded market simulation over the real Yuma epoch (shared by the `it` tests and the `slow`
//! binary): providers with a true quality that moves, validators that measure it (honest), give
//! everything to a friend (colluders) or copy what others published (copiers), with or without
//! commit-reveal.
//!
//! Timing, as on the ledger: epoch e runs at block `(e + 1) * TEMPO`. Without commit-reveal a
//! validator's weights set during epoch e count at e's run, and anyone can read them from the
//! chain before it; with commit-reveal they are committed during e, revealed and counted at
//! e + 1, and readable only then. Honest validators measure the quality of the epoch they are in
//! (with noise); a provider's true quality is what they would all measure without noise.

use agora_ledger::yuma::{
    EpochInput, EpochOutput, Fixed, ProviderInput, ValidatorInput, YumaParams, run_epoch,
};

pub const TEMPO: u64 = 100;

/// A row of weights and the height it was set (or committed) at.
type Stamped = (Vec<(u32, u16)>, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Measures every provider's quality, with noise, and weights by it.
    Honest,
    /// Gives all its weight to one provider, whatever it serves.
    Colluder { friend: u32 },
    /// Measures nothing: weights by the consensus it can read (the latest counted weights).
    Copier,
}

pub struct Sim {
    pub params: YumaParams,
    pub commit_reveal: bool,
    pub roles: Vec<Role>,
    pub stakes: Vec<u128>,
    /// True quality per provider, in ppm; 0 means it serves nothing a validator would pay for.
    pub quality: Vec<u32>,
    pub registered_at: Vec<u64>,
    /// Noise of an honest measurement, in ppm of the quality (uniform in ±noise).
    pub noise_ppm: u32,
    pub epoch: u64,
    rng: u64,
    permits: Vec<bool>,
    bonds: Vec<Vec<(u32, Fixed)>>,
    /// Weights committed during the previous epoch, waiting to be revealed (commit-reveal).
    pending: Vec<Option<Stamped>>,
    /// Weights that count, and the height they were set (or committed) at.
    counted: Vec<Stamped>,
    pub last: Option<EpochOutput>,
}

impl Sim {
    pub fn new(
        seed: u64,
        roles: Vec<Role>,
        stakes: Vec<u128>,
        quality: Vec<u32>,
        commit_reveal: bool,
    ) -> Sim {
        let n = roles.len();
        let providers = quality.len();
        Sim {
            params: YumaParams {
                liquid_alpha: true,
                max_validators: 64,
                ..YumaParams::default()
            },
            commit_reveal,
            roles,
            stakes,
            quality,
            registered_at: vec![0; providers],
            noise_ppm: 100_000,
            epoch: 0,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            permits: vec![true; n],
            bonds: vec![Vec::new(); n],
            pending: vec![None; n],
            counted: vec![(Vec::new(), 0); n],
            last: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A provider (new, or replacing the one in `slot`) joins now, with `quality`.
    pub fn join(&mut self, slot: usize, quality: u32) {
        let block = self.block() - TEMPO + 1;
        if slot == self.quality.len() {
            self.quality.push(quality);
            self.registered_at.push(block);
        } else {
            self.quality[slot] = quality;
            self.registered_at[slot] = block;
        }
    }

    /// The height this epoch runs at.
    pub fn block(&self) -> u64 {
        (self.epoch + 1) * TEMPO
    }

    fn measure(&mut self) -> Vec<(u32, u16)> {
        let noise = u64::from(self.noise_ppm);
        let scores: Vec<u64> = (0..self.quality.len())
            .map(|j| {
                let q = u64::from(self.quality[j]);
                let jitter = self.next_u64() % (2 * noise + 1); // 0..=2 noise
                q * (1_000_000 + jitter).saturating_sub(noise) / 1_000_000
            })
            .collect();
        upscale(&scores)
    }

    /// The consensus anyone can read now: the last epoch's, which counted weights set (or
    /// revealed) by then.
    fn readable_consensus(&self) -> Vec<(u32, u16)> {
        match &self.last {
            Some(out) => upscale(
                &out.consensus
                    .iter()
                    .map(|c| c.to_bits())
                    .collect::<Vec<_>>(),
            ),
            None => Vec::new(),
        }
    }

    /// Stake-weighted mean of the honest rows set this epoch (readable at once without
    /// commit-reveal: that is what a copier copies there).
    fn readable_honest_rows(&self, fresh: &[Option<Vec<(u32, u16)>>]) -> Vec<(u32, u16)> {
        let mut sum = vec![0u128; self.quality.len()];
        for (i, row) in fresh.iter().enumerate() {
            if let (Role::Honest, Some(row)) = (self.roles[i], row) {
                let total: u128 = row.iter().map(|(_, w)| u128::from(*w)).sum();
                for (j, w) in row {
                    sum[*j as usize] += self.stakes[i] * u128::from(*w) * 1_000_000 / total.max(1);
                }
            }
        }
        let max = sum.iter().copied().max().unwrap_or(0).max(1);
        upscale(
            &sum.iter()
                .map(|s| (s * 1_000_000 / max) as u64)
                .collect::<Vec<_>>(),
        )
    }

    /// One epoch: validators form weights, the chain counts them, Yuma runs.
    pub fn step(&mut self) -> EpochOutput {
        let set_at = self.block() - TEMPO / 2;
        let roles = self.roles.clone();
        let mut fresh: Vec<Option<Vec<(u32, u16)>>> = roles
            .iter()
            .map(|role| match role {
                Role::Honest => Some(self.measure()),
                Role::Colluder { friend } => Some(vec![(*friend, u16::MAX)]),
                Role::Copier => None,
            })
            .collect();
        for i in 0..self.roles.len() {
            if self.roles[i] == Role::Copier {
                fresh[i] = Some(if self.commit_reveal {
                    // Only revealed weights are readable: the ones counted last epoch.
                    self.readable_consensus()
                } else {
                    self.readable_honest_rows(&fresh)
                });
            }
        }
        for (i, row) in fresh.into_iter().enumerate() {
            let row = row.unwrap_or_default();
            if self.commit_reveal {
                if let Some(revealed) = self.pending[i].replace((row, set_at)) {
                    self.counted[i] = revealed;
                }
            } else {
                self.counted[i] = (row, set_at);
            }
        }
        let input = EpochInput {
            block: self.block(),
            last_epoch_block: self.block() - TEMPO,
            validators: (0..self.roles.len())
                .map(|i| ValidatorInput {
                    stake: self.stakes[i],
                    permit: self.permits[i],
                    last_update: self.counted[i].1,
                    weights: self.counted[i].0.clone(),
                    bonds: self.bonds[i].clone(),
                    own_provider: None,
                })
                .collect(),
            providers: self
                .registered_at
                .iter()
                .map(|&registered_at| ProviderInput { registered_at })
                .collect(),
        };
        let out = run_epoch(&self.params, &input).expect("the simulation builds valid input");
        self.permits = out.new_permits.clone();
        self.bonds = out.bonds_for_next_epoch();
        self.last = Some(out.clone());
        self.epoch += 1;
        out
    }
}

/// Scores to u16 weights, the largest at 65,535 (subtensor's max-upscale); zeros left out.
pub fn upscale(scores: &[u64]) -> Vec<(u32, u16)> {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return Vec::new();
    }
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 0)
        .map(|(j, s)| {
            (
                j as u32,
                ((u128::from(*s) * 65_535 + u128::from(max) / 2) / u128::from(max)).max(1) as u16,
            )
        })
        .collect()
}

/// A share as a fraction of one, for reports (test code, not ledger code).
pub fn share(x: Fixed) -> f64 {
    x.to_bits() as f64 / 4_294_967_296.0
}

/// What each provider would earn if incentive followed true quality exactly.
pub fn fair_shares(quality: &[u32]) -> Vec<f64> {
    let total: f64 = quality.iter().map(|q| f64::from(*q)).sum();
    quality.iter().map(|q| f64::from(*q) / total).collect()
}

/// The scenarios the issue names, each returning its measured figure; the `it` tests run them
/// on a few seeds and assert the stated bounds, the `slow` binary on many and prints a table.
pub mod scenarios {
    use super::*;

    /// Honest validators hold 60% of stake (six of them), colluders 40% (four) and give all
    /// their weight to provider 0, which serves at 5% of the others' quality. Returns the
    /// friend's mean incentive share over `epochs` (after 5 to settle), its fair share, and the
    /// colluders' dividends per unit of stake over the honest validators'.
    pub fn collusion(seed: u64, epochs: u64) -> (f64, f64, f64) {
        let providers = 16;
        let mut roles = vec![Role::Honest; 6];
        roles.extend([Role::Colluder { friend: 0 }; 4]);
        let mut sim = Sim::new(seed, roles, vec![100; 10], Vec::new(), true);
        sim.quality = (0..providers)
            .map(|_| 500_000 + (sim.next_u64() % 500_000) as u32)
            .collect();
        sim.quality[0] = 40_000;
        sim.registered_at = vec![0; providers];
        let fair = fair_shares(&sim.quality)[0];
        let (mut total, mut honest, mut colluding) = (0.0, 0.0, 0.0);
        for e in 0..epochs + 5 {
            let out = sim.step();
            if e >= 5 {
                total += share(out.incentive[0]);
                honest += (0..6).map(|i| share(out.dividends[i])).sum::<f64>() / 6.0;
                colluding += (6..10).map(|i| share(out.dividends[i])).sum::<f64>() / 4.0;
            }
        }
        (total / epochs as f64, fair, colluding / honest)
    }

    /// Eight honest validators (80% of stake) and two copiers (20%); every epoch one provider's
    /// quality jumps to a new value. Returns dividends per unit of stake, copiers over honest
    /// (1.0 means copying pays as well as measuring), averaged after 10 epochs to settle.
    pub fn copying(seed: u64, epochs: u64, commit_reveal: bool) -> f64 {
        let providers = 16;
        let mut roles = vec![Role::Honest; 8];
        roles.extend([Role::Copier; 2]);
        let stakes = vec![100u128; 10];
        let mut sim = Sim::new(seed, roles, stakes, vec![0; providers], commit_reveal);
        for j in 0..providers {
            sim.quality[j] = 100_000 + (sim.next_u64() % 900_000) as u32;
        }
        let (mut honest, mut copier) = (0.0, 0.0);
        for e in 0..epochs + 10 {
            let j = (sim.next_u64() % providers as u64) as usize;
            sim.quality[j] = 100_000 + (sim.next_u64() % 900_000) as u32;
            let out = sim.step();
            if e >= 10 {
                honest += (0..8).map(|i| share(out.dividends[i])).sum::<f64>() / 8.0;
                copier += (8..10).map(|i| share(out.dividends[i])).sum::<f64>() / 2.0;
            }
        }
        copier / honest
    }

    /// Ten honest validators with equal stake over `providers` providers of quality 0.3-0.9,
    /// after 20 epochs to settle; also returns the last of those epochs' output.
    fn settled_honest_market(seed: u64, providers: usize) -> (Sim, EpochOutput) {
        let mut sim = Sim::new(
            seed,
            vec![Role::Honest; 10],
            vec![100; 10],
            Vec::new(),
            true,
        );
        sim.quality = (0..providers)
            .map(|_| 300_000 + (sim.next_u64() % 600_000) as u32)
            .collect();
        sim.registered_at = vec![0; providers];
        let mut last = sim.step();
        for _ in 1..20 {
            last = sim.step();
        }
        (sim, last)
    }

    /// Ten honest validators, 15 providers running for 20 epochs; then a 16th joins with the
    /// best quality. Returns the epochs after joining until its incentive reaches 90% of its
    /// fair share (None if it never does within 50).
    pub fn newcomer(seed: u64) -> Option<u64> {
        let (mut sim, _) = settled_honest_market(seed, 15);
        sim.join(15, 950_000);
        let fair = fair_shares(&sim.quality)[15];
        (1..=50).find(|_| share(sim.step().incentive[15]) >= 0.9 * fair)
    }

    /// Ten honest validators, 16 providers for 20 epochs; then provider 3 starts failing audits
    /// (honest validators measure quality 0 for it: the audit pass rate multiplies the score).
    /// Returns the epochs after the first failure until its incentive is below 1% of what it had.
    pub fn failing(seed: u64) -> Option<u64> {
        let (mut sim, settled) = settled_honest_market(seed, 16);
        let before = share(settled.incentive[3]);
        sim.quality[3] = 0;
        (1..=50).find(|_| share(sim.step().incentive[3]) < 0.01 * before)
    }
}
